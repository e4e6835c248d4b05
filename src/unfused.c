/* The unfused forward: S = Q K^T and O = P V through CLBlast around the masked softmax and the
   store kernels of cl/unfused.cl, one chunk (batch, block of query heads, block of query rows)
   at a time so that scratch stays under a bound at any sequence length.

   Chunking (plan_chunks, a pure function of the validated arguments):
   - A chunk's keys are the interval every row of it may see in any batch (chunk_keys): from the
     dims, the mask and the range of the alignment offset that seqlens allow. Its scores are a
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

#include "dropout.h"
#include "fault.h"
#include "kernel_args.h"
#include "launch.h"
#include "log.h"
#include "plan.h"
#include "program.h"
#include "status.h"

/* Tests may lower the bound to force chunking at small sizes. */
#ifdef CLATTN_UNFUSED_TEST_SCRATCH_BYTES
#define SCRATCH_BOUND ((uint64_t)CLATTN_UNFUSED_TEST_SCRATCH_BYTES)
#else
#define SCRATCH_BOUND ((uint64_t)CLATTN_UNFUSED_SCRATCH_BYTES)
#endif

#define REGION_ALIGN 64               /* floats: each scratch region starts at 256 bytes */
#define SIZE_CAP ((uint64_t)1 << 60)  /* saturation of size arithmetic */
#define WINDOW_CAP ((int64_t)1 << 33) /* windows this wide see as much as unbounded ones */
#define LOG2E 1.4426950408889634

/* How a call is cut into chunks and where each piece of scratch lives. */
typedef struct unfused_plan {
    int64_t batch, heads_q, heads_kv, group, seq_q, seq_k, dim, dim_v;
    int     causal, bottom_right;
    int64_t window_left, window_right;  /* clamped to WINDOW_CAP; -1: unbounded */
    int64_t off_min, off_max;           /* alignment offset over every possible batch */
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
    memset(p, 0, sizeof *p);
    p->batch = q->dims[0];
    p->heads_q = q->dims[1];
    p->heads_kv = k->dims[1];
    p->group = p->heads_q / p->heads_kv;
    p->seq_q = q->dims[2];
    p->seq_k = k->dims[2];
    p->dim = q->dims[3];
    p->dim_v = v->dims[3];
    p->causal = d->causal;
    p->bottom_right = d->align == CLATTN_ALIGN_BOTTOM_RIGHT;
    p->window_left = min64(d->window_left, WINDOW_CAP);
    p->window_right = min64(d->window_right, WINDOW_CAP);
    if (p->bottom_right) {
        /* off = sk_b - sq_b with sk_b, sq_b anywhere in [0, dim] when seqlens are given */
        p->off_min = (d->seqlens_k ? 0 : p->seq_k) - p->seq_q;
        p->off_max = p->seq_k - (d->seqlens_q ? 0 : p->seq_q);
    }
    p->copy_q = !gemm_ready(q, p->dim);
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

static const char *const unfused_files[] = {"launch.h", "common.cl", "unfused.cl", NULL};

/* CLBlast 1.5.3 races on its caches: one process-wide lock around every call into it. */
static pthread_mutex_t clblast_lock = PTHREAD_MUTEX_INITIALIZER;

/* One call in flight. */
typedef struct unfused_run {
    clattn_context *ctx;
    const clattn_forward_args *args;
    unfused_plan plan;
    cl_mem  ws;               /* scratch: the caller's workspace or our own buffer */
    char    options[160];     /* storage -D options of every kernel of the call */
    size_t  softmax_wg;       /* power of two <= SOFTMAX_WG; 0: unfused_softmax_rows */
    cl_float alpha;           /* GEMM scale of S: scale * log2(e), or scale / softcap */
    cl_float cap_mult;        /* softcap * log2(e), or 0 */
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

/* A kernel argument: its size and a pointer to its value. */
typedef struct karg {
    size_t size;
    const void *value;
} karg;

int clattn_unfused_available(void)
{
    return 1;
}

static cl_long elem_off(const clattn_tensor *t)
{
    return (cl_long)(t->offset / clattn_dtype_size(t->dtype));
}

/* Set the arguments of kernel `name` and enqueue it, holding ctx->lock throughout. */
static clattn_status launch(unfused_run *run, const char *name, const karg *args, cl_uint nargs,
                            const size_t global[3], const size_t *local)
{
    clattn_context *ctx = run->ctx;
    cl_kernel kernel = NULL;
    pthread_mutex_lock(&ctx->lock);
    clattn_status s = clattn_program_kernel(ctx, unfused_files, run->options, name, &kernel);
    cl_int err = CL_SUCCESS;
    for (cl_uint i = 0; s == CLATTN_SUCCESS && err == CL_SUCCESS && i < nargs; i++)
        err = clSetKernelArg(kernel, i, args[i].size, args[i].value);
    if (s == CLATTN_SUCCESS && err != CL_SUCCESS)
        s = clattn_fail_cl(err, name);
    if (s == CLATTN_SUCCESS) {
        err = clEnqueueNDRangeKernel(ctx->queue, kernel, 3, NULL, global, local, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            s = clattn_fail_cl(err, name);
    }
    pthread_mutex_unlock(&ctx->lock);
    return s;
}

/* Work-group of unfused_softmax: the largest power of two <= SOFTMAX_WG that the kernel can
   run with; 0 on CPUs, which run unfused_softmax_rows (a row per work-item, no barriers: PoCL
   runs barriers and many small work-groups far slower). */
static clattn_status softmax_group_size(unfused_run *run)
{
    clattn_context *ctx = run->ctx;
    run->softmax_wg = 0;
    if (ctx->probe.device_class == CLATTN_DEVICE_CLASS_CPU)
        return CLATTN_SUCCESS;
    cl_kernel kernel = NULL;
    size_t limit = 0;
    pthread_mutex_lock(&ctx->lock);
    clattn_status s = clattn_program_kernel(ctx, unfused_files, run->options, "unfused_softmax",
                                            &kernel);
    cl_int err = CL_SUCCESS;
    if (s == CLATTN_SUCCESS)
        err = clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                       sizeof limit, &limit, NULL);
    pthread_mutex_unlock(&ctx->lock);
    if (s == CLATTN_SUCCESS && err != CL_SUCCESS)
        s = clattn_fail_cl(err, "clGetKernelWorkGroupInfo(unfused_softmax)");
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
    /* a v used in place is checked at every key of the GEMM: none is zeroed there */
    const int masked = c != NULL && job->dst_off >= 0;
    cl_int ints[] = {(cl_int)job->rows, (cl_int)job->dim, masked, (cl_int)job->key_first,
                     c ? (cl_int)c->r0 : 0, c ? (cl_int)(c->r0 + c->rows) : 0, (cl_int)p->seq_q,
                     (cl_int)p->seq_k, p->causal, p->bottom_right};
    cl_long b = c ? c->b : 0, wl = p->window_left, wr = p->window_right;
    cl_long dst_off = job->dst_off < 0 ? 0 : job->dst_off, flag_off = (cl_long)p->at_flag;
    cl_mem dst = job->dst_off < 0 ? NULL : run->ws, flag = c ? run->ws : NULL;
    const karg args[] = {
        {sizeof(cl_mem), &src->buffer}, {8, &src_off}, {8, &hs}, {8, &rs},
        {sizeof(cl_mem), &dst}, {8, &dst_off}, {4, &ints[0]}, {4, &ints[1]},
        {4, &ints[2]}, {4, &ints[3]}, {sizeof(cl_mem), &d->seqlens_q},
        {sizeof(cl_mem), &d->seqlens_k}, {8, &b}, {4, &ints[4]}, {4, &ints[5]}, {4, &ints[6]},
        {4, &ints[7]}, {4, &ints[8]}, {4, &ints[9]}, {8, &wl}, {8, &wr},
        {sizeof(cl_mem), &flag}, {8, &flag_off},
    };
    const size_t global[3] = {(size_t)((job->dim + PACK_COLS - 1) / PACK_COLS), (size_t)job->rows,
                              (size_t)job->heads};
    return launch(run, "unfused_pack", args, (cl_uint)(sizeof args / sizeof args[0]), global,
                  NULL);
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
    const pack_job job = {(cl_long)p->at_q, c->heads, c->rows, p->dim, NULL, 0};
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
    const pack_job job = {copy ? (cl_long)p->at_kv : -1, kv_end - kv0, count, dim,
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
    cl_command_queue queue = run->ctx->queue;
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
            s = gemm_heads(run, c, 1, (size_t)c->rows, (size_t)n, (size_t)p->dim, run->alpha,
                           qm, km, 0.0f, sm);
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
    cl_int err = clEnqueueFillBuffer(run->ctx->queue, run->ws, &zero, sizeof zero,
                                     p->at_flag * sizeof(float), sizeof zero, 0, NULL, NULL);
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

/* Bias view arguments: element offset and batch, head, row strides (0 where a dim is 1). */
static void bias_args(const clattn_tensor *bias, cl_mem *buf, cl_long v[4])
{
    memset(v, 0, 4 * sizeof v[0]);
    *buf = bias ? bias->buffer : NULL;
    if (!bias)
        return;
    v[0] = elem_off(bias);
    for (int i = 0; i < 3; i++)
        v[i + 1] = bias->dims[i] == 1 ? 0 : bias->strides[i];
}

/* Softcap, bias, mask and exp2 in place on the chunk's scores; row sums and lse. */
static clattn_status softmax(unfused_run *run, const chunk *c)
{
    const unfused_plan *p = &run->plan;
    const clattn_forward_args *a = run->args;
    const clattn_attention_desc *d = a->desc;
    const clattn_tensor *lse = a->lse.t;
    cl_long s_off = (cl_long)p->at_s, l_off = (cl_long)p->at_l, b = c->b;
    cl_long e[4] = {0, 0, 0, 0}, bv[4], wl = p->window_left, wr = p->window_right;
    cl_mem lse_buf = lse ? lse->buffer : NULL, bias_buf;
    if (lse) {
        e[0] = elem_off(lse);
        for (int i = 0; i < 3; i++)
            e[i + 1] = lse->strides[i];
    }
    bias_args(d->bias, &bias_buf, bv);
    cl_int ints[] = {(cl_int)c->keys, (cl_int)c->k0, (cl_int)c->h0, (cl_int)c->r0,
                     (cl_int)c->rows, (cl_int)p->seq_q, (cl_int)p->seq_k, p->causal,
                     p->bottom_right};
    cl_float bias_mult = (cl_float)LOG2E;
    const cl_int heads_q = (cl_int)p->heads_q;
    cl_uint drop[4];
    cl_float keep_scale;
    clattn_dropout_args(d, drop, &keep_scale);
    const karg args[] = {
        {sizeof(cl_mem), &run->ws}, {8, &s_off}, {4, &ints[0]}, {4, &ints[1]},
        {sizeof(cl_mem), &run->ws}, {8, &l_off},
        {sizeof(cl_mem), &lse_buf}, {8, &e[0]}, {8, &e[1]}, {8, &e[2]}, {8, &e[3]},
        {sizeof(cl_mem), &bias_buf}, {8, &bv[0]}, {8, &bv[1]}, {8, &bv[2]}, {8, &bv[3]},
        {sizeof(cl_mem), &d->seqlens_q}, {sizeof(cl_mem), &d->seqlens_k},
        {8, &b}, {4, &ints[2]}, {4, &ints[3]}, {4, &ints[4]},
        {4, &ints[5]}, {4, &ints[6]}, {4, &ints[7]}, {4, &ints[8]}, {8, &wl}, {8, &wr},
        {4, &run->cap_mult}, {4, &bias_mult},
        {4, &heads_q}, {4, &drop[0]}, {4, &drop[1]}, {4, &drop[2]}, {4, &drop[3]}, {4, &keep_scale},
    };
    const size_t wg = run->softmax_wg, n = (size_t)(c->heads * c->rows);
    const size_t global[3] = {n * (wg ? wg : 1), 1, 1}, local[3] = {wg, 1, 1};
    return launch(run, wg ? "unfused_softmax" : "unfused_softmax_rows", args,
                  (cl_uint)(sizeof args / sizeof args[0]), global, wg ? local : NULL);
}

/* out = O / row sum in out's dtype and view. */
static clattn_status store(unfused_run *run, const chunk *c)
{
    const unfused_plan *p = &run->plan;
    const clattn_tensor *out = run->args->out.t;
    cl_long o_off = (cl_long)p->at_o, l_off = (cl_long)p->at_l, b = c->b;
    cl_long view[4] = {elem_off(out), out->strides[0], out->strides[1], out->strides[2]};
    cl_int ints[] = {(cl_int)c->h0, (cl_int)c->r0, (cl_int)c->rows, (cl_int)p->dim_v};
    const karg args[] = {
        {sizeof(cl_mem), &run->ws}, {8, &o_off}, {sizeof(cl_mem), &run->ws}, {8, &l_off},
        {sizeof(cl_mem), &out->buffer}, {8, &view[0]}, {8, &view[1]}, {8, &view[2]},
        {8, &view[3]}, {8, &b}, {4, &ints[0]}, {4, &ints[1]}, {4, &ints[2]}, {4, &ints[3]},
    };
    const size_t global[3] = {(size_t)p->dim_v, (size_t)c->rows, (size_t)c->heads};
    return launch(run, "unfused_store", args, (cl_uint)(sizeof args / sizeof args[0]), global,
                  NULL);
}

/* Redo out of the chunk's rows without the GEMM when its flag is set (see unfused_repair). */
static clattn_status repair(unfused_run *run, const chunk *c)
{
    const unfused_plan *p = &run->plan;
    const clattn_forward_args *a = run->args;
    const clattn_tensor *v = a->v.t, *out = a->out.t;
    cl_long flag_off = (cl_long)p->at_flag, s_off = (cl_long)p->at_s, l_off = (cl_long)p->at_l;
    cl_long vv[4] = {elem_off(v), v->strides[0], v->strides[1], v->strides[2]};
    cl_long ov[4] = {elem_off(out), out->strides[0], out->strides[1], out->strides[2]};
    cl_long b = c->b, wl = p->window_left, wr = p->window_right;
    cl_int ints[] = {(cl_int)c->keys, (cl_int)c->k0, (cl_int)p->group, (cl_int)c->h0,
                     (cl_int)c->r0, (cl_int)c->rows, (cl_int)p->dim_v, (cl_int)p->seq_q,
                     (cl_int)p->seq_k, p->causal, p->bottom_right};
    const karg args[] = {
        {sizeof(cl_mem), &run->ws}, {8, &flag_off}, {sizeof(cl_mem), &run->ws}, {8, &s_off},
        {4, &ints[0]}, {4, &ints[1]}, {sizeof(cl_mem), &run->ws}, {8, &l_off},
        {sizeof(cl_mem), &v->buffer}, {8, &vv[0]}, {8, &vv[1]}, {8, &vv[2]}, {8, &vv[3]},
        {4, &ints[2]}, {sizeof(cl_mem), &out->buffer}, {8, &ov[0]}, {8, &ov[1]}, {8, &ov[2]},
        {8, &ov[3]}, {sizeof(cl_mem), &a->desc->seqlens_q}, {sizeof(cl_mem), &a->desc->seqlens_k},
        {8, &b}, {4, &ints[3]}, {4, &ints[4]}, {4, &ints[5]}, {4, &ints[6]}, {4, &ints[7]},
        {4, &ints[8]}, {4, &ints[9]}, {4, &ints[10]}, {8, &wl}, {8, &wr},
    };
    const size_t global[3] = {(size_t)p->dim_v, (size_t)c->rows, (size_t)c->heads};
    return launch(run, "unfused_repair", args, (cl_uint)(sizeof args / sizeof args[0]), global,
                  NULL);
}

/* Keys that rows [r0, r1) may see in any batch: [*first, *first + *count). */
static void chunk_keys(const unfused_plan *p, int64_t r0, int64_t r1, int64_t *first,
                       int64_t *count)
{
    int64_t lo = 0, hi = p->seq_k - 1;
    if (p->window_left >= 0)
        lo = max64(lo, r0 + p->off_min - p->window_left);
    if (p->causal)
        hi = min64(hi, r1 - 1 + p->off_max);
    if (p->window_right >= 0)
        hi = min64(hi, r1 - 1 + p->off_max + p->window_right);
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

/* Scale, softcap and kernel options of the call. */
static void run_init(unfused_run *run, clattn_context *ctx, const clattn_forward_args *args)
{
    const clattn_attention_desc *d = args->desc;
    memset(run, 0, sizeof *run);
    run->ctx = ctx;
    run->args = args;
    plan_chunks(args, &run->plan);
    const double scale = clattn_score_scale(d, run->plan.dim);
    run->alpha = (cl_float)(d->softcap > 0.0f ? scale / d->softcap : scale * LOG2E);
    run->cap_mult = (cl_float)(d->softcap > 0.0f ? d->softcap * LOG2E : 0.0);
    clattn_storage storage = {args->q.t->dtype, args->out.t->dtype,
                              d->bias ? d->bias->dtype : CLATTN_F32, CLATTN_F32};
    clattn_storage_build_options(&storage, run->options, sizeof run->options);
}

/* Use the caller's workspace, or make our own scratch buffer. */
static clattn_status scratch(unfused_run *run, cl_mem workspace, int *owned)
{
    const uint64_t need = run->plan.bytes;
    *owned = 0;
    if (workspace) {
        size_t size = 0;
        cl_int err = clGetMemObjectInfo(workspace, CL_MEM_SIZE, sizeof size, &size, NULL);
        if (err != CL_SUCCESS)
            return clattn_fail_cl(err, "clGetMemObjectInfo(workspace)");
        if (size < need)
            return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "workspace holds %zu bytes; the "
                               "unfused path needs %llu", size, (unsigned long long)need);
        run->ws = workspace;
        return CLATTN_SUCCESS;
    }
    if (need > run->ctx->probe.max_mem_alloc_size)
        return clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "the unfused path needs %llu bytes of "
                           "scratch; the device allocates at most %llu", (unsigned long long)need,
                           (unsigned long long)run->ctx->probe.max_mem_alloc_size);
    cl_int err = CL_SUCCESS;
    run->ws = clattn_create_buffer(run->ctx->cl_ctx, CL_MEM_READ_WRITE, (size_t)need, NULL,
                                   &err);
    if (!run->ws)
        return clattn_fail_cl(err, "clCreateBuffer(unfused scratch)");
    *owned = 1;
    return CLATTN_SUCCESS;
}

clattn_status clattn_unfused_forward(clattn_context *ctx, const clattn_forward_args *args,
                                     cl_mem workspace, cl_event *event)
{
    if (event)
        *event = NULL;
    unfused_run run;
    run_init(&run, ctx, args);
    const unfused_plan *p = &run.plan;
    clattn_log(CLATTN_LOG_DEBUG, "unfused: heads=%lld rows=%lld keys_max=%lld key_block=%lld "
               "pack q=%d k=%d v=%d scratch=%llu", (long long)p->heads, (long long)p->rows,
               (long long)p->keys_max, (long long)p->key_block, p->copy_q, p->copy_k, p->copy_v,
               (unsigned long long)p->bytes);
    int owned = 0;
    clattn_status s = scratch(&run, workspace, &owned);
    if (s == CLATTN_SUCCESS)
        s = softmax_group_size(&run);
    if (s == CLATTN_SUCCESS && args->num_wait > 0) {
        /* CLBlast takes no wait list: later commands wait behind this barrier */
        cl_int err = clEnqueueBarrierWithWaitList(ctx->queue, args->num_wait, args->wait_list, NULL);
        if (err != CL_SUCCESS)
            s = clattn_fail_cl(err, "clEnqueueBarrierWithWaitList");
    }
    if (s == CLATTN_SUCCESS)
        s = run_chunks(&run);
    if (s == CLATTN_SUCCESS && event) {
        cl_int err = clEnqueueMarkerWithWaitList(ctx->queue, 0, NULL, event);
        if (err != CL_SUCCESS)
            s = clattn_fail_cl(err, "clEnqueueMarkerWithWaitList");
    }
    /* safe right after the last enqueue: the runtime keeps it until those commands are done */
    if (owned)
        clReleaseMemObject(run.ws);
    return s;
}

#else /* !CLATTN_HAVE_CLBLAST */

int clattn_unfused_available(void)
{
    return 0;
}

clattn_status clattn_unfused_forward(clattn_context *ctx, const clattn_forward_args *args,
                                     cl_mem workspace, cl_event *event)
{
    (void)ctx;
    (void)args;
    (void)workspace;
    if (event)
        *event = NULL;
    return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "the unfused path: built without CLBlast");
}

#endif
