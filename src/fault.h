/* Fault injection for tests: with `meson setup -Dfault_injection=true` (off by default) the
   library counts its OpenCL allocations, program builds and host allocations, and can make the
   Nth of a kind fail, once:
     CLATTN_FAULT_AT=alloc:N   the Nth OpenCL object creation: clCreateBuffer, clCreateSubBuffer,
                               clCreateProgramWithSource/Binary, clCreateKernel
     CLATTN_FAULT_AT=build:N   the Nth clBuildProgram (from source or from a cached binary)
     CLATTN_FAULT_AT=host:N    the Nth host malloc/calloc/realloc/strdup of src/
     CLATTN_FAULT_AT=miscompile:N  the Nth build from source of an attention program gets a
                               wrong q/k/v storage type (clattn_fault_build_options): a
                               program that builds and runs but answers wrong, which its
                               known-answer check (check.h) must refuse
   counting from the first such operation of the process. Tests re-arm it in process with
   clattn_fault_arm() (exported only by such builds, declared here, not in clattn.h).
   Without the option every wrapper below is the plain call, and nothing is counted.
   (CLBlast's own allocations and builds, in the unfused path, are not counted.) */
#ifndef CLATTN_FAULT_H
#define CLATTN_FAULT_H

#include <stdlib.h>
#include <string.h>

#include "clattn.h"

typedef enum clattn_fault_kind {
    CLATTN_FAULT_ALLOC = 0, /* an OpenCL object */
    CLATTN_FAULT_BUILD,     /* clBuildProgram */
    CLATTN_FAULT_HOST,      /* host memory */
    CLATTN_FAULT_MISCOMPILE, /* a build from source that answers wrong */
    CLATTN_FAULT_KINDS
} clattn_fault_kind;

#ifdef CLATTN_FAULT_INJECTION
/* Count one operation of `kind`; 1 when it is the one armed to fail (logged at debug level). */
int clattn_fault_hit(clattn_fault_kind kind);

/* The options of a build from source: `options`, or when it is the miscompile fault's build
   (counting the builds whose options set QKV_TYPE: the attention programs), a copy in buf whose QKV_TYPE is another type of at most the same size (F32 -> F16,
   F16 -> BF16, BF16 -> F16), so that the kernels read q, k and v wrong but within bounds. */
const char *clattn_fault_build_options(const char *options, char *buf, size_t size);

/* Test-only API. Arm "alloc:N", "build:N", "host:N" or "miscompile:N" (N >= 1), or disarm
   with NULL or "";
   either way every count restarts at 0. Returns 0, or -1 for a malformed spec (disarmed). */
CLATTN_API int clattn_fault_arm(const char *spec);
/* Operations of kind "alloc", "build", "host" or "miscompile" since the last arm (or process
   start); -1 for an unknown kind. */
CLATTN_API long clattn_fault_count(const char *kind);
/* 1 if the armed fault has fired since the last arm. */
CLATTN_API int clattn_fault_fired(void);
#else
static inline int clattn_fault_hit(clattn_fault_kind kind)
{
    (void)kind;
    return 0;
}

static inline const char *clattn_fault_build_options(const char *options, char *buf,
                                                     size_t size)
{
    (void)buf;
    (void)size;
    return options;
}
#endif

/* ---- the wrappers that src/ calls instead of the plain functions --------------------------- */

static inline cl_mem clattn_create_buffer(cl_context context, cl_mem_flags flags, size_t size,
                                          void *host_ptr, cl_int *err)
{
    if (clattn_fault_hit(CLATTN_FAULT_ALLOC)) {
        *err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        return NULL;
    }
    return clCreateBuffer(context, flags, size, host_ptr, err);
}

static inline cl_mem clattn_create_sub_buffer(cl_mem buffer, cl_mem_flags flags,
                                              cl_buffer_create_type type, const void *info,
                                              cl_int *err)
{
    if (clattn_fault_hit(CLATTN_FAULT_ALLOC)) {
        *err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        return NULL;
    }
    return clCreateSubBuffer(buffer, flags, type, info, err);
}

static inline cl_program clattn_create_program_with_source(cl_context context, cl_uint count,
                                                           const char **strings,
                                                           const size_t *lengths, cl_int *err)
{
    if (clattn_fault_hit(CLATTN_FAULT_ALLOC)) {
        *err = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    return clCreateProgramWithSource(context, count, strings, lengths, err);
}

static inline cl_program clattn_create_program_with_binary(cl_context context, cl_uint n,
                                                           const cl_device_id *devices,
                                                           const size_t *lengths,
                                                           const unsigned char **binaries,
                                                           cl_int *binary_status, cl_int *err)
{
    if (clattn_fault_hit(CLATTN_FAULT_ALLOC)) {
        *err = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    return clCreateProgramWithBinary(context, n, devices, lengths, binaries, binary_status, err);
}

static inline cl_kernel clattn_create_kernel(cl_program program, const char *name, cl_int *err)
{
    if (clattn_fault_hit(CLATTN_FAULT_ALLOC)) {
        *err = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    return clCreateKernel(program, name, err);
}

/* An injected build failure leaves the program unbuilt, as a compiler error would. */
static inline cl_int clattn_build_program(cl_program program, cl_device_id device,
                                          const char *options)
{
    if (clattn_fault_hit(CLATTN_FAULT_BUILD))
        return CL_BUILD_PROGRAM_FAILURE;
    return clBuildProgram(program, 1, &device, options, NULL, NULL);
}

static inline void *clattn_malloc(size_t size)
{
    return clattn_fault_hit(CLATTN_FAULT_HOST) ? NULL : malloc(size);
}

static inline void *clattn_calloc(size_t count, size_t size)
{
    return clattn_fault_hit(CLATTN_FAULT_HOST) ? NULL : calloc(count, size);
}

static inline void *clattn_realloc(void *p, size_t size)
{
    return clattn_fault_hit(CLATTN_FAULT_HOST) ? NULL : realloc(p, size);
}

static inline char *clattn_strdup(const char *s)
{
    return clattn_fault_hit(CLATTN_FAULT_HOST) ? NULL : strdup(s);
}

#endif
