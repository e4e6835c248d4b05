/* Long context: S = 32768 causal self-attention through AUTO, f16 q/k/v (MQA: Hq = 2,
   Hkv = 1, D = Dv = 64). It must run in O(S) memory: no S x S buffer, a workspace far below
   one. The full f64 reference would be O(S^2 D) per head, so only spot-check rows are
   compared, each against the reference of that row alone: row i of a causal Sq == Sk call sees
   keys 0..i, so its reference is the non-causal attention of q row i over k, v rows [0, i].
   Run without and with lse: out must be bit-identical, lse right at the spot rows. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

enum { LC_S = 32768, LC_HQ = 2, LC_HKV = 1, LC_D = 64, LC_DV = 64 };

static const int64_t spot_rows[] = {0, 1, 2, 63, 64, 4095, 4096, 16384, 20001, 32766, 32767};
#define N_SPOT (sizeof spot_rows / sizeof spot_rows[0])

TestSuite(long_context, .fini = test_ctx_release);

static double now_s(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The reference of query row i of head h (batch 0) of a causal Sq == Sk call: q row i over
   keys [0, i] (off = 0 for either align when Sq == Sk). rq, rk, rv view the whole tensors. */
static void reference_row(const ref_tensor *rq, const ref_tensor *rk, const ref_tensor *rv,
                          int64_t h, int64_t i, double *out_row, double *lse)
{
    int64_t kvh = h / (rq->dims[1] / rk->dims[1]);
    ref_tensor q1 = *rq, k1 = *rk, v1 = *rv;
    q1.data = ref_at(rq, 0, h, i, 0);
    q1.dims[0] = q1.dims[1] = q1.dims[2] = 1;
    k1.data = ref_at(rk, 0, kvh, 0, 0);
    k1.dims[0] = k1.dims[1] = 1;
    k1.dims[2] = i + 1;
    v1.data = ref_at(rv, 0, kvh, 0, 0);
    v1.dims[0] = v1.dims[1] = 1;
    v1.dims[2] = i + 1;
    ref_tensor o = ref_tensor_dense(out_row, 1, 1, 1, rv->dims[3]);
    ref_tensor l = ref_tensor_dense(lse, 1, 1, 1, 1);
    ref_params p;
    ref_params_init(&p);
    cr_assert_eq(ref_attention_forward(&p, &q1, &k1, &v1, &o, &l), 0);
}

/* The compare_out / compare_lse metrics for one row. */
static double row_error(const test_tensor *out, int64_t h, int64_t i, const double *want,
                        int64_t dv)
{
    double scale = TOL_ROW_FLOOR, err = 0.0;
    for (int64_t d = 0; d < dv; d++)
        scale = fmax(scale, fabs(want[d]));
    for (int64_t d = 0; d < dv; d++) {
        double got = tt_get(out, 0, h, i, d);
        if (!isfinite(got))
            return INFINITY;
        err = fmax(err, fabs(got - want[d]) / scale);
    }
    return err;
}

Test(long_context, causal_32k_auto_f16_spot_rows, .timeout = 300)
{
    const int64_t qd[4] = {1, LC_HQ, LC_S, LC_D}, kd[4] = {1, LC_HKV, LC_S, LC_D};
    const int64_t vd[4] = {1, LC_HKV, LC_S, LC_DV}, od[4] = {1, LC_HQ, LC_S, LC_DV};
    const int64_t ld[4] = {1, LC_HQ, LC_S, 1};
    test_tensor q, k, v, out, out_nolse, lse;
    test_ctx();
    tt_init(&q, CLATTN_F16, qd, &LAYOUT_BHSD);
    tt_init(&k, CLATTN_F16, kd, &LAYOUT_BHSD);
    tt_init(&v, CLATTN_F16, vd, &LAYOUT_BHSD);
    tt_init(&out, CLATTN_F32, od, &LAYOUT_BHSD);
    tt_init(&out_nolse, CLATTN_F32, od, &LAYOUT_BHSD);
    tt_init(&lse, CLATTN_F32, ld, &LAYOUT_BHSD);
    test_rng rng;
    rng_seed(&rng, 32768);
    tt_fill_random(&q, &rng, -1.0, 1.0);
    tt_fill_random(&k, &rng, -1.0, 1.0);
    tt_fill_random(&v, &rng, -0.5, 1.5);
    tt_upload(&q, CL_MEM_READ_ONLY);
    tt_upload(&k, CL_MEM_READ_ONLY);
    tt_upload(&v, CL_MEM_READ_ONLY);
    tt_upload(&out, CL_MEM_READ_WRITE);
    tt_upload(&out_nolse, CL_MEM_READ_WRITE);
    tt_upload(&lse, CL_MEM_READ_WRITE);

    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.causal = 1;
    char plan[256] = "";
    clattn_status st = clattn_attention_plan(test_ctx(), &desc, &q.view, &k.view, &v.view,
                                             plan, sizeof plan);
    TEST_CHECK_STATUS(st, "plan");
    size_t ws = 0;
    st = clattn_attention_workspace_size(test_ctx(), &desc, &q.view, &k.view, &v.view, &ws);
    TEST_CHECK_STATUS(st, "workspace_size");
    cr_log_info("S=%d causal AUTO f16: plan \"%s\", workspace %zu bytes", LC_S, plan, ws);
    /* O(S) memory: far below one S x S f32 score matrix (4 GiB) */
    const size_t ss_f32 = (size_t)LC_S * LC_S * sizeof(float);
    cr_assert_lt(ws, ss_f32 / 16, "workspace %zu bytes for S=%d: an S x S buffer is %zu", ws,
                 LC_S, ss_f32);

    double t0 = now_s();
    st = clattn_attention_forward(test_ctx(), &desc, &q.view, &k.view, &v.view,
                                  &out_nolse.view, NULL, 0, NULL, NULL);
    TEST_CHECK_STATUS(st, "forward S=32768 causal, lse NULL");
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    double t1 = now_s();
    cl_event ev = NULL;
    st = clattn_attention_forward(test_ctx(), &desc, &q.view, &k.view, &v.view, &out.view,
                                  &lse.view, 0, NULL, &ev);
    TEST_CHECK_STATUS(st, "forward S=32768 causal, with lse");
    cr_assert_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
    double t2 = now_s();
    double gflop = 2.0 * (double)LC_HQ * ((double)LC_S * (LC_S + 1) / 2) * (LC_D + LC_DV) * 1e-9;
    cr_log_info("lse NULL: %.2f s (%.0f GFLOP/s incl. any build); with lse: %.2f s "
                "(%.0f GFLOP/s)", t1 - t0, gflop / (t1 - t0), t2 - t1, gflop / (t2 - t1));

    tt_download(&out);
    tt_download(&out_nolse);
    tt_download(&lse);
    cr_expect(memcmp(out.host, out_nolse.host, out.bytes) == 0,
              "out with lse == NULL is not bit-identical to out with lse");

    double *qs, *ks, *vs;
    ref_tensor rq = tt_to_ref(&q, &qs), rk = tt_to_ref(&k, &ks), rv = tt_to_ref(&v, &vs);
    double want[LC_DV], want_lse, worst_out = 0.0, worst_lse = 0.0;
    int64_t worst_out_at[2] = {0, 0}, worst_lse_at[2] = {0, 0};
    for (int64_t h = 0; h < LC_HQ; h++)
        for (size_t s = 0; s < N_SPOT; s++) {
            int64_t i = spot_rows[s];
            reference_row(&rq, &rk, &rv, h, i, want, &want_lse);
            double e = row_error(&out, h, i, want, LC_DV);
            double got_lse = tt_get(&lse, 0, h, i, 0);
            double el = isfinite(got_lse) ? fabs(got_lse - want_lse) / fmax(1.0, fabs(want_lse))
                                          : INFINITY;
            cr_expect(e <= TOL_F32_OUT, "head %ld row %ld: out error %g", (long)h, (long)i, e);
            cr_expect(el <= TOL_F32_LSE, "head %ld row %ld: lse %.9g, want %.9g", (long)h,
                      (long)i, got_lse, want_lse);
            if (e > worst_out) {
                worst_out = e;
                worst_out_at[0] = h;
                worst_out_at[1] = i;
            }
            if (el > worst_lse) {
                worst_lse = el;
                worst_lse_at[0] = h;
                worst_lse_at[1] = i;
            }
        }
    cr_log_info("%zu spot rows x %d heads: out worst %.3g (head %ld row %ld), lse worst %.3g "
                "(head %ld row %ld)", N_SPOT, LC_HQ, worst_out, (long)worst_out_at[0],
                (long)worst_out_at[1], worst_lse, (long)worst_lse_at[0], (long)worst_lse_at[1]);
    cr_assert(worst_out <= TOL_F32_OUT, "out worst %g > %g", worst_out, TOL_F32_OUT);
    cr_assert(worst_lse <= TOL_F32_LSE, "lse worst %g > %g", worst_lse, TOL_F32_LSE);

    free(qs);
    free(ks);
    free(vs);
    test_tensor *all[] = {&q, &k, &v, &out, &out_nolse, &lse};
    for (int i = 0; i < 6; i++)
        tt_free(all[i]);
}
