/* Bad input (docs/semantics.md "Bad input"), table-driven: each case (a test_case: a desc
   field or a .mutate of the call's arguments, and .expect) changes one thing in a valid
   forward call and states the status it must get and a substring its message must contain.
   After every rejected call:
   a non-empty clattn_last_error() naming the argument, *event == NULL, no byte of any buffer
   changed (after clFinish), and a valid call on the same context still succeeds, matches the
   reference and leaves clattn_last_error() == "".
   Also the pointer and n checks of clattn_attention_backward (then a valid backward that
   matches the reference; the backward's other checks are in test_backward.c) and
   clattn_attention_merge. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

TestSuite(bad_input, .fini = test_ctx_release);

/* The valid problem: every dim differs, so a message can name the one that is wrong. */
enum { B = 2, HQ = 4, HKV = 2, SQ = 5, SK = 7, D = 8, DV = 6 };

/* Buffers the cases point at besides the valid call's own (tc_run). The host copies of the run
   say what its buffers must still hold. */
struct tc_spares {
    cl_mem out_big;      /* room for out, lse and 64 bytes: misaligned offsets, aliasing */
    cl_mem lse_big;      /* room for lse plus 64 bytes */
    cl_mem q_sub;        /* sub-buffer of q's buffer at origin 0, out-sized */
    cl_mem ro_out;       /* CL_MEM_READ_ONLY, out-sized */
    cl_mem ro_lse;       /* CL_MEM_READ_ONLY, lse-sized */
    cl_mem wo_k;         /* CL_MEM_WRITE_ONLY, k-sized */
    cl_mem short_v;      /* one element smaller than v needs */
    cl_context foreign_ctx;
    cl_mem foreign;      /* from foreign_ctx, big enough for q and out */
    const tc_run *run;   /* the valid call's tensors */
};

typedef struct fixture {
    tc_run run;
    tc_spares spares;
} fixture;

/* ---- the fixture ------------------------------------------------------------------------- */

static cl_device_id test_device(void)
{
    cl_device_id dev;
    cr_assert_eq(clGetCommandQueueInfo(test_queue(), CL_QUEUE_DEVICE, sizeof dev, &dev, NULL),
                 CL_SUCCESS);
    return dev;
}

/* The valid call, and dout, dq, dk, dv for the backward's pointer checks. Inputs read-write,
   so that an output pointed into them is wrong only by aliasing; dense views. */
static void fixture_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    test_case c = tc_shape(B, HQ, HKV, SQ, SK, D, DV);
    c.seed = 2024;
    c.backward = 1;
    c.writable_inputs = 1;
    c.ldq = c.ldk = c.ldv = &LAYOUT_BHSD;
    tc_build(&f->run, &c);
    tc_upload(&f->run);
    tc_reference(&f->run);

    tc_spares *x = &f->spares;
    const tc_run *r = &f->run;
    x->run = r;
    x->out_big = buf_new(CL_MEM_READ_WRITE, r->out.bytes + r->lse.bytes + 64, NULL);
    x->lse_big = buf_new(CL_MEM_READ_WRITE, r->lse.bytes + 64, NULL);
    x->ro_out = buf_new(CL_MEM_READ_ONLY, r->out.bytes, NULL);
    x->ro_lse = buf_new(CL_MEM_READ_ONLY, r->lse.bytes, NULL);
    x->wo_k = buf_new(CL_MEM_WRITE_ONLY, r->k.bytes, r->k.host);
    x->short_v = buf_new(CL_MEM_READ_ONLY, r->v.bytes - 4, r->v.host);

    cl_int err;
    cl_buffer_region region = {0, r->out.bytes};
    x->q_sub = clCreateSubBuffer(r->q.view.buffer, CL_MEM_READ_WRITE,
                                 CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateSubBuffer: %d", err);

    cl_device_id dev = test_device();
    x->foreign_ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateContext: %d", err);
    size_t fbytes = r->q.bytes > r->out.bytes ? r->q.bytes : r->out.bytes;
    x->foreign = clCreateBuffer(x->foreign_ctx, CL_MEM_READ_WRITE, fbytes, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateBuffer (foreign context): %d", err);
}

static void fixture_free(fixture *f)
{
    tc_spares *x = &f->spares;
    cl_mem extra[] = {x->out_big, x->lse_big, x->q_sub, x->ro_out, x->ro_lse, x->wo_k,
                      x->short_v, x->foreign};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        clReleaseMemObject(extra[i]);
    clReleaseContext(x->foreign_ctx);
    tc_free(&f->run);
}

/* Put the canary back into every buffer an output may point at. */
static void reset_outputs(fixture *f)
{
    buf_fill_canary(f->run.out.view.buffer);
    buf_fill_canary(f->run.lse.view.buffer);
    buf_fill_canary(f->spares.out_big);
    buf_fill_canary(f->spares.lse_big);
}

static void expect_bytes(cl_mem mem, const unsigned char *want, size_t bytes, const char *what,
                         const char *label)
{
    unsigned char *got = malloc(bytes);
    cr_assert_not_null(got);
    buf_read(mem, bytes, got);
    size_t first = SIZE_MAX;
    for (size_t i = 0; i < bytes && first == SIZE_MAX; i++)
        if (got[i] != want[i])
            first = i;
    cr_expect_eq(first, SIZE_MAX, "%s: %s changed at byte %zu", label, what, first);
    free(got);
}

/* No buffer of the fixture changed. */
static void expect_untouched(const fixture *f, const char *label)
{
    const tc_run *r = &f->run;
    const tc_spares *x = &f->spares;
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    tc_expect_unchanged(&r->q, "q", label);
    tc_expect_unchanged(&r->k, "k", label);
    tc_expect_unchanged(&r->v, "v", label);
    expect_bytes(x->wo_k, r->k.host, r->k.bytes, "the write-only k", label);
    expect_bytes(x->short_v, r->v.host, r->v.bytes - 4, "the short v", label);
    const cl_mem canaried[] = {r->out.view.buffer, r->lse.view.buffer, x->out_big, x->lse_big,
                               x->ro_out, x->ro_lse};
    const char *names[] = {"out", "lse", "out_big", "lse_big", "read-only out",
                           "read-only lse"};
    for (size_t i = 0; i < sizeof canaried / sizeof canaried[0]; i++) {
        size_t first;
        cr_expect(buf_canary_intact(canaried[i], &first), "%s: %s written (byte %zu)", label,
                  names[i], first);
    }
}

/* A valid call on the same context: succeeds, clears the last error, matches the reference. */
static void expect_context_usable(fixture *f, const char *label)
{
    char text[256];
    snprintf(text, sizeof text, "%s: the valid call after it", label);
    cl_event ev = NULL;
    clattn_status st = tc_forward(&f->run, 0, NULL, &ev);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s: %s", text, clattn_status_string(st),
                 clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "%s: last error after a success: \"%s\"", label,
                        clattn_last_error());
    test_wait_event(ev, text);
    tc_check_forward(&f->run, text, NULL);
}

/* Everything a rejected call must satisfy (c->expect), then the context must still work. */
static void expect_rejected(fixture *f, const test_case *c, const char *label, clattn_status st,
                            cl_event ev)
{
    tc_expect_rejected(c, st, ev, label);
    expect_untouched(f, label);
    expect_context_usable(f, label);
    reset_outputs(f);
}

/* The row's desc and change applied to the valid call. */
static void args_of(tc_args *a, const test_case *row, fixture *f)
{
    tc_args_init(a, &f->run);
    tc_desc(row, &a->desc);
    if (row->mutate)
        row->mutate(a, &f->spares);
}

/* ---- the forward table ------------------------------------------------------------------- */

/* One change per line: MUTATION(name) { body using a (the call's arguments) and x (the
   spare buffers) }. Changes of the desc alone are fields of a table row instead. */
#define MUTATION(name) static void name(tc_args *a, tc_spares *x)

MUTATION(ctx_null) { (void)x; a->ctx = NULL; }
MUTATION(desc_null) { (void)x; a->descp = NULL; }
MUTATION(q_null) { (void)x; a->qp = NULL; }
MUTATION(k_null) { (void)x; a->kp = NULL; }
MUTATION(v_null) { (void)x; a->vp = NULL; }
MUTATION(out_null) { (void)x; a->outp = NULL; }
MUTATION(q_buffer_null) { (void)x; a->q.buffer = NULL; }
MUTATION(k_buffer_null) { (void)x; a->k.buffer = NULL; }
MUTATION(out_buffer_null) { (void)x; a->out.buffer = NULL; }
MUTATION(lse_buffer_null) { (void)x; a->lse.buffer = NULL; }
MUTATION(q_batch_zero) { (void)x; a->q.dims[0] = 0; }
MUTATION(q_seq_negative) { (void)x; a->q.dims[2] = -3; }
MUTATION(q_dim_zero) { (void)x; a->q.dims[3] = 0; }
MUTATION(k_heads_zero) { (void)x; a->k.dims[1] = 0; }
MUTATION(k_seq_zero) { (void)x; a->k.dims[2] = 0; }
MUTATION(v_dim_negative) { (void)x; a->v.dims[3] = -1; }
MUTATION(out_seq_zero) { (void)x; a->out.dims[2] = 0; }
MUTATION(k_batch_mismatch) { (void)x; a->k.dims[0] = 1; }
MUTATION(v_batch_mismatch) { (void)x; a->v.dims[0] = 1; }
MUTATION(out_batch_mismatch) { (void)x; a->out.dims[0] = 1; }
MUTATION(k_dim_mismatch) { (void)x; a->k.dims[3] = D - 1; }
MUTATION(v_seq_mismatch) { (void)x; a->v.dims[2] = SK - 1; }
MUTATION(v_heads_mismatch) { (void)x; a->v.dims[1] = 1; }
MUTATION(out_heads_mismatch) { (void)x; a->out.dims[1] = HQ / 2; }
MUTATION(out_seq_mismatch) { (void)x; a->out.dims[2] = SQ - 1; }
MUTATION(out_dim_mismatch) { (void)x; a->out.dims[3] = DV - 1; }
MUTATION(heads_not_divisible)
{
    (void)x;                       /* Hkv = 3 does not divide Hq = 4; stride 0 keeps it in bounds */
    a->k.dims[1] = a->v.dims[1] = 3;
    a->k.strides[1] = a->v.strides[1] = 0;
}
MUTATION(lse_dim_two) { a->lse.buffer = x->lse_big; a->lse.dims[3] = 2; }
MUTATION(lse_seq_short) { (void)x; a->lse.dims[2] = SQ - 1; }
MUTATION(lse_heads_short) { (void)x; a->lse.dims[1] = HQ / 2; }
MUTATION(lse_f16) { (void)x; a->lse.dtype = CLATTN_F16; }
MUTATION(lse_dtype_7) { (void)x; a->lse.dtype = (clattn_dtype)7; }
MUTATION(k_inner_stride_0) { (void)x; a->k.strides[3] = 0; }
MUTATION(q_inner_stride_2)
{
    (void)x;                       /* stride 2 over half the head dim: stays in bounds */
    a->q.dims[3] = a->k.dims[3] = D / 2;
    a->q.strides[3] = 2;
}
MUTATION(out_inner_stride_0) { (void)x; a->out.strides[3] = 0; }
MUTATION(v_negative_stride)
{
    (void)x;                       /* rows run backwards from the last one: in bounds */
    a->v.strides[2] = -DV;
    a->v.offset = (SK - 1) * DV * sizeof(float);
}
MUTATION(out_negative_stride)
{
    (void)x;
    a->out.strides[1] = -SQ * DV;
    a->out.offset = (HQ - 1) * SQ * DV * sizeof(float);
}
MUTATION(q_offset_misaligned)
{
    (void)x;                       /* broadcast over the batch so the view fits */
    a->q.strides[0] = 0;
    a->q.offset = 2;
}
MUTATION(out_offset_misaligned) { a->out.buffer = x->out_big; a->out.offset = 1; }
MUTATION(lse_offset_misaligned) { a->lse.buffer = x->lse_big; a->lse.offset = 6; }
MUTATION(k_past_end) { (void)x; a->k.offset = sizeof(float); }
MUTATION(v_short_buffer) { a->v.buffer = x->short_v; }
MUTATION(out_past_end) { (void)x; a->out.offset = sizeof(float); }
MUTATION(lse_past_end) { (void)x; a->lse.offset = sizeof(float); }
MUTATION(q_offset_huge) { (void)x; a->q.offset = (size_t)1 << 40; }
MUTATION(q_seq_one_more) { (void)x; a->q.dims[2] = a->out.dims[2] = a->lse.dims[2] = SQ + 1; }
MUTATION(q_stride_huge) { (void)x; a->q.strides[0] = INT64_MAX / 2; }
MUTATION(seq_huge)
{
    (void)x;
    a->q.dims[2] = a->out.dims[2] = a->lse.dims[2] = (int64_t)1 << 40;
}
MUTATION(seq_overflowing)
{
    (void)x;                       /* dims * strides overflow int64 */
    a->k.dims[2] = a->v.dims[2] = (int64_t)1 << 62;
}
MUTATION(out_rows_overlap) { (void)x; a->out.strides[2] = DV - 1; }
MUTATION(out_heads_overlap) { (void)x; a->out.strides[1] = 0; }
MUTATION(out_batches_overlap) { (void)x; a->out.strides[0] = a->out.strides[1]; }
MUTATION(lse_rows_overlap) { (void)x; a->lse.strides[2] = 0; }
/* sinks [1, HQ, 1, 1] in `buffer`, of dtype t and with last dim `last` (1 is right). */
static void point_sinks(tc_args *a, cl_mem buffer, clattn_dtype t, int64_t last)
{
    static clattn_tensor sinks;
    sinks = clattn_tensor_bhsd(buffer, t, 1, HQ, 1, last);
    a->desc.sinks = &sinks;
}
MUTATION(sinks_f16) { (void)x; point_sinks(a, a->k.buffer, CLATTN_F16, 1); }
MUTATION(sinks_two_per_head) { (void)x; point_sinks(a, a->k.buffer, CLATTN_F32, 2); }
MUTATION(sinks_in_out) { (void)x; point_sinks(a, a->out.buffer, CLATTN_F32, 1); }
MUTATION(sinks_write_only) { point_sinks(a, x->wo_k, CLATTN_F32, 1); }
MUTATION(out_is_q) { (void)x; a->out.buffer = a->q.buffer; }
MUTATION(out_is_sub_buffer_of_q) { a->out.buffer = x->q_sub; }
MUTATION(lse_in_q) { (void)x; a->lse.buffer = a->q.buffer; a->lse.offset = 64; }
MUTATION(lse_in_k) { (void)x; a->lse.buffer = a->k.buffer; }
MUTATION(lse_overlaps_out)
{
    a->out.buffer = a->lse.buffer = x->out_big;
    a->lse.offset = x->run->out.bytes - 2 * sizeof(float);   /* meets out's last two elements */
}
MUTATION(q_dtype_7) { (void)x; a->q.dtype = (clattn_dtype)7; }
MUTATION(out_dtype_7) { (void)x; a->out.dtype = (clattn_dtype)7; }
MUTATION(k_dtype_differs) { (void)x; a->k.dtype = CLATTN_F16; }
MUTATION(struct_size_zero) { (void)x; a->desc.struct_size = 0; }
MUTATION(struct_size_huge) { (void)x; a->desc.struct_size = SIZE_MAX; }
MUTATION(struct_size_unknown) { (void)x; a->desc.struct_size = sizeof a->desc + 4096; }
MUTATION(wait_list_null) { (void)x; a->num_wait = 2; a->wait_list = NULL; }
MUTATION(out_read_only) { a->out.buffer = x->ro_out; }
MUTATION(lse_read_only) { a->lse.buffer = x->ro_lse; }
MUTATION(k_write_only) { a->k.buffer = x->wo_k; }
MUTATION(q_foreign_context) { a->q.buffer = x->foreign; }
MUTATION(out_foreign_context) { a->out.buffer = x->foreign; }

#define INVALID CLATTN_ERROR_INVALID_ARGUMENT
#define TOO_SMALL CLATTN_ERROR_BUFFER_TOO_SMALL

/* Each row: what differs from the valid call (desc fields of the row, or .mutate) and the
   answer it must get. */
static const test_case forward_cases[] = {
    {"ctx NULL", .mutate = ctx_null, TC_REJECT(INVALID, "ctx")},
    {"desc NULL", .mutate = desc_null, TC_REJECT(INVALID, "desc")},
    {"q NULL", .mutate = q_null, TC_REJECT(INVALID, "q")},
    {"k NULL", .mutate = k_null, TC_REJECT(INVALID, "k")},
    {"v NULL", .mutate = v_null, TC_REJECT(INVALID, "v")},
    {"out NULL", .mutate = out_null, TC_REJECT(INVALID, "out")},
    {"q.buffer NULL", .mutate = q_buffer_null, TC_REJECT(INVALID, "q")},
    {"k.buffer NULL", .mutate = k_buffer_null, TC_REJECT(INVALID, "k")},
    {"out.buffer NULL", .mutate = out_buffer_null, TC_REJECT(INVALID, "out")},
    {"lse.buffer NULL", .mutate = lse_buffer_null, TC_REJECT(INVALID, "lse")},
    {"q.dims[0] = 0", .mutate = q_batch_zero, TC_REJECT(INVALID, "q.dims[0]")},
    {"q.dims[2] = -3", .mutate = q_seq_negative, TC_REJECT(INVALID, "q.dims[2]")},
    {"q.dims[3] = 0", .mutate = q_dim_zero, TC_REJECT(INVALID, "q.dims[3]")},
    {"k.dims[1] = 0", .mutate = k_heads_zero, TC_REJECT(INVALID, "k.dims[1]")},
    {"k.dims[2] = 0", .mutate = k_seq_zero, TC_REJECT(INVALID, "k.dims[2]")},
    {"v.dims[3] = -1", .mutate = v_dim_negative, TC_REJECT(INVALID, "v.dims[3]")},
    {"out.dims[2] = 0", .mutate = out_seq_zero, TC_REJECT(INVALID, "out.dims[2]")},
    {"k batch != q batch", .mutate = k_batch_mismatch, TC_REJECT(INVALID, "k.dims[0]")},
    {"v batch != q batch", .mutate = v_batch_mismatch, TC_REJECT(INVALID, "v.dims[0]")},
    {"out batch != q batch", .mutate = out_batch_mismatch, TC_REJECT(INVALID, "out.dims[0]")},
    {"k head dim != q head dim", .mutate = k_dim_mismatch, TC_REJECT(INVALID, "k.dims[3]")},
    {"v seq != k seq", .mutate = v_seq_mismatch, TC_REJECT(INVALID, "v.dims[2]")},
    {"v heads != k heads", .mutate = v_heads_mismatch, TC_REJECT(INVALID, "v.dims[1]")},
    {"out heads != q heads", .mutate = out_heads_mismatch, TC_REJECT(INVALID, "out.dims[1]")},
    {"out seq != q seq", .mutate = out_seq_mismatch, TC_REJECT(INVALID, "out.dims[2]")},
    {"out dim != v dim", .mutate = out_dim_mismatch, TC_REJECT(INVALID, "out.dims[3]")},
    {"Hq % Hkv != 0", .mutate = heads_not_divisible, TC_REJECT(INVALID, "k.dims[1]")},
    {"lse.dims[3] = 2", .mutate = lse_dim_two, TC_REJECT(INVALID, "lse")},
    {"lse seq != q seq", .mutate = lse_seq_short, TC_REJECT(INVALID, "lse")},
    {"lse heads != q heads", .mutate = lse_heads_short, TC_REJECT(INVALID, "lse")},
    {"lse f16", .mutate = lse_f16, TC_REJECT(INVALID, "lse")},
    {"lse dtype 7", .mutate = lse_dtype_7, TC_REJECT(INVALID, "lse")},
    {"k.strides[3] = 0", .mutate = k_inner_stride_0, TC_REJECT(INVALID, "k.strides[3]")},
    {"q.strides[3] = 2", .mutate = q_inner_stride_2, TC_REJECT(INVALID, "q.strides[3]")},
    {"out.strides[3] = 0", .mutate = out_inner_stride_0, TC_REJECT(INVALID, "out")},
    {"v.strides[2] < 0", .mutate = v_negative_stride, TC_REJECT(INVALID, "v.strides[2]")},
    {"out.strides[1] < 0", .mutate = out_negative_stride, TC_REJECT(INVALID, "out.strides[1]")},
    {"q.offset = 2", .mutate = q_offset_misaligned, TC_REJECT(INVALID, "q.offset")},
    {"out.offset = 1", .mutate = out_offset_misaligned, TC_REJECT(INVALID, "out.offset")},
    {"lse.offset = 6", .mutate = lse_offset_misaligned, TC_REJECT(INVALID, "lse")},
    {"k one element past its buffer", .mutate = k_past_end, TC_REJECT(TOO_SMALL, "k")},
    {"v buffer one element short", .mutate = v_short_buffer, TC_REJECT(TOO_SMALL, "v")},
    {"out one element past its buffer", .mutate = out_past_end, TC_REJECT(TOO_SMALL, "out")},
    {"lse one element past its buffer", .mutate = lse_past_end, TC_REJECT(TOO_SMALL, "lse")},
    {"q.offset = 2^40", .mutate = q_offset_huge, TC_REJECT(TOO_SMALL, "q")},
    {"q, out, lse one row more", .mutate = q_seq_one_more, TC_REJECT(TOO_SMALL, NULL)},
    {"q.strides[0] = INT64_MAX/2", .mutate = q_stride_huge,
     TC_REJECT(TOO_SMALL, "q", .also = INVALID)},
    {"Sq = 2^40", .mutate = seq_huge, TC_REJECT(TOO_SMALL, NULL, .also = INVALID)},
    {"Sk = 2^62 (size overflows)", .mutate = seq_overflowing,
     TC_REJECT(TOO_SMALL, NULL, .also = INVALID)},
    {"out rows overlap", .mutate = out_rows_overlap, TC_REJECT(INVALID, "out")},
    {"out heads overlap (stride 0)", .mutate = out_heads_overlap, TC_REJECT(INVALID, "out")},
    {"out batches overlap heads", .mutate = out_batches_overlap, TC_REJECT(INVALID, "out")},
    {"lse rows overlap (stride 0)", .mutate = lse_rows_overlap, TC_REJECT(INVALID, "lse")},
    {"out aliases q", .mutate = out_is_q, TC_REJECT(INVALID, "alias")},
    {"out is a sub-buffer of q", .mutate = out_is_sub_buffer_of_q, TC_REJECT(INVALID, "alias")},
    {"lse inside q", .mutate = lse_in_q, TC_REJECT(INVALID, "alias")},
    {"lse inside k", .mutate = lse_in_k, TC_REJECT(INVALID, "alias")},
    {"lse overlaps out", .mutate = lse_overlaps_out, TC_REJECT(INVALID, "alias")},
    {"q.dtype 7", .mutate = q_dtype_7, TC_REJECT(INVALID, "q.dtype")},
    {"out.dtype 7", .mutate = out_dtype_7, TC_REJECT(INVALID, "out")},
    {"k.dtype != q.dtype", .mutate = k_dtype_differs, TC_REJECT(INVALID, "dtype")},
    {"align 5", .align = (clattn_mask_align)5, TC_REJECT(INVALID, "desc->align")},
    {"align -1", .align = (clattn_mask_align)-1, TC_REJECT(INVALID, "desc->align")},
    {"algo 9", .algo = (clattn_algo)9, TC_REJECT(INVALID, "desc->algo")},
    {"causal 2", .causal = 2, TC_REJECT(INVALID, "desc->causal")},
    {"causal -1", .causal = -1, TC_REJECT(INVALID, "desc->causal")},
    {"window_left -2", .window = TC_WIN(-2, -1), TC_REJECT(INVALID, "desc->window_left")},
    {"window_right -5", .window = TC_WIN(-1, -5), TC_REJECT(INVALID, "desc->window_right")},
    {"softcap -1", .softcap = -1.0f, TC_REJECT(INVALID, "desc->softcap")},
    {"softcap NaN", .softcap = NAN, TC_REJECT(INVALID, "desc->softcap")},
    {"scale NaN", .scale = NAN, TC_REJECT(INVALID, "desc->scale")},
    {"scale +Inf", .scale = INFINITY, TC_REJECT(INVALID, "desc->scale")},
    {"scale -Inf", .scale = -INFINITY, TC_REJECT(INVALID, "desc->scale")},
    {"dropout_p 1", .dropout_p = 1.0f, TC_REJECT(INVALID, "desc->dropout_p")},
    {"dropout_p -0.1", .dropout_p = -0.1f, TC_REJECT(INVALID, "desc->dropout_p")},
    {"dropout_p NaN", .dropout_p = NAN, TC_REJECT(INVALID, "desc->dropout_p")},
    {"sinks f16", .mutate = sinks_f16, TC_REJECT(INVALID, "sinks.dtype")},
    {"sinks [1, Hq, 1, 2]", .mutate = sinks_two_per_head, TC_REJECT(INVALID, "sinks dims")},
    {"sinks inside out", .mutate = sinks_in_out, TC_REJECT(INVALID, "alias")},
    {"sinks WRITE_ONLY", .mutate = sinks_write_only, TC_REJECT(INVALID, "sinks")},
    {"q_start -1", .q_start = -1, TC_REJECT(INVALID, "desc->q_start")},
    {"q_start 2^40 + 1", .q_start = (1ll << 40) + 1, TC_REJECT(INVALID, "desc->q_start")},
    {"k_start -5", .k_start = -5, TC_REJECT(INVALID, "desc->k_start")},
    {"k_start INT64_MAX", .k_start = INT64_MAX, TC_REJECT(INVALID, "desc->k_start")},
    {"struct_size 0", .mutate = struct_size_zero, TC_REJECT(INVALID, "desc->struct_size")},
    {"struct_size SIZE_MAX", .mutate = struct_size_huge, TC_REJECT(INVALID, "desc->struct_size")},
    {"struct_size sizeof + 4096", .mutate = struct_size_unknown,
     TC_REJECT(INVALID, "desc->struct_size")},
    {"num_wait 2, wait_list NULL", .mutate = wait_list_null, TC_REJECT(INVALID, "wait_list")},
    {"out READ_ONLY", .mutate = out_read_only, TC_REJECT(INVALID, "out")},
    {"lse READ_ONLY", .mutate = lse_read_only, TC_REJECT(INVALID, "lse")},
    {"k WRITE_ONLY", .mutate = k_write_only, TC_REJECT(INVALID, "k")},
    {"q from another cl_context", .mutate = q_foreign_context, TC_REJECT(INVALID, "q")},
    {"out from another cl_context", .mutate = out_foreign_context, TC_REJECT(INVALID, "out")},
};


Test(bad_input, forward_table)
{
    fixture f;
    test_ctx();
    fixture_init(&f);
    reset_outputs(&f);
    /* the fixture itself is valid */
    expect_context_usable(&f, "the valid call");
    reset_outputs(&f);
    size_t n = sizeof forward_cases / sizeof forward_cases[0];
    for (size_t i = 0; i < n; i++) {
        const test_case *c = &forward_cases[i];
        tc_args a;
        args_of(&a, c, &f);
        cl_event ev = (cl_event)&ev;   /* not NULL: a failing call must clear it */
        clattn_status st = tc_call_forward(&a, &ev);
        expect_rejected(&f, c, c->name, st, ev);
    }
    cr_log_info("forward_table: %zu bad calls checked", n);
    fixture_free(&f);
}

Test(bad_input, last_error_is_empty_after_success)
{
    fixture f;
    test_ctx();
    fixture_init(&f);
    tc_args a;
    tc_args_init(&a, &f.run);
    a.desc.causal = 7;
    cl_event ev = NULL;
    cr_assert_eq(tc_call_forward(&a, &ev), CLATTN_ERROR_INVALID_ARGUMENT);
    cr_assert_str_not_empty(clattn_last_error());
    TEST_CHECK_STATUS(tc_forward(&f.run, 0, NULL, NULL), "valid call");
    cr_assert_str_empty(clattn_last_error(), "after a success: \"%s\"", clattn_last_error());
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    fixture_free(&f);
}

/* ---- backward and merge: pointers and n -------------------------------------------------- */

/* The backward's pointers, each NULL in turn (the changes of the forward table, and these). */
MUTATION(dout_null) { (void)x; a->doutp = NULL; }
MUTATION(lse_null) { (void)x; a->lsep = NULL; }
MUTATION(dq_null) { (void)x; a->dqp = NULL; }
MUTATION(dk_null) { (void)x; a->dkp = NULL; }
MUTATION(dv_null) { (void)x; a->dvp = NULL; }
MUTATION(one_wait_list_null) { (void)x; a->num_wait = 1; a->wait_list = NULL; }

static const test_case backward_cases[] = {
    {"backward with ctx NULL", .mutate = ctx_null, TC_REJECT(INVALID, "ctx")},
    {"backward with desc NULL", .mutate = desc_null, TC_REJECT(INVALID, "desc")},
    {"backward with q NULL", .mutate = q_null, TC_REJECT(INVALID, "q")},
    {"backward with k NULL", .mutate = k_null, TC_REJECT(INVALID, "k")},
    {"backward with v NULL", .mutate = v_null, TC_REJECT(INVALID, "v")},
    {"backward with out NULL", .mutate = out_null, TC_REJECT(INVALID, "out")},
    {"backward with dout NULL", .mutate = dout_null, TC_REJECT(INVALID, "dout")},
    {"backward with lse NULL", .mutate = lse_null, TC_REJECT(INVALID, "lse")},
    {"backward with dq NULL", .mutate = dq_null, TC_REJECT(INVALID, "dq")},
    {"backward with dk NULL", .mutate = dk_null, TC_REJECT(INVALID, "dk")},
    {"backward with dv NULL", .mutate = dv_null, TC_REJECT(INVALID, "dv")},
    {"backward num_wait 1, wait_list NULL", .mutate = one_wait_list_null,
     TC_REJECT(INVALID, "wait_list")},
};

Test(bad_input, backward_pointers)
{
    fixture f;
    test_ctx();
    fixture_init(&f);
    const tc_run *r = &f.run;
    for (size_t i = 0; i < sizeof backward_cases / sizeof backward_cases[0]; i++) {
        const test_case *c = &backward_cases[i];
        tc_args a;
        args_of(&a, c, &f);
        cl_event ev = (cl_event)&ev;
        clattn_status st = tc_call_backward(&a, &ev);
        expect_rejected(&f, c, c->name, st, ev);
        size_t first;
        cr_expect(buf_canary_intact(r->dq.view.buffer, &first) &&
                  buf_canary_intact(r->dk.view.buffer, &first) &&
                  buf_canary_intact(r->dv.view.buffer, &first), "%s: a gradient was written",
                  c->name);
    }
    /* all valid, with out and lse from the forward: succeeds, returns an event, clears the
       last error and writes the reference's gradients */
    TEST_CHECK_STATUS(tc_forward(&f.run, 0, NULL, NULL), "the forward before the valid backward");
    cl_event ev = NULL;
    clattn_status st = tc_backward(&f.run, 0, NULL, &ev);
    cr_log_info("backward with valid arguments: %s: %s", clattn_status_string(st),
                clattn_last_error());
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "backward with valid arguments: %s (%s)",
                 clattn_status_string(st), clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "after a success: \"%s\"", clattn_last_error());
    test_wait_event(ev, "backward with valid arguments");
    tc_grad_result g;
    tc_check_backward(&f.run, "backward with valid arguments", &g);
    char buf[3][200];
    cr_log_info("backward with valid arguments: dq %s; dk %s; dv %s",
                cmp_describe(&g.dq, buf[0], sizeof buf[0]),
                cmp_describe(&g.dk, buf[1], sizeof buf[1]),
                cmp_describe(&g.dv, buf[2], sizeof buf[2]));
    fixture_free(&f);
}

/* Dims whose product overflows int64 made the constructors' strides wrap (signed overflow); they
   now saturate, and a call with such a view is refused (no view that large fits a buffer). */
Test(bad_input, tensor_constructors_saturate_overflowing_strides)
{
    const int64_t big = (int64_t)1 << 40;
    const clattn_tensor t = clattn_tensor_bhsd(NULL, CLATTN_F32, 1, big, big, big);
    cr_expect_eq(t.strides[0], INT64_MAX, "batch stride %lld", (long long)t.strides[0]);
    cr_expect_eq(t.strides[1], INT64_MAX, "head stride %lld", (long long)t.strides[1]);
    cr_expect_eq(t.strides[2], big);
    const clattn_tensor s = clattn_tensor_bshd(NULL, CLATTN_F32, 1, big, big, big);
    cr_expect_eq(s.strides[0], INT64_MAX, "batch stride %lld", (long long)s.strides[0]);
    cr_expect_eq(s.strides[2], INT64_MAX, "seq stride %lld", (long long)s.strides[2]);

    fixture f;
    test_ctx();
    fixture_init(&f);
    clattn_tensor q = clattn_tensor_bhsd(f.run.q.view.buffer, CLATTN_F32, 1, big, big, big);
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    const clattn_status st = clattn_attention_forward(test_ctx(), &desc, &q, &f.run.k.view,
                                                      &f.run.v.view, &f.run.out.view, NULL, 0,
                                                      NULL, NULL);
    cr_expect(st == CLATTN_ERROR_INVALID_ARGUMENT || st == CLATTN_ERROR_BUFFER_TOO_SMALL,
              "%s: %s", clattn_status_string(st), clattn_last_error());
    cr_expect(test_message_names(clattn_last_error(), "q:|q."), "%s", clattn_last_error());
    fixture_free(&f);
}

Test(bad_input, merge_pointers_and_n)
{
    fixture f;
    test_ctx();
    fixture_init(&f);
    /* two partial results shaped like out and lse */
    int64_t od[4] = {B, HQ, SQ, DV}, ld[4] = {B, HQ, SQ, 1};
    test_tensor po[2], pl[2];
    clattn_tensor outs[2], lses[2];
    test_rng rng;
    rng_seed(&rng, 99);
    for (int p = 0; p < 2; p++) {
        tt_init(&po[p], CLATTN_F32, od, &LAYOUT_BHSD);
        tt_init(&pl[p], CLATTN_F32, ld, &LAYOUT_BHSD);
        tt_fill_random(&po[p], &rng, -1, 1);
        tt_fill_random(&pl[p], &rng, -1, 1);
        tt_upload(&po[p], CL_MEM_READ_ONLY);
        tt_upload(&pl[p], CL_MEM_READ_ONLY);
        outs[p] = po[p].view;
        lses[p] = pl[p].view;
    }
    reset_outputs(&f);
    clattn_context *ctx = test_ctx();
    struct {
        const char *name;
        clattn_context *ctx;
        size_t n;
        const clattn_tensor *outs, *lses, *out;
        cl_uint num_wait;
        const char *substring;
    } cases[] = {
        {"merge ctx NULL", NULL, 2, outs, lses, &f.run.out.view, 0, "ctx"},
        {"merge n 0", ctx, 0, outs, lses, &f.run.out.view, 0, NULL},
        {"merge outs NULL", ctx, 2, NULL, lses, &f.run.out.view, 0, NULL},
        {"merge lses NULL", ctx, 2, outs, NULL, &f.run.out.view, 0, NULL},
        {"merge out NULL", ctx, 2, outs, lses, NULL, 0, "out"},
        {"merge num_wait 1, wait_list NULL", ctx, 2, outs, lses, &f.run.out.view, 1, "wait_list"},
        /* 2 * n wrapped to 4 elements, and the part names were written past them */
        {"merge n 2^63 + 2", ctx, ((size_t)1 << 63) + 2, outs, lses, &f.run.out.view, 0, "n="},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cl_event ev = (cl_event)&ev;
        clattn_status st = clattn_attention_merge(cases[i].ctx, cases[i].n, cases[i].outs,
                                                  cases[i].lses, cases[i].out, &f.run.lse.view,
                                                  cases[i].num_wait, NULL, &ev);
        const test_case want = {cases[i].name, TC_REJECT(INVALID, cases[i].substring)};
        expect_rejected(&f, &want, cases[i].name, st, ev);
    }
    cl_event ev = NULL;
    clattn_status st = clattn_attention_merge(ctx, 2, outs, lses, &f.run.out.view,
                                              &f.run.lse.view, 0, NULL, &ev);
    cr_log_info("merge with valid arguments: %s: %s", clattn_status_string(st),
                clattn_last_error());
    cr_expect(st == CLATTN_SUCCESS || st == CLATTN_ERROR_UNSUPPORTED,
              "merge with valid arguments: %s (%s)", clattn_status_string(st),
              clattn_last_error());
    if (ev) {
        clWaitForEvents(1, &ev);
        clReleaseEvent(ev);
    }
    for (int p = 0; p < 2; p++) {
        tt_free(&po[p]);
        tt_free(&pl[p]);
    }
    fixture_free(&f);
}

/* ---- the other side of the rules: what must still be accepted ---------------------------- */

Test(bad_input, touching_outputs_and_overlapping_inputs_are_valid)
{
    /* out and lse back to back in one buffer (their byte ranges touch, they do not meet), and
       v a view into k's buffer (inputs may overlap): a valid call that matches the reference. */
    fixture f;
    test_ctx();
    fixture_init(&f);
    reset_outputs(&f);
    tc_args a;
    tc_args_init(&a, &f.run);
    a.out.buffer = a.lse.buffer = f.spares.out_big;
    a.lse.offset = f.run.out.bytes;
    a.v = a.k;
    a.v.dims[3] = DV;   /* the first DV of each k row; k's strides */
    cl_event ev = NULL;
    clattn_status st = tc_call_forward(&a, &ev);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s", clattn_status_string(st), clattn_last_error());
    cr_assert_str_empty(clattn_last_error());
    cr_assert_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);

    /* reference with v = k[..., :DV] */
    ref_params p;
    ref_params_init(&p);
    double *qs, *ks, *ref_out = malloc(sizeof(double) * B * HQ * SQ * DV);
    double *ref_lse = malloc(sizeof(double) * B * HQ * SQ);
    cr_assert(ref_out && ref_lse);
    ref_tensor q = tt_to_ref(&f.run.q, &qs), k = tt_to_ref(&f.run.k, &ks), v = k;
    v.dims[3] = DV;
    ref_tensor ro = ref_tensor_dense(ref_out, B, HQ, SQ, DV);
    ref_tensor rl = ref_tensor_dense(ref_lse, B, HQ, SQ, 1);
    cr_assert_eq(ref_attention_forward(&p, &q, &k, &v, &ro, &rl), 0);

    /* read both views back out of the shared buffer */
    test_tensor got_out = f.run.out, got_lse = f.run.lse;   /* same views, other host copies */
    unsigned char *all = malloc(f.run.out.bytes + f.run.lse.bytes + 64);
    cr_assert_not_null(all);
    buf_read(f.spares.out_big, f.run.out.bytes + f.run.lse.bytes + 64, all);
    got_out.host = all;
    got_lse.host = all + f.run.out.bytes;
    char buf[200];
    cmp_result r = compare_out(&got_out, &ro);
    cr_log_info("out %s", cmp_describe(&r, buf, sizeof buf));
    cr_expect(r.worst <= TOL_F32_OUT, "out %s", buf);
    r = compare_lse(&got_lse, &rl);
    cr_log_info("lse %s", cmp_describe(&r, buf, sizeof buf));
    cr_expect(r.worst <= TOL_F32_LSE, "lse %s", buf);
    size_t tail = f.run.out.bytes + f.run.lse.bytes;
    for (size_t i = tail; i < tail + 64; i++)
        cr_expect_eq(all[i], canary_byte(i), "byte %zu after lse changed", i);
    free(all);
    free(qs);
    free(ks);
    free(ref_out);
    free(ref_lse);
    fixture_free(&f);
}
