/* The parts of clattn-bench --tune (tune.c drives them): the order of the search
   (tune_space.c), the files it reads and writes (tune_files.c) and the reference check
   (tune_check.c). The candidates, the plans and the tuning entries come from the library
   itself (src/tools.h), never from a copy of its rules. */
#ifndef CLATTN_BENCH_TUNE_IMPL_H
#define CLATTN_BENCH_TUNE_IMPL_H

#include <stdio.h>

#include "bench.h"
#include "measure.h"
#include "tools.h"

typedef enum outcome {
    OUTCOME_OK,            /* checked and timed */
    OUTCOME_SLOW,          /* checked; its timed warm-up call took over 3x the best median */
    OUTCOME_BUILD_FAILED,  /* CLATTN_ERROR_BUILD_FAILED */
    OUTCOME_WRONG,         /* output differs from the reference */
    OUTCOME_NO_FIT,        /* the library did not run the forced tiling (its plan says so) */
    OUTCOME_ERROR,         /* any other failure of the call */
    OUTCOME_COUNT
} outcome;

typedef struct result {
    clattn_tiling t;
    outcome o;
    double ms;        /* OK: median; SLOW: its one timed warm-up call; else 0 */
    int is_default;   /* the library's own choice (nothing forced), not a candidate */
    int tuned;        /* is_default, and that choice came from the tuning database */
} result;

/* "ok", "slow", "build-failed", "wrong-result", "does-not-fit", "error". */
const char *outcome_name(outcome o);
int outcome_parse(const char *text, outcome *o);

/* ---- tune_space.c ---- */

/* The candidates c[0, n) in the order to try them: `first` (the library's own choice) left
   out, then by distance from it. Returns the count left in c. */
size_t order_candidates(const shape *s, const clattn_tiling *first, clattn_tiling *c, size_t n);

/* 1 when a and b have the same rows, wg, block_n and vec (the part a tuning entry sets). */
int tiling_equal(const clattn_tiling *a, const clattn_tiling *b);

/* "rows=32 wg=1 bn=32 vec=16" */
void tiling_text(const clattn_tiling *t, char *buf, size_t size);

/* "b=1 hq=16 hkv=16 sq=1024 sk=1024 d=64 dv=64 bhsd f32 causal=0" */
void shape_text(const shape *s, char *buf, size_t size);

/* ---- tune_files.c ---- */

/* A new entry for the tuning file and the comment line written above it. */
typedef struct tune_entry {
    clattn_tune_entry entry;
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
const result *progress_find(const progress *p, const char *id, const clattn_tiling *t,
                            int is_default);

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
