/*
 * tiles.cl — the tiling of the fused kernels (attention_forward.cl, attention_backward.cl):
 * each work-item owns ROWS rows in private memory (register blocking), a work-group owns
 * BLOCK_M = ROWS * WG rows, and the other side of the product streams through local memory in
 * tiles of BLOCK_N columns. A "row" is a query row (forward, backward dq) or a key row
 * (backward dk, dv); a "column" is then a key or a query. This file stages tiles and runs the
 * two products every kernel has:
 *   scores  s[r][n] = sum_d rows[r][d] * tile[d][n]       (tile staged transposed; for CPU
 *           tilings staged row-major or, the forward's f32 keys, read from global memory,
 *           tile_scores_lanes_*; for the forward's decode, from global memory,
 *           tile_scores_from_rows)
 *   update  acc[r][:] += sum_n g[r][n] * tile[n][:]        (tile staged row-major; for the
 *           forward's decode, read from global memory)
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
/* With at most CLATTN_ROWS_READ_FROM_GLOBAL rows per work-group (decode; launch.h), the
   forward takes the scores as dot products with the keys read from global memory
   (tile_scores_from_rows) and the update with the values read from there too
   (tile_update_qkv_output): a staged tile would cost a copy, and a transposed one a scattered
   store per element, for only 4 rows' use. */
#define SCORES_FROM_ROWS (BLOCK_M <= CLATTN_ROWS_READ_FROM_GLOBAL)
/* Rows ahead of the one in use that those reads prefetch (PREFETCH_GLOBAL, common.cl). */
#define PREFETCH_ROWS 8
/* With ROWS a multiple of VEC (CPUs: many rows per work-item), the forward holds its rows
   transposed and takes the scores with the rows in vector lanes (tile_scores_lanes_*): K is
   staged row-major (or read from global memory, KEYS_FROM_GLOBAL) and broadcast, so there is
   no transposed tile, and the online softmax runs lane-wise over rows, without horizontal
   maxima or sums. The backward does the same with both of its scores' products. */
#define SCORES_IN_ROW_LANES (ROWS % VEC == 0 && !SCORES_FROM_ROWS)
/* With the rows in lanes and f32 keys, the forward reads K straight from global memory
   (tile_scores_lanes_qkv): a staged copy holds the same floats, and staging K and V took about
   a tenth of the forward on AVX-512, mostly their loads (perf). Measured there, B=1 H=16
   S=1024 D=64 f32, three alternated runs: 19.0-19.7 ms against 19.6-20.4 staged (causal
   10.2-10.4 against 11.0-11.1); D=128 within noise. 16-bit keys are staged, converted once per
   tile. */
#define KEYS_FROM_GLOBAL (SCORES_IN_ROW_LANES && QKV_IS_F32)
#define ROW_VECS (ROWS / VEC)
/* Where a work-item's private rows keep row r's element d (pitch: the row length), and where
   a tile's weights g[r][n] (scores turned into the update's factors) sit: with the rows in
   lanes, transposed and key by key, as tile_scores_lanes_* reads and writes them; otherwise row
   by row, as tile_scores does. */
#if SCORES_IN_ROW_LANES
#define PRIVATE_AT(pitch, r, d) ((d) * ROWS + (r))
#define G_STRIDE_R 1
#define G_STRIDE_N ROWS
#else
#define PRIVATE_AT(pitch, r, d) ((r) * (pitch) + (d))
#define G_STRIDE_R BLOCK_N
#define G_STRIDE_N 1
#endif
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

/* Staging of rows first .. first+count-1 of a slice (common.cl), scaled by mult, for elements
   of type elem_t loaded with LOAD (one) and VLOADX (VEC at a time):
     stage_transposed_*: tile[d][n] for d < dim (BLOCK_N per d);
     stage_rows_*:       tile[n][d] for d < pitch (the whole row: see tile_update_local).
   Slots past count and elements past dim are 0, so every vector the products read is set.
   Rows are read VEC elements at a time (vector loads and conversions), in memory order, the
   work-group's work-items taking consecutive vectors.
     row_vector_*:       vector c of a row of dim elements, lanes past dim 0, without reading
                         past the row. */
#define DEFINE_STAGING(suffix, elem_t, LOAD, VLOADX)                                             \
    static floatv row_vector_##suffix(__global const elem_t *row, int c, int dim)                \
    {                                                                                            \
        if ((c + 1) * VEC <= dim)                                                                \
            return VLOADX(c, row);                                                               \
        if (c * VEC >= dim)                                                                      \
            return (floatv)(0.0f);                                                               \
        float lane[VEC];                                                                         \
        for (int e = 0; e < VEC; e++)                                                            \
            lane[e] = c * VEC + e < dim ? LOAD(row, c * VEC + e) : 0.0f;                         \
        return VLOAD(0, lane);                                                                   \
    }                                                                                            \
    static void stage_transposed_##suffix(__local float *tile, slice_##suffix x, int dim,        \
                                          int first, int count, float mult, int lid)             \
    {                                                                                            \
        const int whole = dim / VEC, per_row = max(whole, 1);                                    \
        /* vector c of row n, c fastest: each work-item steps WG vectors on (dn rows, dc) */     \
        const int dn = WG / per_row, dc = WG % per_row;                                          \
        for (int n = lid / per_row, c = lid % per_row; whole > 0 && n < BLOCK_N;) {              \
            float lane[VEC];                                                                     \
            VSTORE(n < count ? mult * VLOADX(c, slice_row_##suffix(x, first + n))                \
                             : (floatv)(0.0f),                                                   \
                   0, lane);                                                                     \
            _Pragma("unroll") for (int e = 0; e < VEC; e++)                                      \
                tile[(c * VEC + e) * BLOCK_N + n] = lane[e];                                     \
            n += dn + (c + dc >= whole);                                                         \
            c = c + dc >= whole ? c + dc - whole : c + dc;                                       \
        }                                                                                        \
        for (int t = lid; t < (dim - whole * VEC) * BLOCK_N; t += WG) {                          \
            const int n = t % BLOCK_N, d = whole * VEC + t / BLOCK_N;                            \
            tile[d * BLOCK_N + n] =                                                              \
                n < count ? mult * LOAD(slice_row_##suffix(x, first + n), d) : 0.0f;             \
        }                                                                                        \
    }                                                                                            \
    static void stage_rows_##suffix(__local float *tile, int pitch, slice_##suffix x, int dim,   \
                                    int first, int count, float mult, int lid)                   \
    {                                                                                            \
        const int chunks = pitch / VEC;                                                          \
        for (int t = lid; t < BLOCK_N * chunks; t += WG) {                                       \
            const int n = t / chunks, c = t % chunks;                                            \
            __global const elem_t *row = slice_row_##suffix(x, first + n);                       \
            const floatv val =                                                                   \
                n < count ? mult * row_vector_##suffix(row, c, dim) : (floatv)(0.0f);            \
            VSTORE(val, c, tile + n * pitch);                                                    \
        }                                                                                        \
    }

DEFINE_STAGING(qkv, qkv_t, LOAD_QKV, VLOAD_QKV)
DEFINE_STAGING(out, out_t, LOAD_OUT, VLOAD_OUT)

/* Register blocks of the two products: a block's accumulators stay in registers while the
   inner loop streams the tile, the rows' values broadcast from private memory. Accumulators
   and one step's operands must fit the vector registers, or the compiler keeps the
   accumulators in memory: BLOCK_ACCUMULATORS is 16 where vectors are 16 wide (AVX-512, 32
   registers) and 8 otherwise (AVX2 has 16: with 16 accumulators there the forward and the
   backward ran at about half speed, docs/kernels.md). GPU tilings hold one row per work-item,
   so their blocks are one row whatever this says.
     tile_scores:       ROW_BLOCK rows x CHUNKS_N score vectors;
     tile_update_*:     UPDATE_ROWS rows x UPDATE_CHUNKS output vectors;
     tile_scores_lanes_*: LANE_BLOCK row vectors x KEY_BLOCK keys. */
#define BLOCK_ACCUMULATORS (VEC >= 16 ? 16 : 8)
#if ROWS % 4 == 0 && 4 * CHUNKS_N <= BLOCK_ACCUMULATORS
#define ROW_BLOCK 4
#elif ROWS % 2 == 0 && 2 * CHUNKS_N <= BLOCK_ACCUMULATORS
#define ROW_BLOCK 2
#else
#define ROW_BLOCK 1
#endif
/* the update: 4 output vectors of as many rows as fit (measured faster on AVX2 than 4 rows x
   2 vectors: 88-102 ms against 100-115, one thread); in decode (SCORES_FROM_ROWS) all of the
   work-item's rows, at most 4, in one block, so that each value row read from global memory
   serves them all (18.0-19.2 ms against 19.6-20.4 with 2 rows, Sk=32768 D=128) */
#if SCORES_FROM_ROWS
#define UPDATE_ROWS ROWS
#elif ROWS % 4 == 0 && 16 <= BLOCK_ACCUMULATORS
#define UPDATE_ROWS 4
#elif ROWS % 2 == 0
#define UPDATE_ROWS 2
#else
#define UPDATE_ROWS 1
#endif
#if BLOCK_ACCUMULATORS / UPDATE_ROWS >= 4
#define UPDATE_CHUNKS 4
#else
#define UPDATE_CHUNKS (BLOCK_ACCUMULATORS / UPDATE_ROWS)
#endif
/* four keys per block, as many row vectors as that leaves accumulators for */
#if ROW_VECS % (BLOCK_ACCUMULATORS / 4) == 0
#define LANE_BLOCK (BLOCK_ACCUMULATORS / 4)
#elif ROW_VECS % 2 == 0
#define LANE_BLOCK 2
#else
#define LANE_BLOCK 1
#endif
#define KEY_BLOCK (BLOCK_ACCUMULATORS / LANE_BLOCK)

/* s[r * CHUNKS_N + c] = sum_{d < dim} rows[r * pitch + d] * tile[d][c * VEC ..] for this
   work-item's ROWS private rows and a transposed tile. */
static void tile_scores(const float *rows, int pitch, __local const float *tile, int dim,
                        floatv *s)
{
    for (int r0 = 0; r0 < ROWS; r0 += ROW_BLOCK) {
        floatv a[ROW_BLOCK][CHUNKS_N];
        #pragma unroll
        for (int r = 0; r < ROW_BLOCK; r++)
            #pragma unroll
            for (int c = 0; c < CHUNKS_N; c++)
                a[r][c] = (floatv)(0.0f);
        for (int d = 0; d < dim; d++) {
            floatv t[CHUNKS_N];
            #pragma unroll
            for (int c = 0; c < CHUNKS_N; c++)
                t[c] = VLOAD(c, tile + d * BLOCK_N);
            #pragma unroll
            for (int r = 0; r < ROW_BLOCK; r++) {
                const floatv x = (floatv)(rows[(r0 + r) * pitch + d]);
                #pragma unroll
                for (int c = 0; c < CHUNKS_N; c++)
                    a[r][c] = fma(x, t[c], a[r][c]);
            }
        }
        #pragma unroll
        for (int r = 0; r < ROW_BLOCK; r++)
            #pragma unroll
            for (int c = 0; c < CHUNKS_N; c++)
                s[(r0 + r) * CHUNKS_N + c] = a[r][c];
    }
}

/* The same scores straight from the keys in global memory (keys first + n of slice x, for
   n < count; slots past count score 0): dot products along d, one horizontal sum per
   (row, key). Used when at most 4 rows share a key (SCORES_FROM_ROWS), where staging K in
   local memory, transposed or not, would only copy it. The rows must be zero past dim up to a
   whole vector. */
static void tile_scores_from_rows(const float *rows, int pitch, slice_qkv x, int first,
                                  int count, int dim, floatv *s)
{
    const int chunks = chunks_of(dim);
    for (int c = 0; c < CHUNKS_N; c++) {
        float lane[ROWS][VEC];
        for (int e = 0; e < VEC; e++) {
            const int n = c * VEC + e;
            floatv a[ROWS];
            #pragma unroll
            for (int r = 0; r < ROWS; r++)
                a[r] = (floatv)(0.0f);
            if (n < count) {
                __global const qkv_t *key = slice_row_qkv(x, first + n);
                PREFETCH_GLOBAL(slice_row_qkv(x, first + n + PREFETCH_ROWS),
                                dim * (int)sizeof(qkv_t));
                for (int k = 0; k < chunks; k++) {
                    const floatv t = row_vector_qkv(key, k, dim);
                    #pragma unroll
                    for (int r = 0; r < ROWS; r++)
                        a[r] = fma(VLOAD(k, rows + r * pitch), t, a[r]);
                }
            }
            #pragma unroll
            for (int r = 0; r < ROWS; r++)
                lane[r][e] = HSUM(a[r]);
        }
        for (int r = 0; r < ROWS; r++)
            s[r * CHUNKS_N + c] = VLOAD(0, lane[r]);
    }
}

/* A tile staged in local memory: its row n (column first + n of the update) at
   base + n * pitch, zeros past the data. */
typedef struct local_rows {
    __local const float *base;
    int pitch;
} local_rows;

/* Where the update puts its sums: acc[r * chunks + c] (floatv), this work-item's ROWS rows of
   `chunks` vectors. sink_sum adds them as they are (the backward's gradients). sink_output
   (the forward's output): acc + comp is a compensated sum (common.cl), scaled by keep[r] (when
   not 1) before a tile's sums join; they join part, which is scaled alike and which flush_sums
   adds to acc + comp every few tiles, so that the sum over many tiles loses no more than a few
   roundings (docs/semantics.md "The numeric promise") at little cost per tile. */
typedef struct update_sink {
    floatv *acc, *comp, *part;
    const float *keep;
} update_sink;

/* acc + comp += part, compensated, and part = 0, for every row and chunk of the sink. */
static void flush_sums(update_sink out, int chunks)
{
    for (int at = 0; at < ROWS * chunks; at++) {
        floatv sum = out.acc[at], comp = out.comp[at];
        add_compensated(&sum, &comp, out.part[at]);
        out.acc[at] = sum;
        out.comp[at] = comp;
        out.part[at] = (floatv)(0.0f);
    }
}

/* A register block's sums (rows r0 .. r0+UPDATE_ROWS-1, chunks c0 ..) begin at the sink's
   (sink_sum_open) and go back there (sink_sum_close): the backward's plain sums. */
__attribute__((always_inline)) static void sink_sum_open(
    update_sink out, int chunks, int r0, int c0, floatv a[UPDATE_ROWS][UPDATE_CHUNKS])
{
    _Pragma("unroll") for (int r = 0; r < UPDATE_ROWS; r++)
        _Pragma("unroll") for (int c = 0; c < UPDATE_CHUNKS && c0 + c < chunks; c++)
            a[r][c] = out.acc[(r0 + r) * chunks + c0 + c];
}

__attribute__((always_inline)) static void sink_sum_close(
    update_sink out, int chunks, int r0, int c0, floatv a[UPDATE_ROWS][UPDATE_CHUNKS])
{
    _Pragma("unroll") for (int r = 0; r < UPDATE_ROWS; r++)
        _Pragma("unroll") for (int c = 0; c < UPDATE_CHUNKS && c0 + c < chunks; c++)
            out.acc[(r0 + r) * chunks + c0 + c] = a[r][c];
}

/* The forward's output: a register block's sums begin at zero (sink_output_open) and join
   part, scaled by keep, when done (sink_output_close). */
__attribute__((always_inline)) static void sink_output_open(
    update_sink out, int chunks, int r0, int c0, floatv a[UPDATE_ROWS][UPDATE_CHUNKS])
{
    _Pragma("unroll") for (int r = 0; r < UPDATE_ROWS; r++)
        _Pragma("unroll") for (int c = 0; c < UPDATE_CHUNKS; c++)
            a[r][c] = (floatv)(0.0f);
}

__attribute__((always_inline)) static void sink_output_close(
    update_sink out, int chunks, int r0, int c0, floatv a[UPDATE_ROWS][UPDATE_CHUNKS])
{
    _Pragma("unroll") for (int r = 0; r < UPDATE_ROWS; r++) {
        const float keep = out.keep[r0 + r];
        _Pragma("unroll") for (int c = 0; c < UPDATE_CHUNKS && c0 + c < chunks; c++) {
            const int at = (r0 + r) * chunks + c0 + c;
            if (keep != 1.0f) {
                floatv sum = out.acc[at], comp = out.comp[at];
                scale_exactly(&sum, &comp, (floatv)(keep));
                out.acc[at] = sum;
                out.comp[at] = comp;
                out.part[at] *= keep;
            }
            out.part[at] += a[r][c];
        }
    }
}

/* The update, for a tile in local memory (tile_update_local*: local_rows) and for the rows of a
   slice read straight from global memory (tile_update_qkv*: rows of dim qkv_t elements, read
   with row_vector_qkv so that nothing past a row is read, and prefetched PREFETCH_ROWS ahead);
   ROW(tile, first, n) is the row of column first + n, CHUNK(row, c, dim) its vector c,
   PREFETCH(row, dim) asks for a row, and SINK adds a register block's sums where they go
   (sink_sum: the backward; sink_output: the forward, the *_output instances).
     update_span_*: one register block a, rows r0 .. r0+UPDATE_ROWS-1, chunks c0 ..
       c0+UPDATE_CHUNKS-1 (those below the sink's chunks), columns n_begin .. n_end-1. With
       `masked`, columns outside a row's [lo, hi] leave its sums as they are (inlined, so each
       call gets its own loop).
     tile_update_*: the sink gets sums[r][c] = sum_n g[r * g_stride_r + n * g_stride_n] *
       tile[n][c] for chunks c < chunks, over the count columns n whose index first + n lies in
       row r's visible interval [lo[r], hi[r]] (every column when all_visible). Chunks are taken
       UPDATE_CHUNKS at a time, so a local tile's rows must be staged (zeros past the data) up
       to chunks rounded up to UPDATE_CHUNKS, or to the sink's chunks. Per register block of
       rows, the columns all of its rows see run without the check, those some of them see
       with it (on a causal diagonal, a few), and those none sees not at all. */
#define DEFINE_UPDATE(suffix, tile_t, ROW, CHUNK, PREFETCH, SINK)                                \
    __attribute__((always_inline)) static void update_span_##suffix(                             \
        floatv a[UPDATE_ROWS][UPDATE_CHUNKS], int acc_chunks, int r0, int c0, const float *g,    \
        int g_stride_r, int g_stride_n, tile_t tile, int dim, int first, int n_begin,            \
        int n_end, const int *lo, const int *hi, int masked)                                     \
    {                                                                                            \
        for (int n = n_begin; n < n_end; n++) {                                                  \
            floatv t[UPDATE_CHUNKS];                                                             \
            if (c0 == 0)                                                                         \
                PREFETCH(ROW(tile, first, n + PREFETCH_ROWS), dim);                              \
            _Pragma("unroll") for (int c = 0; c < UPDATE_CHUNKS && c0 + c < acc_chunks; c++)     \
                t[c] = CHUNK(ROW(tile, first, n), c0 + c, dim);                                  \
            _Pragma("unroll") for (int r = 0; r < UPDATE_ROWS; r++) {                            \
                const int col = first + n;                                                       \
                if (masked && (col < lo[r0 + r] || col > hi[r0 + r]))                            \
                    continue;                                                                    \
                const floatv x = (floatv)(g[(r0 + r) * g_stride_r + n * g_stride_n]);            \
                _Pragma("unroll") for (int c = 0; c < UPDATE_CHUNKS && c0 + c < acc_chunks; c++) \
                    a[r][c] = fma(x, t[c], a[r][c]);                                             \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    static void tile_update_##suffix(update_sink out, int acc_chunks, int chunks,                \
                                     const float *g, int g_stride_r, int g_stride_n,             \
                                     tile_t tile, int dim, int first, int count, const int *lo,  \
                                     const int *hi, int all_visible)                             \
    {                                                                                            \
        /* bounded by acc_chunks too, a constant, so that the chunk checks fold away */          \
        for (int c0 = 0; c0 < min(chunks, acc_chunks); c0 += UPDATE_CHUNKS)                      \
            for (int r0 = 0; r0 < ROWS; r0 += UPDATE_ROWS) {                                     \
                /* columns all_lo .. all_hi are seen by every row of the block, any_lo ..        \
                   any_hi by some row */                                                         \
                int all_lo = 0, all_hi = count - 1, any_lo = 0, any_hi = count - 1;              \
                if (!all_visible) {                                                              \
                    any_lo = count;                                                              \
                    any_hi = -1;                                                                 \
                    for (int r = r0; r < r0 + UPDATE_ROWS; r++) {                                \
                        all_lo = max(all_lo, lo[r] - first);                                     \
                        all_hi = min(all_hi, hi[r] - first);                                     \
                        any_lo = min(any_lo, lo[r] - first);                                     \
                        any_hi = max(any_hi, hi[r] - first);                                     \
                    }                                                                            \
                    any_lo = max(any_lo, 0);                                                     \
                    any_hi = min(any_hi, count - 1);                                             \
                    if (all_lo > all_hi) { /* none: every column some row sees is checked */     \
                        all_lo = any_hi + 1;                                                     \
                        all_hi = any_hi;                                                         \
                    }                                                                            \
                }                                                                                \
                floatv a[UPDATE_ROWS][UPDATE_CHUNKS];                                            \
                SINK##_open(out, acc_chunks, r0, c0, a);                                         \
                update_span_##suffix(a, acc_chunks, r0, c0, g, g_stride_r, g_stride_n, tile,     \
                                     dim, first, all_lo, all_hi + 1, lo, hi, 0);                 \
                if (!all_visible) {                                                              \
                    update_span_##suffix(a, acc_chunks, r0, c0, g, g_stride_r, g_stride_n, tile, \
                                         dim, first, any_lo, all_lo, lo, hi, 1);                 \
                    update_span_##suffix(a, acc_chunks, r0, c0, g, g_stride_r, g_stride_n, tile, \
                                         dim, first, all_hi + 1, any_hi + 1, lo, hi, 1);         \
                }                                                                                \
                SINK##_close(out, acc_chunks, r0, c0, a);                                        \
            }                                                                                    \
    }

#define LOCAL_ROW(tile, first, n) ((tile).base + (n) * (tile).pitch)
#define LOCAL_ROW_VECTOR(row, c, dim) VLOAD((c), (row))
#define LOCAL_NO_PREFETCH(row, dim) ((void)0)
#define SLICE_ROW(slice, first, n) slice_row_qkv((slice), (first) + (n))
#define PREFETCH_QKV_ROW(row, dim) PREFETCH_GLOBAL((row), (dim) * (int)sizeof(qkv_t))
DEFINE_UPDATE(local, local_rows, LOCAL_ROW, LOCAL_ROW_VECTOR, LOCAL_NO_PREFETCH, sink_sum)
DEFINE_UPDATE(local_output, local_rows, LOCAL_ROW, LOCAL_ROW_VECTOR, LOCAL_NO_PREFETCH,
              sink_output)
DEFINE_UPDATE(qkv_output, slice_qkv, SLICE_ROW, row_vector_qkv, PREFETCH_QKV_ROW, sink_output)

/* The scores with the rows in vector lanes: s[n * ROW_VECS + v] = sum_{d < dim} key[n][d] *
   rows_t[d][v * VEC ..] for the BLOCK_N keys n of a tile and this work-item's ROWS rows held
   transposed (rows_t[d * ROWS + r]); each key element is broadcast. KEY_ROW(tile, first,
   count, n) is key n's row and ELEMENT(row, d) its element d: tile_scores_lanes_local reads a
   row-major tile staged in local memory (zeros past count), tile_scores_lanes_qkv the keys
   first .. first+count-1 of a slice in global memory (keys past count repeat the last one:
   their scores are masked). */
#define DEFINE_SCORES_LANES(suffix, tile_t, KEY_ROW, ELEMENT)                                    \
    static void tile_scores_lanes_##suffix(const float *rows_t, tile_t tile, int first,          \
                                           int count, int dim, floatv *s)                        \
    {                                                                                            \
        for (int n0 = 0; n0 < BLOCK_N; n0 += KEY_BLOCK)                                          \
            for (int v0 = 0; v0 < ROW_VECS; v0 += LANE_BLOCK) {                                  \
                floatv a[KEY_BLOCK][LANE_BLOCK];                                                 \
                _Pragma("unroll") for (int n = 0; n < KEY_BLOCK; n++)                            \
                    _Pragma("unroll") for (int v = 0; v < LANE_BLOCK; v++)                       \
                        a[n][v] = (floatv)(0.0f);                                                \
                for (int d = 0; d < dim; d++) {                                                  \
                    floatv x[LANE_BLOCK];                                                        \
                    _Pragma("unroll") for (int v = 0; v < LANE_BLOCK; v++)                       \
                        x[v] = VLOAD(d * ROW_VECS + v0 + v, rows_t);                             \
                    _Pragma("unroll") for (int n = 0; n < KEY_BLOCK && n0 + n < BLOCK_N; n++) {  \
                        const floatv t =                                                         \
                            (floatv)(ELEMENT(KEY_ROW(tile, first, count, n0 + n), d));           \
                        _Pragma("unroll") for (int v = 0; v < LANE_BLOCK; v++)                   \
                            a[n][v] = fma(t, x[v], a[n][v]);                                     \
                    }                                                                            \
                }                                                                                \
                _Pragma("unroll") for (int n = 0; n < KEY_BLOCK && n0 + n < BLOCK_N; n++)        \
                    _Pragma("unroll") for (int v = 0; v < LANE_BLOCK; v++)                       \
                        s[(n0 + n) * ROW_VECS + v0 + v] = a[n][v];                               \
            }                                                                                    \
    }
#define LOCAL_KEY_ROW(tile, first, count, n) LOCAL_ROW(tile, first, n)
#define LOCAL_ELEMENT(row, d) ((row)[d])
#define SLICE_KEY_ROW(slice, first, count, n) SLICE_ROW(slice, first, min((n), (count) - 1))
DEFINE_SCORES_LANES(local, local_rows, LOCAL_KEY_ROW, LOCAL_ELEMENT)
DEFINE_SCORES_LANES(qkv, slice_qkv, SLICE_KEY_ROW, LOAD_QKV)

/* 1 when every column first .. first+BLOCK_N-1 is visible to every live row of this
   work-item: lo_max and hi_min are the largest lo and smallest hi over its live rows. */
static int tile_all_visible(int first, int count, int lo_max, int hi_min)
{
    return count == BLOCK_N && lo_max <= first && hi_min >= first + BLOCK_N - 1;
}

/* VEC bias values bias[(first + e) * stride] for lanes e with first + e < limit (others 0,
   never read): the bias of one row against VEC columns. */
static floatv bias_lanes(__global const bias_t *bias, long stride, int first, int limit)
{
    float lane[VEC];
    for (int e = 0; e < VEC; e++)
        lane[e] = first + e < limit ? LOAD_BIAS(bias, (first + e) * stride) : 0.0f;
    return VLOAD(0, lane);
}

/* The bias of VEC rows (query heads row_h, query rows row_i) of batch b against key j, in
   vector lanes; 0 for rows that are not live and for keys j >= seq_k. */
static floatv bias_of_rows(__global const bias_t *bias, const clattn_view_params *view, long b,
                           const int *row_h, const long *row_i, const int *live, int j,
                           long seq_k)
{
    float lane[VEC];
    for (int e = 0; e < VEC; e++)
        lane[e] = live[e] && j < seq_k ? LOAD_BIAS(bias + view_row(view, b, row_h[e], row_i[e]), j)
                                       : 0.0f;
    return VLOAD(0, lane);
}
