/* The tuner's search space: the device's limits, the tilings that satisfy the planner's
   constraints (src/plan.c: rows, wg >= 1 and wg within the device's limit, block_n a multiple
   of vec, vec in {1, 2, 4, 8, 16}, (d_pad + dv_pad) * block_n * 4 bytes of local memory within
   the device's), and their order. */
#include "tune_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const int rows_choices[] = {1, 2, 4, 8, 16, 32, 64};
static const int wg_choices[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
static const int bn_choices[] = {8, 16, 32, 64};
static const int vec_choices[] = {4, 8, 16};

#define COUNT(a) (sizeof a / sizeof a[0])
#define CPU_MAX_WG 8   /* a CPU work-group runs as a loop on one core: wider only adds barriers */
#define GPU_WG_STEP 32 /* GPUs: whole warps */

static void text_info(cl_platform_id p, cl_device_id d, cl_uint what, char *buf, size_t size)
{
    cl_int err = p ? clGetPlatformInfo(p, what, size, buf, NULL)
                   : clGetDeviceInfo(d, what, size, buf, NULL);
    if (err != CL_SUCCESS)
        snprintf(buf, size, "?");   /* as the library does */
}

static void device_key(cl_device_id dev, cl_platform_id plat, char *buf, size_t size)
{
    char pname[256], dname[256], driver[256];
    text_info(plat, NULL, CL_PLATFORM_NAME, pname, sizeof pname);
    text_info(NULL, dev, CL_DEVICE_NAME, dname, sizeof dname);
    text_info(NULL, dev, CL_DRIVER_VERSION, driver, sizeof driver);
    snprintf(buf, size, "%s|%s|%s", pname, dname, driver);
}

/* clGetDeviceInfo into value, unless an earlier query failed (*err). */
static void query(cl_device_id dev, cl_device_info what, size_t size, void *value, cl_int *err)
{
    if (*err == CL_SUCCESS)
        *err = clGetDeviceInfo(dev, what, size, value, NULL);
}

int device_info_query(cl_command_queue q, device_info *d)
{
    cl_device_id dev = NULL;
    cl_platform_id plat = NULL;
    cl_device_type type = 0;
    cl_device_local_mem_type local_type = CL_LOCAL;
    size_t items[3] = {0, 0, 0};
    memset(d, 0, sizeof *d);
    cl_int err = clGetCommandQueueInfo(q, CL_QUEUE_DEVICE, sizeof dev, &dev, NULL);
    query(dev, CL_DEVICE_PLATFORM, sizeof plat, &plat, &err);
    query(dev, CL_DEVICE_TYPE, sizeof type, &type, &err);
    query(dev, CL_DEVICE_LOCAL_MEM_TYPE, sizeof local_type, &local_type, &err);
    query(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof d->max_wg, &d->max_wg, &err);
    query(dev, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof items, items, &err);
    query(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof d->local_mem, &d->local_mem, &err);
    if (err != CL_SUCCESS)
        return bench_cl_fail("querying the device", err);
    if (items[0] && items[0] < d->max_wg)
        d->max_wg = items[0];
    d->cpu_like = (type & CL_DEVICE_TYPE_CPU) || local_type != CL_LOCAL;
    device_key(dev, plat, d->key, sizeof d->key);
    return 1;
}

static int bucket(int64_t dim)
{
    int b = 16;
    while (b < dim)
        b *= 2;
    return b;
}

static int fits(const device_info *d, const shape *s, const tiling *t)
{
    if (d->cpu_like ? t->wg > CPU_MAX_WG : t->wg % GPU_WG_STEP != 0)
        return 0;
    size_t local = (size_t)(bucket(s->d) + bucket(s->dv)) * (size_t)t->bn * sizeof(float);
    return (size_t)t->wg <= d->max_wg && t->bn % t->vec == 0 && local <= d->local_mem;
}

/* A candidate and its sort key. */
typedef struct ranked {
    tiling t;
    double distance;
    size_t index;
} ranked;

static double log2_ratio(int a, int b)
{
    return fabs(log2((double)a / (double)b));
}

/* Doublings from `first` over the four parameters, plus one per doubling of the rows of a
   work-group (rows * wg) past those one kv head has (Sq * Hq / Hkv, to a power of two): such
   rows are padding, so decode shapes try small blocks first. */
static double distance(const shape *s, const tiling *first, const tiling *t)
{
    int64_t need = s->sq * (s->hq / s->hkv), have = 1;
    while (have < need)
        have *= 2;
    double waste = log2((double)t->rows * t->wg / (double)have);
    return log2_ratio(t->rows, first->rows) + log2_ratio(t->wg, first->wg) +
           log2_ratio(t->bn, first->bn) + log2_ratio(t->vec, first->vec) + (waste > 0 ? waste : 0);
}

static int by_distance(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->distance != y->distance)
        return x->distance < y->distance ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

size_t tune_candidates(const device_info *d, const shape *s, const tiling *first, tiling **out)
{
    ranked *r = malloc(COUNT(rows_choices) * COUNT(wg_choices) * COUNT(bn_choices) *
                       COUNT(vec_choices) * sizeof *r);
    size_t n = 0;
    *out = NULL;
    for (size_t a = 0; r && a < COUNT(rows_choices); a++)
        for (size_t b = 0; b < COUNT(wg_choices); b++)
            for (size_t c = 0; c < COUNT(bn_choices); c++)
                for (size_t e = 0; e < COUNT(vec_choices); e++) {
                    tiling t = {rows_choices[a], wg_choices[b], bn_choices[c], vec_choices[e]};
                    if (fits(d, s, &t) && !tiling_equal(&t, first))
                        r[n] = (ranked){t, distance(s, first, &t), n}, n++;
                }
    if (r)
        qsort(r, n, sizeof *r, by_distance);
    *out = r ? malloc((n ? n : 1) * sizeof **out) : NULL;
    for (size_t i = 0; *out && i < n; i++)
        (*out)[i] = r[i].t;
    free(r);
    return *out ? n : 0;
}

/* The integer after " name=" in line, or -1. */
static int plan_field(const char *line, const char *name)
{
    char pattern[32];
    snprintf(pattern, sizeof pattern, " %s=", name);
    const char *at = strstr(line, pattern);
    return at ? atoi(at + strlen(pattern)) : -1;
}

int tiling_from_plan(const char *plan, tiling *t)
{
    t->rows = plan_field(plan, "rows");
    t->wg = plan_field(plan, "wg");
    t->bn = plan_field(plan, "bn");
    t->vec = plan_field(plan, "vec");
    return t->rows > 0 && t->wg > 0 && t->bn > 0 && t->vec > 0;
}

int tiling_equal(const tiling *a, const tiling *b)
{
    return a->rows == b->rows && a->wg == b->wg && a->bn == b->bn && a->vec == b->vec;
}

void tiling_text(const tiling *t, char *buf, size_t size)
{
    snprintf(buf, size, "rows=%d wg=%d bn=%d vec=%d", t->rows, t->wg, t->bn, t->vec);
}

int shape_is_decode(const shape *s)
{
    return s->sq * (s->hq / s->hkv) <= 16;   /* CLATTN_DECODE_ROWS in src/tunedb.h */
}

void shape_text(const shape *s, char *buf, size_t size)
{
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    snprintf(buf, size, "b=%lld hq=%lld hkv=%lld sq=%lld sk=%lld d=%lld dv=%lld %s %s causal=%d",
             (long long)s->b, (long long)s->hq, (long long)s->hkv, (long long)s->sq,
             (long long)s->sk, (long long)s->d, (long long)s->dv, s->bshd ? "bshd" : "bhsd",
             dtypes[s->dtype], s->causal);
}

const char *outcome_name(outcome o)
{
    static const char *const names[] = {"ok", "slow", "build-failed", "wrong-result",
                                        "does-not-fit", "error"};
    return (unsigned)o < OUTCOME_COUNT ? names[o] : "error";
}

int outcome_parse(const char *text, outcome *o)
{
    for (int i = 0; i < OUTCOME_COUNT; i++)
        if (strcmp(text, outcome_name((outcome)i)) == 0)
            return *o = (outcome)i, 1;
    return 0;
}
