/* clattn_attention_merge on its own: n partial results (out_p, lse_p) for the same queries
   over disjoint key sets combine to out = sum_p exp(lse_p - lse) out_p, lse = log sum_p
   exp(lse_p), against that formula in f64 on the host. A part with lse_p = -INFINITY
   contributes nothing (even when its out_p holds NaN or Inf), a row whose parts are all
   -INFINITY gets out 0 and lse -INFINITY, NaN in a part reaches the output.

   Then the use it exists for: forward over three disjoint key ranges (views with offsets into
   the same k and v buffers, k_start their first key), merged, equals one forward over all keys,
   causal masks and dropout included; and the backward over blocks of query and key ranges
   (q_start, k_start), given the merged out and lse and adding into dq, dk, dv (accumulate),
   gives the whole backward (ring attention's two halves). And bad input: every
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

/* A merge case is a test_case (common.h): B, H = Hq, S = Sq, Dv; the merged out in out_dtype
   and layout lo (lse: ll); merge.n parts, their outs in merge.part_dtype (the odd parts' in
   merge.alt_dtype when it differs), merge.plant (TC_PLANT_*). */
#define MERGE(np, b, h, s, dv)                                                             \
    .merge.n = (np), .B = (b), .Hq = (h), .Hkv = (h), .Sq = (s), .Sk = (s), .D = (dv),      \
    .Dv = (dv)
#define LAYOUT(l) .lo = &(l), .ll = &(l)
#define INF TC_PLANT_INF
#define ALL_INF TC_PLANT_ALL_INF
#define NAN_OUT TC_PLANT_NAN_OUT
#define NAN_LSE TC_PLANT_NAN_LSE
#define GARBAGE TC_PLANT_GARBAGE

static const test_case merge_cases[] = {
    {"n=1", MERGE(1, 2, 3, 17, 24), .merge.plant = INF},
    {"n=2", MERGE(2, 2, 3, 17, 24), .merge.plant = INF},
    {"n=5, all -inf rows", MERGE(5, 2, 3, 17, 24), .merge.plant = INF | ALL_INF},
    {"n=5, padded layouts", MERGE(5, 3, 2, 31, 40), .merge.plant = INF | ALL_INF,
     LAYOUT(LAYOUT_BSHD_PADDED)},
    {"n=2, Dv=1", MERGE(2, 1, 4, 33, 1), .merge.plant = INF, LAYOUT(LAYOUT_BHSD_PADDED)},
    {"n=3, Dv=300", MERGE(3, 1, 2, 9, 300), .merge.plant = INF | ALL_INF},
    {"n=2, NaN in out_p", MERGE(2, 2, 2, 11, 16), .merge.plant = INF | NAN_OUT},
    {"n=5, NaN in lse_p", MERGE(5, 2, 2, 11, 16), .merge.plant = INF | NAN_LSE},
    {"n=5, -inf parts hold NaN/Inf", MERGE(5, 2, 2, 13, 16),
     .merge.plant = INF | ALL_INF | GARBAGE},
};

static const test_case merge_cases_f16[] = {
    {"n=5, f32 parts, out f16", MERGE(5, 2, 3, 17, 24), .out_dtype = CLATTN_F16,
     .merge.plant = INF | ALL_INF | NAN_OUT},
    {"n=2, f16 parts, out f16", MERGE(2, 2, 3, 17, 24), .out_dtype = CLATTN_F16,
     .merge.part_dtype = CLATTN_F16, .merge.alt_dtype = CLATTN_F16,
     .merge.plant = INF | ALL_INF, LAYOUT(LAYOUT_BSHD_PADDED)},
    {"n=5, parts f16 and bf16 mixed, out f16", MERGE(5, 1, 2, 19, 40),
     .out_dtype = CLATTN_F16, .merge.part_dtype = CLATTN_F16, .merge.alt_dtype = CLATTN_BF16,
     .merge.plant = INF | ALL_INF | GARBAGE},
};

static int hash_hit(uint64_t x, int mod)
{
    x = (x ^ (x >> 31)) * 0x9E3779B97F4A7C15ULL;
    return (int)((x >> 40) % (uint64_t)mod) == 0;
}

/* -INFINITY (and, with TC_PLANT_GARBAGE, NaN/Inf in the out) into the (part, row)s c plants. */
static void plant_inf(parts *P, const test_case *c)
{
    const double garbage[3] = {NAN, INFINITY, -INFINITY};
    for (int64_t pb = 0; pb < P->lses.view.dims[0]; pb++)
        for (int64_t h = 0; h < c->Hq; h++)
            for (int64_t s = 0; s < c->Sq; s++) {
                int64_t b = pb % c->B;
                uint64_t key = ((uint64_t)pb * 131 + (uint64_t)h) * 1009 + (uint64_t)s;
                int all = (c->merge.plant & TC_PLANT_ALL_INF) &&
                          ((b == 0 && h == 0 && s == 0) ||
                           (b == c->B - 1 && h == c->Hq - 1 && s == c->Sq - 1));
                int inf = all || ((c->merge.plant & TC_PLANT_INF) && hash_hit(key, 4));
                if (!inf)
                    continue;
                tt_set(&P->lses, pb, h, s, 0, -INFINITY);
                if (c->merge.plant & TC_PLANT_GARBAGE)
                    for (int64_t d = 0; d < c->Dv; d++)
                        tt_set((test_tensor *)part_outs(P, (size_t)(pb / c->B)), pb, h, s,
                               d, garbage[(s + d) % 3]);
            }
}

/* NaN into a row that is not all -inf: batch B-1, head 0, row S/2, part n-1. */
static void plant_nan(parts *P, const test_case *c)
{
    int64_t nb = (int64_t)(c->merge.n - 1) * c->B + c->B - 1, ns = c->Sq / 2;
    if (c->merge.plant & (TC_PLANT_NAN_OUT | TC_PLANT_NAN_LSE))
        tt_set(&P->lses, nb, 0, ns, 0, 0.25);    /* a finite lse_p there */
    if (c->merge.plant & TC_PLANT_NAN_OUT)
        tt_set((test_tensor *)part_outs(P, c->merge.n - 1), nb, 0, ns, c->Dv / 2, NAN);
    if (c->merge.plant & TC_PLANT_NAN_LSE)
        tt_set(&P->lses, nb, 0, ns, 0, NAN);
}

static void parts_build(parts *P, const test_case *c, test_rng *rng)
{
    memset(P, 0, sizeof *P);
    cr_assert(c->merge.n <= 8);
    P->n = c->merge.n;
    P->B = c->B;
    int64_t od[4] = {(int64_t)c->merge.n * c->B, c->Hq, c->Sq, c->Dv};
    int64_t ld[4] = {(int64_t)c->merge.n * c->B, c->Hq, c->Sq, 1};
    tt_init(&P->outs, c->merge.part_dtype, od, c->lo ? c->lo : &LAYOUT_BHSD);
    tt_init(&P->lses, CLATTN_F32, ld, c->ll ? c->ll : &LAYOUT_BHSD);
    tt_fill_random(&P->outs, rng, -0.5, 1.5);
    if (c->merge.alt_dtype != c->merge.part_dtype) {
        tt_init(&P->alt, c->merge.alt_dtype, od, c->lo ? c->lo : &LAYOUT_BHSD);
        tt_fill_random(&P->alt, rng, -0.5, 1.5);
        P->has_alt = 1;
    }
    tt_fill_random(&P->lses, rng, -3.0, 3.0);
    plant_inf(P, c);
    plant_nan(P, c);
    tt_upload(&P->outs, CL_MEM_READ_ONLY);
    if (P->has_alt)
        tt_upload(&P->alt, CL_MEM_READ_ONLY);
    tt_upload(&P->lses, CL_MEM_READ_ONLY);
    for (size_t p = 0; p < c->merge.n; p++) {
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

/* The planted rules, stated independently of compare_*: an all -inf row is (0, -inf), the NaN
   row is NaN, -inf parts holding garbage change nothing. */
static void expect_planted_rules(const test_case *c, const test_tensor *out,
                                 const test_tensor *lse, const double *want_lse, int64_t rows,
                                 const char *label)
{
    int64_t empty = 0, nan_rows = 0;
    for (int64_t i = 0; i < rows; i++) {
        empty += isinf(want_lse[i]) && want_lse[i] < 0;
        nan_rows += isnan(want_lse[i]) != 0;
    }
    int plant = c->merge.plant;
    if (plant & TC_PLANT_ALL_INF) {
        cr_assert_geq(empty, 1, "%s: no all -inf row planted", label);
        cr_expect(tt_get(lse, 0, 0, 0, 0) == -INFINITY, "%s: all -inf row: lse %g", label,
                  tt_get(lse, 0, 0, 0, 0));
        for (int64_t d = 0; d < c->Dv; d++)
            cr_expect(tt_get(out, 0, 0, 0, d) == 0.0, "%s: all -inf row: out[%ld] = %g",
                      label, (long)d, tt_get(out, 0, 0, 0, d));
    }
    if (plant & (TC_PLANT_NAN_OUT | TC_PLANT_NAN_LSE)) {
        int64_t b = c->B - 1, s = c->Sq / 2;
        cr_expect(isnan(tt_get(out, b, 0, s, c->Dv / 2)), "%s: out of the NaN row is %g",
                  label, tt_get(out, b, 0, s, c->Dv / 2));
        if (plant & TC_PLANT_NAN_LSE)
            cr_expect(isnan(tt_get(lse, b, 0, s, 0)), "%s: lse of the NaN row is %g", label,
                      tt_get(lse, b, 0, s, 0));
    }
    if (plant & TC_PLANT_GARBAGE)
        cr_assert_eq(nan_rows, 0, "%s: the formula must skip -inf parts", label);
}

/* Fold one comparison into w, naming the case. */
static void fold(worst *w, const cmp_result *co, const cmp_result *cl, const char *name)
{
    if (co->worst > w->out.worst || w->cases == 0)
        snprintf(w->out_case, sizeof w->out_case, "%s", name);
    if (cl->worst > w->lse.worst || w->cases == 0)
        snprintf(w->lse_case, sizeof w->lse_case, "%s", name);
    cmp_merge(&w->out, co);
    cmp_merge(&w->lse, cl);
    w->cases++;
}

static void run_merge_case(const test_case *c, double tol_out, worst *w)
{
    char buf[200], label[512];
    tc_describe(c, label, sizeof label);
    test_rng rng;
    rng_seed(&rng, 0x3e49e000u + c->merge.n * 31 + (uint64_t)c->Sq);
    parts P;
    parts_build(&P, c, &rng);
    test_tensor out, lse;
    tc_tensor(&out, c, TC_OUT);
    tc_tensor(&lse, c, TC_LSE);
    tt_upload(&out, CL_MEM_READ_WRITE);
    tt_upload(&lse, CL_MEM_READ_WRITE);

    cl_event ev = NULL;
    clattn_status st = clattn_attention_merge(test_ctx(), c->merge.n, P.out_views, P.lse_views,
                                              &out.view, &lse.view, 0, NULL, &ev);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s: %s", label, clattn_status_string(st),
                 clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "%s: last error after success", label);
    test_wait_event(ev, label);
    tt_download(&out);
    tt_download(&lse);

    double *want_out = malloc(sizeof(double) * (size_t)(c->B * c->Hq * c->Sq * c->Dv));
    double *want_lse = malloc(sizeof(double) * (size_t)(c->B * c->Hq * c->Sq));
    cr_assert(want_out && want_lse);
    ref_tensor ro = ref_tensor_dense(want_out, c->B, c->Hq, c->Sq, c->Dv);
    ref_tensor rl = ref_tensor_dense(want_lse, c->B, c->Hq, c->Sq, 1);
    merge_reference(&P, &ro, &rl);
    expect_planted_rules(c, &out, &lse, want_lse, ref_numel(&rl), label);

    cmp_result co = compare_out(&out, &ro), cl = compare_lse(&lse, &rl);
    cr_expect(co.worst <= tol_out, "%s: out %s (tolerance %g)", label,
              cmp_describe(&co, buf, sizeof buf), tol_out);
    cr_expect(cl.worst <= TOL_MERGE_F32, "%s: lse %s (tolerance %g)", label,
              cmp_describe(&cl, buf, sizeof buf), TOL_MERGE_F32);
    fold(w, &co, &cl, c->name);
    tc_expect_outside_intact(&out, "out", label);
    tc_expect_outside_intact(&lse, "lse", label);

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

/* A split case's tensors: k, v and the merged out in other layouts than q, and with a full
   bias (TC_BIAS_FULL), rows 3..9 of every head seeing only -inf in keys [a, b). */
static void split_build(tc_run *r, const test_case *table_case)
{
    test_case c = *table_case;
    c.seed = 0x5b117u + (uint64_t)c.Sk;
    c.lk = &LAYOUT_BSHD;
    c.lv = &LAYOUT_BHSD_PADDED;
    c.lo = &LAYOUT_BSHD_PADDED;
    tc_build(r, &c);
    for (int64_t b = 0; r->bias.host && b < c.B; b++)
        for (int64_t h = 0; h < c.Hq; h++)
            for (int64_t i = 3; i < 10 && i < c.Sq; i++)
                for (int64_t j = c.merge.split[0]; j < c.merge.split[1]; j++)
                    tt_set(&r->bias, b, h, i, j, -INFINITY);
    tc_upload(r);
}

/* The arguments of r's calls over keys [start, start + len): k, v (and the bias) narrowed to
   them, k_start moved to the first. *bias holds the bias view. */
static void args_over_keys(tc_args *a, const tc_run *r, int64_t start, int64_t len,
                           clattn_tensor *bias)
{
    tc_args_init(a, r);
    a->desc.k_start += start;
    a->k = key_range(&r->k.view, 2, start, len);
    a->v = key_range(&r->v.view, 2, start, len);
    if (r->bias.host) {
        *bias = key_range(&r->bias.view, 3, start, len);
        a->desc.bias = bias;
    }
}

/* r's forward over keys [start, start + len) into out, lse. */
static void forward_over_keys(tc_run *r, int64_t start, int64_t len, const test_tensor *out,
                              const test_tensor *lse, cl_event *ev)
{
    tc_args a;
    clattn_tensor bias;
    args_over_keys(&a, r, start, len, &bias);
    a.out = out->view;
    a.lse = lse->view;
    clattn_status st = tc_call_forward(&a, ev);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: forward over keys [%ld, %ld): %s: %s", r->c.name,
                 (long)start, (long)(start + len), clattn_status_string(st),
                 clattn_last_error());
}

/* Forward over keys [0, a), [a, b), [b, Sk) into three parts, merged into r's out and lse
   (waiting on the three forwards' events). part_lse[1] is kept for the caller. */
static void forward_in_three_and_merge(tc_run *r, test_tensor *part_lse1)
{
    const test_case *c = &r->c;
    const int64_t start[3] = {0, c->merge.split[0], c->merge.split[1]};
    const int64_t len[3] = {start[1], start[2] - start[1], c->Sk - start[2]};
    test_tensor part_out[3], part_lse[3];
    clattn_tensor pout[3], plse[3];
    cl_event evs[3];
    const int64_t od[4] = {c->B, c->Hq, c->Sq, c->Dv};
    for (int p = 0; p < 3; p++) {
        tt_init(&part_out[p], CLATTN_F32, od, &LAYOUT_BHSD);
        tc_tensor(&part_lse[p], c, TC_LSE);
        tt_upload(&part_out[p], CL_MEM_READ_WRITE);
        tt_upload(&part_lse[p], CL_MEM_READ_WRITE);
        forward_over_keys(r, start[p], len[p], &part_out[p], &part_lse[p], &evs[p]);
        pout[p] = part_out[p].view;
        plse[p] = part_lse[p].view;
    }
    cl_event ev = NULL;
    clattn_status st = clattn_attention_merge(test_ctx(), 3, pout, plse, &r->out.view,
                                              &r->lse.view, 3, evs, &ev);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: merge: %s: %s", c->name, clattn_status_string(st),
                 clattn_last_error());
    test_wait_event(ev, "merge");
    for (int p = 0; p < 3; p++) {
        clReleaseEvent(evs[p]);
        tt_download(&part_lse[p]);
        tt_free(&part_out[p]);
    }
    *part_lse1 = part_lse[1];
    tt_free(&part_lse[0]);
    tt_free(&part_lse[2]);
}

static void run_split(const test_case *table_case, worst *vs_ref, worst *vs_full)
{
    char buf[200], label[512];
    tc_run r;
    split_build(&r, table_case);
    tc_describe(&r.c, label, sizeof label);
    const test_case *c = &r.c;
    test_tensor part_lse1, full_out, full_lse;
    forward_in_three_and_merge(&r, &part_lse1);

    /* one forward over all keys */
    const int64_t od[4] = {c->B, c->Hq, c->Sq, c->Dv}, ld[4] = {c->B, c->Hq, c->Sq, 1};
    tt_init(&full_out, CLATTN_F32, od, &LAYOUT_BHSD);
    tt_init(&full_lse, CLATTN_F32, ld, &LAYOUT_BHSD);
    tt_upload(&full_out, CL_MEM_READ_WRITE);
    tt_upload(&full_lse, CL_MEM_READ_WRITE);
    forward_over_keys(&r, 0, c->Sk, &full_out, &full_lse, NULL);
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    tt_download(&full_out);
    tt_download(&full_lse);

    /* the merged out and lse against the reference over all keys */
    tc_fwd_result res;
    tc_check_forward(&r, label, &res);
    fold(vs_ref, &res.out, &res.lse, c->name);
    if (c->bias) {   /* the middle part has rows without keys: they must not contribute */
        cr_expect(tt_get(&part_lse1, 0, 0, 3, 0) == -INFINITY,
                  "%s: middle part row 3: lse %g, want -inf", label,
                  tt_get(&part_lse1, 0, 0, 3, 0));
    }

    /* against the single forward over all keys */
    double *fo, *fl;
    ref_tensor rfo = tt_to_ref(&full_out, &fo), rfl = tt_to_ref(&full_lse, &fl);
    cmp_result co = compare_out(&r.out, &rfo), cl = compare_lse(&r.lse, &rfl);
    cr_expect(co.worst <= TOL_MERGE_FORWARD, "%s: merged out vs one forward %s", label,
              cmp_describe(&co, buf, sizeof buf));
    cr_expect(cl.worst <= TOL_F32_LSE, "%s: merged lse vs one forward %s", label,
              cmp_describe(&cl, buf, sizeof buf));
    fold(vs_full, &co, &cl, c->name);

    free(fo);
    free(fl);
    tt_free(&part_lse1);
    tt_free(&full_out);
    tt_free(&full_lse);
    tc_free(&r);
}

Test(merge, forward_over_three_key_ranges_equals_one_forward)
{
    const test_case configs[] = {
        {"f32 GQA 4:2, Sk=150 split 41/97", TC_SHAPE(2, 4, 2, 33, 150, 64, 48),
         .merge.split = {41, 97}},
        {"f32 MQA decode Sq=1, Sk=700 split 1/400", TC_SHAPE(1, 4, 1, 1, 700, 64, 64),
         .merge.split = {1, 400}},
        {"f16 Sk=120 split 40/80", TC_SHAPE(1, 2, 2, 20, 120, 32, 32), .dtype = CLATTN_F16,
         .merge.split = {40, 80}},
        {"f32 bias, a middle range of -inf for rows 3..9", TC_SHAPE(2, 2, 1, 25, 90, 32, 32),
         .bias = TC_BIAS_FULL, .merge.split = {30, 60}},
        /* the last 40 rows of a 100-token causal sequence: the first range is wholly visible,
           the last ends past the diagonal */
        {"f32 causal TL q_start 60, GQA, dropout, split 30/70", TC_SHAPE(1, 4, 2, 40, 100, 32,
         16), .causal = 1, TC_TL, .q_start = 60, .dropout_p = 0.2f, .merge.split = {30, 70}},
        {"f32 window (20, 5) TL q_start 50, dropout, split 45/75",
         TC_SHAPE(2, 2, 1, 30, 90, 16, 16), .window = TC_WIN(20, 5), TC_TL, .q_start = 50,
         .dropout_p = 0.3f, .merge.split = {45, 75}},
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

/* A view of the rows [start, start + len) of a [B, H, S, D] tensor. */
static clattn_tensor row_range(const test_tensor *t, int64_t start, int64_t len)
{
    return key_range(&t->view, 2, start, len);
}

/* r's backward over query rows [q0, q1) and keys [k0, k1), from r's out and lse, adding
   (accumulate) into the matching slices of r's dq, dk and dv. */
static void backward_block(tc_run *r, int64_t q0, int64_t q1, int64_t k0, int64_t k1)
{
    tc_args a;
    clattn_tensor bias;
    args_over_keys(&a, r, k0, k1 - k0, &bias);
    if (r->bias.host)
        bias = key_range(&bias, 2, q0, q1 - q0);
    a.desc.q_start += q0;
    a.desc.accumulate = 1;
    a.q = row_range(&r->q, q0, q1 - q0);
    a.out = row_range(&r->out, q0, q1 - q0);
    a.dout = row_range(&r->dout, q0, q1 - q0);
    a.lse = row_range(&r->lse, q0, q1 - q0);
    a.dq = row_range(&r->dq, q0, q1 - q0);
    a.dk = row_range(&r->dk, k0, k1 - k0);
    a.dv = row_range(&r->dv, k0, k1 - k0);
    clattn_status st = tc_call_backward(&a, NULL);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: backward over rows [%ld, %ld), keys [%ld, %ld): %s: %s",
                 r->c.name, (long)q0, (long)q1, (long)k0, (long)k1, clattn_status_string(st),
                 clattn_last_error());
}

/* The elements of t's view set to 0 on the host and the device. */
static void zero_view(test_tensor *t)
{
    const int64_t *n = t->view.dims;
    for (int64_t b = 0; b < n[0]; b++)
        for (int64_t h = 0; h < n[1]; h++)
            for (int64_t s = 0; s < n[2]; s++)
                for (int64_t d = 0; d < n[3]; d++)
                    tt_set(t, b, h, s, d, 0.0);
    tt_push(t);
}

/* Forward over three key ranges and merge, then the backward over every block of two query
   ranges (split at Sq / 2) and the three key ranges, each adding (accumulate) into the slices
   of r's zeroed dq, dk and dv that its rows and keys own. */
static void backward_in_blocks(tc_run *r)
{
    const test_case *c = &r->c;
    test_tensor part_lse1;
    forward_in_three_and_merge(r, &part_lse1);
    tt_free(&part_lse1);
    zero_view(&r->dq);
    zero_view(&r->dk);
    zero_view(&r->dv);
    const int64_t qs[3] = {0, c->Sq / 2, c->Sq};
    const int64_t ks[4] = {0, c->merge.split[0], c->merge.split[1], c->Sk};
    for (int i = 0; i < 2; i++)
        for (int p = 0; p < 3; p++)
            backward_block(r, qs[i], qs[i + 1], ks[p], ks[p + 1]);
}

Test(merge, backward_over_blocks_adds_up_to_the_whole)
{
    const test_case configs[] = {
        {"f32 causal TL q_start 60, GQA, dropout, split 30/70", TC_SHAPE(1, 4, 2, 40, 100, 32,
         16), .causal = 1, TC_TL, .q_start = 60, .dropout_p = 0.2f, .merge.split = {30, 70}},
        {"f32 window (20, 5) TL q_start 50, bias, split 45/75",
         TC_SHAPE(2, 2, 1, 30, 90, 16, 16), .window = TC_WIN(20, 5), TC_TL, .q_start = 50,
         .bias = TC_BIAS_FULL, .merge.split = {45, 75}},
        /* six f16 additions per gradient element */
        {"f16 gradients, causal TL q_start 20, split 10/25", TC_SHAPE(1, 2, 2, 16, 36, 16,
         16), .causal = 1, TC_TL, .q_start = 20, .grad_dtype = CLATTN_F16,
         .merge.split = {10, 25}},
    };
    test_ctx();
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        test_case c = configs[i];
        c.backward = 1;
        char label[512];
        tc_run r;
        split_build(&r, &c);
        tc_describe(&r.c, label, sizeof label);
        backward_in_blocks(&r);
        tc_grad_result g;
        tc_check_backward(&r, label, &g);
        char a[200], b[200], d[200];
        cr_log_info("%s: dq %s, dk %s, dv %s (tolerance %g)", label,
                    cmp_describe(&g.dq, a, sizeof a), cmp_describe(&g.dk, b, sizeof b),
                    cmp_describe(&g.dv, d, sizeof d), g.tol);
        tc_free(&r);
    }
}

/* ---- bad input --------------------------------------------------------------------------- */

enum { MB = 2, MH = 3, MS = 5, MDV = 7, MN = 3 };

Test(merge, bad_input_names_the_argument_and_writes_nothing)
{
    test_ctx();
    const test_case mc = {"bad input", MERGE(MN, MB, MH, MS, MDV), .merge.plant = INF};
    test_rng rng;
    rng_seed(&rng, 4242);
    parts P;
    parts_build(&P, &mc, &rng);
    test_tensor out, lse;
    tc_tensor(&out, &mc, TC_OUT);
    tc_tensor(&lse, &mc, TC_LSE);
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
    test_skip_if_refused(st);
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
