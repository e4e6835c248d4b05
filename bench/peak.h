/* Calibration of clattn-bench --peak: the device's f32 FMA rate and memory read bandwidth,
   measured with two small bench-only kernels built through the plain OpenCL API. */
#ifndef CLATTN_BENCH_PEAK_H
#define CLATTN_BENCH_PEAK_H

#include <clattn.h>   /* the OpenCL headers */

typedef struct peak {
    double gflops;       /* f32 FMA rate, 2 FLOPs per FMA */
    double gbps;         /* bytes read per second from global memory, 1e9 */
    double buffer_mib;   /* size of the buffer the bandwidth kernel streams */
    /* CPU devices: the same FMA chains as a host loop on every core; 0 and NULL when not
       measured (another device, a host without AVX2, a compiler without x86 intrinsics) */
    double host_gflops;
    const char *host_isa;
} peak;

/* Measures both on queue (profiling enabled) of context c, best of a few runs each. Returns 0
   after printing the OpenCL error to stderr when a kernel cannot be built or run. */
int peak_measure(cl_context c, cl_command_queue queue, peak *out);

#endif
