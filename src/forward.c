/* The forward call: validate, plan, and enqueue cl/attention_forward.cl. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "context.h"
#include "plan.h"
#include "program.h"
#include "status.h"
#include "tensor.h"

static const char *const forward_files[] = {"common.cl", "attention_forward.cl", NULL};

/* A validated forward call and how it will run. */
typedef struct forward_call {
    clattn_forward_args args;
    clattn_problem      problem;
    clattn_tiling       tiling;
} forward_call;

static const char *dtype_name(clattn_dtype t)
{
    return t == CLATTN_F16 ? "f16" : t == CLATTN_BF16 ? "bf16" : "f32";
}

/* Valid requests this version cannot run yet; the README's feature table lists them. */
static clattn_status check_implemented(const clattn_forward_args *a)
{
    const clattn_attention_desc *d = a->desc;
    const char *missing = NULL;
    if (a->q.t->dtype != CLATTN_F32)
        missing = "f16 and bf16 q, k, v";
    else if (a->out.t && a->out.t->dtype != CLATTN_F32)
        missing = "f16 and bf16 out";
    else if (d->softcap > 0.0f)
        missing = "softcap";
    else if (d->bias)
        missing = "bias";
    else if (d->seqlens_q || d->seqlens_k)
        missing = "seqlens_q and seqlens_k";
    else if (d->dropout_p > 0.0f)
        missing = "dropout";
    else if (d->algo == CLATTN_ALGO_SPLIT_KV || d->algo == CLATTN_ALGO_UNFUSED)
        missing = d->algo == CLATTN_ALGO_SPLIT_KV ? "CLATTN_ALGO_SPLIT_KV" : "CLATTN_ALGO_UNFUSED";
    if (missing)
        return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "%s: not implemented in clattn %s", missing,
                           clattn_version_string());
    if (a->q.t->dims[2] > INT32_MAX || a->k.t->dims[2] > INT32_MAX)
        return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "q.dims[2]=%lld, k.dims[2]=%lld: sequences "
                           "are limited to 2^31-1", (long long)a->q.t->dims[2],
                           (long long)a->k.t->dims[2]);
    return CLATTN_SUCCESS;
}

/* Validate the call (out and lse may be NULL tensors for queries) and plan it. */
static clattn_status prepare(clattn_context *ctx, const clattn_attention_desc *desc,
                             const clattn_tensor *q, const clattn_tensor *k,
                             const clattn_tensor *v, const clattn_tensor *out,
                             const clattn_tensor *lse, int with_outputs, cl_uint num_wait,
                             const cl_event *wait_list, forward_call *call)
{
    if (!ctx)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "ctx is NULL");
    clattn_forward_args *a = &call->args;
    memset(call, 0, sizeof *call);
    a->desc = desc;
    a->q = clattn_view_of("q", q, 0);
    a->k = clattn_view_of("k", k, 0);
    a->v = clattn_view_of("v", v, 0);
    if (with_outputs) {
        a->out = clattn_view_of("out", out, 1);
        a->lse = clattn_view_of("lse", lse, 1);
    }
    a->num_wait = num_wait;
    a->wait_list = wait_list;
    a->context = ctx->cl_ctx;
    clattn_status s = clattn_validate_forward(a);
    if (s == CLATTN_SUCCESS)
        s = check_implemented(a);
    if (s != CLATTN_SUCCESS)
        return s;

    clattn_problem *p = &call->problem;
    p->dtype = q->dtype;
    p->batch = q->dims[0];
    p->heads_q = q->dims[1];
    p->heads_kv = k->dims[1];
    p->seq_q = q->dims[2];
    p->seq_k = k->dims[2];
    p->head_dim = q->dims[3];
    p->head_dim_v = v->dims[3];
    p->causal = desc->causal;
    char why[256];
    s = clattn_plan_forward(&ctx->probe, p, &call->tiling, why, sizeof why);
    if (s != CLATTN_SUCCESS)
        return clattn_fail(s, "no fused tiling for head_dim=%lld head_dim_v=%lld on %s: %s",
                           (long long)p->head_dim, (long long)p->head_dim_v,
                           ctx->probe.device_name, why);
    return CLATTN_SUCCESS;
}

/* Arguments of one strided view: buffer, element offset, batch, head and seq strides. */
static cl_int set_view_args(cl_kernel kernel, cl_uint *index, const clattn_tensor *t)
{
    cl_mem buffer = t ? t->buffer : NULL;
    cl_long values[4] = {0, 0, 0, 0};
    if (t) {
        values[0] = (cl_long)(t->offset / clattn_dtype_size(t->dtype));
        for (int i = 0; i < 3; i++)
            values[i + 1] = t->strides[i];
    }
    cl_int err = clSetKernelArg(kernel, (*index)++, sizeof buffer, &buffer);
    for (int i = 0; i < 4 && err == CL_SUCCESS; i++)
        err = clSetKernelArg(kernel, (*index)++, sizeof values[i], &values[i]);
    return err;
}

static cl_int set_forward_args(cl_kernel kernel, const forward_call *call)
{
    const clattn_forward_args *a = &call->args;
    const clattn_problem *p = &call->problem;
    const clattn_attention_desc *d = a->desc;
    double scale = d->scale != 0.0f ? d->scale : 1.0 / sqrt((double)p->head_dim);
    cl_float scale_log2e = (cl_float)(scale * 1.4426950408889634); /* log2(e) */
    cl_int ints[] = {a->lse.t != NULL, (cl_int)p->seq_q, (cl_int)p->seq_k, (cl_int)p->head_dim,
                     (cl_int)p->head_dim_v, (cl_int)(p->heads_q / p->heads_kv)};
    cl_int causal = d->causal;
    cl_long off = d->align == CLATTN_ALIGN_BOTTOM_RIGHT ? p->seq_k - p->seq_q : 0;
    cl_long window_left = d->window_left, window_right = d->window_right;

    cl_uint index = 0;
    cl_int err = CL_SUCCESS;
    const clattn_tensor *views[] = {a->q.t, a->k.t, a->v.t, a->out.t, a->lse.t};
    for (int i = 0; i < 5 && err == CL_SUCCESS; i++)
        err = set_view_args(kernel, &index, views[i]);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && err == CL_SUCCESS; i++)
        err = clSetKernelArg(kernel, index++, sizeof ints[i], &ints[i]);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(kernel, index++, sizeof scale_log2e, &scale_log2e);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(kernel, index++, sizeof causal, &causal);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(kernel, index++, sizeof off, &off);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(kernel, index++, sizeof window_left, &window_left);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(kernel, index++, sizeof window_right, &window_right);
    return err;
}

static clattn_status enqueue_forward(clattn_context *ctx, const forward_call *call,
                                     cl_event *event)
{
    const clattn_tiling *t = &call->tiling;
    const clattn_problem *p = &call->problem;
    char options[256];
    clattn_tiling_build_options(t, p->dtype, options, sizeof options);
    size_t blocks = (size_t)((p->seq_q + t->block_m - 1) / t->block_m);
    size_t global[3] = {blocks * (size_t)t->wg, (size_t)p->heads_q, (size_t)p->batch};
    size_t local[3] = {(size_t)t->wg, 1, 1};

    pthread_mutex_lock(&ctx->lock);
    cl_kernel kernel = NULL;
    clattn_status s = clattn_program_kernel(ctx, forward_files, options, "attention_forward", &kernel);
    if (s == CLATTN_SUCCESS) {
        cl_int err = set_forward_args(kernel, call);
        if (err != CL_SUCCESS)
            s = clattn_fail_cl(err, "clSetKernelArg(attention_forward)");
    }
    if (s == CLATTN_SUCCESS) {
        cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, 3, NULL, global, local,
                                            call->args.num_wait,
                                            call->args.num_wait ? call->args.wait_list : NULL, event);
        if (err != CL_SUCCESS)
            s = clattn_fail_cl(err, "clEnqueueNDRangeKernel(attention_forward)");
    }
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

CLATTN_API clattn_status clattn_attention_forward(clattn_context *ctx,
    const clattn_attention_desc *desc,
    const clattn_tensor *q, const clattn_tensor *k, const clattn_tensor *v,
    const clattn_tensor *out, const clattn_tensor *lse,
    cl_uint num_wait, const cl_event *wait_list, cl_event *event)
{
    if (event)
        *event = NULL;
    forward_call call;
    clattn_status s = prepare(ctx, desc, q, k, v, out, lse, 1, num_wait, wait_list, &call);
    if (s == CLATTN_SUCCESS)
        s = enqueue_forward(ctx, &call, event);
    if (s != CLATTN_SUCCESS && event)
        *event = NULL;
    return s == CLATTN_SUCCESS ? clattn_succeed() : s;
}

CLATTN_API clattn_status clattn_attention_plan(clattn_context *ctx,
    const clattn_attention_desc *desc,
    const clattn_tensor *q, const clattn_tensor *k, const clattn_tensor *v,
    char *buf, size_t buf_size)
{
    if (buf && buf_size)
        buf[0] = '\0';
    forward_call call;
    clattn_status s = prepare(ctx, desc, q, k, v, NULL, NULL, 0, 0, NULL, &call);
    if (s != CLATTN_SUCCESS)
        return s;
    if (buf && buf_size) {
        int n = snprintf(buf, buf_size, "fused %s d=%lld dv=%lld ", dtype_name(call.problem.dtype),
                         (long long)call.problem.head_dim, (long long)call.problem.head_dim_v);
        if (n > 0 && (size_t)n < buf_size)
            clattn_tiling_describe(&call.tiling, buf + n, buf_size - (size_t)n);
    }
    return clattn_succeed();
}

CLATTN_API clattn_status clattn_attention_workspace_size(clattn_context *ctx,
    const clattn_attention_desc *desc,
    const clattn_tensor *q, const clattn_tensor *k, const clattn_tensor *v, size_t *bytes)
{
    if (!bytes)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "bytes is NULL");
    *bytes = 0;
    forward_call call;
    clattn_status s = prepare(ctx, desc, q, k, v, NULL, NULL, 0, 0, NULL, &call);
    /* The fused forward streams keys through local memory: it needs no scratch. */
    return s == CLATTN_SUCCESS ? clattn_succeed() : s;
}
