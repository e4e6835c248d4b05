/* Merging partial results by LSE: clattn_attention_merge, and the launches of cl/merge.cl that
   the split-KV forward shares. */
#include "merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enqueue.h"
#include "fault.h"
#include "params.h"
#include "plan.h"
#include "scratch.h"
#include "status.h"
#include "tensor.h"

static const char *const merge_files[] = {"launch.h", "semantics.h", "common.cl", "merge.cl",
                                          NULL};

static clattn_merge_params merge_params(const clattn_merge_job *m)
{
    clattn_merge_params p;
    memset(&p, 0, sizeof p);
    p.parts = clattn_view_params_of(m->parts, 0);
    p.part_lse = clattn_view_params_of(m->part_lses, 0);
    p.out = clattn_view_params_of(m->out, 0);
    p.lse = clattn_view_params_of(m->lse, 0);
    p.part_stride = m->part_stride;
    p.lse_part_stride = m->lse_part_stride;
    p.state_lse_at = m->state_lse_at;
    p.n_parts = m->n_parts;
    p.head_dim_v = (clattn_i32)m->out->dims[3];
    p.flags = (m->read_state ? MERGE_READ_STATE : 0) | (m->write_final ? MERGE_WRITE_FINAL : 0) |
              (m->lse ? MERGE_WRITE_LSE : 0);
    return p;
}

void clattn_merge_kernel_of(const clattn_merge_job *m, clattn_merge_kernel *k)
{
    const clattn_storage storage = {m->parts->dtype, m->out->dtype, CLATTN_F32, CLATTN_F32};
    clattn_storage_build_options(&storage, k->options, sizeof k->options);
    memset(&k->check, 0, sizeof k->check);
    k->check.kind = CLATTN_CHECK_MERGE;
    k->check.storage = storage;
    k->params = merge_params(m);
    const cl_mem buffers[] = {m->parts->buffer, m->part_lses->buffer, m->state, m->out->buffer,
                              m->lse ? m->lse->buffer : NULL};
    memcpy(k->buffers, buffers, sizeof buffers);
    const clattn_kernel_launch launch = {
        merge_files, k->options, "merge_partials", k->buffers, 5, &k->params, sizeof k->params,
        3, {(size_t)m->out->dims[2], (size_t)m->out->dims[1], (size_t)m->out->dims[0]},
        {0, 0, 0}, &k->check, 4 * (int64_t)m->n_parts * (m->out->dims[3] + 2) + 64};
    k->launch = launch;
}

/* Parts in separate buffers: one launch each, folded through a running f32 state in the
   context's scratch (values [rows, Dv], then lse [rows]). */
static clattn_status merge_parts(clattn_context *ctx, const clattn_merge_args *a,
                                 cl_event *event)
{
    const clattn_tensor *out = a->out.t;
    const int64_t rows = out->dims[0] * out->dims[1] * out->dims[2];
    const size_t state_bytes = a->n > 1 ? (size_t)(rows * (out->dims[3] + 1)) * sizeof(float) : 0;
    pthread_mutex_lock(&ctx->lock);
    cl_mem state = NULL;
    clattn_status s = clattn_scratch_get(ctx, NULL, state_bytes, &state);
    for (size_t p = 0; p < a->n && s == CLATTN_SUCCESS; p++) {
        const int first = p == 0, last = p + 1 == a->n;
        const clattn_merge_job job = {a->outs[p].t, a->lses[p].t, 0, 0, 1, state,
                                      rows * out->dims[3], !first, last, out, a->lse.t};
        clattn_merge_kernel kernel;
        clattn_merge_kernel_of(&job, &kernel);
        s = clattn_enqueue_kernel(ctx, &kernel.launch, first ? a->num_wait : 0,
                                  first ? a->wait_list : NULL, last ? event : NULL);
    }
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

CLATTN_API clattn_status clattn_attention_merge(clattn_context *ctx, size_t n,
    const clattn_tensor *outs, const clattn_tensor *lses,
    const clattn_tensor *out, const clattn_tensor *lse,
    cl_uint num_wait, const cl_event *wait_list, cl_event *event)
{
    if (event)
        *event = NULL;
    if (!ctx)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "ctx is NULL");
    if (n == 0)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "n=0: merge needs at least one part");
    if (!outs || !lses)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "%s is NULL", outs ? "lses" : "outs");
    if (n > SIZE_MAX / 2 / sizeof(clattn_tensor))
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "n=%zu parts: more than arrays of "
                           "tensors can hold", n);
    clattn_view *views = clattn_calloc(2 * n, sizeof *views);
    char (*names)[32] = clattn_calloc(2 * n, sizeof *names);
    if (!views || !names) {
        free(views);
        free(names);
        return clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for %zu parts", n);
    }
    for (size_t p = 0; p < n; p++) {
        snprintf(names[p], sizeof names[p], "outs[%zu]", p);
        snprintf(names[n + p], sizeof names[n + p], "lses[%zu]", p);
        views[p] = clattn_view_of(names[p], &outs[p], 0);
        views[n + p] = clattn_view_of(names[n + p], &lses[p], 0);
    }
    const clattn_merge_args a = {n, views, views + n, clattn_view_of("out", out, 1),
                                 clattn_view_of("lse", lse, 1), num_wait, wait_list, ctx->cl_ctx};
    clattn_status s = clattn_validate_merge(&a);
    if (s == CLATTN_SUCCESS)
        s = merge_parts(ctx, &a, event);
    free(views);
    free(names);
    if (s != CLATTN_SUCCESS && event && *event) {
        clReleaseEvent(*event);
        *event = NULL;
    }
    return s == CLATTN_SUCCESS ? clattn_succeed() : s;
}
