/* Tuning database: parse, look up, and load the built-in table and the user file (tunedb.h). */
#include "tunedb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diskcache.h"
#include "fault.h"
#include "log.h"

/* Entries measured on the machines named in their device keys (by hand with clattn-bench:
   see the CPU rule in plan.c for the figures). */
static const char builtin_table[] =
    CLATTN_TUNEDB_HEADER "\n"
    "# PoCL 3.1 on 2 cores of an AVX-512 EPYC (CI machines): B=1 H=16 S=1024\n"
    "Portable Computing Language|pthread-skylake-avx512-Intel(R) Xeon(R) Processor|3.1+debian\t"
    "forward\tf32\t64\t64\t0\tprefill\t64\t1\t64\t16\n"
    "Portable Computing Language|pthread-skylake-avx512-Intel(R) Xeon(R) Processor|3.1+debian\t"
    "forward\tf32\t64\t64\t1\tprefill\t64\t1\t64\t16\n";

static const char *const dtype_names[] = {"f32", "f16", "bf16"};

void clattn_tunedb_device_key(const char *platform, const char *device, const char *driver,
                              char *buf, size_t size)
{
    snprintf(buf, size, "%s|%s|%s", platform, device, driver);
}

clattn_tune_key clattn_tune_key_of(const char *device_key, const clattn_problem *problem)
{
    clattn_tune_key key;
    memset(&key, 0, sizeof key);
    snprintf(key.device, sizeof key.device, "%s", device_key);
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
    if (!f[10] || cursor || f[0][0] == '\0' || strlen(f[0]) >= sizeof e->key.device ||
        strcmp(f[1], "forward") != 0 || !parse_dtype(f[2], &e->key.dtype) ||
        !parse_int(f[3], 1, 1 << 20, &v[0]) || !parse_int(f[4], 1, 1 << 20, &v[1]) ||
        !parse_int(f[5], 0, 1, &v[2]) ||
        (strcmp(f[6], "decode") != 0 && strcmp(f[6], "prefill") != 0) ||
        !parse_int(f[7], 1, 1024, &v[3]) || !parse_int(f[8], 1, 1 << 16, &v[4]) ||
        !parse_int(f[9], 1, 4096, &v[5]) || !parse_int(f[10], 1, 16, &v[6]))
        return -1;
    snprintf(e->key.device, sizeof e->key.device, "%s", f[0]);
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
    int n = snprintf(buf, size, "%s\tforward\t%s\t%lld\t%lld\t%d\t%s\t%d\t%d\t%d\t%d",
                     e->key.device, dtype_names[e->key.dtype], (long long)e->key.head_dim,
                     (long long)e->key.head_dim_v, e->key.causal,
                     e->key.decode ? "decode" : "prefill", e->rows, e->wg, e->block_n, e->vec);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size ? size - 1 : 0;
}

static int same_key(const clattn_tune_key *a, const clattn_tune_key *b)
{
    return strcmp(a->device, b->device) == 0 && a->dtype == b->dtype &&
           a->head_dim == b->head_dim && a->head_dim_v == b->head_dim_v &&
           a->causal == b->causal && a->decode == b->decode;
}

/* Add or replace the entry for e's key. */
static int put_entry(clattn_tunedb *db, const clattn_tune_entry *e)
{
    for (size_t i = 0; i < db->count; i++)
        if (same_key(&db->entries[i].key, &e->key))
            return db->entries[i] = *e, 0;
    clattn_tune_entry *grown = clattn_realloc(db->entries, (db->count + 1) * sizeof *grown);
    if (!grown)
        return -1;
    db->entries = grown;
    db->entries[db->count++] = *e;
    return 0;
}

int clattn_tunedb_add_text(clattn_tunedb *db, const char *text, const char *origin)
{
    size_t header = strlen(CLATTN_TUNEDB_HEADER);
    if (strncmp(text, CLATTN_TUNEDB_HEADER, header) != 0 || strcspn(text, "\r\n") != header) {
        clattn_log(CLATTN_LOG_WARN, "tuning database %s: first line is not \"%s\"; ignored",
                   origin, CLATTN_TUNEDB_HEADER);
        return -1;
    }
    int bad = 0, number = 1;
    for (const char *line = strchr(text, '\n'); line; line = strchr(line, '\n')) {
        line++;
        number++;
        clattn_tune_entry e;
        int parsed = clattn_tunedb_parse_line(line, &e);
        if (parsed < 0) {
            clattn_log(CLATTN_LOG_WARN, "tuning database %s: line %d is malformed; skipped",
                       origin, number);
            bad++;
        } else if (parsed > 0 && put_entry(db, &e) != 0) {
            clattn_log(CLATTN_LOG_DEBUG, "tuning database %s: no host memory; line %d and the "
                       "rest are dropped", origin, number);
            return -1;
        }
    }
    return bad;
}

const clattn_tune_entry *clattn_tunedb_find(const clattn_tunedb *db, const clattn_tune_key *key)
{
    for (size_t i = 0; i < db->count; i++)
        if (same_key(&db->entries[i].key, key))
            return &db->entries[i];
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

/* The whole of a small text file, NUL-terminated (caller frees), or NULL. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size >= 0 && size < (1 << 24) && fseek(f, 0, SEEK_SET) == 0 &&
        (text = clattn_malloc((size_t)size + 1)) &&
        fread(text, 1, (size_t)size, f) == (size_t)size) {
        text[size] = '\0';
    } else {
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
    clattn_tunedb_add_text(db, builtin_table, "(built-in)");
    char path[4200];
    if (!clattn_tunedb_user_path(path, sizeof path))
        return;
    char *text = read_text(path);
    if (!text) {
        clattn_log(CLATTN_LOG_DEBUG, "tuning database %s: not readable; built-in table only", path);
        return;
    }
    int bad = clattn_tunedb_add_text(db, text, path);
    clattn_log(CLATTN_LOG_DEBUG, "tuning database %s: loaded (%zu entries in all, %d bad lines)",
               path, db->count, bad < 0 ? 0 : bad);
    free(text);
}

void clattn_tunedb_free(clattn_tunedb *db)
{
    free(db->entries);
    db->entries = NULL;
    db->count = 0;
}
