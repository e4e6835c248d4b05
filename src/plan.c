/*
 * plan.c — how the fused forward is tiled, as pure functions of a device probe and a problem.
 *
 * The kernel (cl/attention_forward.cl) gives each work-item `rows` query rows in private memory
 * and stages each tile of `block_n` keys in local memory (how K is laid out there follows from
 * the rows: cl/tiles.cl). The rules:
 *
 * CPU (PoCL and other host-memory devices; local memory is ordinary RAM and a work-group runs
 *   as a loop on one core):
 *   - register blocking wins: rows = 64 query rows per work-item, a multiple of vec, so that
 *     the rows fill the vector lanes (SCORES_IN_ROW_LANES) and share every staged K and V tile
 *     (measured on PoCL, B=1 H=16 S=1024 D=64 f32, vec 16, best of 3: block_n 64 with 16 rows
 *     144 GFLOP/s, 32 rows 179, 64 rows 188, 128 rows 187 with twice the private memory);
 *     fewer when there are fewer rows (the next power of two >= Sq, so decode wastes nothing)
 *     or when that would leave under 4 work-groups per compute unit;
 *   - vec = the device's preferred float width (16 with AVX-512, 8 with AVX2), at least 4;
 *   - block_n = 4 * vec keys: the products run in register blocks of 4 keys (16 accumulators
 *     with AVX-512, 8 with AVX2: cl/tiles.cl), and longer tiles spread the softmax's per-tile
 *     work (64 rows, AVX-512: block_n 32 183 GFLOP/s, 64 188, 128 177);
 *   - wg = 1: no barrier cost, and one work-group per rows x head is plenty of parallelism.
 * GPU and other devices (dedicated local memory, SIMT):
 *   - one row per work-item (registers are per lane), vec = 4;
 *   - wg = twice the warp/wavefront size (at least 64) so a tile is staged by many lanes,
 *     cut to the device's limits, and to one warp when there are few rows (decode);
 *   - block_n = the largest of 64, 32, 16, 8, 4 whose tiles fill at most half of local memory
 *     (two work-groups per compute unit), else the largest that fits at all.
 * Head dims are rounded up to a bucket (16, 32, 64, 128, 256; the backward also 512, 1024)
 * that sizes private arrays and local tiles; the exact dims are runtime arguments, so one
 * program serves a bucket. On CPUs large buckets shrink the rows to keep a work-item's private
 * arrays under CLATTN_MAX_PRIVATE_BYTES, then block_n (and vec) until the tiles fit the local
 * memory (the backward at head dims 512 and 1024). Every tiling, the planner's, a tuned or a
 * forced one, must fit the device's work-group, local-memory and private-memory limits
 * (clattn_tiling_fits).
 * A tiling from the tuning database (tunedb.c), or one forced on the context by the tuner,
 * replaces the heuristic's when it fits; clattn_plan_candidates lists the tuner's choices.
 *
 * The backward (clattn_plan_backward) uses the same rules for its two kernels, whose rows are
 * the (query, head) rows of a kv head (dq) and its keys (dk, dv): rows from the larger of the
 * two, parallelism from the smaller, and block_n from its larger tiles (q and dout, each
 * transposed and row-major).
 *
 * The algorithm (clattn_plan_call): UNFUSED when a head dim is over 256; SPLIT_KV when the rows
 * alone give under 4 work-groups per compute unit and there are at least 2 *
 * CLATTN_MIN_KEYS_PER_SPLIT keys, with enough key ranges for 4 work-groups per compute unit;
 * FUSED otherwise.
 */
#include "plan.h"

#include <stdio.h>
#include <string.h>

/* The smallest bucket (16, 32, 64, ...) holding head_dim, or 0 outside 1..max. */
static int bucket_up_to(int64_t head_dim, int64_t max)
{
    if (head_dim < 1 || head_dim > max)
        return 0;
    int bucket = 16;
    while (bucket < head_dim)
        bucket *= 2;
    return bucket;
}

int clattn_head_dim_bucket(int64_t head_dim)
{
    return bucket_up_to(head_dim, CLATTN_MAX_FUSED_HEAD_DIM);
}

static int is_cpu_like(const clattn_device_probe *probe)
{
    return probe->device_class == CLATTN_DEVICE_CLASS_CPU || !probe->local_mem_dedicated;
}

size_t clattn_tiling_local_bytes(const clattn_tiling *t)
{
    if (t->rows * t->wg <= CLATTN_ROWS_READ_FROM_GLOBAL)
        return 0;
    return ((size_t)t->d_pad + (size_t)t->dv_pad) * (size_t)t->block_n * sizeof(float);
}

size_t clattn_tiling_private_bytes(const clattn_tiling *t)
{
    return (size_t)t->rows *
           ((size_t)t->d_pad + 3 * (size_t)t->dv_pad + 2 * (size_t)t->block_n + 12) * sizeof(float);
}

size_t clattn_backward_private_bytes(const clattn_tiling *t)
{
    return (size_t)t->rows *
           (2 * (size_t)t->d_pad + 2 * (size_t)t->dv_pad + 4 * (size_t)t->block_n + 8) *
           sizeof(float);
}

/* Whether a work-item's and a work-group's private memory stay under the limits of plan.h. */
static int private_fits(const clattn_device_probe *probe, size_t bytes, int wg)
{
    return bytes <= CLATTN_MAX_PRIVATE_BYTES &&
           (!is_cpu_like(probe) || bytes * (size_t)wg <= CLATTN_MAX_GROUP_PRIVATE_BYTES);
}

static void say(char *why, size_t why_size, const char *text)
{
    if (why && why_size)
        snprintf(why, why_size, "%s", text);
}

static int pow2_at_least(int64_t n, int cap)
{
    int p = 1;
    while (p < n && p < cap)
        p *= 2;
    return p;
}

static int pow2_at_most(size_t n)
{
    int p = 1;
    while ((size_t)p * 2 <= n)
        p *= 2;
    return p;
}

/* Rows of one (batch, kv head): its query rows times the query heads sharing it. */
static int64_t rows_per_kv_head(const clattn_problem *problem)
{
    return problem->seq_q * (problem->heads_q / problem->heads_kv);
}

/* What the planner needs of a fused kernel: its largest head dim and its local and private
   memory. */
typedef struct kernel_limits {
    int64_t     max_head_dim;
    size_t    (*local_bytes)(const clattn_tiling *);
    size_t    (*private_bytes)(const clattn_tiling *);
    const char *too_large;      /* the reason for head dims over max_head_dim */
} kernel_limits;

static const kernel_limits forward_limits = {
    CLATTN_MAX_FUSED_HEAD_DIM, clattn_tiling_local_bytes, clattn_tiling_private_bytes,
    "the fused kernel takes head dims 1..256"};
static const kernel_limits backward_limits = {
    CLATTN_MAX_BACKWARD_HEAD_DIM, clattn_backward_local_bytes, clattn_backward_private_bytes,
    "the backward takes head dims 1..1024"};

/* rows and total_rows: the rows of one (batch, kv head) and of the whole launch. Large head
   dims shrink the rows to the private-memory limit, then block_n (and if need be vec) until
   the tiles fit the local memory. */
static void plan_cpu(const clattn_device_probe *probe, int64_t rows, int64_t total_rows,
                     const kernel_limits *k, clattn_tiling *t)
{
    cl_uint width = probe->preferred_vector_width_float;
    t->vec = width >= 16 ? 16 : width >= 8 ? 8 : 4;
    t->block_n = 4 * t->vec;
    t->wg = 1;
    t->rows = pow2_at_least(rows, 64);
    while (t->rows > 1 && !private_fits(probe, k->private_bytes(t), t->wg))
        t->rows /= 2;
    while (t->rows > 4 && total_rows / t->rows < 4 * (int64_t)probe->compute_units)
        t->rows /= 2;
    t->block_m = t->rows * t->wg;
    while (t->block_n > 1 && k->local_bytes(t) > probe->local_mem_size) {
        t->block_n /= 2;
        if (t->block_n < t->vec)
            t->vec = t->block_n;
    }
}

static size_t gpu_work_group(const clattn_device_probe *probe, int64_t rows)
{
    size_t multiple = probe->work_group_multiple ? probe->work_group_multiple : 32;
    size_t wg = rows <= (int64_t)multiple ? multiple : 2 * multiple;
    if (wg < 64 && rows > (int64_t)multiple)
        wg = 64;
    size_t limit = probe->max_work_group_size;
    if (probe->max_work_item_size0 && probe->max_work_item_size0 < limit)
        limit = probe->max_work_item_size0;
    return wg <= limit ? wg : (size_t)pow2_at_most(limit);
}

static int gpu_block_n(const clattn_device_probe *probe, clattn_tiling *t,
                       size_t (*local_bytes)(const clattn_tiling *))
{
    static const int choices[] = {64, 32, 16, 8, 4};
    for (int pass = 0; pass < 2; pass++) {
        cl_ulong budget = pass == 0 ? probe->local_mem_size / 2 : probe->local_mem_size;
        for (size_t c = 0; c < sizeof choices / sizeof choices[0]; c++) {
            t->block_n = choices[c];
            if (local_bytes(t) <= budget)
                return 1;
        }
    }
    return 0;
}

size_t clattn_backward_local_bytes(const clattn_tiling *t)
{
    return (2 * (size_t)t->d_pad + 2 * (size_t)t->dv_pad + 2) * (size_t)t->block_n * sizeof(float);
}

/* The rules of the file header for rows (rows of one (batch, kv head); total_rows of the
   launch) and a kernel with limits k. */
static clattn_status plan_tiling(const clattn_device_probe *probe, const clattn_problem *problem,
                                 int64_t rows, int64_t total_rows, const kernel_limits *k,
                                 clattn_tiling *t, char *why, size_t why_size)
{
    memset(t, 0, sizeof *t);
    t->d_pad = bucket_up_to(problem->head_dim, k->max_head_dim);
    t->dv_pad = bucket_up_to(problem->head_dim_v, k->max_head_dim);
    if (!t->d_pad || !t->dv_pad) {
        say(why, why_size, k->too_large);
        return CLATTN_ERROR_UNSUPPORTED;
    }
    if (is_cpu_like(probe)) {
        plan_cpu(probe, rows, total_rows, k, t);
    } else {
        t->vec = 4;
        t->rows = 1;
        t->wg = (int)gpu_work_group(probe, rows);
        if (!gpu_block_n(probe, t, k->local_bytes)) {
            say(why, why_size, "the tiles do not fit the device's local memory");
            return CLATTN_ERROR_UNSUPPORTED;
        }
    }
    t->block_m = t->rows * t->wg;
    t->local_bytes = k->local_bytes(t);
    say(why, why_size, is_cpu_like(probe) ? "host-memory device: register blocking, wide vectors"
                                          : "dedicated local memory: staged tiles, one row per work-item");
    return CLATTN_SUCCESS;
}

clattn_status clattn_plan_forward(const clattn_device_probe *probe,
                                  const clattn_problem *problem,
                                  clattn_tiling *t, char *why, size_t why_size)
{
    char reason[128];
    clattn_status s = plan_tiling(probe, problem, rows_per_kv_head(problem),
                                  problem->seq_q * problem->heads_q * problem->batch,
                                  &forward_limits, t, reason, sizeof reason);
    if (s == CLATTN_SUCCESS && !clattn_tiling_fits(probe, t, why, why_size))
        return CLATTN_ERROR_UNSUPPORTED;
    say(why, why_size, reason);
    return s;
}

clattn_status clattn_plan_backward(const clattn_device_probe *probe, const clattn_problem *problem,
                                   clattn_algo requested, clattn_tiling *t, char *why,
                                   size_t why_size)
{
    memset(t, 0, sizeof *t);
    if (requested == CLATTN_ALGO_SPLIT_KV || requested == CLATTN_ALGO_UNFUSED) {
        say(why, why_size, requested == CLATTN_ALGO_SPLIT_KV
                               ? "the backward has no split-KV algorithm"
                               : "this version has no unfused backward");
        return CLATTN_ERROR_UNSUPPORTED;
    }
    /* dq's rows are the (query, head) pairs of a kv head, dk/dv's its keys */
    const int64_t rows = rows_per_kv_head(problem) > problem->seq_k ? rows_per_kv_head(problem)
                                                                     : problem->seq_k;
    const int64_t dq_rows = problem->seq_q * problem->heads_q * problem->batch;
    const int64_t dkdv_rows = problem->seq_k * problem->heads_kv * problem->batch;
    clattn_status s = plan_tiling(probe, problem, rows, dq_rows < dkdv_rows ? dq_rows : dkdv_rows,
                                  &backward_limits, t, why, why_size);
    if (s != CLATTN_SUCCESS)
        return s;
    if (t->local_bytes > probe->local_mem_size) {
        say(why, why_size, "the backward's tiles do not fit the device's local memory");
        return CLATTN_ERROR_UNSUPPORTED;
    }
    if (!private_fits(probe, clattn_backward_private_bytes(t), t->wg)) {
        say(why, why_size, "the backward's rows do not fit the private-memory limit");
        return CLATTN_ERROR_UNSUPPORTED;
    }
    return CLATTN_SUCCESS;
}

/* Work-groups the fused kernel launches for the rows alone (one key range). */
static int64_t row_groups(const clattn_problem *problem, const clattn_tiling *t)
{
    return (rows_per_kv_head(problem) + t->block_m - 1) / t->block_m * problem->heads_kv *
           problem->batch;
}

/* Key ranges for split-KV: enough work-groups for 4 per compute unit, each range at least
   CLATTN_MIN_KEYS_PER_SPLIT keys (fewer splits when the keys run out), a multiple of block_n. */
static void plan_splits(const clattn_device_probe *probe, const clattn_problem *problem,
                        clattn_plan *plan)
{
    const clattn_tiling *t = &plan->tiling;
    const int64_t groups = row_groups(problem, t);
    const int64_t target = 4 * (int64_t)(probe->compute_units ? probe->compute_units : 1);
    int64_t splits = (target + groups - 1) / groups;
    const int64_t most = (problem->seq_k + CLATTN_MIN_KEYS_PER_SPLIT - 1) / CLATTN_MIN_KEYS_PER_SPLIT;
    if (splits > most)
        splits = most;
    if (splits < 1)
        splits = 1;
    int64_t keys = (problem->seq_k + splits - 1) / splits;
    keys = (keys + t->block_n - 1) / t->block_n * t->block_n;
    plan->keys_per_split = (int)keys;
    plan->splits = (int)((problem->seq_k + keys - 1) / keys);
}

/* AUTO splits the keys when the rows alone give under 4 work-groups per compute unit and
   there are keys enough for 2 ranges; that is decode (few query rows, long context). */
static int wants_split(const clattn_device_probe *probe, const clattn_problem *problem,
                       const clattn_tiling *t)
{
    return row_groups(problem, t) < 4 * (int64_t)probe->compute_units &&
           problem->seq_k >= 2 * CLATTN_MIN_KEYS_PER_SPLIT;
}

clattn_status clattn_plan_call(const clattn_device_probe *probe, const clattn_problem *problem,
                               clattn_algo requested, const clattn_tiling *tiling,
                               clattn_tiling_source source, clattn_plan *plan, char *why,
                               size_t why_size)
{
    memset(plan, 0, sizeof *plan);
    plan->splits = 1;
    plan->keys_per_split = (int)problem->seq_k;
    const int fused_dims = clattn_head_dim_bucket(problem->head_dim) &&
                           clattn_head_dim_bucket(problem->head_dim_v);
    if (requested == CLATTN_ALGO_UNFUSED || (requested == CLATTN_ALGO_AUTO && !fused_dims)) {
        plan->algo = CLATTN_ALGO_UNFUSED;
        say(why, why_size, fused_dims ? "requested" : "head dims over 256");
        return CLATTN_SUCCESS;
    }
    clattn_status s = clattn_plan_forward(probe, problem, &plan->tiling, why, why_size);
    if (s != CLATTN_SUCCESS)
        return s;
    if (tiling && clattn_tiling_fits(probe, tiling, NULL, 0) &&
        tiling->d_pad == plan->tiling.d_pad && tiling->dv_pad == plan->tiling.dv_pad) {
        plan->tiling = *tiling;
        plan->source = source;
    }
    if (requested == CLATTN_ALGO_SPLIT_KV ||
        (requested == CLATTN_ALGO_AUTO && wants_split(probe, problem, &plan->tiling))) {
        plan->algo = CLATTN_ALGO_SPLIT_KV;
        plan_splits(probe, problem, plan);
        say(why, why_size, requested == CLATTN_ALGO_SPLIT_KV ? "requested"
                                                             : "few rows, many keys: split the keys");
    } else {
        plan->algo = CLATTN_ALGO_FUSED;
    }
    return CLATTN_SUCCESS;
}

size_t clattn_plan_candidates(const clattn_device_probe *probe, const clattn_problem *problem,
                              clattn_tiling *out, size_t max)
{
    static const int rows_choices[] = {1, 2, 4, 8, 16, 32, 64};
    static const int wg_choices[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    static const int bn_choices[] = {8, 16, 32, 64};
    static const int vec_choices[] = {4, 8, 16};
    const size_t warp = probe->work_group_multiple ? probe->work_group_multiple : 32;
    size_t n = 0;
    clattn_tiling t;
    memset(&t, 0, sizeof t);
    t.d_pad = clattn_head_dim_bucket(problem->head_dim);
    t.dv_pad = clattn_head_dim_bucket(problem->head_dim_v);
    for (size_t a = 0; a < sizeof rows_choices / sizeof rows_choices[0]; a++)
        for (size_t b = 0; b < sizeof wg_choices / sizeof wg_choices[0]; b++)
            for (size_t c = 0; c < sizeof bn_choices / sizeof bn_choices[0]; c++)
                for (size_t v = 0; v < sizeof vec_choices / sizeof vec_choices[0]; v++) {
                    t.rows = rows_choices[a];
                    t.wg = wg_choices[b];
                    t.block_n = bn_choices[c];
                    t.vec = vec_choices[v];
                    t.block_m = t.rows * t.wg;
                    t.local_bytes = clattn_tiling_local_bytes(&t);
                    const int shape_ok = is_cpu_like(probe) ? t.wg <= CLATTN_CPU_MAX_WG
                                                            : (size_t)t.wg % warp == 0;
                    if (!shape_ok || !clattn_tiling_fits(probe, &t, NULL, 0))
                        continue;
                    if (n < max)
                        out[n] = t;
                    n++;
                }
    return n;
}

int clattn_tiling_fits(const clattn_device_probe *probe, const clattn_tiling *t,
                       char *why, size_t why_size)
{
    char text[160];
    size_t max_wg = probe->max_work_group_size;
    if (probe->max_work_item_size0 && probe->max_work_item_size0 < max_wg)
        max_wg = probe->max_work_item_size0;

    if (clattn_head_dim_bucket(t->d_pad) != t->d_pad || clattn_head_dim_bucket(t->dv_pad) != t->dv_pad)
        snprintf(text, sizeof text, "d_pad=%d dv_pad=%d are not head-dim buckets", t->d_pad, t->dv_pad);
    else if (t->vec != 1 && t->vec != 2 && t->vec != 4 && t->vec != 8 && t->vec != 16)
        snprintf(text, sizeof text, "vec=%d is not 1, 2, 4, 8 or 16", t->vec);
    else if (t->rows < 1 || t->wg < 1 || t->block_n < 1 || t->block_n % t->vec != 0)
        snprintf(text, sizeof text, "rows=%d wg=%d block_n=%d vec=%d: need rows, wg >= 1 and block_n a multiple of vec",
                 t->rows, t->wg, t->block_n, t->vec);
    else if (t->block_m != t->rows * t->wg)
        snprintf(text, sizeof text, "block_m=%d is not rows*wg=%d", t->block_m, t->rows * t->wg);
    else if ((size_t)t->wg > max_wg)
        snprintf(text, sizeof text, "wg=%d is over the device's work-group limit %zu", t->wg, max_wg);
    else if (t->local_bytes != clattn_tiling_local_bytes(t) || t->local_bytes > probe->local_mem_size)
        snprintf(text, sizeof text, "local memory %zu bytes (tiles need %zu) is over the device's %llu",
                 t->local_bytes, clattn_tiling_local_bytes(t), (unsigned long long)probe->local_mem_size);
    else if (!private_fits(probe, clattn_tiling_private_bytes(t), t->wg))
        snprintf(text, sizeof text, "private memory %zu bytes a work-item, %zu a work-group of %d, "
                 "is over the limit (%zu a work-item; %zu a work-group on CPU-like devices)",
                 clattn_tiling_private_bytes(t), clattn_tiling_private_bytes(t) * (size_t)t->wg,
                 t->wg, CLATTN_MAX_PRIVATE_BYTES, CLATTN_MAX_GROUP_PRIVATE_BYTES);
    else
        return 1;
    say(why, why_size, text);
    return 0;
}

/* snprintf's result as the length actually written. */
static size_t written(int n, size_t buf_size)
{
    if (n < 0 || buf_size == 0)
        return 0;
    return (size_t)n < buf_size ? (size_t)n : buf_size - 1;
}

static const char *storage_name(clattn_dtype dtype)
{
    switch (dtype) {
    case CLATTN_F16: return "F16";
    case CLATTN_BF16: return "BF16";
    default: return "F32";
    }
}

size_t clattn_storage_build_options(const clattn_storage *storage, char *buf, size_t buf_size)
{
    int n = snprintf(buf, buf_size, "-DQKV_TYPE=%s -DOUT_TYPE=%s -DBIAS_TYPE=%s",
                     storage_name(storage->qkv), storage_name(storage->out),
                     storage_name(storage->bias));
    size_t used = written(n, buf_size);
    if (storage->grad != CLATTN_F32)
        used += written(snprintf(buf + used, buf_size - used, " -DGRAD_TYPE=%s",
                                 storage_name(storage->grad)), buf_size - used);
    return used;
}

size_t clattn_tiling_build_options(const clattn_tiling *t, const clattn_storage *storage,
                                   char *buf, size_t buf_size)
{
    size_t used = clattn_storage_build_options(storage, buf, buf_size);
    int n = snprintf(buf + used, buf_size - used,
                     " -DD_PAD=%d -DDV_PAD=%d -DROWS=%d -DWG=%d -DBLOCK_N=%d -DVEC=%d",
                     t->d_pad, t->dv_pad, t->rows, t->wg, t->block_n, t->vec);
    return used + written(n, buf_size - used);
}

size_t clattn_tiling_describe(const clattn_tiling *t, char *buf, size_t buf_size)
{
    int n = snprintf(buf, buf_size, "dpad=%d dvpad=%d bm=%d bn=%d rows=%d vec=%d wg=%d local=%zu",
                     t->d_pad, t->dv_pad, t->block_m, t->block_n, t->rows, t->vec, t->wg,
                     t->local_bytes);
    return written(n, buf_size);
}

/* Loop iterations of one work-item per tile of keys (or query rows): `products` passes of the
   tile through the head dims in vectors, 8 steps per (row, column), and a few to set up. */
static int64_t loop_bound_per_tile(const clattn_tiling *t, int products)
{
    const int64_t rows = t->rows, columns = t->block_n, dims = (int64_t)t->d_pad + t->dv_pad;
    return 4 * products * rows * columns * dims / t->vec + 8 * products * rows * columns + 64;
}

static int64_t tiles_of(int64_t n, int block_n)
{
    return n > 0 ? (n + block_n - 1) / block_n : 0;
}

int64_t clattn_forward_loop_bound(const clattn_tiling *tiling, int64_t keys)
{
    const int64_t per_row = 4 * ((int64_t)tiling->d_pad + tiling->dv_pad) + 64;
    return tiles_of(keys, tiling->block_n) * loop_bound_per_tile(tiling, 1) +
           (int64_t)tiling->rows * per_row + 1024;
}

int64_t clattn_backward_loop_bound(const clattn_tiling *tiling, int64_t query_rows,
                                   int64_t keys)
{
    const int64_t tiles = tiles_of(query_rows > keys ? query_rows : keys, tiling->block_n);
    const int64_t per_row = 8 * ((int64_t)tiling->d_pad + tiling->dv_pad) + 64;
    return tiles * loop_bound_per_tile(tiling, 2) + (int64_t)tiling->rows * per_row + 1024;
}
