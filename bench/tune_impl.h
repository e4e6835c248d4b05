/* The parts of clattn-bench --tune (tune.c drives them): the search space (tune_space.c), the
   files it reads and writes (tune_files.c) and the reference check (tune_check.c). */
#ifndef CLATTN_BENCH_TUNE_IMPL_H
#define CLATTN_BENCH_TUNE_IMPL_H

#include <stdio.h>

#include "bench.h"
#include "measure.h"

/* The part of a tiling that a tuning entry sets (block_m = rows * wg; buckets follow from d). */
typedef struct tiling {
    int rows, wg, bn, vec;
} tiling;

typedef enum outcome {
    OUTCOME_OK,            /* checked and timed */
    OUTCOME_SLOW,          /* checked; its timed warm-up call took over 3x the best median */
    OUTCOME_BUILD_FAILED,  /* CLATTN_ERROR_BUILD_FAILED */
    OUTCOME_WRONG,         /* output differs from the reference */
    OUTCOME_NO_FIT,        /* the library ignored the entry (plan line without "tuned") */
    OUTCOME_ERROR,         /* any other failure of the call */
    OUTCOME_COUNT
} outcome;

typedef struct result {
    tiling t;
    outcome o;
    double ms;        /* OK: median; SLOW: its one timed warm-up call; else 0 */
    int is_default;   /* the library's own choice (no user entry), not a candidate entry */
    int builtin;      /* is_default, and the plan said "tuned": the library's built-in table */
} result;

/* "ok", "slow", "build-failed", "wrong-result", "does-not-fit", "error". */
const char *outcome_name(outcome o);
int outcome_parse(const char *text, outcome *o);

/* ---- tune_space.c ---- */

typedef struct device_info {
    char key[1024];      /* "platform name|device name|driver version", as the library keys */
    int cpu_like;        /* CPU, or local memory not dedicated: the planner's CPU rules */
    size_t max_wg;       /* min(CL_DEVICE_MAX_WORK_GROUP_SIZE, CL_DEVICE_MAX_WORK_ITEM_SIZES[0]) */
    cl_ulong local_mem;  /* CL_DEVICE_LOCAL_MEM_SIZE */
} device_info;

/* The device of queue q; 0 on an OpenCL error (printed). */
int device_info_query(cl_command_queue q, device_info *d);

/* The valid tilings of shape s on d, most plausible first: `first` (the library's default
   tiling) left out, then by distance from it. *out is malloc'ed; returns the count. */
size_t tune_candidates(const device_info *d, const shape *s, const tiling *first, tiling **out);

/* The tiling of a clattn_attention_plan line ("... bn=32 rows=32 vec=16 wg=1 ..."); 0 when
   the line has none (unfused, not runnable). */
int tiling_from_plan(const char *plan, tiling *t);

int tiling_equal(const tiling *a, const tiling *b);

/* "rows=32 wg=1 bn=32 vec=16" */
void tiling_text(const tiling *t, char *buf, size_t size);

/* 1 when s is in the library's decode class: Sq * (Hq / Hkv) <= 16 rows per kv head. */
int shape_is_decode(const shape *s);

/* "b=1 hq=16 hkv=16 sq=1024 sk=1024 d=64 dv=64 bhsd f32 causal=0" */
void shape_text(const shape *s, char *buf, size_t size);

/* ---- tune_files.c ---- */

/* The tuning file the library reads: $CLATTN_TUNING_DB, else tuning.txt in $CLATTN_CACHE_DIR,
   $XDG_CACHE_HOME/clattn or ~/.cache/clattn. 0 when there is none (CLATTN_CACHE_DIR=off). */
int tune_default_path(char *buf, size_t size);

/* The tuning-file line of tiling t for shape s on d (src/tunedb.h format, no newline). */
void tune_entry_line(const device_info *d, const shape *s, const tiling *t, char *buf,
                     size_t size);

/* Writes a tuning file holding the header and, when line is not NULL, that one entry. */
int tune_write_single(const char *path, const char *line);

/* A new entry for the tuning file and the comment line written above it. */
typedef struct tune_entry {
    char line[1400];
    char comment[600];
} tune_entry;

/* 1 when path does not exist, is empty or is a tuning file (else 0, printed): a file that
   tune_file_merge may rewrite. */
int tune_file_usable(const char *path);

/* Writes path: the lines of the existing file (if any) except entries with the key of one of
   e[0, n) (and our comment above them), then e's comments and lines; through a temporary file
   renamed over path. 0 on failure (printed), also when path exists but is not a tuning file. */
int tune_file_merge(const char *path, const tune_entry *e, size_t n);

/* Finished candidates, read from the progress file and appended to it one line each. */
typedef struct progress_item {
    char id[1200];   /* device key + shape + algo */
    result r;
} progress_item;

typedef struct progress {
    progress_item *items;
    size_t count;
    FILE *append;
} progress;

/* Reads path (if it exists) and opens it for appending; 0 on failure (printed). */
int progress_open(progress *p, const char *path);

/* The result recorded for (id, t), or for id's default run when is_default; NULL if none. */
const result *progress_find(const progress *p, const char *id, const tiling *t, int is_default);

/* Records r under id in memory and appends it to the file (flushed); 0 on failure. */
int progress_add(progress *p, const char *id, const result *r);

void progress_close(progress *p);

/* ---- tune_check.c ---- */

#define TUNE_SAMPLE_ROWS 16

/* out rows of a few query rows, computed in double from the bench's inputs. */
typedef struct reference {
    int n;
    size_t offset[TUNE_SAMPLE_ROWS];   /* element offset of each row in the out buffer */
    double *out;                       /* n * dv values */
} reference;

/* 0 when out of host memory (printed). */
int reference_make(const shape *s, reference *r);
void reference_free(reference *r);

/* Reads the sampled rows of op->out and writes the worst |out - ref| / max |ref of the row|;
   NaN anywhere gives NaN. 0 on an OpenCL error (printed). */
int reference_check(cl_command_queue q, const operands *op, const shape *s, const reference *r,
                    double *worst);

/* The largest accepted worst error for outputs of dtype t. */
double reference_tolerance(clattn_dtype t);

#endif
