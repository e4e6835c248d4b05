/*
 * Helpers shared by the device suites (test_forward.c, test_bad_input.c, ...):
 * the per-test context, a seedable PRNG, cl_mem helpers with canaries, host tensors with
 * arbitrary layouts, and comparison against the f64 reference with stated tolerances.
 *
 * Criterion forks every test, so everything here is per process and made lazily: never in a
 * global constructor. Any OpenCL failure in a helper fails the test that called it.
 */
#ifndef CLATTN_TEST_COMMON_H
#define CLATTN_TEST_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "clattn.h"
#include "reference/reference.h"

/* ---- tolerances -------------------------------------------------------------------------- */

/* f32 forward: per row, max_d |out - ref| / max(max_d |ref|, TOL_ROW_FLOOR). */
#define TOL_F32_OUT 2e-5
/* lse: |lse - ref| / max(1, |ref|). */
#define TOL_F32_LSE 2e-5
#define TOL_ROW_FLOOR 1e-6

/* ---- context ----------------------------------------------------------------------------- */

/* This process's context, made on first use with the selector in $CLATTN_TEST_DEVICE (unset or
   empty: NULL, the library's default). Skips the test (cr_skip_test) when there is no device,
   fails it on any other error. Released by test_ctx_release() or at process exit. */
clattn_context *test_ctx(void);

/* Release the context of this process, if any. Usable as a Criterion .fini. */
void test_ctx_release(void);

/* The context's queue and cl_context, for direct OpenCL calls. */
cl_command_queue test_queue(void);
cl_context test_cl_context(void);

/* Fail the current test with the library's status and message unless st == CLATTN_SUCCESS. */
/* A call the test device refused as the library promises for a device that cannot run it
   right (UNSUPPORTED naming a program its known-answer check refused, or the device's cap on
   loop iterations: docs/kernels.md "Known-answer checks") skips the test with that message:
   on such a device (rusticl on llvmpipe) the suite passes or skips, never answers wrong.
   Tests that plant a refusal assert on their status instead. */
void test_skip_if_refused(clattn_status st);

#define TEST_CHECK_STATUS(st, what)                                                          \
    do {                                                                                     \
        const clattn_status test_status_ = (st);                                             \
        test_skip_if_refused(test_status_);                                                  \
        cr_assert_eq(test_status_, CLATTN_SUCCESS, "%s: %s: %s", (what),                     \
                     clattn_status_string(test_status_), clattn_last_error());               \
    } while (0)

/* ---- the library's log ------------------------------------------------------------------ */

/* What the library logged since test_log_start(): each line followed by '\n', cut short when
   the buffer is full. */
#define TEST_LOG_SIZE 65536
extern char test_log[TEST_LOG_SIZE];

/* The log callback that appends a line to test_log (a test's own callback may call it). */
void test_log_capture(int level, const char *msg, void *user);

/* Empty test_log and make test_log_capture the library's log callback. */
void test_log_start(void);

/* Whether test_log holds needle. */
int test_logged(const char *needle);

/* ---- a driver that deadlocks on a command released by its wait list ---------------------- */

/* NULL, or why the test device's driver deadlocks when a queued command is released by the
   completion of its wait list (PoCL 3.1's basic device: pocl/pocl#1177). That hangs a test
   that sets a user event some call waits on, and one where threads enqueue on one queue at
   once (a command queued behind another thread's running command is released that way).
   Measured, not guessed from the device's name: a forked child makes its own context on the
   test device and sets a user event that a marker waits on; no completion within 10 s of that
   is the deadlock, and the child is killed. Call it before this process's first OpenCL call
   (test_ctx()): after that it does not probe and returns NULL. The answer is kept. */
const char *test_gated_command_deadlocks(void);

/* A new user event of the test context (asserts on failure). */
cl_event test_user_event(void);

/* With `call` enqueued behind the user event `gate`: flushes the queue, waits 200 ms, expects
   `call` not complete yet (`what` names it), then completes `gate`. The caller waits for
   `call` and releases both. */
void test_expect_held_by(cl_event gate, cl_event call, const char *what);

/* ---- deterministic random numbers -------------------------------------------------------- */

typedef struct test_rng {
    uint64_t state;
} test_rng;

void rng_seed(test_rng *r, uint64_t seed);
uint32_t rng_u32(test_rng *r);
/* Uniform in [lo, hi). */
double rng_uniform(test_rng *r, double lo, double hi);
/* Uniform integer in [0, n). */
int64_t rng_below(test_rng *r, int64_t n);
void rng_fill_f32(test_rng *r, float *x, size_t n, float lo, float hi);

/* ---- host conversions -------------------------------------------------------------------- */

void f32_to_f64(const float *src, double *dst, size_t n);
void f64_to_f32(const double *src, float *dst, size_t n);
/* Storage formats, round to nearest even; NaN stays NaN. */
uint16_t f32_to_f16_bits(float f);
float f16_bits_to_f32(uint16_t h);
uint16_t f32_to_bf16_bits(float f);
float bf16_bits_to_f32(uint16_t h);
/* Bytes of one element of t (4, 2, 2). */
size_t dtype_size(clattn_dtype t);

/* ---- cl_mem helpers ---------------------------------------------------------------------- */

/* A buffer of `bytes` bytes in the test context, with flags (e.g. CL_MEM_READ_WRITE), filled
   from init when init != NULL, else with the canary pattern. */
cl_mem buf_new(cl_mem_flags flags, size_t bytes, const void *init);
/* Blocking write / read of bytes at byte offset 0 on the context's queue. */
void buf_write(cl_mem mem, size_t bytes, const void *src);
void buf_read(cl_mem mem, size_t bytes, void *dst);
/* Size of mem (CL_MEM_SIZE). */
size_t buf_size(cl_mem mem);

/* The canary byte pattern: byte i of a canaried region holds canary_byte(i). It varies with i
   so a shifted or partial write shows up. */
unsigned char canary_byte(size_t i);
void canary_fill(unsigned char *p, size_t n);
/* Index of the first byte of p[0..n) that does not hold its canary byte, or SIZE_MAX. */
size_t canary_first_bad(const unsigned char *p, size_t n);
/* Fill the whole of mem with the canary (blocking). */
void buf_fill_canary(cl_mem mem);
/* 1 if the whole of mem still holds the canary (reads it back; finishes the queue first).
   On 0, *first_bad (if not NULL) is the first changed byte. */
int buf_canary_intact(cl_mem mem, size_t *first_bad);

/* ---- host tensors with layouts ----------------------------------------------------------- */

/* How a tensor is laid out in its buffer: the logical dims in memory order (outermost first,
   head_dim last), extra elements of padding after each dim's extent, a byte offset before
   element [0,0,0,0] and a byte tail after the last. */
typedef struct test_layout {
    const char *name;
    int     order[4];    /* logical dim indices, outermost first; order[3] == 3 */
    int64_t pad[4];      /* by logical dim: padding elements added to that dim's span */
    size_t  offset;      /* bytes; a multiple of the element size */
    size_t  tail;        /* bytes */
} test_layout;

extern const test_layout LAYOUT_BHSD;          /* dense [b,h,s,d] */
extern const test_layout LAYOUT_BSHD;          /* dense [b,s,h,d] */
extern const test_layout LAYOUT_BHSD_PADDED;   /* [b,h,s,d], padded rows, offset, tail */
extern const test_layout LAYOUT_BSHD_PADDED;   /* [b,s,h,d], padded, offset, tail */
extern const test_layout LAYOUT_SBHD_PADDED;   /* [s,b,h,d], padded, offset, tail */

/* A tensor view and a host copy of its whole buffer. */
typedef struct test_tensor {
    clattn_tensor view;     /* dims, strides, offset, dtype; buffer once uploaded */
    unsigned char *host;    /* host copy of all `bytes` of the buffer */
    size_t bytes;
} test_tensor;

/* A host tensor of dims in layout; every byte starts as canary. */
void tt_init(test_tensor *t, clattn_dtype dtype, const int64_t dims[4], const test_layout *l);
/* A host tensor with explicit strides (elements, >= 0) and byte offset; the buffer is just big
   enough for the view plus tail bytes. */
void tt_init_strided(test_tensor *t, clattn_dtype dtype, const int64_t dims[4],
                     const int64_t strides[4], size_t offset, size_t tail);
void tt_free(test_tensor *t);       /* frees host memory and releases the cl_mem */

/* Byte offset of element [b,h,s,d] in the buffer. */
size_t tt_byte_offset(const test_tensor *t, int64_t b, int64_t h, int64_t s, int64_t d);
/* Element [b,h,s,d] of the host copy as a double / store x rounded to the dtype. */
double tt_get(const test_tensor *t, int64_t b, int64_t h, int64_t s, int64_t d);
void tt_set(test_tensor *t, int64_t b, int64_t h, int64_t s, int64_t d, double x);
/* Every view element uniform in [lo, hi). */
void tt_fill_random(test_tensor *t, test_rng *r, double lo, double hi);
/* A mask of the buffer's bytes that belong to the view (1) or not (0); caller frees. */
unsigned char *tt_view_mask(const test_tensor *t);
/* Every byte outside the view: f32 value x in each 4-byte word (dtype f32 only; a byte tail
   that is not a whole word stays canary). Use NaN / Inf to prove padding is never read. */
void tt_fill_outside_f32(test_tensor *t, float x);

/* Make the cl_mem from the host copy (flags e.g. CL_MEM_READ_WRITE); view.buffer is set. */
void tt_upload(test_tensor *t, cl_mem_flags flags);
/* Write the host copy to the existing cl_mem (blocking). */
void tt_push(test_tensor *t);
/* Read the whole cl_mem back into the host copy (blocking). */
void tt_download(test_tensor *t);
/* Bytes outside the view that no longer hold the canary; *first (if not NULL) is the first. */
size_t tt_outside_damage(const test_tensor *t, size_t *first);

/* The view as f64 for the reference: *store gets a malloc'd copy of every element of the
   buffer (converted from the dtype), and the returned ref_tensor uses the same strides. */
ref_tensor tt_to_ref(const test_tensor *t, double **store);

/* ---- comparison -------------------------------------------------------------------------- */

typedef struct cmp_result {
    double  worst;       /* worst metric value; INFINITY after a hard mismatch */
    int64_t at[4];       /* where: b, h, s, d */
    double  got, want;   /* the values there */
    int64_t hard;        /* hard mismatches: NaN, -inf or exact-zero rules broken */
    int64_t rows;        /* rows compared */
} cmp_result;

/* out (host copy, after tt_download) against the reference out view: per row
   max_d |out - ref| / max(max_d |ref|, TOL_ROW_FLOOR); a row whose reference is all 0 (no
   visible key) must be exactly 0; NaN exactly where the reference has NaN. */
cmp_result compare_out(const test_tensor *out, const ref_tensor *ref);

/* lse [B,Hq,Sq,1] against the reference: |lse - ref| / max(1, |ref|); -inf and NaN must match
   exactly. */
cmp_result compare_lse(const test_tensor *lse, const ref_tensor *ref);

/* "1.2e-06 at [0,1,5,3] (got 0.1, want 0.1000001), 0 hard" into buf; returns buf. */
const char *cmp_describe(const cmp_result *r, char *buf, size_t size);

/* Keep the worse of acc and r in acc (rows add up). */
void cmp_merge(cmp_result *acc, const cmp_result *r);

/* An empty result (worst 0). */
cmp_result cmp_none(void);

/* ---- the reference of host tensors -------------------------------------------------------- */

/* The reference forward of host tensors q, k, v (bias, if not NULL, is set as p->bias) into
   new dense arrays: *out_data [B,Hq,Sq,Dv] viewed by *out, *lse_data [B,Hq,Sq,1] by *lse
   (the caller frees both arrays). Asserts the reference accepts the shapes. */
void test_reference_of(ref_params p, const test_tensor *q, const test_tensor *k,
                       const test_tensor *v, const test_tensor *bias, double **out_data,
                       ref_tensor *out, double **lse_data, ref_tensor *lse);

/* ---- one whole forward -------------------------------------------------------------------- */

/* Run a dense f32 forward in the test context: q [qd] and k, v [kd] (Dv = D) with random
   inputs, desc as given (NULL: defaults), and assert out matches the reference within
   TOL_F32_OUT. Writes clattn_attention_plan's line to plan (if not NULL). */
void test_forward_vs_reference(const clattn_attention_desc *desc, const int64_t qd[4],
                               const int64_t kd[4], char *plan, size_t plan_size);

/* ---- the backward ------------------------------------------------------------------------- */

/* Gradients: max |got - ref| over the whole tensor / max(max |ref| over its finite elements,
   TOL_ROW_FLOOR). f32 gradients from f32 out/dout (q, k, v in any dtype: the reference reads
   the same rounded inputs). The forward's out tolerance: the backward forms delta = dout . out
   from the forward's out (and P from its lse), so it cannot be held tighter than the forward;
   on PoCL the worst measured is 1.6e-6 (S=300), about 12x under it. */
#define TOL_F32_GRAD 2e-5
/* A gradient stored in 16 bits adds its rounding: half an ulp of the largest element
   (f16 2^-11 = 4.9e-4, bf16 2^-8 = 3.9e-3), with margin. */
#define TOL_GRAD_STORE_F16 1e-3
#define TOL_GRAD_STORE_BF16 8e-3
/* out (and dout) stored in 16 bits: delta_i = dout_i . out_i is formed from the rounded out,
   and its rounding error (relative 2^-11 / 2^-8 of |dout| |out|) moves every dS_ij of the row
   by P_ij times it. */
#define TOL_GRAD_OUT_F16 1e-3
#define TOL_GRAD_OUT_BF16 8e-3

/* The tolerance of a gradient stored in grad_dtype, computed from out/dout in out_dtype. */
double test_grad_tolerance(clattn_dtype grad_dtype, clattn_dtype out_dtype);

/* The reference parameters of a desc: scale, masks, softcap, dropout (not bias or seqlens,
   which live on the device: set p.bias / p.seqlens_q / p.seqlens_k yourself). */
ref_params test_ref_params_of(const clattn_attention_desc *d);

/* The reference gradients of host tensors, dense arrays viewed by dq, dk, dv. */
typedef struct test_grads {
    double *dq_data, *dk_data, *dv_data;
    ref_tensor dq, dk, dv;
} test_grads;

/* ref_attention_backward of host tensors q, k, v, dout (bias, if not NULL, is set as p.bias)
   into g (free with test_grads_free). Asserts the reference accepts the shapes. */
void test_reference_backward_of(ref_params p, const test_tensor *q, const test_tensor *k,
                                const test_tensor *v, const test_tensor *dout,
                                const test_tensor *bias, test_grads *g);
void test_grads_free(test_grads *g);

/* Which gradient rows the contract says are exactly 0: q_rows[(b*Hq + h)*Sq + i] = 1 when no
   key takes part in query row i (padding row, no visible key, or every visible key -INFINITY
   in p->bias); kv_rows[(b*Hkv + g)*Sk + j] = 1 when key j takes part in no row of the heads of
   group g. Batches whose seqlens entry is outside [0, dim] get 0 (they are NaN instead).
   The caller frees both. */
void test_grad_zero_rows(const ref_params *p, int64_t B, int64_t Hq, int64_t Hkv, int64_t Sq,
                         int64_t Sk, unsigned char **q_rows, unsigned char **kv_rows);

/* A gradient (host copy) against its reference: |got - ref| / max(max |ref| over the tensor's
   finite elements, TOL_ROW_FLOOR); NaN exactly where the reference has NaN; Inf is a hard
   mismatch unless equal; rows with zero_rows[(b*H + h)*S + s] (NULL: none) must be exactly 0. */
cmp_result compare_grad(const test_tensor *got, const ref_tensor *want,
                        const unsigned char *zero_rows);

/* Every element slot outside the view (element-aligned, not in the view) gets x stored in the
   tensor's dtype; bytes of a partial slot at the end stay canary. */
void tt_fill_outside(test_tensor *t, double x);

/* ---- small shared helpers ---------------------------------------------------------------- */

/* An out stored in 16 bits adds its rounding to the f32 tolerance, relative to the row scale:
   half an ulp of the format (f16: 2^-11 = 4.9e-4, bf16: 2^-8 = 3.9e-3) with margin. */
#define TOL_OUT_STORE_F16 1e-3
#define TOL_OUT_STORE_BF16 8e-3

/* The out tolerance for an out stored in out_dtype: TOL_F32_OUT plus its storage rounding. */
double test_out_tolerance(clattn_dtype out_dtype);

/* "f32", "f16", "bf16"; "AUTO", "FUSED", "SPLIT_KV", "UNFUSED". */
const char *test_dtype_name(clattn_dtype t);
const char *test_algo_name(clattn_algo a);

/* Wait for ev, assert it completed, release it; label names the call in failures. */
void test_wait_event(cl_event ev, const char *label);

/* Whether msg contains one of the '|'-separated alternatives ("dq.dims[2]|dq"), case and
   all. */
int test_message_names(const char *msg, const char *alternatives);

/* [b,h,s,d] with dense BHSD strides and 64 guard bytes before and 48 after the view: the
   default layout of gradients, so that a write past either end of a view shows. */
extern const test_layout LAYOUT_BHSD_GUARDED;

/* ==== one test case ======================================================================== */

/* Every device suite (forward, backward, semantics, merge, bad input, small) describes a case
   with a test_case, so that a new feature of the desc is a field here, in tc_desc,
   tc_ref_params, tc_describe and (if it needs tensors) tc_build, and nowhere else.

   Every field is 0 by default (clattn_attention_desc_init's defaults, f32, dense BHSD, ...), so
   a table entry names only what it changes:
       {"causal TL", TC_SHAPE(1, 2, 1, 37, 90, 16, 16), .causal = 1, TC_TL}
   and tc_shape() makes one in code. A case is turned into tensors by tc_build (host) and
   tc_upload (device), both into a tc_run. */

typedef enum tc_bias {
    TC_BIAS_NONE = 0,
    TC_BIAS_FULL,       /* [B, Hq, Sq, Sk] */
    TC_BIAS_BATCH1,     /* [1, Hq, Sq, Sk]: broadcast over the batch */
    TC_BIAS_HEAD1,      /* [B, 1, Sq, Sk]: broadcast over the heads */
    TC_BIAS_ROW1,       /* [B, Hq, 1, Sk]: broadcast over the query rows */
    TC_BIAS_KEYS,       /* [1, 1, 1, Sk]: one key bias for everything */
    TC_BIAS_STRIDE0     /* dims [B, Hq, Sq, Sk], strides[0] = strides[1] = 0 */
} tc_bias;

/* bias_inf: what tc_build plants into the bias (random in [-1.5, 1.5) otherwise). */
#define TC_INF_SCATTER 1    /* -INFINITY at about one entry in 11 */
#define TC_INF_STRIPES 2    /* -INFINITY at every 7th key of a row, from key (i + h) mod 7 */
#define TC_INF_ROW 4        /* row special_row of the bias's last (batch, head): every key
                               visible to it -INFINITY (a row without keys), every invisible
                               key +40 */
#define TC_NAN_KEYS 8       /* NaN at the last key visible to row special_row of the last
                               (batch, head) (that row is NaN); at every key that row 0 of
                               (0, 0) does not see (changes nothing) */

/* poison: NaN/Inf that tc_build puts where no output may depend on it. */
#define TC_POISON_KEYS 1    /* k and v rows of keys that no query row of their batch sees (the
                               mask and seqlens alone): NaN, +Inf, -Inf */
#define TC_POISON_ROWS 2    /* q (and dout) rows i >= Sq_b (padding): NaN */
#define TC_POISON_EMPTY 4   /* q (and dout) rows i < Sq_b that see no key: NaN */

/* want: what the reference of a case must contain (checks the table itself). */
#define TC_WANT_EMPTY 1     /* a row without a visible key (out 0, lse -inf) */
#define TC_WANT_NAN 2       /* NaN in the reference (a NaN row, a NaN batch): exactly when set */
#define TC_WANT_ZERO_DQ 4   /* a dq row that must be exactly 0 */
#define TC_WANT_ZERO_DKV 8  /* a dk/dv row that must be exactly 0 */

/* merge.plant: what a merge case plants into its parts. */
#define TC_PLANT_INF 1      /* lse_p = -inf in about a quarter of (part, row) */
#define TC_PLANT_ALL_INF 2  /* rows [0,0,0] and [B-1,H-1,S-1]: every part -inf */
#define TC_PLANT_NAN_OUT 4  /* NaN in one element of out_p of a part with finite lse_p */
#define TC_PLANT_NAN_LSE 8  /* NaN in lse_p of one part of one row */
#define TC_PLANT_GARBAGE 16 /* out_p of every -inf part holds NaN / +Inf / -Inf */

/* dtypes: the q/k/v storage types a table runs a case for (0: all). */
#define TC_ONLY(t) (1 << (t))

typedef struct tc_window {
    int on;                 /* 0: both -1 (unbounded) */
    int64_t left, right;    /* -1: unbounded on that side */
} tc_window;

/* The buffers a bad-input table keeps beside a case's own (too short, read-only, from another
   context, ...). Each bad-input suite defines struct tc_spares for itself. */
typedef struct tc_spares tc_spares;
struct tc_args;

/* A change to a valid call's arguments (bad input). */
typedef void (*tc_mutation)(struct tc_args *a, tc_spares *s);

typedef struct test_case {
    const char *name;                   /* a table's label; NULL: none */

    /* shape: q [B,Hq,Sq,D], k [B,Hkv,Sk,D], v [B,Hkv,Sk,Dv], out [B,Hq,Sq,Dv] */
    int64_t B, Hq, Hkv, Sq, Sk, D, Dv;

    /* storage types */
    clattn_dtype dtype;                 /* q, k, v */
    clattn_dtype out_dtype;             /* out and dout */
    clattn_dtype grad_dtype;            /* dq, dk, dv */
    clattn_dtype bias_dtype;

    /* the desc */
    float scale;
    int causal;
    clattn_mask_align align;
    tc_window window;
    float softcap;
    tc_bias bias;
    const int32_t *seqlens_q;           /* NULL or B entries */
    const int32_t *seqlens_k;
    float dropout_p;
    uint64_t dropout_seed, dropout_offset;
    int64_t q_start, k_start;           /* positions */
    int sinks;                          /* 1: sinks f32 [1, Hq, 1, 1], random in [-2, 4) */
    clattn_algo algo;
    int no_lse;                         /* the forward gets lse == NULL */

    /* layouts by tensor; NULL: dense BHSD (dq, dk, dv: LAYOUT_BHSD_GUARDED) */
    const test_layout *lq, *lk, *lv, *lo, *ll, *ldo, *ldq, *ldk, *ldv;
    int kv_batch_broadcast;             /* k, v one batch's data, strides[0] = 0 */

    /* the data */
    uint64_t seed;                      /* of the random inputs */
    double qk_range;                    /* q, k uniform in [-r, r); 0: 1 (v in [-0.5, 1.5)) */
    int backward;                       /* also dout (random in [-1, 1)), dq, dk, dv */
    int writable_inputs;                /* inputs CL_MEM_READ_WRITE, not READ_ONLY */
    int bias_inf;                       /* TC_INF_*, TC_NAN_KEYS */
    int64_t special_row;                /* the row of TC_INF_ROW, TC_NAN_KEYS, nan_q */
    int nan_q;                          /* NaN in q[B-1, Hq-1, special_row, D/2] */
    int poison;                         /* TC_POISON_* */

    /* what a suite does with it */
    int want;                           /* TC_WANT_* */
    int also_without_lse;               /* run again with lse == NULL: out bit-identical */
    int dtypes;                         /* TC_ONLY(q/k/v dtype) | ...; 0: every dtype */
    int group;                          /* the suite's group of cases, for its report */

    /* merge */
    struct {
        size_t n;                       /* parts */
        clattn_dtype part_dtype;        /* of the parts' outs */
        clattn_dtype alt_dtype;         /* != part_dtype: the odd parts' outs have this dtype */
        int plant;                      /* TC_PLANT_* */
        int64_t split[2];               /* forward over keys [0, a), [a, b), [b, Sk) */
    } merge;

    /* bad input: the change to a valid call and the answer it must get */
    tc_mutation mutate;                 /* NULL: only the desc fields above differ */
    struct {
        clattn_status status;           /* the status the call must return */
        const char *names;              /* the message names one of these ("a|b"); NULL:
                                           only non-empty */
        const char *names2;             /* and one of these */
        clattn_status also;             /* another accepted status; CLATTN_SUCCESS: none */
    } expect;
} test_case;

/* For tables: the shape, top-left alignment, a window, seqlens. */
#define TC_SHAPE(b, hq, hkv, sq, sk, d, dv) \
    .B = (b), .Hq = (hq), .Hkv = (hkv), .Sq = (sq), .Sk = (sk), .D = (d), .Dv = (dv)
#define TC_TL .align = CLATTN_ALIGN_TOP_LEFT
#define TC_WIN(l, r) {1, (l), (r)}          /* in code: c.window = (tc_window)TC_WIN(l, r) */
#define TC_SEQ(...) ((const int32_t[]){__VA_ARGS__})
/* Padded, permuted views with offsets, different per tensor. */
#define TC_PADDED                                                                          \
    .lq = &LAYOUT_BSHD_PADDED, .lk = &LAYOUT_SBHD_PADDED, .lv = &LAYOUT_BHSD_PADDED,       \
    .lo = &LAYOUT_BSHD_PADDED, .ll = &LAYOUT_SBHD_PADDED, .ldo = &LAYOUT_SBHD_PADDED,      \
    .ldq = &LAYOUT_BHSD_PADDED, .ldk = &LAYOUT_BSHD_PADDED, .ldv = &LAYOUT_SBHD_PADDED
/* Every tensor but lse dense BSHD. */
#define TC_ALL_BSHD                                                                        \
    .lq = &LAYOUT_BSHD, .lk = &LAYOUT_BSHD, .lv = &LAYOUT_BSHD, .lo = &LAYOUT_BSHD,        \
    .ldo = &LAYOUT_BSHD, .ldq = &LAYOUT_BSHD, .ldk = &LAYOUT_BSHD, .ldv = &LAYOUT_BSHD

/* For bad-input tables: the status a call must get, what its message names ("a|b", or NULL),
   and optionally .names2 = "...", .also = another accepted status. */
#define TC_REJECT(st, ...) .expect = {.status = (st), .names = __VA_ARGS__}

/* A case of this shape with every default, and a seed made from the shape. */
test_case tc_shape(int64_t B, int64_t Hq, int64_t Hkv, int64_t Sq, int64_t Sk, int64_t D,
                   int64_t Dv);

/* The desc of the case; bias and seqlens stay NULL (they are device tensors: tc_run_desc). */
void tc_desc(const test_case *c, clattn_attention_desc *d);

/* The reference's parameters of the case, seqlens included; p->bias stays NULL. */
void tc_ref_params(const test_case *c, ref_params *p);

/* One line naming the case and every field that is not its default, for failure messages;
   returns buf. */
const char *tc_describe(const test_case *c, char *buf, size_t size);

/* Whether a table runs c for q/k/v dtype t (c->dtypes). */
int tc_runs_dtype(const test_case *c, clattn_dtype t);

/* ---- the tensors of a case ----------------------------------------------------------------- */

typedef enum tc_which { TC_Q, TC_K, TC_V, TC_OUT, TC_LSE, TC_DOUT, TC_DQ, TC_DK, TC_DV } tc_which;

/* The dims of tensor w of the case. */
void tc_dims(const test_case *c, tc_which w, int64_t dims[4]);

/* Host tensor w of the case: its dims, dtype and layout, every byte canary. */
void tc_tensor(test_tensor *t, const test_case *c, tc_which w);

/* A case made into tensors. */
typedef struct tc_run {
    test_case c;                        /* a copy of the case */
    test_tensor q, k, v, out, lse, bias;        /* bias: when c.bias */
    test_tensor sinks;                          /* when c.sinks */
    double *sink_values;                        /* [Hq], when c.sinks: the reference's */
    test_tensor dout, dq, dk, dv;               /* when c.backward */
    cl_mem seqlens_q, seqlens_k;        /* tc_upload, when the case has them */
    int64_t poisoned;                   /* input elements c.poison set to NaN/Inf */
    double *ref_out_data, *ref_lse_data;        /* tc_reference */
    ref_tensor ref_out, ref_lse;
} tc_run;

/* Host tensors of c: random inputs from c->seed, NaN (q, v, dout) and +Inf (k) in the bytes
   outside the input views, the bias with what c->bias_inf plants, c->nan_q, c->poison; canary
   in and around the outputs. Nothing is on the device yet: a test may plant more first. */
void tc_build(tc_run *r, const test_case *c);

/* The device buffers of the host tensors (and seqlens): inputs READ_ONLY (READ_WRITE with
   c.writable_inputs), outputs READ_WRITE. */
void tc_upload(tc_run *r);

/* Free host and device memory. */
void tc_free(tc_run *r);

/* Poison key j of batch b in every kv head: NaN, +Inf, -Inf in turn along k and v. */
void tc_poison_key(tc_run *r, int64_t b, int64_t j);

/* The desc of the run: tc_desc with its bias and seqlens. */
void tc_run_desc(const tc_run *r, clattn_attention_desc *d);

/* ---- calls ------------------------------------------------------------------------------- */

/* The arguments of a forward or backward call; the pointers point into the struct (lsep is
   NULL when c.no_lse) until a test changes them. */
typedef struct tc_args {
    clattn_context *ctx;
    clattn_attention_desc desc;
    clattn_tensor q, k, v, out, lse, dout, dq, dk, dv;
    const clattn_attention_desc *descp;
    const clattn_tensor *qp, *kp, *vp, *outp, *lsep, *doutp, *dqp, *dkp, *dvp;
    cl_uint num_wait;
    const cl_event *wait_list;
} tc_args;

/* The arguments of r's calls in the test context. */
void tc_args_init(tc_args *a, const tc_run *r);
clattn_status tc_call_forward(const tc_args *a, cl_event *event);
clattn_status tc_call_backward(const tc_args *a, cl_event *event);

/* r's forward / backward with its own arguments and the given wait list. */
clattn_status tc_forward(tc_run *r, cl_uint num_wait, const cl_event *wait_list,
                         cl_event *event);
clattn_status tc_backward(tc_run *r, cl_uint num_wait, const cl_event *wait_list,
                          cl_event *event);

/* A rejected call: status c->expect.status (or .also), a message that names c->expect.names
   and .names2, *event cleared. Logs the answer. */
void tc_expect_rejected(const test_case *c, clattn_status st, cl_event ev, const char *label);

/* ---- reference and checks ------------------------------------------------------------------ */

/* The reference forward of r into r->ref_out, r->ref_lse (once). */
void tc_reference(tc_run *r);

/* The reference gradients of r (dout included), and which rows must be exactly 0 (see
   test_grad_zero_rows; the caller frees both). */
void tc_reference_grads(tc_run *r, test_grads *g, unsigned char **zero_q,
                        unsigned char **zero_kv);

/* Every byte of t's buffer on the device equals its host copy (an input stayed unwritten). */
void tc_expect_unchanged(const test_tensor *t, const char *name, const char *label);

/* No byte of t's host copy outside its view lost its canary. */
void tc_expect_outside_intact(const test_tensor *t, const char *name, const char *label);

typedef struct tc_fwd_result {
    cmp_result out, lse;                /* lse: cmp_none() when c.no_lse */
    int64_t empty_rows, nan_rows;       /* of the reference */
} tc_fwd_result;

/* After a forward of r: downloads out and lse, computes the reference, checks c.want against
   it (asserts), expects out under test_out_tolerance(out_dtype) and lse under TOL_F32_LSE
   (with lse == NULL: the lse buffer untouched), the bytes around both views intact and q, k,
   v unchanged. res (if not NULL) gets the results. */
void tc_check_forward(tc_run *r, const char *label, tc_fwd_result *res);

typedef struct tc_grad_result {
    cmp_result dq, dk, dv;
    double tol;                         /* test_grad_tolerance of the case */
} tc_grad_result;

/* After a backward of r: downloads dq, dk, dv, checks c.want against the reference (asserts),
   expects each gradient under test_grad_tolerance() with its contract's zero rows exactly 0,
   the bytes around the gradient views intact and q, k, v, dout unchanged. res (if not NULL)
   gets the results. */
void tc_check_backward(tc_run *r, const char *label, tc_grad_result *res);

#endif
