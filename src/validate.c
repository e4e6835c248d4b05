/* Argument checks: pure functions over descriptors, views and the buffer facts gathered for them. */
#include "validate.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

#define INVALID CLATTN_ERROR_INVALID_ARGUMENT
/* desc->q_start and k_start: far beyond any sequence, far from int64 overflow in the masks */
#define CLATTN_MAX_POSITION ((int64_t)1 << 40)

size_t clattn_dtype_size(clattn_dtype dtype)
{
    switch (dtype) {
    case CLATTN_F32: return 4;
    case CLATTN_F16: return 2;
    case CLATTN_BF16: return 2;
    }
    return 0;
}

const clattn_attention_desc *clattn_desc_complete(const clattn_attention_desc *desc,
                                                  clattn_attention_desc *storage)
{
    if (!desc || desc->struct_size != CLATTN_DESC_SIZE_0_1)
        return desc;
    memset(storage, 0, sizeof *storage);   /* the fields added since 0.1 default to 0 */
    memcpy(storage, desc, CLATTN_DESC_SIZE_0_1);
    storage->struct_size = sizeof *storage;
    return storage;
}

clattn_status clattn_check_desc(const clattn_attention_desc *d)
{
    if (!d)
        return clattn_fail(INVALID, "desc is NULL");
    if (d->struct_size != sizeof *d)
        return clattn_fail(INVALID, "desc->struct_size=%zu is not a size this version knows (%zu, "
                           "or %zu from 0.1); call clattn_attention_desc_init", d->struct_size,
                           sizeof *d, (size_t)CLATTN_DESC_SIZE_0_1);
    if (!isfinite(d->scale))
        return clattn_fail(INVALID, "desc->scale=%g is not finite", d->scale);
    if (d->causal != 0 && d->causal != 1)
        return clattn_fail(INVALID, "desc->causal=%d is not 0 or 1", d->causal);
    if (d->align != CLATTN_ALIGN_BOTTOM_RIGHT && d->align != CLATTN_ALIGN_TOP_LEFT)
        return clattn_fail(INVALID, "desc->align=%d is not a clattn_mask_align", (int)d->align);
    if (d->window_left < -1)
        return clattn_fail(INVALID, "desc->window_left=%lld is below -1", (long long)d->window_left);
    if (d->window_right < -1)
        return clattn_fail(INVALID, "desc->window_right=%lld is below -1", (long long)d->window_right);
    if (!(d->softcap >= 0.0f) || isinf(d->softcap))
        return clattn_fail(INVALID, "desc->softcap=%g is not a finite value >= 0", d->softcap);
    if (!(d->dropout_p >= 0.0f && d->dropout_p < 1.0f))
        return clattn_fail(INVALID, "desc->dropout_p=%g is outside [0, 1)", d->dropout_p);
    if ((unsigned)d->algo > CLATTN_ALGO_UNFUSED)
        return clattn_fail(INVALID, "desc->algo=%d is not a clattn_algo", (int)d->algo);
    if (d->q_start < 0 || d->q_start > CLATTN_MAX_POSITION)
        return clattn_fail(INVALID, "desc->q_start=%lld is outside [0, 2^40]",
                           (long long)d->q_start);
    if (d->k_start < 0 || d->k_start > CLATTN_MAX_POSITION)
        return clattn_fail(INVALID, "desc->k_start=%lld is outside [0, 2^40]",
                           (long long)d->k_start);
    if (d->accumulate != 0 && d->accumulate != 1)
        return clattn_fail(INVALID, "desc->accumulate=%d is not 0 or 1", d->accumulate);
    return CLATTN_SUCCESS;
}

/* Elements from the first to one past the last element of t, or -1 on int64 overflow. */
static int64_t span_elements(const clattn_tensor *t)
{
    int64_t span = 1;
    for (int i = 0; i < 4; i++) {
        int64_t step;
        if (__builtin_mul_overflow(t->dims[i] - 1, t->strides[i], &step) ||
            __builtin_add_overflow(span, step, &span))
            return -1;
    }
    return span;
}

/* Sorted by stride, each stride must pass the farthest element of the smaller ones. */
static clattn_status check_no_self_overlap(const clattn_view *v)
{
    const clattn_tensor *t = v->t;
    int order[4] = {0, 1, 2, 3};
    for (int i = 1; i < 4; i++)
        for (int j = i; j > 0 && t->strides[order[j]] < t->strides[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    int64_t reach = 0; /* farthest element offset of the dims checked so far */
    for (int i = 0; i < 4; i++) {
        int dim = order[i];
        if (t->dims[dim] == 1)
            continue;
        if (t->strides[dim] < reach + 1)
            return clattn_fail(INVALID, "%s.strides[%d]=%lld makes elements of the output overlap",
                               v->name, dim, (long long)t->strides[dim]);
        reach += (t->dims[dim] - 1) * t->strides[dim];
    }
    return CLATTN_SUCCESS;
}

static clattn_status check_buffer(const clattn_view *v, cl_context context, int64_t bytes)
{
    const clattn_tensor *t = v->t;
    if (!t->buffer)
        return clattn_fail(INVALID, "%s.buffer is NULL", v->name);
    if (!v->mem.live)
        return clattn_fail(INVALID, "%s.buffer is not a valid cl_mem", v->name);
    if (v->mem.context != context)
        return clattn_fail(INVALID, "%s.buffer belongs to another cl_context", v->name);
    if (v->output && (v->mem.flags & CL_MEM_READ_ONLY))
        return clattn_fail(INVALID, "%s.buffer is CL_MEM_READ_ONLY but %s is an output", v->name,
                           v->name);
    if (!v->output && (v->mem.flags & CL_MEM_WRITE_ONLY))
        return clattn_fail(INVALID, "%s.buffer is CL_MEM_WRITE_ONLY but %s is an input", v->name,
                           v->name);
    if (t->offset > v->mem.size || (uint64_t)bytes > v->mem.size - t->offset)
        return clattn_fail(CLATTN_ERROR_BUFFER_TOO_SMALL,
                           "%s: the view needs %zu + %lld bytes but %s.buffer holds %zu", v->name,
                           t->offset, (long long)bytes, v->name, v->mem.size);
    return CLATTN_SUCCESS;
}

clattn_status clattn_check_view(const clattn_view *v, cl_context context)
{
    const clattn_tensor *t = v->t;
    if (!t)
        return clattn_fail(INVALID, "%s is NULL", v->name);
    size_t esize = clattn_dtype_size(t->dtype);
    if (!esize)
        return clattn_fail(INVALID, "%s.dtype=%d is not a clattn_dtype", v->name, (int)t->dtype);
    for (int i = 0; i < 4; i++)
        if (t->dims[i] <= 0)
            return clattn_fail(INVALID, "%s.dims[%d]=%lld is not positive", v->name, i,
                               (long long)t->dims[i]);
    for (int i = 0; i < 4; i++)
        if (t->strides[i] < 0)
            return clattn_fail(INVALID, "%s.strides[%d]=%lld is negative", v->name, i,
                               (long long)t->strides[i]);
    if (t->strides[3] != 1)
        return clattn_fail(INVALID, "%s.strides[3]=%lld must be 1", v->name, (long long)t->strides[3]);
    if (t->offset % esize != 0)
        return clattn_fail(INVALID, "%s.offset=%zu is not a multiple of the element size %zu",
                           v->name, t->offset, esize);
    int64_t span = span_elements(t), bytes;
    if (span < 0 || __builtin_mul_overflow(span, (int64_t)esize, &bytes))
        return clattn_fail(INVALID, "%s: dims x strides overflow 64 bits", v->name);
    clattn_status s = check_buffer(v, context, bytes);
    if (s == CLATTN_SUCCESS && v->output)
        s = check_no_self_overlap(v);
    return s;
}

/* The byte range [*lo, *hi) of a view inside its root buffer. */
static void byte_range(const clattn_view *v, uint64_t *lo, uint64_t *hi)
{
    *lo = (uint64_t)v->mem.root_offset + v->t->offset;
    *hi = *lo + (uint64_t)span_elements(v->t) * clattn_dtype_size(v->t->dtype);
}

clattn_status clattn_check_aliasing(const clattn_view *const *views, size_t n)
{
    for (size_t a = 0; a < n; a++) {
        for (size_t b = a + 1; b < n; b++) {
            const clattn_view *x = views[a], *y = views[b];
            if (!x->t || !y->t || (!x->output && !y->output) || x->mem.root != y->mem.root)
                continue;
            uint64_t xlo, xhi, ylo, yhi;
            byte_range(x, &xlo, &xhi);
            byte_range(y, &ylo, &yhi);
            if (xlo < yhi && ylo < xhi)
                return clattn_fail(INVALID, "%s and %s alias: their views share bytes of one buffer",
                                   x->output ? x->name : y->name, x->output ? y->name : x->name);
        }
    }
    return CLATTN_SUCCESS;
}

clattn_status clattn_check_wait_list(cl_uint num_wait, const cl_event *wait_list)
{
    if (num_wait > 0 && !wait_list)
        return clattn_fail(INVALID, "wait_list is NULL with num_wait=%u", num_wait);
    return CLATTN_SUCCESS;
}

/* dims[i] of view must equal want; `what` names the quantity for the message. */
static clattn_status check_dim(const clattn_view *v, int i, int64_t want, const char *ref,
                               const char *what)
{
    if (v->t->dims[i] == want)
        return CLATTN_SUCCESS;
    return clattn_fail(INVALID, "%s.dims[%d]=%lld does not match %s=%lld (%s)", v->name, i,
                       (long long)v->t->dims[i], ref, (long long)want, what);
}

static clattn_status check_input_shapes(const clattn_forward_args *a)
{
    const clattn_tensor *q = a->q.t, *k = a->k.t, *v = a->v.t;
    clattn_status s;
    if ((s = check_dim(&a->k, 0, q->dims[0], "q.dims[0]", "batch")) ||
        (s = check_dim(&a->v, 0, q->dims[0], "q.dims[0]", "batch")) ||
        (s = check_dim(&a->v, 1, k->dims[1], "k.dims[1]", "kv heads")) ||
        (s = check_dim(&a->k, 3, q->dims[3], "q.dims[3]", "head dim")) ||
        (s = check_dim(&a->v, 2, k->dims[2], "k.dims[2]", "keys")))
        return s;
    if (q->dims[1] % k->dims[1] != 0)
        return clattn_fail(INVALID, "k.dims[1]=%lld does not divide q.dims[1]=%lld",
                           (long long)k->dims[1], (long long)q->dims[1]);
    if (k->dtype != q->dtype || v->dtype != q->dtype)
        return clattn_fail(INVALID, "q.dtype=%d, k.dtype=%d, v.dtype=%d: q, k, v share one dtype",
                           (int)q->dtype, (int)k->dtype, (int)v->dtype);
    return CLATTN_SUCCESS;
}

static clattn_status check_output_shapes(const clattn_forward_args *a)
{
    const clattn_tensor *q = a->q.t, *v = a->v.t;
    const int64_t out_dims[4] = {q->dims[0], q->dims[1], q->dims[2], v->dims[3]};
    static const char *const out_refs[4] = {"q.dims[0]", "q.dims[1]", "q.dims[2]", "v.dims[3]"};
    static const char *const lse_refs[4] = {"q.dims[0]", "q.dims[1]", "q.dims[2]", "1"};
    static const char *const names[4] = {"batch", "query heads", "queries", "value dim"};
    clattn_status s;
    for (int i = 0; i < 4; i++)
        if ((s = check_dim(&a->out, i, out_dims[i], out_refs[i], names[i])))
            return s;
    if (!a->lse.t)
        return CLATTN_SUCCESS;
    for (int i = 0; i < 4; i++)
        if ((s = check_dim(&a->lse, i, i < 3 ? out_dims[i] : 1, lse_refs[i], i < 3 ? names[i] : "one")))
            return s;
    if (a->lse.t->dtype != CLATTN_F32)
        return clattn_fail(INVALID, "lse.dtype=%d: lse is f32", (int)a->lse.t->dtype);
    return CLATTN_SUCCESS;
}

/* bias: [B|1, Hq|1, Sq|1, Sk]; a dim of 1 broadcasts. */
static clattn_status check_bias_shape(const clattn_forward_args *a)
{
    const clattn_tensor *bias = a->bias.t, *q = a->q.t;
    const int64_t want[4] = {q->dims[0], q->dims[1], q->dims[2], a->k.t->dims[2]};
    static const char *const refs[4] = {"q.dims[0]", "q.dims[1]", "q.dims[2]", "k.dims[2]"};
    for (int i = 0; i < 4; i++)
        if (bias->dims[i] != want[i] && (i == 3 || bias->dims[i] != 1))
            return clattn_fail(INVALID, "bias.dims[%d]=%lld must be %s%s=%lld", i,
                               (long long)bias->dims[i], i == 3 ? "" : "1 or ", refs[i],
                               (long long)want[i]);
    return CLATTN_SUCCESS;
}

/* sinks: f32 [1, Hq, 1, 1]. */
static clattn_status check_sinks(const clattn_forward_args *a)
{
    const clattn_tensor *sinks = a->sinks.t;
    if (sinks->dtype != CLATTN_F32)
        return clattn_fail(INVALID, "sinks.dtype=%d: sinks are f32", (int)sinks->dtype);
    if (sinks->dims[0] != 1 || sinks->dims[1] != a->q.t->dims[1] || sinks->dims[2] != 1 ||
        sinks->dims[3] != 1)
        return clattn_fail(INVALID, "sinks dims [%lld,%lld,%lld,%lld] are not [1,%lld,1,1] (one "
                           "per query head)", (long long)sinks->dims[0],
                           (long long)sinks->dims[1], (long long)sinks->dims[2],
                           (long long)sinks->dims[3], (long long)a->q.t->dims[1]);
    return CLATTN_SUCCESS;
}

/* A seqlens buffer: int32[B] on the device, readable by kernels. */
static clattn_status check_seqlens(const char *name, cl_mem mem, const clattn_mem_info *info,
                                   int64_t batch, cl_context context)
{
    if (!mem)
        return CLATTN_SUCCESS;
    if (!info->live)
        return clattn_fail(INVALID, "%s is not a valid cl_mem", name);
    if (info->context != context)
        return clattn_fail(INVALID, "%s belongs to another cl_context", name);
    if (info->flags & CL_MEM_WRITE_ONLY)
        return clattn_fail(INVALID, "%s is CL_MEM_WRITE_ONLY but is read", name);
    if ((uint64_t)batch > info->size / 4)
        return clattn_fail(CLATTN_ERROR_BUFFER_TOO_SMALL,
                           "%s holds %zu bytes; int32[%lld] needs 4 x %lld", name, info->size,
                           (long long)batch, (long long)batch);
    return CLATTN_SUCCESS;
}

static clattn_status check_workspace(const clattn_forward_args *a)
{
    const clattn_attention_desc *d = a->desc;
    if (!d->workspace)
        return CLATTN_SUCCESS;
    if (!a->workspace.live)
        return clattn_fail(INVALID, "desc->workspace is not a valid cl_mem");
    if (a->workspace.context != a->context)
        return clattn_fail(INVALID, "desc->workspace belongs to another cl_context");
    if (a->workspace.flags & (CL_MEM_READ_ONLY | CL_MEM_WRITE_ONLY))
        return clattn_fail(INVALID, "desc->workspace must be CL_MEM_READ_WRITE");
    if (a->workspace.size < d->workspace_size)
        return clattn_fail(CLATTN_ERROR_BUFFER_TOO_SMALL,
                           "desc->workspace_size=%zu but desc->workspace holds %zu bytes",
                           d->workspace_size, a->workspace.size);
    return CLATTN_SUCCESS;
}

static clattn_status check_desc_buffers(const clattn_forward_args *a)
{
    const clattn_attention_desc *d = a->desc;
    const int64_t batch = a->q.t->dims[0];
    clattn_status s;
    if (d->bias && ((s = clattn_check_view(&a->bias, a->context)) || (s = check_bias_shape(a))))
        return s;
    if (d->sinks && ((s = clattn_check_view(&a->sinks, a->context)) || (s = check_sinks(a))))
        return s;
    if ((s = check_seqlens("desc->seqlens_q", d->seqlens_q, &a->seqlens_q, batch, a->context)) ||
        (s = check_seqlens("desc->seqlens_k", d->seqlens_k, &a->seqlens_k, batch, a->context)))
        return s;
    return check_workspace(a);
}

/* The byte ranges the call reads or writes in the desc's buffers, as views for
   clattn_check_aliasing: the seqlens entries (int32[batch], read) and the workspace
   (workspace_size bytes, written). Absent buffers give absent views. */
typedef struct desc_buffer_views {
    clattn_tensor seqlens_q, seqlens_k, workspace;
    clattn_view   views[3];
} desc_buffer_views;

static clattn_view buffer_view(const char *name, cl_mem mem, const clattn_mem_info *info,
                               uint64_t bytes, int output, clattn_tensor *t)
{
    clattn_view v = {name, NULL, *info, output};
    if (!mem || bytes == 0)
        return v;
    /* f32 elements covering the bytes (the checks above bound bytes by the buffer's size) */
    const int64_t words = (int64_t)((bytes + 3) / 4);
    *t = (clattn_tensor){mem, 0, CLATTN_F32, {1, 1, 1, words}, {words, words, words, 1}};
    v.t = t;
    return v;
}

static void desc_buffers_of(const clattn_forward_args *a, desc_buffer_views *out)
{
    const clattn_attention_desc *d = a->desc;
    const uint64_t seqlens_bytes = 4 * (uint64_t)a->q.t->dims[0];
    out->views[0] = buffer_view("desc->seqlens_q", d->seqlens_q, &a->seqlens_q, seqlens_bytes, 0,
                                &out->seqlens_q);
    out->views[1] = buffer_view("desc->seqlens_k", d->seqlens_k, &a->seqlens_k, seqlens_bytes, 0,
                                &out->seqlens_k);
    out->views[2] = buffer_view("desc->workspace", d->workspace, &a->workspace, d->workspace_size,
                                1, &out->workspace);
}

/* dims of view must equal those of ref. */
static clattn_status check_same_dims(const clattn_view *view, const clattn_view *ref)
{
    for (int i = 0; i < 4; i++)
        if (view->t->dims[i] != ref->t->dims[i])
            return clattn_fail(INVALID, "%s.dims[%d]=%lld does not match %s.dims[%d]=%lld",
                               view->name, i, (long long)view->t->dims[i], ref->name, i,
                               (long long)ref->t->dims[i]);
    return CLATTN_SUCCESS;
}

clattn_status clattn_validate_forward(const clattn_forward_args *a)
{
    clattn_status s;
    if ((s = clattn_check_desc(a->desc)) || (s = clattn_check_wait_list(a->num_wait, a->wait_list)))
        return s;
    const clattn_view *inputs[] = {&a->q, &a->k, &a->v};
    for (size_t i = 0; i < 3; i++)
        if ((s = clattn_check_view(inputs[i], a->context)))
            return s;
    if ((s = check_input_shapes(a)) || (s = check_desc_buffers(a)))
        return s;
    if (!a->out.name) /* a query without outputs (plan, workspace size) */
        return CLATTN_SUCCESS;
    if (!a->out.t)
        return clattn_fail(INVALID, "out is NULL");
    /* shapes first: a wrong dim is reported as such, not as the overlap it may cause */
    if ((s = check_output_shapes(a)) || (s = clattn_check_view(&a->out, a->context)) ||
        (a->lse.t && (s = clattn_check_view(&a->lse, a->context))))
        return s;
    desc_buffer_views desc_views;
    desc_buffers_of(a, &desc_views);
    const clattn_view *all[] = {&a->q, &a->k, &a->v, &a->bias, &a->sinks, &a->out, &a->lse,
                                &desc_views.views[0], &desc_views.views[1], &desc_views.views[2]};
    return clattn_check_aliasing(all, 10);
}

/* A gradient view: present, with the dims of the tensor it is the gradient of. */
static clattn_status check_gradient_dims(const clattn_view *grad, const clattn_view *of)
{
    return grad->t ? check_same_dims(grad, of) : clattn_fail(INVALID, "%s is NULL", grad->name);
}

clattn_status clattn_validate_backward(const clattn_backward_args *a)
{
    const clattn_forward_args *f = &a->forward;
    clattn_status s = clattn_validate_forward(f);
    if (s != CLATTN_SUCCESS)
        return s;
    if (!f->lse.t)
        return clattn_fail(INVALID, "lse is NULL: the backward needs the forward's lse");
    if (!a->dout.t)
        return clattn_fail(INVALID, "dout is NULL");
    if ((s = check_same_dims(&a->dout, &f->out)) || (s = check_gradient_dims(&a->dq, &f->q)) ||
        (s = check_gradient_dims(&a->dk, &f->k)) || (s = check_gradient_dims(&a->dv, &f->v)))
        return s;
    const clattn_view *grads[] = {&a->dout, &a->dq, &a->dk, &a->dv};
    for (size_t i = 0; i < 4; i++)
        if ((s = clattn_check_view(grads[i], f->context)))
            return s;
    for (size_t i = 1; i < 4 && f->desc->accumulate; i++)
        if (grads[i]->mem.flags & CL_MEM_WRITE_ONLY)
            return clattn_fail(INVALID, "%s.buffer is CL_MEM_WRITE_ONLY but desc->accumulate "
                               "reads %s", grads[i]->name, grads[i]->name);
    if (a->dout.t->dtype != f->out.t->dtype)
        return clattn_fail(INVALID, "dout.dtype=%d differs from out.dtype=%d: they share one dtype",
                           (int)a->dout.t->dtype, (int)f->out.t->dtype);
    if (a->dk.t->dtype != a->dq.t->dtype || a->dv.t->dtype != a->dq.t->dtype)
        return clattn_fail(INVALID, "dq.dtype=%d, dk.dtype=%d, dv.dtype=%d: the gradients share "
                           "one dtype", (int)a->dq.t->dtype, (int)a->dk.t->dtype, (int)a->dv.t->dtype);
    desc_buffer_views desc_views;
    desc_buffers_of(f, &desc_views);
    const clattn_view *all[] = {&f->q, &f->k, &f->v, &f->bias, &f->sinks, &f->out, &f->lse,
                                &a->dout, &a->dq, &a->dk, &a->dv,
                                &desc_views.views[0], &desc_views.views[1], &desc_views.views[2]};
    return clattn_check_aliasing(all, 14);
}


/* An lse view for rows shaped like out: f32 [B, Hq, Sq, 1]. */
static clattn_status check_lse_dims(const clattn_view *lse, const clattn_view *out)
{
    const int64_t *o = out->t->dims, *l = lse->t->dims;
    if (l[0] != o[0] || l[1] != o[1] || l[2] != o[2] || l[3] != 1)
        return clattn_fail(INVALID, "%s dims [%lld,%lld,%lld,%lld] are not [%lld,%lld,%lld,1] "
                           "(the rows of %s)", lse->name, (long long)l[0], (long long)l[1],
                           (long long)l[2], (long long)l[3], (long long)o[0], (long long)o[1],
                           (long long)o[2], out->name);
    if (lse->t->dtype != CLATTN_F32)
        return clattn_fail(INVALID, "%s.dtype=%d: lse is f32", lse->name, (int)lse->t->dtype);
    return CLATTN_SUCCESS;
}

/* Shapes against the first part, which defines them. */
static clattn_status check_merge_shapes(const clattn_merge_args *a)
{
    const clattn_view *first = &a->outs[0];
    clattn_status s;
    if ((s = check_same_dims(&a->out, first)) || (s = check_lse_dims(&a->lse, first)))
        return s;
    for (size_t p = 0; p < a->n; p++)
        if ((s = check_same_dims(&a->outs[p], first)) || (s = check_lse_dims(&a->lses[p], first)))
            return s;
    return CLATTN_SUCCESS;
}

static clattn_status check_present(const clattn_view *v)
{
    return v->t ? CLATTN_SUCCESS : clattn_fail(INVALID, "%s is NULL", v->name);
}

clattn_status clattn_validate_merge(const clattn_merge_args *a)
{
    clattn_status s = clattn_check_wait_list(a->num_wait, a->wait_list);
    for (size_t p = 0; p < a->n && s == CLATTN_SUCCESS; p++)
        if ((s = check_present(&a->outs[p])) == CLATTN_SUCCESS)
            s = check_present(&a->lses[p]);
    if (s != CLATTN_SUCCESS || (s = check_present(&a->out)) || (s = check_present(&a->lse)) ||
        (s = check_merge_shapes(a)) || (s = clattn_check_view(&a->out, a->context)) ||
        (s = clattn_check_view(&a->lse, a->context)))
        return s;
    for (size_t p = 0; p < a->n; p++) {
        /* inputs may share bytes; out and lse may not touch each other or any part */
        const clattn_view *views[] = {&a->out, &a->lse, &a->outs[p], &a->lses[p]};
        if ((s = clattn_check_view(&a->outs[p], a->context)) ||
            (s = clattn_check_view(&a->lses[p], a->context)) ||
            (s = clattn_check_aliasing(views, 4)))
            return s;
    }
    return CLATTN_SUCCESS;
}
