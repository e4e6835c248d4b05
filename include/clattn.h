/*
 * clattn — attention (scaled dot-product, multi-head, grouped-query) on any OpenCL 1.2+ device.
 *
 * This header is the whole public API. Read it top to bottom as the manual.
 *
 * Conventions
 *  - Every fallible call returns a clattn_status. On failure, clattn_last_error() holds a
 *    message for this thread naming the argument and its value; nothing is printed unless
 *    CLATTN_LOG or a log callback asks for it. After a successful call it is "".
 *  - Calls enqueue on the context's in-order queue and return; they never wait for the queue
 *    to finish. Only the first call that needs a new kernel variant may block, to build it.
 *  - Every argument is checked before anything is enqueued; a rejected call writes nothing.
 *  - Tensors are views of cl_mem buffers in logical order [batch, heads, seq, head_dim].
 *
 * Environment
 *  CLATTN_DEVICE      device selector used when clattn_context_create gets NULL or "".
 *  CLATTN_CACHE_DIR   compiled-kernel cache directory; "off" disables the disk cache.
 *                     Default $XDG_CACHE_HOME/clattn, else ~/.cache/clattn.
 *  CLATTN_TUNING_DB   user tuning file (default: tuning.txt in the cache directory), read when
 *                     a context is created; see README.
 *  CLATTN_KERNEL_DIR  load the .cl sources from this folder instead of the embedded copies.
 *  CLATTN_LOG         error | warn | info | debug: log to stderr from that level up.
 */
#ifndef CLATTN_H
#define CLATTN_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/opencl.h>
#else
#include <CL/cl.h>
#endif

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(CLATTN_BUILDING_LIBRARY)
#define CLATTN_API __declspec(dllexport)
#elif defined(_WIN32)
#define CLATTN_API
#elif defined(CLATTN_BUILDING_LIBRARY)
#define CLATTN_API __attribute__((visibility("default")))
#else
#define CLATTN_API
#endif

#define CLATTN_VERSION_MAJOR 0
#define CLATTN_VERSION_MINOR 2
#define CLATTN_VERSION_PATCH 0

/* ------------------------------------------------------------------------------------------ */
/* Status                                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef enum clattn_status {
    CLATTN_SUCCESS = 0,
    CLATTN_ERROR_INVALID_ARGUMENT,  /* NULL where not allowed, bad shape/stride/dtype/flag */
    CLATTN_ERROR_BUFFER_TOO_SMALL,  /* a cl_mem is smaller than its tensor view needs */
    CLATTN_ERROR_UNSUPPORTED,       /* valid request this device or algorithm cannot run */
    CLATTN_ERROR_DEVICE_NOT_FOUND,
    CLATTN_ERROR_BUILD_FAILED,      /* kernel build failed; log in clattn_last_error() */
    CLATTN_ERROR_OUT_OF_RESOURCES,  /* allocation on host or device failed */
    CLATTN_ERROR_OPENCL             /* any other OpenCL error; its code in clattn_last_error() */
} clattn_status;

/* A static English name of s, e.g. "CLATTN_ERROR_UNSUPPORTED"; never NULL (unknown values give
   "CLATTN_ERROR_UNKNOWN"). */
CLATTN_API const char *clattn_status_string(clattn_status s);

/* The message of this thread's last failed call; "" after a successful one. Valid until this
   thread's next clattn call. Never NULL. */
CLATTN_API const char *clattn_last_error(void);

/* "MAJOR.MINOR.PATCH" of the library that is running (compare with the macros above). */
CLATTN_API const char *clattn_version_string(void);

/* Log levels, as CLATTN_LOG names them. */
#define CLATTN_LOG_ERROR 1
#define CLATTN_LOG_WARN  2
#define CLATTN_LOG_INFO  3
#define CLATTN_LOG_DEBUG 4

/* Process-wide: send log lines to fn instead of stderr. With a callback set, fn receives every
   line of every level (filter on level yourself); CLATTN_LOG then only matters for stderr, which
   gets nothing. NULL restores stderr logging. fn may be called from any thread that calls into
   clattn, and must not call clattn itself. */
CLATTN_API void clattn_set_log_callback(void (*fn)(int level, const char *msg, void *user),
                                        void *user);

/* ------------------------------------------------------------------------------------------ */
/* Context: one device and one in-order command queue                                          */
/* ------------------------------------------------------------------------------------------ */

typedef struct clattn_context clattn_context;

/* Create a context, its cl_context and a profiling-enabled in-order queue on the device that
   `device` selects:
     NULL or ""   $CLATTN_DEVICE if set and non-empty, else the first GPU, else the first
                  accelerator, else the first CPU;
     "P:D"        device D of platform P (indices as clGetPlatformIDs/clGetDeviceIDs order);
     "gpu","cpu"  the first device of that type;
     otherwise    the first device whose "platform vendor / platform name / device name"
                  contains the string, case-insensitive ("pocl", "nvidia", "gfx1100").
   Returns CLATTN_ERROR_DEVICE_NOT_FOUND (message lists the devices that exist) when nothing
   matches, INVALID_ARGUMENT for ctx == NULL. On failure *ctx is NULL. */
CLATTN_API clattn_status clattn_context_create(const char *device, clattn_context **ctx);

/* Borrow the caller's queue (retained until release) and its context and device. The queue must
   be in-order: an out-of-order queue is INVALID_ARGUMENT. */
CLATTN_API clattn_status clattn_context_create_from_queue(cl_command_queue queue,
                                                          clattn_context **ctx);

/* Release the context and everything it built. NULL is a no-op. Commands already enqueued keep
   running; the caller waits for them if it needs their results. */
CLATTN_API void clattn_context_release(clattn_context *ctx);

/* Accessors; the handles stay owned by the context (retain them to keep them longer). */
CLATTN_API cl_context       clattn_context_cl_context(const clattn_context *ctx);
CLATTN_API cl_command_queue clattn_context_queue(const clattn_context *ctx);
CLATTN_API const char      *clattn_context_device_name(const clattn_context *ctx);

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef enum clattn_dtype { CLATTN_F32 = 0, CLATTN_F16 = 1, CLATTN_BF16 = 2 } clattn_dtype;

/* A view of a cl_mem: element [b,h,s,d] is at byte
   offset + (b*strides[0] + h*strides[1] + s*strides[2] + d*strides[3]) * element size.
   Input views may broadcast (stride 0) and overlap; output views may not. strides[3] must be 1. */
typedef struct clattn_tensor {
    cl_mem       buffer;
    size_t       offset;      /* bytes from the start of buffer to element [0,0,0,0] */
    clattn_dtype dtype;
    int64_t      dims[4];     /* batch, heads, seq, head_dim */
    int64_t      strides[4];  /* in elements; strides[3] == 1 */
} clattn_tensor;

/* A dense view of b stored as [batch, heads, seq, dim] (offset 0). */
CLATTN_API clattn_tensor clattn_tensor_bhsd(cl_mem b, clattn_dtype t, int64_t batch,
                                            int64_t heads, int64_t seq, int64_t dim);
/* A dense view of b stored as [batch, seq, heads, dim] (offset 0); dims stay in logical order. */
CLATTN_API clattn_tensor clattn_tensor_bshd(cl_mem b, clattn_dtype t, int64_t batch,
                                            int64_t seq, int64_t heads, int64_t dim);

/* ------------------------------------------------------------------------------------------ */
/* Attention                                                                                   */
/* ------------------------------------------------------------------------------------------ */

typedef enum clattn_mask_align {
    CLATTN_ALIGN_BOTTOM_RIGHT = 0,  /* the last query row sees the last key (off = Sk - Sq) */
    CLATTN_ALIGN_TOP_LEFT = 1       /* query row i sees keys j <= i (off = 0) */
} clattn_mask_align;

typedef enum clattn_algo {
    CLATTN_ALGO_AUTO = 0,   /* the library picks */
    CLATTN_ALGO_FUSED,      /* one FlashAttention-style kernel, O(S) memory */
    CLATTN_ALGO_SPLIT_KV,   /* keys split across work-groups, merged by LSE (decode) */
    CLATTN_ALGO_UNFUSED     /* GEMM + softmax + GEMM through CLBlast, chunked */
} clattn_algo;

typedef struct clattn_attention_desc {
    size_t  struct_size;        /* set by _init; the struct may grow at its end (a 0.1
                                   caller's shorter struct is read with the later fields at
                                   their defaults) */
    float   scale;              /* 0: 1/sqrt(head_dim of q) */
    int     causal;             /* 0 or 1 */
    clattn_mask_align align;
    int64_t window_left;        /* -1: unbounded */
    int64_t window_right;       /* -1: unbounded */
    float   softcap;            /* 0: off */
    const clattn_tensor *bias;  /* NULL or additive [B|1, Hq|1, Sq|1, Sk] */
    cl_mem  seqlens_q;          /* NULL or int32[B] valid query rows per batch */
    cl_mem  seqlens_k;          /* NULL or int32[B] valid keys per batch */
    float   dropout_p;          /* [0, 1) */
    uint64_t dropout_seed;
    uint64_t dropout_offset;
    clattn_algo algo;
    cl_mem  workspace;          /* NULL, or caller scratch of workspace_size bytes */
    size_t  workspace_size;
    /* added in 0.2 */
    int64_t q_start;            /* position of query row 0 in the whole sequence, 0..2^40 */
    int64_t k_start;            /* position of key 0 in the whole sequence, 0..2^40 */
    int     accumulate;         /* backward: 0 or 1, add into dq, dk, dv; the forward ignores it */
    const clattn_tensor *sinks; /* NULL or f32 [1, Hq, 1, 1]: one logit per query head */
} clattn_attention_desc;

/* Set every field to its default: scale 0, not causal, BOTTOM_RIGHT, windows -1, no softcap,
   bias or seqlens, no dropout, AUTO, no workspace, positions from 0, no accumulate, no sinks;
   struct_size = sizeof. */
CLATTN_API void clattn_attention_desc_init(clattn_attention_desc *desc);

/* out = softmax(mask(q k^T * scale)) v for every batch b and query head h, where query head h
   reads key/value head h / (Hq / Hkv).
   Shapes: q [B,Hq,Sq,D], k [B,Hkv,Sk,D], v [B,Hkv,Sk,Dv], out [B,Hq,Sq,Dv],
   lse NULL or f32 [B,Hq,Sq,1] (natural log of the softmax denominator).
   Visibility of key j to query i, off = Sk - Sq (BOTTOM_RIGHT) or 0 (TOP_LEFT), positions
   qp = q_start + i and kp = k_start + j: j < Sk; causal: kp <= qp + off; window_left >= 0:
   kp >= qp + off - window_left; window_right >= 0: kp <= qp + off + window_right.
   q_start and k_start place q and k in a longer sequence (a shard of it, a chunk of a
   prefill): with TOP_LEFT, a call over shards gets the mask of the whole sequence.
   Score: s = (q . k) * scale; softcap > 0: s = softcap * tanh(s / softcap); then s += bias
   (any dtype, [B|1, Hq|1, Sq|1, Sk], dims of 1 broadcast; -INFINITY hides a key).
   seqlens_q / seqlens_k (int32[B] on the device) give each batch's valid lengths Sq_b, Sk_b,
   used above in place of Sq, Sk; rows i >= Sq_b get out = 0 and lse = -INFINITY, and an entry
   outside [0, dim] makes that batch's out and lse NaN (never an out-of-bounds access).
   A row with no visible key (or whose visible scores are all -INFINITY) gets out = 0 and
   lse = -INFINITY. sinks (gpt-oss): exp(sinks[h]) joins every denominator of query head h
   (unscaled, not softcapped, never dropped, with no value): p_j = exp(s_j) / (exp(sinks[h]) +
   sum of exp over the visible keys), lse is the log of that whole denominator, and a row with
   no visible key gets out = 0 and lse = sinks[h] (padding rows stay -INFINITY). The backward
   takes sinks as constants: give it the same desc, and the lse that includes them.
   NaN in an input row gives NaN in that output row. q, k, v share one dtype
   (f32, f16 or bf16); out may be any dtype (stored round-to-nearest-even); arithmetic is f32.
   dropout_p > 0: each weight is kept (scaled by 1/(1-p)) or dropped as clattn_dropout_keep
   decides for positions qp and kp, so shards drop what the whole sequence would; lse is
   before dropout.
   Numbers (docs/semantics.md "The numeric promise"): with finite inputs, out and lse are
   finite and agree with the f64 definition within f32 rounding, on every algorithm, whenever
   every visible score, every q[d] k[d] min(1, |scale|), and every |v| (times 1/(1-p) with
   dropout) fits a float: the scale is applied on the side of the dot product where it cannot
   overflow, scores stay in natural units, the output is a weighted mean that never exceeds
   the largest |v|, and only -INFINITY scores weigh 0 (a row of scores near -FLT_MAX still has
   its keys). A device without denormals (no CL_FP_DENORM) flushes subnormal inputs to zero
   first, as OpenCL allows. On FUSED and SPLIT_KV the error does not grow with the number of keys
   (compensated sums); UNFUSED's GEMM sums over keys in f32.
   The event (if event != NULL) completes when out and lse are written; on failure *event is
   NULL. Statuses: INVALID_ARGUMENT / BUFFER_TOO_SMALL for bad input (nothing is enqueued),
   UNSUPPORTED for a request this version cannot run yet (see README's feature table), whose
   scratch is more than the device allocates at once, or that needs a kernel this device
   compiled wrong (below), BUILD_FAILED, OUT_OF_RESOURCES, OPENCL.
   Known-answer checks: every kernel program clattn builds (not one loaded from its disk
   cache, which keeps the verdict) first runs on a small problem whose answer the host
   computes in f64; a program that answers wrong is never used, and every call that needs it
   returns UNSUPPORTED naming the device, driver, kernel and the wrong element. AUTO then runs
   the unfused path instead (when clattn has CLBlast). On a device that silently stops long
   loops (Mesa's llvmpipe: docs/kernels.md), AUTO picks a tiling whose loops stay under the
   measured cap, and a request that no tiling keeps under it returns UNSUPPORTED saying so. */
CLATTN_API clattn_status clattn_attention_forward(clattn_context *ctx,
    const clattn_attention_desc *desc,
    const clattn_tensor *q, const clattn_tensor *k, const clattn_tensor *v,
    const clattn_tensor *out, const clattn_tensor *lse,
    cl_uint num_wait, const cl_event *wait_list, cl_event *event);

/* dq, dk, dv of a loss L given dout = dL/dout, from the forward's out and lse (natural log,
   as the forward wrote it; required) and the same desc (scale, masks, positions, softcap,
   bias, seqlens, dropout seed and offset) as the forward call. Given the out and lse of the
   whole sequence (merged over its key shards), a call over one query shard and one key shard
   (q_start, k_start) gives that pair's share of dq, dk and dv: summed over the pairs they are
   the whole sequence's gradients (ring attention). With accumulate = 1 the call adds its
   gradients into dq, dk and dv (each element read, added in f32, stored; padding rows and
   unseen keys add 0) instead of overwriting them, so such shares sum in place; dq, dk and dv
   must then be readable (not CL_MEM_WRITE_ONLY). Shapes: out and dout [B,Hq,Sq,Dv] sharing one
   dtype (any); lse f32 [B,Hq,Sq,1]; dq like q, dk like k, dv like v, the three sharing one dtype
   (any); arithmetic is f32. For GQA/MQA dk and dv sum over the query heads of each group. The
   bias is a constant input (no gradient). Every element of dq, dk and dv is written: 0 for
   padding rows, keys past seqlens_k and keys no query sees; NaN for a batch whose seqlens entry
   is outside [0, dim]. dq, dk, dv may not alias each other or any input.
   Deterministic (no atomics: the same inputs give the same bits) and O(S) memory: two kernels,
   one over key blocks (dk, dv) and one over query blocks (dq), each recomputing the scores;
   no workspace. algo AUTO and FUSED run head dims 1..1024 (over 256, fewer rows per
   work-item); larger head dims, UNFUSED and SPLIT_KV give CLATTN_ERROR_UNSUPPORTED in this
   version, as does a backward program its known-answer check refused (see the forward). */
CLATTN_API clattn_status clattn_attention_backward(clattn_context *ctx,
    const clattn_attention_desc *desc,
    const clattn_tensor *q, const clattn_tensor *k, const clattn_tensor *v,
    const clattn_tensor *out, const clattn_tensor *dout, const clattn_tensor *lse,
    const clattn_tensor *dq, const clattn_tensor *dk, const clattn_tensor *dv,
    cl_uint num_wait, const cl_event *wait_list, cl_event *event);

/* Combine n partial results for the same queries over disjoint key sets:
   out = sum_p exp(lse_p - lse) out_p, lse = log sum_p exp(lse_p); outs[p] and lses[p] shaped
   like out and lse (each part may have its own dtype; lse f32); a part with lse -INFINITY
   contributes nothing; when every part is -INFINITY the row gets 0 and -INFINITY; NaN in a part
   gives NaN. out and lse must not alias each other or any part. n == 0 is INVALID_ARGUMENT.
   Enqueues n kernels (one per part) and a scratch of B*Hq*Sq*(Dv+1) floats when n > 1. */
CLATTN_API clattn_status clattn_attention_merge(clattn_context *ctx, size_t n,
    const clattn_tensor *outs, const clattn_tensor *lses,
    const clattn_tensor *out, const clattn_tensor *lse,
    cl_uint num_wait, const cl_event *wait_list, cl_event *event);

/* The dropout decision of the kernels, computed on the host: 1 if the key at position j is
   kept for the query at position i (q_start + row and k_start + key; row and key with the
   default positions), batch b, query head h of num_q_heads. Philox4x32-10, key = (low, high
   32 bits of seed), counter = low 32 bits of (j, i, b*num_q_heads + h, offset); kept iff the
   first output word >= ceil(p * 2^32). */
CLATTN_API int clattn_dropout_keep(uint64_t seed, uint64_t offset, int64_t b, int64_t h,
    int64_t num_q_heads, int64_t i, int64_t j, float p);

/* Bytes of scratch the call would need beyond its outputs: 0 for the fused path; split-KV
   partials (splits * B*Hq*Sq*(Dv+1) floats); the unfused path's chunks (at most 256 MiB unless
   one query row alone needs more). With desc->workspace (CL_MEM_READ_WRITE, not aliasing any
   argument) at least this big the call allocates nothing; without, the context allocates a
   scratch buffer, keeps it for later calls (growing it when one needs more) and frees it in
   clattn_context_release. */
CLATTN_API clattn_status clattn_attention_workspace_size(clattn_context *ctx,
    const clattn_attention_desc *desc,
    const clattn_tensor *q, const clattn_tensor *k, const clattn_tensor *v, size_t *bytes);

/* What a forward call with these arguments would run, as one line whose first word is the
   algorithm (fused, split_kv or unfused), e.g.
   "fused f32 d=64 dv=64 dpad=64 dvpad=64 bm=32 bn=32 rows=32 vec=16 wg=1 local=16384" or
   "split_kv f16 d=128 dv=128 splits=8 keys=4096 dpad=128 ...".
   AUTO picks UNFUSED when a head dim is over 256, SPLIT_KV when the query rows alone give under
   4 work-groups per compute unit and there are at least 512 keys (decode), FUSED otherwise.
   Always writes a NUL-terminated string when buf != NULL and buf_size > 0 (truncated if short);
   returns the status the forward call would return for these arguments' shapes and flags. When
   the call could not run, the line is "<algorithm asked for, fused for AUTO> not runnable:
   <reason>". A fused kernel that a known-answer check refused on this device (in this
   context, or as the disk cache remembers; the plan builds nothing, and takes out to have
   q's dtype) is named with the reason: AUTO's line then begins "unfused" and ends
   "(the fused kernel is refused: <reason>)". */
CLATTN_API clattn_status clattn_attention_plan(clattn_context *ctx,
    const clattn_attention_desc *desc,
    const clattn_tensor *q, const clattn_tensor *k, const clattn_tensor *v,
    char *buf, size_t buf_size);

#ifdef __cplusplus
}
#endif
#endif /* CLATTN_H */
