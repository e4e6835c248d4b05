/* Tensor views and descriptors: constructors and what the runtime says about their buffers. */
#ifndef CLATTN_TENSOR_H
#define CLATTN_TENSOR_H

#include "validate.h"

/* What the runtime says about mem (live = 0 for NULL or a handle that does not answer). */
clattn_mem_info clattn_mem_info_of(cl_mem mem);

/* A view named `name` of t (t may be NULL), with its buffer's facts read from the runtime. */
clattn_view clattn_view_of(const char *name, const clattn_tensor *t, int output);

/* Set the five kernel arguments of a strided view from *index on: buffer, element offset, and
   the batch, head and seq strides (t NULL: a NULL buffer and zeros). */
cl_int clattn_set_view_args(cl_kernel kernel, cl_uint *index, const clattn_tensor *t);

#endif
