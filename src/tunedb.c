/* Tuning database: parse, look up, and load the built-in table (builtin_tuning.txt) and the user
   file (tunedb.h). */
#include "tunedb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diskcache.h"
#include "embedded.h"
#include "fault.h"
#include "log.h"

static const char *const dtype_names[] = {"f32", "f16", "bf16"};

clattn_tune_device clattn_tune_device_of(const char *platform, const char *name,
                                         const char *driver)
{
    clattn_tune_device d;
    snprintf(d.platform, sizeof d.platform, "%s", platform);
    snprintf(d.name, sizeof d.name, "%s", name);
    snprintf(d.driver, sizeof d.driver, "%s", driver);
    return d;
}

clattn_tune_key clattn_tune_key_of(const clattn_tune_device *device, const clattn_problem *problem)
{
    clattn_tune_key key;
    memset(&key, 0, sizeof key);
    key.device = *device;
    key.dtype = problem->dtype;
    key.head_dim = problem->head_dim;
    key.head_dim_v = problem->head_dim_v;
    key.causal = problem->causal;
    key.decode = problem->seq_q * (problem->heads_q / problem->heads_kv) <= CLATTN_DECODE_ROWS;
    return key;
}

/* The next tab-separated field of *cursor (NUL-terminated in place), or NULL at the end. */
static char *next_field(char **cursor)
{
    char *field = *cursor;
    if (!field)
        return NULL;
    char *tab = strchr(field, '\t');
    if (tab)
        *tab = '\0';
    *cursor = tab ? tab + 1 : NULL;
    return field;
}

static int parse_int(const char *text, long lo, long hi, long *out)
{
    char *end = NULL;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || end == text || *end != '\0' || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

static int parse_dtype(const char *text, clattn_dtype *out)
{
    for (int i = 0; text && i < 3; i++)
        if (strcmp(text, dtype_names[i]) == 0)
            return *out = (clattn_dtype)i, 1;
    return 0;
}

/* "platform|name|driver": split at the first and the last '|' (a device name may hold one). */
static int parse_device(const char *text, clattn_tune_device *d)
{
    const char *first = strchr(text, '|'), *last = strrchr(text, '|');
    if (!first || first == last || first == text || last[1] == '\0' || last == first + 1)
        return 0;
    const size_t platform = (size_t)(first - text), name = (size_t)(last - first - 1);
    if (platform >= sizeof d->platform || name >= sizeof d->name ||
        strlen(last + 1) >= sizeof d->driver)
        return 0;
    memcpy(d->platform, text, platform);
    d->platform[platform] = '\0';
    memcpy(d->name, first + 1, name);
    d->name[name] = '\0';
    memcpy(d->driver, last + 1, strlen(last + 1) + 1);
    return 1;
}

int clattn_tunedb_parse_line(const char *line, clattn_tune_entry *e)
{
    char copy[1024];
    size_t len = strcspn(line, "\r\n");
    if (len == 0 || line[0] == '#')
        return 0;
    if (len >= sizeof copy)
        return -1;
    memcpy(copy, line, len);
    copy[len] = '\0';
    memset(e, 0, sizeof *e);
    char *cursor = copy, *f[11];
    for (int i = 0; i < 11; i++)
        f[i] = next_field(&cursor);
    long v[8];
    if (!f[10] || cursor || !parse_device(f[0], &e->key.device) ||
        strcmp(f[1], "forward") != 0 || !parse_dtype(f[2], &e->key.dtype) ||
        !parse_int(f[3], 1, 1 << 20, &v[0]) || !parse_int(f[4], 1, 1 << 20, &v[1]) ||
        !parse_int(f[5], 0, 1, &v[2]) ||
        (strcmp(f[6], "decode") != 0 && strcmp(f[6], "prefill") != 0) ||
        !parse_int(f[7], 1, 1024, &v[3]) || !parse_int(f[8], 1, 1 << 16, &v[4]) ||
        !parse_int(f[9], 1, 4096, &v[5]) || !parse_int(f[10], 1, 16, &v[6]))
        return -1;
    e->key.head_dim = v[0];
    e->key.head_dim_v = v[1];
    e->key.causal = (int)v[2];
    e->key.decode = strcmp(f[6], "decode") == 0;
    e->rows = (int)v[3];
    e->wg = (int)v[4];
    e->block_n = (int)v[5];
    e->vec = (int)v[6];
    return 1;
}

size_t clattn_tunedb_format(const clattn_tune_entry *e, char *buf, size_t size)
{
    const clattn_tune_device *d = &e->key.device;
    int n = snprintf(buf, size, "%s|%s|%s\tforward\t%s\t%lld\t%lld\t%d\t%s\t%d\t%d\t%d\t%d",
                     d->platform, d->name, d->driver, dtype_names[e->key.dtype],
                     (long long)e->key.head_dim, (long long)e->key.head_dim_v, e->key.causal,
                     e->key.decode ? "decode" : "prefill", e->rows, e->wg, e->block_n, e->vec);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size ? size - 1 : 0;
}

/* The problem class of a key, as a total order (the device aside). */
static int compare_class(const clattn_tune_key *a, const clattn_tune_key *b)
{
    const int64_t x[5] = {a->dtype, a->head_dim, a->head_dim_v, a->causal, a->decode};
    const int64_t y[5] = {b->dtype, b->head_dim, b->head_dim_v, b->causal, b->decode};
    for (int i = 0; i < 5; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

int clattn_tune_same_key(const clattn_tune_key *a, const clattn_tune_key *b)
{
    return compare_class(a, b) == 0 && strcmp(a->device.platform, b->device.platform) == 0 &&
           strcmp(a->device.name, b->device.name) == 0 &&
           strcmp(a->device.driver, b->device.driver) == 0;
}

/* qsort over the index: by problem class, then load order (the entries' order in memory). */
static int compare_index(const void *pa, const void *pb)
{
    const clattn_tune_entry *a = *(const clattn_tune_entry *const *)pa;
    const clattn_tune_entry *b = *(const clattn_tune_entry *const *)pb;
    const int c = compare_class(&a->key, &b->key);
    return c ? c : (a > b) - (a < b);
}

/* Rebuild db->index over every entry; -1 when the memory runs out (then db has no index and
   finds nothing). */
static int build_index(clattn_tunedb *db)
{
    free(db->index);
    db->index = db->count ? clattn_malloc(db->count * sizeof *db->index) : NULL;
    if (db->count && !db->index)
        return -1;
    for (size_t i = 0; i < db->count; i++)
        db->index[i] = &db->entries[i];
    if (db->count > 1) /* qsort's base must not be NULL, even for no elements */
        qsort(db->index, db->count, sizeof *db->index, compare_index);
    return 0;
}

/* Append e to the entries (the index is rebuilt once the text is read). */
static int append_entry(clattn_tunedb *db, size_t *capacity, const clattn_tune_entry *e)
{
    if (db->count == *capacity) {
        const size_t grown_capacity = *capacity ? 2 * *capacity : 16;
        clattn_tune_entry *grown = clattn_realloc(db->entries, grown_capacity * sizeof *grown);
        if (!grown)
            return -1;
        db->entries = grown;
        *capacity = grown_capacity;
    }
    db->entries[db->count++] = *e;
    return 0;
}

int clattn_tunedb_add_text(clattn_tunedb *db, const char *text, size_t size, const char *origin)
{
    size_t header = strlen(CLATTN_TUNEDB_HEADER), capacity = db->count;
    if (size < header || strncmp(text, CLATTN_TUNEDB_HEADER, header) != 0 ||
        (size > header && text[header] != '\n' && text[header] != '\r')) {
        clattn_log(CLATTN_LOG_WARN, "tuning database %s: first line is not \"%s\"; ignored",
                   origin, CLATTN_TUNEDB_HEADER);
        return -1;
    }
    const char *end = text + size;
    int bad = 0, number = 1, status = 0;
    for (const char *line = memchr(text, '\n', size); line; ) {
        line++;
        number++;
        const char *next = memchr(line, '\n', (size_t)(end - line));
        const size_t length = (size_t)((next ? next : end) - line);
        clattn_tune_entry e;
        /* the line in a NUL-terminated copy; one that holds a NUL byte is malformed */
        char copy[1024];
        int parsed = -1;
        if (length < sizeof copy && !memchr(line, '\0', length)) {
            memcpy(copy, line, length);
            copy[length] = '\0';
            parsed = clattn_tunedb_parse_line(copy, &e);
        }
        line = next;
        if (parsed < 0) {
            clattn_log(CLATTN_LOG_WARN, "tuning database %s: line %d is malformed; skipped",
                       origin, number);
            bad++;
        } else if (parsed > 0 && append_entry(db, &capacity, &e) != 0) {
            clattn_log(CLATTN_LOG_DEBUG, "tuning database %s: no host memory; line %d and the "
                       "rest are dropped", origin, number);
            status = -1;
            break;
        }
    }
    if (build_index(db) != 0) {
        clattn_log(CLATTN_LOG_DEBUG, "tuning database %s: no host memory for the index; every "
                   "entry is dropped", origin);
        status = -1;
    }
    return status < 0 ? -1 : bad;
}

/* Whether an entry's device key matches device (of class device_class) at a lookup level. */
static int device_matches(const clattn_tune_device *entry, const clattn_tune_device *device,
                          clattn_device_class device_class, clattn_tiling_source level)
{
    static const char *const class_names[] = {"[cpu]", "[gpu]", "[other]"};
    if (strcmp(entry->platform, device->platform) != 0)
        return 0;
    if (level == CLATTN_TILING_TUNED_CLASS)
        return strcmp(entry->name, class_names[device_class]) == 0;
    if (strcmp(entry->name, device->name) != 0)
        return 0;
    return level == CLATTN_TILING_TUNED_DEVICE || strcmp(entry->driver, device->driver) == 0;
}

const clattn_tune_entry *clattn_tunedb_find(const clattn_tunedb *db, const clattn_tune_key *key,
                                            clattn_device_class device_class,
                                            clattn_tiling_source level)
{
    if (!db->index)
        return NULL;
    /* the last index position whose class is <= key's, then back through that class */
    size_t lo = 0, hi = db->count;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (compare_class(&db->index[mid]->key, key) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i-- > 0;) {
        const clattn_tune_entry *e = db->index[i];
        if (compare_class(&e->key, key) != 0)
            break;
        if (device_matches(&e->key.device, &key->device, device_class, level))
            return e;
    }
    return NULL;
}

clattn_tiling clattn_tunedb_tiling(const clattn_tune_entry *e, const clattn_problem *problem)
{
    clattn_tiling t;
    memset(&t, 0, sizeof t);
    t.d_pad = clattn_head_dim_bucket(problem->head_dim);
    t.dv_pad = clattn_head_dim_bucket(problem->head_dim_v);
    t.rows = e->rows;
    t.wg = e->wg;
    t.block_m = e->rows * e->wg;
    t.block_n = e->block_n;
    t.vec = e->vec;
    t.local_bytes = clattn_tiling_local_bytes(&t);
    return t;
}

int clattn_tunedb_user_path(char *buf, size_t size)
{
    const char *env = getenv("CLATTN_TUNING_DB");
    if (env && env[0]) {
        snprintf(buf, size, "%s", env);
        return 1;
    }
    char dir[4096];
    if (!clattn_diskcache_dir(dir, sizeof dir))
        return 0;
    snprintf(buf, size, "%s/tuning.txt", dir);
    return 1;
}

/* The whole of a regular text file under 16 MiB, NUL-terminated (caller frees), its length in
   *size; or NULL with the reason in *why. */
static char *read_text(const char *path, size_t *size, const char **why)
{
    struct stat st;
    FILE *f = clattn_open_regular_file(path, &st, why);
    if (!f)
        return NULL;
    char *text = NULL;
    *size = (size_t)st.st_size;
    if (st.st_size >= (1 << 24))
        *why = "16 MiB or more";
    else if (!(text = clattn_malloc(*size + 1)))
        *why = "no host memory for it";
    else if (fread(text, 1, *size, f) != *size)
        *why = "read failed";
    if (text && (*why)[0] == '\0')
        text[*size] = '\0';
    else if (text) {
        free(text);
        text = NULL;
    }
    fclose(f);
    return text;
}

void clattn_tunedb_load(clattn_tunedb *db)
{
    db->entries = NULL;
    db->count = 0;
    db->index = NULL;
    const clattn_embedded_file *builtin = &clattn_embedded_tuning[0];
    clattn_tunedb_add_text(db, builtin->text, builtin->length, "(built-in)");
    char path[4200];
    if (!clattn_tunedb_user_path(path, sizeof path))
        return;
    size_t size = 0;
    const char *why = "";
    char *text = read_text(path, &size, &why);
    if (!text) {
        /* a missing file is the usual case; anything else the user will want to know */
        clattn_log(strcmp(why, "no such file") == 0 ? CLATTN_LOG_DEBUG : CLATTN_LOG_WARN,
                   "tuning database %s: %s; built-in table only", path, why);
        return;
    }
    int bad = clattn_tunedb_add_text(db, text, size, path);
    clattn_log(CLATTN_LOG_DEBUG, "tuning database %s: loaded (%zu entries in all, %d bad lines)",
               path, db->count, bad < 0 ? 0 : bad);
    free(text);
}

void clattn_tunedb_free(clattn_tunedb *db)
{
    free(db->entries);
    free(db->index);
    db->entries = NULL;
    db->index = NULL;
    db->count = 0;
}
