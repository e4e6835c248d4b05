/* The CPU peer: per (batch, query head), per block of ROW_BLOCK query rows,
     S = (Q K^T) / sqrt(D)      cblas_sgemm over the keys any row of the block sees,
     P = e^(S - row max)        masked keys get 0,
     O = P V / row sum          cblas_sgemm, then each row scaled by 1 / its sum.
   A one-row block (decode) uses cblas_sgemv for both products instead. A causal block's
   products stop at the last key its last row sees, so masked blocks cost nothing (the FLOP
   count that the bench credits is the visible pairs only).

   Threading: the bench's peer runs pthreads over the (batch, head) pairs with OpenBLAS
   single-threaded (CPU_ATTENTION_THREADS_OVER_HEADS), the faster of the two on this project's
   PoCL box (2 cores, SkylakeX core, other jobs loading it; best of 7 calls, 3 rounds): f32
   B=1 H=16 S=1024 D=64 79-81 GFLOP/s against 74-76 with threaded OpenBLAS and heads in
   sequence; causal 58-70 against 64-65 (a tie); GQA decode (Hq=32, Hkv=8, Sk=4096, D=128)
   4.0-6.5 ms against 7.1-8.5 ms, where one-row products leave OpenBLAS's threads little to
   share. `clattn-bench --openblas-threading blas` runs the other one to re-measure. */
#include "openblas_attention.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define ROW_BLOCK 128   /* query rows per GEMM: bounds scratch, skips causal-masked blocks */
#define MAX_THREADS 256

/* One head's operands. */
typedef struct head {
    const float *q, *k, *v;
    float *out;
} head;

typedef struct worker {
    const cpu_attention_problem *p;
    const float *q, *k, *v;
    float *out;
    int64_t first, step;   /* pairs first, first + step, ... */
    float *scores;         /* ROW_BLOCK * Sk floats */
    pthread_t thread;
} worker;

static int64_t clamp64(int64_t x, int64_t lo, int64_t hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

/* Keys row i sees: [0, visible). */
static int64_t visible_keys(const cpu_attention_problem *p, int64_t i)
{
    return p->causal ? clamp64(i + p->sk - p->sq + 1, 0, p->sk) : p->sk;
}

/* The softmax is most of the time left once the GEMMs run on a good kernel, so it is written
   for the vectorizer: LANES independent partial maxima and sums, and an exp in plain float
   arithmetic (no libm call). The row functions are cloned for AVX-512 and AVX2 where the
   compiler can (GCC, clang on x86-64 Linux), since the bench is built for baseline x86-64.
   This file is built with -fno-trapping-math (bench/meson.build): with GCC's default the exp
   stayed scalar, and the peer ran B=1 H=16 S=1024 D=64 f32 at 42 GFLOP/s instead of 103
   (Zen 3, 2 cores). */
#define LANES 16
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define ROW_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ROW_CLONES
#endif

/* e^x for x <= 0, within ~2 ulp (x below -87 gives e^-87): 2^k * p(r), k = round(x log2 e),
   r = x - k ln 2 in two parts (Cody-Waite), p the Cephes expf polynomial. */
static inline float exp_nonpositive(float x)
{
    x = x >= -87.0f ? x : -87.0f;   /* also maps NaN, so the conversion below is defined */
    x = x <= 0.0f ? x : 0.0f;
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* rint, |k| < 2^22 */
    float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

ROW_CLONES static float row_max(const float *s, int64_t n)
{
    float m[LANES], best = -3.0e38f;
    int64_t j = 0;
    for (int l = 0; l < LANES; l++)
        m[l] = -3.0e38f;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            m[l] = s[j + l] > m[l] ? s[j + l] : m[l];
    for (; j < n; j++)
        best = s[j] > best ? s[j] : best;
    for (int l = 0; l < LANES; l++)
        best = m[l] > best ? m[l] : best;
    return best;
}

/* s[j] = e^(s[j] - m) for j < n; returns their sum. */
ROW_CLONES static float exp_sum(float *s, int64_t n, float m)
{
    float acc[LANES] = {0}, sum = 0.0f;
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += s[j + l] = exp_nonpositive(s[j + l] - m);
    for (; j < n; j++)
        sum += s[j] = exp_nonpositive(s[j] - m);
    for (int l = 0; l < LANES; l++)
        sum += acc[l];
    return sum;
}

/* s[0, n) = e^(s - max) over the visible s[0, visible), 0 beyond; returns 1 / its sum, by which
   the row of O = P V is scaled afterwards (0 when no key is visible). */
static float exp_row(float *s, int64_t visible, int64_t n)
{
    float sum = exp_sum(s, visible, row_max(s, visible));
    memset(s + visible, 0, (size_t)(n - visible) * sizeof *s);
    return visible > 0 ? 1.0f / sum : 0.0f;
}

/* Rows [r0, r1) of one head; s holds (r1 - r0) * Sk floats. */
static void attend_rows(const cpu_attention_problem *p, const head *x, float *s, int64_t r0,
                        int64_t r1)
{
    int rows = (int)(r1 - r0), n = (int)visible_keys(p, r1 - 1), d = (int)p->d, dv = (int)p->dv;
    float *o = x->out + r0 * p->dv, inv[ROW_BLOCK];
    if (n == 0) {
        memset(o, 0, (size_t)rows * (size_t)dv * sizeof *o);
        return;
    }
    if (rows == 1)   /* decode: OpenBLAS 0.3.21 would pack whole K and V for a 1-row GEMM */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, d, 1.0f / sqrtf((float)d), x->k, d,
                    x->q + r0 * p->d, 1, 0.0f, s, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, d, 1.0f / sqrtf((float)d),
                    x->q + r0 * p->d, d, x->k, d, 0.0f, s, n);
    for (int i = 0; i < rows; i++)
        inv[i] = exp_row(s + (int64_t)i * n, visible_keys(p, r0 + i), n);
    if (rows == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, n, dv, 1.0f, x->v, dv, s, 1, 0.0f, o, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, dv, n, 1.0f, s, n, x->v,
                    dv, 0.0f, o, dv);
    for (int i = 0; i < rows; i++)
        cblas_sscal(dv, inv[i], o + (int64_t)i * dv, 1);
}

/* Pair = b * Hq + h. */
static head head_of(const cpu_attention_problem *p, const float *q, const float *k,
                    const float *v, float *out, int64_t pair)
{
    int64_t b = pair / p->hq, h = pair % p->hq, kv = b * p->hkv + h / (p->hq / p->hkv);
    head x = {q + pair * p->sq * p->d, k + kv * p->sk * p->d, v + kv * p->sk * p->dv,
              out + pair * p->sq * p->dv};
    return x;
}

static void attend_head(const cpu_attention_problem *p, const head *x, float *s)
{
    for (int64_t r0 = 0; r0 < p->sq; r0 += ROW_BLOCK)
        attend_rows(p, x, s, r0, r0 + ROW_BLOCK < p->sq ? r0 + ROW_BLOCK : p->sq);
}

static void *run_worker(void *arg)
{
    worker *w = arg;
    for (int64_t pair = w->first; pair < w->p->b * w->p->hq; pair += w->step) {
        head x = head_of(w->p, w->q, w->k, w->v, w->out, pair);
        attend_head(w->p, &x, w->scores);
    }
    return NULL;
}

static int fits_int(const cpu_attention_problem *p)
{
    const int64_t lim = 1 << 30;
    return p->sk < lim && p->d < lim && p->dv < lim && p->hq % p->hkv == 0 &&
           (p->sq < ROW_BLOCK ? p->sq : ROW_BLOCK) * p->sk < lim;
}

/* Runs n workers (n - 1 threads and this one); 0 when a thread does not start. */
static int run_workers(worker *w, int n)
{
    int started = 1, ok = 1;
    for (; ok && started < n; started++)
        ok = pthread_create(&w[started].thread, NULL, run_worker, &w[started]) == 0;
    started -= !ok;
    run_worker(&w[0]);
    for (int i = 1; i < started; i++)
        pthread_join(w[i].thread, NULL);
    return ok;
}

int cpu_attention_forward(const cpu_attention_problem *p, cpu_attention_threading t, int threads,
                          const float *q, const float *k, const float *v, float *out)
{
    int64_t pairs = p->b * p->hq, rows = p->sq < ROW_BLOCK ? p->sq : ROW_BLOCK;
    int n = t == CPU_ATTENTION_THREADS_IN_BLAS ? 1 : (int)clamp64(threads, 1, MAX_THREADS);
    n = pairs < n ? (int)pairs : n;
    if (!fits_int(p) || n < 1)
        return 0;
    worker w[MAX_THREADS];
    float *scores = malloc((size_t)n * (size_t)(rows * p->sk) * sizeof *scores);
    if (!scores)
        return 0;
    openblas_set_num_threads(t == CPU_ATTENTION_THREADS_IN_BLAS ? threads : 1);
    for (int i = 0; i < n; i++) {
        worker x = {p, q, k, v, out, i, n, scores + (size_t)i * (size_t)(rows * p->sk), 0};
        w[i] = x;
    }
    int ok = run_workers(w, n);
    free(scores);
    return ok;
}

/* Row i of head x against the reference in double; writes max |ref| to *peak. */
static double check_row(const cpu_attention_problem *p, const head *x, int64_t i, double *s,
                        double *peak)
{
    int64_t n = visible_keys(p, i);
    double m = -1e300, sum = 0.0, worst = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double dot = 0.0;
        for (int64_t c = 0; c < p->d; c++)
            dot += (double)x->q[i * p->d + c] * (double)x->k[j * p->d + c];
        s[j] = dot / sqrt((double)p->d);
        m = s[j] > m ? s[j] : m;
    }
    for (int64_t j = 0; j < n; j++)
        sum += s[j] = exp(s[j] - m);
    for (int64_t c = 0; c < p->dv; c++) {
        double ref = 0.0;
        for (int64_t j = 0; j < n; j++)
            ref += s[j] * (double)x->v[j * p->dv + c];
        ref = n > 0 ? ref / sum : 0.0;
        double err = fabs((double)x->out[i * p->dv + c] - ref);
        worst = err > worst || isnan(err) ? err : worst;   /* NaN sticks */
        *peak = fabs(ref) > *peak ? fabs(ref) : *peak;
    }
    return worst;
}

double cpu_attention_check(const cpu_attention_problem *p, const float *q, const float *k,
                           const float *v, const float *out, int64_t b, int64_t h)
{
    double *s = malloc((size_t)p->sk * sizeof *s + 1), worst = 0.0, peak = 0.0;
    if (!s)
        return -1.0;
    head x = head_of(p, q, k, v, (float *)out, b * p->hq + h);
    for (int64_t i = 0; i < p->sq; i++) {
        double err = check_row(p, &x, i, s, &peak);
        worst = err > worst || isnan(err) ? err : worst;
    }
    free(s);
    return worst / (peak > 0.0 ? peak : 1.0);
}

const char *cpu_attention_core(void)
{
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}

int cpu_attention_cpus(void)
{
    int n = openblas_get_num_procs();
    return n > 0 ? n : 1;
}
