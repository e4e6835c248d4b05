/* The one launch path (enqueue.h). */
#include "enqueue.h"

#include <stdio.h>

#include "check.h"
#include "program.h"
#include "status.h"

/* The launch shape against the device and the kernel: NULL if it can run, else the reason. */
static const char *shape_problem(const clattn_context *ctx, const clattn_kernel_launch *l,
                                 size_t kernel_limit, char *why, size_t why_size)
{
    const int chosen = l->local[0] == 0;
    size_t items = 1;
    for (cl_uint d = 0; d < l->dims; d++) {
        if (l->global[d] == 0) {
            snprintf(why, why_size, "global size %zu in dimension %u", l->global[d], d);
            return why;
        }
        if (chosen)
            continue;
        if (l->local[d] == 0 || l->global[d] % l->local[d] != 0) {
            snprintf(why, why_size, "global size %zu is not a multiple of the work-group's %zu "
                     "in dimension %u", l->global[d], l->local[d], d);
            return why;
        }
        items *= l->local[d];
    }
    const size_t device_limit = ctx->probe.max_work_group_size;
    const size_t dim0_limit = ctx->probe.max_work_item_size0 ? ctx->probe.max_work_item_size0
                                                             : device_limit;
    if (!chosen && (items > kernel_limit || items > device_limit || l->local[0] > dim0_limit)) {
        snprintf(why, why_size, "a work-group of %zu work-items (%zu in dimension 0) is over the "
                 "limit of this kernel (%zu) or device (%zu, %zu in dimension 0)", items,
                 l->local[0], kernel_limit, device_limit, dim0_limit);
        return why;
    }
    return NULL;
}

static cl_int set_arguments(cl_kernel kernel, const clattn_kernel_launch *l)
{
    cl_int err = CL_SUCCESS;
    for (cl_uint i = 0; i < l->num_buffers && err == CL_SUCCESS; i++)
        err = clSetKernelArg(kernel, i, sizeof(cl_mem), &l->buffers[i]);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(kernel, l->num_buffers, l->params_size, l->params);
    return err;
}

/* The kernel of l, built or found, and checked against the launch shape. */
static clattn_status prepare(clattn_context *ctx, const clattn_kernel_launch *l, cl_kernel *kernel)
{
    size_t kernel_limit = 0;
    char why[256];
    const char *problem = NULL;
    int64_t loop_limit = 0;
    clattn_status s =
        l->loop_bound ? clattn_device_loop_limit(ctx, &loop_limit) : CLATTN_SUCCESS;
    if (s == CLATTN_SUCCESS && loop_limit && l->loop_bound > loop_limit)
        return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "%s would run up to %lld loop iterations "
                           "in a work-item, and %s stops a work-item's loops after %lld (Mesa's "
                           "llvmpipe loop limiter): it would answer wrong", l->kernel,
                           (long long)l->loop_bound, ctx->probe.device_name,
                           (long long)loop_limit);
    if (s == CLATTN_SUCCESS)
        s = clattn_program_kernel(ctx, l->files, l->options, l->kernel, l->check, kernel,
                                  &kernel_limit);
    if (s == CLATTN_SUCCESS && (problem = shape_problem(ctx, l, kernel_limit, why, sizeof why)))
        s = clattn_fail(CLATTN_ERROR_UNSUPPORTED, "%s cannot run on %s: %s", l->kernel,
                        ctx->probe.device_name, problem);
    return s;
}

static clattn_status set_and_enqueue(clattn_context *ctx, const clattn_kernel_launch *l,
                                     cl_kernel kernel, cl_uint num_wait,
                                     const cl_event *wait_list, cl_event *event)
{
    char what[160];
    cl_int err = set_arguments(kernel, l);
    if (err != CL_SUCCESS) {
        snprintf(what, sizeof what, "clSetKernelArg(%s)", l->kernel);
        return clattn_fail_cl(err, what);
    }
    err = clEnqueueNDRangeKernel(clattn_command_queue(ctx), kernel, l->dims, NULL, l->global,
                                 l->local[0] ? l->local : NULL, num_wait,
                                 num_wait ? wait_list : NULL, event);
    if (err != CL_SUCCESS) {
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", l->kernel);
        return clattn_fail_cl(err, what);
    }
    return CLATTN_SUCCESS;
}

clattn_status clattn_enqueue_kernels(clattn_context *ctx, const clattn_kernel_launch *launches,
                                     size_t n, cl_uint num_wait, const cl_event *wait_list,
                                     cl_event *event)
{
    cl_kernel kernels[CLATTN_MAX_LAUNCHES];
    if (n == 0 || n > CLATTN_MAX_LAUNCHES)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "%zu launches in one call", n);
    pthread_mutex_lock(&ctx->lock);
    clattn_status s = CLATTN_SUCCESS;
    for (size_t i = 0; i < n && s == CLATTN_SUCCESS; i++)
        s = prepare(ctx, &launches[i], &kernels[i]);
    for (size_t i = 0; i < n && s == CLATTN_SUCCESS; i++)
        s = set_and_enqueue(ctx, &launches[i], kernels[i], i == 0 ? num_wait : 0,
                            i == 0 ? wait_list : NULL, i + 1 == n ? event : NULL);
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

clattn_status clattn_enqueue_kernel(clattn_context *ctx, const clattn_kernel_launch *launch,
                                    cl_uint num_wait, const cl_event *wait_list,
                                    cl_event *event)
{
    return clattn_enqueue_kernels(ctx, launch, 1, num_wait, wait_list, event);
}

clattn_status clattn_kernel_work_group_limit(clattn_context *ctx, const char *const *files,
                                             const char *options, const char *kernel,
                                             const struct clattn_program_check *check,
                                             size_t *limit)
{
    cl_kernel k = NULL;
    pthread_mutex_lock(&ctx->lock);
    clattn_status s = clattn_program_kernel(ctx, files, options, kernel, check, &k, limit);
    pthread_mutex_unlock(&ctx->lock);
    if (s == CLATTN_SUCCESS && *limit > ctx->probe.max_work_group_size)
        *limit = ctx->probe.max_work_group_size;
    return s;
}

clattn_status clattn_wait_and_release(cl_event event)
{
    const cl_int err = clWaitForEvents(1, &event);
    clReleaseEvent(event);
    return err == CL_SUCCESS ? CLATTN_SUCCESS : clattn_fail_cl(err, "clWaitForEvents");
}
