/* Tensor views and descriptors: constructors and what the runtime says about their buffers. */
#ifndef CLATTN_TENSOR_H
#define CLATTN_TENSOR_H

#include "validate.h"

/* What the runtime says about mem (live = 0 for NULL or a handle that does not answer). */
clattn_mem_info clattn_mem_info_of(cl_mem mem);

/* A view named `name` of t (t may be NULL), with its buffer's facts read from the runtime. */
clattn_view clattn_view_of(const char *name, const clattn_tensor *t, int output);

/* What out and lse are to a call. */
typedef enum clattn_out_role {
    CLATTN_OUT_ABSENT,   /* a query (plan, workspace size): no out, no lse */
    CLATTN_OUT_WRITTEN,  /* the forward writes them */
    CLATTN_OUT_READ      /* the backward reads them */
} clattn_out_role;

/* The arguments of a forward-shaped call, with the runtime's facts of every buffer: q, k, v,
   the desc's buffers, and out and lse in their role. Nothing is checked yet
   (clattn_validate_*). */
clattn_forward_args clattn_forward_args_of(cl_context context, const clattn_attention_desc *desc,
                                           const clattn_tensor *q, const clattn_tensor *k,
                                           const clattn_tensor *v, const clattn_tensor *out,
                                           const clattn_tensor *lse, clattn_out_role role,
                                           cl_uint num_wait, const cl_event *wait_list);

#endif
