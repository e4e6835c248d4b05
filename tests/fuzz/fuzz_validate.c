/* Fuzz target for the argument checks of src/validate.c: clattn_check_desc,
   clattn_validate_forward (with outputs, and as the plan/workspace query without them),
   clattn_validate_backward and clattn_validate_merge, on descriptors, tensors and buffer
   facts decoded from arbitrary bytes (format: fuzz_validate.h). validate.c only compares cl_mem / cl_context handles and never
   dereferences them (nor the wait list), so the handles here are fake pointers and no OpenCL
   device is involved.

   Each call is checked against an independent model of the rules of include/clattn.h and
   docs/semantics.md ("Bad input"), computed in 128-bit arithmetic; abort() on any violation:
   - an accepted call breaks no rule: every view lies inside its buffer (offset + extent <=
     CL_MEM_SIZE), no output has two elements at one address, no output shares bytes with
     another view of the call (in root-buffer coordinates, across sub-buffers), shapes, dtypes,
     flags, contexts, seqlens and workspace sizes agree;
   - a rejected call breaks at least one rule (BUFFER_TOO_SMALL: a size rule), with a message
     that starts with the argument's name;
   - the status is SUCCESS, INVALID_ARGUMENT or BUFFER_TOO_SMALL, and a second call gives the
     same status and message (pure functions).
   Tolerated and reported (fz_result), not failed: an output whose strides the validator's
   sorted-stride test rejects although no two of its elements meet (.conservative), and an
   output that shares bytes with a seqlens buffer (.gap: validate.c refuses it as an alias, the
   model only notes it); in raw mode, aliasing verdicts on inconsistent buffer facts.

   Builds:
   - always: with the standalone driver fuzz_main.c as the `fuzz_validate` Meson test (the
     seed table and corpus tests/fuzz/corpus, then 40000 random mutations: a few seconds);
   - with libFuzzer, ASan and UBSan for long runs (README.md, "Fuzzing"):
       CC=clang meson setup build-fuzz -Dfuzzing=true && ninja -C build-fuzz
       mkdir -p fuzz-work
       ./build-fuzz/tests/fuzz/fuzz_validate_libfuzzer -max_total_time=600 -max_len=4096 \
           fuzz-work tests/fuzz/corpus
     New inputs go to the first folder (never give the checked-in corpus first); a failing
     input is written as crash-<sha1> in the current folder: `fuzz_validate -describe
     crash-<sha1>` prints the call it decodes to and replays it.
   Both builds mix byte-level mutations with structure-aware ones (fz_mutate_case: one dim
   value renamed in every tensor, strides made dense or zero, a buffer fitted to a view, views
   moved into each other's buffers, sub-buffers, flags), which reach deep states that byte
   flips rarely do. */
#include "fuzz_validate.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

/* ---------------------------------------------------------------------------------------- */
/* Format                                                                                    */
/* ---------------------------------------------------------------------------------------- */

typedef struct fz_io {
    const uint8_t *in;
    size_t         len, pos;
    uint8_t       *out; /* writing when set */
} fz_io;

static uint64_t io_n(fz_io *io, uint64_t v, int n)
{
    if (io->out) {
        for (int i = 0; i < n; i++)
            io->out[io->pos++] = (uint8_t)(v >> (8 * i));
        return v;
    }
    v = 0;
    for (int i = 0; i < n; i++, io->pos++)
        if (io->pos < io->len)
            v |= (uint64_t)io->in[io->pos] << (8 * i);
    return v;
}

static void io_u8(fz_io *io, uint8_t *p) { *p = (uint8_t)io_n(io, *p, 1); }
static void io_u32(fz_io *io, uint32_t *p) { *p = (uint32_t)io_n(io, *p, 4); }
static void io_u64(fz_io *io, uint64_t *p) { *p = io_n(io, *p, 8); }

static void io_i32(fz_io *io, int32_t *p)
{
    uint32_t u;
    memcpy(&u, p, 4);
    io_u32(io, &u);
    memcpy(p, &u, 4);
}

static void io_i64(fz_io *io, int64_t *p)
{
    uint64_t u;
    memcpy(&u, p, 8);
    io_u64(io, &u);
    memcpy(p, &u, 8);
}

static void io_f32(fz_io *io, float *p)
{
    uint32_t u;
    memcpy(&u, p, 4);
    io_u32(io, &u);
    memcpy(p, &u, 4);
}

static int fz_nbufs(const fz_case *c) { return c->nbufs % (FZ_MAX_BUFS + 1); }
static size_t fz_nparts(const fz_case *c) { return c->nparts % FZ_MAX_PARTS + 1u; }

static int fz_op(const fz_case *c) { return c->op % FZ_OPS; }

static size_t fz_ntensors(const fz_case *c)
{
    switch (fz_op(c)) {
    case FZ_FORWARD:
    case FZ_QUERY: return 7;
    case FZ_MERGE: return 2 + 2 * fz_nparts(c);
    case FZ_BACKWARD: return 11;
    }
    return 0;
}

static void io_case(fz_io *io, fz_case *c)
{
    io_u8(io, &c->op);
    io_u8(io, &c->raw);
    io_u8(io, &c->nbufs);
    for (int i = 0; i < fz_nbufs(c); i++) {
        fz_buf *b = &c->bufs[i];
        io_u8(io, &b->live);
        io_u8(io, &b->parent);
        io_u8(io, &b->foreign);
        io_u64(io, &b->flags);
        io_u64(io, &b->size);
        io_u64(io, &b->origin);
    }
    fz_desc *d = &c->desc;
    io_u8(io, &d->absent);
    io_u8(io, &d->size_given);
    if (d->size_given)
        io_u64(io, &d->size);
    io_f32(io, &d->scale);
    io_i32(io, &d->causal);
    io_i32(io, &d->align);
    io_i64(io, &d->window_left);
    io_i64(io, &d->window_right);
    io_f32(io, &d->softcap);
    io_f32(io, &d->dropout_p);
    io_u64(io, &d->dropout_seed);
    io_u64(io, &d->dropout_offset);
    io_i32(io, &d->algo);
    io_u8(io, &d->bias);
    io_u8(io, &d->seqlens_q);
    io_u8(io, &d->seqlens_k);
    io_u8(io, &d->workspace);
    io_u64(io, &d->workspace_size);
    io_i64(io, &d->q_start);
    io_i64(io, &d->k_start);
    io_i32(io, &d->accumulate);
    io_u8(io, &d->sinks);
    io_u32(io, &c->num_wait);
    io_u8(io, &c->wait_null);
    io_u8(io, &c->nparts);
    for (size_t i = 0; i < fz_ntensors(c); i++) {
        fz_tensor *t = &c->t[i];
        io_u8(io, &t->present);
        io_u8(io, &t->buf);
        io_i32(io, &t->dtype);
        io_u64(io, &t->offset);
        for (int j = 0; j < 4; j++)
            io_i64(io, &t->dims[j]);
        for (int j = 0; j < 4; j++)
            io_i64(io, &t->strides[j]);
    }
}

void fz_decode(const uint8_t *data, size_t size, fz_case *c)
{
    memset(c, 0, sizeof *c);
    fz_io io = {data, size, 0, NULL};
    io_case(&io, c);
}

size_t fz_encode(const fz_case *c, uint8_t *out)
{
    fz_case copy = *c;
    fz_io io = {NULL, 0, 0, out};
    io_case(&io, &copy);
    return io.pos;
}

/* ---------------------------------------------------------------------------------------- */
/* The fake runtime: handles and what clGetMemObjectInfo would say about them                */
/* ---------------------------------------------------------------------------------------- */

#define FAKE(T, v) ((T)(uintptr_t)(v))

typedef struct fz_world {
    cl_context      ctx, other;
    int             n;
    cl_mem          handle[FZ_MAX_BUFS];
    clattn_mem_info info[FZ_MAX_BUFS];
} fz_world;

static void build_world(const fz_case *c, fz_world *w)
{
    memset(w, 0, sizeof *w);
    w->ctx = FAKE(cl_context, 0xc0c0000);
    w->other = FAKE(cl_context, 0xf0f0000);
    w->n = fz_nbufs(c);
    for (int i = 0; i < w->n; i++)
        w->handle[i] = FAKE(cl_mem, 0x1000000 + 0x1000 * i);
    for (int i = 0; i < w->n; i++) {
        const fz_buf *b = &c->bufs[i];
        clattn_mem_info *m = &w->info[i];
        if (!b->live)
            continue; /* clattn_mem_info_of: all zero */
        m->live = 1;
        m->size = b->size;
        m->flags = b->flags;
        m->context = b->foreign ? w->other : w->ctx;
        m->root = w->handle[i];
        if (!b->parent)
            continue;
        int p = (b->parent - 1) % w->n;
        if (c->raw & 1) { /* as given: any root, any origin */
            m->root = w->handle[p];
            m->root_offset = b->origin;
        } else if (p < i && !c->bufs[p].parent) {
            /* clCreateSubBuffer: inside a root buffer, in its context */
            const fz_buf *pb = &c->bufs[p];
            m->size = b->size < pb->size ? b->size : pb->size;
            const uint64_t room = pb->size - m->size; /* origins 0 .. room */
            m->root_offset = room == UINT64_MAX ? b->origin : b->origin % (room + 1);
            m->context = pb->foreign ? w->other : w->ctx;
            m->root = w->handle[p];
        }
    }
}

static cl_mem handle_of(const fz_world *w, unsigned sel)
{
    sel &= 0xff;
    if (sel == FZ_UNKNOWN_BUF)
        return FAKE(cl_mem, 0xdead000);
    return sel == FZ_NULL_BUF || w->n == 0 ? NULL : w->handle[sel % (unsigned)w->n];
}

/* A handle of the descriptor: 0 NULL, FZ_UNKNOWN_BUF unknown, else buffer selector v - 1. */
static cl_mem desc_handle_of(const fz_world *w, uint8_t v)
{
    return v == 0 ? NULL : handle_of(w, v == FZ_UNKNOWN_BUF ? v : v - 1u);
}

static clattn_mem_info info_of(const fz_world *w, cl_mem mem)
{
    for (int i = 0; i < w->n; i++)
        if (mem && w->handle[i] == mem)
            return w->info[i];
    clattn_mem_info none;
    memset(&none, 0, sizeof none);
    return none;
}

/* clattn_view_of, against the fake runtime. */
static clattn_view view_of(const fz_world *w, const char *name, const clattn_tensor *t, int output)
{
    clattn_view v;
    memset(&v, 0, sizeof v);
    v.name = name;
    v.t = t;
    v.output = output;
    if (t)
        v.mem = info_of(w, t->buffer);
    return v;
}

/* ---------------------------------------------------------------------------------------- */
/* The model of the rules                                                                     */
/* ---------------------------------------------------------------------------------------- */

typedef struct verdict {
    int  invalid;  /* a rule whose status is INVALID_ARGUMENT is broken */
    int  small;    /* a view or buffer is too small (BUFFER_TOO_SMALL) */
    int  unsure;   /* an output too large to decide whether its elements overlap */
    char why[256]; /* the first broken rule */
    const clattn_view *disjoint[4]; /* outputs whose elements were all found apart */
    int  ndisjoint;
    char gap[256]; /* an output sharing bytes with a seqlens buffer */
} verdict;

static void breaks(verdict *vd, int small, const char *fmt, ...)
{
    if (small)
        vd->small = 1;
    else
        vd->invalid = 1;
    if (vd->why[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vd->why, sizeof vd->why, fmt, ap);
    va_end(ap);
}

static int element_bytes(clattn_dtype dtype)
{
    return dtype == CLATTN_F32 ? 4 : (dtype == CLATTN_F16 || dtype == CLATTN_BF16) ? 2 : 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* 1: two elements of t share an address; 0: none do; -1: too many elements to decide.
   Needs dims > 0, strides >= 0 and an extent that fits in int64. */
static int elements_overlap(const clattn_tensor *t)
{
    enum { LIMIT = 4096 };
    int64_t numel = 1;
    int small = 1;
    for (int i = 0; i < 4 && small; i++) {
        if (t->dims[i] > LIMIT / numel)
            small = 0;
        else
            numel *= t->dims[i];
    }
    if (small) { /* every element's offset, sorted */
        static int64_t at[LIMIT];
        int64_t n = 0;
        for (int64_t a = 0; a < t->dims[0]; a++)
            for (int64_t b = 0; b < t->dims[1]; b++)
                for (int64_t c = 0; c < t->dims[2]; c++)
                    for (int64_t d = 0; d < t->dims[3]; d++)
                        at[n++] = a * t->strides[0] + b * t->strides[1] + c * t->strides[2] + d;
        qsort(at, (size_t)n, sizeof at[0], cmp_i64);
        for (int64_t i = 1; i < n; i++)
            if (at[i] == at[i - 1])
                return 1;
        return 0;
    }
    /* index m of dim i meets index 1 of dim j when strides[j] == m * strides[i], m < dims[i] */
    for (int i = 0; i < 4; i++) {
        if (t->dims[i] < 2)
            continue;
        if (t->strides[i] == 0)
            return 1;
        for (int j = 0; j < 4; j++)
            if (j != i && t->dims[j] > 1 && t->strides[j] % t->strides[i] == 0 &&
                t->strides[j] / t->strides[i] < t->dims[i])
                return 1;
    }
    /* a proof of no overlap: with dims in increasing stride, each stride passes the farthest
       element of the smaller ones */
    int order[4], k = 0;
    for (int i = 0; i < 4; i++)
        if (t->dims[i] > 1)
            order[k++] = i;
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && t->strides[order[j]] < t->strides[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    u128 reach = 0;
    for (int i = 0; i < k; i++) {
        if ((u128)t->strides[order[i]] <= reach)
            return -1;
        reach += (u128)(t->dims[order[i]] - 1) * (u128)t->strides[order[i]];
    }
    return 0;
}

/* A view as the model sees it: ok when it breaks no rule of its own; then [lo, hi) are its
   bytes in its root buffer. */
typedef struct mview {
    const clattn_view *v;
    int                ok;
    u128               lo, hi;
} mview;

static mview model_view(verdict *vd, const clattn_view *v, cl_context ctx)
{
    mview m = {v, 0, 0, 0};
    const clattn_tensor *t = v->t;
    const char *name = v->name;
    if (!t) {
        breaks(vd, 0, "%s is NULL", name);
        return m;
    }
    int es = element_bytes(t->dtype), bad = 0;
    if (!es)
        bad = 1, breaks(vd, 0, "%s: dtype %d", name, (int)t->dtype);
    for (int i = 0; i < 4; i++) {
        if (t->dims[i] <= 0)
            bad = 1, breaks(vd, 0, "%s: dims[%d] <= 0", name, i);
        if (t->strides[i] < 0)
            bad = 1, breaks(vd, 0, "%s: strides[%d] < 0", name, i);
    }
    if (t->strides[3] != 1)
        bad = 1, breaks(vd, 0, "%s: strides[3] != 1", name);
    if (es && t->offset % (unsigned)es)
        bad = 1, breaks(vd, 0, "%s: misaligned offset", name);
    if (bad)
        return m;
    u128 span = 1; /* < 2^128: four products below 2^126 */
    for (int i = 0; i < 4; i++)
        span += (u128)(t->dims[i] - 1) * (u128)t->strides[i];
    if (span > INT64_MAX || span * (unsigned)es > INT64_MAX) {
        breaks(vd, 0, "%s: extent beyond int64", name);
        return m;
    }
    const u128 bytes = span * (unsigned)es;
    if (!t->buffer)
        bad = 1, breaks(vd, 0, "%s: NULL buffer", name);
    else if (!v->mem.live)
        bad = 1, breaks(vd, 0, "%s: dead buffer", name);
    else if (v->mem.context != ctx)
        bad = 1, breaks(vd, 0, "%s: foreign buffer", name);
    else if (v->output && (v->mem.flags & CL_MEM_READ_ONLY))
        bad = 1, breaks(vd, 0, "%s: output in a read-only buffer", name);
    else if (!v->output && (v->mem.flags & CL_MEM_WRITE_ONLY))
        bad = 1, breaks(vd, 0, "%s: input in a write-only buffer", name);
    if (bad)
        return m;
    if ((u128)t->offset + bytes > (u128)v->mem.size) {
        breaks(vd, 1, "%s: %zu + %llu bytes past a buffer of %zu", name, t->offset,
               (unsigned long long)bytes, v->mem.size);
        return m;
    }
    if (v->output) {
        int o = elements_overlap(t);
        if (o == 1) {
            breaks(vd, 0, "%s: output elements overlap", name);
            return m;
        }
        if (o < 0)
            vd->unsure = 1;
        else if (vd->ndisjoint < 4)
            vd->disjoint[vd->ndisjoint++] = v;
    }
    m.ok = 1;
    m.lo = (u128)v->mem.root_offset + t->offset;
    m.hi = m.lo + bytes;
    return m;
}

/* Outputs share no byte with any other view (model mode: real roots and origins). */
static void model_aliasing(verdict *vd, const mview *views, size_t n)
{
    for (size_t a = 0; a < n; a++)
        for (size_t b = a + 1; b < n; b++) {
            const mview *x = &views[a], *y = &views[b];
            if (!x->ok || !y->ok || (!x->v->output && !y->v->output) ||
                x->v->mem.root != y->v->mem.root)
                continue;
            if (x->lo < y->hi && y->lo < x->hi)
                breaks(vd, 0, "%s and %s share bytes", x->v->name, y->v->name);
        }
}

/* desc->workspace (workspace_size bytes, in whole f32 words) is written: a view or a seqlens
   buffer sharing its bytes breaks a rule. An output that shares bytes with desc->seqlens_q/k
   (int32[batch] from the buffer's start), which the kernels read while they write it, is
   noted in vd->gap, not counted as a broken rule. */
static void model_desc_buffer_aliasing(verdict *vd, const clattn_forward_args *a,
                                       const mview *views, size_t n)
{
    const clattn_attention_desc *d = a->desc;
    if (!d || !a->q.t || a->q.t->dims[0] <= 0)
        return;
    const u128 rows = 4 * (u128)a->q.t->dims[0];
    const struct {
        const char *name;
        cl_mem handle;
        const clattn_mem_info *info;
        u128 bytes;
    } bufs[3] = {{"desc->seqlens_q", d->seqlens_q, &a->seqlens_q, rows},
                 {"desc->seqlens_k", d->seqlens_k, &a->seqlens_k, rows},
                 /* whole f32 words: the kernels use it as floats, validate.c's view too */
                 {"desc->workspace", d->workspace, &a->workspace,
                  ((u128)d->workspace_size + 3) / 4 * 4}};
    /* the workspace is written while the seqlens are read: they may not share bytes */
    const u128 ws_lo = bufs[2].info->root_offset, ws_hi = ws_lo + bufs[2].bytes;
    for (int b = 0; b < 2 && bufs[2].handle && bufs[2].info->live && bufs[2].bytes; b++) {
        const u128 lo = bufs[b].info->root_offset, hi = lo + bufs[b].bytes;
        if (bufs[b].handle && bufs[b].info->live && bufs[b].info->root == bufs[2].info->root &&
            lo < ws_hi && ws_lo < hi)
            breaks(vd, 0, "desc->workspace shares bytes with %s", bufs[b].name);
    }
    for (int b = 0; b < 3; b++) {
        if (!bufs[b].handle || !bufs[b].info->live || bufs[b].bytes == 0)
            continue;
        const u128 lo = bufs[b].info->root_offset, hi = lo + bufs[b].bytes;
        for (size_t i = 0; i < n; i++) {
            const mview *m = &views[i];
            if (!m->ok || m->v->mem.root != bufs[b].info->root || m->hi <= lo || hi <= m->lo)
                continue;
            if (b == 2)   /* the workspace is written: no view may share its bytes */
                breaks(vd, 0, "%s shares bytes with desc->workspace", m->v->name);
            else if (m->v->output && !vd->gap[0])
                snprintf(vd->gap, sizeof vd->gap, "%s shares bytes with %s", m->v->name,
                         bufs[b].name);
        }
    }
}

static void model_desc(verdict *vd, const clattn_attention_desc *d)
{
    if (!d) {
        breaks(vd, 0, "desc is NULL");
        return;
    }
    if (d->struct_size != sizeof *d)
        breaks(vd, 0, "desc->struct_size");
    if (isnan(d->scale) || isinf(d->scale))
        breaks(vd, 0, "desc->scale not finite");
    if (d->causal != 0 && d->causal != 1)
        breaks(vd, 0, "desc->causal");
    if ((int)d->align != 0 && (int)d->align != 1)
        breaks(vd, 0, "desc->align");
    if (d->window_left < -1 || d->window_right < -1)
        breaks(vd, 0, "desc->window");
    if (isnan(d->softcap) || isinf(d->softcap) || d->softcap < 0)
        breaks(vd, 0, "desc->softcap");
    if (isnan(d->dropout_p) || d->dropout_p < 0 || d->dropout_p >= 1)
        breaks(vd, 0, "desc->dropout_p");
    if ((int)d->algo < 0 || (int)d->algo > 3)
        breaks(vd, 0, "desc->algo");
    if (d->q_start < 0 || d->q_start > ((int64_t)1 << 40))
        breaks(vd, 0, "desc->q_start");
    if (d->k_start < 0 || d->k_start > ((int64_t)1 << 40))
        breaks(vd, 0, "desc->k_start");
    if (d->accumulate != 0 && d->accumulate != 1)
        breaks(vd, 0, "desc->accumulate");
}

static int64_t dim(const clattn_view *v, int i) { return v->t->dims[i]; }

static void want_dim(verdict *vd, const clattn_view *v, int i, int64_t want)
{
    if (v->t && dim(v, i) != want)
        breaks(vd, 0, "%s.dims[%d]=%lld, want %lld", v->name, i, (long long)dim(v, i),
               (long long)want);
}

/* A plain buffer argument: seqlens (read by kernels, int32[batch]) or the workspace. */
static void model_buffer(verdict *vd, const char *name, cl_mem mem, const clattn_mem_info *info,
                         cl_context ctx, cl_mem_flags forbidden, u128 need)
{
    if (!mem)
        return;
    if (!info->live)
        breaks(vd, 0, "%s dead", name);
    else if (info->context != ctx)
        breaks(vd, 0, "%s foreign", name);
    else if (info->flags & forbidden)
        breaks(vd, 0, "%s flags", name);
    else if ((u128)info->size < need)
        breaks(vd, 1, "%s holds %zu bytes < %.17g needed", name, info->size, (double)need);
}

/* sinks of a forward or backward call (desc->sinks): f32 [1, Hq, 1, 1]. */
static void model_sinks(verdict *vd, const clattn_attention_desc *d, const clattn_view *q,
                        const clattn_view *sinks, cl_context ctx, mview *msinks)
{
    memset(msinks, 0, sizeof *msinks);
    msinks->v = sinks;
    if (!d || !d->sinks)
        return;
    *msinks = model_view(vd, sinks, ctx);
    if (sinks->t->dtype != CLATTN_F32)
        breaks(vd, 0, "sinks not f32");
    if (q->t) {
        const int64_t want[4] = {1, dim(q, 1), 1, 1};
        for (int i = 0; i < 4; i++)
            want_dim(vd, sinks, i, want[i]);
    }
}

/* q, k, v, bias, seqlens and workspace of a forward or backward call. */
static void model_inputs(verdict *vd, const clattn_attention_desc *d, const clattn_view *q,
                         const clattn_view *k, const clattn_view *v, const clattn_view *bias,
                         const clattn_mem_info *seqlens_q, const clattn_mem_info *seqlens_k,
                         const clattn_mem_info *workspace, cl_context ctx, mview *mq, mview *mk,
                         mview *mv, mview *mbias)
{
    *mq = model_view(vd, q, ctx);
    *mk = model_view(vd, k, ctx);
    *mv = model_view(vd, v, ctx);
    if (q->t && k->t && v->t) {
        want_dim(vd, k, 0, dim(q, 0));
        want_dim(vd, v, 0, dim(q, 0));
        want_dim(vd, v, 1, dim(k, 1));
        want_dim(vd, k, 3, dim(q, 3));
        want_dim(vd, v, 2, dim(k, 2));
        if (dim(k, 1) > 0 && dim(q, 1) % dim(k, 1) != 0)
            breaks(vd, 0, "Hkv does not divide Hq");
        if (k->t->dtype != q->t->dtype || v->t->dtype != q->t->dtype)
            breaks(vd, 0, "q, k, v dtypes differ");
    }
    memset(mbias, 0, sizeof *mbias);
    mbias->v = bias;
    if (!d)
        return;
    if (d->bias) {
        *mbias = model_view(vd, bias, ctx);
        if (q->t && k->t) {
            const int64_t want[4] = {dim(q, 0), dim(q, 1), dim(q, 2), dim(k, 2)};
            for (int i = 0; i < 4; i++)
                if (bias->t->dims[i] != want[i] && (i == 3 || bias->t->dims[i] != 1))
                    breaks(vd, 0, "bias.dims[%d]", i);
        }
    }
    const u128 batch = q->t && dim(q, 0) > 0 ? (u128)dim(q, 0) : 0;
    model_buffer(vd, "seqlens_q", d->seqlens_q, seqlens_q, ctx, CL_MEM_WRITE_ONLY, 4 * batch);
    model_buffer(vd, "seqlens_k", d->seqlens_k, seqlens_k, ctx, CL_MEM_WRITE_ONLY, 4 * batch);
    model_buffer(vd, "workspace", d->workspace, workspace, ctx,
                 CL_MEM_READ_ONLY | CL_MEM_WRITE_ONLY, d->workspace_size);
}

/* An lse view for the rows of `rows`: f32 [B, H, S, 1]. */
static void model_lse(verdict *vd, const clattn_view *lse, const clattn_view *rows)
{
    if (!lse->t || !rows->t)
        return;
    for (int i = 0; i < 3; i++)
        want_dim(vd, lse, i, dim(rows, i));
    want_dim(vd, lse, 3, 1);
    if (lse->t->dtype != CLATTN_F32)
        breaks(vd, 0, "%s not f32", lse->name);
}

static void model_forward(verdict *vd, const clattn_forward_args *a, int model)
{
    const clattn_attention_desc *d = a->desc;
    model_desc(vd, d);
    if (a->num_wait > 0 && !a->wait_list)
        breaks(vd, 0, "wait_list NULL");
    mview m[7];
    model_inputs(vd, d, &a->q, &a->k, &a->v, &a->bias, &a->seqlens_q, &a->seqlens_k,
                 &a->workspace, a->context, &m[0], &m[1], &m[2], &m[3]);
    model_sinks(vd, d, &a->q, &a->sinks, a->context, &m[6]);
    if (!a->out.name)
        return; /* the query: no outputs */
    if (!a->out.t) {
        breaks(vd, 0, "out is NULL");
        return;
    }
    if (a->q.t && a->v.t) {
        for (int i = 0; i < 3; i++)
            want_dim(vd, &a->out, i, dim(&a->q, i));
        want_dim(vd, &a->out, 3, dim(&a->v, 3));
        model_lse(vd, &a->lse, &a->q);
    }
    m[4] = model_view(vd, &a->out, a->context);
    memset(&m[5], 0, sizeof m[5]);
    m[5].v = &a->lse;
    if (a->lse.t)
        m[5] = model_view(vd, &a->lse, a->context);
    if (model) {
        model_aliasing(vd, m, 7);
        model_desc_buffer_aliasing(vd, a, m, 7);
    }
}

static void model_merge(verdict *vd, const clattn_merge_args *a, int model)
{
    if (a->num_wait > 0 && !a->wait_list)
        breaks(vd, 0, "wait_list NULL");
    const clattn_view *first = &a->outs[0];
    for (size_t p = 0; p < a->n; p++) {
        if (!a->outs[p].t || !a->lses[p].t)
            breaks(vd, 0, "part %zu NULL", p);
        if (a->outs[p].t && first->t)
            for (int i = 0; i < 4; i++)
                want_dim(vd, &a->outs[p], i, dim(first, i));
        model_lse(vd, &a->lses[p], first);
    }
    if (!a->out.t || !a->lse.t) {
        breaks(vd, 0, "out or lse NULL");
        return;
    }
    if (first->t)
        for (int i = 0; i < 4; i++)
            want_dim(vd, &a->out, i, dim(first, i));
    model_lse(vd, &a->lse, first);
    mview m[2 + 2 * FZ_MAX_PARTS];
    m[0] = model_view(vd, &a->out, a->context);
    m[1] = model_view(vd, &a->lse, a->context);
    for (size_t p = 0; p < a->n; p++) {
        m[2 + p] = model_view(vd, &a->outs[p], a->context);
        m[2 + a->n + p] = model_view(vd, &a->lses[p], a->context);
    }
    if (model)
        model_aliasing(vd, m, 2 + 2 * a->n); /* the parts are inputs: only out, lse count */
}

/* The forward's rules with out and lse as inputs (lse required), then dout like out, dq, dk,
   dv like q, k, v, and no gradient sharing bytes with any view. */
static void model_backward(verdict *vd, const clattn_backward_args *a, int model)
{
    const clattn_forward_args *f = &a->forward;
    model_forward(vd, f, 0);
    if (!f->lse.t)
        breaks(vd, 0, "lse is NULL");
    const clattn_view *grads[4] = {&a->dout, &a->dq, &a->dk, &a->dv};
    const clattn_view *of[4] = {&f->out, &f->q, &f->k, &f->v};
    mview m[11];
    const clattn_view *inputs[7] = {&f->q, &f->k, &f->v, &f->bias, &f->out, &f->lse,
                                    &f->sinks};
    for (int i = 0; i < 7; i++) {
        memset(&m[i], 0, sizeof m[i]);
        m[i].v = inputs[i];
        if (inputs[i]->t && (i != 3 || (f->desc && f->desc->bias)) &&
            (i != 6 || (f->desc && f->desc->sinks)))
            m[i] = model_view(vd, inputs[i], f->context);
    }
    for (int i = 0; i < 4; i++) {
        if (!grads[i]->t) {
            breaks(vd, 0, "%s is NULL", grads[i]->name);
            memset(&m[7 + i], 0, sizeof m[7 + i]);
            m[7 + i].v = grads[i];
            continue;
        }
        if (of[i]->t)
            for (int j = 0; j < 4; j++)
                want_dim(vd, grads[i], j, dim(of[i], j));
        m[7 + i] = model_view(vd, grads[i], f->context);
        if (i > 0 && f->desc && f->desc->accumulate && grads[i]->t->buffer &&
            grads[i]->mem.live && (grads[i]->mem.flags & CL_MEM_WRITE_ONLY))
            breaks(vd, 0, "%s: accumulate reads a write-only buffer", grads[i]->name);
    }
    if (a->dout.t && f->out.t && a->dout.t->dtype != f->out.t->dtype)
        breaks(vd, 0, "dout and out dtypes differ");
    if (a->dq.t && a->dk.t && a->dv.t &&
        (a->dk.t->dtype != a->dq.t->dtype || a->dv.t->dtype != a->dq.t->dtype))
        breaks(vd, 0, "dq, dk, dv dtypes differ");
    if (model) {
        model_aliasing(vd, m, 11);
        model_desc_buffer_aliasing(vd, f, m, 11);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The run                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static const fz_case *current_case;

static void violation(const fz_result *r, const verdict *vd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_validate: INVARIANT BROKEN: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  op %d (raw %d), status %s, message \"%s\"\n  model: %s%s%s%s\n", r->op,
            current_case ? current_case->raw & 1 : -1, clattn_status_string(r->status),
            r->message, vd->invalid ? "invalid " : "", vd->small ? "too-small " : "",
            vd->unsure ? "unsure " : "", vd->why[0] ? vd->why : "(no rule broken)");
    abort();
}

/* Messages start with the argument they are about. */
static int names_argument(const char *msg)
{
    static const char *const names[] = {"desc", "q", "k", "v", "out", "lse", "bias", "sinks",
                                        "wait_list", "outs[", "lses[", "dout", "dq", "dk",
                                        "dv"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i]);
        if (strncmp(msg, names[i], n) == 0 &&
            (names[i][n - 1] == '[' || (msg[n] && strchr(".:- =,", msg[n]))))
            return 1;
    }
    return 0;
}

static void judge(const verdict *vd, fz_result *r, int raw)
{
    const clattn_status s = r->status;
    if (s == CLATTN_SUCCESS) {
        if (vd->invalid || vd->small)
            violation(r, vd, "accepted a call that breaks a rule");
        snprintf(r->gap, sizeof r->gap, "%s", vd->gap);
        return;
    }
    if (s != CLATTN_ERROR_INVALID_ARGUMENT && s != CLATTN_ERROR_BUFFER_TOO_SMALL)
        violation(r, vd, "status is neither INVALID_ARGUMENT nor BUFFER_TOO_SMALL");
    if (!r->message[0] || !names_argument(r->message))
        violation(r, vd, "the message does not start with the argument's name");
    if (s == CLATTN_ERROR_BUFFER_TOO_SMALL && !vd->small)
        violation(r, vd, "BUFFER_TOO_SMALL but every view and buffer is large enough");
    if (s == CLATTN_ERROR_INVALID_ARGUMENT && !vd->invalid) {
        if (strstr(r->message, "makes elements of the output overlap")) {
            r->conservative = !vd->unsure;
            for (int i = 0; i < vd->ndisjoint; i++) {
                const clattn_tensor *t = vd->disjoint[i]->t;
                size_t n = strlen(vd->disjoint[i]->name);
                if (strncmp(r->message, vd->disjoint[i]->name, n) == 0 && r->message[n] == '.')
                    snprintf(r->note, sizeof r->note,
                             "%s dims [%lld,%lld,%lld,%lld] strides [%lld,%lld,%lld,%lld]",
                             vd->disjoint[i]->name, (long long)t->dims[0],
                             (long long)t->dims[1], (long long)t->dims[2],
                             (long long)t->dims[3], (long long)t->strides[0],
                             (long long)t->strides[1], (long long)t->strides[2],
                             (long long)t->strides[3]);
            }
            return;
        }
        if (raw && strstr(r->message, " alias")) /* byte ranges of inconsistent roots */
            return;
        if (vd->gap[0] && strstr(r->message, "alias")) /* a rule validate.c may gain */
            return;
        violation(r, vd, "INVALID_ARGUMENT but no rule is broken");
    }
}

static clattn_status run_op(int op, const void *args)
{
    switch (op) {
    case FZ_FORWARD:
    case FZ_QUERY: return clattn_validate_forward(args);
    case FZ_MERGE: return clattn_validate_merge(args);
    case FZ_BACKWARD: return clattn_validate_backward(args);
    }
    return clattn_check_desc(args);
}

void fz_run(const uint8_t *data, size_t size, fz_result *r)
{
    static fz_case c; /* large: off the stack */
    fz_decode(data, size, &c);
    current_case = &c;
    memset(r, 0, sizeof *r);
    r->op = fz_op(&c);
    const int raw = c.raw & 1;

    fz_world w;
    build_world(&c, &w);
    clattn_tensor tensors[FZ_MAX_TENSORS];
    const clattn_tensor *tp[FZ_MAX_TENSORS];
    for (size_t i = 0; i < FZ_MAX_TENSORS; i++) {
        const fz_tensor *f = &c.t[i];
        clattn_tensor *t = &tensors[i];
        t->buffer = handle_of(&w, f->buf);
        t->offset = (size_t)f->offset;
        t->dtype = (clattn_dtype)f->dtype;
        memcpy(t->dims, f->dims, sizeof t->dims);
        memcpy(t->strides, f->strides, sizeof t->strides);
        tp[i] = f->present ? t : NULL;
    }
    const int bias_slot = r->op == FZ_BACKWARD ? FZ_BBIAS : FZ_BIAS;
    const int sinks_slot = r->op == FZ_BACKWARD ? FZ_BSINKS : FZ_SINKS;
    clattn_attention_desc desc;
    memset(&desc, 0, sizeof desc);
    const fz_desc *fd = &c.desc;
    desc.struct_size = fd->size_given ? (size_t)fd->size : sizeof desc;
    desc.scale = fd->scale;
    desc.causal = fd->causal;
    desc.align = (clattn_mask_align)fd->align;
    desc.window_left = fd->window_left;
    desc.window_right = fd->window_right;
    desc.softcap = fd->softcap;
    desc.bias = fd->bias ? tp[bias_slot] : NULL;
    desc.seqlens_q = desc_handle_of(&w, fd->seqlens_q);
    desc.seqlens_k = desc_handle_of(&w, fd->seqlens_k);
    desc.dropout_p = fd->dropout_p;
    desc.dropout_seed = fd->dropout_seed;
    desc.dropout_offset = fd->dropout_offset;
    desc.algo = (clattn_algo)fd->algo;
    desc.workspace = desc_handle_of(&w, fd->workspace);
    desc.workspace_size = (size_t)fd->workspace_size;
    desc.q_start = fd->q_start;
    desc.k_start = fd->k_start;
    desc.accumulate = fd->accumulate;
    desc.sinks = fd->sinks ? tp[sinks_slot] : NULL;
    const clattn_attention_desc *dp = fd->absent ? NULL : &desc;
    static const cl_event events[4]; /* never read: only its being NULL matters */
    const cl_event *wait_list = c.wait_null ? NULL : events;

    verdict vd;
    memset(&vd, 0, sizeof vd);
    const void *args = dp;
    clattn_forward_args fa;
    clattn_merge_args ma;
    clattn_backward_args ba;
    clattn_view parts[2 * FZ_MAX_PARTS];
    static char part_names[2 * FZ_MAX_PARTS][16];
    switch (r->op) {
    case FZ_DESC:
        model_desc(&vd, dp);
        break;
    case FZ_FORWARD:
    case FZ_QUERY: /* as forward.c builds them */
        memset(&fa, 0, sizeof fa);
        fa.desc = dp;
        fa.q = view_of(&w, "q", tp[FZ_Q], 0);
        fa.k = view_of(&w, "k", tp[FZ_K], 0);
        fa.v = view_of(&w, "v", tp[FZ_V], 0);
        if (dp) {
            fa.bias = view_of(&w, "bias", dp->bias, 0);
            fa.sinks = view_of(&w, "sinks", dp->sinks, 0);
            fa.seqlens_q = info_of(&w, dp->seqlens_q);
            fa.seqlens_k = info_of(&w, dp->seqlens_k);
            fa.workspace = info_of(&w, dp->workspace);
        }
        if (r->op == FZ_FORWARD) {
            fa.out = view_of(&w, "out", tp[FZ_OUT], 1);
            fa.lse = view_of(&w, "lse", tp[FZ_LSE], 1);
        }
        fa.num_wait = c.num_wait;
        fa.wait_list = wait_list;
        fa.context = w.ctx;
        model_forward(&vd, &fa, !raw);
        args = &fa;
        break;
    case FZ_BACKWARD: { /* as backward.c builds them: out and lse are inputs */
        memset(&ba, 0, sizeof ba);
        clattn_forward_args *f = &ba.forward;
        f->desc = dp;
        f->q = view_of(&w, "q", tp[FZ_BQ], 0);
        f->k = view_of(&w, "k", tp[FZ_BK], 0);
        f->v = view_of(&w, "v", tp[FZ_BV], 0);
        f->out = view_of(&w, "out", tp[FZ_BOUT], 0);
        f->lse = view_of(&w, "lse", tp[FZ_BLSE], 0);
        if (dp) {
            f->bias = view_of(&w, "bias", dp->bias, 0);
            f->sinks = view_of(&w, "sinks", dp->sinks, 0);
            f->seqlens_q = info_of(&w, dp->seqlens_q);
            f->seqlens_k = info_of(&w, dp->seqlens_k);
            f->workspace = info_of(&w, dp->workspace);
        }
        f->num_wait = c.num_wait;
        f->wait_list = wait_list;
        f->context = w.ctx;
        ba.dout = view_of(&w, "dout", tp[FZ_BDOUT], 0);
        ba.dq = view_of(&w, "dq", tp[FZ_BDQ], 1);
        ba.dk = view_of(&w, "dk", tp[FZ_BDK], 1);
        ba.dv = view_of(&w, "dv", tp[FZ_BDV], 1);
        model_backward(&vd, &ba, !raw);
        args = &ba;
        break;
    }
    case FZ_MERGE: { /* as merge.c builds them: n >= 1, outs and lses not NULL */
        const size_t n = fz_nparts(&c);
        for (size_t p = 0; p < n; p++) {
            snprintf(part_names[p], sizeof part_names[p], "outs[%zu]", p);
            snprintf(part_names[n + p], sizeof part_names[n + p], "lses[%zu]", p);
            parts[p] = view_of(&w, part_names[p], tp[FZ_MPARTS + p], 0);
            parts[n + p] = view_of(&w, part_names[n + p], tp[FZ_MPARTS + n + p], 0);
        }
        memset(&ma, 0, sizeof ma);
        ma.n = n;
        ma.outs = parts;
        ma.lses = parts + n;
        ma.out = view_of(&w, "out", tp[FZ_MOUT], 1);
        ma.lse = view_of(&w, "lse", tp[FZ_MLSE], 1);
        ma.num_wait = c.num_wait;
        ma.wait_list = wait_list;
        ma.context = w.ctx;
        model_merge(&vd, &ma, !raw);
        args = &ma;
        break;
    }
    }

    r->status = run_op(r->op, args);
    snprintf(r->message, sizeof r->message, "%s", clattn_last_error());
    /* pure: the same call gives the same answer */
    char first[sizeof r->message];
    memcpy(first, r->message, sizeof first);
    if (run_op(r->op, args) != r->status ||
        strncmp(first, clattn_last_error(), sizeof first - 1) != 0)
        violation(r, &vd, "a second call answered differently");
    if (r->status == CLATTN_SUCCESS)
        r->message[0] = '\0';
    judge(&vd, r, raw);
    current_case = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Structure-aware mutations                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* Byte flips rarely change one quantity everywhere it appears (the batch of q, k, v, out and
   lse at once) or fit a buffer to a view; these mutations do, on the decoded case. */

static uint64_t mrand(uint64_t *state)
{
    uint64_t x = *state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int64_t interesting(uint64_t *st, int64_t old)
{
    static const int64_t values[] = {
        0, 1, 2, 3, -1, INT64_MIN, INT64_MAX, INT64_C(1) << 31, (INT64_C(1) << 32) + 1,
        INT64_C(1) << 40, (INT64_C(1) << 61) + 1, INT64_C(1) << 62, (INT64_C(1) << 62) + 1,
        INT64_MAX / 2 + 1, INT64_MAX / 4 + 1, INT64_MAX / 3};
    switch (mrand(st) % 5) {
    case 0: return (int64_t)((uint64_t)old + 1); /* wraps, as bytes would */
    case 1: return (int64_t)((uint64_t)old - 1);
    case 2: return old > 0 && old < INT64_MAX / 2 ? old * 2 : old / 2;
    }
    return values[mrand(st) % (sizeof values / sizeof values[0])];
}

/* Extent in bytes of a case tensor, saturated to UINT64_MAX (0 for a bad shape). */
static uint64_t case_extent(const fz_tensor *t)
{
    int es = element_bytes((clattn_dtype)t->dtype);
    u128 span = 1;
    for (int i = 0; i < 4; i++) {
        if (t->dims[i] <= 0 || t->strides[i] < 0)
            return 0;
        span += (u128)(t->dims[i] - 1) * (u128)t->strides[i];
    }
    span *= (unsigned)(es ? es : 1);
    return span > UINT64_MAX ? UINT64_MAX : (uint64_t)span;
}

static fz_buf *buffer_of(fz_case *c, uint8_t sel)
{
    int n = fz_nbufs(c);
    if (sel == FZ_NULL_BUF || sel == FZ_UNKNOWN_BUF || n == 0)
        return NULL;
    return &c->bufs[sel % n];
}

void fz_mutate_case(fz_case *c, uint64_t seed)
{
    uint64_t st = seed * 0x9E3779B97F4A7C15ULL + 1;
    const size_t nt = fz_ntensors(c);
    const int nb = fz_nbufs(c);
    int rounds = 1 + (int)(mrand(&st) % 3);
    for (int r = 0; r < rounds; r++) {
        fz_tensor *t = nt ? &c->t[mrand(&st) % nt] : NULL;
        fz_tensor *u = nt ? &c->t[mrand(&st) % nt] : NULL;
        const int i = (int)(mrand(&st) % 4);
        switch (mrand(&st) % 10) {
        case 0: /* one dim value, renamed in every tensor that has it at that index */
            if (t) {
                const int64_t old = t->dims[i], now = interesting(&st, old);
                for (size_t j = 0; j < nt; j++)
                    if (c->t[j].dims[i] == old)
                        c->t[j].dims[i] = now;
            }
            break;
        case 1: /* one stride, in every tensor that has it at that index, or set to 0 */
            if (t) {
                const int64_t old = t->strides[i];
                const int64_t now = mrand(&st) % 3 ? interesting(&st, old) : 0;
                for (size_t j = 0; j < nt; j++)
                    if (c->t[j].strides[i] == old && (mrand(&st) & 1))
                        c->t[j].strides[i] = now;
                t->strides[i] = now;
            }
            break;
        case 2: /* dense strides for the dims (BHSD or BSHD) */
            if (t) {
                const uint64_t h = (uint64_t)t->dims[1], n = (uint64_t)t->dims[2],
                               d = (uint64_t)t->dims[3]; /* products wrap */
                const uint64_t s[2][4] = {{h * n * d, n * d, d, 1}, {n * h * d, d, h * d, 1}};
                const int bshd = (int)(mrand(&st) & 1);
                for (int k = 0; k < 4; k++)
                    t->strides[k] = (int64_t)s[bshd][k];
            }
            break;
        case 3: /* the buffer fitted to the view, give or take a few bytes */
            if (t) {
                fz_buf *b = buffer_of(c, t->buf);
                if (b)
                    b->size = t->offset + case_extent(t) + (mrand(&st) % 9) - 4;
            }
            break;
        case 4: /* a view placed in another view's buffer, around its bytes */
            if (t && u) {
                t->buf = u->buf;
                t->offset = u->offset + (case_extent(u) & ~(uint64_t)3) +
                            4 * ((mrand(&st) % 5) - 2);
                if (mrand(&st) & 1)
                    t->offset = u->offset;
            }
            break;
        case 5: /* a buffer turned into a sub-buffer of another, or back */
            if (nb) {
                fz_buf *b = &c->bufs[mrand(&st) % nb];
                b->parent = mrand(&st) % 4 ? (uint8_t)(1 + mrand(&st) % nb) : 0;
                b->origin = mrand(&st) % 3 ? (mrand(&st) % 64) * 64 : mrand(&st);
            }
            break;
        case 6: /* flags, liveness, context */
            if (nb) {
                static const uint64_t flags[] = {CL_MEM_READ_WRITE, CL_MEM_READ_ONLY,
                                                 CL_MEM_WRITE_ONLY,
                                                 CL_MEM_READ_ONLY | CL_MEM_WRITE_ONLY, 0};
                fz_buf *b = &c->bufs[mrand(&st) % nb];
                switch (mrand(&st) % 3) {
                case 0: b->flags = flags[mrand(&st) % 5]; break;
                case 1: b->live = !b->live; break;
                case 2: b->foreign = !b->foreign; break;
                }
            }
            break;
        case 7: /* a descriptor handle onto a tensor's buffer, or sizes of those buffers */
            if (t) {
                uint8_t *h[3] = {&c->desc.seqlens_q, &c->desc.seqlens_k, &c->desc.workspace};
                uint8_t *which = h[mrand(&st) % 3];
                if (mrand(&st) & 1)
                    *which = (uint8_t)(t->buf + 1u);
                else if (*which && *which != FZ_UNKNOWN_BUF && nb)
                    c->bufs[(*which - 1u) % (unsigned)nb].size = (uint64_t)interesting(&st, 8);
                if (mrand(&st) % 4 == 0)
                    c->desc.workspace_size = (uint64_t)interesting(&st, (int64_t)c->desc.workspace_size);
            }
            break;
        case 8: /* dtype, presence, or a copy of another tensor */
            if (t && u) {
                switch (mrand(&st) % 3) {
                case 0: t->dtype = (int32_t)(mrand(&st) % 4); break;
                case 1: t->present = !t->present; break;
                case 2: *t = *u; break;
                }
            }
            break;
        case 9: /* the offset */
            if (t)
                t->offset = (uint64_t)interesting(&st, (int64_t)t->offset);
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_result r;
    fz_run(data, size, &r);
    return 0;
}

#ifdef FZ_LIBFUZZER
/* libFuzzer: half the mutations are its own byte-level ones, half fz_mutate_case. */
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    if (seed & 1)
        return LLVMFuzzerMutate(data, size, max_size);
    static fz_case c;
    static uint8_t out[FZ_MAX_ENCODED];
    fz_decode(data, size, &c);
    fz_mutate_case(&c, seed >> 1);
    size_t n = fz_encode(&c, out);
    if (n > max_size)
        return LLVMFuzzerMutate(data, size, max_size);
    memcpy(data, out, n);
    return n;
}
#endif
