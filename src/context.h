/* The context object shared by the host files. */
#ifndef CLATTN_CONTEXT_H
#define CLATTN_CONTEXT_H

#include <pthread.h>

#include "probe.h"
#include "tunedb.h"

struct clattn_program_entry; /* program.c */

struct clattn_context {
    cl_platform_id   platform;
    cl_device_id     device;
    cl_context       cl_ctx;      /* retained */
    cl_command_queue queue;       /* retained; in-order */
    clattn_device_probe probe;
    /* platform name and version, device name and version, driver version: identifies the
       compiler that made a binary (part of the disk cache key) */
    char             device_identity[1400];
    /* recursive; guards `programs` and `scratch`, and is held from clSetKernelArg to enqueue
       (for calls that use scratch: from taking it to enqueueing the last command) */
    pthread_mutex_t  lock;
    struct clattn_program_entry *programs;
    cl_mem           scratch;       /* see scratch.h */
    size_t           scratch_size;
    clattn_tune_device tune_device;    /* this device's name in the tuning database */
    clattn_tunedb    tunedb;           /* loaded at creation */
    /* the known-answer checks' own queue (check.h), made by the first check, so that a check
       never waits behind the caller's commands; while `checking` > 0 (under lock) the
       library's commands go there */
    cl_command_queue check_queue;
    int              checking;
    /* the device's cap on a work-item's loop iterations (check.h; 0: none), once probed */
    int64_t          loop_limit;
    int              loop_limit_probed;
    /* clattn-bench --tune: the tiling every fused forward call runs (tools.h) */
    int              tiling_forced;
    clattn_tiling    forced_tiling;
};

/* The queue the library's commands go to now: ctx->queue, or the check queue during a check.
   Called under ctx->lock. */
static inline cl_command_queue clattn_command_queue(const clattn_context *ctx)
{
    return ctx->checking ? ctx->check_queue : ctx->queue;
}

#endif
