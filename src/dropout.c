/* The dropout decision on the host (cl/semantics.h), and the kernels' dropout words. */
#include <math.h>

#include "dropout.h"
#include "semantics.h"

uint64_t clattn_dropout_threshold(float p)
{
    return p >= 1.0f ? (uint64_t)1 << 32 : p > 0.0f ? (uint64_t)ceil((double)p * 4294967296.0) : 0;
}

clattn_dropout_params clattn_dropout_params_of(const clattn_attention_desc *d)
{
    clattn_dropout_params dp = {0};
    dp.seed_lo = (clattn_u32)d->dropout_seed;
    dp.seed_hi = (clattn_u32)(d->dropout_seed >> 32);
    dp.offset_lo = (clattn_u32)d->dropout_offset;
    dp.threshold = (clattn_u32)clattn_dropout_threshold(d->dropout_p);
    dp.q_start_lo = (clattn_u32)d->q_start;
    dp.k_start_lo = (clattn_u32)d->k_start;
    dp.keep_scale = d->dropout_p > 0.0f ? (clattn_f32)(1.0 / (1.0 - d->dropout_p)) : 0.0f;
    return dp;
}

CLATTN_API int clattn_dropout_keep(uint64_t seed, uint64_t offset, int64_t b, int64_t h,
                                   int64_t num_q_heads, int64_t i, int64_t j, float p)
{
    const uint64_t threshold = clattn_dropout_threshold(p);
    if (threshold > UINT32_MAX)   /* p >= 1: nothing is kept */
        return 0;
    const clattn_dropout_params dp = {(clattn_u32)seed, (clattn_u32)(seed >> 32),
                                      (clattn_u32)offset, (clattn_u32)threshold, 0, 0, 0.0f, 0};
    return clattn_dropout_kept(&dp, b * num_q_heads + h, i, j);
}
