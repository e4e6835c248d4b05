/* Merging partial results by LSE: clattn_attention_merge, and the launches of cl/merge.cl that
   the split-KV forward shares. */
#include "merge.h"

#include <stdio.h>
#include <stdlib.h>

#include "fault.h"
#include "launch.h"
#include "plan.h"
#include "scratch.h"
#include "program.h"
#include "status.h"
#include "tensor.h"

static const char *const merge_files[] = {"launch.h", "common.cl", "merge.cl", NULL};


static cl_int set_merge_args(cl_kernel kernel, const clattn_merge_launch *m)
{
    cl_uint index = 0;
    cl_long part_stride = m->part_stride, lse_part_stride = m->lse_part_stride;
    cl_int n_parts = m->n_parts, head_dim_v = (cl_int)m->out->dims[3];
    cl_int flags = (m->read_state ? MERGE_READ_STATE : 0) | (m->write_final ? MERGE_WRITE_FINAL : 0) |
                   (m->lse ? MERGE_WRITE_LSE : 0);
    cl_int err = clattn_set_view_args(kernel, &index, m->parts);
    err |= clSetKernelArg(kernel, index++, sizeof part_stride, &part_stride);
    err |= clattn_set_view_args(kernel, &index, m->part_lses);
    err |= clSetKernelArg(kernel, index++, sizeof lse_part_stride, &lse_part_stride);
    err |= clSetKernelArg(kernel, index++, sizeof n_parts, &n_parts);
    cl_long state_lse_offset = m->state_lse_offset;
    err |= clSetKernelArg(kernel, index++, sizeof m->state, &m->state);
    err |= clSetKernelArg(kernel, index++, sizeof state_lse_offset, &state_lse_offset);
    err |= clattn_set_view_args(kernel, &index, m->out);
    err |= clattn_set_view_args(kernel, &index, m->lse);
    err |= clSetKernelArg(kernel, index++, sizeof head_dim_v, &head_dim_v);
    err |= clSetKernelArg(kernel, index++, sizeof flags, &flags);
    return err;
}

clattn_status clattn_enqueue_merge(clattn_context *ctx, const clattn_merge_launch *m,
                                   cl_uint num_wait, const cl_event *wait_list, cl_event *event)
{
    const clattn_storage storage = {m->parts->dtype, m->out->dtype, CLATTN_F32, CLATTN_F32};
    char options[128];
    clattn_storage_build_options(&storage, options, sizeof options);
    size_t global[3] = {(size_t)m->out->dims[2], (size_t)m->out->dims[1], (size_t)m->out->dims[0]};

    pthread_mutex_lock(&ctx->lock);
    cl_kernel kernel = NULL;
    clattn_status s = clattn_program_kernel(ctx, merge_files, options, "merge_partials", &kernel);
    if (s == CLATTN_SUCCESS && set_merge_args(kernel, m) != CL_SUCCESS)
        s = clattn_fail(CLATTN_ERROR_OPENCL, "clSetKernelArg(merge_partials) failed");
    if (s == CLATTN_SUCCESS) {
        cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, 3, NULL, global, NULL, num_wait,
                                            num_wait ? wait_list : NULL, event);
        if (err != CL_SUCCESS)
            s = clattn_fail_cl(err, "clEnqueueNDRangeKernel(merge_partials)");
    }
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

/* Parts in separate buffers: one launch each, folded through a running f32 state. */
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
        const clattn_merge_launch m = {a->outs[p].t, a->lses[p].t, 0, 0, 1, state,
                                       rows * out->dims[3], !first, last, out, a->lse.t};
        s = clattn_enqueue_merge(ctx, &m, first ? a->num_wait : 0, first ? a->wait_list : NULL,
                                 last ? event : NULL);
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
