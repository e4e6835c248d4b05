/*
 * unfused.cl — the kernels of the unfused forward (src/unfused.c), which computes attention as
 * S = scale Q K^T (CLBlast), P = masked softmax(S) (here), out = P V (CLBlast, then stored
 * here), one chunk of query rows and a block of query heads at a time, with exactly the
 * semantics of the fused kernel (common.cl: mask, softcap, bias, natural-unit scores, NaN and
 * empty-row rules).
 *
 * Layout: scratch matrices are dense f32 in one scratch buffer at element offsets. A chunk
 * covers the query heads h0 .. h0+heads-1 of batch b and the query rows r0 .. r0+rows-1; its
 * scores are S[head][row][key] with key index c standing for key k0 + c (c < keys), and the row
 * sums [head][row] hold the softmax denominator of each row. Arguments: the buffers, then
 * clattn_pack_params (unfused_pack) or clattn_chunk_params (the others), launch.h.
 *
 *   unfused_pack     strided q/k/v rows (QKV_TYPE) -> dense f32 [heads][rows][dim] (q times
 *                    q_scale, launch.h); for v,
 *                    keys that no row of the chunk sees become 0, and NaN or Inf at the
 *                    others sets the chunk's flag (also run without copying, as a check)
 *   unfused_softmax  S (GEMM scores, scaled) -> softcap, bias, mask -> S = exp(s - m) / sum for
 *                    visible keys (times the dropout factors), exactly 0 for the others; the
 *                    row sums (compensated) and lse = m + log(sum) (-INFINITY for a row with
 *                    nothing visible); a work-group per row (GPUs)
 *   unfused_softmax_rows  the same, a row per work-item (CPUs)
 *   unfused_store    out = O in OUT_TYPE; 0 for rows whose sum is 0, NaN for NaN
 *   unfused_repair   only when v holds NaN or Inf at a key the chunk sees (flag set by
 *                    unfused_pack): out again from P and v over each row's own visible keys,
 *                    so that the GEMM's 0 * NaN cannot reach rows that do not see that key
 *
 * Fixed shapes shared with the host: SOFTMAX_WG and PACK_COLS (launch.h).
 * Tunables:
 *   VEC          keys per vector in the softmax passes (common.cl)                default 4
 *   plus the storage macros of common.cl (QKV_TYPE, OUT_TYPE, BIAS_TYPE).
 */


/* dst[(hh * rows + r) * dim + c] = the source's row r of head hh times mult, in f32, for
   PACK_COLS columns per work-item; global (ceil(dim / PACK_COLS), rows, heads); dst NULL: only the
   check below. With `masked` the rows are values of keys key_first + r, and a key that no row
   in [r0, r1) of the batch sees is stored as 0, so that whatever it holds cannot reach
   O = P V (P is 0 there, but 0 * NaN is not). With a flag buffer, a NaN or Inf at a key that
   some row sees sets the flag (unfused_repair then redoes the chunk without the GEMM). */
__kernel void unfused_pack(__global const qkv_t *src, __global float *dst,
                           __global const int *seqlens_q, __global const int *seqlens_k,
                           __global int *flag, const clattn_pack_params params)
{
    const int c0 = get_global_id(0) * PACK_COLS, r = get_global_id(1), hh = get_global_id(2);
    if (c0 >= params.dim || r >= params.rows)
        return;
    int seen = 1, finite = 1;
    if (params.masked) {
        clattn_mask mp;
        const int valid = batch_mask(&params.attn, seqlens_q, seqlens_k, params.batch, &mp);
        const long last = min((long)params.r1, mp.seq_q) - 1, j = params.key_first + r;
        seen = valid && last >= params.r0 && j >= clattn_visible_lo(&mp, params.r0) &&
               j <= clattn_visible_hi(&mp, last);
    }
    __global const qkv_t *from =
        src + params.src_offset + hh * params.head_stride + r * params.row_stride;
    __global float *to = dst ? dst + params.dst_offset + ((long)hh * params.rows + r) * params.dim
                             : NULL;
    const int end = min(c0 + PACK_COLS, params.dim);
    for (int c = c0; c < end; c++) {
        const float x = seen ? LOAD_QKV(from, c) * params.mult : 0.0f;
        finite &= isfinite(x);
        if (to)
            to[c] = x;
    }
    if (flag && !finite)
        atomic_or(flag + params.flag_at, 1);
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

/* Pass 1 over the visible columns [lo, hi] of row s: the final score (softcap of the GEMM
   value, which already holds the scale, then the bias; cl/common.cl SCORE) written back;
   returns this item's max. Items take VEC columns at a time, item 0 the tail. */
static float scores_pass(__global float *s, int lo, int hi, int lid, int wg, float softcap,
                         __global const bias_t *bias, long bias_row)
{
    const int count = hi - lo + 1, vectors = max(count, 0) / VEC;
    floatv m = (floatv)(NEG_BIG);
    for (int t = lid; t < vectors; t += wg) {
        const int c = lo + t * VEC;
        floatv x = SCORE(VLOAD(0, s + c), 1.0f, softcap);
        if (bias)
            x += load_bias_vec(bias, bias_row + c);
        VSTORE(x, 0, s + c);
        m = fmax(m, x);
    }
    float mm = HMAX(m);
    for (int c = lo + vectors * VEC; lid == 0 && c <= hi; c++) {
        float x = SCORE(s[c], 1.0f, softcap);
        if (bias)
            x += LOAD_BIAS(bias, bias_row + c);
        s[c] = x;
        mm = fmax(mm, x);
    }
    return mm;
}

/* Pass 2 over every column of row s: exp(s - m) where visible, exactly 0 elsewhere (select,
   not multiply: an invisible column may hold NaN or Inf); a visible key whose score is -inf
   gets -0, which marks it as taking no part (for unfused_repair; sums and GEMMs treat it as
   0). Returns this item's sum, compensated. */
static float exp_pass(__global float *s, int keys, int lo, int hi, float m, int lid, int wg)
{
    const int vectors = keys / VEC;
    floatv sum = (floatv)(0.0f), comp = (floatv)(0.0f);
    for (int t = lid; t < vectors; t += wg) {
        const int c = t * VEC;
        const intv j = (intv)(c) + IOTA;
        const intv seen = j >= lo && j <= hi;
        const floatv x = VLOAD(0, s + c);
        floatv e = select((floatv)(0.0f), EXP_BELOW(x, m, 0), seen);
        e = select(e, (floatv)(-0.0f), seen && x == (floatv)(-INFINITY));
        VSTORE(e, 0, s + c);
        add_compensated(&sum, &comp, e);
    }
    float total = HSUM(sum), total_comp = HSUM(comp);
    for (int c = vectors * VEC; lid == 0 && c < keys; c++) {
        const int seen = c >= lo && c <= hi;
        const float e = !seen ? 0.0f : s[c] == -INFINITY ? -0.0f : EXP_BELOW(s[c], m, 0);
        s[c] = e;
        add_compensated_1(&total, &total_comp, e);
    }
    return total + total_comp;
}

/* One row of the chunk: its scores, visible columns [lo, hi] and bias row; valid: its batch's
   lengths are; padding: the row is past its batch's query rows. */
typedef struct softmax_row {
    __global float *s;
    int  lo, hi, valid, padding;
    long i, h, bias_row;
} softmax_row;

/* *x: row `row` = hh * rows + r of the chunk. The host's key range holds every visible key. */
static void softmax_setup(softmax_row *x, int row, __global float *scratch,
                          __global const int *seqlens_q, __global const int *seqlens_k,
                          const clattn_chunk_params *c)
{
    clattn_mask mp;
    x->i = (long)c->r0 + row % c->rows;
    x->h = (long)c->h0 + row / c->rows;
    x->s = scratch + c->scores_at + (long)row * c->keys;
    x->valid = batch_mask(&c->attn, seqlens_q, seqlens_k, c->batch, &mp);
    x->padding = x->i >= mp.seq_q;
    x->lo = max((int)clattn_visible_lo(&mp, x->i) - c->k0, 0);
    x->hi = x->valid ? min((int)clattn_visible_hi(&mp, x->i) - c->k0, c->keys - 1) : -1;
    x->bias_row = view_row(&c->bias, c->batch, x->h, x->i) + c->k0;
}

/* Pass 3: the row's weights divided by their sum (inv = 1 / sum), so that P V is the output
   itself, a convex combination of v rows that cannot overflow; with dropout, times each key's
   factor (after the sum: lse is before dropout). Same work split as exp_pass, so each
   work-item rescales what it wrote. */
static void weights_pass(const softmax_row *x, const clattn_chunk_params *c, float inv, int lid,
                         int wg)
{
    const long bh = c->batch * c->attn.heads_q + x->h;
    const int vectors = c->keys / VEC, dropout = (c->attn.flags & ATTENTION_DROPOUT) != 0;
    for (int t = lid; t < vectors; t += wg) {
        const int j0 = t * VEC;
        floatv p = VLOAD(0, x->s + j0) * inv;
        if (dropout)
            p *= dropout_lanes(&c->attn.dropout, bh, x->i, 0, c->k0 + j0, 1);
        VSTORE(p, 0, x->s + j0);
    }
    for (int j = vectors * VEC; lid == 0 && j < c->keys; j++)
        x->s[j] *= inv * (dropout ? dropout_factor(&c->attn.dropout, bh, x->i, c->k0 + j) : 1.0f);
}

/* The row's lse (NaN for an invalid batch; sum == 0 only when no key is visible or every
   visible score is -inf), with its sink in the denominator when the call has sinks; returns
   the factor that scales the row's weights (1 / sum, times join_sink's). */
static float softmax_lse(const softmax_row *x, float m, float sum, __global const float *sinks,
                         const clattn_chunk_params *c, float *row_lse)
{
    *row_lse = !x->valid ? NAN : sum == 0.0f ? -INFINITY : m + log(sum);
    const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
    if (!(c->attn.flags & ATTENTION_SINKS) || !x->valid || x->padding)
        return inv;
    return inv * join_sink(row_lse, sinks[view_row(&c->sinks, 0, x->h, 0)]);
}

/* Row sum (NaN for an invalid batch) and lse. */
static void softmax_finish(const softmax_row *x, int row, float sum, float row_lse,
                           __global float *scratch, __global float *lse,
                           const clattn_chunk_params *c)
{
    scratch[c->sums_at + row] = x->valid ? sum : NAN;
    if (lse)
        lse[view_row(&c->lse, c->batch, x->h, x->i)] = row_lse;
}

/* The arguments of both softmax kernels. */
#define SOFTMAX_ARGS                                                                           \
    __global float *scratch, __global float *lse, __global const bias_t *bias,                 \
    __global const int *seqlens_q, __global const int *seqlens_k,                              \
    __global const float *sinks, const clattn_chunk_params params

/* group_reduce over wg work-items; wg == 1 (one work-item per row): x itself. */
static float reduce_row(__local float *scratch, float x, int lid, int wg, int take_max)
{
    return wg > 1 ? group_reduce(scratch, x, lid, wg, take_max) : x;
}

/* The softmax of chunk row `row`, by the wg work-items of a work-group (lid among them;
   `red` holds SOFTMAX_WG floats) or by one work-item (wg 1, red unused). */
static void softmax_row_by(int row, int lid, int wg, __local float *red, __global float *scratch,
                           __global float *lse, __global const bias_t *bias,
                           __global const int *seqlens_q, __global const int *seqlens_k,
                           __global const float *sinks, const clattn_chunk_params *c)
{
    softmax_row x;
    softmax_setup(&x, row, scratch, seqlens_q, seqlens_k, c);
    __global const bias_t *row_bias = (c->attn.flags & ATTENTION_BIAS) ? bias : 0;
    const float m = reduce_row(red, scores_pass(x.s, x.lo, x.hi, lid, wg, c->attn.softcap,
                                                row_bias, x.bias_row),
                               lid, wg, 1);
    const float sum = reduce_row(red, exp_pass(x.s, c->keys, x.lo, x.hi, m, lid, wg), lid, wg, 0);
    float row_lse;
    weights_pass(&x, c, softmax_lse(&x, m, sum, sinks, c, &row_lse), lid, wg);
    if (lid == 0)
        softmax_finish(&x, row, sum, row_lse, scratch, lse, c);
}

/* GPUs: one work-group per row; global (heads * rows * wg), local (wg), wg a power of two
   <= SOFTMAX_WG. */
__kernel void unfused_softmax(SOFTMAX_ARGS)
{
    __local float red[SOFTMAX_WG];
    softmax_row_by(get_group_id(0), get_local_id(0), get_local_size(0), red, scratch, lse, bias,
                   seqlens_q, seqlens_k, sinks, &params);
}

/* CPUs: one row per work-item, vectors across its keys, no barriers (PoCL runs barriers and
   many small work-groups slowly); global (heads * rows). */
__kernel void unfused_softmax_rows(SOFTMAX_ARGS)
{
    softmax_row_by(get_global_id(0), 0, 1, 0, scratch, lse, bias, seqlens_q, seqlens_k, sinks,
                   &params);
}

/* out[b, h0 + hh, r0 + r, c] = O[hh][r][c] (the weights were divided by their sum), 0 for a
   row whose sum is 0, NaN for one whose sum is NaN (an invalid batch); global (dim_v, rows,
   heads). */
__kernel void unfused_store(__global const float *scratch, __global out_t *out,
                            const clattn_chunk_params params)
{
    const int c = get_global_id(0), r = get_global_id(1), hh = get_global_id(2);
    const int dim_v = params.attn.head_dim_v;
    if (c >= dim_v || r >= params.rows)
        return;
    const long row = (long)hh * params.rows + r;
    const float l = scratch[params.sums_at + row];
    const float x = scratch[params.values_at + row * dim_v + c];
    const long at = view_row(&params.out, params.batch, params.h0 + hh, params.r0 + r) + c;
    STORE_OUT(out, at, isnan(l) ? NAN : l == 0.0f ? 0.0f : x);
}

/* When the flag is set (v holds NaN or Inf at a key some row of the chunk sees), O = P V may
   have carried it into rows that do not see that key: redo out of every row from P (the
   chunk's scores after unfused_softmax) and v, over the row's visible keys only. Rare (only
   for such inputs) and slow; global (dim_v, rows, heads). */
__kernel void unfused_repair(__global float *scratch, __global const qkv_t *v,
                             __global out_t *out, __global const int *seqlens_q,
                             __global const int *seqlens_k, const clattn_chunk_params params)
{
    const int c = get_global_id(0), r = get_global_id(1), hh = get_global_id(2);
    if (!((__global const int *)scratch)[params.flag_at] || c >= params.attn.head_dim_v ||
        r >= params.rows)
        return;
    const int row = hh * params.rows + r;
    softmax_row x;
    slice_qkv vs;
    softmax_setup(&x, row, scratch, seqlens_q, seqlens_k, &params);
    slice_of_qkv(&vs, v, &params.v, params.batch, x.h / params.attn.group);
    float acc = 0.0f;
    for (int j = x.lo; j <= x.hi; j++)
        if (!signbit(x.s[j])) /* -0: a key whose score is -inf takes no part */
            acc = fma(x.s[j], LOAD_QKV(slice_row_qkv(vs, params.k0 + j), c), acc);
    const float l = scratch[params.sums_at + row];
    const long at = view_row(&params.out, params.batch, x.h, x.i) + c;
    STORE_OUT(out, at, isnan(l) ? NAN : l == 0.0f ? 0.0f : acc);
}
