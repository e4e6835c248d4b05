/* The tuner's reference check: a few output rows of a shape computed naively in double from the
   same inputs the bench uploads (fill_random, seeds 1..3), compared with what a candidate wrote. */
#include "tune_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The stored value at element i of a buffer of dtype t. */
static double get(const void *h, clattn_dtype t, size_t i)
{
    if (t == CLATTN_F32)
        return ((const float *)h)[i];
    uint16_t bits = ((const uint16_t *)h)[i];
    if (t == CLATTN_BF16) {
        uint32_t wide = (uint32_t)bits << 16;
        float f;
        memcpy(&f, &wide, 4);
        return f;
    }
    int e = (bits >> 10) & 31, m = bits & 1023;
    double x = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return bits & 0x8000 ? -x : x;
}

/* Element offset of [b, h, i, 0] in a dense tensor with `heads` heads, `seq` rows, `dim` dims. */
static size_t row_at(const shape *s, int64_t b, int64_t h, int64_t i, int64_t heads, int64_t seq,
                     int64_t dim)
{
    int64_t row = s->bshd ? (b * seq + i) * heads + h : (b * heads + h) * seq + i;
    return (size_t)(row * dim);
}

typedef struct inputs {
    void *x[3];     /* q, k, v as stored (dtype of the shape) */
    double *score;  /* sk scratch */
} inputs;

static void free_inputs(inputs *in)
{
    for (int i = 0; i < 3; i++)
        free(in->x[i]);
    free(in->score);
}

static int make_inputs(const shape *s, inputs *in)
{
    size_t n[5];
    operand_sizes(s, n);
    memset(in, 0, sizeof *in);
    for (int i = 0; i < 3; i++) {
        if (!(in->x[i] = malloc(n[i] * dtype_bytes(s->dtype))))
            return 0;
        fill_random(in->x[i], s->dtype, n[i], (uint32_t)i + 1);
    }
    return (in->score = malloc((size_t)s->sk * sizeof *in->score)) != NULL;
}

/* out of query row i of head h in batch b into dst[0, dv): softmax over keys j <= last. */
static void reference_row(const shape *s, const inputs *in, int64_t b, int64_t h, int64_t i,
                          double *dst)
{
    const int64_t kvh = h / (s->hq / s->hkv);
    const int64_t last = s->causal && i + s->sk - s->sq < s->sk ? i + s->sk - s->sq : s->sk - 1;
    const size_t q0 = row_at(s, b, h, i, s->hq, s->sq, s->d);
    double top = -INFINITY, sum = 0;
    for (int64_t j = 0; j <= last; j++) {
        size_t k0 = row_at(s, b, kvh, j, s->hkv, s->sk, s->d);
        double dot = 0;
        for (int64_t c = 0; c < s->d; c++)
            dot += get(in->x[0], s->dtype, q0 + (size_t)c) *
                   get(in->x[1], s->dtype, k0 + (size_t)c);
        in->score[j] = dot / sqrt((double)s->d);
        top = in->score[j] > top ? in->score[j] : top;
    }
    memset(dst, 0, (size_t)s->dv * sizeof *dst);
    for (int64_t j = 0; j <= last; j++) {
        double p = exp(in->score[j] - top);
        size_t v0 = row_at(s, b, kvh, j, s->hkv, s->sk, s->dv);
        sum += p;
        for (int64_t c = 0; c < s->dv; c++)
            dst[c] += p * get(in->x[2], s->dtype, v0 + (size_t)c);
    }
    for (int64_t c = 0; sum > 0 && c < s->dv; c++)
        dst[c] /= sum;
}

/* Rows spread evenly over all B * Hq * Sq (query) rows, so over heads and positions. */
int reference_make(const shape *s, reference *r)
{
    inputs in;
    const int64_t total = s->b * s->hq * s->sq;
    memset(r, 0, sizeof *r);
    r->n = total < TUNE_SAMPLE_ROWS ? (int)total : TUNE_SAMPLE_ROWS;
    r->out = malloc((size_t)r->n * (size_t)s->dv * sizeof *r->out);
    if (!make_inputs(s, &in) || !r->out) {
        free_inputs(&in);
        reference_free(r);
        return fprintf(stderr, "clattn-bench: out of host memory for the reference\n"), 0;
    }
    for (int k = 0; k < r->n; k++) {
        int64_t row = r->n > 1 ? k * (total - 1) / (r->n - 1) : 0;
        int64_t b = row / (s->hq * s->sq), h = row / s->sq % s->hq, i = row % s->sq;
        r->offset[k] = row_at(s, b, h, i, s->hq, s->sq, s->dv);
        reference_row(s, &in, b, h, i, r->out + (size_t)k * (size_t)s->dv);
    }
    free_inputs(&in);
    return 1;
}

void reference_free(reference *r)
{
    free(r->out);
    r->out = NULL;
}

/* The worst error of one row, relative to its largest |ref| (NaN stays NaN). */
static double row_error(const double *ref, const void *got, clattn_dtype t, int64_t dv)
{
    double worst = 0, top = 0;
    for (int64_t c = 0; c < dv; c++) {
        double diff = fabs(get(got, t, (size_t)c) - ref[c]);
        worst = diff > worst || isnan(diff) ? diff : worst;
        top = fabs(ref[c]) > top ? fabs(ref[c]) : top;
    }
    return worst / (top > 0 ? top : 1.0);
}

int reference_check(cl_command_queue q, const operands *op, const shape *s, const reference *r,
                    double *worst)
{
    const size_t bytes = (size_t)s->dv * dtype_bytes(s->dtype);
    void *row = malloc(bytes);
    cl_int err = row ? CL_SUCCESS : CL_OUT_OF_HOST_MEMORY;
    *worst = 0;
    for (int k = 0; !err && k < r->n; k++) {
        err = clEnqueueReadBuffer(q, op->mem[3], CL_TRUE, r->offset[k] * dtype_bytes(s->dtype),
                                  bytes, row, 0, NULL, NULL);
        double e = err ? 0 : row_error(r->out + (size_t)k * (size_t)s->dv, row, s->dtype, s->dv);
        *worst = e > *worst || isnan(e) ? e : *worst;
    }
    free(row);
    return err ? bench_cl_fail("reading the output back", err) : 1;
}

/* 2e-5 of the row's largest |out|: f32 arithmetic over thousands of keys (online softmax,
   rescaled partial sums) stays around 1e-6 of the row's scale with these [-1, 1) inputs, while a
   lost key tile or a row written to the wrong place is off by 1e-3 or more. Outputs stored as
   f16 or bf16 add their rounding, half a unit in the last place: 2^-11 and 2^-8. */
double reference_tolerance(clattn_dtype t)
{
    return 2e-5 + (t == CLATTN_F16 ? ldexp(1, -11) : t == CLATTN_BF16 ? ldexp(1, -8) : 0.0);
}
