/* The arguments the fused forward and backward kernels share (kernel_args.h). */
#include "kernel_args.h"

#include <math.h>

#include "dropout.h"
#include "launch.h"
#include "status.h"
#include "tensor.h"

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
    return CLATTN_SUCCESS;
}

double clattn_score_scale(const clattn_attention_desc *d, int64_t head_dim)
{
    return d->scale != 0.0f ? d->scale : 1.0 / sqrt((double)head_dim);
}

cl_int clattn_set_mask_args(cl_kernel kernel, cl_uint *index, const clattn_forward_args *a)
{
    clattn_tensor bias = a->bias.t ? *a->bias.t : (clattn_tensor){0};
    for (int i = 0; i < 3; i++)
        if (bias.dims[i] == 1)
            bias.strides[i] = 0;
    cl_int err = clattn_set_view_args(kernel, index, a->bias.t ? &bias : NULL);
    const cl_mem seqlens[2] = {a->desc->seqlens_q, a->desc->seqlens_k};
    err |= clSetKernelArg(kernel, (*index)++, sizeof seqlens[0], &seqlens[0]);
    err |= clSetKernelArg(kernel, (*index)++, sizeof seqlens[1], &seqlens[1]);
    return err;
}

/* A window of at least seq_q + seq_k reaches every key of every row, as -1 does; capping it
   there keeps the kernels' index arithmetic far from overflow. */
static cl_long capped_window(int64_t window, const clattn_problem *p)
{
    return window > p->seq_q + p->seq_k ? p->seq_q + p->seq_k : window;
}

cl_int clattn_set_scalar_args(cl_kernel kernel, cl_uint *index, const clattn_attention_desc *d,
                              const clattn_problem *p, cl_int extra_flags)
{
    const double scale = clattn_score_scale(d, p->head_dim);
    const double log2e = 1.4426950408889634;
    const cl_float q_mult = (cl_float)(d->softcap > 0.0f ? scale / d->softcap : scale * log2e);
    const cl_float cap_mult = (cl_float)(d->softcap > 0.0f ? d->softcap * log2e : 0.0);
    const cl_int flags = extra_flags | (d->bias ? ATTENTION_BIAS : 0) |
                         (d->seqlens_q ? ATTENTION_SEQLENS_Q : 0) |
                         (d->seqlens_k ? ATTENTION_SEQLENS_K : 0) |
                         (d->causal ? ATTENTION_CAUSAL : 0) |
                         (d->align == CLATTN_ALIGN_BOTTOM_RIGHT ? ATTENTION_BOTTOM_RIGHT : 0) |
                         (d->dropout_p > 0.0f ? ATTENTION_DROPOUT : 0);
    const cl_int ints[] = {(cl_int)p->seq_q, (cl_int)p->seq_k, (cl_int)p->head_dim,
                           (cl_int)p->head_dim_v, (cl_int)(p->heads_q / p->heads_kv)};
    const cl_long windows[] = {capped_window(d->window_left, p), capped_window(d->window_right, p)};
    const cl_int heads_q = (cl_int)p->heads_q;
    cl_uint drop[4];
    cl_float keep_scale;
    clattn_dropout_args(d, drop, &keep_scale);
    cl_int err = CL_SUCCESS;
    for (size_t i = 0; i < 5; i++)
        err |= clSetKernelArg(kernel, (*index)++, sizeof ints[i], &ints[i]);
    err |= clSetKernelArg(kernel, (*index)++, sizeof q_mult, &q_mult);
    err |= clSetKernelArg(kernel, (*index)++, sizeof cap_mult, &cap_mult);
    err |= clSetKernelArg(kernel, (*index)++, sizeof flags, &flags);
    err |= clSetKernelArg(kernel, (*index)++, sizeof windows[0], &windows[0]);
    err |= clSetKernelArg(kernel, (*index)++, sizeof windows[1], &windows[1]);
    err |= clSetKernelArg(kernel, (*index)++, sizeof heads_q, &heads_q);
    for (size_t i = 0; i < 4; i++)
        err |= clSetKernelArg(kernel, (*index)++, sizeof drop[i], &drop[i]);
    err |= clSetKernelArg(kernel, (*index)++, sizeof keep_scale, &keep_scale);
    return err;
}
