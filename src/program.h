/* Kernel programs: source assembly, build options, and the per-context in-memory cache. */
#ifndef CLATTN_PROGRAM_H
#define CLATTN_PROGRAM_H

#include <stddef.h>

#include "clattn.h"

struct clattn_program_check; /* check.h */

/* The kernel `kernel_name` of the program made of the .cl files `files` (concatenated in order,
   NULL-terminated list) built with `options`, and its CL_KERNEL_WORK_GROUP_SIZE. Built at most
   once per context, and loaded from the disk cache when an entry for this device, source and
   options exists; kernels of the same files and options share that program. A program built
   here runs its known-answer check (`check`; NULL: none) before any call uses it, and a
   program that failed it, now or in the verdict the disk cache keeps, is
   CLATTN_ERROR_UNSUPPORTED with what was wrong. The kernel stays owned by the context; the
   caller holds ctx->lock from this call until its enqueue (only src/enqueue.c calls this). */
clattn_status clattn_program_kernel(clattn_context *ctx, const char *const *files,
                                    const char *options, const char *kernel_name,
                                    const struct clattn_program_check *check, cl_kernel *kernel,
                                    size_t *work_group_limit);

/* 1 when the program of files and options is known to be refused on ctx's device (by this
   context, or by a verdict in the disk cache), with the reason in why; builds nothing. */
int clattn_program_refused(clattn_context *ctx, const char *const *files, const char *options,
                           char *why, size_t why_size);

/* Release every program and kernel of ctx. */
void clattn_programs_release(clattn_context *ctx);

#endif
