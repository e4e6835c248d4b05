/*
 * Resource faults (built only with `meson setup -Dfault_injection=true`; see src/fault.h).
 *
 * For each call -- forward fused, split-KV and unfused, backward, merge, and context creation --
 * and each kind of fault -- the Nth OpenCL object creation (alloc), the Nth clBuildProgram
 * (build), the Nth host allocation of the library (host) -- N is swept from 1 until the call no
 * longer reaches an Nth operation of that kind. Each try runs on a fresh context made on the
 * test's own cl_context and queue, so that every build and allocation of the call happens in it,
 * with the kernel cache in three states: off (builds from source), cold (a new empty directory
 * per try: builds and stores) and warm (loads binaries). Each try must:
 *   - fail with the status of its kind (alloc and host: CLATTN_ERROR_OUT_OF_RESOURCES, build:
 *     CLATTN_ERROR_BUILD_FAILED) and a message, or succeed with correct results where the
 *     library can do without what failed (a cached binary that does not load, a cache entry
 *     that cannot be written, a tuning entry);
 *   - leave the context usable: the same call on it right after, without the fault, succeeds
 *     and matches the f64 reference;
 *   - leak no OpenCL object: the cl_context's reference count (which PoCL's buffers and
 *     programs hold, and kernels through their program) returns to what it was before the try
 *     once the clattn context is released;
 *   - say what it did without, at debug level, when it succeeded.
 * Each test logs its counts: tried, failed with the right status, absorbed.
 *
 * Host leaks: run the suite in an ASan build; its leak check, at the exit of each test's
 * process, prints any allocation left behind (none with PoCL 3.1 and CLBlast 1.5.3, without
 * suppressions; a leak planted in program.c's error path shows up with its stack):
 *   meson setup build-faults-asan -Dfault_injection=true -Db_sanitize=address -Db_lundef=false
 *   ninja -C build-faults-asan tests/test_faults
 *   build-faults-asan/tests/test_faults 2>&1 | grep -A8 'leak of'
 * (valgrind cannot run PoCL's AVX-512 kernels.)
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* The test-only hooks of a fault-injection build (src/fault.h); not in clattn.h. */
int clattn_fault_arm(const char *spec);
long clattn_fault_count(const char *kind);
int clattn_fault_fired(void);

static void cleanup(void)
{
    clattn_fault_arm(NULL);
    test_ctx_release();
}

TestSuite(faults, .fini = cleanup);

/* ---- the calls and their expected results ------------------------------------------------- */

/* q [1,2,3,20], k and v [1,1,600,20], causal: GQA, and few rows and enough keys for split-KV to
   split them (2 or 3 ranges, however many compute units). */
static const int64_t QD[4] = {1, 2, 3, 20}, KD[4] = {1, 1, 600, 20};

typedef struct fixture {
    clattn_attention_desc desc;
    test_tensor q, k, v, out, lse;
    double *want_out_data, *want_lse_data;
    ref_tensor want_out, want_lse;
    /* backward: out and lse of the reference as inputs, dout; gradients */
    test_tensor fout, flse, dout, dq, dk, dv;
    test_grads grads;
    /* merge: two parts, their f64 merge */
    test_tensor pout[2], plse[2], mout, mlse;
    double *merge_out, *merge_lse;
} fixture;

static fixture F;

static void reset(test_tensor *t)
{
    canary_fill(t->host, t->bytes);
    tt_push(t);
}

static void fixture_init(void)
{
    test_rng rng;
    rng_seed(&rng, 7);
    clattn_attention_desc_init(&F.desc);
    F.desc.causal = 1;
    const int64_t LD[4] = {QD[0], QD[1], QD[2], 1};
    tt_init(&F.q, CLATTN_F32, QD, &LAYOUT_BHSD);
    tt_init(&F.k, CLATTN_F32, KD, &LAYOUT_BHSD);
    tt_init(&F.v, CLATTN_F32, KD, &LAYOUT_BHSD);
    tt_init(&F.out, CLATTN_F32, QD, &LAYOUT_BHSD);
    tt_init(&F.lse, CLATTN_F32, LD, &LAYOUT_BHSD);
    tt_fill_random(&F.q, &rng, -1.0, 1.0);
    tt_fill_random(&F.k, &rng, -1.0, 1.0);
    tt_fill_random(&F.v, &rng, -0.5, 1.5);
    tt_upload(&F.q, CL_MEM_READ_ONLY);
    tt_upload(&F.k, CL_MEM_READ_ONLY);
    tt_upload(&F.v, CL_MEM_READ_ONLY);
    tt_upload(&F.out, CL_MEM_READ_WRITE);
    tt_upload(&F.lse, CL_MEM_READ_WRITE);
    test_reference_of(test_ref_params_of(&F.desc), &F.q, &F.k, &F.v, NULL, &F.want_out_data,
                      &F.want_out, &F.want_lse_data, &F.want_lse);

    /* the backward's inputs out and lse: the reference's, rounded to f32 */
    tt_init(&F.fout, CLATTN_F32, QD, &LAYOUT_BHSD);
    tt_init(&F.flse, CLATTN_F32, LD, &LAYOUT_BHSD);
    tt_init(&F.dout, CLATTN_F32, QD, &LAYOUT_BHSD);
    for (int64_t h = 0; h < QD[1]; h++)
        for (int64_t s = 0; s < QD[2]; s++) {
            tt_set(&F.flse, 0, h, s, 0, *ref_at(&F.want_lse, 0, h, s, 0));
            for (int64_t d = 0; d < QD[3]; d++)
                tt_set(&F.fout, 0, h, s, d, *ref_at(&F.want_out, 0, h, s, d));
        }
    tt_fill_random(&F.dout, &rng, -1.0, 1.0);
    tt_upload(&F.fout, CL_MEM_READ_ONLY);
    tt_upload(&F.flse, CL_MEM_READ_ONLY);
    tt_upload(&F.dout, CL_MEM_READ_ONLY);
    tt_init(&F.dq, CLATTN_F32, QD, &LAYOUT_BHSD);
    tt_init(&F.dk, CLATTN_F32, KD, &LAYOUT_BHSD);
    tt_init(&F.dv, CLATTN_F32, KD, &LAYOUT_BHSD);
    tt_upload(&F.dq, CL_MEM_READ_WRITE);
    tt_upload(&F.dk, CL_MEM_READ_WRITE);
    tt_upload(&F.dv, CL_MEM_READ_WRITE);
    test_reference_backward_of(test_ref_params_of(&F.desc), &F.q, &F.k, &F.v, &F.dout, NULL,
                               &F.grads);

    /* merge of two random parts, in f64 */
    const size_t rows = (size_t)(QD[0] * QD[1] * QD[2]), dim = (size_t)QD[3];
    for (int p = 0; p < 2; p++) {
        tt_init(&F.pout[p], CLATTN_F32, QD, &LAYOUT_BHSD);
        tt_init(&F.plse[p], CLATTN_F32, LD, &LAYOUT_BHSD);
        tt_fill_random(&F.pout[p], &rng, -1.0, 1.0);
        tt_fill_random(&F.plse[p], &rng, -2.0, 3.0);
        tt_upload(&F.pout[p], CL_MEM_READ_ONLY);
        tt_upload(&F.plse[p], CL_MEM_READ_ONLY);
    }
    tt_init(&F.mout, CLATTN_F32, QD, &LAYOUT_BHSD);
    tt_init(&F.mlse, CLATTN_F32, LD, &LAYOUT_BHSD);
    tt_upload(&F.mout, CL_MEM_READ_WRITE);
    tt_upload(&F.mlse, CL_MEM_READ_WRITE);
    F.merge_out = malloc(rows * dim * sizeof(double));
    F.merge_lse = malloc(rows * sizeof(double));
    cr_assert(F.merge_out && F.merge_lse);
    for (int64_t h = 0; h < QD[1]; h++)
        for (int64_t s = 0; s < QD[2]; s++) {
            const size_t r = (size_t)(h * QD[2] + s);
            const double l0 = tt_get(&F.plse[0], 0, h, s, 0), l1 = tt_get(&F.plse[1], 0, h, s, 0);
            const double m = fmax(l0, l1), l = m + log(exp(l0 - m) + exp(l1 - m));
            F.merge_lse[r] = l;
            for (size_t d = 0; d < dim; d++)
                F.merge_out[r * dim + d] =
                    exp(l0 - l) * tt_get(&F.pout[0], 0, h, s, (int64_t)d) +
                    exp(l1 - l) * tt_get(&F.pout[1], 0, h, s, (int64_t)d);
        }
}

/* A call under test: run it on ctx (with an event when event is not NULL); check asserts
   that its outputs are right. */
typedef struct op {
    const char *name;
    clattn_algo algo;
    clattn_status (*run)(const struct op *o, clattn_context *ctx, cl_event *event);
    void (*check)(const struct op *o);
} op;

static clattn_status run_forward(const op *o, clattn_context *ctx, cl_event *event)
{
    reset(&F.out);
    reset(&F.lse);
    clattn_attention_desc desc = F.desc;
    desc.algo = o->algo;
    return clattn_attention_forward(ctx, &desc, &F.q.view, &F.k.view, &F.v.view, &F.out.view,
                                    &F.lse.view, 0, NULL, event);
}

static void check_forward(const op *o)
{
    char text[256];
    tt_download(&F.out);
    tt_download(&F.lse);
    cmp_result r = compare_out(&F.out, &F.want_out);
    cr_assert(r.worst <= TOL_F32_OUT && r.hard == 0, "%s: out vs reference: %s", o->name,
              cmp_describe(&r, text, sizeof text));
    r = compare_lse(&F.lse, &F.want_lse);
    cr_assert(r.worst <= TOL_F32_LSE && r.hard == 0, "%s: lse vs reference: %s", o->name,
              cmp_describe(&r, text, sizeof text));
}

static clattn_status run_backward(const op *o, clattn_context *ctx, cl_event *event)
{
    (void)o;
    reset(&F.dq);
    reset(&F.dk);
    reset(&F.dv);
    return clattn_attention_backward(ctx, &F.desc, &F.q.view, &F.k.view, &F.v.view, &F.fout.view,
                                     &F.dout.view, &F.flse.view, &F.dq.view, &F.dk.view,
                                     &F.dv.view, 0, NULL, event);
}

static void check_backward(const op *o)
{
    char text[256];
    const double tol = test_grad_tolerance(CLATTN_F32, CLATTN_F32);
    const test_tensor *got[3] = {&F.dq, &F.dk, &F.dv};
    const ref_tensor *want[3] = {&F.grads.dq, &F.grads.dk, &F.grads.dv};
    for (int i = 0; i < 3; i++) {
        tt_download((test_tensor *)got[i]);
        cmp_result r = compare_grad(got[i], want[i], NULL);
        cr_assert(r.worst <= tol && r.hard == 0, "%s: %s vs reference: %s", o->name,
                  i == 0 ? "dq" : i == 1 ? "dk" : "dv", cmp_describe(&r, text, sizeof text));
    }
}

static clattn_status run_merge(const op *o, clattn_context *ctx, cl_event *event)
{
    (void)o;
    reset(&F.mout);
    reset(&F.mlse);
    const clattn_tensor outs[2] = {F.pout[0].view, F.pout[1].view};
    const clattn_tensor lses[2] = {F.plse[0].view, F.plse[1].view};
    return clattn_attention_merge(ctx, 2, outs, lses, &F.mout.view, &F.mlse.view, 0, NULL,
                                  event);
}

static void check_merge(const op *o)
{
    tt_download(&F.mout);
    tt_download(&F.mlse);
    const size_t dim = (size_t)QD[3];
    for (int64_t h = 0; h < QD[1]; h++)
        for (int64_t s = 0; s < QD[2]; s++) {
            const size_t r = (size_t)(h * QD[2] + s);
            const double lse = tt_get(&F.mlse, 0, h, s, 0);
            cr_assert(fabs(lse - F.merge_lse[r]) <= 2e-5 * fmax(1.0, fabs(F.merge_lse[r])),
                      "%s: lse[%ld,%ld] = %.9g, want %.9g", o->name, (long)h, (long)s, lse,
                      F.merge_lse[r]);
            for (size_t d = 0; d < dim; d++) {
                const double got = tt_get(&F.mout, 0, h, s, (int64_t)d),
                             want = F.merge_out[r * dim + d];
                cr_assert(fabs(got - want) <= 2e-5, "%s: out[%ld,%ld,%zu] = %.9g, want %.9g",
                          o->name, (long)h, (long)s, d, got, want);
            }
        }
}

static const op OP_FUSED = {"forward fused", CLATTN_ALGO_FUSED, run_forward, check_forward};
static const op OP_SPLIT = {"forward split-KV", CLATTN_ALGO_SPLIT_KV, run_forward, check_forward};
static const op OP_UNFUSED = {"forward unfused", CLATTN_ALGO_UNFUSED, run_forward, check_forward};
static const op OP_BACKWARD = {"backward", CLATTN_ALGO_AUTO, run_backward, check_backward};
static const op OP_MERGE = {"merge", CLATTN_ALGO_AUTO, run_merge, check_merge};

/* ---- OpenCL leaks: the cl_context's reference count ------------------------------------- */

static cl_uint context_refs(void)
{
    cl_uint n = 0;
    cr_assert_eq(clGetContextInfo(test_cl_context(), CL_CONTEXT_REFERENCE_COUNT, sizeof n, &n,
                                  NULL), CL_SUCCESS);
    return n;
}

/* The count once the runtime has dropped the references of released objects and finished
   commands, which it may do a little after clFinish: the first value that holds for 20 ms. */
static cl_uint settled_context_refs(void)
{
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    cl_uint n = context_refs();
    for (int i = 0, same = 0; i < 1000 && same < 20; i++) {
        const struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        const cl_uint m = context_refs();
        same = m == n ? same + 1 : 0;
        n = m;
    }
    return n;
}

/* Wait for the queue, then for the count to come back to `baseline` (the runtime may drop
   the references of finished commands a little later). */
static void assert_no_cl_leak(cl_uint baseline, const char *what)
{
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    cl_uint n = context_refs();
    for (int i = 0; i < 200 && n > baseline; i++) {
        const struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
        n = context_refs();
    }
    cr_assert_eq(n, baseline, "%s: the cl_context holds %u references, %u before: an OpenCL "
                 "object leaked", what, n, baseline);
}

/* ---- what the library said ------------------------------------------------------------- */

/* A fault the library did without must be explained at debug level: a cache entry rebuilt,
   not used or not stored, tuning entries dropped or not read. */
static void assert_explained(const char *what)
{
    static const char *const reasons[] = {"rebuilding", "not used", "cannot store", "dropped",
                                          "not readable"};
    cr_assert(strstr(test_log, "fault injection: failing"), "%s: no injection line; log:\n%s",
              what, test_log);
    const char *after = strstr(test_log, "fault injection: failing");
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (strstr(after, reasons[i]))
            return;
    cr_assert_fail("%s: the call did without the failed operation but did not say so; log:\n%s",
                   what, test_log);
}

/* ---- the sweep --------------------------------------------------------------------------- */

typedef enum cache_state { CACHE_OFF, CACHE_COLD, CACHE_WARM, CACHE_STATES } cache_state;
static const char *const cache_names[CACHE_STATES] = {"cache off", "cold cache", "warm cache"};

static char cache_root[256];
static int cache_serial;

/* Point the kernel cache at a state: off, a new empty directory, or the warm directory. */
static void set_cache(cache_state state)
{
    char dir[320];
    if (state == CACHE_OFF) {
        setenv("CLATTN_CACHE_DIR", "off", 1);
        return;
    }
    if (state == CACHE_WARM)
        snprintf(dir, sizeof dir, "%s/warm", cache_root);
    else
        snprintf(dir, sizeof dir, "%s/cold-%d", cache_root, cache_serial++);
    setenv("CLATTN_CACHE_DIR", dir, 1);
}

static void make_cache_root(void)
{
    snprintf(cache_root, sizeof cache_root, "/tmp/clattn-faults-%d-XXXXXX", (int)getpid());
    cr_assert_not_null(mkdtemp(cache_root), "mkdtemp");
}

static void remove_cache_root(void)
{
    char command[320];
    snprintf(command, sizeof command, "rm -rf '%s'", cache_root);
    if (system(command) != 0)
        cr_log_warn("could not remove %s", cache_root);
}

typedef struct tally {
    int tried, failed, absorbed;
} tally;

static clattn_context *fresh_context(void)
{
    clattn_context *ctx = NULL;
    clattn_status s = clattn_context_create_from_queue(test_queue(), &ctx);
    TEST_CHECK_STATUS(s, "clattn_context_create_from_queue");
    return ctx;
}

static clattn_status expected_status(const char *kind)
{
    return strcmp(kind, "build") == 0 ? CLATTN_ERROR_BUILD_FAILED : CLATTN_ERROR_OUT_OF_RESOURCES;
}

/* Fail the Nth operation of `kind` in o's call, for N = 1, 2, ... until the call has fewer. */
static void sweep(const op *o, const char *kind, cache_state state, cl_uint baseline, tally *t)
{
    const clattn_status expect = expected_status(kind);
    for (long n = 1;; n++) {
        cr_assert_lt(n, 10000, "%s: the sweep does not end", o->name);
        set_cache(state);
        clattn_context *ctx = fresh_context();
        char spec[64];
        snprintf(spec, sizeof spec, "%s:%ld", kind, n);
        cr_assert_eq(clattn_fault_arm(spec), 0);
        test_log_start();
        cl_event event = (cl_event)&event; /* must become a new event or NULL */
        clattn_status s = o->run(o, ctx, &event);
        const int fired = clattn_fault_fired();
        const long seen = clattn_fault_count(kind);
        clattn_fault_arm(NULL);
        clattn_set_log_callback(NULL, NULL);
        if (s == CLATTN_SUCCESS) {
            cr_assert(event && event != (cl_event)&event, "%s, %s: no event", o->name, spec);
            cr_assert_eq(clWaitForEvents(1, &event), CL_SUCCESS);
            clReleaseEvent(event);
        } else {
            cr_assert_null(event, "%s, %s: a failed call returned an event", o->name, spec);
        }
        if (!fired) {
            /* past the call's last operation of this kind: a clean call */
            cr_assert_eq(seen, n - 1, "%s, %s: %ld operations, then %ld", o->name, kind, n - 1,
                         seen);
            TEST_CHECK_STATUS(s, o->name);
            o->check(o);
            clattn_context_release(ctx);
            assert_no_cl_leak(baseline, o->name);
            cr_log_info("%s, %s, %s: %ld operations", o->name, cache_names[state], kind, n - 1);
            return;
        }
        t->tried++;
        char what[160];
        snprintf(what, sizeof what, "%s, %s, %s", o->name, cache_names[state], spec);
        if (s == CLATTN_SUCCESS) {
            t->absorbed++;
            assert_explained(what);
            o->check(o);
        } else {
            cr_assert_eq(s, expect, "%s, %s, %s: got %s (%s), want %s", o->name,
                         cache_names[state], spec, clattn_status_string(s), clattn_last_error(),
                         clattn_status_string(expect));
            cr_assert_neq(clattn_last_error()[0], '\0', "%s, %s: no message", o->name, spec);
            t->failed++;
        }
        s = o->run(o, ctx, NULL);
        cr_assert_eq(s, CLATTN_SUCCESS, "%s, %s, %s: the call after the fault: %s: %s", o->name,
                     cache_names[state], spec, clattn_status_string(s), clattn_last_error());
        o->check(o);
        clattn_context_release(ctx);
        assert_no_cl_leak(baseline, what);
    }
}

/* Every kind of fault in every cache state for o. */
static void sweep_all(const op *o)
{
    cr_assert_eq(clattn_fault_arm(NULL), 0, "the library was not built with fault injection");
    make_cache_root();
    fixture_init();
    /* warm-up on a context of its own: fills the warm cache directory and any cache of the
       runtime or CLBlast for this cl_context; checks the call runs at all */
    set_cache(CACHE_WARM);
    clattn_context *ctx = fresh_context();
    clattn_status s = o->run(o, ctx, NULL);
    if (s == CLATTN_ERROR_UNSUPPORTED) {
        clattn_context_release(ctx);
        remove_cache_root();
        cr_skip_test("%s: %s", o->name, clattn_last_error());
    }
    TEST_CHECK_STATUS(s, o->name);
    o->check(o);
    if (o->run == run_forward) {
        char plan[256];
        clattn_attention_desc desc = F.desc;
        desc.algo = o->algo;
        TEST_CHECK_STATUS(clattn_attention_plan(ctx, &desc, &F.q.view, &F.k.view, &F.v.view,
                                                plan, sizeof plan), "plan");
        cr_log_info("%s: %s", o->name, plan);
    }
    clattn_context_release(ctx);
    const cl_uint baseline = settled_context_refs();

    static const char *const kinds[] = {"alloc", "build", "host"};
    tally t = {0, 0, 0};
    for (int state = 0; state < CACHE_STATES; state++)
        for (int k = 0; k < 3; k++)
            sweep(o, kinds[k], (cache_state)state, baseline, &t);
    remove_cache_root();
    cr_log_info("%s: %d faults tried: %d failed with the right status, %d absorbed; every next "
                "call correct, no OpenCL object leaked", o->name, t.tried, t.failed, t.absorbed);
    fprintf(stderr, "faults: %s: tried %d failed %d absorbed %d\n", o->name, t.tried, t.failed,
            t.absorbed);
}

Test(faults, forward_fused) { sweep_all(&OP_FUSED); }
Test(faults, forward_split_kv) { sweep_all(&OP_SPLIT); }
Test(faults, forward_unfused) { sweep_all(&OP_UNFUSED); }
Test(faults, backward) { sweep_all(&OP_BACKWARD); }
Test(faults, merge) { sweep_all(&OP_MERGE); }

/* ---- a miscompiled program ---------------------------------------------------------------- */

static const op OP_AUTO = {"forward auto", CLATTN_ALGO_AUTO, run_forward, check_forward};

/* The call's outputs still hold the canary that run_* put there. */
static void assert_nothing_written(const op *o)
{
    const test_tensor *forward[] = {&F.out, &F.lse}, *backward[] = {&F.dq, &F.dk, &F.dv};
    const int is_forward = o->run == run_forward;
    for (int i = 0; i < (is_forward ? 2 : 3); i++) {
        const test_tensor *t = is_forward ? forward[i] : backward[i];
        size_t first_bad = 0;
        cr_assert(buf_canary_intact(t->view.buffer, &first_bad),
                  "%s: a refused call wrote output %d (byte %zu)", o->name, i, first_bad);
    }
}

/* A refused call: UNSUPPORTED, naming the check and the device, writing nothing. */
static void assert_refused(const op *o, clattn_status s, const char *when)
{
    const char *msg = clattn_last_error();
    cr_assert_eq(s, CLATTN_ERROR_UNSUPPORTED, "%s, %s: got %s: %s", o->name, when,
                 clattn_status_string(s), msg);
    cr_assert(strstr(msg, "known-answer check") &&
                  strstr(msg, clattn_context_device_name(test_ctx())),
              "%s, %s: the message should name the check and the device: %s", o->name, when,
              msg);
    assert_nothing_written(o);
}

/* A program that builds and runs but answers wrong (miscompile:1, src/fault.h: its build
   reads q, k and v as another type) fails its known-answer check (src/check.h): the call that
   needs it writes nothing and returns UNSUPPORTED naming the device and the check, again in
   a new context from the verdict the disk cache keeps (without building it again); AUTO runs
   the unfused path instead, and its plan says why. */
Test(faults, miscompiled_program_is_refused)
{
    cr_assert_eq(clattn_fault_arm(NULL), 0, "the library was not built with fault injection");
    make_cache_root();
    fixture_init();
    const op *const ops[] = {&OP_FUSED, &OP_BACKWARD};
    for (size_t i = 0; i < 2; i++) {
        const op *o = ops[i];
        set_cache(CACHE_COLD);
        clattn_context *ctx = fresh_context();
        cr_assert_eq(clattn_fault_arm("miscompile:1"), 0);
        clattn_status s = o->run(o, ctx, NULL);
        cr_assert(clattn_fault_fired(), "%s: no program was built", o->name);
        clattn_fault_arm(NULL);
        assert_refused(o, s, "the call that built it");
        assert_refused(o, o->run(o, ctx, NULL), "the next call");
        clattn_context_release(ctx);

        ctx = fresh_context();
        test_log_start();
        s = o->run(o, ctx, NULL);
        clattn_set_log_callback(NULL, NULL);
        assert_refused(o, s, "a new context");
        cr_assert(test_logged("(a refused program)") && clattn_fault_count("miscompile") == 0,
                  "%s: the refusal was not taken from the disk cache; log:\n%s", o->name,
                  test_log);
        clattn_context_release(ctx);
    }

    /* AUTO: the unfused path, when this build has one */
    set_cache(CACHE_COLD);
    clattn_context *ctx = fresh_context();
    clattn_attention_desc desc = F.desc;
    desc.algo = CLATTN_ALGO_UNFUSED;
    char plan[2048];
    const int unfused = clattn_attention_plan(ctx, &desc, &F.q.view, &F.k.view, &F.v.view, plan,
                                              sizeof plan) == CLATTN_SUCCESS;
    cr_assert_eq(clattn_fault_arm("miscompile:1"), 0);
    clattn_status s = OP_AUTO.run(&OP_AUTO, ctx, NULL);
    clattn_fault_arm(NULL);
    if (!unfused) {
        assert_refused(&OP_AUTO, s, "AUTO without an unfused path");
    } else {
        cr_assert_eq(s, CLATTN_SUCCESS, "AUTO with the fused kernel refused: %s: %s",
                     clattn_status_string(s), clattn_last_error());
        check_forward(&OP_AUTO);
        desc.algo = CLATTN_ALGO_AUTO;
        TEST_CHECK_STATUS(clattn_attention_plan(ctx, &desc, &F.q.view, &F.k.view, &F.v.view,
                                                plan, sizeof plan), "plan");
        cr_assert(strncmp(plan, "unfused", 7) == 0 && strstr(plan, "refused"),
                  "AUTO's plan should say it runs unfused, and why: %s", plan);
    }
    clattn_context_release(ctx);
    remove_cache_root();
}

/* Host faults while making a context (device list, probe, tuning database): the create fails
   with OUT_OF_RESOURCES or gives a context that works; nothing leaks. */
Test(faults, context_create)
{
    fixture_init();
    const cl_uint baseline = settled_context_refs();
    tally t = {0, 0, 0};
    for (int from_queue = 0; from_queue < 2; from_queue++) {
        for (long n = 1;; n++) {
            cr_assert_lt(n, 10000);
            char spec[64];
            snprintf(spec, sizeof spec, "host:%ld", n);
            clattn_context *ctx = NULL;
            cr_assert_eq(clattn_fault_arm(spec), 0);
            test_log_start();
            clattn_status s = from_queue ? clattn_context_create_from_queue(test_queue(), &ctx)
                                         : clattn_context_create(getenv("CLATTN_TEST_DEVICE"),
                                                                 &ctx);
            const int fired = clattn_fault_fired();
            clattn_fault_arm(NULL);
            clattn_set_log_callback(NULL, NULL);
            if (fired)
                t.tried++;
            if (s != CLATTN_SUCCESS) {
                cr_assert(fired, "create failed without a fault: %s", clattn_last_error());
                cr_assert_eq(s, CLATTN_ERROR_OUT_OF_RESOURCES, "%s: %s: %s", spec,
                             clattn_status_string(s), clattn_last_error());
                cr_assert_null(ctx, "%s: a failed create left *ctx set", spec);
                cr_assert_neq(clattn_last_error()[0], '\0');
                t.failed++;
                continue;
            }
            if (fired) {
                t.absorbed++;
                assert_explained(spec);
            }
            if (from_queue) {
                /* a context that made do (e.g. without a tuning entry) still computes */
                TEST_CHECK_STATUS(OP_FUSED.run(&OP_FUSED, ctx, NULL), "forward on it");
                OP_FUSED.check(&OP_FUSED);
            }
            clattn_context_release(ctx);
            if (from_queue)
                assert_no_cl_leak(baseline, spec);
            if (!fired) {
                cr_log_info("context_create%s: %ld host allocations",
                            from_queue ? "_from_queue" : "", n - 1);
                break;
            }
        }
    }
    cr_log_info("context create: %d faults tried: %d failed, %d absorbed", t.tried, t.failed,
                t.absorbed);
    fprintf(stderr, "faults: context create: tried %d failed %d absorbed %d\n", t.tried, t.failed,
            t.absorbed);
}

/* CLATTN_FAULT_AT, read at the library's first counted operation: the first build fails. */
Test(faults, environment_variable)
{
    setenv("CLATTN_FAULT_AT", "build:1", 1);
    setenv("CLATTN_CACHE_DIR", "off", 1);
    fixture_init(); /* makes the test context: host allocations only, no build yet */
    clattn_status s = run_forward(&OP_FUSED, test_ctx(), NULL);
    cr_assert_eq(s, CLATTN_ERROR_BUILD_FAILED, "got %s: %s", clattn_status_string(s),
                 clattn_last_error());
    cr_assert(clattn_fault_fired());
    TEST_CHECK_STATUS(run_forward(&OP_FUSED, test_ctx(), NULL), "the next call");
    check_forward(&OP_FUSED);
}
