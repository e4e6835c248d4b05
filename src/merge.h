/* Launches of cl/merge.cl: shared by clattn_attention_merge and the split-KV forward. */
#ifndef CLATTN_MERGE_H
#define CLATTN_MERGE_H

#include "check.h"
#include "enqueue.h"
#include "launch.h"

/* One merge (see cl/merge.cl): n_parts parts, part p of `parts` at p * part_stride elements
   and of `part_lses` at p * lse_part_stride; `state` (values, then lse from element
   state_lse_at) is NULL unless the launch reads or keeps a running state. lse may be NULL. */
typedef struct clattn_merge_job {
    const clattn_tensor *parts, *part_lses;
    int64_t part_stride, lse_part_stride;
    int     n_parts;
    cl_mem  state;
    int64_t state_lse_at;
    int     read_state, write_final;
    const clattn_tensor *out, *lse;
} clattn_merge_job;

/* The launch of merge_partials for a job, with the parameters and buffers it points to. */
typedef struct clattn_merge_kernel {
    clattn_merge_params params;
    cl_mem buffers[5];
    char options[128];
    clattn_program_check check;
    clattn_kernel_launch launch;
} clattn_merge_kernel;

void clattn_merge_kernel_of(const clattn_merge_job *job, clattn_merge_kernel *kernel);

#endif
