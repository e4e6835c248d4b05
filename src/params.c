/* The kernels' parameter structs from a validated call (params.h). */
#include "params.h"

#include <math.h>

#include "dropout.h"
#include "status.h"

clattn_problem clattn_problem_of(const clattn_forward_args *a)
{
    clattn_problem p = {0};
    p.dtype = a->q.t->dtype;
    p.batch = a->q.t->dims[0];
    p.heads_q = a->q.t->dims[1];
    p.heads_kv = a->k.t->dims[1];
    p.seq_q = a->q.t->dims[2];
    p.seq_k = a->k.t->dims[2];
    p.head_dim = a->q.t->dims[3];
    p.head_dim_v = a->v.t->dims[3];
    p.causal = a->desc->causal;
    return p;
}

clattn_status clattn_check_kernel_limits(const clattn_problem *p)
{
    if (p->seq_q > INT32_MAX || p->seq_k > INT32_MAX)
        return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "q.dims[2]=%lld, k.dims[2]=%lld: sequences "
                           "are limited to 2^31-1", (long long)p->seq_q, (long long)p->seq_k);
    if (p->heads_q > INT32_MAX)
        return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "q.dims[1]=%lld: heads are limited to "
                           "2^31-1", (long long)p->heads_q);
    return CLATTN_SUCCESS;
}

double clattn_score_scale(const clattn_attention_desc *d, int64_t head_dim)
{
    return d->scale != 0.0f ? d->scale : 1.0 / sqrt((double)head_dim);
}

clattn_view_params clattn_view_params_of(const clattn_tensor *t, int broadcast)
{
    clattn_view_params v = {0, 0, 0, 0};
    if (!t)
        return v;
    v.offset = (clattn_i64)(t->offset / clattn_dtype_size(t->dtype));
    v.batch_stride = broadcast && t->dims[0] == 1 ? 0 : t->strides[0];
    v.head_stride = broadcast && t->dims[1] == 1 ? 0 : t->strides[1];
    v.seq_stride = broadcast && t->dims[2] == 1 ? 0 : t->strides[2];
    return v;
}

/* A window of at least seq_q + seq_k + |q_start - k_start| reaches every key of every row, as
   -1 does; capping it there keeps the kernels' index arithmetic far from overflow (positions
   are at most 2^40). */
static clattn_i64 capped_window(int64_t window, int64_t start_shift, const clattn_problem *p)
{
    const int64_t reach = p->seq_q + p->seq_k + (start_shift < 0 ? -start_shift : start_shift);
    return window > reach ? reach : window;
}

clattn_attention_params clattn_attention_params_of(const clattn_attention_desc *d,
                                                   const clattn_problem *p,
                                                   clattn_i32 extra_flags)
{
    clattn_attention_params a = {0};
    a.start_shift = d->q_start - d->k_start;
    a.window_left = capped_window(d->window_left, a.start_shift, p);
    a.window_right = capped_window(d->window_right, a.start_shift, p);
    a.dropout = clattn_dropout_params_of(d);
    a.seq_q = (clattn_i32)p->seq_q;
    a.seq_k = (clattn_i32)p->seq_k;
    a.head_dim = (clattn_i32)p->head_dim;
    a.head_dim_v = (clattn_i32)p->head_dim_v;
    a.heads_q = (clattn_i32)p->heads_q;
    a.group = (clattn_i32)(p->heads_q / p->heads_kv);
    a.flags = extra_flags | (d->bias ? ATTENTION_BIAS : 0) |
              (d->seqlens_q ? ATTENTION_SEQLENS_Q : 0) | (d->seqlens_k ? ATTENTION_SEQLENS_K : 0) |
              (d->causal ? ATTENTION_CAUSAL : 0) |
              (d->align == CLATTN_ALIGN_BOTTOM_RIGHT ? ATTENTION_BOTTOM_RIGHT : 0) |
              (d->dropout_p > 0.0f ? ATTENTION_DROPOUT : 0) | (d->sinks ? ATTENTION_SINKS : 0);
    const double scale = clattn_score_scale(d, p->head_dim);
    a.q_scale = (clattn_f32)(fabs(scale) < 1.0 ? scale : 1.0);
    a.score_scale = (clattn_f32)(fabs(scale) < 1.0 ? 1.0 : scale);
    a.softcap = d->softcap;
    return a;
}
