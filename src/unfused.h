/* The unfused forward: S = Q K^T through CLBlast, a masked softmax kernel with exactly the fused
   kernel's semantics (cl/common.cl), O = P V through CLBlast; in chunks of query rows so that
   its scratch stays under a bound at any sequence length. Serves any head dim. */
#ifndef CLATTN_UNFUSED_H
#define CLATTN_UNFUSED_H

#include "context.h"
#include "validate.h"

/* Scratch bound of one call: score chunks, f32 copies of f16/bf16 inputs, output chunks. */
#define CLATTN_UNFUSED_SCRATCH_BYTES ((size_t)256 << 20)

/* 1 when the library was built with CLBlast (otherwise the path is UNSUPPORTED). */
int clattn_unfused_available(void);

/* Bytes of workspace the unfused forward of a validated call needs (at most the bound above,
   unless one query row alone needs more). */
size_t clattn_unfused_workspace_size(const clattn_forward_args *args);

/* Enqueue the unfused forward of a validated call into scratch, a buffer of at least
   clattn_unfused_workspace_size bytes (the caller's workspace or the context's scratch, whose
   size the caller checked: src/forward.c). The caller holds ctx->lock until this returns, so
   that no other call's commands use the scratch in between. The event, if not NULL, completes
   after every command. */
clattn_status clattn_unfused_forward(clattn_context *ctx, const clattn_forward_args *args,
                                     cl_mem scratch, cl_event *event);

#endif
