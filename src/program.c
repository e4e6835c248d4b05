/* Kernel programs: assemble the source, build it (or load it from the disk cache), keep it. */
#include "program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "context.h"
#include "diskcache.h"
#include "embedded.h"
#include "fault.h"
#include "log.h"
#include "status.h"

#define CACHE_KEY_FORMAT "clattn kernel cache 1"

/* Where a program stands with its known-answer check (check.h). */
typedef enum program_verdict {
    VERDICT_CHECKING, /* built, its check running: only the check's own launches use it */
    VERDICT_PASSED,   /* passed (or loaded with that verdict, or has no check) */
    VERDICT_REFUSED   /* failed: no call uses it */
} program_verdict;

typedef struct clattn_program_entry {
    char       *key;       /* program key (options and files), then the kernel name */
    size_t      program_key_length;
    cl_program  program;   /* NULL when refused */
    cl_kernel   kernel;    /* NULL when refused */
    size_t      work_group_limit;   /* CL_KERNEL_WORK_GROUP_SIZE */
    program_verdict verdict;
    char       *refusal;   /* refused: what the check found, on which device */
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
        const clattn_embedded_file *k = clattn_embedded_find(clattn_embedded_kernels, name);
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

/* The compiler's messages of a build that succeeded (warnings), at debug level. */
static void log_build_messages(clattn_context *ctx, cl_program program, const char *options)
{
    char log[4000] = "";
    clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
    if (strspn(log, " \t\r\n") < strlen(log))
        clattn_log(CLATTN_LOG_DEBUG, "build (%s) log: %s", options, log);
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
    char planted[512];
    err = clattn_build_program(program, ctx->device,
                               clattn_fault_build_options(options, planted, sizeof planted));
    if (err != CL_SUCCESS) {
        clattn_status s = err == CL_BUILD_PROGRAM_FAILURE || err == CL_INVALID_BUILD_OPTIONS
                              ? fail_build(ctx, program, err, options)
                              : clattn_fail_cl(err, "clBuildProgram");
        clReleaseProgram(program);
        return s;
    }
    log_build_messages(ctx, program, options);
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

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
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

/* A program as get_program found it, and where its verdict goes in the disk cache. */
typedef struct found_program {
    cl_program program;   /* NULL when refused */
    int        built;     /* built from source by this call: not checked yet */
    double     build_ms;
    char      *refusal;   /* a refusal read from the disk cache (malloc'ed) */
    text       key;       /* the disk cache key; empty when the cache is off */
    char       path[4300];
} found_program;

/* The last file of a program is the one that holds its kernels. */
static const char *main_file(const char *const *files)
{
    const char *last = files[0];
    for (size_t i = 0; files[i]; i++)
        last = files[i];
    return last;
}

/* The disk cache entry of a program: named after its main file without ".cl". */
static void entry_path(const char *dir, const char *const *files, const text *key, char *buf,
                       size_t size)
{
    const char *file = main_file(files);
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(file, "."), file);
    clattn_diskcache_path(dir, name, key->data, key->length, buf, size);
}

/* Build the program of source + options, or load it (or its refusal) from the disk cache. */
static clattn_status get_program(clattn_context *ctx, const char *const *files,
                                 const text *source, const char *options, found_program *found)
{
    char dir[4096];
    const int cache_on = clattn_diskcache_dir(dir, sizeof dir);
    if (cache_on && make_key(ctx, source, options, &found->key) == 0) {
        entry_path(dir, files, &found->key, found->path, sizeof found->path);
        unsigned char *payload = NULL;
        size_t size = 0;
        int refused = 0;
        if (clattn_diskcache_load(found->path, found->key.data, found->key.length, &payload,
                                  &size, &refused)) {
            if (refused) {
                found->refusal = clattn_malloc(size + 1);
                if (found->refusal) {
                    memcpy(found->refusal, payload, size);
                    found->refusal[size] = '\0';
                }
            } else {
                found->program = build_from_binary(ctx, payload, size, options);
            }
            free(payload);
            if (found->program || found->refusal) {
                clattn_log(CLATTN_LOG_DEBUG, "kernel cache: hit %s%s", found->path,
                           refused ? " (a refused program)" : "");
                return CLATTN_SUCCESS;
            }
            clattn_log(CLATTN_LOG_DEBUG, "kernel cache: %s: %s; rebuilding", found->path,
                       refused ? "no host memory for the refusal"
                               : "the driver rejected the binary");
        }
    } else {
        free(found->key.data);
        found->key = (text){0};
        clattn_log(CLATTN_LOG_DEBUG, "kernel cache: %s; building (%s)",
                   cache_on ? "no host memory for the key, not used" : "off", options);
    }
    const double start = now_ms();
    clattn_status s = build_from_source(ctx, source, options, &found->program);
    found->build_ms = now_ms() - start;
    found->built = s == CLATTN_SUCCESS;
    if (found->built)
        clattn_log(CLATTN_LOG_DEBUG, "kernel cache: built (%s) in %.0f ms", options,
                   found->build_ms);
    return s;
}

/* Keep the verdict in the disk cache: the binary of a program that passed, or the refusal. */
static void store_verdict(const found_program *found, cl_program program, const char *refusal)
{
    if (!found->key.length)
        return;
    if (refusal) {
        clattn_diskcache_store(found->path, found->key.data, found->key.length, 1,
                               (const unsigned char *)refusal, strlen(refusal));
        return;
    }
    size_t size = 0;
    if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) !=
            CL_SUCCESS ||
        size == 0)
        return;
    unsigned char *binary = clattn_malloc(size);
    if (binary && clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binary, &binary, NULL) ==
                      CL_SUCCESS)
        clattn_diskcache_store(found->path, found->key.data, found->key.length, 0, binary, size);
    else
        clattn_log(CLATTN_LOG_DEBUG, "kernel cache: cannot store %s: %s", found->path,
                   binary ? "the runtime gave no binary" : "no host memory for the binary");
    free(binary);
}

static int same_program(const program_entry *e, const char *entry_key, size_t program_key_length)
{
    return e->program_key_length == program_key_length &&
           memcmp(e->key, entry_key, program_key_length) == 0;
}

/* An entry of another kernel of the same files and options, or NULL. */
static program_entry *program_in_memory(clattn_context *ctx, const char *entry_key,
                                        size_t program_key_length)
{
    for (program_entry *e = ctx->programs; e; e = e->next)
        if (same_program(e, entry_key, program_key_length))
            return e;
    return NULL;
}

static void release_objects(program_entry *e)
{
    if (e->kernel)
        clReleaseKernel(e->kernel);
    if (e->program)
        clReleaseProgram(e->program);
    e->kernel = NULL;
    e->program = NULL;
}

static void free_entry(program_entry *e)
{
    release_objects(e);
    free(e->refusal);
    free(e->key);
    free(e);
}

/* Remove every entry of the program of e (a check that ended in an error: no verdict). */
static void drop_program(clattn_context *ctx, const program_entry *e)
{
    const size_t length = e->program_key_length;
    char *key = clattn_strdup(e->key);
    program_entry **link = &ctx->programs;
    while (*link) {
        program_entry *x = *link;
        if (key ? same_program(x, key, length) : x == e) {
            *link = x->next;
            free_entry(x);
        } else {
            link = &x->next;
        }
    }
    free(key);
}

/* Give every entry of the program of e the verdict (refusal: NULL when it passed). */
static void set_verdict(clattn_context *ctx, const program_entry *e, const char *refusal)
{
    for (program_entry *x = ctx->programs; x; x = x->next) {
        if (!same_program(x, e->key, e->program_key_length))
            continue;
        x->verdict = refusal ? VERDICT_REFUSED : VERDICT_PASSED;
        if (refusal) {
            release_objects(x);
            free(x->refusal);
            x->refusal = clattn_strdup(refusal);
        }
    }
}

/* Run the known-answer check of the program of e, just built, and keep its verdict. */
static clattn_status check_new_program(clattn_context *ctx, program_entry *e,
                                       const char *const *files, const char *options,
                                       const clattn_program_check *check,
                                       const found_program *found)
{
    int passed = 1;
    char why[600] = "";
    const double start = now_ms();
    clattn_status s = check ? clattn_program_check_run(ctx, check, &passed, why, sizeof why)
                            : CLATTN_SUCCESS;
    if (s != CLATTN_SUCCESS) {
        drop_program(ctx, e);
        return s;
    }
    if (passed) {
        if (check)
            clattn_log(CLATTN_LOG_DEBUG, "known-answer check of %s (%s): passed in %.1f ms, "
                       "after a build of %.0f ms", main_file(files), options, now_ms() - start,
                       found->build_ms);
        set_verdict(ctx, e, NULL);
        store_verdict(found, e->program, NULL);
        return CLATTN_SUCCESS;
    }
    char refusal[1600];
    const clattn_tune_device *d = &ctx->tune_device;
    snprintf(refusal, sizeof refusal, "the program of %s (%s) gave a wrong answer in clattn's "
             "known-answer check on %s (platform %s, driver %s): %s; refused",
             main_file(files), options, d->name, d->platform, d->driver, why);
    clattn_log(CLATTN_LOG_WARN, "%s", refusal);
    set_verdict(ctx, e, refusal);
    store_verdict(found, NULL, refusal);
    return CLATTN_SUCCESS;
}

/* The new entry of kernel_name, in ctx's list: its program found in memory, loaded from the
   disk cache, or built and then checked. */
static clattn_status new_entry(clattn_context *ctx, const char *const *files, const char *options,
                               const char *kernel_name, const char *entry_key,
                               size_t program_key_length, const clattn_program_check *check,
                               program_entry **out)
{
    clattn_status s = CLATTN_SUCCESS;
    found_program found = {0};
    program_verdict verdict = VERDICT_PASSED;
    const program_entry *same = program_in_memory(ctx, entry_key, program_key_length);
    if (same) {
        verdict = same->verdict;
        found.program = same->program;
        if (found.program)
            clRetainProgram(found.program);
        if (same->refusal && !(found.refusal = clattn_strdup(same->refusal)))
            s = clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for a program");
    } else {
        text source = {0};
        for (size_t i = 0; files[i] && s == CLATTN_SUCCESS; i++)
            s = append_source(&source, files[i]);
        if (s == CLATTN_SUCCESS)
            s = get_program(ctx, files, &source, options, &found);
        free(source.data);
        verdict = found.refusal ? VERDICT_REFUSED
                  : found.built ? VERDICT_CHECKING
                                : VERDICT_PASSED;
    }
    cl_int err = CL_SUCCESS;
    cl_kernel kernel = NULL;
    size_t limit = 0;
    if (s == CLATTN_SUCCESS && found.program) {
        kernel = clattn_create_kernel(found.program, kernel_name, &err);
        if (kernel)
            err = clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                           sizeof limit, &limit, NULL);
        if (!kernel || err != CL_SUCCESS)
            s = clattn_fail_cl(err, kernel ? "clGetKernelWorkGroupInfo" : "clCreateKernel");
    }
    program_entry *e = s == CLATTN_SUCCESS ? clattn_calloc(1, sizeof *e) : NULL;
    char *key = e ? clattn_strdup(entry_key) : NULL;
    if (s == CLATTN_SUCCESS && !key)
        s = clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for a program");
    if (s != CLATTN_SUCCESS) {
        if (kernel)
            clReleaseKernel(kernel);
        if (found.program)
            clReleaseProgram(found.program);
        free(found.refusal);
        free(found.key.data);
        free(e);
        return s;
    }
    *e = (program_entry){key, program_key_length, found.program, kernel, limit, verdict,
                         found.refusal, ctx->programs};
    ctx->programs = e;
    if (found.built)
        s = check_new_program(ctx, e, files, options, check, &found);
    free(found.key.data);
    *out = s == CLATTN_SUCCESS ? e : NULL;
    return s;
}

/* "options|file,file,...,": the key of a program; then "|kernel": of its kernel. Returns the
   program key's length, 0 when the key does not fit entry_key. */
static size_t make_entry_key(const char *const *files, const char *options,
                             const char *kernel_name, char *entry_key, size_t size)
{
    int n = snprintf(entry_key, size, "%s|", options);
    for (size_t i = 0; files[i] && n > 0 && (size_t)n < size; i++)
        n += snprintf(entry_key + n, size - (size_t)n, "%s,", files[i]);
    if (n <= 0 || (size_t)n >= size)
        return 0;
    const int m = snprintf(entry_key + n, size - (size_t)n, "|%s", kernel_name);
    return m > 0 && (size_t)m < size - (size_t)n ? (size_t)n : 0;
}

clattn_status clattn_program_kernel(clattn_context *ctx, const char *const *files,
                                    const char *options, const char *kernel_name,
                                    const clattn_program_check *check, cl_kernel *kernel,
                                    size_t *work_group_limit)
{
    char entry_key[1024];
    const size_t program_key_length =
        make_entry_key(files, options, kernel_name, entry_key, sizeof entry_key);
    if (!program_key_length)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "kernel options too long: %s", options);
    program_entry *e = ctx->programs;
    while (e && strcmp(e->key, entry_key) != 0)
        e = e->next;
    clattn_status s = CLATTN_SUCCESS;
    if (!e)
        s = new_entry(ctx, files, options, kernel_name, entry_key, program_key_length, check, &e);
    if (s != CLATTN_SUCCESS)
        return s;
    if (e->verdict == VERDICT_REFUSED)
        return clattn_fail(CLATTN_ERROR_UNSUPPORTED, "%s: %s", kernel_name, e->refusal);
    *kernel = e->kernel;
    *work_group_limit = e->work_group_limit;
    return CLATTN_SUCCESS;
}

int clattn_program_refused(clattn_context *ctx, const char *const *files, const char *options,
                           char *why, size_t why_size)
{
    char entry_key[1024];
    const size_t program_key_length = make_entry_key(files, options, "", entry_key,
                                                     sizeof entry_key);
    const program_entry *e =
        program_key_length ? program_in_memory(ctx, entry_key, program_key_length) : NULL;
    if (e) {
        if (e->verdict == VERDICT_REFUSED)
            snprintf(why, why_size, "%s", e->refusal);
        return e->verdict == VERDICT_REFUSED;
    }
    char dir[4096], path[4300];
    text source = {0}, key = {0};
    int refused = 0;
    if (clattn_diskcache_dir(dir, sizeof dir)) {
        clattn_status s = CLATTN_SUCCESS;
        for (size_t i = 0; files[i] && s == CLATTN_SUCCESS; i++)
            s = append_source(&source, files[i]);
        unsigned char *payload = NULL;
        size_t size = 0;
        if (s == CLATTN_SUCCESS && make_key(ctx, &source, options, &key) == 0) {
            entry_path(dir, files, &key, path, sizeof path);
            if (clattn_diskcache_load(path, key.data, key.length, &payload, &size, &refused) &&
                refused)
                snprintf(why, why_size, "%.*s", (int)size, (const char *)payload);
        }
        free(payload);
    }
    free(source.data);
    free(key.data);
    return refused;
}

void clattn_programs_release(clattn_context *ctx)
{
    program_entry *e = ctx->programs;
    while (e) {
        program_entry *next = e->next;
        free_entry(e);
        e = next;
    }
    ctx->programs = NULL;
}
