/* The f64 reference checked by hand, so that the device suites do not trust it blindly.
   Every expected value here is worked out in the comment next to it. No device needed. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "reference/reference.h"

#define EXACT 1e-12

/* A dense problem with its own storage, zero-filled. */
typedef struct problem {
    double *qd, *kd, *vd, *od, *ld;
    ref_tensor q, k, v, out, lse;
} problem;

static problem problem_new(int64_t b, int64_t hq, int64_t hkv, int64_t sq, int64_t sk,
                           int64_t d, int64_t dv)
{
    problem pr;
    pr.qd = calloc((size_t)(b * hq * sq * d), sizeof(double));
    pr.kd = calloc((size_t)(b * hkv * sk * d), sizeof(double));
    pr.vd = calloc((size_t)(b * hkv * sk * dv), sizeof(double));
    pr.od = calloc((size_t)(b * hq * sq * dv), sizeof(double));
    pr.ld = calloc((size_t)(b * hq * sq), sizeof(double));
    cr_assert(pr.qd && pr.kd && pr.vd && pr.od && pr.ld);
    pr.q = ref_tensor_dense(pr.qd, b, hq, sq, d);
    pr.k = ref_tensor_dense(pr.kd, b, hkv, sk, d);
    pr.v = ref_tensor_dense(pr.vd, b, hkv, sk, dv);
    pr.out = ref_tensor_dense(pr.od, b, hq, sq, dv);
    pr.lse = ref_tensor_dense(pr.ld, b, hq, sq, 1);
    return pr;
}

static void problem_free(problem *pr)
{
    free(pr->qd);
    free(pr->kd);
    free(pr->vd);
    free(pr->od);
    free(pr->ld);
}

static void run(const ref_params *p, problem *pr)
{
    cr_assert_eq(ref_attention_forward(p, &pr->q, &pr->k, &pr->v, &pr->out, &pr->lse), 0);
}

#define OUT(pr, b, h, i, d) (*ref_at(&(pr).out, b, h, i, d))
#define LSE(pr, b, h, i) (*ref_at(&(pr).lse, b, h, i, 0))

Test(reference, one_key_gives_v_and_its_score)
{
    /* q = (1, 2), k = (3, -1), scale 0.5: s = (3 - 2) * 0.5 = 0.5; softmax of one key is 1. */
    ref_params p;
    ref_params_init(&p);
    p.scale = 0.5;
    problem pr = problem_new(1, 1, 1, 1, 1, 2, 3);
    pr.qd[0] = 1; pr.qd[1] = 2;
    pr.kd[0] = 3; pr.kd[1] = -1;
    pr.vd[0] = 7; pr.vd[1] = -8; pr.vd[2] = 0.25;
    run(&p, &pr);
    cr_assert_float_eq(OUT(pr, 0, 0, 0, 0), 7.0, EXACT);
    cr_assert_float_eq(OUT(pr, 0, 0, 0, 1), -8.0, EXACT);
    cr_assert_float_eq(OUT(pr, 0, 0, 0, 2), 0.25, EXACT);
    cr_assert_float_eq(LSE(pr, 0, 0, 0), 0.5, EXACT);
    problem_free(&pr);
}

Test(reference, uniform_scores_give_mean_of_v)
{
    /* q = 0: every score is 0, p = 1/4, out = mean(v), lse = log 4. */
    ref_params p;
    ref_params_init(&p);
    problem pr = problem_new(1, 1, 1, 1, 4, 3, 1);
    for (int j = 0; j < 4; j++) {
        pr.kd[j * 3] = j - 1.5;
        pr.vd[j] = (double)(j + 1) * (j + 1);   /* 1, 4, 9, 16 */
    }
    run(&p, &pr);
    cr_assert_float_eq(OUT(pr, 0, 0, 0, 0), 30.0 / 4.0, EXACT);
    cr_assert_float_eq(LSE(pr, 0, 0, 0), log(4.0), EXACT);
    problem_free(&pr);
}

Test(reference, lse_and_weights_of_known_scores)
{
    /* D = 1, q = 1, scale 1, k = (0, ln 2, ln 3): exp(s) = 1, 2, 3, sum 6, lse = ln 6;
       v = (6, 0, -6): out = (6 - 18) / 6 = -2. */
    ref_params p;
    ref_params_init(&p);
    p.scale = 1.0;
    problem pr = problem_new(1, 1, 1, 1, 3, 1, 1);
    pr.qd[0] = 1;
    pr.kd[0] = 0; pr.kd[1] = log(2.0); pr.kd[2] = log(3.0);
    pr.vd[0] = 6; pr.vd[1] = 0; pr.vd[2] = -6;
    run(&p, &pr);
    cr_assert_float_eq(LSE(pr, 0, 0, 0), log(6.0), EXACT);
    cr_assert_float_eq(OUT(pr, 0, 0, 0, 0), -2.0, EXACT);
    problem_free(&pr);
}

Test(reference, large_scores_do_not_overflow)
{
    /* s = 1000 for both keys: exp(1000) overflows a double; the max-subtracted softmax gives
       p = 1/2 each and lse = 1000 + ln 2. */
    ref_params p;
    ref_params_init(&p);
    p.scale = 1.0;
    problem pr = problem_new(1, 1, 1, 1, 2, 1, 1);
    pr.qd[0] = 1000;
    pr.kd[0] = 1; pr.kd[1] = 1;
    pr.vd[0] = 1; pr.vd[1] = 3;
    run(&p, &pr);
    cr_assert_float_eq(OUT(pr, 0, 0, 0, 0), 2.0, EXACT);
    cr_assert_float_eq(LSE(pr, 0, 0, 0), 1000.0 + log(2.0), 1e-9);
    problem_free(&pr);
}

Test(reference, default_scale_is_inverse_sqrt_d)
{
    /* D = 4, q = k = (1,1,1,1): dot 4, scale 1/2, s = 2; one key: lse = 2. */
    ref_params p;
    ref_params_init(&p);
    problem pr = problem_new(1, 1, 1, 1, 1, 4, 1);
    for (int d = 0; d < 4; d++)
        pr.qd[d] = pr.kd[d] = 1;
    run(&p, &pr);
    cr_assert_float_eq(LSE(pr, 0, 0, 0), 2.0, EXACT);
    problem_free(&pr);
}

/* q = 0 and v[j] = j: a row that sees keys lo..hi (contiguous) gets out = (lo + hi) / 2 and
   lse = ln(hi - lo + 1). */
static void expect_sees_range(const problem *pr, int64_t i, int64_t lo, int64_t hi)
{
    double mean = (double)(lo + hi) / 2.0, lse = log((double)(hi - lo + 1));
    cr_expect_float_eq(*ref_at(&pr->out, 0, 0, i, 0), mean, EXACT, "row %ld: out %g, want %g",
                       (long)i, *ref_at(&pr->out, 0, 0, i, 0), mean);
    cr_expect_float_eq(*ref_at(&pr->lse, 0, 0, i, 0), lse, EXACT, "row %ld: lse %g, want %g",
                       (long)i, *ref_at(&pr->lse, 0, 0, i, 0), lse);
}

static void expect_empty_row(const problem *pr, int64_t i)
{
    cr_expect_eq(*ref_at(&pr->out, 0, 0, i, 0), 0.0, "row %ld should be empty", (long)i);
    cr_expect(isinf(*ref_at(&pr->lse, 0, 0, i, 0)) && *ref_at(&pr->lse, 0, 0, i, 0) < 0,
              "row %ld: lse should be -inf", (long)i);
}

static problem index_problem(int64_t sq, int64_t sk)
{
    problem pr = problem_new(1, 1, 1, sq, sk, 1, 1);
    for (int64_t j = 0; j < sk; j++)
        pr.vd[j] = (double)j;
    return pr;
}

Test(reference, causal_bottom_right)
{
    /* Sq = Sk = 4: row i sees 0..i. */
    ref_params p;
    ref_params_init(&p);
    p.causal = 1;
    problem pr = index_problem(4, 4);
    run(&p, &pr);
    for (int64_t i = 0; i < 4; i++)
        expect_sees_range(&pr, i, 0, i);
    problem_free(&pr);

    /* Sq = 2, Sk = 5: off = 3, row 0 sees 0..3, row 1 sees 0..4. */
    pr = index_problem(2, 5);
    run(&p, &pr);
    expect_sees_range(&pr, 0, 0, 3);
    expect_sees_range(&pr, 1, 0, 4);
    problem_free(&pr);

    /* Sq = 5, Sk = 2: off = -3, rows 0..2 see nothing, row 3 sees 0, row 4 sees 0..1. */
    pr = index_problem(5, 2);
    run(&p, &pr);
    for (int64_t i = 0; i < 3; i++)
        expect_empty_row(&pr, i);
    expect_sees_range(&pr, 3, 0, 0);
    expect_sees_range(&pr, 4, 0, 1);
    problem_free(&pr);
}

Test(reference, causal_top_left)
{
    /* Sq = 3, Sk = 6, off = 0: row i sees 0..i whatever Sk is; Sq = 5, Sk = 2: rows 2..4 see
       both keys. */
    ref_params p;
    ref_params_init(&p);
    p.causal = 1;
    p.align = CLATTN_ALIGN_TOP_LEFT;
    problem pr = index_problem(3, 6);
    run(&p, &pr);
    for (int64_t i = 0; i < 3; i++)
        expect_sees_range(&pr, i, 0, i);
    problem_free(&pr);

    pr = index_problem(5, 2);
    run(&p, &pr);
    expect_sees_range(&pr, 0, 0, 0);
    for (int64_t i = 1; i < 5; i++)
        expect_sees_range(&pr, i, 0, 1);
    problem_free(&pr);
}

Test(reference, windows)
{
    ref_params p;
    ref_params_init(&p);
    /* TOP_LEFT, no causal, window_left 1, window_right 2, Sq = Sk = 6:
       row i sees max(0, i-1) .. min(5, i+2). */
    p.align = CLATTN_ALIGN_TOP_LEFT;
    p.window_left = 1;
    p.window_right = 2;
    problem pr = index_problem(6, 6);
    run(&p, &pr);
    for (int64_t i = 0; i < 6; i++)
        expect_sees_range(&pr, i, i > 0 ? i - 1 : 0, i + 2 < 5 ? i + 2 : 5);
    problem_free(&pr);

    /* BOTTOM_RIGHT, causal, window_left 0, Sq = 2, Sk = 4 (off 2): row i sees only i + 2. */
    ref_params_init(&p);
    p.causal = 1;
    p.window_left = 0;
    pr = index_problem(2, 4);
    run(&p, &pr);
    expect_sees_range(&pr, 0, 2, 2);
    expect_sees_range(&pr, 1, 3, 3);
    problem_free(&pr);

    /* TOP_LEFT, window_left = window_right = 0, Sq = 4, Sk = 2: rows 2, 3 see nothing. */
    ref_params_init(&p);
    p.align = CLATTN_ALIGN_TOP_LEFT;
    p.window_left = 0;
    p.window_right = 0;
    pr = index_problem(4, 2);
    run(&p, &pr);
    expect_sees_range(&pr, 0, 0, 0);
    expect_sees_range(&pr, 1, 1, 1);
    expect_empty_row(&pr, 2);
    expect_empty_row(&pr, 3);
    problem_free(&pr);
}

Test(reference, gqa_head_mapping)
{
    /* Hq = 6, Hkv = 3: query head h reads kv head h / 2. One key: out = v of that kv head. */
    ref_params p;
    ref_params_init(&p);
    problem pr = problem_new(1, 6, 3, 1, 1, 2, 1);
    for (int kvh = 0; kvh < 3; kvh++)
        pr.vd[kvh] = 10.0 * (kvh + 1);
    run(&p, &pr);
    for (int64_t h = 0; h < 6; h++)
        cr_expect_float_eq(OUT(pr, 0, h, 0, 0), 10.0 * (double)(h / 2 + 1), EXACT, "head %ld",
                           (long)h);
    problem_free(&pr);
}

Test(reference, softcap)
{
    /* scale 1, D = 1, q = 1, k = 6, softcap 3: s = 3 tanh(2). One key: lse = s. */
    ref_params p;
    ref_params_init(&p);
    p.scale = 1.0;
    p.softcap = 3.0;
    problem pr = problem_new(1, 1, 1, 1, 1, 1, 1);
    pr.qd[0] = 1;
    pr.kd[0] = 6;
    run(&p, &pr);
    cr_assert_float_eq(LSE(pr, 0, 0, 0), 3.0 * tanh(2.0), EXACT);
    problem_free(&pr);
}

Test(reference, bias_broadcasts_and_minus_infinity)
{
    /* q = 0, bias [1,1,1,3] = (ln 1, ln 2, -inf) broadcast to every row: p = (1/3, 2/3, 0),
       v = (3, 6, 1000): out = 1 + 4 = 5, lse = ln 3. A bias of all -inf empties the row. */
    ref_params p;
    ref_params_init(&p);
    double bias_data[3] = {0.0, log(2.0), -INFINITY};
    ref_tensor bias = ref_tensor_dense(bias_data, 1, 1, 1, 3);
    p.bias = &bias;
    problem pr = problem_new(2, 2, 1, 2, 3, 1, 1);
    for (int b = 0; b < 2; b++) {
        pr.vd[b * 3 + 0] = 3;
        pr.vd[b * 3 + 1] = 6;
        pr.vd[b * 3 + 2] = 1000;
    }
    run(&p, &pr);
    for (int64_t b = 0; b < 2; b++)
        for (int64_t h = 0; h < 2; h++)
            for (int64_t i = 0; i < 2; i++) {
                cr_expect_float_eq(OUT(pr, b, h, i, 0), 5.0, EXACT);
                cr_expect_float_eq(LSE(pr, b, h, i), log(3.0), EXACT);
            }
    bias_data[0] = bias_data[1] = -INFINITY;
    run(&p, &pr);
    cr_expect_eq(OUT(pr, 1, 1, 1, 0), 0.0);
    cr_expect(isinf(LSE(pr, 1, 1, 1)) && LSE(pr, 1, 1, 1) < 0);
    problem_free(&pr);
}

Test(reference, seqlens)
{
    /* B = 3, Sq = 3, Sk = 4, q = 0, v[j] = j.
       batch 0: seqlens (2, 3): rows 0, 1 see keys 0..2 (mean 1), row 2 is padding.
       batch 1: seqlens (0, 4): every row is padding.
       batch 2: seqlens_k 5 > Sk: the whole batch is NaN. */
    ref_params p;
    ref_params_init(&p);
    int32_t lq[3] = {2, 0, 3}, lk[3] = {3, 4, 5};
    p.seqlens_q = lq;
    p.seqlens_k = lk;
    problem pr = problem_new(3, 1, 1, 3, 4, 1, 1);
    for (int b = 0; b < 3; b++)
        for (int j = 0; j < 4; j++)
            pr.vd[b * 4 + j] = j;
    run(&p, &pr);
    cr_expect_float_eq(OUT(pr, 0, 0, 0, 0), 1.0, EXACT);
    cr_expect_float_eq(LSE(pr, 0, 0, 1), log(3.0), EXACT);
    cr_expect_eq(OUT(pr, 0, 0, 2, 0), 0.0);
    cr_expect(isinf(LSE(pr, 0, 0, 2)));
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(OUT(pr, 1, 0, i, 0), 0.0);
        cr_expect(isinf(LSE(pr, 1, 0, i)) && LSE(pr, 1, 0, i) < 0);
        cr_expect(isnan(OUT(pr, 2, 0, i, 0)) && isnan(LSE(pr, 2, 0, i)));
    }
    /* Pairs: batch 0 has 2 rows x 3 keys, batch 1 none, batch 2 is invalid. */
    cr_expect_eq(ref_visible_pairs(&p, 3, 1, 3, 4), 6);
    problem_free(&pr);
}

Test(reference, nan_stays_in_its_row)
{
    /* NaN in q row 1 makes out row 1 and its lse NaN; rows 0 and 2 stay finite. */
    ref_params p;
    ref_params_init(&p);
    problem pr = problem_new(1, 1, 1, 3, 3, 2, 2);
    for (int n = 0; n < 6; n++) {
        pr.qd[n] = 0.1 * n;
        pr.kd[n] = 0.2 - 0.1 * n;
        pr.vd[n] = n;
    }
    pr.qd[2] = NAN;
    run(&p, &pr);
    for (int64_t i = 0; i < 3; i++)
        for (int64_t d = 0; d < 2; d++)
            cr_expect_eq(isnan(OUT(pr, 0, 0, i, d)) != 0, i == 1, "row %ld col %ld", (long)i,
                         (long)d);
    cr_expect(isnan(LSE(pr, 0, 0, 1)) && isfinite(LSE(pr, 0, 0, 0)));

    /* NaN in a key that only later rows see (causal): earlier rows stay finite. */
    ref_params_init(&p);
    p.causal = 1;
    pr.qd[2] = 0.2;
    pr.kd[4] = NAN;   /* key 2 */
    run(&p, &pr);
    cr_expect(isfinite(OUT(pr, 0, 0, 0, 0)) && isfinite(OUT(pr, 0, 0, 1, 1)));
    cr_expect(isnan(OUT(pr, 0, 0, 2, 0)) && isnan(LSE(pr, 0, 0, 2)));
    problem_free(&pr);
}

Test(reference, strided_views_match_dense)
{
    /* The same numbers stored as [S, B, H, D] with padding give the same result as dense. */
    enum { B = 2, H = 3, S = 5, D = 4, PAD = 3 };
    ref_params p;
    ref_params_init(&p);
    p.causal = 1;
    problem dense = problem_new(B, H, H, S, S, D, D);
    for (int n = 0; n < B * H * S * D; n++) {
        dense.qd[n] = sin(0.7 * n);
        dense.kd[n] = cos(0.3 * n);
        dense.vd[n] = sin(1.3 * n + 0.5);
    }
    run(&p, &dense);

    int64_t strides[4] = {H * (D + PAD), D + PAD, B * H * (D + PAD), 1};
    size_t n = (size_t)(S * B * H * (D + PAD));
    double *qs = calloc(n, sizeof(double)), *ks = calloc(n, sizeof(double)),
           *vs = calloc(n, sizeof(double)), *os = calloc(n, sizeof(double));
    ref_tensor q = {qs, {B, H, S, D}, {0}}, k = {ks, {B, H, S, D}, {0}},
               v = {vs, {B, H, S, D}, {0}}, out = {os, {B, H, S, D}, {0}};
    memcpy(q.strides, strides, sizeof strides);
    memcpy(k.strides, strides, sizeof strides);
    memcpy(v.strides, strides, sizeof strides);
    memcpy(out.strides, strides, sizeof strides);
    for (size_t e = 0; e < n; e++)
        qs[e] = ks[e] = vs[e] = NAN;   /* padding: never read */
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t s = 0; s < S; s++)
                for (int64_t d = 0; d < D; d++) {
                    *ref_at(&q, b, h, s, d) = *ref_at(&dense.q, b, h, s, d);
                    *ref_at(&k, b, h, s, d) = *ref_at(&dense.k, b, h, s, d);
                    *ref_at(&v, b, h, s, d) = *ref_at(&dense.v, b, h, s, d);
                }
    cr_assert_eq(ref_attention_forward(&p, &q, &k, &v, &out, NULL), 0);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t s = 0; s < S; s++)
                for (int64_t d = 0; d < D; d++)
                    cr_expect_float_eq(*ref_at(&out, b, h, s, d),
                                       *ref_at(&dense.out, b, h, s, d), EXACT);
    free(qs);
    free(ks);
    free(vs);
    free(os);
    problem_free(&dense);
}

Test(reference, d_differs_from_dv)
{
    /* D = 3, Dv = 5, one key: out = v. */
    ref_params p;
    ref_params_init(&p);
    problem pr = problem_new(1, 1, 1, 1, 1, 3, 5);
    for (int d = 0; d < 5; d++)
        pr.vd[d] = d - 2;
    run(&p, &pr);
    for (int64_t d = 0; d < 5; d++)
        cr_expect_float_eq(OUT(pr, 0, 0, 0, d), (double)d - 2, EXACT);
    problem_free(&pr);
}

Test(reference, shape_mismatch_is_refused)
{
    ref_params p;
    ref_params_init(&p);
    problem pr = problem_new(1, 3, 2, 1, 1, 1, 1);   /* Hq = 3 is not a multiple of Hkv = 2 */
    cr_expect_eq(ref_attention_forward(&p, &pr.q, &pr.k, &pr.v, &pr.out, &pr.lse), -1);
    problem_free(&pr);
}

Test(reference, visible_pairs)
{
    ref_params p;
    ref_params_init(&p);
    cr_expect_eq(ref_visible_pairs(&p, 2, 3, 5, 7), 2 * 3 * 5 * 7);
    p.causal = 1;
    cr_expect_eq(ref_visible_pairs(&p, 1, 1, 6, 6), 21);            /* 1 + 2 + ... + 6 */
    cr_expect_eq(ref_visible_pairs(&p, 1, 1, 2, 5), 4 + 5);         /* off 3 */
    cr_expect_eq(ref_visible_pairs(&p, 1, 1, 5, 2), 1 + 2);         /* off -3 */
    p.align = CLATTN_ALIGN_TOP_LEFT;
    cr_expect_eq(ref_visible_pairs(&p, 1, 1, 2, 5), 1 + 2);
    p.causal = 0;
    p.window_left = 1;
    p.window_right = 0;
    cr_expect_eq(ref_visible_pairs(&p, 1, 2, 4, 4), 2 * (1 + 2 + 2 + 2));
}

Test(reference, philox_known_answer)
{
    /* Random123 kat_vectors: philox4x32_10, counter 0, key 0. */
    uint32_t ctr[4] = {0, 0, 0, 0}, key[2] = {0, 0}, out[4];
    ref_philox4x32_10(ctr, key, out);
    cr_expect_eq(out[0], 0x6627e8d5u, "x0 = %08x", out[0]);
    cr_expect_eq(out[1], 0xe169c58du, "x1 = %08x", out[1]);
    cr_expect_eq(out[2], 0xbc57ac4cu, "x2 = %08x", out[2]);
    cr_expect_eq(out[3], 0x9b00dbd8u, "x3 = %08x", out[3]);
    /* Random123 kat_vectors: counter and key all ones. */
    uint32_t ones_ctr[4] = {~0u, ~0u, ~0u, ~0u}, ones_key[2] = {~0u, ~0u};
    ref_philox4x32_10(ones_ctr, ones_key, out);
    cr_expect(out[0] == 0x408f276du && out[1] == 0x41c83b0eu && out[2] == 0xa20bc7c6u &&
              out[3] == 0x6d5451fdu, "ones: %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    /* Random123 kat_vectors: the digits of pi. */
    uint32_t pi_ctr[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u};
    uint32_t pi_key[2] = {0xa4093822u, 0x299f31d0u};
    ref_philox4x32_10(pi_ctr, pi_key, out);
    cr_expect(out[0] == 0xd16cfe09u && out[1] == 0x94fdccebu && out[2] == 0x5001e420u &&
              out[3] == 0x24126ea1u, "pi: %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
}

Test(reference, dropout_keep_rate_and_scaling)
{
    /* p = 0 keeps everything; p = 0.25 keeps close to 3/4 of 20000 decisions. */
    int kept = 0;
    for (int64_t j = 0; j < 20000; j++) {
        cr_assert(ref_dropout_keep(42, 7, 1, 2, 4, 3, j, 0.0));
        kept += ref_dropout_keep(42, 7, 1, 2, 4, 3, j, 0.25);
    }
    cr_expect(kept > 14700 && kept < 15300, "kept %d of 20000", kept);

    /* q = 0, Sk keys with v = 1: out = (kept keys / Sk) / (1 - p); lse = ln Sk (before
       dropout). */
    enum { SK = 64 };
    ref_params p;
    ref_params_init(&p);
    p.dropout_p = 0.5;
    p.dropout_seed = 0x123456789abcdefull;
    p.dropout_offset = 3;
    problem pr = problem_new(1, 1, 1, 1, SK, 1, 1);
    int n_kept = 0;
    for (int j = 0; j < SK; j++) {
        pr.vd[j] = 1.0;
        n_kept += ref_dropout_keep(p.dropout_seed, p.dropout_offset, 0, 0, 1, 0, j, 0.5);
    }
    run(&p, &pr);
    cr_expect_float_eq(OUT(pr, 0, 0, 0, 0), (double)n_kept / SK / 0.5, EXACT);
    cr_expect_float_eq(LSE(pr, 0, 0, 0), log((double)SK), EXACT);
    problem_free(&pr);
}

/* ---- Backward: finite differences against the forward ----
   L(x) = sum(out * dout) with out = ref_attention_forward(x). For every element x_e of q, k, v
   (and the bias when given) the central difference (L(x_e + H) - L(x_e - H)) / 2H, H = 1e-6,
   must match the analytic gradient g_e within |fd - g| <= FD_TOL * max(1, |g|), FD_TOL = 1e-6:
   relative above |g| = 1, absolute 1e-6 below (where rounding, eps * |L| / H ~ 1e-10, and the
   H^2 truncation term stay far below). D = 3, Dv = 2; inputs are fixed pseudo-random numbers in
   [-1.5, 1.5]. The gradients start as NaN, so an element the reference does not write fails. */

#define FD_H 1e-6
#define FD_TOL 1e-6
#define FD_D 3
#define FD_DV 2

typedef struct grad_shape {
    int64_t b, hq, hkv, sq, sk;
} grad_shape;

/* A problem with dout, gradient storage and an optional dense bias of bias_dims (b, h, s, Sk),
   all dense. */
typedef struct grad_problem {
    problem pr;
    double *doutd, *dqd, *dkd, *dvd, *biasd, *dbiasd;
    ref_tensor dout, dq, dk, dv, bias, dbias;
} grad_problem;

/* Fixed pseudo-random numbers in [-amp, amp] (a 32-bit LCG). */
static void fill_random(double *x, int64_t n, uint32_t seed, double amp)
{
    uint32_t state = seed * 2654435761u + 12345u;
    for (int64_t e = 0; e < n; e++) {
        state = state * 1664525u + 1013904223u;
        x[e] = amp * (2.0 * (double)(state >> 8) / 16777216.0 - 1.0);
    }
}

static double *alloc_nan(int64_t n)
{
    double *x = malloc((size_t)n * sizeof(double));
    cr_assert(x);
    for (int64_t e = 0; e < n; e++)
        x[e] = NAN;
    return x;
}

static grad_problem grad_problem_new(grad_shape s, const int64_t *bias_dims)
{
    grad_problem g;
    memset(&g, 0, sizeof g);
    g.pr = problem_new(s.b, s.hq, s.hkv, s.sq, s.sk, FD_D, FD_DV);
    g.doutd = alloc_nan(ref_numel(&g.pr.out));
    g.dqd = alloc_nan(ref_numel(&g.pr.q));
    g.dkd = alloc_nan(ref_numel(&g.pr.k));
    g.dvd = alloc_nan(ref_numel(&g.pr.v));
    g.dout = ref_tensor_dense(g.doutd, s.b, s.hq, s.sq, FD_DV);
    g.dq = ref_tensor_dense(g.dqd, s.b, s.hq, s.sq, FD_D);
    g.dk = ref_tensor_dense(g.dkd, s.b, s.hkv, s.sk, FD_D);
    g.dv = ref_tensor_dense(g.dvd, s.b, s.hkv, s.sk, FD_DV);
    fill_random(g.pr.qd, ref_numel(&g.pr.q), 1, 1.5);
    fill_random(g.pr.kd, ref_numel(&g.pr.k), 2, 1.5);
    fill_random(g.pr.vd, ref_numel(&g.pr.v), 3, 1.5);
    fill_random(g.doutd, ref_numel(&g.dout), 4, 1.5);
    if (bias_dims) {
        g.bias = ref_tensor_dense(NULL, bias_dims[0], bias_dims[1], bias_dims[2], s.sk);
        g.biasd = alloc_nan(ref_numel(&g.bias));
        g.dbiasd = alloc_nan(ref_numel(&g.bias));
        g.bias.data = g.biasd;
        g.dbias = ref_tensor_dense(g.dbiasd, bias_dims[0], bias_dims[1], bias_dims[2], s.sk);
        fill_random(g.biasd, ref_numel(&g.bias), 5, 1.5);
    }
    return g;
}

static void grad_problem_free(grad_problem *g)
{
    problem_free(&g->pr);
    free(g->doutd);
    free(g->dqd);
    free(g->dkd);
    free(g->dvd);
    free(g->biasd);
    free(g->dbiasd);
}

static int backward(const ref_params *p, grad_problem *g)
{
    return ref_attention_backward(p, &g->pr.q, &g->pr.k, &g->pr.v, &g->dout, &g->dq, &g->dk,
                                  &g->dv, p->bias ? &g->dbias : NULL);
}

static double loss(const ref_params *p, grad_problem *g)
{
    run(p, &g->pr);
    double sum = 0.0;
    for (int64_t e = 0; e < ref_numel(&g->dout); e++)
        sum += g->pr.od[e] * g->doutd[e];
    return sum;
}

/* Checks grad against central differences of L in every element of x; returns the worst
   |fd - g| / max(1, |g|). A non-finite x (a -INFINITY bias) must have gradient exactly 0. */
static double check_tensor(const ref_params *p, grad_problem *g, double *x, const double *grad,
                           int64_t n, const char *what)
{
    double worst = 0.0;
    for (int64_t e = 0; e < n; e++) {
        if (!isfinite(x[e])) {
            cr_expect_eq(grad[e], 0.0, "%s[%ld] = %g at a non-finite input", what, (long)e,
                         grad[e]);
            continue;
        }
        double saved = x[e];
        x[e] = saved + FD_H;
        double plus = loss(p, g);
        x[e] = saved - FD_H;
        double minus = loss(p, g);
        x[e] = saved;
        double fd = (plus - minus) / (2.0 * FD_H);
        double err = fabs(fd - grad[e]) / fmax(1.0, fabs(grad[e]));
        cr_expect(err <= FD_TOL, "%s[%ld]: analytic %.12g, finite difference %.12g", what,
                  (long)e, grad[e], fd);
        if (!(err <= worst))
            worst = err;
    }
    return worst;
}

/* Runs the backward and checks every gradient; logs and returns the worst error. */
static double check_gradients(const ref_params *p, grad_problem *g, const char *name)
{
    cr_assert_eq(backward(p, g), 0);
    double worst = check_tensor(p, g, g->pr.qd, g->dqd, ref_numel(&g->pr.q), "dq");
    worst = fmax(worst, check_tensor(p, g, g->pr.kd, g->dkd, ref_numel(&g->pr.k), "dk"));
    worst = fmax(worst, check_tensor(p, g, g->pr.vd, g->dvd, ref_numel(&g->pr.v), "dv"));
    if (p->bias)
        worst = fmax(worst, check_tensor(p, g, g->biasd, g->dbiasd, ref_numel(&g->bias),
                                         "dbias"));
    cr_log_info("backward %s: worst finite-difference error %.3g", name, worst);
    return worst;
}

/* One whole case: shape, params (bias_dims NULL: no bias), check. */
static void grad_case(ref_params *p, grad_shape s, const int64_t *bias_dims, const char *name)
{
    grad_problem g = grad_problem_new(s, bias_dims);
    if (bias_dims)
        p->bias = &g.bias;
    check_gradients(p, &g, name);
    p->bias = NULL;
    grad_problem_free(&g);
}

Test(reference, backward_fd_plain)
{
    ref_params p;
    ref_params_init(&p);
    grad_case(&p, (grad_shape){2, 2, 2, 3, 4}, NULL, "plain");
    p.scale = 0.8;
    grad_case(&p, (grad_shape){1, 2, 2, 5, 1}, NULL, "plain, scale 0.8, one key");
}

Test(reference, backward_fd_gqa)
{
    /* Hq = 2, Hkv = 1: dk, dv sum both query heads. */
    ref_params p;
    ref_params_init(&p);
    grad_case(&p, (grad_shape){2, 2, 1, 4, 3}, NULL, "gqa");
}

Test(reference, backward_fd_causal_bottom_right)
{
    /* Sq = 5, Sk = 3, off = -2: rows 0, 1 see nothing (dq 0), row 2 sees key 0 only. */
    ref_params p;
    ref_params_init(&p);
    p.causal = 1;
    grad_case(&p, (grad_shape){1, 2, 1, 5, 3}, NULL, "causal bottom-right Sq > Sk");
    grad_case(&p, (grad_shape){2, 2, 2, 2, 5}, NULL, "causal bottom-right Sq < Sk");
}

Test(reference, backward_fd_causal_top_left)
{
    ref_params p;
    ref_params_init(&p);
    p.causal = 1;
    p.align = CLATTN_ALIGN_TOP_LEFT;
    grad_case(&p, (grad_shape){1, 2, 2, 3, 5}, NULL, "causal top-left Sq < Sk");
    grad_case(&p, (grad_shape){2, 2, 1, 5, 2}, NULL, "causal top-left Sq > Sk");
}

Test(reference, backward_fd_windows)
{
    ref_params p;
    ref_params_init(&p);
    p.window_left = 1;
    p.window_right = 1;
    grad_case(&p, (grad_shape){1, 2, 1, 5, 5}, NULL, "window (1, 1) bottom-right");
    /* TOP_LEFT, window (0, 0), Sq = 4, Sk = 2: rows 2, 3 see nothing; each row one key. */
    p.align = CLATTN_ALIGN_TOP_LEFT;
    p.window_left = 0;
    p.window_right = 0;
    grad_case(&p, (grad_shape){1, 2, 2, 4, 2}, NULL, "window (0, 0) top-left");
    /* causal with window_left 2, bottom-right, Sq = 3, Sk = 5. */
    ref_params_init(&p);
    p.causal = 1;
    p.window_left = 2;
    grad_case(&p, (grad_shape){2, 2, 1, 3, 5}, NULL, "causal window_left 2");
}

Test(reference, backward_fd_softcap)
{
    /* scale 1.3 makes |t| up to ~2.6, so tanh(t / 0.7) saturates for some pairs. */
    ref_params p;
    ref_params_init(&p);
    p.scale = 1.3;
    p.softcap = 0.7;
    grad_case(&p, (grad_shape){1, 2, 2, 3, 4}, NULL, "softcap 0.7");
    p.causal = 1;
    grad_case(&p, (grad_shape){2, 2, 1, 4, 4}, NULL, "softcap 0.7 causal");
}

Test(reference, backward_fd_bias_broadcast)
{
    /* dbias is checked against differences in each element of the bias view, so the sum
       over the broadcast dims is checked too. */
    ref_params p;
    ref_params_init(&p);
    int64_t per_head[3] = {1, 2, 1}, per_batch_row[3] = {2, 1, 3}, full[3] = {2, 2, 3};
    int64_t shared[3] = {1, 1, 1};
    grad_case(&p, (grad_shape){2, 2, 1, 3, 4}, per_head, "bias [1,Hq,1,Sk]");
    grad_case(&p, (grad_shape){2, 2, 1, 3, 4}, per_batch_row, "bias [B,1,Sq,Sk]");
    grad_case(&p, (grad_shape){2, 2, 2, 3, 4}, full, "bias [B,Hq,Sq,Sk]");
    p.causal = 1;
    p.softcap = 0.9;
    grad_case(&p, (grad_shape){2, 2, 1, 3, 4}, shared, "bias [1,1,1,Sk] causal softcap");
}

Test(reference, backward_fd_bias_minus_infinity)
{
    /* A -INFINITY bias entry takes its pair out (gradient 0 there, checked in check_tensor);
       bias [1,1,Sq,Sk] with all of row 1 -INFINITY: that row contributes nothing. */
    ref_params p;
    ref_params_init(&p);
    int64_t dims[3] = {1, 1, 3};
    grad_problem g = grad_problem_new((grad_shape){1, 2, 1, 3, 4}, dims);
    p.bias = &g.bias;
    g.biasd[2] = -INFINITY;              /* row 0, key 2 */
    for (int j = 0; j < 4; j++)
        g.biasd[4 + j] = -INFINITY;      /* row 1 */
    check_gradients(&p, &g, "bias with -inf");
    for (int64_t h = 0; h < 2; h++)
        for (int64_t d = 0; d < FD_D; d++)
            cr_expect_eq(*ref_at(&g.dq, 0, h, 1, d), 0.0);
    grad_problem_free(&g);
}

Test(reference, backward_fd_seqlens)
{
    /* batch 0: 3 of 4 rows, 4 of 5 keys; batch 1: 2 rows, 5 keys; with causal bottom-right
       batch 1 row 0 sees keys 0..3. Padding rows and keys get gradient 0 (their inputs do not
       change L). Then a batch with seqlens_q 0, and one with seqlens_k 0: all zero there. */
    ref_params p;
    ref_params_init(&p);
    int32_t lq[2] = {3, 2}, lk[2] = {4, 5};
    p.seqlens_q = lq;
    p.seqlens_k = lk;
    grad_case(&p, (grad_shape){2, 2, 1, 4, 5}, NULL, "seqlens");
    p.causal = 1;
    grad_case(&p, (grad_shape){2, 2, 2, 4, 5}, NULL, "seqlens causal");
    lq[1] = 0;
    grad_case(&p, (grad_shape){2, 2, 1, 4, 5}, NULL, "seqlens_q[1] = 0");
    lq[1] = 2;
    lk[0] = 0;
    grad_case(&p, (grad_shape){2, 2, 1, 4, 5}, NULL, "seqlens_k[0] = 0");
}

Test(reference, backward_fd_dropout)
{
    /* p = 0.3, fixed seed and offset: the mask is a constant, so L is smooth in the inputs. */
    ref_params p;
    ref_params_init(&p);
    p.dropout_p = 0.3;
    p.dropout_seed = 0x0123456789abcdefull;
    p.dropout_offset = 11;
    int kept = 0;
    for (int64_t b = 0; b < 2; b++)
        for (int64_t h = 0; h < 2; h++)
            for (int64_t i = 0; i < 4; i++)
                for (int64_t j = 0; j < 5; j++)
                    kept += ref_dropout_keep(p.dropout_seed, p.dropout_offset, b, h, 2, i, j,
                                             p.dropout_p);
    cr_assert(kept > 0 && kept < 80, "the mask should keep some pairs and drop some: %d", kept);
    grad_case(&p, (grad_shape){2, 2, 1, 4, 5}, NULL, "dropout 0.3");
    p.causal = 1;
    p.softcap = 1.1;
    int64_t dims[3] = {1, 2, 4};
    grad_case(&p, (grad_shape){2, 2, 1, 4, 5}, dims, "dropout 0.3 causal softcap bias");
}

Test(reference, backward_one_key_by_hand)
{
    /* One key: P = 1 whatever q and k, out_i = v_0, so dq = 0, dk = 0 and dv = the sum of dout
       over both query heads and both rows. dS = 1 * (dP - 1 * dP) is exactly 0. */
    ref_params p;
    ref_params_init(&p);
    grad_problem g = grad_problem_new((grad_shape){1, 2, 1, 2, 1}, NULL);
    cr_assert_eq(backward(&p, &g), 0);
    for (int64_t e = 0; e < ref_numel(&g.dq); e++)
        cr_expect_eq(g.dqd[e], 0.0, "dq[%ld] = %g", (long)e, g.dqd[e]);
    for (int64_t e = 0; e < ref_numel(&g.dk); e++)
        cr_expect_eq(g.dkd[e], 0.0, "dk[%ld] = %g", (long)e, g.dkd[e]);
    for (int64_t d = 0; d < FD_DV; d++) {
        double want = 0.0;
        for (int64_t h = 0; h < 2; h++)
            for (int64_t i = 0; i < 2; i++)
                want += *ref_at(&g.dout, 0, h, i, d);
        cr_expect_float_eq(g.dvd[d], want, EXACT, "dv[%ld] = %g, want %g", (long)d, g.dvd[d],
                           want);
    }
    grad_problem_free(&g);
}

/* 1 if every element of batch b of t is NaN (want_nan) or finite (!want_nan). */
static int batch_is(const ref_tensor *t, int64_t b, int want_nan)
{
    for (int64_t h = 0; h < t->dims[1]; h++)
        for (int64_t s = 0; s < t->dims[2]; s++)
            for (int64_t d = 0; d < t->dims[3]; d++)
                if ((isnan(*ref_at(t, b, h, s, d)) != 0) != want_nan)
                    return 0;
    return 1;
}

Test(reference, backward_invalid_seqlens_batch_is_nan)
{
    /* seqlens_k[1] = 6 > Sk: batch 1's dq, dk, dv are NaN, batch 0's finite. */
    ref_params p;
    ref_params_init(&p);
    int32_t lq[2] = {2, 3}, lk[2] = {3, 6};
    p.seqlens_q = lq;
    p.seqlens_k = lk;
    grad_problem g = grad_problem_new((grad_shape){2, 2, 1, 3, 5}, NULL);
    cr_assert_eq(backward(&p, &g), 0);
    cr_expect(batch_is(&g.dq, 0, 0) && batch_is(&g.dk, 0, 0) && batch_is(&g.dv, 0, 0));
    cr_expect(batch_is(&g.dq, 1, 1) && batch_is(&g.dk, 1, 1) && batch_is(&g.dv, 1, 1));
    grad_problem_free(&g);
}

Test(reference, backward_shape_mismatch_is_refused)
{
    /* dk with Sk + 1 rows; and dbias without a bias: -1, nothing written (dq stays NaN). */
    ref_params p;
    ref_params_init(&p);
    grad_problem g = grad_problem_new((grad_shape){1, 2, 1, 2, 3}, NULL);
    ref_tensor dk = g.dk;
    dk.dims[2] = 4;
    cr_expect_eq(ref_attention_backward(&p, &g.pr.q, &g.pr.k, &g.pr.v, &g.dout, &g.dq, &dk,
                                        &g.dv, NULL), -1);
    cr_expect_eq(ref_attention_backward(&p, &g.pr.q, &g.pr.k, &g.pr.v, &g.dout, &g.dq, &g.dk,
                                        &g.dv, &g.dq), -1);
    cr_expect(isnan(g.dqd[0]));
    grad_problem_free(&g);
}
