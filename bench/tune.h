/* clattn-bench --tune: search the fused kernel's tilings for the current device over the given
   shapes and write the best into the user tuning file that the library reads (src/tunedb.h). */
#ifndef CLATTN_BENCH_TUNE_H
#define CLATTN_BENCH_TUNE_H

#include <stddef.h>

#include "bench.h"

typedef struct tune_options {
    const char *device;         /* selector, as for clattn_context_create */
    clattn_algo algo;           /* AUTO, FUSED or SPLIT_KV (UNFUSED has no tiling) */
    int warmup, iters;          /* calls per candidate: warm-up (the last one timed alone to skip
                                   hopeless candidates), then timed */
    double budget_s;            /* for the whole run; no candidate starts after it */
    const char *tune_file;      /* NULL: $CLATTN_TUNING_DB, else tuning.txt in the cache dir */
    const char *progress_file;  /* NULL: tune_file + ".progress" */
} tune_options;

/* Tunes each shape, writes the tuning file and prints a summary on stdout (progress on stderr).
   Returns 0 on success, 1 on failure, 130 when interrupted by SIGINT (results so far written;
   a second run resumes). */
int tune_run(const tune_options *o, const shape *shapes, size_t n);

#endif
