/* Tensor views and descriptors: constructors and what the runtime says about their buffers. */
#ifndef CLATTN_TENSOR_H
#define CLATTN_TENSOR_H

#include "validate.h"

/* A view named `name` of t (t may be NULL), with its buffer's facts read from the runtime. */
clattn_view clattn_view_of(const char *name, const clattn_tensor *t, int output);

#endif
