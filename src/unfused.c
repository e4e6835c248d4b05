/* The unfused forward: S = Q K^T and O = P V through CLBlast around the masked softmax and the
   store kernels of cl/unfused.cl, one chunk (batch, block of query heads, block of query rows)
   at a time so that scratch stays under a bound at any sequence length.

   Chunking (plan_chunks, a pure function of the validated arguments):
   - A chunk's keys are the interval every row of it may see in any batch (chunk_keys): from the
     dims, the mask (cl/semantics.h) and the range of the alignment offset that seqlens allow. Its scores are a
     dense f32 [heads][rows][keys] matrix; `keys_max` bounds `keys` for every chunk.
   - Rows per chunk start at Sq, capped when the mask bounds the keys (rows_cap) so that GEMMs
     do not compute many masked scores. Then the most heads that fit: n whole kv groups
     (n = Hkv .. 1), else a divisor of the group size; if not even one head of all rows fits,
     one head and the most rows that fit (at least one).
   - q, k, v go to the GEMMs in place when f32 with a seq stride >= the row length; otherwise
     they are packed into f32 scratch first: q per chunk, k and v per block of `key_block`
     keys (a quarter of the bound at most), the GEMMs then run per key block (P V with beta 1).
     v is also packed when seqlens are given, and its packing zeroes the keys that no row of
     the chunk sees (padding keys past seqlens_k among them).
   - Scratch, in f32 elements, each region padded to 64: S heads*rows*keys_max, O heads*rows*Dv,
     row sums heads*rows, q copy heads*rows*D, k/v copy kv_heads*key_block*max(D or Dv copied),
     one flag.

   Invisible keys never reach a row: the GEMMs span only the chunk's key interval, packed v has
   the keys that no row of the chunk sees zeroed, and the softmax selects. What is left is
   O = P V multiplying P = 0 by v at keys that other rows of the chunk see (0 * NaN = NaN): so
   v's rows are checked as they are packed (or scanned, when used in place), and when one that
   the chunk sees holds NaN or Inf, unfused_repair redoes that chunk's out from P and v over
   each row's own visible keys (slow, only for such inputs). */
#include "unfused.h"

#include <string.h>

#include "check.h"
#include "enqueue.h"
#include "fault.h"
#include "log.h"
#include "params.h"
#include "plan.h"
#include "semantics.h"
#include "status.h"

/* Tests may lower the bound to force chunking at small sizes. */
#ifdef CLATTN_UNFUSED_TEST_SCRATCH_BYTES
#define SCRATCH_BOUND ((uint64_t)CLATTN_UNFUSED_TEST_SCRATCH_BYTES)
#else
#define SCRATCH_BOUND ((uint64_t)CLATTN_UNFUSED_SCRATCH_BYTES)
#endif

#define REGION_ALIGN 64               /* floats: each scratch region starts at 256 bytes */
#define SIZE_CAP ((uint64_t)1 << 60)  /* saturation of size arithmetic */

/* How a call is cut into chunks and where each piece of scratch lives. */
typedef struct unfused_plan {
    clattn_attention_params attn;       /* what the kernels get (src/params.c) */
    int64_t batch, heads_q, heads_kv, group, seq_q, seq_k, dim, dim_v;
    int     causal;
    int64_t window_left, window_right;  /* attn's: capped; -1: unbounded */
    int64_t off_min, off_max;           /* the mask's offset over every possible batch */
    int     copy_q, copy_k, copy_v;     /* 1: packed into f32 scratch for the GEMMs */
    int64_t heads;                      /* query heads per chunk */
    int64_t rows;                       /* query rows per chunk */
    int64_t keys_max;                   /* most keys one chunk spans */
    int64_t kv_heads;                   /* most kv heads one chunk reads */
    int64_t key_block;                  /* keys per k/v packing (0: neither is packed) */
    uint64_t at_s, at_o, at_l, at_q, at_kv, at_flag;  /* region offsets in floats */
    uint64_t bytes;                     /* scratch of the whole call */
} unfused_plan;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) || r > SIZE_CAP ? SIZE_CAP : r;
}

/* a * b * c floats, padded to REGION_ALIGN. */
static uint64_t region(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t n = mul_sat(mul_sat(a, b), c);
    return (n + REGION_ALIGN - 1) / REGION_ALIGN * REGION_ALIGN;
}

/* f32 rows whose seq stride is at least the row length: a GEMM operand as they are. */
static int gemm_ready(const clattn_tensor *t, int64_t width)
{
    return t->dtype == CLATTN_F32 && t->strides[2] >= width;
}

/* Most keys a chunk of `rows` rows spans (at least 1, at most Sk). */
static int64_t keys_bound(const unfused_plan *p, int64_t rows)
{
    if (p->window_left < 0 || (!p->causal && p->window_right < 0))
        return p->seq_k;
    int64_t hi_off = p->window_right >= 0 ? p->window_right : 0;
    if (p->causal)
        hi_off = min64(hi_off, 0);
    int64_t span = rows + p->off_max - p->off_min + hi_off + p->window_left;
    return max64(1, min64(span, p->seq_k));
}

/* Rows per chunk when the mask bounds the keys: about as many rows as keys per row for a
   window, a quarter of the rows for a one-sided bound (causal), never fewer than 128. */
static int64_t rows_cap(const unfused_plan *p)
{
    int lo_bounded = p->window_left >= 0, hi_bounded = p->causal || p->window_right >= 0;
    if (lo_bounded && hi_bounded)
        return max64(128, keys_bound(p, 1));
    if (lo_bounded || hi_bounded)
        return max64(128, (p->seq_q + 3) / 4);
    return p->seq_q;
}

/* Lay scratch out for chunks of `heads` heads (a multiple or a divisor of the group size) and
   `rows` rows; returns the bytes (saturated). */
static uint64_t plan_layout(unfused_plan *p, int64_t heads, int64_t rows)
{
    p->heads = heads;
    p->rows = rows;
    p->keys_max = keys_bound(p, rows);
    p->kv_heads = heads >= p->group ? heads / p->group : 1;
    int64_t width = max64(p->copy_k ? p->dim : 0, p->copy_v ? p->dim_v : 0);
    p->key_block = 0;
    if (width > 0) {
        uint64_t per_key = mul_sat((uint64_t)p->kv_heads, (uint64_t)width * 4);
        p->key_block = (int64_t)(SCRATCH_BOUND / 4 / per_key);
        p->key_block = max64(1, min64(p->key_block, p->keys_max));
    }
    uint64_t hr = mul_sat((uint64_t)heads, (uint64_t)rows);
    p->at_s = 0;
    p->at_o = p->at_s + region(hr, (uint64_t)p->keys_max, 1);
    p->at_l = p->at_o + region(hr, (uint64_t)p->dim_v, 1);
    p->at_q = p->at_l + region(hr, 1, 1);
    p->at_kv = p->at_q + (p->copy_q ? region(hr, (uint64_t)p->dim, 1) : 0);
    p->at_flag = p->at_kv + region((uint64_t)p->kv_heads, (uint64_t)p->key_block, (uint64_t)width);
    p->bytes = mul_sat(p->at_flag + REGION_ALIGN, 4);
    return p->bytes;
}

/* Shapes, mask and packing of the call; no chunking yet. */
static void plan_problem(const clattn_forward_args *a, unfused_plan *p)
{
    const clattn_tensor *q = a->q.t, *k = a->k.t, *v = a->v.t;
    const clattn_attention_desc *d = a->desc;
    const clattn_problem problem = clattn_problem_of(a);
    memset(p, 0, sizeof *p);
    p->attn = clattn_attention_params_of(d, &problem, 0);
    p->batch = q->dims[0];
    p->heads_q = q->dims[1];
    p->heads_kv = k->dims[1];
    p->group = p->heads_q / p->heads_kv;
    p->seq_q = q->dims[2];
    p->seq_k = k->dims[2];
    p->dim = q->dims[3];
    p->dim_v = v->dims[3];
    p->causal = d->causal;
    p->window_left = p->attn.window_left;
    p->window_right = p->attn.window_right;
    if (p->attn.flags & ATTENTION_BOTTOM_RIGHT) {
        /* off = sk_b - sq_b with sk_b, sq_b anywhere in [0, dim] when seqlens are given */
        p->off_min = (d->seqlens_k ? 0 : p->seq_k) - p->seq_q;
        p->off_max = p->seq_k - (d->seqlens_q ? 0 : p->seq_q);
    }
    p->off_min += p->attn.start_shift;   /* positions shift every batch's offset alike */
    p->off_max += p->attn.start_shift;
    /* q goes to the GEMM times q_scale (src/params.c): in place only when that is 1 */
    p->copy_q = !gemm_ready(q, p->dim) || p->attn.q_scale != 1.0f;
    p->copy_k = !gemm_ready(k, p->dim);
    /* with seqlens the host cannot tell which keys a chunk sees: v is packed, and masked */
    p->copy_v = !gemm_ready(v, p->dim_v) || d->seqlens_q || d->seqlens_k;
}

/* The chunking of a validated call (see the top of this file). */
static void plan_chunks(const clattn_forward_args *a, unfused_plan *p)
{
    plan_problem(a, p);
    const int64_t rows = min64(p->seq_q, rows_cap(p));
    for (int64_t n = p->heads_kv; n >= 1; n--)
        if (plan_layout(p, n * p->group, rows) <= SCRATCH_BOUND)
            return;
    for (int64_t n = p->group - 1; n >= 1; n--)
        if (p->group % n == 0 && plan_layout(p, n, rows) <= SCRATCH_BOUND)
            return;
    int64_t lo = 1, hi = rows; /* the most rows of one head that fit, at least one */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (plan_layout(p, 1, mid) <= SCRATCH_BOUND)
            lo = mid;
        else
            hi = mid - 1;
    }
    plan_layout(p, 1, lo);
}

size_t clattn_unfused_workspace_size(const clattn_forward_args *args)
{
    unfused_plan p;
    plan_chunks(args, &p);
    return p.bytes >= SIZE_MAX ? SIZE_MAX : (size_t)p.bytes;
}

#ifdef CLATTN_HAVE_CLBLAST

#include <clblast_c.h>

static const char *const unfused_files[] = {"launch.h", "semantics.h", "common.cl", "unfused.cl",
                                            NULL};

/* CLBlast 1.5.3 races on its caches: one process-wide lock around every call into it. */
static pthread_mutex_t clblast_lock = PTHREAD_MUTEX_INITIALIZER;

/* One call in flight. */
typedef struct unfused_run {
    clattn_context *ctx;
    const clattn_forward_args *args;
    unfused_plan plan;
    cl_mem  ws;               /* scratch: the caller's workspace or the context's */
    char    options[160];     /* storage -D options of every kernel of the call */
    clattn_program_check check;  /* of their program (check.h) */
    size_t  softmax_wg;       /* power of two <= SOFTMAX_WG; 0: unfused_softmax_rows */
} unfused_run;

/* One chunk: batch b, query heads [h0, h0 + heads), rows [r0, r0 + rows), keys [k0, k0 + keys). */
typedef struct chunk {
    int64_t b, h0, heads, r0, rows, k0, keys;
} chunk;

/* A GEMM operand: rows of head 0 start at element `off` of buf, `ld` apart; heads `hs` apart. */
typedef struct gemm_mat {
    cl_mem buf;
    size_t off, ld, hs;
} gemm_mat;

int clattn_unfused_available(void)
{
    return 1;
}

static cl_long elem_off(const clattn_tensor *t)
{
    return (cl_long)(t->offset / clattn_dtype_size(t->dtype));
}

/* Enqueue kernel `name` of cl/unfused.cl with its buffers and parameter struct. */
static clattn_status launch(unfused_run *run, const char *name, const cl_mem *buffers,
                            cl_uint num_buffers, const void *params, size_t params_size,
                            const size_t global[3], size_t wg)
{
    const clattn_kernel_launch l = {unfused_files, run->options, name, buffers, num_buffers,
                                    params, params_size, 3, {global[0], global[1], global[2]},
                                    {wg, wg ? 1 : 0, wg ? 1 : 0}, &run->check, 0};
    return clattn_enqueue_kernel(run->ctx, &l, 0, NULL, NULL);
}

/* Work-group of unfused_softmax: the largest power of two <= SOFTMAX_WG that the kernel can
   run with; 0 on CPUs, which run unfused_softmax_rows (a row per work-item, no barriers: PoCL
   runs barriers and many small work-groups far slower). */
static clattn_status softmax_group_size(unfused_run *run)
{
    run->softmax_wg = 0;
    if (run->ctx->probe.device_class == CLATTN_DEVICE_CLASS_CPU)
        return CLATTN_SUCCESS;
    size_t limit = 0;
    clattn_status s = clattn_kernel_work_group_limit(run->ctx, unfused_files, run->options,
                                                     "unfused_softmax", &run->check, &limit);
    run->softmax_wg = 1;
    while (run->softmax_wg * 2 <= SOFTMAX_WG && run->softmax_wg * 2 <= limit)
        run->softmax_wg *= 2;
    return s;
}

/* Where a packing goes and, for v, the chunk whose mask zeroes the keys none of its rows sees
   and whose flag records NaN or Inf among the others. */
typedef struct pack_job {
    cl_long dst_off;         /* -1: no copy, only the check (v used in place) */
    int64_t heads, rows, dim;
    float   mult;            /* of every element: q_scale for q, 1 for k and v */
    const chunk *mask;       /* NULL: q or k, no masking, no check */
    int64_t key_first;       /* with mask: the key of packed row 0 */
} pack_job;

/* Pack job->heads x job->rows rows of job->dim elements of src (from element src_off, heads hs
   and rows rs apart) into dense f32 scratch. */
static clattn_status pack(unfused_run *run, const clattn_tensor *src, cl_long src_off,
                          cl_long hs, cl_long rs, const pack_job *job)
{
    const unfused_plan *p = &run->plan;
    const clattn_attention_desc *d = run->args->desc;
    const chunk *c = job->mask;
    clattn_pack_params params;
    memset(&params, 0, sizeof params);
    params.attn = p->attn;
    params.src_offset = src_off;
    params.head_stride = hs;
    params.row_stride = rs;
    params.dst_offset = job->dst_off < 0 ? 0 : job->dst_off;
    params.flag_at = (clattn_i64)p->at_flag;
    params.batch = c ? c->b : 0;
    params.rows = (clattn_i32)job->rows;
    params.dim = (clattn_i32)job->dim;
    /* a v used in place is checked at every key of the GEMM: none is zeroed there */
    params.masked = c != NULL && job->dst_off >= 0;
    params.key_first = (clattn_i32)job->key_first;
    params.r0 = c ? (clattn_i32)c->r0 : 0;
    params.r1 = c ? (clattn_i32)(c->r0 + c->rows) : 0;
    params.mult = job->mult;
    const cl_mem buffers[] = {src->buffer, job->dst_off < 0 ? NULL : run->ws, d->seqlens_q,
                              d->seqlens_k, c ? run->ws : NULL};
    const size_t global[3] = {(size_t)((job->dim + PACK_COLS - 1) / PACK_COLS), (size_t)job->rows,
                              (size_t)job->heads};
    return launch(run, "unfused_pack", buffers, 5, &params, sizeof params, global, 0);
}

/* The q operand of chunk c: q in place, or its rows packed into scratch. */
static clattn_status q_operand(unfused_run *run, const chunk *c, gemm_mat *m)
{
    const unfused_plan *p = &run->plan;
    const clattn_tensor *q = run->args->q.t;
    cl_long off = elem_off(q) + c->b * q->strides[0] + c->h0 * q->strides[1] +
                  c->r0 * q->strides[2];
    if (!p->copy_q) {
        *m = (gemm_mat){q->buffer, (size_t)off, (size_t)q->strides[2], (size_t)q->strides[1]};
        return CLATTN_SUCCESS;
    }
    *m = (gemm_mat){run->ws, p->at_q, (size_t)p->dim, (size_t)(c->rows * p->dim)};
    const pack_job job = {(cl_long)p->at_q, c->heads, c->rows, p->dim, p->attn.q_scale, NULL, 0};
    return pack(run, q, off, q->strides[1], q->strides[2], &job);
}

/* The k or v operand (t, row length dim) for `count` keys from `first` of the kv heads that
   chunk c reads: in place, or packed into scratch when `copy`; v is masked by the chunk and
   checked for NaN and Inf either way. */
static clattn_status kv_operand(unfused_run *run, const chunk *c, const clattn_tensor *t,
                                int64_t dim, int copy, int64_t first, int64_t count, gemm_mat *m)
{
    const unfused_plan *p = &run->plan;
    const int64_t kv0 = c->h0 / p->group, kv_end = (c->h0 + c->heads - 1) / p->group + 1;
    cl_long off = elem_off(t) + c->b * t->strides[0] + kv0 * t->strides[1] + first * t->strides[2];
    const int is_v = t == run->args->v.t;
    const pack_job job = {copy ? (cl_long)p->at_kv : -1, kv_end - kv0, count, dim, 1.0f,
                          is_v ? c : NULL, first};
    if (copy)
        *m = (gemm_mat){run->ws, p->at_kv, (size_t)dim, (size_t)(count * dim)};
    else
        *m = (gemm_mat){t->buffer, (size_t)off, (size_t)t->strides[2], (size_t)t->strides[1]};
    return copy || is_v ? pack(run, t, off, t->strides[1], t->strides[2], &job) : CLATTN_SUCCESS;
}

static clattn_status clblast_fail(CLBlastStatusCode code)
{
    if (code < 0 && code > -1000) /* an OpenCL error code */
        return clattn_fail_cl((cl_int)code, "CLBlastSgemmStridedBatched");
    return clattn_fail(CLATTN_ERROR_OPENCL, "CLBlastSgemmStridedBatched failed: CLBlast status %d",
                       (int)code);
}

/* C = alpha A op(B) + beta C for `batch` heads: A m x k, op(B) k x n (B^T when transpose_b). */
static clattn_status sgemm(unfused_run *run, int transpose_b, size_t m, size_t n, size_t k,
                           float alpha, gemm_mat a, gemm_mat b, float beta, gemm_mat c,
                           size_t batch)
{
    cl_command_queue queue = clattn_command_queue(run->ctx);
    pthread_mutex_lock(&clblast_lock);
    CLBlastStatusCode code = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeNo,
        transpose_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha,
        a.buf, a.off, a.ld, a.hs, b.buf, b.off, b.ld, b.hs, beta, c.buf, c.off, c.ld, c.hs,
        batch, &queue, NULL);
    pthread_mutex_unlock(&clblast_lock);
    return code == CLBlastSuccess ? CLATTN_SUCCESS : clblast_fail(code);
}

/* Leading dimension under which the m-row matrices of successive heads of x stack into one
   matrix (rows >= width long), or 0 when they do not. */
static size_t stacked_ld(gemm_mat x, size_t m, size_t width)
{
    if (m == 1 && x.hs >= width)
        return x.hs;
    return x.hs == m * x.ld ? x.ld : 0;
}

/* The GEMM of every head of chunk c: a and out are indexed by query head, b by kv head. With
   groups, the heads of a group share b: their rows are stacked into one matrix when the
   layout allows (m = heads of the group x rows; far faster than a batch of small m, e.g. in
   decode), else one batched call per kv head with b's stride 0. */
static clattn_status gemm_heads(unfused_run *run, const chunk *c, int transpose_b, size_t m,
                                size_t n, size_t k, float alpha, gemm_mat a, gemm_mat b,
                                float beta, gemm_mat out)
{
    const int64_t group = run->plan.group, kv0 = c->h0 / group, end = c->h0 + c->heads;
    if (group == 1)
        return sgemm(run, transpose_b, m, n, k, alpha, a, b, beta, out, (size_t)c->heads);
    const size_t lda = stacked_ld(a, m, k), ldo = stacked_ld(out, m, n), g = (size_t)group;
    if (lda && ldo && c->h0 % group == 0 && c->heads % group == 0) /* whole groups */
        return sgemm(run, transpose_b, g * m, n, k, alpha, (gemm_mat){a.buf, a.off, lda, g * a.hs},
                     b, beta, (gemm_mat){out.buf, out.off, ldo, g * out.hs},
                     (size_t)(c->heads / group));
    const size_t rows = (size_t)c->heads * m;
    if (lda && ldo && (end - 1) / group == kv0) /* part of one group (CLBlast wants C's batch
                                                   stride past C even for one matrix) */
        return sgemm(run, transpose_b, rows, n, k, alpha, (gemm_mat){a.buf, a.off, lda, rows * lda},
                     b, beta, (gemm_mat){out.buf, out.off, ldo, rows * ldo}, 1);
    clattn_status s = CLATTN_SUCCESS;
    for (int64_t h = c->h0; h < end && s == CLATTN_SUCCESS;) {
        const int64_t kv = h / group, stop = min64((kv + 1) * group, end);
        gemm_mat ah = a, bh = b, oh = out;
        ah.off += (size_t)(h - c->h0) * a.hs;
        bh.off += (size_t)(kv - kv0) * b.hs;
        bh.hs = 0;
        oh.off += (size_t)(h - c->h0) * out.hs;
        s = sgemm(run, transpose_b, m, n, k, alpha, ah, bh, beta, oh, (size_t)(stop - h));
        h = stop;
    }
    return s;
}

/* S = alpha Q K^T over the chunk's keys, a block of keys at a time when k is packed. */
static clattn_status scores(unfused_run *run, const chunk *c)
{
    const unfused_plan *p = &run->plan;
    const size_t keys = (size_t)c->keys;
    gemm_mat qm, km;
    clattn_status s = q_operand(run, c, &qm);
    const int64_t step = p->copy_k ? p->key_block : c->keys;
    for (int64_t c0 = 0; c0 < c->keys && s == CLATTN_SUCCESS; c0 += step) {
        const int64_t n = min64(step, c->keys - c0);
        s = kv_operand(run, c, run->args->k.t, p->dim, p->copy_k, c->k0 + c0, n, &km);
        const gemm_mat sm = {run->ws, p->at_s + (size_t)c0, keys, (size_t)c->rows * keys};
        if (s == CLATTN_SUCCESS)
            s = gemm_heads(run, c, 1, (size_t)c->rows, (size_t)n, (size_t)p->dim,
                           p->attn.score_scale, qm, km, 0.0f, sm);
    }
    return s;
}

/* O = P V over the chunk's keys, accumulating over key blocks when v is packed; the flag of
   unfused_repair is cleared first and set by v's packing or check. */
static clattn_status weighted_values(unfused_run *run, const chunk *c)
{
    const unfused_plan *p = &run->plan;
    const size_t keys = (size_t)c->keys, dv = (size_t)p->dim_v;
    const gemm_mat om = {run->ws, p->at_o, dv, (size_t)c->rows * dv};
    gemm_mat vm;
    const cl_int zero = 0;
    cl_int err = clEnqueueFillBuffer(clattn_command_queue(run->ctx), run->ws, &zero,
                                     sizeof zero, p->at_flag * sizeof(float), sizeof zero, 0,
                                     NULL, NULL);
    clattn_status s = err == CL_SUCCESS ? CLATTN_SUCCESS
                                        : clattn_fail_cl(err, "clEnqueueFillBuffer(unfused flag)");
    const int64_t step = p->copy_v ? p->key_block : c->keys;
    for (int64_t c0 = 0; c0 < c->keys && s == CLATTN_SUCCESS; c0 += step) {
        const int64_t n = min64(step, c->keys - c0);
        s = kv_operand(run, c, run->args->v.t, p->dim_v, p->copy_v, c->k0 + c0, n, &vm);
        const gemm_mat pm = {run->ws, p->at_s + (size_t)c0, keys, (size_t)c->rows * keys};
        if (s == CLATTN_SUCCESS)
            s = gemm_heads(run, c, 0, (size_t)c->rows, dv, (size_t)n, 1.0f, pm, vm,
                           c0 == 0 ? 0.0f : 1.0f, om);
    }
    return s;
}

/* The parameters of the chunk kernels (softmax, store, repair) for chunk c. */
static clattn_chunk_params chunk_params(const unfused_run *run, const chunk *c)
{
    const unfused_plan *p = &run->plan;
    const clattn_forward_args *a = run->args;
    clattn_chunk_params params;
    memset(&params, 0, sizeof params);
    params.v = clattn_view_params_of(a->v.t, 0);
    params.out = clattn_view_params_of(a->out.t, 0);
    params.lse = clattn_view_params_of(a->lse.t, 0);
    params.bias = clattn_view_params_of(a->bias.t, 1);
    params.sinks = clattn_view_params_of(a->sinks.t, 0);
    params.attn = p->attn;
    params.batch = c->b;
    params.scores_at = (clattn_i64)p->at_s;
    params.sums_at = (clattn_i64)p->at_l;
    params.values_at = (clattn_i64)p->at_o;
    params.flag_at = (clattn_i64)p->at_flag;
    params.h0 = (clattn_i32)c->h0;
    params.r0 = (clattn_i32)c->r0;
    params.rows = (clattn_i32)c->rows;
    params.k0 = (clattn_i32)c->k0;
    params.keys = (clattn_i32)c->keys;
    return params;
}

/* Softcap, bias, mask and exp2 in place on the chunk's scores; row sums and lse. */
static clattn_status softmax(unfused_run *run, const chunk *c)
{
    const clattn_forward_args *a = run->args;
    const clattn_chunk_params params = chunk_params(run, c);
    const cl_mem buffers[] = {run->ws, a->lse.t ? a->lse.t->buffer : NULL,
                              a->bias.t ? a->bias.t->buffer : NULL, a->desc->seqlens_q,
                              a->desc->seqlens_k, a->sinks.t ? a->sinks.t->buffer : NULL};
    const size_t wg = run->softmax_wg, n = (size_t)(c->heads * c->rows);
    const size_t global[3] = {n * (wg ? wg : 1), 1, 1};
    return launch(run, wg ? "unfused_softmax" : "unfused_softmax_rows", buffers, 6, &params,
                  sizeof params, global, wg);
}

/* out = O / row sum in out's dtype and view. */
static clattn_status store(unfused_run *run, const chunk *c)
{
    const clattn_chunk_params params = chunk_params(run, c);
    const cl_mem buffers[] = {run->ws, run->args->out.t->buffer};
    const size_t global[3] = {(size_t)run->plan.dim_v, (size_t)c->rows, (size_t)c->heads};
    return launch(run, "unfused_store", buffers, 2, &params, sizeof params, global, 0);
}

/* Redo out of the chunk's rows without the GEMM when its flag is set (see unfused_repair). */
static clattn_status repair(unfused_run *run, const chunk *c)
{
    const clattn_forward_args *a = run->args;
    const clattn_chunk_params params = chunk_params(run, c);
    const cl_mem buffers[] = {run->ws, a->v.t->buffer, a->out.t->buffer, a->desc->seqlens_q,
                              a->desc->seqlens_k};
    const size_t global[3] = {(size_t)run->plan.dim_v, (size_t)c->rows, (size_t)c->heads};
    return launch(run, "unfused_repair", buffers, 5, &params, sizeof params, global, 0);
}

/* Keys that rows [r0, r1) may see in any batch: [*first, *first + *count): the first key the
   first row sees at the smallest alignment offset to the last key the last row sees at the
   largest (semantics.h). */
static void chunk_keys(const unfused_plan *p, int64_t r0, int64_t r1, int64_t *first,
                       int64_t *count)
{
    const clattn_mask lowest = {p->seq_q, p->seq_k, p->off_min, p->window_left, p->window_right,
                                p->causal};
    clattn_mask highest = lowest;
    highest.off = p->off_max;
    const int64_t lo = clattn_visible_lo(&lowest, r0), hi = clattn_visible_hi(&highest, r1 - 1);
    *first = lo;
    *count = hi >= lo ? hi - lo + 1 : 0;
}

/* Every command of one chunk; scratch is reused by the next (the queue is in order). */
static clattn_status run_chunk(unfused_run *run, chunk *c)
{
    chunk_keys(&run->plan, c->r0, c->r0 + c->rows, &c->k0, &c->keys);
    clattn_status s = CLATTN_SUCCESS;
    if (c->keys > 0)
        s = scores(run, c);
    if (s == CLATTN_SUCCESS)
        s = softmax(run, c);
    if (s == CLATTN_SUCCESS && c->keys > 0)
        s = weighted_values(run, c);
    if (s == CLATTN_SUCCESS)
        s = store(run, c);
    if (s == CLATTN_SUCCESS && c->keys > 0)
        s = repair(run, c);
    return s;
}

static clattn_status run_chunks(unfused_run *run)
{
    const unfused_plan *p = &run->plan;
    clattn_status s = CLATTN_SUCCESS;
    for (int64_t b = 0; b < p->batch && s == CLATTN_SUCCESS; b++)
        for (int64_t h0 = 0; h0 < p->heads_q && s == CLATTN_SUCCESS; h0 += p->heads)
            for (int64_t r0 = 0; r0 < p->seq_q && s == CLATTN_SUCCESS; r0 += p->rows) {
                chunk c = {b, h0, min64(p->heads, p->heads_q - h0), r0,
                           min64(p->rows, p->seq_q - r0), 0, 0};
                s = run_chunk(run, &c);
            }
    return s;
}

/* The plan and kernel options of the call. */
static void run_init(unfused_run *run, clattn_context *ctx, const clattn_forward_args *args,
                     cl_mem scratch)
{
    const clattn_attention_desc *d = args->desc;
    memset(run, 0, sizeof *run);
    run->ctx = ctx;
    run->args = args;
    run->ws = scratch;
    plan_chunks(args, &run->plan);
    const clattn_storage storage = {args->q.t->dtype, args->out.t->dtype,
                                    d->bias ? d->bias->dtype : CLATTN_F32, CLATTN_F32};
    clattn_storage_build_options(&storage, run->options, sizeof run->options);
    run->check.kind = CLATTN_CHECK_UNFUSED;
    run->check.storage = storage;
}

clattn_status clattn_unfused_forward(clattn_context *ctx, const clattn_forward_args *args,
                                     cl_mem scratch, cl_event *event)
{
    if (event)
        *event = NULL;
    unfused_run run;
    run_init(&run, ctx, args, scratch);
    const unfused_plan *p = &run.plan;
    clattn_log(CLATTN_LOG_DEBUG, "unfused: heads=%lld rows=%lld keys_max=%lld key_block=%lld "
               "pack q=%d k=%d v=%d scratch=%llu", (long long)p->heads, (long long)p->rows,
               (long long)p->keys_max, (long long)p->key_block, p->copy_q, p->copy_k, p->copy_v,
               (unsigned long long)p->bytes);
    clattn_status s = softmax_group_size(&run);
    if (s == CLATTN_SUCCESS && args->num_wait > 0) {
        /* CLBlast takes no wait list: later commands wait behind this barrier */
        cl_int err = clEnqueueBarrierWithWaitList(clattn_command_queue(ctx), args->num_wait,
                                                  args->wait_list, NULL);
        if (err != CL_SUCCESS)
            s = clattn_fail_cl(err, "clEnqueueBarrierWithWaitList");
    }
    if (s == CLATTN_SUCCESS)
        s = run_chunks(&run);
    if (s == CLATTN_SUCCESS && event) {
        cl_int err = clEnqueueMarkerWithWaitList(clattn_command_queue(ctx), 0, NULL, event);
        if (err != CL_SUCCESS)
            s = clattn_fail_cl(err, "clEnqueueMarkerWithWaitList");
    }
    return s;
}

#else /* !CLATTN_HAVE_CLBLAST */

int clattn_unfused_available(void)
{
    return 0;
}

clattn_status clattn_unfused_forward(clattn_context *ctx, const clattn_forward_args *args,
                                     cl_mem scratch, cl_event *event)
{
    (void)ctx;
    (void)args;
    (void)scratch;
    if (event)
        *event = NULL;
    return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "the unfused path: built without CLBlast");
}

#endif
