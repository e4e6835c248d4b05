/* The backward call: validate, plan, and enqueue the two kernels of cl/attention_backward.cl
   (dk and dv over key blocks, then dq over query blocks). */
#include <stdio.h>
#include <string.h>

#include "context.h"
#include "kernel_args.h"
#include "plan.h"
#include "program.h"
#include "status.h"
#include "tensor.h"

static const char *const backward_files[] = {"launch.h", "common.cl", "tiles.cl",
                                             "attention_backward.cl", NULL};

/* A validated backward call and its tiling. */
typedef struct backward_call {
    clattn_backward_args args;
    clattn_problem       problem;
    clattn_tiling        tiling;
} backward_call;

static clattn_status prepare(clattn_context *ctx, const clattn_attention_desc *desc,
                             const clattn_tensor *q, const clattn_tensor *k,
                             const clattn_tensor *v, const clattn_tensor *out,
                             const clattn_tensor *dout, const clattn_tensor *lse,
                             const clattn_tensor *dq, const clattn_tensor *dk,
                             const clattn_tensor *dv, cl_uint num_wait,
                             const cl_event *wait_list, backward_call *call)
{
    if (!ctx)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "ctx is NULL");
    memset(call, 0, sizeof *call);
    clattn_forward_args *f = &call->args.forward;
    *f = clattn_forward_args_of(ctx->cl_ctx, desc, q, k, v, out, lse, CLATTN_OUT_READ, num_wait,
                                wait_list);
    call->args.dout = clattn_view_of("dout", dout, 0);
    call->args.dq = clattn_view_of("dq", dq, 1);
    call->args.dk = clattn_view_of("dk", dk, 1);
    call->args.dv = clattn_view_of("dv", dv, 1);
    clattn_status s = clattn_validate_backward(&call->args);
    if (s != CLATTN_SUCCESS)
        return s;
    call->problem = clattn_problem_of(f);
    if ((s = clattn_check_kernel_limits(&call->problem)))
        return s;
    char why[160];
    s = clattn_plan_backward(&ctx->probe, &call->problem, desc->algo, &call->tiling, why, sizeof why);
    if (s != CLATTN_SUCCESS)
        return clattn_fail(s, "backward cannot run head_dim=%lld head_dim_v=%lld on %s: %s",
                           (long long)call->problem.head_dim, (long long)call->problem.head_dim_v,
                           ctx->probe.device_name, why);
    return CLATTN_SUCCESS;
}

/* Both kernels take the same arguments. */
static cl_int set_backward_args(cl_kernel kernel, const backward_call *call)
{
    const clattn_backward_args *a = &call->args;
    const clattn_forward_args *f = &a->forward;
    const clattn_view *views[] = {&f->q, &f->k, &f->v, &f->out, &a->dout, &f->lse,
                                  &a->dq, &a->dk, &a->dv};
    cl_uint index = 0;
    cl_int err = CL_SUCCESS;
    for (size_t i = 0; i < sizeof views / sizeof views[0]; i++)
        err |= clattn_set_view_args(kernel, &index, views[i]->t);
    err |= clattn_set_mask_args(kernel, &index, f);
    err |= clattn_set_scalar_args(kernel, &index, f->desc, &call->problem, 0);
    const cl_float grad_mult = (cl_float)clattn_score_scale(f->desc, call->problem.head_dim);
    err |= clSetKernelArg(kernel, index++, sizeof grad_mult, &grad_mult);
    return err;
}

static clattn_status enqueue(clattn_context *ctx, const backward_call *call, cl_event *event)
{
    const clattn_tiling *t = &call->tiling;
    const clattn_problem *p = &call->problem;
    const clattn_forward_args *f = &call->args.forward;
    const clattn_storage storage = {p->dtype, f->out.t->dtype,
                                    f->bias.t ? f->bias.t->dtype : CLATTN_F32,
                                    call->args.dq.t->dtype};
    char options[256];
    clattn_tiling_build_options(t, &storage, options, sizeof options);
    const int64_t dkdv_rows = p->seq_k, dq_rows = p->seq_q * (p->heads_q / p->heads_kv);
    const size_t dkdv_global[3] = {(size_t)((dkdv_rows + t->block_m - 1) / t->block_m) * (size_t)t->wg,
                                   (size_t)p->heads_kv, (size_t)p->batch};
    const size_t dq_global[3] = {(size_t)((dq_rows + t->block_m - 1) / t->block_m) * (size_t)t->wg,
                                 (size_t)p->heads_kv, (size_t)p->batch};
    const size_t local[3] = {(size_t)t->wg, 1, 1};

    pthread_mutex_lock(&ctx->lock);
    cl_kernel dkdv = NULL, dq = NULL;
    clattn_status s = clattn_program_kernel(ctx, backward_files, options, "attention_backward_dkdv",
                                            &dkdv);
    if (s == CLATTN_SUCCESS)
        s = clattn_program_kernel(ctx, backward_files, options, "attention_backward_dq", &dq);
    if (s == CLATTN_SUCCESS &&
        (set_backward_args(dkdv, call) != CL_SUCCESS || set_backward_args(dq, call) != CL_SUCCESS))
        s = clattn_fail(CLATTN_ERROR_OPENCL, "clSetKernelArg(attention_backward_*) failed");
    if (s == CLATTN_SUCCESS) {
        cl_int err = clEnqueueNDRangeKernel(ctx->queue, dkdv, 3, NULL, dkdv_global, local,
                                            f->num_wait, f->num_wait ? f->wait_list : NULL, NULL);
        if (err != CL_SUCCESS)
            s = clattn_fail_cl(err, "clEnqueueNDRangeKernel(attention_backward_dkdv)");
    }
    if (s == CLATTN_SUCCESS) {
        /* the queue is in order: dq's event completes after both kernels */
        cl_int err = clEnqueueNDRangeKernel(ctx->queue, dq, 3, NULL, dq_global, local, 0, NULL,
                                            event);
        if (err != CL_SUCCESS)
            s = clattn_fail_cl(err, "clEnqueueNDRangeKernel(attention_backward_dq)");
    }
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

CLATTN_API clattn_status clattn_attention_backward(clattn_context *ctx,
    const clattn_attention_desc *desc,
    const clattn_tensor *q, const clattn_tensor *k, const clattn_tensor *v,
    const clattn_tensor *out, const clattn_tensor *dout, const clattn_tensor *lse,
    const clattn_tensor *dq, const clattn_tensor *dk, const clattn_tensor *dv,
    cl_uint num_wait, const cl_event *wait_list, cl_event *event)
{
    if (event)
        *event = NULL;
    backward_call call;
    clattn_status s = prepare(ctx, desc, q, k, v, out, dout, lse, dq, dk, dv, num_wait, wait_list,
                              &call);
    if (s == CLATTN_SUCCESS)
        s = enqueue(ctx, &call, event);
    return s == CLATTN_SUCCESS ? clattn_succeed() : s;
}
