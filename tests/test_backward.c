/* The backward pass (clattn_attention_backward) against the f64 reference
   (ref_attention_backward, finite-difference-checked in test_reference.c).

   every_feature_per_dtype: ONE table of cases, run for each q/k/v storage type (f32, f16,
   bf16; one process each). Each case runs the library's forward to get out and lse, then the
   backward with the same desc (same dropout seed and offset), and compares dq, dk, dv with the
   reference of the same (dtype-rounded) q, k, v, dout: the worst |got - ref| of a tensor over
   the max |ref| of that tensor (compare_grad), under test_grad_tolerance() (common.h):
     TOL_F32_GRAD (2e-5) for f32 gradients from f32 out/dout, plus TOL_GRAD_STORE_F16/BF16
     (1e-3 / 8e-3) for gradients stored in 16 bits and TOL_GRAD_OUT_F16/BF16 (1e-3 / 8e-3)
     for out/dout stored in 16 bits.
   Rows the contract says are 0 (padding rows, rows without a key, keys past seqlens_k, keys no
   query sees, keys every row masks with -INFINITY bias) must be exactly 0; a batch with an
   invalid seqlens entry must be NaN in all of its dq, dk, dv. The worst error per feature and
   dtype is logged (cr_log_info). Around every gradient view the buffer keeps its canary;
   inputs (q, k, v, out, dout, lse) are never written; input buffers hold NaN/Inf outside their
   views; invisible keys hold NaN/Inf in k and v, and padding rows NaN in q and dout, where the
   case says so: no gradient may change.

   Also: bit-identical results of repeated calls (GQA, multi-block S=300), events and wait
   lists, the bad input of the backward's own arguments (table-driven, as test_bad_input.c
   does for the forward), and gradient views that touch in one buffer (valid). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

TestSuite(backward, .fini = test_ctx_release);

/* ---- the table --------------------------------------------------------------------------- */

typedef enum feature {
    F_PLAIN, F_SCALE, F_CAUSAL, F_WINDOW, F_SOFTCAP, F_BIAS, F_SEQLENS, F_GQA, F_HEAD_DIMS,
    F_DROPOUT, F_LAYOUTS, F_OUT_F16_GRAD_F16, F_GRAD_BF16, N_FEATURES
} feature;

static const char *const feature_names[N_FEATURES] = {
    "plain", "scale", "causal", "window", "softcap", "bias", "seqlens", "gqa/mqa", "head dims",
    "dropout", "layouts", "out+dout f16, grads f16", "grads bf16",
};

/* Cases are test_case (common.h): .group is the feature a case belongs to (the report's line);
   .poison puts NaN/Inf where no gradient may read it (TC_POISON_*); .want states what the
   reference must contain (TC_WANT_ZERO_DQ, TC_WANT_ZERO_DKV, TC_WANT_NAN), which
   tc_check_backward asserts. */
#define SHAPE TC_SHAPE
#define TL TC_TL
#define WIN TC_WIN
#define SEQ TC_SEQ

/* Each cold kernel variant costs seconds of PoCL compilation: the cases that only add a
   bucket or a storage combination run for fewer q/k/v dtypes (the arithmetic is f32 in every
   case; the 16-bit loads are exercised by every other case). */
#define ONLY_F32 TC_ONLY(CLATTN_F32)
#define ONLY_F16 TC_ONLY(CLATTN_F16)
#define ONLY_BF16 TC_ONLY(CLATTN_BF16)

/* Shapes: PoCL compiles each kernel variant for seconds, and a variant is the storage dtypes,
   the head-dim buckets and the tiling, whose rows per work-item grow with the query rows
   (plan.c). So every case keeps B*Hq*Sq under 64 and Sq*Hq/Hkv (and Sk) at least 3, which on
   a CPU device plans the same tiling (4 rows per work-item) for the forward and both backward
   kernels; GQA cases still give a kv head up to 60 query rows, several tiles. Head dims are
   D = Dv = 32 except in the head-dim cases, which add the buckets 16, 128, 256 (D != Dv
   inside a bucket) and 32/16; the determinism and many-rows tests add shapes with 32 rows
   per work-item (rows in vector lanes). */
static const test_case table[] = {
    /* plain */
    {"plain MHA", .group = F_PLAIN, SHAPE(1, 2, 2, 31, 47, 32, 32)},
    {"plain Sq=1, 4 heads on one kv head", .group = F_PLAIN, SHAPE(1, 4, 1, 1, 77, 32, 32)},
    {"plain Sq=Sk=3", .group = F_PLAIN, SHAPE(1, 2, 1, 3, 3, 32, 32)},
    {"plain Sq=60 Sk=3", .group = F_PLAIN, SHAPE(1, 1, 1, 60, 3, 32, 32)},
    {"plain B=3", .group = F_PLAIN, SHAPE(3, 2, 2, 10, 37, 32, 32)},

    /* scale */
    {"scale 0.5", .group = F_SCALE, SHAPE(1, 2, 1, 29, 41, 32, 32), .scale = 0.5f},
    {"scale -0.3, causal", .group = F_SCALE, SHAPE(1, 2, 1, 29, 41, 32, 32), .scale = -0.3f,
     .causal = 1},
    {"scale 2 (sharp)", .group = F_SCALE, SHAPE(1, 2, 2, 31, 40, 32, 32), .scale = 2.0f},

    /* causal, both aligns, Sq < Sk, Sq == Sk, Sq > Sk */
    {"causal BR Sq<Sk", .group = F_CAUSAL, SHAPE(1, 2, 1, 30, 90, 32, 32), .causal = 1},
    {"causal BR Sq==Sk", .group = F_CAUSAL, SHAPE(1, 1, 1, 63, 63, 32, 32), .causal = 1},
    {"causal BR Sq>Sk (rows without keys)", .group = F_CAUSAL, SHAPE(1, 1, 1, 60, 23, 32, 32),
     .causal = 1, .poison = TC_POISON_EMPTY, .want = TC_WANT_ZERO_DQ},
    {"causal TL Sq<Sk (keys no row sees)", .group = F_CAUSAL, SHAPE(1, 2, 1, 30, 90, 32, 32),
     .causal = 1, TL, .poison = TC_POISON_KEYS, .want = TC_WANT_ZERO_DKV},
    {"causal TL Sq==Sk", .group = F_CAUSAL, SHAPE(1, 2, 2, 31, 31, 32, 32), .causal = 1, TL},
    {"causal TL Sq>Sk", .group = F_CAUSAL, SHAPE(1, 1, 1, 60, 23, 32, 32), .causal = 1, TL},
    {"causal BR Sq=1", .group = F_CAUSAL, SHAPE(1, 4, 1, 1, 90, 32, 32), .causal = 1},

    /* windows, with and without causal */
    {"window left 5, BR Sq<Sk", .group = F_WINDOW, SHAPE(1, 2, 1, 30, 70, 32, 32),
     .window = WIN(5, -1), .poison = TC_POISON_KEYS, .want = TC_WANT_ZERO_DKV},
    {"window right 3, TL Sq==Sk", .group = F_WINDOW, SHAPE(1, 1, 1, 50, 50, 32, 32), TL,
     .window = WIN(-1, 3)},
    {"window (4,2), BR Sq>Sk", .group = F_WINDOW, SHAPE(1, 1, 1, 60, 40, 32, 32),
     .window = WIN(4, 2), .poison = TC_POISON_EMPTY, .want = TC_WANT_ZERO_DQ},
    {"window left 8 + causal BR Sq<Sk", .group = F_WINDOW, SHAPE(1, 2, 1, 31, 64, 32, 32),
     .causal = 1, .window = WIN(8, -1), .poison = TC_POISON_KEYS, .want = TC_WANT_ZERO_DKV},
    {"window left 3 + causal TL Sq>Sk", .group = F_WINDOW, SHAPE(1, 1, 1, 60, 31, 32, 32),
     .causal = 1, TL, .window = WIN(3, -1)},
    {"window (0,0) TL: diagonal only", .group = F_WINDOW, SHAPE(1, 2, 1, 30, 30, 32, 32), TL,
     .window = WIN(0, 0)},
    {"window (10,10) + causal BR", .group = F_WINDOW, SHAPE(1, 1, 1, 63, 63, 32, 32), .causal = 1,
     .window = WIN(10, 10)},
    {"window (1,1) TL Sq<Sk", .group = F_WINDOW, SHAPE(1, 2, 1, 20, 60, 32, 32), TL,
     .window = WIN(1, 1), .poison = TC_POISON_KEYS, .want = TC_WANT_ZERO_DKV},

    /* softcap */
    {"softcap 5, scale 1", .group = F_SOFTCAP, SHAPE(1, 2, 1, 30, 60, 32, 32), .scale = 1.0f,
     .softcap = 5.0f},
    {"softcap 2 + causal + full bias with -inf", .group = F_SOFTCAP, SHAPE(2, 2, 1, 15, 47, 32, 32),
     .softcap = 2.0f, .causal = 1, .bias = TC_BIAS_FULL, .bias_inf = TC_INF_SCATTER},
    {"softcap 3, scale -1, window", .group = F_SOFTCAP, SHAPE(1, 2, 2, 30, 30, 32, 32),
     .scale = -1.0f, .softcap = 3.0f, .window = WIN(6, 6)},

    /* bias: full and broadcast dims, -INFINITY entries, rows all -INFINITY */
    {"bias [B,Hq,Sq,Sk] with -inf", .group = F_BIAS, SHAPE(2, 2, 1, 15, 57, 32, 32),
     .bias = TC_BIAS_FULL, .bias_inf = TC_INF_SCATTER},
    {"bias [1,Hq,Sq,Sk] + causal", .group = F_BIAS, SHAPE(2, 2, 1, 15, 40, 32, 32),
     .bias = TC_BIAS_BATCH1, .bias_inf = TC_INF_SCATTER, .causal = 1},
    {"bias [B,1,Sq,Sk] + window", .group = F_BIAS, SHAPE(2, 2, 2, 15, 50, 32, 32),
     .bias = TC_BIAS_HEAD1, .window = WIN(7, 3)},
    {"bias [B,Hq,1,Sk] with -inf", .group = F_BIAS, SHAPE(2, 2, 1, 15, 45, 32, 32),
     .bias = TC_BIAS_ROW1, .bias_inf = TC_INF_SCATTER},
    {"bias [1,1,1,Sk] with -inf (keys every row masks)", .group = F_BIAS,
     SHAPE(2, 2, 2, 15, 64, 32, 32), .bias = TC_BIAS_KEYS, .bias_inf = TC_INF_SCATTER,
     .want = TC_WANT_ZERO_DKV},
    {"bias stride-0 over batch and heads", .group = F_BIAS, SHAPE(2, 3, 1, 10, 39, 32, 32),
     .bias = TC_BIAS_STRIDE0, .bias_inf = TC_INF_SCATTER},
    {"bias row all -inf where visible (causal BR)", .group = F_BIAS, SHAPE(2, 2, 1, 15, 50, 32, 32),
     .causal = 1, .bias = TC_BIAS_FULL, .bias_inf = TC_INF_ROW | TC_INF_SCATTER, .special_row = 7,
     .want = TC_WANT_ZERO_DQ},
    {"bias [B,1,Sq,Sk] row all -inf (every head)", .group = F_BIAS, SHAPE(2, 2, 2, 15, 30, 32, 32),
     .bias = TC_BIAS_HEAD1, .bias_inf = TC_INF_ROW, .special_row = 0, .want = TC_WANT_ZERO_DQ},

    /* seqlens: 0, partial, full, padded batches, invalid entries */
    {"seqlens_q {5,0,20}", .group = F_SEQLENS, SHAPE(3, 1, 1, 20, 40, 32, 32),
     .seqlens_q = SEQ(5, 0, 20), .poison = TC_POISON_ROWS,
     .want = TC_WANT_ZERO_DQ | TC_WANT_ZERO_DKV},
    {"seqlens_k {40,0,17}", .group = F_SEQLENS, SHAPE(3, 1, 1, 20, 40, 32, 32),
     .seqlens_k = SEQ(40, 0, 17), .poison = TC_POISON_KEYS,
     .want = TC_WANT_ZERO_DQ | TC_WANT_ZERO_DKV},
    {"seqlens q,k + causal BR", .group = F_SEQLENS, SHAPE(3, 1, 1, 20, 40, 32, 32), .causal = 1,
     .seqlens_q = SEQ(10, 20, 1), .seqlens_k = SEQ(40, 12, 0),
     .poison = TC_POISON_ROWS | TC_POISON_KEYS, .want = TC_WANT_ZERO_DQ | TC_WANT_ZERO_DKV},
    {"seqlens q,k + causal TL + window", .group = F_SEQLENS, SHAPE(2, 1, 1, 30, 45, 32, 32),
     .causal = 1, TL, .window = WIN(5, -1), .seqlens_q = SEQ(30, 20), .seqlens_k = SEQ(11, 45),
     .poison = TC_POISON_ROWS | TC_POISON_KEYS | TC_POISON_EMPTY,
     .want = TC_WANT_ZERO_DQ | TC_WANT_ZERO_DKV},
    {"seqlens padded batch + full bias with -inf", .group = F_SEQLENS,
     SHAPE(2, 2, 1, 15, 44, 32, 32), .bias = TC_BIAS_FULL, .bias_inf = TC_INF_SCATTER,
     .seqlens_q = SEQ(15, 7), .seqlens_k = SEQ(19, 44), .poison = TC_POISON_ROWS | TC_POISON_KEYS,
     .want = TC_WANT_ZERO_DQ | TC_WANT_ZERO_DKV},
    {"seqlens_q -1 (invalid): batch 0 NaN", .group = F_SEQLENS, SHAPE(3, 1, 1, 20, 40, 32, 32),
     .seqlens_q = SEQ(-1, 20, 5), .want = TC_WANT_NAN | TC_WANT_ZERO_DQ},
    {"seqlens_k 41 > Sk (invalid): batch 1 NaN", .group = F_SEQLENS, SHAPE(3, 1, 1, 20, 40, 32, 32),
     .causal = 1, .seqlens_k = SEQ(12, 41, 40), .want = TC_WANT_NAN},
    {"seqlens_q 11 > Sq (invalid), seqlens_k -5", .group = F_SEQLENS,
     SHAPE(3, 2, 2, 10, 40, 32, 32), .seqlens_q = SEQ(11, 3, 10), .seqlens_k = SEQ(40, 40, -5),
     .want = TC_WANT_NAN},

    /* GQA / MQA: dk, dv sum over the heads of a group */
    {"GQA 8:2 causal", .group = F_GQA, SHAPE(1, 8, 2, 7, 45, 32, 32), .causal = 1},
    {"MQA 6:1", .group = F_GQA, SHAPE(1, 6, 1, 10, 130, 32, 32)},
    {"GQA 6:3 window", .group = F_GQA, SHAPE(1, 6, 3, 10, 50, 32, 32), .window = WIN(9, 2)},

    /* D != Dv, odd head dims */
    {"D 32 Dv 16 (buckets 32/16)", .group = F_HEAD_DIMS, SHAPE(1, 2, 1, 31, 57, 32, 16),
     .dtypes = ONLY_F32},
    {"D 32 Dv 20 (one bucket)", .group = F_HEAD_DIMS, SHAPE(1, 2, 1, 31, 57, 32, 20)},
    {"D 1 Dv 7 causal TL", .group = F_HEAD_DIMS, SHAPE(1, 2, 2, 30, 30, 1, 7), .causal = 1, TL},
    {"D 1 Dv 1", .group = F_HEAD_DIMS, SHAPE(1, 2, 1, 23, 29, 1, 1)},
    {"D 7 Dv 7 causal", .group = F_HEAD_DIMS, SHAPE(1, 3, 1, 20, 29, 7, 7), .causal = 1},
    {"D 7 Dv 1 GQA", .group = F_HEAD_DIMS, SHAPE(1, 4, 2, 15, 20, 7, 1)},
    {"D 72 Dv 72 causal", .group = F_HEAD_DIMS, SHAPE(1, 2, 1, 30, 70, 72, 72), .causal = 1,
     .dtypes = ONLY_F32 | ONLY_F16},
    {"D 72 Dv 100", .group = F_HEAD_DIMS, SHAPE(1, 1, 1, 40, 33, 72, 100),
     .dtypes = ONLY_F32 | ONLY_F16},
    {"D 256 Dv 256 causal", .group = F_HEAD_DIMS, SHAPE(1, 2, 1, 30, 70, 256, 256), .causal = 1,
     .dtypes = ONLY_F32 | ONLY_BF16},
    {"D 256 Dv 160 GQA", .group = F_HEAD_DIMS, SHAPE(1, 2, 1, 20, 40, 256, 160),
     .dtypes = ONLY_F32 | ONLY_BF16},
    {"D 320 Dv 500 causal (backward buckets 512)", .group = F_HEAD_DIMS,
     SHAPE(1, 2, 1, 17, 23, 320, 500), .causal = 1, .dtypes = ONLY_F32},
    /* bucket 1024: on a CPU whose local memory is 512 KiB (PoCL) block_n must shrink to fit;
       it did not, and these were UNSUPPORTED */
    {"D 600 Dv 600 (backward buckets 1024)", .group = F_HEAD_DIMS,
     SHAPE(1, 2, 1, 9, 13, 600, 600), .dtypes = ONLY_F32},
    {"D 1024 Dv 1024 causal", .group = F_HEAD_DIMS, SHAPE(1, 1, 1, 7, 11, 1024, 1024),
     .causal = 1, .dtypes = ONLY_F32},

    /* dropout: the forward and the backward share seed and offset */
    {"dropout 0.25", .group = F_DROPOUT, SHAPE(1, 2, 2, 31, 47, 32, 32), .dropout_p = 0.25f},
    {"dropout 0.5 + causal + GQA", .group = F_DROPOUT, SHAPE(1, 4, 2, 15, 40, 32, 32),
     .dropout_p = 0.5f, .causal = 1},
    {"dropout 0.1 + bias + seqlens + window", .group = F_DROPOUT, SHAPE(2, 2, 1, 15, 44, 32, 32),
     .dropout_p = 0.1f, .bias = TC_BIAS_FULL, .bias_inf = TC_INF_SCATTER, .window = WIN(10, 3),
     .seqlens_q = SEQ(15, 9), .seqlens_k = SEQ(25, 44), .poison = TC_POISON_ROWS | TC_POISON_KEYS,
     .want = TC_WANT_ZERO_DQ | TC_WANT_ZERO_DKV},
    {"dropout 0.3 + softcap, Sq=1", .group = F_DROPOUT, SHAPE(1, 4, 1, 1, 100, 32, 32),
     .dropout_p = 0.3f, .softcap = 4.0f},

    /* strided / permuted layouts and offsets */
    {"padded, permuted views with offsets (NaN between rows), causal + bias", .group = F_LAYOUTS,
     SHAPE(2, 2, 1, 15, 53, 20, 24), .causal = 1, TC_PADDED, .bias = TC_BIAS_HEAD1,
     .bias_inf = TC_INF_SCATTER},
    {"padded views + seqlens (NaN padding rows)", .group = F_LAYOUTS,
     SHAPE(2, 2, 1, 15, 33, 32, 27), TC_PADDED, .seqlens_q = SEQ(11, 15), .seqlens_k = SEQ(33, 20),
     .poison = TC_POISON_ROWS | TC_POISON_KEYS, .want = TC_WANT_ZERO_DQ | TC_WANT_ZERO_DKV},
    {"all BSHD", .group = F_LAYOUTS, SHAPE(2, 2, 2, 15, 45, 32, 32), TC_ALL_BSHD, .causal = 1},
    {"k, v shared by every batch (stride 0)", .group = F_LAYOUTS, SHAPE(3, 2, 1, 10, 33, 32, 32),
     .kv_batch_broadcast = 1},

    /* gradients (and out, dout) stored in 16 bits */
    {"out f16, grads f16, causal", .group = F_OUT_F16_GRAD_F16, SHAPE(2, 2, 1, 15, 60, 32, 32),
     .causal = 1, .out_dtype = CLATTN_F16, .grad_dtype = CLATTN_F16, .dtypes = ONLY_F32 | ONLY_F16},
    {"out f16, grads f16, seqlens incl. invalid + bias", .group = F_OUT_F16_GRAD_F16,
     SHAPE(3, 1, 1, 20, 40, 32, 32), .out_dtype = CLATTN_F16, .grad_dtype = CLATTN_F16,
     .bias = TC_BIAS_KEYS, .bias_inf = TC_INF_SCATTER, .seqlens_q = SEQ(20, 12, 21),
     .seqlens_k = SEQ(0, 40, 20), .poison = TC_POISON_ROWS | TC_POISON_KEYS,
     .want = TC_WANT_ZERO_DQ | TC_WANT_ZERO_DKV | TC_WANT_NAN, .dtypes = ONLY_F32 | ONLY_F16},
    {"grads bf16, GQA + dropout", .group = F_GRAD_BF16, SHAPE(1, 4, 2, 15, 47, 32, 32),
     .grad_dtype = CLATTN_BF16, .dropout_p = 0.2f, .dtypes = ONLY_F32 | ONLY_BF16},
    {"grads bf16, padded layouts", .group = F_GRAD_BF16, SHAPE(2, 2, 2, 15, 41, 32, 32),
     .grad_dtype = CLATTN_BF16, TC_PADDED, .window = WIN(6, -1), .causal = 1,
     .dtypes = ONLY_F32 | ONLY_BF16},
};
#define N_CASES (sizeof table / sizeof table[0])

/* ---- a case of the table ---------------------------------------------------------------- */

/* The table's case #index for q/k/v dtype dt: its seed, and a dropout seed and offset with
   high bits in both (the seed uses all 64, the offset only its low 32). */
static test_case case_of(const test_case *table_case, uint64_t index, clattn_dtype dt)
{
    test_case c = *table_case;
    c.dtype = dt;
    c.backward = 1;
    c.seed = 0xbac0000u + index * 31 + (uint64_t)dt;
    c.dropout_seed = 0x9e3779b97f4a7c15ull ^ (index * 0x100000001ull);
    c.dropout_offset = (index * 977u) | (7ull << 40);
    return c;
}

/* ---- the worst errors of one dtype, by feature -------------------------------------------- */

typedef struct feature_totals {
    int cases;
    double tol;
    cmp_result g[3];            /* dq, dk, dv */
    char where[3][120];
} feature_totals;

typedef struct totals {
    feature_totals f[N_FEATURES];
    int64_t poisoned;
} totals;

static void fold(totals *t, const test_case *c, const tc_grad_result *g)
{
    feature_totals *f = &t->f[c->group];
    const cmp_result *r[3] = {&g->dq, &g->dk, &g->dv};
    for (int i = 0; i < 3; i++) {
        if (f->cases == 0 || r[i]->worst > f->g[i].worst)
            snprintf(f->where[i], sizeof f->where[i], "%s", c->name);
        if (f->cases == 0)
            f->g[i] = cmp_none();
        cmp_merge(&f->g[i], r[i]);
    }
    if (g->tol > f->tol)
        f->tol = g->tol;
    f->cases++;
}

static void report(const totals *t, const char *what)
{
    char buf[3][256];
    const char *names[3] = {"dq", "dk", "dv"};
    for (int i = 0; i < N_FEATURES; i++) {
        const feature_totals *f = &t->f[i];
        if (!f->cases)
            continue;
        cr_log_info("[%s] %-24s %2d cases, tolerance %.1e: dq %.2e (%s), dk %.2e (%s), "
                    "dv %.2e (%s)", what, feature_names[i], f->cases, f->tol, f->g[0].worst,
                    f->where[0], f->g[1].worst, f->where[1], f->g[2].worst, f->where[2]);
        for (int k = 0; k < 3; k++)
            cmp_describe(&f->g[k], buf[k], sizeof buf[k]);
        for (int k = 0; k < 3; k++)
            cr_expect(f->g[k].worst <= f->tol && f->g[k].hard == 0,
                      "[%s] %s: %s worst %s > %g (%s)", what, feature_names[i], names[k],
                      buf[k], f->tol, f->where[k]);
    }
    cr_log_info("[%s] %ld input elements held NaN/Inf where no gradient may read them", what,
                (long)t->poisoned);
}

/* ---- one case ----------------------------------------------------------------------------- */

static void run_case(const test_case *table_case, size_t index, clattn_dtype dt, totals *t)
{
    test_case c = case_of(table_case, index, dt);
    char label[512];
    snprintf(label, sizeof label, "[q/k/v %s] #%zu ", test_dtype_name(dt), index);
    tc_describe(&c, label + strlen(label), sizeof label - strlen(label));
    tc_run r;
    tc_build(&r, &c);
    tc_upload(&r);

    clattn_status st = tc_forward(&r, 0, NULL, NULL);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: forward: %s: %s", label, clattn_status_string(st),
                 clattn_last_error());
    tt_download(&r.out);   /* the backward's inputs as the device holds them */
    tt_download(&r.lse);

    cl_event ev = (cl_event)&ev;   /* not NULL: the call sets it */
    st = tc_backward(&r, 0, NULL, &ev);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: backward: %s: %s", label, clattn_status_string(st),
                 clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "%s: last error after success: %s", label,
                        clattn_last_error());
    test_wait_event(ev, label);

    tc_grad_result g;
    tc_check_backward(&r, label, &g);   /* also: q, k, v, dout unchanged */
    fold(t, &c, &g);
    t->poisoned += r.poisoned;
    tc_expect_unchanged(&r.out, "out", label);
    tc_expect_unchanged(&r.lse, "lse", label);
    tc_free(&r);
}

ParameterizedTestParameters(backward, every_feature_per_dtype)
{
    static clattn_dtype dtypes[] = {CLATTN_F32, CLATTN_F16, CLATTN_BF16};
    return cr_make_param_array(clattn_dtype, dtypes, sizeof dtypes / sizeof dtypes[0]);
}

ParameterizedTest(clattn_dtype *dt, backward, every_feature_per_dtype, .timeout = 600)
{
    char what[32];
    snprintf(what, sizeof what, "q/k/v %s", test_dtype_name(*dt));
    totals t;
    memset(&t, 0, sizeof t);
    test_ctx();
    int skipped = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        if (!tc_runs_dtype(&table[i], *dt)) {
            skipped++;
            continue;
        }
        run_case(&table[i], i, *dt, &t);
    }
    report(&t, what);
    cr_log_info("[%s] %zu cases run, %d are for other dtypes", what, N_CASES - (size_t)skipped,
                skipped);
}

/* ---- determinism -------------------------------------------------------------------------- */

/* The bytes of t's buffer as the device holds them now. */
static unsigned char *device_bytes(const test_tensor *t)
{
    unsigned char *s = malloc(t->bytes ? t->bytes : 1);
    cr_assert_not_null(s);
    buf_read(t->view.buffer, t->bytes, s);
    return s;
}

/* Three backward calls of r, each on fresh canary, give the same bytes in every gradient
   buffer. */
static void expect_identical_bits(tc_run *r)
{
    const test_tensor *grads[3] = {&r->dq, &r->dk, &r->dv};
    const char *names[3] = {"dq", "dk", "dv"};
    unsigned char *first[3] = {NULL, NULL, NULL};
    for (int call = 0; call < 3; call++) {
        for (int i = 0; i < 3; i++)
            buf_fill_canary(grads[i]->view.buffer);
        TEST_CHECK_STATUS(tc_backward(r, 0, NULL, NULL), r->c.name);
        cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
        for (int i = 0; i < 3; i++) {
            unsigned char *now = device_bytes(grads[i]);
            if (call == 0) {
                first[i] = now;
                continue;
            }
            size_t at = SIZE_MAX;
            for (size_t b = 0; b < grads[i]->bytes && at == SIZE_MAX; b++)
                if (now[b] != first[i][b])
                    at = b;
            cr_expect_eq(at, SIZE_MAX, "%s: call %d: %s differs from call 1 at byte %zu",
                         r->c.name, call + 1, names[i], at);
            free(now);
        }
    }
    for (int i = 0; i < 3; i++)
        free(first[i]);
}

Test(backward, repeated_calls_give_identical_bits, .timeout = 300)
{
    /* Several key and query blocks (S = 300), GQA and MQA (dk, dv reduced over a group),
       dropout and bias: three calls, each on fresh canary, give the same bytes in every
       gradient buffer; they also match the reference. */
    const test_case cases[] = {
        {"GQA 4:1 S=300 causal", .group = F_GQA, SHAPE(1, 4, 1, 300, 300, 32, 32), .causal = 1},
        {"MQA 8:1 Sq=70 Sk=300 dropout + bias", .group = F_DROPOUT,
         SHAPE(2, 8, 1, 70, 300, 32, 32), .dropout_p = 0.2f, .bias = TC_BIAS_HEAD1,
         .bias_inf = TC_INF_SCATTER},
        {"GQA 4:2 Sq=300 Sk=129 seqlens, grads f16", .group = F_SEQLENS,
         SHAPE(2, 4, 2, 300, 129, 32, 32), .seqlens_q = SEQ(300, 211),
         .seqlens_k = SEQ(77, 129), .grad_dtype = CLATTN_F16},
    };
    test_ctx();
    for (size_t n = 0; n < sizeof cases / sizeof cases[0]; n++) {
        test_case c = case_of(&cases[n], 1000 + n, CLATTN_F32);
        char label[512];
        tc_describe(&c, label, sizeof label);
        tc_run r;
        tc_build(&r, &c);
        tc_upload(&r);
        TEST_CHECK_STATUS(tc_forward(&r, 0, NULL, NULL), label);
        expect_identical_bits(&r);
        tc_grad_result g;
        tc_check_backward(&r, label, &g);
        cr_log_info("%s: bit-identical over 3 calls; dq %.2e, dk %.2e, dv %.2e", c.name,
                    g.dq.worst, g.dk.worst, g.dv.worst);
        tc_free(&r);
    }
}

Test(backward, many_rows_per_work_item, .timeout = 300)
{
    /* A few hundred rows per kv head: a CPU device plans 32 rows per work-item for these, so
       that its backward holds the rows in vector lanes (tiles.cl SCORES_IN_ROW_LANES), which
       the table's shapes (4 rows) never do. Each feature that reads per row or per key: a
       full bias gathered over the rows of a GQA group, softcap, windows and causal masks on
       both aligns, dropout, seqlens, head dims off the buckets. */
    const test_case cases[] = {
        {"GQA 4:2 S=150 causal TL, softcap 5, full bias", .group = F_GQA,
         SHAPE(1, 4, 2, 150, 150, 32, 32), .causal = 1, TL, .softcap = 5.0f,
         .bias = TC_BIAS_FULL},
        {"MHA Sq=160 Sk=140 D 40 Dv 24, window (30,7), dropout 0.1", .group = F_WINDOW,
         SHAPE(1, 2, 2, 160, 140, 40, 24), .window = WIN(30, 7), .dropout_p = 0.1f},
        {"GQA 4:2 S=150 window (0,0) TL: diagonal only (dS exactly 0)", .group = F_WINDOW,
         SHAPE(1, 4, 2, 150, 150, 32, 32), TL, .window = WIN(0, 0)},
        {"MQA 6:1 Sq=50 Sk=200 seqlens, keys bias, causal", .group = F_SEQLENS,
         SHAPE(2, 6, 1, 50, 200, 32, 32), .causal = 1, .seqlens_q = SEQ(50, 31),
         .seqlens_k = SEQ(200, 97), .bias = TC_BIAS_KEYS,
         .poison = TC_POISON_ROWS | TC_POISON_KEYS,
         .want = TC_WANT_ZERO_DQ | TC_WANT_ZERO_DKV},
    };
    totals t;
    memset(&t, 0, sizeof t);
    test_ctx();
    for (size_t n = 0; n < sizeof cases / sizeof cases[0]; n++)
        run_case(&cases[n], 2000 + n, CLATTN_F32, &t);
    report(&t, "many rows, q/k/v f32");
}

/* ---- events and wait lists ---------------------------------------------------------------- */

static const test_case events_case = {"events", .group = F_PLAIN,
                                      SHAPE(1, 2, 1, 31, 47, 32, 32), .causal = 1};

/* The backward waits on the forward's event (no clFinish between them) and is right. */
static void backward_after_the_forwards_event(tc_run *r)
{
    cl_event fwd = NULL, bwd = NULL;
    TEST_CHECK_STATUS(tc_forward(r, 0, NULL, &fwd), "forward");
    TEST_CHECK_STATUS(tc_backward(r, 1, &fwd, &bwd), "backward after the forward's event");
    test_wait_event(bwd, "backward");
    test_wait_event(fwd, "forward");
    tc_check_backward(r, "backward chained on the forward's event", NULL);
}

Test(backward, event_and_wait_list, .timeout = 120)
{
    test_case c = case_of(&events_case, 2000, CLATTN_F32);
    tc_run r;
    tc_build(&r, &c);
    tc_upload(&r);
    backward_after_the_forwards_event(&r);
    tc_free(&r);
}

Test(backward, waits_for_a_user_event, .timeout = 120)
{
    const char *deadlock = test_gated_command_deadlocks();   /* before the first OpenCL call */
    if (deadlock)
        cr_skip_test("setting the user event would hang this test: %s", deadlock);
    test_case c = case_of(&events_case, 2000, CLATTN_F32);
    tc_run r;
    tc_build(&r, &c);
    tc_upload(&r);
    /* first ungated, so that the kernels are built and only the wait list holds the call */
    backward_after_the_forwards_event(&r);

    /* A user event holds it: nothing may complete (or be written) before the gate opens. */
    buf_fill_canary(r.dq.view.buffer);
    buf_fill_canary(r.dk.view.buffer);
    buf_fill_canary(r.dv.view.buffer);
    cl_event gate = test_user_event();
    cl_event bwd = NULL;
    TEST_CHECK_STATUS(tc_backward(&r, 1, &gate, &bwd), "backward behind a user event");
    test_expect_held_by(gate, bwd, "the backward");
    test_wait_event(bwd, "backward behind a user event");
    clReleaseEvent(gate);
    tc_grad_result g;
    tc_check_backward(&r, "backward behind a user event", &g);
    cr_log_info("waits_for_a_user_event: dq %.2e, dk %.2e, dv %.2e", g.dq.worst, g.dk.worst,
                g.dv.worst);
    tc_free(&r);
}

/* ---- bad input of the backward's arguments ------------------------------------------------ */

/* The valid problem: every dim differs, so a message can name the one that is wrong. */
enum { B = 2, HQ = 4, HKV = 2, SQ = 5, SK = 7, D = 8, DV = 6 };

/* A head dim over the backward's limit (CLATTN_MAX_BACKWARD_HEAD_DIM = 1024). */
#define WIDE_DIM 1040

/* The buffers the table's changes point at, besides the valid call's own. */
struct tc_spares {
    test_tensor bias;   /* [1, 1, 1, SK] */
    cl_mem grad_big;    /* room for dq, dk, dv back to back and 64 bytes */
    cl_mem lse_big;     /* lse plus 64 bytes */
    cl_mem ro_dq;       /* CL_MEM_READ_ONLY, dq-sized */
    cl_mem wo_dout;     /* CL_MEM_WRITE_ONLY, dout-sized, holding dout */
    cl_mem wo_dk;       /* CL_MEM_WRITE_ONLY, dk-sized */
    cl_mem short_dk;    /* one element smaller than dk needs */
    cl_mem short_lens;  /* 4 bytes: seqlens for one batch of two */
    tc_run wide;        /* D = Dv = WIDE_DIM */
    const tc_run *run;  /* the valid call's tensors */
};

/* The valid call: dense views (the changes below place views by their byte sizes), inputs
   read-write, so that an output pointed into them is wrong only by aliasing. */
static test_case valid_case(int64_t d, int64_t dv)
{
    test_case c = tc_shape(B, HQ, HKV, SQ, SK, d, dv);
    c.seed = 4242;
    c.backward = 1;
    c.writable_inputs = 1;
    c.ldq = c.ldk = c.ldv = &LAYOUT_BHSD;
    return c;
}

typedef struct fixture {
    tc_run run;
    tc_spares spares;
} fixture;

static void fixture_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    test_case c = valid_case(D, DV);
    tc_build(&f->run, &c);
    tc_upload(&f->run);
    tc_spares *x = &f->spares;
    x->run = &f->run;
    const int64_t bd[4] = {1, 1, 1, SK};
    tt_init(&x->bias, CLATTN_F32, bd, &LAYOUT_BHSD);
    test_rng rng;
    rng_seed(&rng, 4243);
    tt_fill_random(&x->bias, &rng, -1, 1);
    tt_upload(&x->bias, CL_MEM_READ_ONLY);
    const tc_run *r = &f->run;
    x->grad_big = buf_new(CL_MEM_READ_WRITE, r->dq.bytes + r->dk.bytes + r->dv.bytes + 64,
                          NULL);
    x->lse_big = buf_new(CL_MEM_READ_WRITE, r->lse.bytes + 64, NULL);
    x->ro_dq = buf_new(CL_MEM_READ_ONLY, r->dq.bytes, NULL);
    x->wo_dout = buf_new(CL_MEM_WRITE_ONLY, r->dout.bytes, r->dout.host);
    x->wo_dk = buf_new(CL_MEM_WRITE_ONLY, r->dk.bytes, NULL);
    x->short_dk = buf_new(CL_MEM_READ_WRITE, r->dk.bytes - 4, NULL);
    const int32_t one[1] = {SQ};
    x->short_lens = buf_new(CL_MEM_READ_ONLY, sizeof one, one);
    test_case wide = valid_case(WIDE_DIM, WIDE_DIM);
    tc_build(&x->wide, &wide);
    tc_upload(&x->wide);

    /* out and lse from the forward, once: they are inputs of every backward call below */
    TEST_CHECK_STATUS(tc_forward(&f->run, 0, NULL, NULL), "fixture forward");
    tt_download(&f->run.out);
    tt_download(&f->run.lse);
}

static void fixture_free(fixture *f)
{
    tc_spares *x = &f->spares;
    tt_free(&x->bias);
    cl_mem extra[] = {x->grad_big, x->lse_big, x->ro_dq, x->wo_dout, x->wo_dk, x->short_dk,
                      x->short_lens};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        clReleaseMemObject(extra[i]);
    tc_free(&x->wide);
    tc_free(&f->run);
}

/* Canary into every buffer an output of a case may point at. */
static void reset_outputs(fixture *f)
{
    const tc_spares *x = &f->spares;
    const cl_mem outs[] = {f->run.dq.view.buffer, f->run.dk.view.buffer, f->run.dv.view.buffer,
                           x->grad_big, x->short_dk, x->wide.dq.view.buffer,
                           x->wide.dk.view.buffer, x->wide.dv.view.buffer};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        buf_fill_canary(outs[i]);
}

/* No gradient buffer written, no input changed. */
static void expect_untouched(const fixture *f, const char *label)
{
    const tc_spares *x = &f->spares;
    const tc_run *r = &f->run;
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    const cl_mem canaried[] = {r->dq.view.buffer, r->dk.view.buffer, r->dv.view.buffer,
                               x->grad_big, x->short_dk, x->ro_dq, x->wide.dq.view.buffer,
                               x->wide.dk.view.buffer, x->wide.dv.view.buffer, x->lse_big};
    const char *names[] = {"dq", "dk", "dv", "grad_big", "short dk", "read-only dq", "dq_wide",
                           "dk_wide", "dv_wide", "lse_big"};
    for (size_t i = 0; i < sizeof canaried / sizeof canaried[0]; i++) {
        size_t first;
        cr_expect(buf_canary_intact(canaried[i], &first), "%s: %s written (byte %zu)", label,
                  names[i], first);
    }
    const test_tensor *in[7] = {&r->q, &r->k, &r->v, &r->out, &r->lse, &r->dout, &x->bias};
    const char *in_names[7] = {"q", "k", "v", "out", "lse", "dout", "bias"};
    for (int i = 0; i < 7; i++)
        tc_expect_unchanged(in[i], in_names[i], label);
}

/* A valid backward on the same context: succeeds, clears the last error, matches the
   reference, writes only inside the gradient views. */
static void expect_context_usable(fixture *f, const char *label)
{
    char text[256];
    snprintf(text, sizeof text, "%s: the valid call after it", label);
    cl_event ev = NULL;
    clattn_status st = tc_backward(&f->run, 0, NULL, &ev);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s: %s", text, clattn_status_string(st),
                 clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "%s: last error after a success: \"%s\"", label,
                        clattn_last_error());
    test_wait_event(ev, text);
    tc_check_backward(&f->run, text, NULL);
}

/* The row's desc and change applied to the valid call. */
static void args_of(tc_args *a, const test_case *row, fixture *f)
{
    tc_args_init(a, &f->run);
    tc_desc(row, &a->desc);
    if (row->mutate)
        row->mutate(a, &f->spares);
}

#define MUTATION(name) static void name(tc_args *a, tc_spares *x)

MUTATION(ctx_null) { (void)x; a->ctx = NULL; }
MUTATION(desc_null) { (void)x; a->descp = NULL; }
MUTATION(dout_null) { (void)x; a->doutp = NULL; }
MUTATION(lse_null) { (void)x; a->lsep = NULL; }
MUTATION(dq_null) { (void)x; a->dqp = NULL; }
MUTATION(dk_null) { (void)x; a->dkp = NULL; }
MUTATION(dv_null) { (void)x; a->dvp = NULL; }
MUTATION(dout_buffer_null) { (void)x; a->dout.buffer = NULL; }
MUTATION(dq_buffer_null) { (void)x; a->dq.buffer = NULL; }
MUTATION(dv_buffer_null) { (void)x; a->dv.buffer = NULL; }
MUTATION(dout_seq_short) { (void)x; a->dout.dims[2] = SQ - 1; }
MUTATION(dout_dim_short) { (void)x; a->dout.dims[3] = DV - 1; }
MUTATION(dout_heads_short) { (void)x; a->dout.dims[1] = HQ / 2; }
MUTATION(dout_dims_zero) { (void)x; a->dout.dims[0] = 0; }
MUTATION(out_seq_short) { (void)x; a->out.dims[2] = SQ - 1; }
MUTATION(dq_seq_short) { (void)x; a->dq.dims[2] = SQ - 1; }
MUTATION(dq_dim_short) { (void)x; a->dq.dims[3] = D - 1; }
MUTATION(dq_batch_short) { (void)x; a->dq.dims[0] = 1; }
MUTATION(dk_heads_short) { (void)x; a->dk.dims[1] = 1; }
MUTATION(dk_seq_short) { (void)x; a->dk.dims[2] = SK - 1; }
MUTATION(dk_dim_short) { (void)x; a->dk.dims[3] = D - 1; }
MUTATION(dv_dim_short) { (void)x; a->dv.dims[3] = DV - 1; }
MUTATION(dv_seq_short) { (void)x; a->dv.dims[2] = SK - 1; }
MUTATION(dv_heads_short) { (void)x; a->dv.dims[1] = 1; }
MUTATION(lse_dim_two) { a->lse.buffer = x->lse_big; a->lse.dims[3] = 2; }
MUTATION(lse_seq_short) { (void)x; a->lse.dims[2] = SQ - 1; }
MUTATION(lse_heads_short) { (void)x; a->lse.dims[1] = HQ / 2; }
MUTATION(lse_f16) { (void)x; a->lse.dtype = CLATTN_F16; }
MUTATION(lse_bf16) { (void)x; a->lse.dtype = CLATTN_BF16; }
MUTATION(dout_f16) { (void)x; a->dout.dtype = CLATTN_F16; }
MUTATION(out_bf16) { (void)x; a->out.dtype = CLATTN_BF16; }
MUTATION(dout_dtype_7) { (void)x; a->dout.dtype = (clattn_dtype)7; }
MUTATION(dk_f16) { (void)x; a->dk.dtype = CLATTN_F16; }
MUTATION(dv_bf16) { (void)x; a->dv.dtype = CLATTN_BF16; }
MUTATION(dq_f16) { (void)x; a->dq.dtype = CLATTN_F16; }
MUTATION(dq_dtype_7) { (void)x; a->dq.dtype = (clattn_dtype)7; }
MUTATION(dq_past_end) { (void)x; a->dq.offset = sizeof(float); }
MUTATION(dk_short_buffer) { a->dk.buffer = x->short_dk; }
MUTATION(dv_past_end) { (void)x; a->dv.offset = sizeof(float); }
MUTATION(dout_past_end) { (void)x; a->dout.offset = sizeof(float); }
MUTATION(lse_past_end) { (void)x; a->lse.offset = sizeof(float); }
MUTATION(dq_offset_misaligned) { a->dq.buffer = x->grad_big; a->dq.offset = 2; }
MUTATION(dq_rows_overlap) { (void)x; a->dq.strides[2] = 0; }
MUTATION(dk_heads_overlap) { (void)x; a->dk.strides[1] = 0; }
MUTATION(dv_inner_stride_0) { (void)x; a->dv.strides[3] = 0; }
MUTATION(dq_negative_stride)
{
    (void)x;
    a->dq.strides[1] = -SQ * D;
    a->dq.offset = (HQ - 1) * SQ * D * sizeof(float);
}
MUTATION(dq_is_q) { (void)x; a->dq.buffer = a->q.buffer; }
MUTATION(dk_is_k) { (void)x; a->dk.buffer = a->k.buffer; }
MUTATION(dv_in_out) { (void)x; a->dv.buffer = a->out.buffer; }
MUTATION(dv_in_dout) { (void)x; a->dv.buffer = a->dout.buffer; a->dv.offset = 8; }
MUTATION(dk_in_lse_big)
{
    /* lse and dk in one buffer, dk's first element on lse's last */
    a->lse.buffer = a->dk.buffer = x->grad_big;
    a->dk.offset = x->run->lse.bytes - sizeof(float);
}
MUTATION(dq_overlaps_dk)
{
    a->dq.buffer = a->dk.buffer = x->grad_big;
    a->dk.offset = x->run->dq.bytes - 2 * sizeof(float);   /* meets dq's last two elements */
}
MUTATION(dk_overlaps_dv)
{
    a->dk.buffer = a->dv.buffer = x->grad_big;
    a->dv.offset = x->run->dk.bytes - sizeof(float);
}
MUTATION(dq_read_only) { a->dq.buffer = x->ro_dq; }
MUTATION(accumulate_2) { (void)x; a->desc.accumulate = 2; }
MUTATION(accumulate_into_write_only_dk)
{
    a->dk.buffer = x->wo_dk;
    a->desc.accumulate = 1;
}
MUTATION(dout_write_only) { a->dout.buffer = x->wo_dout; }
MUTATION(bias_short)
{
    a->desc.bias = &x->bias.view;
    x->bias.view.dims[3] = SK - 1;   /* undone after the call */
}
MUTATION(seqlens_q_short) { a->desc.seqlens_q = x->short_lens; }
MUTATION(head_dim_wide)
{
    a->q = x->wide.q.view;
    a->k = x->wide.k.view;
    a->dq = x->wide.dq.view;
    a->dk = x->wide.dk.view;
}
MUTATION(value_dim_wide)
{
    a->v = x->wide.v.view;
    a->out = x->wide.out.view;
    a->dout = x->wide.dout.view;
    a->dv = x->wide.dv.view;
}
MUTATION(wait_list_null) { (void)x; a->num_wait = 1; a->wait_list = NULL; }

#define INVALID CLATTN_ERROR_INVALID_ARGUMENT
#define TOO_SMALL CLATTN_ERROR_BUFFER_TOO_SMALL
#define UNSUPPORTED CLATTN_ERROR_UNSUPPORTED

/* Each row: what differs from the valid call (desc fields of the row, or .mutate) and the
   answer it must get. */
static const test_case backward_cases[] = {
    {"ctx NULL", .mutate = ctx_null, TC_REJECT(INVALID, "ctx")},
    {"desc NULL", .mutate = desc_null, TC_REJECT(INVALID, "desc")},
    {"dout NULL", .mutate = dout_null, TC_REJECT(INVALID, "dout")},
    {"lse NULL", .mutate = lse_null, TC_REJECT(INVALID, "lse")},
    {"dq NULL", .mutate = dq_null, TC_REJECT(INVALID, "dq")},
    {"dk NULL", .mutate = dk_null, TC_REJECT(INVALID, "dk")},
    {"dv NULL", .mutate = dv_null, TC_REJECT(INVALID, "dv")},
    {"dout.buffer NULL", .mutate = dout_buffer_null, TC_REJECT(INVALID, "dout")},
    {"dq.buffer NULL", .mutate = dq_buffer_null, TC_REJECT(INVALID, "dq")},
    {"dv.buffer NULL", .mutate = dv_buffer_null, TC_REJECT(INVALID, "dv")},
    {"dout seq != out seq", .mutate = dout_seq_short, TC_REJECT(INVALID, "dout.dims[2]")},
    {"dout dim != out dim", .mutate = dout_dim_short, TC_REJECT(INVALID, "dout.dims[3]")},
    {"dout heads != out heads", .mutate = dout_heads_short, TC_REJECT(INVALID, "dout.dims[1]")},
    {"dout.dims[0] = 0", .mutate = dout_dims_zero, TC_REJECT(INVALID, "dout.dims[0]")},
    {"out seq != q seq", .mutate = out_seq_short, TC_REJECT(INVALID, "out.dims[2]")},
    {"dq seq != q seq", .mutate = dq_seq_short, TC_REJECT(INVALID, "dq.dims[2]")},
    {"dq dim != q dim", .mutate = dq_dim_short, TC_REJECT(INVALID, "dq.dims[3]")},
    {"dq batch != q batch", .mutate = dq_batch_short, TC_REJECT(INVALID, "dq.dims[0]")},
    {"dk heads != k heads", .mutate = dk_heads_short, TC_REJECT(INVALID, "dk.dims[1]")},
    {"dk seq != k seq", .mutate = dk_seq_short, TC_REJECT(INVALID, "dk.dims[2]")},
    {"dk dim != k dim", .mutate = dk_dim_short, TC_REJECT(INVALID, "dk.dims[3]")},
    {"dv dim != v dim", .mutate = dv_dim_short, TC_REJECT(INVALID, "dv.dims[3]")},
    {"dv seq != v seq", .mutate = dv_seq_short, TC_REJECT(INVALID, "dv.dims[2]")},
    {"dv heads != v heads", .mutate = dv_heads_short, TC_REJECT(INVALID, "dv.dims[1]")},
    {"lse.dims[3] = 2", .mutate = lse_dim_two, TC_REJECT(INVALID, "lse")},
    {"lse seq != q seq", .mutate = lse_seq_short, TC_REJECT(INVALID, "lse")},
    {"lse heads != q heads", .mutate = lse_heads_short, TC_REJECT(INVALID, "lse")},
    {"lse f16", .mutate = lse_f16, TC_REJECT(INVALID, "lse")},
    {"lse bf16", .mutate = lse_bf16, TC_REJECT(INVALID, "lse")},
    {"dout f16, out f32", .mutate = dout_f16, TC_REJECT(INVALID, "dout")},
    {"out bf16, dout f32", .mutate = out_bf16, TC_REJECT(INVALID, "out")},
    {"dout.dtype 7", .mutate = dout_dtype_7, TC_REJECT(INVALID, "dout")},
    {"dk f16, dq and dv f32", .mutate = dk_f16, TC_REJECT(INVALID, "dk")},
    {"dv bf16, dq and dk f32", .mutate = dv_bf16, TC_REJECT(INVALID, "dv")},
    {"dq f16, dk and dv f32", .mutate = dq_f16, TC_REJECT(INVALID, "dq")},
    {"dq.dtype 7", .mutate = dq_dtype_7, TC_REJECT(INVALID, "dq")},
    {"dq one element past its buffer", .mutate = dq_past_end, TC_REJECT(TOO_SMALL, "dq")},
    {"dk buffer one element short", .mutate = dk_short_buffer, TC_REJECT(TOO_SMALL, "dk")},
    {"dv one element past its buffer", .mutate = dv_past_end, TC_REJECT(TOO_SMALL, "dv")},
    {"dout one element past its buffer", .mutate = dout_past_end, TC_REJECT(TOO_SMALL, "dout")},
    {"lse one element past its buffer", .mutate = lse_past_end, TC_REJECT(TOO_SMALL, "lse")},
    {"dq.offset = 2", .mutate = dq_offset_misaligned, TC_REJECT(INVALID, "dq.offset")},
    {"dq rows overlap (stride 0)", .mutate = dq_rows_overlap, TC_REJECT(INVALID, "dq")},
    {"dk heads overlap (stride 0)", .mutate = dk_heads_overlap, TC_REJECT(INVALID, "dk")},
    {"dv.strides[3] = 0", .mutate = dv_inner_stride_0, TC_REJECT(INVALID, "dv")},
    {"dq.strides[1] < 0", .mutate = dq_negative_stride, TC_REJECT(INVALID, "dq.strides[1]")},
    {"dq aliases q", .mutate = dq_is_q, TC_REJECT(INVALID, "alias", .names2 = "dq")},
    {"dk aliases k", .mutate = dk_is_k, TC_REJECT(INVALID, "alias", .names2 = "dk")},
    {"dv inside out", .mutate = dv_in_out, TC_REJECT(INVALID, "alias", .names2 = "dv")},
    {"dv inside dout", .mutate = dv_in_dout, TC_REJECT(INVALID, "alias", .names2 = "dv")},
    {"dk meets lse", .mutate = dk_in_lse_big, TC_REJECT(INVALID, "alias", .names2 = "dk")},
    {"dq overlaps dk", .mutate = dq_overlaps_dk, TC_REJECT(INVALID, "alias", .names2 = "dq")},
    {"dk overlaps dv", .mutate = dk_overlaps_dv, TC_REJECT(INVALID, "alias", .names2 = "dv")},
    {"dq READ_ONLY", .mutate = dq_read_only, TC_REJECT(INVALID, "dq")},
    {"accumulate 2", .mutate = accumulate_2, TC_REJECT(INVALID, "desc->accumulate")},
    {"accumulate into a WRITE_ONLY dk", .mutate = accumulate_into_write_only_dk,
     TC_REJECT(INVALID, "dk.buffer")},
    {"dout WRITE_ONLY", .mutate = dout_write_only, TC_REJECT(INVALID, "dout")},
    {"algo SPLIT_KV", .algo = CLATTN_ALGO_SPLIT_KV, TC_REJECT(UNSUPPORTED, "algo|split")},
    {"algo UNFUSED", .algo = CLATTN_ALGO_UNFUSED, TC_REJECT(UNSUPPORTED, "algo|unfused")},
    {"algo 9", .algo = (clattn_algo)9, TC_REJECT(INVALID, "desc->algo")},
    {"causal 2", .causal = 2, TC_REJECT(INVALID, "desc->causal")},
    {"dropout_p 1", .dropout_p = 1.0f, TC_REJECT(INVALID, "desc->dropout_p")},
    {"bias [1,1,1,Sk-1]", .mutate = bias_short, TC_REJECT(INVALID, "bias")},
    {"seqlens_q buffer of 1 entry for B=2", .mutate = seqlens_q_short,
     TC_REJECT(TOO_SMALL, "seqlens_q")},
    {"head dim 1040 (AUTO)", .mutate = head_dim_wide, TC_REJECT(UNSUPPORTED, "1040|head")},
    {"head dim 1040 (FUSED)", .mutate = head_dim_wide, .algo = CLATTN_ALGO_FUSED,
     TC_REJECT(UNSUPPORTED, "1040|head")},
    {"value head dim 1040", .mutate = value_dim_wide, TC_REJECT(UNSUPPORTED, "1040|head")},
    {"num_wait 1, wait_list NULL", .mutate = wait_list_null, TC_REJECT(INVALID, "wait_list")},
};

Test(backward, bad_input_table, .timeout = 300)
{
    fixture f;
    test_ctx();
    fixture_init(&f);
    reset_outputs(&f);
    expect_context_usable(&f, "the valid call");
    reset_outputs(&f);
    size_t n = sizeof backward_cases / sizeof backward_cases[0];
    for (size_t i = 0; i < n; i++) {
        const test_case *c = &backward_cases[i];
        tc_args a;
        args_of(&a, c, &f);
        cl_event ev = (cl_event)&ev;   /* not NULL: a failing call must clear it */
        clattn_status st = tc_call_backward(&a, &ev);
        f.spares.bias.view.dims[3] = SK;   /* undo bias_short */
        tc_expect_rejected(c, st, ev, c->name);
        expect_untouched(&f, c->name);
        expect_context_usable(&f, c->name);
        reset_outputs(&f);
    }
    cr_log_info("bad_input_table: %zu bad backward calls checked", n);
    fixture_free(&f);
}

Test(backward, touching_gradient_views_in_one_buffer_are_valid)
{
    /* dq, dk and dv back to back in one buffer (their byte ranges touch, they do not meet):
       a valid call that matches the reference and leaves the 64 bytes after dv alone. */
    fixture f;
    test_ctx();
    fixture_init(&f);
    reset_outputs(&f);
    tc_run *r = &f.run;
    tc_args a;
    tc_args_init(&a, r);
    a.dq.buffer = a.dk.buffer = a.dv.buffer = f.spares.grad_big;
    a.dk.offset = r->dq.bytes;
    a.dv.offset = r->dq.bytes + r->dk.bytes;
    cl_event ev = NULL;
    clattn_status st = tc_call_backward(&a, &ev);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s", clattn_status_string(st), clattn_last_error());
    cr_assert_str_empty(clattn_last_error());
    test_wait_event(ev, "touching gradients");
    size_t total = r->dq.bytes + r->dk.bytes + r->dv.bytes + 64;
    unsigned char *all = malloc(total);
    cr_assert_not_null(all);
    buf_read(f.spares.grad_big, total, all);
    /* what the call wrote into the shared buffer, put into the run's own gradient buffers, is
       checked like any backward's gradients */
    test_tensor *grads[3] = {&r->dq, &r->dk, &r->dv};
    const clattn_tensor *views[3] = {&a.dq, &a.dk, &a.dv};
    for (int i = 0; i < 3; i++) {
        size_t at = views[i]->offset;
        memcpy(grads[i]->host, all + at, grads[i]->bytes);
        tt_push(grads[i]);
    }
    tc_grad_result g;
    tc_check_backward(r, "touching gradients", &g);
    size_t end = a.dv.offset + r->dv.bytes;
    for (size_t i = end; i < total; i++)
        cr_expect_eq(all[i], canary_byte(i), "byte %zu after dv changed", i);
    cr_log_info("touching gradients: dq %.2e, dk %.2e, dv %.2e", g.dq.worst, g.dk.worst,
                g.dv.worst);
    free(all);
    fixture_free(&f);
}
