/*
 * Small forward shapes that cover every branch of the fused and split-KV kernels: several query
 * blocks and key tiles, partial last tiles, causal with both alignments and Sq < Sk and Sq > Sk
 * (empty rows), windows, GQA/MQA, D != Dv, odd head dims, strided views with offsets, f16 and
 * bf16 storage, softcap, a broadcast bias with -inf entries, seqlens, dropout, positions
 * (q_start, k_start); and three backward cases (f16 everywhere with bias and dropout; f32 with a
 * window, softcap and seqlens; f32 with positions, a window and dropout). Small
 * enough to run under oclgrind (tests/oclgrind.sh), which checks every memory access and looks
 * for races; on PoCL it is a fast smoke test of the same cases.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define SHAPE TC_SHAPE
#define TL TC_TL
#define WIN TC_WIN
#define SEQ TC_SEQ
/* q, k, v and out in layout l (lse dense) */
#define ALL(l) .lq = &(l), .lk = &(l), .lv = &(l), .lo = &(l)
/* q, k, v, out and the bias in dtype t */
#define STORED(t) .dtype = (t), .out_dtype = (t), .bias_dtype = (t)
/* bias [1, Hq, Sq, Sk] with -inf at every 7th key of a row */
#define STRIPED_BIAS .bias = TC_BIAS_BATCH1, .bias_inf = TC_INF_STRIPES

/* Every case runs with q and k uniform in [-2, 2) (run_case), sharper scores than the other
   suites' [-1, 1). */
static const test_case cases[] = {
    {"1x1", SHAPE(1, 1, 1, 1, 1, 1, 1)},
    {"causal", SHAPE(1, 2, 1, 9, 13, 20, 20), .causal = 1},
    {"causal, D != Dv, bshd+pad", SHAPE(2, 4, 2, 70, 67, 16, 24), .causal = 1,
     ALL(LAYOUT_BSHD_PADDED)},
    {"causal Sq > Sk, bhsd+pad", SHAPE(1, 2, 2, 67, 5, 8, 8), .causal = 1,
     ALL(LAYOUT_BHSD_PADDED)},
    {"causal TL, odd head dims, sbhd+pad", SHAPE(1, 3, 1, 33, 80, 5, 3), .causal = 1, TL,
     ALL(LAYOUT_SBHD_PADDED)},
    {"window (7,3)", SHAPE(1, 2, 1, 40, 40, 12, 12), .window = WIN(7, 3)},
    {"causal TL window (10,-1), bshd", SHAPE(1, 2, 2, 30, 70, 33, 17), .causal = 1, TL,
     .window = WIN(10, -1), ALL(LAYOUT_BSHD)},
    {"f16 FUSED softcap bias seqlens", SHAPE(2, 4, 2, 21, 37, 16, 16), .causal = 1,
     ALL(LAYOUT_BHSD_PADDED), STORED(CLATTN_F16), .algo = CLATTN_ALGO_FUSED, .softcap = 5.0f,
     STRIPED_BIAS, .seqlens_q = SEQ(18, 19), .seqlens_k = SEQ(32, 33)},
    {"bf16 SPLIT_KV window bias seqlens", SHAPE(2, 2, 1, 3, 600, 24, 8),
     .window = WIN(300, -1), ALL(LAYOUT_BSHD), STORED(CLATTN_BF16),
     .algo = CLATTN_ALGO_SPLIT_KV, STRIPED_BIAS, .seqlens_q = SEQ(3, 3),
     .seqlens_k = SEQ(595, 596)},
    {"decode causal softcap", SHAPE(1, 4, 1, 2, 530, 8, 8), .causal = 1, .softcap = 30.0f},
    {"causal TL dropout", SHAPE(2, 2, 2, 19, 23, 8, 8), .causal = 1, TL, .dropout_p = 0.25f},
    {"SPLIT_KV seqlens dropout", SHAPE(1, 4, 2, 2, 600, 8, 8), .algo = CLATTN_ALGO_SPLIT_KV,
     .seqlens_q = SEQ(2), .seqlens_k = SEQ(595), .dropout_p = 0.5f},
    /* a shard of a longer sequence: rows past the keys, rows before them (empty), a window
       that ends inside the shard, dropout counters at positions over 2^32 */
    {"positions causal TL dropout", SHAPE(1, 2, 1, 24, 20, 8, 8), .causal = 1, TL,
     .q_start = 50, .k_start = 40, .dropout_p = 0.25f},
    {"positions FUSED window, q before k", SHAPE(1, 2, 2, 30, 17, 8, 8), .window = WIN(5, 2),
     .algo = CLATTN_ALGO_FUSED, .q_start = 10, .k_start = 25},
    {"positions SPLIT_KV causal dropout past 2^32", SHAPE(1, 4, 1, 2, 600, 8, 8), .causal = 1,
     TL, .algo = CLATTN_ALGO_SPLIT_KV, .q_start = (1ll << 32) + 300,
     .k_start = (1ll << 32) - 7, .dropout_p = 0.5f},
    /* sinks: rows without keys get the sink's lse, seqlens padding rows stay -inf; split-KV
       counts the sink once over its key ranges */
    {"sinks FUSED causal Sq > Sk, seqlens", SHAPE(2, 2, 2, 20, 6, 8, 8), .causal = 1,
     .algo = CLATTN_ALGO_FUSED, .sinks = 1, .seqlens_q = SEQ(20, 17)},
    {"sinks SPLIT_KV GQA bias dropout", SHAPE(1, 4, 2, 2, 600, 8, 8),
     .algo = CLATTN_ALGO_SPLIT_KV, .sinks = 1, STRIPED_BIAS, .dropout_p = 0.25f},
};

TestSuite(small, .fini = test_ctx_release);

/* The scaled error of a result: 16-bit outputs scaled by the storage's relative precision to
   f32's tolerance (tol_f32 / tol). */
static void fold_scaled(cmp_result *worst, cmp_result r, double tol_f32, double tol)
{
    r.worst *= tol_f32 / tol;
    cmp_merge(worst, &r);
}

/* What a forward's out error is scaled by: the storage rounding of a 16-bit out, else the f32
   tolerance (scale 1). */
static double out_scale(clattn_dtype out_dtype)
{
    return out_dtype == CLATTN_F16    ? TOL_OUT_STORE_F16
           : out_dtype == CLATTN_BF16 ? TOL_OUT_STORE_BF16
                                      : TOL_F32_OUT;
}

static void run_case(const test_case *table_case, cmp_result *worst_out, cmp_result *worst_lse)
{
    test_case c = *table_case;
    c.seed = (uint64_t)(c.Sq * 1000 + c.Sk);
    c.qk_range = 2.0;
    c.dropout_seed = 0x5eed0000beefull + (uint64_t)c.Sk;
    char label[512];
    tc_describe(&c, label, sizeof label);
    tc_run r;
    tc_build(&r, &c);
    tc_upload(&r);
    TEST_CHECK_STATUS(tc_forward(&r, 0, NULL, NULL), label);
    tc_fwd_result res;
    tc_check_forward(&r, label, &res);
    fold_scaled(worst_out, res.out, TOL_F32_OUT, out_scale(c.out_dtype));
    cmp_merge(worst_lse, &res.lse);
    tc_free(&r);
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

/* Every tensor in its own layout. */
#define BWD_LAYOUTS                                                                         \
    .lk = &LAYOUT_BSHD_PADDED, .ldq = &LAYOUT_BHSD_PADDED, .ldk = &LAYOUT_BSHD_PADDED,      \
    .ldv = &LAYOUT_SBHD_PADDED

/* Tiny: both kernels (dk/dv over key blocks, dq over query blocks) with partial blocks, GQA
   sums, causal with rows and keys that see nothing, bias with -inf, dropout, f16 storage of
   every tensor; and f32 with a window, softcap and padded batches. */
static const test_case bwd_cases[] = {
    {"f16 everywhere, causal, bias, dropout", SHAPE(1, 2, 1, 7, 9, 8, 8), .causal = 1,
     STORED(CLATTN_F16), .grad_dtype = CLATTN_F16, STRIPED_BIAS, .dropout_p = 0.25f,
     BWD_LAYOUTS},
    {"f32 causal TL, window, softcap, seqlens", SHAPE(2, 2, 1, 9, 5, 8, 5), .causal = 1, TL,
     .window = WIN(2, -1), .softcap = 3.0f, .seqlens_q = SEQ(7, 8), .seqlens_k = SEQ(2, 3),
     BWD_LAYOUTS},
    {"f32 positions, causal TL, window, dropout", SHAPE(1, 2, 1, 9, 11, 8, 8), .causal = 1,
     TL, .window = WIN(6, -1), .q_start = 13, .k_start = 8, .dropout_p = 0.25f, BWD_LAYOUTS},
    {"f32 sinks, causal Sq > Sk, GQA", SHAPE(1, 4, 2, 12, 8, 8, 8), .causal = 1, .sinks = 1,
     BWD_LAYOUTS},
};

static void run_bwd_case(const test_case *table_case, size_t index, cmp_result *worst)
{
    test_case c = *table_case;
    c.backward = 1;
    c.seed = 0xb0c0 + index;
    c.qk_range = 2.0;
    c.dropout_seed = 0xd00d0000feedull + index;
    c.dropout_offset = 3 + index;
    char label[512];
    tc_describe(&c, label, sizeof label);
    tc_run r;
    tc_build(&r, &c);
    tc_upload(&r);
    TEST_CHECK_STATUS(tc_forward(&r, 0, NULL, NULL), "forward");
    TEST_CHECK_STATUS(tc_backward(&r, 0, NULL, NULL), "backward");
    tc_grad_result g;
    tc_check_backward(&r, label, &g);
    /* scaled to the f32 tolerance, as the forward cases above do for 16-bit outputs */
    fold_scaled(worst, g.dq, TOL_F32_GRAD, g.tol);
    fold_scaled(worst, g.dk, TOL_F32_GRAD, g.tol);
    fold_scaled(worst, g.dv, TOL_F32_GRAD, g.tol);
    tc_free(&r);
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

/* A caller built against 0.1 passes a shorter desc (struct_size without q_start and what
   follows): the call reads none of the later fields (poisoned here) and takes their defaults,
   forward and backward. */
Test(small, a_desc_of_0_1_runs_with_the_later_fields_at_defaults)
{
    test_case c = {"0.1 desc", SHAPE(1, 2, 1, 6, 9, 8, 8), .causal = 1, .backward = 1};
    c.seed = 0x0101;
    tc_run r;
    tc_build(&r, &c);
    tc_upload(&r);
    tc_args a;
    tc_args_init(&a, &r);
    a.desc.struct_size = offsetof(clattn_attention_desc, q_start);
    a.desc.q_start = -7;                /* invalid if read: the call would fail */
    a.desc.k_start = INT64_MAX;
    TEST_CHECK_STATUS(tc_call_forward(&a, NULL), "forward with a 0.1 desc");
    TEST_CHECK_STATUS(tc_call_backward(&a, NULL), "backward with a 0.1 desc");
    tc_check_forward(&r, c.name, NULL);
    tc_check_backward(&r, c.name, NULL);
    tc_free(&r);
}

/* Sinks on the unfused path (CLBlast) too: the same cases as the table's FUSED and SPLIT_KV
   ones, forced UNFUSED; skipped in a build without CLBlast, and under oclgrind, whose
   uninitialized-value check reports reads in CLBlast's own XgemmDirect kernels (not ours). */
Test(small, sinks_on_the_unfused_path)
{
    if (strstr(clattn_context_device_name(test_ctx()), "Oclgrind"))
        cr_skip_test("oclgrind: the unfused path's GEMMs are CLBlast's kernels");
    const test_case unfused[] = {
        {"sinks UNFUSED causal Sq > Sk, seqlens", SHAPE(2, 2, 2, 20, 6, 8, 8), .causal = 1,
         .algo = CLATTN_ALGO_UNFUSED, .sinks = 1, .seqlens_q = SEQ(20, 17)},
        {"sinks UNFUSED GQA bias dropout", SHAPE(1, 4, 2, 2, 600, 8, 8),
         .algo = CLATTN_ALGO_UNFUSED, .sinks = 1, STRIPED_BIAS, .dropout_p = 0.25f},
    };
    char plan[256];
    tc_run r;
    tc_build(&r, &unfused[0]);
    tc_upload(&r);
    tc_args a;
    tc_args_init(&a, &r);
    clattn_status st = clattn_attention_plan(test_ctx(), &a.desc, &a.q, &a.k, &a.v, plan,
                                             sizeof plan);
    tc_free(&r);
    if (st == CLATTN_ERROR_UNSUPPORTED)
        cr_skip_test("no unfused path in this build: %s", plan);
    cmp_result worst_out = cmp_none(), worst_lse = cmp_none();
    for (size_t i = 0; i < sizeof unfused / sizeof unfused[0]; i++)
        run_case(&unfused[i], &worst_out, &worst_lse);
    char o[256], l[256];
    cr_log_info("unfused with sinks: out %s; lse %s", cmp_describe(&worst_out, o, sizeof o),
                cmp_describe(&worst_lse, l, sizeof l));
    cr_assert(worst_out.worst <= TOL_F32_OUT && worst_out.hard == 0, "out: %s", o);
    cr_assert(worst_lse.worst <= TOL_F32_LSE && worst_lse.hard == 0, "lse: %s", l);
}
