/* The dropout decision on the host: Philox4x32-10 (Salmon et al. 2011), as the kernels use it. */
#include <math.h>

#include "clattn.h"
#include "dropout.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* The first output word of Philox4x32-10 for counter c and key k. */
static uint32_t philox4x32_10_x0(uint32_t c[4], uint32_t k0, uint32_t k1)
{
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
        uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
        uint32_t next[4] = {(uint32_t)(p1 >> 32) ^ c[1] ^ k0, (uint32_t)p1,
                            (uint32_t)(p0 >> 32) ^ c[3] ^ k1, (uint32_t)p0};
        for (int i = 0; i < 4; i++)
            c[i] = next[i];
    }
    return c[0];
}

uint64_t clattn_dropout_threshold(float p)
{
    return p >= 1.0f ? (uint64_t)1 << 32 : p > 0.0f ? (uint64_t)ceil((double)p * 4294967296.0) : 0;
}

void clattn_dropout_args(const clattn_attention_desc *d, cl_uint words[4], cl_float *keep_scale)
{
    words[0] = (cl_uint)d->dropout_seed;
    words[1] = (cl_uint)(d->dropout_seed >> 32);
    words[2] = (cl_uint)d->dropout_offset;
    words[3] = (cl_uint)clattn_dropout_threshold(d->dropout_p);
    *keep_scale = d->dropout_p > 0.0f ? (cl_float)(1.0 / (1.0 - d->dropout_p)) : 0.0f;
}

CLATTN_API int clattn_dropout_keep(uint64_t seed, uint64_t offset, int64_t b, int64_t h,
                                   int64_t num_q_heads, int64_t i, int64_t j, float p)
{
    uint32_t counter[4] = {(uint32_t)j, (uint32_t)i, (uint32_t)(b * num_q_heads + h),
                           (uint32_t)offset};
    return philox4x32_10_x0(counter, (uint32_t)seed, (uint32_t)(seed >> 32)) >=
           clattn_dropout_threshold(p);
}
