/*
 * attention_forward.cl — fused attention forward (FlashAttention-style online softmax).
 *
 * For batch b, query head h (key/value head h / group) and query row i:
 *   out[b,h,i,:] = sum_j softmax_j(s(i, j)) v[j,:]   over the keys j visible to row i,
 *   lse[b,h,i]   = log(sum_j exp(s(i, j)))           (natural log),
 * with s(i, j) = scale * (q[i].k[j]), then softcap, then + bias[b,h,i,j] (cl/common.cl SCORE);
 * with dropout each weight is multiplied by 0 or 1/(1-p) (common.cl), lse stays before dropout.
 * Rows with no visible key, or whose visible scores are all -inf, and padding rows
 * (i >= seqlens_q[b]) get out = 0 and lse = -inf; a batch with a seqlens entry outside
 * [0, dim] gets NaN. Memory is O(S): keys stream through local memory in tiles of BLOCK_N,
 * never an Sq x Sk buffer.
 *
 * Numerics (docs/semantics.md "Softmax, lse and empty rows"): scores stay in natural units, and
 * exponents are taken of differences from the running maximum (EXP_BELOW), so a score that
 * fits a float never overflows. Each tile's weights are summed apart and joined to the row's
 * running sum, and each tile's p v to the row's sum of p v, as compensated sums (common.cl);
 * both are rescaled by the same factors, exactly, and kept small by powers of two
 * (running_sum), so that the sum of p v never exceeds the largest |v| and the error of out
 * and lse does not grow with the number of keys.
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
 * With sinks (ATTENTION_SINKS) the first key range's out and lse take the row's sink into the
 * denominator (common.cl join_sink), so a merge of the ranges counts it once.
 * Arguments: the buffers, then clattn_forward_params (launch.h: the views of q, k, v, out, lse,
 * bias and sinks, the call's clattn_attention_params, the key ranges). K and V rows are read
 * through their slices (common.cl).
 * Launch: global (ceil(group * Sq / BLOCK_M) * splits * WG, Hkv, B), local (WG, 1, 1).
 * The tiling (ROWS, WG, BLOCK_N, D_PAD, DV_PAD, VEC) is tiles.cl's.
 */

/* A tile's weights are scaled by 2^-WEIGHT_SHIFT, 16 times the least power of two >= BLOCK_N
   (and by the row's halvings, rescale_sum), so that they add at most 1/16 to a row's running
   sum l; l is kept at or under 1/2 before a tile joins, so a row's sum of p v never exceeds
   its largest |v|. */
#if BLOCK_N <= 1
#define WEIGHT_SHIFT 4
#elif BLOCK_N <= 2
#define WEIGHT_SHIFT 5
#elif BLOCK_N <= 4
#define WEIGHT_SHIFT 6
#elif BLOCK_N <= 8
#define WEIGHT_SHIFT 7
#elif BLOCK_N <= 16
#define WEIGHT_SHIFT 8
#elif BLOCK_N <= 32
#define WEIGHT_SHIFT 9
#elif BLOCK_N <= 64
#define WEIGHT_SHIFT 10
#elif BLOCK_N <= 128
#define WEIGHT_SHIFT 11
#elif BLOCK_N <= 256
#define WEIGHT_SHIFT 12
#elif BLOCK_N <= 512
#define WEIGHT_SHIFT 13
#elif BLOCK_N <= 1024
#define WEIGHT_SHIFT 14
#elif BLOCK_N <= 2048
#define WEIGHT_SHIFT 15
#elif BLOCK_N <= 4096
#define WEIGHT_SHIFT 16
#else
#error "BLOCK_N over 4096"
#endif

/* Tiles whose p v are summed plainly (update_sink's part) before they join the compensated
   sum: the error of that many tiles' plain sum, about FLUSH_TILES * BLOCK_N roundings at
   worst, bounds the error of any number of keys. */
#define FLUSH_TILES 16

/* Before a tile joins a row's running sum l + lc (a compensated sum; VEC rows in lanes, one
   row: _1): the sum is rescaled by keep = alpha 2^-j, alpha = exp(m - m_new) for the new
   running maximum and 2^-j the power of two that brings l alpha back to [1/16, 1/8) when it
   is over 1/2 (every several tiles at most). j is added to *halvings: the tile's weights are
   then exp(s - m_new) times 2^-(WEIGHT_SHIFT + halvings), in the same units, and add at most
   1/16. Returns keep (mostly 1), by which the row's sum of p v is scaled too (tile_update_*),
   exactly, so that their ratio, the output, loses nothing to it. NaN stays NaN. */
#define DEFINE_RESCALE_SUM(suffix, type, int_type, TO_FLOAT)                                     \
    static type rescale_sum##suffix(type *l, type *lc, type *halvings, type alpha)               \
    {                                                                                            \
        const type scaled = *l * alpha;                                                          \
        const int_type j = select((int_type)(0), ilogb(scaled) + 4,                              \
                                  isgreater(scaled, (type)(0.5f)));                              \
        const type keep = ldexp(alpha, -j);                                                      \
        *halvings += TO_FLOAT(j);                                                                \
        scale_exactly##suffix(l, lc, keep);                                                      \
        return keep;                                                                             \
    }
DEFINE_RESCALE_SUM(, floatv, intv, TO_FLOATV)
DEFINE_RESCALE_SUM(_1, float, int, convert_float)

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_forward(__global const qkv_t *q, __global const qkv_t *k, __global const qkv_t *v,
                       __global out_t *out, __global float *lse, __global const bias_t *bias,
                       __global const int *seqlens_q, __global const int *seqlens_k,
                       __global const float *sinks, const clattn_forward_params params)
{
#if !SCORES_FROM_ROWS && !KEYS_FROM_GLOBAL
    __local float kt[D_PAD * BLOCK_N];
#endif
#if !SCORES_FROM_ROWS
    __local float vt[BLOCK_N * DV_PAD];
#endif
    const clattn_attention_params *a = &params.attn;
    const int group = a->group, flags = a->flags;
    const float score_scale = a->score_scale, softcap = a->softcap;

    const int lid = get_local_id(0);
    const int hkv = get_global_id(1);
    const long b = get_global_id(2);
    const int blocks = (int)(get_num_groups(0) / params.splits);
    const int split = get_group_id(0) / blocks;
    const long rho0 = (long)(get_group_id(0) % blocks) * BLOCK_M; /* the work-group's first row */
    const long rho_end = (long)group * a->seq_q;
    const int split_lo = split * params.keys_per_split;
    const int split_hi = (int)min((long)split_lo + params.keys_per_split, (long)a->seq_k) - 1;

    clattn_mask mp;
    const int lengths_ok = batch_mask(a, seqlens_q, seqlens_k, b, &mp);
    slice_qkv ks, vs;
    slice_of_qkv(&ks, k, &params.k, b, hkv);
    slice_of_qkv(&vs, v, &params.v, b, hkv);

    /* Private state of this work-item's rows; q is held times q_scale (launch.h), at
       PRIVATE_AT, and a tile's weights p at G_STRIDE_* (tiles.cl: transposed and key by key
       with SCORES_IN_ROW_LANES, so that VEC consecutive rows fill a vector). Per row: the
       running maximum m, the running sum l of the weights (in units of 2^WEIGHT_SHIFT,
       compensated by lc), and out so far, normalised by l (acc, compensated by comp), so that
       it never exceeds the largest |v|. */
    float qr[ROWS * D_PAD];
    /* flat arrays, row r at r * CHUNKS_DV: the sums are indexed across rows (update_sink) */
    floatv acc[ROWS * CHUNKS_DV], comp[ROWS * CHUNKS_DV], part[ROWS * CHUNKS_DV];
    float m[ROWS], l[ROWS], lc[ROWS], halvings[ROWS], keep[ROWS];
    int lo[ROWS], hi[ROWS], live[ROWS], row_h[ROWS];
    long row_i[ROWS];                    /* the query row and head of each row */
    int lo_max = 0, hi_min = a->seq_k;   /* over this work-item's live rows */
    for (int r = 0; r < ROWS; r++) {
        const long rho = rho0 + lid * ROWS + r;
        const long i = row_i[r] = rho / group;
        const int h = row_h[r] = hkv * group + (int)(rho % group);
        /* a live row is one whose output is computed: not padding, not past the end */
        live[r] = rho < rho_end && i < mp.seq_q && lengths_ok;
        __global const qkv_t *qrow = q + view_row(&params.q, b, h, i);
        for (int d = 0; d < D_PAD; d++)
            qr[PRIVATE_AT(D_PAD, r, d)] =
                (live[r] && d < a->head_dim) ? LOAD_QKV(qrow, d) * a->q_scale : 0.0f;
        for (int c = 0; c < CHUNKS_DV; c++)
            acc[r * CHUNKS_DV + c] = comp[r * CHUNKS_DV + c] = part[r * CHUNKS_DV + c] =
                (floatv)(0.0f);
        m[r] = NEG_BIG;
        l[r] = lc[r] = halvings[r] = 0.0f;
        lo[r] = live[r] ? max((int)clattn_visible_lo(&mp, i), split_lo) : a->seq_k;
        hi[r] = live[r] ? min((int)clattn_visible_hi(&mp, i), split_hi) : -1;
        if (live[r]) { /* a live row that sees nothing here makes lo_max > hi_min: never full */
            lo_max = max(lo_max, lo[r]);
            hi_min = min(hi_min, hi[r]);
        }
    }

    /* The keys any row of the work-group sees (the same for every work-item): visibility is
       monotone in the query row i = rho / group. */
    const long i_first = rho0 / group;
    const long i_last = min((min(rho0 + BLOCK_M, rho_end) - 1) / group, mp.seq_q - 1);
    const int keys_lo = max((int)clattn_visible_lo(&mp, i_first), split_lo);
    const int keys_hi = lengths_ok && i_last >= i_first
                            ? min((int)clattn_visible_hi(&mp, i_last), split_hi) : -1;
    const int chunks_dv = chunks_of(a->head_dim_v);
    const update_sink out_sums = {.acc = acc, .comp = comp, .part = part,
                                  .keep = keep};

    int tiles_in_part = 0;
    for (long first = keys_lo; first <= keys_hi; first += BLOCK_N) { /* long: no overflow at
                                                                         2^31 - 1 keys */
        const int j0 = (int)first, count = min(BLOCK_N, keys_hi - j0 + 1);
#if !SCORES_FROM_ROWS /* decode reads K and V from global memory */
        barrier(CLK_LOCAL_MEM_FENCE);
#if SCORES_IN_ROW_LANES && !KEYS_FROM_GLOBAL
        stage_rows_qkv(kt, D_PAD, ks, a->head_dim, j0, count, 1.0f, lid);
#elif !SCORES_IN_ROW_LANES
        stage_transposed_qkv(kt, ks, a->head_dim, j0, count, 1.0f, lid);
#endif
        stage_rows_qkv(vt, DV_PAD, vs, a->head_dim_v, j0, count, 1.0f, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
#endif

        /* Every key of the tile visible to every live row: no masking needed (rows that are
           not live are never stored as computed). */
        const int full = tile_all_visible(j0, count, lo_max, hi_min);

        /* Scores of ROWS rows x BLOCK_N keys, then the online softmax: the running sums are
           rescaled for the new maxima m_new (rescale_sum_*), and the weights are
           p = exp(s - m_new) 2^-(WEIGHT_SHIFT + halvings) for visible keys, exactly 0 for the
           others. */
        floatv s[ROWS * CHUNKS_N];
        float p[ROWS * BLOCK_N];
#if SCORES_IN_ROW_LANES
#if KEYS_FROM_GLOBAL
        tile_scores_lanes_qkv(qr, ks, j0, count, a->head_dim, s);
#else
        const local_rows ktile = {kt, D_PAD};
        tile_scores_lanes_local(qr, ktile, j0, count, a->head_dim, s);
#endif
        for (int w = 0; w < ROW_VECS; w++) { /* rows w * VEC .. in the lanes */
            const intv row_lo = VLOAD(w, lo), row_hi = VLOAD(w, hi);
            const floatv m_old = VLOAD(w, m);
            floatv m_new = m_old;
            for (int n = 0; n < BLOCK_N; n++) {
                floatv x = SCORE(s[n * ROW_VECS + w], score_scale, softcap);
                if (flags & ATTENTION_BIAS)
                    x += bias_of_rows(bias, &params.bias, b, row_h + w * VEC, row_i + w * VEC,
                                      live + w * VEC, j0 + n, mp.seq_k);
                if (!full)
                    x = select((floatv)(NEG_BIG), x,
                               (intv)(j0 + n) >= row_lo && (intv)(j0 + n) <= row_hi);
                s[n * ROW_VECS + w] = x;
                m_new = fmax(m_new, x);
            }
            floatv l_v = VLOAD(w, l), lc_v = VLOAD(w, lc), halvings_v = VLOAD(w, halvings);
            VSTORE(rescale_sum(&l_v, &lc_v, &halvings_v, EXP_BELOW(m_old, m_new, 0)), w, keep);
            const floatv shift = WEIGHT_SHIFT + halvings_v;
            floatv row_sum = (floatv)(0.0f);
            for (int n = 0; n < BLOCK_N; n++) {
                floatv e = EXP_BELOW(s[n * ROW_VECS + w], m_new, shift);
                if (!full)
                    e = select((floatv)(0.0f), e,
                               (intv)(j0 + n) >= row_lo && (intv)(j0 + n) <= row_hi);
                row_sum += e;
                VSTORE(e, n * ROW_VECS + w, p);
            }
            add_compensated(&l_v, &lc_v, row_sum);
            VSTORE(l_v, w, l);
            VSTORE(lc_v, w, lc);
            VSTORE(halvings_v, w, halvings);
            VSTORE(m_new, w, m);
        }
#else
#if SCORES_FROM_ROWS
        tile_scores_from_rows(qr, D_PAD, ks, j0, count, a->head_dim, s);
#else
        tile_scores(qr, D_PAD, kt, a->head_dim, s);
#endif
        for (int r = 0; r < ROWS; r++) {
            __global const bias_t *bias_row = bias + view_row(&params.bias, b, row_h[r], row_i[r]);
            floatv *sr = s + r * CHUNKS_N;
            /* lane-wise maximum and sum over the chunks, then one horizontal step each */
            floatv lanes_max = (floatv)(NEG_BIG);
            for (int c = 0; c < CHUNKS_N; c++) {
                sr[c] = SCORE(sr[c], score_scale, softcap);
                if ((flags & ATTENTION_BIAS) && live[r])
                    sr[c] += bias_lanes(bias_row, 1, j0 + c * VEC, mp.seq_k);
                if (!full) {
                    const intv j = (intv)(j0 + c * VEC) + IOTA;
                    sr[c] = select((floatv)(NEG_BIG), sr[c], j >= lo[r] && j <= hi[r]);
                }
                lanes_max = fmax(lanes_max, sr[c]);
            }
            const float m_new = fmax(m[r], HMAX(lanes_max));
            keep[r] = rescale_sum_1(&l[r], &lc[r], &halvings[r], EXP_BELOW(m[r], m_new, 0));
            const float shift = WEIGHT_SHIFT + halvings[r];
            floatv lanes_sum = (floatv)(0.0f);
            for (int c = 0; c < CHUNKS_N; c++) {
                floatv e = EXP_BELOW(sr[c], m_new, shift);
                if (!full) {
                    const intv j = (intv)(j0 + c * VEC) + IOTA;
                    e = select((floatv)(0.0f), e, j >= lo[r] && j <= hi[r]);
                }
                lanes_sum += e;
                VSTORE(e, c, p + r * BLOCK_N);
            }
            add_compensated_1(&l[r], &lc[r], HSUM(lanes_sum));
            m[r] = m_new;
        }
#endif
        if (flags & ATTENTION_DROPOUT) /* after the sums: lse is before dropout */
            for (int r = 0; r < ROWS; r++)
                for (int n = 0; n < BLOCK_N; n++)
                    p[r * G_STRIDE_R + n * G_STRIDE_N] *= dropout_factor(
                        &a->dropout, b * a->heads_q + row_h[r], row_i[r], j0 + n);

        /* sum of p v = (sum of p v) keep + this tile's p v, skipping invisible keys so that
           whatever they hold cannot leak in. */
#if SCORES_FROM_ROWS
        tile_update_qkv_output(out_sums, CHUNKS_DV, chunks_dv, p, G_STRIDE_R, G_STRIDE_N, vs,
                               a->head_dim_v, j0, count, lo, hi, full);
#else
        const local_rows vtile = {vt, DV_PAD};
        tile_update_local_output(out_sums, CHUNKS_DV, chunks_dv, p, G_STRIDE_R, G_STRIDE_N,
                                 vtile, a->head_dim_v, j0, count, lo, hi, full);
#endif
        if (++tiles_in_part == FLUSH_TILES) {
            flush_sums(out_sums, CHUNKS_DV);
            tiles_in_part = 0;
        }
    }
    flush_sums(out_sums, CHUNKS_DV);

    for (int r = 0; r < ROWS; r++) {
        if (rho0 + lid * ROWS + r >= rho_end)
            break;
        const long i = row_i[r];
        const int h = row_h[r];
        __global out_t *orow = out + split * params.out_split + view_row(&params.out, b, h, i);
        /* the sum is 0 only when no key is visible (or every visible score is -inf); NaN
           stays NaN */
        const float sum = l[r] + lc[r];
        const int empty = sum == 0.0f || i >= mp.seq_q;
        float row_lse = !lengths_ok ? NAN
                        : empty     ? -INFINITY
                                    : m[r] + log(sum) + (WEIGHT_SHIFT + halvings[r]) * M_LN2_F;
        float inv_sum = 1.0f / sum;
        /* a sink joins the denominator once: in the first key range's partial */
        if ((flags & ATTENTION_SINKS) && split == 0 && lengths_ok && i < mp.seq_q)
            inv_sum *= join_sink(&row_lse, sinks[view_row(&params.sinks, 0, h, 0)]);
        for (int c = 0; c < chunks_dv; c++) {
            const floatv o = !lengths_ok ? (floatv)(NAN)
                             : empty    ? (floatv)(0.0f)
                                        : (acc[r * CHUNKS_DV + c] + comp[r * CHUNKS_DV + c]) *
                                              inv_sum;
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
            lse[split * params.lse_split + view_row(&params.lse, b, h, i)] = row_lse;
    }
}
