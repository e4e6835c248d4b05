/* What clattn-bench and its tuner share: the operands of a shape (random inputs from fixed
   seeds, so every run and every peer sees the same values) and timing by OpenCL events. */
#ifndef CLATTN_BENCH_MEASURE_H
#define CLATTN_BENCH_MEASURE_H

#include <stdint.h>

#include "bench.h"

/* Print "clattn-bench: what: STATUS: last error" (or the OpenCL code) to stderr; return 0. */
int bench_fail(const char *what, clattn_status st);
int bench_cl_fail(const char *what, cl_int err);

size_t dtype_bytes(clattn_dtype t);

/* n values of dtype t into h, uniform in [-1, 1) from a fixed xorshift stream: buffer `seed`
   of every shape holds the same values (seeds 1..5: q, k, v, out, lse). */
void fill_random(void *h, clattn_dtype t, size_t n, uint32_t seed);

/* Elements of q, k, v, out, lse. */
void operand_sizes(const shape *s, size_t n[5]);

typedef struct operands {
    cl_mem mem[5];   /* q, k, v, out, lse */
    clattn_tensor q, k, v, out, lse;
} operands;

/* Buffers of s in context c, filled by fill_random; 0 on failure (printed; release what was
   made with release_operands). */
int make_operands(cl_context c, const shape *s, operands *op);
void release_operands(operands *op);

/* n calls, then clFinish; 0 on failure (printed). */
int warm_up(clattn_context *ctx, const clattn_attention_desc *desc, const operands *op, int n);

/* Enqueues iters (marker, call) pairs back to back, waits, and writes each call's ms (from the
   marker's end to the call's event's end). 0 on failure (printed). */
int timed_calls(clattn_context *ctx, const clattn_attention_desc *desc, const operands *op,
                int iters, double *ms);

/* Sorts ms[0, n) and writes its median and minimum. */
void summarize(double *ms, int n, double *median, double *min);

#endif
