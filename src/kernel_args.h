/* What the fused kernels (cl/attention_forward.cl, cl/attention_backward.cl) are given: the
   problem of a validated call, and the kernel arguments they share, set in their order. */
#ifndef CLATTN_KERNEL_ARGS_H
#define CLATTN_KERNEL_ARGS_H

#include "plan.h"
#include "validate.h"

/* The problem of a validated call (shapes from q, k, v; dtype of q; causal). */
clattn_problem clattn_problem_of(const clattn_forward_args *args);

/* Valid requests the kernels cannot index: sequences over 2^31-1 (CLATTN_ERROR_UNSUPPORTED). */
clattn_status clattn_check_kernel_limits(const clattn_problem *problem);

/* The scale of q.k: desc->scale, or 1/sqrt(head_dim) when it is 0. */
double clattn_score_scale(const clattn_attention_desc *desc, int64_t head_dim);

/* The bias view (dims of 1 broadcast through stride 0; NULL: none) and the seqlens_q and
   seqlens_k buffers, from *index on. */
cl_int clattn_set_mask_args(cl_kernel kernel, cl_uint *index, const clattn_forward_args *args);

/* The scalar block, from *index on: seq_q, seq_k, head_dim, head_dim_v, group, q_mult,
   cap_mult, flags (launch.h ATTENTION_* of desc, or-ed with extra_flags), window_left,
   window_right, heads_q, the dropout words and keep_scale (common.cl). */
cl_int clattn_set_scalar_args(cl_kernel kernel, cl_uint *index, const clattn_attention_desc *desc,
                              const clattn_problem *problem, cl_int extra_flags);

#endif
