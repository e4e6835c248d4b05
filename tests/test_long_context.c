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

/* ---- the error of out and lse does not grow with the number of keys ---------------------- */

/* Sq = 1 over sk keys (B = H = 1) on algo, with K and V as given; writes out and lse. */
static void one_row(clattn_algo algo, const clattn_tensor *q, const clattn_tensor *k,
                    const clattn_tensor *v, int64_t dv, float *out, float *lse)
{
    cl_mem bo = buf_new(CL_MEM_READ_WRITE, (size_t)dv * sizeof(float), NULL);
    cl_mem bl = buf_new(CL_MEM_READ_WRITE, sizeof(float), NULL);
    clattn_tensor to = clattn_tensor_bhsd(bo, CLATTN_F32, 1, 1, 1, dv);
    clattn_tensor tl = clattn_tensor_bhsd(bl, CLATTN_F32, 1, 1, 1, 1);
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.algo = algo;
    TEST_CHECK_STATUS(clattn_attention_forward(test_ctx(), &desc, q, k, v, &to, &tl, 0, NULL,
                                               NULL), "forward");
    buf_read(bo, (size_t)dv * sizeof(float), out);
    buf_read(bl, sizeof(float), lse);
    clReleaseMemObject(bo);
    clReleaseMemObject(bl);
}

static const clattn_algo long_algos[] = {CLATTN_ALGO_FUSED, CLATTN_ALGO_SPLIT_KV,
                                         CLATTN_ALGO_AUTO};
static const char *const long_algo_names[] = {"FUSED", "SPLIT_KV", "AUTO"};

/* D = 1, q = 1, k = 2 and v = 3.5 for every key (K and V broadcast through stride 0): out must
   be 3.5 and lse 2 + ln(Sk). Out was 3.714 at 2^22 keys and 2.0 at 2^25 when the output was
   summed a key at a time in f32: an ulp of the sum outgrew each key's share. */
Test(long_context, equal_keys_give_the_exact_answer_at_2_20_and_2_24_keys, .timeout = 600)
{
    const float one = 1.0f, two = 2.0f, value = 3.5f;
    cl_mem bq = buf_new(CL_MEM_READ_ONLY, 4, &one), bk = buf_new(CL_MEM_READ_ONLY, 4, &two);
    cl_mem bv = buf_new(CL_MEM_READ_ONLY, 4, &value);
    for (int log2_keys = 20; log2_keys <= 24; log2_keys += 4) {
        const int64_t sk = (int64_t)1 << log2_keys;
        clattn_tensor q = clattn_tensor_bhsd(bq, CLATTN_F32, 1, 1, 1, 1);
        clattn_tensor k = clattn_tensor_bhsd(bk, CLATTN_F32, 1, 1, sk, 1);
        clattn_tensor v = clattn_tensor_bhsd(bv, CLATTN_F32, 1, 1, sk, 1);
        k.strides[0] = k.strides[1] = k.strides[2] = 0;
        v.strides[0] = v.strides[1] = v.strides[2] = 0;
        for (size_t a = 0; a < sizeof long_algos / sizeof long_algos[0]; a++) {
            float out, lse;
            one_row(long_algos[a], &q, &k, &v, 1, &out, &lse);
            const double want_lse = 2.0 + log((double)sk);
            cr_log_info("2^%d equal keys, %s: out %.9g (want 3.5), lse %.9g (want %.9g)",
                        log2_keys, long_algo_names[a], out, lse, want_lse);
            cr_expect(fabs(out - 3.5) <= TOL_F32_OUT * 3.5, "2^%d keys, %s: out %.9g, want 3.5",
                      log2_keys, long_algo_names[a], out);
            cr_expect(fabs(lse - want_lse) <= TOL_F32_LSE * want_lse,
                      "2^%d keys, %s: lse %.9g, want %.9g", log2_keys, long_algo_names[a], lse,
                      want_lse);
        }
    }
    clReleaseMemObject(bq);
    clReleaseMemObject(bk);
    clReleaseMemObject(bv);
}

/* Random f16 q, k, v (D = Dv = 8) over 2^20 and 2^24 keys against the f64 sum: the same
   tolerance at both lengths (the relative error was 7.6e-5 at 2^20 keys and 8.7e-4 at 2^22). */
Test(long_context, random_keys_keep_the_error_bound_at_2_20_and_2_24_keys, .timeout = 900)
{
    enum { DIM = 8 };
    const int64_t max_keys = (int64_t)1 << 24;
    const size_t kv_bytes = (size_t)max_keys * DIM * sizeof(uint16_t);
    uint16_t *kh = malloc(kv_bytes), *vh = malloc(kv_bytes), qh[DIM];
    cr_assert(kh && vh, "no host memory for K and V");
    test_rng rng;
    rng_seed(&rng, 2024);
    for (int d = 0; d < DIM; d++)
        qh[d] = f32_to_f16_bits((float)rng_uniform(&rng, -1.0, 1.0));
    for (size_t i = 0; i < (size_t)max_keys * DIM; i++) {
        kh[i] = f32_to_f16_bits((float)rng_uniform(&rng, -2.0, 2.0));
        vh[i] = f32_to_f16_bits((float)rng_uniform(&rng, -1.0, 1.0));
    }
    cl_mem bq = buf_new(CL_MEM_READ_ONLY, sizeof qh, qh);
    cl_mem bk = buf_new(CL_MEM_READ_ONLY, kv_bytes, kh);
    cl_mem bv = buf_new(CL_MEM_READ_ONLY, kv_bytes, vh);
    for (int log2_keys = 20; log2_keys <= 24; log2_keys += 4) {
        const int64_t sk = (int64_t)1 << log2_keys;
        /* the f64 answer: softmax over the keys' scores (scale 1/sqrt(8)), then sum of p v */
        double m = -INFINITY, sum = 0.0, want[DIM] = {0};
        for (int64_t j = 0; j < sk; j++) {
            double s = 0.0;
            for (int d = 0; d < DIM; d++)
                s += (double)f16_bits_to_f32(qh[d]) * f16_bits_to_f32(kh[j * DIM + d]);
            m = fmax(m, s / sqrt((double)DIM));
        }
        for (int64_t j = 0; j < sk; j++) {
            double s = 0.0;
            for (int d = 0; d < DIM; d++)
                s += (double)f16_bits_to_f32(qh[d]) * f16_bits_to_f32(kh[j * DIM + d]);
            const double p = exp(s / sqrt((double)DIM) - m);
            sum += p;
            for (int d = 0; d < DIM; d++)
                want[d] += p * f16_bits_to_f32(vh[j * DIM + d]);
        }
        double top = TOL_ROW_FLOOR;
        for (int d = 0; d < DIM; d++)
            top = fmax(top, fabs(want[d] /= sum));
        const double want_lse = m + log(sum);
        clattn_tensor q = clattn_tensor_bhsd(bq, CLATTN_F16, 1, 1, 1, DIM);
        clattn_tensor k = clattn_tensor_bhsd(bk, CLATTN_F16, 1, 1, sk, DIM);
        clattn_tensor v = clattn_tensor_bhsd(bv, CLATTN_F16, 1, 1, sk, DIM);
        for (size_t a = 0; a < sizeof long_algos / sizeof long_algos[0]; a++) {
            float out[DIM], lse;
            one_row(long_algos[a], &q, &k, &v, DIM, out, &lse);
            double err = 0.0;
            for (int d = 0; d < DIM; d++)
                err = fmax(err, fabs(out[d] - want[d]) / top);
            const double lse_err = fabs(lse - want_lse) / fmax(1.0, fabs(want_lse));
            cr_log_info("2^%d random keys, %s: out error %.3g, lse error %.3g", log2_keys,
                        long_algo_names[a], err, lse_err);
            cr_expect(err <= TOL_F32_OUT, "2^%d keys, %s: out error %g", log2_keys,
                      long_algo_names[a], err);
            cr_expect(lse_err <= TOL_F32_LSE, "2^%d keys, %s: lse error %g", log2_keys,
                      long_algo_names[a], lse_err);
        }
    }
    clReleaseMemObject(bq);
    clReleaseMemObject(bk);
    clReleaseMemObject(bv);
    free(kh);
    free(vh);
}

/* The unfused path at 2^31 - 1 keys needs 8 GiB of scores for one query row, more than the
   device allocates: plan and forward both return UNSUPPORTED and say why (the forward returned
   CLATTN_ERROR_OPENCL, CL_INVALID_BUFFER_SIZE, after the plan had said SUCCESS). */
Test(long_context, unfused_scratch_over_the_device_limit_is_unsupported)
{
    const float zero = 0.0f;
    cl_mem b = buf_new(CL_MEM_READ_WRITE, 4, &zero), bo = buf_new(CL_MEM_READ_WRITE, 4, NULL);
    const int64_t sk = INT32_MAX;
    cl_device_id device;
    cl_ulong max_alloc = 0;
    cr_assert_eq(clGetCommandQueueInfo(test_queue(), CL_QUEUE_DEVICE, sizeof device, &device,
                                       NULL), CL_SUCCESS);
    clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
    if ((cl_ulong)sk * sizeof(float) + 1024 < max_alloc)
        cr_skip_test("this device allocates %llu bytes at once: the unfused scores of 2^31 - 1 "
                     "keys fit", (unsigned long long)max_alloc);
    clattn_tensor q = clattn_tensor_bhsd(b, CLATTN_F32, 1, 1, 1, 1);
    clattn_tensor k = clattn_tensor_bhsd(b, CLATTN_F32, 1, 1, sk, 1);
    clattn_tensor v = k, out = clattn_tensor_bhsd(bo, CLATTN_F32, 1, 1, 1, 1);
    k.strides[0] = k.strides[1] = k.strides[2] = 0;
    v.strides[0] = v.strides[1] = v.strides[2] = 0;
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.algo = CLATTN_ALGO_UNFUSED;
    char plan[512];
    clattn_status st = clattn_attention_plan(test_ctx(), &desc, &q, &k, &v, plan, sizeof plan);
    cr_expect_eq(st, CLATTN_ERROR_UNSUPPORTED, "plan: %s: %s", clattn_status_string(st), plan);
    cr_expect(strstr(plan, "scratch") && strstr(plan, "allocates at most"), "plan: %s", plan);
    st = clattn_attention_forward(test_ctx(), &desc, &q, &k, &v, &out, NULL, 0, NULL, NULL);
    cr_expect_eq(st, CLATTN_ERROR_UNSUPPORTED, "forward: %s: %s", clattn_status_string(st),
                 clattn_last_error());
    clReleaseMemObject(b);
    clReleaseMemObject(bo);
}
