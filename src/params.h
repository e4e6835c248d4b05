/* The kernels' parameter structs (cl/launch.h) from a validated call: the one place that turns
   a desc, its problem and its tensor views into what the kernels read, so that every derived
   value (score folding, capped windows, flags, dropout words) has one owner. */
#ifndef CLATTN_PARAMS_H
#define CLATTN_PARAMS_H

#include "launch.h"
#include "plan.h"
#include "validate.h"

/* The problem of a validated call (shapes from q, k, v; dtype of q; causal). */
clattn_problem clattn_problem_of(const clattn_forward_args *args);

/* Valid requests the kernels cannot index: sequences or query heads over 2^31-1
   (CLATTN_ERROR_UNSUPPORTED). */
clattn_status clattn_check_kernel_limits(const clattn_problem *problem);

/* The scale of q.k: desc->scale, or 1/sqrt(head_dim) when it is 0. */
double clattn_score_scale(const clattn_attention_desc *desc, int64_t head_dim);

/* The view of t (NULL: all zero). A bias view (broadcast != 0) has stride 0 in each dim of 1,
   so that it broadcasts over batch, heads and rows. */
clattn_view_params clattn_view_params_of(const clattn_tensor *t, int broadcast);

/* What every attention kernel knows of a call (launch.h clattn_attention_params): dims, the
   mask and its flags (or-ed with extra_flags), the score's scale (on q when its magnitude is
   under 1, else on q.k) and softcap, the capped windows and the dropout words. */
clattn_attention_params clattn_attention_params_of(const clattn_attention_desc *desc,
                                                   const clattn_problem *problem,
                                                   clattn_i32 extra_flags);

#endif
