/* Causal self-attention over three tokens with head dim 2, on the default OpenCL device.
   Build: see examples/meson.build; run: ./build/examples/three_tokens */
#include <clattn.h>
#include <stdio.h>

#define CHECK(call)                                                                          \
    do {                                                                                     \
        clattn_status s_ = (call);                                                           \
        if (s_ != CLATTN_SUCCESS) {                                                          \
            fprintf(stderr, "%s: %s: %s\n", #call, clattn_status_string(s_),                 \
                    clattn_last_error());                                                    \
            return 1;                                                                        \
        }                                                                                    \
    } while (0)

int main(void)
{
    /* [batch=1, heads=1, seq=3, dim=2] */
    const float q[6] = {1, 0, 0, 1, 1, 1};
    const float k[6] = {1, 0, 0, 1, 1, 1};
    const float v[6] = {1, 2, 3, 4, 5, 6};
    float out[6], lse[3];

    clattn_context *ctx;
    CHECK(clattn_context_create(NULL, &ctx));
    cl_context cl = clattn_context_cl_context(ctx);
    cl_command_queue queue = clattn_context_queue(ctx);
    cl_int err;
    cl_mem bq = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof q, (void *)q, &err);
    cl_mem bk = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof k, (void *)k, &err);
    cl_mem bv = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof v, (void *)v, &err);
    cl_mem bo = clCreateBuffer(cl, CL_MEM_WRITE_ONLY, sizeof out, NULL, &err);
    cl_mem bl = clCreateBuffer(cl, CL_MEM_WRITE_ONLY, sizeof lse, NULL, &err);

    clattn_tensor tq = clattn_tensor_bhsd(bq, CLATTN_F32, 1, 1, 3, 2);
    clattn_tensor tk = clattn_tensor_bhsd(bk, CLATTN_F32, 1, 1, 3, 2);
    clattn_tensor tv = clattn_tensor_bhsd(bv, CLATTN_F32, 1, 1, 3, 2);
    clattn_tensor to = clattn_tensor_bhsd(bo, CLATTN_F32, 1, 1, 3, 2);
    clattn_tensor tl = clattn_tensor_bhsd(bl, CLATTN_F32, 1, 1, 3, 1);

    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.causal = 1; /* token i sees tokens 0..i; scale defaults to 1/sqrt(2) */
    CHECK(clattn_attention_forward(ctx, &desc, &tq, &tk, &tv, &to, &tl, 0, NULL, NULL));
    clEnqueueReadBuffer(queue, bo, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL);
    clEnqueueReadBuffer(queue, bl, CL_TRUE, 0, sizeof lse, lse, 0, NULL, NULL);

    printf("device: %s\n", clattn_context_device_name(ctx));
    for (int i = 0; i < 3; i++)
        printf("token %d: out = (%.4f, %.4f)  lse = %.4f\n", i, out[2 * i], out[2 * i + 1], lse[i]);

    cl_mem buffers[] = {bq, bk, bv, bo, bl};
    for (int i = 0; i < 5; i++)
        clReleaseMemObject(buffers[i]);
    clattn_context_release(ctx);
    return 0;
}
