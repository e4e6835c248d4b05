/*
 * clattn-bench — time clattn_attention_forward and clattn_attention_backward on one device,
 * the forward next to its peers.
 *
 *   clattn-bench [--device SEL] [-b B] [--hq H] [--hkv H] [--sq S] [--sk S] [-d D] [--dv DV]
 *                [--causal] [--layout bhsd|bshd] [--dtype f32|f16|bf16]
 *                [--algo auto|fused|split_kv|unfused] [--pass fwd|bwd|both]
 *                [--warmup N] [--iters N] [--rounds N] [--peak] [--csv FILE] [--json FILE]
 *                [--no-peers] [--openblas-threading heads|blas]
 *   clattn-bench --tune [--budget SECONDS] [--tune-file FILE] [--tune-progress FILE]
 *                [--device SEL] [shape flags] [--algo auto|fused|split_kv] [--warmup N] [--iters N]
 *   clattn-bench --list-devices | --version | --help
 *
 * Exit status: 0 success, 1 a failure, 2 a usage error, 130 --tune interrupted (clattn-bench.1
 * documents every option for users).
 *
 * Without shape flags it runs a preset list; with any of them, one shape (unset sizes default
 * to B=1, H=16, S=1024, D=64; hkv = hq, sk = sq, dv = d). Every configuration (ours and each
 * peer, per shape and pass) is prepared first, its operands made and --warmup untimed calls
 * (default 3) run, so that kernel builds and PoCL's first-launch compilation are not timed;
 * then --rounds turns through the list (default 10) each time a share of its --iters timed
 * calls (default 30), so that a drift of the machine's speed during the run touches every row
 * alike instead of skewing the ratios between rows. Each timed call is bracketed by OpenCL
 * profiling events: a marker enqueued just before it and the call's own event, so a call that
 * enqueues several commands is timed whole. FLOPs follow docs/semantics.md: forward
 * 2 * pairs * (D + Dv), backward 2 * pairs * (3D + 2Dv), pairs = visible (query, key) pairs
 * summed over batch and query heads. GB/s counts the K and V bytes a call must read once:
 * B * Hkv * Sk * (D + Dv) * element size (the figure that bounds decode). --dtype sets q, k, v,
 * out and, for the backward, dout, dq, dk and dv; --algo forces an algorithm (for both passes).
 * scratch_MiB is the forward's workspace (clattn_attention_workspace_size) beyond its tensors;
 * the backward has no such query ("-").
 *
 * --pass (default both; the forward alone for Sq=1) picks what is timed: a "fwd" row per
 * shape, a "bwd" row, or both, the bwd row after the fwd row. The backward is timed like the
 * forward, on the out and lse of one untimed forward call made first (in its warm-up) and a
 * random dout; its row's bwd/fwd column is its GFLOP/s
 * over the fwd row's (both counted as above; "-" without a fwd row). A shape whose backward
 * clattn cannot run (CLATTN_ERROR_UNSUPPORTED, e.g. --algo split_kv) gets a bwd row of "-"
 * with the reason in its plan column; the run goes on. Peers time the forward only.
 *
 * Peers, timed in the same run for each shape (--no-peers skips them):
 *  - unfused: the same clattn call with desc.algo = CLATTN_ALGO_UNFUSED (the CLBlast path),
 *    timed the same way. A "# unfused:" note line replaces it when clattn cannot run it
 *    (UNSUPPORTED, e.g. a build without CLBlast) or when --algo unfused makes it ours.
 *  - openblas, on CPU devices in builds that found OpenBLAS: openblas_attention.c, two
 *    cblas_sgemm and a row softmax per (batch, head), pthreads over the heads
 *    (--openblas-threading blas: threaded OpenBLAS, heads in sequence). Always f32: f16/bf16
 *    shapes run it on f32 copies of the inputs. Its output for the last (batch, head) is checked
 *    against a loop in double (rel err < 1e-4) before it is timed by clock_gettime over the same
 *    numbers of warm-up and timed calls. At start-up the bench picks the fastest OpenBLAS core
 *    that passes a self-check, re-executing itself once with OPENBLAS_CORETYPE=SkylakeX where
 *    that is the one (openblas_core.h); the "openblas: core" line says which core ran and why.
 * x_unfused and x_openblas are ratios of GFLOP/s at the medians, ours / peer: > 1 means clattn
 * is faster.
 *
 * --peak measures the device's f32 FMA rate and read bandwidth with two calibration kernels
 * (peak.c), on CPU devices also the FMA rate of a host loop, and adds %peakF (GFLOP/s of the
 * higher FMA rate) and %peakBW (KV GB/s of peak) to every row.
 * --csv FILE and --json FILE write one record per (shape, dtype, causal, algo, pass) with
 * every column (report.c); bench/plot.sh turns the CSV into a PNG bar chart.
 *
 * --tune searches the forward fused kernel's tilings for the device over the shapes (tune.c): each
 * candidate is checked against a double-precision reference, then timed like the bench (default
 * 2 warm-up and 5 timed calls); the best per shape goes into the user tuning file that the
 * library reads at context creation (--tune-file, default $CLATTN_TUNING_DB, else tuning.txt in
 * the kernel cache directory). --budget (default 60 s) bounds the whole run; finished
 * candidates go to a progress file (--tune-progress, default the tuning file + ".progress"), so
 * an interrupted or budget-limited run resumes where it stopped.
 */
#include <clattn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "devices.h"
#include "measure.h"
#include "peak.h"
#include "report.h"
#include "tune.h"
#ifdef CLATTN_BENCH_OPENBLAS
#include "openblas_attention.h"
#include "openblas_core.h"
#endif

#define PEER_TOLERANCE 1e-4   /* worst |out - ref| / max |ref| the OpenBLAS peer may show */

/* --pass: a set of bits 1 << PASS_FWD, 1 << PASS_BWD. */
enum { PASSES_BOTH = (1 << PASS_FWD) | (1 << PASS_BWD) };

typedef struct options {
    const char *device;
    clattn_algo algo;
    int passes;        /* PASSES_*; 0: --pass not given (shape_passes) */
    int warmup, iters;
    int rounds;        /* --rounds: the shape list is timed this many times in turn */
    int one_shape;     /* a shape flag was given: run `user` only */
    shape user;
    int peak, no_peers;
    int blas_in_blas;  /* --openblas-threading blas */
    const char *csv, *json;
    int tune;          /* --tune */
    double budget;     /* --budget, seconds */
    const char *tune_file, *tune_progress;
} options;

static const shape presets[] = {
    {1, 16, 16, 1024, 1024, 64, 64, 0, 0, CLATTN_F32},
    {1, 16, 16, 1024, 1024, 64, 64, 1, 0, CLATTN_F32},
    {1, 16, 16, 1024, 1024, 64, 64, 0, 0, CLATTN_F16},
    {1, 16, 16, 1024, 1024, 64, 64, 1, 0, CLATTN_F16},
    {1, 32, 8, 1, 4096, 128, 128, 0, 0, CLATTN_F32},    /* GQA decode */
    {1, 32, 8, 1, 32768, 128, 128, 0, 0, CLATTN_F32},   /* GQA decode, long context */
    {1, 32, 8, 1, 32768, 128, 128, 0, 0, CLATTN_F16},
};

/* ---------------------------------------------------------------------------------------- */
/* Arguments                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: clattn-bench [--device SEL] [-b B] [--hq H] [--hkv H] [--sq S] [--sk S]\n"
               "                    [-d D] [--dv DV] [--causal] [--warmup N] [--iters N]\n"
               "                    [--layout bhsd|bshd] [--dtype f32|f16|bf16]\n"
               "                    [--algo auto|fused|split_kv|unfused] [--pass fwd|bwd|both]\n"
               "                    [--rounds N] [--peak] [--csv FILE] [--json FILE] [--no-peers]\n"
               "                    [--openblas-threading heads|blas]\n"
               "       clattn-bench --tune [--budget SECONDS] [--tune-file FILE]\n"
               "                    [--tune-progress FILE] [--device SEL] [shape flags]\n"
               "                    [--algo auto|fused|split_kv] [--warmup N] [--iters N]\n"
               "       clattn-bench --list-devices | --version | --help\n"
               "Without shape flags, runs a preset list. Every row and peer gets --warmup untimed\n"
               "calls (default 3, at least 1) first, then --iters timed ones (default 30) spread\n"
               "over --rounds turns through the list (default 10, at most --iters).\n"
               "--pass (default both; fwd alone for Sq=1): a fwd and/or a bwd row per shape; bwd/fwd is the\n"
               "backward's GFLOP/s over the forward's (FLOPs as docs/semantics.md counts them).\n"
               "Peers (forward only): clattn's unfused path, and OpenBLAS on CPU devices;\n"
               "x_<peer> is ours / peer in GFLOP/s (> 1: clattn faster). --peak adds %% of the\n"
               "device's measured FMA rate and read bandwidth. bench/plot.sh FILE.csv OUT.png\n"
               "plots.\n"
               "--tune searches tilings of the forward's fused kernel for this device within\n"
               "--budget seconds (default 60; 2 warm-up and 5 timed calls per candidate unless\n"
               "given), checks each against a reference, and writes the best per shape to the\n"
               "user tuning file (default $CLATTN_TUNING_DB, else tuning.txt in the kernel cache\n"
               "directory). Finished candidates go to --tune-progress (default FILE.progress):\n"
               "run the same command again to resume.\n"
               "--version prints the bench's and the library's versions; --list-devices lists\n"
               "the OpenCL devices with what clattn's probe sees and the --device value that\n"
               "picks each. Exit status: 0 success, 1 a failure (no device, a failed call or\n"
               "check, an output file not written), 2 a usage error, 130 --tune interrupted.\n");
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

/* Index of text in names[0, n), or -1 after printing what flag accepts. */
static int parse_choice(const char *flag, const char *text, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (text && strcmp(text, names[i]) == 0)
            return i;
    fprintf(stderr, "clattn-bench: %s is", flag);
    for (int i = 0; i < n; i++)
        fprintf(stderr, "%s%s", i == 0 ? " " : i + 1 < n ? ", " : " or ", names[i]);
    fprintf(stderr, ", got \"%s\"\n", text ? text : "");
    return -1;
}

/* --dtype, --algo, --layout, --pass, --openblas-threading; 0 on a bad value, -1 for another
   flag. */
static int parse_enum_flag(const char *flag, const char *value, options *o)
{
    static const char *const passes[] = {"fwd", "bwd", "both"};
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    static const char *const algos[] = {"auto", "fused", "split_kv", "unfused"};
    static const char *const layouts[] = {"bhsd", "bshd"};
    static const char *const threadings[] = {"heads", "blas"};
    int i = -2;
    if (strcmp(flag, "--dtype") == 0 && (i = parse_choice(flag, value, dtypes, 3)) >= 0)
        o->user.dtype = (clattn_dtype)i, o->one_shape = 1;
    else if (strcmp(flag, "--algo") == 0 && (i = parse_choice(flag, value, algos, 4)) >= 0)
        o->algo = (clattn_algo)i;
    else if (strcmp(flag, "--layout") == 0 && (i = parse_choice(flag, value, layouts, 2)) >= 0)
        o->user.bshd = i, o->one_shape = 1;
    else if (strcmp(flag, "--pass") == 0 && (i = parse_choice(flag, value, passes, 3)) >= 0)
        o->passes = i == 2 ? PASSES_BOTH : 1 << i;
    else if (strcmp(flag, "--openblas-threading") == 0 &&
             (i = parse_choice(flag, value, threadings, 2)) >= 0)
        o->blas_in_blas = i;
    return i == -2 ? -1 : i >= 0;
}

/* Flags without a value; 0 if flag is not one. */
static int parse_switch(const char *flag, options *o)
{
    if (strcmp(flag, "--causal") == 0)
        return o->user.causal = 1, o->one_shape = 1, 1;
    if (strcmp(flag, "--peak") == 0)
        return o->peak = 1, 1;
    if (strcmp(flag, "--no-peers") == 0)
        return o->no_peers = 1, 1;
    if (strcmp(flag, "--tune") == 0)
        return o->tune = 1, 1;
    return 0;
}

/* The field that --device, --csv or --json sets, or NULL. */
static const char **text_field(options *o, const char *flag)
{
    if (strcmp(flag, "--device") == 0)
        return &o->device;
    if (strcmp(flag, "--csv") == 0)
        return &o->csv;
    if (strcmp(flag, "--json") == 0)
        return &o->json;
    if (strcmp(flag, "--tune-file") == 0)
        return &o->tune_file;
    if (strcmp(flag, "--tune-progress") == 0)
        return &o->tune_progress;
    return NULL;
}

/* The field that --warmup, --iters or --rounds sets, or NULL. */
static int *count_field(options *o, const char *flag)
{
    if (strcmp(flag, "--warmup") == 0)
        return &o->warmup;
    if (strcmp(flag, "--iters") == 0)
        return &o->iters;
    if (strcmp(flag, "--rounds") == 0)
        return &o->rounds;
    return NULL;
}

/* --budget SECONDS: a positive number. */
static int parse_budget(const char *text, double *out)
{
    char *end = NULL;
    double v = text ? strtod(text, &end) : 0;
    if (!text || end == text || *end != '\0' || !(v > 0 && v < 1e9))
        return fprintf(stderr, "clattn-bench: --budget needs a positive number of seconds, got "
                               "\"%s\"\n", text ? text : ""), 0;
    *out = v;
    return 1;
}

/* Parses one flag at argv[*i] (and its value); 0 on a bad flag or value. */
static int parse_flag(int argc, char **argv, int *i, options *o)
{
    const char *flag = argv[*i];
    const char *value = *i + 1 < argc ? argv[*i + 1] : NULL;
    int64_t n = 0, *field = shape_field(&o->user, flag);
    const char **text = text_field(o, flag);
    int *count = count_field(o, flag);
    if (parse_switch(flag, o))
        return 1;
    (*i)++;
    if (strcmp(flag, "--budget") == 0)
        return parse_budget(value, &o->budget);
    if (field)
        return o->one_shape = 1, parse_count(flag, value, field);
    int e = parse_enum_flag(flag, value, o);
    if (e >= 0)
        return e;
    if (text && value)
        return *text = value, 1;
    if (count && parse_count(flag, value, &n) && n <= 1000000)
        return *count = (int)n, 1;
    if (count && n > 1000000)
        fprintf(stderr, "clattn-bench: %s is at most 1000000\n", flag);
    else if (!count)
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
    memset(o, 0, sizeof *o);   /* warmup, iters 0: not given */
    o->budget = 60.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("clattn-bench %s (library %s)\n", CLATTN_BENCH_VERSION,
                   clattn_version_string());
            exit(0);
        }
        if (strcmp(argv[i], "--list-devices") == 0)
            exit(print_devices());
        if (!parse_flag(argc, argv, &i, o)) {
            usage(stderr);
            return 0;
        }
    }
    o->warmup = o->warmup ? o->warmup : o->tune ? 2 : 3;
    o->iters = o->iters ? o->iters : o->tune ? 5 : 30;
    complete_shape(&o->user);
    if (o->tune && (o->csv || o->json || o->peak || o->passes || o->rounds))
        return fprintf(stderr, "clattn-bench: --tune does not take --csv, --json, --peak, "
                               "--pass or --rounds (it tunes the forward)\n"), 0;
    if (o->tune && o->algo == CLATTN_ALGO_UNFUSED)
        return fprintf(stderr, "clattn-bench: --tune tunes the fused kernel's tiling; "
                               "--algo unfused has none\n"), 0;
    o->rounds = o->rounds ? o->rounds : 10;
    o->rounds = o->rounds < o->iters ? o->rounds : o->iters;
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

/* The FLOPs per visible pair (docs/semantics.md "FLOP counts"): forward 2 (D + Dv),
   backward 2 (3D + 2Dv). */
static double flops_per_pair(const shape *s, bench_pass pass)
{
    return pass == PASS_FWD ? 2.0 * (double)(s->d + s->dv) : 2.0 * (double)(3 * s->d + 2 * s->dv);
}

static double gflops_at(const shape *s, bench_pass pass, double ms)
{
    return ms > 0 ? count_pairs(s) * flops_per_pair(s, pass) / (ms * 1e-3) / 1e9 : 0.0;
}

/* The forward's plan (the backward, too, needs it: its out and lse come from the forward) and,
   for the forward, its workspace; t->status says whether it can run (t->plan why not). */
static void plan_call(clattn_context *ctx, const clattn_attention_desc *desc,
                      const operands *op, bench_pass pass, timing *t)
{
    t->status = clattn_attention_plan(ctx, desc, &op->q, &op->k, &op->v, t->plan, sizeof t->plan);
    if (t->status == CLATTN_SUCCESS && pass == PASS_FWD) {
        t->status = clattn_attention_workspace_size(ctx, desc, &op->q, &op->k, &op->v,
                                                    &t->workspace);
        t->has_workspace = 1;
    }
}

/* n untimed calls of pass. 0 when clattn cannot run it (t->status, t->plan says why) or it
   failed (printed). */
static int warm_up(clattn_context *ctx, const clattn_attention_desc *desc, const operands *op,
                   bench_pass pass, int n, timing *t)
{
    static const char *const names[] = {"clattn_attention_forward", "clattn_attention_backward"};
    clattn_status st = untimed_calls(ctx, desc, op, pass, n);
    if (st == CLATTN_ERROR_UNSUPPORTED)
        return t->status = st, snprintf(t->plan, sizeof t->plan, "%s: %.200s",
                                        clattn_status_string(st), clattn_last_error()), 0;
    if (st != CLATTN_SUCCESS)
        return bench_fail(names[pass], st);
    if (pass == PASS_BWD)
        snprintf(t->plan, sizeof t->plan, "backward");
    return 1;
}

/* Plans pass of shape s under desc on op and makes o->warmup untimed calls. 0 when clattn
   cannot run it (t->status, t->plan says why) or it failed (printed). */
static int prepare(clattn_context *ctx, const clattn_attention_desc *desc, const operands *op,
                   bench_pass pass, const options *o, timing *t)
{
    memset(t, 0, sizeof *t);
    plan_call(ctx, desc, op, pass, t);
    return t->status == CLATTN_SUCCESS && warm_up(ctx, desc, op, pass, o->warmup, t);
}

/* t's median, minimum, GFLOP/s and GB/s from its n timed calls ms (reordered). */
static void summarize_timing(const shape *s, bench_pass pass, double *ms, int n, timing *t)
{
    summarize(ms, n, &t->median_ms, &t->min_ms);
    double kv_bytes = (double)(s->b * s->hkv * s->sk * (s->d + s->dv) *
                               (int64_t)dtype_bytes(s->dtype));
    t->gflops = gflops_at(s, pass, t->median_ms);
    t->gbps = t->median_ms > 0 ? kv_bytes / (t->median_ms * 1e-3) / 1e9 : 0.0;
}

/* ---------------------------------------------------------------------------------------- */
/* Peers                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static void set_ratio(peer *p, double ours_gflops)
{
    p->ratio = p->gflops > 0 ? ours_gflops / p->gflops : 0.0;
}

/* Prepares the unfused CLBlast path on the operands of ours (desc: ours with algo UNFUSED);
   p->ran says whether it will be timed, p->note why not. */
static void prepare_unfused_peer(clattn_context *ctx, const clattn_attention_desc *desc,
                                 const operands *op, const options *o, peer *p)
{
    timing t;
    if (o->algo == CLATTN_ALGO_UNFUSED) {
        snprintf(p->note, sizeof p->note, "not run: --algo unfused makes it ours");
        return;
    }
    p->ran = prepare(ctx, desc, op, PASS_FWD, o, &t);
    if (p->ran)
        return;
    if (t.status == CLATTN_SUCCESS)
        snprintf(p->note, sizeof p->note, "failed (see the error above)");
    else
        snprintf(p->note, sizeof p->note, "skipped: %s: %.200s", clattn_status_string(t.status),
                 t.plan);
}

#ifdef CLATTN_BENCH_OPENBLAS

typedef struct host_operands {
    float *x[4];   /* q, k, v, out: dense f32 [B, H, S, D] */
} host_operands;

static void free_host(host_operands *h)
{
    for (int i = 0; i < 4; i++)
        free(h->x[i]);
}

/* The values clattn's buffers hold before rounding to their dtype (same seeds). */
static int make_host(const shape *s, host_operands *h)
{
    size_t n[5];
    operand_sizes(s, n);
    memset(h, 0, sizeof *h);
    for (int i = 0; i < 4; i++) {
        if (!(h->x[i] = malloc(n[i] * sizeof(float))))
            return 0;
        fill_random(h->x[i], CLATTN_F32, n[i], (uint32_t)i + 1);
    }
    return 1;
}

static int blas_call(const cpu_attention_problem *pr, const options *o, const host_operands *h)
{
    cpu_attention_threading t = o->blas_in_blas ? CPU_ATTENTION_THREADS_IN_BLAS
                                                : CPU_ATTENTION_THREADS_OVER_HEADS;
    return cpu_attention_forward(pr, t, cpu_attention_cpus(), h->x[0], h->x[1], h->x[2], h->x[3]);
}

static cpu_attention_problem blas_problem(const shape *s)
{
    return (cpu_attention_problem){s->b, s->hq, s->hkv, s->sq, s->sk, s->d, s->dv, s->causal};
}

/* Makes h for shape s, then one checked call and o->warmup more; p->ran says whether the peer
   will be timed, p->note why not (or that it runs on f32 copies). */
static void prepare_blas_peer(const shape *s, const options *o, host_operands *h, peer *p)
{
    cpu_attention_problem pr = blas_problem(s);
    p->max_rel_err = -1.0;
    if (!make_host(s, h)) {
        snprintf(p->note, sizeof p->note, "not run: out of host memory");
        return;
    }
    if (!blas_call(&pr, o, h)) {
        snprintf(p->note, sizeof p->note, "failed: out of memory or threads");
        return;
    }
    p->max_rel_err = cpu_attention_check(&pr, h->x[0], h->x[1], h->x[2], h->x[3], s->b - 1,
                                         s->hq - 1);
    if (!(p->max_rel_err >= 0.0 && p->max_rel_err < PEER_TOLERANCE)) {
        snprintf(p->note, sizeof p->note, "wrong result (rel err %.3g at batch %lld, head %lld), "
                 "not timed", p->max_rel_err, (long long)(s->b - 1), (long long)(s->hq - 1));
        return;
    }
    p->ran = 1;
    for (int i = 0; p->ran && i < o->warmup; i++)
        p->ran = blas_call(&pr, o, h);
    if (!p->ran)
        snprintf(p->note, sizeof p->note, "failed: out of memory or threads");
    else if (s->dtype != CLATTN_F32)
        snprintf(p->note, sizeof p->note, "f32 copies of the %s inputs",
                 s->dtype == CLATTN_F16 ? "f16" : "bf16");
}

/* n timed calls of the peer into ms, by bench_now_ms; 0 on failure (p->note says so). */
static int time_blas_peer(const shape *s, const options *o, const host_operands *h, int n,
                          double *ms, peer *p)
{
    cpu_attention_problem pr = blas_problem(s);
    for (int i = 0; i < n; i++) {
        double t0 = bench_now_ms();
        if (!blas_call(&pr, o, h))
            return snprintf(p->note, sizeof p->note, "failed: out of memory or threads"), 0;
        ms[i] = bench_now_ms() - t0;
    }
    return 1;
}

static int device_is_cpu(clattn_context *ctx)
{
    cl_device_id dev = NULL;
    cl_device_type type = 0;
    cl_int err = clGetCommandQueueInfo(clattn_context_queue(ctx), CL_QUEUE_DEVICE, sizeof dev,
                                       &dev, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    return err == CL_SUCCESS && (type & CL_DEVICE_TYPE_CPU);
}

#endif /* CLATTN_BENCH_OPENBLAS */

/* ---------------------------------------------------------------------------------------- */
/* Run                                                                                       */
/* ---------------------------------------------------------------------------------------- */

/* What one record keeps from its preparation to its last round: the operands that ours and
   the unfused peer share, the host copies of the OpenBLAS peer, and every timed call of each
   (ms[0] ours, ms[1] unfused, ms[2] OpenBLAS; o->iters each). */
typedef struct record_run {
    operands op;
    clattn_attention_desc desc[2];   /* ours, the unfused peer */
#ifdef CLATTN_BENCH_OPENBLAS
    host_operands host;
#endif
    double *ms[3];
} record_run;

static void release_run(record_run *run)
{
    release_operands(&run->op);
#ifdef CLATTN_BENCH_OPENBLAS
    free_host(&run->host);
#endif
    for (int i = 0; i < 3; i++)
        free(run->ms[i]);
}

/* Record x of pass of shape s with its operands, plans and warm-up calls, ours then (forward)
   its peers; 0 when ours fails (printed) or the forward cannot run. A backward that clattn
   cannot run is a record (x->ours.status) that no round times. */
static int prepare_record(clattn_context *ctx, const shape *s, bench_pass pass, const options *o,
                          const run_info *r, record *x, record_run *run)
{
    memset(x, 0, sizeof *x);
    x->s = *s;
    x->algo = o->algo;
    x->pass = pass;
    x->pct_flops = x->pct_bw = x->bwd_fwd = -1.0;
    x->unfused.max_rel_err = x->blas.max_rel_err = -1.0;
    for (int i = 0; i < 3; i++)
        if (!(run->ms[i] = calloc((size_t)o->iters, sizeof(double))))
            return fprintf(stderr, "clattn-bench: out of host memory\n"), 0;
    cl_context cl = clattn_context_cl_context(ctx);
    if (!make_operands(cl, s, &run->op) || (pass == PASS_BWD && !make_gradients(cl, s, &run->op)))
        return 0;
    for (int i = 0; i < 2; i++) {
        clattn_attention_desc_init(&run->desc[i]);
        run->desc[i].causal = s->causal;
        run->desc[i].algo = i == 0 ? o->algo : CLATTN_ALGO_UNFUSED;
    }
    if (!prepare(ctx, &run->desc[0], &run->op, pass, o, &x->ours)) {
        if (x->ours.status == CLATTN_SUCCESS)
            return 0;
        return pass == PASS_BWD ? 1 : bench_fail(x->ours.plan, x->ours.status);
    }
    if (o->no_peers || pass == PASS_BWD)
        return 1;
    prepare_unfused_peer(ctx, &run->desc[1], &run->op, o, &x->unfused);
#ifdef CLATTN_BENCH_OPENBLAS
    if (r->blas_core)
        prepare_blas_peer(s, o, &run->host, &x->blas);
#else
    (void)r;
#endif
    return 1;
}

/* Timed calls first .. first+n-1 of record x: ours, then each peer that still runs. 0 when
   ours fails (printed). */
static int time_record(clattn_context *ctx, const options *o, int first, int n, record *x,
                       record_run *run)
{
    if (x->ours.status != CLATTN_SUCCESS)
        return 1;
    if (!timed_calls(ctx, &run->desc[0], &run->op, x->pass, n, run->ms[0] + first))
        return 0;
    if (x->unfused.ran && !timed_calls(ctx, &run->desc[1], &run->op, PASS_FWD, n,
                                       run->ms[1] + first)) {
        x->unfused.ran = 0;
        snprintf(x->unfused.note, sizeof x->unfused.note, "failed (see the error above)");
    }
#ifdef CLATTN_BENCH_OPENBLAS
    if (x->blas.ran)
        x->blas.ran = time_blas_peer(&x->s, o, &run->host, n, run->ms[2] + first, &x->blas);
#else
    (void)o;
#endif
    return 1;
}

/* x's figures from all of its n timed calls and its peers'. */
static void finish_record(const run_info *r, int n, record *x, record_run *run)
{
    if (x->ours.status != CLATTN_SUCCESS)
        return;
    summarize_timing(&x->s, x->pass, run->ms[0], n, &x->ours);
    if (r->peak) {
        x->pct_flops = 100.0 * x->ours.gflops / r->peak_gflops;
        x->pct_bw = 100.0 * x->ours.gbps / r->peak_gbps;
    }
    peer *peers[] = {&x->unfused, &x->blas};
    for (int i = 0; i < 2; i++) {
        if (!peers[i]->ran)
            continue;
        summarize(run->ms[i + 1], n, &peers[i]->median_ms, &peers[i]->min_ms);
        peers[i]->gflops = gflops_at(&x->s, PASS_FWD, peers[i]->median_ms);
        set_ratio(peers[i], x->ours.gflops);
    }
}

typedef struct outputs {
    FILE *csv, *json;
    int records;
} outputs;

static void write_record(const run_info *r, const record *x, outputs *out)
{
    report_table_row(r, x);
    if (out->csv)
        report_csv(out->csv, r, x, out->records == 0);
    if (out->json)
        report_json(out->json, r, x, out->records == 0);
    out->records++;
}

/* What --pass asks for, and without it: both passes, except the forward alone for decode
   shapes (one query row: nobody trains on that shape, and its backward has 1 row to share
   every key block). */
static int shape_passes(const options *o, const shape *s)
{
    return o->passes ? o->passes : s->sq > 1 ? PASSES_BOTH : 1 << PASS_FWD;
}

/* Every record of o's passes for each shape prepared, then o->rounds rounds in turn, each
   giving every record its share of o->iters timed calls (round k times every record before
   round k + 1 times any, so that a drift of the machine's speed during the run touches every
   record alike), then one row per record from all of its calls; the backward's bwd/fwd from
   the forward's record before it. */
static int run_shapes(clattn_context *ctx, const shape *shapes, size_t n, const options *o,
                      const run_info *r, outputs *out)
{
    record *x = calloc(n * 2, sizeof *x);   /* [shape][pass] */
    record_run *run = calloc(n * 2, sizeof *run);
    char *wanted = calloc(n * 2, 1);        /* the pass is asked for */
    int ok = x && run && wanted;
    if (!ok)
        fprintf(stderr, "clattn-bench: out of host memory\n");
    for (size_t i = 0; ok && i < n * 2; i++)
        wanted[i] = (shape_passes(o, &shapes[i / 2]) & (1 << (i % 2))) != 0;
    for (size_t i = 0; ok && i < n * 2; i++)
        if (wanted[i])
            ok = prepare_record(ctx, &shapes[i / 2], (bench_pass)(i % 2), o, r, &x[i], &run[i]);
    for (int round = 0; ok && round < o->rounds; round++) {
        const int first = round * o->iters / o->rounds, next = (round + 1) * o->iters / o->rounds;
        fprintf(stderr, "clattn-bench: round %d of %d\n", round + 1, o->rounds);
        for (size_t i = 0; ok && i < n * 2; i++)
            if (wanted[i])
                ok = time_record(ctx, o, first, next - first, &x[i], &run[i]);
    }
    if (ok)
        report_table_header(r);
    for (size_t i = 0; ok && i < n * 2; i++) {
        if (!wanted[i])
            continue;
        finish_record(r, o->iters, &x[i], &run[i]);
        if (i % 2 == PASS_BWD && x[i].ours.status == CLATTN_SUCCESS && x[i - 1].ours.gflops > 0)
            x[i].bwd_fwd = x[i].ours.gflops / x[i - 1].ours.gflops;
        write_record(r, &x[i], out);
    }
    for (size_t i = 0; run && i < n * 2; i++)
        release_run(&run[i]);
    free(wanted);
    free(run);
    free(x);
    return ok;
}

/* Fills r's peak figures (--peak) and prints them. */
static int measure_peak(clattn_context *ctx, run_info *r)
{
    peak p;
    if (!peak_measure(clattn_context_cl_context(ctx), clattn_context_queue(ctx), &p))
        return 0;
    /* %peakF is taken of the higher FMA figure, so that it never reads high because one
       calibration fell short */
    r->peak = 1, r->peak_gbps = p.gbps;
    r->peak_gflops = p.host_gflops > p.gflops ? p.host_gflops : p.gflops;
    printf("peak: %.1f GFLOP/s f32 FMA, %.1f GB/s read (%.0f MiB buffer)\n", p.gflops, p.gbps,
           p.buffer_mib);
    if (p.host_isa)
        printf("peak: host FMA loop (%s, one thread per compute unit) %.1f GFLOP/s, %.2fx the "
               "kernel's; %%peakF uses %.1f\n",
               p.host_isa, p.host_gflops, p.host_gflops / p.gflops, r->peak_gflops);
    return 1;
}

/* Decides whether the OpenBLAS peer runs and prints the lines that say so. */
static void describe_peers(clattn_context *ctx, const options *o, run_info *r, const char *how)
{
    printf("peers (forward only): %s; x_<peer> = our GFLOP/s / the peer's (> 1: clattn faster)\n",
           o->no_peers ? "none (--no-peers)" : "clattn unfused (CLBlast)");
#ifdef CLATTN_BENCH_OPENBLAS
    r->blas_how = how;
    r->blas_threading = o->blas_in_blas ? "blas" : "heads";
    printf("openblas: core %s (%s)\n", cpu_attention_core(), how);
    if (o->no_peers || !device_is_cpu(ctx)) {
        printf("openblas peer: not run (%s)\n", o->no_peers ? "--no-peers" : "not a CPU device");
        return;
    }
    r->blas_core = cpu_attention_core();
    printf("openblas peer: f32 (f16/bf16 shapes on f32 copies), %d threads %s\n",
           cpu_attention_cpus(), o->blas_in_blas ? "inside OpenBLAS, heads in sequence"
                                                : "over (batch, head) pairs, OpenBLAS 1 thread");
#else
    (void)ctx, (void)r, (void)how;
    if (!o->no_peers)
        printf("openblas peer: not built (meson did not find OpenBLAS)\n");
#endif
}

static int open_outputs(const options *o, outputs *out)
{
    memset(out, 0, sizeof *out);
    if (o->csv && !(out->csv = fopen(o->csv, "w")))
        return fprintf(stderr, "clattn-bench: cannot write %s\n", o->csv), 0;
    if (o->json && !(out->json = fopen(o->json, "w"))) {
        fprintf(stderr, "clattn-bench: cannot write %s\n", o->json);
        if (out->csv)
            fclose(out->csv);
        return 0;
    }
    return 1;
}

/* Closes f; 0 when it did not write whole. */
static int close_file(FILE *f)
{
    int ok = !ferror(f);
    return fclose(f) == 0 && ok;
}

/* Ends the JSON array and closes both files; 0 when one of them did not write whole. */
static int close_outputs(outputs *out)
{
    int ok = 1;
    if (out->json)
        report_json_end(out->json, out->records > 0);
    if (out->csv && !close_file(out->csv))
        ok = 0;
    if (out->json && !close_file(out->json))
        ok = 0;
    if (!ok)
        fprintf(stderr, "clattn-bench: writing the --csv or --json file failed\n");
    return ok;
}

static int run_tune(const options *o)
{
    tune_options t = {o->device, o->algo, o->warmup, o->iters, o->budget, o->tune_file,
                      o->tune_progress};
    return o->one_shape ? tune_run(&t, &o->user, 1)
                        : tune_run(&t, presets, sizeof presets / sizeof presets[0]);
}

int main(int argc, char **argv)
{
    const char *blas_how = NULL;
#ifdef CLATTN_BENCH_OPENBLAS
    blas_how = openblas_core_choose(argv);   /* may re-execute this program */
#endif
    options o;
    outputs out;
    if (!parse_args(argc, argv, &o))
        return 2;
    if (o.tune)
        return run_tune(&o);
    if (!open_outputs(&o, &out))
        return 1;
    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create(o.device, &ctx);
    if (st != CLATTN_SUCCESS)
        return bench_fail("clattn_context_create", st), 1;
    run_info r = {clattn_context_device_name(ctx), 0, 0.0, 0.0, NULL, NULL, NULL};
    printf("device: %s\n", r.device);
    printf("clattn %s, %d warm-up and %d timed calls per row and peer, the timed ones in %d "
           "rounds\n", clattn_version_string(), o.warmup, o.iters, o.rounds);
    int ok = !o.peak || measure_peak(ctx, &r);
    describe_peers(ctx, &o, &r, blas_how);
    ok = ok && (o.one_shape ? run_shapes(ctx, &o.user, 1, &o, &r, &out)
                            : run_shapes(ctx, presets, sizeof presets / sizeof presets[0], &o,
                                         &r, &out));
    ok = close_outputs(&out) && ok;
    clattn_context_release(ctx);
    return ok ? 0 : 1;
}
