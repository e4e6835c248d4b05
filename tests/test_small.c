/*
 * Small forward shapes that cover every branch of the fused kernel: several query blocks and key
 * tiles, partial last tiles, causal with both alignments and Sq < Sk and Sq > Sk (empty rows),
 * windows, GQA/MQA, D != Dv, odd head dims, strided views with offsets. Small enough to run
 * under oclgrind (tests/oclgrind.sh), which checks every memory access and looks for races; on
 * PoCL it is a fast smoke test of the same cases.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "common.h"

typedef struct small_case {
    int64_t b, hq, hkv, sq, sk, d, dv;
    int causal;
    clattn_mask_align align;
    int64_t window_left, window_right;
    const test_layout *layout;
} small_case;

static const small_case cases[] = {
    {1, 1, 1, 1, 1, 1, 1, 0, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BHSD},
    {1, 2, 1, 9, 13, 20, 20, 1, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BHSD},
    {2, 4, 2, 70, 67, 16, 24, 1, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BSHD_PADDED},
    {1, 2, 2, 67, 5, 8, 8, 1, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BHSD_PADDED},
    {1, 3, 1, 33, 80, 5, 3, 1, CLATTN_ALIGN_TOP_LEFT, -1, -1, &LAYOUT_SBHD_PADDED},
    {1, 2, 1, 40, 40, 12, 12, 0, CLATTN_ALIGN_BOTTOM_RIGHT, 7, 3, &LAYOUT_BHSD},
    {1, 2, 2, 30, 70, 33, 17, 1, CLATTN_ALIGN_TOP_LEFT, 10, -1, &LAYOUT_BSHD},
};

TestSuite(small, .fini = test_ctx_release);

static void run_case(const small_case *c, cmp_result *worst_out, cmp_result *worst_lse)
{
    const int64_t qd[4] = {c->b, c->hq, c->sq, c->d}, kd[4] = {c->b, c->hkv, c->sk, c->d},
                  vd[4] = {c->b, c->hkv, c->sk, c->dv}, od[4] = {c->b, c->hq, c->sq, c->dv},
                  ld[4] = {c->b, c->hq, c->sq, 1};
    test_tensor q, k, v, out, lse;
    test_rng rng;
    rng_seed(&rng, (uint64_t)(c->sq * 1000 + c->sk));
    tt_init(&q, CLATTN_F32, qd, c->layout);
    tt_init(&k, CLATTN_F32, kd, c->layout);
    tt_init(&v, CLATTN_F32, vd, c->layout);
    tt_init(&out, CLATTN_F32, od, c->layout);
    tt_init(&lse, CLATTN_F32, ld, &LAYOUT_BHSD);
    test_tensor *inputs[] = {&q, &k, &v};
    for (int i = 0; i < 3; i++) {
        tt_fill_random(inputs[i], &rng, -2.0, 2.0);
        tt_upload(inputs[i], CL_MEM_READ_ONLY);
    }
    tt_upload(&out, CL_MEM_READ_WRITE);
    tt_upload(&lse, CL_MEM_READ_WRITE);

    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.causal = c->causal;
    desc.align = c->align;
    desc.window_left = c->window_left;
    desc.window_right = c->window_right;
    TEST_CHECK_STATUS(clattn_attention_forward(test_ctx(), &desc, &q.view, &k.view, &v.view,
                                               &out.view, &lse.view, 0, NULL, NULL),
                      "forward");
    tt_download(&out);
    tt_download(&lse);

    double *stores[3];
    double *want_out = calloc((size_t)(c->b * c->hq * c->sq * c->dv), sizeof(double));
    double *want_lse = calloc((size_t)(c->b * c->hq * c->sq), sizeof(double));
    ref_tensor rq = tt_to_ref(&q, &stores[0]), rk = tt_to_ref(&k, &stores[1]),
               rv = tt_to_ref(&v, &stores[2]),
               ro = ref_tensor_dense(want_out, c->b, c->hq, c->sq, c->dv),
               rl = ref_tensor_dense(want_lse, c->b, c->hq, c->sq, 1);
    ref_params p;
    ref_params_init(&p);
    p.causal = c->causal;
    p.align = c->align;
    p.window_left = c->window_left;
    p.window_right = c->window_right;
    cr_assert_eq(ref_attention_forward(&p, &rq, &rk, &rv, &ro, &rl), 0);
    cmp_result r_out = compare_out(&out, &ro), r_lse = compare_lse(&lse, &rl);
    cmp_merge(worst_out, &r_out);
    cmp_merge(worst_lse, &r_lse);
    cr_expect_eq(tt_outside_damage(&out, NULL), 0, "bytes outside the out view were written");

    for (int i = 0; i < 3; i++)
        free(stores[i]);
    free(want_out);
    free(want_lse);
    test_tensor *all[] = {&q, &k, &v, &out, &lse};
    for (int i = 0; i < 5; i++)
        tt_free(all[i]);
}

Test(small, every_kernel_branch_matches_reference)
{
    cmp_result worst_out = cmp_none(), worst_lse = cmp_none();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], &worst_out, &worst_lse);
    char a[256], b[256];
    cr_log_info("%zu cases: out %s; lse %s", sizeof cases / sizeof cases[0],
                cmp_describe(&worst_out, a, sizeof a), cmp_describe(&worst_lse, b, sizeof b));
    cr_assert(worst_out.worst <= TOL_F32_OUT && worst_out.hard == 0, "out: %s", a);
    cr_assert(worst_lse.worst <= TOL_F32_LSE && worst_lse.hard == 0, "lse: %s", b);
}
