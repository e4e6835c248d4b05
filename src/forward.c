/* The forward call: validate, plan (FUSED, SPLIT_KV or UNFUSED), and enqueue. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "context.h"
#include "enqueue.h"
#include "fault.h"
#include "log.h"
#include "merge.h"
#include "params.h"
#include "plan.h"
#include "program.h"
#include "scratch.h"
#include "status.h"
#include "tensor.h"
#include "tools.h"
#include "unfused.h"

static const char *const forward_files[] = {"launch.h", "semantics.h", "common.cl", "tiles.cl",
                                            "attention_forward.cl", NULL};

/* A validated forward call and how it will run. */
typedef struct forward_call {
    clattn_attention_desc desc;         /* a 0.1 caller's desc, completed (args.desc) */
    clattn_forward_args args;
    clattn_problem      problem;
    clattn_plan         plan;
    size_t              workspace_bytes;
} forward_call;

static const char *dtype_name(clattn_dtype t)
{
    return t == CLATTN_F16 ? "f16" : t == CLATTN_BF16 ? "bf16" : "f32";
}

/* How a plan line names the source of its tiling (the heuristic's: nothing). */
static const char *const source_words[] = {"", "tuned=exact ", "tuned=device ", "tuned=class ",
                                           "forced "};

static const char *algo_name(clattn_algo a)
{
    return a == CLATTN_ALGO_SPLIT_KV ? "split_kv" : a == CLATTN_ALGO_UNFUSED ? "unfused" : "fused";
}

/* Split-KV partials in the workspace: f32 out [splits, B, Hq, Sq, Dv] from byte 0, then f32
   lse [splits, B, Hq, Sq] from this byte offset. */
static size_t split_lse_offset(const forward_call *call)
{
    const clattn_problem *p = &call->problem;
    const size_t rows = (size_t)(p->batch * p->heads_q * p->seq_q);
    return (size_t)call->plan.splits * rows * (size_t)p->head_dim_v * sizeof(float);
}

/* Scratch of the chosen algorithm: the split-KV partials, or the unfused path's chunks. */
static size_t workspace_bytes(const forward_call *call)
{
    const clattn_problem *p = &call->problem;
    if (call->plan.algo == CLATTN_ALGO_UNFUSED)
        return clattn_unfused_workspace_size(&call->args);
    if (call->plan.algo != CLATTN_ALGO_SPLIT_KV)
        return 0;
    const size_t rows = (size_t)(p->batch * p->heads_q * p->seq_q);
    return split_lse_offset(call) + (size_t)call->plan.splits * rows * sizeof(float);
}

/* The tiling this call runs instead of the heuristic's: `fixed` (a known-answer check's), or
   the one forced on ctx (tools.h), else that of the first level of the tuning database (exact,
   device, class) whose entry fits the device; *source says which (CLATTN_TILING_HEURISTIC:
   none). A fixed or forced tiling that does not fit is CLATTN_ERROR_UNSUPPORTED. */
static clattn_status chosen_tiling(const clattn_context *ctx, const clattn_problem *p,
                                   const clattn_tiling *fixed, clattn_tiling *t,
                                   clattn_tiling_source *source)
{
    char why[200];
    *source = CLATTN_TILING_HEURISTIC;
    if (fixed || ctx->tiling_forced) {
        *t = fixed ? *fixed : ctx->forced_tiling;
        *source = CLATTN_TILING_FORCED;
        if (!clattn_tiling_fits(&ctx->probe, t, why, sizeof why))
            return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "the forced tiling does not fit %s: %s",
                               ctx->probe.device_name, why);
        return CLATTN_SUCCESS;
    }
    const clattn_tune_key key = clattn_tune_key_of(&ctx->tune_device, p);
    for (clattn_tiling_source level = CLATTN_TILING_TUNED_EXACT; level <= CLATTN_TILING_TUNED_CLASS;
         level++) {
        const clattn_tune_entry *e = clattn_tunedb_find(&ctx->tunedb, &key,
                                                        ctx->probe.device_class, level);
        if (!e)
            continue;
        *t = clattn_tunedb_tiling(e, p);
        if (clattn_tiling_fits(&ctx->probe, t, why, sizeof why)) {
            *source = level;
            return CLATTN_SUCCESS;
        }
        char line[1400];
        clattn_tunedb_format(e, line, sizeof line);
        clattn_log(CLATTN_LOG_WARN, "tuning entry \"%s\" does not fit %s (%s); ignored", line,
                   ctx->probe.device_name, why);
    }
    return CLATTN_SUCCESS;
}

/* The scratch of the plan's algorithm, and whether the call can have it. */
static clattn_status size_workspace(const clattn_context *ctx, forward_call *call)
{
    call->workspace_bytes = workspace_bytes(call);
    const clattn_attention_desc *d = call->args.desc;
    if (d->workspace && d->workspace_size < call->workspace_bytes)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "desc->workspace_size=%zu is smaller "
                           "than the %zu bytes this call needs (clattn_attention_workspace_size)",
                           d->workspace_size, call->workspace_bytes);
    if (!d->workspace && call->workspace_bytes > ctx->probe.max_mem_alloc_size)
        return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "%s needs %zu bytes of scratch for this "
                           "call; %s allocates at most %llu bytes in one buffer",
                           algo_name(call->plan.algo), call->workspace_bytes,
                           ctx->probe.device_name,
                           (unsigned long long)ctx->probe.max_mem_alloc_size);
    return CLATTN_SUCCESS;
}

/* The keys one work-item of the fused kernel walks: a split's range, or all of them. */
static int64_t keys_per_item(const forward_call *call)
{
    return call->plan.algo == CLATTN_ALGO_SPLIT_KV ? call->plan.keys_per_split
                                                   : call->problem.seq_k;
}

/* On a device that caps a work-item's loop iterations (check.h), a plan whose kernels stay
   under the cap, or UNSUPPORTED: the unfused path does not run there (CLBlast's kernels
   cannot be bounded), and a fused tiling over the cap gives way to the one with the most rows
   per work-group that stays under it (a fixed or forced tiling stays: its launch is refused). */
static clattn_status keep_under_loop_limit(clattn_context *ctx, forward_call *call)
{
    int64_t limit = 0;
    clattn_status s = clattn_device_loop_limit(ctx, &limit);
    clattn_plan *plan = &call->plan;
    if (s != CLATTN_SUCCESS || !limit)
        return s;
    if (plan->algo == CLATTN_ALGO_UNFUSED)
        return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "the unfused path cannot run on %s: it "
                           "stops a work-item's loops after %lld iterations (Mesa's llvmpipe "
                           "loop limiter), and CLBlast's kernels cannot be bounded below that",
                           ctx->probe.device_name, (long long)limit);
    const int64_t keys = keys_per_item(call);
    if (clattn_forward_loop_bound(&plan->tiling, keys) <= limit ||
        plan->source == CLATTN_TILING_FORCED)
        return CLATTN_SUCCESS;
    enum { MAX_CANDIDATES = 1024 };
    clattn_tiling *candidates = clattn_calloc(MAX_CANDIDATES, sizeof *candidates);
    if (!candidates)
        return clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for the plan");
    const size_t n = clattn_plan_candidates(&ctx->probe, &call->problem, candidates,
                                            MAX_CANDIDATES);
    const clattn_tiling *best = NULL;
    for (size_t i = 0; i < n && i < MAX_CANDIDATES; i++)
        if (clattn_forward_loop_bound(&candidates[i], keys) <= limit &&
            (!best || candidates[i].block_m > best->block_m))
            best = &candidates[i];
    if (best)
        plan->tiling = *best;
    else
        s = clattn_fail(CLATTN_ERROR_UNSUPPORTED, "%s stops a work-item's loops after %lld "
                        "iterations (Mesa's llvmpipe loop limiter), and no tiling of the fused "
                        "kernel walks %lld keys in fewer: it would answer wrong",
                        ctx->probe.device_name, (long long)limit, (long long)keys);
    free(candidates);
    return s;
}

static clattn_status plan_call(clattn_context *ctx, const clattn_tiling *fixed,
                               forward_call *call)
{
    const clattn_forward_args *a = &call->args;
    clattn_problem *p = &call->problem;
    *p = clattn_problem_of(a);
    clattn_status s = clattn_check_kernel_limits(p);
    clattn_tiling tiling;
    clattn_tiling_source source;
    if (s == CLATTN_SUCCESS)
        s = chosen_tiling(ctx, p, fixed, &tiling, &source);
    if (s != CLATTN_SUCCESS)
        return s;
    char why[256];
    s = clattn_plan_call(&ctx->probe, p, a->desc->algo,
                         source == CLATTN_TILING_HEURISTIC ? NULL : &tiling, source, &call->plan,
                         why, sizeof why);
    if (s != CLATTN_SUCCESS)
        return clattn_fail(s, "%s cannot run head_dim=%lld head_dim_v=%lld on %s: %s",
                           algo_name(a->desc->algo), (long long)p->head_dim,
                           (long long)p->head_dim_v, ctx->probe.device_name, why);
    if (source == CLATTN_TILING_FORCED && call->plan.algo != CLATTN_ALGO_UNFUSED &&
        call->plan.source != CLATTN_TILING_FORCED)
        return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "the forced tiling's head-dim buckets "
                           "(%d, %d) are not this call's", tiling.d_pad, tiling.dv_pad);
    if (call->plan.algo == CLATTN_ALGO_UNFUSED && !clattn_unfused_available())
        return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "the unfused path (head dims over 256 or "
                           "CLATTN_ALGO_UNFUSED) needs CLBlast, and clattn was built without it");
    s = keep_under_loop_limit(ctx, call);
    return s == CLATTN_SUCCESS ? size_workspace(ctx, call) : s;
}

/* Validate the call (out and lse absent for queries) and plan it. */
static clattn_status prepare(clattn_context *ctx, const clattn_attention_desc *desc,
                             const clattn_tensor *q, const clattn_tensor *k,
                             const clattn_tensor *v, const clattn_tensor *out,
                             const clattn_tensor *lse, int with_outputs, cl_uint num_wait,
                             const cl_event *wait_list, const clattn_tiling *fixed,
                             forward_call *call)
{
    if (!ctx)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "ctx is NULL");
    memset(call, 0, sizeof *call);
    desc = clattn_desc_complete(desc, &call->desc);
    call->args = clattn_forward_args_of(ctx->cl_ctx, desc, q, k, v, out, lse,
                                        with_outputs ? CLATTN_OUT_WRITTEN : CLATTN_OUT_ABSENT,
                                        num_wait, wait_list);
    clattn_status s = clattn_validate_forward(&call->args);
    return s == CLATTN_SUCCESS ? plan_call(ctx, fixed, call) : s;
}

/* out and lse as the kernel writes them, with the element strides between key ranges. */
typedef struct kernel_outputs {
    const clattn_tensor *out, *lse;
    cl_long out_split, lse_split;
} kernel_outputs;

/* The parameters of attention_forward for a call writing to o. */
static clattn_forward_params forward_params(const forward_call *call, const kernel_outputs *o)
{
    const clattn_forward_args *a = &call->args;
    clattn_forward_params p;
    memset(&p, 0, sizeof p);
    p.q = clattn_view_params_of(a->q.t, 0);
    p.k = clattn_view_params_of(a->k.t, 0);
    p.v = clattn_view_params_of(a->v.t, 0);
    p.out = clattn_view_params_of(o->out, 0);
    p.lse = clattn_view_params_of(o->lse, 0);
    p.bias = clattn_view_params_of(a->bias.t, 1);
    p.sinks = clattn_view_params_of(a->sinks.t, 0);
    p.out_split = o->out_split;
    p.lse_split = o->lse_split;
    p.attn = clattn_attention_params_of(a->desc, &call->problem, o->lse ? FORWARD_WRITE_LSE : 0);
    p.splits = call->plan.splits;
    p.keys_per_split = call->plan.keys_per_split;
    return p;
}

/* The launch of attention_forward for a call writing to o, with what it points to. */
typedef struct fused_kernel {
    clattn_forward_params params;
    cl_mem buffers[9];
    char options[256];
    clattn_program_check check;
    clattn_kernel_launch launch;
} fused_kernel;

static clattn_storage fused_storage(const forward_call *call, clattn_dtype out)
{
    const clattn_forward_args *a = &call->args;
    const clattn_storage storage = {call->problem.dtype, out,
                                    a->bias.t ? a->bias.t->dtype : CLATTN_F32, CLATTN_F32};
    return storage;
}

static void fused_kernel_of(const forward_call *call, const kernel_outputs *o, fused_kernel *k)
{
    const clattn_forward_args *a = &call->args;
    const clattn_tiling *t = &call->plan.tiling;
    const clattn_problem *p = &call->problem;
    const clattn_storage storage = fused_storage(call, o->out->dtype);
    clattn_tiling_build_options(t, &storage, k->options, sizeof k->options);
    k->check = (clattn_program_check){call->plan.algo == CLATTN_ALGO_SPLIT_KV
                                          ? CLATTN_CHECK_SPLIT_KV
                                          : CLATTN_CHECK_FORWARD,
                                      *t, storage};
    k->params = forward_params(call, o);
    const cl_mem buffers[] = {a->q.t->buffer, a->k.t->buffer, a->v.t->buffer, o->out->buffer,
                              o->lse ? o->lse->buffer : NULL,
                              a->bias.t ? a->bias.t->buffer : NULL, a->desc->seqlens_q,
                              a->desc->seqlens_k, a->sinks.t ? a->sinks.t->buffer : NULL};
    memcpy(k->buffers, buffers, sizeof buffers);
    const int64_t rows = p->seq_q * (p->heads_q / p->heads_kv);
    const size_t blocks = (size_t)((rows + t->block_m - 1) / t->block_m);
    const clattn_kernel_launch launch = {
        forward_files, k->options, "attention_forward", k->buffers, 9, &k->params,
        sizeof k->params, 3,
        {blocks * (size_t)call->plan.splits * (size_t)t->wg, (size_t)p->heads_kv, (size_t)p->batch},
        {(size_t)t->wg, 1, 1}, &k->check,
        clattn_forward_loop_bound(t, keys_per_item(call))};
    k->launch = launch;
}

/* Split-KV: the fused kernel writes f32 partials per key range into the workspace
   (split_lse_offset), and merge.cl combines them into out and lse. */
static clattn_status enqueue_split(clattn_context *ctx, const forward_call *call, cl_mem scratch,
                                   cl_event *event)
{
    const clattn_problem *p = &call->problem;
    const int64_t rows = p->batch * p->heads_q * p->seq_q;
    clattn_tensor parts = clattn_tensor_bhsd(scratch, CLATTN_F32, p->batch, p->heads_q, p->seq_q,
                                             p->head_dim_v);
    clattn_tensor part_lses = clattn_tensor_bhsd(scratch, CLATTN_F32, p->batch, p->heads_q,
                                                 p->seq_q, 1);
    part_lses.offset = split_lse_offset(call);
    const kernel_outputs partials = {&parts, &part_lses, rows * p->head_dim_v, rows};
    const clattn_merge_job job = {&parts, &part_lses, rows * p->head_dim_v, rows,
                                  call->plan.splits, NULL, 0, 0, 1,
                                  call->args.out.t, call->args.lse.t};
    fused_kernel fused;
    clattn_merge_kernel merge;
    fused_kernel_of(call, &partials, &fused);
    clattn_merge_kernel_of(&job, &merge);
    const clattn_kernel_launch launches[2] = {fused.launch, merge.launch};
    return clattn_enqueue_kernels(ctx, launches, 2, call->args.num_wait, call->args.wait_list,
                                  event);
}

/* The split-KV and unfused paths, with their scratch (scratch.h): the whole call is enqueued
   under ctx->lock so that no other call's commands use the scratch in between. */
static clattn_status enqueue_with_scratch(clattn_context *ctx, const forward_call *call,
                                          cl_event *event)
{
    pthread_mutex_lock(&ctx->lock);
    cl_mem scratch = NULL;
    clattn_status s = clattn_scratch_get(ctx, call->args.desc->workspace, call->workspace_bytes,
                                         &scratch);
    if (s == CLATTN_SUCCESS)
        s = call->plan.algo == CLATTN_ALGO_SPLIT_KV
                ? enqueue_split(ctx, call, scratch, event)
                : clattn_unfused_forward(ctx, &call->args, scratch, event);
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

/* Enqueue a planned call; on failure nothing is enqueued and *event is NULL. */
static clattn_status enqueue_call(clattn_context *ctx, const forward_call *call, cl_event *event)
{
    clattn_status s;
    if (call->plan.algo == CLATTN_ALGO_FUSED) {
        const kernel_outputs direct = {call->args.out.t, call->args.lse.t, 0, 0};
        fused_kernel fused;
        fused_kernel_of(call, &direct, &fused);
        s = clattn_enqueue_kernel(ctx, &fused.launch, call->args.num_wait, call->args.wait_list,
                                  event);
    } else {
        s = enqueue_with_scratch(ctx, call, event);
    }
    if (s != CLATTN_SUCCESS && event && *event) {
        clReleaseEvent(*event);
        *event = NULL;
    }
    return s;
}

/* AUTO's way around a fused kernel that cannot run (`why`: a program its known-answer check
   refused, check.h): the unfused path, when clattn has one and the call's workspace allows.
   Returns 1 with call re-planned, else 0 (the failure stands). */
static int unfused_instead(clattn_context *ctx, forward_call *call, const char *why)
{
    if (call->args.desc->algo != CLATTN_ALGO_AUTO || call->plan.algo == CLATTN_ALGO_UNFUSED ||
        !clattn_unfused_available() || ctx->loop_limit)
        return 0;
    char refusal[1800];
    snprintf(refusal, sizeof refusal, "%s", why);
    const clattn_plan fused = call->plan;
    call->plan.algo = CLATTN_ALGO_UNFUSED;
    if (size_workspace(ctx, call) != CLATTN_SUCCESS) {
        call->plan = fused;
        size_workspace(ctx, call);
        clattn_fail(CLATTN_ERROR_UNSUPPORTED, "%s", refusal);
        return 0;
    }
    clattn_log(CLATTN_LOG_DEBUG, "AUTO runs the unfused path: %s", refusal);
    return 1;
}

/* For clattn_attention_plan: the verdict, if one is known, on the program a fused or split-KV
   call would build (out taken to have q's dtype); re-planned by AUTO like the forward. Builds
   nothing. Returns CLATTN_SUCCESS, or UNSUPPORTED when the plan cannot run. */
static clattn_status known_refusal(clattn_context *ctx, forward_call *call, char *why,
                                   size_t why_size)
{
    why[0] = '\0';
    if (call->plan.algo == CLATTN_ALGO_UNFUSED)
        return CLATTN_SUCCESS;
    char options[256];
    const clattn_storage storage =
        fused_storage(call, call->plan.algo == CLATTN_ALGO_SPLIT_KV ? CLATTN_F32
                                                                    : call->problem.dtype);
    clattn_tiling_build_options(&call->plan.tiling, &storage, options, sizeof options);
    if (!clattn_program_refused(ctx, forward_files, options, why, why_size))
        return CLATTN_SUCCESS;
    return unfused_instead(ctx, call, why) ? CLATTN_SUCCESS
                                           : clattn_fail(CLATTN_ERROR_UNSUPPORTED, "%s", why);
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
    clattn_status s = prepare(ctx, desc, q, k, v, out, lse, 1, num_wait, wait_list, NULL, &call);
    if (s == CLATTN_SUCCESS)
        s = enqueue_call(ctx, &call, event);
    /* nothing was enqueued: a kernel that cannot run here (refused by its check) */
    if (s == CLATTN_ERROR_UNSUPPORTED && unfused_instead(ctx, &call, clattn_last_error()))
        s = enqueue_call(ctx, &call, event);
    return s == CLATTN_SUCCESS ? clattn_succeed() : s;
}

clattn_status clattn_forward_with_tiling(clattn_context *ctx, const clattn_attention_desc *desc,
                                         const clattn_tensor *q, const clattn_tensor *k,
                                         const clattn_tensor *v, const clattn_tensor *out,
                                         const clattn_tensor *lse, const clattn_tiling *tiling)
{
    forward_call call;
    clattn_status s = prepare(ctx, desc, q, k, v, out, lse, 1, 0, NULL,
                              desc->algo == CLATTN_ALGO_UNFUSED ? NULL : tiling, &call);
    if (s != CLATTN_SUCCESS)
        return s;
    /* scratch of its own: the context's may be in use by commands on the other queue */
    clattn_attention_desc own = *call.args.desc;
    cl_int err = CL_SUCCESS;
    if (call.workspace_bytes) {
        own.workspace = clattn_create_buffer(ctx->cl_ctx, CL_MEM_READ_WRITE, call.workspace_bytes,
                                             NULL, &err);
        own.workspace_size = call.workspace_bytes;
        call.args.desc = &own;
        if (!own.workspace)
            s = clattn_fail_cl(err, "clCreateBuffer (check workspace)");
    }
    cl_event done = NULL;
    if (s == CLATTN_SUCCESS)
        s = enqueue_call(ctx, &call, &done);
    if (s == CLATTN_SUCCESS)
        s = clattn_wait_and_release(done);
    if (own.workspace && own.workspace != desc->workspace)
        clReleaseMemObject(own.workspace);
    return s;
}

CLATTN_API clattn_status clattn_attention_plan(clattn_context *ctx,
    const clattn_attention_desc *desc,
    const clattn_tensor *q, const clattn_tensor *k, const clattn_tensor *v,
    char *buf, size_t buf_size)
{
    forward_call call;
    char refusal[1600] = "";
    clattn_status s = prepare(ctx, desc, q, k, v, NULL, NULL, 0, 0, NULL, NULL, &call);
    if (s == CLATTN_SUCCESS)
        s = known_refusal(ctx, &call, refusal, sizeof refusal);
    if (s != CLATTN_SUCCESS) {
        /* still a line whose first word is an algorithm: the one asked for (AUTO: fused) */
        if (buf && buf_size)
            snprintf(buf, buf_size, "%s not runnable: %s",
                     algo_name(desc && (unsigned)desc->algo <= CLATTN_ALGO_UNFUSED ? desc->algo
                                                                                   : CLATTN_ALGO_AUTO),
                     clattn_last_error());
        return s;
    }
    if (buf && buf_size) {
        const clattn_plan *plan = &call.plan;
        int n = snprintf(buf, buf_size, "%s %s d=%lld dv=%lld", algo_name(plan->algo),
                         dtype_name(call.problem.dtype), (long long)call.problem.head_dim,
                         (long long)call.problem.head_dim_v);
        if (n > 0 && (size_t)n < buf_size && plan->algo == CLATTN_ALGO_SPLIT_KV)
            n += snprintf(buf + n, buf_size - (size_t)n, " splits=%d keys=%d", plan->splits,
                          plan->keys_per_split);
        if (n > 0 && (size_t)n < buf_size && plan->algo == CLATTN_ALGO_UNFUSED)
            n += snprintf(buf + n, buf_size - (size_t)n, " workspace=%zu", call.workspace_bytes);
        if (n > 0 && (size_t)n < buf_size && plan->algo != CLATTN_ALGO_UNFUSED) {
            n += snprintf(buf + n, buf_size - (size_t)n, " %s", source_words[plan->source]);
            if ((size_t)n < buf_size)
                n += (int)clattn_tiling_describe(&plan->tiling, buf + n, buf_size - (size_t)n);
        }
        if (n > 0 && (size_t)n < buf_size && refusal[0])
            snprintf(buf + n, buf_size - (size_t)n, " (the fused kernel is refused: %s)",
                     refusal);
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
    clattn_status s = prepare(ctx, desc, q, k, v, NULL, NULL, 0, 0, NULL, NULL, &call);
    if (s == CLATTN_SUCCESS)
        *bytes = call.workspace_bytes;
    return s == CLATTN_SUCCESS ? clattn_succeed() : s;
}

clattn_status clattn_forward_plan(clattn_context *ctx, const clattn_attention_desc *desc,
                                  const clattn_tensor *q, const clattn_tensor *k,
                                  const clattn_tensor *v, clattn_plan *plan)
{
    forward_call call;
    clattn_status s = prepare(ctx, desc, q, k, v, NULL, NULL, 0, 0, NULL, NULL, &call);
    *plan = call.plan;
    return s == CLATTN_SUCCESS ? clattn_succeed() : s;
}

clattn_status clattn_forward_candidates(clattn_context *ctx, const clattn_attention_desc *desc,
                                        const clattn_tensor *q, const clattn_tensor *k,
                                        const clattn_tensor *v, clattn_tiling *out, size_t max,
                                        size_t *count)
{
    forward_call call;
    clattn_status s = prepare(ctx, desc, q, k, v, NULL, NULL, 0, 0, NULL, NULL, &call);
    *count = s == CLATTN_SUCCESS ? clattn_plan_candidates(&ctx->probe, &call.problem, out, max)
                                 : 0;
    return s == CLATTN_SUCCESS ? clattn_succeed() : s;
}

clattn_status clattn_forward_tuning_entry(clattn_context *ctx, const clattn_attention_desc *desc,
                                          const clattn_tensor *q, const clattn_tensor *k,
                                          const clattn_tensor *v, const clattn_tiling *tiling,
                                          clattn_tune_entry *entry)
{
    forward_call call;
    clattn_status s = prepare(ctx, desc, q, k, v, NULL, NULL, 0, 0, NULL, NULL, &call);
    memset(entry, 0, sizeof *entry);
    if (s != CLATTN_SUCCESS)
        return s;
    entry->key = clattn_tune_key_of(&ctx->tune_device, &call.problem);
    entry->rows = tiling->rows;
    entry->wg = tiling->wg;
    entry->block_n = tiling->block_n;
    entry->vec = tiling->vec;
    return clattn_succeed();
}
