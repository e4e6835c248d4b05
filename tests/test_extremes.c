/* Extreme magnitudes (docs/semantics.md "Scores"): finite inputs whose true results are finite
   give finite results, the same on every algorithm, and match the f64 reference. Each case is
   a small problem (B=1, H=1, Sq=2, Sk=3, D=2) whose q, k, v, scale, softcap or bias sit near
   the ends of the float range: the scale on either side of the dot product, scores near
   FLT_MAX and near -FLT_MAX, a tiny and a huge softcap, bias at +-FLT_MAX, values of v whose
   weighted sum would overflow before the division. Before, 53 of these runs returned NaN, inf
   or an empty row with CLATTN_SUCCESS. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

enum { SQ = 2, SK = 3, D = 2 };

/* One case: q row i = q0 (1 + i/4) in element 0 and q1 in element 1; key j = k0 (1 + j/4)
   (k_step 1) or k0 (key j the same, k_step 0) and k1; v row j = v0 (1 - j/2), v1 (j - 1);
   bias (when bias_on) every score + bias, except key 1, which gets bias1. */
typedef struct extreme_case {
    const char  *name;
    clattn_dtype dtype;
    float q0, q1, k0, k1, v0, v1;
    int   k_step;
    float scale, softcap;
    int   bias_on;
    float bias, bias1;
} extreme_case;

#define F32 .dtype = CLATTN_F32
#define QK(q0_, q1_, k0_, k1_) .q0 = (q0_), .q1 = (q1_), .k0 = (k0_), .k1 = (k1_), .k_step = 1
#define V(v0_, v1_) .v0 = (v0_), .v1 = (v1_)

static const extreme_case cases[] = {
    {"scale 1e30 after a dot product of 1e-10", F32, QK(1e10f, 0, 1e-20f, 0), V(1, 1),
     .scale = 1e30f},
    {"scale 1e-30 before a dot product of 1e40", F32, QK(1e20f, 0, 1e20f, 0), V(1, 1),
     .scale = 1e-30f},
    {"softcap 1e-40 (scale / softcap is inf)", F32, QK(1, 0.5f, 1, -1), V(1, 2), .scale = 1,
     .softcap = 1e-40f},
    {"softcap 1e-40 with scores 1e30", F32, QK(1e15f, 0, 1e15f, 0), V(1, 1), .scale = 1,
     .softcap = 1e-40f},
    {"bf16 q 3.38e38 against k 1e-38", .dtype = CLATTN_BF16, QK(3.38e38f, 0, 1e-38f, 0),
     V(1, 1)},
    {"scores up to 3.2e38 (q, k near 2e19)", F32, QK(1.7e19f, 0, 1e19f, 0), V(1, -1),
     .scale = 1},
    {"scale 2.4e38", F32, QK(1, 0, 0.5f, 0), V(1, 1), .scale = 2.4e38f},
    {"bias 3e38 on key 1", F32, QK(1, 1, 1, 1), V(1, 1), .bias_on = 1, .bias1 = 3e38f},
    {"softcap 3e38", F32, QK(1, 0.5f, 1, -1), V(1, 2), .scale = 1, .softcap = 3e38f},
    {"scale -2.1e38: every score below -2.1e38", F32, QK(1, 0, 1, 0), V(1, 1),
     .scale = -2.1e38f},
    {"bias -FLT_MAX on every key", F32, QK(1, 0, 1, 0), V(1, 1), .bias_on = 1,
     .bias = -FLT_MAX, .bias1 = -FLT_MAX},
    {"v 3e38 on every key (the weighted sum is 4.5e38)", F32, QK(0, 0, 0, 0), V(3e38f, 3e38f)},
    {"v 3e38, weights spread", F32, QK(1, 0, 1, 0), V(3e38f, -3e38f), .scale = 0.01f},
    {"f16 v 65504", .dtype = CLATTN_F16, QK(1, 1, 1, 0), V(65504, 65504)},
};
#define N_CASES (sizeof cases / sizeof cases[0])

/* The algorithms every case runs on. */
static const clattn_algo algos[] = {CLATTN_ALGO_FUSED, CLATTN_ALGO_SPLIT_KV, CLATTN_ALGO_UNFUSED};
static const char *const algo_names[] = {"FUSED", "SPLIT_KV", "UNFUSED"};
#define N_ALGOS (sizeof algos / sizeof algos[0])

TestSuite(extremes, .fini = test_ctx_release);

/* Whether the test device flushes subnormal floats to zero (no CL_FP_DENORM, as OpenCL 1.2
   allows: Mesa's llvmpipe). The promise then holds for the inputs so flushed
   (docs/semantics.md "The numeric promise"), and so do these cases. */
static int device_flushes_subnormals(void)
{
    cl_device_id device;
    cl_device_fp_config config = 0;
    cr_assert_eq(clGetCommandQueueInfo(clattn_context_queue(test_ctx()), CL_QUEUE_DEVICE,
                                       sizeof device, &device, NULL), CL_SUCCESS);
    cr_assert_eq(clGetDeviceInfo(device, CL_DEVICE_SINGLE_FP_CONFIG, sizeof config, &config,
                                 NULL), CL_SUCCESS);
    return !(config & CL_FP_DENORM);
}

/* Sets element (i, j) of t to x as the device reads it. */
static void set_as_read(test_tensor *t, int64_t i, int64_t j, double x, int flush)
{
    tt_set(t, 0, 0, i, j, flush && fabs(x) < FLT_MIN ? 0.0 : x);
}

static void fill(const extreme_case *c, test_tensor *q, test_tensor *k, test_tensor *v,
                 test_tensor *bias)
{
    const int flush = device_flushes_subnormals();
    for (int64_t i = 0; i < SQ; i++) {
        set_as_read(q, i, 0, (double)c->q0 * (1.0 + (double)i / 4), flush);
        set_as_read(q, i, 1, c->q1, flush);
    }
    for (int64_t j = 0; j < SK; j++) {
        set_as_read(k, j, 0, c->k_step ? (double)c->k0 * (1.0 + (double)j / 4) : c->k0, flush);
        set_as_read(k, j, 1, c->k1, flush);
        set_as_read(v, j, 0, (double)c->v0 * (1.0 - (double)j / 2), flush);
        set_as_read(v, j, 1, (double)c->v1 * ((double)j - 1), flush);
        for (int64_t i = 0; bias && i < SQ; i++)
            set_as_read(bias, i, j, j == 1 ? c->bias1 : c->bias, flush);
    }
}

/* Runs case c on algo; returns the worst out and lse errors against the reference. */
static void run_case(const extreme_case *c, clattn_algo algo, cmp_result *out_err,
                     cmp_result *lse_err)
{
    const int64_t qd[4] = {1, 1, SQ, D}, kd[4] = {1, 1, SK, D}, od[4] = {1, 1, SQ, D},
                  ld[4] = {1, 1, SQ, 1}, bd[4] = {1, 1, SQ, SK};
    test_tensor q, k, v, out, lse, bias;
    tt_init(&q, c->dtype, qd, &LAYOUT_BHSD);
    tt_init(&k, c->dtype, kd, &LAYOUT_BHSD);
    tt_init(&v, c->dtype, kd, &LAYOUT_BHSD);
    tt_init(&out, CLATTN_F32, od, &LAYOUT_BHSD);
    tt_init(&lse, CLATTN_F32, ld, &LAYOUT_BHSD);
    if (c->bias_on)
        tt_init(&bias, CLATTN_F32, bd, &LAYOUT_BHSD);
    fill(c, &q, &k, &v, c->bias_on ? &bias : NULL);
    test_tensor *inputs[] = {&q, &k, &v, &bias};
    for (int i = 0; i < (c->bias_on ? 4 : 3); i++)
        tt_upload(inputs[i], CL_MEM_READ_ONLY);
    tt_upload(&out, CL_MEM_READ_WRITE);
    tt_upload(&lse, CL_MEM_READ_WRITE);

    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.scale = c->scale;
    desc.softcap = c->softcap;
    desc.algo = algo;
    desc.bias = c->bias_on ? &bias.view : NULL;
    TEST_CHECK_STATUS(clattn_attention_forward(test_ctx(), &desc, &q.view, &k.view, &v.view,
                                               &out.view, &lse.view, 0, NULL, NULL),
                      c->name);
    tt_download(&out);
    tt_download(&lse);
    ref_params p = test_ref_params_of(&desc);
    double *want_out, *want_lse;
    ref_tensor ro, rl;
    test_reference_of(p, &q, &k, &v, c->bias_on ? &bias : NULL, &want_out, &ro, &want_lse, &rl);
    *out_err = compare_out(&out, &ro);
    *lse_err = compare_lse(&lse, &rl);
    free(want_out);
    free(want_lse);
    test_tensor *all[] = {&q, &k, &v, &out, &lse, &bias};
    for (int i = 0; i < (c->bias_on ? 6 : 5); i++)
        tt_free(all[i]);
}

ParameterizedTestParameters(extremes, every_case_matches_the_reference)
{
    static size_t indices[N_ALGOS];
    for (size_t i = 0; i < N_ALGOS; i++)
        indices[i] = i;
    return cr_make_param_array(size_t, indices, N_ALGOS);
}

/* Every case on one algorithm (one process, kernels built once), each checked on its own. */
ParameterizedTest(size_t *algo, extremes, every_case_matches_the_reference)
{
    for (size_t i = 0; i < N_CASES; i++) {
        const extreme_case *c = &cases[i];
        cmp_result out_err, lse_err;
        char text[2][256];
        run_case(c, algos[*algo], &out_err, &lse_err);
        cr_log_info("%s, %s: out %s; lse %s", algo_names[*algo], c->name,
                    cmp_describe(&out_err, text[0], sizeof text[0]),
                    cmp_describe(&lse_err, text[1], sizeof text[1]));
        cr_expect(out_err.worst <= TOL_F32_OUT && out_err.hard == 0, "%s, %s: out %s",
                  algo_names[*algo], c->name, text[0]);
        cr_expect(lse_err.worst <= TOL_F32_LSE && lse_err.hard == 0, "%s, %s: lse %s",
                  algo_names[*algo], c->name, text[1]);
    }
}
