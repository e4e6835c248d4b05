/* Tensor view constructors, the descriptor defaults, and buffer queries for validation. */
#include "tensor.h"

#include <string.h>

/* a * b, or INT64_MAX when it overflows: a stride no buffer can hold, which the calls then
   reject (BUFFER_TOO_SMALL or INVALID_ARGUMENT) instead of the constructor computing garbage. */
static int64_t mul_saturated(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

CLATTN_API clattn_tensor clattn_tensor_bhsd(cl_mem b, clattn_dtype t, int64_t batch,
                                            int64_t heads, int64_t seq, int64_t dim)
{
    const int64_t row = mul_saturated(seq, dim);
    clattn_tensor v = {b, 0, t, {batch, heads, seq, dim},
                       {mul_saturated(heads, row), row, dim, 1}};
    return v;
}

CLATTN_API clattn_tensor clattn_tensor_bshd(cl_mem b, clattn_dtype t, int64_t batch,
                                            int64_t seq, int64_t heads, int64_t dim)
{
    const int64_t token = mul_saturated(heads, dim);
    clattn_tensor v = {b, 0, t, {batch, heads, seq, dim},
                       {mul_saturated(seq, token), dim, token, 1}};
    return v;
}

CLATTN_API void clattn_attention_desc_init(clattn_attention_desc *desc)
{
    if (!desc)
        return;
    memset(desc, 0, sizeof *desc);
    desc->struct_size = sizeof *desc;
    desc->align = CLATTN_ALIGN_BOTTOM_RIGHT;
    desc->window_left = -1;
    desc->window_right = -1;
    desc->algo = CLATTN_ALGO_AUTO;
}

clattn_mem_info clattn_mem_info_of(cl_mem mem)
{
    clattn_mem_info info;
    memset(&info, 0, sizeof info);
    cl_mem parent = NULL;
    if (!mem ||
        clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof info.size, &info.size, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_FLAGS, sizeof info.flags, &info.flags, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof info.context, &info.context, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof parent, &parent, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_OFFSET, sizeof info.root_offset, &info.root_offset, NULL) != CL_SUCCESS)
        return info;
    info.live = 1;
    info.root = parent ? parent : mem;
    if (!parent)
        info.root_offset = 0;
    return info;
}

clattn_view clattn_view_of(const char *name, const clattn_tensor *t, int output)
{
    clattn_view v = {name, t, {0}, output};
    if (t)
        v.mem = clattn_mem_info_of(t->buffer);
    return v;
}

clattn_forward_args clattn_forward_args_of(cl_context context, const clattn_attention_desc *desc,
                                           const clattn_tensor *q, const clattn_tensor *k,
                                           const clattn_tensor *v, const clattn_tensor *out,
                                           const clattn_tensor *lse, clattn_out_role role,
                                           cl_uint num_wait, const cl_event *wait_list)
{
    clattn_forward_args a;
    memset(&a, 0, sizeof a);
    a.desc = desc;
    a.q = clattn_view_of("q", q, 0);
    a.k = clattn_view_of("k", k, 0);
    a.v = clattn_view_of("v", v, 0);
    if (desc) {
        a.bias = clattn_view_of("bias", desc->bias, 0);
        a.sinks = clattn_view_of("sinks", desc->sinks, 0);
        a.seqlens_q = clattn_mem_info_of(desc->seqlens_q);
        a.seqlens_k = clattn_mem_info_of(desc->seqlens_k);
        a.workspace = clattn_mem_info_of(desc->workspace);
    }
    if (role != CLATTN_OUT_ABSENT) {
        a.out = clattn_view_of("out", out, role == CLATTN_OUT_WRITTEN);
        a.lse = clattn_view_of("lse", lse, role == CLATTN_OUT_WRITTEN);
    }
    a.num_wait = num_wait;
    a.wait_list = wait_list;
    a.context = context;
    return a;
}
