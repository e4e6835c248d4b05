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
#include <strings.h>

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

typedef enum bias_kind {
    BIAS_NONE = 0,
    BIAS_FULL,       /* [B, Hq, Sq, Sk] */
    BIAS_BATCH1,     /* [1, Hq, Sq, Sk] */
    BIAS_HEAD1,      /* [B, 1, Sq, Sk] */
    BIAS_ROW1,       /* [B, Hq, 1, Sk] */
    BIAS_KEYS,       /* [1, 1, 1, Sk] */
    BIAS_STRIDE0     /* dims [B, Hq, Sq, Sk], strides[0] = strides[1] = 0 */
} bias_kind;

#define INF_SCATTER 1   /* -INFINITY at about one entry in 11 */
#define INF_ROW 2       /* row special_row of the bias's last (batch, head): every key visible
                           to it -INFINITY (a row without keys), every invisible key +40 */

/* Poison: values no gradient may depend on. */
#define P_KEYS 1        /* k and v rows of keys that no query row sees: NaN, +Inf, -Inf */
#define P_ROWS 2        /* q and dout rows i >= Sq_b (padding): NaN */
#define P_EMPTY 4       /* q and dout rows i < Sq_b that see no key: NaN */

/* What the reference of a case must contain (checks the table itself). */
#define WANT_ZERO_Q 1   /* a dq row that must be exactly 0 */
#define WANT_ZERO_KV 2  /* a dk/dv row that must be exactly 0 */
#define WANT_NAN 4      /* a NaN batch (invalid seqlens) */

/* Layouts. */
#define L_DENSE 0       /* BHSD; gradients with guard bytes before and after */
#define L_PADDED 1      /* padded, permuted views with offsets, different per tensor */
#define L_BSHD 2        /* every tensor dense BSHD */
#define L_KV_BCAST 3    /* k and v shared by every batch (strides[0] = 0) */

typedef struct bw_window {
    int on;
    int64_t left, right;
} bw_window;
#define WIN(l, r) {1, (l), (r)}

typedef struct bw_case {
    const char *name;
    feature feature;
    int64_t B, Hq, Hkv, Sq, Sk, D, Dv;
    float scale;
    int causal;
    clattn_mask_align align;
    bw_window window;
    float softcap;
    bias_kind bias;
    int bias_inf;
    int64_t special_row;
    const int32_t *seqlens_q, *seqlens_k;
    float dropout_p;
    int layout;
    clattn_dtype out_dtype;    /* out and dout */
    clattn_dtype grad_dtype;   /* dq, dk, dv */
    int poison;
    int want;
    int dtypes;                /* the q/k/v dtypes that run it (ONLY_*); 0: all three */
} bw_case;

/* Each cold kernel variant costs seconds of PoCL compilation: the cases that only add a
   bucket or a storage combination run for fewer q/k/v dtypes (the arithmetic is f32 in every
   case; the 16-bit loads are exercised by every other case). */
#define ONLY_F32 (1 << CLATTN_F32)
#define ONLY_F16 (1 << CLATTN_F16)
#define ONLY_BF16 (1 << CLATTN_BF16)

#define SHAPE(b, hq, hkv, sq, sk, d, dv) \
    .B = (b), .Hq = (hq), .Hkv = (hkv), .Sq = (sq), .Sk = (sk), .D = (d), .Dv = (dv)
#define TL .align = CLATTN_ALIGN_TOP_LEFT
#define SEQ(...) ((const int32_t[]){__VA_ARGS__})

/* Shapes: PoCL compiles each kernel variant for seconds, and a variant is the storage dtypes,
   the head-dim buckets and the tiling, whose rows per work-item grow with the query rows
   (plan.c). So every case keeps B*Hq*Sq under 64 and Sq*Hq/Hkv (and Sk) at least 3, which on
   a CPU device plans the same tiling (4 rows per work-item) for the forward and both backward
   kernels; GQA cases still give a kv head up to 60 query rows, several tiles. Head dims are
   D = Dv = 32 except in the head-dim cases, which add the buckets 16, 128, 256 (D != Dv
   inside a bucket) and 32/16; the determinism test adds shapes with 32 rows per
   work-item. */
static const bw_case table[] = {
    /* plain */
    {"plain MHA", F_PLAIN, SHAPE(1, 2, 2, 31, 47, 32, 32)},
    {"plain Sq=1, 4 heads on one kv head", F_PLAIN, SHAPE(1, 4, 1, 1, 77, 32, 32)},
    {"plain Sq=Sk=3", F_PLAIN, SHAPE(1, 2, 1, 3, 3, 32, 32)},
    {"plain Sq=60 Sk=3", F_PLAIN, SHAPE(1, 1, 1, 60, 3, 32, 32)},
    {"plain B=3", F_PLAIN, SHAPE(3, 2, 2, 10, 37, 32, 32)},

    /* scale */
    {"scale 0.5", F_SCALE, SHAPE(1, 2, 1, 29, 41, 32, 32), .scale = 0.5f},
    {"scale -0.3, causal", F_SCALE, SHAPE(1, 2, 1, 29, 41, 32, 32), .scale = -0.3f,
     .causal = 1},
    {"scale 2 (sharp)", F_SCALE, SHAPE(1, 2, 2, 31, 40, 32, 32), .scale = 2.0f},

    /* causal, both aligns, Sq < Sk, Sq == Sk, Sq > Sk */
    {"causal BR Sq<Sk", F_CAUSAL, SHAPE(1, 2, 1, 30, 90, 32, 32), .causal = 1},
    {"causal BR Sq==Sk", F_CAUSAL, SHAPE(1, 1, 1, 63, 63, 32, 32), .causal = 1},
    {"causal BR Sq>Sk (rows without keys)", F_CAUSAL, SHAPE(1, 1, 1, 60, 23, 32, 32),
     .causal = 1, .poison = P_EMPTY, .want = WANT_ZERO_Q},
    {"causal TL Sq<Sk (keys no row sees)", F_CAUSAL, SHAPE(1, 2, 1, 30, 90, 32, 32),
     .causal = 1, TL, .poison = P_KEYS, .want = WANT_ZERO_KV},
    {"causal TL Sq==Sk", F_CAUSAL, SHAPE(1, 2, 2, 31, 31, 32, 32), .causal = 1, TL},
    {"causal TL Sq>Sk", F_CAUSAL, SHAPE(1, 1, 1, 60, 23, 32, 32), .causal = 1, TL},
    {"causal BR Sq=1", F_CAUSAL, SHAPE(1, 4, 1, 1, 90, 32, 32), .causal = 1},

    /* windows, with and without causal */
    {"window left 5, BR Sq<Sk", F_WINDOW, SHAPE(1, 2, 1, 30, 70, 32, 32),
     .window = WIN(5, -1), .poison = P_KEYS, .want = WANT_ZERO_KV},
    {"window right 3, TL Sq==Sk", F_WINDOW, SHAPE(1, 1, 1, 50, 50, 32, 32), TL,
     .window = WIN(-1, 3)},
    {"window (4,2), BR Sq>Sk", F_WINDOW, SHAPE(1, 1, 1, 60, 40, 32, 32), .window = WIN(4, 2),
     .poison = P_EMPTY, .want = WANT_ZERO_Q},
    {"window left 8 + causal BR Sq<Sk", F_WINDOW, SHAPE(1, 2, 1, 31, 64, 32, 32),
     .causal = 1, .window = WIN(8, -1), .poison = P_KEYS, .want = WANT_ZERO_KV},
    {"window left 3 + causal TL Sq>Sk", F_WINDOW, SHAPE(1, 1, 1, 60, 31, 32, 32),
     .causal = 1, TL, .window = WIN(3, -1)},
    {"window (0,0) TL: diagonal only", F_WINDOW, SHAPE(1, 2, 1, 30, 30, 32, 32), TL,
     .window = WIN(0, 0)},
    {"window (10,10) + causal BR", F_WINDOW, SHAPE(1, 1, 1, 63, 63, 32, 32), .causal = 1,
     .window = WIN(10, 10)},
    {"window (1,1) TL Sq<Sk", F_WINDOW, SHAPE(1, 2, 1, 20, 60, 32, 32), TL,
     .window = WIN(1, 1), .poison = P_KEYS, .want = WANT_ZERO_KV},

    /* softcap */
    {"softcap 5, scale 1", F_SOFTCAP, SHAPE(1, 2, 1, 30, 60, 32, 32), .scale = 1.0f,
     .softcap = 5.0f},
    {"softcap 2 + causal + full bias with -inf", F_SOFTCAP, SHAPE(2, 2, 1, 15, 47, 32, 32),
     .softcap = 2.0f, .causal = 1, .bias = BIAS_FULL, .bias_inf = INF_SCATTER},
    {"softcap 3, scale -1, window", F_SOFTCAP, SHAPE(1, 2, 2, 30, 30, 32, 32),
     .scale = -1.0f, .softcap = 3.0f, .window = WIN(6, 6)},

    /* bias: full and broadcast dims, -INFINITY entries, rows all -INFINITY */
    {"bias [B,Hq,Sq,Sk] with -inf", F_BIAS, SHAPE(2, 2, 1, 15, 57, 32, 32), .bias = BIAS_FULL,
     .bias_inf = INF_SCATTER},
    {"bias [1,Hq,Sq,Sk] + causal", F_BIAS, SHAPE(2, 2, 1, 15, 40, 32, 32),
     .bias = BIAS_BATCH1, .bias_inf = INF_SCATTER, .causal = 1},
    {"bias [B,1,Sq,Sk] + window", F_BIAS, SHAPE(2, 2, 2, 15, 50, 32, 32), .bias = BIAS_HEAD1,
     .window = WIN(7, 3)},
    {"bias [B,Hq,1,Sk] with -inf", F_BIAS, SHAPE(2, 2, 1, 15, 45, 32, 32), .bias = BIAS_ROW1,
     .bias_inf = INF_SCATTER},
    {"bias [1,1,1,Sk] with -inf (keys every row masks)", F_BIAS,
     SHAPE(2, 2, 2, 15, 64, 32, 32), .bias = BIAS_KEYS, .bias_inf = INF_SCATTER,
     .want = WANT_ZERO_KV},
    {"bias stride-0 over batch and heads", F_BIAS, SHAPE(2, 3, 1, 10, 39, 32, 32),
     .bias = BIAS_STRIDE0, .bias_inf = INF_SCATTER},
    {"bias row all -inf where visible (causal BR)", F_BIAS, SHAPE(2, 2, 1, 15, 50, 32, 32),
     .causal = 1, .bias = BIAS_FULL, .bias_inf = INF_ROW | INF_SCATTER, .special_row = 7,
     .want = WANT_ZERO_Q},
    {"bias [B,1,Sq,Sk] row all -inf (every head)", F_BIAS, SHAPE(2, 2, 2, 15, 30, 32, 32),
     .bias = BIAS_HEAD1, .bias_inf = INF_ROW, .special_row = 0, .want = WANT_ZERO_Q},

    /* seqlens: 0, partial, full, padded batches, invalid entries */
    {"seqlens_q {5,0,20}", F_SEQLENS, SHAPE(3, 1, 1, 20, 40, 32, 32),
     .seqlens_q = SEQ(5, 0, 20), .poison = P_ROWS, .want = WANT_ZERO_Q | WANT_ZERO_KV},
    {"seqlens_k {40,0,17}", F_SEQLENS, SHAPE(3, 1, 1, 20, 40, 32, 32),
     .seqlens_k = SEQ(40, 0, 17), .poison = P_KEYS, .want = WANT_ZERO_Q | WANT_ZERO_KV},
    {"seqlens q,k + causal BR", F_SEQLENS, SHAPE(3, 1, 1, 20, 40, 32, 32), .causal = 1,
     .seqlens_q = SEQ(10, 20, 1), .seqlens_k = SEQ(40, 12, 0), .poison = P_ROWS | P_KEYS,
     .want = WANT_ZERO_Q | WANT_ZERO_KV},
    {"seqlens q,k + causal TL + window", F_SEQLENS, SHAPE(2, 1, 1, 30, 45, 32, 32),
     .causal = 1, TL, .window = WIN(5, -1), .seqlens_q = SEQ(30, 20), .seqlens_k = SEQ(11, 45),
     .poison = P_ROWS | P_KEYS | P_EMPTY, .want = WANT_ZERO_Q | WANT_ZERO_KV},
    {"seqlens padded batch + full bias with -inf", F_SEQLENS, SHAPE(2, 2, 1, 15, 44, 32, 32),
     .bias = BIAS_FULL, .bias_inf = INF_SCATTER, .seqlens_q = SEQ(15, 7),
     .seqlens_k = SEQ(19, 44), .poison = P_ROWS | P_KEYS, .want = WANT_ZERO_Q | WANT_ZERO_KV},
    {"seqlens_q -1 (invalid): batch 0 NaN", F_SEQLENS, SHAPE(3, 1, 1, 20, 40, 32, 32),
     .seqlens_q = SEQ(-1, 20, 5), .want = WANT_NAN | WANT_ZERO_Q},
    {"seqlens_k 41 > Sk (invalid): batch 1 NaN", F_SEQLENS, SHAPE(3, 1, 1, 20, 40, 32, 32),
     .causal = 1, .seqlens_k = SEQ(12, 41, 40), .want = WANT_NAN},
    {"seqlens_q 11 > Sq (invalid), seqlens_k -5", F_SEQLENS, SHAPE(3, 2, 2, 10, 40, 32, 32),
     .seqlens_q = SEQ(11, 3, 10), .seqlens_k = SEQ(40, 40, -5), .want = WANT_NAN},

    /* GQA / MQA: dk, dv sum over the heads of a group */
    {"GQA 8:2 causal", F_GQA, SHAPE(1, 8, 2, 7, 45, 32, 32), .causal = 1},
    {"MQA 6:1", F_GQA, SHAPE(1, 6, 1, 10, 130, 32, 32)},
    {"GQA 6:3 window", F_GQA, SHAPE(1, 6, 3, 10, 50, 32, 32), .window = WIN(9, 2)},

    /* D != Dv, odd head dims */
    {"D 32 Dv 16 (buckets 32/16)", F_HEAD_DIMS, SHAPE(1, 2, 1, 31, 57, 32, 16),
     .dtypes = ONLY_F32},
    {"D 32 Dv 20 (one bucket)", F_HEAD_DIMS, SHAPE(1, 2, 1, 31, 57, 32, 20)},
    {"D 1 Dv 7 causal TL", F_HEAD_DIMS, SHAPE(1, 2, 2, 30, 30, 1, 7), .causal = 1, TL},
    {"D 1 Dv 1", F_HEAD_DIMS, SHAPE(1, 2, 1, 23, 29, 1, 1)},
    {"D 7 Dv 7 causal", F_HEAD_DIMS, SHAPE(1, 3, 1, 20, 29, 7, 7), .causal = 1},
    {"D 7 Dv 1 GQA", F_HEAD_DIMS, SHAPE(1, 4, 2, 15, 20, 7, 1)},
    {"D 72 Dv 72 causal", F_HEAD_DIMS, SHAPE(1, 2, 1, 30, 70, 72, 72), .causal = 1,
     .dtypes = ONLY_F32 | ONLY_F16},
    {"D 72 Dv 100", F_HEAD_DIMS, SHAPE(1, 1, 1, 40, 33, 72, 100),
     .dtypes = ONLY_F32 | ONLY_F16},
    {"D 256 Dv 256 causal", F_HEAD_DIMS, SHAPE(1, 2, 1, 30, 70, 256, 256), .causal = 1,
     .dtypes = ONLY_F32 | ONLY_BF16},
    {"D 256 Dv 160 GQA", F_HEAD_DIMS, SHAPE(1, 2, 1, 20, 40, 256, 160),
     .dtypes = ONLY_F32 | ONLY_BF16},
    {"D 320 Dv 500 causal (backward buckets 512)", F_HEAD_DIMS,
     SHAPE(1, 2, 1, 17, 23, 320, 500), .causal = 1, .dtypes = ONLY_F32},

    /* dropout: the forward and the backward share seed and offset */
    {"dropout 0.25", F_DROPOUT, SHAPE(1, 2, 2, 31, 47, 32, 32), .dropout_p = 0.25f},
    {"dropout 0.5 + causal + GQA", F_DROPOUT, SHAPE(1, 4, 2, 15, 40, 32, 32),
     .dropout_p = 0.5f, .causal = 1},
    {"dropout 0.1 + bias + seqlens + window", F_DROPOUT, SHAPE(2, 2, 1, 15, 44, 32, 32),
     .dropout_p = 0.1f, .bias = BIAS_FULL, .bias_inf = INF_SCATTER, .window = WIN(10, 3),
     .seqlens_q = SEQ(15, 9), .seqlens_k = SEQ(25, 44), .poison = P_ROWS | P_KEYS,
     .want = WANT_ZERO_Q | WANT_ZERO_KV},
    {"dropout 0.3 + softcap, Sq=1", F_DROPOUT, SHAPE(1, 4, 1, 1, 100, 32, 32),
     .dropout_p = 0.3f, .softcap = 4.0f},

    /* strided / permuted layouts and offsets */
    {"padded, permuted views with offsets (NaN between rows), causal + bias", F_LAYOUTS,
     SHAPE(2, 2, 1, 15, 53, 20, 24), .causal = 1, .layout = L_PADDED, .bias = BIAS_HEAD1,
     .bias_inf = INF_SCATTER},
    {"padded views + seqlens (NaN padding rows)", F_LAYOUTS, SHAPE(2, 2, 1, 15, 33, 32, 27),
     .layout = L_PADDED, .seqlens_q = SEQ(11, 15), .seqlens_k = SEQ(33, 20),
     .poison = P_ROWS | P_KEYS, .want = WANT_ZERO_Q | WANT_ZERO_KV},
    {"all BSHD", F_LAYOUTS, SHAPE(2, 2, 2, 15, 45, 32, 32), .layout = L_BSHD, .causal = 1},
    {"k, v shared by every batch (stride 0)", F_LAYOUTS, SHAPE(3, 2, 1, 10, 33, 32, 32),
     .layout = L_KV_BCAST},

    /* gradients (and out, dout) stored in 16 bits */
    {"out f16, grads f16, causal", F_OUT_F16_GRAD_F16, SHAPE(2, 2, 1, 15, 60, 32, 32),
     .causal = 1, .out_dtype = CLATTN_F16, .grad_dtype = CLATTN_F16,
     .dtypes = ONLY_F32 | ONLY_F16},
    {"out f16, grads f16, seqlens incl. invalid + bias", F_OUT_F16_GRAD_F16,
     SHAPE(3, 1, 1, 20, 40, 32, 32), .out_dtype = CLATTN_F16, .grad_dtype = CLATTN_F16,
     .bias = BIAS_KEYS, .bias_inf = INF_SCATTER, .seqlens_q = SEQ(20, 12, 21),
     .seqlens_k = SEQ(0, 40, 20), .poison = P_ROWS | P_KEYS,
     .want = WANT_ZERO_Q | WANT_ZERO_KV | WANT_NAN, .dtypes = ONLY_F32 | ONLY_F16},
    {"grads bf16, GQA + dropout", F_GRAD_BF16, SHAPE(1, 4, 2, 15, 47, 32, 32),
     .grad_dtype = CLATTN_BF16, .dropout_p = 0.2f, .dtypes = ONLY_F32 | ONLY_BF16},
    {"grads bf16, padded layouts", F_GRAD_BF16, SHAPE(2, 2, 2, 15, 41, 32, 32),
     .grad_dtype = CLATTN_BF16, .layout = L_PADDED, .window = WIN(6, -1), .causal = 1,
     .dtypes = ONLY_F32 | ONLY_BF16},
};
#define N_CASES (sizeof table / sizeof table[0])

static const char *dtype_name(clattn_dtype t)
{
    return t == CLATTN_F16 ? "f16" : t == CLATTN_BF16 ? "bf16" : "f32";
}

/* ---- one case ---------------------------------------------------------------------------- */

typedef struct bw_run {
    test_tensor q, k, v, out, lse, dout, dq, dk, dv, bias;
    int has_bias;
    cl_mem seqlens_q, seqlens_k;
    int64_t poisoned;          /* elements set to NaN/Inf inside input views */
} bw_run;

/* Gradients get 64 bytes before and 48 after their view: a write past either end shows. */
static const test_layout LAYOUT_GUARDED = {"bhsd+guard", {0, 1, 2, 3}, {0, 0, 0, 0}, 64, 48};

static void bias_dims(const bw_case *c, int64_t dims[4], int64_t strides[4])
{
    int64_t b = c->B, h = c->Hq, s = c->Sq;
    switch (c->bias) {
    case BIAS_BATCH1: b = 1; break;
    case BIAS_HEAD1: h = 1; break;
    case BIAS_ROW1: s = 1; break;
    case BIAS_KEYS: b = h = s = 1; break;
    default: break;
    }
    dims[0] = b;
    dims[1] = h;
    dims[2] = s;
    dims[3] = c->Sk;
    strides[0] = c->bias == BIAS_STRIDE0 ? 0 : h * s * c->Sk;
    strides[1] = c->bias == BIAS_STRIDE0 ? 0 : s * c->Sk;
    strides[2] = c->Sk;
    strides[3] = 1;
}

static void desc_of(const bw_run *r, const bw_case *c, uint64_t index, clattn_attention_desc *d)
{
    clattn_attention_desc_init(d);
    d->scale = c->scale;
    d->causal = c->causal;
    d->align = c->align;
    d->window_left = c->window.on ? c->window.left : -1;
    d->window_right = c->window.on ? c->window.right : -1;
    d->softcap = c->softcap;
    d->bias = r->has_bias ? &r->bias.view : NULL;
    d->seqlens_q = r->seqlens_q;
    d->seqlens_k = r->seqlens_k;
    d->dropout_p = c->dropout_p;
    /* high bits in both: the seed uses all 64, the offset only its low 32 */
    d->dropout_seed = 0x9e3779b97f4a7c15ull ^ (index * 0x100000001ull);
    d->dropout_offset = (index * 977u) | (7ull << 40);
}

/* The reference's parameters, bias not set. */
static ref_params params_of(const bw_case *c, const clattn_attention_desc *d)
{
    ref_params p = test_ref_params_of(d);
    p.seqlens_q = c->seqlens_q;
    p.seqlens_k = c->seqlens_k;
    return p;
}

static void plant_bias_inf(bw_run *r, const bw_case *c, const ref_params *p)
{
    test_tensor *t = &r->bias;
    const int64_t *n = t->view.dims;
    if (c->bias_inf & INF_SCATTER)
        for (int64_t b = 0; b < n[0]; b++)
            for (int64_t h = 0; h < n[1]; h++)
                for (int64_t i = 0; i < n[2]; i++)
                    for (int64_t j = 0; j < n[3]; j++)
                        if ((i * 7 + j * 3 + b * 5 + h) % 11 == 0)
                            tt_set(t, b, h, i, j, -INFINITY);
    if (c->bias_inf & INF_ROW) {
        cr_assert(n[2] == c->Sq && c->special_row < c->Sq, "%s: INF_ROW needs bias rows",
                  c->name);
        int64_t b = n[0] - 1, h = n[1] - 1, i = c->special_row;
        int64_t sq_b = ref_seq_q(p, n[0] == 1 ? 0 : b, c->Sq);
        int64_t sk_b = ref_seq_k(p, n[0] == 1 ? 0 : b, c->Sk);
        for (int64_t j = 0; j < c->Sk; j++)
            tt_set(t, b, h, i, j, ref_key_visible(p, sq_b, sk_b, i, j) ? -INFINITY : 40.0);
    }
}

static int batch_valid(const ref_params *p, int64_t b, int64_t sq, int64_t sk)
{
    int64_t sq_b = ref_seq_q(p, b, sq), sk_b = ref_seq_k(p, b, sk);
    return sq_b >= 0 && sq_b <= sq && sk_b >= 0 && sk_b <= sk;
}

/* NaN, +Inf and -Inf into the k and v rows of keys that no row of their batch sees (the
   mask alone: keys masked only by -INFINITY bias take part in the score and stay clean). */
static void poison_keys(bw_run *r, const bw_case *c, const ref_params *p)
{
    const double bad[3] = {NAN, INFINITY, -INFINITY};
    cr_assert(c->layout != L_KV_BCAST, "%s: k, v shared by batches cannot be poisoned",
              c->name);
    for (int64_t b = 0; b < c->B; b++) {
        if (!batch_valid(p, b, c->Sq, c->Sk))
            continue;
        int64_t sq_b = ref_seq_q(p, b, c->Sq), sk_b = ref_seq_k(p, b, c->Sk);
        for (int64_t j = 0; j < c->Sk; j++) {
            int seen = 0;
            for (int64_t i = 0; i < sq_b && !seen; i++)
                seen = ref_key_visible(p, sq_b, sk_b, i, j);
            if (seen)
                continue;
            for (int64_t g = 0; g < c->Hkv; g++) {
                for (int64_t d = 0; d < c->D; d++)
                    tt_set(&r->k, b, g, j, d, bad[(j + d) % 3]);
                for (int64_t d = 0; d < c->Dv; d++)
                    tt_set(&r->v, b, g, j, d, bad[(j + d + 1) % 3]);
                r->poisoned += c->D + c->Dv;
            }
        }
    }
}

/* NaN into the q and dout rows of padding rows (P_ROWS) and of rows that see no key
   (P_EMPTY). */
static void poison_rows(bw_run *r, const bw_case *c, const ref_params *p)
{
    for (int64_t b = 0; b < c->B; b++) {
        if (!batch_valid(p, b, c->Sq, c->Sk))
            continue;
        int64_t sq_b = ref_seq_q(p, b, c->Sq), sk_b = ref_seq_k(p, b, c->Sk);
        for (int64_t i = 0; i < c->Sq; i++) {
            int hit;
            if (i >= sq_b)
                hit = (c->poison & P_ROWS) != 0;
            else {
                int any = 0;
                for (int64_t j = 0; j < sk_b && !any; j++)
                    any = ref_key_visible(p, sq_b, sk_b, i, j);
                hit = !any && (c->poison & P_EMPTY);
            }
            if (!hit)
                continue;
            for (int64_t h = 0; h < c->Hq; h++) {
                for (int64_t d = 0; d < c->D; d++)
                    tt_set(&r->q, b, h, i, d, NAN);
                for (int64_t d = 0; d < c->Dv; d++)
                    tt_set(&r->dout, b, h, i, d, NAN);
                r->poisoned += c->D + c->Dv;
            }
        }
    }
}

static void build(bw_run *r, const bw_case *c, clattn_dtype dt, uint64_t index)
{
    memset(r, 0, sizeof *r);
    const int64_t qd[4] = {c->B, c->Hq, c->Sq, c->D}, kd[4] = {c->B, c->Hkv, c->Sk, c->D},
                  vd[4] = {c->B, c->Hkv, c->Sk, c->Dv}, od[4] = {c->B, c->Hq, c->Sq, c->Dv},
                  ld[4] = {c->B, c->Hq, c->Sq, 1};
    const test_layout *lq = &LAYOUT_BHSD, *lk = lq, *lv = lq, *lo = lq, *ldo = lq, *ll = lq,
                      *ldq = &LAYOUT_GUARDED, *ldk = ldq, *ldv = ldq;
    if (c->layout == L_PADDED) {
        lq = &LAYOUT_BSHD_PADDED;
        lk = &LAYOUT_SBHD_PADDED;
        lv = &LAYOUT_BHSD_PADDED;
        lo = &LAYOUT_BSHD_PADDED;
        ldo = &LAYOUT_SBHD_PADDED;
        ll = &LAYOUT_SBHD_PADDED;
        ldq = &LAYOUT_BHSD_PADDED;
        ldk = &LAYOUT_BSHD_PADDED;
        ldv = &LAYOUT_SBHD_PADDED;
    } else if (c->layout == L_BSHD) {
        lq = lk = lv = lo = ldo = ldq = ldk = ldv = &LAYOUT_BSHD;
    }
    tt_init(&r->q, dt, qd, lq);
    if (c->layout == L_KV_BCAST) {
        const int64_t ks[4] = {0, c->Sk * c->D, c->D, 1}, vs[4] = {0, c->Sk * c->Dv, c->Dv, 1};
        tt_init_strided(&r->k, dt, kd, ks, 8, 16);
        tt_init_strided(&r->v, dt, vd, vs, 4, 12);
    } else {
        tt_init(&r->k, dt, kd, lk);
        tt_init(&r->v, dt, vd, lv);
    }
    tt_init(&r->out, c->out_dtype, od, lo);
    tt_init(&r->dout, c->out_dtype, od, ldo);
    tt_init(&r->lse, CLATTN_F32, ld, ll);
    tt_init(&r->dq, c->grad_dtype, qd, ldq);
    tt_init(&r->dk, c->grad_dtype, kd, ldk);
    tt_init(&r->dv, c->grad_dtype, vd, ldv);

    test_rng rng;
    rng_seed(&rng, 0xbac0000u + index * 31 + (uint64_t)dt);
    tt_fill_random(&r->q, &rng, -1.0, 1.0);
    tt_fill_random(&r->k, &rng, -1.0, 1.0);
    tt_fill_random(&r->v, &rng, -0.5, 1.5);
    tt_fill_random(&r->dout, &rng, -1.0, 1.0);
    /* bytes outside the input views: a kernel that reads them gets NaN or Inf */
    tt_fill_outside(&r->q, NAN);
    tt_fill_outside(&r->k, INFINITY);
    tt_fill_outside(&r->v, NAN);
    tt_fill_outside(&r->dout, NAN);

    clattn_attention_desc d;
    desc_of(r, c, index, &d);
    ref_params p = params_of(c, &d);
    if (c->bias != BIAS_NONE) {
        int64_t bd[4], bs[4];
        bias_dims(c, bd, bs);
        tt_init_strided(&r->bias, CLATTN_F32, bd, bs, 2 * sizeof(float), 8);
        tt_fill_random(&r->bias, &rng, -1.5, 1.5);
        plant_bias_inf(r, c, &p);
        tt_fill_outside(&r->bias, NAN);
        r->has_bias = 1;
        tt_upload(&r->bias, CL_MEM_READ_ONLY);
    }
    if (c->poison & P_KEYS)
        poison_keys(r, c, &p);
    if (c->poison & (P_ROWS | P_EMPTY))
        poison_rows(r, c, &p);
    cr_assert(!c->poison || r->poisoned > 0, "table: %s poisons nothing", c->name);

    tt_upload(&r->q, CL_MEM_READ_ONLY);
    tt_upload(&r->k, CL_MEM_READ_ONLY);
    tt_upload(&r->v, CL_MEM_READ_ONLY);
    tt_upload(&r->dout, CL_MEM_READ_ONLY);
    tt_upload(&r->out, CL_MEM_READ_WRITE);
    tt_upload(&r->lse, CL_MEM_READ_WRITE);
    tt_upload(&r->dq, CL_MEM_READ_WRITE);
    tt_upload(&r->dk, CL_MEM_READ_WRITE);
    tt_upload(&r->dv, CL_MEM_READ_WRITE);
    size_t lens = (size_t)c->B * sizeof(int32_t);
    if (c->seqlens_q)
        r->seqlens_q = buf_new(CL_MEM_READ_ONLY, lens, c->seqlens_q);
    if (c->seqlens_k)
        r->seqlens_k = buf_new(CL_MEM_READ_ONLY, lens, c->seqlens_k);
}

static void run_free(bw_run *r)
{
    test_tensor *all[] = {&r->q, &r->k, &r->v, &r->out, &r->lse, &r->dout, &r->dq, &r->dk,
                          &r->dv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tt_free(all[i]);
    if (r->has_bias)
        tt_free(&r->bias);
    if (r->seqlens_q)
        clReleaseMemObject(r->seqlens_q);
    if (r->seqlens_k)
        clReleaseMemObject(r->seqlens_k);
    memset(r, 0, sizeof *r);
}

static void wait_and_release(cl_event ev, const char *label)
{
    cr_assert_not_null(ev, "%s: no event returned", label);
    cr_assert_eq(clWaitForEvents(1, &ev), CL_SUCCESS, "%s: clWaitForEvents", label);
    cl_int status = -1;
    cr_assert_eq(clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status,
                                NULL), CL_SUCCESS);
    cr_assert_eq(status, CL_COMPLETE, "%s: event status %d", label, status);
    clReleaseEvent(ev);
}

static clattn_status forward_of(bw_run *r, const clattn_attention_desc *d)
{
    return clattn_attention_forward(test_ctx(), d, &r->q.view, &r->k.view, &r->v.view,
                                    &r->out.view, &r->lse.view, 0, NULL, NULL);
}

static clattn_status backward_of(bw_run *r, const clattn_attention_desc *d, cl_uint num_wait,
                                 const cl_event *wait_list, cl_event *event)
{
    return clattn_attention_backward(test_ctx(), d, &r->q.view, &r->k.view, &r->v.view,
                                     &r->out.view, &r->dout.view, &r->lse.view, &r->dq.view,
                                     &r->dk.view, &r->dv.view, num_wait, wait_list, event);
}

/* A copy of every byte of a buffer as the device holds it now. */
static unsigned char *device_bytes(const test_tensor *t)
{
    unsigned char *s = malloc(t->bytes ? t->bytes : 1);
    cr_assert_not_null(s);
    buf_read(t->view.buffer, t->bytes, s);
    return s;
}

/* ---- comparing the gradients -------------------------------------------------------------- */

typedef struct grad_cmp {
    cmp_result dq, dk, dv;
} grad_cmp;

/* The reference of r and the three comparisons; checks the table's WANT flags. */
static grad_cmp compare_case(bw_run *r, const bw_case *c, const clattn_attention_desc *d,
                             const char *label)
{
    ref_params p = params_of(c, d);
    test_grads g;
    test_reference_backward_of(p, &r->q, &r->k, &r->v, &r->dout, r->has_bias ? &r->bias : NULL,
                               &g);
    double *bias_store = NULL;
    ref_tensor rb;
    if (r->has_bias) {
        rb = tt_to_ref(&r->bias, &bias_store);
        p.bias = &rb;
    }
    unsigned char *zq, *zkv;
    test_grad_zero_rows(&p, c->B, c->Hq, c->Hkv, c->Sq, c->Sk, &zq, &zkv);
    int64_t zero_q = 0, zero_kv = 0, nan = 0;
    for (int64_t i = 0; i < c->B * c->Hq * c->Sq; i++)
        zero_q += zq[i];
    for (int64_t i = 0; i < c->B * c->Hkv * c->Sk; i++)
        zero_kv += zkv[i];
    for (int64_t i = 0; i < ref_numel(&g.dq); i++)
        nan += isnan(g.dq_data[i]) != 0;
    cr_assert(!(c->want & WANT_ZERO_Q) || zero_q > 0, "table: %s has no zero dq row", c->name);
    cr_assert(!(c->want & WANT_ZERO_KV) || zero_kv > 0, "table: %s has no zero dk row",
              c->name);
    cr_assert(((c->want & WANT_NAN) != 0) == (nan > 0), "table: %s: %ld NaN in the reference",
              c->name, (long)nan);
    (void)label;

    grad_cmp out;
    out.dq = compare_grad(&r->dq, &g.dq, zq);
    out.dk = compare_grad(&r->dk, &g.dk, zkv);
    out.dv = compare_grad(&r->dv, &g.dv, zkv);
    free(zq);
    free(zkv);
    free(bias_store);
    test_grads_free(&g);
    return out;
}

static void expect_grads(const grad_cmp *g, double tol, const char *label)
{
    char buf[256];
    cr_expect(g->dq.worst <= tol && g->dq.hard == 0, "%s: dq %s (tolerance %g)", label,
              cmp_describe(&g->dq, buf, sizeof buf), tol);
    cr_expect(g->dk.worst <= tol && g->dk.hard == 0, "%s: dk %s (tolerance %g)", label,
              cmp_describe(&g->dk, buf, sizeof buf), tol);
    cr_expect(g->dv.worst <= tol && g->dv.hard == 0, "%s: dv %s (tolerance %g)", label,
              cmp_describe(&g->dv, buf, sizeof buf), tol);
}

static void expect_guard_intact(const test_tensor *t, const char *name, const char *label)
{
    size_t first;
    size_t bad = tt_outside_damage(t, &first);
    cr_expect_eq(bad, 0, "%s: %zu bytes around the %s view changed (first at byte %zu of %zu)",
                 label, bad, name, first, t->bytes);
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

static void fold(totals *t, const bw_case *c, const grad_cmp *g, double tol)
{
    feature_totals *f = &t->f[c->feature];
    const cmp_result *r[3] = {&g->dq, &g->dk, &g->dv};
    for (int i = 0; i < 3; i++) {
        if (f->cases == 0 || r[i]->worst > f->g[i].worst)
            snprintf(f->where[i], sizeof f->where[i], "%s", c->name);
        if (f->cases == 0)
            f->g[i] = cmp_none();
        cmp_merge(&f->g[i], r[i]);
    }
    if (tol > f->tol)
        f->tol = tol;
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

static void run_case(const bw_case *c, size_t index, clattn_dtype dt, totals *t)
{
    char label[200];
    snprintf(label, sizeof label, "[q/k/v %s] #%zu %s", dtype_name(dt), index, c->name);
    bw_run r;
    build(&r, c, dt, index);
    clattn_attention_desc d;
    desc_of(&r, c, index, &d);

    clattn_status st = forward_of(&r, &d);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: forward: %s: %s", label, clattn_status_string(st),
                 clattn_last_error());
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    unsigned char *before[6];
    const test_tensor *inputs[6] = {&r.q, &r.k, &r.v, &r.out, &r.lse, &r.dout};
    const char *input_names[6] = {"q", "k", "v", "out", "lse", "dout"};
    for (int i = 0; i < 6; i++)
        before[i] = device_bytes(inputs[i]);

    cl_event ev = (cl_event)&ev;   /* not NULL: the call sets it */
    st = backward_of(&r, &d, 0, NULL, &ev);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: backward: %s: %s", label, clattn_status_string(st),
                 clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "%s: last error after success: %s", label,
                        clattn_last_error());
    wait_and_release(ev, label);

    tt_download(&r.dq);
    tt_download(&r.dk);
    tt_download(&r.dv);
    grad_cmp g = compare_case(&r, c, &d, label);
    double tol = test_grad_tolerance(c->grad_dtype, c->out_dtype);
    expect_grads(&g, tol, label);
    fold(t, c, &g, tol);
    t->poisoned += r.poisoned;

    expect_guard_intact(&r.dq, "dq", label);
    expect_guard_intact(&r.dk, "dk", label);
    expect_guard_intact(&r.dv, "dv", label);
    for (int i = 0; i < 6; i++) {
        unsigned char *now = device_bytes(inputs[i]);
        cr_expect(memcmp(now, before[i], inputs[i]->bytes) == 0,
                  "%s: the backward wrote its input %s", label, input_names[i]);
        free(now);
        free(before[i]);
    }
    run_free(&r);
}

ParameterizedTestParameters(backward, every_feature_per_dtype)
{
    static clattn_dtype dtypes[] = {CLATTN_F32, CLATTN_F16, CLATTN_BF16};
    return cr_make_param_array(clattn_dtype, dtypes, sizeof dtypes / sizeof dtypes[0]);
}

ParameterizedTest(clattn_dtype *dt, backward, every_feature_per_dtype, .timeout = 600)
{
    char what[32];
    snprintf(what, sizeof what, "q/k/v %s", dtype_name(*dt));
    totals t;
    memset(&t, 0, sizeof t);
    test_ctx();
    int skipped = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        if (table[i].dtypes && !(table[i].dtypes & (1 << *dt))) {
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

Test(backward, repeated_calls_give_identical_bits, .timeout = 300)
{
    /* Several key and query blocks (S = 300), GQA and MQA (dk, dv reduced over a group),
       dropout and bias: three calls, each on fresh canary, give the same bytes in every
       gradient buffer; the first also matches the reference. */
    const bw_case cases[] = {
        {"GQA 4:1 S=300 causal", F_GQA, SHAPE(1, 4, 1, 300, 300, 32, 32), .causal = 1},
        {"MQA 8:1 Sq=70 Sk=300 dropout + bias", F_DROPOUT, SHAPE(2, 8, 1, 70, 300, 32, 32),
         .dropout_p = 0.2f, .bias = BIAS_HEAD1, .bias_inf = INF_SCATTER},
        {"GQA 4:2 Sq=300 Sk=129 seqlens, grads f16", F_SEQLENS,
         SHAPE(2, 4, 2, 300, 129, 32, 32), .seqlens_q = SEQ(300, 211),
         .seqlens_k = SEQ(77, 129), .grad_dtype = CLATTN_F16},
    };
    test_ctx();
    for (size_t n = 0; n < sizeof cases / sizeof cases[0]; n++) {
        const bw_case *c = &cases[n];
        bw_run r;
        build(&r, c, CLATTN_F32, 1000 + n);
        clattn_attention_desc d;
        desc_of(&r, c, 1000 + n, &d);
        TEST_CHECK_STATUS(forward_of(&r, &d), c->name);
        test_tensor *grads[3] = {&r.dq, &r.dk, &r.dv};
        unsigned char *first[3] = {NULL, NULL, NULL};
        for (int call = 0; call < 3; call++) {
            for (int i = 0; i < 3; i++)
                buf_fill_canary(grads[i]->view.buffer);
            TEST_CHECK_STATUS(backward_of(&r, &d, 0, NULL, NULL), c->name);
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
                             c->name, call + 1, i == 0 ? "dq" : i == 1 ? "dk" : "dv", at);
                free(now);
            }
        }
        for (int i = 0; i < 3; i++) {
            memcpy(grads[i]->host, first[i], grads[i]->bytes);
            free(first[i]);
        }
        grad_cmp g = compare_case(&r, c, &d, c->name);
        double tol = test_grad_tolerance(c->grad_dtype, c->out_dtype);
        expect_grads(&g, tol, c->name);
        cr_log_info("%s: bit-identical over 3 calls; dq %.2e, dk %.2e, dv %.2e", c->name,
                    g.dq.worst, g.dk.worst, g.dv.worst);
        run_free(&r);
    }
}

/* ---- events and wait lists ---------------------------------------------------------------- */

static const bw_case events_case = {"events", F_PLAIN, SHAPE(1, 2, 1, 31, 47, 32, 32),
                                    .causal = 1};

/* The backward waits on the forward's event (no clFinish between them) and is right. */
static void backward_after_the_forwards_event(bw_run *r, const clattn_attention_desc *d)
{
    cl_event fwd = NULL, bwd = NULL;
    TEST_CHECK_STATUS(clattn_attention_forward(test_ctx(), d, &r->q.view, &r->k.view, &r->v.view,
                                               &r->out.view, &r->lse.view, 0, NULL, &fwd),
                      "forward");
    TEST_CHECK_STATUS(backward_of(r, d, 1, &fwd, &bwd), "backward after the forward's event");
    wait_and_release(bwd, "backward");
    wait_and_release(fwd, "forward");
    tt_download(&r->dq);
    tt_download(&r->dk);
    tt_download(&r->dv);
    grad_cmp g = compare_case(r, &events_case, d, "chained");
    expect_grads(&g, TOL_F32_GRAD, "backward chained on the forward's event");
}

Test(backward, event_and_wait_list, .timeout = 120)
{
    bw_run r;
    build(&r, &events_case, CLATTN_F32, 2000);
    clattn_attention_desc d;
    desc_of(&r, &events_case, 2000, &d);
    backward_after_the_forwards_event(&r, &d);
    run_free(&r);
}

Test(backward, waits_for_a_user_event, .timeout = 120)
{
    const char *deadlock = test_gated_command_deadlocks();   /* before the first OpenCL call */
    if (deadlock)
        cr_skip_test("setting the user event would hang this test: %s", deadlock);
    bw_run r;
    build(&r, &events_case, CLATTN_F32, 2000);
    clattn_attention_desc d;
    desc_of(&r, &events_case, 2000, &d);
    /* first ungated, so that the kernels are built and only the wait list holds the call */
    backward_after_the_forwards_event(&r, &d);

    /* A user event holds it: nothing may complete (or be written) before the gate opens. */
    buf_fill_canary(r.dq.view.buffer);
    buf_fill_canary(r.dk.view.buffer);
    buf_fill_canary(r.dv.view.buffer);
    cl_event gate = test_user_event();
    cl_event bwd = NULL;
    TEST_CHECK_STATUS(backward_of(&r, &d, 1, &gate, &bwd), "backward behind a user event");
    test_expect_held_by(gate, bwd, "the backward");
    wait_and_release(bwd, "backward behind a user event");
    clReleaseEvent(gate);
    tt_download(&r.dq);
    tt_download(&r.dk);
    tt_download(&r.dv);
    grad_cmp g = compare_case(&r, &events_case, &d, "gated");
    expect_grads(&g, TOL_F32_GRAD, "backward behind a user event");
    cr_log_info("waits_for_a_user_event: dq %.2e, dk %.2e, dv %.2e", g.dq.worst, g.dk.worst,
                g.dv.worst);
    run_free(&r);
}

/* ---- bad input of the backward's arguments ------------------------------------------------ */

/* The valid problem: every dim differs, so a message can name the one that is wrong. */
enum { B = 2, HQ = 4, HKV = 2, SQ = 5, SK = 7, D = 8, DV = 6 };

/* A head dim over the backward's limit (CLATTN_MAX_BACKWARD_HEAD_DIM = 1024). */
#define WIDE_DIM 1040

typedef struct fixture {
    test_tensor q, k, v, out, lse, dout, dq, dk, dv, bias;
    unsigned char *input_bytes[7];   /* q, k, v, out, lse, dout, bias as the device holds them */
    cl_mem grad_big;    /* room for dq, dk, dv back to back and 64 bytes */
    cl_mem lse_big;     /* lse plus 64 bytes */
    cl_mem ro_dq;       /* CL_MEM_READ_ONLY, dq-sized */
    cl_mem wo_dout;     /* CL_MEM_WRITE_ONLY, dout-sized, holding dout */
    cl_mem short_dk;    /* one element smaller than dk needs */
    cl_mem short_lens;  /* 4 bytes: seqlens for one batch of two */
    test_tensor q_wide, k_wide, dq_wide, dk_wide;        /* D = WIDE_DIM */
    test_tensor v_wide, out_wide, dout_wide, dv_wide;    /* Dv = WIDE_DIM */
    test_grads ref;
} fixture;

typedef struct bcall {
    clattn_context *ctx;
    clattn_attention_desc desc;
    clattn_tensor q, k, v, out, dout, lse, dq, dk, dv;
    const clattn_attention_desc *descp;
    const clattn_tensor *qp, *kp, *vp, *outp, *doutp, *lsep, *dqp, *dkp, *dvp;
    cl_uint num_wait;
    const cl_event *wait_list;
} bcall;

static void call_init(bcall *a, const fixture *f)
{
    memset(a, 0, sizeof *a);
    a->ctx = test_ctx();
    clattn_attention_desc_init(&a->desc);
    a->q = f->q.view;
    a->k = f->k.view;
    a->v = f->v.view;
    a->out = f->out.view;
    a->dout = f->dout.view;
    a->lse = f->lse.view;
    a->dq = f->dq.view;
    a->dk = f->dk.view;
    a->dv = f->dv.view;
    a->descp = &a->desc;
    a->qp = &a->q;
    a->kp = &a->k;
    a->vp = &a->v;
    a->outp = &a->out;
    a->doutp = &a->dout;
    a->lsep = &a->lse;
    a->dqp = &a->dq;
    a->dkp = &a->dk;
    a->dvp = &a->dv;
}

static clattn_status call_run(const bcall *a, cl_event *event)
{
    return clattn_attention_backward(a->ctx, a->descp, a->qp, a->kp, a->vp, a->outp, a->doutp,
                                     a->lsep, a->dqp, a->dkp, a->dvp, a->num_wait, a->wait_list,
                                     event);
}

static void fixture_tensor(test_tensor *t, clattn_dtype dt, int64_t b, int64_t h, int64_t s,
                           int64_t d, test_rng *rng, double lo, double hi, cl_mem_flags flags)
{
    const int64_t dims[4] = {b, h, s, d};
    tt_init(t, dt, dims, &LAYOUT_BHSD);
    if (rng)
        tt_fill_random(t, rng, lo, hi);
    tt_upload(t, flags);
}

static void fixture_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    test_rng rng;
    rng_seed(&rng, 4242);
    /* inputs read-write, so that an output pointed into them is wrong only by aliasing */
    fixture_tensor(&f->q, CLATTN_F32, B, HQ, SQ, D, &rng, -1, 1, CL_MEM_READ_WRITE);
    fixture_tensor(&f->k, CLATTN_F32, B, HKV, SK, D, &rng, -1, 1, CL_MEM_READ_WRITE);
    fixture_tensor(&f->v, CLATTN_F32, B, HKV, SK, DV, &rng, -0.5, 1.5, CL_MEM_READ_WRITE);
    fixture_tensor(&f->dout, CLATTN_F32, B, HQ, SQ, DV, &rng, -1, 1, CL_MEM_READ_WRITE);
    fixture_tensor(&f->out, CLATTN_F32, B, HQ, SQ, DV, NULL, 0, 0, CL_MEM_READ_WRITE);
    fixture_tensor(&f->lse, CLATTN_F32, B, HQ, SQ, 1, NULL, 0, 0, CL_MEM_READ_WRITE);
    fixture_tensor(&f->dq, CLATTN_F32, B, HQ, SQ, D, NULL, 0, 0, CL_MEM_READ_WRITE);
    fixture_tensor(&f->dk, CLATTN_F32, B, HKV, SK, D, NULL, 0, 0, CL_MEM_READ_WRITE);
    fixture_tensor(&f->dv, CLATTN_F32, B, HKV, SK, DV, NULL, 0, 0, CL_MEM_READ_WRITE);
    fixture_tensor(&f->bias, CLATTN_F32, 1, 1, 1, SK, &rng, -1, 1, CL_MEM_READ_ONLY);

    f->grad_big = buf_new(CL_MEM_READ_WRITE, f->dq.bytes + f->dk.bytes + f->dv.bytes + 64,
                          NULL);
    f->lse_big = buf_new(CL_MEM_READ_WRITE, f->lse.bytes + 64, NULL);
    f->ro_dq = buf_new(CL_MEM_READ_ONLY, f->dq.bytes, NULL);
    f->wo_dout = buf_new(CL_MEM_WRITE_ONLY, f->dout.bytes, f->dout.host);
    f->short_dk = buf_new(CL_MEM_READ_WRITE, f->dk.bytes - 4, NULL);
    const int32_t one[1] = {SQ};
    f->short_lens = buf_new(CL_MEM_READ_ONLY, sizeof one, one);

    fixture_tensor(&f->q_wide, CLATTN_F32, B, HQ, SQ, WIDE_DIM, &rng, -1, 1, CL_MEM_READ_ONLY);
    fixture_tensor(&f->k_wide, CLATTN_F32, B, HKV, SK, WIDE_DIM, &rng, -1, 1, CL_MEM_READ_ONLY);
    fixture_tensor(&f->dq_wide, CLATTN_F32, B, HQ, SQ, WIDE_DIM, NULL, 0, 0, CL_MEM_READ_WRITE);
    fixture_tensor(&f->dk_wide, CLATTN_F32, B, HKV, SK, WIDE_DIM, NULL, 0, 0, CL_MEM_READ_WRITE);
    fixture_tensor(&f->v_wide, CLATTN_F32, B, HKV, SK, WIDE_DIM, &rng, -1, 1, CL_MEM_READ_ONLY);
    fixture_tensor(&f->out_wide, CLATTN_F32, B, HQ, SQ, WIDE_DIM, &rng, -1, 1, CL_MEM_READ_ONLY);
    fixture_tensor(&f->dout_wide, CLATTN_F32, B, HQ, SQ, WIDE_DIM, &rng, -1, 1, CL_MEM_READ_ONLY);
    fixture_tensor(&f->dv_wide, CLATTN_F32, B, HKV, SK, WIDE_DIM, NULL, 0, 0, CL_MEM_READ_WRITE);

    /* out and lse from the forward, once: they are inputs of every backward call below */
    clattn_attention_desc d;
    clattn_attention_desc_init(&d);
    TEST_CHECK_STATUS(clattn_attention_forward(test_ctx(), &d, &f->q.view, &f->k.view,
                                               &f->v.view, &f->out.view, &f->lse.view, 0, NULL,
                                               NULL), "fixture forward");
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    const test_tensor *in[7] = {&f->q, &f->k, &f->v, &f->out, &f->lse, &f->dout, &f->bias};
    for (int i = 0; i < 7; i++)
        f->input_bytes[i] = device_bytes(in[i]);
    ref_params p;
    ref_params_init(&p);
    test_reference_backward_of(p, &f->q, &f->k, &f->v, &f->dout, NULL, &f->ref);
}

static void fixture_free(fixture *f)
{
    test_tensor *all[] = {&f->q, &f->k, &f->v, &f->out, &f->lse, &f->dout, &f->dq, &f->dk,
                          &f->dv, &f->bias, &f->q_wide, &f->k_wide, &f->dq_wide, &f->dk_wide,
                          &f->v_wide, &f->out_wide, &f->dout_wide, &f->dv_wide};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tt_free(all[i]);
    cl_mem extra[] = {f->grad_big, f->lse_big, f->ro_dq, f->wo_dout, f->short_dk,
                      f->short_lens};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        clReleaseMemObject(extra[i]);
    for (int i = 0; i < 7; i++)
        free(f->input_bytes[i]);
    test_grads_free(&f->ref);
}

/* Canary into every buffer an output of a case may point at. */
static void reset_outputs(fixture *f)
{
    const cl_mem outs[] = {f->dq.view.buffer, f->dk.view.buffer, f->dv.view.buffer,
                           f->grad_big, f->short_dk, f->dq_wide.view.buffer,
                           f->dk_wide.view.buffer, f->dv_wide.view.buffer};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        buf_fill_canary(outs[i]);
}

/* No gradient buffer written, no input changed. */
static void expect_untouched(const fixture *f, const char *label)
{
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    const cl_mem canaried[] = {f->dq.view.buffer, f->dk.view.buffer, f->dv.view.buffer,
                               f->grad_big, f->short_dk, f->ro_dq, f->dq_wide.view.buffer,
                               f->dk_wide.view.buffer, f->dv_wide.view.buffer, f->lse_big};
    const char *names[] = {"dq", "dk", "dv", "grad_big", "short dk", "read-only dq", "dq_wide",
                           "dk_wide", "dv_wide", "lse_big"};
    for (size_t i = 0; i < sizeof canaried / sizeof canaried[0]; i++) {
        size_t first;
        cr_expect(buf_canary_intact(canaried[i], &first), "%s: %s written (byte %zu)", label,
                  names[i], first);
    }
    const test_tensor *in[7] = {&f->q, &f->k, &f->v, &f->out, &f->lse, &f->dout, &f->bias};
    const char *in_names[7] = {"q", "k", "v", "out", "lse", "dout", "bias"};
    for (int i = 0; i < 7; i++) {
        unsigned char *now = device_bytes(in[i]);
        cr_expect(memcmp(now, f->input_bytes[i], in[i]->bytes) == 0, "%s: input %s changed",
                  label, in_names[i]);
        free(now);
    }
}

/* A valid backward on the same context: succeeds, clears the last error, matches the
   reference, writes only inside the gradient views. */
static void expect_context_usable(fixture *f, const char *label)
{
    bcall a;
    call_init(&a, f);
    cl_event ev = NULL;
    clattn_status st = call_run(&a, &ev);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: the valid call after it: %s: %s", label,
                 clattn_status_string(st), clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "%s: last error after a success: \"%s\"", label,
                        clattn_last_error());
    wait_and_release(ev, label);
    tt_download(&f->dq);
    tt_download(&f->dk);
    tt_download(&f->dv);
    grad_cmp g = {compare_grad(&f->dq, &f->ref.dq, NULL), compare_grad(&f->dk, &f->ref.dk, NULL),
                  compare_grad(&f->dv, &f->ref.dv, NULL)};
    char text[200];
    snprintf(text, sizeof text, "%s: the valid call after it", label);
    expect_grads(&g, TOL_F32_GRAD, text);
}

static int contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return 1;
    return n == 0;
}

/* Matches alternatives "a|b|c" case-insensitively. */
static int names_any(const char *msg, const char *alternatives)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", alternatives);
    for (char *save = NULL, *tok = strtok_r(buf, "|", &save); tok;
         tok = strtok_r(NULL, "|", &save))
        if (contains_nocase(msg, tok))
            return 1;
    return 0;
}

static void expect_rejected(fixture *f, const char *label, clattn_status st, cl_event ev,
                            clattn_status want, const char *names, const char *names2)
{
    const char *msg = clattn_last_error();
    cr_log_info("%-46s -> %s: %s", label, clattn_status_string(st), msg);
    cr_expect_eq(st, want, "%s: got %s (%s), want %s", label, clattn_status_string(st), msg,
                 clattn_status_string(want));
    cr_expect(msg && *msg, "%s: empty clattn_last_error()", label);
    if (names && msg)
        cr_expect(names_any(msg, names), "%s: message \"%s\" does not name %s", label, msg,
                  names);
    if (names2 && msg)
        cr_expect(names_any(msg, names2), "%s: message \"%s\" does not name %s", label, msg,
                  names2);
    cr_expect_null(ev, "%s: *event not NULL after a failure", label);
    if (st == CLATTN_SUCCESS && ev)
        wait_and_release(ev, label);
    expect_untouched(f, label);
    expect_context_usable(f, label);
    reset_outputs(f);
}

typedef void (*mutate_fn)(bcall *a, fixture *f);

typedef struct bad_case {
    const char *name;
    mutate_fn mutate;
    clattn_status want;
    const char *names;    /* the message names one of these ("a|b"); NULL: only non-empty */
    const char *names2;   /* and one of these */
} bad_case;

#define MUTATION(name) static void name(bcall *a, fixture *f)

MUTATION(ctx_null) { (void)f; a->ctx = NULL; }
MUTATION(desc_null) { (void)f; a->descp = NULL; }
MUTATION(dout_null) { (void)f; a->doutp = NULL; }
MUTATION(lse_null) { (void)f; a->lsep = NULL; }
MUTATION(dq_null) { (void)f; a->dqp = NULL; }
MUTATION(dk_null) { (void)f; a->dkp = NULL; }
MUTATION(dv_null) { (void)f; a->dvp = NULL; }
MUTATION(dout_buffer_null) { (void)f; a->dout.buffer = NULL; }
MUTATION(dq_buffer_null) { (void)f; a->dq.buffer = NULL; }
MUTATION(dv_buffer_null) { (void)f; a->dv.buffer = NULL; }
MUTATION(dout_seq_short) { (void)f; a->dout.dims[2] = SQ - 1; }
MUTATION(dout_dim_short) { (void)f; a->dout.dims[3] = DV - 1; }
MUTATION(dout_heads_short) { (void)f; a->dout.dims[1] = HQ / 2; }
MUTATION(dout_dims_zero) { (void)f; a->dout.dims[0] = 0; }
MUTATION(out_seq_short) { (void)f; a->out.dims[2] = SQ - 1; }
MUTATION(dq_seq_short) { (void)f; a->dq.dims[2] = SQ - 1; }
MUTATION(dq_dim_short) { (void)f; a->dq.dims[3] = D - 1; }
MUTATION(dq_batch_short) { (void)f; a->dq.dims[0] = 1; }
MUTATION(dk_heads_short) { (void)f; a->dk.dims[1] = 1; }
MUTATION(dk_seq_short) { (void)f; a->dk.dims[2] = SK - 1; }
MUTATION(dk_dim_short) { (void)f; a->dk.dims[3] = D - 1; }
MUTATION(dv_dim_short) { (void)f; a->dv.dims[3] = DV - 1; }
MUTATION(dv_seq_short) { (void)f; a->dv.dims[2] = SK - 1; }
MUTATION(dv_heads_short) { (void)f; a->dv.dims[1] = 1; }
MUTATION(lse_dim_two) { a->lse.buffer = f->lse_big; a->lse.dims[3] = 2; }
MUTATION(lse_seq_short) { (void)f; a->lse.dims[2] = SQ - 1; }
MUTATION(lse_heads_short) { (void)f; a->lse.dims[1] = HQ / 2; }
MUTATION(lse_f16) { (void)f; a->lse.dtype = CLATTN_F16; }
MUTATION(lse_bf16) { (void)f; a->lse.dtype = CLATTN_BF16; }
MUTATION(dout_f16) { (void)f; a->dout.dtype = CLATTN_F16; }
MUTATION(out_bf16) { (void)f; a->out.dtype = CLATTN_BF16; }
MUTATION(dout_dtype_7) { (void)f; a->dout.dtype = (clattn_dtype)7; }
MUTATION(dk_f16) { (void)f; a->dk.dtype = CLATTN_F16; }
MUTATION(dv_bf16) { (void)f; a->dv.dtype = CLATTN_BF16; }
MUTATION(dq_f16) { (void)f; a->dq.dtype = CLATTN_F16; }
MUTATION(dq_dtype_7) { (void)f; a->dq.dtype = (clattn_dtype)7; }
MUTATION(dq_past_end) { (void)f; a->dq.offset = sizeof(float); }
MUTATION(dk_short_buffer) { a->dk.buffer = f->short_dk; }
MUTATION(dv_past_end) { (void)f; a->dv.offset = sizeof(float); }
MUTATION(dout_past_end) { (void)f; a->dout.offset = sizeof(float); }
MUTATION(lse_past_end) { (void)f; a->lse.offset = sizeof(float); }
MUTATION(dq_offset_misaligned) { a->dq.buffer = f->grad_big; a->dq.offset = 2; }
MUTATION(dq_rows_overlap) { (void)f; a->dq.strides[2] = 0; }
MUTATION(dk_heads_overlap) { (void)f; a->dk.strides[1] = 0; }
MUTATION(dv_inner_stride_0) { (void)f; a->dv.strides[3] = 0; }
MUTATION(dq_negative_stride)
{
    (void)f;
    a->dq.strides[1] = -SQ * D;
    a->dq.offset = (HQ - 1) * SQ * D * sizeof(float);
}
MUTATION(dq_is_q) { (void)f; a->dq.buffer = a->q.buffer; }
MUTATION(dk_is_k) { (void)f; a->dk.buffer = a->k.buffer; }
MUTATION(dv_in_out) { (void)f; a->dv.buffer = a->out.buffer; }
MUTATION(dv_in_dout) { (void)f; a->dv.buffer = a->dout.buffer; a->dv.offset = 8; }
MUTATION(dk_in_lse_big)
{
    /* lse and dk in one buffer, dk's first element on lse's last */
    (void)f;
    a->lse.buffer = a->dk.buffer = f->grad_big;
    a->dk.offset = f->lse.bytes - sizeof(float);
}
MUTATION(dq_overlaps_dk)
{
    a->dq.buffer = a->dk.buffer = f->grad_big;
    a->dk.offset = f->dq.bytes - 2 * sizeof(float);   /* meets dq's last two elements */
}
MUTATION(dk_overlaps_dv)
{
    a->dk.buffer = a->dv.buffer = f->grad_big;
    a->dv.offset = f->dk.bytes - sizeof(float);
}
MUTATION(dq_read_only) { a->dq.buffer = f->ro_dq; }
MUTATION(dout_write_only) { a->dout.buffer = f->wo_dout; }
MUTATION(algo_split_kv) { (void)f; a->desc.algo = CLATTN_ALGO_SPLIT_KV; }
MUTATION(algo_unfused) { (void)f; a->desc.algo = CLATTN_ALGO_UNFUSED; }
MUTATION(algo_9) { (void)f; a->desc.algo = (clattn_algo)9; }
MUTATION(causal_2) { (void)f; a->desc.causal = 2; }
MUTATION(dropout_one) { (void)f; a->desc.dropout_p = 1.0f; }
MUTATION(bias_short) { a->desc.bias = &f->bias.view; f->bias.view.dims[3] = SK - 1; }
MUTATION(seqlens_q_short) { a->desc.seqlens_q = f->short_lens; }
MUTATION(head_dim_wide)
{
    a->q = f->q_wide.view;
    a->k = f->k_wide.view;
    a->dq = f->dq_wide.view;
    a->dk = f->dk_wide.view;
}
MUTATION(value_dim_wide)
{
    a->v = f->v_wide.view;
    a->out = f->out_wide.view;
    a->dout = f->dout_wide.view;
    a->dv = f->dv_wide.view;
}
MUTATION(head_dim_wide_fused) { head_dim_wide(a, f); a->desc.algo = CLATTN_ALGO_FUSED; }
MUTATION(wait_list_null) { (void)f; a->num_wait = 1; a->wait_list = NULL; }

#define INVALID CLATTN_ERROR_INVALID_ARGUMENT
#define TOO_SMALL CLATTN_ERROR_BUFFER_TOO_SMALL
#define UNSUPPORTED CLATTN_ERROR_UNSUPPORTED

static const bad_case backward_cases[] = {
    {"ctx NULL", ctx_null, INVALID, "ctx", NULL},
    {"desc NULL", desc_null, INVALID, "desc", NULL},
    {"dout NULL", dout_null, INVALID, "dout", NULL},
    {"lse NULL", lse_null, INVALID, "lse", NULL},
    {"dq NULL", dq_null, INVALID, "dq", NULL},
    {"dk NULL", dk_null, INVALID, "dk", NULL},
    {"dv NULL", dv_null, INVALID, "dv", NULL},
    {"dout.buffer NULL", dout_buffer_null, INVALID, "dout", NULL},
    {"dq.buffer NULL", dq_buffer_null, INVALID, "dq", NULL},
    {"dv.buffer NULL", dv_buffer_null, INVALID, "dv", NULL},
    {"dout seq != out seq", dout_seq_short, INVALID, "dout.dims[2]", NULL},
    {"dout dim != out dim", dout_dim_short, INVALID, "dout.dims[3]", NULL},
    {"dout heads != out heads", dout_heads_short, INVALID, "dout.dims[1]", NULL},
    {"dout.dims[0] = 0", dout_dims_zero, INVALID, "dout.dims[0]", NULL},
    {"out seq != q seq", out_seq_short, INVALID, "out.dims[2]", NULL},
    {"dq seq != q seq", dq_seq_short, INVALID, "dq.dims[2]", NULL},
    {"dq dim != q dim", dq_dim_short, INVALID, "dq.dims[3]", NULL},
    {"dq batch != q batch", dq_batch_short, INVALID, "dq.dims[0]", NULL},
    {"dk heads != k heads", dk_heads_short, INVALID, "dk.dims[1]", NULL},
    {"dk seq != k seq", dk_seq_short, INVALID, "dk.dims[2]", NULL},
    {"dk dim != k dim", dk_dim_short, INVALID, "dk.dims[3]", NULL},
    {"dv dim != v dim", dv_dim_short, INVALID, "dv.dims[3]", NULL},
    {"dv seq != v seq", dv_seq_short, INVALID, "dv.dims[2]", NULL},
    {"dv heads != v heads", dv_heads_short, INVALID, "dv.dims[1]", NULL},
    {"lse.dims[3] = 2", lse_dim_two, INVALID, "lse", NULL},
    {"lse seq != q seq", lse_seq_short, INVALID, "lse", NULL},
    {"lse heads != q heads", lse_heads_short, INVALID, "lse", NULL},
    {"lse f16", lse_f16, INVALID, "lse", NULL},
    {"lse bf16", lse_bf16, INVALID, "lse", NULL},
    {"dout f16, out f32", dout_f16, INVALID, "dout", NULL},
    {"out bf16, dout f32", out_bf16, INVALID, "out", NULL},
    {"dout.dtype 7", dout_dtype_7, INVALID, "dout", NULL},
    {"dk f16, dq and dv f32", dk_f16, INVALID, "dk", NULL},
    {"dv bf16, dq and dk f32", dv_bf16, INVALID, "dv", NULL},
    {"dq f16, dk and dv f32", dq_f16, INVALID, "dq", NULL},
    {"dq.dtype 7", dq_dtype_7, INVALID, "dq", NULL},
    {"dq one element past its buffer", dq_past_end, TOO_SMALL, "dq", NULL},
    {"dk buffer one element short", dk_short_buffer, TOO_SMALL, "dk", NULL},
    {"dv one element past its buffer", dv_past_end, TOO_SMALL, "dv", NULL},
    {"dout one element past its buffer", dout_past_end, TOO_SMALL, "dout", NULL},
    {"lse one element past its buffer", lse_past_end, TOO_SMALL, "lse", NULL},
    {"dq.offset = 2", dq_offset_misaligned, INVALID, "dq.offset", NULL},
    {"dq rows overlap (stride 0)", dq_rows_overlap, INVALID, "dq", NULL},
    {"dk heads overlap (stride 0)", dk_heads_overlap, INVALID, "dk", NULL},
    {"dv.strides[3] = 0", dv_inner_stride_0, INVALID, "dv", NULL},
    {"dq.strides[1] < 0", dq_negative_stride, INVALID, "dq.strides[1]", NULL},
    {"dq aliases q", dq_is_q, INVALID, "alias", "dq"},
    {"dk aliases k", dk_is_k, INVALID, "alias", "dk"},
    {"dv inside out", dv_in_out, INVALID, "alias", "dv"},
    {"dv inside dout", dv_in_dout, INVALID, "alias", "dv"},
    {"dk meets lse", dk_in_lse_big, INVALID, "alias", "dk"},
    {"dq overlaps dk", dq_overlaps_dk, INVALID, "alias", "dq"},
    {"dk overlaps dv", dk_overlaps_dv, INVALID, "alias", "dv"},
    {"dq READ_ONLY", dq_read_only, INVALID, "dq", NULL},
    {"dout WRITE_ONLY", dout_write_only, INVALID, "dout", NULL},
    {"algo SPLIT_KV", algo_split_kv, UNSUPPORTED, "algo|split", NULL},
    {"algo UNFUSED", algo_unfused, UNSUPPORTED, "algo|unfused", NULL},
    {"algo 9", algo_9, INVALID, "desc->algo", NULL},
    {"causal 2", causal_2, INVALID, "desc->causal", NULL},
    {"dropout_p 1", dropout_one, INVALID, "desc->dropout_p", NULL},
    {"bias [1,1,1,Sk-1]", bias_short, INVALID, "bias", NULL},
    {"seqlens_q buffer of 1 entry for B=2", seqlens_q_short, TOO_SMALL, "seqlens_q", NULL},
    {"head dim 1040 (AUTO)", head_dim_wide, UNSUPPORTED, "1040|head", NULL},
    {"head dim 1040 (FUSED)", head_dim_wide_fused, UNSUPPORTED, "1040|head", NULL},
    {"value head dim 1040", value_dim_wide, UNSUPPORTED, "1040|head", NULL},
    {"num_wait 1, wait_list NULL", wait_list_null, INVALID, "wait_list", NULL},
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
        const bad_case *c = &backward_cases[i];
        bcall a;
        call_init(&a, &f);
        c->mutate(&a, &f);
        cl_event ev = (cl_event)&ev;   /* not NULL: a failing call must clear it */
        clattn_status st = call_run(&a, &ev);
        f.bias.view.dims[3] = SK;      /* undo bias_short */
        expect_rejected(&f, c->name, st, ev, c->want, c->names, c->names2);
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
    bcall a;
    call_init(&a, &f);
    a.dq.buffer = a.dk.buffer = a.dv.buffer = f.grad_big;
    a.dk.offset = f.dq.bytes;
    a.dv.offset = f.dq.bytes + f.dk.bytes;
    cl_event ev = NULL;
    clattn_status st = call_run(&a, &ev);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s", clattn_status_string(st), clattn_last_error());
    cr_assert_str_empty(clattn_last_error());
    wait_and_release(ev, "touching gradients");
    size_t total = f.dq.bytes + f.dk.bytes + f.dv.bytes + 64;
    unsigned char *all = malloc(total);
    cr_assert_not_null(all);
    buf_read(f.grad_big, total, all);
    test_tensor got[3] = {f.dq, f.dk, f.dv};   /* the same views over other host copies */
    got[0].view = a.dq;
    got[1].view = a.dk;
    got[2].view = a.dv;
    for (int i = 0; i < 3; i++) {
        got[i].host = all;
        got[i].bytes = total;
    }
    grad_cmp g = {compare_grad(&got[0], &f.ref.dq, NULL), compare_grad(&got[1], &f.ref.dk, NULL),
                  compare_grad(&got[2], &f.ref.dv, NULL)};
    expect_grads(&g, TOL_F32_GRAD, "touching gradients");
    size_t end = a.dv.offset + f.dv.bytes;
    for (size_t i = end; i < total; i++)
        cr_expect_eq(all[i], canary_byte(i), "byte %zu after dv changed", i);
    cr_log_info("touching gradients: dq %.2e, dk %.2e, dv %.2e", g.dq.worst, g.dk.worst,
                g.dv.worst);
    free(all);
    fixture_free(&f);
}
