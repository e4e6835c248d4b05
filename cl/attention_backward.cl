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
 * Both take the same arguments: the buffers, then clattn_backward_params (launch.h). Pairs a
 * row does not see are selected out (never multiplied by 0), so NaN or Inf in invisible keys,
 * padding rows or their dout cannot leak. Padding rows and keys get 0; a batch with a seqlens
 * entry outside [0, dim] gets NaN. K and V rows are read through their slices (common.cl).
 * The tiling is tiles.cl's. With the rows in vector lanes (SCORES_IN_ROW_LANES: CPUs), both
 * products of the scores take the columns' tiles row-major (tile_scores_lanes_local), the
 * tiles the updates read anyway, so nothing is staged transposed (a scattered store per
 * element: a sixth of the backward's time on AVX-512); otherwise the scores' tiles are staged
 * transposed.
 */

/* delta[e] = dout_i . out_i in f32 for the rows i = first + e, e < rows <= DELTA_ROWS, of the
   slices os (out) and dos (dout), and 0 for e >= rows: the same bits in both kernels. Each is
   summed in the order of d, as tile_scores sums dout . v, so that a query that sees a single
   key (out is its v) gets ds exactly 0. A whole block of rows runs its sums side by side, with
   no checks: dkdv takes the deltas of every query of every tile, where one chain of dependent
   fmas at a time cost a quarter of its time on AVX-512. */
#define DELTA_ROWS 4
#define DELTA_TERM(e, d)                                                                         \
    fma(LOAD_OUT(slice_row_out(dos, first + (e)), d), LOAD_OUT(slice_row_out(os, first + (e)), d), \
        delta[e])
static void row_deltas(slice_out os, slice_out dos, long first, int rows, int dim,
                       float delta[DELTA_ROWS])
{
    #pragma unroll
    for (int e = 0; e < DELTA_ROWS; e++)
        delta[e] = 0.0f;
    if (rows == DELTA_ROWS) {
        for (int d = 0; d < dim; d++)
            #pragma unroll
            for (int e = 0; e < DELTA_ROWS; e++)
                delta[e] = DELTA_TERM(e, d);
    } else {
        for (int e = 0; e < rows; e++)
            for (int d = 0; d < dim; d++)
                delta[e] = DELTA_TERM(e, d);
    }
}

/* The gradient weights of VEC (query, key) pairs, from the dot products (q_scale q).k,
   dp = dout_i . v_j, the query's lse and delta, the dropout factors w and the bias, with
   x = score_scale (q_scale q).k and z = SCORE (softcap c: c tanh(x / c)):
     p = exp(z + bias - lse),  *pw = p w,  *ds = p (w dp - delta) dz/dx.
   Queries whose lse is -inf (no key) get exactly 0. Pairs a row does not see are not masked
   here: tile_update_local never reads them. */
static void pair_grads(floatv dot, floatv dp, floatv lse, floatv delta, floatv w, floatv bias,
                       float score_scale, float softcap, floatv *pw, floatv *ds)
{
    floatv z = dot * score_scale, slope = (floatv)(1.0f);
    if (softcap != 0.0f) {
        const floatv t = tanh(z / softcap);
        z = softcap * t;
        slope = 1.0f - t * t;
    }
    const floatv p = EXP_BELOW(z + bias, lse, 0);
    const intv keep = isgreater(lse, (floatv)(-INFINITY));
    *pw = select((floatv)(0.0f), p * w, keep);
    *ds = select((floatv)(0.0f), p * (w * dp - delta) * slope, keep);
}

/* Store `dim` elements of acc * mult at row, or NaN for a batch with bad lengths, or 0 for a
   row that is not live; with BACKWARD_ACCUMULATE in flags, added to what row holds. */
static void store_grad_row(__global grad_t *row, const floatv *acc, int dim, float mult,
                           int live, int lengths_ok, int flags)
{
    for (int c = 0; c < chunks_of(dim); c++) {
        float lane[VEC];
        VSTORE(acc[c] * mult, 0, lane);
        for (int e = 0; e < VEC && c * VEC + e < dim; e++) {
            const int at = c * VEC + e;
            const float grad = !lengths_ok ? NAN : live ? lane[e] : 0.0f;
            STORE_GRAD(row, at, (flags & BACKWARD_ACCUMULATE) ? LOAD_GRAD(row, at) + grad : grad);
        }
    }
}

#define BACKWARD_ARGS                                                                          \
    __global const qkv_t *q, __global const qkv_t *k, __global const qkv_t *v,                  \
    __global const out_t *out, __global const out_t *dout, __global const float *lse,           \
    __global grad_t *dq, __global grad_t *dk, __global grad_t *dv,                              \
    __global const bias_t *bias, __global const int *seqlens_q, __global const int *seqlens_k,  \
    const clattn_backward_params params

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_backward_dkdv(BACKWARD_ARGS)
{
#if SCORES_IN_ROW_LANES
    __local float qrows[BLOCK_N * D_PAD];   /* q: scores, dk */
    __local float dorows[BLOCK_N * DV_PAD]; /* dout: dout . v, dv */
#else
    __local float qt[D_PAD * BLOCK_N];      /* q^T q_scale: scores */
    __local float qrows[BLOCK_N * D_PAD];   /* q: dk */
    __local float dot[DV_PAD * BLOCK_N];    /* dout^T: dout . v */
    __local float dorows[BLOCK_N * DV_PAD]; /* dout: dv */
#endif
    __local float lse_tile[BLOCK_N], delta_tile[BLOCK_N];
    const clattn_attention_params *a = &params.attn;
    /* what the loops read, once, out of the parameter struct */
    const int head_dim = a->head_dim, head_dim_v = a->head_dim_v, group = a->group;
    const int flags = a->flags;
    const float q_scale = a->q_scale, score_scale = a->score_scale, softcap = a->softcap;

    const int lid = get_local_id(0);
    const int hkv = get_global_id(1);
    const long b = get_global_id(2);
    const long j_begin = (long)get_group_id(0) * BLOCK_M;  /* first key of the work-group */
    clattn_mask mp;
    const int lengths_ok = batch_mask(a, seqlens_q, seqlens_k, b, &mp);
    slice_qkv ks, vs;
    slice_of_qkv(&ks, k, &params.k, b, hkv);
    slice_of_qkv(&vs, v, &params.v, b, hkv);

    /* This work-item's keys: k and v rows (at PRIVATE_AT; with the rows in lanes q is staged
       as it is, for dk, so the keys carry q_scale), the dk and dv sums, the queries that see
       each. Flat arrays: the tile functions index across rows. */
    const float k_scale = SCORES_IN_ROW_LANES ? q_scale : 1.0f;
    float kr[ROWS * D_PAD], vr[ROWS * DV_PAD];
    floatv dk_acc[ROWS * CHUNKS_D], dv_acc[ROWS * CHUNKS_DV];
    int lo[ROWS], hi[ROWS], live[ROWS];
    int lo_max = 0, hi_min = a->seq_q;
    for (int r = 0; r < ROWS; r++) {
        const long j = j_begin + lid * ROWS + r;
        live[r] = j < mp.seq_k && lengths_ok;
        __global const qkv_t *krow = slice_row_qkv(ks, j), *vrow = slice_row_qkv(vs, j);
        for (int d = 0; d < D_PAD; d++)
            kr[PRIVATE_AT(D_PAD, r, d)] =
                live[r] && d < head_dim ? k_scale * LOAD_QKV(krow, d) : 0.0f;
        for (int d = 0; d < DV_PAD; d++)
            vr[PRIVATE_AT(DV_PAD, r, d)] = live[r] && d < head_dim_v ? LOAD_QKV(vrow, d) : 0.0f;
        for (int c = 0; c < CHUNKS_D; c++)
            dk_acc[r * CHUNKS_D + c] = (floatv)(0.0f);
        for (int c = 0; c < CHUNKS_DV; c++)
            dv_acc[r * CHUNKS_DV + c] = (floatv)(0.0f);
        lo[r] = live[r] ? (int)clattn_seeing_lo(&mp, j) : a->seq_q;
        hi[r] = live[r] ? (int)clattn_seeing_hi(&mp, j) : -1;
        if (live[r]) {
            lo_max = max(lo_max, lo[r]);
            hi_min = min(hi_min, hi[r]);
        }
    }

    const update_sink dk_sums = {.acc = dk_acc}, dv_sums = {.acc = dv_acc};

    /* The queries any key of the work-group sees (monotone in j). */
    const long j_last = min(j_begin + BLOCK_M, mp.seq_k) - 1;
    const int queries_lo = (int)clattn_seeing_lo(&mp, j_begin);
    const int queries_hi =
        lengths_ok && j_last >= j_begin ? (int)clattn_seeing_hi(&mp, j_last) : -1;

    for (int g = 0; g < group; g++) {
        const int h = hkv * group + g;
        slice_qkv qs;
        slice_out os, dos;
        slice_of_qkv(&qs, q, &params.q, b, h);
        slice_of_out(&os, out, &params.out, b, h);
        slice_of_out(&dos, dout, &params.dout, b, h);
        __global const float *lh = lse + view_row(&params.lse, b, h, 0);
        __global const bias_t *bias_h = bias + view_row(&params.bias, b, h, 0);
        for (long first = queries_lo; first <= queries_hi; first += BLOCK_N) {
            const int i0 = (int)first, count = min(BLOCK_N, queries_hi - i0 + 1);
            barrier(CLK_LOCAL_MEM_FENCE);
#if !SCORES_IN_ROW_LANES
            stage_transposed_qkv(qt, qs, head_dim, i0, count, q_scale, lid);
            stage_transposed_out(dot, dos, head_dim_v, i0, count, 1.0f, lid);
#endif
            stage_rows_qkv(qrows, D_PAD, qs, head_dim, i0, count, 1.0f, lid);
            stage_rows_out(dorows, DV_PAD, dos, head_dim_v, i0, count, 1.0f, lid);
            for (int n = lid; n < BLOCK_N; n += WG)
                lse_tile[n] = n < count ? lh[(i0 + n) * params.lse.seq_stride] : -INFINITY;
            for (int n = lid * DELTA_ROWS; n < BLOCK_N; n += WG * DELTA_ROWS) {
                float deltas[DELTA_ROWS];
                row_deltas(os, dos, i0 + n, clamp(count - n, 0, DELTA_ROWS), head_dim_v, deltas);
                for (int e = 0; e < DELTA_ROWS && n + e < BLOCK_N; e++)
                    delta_tile[n + e] = deltas[e];
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            floatv s[ROWS * CHUNKS_N], dp[ROWS * CHUNKS_N];
            const int all_visible = tile_all_visible(i0, count, lo_max, hi_min);
            const local_rows dotile = {dorows, DV_PAD}, qtile = {qrows, D_PAD};
            float pw[ROWS * BLOCK_N], ds[ROWS * BLOCK_N];
#if SCORES_IN_ROW_LANES
            tile_scores_lanes_local(kr, qtile, i0, count, head_dim, s);
            tile_scores_lanes_local(vr, dotile, i0, count, head_dim_v, dp);
            for (int n = 0; n < BLOCK_N; n++) { /* query i0 + n; keys w * VEC .. in the lanes */
                __global const bias_t *bias_row = bias_h + (i0 + n) * params.bias.seq_stride;
                for (int w = 0; w < ROW_VECS; w++) {
                    const long j = j_begin + lid * ROWS + w * VEC;
                    const floatv bias_w = (flags & ATTENTION_BIAS) && n < count
                                              ? bias_lanes(bias_row + j, 1, 0, (int)(mp.seq_k - j))
                                              : (floatv)(0.0f);
                    const floatv drop = (flags & ATTENTION_DROPOUT)
                                            ? dropout_lanes(&a->dropout, b * a->heads_q + h,
                                                            i0 + n, 0, j, 1)
                                            : (floatv)(1.0f);
                    floatv pw_w, ds_w;
                    pair_grads(s[n * ROW_VECS + w], dp[n * ROW_VECS + w],
                               (floatv)(lse_tile[n]), (floatv)(delta_tile[n]), drop, bias_w,
                               score_scale, softcap, &pw_w, &ds_w);
                    VSTORE(pw_w, n * ROW_VECS + w, pw);
                    VSTORE(ds_w, n * ROW_VECS + w, ds);
                }
            }
#else
            tile_scores(kr, D_PAD, qt, head_dim, s);
            tile_scores(vr, DV_PAD, dot, head_dim_v, dp);
            for (int r = 0; r < ROWS; r++) {
                const long j = j_begin + lid * ROWS + r;
                for (int c = 0; c < CHUNKS_N; c++) {
                    const floatv bias_c = (flags & ATTENTION_BIAS) && live[r]
                                             ? bias_lanes(bias_h + j, params.bias.seq_stride,
                                                          i0 + c * VEC, a->seq_q)
                                             : (floatv)(0.0f);
                    const floatv w = (flags & ATTENTION_DROPOUT)
                                         ? dropout_lanes(&a->dropout, b * a->heads_q + h,
                                                         i0 + c * VEC, 1, j, 0)
                                         : (floatv)(1.0f);
                    floatv pw_c, ds_c;
                    pair_grads(s[r * CHUNKS_N + c], dp[r * CHUNKS_N + c], VLOAD(c, lse_tile),
                               VLOAD(c, delta_tile), w, bias_c, score_scale, softcap, &pw_c,
                               &ds_c);
                    VSTORE(pw_c, c, pw + r * BLOCK_N);
                    VSTORE(ds_c, c, ds + r * BLOCK_N);
                }
            }
#endif
            tile_update_local(dv_sums, CHUNKS_DV, chunks_of(head_dim_v), pw, G_STRIDE_R,
                              G_STRIDE_N, dotile, head_dim_v, i0, count, lo, hi, all_visible);
            tile_update_local(dk_sums, CHUNKS_D, chunks_of(head_dim), ds, G_STRIDE_R, G_STRIDE_N,
                              qtile, head_dim, i0, count, lo, hi, all_visible);
        }
    }

    for (int r = 0; r < ROWS; r++) {
        const long j = j_begin + lid * ROWS + r;
        if (j >= a->seq_k)
            break;
        store_grad_row(dk + view_row(&params.dk, b, hkv, j), dk_acc + r * CHUNKS_D, head_dim,
                       params.grad_mult, live[r], lengths_ok, flags);
        store_grad_row(dv + view_row(&params.dv, b, hkv, j), dv_acc + r * CHUNKS_DV, head_dim_v,
                       1.0f, live[r], lengths_ok, flags);
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_backward_dq(BACKWARD_ARGS)
{
#if SCORES_IN_ROW_LANES
    __local float krows[BLOCK_N * D_PAD];   /* k: scores, dq */
    __local float vrows[BLOCK_N * DV_PAD];  /* v: dout . v */
#else
    __local float kt[D_PAD * BLOCK_N];      /* k^T: scores */
    __local float krows[BLOCK_N * D_PAD];   /* k: dq */
    __local float vt[DV_PAD * BLOCK_N];     /* v^T: dout . v */
#endif
    const clattn_attention_params *a = &params.attn;
    /* what the loops read, once, out of the parameter struct */
    const int head_dim = a->head_dim, head_dim_v = a->head_dim_v, group = a->group;
    const int flags = a->flags;
    const float q_scale = a->q_scale, score_scale = a->score_scale, softcap = a->softcap;

    const int lid = get_local_id(0);
    const int hkv = get_global_id(1);
    const long b = get_global_id(2);
    const long rho0 = (long)get_group_id(0) * BLOCK_M;  /* first row of the work-group */
    const long rho_end = (long)group * a->seq_q;
    clattn_mask mp;
    const int lengths_ok = batch_mask(a, seqlens_q, seqlens_k, b, &mp);
    slice_qkv ks, vs;
    slice_of_qkv(&ks, k, &params.k, b, hkv);
    slice_of_qkv(&vs, v, &params.v, b, hkv);

    /* This work-item's rows (rho = i * group + head in group, as in the forward). */
    /* flat arrays, as in attention_backward_dkdv */
    float qr[ROWS * D_PAD], dor[ROWS * DV_PAD], lse_r[ROWS], delta[ROWS];
    floatv dq_acc[ROWS * CHUNKS_D];
    int lo[ROWS], hi[ROWS], live[ROWS], row_h[ROWS];
    long row_i[ROWS];                    /* the query row and head of each row */
    int lo_max = 0, hi_min = a->seq_k;
    for (int r = 0; r < ROWS; r++) {
        const long rho = rho0 + lid * ROWS + r;
        const long i = row_i[r] = rho / group;
        const int h = row_h[r] = hkv * group + (int)(rho % group);
        live[r] = rho < rho_end && i < mp.seq_q && lengths_ok;
        __global const qkv_t *qrow = q + view_row(&params.q, b, h, i);
        slice_out os, dos;
        slice_of_out(&os, out, &params.out, b, h);
        slice_of_out(&dos, dout, &params.dout, b, h);
        __global const out_t *dorow = slice_row_out(dos, i);
        for (int d = 0; d < D_PAD; d++)
            qr[PRIVATE_AT(D_PAD, r, d)] =
                live[r] && d < head_dim ? q_scale * LOAD_QKV(qrow, d) : 0.0f;
        for (int d = 0; d < DV_PAD; d++)
            dor[PRIVATE_AT(DV_PAD, r, d)] = live[r] && d < head_dim_v ? LOAD_OUT(dorow, d) : 0.0f;
        lse_r[r] = live[r] ? lse[view_row(&params.lse, b, h, i)] : -INFINITY;
        float row_delta[DELTA_ROWS];
        row_deltas(os, dos, i, live[r] ? 1 : 0, head_dim_v, row_delta);
        delta[r] = row_delta[0];
        for (int c = 0; c < CHUNKS_D; c++)
            dq_acc[r * CHUNKS_D + c] = (floatv)(0.0f);
        lo[r] = live[r] ? (int)clattn_visible_lo(&mp, i) : a->seq_k;
        hi[r] = live[r] ? (int)clattn_visible_hi(&mp, i) : -1;
        if (live[r]) {
            lo_max = max(lo_max, lo[r]);
            hi_min = min(hi_min, hi[r]);
        }
    }

    const update_sink dq_sums = {.acc = dq_acc};

    /* The keys any row of the work-group sees (monotone in i = rho / group). */
    const long i_first = rho0 / group;
    const long i_last = min((min(rho0 + BLOCK_M, rho_end) - 1) / group, mp.seq_q - 1);
    const int keys_lo = (int)clattn_visible_lo(&mp, i_first);
    const int keys_hi = lengths_ok && i_last >= i_first ? (int)clattn_visible_hi(&mp, i_last) : -1;

    for (long first = keys_lo; first <= keys_hi; first += BLOCK_N) {
        const int j0 = (int)first, count = min(BLOCK_N, keys_hi - j0 + 1);
        barrier(CLK_LOCAL_MEM_FENCE);
        stage_rows_qkv(krows, D_PAD, ks, head_dim, j0, count, 1.0f, lid);
#if SCORES_IN_ROW_LANES
        stage_rows_qkv(vrows, DV_PAD, vs, head_dim_v, j0, count, 1.0f, lid);
#else
        stage_transposed_qkv(kt, ks, head_dim, j0, count, 1.0f, lid);
        stage_transposed_qkv(vt, vs, head_dim_v, j0, count, 1.0f, lid);
#endif
        barrier(CLK_LOCAL_MEM_FENCE);

        floatv s[ROWS * CHUNKS_N], dp[ROWS * CHUNKS_N];
        const int all_visible = tile_all_visible(j0, count, lo_max, hi_min);
        const local_rows ktile = {krows, D_PAD};
        float ds[ROWS * BLOCK_N];
#if SCORES_IN_ROW_LANES
        const local_rows vtile = {vrows, DV_PAD};
        tile_scores_lanes_local(qr, ktile, j0, count, head_dim, s);
        tile_scores_lanes_local(dor, vtile, j0, count, head_dim_v, dp);
        for (int n = 0; n < BLOCK_N; n++) /* key j0 + n; rows w * VEC .. in the lanes */
            for (int w = 0; w < ROW_VECS; w++) {
                const int *h_w = row_h + w * VEC, *live_w = live + w * VEC;
                const long *i_w = row_i + w * VEC;
                const floatv bias_w = (flags & ATTENTION_BIAS)
                                          ? bias_of_rows(bias, &params.bias, b, h_w, i_w, live_w,
                                                         j0 + n, mp.seq_k)
                                          : (floatv)(0.0f);
                const floatv drop = (flags & ATTENTION_DROPOUT)
                                        ? dropout_of_rows(&a->dropout, b, a->heads_q, h_w, i_w,
                                                          j0 + n)
                                        : (floatv)(1.0f);
                floatv pw_w, ds_w;
                pair_grads(s[n * ROW_VECS + w], dp[n * ROW_VECS + w], VLOAD(w, lse_r),
                           VLOAD(w, delta), drop, bias_w, score_scale, softcap, &pw_w, &ds_w);
                VSTORE(ds_w, n * ROW_VECS + w, ds);
            }
#else
        tile_scores(qr, D_PAD, kt, head_dim, s);
        tile_scores(dor, DV_PAD, vt, head_dim_v, dp);
        for (int r = 0; r < ROWS; r++) {
            const long i = row_i[r];
            const int h = row_h[r];
            __global const bias_t *bias_row = bias + view_row(&params.bias, b, h, i);
            for (int c = 0; c < CHUNKS_N; c++) {
                const floatv bias_c = (flags & ATTENTION_BIAS) && live[r]
                                         ? bias_lanes(bias_row, 1, j0 + c * VEC, mp.seq_k)
                                         : (floatv)(0.0f);
                const floatv w = (flags & ATTENTION_DROPOUT)
                                     ? dropout_lanes(&a->dropout, b * a->heads_q + h, i, 0,
                                                     j0 + c * VEC, 1)
                                     : (floatv)(1.0f);
                floatv pw_c, ds_c;
                pair_grads(s[r * CHUNKS_N + c], dp[r * CHUNKS_N + c], (floatv)(lse_r[r]),
                           (floatv)(delta[r]), w, bias_c, score_scale, softcap, &pw_c, &ds_c);
                VSTORE(ds_c, c, ds + r * BLOCK_N);
            }
        }
#endif
        tile_update_local(dq_sums, CHUNKS_D, chunks_of(head_dim), ds, G_STRIDE_R, G_STRIDE_N,
                          ktile, head_dim, j0, count, lo, hi, all_visible);
    }

    for (int r = 0; r < ROWS; r++) {
        if (rho0 + lid * ROWS + r >= rho_end)
            break;
        const long i = row_i[r];
        const int h = row_h[r];
        store_grad_row(dq + view_row(&params.dq, b, h, i), dq_acc + r * CHUNKS_D, head_dim,
                       params.grad_mult, live[r], lengths_ok, flags);
    }
}
