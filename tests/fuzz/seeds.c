/* The seed corpus of fuzz_validate (tests/fuzz/corpus is these cases, encoded: regenerate it
   with `fuzz_validate -write-corpus=tests/fuzz/corpus`): valid calls of every kind, and one or
   more calls per rule of docs/semantics.md "Bad input", each with the status and the piece of
   message it must give (checked by `fuzz_validate -check-seeds`; ANY: not checked). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_validate.h"

#define INVALID CLATTN_ERROR_INVALID_ARGUMENT
#define SMALL CLATTN_ERROR_BUFFER_TOO_SMALL
#define OK CLATTN_SUCCESS
#define ANY ((clattn_status)-1000) /* whatever validate.c says */

#define RO CL_MEM_READ_ONLY
#define WO CL_MEM_WRITE_ONLY
#define RW CL_MEM_READ_WRITE

static fz_seed *list;
static size_t count, cap;

static void add(const char *name, const fz_case *c, clattn_status status, const char *message)
{
    if (count == cap) {
        cap = cap ? 2 * cap : 128;
        list = realloc(list, cap * sizeof *list);
        if (!list)
            abort();
    }
    fz_seed *s = &list[count++];
    s->name = name;
    s->c = *c;
    s->status = status;
    s->message = message;
}

static fz_case blank(int op)
{
    fz_case c;
    memset(&c, 0, sizeof c);
    c.op = (uint8_t)op;
    c.desc.window_left = -1; /* clattn_attention_desc_init */
    c.desc.window_right = -1;
    return c;
}

static int mkbuf(fz_case *c, uint64_t size, uint64_t flags)
{
    if (c->nbufs >= FZ_MAX_BUFS)
        abort();
    int i = c->nbufs++;
    fz_buf *b = &c->bufs[i];
    b->live = 1;
    b->flags = flags;
    b->size = size;
    return i;
}

static int mksub(fz_case *c, int parent, uint64_t origin, uint64_t size, uint64_t flags)
{
    int i = mkbuf(c, size, flags);
    c->bufs[i].parent = (uint8_t)(parent + 1);
    c->bufs[i].origin = origin;
    return i;
}

static void dense(fz_tensor *t, int buf, int dtype, int64_t b, int64_t h, int64_t s, int64_t d)
{
    memset(t, 0, sizeof *t);
    t->present = 1;
    t->buf = (uint8_t)buf;
    t->dtype = dtype;
    const int64_t dims[4] = {b, h, s, d}, strides[4] = {h * s * d, s * d, d, 1};
    memcpy(t->dims, dims, sizeof dims);
    memcpy(t->strides, strides, sizeof strides);
}

static void bshd(fz_tensor *t, int buf, int dtype, int64_t b, int64_t h, int64_t s, int64_t d)
{
    dense(t, buf, dtype, b, h, s, d);
    const int64_t strides[4] = {s * h * d, d, h * d, 1};
    memcpy(t->strides, strides, sizeof strides);
}

/* Bytes from the first to one past the last element. */
static uint64_t extent(const fz_tensor *t)
{
    int64_t span = 1;
    for (int i = 0; i < 4; i++)
        span += (t->dims[i] - 1) * t->strides[i];
    return (uint64_t)span * (t->dtype == 0 ? 4u : 2u);
}

/* ---------------------------------------------------------------------------------------- */
/* Forward                                                                                    */
/* ---------------------------------------------------------------------------------------- */

enum { B = 2, HQ = 4, HKV = 2, SQ = 8, SK = 16, D = 16, DV = 8 };

/* q, k, v, out, lse, each in its own buffer of exactly its size; GQA 4/2, D 16, Dv 8. */
static fz_case fwd(void)
{
    fz_case c = blank(FZ_FORWARD);
    dense(&c.t[FZ_Q], mkbuf(&c, B * HQ * SQ * D * 4, RO), CLATTN_F32, B, HQ, SQ, D);
    dense(&c.t[FZ_K], mkbuf(&c, B * HKV * SK * D * 4, RO), CLATTN_F32, B, HKV, SK, D);
    dense(&c.t[FZ_V], mkbuf(&c, B * HKV * SK * DV * 4, RO), CLATTN_F32, B, HKV, SK, DV);
    dense(&c.t[FZ_OUT], mkbuf(&c, B * HQ * SQ * DV * 4, RW), CLATTN_F32, B, HQ, SQ, DV);
    dense(&c.t[FZ_LSE], mkbuf(&c, B * HQ * SQ * 4, WO), CLATTN_F32, B, HQ, SQ, 1);
    return c;
}

/* fwd() with a bias [1, HQ, 1, SK] (broadcast over batch and rows), seqlens and a workspace. */
static fz_case fwd_extras(void)
{
    fz_case c = fwd();
    fz_tensor *bias = &c.t[FZ_BIAS];
    dense(bias, mkbuf(&c, HQ * SK * 2, RO), CLATTN_F16, 1, HQ, 1, SK);
    c.desc.bias = 1;
    c.desc.seqlens_q = (uint8_t)(mkbuf(&c, B * 4, RO) + 1);
    c.desc.seqlens_k = (uint8_t)(mkbuf(&c, B * 4, RW) + 1);
    c.desc.workspace = (uint8_t)(mkbuf(&c, 1 << 20, RW) + 1);
    c.desc.workspace_size = 1 << 20;
    return c;
}

/* fwd() with sinks [1, HQ, 1, 1] of dtype t in a buffer of their own (flags). */
static fz_case fwd_sinks(clattn_dtype t, cl_mem_flags flags)
{
    fz_case c = fwd();
    dense(&c.t[FZ_SINKS], mkbuf(&c, HQ * 4, flags), t, 1, HQ, 1, 1);
    c.desc.sinks = 1;
    return c;
}

static void sinks_seeds(void)
{
    fz_case c = fwd_sinks(CLATTN_F32, RO);
    add("fwd_sinks_valid", &c, OK, "");
    c = fwd_sinks(CLATTN_F16, RO);
    add("fwd_sinks_f16", &c, INVALID, "sinks.dtype=1: sinks are f32");
    c = fwd_sinks(CLATTN_F32, RO);
    c.t[FZ_SINKS].dims[1] = HQ - 1;
    add("fwd_sinks_heads", &c, INVALID, "sinks dims [1,");
    c = fwd_sinks(CLATTN_F32, WO);
    add("fwd_sinks_write_only", &c, INVALID, "sinks.buffer is CL_MEM_WRITE_ONLY");
    c = fwd_sinks(CLATTN_F32, RO);
    c.t[FZ_SINKS].buf = c.t[FZ_OUT].buf;
    add("fwd_sinks_in_out", &c, INVALID, "sinks");
}

static void forward_seeds(void)
{
    fz_case c = fwd();
    add("fwd_valid_f32", &c, OK, "");

    /* q, k, v in one read-only buffer (BSHD, f16, byte offsets); out (bf16) and lse in two
       sub-buffers of one read-write buffer; every descriptor field set */
    c = blank(FZ_FORWARD);
    int in = mkbuf(&c, 65536, RO), rw = mkbuf(&c, 16384, RW);
    int so = mksub(&c, rw, 0, 4096, RW), sl = mksub(&c, rw, 8192, 512, RW);
    bshd(&c.t[FZ_Q], in, CLATTN_F16, B, HQ, SQ, D);
    bshd(&c.t[FZ_K], in, CLATTN_F16, B, HKV, SK, D);
    bshd(&c.t[FZ_V], in, CLATTN_F16, B, HKV, SK, DV);
    c.t[FZ_K].offset = 8192;
    c.t[FZ_V].offset = 32768 + 2;
    bshd(&c.t[FZ_OUT], so, CLATTN_BF16, B, HQ, SQ, DV);
    c.t[FZ_OUT].offset = 2;
    dense(&c.t[FZ_LSE], sl, CLATTN_F32, B, HQ, SQ, 1);
    c.desc.scale = 0.125f;
    c.desc.causal = 1;
    c.desc.align = 1;
    c.desc.window_left = 3;
    c.desc.window_right = 0;
    c.desc.softcap = 30.0f;
    c.desc.dropout_p = 0.1f;
    c.desc.dropout_seed = 42;
    c.desc.dropout_offset = 7;
    c.desc.algo = 1;
    add("fwd_valid_f16_bshd_subbuffers", &c, OK, "");

    c = fwd_extras();
    add("fwd_valid_bias_seqlens_workspace", &c, OK, "");

    /* k and v broadcast over the batch (stride 0), q broadcast over its heads; no lse */
    c = fwd();
    c.t[FZ_K].strides[0] = 0;
    c.t[FZ_V].strides[0] = 0;
    c.t[FZ_Q].strides[1] = 0;
    c.t[FZ_LSE].present = 0;
    add("fwd_valid_broadcast_inputs", &c, OK, "");

    /* out with padded rows, after q in one read-write buffer */
    c = fwd();
    {
        int b = mkbuf(&c, 2 * 4096 + B * HQ * SQ * 12 * 4, RW);
        c.t[FZ_Q].buf = (uint8_t)b;
        dense(&c.t[FZ_OUT], b, CLATTN_F32, B, HQ, SQ, DV);
        c.t[FZ_OUT].strides[2] = 12;
        c.t[FZ_OUT].strides[1] = SQ * 12;
        c.t[FZ_OUT].strides[0] = HQ * SQ * 12;
        c.t[FZ_OUT].offset = 8192;
        c.t[FZ_OUT].dims[3] = DV;
    }
    add("fwd_valid_padded_out_after_q", &c, OK, "");

    /* a view ending exactly at the end of its buffer, after an offset */
    c = fwd();
    c.t[FZ_V].offset = 64;
    c.bufs[c.t[FZ_V].buf].size = 64 + extent(&c.t[FZ_V]);
    add("fwd_valid_view_ends_at_buffer_end", &c, OK, "");

    c = fwd();
    c.op = FZ_QUERY;
    add("query_valid", &c, OK, "");
    /* q, k, v broadcast over a batch of 2^40 (stride 0), seqlens for all of it */
    c = fwd_extras();
    c.op = FZ_QUERY;
    for (int i = FZ_Q; i <= FZ_V; i++) {
        c.t[i].dims[0] = INT64_C(1) << 40;
        c.t[i].strides[0] = 0;
    }
    c.desc.bias = 0;
    c.bufs[c.desc.seqlens_q - 1].size = UINT64_C(1) << 42;
    c.bufs[c.desc.seqlens_k - 1].size = UINT64_C(1) << 42;
    add("query_valid_broadcast_huge_batch", &c, OK, "");
    /* found by the fuzzer: 4 x batch overflowed in check_seqlens (signed, in the message) */
    for (int i = FZ_Q; i <= FZ_V; i++)
        c.t[i].dims[0] = INT64_C(1) << 61;
    add("query_seqlens_batch_2e61", &c, SMALL,
        "desc->seqlens_q holds 4398046511104 bytes; int32[2305843009213693952] needs");
    /* ... and wrapped to 0 (unsigned, in the test), accepting 8 bytes for int32[2^62] */
    for (int i = FZ_Q; i <= FZ_V; i++)
        c.t[i].dims[0] = INT64_C(1) << 62;
    c.bufs[c.desc.seqlens_q - 1].size = 8;
    add("query_seqlens_batch_2e62", &c, SMALL, "desc->seqlens_q holds 8 bytes; int32[4611686018427387904] needs");
    c = fwd_extras();
    c.op = FZ_QUERY;
    c.t[FZ_OUT].present = 0; /* outputs are not looked at */
    add("query_valid_extras", &c, OK, "");

    /* the descriptor */
    c = blank(FZ_DESC);
    add("desc_valid_defaults", &c, OK, "");
    c.desc.absent = 1;
    add("desc_null", &c, INVALID, "desc is NULL");
    c = blank(FZ_DESC);
    c.desc.size_given = 1;
    c.desc.size = 8;
    add("desc_struct_size", &c, INVALID, "desc->struct_size=8");
    c = blank(FZ_DESC);
    c.desc.scale = NAN;
    add("desc_scale_nan", &c, INVALID, "desc->scale=nan");
    c = fwd();
    c.desc.scale = -INFINITY;
    add("desc_scale_inf", &c, INVALID, "desc->scale=-inf");
    c = blank(FZ_DESC);
    c.desc.causal = 2;
    add("desc_causal", &c, INVALID, "desc->causal=2");
    c = blank(FZ_DESC);
    c.desc.align = 2;
    add("desc_align", &c, INVALID, "desc->align=2");
    c = fwd();
    c.desc.window_left = -2;
    add("desc_window_left", &c, INVALID, "desc->window_left=-2");
    c = blank(FZ_DESC);
    c.desc.window_right = INT64_MIN;
    add("desc_window_right", &c, INVALID, "desc->window_right=");
    c = fwd();
    c.desc.q_start = -1;
    add("desc_q_start_negative", &c, INVALID, "desc->q_start=-1");
    c = blank(FZ_DESC);
    c.desc.k_start = ((int64_t)1 << 40) + 1;
    add("desc_k_start_huge", &c, INVALID, "desc->k_start=1099511627777");
    c = fwd();
    c.desc.q_start = (int64_t)1 << 40;
    c.desc.k_start = 12345;
    add("desc_positions_valid", &c, OK, "");
    c = blank(FZ_DESC);
    c.desc.softcap = -1.0f;
    add("desc_softcap_negative", &c, INVALID, "desc->softcap=-1");
    c = blank(FZ_DESC);
    c.desc.softcap = INFINITY;
    add("desc_softcap_inf", &c, INVALID, "desc->softcap=inf");
    c = blank(FZ_DESC);
    c.desc.dropout_p = 1.0f;
    add("desc_dropout_one", &c, INVALID, "desc->dropout_p=1");
    c = fwd();
    c.desc.dropout_p = NAN;
    add("desc_dropout_nan", &c, INVALID, "desc->dropout_p=nan");
    c = blank(FZ_DESC);
    c.desc.algo = 4;
    add("desc_algo", &c, INVALID, "desc->algo=4");
    c = blank(FZ_DESC);
    c.desc.algo = -1;
    add("desc_algo_negative", &c, INVALID, "desc->algo=-1");

    c = fwd();
    c.num_wait = 2;
    c.wait_null = 1;
    add("fwd_wait_list_null", &c, INVALID, "wait_list is NULL with num_wait=2");
    c.wait_null = 0;
    add("fwd_valid_wait_list", &c, OK, "");

    /* one view */
    c = fwd();
    c.t[FZ_Q].present = 0;
    add("fwd_q_null", &c, INVALID, "q is NULL");
    c = fwd();
    c.t[FZ_K].dtype = 9;
    add("fwd_k_dtype", &c, INVALID, "k.dtype=9 is not a clattn_dtype");
    c = fwd();
    c.t[FZ_V].dims[2] = 0;
    add("fwd_v_dim_zero", &c, INVALID, "v.dims[2]=0 is not positive");
    c = fwd();
    c.t[FZ_Q].dims[0] = -1;
    add("fwd_q_dim_negative", &c, INVALID, "q.dims[0]=-1 is not positive");
    c = fwd();
    c.t[FZ_K].strides[2] = -16;
    add("fwd_k_stride_negative", &c, INVALID, "k.strides[2]=-16 is negative");
    c = fwd();
    c.t[FZ_Q].strides[3] = 2;
    add("fwd_q_stride3", &c, INVALID, "q.strides[3]=2 must be 1");
    c = fwd();
    c.t[FZ_V].offset = 2;
    add("fwd_v_offset_misaligned", &c, INVALID, "v.offset=2 is not a multiple of the element size 4");
    c = fwd();
    c.t[FZ_Q].dims[2] = INT64_C(1) << 40;
    c.t[FZ_Q].strides[2] = INT64_C(1) << 40;
    add("fwd_q_extent_overflow", &c, INVALID, "q: dims x strides overflow 64 bits");
    c = fwd();
    c.t[FZ_Q].dims[2] = INT64_C(1) << 40;
    c.t[FZ_Q].strides[2] = INT64_C(1) << 22; /* 2^62 elements of 4 bytes */
    add("fwd_q_bytes_overflow", &c, INVALID, "q: dims x strides overflow 64 bits");
    c = fwd();
    c.t[FZ_K].buf = FZ_NULL_BUF;
    add("fwd_k_buffer_null", &c, INVALID, "k.buffer is NULL");
    c = fwd();
    c.bufs[c.t[FZ_V].buf].live = 0;
    add("fwd_v_buffer_released", &c, INVALID, "v.buffer is not a valid cl_mem");
    c = fwd();
    c.t[FZ_Q].buf = FZ_UNKNOWN_BUF;
    add("fwd_q_buffer_unknown", &c, INVALID, "q.buffer is not a valid cl_mem");
    c = fwd();
    c.bufs[c.t[FZ_K].buf].foreign = 1;
    add("fwd_k_foreign_context", &c, INVALID, "k.buffer belongs to another cl_context");
    c = fwd();
    c.bufs[c.t[FZ_OUT].buf].flags = RO;
    add("fwd_out_read_only", &c, INVALID, "out.buffer is CL_MEM_READ_ONLY but out is an output");
    c = fwd();
    c.bufs[c.t[FZ_Q].buf].flags = WO;
    add("fwd_q_write_only", &c, INVALID, "q.buffer is CL_MEM_WRITE_ONLY but q is an input");
    c = fwd();
    c.bufs[c.t[FZ_Q].buf].size -= 4; /* one element short */
    add("fwd_q_past_end_by_one", &c, SMALL, "q: the view needs 0 + 4096 bytes but q.buffer holds 4092");
    c = fwd();
    c.t[FZ_OUT].offset = UINT64_C(1) << 40;
    add("fwd_out_offset_past_end", &c, SMALL, "out: the view needs 1099511627776 + 2048 bytes");
    c = fwd();
    c.t[FZ_LSE].buf = (uint8_t)mksub(&c, c.t[FZ_OUT].buf, 1024, 252, RW);
    add("fwd_lse_sub_buffer_too_small", &c, SMALL, "lse: the view needs 0 + 256 bytes but lse.buffer holds 252");
    c = fwd();
    c.t[FZ_OUT].strides[2] = 0;
    add("fwd_out_stride0", &c, INVALID, "out.strides[2]=0 makes elements of the output overlap");
    c = fwd();
    c.t[FZ_OUT].strides[1] = 16; /* head h+1 starts at row 2 of head h */
    add("fwd_out_rows_overlap", &c, INVALID, "out.strides[1]=16 makes elements of the output overlap");

    /* shapes */
    c = fwd();
    c.t[FZ_K].dims[0] = 3;
    c.bufs[c.t[FZ_K].buf].size *= 2;
    add("fwd_k_batch", &c, INVALID, "k.dims[0]=3 does not match q.dims[0]=2 (batch)");
    c = fwd();
    c.t[FZ_V].dims[1] = 1;
    add("fwd_v_heads", &c, INVALID, "v.dims[1]=1 does not match k.dims[1]=2 (kv heads)");
    c = fwd();
    c.t[FZ_K].dims[3] = 8;
    add("fwd_k_head_dim", &c, INVALID, "k.dims[3]=8 does not match q.dims[3]=16 (head dim)");
    c = fwd();
    c.t[FZ_V].dims[2] = 8;
    add("fwd_v_keys", &c, INVALID, "v.dims[2]=8 does not match k.dims[2]=16 (keys)");
    c = fwd();
    c.t[FZ_K].dims[1] = 3;
    c.t[FZ_V].dims[1] = 3;
    c.bufs[c.t[FZ_K].buf].size *= 2;
    c.bufs[c.t[FZ_V].buf].size *= 2;
    add("fwd_gqa_not_divisible", &c, INVALID, "k.dims[1]=3 does not divide q.dims[1]=4");
    c = fwd();
    c.t[FZ_V].dtype = CLATTN_F16;
    add("fwd_dtype_mismatch", &c, INVALID, "q.dtype=0, k.dtype=0, v.dtype=1");
    c = fwd();
    c.t[FZ_OUT].dims[3] = D;
    add("fwd_out_value_dim", &c, INVALID, "out.dims[3]=16 does not match v.dims[3]=8 (value dim)");
    c = fwd();
    c.t[FZ_OUT].dims[1] = HKV;
    add("fwd_out_heads", &c, INVALID, "out.dims[1]=2 does not match q.dims[1]=4 (query heads)");
    c = fwd();
    c.t[FZ_LSE].dims[3] = 2;
    add("fwd_lse_last_dim", &c, INVALID, "lse.dims[3]=2 does not match 1=1 (one)");
    c = fwd();
    c.t[FZ_LSE].dtype = CLATTN_F16;
    add("fwd_lse_dtype", &c, INVALID, "lse.dtype=1: lse is f32");
    c = fwd();
    c.t[FZ_OUT].present = 0;
    add("fwd_out_null", &c, INVALID, "out is NULL");

    /* bias, seqlens, workspace */
    c = fwd_extras();
    c.t[FZ_BIAS].dims[3] = 8;
    add("fwd_bias_keys", &c, INVALID, "bias.dims[3]=8 must be k.dims[2]=16");
    c = fwd_extras();
    c.t[FZ_BIAS].dims[1] = 2;
    add("fwd_bias_heads", &c, INVALID, "bias.dims[1]=2 must be 1 or q.dims[1]=4");
    c = fwd_extras();
    c.bufs[c.t[FZ_BIAS].buf].foreign = 1;
    add("fwd_bias_foreign", &c, INVALID, "bias.buffer belongs to another cl_context");
    c = fwd_extras();
    c.t[FZ_BIAS].present = 0;
    add("fwd_bias_flag_without_tensor", &c, OK, ""); /* desc->bias NULL: no bias */
    c = fwd_extras();
    c.bufs[c.desc.seqlens_q - 1].live = 0;
    add("fwd_seqlens_q_released", &c, INVALID, "desc->seqlens_q is not a valid cl_mem");
    c = fwd_extras();
    c.desc.seqlens_k = FZ_UNKNOWN_BUF;
    add("fwd_seqlens_k_unknown", &c, INVALID, "desc->seqlens_k is not a valid cl_mem");
    c = fwd_extras();
    c.bufs[c.desc.seqlens_k - 1].foreign = 1;
    add("fwd_seqlens_k_foreign", &c, INVALID, "desc->seqlens_k belongs to another cl_context");
    c = fwd_extras();
    c.bufs[c.desc.seqlens_q - 1].flags = WO;
    add("fwd_seqlens_q_write_only", &c, INVALID, "desc->seqlens_q is CL_MEM_WRITE_ONLY");
    c = fwd_extras();
    c.bufs[c.desc.seqlens_k - 1].size = 4;
    add("fwd_seqlens_k_too_small", &c, SMALL, "desc->seqlens_k holds 4 bytes; int32[2] needs");
    c = fwd_extras();
    c.bufs[c.desc.workspace - 1].live = 0;
    add("fwd_workspace_released", &c, INVALID, "desc->workspace is not a valid cl_mem");
    c = fwd_extras();
    c.bufs[c.desc.workspace - 1].foreign = 1;
    add("fwd_workspace_foreign", &c, INVALID, "desc->workspace belongs to another cl_context");
    c = fwd_extras();
    c.bufs[c.desc.workspace - 1].flags = RO;
    add("fwd_workspace_read_only", &c, INVALID, "desc->workspace must be CL_MEM_READ_WRITE");
    c = fwd_extras();
    c.desc.workspace_size = (1 << 20) + 1;
    add("fwd_workspace_too_small", &c, SMALL, "desc->workspace_size=1048577 but desc->workspace holds 1048576");

    /* aliasing */
    c = fwd();
    c.bufs[c.t[FZ_Q].buf].flags = RW;
    c.t[FZ_OUT].buf = c.t[FZ_Q].buf;
    add("fwd_out_aliases_q", &c, INVALID, "out and q alias");
    c = fwd();
    c.t[FZ_LSE].buf = c.t[FZ_OUT].buf;
    c.t[FZ_LSE].offset = 2048 - 4;
    c.bufs[c.t[FZ_OUT].buf].size = 4096;
    add("fwd_lse_overlaps_out_by_one", &c, INVALID, "out and lse alias");
    c = fwd();
    c.bufs[c.t[FZ_K].buf].flags = RW;
    c.t[FZ_OUT].buf = (uint8_t)mksub(&c, c.t[FZ_K].buf, 2048, 2048, RW);
    add("fwd_out_sub_buffer_aliases_k", &c, INVALID, "out and k alias");
    c = fwd();
    c.bufs[c.t[FZ_K].buf].flags = RW;
    c.t[FZ_OUT].buf = (uint8_t)mksub(&c, c.t[FZ_K].buf, 2048, 2048, RW);
    c.t[FZ_K].dims[2] = SK / 2; /* k now ends where the sub-buffer starts */
    c.t[FZ_K].strides[1] = SK / 2 * D;
    c.t[FZ_K].strides[0] = HKV * SK / 2 * D;
    c.t[FZ_V].dims[2] = SK / 2;
    add("fwd_valid_out_sub_buffer_beside_k", &c, OK, "");
    c = fwd_extras();
    c.bufs[c.t[FZ_BIAS].buf].flags = RW;
    c.bufs[c.t[FZ_BIAS].buf].size = 4096;
    c.t[FZ_LSE].buf = c.t[FZ_BIAS].buf;
    c.t[FZ_LSE].offset = HQ * SK * 2 - 4;
    add("fwd_lse_aliases_bias", &c, INVALID, "lse and bias alias");

    /* out in the buffer desc->seqlens_k reads, and lse in the workspace: validate.c has no
       rule about these yet (the fuzzer notes them), so the status is not checked */
    c = fwd_extras();
    c.t[FZ_OUT].buf = (uint8_t)(c.desc.seqlens_k - 1);
    c.bufs[c.desc.seqlens_k - 1].size = 4096;
    add("fwd_out_in_seqlens_buffer", &c, ANY, "");
    c = fwd_extras();
    c.t[FZ_LSE].buf = (uint8_t)(c.desc.workspace - 1);
    add("fwd_lse_in_workspace", &c, ANY, "");

    /* raw buffer facts: a sub-buffer origin near 2^64 (no OpenCL runtime reports that) */
    c = fwd();
    c.raw = 1;
    c.t[FZ_OUT].buf = (uint8_t)mksub(&c, c.t[FZ_Q].buf, UINT64_MAX - 1024, 2048, RW);
    add("raw_sub_buffer_origin_wraps", &c, OK, "");
}

/* ---------------------------------------------------------------------------------------- */
/* Merge                                                                                      */
/* ---------------------------------------------------------------------------------------- */

enum { NP = 3 };

/* NP parts out [B, HQ, SQ, DV] (f16) in one buffer and their lses (f32) in another; out (f32)
   and lse in two more. */
static fz_case merge_of(int np)
{
    fz_case c = blank(FZ_MERGE);
    c.nparts = (uint8_t)(np - 1);
    const uint64_t part = B * HQ * SQ * DV * 2, rows = B * HQ * SQ * 4;
    int outs = mkbuf(&c, np * part, RO), lses = mkbuf(&c, np * rows, RO);
    dense(&c.t[FZ_MOUT], mkbuf(&c, B * HQ * SQ * DV * 4, WO), CLATTN_F32, B, HQ, SQ, DV);
    dense(&c.t[FZ_MLSE], mkbuf(&c, rows, RW), CLATTN_F32, B, HQ, SQ, 1);
    for (int p = 0; p < np; p++) {
        fz_tensor *o = &c.t[FZ_MPARTS + p], *l = &c.t[FZ_MPARTS + np + p];
        dense(o, outs, CLATTN_F16, B, HQ, SQ, DV);
        o->offset = p * part;
        dense(l, lses, CLATTN_F32, B, HQ, SQ, 1);
        l->offset = p * rows;
    }
    return c;
}

static fz_case merge(void) { return merge_of(NP); }

static void merge_seeds(void)
{
    fz_case c = merge();
    add("merge_valid", &c, OK, "");
    c = merge_of(1);
    add("merge_valid_one_part", &c, OK, "");
    c = merge_of(FZ_MAX_PARTS);
    add("merge_valid_max_parts", &c, OK, "");
    c = merge();
    c.t[FZ_MPARTS + 1].offset = 0; /* parts may share bytes: they are inputs */
    c.t[FZ_MPARTS + NP + 2] = c.t[FZ_MPARTS + NP];
    add("merge_valid_parts_share_bytes", &c, OK, "");
    c = merge();
    c.num_wait = 1;
    c.wait_null = 1;
    add("merge_wait_list_null", &c, INVALID, "wait_list is NULL with num_wait=1");
    c = merge();
    c.t[FZ_MPARTS + 1].present = 0;
    add("merge_outs_null", &c, INVALID, "outs[1] is NULL");
    c = merge();
    c.t[FZ_MPARTS + NP].present = 0;
    add("merge_lses_null", &c, INVALID, "lses[0] is NULL");
    c = merge();
    c.t[FZ_MOUT].present = 0;
    add("merge_out_null", &c, INVALID, "out is NULL");
    c = merge();
    c.t[FZ_MLSE].present = 0;
    add("merge_lse_null", &c, INVALID, "lse is NULL");
    c = merge();
    c.t[FZ_MOUT].dims[2] = SQ - 1;
    add("merge_out_shape", &c, INVALID, "out.dims[2]=7 does not match outs[0].dims[2]=8");
    c = merge();
    c.t[FZ_MPARTS + 2].dims[1] = 1;
    add("merge_part_shape", &c, INVALID, "outs[2].dims[1]=1 does not match outs[0].dims[1]=4");
    c = merge();
    c.t[FZ_MLSE].dims[3] = DV;
    add("merge_lse_shape", &c, INVALID, "lse dims [2,4,8,8] are not [2,4,8,1]");
    c = merge();
    c.t[FZ_MPARTS + NP + 1].dtype = CLATTN_F16;
    add("merge_lses_dtype", &c, INVALID, "lses[1].dtype=1: lse is f32");
    c = merge();
    c.t[FZ_MPARTS].dtype = 5;
    add("merge_outs_dtype", &c, INVALID, "outs[0].dtype=5 is not a clattn_dtype");
    c = merge();
    c.bufs[c.t[FZ_MOUT].buf].flags = RO;
    add("merge_out_read_only", &c, INVALID, "out.buffer is CL_MEM_READ_ONLY");
    c = merge();
    c.bufs[c.t[FZ_MPARTS].buf].flags = WO;
    add("merge_outs_write_only", &c, INVALID, "outs[0].buffer is CL_MEM_WRITE_ONLY");
    c = merge();
    c.bufs[c.t[FZ_MPARTS].buf].size -= 2;
    add("merge_last_part_past_end", &c, SMALL, "outs[2]: the view needs");
    c = merge();
    c.bufs[c.t[FZ_MLSE].buf].foreign = 1;
    add("merge_lse_foreign", &c, INVALID, "lse.buffer belongs to another cl_context");
    c = merge();
    c.t[FZ_MOUT].strides[0] = 0;
    add("merge_out_overlaps_itself", &c, INVALID, "out.strides[0]=0 makes elements of the output overlap");
    c = merge();
    c.bufs[c.t[FZ_MPARTS].buf].flags = RW;
    c.t[FZ_MOUT].buf = (uint8_t)mksub(&c, c.t[FZ_MPARTS].buf, 512, 2048, RW);
    c.t[FZ_MOUT].dtype = CLATTN_F16;
    add("merge_out_sub_buffer_aliases_parts", &c, INVALID, "out and outs[0] alias");
    c = merge();
    c.bufs[c.t[FZ_MPARTS + NP].buf].flags = RW;
    c.t[FZ_MLSE].buf = c.t[FZ_MPARTS + NP].buf;
    c.t[FZ_MLSE].offset = 2 * B * HQ * SQ * 4;
    add("merge_lse_aliases_lses", &c, INVALID, "lse and lses[2] alias");
}

/* ---------------------------------------------------------------------------------------- */
/* Backward                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* The forward's q, k, v, out, lse (inputs here, read-only buffers), dout like out, and dq, dk,
   dv like q, k, v in their own buffers. */
static fz_case bwd(void)
{
    fz_case c = blank(FZ_BACKWARD);
    dense(&c.t[FZ_BQ], mkbuf(&c, B * HQ * SQ * D * 4, RO), CLATTN_F32, B, HQ, SQ, D);
    dense(&c.t[FZ_BK], mkbuf(&c, B * HKV * SK * D * 4, RO), CLATTN_F32, B, HKV, SK, D);
    dense(&c.t[FZ_BV], mkbuf(&c, B * HKV * SK * DV * 4, RO), CLATTN_F32, B, HKV, SK, DV);
    dense(&c.t[FZ_BOUT], mkbuf(&c, B * HQ * SQ * DV * 2, RO), CLATTN_F16, B, HQ, SQ, DV);
    dense(&c.t[FZ_BDOUT], mkbuf(&c, B * HQ * SQ * DV * 2, RO), CLATTN_F16, B, HQ, SQ, DV);
    dense(&c.t[FZ_BLSE], mkbuf(&c, B * HQ * SQ * 4, RO), CLATTN_F32, B, HQ, SQ, 1);
    dense(&c.t[FZ_BDQ], mkbuf(&c, B * HQ * SQ * D * 4, WO), CLATTN_F32, B, HQ, SQ, D);
    dense(&c.t[FZ_BDK], mkbuf(&c, B * HKV * SK * D * 4, RW), CLATTN_F32, B, HKV, SK, D);
    dense(&c.t[FZ_BDV], mkbuf(&c, B * HKV * SK * DV * 4, RW), CLATTN_F32, B, HKV, SK, DV);
    return c;
}

static void backward_seeds(void)
{
    fz_case c = bwd();
    add("bwd_valid", &c, OK, "");

    /* bias, seqlens, a causal window; bf16 gradients in one buffer */
    c = bwd();
    dense(&c.t[FZ_BBIAS], mkbuf(&c, B * SQ * SK * 4, RO), CLATTN_F32, B, 1, SQ, SK);
    c.desc.bias = 1;
    c.desc.seqlens_q = (uint8_t)(mkbuf(&c, B * 4, RO) + 1);
    c.desc.seqlens_k = c.desc.seqlens_q;
    c.desc.causal = 1;
    c.desc.window_left = 4;
    {
        int g = mkbuf(&c, 16384, RW);
        dense(&c.t[FZ_BDQ], g, CLATTN_BF16, B, HQ, SQ, D);
        dense(&c.t[FZ_BDK], g, CLATTN_BF16, B, HKV, SK, D);
        dense(&c.t[FZ_BDV], g, CLATTN_BF16, B, HKV, SK, DV);
        c.t[FZ_BDK].offset = 4096;
        c.t[FZ_BDV].offset = 8192;
    }
    add("bwd_valid_bias_seqlens_one_gradient_buffer", &c, OK, "");

    c = bwd(); /* inputs may share bytes: out and dout one view */
    c.t[FZ_BDOUT] = c.t[FZ_BOUT];
    add("bwd_valid_dout_is_out", &c, OK, "");

    c = bwd();
    c.desc.dropout_p = -0.5f;
    add("bwd_desc_dropout", &c, INVALID, "desc->dropout_p=-0.5");
    c = bwd();
    c.t[FZ_BQ].present = 0;
    add("bwd_q_null", &c, INVALID, "q is NULL");
    c = bwd();
    c.t[FZ_BOUT].present = 0;
    add("bwd_out_null", &c, INVALID, "out is NULL");
    c = bwd();
    c.t[FZ_BLSE].present = 0;
    add("bwd_lse_null", &c, INVALID, "lse is NULL: the backward needs the forward's lse");
    c = bwd();
    c.t[FZ_BDOUT].present = 0;
    add("bwd_dout_null", &c, INVALID, "dout is NULL");
    c = bwd();
    c.t[FZ_BDK].present = 0;
    add("bwd_dk_null", &c, INVALID, "dk is NULL");
    c = bwd();
    c.t[FZ_BDOUT].dims[3] = D;
    add("bwd_dout_shape", &c, INVALID, "dout.dims[3]=16 does not match out.dims[3]=8");
    c = bwd();
    c.t[FZ_BDQ].dims[1] = HKV;
    add("bwd_dq_shape", &c, INVALID, "dq.dims[1]=2 does not match q.dims[1]=4");
    c = bwd();
    c.t[FZ_BDV].dims[2] = SK / 2;
    add("bwd_dv_shape", &c, INVALID, "dv.dims[2]=8 does not match v.dims[2]=16");
    c = bwd();
    c.bufs[c.t[FZ_BOUT].buf].flags = WO;
    add("bwd_out_write_only", &c, INVALID, "out.buffer is CL_MEM_WRITE_ONLY but out is an input");
    c = bwd();
    c.bufs[c.t[FZ_BDV].buf].flags = RO;
    add("bwd_dv_read_only", &c, INVALID, "dv.buffer is CL_MEM_READ_ONLY but dv is an output");
    c = bwd();   /* its gradients are in write-only buffers */
    c.desc.accumulate = 1;
    add("bwd_accumulate_dq_write_only", &c, INVALID,
        "dq.buffer is CL_MEM_WRITE_ONLY but desc->accumulate reads dq");
    for (int g = FZ_BDQ; g <= FZ_BDV; g++)
        c.bufs[c.t[g].buf].flags = RW;
    add("bwd_accumulate", &c, OK, "");
    c.desc.accumulate = -1;
    add("bwd_accumulate_minus_1", &c, INVALID, "desc->accumulate=-1");
    c = bwd();
    c.bufs[c.t[FZ_BDOUT].buf].foreign = 1;
    add("bwd_dout_foreign", &c, INVALID, "dout.buffer belongs to another cl_context");
    c = bwd();
    c.t[FZ_BDOUT].dtype = CLATTN_F32;
    c.bufs[c.t[FZ_BDOUT].buf].size *= 2;
    add("bwd_dout_dtype", &c, INVALID, "dout.dtype=0 differs from out.dtype=1");
    c = bwd();
    c.t[FZ_BDK].dtype = CLATTN_F16;
    add("bwd_gradient_dtypes", &c, INVALID, "dq.dtype=0, dk.dtype=1, dv.dtype=0");
    c = bwd();
    c.t[FZ_BDQ].dtype = 3;
    add("bwd_dq_dtype_unknown", &c, INVALID, "dq.dtype=3 is not a clattn_dtype");
    c = bwd();
    c.bufs[c.t[FZ_BDV].buf].size -= 4;
    add("bwd_dv_past_end_by_one", &c, SMALL, "dv: the view needs 0 + 2048 bytes but dv.buffer holds 2044");
    c = bwd();
    c.t[FZ_BDQ].strides[2] = 0;
    add("bwd_dq_overlaps_itself", &c, INVALID, "dq.strides[2]=0 makes elements of the output overlap");
    c = bwd();
    c.bufs[c.t[FZ_BQ].buf].flags = RW;
    c.t[FZ_BDQ].buf = c.t[FZ_BQ].buf;
    add("bwd_dq_aliases_q", &c, INVALID, "dq and q alias");
    c = bwd();
    c.t[FZ_BDV].buf = c.t[FZ_BDK].buf;
    c.t[FZ_BDV].offset = 4096 - 2048 + 4;
    c.bufs[c.t[FZ_BDK].buf].size = 8192;
    add("bwd_dv_overlaps_dk", &c, INVALID, "dk and dv alias");
    c = bwd();
    c.bufs[c.t[FZ_BLSE].buf].flags = RW;
    c.t[FZ_BDK].buf = (uint8_t)mksub(&c, c.t[FZ_BLSE].buf, 0, 256, RW);
    c.bufs[c.t[FZ_BLSE].buf].size = 8192;
    c.bufs[c.t[FZ_BDK].buf].size = 4096;
    add("bwd_dk_sub_buffer_aliases_lse", &c, INVALID, "dk and lse alias");
}

size_t fz_seeds(fz_seed **seeds)
{
    list = NULL;
    count = cap = 0;
    forward_seeds();
    sinks_seeds();
    backward_seeds();
    merge_seeds();
    *seeds = list;
    return count;
}
