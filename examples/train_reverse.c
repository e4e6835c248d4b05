/* Train a one-layer attention model to reverse a sequence, with plain SGD.

   The task: given 8 tokens from a vocabulary of 10, output them in reverse order. Output i is
   input 7 - i, so each position must look up another position: nothing but attention can do it.

   The model, for one sequence of LEN tokens t_i:
     x_i = tok[t_i] + pos[i]                          embeddings, DIM = 32
     q = x Wq, k = x Wk, v = x Wv                      HQ = 4 query heads, HKV = 2 key/value
                                                       heads (GQA), head dim 8
     a = attention(q, k, v)                            clattn, on the default OpenCL device
     logits = a Wo + bo, loss = softmax cross-entropy against the reversed input
   The attention (forward with lse, then backward) runs through clattn; everything else is plain
   C on the host, including the gradients of the projections and embeddings from the dq, dk and
   dv that clattn_attention_backward returns. Every step draws a fresh batch; the loss and
   accuracy are measured on a fixed held-out batch. Seeds are fixed, so runs repeat.

   Build: see examples/meson.build. Run:
     ./build/examples/train_reverse [STEPS]             train (default 1000 steps)
     ./build/examples/train_reverse STEPS --check F     exit 1 unless the held-out loss after
                                                       training is at most 1/F of the loss before
   The test `train_example` runs 100 steps with --check 200 (skipped, exit 77, without a device).
   The held-out loss falls from 2.82 to 0.0031 then, a factor of 896; with any one of dq, dk or
   dv zeroed it reaches only 63, 103 or 45, and with dq and dk both zeroed 1.46. */
#include <clattn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    VOCAB = 10,         /* token values 0..9 */
    LEN = 8,            /* tokens per sequence */
    DIM = 32,           /* embedding width */
    HQ = 4,             /* query heads */
    HKV = 2,            /* key/value heads: query head h reads kv head h / 2 */
    HD = 8,             /* head dim */
    QD = HQ * HD,       /* width of q and of the attention output */
    KVD = HKV * HD,     /* width of k and v */
    BATCH = 32,         /* sequences per training step */
    EVAL = 256,         /* sequences in the held-out batch */
    DEFAULT_STEPS = 1000
};
static const float LEARNING_RATE = 0.5f; /* 1.0 diverges for some seeds */
static const uint64_t INIT_SEED = 1, TRAIN_SEED = 2, EVAL_SEED = 3;

#define CHECK(call)                                                                          \
    do {                                                                                     \
        clattn_status s_ = (call);                                                           \
        if (s_ != CLATTN_SUCCESS) {                                                          \
            fprintf(stderr, "%s: %s: %s\n", #call, clattn_status_string(s_),                 \
                    clattn_last_error());                                                    \
            return -1;                                                                       \
        }                                                                                    \
    } while (0)

#define CHECK_CL(call)                                                                       \
    do {                                                                                     \
        cl_int e_ = (call);                                                                  \
        if (e_ != CL_SUCCESS) {                                                              \
            fprintf(stderr, "%s: OpenCL error %d\n", #call, (int)e_);                        \
            return -1;                                                                       \
        }                                                                                    \
    } while (0)

/* ---- parameters --------------------------------------------------------------------------- */

/* All parameters (and, in a second instance, their gradients), as one block of floats. */
typedef struct model {
    float tok[VOCAB][DIM], pos[LEN][DIM];
    float wq[DIM][QD], wk[DIM][KVD], wv[DIM][KVD];
    float wo[QD][VOCAB], bo[VOCAB];
} model;
#define MODEL_FLOATS (sizeof(model) / sizeof(float))
_Static_assert(sizeof(model) == sizeof(float) * ((VOCAB + LEN) * DIM + DIM * (QD + 2 * KVD) +
                                                (QD + 1) * VOCAB), "model has no padding");

/* splitmix64: small, fast, and the same numbers everywhere */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static float rng_uniform(uint64_t *state) /* in (0, 1) */
{
    return ((float)(rng_next(state) >> 40) + 0.5f) / 16777216.0f;
}

static float rng_normal(uint64_t *state)
{
    float u = rng_uniform(state), v = rng_uniform(state);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static void fill_normal(float *w, size_t n, float stddev, uint64_t *state)
{
    for (size_t i = 0; i < n; i++)
        w[i] = stddev * rng_normal(state);
}

static void model_init(model *m, uint64_t seed)
{
    uint64_t st = seed;
    fill_normal(&m->tok[0][0], VOCAB * DIM, 1.0f, &st);
    fill_normal(&m->pos[0][0], LEN * DIM, 1.0f, &st);
    fill_normal(&m->wq[0][0], DIM * QD, 1.0f / sqrtf(DIM), &st);
    fill_normal(&m->wk[0][0], DIM * KVD, 1.0f / sqrtf(DIM), &st);
    fill_normal(&m->wv[0][0], DIM * KVD, 1.0f / sqrtf(DIM), &st);
    fill_normal(&m->wo[0][0], QD * VOCAB, 1.0f / sqrtf(QD), &st);
    memset(m->bo, 0, sizeof m->bo);
}

static void sgd_step(model *m, const model *grad, float lr)
{
    float *w = (float *)m;
    const float *g = (const float *)grad;
    for (size_t i = 0; i < MODEL_FLOATS; i++)
        w[i] -= lr * g[i];
}

/* ---- activations of one batch ------------------------------------------------------------- */

/* Row r = s * LEN + i is token i of sequence s, so q is [seqs, LEN, HQ, HD] (BSHD) as it is. */
typedef struct batch {
    int seqs;
    int *tokens, *targets;              /* [seqs * LEN] */
    float *x;                           /* [rows][DIM]   embeddings */
    float *q, *k, *v;                   /* [rows][QD], [rows][KVD], [rows][KVD] */
    float *a;                           /* [rows][QD]    attention output */
    float *p;                           /* [rows][VOCAB] softmax of the logits */
    float *da, *dq, *dk, *dv;           /* gradients of the mean loss */
} batch;

static void batch_free(batch *b)
{
    free(b->tokens);
    free(b->x);
    memset(b, 0, sizeof *b);
}

static int batch_alloc(batch *b, int seqs)
{
    size_t rows = (size_t)seqs * LEN;
    size_t widths[] = {DIM, QD, KVD, KVD, QD, VOCAB, QD, QD, KVD, KVD};
    float **parts[] = {&b->x, &b->q, &b->k, &b->v, &b->a, &b->p, &b->da, &b->dq, &b->dk, &b->dv};
    size_t total = 0;
    for (int i = 0; i < 10; i++)
        total += rows * widths[i];
    memset(b, 0, sizeof *b);
    b->seqs = seqs;
    b->tokens = malloc(2 * rows * sizeof(int));
    float *f = malloc(total * sizeof(float));
    if (!b->tokens || !f) {
        free(f);
        free(b->tokens);
        fprintf(stderr, "out of host memory\n");
        return -1;
    }
    b->targets = b->tokens + rows;
    for (int i = 0; i < 10; i++) {
        *parts[i] = f;
        f += rows * widths[i];
    }
    return 0;
}

/* Random sequences; each target sequence is its input reversed. */
static void batch_draw(batch *b, uint64_t *state)
{
    for (int s = 0; s < b->seqs; s++)
        for (int i = 0; i < LEN; i++)
            b->tokens[s * LEN + i] = (int)(rng_next(state) % VOCAB);
    for (int s = 0; s < b->seqs; s++)
        for (int i = 0; i < LEN; i++)
            b->targets[s * LEN + i] = b->tokens[s * LEN + LEN - 1 - i];
}

/* ---- dense layers on the host ------------------------------------------------------------ */

/* y[n][m] = x[n][k] w[k][m] */
static void matmul(const float *x, const float *w, float *y, int n, int k, int m)
{
    for (int r = 0; r < n; r++) {
        float *yr = y + (size_t)r * m;
        memset(yr, 0, (size_t)m * sizeof(float));
        for (int c = 0; c < k; c++) {
            float xc = x[(size_t)r * k + c];
            for (int o = 0; o < m; o++)
                yr[o] += xc * w[(size_t)c * m + o];
        }
    }
}

/* gw[k][m] += x[n][k]^T dy[n][m] */
static void matmul_grad_w(const float *x, const float *dy, float *gw, int n, int k, int m)
{
    for (int r = 0; r < n; r++)
        for (int c = 0; c < k; c++) {
            float xc = x[(size_t)r * k + c];
            for (int o = 0; o < m; o++)
                gw[(size_t)c * m + o] += xc * dy[(size_t)r * m + o];
        }
}

/* dx[n][k] += dy[n][m] w[k][m]^T */
static void matmul_grad_x(const float *dy, const float *w, float *dx, int n, int k, int m)
{
    for (int r = 0; r < n; r++)
        for (int c = 0; c < k; c++) {
            float acc = 0.0f;
            for (int o = 0; o < m; o++)
                acc += dy[(size_t)r * m + o] * w[(size_t)c * m + o];
            dx[(size_t)r * k + c] += acc;
        }
}

static void embed_and_project(const model *m, batch *b)
{
    int rows = b->seqs * LEN;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < DIM; c++)
            b->x[r * DIM + c] = m->tok[b->tokens[r]][c] + m->pos[r % LEN][c];
    matmul(b->x, &m->wq[0][0], b->q, rows, DIM, QD);
    matmul(b->x, &m->wk[0][0], b->k, rows, DIM, KVD);
    matmul(b->x, &m->wv[0][0], b->v, rows, DIM, KVD);
}

/* Softmax cross-entropy of logits = a Wo + bo into b->p. Returns the mean loss over all tokens;
   counts the tokens, and the whole sequences, whose most likely value is the target. */
static double output_loss(const model *m, batch *b, int *tokens_right, int *seqs_right)
{
    int rows = b->seqs * LEN, seq_right = 1;
    double loss = 0.0;
    *tokens_right = *seqs_right = 0;
    matmul(b->a, &m->wo[0][0], b->p, rows, QD, VOCAB);
    for (int r = 0; r < rows; r++) {
        float *p = b->p + r * VOCAB, max = -INFINITY, sum = 0.0f;
        int best = 0;
        for (int c = 0; c < VOCAB; c++) {
            p[c] += m->bo[c];
            if (p[c] > max)
                max = p[c], best = c;
        }
        for (int c = 0; c < VOCAB; c++)
            sum += p[c] = expf(p[c] - max);
        for (int c = 0; c < VOCAB; c++)
            p[c] /= sum;
        loss -= log(p[b->targets[r]]);
        *tokens_right += best == b->targets[r];
        seq_right &= best == b->targets[r];
        if (r % LEN == LEN - 1) {
            *seqs_right += seq_right;
            seq_right = 1;
        }
    }
    return loss / rows;
}

/* Gradients of the mean loss: dWo, dbo into g, and da = dloss/da (the dout of the attention). */
static void output_backward(const model *m, batch *b, model *g)
{
    int rows = b->seqs * LEN;
    for (int r = 0; r < rows; r++) {
        float *dl = b->p + r * VOCAB; /* the probabilities become dloss/dlogits in place */
        dl[b->targets[r]] -= 1.0f;
        for (int c = 0; c < VOCAB; c++) {
            dl[c] /= rows;
            g->bo[c] += dl[c];
        }
    }
    matmul_grad_w(b->a, b->p, &g->wo[0][0], rows, QD, VOCAB);
    memset(b->da, 0, (size_t)rows * QD * sizeof(float));
    matmul_grad_x(b->p, &m->wo[0][0], b->da, rows, QD, VOCAB);
}

/* From clattn's dq, dk, dv: gradients of Wq, Wk, Wv and of the embeddings, into g. */
static void project_backward(const model *m, batch *b, model *g)
{
    int rows = b->seqs * LEN;
    matmul_grad_w(b->x, b->dq, &g->wq[0][0], rows, DIM, QD);
    matmul_grad_w(b->x, b->dk, &g->wk[0][0], rows, DIM, KVD);
    matmul_grad_w(b->x, b->dv, &g->wv[0][0], rows, DIM, KVD);
    float *dx = b->x; /* x is not needed any more: reuse it for dloss/dx */
    memset(dx, 0, (size_t)rows * DIM * sizeof(float));
    matmul_grad_x(b->dq, &m->wq[0][0], dx, rows, DIM, QD);
    matmul_grad_x(b->dk, &m->wk[0][0], dx, rows, DIM, KVD);
    matmul_grad_x(b->dv, &m->wv[0][0], dx, rows, DIM, KVD);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < DIM; c++) {
            g->tok[b->tokens[r]][c] += dx[r * DIM + c];
            g->pos[r % LEN][c] += dx[r * DIM + c];
        }
}

/* ---- attention through clattn ------------------------------------------------------------ */

/* Device buffers sized for the largest batch; smaller batches use views of their start. */
typedef struct device_attention {
    clattn_context *ctx;
    cl_mem q, k, v, out, lse, dout, dq, dk, dv;
} device_attention;

static void device_release(device_attention *d)
{
    cl_mem buffers[] = {d->q, d->k, d->v, d->out, d->lse, d->dout, d->dq, d->dk, d->dv};
    for (int i = 0; i < 9; i++)
        if (buffers[i])
            clReleaseMemObject(buffers[i]);
    clattn_context_release(d->ctx);
    memset(d, 0, sizeof *d);
}

static int device_buffers_create(device_attention *d, int max_seqs)
{
    cl_context cl = clattn_context_cl_context(d->ctx);
    size_t rows = (size_t)max_seqs * LEN, f = sizeof(float);
    /* out and lse are written by the forward and read by the backward: READ_WRITE */
    struct { cl_mem *mem; cl_mem_flags flags; size_t bytes; } spec[] = {
        {&d->q, CL_MEM_READ_ONLY, rows * QD * f},    {&d->k, CL_MEM_READ_ONLY, rows * KVD * f},
        {&d->v, CL_MEM_READ_ONLY, rows * KVD * f},   {&d->out, CL_MEM_READ_WRITE, rows * QD * f},
        {&d->lse, CL_MEM_READ_WRITE, rows * HQ * f}, {&d->dout, CL_MEM_READ_ONLY, rows * QD * f},
        {&d->dq, CL_MEM_WRITE_ONLY, rows * QD * f},  {&d->dk, CL_MEM_WRITE_ONLY, rows * KVD * f},
        {&d->dv, CL_MEM_WRITE_ONLY, rows * KVD * f},
    };
    for (int i = 0; i < 9; i++) {
        cl_int err;
        *spec[i].mem = clCreateBuffer(cl, spec[i].flags, spec[i].bytes, NULL, &err);
        CHECK_CL(err);
    }
    return 0;
}

typedef struct views {
    clattn_tensor q, k, v, out, lse, dout, dq, dk, dv;
} views;

static views views_of(const device_attention *d, int seqs)
{
    views t;
    t.q = clattn_tensor_bshd(d->q, CLATTN_F32, seqs, LEN, HQ, HD);
    t.k = clattn_tensor_bshd(d->k, CLATTN_F32, seqs, LEN, HKV, HD);
    t.v = clattn_tensor_bshd(d->v, CLATTN_F32, seqs, LEN, HKV, HD);
    t.out = clattn_tensor_bshd(d->out, CLATTN_F32, seqs, LEN, HQ, HD);
    t.lse = clattn_tensor_bhsd(d->lse, CLATTN_F32, seqs, HQ, LEN, 1);
    t.dout = clattn_tensor_bshd(d->dout, CLATTN_F32, seqs, LEN, HQ, HD);
    t.dq = clattn_tensor_bshd(d->dq, CLATTN_F32, seqs, LEN, HQ, HD);
    t.dk = clattn_tensor_bshd(d->dk, CLATTN_F32, seqs, LEN, HKV, HD);
    t.dv = clattn_tensor_bshd(d->dv, CLATTN_F32, seqs, LEN, HKV, HD);
    return t;
}

/* a = attention(q, k, v); out and lse stay on the device for the backward. */
static int attention_forward(device_attention *d, batch *b)
{
    cl_command_queue queue = clattn_context_queue(d->ctx);
    size_t rows = (size_t)b->seqs * LEN, f = sizeof(float);
    views t = views_of(d, b->seqs);
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc); /* no mask: every token sees every token */
    /* non-blocking writes are safe: the blocking read below waits for them (in-order queue) */
    CHECK_CL(clEnqueueWriteBuffer(queue, d->q, CL_FALSE, 0, rows * QD * f, b->q, 0, NULL, NULL));
    CHECK_CL(clEnqueueWriteBuffer(queue, d->k, CL_FALSE, 0, rows * KVD * f, b->k, 0, NULL, NULL));
    CHECK_CL(clEnqueueWriteBuffer(queue, d->v, CL_FALSE, 0, rows * KVD * f, b->v, 0, NULL, NULL));
    CHECK(clattn_attention_forward(d->ctx, &desc, &t.q, &t.k, &t.v, &t.out, &t.lse, 0, NULL, NULL));
    CHECK_CL(clEnqueueReadBuffer(queue, d->out, CL_TRUE, 0, rows * QD * f, b->a, 0, NULL, NULL));
    return 0;
}

/* dq, dk, dv from da, for the batch of the last attention_forward. */
static int attention_backward(device_attention *d, batch *b)
{
    cl_command_queue queue = clattn_context_queue(d->ctx);
    size_t rows = (size_t)b->seqs * LEN, f = sizeof(float);
    views t = views_of(d, b->seqs);
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc); /* the same desc as the forward */
    CHECK_CL(clEnqueueWriteBuffer(queue, d->dout, CL_FALSE, 0, rows * QD * f, b->da, 0, NULL,
                                  NULL));
    CHECK(clattn_attention_backward(d->ctx, &desc, &t.q, &t.k, &t.v, &t.out, &t.dout, &t.lse,
                                    &t.dq, &t.dk, &t.dv, 0, NULL, NULL));
    CHECK_CL(clEnqueueReadBuffer(queue, d->dq, CL_FALSE, 0, rows * QD * f, b->dq, 0, NULL, NULL));
    CHECK_CL(clEnqueueReadBuffer(queue, d->dk, CL_FALSE, 0, rows * KVD * f, b->dk, 0, NULL, NULL));
    CHECK_CL(clEnqueueReadBuffer(queue, d->dv, CL_TRUE, 0, rows * KVD * f, b->dv, 0, NULL, NULL));
    return 0;
}

/* ---- training ---------------------------------------------------------------------------- */

typedef struct eval_result {
    double loss;
    int tokens_right, seqs_right;
} eval_result;

static int evaluate(device_attention *d, const model *m, batch *b, eval_result *r)
{
    embed_and_project(m, b);
    if (attention_forward(d, b) != 0)
        return -1;
    r->loss = output_loss(m, b, &r->tokens_right, &r->seqs_right);
    return 0;
}

/* One SGD step on batch b; *loss is its loss before the step. */
static int train_step(device_attention *d, model *m, model *g, batch *b, double *loss)
{
    int tokens_right, seqs_right;
    embed_and_project(m, b);
    if (attention_forward(d, b) != 0)
        return -1;
    *loss = output_loss(m, b, &tokens_right, &seqs_right);
    memset(g, 0, sizeof *g);
    output_backward(m, b, g);
    if (attention_backward(d, b) != 0)
        return -1;
    project_backward(m, b, g);
    sgd_step(m, g, LEARNING_RATE);
    return 0;
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void print_eval(const char *label, const eval_result *r)
{
    printf("%s held-out loss %.4f  tokens right %5.1f%%  sequences right %5.1f%%\n", label,
           r->loss, 100.0 * r->tokens_right / (EVAL * LEN), 100.0 * r->seqs_right / EVAL);
}

/* Trains for `steps` steps; *before and *after are the held-out results around training. */
static int train(device_attention *d, int steps, eval_result *before, eval_result *after)
{
    int rc = -1;
    model *m = malloc(sizeof *m), *g = malloc(sizeof *g);
    batch train_batch = {0}, eval_batch = {0};
    if (!m || !g) {
        fprintf(stderr, "out of host memory\n");
        goto cleanup;
    }
    if (batch_alloc(&train_batch, BATCH) != 0 || batch_alloc(&eval_batch, EVAL) != 0)
        goto cleanup;
    uint64_t train_rng = TRAIN_SEED, eval_rng = EVAL_SEED;
    model_init(m, INIT_SEED);
    batch_draw(&eval_batch, &eval_rng);
    if (evaluate(d, m, &eval_batch, before) != 0)
        goto cleanup;
    print_eval("before training:", before);

    int every = steps >= 10 ? steps / 10 : 1;
    double sum = 0.0, t0 = seconds_now();
    for (int step = 1; step <= steps; step++) {
        double loss;
        batch_draw(&train_batch, &train_rng);
        if (train_step(d, m, g, &train_batch, &loss) != 0)
            goto cleanup;
        sum += loss;
        if (step % every == 0 || step == steps) {
            int n = step % every ? step % every : every;
            printf("step %5d  training loss %.4f (mean of the last %d)  %.1f s\n", step, sum / n,
                   n, seconds_now() - t0);
            sum = 0.0;
        }
    }
    if (evaluate(d, m, &eval_batch, after) != 0)
        goto cleanup;
    print_eval("after training: ", after);
    rc = 0;
cleanup:
    /* after a failure, transfers from or to the batches may still be queued */
    clFinish(clattn_context_queue(d->ctx));
    batch_free(&train_batch);
    batch_free(&eval_batch);
    free(m);
    free(g);
    return rc;
}

static int usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [STEPS] [--check FACTOR]\n"
                    "  STEPS   SGD steps of %d sequences (default %d)\n"
                    "  --check exit 1 unless the held-out loss falls to 1/FACTOR of its start\n",
            argv0, BATCH, DEFAULT_STEPS);
    return 2;
}

int main(int argc, char **argv)
{
    long steps = DEFAULT_STEPS;
    double factor = 0.0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--check") == 0 && i + 1 < argc) {
            factor = strtod(argv[++i], &end);
            if (*end || !(factor >= 1.0))
                return usage(argv[0]);
        } else {
            steps = strtol(argv[i], &end, 10);
            if (*end || steps < 1 || steps > 100000000)
                return usage(argv[0]);
        }
    }

    device_attention d = {0};
    clattn_status s = clattn_context_create(NULL, &d.ctx);
    if (s != CLATTN_SUCCESS) {
        fprintf(stderr, "clattn_context_create: %s: %s\n", clattn_status_string(s),
                clattn_last_error());
        /* 77 tells Meson to count the test as skipped on a machine without OpenCL */
        return s == CLATTN_ERROR_DEVICE_NOT_FOUND && factor > 0.0 ? 77 : 1;
    }
    if (device_buffers_create(&d, EVAL) != 0) {
        device_release(&d);
        return 1;
    }
    printf("device: %s\n", clattn_context_device_name(d.ctx));
    printf("reverse %d tokens of %d values; dim %d, %d query heads, %d kv heads of dim %d; "
           "batch %d, SGD lr %.2f, %ld steps\n",
           LEN, VOCAB, DIM, HQ, HKV, HD, BATCH, LEARNING_RATE, steps);
    eval_result before, after;
    double t0 = seconds_now();
    int rc = train(&d, (int)steps, &before, &after);
    device_release(&d);
    if (rc != 0)
        return 1;
    printf("%ld steps in %.1f s\n", steps, seconds_now() - t0);
    if (factor > 0.0) {
        double ratio = before.loss / after.loss;
        printf("check: loss fell %.4f -> %.4f, by a factor of %.2f (required %.2f): %s\n",
               before.loss, after.loss, ratio, factor, ratio >= factor ? "pass" : "FAIL");
        return ratio >= factor ? 0 : 1;
    }
    return 0;
}
