/* Unit tests of the planner (src/plan.c) with fake device probes: no OpenCL device is used.
   They check the contract in src/plan.h as properties (limits, consistency, the CPU/GPU split),
   not exact block sizes, so that a retuned heuristic still passes. */
#include <criterion/criterion.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "plan.h"

/* ---------------------------------------------------------------------------------------- */
/* Fake devices                                                                              */
/* ---------------------------------------------------------------------------------------- */

static clattn_device_probe base_probe(const char *name)
{
    clattn_device_probe p;
    memset(&p, 0, sizeof p);
    p.device_class = CLATTN_DEVICE_CLASS_GPU;
    p.local_mem_dedicated = 1;
    p.preferred_vector_width_float = 1;
    p.max_mem_alloc_size = 4ull << 30;
    p.global_mem_size = 16ull << 30;
    snprintf(p.device_name, sizeof p.device_name, "%s", name);
    return p;
}

static clattn_device_probe probe_nvidia(void)
{
    clattn_device_probe p = base_probe("NVIDIA H100 80GB HBM3");
    p.vendor_id = 0x10de;
    p.compute_units = 132;
    p.max_work_group_size = 1024;
    p.max_work_item_size0 = 1024;
    p.local_mem_size = 48 * 1024;
    p.work_group_multiple = 32;
    p.has_fp16 = 1;
    return p;
}

static clattn_device_probe probe_amd(void)
{
    clattn_device_probe p = base_probe("gfx90a:sramecc+:xnack-");
    p.vendor_id = 0x1002;
    p.compute_units = 104;
    p.max_work_group_size = 256;
    p.max_work_item_size0 = 1024;
    p.local_mem_size = 64 * 1024;
    p.work_group_multiple = 64;
    p.has_fp16 = 1;
    return p;
}

static clattn_device_probe probe_amd_rdna(void)
{
    clattn_device_probe p = base_probe("gfx1100");
    p.vendor_id = 0x1002;
    p.compute_units = 48;
    p.max_work_group_size = 1024;
    p.max_work_item_size0 = 1024;
    p.local_mem_size = 64 * 1024;
    p.work_group_multiple = 64;
    p.has_fp16 = 1;
    return p;
}

static clattn_device_probe probe_intel(void)
{
    clattn_device_probe p = base_probe("Intel(R) Arc(TM) A770 Graphics");
    p.vendor_id = 0x8086;
    p.compute_units = 512;
    p.max_work_group_size = 512;
    p.max_work_item_size0 = 512;
    p.local_mem_size = 64 * 1024;
    p.work_group_multiple = 16;
    p.has_fp16 = 1;
    p.has_subgroups = 1;
    return p;
}

static clattn_device_probe probe_pocl_cpu(void)
{
    clattn_device_probe p = base_probe("pthread-skylake-avx512-Intel(R) Xeon(R) Processor");
    p.device_class = CLATTN_DEVICE_CLASS_CPU;
    p.vendor_id = 0x8086;
    p.compute_units = 2;
    p.max_work_group_size = 4096;
    p.max_work_item_size0 = 4096;
    p.local_mem_size = 1024 * 1024;
    p.local_mem_dedicated = 0;
    p.preferred_vector_width_float = 16;
    p.work_group_multiple = 8;
    return p;
}

static clattn_device_probe probe_tiny(void)
{
    clattn_device_probe p = base_probe("tiny embedded GPU");
    p.vendor_id = 0x13b5;
    p.compute_units = 1;
    p.max_work_group_size = 64;
    p.max_work_item_size0 = 64;
    p.local_mem_size = 16 * 1024;
    p.work_group_multiple = 16;
    return p;
}

typedef clattn_device_probe (*probe_fn)(void);
static const probe_fn all_devices[] = {
    probe_nvidia, probe_amd, probe_amd_rdna, probe_intel, probe_pocl_cpu, probe_tiny,
};
#define NUM_DEVICES (sizeof all_devices / sizeof all_devices[0])

static const int64_t head_dims[] = {1, 16, 64, 72, 128, 160, 256};
#define NUM_HEAD_DIMS (sizeof head_dims / sizeof head_dims[0])

static clattn_problem make_problem(int64_t d, int64_t dv, int64_t sq, int64_t sk, int causal)
{
    clattn_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.dtype = CLATTN_F32;
    pr.batch = 2;
    pr.heads_q = 16;
    pr.heads_kv = 4;
    pr.seq_q = sq;
    pr.seq_k = sk;
    pr.head_dim = d;
    pr.head_dim_v = dv;
    pr.causal = causal;
    return pr;
}

/* ---------------------------------------------------------------------------------------- */
/* Property checks                                                                           */
/* ---------------------------------------------------------------------------------------- */

static int is_bucket(int v)
{
    return v == 16 || v == 32 || v == 64 || v == 128 || v == 256;
}

static int is_vec(int v)
{
    return v == 1 || v == 2 || v == 4 || v == 8 || v == 16;
}

/* Limits every tiling must respect; writes the first violation to msg, returns 0 if one. */
static int check_limits(const clattn_device_probe *p, const clattn_problem *pr,
                        const clattn_tiling *t, char *msg, size_t n)
{
    char why[256] = "";
    if (!clattn_tiling_fits(p, t, why, sizeof why))
        return snprintf(msg, n, "clattn_tiling_fits rejects it: %s", why), 0;
    if (t->rows < 1 || t->wg < 1 || t->block_n < 1)
        return snprintf(msg, n, "rows/wg/block_n not positive"), 0;
    if (t->block_m != t->rows * t->wg)
        return snprintf(msg, n, "block_m %d != rows*wg %d", t->block_m, t->rows * t->wg), 0;
    if (!is_vec(t->vec) || t->block_n % t->vec != 0)
        return snprintf(msg, n, "vec %d / block_n %d", t->vec, t->block_n), 0;
    if (!is_bucket(t->d_pad) || t->d_pad < pr->head_dim)
        return snprintf(msg, n, "d_pad %d for head_dim %lld", t->d_pad,
                        (long long)pr->head_dim), 0;
    if (!is_bucket(t->dv_pad) || t->dv_pad < pr->head_dim_v)
        return snprintf(msg, n, "dv_pad %d for head_dim_v %lld", t->dv_pad,
                        (long long)pr->head_dim_v), 0;
    if (t->local_bytes != clattn_tiling_local_bytes(t) || t->local_bytes > p->local_mem_size)
        return snprintf(msg, n, "local_bytes %zu (formula %zu, device %llu)", t->local_bytes,
                        clattn_tiling_local_bytes(t), (unsigned long long)p->local_mem_size), 0;
    if ((size_t)t->wg > p->max_work_group_size || (size_t)t->wg > p->max_work_item_size0)
        return snprintf(msg, n, "wg %d over the device's %zu", t->wg, p->max_work_group_size), 0;
    return 1;
}

/* The CPU/GPU split of docs/kernels.md ("The planner"): register blocking on CPUs, warp-sized
   groups on GPUs. Register blocking is only required where there are query rows to block
   (Sq > 1). */
static int check_style(const clattn_device_probe *p, const clattn_problem *pr,
                       const clattn_tiling *t, char *msg, size_t n)
{
    if (p->device_class == CLATTN_DEVICE_CLASS_CPU) {
        if (t->vec < 8)
            return snprintf(msg, n, "CPU vec %d < 8", t->vec), 0;
        if (pr->seq_q > 1 && t->rows <= 1)
            return snprintf(msg, n, "CPU rows %d: no register blocking", t->rows), 0;
        return 1;
    }
    if (t->wg % (int)p->work_group_multiple != 0)
        return snprintf(msg, n, "GPU wg %d not a multiple of %zu", t->wg,
                        p->work_group_multiple), 0;
    if (t->rows > 4)
        return snprintf(msg, n, "GPU rows %d > 4", t->rows), 0;
    return 1;
}

typedef struct sweep_result {
    int cases, failures, unsupported;
    char first[512];
} sweep_result;

static void record_failure(sweep_result *r, const clattn_device_probe *p,
                           const clattn_problem *pr, const char *msg)
{
    if (r->failures++ == 0)
        snprintf(r->first, sizeof r->first, "%s d=%lld dv=%lld sq=%lld sk=%lld causal=%d: %s",
                 p->device_name, (long long)pr->head_dim, (long long)pr->head_dim_v,
                 (long long)pr->seq_q, (long long)pr->seq_k, pr->causal, msg);
}

/* Whether a device must find a tiling: every real device must; the tiny one need only for
   head dims up to 64 (16 KiB holds d_pad = dv_pad = 64 with block_n = 32). */
static int must_succeed(const clattn_device_probe *p, const clattn_problem *pr)
{
    if (strcmp(p->device_name, "tiny embedded GPU") != 0)
        return 1;
    return pr->head_dim <= 64 && pr->head_dim_v <= 64;
}

static void sweep_one(const clattn_device_probe *p, const clattn_problem *pr, sweep_result *r)
{
    clattn_tiling t;
    char why[256] = "", msg[384] = "";
    memset(&t, 0, sizeof t);
    r->cases++;
    clattn_status st = clattn_plan_forward(p, pr, &t, why, sizeof why);
    if (st == CLATTN_ERROR_UNSUPPORTED && !must_succeed(p, pr) && why[0] != '\0') {
        r->unsupported++;
        return;
    }
    if (st != CLATTN_SUCCESS) {
        snprintf(msg, sizeof msg, "status %d, why \"%s\"", (int)st, why);
        record_failure(r, p, pr, msg);
        return;
    }
    if (!check_limits(p, pr, &t, msg, sizeof msg) || !check_style(p, pr, &t, msg, sizeof msg))
        record_failure(r, p, pr, msg);
}

static void sweep_device(const clattn_device_probe *p, clattn_dtype dtype, sweep_result *r)
{
    static const int64_t seqs[][2] = {{1, 1}, {1, 1024}, {1024, 1}, {1024, 1024}};
    for (size_t a = 0; a < NUM_HEAD_DIMS; a++)
        for (size_t b = 0; b < NUM_HEAD_DIMS; b++)
            for (int causal = 0; causal <= 1; causal++)
                for (size_t s = 0; s < 4; s++) {
                    clattn_problem pr = make_problem(head_dims[a], head_dims[b], seqs[s][0],
                                                     seqs[s][1], causal);
                    pr.dtype = dtype;
                    sweep_one(p, &pr, r);
                }
}

Test(plan, every_tiling_fits_every_device)
{
    sweep_result r;
    memset(&r, 0, sizeof r);
    for (size_t i = 0; i < NUM_DEVICES; i++) {
        clattn_device_probe p = all_devices[i]();
        sweep_device(&p, CLATTN_F32, &r);
        sweep_device(&p, CLATTN_F16, &r);
        sweep_device(&p, CLATTN_BF16, &r);
    }
    cr_assert_eq(r.failures, 0, "%d of %d plans violate the contract; first: %s", r.failures,
                 r.cases, r.first);
    cr_assert_gt(r.cases, 1000, "sweep ran only %d cases", r.cases);
}

/* ---------------------------------------------------------------------------------------- */
/* Specific devices                                                                          */
/* ---------------------------------------------------------------------------------------- */

static clattn_tiling plan_ok(const clattn_device_probe *p, const clattn_problem *pr)
{
    clattn_tiling t;
    char why[256] = "";
    memset(&t, 0, sizeof t);
    clattn_status st = clattn_plan_forward(p, pr, &t, why, sizeof why);
    cr_assert_eq(st, CLATTN_SUCCESS, "%s: status %d (%s)", p->device_name, (int)st, why);
    return t;
}

Test(plan, cpu_uses_register_blocking_and_wide_vectors)
{
    clattn_device_probe p = probe_pocl_cpu();
    for (size_t i = 0; i < NUM_HEAD_DIMS; i++) {
        clattn_problem pr = make_problem(head_dims[i], head_dims[i], 1024, 1024, 0);
        clattn_tiling t = plan_ok(&p, &pr);
        cr_expect_gt(t.rows, 1, "d=%lld: rows %d", (long long)head_dims[i], t.rows);
        cr_expect_geq(t.vec, 8, "d=%lld: vec %d", (long long)head_dims[i], t.vec);
    }
}

Test(plan, gpus_use_warp_multiples_with_few_rows)
{
    const probe_fn gpus[] = {probe_nvidia, probe_amd, probe_amd_rdna, probe_intel};
    for (size_t g = 0; g < sizeof gpus / sizeof gpus[0]; g++) {
        clattn_device_probe p = gpus[g]();
        for (size_t i = 0; i < NUM_HEAD_DIMS; i++) {
            clattn_problem pr = make_problem(head_dims[i], head_dims[i], 1024, 1024, 1);
            clattn_tiling t = plan_ok(&p, &pr);
            cr_expect_eq(t.wg % (int)p.work_group_multiple, 0, "%s d=%lld: wg %d",
                         p.device_name, (long long)head_dims[i], t.wg);
            cr_expect_leq(t.rows, 4, "%s d=%lld: rows %d", p.device_name,
                          (long long)head_dims[i], t.rows);
        }
    }
}

Test(plan, tiny_device_finds_a_tiling_within_its_limits)
{
    clattn_device_probe p = probe_tiny();
    clattn_problem pr = make_problem(64, 64, 1024, 1024, 0);
    clattn_tiling t = plan_ok(&p, &pr);
    char msg[384] = "";
    cr_assert(check_limits(&p, &pr, &t, msg, sizeof msg), "%s", msg);
    cr_assert_leq(t.wg, 64);
    cr_assert_leq(t.local_bytes, 16 * 1024);
}

Test(plan, plan_is_deterministic)
{
    for (size_t i = 0; i < NUM_DEVICES; i++) {
        clattn_device_probe p = all_devices[i]();
        clattn_problem pr = make_problem(72, 160, 1024, 1024, 1);
        clattn_tiling a = plan_ok(&p, &pr), b = plan_ok(&p, &pr);
        cr_expect(a.d_pad == b.d_pad && a.dv_pad == b.dv_pad && a.rows == b.rows &&
                  a.wg == b.wg && a.block_m == b.block_m && a.block_n == b.block_n &&
                  a.vec == b.vec && a.local_bytes == b.local_bytes,
                  "%s: two plans of one problem differ", p.device_name);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Unsupported requests                                                                      */
/* ---------------------------------------------------------------------------------------- */

static void expect_unsupported(const clattn_device_probe *p, const clattn_problem *pr)
{
    clattn_tiling t;
    char why[256] = "";
    clattn_status st = clattn_plan_forward(p, pr, &t, why, sizeof why);
    cr_expect_eq(st, CLATTN_ERROR_UNSUPPORTED, "%s d=%lld dv=%lld: status %d", p->device_name,
                 (long long)pr->head_dim, (long long)pr->head_dim_v, (int)st);
    cr_expect_neq(why[0], '\0', "%s d=%lld dv=%lld: no reason given", p->device_name,
                  (long long)pr->head_dim, (long long)pr->head_dim_v);
}

Test(plan, head_dim_over_256_is_unsupported_with_reason)
{
    for (size_t i = 0; i < NUM_DEVICES; i++) {
        clattn_device_probe p = all_devices[i]();
        clattn_problem a = make_problem(257, 64, 128, 128, 0);
        clattn_problem b = make_problem(64, 257, 128, 128, 0);
        clattn_problem c = make_problem(512, 512, 128, 128, 1);
        expect_unsupported(&p, &a);
        expect_unsupported(&p, &b);
        expect_unsupported(&p, &c);
    }
}

Test(plan, no_tiling_fits_a_device_without_local_memory_for_one_key)
{
    /* d_pad = dv_pad = 256 and block_n >= 1 need at least 2 KiB of local memory. */
    clattn_device_probe p = probe_tiny();
    p.local_mem_size = 1024;
    clattn_problem pr = make_problem(256, 256, 64, 64, 0);
    expect_unsupported(&p, &pr);
}

Test(plan, plan_accepts_null_why)
{
    clattn_device_probe p = probe_nvidia();
    clattn_problem ok = make_problem(64, 64, 128, 128, 0);
    clattn_problem bad = make_problem(300, 64, 128, 128, 0);
    clattn_tiling t;
    cr_expect_eq(clattn_plan_forward(&p, &ok, &t, NULL, 0), CLATTN_SUCCESS);
    cr_expect_eq(clattn_plan_forward(&p, &bad, &t, NULL, 0), CLATTN_ERROR_UNSUPPORTED);
}

/* ---------------------------------------------------------------------------------------- */
/* Head-dim buckets and local memory                                                         */
/* ---------------------------------------------------------------------------------------- */

Test(plan, head_dim_bucket)
{
    static const int64_t in[] = {1, 2, 15, 16, 17, 32, 33, 64, 65, 72, 128, 129, 160, 255, 256};
    static const int out[] = {16, 16, 16, 16, 32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 256};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        cr_expect_eq(clattn_head_dim_bucket(in[i]), out[i], "bucket(%lld) = %d, want %d",
                     (long long)in[i], clattn_head_dim_bucket(in[i]), out[i]);
    static const int64_t outside[] = {0, -1, 257, 512, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++)
        cr_expect_eq(clattn_head_dim_bucket(outside[i]), 0, "bucket(%lld) = %d, want 0",
                     (long long)outside[i], clattn_head_dim_bucket(outside[i]));
}

static clattn_tiling manual_tiling(int d_pad, int dv_pad, int rows, int wg, int block_n, int vec)
{
    clattn_tiling t;
    memset(&t, 0, sizeof t);
    t.d_pad = d_pad;
    t.dv_pad = dv_pad;
    t.rows = rows;
    t.wg = wg;
    t.block_m = rows * wg;
    t.block_n = block_n;
    t.vec = vec;
    t.local_bytes = clattn_tiling_local_bytes(&t);
    return t;
}

Test(plan, local_bytes_is_k_and_v_tiles_in_f32_none_for_decode)
{
    clattn_tiling t = manual_tiling(64, 64, 8, 1, 16, 16);
    cr_expect_eq(clattn_tiling_local_bytes(&t), (size_t)(64 * 16 + 16 * 64) * 4);
    t = manual_tiling(128, 256, 1, 128, 32, 4);
    cr_expect_eq(clattn_tiling_local_bytes(&t), (size_t)(128 * 32 + 32 * 256) * 4);
    t = manual_tiling(128, 128, 4, 1, 64, 16);   /* decode: K and V from global memory */
    cr_expect_eq(clattn_tiling_local_bytes(&t), (size_t)0);
    t = manual_tiling(128, 128, 1, 4, 64, 4);
    cr_expect_eq(clattn_tiling_local_bytes(&t), (size_t)0);
    t = manual_tiling(128, 128, 1, 8, 64, 4);
    cr_expect_eq(clattn_tiling_local_bytes(&t), (size_t)(128 * 64 + 64 * 128) * 4);
}

/* ---------------------------------------------------------------------------------------- */
/* clattn_tiling_fits                                                                        */
/* ---------------------------------------------------------------------------------------- */

static int contains_ci(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (; *s; s++) {
        size_t i = 0;
        while (i < n && s[i] && tolower((unsigned char)s[i]) == tolower((unsigned char)word[i]))
            i++;
        if (i == n)
            return 1;
    }
    return 0;
}

/* fits must return 0 and say why; the reason must name the limit by one of words. */
static void expect_rejected(const clattn_device_probe *p, const clattn_tiling *t,
                            const char *what, const char *const *words)
{
    char why[256] = "";
    int named = 0;
    cr_expect_eq(clattn_tiling_fits(p, t, why, sizeof why), 0, "%s: accepted", what);
    cr_expect_neq(why[0], '\0', "%s: no reason", what);
    for (const char *const *w = words; *w; w++)
        named |= contains_ci(why, *w);
    cr_expect(named, "%s: reason \"%s\" does not name the limit", what, why);
    cr_expect_eq(clattn_tiling_fits(p, t, NULL, 0), 0, "%s: accepted with why == NULL", what);
}

Test(plan, fits_accepts_a_tiling_within_limits)
{
    clattn_device_probe p = probe_nvidia();
    clattn_tiling t = manual_tiling(64, 64, 1, 128, 32, 1);
    char why[256] = "";
    cr_expect_eq(clattn_tiling_fits(&p, &t, why, sizeof why), 1, "rejected: %s", why);
    cr_expect_eq(clattn_tiling_fits(&p, &t, NULL, 0), 1);
}

Test(plan, fits_rejects_over_local_memory)
{
    clattn_device_probe p = probe_nvidia();      /* 48 KiB */
    clattn_tiling t = manual_tiling(128, 128, 1, 128, 64, 1); /* 64 KiB */
    cr_assert_gt(t.local_bytes, p.local_mem_size);
    static const char *const words[] = {"local", "lds", "shared", NULL};
    expect_rejected(&p, &t, "local memory", words);
}

Test(plan, fits_rejects_over_work_group_size)
{
    clattn_device_probe p = probe_intel();       /* max 512 */
    clattn_tiling t = manual_tiling(64, 64, 1, 1024, 16, 1);
    static const char *const words[] = {"work", "wg", "group", NULL};
    expect_rejected(&p, &t, "work-group size", words);
}

/* Tuning entries that passed every other check and crashed PoCL 3.1 in its work-group function:
   private arrays of tens of MiB a work-item, or 3 MB across a work-group of 4096. */
Test(plan, fits_rejects_over_private_memory)
{
    clattn_device_probe p = probe_pocl_cpu();
    p.local_mem_size = (cl_ulong)1 << 30; /* so that only private memory can refuse them */
    static const char *const words[] = {"private", NULL};
    clattn_tiling t = manual_tiling(16, 16, 1024, 1, 4096, 16);
    expect_rejected(&p, &t, "rows=1024 block_n=4096", words);
    t = manual_tiling(16, 16, 1, 4096, 64, 16);
    cr_assert_lt(clattn_tiling_private_bytes(&t), CLATTN_MAX_PRIVATE_BYTES);
    expect_rejected(&p, &t, "wg=4096 on a CPU", words);
    /* the same work-group on a GPU: its work-items' private memory is their own */
    clattn_device_probe g = probe_nvidia();
    g.max_work_group_size = g.max_work_item_size0 = 4096;
    t = manual_tiling(16, 16, 1, 4096, 8, 4);
    char why[256] = "";
    cr_expect(clattn_tiling_fits(&g, &t, why, sizeof why), "rejected on a GPU: %s", why);
}

/* The backward runs head dims to 1024 on a CPU whose local memory is 512 KiB (PoCL 3.1): block_n
   shrinks until its tiles fit, rows until its private arrays do. */
Test(plan, backward_takes_head_dims_to_1024_on_a_512k_cpu)
{
    clattn_device_probe p = probe_pocl_cpu();
    p.local_mem_size = 512 * 1024;
    p.preferred_vector_width_float = 8;
    static const int64_t dims[] = {600, 1024};
    for (size_t i = 0; i < 2; i++) {
        const clattn_problem pr = {CLATTN_F32, 1, 2, 2, 64, 64, dims[i], dims[i], 1};
        clattn_tiling t;
        char why[256] = "";
        cr_assert_eq(clattn_plan_backward(&p, &pr, CLATTN_ALGO_AUTO, &t, why, sizeof why),
                     CLATTN_SUCCESS, "D=%lld: %s", (long long)dims[i], why);
        cr_expect_leq(t.local_bytes, p.local_mem_size, "D=%lld", (long long)dims[i]);
        cr_expect_leq(clattn_backward_private_bytes(&t), CLATTN_MAX_PRIVATE_BYTES);
        cr_expect(t.block_n % t.vec == 0 && t.block_n >= 1, "block_n=%d vec=%d", t.block_n,
                  t.vec);
    }
}

Test(plan, fits_rejects_block_m_not_rows_times_wg)
{
    clattn_device_probe p = probe_pocl_cpu();
    clattn_tiling t = manual_tiling(64, 64, 8, 4, 32, 16);
    t.block_m = 16;
    static const char *const words[] = {"block_m", "bm", "rows", NULL};
    expect_rejected(&p, &t, "block_m", words);
}

Test(plan, fits_rejects_block_n_not_multiple_of_vec)
{
    clattn_device_probe p = probe_pocl_cpu();
    clattn_tiling t = manual_tiling(64, 64, 8, 4, 24, 16);
    char why[256] = "";
    cr_expect_eq(clattn_tiling_fits(&p, &t, why, sizeof why), 0, "block_n 24, vec 16 accepted");
    cr_expect_neq(why[0], '\0', "no reason");
}

/* ---------------------------------------------------------------------------------------- */
/* Build options                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* 1 if opts holds "name=value" as a whole option (followed by a space or the end). */
static int has_define(const char *opts, const char *name, int value)
{
    char want[64];
    int n = snprintf(want, sizeof want, "%s=%d", name, value);
    for (const char *s = strstr(opts, want); s; s = strstr(s + 1, want)) {
        int starts = s == opts || s[-1] == ' ';
        if (starts && (s[n] == ' ' || s[n] == '\0'))
            return 1;
    }
    return 0;
}

/* Options for q/k/v and out in dtype dt, no bias. */
static void options_of(const clattn_tiling *t, clattn_dtype dt, char *buf, size_t n)
{
    const clattn_storage storage = {dt, dt, CLATTN_F32, CLATTN_F32};
    size_t len = clattn_tiling_build_options(t, &storage, buf, n);
    cr_assert_eq(len, strlen(buf), "returned length %zu, string length %zu", len, strlen(buf));
    cr_assert_lt(len, n - 1, "options fill the whole buffer: \"%s\"", buf);
}

Test(plan, build_options_name_every_tunable)
{
    clattn_tiling t = manual_tiling(128, 64, 8, 2, 32, 16);
    char buf[1024];
    options_of(&t, CLATTN_F32, buf, sizeof buf);
    cr_expect(has_define(buf, "-DD_PAD", 128), "no -DD_PAD=128 in \"%s\"", buf);
    cr_expect(has_define(buf, "-DDV_PAD", 64), "no -DDV_PAD=64 in \"%s\"", buf);
    cr_expect(has_define(buf, "-DROWS", 8), "no -DROWS=8 in \"%s\"", buf);
    cr_expect(has_define(buf, "-DWG", 2), "no -DWG=2 in \"%s\"", buf);
    cr_expect(has_define(buf, "-DBLOCK_N", 32), "no -DBLOCK_N=32 in \"%s\"", buf);
    cr_expect(has_define(buf, "-DVEC", 16), "no -DVEC=16 in \"%s\"", buf);
}

Test(plan, build_options_never_relax_math)
{
    for (size_t i = 0; i < NUM_DEVICES; i++) {
        clattn_device_probe p = all_devices[i]();
        clattn_problem pr = make_problem(64, 64, 1024, 1024, 1);
        clattn_tiling t = plan_ok(&p, &pr);
        for (int dt = CLATTN_F32; dt <= CLATTN_BF16; dt++) {
            char buf[1024];
            options_of(&t, (clattn_dtype)dt, buf, sizeof buf);
            cr_expect_null(strstr(buf, "-cl-fast-relaxed-math"), "\"%s\"", buf);
            cr_expect_null(strstr(buf, "-cl-finite-math-only"), "\"%s\"", buf);
            cr_expect_null(strstr(buf, "-cl-unsafe-math-optimizations"), "\"%s\"", buf);
        }
    }
}

Test(plan, build_options_carry_the_dtype)
{
    clattn_tiling t = manual_tiling(64, 64, 8, 1, 16, 16);
    char f32[1024], f16[1024], bf16[1024];
    options_of(&t, CLATTN_F32, f32, sizeof f32);
    options_of(&t, CLATTN_F16, f16, sizeof f16);
    options_of(&t, CLATTN_BF16, bf16, sizeof bf16);
    cr_expect_str_neq(f32, f16);
    cr_expect_str_neq(f32, bf16);
    cr_expect_str_neq(f16, bf16);
}

Test(plan, storage_options_name_each_type)
{
    const clattn_storage mixed = {CLATTN_BF16, CLATTN_F16, CLATTN_F32, CLATTN_F32};
    char buf[256];
    size_t len = clattn_storage_build_options(&mixed, buf, sizeof buf);
    cr_expect_eq(len, strlen(buf));
    cr_expect_str_eq(buf, "-DQKV_TYPE=BF16 -DOUT_TYPE=F16 -DBIAS_TYPE=F32");
}

Test(plan, build_options_differ_per_tiling_and_repeat_per_tiling)
{
    clattn_tiling base = manual_tiling(64, 64, 8, 1, 16, 16);
    clattn_tiling other[6] = {base, base, base, base, base, base};
    other[0].d_pad = 128;
    other[1].dv_pad = 32;
    other[2].rows = 4, other[2].block_m = 4;
    other[3].wg = 2, other[3].block_m = 16;
    other[4].block_n = 32;
    other[5].vec = 8;
    char a[1024], b[1024];
    options_of(&base, CLATTN_F32, a, sizeof a);
    options_of(&base, CLATTN_F32, b, sizeof b);
    cr_expect_str_eq(a, b, "same tiling, different options");
    for (int i = 0; i < 6; i++) {
        other[i].local_bytes = clattn_tiling_local_bytes(&other[i]);
        options_of(&other[i], CLATTN_F32, b, sizeof b);
        cr_expect_str_neq(a, b, "tiling change %d does not change the options \"%s\"", i, a);
    }
}

Test(plan, build_options_truncate_with_nul)
{
    clattn_tiling t = manual_tiling(64, 64, 8, 1, 16, 16);
    char full[1024], small[8];
    memset(small, 'x', sizeof small);
    options_of(&t, CLATTN_F32, full, sizeof full);
    const clattn_storage f32 = {CLATTN_F32, CLATTN_F32, CLATTN_F32, CLATTN_F32};
    clattn_tiling_build_options(&t, &f32, small, sizeof small);
    cr_expect_lt(strnlen(small, sizeof small), sizeof small, "not NUL-terminated");
    cr_expect_eq(strncmp(full, small, strlen(small)), 0, "\"%s\" not a prefix of \"%s\"",
                 small, full);
}

Test(plan, describe_names_the_tiling)
{
    clattn_tiling t = manual_tiling(128, 64, 8, 2, 32, 16);
    char buf[256];
    size_t n = clattn_tiling_describe(&t, buf, sizeof buf);
    cr_expect_eq(n, strlen(buf));
    static const char *parts[] = {"bm=16", "bn=32", "rows=8", "vec=16", "wg=2"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        cr_expect_not_null(strstr(buf, parts[i]), "no \"%s\" in \"%s\"", parts[i], buf);
}

/* plan.h documents the format as "dpad=64 dvpad=64 bm=8 ... local=16384". */
Test(plan, describe_names_head_dim_buckets_and_local_bytes)
{
    clattn_tiling t = manual_tiling(128, 64, 8, 2, 32, 16);
    char buf[256];
    clattn_tiling_describe(&t, buf, sizeof buf);
    cr_expect_eq(strncmp(buf, "dpad=128 ", 9), 0, "\"%s\" does not start with \"dpad=128 \"", buf);
    cr_expect_not_null(strstr(buf, " dvpad=64 "), "no \"dvpad=64\" in \"%s\"", buf);
    char local[32];
    snprintf(local, sizeof local, "local=%zu", clattn_tiling_local_bytes(&t));
    cr_expect_not_null(strstr(buf, local), "no \"%s\" in \"%s\"", local, buf);
}
