/* What clattn-bench and its tuner share: the operands of a shape (random inputs from fixed
   seeds, so every run and every peer sees the same values) and timing of the forward or the
   backward by OpenCL events. */
#ifndef CLATTN_BENCH_MEASURE_H
#define CLATTN_BENCH_MEASURE_H

#include <stdint.h>

#include "bench.h"

/* Print "clattn-bench: what: STATUS: last error" (or the OpenCL code) to stderr; return 0. */
int bench_fail(const char *what, clattn_status st);
int bench_cl_fail(const char *what, cl_int err);

size_t dtype_bytes(clattn_dtype t);

/* n values of dtype t into h, uniform in [-1, 1) from a fixed xorshift stream: buffer `seed`
   of every shape holds the same values (seeds 1..9: q, k, v, out, lse, dq, dk, dv, dout). */
void fill_random(void *h, clattn_dtype t, size_t n, uint32_t seed);

/* Elements of q, k, v, out, lse. */
void operand_sizes(const shape *s, size_t n[5]);

#define OPERANDS 9
typedef struct operands {
    cl_mem mem[OPERANDS];   /* q, k, v, out, lse; with make_gradients dq, dk, dv, dout */
    clattn_tensor q, k, v, out, lse;
    clattn_tensor dq, dk, dv, dout;
} operands;

/* Buffers of s in context c, filled by fill_random; 0 on failure (printed; release what was
   made with release_operands). */
int make_operands(cl_context c, const shape *s, operands *op);
/* The backward's dq, dk, dv (like q, k, v) and dout (like out) into op, after make_operands;
   0 on failure as make_operands. */
int make_gradients(cl_context c, const shape *s, operands *op);
void release_operands(operands *op);

/* n calls of pass (PASS_BWD: after one more, a forward that writes their out and lse), then
   clFinish: SUCCESS or the first failure's status, not printed, so that a caller can tell
   UNSUPPORTED from a failure (clattn_last_error() says why; a failed clFinish gives
   CLATTN_ERROR_OPENCL). */
clattn_status untimed_calls(clattn_context *ctx, const clattn_attention_desc *desc,
                            const operands *op, bench_pass pass, int n);

/* The monotonic clock in milliseconds (host-timed calls and peers). */
double bench_now_ms(void);

/* Enqueues iters (marker, call of pass) pairs back to back, waits, and writes each call's ms
   (from the marker's end to the call's event's end). A device whose events all read the same
   time (rusticl on llvmpipe gives 0) is said once on stderr, and each call is then timed with
   the host clock, from its enqueue to the end of a clFinish. 0 on failure (printed). */
int timed_calls(clattn_context *ctx, const clattn_attention_desc *desc, const operands *op,
                bench_pass pass, int iters, double *ms);

/* Sorts ms[0, n) and writes its median and minimum. */
void summarize(double *ms, int n, double *median, double *min);

#endif
