/* The CPU peer of clattn-bench: attention written the way a CPU user would write it, in plain C
   over OpenBLAS (two SGEMMs and a row softmax per head), plus the double-precision loop that
   checks it. Bench-only code; built when meson finds OpenBLAS. */
#ifndef CLATTN_BENCH_OPENBLAS_ATTENTION_H
#define CLATTN_BENCH_OPENBLAS_ATTENTION_H

#include <stdint.h>

/* Dense f32 arrays: q [B,Hq,Sq,D], k [B,Hkv,Sk,D], v [B,Hkv,Sk,Dv], out [B,Hq,Sq,Dv]. Query head
   h reads kv head h / (Hq / Hkv). Causal masks are bottom-right aligned, as clattn's default:
   row i sees keys j <= i + Sk - Sq. The scale is 1 / sqrt(D). */
typedef struct cpu_attention_problem {
    int64_t b, hq, hkv, sq, sk, d, dv;
    int causal;
} cpu_attention_problem;

typedef enum cpu_attention_threading {
    CPU_ATTENTION_THREADS_OVER_HEADS,  /* pthreads over (batch, head) pairs, OpenBLAS 1 thread */
    CPU_ATTENTION_THREADS_IN_BLAS      /* heads one after another, OpenBLAS threaded */
} cpu_attention_threading;

/* out = softmax(mask(q k^T / sqrt(D))) v with `threads` threads in the way t says (this sets
   OpenBLAS's thread count). Rows that see no key get 0. Returns 0 when scratch cannot be
   allocated, a thread cannot start, or a size does not fit OpenBLAS's int; 1 otherwise. */
int cpu_attention_forward(const cpu_attention_problem *p, cpu_attention_threading t, int threads,
                          const float *q, const float *k, const float *v, float *out);

/* The worst |out - ref| / max |ref| over head (b, h) of out, ref computed by a naive loop in
   double. Negative when its scratch cannot be allocated. */
double cpu_attention_check(const cpu_attention_problem *p, const float *q, const float *k,
                           const float *v, const float *out, int64_t b, int64_t h);

/* The OpenBLAS kernel family that runs ("Prescott", "SkylakeX", ...); never NULL. */
const char *cpu_attention_core(void);

/* CPUs OpenBLAS sees (at least 1). */
int cpu_attention_cpus(void);

#endif
