/* Argument checks as pure functions of plain structs: the device facts they need (buffer sizes,
   flags, owning context) are gathered first (tensor.c) and passed in, so these run without a
   device (and under a fuzzer). Each failure sets a message naming the argument and its value. */
#ifndef CLATTN_VALIDATE_H
#define CLATTN_VALIDATE_H

#include "clattn.h"

/* What the runtime says about a cl_mem. */
typedef struct clattn_mem_info {
    int          live;         /* 0: the handle did not answer clGetMemObjectInfo */
    size_t       size;         /* CL_MEM_SIZE */
    cl_mem_flags flags;
    cl_context   context;
    cl_mem       root;         /* the parent of a sub-buffer, else the buffer itself */
    size_t       root_offset;  /* the sub-buffer's origin in root */
} clattn_mem_info;

/* A tensor argument with its name for messages ("q", "out", ...). t == NULL: absent. */
typedef struct clattn_view {
    const char          *name;
    const clattn_tensor *t;
    clattn_mem_info      mem;
    int                  output;
} clattn_view;

/* The arguments of a forward call (out and lse are absent for plan/workspace queries). */
typedef struct clattn_forward_args {
    const clattn_attention_desc *desc;
    clattn_view q, k, v, out, lse;
    clattn_view     bias;                     /* desc->bias */
    clattn_view     sinks;                    /* desc->sinks */
    clattn_mem_info seqlens_q, seqlens_k;     /* desc->seqlens_q, desc->seqlens_k */
    clattn_mem_info workspace;                /* desc->workspace */
    cl_uint         num_wait;
    const cl_event *wait_list;
    cl_context      context;   /* the clattn context's cl_context */
} clattn_forward_args;

/* Bytes of one element, or 0 for a dtype that is not a clattn_dtype. */
size_t clattn_dtype_size(clattn_dtype dtype);

/* The size of a 0.1 caller's desc: the fields before q_start. */
#define CLATTN_DESC_SIZE_0_1 offsetof(clattn_attention_desc, q_start)

/* desc as this version reads it: a 0.1 caller's shorter struct copied into *storage with the
   later fields at their defaults; any other desc (NULL, a size no version had) as it is, for
   clattn_check_desc to judge. */
const clattn_attention_desc *clattn_desc_complete(const clattn_attention_desc *desc,
                                                  clattn_attention_desc *storage);

/* Every field of desc: struct_size, enums, flags, finite scale, windows, softcap, dropout_p,
   positions, accumulate (sinks with the tensors: clattn_validate_forward). */
clattn_status clattn_check_desc(const clattn_attention_desc *desc);

/* One view: present, dtype, dims > 0, strides (>= 0, last == 1), aligned offset, extent within
   its buffer (BUFFER_TOO_SMALL), buffer from `context` with flags that allow the access, and
   for outputs, strides that nest (sorted by stride, each at least 1 + the extent of the
   smaller ones: docs/semantics.md "Precise rules"), so no two elements share an address. */
clattn_status clattn_check_view(const clattn_view *view, cl_context context);

/* No output view shares bytes with any other view of the list. */
clattn_status clattn_check_aliasing(const clattn_view *const *views, size_t n);

/* num_wait > 0 needs a list. */
clattn_status clattn_check_wait_list(cl_uint num_wait, const cl_event *wait_list);

/* All of the above for a forward call, plus shapes (q, k, v, bias; out and lse when present),
   the seqlens buffers and the workspace buffer. */
clattn_status clattn_validate_forward(const clattn_forward_args *args);

/* The arguments of a backward call: the forward's (out and lse as inputs) and the new ones. */
typedef struct clattn_backward_args {
    clattn_forward_args forward;     /* out, lse: inputs here */
    clattn_view dout, dq, dk, dv;
} clattn_backward_args;

/* The forward's checks for q, k, v, desc, out and lse (required), then dout (out's dims and
   dtype), dq/dk/dv (the dims of q/k/v, one dtype), their views, and that no gradient aliases
   any other view. */
clattn_status clattn_validate_backward(const clattn_backward_args *args);

/* The arguments of a merge call: n parts outs[p] and lses[p] (named "outs[p]", "lses[p]"). */
typedef struct clattn_merge_args {
    size_t            n;
    const clattn_view *outs, *lses;
    clattn_view       out, lse;
    cl_uint           num_wait;
    const cl_event   *wait_list;
    cl_context        context;
} clattn_merge_args;

/* Every part shaped like out ([B,Hq,Sq,Dv], any dtype) and every lse like lse (f32
   [B,Hq,Sq,1]); out and lse alias nothing. */
clattn_status clattn_validate_merge(const clattn_merge_args *args);

#endif
