/* Dropout in the forward, on every algorithm: the kernels' Philox4x32-10 decisions must equal
   the reference's bit for bit (one differing decision moves a row by a whole weighted value,
   far past the tolerance), kept weights scaled by 1/(1-p). The host function
   clattn_dropout_keep is checked against the same Philox in test_context. */
#include <criterion/criterion.h>

#include "common.h"

TestSuite(dropout_forward, .fini = test_ctx_release);

static void run(clattn_algo algo, const int64_t qd[4], const int64_t kd[4], int causal)
{
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.algo = algo;
    desc.causal = causal;
    desc.dropout_p = 0.3f;
    desc.dropout_seed = 0x0123456789abcdefull;
    desc.dropout_offset = 0xfeedface00000005ull; /* only the low 32 bits count */
    char plan[512];
    test_forward_vs_reference(&desc, qd, kd, plan, sizeof plan);
    cr_log_info("dropout p=0.3: %s", plan);
}

Test(dropout_forward, matches_the_reference_on_every_algorithm)
{
    static const int64_t qd[4] = {2, 4, 37, 24}, kd[4] = {2, 2, 45, 24};
    static const int64_t decode_q[4] = {1, 8, 1, 32}, decode_kv[4] = {1, 2, 700, 32};
    const clattn_algo algos[] = {CLATTN_ALGO_FUSED, CLATTN_ALGO_SPLIT_KV, CLATTN_ALGO_UNFUSED,
                                 CLATTN_ALGO_AUTO};
    for (size_t i = 0; i < sizeof algos / sizeof algos[0]; i++) {
        run(algos[i], qd, kd, 1);
        run(algos[i], decode_q, decode_kv, 0);
    }
}
