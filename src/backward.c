/* The backward call. Gradients are not implemented in this version: after its arguments are
   checked the call returns CLATTN_ERROR_UNSUPPORTED and enqueues nothing. */
#include "status.h"
#include "validate.h"

CLATTN_API clattn_status clattn_attention_backward(clattn_context *ctx,
    const clattn_attention_desc *desc,
    const clattn_tensor *q, const clattn_tensor *k, const clattn_tensor *v,
    const clattn_tensor *out, const clattn_tensor *dout, const clattn_tensor *lse,
    const clattn_tensor *dq, const clattn_tensor *dk, const clattn_tensor *dv,
    cl_uint num_wait, const cl_event *wait_list, cl_event *event)
{
    if (event)
        *event = NULL;
    if (!ctx)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "ctx is NULL");
    clattn_status s = clattn_check_desc(desc);
    if (s == CLATTN_SUCCESS)
        s = clattn_check_wait_list(num_wait, wait_list);
    if (s != CLATTN_SUCCESS)
        return s;
    const clattn_tensor *tensors[] = {q, k, v, out, dout, lse, dq, dk, dv};
    static const char *const names[] = {"q", "k", "v", "out", "dout", "lse", "dq", "dk", "dv"};
    for (int i = 0; i < 9; i++)
        if (!tensors[i])
            return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "%s is NULL", names[i]);
    return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "clattn_attention_backward: not implemented in clattn %s",
                       clattn_version_string());
}
