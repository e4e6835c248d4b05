#include "status.h"

#include <stdarg.h>
#include <stdio.h>

#include "log.h"

static _Thread_local char last_error[4096];

#define STATUS_NAMES(X)                    \
    X(CLATTN_SUCCESS)                      \
    X(CLATTN_ERROR_INVALID_ARGUMENT)       \
    X(CLATTN_ERROR_BUFFER_TOO_SMALL)       \
    X(CLATTN_ERROR_UNSUPPORTED)            \
    X(CLATTN_ERROR_DEVICE_NOT_FOUND)       \
    X(CLATTN_ERROR_BUILD_FAILED)           \
    X(CLATTN_ERROR_OUT_OF_RESOURCES)       \
    X(CLATTN_ERROR_OPENCL)

CLATTN_API const char *clattn_status_string(clattn_status s)
{
    switch (s) {
#define STATUS_CASE(name) case name: return #name;
        STATUS_NAMES(STATUS_CASE)
#undef STATUS_CASE
    }
    return "CLATTN_ERROR_UNKNOWN";
}

CLATTN_API const char *clattn_last_error(void)
{
    return last_error;
}

CLATTN_API const char *clattn_version_string(void)
{
#define CLATTN_STR2(x) #x
#define CLATTN_STR(x) CLATTN_STR2(x)
    return CLATTN_STR(CLATTN_VERSION_MAJOR) "." CLATTN_STR(CLATTN_VERSION_MINOR) "." CLATTN_STR(
        CLATTN_VERSION_PATCH);
}

clattn_status clattn_succeed(void)
{
    last_error[0] = '\0';
    return CLATTN_SUCCESS;
}

clattn_status clattn_fail(clattn_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    clattn_log(CLATTN_LOG_DEBUG, "%s: %s", clattn_status_string(s), last_error);
    return s;
}

#define CL_ERROR_NAMES(X)                                                                     \
    X(CL_DEVICE_NOT_FOUND) X(CL_DEVICE_NOT_AVAILABLE) X(CL_COMPILER_NOT_AVAILABLE)            \
    X(CL_MEM_OBJECT_ALLOCATION_FAILURE) X(CL_OUT_OF_RESOURCES) X(CL_OUT_OF_HOST_MEMORY)       \
    X(CL_PROFILING_INFO_NOT_AVAILABLE) X(CL_BUILD_PROGRAM_FAILURE) X(CL_INVALID_VALUE)        \
    X(CL_INVALID_DEVICE_TYPE) X(CL_INVALID_PLATFORM) X(CL_INVALID_DEVICE)                     \
    X(CL_INVALID_CONTEXT) X(CL_INVALID_QUEUE_PROPERTIES) X(CL_INVALID_COMMAND_QUEUE)          \
    X(CL_INVALID_MEM_OBJECT) X(CL_INVALID_BINARY) X(CL_INVALID_BUILD_OPTIONS)                 \
    X(CL_INVALID_PROGRAM) X(CL_INVALID_PROGRAM_EXECUTABLE) X(CL_INVALID_KERNEL_NAME)          \
    X(CL_INVALID_KERNEL) X(CL_INVALID_ARG_INDEX) X(CL_INVALID_ARG_VALUE)                      \
    X(CL_INVALID_ARG_SIZE) X(CL_INVALID_KERNEL_ARGS) X(CL_INVALID_WORK_DIMENSION)             \
    X(CL_INVALID_WORK_GROUP_SIZE) X(CL_INVALID_WORK_ITEM_SIZE) X(CL_INVALID_GLOBAL_OFFSET)    \
    X(CL_INVALID_EVENT_WAIT_LIST) X(CL_INVALID_EVENT) X(CL_INVALID_OPERATION)                 \
    X(CL_INVALID_BUFFER_SIZE) X(CL_INVALID_GLOBAL_WORK_SIZE)                                  \
    X(CL_MISALIGNED_SUB_BUFFER_OFFSET) X(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)

const char *clattn_cl_error_name(cl_int err)
{
    switch (err) {
#define CL_ERROR_CASE(name) case name: return #name;
        CL_ERROR_NAMES(CL_ERROR_CASE)
#undef CL_ERROR_CASE
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    }
    return "unknown OpenCL error";
}

clattn_status clattn_fail_cl(cl_int err, const char *what)
{
    const int allocation = err == CL_MEM_OBJECT_ALLOCATION_FAILURE ||
                           err == CL_OUT_OF_RESOURCES || err == CL_OUT_OF_HOST_MEMORY;
    return clattn_fail(allocation ? CLATTN_ERROR_OUT_OF_RESOURCES : CLATTN_ERROR_OPENCL,
                       "%s failed: %s (%d)", what, clattn_cl_error_name(err), (int)err);
}
