/* Enqueueing cl/merge.cl: shared by clattn_attention_merge and the split-KV forward. */
#ifndef CLATTN_MERGE_H
#define CLATTN_MERGE_H

#include "context.h"

/* One launch of merge_partials (see cl/merge.cl): n_parts parts, part p of `parts` at
   p * part_stride elements and of `part_lses` at p * lse_part_stride; `state` (values, then
   lse from element state_lse_offset) is NULL unless the launch reads or keeps a running state.
   lse may be NULL. */
typedef struct clattn_merge_launch {
    const clattn_tensor *parts, *part_lses;
    int64_t part_stride, lse_part_stride;
    int     n_parts;
    cl_mem  state;
    int64_t state_lse_offset;
    int     read_state, write_final;
    const clattn_tensor *out, *lse;
} clattn_merge_launch;

clattn_status clattn_enqueue_merge(clattn_context *ctx, const clattn_merge_launch *m,
                                   cl_uint num_wait, const cl_event *wait_list, cl_event *event);

#endif
