/*
 * common.cl — helpers shared by every clattn kernel: storage types, vectors of width VEC, the
 * addressing of tensors, the mask of a batch, dropout factors and score transforms (the
 * arithmetic of the mask and of dropout is semantics.h's, shared with the host).
 *
 * Storage types are loaded and stored through the helpers below; all arithmetic is f32.
 * f16 uses vload_half / vstore_half_rte and bf16 bit shifts, so no extension is required.
 *
 * Tunables (set by the host through -D, see src/plan.c clattn_tiling_build_options):
 *   QKV_TYPE    storage type of q, k, v: F32, F16 or BF16                  default F32
 *   OUT_TYPE    storage type of out: F32, F16 or BF16                      default F32
 *   BIAS_TYPE   storage type of the additive bias: F32, F16 or BF16        default F32
 *   GRAD_TYPE   storage type of dq, dk, dv (backward): F32, F16 or BF16     default F32
 *   VEC         width of the floatv vector type: 1, 2, 4, 8 or 16         default 4
 */

/* ---- storage types ---------------------------------------------------------------------- */

#define CLATTN_CAT2(a, b) a##b
#define CLATTN_CAT(a, b) CLATTN_CAT2(a, b)

#define STORAGE_F32 float
#define STORAGE_F16 half
#define STORAGE_BF16 ushort
#define LOAD_F32(p, i) ((p)[(i)])
#define LOAD_F16(p, i) vload_half((i), (p))
#define LOAD_BF16(p, i) as_float((uint)(p)[(i)] << 16)
#define STORE_F32(p, i, x) ((p)[(i)] = (x))
#define STORE_F16(p, i, x) vstore_half_rte((x), (i), (p))
#define STORE_BF16(p, i, x) ((p)[(i)] = float_to_bf16(x))

/* Round to nearest even; NaN stays a (quiet) NaN. */
static ushort float_to_bf16(float x)
{
    uint bits = as_uint(x);
    if (isnan(x))
        return (ushort)((bits >> 16) | 0x0040u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (ushort)(bits >> 16);
}

#ifndef QKV_TYPE
#define QKV_TYPE F32
#endif
#ifndef OUT_TYPE
#define OUT_TYPE F32
#endif
#ifndef BIAS_TYPE
#define BIAS_TYPE F32
#endif
#ifndef GRAD_TYPE
#define GRAD_TYPE F32
#endif

/* 1 when q, k and v are stored as f32 (QKV_IS_F32), for choices made at compile time */
#define STORED_AS_F32_F32 1
#define STORED_AS_F32_F16 0
#define STORED_AS_F32_BF16 0
#define QKV_IS_F32 CLATTN_CAT(STORED_AS_F32_, QKV_TYPE)

typedef CLATTN_CAT(STORAGE_, QKV_TYPE) qkv_t;
typedef CLATTN_CAT(STORAGE_, OUT_TYPE) out_t;
typedef CLATTN_CAT(STORAGE_, BIAS_TYPE) bias_t;
typedef CLATTN_CAT(STORAGE_, GRAD_TYPE) grad_t;
#define LOAD_QKV(p, i) CLATTN_CAT(LOAD_, QKV_TYPE)(p, i)
#define LOAD_OUT(p, i) CLATTN_CAT(LOAD_, OUT_TYPE)(p, i)
#define STORE_OUT(p, i, x) CLATTN_CAT(STORE_, OUT_TYPE)(p, i, x)
#define LOAD_BIAS(p, i) CLATTN_CAT(LOAD_, BIAS_TYPE)(p, i)
#define LOAD_GRAD(p, i) CLATTN_CAT(LOAD_, GRAD_TYPE)(p, i)
#define STORE_GRAD(p, i, x) CLATTN_CAT(STORE_, GRAD_TYPE)(p, i, x)

/* Running maxima start at the most negative finite float, not -INFINITY (exp(-inf - -inf) is
   NaN, and some compilers fold it wrongly): every finite score is at least this, so a row whose
   visible scores are all -FLT_MAX still has its keys, and only -INFINITY scores weigh 0. */
#define NEG_BIG (-FLT_MAX)

/* ---- vectors ---------------------------------------------------------------------------- */

#ifndef VEC
#define VEC 4
#endif

#define HSUM2(x)  ((x).s0 + (x).s1)
#define HSUM4(x)  HSUM2((x).s01 + (x).s23)
#define HSUM8(x)  HSUM4((x).s0123 + (x).s4567)
#define HSUM16(x) HSUM8((x).s01234567 + (x).s89abcdef)
#define HMAX2(x)  fmax((x).s0, (x).s1)
#define HMAX4(x)  HMAX2(fmax((x).s01, (x).s23))
#define HMAX8(x)  HMAX4(fmax((x).s0123, (x).s4567))
#define HMAX16(x) HMAX8(fmax((x).s01234567, (x).s89abcdef))

#if VEC == 1
typedef float floatv;
typedef int intv;
#define VLOAD(i, p)     ((p)[(i)])
#define VLOAD_F16(i, p) vload_half((i), (p))
#define VSTORE_F16(x, i, p) vstore_half_rte((x), (i), (p))
#define VLOAD_BF16(i, p) as_float((uint)(p)[(i)] << 16)
#define VSTORE(x, i, p) ((p)[(i)] = (x))
#define IOTA            0
#define TO_FLOATV(x)    convert_float(x)
#define HSUM(x)         (x)
#define HMAX(x)         (x)
#elif VEC == 2
typedef float2 floatv;
typedef int2 intv;
#define VLOAD(i, p)     vload2((i), (p))
#define VLOAD_F16(i, p) vload_half2((i), (p))
#define VSTORE_F16(x, i, p) vstore_half2_rte((x), (i), (p))
#define VLOAD_BF16(i, p) as_float2(convert_uint2(vload2((i), (p))) << 16)
#define VSTORE(x, i, p) vstore2((x), (i), (p))
#define IOTA            ((int2)(0, 1))
#define TO_FLOATV(x)    convert_float2(x)
#define HSUM(x)         HSUM2(x)
#define HMAX(x)         HMAX2(x)
#elif VEC == 4
typedef float4 floatv;
typedef int4 intv;
#define VLOAD(i, p)     vload4((i), (p))
#define VLOAD_F16(i, p) vload_half4((i), (p))
#define VSTORE_F16(x, i, p) vstore_half4_rte((x), (i), (p))
#define VLOAD_BF16(i, p) as_float4(convert_uint4(vload4((i), (p))) << 16)
#define VSTORE(x, i, p) vstore4((x), (i), (p))
#define IOTA            ((int4)(0, 1, 2, 3))
#define TO_FLOATV(x)    convert_float4(x)
#define HSUM(x)         HSUM4(x)
#define HMAX(x)         HMAX4(x)
#elif VEC == 8
typedef float8 floatv;
typedef int8 intv;
#define VLOAD(i, p)     vload8((i), (p))
#define VLOAD_F16(i, p) vload_half8((i), (p))
#define VSTORE_F16(x, i, p) vstore_half8_rte((x), (i), (p))
#define VLOAD_BF16(i, p) as_float8(convert_uint8(vload8((i), (p))) << 16)
#define VSTORE(x, i, p) vstore8((x), (i), (p))
#define IOTA            ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#define TO_FLOATV(x)    convert_float8(x)
#define HSUM(x)         HSUM8(x)
#define HMAX(x)         HMAX8(x)
#elif VEC == 16
typedef float16 floatv;
typedef int16 intv;
#define VLOAD(i, p)     vload16((i), (p))
#define VLOAD_F16(i, p) vload_half16((i), (p))
#define VSTORE_F16(x, i, p) vstore_half16_rte((x), (i), (p))
#define VLOAD_BF16(i, p) as_float16(convert_uint16(vload16((i), (p))) << 16)
#define VSTORE(x, i, p) vstore16((x), (i), (p))
#define IOTA            ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define TO_FLOATV(x)    convert_float16(x)
#define HSUM(x)         HSUM16(x)
#define HMAX(x)         HMAX16(x)
#else
#error "VEC must be 1, 2, 4, 8 or 16"
#endif
#define VLOAD_F32(i, p) VLOAD(i, p)
#define VSTORE_F32(x, i, p) VSTORE(x, i, p)
#define VSTORE_BF16(x, i, p) vstore_bf16_lanes((x), (i), (p))

/* Vector i of a bf16 array from VEC floats, each rounded as STORE_BF16. */
static void vstore_bf16_lanes(floatv x, int i, __global ushort *p)
{
    float lane[VEC];
    VSTORE(x, 0, lane);
    for (int e = 0; e < VEC; e++)
        p[i * VEC + e] = float_to_bf16(lane[e]);
}

/* VEC consecutive elements (vector i) of a storage type, as floats. */
#define VLOAD_QKV(i, p) CLATTN_CAT(VLOAD_, QKV_TYPE)(i, p)
#define VLOAD_OUT(i, p) CLATTN_CAT(VLOAD_, OUT_TYPE)(i, p)
#define VSTORE_OUT(x, i, p) CLATTN_CAT(VSTORE_, OUT_TYPE)(x, i, p)

/* Asks the cache for the `bytes` bytes at p, one 64-byte line at a time, where the kernel is
   compiled for a CPU (PoCL on x86 or Arm): hardware prefetchers stop at each 4 KiB page, and
   decode, which streams K and V once, waits on memory without it (measured on PoCL: 1.2-1.7x
   faster with it). clang's __builtin_prefetch, since PoCL compiles OpenCL's prefetch() to
   nothing; it never faults, so p may lie past the data. Nothing elsewhere (GPUs). */
#if defined(__x86_64__) || defined(__aarch64__)
#define PREFETCH_GLOBAL(p, bytes)                                                                \
    for (int line_ = 0; line_ < (bytes); line_ += 64)                                            \
    __builtin_prefetch((__global const char *)(p) + line_, 0, 3)
#else
#define PREFETCH_GLOBAL(p, bytes) ((void)0)
#endif

/* ---- tensors ---------------------------------------------------------------------------- */

/* Element offset of row [b, h, s] of a view (launch.h). */
static long view_row(const clattn_view_params *v, long b, long h, long s)
{
    return v->offset + b * v->batch_stride + h * v->head_stride + s * v->seq_stride;
}

/* The rows of one [seq, dim] slice of a tensor (one batch and head): q, k, v in qkv_t, out and
   dout in out_t. slice_row_* is the one address helper of such rows: every K and V row the
   kernels read is addressed through it (dense today: row j at base + j * stride), so a paged
   cache or a block format changes the slice and its helper, not the kernels. */
#define DEFINE_SLICE(suffix, elem_t)                                                             \
    typedef struct slice_##suffix {                                                              \
        __global const elem_t *base;                                                             \
        long stride;                                                                             \
    } slice_##suffix;                                                                            \
    static void slice_of_##suffix(slice_##suffix *s, __global const elem_t *x,                   \
                                  const clattn_view_params *v, long b, long h)                   \
    {                                                                                            \
        s->base = x + view_row(v, b, h, 0);                                                      \
        s->stride = v->seq_stride;                                                               \
    }                                                                                            \
    static __global const elem_t *slice_row_##suffix(slice_##suffix s, long j)                   \
    {                                                                                            \
        return s.base + j * s.stride;                                                            \
    }

DEFINE_SLICE(qkv, qkv_t)
DEFINE_SLICE(out, out_t)

/* ---- sums ------------------------------------------------------------------------------- */

/* Compensated sums (VEC lanes, or one float: _1): a value is sum + comp, comp holding what
   rounding took from sum, so that the error of a long sum stays that of a few operations
   instead of growing with the number of terms.
     add_compensated*:  sum + comp += y (Neumaier's addition);
     scale_exactly*:    sum + comp *= f, the product's rounding error kept in comp (an FMA
                        gives it exactly). */
#define DEFINE_COMPENSATED(suffix, type)                                                         \
    static void add_compensated##suffix(type *sum, type *comp, type y)                           \
    {                                                                                            \
        const type s = *sum, t = s + y;                                                          \
        *comp += select((y - t) + s, (s - t) + y, isgreaterequal(fabs(s), fabs(y)));             \
        *sum = t;                                                                                \
    }                                                                                            \
    static void scale_exactly##suffix(type *sum, type *comp, type f)                             \
    {                                                                                            \
        const type p = *sum * f;                                                                 \
        *comp = fma(*comp, f, fma(*sum, f, -p));                                                 \
        *sum = p;                                                                                \
    }
DEFINE_COMPENSATED(, floatv)
DEFINE_COMPENSATED(_1, float)

/* ---- the mask ---------------------------------------------------------------------------- */

/* *m: the mask of batch b (semantics.h), with its valid lengths from the seqlens buffers when
   the call has them, else the dims. Returns 0 when an entry is outside [0, dim]: that batch's
   rows are then all NaN (and nothing is read past the dims). */
static int batch_mask(const clattn_attention_params *a, __global const int *seqlens_q,
                      __global const int *seqlens_k, long b, clattn_mask *m)
{
    const int sq = (a->flags & ATTENTION_SEQLENS_Q) ? seqlens_q[b] : a->seq_q;
    const int sk = (a->flags & ATTENTION_SEQLENS_K) ? seqlens_k[b] : a->seq_k;
    clattn_mask_init(m, a, sq, sk);
    return sq >= 0 && sq <= a->seq_q && sk >= 0 && sk <= a->seq_k;
}

/* ---- dropout ----------------------------------------------------------------------------- */

/* The factor of key j's weight for query i of head bh = b * Hq + h (semantics.h): 0 if
   dropped, 1 / (1 - p) if kept. */
static float dropout_factor(const clattn_dropout_params *dp, long bh, long i, long j)
{
    return clattn_dropout_kept(dp, bh, i, j) ? dp->keep_scale : 0.0f;
}

/* dropout_factor of VEC pairs: lane e is query i + e * di, key j + e * dj. */
static floatv dropout_lanes(const clattn_dropout_params *dp, long bh, long i, int di, long j,
                            int dj)
{
    float lane[VEC];
    for (int e = 0; e < VEC; e++)
        lane[e] = dropout_factor(dp, bh, i + e * di, j + e * dj);
    return VLOAD(0, lane);
}

/* dropout_factor of VEC rows of batch b (query heads row_h, query rows row_i, of heads_q
   heads) against key j, in vector lanes. */
static floatv dropout_of_rows(const clattn_dropout_params *dp, long b, int heads_q,
                              const int *row_h, const long *row_i, long j)
{
    float lane[VEC];
    for (int e = 0; e < VEC; e++)
        lane[e] = dropout_factor(dp, b * heads_q + row_h[e], row_i[e], j);
    return VLOAD(0, lane);
}

/* ---- scores ------------------------------------------------------------------------------ */

/* The score of a dot product q.k (launch.h clattn_attention_params): scale after the dot
   product, then softcap; natural units (the bias is added as it is). Dividing by softcap, not
   multiplying by its inverse, keeps a tiny softcap finite: tanh(inf) is 1. Works on floats and
   floatv. */
#define SCORE(dot, scale, softcap)                                                               \
    ((softcap) != 0.0f ? (softcap) * tanh((dot) * (scale) / (softcap)) : (dot) * (scale))

/* exp(x - m) * 2^-shift, for x <= m (m a running maximum): as exp2 of (x - m) log2(e), so that
   neither x nor m is multiplied before the difference (a score near FLT_MAX stays finite). */
#define EXP_BELOW(x, m, shift) exp2(((x) - (m)) * M_LOG2E_F - (shift))

/* ---- sinks -------------------------------------------------------------------------------- */

/* A row whose keys give *lse (-inf: none) when the sink logit joins its softmax denominator:
   *lse becomes log(exp(*lse) + exp(sink)) and the returned factor, exp(old *lse - new *lse) in
   [0, 1] (0 for a row without keys), scales its output. NaN in either stays NaN. */
static float join_sink(float *lse, float sink)
{
    const float keys = *lse, top = fmax(keys, sink);
    if (top == -INFINITY)   /* neither: the row stays empty */
        return 0.0f;
    *lse = top + log(exp(keys - top) + exp(sink - top));
    return keys == -INFINITY ? 0.0f : exp(keys - *lse);
}
