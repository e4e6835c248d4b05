/* Bad input, table-driven: each case changes one thing in a valid forward call and states the
   status it must get and a substring its message must contain. After every rejected call:
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

/* Buffers every case may use. The byte snapshots say what each must still hold. */
typedef struct fixture {
    test_tensor q, k, v, out, lse;
    cl_mem out_big;      /* room for out, lse and 64 bytes: misaligned offsets, aliasing */
    cl_mem lse_big;      /* room for lse plus 64 bytes */
    cl_mem q_sub;        /* sub-buffer of q's buffer at origin 0, out-sized */
    cl_mem ro_out;       /* CL_MEM_READ_ONLY, out-sized */
    cl_mem ro_lse;       /* CL_MEM_READ_ONLY, lse-sized */
    cl_mem wo_k;         /* CL_MEM_WRITE_ONLY, k-sized */
    cl_mem short_v;      /* one element smaller than v needs */
    cl_context foreign_ctx;
    cl_mem foreign;      /* from foreign_ctx, big enough for q and out */
    double *ref_out_data, *ref_lse_data;
    ref_tensor ref_out, ref_lse;
} fixture;

/* One forward call's arguments; the pointers point into the struct until a case clears one. */
typedef struct call {
    clattn_context *ctx;
    clattn_attention_desc desc;
    clattn_tensor q, k, v, out, lse;
    const clattn_attention_desc *descp;
    const clattn_tensor *qp, *kp, *vp, *outp, *lsep;
    cl_uint num_wait;
    const cl_event *wait_list;
} call;

static void call_init(call *a, const fixture *f)
{
    memset(a, 0, sizeof *a);
    a->ctx = test_ctx();
    clattn_attention_desc_init(&a->desc);
    a->q = f->q.view;
    a->k = f->k.view;
    a->v = f->v.view;
    a->out = f->out.view;
    a->lse = f->lse.view;
    a->descp = &a->desc;
    a->qp = &a->q;
    a->kp = &a->k;
    a->vp = &a->v;
    a->outp = &a->out;
    a->lsep = &a->lse;
}

static clattn_status call_run(const call *a, cl_event *event)
{
    return clattn_attention_forward(a->ctx, a->descp, a->qp, a->kp, a->vp, a->outp, a->lsep,
                                    a->num_wait, a->wait_list, event);
}

/* ---- the fixture ------------------------------------------------------------------------- */

static cl_device_id test_device(void)
{
    cl_device_id dev;
    cr_assert_eq(clGetCommandQueueInfo(test_queue(), CL_QUEUE_DEVICE, sizeof dev, &dev, NULL),
                 CL_SUCCESS);
    return dev;
}

static void fixture_reference(fixture *f)
{
    ref_params p;
    ref_params_init(&p);
    double *qs, *ks, *vs;
    ref_tensor q = tt_to_ref(&f->q, &qs), k = tt_to_ref(&f->k, &ks), v = tt_to_ref(&f->v, &vs);
    f->ref_out_data = malloc(sizeof(double) * B * HQ * SQ * DV);
    f->ref_lse_data = malloc(sizeof(double) * B * HQ * SQ);
    cr_assert(f->ref_out_data && f->ref_lse_data);
    f->ref_out = ref_tensor_dense(f->ref_out_data, B, HQ, SQ, DV);
    f->ref_lse = ref_tensor_dense(f->ref_lse_data, B, HQ, SQ, 1);
    cr_assert_eq(ref_attention_forward(&p, &q, &k, &v, &f->ref_out, &f->ref_lse), 0);
    free(qs);
    free(ks);
    free(vs);
}

static void fixture_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    int64_t qd[4] = {B, HQ, SQ, D}, kd[4] = {B, HKV, SK, D}, vd[4] = {B, HKV, SK, DV};
    int64_t od[4] = {B, HQ, SQ, DV}, ld[4] = {B, HQ, SQ, 1};
    tt_init(&f->q, CLATTN_F32, qd, &LAYOUT_BHSD);
    tt_init(&f->k, CLATTN_F32, kd, &LAYOUT_BHSD);
    tt_init(&f->v, CLATTN_F32, vd, &LAYOUT_BHSD);
    tt_init(&f->out, CLATTN_F32, od, &LAYOUT_BHSD);
    tt_init(&f->lse, CLATTN_F32, ld, &LAYOUT_BHSD);
    test_rng rng;
    rng_seed(&rng, 2024);
    tt_fill_random(&f->q, &rng, -1, 1);
    tt_fill_random(&f->k, &rng, -1, 1);
    tt_fill_random(&f->v, &rng, -1, 1);
    /* read-write, so that an output pointed into them is wrong only by aliasing */
    tt_upload(&f->q, CL_MEM_READ_WRITE);
    tt_upload(&f->k, CL_MEM_READ_WRITE);
    tt_upload(&f->v, CL_MEM_READ_WRITE);
    tt_upload(&f->out, CL_MEM_READ_WRITE);
    tt_upload(&f->lse, CL_MEM_READ_WRITE);

    f->out_big = buf_new(CL_MEM_READ_WRITE, f->out.bytes + f->lse.bytes + 64, NULL);
    f->lse_big = buf_new(CL_MEM_READ_WRITE, f->lse.bytes + 64, NULL);
    f->ro_out = buf_new(CL_MEM_READ_ONLY, f->out.bytes, NULL);
    f->ro_lse = buf_new(CL_MEM_READ_ONLY, f->lse.bytes, NULL);
    f->wo_k = buf_new(CL_MEM_WRITE_ONLY, f->k.bytes, f->k.host);
    f->short_v = buf_new(CL_MEM_READ_ONLY, f->v.bytes - 4, f->v.host);

    cl_int err;
    cl_buffer_region region = {0, f->out.bytes};
    f->q_sub = clCreateSubBuffer(f->q.view.buffer, CL_MEM_READ_WRITE,
                                 CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateSubBuffer: %d", err);

    cl_device_id dev = test_device();
    f->foreign_ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateContext: %d", err);
    size_t fbytes = f->q.bytes > f->out.bytes ? f->q.bytes : f->out.bytes;
    f->foreign = clCreateBuffer(f->foreign_ctx, CL_MEM_READ_WRITE, fbytes, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateBuffer (foreign context): %d", err);
    fixture_reference(f);
}

static void fixture_free(fixture *f)
{
    tt_free(&f->q);
    tt_free(&f->k);
    tt_free(&f->v);
    tt_free(&f->out);
    tt_free(&f->lse);
    cl_mem extra[] = {f->out_big, f->lse_big, f->q_sub, f->ro_out, f->ro_lse, f->wo_k,
                      f->short_v, f->foreign};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        clReleaseMemObject(extra[i]);
    clReleaseContext(f->foreign_ctx);
    free(f->ref_out_data);
    free(f->ref_lse_data);
}

/* Put the canary back into every buffer an output may point at. */
static void reset_outputs(fixture *f)
{
    buf_fill_canary(f->out.view.buffer);
    buf_fill_canary(f->lse.view.buffer);
    buf_fill_canary(f->out_big);
    buf_fill_canary(f->lse_big);
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
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    expect_bytes(f->q.view.buffer, f->q.host, f->q.bytes, "q", label);
    expect_bytes(f->k.view.buffer, f->k.host, f->k.bytes, "k", label);
    expect_bytes(f->v.view.buffer, f->v.host, f->v.bytes, "v", label);
    expect_bytes(f->wo_k, f->k.host, f->k.bytes, "the write-only k", label);
    expect_bytes(f->short_v, f->v.host, f->v.bytes - 4, "the short v", label);
    const cl_mem canaried[] = {f->out.view.buffer, f->lse.view.buffer, f->out_big, f->lse_big,
                               f->ro_out, f->ro_lse};
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
    call a;
    call_init(&a, f);
    cl_event ev = NULL;
    clattn_status st = call_run(&a, &ev);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: the valid call after it: %s: %s", label,
                 clattn_status_string(st), clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "%s: last error after a success: \"%s\"", label,
                        clattn_last_error());
    cr_assert_not_null(ev);
    cr_assert_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
    tt_download(&f->out);
    tt_download(&f->lse);
    char buf[200];
    cmp_result r = compare_out(&f->out, &f->ref_out);
    cr_expect(r.worst <= TOL_F32_OUT, "%s: the valid call after it: out %s", label,
              cmp_describe(&r, buf, sizeof buf));
    r = compare_lse(&f->lse, &f->ref_lse);
    cr_expect(r.worst <= TOL_F32_LSE, "%s: the valid call after it: lse %s", label,
              cmp_describe(&r, buf, sizeof buf));
}

/* Everything a rejected call must satisfy. want2 < 0: only want is accepted. */
static void expect_rejected(fixture *f, const char *label, clattn_status st, cl_event ev,
                            clattn_status want, int want2, const char *substring)
{
    const char *msg = clattn_last_error();
    cr_log_info("%-44s -> %s: %s", label, clattn_status_string(st), msg);
    cr_expect(st == want || (want2 >= 0 && st == (clattn_status)want2), "%s: got %s (%s), want %s",
              label, clattn_status_string(st), msg, clattn_status_string(want));
    cr_expect(msg && *msg, "%s: empty clattn_last_error()", label);
    if (substring && msg)
        cr_expect(strstr(msg, substring) != NULL, "%s: message \"%s\" does not name \"%s\"",
                  label, msg, substring);
    cr_expect_null(ev, "%s: *event not NULL after a failure", label);
    if (st == CLATTN_SUCCESS && ev) {
        clWaitForEvents(1, &ev);
        clReleaseEvent(ev);
    }
    expect_untouched(f, label);
    expect_context_usable(f, label);
    reset_outputs(f);
}

/* ---- the forward table ------------------------------------------------------------------- */

typedef void (*mutate_fn)(call *a, fixture *f);

typedef struct bad_case {
    const char *name;
    mutate_fn mutate;
    clattn_status want;
    int want2;              /* another accepted status, or -1 */
    const char *substring;  /* the message must contain it; NULL: only non-empty */
} bad_case;

/* One mutation per line: MUTATION(name) { body using a and f } */
#define MUTATION(name) static void name(call *a, fixture *f)

MUTATION(ctx_null) { (void)f; a->ctx = NULL; }
MUTATION(desc_null) { (void)f; a->descp = NULL; }
MUTATION(q_null) { (void)f; a->qp = NULL; }
MUTATION(k_null) { (void)f; a->kp = NULL; }
MUTATION(v_null) { (void)f; a->vp = NULL; }
MUTATION(out_null) { (void)f; a->outp = NULL; }
MUTATION(q_buffer_null) { (void)f; a->q.buffer = NULL; }
MUTATION(k_buffer_null) { (void)f; a->k.buffer = NULL; }
MUTATION(out_buffer_null) { (void)f; a->out.buffer = NULL; }
MUTATION(lse_buffer_null) { (void)f; a->lse.buffer = NULL; }
MUTATION(q_batch_zero) { (void)f; a->q.dims[0] = 0; }
MUTATION(q_seq_negative) { (void)f; a->q.dims[2] = -3; }
MUTATION(q_dim_zero) { (void)f; a->q.dims[3] = 0; }
MUTATION(k_heads_zero) { (void)f; a->k.dims[1] = 0; }
MUTATION(k_seq_zero) { (void)f; a->k.dims[2] = 0; }
MUTATION(v_dim_negative) { (void)f; a->v.dims[3] = -1; }
MUTATION(out_seq_zero) { (void)f; a->out.dims[2] = 0; }
MUTATION(k_batch_mismatch) { (void)f; a->k.dims[0] = 1; }
MUTATION(v_batch_mismatch) { (void)f; a->v.dims[0] = 1; }
MUTATION(out_batch_mismatch) { (void)f; a->out.dims[0] = 1; }
MUTATION(k_dim_mismatch) { (void)f; a->k.dims[3] = D - 1; }
MUTATION(v_seq_mismatch) { (void)f; a->v.dims[2] = SK - 1; }
MUTATION(v_heads_mismatch) { (void)f; a->v.dims[1] = 1; }
MUTATION(out_heads_mismatch) { (void)f; a->out.dims[1] = HQ / 2; }
MUTATION(out_seq_mismatch) { (void)f; a->out.dims[2] = SQ - 1; }
MUTATION(out_dim_mismatch) { (void)f; a->out.dims[3] = DV - 1; }
MUTATION(heads_not_divisible)
{
    (void)f;                       /* Hkv = 3 does not divide Hq = 4; stride 0 keeps it in bounds */
    a->k.dims[1] = a->v.dims[1] = 3;
    a->k.strides[1] = a->v.strides[1] = 0;
}
MUTATION(lse_dim_two) { a->lse.buffer = f->lse_big; a->lse.dims[3] = 2; }
MUTATION(lse_seq_short) { (void)f; a->lse.dims[2] = SQ - 1; }
MUTATION(lse_heads_short) { (void)f; a->lse.dims[1] = HQ / 2; }
MUTATION(lse_f16) { (void)f; a->lse.dtype = CLATTN_F16; }
MUTATION(lse_dtype_7) { (void)f; a->lse.dtype = (clattn_dtype)7; }
MUTATION(k_inner_stride_0) { (void)f; a->k.strides[3] = 0; }
MUTATION(q_inner_stride_2)
{
    (void)f;                       /* stride 2 over half the head dim: stays in bounds */
    a->q.dims[3] = a->k.dims[3] = D / 2;
    a->q.strides[3] = 2;
}
MUTATION(out_inner_stride_0) { (void)f; a->out.strides[3] = 0; }
MUTATION(v_negative_stride)
{
    (void)f;                       /* rows run backwards from the last one: in bounds */
    a->v.strides[2] = -DV;
    a->v.offset = (SK - 1) * DV * sizeof(float);
}
MUTATION(out_negative_stride)
{
    (void)f;
    a->out.strides[1] = -SQ * DV;
    a->out.offset = (HQ - 1) * SQ * DV * sizeof(float);
}
MUTATION(q_offset_misaligned)
{
    (void)f;                       /* broadcast over the batch so the view fits */
    a->q.strides[0] = 0;
    a->q.offset = 2;
}
MUTATION(out_offset_misaligned) { a->out.buffer = f->out_big; a->out.offset = 1; }
MUTATION(lse_offset_misaligned) { a->lse.buffer = f->lse_big; a->lse.offset = 6; }
MUTATION(k_past_end) { (void)f; a->k.offset = sizeof(float); }
MUTATION(v_short_buffer) { a->v.buffer = f->short_v; }
MUTATION(out_past_end) { (void)f; a->out.offset = sizeof(float); }
MUTATION(lse_past_end) { (void)f; a->lse.offset = sizeof(float); }
MUTATION(q_offset_huge) { (void)f; a->q.offset = (size_t)1 << 40; }
MUTATION(q_seq_one_more) { (void)f; a->q.dims[2] = a->out.dims[2] = a->lse.dims[2] = SQ + 1; }
MUTATION(q_stride_huge) { (void)f; a->q.strides[0] = INT64_MAX / 2; }
MUTATION(seq_huge)
{
    (void)f;
    a->q.dims[2] = a->out.dims[2] = a->lse.dims[2] = (int64_t)1 << 40;
}
MUTATION(seq_overflowing)
{
    (void)f;                       /* dims * strides overflow int64 */
    a->k.dims[2] = a->v.dims[2] = (int64_t)1 << 62;
}
MUTATION(out_rows_overlap) { (void)f; a->out.strides[2] = DV - 1; }
MUTATION(out_heads_overlap) { (void)f; a->out.strides[1] = 0; }
MUTATION(out_batches_overlap) { (void)f; a->out.strides[0] = a->out.strides[1]; }
MUTATION(lse_rows_overlap) { (void)f; a->lse.strides[2] = 0; }
MUTATION(out_is_q) { (void)f; a->out.buffer = a->q.buffer; }
MUTATION(out_is_sub_buffer_of_q) { a->out.buffer = f->q_sub; }
MUTATION(lse_in_q) { (void)f; a->lse.buffer = a->q.buffer; a->lse.offset = 64; }
MUTATION(lse_in_k) { (void)f; a->lse.buffer = a->k.buffer; }
MUTATION(lse_overlaps_out)
{
    a->out.buffer = a->lse.buffer = f->out_big;
    a->lse.offset = f->out.bytes - 2 * sizeof(float);   /* meets out's last two elements */
}
MUTATION(q_dtype_7) { (void)f; a->q.dtype = (clattn_dtype)7; }
MUTATION(out_dtype_7) { (void)f; a->out.dtype = (clattn_dtype)7; }
MUTATION(k_dtype_differs) { (void)f; a->k.dtype = CLATTN_F16; }
MUTATION(align_5) { (void)f; a->desc.align = (clattn_mask_align)5; }
MUTATION(align_negative) { (void)f; a->desc.align = (clattn_mask_align)-1; }
MUTATION(algo_9) { (void)f; a->desc.algo = (clattn_algo)9; }
MUTATION(causal_2) { (void)f; a->desc.causal = 2; }
MUTATION(causal_negative) { (void)f; a->desc.causal = -1; }
MUTATION(window_left_minus_2) { (void)f; a->desc.window_left = -2; }
MUTATION(window_right_minus_5) { (void)f; a->desc.window_right = -5; }
MUTATION(softcap_negative) { (void)f; a->desc.softcap = -1.0f; }
MUTATION(softcap_nan) { (void)f; a->desc.softcap = NAN; }
MUTATION(scale_nan) { (void)f; a->desc.scale = NAN; }
MUTATION(scale_inf) { (void)f; a->desc.scale = INFINITY; }
MUTATION(scale_minus_inf) { (void)f; a->desc.scale = -INFINITY; }
MUTATION(dropout_one) { (void)f; a->desc.dropout_p = 1.0f; }
MUTATION(dropout_negative) { (void)f; a->desc.dropout_p = -0.1f; }
MUTATION(dropout_nan) { (void)f; a->desc.dropout_p = NAN; }
MUTATION(struct_size_zero) { (void)f; a->desc.struct_size = 0; }
MUTATION(struct_size_huge) { (void)f; a->desc.struct_size = SIZE_MAX; }
MUTATION(struct_size_unknown) { (void)f; a->desc.struct_size = sizeof a->desc + 4096; }
MUTATION(wait_list_null) { (void)f; a->num_wait = 2; a->wait_list = NULL; }
MUTATION(out_read_only) { a->out.buffer = f->ro_out; }
MUTATION(lse_read_only) { a->lse.buffer = f->ro_lse; }
MUTATION(k_write_only) { a->k.buffer = f->wo_k; }
MUTATION(q_foreign_context) { a->q.buffer = f->foreign; }
MUTATION(out_foreign_context) { a->out.buffer = f->foreign; }

#define INVALID CLATTN_ERROR_INVALID_ARGUMENT
#define TOO_SMALL CLATTN_ERROR_BUFFER_TOO_SMALL

static const bad_case forward_cases[] = {
    {"ctx NULL", ctx_null, INVALID, -1, "ctx"},
    {"desc NULL", desc_null, INVALID, -1, "desc"},
    {"q NULL", q_null, INVALID, -1, "q"},
    {"k NULL", k_null, INVALID, -1, "k"},
    {"v NULL", v_null, INVALID, -1, "v"},
    {"out NULL", out_null, INVALID, -1, "out"},
    {"q.buffer NULL", q_buffer_null, INVALID, -1, "q"},
    {"k.buffer NULL", k_buffer_null, INVALID, -1, "k"},
    {"out.buffer NULL", out_buffer_null, INVALID, -1, "out"},
    {"lse.buffer NULL", lse_buffer_null, INVALID, -1, "lse"},
    {"q.dims[0] = 0", q_batch_zero, INVALID, -1, "q.dims[0]"},
    {"q.dims[2] = -3", q_seq_negative, INVALID, -1, "q.dims[2]"},
    {"q.dims[3] = 0", q_dim_zero, INVALID, -1, "q.dims[3]"},
    {"k.dims[1] = 0", k_heads_zero, INVALID, -1, "k.dims[1]"},
    {"k.dims[2] = 0", k_seq_zero, INVALID, -1, "k.dims[2]"},
    {"v.dims[3] = -1", v_dim_negative, INVALID, -1, "v.dims[3]"},
    {"out.dims[2] = 0", out_seq_zero, INVALID, -1, "out.dims[2]"},
    {"k batch != q batch", k_batch_mismatch, INVALID, -1, "k.dims[0]"},
    {"v batch != q batch", v_batch_mismatch, INVALID, -1, "v.dims[0]"},
    {"out batch != q batch", out_batch_mismatch, INVALID, -1, "out.dims[0]"},
    {"k head dim != q head dim", k_dim_mismatch, INVALID, -1, "k.dims[3]"},
    {"v seq != k seq", v_seq_mismatch, INVALID, -1, "v.dims[2]"},
    {"v heads != k heads", v_heads_mismatch, INVALID, -1, "v.dims[1]"},
    {"out heads != q heads", out_heads_mismatch, INVALID, -1, "out.dims[1]"},
    {"out seq != q seq", out_seq_mismatch, INVALID, -1, "out.dims[2]"},
    {"out dim != v dim", out_dim_mismatch, INVALID, -1, "out.dims[3]"},
    {"Hq % Hkv != 0", heads_not_divisible, INVALID, -1, "k.dims[1]"},
    {"lse.dims[3] = 2", lse_dim_two, INVALID, -1, "lse"},
    {"lse seq != q seq", lse_seq_short, INVALID, -1, "lse"},
    {"lse heads != q heads", lse_heads_short, INVALID, -1, "lse"},
    {"lse f16", lse_f16, INVALID, -1, "lse"},
    {"lse dtype 7", lse_dtype_7, INVALID, -1, "lse"},
    {"k.strides[3] = 0", k_inner_stride_0, INVALID, -1, "k.strides[3]"},
    {"q.strides[3] = 2", q_inner_stride_2, INVALID, -1, "q.strides[3]"},
    {"out.strides[3] = 0", out_inner_stride_0, INVALID, -1, "out"},
    {"v.strides[2] < 0", v_negative_stride, INVALID, -1, "v.strides[2]"},
    {"out.strides[1] < 0", out_negative_stride, INVALID, -1, "out.strides[1]"},
    {"q.offset = 2", q_offset_misaligned, INVALID, -1, "q.offset"},
    {"out.offset = 1", out_offset_misaligned, INVALID, -1, "out.offset"},
    {"lse.offset = 6", lse_offset_misaligned, INVALID, -1, "lse"},
    {"k one element past its buffer", k_past_end, TOO_SMALL, -1, "k"},
    {"v buffer one element short", v_short_buffer, TOO_SMALL, -1, "v"},
    {"out one element past its buffer", out_past_end, TOO_SMALL, -1, "out"},
    {"lse one element past its buffer", lse_past_end, TOO_SMALL, -1, "lse"},
    {"q.offset = 2^40", q_offset_huge, TOO_SMALL, -1, "q"},
    {"q, out, lse one row more", q_seq_one_more, TOO_SMALL, -1, NULL},
    {"q.strides[0] = INT64_MAX/2", q_stride_huge, TOO_SMALL, INVALID, "q"},
    {"Sq = 2^40", seq_huge, TOO_SMALL, INVALID, NULL},
    {"Sk = 2^62 (size overflows)", seq_overflowing, TOO_SMALL, INVALID, NULL},
    {"out rows overlap", out_rows_overlap, INVALID, -1, "out"},
    {"out heads overlap (stride 0)", out_heads_overlap, INVALID, -1, "out"},
    {"out batches overlap heads", out_batches_overlap, INVALID, -1, "out"},
    {"lse rows overlap (stride 0)", lse_rows_overlap, INVALID, -1, "lse"},
    {"out aliases q", out_is_q, INVALID, -1, "alias"},
    {"out is a sub-buffer of q", out_is_sub_buffer_of_q, INVALID, -1, "alias"},
    {"lse inside q", lse_in_q, INVALID, -1, "alias"},
    {"lse inside k", lse_in_k, INVALID, -1, "alias"},
    {"lse overlaps out", lse_overlaps_out, INVALID, -1, "alias"},
    {"q.dtype 7", q_dtype_7, INVALID, -1, "q.dtype"},
    {"out.dtype 7", out_dtype_7, INVALID, -1, "out"},
    {"k.dtype != q.dtype", k_dtype_differs, INVALID, -1, "dtype"},
    {"align 5", align_5, INVALID, -1, "desc->align"},
    {"align -1", align_negative, INVALID, -1, "desc->align"},
    {"algo 9", algo_9, INVALID, -1, "desc->algo"},
    {"causal 2", causal_2, INVALID, -1, "desc->causal"},
    {"causal -1", causal_negative, INVALID, -1, "desc->causal"},
    {"window_left -2", window_left_minus_2, INVALID, -1, "desc->window_left"},
    {"window_right -5", window_right_minus_5, INVALID, -1, "desc->window_right"},
    {"softcap -1", softcap_negative, INVALID, -1, "desc->softcap"},
    {"softcap NaN", softcap_nan, INVALID, -1, "desc->softcap"},
    {"scale NaN", scale_nan, INVALID, -1, "desc->scale"},
    {"scale +Inf", scale_inf, INVALID, -1, "desc->scale"},
    {"scale -Inf", scale_minus_inf, INVALID, -1, "desc->scale"},
    {"dropout_p 1", dropout_one, INVALID, -1, "desc->dropout_p"},
    {"dropout_p -0.1", dropout_negative, INVALID, -1, "desc->dropout_p"},
    {"dropout_p NaN", dropout_nan, INVALID, -1, "desc->dropout_p"},
    {"struct_size 0", struct_size_zero, INVALID, -1, "desc->struct_size"},
    {"struct_size SIZE_MAX", struct_size_huge, INVALID, -1, "desc->struct_size"},
    {"struct_size sizeof + 4096", struct_size_unknown, INVALID, -1, "desc->struct_size"},
    {"num_wait 2, wait_list NULL", wait_list_null, INVALID, -1, "wait_list"},
    {"out READ_ONLY", out_read_only, INVALID, -1, "out"},
    {"lse READ_ONLY", lse_read_only, INVALID, -1, "lse"},
    {"k WRITE_ONLY", k_write_only, INVALID, -1, "k"},
    {"q from another cl_context", q_foreign_context, INVALID, -1, "q"},
    {"out from another cl_context", out_foreign_context, INVALID, -1, "out"},
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
        const bad_case *c = &forward_cases[i];
        call a;
        call_init(&a, &f);
        c->mutate(&a, &f);
        cl_event ev = (cl_event)&ev;   /* not NULL: a failing call must clear it */
        clattn_status st = call_run(&a, &ev);
        expect_rejected(&f, c->name, st, ev, c->want, c->want2, c->substring);
    }
    cr_log_info("forward_table: %zu bad calls checked", n);
    fixture_free(&f);
}

Test(bad_input, last_error_is_empty_after_success)
{
    fixture f;
    test_ctx();
    fixture_init(&f);
    call a;
    call_init(&a, &f);
    a.desc.causal = 7;
    cl_event ev = NULL;
    cr_assert_eq(call_run(&a, &ev), CLATTN_ERROR_INVALID_ARGUMENT);
    cr_assert_str_not_empty(clattn_last_error());
    call_init(&a, &f);
    TEST_CHECK_STATUS(call_run(&a, NULL), "valid call");
    cr_assert_str_empty(clattn_last_error(), "after a success: \"%s\"", clattn_last_error());
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    fixture_free(&f);
}

/* ---- backward and merge: pointers and n -------------------------------------------------- */

typedef struct bwd_args {
    clattn_context *ctx;
    const clattn_attention_desc *desc;
    const clattn_tensor *q, *k, *v, *out, *dout, *lse, *dq, *dk, *dv;
} bwd_args;

Test(bad_input, backward_pointers)
{
    fixture f;
    test_ctx();
    fixture_init(&f);
    test_tensor dout, dq, dk, dv;
    int64_t qd[4] = {B, HQ, SQ, D}, kd[4] = {B, HKV, SK, D}, vd[4] = {B, HKV, SK, DV};
    int64_t od[4] = {B, HQ, SQ, DV};
    tt_init(&dout, CLATTN_F32, od, &LAYOUT_BHSD);
    test_rng rng;
    rng_seed(&rng, 515);
    tt_fill_random(&dout, &rng, -1, 1);
    tt_init(&dq, CLATTN_F32, qd, &LAYOUT_BHSD);
    tt_init(&dk, CLATTN_F32, kd, &LAYOUT_BHSD);
    tt_init(&dv, CLATTN_F32, vd, &LAYOUT_BHSD);
    tt_upload(&dout, CL_MEM_READ_ONLY);
    tt_upload(&dq, CL_MEM_READ_WRITE);
    tt_upload(&dk, CL_MEM_READ_WRITE);
    tt_upload(&dv, CL_MEM_READ_WRITE);
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    const bwd_args valid = {test_ctx(), &desc, &f.q.view, &f.k.view, &f.v.view, &f.out.view,
                            &dout.view, &f.lse.view, &dq.view, &dk.view, &dv.view};
    /* which pointer each case clears, and what the message names (NULL: any message) */
    const struct { const char *name; size_t field; const char *substring; } cases[] = {
        {"ctx", offsetof(bwd_args, ctx), "ctx"},
        {"desc", offsetof(bwd_args, desc), "desc"},
        {"q", offsetof(bwd_args, q), "q"},
        {"k", offsetof(bwd_args, k), "k"},
        {"v", offsetof(bwd_args, v), "v"},
        {"out", offsetof(bwd_args, out), "out"},
        {"dout", offsetof(bwd_args, dout), "dout"},
        {"lse", offsetof(bwd_args, lse), "lse"},
        {"dq", offsetof(bwd_args, dq), "dq"},
        {"dk", offsetof(bwd_args, dk), "dk"},
        {"dv", offsetof(bwd_args, dv), "dv"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bwd_args a = valid;
        memset((char *)&a + cases[i].field, 0, sizeof(void *));
        cl_event ev = (cl_event)&ev;
        clattn_status st = clattn_attention_backward(a.ctx, a.desc, a.q, a.k, a.v, a.out,
                                                     a.dout, a.lse, a.dq, a.dk, a.dv, 0, NULL,
                                                     &ev);
        char label[64];
        snprintf(label, sizeof label, "backward with %s NULL", cases[i].name);
        expect_rejected(&f, label, st, ev, CLATTN_ERROR_INVALID_ARGUMENT, -1,
                        cases[i].substring);
        size_t first;
        cr_expect(buf_canary_intact(dq.view.buffer, &first) &&
                  buf_canary_intact(dk.view.buffer, &first) &&
                  buf_canary_intact(dv.view.buffer, &first), "%s: a gradient was written",
                  label);
    }
    /* num_wait > 0 with a NULL list */
    cl_event ev = (cl_event)&ev;
    clattn_status st = clattn_attention_backward(valid.ctx, valid.desc, valid.q, valid.k,
                                                 valid.v, valid.out, valid.dout, valid.lse,
                                                 valid.dq, valid.dk, valid.dv, 1, NULL, &ev);
    expect_rejected(&f, "backward num_wait 1, wait_list NULL", st, ev,
                    CLATTN_ERROR_INVALID_ARGUMENT, -1, "wait_list");
    /* all valid, with out and lse from the forward: succeeds, returns an event, clears the
       last error and writes the reference's gradients */
    call a;
    call_init(&a, &f);
    TEST_CHECK_STATUS(call_run(&a, NULL), "the forward before the valid backward");
    ev = NULL;
    st = clattn_attention_backward(valid.ctx, valid.desc, valid.q, valid.k, valid.v, valid.out,
                                   valid.dout, valid.lse, valid.dq, valid.dk, valid.dv, 0, NULL,
                                   &ev);
    cr_log_info("backward with valid arguments: %s: %s", clattn_status_string(st),
                clattn_last_error());
    cr_assert_eq(st, CLATTN_SUCCESS, "backward with valid arguments: %s (%s)",
                 clattn_status_string(st), clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "after a success: \"%s\"", clattn_last_error());
    cr_assert_not_null(ev, "backward with valid arguments: no event");
    cr_assert_eq(clWaitForEvents(1, &ev), CL_SUCCESS);
    clReleaseEvent(ev);
    tt_download(&dq);
    tt_download(&dk);
    tt_download(&dv);
    ref_params p;
    ref_params_init(&p);
    test_grads want;
    test_reference_backward_of(p, &f.q, &f.k, &f.v, &dout, NULL, &want);
    const test_tensor *got[3] = {&dq, &dk, &dv};
    const ref_tensor *ref[3] = {&want.dq, &want.dk, &want.dv};
    const char *names[3] = {"dq", "dk", "dv"};
    for (int g = 0; g < 3; g++) {
        char buf[200];
        cmp_result r = compare_grad(got[g], ref[g], NULL);
        cr_log_info("backward with valid arguments: %s %s", names[g],
                    cmp_describe(&r, buf, sizeof buf));
        cr_expect(r.worst <= TOL_F32_GRAD && r.hard == 0, "backward with valid arguments: %s %s",
                  names[g], buf);
    }
    test_grads_free(&want);
    tt_free(&dout);
    tt_free(&dq);
    tt_free(&dk);
    tt_free(&dv);
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
        {"merge ctx NULL", NULL, 2, outs, lses, &f.out.view, 0, "ctx"},
        {"merge n 0", ctx, 0, outs, lses, &f.out.view, 0, NULL},
        {"merge outs NULL", ctx, 2, NULL, lses, &f.out.view, 0, NULL},
        {"merge lses NULL", ctx, 2, outs, NULL, &f.out.view, 0, NULL},
        {"merge out NULL", ctx, 2, outs, lses, NULL, 0, "out"},
        {"merge num_wait 1, wait_list NULL", ctx, 2, outs, lses, &f.out.view, 1, "wait_list"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cl_event ev = (cl_event)&ev;
        clattn_status st = clattn_attention_merge(cases[i].ctx, cases[i].n, cases[i].outs,
                                                  cases[i].lses, cases[i].out, &f.lse.view,
                                                  cases[i].num_wait, NULL, &ev);
        expect_rejected(&f, cases[i].name, st, ev, CLATTN_ERROR_INVALID_ARGUMENT, -1,
                        cases[i].substring);
    }
    cl_event ev = NULL;
    clattn_status st = clattn_attention_merge(ctx, 2, outs, lses, &f.out.view, &f.lse.view, 0,
                                              NULL, &ev);
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
    call a;
    call_init(&a, &f);
    a.out.buffer = a.lse.buffer = f.out_big;
    a.lse.offset = f.out.bytes;
    a.v = a.k;
    a.v.dims[3] = DV;   /* the first DV of each k row; k's strides */
    cl_event ev = NULL;
    clattn_status st = call_run(&a, &ev);
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
    ref_tensor q = tt_to_ref(&f.q, &qs), k = tt_to_ref(&f.k, &ks), v = k;
    v.dims[3] = DV;
    ref_tensor ro = ref_tensor_dense(ref_out, B, HQ, SQ, DV);
    ref_tensor rl = ref_tensor_dense(ref_lse, B, HQ, SQ, 1);
    cr_assert_eq(ref_attention_forward(&p, &q, &k, &v, &ro, &rl), 0);

    /* read both views back out of the shared buffer */
    test_tensor got_out = f.out, got_lse = f.lse;   /* same views, other host copies */
    unsigned char *all = malloc(f.out.bytes + f.lse.bytes + 64);
    cr_assert_not_null(all);
    buf_read(f.out_big, f.out.bytes + f.lse.bytes + 64, all);
    got_out.host = all;
    got_lse.host = all + f.out.bytes;
    char buf[200];
    cmp_result r = compare_out(&got_out, &ro);
    cr_log_info("out %s", cmp_describe(&r, buf, sizeof buf));
    cr_expect(r.worst <= TOL_F32_OUT, "out %s", buf);
    r = compare_lse(&got_lse, &rl);
    cr_log_info("lse %s", cmp_describe(&r, buf, sizeof buf));
    cr_expect(r.worst <= TOL_F32_LSE, "lse %s", buf);
    size_t tail = f.out.bytes + f.lse.bytes;
    for (size_t i = tail; i < tail + 64; i++)
        cr_expect_eq(all[i], canary_byte(i), "byte %zu after lse changed", i);
    free(all);
    free(qs);
    free(ks);
    free(ref_out);
    free(ref_lse);
    fixture_free(&f);
}
