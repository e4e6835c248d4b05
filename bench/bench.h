/* Types that clattn-bench's files share: a shape, the record of one timed shape, and the facts
   of the run that every record repeats in machine-readable output. */
#ifndef CLATTN_BENCH_BENCH_H
#define CLATTN_BENCH_BENCH_H

#include <clattn.h>

typedef struct shape {
    int64_t b, hq, hkv, sq, sk, d, dv;
    int causal;
    int bshd;
    clattn_dtype dtype;
} shape;

/* One clattn configuration, timed by OpenCL events. */
typedef struct timing {
    clattn_status status;   /* of clattn_attention_plan; plan then says why it cannot run */
    double median_ms, min_ms, gflops, gbps;
    size_t workspace;
    char plan[256];
} timing;

/* A peer of one shape. ratio = our GFLOP/s / its GFLOP/s (> 1: clattn is faster). */
typedef struct peer {
    int ran;                /* 0: not run; note says why when it was meant to */
    double median_ms, min_ms, gflops, ratio;
    double max_rel_err;     /* of its check before timing; < 0: none */
    char note[256];
} peer;

typedef struct record {
    shape s;
    clattn_algo algo;         /* as asked for (--algo) */
    timing ours;
    double pct_flops, pct_bw; /* of the --peak figures; < 0: not measured */
    peer unfused, blas;
} record;

typedef struct run_info {
    const char *device;
    int peak;                     /* --peak measured these: */
    double peak_gflops, peak_gbps;
    const char *blas_core;        /* NULL: no OpenBLAS peer (not built, or not a CPU device) */
    const char *blas_how;         /* how the core was chosen */
    const char *blas_threading;   /* "heads" or "blas" */
} run_info;

#endif
