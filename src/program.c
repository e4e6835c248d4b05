/* Kernel programs: assemble the source, build it (or load it from the disk cache), keep it. */
#include "program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "diskcache.h"
#include "fault.h"
#include "log.h"
#include "status.h"

#define CACHE_KEY_FORMAT "clattn kernel cache 1"

typedef struct clattn_program_entry {
    char       *key;       /* program key (options and files), then the kernel name */
    size_t      program_key_length;
    cl_program  program;
    cl_kernel   kernel;
    size_t      work_group_limit;   /* CL_KERNEL_WORK_GROUP_SIZE */
    struct clattn_program_entry *next;
} program_entry;

/* A growable byte string. */
typedef struct text {
    char  *data;
    size_t length, capacity;
} text;

static int text_append(text *t, const char *data, size_t length)
{
    if (t->length + length + 1 > t->capacity) {
        size_t capacity = (t->length + length + 1) * 2;
        char *grown = clattn_realloc(t->data, capacity);
        if (!grown)
            return -1;
        t->data = grown;
        t->capacity = capacity;
    }
    memcpy(t->data + t->length, data, length);
    t->length += length;
    t->data[t->length] = '\0';
    return 0;
}

static const clattn_embedded_kernel *embedded(const char *name)
{
    for (const clattn_embedded_kernel *k = clattn_embedded_kernels; k->name; k++)
        if (strcmp(k->name, name) == 0)
            return k;
    return NULL;
}

/* Append file `name` from $CLATTN_KERNEL_DIR, else from the embedded copy. */
static clattn_status append_source(text *source, const char *name)
{
    const char *dir = getenv("CLATTN_KERNEL_DIR");
    if (dir && dir[0]) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "rb");
        if (!f)
            return clattn_fail(CLATTN_ERROR_BUILD_FAILED, "CLATTN_KERNEL_DIR: cannot open %s", path);
        char chunk[8192];
        size_t n;
        int err = 0;
        while (!err && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
            err = text_append(source, chunk, n);
        fclose(f);
        if (err)
            return clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for kernel source");
    } else {
        const clattn_embedded_kernel *k = embedded(name);
        if (!k)
            return clattn_fail(CLATTN_ERROR_BUILD_FAILED, "no embedded kernel file %s", name);
        if (text_append(source, k->text, k->length))
            return clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for kernel source");
    }
    return text_append(source, "\n", 1)
               ? clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for kernel source")
               : CLATTN_SUCCESS;
}

static clattn_status fail_build(clattn_context *ctx, cl_program program, cl_int err,
                                const char *options)
{
    char log[3000] = "";
    clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
    return clattn_fail(CLATTN_ERROR_BUILD_FAILED, "clBuildProgram (%s) failed: %s (%d); log: %s",
                       options, clattn_cl_error_name(err), (int)err, log);
}

static clattn_status build_from_source(clattn_context *ctx, const text *source,
                                       const char *options, cl_program *out)
{
    cl_int err = CL_SUCCESS;
    const char *src = source->data;
    cl_program program =
        clattn_create_program_with_source(ctx->cl_ctx, 1, &src, &source->length, &err);
    if (!program)
        return clattn_fail_cl(err, "clCreateProgramWithSource");
    err = clattn_build_program(program, ctx->device, options);
    if (err != CL_SUCCESS) {
        clattn_status s = err == CL_BUILD_PROGRAM_FAILURE || err == CL_INVALID_BUILD_OPTIONS
                              ? fail_build(ctx, program, err, options)
                              : clattn_fail_cl(err, "clBuildProgram");
        clReleaseProgram(program);
        return s;
    }
    *out = program;
    return CLATTN_SUCCESS;
}

static cl_program build_from_binary(clattn_context *ctx, const unsigned char *binary, size_t size,
                                    const char *options)
{
    cl_int err = CL_SUCCESS, binary_status = CL_SUCCESS;
    cl_program program = clattn_create_program_with_binary(ctx->cl_ctx, 1, &ctx->device, &size,
                                                           &binary, &binary_status, &err);
    if (!program)
        return NULL;
    if (binary_status != CL_SUCCESS ||
        clattn_build_program(program, ctx->device, options) != CL_SUCCESS) {
        clReleaseProgram(program);
        return NULL;
    }
    return program;
}

static void store_binary(cl_program program, const char *path, const text *key)
{
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS ||
        size == 0)
        return;
    unsigned char *binary = clattn_malloc(size);
    if (binary && clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binary, &binary, NULL) ==
                      CL_SUCCESS)
        clattn_diskcache_store(path, key->data, key->length, binary, size);
    else
        clattn_log(CLATTN_LOG_DEBUG, "kernel cache: cannot store %s: %s", path,
                   binary ? "the runtime gave no binary" : "no host memory for the binary");
    free(binary);
}

/* The disk cache key: everything a binary depends on. */
static int make_key(clattn_context *ctx, const text *source, const char *options, text *key)
{
    char head[2048];
    int n = snprintf(head, sizeof head, "%s\n%s\n%s\n%s\n", CACHE_KEY_FORMAT,
                     clattn_version_string(), ctx->device_identity, options);
    return n < 0 || text_append(key, head, strlen(head)) ||
                   text_append(key, source->data, source->length)
               ? -1
               : 0;
}

/* Build (or load from disk) the program of source + options. */
static clattn_status get_program(clattn_context *ctx, const text *source, const char *options,
                                 cl_program *out)
{
    char dir[4096], path[4300];
    text key = {0};
    const int cache_on = clattn_diskcache_dir(dir, sizeof dir);
    if (!cache_on || make_key(ctx, source, options, &key)) {
        free(key.data);
        clattn_log(CLATTN_LOG_DEBUG, "kernel cache: %s; building (%s)",
                   cache_on ? "no host memory for the key, not used" : "off", options);
        return build_from_source(ctx, source, options, out);
    }
    clattn_diskcache_path(dir, key.data, key.length, path, sizeof path);
    unsigned char *binary = NULL;
    size_t size = 0;
    if (clattn_diskcache_load(path, key.data, key.length, &binary, &size)) {
        *out = build_from_binary(ctx, binary, size, options);
        free(binary);
        if (*out) {
            clattn_log(CLATTN_LOG_DEBUG, "kernel cache: hit %s", path);
            free(key.data);
            return CLATTN_SUCCESS;
        }
        clattn_log(CLATTN_LOG_DEBUG, "kernel cache: %s: the driver rejected the binary; rebuilding", path);
    }
    clattn_status s = build_from_source(ctx, source, options, out);
    if (s == CLATTN_SUCCESS) {
        clattn_log(CLATTN_LOG_DEBUG, "kernel cache: built (%s)", options);
        store_binary(*out, path, &key);
    }
    free(key.data);
    return s;
}

/* The program of another kernel of the same files and options, retained; or NULL. */
static cl_program program_in_memory(clattn_context *ctx, const char *entry_key,
                                    size_t program_key_length)
{
    for (program_entry *e = ctx->programs; e; e = e->next) {
        if (e->program_key_length == program_key_length &&
            memcmp(e->key, entry_key, program_key_length) == 0) {
            clRetainProgram(e->program);
            return e->program;
        }
    }
    return NULL;
}

static clattn_status new_entry(clattn_context *ctx, const char *const *files, const char *options,
                               const char *kernel_name, const char *entry_key,
                               size_t program_key_length, program_entry **out)
{
    clattn_status s = CLATTN_SUCCESS;
    cl_program program = program_in_memory(ctx, entry_key, program_key_length);
    if (!program) {
        text source = {0};
        for (size_t i = 0; files[i] && s == CLATTN_SUCCESS; i++)
            s = append_source(&source, files[i]);
        if (s == CLATTN_SUCCESS)
            s = get_program(ctx, &source, options, &program);
        free(source.data);
        if (s != CLATTN_SUCCESS)
            return s;
    }
    cl_int err = CL_SUCCESS;
    cl_kernel kernel = clattn_create_kernel(program, kernel_name, &err);
    size_t limit = 0;
    if (kernel)
        err = clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                       sizeof limit, &limit, NULL);
    program_entry *e = clattn_calloc(1, sizeof *e);
    char *key = clattn_strdup(entry_key);
    if (!kernel || err != CL_SUCCESS || !e || !key) {
        s = !kernel               ? clattn_fail_cl(err, "clCreateKernel")
            : err != CL_SUCCESS   ? clattn_fail_cl(err, "clGetKernelWorkGroupInfo")
                                  : clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES,
                                                "no host memory for a program");
        if (kernel)
            clReleaseKernel(kernel);
        clReleaseProgram(program);
        free(e);
        free(key);
        return s;
    }
    e->key = key;
    e->program_key_length = program_key_length;
    e->program = program;
    e->kernel = kernel;
    e->work_group_limit = limit;
    *out = e;
    return CLATTN_SUCCESS;
}

clattn_status clattn_program_kernel(clattn_context *ctx, const char *const *files,
                                    const char *options, const char *kernel_name,
                                    cl_kernel *kernel, size_t *work_group_limit)
{
    char entry_key[1024];
    int n = snprintf(entry_key, sizeof entry_key, "%s|", options);
    for (size_t i = 0; files[i] && n > 0 && (size_t)n < sizeof entry_key; i++)
        n += snprintf(entry_key + n, sizeof entry_key - (size_t)n, "%s,", files[i]);
    const size_t program_key_length = n > 0 && (size_t)n < sizeof entry_key ? (size_t)n : 0;
    if (program_key_length)
        snprintf(entry_key + n, sizeof entry_key - (size_t)n, "|%s", kernel_name);
    else
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "kernel options too long: %s", options);
    for (program_entry *e = ctx->programs; e; e = e->next) {
        if (strcmp(e->key, entry_key) == 0) {
            *kernel = e->kernel;
            *work_group_limit = e->work_group_limit;
            return CLATTN_SUCCESS;
        }
    }
    program_entry *e = NULL;
    clattn_status s = new_entry(ctx, files, options, kernel_name, entry_key, program_key_length, &e);
    if (s != CLATTN_SUCCESS)
        return s;
    e->next = ctx->programs;
    ctx->programs = e;
    *kernel = e->kernel;
    *work_group_limit = e->work_group_limit;
    return CLATTN_SUCCESS;
}

void clattn_programs_release(clattn_context *ctx)
{
    program_entry *e = ctx->programs;
    while (e) {
        program_entry *next = e->next;
        clReleaseKernel(e->kernel);
        clReleaseProgram(e->program);
        free(e->key);
        free(e);
        e = next;
    }
    ctx->programs = NULL;
}
