/*
 * clattn-bench — time clattn_attention_forward on one device.
 *
 *   clattn-bench [--device SEL] [-b B] [--hq H] [--hkv H] [--sq S] [--sk S] [-d D] [--dv DV]
 *                [--causal] [--warmup N] [--iters N] [--layout bhsd|bshd]
 *
 * Without shape flags it runs a preset list; with any of them, one shape (unset sizes default
 * to B=1, H=16, S=1024, D=64; hkv = hq, sk = sq, dv = d). Warm-up calls come first so that
 * kernel builds and PoCL's first-launch compilation are not timed. Each timed call is bracketed
 * by OpenCL profiling events: a marker enqueued just before it and the call's own event, so a
 * call that enqueues several commands is timed whole. FLOPs follow DESIGN.md: forward
 * 2 * pairs * (D + Dv), pairs = visible (query, key) pairs summed over batch and query heads.
 */
#include <clattn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shape {
    int64_t b, hq, hkv, sq, sk, d, dv;
    int causal;
    int bshd;
} shape;

typedef struct options {
    const char *device;
    int warmup, iters;
    int one_shape;     /* a shape flag was given: run `user` only */
    shape user;
} options;

typedef struct timing {
    double median_ms, min_ms, gflops;
    char plan[256];
} timing;

static const shape presets[] = {
    {1, 16, 16, 1024, 1024, 64, 64, 0, 0},
    {1, 16, 16, 1024, 1024, 64, 64, 1, 0},
    {1, 32, 8, 1, 4096, 128, 128, 0, 0},   /* GQA decode */
};

/* ---------------------------------------------------------------------------------------- */
/* Arguments                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: clattn-bench [--device SEL] [-b B] [--hq H] [--hkv H] [--sq S] [--sk S]\n"
               "                    [-d D] [--dv DV] [--causal] [--warmup N] [--iters N]\n"
               "                    [--layout bhsd|bshd]\n"
               "Without shape flags, runs a preset list. --warmup is at least 1.\n");
}

static int parse_count(const char *flag, const char *text, int64_t *out)
{
    char *end = NULL;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (!text || *text == '\0' || *end != '\0' || v < 1 || v > (1ll << 40)) {
        fprintf(stderr, "clattn-bench: %s needs a positive integer, got \"%s\"\n", flag,
                text ? text : "");
        return 0;
    }
    *out = v;
    return 1;
}

/* The int64 field that a shape flag sets, or NULL. */
static int64_t *shape_field(shape *s, const char *flag)
{
    static const char *names[] = {"-b", "--hq", "--hkv", "--sq", "--sk", "-d", "--dv"};
    int64_t *fields[] = {&s->b, &s->hq, &s->hkv, &s->sq, &s->sk, &s->d, &s->dv};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(flag, names[i]) == 0)
            return fields[i];
    return NULL;
}

static int parse_layout(const char *text, shape *s)
{
    if (text && strcmp(text, "bhsd") == 0)
        return s->bshd = 0, 1;
    if (text && strcmp(text, "bshd") == 0)
        return s->bshd = 1, 1;
    fprintf(stderr, "clattn-bench: --layout is bhsd or bshd, got \"%s\"\n", text ? text : "");
    return 0;
}

/* Parses one flag at argv[*i] (and its value); 0 on a bad flag or value. */
static int parse_flag(int argc, char **argv, int *i, options *o)
{
    const char *flag = argv[*i];
    const char *value = *i + 1 < argc ? argv[*i + 1] : NULL;
    int64_t n = 0, *field = shape_field(&o->user, flag);
    if (strcmp(flag, "--causal") == 0)
        return o->user.causal = 1, o->one_shape = 1, 1;
    (*i)++;
    if (field)
        return o->one_shape = 1, parse_count(flag, value, field);
    if (strcmp(flag, "--layout") == 0)
        return o->one_shape = 1, parse_layout(value, &o->user);
    if (strcmp(flag, "--device") == 0 && value)
        return o->device = value, 1;
    if (strcmp(flag, "--warmup") == 0 || strcmp(flag, "--iters") == 0) {
        if (!parse_count(flag, value, &n) || n > 1000000)
            return 0;
        if (strcmp(flag, "--warmup") == 0)
            o->warmup = (int)n;
        else
            o->iters = (int)n;
        return 1;
    }
    fprintf(stderr, "clattn-bench: unknown or incomplete option \"%s\"\n", flag);
    return 0;
}

/* Fills defaults the user left at 0. */
static void complete_shape(shape *s)
{
    s->b = s->b ? s->b : 1;
    s->hq = s->hq ? s->hq : 16;
    s->hkv = s->hkv ? s->hkv : s->hq;
    s->sq = s->sq ? s->sq : 1024;
    s->sk = s->sk ? s->sk : s->sq;
    s->d = s->d ? s->d : 64;
    s->dv = s->dv ? s->dv : s->d;
}

static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->warmup = 3;
    o->iters = 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!parse_flag(argc, argv, &i, o)) {
            usage(stderr);
            return 0;
        }
    }
    complete_shape(&o->user);
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Work                                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* Visible (i, j) pairs over all batches and query heads: causal rows see keys j <= i + off,
   off = sk - sq (bottom-right alignment, the default). */
static double count_pairs(const shape *s)
{
    double per_head = 0;
    for (int64_t i = 0; i < s->sq; i++) {
        int64_t n = s->sk;
        if (s->causal) {
            int64_t last = i + (s->sk - s->sq);   /* last visible key */
            n = last < 0 ? 0 : last + 1 < s->sk ? last + 1 : s->sk;
        }
        per_head += (double)n;
    }
    return per_head * (double)s->b * (double)s->hq;
}

static int fail(const char *what, clattn_status st)
{
    fprintf(stderr, "clattn-bench: %s: %s: %s\n", what, clattn_status_string(st),
            clattn_last_error());
    return 0;
}

static int cl_fail(const char *what, cl_int err)
{
    fprintf(stderr, "clattn-bench: %s: OpenCL error %d\n", what, (int)err);
    return 0;
}

/* A buffer of n floats, uniform in [-1, 1) from a fixed xorshift stream. */
static cl_mem random_buffer(cl_context c, size_t n, uint32_t seed)
{
    float *h = malloc(n * sizeof *h);
    cl_int err = CL_OUT_OF_HOST_MEMORY;
    cl_mem m = NULL;
    if (h) {
        uint32_t x = seed * 2654435761u + 1;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            h[i] = (float)(x >> 8) / 8388608.0f - 1.0f;
        }
        m = clCreateBuffer(c, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * sizeof *h, h, &err);
        free(h);
    }
    if (!m)
        cl_fail("allocating a buffer", err);
    return m;
}

typedef struct operands {
    cl_mem mem[5];   /* q, k, v, out, lse */
    clattn_tensor q, k, v, out, lse;
} operands;

static void release_operands(operands *op)
{
    for (int i = 0; i < 5; i++)
        if (op->mem[i])
            clReleaseMemObject(op->mem[i]);
}

static clattn_tensor view(const shape *s, cl_mem m, int64_t heads, int64_t seq, int64_t dim)
{
    return s->bshd ? clattn_tensor_bshd(m, CLATTN_F32, s->b, seq, heads, dim)
                   : clattn_tensor_bhsd(m, CLATTN_F32, s->b, heads, seq, dim);
}

static int make_operands(cl_context c, const shape *s, operands *op)
{
    size_t n[5] = {
        (size_t)(s->b * s->hq * s->sq * s->d), (size_t)(s->b * s->hkv * s->sk * s->d),
        (size_t)(s->b * s->hkv * s->sk * s->dv), (size_t)(s->b * s->hq * s->sq * s->dv),
        (size_t)(s->b * s->hq * s->sq),
    };
    memset(op, 0, sizeof *op);
    for (int i = 0; i < 5; i++)
        if (!(op->mem[i] = random_buffer(c, n[i], (uint32_t)i + 1)))
            return 0;
    op->q = view(s, op->mem[0], s->hq, s->sq, s->d);
    op->k = view(s, op->mem[1], s->hkv, s->sk, s->d);
    op->v = view(s, op->mem[2], s->hkv, s->sk, s->dv);
    op->out = view(s, op->mem[3], s->hq, s->sq, s->dv);
    op->lse = clattn_tensor_bhsd(op->mem[4], CLATTN_F32, s->b, s->hq, s->sq, 1);
    return 1;
}

static int forward(clattn_context *ctx, const clattn_attention_desc *desc, const operands *op,
                   cl_event *ev)
{
    clattn_status st = clattn_attention_forward(ctx, desc, &op->q, &op->k, &op->v, &op->out,
                                                &op->lse, 0, NULL, ev);
    return st == CLATTN_SUCCESS ? 1 : fail("clattn_attention_forward", st);
}

/* The time of `what` for ev in ns; 0 on failure (reported). */
static int profile(cl_event ev, cl_profiling_info what, cl_ulong *ns)
{
    cl_int err = ev ? clGetEventProfilingInfo(ev, what, sizeof *ns, ns, NULL) : CL_INVALID_EVENT;
    return err == CL_SUCCESS ? 1 : cl_fail("clGetEventProfilingInfo", err);
}

/* Enqueues iters (marker, call) pairs back to back, waits, and writes each call's ms. */
static int timed_calls(clattn_context *ctx, const clattn_attention_desc *desc,
                       const operands *op, int iters, double *ms)
{
    cl_command_queue q = clattn_context_queue(ctx);
    cl_event *ev = calloc(2 * (size_t)iters, sizeof *ev);
    int ok = ev != NULL, done = 0;
    for (; ok && done < iters; done++) {
        cl_int err = clEnqueueMarkerWithWaitList(q, 0, NULL, &ev[2 * done]);
        ok = err == CL_SUCCESS ? forward(ctx, desc, op, &ev[2 * done + 1])
                               : cl_fail("clEnqueueMarkerWithWaitList", err);
    }
    cl_int err = clFinish(q);
    if (ok && err != CL_SUCCESS)
        ok = cl_fail("clFinish", err);
    for (int i = 0; ok && i < iters; i++) {
        cl_ulong start = 0, end = 0;
        ok = profile(ev[2 * i], CL_PROFILING_COMMAND_END, &start) &&
             profile(ev[2 * i + 1], CL_PROFILING_COMMAND_END, &end);
        ms[i] = end > start ? (double)(end - start) * 1e-6 : 0.0;
    }
    for (int i = 0; ev && i < 2 * iters; i++)
        if (ev[i])
            clReleaseEvent(ev[i]);
    free(ev);
    return ok;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int warm_up(clattn_context *ctx, const clattn_attention_desc *desc, const operands *op,
                   int n)
{
    for (int i = 0; i < n; i++)
        if (!forward(ctx, desc, op, NULL))
            return 0;
    cl_int err = clFinish(clattn_context_queue(ctx));
    return err == CL_SUCCESS ? 1 : cl_fail("clFinish", err);
}

static int measure(clattn_context *ctx, const shape *s, const options *o, timing *t)
{
    operands op;
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.causal = s->causal;
    double *ms = calloc((size_t)o->iters, sizeof *ms);
    int ok = ms && make_operands(clattn_context_cl_context(ctx), s, &op);
    if (ok) {
        clattn_status st = clattn_attention_plan(ctx, &desc, &op.q, &op.k, &op.v, t->plan,
                                                 sizeof t->plan);
        ok = st == CLATTN_SUCCESS ? 1 : fail("clattn_attention_plan", st);
    }
    ok = ok && warm_up(ctx, &desc, &op, o->warmup < 1 ? 1 : o->warmup);
    ok = ok && timed_calls(ctx, &desc, &op, o->iters, ms);
    if (ok) {
        qsort(ms, (size_t)o->iters, sizeof *ms, cmp_double);
        t->min_ms = ms[0];
        t->median_ms = o->iters % 2 ? ms[o->iters / 2]
                                    : 0.5 * (ms[o->iters / 2 - 1] + ms[o->iters / 2]);
        double flops = 2.0 * count_pairs(s) * (double)(s->d + s->dv);
        t->gflops = t->median_ms > 0 ? flops / (t->median_ms * 1e-3) / 1e9 : 0.0;
    }
    if (ms)
        release_operands(&op);
    free(ms);
    return ok;
}

/* ---------------------------------------------------------------------------------------- */
/* Report                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static void print_header(void)
{
    printf("%-44s %-6s %10s %10s %10s  %s\n", "shape", "causal", "median_ms", "min_ms",
           "GFLOP/s", "plan");
}

static void print_row(const shape *s, const timing *t)
{
    char name[128];
    snprintf(name, sizeof name, "b=%lld hq=%lld hkv=%lld sq=%lld sk=%lld d=%lld dv=%lld %s",
             (long long)s->b, (long long)s->hq, (long long)s->hkv, (long long)s->sq,
             (long long)s->sk, (long long)s->d, (long long)s->dv, s->bshd ? "bshd" : "bhsd");
    printf("%-44s %-6s %10.3f %10.3f %10.1f  %s\n", name, s->causal ? "yes" : "no",
           t->median_ms, t->min_ms, t->gflops, t->plan);
    fflush(stdout);
}

static int run_shapes(clattn_context *ctx, const shape *shapes, size_t n, const options *o)
{
    print_header();
    for (size_t i = 0; i < n; i++) {
        timing t;
        memset(&t, 0, sizeof t);
        if (!measure(ctx, &shapes[i], o, &t))
            return 0;
        print_row(&shapes[i], &t);
    }
    return 1;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse_args(argc, argv, &o))
        return 2;
    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create(o.device, &ctx);
    if (st != CLATTN_SUCCESS)
        return fail("clattn_context_create", st), 1;
    printf("device: %s\n", clattn_context_device_name(ctx));
    printf("clattn %s, %d warm-up and %d timed calls per shape, f32\n", clattn_version_string(),
           o.warmup < 1 ? 1 : o.warmup, o.iters);
    int ok = o.one_shape ? run_shapes(ctx, &o.user, 1, &o)
                         : run_shapes(ctx, presets, sizeof presets / sizeof presets[0], &o);
    clattn_context_release(ctx);
    return ok ? 0 : 1;
}
