/*
 * attention_backward.cl — gradients of the fused attention, FlashAttention-2 style, with no
 * atomics: every gradient element is summed by one work-item in a fixed order, so the same
 * inputs give the same bits.
 *
 * For query row i of head h and key j of its kv head, with s = q_i.k_j * scale (after softcap
 * and bias as in the forward), P_ij = exp(s - lse_i) from the forward's lse, w_ij the dropout
 * factor (1 without dropout) and delta_i = dout_i . out_i:
 *   dv_j += P_ij w_ij dout_i
 *   dS_ij = P_ij (w_ij dout_i . v_j - delta_i)   (times 1 - tanh^2 under softcap)
 *   dq_i += scale dS_ij k_j,   dk_j += scale dS_ij q_i
 * Two kernels recompute the scores instead of keeping any Sq x Sk buffer (O(S) memory):
 *   attention_backward_dkdv: rows are the keys of one (batch, kv head); the columns are the
 *     query rows of each query head of the group in turn, so dk and dv come out summed over
 *     the group. Launch: global (ceil(Sk / BLOCK_M) * WG, Hkv, B).
 *   attention_backward_dq: rows are the (query row, head in group) pairs of one (batch, kv
 *     head), packed as in the forward; the columns are the keys.
 *     Launch: global (ceil(group * Sq / BLOCK_M) * WG, Hkv, B).
 * Both take the same arguments. Pairs a row does not see are selected out (never multiplied
 * by 0), so NaN or Inf in invisible keys, padding rows or their dout cannot leak. Padding rows
 * and keys get 0; a batch with a seqlens entry outside [0, dim] gets NaN.
 * The tiling is tiles.cl's; the flag bits are launch.h's ATTENTION_*.
 */

/* The per-call facts both kernels work from. */
typedef struct backward_params {
    mask_params    mp;
    dropout_params dp;
    float cap_mult;
    int   flags;
    int   lengths_ok;   /* the batch's seqlens entries are in range */
    long  bh0;          /* b * heads_q: the dropout counter of head h is bh0 + h */
} backward_params;

/* dout_i . out_i in f32, the same bits in both kernels. */
static float row_delta(__global const out_t *out_row, __global const out_t *dout_row, int dim)
{
    float sum = 0.0f;
    for (int d = 0; d < dim; d++)
        sum = fma(LOAD_OUT(dout_row, d), LOAD_OUT(out_row, d), sum);
    return sum;
}

/* The gradient weights of VEC (query, key) pairs, from s = q_mult q.k (base 2, before
   softcap), dp = dout_i . v_j, the query's lse2 = lse log2(e) and delta, the dropout factors w
   and the bias bias2 (times log2(e)):
     p = exp2(softcap(s) + bias2 - lse2),  *pw = p w,  *ds = p (w dp - delta) softcap'(s).
   Queries whose lse is -inf (no key) get exactly 0. Pairs a row does not see are not masked
   here: tile_update_local never reads them. */
static void pair_grads(floatv s, floatv dp, floatv lse2, floatv delta, floatv w, floatv bias2,
                       float cap_mult, floatv *pw, floatv *ds)
{
    floatv z = s, slope = (floatv)(1.0f);
    if (cap_mult != 0.0f) {
        const floatv t = tanh(s);
        z = cap_mult * t;
        slope = 1.0f - t * t;
    }
    const floatv p = exp2(z + bias2 - lse2);
    const intv keep = isgreater(lse2, (floatv)(-INFINITY));
    *pw = select((floatv)(0.0f), p * w, keep);
    *ds = select((floatv)(0.0f), p * (w * dp - delta) * slope, keep);
}

static void backward_setup(__global const int *seqlens_q, __global const int *seqlens_k,
                           long b, int seq_q, int seq_k, int flags, long window_left,
                           long window_right, float cap_mult, int heads_q, uint seed_lo,
                           uint seed_hi, uint offset_lo, uint drop_threshold, float keep_scale,
                           backward_params *bp)
{
    bp->lengths_ok = batch_mask((flags & ATTENTION_SEQLENS_Q) ? seqlens_q : 0,
                                (flags & ATTENTION_SEQLENS_K) ? seqlens_k : 0, b, seq_q, seq_k,
                                (flags & ATTENTION_CAUSAL) != 0,
                                (flags & ATTENTION_BOTTOM_RIGHT) != 0, window_left, window_right,
                                &bp->mp);
    const dropout_params dp = {seed_lo, seed_hi, offset_lo, drop_threshold, keep_scale};
    bp->dp = dp;
    bp->cap_mult = cap_mult;
    bp->flags = flags;
    bp->bh0 = b * heads_q;
}

/* Store `dim` elements of acc * mult at row, or NaN for a batch with bad lengths, or 0 for a
   row that is not live. */
static void store_grad_row(__global grad_t *row, const floatv *acc, int dim, float mult,
                           int live, int lengths_ok)
{
    for (int c = 0; c < chunks_of(dim); c++) {
        float lane[VEC];
        VSTORE(acc[c] * mult, 0, lane);
        for (int e = 0; e < VEC && c * VEC + e < dim; e++)
            STORE_GRAD(row, c * VEC + e, !lengths_ok ? NAN : live ? lane[e] : 0.0f);
    }
}

#define BACKWARD_ARGS                                                                          \
    __global const qkv_t *q, long q_off, long q_sb, long q_sh, long q_ss,                       \
    __global const qkv_t *k, long k_off, long k_sb, long k_sh, long k_ss,                       \
    __global const qkv_t *v, long v_off, long v_sb, long v_sh, long v_ss,                       \
    __global const out_t *out, long o_off, long o_sb, long o_sh, long o_ss,                     \
    __global const out_t *dout, long do_off, long do_sb, long do_sh, long do_ss,                \
    __global const float *lse, long l_off, long l_sb, long l_sh, long l_ss,                     \
    __global grad_t *dq, long dq_off, long dq_sb, long dq_sh, long dq_ss,                       \
    __global grad_t *dk, long dk_off, long dk_sb, long dk_sh, long dk_ss,                       \
    __global grad_t *dv, long dv_off, long dv_sb, long dv_sh, long dv_ss,                       \
    __global const bias_t *bias, long bias_off, long bias_sb, long bias_sh, long bias_ss,       \
    __global const int *seqlens_q, __global const int *seqlens_k,                               \
    int seq_q, int seq_k, int head_dim, int head_dim_v, int group,                              \
    float q_mult, float cap_mult, int flags, long window_left, long window_right, int heads_q,  \
    uint seed_lo, uint seed_hi, uint offset_lo, uint drop_threshold, float keep_scale,          \
    float grad_mult

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_backward_dkdv(BACKWARD_ARGS)
{
    __local float qt[D_PAD * BLOCK_N];      /* q^T * q_mult: scores */
    __local float qrows[BLOCK_N * D_PAD];   /* q: dk */
    __local float dot[DV_PAD * BLOCK_N];    /* dout^T: dout . v */
    __local float dorows[BLOCK_N * DV_PAD]; /* dout: dv */
    __local float lse2_tile[BLOCK_N], delta_tile[BLOCK_N];

    const int lid = get_local_id(0);
    const int hkv = get_global_id(1);
    const long b = get_global_id(2);
    const int j0 = get_group_id(0) * BLOCK_M;   /* first key of the work-group */
    backward_params bp;
    backward_setup(seqlens_q, seqlens_k, b, seq_q, seq_k, flags, window_left, window_right,
                   cap_mult, heads_q, seed_lo, seed_hi, offset_lo, drop_threshold, keep_scale, &bp);
    k += k_off + b * k_sb + hkv * k_sh;
    v += v_off + b * v_sb + hkv * v_sh;

    /* This work-item's keys: k and v rows, the dk and dv sums, the queries that see each. */
    float kr[ROWS][D_PAD], vr[ROWS][DV_PAD];
    floatv dk_acc[ROWS][CHUNKS_D], dv_acc[ROWS][CHUNKS_DV];
    int lo[ROWS], hi[ROWS], live[ROWS];
    int lo_max = 0, hi_min = seq_q;
    for (int r = 0; r < ROWS; r++) {
        const int j = j0 + lid * ROWS + r;
        live[r] = j < bp.mp.seq_k && bp.lengths_ok;
        for (int d = 0; d < D_PAD; d++)
            kr[r][d] = live[r] && d < head_dim ? LOAD_QKV(k + j * k_ss, d) : 0.0f;
        for (int d = 0; d < DV_PAD; d++)
            vr[r][d] = live[r] && d < head_dim_v ? LOAD_QKV(v + j * v_ss, d) : 0.0f;
        for (int c = 0; c < CHUNKS_D; c++)
            dk_acc[r][c] = (floatv)(0.0f);
        for (int c = 0; c < CHUNKS_DV; c++)
            dv_acc[r][c] = (floatv)(0.0f);
        lo[r] = live[r] ? seeing_lo(&bp.mp, j) : seq_q;
        hi[r] = live[r] ? seeing_hi(&bp.mp, j) : -1;
        if (live[r]) {
            lo_max = max(lo_max, lo[r]);
            hi_min = min(hi_min, hi[r]);
        }
    }

    /* The queries any key of the work-group sees (monotone in j). */
    const int j_last = min(j0 + BLOCK_M, bp.mp.seq_k) - 1;
    const int queries_lo = seeing_lo(&bp.mp, j0);
    const int queries_hi = bp.lengths_ok && j_last >= j0 ? seeing_hi(&bp.mp, j_last) : -1;

    for (int g = 0; g < group; g++) {
        const int h = hkv * group + g;
        __global const qkv_t *qh = q + q_off + b * q_sb + h * q_sh;
        __global const out_t *oh = out + o_off + b * o_sb + h * o_sh;
        __global const out_t *doh = dout + do_off + b * do_sb + h * do_sh;
        __global const float *lh = lse + l_off + b * l_sb + h * l_sh;
        __global const bias_t *bias_h = bias + bias_off + b * bias_sb + h * bias_sh;
        for (int i0 = queries_lo; i0 <= queries_hi; i0 += BLOCK_N) {
            const int count = min(BLOCK_N, queries_hi - i0 + 1);
            barrier(CLK_LOCAL_MEM_FENCE);
            stage_transposed_qkv(qt, qh, q_ss, head_dim, i0, count, q_mult, lid);
            stage_rows_qkv(qrows, D_PAD, qh, q_ss, head_dim, i0, count, 1.0f, lid);
            stage_transposed_out(dot, doh, do_ss, head_dim_v, i0, count, 1.0f, lid);
            stage_rows_out(dorows, DV_PAD, doh, do_ss, head_dim_v, i0, count, 1.0f, lid);
            for (int n = lid; n < BLOCK_N; n += WG) {
                const long i = i0 + n;
                lse2_tile[n] = n < count ? M_LOG2E_F * lh[i * l_ss] : -INFINITY;
                delta_tile[n] = n < count ? row_delta(oh + i * o_ss, doh + i * do_ss, head_dim_v)
                                          : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            floatv s[ROWS][CHUNKS_N], dp[ROWS][CHUNKS_N];
            tile_scores(&kr[0][0], D_PAD, qt, head_dim, &s[0][0]);
            tile_scores(&vr[0][0], DV_PAD, dot, head_dim_v, &dp[0][0]);
            const int all_visible = tile_all_visible(i0, count, lo_max, hi_min);
            float pw[ROWS][BLOCK_N], ds[ROWS][BLOCK_N];
            for (int r = 0; r < ROWS; r++) {
                const int j = j0 + lid * ROWS + r;
                for (int c = 0; c < CHUNKS_N; c++) {
                    const floatv bias2 = (flags & ATTENTION_BIAS) && live[r]
                                             ? bias_lanes(bias_h + j, bias_ss, i0 + c * VEC, seq_q)
                                             : (floatv)(0.0f);
                    const floatv w = (flags & ATTENTION_DROPOUT)
                                         ? dropout_lanes(&bp.dp, bp.bh0 + h, i0 + c * VEC, 1, j, 0)
                                         : (floatv)(1.0f);
                    floatv pw_c, ds_c;
                    pair_grads(s[r][c], dp[r][c], VLOAD(c, lse2_tile), VLOAD(c, delta_tile), w,
                               bias2, bp.cap_mult, &pw_c, &ds_c);
                    VSTORE(pw_c, c, pw[r]);
                    VSTORE(ds_c, c, ds[r]);
                }
            }
            tile_update_local(&dv_acc[0][0], CHUNKS_DV, chunks_of(head_dim_v), &pw[0][0],
                              BLOCK_N, 1, dorows, DV_PAD, head_dim_v, i0, count, lo, hi,
                              all_visible);
            tile_update_local(&dk_acc[0][0], CHUNKS_D, chunks_of(head_dim), &ds[0][0], BLOCK_N,
                              1, qrows, D_PAD, head_dim, i0, count, lo, hi, all_visible);
        }
    }

    dk += dk_off + b * dk_sb + hkv * dk_sh;
    dv += dv_off + b * dv_sb + hkv * dv_sh;
    for (int r = 0; r < ROWS; r++) {
        const int j = j0 + lid * ROWS + r;
        if (j >= seq_k)
            break;
        store_grad_row(dk + j * dk_ss, dk_acc[r], head_dim, grad_mult, live[r], bp.lengths_ok);
        store_grad_row(dv + j * dv_ss, dv_acc[r], head_dim_v, 1.0f, live[r], bp.lengths_ok);
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_backward_dq(BACKWARD_ARGS)
{
    __local float kt[D_PAD * BLOCK_N];      /* k^T: scores */
    __local float krows[BLOCK_N * D_PAD];   /* k: dq */
    __local float vt[DV_PAD * BLOCK_N];     /* v^T: dout . v */

    const int lid = get_local_id(0);
    const int hkv = get_global_id(1);
    const long b = get_global_id(2);
    const int rho0 = get_group_id(0) * BLOCK_M;   /* first row of the work-group */
    const int rho_end = group * seq_q;
    backward_params bp;
    backward_setup(seqlens_q, seqlens_k, b, seq_q, seq_k, flags, window_left, window_right,
                   cap_mult, heads_q, seed_lo, seed_hi, offset_lo, drop_threshold, keep_scale, &bp);
    k += k_off + b * k_sb + hkv * k_sh;
    v += v_off + b * v_sb + hkv * v_sh;

    /* This work-item's rows (rho = i * group + head in group, as in the forward). */
    float qr[ROWS][D_PAD], dor[ROWS][DV_PAD], lse2[ROWS], delta[ROWS];
    floatv dq_acc[ROWS][CHUNKS_D];
    int lo[ROWS], hi[ROWS], live[ROWS];
    int lo_max = 0, hi_min = seq_k;
    for (int r = 0; r < ROWS; r++) {
        const int rho = rho0 + lid * ROWS + r;
        const long i = rho / group;
        const int h = hkv * group + rho % group;
        live[r] = rho < rho_end && i < bp.mp.seq_q && bp.lengths_ok;
        __global const qkv_t *qrow = q + q_off + b * q_sb + h * q_sh + i * q_ss;
        __global const out_t *orow = out + o_off + b * o_sb + h * o_sh + i * o_ss;
        __global const out_t *dorow = dout + do_off + b * do_sb + h * do_sh + i * do_ss;
        for (int d = 0; d < D_PAD; d++)
            qr[r][d] = live[r] && d < head_dim ? q_mult * LOAD_QKV(qrow, d) : 0.0f;
        for (int d = 0; d < DV_PAD; d++)
            dor[r][d] = live[r] && d < head_dim_v ? LOAD_OUT(dorow, d) : 0.0f;
        lse2[r] = live[r] ? M_LOG2E_F * lse[l_off + b * l_sb + h * l_sh + i * l_ss] : -INFINITY;
        delta[r] = live[r] ? row_delta(orow, dorow, head_dim_v) : 0.0f;
        for (int c = 0; c < CHUNKS_D; c++)
            dq_acc[r][c] = (floatv)(0.0f);
        lo[r] = live[r] ? visible_lo(&bp.mp, i) : seq_k;
        hi[r] = live[r] ? visible_hi(&bp.mp, i) : -1;
        if (live[r]) {
            lo_max = max(lo_max, lo[r]);
            hi_min = min(hi_min, hi[r]);
        }
    }

    /* The keys any row of the work-group sees (monotone in i = rho / group). */
    const int i_first = rho0 / group;
    const int i_last = min((min(rho0 + BLOCK_M, rho_end) - 1) / group, bp.mp.seq_q - 1);
    const int keys_lo = visible_lo(&bp.mp, i_first);
    const int keys_hi = bp.lengths_ok && i_last >= i_first ? visible_hi(&bp.mp, i_last) : -1;

    for (int j0 = keys_lo; j0 <= keys_hi; j0 += BLOCK_N) {
        const int count = min(BLOCK_N, keys_hi - j0 + 1);
        barrier(CLK_LOCAL_MEM_FENCE);
        stage_transposed_qkv(kt, k, k_ss, head_dim, j0, count, 1.0f, lid);
        stage_rows_qkv(krows, D_PAD, k, k_ss, head_dim, j0, count, 1.0f, lid);
        stage_transposed_qkv(vt, v, v_ss, head_dim_v, j0, count, 1.0f, lid);
        barrier(CLK_LOCAL_MEM_FENCE);

        floatv s[ROWS][CHUNKS_N], dp[ROWS][CHUNKS_N];
        tile_scores(&qr[0][0], D_PAD, kt, head_dim, &s[0][0]);
        tile_scores(&dor[0][0], DV_PAD, vt, head_dim_v, &dp[0][0]);
        const int all_visible = tile_all_visible(j0, count, lo_max, hi_min);
        float ds[ROWS][BLOCK_N];
        for (int r = 0; r < ROWS; r++) {
            const int rho = rho0 + lid * ROWS + r;
            const long i = rho / group;
            const int h = hkv * group + rho % group;
            __global const bias_t *bias_row =
                bias + bias_off + b * bias_sb + h * bias_sh + i * bias_ss;
            for (int c = 0; c < CHUNKS_N; c++) {
                const floatv bias2 = (flags & ATTENTION_BIAS) && live[r]
                                         ? bias_lanes(bias_row, 1, j0 + c * VEC, bp.mp.seq_k)
                                         : (floatv)(0.0f);
                const floatv w = (flags & ATTENTION_DROPOUT)
                                     ? dropout_lanes(&bp.dp, bp.bh0 + h, i, 0, j0 + c * VEC, 1)
                                     : (floatv)(1.0f);
                floatv pw_c, ds_c;
                pair_grads(s[r][c], dp[r][c], (floatv)(lse2[r]), (floatv)(delta[r]), w, bias2,
                           bp.cap_mult, &pw_c, &ds_c);
                VSTORE(ds_c, c, ds[r]);
            }
        }
        tile_update_local(&dq_acc[0][0], CHUNKS_D, chunks_of(head_dim), &ds[0][0], BLOCK_N, 1,
                          krows, D_PAD, head_dim, j0, count, lo, hi, all_visible);
    }

    for (int r = 0; r < ROWS; r++) {
        const int rho = rho0 + lid * ROWS + r;
        if (rho >= rho_end)
            break;
        const long i = rho / group;
        const int h = hkv * group + rho % group;
        store_grad_row(dq + dq_off + b * dq_sb + h * dq_sh + i * dq_ss, dq_acc[r], head_dim,
                       grad_mult, live[r], bp.lengths_ok);
    }
}
