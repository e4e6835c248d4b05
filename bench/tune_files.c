/* The tuner's files: the user tuning file (src/tunedb.h format, read and written through the
   library's own parser and formatter) and the progress file that makes a run resumable. */
#include "tune_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROGRESS_HEADER "clattn-tune-progress 1"
#define OUR_COMMENT "# clattn-bench --tune"

/* Creates the directories above path (mkdir -p of its dirname); 0 on failure. */
static int make_parent_dirs(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 1;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0755) != 0 && errno != EEXIST)
                return 0;
            *p = '/';
        }
    return mkdir(dir, 0755) == 0 || errno == EEXIST;
}

/* Closes f; 0 when anything written to it failed. */
static int close_ok(FILE *f)
{
    int ok = !ferror(f);
    return (fclose(f) == 0) && ok;
}

/* The whole of a text file (caller frees), NULL when it does not exist or cannot be read
   (*exists says which). */
static char *read_all(const char *path, int *exists)
{
    FILE *f = fopen(path, "rb");
    *exists = f != NULL || errno != ENOENT;
    if (!f)
        return NULL;
    size_t used = 0, cap = 1 << 16;
    char *text = malloc(cap + 1);
    for (size_t got = 1; text && got > 0; used += got) {
        if (used == cap) {
            char *grown = realloc(text, 2 * cap + 1);
            if (!grown)
                break;
            text = grown, cap *= 2;
        }
        got = fread(text + used, 1, cap - used, f);
    }
    int ok = text && !ferror(f) && used < cap;
    fclose(f);
    if (ok)
        text[used] = '\0';
    else
        free(text);
    return ok ? text : NULL;
}

/* 1 when text's first line is header (ended by a newline, CR LF or the end, as the library
   reads it). */
static int has_header(const char *text, const char *header)
{
    return strncmp(text, header, strlen(header)) == 0 && strcspn(text, "\r\n") == strlen(header);
}

/* 1 when the existing line [line, line + len) is an entry with the key of one of e[0, n). */
static int replaced(const char *line, size_t len, const tune_entry *e, size_t n)
{
    char copy[1024];
    clattn_tune_entry old;
    if (len >= sizeof copy)
        return 0;
    memcpy(copy, line, len);
    copy[len] = '\0';
    if (clattn_tunedb_parse_line(copy, &old) != 1)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (clattn_tune_same_key(&old.key, &e[i].entry.key))
            return 1;
    return 0;
}

/* Writes the lines of old (after its header) that stay: all but replaced entries, and our own
   comment line just above a replaced entry. */
static void copy_kept(FILE *f, const char *old, const tune_entry *e, size_t n)
{
    const char *line = strchr(old, '\n');
    while (line && *++line) {
        size_t len = strcspn(line, "\n");
        const char *next = line + len + (line[len] == '\n');
        size_t next_len = strcspn(next, "\n");
        int ours = strncmp(line, OUR_COMMENT, strlen(OUR_COMMENT)) == 0;
        if (!replaced(line, len, e, n) && !(ours && *next && replaced(next, next_len, e, n)))
            fprintf(f, "%.*s\n", (int)len, line);
        line = line[len] ? line + len : NULL;
    }
}

/* The text of the tuning file at path ("" when there is none), or NULL (printed) when it is
   not one that we may rewrite. */
static char *read_tuning_file(const char *path)
{
    int exists = 0;
    char *old = read_all(path, &exists);
    if (!exists)
        return calloc(1, 1);
    if (!old || (old[0] && !has_header(old, CLATTN_TUNEDB_HEADER))) {
        free(old);
        fprintf(stderr, "clattn-bench: %s is not a readable clattn tuning file (first line "
                        "\"%s\"); left as it is\n", path, CLATTN_TUNEDB_HEADER);
        return NULL;
    }
    return old;
}

int tune_file_usable(const char *path)
{
    char *old = read_tuning_file(path);
    int ok = old != NULL;
    free(old);
    return ok;
}

int tune_file_merge(const char *path, const tune_entry *e, size_t n)
{
    char *old = read_tuning_file(path), tmp[4200];
    if (!old)
        return 0;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = make_parent_dirs(path) ? fopen(tmp, "w") : NULL;
    if (f) {
        fprintf(f, "%s\n", CLATTN_TUNEDB_HEADER);
        copy_kept(f, old, e, n);
        for (size_t i = 0; i < n; i++) {
            char line[1400];
            clattn_tunedb_format(&e[i].entry, line, sizeof line);
            fprintf(f, "%s\n%s\n", e[i].comment, line);
        }
    }
    free(old);
    if (!f || !close_ok(f) || rename(tmp, path) != 0) {
        remove(tmp);
        return fprintf(stderr, "clattn-bench: cannot write %s: %s\n", path, strerror(errno)), 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Progress: "<id> TAB <rows> TAB <wg> TAB <bn> TAB <vec> TAB <outcome> TAB <ms> TAB <role>",  */
/* role: candidate, default (the heuristic's tiling) or tuned (the tuning database's)         */
/* ---------------------------------------------------------------------------------------- */

static int add_item(progress *p, const char *id, const result *r)
{
    progress_item *grown = realloc(p->items, (p->count + 1) * sizeof *grown);
    if (!grown)
        return 0;
    p->items = grown;
    snprintf(p->items[p->count].id, sizeof p->items[p->count].id, "%s", id);
    p->items[p->count++].r = *r;
    return 1;
}

/* One progress line into id and r; 0 when malformed (a line cut short by a kill, say). */
static int parse_progress_line(char *line, char **id, result *r)
{
    char *f[8], *cursor = line;
    for (int i = 0; i < 8; i++) {
        f[i] = cursor;
        cursor = cursor ? strchr(cursor, '\t') : NULL;
        if (cursor)
            *cursor++ = '\0';
    }
    if (!f[7] || cursor)
        return 0;
    memset(r, 0, sizeof *r);
    *id = f[0];
    r->t.rows = atoi(f[1]);
    r->t.wg = atoi(f[2]);
    r->t.block_n = atoi(f[3]);
    r->t.vec = atoi(f[4]);
    r->ms = atof(f[6]);
    r->tuned = strcmp(f[7], "tuned") == 0;
    r->is_default = r->tuned || strcmp(f[7], "default") == 0;
    if (!r->is_default && strcmp(f[7], "candidate") != 0)
        return 0;
    return r->t.rows > 0 && r->t.wg > 0 && r->t.block_n > 0 && r->t.vec > 0 &&
           outcome_parse(f[5], &r->o);
}

static int read_progress(progress *p, const char *path, int *empty)
{
    int exists = 0;
    char *text = read_all(path, &exists);
    *empty = !text || !text[0];
    if (exists && !text)
        return fprintf(stderr, "clattn-bench: cannot read %s\n", path), 0;
    if (text && text[0] && !has_header(text, PROGRESS_HEADER)) {
        free(text);
        return fprintf(stderr, "clattn-bench: %s is not a tuning progress file (first line \"%s\")"
                               "; remove it or give another --tune-progress\n", path,
                       PROGRESS_HEADER), 0;
    }
    char *save = NULL;
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        char *id;
        result r;
        if (parse_progress_line(line, &id, &r) && !add_item(p, id, &r))
            break;
    }
    free(text);
    return 1;
}

int progress_open(progress *p, const char *path)
{
    int empty = 1;
    memset(p, 0, sizeof *p);
    if (!read_progress(p, path, &empty))
        return 0;
    p->append = make_parent_dirs(path) ? fopen(path, "a") : NULL;
    if (!p->append)
        return fprintf(stderr, "clattn-bench: cannot write %s: %s\n", path, strerror(errno)), 0;
    if (empty)
        fprintf(p->append, "%s\n", PROGRESS_HEADER);
    return 1;
}

const result *progress_find(const progress *p, const char *id, const clattn_tiling *t,
                            int is_default)
{
    for (size_t i = 0; i < p->count; i++) {
        const result *r = &p->items[i].r;
        if (strcmp(p->items[i].id, id) == 0 &&
            (is_default ? r->is_default : t && tiling_equal(&r->t, t)))
            return r;
    }
    return NULL;
}

int progress_add(progress *p, const char *id, const result *r)
{
    fprintf(p->append, "%s\t%d\t%d\t%d\t%d\t%s\t%.6f\t%s\n", id, r->t.rows, r->t.wg,
            r->t.block_n, r->t.vec, outcome_name(r->o), r->ms,
            r->tuned ? "tuned" : r->is_default ? "default" : "candidate");
    int ok = fflush(p->append) == 0 && add_item(p, id, r);
    return ok ? 1 : (fprintf(stderr, "clattn-bench: writing the progress file failed\n"), 0);
}

void progress_close(progress *p)
{
    if (p->append)
        fclose(p->append);
    free(p->items);
    memset(p, 0, sizeof *p);
}
