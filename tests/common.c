/* Helpers shared by the device suites; see common.h. */
#include "common.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- context ----------------------------------------------------------------------------- */

static clattn_context *g_ctx;
static int g_atexit_registered;

void test_ctx_release(void)
{
    clattn_context_release(g_ctx);
    g_ctx = NULL;
}

clattn_context *test_ctx(void)
{
    if (g_ctx)
        return g_ctx;
    const char *selector = getenv("CLATTN_TEST_DEVICE");
    if (selector && !*selector)
        selector = NULL;
    clattn_status st = clattn_context_create(selector, &g_ctx);
    if (st == CLATTN_ERROR_DEVICE_NOT_FOUND)
        cr_skip_test("no OpenCL device: %s", clattn_last_error());
    cr_assert_eq(st, CLATTN_SUCCESS, "clattn_context_create(%s): %s: %s",
                 selector ? selector : "NULL", clattn_status_string(st), clattn_last_error());
    cr_assert_not_null(g_ctx);
    if (!g_atexit_registered) {
        atexit(test_ctx_release);
        g_atexit_registered = 1;
    }
    cr_log_info("device: %s", clattn_context_device_name(g_ctx));
    return g_ctx;
}

cl_command_queue test_queue(void)
{
    return clattn_context_queue(test_ctx());
}

cl_context test_cl_context(void)
{
    return clattn_context_cl_context(test_ctx());
}

void test_skip_if_refused(clattn_status st)
{
    const char *msg = clattn_last_error();
    if (st == CLATTN_ERROR_UNSUPPORTED &&
        (strstr(msg, "known-answer check") || strstr(msg, "loop limiter")))
        cr_skip_test("the device is refused for this call: %s", msg);
}

/* ---- the library's log ------------------------------------------------------------------ */

char test_log[TEST_LOG_SIZE];

void test_log_capture(int level, const char *msg, void *user)
{
    (void)level;
    (void)user;
    size_t used = strlen(test_log);
    snprintf(test_log + used, sizeof test_log - used, "%s\n", msg);
}

void test_log_start(void)
{
    test_log[0] = '\0';
    clattn_set_log_callback(test_log_capture, NULL);
}

int test_logged(const char *needle)
{
    return strstr(test_log, needle) != NULL;
}

/* ---- a driver that deadlocks on a command released by its wait list ---------------------- */

/* The child of test_gated_command_deadlocks(): its own context on the test device, a marker
   held by a user event, then the event set. Writes 'R' once the marker is queued and flushed,
   'D' once it has completed; exits 2 on any error. Never returns. */
static void gate_probe_child(int fd)
{
    const char *selector = getenv("CLATTN_TEST_DEVICE");
    clattn_context *ctx = NULL;
    if (clattn_context_create(selector && *selector ? selector : NULL, &ctx) != CLATTN_SUCCESS)
        _exit(2);
    cl_command_queue queue = clattn_context_queue(ctx);
    cl_int err;
    cl_event gate = clCreateUserEvent(clattn_context_cl_context(ctx), &err), done = NULL;
    if (err != CL_SUCCESS || clEnqueueMarkerWithWaitList(queue, 1, &gate, &done) != CL_SUCCESS ||
        clFlush(queue) != CL_SUCCESS || write(fd, "R", 1) != 1)
        _exit(2);
    if (clSetUserEventStatus(gate, CL_COMPLETE) != CL_SUCCESS ||
        clWaitForEvents(1, &done) != CL_SUCCESS || write(fd, "D", 1) != 1)
        _exit(2);
    _exit(0);
}

/* The next byte from fd: the byte, -1 at end of file or on an error, 0 after ms milliseconds. */
static int read_byte_within(int fd, long ms)
{
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += ms / 1000;
    end.tv_nsec += (ms % 1000) * 1000000L;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = (end.tv_sec - now.tv_sec) * 1000L + (end.tv_nsec - now.tv_nsec) / 1000000L;
        if (left <= 0)
            return 0;
        struct pollfd p = {fd, POLLIN, 0};
        int n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            continue;
        unsigned char b;
        ssize_t got = read(fd, &b, 1);
        if (got < 0 && errno == EINTR)
            continue;
        return got == 1 ? b : -1;
    }
}

const char *test_gated_command_deadlocks(void)
{
    static int probed;
    static char why[512];
    if (probed)
        return why[0] ? why : NULL;
    if (g_ctx) {
        /* forking a process whose OpenCL runtime has started (its threads are not in the
           child) would make the probe meaningless: do without it */
        cr_log_warn("test_gated_command_deadlocks: called after test_ctx(); not probed");
        return NULL;
    }
    probed = 1;
    int fds[2];
    if (pipe(fds) != 0)
        return NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        gate_probe_child(fds[1]);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return NULL;
    }
    /* the context may take long to make (a loaded machine): only the release is timed */
    enum { READY_MS = 60000, RELEASE_MS = 10000 };
    if (read_byte_within(fds[0], READY_MS) == 'R' && read_byte_within(fds[0], RELEASE_MS) == 0)
        snprintf(why, sizeof why,
                 "this OpenCL driver deadlocks when a queued command is released by the "
                 "completion of its wait list (a marker held by a user event did not complete "
                 "within %d s of clSetUserEventStatus, in a child process). PoCL 3.1's basic "
                 "device does that: pocl_basic_notify runs the released command while it holds "
                 "the command's event lock, and pocl_update_event_running takes it again "
                 "(pocl/pocl#1177)", RELEASE_MS / 1000);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fds[0]);
    return why[0] ? why : NULL;
}

cl_event test_user_event(void)
{
    cl_int err;
    cl_event gate = clCreateUserEvent(test_cl_context(), &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateUserEvent: %d", err);
    return gate;
}

void test_expect_held_by(cl_event gate, cl_event call, const char *what)
{
    cr_assert_not_null(call, "%s: no event", what);
    clFlush(test_queue());
    const struct timespec wait = {0, 200 * 1000000L};
    nanosleep(&wait, NULL);
    cl_int status = -1;
    cr_assert_eq(clGetEventInfo(call, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status,
                                NULL), CL_SUCCESS);
    cr_expect_neq(status, CL_COMPLETE, "%s completed before its wait list", what);
    cr_assert_eq(clSetUserEventStatus(gate, CL_COMPLETE), CL_SUCCESS);
}

/* ---- deterministic random numbers (splitmix64) ------------------------------------------ */

void rng_seed(test_rng *r, uint64_t seed)
{
    r->state = seed ^ 0x5DEECE66DULL;
}

static uint64_t rng_u64(test_rng *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint32_t rng_u32(test_rng *r)
{
    return (uint32_t)(rng_u64(r) >> 32);
}

double rng_uniform(test_rng *r, double lo, double hi)
{
    double unit = (double)(rng_u64(r) >> 11) * 0x1.0p-53;
    return lo + (hi - lo) * unit;
}

int64_t rng_below(test_rng *r, int64_t n)
{
    return n <= 0 ? 0 : (int64_t)(rng_u64(r) % (uint64_t)n);
}

void rng_fill_f32(test_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_uniform(r, lo, hi);
}

/* ---- host conversions -------------------------------------------------------------------- */

void f32_to_f64(const float *src, double *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (double)src[i];
}

void f64_to_f32(const double *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

static uint32_t f32_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

static float bits_f32(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

uint16_t f32_to_f16_bits(float f)
{
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xffu, mant = x & 0x7fffffu;
    if (exp == 0xff)                                   /* Inf, NaN (kept quiet) */
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {                                      /* subnormal half, or zero */
        if (e < -10)
            return (uint16_t)sign;
        mant |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++;                                           /* may carry into the exponent: right */
    return (uint16_t)(sign | h);
}

float f16_bits_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        float f = ldexpf((float)mant, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t f32_to_bf16_bits(float f)
{
    uint32_t x = f32_bits(f);
    if (isnan(f))
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float bf16_bits_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

size_t dtype_size(clattn_dtype t)
{
    return t == CLATTN_F32 ? 4 : 2;
}

/* ---- cl_mem helpers ---------------------------------------------------------------------- */

cl_mem buf_new(cl_mem_flags flags, size_t bytes, const void *init)
{
    cl_int err;
    unsigned char *canary = NULL;
    if (!init) {
        canary = malloc(bytes);
        cr_assert_not_null(canary);
        canary_fill(canary, bytes);
        init = canary;
    }
    cl_mem mem = clCreateBuffer(test_cl_context(), flags | CL_MEM_COPY_HOST_PTR, bytes,
                                (void *)init, &err);
    free(canary);
    cr_assert_eq(err, CL_SUCCESS, "clCreateBuffer(%zu bytes): %d", bytes, err);
    return mem;
}

void buf_write(cl_mem mem, size_t bytes, const void *src)
{
    cl_int err = clEnqueueWriteBuffer(test_queue(), mem, CL_TRUE, 0, bytes, src, 0, NULL, NULL);
    cr_assert_eq(err, CL_SUCCESS, "clEnqueueWriteBuffer(%zu bytes): %d", bytes, err);
}

void buf_read(cl_mem mem, size_t bytes, void *dst)
{
    cl_int err = clEnqueueReadBuffer(test_queue(), mem, CL_TRUE, 0, bytes, dst, 0, NULL, NULL);
    cr_assert_eq(err, CL_SUCCESS, "clEnqueueReadBuffer(%zu bytes): %d", bytes, err);
}

size_t buf_size(cl_mem mem)
{
    size_t size = 0;
    cl_int err = clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL);
    cr_assert_eq(err, CL_SUCCESS, "clGetMemObjectInfo(CL_MEM_SIZE): %d", err);
    return size;
}

unsigned char canary_byte(size_t i)
{
    return (unsigned char)(0xA5u ^ (unsigned)(i * 0x3Bu) ^ (unsigned)(i >> 8));
}

void canary_fill(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = canary_byte(i);
}

size_t canary_first_bad(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != canary_byte(i))
            return i;
    return SIZE_MAX;
}

void buf_fill_canary(cl_mem mem)
{
    size_t n = buf_size(mem);
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    canary_fill(p, n);
    buf_write(mem, n, p);
    free(p);
}

int buf_canary_intact(cl_mem mem, size_t *first_bad)
{
    size_t n = buf_size(mem);
    unsigned char *p = malloc(n);
    cr_assert_not_null(p);
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    buf_read(mem, n, p);
    size_t bad = canary_first_bad(p, n);
    free(p);
    if (first_bad)
        *first_bad = bad;
    return bad == SIZE_MAX;
}

/* ---- host tensors with layouts ----------------------------------------------------------- */

const test_layout LAYOUT_BHSD = {"bhsd", {0, 1, 2, 3}, {0, 0, 0, 0}, 0, 0};
const test_layout LAYOUT_BSHD = {"bshd", {0, 2, 1, 3}, {0, 0, 0, 0}, 0, 0};
const test_layout LAYOUT_BHSD_PADDED = {"bhsd+pad", {0, 1, 2, 3}, {4, 8, 3, 5}, 36, 20};
const test_layout LAYOUT_BSHD_PADDED = {"bshd+pad", {0, 2, 1, 3}, {1, 2, 4, 3}, 12, 8};
const test_layout LAYOUT_SBHD_PADDED = {"sbhd+pad", {2, 0, 1, 3}, {3, 1, 2, 7}, 100, 44};

static void tt_alloc(test_tensor *t, size_t bytes)
{
    t->bytes = bytes;
    t->host = malloc(bytes ? bytes : 1);
    cr_assert_not_null(t->host);
    canary_fill(t->host, bytes);
}

void tt_init(test_tensor *t, clattn_dtype dtype, const int64_t dims[4], const test_layout *l)
{
    cr_assert_eq(l->order[3], 3, "layout %s: head_dim must be innermost", l->name);
    memset(t, 0, sizeof *t);
    t->view.dtype = dtype;
    t->view.offset = l->offset;
    int64_t span = 1;
    for (int k = 3; k >= 0; k--) {
        int dim = l->order[k];
        t->view.dims[dim] = dims[dim];
        t->view.strides[dim] = span;
        span = span * dims[dim] + l->pad[dim];
    }
    tt_alloc(t, l->offset + (size_t)span * dtype_size(dtype) + l->tail);
}

void tt_init_strided(test_tensor *t, clattn_dtype dtype, const int64_t dims[4],
                     const int64_t strides[4], size_t offset, size_t tail)
{
    memset(t, 0, sizeof *t);
    t->view.dtype = dtype;
    t->view.offset = offset;
    int64_t last = 0;
    for (int a = 0; a < 4; a++) {
        cr_assert_geq(strides[a], 0, "tt_init_strided takes strides >= 0");
        t->view.dims[a] = dims[a];
        t->view.strides[a] = strides[a];
        last += (dims[a] - 1) * strides[a];
    }
    tt_alloc(t, offset + (size_t)(last + 1) * dtype_size(dtype) + tail);
}

void tt_free(test_tensor *t)
{
    free(t->host);
    t->host = NULL;
    if (t->view.buffer)
        clReleaseMemObject(t->view.buffer);
    t->view.buffer = NULL;
}

size_t tt_byte_offset(const test_tensor *t, int64_t b, int64_t h, int64_t s, int64_t d)
{
    const int64_t *st = t->view.strides;
    int64_t e = b * st[0] + h * st[1] + s * st[2] + d * st[3];
    return t->view.offset + (size_t)e * dtype_size(t->view.dtype);
}

static double load_element(const unsigned char *p, clattn_dtype dtype)
{
    if (dtype == CLATTN_F32) {
        float f;
        memcpy(&f, p, sizeof f);
        return (double)f;
    }
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return dtype == CLATTN_F16 ? (double)f16_bits_to_f32(h) : (double)bf16_bits_to_f32(h);
}

static void store_element(unsigned char *p, clattn_dtype dtype, double x)
{
    if (dtype == CLATTN_F32) {
        float f = (float)x;
        memcpy(p, &f, sizeof f);
        return;
    }
    uint16_t h = dtype == CLATTN_F16 ? f32_to_f16_bits((float)x) : f32_to_bf16_bits((float)x);
    memcpy(p, &h, sizeof h);
}

double tt_get(const test_tensor *t, int64_t b, int64_t h, int64_t s, int64_t d)
{
    return load_element(t->host + tt_byte_offset(t, b, h, s, d), t->view.dtype);
}

void tt_set(test_tensor *t, int64_t b, int64_t h, int64_t s, int64_t d, double x)
{
    store_element(t->host + tt_byte_offset(t, b, h, s, d), t->view.dtype, x);
}

void tt_fill_random(test_tensor *t, test_rng *r, double lo, double hi)
{
    const int64_t *n = t->view.dims;
    for (int64_t b = 0; b < n[0]; b++)
        for (int64_t h = 0; h < n[1]; h++)
            for (int64_t s = 0; s < n[2]; s++)
                for (int64_t d = 0; d < n[3]; d++)
                    tt_set(t, b, h, s, d, rng_uniform(r, lo, hi));
}

unsigned char *tt_view_mask(const test_tensor *t)
{
    unsigned char *mask = calloc(t->bytes ? t->bytes : 1, 1);
    cr_assert_not_null(mask);
    const int64_t *n = t->view.dims;
    size_t es = dtype_size(t->view.dtype);
    for (int64_t b = 0; b < n[0]; b++)
        for (int64_t h = 0; h < n[1]; h++)
            for (int64_t s = 0; s < n[2]; s++)
                for (int64_t d = 0; d < n[3]; d++)
                    memset(mask + tt_byte_offset(t, b, h, s, d), 1, es);
    return mask;
}

void tt_fill_outside_f32(test_tensor *t, float x)
{
    cr_assert_eq(t->view.dtype, CLATTN_F32);
    unsigned char *mask = tt_view_mask(t);
    for (size_t w = 0; w + 4 <= t->bytes; w += 4)
        if (!mask[w] && !mask[w + 1] && !mask[w + 2] && !mask[w + 3])
            memcpy(t->host + w, &x, sizeof x);
    free(mask);
}

void tt_upload(test_tensor *t, cl_mem_flags flags)
{
    if (t->view.buffer)
        clReleaseMemObject(t->view.buffer);
    t->view.buffer = buf_new(flags, t->bytes, t->host);
}

void tt_push(test_tensor *t)
{
    buf_write(t->view.buffer, t->bytes, t->host);
}

void tt_download(test_tensor *t)
{
    buf_read(t->view.buffer, t->bytes, t->host);
}

size_t tt_outside_damage(const test_tensor *t, size_t *first)
{
    unsigned char *mask = tt_view_mask(t);
    size_t bad = 0, first_bad = SIZE_MAX;
    for (size_t i = 0; i < t->bytes; i++) {
        if (!mask[i] && t->host[i] != canary_byte(i)) {
            if (first_bad == SIZE_MAX)
                first_bad = i;
            bad++;
        }
    }
    free(mask);
    if (first)
        *first = first_bad;
    return bad;
}

ref_tensor tt_to_ref(const test_tensor *t, double **store)
{
    size_t es = dtype_size(t->view.dtype), n = t->bytes / es;
    cr_assert_eq(t->view.offset % es, 0, "tt_to_ref: offset not a multiple of the element");
    double *data = malloc((n ? n : 1) * sizeof(double));
    cr_assert_not_null(data);
    for (size_t e = 0; e < n; e++)
        data[e] = load_element(t->host + e * es, t->view.dtype);
    *store = data;
    ref_tensor r;
    r.data = data + t->view.offset / es;
    memcpy(r.dims, t->view.dims, sizeof r.dims);
    memcpy(r.strides, t->view.strides, sizeof r.strides);
    return r;
}

/* ---- comparison -------------------------------------------------------------------------- */

cmp_result cmp_none(void)
{
    cmp_result r;
    memset(&r, 0, sizeof r);
    return r;
}

static void note(cmp_result *r, double err, int hard, int64_t b, int64_t h, int64_t s,
                 int64_t d, double got, double want)
{
    if (hard) {
        r->hard++;
        if (r->worst == INFINITY)
            return;         /* keep the first hard mismatch as the place to report */
        err = INFINITY;
    }
    if (err > r->worst) {
        r->worst = err;
        r->at[0] = b;
        r->at[1] = h;
        r->at[2] = s;
        r->at[3] = d;
        r->got = got;
        r->want = want;
    }
}

static void compare_row(cmp_result *r, const test_tensor *out, const ref_tensor *ref,
                        int64_t b, int64_t h, int64_t s)
{
    int64_t dv = ref->dims[3];
    double scale = 0.0;
    int all_zero = 1;
    for (int64_t d = 0; d < dv; d++) {
        double want = *ref_at(ref, b, h, s, d);
        if (want != 0.0)
            all_zero = 0;
        if (isfinite(want) && fabs(want) > scale)
            scale = fabs(want);
    }
    if (scale < TOL_ROW_FLOOR)
        scale = TOL_ROW_FLOOR;
    for (int64_t d = 0; d < dv; d++) {
        double want = *ref_at(ref, b, h, s, d), got = tt_get(out, b, h, s, d);
        int hard;
        double err = 0.0;
        if (isnan(want) || isnan(got))
            hard = !(isnan(want) && isnan(got));
        else if (all_zero || isinf(want) || isinf(got))
            hard = got != want;
        else {
            hard = 0;
            err = fabs(got - want) / scale;
        }
        note(r, err, hard, b, h, s, d, got, want);
    }
}

cmp_result compare_out(const test_tensor *out, const ref_tensor *ref)
{
    cmp_result r = cmp_none();
    for (int a = 0; a < 4; a++)
        cr_assert_eq(out->view.dims[a], ref->dims[a], "compare_out: dims[%d] differ", a);
    for (int64_t b = 0; b < ref->dims[0]; b++)
        for (int64_t h = 0; h < ref->dims[1]; h++)
            for (int64_t s = 0; s < ref->dims[2]; s++) {
                compare_row(&r, out, ref, b, h, s);
                r.rows++;
            }
    return r;
}

cmp_result compare_lse(const test_tensor *lse, const ref_tensor *ref)
{
    cmp_result r = cmp_none();
    for (int a = 0; a < 4; a++)
        cr_assert_eq(lse->view.dims[a], ref->dims[a], "compare_lse: dims[%d] differ", a);
    for (int64_t b = 0; b < ref->dims[0]; b++)
        for (int64_t h = 0; h < ref->dims[1]; h++)
            for (int64_t s = 0; s < ref->dims[2]; s++) {
                double want = *ref_at(ref, b, h, s, 0), got = tt_get(lse, b, h, s, 0);
                int hard;
                double err = 0.0;
                if (isnan(want) || isnan(got))
                    hard = !(isnan(want) && isnan(got));
                else if (isinf(want) || isinf(got))
                    hard = got != want;
                else {
                    hard = 0;
                    err = fabs(got - want) / fmax(1.0, fabs(want));
                }
                note(&r, err, hard, b, h, s, 0, got, want);
                r.rows++;
            }
    return r;
}

const char *cmp_describe(const cmp_result *r, char *buf, size_t size)
{
    snprintf(buf, size, "%.3g at [%ld,%ld,%ld,%ld] (got %.9g, want %.9g), %ld hard of %ld rows",
             r->worst, (long)r->at[0], (long)r->at[1], (long)r->at[2], (long)r->at[3], r->got,
             r->want, (long)r->hard, (long)r->rows);
    return buf;
}

void cmp_merge(cmp_result *acc, const cmp_result *r)
{
    int64_t hard = acc->hard + r->hard, rows = acc->rows + r->rows;
    if (r->worst > acc->worst)
        *acc = *r;
    acc->hard = hard;
    acc->rows = rows;
}

/* ---- the reference of host tensors -------------------------------------------------------- */

void test_reference_of(ref_params p, const test_tensor *q, const test_tensor *k,
                       const test_tensor *v, const test_tensor *bias, double **out_data,
                       ref_tensor *out, double **lse_data, ref_tensor *lse)
{
    const int64_t *qd = q->view.dims, dv = v->view.dims[3];
    double *stores[4] = {NULL, NULL, NULL, NULL};
    ref_tensor rq = tt_to_ref(q, &stores[0]), rk = tt_to_ref(k, &stores[1]),
               rv = tt_to_ref(v, &stores[2]), rb;
    if (bias) {
        rb = tt_to_ref(bias, &stores[3]);
        p.bias = &rb;
    }
    *out_data = malloc((size_t)(qd[0] * qd[1] * qd[2] * dv) * sizeof(double));
    *lse_data = malloc((size_t)(qd[0] * qd[1] * qd[2]) * sizeof(double));
    cr_assert(*out_data && *lse_data, "no host memory for the reference");
    *out = ref_tensor_dense(*out_data, qd[0], qd[1], qd[2], dv);
    *lse = ref_tensor_dense(*lse_data, qd[0], qd[1], qd[2], 1);
    cr_assert_eq(ref_attention_forward(&p, &rq, &rk, &rv, out, lse), 0, "reference refused");
    for (int i = 0; i < 4; i++)
        free(stores[i]);
}

/* ---- one whole forward -------------------------------------------------------------------- */

static ref_params ref_params_of(const clattn_attention_desc *d)
{
    ref_params p;
    ref_params_init(&p);
    p.scale = d->scale;
    p.causal = d->causal;
    p.align = d->align;
    p.window_left = d->window_left;
    p.window_right = d->window_right;
    p.softcap = d->softcap;
    p.dropout_p = d->dropout_p;
    p.dropout_seed = d->dropout_seed;
    p.dropout_offset = d->dropout_offset;
    p.q_start = d->q_start;
    p.k_start = d->k_start;
    return p;
}

void test_forward_vs_reference(const clattn_attention_desc *desc, const int64_t qd[4],
                               const int64_t kd[4], char *plan, size_t plan_size)
{
    clattn_attention_desc defaults;
    clattn_attention_desc_init(&defaults);
    if (!desc)
        desc = &defaults;
    test_tensor q, k, v, out;
    test_rng rng;
    rng_seed(&rng, 11);
    tt_init(&q, CLATTN_F32, qd, &LAYOUT_BHSD);
    tt_init(&k, CLATTN_F32, kd, &LAYOUT_BHSD);
    tt_init(&v, CLATTN_F32, kd, &LAYOUT_BHSD);
    tt_init(&out, CLATTN_F32, qd, &LAYOUT_BHSD);
    test_tensor *all[] = {&q, &k, &v, &out};
    for (int i = 0; i < 3; i++) {
        /* v away from zero mean, so that rows do not cancel towards 0 */
        tt_fill_random(all[i], &rng, -0.5, 1.5);
        tt_upload(all[i], CL_MEM_READ_ONLY);
    }
    tt_upload(&out, CL_MEM_READ_WRITE);
    if (plan)
        TEST_CHECK_STATUS(clattn_attention_plan(test_ctx(), desc, &q.view, &k.view, &v.view,
                                                plan, plan_size), "plan");
    TEST_CHECK_STATUS(clattn_attention_forward(test_ctx(), desc, &q.view, &k.view, &v.view,
                                               &out.view, NULL, 0, NULL, NULL), "forward");
    tt_download(&out);

    double *want_out, *want_lse;
    ref_tensor ro, rl;
    test_reference_of(ref_params_of(desc), &q, &k, &v, NULL, &want_out, &ro, &want_lse, &rl);
    cmp_result r = compare_out(&out, &ro);
    char text[256];
    cr_assert(r.worst <= TOL_F32_OUT && r.hard == 0, "out vs reference: %s",
              cmp_describe(&r, text, sizeof text));
    free(want_out);
    free(want_lse);
    for (int i = 0; i < 4; i++)
        tt_free(all[i]);
}

/* ---- the backward ------------------------------------------------------------------------- */

double test_grad_tolerance(clattn_dtype grad_dtype, clattn_dtype out_dtype)
{
    double tol = TOL_F32_GRAD;
    if (grad_dtype == CLATTN_F16)
        tol += TOL_GRAD_STORE_F16;
    else if (grad_dtype == CLATTN_BF16)
        tol += TOL_GRAD_STORE_BF16;
    if (out_dtype == CLATTN_F16)
        tol += TOL_GRAD_OUT_F16;
    else if (out_dtype == CLATTN_BF16)
        tol += TOL_GRAD_OUT_BF16;
    return tol;
}

ref_params test_ref_params_of(const clattn_attention_desc *d)
{
    return ref_params_of(d);
}

static double *dense_of(const test_tensor *like, int64_t d3, ref_tensor *view)
{
    const int64_t *n = like->view.dims;
    size_t count = (size_t)(n[0] * n[1] * n[2] * d3);
    double *data = malloc((count ? count : 1) * sizeof(double));
    cr_assert_not_null(data, "no host memory for the reference");
    *view = ref_tensor_dense(data, n[0], n[1], n[2], d3);
    return data;
}

void test_reference_backward_of(ref_params p, const test_tensor *q, const test_tensor *k,
                                const test_tensor *v, const test_tensor *dout,
                                const test_tensor *bias, test_grads *g)
{
    double *stores[5] = {NULL, NULL, NULL, NULL, NULL};
    ref_tensor rq = tt_to_ref(q, &stores[0]), rk = tt_to_ref(k, &stores[1]),
               rv = tt_to_ref(v, &stores[2]), rd = tt_to_ref(dout, &stores[3]), rb;
    if (bias) {
        rb = tt_to_ref(bias, &stores[4]);
        p.bias = &rb;
    }
    memset(g, 0, sizeof *g);
    g->dq_data = dense_of(q, q->view.dims[3], &g->dq);
    g->dk_data = dense_of(k, k->view.dims[3], &g->dk);
    g->dv_data = dense_of(v, v->view.dims[3], &g->dv);
    cr_assert_eq(ref_attention_backward(&p, &rq, &rk, &rv, &rd, &g->dq, &g->dk, &g->dv, NULL),
                 0, "reference backward refused");
    for (int i = 0; i < 5; i++)
        free(stores[i]);
}

void test_grads_free(test_grads *g)
{
    free(g->dq_data);
    free(g->dk_data);
    free(g->dv_data);
    memset(g, 0, sizeof *g);
}

void test_grad_zero_rows(const ref_params *p, int64_t B, int64_t Hq, int64_t Hkv, int64_t Sq,
                         int64_t Sk, unsigned char **q_rows, unsigned char **kv_rows)
{
    unsigned char *qr = malloc((size_t)(B * Hq * Sq) + 1), *kr = malloc((size_t)(B * Hkv * Sk) + 1);
    cr_assert(qr && kr);
    memset(qr, 1, (size_t)(B * Hq * Sq));
    memset(kr, 1, (size_t)(B * Hkv * Sk));
    const ref_tensor *bias = p->bias;
    int64_t group = Hq / Hkv;
    for (int64_t b = 0; b < B; b++) {
        int64_t sq_b = ref_seq_q(p, b, Sq), sk_b = ref_seq_k(p, b, Sk);
        if (sq_b < 0 || sq_b > Sq || sk_b < 0 || sk_b > Sk) {
            memset(qr + b * Hq * Sq, 0, (size_t)(Hq * Sq));
            memset(kr + b * Hkv * Sk, 0, (size_t)(Hkv * Sk));
            continue;
        }
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < sq_b; i++)
                for (int64_t j = 0; j < sk_b; j++) {
                    if (!ref_key_visible(p, sq_b, sk_b, i, j))
                        continue;
                    if (bias && *ref_at(bias, bias->dims[0] == 1 ? 0 : b,
                                        bias->dims[1] == 1 ? 0 : h,
                                        bias->dims[2] == 1 ? 0 : i, j) == -INFINITY)
                        continue;
                    qr[(b * Hq + h) * Sq + i] = 0;
                    kr[(b * Hkv + h / group) * Sk + j] = 0;
                }
    }
    *q_rows = qr;
    *kv_rows = kr;
}

cmp_result compare_grad(const test_tensor *got, const ref_tensor *want,
                        const unsigned char *zero_rows)
{
    cmp_result r = cmp_none();
    const int64_t *n = want->dims;
    for (int a = 0; a < 4; a++)
        cr_assert_eq(got->view.dims[a], n[a], "compare_grad: dims[%d] differ", a);
    double scale = 0.0;
    for (int64_t b = 0; b < n[0]; b++)
        for (int64_t h = 0; h < n[1]; h++)
            for (int64_t s = 0; s < n[2]; s++)
                for (int64_t d = 0; d < n[3]; d++) {
                    double w = *ref_at(want, b, h, s, d);
                    if (isfinite(w) && fabs(w) > scale)
                        scale = fabs(w);
                }
    if (scale < TOL_ROW_FLOOR)
        scale = TOL_ROW_FLOOR;
    for (int64_t b = 0; b < n[0]; b++)
        for (int64_t h = 0; h < n[1]; h++)
            for (int64_t s = 0; s < n[2]; s++) {
                int zero = zero_rows && zero_rows[(b * n[1] + h) * n[2] + s];
                for (int64_t d = 0; d < n[3]; d++) {
                    double w = *ref_at(want, b, h, s, d), g = tt_get(got, b, h, s, d);
                    int hard = 0;
                    double err = 0.0;
                    if (zero) {
                        cr_assert_eq(w, 0.0, "compare_grad: the reference is %g at [%ld,%ld,"
                                     "%ld,%ld], a row the contract says is 0", w, (long)b,
                                     (long)h, (long)s, (long)d);
                        hard = g != 0.0;
                    } else if (isnan(w) || isnan(g))
                        hard = !(isnan(w) && isnan(g));
                    else if (isinf(w) || isinf(g))
                        hard = g != w;
                    else
                        err = fabs(g - w) / scale;
                    note(&r, err, hard, b, h, s, d, g, w);
                }
                r.rows++;
            }
    return r;
}

void tt_fill_outside(test_tensor *t, double x)
{
    unsigned char *mask = tt_view_mask(t);
    size_t es = dtype_size(t->view.dtype);
    size_t start = t->view.offset % es;
    for (size_t e = start; e + es <= t->bytes; e += es) {
        int inside = 0;
        for (size_t i = 0; i < es; i++)
            inside |= mask[e + i];
        if (!inside)
            store_element(t->host + e, t->view.dtype, x);
    }
    free(mask);
}

/* ---- small shared helpers ---------------------------------------------------------------- */

double test_out_tolerance(clattn_dtype out_dtype)
{
    return TOL_F32_OUT + (out_dtype == CLATTN_F16    ? TOL_OUT_STORE_F16
                          : out_dtype == CLATTN_BF16 ? TOL_OUT_STORE_BF16
                                                     : 0.0);
}

const char *test_dtype_name(clattn_dtype t)
{
    return t == CLATTN_F16 ? "f16" : t == CLATTN_BF16 ? "bf16" : t == CLATTN_F32 ? "f32" : "?";
}

const char *test_algo_name(clattn_algo a)
{
    switch (a) {
    case CLATTN_ALGO_AUTO: return "AUTO";
    case CLATTN_ALGO_FUSED: return "FUSED";
    case CLATTN_ALGO_SPLIT_KV: return "SPLIT_KV";
    case CLATTN_ALGO_UNFUSED: return "UNFUSED";
    default: return "?";
    }
}

void test_wait_event(cl_event ev, const char *label)
{
    cr_assert_not_null(ev, "%s: no event returned", label);
    cr_assert_eq(clWaitForEvents(1, &ev), CL_SUCCESS, "%s: clWaitForEvents", label);
    cl_int status = -1;
    cr_assert_eq(clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status,
                                NULL), CL_SUCCESS);
    cr_assert_eq(status, CL_COMPLETE, "%s: event status %d", label, status);
    cr_assert_eq(clReleaseEvent(ev), CL_SUCCESS);
}

int test_message_names(const char *msg, const char *alternatives)
{
    for (const char *a = alternatives; *a;) {
        size_t n = strcspn(a, "|");
        for (const char *m = msg; *m; m++)
            if (strncmp(m, a, n) == 0)
                return 1;
        a += n + (a[n] == '|');
    }
    return 0;
}

const test_layout LAYOUT_BHSD_GUARDED = {"bhsd+guard", {0, 1, 2, 3}, {0, 0, 0, 0}, 64, 48};

/* ==== one test case ======================================================================== */

test_case tc_shape(int64_t B, int64_t Hq, int64_t Hkv, int64_t Sq, int64_t Sk, int64_t D,
                   int64_t Dv)
{
    test_case c;
    memset(&c, 0, sizeof c);
    c.B = B, c.Hq = Hq, c.Hkv = Hkv, c.Sq = Sq, c.Sk = Sk, c.D = D, c.Dv = Dv;
    c.seed = (uint64_t)(B * 1000003 + Hq * 10007 + Hkv * 1009 + Sq * 101 + Sk * 11 + D * 7 + Dv);
    return c;
}

void tc_desc(const test_case *c, clattn_attention_desc *d)
{
    clattn_attention_desc_init(d);
    d->scale = c->scale;
    d->causal = c->causal;
    d->align = c->align;
    d->window_left = c->window.on ? c->window.left : -1;
    d->window_right = c->window.on ? c->window.right : -1;
    d->softcap = c->softcap;
    d->dropout_p = c->dropout_p;
    d->dropout_seed = c->dropout_seed;
    d->dropout_offset = c->dropout_offset;
    d->q_start = c->q_start;
    d->k_start = c->k_start;
    d->algo = c->algo;
}

void tc_ref_params(const test_case *c, ref_params *p)
{
    clattn_attention_desc d;
    tc_desc(c, &d);
    *p = test_ref_params_of(&d);
    p->seqlens_q = c->seqlens_q;
    p->seqlens_k = c->seqlens_k;
}

int tc_runs_dtype(const test_case *c, clattn_dtype t)
{
    return !c->dtypes || (c->dtypes & TC_ONLY(t));
}

/* ---- tc_describe ---------------------------------------------------------------------------- */

/* Append printf output to buf (of size bytes), cut short when it is full. */
static void cat(char *buf, size_t size, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used + 1 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, size - used, fmt, ap);
    va_end(ap);
}

static void cat_seqlens(char *buf, size_t size, const char *name, const int32_t *lens,
                        int64_t B)
{
    if (!lens)
        return;
    cat(buf, size, " %s={", name);
    for (int64_t b = 0; b < B; b++)
        cat(buf, size, "%s%d", b ? "," : "", (int)lens[b]);
    cat(buf, size, "}");
}

static const char *const bias_names[] = {"none", "[B,Hq,Sq,Sk]", "[1,Hq,Sq,Sk]", "[B,1,Sq,Sk]",
                                         "[B,Hq,1,Sk]", "[1,1,1,Sk]", "[B,Hq,Sq,Sk] stride-0"};

static void describe_desc(const test_case *c, char *buf, size_t size)
{
    if (c->scale != 0.0f)
        cat(buf, size, " scale=%g", (double)c->scale);
    if (c->causal)
        cat(buf, size, c->causal == 1 ? " causal" : " causal=%d", c->causal);
    if (c->align != CLATTN_ALIGN_BOTTOM_RIGHT)
        cat(buf, size, c->align == CLATTN_ALIGN_TOP_LEFT ? " TL" : " align=%d", (int)c->align);
    if (c->window.on)
        cat(buf, size, " window=(%ld,%ld)", (long)c->window.left, (long)c->window.right);
    if (c->softcap != 0.0f)
        cat(buf, size, " softcap=%g", (double)c->softcap);
    if (c->bias)
        cat(buf, size, " bias %s %s", (unsigned)c->bias < 7 ? bias_names[c->bias] : "?",
            test_dtype_name(c->bias_dtype));
    cat_seqlens(buf, size, "seqlens_q", c->seqlens_q, c->B);
    cat_seqlens(buf, size, "seqlens_k", c->seqlens_k, c->B);
    if (c->dropout_p != 0.0f)   /* seed and offset matter only then */
        cat(buf, size, " dropout=%g (seed %#llx, offset %#llx)", (double)c->dropout_p,
            (unsigned long long)c->dropout_seed, (unsigned long long)c->dropout_offset);
    if (c->sinks)
        cat(buf, size, " sinks");
    if (c->q_start || c->k_start)
        cat(buf, size, " q_start=%lld k_start=%lld", (long long)c->q_start,
            (long long)c->k_start);
    if (c->algo)
        cat(buf, size, " algo=%s", test_algo_name(c->algo));
    if (c->no_lse)
        cat(buf, size, " lse=NULL");
}

static void describe_layouts(const test_case *c, char *buf, size_t size)
{
    const test_layout *const l[] = {c->lq, c->lk, c->lv, c->lo, c->ll, c->ldo, c->ldq, c->ldk,
                                    c->ldv};
    static const char *const names[] = {"q", "k", "v", "out", "lse", "dout", "dq", "dk", "dv"};
    for (int i = 0; i < (c->backward ? 9 : 5); i++)
        if (l[i])
            cat(buf, size, " %s=%s", names[i], l[i]->name);
    if (c->kv_batch_broadcast)
        cat(buf, size, " k,v=batch-broadcast");
}

/* " label=a,b" for the set bits of flags, bit i named names[i]. */
static void cat_flags(char *buf, size_t size, const char *label, int flags,
                      const char *const *names, int n)
{
    if (!flags)
        return;
    cat(buf, size, " %s=", label);
    for (int i = 0, first = 1; i < n; i++)
        if (flags & (1 << i)) {
            cat(buf, size, "%s%s", first ? "" : ",", names[i]);
            first = 0;
        }
}

static void describe_data(const test_case *c, char *buf, size_t size)
{
    static const char *const inf[] = {"-inf scatter", "-inf stripes", "-inf row", "NaN keys"};
    static const char *const poison[] = {"keys", "padding rows", "empty rows"};
    static const char *const plant[] = {"-inf", "all -inf rows", "NaN out", "NaN lse",
                                        "garbage"};
    if (c->dtype)
        cat(buf, size, " q/k/v %s", test_dtype_name(c->dtype));
    if (c->out_dtype)
        cat(buf, size, " out %s", test_dtype_name(c->out_dtype));
    if (c->grad_dtype)
        cat(buf, size, " grads %s", test_dtype_name(c->grad_dtype));
    if (c->qk_range != 0.0)
        cat(buf, size, " q,k in +-%g", c->qk_range);
    cat_flags(buf, size, "planted", c->bias_inf, inf, 4);
    if (c->nan_q)
        cat(buf, size, " NaN in q row %ld", (long)c->special_row);
    else if (c->bias_inf & (TC_INF_ROW | TC_NAN_KEYS))
        cat(buf, size, " special row %ld", (long)c->special_row);
    cat_flags(buf, size, "poisoned", c->poison, poison, 3);
    if (c->merge.n)
        cat(buf, size, " parts=%zu %s/%s", c->merge.n, test_dtype_name(c->merge.part_dtype),
            test_dtype_name(c->merge.alt_dtype));
    cat_flags(buf, size, "parts hold", c->merge.plant, plant, 5);
    if (c->merge.split[0] || c->merge.split[1])
        cat(buf, size, " keys split at %ld,%ld", (long)c->merge.split[0],
            (long)c->merge.split[1]);
    cat(buf, size, " data seed %#llx", (unsigned long long)c->seed);
}

const char *tc_describe(const test_case *c, char *buf, size_t size)
{
    if (!size)
        return buf;
    buf[0] = '\0';
    if (c->name)
        cat(buf, size, "%s: ", c->name);
    cat(buf, size, "B=%ld Hq=%ld Hkv=%ld Sq=%ld Sk=%ld D=%ld Dv=%ld", (long)c->B, (long)c->Hq,
        (long)c->Hkv, (long)c->Sq, (long)c->Sk, (long)c->D, (long)c->Dv);
    describe_desc(c, buf, size);
    describe_layouts(c, buf, size);
    describe_data(c, buf, size);
    return buf;
}

/* ---- the tensors of a case ----------------------------------------------------------------- */

void tc_dims(const test_case *c, tc_which w, int64_t dims[4])
{
    int kv = w == TC_K || w == TC_V || w == TC_DK || w == TC_DV;
    int head_dim = w == TC_Q || w == TC_K || w == TC_DQ || w == TC_DK;
    dims[0] = c->B;
    dims[1] = kv ? c->Hkv : c->Hq;
    dims[2] = kv ? c->Sk : c->Sq;
    dims[3] = w == TC_LSE ? 1 : head_dim ? c->D : c->Dv;
}

static clattn_dtype dtype_of(const test_case *c, tc_which w)
{
    switch (w) {
    case TC_Q: case TC_K: case TC_V: return c->dtype;
    case TC_OUT: case TC_DOUT: return c->out_dtype;
    case TC_LSE: return CLATTN_F32;
    default: return c->grad_dtype;
    }
}

void tc_tensor(test_tensor *t, const test_case *c, tc_which w)
{
    const test_layout *const by[] = {c->lq, c->lk, c->lv, c->lo, c->ll, c->ldo, c->ldq, c->ldk,
                                     c->ldv};
    const test_layout *l = by[w] ? by[w] : w >= TC_DQ ? &LAYOUT_BHSD_GUARDED : &LAYOUT_BHSD;
    int64_t dims[4];
    tc_dims(c, w, dims);
    if (c->kv_batch_broadcast && (w == TC_K || w == TC_V)) {
        const int64_t strides[4] = {0, dims[2] * dims[3], dims[3], 1};
        tt_init_strided(t, dtype_of(c, w), dims, strides, w == TC_K ? 8 : 4,
                        w == TC_K ? 16 : 12);
        return;
    }
    tt_init(t, dtype_of(c, w), dims, l);
}

/* The bias of c: dims [B|1, Hq|1, Sq|1, Sk], dense strides (0 for TC_BIAS_STRIDE0), two
   elements of offset and 8 bytes of tail. */
static void bias_tensor(test_tensor *t, const test_case *c)
{
    int64_t b = c->B, h = c->Hq, s = c->Sq;
    switch (c->bias) {
    case TC_BIAS_BATCH1: b = 1; break;
    case TC_BIAS_HEAD1: h = 1; break;
    case TC_BIAS_ROW1: s = 1; break;
    case TC_BIAS_KEYS: b = h = s = 1; break;
    default: break;
    }
    int stride0 = c->bias == TC_BIAS_STRIDE0;
    const int64_t dims[4] = {b, h, s, c->Sk};
    const int64_t strides[4] = {stride0 ? 0 : h * s * c->Sk, stride0 ? 0 : s * c->Sk, c->Sk, 1};
    tt_init_strided(t, c->bias_dtype, dims, strides, 2 * dtype_size(c->bias_dtype), 8);
}

/* -INFINITY at about one entry in 11 (scatter) or at every 7th key of a row, from key
   (i + h) mod 7 (stripes). */
static int planted_inf(int stripes, int64_t b, int64_t h, int64_t i, int64_t j)
{
    return stripes ? (j - i - h) % 7 == 0 : (i * 7 + j * 3 + b * 5 + h) % 11 == 0;
}

static void plant_inf(test_tensor *t, int stripes)
{
    const int64_t *n = t->view.dims;
    for (int64_t b = 0; b < n[0]; b++)
        for (int64_t h = 0; h < n[1]; h++)
            for (int64_t i = 0; i < n[2]; i++)
                for (int64_t j = 0; j < n[3]; j++)
                    if (planted_inf(stripes, b, h, i, j))
                        tt_set(t, b, h, i, j, -INFINITY);
}

/* NaN at the last key row special_row of the last (batch, head) sees, with batch 0's lengths;
   NaN at every key that row 0 of (0, 0) does not see. */
static void plant_nan_keys(test_tensor *t, const test_case *c, const ref_params *p)
{
    const int64_t *n = t->view.dims;
    int64_t sq_b = ref_seq_q(p, 0, c->Sq), sk_b = ref_seq_k(p, 0, c->Sk);
    for (int64_t j = c->Sk - 1; j >= 0; j--)
        if (ref_key_visible(p, sq_b, sk_b, c->special_row, j)) {
            tt_set(t, n[0] - 1, n[1] - 1, c->special_row, j, NAN);
            break;
        }
    for (int64_t j = 0; j < c->Sk; j++)
        if (!ref_key_visible(p, sq_b, sk_b, 0, j))
            tt_set(t, 0, 0, 0, j, NAN);
}

/* Row special_row of the last (batch, head): -INFINITY at every key it sees, +40 elsewhere. */
static void plant_inf_row(test_tensor *t, const test_case *c, const ref_params *p)
{
    const int64_t *n = t->view.dims;
    cr_assert(n[2] == c->Sq && c->special_row < c->Sq, "%s: TC_INF_ROW needs a bias with rows",
              c->name ? c->name : "case");
    int64_t b = n[0] - 1, h = n[1] - 1, i = c->special_row;
    int64_t sq_b = ref_seq_q(p, n[0] == 1 ? 0 : b, c->Sq);
    int64_t sk_b = ref_seq_k(p, n[0] == 1 ? 0 : b, c->Sk);
    for (int64_t j = 0; j < c->Sk; j++)
        tt_set(t, b, h, i, j, ref_key_visible(p, sq_b, sk_b, i, j) ? -INFINITY : 40.0);
}

static void build_bias(tc_run *r, test_rng *rng)
{
    const test_case *c = &r->c;
    ref_params p;
    tc_ref_params(c, &p);
    bias_tensor(&r->bias, c);
    tt_fill_random(&r->bias, rng, -1.5, 1.5);
    if (c->bias_inf & TC_INF_SCATTER)
        plant_inf(&r->bias, 0);
    if (c->bias_inf & TC_INF_STRIPES)
        plant_inf(&r->bias, 1);
    if (c->bias_inf & TC_NAN_KEYS)
        plant_nan_keys(&r->bias, c, &p);
    if (c->bias_inf & TC_INF_ROW)
        plant_inf_row(&r->bias, c, &p);
    tt_fill_outside(&r->bias, NAN);
}

static int batch_valid(const ref_params *p, int64_t b, int64_t sq, int64_t sk)
{
    int64_t sq_b = ref_seq_q(p, b, sq), sk_b = ref_seq_k(p, b, sk);
    return sq_b >= 0 && sq_b <= sq && sk_b >= 0 && sk_b <= sk;
}

void tc_poison_key(tc_run *r, int64_t b, int64_t j)
{
    const double bad[3] = {NAN, INFINITY, -INFINITY};
    for (int64_t g = 0; g < r->c.Hkv; g++) {
        for (int64_t d = 0; d < r->c.D; d++)
            tt_set(&r->k, b, g, j, d, bad[(j + d) % 3]);
        for (int64_t d = 0; d < r->c.Dv; d++)
            tt_set(&r->v, b, g, j, d, bad[(j + d + 1) % 3]);
        r->poisoned += r->c.D + r->c.Dv;
    }
}

/* TC_POISON_KEYS: the keys no row of their batch sees (the mask alone: keys masked only by
   -INFINITY bias take part in the score and stay clean). */
static void poison_keys(tc_run *r, const ref_params *p)
{
    const test_case *c = &r->c;
    cr_assert(!c->kv_batch_broadcast, "%s: k, v shared by batches cannot be poisoned",
              c->name ? c->name : "case");
    for (int64_t b = 0; b < c->B; b++) {
        if (!batch_valid(p, b, c->Sq, c->Sk))
            continue;
        int64_t sq_b = ref_seq_q(p, b, c->Sq), sk_b = ref_seq_k(p, b, c->Sk);
        for (int64_t j = 0; j < c->Sk; j++) {
            int seen = 0;
            for (int64_t i = 0; i < sq_b && !seen; i++)
                seen = ref_key_visible(p, sq_b, sk_b, i, j);
            if (!seen)
                tc_poison_key(r, b, j);
        }
    }
}

/* Whether TC_POISON_ROWS / TC_POISON_EMPTY hit row i of a valid batch. */
static int row_poisoned(const test_case *c, const ref_params *p, int64_t sq_b, int64_t sk_b,
                        int64_t i)
{
    if (i >= sq_b)
        return (c->poison & TC_POISON_ROWS) != 0;
    for (int64_t j = 0; j < sk_b; j++)
        if (ref_key_visible(p, sq_b, sk_b, i, j))
            return 0;
    return (c->poison & TC_POISON_EMPTY) != 0;
}

/* NaN into the q (and dout) rows of padding rows and of rows that see no key. */
static void poison_rows(tc_run *r, const ref_params *p)
{
    const test_case *c = &r->c;
    for (int64_t b = 0; b < c->B; b++) {
        if (!batch_valid(p, b, c->Sq, c->Sk))
            continue;
        int64_t sq_b = ref_seq_q(p, b, c->Sq), sk_b = ref_seq_k(p, b, c->Sk);
        for (int64_t i = 0; i < c->Sq; i++) {
            if (!row_poisoned(c, p, sq_b, sk_b, i))
                continue;
            for (int64_t h = 0; h < c->Hq; h++) {
                for (int64_t d = 0; d < c->D; d++)
                    tt_set(&r->q, b, h, i, d, NAN);
                for (int64_t d = 0; c->backward && d < c->Dv; d++)
                    tt_set(&r->dout, b, h, i, d, NAN);
                r->poisoned += c->D + (c->backward ? c->Dv : 0);
            }
        }
    }
}

static void build_tensors(tc_run *r)
{
    const test_case *c = &r->c;
    tc_tensor(&r->q, c, TC_Q);
    tc_tensor(&r->k, c, TC_K);
    tc_tensor(&r->v, c, TC_V);
    tc_tensor(&r->out, c, TC_OUT);
    tc_tensor(&r->lse, c, TC_LSE);
    if (!c->backward)
        return;
    tc_tensor(&r->dout, c, TC_DOUT);
    tc_tensor(&r->dq, c, TC_DQ);
    tc_tensor(&r->dk, c, TC_DK);
    tc_tensor(&r->dv, c, TC_DV);
}

/* r's sinks [1, Hq, 1, 1] and their values for the reference. */
static void build_sinks(tc_run *r, test_rng *rng)
{
    const int64_t dims[4] = {1, r->c.Hq, 1, 1};
    tt_init(&r->sinks, CLATTN_F32, dims, &LAYOUT_BHSD);
    tt_fill_random(&r->sinks, rng, -2.0, 4.0);
    r->sink_values = malloc((size_t)r->c.Hq * sizeof *r->sink_values);
    cr_assert_not_null(r->sink_values);
    for (int64_t h = 0; h < r->c.Hq; h++)
        r->sink_values[h] = tt_get(&r->sinks, 0, h, 0, 0);
}

void tc_build(tc_run *r, const test_case *c)
{
    memset(r, 0, sizeof *r);
    r->c = *c;
    build_tensors(r);
    test_rng rng;
    rng_seed(&rng, c->seed);
    double a = c->qk_range > 0.0 ? c->qk_range : 1.0;
    tt_fill_random(&r->q, &rng, -a, a);
    tt_fill_random(&r->k, &rng, -a, a);
    /* v off-centre: a row's outputs then rarely cancel to ~0, which would make the per-row
       relative metric measure f32 rounding of a cancellation instead of the kernel (Dv = 1) */
    tt_fill_random(&r->v, &rng, -0.5, 1.5);
    if (c->backward)
        tt_fill_random(&r->dout, &rng, -1.0, 1.0);
    if (c->nan_q)
        tt_set(&r->q, c->B - 1, c->Hq - 1, c->special_row, c->D / 2, NAN);
    if (c->bias)
        build_bias(r, &rng);
    if (c->sinks)
        build_sinks(r, &rng);
    ref_params p;
    tc_ref_params(c, &p);
    if (c->poison & TC_POISON_KEYS)
        poison_keys(r, &p);
    if (c->poison & (TC_POISON_ROWS | TC_POISON_EMPTY))
        poison_rows(r, &p);
    cr_assert(!c->poison || r->poisoned > 0, "table: %s poisons nothing",
              c->name ? c->name : "case");
    /* bytes outside the input views: a kernel that reads them gets NaN or Inf */
    tt_fill_outside(&r->q, NAN);
    tt_fill_outside(&r->k, INFINITY);
    tt_fill_outside(&r->v, NAN);
    if (c->backward)
        tt_fill_outside(&r->dout, NAN);
}

void tc_upload(tc_run *r)
{
    cl_mem_flags in = r->c.writable_inputs ? CL_MEM_READ_WRITE : CL_MEM_READ_ONLY;
    test_tensor *const inputs[] = {&r->q, &r->k, &r->v, &r->dout, &r->bias, &r->sinks};
    test_tensor *const outputs[] = {&r->out, &r->lse, &r->dq, &r->dk, &r->dv};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        if (inputs[i]->host)
            tt_upload(inputs[i], in);
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++)
        if (outputs[i]->host)
            tt_upload(outputs[i], CL_MEM_READ_WRITE);
    size_t lens = (size_t)r->c.B * sizeof(int32_t);
    if (r->c.seqlens_q)
        r->seqlens_q = buf_new(CL_MEM_READ_ONLY, lens, r->c.seqlens_q);
    if (r->c.seqlens_k)
        r->seqlens_k = buf_new(CL_MEM_READ_ONLY, lens, r->c.seqlens_k);
}

void tc_free(tc_run *r)
{
    test_tensor *const all[] = {&r->q, &r->k, &r->v, &r->out, &r->lse, &r->bias, &r->sinks,
                                &r->dout, &r->dq, &r->dk, &r->dv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tt_free(all[i]);
    if (r->seqlens_q)
        clReleaseMemObject(r->seqlens_q);
    if (r->seqlens_k)
        clReleaseMemObject(r->seqlens_k);
    free(r->ref_out_data);
    free(r->ref_lse_data);
    free(r->sink_values);
    memset(r, 0, sizeof *r);
}

void tc_run_desc(const tc_run *r, clattn_attention_desc *d)
{
    tc_desc(&r->c, d);
    d->bias = r->bias.host ? &r->bias.view : NULL;
    d->sinks = r->sinks.host ? &r->sinks.view : NULL;
    d->seqlens_q = r->seqlens_q;
    d->seqlens_k = r->seqlens_k;
}

/* ---- calls ------------------------------------------------------------------------------- */

void tc_args_init(tc_args *a, const tc_run *r)
{
    memset(a, 0, sizeof *a);
    a->ctx = test_ctx();
    tc_run_desc(r, &a->desc);
    a->q = r->q.view, a->k = r->k.view, a->v = r->v.view;
    a->out = r->out.view, a->lse = r->lse.view, a->dout = r->dout.view;
    a->dq = r->dq.view, a->dk = r->dk.view, a->dv = r->dv.view;
    a->descp = &a->desc;
    a->qp = &a->q, a->kp = &a->k, a->vp = &a->v;
    a->outp = &a->out, a->lsep = r->c.no_lse ? NULL : &a->lse, a->doutp = &a->dout;
    a->dqp = &a->dq, a->dkp = &a->dk, a->dvp = &a->dv;
}

clattn_status tc_call_forward(const tc_args *a, cl_event *event)
{
    return clattn_attention_forward(a->ctx, a->descp, a->qp, a->kp, a->vp, a->outp, a->lsep,
                                    a->num_wait, a->wait_list, event);
}

clattn_status tc_call_backward(const tc_args *a, cl_event *event)
{
    return clattn_attention_backward(a->ctx, a->descp, a->qp, a->kp, a->vp, a->outp, a->doutp,
                                     a->lsep, a->dqp, a->dkp, a->dvp, a->num_wait, a->wait_list,
                                     event);
}

clattn_status tc_forward(tc_run *r, cl_uint num_wait, const cl_event *wait_list,
                         cl_event *event)
{
    tc_args a;
    tc_args_init(&a, r);
    a.num_wait = num_wait;
    a.wait_list = wait_list;
    return tc_call_forward(&a, event);
}

clattn_status tc_backward(tc_run *r, cl_uint num_wait, const cl_event *wait_list,
                          cl_event *event)
{
    tc_args a;
    tc_args_init(&a, r);
    a.lsep = &a.lse;   /* the backward always needs the forward's lse */
    a.num_wait = num_wait;
    a.wait_list = wait_list;
    return tc_call_backward(&a, event);
}

void tc_expect_rejected(const test_case *c, clattn_status st, cl_event ev, const char *label)
{
    const char *msg = clattn_last_error(), *want = clattn_status_string(c->expect.status);
    cr_log_info("%-46s -> %s: %s", label, clattn_status_string(st), msg);
    cr_expect(st == c->expect.status || (c->expect.also && st == c->expect.also),
              "%s: got %s (%s), want %s%s%s", label, clattn_status_string(st), msg, want,
              c->expect.also ? " or " : "",
              c->expect.also ? clattn_status_string(c->expect.also) : "");
    cr_expect(msg && *msg, "%s: empty clattn_last_error()", label);
    const char *names[2] = {c->expect.names, c->expect.names2};
    for (int i = 0; i < 2; i++)
        if (names[i] && msg)
            cr_expect(test_message_names(msg, names[i]), "%s: message \"%s\" does not name %s",
                      label, msg, names[i]);
    cr_expect_null(ev, "%s: *event not NULL after a failure", label);
    if (st == CLATTN_SUCCESS && ev)
        test_wait_event(ev, label);
}

/* ---- reference and checks ------------------------------------------------------------------ */

void tc_reference(tc_run *r)
{
    if (r->ref_out_data)
        return;
    ref_params p;
    tc_ref_params(&r->c, &p);
    p.sinks = r->sink_values;
    test_reference_of(p, &r->q, &r->k, &r->v, r->bias.host ? &r->bias : NULL,
                      &r->ref_out_data, &r->ref_out, &r->ref_lse_data, &r->ref_lse);
}

void tc_reference_grads(tc_run *r, test_grads *g, unsigned char **zero_q,
                        unsigned char **zero_kv)
{
    const test_case *c = &r->c;
    ref_params p;
    tc_ref_params(c, &p);
    p.sinks = r->sink_values;
    const test_tensor *bias = r->bias.host ? &r->bias : NULL;
    test_reference_backward_of(p, &r->q, &r->k, &r->v, &r->dout, bias, g);
    double *bias_store = NULL;
    ref_tensor rb;
    if (bias) {
        rb = tt_to_ref(bias, &bias_store);
        p.bias = &rb;
    }
    test_grad_zero_rows(&p, c->B, c->Hq, c->Hkv, c->Sq, c->Sk, zero_q, zero_kv);
    free(bias_store);
}

void tc_expect_unchanged(const test_tensor *t, const char *name, const char *label)
{
    unsigned char *now = malloc(t->bytes ? t->bytes : 1);
    cr_assert_not_null(now);
    buf_read(t->view.buffer, t->bytes, now);
    size_t first = SIZE_MAX;
    for (size_t i = 0; i < t->bytes && first == SIZE_MAX; i++)
        if (now[i] != t->host[i])
            first = i;
    cr_expect_eq(first, SIZE_MAX, "%s: input %s was written (byte %zu)", label, name, first);
    free(now);
}

void tc_expect_outside_intact(const test_tensor *t, const char *name, const char *label)
{
    size_t first;
    size_t bad = tt_outside_damage(t, &first);
    cr_expect_eq(bad, 0, "%s: %zu bytes around the %s view changed (first at byte %zu of %zu)",
                 label, bad, name, first, t->bytes);
}

/* The table's want flags against the reference forward. */
static void check_forward_wants(const tc_run *r, const char *label, tc_fwd_result *res)
{
    res->empty_rows = res->nan_rows = 0;
    for (int64_t i = 0; i < ref_numel(&r->ref_lse); i++) {
        double x = r->ref_lse_data[i];
        res->empty_rows += isinf(x) && x < 0;
        res->nan_rows += isnan(x) != 0;
    }
    int want = r->c.want;
    cr_assert(!(want & TC_WANT_EMPTY) || res->empty_rows > 0, "table: %s has no empty row",
              label);
    cr_assert(((want & TC_WANT_NAN) != 0) == (res->nan_rows > 0), "table: %s: %ld NaN rows",
              label, (long)res->nan_rows);
}

void tc_check_forward(tc_run *r, const char *label, tc_fwd_result *res)
{
    char buf[256];
    tc_fwd_result local;
    if (!res)
        res = &local;
    tt_download(&r->out);
    tt_download(&r->lse);
    tc_reference(r);
    check_forward_wants(r, label, res);
    double tol = test_out_tolerance(r->c.out_dtype);
    res->out = compare_out(&r->out, &r->ref_out);
    cr_expect(res->out.worst <= tol, "%s: out %s (tolerance %g)", label,
              cmp_describe(&res->out, buf, sizeof buf), tol);
    res->lse = cmp_none();
    if (!r->c.no_lse) {
        res->lse = compare_lse(&r->lse, &r->ref_lse);
        cr_expect(res->lse.worst <= TOL_F32_LSE, "%s: lse %s (tolerance %g)", label,
                  cmp_describe(&res->lse, buf, sizeof buf), TOL_F32_LSE);
    } else {
        size_t first = canary_first_bad(r->lse.host, r->lse.bytes);
        cr_expect_eq(first, SIZE_MAX, "%s: lse == NULL, yet its buffer changed at byte %zu",
                     label, first);
    }
    tc_expect_outside_intact(&r->out, "out", label);
    tc_expect_outside_intact(&r->lse, "lse", label);
    tc_expect_unchanged(&r->q, "q", label);
    tc_expect_unchanged(&r->k, "k", label);
    tc_expect_unchanged(&r->v, "v", label);
}

/* The table's want flags against the reference gradients. */
static void check_backward_wants(const tc_run *r, const test_grads *g, const unsigned char *zq,
                                 const unsigned char *zkv, const char *label)
{
    const test_case *c = &r->c;
    int64_t zero_q = 0, zero_kv = 0, nan = 0;
    for (int64_t i = 0; i < c->B * c->Hq * c->Sq; i++)
        zero_q += zq[i];
    for (int64_t i = 0; i < c->B * c->Hkv * c->Sk; i++)
        zero_kv += zkv[i];
    for (int64_t i = 0; i < ref_numel(&g->dq); i++)
        nan += isnan(g->dq_data[i]) != 0;
    cr_assert(!(c->want & TC_WANT_ZERO_DQ) || zero_q > 0, "table: %s has no zero dq row", label);
    cr_assert(!(c->want & TC_WANT_ZERO_DKV) || zero_kv > 0, "table: %s has no zero dk row",
              label);
    cr_assert(((c->want & TC_WANT_NAN) != 0) == (nan > 0), "table: %s: %ld NaN in the reference",
              label, (long)nan);
}

static void expect_grad(const cmp_result *r, double tol, const char *name, const char *label)
{
    char buf[256];
    cr_expect(r->worst <= tol && r->hard == 0, "%s: %s %s (tolerance %g)", label, name,
              cmp_describe(r, buf, sizeof buf), tol);
}

void tc_check_backward(tc_run *r, const char *label, tc_grad_result *res)
{
    tc_grad_result local;
    if (!res)
        res = &local;
    tt_download(&r->dq);
    tt_download(&r->dk);
    tt_download(&r->dv);
    test_grads g;
    unsigned char *zq, *zkv;
    tc_reference_grads(r, &g, &zq, &zkv);
    check_backward_wants(r, &g, zq, zkv, label);
    res->tol = test_grad_tolerance(r->c.grad_dtype, r->c.out_dtype);
    res->dq = compare_grad(&r->dq, &g.dq, zq);
    res->dk = compare_grad(&r->dk, &g.dk, zkv);
    res->dv = compare_grad(&r->dv, &g.dv, zkv);
    expect_grad(&res->dq, res->tol, "dq", label);
    expect_grad(&res->dk, res->tol, "dk", label);
    expect_grad(&res->dv, res->tol, "dv", label);
    tc_expect_outside_intact(&r->dq, "dq", label);
    tc_expect_outside_intact(&r->dk, "dk", label);
    tc_expect_outside_intact(&r->dv, "dv", label);
    const test_tensor *in[4] = {&r->q, &r->k, &r->v, &r->dout};
    const char *names[4] = {"q", "k", "v", "dout"};
    for (int i = 0; i < 4; i++)
        tc_expect_unchanged(in[i], names[i], label);
    free(zq);
    free(zkv);
    test_grads_free(&g);
}
