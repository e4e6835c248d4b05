/* The f32 forward against the f64 reference: shapes, head dims, layouts, scale, causal masks,
   GQA/MQA, windows, lse, rows without keys, NaN rules, canaries around outputs, events; a
   backward after the forward; and the features that this version must refuse with
   CLATTN_ERROR_UNSUPPORTED.

   Each test sweeps many cases in one process (one context, kernels built once); it logs the
   worst error of its sweep and asserts it under TOL_F32_OUT / TOL_F32_LSE (common.h). Input
   buffers hold NaN/Inf outside their views, so a kernel that reads padding shows up as NaN. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

TestSuite(forward, .fini = test_ctx_release);

/* ---- one case ---------------------------------------------------------------------------- */

typedef struct fwd_case {
    int64_t B, Hq, Hkv, Sq, Sk, D, Dv;
    float scale;
    int causal;
    clattn_mask_align align;
    int64_t window_left, window_right;
    clattn_algo algo;
    int with_lse;
    const test_layout *lq, *lk, *lv, *lo, *ll;   /* NULL: dense BHSD */
    int kv_batch_broadcast;                        /* k, v with strides[0] == 0 */
    uint64_t seed;
} fwd_case;

static fwd_case mk(int64_t B, int64_t Hq, int64_t Hkv, int64_t Sq, int64_t Sk, int64_t D,
                   int64_t Dv)
{
    fwd_case c;
    memset(&c, 0, sizeof c);
    c.B = B; c.Hq = Hq; c.Hkv = Hkv; c.Sq = Sq; c.Sk = Sk; c.D = D; c.Dv = Dv;
    c.align = CLATTN_ALIGN_BOTTOM_RIGHT;
    c.window_left = c.window_right = -1;
    c.algo = CLATTN_ALGO_AUTO;
    c.with_lse = 1;
    c.seed = (uint64_t)(B * 1000003 + Hq * 10007 + Hkv * 1009 + Sq * 101 + Sk * 11 + D * 7 + Dv);
    return c;
}

static const char *lname(const test_layout *l)
{
    return l ? l->name : "bhsd";
}

static const char *describe(const fwd_case *c, char *buf, size_t size)
{
    snprintf(buf, size,
             "B=%ld Hq=%ld Hkv=%ld Sq=%ld Sk=%ld D=%ld Dv=%ld scale=%g causal=%d align=%s "
             "wl=%ld wr=%ld algo=%d lse=%d q=%s k=%s%s v=%s out=%s lse=%s",
             (long)c->B, (long)c->Hq, (long)c->Hkv, (long)c->Sq, (long)c->Sk, (long)c->D,
             (long)c->Dv, (double)c->scale, c->causal,
             c->align == CLATTN_ALIGN_TOP_LEFT ? "TL" : "BR", (long)c->window_left,
             (long)c->window_right, (int)c->algo, c->with_lse, lname(c->lq), lname(c->lk),
             c->kv_batch_broadcast ? "(b-bcast)" : "", lname(c->lv), lname(c->lo),
             lname(c->ll));
    return buf;
}

static void desc_of(const fwd_case *c, clattn_attention_desc *d)
{
    clattn_attention_desc_init(d);
    d->scale = c->scale;
    d->causal = c->causal;
    d->align = c->align;
    d->window_left = c->window_left;
    d->window_right = c->window_right;
    d->algo = c->algo;
}

static void params_of(const fwd_case *c, ref_params *p)
{
    ref_params_init(p);
    p->scale = (double)c->scale;
    p->causal = c->causal;
    p->align = c->align;
    p->window_left = c->window_left;
    p->window_right = c->window_right;
}

/* Host and device tensors of one case, and its reference. */
typedef struct fwd_run {
    test_tensor q, k, v, out, lse;
    unsigned char *qsnap, *ksnap, *vsnap;   /* input buffers as uploaded */
    double *ref_out_data, *ref_lse_data;
    ref_tensor ref_out, ref_lse;
} fwd_run;

static void tensor_for(test_tensor *t, const int64_t dims[4], const test_layout *l)
{
    tt_init(t, CLATTN_F32, dims, l ? l : &LAYOUT_BHSD);
}

/* Host tensors with random inputs, NaN/Inf outside the input views and canary around the
   outputs. Nothing is on the device yet: tests may plant values before fwd_upload. */
static void fwd_build(fwd_run *r, const fwd_case *c)
{
    memset(r, 0, sizeof *r);
    int64_t qd[4] = {c->B, c->Hq, c->Sq, c->D}, kd[4] = {c->B, c->Hkv, c->Sk, c->D};
    int64_t vd[4] = {c->B, c->Hkv, c->Sk, c->Dv}, od[4] = {c->B, c->Hq, c->Sq, c->Dv};
    int64_t ld[4] = {c->B, c->Hq, c->Sq, 1};
    tensor_for(&r->q, qd, c->lq);
    if (c->kv_batch_broadcast) {
        int64_t ks[4] = {0, c->Sk * c->D, c->D, 1}, vs[4] = {0, c->Sk * c->Dv, c->Dv, 1};
        tt_init_strided(&r->k, CLATTN_F32, kd, ks, 8, 16);
        tt_init_strided(&r->v, CLATTN_F32, vd, vs, 4, 12);
    } else {
        tensor_for(&r->k, kd, c->lk);
        tensor_for(&r->v, vd, c->lv);
    }
    tensor_for(&r->out, od, c->lo);
    tensor_for(&r->lse, ld, c->ll);

    test_rng rng;
    rng_seed(&rng, c->seed);
    tt_fill_random(&r->q, &rng, -1.0, 1.0);
    tt_fill_random(&r->k, &rng, -1.0, 1.0);
    /* v off-centre: a row's outputs then rarely cancel to ~0, which would make the per-row
       relative metric measure f32 rounding of a cancellation instead of the kernel (Dv = 1) */
    tt_fill_random(&r->v, &rng, -0.5, 1.5);
    tt_fill_outside_f32(&r->q, NAN);
    tt_fill_outside_f32(&r->k, INFINITY);
    tt_fill_outside_f32(&r->v, NAN);
}

static unsigned char *snapshot(const test_tensor *t)
{
    unsigned char *s = malloc(t->bytes);
    cr_assert_not_null(s);
    memcpy(s, t->host, t->bytes);
    return s;
}

static void fwd_upload(fwd_run *r)
{
    tt_upload(&r->q, CL_MEM_READ_ONLY);
    tt_upload(&r->k, CL_MEM_READ_ONLY);
    tt_upload(&r->v, CL_MEM_READ_ONLY);
    tt_upload(&r->out, CL_MEM_READ_WRITE);
    tt_upload(&r->lse, CL_MEM_READ_WRITE);
    r->qsnap = snapshot(&r->q);
    r->ksnap = snapshot(&r->k);
    r->vsnap = snapshot(&r->v);
}

static clattn_status fwd_call(fwd_run *r, const fwd_case *c, int with_lse, cl_uint num_wait,
                              const cl_event *wait_list, cl_event *event)
{
    clattn_attention_desc desc;
    desc_of(c, &desc);
    return clattn_attention_forward(test_ctx(), &desc, &r->q.view, &r->k.view, &r->v.view,
                                    &r->out.view, with_lse ? &r->lse.view : NULL, num_wait,
                                    wait_list, event);
}

/* Wait for ev, check it completed, release it. */
static void wait_event(cl_event ev)
{
    cr_assert_not_null(ev, "no event returned");
    cr_assert_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
    cl_int status = -1;
    cr_assert_eq(clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status,
                                NULL), CL_SUCCESS);
    cr_assert_eq(status, CL_COMPLETE, "event status %d", status);
    cr_assert_eq(clReleaseEvent(ev), CL_SUCCESS);
}

static void fwd_reference(fwd_run *r, const fwd_case *c)
{
    ref_params p;
    params_of(c, &p);
    test_reference_of(p, &r->q, &r->k, &r->v, NULL, &r->ref_out_data, &r->ref_out,
                      &r->ref_lse_data, &r->ref_lse);
}

static void fwd_free(fwd_run *r)
{
    tt_free(&r->q);
    tt_free(&r->k);
    tt_free(&r->v);
    tt_free(&r->out);
    tt_free(&r->lse);
    free(r->qsnap);
    free(r->ksnap);
    free(r->vsnap);
    free(r->ref_out_data);
    free(r->ref_lse_data);
    memset(r, 0, sizeof *r);
}

/* ---- sweeps: worst error over many cases ------------------------------------------------- */

typedef struct sweep {
    int cases;
    cmp_result out, lse;
    char out_case[400], lse_case[400];
} sweep;

static void sweep_init(sweep *s)
{
    memset(s, 0, sizeof *s);
    s->out = cmp_none();
    s->lse = cmp_none();
}

static void input_unchanged(const test_tensor *t, const unsigned char *snap, const char *name,
                            const char *label)
{
    unsigned char *now = malloc(t->bytes);
    cr_assert_not_null(now);
    buf_read(t->view.buffer, t->bytes, now);
    cr_expect(memcmp(now, snap, t->bytes) == 0, "%s: input %s was written", label, name);
    free(now);
}

/* Download the outputs and check everything about them; fold the errors into s. */
static void fwd_check(fwd_run *r, const fwd_case *c, int with_lse, sweep *s)
{
    char label[400], buf[200];
    describe(c, label, sizeof label);
    tt_download(&r->out);
    tt_download(&r->lse);
    if (!r->ref_out_data)
        fwd_reference(r, c);

    cmp_result co = compare_out(&r->out, &r->ref_out);
    cr_expect(co.worst <= TOL_F32_OUT, "%s: out %s", label, cmp_describe(&co, buf, sizeof buf));
    if (co.worst > s->out.worst || s->cases == 0)
        snprintf(s->out_case, sizeof s->out_case, "%s", label);
    cmp_merge(&s->out, &co);
    if (with_lse) {
        cmp_result cl = compare_lse(&r->lse, &r->ref_lse);
        cr_expect(cl.worst <= TOL_F32_LSE, "%s: lse %s", label,
                  cmp_describe(&cl, buf, sizeof buf));
        if (cl.worst > s->lse.worst || s->cases == 0)
            snprintf(s->lse_case, sizeof s->lse_case, "%s", label);
        cmp_merge(&s->lse, &cl);
    }

    size_t first;
    size_t bad = tt_outside_damage(&r->out, &first);
    cr_expect_eq(bad, 0, "%s: %zu bytes around the out view changed (first at byte %zu)", label,
                 bad, first);
    bad = tt_outside_damage(&r->lse, &first);
    cr_expect_eq(bad, 0, "%s: %zu bytes around the lse view changed (first at byte %zu)", label,
                 bad, first);
    if (!with_lse) {
        size_t lse_first = canary_first_bad(r->lse.host, r->lse.bytes);
        cr_expect_eq(lse_first, SIZE_MAX, "%s: lse == NULL, yet its buffer changed at byte %zu",
                     label, lse_first);
    }
    input_unchanged(&r->q, r->qsnap, "q", label);
    input_unchanged(&r->k, r->ksnap, "k", label);
    input_unchanged(&r->v, r->vsnap, "v", label);
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
static void run_case(const fwd_case *c, sweep *s)
{
    fwd_run r;
    char label[400];
    fwd_build(&r, c);
    fwd_upload(&r);
    cl_event ev = NULL;
    clattn_status st = fwd_call(&r, c, c->with_lse, 0, NULL, &ev);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s: %s", describe(c, label, sizeof label),
                 clattn_status_string(st), clattn_last_error());
    cr_assert_str_empty(clattn_last_error(), "last error after success: %s",
                        clattn_last_error());
    wait_event(ev);
    fwd_check(&r, c, c->with_lse, s);
    fwd_free(&r);
}

static void run_cases(const fwd_case *cases, size_t n, const char *what)
{
    sweep s;
    sweep_init(&s);
    test_ctx();
    for (size_t i = 0; i < n; i++)
        run_case(&cases[i], &s);
    sweep_report(&s, what);
}

/* ---- sweeps ------------------------------------------------------------------------------ */

static const int64_t seq_lens[] = {1, 2, 7, 31, 64, 127, 257, 300};
#define N_SEQ (sizeof seq_lens / sizeof seq_lens[0])

Test(forward, seq_len_sweep)
{
    /* Every (Sq, Sk) pair of seq_lens, D = 64, GQA 2:1, no mask. */
    fwd_case cases[N_SEQ * N_SEQ];
    size_t n = 0;
    for (size_t a = 0; a < N_SEQ; a++)
        for (size_t b = 0; b < N_SEQ; b++) {
            cases[n] = mk(1, 2, 1, seq_lens[a], seq_lens[b], 64, 64);
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
    fwd_case cases[16];
    size_t n = 0;
    cases[n++] = mk(1, 1, 1, 1, 1, d, d);
    cases[n++] = mk(2, 2, 2, 7, 31, d, d);
    cases[n++] = mk(1, 3, 1, 33, 70, d, d);
    cases[n] = mk(1, 2, 1, 64, 127, d, dv2);
    cases[n++].algo = CLATTN_ALGO_FUSED;
    cases[n] = mk(2, 2, 1, 31, 64, d, d);
    cases[n++].causal = 1;
    cases[n] = mk(1, 2, 2, 17, 5, d, dv2);
    cases[n].causal = 1;
    cases[n++].align = CLATTN_ALIGN_TOP_LEFT;
    cases[n] = mk(1, 4, 2, 1, 257, d, d);
    cases[n++].algo = CLATTN_ALGO_FUSED;
    if (d >= 160) {
        cases[n++] = mk(1, 2, 1, 257, 300, d, d);
        cases[n] = mk(1, 1, 1, 300, 257, d, dv2);
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
    fwd_case cases[16];
    size_t n = 0;
    for (size_t i = 0; i < 5; i++) {
        /* tensor t of case i uses layout (i + t) % 5 */
        cases[n] = mk(2, 4, 2, 37, 53, 40, 24);
        cases[n].lq = L[i % 5];
        cases[n].lk = L[(i + 1) % 5];
        cases[n].lv = L[(i + 2) % 5];
        cases[n].lo = L[(i + 3) % 5];
        cases[n].ll = L[(i + 4) % 5];
        cases[n].causal = (int)(i & 1);
        n++;
    }
    cases[n] = mk(3, 2, 1, 1, 129, 64, 64);   /* decode-like, all padded */
    cases[n].lq = cases[n].lk = cases[n].lv = cases[n].lo = cases[n].ll = &LAYOUT_SBHD_PADDED;
    n++;
    cases[n] = mk(2, 4, 4, 70, 45, 72, 72);   /* all BSHD */
    cases[n].lq = cases[n].lk = cases[n].lv = cases[n].lo = cases[n].ll = &LAYOUT_BSHD;
    n++;
    cases[n] = mk(3, 4, 2, 19, 33, 16, 16);   /* k, v shared by every batch */
    cases[n].kv_batch_broadcast = 1;
    cases[n].lq = &LAYOUT_BSHD_PADDED;
    n++;
    cases[n] = mk(2, 2, 1, 64, 64, 128, 128);
    cases[n].kv_batch_broadcast = 1;
    cases[n].causal = 1;
    cases[n].lo = &LAYOUT_BHSD_PADDED;
    n++;
    run_cases(cases, n, "layouts_strides_offsets");
}

Test(forward, explicit_scale)
{
    const float scales[] = {0.0f, 1.0f, 0.5f, 0.01f, -0.25f, 3.0f, 0.125f};
    fwd_case cases[8];
    size_t n = 0;
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
        cases[n] = mk(1, 2, 1, 29, 41, i & 1 ? 16 : 64, 32);
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
    fwd_case cases[N_PAIRS];
    for (size_t i = 0; i < N_PAIRS; i++) {
        int64_t sq = mask_pairs[i][0], sk = mask_pairs[i][1];
        int big = sq * sk > 20000;
        cases[i] = mk(big ? 1 : 2, 2, 1, sq, sk, ds[i % 3], ds[i % 3]);
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
    fwd_case cases[16];
    size_t n = 0;
    for (size_t i = 0; i < nh; i++) {
        cases[n] = mk(2, heads[i][0], heads[i][1], 19, 45, 32, i % 2 ? 32 : 48);
        cases[n].causal = (int)(i % 3 == 1);
        n++;
    }
    cases[n++] = mk(1, 8, 1, 1, 257, 128, 128);    /* MQA decode */
    cases[n] = mk(1, 8, 2, 64, 64, 64, 64);
    cases[n].causal = 1;
    cases[n++].align = CLATTN_ALIGN_TOP_LEFT;
    run_cases(cases, n, "gqa_and_mqa");
}

Test(forward, head_dim_differs_from_value_dim)
{
    const int64_t dd[][2] = {{64, 16}, {16, 128}, {72, 1}, {1, 256}, {256, 64}, {96, 160},
                             {3, 5}, {130, 7}, {33, 200}};
    const size_t nd = sizeof dd / sizeof dd[0];
    fwd_case cases[16];
    for (size_t i = 0; i < nd; i++) {
        cases[i] = mk(1, 2, 1, 23 + (int64_t)i * 5, 61 - (int64_t)i * 3, dd[i][0], dd[i][1]);
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
    fwd_case cases[2 * 2 * 8 * 2];
    size_t n = 0;
    for (int align = 0; align < 2; align++)
        for (int causal = 0; causal < 2; causal++)
            for (size_t w = 0; w < nw; w++)
                for (size_t k = 0; k < 2; k++) {
                    const int64_t *sh = shapes[(w + k + (size_t)align) % 3];
                    cases[n] = mk(1, 2, 1, sh[0], sh[1], 16, 24);
                    cases[n].align = align ? CLATTN_ALIGN_TOP_LEFT : CLATTN_ALIGN_BOTTOM_RIGHT;
                    cases[n].causal = causal;
                    cases[n].window_left = win[w][0];
                    cases[n].window_right = win[w][1];
                    n++;
                }
    run_cases(cases, n, "sliding_windows");
}

Test(forward, lse_null_gives_bit_identical_out)
{
    fwd_case cases[5];
    cases[0] = mk(1, 2, 1, 31, 64, 64, 64);
    cases[1] = mk(2, 4, 2, 65, 33, 72, 16);
    cases[1].causal = 1;
    cases[2] = mk(1, 8, 1, 1, 300, 128, 128);
    cases[3] = mk(1, 2, 2, 40, 40, 16, 16);
    cases[3].window_left = 4;
    cases[3].window_right = 2;
    cases[4] = mk(1, 1, 1, 20, 5, 256, 256);
    cases[4].causal = 1;   /* rows without keys */
    sweep s;
    sweep_init(&s);
    for (size_t i = 0; i < 5; i++) {
        char label[400];
        describe(&cases[i], label, sizeof label);
        fwd_run with, without;
        fwd_build(&with, &cases[i]);
        fwd_upload(&with);
        fwd_build(&without, &cases[i]);
        fwd_upload(&without);
        TEST_CHECK_STATUS(fwd_call(&with, &cases[i], 1, 0, NULL, NULL), label);
        TEST_CHECK_STATUS(fwd_call(&without, &cases[i], 0, 0, NULL, NULL), label);
        cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
        fwd_check(&with, &cases[i], 1, &s);
        fwd_check(&without, &cases[i], 0, &s);
        cr_expect(memcmp(with.out.host, without.out.host, with.out.bytes) == 0,
                  "%s: out differs between lse and lse == NULL", label);
        fwd_free(&with);
        fwd_free(&without);
    }
    sweep_report(&s, "lse_null_gives_bit_identical_out");
}

/* Number of rows of the reference with lse == -inf (no visible key). */
static int64_t empty_rows(const fwd_run *r)
{
    int64_t n = 0;
    for (int64_t i = 0; i < ref_numel(&r->ref_lse); i++)
        n += isinf(r->ref_lse_data[i]) && r->ref_lse_data[i] < 0;
    return n;
}

Test(forward, rows_without_visible_keys)
{
    /* Rows that see no key: out exactly 0, lse exactly -INFINITY. */
    fwd_case cases[6];
    size_t n = 0;
    cases[n] = mk(1, 2, 1, 10, 4, 16, 16);      /* causal BR, Sq > Sk: rows 0..5 empty */
    cases[n++].causal = 1;
    cases[n] = mk(1, 1, 1, 300, 1, 64, 64);     /* only the last row sees the key */
    cases[n++].causal = 1;
    cases[n] = mk(2, 2, 2, 9, 3, 32, 8);        /* TL window (0,0): rows 3..8 empty */
    cases[n].align = CLATTN_ALIGN_TOP_LEFT;
    cases[n].window_left = 0;
    cases[n++].window_right = 0;
    cases[n] = mk(1, 4, 2, 70, 20, 64, 64);     /* causal BR + window_left */
    cases[n].causal = 1;
    cases[n++].window_left = 3;
    cases[n] = mk(1, 2, 1, 16, 64, 16, 16);     /* BR window_right = 0 and left = 0, with */
    cases[n].window_left = 0;                   /* off = 48: every row sees one key */
    cases[n++].window_right = 0;
    sweep s;
    sweep_init(&s);
    int64_t total_empty = 0;
    for (size_t i = 0; i < n; i++) {
        fwd_run r;
        char label[400];
        describe(&cases[i], label, sizeof label);
        fwd_build(&r, &cases[i]);
        fwd_upload(&r);
        TEST_CHECK_STATUS(fwd_call(&r, &cases[i], 1, 0, NULL, NULL), label);
        fwd_check(&r, &cases[i], 1, &s);
        /* explicit, independent of compare_*: every empty row is exactly (0, -inf) */
        const fwd_case *c = &cases[i];
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t h = 0; h < c->Hq; h++)
                for (int64_t q = 0; q < c->Sq; q++) {
                    double want = *ref_at(&r.ref_lse, b, h, q, 0);
                    if (!(isinf(want) && want < 0))
                        continue;
                    double got = tt_get(&r.lse, b, h, q, 0);
                    cr_expect(isinf(got) && got < 0, "%s: row [%ld,%ld,%ld] lse %g, want -inf",
                              label, (long)b, (long)h, (long)q, got);
                    for (int64_t d = 0; d < c->Dv; d++)
                        cr_expect(tt_get(&r.out, b, h, q, d) == 0.0,
                                  "%s: empty row [%ld,%ld,%ld] out[%ld] = %g", label, (long)b,
                                  (long)h, (long)q, (long)d, tt_get(&r.out, b, h, q, d));
                }
        total_empty += empty_rows(&r);
        fwd_free(&r);
    }
    cr_log_info("rows_without_visible_keys: %ld empty rows checked", (long)total_empty);
    cr_assert_gt(total_empty, 100, "the cases should contain rows without keys");
    sweep_report(&s, "rows_without_visible_keys");
}

/* Rows of out whose elements are all NaN, and rows with any NaN. */
static void count_nan_rows(const fwd_run *r, const fwd_case *c, int64_t *all, int64_t *any)
{
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
    fwd_case cases[3];
    cases[0] = mk(2, 4, 2, 17, 33, 64, 64);
    cases[1] = mk(1, 2, 1, 40, 40, 16, 24);
    cases[1].causal = 1;
    cases[2] = mk(1, 8, 1, 1, 257, 128, 128);
    sweep s;
    sweep_init(&s);
    for (size_t i = 0; i < 3; i++) {
        const fwd_case *c = &cases[i];
        fwd_run r;
        char label[400];
        describe(c, label, sizeof label);
        fwd_build(&r, c);
        int64_t b = c->B - 1, h = c->Hq / 2, q = c->Sq / 2;
        tt_set(&r.q, b, h, q, c->D / 2, NAN);
        fwd_upload(&r);
        TEST_CHECK_STATUS(fwd_call(&r, c, 1, 0, NULL, NULL), label);
        fwd_check(&r, c, 1, &s);
        int64_t all, any;
        count_nan_rows(&r, c, &all, &any);
        cr_expect(all == 1 && any == 1, "%s: %ld rows all NaN, %ld rows with NaN; want 1, 1",
                  label, (long)all, (long)any);
        for (int64_t d = 0; d < c->Dv; d++)
            cr_expect(isnan(tt_get(&r.out, b, h, q, d)), "%s: out[%ld] of the NaN row = %g",
                      label, (long)d, tt_get(&r.out, b, h, q, d));
        cr_expect(isnan(tt_get(&r.lse, b, h, q, 0)), "%s: lse of the NaN row = %g", label,
                  tt_get(&r.lse, b, h, q, 0));
        fwd_free(&r);
    }
    sweep_report(&s, "nan_in_a_query_row_stays_in_that_row");
}

/* Put NaN, +Inf, -Inf (in turn) into every element of key/value row j of every head. */
static void poison_key(fwd_run *r, const fwd_case *c, int64_t j)
{
    const double bad[3] = {NAN, INFINITY, -INFINITY};
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->Hkv; h++) {
            for (int64_t d = 0; d < c->D; d++)
                tt_set(&r->k, b, h, j, d, bad[(j + d) % 3]);
            for (int64_t d = 0; d < c->Dv; d++)
                tt_set(&r->v, b, h, j, d, bad[(j + d + 1) % 3]);
        }
}

/* Invisible keys hold NaN/Inf (in k and v) for algorithm `algo`: no row may change. */
static void invisible_keys_change_nothing(clattn_algo algo, sweep *s)
{
    char label[400];
    fwd_run r;

    /* 1. TOP_LEFT causal, Sq < Sk: keys j >= Sq are invisible to every row. */
    fwd_case c1 = mk(2, 2, 1, 20, 50, 64, 64);
    c1.causal = 1;
    c1.align = CLATTN_ALIGN_TOP_LEFT;
    c1.algo = algo;
    fwd_build(&r, &c1);
    for (int64_t j = c1.Sq; j < c1.Sk; j++)
        poison_key(&r, &c1, j);
    fwd_upload(&r);
    TEST_CHECK_STATUS(fwd_call(&r, &c1, 1, 0, NULL, NULL), describe(&c1, label, sizeof label));
    fwd_check(&r, &c1, 1, s);
    int64_t all, any;
    count_nan_rows(&r, &c1, &all, &any);
    cr_expect_eq(any, 0, "%s: %ld rows with NaN from invisible keys", label, (long)any);
    fwd_free(&r);

    /* 2. Window keeps keys 0..26 away from every row (BR, off = 30, window [i+27, i+30]). */
    fwd_case c2 = mk(1, 4, 2, 10, 40, 32, 16);
    c2.window_left = 3;
    c2.window_right = 0;
    c2.algo = algo;
    fwd_build(&r, &c2);
    for (int64_t j = 0; j < 27; j++)
        poison_key(&r, &c2, j);
    fwd_upload(&r);
    TEST_CHECK_STATUS(fwd_call(&r, &c2, 1, 0, NULL, NULL), describe(&c2, label, sizeof label));
    fwd_check(&r, &c2, 1, s);
    count_nan_rows(&r, &c2, &all, &any);
    cr_expect_eq(any, 0, "%s: %ld rows with NaN from invisible keys", label, (long)any);
    fwd_free(&r);

    /* 3. Causal BR, Sq == Sk: the last two keys are poisoned, so exactly the rows that see
       them (the last two) are NaN and every earlier row is unchanged. */
    fwd_case c3 = mk(1, 2, 2, 40, 40, 16, 16);
    c3.causal = 1;
    c3.algo = algo;
    fwd_build(&r, &c3);
    poison_key(&r, &c3, 38);
    poison_key(&r, &c3, 39);
    fwd_upload(&r);
    TEST_CHECK_STATUS(fwd_call(&r, &c3, 1, 0, NULL, NULL), describe(&c3, label, sizeof label));
    fwd_check(&r, &c3, 1, s);
    count_nan_rows(&r, &c3, &all, &any);
    cr_expect(any == 2 * c3.Hq && all == 2 * c3.Hq, "%s: NaN rows %ld (all-NaN %ld), want %ld",
              label, (long)any, (long)all, (long)(2 * c3.Hq));
    fwd_free(&r);

    /* 4. Keys beyond Sk in the buffer: 13 extra key rows per head hold +Inf (k) and NaN (v). */
    fwd_case c4 = mk(2, 2, 1, 33, 29, 64, 48);
    test_layout extra_k = {"bhsd+13rows", {0, 1, 2, 3}, {0, 0, 13 * 64, 0}, 0, 0};
    test_layout extra_v = {"bhsd+13rows", {0, 1, 2, 3}, {0, 0, 13 * 48, 0}, 0, 0};
    c4.lk = &extra_k;
    c4.lv = &extra_v;
    c4.algo = algo;
    fwd_build(&r, &c4);   /* fills the extra rows: k with +Inf, v with NaN */
    fwd_upload(&r);
    TEST_CHECK_STATUS(fwd_call(&r, &c4, 1, 0, NULL, NULL), describe(&c4, label, sizeof label));
    fwd_check(&r, &c4, 1, s);
    count_nan_rows(&r, &c4, &all, &any);
    cr_expect_eq(any, 0, "%s: %ld rows with NaN from keys beyond Sk", label, (long)any);
    fwd_free(&r);

    /* 5. As 4, causal, with a short Sk that is not a multiple of any tile. */
    fwd_case c5 = mk(1, 2, 1, 5, 3, 64, 48);
    c5.lk = &extra_k;
    c5.lv = &extra_v;
    c5.causal = 1;
    c5.align = CLATTN_ALIGN_TOP_LEFT;
    c5.algo = algo;
    fwd_build(&r, &c5);
    fwd_upload(&r);
    TEST_CHECK_STATUS(fwd_call(&r, &c5, 1, 0, NULL, NULL), describe(&c5, label, sizeof label));
    fwd_check(&r, &c5, 1, s);
    count_nan_rows(&r, &c5, &all, &any);
    cr_expect_eq(any, 0, "%s: %ld rows with NaN from keys beyond Sk", label, (long)any);
    fwd_free(&r);

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
       (checked in fwd_check for every case; here with odd sizes at tile edges). */
    const test_layout *L[] = {&LAYOUT_BHSD_PADDED, &LAYOUT_SBHD_PADDED, &LAYOUT_BSHD_PADDED};
    const int64_t shapes[][4] = {{37, 41, 24, 13}, {1, 300, 64, 3}, {129, 17, 80, 80},
                                 {65, 65, 16, 1}};
    fwd_case cases[12];
    size_t n = 0;
    for (size_t i = 0; i < 4; i++)
        for (size_t l = 0; l < 3; l++) {
            if ((i + l) % 2)
                continue;
            cases[n] = mk(2, 2, 1, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);
            cases[n].lo = L[l];
            cases[n].ll = L[(l + 1) % 3];
            cases[n].causal = (int)(l == 1);
            n++;
        }
    sweep s;
    sweep_init(&s);
    for (size_t i = 0; i < n; i++) {
        fwd_run r;
        char label[400];
        describe(&cases[i], label, sizeof label);
        fwd_build(&r, &cases[i]);
        fwd_upload(&r);
        TEST_CHECK_STATUS(fwd_call(&r, &cases[i], 1, 0, NULL, NULL), label);
        fwd_check(&r, &cases[i], 1, &s);
        size_t first_out, first_lse;
        size_t bad_out = tt_outside_damage(&r.out, &first_out);
        size_t bad_lse = tt_outside_damage(&r.lse, &first_lse);
        cr_assert(bad_out == 0 && bad_lse == 0,
                  "%s: bytes changed outside the views: out %zu (first %zu of %zu, offset %zu), "
                  "lse %zu (first %zu)", label, bad_out, first_out, r.out.bytes,
                  r.out.view.offset, bad_lse, first_lse);
        fwd_free(&r);
    }
    sweep_report(&s, "bytes_around_output_views_keep_their_canary");
}

/* ---- events ------------------------------------------------------------------------------ */

Test(forward, event_completes_and_wait_lists_order_the_work)
{
    sweep s;
    sweep_init(&s);
    char label[400];

    /* 1. A wait list of two non-blocking writes that fill q and k. */
    fwd_case c1 = mk(2, 2, 1, 31, 47, 64, 32);
    fwd_run r;
    fwd_build(&r, &c1);
    fwd_upload(&r);
    /* the device copies of q and k start as zeros; the real data arrives by the writes */
    unsigned char *zeros = calloc(r.q.bytes > r.k.bytes ? r.q.bytes : r.k.bytes, 1);
    cr_assert_not_null(zeros);
    buf_write(r.q.view.buffer, r.q.bytes, zeros);
    buf_write(r.k.view.buffer, r.k.bytes, zeros);
    free(zeros);
    cl_event writes[2];
    cr_assert_eq(clEnqueueWriteBuffer(test_queue(), r.q.view.buffer, CL_FALSE, 0, r.q.bytes,
                                      r.qsnap, 0, NULL, &writes[0]), CL_SUCCESS);
    cr_assert_eq(clEnqueueWriteBuffer(test_queue(), r.k.view.buffer, CL_FALSE, 0, r.k.bytes,
                                      r.ksnap, 0, NULL, &writes[1]), CL_SUCCESS);
    cl_event ev = NULL;
    TEST_CHECK_STATUS(fwd_call(&r, &c1, 1, 2, writes, &ev), describe(&c1, label, sizeof label));
    wait_event(ev);
    clReleaseEvent(writes[0]);
    clReleaseEvent(writes[1]);
    fwd_check(&r, &c1, 1, &s);

    /* 2. A chain: the out of call 1 is the v of call 2, which waits on call 1's event. */
    fwd_case c2 = mk(2, 2, 2, 9, 31, 16, 32);   /* v [2,2,31,32]: the shape of call 1's out */
    fwd_run r2;
    fwd_build(&r2, &c2);
    fwd_upload(&r2);
    cr_assert_eq(r2.v.bytes, r.out.bytes);
    cr_assert(memcmp(r2.v.view.strides, r.out.view.strides, sizeof r.out.view.strides) == 0);
    clReleaseMemObject(r2.v.view.buffer);
    r2.v.view.buffer = r.out.view.buffer;
    clRetainMemObject(r2.v.view.buffer);
    buf_fill_canary(r.out.view.buffer);   /* a call 2 that did not wait would read this */
    cl_event ev1 = NULL, ev2 = NULL;
    TEST_CHECK_STATUS(fwd_call(&r, &c1, 1, 0, NULL, &ev1), "chain call 1");
    TEST_CHECK_STATUS(fwd_call(&r2, &c2, 1, 1, &ev1, &ev2), "chain call 2");
    wait_event(ev2);
    wait_event(ev1);
    fwd_check(&r, &c1, 1, &s);
    /* the reference of call 2 reads the f32 values that call 1 produced */
    memcpy(r2.v.host, r.out.host, r.out.bytes);
    memcpy(r2.vsnap, r.out.host, r.out.bytes);
    fwd_check(&r2, &c2, 1, &s);
    fwd_free(&r2);
    fwd_free(&r);
    sweep_report(&s, "event_completes_and_wait_lists_order_the_work");
}

Test(forward, waits_for_a_user_event, .timeout = 120)
{
    /* The call must not run (nor block the caller) before its wait list completes. */
    const char *deadlock = test_gated_command_deadlocks();   /* before the first OpenCL call */
    if (deadlock)
        cr_skip_test("setting the user event would hang this test: %s", deadlock);
    fwd_case c = mk(1, 2, 1, 33, 65, 64, 64);
    char label[400];
    describe(&c, label, sizeof label);
    fwd_run r;
    fwd_build(&r, &c);
    fwd_upload(&r);
    /* build the kernel first, so that only the wait list holds the second call */
    TEST_CHECK_STATUS(fwd_call(&r, &c, 1, 0, NULL, NULL), label);
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    buf_fill_canary(r.out.view.buffer);
    buf_fill_canary(r.lse.view.buffer);

    cl_event gate = test_user_event();
    cl_event ev = NULL;
    TEST_CHECK_STATUS(fwd_call(&r, &c, 1, 1, &gate, &ev), label);
    test_expect_held_by(gate, ev, "the call");
    wait_event(ev);
    clReleaseEvent(gate);
    sweep s;
    sweep_init(&s);
    fwd_check(&r, &c, 1, &s);
    fwd_free(&r);
    sweep_report(&s, "waits_for_a_user_event");
}

/* ---- the backward after the forward; UNFUSED refused ------------------------------------- */

Test(forward, backward_after_forward_writes_the_gradients)
{
    /* The backward with the forward's out and lse: AUTO and FUSED succeed, complete their
       event, clear the last error and write gradients that match the reference (the full
       feature sweep is test_backward.c); UNFUSED has no backward in this version:
       CLATTN_ERROR_UNSUPPORTED, a message, no event, nothing written. Either way the context
       keeps working. */
    fwd_case c = mk(2, 2, 1, 9, 13, 16, 16);
    fwd_run r;
    fwd_build(&r, &c);
    fwd_upload(&r);
    int64_t qd[4] = {c.B, c.Hq, c.Sq, c.D}, kd[4] = {c.B, c.Hkv, c.Sk, c.D};
    int64_t vd[4] = {c.B, c.Hkv, c.Sk, c.Dv};

    /* backward with valid arguments (lse from a forward call) */
    TEST_CHECK_STATUS(fwd_call(&r, &c, 1, 0, NULL, NULL), "forward before backward");
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    int64_t od[4] = {c.B, c.Hq, c.Sq, c.Dv};
    test_tensor dout, dq, dk, dv;
    test_rng rng;
    rng_seed(&rng, 77);
    tt_init(&dout, CLATTN_F32, od, &LAYOUT_BHSD);
    tt_fill_random(&dout, &rng, -1.0, 1.0);
    tt_init(&dq, CLATTN_F32, qd, &LAYOUT_BHSD_PADDED);
    tt_init(&dk, CLATTN_F32, kd, &LAYOUT_BHSD_PADDED);
    tt_init(&dv, CLATTN_F32, vd, &LAYOUT_BHSD_PADDED);
    tt_upload(&dout, CL_MEM_READ_ONLY);
    tt_upload(&dq, CL_MEM_READ_WRITE);
    tt_upload(&dk, CL_MEM_READ_WRITE);
    tt_upload(&dv, CL_MEM_READ_WRITE);
    ref_params p;
    params_of(&c, &p);
    test_grads want;
    test_reference_backward_of(p, &r.q, &r.k, &r.v, &dout, NULL, &want);
    const clattn_algo bwd_algos[] = {CLATTN_ALGO_AUTO, CLATTN_ALGO_FUSED, CLATTN_ALGO_UNFUSED};
    for (size_t i = 0; i < sizeof bwd_algos / sizeof bwd_algos[0]; i++) {
        clattn_attention_desc d;
        desc_of(&c, &d);
        d.algo = bwd_algos[i];
        buf_fill_canary(dq.view.buffer);
        buf_fill_canary(dk.view.buffer);
        buf_fill_canary(dv.view.buffer);
        cl_event ev = (cl_event)&ev;
        clattn_status st = clattn_attention_backward(test_ctx(), &d, &r.q.view, &r.k.view,
                                                     &r.v.view, &r.out.view, &dout.view,
                                                     &r.lse.view, &dq.view, &dk.view, &dv.view,
                                                     0, NULL, &ev);
        cr_log_info("backward (algo %d): %s: %s", (int)bwd_algos[i], clattn_status_string(st),
                    clattn_last_error());
        size_t first;
        if (bwd_algos[i] == CLATTN_ALGO_UNFUSED) {
            cr_expect_eq(st, CLATTN_ERROR_UNSUPPORTED, "backward (UNFUSED): got %s (%s)",
                         clattn_status_string(st), clattn_last_error());
            cr_expect_str_not_empty(clattn_last_error(), "backward (UNFUSED): no message");
            cr_expect_null(ev, "backward (UNFUSED): *event not cleared on failure");
            if (st == CLATTN_SUCCESS && ev)
                wait_event(ev);
            cr_expect(buf_canary_intact(dq.view.buffer, &first),
                      "backward (UNFUSED): dq written (%zu)", first);
            cr_expect(buf_canary_intact(dk.view.buffer, &first),
                      "backward (UNFUSED): dk written (%zu)", first);
            cr_expect(buf_canary_intact(dv.view.buffer, &first),
                      "backward (UNFUSED): dv written (%zu)", first);
            continue;
        }
        cr_assert_eq(st, CLATTN_SUCCESS, "backward (algo %d): %s (%s)", (int)bwd_algos[i],
                     clattn_status_string(st), clattn_last_error());
        cr_expect_str_empty(clattn_last_error(), "backward: last error after success: %s",
                            clattn_last_error());
        wait_event(ev);
        tt_download(&dq);
        tt_download(&dk);
        tt_download(&dv);
        const test_tensor *got[3] = {&dq, &dk, &dv};
        const ref_tensor *ref[3] = {&want.dq, &want.dk, &want.dv};
        const char *names[3] = {"dq", "dk", "dv"};
        for (int g = 0; g < 3; g++) {
            char buf[200];
            cmp_result cg = compare_grad(got[g], ref[g], NULL);
            cr_expect(cg.worst <= TOL_F32_GRAD && cg.hard == 0, "backward (algo %d): %s %s",
                      (int)bwd_algos[i], names[g], cmp_describe(&cg, buf, sizeof buf));
            size_t bad = tt_outside_damage(got[g], &first);
            cr_expect_eq(bad, 0, "backward (algo %d): %zu bytes around %s changed (first %zu)",
                         (int)bwd_algos[i], bad, names[g], first);
        }
    }
    test_grads_free(&want);
    tt_free(&dout);
    tt_free(&dq);
    tt_free(&dk);
    tt_free(&dv);

    /* the context still works */
    sweep s;
    sweep_init(&s);
    buf_fill_canary(r.out.view.buffer);
    buf_fill_canary(r.lse.view.buffer);
    TEST_CHECK_STATUS(fwd_call(&r, &c, 1, 0, NULL, NULL), "forward after the backward calls");
    cr_assert_str_empty(clattn_last_error());
    fwd_check(&r, &c, 1, &s);
    sweep_report(&s, "forward after the backward calls");
    fwd_free(&r);
}
