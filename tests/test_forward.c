/* The f32 forward against the f64 reference: shapes, head dims, layouts, scale, causal masks,
   GQA/MQA, windows, lse, rows without keys, NaN rules, canaries around outputs, events; a
   backward after the forward; and the features that this version must refuse with
   CLATTN_ERROR_UNSUPPORTED.

   Each test sweeps many cases in one process (one context, kernels built once); it logs the
   worst error of its sweep and asserts it under TOL_F32_OUT / TOL_F32_LSE (common.h). Input
   buffers hold NaN/Inf outside their views, so a kernel that reads padding shows up as NaN.
   A case is a test_case (common.h), made with tc_shape() and checked by tc_check_forward(). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

TestSuite(forward, .fini = test_ctx_release);

/* ---- sweeps: worst error over many cases ------------------------------------------------- */

typedef struct sweep {
    int cases;
    cmp_result out, lse;
    char out_case[512], lse_case[512];
} sweep;

static void sweep_init(sweep *s)
{
    memset(s, 0, sizeof *s);
    s->out = cmp_none();
    s->lse = cmp_none();
}

/* Check everything about r's outputs (tc_check_forward); fold the errors into s. */
static void check(tc_run *r, sweep *s, tc_fwd_result *res)
{
    char label[512];
    tc_fwd_result local;
    if (!res)
        res = &local;
    tc_describe(&r->c, label, sizeof label);
    tc_check_forward(r, label, res);
    if (res->out.worst > s->out.worst || s->cases == 0)
        snprintf(s->out_case, sizeof s->out_case, "%s", label);
    cmp_merge(&s->out, &res->out);
    if (!r->c.no_lse) {
        if (res->lse.worst > s->lse.worst || s->cases == 0)
            snprintf(s->lse_case, sizeof s->lse_case, "%s", label);
        cmp_merge(&s->lse, &res->lse);
    }
    s->cases++;
}

/* Log the sweep's worst errors and assert them under the tolerances. */
static void sweep_report(const sweep *s, const char *what)
{
    char buf[200];
    cr_log_info("%s: %d cases; out worst %s; case: %s", what, s->cases,
                cmp_describe(&s->out, buf, sizeof buf), s->out_case);
    if (s->lse.rows)
        cr_log_info("%s: lse worst %s; case: %s", what, cmp_describe(&s->lse, buf, sizeof buf),
                    s->lse_case);
    cr_assert_gt(s->cases, 0);
    cr_assert(s->out.worst <= TOL_F32_OUT, "%s: out worst %g > %g (%s)", what, s->out.worst,
              TOL_F32_OUT, s->out_case);
    cr_assert(s->lse.worst <= TOL_F32_LSE, "%s: lse worst %g > %g (%s)", what, s->lse.worst,
              TOL_F32_LSE, s->lse_case);
}

/* Build, upload, run with an event, wait, check, free. */
static void run_case(const test_case *c, sweep *s)
{
    tc_run r;
    char label[512];
    tc_describe(c, label, sizeof label);
    tc_build(&r, c);
    tc_upload(&r);
    cl_event ev = NULL;
    clattn_status st = tc_forward(&r, 0, NULL, &ev);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s: %s", label, clattn_status_string(st),
                 clattn_last_error());
    cr_assert_str_empty(clattn_last_error(), "last error after success: %s",
                        clattn_last_error());
    test_wait_event(ev, label);
    check(&r, s, NULL);
    tc_free(&r);
}

static void run_cases(const test_case *cases, size_t n, const char *what)
{
    sweep s;
    sweep_init(&s);
    test_ctx();
    for (size_t i = 0; i < n; i++)
        run_case(&cases[i], &s);
    sweep_report(&s, what);
}

/* Build c, upload, run without an event, check. The caller frees r. */
static void run_checked(tc_run *r, const test_case *c, sweep *s, tc_fwd_result *res)
{
    char label[512];
    tc_build(r, c);
    tc_upload(r);
    TEST_CHECK_STATUS(tc_forward(r, 0, NULL, NULL), tc_describe(c, label, sizeof label));
    check(r, s, res);
}

/* ---- sweeps ------------------------------------------------------------------------------ */

static const int64_t seq_lens[] = {1, 2, 7, 31, 64, 127, 257, 300};
#define N_SEQ (sizeof seq_lens / sizeof seq_lens[0])

Test(forward, seq_len_sweep)
{
    /* Every (Sq, Sk) pair of seq_lens, D = 64, GQA 2:1, no mask. */
    test_case cases[N_SEQ * N_SEQ];
    size_t n = 0;
    for (size_t a = 0; a < N_SEQ; a++)
        for (size_t b = 0; b < N_SEQ; b++) {
            cases[n] = tc_shape(1, 2, 1, seq_lens[a], seq_lens[b], 64, 64);
            n++;
        }
    run_cases(cases, n, "seq_len_sweep");
}

static const int64_t head_dims[] = {1, 16, 64, 72, 80, 96, 128, 160, 256};

/* A Dv that differs from D, for the cases with D != Dv. */
static int64_t other_dv(int64_t d)
{
    switch (d) {
    case 1: return 16;
    case 16: return 72;
    case 64: return 16;
    case 72: return 128;
    case 80: return 64;
    case 96: return 256;
    case 128: return 96;
    case 160: return 1;
    default: return 80;
    }
}

ParameterizedTestParameters(forward, head_dim_sweep)
{
    return cr_make_param_array(int64_t, (int64_t *)head_dims,
                               sizeof head_dims / sizeof head_dims[0]);
}

ParameterizedTest(int64_t *dp, forward, head_dim_sweep)
{
    /* One head dim per process: small and medium shapes, Dv = D and Dv != D, causal and not,
       AUTO and FUSED; the large shapes only for the largest head dims. */
    int64_t d = *dp, dv2 = other_dv(d);
    test_case cases[16];
    size_t n = 0;
    cases[n++] = tc_shape(1, 1, 1, 1, 1, d, d);
    cases[n++] = tc_shape(2, 2, 2, 7, 31, d, d);
    cases[n++] = tc_shape(1, 3, 1, 33, 70, d, d);
    cases[n] = tc_shape(1, 2, 1, 64, 127, d, dv2);
    cases[n++].algo = CLATTN_ALGO_FUSED;
    cases[n] = tc_shape(2, 2, 1, 31, 64, d, d);
    cases[n++].causal = 1;
    cases[n] = tc_shape(1, 2, 2, 17, 5, d, dv2);
    cases[n].causal = 1;
    cases[n++].align = CLATTN_ALIGN_TOP_LEFT;
    cases[n] = tc_shape(1, 4, 2, 1, 257, d, d);
    cases[n++].algo = CLATTN_ALGO_FUSED;
    if (d >= 160) {
        cases[n++] = tc_shape(1, 2, 1, 257, 300, d, d);
        cases[n] = tc_shape(1, 1, 1, 300, 257, d, dv2);
        cases[n++].causal = 1;
    }
    char what[64];
    snprintf(what, sizeof what, "head_dim_sweep D=%ld", (long)d);
    run_cases(cases, n, what);
}

Test(forward, layouts_strides_offsets)
{
    /* Padded rows, permuted layouts, byte offsets, different layouts per tensor, broadcast k/v
       over the batch. Every input buffer holds NaN/Inf around its view. */
    const test_layout *L[] = {&LAYOUT_BHSD, &LAYOUT_BSHD, &LAYOUT_BHSD_PADDED,
                              &LAYOUT_BSHD_PADDED, &LAYOUT_SBHD_PADDED};
    test_case cases[16];
    size_t n = 0;
    for (size_t i = 0; i < 5; i++) {
        /* tensor t of case i uses layout (i + t) % 5 */
        cases[n] = tc_shape(2, 4, 2, 37, 53, 40, 24);
        cases[n].lq = L[i % 5];
        cases[n].lk = L[(i + 1) % 5];
        cases[n].lv = L[(i + 2) % 5];
        cases[n].lo = L[(i + 3) % 5];
        cases[n].ll = L[(i + 4) % 5];
        cases[n].causal = (int)(i & 1);
        n++;
    }
    cases[n] = tc_shape(3, 2, 1, 1, 129, 64, 64);   /* decode-like, all padded */
    cases[n].lq = cases[n].lk = cases[n].lv = cases[n].lo = cases[n].ll = &LAYOUT_SBHD_PADDED;
    n++;
    cases[n] = tc_shape(2, 4, 4, 70, 45, 72, 72);   /* all BSHD */
    cases[n].lq = cases[n].lk = cases[n].lv = cases[n].lo = cases[n].ll = &LAYOUT_BSHD;
    n++;
    cases[n] = tc_shape(3, 4, 2, 19, 33, 16, 16);   /* k, v shared by every batch */
    cases[n].kv_batch_broadcast = 1;
    cases[n].lq = &LAYOUT_BSHD_PADDED;
    n++;
    cases[n] = tc_shape(2, 2, 1, 64, 64, 128, 128);
    cases[n].kv_batch_broadcast = 1;
    cases[n].causal = 1;
    cases[n].lo = &LAYOUT_BHSD_PADDED;
    n++;
    run_cases(cases, n, "layouts_strides_offsets");
}

Test(forward, explicit_scale)
{
    const float scales[] = {0.0f, 1.0f, 0.5f, 0.01f, -0.25f, 3.0f, 0.125f};
    test_case cases[8];
    size_t n = 0;
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
        cases[n] = tc_shape(1, 2, 1, 29, 41, i & 1 ? 16 : 64, 32);
        cases[n].scale = scales[i];
        cases[n].causal = (int)(i % 3 == 2);
        n++;
    }
    run_cases(cases, n, "explicit_scale");
}

static const int64_t mask_pairs[][2] = {
    {1, 1}, {1, 2}, {2, 1}, {1, 300}, {7, 31}, {31, 7}, {64, 64}, {64, 65}, {65, 64},
    {127, 257}, {257, 127}, {300, 300},
};
#define N_PAIRS (sizeof mask_pairs / sizeof mask_pairs[0])

static void causal_sweep(clattn_mask_align align, const char *what)
{
    const int64_t ds[] = {64, 16, 80};
    test_case cases[N_PAIRS];
    for (size_t i = 0; i < N_PAIRS; i++) {
        int64_t sq = mask_pairs[i][0], sk = mask_pairs[i][1];
        int big = sq * sk > 20000;
        cases[i] = tc_shape(big ? 1 : 2, 2, 1, sq, sk, ds[i % 3], ds[i % 3]);
        cases[i].causal = 1;
        cases[i].align = align;
    }
    run_cases(cases, N_PAIRS, what);
}

Test(forward, causal_bottom_right)
{
    /* Sq < Sk, Sq == Sk and Sq > Sk (the first Sq - Sk rows see no key). */
    causal_sweep(CLATTN_ALIGN_BOTTOM_RIGHT, "causal_bottom_right");
}

Test(forward, causal_top_left)
{
    causal_sweep(CLATTN_ALIGN_TOP_LEFT, "causal_top_left");
}

Test(forward, gqa_and_mqa)
{
    /* Hq / Hkv in 1, 2, 4, 8, and Hkv = 1 (MQA). */
    const int64_t heads[][2] = {{1, 1}, {2, 1}, {4, 1}, {8, 1}, {4, 2}, {8, 2}, {8, 4},
                                {8, 8}, {6, 3}, {3, 1}, {16, 2}};
    const size_t nh = sizeof heads / sizeof heads[0];
    test_case cases[16];
    size_t n = 0;
    for (size_t i = 0; i < nh; i++) {
        cases[n] = tc_shape(2, heads[i][0], heads[i][1], 19, 45, 32, i % 2 ? 32 : 48);
        cases[n].causal = (int)(i % 3 == 1);
        n++;
    }
    cases[n++] = tc_shape(1, 8, 1, 1, 257, 128, 128);    /* MQA decode */
    cases[n] = tc_shape(1, 8, 2, 64, 64, 64, 64);
    cases[n].causal = 1;
    cases[n++].align = CLATTN_ALIGN_TOP_LEFT;
    run_cases(cases, n, "gqa_and_mqa");
}

Test(forward, head_dim_differs_from_value_dim)
{
    const int64_t dd[][2] = {{64, 16}, {16, 128}, {72, 1}, {1, 256}, {256, 64}, {96, 160},
                             {3, 5}, {130, 7}, {33, 200}};
    const size_t nd = sizeof dd / sizeof dd[0];
    test_case cases[16];
    for (size_t i = 0; i < nd; i++) {
        cases[i] = tc_shape(1, 2, 1, 23 + (int64_t)i * 5, 61 - (int64_t)i * 3, dd[i][0], dd[i][1]);
        cases[i].causal = (int)(i & 1);
    }
    run_cases(cases, nd, "head_dim_differs_from_value_dim");
}

Test(forward, sliding_windows)
{
    /* window_left / window_right alone and together, with and without causal, both aligns,
       Sq < Sk, Sq > Sk, Sq == Sk. */
    const int64_t win[][2] = {{0, 0}, {3, -1}, {-1, 2}, {5, 5}, {16, 0}, {0, 7}, {1000, -1},
                              {-1, 1000}};
    const int64_t shapes[][2] = {{31, 64}, {64, 31}, {50, 50}};
    const size_t nw = sizeof win / sizeof win[0];
    test_case cases[2 * 2 * 8 * 2];
    size_t n = 0;
    for (int align = 0; align < 2; align++)
        for (int causal = 0; causal < 2; causal++)
            for (size_t w = 0; w < nw; w++)
                for (size_t k = 0; k < 2; k++) {
                    const int64_t *sh = shapes[(w + k + (size_t)align) % 3];
                    cases[n] = tc_shape(1, 2, 1, sh[0], sh[1], 16, 24);
                    cases[n].align = align ? CLATTN_ALIGN_TOP_LEFT : CLATTN_ALIGN_BOTTOM_RIGHT;
                    cases[n].causal = causal;
                    cases[n].window = (tc_window)TC_WIN(win[w][0], win[w][1]);
                    n++;
                }
    run_cases(cases, n, "sliding_windows");
}

Test(forward, lse_null_gives_bit_identical_out)
{
    test_case cases[5];
    cases[0] = tc_shape(1, 2, 1, 31, 64, 64, 64);
    cases[1] = tc_shape(2, 4, 2, 65, 33, 72, 16);
    cases[1].causal = 1;
    cases[2] = tc_shape(1, 8, 1, 1, 300, 128, 128);
    cases[3] = tc_shape(1, 2, 2, 40, 40, 16, 16);
    cases[3].window = (tc_window)TC_WIN(4, 2);
    cases[4] = tc_shape(1, 1, 1, 20, 5, 256, 256);
    cases[4].causal = 1;   /* rows without keys */
    cases[4].want = TC_WANT_EMPTY;
    sweep s;
    sweep_init(&s);
    for (size_t i = 0; i < 5; i++) {
        char label[512];
        tc_describe(&cases[i], label, sizeof label);
        test_case no_lse = cases[i];
        no_lse.no_lse = 1;
        tc_run with, without;
        tc_build(&with, &cases[i]);
        tc_upload(&with);
        tc_build(&without, &no_lse);
        tc_upload(&without);
        TEST_CHECK_STATUS(tc_forward(&with, 0, NULL, NULL), label);
        TEST_CHECK_STATUS(tc_forward(&without, 0, NULL, NULL), label);
        cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
        check(&with, &s, NULL);
        check(&without, &s, NULL);
        cr_expect(memcmp(with.out.host, without.out.host, with.out.bytes) == 0,
                  "%s: out differs between lse and lse == NULL", label);
        tc_free(&with);
        tc_free(&without);
    }
    sweep_report(&s, "lse_null_gives_bit_identical_out");
}

/* Every row of r whose reference has no visible key is exactly (0, -inf), independently of
   compare_*. */
static void expect_empty_rows_exact(const tc_run *r, const char *label)
{
    const test_case *c = &r->c;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->Hq; h++)
            for (int64_t q = 0; q < c->Sq; q++) {
                double want = *ref_at(&r->ref_lse, b, h, q, 0);
                if (!(isinf(want) && want < 0))
                    continue;
                double got = tt_get(&r->lse, b, h, q, 0);
                cr_expect(isinf(got) && got < 0, "%s: row [%ld,%ld,%ld] lse %g, want -inf",
                          label, (long)b, (long)h, (long)q, got);
                for (int64_t d = 0; d < c->Dv; d++)
                    cr_expect(tt_get(&r->out, b, h, q, d) == 0.0,
                              "%s: empty row [%ld,%ld,%ld] out[%ld] = %g", label, (long)b,
                              (long)h, (long)q, (long)d, tt_get(&r->out, b, h, q, d));
            }
}

Test(forward, rows_without_visible_keys)
{
    /* Rows that see no key: out exactly 0, lse exactly -INFINITY. */
    test_case cases[6];
    size_t n = 0;
    cases[n] = tc_shape(1, 2, 1, 10, 4, 16, 16);      /* causal BR, Sq > Sk: rows 0..5 empty */
    cases[n].want = TC_WANT_EMPTY;
    cases[n++].causal = 1;
    cases[n] = tc_shape(1, 1, 1, 300, 1, 64, 64);     /* only the last row sees the key */
    cases[n].want = TC_WANT_EMPTY;
    cases[n++].causal = 1;
    cases[n] = tc_shape(2, 2, 2, 9, 3, 32, 8);        /* TL window (0,0): rows 3..8 empty */
    cases[n].align = CLATTN_ALIGN_TOP_LEFT;
    cases[n].want = TC_WANT_EMPTY;
    cases[n++].window = (tc_window)TC_WIN(0, 0);
    cases[n] = tc_shape(1, 4, 2, 70, 20, 64, 64);     /* causal BR + window_left */
    cases[n].causal = 1;
    cases[n].want = TC_WANT_EMPTY;
    cases[n++].window = (tc_window)TC_WIN(3, -1);
    cases[n] = tc_shape(1, 2, 1, 16, 64, 16, 16);     /* BR window_right = 0 and left = 0, */
    cases[n++].window = (tc_window)TC_WIN(0, 0);      /* off = 48: every row sees one key */
    sweep s;
    sweep_init(&s);
    int64_t total_empty = 0;
    for (size_t i = 0; i < n; i++) {
        tc_run r;
        char label[512];
        tc_fwd_result res;
        run_checked(&r, &cases[i], &s, &res);
        expect_empty_rows_exact(&r, tc_describe(&cases[i], label, sizeof label));
        total_empty += res.empty_rows;
        tc_free(&r);
    }
    cr_log_info("rows_without_visible_keys: %ld empty rows checked", (long)total_empty);
    cr_assert_gt(total_empty, 100, "the cases should contain rows without keys");
    sweep_report(&s, "rows_without_visible_keys");
}

/* Rows of out whose elements are all NaN, and rows with any NaN. */
static void count_nan_rows(const tc_run *r, int64_t *all, int64_t *any)
{
    const test_case *c = &r->c;
    *all = *any = 0;
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->Hq; h++)
            for (int64_t q = 0; q < c->Sq; q++) {
                int64_t nn = 0;
                for (int64_t d = 0; d < c->Dv; d++)
                    nn += isnan(tt_get(&r->out, b, h, q, d)) != 0;
                *all += nn == c->Dv;
                *any += nn > 0;
            }
}

Test(forward, nan_in_a_query_row_stays_in_that_row)
{
    test_case cases[3];
    cases[0] = tc_shape(2, 4, 2, 17, 33, 64, 64);
    cases[1] = tc_shape(1, 2, 1, 40, 40, 16, 24);
    cases[1].causal = 1;
    cases[2] = tc_shape(1, 8, 1, 1, 257, 128, 128);
    sweep s;
    sweep_init(&s);
    for (size_t i = 0; i < 3; i++) {
        test_case *c = &cases[i];
        c->want = TC_WANT_NAN;
        tc_run r;
        char label[512];
        tc_describe(c, label, sizeof label);
        tc_build(&r, c);
        int64_t b = c->B - 1, h = c->Hq / 2, q = c->Sq / 2;
        tt_set(&r.q, b, h, q, c->D / 2, NAN);
        tc_upload(&r);
        TEST_CHECK_STATUS(tc_forward(&r, 0, NULL, NULL), label);
        check(&r, &s, NULL);
        int64_t all, any;
        count_nan_rows(&r, &all, &any);
        cr_expect(all == 1 && any == 1, "%s: %ld rows all NaN, %ld rows with NaN; want 1, 1",
                  label, (long)all, (long)any);
        for (int64_t d = 0; d < c->Dv; d++)
            cr_expect(isnan(tt_get(&r.out, b, h, q, d)), "%s: out[%ld] of the NaN row = %g",
                      label, (long)d, tt_get(&r.out, b, h, q, d));
        cr_expect(isnan(tt_get(&r.lse, b, h, q, 0)), "%s: lse of the NaN row = %g", label,
                  tt_get(&r.lse, b, h, q, 0));
        tc_free(&r);
    }
    sweep_report(&s, "nan_in_a_query_row_stays_in_that_row");
}

/* Build c, poison keys [first, last] of every batch (none when first > last; c.poison poisons
   its own), run with algo, check, and expect want_nan rows of out to be NaN, all of each. */
static void run_poisoned(test_case c, clattn_algo algo, int64_t first, int64_t last,
                         int64_t want_nan, sweep *s)
{
    char label[512];
    tc_run r;
    c.algo = algo;
    c.want = want_nan ? TC_WANT_NAN : 0;
    tc_describe(&c, label, sizeof label);
    tc_build(&r, &c);
    for (int64_t b = 0; b < c.B; b++)
        for (int64_t j = first; j <= last; j++)
            tc_poison_key(&r, b, j);
    tc_upload(&r);
    TEST_CHECK_STATUS(tc_forward(&r, 0, NULL, NULL), label);
    check(&r, s, NULL);
    int64_t all, any;
    count_nan_rows(&r, &all, &any);
    cr_expect(any == want_nan && all == want_nan, "%s: NaN rows %ld (all-NaN %ld), want %ld",
              label, (long)any, (long)all, (long)want_nan);
    tc_free(&r);
}

/* Invisible keys hold NaN/Inf (in k and v) for algorithm `algo`: no row may change. */
static void invisible_keys_change_nothing(clattn_algo algo, sweep *s)
{
    /* 1. TOP_LEFT causal, Sq < Sk: keys j >= Sq are invisible to every row (c.poison). */
    test_case c1 = tc_shape(2, 2, 1, 20, 50, 64, 64);
    c1.causal = 1;
    c1.align = CLATTN_ALIGN_TOP_LEFT;
    c1.poison = TC_POISON_KEYS;
    run_poisoned(c1, algo, 0, -1, 0, s);

    /* 2. Window keeps keys 0..26 away from every row (BR, off = 30, window [i+27, i+30]). */
    test_case c2 = tc_shape(1, 4, 2, 10, 40, 32, 16);
    c2.window = (tc_window)TC_WIN(3, 0);
    c2.poison = TC_POISON_KEYS;
    run_poisoned(c2, algo, 0, -1, 0, s);

    /* 3. Causal BR, Sq == Sk: the last two keys are poisoned, so exactly the rows that see
       them (the last two) are NaN and every earlier row is unchanged. */
    test_case c3 = tc_shape(1, 2, 2, 40, 40, 16, 16);
    c3.causal = 1;
    run_poisoned(c3, algo, 38, 39, 2 * c3.Hq, s);

    /* 4. Keys beyond Sk in the buffer: 13 extra key rows per head hold +Inf (k) and NaN (v),
       as every byte outside an input view does (tc_build). */
    test_case c4 = tc_shape(2, 2, 1, 33, 29, 64, 48);
    test_layout extra_k = {"bhsd+13rows", {0, 1, 2, 3}, {0, 0, 13 * 64, 0}, 0, 0};
    test_layout extra_v = {"bhsd+13rows", {0, 1, 2, 3}, {0, 0, 13 * 48, 0}, 0, 0};
    c4.lk = &extra_k;
    c4.lv = &extra_v;
    run_poisoned(c4, algo, 0, -1, 0, s);

    /* 5. As 4, causal, with a short Sk that is not a multiple of any tile. */
    test_case c5 = tc_shape(1, 2, 1, 5, 3, 64, 48);
    c5.lk = &extra_k;
    c5.lv = &extra_v;
    c5.causal = 1;
    c5.align = CLATTN_ALIGN_TOP_LEFT;
    run_poisoned(c5, algo, 0, -1, 0, s);
}

/* Every algorithm: the fused and split-KV kernels select invisible keys out; the unfused path
   spans only each chunk's visible keys and repairs chunks whose V holds NaN or Inf. */
Test(forward, invisible_keys_holding_nan_inf_change_nothing)
{
    sweep s;
    sweep_init(&s);
    const clattn_algo algos[] = {CLATTN_ALGO_FUSED, CLATTN_ALGO_SPLIT_KV, CLATTN_ALGO_UNFUSED};
    for (size_t i = 0; i < sizeof algos / sizeof algos[0]; i++)
        invisible_keys_change_nothing(algos[i], &s);
    sweep_report(&s, "invisible_keys_holding_nan_inf_change_nothing");
}

Test(forward, bytes_around_output_views_keep_their_canary)
{
    /* Padding between strided rows, bytes before the offset and after the end of out and lse
       (checked by tc_check_forward for every case; here with odd sizes at tile edges). */
    const test_layout *L[] = {&LAYOUT_BHSD_PADDED, &LAYOUT_SBHD_PADDED, &LAYOUT_BSHD_PADDED};
    const int64_t shapes[][4] = {{37, 41, 24, 13}, {1, 300, 64, 3}, {129, 17, 80, 80},
                                 {65, 65, 16, 1}};
    test_case cases[12];
    size_t n = 0;
    for (size_t i = 0; i < 4; i++)
        for (size_t l = 0; l < 3; l++) {
            if ((i + l) % 2)
                continue;
            cases[n] = tc_shape(2, 2, 1, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);
            cases[n].lo = L[l];
            cases[n].ll = L[(l + 1) % 3];
            cases[n].causal = (int)(l == 1);
            n++;
        }
    sweep s;
    sweep_init(&s);
    for (size_t i = 0; i < n; i++) {
        tc_run r;
        char label[512];
        tc_describe(&cases[i], label, sizeof label);
        run_checked(&r, &cases[i], &s, NULL);
        size_t first_out, first_lse;
        size_t bad_out = tt_outside_damage(&r.out, &first_out);
        size_t bad_lse = tt_outside_damage(&r.lse, &first_lse);
        cr_assert(bad_out == 0 && bad_lse == 0,
                  "%s: bytes changed outside the views: out %zu (first %zu of %zu, offset %zu), "
                  "lse %zu (first %zu)", label, bad_out, first_out, r.out.bytes,
                  r.out.view.offset, bad_lse, first_lse);
        tc_free(&r);
    }
    sweep_report(&s, "bytes_around_output_views_keep_their_canary");
}

/* ---- events ------------------------------------------------------------------------------ */

Test(forward, event_completes_and_wait_lists_order_the_work)
{
    sweep s;
    sweep_init(&s);
    char label[512];

    /* 1. A wait list of two non-blocking writes that fill q and k. */
    test_case c1 = tc_shape(2, 2, 1, 31, 47, 64, 32);
    tc_run r;
    tc_build(&r, &c1);
    tc_upload(&r);
    /* the device copies of q and k start as zeros; the real data arrives by the writes */
    unsigned char *zeros = calloc(r.q.bytes > r.k.bytes ? r.q.bytes : r.k.bytes, 1);
    cr_assert_not_null(zeros);
    buf_write(r.q.view.buffer, r.q.bytes, zeros);
    buf_write(r.k.view.buffer, r.k.bytes, zeros);
    free(zeros);
    cl_event writes[2];
    cr_assert_eq(clEnqueueWriteBuffer(test_queue(), r.q.view.buffer, CL_FALSE, 0, r.q.bytes,
                                      r.q.host, 0, NULL, &writes[0]), CL_SUCCESS);
    cr_assert_eq(clEnqueueWriteBuffer(test_queue(), r.k.view.buffer, CL_FALSE, 0, r.k.bytes,
                                      r.k.host, 0, NULL, &writes[1]), CL_SUCCESS);
    cl_event ev = NULL;
    TEST_CHECK_STATUS(tc_forward(&r, 2, writes, &ev), tc_describe(&c1, label, sizeof label));
    test_wait_event(ev, label);
    clReleaseEvent(writes[0]);
    clReleaseEvent(writes[1]);
    check(&r, &s, NULL);

    /* 2. A chain: the out of call 1 is the v of call 2, which waits on call 1's event. */
    test_case c2 = tc_shape(2, 2, 2, 9, 31, 16, 32);   /* v [2,2,31,32]: call 1's out */
    tc_run r2;
    tc_build(&r2, &c2);
    tc_upload(&r2);
    cr_assert_eq(r2.v.bytes, r.out.bytes);
    cr_assert(memcmp(r2.v.view.strides, r.out.view.strides, sizeof r.out.view.strides) == 0);
    clReleaseMemObject(r2.v.view.buffer);
    r2.v.view.buffer = r.out.view.buffer;
    clRetainMemObject(r2.v.view.buffer);
    buf_fill_canary(r.out.view.buffer);   /* a call 2 that did not wait would read this */
    cl_event ev1 = NULL, ev2 = NULL;
    TEST_CHECK_STATUS(tc_forward(&r, 0, NULL, &ev1), "chain call 1");
    TEST_CHECK_STATUS(tc_forward(&r2, 1, &ev1, &ev2), "chain call 2");
    test_wait_event(ev2, "chain call 2");
    test_wait_event(ev1, "chain call 1");
    check(&r, &s, NULL);
    /* the reference of call 2 reads the f32 values that call 1 produced */
    memcpy(r2.v.host, r.out.host, r.out.bytes);
    check(&r2, &s, NULL);
    tc_free(&r2);
    tc_free(&r);
    sweep_report(&s, "event_completes_and_wait_lists_order_the_work");
}

Test(forward, waits_for_a_user_event, .timeout = 120)
{
    /* The call must not run (nor block the caller) before its wait list completes. */
    const char *deadlock = test_gated_command_deadlocks();   /* before the first OpenCL call */
    if (deadlock)
        cr_skip_test("setting the user event would hang this test: %s", deadlock);
    test_case c = tc_shape(1, 2, 1, 33, 65, 64, 64);
    char label[512];
    tc_describe(&c, label, sizeof label);
    tc_run r;
    tc_build(&r, &c);
    tc_upload(&r);
    /* build the kernel first, so that only the wait list holds the second call */
    TEST_CHECK_STATUS(tc_forward(&r, 0, NULL, NULL), label);
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    buf_fill_canary(r.out.view.buffer);
    buf_fill_canary(r.lse.view.buffer);

    cl_event gate = test_user_event();
    cl_event ev = NULL;
    TEST_CHECK_STATUS(tc_forward(&r, 1, &gate, &ev), label);
    test_expect_held_by(gate, ev, "the call");
    test_wait_event(ev, label);
    clReleaseEvent(gate);
    sweep s;
    sweep_init(&s);
    check(&r, &s, NULL);
    tc_free(&r);
    sweep_report(&s, "waits_for_a_user_event");
}

/* ---- the backward after the forward; UNFUSED refused ------------------------------------- */

/* The backward with algo UNFUSED: CLATTN_ERROR_UNSUPPORTED, a message, no event, nothing
   written. */
static void expect_unfused_refused(const tc_run *r, clattn_status st, cl_event ev)
{
    size_t first;
    cr_expect_eq(st, CLATTN_ERROR_UNSUPPORTED, "backward (UNFUSED): got %s (%s)",
                 clattn_status_string(st), clattn_last_error());
    cr_expect_str_not_empty(clattn_last_error(), "backward (UNFUSED): no message");
    cr_expect_null(ev, "backward (UNFUSED): *event not cleared on failure");
    if (st == CLATTN_SUCCESS && ev)
        test_wait_event(ev, "backward (UNFUSED)");
    cr_expect(buf_canary_intact(r->dq.view.buffer, &first),
              "backward (UNFUSED): dq written (%zu)", first);
    cr_expect(buf_canary_intact(r->dk.view.buffer, &first),
              "backward (UNFUSED): dk written (%zu)", first);
    cr_expect(buf_canary_intact(r->dv.view.buffer, &first),
              "backward (UNFUSED): dv written (%zu)", first);
}

Test(forward, backward_after_forward_writes_the_gradients)
{
    /* The backward with the forward's out and lse: AUTO and FUSED succeed, complete their
       event, clear the last error and write gradients that match the reference (the full
       feature sweep is test_backward.c); UNFUSED has no backward in this version:
       CLATTN_ERROR_UNSUPPORTED, a message, no event, nothing written. Either way the context
       keeps working. */
    test_case c = tc_shape(2, 2, 1, 9, 13, 16, 16);
    c.backward = 1;
    c.ldq = c.ldk = c.ldv = &LAYOUT_BHSD_PADDED;
    tc_run r;
    tc_build(&r, &c);
    tc_upload(&r);

    /* backward with valid arguments (lse from a forward call) */
    TEST_CHECK_STATUS(tc_forward(&r, 0, NULL, NULL), "forward before backward");
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    const clattn_algo bwd_algos[] = {CLATTN_ALGO_AUTO, CLATTN_ALGO_FUSED, CLATTN_ALGO_UNFUSED};
    for (size_t i = 0; i < sizeof bwd_algos / sizeof bwd_algos[0]; i++) {
        tc_args a;
        tc_args_init(&a, &r);
        a.desc.algo = bwd_algos[i];
        buf_fill_canary(r.dq.view.buffer);
        buf_fill_canary(r.dk.view.buffer);
        buf_fill_canary(r.dv.view.buffer);
        cl_event ev = (cl_event)&ev;
        clattn_status st = tc_call_backward(&a, &ev);
        cr_log_info("backward (algo %d): %s: %s", (int)bwd_algos[i], clattn_status_string(st),
                    clattn_last_error());
        if (bwd_algos[i] == CLATTN_ALGO_UNFUSED) {
            expect_unfused_refused(&r, st, ev);
            continue;
        }
        char label[64];
        snprintf(label, sizeof label, "backward (algo %d)", (int)bwd_algos[i]);
        test_skip_if_refused(st);
        cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s (%s)", label, clattn_status_string(st),
                     clattn_last_error());
        cr_expect_str_empty(clattn_last_error(), "backward: last error after success: %s",
                            clattn_last_error());
        test_wait_event(ev, label);
        tc_check_backward(&r, label, NULL);
    }

    /* the context still works */
    sweep s;
    sweep_init(&s);
    buf_fill_canary(r.out.view.buffer);
    buf_fill_canary(r.lse.view.buffer);
    TEST_CHECK_STATUS(tc_forward(&r, 0, NULL, NULL), "forward after the backward calls");
    cr_assert_str_empty(clattn_last_error());
    check(&r, &s, NULL);
    sweep_report(&s, "forward after the backward calls");
    tc_free(&r);
}
