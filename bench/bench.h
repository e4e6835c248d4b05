/* Types that clattn-bench's files share: a shape, the pass that is timed, the record of one
   timed (shape, pass), and the facts of the run that every record repeats in machine-readable
   output. */
#ifndef CLATTN_BENCH_BENCH_H
#define CLATTN_BENCH_BENCH_H

#include <clattn.h>

typedef struct shape {
    int64_t b, hq, hkv, sq, sk, d, dv;
    int causal;
    int bshd;
    clattn_dtype dtype;
} shape;

/* What a timed call computes: clattn_attention_forward, or clattn_attention_backward on the
   out and lse of one untimed forward call. */
typedef enum bench_pass { PASS_FWD = 0, PASS_BWD = 1 } bench_pass;

/* One clattn configuration, timed by OpenCL events. */
typedef struct timing {
    clattn_status status;   /* of clattn_attention_plan, or of the first backward call; not
                               SUCCESS: plan says why it cannot run, and nothing was timed */
    double median_ms, min_ms, gflops, gbps;
    int has_workspace;      /* workspace was queried (the forward: the backward has no query) */
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
    bench_pass pass;
    timing ours;
    double pct_flops, pct_bw; /* of the --peak figures; < 0: not measured */
    double bwd_fwd;           /* backward rows: our backward GFLOP/s / our forward GFLOP/s of the
                                 same shape in this run; < 0: not measured */
    peer unfused, blas;       /* forward rows only */
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
