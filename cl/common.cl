/*
 * common.cl — helpers shared by every clattn kernel: storage types, vectors of width VEC, and
 * the attention mask (which keys a query row sees) and score transforms.
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

typedef CLATTN_CAT(STORAGE_, QKV_TYPE) qkv_t;
typedef CLATTN_CAT(STORAGE_, OUT_TYPE) out_t;
typedef CLATTN_CAT(STORAGE_, BIAS_TYPE) bias_t;
typedef CLATTN_CAT(STORAGE_, GRAD_TYPE) grad_t;
#define LOAD_QKV(p, i) CLATTN_CAT(LOAD_, QKV_TYPE)(p, i)
#define LOAD_OUT(p, i) CLATTN_CAT(LOAD_, OUT_TYPE)(p, i)
#define STORE_OUT(p, i, x) CLATTN_CAT(STORE_, OUT_TYPE)(p, i, x)
#define LOAD_BIAS(p, i) CLATTN_CAT(LOAD_, BIAS_TYPE)(p, i)
#define STORE_GRAD(p, i, x) CLATTN_CAT(STORE_, GRAD_TYPE)(p, i, x)

/* Running maxima start at a large finite negative, not -INFINITY: exp2(-inf - -inf) is NaN and
   some compilers fold it wrongly. */
#define NEG_BIG (-3.0e38f)

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

/* ---- the mask ---------------------------------------------------------------------------- */

/* Which keys query row i of one batch sees. With sq_b, sk_b the batch's valid lengths and
   off = sk_b - sq_b (bottom-right alignment) or 0 (top-left): key j is visible iff i < sq_b,
   j < sk_b, causal => j <= i + off, window_left >= 0 => j >= i + off - window_left,
   window_right >= 0 => j <= i + off + window_right. For rows i < sq_b the visible keys form the
   interval [visible_lo(i), visible_hi(i)], both ends non-decreasing in i. */
typedef struct mask_params {
    int  seq_q;          /* sq_b */
    int  seq_k;          /* sk_b */
    int  causal;
    long off;
    long window_left;    /* -1: unbounded */
    long window_right;   /* -1: unbounded */
} mask_params;

/* The batch's valid lengths from the seqlens buffers (NULL: the dims). Returns 0 when an entry
   is outside [0, dim]: that batch's rows are then all NaN. */
static int batch_mask(__global const int *seqlens_q, __global const int *seqlens_k, long b,
                      int seq_q, int seq_k, int causal, int bottom_right, long window_left,
                      long window_right, mask_params *mp)
{
    const int sq = seqlens_q ? seqlens_q[b] : seq_q;
    const int sk = seqlens_k ? seqlens_k[b] : seq_k;
    mp->seq_q = sq;
    mp->seq_k = sk;
    mp->causal = causal;
    mp->off = bottom_right ? (long)sk - sq : 0;
    mp->window_left = window_left;
    mp->window_right = window_right;
    return sq >= 0 && sq <= seq_q && sk >= 0 && sk <= seq_k;
}

/* First visible key of row i, clamped to [0, seq_k]. */
static int visible_lo(const mask_params *mp, long i)
{
    long lo = 0;
    if (mp->window_left >= 0)
        lo = max(lo, i + mp->off - mp->window_left);
    return (int)min(lo, (long)mp->seq_k);
}

/* Last visible key of row i, clamped to [-1, seq_k - 1]; -1 for rows i >= seq_q. */
static int visible_hi(const mask_params *mp, long i)
{
    long hi = i < mp->seq_q ? mp->seq_k - 1 : -1;
    if (mp->causal)
        hi = min(hi, i + mp->off);
    if (mp->window_right >= 0)
        hi = min(hi, i + mp->off + mp->window_right);
    return (int)max(hi, -1L);
}

/* The same mask seen from key j (backward): the query rows that see key j form the interval
   [seeing_lo(j), seeing_hi(j)], both ends non-decreasing in j. First one, clamped to
   [0, seq_q]: */
static int seeing_lo(const mask_params *mp, long j)
{
    long lo = 0;
    if (mp->causal)
        lo = max(lo, j - mp->off);
    if (mp->window_right >= 0)
        lo = max(lo, j - mp->off - mp->window_right);
    return (int)min(lo, (long)mp->seq_q);
}

/* Last query row that sees key j, clamped to [-1, seq_q - 1]; -1 for keys j >= seq_k. */
static int seeing_hi(const mask_params *mp, long j)
{
    long hi = j < mp->seq_k ? mp->seq_q - 1 : -1;
    if (mp->window_left >= 0)
        hi = min(hi, j - mp->off + mp->window_left);
    return (int)max(hi, -1L);
}

/* ---- dropout ----------------------------------------------------------------------------- */

/* Dropout as DESIGN.md defines it: Philox4x32-10 (Salmon et al. 2011) with key (low, high 32
   bits of the seed) and counter (j, i, b * Hq + h, low 32 bits of the offset); key j of query i
   is kept iff the first output word >= threshold = ceil(p * 2^32) (computed by the host), and
   kept weights are scaled by 1 / (1 - p). src/dropout.c computes the same on the host. */
typedef struct dropout_params {
    uint seed_lo, seed_hi, offset_lo, threshold;
    float keep_scale;       /* 1 / (1 - p); 0 when dropout is off */
} dropout_params;

static uint philox4x32_10_x0(uint4 c, uint k0, uint k1)
{
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const uint hi0 = mul_hi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
        const uint hi1 = mul_hi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
        c = (uint4)(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
    }
    return c.x;
}

/* The factor of key j's weight for query i of (batch b, head bh = b * Hq + h): 0 if dropped,
   1 / (1 - p) if kept. */
static float dropout_factor(const dropout_params *dp, long bh, long i, long j)
{
    const uint4 counter = (uint4)((uint)j, (uint)i, (uint)bh, dp->offset_lo);
    return philox4x32_10_x0(counter, dp->seed_lo, dp->seed_hi) >= dp->threshold ? dp->keep_scale
                                                                                : 0.0f;
}

/* dropout_factor of VEC pairs: lane e is query i + e * di, key j + e * dj. */
static floatv dropout_lanes(const dropout_params *dp, long bh, long i, int di, long j, int dj)
{
    float lane[VEC];
    for (int e = 0; e < VEC; e++)
        lane[e] = dropout_factor(dp, bh, i + e * di, j + e * dj);
    return VLOAD(0, lane);
}

/* ---- scores ------------------------------------------------------------------------------ */

/* Scores are kept in base 2 (s * log2(e)) for exp2. The host folds the scale into q:
     no softcap:  q_mult = scale * log2(e), cap_mult = 0, and the score is q.k;
     softcap c:   q_mult = scale / c, cap_mult = c * log2(e), and the score is cap_mult * tanh(q.k).
   The bias is added as bias * log2(e). SOFTCAP works on floats and floatv. */
#define SOFTCAP(x, cap_mult) ((cap_mult) != 0.0f ? (cap_mult) * tanh(x) : (x))
