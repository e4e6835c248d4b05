/* clattn-bench --peak: two calibration kernels, timed by OpenCL profiling events, and on CPU
   devices a host loop to check the first against.
   - fma_chains: every work-item runs CHAINS independent FMA chains of WIDTH-wide vectors for n
     steps (2 * WIDTH * CHAINS * n FLOPs); CUs * 1024 work-items; n is scaled so a run takes
     ~0.1 s. On CPUs WIDTH is the device's preferred float width and CHAINS 12: the chains and
     the two operands fill 14 of AVX2's 16 vector registers and cover twice the 4-cycle FMA
     latency of two pipes (8 chains of float16 there took 18 registers, spilled and measured
     ~0.55x what the host loop does). Elsewhere float16 x 8 chains per work-item.
   - stream_read: sums a buffer of min(256 MiB, max allocation / 4) as float16 loads and
     writes one float per work-item. On CPUs each work-item streams its own contiguous chunk
     (CUs * 16 work-items, one per work-group: PoCL gives work-groups to its threads, and a
     group's work-items run one after another); elsewhere neighbouring work-items read
     neighbouring vectors (CUs * 1024 work-items), the pattern GPUs coalesce.
   Each figure is the best of RUNS runs after a warm-up run. */
#include "peak.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "measure.h"

#define RUNS 5
#define TARGET_MS 100.0
#define BUFFER_BYTES ((cl_ulong)256 << 20)

static const char peak_source[] =
    "#define VECTOR_(w) float##w\n"
    "#define VECTOR(w) VECTOR_(w)\n"
    "#define STORE_(w) vstore##w\n"
    "#define STORE(w) STORE_(w)\n"
    "typedef VECTOR(WIDTH) floatw;\n"
    "__kernel void fma_chains(__global float *out, float a, float b, int n)\n"
    "{\n"
    "    floatw x[CHAINS];\n"
    "    #pragma unroll\n"
    "    for (int c = 0; c < CHAINS; c++)\n"
    "        x[c] = (floatw)((float)get_global_id(0) * 1e-7f + 0.1f * c);\n"
    "    for (int i = 0; i < n; i++) {\n"
    "        #pragma unroll\n"
    "        for (int c = 0; c < CHAINS; c++)\n"
    "            x[c] = fma(x[c], (floatw)(a), (floatw)(b));\n"
    "    }\n"
    "    float lanes[WIDTH], s = 0.0f;\n"
    "    #pragma unroll\n"
    "    for (int c = 1; c < CHAINS; c++)\n"
    "        x[0] += x[c];\n"
    "    STORE(WIDTH)(x[0], 0, lanes);\n"
    "    for (int e = 0; e < WIDTH; e++)\n"
    "        s += lanes[e];\n"
    "    out[get_global_id(0)] = s;\n"
    "}\n"
    "\n"
    "#ifdef CONTIGUOUS\n"
    "#define INDEX(i) (gid * per + (i))\n"
    "#else\n"
    "#define INDEX(i) ((i) * get_global_size(0) + gid)\n"
    "#endif\n"
    "__kernel void stream_read(__global const float16 *in, __global float *out, uint per)\n"
    "{\n"
    "    size_t gid = get_global_id(0);\n"
    "    float16 s0 = 0.0f, s1 = 0.0f;\n"
    "    for (uint i = 0; i + 1 < per; i += 2) {\n"
    "        s0 += in[INDEX(i)];\n"
    "        s1 += in[INDEX(i + 1)];\n"
    "    }\n"
    "    float16 s = s0 + s1;\n"
    "    float8 s8 = s.lo + s.hi;\n"
    "    float4 s4 = s8.lo + s8.hi;\n"
    "    out[gid] = s4.x + s4.y + s4.z + s4.w;\n"
    "}\n";

typedef struct device_facts {
    cl_device_id id;
    cl_uint units;
    cl_ulong max_alloc;
    int cpu;
    int width, chains;   /* of fma_chains */
} device_facts;

static int cl_fail(const char *what, cl_int err)
{
    fprintf(stderr, "clattn-bench: --peak: %s: OpenCL error %d\n", what, (int)err);
    return 0;
}

static int query_device(cl_command_queue queue, device_facts *f)
{
    cl_device_type type = 0;
    cl_int err = clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof f->id, &f->id, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(f->id, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof f->units, &f->units,
                              NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(f->id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof f->max_alloc,
                              &f->max_alloc, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(f->id, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    cl_uint preferred = 0;
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(f->id, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof preferred,
                              &preferred, NULL);
    f->cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    f->units = f->units ? f->units : 1;
    f->width = !f->cpu ? 16 : preferred >= 16 ? 16 : preferred >= 8 ? 8 : 4;
    f->chains = f->cpu ? 12 : 8;
    return err == CL_SUCCESS ? 1 : cl_fail("clGetDeviceInfo", err);
}

static cl_program build(cl_context c, const device_facts *f)
{
    const char *src = peak_source;
    char options[64];
    snprintf(options, sizeof options, "-DWIDTH=%d -DCHAINS=%d%s", f->width, f->chains,
             f->cpu ? " -DCONTIGUOUS" : "");
    cl_int err = CL_SUCCESS;
    cl_program p = clCreateProgramWithSource(c, 1, &src, NULL, &err);
    if (p)
        err = clBuildProgram(p, 1, &f->id, options, NULL, NULL);
    if (err == CL_SUCCESS)
        return p;
    if (p)
        clReleaseProgram(p);
    cl_fail("building the calibration kernels", err);
    return NULL;
}

/* Runs k once over `global` work-items in groups of `local` (0: the runtime picks) and writes
   its device time in ms. */
static int run_ms(cl_command_queue q, cl_kernel k, size_t global, size_t local, double *ms)
{
    cl_event ev = NULL;
    cl_ulong t0 = 0, t1 = 0;
    cl_int err = clEnqueueNDRangeKernel(q, k, 1, NULL, &global, local ? &local : NULL, 0, NULL,
                                        &ev);
    if (err == CL_SUCCESS)
        err = clWaitForEvents(1, &ev);
    if (err == CL_SUCCESS)
        err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
    if (err == CL_SUCCESS)
        err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    if (ev)
        clReleaseEvent(ev);
    *ms = t1 > t0 ? (double)(t1 - t0) * 1e-6 : 1e-6;
    return err == CL_SUCCESS ? 1 : cl_fail("running a calibration kernel", err);
}

/* The best of RUNS runs, after one warm-up run. */
static int best_ms(cl_command_queue q, cl_kernel k, size_t global, size_t local, double *best)
{
    double ms = 0.0;
    if (!run_ms(q, k, global, local, &ms))
        return 0;
    *best = 1e30;
    for (int i = 0; i < RUNS; i++) {
        if (!run_ms(q, k, global, local, &ms))
            return 0;
        *best = ms < *best ? ms : *best;
    }
    return 1;
}

static int set_fma_args(cl_kernel k, cl_mem out, cl_int n)
{
    float a = 0.9999f, b = 1e-4f;
    cl_int err = clSetKernelArg(k, 0, sizeof out, &out);
    err = err == CL_SUCCESS ? clSetKernelArg(k, 1, sizeof a, &a) : err;
    err = err == CL_SUCCESS ? clSetKernelArg(k, 2, sizeof b, &b) : err;
    err = err == CL_SUCCESS ? clSetKernelArg(k, 3, sizeof n, &n) : err;
    return err == CL_SUCCESS ? 1 : cl_fail("clSetKernelArg", err);
}

/* FMA rate: a short run to size n for ~TARGET_MS, then the best of RUNS. */
static int measure_fma(cl_command_queue q, cl_kernel k, cl_mem out, const device_facts *f,
                       size_t global, double *gf)
{
    cl_int n = 64;
    double ms = 0.0;
    if (!set_fma_args(k, out, n) || !best_ms(q, k, global, 0, &ms))
        return 0;
    double scaled = (double)n * TARGET_MS / ms;
    n = (cl_int)(scaled < 64.0 ? 64.0 : scaled > 1e7 ? 1e7 : scaled);
    if (!set_fma_args(k, out, n) || !best_ms(q, k, global, 0, &ms))
        return 0;
    *gf = 2.0 * f->width * f->chains * (double)n * (double)global / (ms * 1e-3) / 1e9;
    return 1;
}

/* Read bandwidth over a buffer of `bytes`, a multiple of 128 * global; on CPUs one work-item
   per work-group, so that PoCL spreads the chunks over its threads. */
static int measure_read(cl_context c, cl_command_queue q, cl_kernel k, cl_mem out,
                        size_t global, int cpu, cl_ulong bytes, double *gbps)
{
    cl_int err = CL_SUCCESS;
    cl_mem in = clCreateBuffer(c, CL_MEM_READ_ONLY, (size_t)bytes, NULL, &err);
    float one = 1.0f;
    cl_uint per = (cl_uint)(bytes / 64 / global);
    double ms = 0.0;
    if (err == CL_SUCCESS)   /* touches every page before the timed runs */
        err = clEnqueueFillBuffer(q, in, &one, sizeof one, 0, (size_t)bytes, 0, NULL, NULL);
    err = err == CL_SUCCESS ? clSetKernelArg(k, 0, sizeof in, &in) : err;
    err = err == CL_SUCCESS ? clSetKernelArg(k, 1, sizeof out, &out) : err;
    err = err == CL_SUCCESS ? clSetKernelArg(k, 2, sizeof per, &per) : err;
    int ok = err == CL_SUCCESS ? best_ms(q, k, global, cpu ? 1 : 0, &ms)
                               : cl_fail("stream_read setup", err);
    if (in)
        clReleaseMemObject(in);
    *gbps = ok ? (double)bytes / (ms * 1e-3) / 1e9 : 0.0;
    return ok;
}

/* Both measurements with the program built; out holds one float per work-item of either. */
static int measure_both(cl_context c, cl_command_queue q, cl_program p, const device_facts *f,
                        cl_mem out, peak *r)
{
    size_t fma_global = (size_t)f->units * 1024;
    size_t read_global = (size_t)f->units * (f->cpu ? 16 : 1024);
    cl_ulong bytes = f->max_alloc / 4 < BUFFER_BYTES ? f->max_alloc / 4 : BUFFER_BYTES;
    bytes -= bytes % (64 * (cl_ulong)read_global * 2);
    cl_int err = CL_SUCCESS;
    cl_kernel fma = clCreateKernel(p, "fma_chains", &err), rd = NULL;
    if (fma)
        rd = clCreateKernel(p, "stream_read", &err);
    int ok = rd ? measure_fma(q, fma, out, f, fma_global, &r->gflops) &&
                      measure_read(c, q, rd, out, read_global, f->cpu, bytes, &r->gbps)
                : cl_fail("clCreateKernel", err);
    r->buffer_mib = (double)bytes / (1 << 20);
    if (fma)
        clReleaseKernel(fma);
    if (rd)
        clReleaseKernel(rd);
    return ok;
}

/* ---- the host loop: the same chains in C on every core, for CPU devices ----------------- */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HOST_CHAINS 12   /* as the kernel's: enough for two 4-cycle FMA pipes */

/* chains_<name>(n): HOST_CHAINS chains of n FMAs on vectors of `lanes` floats, built for that
   instruction set; returns their sum so that none is optimised away. */
#define DEFINE_CHAINS(name, isa, vec_t, lanes, SET1, FMADD, ADD, STOREU)                          \
    __attribute__((target(isa))) static float chains_##name(long n)                              \
    {                                                                                            \
        const vec_t a = SET1(0.9999f), b = SET1(1e-4f);                                          \
        vec_t x[HOST_CHAINS];                                                                    \
        for (int c = 0; c < HOST_CHAINS; c++)                                                    \
            x[c] = SET1(0.1f * (float)c);                                                        \
        for (long i = 0; i < n; i++) {                                                           \
            _Pragma("GCC unroll 12") for (int c = 0; c < HOST_CHAINS; c++)                       \
                x[c] = FMADD(x[c], a, b);                                                        \
        }                                                                                        \
        float sum[lanes], s = 0.0f;                                                              \
        for (int c = 1; c < HOST_CHAINS; c++)                                                    \
            x[0] = ADD(x[0], x[c]);                                                              \
        STOREU(sum, x[0]);                                                                       \
        for (int e = 0; e < lanes; e++)                                                          \
            s += sum[e];                                                                         \
        return s;                                                                                \
    }
DEFINE_CHAINS(avx512, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps,
              _mm512_storeu_ps)
DEFINE_CHAINS(avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps,
              _mm256_storeu_ps)

typedef struct host_chains {
    long n;
    int width;   /* 16 or 8 */
    float sum;
    pthread_t thread;
} host_chains;

static void *run_chains(void *arg)
{
    host_chains *h = arg;
    h->sum = h->width == 16 ? chains_avx512(h->n) : chains_avx2(h->n);
    return NULL;
}

#define HOST_MAX_THREADS 256

/* One thread per core running n steps each: the wall time in ms, or -1 if a thread did not
   start. */
static double host_run_ms(int threads, long n, int width)
{
    host_chains h[HOST_MAX_THREADS];
    int started = 0;
    double t0 = bench_now_ms();
    for (; started < threads; started++) {
        h[started] = (host_chains){.n = n, .width = width};
        if (pthread_create(&h[started].thread, NULL, run_chains, &h[started]) != 0)
            break;
    }
    for (int i = 0; i < started; i++)
        pthread_join(h[i].thread, NULL);
    double ms = bench_now_ms() - t0;
    return started == threads ? ms : -1.0;
}

/* The host loop's rate on `threads` cores, sized and repeated as the kernel's. */
static void host_fma(int threads, peak *out)
{
    __builtin_cpu_init();
    const int width = __builtin_cpu_supports("avx512f") ? 16
                      : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 8
                                                                                         : 0;
    threads = threads < HOST_MAX_THREADS ? threads : HOST_MAX_THREADS;
    long n = 1L << 20;
    double ms = width ? host_run_ms(threads, n, width) : -1.0;
    if (ms <= 0.0)
        return;
    n = (long)((double)n * TARGET_MS / ms) + 1;
    double best = 1e30;
    for (int i = 0; i < RUNS; i++) {
        ms = host_run_ms(threads, n, width);
        best = ms > 0.0 && ms < best ? ms : best;
    }
    if (best >= 1e30)
        return;
    out->host_gflops = 2.0 * width * HOST_CHAINS * (double)n * threads / (best * 1e-3) / 1e9;
    out->host_isa = width == 16 ? "avx512f" : "avx2";
}
#else
static void host_fma(int threads, peak *out)
{
    (void)threads, (void)out;
}
#endif

int peak_measure(cl_context c, cl_command_queue queue, peak *out)
{
    device_facts f;
    memset(out, 0, sizeof *out);
    if (!query_device(queue, &f))
        return 0;
    cl_int err = CL_SUCCESS;
    cl_mem sums = clCreateBuffer(c, CL_MEM_WRITE_ONLY, (size_t)f.units * 1024 * sizeof(float),
                                 NULL, &err);
    if (!sums)
        return cl_fail("clCreateBuffer", err);
    cl_program p = build(c, &f);
    int ok = p && measure_both(c, queue, p, &f, sums, out);
    if (ok && f.cpu)
        host_fma((int)f.units, out);
    if (p)
        clReleaseProgram(p);
    clReleaseMemObject(sums);
    return ok;
}
