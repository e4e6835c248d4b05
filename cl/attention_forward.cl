/*
 * attention_forward.cl — fused attention forward (FlashAttention-style online softmax).
 *
 * For batch b, query head h (key/value head h / group) and query row i:
 *   out[b,h,i,:] = sum_j softmax_j(scale * q[i].k[j]) v[j,:]   over the keys j visible to i,
 *   lse[b,h,i]   = log(sum_j exp(scale * q[i].k[j]))           (natural log).
 * Key j is visible to row i iff lo(i) <= j <= hi(i) (see visible_lo / visible_hi). A row with no
 * visible key gets out = 0 and lse = -INFINITY. Memory is O(S): keys are streamed in tiles of
 * BLOCK_N, never an Sq x Sk buffer.
 *
 * Layout: every tensor is a strided view [batch, heads, seq, dim] whose last stride is 1; the
 * host passes the element offset and the batch, head and seq strides of each.
 *
 * Launch: global (ceil(Sq / BLOCK_M) * WG, Hq, B), local (WG, 1, 1). Work-item `lid` of a
 * work-group owns the ROWS consecutive query rows starting at group_row0 + lid * ROWS and keeps
 * them in private memory (register blocking). The work-group stages each key tile in local
 * memory, K transposed so that VEC consecutive keys load as one vector.
 *
 * Tunables (-D, made by src/plan.c clattn_tiling_build_options):
 *   D_PAD     bucket >= head_dim (private q rows, K^T tile)        required
 *   DV_PAD    bucket >= head_dim_v (accumulators, V tile)          required
 *   ROWS      query rows per work-item                              default 1
 *   WG        work-items per work-group                             default 64
 *   BLOCK_N   keys per tile; a multiple of VEC                      default 32
 *   VEC       vector width (common.cl)                              default 4
 *   plus the storage macros of common.cl.
 */

#ifndef D_PAD
#error "D_PAD (head_dim bucket) is required"
#endif
#ifndef DV_PAD
#error "DV_PAD (head_dim_v bucket) is required"
#endif
#ifndef ROWS
#define ROWS 1
#endif
#ifndef WG
#define WG 64
#endif
#ifndef BLOCK_N
#define BLOCK_N 32
#endif
#define BLOCK_M (ROWS * WG)
#define CHUNKS_N (BLOCK_N / VEC)
#define CHUNKS_DV_MAX ((DV_PAD + VEC - 1) / VEC)

#if BLOCK_N % VEC != 0
#error "BLOCK_N must be a multiple of VEC"
#endif

/* The visible keys of query row i form the interval [visible_lo(i), visible_hi(i)], clamped to
   [0, seq_k] and [-1, seq_k - 1]; both ends are non-decreasing in i. diag = i + off, where off is
   the mask alignment offset. A window of -1 is unbounded. */
typedef struct mask_params {
    int  seq_k;
    int  causal;
    long off;
    long window_left;
    long window_right;
} mask_params;

static int visible_lo(const mask_params *mp, long i)
{
    long lo = 0;
    if (mp->window_left >= 0)
        lo = max(lo, i + mp->off - mp->window_left);
    return (int)min(lo, (long)mp->seq_k);
}

static int visible_hi(const mask_params *mp, long i)
{
    long hi = mp->seq_k - 1;
    if (mp->causal)
        hi = min(hi, i + mp->off);
    if (mp->window_right >= 0)
        hi = min(hi, i + mp->off + mp->window_right);
    return (int)max(hi, -1L);
}

/* Address of key/value row j: the one place that knows how K and V rows are laid out. */
static __global const storage_t *kv_row(__global const storage_t *base, long seq_stride, int j)
{
    return base + (long)j * seq_stride;
}

/* Stage keys j0 .. j0+count-1 as a K^T tile [d][BLOCK_N] and a V tile [n][DV_PAD]. Slots past
   count, and V columns past head_dim_v up to the last vector, are zero so that every vector the
   kernel reads is initialised. */
static void stage_tile(__local float *kt, __local float *vt,
                       __global const storage_t *k, long k_ss, int head_dim,
                       __global const storage_t *v, long v_ss, int head_dim_v,
                       int j0, int count, int lid)
{
    const int dv_end = (head_dim_v + VEC - 1) / VEC * VEC;
    for (int n = 0; n < BLOCK_N; n++) {
        __global const storage_t *krow = kv_row(k, k_ss, j0 + n);
        __global const storage_t *vrow = kv_row(v, v_ss, j0 + n);
        for (int d = lid; d < head_dim; d += WG)
            kt[d * BLOCK_N + n] = n < count ? LOAD_STORAGE(krow, d) : 0.0f;
        for (int d = lid; d < dv_end; d += WG)
            vt[n * DV_PAD + d] = (n < count && d < head_dim_v) ? LOAD_STORAGE(vrow, d) : 0.0f;
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_forward(
    __global const storage_t *q, long q_off, long q_sb, long q_sh, long q_ss,
    __global const storage_t *k, long k_off, long k_sb, long k_sh, long k_ss,
    __global const storage_t *v, long v_off, long v_sb, long v_sh, long v_ss,
    __global out_t *out, long o_off, long o_sb, long o_sh, long o_ss,
    __global float *lse, long l_off, long l_sb, long l_sh, long l_ss, int write_lse,
    int seq_q, int seq_k, int head_dim, int head_dim_v, int group,
    float scale_log2e, int causal, long off, long window_left, long window_right)
{
    __local float kt[D_PAD * BLOCK_N];
    __local float vt[BLOCK_N * DV_PAD];

    const int lid = get_local_id(0);
    const int h = get_global_id(1);
    const long b = get_global_id(2);
    const int group_row0 = get_group_id(0) * BLOCK_M;
    const int row0 = group_row0 + lid * ROWS;
    const mask_params mp = { seq_k, causal, off, window_left, window_right };

    q += q_off + b * q_sb + h * q_sh;
    k += k_off + b * k_sb + (h / group) * k_sh;
    v += v_off + b * v_sb + (h / group) * v_sh;

    /* Private state of this work-item's rows; q is pre-multiplied by scale * log2(e) so that
       scores are in the base-2 domain of exp2. */
    float qr[ROWS][D_PAD];
    floatv acc[ROWS][CHUNKS_DV_MAX];
    float m[ROWS], l[ROWS];
    int lo[ROWS], hi[ROWS];
    for (int r = 0; r < ROWS; r++) {
        const int i = row0 + r;
        for (int d = 0; d < D_PAD; d++)
            qr[r][d] = (i < seq_q && d < head_dim) ? LOAD_STORAGE(q, i * q_ss + d) * scale_log2e : 0.0f;
        for (int c = 0; c < CHUNKS_DV_MAX; c++)
            acc[r][c] = (floatv)(0.0f);
        m[r] = NEG_BIG;
        l[r] = 0.0f;
        lo[r] = visible_lo(&mp, i);
        hi[r] = visible_hi(&mp, i);
    }

    /* The keys any row of the work-group sees; the same for every work-item. */
    const int last_row = min(group_row0 + BLOCK_M, seq_q) - 1;
    const int keys_lo = visible_lo(&mp, group_row0);
    const int keys_hi = visible_hi(&mp, last_row);
    const int chunks_dv = (head_dim_v + VEC - 1) / VEC;

    for (int j0 = keys_lo; j0 <= keys_hi; j0 += BLOCK_N) {
        const int count = min(BLOCK_N, keys_hi - j0 + 1);
        barrier(CLK_LOCAL_MEM_FENCE);
        stage_tile(kt, vt, k, k_ss, head_dim, v, v_ss, head_dim_v, j0, count, lid);
        barrier(CLK_LOCAL_MEM_FENCE);

        /* Scores of ROWS rows x BLOCK_N keys. */
        floatv s[ROWS][CHUNKS_N];
        for (int r = 0; r < ROWS; r++)
            for (int c = 0; c < CHUNKS_N; c++)
                s[r][c] = (floatv)(0.0f);
        for (int d = 0; d < head_dim; d++) {
            for (int c = 0; c < CHUNKS_N; c++) {
                const floatv kv = VLOAD(c, kt + d * BLOCK_N);
                for (int r = 0; r < ROWS; r++)
                    s[r][c] = fma((floatv)(qr[r][d]), kv, s[r][c]);
            }
        }

        /* Every key of the tile visible to every row: no masking needed. */
        const int full = count == BLOCK_N && lo[ROWS - 1] <= j0 && hi[0] >= j0 + BLOCK_N - 1;

        /* Online softmax: p = exp2(s - m_new) for visible keys, exactly 0 for the others. */
        float p[ROWS][BLOCK_N];
        for (int r = 0; r < ROWS; r++) {
            float tile_max = NEG_BIG;
            for (int c = 0; c < CHUNKS_N; c++) {
                if (!full) {
                    const intv j = (intv)(j0 + c * VEC) + IOTA;
                    s[r][c] = select((floatv)(NEG_BIG), s[r][c], j >= lo[r] && j <= hi[r]);
                }
                tile_max = fmax(tile_max, HMAX(s[r][c]));
            }
            const float m_new = fmax(m[r], tile_max);
            const float alpha = exp2(m[r] - m_new);
            float row_sum = 0.0f;
            for (int c = 0; c < CHUNKS_N; c++) {
                floatv e = exp2(s[r][c] - m_new);
                if (!full) {
                    const intv j = (intv)(j0 + c * VEC) + IOTA;
                    e = select((floatv)(0.0f), e, j >= lo[r] && j <= hi[r]);
                }
                row_sum += HSUM(e);
                VSTORE(e, c, p[r]);
            }
            m[r] = m_new;
            l[r] = l[r] * alpha + row_sum;
            for (int c = 0; c < chunks_dv; c++)
                acc[r][c] *= alpha;
        }

        /* acc += p v, skipping invisible keys so that whatever they hold cannot leak in. */
        for (int c = 0; c < chunks_dv; c++) {
            for (int n = 0; n < count; n++) {
                const floatv vv = VLOAD(c, vt + n * DV_PAD);
                const int j = j0 + n;
                for (int r = 0; r < ROWS; r++)
                    if (full || (j >= lo[r] && j <= hi[r]))
                        acc[r][c] = fma((floatv)(p[r][n]), vv, acc[r][c]);
            }
        }
    }

    for (int r = 0; r < ROWS; r++) {
        const int i = row0 + r;
        if (i >= seq_q)
            break;
        __global out_t *orow = out + o_off + b * o_sb + h * o_sh + i * o_ss;
        /* l == 0 only when no key is visible (or every visible score is -inf); NaN stays NaN. */
        const int empty = l[r] == 0.0f;
        const float inv_l = empty ? 0.0f : 1.0f / l[r];
        for (int c = 0; c < chunks_dv; c++) {
            float lane[VEC];
            VSTORE(acc[r][c] * inv_l, 0, lane);
            for (int e = 0; e < VEC && c * VEC + e < head_dim_v; e++)
                STORE_OUT(orow, c * VEC + e, empty ? 0.0f : lane[e]);
        }
        if (write_lse)
            lse[l_off + b * l_sb + h * l_sh + i * l_ss] =
                empty ? -INFINITY : m[r] * M_LN2_F + log(l[r]);
    }
}
