/*
 * clattn-bench --tune: search the fused kernel's tilings for the current device.
 *
 * For each shape: run the library's own choice (its tuning database, else the planner's
 * heuristic), then the tilings that the library lists as fitting the device and the call
 * (clattn_forward_candidates, src/tools.h), most plausible first (tune_space.c), while the
 * shape's share of the time budget lasts. Each candidate runs on the one context of the run,
 * made to use it (clattn_context_force_tiling), so all candidates share one set of buffers and
 * the kernels built so far. A candidate counts only when the library's plan says it runs the
 * forced tiling (else "does not fit"), its kernel builds, and its output matches a
 * double-precision reference on sampled rows; then it is timed by events like the bench
 * (median of --iters).
 * Every finished candidate is appended to the progress file, which a later run reads to skip
 * what was measured; SIGINT stops after the current candidate and still writes the results.
 * The search ends when its share of the budget is spent (less CONFIRM_SHARE of it); then the
 * default and the fastest few are timed again, interleaved, up to CONFIRM_ROUNDS times while
 * the share lasts, and each keeps its lowest median: on a shared machine one median can be off
 * by 2x or more as the load changes, and the fastest of many single measurements is biased
 * low. The confirmed best goes into the user tuning file, replacing any entry of its key (a
 * shape interrupted before its re-timing gets no entry; the next run resumes it). The
 * default of every shape always runs (the summary needs it), so a run can overshoot its budget
 * by about one measurement per shape.
 */
#include "tune.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tune_impl.h"

#define SLOW_FACTOR 3.0     /* a candidate whose timed warm-up call is this much slower than
                               the best median is not timed further */
#define CONFIRM_TOP 3       /* candidates timed again with the default at the end */
#define CONFIRM_ROUNDS 2
#define CONFIRM_SHARE 0.15  /* of a shape's time, kept for that */

static volatile sig_atomic_t interrupted;
static time_t interrupted_at;   /* written by the handler only */

/* The first SIGINT stops the run after its current measurement; one at least 2 s later ends it
   at once (the duplicates that wrappers such as timeout(1) send right after do not). */
static void on_sigint(int sig)
{
    static const char msg[] = "\nclattn-bench: stopping after this measurement (Ctrl-C again "
                              "to quit now)\n";
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (interrupted && ts.tv_sec - interrupted_at >= 2) {
        signal(sig, SIG_DFL);
        raise(sig);
    } else if (!interrupted) {
        interrupted_at = ts.tv_sec;
        interrupted = 1;
        ssize_t ignored = write(2, msg, sizeof msg - 1);
        (void)ignored;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct session {
    const tune_options *o;
    clattn_context *ctx;        /* every measurement runs on it */
    char device_key[1024];      /* "platform|device|driver", as tuning entries name it */
    progress prog;
    char tune_path[4200], progress_path[4300];
    double start, end;          /* budget: monotonic seconds */
    int tty;
} session;

/* One shape's search. */
typedef struct shape_run {
    const shape *s;
    size_t index, of;
    char id[1200];              /* progress key: device key, shape, algo */
    operands op;
    reference ref;
    int started, done;          /* done: the default ran (so the summary has a row) */
    char note[512];             /* why the shape was not tuned */
    clattn_attention_desc desc; /* the forward call of the shape */
    clattn_tiling *candidates_of; /* what the library lists for it; `candidates` in order */
    clattn_tune_entry entry;    /* the shape's tuning-file key on this device (the library's) */
    result dflt;                /* the library's own choice */
    result best;                /* fastest OK result, possibly dflt */
    int have_best;
    int confirming;             /* no pruning of slow candidates then */
    double final_dflt_ms;       /* after confirmation (else the search's); 0: none */
    result final;               /* the tiling to write, with its confirmed ms */
    int compared;               /* another tiling than the default ran OK */
    int confirmed;              /* final figures are re-timings: worth an entry */
    size_t superseded_by;       /* 1 + the index of a later shape with the same tuning key */
    size_t candidates, tried, resumed, failed, slow, skipped;
    double slice_start, deadline, slice_end;   /* deadline: for starting search candidates */
} shape_run;

/* Where a run is, for the progress display: "candidate 12/307". */
typedef struct step {
    const char *what;           /* "default", "candidate", "confirm" */
    size_t j, of;
} step;

/* ---------------------------------------------------------------------------------------- */
/* Progress on stderr                                                                        */
/* ---------------------------------------------------------------------------------------- */

static void short_tiling(const clattn_tiling *t, char *buf, size_t size)
{
    snprintf(buf, size, "r%d w%d n%d v%d", t->rows, t->wg, t->block_n, t->vec);
}

/* The one-line bar (TTY only): time share of the shape, step, best so far, what runs. */
static void draw_bar(const session *ss, const shape_run *run, step at,
                     const clattn_tiling *trying)
{
    char best[48] = "-", t[48] = "";
    double span = run->deadline - run->slice_start, used = now_s() - run->slice_start;
    double share = span > 0 ? used / span : 1.0, share_c = (double)at.j / (double)(at.of + !at.of);
    int fill = (int)(20 * (share > share_c ? share : share_c));
    fill = fill < 0 ? 0 : fill > 20 ? 20 : fill;
    if (run->have_best)
        short_tiling(&run->best.t, t, sizeof t),
            snprintf(best, sizeof best, "%.2fms %s", run->best.ms, t);
    t[0] = '\0';
    if (trying)
        short_tiling(trying, t, sizeof t);
    fprintf(stderr, "\r\033[K[%.*s%.*s] shape %zu/%zu %s %zu/%zu %.0f/%.0fs best %s%s%s",
            fill, "####################", 20 - fill, "....................", run->index + 1,
            run->of, at.what, at.j, at.of, now_s() - ss->start, ss->end - ss->start, best,
            trying ? " | " : "", t);
    fflush(stderr);
}

/* One finished measurement: a plain line (not a TTY), or a line above the bar for failures. */
static void report_result(const session *ss, const shape_run *run, step at, const result *x,
                          const char *note)
{
    char t[64];
    tiling_text(&x->t, t, sizeof t);
    if (ss->tty && (x->o == OUTCOME_OK || x->o == OUTCOME_SLOW))
        return draw_bar(ss, run, at, NULL);
    if (ss->tty)
        fprintf(stderr, "\r\033[K");
    fprintf(stderr, "tune %zu/%zu %s %zu/%zu %s: %s", run->index + 1, run->of, at.what, at.j,
            at.of, t, outcome_name(x->o));
    if (x->o == OUTCOME_OK || x->o == OUTCOME_SLOW)
        fprintf(stderr, " %.3f ms%s", x->ms, x->o == OUTCOME_SLOW ? " (one call)" : "");
    if (run->have_best && !run->confirming)
        fprintf(stderr, " (best %.3f ms)", run->best.ms);
    fprintf(stderr, "%s%s\n", note[0] ? ": " : "", note);
    if (ss->tty)
        draw_bar(ss, run, at, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* One candidate                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* The first line of clattn's last error message after "what: STATUS: ". */
static void status_note(const char *what, clattn_status st, char *note, size_t size)
{
    const char *msg = clattn_last_error();
    snprintf(note, size, "%s: %s: %.*s", what, clattn_status_string(st),
             (int)strcspn(msg, "\n"), msg);
}

/* NaN over the whole out buffer, so rows a candidate does not write fail the check. */
static int poison_out(cl_command_queue q, const shape *s, const operands *op)
{
    static const uint32_t nan32 = 0x7fc00000u;
    static const uint16_t nan16 = 0x7e00u, nanbf = 0x7fc0u;
    size_t n[5];
    operand_sizes(s, n);
    const void *pattern = s->dtype == CLATTN_F32 ? (const void *)&nan32
                          : s->dtype == CLATTN_F16 ? (const void *)&nan16 : (const void *)&nanbf;
    cl_int err = clEnqueueFillBuffer(q, op->mem[3], pattern, dtype_bytes(s->dtype), 0,
                                     n[3] * dtype_bytes(s->dtype), 0, NULL, NULL);
    return err == CL_SUCCESS ? 1 : bench_cl_fail("clEnqueueFillBuffer", err);
}

/* The plan of the run's shape; with t (forced), 0 unless the library runs t. */
static int check_plan(const session *ss, shape_run *run, const clattn_tiling *t, result *x,
                      char *note, size_t size)
{
    clattn_plan plan;
    clattn_status st = clattn_forward_plan(ss->ctx, &run->desc, &run->op.q, &run->op.k,
                                           &run->op.v, &plan);
    if (st != CLATTN_SUCCESS || plan.algo == CLATTN_ALGO_UNFUSED)
        return snprintf(note, size, "no tiling to tune: %s", st != CLATTN_SUCCESS
                        ? clattn_last_error() : "the plan is unfused"), 0;
    if (t && (plan.source != CLATTN_TILING_FORCED || !tiling_equal(&plan.tiling, t)))
        return x->o = OUTCOME_NO_FIT, snprintf(note, size, "the library did not take it"), 0;
    if (!t)
        x->t = plan.tiling, x->tuned = plan.source != CLATTN_TILING_HEURISTIC;
    return 1;
}

/* Builds, checks and times the tiling that the context plans for the run's shape into x. */
static void measure(const session *ss, shape_run *run, const clattn_tiling *t, result *x,
                    char *note, size_t size)
{
    const tune_options *o = ss->o;
    clattn_context *ctx = ss->ctx;
    double worst = 0, pilot = 0, *ms = calloc((size_t)o->iters, sizeof *ms);
    clattn_status st;
    if (!ms || !check_plan(ss, run, t, x, note, size) ||
        !poison_out(clattn_context_queue(ctx), run->s, &run->op)) {
        free(ms);
        return;
    }
    if ((st = untimed_calls(ctx, &run->desc, &run->op, PASS_FWD,
                            o->warmup > 1 ? o->warmup - 1 : 1))) {
        x->o = st == CLATTN_ERROR_BUILD_FAILED ? OUTCOME_BUILD_FAILED : OUTCOME_ERROR;
        status_note("clattn_attention_forward", st, note, size);
    } else if (!timed_calls(ctx, &run->desc, &run->op, PASS_FWD, 1, &pilot) ||
               !reference_check(clattn_context_queue(ctx), &run->op, run->s, &run->ref, &worst)) {
        snprintf(note, size, "failed (see above)");
    } else if (!(worst <= reference_tolerance(run->s->dtype))) {
        x->o = OUTCOME_WRONG;
        snprintf(note, size, "worst error %.3g of the row's largest |out| (tolerance %.3g)", worst,
                 reference_tolerance(run->s->dtype));
    } else if (!run->confirming && run->have_best && pilot > SLOW_FACTOR * run->best.ms) {
        x->o = OUTCOME_SLOW, x->ms = pilot;
    } else if (timed_calls(ctx, &run->desc, &run->op, PASS_FWD, o->iters, ms)) {
        double min = 0;
        summarize(ms, o->iters, &x->ms, &min);
        x->o = OUTCOME_OK;
    }
    free(ms);
}

/* Runs tiling t (NULL: the library's own choice) on the run's shape into x. */
static void try_tiling(const session *ss, shape_run *run, const clattn_tiling *t, result *x,
                       char *note, size_t size)
{
    memset(x, 0, sizeof *x);
    x->o = OUTCOME_ERROR;
    x->is_default = t == NULL;
    note[0] = '\0';
    if (t)
        x->t = *t;
    clattn_context_force_tiling(ss->ctx, t);
    measure(ss, run, t, x, note, size);
    clattn_context_force_tiling(ss->ctx, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* One shape                                                                                 */
/* ---------------------------------------------------------------------------------------- */

/* Counts a finished result into the run's totals and its best. */
static void count(shape_run *run, const result *x, int resumed)
{
    if (!x->is_default)
        run->tried++, run->resumed += resumed != 0;
    if (x->o == OUTCOME_SLOW)
        run->slow++;
    else if (x->o != OUTCOME_OK)
        run->failed += !x->is_default;
    else if (!run->have_best || x->ms < run->best.ms)
        run->best = *x, run->have_best = 1;
}

/* The library's own choice: from the progress file, else measured (and recorded). */
static int run_default(session *ss, shape_run *run)
{
    char note[512];
    const result *old = progress_find(&ss->prog, run->id, NULL, 1);
    if (old) {
        run->dflt = *old;
        count(run, old, 1);
        return run->done = 1;
    }
    try_tiling(ss, run, NULL, &run->dflt, note, sizeof note);
    if (run->dflt.t.rows == 0)   /* no tiling: unfused, not runnable, or no context */
        return snprintf(run->note, sizeof run->note, "%s", note), 0;
    count(run, &run->dflt, 0);
    report_result(ss, run, (step){"default", 1, 1}, &run->dflt, note);
    run->done = 1;
    return progress_add(&ss->prog, run->id, &run->dflt);
}

static void run_candidates(session *ss, shape_run *run, const clattn_tiling *c)
{
    char note[512];
    for (size_t j = 0; j < run->candidates; j++) {
        const result *old = progress_find(&ss->prog, run->id, &c[j], 0);
        if (old) {
            count(run, old, 1);
            continue;
        }
        if (interrupted || now_s() >= run->deadline) {
            run->skipped++;
            continue;
        }
        result x;
        const step at = {"candidate", j + 1, run->candidates};
        if (ss->tty)
            draw_bar(ss, run, at, &c[j]);
        try_tiling(ss, run, &c[j], &x, note, sizeof note);
        count(run, &x, 0);
        report_result(ss, run, at, &x, note);
        if (!progress_add(&ss->prog, run->id, &x))
            interrupted = 1;   /* cannot record: stop, as if interrupted */
    }
}

/* Inserts r into f[1, *n), sorted by ms, keeping the CONFIRM_TOP fastest. */
static void keep_fastest(clattn_tiling *f, double *ms, size_t *n, const result *r)
{
    size_t k = *n;
    for (size_t i = 1; i < *n; i++)
        if (tiling_equal(&f[i], &r->t))
            return;
    if (*n <= CONFIRM_TOP)
        (*n)++;
    else if (r->ms < ms[CONFIRM_TOP])
        k = CONFIRM_TOP;   /* replaces the slowest kept */
    else
        return;
    for (; k > 1 && r->ms < ms[k - 1]; k--)
        f[k] = f[k - 1], ms[k] = ms[k - 1];
    f[k] = r->t, ms[k] = r->ms;
}

/* The candidate of the run with t's rows, wg, block_n and vec (a result read back from the
   progress file holds only those), or NULL. */
static const clattn_tiling *candidate_like(const shape_run *run, const clattn_tiling *t)
{
    for (size_t i = 0; i < run->candidates; i++)
        if (tiling_equal(&run->candidates_of[i], t))
            return &run->candidates_of[i];
    return NULL;
}

/* The default's tiling in f[0], then the tilings of up to CONFIRM_TOP other fastest OK results
   of the run (measured now or resumed), as the library listed them. Returns the count. */
static size_t finalists(const session *ss, const shape_run *run, clattn_tiling *f)
{
    double ms[CONFIRM_TOP + 1] = {0};
    size_t n = 1;
    f[0] = run->dflt.t;
    for (size_t i = 0; i < ss->prog.count; i++) {
        const result *r = &ss->prog.items[i].r;
        if (strcmp(ss->prog.items[i].id, run->id) == 0 && r->o == OUTCOME_OK &&
            !tiling_equal(&r->t, &f[0]) && candidate_like(run, &r->t))
            keep_fastest(f, ms, &n, r);
    }
    for (size_t i = 1; i < n; i++)
        f[i] = *candidate_like(run, &f[i]);
    return n;
}

/* Times the finalists again, interleaved (default, fastest, next, ..., then again), while the
   shape's time lasts; the first two always run, so the default and the search's best are
   compared at least once under the same load. Each keeps its lowest median; the final tiling is
   the fastest re-timed one. Without rivals, or interrupted before two ran, the search's figures
   stand. */
static void confirm(session *ss, shape_run *run)
{
    clattn_tiling f[CONFIRM_TOP + 1];
    double ms[CONFIRM_TOP + 1];
    char note[512];
    const size_t n = finalists(ss, run, f);
    size_t k = 0, best = 0;
    run->final_dflt_ms = run->dflt.o == OUTCOME_OK ? run->dflt.ms : 0;
    run->final = run->best;
    run->compared = n > 1;
    for (size_t i = 0; i < n; i++)
        ms[i] = INFINITY;
    run->confirming = 1;
    for (; n > 1 && k < CONFIRM_ROUNDS * n && !interrupted && (k < 2 || now_s() < run->slice_end);
         k++) {
        result x;
        const step at = {"confirm", k + 1, CONFIRM_ROUNDS * n};
        if (ss->tty)
            draw_bar(ss, run, at, &f[k % n]);
        try_tiling(ss, run, k % n ? &f[k % n] : NULL, &x, note, sizeof note);
        if (x.o == OUTCOME_OK && x.ms < ms[k % n])
            ms[k % n] = x.ms;
        report_result(ss, run, at, &x, note);
    }
    run->confirming = 0;
    for (size_t i = 1; i < n; i++)
        best = ms[i] < ms[best] ? i : best;
    if (k < 2 || !isfinite(ms[best]))
        return;
    run->final_dflt_ms = isfinite(ms[0]) ? ms[0] : 0;
    run->final.t = f[best], run->final.ms = ms[best];
    run->confirmed = 1;
}

static void shape_id(const session *ss, const shape *s, char *buf, size_t size)
{
    static const char *const algos[] = {"auto", "fused", "split_kv", "unfused"};
    char text[200];
    shape_text(s, text, sizeof text);
    snprintf(buf, size, "%.900s|%.200s algo=%s", ss->device_key, text, algos[ss->o->algo]);
}

/* The library's candidates for the run's shape, in the order to try them (run->candidates). */
static int list_candidates(session *ss, shape_run *run)
{
    size_t n = 0;
    clattn_status st = clattn_forward_candidates(ss->ctx, &run->desc, &run->op.q, &run->op.k,
                                                 &run->op.v, NULL, 0, &n);
    run->candidates_of = malloc((n ? n : 1) * sizeof *run->candidates_of);
    if (st == CLATTN_SUCCESS && run->candidates_of)
        st = clattn_forward_candidates(ss->ctx, &run->desc, &run->op.q, &run->op.k, &run->op.v,
                                       run->candidates_of, n, &n);
    if (st != CLATTN_SUCCESS || !run->candidates_of)
        return snprintf(run->note, sizeof run->note, "no candidates: %s",
                        run->candidates_of ? clattn_last_error() : "out of memory"), 0;
    run->candidates = order_candidates(run->s, &run->dflt.t, run->candidates_of, n);
    st = clattn_forward_tuning_entry(ss->ctx, &run->desc, &run->op.q, &run->op.k, &run->op.v,
                                     &run->dflt.t, &run->entry);
    if (st != CLATTN_SUCCESS)
        return snprintf(run->note, sizeof run->note, "no tuning key: %s", clattn_last_error()), 0;
    return 1;
}

static void tune_shape(session *ss, shape_run *run)
{
    cl_context cl = clattn_context_cl_context(ss->ctx);
    run->started = 1;
    shape_id(ss, run->s, run->id, sizeof run->id);
    clattn_attention_desc_init(&run->desc);
    run->desc.causal = run->s->causal;
    run->desc.algo = ss->o->algo;
    run->slice_start = now_s();
    run->slice_end = run->slice_start +
                     (ss->end - run->slice_start) / (double)(run->of - run->index);
    run->deadline = run->slice_start + (1.0 - CONFIRM_SHARE) * (run->slice_end - run->slice_start);
    if (!make_operands(cl, run->s, &run->op) || !reference_make(run->s, &run->ref))
        snprintf(run->note, sizeof run->note, "out of memory (see above)");
    else if (run_default(ss, run) && list_candidates(ss, run)) {
        run_candidates(ss, run, run->candidates_of);
        confirm(ss, run);
        if (ss->tty)
            fprintf(stderr, "\r\033[K");
    }
    free(run->candidates_of);
    run->candidates_of = NULL;
    reference_free(&run->ref);
    release_operands(&run->op);
}

/* ---------------------------------------------------------------------------------------- */
/* Session                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static int resolve_paths(session *ss)
{
    const tune_options *o = ss->o;
    if (o->tune_file)
        snprintf(ss->tune_path, sizeof ss->tune_path, "%s", o->tune_file);
    else if (!clattn_tunedb_user_path(ss->tune_path, sizeof ss->tune_path))
        return fprintf(stderr, "clattn-bench: no user tuning file (CLATTN_TUNING_DB unset and "
                               "no kernel cache directory); give --tune-file\n"), 0;
    if (o->progress_file)
        snprintf(ss->progress_path, sizeof ss->progress_path, "%s", o->progress_file);
    else
        snprintf(ss->progress_path, sizeof ss->progress_path, "%s.progress", ss->tune_path);
    return 1;
}

static int session_open(session *ss, const tune_options *o)
{
    memset(ss, 0, sizeof *ss);
    ss->o = o;
    if (!resolve_paths(ss) || !tune_file_usable(ss->tune_path))
        return 0;
    clattn_status st = clattn_context_create(o->device, &ss->ctx);
    if (st != CLATTN_SUCCESS)
        return bench_fail("clattn_context_create", st);
    clattn_context_device_key(ss->ctx, ss->device_key, sizeof ss->device_key);
    if (!progress_open(&ss->prog, ss->progress_path))
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    ss->tty = isatty(2);
    ss->start = now_s();
    ss->end = ss->start + o->budget_s;
    return 1;
}

static void session_close(session *ss)
{
    progress_close(&ss->prog);
    clattn_context_release(ss->ctx);
    signal(SIGINT, SIG_DFL);
}

/* ---------------------------------------------------------------------------------------- */
/* Results                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* The tuning entry of run i, unless a later run has the same key (then that one wins). */
static int entry_of(shape_run *runs, size_t n, size_t i, tune_entry *e)
{
    char t[64], dt[64], date[32], text[200];
    time_t now = time(NULL);
    struct tm tm;
    for (size_t j = i + 1; j < n; j++)
        if (runs[j].confirmed && clattn_tune_same_key(&runs[i].entry.key, &runs[j].entry.key))
            return runs[i].superseded_by = j + 1, 0;
    e->entry = runs[i].entry;
    e->entry.rows = runs[i].final.t.rows;
    e->entry.wg = runs[i].final.t.wg;
    e->entry.block_n = runs[i].final.t.block_n;
    e->entry.vec = runs[i].final.t.vec;
    tiling_text(&runs[i].final.t, t, sizeof t);
    tiling_text(&runs[i].dflt.t, dt, sizeof dt);
    shape_text(runs[i].s, text, sizeof text);
    strftime(date, sizeof date, "%Y-%m-%d", gmtime_r(&now, &tm));
    snprintf(e->comment, sizeof e->comment, "# clattn-bench --tune %s: %s: %s %.3f ms; default "
             "%s %.3f ms", date, text, t, runs[i].final.ms, dt, runs[i].final_dflt_ms);
    return 1;
}

static int write_results(const session *ss, shape_run *runs, size_t n, size_t *written)
{
    tune_entry *e = calloc(n ? n : 1, sizeof *e);
    size_t k = 0;
    for (size_t i = 0; e && i < n; i++)
        if (runs[i].confirmed && entry_of(runs, n, i, &e[k]))
            k++;
    int ok = e && (k == 0 || tune_file_merge(ss->tune_path, e, k));
    free(e);
    *written = k;
    return ok;
}

static void summary_row(const shape_run *r)
{
    char name[200], dt[64] = "-", bt[64] = "-", dms[16] = "-", bms[16] = "-", speed[16] = "-";
    shape_text(r->s, name, sizeof name);
    if (r->done)
        tiling_text(&r->dflt.t, dt, sizeof dt);
    if (r->done && r->final_dflt_ms > 0)
        snprintf(dms, sizeof dms, "%.3f", r->final_dflt_ms);
    if (r->have_best)
        tiling_text(&r->final.t, bt, sizeof bt), snprintf(bms, sizeof bms, "%.3f", r->final.ms);
    if (r->have_best && r->final_dflt_ms > 0)
        snprintf(speed, sizeof speed, "%.2fx", r->final_dflt_ms / r->final.ms);
    printf("%-60s %-9s %-26s %9s  %-26s %9s %7s %5zu %7zu %6zu %4zu %7zu\n", name,
           !r->done ? "-" : r->dflt.tuned ? "tuned" : "heuristic", dt, dms, bt, bms, speed,
           r->tried, r->resumed, r->failed, r->slow, r->skipped);
    if (!r->done)
        printf("  # not tuned: %s\n", r->started ? r->note : "not reached (interrupted)");
    else if (r->dflt.o != OUTCOME_OK)
        printf("  # the default tiling: %s\n", outcome_name(r->dflt.o));
    if (r->superseded_by)
        printf("  # no entry written: shape %zu has the same tuning key (dtype, d, dv, causal, "
               "decode or prefill) and comes later\n", r->superseded_by);
    else if (r->done && !r->compared)
        printf("  # no entry written: no other tiling ran correctly%s\n",
               r->skipped ? " within the budget" : "");
    else if (r->done && !r->confirmed)
        printf("  # no entry written: interrupted before the re-timing (these are the search's "
               "medians); run the same command again to resume\n");
}

static void print_summary(const session *ss, const shape_run *runs, size_t n)
{
    printf("\ntuning summary: %s; %.0f of %.0f s; %d warm-up + %d timed calls per candidate\n",
           ss->device_key, now_s() - ss->start, ss->o->budget_s, ss->o->warmup, ss->o->iters);
    printf("%-60s %-9s %-26s %9s  %-26s %9s %7s %5s %7s %6s %4s %7s\n", "shape", "default",
           "default tiling", "ms", "best tiling", "ms", "speedup", "tried", "resumed", "failed",
           "slow", "skipped");
    for (size_t i = 0; i < n; i++)
        summary_row(&runs[i]);
    printf("ms: median of %d calls; after the search, the default and up to %d fastest were "
           "timed up to %d more times, interleaved, and the lowest median counts\n",
           ss->o->iters, CONFIRM_TOP, CONFIRM_ROUNDS);
}

/* Results in the progress file for these shapes (and this device and algo). */
static size_t earlier_results(const session *ss, const shape *shapes, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        char id[1200];
        shape_id(ss, &shapes[i], id, sizeof id);
        for (size_t k = 0; k < ss->prog.count; k++)
            count += strcmp(ss->prog.items[k].id, id) == 0;
    }
    return count;
}

int tune_run(const tune_options *o, const shape *shapes, size_t n)
{
    session ss;
    size_t written = 0;
    shape_run *runs = calloc(n ? n : 1, sizeof *runs);
    int ok = runs && session_open(&ss, o);
    if (ok) {
        printf("tuning %zu shape%s on %s for %.0f s\ntuning file: %s\nprogress file: %s "
               "(%zu results of these shapes from earlier runs)\n", n, n == 1 ? "" : "s",
               clattn_context_device_name(ss.ctx), o->budget_s, ss.tune_path, ss.progress_path,
               earlier_results(&ss, shapes, n));
        fflush(stdout);
        for (size_t i = 0; i < n && !interrupted; i++) {
            runs[i] = (shape_run){.s = &shapes[i], .index = i, .of = n};
            tune_shape(&ss, &runs[i]);
        }
        for (size_t i = 0; i < n; i++)
            runs[i].s = &shapes[i];
        ok = write_results(&ss, runs, n, &written);
        print_summary(&ss, runs, n);
        if (interrupted)
            printf("interrupted: run the same command again to resume.\n");
        if (ok && written)
            printf("%zu entr%s written to %s (other entries kept)\n"
                   "to share them: attach that file, comment lines included, to an issue "
                   "(docs/tuning.md, \"Sending results back\")\n", written,
                   written == 1 ? "y" : "ies", ss.tune_path);
        else if (ok)
            printf("no entry written; %s unchanged\n", ss.tune_path);
        printf("progress kept in %s (delete it to measure again)\n", ss.progress_path);
    }
    if (runs && ss.o)
        session_close(&ss);
    free(runs);
    return interrupted ? 130 : ok ? 0 : 1;
}
