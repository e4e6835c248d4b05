/* Device selection, context and queue ownership. */
#include "context.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fault.h"
#include "log.h"
#include "program.h"
#include "scratch.h"
#include "status.h"
#include "tools.h"

typedef clattn_listed_device device_entry;

typedef struct device_list {
    device_entry *items;
    size_t count;
} device_list;

static void platform_text(cl_platform_id p, cl_platform_info what, char *buf, size_t size)
{
    if (clGetPlatformInfo(p, what, size, buf, NULL) != CL_SUCCESS)
        snprintf(buf, size, "?");
}

static void device_text(cl_device_id d, cl_device_info what, char *buf, size_t size)
{
    if (clGetDeviceInfo(d, what, size, buf, NULL) != CL_SUCCESS)
        snprintf(buf, size, "?");
}

static clattn_status append_platform_devices(device_list *list, cl_uint pi, cl_platform_id p)
{
    cl_uint n = 0;
    if (clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 0, NULL, &n) != CL_SUCCESS || n == 0)
        return CLATTN_SUCCESS; /* a platform without devices is skipped, not fatal */
    cl_device_id *ids = clattn_calloc(n, sizeof *ids);
    device_entry *grown = clattn_realloc(list->items, (list->count + n) * sizeof *grown);
    if (!ids || !grown) {
        free(ids);
        if (grown)
            list->items = grown;
        return clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for the device list");
    }
    list->items = grown;
    clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, n, ids, NULL);
    char vendor[256], name[256], device[256];
    platform_text(p, CL_PLATFORM_VENDOR, vendor, sizeof vendor);
    platform_text(p, CL_PLATFORM_NAME, name, sizeof name);
    for (cl_uint di = 0; di < n; di++) {
        device_entry *e = &list->items[list->count++];
        e->platform_index = pi;
        e->device_index = di;
        e->platform = p;
        e->device = ids[di];
        e->type = 0;
        clGetDeviceInfo(ids[di], CL_DEVICE_TYPE, sizeof e->type, &e->type, NULL);
        device_text(ids[di], CL_DEVICE_NAME, device, sizeof device);
        snprintf(e->description, sizeof e->description, "%s / %s / %s", vendor, name, device);
    }
    free(ids);
    return CLATTN_SUCCESS;
}

static clattn_status list_devices(device_list *list)
{
    cl_uint n = 0;
    list->items = NULL;
    list->count = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &n);
    if (err != CL_SUCCESS || n == 0)
        return clattn_fail(CLATTN_ERROR_DEVICE_NOT_FOUND, "no OpenCL platform is installed (%s)",
                           clattn_cl_error_name(err));
    cl_platform_id *platforms = clattn_calloc(n, sizeof *platforms);
    if (!platforms)
        return clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for the platform list");
    clGetPlatformIDs(n, platforms, NULL);
    clattn_status s = CLATTN_SUCCESS;
    for (cl_uint i = 0; i < n && s == CLATTN_SUCCESS; i++)
        s = append_platform_devices(list, i, platforms[i]);
    free(platforms);
    return s;
}

static int contains_nocase(const char *haystack, const char *needle)
{
    size_t n = strlen(needle);
    for (; *haystack; haystack++) {
        size_t i = 0;
        while (i < n && haystack[i] &&
               tolower((unsigned char)haystack[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

static const device_entry *first_of_type(const device_list *list, cl_device_type type)
{
    for (size_t i = 0; i < list->count; i++)
        if (list->items[i].type & type)
            return &list->items[i];
    return NULL;
}

/* The device `selector` names (see clattn_context_create), or NULL. */
static const device_entry *select_device(const device_list *list, const char *selector)
{
    if (selector[0] == '\0') {
        const device_entry *e = first_of_type(list, CL_DEVICE_TYPE_GPU);
        if (!e)
            e = first_of_type(list, CL_DEVICE_TYPE_ACCELERATOR);
        if (!e)
            e = first_of_type(list, CL_DEVICE_TYPE_CPU);
        return e;
    }
    unsigned p, d;
    char tail;
    if (sscanf(selector, "%u:%u%c", &p, &d, &tail) == 2) {
        for (size_t i = 0; i < list->count; i++)
            if (list->items[i].platform_index == p && list->items[i].device_index == d)
                return &list->items[i];
        return NULL;
    }
    if (strcasecmp(selector, "gpu") == 0)
        return first_of_type(list, CL_DEVICE_TYPE_GPU);
    if (strcasecmp(selector, "cpu") == 0)
        return first_of_type(list, CL_DEVICE_TYPE_CPU);
    for (size_t i = 0; i < list->count; i++)
        if (contains_nocase(list->items[i].description, selector))
            return &list->items[i];
    return NULL;
}

static clattn_status fail_not_found(const device_list *list, const char *selector)
{
    char text[3072];
    size_t used = 0;
    for (size_t i = 0; i < list->count && used < sizeof text; i++) {
        int n = snprintf(text + used, sizeof text - used, "%s %u:%u %s", i ? ";" : "",
                         list->items[i].platform_index, list->items[i].device_index,
                         list->items[i].description);
        used += n > 0 ? (size_t)n : 0;
    }
    return clattn_fail(CLATTN_ERROR_DEVICE_NOT_FOUND, "no OpenCL device matches \"%s\"; devices:%s",
                       selector, list->count ? text : " none");
}

/* The identity strings of the device: for the disk cache key and the tuning database. */
static void read_identity(clattn_context *ctx)
{
    char pname[256], pversion[256], dname[256], dversion[256], driver[256];
    platform_text(ctx->platform, CL_PLATFORM_NAME, pname, sizeof pname);
    platform_text(ctx->platform, CL_PLATFORM_VERSION, pversion, sizeof pversion);
    device_text(ctx->device, CL_DEVICE_NAME, dname, sizeof dname);
    device_text(ctx->device, CL_DEVICE_VERSION, dversion, sizeof dversion);
    device_text(ctx->device, CL_DRIVER_VERSION, driver, sizeof driver);
    snprintf(ctx->device_identity, sizeof ctx->device_identity, "%s|%s|%s|%s|%s", pname,
             pversion, dname, dversion, driver);
    ctx->tune_device = clattn_tune_device_of(pname, dname, driver);
}

static int init_recursive_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    if (pthread_mutexattr_init(&attr) != 0)
        return -1;
    int err = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    if (err == 0)
        err = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    return err;
}

/* Make a context around a cl_context and queue the caller has already retained for it. */
static clattn_status wrap(cl_platform_id platform, cl_device_id device, cl_context cl_ctx,
                          cl_command_queue queue, clattn_context **out)
{
    clattn_context *ctx = clattn_calloc(1, sizeof *ctx);
    clattn_status s = ctx ? CLATTN_SUCCESS
                          : clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "no host memory for a context");
    if (s == CLATTN_SUCCESS) {
        ctx->platform = platform;
        ctx->device = device;
        ctx->cl_ctx = cl_ctx;
        ctx->queue = queue;
        s = clattn_probe_device(device, &ctx->probe);
    }
    if (s == CLATTN_SUCCESS && init_recursive_mutex(&ctx->lock) != 0)
        s = clattn_fail(CLATTN_ERROR_OUT_OF_RESOURCES, "pthread_mutex_init failed");
    if (s != CLATTN_SUCCESS) {
        free(ctx);
        clReleaseCommandQueue(queue);
        clReleaseContext(cl_ctx);
        return s;
    }
    read_identity(ctx);
    clattn_tunedb_load(&ctx->tunedb);
    clattn_log(CLATTN_LOG_INFO, "context on %s", ctx->device_identity);
    *out = ctx;
    return clattn_succeed();
}

static clattn_status create_on(const device_entry *e, clattn_context **out)
{
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)e->platform, 0};
    cl_int err = CL_SUCCESS;
    cl_context cl_ctx = clCreateContext(props, 1, &e->device, NULL, NULL, &err);
    if (!cl_ctx)
        return clattn_fail_cl(err, "clCreateContext");
    cl_command_queue queue = clCreateCommandQueue(cl_ctx, e->device, CL_QUEUE_PROFILING_ENABLE, &err);
    if (!queue) {
        clReleaseContext(cl_ctx);
        return clattn_fail_cl(err, "clCreateCommandQueue");
    }
    return wrap(e->platform, e->device, cl_ctx, queue, out);
}

CLATTN_API clattn_status clattn_context_create(const char *device, clattn_context **ctx)
{
    if (!ctx)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "ctx is NULL");
    *ctx = NULL;
    const char *selector = device && device[0] ? device : getenv("CLATTN_DEVICE");
    if (!selector)
        selector = "";
    device_list list;
    clattn_status s = list_devices(&list);
    if (s == CLATTN_SUCCESS) {
        const device_entry *e = select_device(&list, selector);
        s = e ? create_on(e, ctx) : fail_not_found(&list, selector);
    }
    free(list.items);
    return s;
}

clattn_status clattn_list_devices(clattn_listed_device **items, size_t *count,
                                  size_t *default_index)
{
    const char *selector = getenv("CLATTN_DEVICE");
    device_list list;
    clattn_status s = list_devices(&list);
    if (s != CLATTN_SUCCESS) {
        free(list.items);
        return s;
    }
    const device_entry *e = select_device(&list, selector ? selector : "");
    *items = list.items;
    *count = list.count;
    *default_index = e ? (size_t)(e - list.items) : list.count;
    return clattn_succeed();
}

CLATTN_API clattn_status clattn_context_create_from_queue(cl_command_queue queue,
                                                          clattn_context **ctx)
{
    if (!ctx)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "ctx is NULL");
    *ctx = NULL;
    if (!queue)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "queue is NULL");
    cl_context cl_ctx;
    cl_device_id device;
    cl_command_queue_properties props;
    cl_platform_id platform;
    if (clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof cl_ctx, &cl_ctx, NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof device, &device, NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL) != CL_SUCCESS ||
        clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL) != CL_SUCCESS)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT, "queue is not a valid cl_command_queue");
    if (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)
        return clattn_fail(CLATTN_ERROR_INVALID_ARGUMENT,
                           "queue is out-of-order; clattn needs an in-order queue");
    clRetainContext(cl_ctx);
    clRetainCommandQueue(queue);
    return wrap(platform, device, cl_ctx, queue, ctx);
}

CLATTN_API void clattn_context_release(clattn_context *ctx)
{
    if (!ctx)
        return;
    clattn_programs_release(ctx);
    clattn_scratch_release(ctx);
    clattn_tunedb_free(&ctx->tunedb);
    pthread_mutex_destroy(&ctx->lock);
    if (ctx->check_queue)
        clReleaseCommandQueue(ctx->check_queue);
    clReleaseCommandQueue(ctx->queue);
    clReleaseContext(ctx->cl_ctx);
    free(ctx);
}

CLATTN_API cl_context clattn_context_cl_context(const clattn_context *ctx)
{
    return ctx ? ctx->cl_ctx : NULL;
}

CLATTN_API cl_command_queue clattn_context_queue(const clattn_context *ctx)
{
    return ctx ? ctx->queue : NULL;
}

CLATTN_API const char *clattn_context_device_name(const clattn_context *ctx)
{
    return ctx ? ctx->probe.device_name : "";
}

void clattn_context_force_tiling(clattn_context *ctx, const clattn_tiling *tiling)
{
    ctx->tiling_forced = tiling != NULL;
    if (tiling)
        ctx->forced_tiling = *tiling;
}

void clattn_context_device_key(const clattn_context *ctx, char *buf, size_t size)
{
    const clattn_tune_device *d = &ctx->tune_device;
    snprintf(buf, size, "%s|%s|%s", d->platform, d->name, d->driver);
}
