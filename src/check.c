/* Known-answer checks of newly built programs: see check.h. Each check makes its inputs on the
   host (multiples of 1/8, exact in every storage type), runs the operation with the program's
   tiling and storage types on the check queue, computes the answer in f64 from the inputs as
   stored, and compares element by element within a tolerance of a few roundings of the output
   type (docs/kernels.md "Known-answer checks"). */
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "context.h"
#include "enqueue.h"
#include "fault.h"
#include "log.h"
#include "merge.h"
#include "status.h"

/* ---- arrays in a storage type ---------------------------------------------------------- */

/* An array of the check: its elements as the device holds them (bytes, in dtype) and as the
   reference reads them (values, decoded from bytes), and its buffer once uploaded. */
typedef struct check_array {
    clattn_dtype   dtype;
    size_t         count;
    unsigned char *bytes;
    double        *values;
    cl_mem         buffer;
} check_array;

static size_t dtype_bytes(clattn_dtype t)
{
    return t == CLATTN_F32 ? 4 : 2;
}

static uint32_t float_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* x as an f16, truncated; what is too small for a normal f16 becomes 0 (the reference reads
   the stored value back, so the rounding need not be the device's). */
static uint16_t f16_of(float x)
{
    const uint32_t u = float_bits(x);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const int e = (int)((u >> 23) & 0xffu) - 127 + 15;
    if (isnan(x))
        return sign | 0x7e00u;
    if (isinf(x) || e >= 31)
        return sign | 0x7c00u;
    if (e <= 0)
        return sign;
    return (uint16_t)(sign | (uint16_t)(e << 10) | (uint16_t)((u >> 13) & 0x3ffu));
}

static double f16_value(uint16_t h)
{
    const double sign = (h & 0x8000u) ? -1.0 : 1.0;
    const int e = (h >> 10) & 31, m = h & 0x3ff;
    if (e == 31)
        return m ? NAN : sign * INFINITY;
    return sign * (e ? ldexp(1024 + m, e - 25) : ldexp(m, -24));
}

static void store_value(check_array *a, size_t i, double x)
{
    unsigned char *at = a->bytes + i * dtype_bytes(a->dtype);
    if (a->dtype == CLATTN_F32) {
        const float f = (float)x;
        memcpy(at, &f, sizeof f);
        return;
    }
    const uint16_t h = a->dtype == CLATTN_F16 ? f16_of((float)x)
                                              : (uint16_t)(float_bits((float)x) >> 16);
    memcpy(at, &h, sizeof h);
}

static double value_at(const check_array *a, size_t i)
{
    const unsigned char *at = a->bytes + i * dtype_bytes(a->dtype);
    if (a->dtype == CLATTN_F32) {
        float f;
        memcpy(&f, at, sizeof f);
        return f;
    }
    uint16_t h;
    memcpy(&h, at, sizeof h);
    if (a->dtype == CLATTN_F16)
        return f16_value(h);
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void set_value(check_array *a, size_t i, double x)
{
    store_value(a, i, x);
    a->values[i] = value_at(a, i);
}

static clattn_status array_make(check_array *a, clattn_dtype dtype, size_t count)
{
    memset(a, 0, sizeof *a);
    a->dtype = dtype;
    a->count = count;
    a->bytes = clattn_calloc(count, dtype_bytes(dtype));
    a->values = clattn_calloc(count, sizeof *a->values);
    return a->bytes && a->values
               ? CLATTN_SUCCESS
               : clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for a check");
}

static void array_free(check_array *a)
{
    if (a->buffer)
        clReleaseMemObject(a->buffer);
    free(a->bytes);
    free(a->values);
    memset(a, 0, sizeof *a);
}

/* A linear congruential generator: the checks' inputs and the loop probe's steps. */
static uint32_t lcg_step(uint32_t x)
{
    return x * 1664525u + 1013904223u;
}

/* Multiples of 1/8 in [-1, 1] from a fixed sequence (the same inputs on every run). */
static void array_fill(check_array *a, uint32_t *state)
{
    for (size_t i = 0; i < a->count; i++) {
        *state = lcg_step(*state);
        set_value(a, i, (double)((int)((*state >> 16) % 17u) - 8) / 8.0);
    }
}

static clattn_status array_upload(clattn_context *ctx, check_array *a)
{
    cl_int err = CL_SUCCESS;
    a->buffer = clattn_create_buffer(ctx->cl_ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                     a->count * dtype_bytes(a->dtype), a->bytes, &err);
    return a->buffer ? CLATTN_SUCCESS : clattn_fail_cl(err, "clCreateBuffer (check)");
}

static clattn_status array_download(clattn_context *ctx, check_array *a)
{
    cl_int err = clEnqueueReadBuffer(ctx->check_queue, a->buffer, CL_TRUE, 0,
                                     a->count * dtype_bytes(a->dtype), a->bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return clattn_fail_cl(err, "clEnqueueReadBuffer (check)");
    for (size_t i = 0; i < a->count; i++)
        a->values[i] = value_at(a, i);
    return CLATTN_SUCCESS;
}

/* Largest deviation allowed, relative to the largest magnitude of the answer: four roundings
   of the type the result is stored in (f32 sums over a few hundred terms stay far below). */
static double tolerance(clattn_dtype stored)
{
    return stored == CLATTN_F32 ? 1e-4 : stored == CLATTN_F16 ? 2e-3 : 1.6e-2;
}

/* 1 if got matches want (count values) within tolerance(got->dtype) of the largest finite
   |want|, infinities exactly; else 0 and the first element that does not, in why. */
static int matches(const char *name, const check_array *got, const double *want, char *why,
                   size_t why_size)
{
    double largest = 0.0;
    for (size_t i = 0; i < got->count; i++)
        if (isfinite(want[i]))
            largest = fmax(largest, fabs(want[i]));
    const double allowed = tolerance(got->dtype) * largest;
    for (size_t i = 0; i < got->count; i++) {
        const double g = got->values[i], w = want[i];
        if (g == w || fabs(g - w) <= allowed)
            continue;
        snprintf(why, why_size, "%s element %zu of %zu is %.9g, want %.9g (tolerance %.3g)",
                 name, i, got->count, g, w, allowed);
        return 0;
    }
    return 1;
}

/* ---- the attention problem ------------------------------------------------------------- */

/* One small attention problem: 2 batches, 2 query heads on 1 kv head, causal (bottom-right),
   a bias of the program's bias type with every key of one row at -INFINITY, batch 1 shorter
   in both lengths (seqlens). */
typedef struct attention_case {
    int batch, heads_q, heads_kv, seq_q, seq_k, dim, dim_v;
    int seqlens_q[2], seqlens_k[2];
    int hidden_row;                     /* of batch 0, head 0: every key's bias is -inf */
} attention_case;

/* The problem for a tiling (NULL: the unfused path's): rows of a kv head over one work-group
   and into a second, keys over one tile and into a second (a device that cuts long loops
   short is found by the loop probe instead), head dims one under the buckets. */
static attention_case case_for(const clattn_tiling *t, int64_t loop_limit)
{
    attention_case c;
    memset(&c, 0, sizeof c);
    c.batch = 2;
    c.heads_q = 2;
    c.heads_kv = 1;
    c.seq_q = t ? t->block_m / 2 + 3 : 37;
    c.seq_k = t ? t->block_n + t->block_n / 2 + 1 : 77;
    c.dim = t ? t->d_pad - 1 : 19;
    c.dim_v = t ? t->dv_pad - 1 : 21;
    /* on a device that caps a work-item's loops (check.h), keys that stay under the cap */
    while (t && loop_limit && c.seq_k > 1 &&
           (clattn_forward_loop_bound(t, c.seq_k) > loop_limit ||
            clattn_backward_loop_bound(t, 2 * (int64_t)c.seq_q, c.seq_k) > loop_limit))
        c.seq_k = c.seq_k * 2 / 3;
    c.seqlens_q[0] = c.seq_q;
    c.seqlens_k[0] = c.seq_k;
    c.seqlens_q[1] = c.seq_q - 2;
    const int short_keys = (t ? t->block_n : 32) / 2 + 1;
    c.seqlens_k[1] = c.seq_k < short_keys ? c.seq_k : short_keys;
    c.hidden_row = 1;
    return c;
}

static size_t q_index(const attention_case *c, int b, int h, int i, int d, int dim)
{
    return (((size_t)b * (size_t)c->heads_q + (size_t)h) * (size_t)c->seq_q + (size_t)i) *
               (size_t)dim + (size_t)d;
}

static size_t k_index(const attention_case *c, int b, int i, int d, int dim)
{
    return ((size_t)b * (size_t)c->seq_k + (size_t)i) * (size_t)dim + (size_t)d; /* 1 kv head */
}

static size_t bias_index(const attention_case *c, int b, int h, int i, int j)
{
    return q_index(c, b, h, i, j, c->seq_k);
}

/* The inputs of the problem, and its seqlens buffers. */
typedef struct attention_inputs {
    attention_case c;
    check_array q, k, v, bias;
    cl_mem seqlens_q, seqlens_k;
} attention_inputs;

static void inputs_free(attention_inputs *in)
{
    array_free(&in->q);
    array_free(&in->k);
    array_free(&in->v);
    array_free(&in->bias);
    if (in->seqlens_q)
        clReleaseMemObject(in->seqlens_q);
    if (in->seqlens_k)
        clReleaseMemObject(in->seqlens_k);
}

static clattn_status make_inputs(clattn_context *ctx, const attention_case *c,
                                 const clattn_storage *storage, attention_inputs *in)
{
    memset(in, 0, sizeof *in);
    in->c = *c;
    const size_t rows_q = (size_t)c->batch * (size_t)c->heads_q * (size_t)c->seq_q;
    const size_t rows_k = (size_t)c->batch * (size_t)c->seq_k;
    clattn_status s = array_make(&in->q, storage->qkv, rows_q * (size_t)c->dim);
    if (s == CLATTN_SUCCESS)
        s = array_make(&in->k, storage->qkv, rows_k * (size_t)c->dim);
    if (s == CLATTN_SUCCESS)
        s = array_make(&in->v, storage->qkv, rows_k * (size_t)c->dim_v);
    if (s == CLATTN_SUCCESS)
        s = array_make(&in->bias, storage->bias, rows_q * (size_t)c->seq_k);
    if (s != CLATTN_SUCCESS)
        return s;
    uint32_t state = 12345u;
    array_fill(&in->q, &state);
    array_fill(&in->k, &state);
    array_fill(&in->v, &state);
    array_fill(&in->bias, &state);
    for (int j = 0; j < c->seq_k; j++)
        set_value(&in->bias, bias_index(c, 0, 0, c->hidden_row, j), -INFINITY);
    check_array *uploads[] = {&in->q, &in->k, &in->v, &in->bias};
    for (size_t i = 0; i < 4 && s == CLATTN_SUCCESS; i++)
        s = array_upload(ctx, uploads[i]);
    cl_int err = CL_SUCCESS;
    if (s == CLATTN_SUCCESS)
        in->seqlens_q = clattn_create_buffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                             sizeof c->seqlens_q, (void *)c->seqlens_q, &err);
    if (s == CLATTN_SUCCESS && in->seqlens_q)
        in->seqlens_k = clattn_create_buffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                                             sizeof c->seqlens_k, (void *)c->seqlens_k, &err);
    if (s == CLATTN_SUCCESS && !in->seqlens_k)
        s = clattn_fail_cl(err, "clCreateBuffer (check)");
    return s;
}

static void desc_of(const attention_inputs *in, const clattn_tensor *bias, clattn_algo algo,
                    clattn_attention_desc *desc)
{
    clattn_attention_desc_init(desc);
    desc->causal = 1;
    desc->bias = bias;
    desc->seqlens_q = in->seqlens_q;
    desc->seqlens_k = in->seqlens_k;
    desc->algo = algo;
}

/* The visible keys of row i of batch b: 0 .. the returned bound - 1. */
static int visible_keys(const attention_case *c, int b, int i)
{
    const int seq_q = c->seqlens_q[b], seq_k = c->seqlens_k[b];
    if (i >= seq_q)
        return 0;
    const int last = i + seq_k - seq_q;
    return last < 0 ? 0 : last + 1 < seq_k ? last + 1 : seq_k;
}

/* The score of (b, h, i) against key j, bias included (-inf: hidden). */
static double score(const attention_inputs *in, int b, int h, int i, int j)
{
    const attention_case *c = &in->c;
    double dot = 0.0;
    for (int d = 0; d < c->dim; d++)
        dot += in->q.values[q_index(c, b, h, i, d, c->dim)] *
               in->k.values[k_index(c, b, j, d, c->dim)];
    return dot / sqrt((double)c->dim) + in->bias.values[bias_index(c, b, h, i, j)];
}

/* out [B, Hq, Sq, Dv] and lse [B, Hq, Sq] in f64. */
static void forward_answer(const attention_inputs *in, double *out, double *lse)
{
    const attention_case *c = &in->c;
    for (int b = 0; b < c->batch; b++)
        for (int h = 0; h < c->heads_q; h++)
            for (int i = 0; i < c->seq_q; i++) {
                const size_t row = q_index(c, b, h, i, 0, 1);
                const int keys = visible_keys(c, b, i);
                double top = -INFINITY, sum = 0.0;
                for (int j = 0; j < keys; j++)
                    top = fmax(top, score(in, b, h, i, j));
                for (int d = 0; d < c->dim_v; d++)
                    out[row * (size_t)c->dim_v + (size_t)d] = 0.0;
                lse[row] = -INFINITY;
                if (top == -INFINITY)
                    continue;
                for (int j = 0; j < keys; j++) {
                    const double w = exp(score(in, b, h, i, j) - top);
                    sum += w;
                    for (int d = 0; d < c->dim_v; d++)
                        out[row * (size_t)c->dim_v + (size_t)d] +=
                            w * in->v.values[k_index(c, b, j, d, c->dim_v)];
                }
                for (int d = 0; d < c->dim_v; d++)
                    out[row * (size_t)c->dim_v + (size_t)d] /= sum;
                lse[row] = top + log(sum);
            }
}

static clattn_tensor tensor_of(const check_array *a, int64_t batch, int64_t heads, int64_t seq,
                               int64_t dim)
{
    return clattn_tensor_bhsd(a->buffer, a->dtype, batch, heads, seq, dim);
}

/* ---- the checks ---------------------------------------------------------------------------- */

/* The forward (FUSED, SPLIT_KV or UNFUSED as algo says) of the problem against its answer. */
static clattn_status check_forward(clattn_context *ctx, const clattn_program_check *check,
                                   clattn_algo algo, int *passed, char *why, size_t why_size)
{
    const clattn_tiling *tiling = check->kind == CLATTN_CHECK_UNFUSED ? NULL : &check->tiling;
    const attention_case c = case_for(tiling, ctx->loop_limit);
    attention_inputs in;
    check_array out, lse;
    memset(&in, 0, sizeof in);
    memset(&out, 0, sizeof out);
    memset(&lse, 0, sizeof lse);
    const size_t rows = (size_t)c.batch * (size_t)c.heads_q * (size_t)c.seq_q;
    double *want_out = clattn_calloc(rows * (size_t)c.dim_v, sizeof *want_out);
    double *want_lse = clattn_calloc(rows, sizeof *want_lse);
    clattn_status s = want_out && want_lse ? make_inputs(ctx, &c, &check->storage, &in)
                                           : clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES,
                                                         "no host memory for a check");
    if (s == CLATTN_SUCCESS)
        s = array_make(&out, check->storage.out, rows * (size_t)c.dim_v);
    if (s == CLATTN_SUCCESS)
        s = array_make(&lse, CLATTN_F32, rows);
    if (s == CLATTN_SUCCESS)
        s = array_upload(ctx, &out);
    if (s == CLATTN_SUCCESS)
        s = array_upload(ctx, &lse);
    if (s == CLATTN_SUCCESS) {
        const clattn_tensor tq = tensor_of(&in.q, c.batch, c.heads_q, c.seq_q, c.dim);
        const clattn_tensor tk = tensor_of(&in.k, c.batch, c.heads_kv, c.seq_k, c.dim);
        const clattn_tensor tv = tensor_of(&in.v, c.batch, c.heads_kv, c.seq_k, c.dim_v);
        const clattn_tensor tb = tensor_of(&in.bias, c.batch, c.heads_q, c.seq_q, c.seq_k);
        const clattn_tensor to = tensor_of(&out, c.batch, c.heads_q, c.seq_q, c.dim_v);
        const clattn_tensor tl = tensor_of(&lse, c.batch, c.heads_q, c.seq_q, 1);
        clattn_attention_desc desc;
        desc_of(&in, &tb, algo, &desc);
        s = clattn_forward_with_tiling(ctx, &desc, &tq, &tk, &tv, &to, &tl, tiling);
    }
    if (s == CLATTN_SUCCESS)
        s = array_download(ctx, &out);
    if (s == CLATTN_SUCCESS)
        s = array_download(ctx, &lse);
    if (s == CLATTN_SUCCESS) {
        forward_answer(&in, want_out, want_lse);
        const char *what = algo == CLATTN_ALGO_SPLIT_KV ? "split-KV" : "forward";
        char name[32];
        snprintf(name, sizeof name, "%s out", what);
        *passed = matches(name, &out, want_out, why, why_size);
        snprintf(name, sizeof name, "%s lse", what);
        *passed = *passed && matches(name, &lse, want_lse, why, why_size);
    }
    inputs_free(&in);
    array_free(&out);
    array_free(&lse);
    free(want_out);
    free(want_lse);
    return s;
}

/* The gradients of the problem's forward for dout, from out and lse as stored (what the
   kernels read): dq [B, Hq, Sq, D], dk [B, Hkv, Sk, D], dv [B, Hkv, Sk, Dv]. */
static void backward_answer(const attention_inputs *in, const check_array *out,
                            const check_array *dout, const check_array *lse, double *dq,
                            double *dk, double *dv)
{
    const attention_case *c = &in->c;
    const double scale = 1.0 / sqrt((double)c->dim);
    memset(dq, 0, sizeof *dq * in->q.count);
    memset(dk, 0, sizeof *dk * in->k.count);
    memset(dv, 0, sizeof *dv * in->v.count);
    for (int b = 0; b < c->batch; b++)
        for (int h = 0; h < c->heads_q; h++)
            for (int i = 0; i < c->seq_q; i++) {
                const size_t row = q_index(c, b, h, i, 0, 1);
                const double row_lse = lse->values[row];
                if (row_lse == -INFINITY)
                    continue;
                double delta = 0.0;
                for (int d = 0; d < c->dim_v; d++)
                    delta += dout->values[row * (size_t)c->dim_v + (size_t)d] *
                             out->values[row * (size_t)c->dim_v + (size_t)d];
                for (int j = 0; j < visible_keys(c, b, i); j++) {
                    const double p = exp(score(in, b, h, i, j) - row_lse);
                    double dp = 0.0;
                    for (int d = 0; d < c->dim_v; d++) {
                        const double g = dout->values[row * (size_t)c->dim_v + (size_t)d];
                        dp += g * in->v.values[k_index(c, b, j, d, c->dim_v)];
                        dv[k_index(c, b, j, d, c->dim_v)] += p * g;
                    }
                    const double ds = p * (dp - delta) * scale;
                    for (int d = 0; d < c->dim; d++) {
                        dq[q_index(c, b, h, i, d, c->dim)] +=
                            ds * in->k.values[k_index(c, b, j, d, c->dim)];
                        dk[k_index(c, b, j, d, c->dim)] +=
                            ds * in->q.values[q_index(c, b, h, i, d, c->dim)];
                    }
                }
            }
}

/* The arrays of the backward's check beyond the inputs, and the answers. */
typedef struct backward_arrays {
    check_array out, dout, lse, dq, dk, dv;
    double *want[3];
} backward_arrays;

static void backward_arrays_free(backward_arrays *a)
{
    check_array *arrays[] = {&a->out, &a->dout, &a->lse, &a->dq, &a->dk, &a->dv};
    for (size_t i = 0; i < 6; i++)
        array_free(arrays[i]);
    for (size_t i = 0; i < 3; i++)
        free(a->want[i]);
}

/* out and lse (the forward's answer, as stored) and dout in, zeroed gradients out. */
static clattn_status backward_arrays_make(clattn_context *ctx, const attention_inputs *in,
                                          const clattn_storage *storage, backward_arrays *a)
{
    const attention_case *c = &in->c;
    const size_t rows = (size_t)c->batch * (size_t)c->heads_q * (size_t)c->seq_q;
    memset(a, 0, sizeof *a);
    clattn_status s = array_make(&a->out, storage->out, rows * (size_t)c->dim_v);
    if (s == CLATTN_SUCCESS)
        s = array_make(&a->dout, storage->out, rows * (size_t)c->dim_v);
    if (s == CLATTN_SUCCESS)
        s = array_make(&a->lse, CLATTN_F32, rows);
    if (s == CLATTN_SUCCESS)
        s = array_make(&a->dq, storage->grad, in->q.count);
    if (s == CLATTN_SUCCESS)
        s = array_make(&a->dk, storage->grad, in->k.count);
    if (s == CLATTN_SUCCESS)
        s = array_make(&a->dv, storage->grad, in->v.count);
    const size_t counts[3] = {in->q.count, in->k.count, in->v.count};
    for (size_t i = 0; i < 3 && s == CLATTN_SUCCESS; i++)
        if (!(a->want[i] = clattn_calloc(counts[i], sizeof(double))))
            s = clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for a check");
    if (s != CLATTN_SUCCESS)
        return s;
    /* the forward's answer in the gradients' room, until they are computed */
    double *fwd_out = clattn_calloc(rows * (size_t)c->dim_v, sizeof(double));
    double *fwd_lse = clattn_calloc(rows, sizeof(double));
    if (!fwd_out || !fwd_lse) {
        free(fwd_out);
        free(fwd_lse);
        return clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for a check");
    }
    forward_answer(in, fwd_out, fwd_lse);
    for (size_t i = 0; i < a->out.count; i++)
        set_value(&a->out, i, fwd_out[i]);
    for (size_t i = 0; i < rows; i++)
        set_value(&a->lse, i, fwd_lse[i]);
    free(fwd_out);
    free(fwd_lse);
    uint32_t state = 777u;
    array_fill(&a->dout, &state);
    check_array *uploads[] = {&a->out, &a->dout, &a->lse, &a->dq, &a->dk, &a->dv};
    for (size_t i = 0; i < 6 && s == CLATTN_SUCCESS; i++)
        s = array_upload(ctx, uploads[i]);
    return s;
}

static clattn_status check_backward(clattn_context *ctx, const clattn_program_check *check,
                                    int *passed, char *why, size_t why_size)
{
    const attention_case c = case_for(&check->tiling, ctx->loop_limit);
    attention_inputs in;
    backward_arrays a;
    memset(&a, 0, sizeof a);
    clattn_status s = make_inputs(ctx, &c, &check->storage, &in);
    if (s == CLATTN_SUCCESS)
        s = backward_arrays_make(ctx, &in, &check->storage, &a);
    if (s == CLATTN_SUCCESS) {
        const clattn_tensor tq = tensor_of(&in.q, c.batch, c.heads_q, c.seq_q, c.dim);
        const clattn_tensor tk = tensor_of(&in.k, c.batch, c.heads_kv, c.seq_k, c.dim);
        const clattn_tensor tv = tensor_of(&in.v, c.batch, c.heads_kv, c.seq_k, c.dim_v);
        const clattn_tensor tb = tensor_of(&in.bias, c.batch, c.heads_q, c.seq_q, c.seq_k);
        const clattn_tensor to = tensor_of(&a.out, c.batch, c.heads_q, c.seq_q, c.dim_v);
        const clattn_tensor tdo = tensor_of(&a.dout, c.batch, c.heads_q, c.seq_q, c.dim_v);
        const clattn_tensor tl = tensor_of(&a.lse, c.batch, c.heads_q, c.seq_q, 1);
        const clattn_tensor tdq = tensor_of(&a.dq, c.batch, c.heads_q, c.seq_q, c.dim);
        const clattn_tensor tdk = tensor_of(&a.dk, c.batch, c.heads_kv, c.seq_k, c.dim);
        const clattn_tensor tdv = tensor_of(&a.dv, c.batch, c.heads_kv, c.seq_k, c.dim_v);
        clattn_attention_desc desc;
        desc_of(&in, &tb, CLATTN_ALGO_FUSED, &desc);
        s = clattn_backward_with_tiling(ctx, &desc, &tq, &tk, &tv, &to, &tdo, &tl, &tdq, &tdk,
                                        &tdv, &check->tiling);
    }
    check_array *results[] = {&a.dq, &a.dk, &a.dv};
    for (size_t i = 0; i < 3 && s == CLATTN_SUCCESS; i++)
        s = array_download(ctx, results[i]);
    if (s == CLATTN_SUCCESS) {
        backward_answer(&in, &a.out, &a.dout, &a.lse, a.want[0], a.want[1], a.want[2]);
        static const char *const names[] = {"backward dq", "backward dk", "backward dv"};
        *passed = 1;
        for (size_t i = 0; i < 3 && *passed; i++)
            *passed = matches(names[i], results[i], a.want[i], why, why_size);
    }
    inputs_free(&in);
    backward_arrays_free(&a);
    return s;
}

/* Two parts of 5 rows in one buffer, the way split-KV keeps them: rows where both count, where
   one or the other is empty (lse -inf), where both are (out 0, lse -inf), and where one
   outweighs the other by e^30. */
static clattn_status check_merge(clattn_context *ctx, const clattn_program_check *check,
                                 int *passed, char *why, size_t why_size)
{
    enum { ROWS = 5, DV = 19 };
    static const double part_lses[2][ROWS] = {{0.5, 1.0, -INFINITY, -INFINITY, 30.0},
                                              {-0.25, -INFINITY, 2.0, -INFINITY, 0.0}};
    check_array parts, lses, out, lse;
    memset(&parts, 0, sizeof parts);
    memset(&lses, 0, sizeof lses);
    memset(&out, 0, sizeof out);
    memset(&lse, 0, sizeof lse);
    double want_out[ROWS * DV], want_lse[ROWS];
    clattn_status s = array_make(&parts, check->storage.qkv, 2 * ROWS * DV);
    if (s == CLATTN_SUCCESS)
        s = array_make(&lses, CLATTN_F32, 2 * ROWS);
    if (s == CLATTN_SUCCESS)
        s = array_make(&out, check->storage.out, ROWS * DV);
    if (s == CLATTN_SUCCESS)
        s = array_make(&lse, CLATTN_F32, ROWS);
    if (s == CLATTN_SUCCESS) {
        uint32_t state = 4242u;
        array_fill(&parts, &state);
        for (int p = 0; p < 2; p++)
            for (int r = 0; r < ROWS; r++)
                set_value(&lses, (size_t)(p * ROWS + r), part_lses[p][r]);
        check_array *uploads[] = {&parts, &lses, &out, &lse};
        for (size_t i = 0; i < 4 && s == CLATTN_SUCCESS; i++)
            s = array_upload(ctx, uploads[i]);
    }
    if (s == CLATTN_SUCCESS) {
        const clattn_tensor tp = tensor_of(&parts, 1, 1, ROWS, DV);
        const clattn_tensor tpl = tensor_of(&lses, 1, 1, ROWS, 1);
        const clattn_tensor to = tensor_of(&out, 1, 1, ROWS, DV);
        const clattn_tensor tl = tensor_of(&lse, 1, 1, ROWS, 1);
        const clattn_merge_job job = {&tp, &tpl, ROWS * DV, ROWS, 2, NULL, 0, 0, 1, &to, &tl};
        clattn_merge_kernel kernel;
        clattn_merge_kernel_of(&job, &kernel);
        cl_event done = NULL;
        s = clattn_enqueue_kernel(ctx, &kernel.launch, 0, NULL, &done);
        if (s == CLATTN_SUCCESS)
            s = clattn_wait_and_release(done);
    }
    if (s == CLATTN_SUCCESS)
        s = array_download(ctx, &out);
    if (s == CLATTN_SUCCESS)
        s = array_download(ctx, &lse);
    if (s == CLATTN_SUCCESS) {
        for (int r = 0; r < ROWS; r++) {
            const double a = lses.values[r], b = lses.values[ROWS + r];
            const double top = fmax(a, b);
            const double wa = a == -INFINITY ? 0.0 : exp(a - top);
            const double wb = b == -INFINITY ? 0.0 : exp(b - top);
            want_lse[r] = top == -INFINITY ? -INFINITY : top + log(wa + wb);
            for (int d = 0; d < DV; d++)
                want_out[r * DV + d] =
                    top == -INFINITY ? 0.0
                                     : (wa * parts.values[r * DV + d] +
                                        wb * parts.values[(ROWS + r) * DV + d]) / (wa + wb);
        }
        *passed = matches("merge out", &out, want_out, why, why_size) &&
                  matches("merge lse", &lse, want_lse, why, why_size);
    }
    array_free(&parts);
    array_free(&lses);
    array_free(&out);
    array_free(&lse);
    return s;
}

static clattn_status run_check(clattn_context *ctx, const clattn_program_check *check,
                               int *passed, char *why, size_t why_size)
{
    switch (check->kind) {
    case CLATTN_CHECK_FORWARD:
        return check_forward(ctx, check, CLATTN_ALGO_FUSED, passed, why, why_size);
    case CLATTN_CHECK_SPLIT_KV:
        return check_forward(ctx, check, CLATTN_ALGO_SPLIT_KV, passed, why, why_size);
    case CLATTN_CHECK_BACKWARD:
        return check_backward(ctx, check, passed, why, why_size);
    case CLATTN_CHECK_MERGE:
        return check_merge(ctx, check, passed, why, why_size);
    case CLATTN_CHECK_UNFUSED:
        return check_forward(ctx, check, CLATTN_ALGO_UNFUSED, passed, why, why_size);
    }
    return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "unknown check kind %d", (int)check->kind);
}

/* The check queue, made on first use; called under ctx->lock. */
static clattn_status check_queue(clattn_context *ctx)
{
    cl_int err = CL_SUCCESS;
    if (!ctx->check_queue)
        ctx->check_queue = clCreateCommandQueue(ctx->cl_ctx, ctx->device, 0, &err);
    return ctx->check_queue ? CLATTN_SUCCESS
                            : clattn_fail_cl(err, "clCreateCommandQueue (check)");
}

clattn_status clattn_program_check_run(clattn_context *ctx, const clattn_program_check *check,
                                       int *passed, char *why, size_t why_size)
{
    *passed = 0;
    pthread_mutex_lock(&ctx->lock);
    clattn_status s = check_queue(ctx);
    if (s == CLATTN_SUCCESS) {
        ctx->checking++;
        s = run_check(ctx, check, passed, why, why_size);
        ctx->checking--;
    }
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

static const char *const probe_files[] = {"launch.h", "probe.cl", NULL};

/* Run loop_probe and set ctx->loop_limit from how many of its steps ran. */
static clattn_status probe_loop_limit(clattn_context *ctx)
{
    check_array out;
    clattn_status s = array_make(&out, CLATTN_F32, 1);
    if (s == CLATTN_SUCCESS)
        s = array_upload(ctx, &out);
    if (s == CLATTN_SUCCESS) {
        const clattn_loop_probe_params params = {CLATTN_LOOP_PROBE_ITERATIONS, {0, 0, 0}};
        const clattn_kernel_launch launch = {probe_files, "", "loop_probe", &out.buffer, 1,
                                             &params, sizeof params, 1, {1, 1, 1}, {1, 1, 1},
                                             NULL, 0};
        cl_event done = NULL;
        s = clattn_enqueue_kernel(ctx, &launch, 0, NULL, &done);
        if (s == CLATTN_SUCCESS)
            s = clattn_wait_and_release(done);
    }
    if (s == CLATTN_SUCCESS)
        s = array_download(ctx, &out);
    if (s == CLATTN_SUCCESS) {
        uint32_t got, x = 1u;
        memcpy(&got, out.bytes, sizeof got);
        int64_t steps = 0;
        while (steps < CLATTN_LOOP_PROBE_ITERATIONS && x != got) {
            x = lcg_step(x);
            steps++;
        }
        ctx->loop_limit = steps < CLATTN_LOOP_PROBE_ITERATIONS ? steps : 0;
        ctx->loop_limit_probed = 1;
        if (ctx->loop_limit)
            clattn_log(CLATTN_LOG_WARN, "%s stops a work-item's loops after %lld iterations in "
                       "all (Mesa's llvmpipe does: its loop limiter), and the kernel still "
                       "completes: calls whose loops could run longer are refused",
                       ctx->probe.device_name, (long long)ctx->loop_limit);
    }
    array_free(&out);
    return s;
}

/* The caps found so far in this process, by device: a device's cap does not change, so each
   is probed once however many contexts use it. */
typedef struct device_cap {
    cl_device_id device;
    int64_t      limit;
} device_cap;
static device_cap      known_caps[16];
static size_t          known_cap_count;
static pthread_mutex_t known_caps_lock = PTHREAD_MUTEX_INITIALIZER;

static int known_cap(cl_device_id device, int64_t *limit)
{
    pthread_mutex_lock(&known_caps_lock);
    size_t i = 0;
    while (i < known_cap_count && known_caps[i].device != device)
        i++;
    if (i < known_cap_count)
        *limit = known_caps[i].limit;
    pthread_mutex_unlock(&known_caps_lock);
    return i < known_cap_count;
}

static void remember_cap(cl_device_id device, int64_t limit)
{
    pthread_mutex_lock(&known_caps_lock);
    if (known_cap_count < sizeof known_caps / sizeof known_caps[0])
        known_caps[known_cap_count++] = (device_cap){device, limit};
    pthread_mutex_unlock(&known_caps_lock);
}

clattn_status clattn_device_loop_limit(clattn_context *ctx, int64_t *limit)
{
    pthread_mutex_lock(&ctx->lock);
    clattn_status s = CLATTN_SUCCESS;
    if (!ctx->loop_limit_probed && known_cap(ctx->device, &ctx->loop_limit))
        ctx->loop_limit_probed = 1;
    if (!ctx->loop_limit_probed)
        s = check_queue(ctx);
    if (s == CLATTN_SUCCESS && !ctx->loop_limit_probed) {
        ctx->checking++;
        s = probe_loop_limit(ctx);
        ctx->checking--;
        if (s == CLATTN_SUCCESS)
            remember_cap(ctx->device, ctx->loop_limit);
    }
    *limit = ctx->loop_limit;
    pthread_mutex_unlock(&ctx->lock);
    return s;
}
