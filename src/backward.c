/* The backward call: validate, plan, and enqueue the two kernels of cl/attention_backward.cl
   (dk and dv over key blocks, then dq over query blocks). */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "context.h"
#include "enqueue.h"
#include "params.h"
#include "plan.h"
#include "status.h"
#include "tensor.h"

static const char *const backward_files[] = {"launch.h", "semantics.h", "common.cl", "tiles.cl",
                                             "attention_backward.cl", NULL};

/* A validated backward call and its tiling. */
typedef struct backward_call {
    clattn_attention_desc desc;         /* a 0.1 caller's desc, completed (args.forward.desc) */
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
                             const cl_event *wait_list, const clattn_tiling *fixed,
                             backward_call *call)
{
    if (!ctx)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "ctx is NULL");
    memset(call, 0, sizeof *call);
    clattn_forward_args *f = &call->args.forward;
    desc = clattn_desc_complete(desc, &call->desc);
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
    if (fixed) {
        call->tiling = *fixed;
        return CLATTN_SUCCESS;
    }
    char why[160];
    s = clattn_plan_backward(&ctx->probe, &call->problem, desc->algo, &call->tiling, why, sizeof why);
    if (s != CLATTN_SUCCESS)
        return clattn_fail(s, "backward cannot run head_dim=%lld head_dim_v=%lld on %s: %s",
                           (long long)call->problem.head_dim, (long long)call->problem.head_dim_v,
                           ctx->probe.device_name, why);
    return CLATTN_SUCCESS;
}

/* Both kernels take the same parameters. */
static clattn_backward_params backward_params(const backward_call *call)
{
    const clattn_backward_args *a = &call->args;
    const clattn_forward_args *f = &a->forward;
    clattn_backward_params p;
    memset(&p, 0, sizeof p);
    p.q = clattn_view_params_of(f->q.t, 0);
    p.k = clattn_view_params_of(f->k.t, 0);
    p.v = clattn_view_params_of(f->v.t, 0);
    p.out = clattn_view_params_of(f->out.t, 0);
    p.dout = clattn_view_params_of(a->dout.t, 0);
    p.lse = clattn_view_params_of(f->lse.t, 0);
    p.dq = clattn_view_params_of(a->dq.t, 0);
    p.dk = clattn_view_params_of(a->dk.t, 0);
    p.dv = clattn_view_params_of(a->dv.t, 0);
    p.bias = clattn_view_params_of(f->bias.t, 1);
    p.attn = clattn_attention_params_of(f->desc, &call->problem,
                                        f->desc->accumulate ? BACKWARD_ACCUMULATE : 0);
    p.grad_mult = (clattn_f32)clattn_score_scale(f->desc, call->problem.head_dim);
    return p;
}

/* dk and dv over key blocks, then dq over query blocks; the queue is in order, so dq's event
   completes after both. */
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
    const clattn_program_check check = {CLATTN_CHECK_BACKWARD, *t, storage};
    const clattn_backward_params params = backward_params(call);
    const cl_mem buffers[] = {f->q.t->buffer, f->k.t->buffer, f->v.t->buffer, f->out.t->buffer,
                              call->args.dout.t->buffer, f->lse.t->buffer,
                              call->args.dq.t->buffer, call->args.dk.t->buffer,
                              call->args.dv.t->buffer, f->bias.t ? f->bias.t->buffer : NULL,
                              f->desc->seqlens_q, f->desc->seqlens_k};
    const int64_t dkdv_rows = p->seq_k, dq_rows = p->seq_q * (p->heads_q / p->heads_kv);
    const int64_t loop_bound = clattn_backward_loop_bound(t, dq_rows, p->seq_k);
    const clattn_kernel_launch launches[2] = {
        {backward_files, options, "attention_backward_dkdv", buffers, 12, &params, sizeof params,
         3, {(size_t)((dkdv_rows + t->block_m - 1) / t->block_m) * (size_t)t->wg,
             (size_t)p->heads_kv, (size_t)p->batch}, {(size_t)t->wg, 1, 1}, &check,
         loop_bound},
        {backward_files, options, "attention_backward_dq", buffers, 12, &params, sizeof params,
         3, {(size_t)((dq_rows + t->block_m - 1) / t->block_m) * (size_t)t->wg,
             (size_t)p->heads_kv, (size_t)p->batch}, {(size_t)t->wg, 1, 1}, &check,
         loop_bound}};
    return clattn_enqueue_kernels(ctx, launches, 2, f->num_wait, f->wait_list, event);
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
                              NULL, &call);
    if (s == CLATTN_SUCCESS)
        s = enqueue(ctx, &call, event);
    return s == CLATTN_SUCCESS ? clattn_succeed() : s;
}

clattn_status clattn_backward_with_tiling(clattn_context *ctx, const clattn_attention_desc *desc,
                                          const clattn_tensor *q, const clattn_tensor *k,
                                          const clattn_tensor *v, const clattn_tensor *out,
                                          const clattn_tensor *dout, const clattn_tensor *lse,
                                          const clattn_tensor *dq, const clattn_tensor *dk,
                                          const clattn_tensor *dv, const clattn_tiling *tiling)
{
    backward_call call;
    cl_event done = NULL;
    clattn_status s = prepare(ctx, desc, q, k, v, out, dout, lse, dq, dk, dv, 0, NULL, tiling,
                              &call);
    if (s == CLATTN_SUCCESS)
        s = enqueue(ctx, &call, &done);
    return s == CLATTN_SUCCESS ? clattn_wait_and_release(done) : s;
}
