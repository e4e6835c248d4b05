/* Known-answer checks (docs/kernels.md "Known-answer checks"): a program that clattn has just
   built runs once, before any call uses it, on a small problem whose f64 answer the host
   computes, chosen to reach every path of that program's tiling (a partial tile of rows and
   of keys, causal rows, a row whose keys are all hidden by the bias, a padding row, a batch
   with one partial tile of keys). A program that gets a wrong answer is refused: every call
   that needs it returns CLATTN_ERROR_UNSUPPORTED naming the device, driver and kernel. The
   verdict is kept with the program in the disk cache (diskcache.h), so a cached program is
   never checked again. */
#ifndef CLATTN_CHECK_H
#define CLATTN_CHECK_H

#include "clattn.h"
#include "plan.h"

/* Which check a program gets: that of the operation whose kernels it holds. */
typedef enum clattn_check_kind {
    CLATTN_CHECK_FORWARD = 1, /* cl/attention_forward.cl, built for FUSED */
    CLATTN_CHECK_SPLIT_KV,    /* cl/attention_forward.cl, built for SPLIT_KV's partials */
    CLATTN_CHECK_BACKWARD,    /* cl/attention_backward.cl: dq, dk, dv */
    CLATTN_CHECK_MERGE,       /* cl/merge.cl: two parts, one of them empty in some rows */
    CLATTN_CHECK_UNFUSED      /* cl/unfused.cl, with CLBlast's GEMMs */
} clattn_check_kind;

/* What a launch's program is checked with: its kind, and the tiling (forward, backward) and
   storage types its build options came from. */
typedef struct clattn_program_check {
    clattn_check_kind kind;
    clattn_tiling     tiling;
    clattn_storage    storage;
} clattn_program_check;

/* Run check on ctx's check queue (never behind the caller's commands) with the program under
   check already in ctx's program list. Returns CLATTN_SUCCESS with *passed 1, or 0 and what
   was wrong in why (the first element off by more than the tolerance); any other status is an
   error that is no verdict (no memory, a nested program refused), with its message set. */
clattn_status clattn_program_check_run(clattn_context *ctx, const clattn_program_check *check,
                                       int *passed, char *why, size_t why_size);

/* Iterations of the loop probe (cl/probe.cl): a cap below this is found. */
#define CLATTN_LOOP_PROBE_ITERATIONS (1 << 17)

/* The most loop iterations, all loops of a kernel together, that a work-item of ctx's device
   runs before the device silently stops its loops (Mesa's llvmpipe: 65535); 0 when the probe
   finds no such cap up to CLATTN_LOOP_PROBE_ITERATIONS. Probed once per device and process, by
   the first call that asks: one work-item on the check queue. The launches of a device with a cap carry
   a bound of their iterations (enqueue.h), and one over the cap is refused. */
clattn_status clattn_device_loop_limit(clattn_context *ctx, int64_t *limit);

/* ---- what the checks run, implemented by forward.c and backward.c ------------------------ */

/* clattn_attention_forward with desc->algo (FUSED, SPLIT_KV or UNFUSED) and, for FUSED and
   SPLIT_KV, this tiling instead of the planner's; its scratch is a buffer of its own, never the
   context's. Blocks until the call is done. */
clattn_status clattn_forward_with_tiling(clattn_context *ctx, const clattn_attention_desc *desc,
                                         const clattn_tensor *q, const clattn_tensor *k,
                                         const clattn_tensor *v, const clattn_tensor *out,
                                         const clattn_tensor *lse, const clattn_tiling *tiling);

/* clattn_attention_backward with this tiling instead of the planner's. Blocks until done. */
clattn_status clattn_backward_with_tiling(clattn_context *ctx, const clattn_attention_desc *desc,
                                          const clattn_tensor *q, const clattn_tensor *k,
                                          const clattn_tensor *v, const clattn_tensor *out,
                                          const clattn_tensor *dout, const clattn_tensor *lse,
                                          const clattn_tensor *dq, const clattn_tensor *dk,
                                          const clattn_tensor *dv, const clattn_tiling *tiling);

#endif
