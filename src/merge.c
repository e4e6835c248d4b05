/* Merging partial results by LSE. Not implemented in this version: after its arguments are
   checked the call returns CLATTN_ERROR_UNSUPPORTED and enqueues nothing. */
#include "status.h"
#include "validate.h"

CLATTN_API clattn_status clattn_attention_merge(clattn_context *ctx, size_t n,
    const clattn_tensor *outs, const clattn_tensor *lses,
    const clattn_tensor *out, const clattn_tensor *lse,
    cl_uint num_wait, const cl_event *wait_list, cl_event *event)
{
    if (event)
        *event = NULL;
    if (!ctx)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "ctx is NULL");
    if (n == 0)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "n=0: merge needs at least one part");
    const void *pointers[] = {outs, lses, out, lse};
    static const char *const names[] = {"outs", "lses", "out", "lse"};
    for (int i = 0; i < 4; i++)
        if (!pointers[i])
            return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "%s is NULL", names[i]);
    clattn_status s = clattn_check_wait_list(num_wait, wait_list);
    if (s != CLATTN_SUCCESS)
        return s;
    return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "clattn_attention_merge: not implemented in clattn %s",
                       clattn_version_string());
}
