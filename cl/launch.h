/*
 * launch.h — what the host code and the kernels must agree on: the flag bits of the kernels'
 * `flags` arguments and the fixed work-group shapes. Included by src/forward.c, src/merge.c
 * and src/unfused.c, and embedded ahead of the kernels that use it.
 */
#ifndef CLATTN_LAUNCH_H
#define CLATTN_LAUNCH_H

/* attention_forward (cl/attention_forward.cl) */
#define FORWARD_WRITE_LSE    1
#define FORWARD_BIAS         2
#define FORWARD_SEQLENS_Q    4
#define FORWARD_SEQLENS_K    8
#define FORWARD_CAUSAL       16
#define FORWARD_BOTTOM_RIGHT 32
#define FORWARD_DROPOUT      64

/* merge_partials (cl/merge.cl) */
#define MERGE_READ_STATE  1
#define MERGE_WRITE_FINAL 2
#define MERGE_WRITE_LSE   4

/* cl/unfused.cl: work-items per row of the GPU softmax, columns per packing work-item */
#define SOFTMAX_WG 64
#define PACK_COLS  16

#endif
