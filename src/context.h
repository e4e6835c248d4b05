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
    /* clattn-bench --tune: the tiling every fused forward call runs (tools.h) */
    int              tiling_forced;
    clattn_tiling    forced_tiling;
};

#endif
