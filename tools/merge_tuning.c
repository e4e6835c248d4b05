/*
 * merge_tuning — merge tuning files that users sent back into the built-in table:
 *
 *   merge_tuning TABLE SHARED...      (TABLE: src/builtin_tuning.txt)
 *
 * Every line of TABLE and of each SHARED file goes through the library's own parser
 * (clattn_tunedb_parse_line). A SHARED entry must also be what clattn-bench --tune writes: the
 * "# clattn-bench --tune" comment right above it (its shape and confirmed times), and one exact
 * device (a driver version, not "*"; a device name, not a class). A file without the header, a
 * malformed line or such a foreign entry refuses the whole merge: TABLE is left as it was, and
 * the exit status is 1 with FILE:LINE and the reason on stderr. Otherwise a SHARED entry whose
 * key TABLE has replaces that entry and the comment lines right above it (a blank line ends
 * them: what stands above a blank line stays) in place, a new key is appended with its comment,
 * a later SHARED entry for a key wins over an earlier one (as in the lookup), and TABLE is
 * rewritten through a temporary file. Exit status 2: a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tunedb.h"

#define PROVENANCE "# clattn-bench --tune "

/* Lines of the merged table: an entry and the comment lines right above it, or lines that go
   with no entry (ended by a blank line, or after the last entry). */
typedef struct block {
    char *lines;                 /* NULL, or whole lines, each ending in '\n' */
    int has_entry;
    clattn_tune_entry entry;
} block;

typedef struct table {
    block *blocks;
    size_t count, entries;
} table;

static int refuse(const char *path, size_t line, const char *why)
{
    fprintf(stderr, "merge_tuning: %s:%zu: %s; nothing merged\n", path, line, why);
    return 0;
}

/* The whole file as a NUL-terminated string, or NULL after saying why. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long size = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)size + 1)) && fread(text, 1, (size_t)size, f) == (size_t)size)
        text[size] = '\0';
    else if (text)
        free(text), text = NULL;
    if (f)
        fclose(f);
    if (!text)
        fprintf(stderr, "merge_tuning: cannot read %s\n", path);
    return text;
}

/* text + line appended as one line; exits when the memory runs out. */
static char *append_line(char *text, const char *line)
{
    size_t have = text ? strlen(text) : 0, add = strlen(line);
    char *grown = realloc(text, have + add + 2);
    if (!grown)
        fprintf(stderr, "merge_tuning: out of memory\n"), exit(1);
    memcpy(grown + have, line, add);
    memcpy(grown + have + add, "\n", 2);
    return grown;
}

/* Put lines and e (NULL: lines alone) into t: over the entry with the same key, else at the
   end. */
static void put(table *t, char *lines, const clattn_tune_entry *e)
{
    block b = {.lines = lines, .has_entry = e != NULL};
    if (e)
        b.entry = *e;
    for (size_t i = 0; e && i < t->count; i++)
        if (t->blocks[i].has_entry && clattn_tune_same_key(&t->blocks[i].entry.key, &e->key)) {
            free(t->blocks[i].lines);
            t->blocks[i] = b;
            return;
        }
    block *grown = realloc(t->blocks, (t->count + 1) * sizeof *grown);
    if (!grown)
        fprintf(stderr, "merge_tuning: out of memory\n"), exit(1);
    t->blocks = grown;
    t->blocks[t->count++] = b;
    t->entries += e != NULL;
}

/* Why a shared entry is not one that clattn-bench --tune wrote, or NULL. */
static const char *foreign(const clattn_tune_entry *e, const char *above)
{
    if (!above || strncmp(above, PROVENANCE, strlen(PROVENANCE)) != 0)
        return "no \"" PROVENANCE "...\" comment right above the entry: not written by "
               "clattn-bench --tune";
    if (strcmp(e->key.device.driver, "*") == 0)
        return "the driver version is \"*\": clattn-bench --tune names one driver";
    if (e->key.device.name[0] == '[')
        return "a device-class entry: clattn-bench --tune names one device";
    return NULL;
}

/* Add the entries of the file at path to t. shared: the file was sent back (provenance and an
   exact device required; only the provenance comment is kept). 0 after refusing. */
static int add_file(table *t, const char *path, int shared)
{
    char *text = read_file(path);
    if (!text)
        return 0;
    size_t number = 0;
    char *comments = NULL;
    const char *above = NULL;    /* the line right above, when it is a comment */
    int ok = 1;
    for (char *line = text, *next; ok && line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        line[strcspn(line, "\r")] = '\0';
        number++;
        clattn_tune_entry e;
        int kind = clattn_tunedb_parse_line(line, &e);
        const char *why = shared && kind == 1 ? foreign(&e, above) : NULL;
        if (number == 1 && strcmp(line, CLATTN_TUNEDB_HEADER) != 0)
            ok = refuse(path, number, "the first line is not \"" CLATTN_TUNEDB_HEADER "\"");
        else if (number == 1 || (!next && line[0] == '\0'))
            continue;
        else if (kind < 0)
            ok = refuse(path, number, "malformed (docs/tuning.md, Format)");
        else if (why)
            ok = refuse(path, number, why);
        else if (kind == 1) {
            put(t, shared ? append_line(NULL, above) : comments, &e);
            comments = NULL;
        } else if (!shared) {
            comments = append_line(comments, line);
            if (line[0] == '\0')
                put(t, comments, NULL), comments = NULL;
        }
        above = kind == 0 && line[0] == '#' ? line : NULL;
    }
    if (ok && comments)
        put(t, comments, NULL);
    else
        free(comments);
    free(text);
    return ok;
}

/* Write t over path through path.tmp. */
static int write_table(const table *t, const char *path)
{
    char tmp[4200], line[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return fprintf(stderr, "merge_tuning: cannot write %s\n", tmp), 0;
    fprintf(f, "%s\n", CLATTN_TUNEDB_HEADER);
    for (size_t i = 0; i < t->count; i++) {
        fputs(t->blocks[i].lines ? t->blocks[i].lines : "", f);
        if (t->blocks[i].has_entry && clattn_tunedb_format(&t->blocks[i].entry, line, sizeof line))
            fprintf(f, "%s\n", line);
    }
    int ok = !ferror(f);
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        remove(tmp);
        return fprintf(stderr, "merge_tuning: writing %s failed\n", path), 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: merge_tuning TABLE SHARED...\n"
                        "merges tuning files written by clattn-bench --tune into TABLE "
                        "(src/builtin_tuning.txt)\n");
        return 2;
    }
    table t = {NULL, 0, 0};
    int ok = add_file(&t, argv[1], 0);
    size_t before = t.entries;
    for (int i = 2; ok && i < argc; i++)
        ok = add_file(&t, argv[i], 1);
    ok = ok && write_table(&t, argv[1]);
    if (ok)
        printf("%s: %zu entries (%zu new)\n", argv[1], t.entries, t.entries - before);
    for (size_t i = 0; i < t.count; i++)
        free(t.blocks[i].lines);
    free(t.blocks);
    return ok ? 0 : 1;
}
