/* Tuning database: measured tilings of the fused forward, by device and problem class.
 *
 * Text format, one entry per line, fields separated by tabs; '#' starts a comment line:
 *
 *   clattn-tuning 1
 *   <device key> <kernel> <dtype> <d> <dv> <causal> <sq class> <rows> <wg> <block_n> <vec>
 *
 * device key   "platform name|device name|driver version" (clattn_tunedb_device_key)
 * kernel       forward
 * dtype        f32, f16 or bf16 (of q, k, v)
 * d, dv        head dims, exact
 * causal       0 or 1
 * sq class     decode (at most 16 query rows per kv head, counting the group) or prefill
 * rows .. vec  the tiling (clattn_tiling; the head-dim buckets follow from d and dv)
 *
 * Lookup: the user file ($CLATTN_TUNING_DB, else tuning.txt in the kernel cache directory),
 * then the table built into the library, then nothing (the planner's heuristic). Malformed
 * lines are skipped with a warning; an entry that does not fit the device is ignored there. */
#ifndef CLATTN_TUNEDB_H
#define CLATTN_TUNEDB_H

#include "plan.h"

#define CLATTN_TUNEDB_HEADER "clattn-tuning 1"
#define CLATTN_DECODE_ROWS 16

typedef struct clattn_tune_key {
    char         device[512];
    clattn_dtype dtype;
    int64_t      head_dim, head_dim_v;
    int          causal;
    int          decode;
} clattn_tune_key;

typedef struct clattn_tune_entry {
    clattn_tune_key key;
    int rows, wg, block_n, vec;
} clattn_tune_entry;

typedef struct clattn_tunedb {
    clattn_tune_entry *entries;
    size_t count;
} clattn_tunedb;

/* The device key of a platform name, device name and driver version. */
void clattn_tunedb_device_key(const char *platform, const char *device, const char *driver,
                              char *buf, size_t size);

/* The key of a problem on a device. */
clattn_tune_key clattn_tune_key_of(const char *device_key, const clattn_problem *problem);

/* Parse one line: 1 for an entry, 0 for a blank or comment line, -1 if malformed. */
int clattn_tunedb_parse_line(const char *line, clattn_tune_entry *entry);

/* Format an entry as one line (no newline). Returns the length written. */
size_t clattn_tunedb_format(const clattn_tune_entry *entry, char *buf, size_t size);

/* Add the entries of text (a whole file, header first) to db; later entries for the same key
   win. Returns the number of malformed lines (each logged as a warning with its number), or -1
   when the header is missing or the memory runs out (db keeps what it had). */
int clattn_tunedb_add_text(clattn_tunedb *db, const char *text, const char *origin);

/* The entry for key, or NULL. */
const clattn_tune_entry *clattn_tunedb_find(const clattn_tunedb *db, const clattn_tune_key *key);

/* The tiling an entry describes for a problem (buckets from its head dims). */
clattn_tiling clattn_tunedb_tiling(const clattn_tune_entry *entry, const clattn_problem *problem);

/* Load the built-in table, then the user file over it. Never fails: problems are logged. */
void clattn_tunedb_load(clattn_tunedb *db);

/* The user file's path: $CLATTN_TUNING_DB, else tuning.txt in the kernel cache directory.
   0 when there is none. */
int clattn_tunedb_user_path(char *buf, size_t size);

void clattn_tunedb_free(clattn_tunedb *db);

#endif
