/*
 * attention_forward.cl — fused attention forward (FlashAttention-style online softmax).
 *
 * For batch b, query head h (key/value head h / group) and query row i:
 *   out[b,h,i,:] = sum_j softmax_j(s(i, j)) v[j,:]   over the keys j visible to row i,
 *   lse[b,h,i]   = log(sum_j exp(s(i, j)))           (natural log),
 * with s(i, j) = q[i].k[j] * scale, then softcap, then + bias[b,h,i,j] (cl/common.cl); with
 * dropout each weight is multiplied by 0 or 1/(1-p) (common.cl), lse stays before dropout. Rows with
 * no visible key, or whose visible scores are all -inf, and padding rows (i >= seqlens_q[b]) get
 * out = 0 and lse = -inf; a batch with a seqlens entry outside [0, dim] gets NaN. Memory is
 * O(S): keys stream through local memory in tiles of BLOCK_N, never an Sq x Sk buffer.
 *
 * Rows: for each (batch, kv head) the rows are the pairs (query row i, query head of the group),
 * numbered rho = i * group + (h % group), so one staged K/V tile serves every query head of the
 * group (GQA and MQA read K and V once per group). A work-item owns ROWS consecutive rows in
 * private memory (register blocking); a work-group owns BLOCK_M = ROWS * WG rows.
 *
 * Split-KV: keys are cut into `splits` ranges of `keys_per_split`; range s of every row is
 * computed by its own work-groups and written, with its lse, at out + s * out_split and
 * lse + s * lse_split (the host then merges the ranges, cl/merge.cl). splits = 1 is the plain
 * call.
 *
 * Arguments: the buffers, then clattn_forward_params (launch.h: the views of q, k, v, out, lse
 * and bias, the call's clattn_attention_params, the key ranges). K and V rows are read through
 * their slices (common.cl).
 * Launch: global (ceil(group * Sq / BLOCK_M) * splits * WG, Hkv, B), local (WG, 1, 1).
 * The tiling (ROWS, WG, BLOCK_N, D_PAD, DV_PAD, VEC) is tiles.cl's.
 */

/* The bias of rows rho .. rho+VEC-1 (of kv head hkv's rows of batch b, numbered as above)
   against key j, times log2(e), in vector lanes; 0 for rows that are not live and for keys
   j >= seq_k. */
static floatv bias_of_rows(__global const bias_t *bias, const clattn_view_params *view, long b,
                           int hkv, int group, int rho, const int *live, int j, long seq_k)
{
    float lane[VEC];
    for (int e = 0; e < VEC; e++) {
        const int row = rho + e;
        lane[e] = live[e] && j < seq_k
                      ? M_LOG2E_F * LOAD_BIAS(bias + view_row(view, b, hkv * group + row % group,
                                                              row / group), j)
                      : 0.0f;
    }
    return VLOAD(0, lane);
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_forward(__global const qkv_t *q, __global const qkv_t *k, __global const qkv_t *v,
                       __global out_t *out, __global float *lse, __global const bias_t *bias,
                       __global const int *seqlens_q, __global const int *seqlens_k,
                       const clattn_forward_params params)
{
#if !SCORES_FROM_ROWS
    __local float kt[D_PAD * BLOCK_N], vt[BLOCK_N * DV_PAD];
#endif
    const clattn_attention_params *a = &params.attn;
    const int group = a->group, flags = a->flags;
    const float q_mult = a->q_mult, cap_mult = a->cap_mult;

    const int lid = get_local_id(0);
    const int hkv = get_global_id(1);
    const long b = get_global_id(2);
    const int blocks = (int)(get_num_groups(0) / params.splits);
    const int split = get_group_id(0) / blocks;
    const int rho0 = (get_group_id(0) % blocks) * BLOCK_M;  /* first row of the work-group */
    const int rho_end = group * a->seq_q;
    const int split_lo = split * params.keys_per_split;
    const int split_hi = min(split_lo + params.keys_per_split, a->seq_k) - 1;

    clattn_mask mp;
    const int lengths_ok = batch_mask(a, seqlens_q, seqlens_k, b, &mp);
    slice_qkv ks, vs;
    slice_of_qkv(&ks, k, &params.k, b, hkv);
    slice_of_qkv(&vs, v, &params.v, b, hkv);

    /* Private state of this work-item's rows; q is pre-multiplied by q_mult (common.cl). With
       SCORES_IN_ROW_LANES (tiles.cl) q is held transposed and the weights p key by key, so that
       VEC consecutive rows fill a vector; otherwise both row by row. */
#if SCORES_IN_ROW_LANES
#define Q_AT(r, d) qr[(d) * ROWS + (r)]
#define P_STRIDE_R 1
#define P_STRIDE_N ROWS
#else
#define Q_AT(r, d) qr[(r) * D_PAD + (d)]
#define P_STRIDE_R BLOCK_N
#define P_STRIDE_N 1
#endif
    float qr[ROWS * D_PAD];
    floatv acc[ROWS][CHUNKS_DV];
    float m[ROWS], l[ROWS];
    int lo[ROWS], hi[ROWS], live[ROWS];
    int lo_max = 0, hi_min = a->seq_k;   /* over this work-item's live rows */
    for (int r = 0; r < ROWS; r++) {
        const int rho = rho0 + lid * ROWS + r;
        const int i = rho / group;
        const int h = hkv * group + rho % group;
        /* a live row is one whose output is computed: not padding, not past the end */
        live[r] = rho < rho_end && i < mp.seq_q && lengths_ok;
        __global const qkv_t *qrow = q + view_row(&params.q, b, h, i);
        for (int d = 0; d < D_PAD; d++)
            Q_AT(r, d) = (live[r] && d < a->head_dim) ? LOAD_QKV(qrow, d) * q_mult : 0.0f;
        for (int c = 0; c < CHUNKS_DV; c++)
            acc[r][c] = (floatv)(0.0f);
        m[r] = NEG_BIG;
        l[r] = 0.0f;
        lo[r] = live[r] ? max((int)clattn_visible_lo(&mp, i), split_lo) : a->seq_k;
        hi[r] = live[r] ? min((int)clattn_visible_hi(&mp, i), split_hi) : -1;
        if (live[r]) { /* a live row that sees nothing here makes lo_max > hi_min: never full */
            lo_max = max(lo_max, lo[r]);
            hi_min = min(hi_min, hi[r]);
        }
    }

    /* The keys any row of the work-group sees (the same for every work-item): visibility is
       monotone in the query row i = rho / group. */
    const int i_first = rho0 / group;
    const int i_last = min((min(rho0 + BLOCK_M, rho_end) - 1) / group, (int)mp.seq_q - 1);
    const int keys_lo = max((int)clattn_visible_lo(&mp, i_first), split_lo);
    const int keys_hi = lengths_ok && i_last >= i_first
                            ? min((int)clattn_visible_hi(&mp, i_last), split_hi) : -1;
    const int chunks_dv = chunks_of(a->head_dim_v);

    for (int j0 = keys_lo; j0 <= keys_hi; j0 += BLOCK_N) {
        const int count = min(BLOCK_N, keys_hi - j0 + 1);
#if !SCORES_FROM_ROWS /* decode reads K and V from global memory */
        barrier(CLK_LOCAL_MEM_FENCE);
#if SCORES_IN_ROW_LANES
        stage_rows_qkv(kt, D_PAD, ks, a->head_dim, j0, count, 1.0f, lid);
#else
        stage_transposed_qkv(kt, ks, a->head_dim, j0, count, 1.0f, lid);
#endif
        stage_rows_qkv(vt, DV_PAD, vs, a->head_dim_v, j0, count, 1.0f, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
#endif

        /* Every key of the tile visible to every live row: no masking needed (rows that are
           not live are never stored as computed). */
        const int full = tile_all_visible(j0, count, lo_max, hi_min);

        /* Scores of ROWS rows x BLOCK_N keys, then the online softmax: p = exp2(s - m_new) for
           visible keys, exactly 0 for the others, and alpha = exp2(m - m_new) rescales what
           the rows have so far. */
        floatv s[ROWS * CHUNKS_N];
        float p[ROWS * BLOCK_N], alpha[ROWS];
#if SCORES_IN_ROW_LANES
        tile_scores_lanes(qr, kt, D_PAD, a->head_dim, s);
        for (int w = 0; w < ROW_VECS; w++) { /* rows w * VEC .. in the lanes */
            const intv row_lo = VLOAD(w, lo), row_hi = VLOAD(w, hi);
            const int rho = rho0 + lid * ROWS + w * VEC;
            floatv m_new = VLOAD(w, m);
            for (int n = 0; n < BLOCK_N; n++) {
                floatv x = SOFTCAP(s[n * ROW_VECS + w], cap_mult);
                if (flags & ATTENTION_BIAS)
                    x += bias_of_rows(bias, &params.bias, b, hkv, group, rho, live + w * VEC,
                                      j0 + n, mp.seq_k);
                if (!full)
                    x = select((floatv)(NEG_BIG), x,
                               (intv)(j0 + n) >= row_lo && (intv)(j0 + n) <= row_hi);
                s[n * ROW_VECS + w] = x;
                m_new = fmax(m_new, x);
            }
            floatv row_sum = (floatv)(0.0f);
            for (int n = 0; n < BLOCK_N; n++) {
                floatv e = exp2(s[n * ROW_VECS + w] - m_new);
                if (!full)
                    e = select((floatv)(0.0f), e,
                               (intv)(j0 + n) >= row_lo && (intv)(j0 + n) <= row_hi);
                row_sum += e;
                VSTORE(e, n * ROW_VECS + w, p);
            }
            const floatv rescale = exp2(VLOAD(w, m) - m_new);
            VSTORE(rescale, w, alpha);
            VSTORE(VLOAD(w, l) * rescale + row_sum, w, l);
            VSTORE(m_new, w, m);
        }
#else
#if SCORES_FROM_ROWS
        tile_scores_from_rows(qr, D_PAD, ks, j0, count, a->head_dim, s);
#else
        tile_scores(qr, D_PAD, kt, a->head_dim, s);
#endif
        for (int r = 0; r < ROWS; r++) {
            const int rho = rho0 + lid * ROWS + r;
            __global const bias_t *bias_row =
                bias + view_row(&params.bias, b, hkv * group + rho % group, rho / group);
            floatv *sr = s + r * CHUNKS_N;
            /* lane-wise maximum and sum over the chunks, then one horizontal step each */
            floatv lanes_max = (floatv)(NEG_BIG);
            for (int c = 0; c < CHUNKS_N; c++) {
                sr[c] = SOFTCAP(sr[c], cap_mult);
                if ((flags & ATTENTION_BIAS) && live[r])
                    sr[c] += bias_lanes(bias_row, 1, j0 + c * VEC, mp.seq_k);
                if (!full) {
                    const intv j = (intv)(j0 + c * VEC) + IOTA;
                    sr[c] = select((floatv)(NEG_BIG), sr[c], j >= lo[r] && j <= hi[r]);
                }
                lanes_max = fmax(lanes_max, sr[c]);
            }
            const float m_new = fmax(m[r], HMAX(lanes_max));
            floatv lanes_sum = (floatv)(0.0f);
            for (int c = 0; c < CHUNKS_N; c++) {
                floatv e = exp2(sr[c] - m_new);
                if (!full) {
                    const intv j = (intv)(j0 + c * VEC) + IOTA;
                    e = select((floatv)(0.0f), e, j >= lo[r] && j <= hi[r]);
                }
                lanes_sum += e;
                VSTORE(e, c, p + r * BLOCK_N);
            }
            alpha[r] = exp2(m[r] - m_new);
            l[r] = l[r] * alpha[r] + HSUM(lanes_sum);
            m[r] = m_new;
        }
#endif
        for (int r = 0; r < ROWS; r++) {
            if (flags & ATTENTION_DROPOUT) { /* after the sums: lse is before dropout */
                const int rho = rho0 + lid * ROWS + r;
                const long bh = b * a->heads_q + hkv * group + rho % group;
                for (int n = 0; n < BLOCK_N; n++)
                    p[r * P_STRIDE_R + n * P_STRIDE_N] *=
                        dropout_factor(&a->dropout, bh, rho / group, j0 + n);
            }
            for (int c = 0; c < chunks_dv; c++)
                acc[r][c] *= alpha[r];
        }

        /* acc += p v, skipping invisible keys so that whatever they hold cannot leak in. */
#if SCORES_FROM_ROWS
        tile_update_qkv(&acc[0][0], CHUNKS_DV, chunks_dv, p, P_STRIDE_R, P_STRIDE_N, vs,
                        a->head_dim_v, j0, count, lo, hi, full);
#else
        const local_rows vtile = {vt, DV_PAD};
        tile_update_local(&acc[0][0], CHUNKS_DV, chunks_dv, p, P_STRIDE_R, P_STRIDE_N, vtile,
                          a->head_dim_v, j0, count, lo, hi, full);
#endif
    }

    for (int r = 0; r < ROWS; r++) {
        const int rho = rho0 + lid * ROWS + r;
        if (rho >= rho_end)
            break;
        const int i = rho / group;
        const int h = hkv * group + rho % group;
        __global out_t *orow = out + split * params.out_split + view_row(&params.out, b, h, i);
        /* l == 0 only when no key is visible (or every visible score is -inf); NaN stays NaN. */
        const int empty = l[r] == 0.0f || i >= mp.seq_q;
        const float inv_l = 1.0f / l[r];
        for (int c = 0; c < chunks_dv; c++) {
            const floatv o = !lengths_ok ? (floatv)(NAN)
                             : empty    ? (floatv)(0.0f)
                                        : acc[r][c] * inv_l;
            if ((c + 1) * VEC <= a->head_dim_v) {
                VSTORE_OUT(o, c, orow);
            } else {
                float lane[VEC];
                VSTORE(o, 0, lane);
                for (int e = 0; c * VEC + e < a->head_dim_v; e++)
                    STORE_OUT(orow, c * VEC + e, lane[e]);
            }
        }
        if (flags & FORWARD_WRITE_LSE)
            lse[split * params.lse_split + view_row(&params.lse, b, h, i)] =
                !lengths_ok ? NAN : empty ? -INFINITY : m[r] * M_LN2_F + log(l[r]);
    }
}
