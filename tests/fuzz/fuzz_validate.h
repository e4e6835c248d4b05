/* The fuzz input format of tests/fuzz/fuzz_validate.c, shared with its standalone driver and
   seed table. A case is a fixed walk of little-endian fields (fz_io_case); bytes past the end
   of an input read as zero, so every byte string is a case. */
#ifndef FUZZ_VALIDATE_H
#define FUZZ_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "validate.h"

#define FZ_MAX_BUFS 16
#define FZ_MAX_PARTS 8
#define FZ_MAX_TENSORS (2 + 2 * FZ_MAX_PARTS)

/* What a case calls (op % FZ_OPS). */
enum { FZ_DESC, FZ_FORWARD, FZ_QUERY, FZ_MERGE, FZ_BACKWARD, FZ_OPS };

/* Tensor slots per op. */
enum { FZ_Q, FZ_K, FZ_V, FZ_OUT, FZ_LSE, FZ_BIAS, FZ_SINKS };       /* FORWARD, QUERY */
enum { FZ_MOUT, FZ_MLSE, FZ_MPARTS };   /* MERGE: outs[p] at 2 + p, lses[p] at 2 + n + p */
enum { FZ_BQ, FZ_BK, FZ_BV, FZ_BOUT, FZ_BDOUT, FZ_BLSE, FZ_BDQ, FZ_BDK, FZ_BDV, FZ_BBIAS,
       FZ_BSINKS };

/* One fake cl_mem. Handles are fake pointers that validate.c only compares. In model mode
   (case.raw == 0) the facts are made consistent as OpenCL keeps them: a sub-buffer lies inside
   a root buffer of the same context; in raw mode they are taken as given. */
typedef struct fz_buf {
    uint8_t  live;     /* 0: a released handle (clGetMemObjectInfo fails: all facts zero) */
    uint8_t  parent;   /* 0: a root; p: a sub-buffer of buffer (p - 1) % nbufs */
    uint8_t  foreign;  /* nonzero: from another cl_context */
    uint64_t flags;    /* CL_MEM_* */
    uint64_t size;
    uint64_t origin;   /* a sub-buffer's offset in its parent */
} fz_buf;

/* Handle selectors (tensor.buf; see fz_desc for the descriptor's handles): FZ_NULL_BUF the NULL
   handle, FZ_UNKNOWN_BUF a handle the runtime does not know, else buffer sel % nbufs (NULL when
   there are no buffers). */
#define FZ_NULL_BUF 0xfe
#define FZ_UNKNOWN_BUF 0xff
typedef struct fz_tensor {
    uint8_t  present;  /* 0: the clattn_tensor pointer is NULL */
    uint8_t  buf;
    int32_t  dtype;
    uint64_t offset;
    int64_t  dims[4];
    int64_t  strides[4];
} fz_tensor;

typedef struct fz_desc {
    uint8_t  absent;       /* nonzero: desc == NULL */
    uint8_t  size_given;   /* 0: struct_size = sizeof; else struct_size = size */
    uint64_t size;
    float    scale;
    int32_t  causal, align;
    int64_t  window_left, window_right;
    float    softcap, dropout_p;
    uint64_t dropout_seed, dropout_offset;
    int32_t  algo;
    uint8_t  bias;         /* nonzero: desc->bias is the op's bias tensor slot */
    uint8_t  seqlens_q, seqlens_k, workspace;  /* 0: NULL, FZ_UNKNOWN_BUF, or selector + 1 */
    uint64_t workspace_size;
    int64_t  q_start, k_start;
    int32_t  accumulate;
    uint8_t  sinks;        /* nonzero: desc->sinks is the op's sinks tensor slot */
} fz_desc;

typedef struct fz_case {
    uint8_t   op;
    uint8_t   raw;         /* bit 0: buffer facts as given, without OpenCL's consistency */
    uint8_t   nbufs;       /* nbufs % (FZ_MAX_BUFS + 1) buffers */
    fz_buf    bufs[FZ_MAX_BUFS];
    fz_desc   desc;
    uint32_t  num_wait;
    uint8_t   wait_null;   /* nonzero: wait_list == NULL */
    uint8_t   nparts;      /* merge: nparts % FZ_MAX_PARTS + 1 parts */
    fz_tensor t[FZ_MAX_TENSORS];
} fz_case;

/* Decode bytes into *c (every byte string decodes); encode *c into out (returns the length,
   at most FZ_MAX_ENCODED). */
#define FZ_MAX_ENCODED 4096
void fz_decode(const uint8_t *data, size_t size, fz_case *c);
size_t fz_encode(const fz_case *c, uint8_t *out);

/* Structure-aware mutation of a decoded case (one to three changes picked by seed). */
void fz_mutate_case(fz_case *c, uint64_t seed);

/* One run: what the validator said and what the independent model of the rules expected. */
typedef struct fz_result {
    int           op;
    clattn_status status;
    char          message[512];
    int           conservative; /* rejected an output layout that has no overlapping elements */
    char          note[256];    /* that output's dims and strides */
    char          gap[256];     /* accepted: an output shares bytes with seqlens or workspace */
} fz_result;

/* Decode, validate, check the invariants (abort() on a violation). */
void fz_run(const uint8_t *data, size_t size, fz_result *r);

/* Seeds (seeds.c): a named case, the status it must give (-1000: any) and a piece of its
   message. */
typedef struct fz_seed {
    const char   *name;
    fz_case       c;
    clattn_status status;
    const char   *message;
} fz_seed;
size_t fz_seeds(fz_seed **seeds); /* allocates; free() the array */

#endif
