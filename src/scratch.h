/* Scratch memory of the split-KV and unfused paths and of merges: the caller's workspace, or a
   buffer the context keeps and grows. Successive calls reuse it safely because their commands
   run in order on the context's in-order queue and each call enqueues all of its commands under
   ctx->lock. (Keeping it also spares an allocation per call, and avoids releasing memory with
   commands pending, which some implementations — oclgrind — mishandle.) */
#ifndef CLATTN_SCRATCH_H
#define CLATTN_SCRATCH_H

#include "context.h"

/* *scratch = workspace if not NULL, else the context's scratch grown to at least bytes (NULL
   for 0 bytes). The caller holds ctx->lock until every command that uses it is enqueued. The
   buffer stays owned by its owner: do not release it. */
clattn_status clattn_scratch_get(clattn_context *ctx, cl_mem workspace, size_t bytes,
                                 cl_mem *scratch);

/* Release the context's scratch (at context release). */
void clattn_scratch_release(clattn_context *ctx);

#endif
