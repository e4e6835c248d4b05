/* Tuning database: measured tilings of the fused forward, by device and problem class. The
 * format and the lookup are described for users in docs/tuning.md.
 *
 * Text format, one entry per line, fields separated by tabs; '#' starts a comment line:
 *
 *   clattn-tuning 1
 *   <device key> <kernel> <dtype> <d> <dv> <causal> <sq class> <rows> <wg> <block_n> <vec>
 *
 * device key   "platform name|device name|driver version"; the driver may be "*" (any), and the
 *              device name "[cpu]", "[gpu]" or "[other]" (every device of that class on the
 *              platform: a class entry)
 * kernel       forward
 * dtype        f32, f16 or bf16 (of q, k, v)
 * d, dv        head dims, exact
 * causal       0 or 1
 * sq class     decode (at most CLATTN_DECODE_ROWS query rows per kv head, counting the group)
 *              or prefill
 * rows .. vec  the tiling (clattn_tiling; the head-dim buckets follow from d and dv)
 *
 * Lookup for a call: the entry whose device key is exactly this device's; else one for the same
 * platform and device name with any driver (an update keeps its tuning); else a class entry of
 * the platform. Within a level the entry loaded last wins: the user file
 * ($CLATTN_TUNING_DB, else tuning.txt in the kernel cache directory) is loaded after the table
 * built into the library, and later lines after earlier ones. An entry that does not fit the
 * device is ignored (logged at warn) and the next level is tried; without any, the planner's
 * heuristic decides. Malformed lines are skipped with a warning. */
#ifndef CLATTN_TUNEDB_H
#define CLATTN_TUNEDB_H

#include "plan.h"

#define CLATTN_TUNEDB_HEADER "clattn-tuning 1"
#define CLATTN_DECODE_ROWS 16

/* A device as the tuning database names it (in an entry: possibly a class or any driver). */
typedef struct clattn_tune_device {
    char platform[256];   /* CL_PLATFORM_NAME */
    char name[256];       /* CL_DEVICE_NAME, or "[cpu]", "[gpu]", "[other]" */
    char driver[256];     /* CL_DRIVER_VERSION, or "*" */
} clattn_tune_device;

typedef struct clattn_tune_key {
    clattn_tune_device device;
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
    clattn_tune_entry *entries;     /* in load order */
    size_t count;
    const clattn_tune_entry **index;  /* the entries by problem class, then load order */
} clattn_tunedb;

/* A device's name in the tuning database. */
clattn_tune_device clattn_tune_device_of(const char *platform, const char *name,
                                         const char *driver);

/* The key of a problem on a device. */
clattn_tune_key clattn_tune_key_of(const clattn_tune_device *device, const clattn_problem *problem);

/* Parse one line: 1 for an entry, 0 for a blank or comment line, -1 if malformed. */
int clattn_tunedb_parse_line(const char *line, clattn_tune_entry *entry);

/* Format an entry as one line (no newline). Returns the length written. */
size_t clattn_tunedb_format(const clattn_tune_entry *entry, char *buf, size_t size);

/* 1 when two entries are for the same device key and problem class (the later one wins). */
int clattn_tune_same_key(const clattn_tune_key *a, const clattn_tune_key *b);

/* Add the entries of text (a whole file of size bytes, header first) to db. Returns the number
   of malformed lines (each logged as a warning with its number; a line holding a NUL byte is
   one), or -1 when the header is missing or the memory runs out (db keeps what it had). */
int clattn_tunedb_add_text(clattn_tunedb *db, const char *text, size_t size, const char *origin);

/* The entry for key (whose device is the call's actual device, of class device_class) at one
   level of the lookup, or NULL: the last loaded whose device key matches at that level. */
const clattn_tune_entry *clattn_tunedb_find(const clattn_tunedb *db, const clattn_tune_key *key,
                                            clattn_device_class device_class,
                                            clattn_tiling_source level);

/* The tiling an entry describes for a problem (buckets from its head dims). */
clattn_tiling clattn_tunedb_tiling(const clattn_tune_entry *entry, const clattn_problem *problem);

/* Load the built-in table, then the user file over it. Never fails: problems are logged. */
void clattn_tunedb_load(clattn_tunedb *db);

/* The user file's path: $CLATTN_TUNING_DB, else tuning.txt in the kernel cache directory.
   0 when there is none. */
int clattn_tunedb_user_path(char *buf, size_t size);

void clattn_tunedb_free(clattn_tunedb *db);

#endif
