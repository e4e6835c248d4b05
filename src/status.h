/* Status strings and this thread's last-error message. */
#ifndef CLATTN_STATUS_H
#define CLATTN_STATUS_H

#include "clattn.h"

#if defined(__GNUC__)
#define CLATTN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLATTN_PRINTF(f, a)
#endif

/* Set this thread's message (printf-style), log it at debug level, and return s. */
clattn_status clattn_fail(clattn_status s, const char *fmt, ...) CLATTN_PRINTF(2, 3);

/* Map an OpenCL error of `what` to OUT_OF_RESOURCES (allocation failures) or OPENCL, with the
   code and its name in the message. */
clattn_status clattn_fail_cl(cl_int err, const char *what);

/* The CL_... name of an OpenCL error code, or "unknown OpenCL error". */
const char *clattn_cl_error_name(cl_int err);

/* Clear this thread's message; every public call that succeeds ends with this. */
clattn_status clattn_succeed(void);

#endif
