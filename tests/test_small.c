/*
 * Small forward shapes that cover every branch of the fused and split-KV kernels: several query
 * blocks and key tiles, partial last tiles, causal with both alignments and Sq < Sk and Sq > Sk
 * (empty rows), windows, GQA/MQA, D != Dv, odd head dims, strided views with offsets, f16 and
 * bf16 storage, softcap, a broadcast bias with -inf entries, seqlens, dropout. Small enough to run
 * under oclgrind (tests/oclgrind.sh), which checks every memory access and looks for races; on
 * PoCL it is a fast smoke test of the same cases.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "common.h"

typedef struct small_case {
    int64_t b, hq, hkv, sq, sk, d, dv;
    int causal;
    clattn_mask_align align;
    int64_t window_left, window_right;
    const test_layout *layout;
    clattn_dtype dtype;      /* q, k, v and out */
    clattn_algo algo;
    float softcap;
    int bias;                /* 0: none; 1: [1, Hq, Sq, Sk] with -inf entries */
    int seqlens;             /* 0: none; 1: seqlens_q = Sq - 3 and seqlens_k = Sk - 5 per batch */
    float dropout_p;
} small_case;

#define F32 CLATTN_F32, CLATTN_ALGO_AUTO, 0.0f, 0, 0, 0.0f

static const small_case cases[] = {
    {1, 1, 1, 1, 1, 1, 1, 0, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BHSD, F32},
    {1, 2, 1, 9, 13, 20, 20, 1, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BHSD, F32},
    {2, 4, 2, 70, 67, 16, 24, 1, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BSHD_PADDED, F32},
    {1, 2, 2, 67, 5, 8, 8, 1, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BHSD_PADDED, F32},
    {1, 3, 1, 33, 80, 5, 3, 1, CLATTN_ALIGN_TOP_LEFT, -1, -1, &LAYOUT_SBHD_PADDED, F32},
    {1, 2, 1, 40, 40, 12, 12, 0, CLATTN_ALIGN_BOTTOM_RIGHT, 7, 3, &LAYOUT_BHSD, F32},
    {1, 2, 2, 30, 70, 33, 17, 1, CLATTN_ALIGN_TOP_LEFT, 10, -1, &LAYOUT_BSHD, F32},
    {2, 4, 2, 21, 37, 16, 16, 1, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BHSD_PADDED,
     CLATTN_F16, CLATTN_ALGO_FUSED, 5.0f, 1, 1, 0.0f},
    {2, 2, 1, 3, 600, 24, 8, 0, CLATTN_ALIGN_BOTTOM_RIGHT, 300, -1, &LAYOUT_BSHD,
     CLATTN_BF16, CLATTN_ALGO_SPLIT_KV, 0.0f, 1, 1, 0.0f},
    {1, 4, 1, 2, 530, 8, 8, 1, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BHSD,
     CLATTN_F32, CLATTN_ALGO_AUTO, 30.0f, 0, 0, 0.0f},
    {2, 2, 2, 19, 23, 8, 8, 1, CLATTN_ALIGN_TOP_LEFT, -1, -1, &LAYOUT_BHSD,
     CLATTN_F32, CLATTN_ALGO_AUTO, 0.0f, 0, 0, 0.25f},
    {1, 4, 2, 2, 600, 8, 8, 0, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, &LAYOUT_BHSD,
     CLATTN_F32, CLATTN_ALGO_SPLIT_KV, 0.0f, 0, 1, 0.5f},
};

/* bias [1, Hq, Sq, Sk] in dtype, every 7th entry -inf; its f64 copy in *store. */
static void make_bias(const small_case *c, test_tensor *bias, test_rng *rng)
{
    const int64_t dims[4] = {1, c->hq, c->sq, c->sk};
    tt_init(bias, c->dtype, dims, &LAYOUT_BHSD);
    tt_fill_random(bias, rng, -1.0, 1.0);
    for (int64_t h = 0; h < c->hq; h++)
        for (int64_t i = 0; i < c->sq; i++)
            for (int64_t j = (i + h) % 7; j < c->sk; j += 7)
                tt_set(bias, 0, h, i, j, -INFINITY);
    tt_upload(bias, CL_MEM_READ_ONLY);
}

/* out stored in 16 bits: relative rounding of the storage (half an ulp, and a margin) */
#define TOL_F16_STORE 1e-3
#define TOL_BF16_STORE 8e-3

TestSuite(small, .fini = test_ctx_release);

static void run_case(const small_case *c, cmp_result *worst_out, cmp_result *worst_lse)
{
    const int64_t qd[4] = {c->b, c->hq, c->sq, c->d}, kd[4] = {c->b, c->hkv, c->sk, c->d},
                  vd[4] = {c->b, c->hkv, c->sk, c->dv}, od[4] = {c->b, c->hq, c->sq, c->dv},
                  ld[4] = {c->b, c->hq, c->sq, 1};
    test_tensor q, k, v, out, lse, bias;
    test_rng rng;
    rng_seed(&rng, (uint64_t)(c->sq * 1000 + c->sk));
    tt_init(&q, c->dtype, qd, c->layout);
    tt_init(&k, c->dtype, kd, c->layout);
    tt_init(&v, c->dtype, vd, c->layout);
    tt_init(&out, c->dtype, od, c->layout);
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
    desc.algo = c->algo;
    desc.softcap = c->softcap;
    desc.dropout_p = c->dropout_p;
    desc.dropout_seed = 0x5eed0000beefull + (uint64_t)c->sk;
    if (c->bias) {
        make_bias(c, &bias, &rng);
        desc.bias = &bias.view;
    }
    int32_t seqlens_q[2], seqlens_k[2];
    for (int b = 0; b < 2; b++) {
        seqlens_q[b] = (int32_t)(c->sq > 3 ? c->sq - 3 + b : c->sq);
        seqlens_k[b] = (int32_t)(c->sk - 5 + b);
    }
    cl_mem lengths_q = NULL, lengths_k = NULL;
    if (c->seqlens) {
        lengths_q = buf_new(CL_MEM_READ_ONLY, sizeof seqlens_q, seqlens_q);
        lengths_k = buf_new(CL_MEM_READ_ONLY, sizeof seqlens_k, seqlens_k);
        desc.seqlens_q = lengths_q;
        desc.seqlens_k = lengths_k;
    }
    TEST_CHECK_STATUS(clattn_attention_forward(test_ctx(), &desc, &q.view, &k.view, &v.view,
                                               &out.view, &lse.view, 0, NULL, NULL),
                      "forward");
    tt_download(&out);
    tt_download(&lse);

    ref_params p;
    ref_params_init(&p);
    p.causal = c->causal;
    p.align = c->align;
    p.window_left = c->window_left;
    p.window_right = c->window_right;
    p.softcap = c->softcap;
    p.dropout_p = c->dropout_p;
    p.dropout_seed = desc.dropout_seed;
    if (c->seqlens) {
        p.seqlens_q = seqlens_q;
        p.seqlens_k = seqlens_k;
    }
    double *want_out, *want_lse;
    ref_tensor ro, rl;
    test_reference_of(p, &q, &k, &v, c->bias ? &bias : NULL, &want_out, &ro, &want_lse, &rl);
    cmp_result r_out = compare_out(&out, &ro), r_lse = compare_lse(&lse, &rl);
    /* 16-bit outputs: scale the error by the storage's relative precision to f32's tolerance */
    if (c->dtype != CLATTN_F32)
        r_out.worst *= TOL_F32_OUT / (c->dtype == CLATTN_F16 ? TOL_F16_STORE : TOL_BF16_STORE);
    cmp_merge(worst_out, &r_out);
    cmp_merge(worst_lse, &r_lse);
    cr_expect_eq(tt_outside_damage(&out, NULL), 0, "bytes outside the out view were written");

    free(want_out);
    free(want_lse);
    test_tensor *all[] = {&q, &k, &v, &out, &lse};
    for (int i = 0; i < 5; i++)
        tt_free(all[i]);
    if (c->bias)
        tt_free(&bias);
    if (lengths_q) {
        clReleaseMemObject(lengths_q);
        clReleaseMemObject(lengths_k);
    }
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
