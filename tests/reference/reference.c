/* The f64 CPU reference of the attention forward; see reference.h. */
#include "reference.h"

#include <math.h>
#include <stdlib.h>

ref_tensor ref_tensor_dense(double *data, int64_t b, int64_t h, int64_t s, int64_t d)
{
    ref_tensor t = {
        .data = data,
        .dims = {b, h, s, d},
        .strides = {h * s * d, s * d, d, 1},
    };
    return t;
}

double *ref_at(const ref_tensor *t, int64_t b, int64_t h, int64_t s, int64_t d)
{
    return t->data + b * t->strides[0] + h * t->strides[1] + s * t->strides[2] +
           d * t->strides[3];
}

int64_t ref_numel(const ref_tensor *t)
{
    return t->dims[0] * t->dims[1] * t->dims[2] * t->dims[3];
}

void ref_params_init(ref_params *p)
{
    p->scale = 0.0;
    p->causal = 0;
    p->align = CLATTN_ALIGN_BOTTOM_RIGHT;
    p->window_left = -1;
    p->window_right = -1;
    p->softcap = 0.0;
    p->bias = NULL;
    p->seqlens_q = NULL;
    p->seqlens_k = NULL;
    p->dropout_p = 0.0;
    p->dropout_seed = 0;
    p->dropout_offset = 0;
    p->q_start = 0;
    p->k_start = 0;
    p->sinks = NULL;
}

int64_t ref_seq_q(const ref_params *p, int64_t b, int64_t sq)
{
    return p->seqlens_q ? (int64_t)p->seqlens_q[b] : sq;
}

int64_t ref_seq_k(const ref_params *p, int64_t b, int64_t sk)
{
    return p->seqlens_k ? (int64_t)p->seqlens_k[b] : sk;
}

int ref_key_visible(const ref_params *p, int64_t sq_b, int64_t sk_b, int64_t i, int64_t j)
{
    int64_t off = p->align == CLATTN_ALIGN_TOP_LEFT ? 0 : sk_b - sq_b;
    if (i < 0 || i >= sq_b || j < 0 || j >= sk_b)
        return 0;
    const int64_t query = p->q_start + i + off, key = p->k_start + j;
    if (p->causal && key > query)
        return 0;
    if (p->window_left >= 0 && key < query - p->window_left)
        return 0;
    if (p->window_right >= 0 && key > query + p->window_right)
        return 0;
    return 1;
}

/* 1 if batch b's seqlens entries are inside [0, dim]. */
static int batch_lengths_valid(const ref_params *p, int64_t b, int64_t sq, int64_t sk)
{
    int64_t sq_b = ref_seq_q(p, b, sq), sk_b = ref_seq_k(p, b, sk);
    return sq_b >= 0 && sq_b <= sq && sk_b >= 0 && sk_b <= sk;
}

int64_t ref_visible_pairs(const ref_params *p, int64_t batch, int64_t heads_q,
                          int64_t seq_q, int64_t seq_k)
{
    int64_t total = 0;
    for (int64_t b = 0; b < batch; b++) {
        if (!batch_lengths_valid(p, b, seq_q, seq_k))
            continue;
        int64_t sq_b = ref_seq_q(p, b, seq_q), sk_b = ref_seq_k(p, b, seq_k);
        int64_t per_head = 0;
        for (int64_t i = 0; i < sq_b; i++)
            for (int64_t j = 0; j < sk_b; j++)
                per_head += ref_key_visible(p, sq_b, sk_b, i, j);
        total += per_head * heads_q;
    }
    return total;
}

static uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t product = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(product >> 32);
    return (uint32_t)product;
}

void ref_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo32(0xD2511F53u, c[0], &hi0);
        uint32_t lo1 = mulhilo32(0xCD9E8D57u, c[2], &hi1);
        uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
    for (int w = 0; w < 4; w++)
        out[w] = c[w];
}

int ref_dropout_keep(uint64_t seed, uint64_t offset, int64_t b, int64_t h, int64_t heads_q,
                     int64_t i, int64_t j, double p)
{
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t ctr[4] = {(uint32_t)j, (uint32_t)i, (uint32_t)(b * heads_q + h), (uint32_t)offset};
    uint32_t x[4];
    uint64_t threshold = p == 0.0 ? 0 : (uint64_t)ceil(p * 4294967296.0);
    ref_philox4x32_10(ctr, key, x);
    return (uint64_t)x[0] >= threshold;
}

/* Everything one row needs, fixed for the whole call. */
typedef struct row_job {
    const ref_params *p;
    const ref_tensor *q, *k, *v, *out, *lse;
    int64_t group;          /* Hq / Hkv */
    double scale;
    double *scores;         /* [Sk] scratch; -INFINITY marks a key that takes no part */
    double *acc;            /* [Dv] scratch */
} row_job;

static double bias_at(const ref_tensor *bias, int64_t b, int64_t h, int64_t i, int64_t j)
{
    return *ref_at(bias, bias->dims[0] == 1 ? 0 : b, bias->dims[1] == 1 ? 0 : h,
                   bias->dims[2] == 1 ? 0 : i, j);
}

static void write_row(const row_job *job, int64_t b, int64_t h, int64_t i, double value,
                      double lse_value)
{
    for (int64_t d = 0; d < job->out->dims[3]; d++)
        *ref_at(job->out, b, h, i, d) = value;
    if (job->lse)
        *ref_at(job->lse, b, h, i, 0) = lse_value;
}

/* The score of key j for query row i (finite or not), before visibility; *slope gets the
   derivative of the score with respect to scale * (q . k): 1, or 1 - tanh^2 under softcap. */
static double score_slope(const row_job *job, int64_t b, int64_t h, int64_t i, int64_t j,
                          double *slope)
{
    const ref_params *p = job->p;
    int64_t kvh = h / job->group;
    double dot = 0.0;
    for (int64_t d = 0; d < job->q->dims[3]; d++)
        dot += *ref_at(job->q, b, h, i, d) * *ref_at(job->k, b, kvh, j, d);
    double s = dot * job->scale;
    *slope = 1.0;
    if (p->softcap > 0.0) {
        double t = tanh(s / p->softcap);
        s = p->softcap * t;
        *slope = 1.0 - t * t;
    }
    if (p->bias)
        s += bias_at(p->bias, b, h, i, j);
    return s;
}

static double score(const row_job *job, int64_t b, int64_t h, int64_t i, int64_t j)
{
    double slope;
    return score_slope(job, b, h, i, j, &slope);
}

/* One query row: scores of the visible keys, max-subtracted softmax, weighted sum of v. */
static void forward_row(const row_job *job, int64_t b, int64_t h, int64_t i,
                        int64_t sq_b, int64_t sk_b)
{
    const ref_params *p = job->p;
    int64_t sk = job->k->dims[2], dv = job->v->dims[3], kvh = h / job->group;
    int64_t live = 0;
    double m = -INFINITY;
    for (int64_t j = 0; j < sk; j++) {
        double s = ref_key_visible(p, sq_b, sk_b, i, j) ? score(job, b, h, i, j) : -INFINITY;
        job->scores[j] = s;
        if (s != -INFINITY)
            live++;         /* NaN counts as live: it must reach the output */
        if (s > m)
            m = s;          /* NaN never compares greater, so m is the max of the others */
    }
    if (live == 0) {
        write_row(job, b, h, i, 0.0, p->sinks ? p->sinks[h] : -INFINITY);
        return;
    }
    if (p->sinks)
        m = fmax(m, p->sinks[h]);
    double sum = p->sinks ? exp(p->sinks[h] - m) : 0.0;
    for (int64_t d = 0; d < dv; d++)
        job->acc[d] = 0.0;
    double keep_scale = 1.0 / (1.0 - p->dropout_p);
    for (int64_t j = 0; j < sk; j++) {
        if (job->scores[j] == -INFINITY)
            continue;
        double w = exp(job->scores[j] - m);
        sum += w;
        if (p->dropout_p > 0.0) {
            if (!ref_dropout_keep(p->dropout_seed, p->dropout_offset, b, h, job->q->dims[1],
                                  p->q_start + i, p->k_start + j, p->dropout_p))
                continue;
            w *= keep_scale;
        }
        for (int64_t d = 0; d < dv; d++)
            job->acc[d] += w * *ref_at(job->v, b, kvh, j, d);
    }
    for (int64_t d = 0; d < dv; d++)
        *ref_at(job->out, b, h, i, d) = job->acc[d] / sum;
    if (job->lse)
        *ref_at(job->lse, b, h, i, 0) = m + log(sum);
}

static int shapes_fit(const ref_tensor *q, const ref_tensor *k, const ref_tensor *v,
                      const ref_tensor *out, const ref_tensor *lse)
{
    for (int a = 0; a < 4; a++)
        if (q->dims[a] <= 0 || k->dims[a] <= 0 || v->dims[a] <= 0)
            return 0;
    if (k->dims[0] != q->dims[0] || v->dims[0] != q->dims[0])
        return 0;
    if (v->dims[1] != k->dims[1] || q->dims[1] % k->dims[1] != 0)
        return 0;
    if (v->dims[2] != k->dims[2] || k->dims[3] != q->dims[3])
        return 0;
    if (out->dims[0] != q->dims[0] || out->dims[1] != q->dims[1] ||
        out->dims[2] != q->dims[2] || out->dims[3] != v->dims[3])
        return 0;
    if (lse && (lse->dims[0] != q->dims[0] || lse->dims[1] != q->dims[1] ||
                lse->dims[2] != q->dims[2] || lse->dims[3] != 1))
        return 0;
    return 1;
}

int ref_attention_forward(const ref_params *p, const ref_tensor *q, const ref_tensor *k,
                          const ref_tensor *v, const ref_tensor *out, const ref_tensor *lse)
{
    if (!shapes_fit(q, k, v, out, lse))
        return -1;
    int64_t batch = q->dims[0], heads_q = q->dims[1], sq = q->dims[2], sk = k->dims[2];
    row_job job = {
        .p = p, .q = q, .k = k, .v = v, .out = out, .lse = lse,
        .group = heads_q / k->dims[1],
        .scale = p->scale != 0.0 ? p->scale : 1.0 / sqrt((double)q->dims[3]),
        .scores = malloc((size_t)sk * sizeof(double)),
        .acc = malloc((size_t)v->dims[3] * sizeof(double)),
    };
    if (!job.scores || !job.acc) {
        free(job.scores);
        free(job.acc);
        return -1;
    }
    for (int64_t b = 0; b < batch; b++) {
        int valid = batch_lengths_valid(p, b, sq, sk);
        int64_t sq_b = ref_seq_q(p, b, sq), sk_b = ref_seq_k(p, b, sk);
        for (int64_t h = 0; h < heads_q; h++) {
            for (int64_t i = 0; i < sq; i++) {
                if (!valid)
                    write_row(&job, b, h, i, NAN, NAN);
                else if (i >= sq_b)
                    write_row(&job, b, h, i, 0.0, -INFINITY);
                else
                    forward_row(&job, b, h, i, sq_b, sk_b);
            }
        }
    }
    free(job.scores);
    free(job.acc);
    return 0;
}

/* ---- Backward ---- */

/* Everything one backward row needs, fixed for the whole call. */
typedef struct grad_job {
    row_job fwd;            /* p, q, k, v, group, scale and scores (out, lse unused) */
    const ref_tensor *dout, *dq, *dk, *dv, *dbias;
    double *slope;          /* [Sk] d score / d (scale * q.k) */
    double *prob;           /* [Sk] softmax before dropout */
    double *keep;           /* [Sk] dropout weight: 1, 0 or 1 / (1 - p) */
    double *dp;             /* [Sk] dP = keep * (dout_i . v_j) */
} grad_job;

static int same_dims(const ref_tensor *a, const ref_tensor *b)
{
    for (int d = 0; d < 4; d++)
        if (a->dims[d] != b->dims[d])
            return 0;
    return 1;
}

/* bias [B|1, Hq|1, Sq|1, Sk] */
static int bias_fits(const ref_tensor *bias, const ref_tensor *q, const ref_tensor *k)
{
    for (int d = 0; d < 3; d++)
        if (bias->dims[d] != 1 && bias->dims[d] != q->dims[d])
            return 0;
    return bias->dims[3] == k->dims[2];
}

static int backward_shapes_fit(const ref_params *p, const ref_tensor *q, const ref_tensor *k,
                               const ref_tensor *v, const ref_tensor *dout,
                               const ref_tensor *dq, const ref_tensor *dk,
                               const ref_tensor *dv, const ref_tensor *dbias)
{
    if (!shapes_fit(q, k, v, dout, NULL))
        return 0;
    if (!same_dims(dq, q) || !same_dims(dk, k) || !same_dims(dv, v))
        return 0;
    if (p->bias && !bias_fits(p->bias, q, k))
        return 0;
    return !dbias || (p->bias && same_dims(dbias, p->bias));
}

/* Sets every element of t, or only those of batch b when b >= 0, to value. */
static void fill_view(const ref_tensor *t, int64_t b, double value)
{
    int64_t b0 = b < 0 ? 0 : b, b1 = b < 0 ? t->dims[0] : b + 1;
    for (int64_t x = b0; x < b1; x++)
        for (int64_t h = 0; h < t->dims[1]; h++)
            for (int64_t s = 0; s < t->dims[2]; s++)
                for (int64_t d = 0; d < t->dims[3]; d++)
                    *ref_at(t, x, h, s, d) = value;
}

/* Adds value to the dbias element that score (b, h, i, j) reads, if dbias is wanted. */
static void dbias_add(const grad_job *job, int64_t b, int64_t h, int64_t i, int64_t j,
                      double value)
{
    const ref_tensor *g = job->dbias;
    if (g)
        *ref_at(g, g->dims[0] == 1 ? 0 : b, g->dims[1] == 1 ? 0 : h, g->dims[2] == 1 ? 0 : i,
                j) += value;
}

/* Scores and slopes of row i's keys (-INFINITY: takes no part), and their max; returns how
   many take part (NaN scores included, as in the forward). */
static int64_t backward_scores(grad_job *job, int64_t b, int64_t h, int64_t i, int64_t sq_b,
                               int64_t sk_b, double *max)
{
    const row_job *fwd = &job->fwd;
    int64_t live = 0;
    *max = -INFINITY;
    for (int64_t j = 0; j < fwd->k->dims[2]; j++) {
        double s = -INFINITY;
        job->slope[j] = 0.0;
        if (ref_key_visible(fwd->p, sq_b, sk_b, i, j))
            s = score_slope(fwd, b, h, i, j, &job->slope[j]);
        fwd->scores[j] = s;
        live += s != -INFINITY;
        if (s > *max)
            *max = s;
    }
    return live;
}

static double keep_weight(const ref_params *p, int64_t b, int64_t h, int64_t heads_q,
                          int64_t i, int64_t j)
{
    if (p->dropout_p == 0.0)
        return 1.0;
    if (!ref_dropout_keep(p->dropout_seed, p->dropout_offset, b, h, heads_q, p->q_start + i,
                          p->k_start + j, p->dropout_p))
        return 0.0;
    return 1.0 / (1.0 - p->dropout_p);
}

/* prob, keep and dp of the keys that take part in row i; returns delta = sum_j P_ij dP_ij. */
static double backward_probs(grad_job *job, int64_t b, int64_t h, int64_t i, double max)
{
    const row_job *fwd = &job->fwd;
    const double *sinks = fwd->p->sinks;
    int64_t sk = fwd->k->dims[2], kvh = h / fwd->group;
    if (sinks)   /* a constant of the denominator: no gradient of its own */
        max = fmax(max, sinks[h]);
    double sum = sinks ? exp(sinks[h] - max) : 0.0, delta = 0.0;
    for (int64_t j = 0; j < sk; j++)
        if (fwd->scores[j] != -INFINITY)
            sum += exp(fwd->scores[j] - max);
    for (int64_t j = 0; j < sk; j++) {
        if (fwd->scores[j] == -INFINITY)
            continue;
        double dot = 0.0;
        for (int64_t d = 0; d < fwd->v->dims[3]; d++)
            dot += *ref_at(job->dout, b, h, i, d) * *ref_at(fwd->v, b, kvh, j, d);
        job->prob[j] = exp(fwd->scores[j] - max) / sum;
        job->keep[j] = keep_weight(fwd->p, b, h, fwd->q->dims[1], i, j);
        job->dp[j] = job->keep[j] * dot;
        delta += job->prob[j] * job->dp[j];
    }
    return delta;
}

/* The contributions of pair (i, j) with score gradient ds to dq_i, dk_j, dv_j and dbias. */
static void backward_pair(const grad_job *job, int64_t b, int64_t h, int64_t i, int64_t j,
                          double ds)
{
    const row_job *fwd = &job->fwd;
    int64_t kvh = h / fwd->group;
    double dqk = ds * job->slope[j] * fwd->scale, pv = job->prob[j] * job->keep[j];
    dbias_add(job, b, h, i, j, ds);
    for (int64_t d = 0; d < fwd->q->dims[3]; d++) {
        *ref_at(job->dq, b, h, i, d) += dqk * *ref_at(fwd->k, b, kvh, j, d);
        *ref_at(job->dk, b, kvh, j, d) += dqk * *ref_at(fwd->q, b, h, i, d);
    }
    for (int64_t d = 0; d < fwd->v->dims[3]; d++)
        *ref_at(job->dv, b, kvh, j, d) += pv * *ref_at(job->dout, b, h, i, d);
}

/* One valid query row: recompute P, then dS_ij = P_ij (dP_ij - delta_i) for every key that
   takes part. A row where no key takes part contributes nothing. */
static void backward_row(grad_job *job, int64_t b, int64_t h, int64_t i, int64_t sq_b,
                         int64_t sk_b)
{
    double max;
    if (backward_scores(job, b, h, i, sq_b, sk_b, &max) == 0)
        return;
    double delta = backward_probs(job, b, h, i, max);
    for (int64_t j = 0; j < job->fwd.k->dims[2]; j++)
        if (job->fwd.scores[j] != -INFINITY)
            backward_pair(job, b, h, i, j, job->prob[j] * (job->dp[j] - delta));
}

/* A batch with a seqlens entry outside [0, dim]: NaN gradients (its forward output is NaN). */
static void backward_invalid_batch(const grad_job *job, int64_t b)
{
    fill_view(job->dq, b, NAN);
    fill_view(job->dk, b, NAN);
    fill_view(job->dv, b, NAN);
    for (int64_t h = 0; h < job->fwd.q->dims[1]; h++)
        for (int64_t i = 0; i < job->fwd.q->dims[2]; i++)
            for (int64_t j = 0; j < job->fwd.k->dims[2]; j++)
                dbias_add(job, b, h, i, j, NAN);
}

static void backward_all(grad_job *job)
{
    const ref_params *p = job->fwd.p;
    int64_t batch = job->fwd.q->dims[0], sq = job->fwd.q->dims[2], sk = job->fwd.k->dims[2];
    fill_view(job->dq, -1, 0.0);
    fill_view(job->dk, -1, 0.0);
    fill_view(job->dv, -1, 0.0);
    if (job->dbias)
        fill_view(job->dbias, -1, 0.0);
    for (int64_t b = 0; b < batch; b++) {
        if (!batch_lengths_valid(p, b, sq, sk)) {
            backward_invalid_batch(job, b);
            continue;
        }
        int64_t sq_b = ref_seq_q(p, b, sq), sk_b = ref_seq_k(p, b, sk);
        for (int64_t h = 0; h < job->fwd.q->dims[1]; h++)
            for (int64_t i = 0; i < sq_b; i++)
                backward_row(job, b, h, i, sq_b, sk_b);
    }
}

int ref_attention_backward(const ref_params *p, const ref_tensor *q, const ref_tensor *k,
                           const ref_tensor *v, const ref_tensor *dout, const ref_tensor *dq,
                           const ref_tensor *dk, const ref_tensor *dv,
                           const ref_tensor *dbias)
{
    if (!backward_shapes_fit(p, q, k, v, dout, dq, dk, dv, dbias))
        return -1;
    size_t sk = (size_t)k->dims[2];
    grad_job job = {
        .fwd = {
            .p = p, .q = q, .k = k, .v = v,
            .group = q->dims[1] / k->dims[1],
            .scale = p->scale != 0.0 ? p->scale : 1.0 / sqrt((double)q->dims[3]),
            .scores = malloc(sk * sizeof(double)),
        },
        .dout = dout, .dq = dq, .dk = dk, .dv = dv, .dbias = dbias,
        .slope = malloc(sk * sizeof(double)),
        .prob = malloc(sk * sizeof(double)),
        .keep = malloc(sk * sizeof(double)),
        .dp = malloc(sk * sizeof(double)),
    };
    int ok = job.fwd.scores && job.slope && job.prob && job.keep && job.dp;
    if (ok)
        backward_all(&job);
    free(job.fwd.scores);
    free(job.slope);
    free(job.prob);
    free(job.keep);
    free(job.dp);
    return ok ? 0 : -1;
}
