/*
 * tiles.cl — the tiling of the fused kernels (attention_forward.cl, attention_backward.cl):
 * each work-item owns ROWS rows in private memory (register blocking), a work-group owns
 * BLOCK_M = ROWS * WG rows, and the other side of the product streams through local memory in
 * tiles of BLOCK_N columns. A "row" is a query row (forward, backward dq) or a key row
 * (backward dk, dv); a "column" is then a key or a query. This file stages tiles and runs the
 * two products every kernel has:
 *   scores  s[r][n] = sum_d rows[r][d] * tile[d][n]       (tile staged transposed)
 *   update  acc[r][:] += sum_n g[r][n] * tile[n][:]        (tile staged row-major)
 * The update skips columns a row does not see, so that whatever they hold cannot leak in.
 *
 * Tunables (-D, made by src/plan.c clattn_tiling_build_options):
 *   D_PAD     bucket >= head_dim (private rows, tiles of q or k)     required
 *   DV_PAD    bucket >= head_dim_v (tiles of v or dout)              required
 *   ROWS      rows per work-item                                      default 1
 *   WG        work-items per work-group                               default 64
 *   BLOCK_N   columns per tile; a multiple of VEC                     default 32
 *   plus VEC and the storage types of common.cl.
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
#define CHUNKS_D ((D_PAD + VEC - 1) / VEC)
#define CHUNKS_DV ((DV_PAD + VEC - 1) / VEC)

#if BLOCK_N % VEC != 0
#error "BLOCK_N must be a multiple of VEC"
#endif

/* Vectors of VEC needed for dim elements. */
static int chunks_of(int dim)
{
    return (dim + VEC - 1) / VEC;
}

/* Staging of rows first .. first+count-1 of a [seq, dim] slice with row stride ss, scaled by
   mult, for elements of type elem_t loaded with LOAD:
     stage_transposed_*: tile[d][n] for d < dim (BLOCK_N per d);
     stage_rows_*:       tile[n][d] with pitch `pitch`, d up to dim rounded up to VEC.
   Slots past count and elements past dim are 0, so every vector the products read is set. */
#define DEFINE_STAGING(suffix, elem_t, LOAD)                                                     \
    static void stage_transposed_##suffix(__local float *tile, __global const elem_t *x,        \
                                          long ss, int dim, int first, int count, float mult,   \
                                          int lid)                                               \
    {                                                                                            \
        for (int n = 0; n < BLOCK_N; n++) {                                                      \
            __global const elem_t *row = x + (long)(first + n) * ss;                             \
            for (int d = lid; d < dim; d += WG)                                                  \
                tile[d * BLOCK_N + n] = n < count ? mult * LOAD(row, d) : 0.0f;                  \
        }                                                                                        \
    }                                                                                            \
    static void stage_rows_##suffix(__local float *tile, int pitch, __global const elem_t *x,   \
                                    long ss, int dim, int first, int count, float mult, int lid) \
    {                                                                                            \
        const int end = chunks_of(dim) * VEC;                                                    \
        for (int n = 0; n < BLOCK_N; n++) {                                                      \
            __global const elem_t *row = x + (long)(first + n) * ss;                             \
            for (int d = lid; d < end; d += WG)                                                  \
                tile[n * pitch + d] = (n < count && d < dim) ? mult * LOAD(row, d) : 0.0f;       \
        }                                                                                        \
    }

DEFINE_STAGING(qkv, qkv_t, LOAD_QKV)
DEFINE_STAGING(out, out_t, LOAD_OUT)

/* s[r * CHUNKS_N + c] = sum_{d < dim} rows[r * pitch + d] * tile[d][c * VEC ..] for this
   work-item's ROWS private rows and a transposed tile. */
static void tile_scores(const float *rows, int pitch, __local const float *tile, int dim,
                        floatv *s)
{
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < CHUNKS_N; c++)
            s[r * CHUNKS_N + c] = (floatv)(0.0f);
    for (int d = 0; d < dim; d++) {
        for (int c = 0; c < CHUNKS_N; c++) {
            const floatv t = VLOAD(c, tile + d * BLOCK_N);
            for (int r = 0; r < ROWS; r++)
                s[r * CHUNKS_N + c] = fma((floatv)(rows[r * pitch + d]), t, s[r * CHUNKS_N + c]);
        }
    }
}

/* acc[r * acc_chunks + c] += g[r * BLOCK_N + n] * tile[n][c * VEC ..] for chunks c < chunks,
   over the count staged columns n whose index first + n lies in row r's visible interval
   [lo[r], hi[r]] (every column when all_visible). */
static void tile_update(floatv *acc, int acc_chunks, int chunks, const float *g,
                        __local const float *tile, int pitch, int first, int count,
                        const int *lo, const int *hi, int all_visible)
{
    for (int c = 0; c < chunks; c++) {
        for (int n = 0; n < count; n++) {
            const floatv t = VLOAD(c, tile + n * pitch);
            const int col = first + n;
            for (int r = 0; r < ROWS; r++)
                if (all_visible || (col >= lo[r] && col <= hi[r]))
                    acc[r * acc_chunks + c] = fma((floatv)(g[r * BLOCK_N + n]), t,
                                                  acc[r * acc_chunks + c]);
        }
    }
}

/* 1 when every column first .. first+BLOCK_N-1 is visible to every live row of this
   work-item: lo_max and hi_min are the largest lo and smallest hi over its live rows. */
static int tile_all_visible(int first, int count, int lo_max, int hi_min)
{
    return count == BLOCK_N && lo_max <= first && hi_min >= first + BLOCK_N - 1;
}

/* VEC bias values bias[(first + e) * stride] * log2(e) for lanes e with first + e < limit
   (others 0, never read): the bias of one row against VEC columns. */
static floatv bias_lanes(__global const bias_t *bias, long stride, int first, int limit)
{
    float lane[VEC];
    for (int e = 0; e < VEC; e++)
        lane[e] = first + e < limit ? M_LOG2E_F * LOAD_BIAS(bias, (first + e) * stride) : 0.0f;
    return VLOAD(0, lane);
}
