/* Context, status, version, last-error, log and dropout-decision API. Tests that need an OpenCL
   device skip (with the reason) when the default selector finds none. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clattn.h"

/* Each Criterion test runs in its own process; start every one without a selector override. */
static void clear_env(void)
{
    unsetenv("CLATTN_DEVICE");
    unsetenv("CLATTN_LOG");
}

TestSuite(context, .init = clear_env);
TestSuite(status, .init = clear_env);
TestSuite(last_error, .init = clear_env);
TestSuite(log, .init = clear_env);
TestSuite(dropout, .init = clear_env);

/* A default context, or skip the test when the machine has no OpenCL device. */
static clattn_context *default_context_or_skip(void)
{
    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create(NULL, &ctx);
    if (st == CLATTN_ERROR_DEVICE_NOT_FOUND)
        cr_skip_test("no OpenCL device: %s", clattn_last_error());
    cr_assert_eq(st, CLATTN_SUCCESS, "create(NULL): %s: %s", clattn_status_string(st),
                 clattn_last_error());
    cr_assert_not_null(ctx);
    return ctx;
}

static cl_device_id queue_device(cl_command_queue q)
{
    cl_device_id dev = NULL;
    cr_assert_eq(clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof dev, &dev, NULL), CL_SUCCESS);
    return dev;
}

static cl_device_type device_type(cl_device_id dev)
{
    cl_device_type t = 0;
    cr_assert_eq(clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof t, &t, NULL), CL_SUCCESS);
    return t;
}

/* ---------------------------------------------------------------------------------------- */
/* Device selection                                                                          */
/* ---------------------------------------------------------------------------------------- */

static void expect_creates(const char *sel)
{
    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create(sel, &ctx);
    cr_expect_eq(st, CLATTN_SUCCESS, "create(\"%s\"): %s: %s", sel ? sel : "(null)",
                 clattn_status_string(st), clattn_last_error());
    if (st != CLATTN_SUCCESS)
        return;
    cr_expect_not_null(ctx, "create(\"%s\") succeeded with *ctx == NULL", sel ? sel : "(null)");
    cr_expect_str_eq(clattn_last_error(), "", "last error after create(\"%s\")",
                     sel ? sel : "(null)");
    cr_expect_neq(clattn_context_device_name(ctx)[0], '\0');
    clattn_context_release(ctx);
}

Test(context, create_with_selectors)
{
    clattn_context *def = default_context_or_skip();
    cl_device_type type = device_type(queue_device(clattn_context_queue(def)));
    clattn_context_release(def);
    expect_creates(NULL);
    expect_creates("");
    expect_creates("0:0");
    if (type & CL_DEVICE_TYPE_CPU)
        expect_creates("cpu");
    if (type & CL_DEVICE_TYPE_GPU)
        expect_creates("gpu");
}

Test(context, create_by_platform_substring_case_insensitive)
{
    clattn_context *def = default_context_or_skip();
    cl_device_id dev = queue_device(clattn_context_queue(def));
    cl_platform_id plat = NULL;
    char vendor[256] = "";
    clGetDeviceInfo(dev, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL);
    clGetPlatformInfo(plat, CL_PLATFORM_VENDOR, sizeof vendor, vendor, NULL);
    clattn_context_release(def);
    if (strstr(vendor, "pocl") == NULL)
        cr_skip_test("default platform is \"%s\", not PoCL", vendor);
    expect_creates("pocl");
    expect_creates("PoCL");
    expect_creates("POCL");
    expect_creates("Portable Computing");
}

Test(context, create_by_device_name_substring)
{
    clattn_context *def = default_context_or_skip();
    char name[256];
    snprintf(name, sizeof name, "%s", clattn_context_device_name(def));
    clattn_context_release(def);
    expect_creates(name);
}

/* create(sel) must fail with DEVICE_NOT_FOUND, *ctx NULL, and list the device named `name`. */
static void expect_not_found(const char *sel, const char *name)
{
    clattn_context *ctx = (clattn_context *)&ctx;   /* not NULL: must be overwritten */
    clattn_status st = clattn_context_create(sel, &ctx);
    cr_expect_eq(st, CLATTN_ERROR_DEVICE_NOT_FOUND, "create(\"%s\"): %s", sel,
                 clattn_status_string(st));
    cr_expect_null(ctx, "create(\"%s\") failed but left *ctx non-NULL", sel);
    if (st == CLATTN_SUCCESS) {
        clattn_context_release(ctx);
        return;
    }
    const char *msg = clattn_last_error();
    cr_expect_not_null(strstr(msg, name), "message of create(\"%s\") does not list \"%s\": \"%s\"",
                       sel, name, msg);
}

Test(context, unknown_selectors_list_the_devices)
{
    clattn_context *def = default_context_or_skip();
    char name[256];
    snprintf(name, sizeof name, "%s", clattn_context_device_name(def));
    cl_device_type type = device_type(queue_device(clattn_context_queue(def)));
    clattn_context_release(def);
    expect_not_found("nonexistent-device-xyz", name);
    expect_not_found("9:9", name);
    expect_not_found("0:99", name);
    /* The default prefers a GPU: a CPU default means there is no GPU to find. */
    if (!(type & (CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_ACCELERATOR)))
        expect_not_found("gpu", name);
}

Test(context, env_selector_is_used_for_null_and_empty)
{
    clattn_context *def = default_context_or_skip();
    char name[256];
    snprintf(name, sizeof name, "%s", clattn_context_device_name(def));
    cl_device_type type = device_type(queue_device(clattn_context_queue(def)));
    clattn_context_release(def);

    cr_assert_eq(setenv("CLATTN_DEVICE", "nonexistent", 1), 0);
    expect_not_found(NULL, name);
    expect_not_found("", name);
    expect_creates("0:0");   /* an explicit selector ignores the variable */

    cr_assert_eq(setenv("CLATTN_DEVICE", "0:0", 1), 0);
    expect_creates(NULL);
    if (type & CL_DEVICE_TYPE_CPU) {
        cr_assert_eq(setenv("CLATTN_DEVICE", "cpu", 1), 0);
        expect_creates(NULL);
        expect_creates("");
    }
    cr_assert_eq(setenv("CLATTN_DEVICE", "", 1), 0);   /* empty: as if unset */
    expect_creates(NULL);
}

Test(context, create_with_null_ctx_is_invalid_argument)
{
    clattn_status st = clattn_context_create(NULL, NULL);
    cr_expect_eq(st, CLATTN_ERROR_INVALID_ARGUMENT, "%s", clattn_status_string(st));
    cr_expect_neq(clattn_last_error()[0], '\0', "no message");
    st = clattn_context_create("cpu", NULL);
    cr_expect_eq(st, CLATTN_ERROR_INVALID_ARGUMENT, "%s", clattn_status_string(st));
}

Test(context, release_null_is_a_no_op)
{
    clattn_context_release(NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* Accessors and the library's queue                                                         */
/* ---------------------------------------------------------------------------------------- */

Test(context, accessors_describe_one_device_and_queue)
{
    clattn_context *ctx = default_context_or_skip();
    cl_context clctx = clattn_context_cl_context(ctx);
    cl_command_queue q = clattn_context_queue(ctx);
    cr_assert_not_null(clctx);
    cr_assert_not_null(q);
    cl_context qctx = NULL;
    cr_assert_eq(clGetCommandQueueInfo(q, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL),
                 CL_SUCCESS);
    cr_expect_eq(qctx, clctx, "the queue belongs to another cl_context");
    char clname[256] = "";
    clGetDeviceInfo(queue_device(q), CL_DEVICE_NAME, sizeof clname, clname, NULL);
    const char *name = clattn_context_device_name(ctx);
    cr_assert_not_null(name);
    cr_expect(name[0] != '\0' && (strstr(clname, name) || strstr(name, clname)),
              "device name \"%s\" vs CL_DEVICE_NAME \"%s\"", name, clname);
    clattn_context_release(ctx);
}

Test(context, own_queue_is_in_order_with_profiling)
{
    clattn_context *ctx = default_context_or_skip();
    cl_command_queue_properties props = 0;
    cr_assert_eq(clGetCommandQueueInfo(clattn_context_queue(ctx), CL_QUEUE_PROPERTIES,
                                       sizeof props, &props, NULL), CL_SUCCESS);
    cr_expect(props & CL_QUEUE_PROFILING_ENABLE, "no CL_QUEUE_PROFILING_ENABLE");
    cr_expect(!(props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE), "out-of-order queue");
    clattn_context_release(ctx);
}

/* ---------------------------------------------------------------------------------------- */
/* create_from_queue                                                                         */
/* ---------------------------------------------------------------------------------------- */

typedef struct caller_cl {
    cl_context context;
    cl_command_queue queue;
} caller_cl;

/* A cl_context and queue made by the test itself on the default context's device. */
static caller_cl caller_queue_or_skip(cl_command_queue_properties props)
{
    clattn_context *def = default_context_or_skip();
    cl_device_id dev = queue_device(clattn_context_queue(def));
    caller_cl c;
    cl_int err = CL_SUCCESS;
    c.context = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateContext: %d", err);
    c.queue = clCreateCommandQueue(c.context, dev, props, &err);
    clattn_context_release(def);
    if (err == CL_INVALID_QUEUE_PROPERTIES || err == CL_INVALID_VALUE) {
        clReleaseContext(c.context);
        cr_skip_test("the device has no queue with properties 0x%llx (%d)",
                     (unsigned long long)props, err);
    }
    cr_assert_eq(err, CL_SUCCESS, "clCreateCommandQueue: %d", err);
    return c;
}

static cl_uint queue_refcount(cl_command_queue q)
{
    cl_uint n = 0;
    cr_assert_eq(clGetCommandQueueInfo(q, CL_QUEUE_REFERENCE_COUNT, sizeof n, &n, NULL),
                 CL_SUCCESS);
    return n;
}

/* Write and read back a small buffer through q: the queue still works. */
static void expect_queue_usable(cl_context context, cl_command_queue q)
{
    cl_int err = CL_SUCCESS;
    float in[16], out[16] = {0};
    for (int i = 0; i < 16; i++)
        in[i] = (float)i + 0.5f;
    cl_mem m = clCreateBuffer(context, CL_MEM_READ_WRITE, sizeof in, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS);
    cr_expect_eq(clEnqueueWriteBuffer(q, m, CL_TRUE, 0, sizeof in, in, 0, NULL, NULL),
                 CL_SUCCESS);
    cr_expect_eq(clEnqueueReadBuffer(q, m, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL),
                 CL_SUCCESS);
    cr_expect_eq(clFinish(q), CL_SUCCESS);
    cr_expect_arr_eq(in, out, sizeof in);
    clReleaseMemObject(m);
}

Test(context, from_queue_borrows_and_retains_the_queue)
{
    caller_cl c = caller_queue_or_skip(0);
    cl_uint before = queue_refcount(c.queue);
    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create_from_queue(c.queue, &ctx);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s", clattn_status_string(st), clattn_last_error());
    cr_assert_not_null(ctx);
    cr_expect_str_eq(clattn_last_error(), "");
    cr_expect_eq(clattn_context_queue(ctx), c.queue, "accessor returns another queue");
    cr_expect_eq(clattn_context_cl_context(ctx), c.context, "accessor returns another context");
    cr_expect_neq(clattn_context_device_name(ctx)[0], '\0');
    cr_expect_gt(queue_refcount(c.queue), before, "the queue is not retained");
    clattn_context_release(ctx);
    cr_expect_eq(queue_refcount(c.queue), before, "release does not give the queue back");
    expect_queue_usable(c.context, c.queue);
    clReleaseCommandQueue(c.queue);
    clReleaseContext(c.context);
}

Test(context, from_queue_outlives_the_callers_reference)
{
    caller_cl c = caller_queue_or_skip(0);
    clattn_context *ctx = NULL;
    cr_assert_eq(clattn_context_create_from_queue(c.queue, &ctx), CLATTN_SUCCESS, "%s",
                 clattn_last_error());
    clReleaseCommandQueue(c.queue);
    clReleaseContext(c.context);
    /* The context now holds the only references. */
    expect_queue_usable(clattn_context_cl_context(ctx), clattn_context_queue(ctx));
    clattn_context_release(ctx);
}

Test(context, from_queue_rejects_out_of_order_queue)
{
    caller_cl c = caller_queue_or_skip(CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE);
    clattn_context *ctx = (clattn_context *)&ctx;
    clattn_status st = clattn_context_create_from_queue(c.queue, &ctx);
    cr_expect_eq(st, CLATTN_ERROR_INVALID_ARGUMENT, "%s", clattn_status_string(st));
    cr_expect_null(ctx, "*ctx not NULL after failure");
    cr_expect_neq(clattn_last_error()[0], '\0', "no message");
    if (st == CLATTN_SUCCESS)
        clattn_context_release(ctx);
    clReleaseCommandQueue(c.queue);
    clReleaseContext(c.context);
}

Test(context, from_queue_rejects_null)
{
    clattn_context *ctx = (clattn_context *)&ctx;
    clattn_status st = clattn_context_create_from_queue(NULL, &ctx);
    cr_expect_eq(st, CLATTN_ERROR_INVALID_ARGUMENT, "%s", clattn_status_string(st));
    cr_expect_null(ctx, "*ctx not NULL after failure");
    cr_expect_neq(clattn_last_error()[0], '\0', "no message");
}

Test(context, from_queue_rejects_null_ctx)
{
    caller_cl c = caller_queue_or_skip(0);
    clattn_status st = clattn_context_create_from_queue(c.queue, NULL);
    cr_expect_eq(st, CLATTN_ERROR_INVALID_ARGUMENT, "%s", clattn_status_string(st));
    clReleaseCommandQueue(c.queue);
    clReleaseContext(c.context);
}

/* ---------------------------------------------------------------------------------------- */
/* Status strings and version                                                                */
/* ---------------------------------------------------------------------------------------- */

Test(status, every_status_has_its_own_name)
{
    static const char *names[] = {
        "CLATTN_SUCCESS", "CLATTN_ERROR_INVALID_ARGUMENT", "CLATTN_ERROR_BUFFER_TOO_SMALL",
        "CLATTN_ERROR_UNSUPPORTED", "CLATTN_ERROR_DEVICE_NOT_FOUND", "CLATTN_ERROR_BUILD_FAILED",
        "CLATTN_ERROR_OUT_OF_RESOURCES", "CLATTN_ERROR_OPENCL",
    };
    const int n = (int)(sizeof names / sizeof names[0]);
    cr_assert_eq(CLATTN_ERROR_OPENCL, n - 1, "the enum grew: update this test");
    for (int i = 0; i < n; i++) {
        const char *s = clattn_status_string((clattn_status)i);
        cr_assert_not_null(s, "status %d", i);
        cr_expect_str_eq(s, names[i], "status %d", i);
        for (int j = 0; j < i; j++)
            cr_expect_str_neq(s, clattn_status_string((clattn_status)j), "%d and %d", i, j);
    }
}

Test(status, unknown_status_has_a_string)
{
    static const int bad[] = {8, 100, -1, 0x7fffffff};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *s = clattn_status_string((clattn_status)bad[i]);
        cr_assert_not_null(s, "status %d", bad[i]);
        cr_expect_str_eq(s, "CLATTN_ERROR_UNKNOWN", "status %d", bad[i]);
    }
}

Test(status, version_string_matches_the_macros)
{
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", CLATTN_VERSION_MAJOR, CLATTN_VERSION_MINOR,
             CLATTN_VERSION_PATCH);
    cr_assert_not_null(clattn_version_string());
    cr_expect_str_eq(clattn_version_string(), want);
}

/* ---------------------------------------------------------------------------------------- */
/* Last error                                                                                */
/* ---------------------------------------------------------------------------------------- */

Test(last_error, empty_after_success)
{
    cr_assert_not_null(clattn_last_error());
    cr_assert_eq(clattn_context_create(NULL, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
    cr_expect_neq(clattn_last_error()[0], '\0', "no message after a failure");
    clattn_context *ctx = default_context_or_skip();
    cr_expect_str_eq(clattn_last_error(), "", "message left after a successful create");
    clattn_context_release(ctx);
}

typedef struct thread_report {
    char before[512];   /* the thread's message before it does anything */
    char after[512];    /* after its own failure */
} thread_report;

static void *failing_thread(void *arg)
{
    thread_report *r = arg;
    clattn_context *ctx = NULL;
    snprintf(r->before, sizeof r->before, "%s", clattn_last_error());
    clattn_context_create("nonexistent-device-xyz", &ctx);
    snprintf(r->after, sizeof r->after, "%s", clattn_last_error());
    clattn_context_release(ctx);
    return NULL;
}

Test(last_error, is_per_thread)
{
    cr_assert_eq(clattn_context_create(NULL, NULL), CLATTN_ERROR_INVALID_ARGUMENT);
    char mine[512];
    snprintf(mine, sizeof mine, "%s", clattn_last_error());
    cr_assert_neq(mine[0], '\0', "no message after a failure");

    thread_report r;
    memset(&r, 0, sizeof r);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, failing_thread, &r), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);

    cr_expect_str_eq(r.before, "", "a new thread sees another thread's error");
    cr_expect_neq(r.after[0], '\0', "no message in the thread after its failure");
    cr_expect_str_neq(r.after, mine, "both failures gave one message: cannot tell threads apart");
    cr_expect_str_eq(clattn_last_error(), mine, "the thread's failure replaced this thread's");
}

/* ---------------------------------------------------------------------------------------- */
/* Log callback                                                                              */
/* ---------------------------------------------------------------------------------------- */

typedef struct log_record {
    int lines, bad_levels, null_msgs;
} log_record;

static void on_log(int level, const char *msg, void *user)
{
    log_record *r = user;
    r->lines++;
    if (level < CLATTN_LOG_ERROR || level > CLATTN_LOG_DEBUG)
        r->bad_levels++;
    if (msg == NULL)
        r->null_msgs++;
}

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            struct stat st;
            if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(sub);
            else
                unlink(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

static cl_mem filled_buffer(cl_context c, size_t n, float base)
{
    cl_int err = CL_SUCCESS;
    float *h = malloc(n * sizeof *h);
    cr_assert_not_null(h);
    for (size_t i = 0; i < n; i++)
        h[i] = base + 0.01f * (float)(i % 97);
    cl_mem m = clCreateBuffer(c, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * sizeof *h, h,
                              &err);
    free(h);
    cr_assert_eq(err, CL_SUCCESS, "clCreateBuffer: %d", err);
    return m;
}

/* One small f32 forward (B=1, H=2, S=32, D=16) on ctx, waited for. */
static void small_forward(clattn_context *ctx)
{
    enum { B = 1, H = 2, S = 32, D = 16 };
    cl_context c = clattn_context_cl_context(ctx);
    cl_mem qm = filled_buffer(c, B * H * S * D, 0.1f), km = filled_buffer(c, B * H * S * D, -0.2f);
    cl_mem vm = filled_buffer(c, B * H * S * D, 0.3f), om = filled_buffer(c, B * H * S * D, 0);
    clattn_tensor q = clattn_tensor_bhsd(qm, CLATTN_F32, B, H, S, D);
    clattn_tensor k = clattn_tensor_bhsd(km, CLATTN_F32, B, H, S, D);
    clattn_tensor v = clattn_tensor_bhsd(vm, CLATTN_F32, B, H, S, D);
    clattn_tensor o = clattn_tensor_bhsd(om, CLATTN_F32, B, H, S, D);
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    cl_event ev = NULL;
    clattn_status st = clattn_attention_forward(ctx, &desc, &q, &k, &v, &o, NULL, 0, NULL, &ev);
    cr_expect_eq(st, CLATTN_SUCCESS, "forward: %s: %s", clattn_status_string(st),
                 clattn_last_error());
    if (ev) {
        cr_expect_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
        clReleaseEvent(ev);
    }
    clReleaseMemObject(qm), clReleaseMemObject(km), clReleaseMemObject(vm);
    clReleaseMemObject(om);
}

Test(log, callback_receives_lines_and_null_restores)
{
    char dir[] = "/tmp/clattn-test-cache-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(setenv("CLATTN_CACHE_DIR", dir, 1), 0);
    log_record rec;
    memset(&rec, 0, sizeof rec);
    clattn_set_log_callback(on_log, &rec);

    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create(NULL, &ctx);
    if (st == CLATTN_ERROR_DEVICE_NOT_FOUND) {
        clattn_set_log_callback(NULL, NULL);
        remove_tree(dir);
        cr_skip_test("no OpenCL device: %s", clattn_last_error());
    }
    cr_assert_eq(st, CLATTN_SUCCESS, "%s", clattn_last_error());
    int before_forward = rec.lines;
    small_forward(ctx);   /* builds a kernel into an empty cache: must say so */
    cr_expect_gt(rec.lines, before_forward, "no log line from a cold-cache forward call");
    cr_expect_eq(rec.bad_levels, 0, "%d lines with a level outside 1..4", rec.bad_levels);
    cr_expect_eq(rec.null_msgs, 0, "%d NULL messages", rec.null_msgs);

    clattn_set_log_callback(NULL, NULL);
    int lines = rec.lines;
    clattn_context_release(ctx);
    cr_assert_eq(clattn_context_create(NULL, &ctx), CLATTN_SUCCESS);
    small_forward(ctx);
    clattn_context_release(ctx);
    cr_expect_eq(rec.lines, lines, "the callback still got lines after NULL restored stderr");
    remove_tree(dir);
}

/* CLATTN_LOG with a value that names no level was ignored without a word: it is now said
   once on stderr (and the log stays off). */
Test(log, an_unknown_level_is_said_once_on_stderr)
{
    char path[] = "/tmp/clattn-test-stderr-XXXXXX";
    const int fd = mkstemp(path), saved = dup(2);
    cr_assert(fd >= 0 && saved >= 0);
    cr_assert_eq(setenv("CLATTN_LOG", "loud", 1), 0);
    fflush(stderr);
    cr_assert_eq(dup2(fd, 2), 2);
    for (int i = 0; i < 2; i++) {
        clattn_context *ctx = NULL;
        clattn_context_create(NULL, &ctx);   /* logs at info level; failures too */
        clattn_context_release(ctx);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char text[4096] = "";
    const ssize_t n = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    unlink(path);
    cr_assert_geq(n, 0);
    text[n] = '\0';
    const char *first = strstr(text, "CLATTN_LOG=\"loud\" is not");
    cr_expect_not_null(first, "no warning on stderr; it had: \"%s\"", text);
    cr_expect(!first || !strstr(first + 1, "CLATTN_LOG=\"loud\" is not"),
              "the warning came more than once: \"%s\"", text);
}

/* ---------------------------------------------------------------------------------------- */
/* Dropout decision                                                                          */
/* ---------------------------------------------------------------------------------------- */

/* Philox4x32-10 written from Salmon et al. 2011, to cross-check the library's host copy. */
static void philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0], n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0, c[1] = lo1, c[2] = n2, c[3] = lo0;
}

static uint32_t philox_x0(uint64_t seed, const uint32_t ctr[4])
{
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (int r = 0; r < 10; r++) {
        if (r > 0)
            k[0] += 0x9E3779B9u, k[1] += 0xBB67AE85u;
        philox_round(c, k);
    }
    return c[0];
}

static int reference_keep(uint64_t seed, uint64_t offset, int64_t b, int64_t h, int64_t hq,
                          int64_t i, int64_t j, float p)
{
    uint32_t ctr[4] = {(uint32_t)j, (uint32_t)i, (uint32_t)(b * hq + h), (uint32_t)offset};
    double t = p == 0.0f ? 0.0 : ceil((double)p * 4294967296.0);
    return (double)philox_x0(seed, ctr) >= t;
}

Test(dropout, known_answer)
{
    const uint32_t zero[4] = {0, 0, 0, 0};
    cr_assert_eq(philox_x0(0, zero), 0x6627e8d5u, "the test's own Philox is wrong");
    cr_expect_eq(clattn_dropout_keep(0, 0, 0, 0, 1, 0, 0, 0.39f), 1, "x0 0x6627e8d5 >= t(0.39)");
    cr_expect_eq(clattn_dropout_keep(0, 0, 0, 0, 1, 0, 0, 0.41f), 0, "x0 0x6627e8d5 < t(0.41)");
}

Test(dropout, p_zero_always_keeps)
{
    for (int64_t i = 0; i < 64; i++)
        for (int64_t j = 0; j < 64; j++)
            cr_expect_eq(clattn_dropout_keep(12345, 7, 1, 3, 8, i, j, 0.0f), 1, "i=%lld j=%lld",
                         (long long)i, (long long)j);
}

Test(dropout, matches_philox_counter_layout)
{
    static const uint64_t seeds[] = {0, 1, 0x123456789abcdef0ull, 0xffffffff00000000ull};
    static const uint64_t offsets[] = {0, 5, 0xdeadbeef00000003ull};
    static const float ps[] = {0.1f, 0.5f, 0.9f};
    int mismatches = 0, cases = 0;
    for (size_t s = 0; s < 4; s++)
        for (size_t o = 0; o < 3; o++)
            for (int64_t bh = 0; bh < 6; bh++)
                for (int64_t ij = 0; ij < 100; ij++) {
                    int64_t b = bh / 3, h = bh % 3, i = ij / 10 * 37, j = ij % 10 * 101;
                    float p = ps[(size_t)ij % 3];
                    int got = clattn_dropout_keep(seeds[s], offsets[o], b, h, 3, i, j, p);
                    int want = reference_keep(seeds[s], offsets[o], b, h, 3, i, j, p);
                    cases++;
                    if (got != want && mismatches++ == 0)
                        cr_log_error("first mismatch: seed %llx offset %llx b %lld h %lld i %lld "
                                     "j %lld p %g: got %d want %d",
                                     (unsigned long long)seeds[s], (unsigned long long)offsets[o],
                                     (long long)b, (long long)h, (long long)i, (long long)j,
                                     (double)p, got, want);
                }
    cr_expect_eq(mismatches, 0, "%d of %d decisions differ from Philox4x32-10", mismatches, cases);
}

Test(dropout, keep_rate_follows_p)
{
    int kept = 0, n = 20000;
    for (int j = 0; j < n; j++)
        kept += clattn_dropout_keep(42, 0, 0, 0, 1, 3, j, 0.25f);
    double rate = (double)kept / n;
    cr_expect(rate > 0.74 && rate < 0.76, "kept %.4f of keys at p = 0.25", rate);
}
