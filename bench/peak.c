/* clattn-bench --peak: two calibration kernels, timed by OpenCL profiling events.
   - fma_chains: every work-item runs CHAINS independent float16 FMA chains for n steps
     (2 * 16 * CHAINS * n FLOPs); CUs * 1024 work-items; n is scaled so a run takes ~0.1 s.
   - stream_read: sums a buffer of min(256 MiB, max allocation / 4) as float16 loads and
     writes one float per work-item. On CPUs each work-item streams its own contiguous chunk
     (CUs * 16 work-items, one per work-group: PoCL gives work-groups to its threads, and a
     group's work-items run one after another); elsewhere neighbouring work-items read
     neighbouring vectors (CUs * 1024 work-items), the pattern GPUs coalesce.
   Each figure is the best of RUNS runs after a warm-up run. */
#include "peak.h"

#include <stdio.h>
#include <string.h>

#define RUNS 5
#define TARGET_MS 100.0
#define BUFFER_BYTES ((cl_ulong)256 << 20)

static const char peak_source[] =
    "#define CHAINS 8\n"
    "__kernel void fma_chains(__global float *out, float a, float b, int n)\n"
    "{\n"
    "    float16 va = (float16)(a), vb = (float16)(b);\n"
    "    float16 x0 = (float16)((float)get_global_id(0) * 1e-7f);\n"
    "    float16 x1 = x0 + 0.1f, x2 = x0 + 0.2f, x3 = x0 + 0.3f, x4 = x0 + 0.4f;\n"
    "    float16 x5 = x0 + 0.5f, x6 = x0 + 0.6f, x7 = x0 + 0.7f;\n"
    "    for (int i = 0; i < n; i++) {\n"
    "        x0 = fma(x0, va, vb); x1 = fma(x1, va, vb); x2 = fma(x2, va, vb);\n"
    "        x3 = fma(x3, va, vb); x4 = fma(x4, va, vb); x5 = fma(x5, va, vb);\n"
    "        x6 = fma(x6, va, vb); x7 = fma(x7, va, vb);\n"
    "    }\n"
    "    float16 s = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));\n"
    "    float8 s8 = s.lo + s.hi;\n"
    "    float4 s4 = s8.lo + s8.hi;\n"
    "    out[get_global_id(0)] = s4.x + s4.y + s4.z + s4.w;\n"
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

#define CHAINS 8   /* must match the kernel */

typedef struct device_facts {
    cl_device_id id;
    cl_uint units;
    cl_ulong max_alloc;
    int cpu;
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
    f->cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    f->units = f->units ? f->units : 1;
    return err == CL_SUCCESS ? 1 : cl_fail("clGetDeviceInfo", err);
}

static cl_program build(cl_context c, const device_facts *f)
{
    const char *src = peak_source;
    cl_int err = CL_SUCCESS;
    cl_program p = clCreateProgramWithSource(c, 1, &src, NULL, &err);
    if (p)
        err = clBuildProgram(p, 1, &f->id, f->cpu ? "-DCONTIGUOUS" : "", NULL, NULL);
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
static int measure_fma(cl_command_queue q, cl_kernel k, cl_mem out, size_t global, double *gf)
{
    cl_int n = 64;
    double ms = 0.0;
    if (!set_fma_args(k, out, n) || !best_ms(q, k, global, 0, &ms))
        return 0;
    double scaled = (double)n * TARGET_MS / ms;
    n = (cl_int)(scaled < 64.0 ? 64.0 : scaled > 1e7 ? 1e7 : scaled);
    if (!set_fma_args(k, out, n) || !best_ms(q, k, global, 0, &ms))
        return 0;
    *gf = 2.0 * 16.0 * CHAINS * (double)n * (double)global / (ms * 1e-3) / 1e9;
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
    int ok = rd ? measure_fma(q, fma, out, fma_global, &r->gflops) &&
                      measure_read(c, q, rd, out, read_global, f->cpu, bytes, &r->gbps)
                : cl_fail("clCreateKernel", err);
    r->buffer_mib = (double)bytes / (1 << 20);
    if (fma)
        clReleaseKernel(fma);
    if (rd)
        clReleaseKernel(rd);
    return ok;
}

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
    if (p)
        clReleaseProgram(p);
    clReleaseMemObject(sums);
    return ok;
}
