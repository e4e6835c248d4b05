/* Operands and event timing shared by clattn-bench and its tuner (measure.h). */
#include "measure.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int bench_fail(const char *what, clattn_status st)
{
    fprintf(stderr, "clattn-bench: %s: %s: %s\n", what, clattn_status_string(st),
            clattn_last_error());
    return 0;
}

int bench_cl_fail(const char *what, cl_int err)
{
    fprintf(stderr, "clattn-bench: %s: OpenCL error %d\n", what, (int)err);
    return 0;
}

size_t dtype_bytes(clattn_dtype t)
{
    return t == CLATTN_F32 ? 4 : 2;
}

/* x in [-1, 1) as f16 bits: 11 significant bits, rounded to nearest (ties away; fine here). */
static uint16_t half_bits(float x)
{
    uint16_t sign = x < 0 ? 0x8000 : 0;
    float a = x < 0 ? -x : x;
    if (a < 6.1035156e-05f) /* below the smallest normal: flush (only exact 0 here) */
        return sign;
    int e = 0;
    while (a >= 2.0f)
        a *= 0.5f, e++;
    while (a < 1.0f)
        a *= 2.0f, e--;
    uint16_t mant = (uint16_t)((a - 1.0f) * 1024.0f + 0.5f);
    if (mant == 1024)
        mant = 0, e++;
    return (uint16_t)(sign | (uint16_t)((e + 15) << 10) | mant);
}

/* Element i of a buffer of dtype t holding x. */
static void put(void *h, clattn_dtype t, size_t i, float x)
{
    if (t == CLATTN_F32) {
        ((float *)h)[i] = x;
    } else if (t == CLATTN_F16) {
        ((uint16_t *)h)[i] = half_bits(x);
    } else {
        uint32_t bits;
        memcpy(&bits, &x, 4);
        ((uint16_t *)h)[i] = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }
}

/* n values of dtype t into h, uniform in [-1, 1) from a fixed xorshift stream: buffer `seed`
   of every shape holds the same values for clattn and for the OpenBLAS peer. */
void fill_random(void *h, clattn_dtype t, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        put(h, t, i, (float)(x >> 8) / 8388608.0f - 1.0f);
    }
}

static cl_mem random_buffer(cl_context c, size_t n, clattn_dtype t, uint32_t seed)
{
    void *h = malloc(n * dtype_bytes(t));
    cl_int err = CL_OUT_OF_HOST_MEMORY;
    cl_mem m = NULL;
    if (h) {
        fill_random(h, t, n, seed);
        m = clCreateBuffer(c, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * dtype_bytes(t), h,
                           &err);
        free(h);
    }
    if (!m)
        bench_cl_fail("allocating a buffer", err);
    return m;
}

/* Elements of q, k, v, out, lse. */
void operand_sizes(const shape *s, size_t n[5])
{
    n[0] = (size_t)(s->b * s->hq * s->sq * s->d);
    n[1] = (size_t)(s->b * s->hkv * s->sk * s->d);
    n[2] = (size_t)(s->b * s->hkv * s->sk * s->dv);
    n[3] = (size_t)(s->b * s->hq * s->sq * s->dv);
    n[4] = (size_t)(s->b * s->hq * s->sq);
}

void release_operands(operands *op)
{
    for (int i = 0; i < OPERANDS; i++)
        if (op->mem[i])
            clReleaseMemObject(op->mem[i]);
}

static clattn_tensor view(const shape *s, cl_mem m, int64_t heads, int64_t seq, int64_t dim)
{
    return s->bshd ? clattn_tensor_bshd(m, s->dtype, s->b, seq, heads, dim)
                   : clattn_tensor_bhsd(m, s->dtype, s->b, heads, seq, dim);
}

/* count buffers into mem, shaped like q, k, v, out, lse in turn (lse f32, the others of the
   shape's dtype), filled from seeds first_seed, first_seed + 1, ... */
static int random_buffers(cl_context c, const shape *s, int count, uint32_t first_seed,
                          cl_mem *mem)
{
    size_t n[5];
    operand_sizes(s, n);
    for (int i = 0; i < count; i++)
        if (!(mem[i] = random_buffer(c, n[i], i < 4 ? s->dtype : CLATTN_F32,
                                     first_seed + (uint32_t)i)))
            return 0;
    return 1;
}

/* Views of the buffers m shaped like q, k, v and out. */
static void qkvo_views(const shape *s, const cl_mem m[4], clattn_tensor *q, clattn_tensor *k,
                       clattn_tensor *v, clattn_tensor *out)
{
    *q = view(s, m[0], s->hq, s->sq, s->d);
    *k = view(s, m[1], s->hkv, s->sk, s->d);
    *v = view(s, m[2], s->hkv, s->sk, s->dv);
    *out = view(s, m[3], s->hq, s->sq, s->dv);
}

int make_operands(cl_context c, const shape *s, operands *op)
{
    memset(op, 0, sizeof *op);
    if (!random_buffers(c, s, 5, 1, op->mem))
        return 0;
    qkvo_views(s, op->mem, &op->q, &op->k, &op->v, &op->out);
    op->lse = clattn_tensor_bhsd(op->mem[4], CLATTN_F32, s->b, s->hq, s->sq, 1);
    return 1;
}

int make_gradients(cl_context c, const shape *s, operands *op)
{
    if (!random_buffers(c, s, 4, 6, op->mem + 5))
        return 0;
    qkvo_views(s, op->mem + 5, &op->dq, &op->dk, &op->dv, &op->dout);
    return 1;
}

static const char *const call_names[] = {"clattn_attention_forward",
                                         "clattn_attention_backward"};

static clattn_status call(clattn_context *ctx, const clattn_attention_desc *desc,
                          const operands *op, bench_pass pass, cl_event *ev)
{
    if (pass == PASS_FWD)
        return clattn_attention_forward(ctx, desc, &op->q, &op->k, &op->v, &op->out, &op->lse,
                                        0, NULL, ev);
    return clattn_attention_backward(ctx, desc, &op->q, &op->k, &op->v, &op->out, &op->dout,
                                     &op->lse, &op->dq, &op->dk, &op->dv, 0, NULL, ev);
}

clattn_status untimed_calls(clattn_context *ctx, const clattn_attention_desc *desc,
                            const operands *op, bench_pass pass, int n)
{
    clattn_status st = pass == PASS_BWD ? call(ctx, desc, op, PASS_FWD, NULL) : CLATTN_SUCCESS;
    for (int i = 0; st == CLATTN_SUCCESS && i < n; i++)
        st = call(ctx, desc, op, pass, NULL);
    if (clFinish(clattn_context_queue(ctx)) != CL_SUCCESS && st == CLATTN_SUCCESS)
        st = CLATTN_ERROR_OPENCL;
    return st;
}

/* The time of `what` for ev in ns; 0 on failure (reported). */
static int profile(cl_event ev, cl_profiling_info what, cl_ulong *ns)
{
    cl_int err = ev ? clGetEventProfilingInfo(ev, what, sizeof *ns, ns, NULL) : CL_INVALID_EVENT;
    return err == CL_SUCCESS ? 1 : bench_cl_fail("clGetEventProfilingInfo", err);
}

double bench_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* Each call timed alone on the host clock: enqueue, clFinish. */
static int host_timed_calls(clattn_context *ctx, const clattn_attention_desc *desc,
                            const operands *op, bench_pass pass, int iters, double *ms)
{
    static int said;
    if (!said++)
        fprintf(stderr, "clattn-bench: the device's profiling events give no times; timing "
                        "each call with the host clock (enqueue to clFinish)\n");
    for (int i = 0; i < iters; i++) {
        const double start = bench_now_ms();
        clattn_status st = call(ctx, desc, op, pass, NULL);
        if (st != CLATTN_SUCCESS)
            return bench_fail(call_names[pass], st);
        cl_int err = clFinish(clattn_context_queue(ctx));
        if (err != CL_SUCCESS)
            return bench_cl_fail("clFinish", err);
        ms[i] = bench_now_ms() - start;
    }
    return 1;
}

/* Enqueues iters (marker, call) pairs back to back, waits, and writes each call's ms. */
int timed_calls(clattn_context *ctx, const clattn_attention_desc *desc, const operands *op,
                bench_pass pass, int iters, double *ms)
{
    cl_command_queue q = clattn_context_queue(ctx);
    cl_event *ev = calloc(2 * (size_t)iters, sizeof *ev);
    int ok = ev != NULL, done = 0;
    for (; ok && done < iters; done++) {
        cl_int err = clEnqueueMarkerWithWaitList(q, 0, NULL, &ev[2 * done]);
        clattn_status st;
        if (err != CL_SUCCESS)
            ok = bench_cl_fail("clEnqueueMarkerWithWaitList", err);
        else if ((st = call(ctx, desc, op, pass, &ev[2 * done + 1])) != CLATTN_SUCCESS)
            ok = bench_fail(call_names[pass], st);
    }
    cl_int err = clFinish(q);
    if (ok && err != CL_SUCCESS)
        ok = bench_cl_fail("clFinish", err);
    for (int i = 0; ok && i < iters; i++) {
        cl_ulong start = 0, end = 0;
        ok = profile(ev[2 * i], CL_PROFILING_COMMAND_END, &start) &&
             profile(ev[2 * i + 1], CL_PROFILING_COMMAND_END, &end);
        ms[i] = end > start ? (double)(end - start) * 1e-6 : 0.0;
    }
    for (int i = 0; ev && i < 2 * iters; i++)
        if (ev[i])
            clReleaseEvent(ev[i]);
    free(ev);
    int timed = 0;
    for (int i = 0; ok && i < iters; i++)
        timed |= ms[i] > 0.0;
    return ok && !timed ? host_timed_calls(ctx, desc, op, pass, iters, ms) : ok;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts ms[0, n) and writes its median and minimum. */
void summarize(double *ms, int n, double *median, double *min)
{
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    *min = ms[0];
    *median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
}
