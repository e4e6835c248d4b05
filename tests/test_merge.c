/* clattn_attention_merge on its own: n partial results (out_p, lse_p) for the same queries
   over disjoint key sets combine to out = sum_p exp(lse_p - lse) out_p, lse = log sum_p
   exp(lse_p), against that formula in f64 on the host. A part with lse_p = -INFINITY
   contributes nothing (even when its out_p holds NaN or Inf), a row whose parts are all
   -INFINITY gets out 0 and lse -INFINITY, NaN in a part reaches the output.

   Then the use it exists for: forward over three disjoint key ranges (views with offsets into
   the same k and v buffers), merged, equals one forward over all keys. And bad input: every
   rejected call names its argument and writes nothing. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* merge alone, f32 out: per row max_d |out - want| / max_d |want| (compare_out), and
   |lse - want| / max(1, |want|) (compare_lse). */
#define TOL_MERGE_F32 1e-6
/* out stored in f16: add half an ulp of f16 (2^-11 = 4.9e-4) with margin */
#define TOL_MERGE_STORE_F16 1e-3
/* forward over key ranges + merge vs the reference and vs one forward: the forward's own */
#define TOL_MERGE_FORWARD TOL_F32_OUT

TestSuite(merge, .fini = test_ctx_release);

/* ---- the f64 formula --------------------------------------------------------------------- */

/* Parts are stacked in one buffer along the batch: part p, batch b is stack batch p*B + b. */
typedef struct parts {
    size_t n;
    int64_t B;
    test_tensor outs, lses;           /* [n*B, H, S, Dv] and [n*B, H, S, 1] */
    test_tensor alt;                  /* has_alt: the outs of the odd parts, another dtype */
    int has_alt;
    clattn_tensor out_views[8], lse_views[8];
} parts;

/* The stack that holds part p's out. */
static const test_tensor *part_outs(const parts *P, size_t p)
{
    return P->has_alt && (p & 1) ? &P->alt : &P->outs;
}

static void merge_reference(const parts *P, const ref_tensor *out, const ref_tensor *lse)
{
    for (int64_t b = 0; b < out->dims[0]; b++)
        for (int64_t h = 0; h < out->dims[1]; h++)
            for (int64_t s = 0; s < out->dims[2]; s++) {
                int nan = 0;
                double m = -INFINITY;
                for (size_t p = 0; p < P->n; p++) {
                    double x = tt_get(&P->lses, (int64_t)p * P->B + b, h, s, 0);
                    nan |= isnan(x) != 0;
                    if (x > m)
                        m = x;
                }
                double l = nan ? NAN : -INFINITY;
                if (!nan && m > -INFINITY) {
                    double sum = 0.0;
                    for (size_t p = 0; p < P->n; p++)
                        sum += exp(tt_get(&P->lses, (int64_t)p * P->B + b, h, s, 0) - m);
                    l = m + log(sum);
                }
                *ref_at(lse, b, h, s, 0) = l;
                for (int64_t d = 0; d < out->dims[3]; d++) {
                    double acc = nan ? NAN : 0.0;
                    for (size_t p = 0; !nan && l > -INFINITY && p < P->n; p++) {
                        int64_t pb = (int64_t)p * P->B + b;
                        double lp = tt_get(&P->lses, pb, h, s, 0);
                        if (lp == -INFINITY)
                            continue;      /* contributes nothing, whatever its out holds */
                        acc += exp(lp - l) * tt_get(part_outs(P, p), pb, h, s, d);
                    }
                    *ref_at(out, b, h, s, d) = acc;
                }
            }
}

/* ---- random merges ----------------------------------------------------------------------- */

/* What a merge case plants into the parts. */
#define PLANT_INF 1        /* lse_p = -inf in about a quarter of (part, row) */
#define PLANT_ALL_INF 2    /* rows [0,0,0] and [B-1,H-1,S-1]: every part -inf */
#define PLANT_NAN_OUT 4    /* NaN in one element of out_p of a part with finite lse_p */
#define PLANT_NAN_LSE 8    /* NaN in lse_p of one part of one row */
#define PLANT_GARBAGE 16   /* out_p of every -inf part holds NaN / +Inf / -Inf */

typedef struct merge_case {
    const char *name;
    size_t n;
    int64_t B, H, S, Dv;
    clattn_dtype part_dtype, out_dtype;
    int plant;
    const test_layout *layout;        /* of the stacks and out; NULL: BHSD */
    clattn_dtype alt_dtype;           /* != part_dtype: the odd parts' outs have this dtype */
} merge_case;

static const merge_case merge_cases[] = {
    {"n=1", 1, 2, 3, 17, 24, CLATTN_F32, CLATTN_F32, PLANT_INF, NULL, CLATTN_F32},
    {"n=2", 2, 2, 3, 17, 24, CLATTN_F32, CLATTN_F32, PLANT_INF, NULL, CLATTN_F32},
    {"n=5, all -inf rows", 5, 2, 3, 17, 24, CLATTN_F32, CLATTN_F32, PLANT_INF | PLANT_ALL_INF,
     NULL, CLATTN_F32},
    {"n=5, padded layouts", 5, 3, 2, 31, 40, CLATTN_F32, CLATTN_F32,
     PLANT_INF | PLANT_ALL_INF, &LAYOUT_BSHD_PADDED, CLATTN_F32},
    {"n=2, Dv=1", 2, 1, 4, 33, 1, CLATTN_F32, CLATTN_F32, PLANT_INF, &LAYOUT_BHSD_PADDED,
     CLATTN_F32},
    {"n=3, Dv=300", 3, 1, 2, 9, 300, CLATTN_F32, CLATTN_F32, PLANT_INF | PLANT_ALL_INF, NULL,
     CLATTN_F32},
    {"n=2, NaN in out_p", 2, 2, 2, 11, 16, CLATTN_F32, CLATTN_F32, PLANT_INF | PLANT_NAN_OUT,
     NULL, CLATTN_F32},
    {"n=5, NaN in lse_p", 5, 2, 2, 11, 16, CLATTN_F32, CLATTN_F32, PLANT_INF | PLANT_NAN_LSE,
     NULL, CLATTN_F32},
    {"n=5, -inf parts hold NaN/Inf", 5, 2, 2, 13, 16, CLATTN_F32, CLATTN_F32,
     PLANT_INF | PLANT_ALL_INF | PLANT_GARBAGE, NULL, CLATTN_F32},
};

static const merge_case merge_cases_f16[] = {
    {"n=5, f32 parts, out f16", 5, 2, 3, 17, 24, CLATTN_F32, CLATTN_F16,
     PLANT_INF | PLANT_ALL_INF | PLANT_NAN_OUT, NULL, CLATTN_F32},
    {"n=2, f16 parts, out f16", 2, 2, 3, 17, 24, CLATTN_F16, CLATTN_F16,
     PLANT_INF | PLANT_ALL_INF, &LAYOUT_BSHD_PADDED, CLATTN_F16},
    {"n=5, parts f16 and bf16 mixed, out f16", 5, 1, 2, 19, 40, CLATTN_F16, CLATTN_F16,
     PLANT_INF | PLANT_ALL_INF | PLANT_GARBAGE, NULL, CLATTN_BF16},
};

static int hash_hit(uint64_t x, int mod)
{
    x = (x ^ (x >> 31)) * 0x9E3779B97F4A7C15ULL;
    return (int)((x >> 40) % (uint64_t)mod) == 0;
}

static void parts_build(parts *P, const merge_case *c, test_rng *rng)
{
    memset(P, 0, sizeof *P);
    cr_assert(c->n <= 8);
    P->n = c->n;
    P->B = c->B;
    const test_layout *l = c->layout ? c->layout : &LAYOUT_BHSD;
    int64_t od[4] = {(int64_t)c->n * c->B, c->H, c->S, c->Dv};
    int64_t ld[4] = {(int64_t)c->n * c->B, c->H, c->S, 1};
    tt_init(&P->outs, c->part_dtype, od, l);
    tt_init(&P->lses, CLATTN_F32, ld, l);
    tt_fill_random(&P->outs, rng, -0.5, 1.5);
    if (c->alt_dtype != c->part_dtype) {
        tt_init(&P->alt, c->alt_dtype, od, l);
        tt_fill_random(&P->alt, rng, -0.5, 1.5);
        P->has_alt = 1;
    }
    tt_fill_random(&P->lses, rng, -3.0, 3.0);
    const double garbage[3] = {NAN, INFINITY, -INFINITY};
    for (int64_t pb = 0; pb < od[0]; pb++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t s = 0; s < c->S; s++) {
                int64_t b = pb % c->B;
                uint64_t key = ((uint64_t)pb * 131 + (uint64_t)h) * 1009 + (uint64_t)s;
                int all = (c->plant & PLANT_ALL_INF) &&
                          ((b == 0 && h == 0 && s == 0) ||
                           (b == c->B - 1 && h == c->H - 1 && s == c->S - 1));
                int inf = all || ((c->plant & PLANT_INF) && hash_hit(key, 4));
                if (!inf)
                    continue;
                tt_set(&P->lses, pb, h, s, 0, -INFINITY);
                if (c->plant & PLANT_GARBAGE)
                    for (int64_t d = 0; d < c->Dv; d++)
                        tt_set((test_tensor *)part_outs(P, (size_t)(pb / c->B)), pb, h, s,
                               d, garbage[(s + d) % 3]);
            }
    /* NaN into a row that is not all -inf: batch B-1, head 0, row S/2, part n-1 */
    int64_t nb = (int64_t)(c->n - 1) * c->B + c->B - 1, ns = c->S / 2;
    if (c->plant & (PLANT_NAN_OUT | PLANT_NAN_LSE))
        tt_set(&P->lses, nb, 0, ns, 0, 0.25);    /* a finite lse_p there */
    if (c->plant & PLANT_NAN_OUT)
        tt_set((test_tensor *)part_outs(P, c->n - 1), nb, 0, ns, c->Dv / 2, NAN);
    if (c->plant & PLANT_NAN_LSE)
        tt_set(&P->lses, nb, 0, ns, 0, NAN);
    tt_upload(&P->outs, CL_MEM_READ_ONLY);
    if (P->has_alt)
        tt_upload(&P->alt, CL_MEM_READ_ONLY);
    tt_upload(&P->lses, CL_MEM_READ_ONLY);
    for (size_t p = 0; p < c->n; p++) {
        clattn_tensor o = part_outs(P, p)->view, ls = P->lses.view;
        o.dims[0] = ls.dims[0] = c->B;
        o.offset += (size_t)((int64_t)p * c->B * o.strides[0]) * dtype_size(o.dtype);
        ls.offset += (size_t)((int64_t)p * c->B * ls.strides[0]) * sizeof(float);
        P->out_views[p] = o;
        P->lse_views[p] = ls;
    }
}

static void parts_free(parts *P)
{
    tt_free(&P->outs);
    if (P->has_alt)
        tt_free(&P->alt);
    tt_free(&P->lses);
}

typedef struct worst {
    int cases;
    cmp_result out, lse;
    char out_case[80], lse_case[80];
} worst;

static void worst_init(worst *w)
{
    memset(w, 0, sizeof *w);
    w->out = cmp_none();
    w->lse = cmp_none();
}

static void run_merge_case(const merge_case *c, double tol_out, worst *w)
{
    char buf[200];
    test_rng rng;
    rng_seed(&rng, 0x3e49e000u + c->n * 31 + (uint64_t)c->S);
    parts P;
    parts_build(&P, c, &rng);
    const test_layout *l = c->layout ? c->layout : &LAYOUT_BHSD;
    int64_t od[4] = {c->B, c->H, c->S, c->Dv}, ld[4] = {c->B, c->H, c->S, 1};
    test_tensor out, lse;
    tt_init(&out, c->out_dtype, od, l);
    tt_init(&lse, CLATTN_F32, ld, l);
    tt_upload(&out, CL_MEM_READ_WRITE);
    tt_upload(&lse, CL_MEM_READ_WRITE);

    cl_event ev = NULL;
    clattn_status st = clattn_attention_merge(test_ctx(), c->n, P.out_views, P.lse_views,
                                              &out.view, &lse.view, 0, NULL, &ev);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s: %s", c->name, clattn_status_string(st),
                 clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "%s: last error after success", c->name);
    cr_assert_not_null(ev, "%s: no event", c->name);
    cr_assert_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
    tt_download(&out);
    tt_download(&lse);

    double *want_out = malloc(sizeof(double) * (size_t)(c->B * c->H * c->S * c->Dv));
    double *want_lse = malloc(sizeof(double) * (size_t)(c->B * c->H * c->S));
    cr_assert(want_out && want_lse);
    ref_tensor ro = ref_tensor_dense(want_out, c->B, c->H, c->S, c->Dv);
    ref_tensor rl = ref_tensor_dense(want_lse, c->B, c->H, c->S, 1);
    merge_reference(&P, &ro, &rl);

    /* the planted rules, stated independently of compare_* */
    int64_t empty = 0, nan_rows = 0;
    for (int64_t i = 0; i < ref_numel(&rl); i++) {
        empty += isinf(want_lse[i]) && want_lse[i] < 0;
        nan_rows += isnan(want_lse[i]) != 0;
    }
    if (c->plant & PLANT_ALL_INF) {
        cr_assert_geq(empty, 1, "%s: no all -inf row planted", c->name);
        cr_expect(tt_get(&lse, 0, 0, 0, 0) == -INFINITY, "%s: all -inf row: lse %g", c->name,
                  tt_get(&lse, 0, 0, 0, 0));
        for (int64_t d = 0; d < c->Dv; d++)
            cr_expect(tt_get(&out, 0, 0, 0, d) == 0.0, "%s: all -inf row: out[%ld] = %g",
                      c->name, (long)d, tt_get(&out, 0, 0, 0, d));
    }
    if (c->plant & (PLANT_NAN_OUT | PLANT_NAN_LSE)) {
        int64_t b = c->B - 1, s = c->S / 2;
        cr_expect(isnan(tt_get(&out, b, 0, s, c->Dv / 2)), "%s: out of the NaN row is %g",
                  c->name, tt_get(&out, b, 0, s, c->Dv / 2));
        if (c->plant & PLANT_NAN_LSE)
            cr_expect(isnan(tt_get(&lse, b, 0, s, 0)), "%s: lse of the NaN row is %g", c->name,
                      tt_get(&lse, b, 0, s, 0));
    }
    if (c->plant & PLANT_GARBAGE)
        cr_assert_eq(nan_rows, 0, "%s: the formula must skip -inf parts", c->name);

    cmp_result co = compare_out(&out, &ro), cl = compare_lse(&lse, &rl);
    cr_expect(co.worst <= tol_out, "%s: out %s (tolerance %g)", c->name,
              cmp_describe(&co, buf, sizeof buf), tol_out);
    cr_expect(cl.worst <= TOL_MERGE_F32, "%s: lse %s (tolerance %g)", c->name,
              cmp_describe(&cl, buf, sizeof buf), TOL_MERGE_F32);
    if (co.worst > w->out.worst || w->cases == 0)
        snprintf(w->out_case, sizeof w->out_case, "%s", c->name);
    if (cl.worst > w->lse.worst || w->cases == 0)
        snprintf(w->lse_case, sizeof w->lse_case, "%s", c->name);
    cmp_merge(&w->out, &co);
    cmp_merge(&w->lse, &cl);
    w->cases++;

    size_t first;
    size_t bad = tt_outside_damage(&out, &first);
    cr_expect_eq(bad, 0, "%s: %zu bytes around out changed (first %zu)", c->name, bad, first);
    bad = tt_outside_damage(&lse, &first);
    cr_expect_eq(bad, 0, "%s: %zu bytes around lse changed (first %zu)", c->name, bad, first);

    free(want_out);
    free(want_lse);
    tt_free(&out);
    tt_free(&lse);
    parts_free(&P);
}

static void worst_report(const worst *w, const char *what, double tol_out)
{
    char buf[200];
    cr_log_info("%s: %d cases; out worst %s (%s)", what, w->cases,
                cmp_describe(&w->out, buf, sizeof buf), w->out_case);
    cr_log_info("%s: lse worst %s (%s)", what, cmp_describe(&w->lse, buf, sizeof buf),
                w->lse_case);
    cr_assert_gt(w->cases, 0);
    cr_assert(w->out.worst <= tol_out, "%s: out worst %g > %g (%s)", what, w->out.worst,
              tol_out, w->out_case);
    cr_assert(w->lse.worst <= TOL_MERGE_F32, "%s: lse worst %g > %g (%s)", what, w->lse.worst,
              TOL_MERGE_F32, w->lse_case);
}

Test(merge, random_parts_f32)
{
    worst w;
    worst_init(&w);
    test_ctx();
    for (size_t i = 0; i < sizeof merge_cases / sizeof merge_cases[0]; i++)
        run_merge_case(&merge_cases[i], TOL_MERGE_F32, &w);
    worst_report(&w, "random_parts_f32", TOL_MERGE_F32);
}

Test(merge, random_parts_f16_out_and_mixed_part_dtypes)
{
    worst w;
    worst_init(&w);
    test_ctx();
    double tol = TOL_MERGE_F32 + TOL_MERGE_STORE_F16;
    for (size_t i = 0; i < sizeof merge_cases_f16 / sizeof merge_cases_f16[0]; i++)
        run_merge_case(&merge_cases_f16[i], tol, &w);
    worst_report(&w, "random_parts_f16_out_and_mixed_part_dtypes", tol);
}

/* ---- forward over key ranges, merged ----------------------------------------------------- */

/* A view of keys [start, start + len) of t (dim 2 of k, v; dim 3 of a bias). */
static clattn_tensor key_range(const clattn_tensor *t, int axis, int64_t start, int64_t len)
{
    clattn_tensor r = *t;
    r.dims[axis] = len;
    r.offset += (size_t)(start * t->strides[axis]) * dtype_size(t->dtype);
    return r;
}

typedef struct split_config {
    const char *name;
    int64_t B, Hq, Hkv, Sq, Sk, D, Dv, a, b;
    clattn_dtype dtype;
    int bias;     /* full bias; rows 3..9 of every head see only -inf in [a, b) */
} split_config;

static void run_split(const split_config *c, worst *vs_ref, worst *vs_full)
{
    char buf[200];
    int64_t qd[4] = {c->B, c->Hq, c->Sq, c->D}, kd[4] = {c->B, c->Hkv, c->Sk, c->D};
    int64_t vd[4] = {c->B, c->Hkv, c->Sk, c->Dv}, od[4] = {c->B, c->Hq, c->Sq, c->Dv};
    int64_t ld[4] = {c->B, c->Hq, c->Sq, 1}, bd[4] = {c->B, c->Hq, c->Sq, c->Sk};
    test_tensor q, k, v, bias, part_out[3], part_lse[3], out, lse, full_out, full_lse;
    test_rng rng;
    rng_seed(&rng, 0x5b117u + (uint64_t)c->Sk);
    tt_init(&q, c->dtype, qd, &LAYOUT_BHSD);
    tt_init(&k, c->dtype, kd, &LAYOUT_BSHD);
    tt_init(&v, c->dtype, vd, &LAYOUT_BHSD_PADDED);
    tt_fill_random(&q, &rng, -1.0, 1.0);
    tt_fill_random(&k, &rng, -1.0, 1.0);
    tt_fill_random(&v, &rng, -0.5, 1.5);
    tt_upload(&q, CL_MEM_READ_ONLY);
    tt_upload(&k, CL_MEM_READ_ONLY);
    tt_upload(&v, CL_MEM_READ_ONLY);
    if (c->bias) {
        tt_init(&bias, CLATTN_F32, bd, &LAYOUT_BHSD);
        tt_fill_random(&bias, &rng, -1.0, 1.0);
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t h = 0; h < c->Hq; h++)
                for (int64_t i = 3; i < 10 && i < c->Sq; i++)
                    for (int64_t j = c->a; j < c->b; j++)
                        tt_set(&bias, b, h, i, j, -INFINITY);
        tt_upload(&bias, CL_MEM_READ_ONLY);
    }
    test_tensor *outs[] = {&part_out[0], &part_out[1], &part_out[2], &out, &full_out};
    test_tensor *lses[] = {&part_lse[0], &part_lse[1], &part_lse[2], &lse, &full_lse};
    for (int i = 0; i < 5; i++) {
        tt_init(outs[i], CLATTN_F32, od, i == 3 ? &LAYOUT_BSHD_PADDED : &LAYOUT_BHSD);
        tt_init(lses[i], CLATTN_F32, ld, &LAYOUT_BHSD);
        tt_upload(outs[i], CL_MEM_READ_WRITE);
        tt_upload(lses[i], CL_MEM_READ_WRITE);
    }

    const int64_t start[3] = {0, c->a, c->b}, len[3] = {c->a, c->b - c->a, c->Sk - c->b};
    clattn_tensor pout[3], plse[3];
    cl_event evs[3];
    for (int p = 0; p < 3; p++) {
        clattn_attention_desc d;
        clattn_attention_desc_init(&d);
        clattn_tensor ks = key_range(&k.view, 2, start[p], len[p]);
        clattn_tensor vs = key_range(&v.view, 2, start[p], len[p]);
        clattn_tensor bs;
        if (c->bias) {
            bs = key_range(&bias.view, 3, start[p], len[p]);
            d.bias = &bs;
        }
        clattn_status st = clattn_attention_forward(test_ctx(), &d, &q.view, &ks, &vs,
                                                    &part_out[p].view, &part_lse[p].view, 0,
                                                    NULL, &evs[p]);
        cr_assert_eq(st, CLATTN_SUCCESS, "%s: forward over keys [%ld, %ld): %s: %s", c->name,
                     (long)start[p], (long)(start[p] + len[p]), clattn_status_string(st),
                     clattn_last_error());
        pout[p] = part_out[p].view;
        plse[p] = part_lse[p].view;
    }
    cl_event ev = NULL;
    clattn_status st = clattn_attention_merge(test_ctx(), 3, pout, plse, &out.view, &lse.view,
                                              3, evs, &ev);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: merge: %s: %s", c->name, clattn_status_string(st),
                 clattn_last_error());
    cr_assert_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
    for (int p = 0; p < 3; p++)
        clReleaseEvent(evs[p]);
    clattn_attention_desc d;
    clattn_attention_desc_init(&d);
    d.bias = c->bias ? &bias.view : NULL;
    st = clattn_attention_forward(test_ctx(), &d, &q.view, &k.view, &v.view, &full_out.view,
                                  &full_lse.view, 0, NULL, NULL);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: forward over all keys: %s: %s", c->name,
                 clattn_status_string(st), clattn_last_error());
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    for (int i = 0; i < 5; i++) {
        tt_download(outs[i]);
        tt_download(lses[i]);
    }

    /* the reference over all keys */
    ref_params rp;
    ref_params_init(&rp);
    double *qs, *ks, *vs, *bs = NULL;
    ref_tensor rq = tt_to_ref(&q, &qs), rk = tt_to_ref(&k, &ks), rv = tt_to_ref(&v, &vs), rb;
    memset(&rb, 0, sizeof rb);
    if (c->bias) {
        rb = tt_to_ref(&bias, &bs);
        rp.bias = &rb;
    }
    double *want_out = malloc(sizeof(double) * (size_t)(c->B * c->Hq * c->Sq * c->Dv));
    double *want_lse = malloc(sizeof(double) * (size_t)(c->B * c->Hq * c->Sq));
    cr_assert(want_out && want_lse);
    ref_tensor ro = ref_tensor_dense(want_out, c->B, c->Hq, c->Sq, c->Dv);
    ref_tensor rl = ref_tensor_dense(want_lse, c->B, c->Hq, c->Sq, 1);
    cr_assert_eq(ref_attention_forward(&rp, &rq, &rk, &rv, &ro, &rl), 0);

    if (c->bias) {   /* the middle part has rows without keys: they must not contribute */
        cr_expect(tt_get(&part_lse[1], 0, 0, 3, 0) == -INFINITY,
                  "%s: middle part row 3: lse %g, want -inf", c->name,
                  tt_get(&part_lse[1], 0, 0, 3, 0));
    }
    cmp_result co = compare_out(&out, &ro), cl = compare_lse(&lse, &rl);
    cr_expect(co.worst <= TOL_MERGE_FORWARD, "%s: merged out vs reference %s", c->name,
              cmp_describe(&co, buf, sizeof buf));
    cr_expect(cl.worst <= TOL_F32_LSE, "%s: merged lse vs reference %s", c->name,
              cmp_describe(&cl, buf, sizeof buf));
    if (co.worst > vs_ref->out.worst || vs_ref->cases == 0)
        snprintf(vs_ref->out_case, sizeof vs_ref->out_case, "%s", c->name);
    if (cl.worst > vs_ref->lse.worst || vs_ref->cases == 0)
        snprintf(vs_ref->lse_case, sizeof vs_ref->lse_case, "%s", c->name);
    cmp_merge(&vs_ref->out, &co);
    cmp_merge(&vs_ref->lse, &cl);
    vs_ref->cases++;

    /* against the single forward over all keys */
    double *fo, *fl;
    ref_tensor rfo = tt_to_ref(&full_out, &fo), rfl = tt_to_ref(&full_lse, &fl);
    co = compare_out(&out, &rfo);
    cl = compare_lse(&lse, &rfl);
    cr_expect(co.worst <= TOL_MERGE_FORWARD, "%s: merged out vs one forward %s", c->name,
              cmp_describe(&co, buf, sizeof buf));
    cr_expect(cl.worst <= TOL_F32_LSE, "%s: merged lse vs one forward %s", c->name,
              cmp_describe(&cl, buf, sizeof buf));
    if (co.worst > vs_full->out.worst || vs_full->cases == 0)
        snprintf(vs_full->out_case, sizeof vs_full->out_case, "%s", c->name);
    if (cl.worst > vs_full->lse.worst || vs_full->cases == 0)
        snprintf(vs_full->lse_case, sizeof vs_full->lse_case, "%s", c->name);
    cmp_merge(&vs_full->out, &co);
    cmp_merge(&vs_full->lse, &cl);
    vs_full->cases++;
    size_t first;
    cr_expect_eq(tt_outside_damage(&out, &first), 0, "%s: bytes around out changed (%zu)",
                 c->name, first);

    free(qs);
    free(ks);
    free(vs);
    free(bs);
    free(fo);
    free(fl);
    free(want_out);
    free(want_lse);
    tt_free(&q);
    tt_free(&k);
    tt_free(&v);
    if (c->bias)
        tt_free(&bias);
    for (int i = 0; i < 5; i++) {
        tt_free(outs[i]);
        tt_free(lses[i]);
    }
}

Test(merge, forward_over_three_key_ranges_equals_one_forward)
{
    const split_config configs[] = {
        {"f32 GQA 4:2, Sk=150 split 41/97", 2, 4, 2, 33, 150, 64, 48, 41, 97, CLATTN_F32, 0},
        {"f32 MQA decode Sq=1, Sk=700 split 1/400", 1, 4, 1, 1, 700, 64, 64, 1, 400,
         CLATTN_F32, 0},
        {"f16 Sk=120 split 40/80", 1, 2, 2, 20, 120, 32, 32, 40, 80, CLATTN_F16, 0},
        {"f32 bias, a middle range of -inf for rows 3..9", 2, 2, 1, 25, 90, 32, 32, 30, 60,
         CLATTN_F32, 1},
    };
    worst vs_ref, vs_full;
    worst_init(&vs_ref);
    worst_init(&vs_full);
    test_ctx();
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
        run_split(&configs[i], &vs_ref, &vs_full);
    char buf[200];
    cr_log_info("merged vs reference: %d cases; out %s (%s)", vs_ref.cases,
                cmp_describe(&vs_ref.out, buf, sizeof buf), vs_ref.out_case);
    cr_log_info("merged vs reference: lse %s (%s)", cmp_describe(&vs_ref.lse, buf, sizeof buf),
                vs_ref.lse_case);
    cr_log_info("merged vs one forward: out %s (%s)",
                cmp_describe(&vs_full.out, buf, sizeof buf), vs_full.out_case);
    cr_log_info("merged vs one forward: lse %s (%s)",
                cmp_describe(&vs_full.lse, buf, sizeof buf), vs_full.lse_case);
    cr_assert(vs_ref.out.worst <= TOL_MERGE_FORWARD && vs_ref.lse.worst <= TOL_F32_LSE,
              "merged vs reference: out %g, lse %g", vs_ref.out.worst, vs_ref.lse.worst);
    cr_assert(vs_full.out.worst <= TOL_MERGE_FORWARD && vs_full.lse.worst <= TOL_F32_LSE,
              "merged vs one forward: out %g, lse %g", vs_full.out.worst, vs_full.lse.worst);
}

/* ---- bad input --------------------------------------------------------------------------- */

enum { MB = 2, MH = 3, MS = 5, MDV = 7, MN = 3 };

Test(merge, bad_input_names_the_argument_and_writes_nothing)
{
    test_ctx();
    merge_case mc = {"bad input", MN, MB, MH, MS, MDV, CLATTN_F32, CLATTN_F32, PLANT_INF, NULL,
                     CLATTN_F32};
    test_rng rng;
    rng_seed(&rng, 4242);
    parts P;
    parts_build(&P, &mc, &rng);
    int64_t od[4] = {MB, MH, MS, MDV}, ld[4] = {MB, MH, MS, 1};
    test_tensor out, lse;
    tt_init(&out, CLATTN_F32, od, &LAYOUT_BHSD);
    tt_init(&lse, CLATTN_F32, ld, &LAYOUT_BHSD);
    tt_upload(&out, CL_MEM_READ_WRITE);
    tt_upload(&lse, CL_MEM_READ_WRITE);
    /* a buffer holding out, then lse right after it: views into it alias on purpose */
    cl_mem big = buf_new(CL_MEM_READ_WRITE, out.bytes + lse.bytes, NULL);
    /* parts in a read-write buffer, so that out may point into them */
    cl_mem rw_parts = buf_new(CL_MEM_READ_WRITE, P.outs.bytes, P.outs.host);

    typedef struct bad {
        const char *name;
        size_t n;
        int null_outs, null_lses, null_out, null_lse;
        clattn_tensor outs[MN], lses[MN], out, lse;
        cl_uint num_wait;
        clattn_status want;
        const char *names[2];       /* substrings the message must contain */
    } bad;
    bad base;
    memset(&base, 0, sizeof base);
    base.n = MN;
    for (int p = 0; p < MN; p++) {
        base.outs[p] = P.out_views[p];
        base.lses[p] = P.lse_views[p];
    }
    base.out = out.view;
    base.lse = lse.view;
    base.want = CLATTN_ERROR_INVALID_ARGUMENT;

    bad cases[20];
    size_t n = 0;
    cases[n] = base, cases[n].name = "n = 0", cases[n].n = 0, cases[n].names[0] = "n=0";
    n++;
    cases[n] = base, cases[n].name = "outs NULL", cases[n].null_outs = 1;
    cases[n++].names[0] = "outs";
    cases[n] = base, cases[n].name = "lses NULL", cases[n].null_lses = 1;
    cases[n++].names[0] = "lses";
    cases[n] = base, cases[n].name = "out NULL", cases[n].null_out = 1;
    cases[n++].names[0] = "out";
    cases[n] = base, cases[n].name = "lse NULL", cases[n].null_lse = 1;
    cases[n++].names[0] = "lse";
    cases[n] = base, cases[n].name = "outs[1] rows differ", cases[n].outs[1].dims[2] = MS - 1;
    cases[n++].names[0] = "outs[1]";
    cases[n] = base, cases[n].name = "outs[2] value dim differs";
    cases[n].outs[2].dims[3] = MDV - 2;
    cases[n++].names[0] = "outs[2]";
    cases[n] = base, cases[n].name = "lses[0] heads differ", cases[n].lses[0].dims[1] = MH - 1;
    cases[n++].names[0] = "lses[0]";
    cases[n] = base, cases[n].name = "lses[1] last dim 2", cases[n].lses[1].dims[3] = 2;
    cases[n++].names[0] = "lses[1]";
    cases[n] = base, cases[n].name = "lses[2] f16", cases[n].lses[2].dtype = CLATTN_F16;
    cases[n++].names[0] = "lses[2]";
    cases[n] = base, cases[n].name = "lse f16", cases[n].lse.dtype = CLATTN_F16;
    cases[n++].names[0] = "lse";
    cases[n] = base, cases[n].name = "out and lse rows differ from the parts";
    cases[n].out.dims[2] = cases[n].lse.dims[2] = MS - 1;
    cases[n++].names[0] = "out";
    cases[n] = base, cases[n].name = "out aliases outs[1]";
    cases[n].outs[1].buffer = rw_parts;
    cases[n].out = cases[n].outs[1];
    cases[n].names[0] = "out";
    cases[n++].names[1] = "outs[1]";
    cases[n] = base, cases[n].name = "lse aliases out";
    cases[n].out.buffer = cases[n].lse.buffer = big;
    cases[n].lse.offset = out.bytes - 4 * sizeof(float);   /* the last 4 floats of out */
    cases[n].names[0] = "out";
    cases[n++].names[1] = "lse";
    cases[n] = base, cases[n].name = "outs[1] past its buffer";
    cases[n].outs[1].offset = P.outs.bytes - 4;
    cases[n].want = CLATTN_ERROR_BUFFER_TOO_SMALL;
    cases[n++].names[0] = "outs[1]";
    cases[n] = base, cases[n].name = "num_wait 1, wait_list NULL", cases[n].num_wait = 1;
    cases[n++].names[0] = "wait_list";
    cr_assert_leq(n, sizeof cases / sizeof cases[0]);

    for (size_t i = 0; i < n; i++) {
        const bad *c = &cases[i];
        buf_fill_canary(out.view.buffer);
        buf_fill_canary(lse.view.buffer);
        buf_fill_canary(big);
        cl_event ev = (cl_event)&ev;
        clattn_status st = clattn_attention_merge(
            test_ctx(), c->n, c->null_outs ? NULL : c->outs, c->null_lses ? NULL : c->lses,
            c->null_out ? NULL : &c->out, c->null_lse ? NULL : &c->lse, c->num_wait, NULL, &ev);
        const char *msg = clattn_last_error();
        cr_log_info("merge %s: %s: %s", c->name, clattn_status_string(st), msg);
        cr_expect_eq(st, c->want, "merge %s: want %s, got %s (%s)", c->name,
                     clattn_status_string(c->want), clattn_status_string(st), msg);
        for (int s = 0; s < 2; s++)
            if (c->names[s])
                cr_expect(strstr(msg, c->names[s]) != NULL,
                          "merge %s: message \"%s\" does not name %s", c->name, msg,
                          c->names[s]);
        cr_expect_null(ev, "merge %s: *event not cleared", c->name);
        if (st == CLATTN_SUCCESS && ev) {
            clWaitForEvents(1, &ev);
            clReleaseEvent(ev);
        }
        size_t first;
        cr_expect(buf_canary_intact(out.view.buffer, &first), "merge %s: out written (%zu)",
                  c->name, first);
        cr_expect(buf_canary_intact(lse.view.buffer, &first), "merge %s: lse written (%zu)",
                  c->name, first);
        cr_expect(buf_canary_intact(big, &first), "merge %s: out/lse buffer written (%zu)",
                  c->name, first);
    }
    /* the parts were never written */
    unsigned char *now = malloc(P.outs.bytes);
    cr_assert_not_null(now);
    buf_read(rw_parts, P.outs.bytes, now);
    cr_expect(memcmp(now, P.outs.host, P.outs.bytes) == 0, "a rejected merge wrote its parts");
    free(now);

    /* still usable: the valid call matches the formula */
    cl_event ev = NULL;
    clattn_status st = clattn_attention_merge(test_ctx(), MN, base.outs, base.lses, &out.view,
                                              &lse.view, 0, NULL, &ev);
    cr_assert_eq(st, CLATTN_SUCCESS, "valid merge after the rejections: %s: %s",
                 clattn_status_string(st), clattn_last_error());
    cr_assert_str_empty(clattn_last_error());
    cr_assert_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
    tt_download(&out);
    tt_download(&lse);
    double want_out[MB * MH * MS * MDV], want_lse[MB * MH * MS];
    ref_tensor ro = ref_tensor_dense(want_out, MB, MH, MS, MDV);
    ref_tensor rl = ref_tensor_dense(want_lse, MB, MH, MS, 1);
    merge_reference(&P, &ro, &rl);
    cmp_result co = compare_out(&out, &ro), cl = compare_lse(&lse, &rl);
    char a[200], b[200];
    cr_log_info("valid merge after the rejections: out %s; lse %s",
                cmp_describe(&co, a, sizeof a), cmp_describe(&cl, b, sizeof b));
    cr_assert(co.worst <= TOL_MERGE_F32 && cl.worst <= TOL_MERGE_F32, "out %s; lse %s", a, b);

    clReleaseMemObject(big);
    clReleaseMemObject(rw_parts);
    tt_free(&out);
    tt_free(&lse);
    parts_free(&P);
}
