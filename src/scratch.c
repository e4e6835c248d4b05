/* The context's scratch buffer, kept across calls and grown on demand. */
#include "scratch.h"

#include "fault.h"
#include "log.h"
#include "status.h"

clattn_status clattn_scratch_get(clattn_context *ctx, cl_mem workspace, size_t bytes,
                                 cl_mem *scratch)
{
    *scratch = workspace;
    if (workspace || bytes == 0)
        return CLATTN_SUCCESS;
    if (ctx->scratch_size < bytes) {
        cl_int err = CL_SUCCESS;
        cl_mem grown = clattn_create_buffer(ctx->cl_ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (!grown)
            return clattn_fail_cl(err, "clCreateBuffer(scratch)");
        /* earlier commands may still use the old buffer: OpenCL frees it after them */
        clattn_scratch_release(ctx);
        ctx->scratch = grown;
        ctx->scratch_size = bytes;
        clattn_log(CLATTN_LOG_DEBUG, "scratch grown to %zu bytes", bytes);
    }
    *scratch = ctx->scratch;
    return CLATTN_SUCCESS;
}

void clattn_scratch_release(clattn_context *ctx)
{
    if (ctx->scratch)
        clReleaseMemObject(ctx->scratch);
    ctx->scratch = NULL;
    ctx->scratch_size = 0;
}
