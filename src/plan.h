/* Tiling: probe + problem -> the launch shape and compile-time options of the fused kernel.
   Pure functions of plain structs; no OpenCL calls, so tests run them without a device. */
#ifndef CLATTN_PLAN_H
#define CLATTN_PLAN_H

#include "probe.h"

/* The problem as the planner sees it. */
typedef struct clattn_problem {
    clattn_dtype dtype;      /* storage type of q, k, v */
    int64_t batch, heads_q, heads_kv;
    int64_t seq_q, seq_k;
    int64_t head_dim, head_dim_v;
    int     causal;
} clattn_problem;

/* One launch configuration of the fused kernels (cl/tiles.cl): the forward's, or the backward's. */
typedef struct clattn_tiling {
    int    d_pad;        /* compile-time bucket >= head_dim (16, 32, 64, 128, 256) */
    int    dv_pad;       /* compile-time bucket >= head_dim_v */
    int    rows;         /* query rows per work-item (register blocking) */
    int    wg;           /* work-items per work-group */
    int    block_m;      /* query rows per work-group = rows * wg */
    int    block_n;      /* keys per tile staged in local memory; a multiple of vec */
    int    vec;          /* vector width of the inner loops: 1, 2, 4, 8 or 16 */
    size_t local_bytes;  /* local memory the kernel declares for this tiling */
} clattn_tiling;

#define CLATTN_MAX_FUSED_HEAD_DIM 256
#define CLATTN_MAX_BACKWARD_HEAD_DIM 1024

/* Smallest compile-time bucket holding head_dim, or 0 if head_dim is outside 1..256. */
int clattn_head_dim_bucket(int64_t head_dim);

/* Work-groups of at most this many query rows (decode) read K and V straight from global
   memory (SCORES_FROM_ROWS in cl/tiles.cl): their tiling declares no local memory. */
#define CLATTN_ROWS_READ_FROM_GLOBAL 4

/* Local memory the forward's tiling uses: a K tile [d_pad][block_n] and a V tile
   [block_n][dv_pad], f32; none with at most CLATTN_ROWS_READ_FROM_GLOBAL rows per work-group. */
size_t clattn_tiling_local_bytes(const clattn_tiling *t);

/* Private memory of one work-item of the forward's tiling (cl/attention_forward.cl): its q
   rows, its output sums (the compensated sum and the partial sum of the last few tiles), a
   tile's scores and weights, and a few floats per row. */
size_t clattn_tiling_private_bytes(const clattn_tiling *t);

/* Limits on private memory, which a device does not report: a work-item's at most
   CLATTN_MAX_PRIVATE_BYTES; and on CPU-like devices, where a work-group runs as a loop on one
   thread's stack, a work-group's at most CLATTN_MAX_GROUP_PRIVATE_BYTES (PoCL 3.1 crashed in a
   work-group of 4096 work-items with 736 bytes each, 3 MB). */
#define CLATTN_MAX_PRIVATE_BYTES ((size_t)192 << 10)
#define CLATTN_MAX_GROUP_PRIVATE_BYTES ((size_t)1 << 20)

/* Choose the tiling of the fused forward for problem on probe's device. Writes a short reason
   to why (may be NULL). Returns CLATTN_ERROR_UNSUPPORTED (reason in why) when no tiling fits
   the device or the head dims are over 256. */
clattn_status clattn_plan_forward(const clattn_device_probe *probe,
                                  const clattn_problem *problem,
                                  clattn_tiling *tiling, char *why, size_t why_size);

/* Where a plan's tiling came from: the planner's heuristic, an entry of the tuning database
   (tunedb.h) that names this exact device and driver, the device with any driver, or the
   device's class on its platform; or a tiling forced on the context (clattn-bench --tune). */
typedef enum clattn_tiling_source {
    CLATTN_TILING_HEURISTIC = 0,
    CLATTN_TILING_TUNED_EXACT,
    CLATTN_TILING_TUNED_DEVICE,
    CLATTN_TILING_TUNED_CLASS,
    CLATTN_TILING_FORCED
} clattn_tiling_source;

/* What a call runs: the algorithm, and for FUSED and SPLIT_KV the tiling of the fused kernel;
   SPLIT_KV cuts the keys into `splits` ranges of `keys_per_split` (FUSED: 1 range). */
typedef struct clattn_plan {
    clattn_algo          algo;
    clattn_tiling        tiling;
    clattn_tiling_source source;
    int                  splits;
    int                  keys_per_split;
} clattn_plan;

#define CLATTN_MIN_KEYS_PER_SPLIT 256

/* Local memory of the backward kernels (cl/attention_backward.cl) for a tiling: tiles of
   block_n query rows of q (transposed and row-major), dout (both) and two floats per row. */
size_t clattn_backward_local_bytes(const clattn_tiling *t);

/* Private memory of one work-item of the larger backward kernel (dk/dv): its k and v rows,
   their gradients' sums, a tile's four score-sized arrays and a few ints per row. */
size_t clattn_backward_private_bytes(const clattn_tiling *t);

/* The tiling of the backward kernels: the forward's rules (clattn_plan_forward) with block_n
   sized for the backward's tiles (clattn_backward_local_bytes) and, on CPUs, the rows of both
   kernels (the (query, head) rows of dq and the keys of dk/dv) counted. AUTO and FUSED run
   head dims 1..CLATTN_MAX_BACKWARD_HEAD_DIM; SPLIT_KV, UNFUSED and larger head dims are
   CLATTN_ERROR_UNSUPPORTED with the reason in why. */
clattn_status clattn_plan_backward(const clattn_device_probe *probe, const clattn_problem *problem,
                                   clattn_algo requested, clattn_tiling *tiling, char *why,
                                   size_t why_size);

/* Choose the algorithm and its parameters for a request. AUTO: UNFUSED when a head dim is over
   256; SPLIT_KV when the query rows alone give under 4 work-groups per compute unit and there
   are at least 2 * CLATTN_MIN_KEYS_PER_SPLIT keys (decode); FUSED otherwise. A forced FUSED or
   SPLIT_KV over 256 is CLATTN_ERROR_UNSUPPORTED with the reason in why. A tiling from `source`
   (NULL: none) replaces the heuristic's when it fits the device and has the call's buckets. */
clattn_status clattn_plan_call(const clattn_device_probe *probe, const clattn_problem *problem,
                               clattn_algo requested, const clattn_tiling *tiling,
                               clattn_tiling_source source, clattn_plan *plan, char *why,
                               size_t why_size);

/* The fused forward's tilings for problem that fit probe's device, the search space of
   clattn-bench --tune: rows, wg, block_n and vec from the sets in plan.c, a work-group of at
   most CLATTN_CPU_MAX_WG on CPU-like devices and a whole number of warps (the device's
   work-group multiple) elsewhere, every one passing clattn_tiling_fits. Writes at most max
   tilings to out; returns how many there are. */
size_t clattn_plan_candidates(const clattn_device_probe *probe, const clattn_problem *problem,
                              clattn_tiling *out, size_t max);

/* CPU work-groups run as a loop on one core: wider ones only add barriers. */
#define CLATTN_CPU_MAX_WG 8

/* 1 if the forward's tiling is well-formed and within probe's limits (work-group size, local
   memory, private memory); else 0 with the first violated limit in why (may be NULL). */
int clattn_tiling_fits(const clattn_device_probe *probe, const clattn_tiling *tiling,
                       char *why, size_t why_size);

/* Upper bounds of the loop iterations one work-item runs (every loop counted, unrolled or
   not), for devices that silently stop a work-item's loops after a number of iterations
   (check.h clattn_device_loop_limit): the fused forward's over `keys` keys (a split's range),
   the backward's two kernels over group * seq_q query rows and seq_k keys. Four times the
   element-vector steps of a tile's products, plus the per-row work: above what rusticl on
   llvmpipe counted for every tiling measured (about 7800 per 16-key tile at rows 4, D 128). */
int64_t clattn_forward_loop_bound(const clattn_tiling *tiling, int64_t keys);
int64_t clattn_backward_loop_bound(const clattn_tiling *tiling, int64_t query_rows,
                                   int64_t keys);

/* Storage types of one call: q/k/v, out (and dout), bias (F32 when there is no bias), and the
   gradients dq/dk/dv of a backward call (F32 otherwise). */
typedef struct clattn_storage {
    clattn_dtype qkv, out, bias, grad;
} clattn_storage;

/* The -D options that select storage types in cl/common.cl ("-DQKV_TYPE=F16 -DOUT_TYPE=F32
   -DBIAS_TYPE=F32", then " -DGRAD_TYPE=F16" when grad is not the default F32), for kernels
   without a tiling. Returns the length written. */
size_t clattn_storage_build_options(const clattn_storage *storage, char *buf, size_t buf_size);

/* The -D option string that compiles cl/attention_forward.cl for tiling and storage types:
   the storage options followed by the tiling's. With clattn_storage_build_options, the only
   place build options are made. Returns the length written (truncated to buf_size - 1). */
size_t clattn_tiling_build_options(const clattn_tiling *tiling, const clattn_storage *storage,
                                   char *buf, size_t buf_size);

/* "dpad=64 dvpad=64 bm=8 bn=32 rows=8 vec=16 wg=1 local=16384"; returns the length written. */
size_t clattn_tiling_describe(const clattn_tiling *tiling, char *buf, size_t buf_size);

#endif
