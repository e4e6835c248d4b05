/* The tuner's search order: the library lists the tilings that fit the device and the call
   (clattn_forward_candidates, src/tools.h); this file only decides which to try first. */
#include "tune_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A candidate and its sort key. */
typedef struct ranked {
    clattn_tiling t;
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
static double distance(const shape *s, const clattn_tiling *first, const clattn_tiling *t)
{
    int64_t need = s->sq * (s->hq / s->hkv), have = 1;
    while (have < need)
        have *= 2;
    double waste = log2((double)t->rows * t->wg / (double)have);
    return log2_ratio(t->rows, first->rows) + log2_ratio(t->wg, first->wg) +
           log2_ratio(t->block_n, first->block_n) + log2_ratio(t->vec, first->vec) +
           (waste > 0 ? waste : 0);
}

static int by_distance(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->distance != y->distance)
        return x->distance < y->distance ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

size_t order_candidates(const shape *s, const clattn_tiling *first, clattn_tiling *c, size_t n)
{
    ranked *r = malloc((n ? n : 1) * sizeof *r);
    size_t kept = 0;
    for (size_t i = 0; r && i < n; i++)
        if (!tiling_equal(&c[i], first))
            r[kept] = (ranked){c[i], distance(s, first, &c[i]), i}, kept++;
    if (!r)
        return 0;
    qsort(r, kept, sizeof *r, by_distance);
    for (size_t i = 0; i < kept; i++)
        c[i] = r[i].t;
    free(r);
    return kept;
}

int tiling_equal(const clattn_tiling *a, const clattn_tiling *b)
{
    return a->rows == b->rows && a->wg == b->wg && a->block_n == b->block_n && a->vec == b->vec;
}

void tiling_text(const clattn_tiling *t, char *buf, size_t size)
{
    snprintf(buf, size, "rows=%d wg=%d bn=%d vec=%d", t->rows, t->wg, t->block_n, t->vec);
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
