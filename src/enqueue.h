/* The one launch path: every kernel of the library is enqueued by clattn_enqueue_kernel, which
   holds the context's lock from setting the arguments to the enqueue, sets them in the order
   of the host-kernel contract (cl/launch.h: the buffers, then the parameter struct), checks
   the launch shape against the device and the kernel, and returns the command's event. No
   other file sets kernel arguments or enqueues kernels. */
#ifndef CLATTN_ENQUEUE_H
#define CLATTN_ENQUEUE_H

#include "context.h"

struct clattn_program_check; /* check.h */

/* One launch of kernel `kernel` of the program of the .cl files `files` (NULL-terminated,
   concatenated in order) built with `options`. */
typedef struct clattn_kernel_launch {
    const char *const *files;
    const char *options;
    const char *kernel;
    const cl_mem *buffers;     /* the kernel's buffer arguments, in order (NULL entries allowed) */
    cl_uint num_buffers;
    const void *params;        /* then its parameter struct (launch.h) */
    size_t params_size;
    cl_uint dims;              /* 1..3 */
    size_t global[3];
    size_t local[3];           /* all 0: the implementation chooses */
    /* the known-answer check of its program, when clattn builds it (check.h; NULL: none) */
    const struct clattn_program_check *check;
    /* an upper bound of the loop iterations of one work-item (plan.h), for devices that cap
       them (check.h clattn_device_loop_limit); 0: a few, never refused */
    int64_t loop_bound;
} clattn_kernel_launch;

/* Build (or find) the kernel, set its arguments and enqueue it on ctx's queue after the
   wait list; *event (if event is not NULL) is the command's event. A work-group over the
   device's or the kernel's limit, a global size that is 0 or not a multiple of the local one,
   or a loop bound over the device's cap is CLATTN_ERROR_UNSUPPORTED with the reason, and
   nothing is enqueued. */
clattn_status clattn_enqueue_kernel(clattn_context *ctx, const clattn_kernel_launch *launch,
                                    cl_uint num_wait, const cl_event *wait_list,
                                    cl_event *event);

/* The most launches of one clattn_enqueue_kernels call. */
#define CLATTN_MAX_LAUNCHES 4

/* n launches (1..CLATTN_MAX_LAUNCHES) in order, all or none: every kernel is built and checked
   before the first is enqueued. The first waits for the wait list; *event (if event is not
   NULL) is the last one's event, which the in-order queue completes after all of them. */
clattn_status clattn_enqueue_kernels(clattn_context *ctx, const clattn_kernel_launch *launches,
                                     size_t n, cl_uint num_wait, const cl_event *wait_list,
                                     cl_event *event);

/* Wait for event (the last command of a call) and release it: CLATTN_SUCCESS, or the error
   of the wait. */
clattn_status clattn_wait_and_release(cl_event event);

/* The most work-items a work-group of that kernel may have on ctx's device
   (CL_KERNEL_WORK_GROUP_SIZE, at most the device's limit). */
clattn_status clattn_kernel_work_group_limit(clattn_context *ctx, const char *const *files,
                                             const char *options, const char *kernel,
                                             const struct clattn_program_check *check,
                                             size_t *limit);

#endif
