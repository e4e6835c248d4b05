/*
 * unfused.cl — the kernels of the unfused forward (src/unfused.c), which computes attention as
 * S = Q K^T (CLBlast), P = masked softmax(S) (here), O = P V (CLBlast), out = O / l (here), one
 * chunk of query rows and a block of query heads at a time, with exactly the semantics of the
 * fused kernel (common.cl: mask, softcap, bias, base-2 scores, NaN and empty-row rules).
 *
 * Layout: scratch matrices are dense f32 in one buffer at element offsets. A chunk covers the
 * query heads h0 .. h0+heads-1 of batch b and the query rows r0 .. r0+rows-1; its scores are
 * S[head][row][key] with key index c standing for key k0 + c (c < keys), and row_l[head][row]
 * holds the softmax denominator of each row. Tensors (q, k, v, out, lse, bias) are strided
 * views whose last stride is 1; the host passes element offsets and strides.
 *
 *   unfused_pack     strided q/k/v rows (QKV_TYPE) -> dense f32 [heads][rows][dim]; for v,
 *                    keys that no row of the chunk sees become 0, and NaN or Inf at the
 *                    others sets the chunk's flag (also run without copying, as a check)
 *   unfused_softmax  S (GEMM scores, scaled into base 2) -> softcap, bias, mask ->
 *                    S = exp2(s - m) for visible keys, exactly 0 for the others; row_l = sum;
 *                    lse = m ln 2 + log(sum) (-INFINITY for a row with nothing visible);
 *                    a work-group per row (GPUs)
 *   unfused_softmax_rows  the same, a row per work-item (CPUs)
 *   unfused_store    out = O / row_l in OUT_TYPE; 0 for rows with row_l == 0, NaN for NaN
 *   unfused_repair   only when v holds NaN or Inf at a key the chunk sees (flag set by
 *                    unfused_pack): out again from P and v over each row's own visible keys,
 *                    so that the GEMM's 0 * NaN cannot reach rows that do not see that key
 *
 * Fixed shapes shared with the host (launch.h):
 *   SOFTMAX_WG   largest work-group of unfused_softmax (one work-group per row; the host
 *                launches a power of two <= SOFTMAX_WG)
 *   PACK_COLS    columns per work-item of unfused_pack
 * Tunables:
 *   VEC          keys per vector in the softmax passes (common.cl)                default 4
 *   plus the storage macros of common.cl (QKV_TYPE, OUT_TYPE, BIAS_TYPE).
 */


/* dst[(hh * rows + r) * dim + c] = src[hh * head_stride + r * row_stride + c] in f32, for
   PACK_COLS columns per work-item; global (ceil(dim / PACK_COLS), rows, heads); dst NULL: only
   the check below. With `masked` the rows are values of keys key_first + r, and a key that no
   row in [r0, r1) of batch b sees is stored as 0, so that whatever it holds cannot reach
   O = P V (P is 0 there, but 0 * NaN is not). With `bad`, a NaN or Inf at a key that some
   row sees sets bad[bad_off] (unfused_repair then redoes the chunk without the GEMM). */
__kernel void unfused_pack(__global const qkv_t *src, long src_off, long head_stride,
                           long row_stride, __global float *dst, long dst_off, int rows, int dim,
                           int masked, int key_first, __global const int *seqlens_q,
                           __global const int *seqlens_k, long b, int r0, int r1, int seq_q,
                           int seq_k, int causal, int bottom_right, long window_left,
                           long window_right, __global int *bad, long bad_off)
{
    const int c0 = get_global_id(0) * PACK_COLS, r = get_global_id(1), hh = get_global_id(2);
    if (c0 >= dim || r >= rows)
        return;
    int seen = 1, finite = 1;
    if (masked) {
        mask_params mp;
        const int valid = batch_mask(seqlens_q, seqlens_k, b, seq_q, seq_k, causal, bottom_right,
                                     window_left, window_right, &mp);
        const int last = min(r1, mp.seq_q) - 1, j = key_first + r;
        seen = valid && last >= r0 && j >= visible_lo(&mp, r0) && j <= visible_hi(&mp, last);
    }
    __global const qkv_t *from = src + src_off + hh * head_stride + r * row_stride;
    __global float *to = dst ? dst + dst_off + ((long)hh * rows + r) * dim : NULL;
    const int end = min(c0 + PACK_COLS, dim);
    for (int c = c0; c < end; c++) {
        const float x = seen ? LOAD_QKV(from, c) : 0.0f;
        finite &= isfinite(x);
        if (to)
            to[c] = x;
    }
    if (bad && !finite)
        atomic_or(bad + bad_off, 1);
}

/* Tree reduction over the work-group (a power of two) of max or sum; every item gets it. */
static float group_reduce(__local float *scratch, float x, int lid, int n, int take_max)
{
    scratch[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int step = n / 2; step > 0; step /= 2) {
        if (lid < step) {
            const float y = scratch[lid + step];
            scratch[lid] = take_max ? fmax(scratch[lid], y) : scratch[lid] + y;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float result = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return result;
}

/* VEC bias values from element i, in f32. */
static floatv load_bias_vec(__global const bias_t *bias, long i)
{
    float lanes[VEC];
    for (int e = 0; e < VEC; e++)
        lanes[e] = LOAD_BIAS(bias, i + e);
    return VLOAD(0, lanes);
}

/* Pass 1 over the visible columns [lo, hi] of row s: the final base-2 score (softcap of the
   GEMM value, which already holds the scale or scale / softcap, then bias * log2(e)) written
   back; returns this item's max. Items take VEC columns at a time, item 0 the tail. */
static float scores_pass(__global float *s, int lo, int hi, int lid, int wg, float cap_mult,
                         __global const bias_t *bias, long bias_row, float bias_mult)
{
    const int count = hi - lo + 1, vectors = max(count, 0) / VEC;
    floatv m = (floatv)(NEG_BIG);
    for (int t = lid; t < vectors; t += wg) {
        const int c = lo + t * VEC;
        floatv x = SOFTCAP(VLOAD(0, s + c), cap_mult);
        if (bias)
            x += load_bias_vec(bias, bias_row + c) * bias_mult;
        VSTORE(x, 0, s + c);
        m = fmax(m, x);
    }
    float mm = HMAX(m);
    for (int c = lo + vectors * VEC; lid == 0 && c <= hi; c++) {
        float x = SOFTCAP(s[c], cap_mult);
        if (bias)
            x += LOAD_BIAS(bias, bias_row + c) * bias_mult;
        s[c] = x;
        mm = fmax(mm, x);
    }
    return mm;
}

/* Pass 2 over every column of row s: exp2(s - m) where visible, exactly 0 elsewhere (select,
   not multiply: an invisible column may hold NaN or Inf); a visible key whose score is -inf
   gets -0, which marks it as taking no part (for unfused_repair; sums and GEMMs treat it as
   0). Returns this item's sum. */
static float exp_pass(__global float *s, int keys, int lo, int hi, float m, int lid, int wg)
{
    const int vectors = keys / VEC;
    floatv sum = (floatv)(0.0f);
    for (int t = lid; t < vectors; t += wg) {
        const int c = t * VEC;
        const intv j = (intv)(c) + IOTA;
        const intv seen = j >= lo && j <= hi;
        const floatv x = VLOAD(0, s + c);
        floatv e = select((floatv)(0.0f), exp2(x - m), seen);
        e = select(e, (floatv)(-0.0f), seen && x == (floatv)(-INFINITY));
        VSTORE(e, 0, s + c);
        sum += e;
    }
    float total = HSUM(sum);
    for (int c = vectors * VEC; lid == 0 && c < keys; c++) {
        const int seen = c >= lo && c <= hi;
        const float e = !seen ? 0.0f : s[c] == -INFINITY ? -0.0f : exp2(s[c] - m);
        s[c] = e;
        total += e;
    }
    return total;
}

/* The parameters of both softmax kernels (one list, so that the host sets them once). */
#define SOFTMAX_PARAMS                                                                          \
    __global float *scores, long s_off, int keys, int k0,                                       \
    __global float *row_l, long l_off,                                                          \
    __global float *lse, long e_off, long e_sb, long e_sh, long e_ss,                           \
    __global const bias_t *bias, long bias_off, long bias_sb, long bias_sh, long bias_ss,       \
    __global const int *seqlens_q, __global const int *seqlens_k,                               \
    long b, int h0, int r0, int rows,                                                           \
    int seq_q, int seq_k, int causal, int bottom_right, long window_left, long window_right,   \
    float cap_mult, float bias_mult,                                                            \
    int heads_q, uint seed_lo, uint seed_hi, uint offset_lo, uint drop_threshold,              \
    float keep_scale

/* One row of the chunk: its scores, visible columns [lo, hi] and bias row. */
typedef struct softmax_row {
    __global float *s;
    int  lo, hi, valid;
    long i, h, bias_row;
} softmax_row;

/* Row `row` = hh * rows + r of the chunk. The host's key range holds every visible key. */
static softmax_row softmax_setup(int row, __global float *scores, long s_off, int keys, int k0,
                                 long bias_off, long bias_sb, long bias_sh, long bias_ss,
                                 __global const int *seqlens_q, __global const int *seqlens_k,
                                 long b, int h0, int r0, int rows, int seq_q, int seq_k,
                                 int causal, int bottom_right, long window_left,
                                 long window_right)
{
    softmax_row x;
    mask_params mp;
    x.i = (long)r0 + row % rows;
    x.h = (long)h0 + row / rows;
    x.s = scores + s_off + (long)row * keys;
    x.valid = batch_mask(seqlens_q, seqlens_k, b, seq_q, seq_k, causal, bottom_right,
                         window_left, window_right, &mp);
    x.lo = max(visible_lo(&mp, x.i) - k0, 0);
    x.hi = x.valid ? min(visible_hi(&mp, x.i) - k0, keys - 1) : -1;
    x.bias_row = bias_off + b * bias_sb + x.h * bias_sh + x.i * bias_ss + k0;
    return x;
}

/* Dropout (keep_scale > 0) on the row's weights after their sum: lse stays before dropout.
   Same work split as exp_pass, so each work-item rescales what it wrote. */
static void dropout_pass(__global float *s, int keys, const softmax_row *x, int k0, long b,
                         int heads_q, const dropout_params *dp, int lid, int wg)
{
    const long bh = b * heads_q + x->h;
    const int vectors = keys / VEC;
    for (int t = lid; t < vectors; t += wg)
        for (int c = t * VEC; c < t * VEC + VEC; c++)
            if (c >= x->lo && c <= x->hi)
                s[c] *= dropout_factor(dp, bh, x->i, k0 + c);
    for (int c = vectors * VEC; lid == 0 && c < keys; c++)
        if (c >= x->lo && c <= x->hi)
            s[c] *= dropout_factor(dp, bh, x->i, k0 + c);
}

/* Row sum (NaN for an invalid batch) and lse; sum == 0 only when no key is visible (or every
   visible score is -inf). */
static void softmax_finish(const softmax_row *x, int row, float m, float sum,
                           __global float *row_l, long l_off, __global float *lse, long e_off,
                           long e_sb, long e_sh, long e_ss, long b)
{
    row_l[l_off + row] = x->valid ? sum : NAN;
    if (lse)
        lse[e_off + b * e_sb + x->h * e_sh + x->i * e_ss] =
            !x->valid ? NAN : sum == 0.0f ? -INFINITY : m * M_LN2_F + log(sum);
}

#define SOFTMAX_SETUP(row)                                                                     \
    softmax_setup((row), scores, s_off, keys, k0, bias_off, bias_sb, bias_sh, bias_ss,         \
                  seqlens_q, seqlens_k, b, h0, r0, rows, seq_q, seq_k, causal, bottom_right,   \
                  window_left, window_right)

/* GPUs: one work-group per row; global (heads * rows * wg), local (wg), wg a power of two
   <= SOFTMAX_WG. */
__kernel void unfused_softmax(SOFTMAX_PARAMS)
{
    __local float red[SOFTMAX_WG];
    const int lid = get_local_id(0), wg = get_local_size(0), row = get_group_id(0);
    const softmax_row x = SOFTMAX_SETUP(row);
    const float m = group_reduce(red, scores_pass(x.s, x.lo, x.hi, lid, wg, cap_mult, bias,
                                                  x.bias_row, bias_mult), lid, wg, 1);
    const float sum = group_reduce(red, exp_pass(x.s, keys, x.lo, x.hi, m, lid, wg), lid, wg, 0);
    const dropout_params dp = {seed_lo, seed_hi, offset_lo, drop_threshold, keep_scale};
    if (keep_scale > 0.0f)
        dropout_pass(x.s, keys, &x, k0, b, heads_q, &dp, lid, wg);
    if (lid == 0)
        softmax_finish(&x, row, m, sum, row_l, l_off, lse, e_off, e_sb, e_sh, e_ss, b);
}

/* CPUs: one row per work-item, vectors across its keys, no barriers (PoCL runs barriers and
   many small work-groups slowly); global (heads * rows). */
__kernel void unfused_softmax_rows(SOFTMAX_PARAMS)
{
    const int row = get_global_id(0);
    const softmax_row x = SOFTMAX_SETUP(row);
    const float m = scores_pass(x.s, x.lo, x.hi, 0, 1, cap_mult, bias, x.bias_row, bias_mult);
    const float sum = exp_pass(x.s, keys, x.lo, x.hi, m, 0, 1);
    const dropout_params dp = {seed_lo, seed_hi, offset_lo, drop_threshold, keep_scale};
    if (keep_scale > 0.0f)
        dropout_pass(x.s, keys, &x, k0, b, heads_q, &dp, 0, 1);
    softmax_finish(&x, row, m, sum, row_l, l_off, lse, e_off, e_sb, e_sh, e_ss, b);
}

/* out[b, h0 + hh, r0 + r, c] = O[hh][r][c] / row_l[hh][r]; global (dim_v, rows, heads). */
__kernel void unfused_store(
    __global const float *o, long o_off, __global const float *row_l, long l_off,
    __global out_t *out, long out_off, long out_sb, long out_sh, long out_ss,
    long b, int h0, int r0, int rows, int dim_v)
{
    const int c = get_global_id(0), r = get_global_id(1), hh = get_global_id(2);
    if (c >= dim_v || r >= rows)
        return;
    const long row = (long)hh * rows + r;
    const float l = row_l[l_off + row];
    const float x = o[o_off + row * dim_v + c] * (1.0f / l);
    const long at = out_off + b * out_sb + (long)(h0 + hh) * out_sh + (long)(r0 + r) * out_ss + c;
    STORE_OUT(out, at, l == 0.0f ? 0.0f : x);
}

/* When bad[bad_off] is set (v holds NaN or Inf at a key some row of the chunk sees), O = P V
   may have carried it into rows that do not see that key: redo out of every row from P (the
   chunk's scores after unfused_softmax) and v, over the row's visible keys only. Rare (only
   for such inputs) and slow; global (dim_v, rows, heads). */
__kernel void unfused_repair(
    __global const int *bad, long bad_off, __global float *scores, long s_off, int keys,
    int k0, __global const float *row_l, long l_off,
    __global const qkv_t *v, long v_off, long v_sb, long v_sh, long v_ss, int group,
    __global out_t *out, long out_off, long out_sb, long out_sh, long out_ss,
    __global const int *seqlens_q, __global const int *seqlens_k, long b, int h0, int r0,
    int rows, int dim_v, int seq_q, int seq_k, int causal, int bottom_right, long window_left,
    long window_right)
{
    const int c = get_global_id(0), r = get_global_id(1), hh = get_global_id(2);
    if (!bad[bad_off] || c >= dim_v || r >= rows)
        return;
    const int row = hh * rows + r;
    const softmax_row x = softmax_setup(row, scores, s_off, keys, k0, 0, 0, 0, 0, seqlens_q,
                                        seqlens_k, b, h0, r0, rows, seq_q, seq_k, causal,
                                        bottom_right, window_left, window_right);
    __global const qkv_t *vc = v + v_off + b * v_sb + (x.h / group) * v_sh + c;
    float acc = 0.0f;
    for (int j = x.lo; j <= x.hi; j++)
        if (!signbit(x.s[j])) /* -0: a key whose score is -inf takes no part */
            acc = fma(x.s[j], LOAD_QKV(vc, (long)(k0 + j) * v_ss), acc);
    const float l = row_l[l_off + row];
    const long at = out_off + b * out_sb + x.h * out_sh + x.i * out_ss + c;
    STORE_OUT(out, at, l == 0.0f ? 0.0f : acc * (1.0f / l));
}
