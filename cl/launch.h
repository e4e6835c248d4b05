/*
 * launch.h — the host-kernel contract, defined once for the host (src/) and for the kernels
 * (cl/, where it is the first file of every program): the parameter struct of each kernel, the
 * flag bits in it, and the constants that host and kernels must agree on.
 *
 * Every kernel takes its buffers, then one parameter struct passed by value (OpenCL 1.2 allows
 * struct arguments). The structs hold fixed-width members only, 64-bit ones first, with
 * explicit padding, so that the host compiler and every OpenCL compiler lay them out alike;
 * each side checks the size (CLATTN_CHECK_SIZE), and tests/test_launch.c compares the offset of
 * every member on the device with the host's. A new mask field, a page table or a block format
 * is then one member and one assignment (src/params.c), not a new positional argument.
 * src/launch.c is the one place that sets kernel arguments and enqueues kernels.
 */
#ifndef CLATTN_LAUNCH_H
#define CLATTN_LAUNCH_H

/* ---- fixed-width types on both sides ------------------------------------------------------ */

#if defined(__OPENCL_C_VERSION__) || defined(__OPENCL_VERSION__)
typedef long clattn_i64;
typedef ulong clattn_u64;
typedef int clattn_i32;
typedef uint clattn_u32;
typedef float clattn_f32;
/* functions shared by host and kernels (semantics.h) */
#define CLATTN_SHARED static
#define CLATTN_CHECK_SIZE(type, bytes) \
    typedef char type##_size_check[sizeof(type) == (bytes) ? 1 : -1]
#else
#include "clattn.h"
typedef cl_long clattn_i64;
typedef cl_ulong clattn_u64;
typedef cl_int clattn_i32;
typedef cl_uint clattn_u32;
typedef cl_float clattn_f32;
#define CLATTN_SHARED static inline
#define CLATTN_CHECK_SIZE(type, bytes) \
    _Static_assert(sizeof(type) == (bytes), #type " differs from the kernels' layout")
#endif

/* ---- the parameter structs ---------------------------------------------------------------- */

/* A tensor [batch, heads, seq, dim] as a kernel indexes it: element [b, h, s, d] is at
   offset + b * batch_stride + h * head_stride + s * seq_stride + d, counted in elements of its
   storage type. Absent tensors are all zero. */
typedef struct clattn_view_params {
    clattn_i64 offset, batch_stride, head_stride, seq_stride;
} clattn_view_params;
CLATTN_CHECK_SIZE(clattn_view_params, 32);

/* Dropout (semantics.h): Philox key words, the low word of the offset, the threshold that
   the first output word must reach for a key to be kept, and the low words of q_start and
   k_start (the counters are positions); kept weights are scaled by keep_scale = 1 / (1 - p),
   which is 0 when dropout is off. */
typedef struct clattn_dropout_params {
    clattn_u32 seed_lo, seed_hi, offset_lo, threshold;
    clattn_u32 q_start_lo, k_start_lo;
    clattn_f32 keep_scale;
    clattn_i32 pad_;
} clattn_dropout_params;
CLATTN_CHECK_SIZE(clattn_dropout_params, 32);

/* What every attention kernel (forward, backward, unfused) knows of the call: dims, mask,
   score and dropout. seq_q and seq_k are the dims; seqlens may shorten them per batch. The
   score of a query and a key is ((q_scale q) . k) score_scale, then softcap tanh(score /
   softcap) when softcap is not 0, then + bias (cl/common.cl SCORE), in natural units. The
   scale goes on q when its magnitude is under 1 and on the dot product otherwise
   (src/params.c), so that neither q scale nor q.k overflows where the score fits
   (docs/semantics.md "Scores"). */
typedef struct clattn_attention_params {
    clattn_i64 window_left, window_right;  /* -1: unbounded; capped (src/params.c) */
    clattn_i64 start_shift;                /* q_start - k_start: the mask compares positions */
    clattn_dropout_params dropout;
    clattn_i32 seq_q, seq_k, head_dim, head_dim_v;
    clattn_i32 heads_q, group;             /* query heads; query heads per kv head */
    clattn_i32 flags;                      /* ATTENTION_* below */
    clattn_f32 q_scale, score_scale;       /* their product is the score's scale */
    clattn_f32 softcap;                    /* 0: off */
} clattn_attention_params;
CLATTN_CHECK_SIZE(clattn_attention_params, 96);

/* attention_forward (cl/attention_forward.cl). With split-KV the kernel writes the partials of
   key range s at out + s * out_split and lse + s * lse_split. */
typedef struct clattn_forward_params {
    clattn_view_params q, k, v, out, lse, bias;  /* bias strides are 0 where it broadcasts */
    clattn_view_params sinks;                    /* sink of head h: view_row(&sinks, 0, h, 0) */
    clattn_i64 out_split, lse_split;
    clattn_attention_params attn;
    clattn_i32 splits, keys_per_split;           /* 1 and seq_k: one range */
} clattn_forward_params;
CLATTN_CHECK_SIZE(clattn_forward_params, 344);

/* attention_backward_dkdv and attention_backward_dq (cl/attention_backward.cl). */
typedef struct clattn_backward_params {
    clattn_view_params q, k, v, out, dout, lse, dq, dk, dv, bias;
    clattn_attention_params attn;
    clattn_f32 grad_mult;                        /* the score scale: dq and dk are times it */
    clattn_i32 pad_;
} clattn_backward_params;
CLATTN_CHECK_SIZE(clattn_backward_params, 424);

/* merge_partials (cl/merge.cl): part p of `parts` at p * part_stride elements from the first,
   of `part_lse` at p * lse_part_stride; the running state's lse from element state_lse_at. */
typedef struct clattn_merge_params {
    clattn_view_params parts, part_lse, out, lse;
    clattn_i64 part_stride, lse_part_stride, state_lse_at;
    clattn_i32 n_parts, head_dim_v, flags;       /* MERGE_* below */
    clattn_i32 pad_;
} clattn_merge_params;
CLATTN_CHECK_SIZE(clattn_merge_params, 168);

/* unfused_pack (cl/unfused.cl): heads x rows rows of dim elements of a source (from element
   src_offset, heads and rows head_stride and row_stride apart) into dense f32 scratch at
   dst_offset, times mult. With `masked`, the rows are the values of keys key_first + r, and a
   key that no row in [r0, r1) of batch `batch` sees is stored as 0; a NaN or Inf at one that
   some row sees sets the scratch flag at flag_at. */
typedef struct clattn_pack_params {
    clattn_attention_params attn;
    clattn_i64 src_offset, head_stride, row_stride, dst_offset, flag_at, batch;
    clattn_i32 rows, dim, masked, key_first, r0, r1;
    clattn_f32 mult;
    clattn_i32 pad_;
} clattn_pack_params;
CLATTN_CHECK_SIZE(clattn_pack_params, 176);

/* unfused_softmax, unfused_softmax_rows, unfused_store, unfused_repair (cl/unfused.cl): one
   chunk of the unfused forward, the query heads h0.. and rows r0 .. r0+rows-1 of batch
   `batch` against keys k0 .. k0+keys-1. Its scratch regions (f32 elements of the scratch
   buffer): scores [heads][rows][keys] at scores_at, row sums [heads][rows] at sums_at, P V
   [heads][rows][head_dim_v] at values_at, and the repair flag at flag_at. */
typedef struct clattn_chunk_params {
    clattn_view_params v, out, lse, bias, sinks;
    clattn_attention_params attn;
    clattn_i64 batch, scores_at, sums_at, values_at, flag_at;
    clattn_i32 h0, r0, rows, k0, keys;
    clattn_i32 pad_;
} clattn_chunk_params;
CLATTN_CHECK_SIZE(clattn_chunk_params, 320);

/* loop_probe (cl/probe.cl): the iterations of its one loop. */
typedef struct clattn_loop_probe_params {
    clattn_i32 iterations;
    clattn_i32 pad_[3];
} clattn_loop_probe_params;
CLATTN_CHECK_SIZE(clattn_loop_probe_params, 16);

/* ---- flag bits ----------------------------------------------------------------------------- */

/* clattn_attention_params.flags: what the call asks for. */
#define ATTENTION_BIAS         2
#define ATTENTION_SEQLENS_Q    4
#define ATTENTION_SEQLENS_K    8
#define ATTENTION_CAUSAL       16
#define ATTENTION_BOTTOM_RIGHT 32
#define ATTENTION_DROPOUT      64
#define ATTENTION_SINKS        256
/* attention_forward only: write lse */
#define FORWARD_WRITE_LSE      1
/* the backward only: add into dq, dk, dv */
#define BACKWARD_ACCUMULATE    128

/* clattn_merge_params.flags */
#define MERGE_READ_STATE  1
#define MERGE_WRITE_FINAL 2
#define MERGE_WRITE_LSE   4

/* ---- constants of the planner that the kernels follow -------------------------------------- */

/* Work-groups of at most this many rows (decode) read K and V straight from global memory
   (SCORES_FROM_ROWS in cl/tiles.cl): src/plan.c gives their tilings no local memory. */
#define CLATTN_ROWS_READ_FROM_GLOBAL 4

/* cl/unfused.cl: the largest work-group of unfused_softmax (one work-group per row; the host
   launches a power of two up to it), and the columns per work-item of unfused_pack. */
#define SOFTMAX_WG 64
#define PACK_COLS  16

#endif
