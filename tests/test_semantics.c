/* The forward's semantics (docs/semantics.md: "Scores", "Which keys a row sees", "Softmax, lse
   and empty rows", "Precise rules", "Algorithms"), as ONE table of cases (test_case) run for
   every algorithm (FUSED, SPLIT_KV, UNFUSED, AUTO) x every q/k/v storage type (f32, f16,
   bf16): one Criterion test per (algo, dtype), each in its own process.

   Covered: scale (default, explicit, negative); causal with both aligns and Sq < Sk, Sq == Sk,
   Sq > Sk; windows left/right with and without causal, both aligns; softcap; bias [B,Hq,Sq,Sk]
   and broadcast [1,Hq,Sq,Sk], [B,1,Sq,Sk], [B,Hq,1,Sk], [1,1,1,Sk], stride-0 broadcast, with
   -INFINITY entries, rows whose visible bias is all -INFINITY, NaN at visible and at invisible
   keys; seqlens_q / seqlens_k with 0, partial and full entries, and invalid entries (< 0,
   > dim: that batch NaN); GQA/MQA; D != Dv; NaN in one query row; rows without keys; out and
   bias in f16/bf16; decode-like shapes with 1100-2100 keys, which SPLIT_KV (and AUTO) really
   split, some splits wholly invisible; head dims over 256 (only UNFUSED and AUTO run them,
   FUSED and SPLIT_KV refuse with UNSUPPORTED); lse == NULL gives bit-identical out; the plan
   names the forced algorithm and plan's status is forward's.

   f16/bf16 inputs are rounded on the host (tt_set) and the reference reads the same rounded
   values, so the arithmetic tolerance stays that of f32 (TOL_F32_OUT, TOL_F32_LSE); an out
   stored in f16/bf16 adds the rounding of that format (TOL_OUT_STORE_F16/BF16). */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <criterion/parameterized.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

TestSuite(semantics, .fini = test_ctx_release);

/* ---- the table --------------------------------------------------------------------------- */

#define SHAPE TC_SHAPE
#define TL TC_TL
#define WIN TC_WIN
#define SEQ TC_SEQ

/* Each case runs for every (algo, q/k/v dtype): tc_build makes the tensors (the bias with what
   bias_inf plants, nan_q, padded layouts), tc_check_forward checks the outputs and that the
   reference has the empty and NaN rows `want` says (TC_WANT_*, common.h). */
static const test_case table[] = {
    /* scale */
    {"scale default 1/sqrt(D)", SHAPE(2, 2, 2, 33, 47, 64, 64), .also_without_lse = 1},
    {"scale 0.5", SHAPE(1, 2, 1, 29, 41, 32, 32), .scale = 0.5f},
    {"scale -0.3, causal", SHAPE(1, 2, 1, 29, 41, 64, 32), .scale = -0.3f, .causal = 1},
    {"scale 2 (sharp)", SHAPE(1, 2, 2, 40, 40, 16, 16), .scale = 2.0f},

    /* causal, both aligns, Sq < Sk, Sq == Sk, Sq > Sk */
    {"causal BR Sq<Sk", SHAPE(1, 2, 1, 37, 90, 64, 64), .causal = 1},
    {"causal BR Sq==Sk", SHAPE(2, 2, 2, 70, 70, 32, 32), .causal = 1, .also_without_lse = 1},
    {"causal BR Sq>Sk", SHAPE(1, 2, 1, 90, 37, 64, 64), .causal = 1, .want = TC_WANT_EMPTY},
    {"causal TL Sq<Sk", SHAPE(1, 2, 1, 37, 90, 16, 16), .causal = 1, TL},
    {"causal TL Sq==Sk", SHAPE(1, 2, 2, 64, 64, 128, 128), .causal = 1, TL},
    {"causal TL Sq>Sk", SHAPE(1, 2, 1, 90, 37, 48, 48), .causal = 1, TL},
    {"causal BR decode Sq=1", SHAPE(1, 4, 1, 1, 150, 64, 64), .causal = 1},
    {"causal TL decode Sq=1 (one key)", SHAPE(1, 2, 1, 1, 150, 32, 32), .causal = 1, TL},
    {"causal BR Sq=3 Sk=1100 (several splits)", SHAPE(2, 4, 1, 3, 1100, 64, 64), .causal = 1,
     .also_without_lse = 1},
    {"causal TL Sq=12 Sk=1100 (late splits invisible)", SHAPE(1, 1, 1, 12, 1100, 32, 32),
     .causal = 1, TL},
    {"causal BR Sq=7 Sk=2100 + window (2,-1)", SHAPE(1, 1, 1, 7, 2100, 32, 32), .causal = 1,
     .window = WIN(2, -1)},

    /* windows */
    {"window left 5, BR Sq<Sk", SHAPE(1, 2, 1, 40, 70, 16, 24), .window = WIN(5, -1)},
    {"window right 3, TL Sq==Sk", SHAPE(1, 2, 1, 50, 50, 16, 24), TL, .window = WIN(-1, 3)},
    {"window (4,2), BR Sq>Sk", SHAPE(1, 2, 2, 70, 40, 32, 32), .window = WIN(4, 2),
     .want = TC_WANT_EMPTY},
    {"window left 8 + causal BR Sq<Sk", SHAPE(1, 2, 1, 31, 64, 64, 64), .causal = 1,
     .window = WIN(8, -1)},
    {"window left 3 + causal TL Sq>Sk", SHAPE(1, 2, 1, 64, 31, 16, 16), .causal = 1, TL,
     .window = WIN(3, -1), .want = TC_WANT_EMPTY},
    {"window (0,0) TL: diagonal only", SHAPE(1, 2, 1, 40, 40, 32, 32), TL,
     .window = WIN(0, 0)},
    {"window (10,10) + causal BR Sq==Sk", SHAPE(1, 2, 2, 100, 100, 64, 64), .causal = 1,
     .window = WIN(10, 10)},
    {"window (1,1) TL Sq<Sk (right keys of no row)", SHAPE(1, 2, 1, 20, 60, 16, 16), TL,
     .window = WIN(1, 1)},
    {"window (100,0) decode Sq=2 Sk=1100 (whole splits invisible)",
     SHAPE(1, 4, 2, 2, 1100, 64, 64), .window = WIN(100, 0), .also_without_lse = 1},

    /* softcap */
    {"softcap 5, scale 1", SHAPE(1, 2, 1, 40, 60, 32, 32), .scale = 1.0f, .softcap = 5.0f},
    {"softcap 2 + causal + full bias", SHAPE(2, 2, 1, 33, 47, 64, 64), .softcap = 2.0f,
     .causal = 1, .bias = TC_BIAS_FULL},
    {"softcap 3, scale -1, window", SHAPE(1, 2, 2, 30, 30, 16, 16), .scale = -1.0f,
     .softcap = 3.0f, .window = WIN(6, 6)},
    {"softcap 4, scale 1, GQA, Sq=8 Sk=1100", SHAPE(1, 2, 1, 8, 1100, 64, 64), .scale = 1.0f,
     .softcap = 4.0f},

    /* bias */
    {"bias [B,Hq,Sq,Sk] with -inf", SHAPE(2, 4, 2, 33, 57, 32, 32), .bias = TC_BIAS_FULL,
     .bias_inf = TC_INF_SCATTER, .also_without_lse = 1},
    {"bias [1,Hq,Sq,Sk] + causal", SHAPE(2, 2, 1, 40, 40, 64, 64), .bias = TC_BIAS_BATCH1,
     .bias_inf = TC_INF_SCATTER, .causal = 1},
    {"bias [B,1,Sq,Sk] + window", SHAPE(2, 4, 4, 35, 50, 32, 16), .bias = TC_BIAS_HEAD1,
     .window = WIN(7, 3)},
    {"bias [B,Hq,1,Sk]", SHAPE(2, 2, 1, 30, 45, 16, 16), .bias = TC_BIAS_ROW1,
     .bias_inf = TC_INF_SCATTER},
    {"bias [1,1,1,Sk] with -inf", SHAPE(2, 2, 2, 31, 64, 64, 64), .bias = TC_BIAS_KEYS,
     .bias_inf = TC_INF_SCATTER},
    {"bias stride-0 over batch and heads", SHAPE(2, 3, 1, 25, 39, 32, 32),
     .bias = TC_BIAS_STRIDE0, .bias_inf = TC_INF_SCATTER},
    {"bias row all -inf where visible (causal BR)", SHAPE(2, 2, 1, 40, 50, 32, 32),
     .causal = 1, .bias = TC_BIAS_FULL, .bias_inf = TC_INF_ROW | TC_INF_SCATTER,
     .special_row = 17, .want = TC_WANT_EMPTY},
    {"bias [B,1,Sq,Sk] row all -inf (every head)", SHAPE(2, 4, 2, 30, 30, 16, 16),
     .bias = TC_BIAS_HEAD1, .bias_inf = TC_INF_ROW, .special_row = 0, .want = TC_WANT_EMPTY},
    {"bias f16 [B,Hq,Sq,Sk] with -inf", SHAPE(1, 2, 1, 33, 47, 64, 64), .bias = TC_BIAS_FULL,
     .bias_dtype = CLATTN_F16, .bias_inf = TC_INF_SCATTER | TC_INF_ROW, .special_row = 5,
     .want = TC_WANT_EMPTY},
    {"bias bf16 [1,Hq,Sq,Sk] + causal TL", SHAPE(2, 2, 2, 29, 29, 32, 32),
     .bias = TC_BIAS_BATCH1, .bias_dtype = CLATTN_BF16, .bias_inf = TC_INF_SCATTER,
     .causal = 1, TL},
    {"bias NaN: at a visible key (row NaN), at invisible keys (nothing)",
     SHAPE(2, 2, 1, 30, 40, 32, 32), .causal = 1, .window = WIN(12, -1), .bias = TC_BIAS_FULL,
     .bias_inf = TC_NAN_KEYS | TC_INF_SCATTER, .special_row = 20, .want = TC_WANT_NAN},
    {"bias [1,1,1,Sk] decode Sk=1100", SHAPE(2, 4, 1, 1, 1100, 64, 64), .bias = TC_BIAS_KEYS,
     .bias_inf = TC_INF_SCATTER},

    /* seqlens */
    {"seqlens_q {5,0,33}", SHAPE(3, 2, 1, 33, 40, 32, 32), .seqlens_q = SEQ(5, 0, 33),
     .want = TC_WANT_EMPTY, .also_without_lse = 1},
    {"seqlens_k {40,0,17}", SHAPE(3, 2, 1, 33, 40, 32, 32), .seqlens_k = SEQ(40, 0, 17),
     .want = TC_WANT_EMPTY},
    {"seqlens q,k + causal BR", SHAPE(3, 2, 2, 33, 40, 64, 64), .causal = 1,
     .seqlens_q = SEQ(10, 33, 1), .seqlens_k = SEQ(40, 12, 0), .want = TC_WANT_EMPTY},
    {"seqlens q,k + causal TL + window", SHAPE(2, 2, 1, 50, 45, 16, 16), .causal = 1, TL,
     .window = WIN(5, -1), .seqlens_q = SEQ(50, 20), .seqlens_k = SEQ(11, 45),
     .want = TC_WANT_EMPTY},
    {"seqlens q,k + BR window (3,3)", SHAPE(2, 2, 1, 40, 60, 32, 32), .window = WIN(3, 3),
     .seqlens_q = SEQ(30, 40), .seqlens_k = SEQ(60, 25), .want = TC_WANT_EMPTY},
    {"seqlens_q -1 (invalid): batch 0 NaN", SHAPE(3, 2, 1, 33, 40, 32, 32),
     .seqlens_q = SEQ(-1, 33, 5), .want = TC_WANT_NAN | TC_WANT_EMPTY},
    {"seqlens_k 41 > Sk (invalid): batch 1 NaN", SHAPE(3, 2, 1, 33, 40, 32, 32), .causal = 1,
     .seqlens_k = SEQ(12, 41, 40), .want = TC_WANT_NAN},
    {"seqlens_q 34 > Sq (invalid), seqlens_k -5", SHAPE(3, 2, 2, 33, 40, 16, 16),
     .seqlens_q = SEQ(34, 3, 33), .seqlens_k = SEQ(40, 40, -5),
     .want = TC_WANT_NAN | TC_WANT_EMPTY},
    {"seqlens + full bias with -inf", SHAPE(2, 2, 1, 30, 44, 32, 32), .bias = TC_BIAS_FULL,
     .bias_inf = TC_INF_SCATTER, .seqlens_q = SEQ(30, 7), .seqlens_k = SEQ(19, 44),
     .want = TC_WANT_EMPTY},
    {"seqlens_k decode Sk=1100 {1100,1,600,0}", SHAPE(4, 2, 1, 1, 1100, 64, 64),
     .seqlens_k = SEQ(1100, 1, 600, 0), .want = TC_WANT_EMPTY},
    {"seqlens q,k causal BR Sq=4 Sk=1100", SHAPE(2, 2, 1, 4, 1100, 32, 32), .causal = 1,
     .seqlens_q = SEQ(4, 2), .seqlens_k = SEQ(700, 1100), .want = TC_WANT_EMPTY},
    {"seqlens q,k + causal BR + key bias, Sq=12 Sk=1100", SHAPE(2, 1, 1, 12, 1100, 64, 64),
     .causal = 1, .seqlens_q = SEQ(12, 5), .seqlens_k = SEQ(1100, 300), .bias = TC_BIAS_KEYS,
     .bias_inf = TC_INF_SCATTER, .want = TC_WANT_EMPTY},

    /* GQA / MQA */
    {"GQA 8:2 causal", SHAPE(2, 8, 2, 33, 45, 32, 32), .causal = 1},
    {"MQA 6:1 decode", SHAPE(1, 6, 1, 1, 130, 64, 64)},
    {"GQA 6:3 window", SHAPE(1, 6, 3, 40, 50, 16, 32), .window = WIN(9, 2)},

    /* D != Dv, odd and large head dims */
    {"D 64 Dv 16", SHAPE(1, 2, 1, 31, 57, 64, 16)},
    {"D 16 Dv 128 causal TL", SHAPE(1, 2, 2, 40, 40, 16, 128), .causal = 1, TL},
    {"D 128 Dv 64 causal", SHAPE(2, 2, 1, 50, 70, 128, 64), .causal = 1},
    {"D 5 Dv 3", SHAPE(1, 3, 1, 23, 29, 5, 3)},
    {"D 256 Dv 256 causal", SHAPE(1, 2, 1, 40, 70, 256, 256), .causal = 1},

    /* NaN, empty rows */
    {"NaN in one q row, causal", SHAPE(2, 2, 1, 40, 40, 32, 32), .causal = 1, .nan_q = 1,
     .special_row = 20, .want = TC_WANT_NAN},
    {"NaN in one q row + bias + window", SHAPE(1, 4, 2, 33, 50, 64, 64), .bias = TC_BIAS_FULL,
     .window = WIN(10, 0), .nan_q = 1, .special_row = 32, .want = TC_WANT_NAN},
    {"NaN in a q row without keys: still 0/-inf", SHAPE(1, 2, 1, 30, 10, 16, 16),
     .causal = 1, .nan_q = 1, .special_row = 3, .want = TC_WANT_EMPTY},
    {"NaN in one q row, decode Sk=1100", SHAPE(2, 4, 1, 1, 1100, 64, 64), .nan_q = 1,
     .special_row = 0, .want = TC_WANT_NAN},

    /* layouts */
    {"padded, permuted views with offsets, causal", SHAPE(2, 4, 2, 37, 53, 40, 24),
     .causal = 1, TC_PADDED, .bias = TC_BIAS_HEAD1, .bias_inf = TC_INF_SCATTER},

    /* out in f16 / bf16 */
    {"out f16, causal", SHAPE(2, 2, 1, 45, 60, 64, 64), .out_dtype = CLATTN_F16, .causal = 1,
     .also_without_lse = 1},
    {"out bf16, bias bf16", SHAPE(1, 4, 2, 33, 47, 32, 32), .out_dtype = CLATTN_BF16,
     .bias = TC_BIAS_FULL, .bias_dtype = CLATTN_BF16, .bias_inf = TC_INF_SCATTER},
    {"out f16, seqlens incl. invalid, bias f16", SHAPE(3, 2, 1, 30, 40, 16, 16),
     .out_dtype = CLATTN_F16, .bias = TC_BIAS_KEYS, .bias_dtype = CLATTN_F16,
     .seqlens_q = SEQ(30, 12, 31), .seqlens_k = SEQ(0, 40, 20),
     .want = TC_WANT_EMPTY | TC_WANT_NAN},
    {"out bf16, decode Sk=1100, window", SHAPE(1, 4, 1, 2, 1100, 64, 64),
     .out_dtype = CLATTN_BF16, .window = WIN(300, -1)},

    /* head dims over 256: only UNFUSED and AUTO */
    {"D 384 Dv 384 causal", SHAPE(1, 2, 1, 40, 70, 384, 384), .causal = 1},
    {"D 512 Dv 512 bias + seqlens", SHAPE(2, 1, 1, 33, 50, 512, 512), .bias = TC_BIAS_FULL,
     .bias_inf = TC_INF_SCATTER, .seqlens_k = SEQ(50, 21), .also_without_lse = 1},
    {"D 64 Dv 320", SHAPE(1, 2, 2, 30, 40, 64, 320), .window = WIN(5, 5)},
};
#define N_CASES (sizeof table / sizeof table[0])

static int big_head(const test_case *c)
{
    return c->D > 256 || c->Dv > 256;
}

/* The first word of clattn_attention_plan for a forced algorithm. */
static const char *plan_word(clattn_algo a)
{
    switch (a) {
    case CLATTN_ALGO_FUSED: return "fused";
    case CLATTN_ALGO_SPLIT_KV: return "split_kv";
    case CLATTN_ALGO_UNFUSED: return "unfused";
    default: return NULL;
    }
}

/* ---- the worst errors of one (algo, dtype) ----------------------------------------------- */

typedef struct totals {
    int run, refused, empty_rows, nan_rows;
    int auto_fused, auto_split, auto_unfused;
    int multi_split;                 /* cases whose plan says splits=N with N > 1 */
    cmp_result out[3], lse;          /* out by its storage dtype */
    char out_case[3][120], lse_case[120];
} totals;

/* FUSED and SPLIT_KV with a head dim over 256: UNSUPPORTED, a message, no event, nothing
   written. */
static void expect_refused(tc_run *r, clattn_status st, cl_event ev, const char *label,
                           totals *t)
{
    cr_expect_eq(st, CLATTN_ERROR_UNSUPPORTED, "%s: want UNSUPPORTED, got %s (%s)", label,
                 clattn_status_string(st), clattn_last_error());
    cr_expect_str_not_empty(clattn_last_error(), "%s: UNSUPPORTED without a message", label);
    cr_log_info("%s: %s: %s", label, clattn_status_string(st), clattn_last_error());
    cr_expect_null(ev, "%s: *event not cleared on failure", label);
    if (st == CLATTN_SUCCESS && ev)
        test_wait_event(ev, label);
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    tt_download(&r->out);
    tt_download(&r->lse);
    size_t bad_out = canary_first_bad(r->out.host, r->out.bytes);
    size_t bad_lse = canary_first_bad(r->lse.host, r->lse.bytes);
    cr_expect(bad_out == SIZE_MAX && bad_lse == SIZE_MAX,
              "%s: refused call wrote out (byte %zu) or lse (byte %zu)", label, bad_out, bad_lse);
    t->refused++;
}

/* Run lse == NULL on fresh canary and compare out bit for bit with the call with lse. */
static void check_without_lse(tc_run *r, const char *label)
{
    tc_args a;
    tc_args_init(&a, r);
    a.lsep = NULL;
    unsigned char *with = malloc(r->out.bytes);
    cr_assert_not_null(with);
    memcpy(with, r->out.host, r->out.bytes);
    buf_fill_canary(r->out.view.buffer);
    buf_fill_canary(r->lse.view.buffer);
    clattn_status st = tc_call_forward(&a, NULL);
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s, lse NULL: %s: %s", label, clattn_status_string(st),
                 clattn_last_error());
    cr_assert_eq(clFinish(test_queue()), CL_SUCCESS);
    tt_download(&r->out);
    cr_expect(memcmp(with, r->out.host, r->out.bytes) == 0,
              "%s: out with lse == NULL is not bit-identical to out with lse", label);
    size_t first;
    cr_expect(buf_canary_intact(r->lse.view.buffer, &first),
              "%s: lse == NULL, yet the lse buffer changed at byte %zu", label, first);
    free(with);
}

/* Check one case's outputs (tc_check_forward) and fold its errors into t. */
static void check_outputs(tc_run *r, const char *label, totals *t)
{
    const test_case *c = &r->c;
    tc_fwd_result res;
    tc_check_forward(r, label, &res);
    t->empty_rows += (int)res.empty_rows;
    t->nan_rows += (int)res.nan_rows;
    int o = (int)c->out_dtype;
    if (res.out.worst > t->out[o].worst || t->out[o].rows == 0)
        snprintf(t->out_case[o], sizeof t->out_case[o], "%s", c->name);
    cmp_merge(&t->out[o], &res.out);
    if (res.lse.worst > t->lse.worst || t->lse.rows == 0)
        snprintf(t->lse_case, sizeof t->lse_case, "%s", c->name);
    cmp_merge(&t->lse, &res.lse);
}

/* The plan of a call that ran: the forced algorithm's, or (AUTO) counted by what it chose. */
static void check_plan(const char *plan, const test_case *c, const char *label, totals *t)
{
    const char *word = plan_word(c->algo);
    size_t wl = word ? strlen(word) : 0;
    if (word)
        cr_expect(strncmp(plan, word, wl) == 0 && (plan[wl] == ' ' || plan[wl] == 0),
                  "%s: plan \"%s\" does not run %s", label, plan, word);
    else if (strncmp(plan, "unfused", 7) == 0)
        t->auto_unfused++;
    else if (strncmp(plan, "split_kv", 8) == 0)
        t->auto_split++;
    else if (strncmp(plan, "fused", 5) == 0)
        t->auto_fused++;
    else
        cr_expect(0, "%s: plan \"%s\" names no algorithm", label, plan);
    const char *splits = strstr(plan, "splits=");
    if (splits && atoi(splits + 7) > 1)
        t->multi_split++;
    if (c->algo == CLATTN_ALGO_AUTO && big_head(c))
        cr_expect(strncmp(plan, "unfused", 7) == 0, "%s: AUTO with a head dim over 256 "
                  "plans \"%s\", want unfused", label, plan);
}

static void run_case(const test_case *table_case, size_t index, clattn_algo algo,
                     clattn_dtype dt, totals *t)
{
    test_case c = *table_case;
    c.algo = algo;
    c.dtype = dt;
    c.seed = 0x5e3a0000u + index;
    char label[512];
    snprintf(label, sizeof label, "[%s %s] #%zu ", test_algo_name(algo), test_dtype_name(dt),
             index);
    tc_describe(&c, label + strlen(label), sizeof label - strlen(label));
    tc_run r;
    tc_build(&r, &c);
    tc_upload(&r);
    tc_args a;
    tc_args_init(&a, &r);
    int refuse = big_head(&c) && (algo == CLATTN_ALGO_FUSED || algo == CLATTN_ALGO_SPLIT_KV);

    char plan[256] = "";
    clattn_status pst = clattn_attention_plan(test_ctx(), &a.desc, &a.q, &a.k, &a.v, plan,
                                              sizeof plan);
    cl_event ev = (cl_event)&ev;   /* not NULL: the call sets it */
    clattn_status st = tc_call_forward(&a, &ev);
    cr_expect_eq(pst, st, "%s: plan returned %s, forward %s", label,
                 clattn_status_string(pst), clattn_status_string(st));
    if (refuse) {
        expect_refused(&r, st, ev, label, t);
        tc_free(&r);
        return;
    }
    test_skip_if_refused(st);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: %s: %s", label, clattn_status_string(st),
                 clattn_last_error());
    cr_expect_str_empty(clattn_last_error(), "%s: last error after success: %s", label,
                        clattn_last_error());
    test_wait_event(ev, label);
    check_plan(plan, &c, label, t);
    check_outputs(&r, label, t);
    if (c.also_without_lse)
        check_without_lse(&r, label);
    t->run++;
    tc_free(&r);
}

static void report(const totals *t, const char *what)
{
    char buf[200];
    cr_log_info("%s: %d cases run, %d refused (head dim > 256); reference rows: %d empty, "
                "%d NaN", what, t->run, t->refused, t->empty_rows, t->nan_rows);
    if (t->multi_split)
        cr_log_info("%s: %d cases split their keys across work-groups", what, t->multi_split);
    if (t->auto_fused + t->auto_split + t->auto_unfused)
        cr_log_info("%s: AUTO chose fused %d, split_kv %d, unfused %d", what, t->auto_fused,
                    t->auto_split, t->auto_unfused);
    for (int o = 0; o < 3; o++)
        if (t->out[o].rows)
            cr_log_info("%s: out (%s) worst %s; case: %s", what,
                        test_dtype_name((clattn_dtype)o),
                        cmp_describe(&t->out[o], buf, sizeof buf), t->out_case[o]);
    cr_log_info("%s: lse worst %s; case: %s", what, cmp_describe(&t->lse, buf, sizeof buf),
                t->lse_case);
    for (int o = 0; o < 3; o++) {
        double tol = test_out_tolerance((clattn_dtype)o);
        cr_assert(t->out[o].worst <= tol, "%s: out (%s) worst %g > %g (%s)", what,
                  test_dtype_name((clattn_dtype)o), t->out[o].worst, tol, t->out_case[o]);
    }
    cr_assert(t->lse.worst <= TOL_F32_LSE, "%s: lse worst %g > %g (%s)", what, t->lse.worst,
              TOL_F32_LSE, t->lse_case);
}

/* ---- one test per (algo, dtype) ---------------------------------------------------------- */

typedef struct sem_param {
    clattn_algo algo;
    clattn_dtype dtype;
} sem_param;

ParameterizedTestParameters(semantics, every_case_per_algo_and_dtype)
{
    static sem_param params[] = {
        {CLATTN_ALGO_FUSED, CLATTN_F32},    {CLATTN_ALGO_FUSED, CLATTN_F16},
        {CLATTN_ALGO_FUSED, CLATTN_BF16},   {CLATTN_ALGO_SPLIT_KV, CLATTN_F32},
        {CLATTN_ALGO_SPLIT_KV, CLATTN_F16}, {CLATTN_ALGO_SPLIT_KV, CLATTN_BF16},
        {CLATTN_ALGO_UNFUSED, CLATTN_F32},  {CLATTN_ALGO_UNFUSED, CLATTN_F16},
        {CLATTN_ALGO_UNFUSED, CLATTN_BF16}, {CLATTN_ALGO_AUTO, CLATTN_F32},
        {CLATTN_ALGO_AUTO, CLATTN_F16},     {CLATTN_ALGO_AUTO, CLATTN_BF16},
    };
    return cr_make_param_array(sem_param, params, sizeof params / sizeof params[0]);
}

ParameterizedTest(sem_param *p, semantics, every_case_per_algo_and_dtype, .timeout = 600)
{
    char what[64];
    snprintf(what, sizeof what, "%s q/k/v %s", test_algo_name(p->algo),
             test_dtype_name(p->dtype));
    totals t;
    memset(&t, 0, sizeof t);
    for (int o = 0; o < 3; o++)
        t.out[o] = cmp_none();
    t.lse = cmp_none();
    test_ctx();
    for (size_t i = 0; i < N_CASES; i++)
        run_case(&table[i], i, p->algo, p->dtype, &t);
    report(&t, what);
    int refusals = 0;
    for (size_t i = 0; i < N_CASES; i++)
        refusals += big_head(&table[i]);
    int forced_fused = p->algo == CLATTN_ALGO_FUSED || p->algo == CLATTN_ALGO_SPLIT_KV;
    cr_assert_eq(t.refused, forced_fused ? refusals : 0);
    cr_assert_eq(t.run + t.refused, (int)N_CASES);
    /* SPLIT_KV must really split the long-key cases, or the table tests only one range. How
       many it splits follows the device's compute units (src/plan.c): 8 cases or more with
       several, at least some on a one-unit device (PoCL's basic device). */
    if (p->algo == CLATTN_ALGO_SPLIT_KV) {
        cl_device_id device;
        cl_uint units = 0;
        cr_assert_eq(clGetCommandQueueInfo(test_queue(), CL_QUEUE_DEVICE, sizeof device, &device,
                                           NULL), CL_SUCCESS);
        cr_assert_eq(clGetDeviceInfo(device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units,
                                     NULL), CL_SUCCESS);
        const int want = units > 1 ? 8 : 4;
        cr_assert_geq(t.multi_split, want, "SPLIT_KV split the keys of only %d cases (%u compute "
                      "units)", t.multi_split, units);
    }
}
