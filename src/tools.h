/* What clattn's own tools (clattn-bench --tune) use beyond the public API, so that they ask the
   planner instead of re-deriving its rules: the candidate tilings of a call, a context that
   runs a given tiling, the plan of a call as a struct, the tuning-file entry of a call, and the
   devices as the context's selector sees them.
   Not installed and not exported from the shared library: the tools link the library's
   objects (the clattn_internal static library of src/meson.build). */
#ifndef CLATTN_TOOLS_H
#define CLATTN_TOOLS_H

#include "clattn.h"
#include "plan.h"
#include "tunedb.h"

/* What clattn_attention_forward would run for these arguments (clattn_attention_plan as a
   struct); the same status and message as the forward for a call it would refuse. */
clattn_status clattn_forward_plan(clattn_context *ctx, const clattn_attention_desc *desc,
                                  const clattn_tensor *q, const clattn_tensor *k,
                                  const clattn_tensor *v, clattn_plan *plan);

/* The fused forward's tilings that fit ctx's device for such a call (clattn_plan_candidates):
   at most max into out, the count into *count. */
clattn_status clattn_forward_candidates(clattn_context *ctx, const clattn_attention_desc *desc,
                                        const clattn_tensor *q, const clattn_tensor *k,
                                        const clattn_tensor *v, clattn_tiling *out, size_t max,
                                        size_t *count);

/* The tuning-file entry that gives calls like this one `tiling` on ctx's device (its exact
   device key and the call's problem class). */
clattn_status clattn_forward_tuning_entry(clattn_context *ctx, const clattn_attention_desc *desc,
                                          const clattn_tensor *q, const clattn_tensor *k,
                                          const clattn_tensor *v, const clattn_tiling *tiling,
                                          clattn_tune_entry *entry);

/* From now on every fused and split-KV forward call of ctx runs `tiling` (a copy is kept;
   NULL: back to the tuning database and the heuristic); a call it does not fit returns
   CLATTN_ERROR_UNSUPPORTED. Not while other threads use ctx. */
void clattn_context_force_tiling(clattn_context *ctx, const clattn_tiling *tiling);

/* "platform name|device name|driver version" of ctx's device, as tuning entries name it. */
void clattn_context_device_key(const clattn_context *ctx, char *buf, size_t size);

/* One OpenCL device as clattn_context_create's selector sees it: "P:D" selects it. */
typedef struct clattn_listed_device {
    cl_uint        platform_index, device_index;
    cl_platform_id platform;
    cl_device_id   device;
    cl_device_type type;
    char           description[800]; /* "platform vendor / platform name / device name" */
} clattn_listed_device;

/* Every device of every platform, in selector order, into *items (free() it) and *count;
   *default_index is the one that a NULL selector picks ($CLATTN_DEVICE included), or *count
   when that picks none. */
clattn_status clattn_list_devices(clattn_listed_device **items, size_t *count,
                                  size_t *default_index);

#endif
