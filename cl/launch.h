/*
 * launch.h — what the host code and the kernels must agree on: the flag bits of the kernels'
 * `flags` arguments and the fixed work-group shapes. Included by the host files that launch
 * them, and embedded ahead of the kernels that use it.
 */
#ifndef CLATTN_LAUNCH_H
#define CLATTN_LAUNCH_H

/* The `flags` of attention_forward (cl/attention_forward.cl) and of the backward kernels
   (cl/attention_backward.cl): what the call asks for. */
#define ATTENTION_BIAS         2
#define ATTENTION_SEQLENS_Q    4
#define ATTENTION_SEQLENS_K    8
#define ATTENTION_CAUSAL       16
#define ATTENTION_BOTTOM_RIGHT 32
#define ATTENTION_DROPOUT      64
/* attention_forward only: write lse */
#define FORWARD_WRITE_LSE      1

/* merge_partials (cl/merge.cl) */
#define MERGE_READ_STATE  1
#define MERGE_WRITE_FINAL 2
#define MERGE_WRITE_LSE   4

/* cl/unfused.cl: work-items per row of the GPU softmax, columns per packing work-item */
#define SOFTMAX_WG 64
#define PACK_COLS  16

#endif
