/*
 * Small forward shapes that cover every branch of the fused and split-KV kernels: several query
 * blocks and key tiles, partial last tiles, causal with both alignments and Sq < Sk and Sq > Sk
 * (empty rows), windows, GQA/MQA, D != Dv, odd head dims, strided views with offsets, f16 and
 * bf16 storage, softcap, a broadcast bias with -inf entries, seqlens, dropout; and two backward
 * cases (f16 everywhere with bias and dropout; f32 with a window, softcap and seqlens). Small
 * enough to run under oclgrind (tests/oclgrind.sh), which checks every memory access and looks
 * for races; on PoCL it is a fast smoke test of the same cases.
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

/* ---- the backward ------------------------------------------------------------------------- */

typedef struct small_bwd_case {
    int64_t b, hq, hkv, sq, sk, d, dv;
    int causal;
    clattn_mask_align align;
    int64_t window_left, window_right;
    clattn_dtype dtype;        /* q, k, v */
    clattn_dtype out_dtype;    /* out and dout */
    clattn_dtype grad_dtype;   /* dq, dk, dv */
    float softcap;
    int bias;                  /* 1: [1, Hq, Sq, Sk] with -inf entries (make_bias) */
    int seqlens;               /* 1: seqlens_q = Sq - 2 + b, seqlens_k = Sk - 3 + b */
    float dropout_p;
} small_bwd_case;

/* Tiny: both kernels (dk/dv over key blocks, dq over query blocks) with partial blocks, GQA
   sums, causal with rows and keys that see nothing, bias with -inf, dropout, f16 storage of
   every tensor; and f32 with a window, softcap and padded batches. */
static const small_bwd_case bwd_cases[] = {
    {1, 2, 1, 7, 9, 8, 8, 1, CLATTN_ALIGN_BOTTOM_RIGHT, -1, -1, CLATTN_F16, CLATTN_F16,
     CLATTN_F16, 0.0f, 1, 0, 0.25f},
    {2, 2, 1, 9, 5, 8, 5, 1, CLATTN_ALIGN_TOP_LEFT, 2, -1, CLATTN_F32, CLATTN_F32, CLATTN_F32,
     3.0f, 0, 1, 0.0f},
};

static void run_bwd_case(const small_bwd_case *c, size_t index, cmp_result *worst)
{
    const int64_t qd[4] = {c->b, c->hq, c->sq, c->d}, kd[4] = {c->b, c->hkv, c->sk, c->d},
                  vd[4] = {c->b, c->hkv, c->sk, c->dv}, od[4] = {c->b, c->hq, c->sq, c->dv},
                  ld[4] = {c->b, c->hq, c->sq, 1};
    test_tensor q, k, v, out, dout, lse, dq, dk, dv, bias;
    test_rng rng;
    rng_seed(&rng, 0xb0c0 + index);
    tt_init(&q, c->dtype, qd, &LAYOUT_BHSD);
    tt_init(&k, c->dtype, kd, &LAYOUT_BSHD_PADDED);
    tt_init(&v, c->dtype, vd, &LAYOUT_BHSD);
    tt_init(&out, c->out_dtype, od, &LAYOUT_BHSD);
    tt_init(&dout, c->out_dtype, od, &LAYOUT_BHSD);
    tt_init(&lse, CLATTN_F32, ld, &LAYOUT_BHSD);
    tt_init(&dq, c->grad_dtype, qd, &LAYOUT_BHSD_PADDED);
    tt_init(&dk, c->grad_dtype, kd, &LAYOUT_BSHD_PADDED);
    tt_init(&dv, c->grad_dtype, vd, &LAYOUT_SBHD_PADDED);
    tt_fill_random(&q, &rng, -2.0, 2.0);
    tt_fill_random(&k, &rng, -2.0, 2.0);
    tt_fill_random(&v, &rng, -1.0, 2.0);
    tt_fill_random(&dout, &rng, -1.0, 1.0);
    test_tensor *inputs[] = {&q, &k, &v, &dout};
    for (int i = 0; i < 4; i++)
        tt_upload(inputs[i], CL_MEM_READ_ONLY);
    test_tensor *outputs[] = {&out, &lse, &dq, &dk, &dv};
    for (int i = 0; i < 5; i++)
        tt_upload(outputs[i], CL_MEM_READ_WRITE);

    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.causal = c->causal;
    desc.align = c->align;
    desc.window_left = c->window_left;
    desc.window_right = c->window_right;
    desc.softcap = c->softcap;
    desc.dropout_p = c->dropout_p;
    desc.dropout_seed = 0xd00d0000feedull + index;
    desc.dropout_offset = 3 + index;
    if (c->bias) {
        small_case shape = {.hq = c->hq, .sq = c->sq, .sk = c->sk, .dtype = c->dtype};
        make_bias(&shape, &bias, &rng);
        desc.bias = &bias.view;
    }
    int32_t seqlens_q[2], seqlens_k[2];
    for (int b = 0; b < 2; b++) {
        seqlens_q[b] = (int32_t)(c->sq - 2 + b);
        seqlens_k[b] = (int32_t)(c->sk - 3 + b);
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
    TEST_CHECK_STATUS(clattn_attention_backward(test_ctx(), &desc, &q.view, &k.view, &v.view,
                                                &out.view, &dout.view, &lse.view, &dq.view,
                                                &dk.view, &dv.view, 0, NULL, NULL),
                      "backward");
    tt_download(&dq);
    tt_download(&dk);
    tt_download(&dv);

    ref_params p = test_ref_params_of(&desc);
    if (c->seqlens) {
        p.seqlens_q = seqlens_q;
        p.seqlens_k = seqlens_k;
    }
    test_grads want;
    test_reference_backward_of(p, &q, &k, &v, &dout, c->bias ? &bias : NULL, &want);
    double *bias_store = NULL;
    ref_tensor rb;
    if (c->bias) {
        rb = tt_to_ref(&bias, &bias_store);
        p.bias = &rb;
    }
    unsigned char *zq, *zkv;
    test_grad_zero_rows(&p, c->b, c->hq, c->hkv, c->sq, c->sk, &zq, &zkv);
    const test_tensor *got[3] = {&dq, &dk, &dv};
    const ref_tensor *ref[3] = {&want.dq, &want.dk, &want.dv};
    const unsigned char *zero[3] = {zq, zkv, zkv};
    const char *names[3] = {"dq", "dk", "dv"};
    double tol = test_grad_tolerance(c->grad_dtype, c->out_dtype);
    for (int g = 0; g < 3; g++) {
        char buf[256];
        cmp_result r = compare_grad(got[g], ref[g], zero[g]);
        cr_expect(r.worst <= tol && r.hard == 0, "backward case %zu: %s %s (tolerance %g)",
                  index, names[g], cmp_describe(&r, buf, sizeof buf), tol);
        cr_expect_eq(tt_outside_damage(got[g], NULL), 0,
                     "backward case %zu: bytes outside the %s view were written", index,
                     names[g]);
        /* scaled to the f32 tolerance, as the forward cases above do for 16-bit outputs */
        r.worst *= TOL_F32_GRAD / tol;
        cmp_merge(worst, &r);
    }
    free(zq);
    free(zkv);
    free(bias_store);
    test_grads_free(&want);
    for (int i = 0; i < 4; i++)
        tt_free(inputs[i]);
    for (int i = 0; i < 5; i++)
        tt_free(outputs[i]);
    if (c->bias)
        tt_free(&bias);
    if (lengths_q) {
        clReleaseMemObject(lengths_q);
        clReleaseMemObject(lengths_k);
    }
}

Test(small, backward_matches_reference)
{
    cmp_result worst = cmp_none();
    for (size_t i = 0; i < sizeof bwd_cases / sizeof bwd_cases[0]; i++)
        run_bwd_case(&bwd_cases[i], i, &worst);
    char a[256];
    cr_log_info("%zu backward cases: worst gradient (scaled to the f32 tolerance %g) %s",
                sizeof bwd_cases / sizeof bwd_cases[0], TOL_F32_GRAD,
                cmp_describe(&worst, a, sizeof a));
    cr_assert(worst.worst <= TOL_F32_GRAD && worst.hard == 0, "gradients: %s", a);
}
