/* Sequence-parallel (ring) attention over MPI: N ranks, each with its own clattn context, hold
   contiguous shards of the Q, K and V of one sequence and compute its attention, forward and
   backward, as if one device held it all.

   Forward: the K/V shards travel round the ring (rank r sends to r+1, receives from r-1). At
   step s rank r holds the K/V of rank r-s; a non-blocking send of that shard and receive of the
   next one run while the device attends to the current one. Each step's partial (out, lse) is
   folded into the running result with clattn_attention_merge. With --causal, a (query chunk,
   key chunk) pair of equal lengths is fully visible (key chunk earlier), diagonal (the same
   chunk: plain causal) or invisible (skipped). Each call also gets its chunks' positions in
   the sequence (desc.q_start, k_start), which key the dropout mask: with --dropout the shards
   drop what one call over the whole sequence drops.
   Backward: with the forward's final out and lse of its own rows, clattn_attention_backward on
   (own q, visiting k/v, own out/dout/lse) gives exactly that key chunk's share of dq, dk and
   dv. dq is summed on the rank; the dK/dV sums (f32, on the host) travel round the ring with
   their K/V and reach their owner after N hops.
   --zigzag cuts the sequence into 2N chunks and gives rank r chunks r and 2N-1-r, so every
   rank does the same causal work (Llama 3's context parallelism does the same).

   Run: mpirun -np 2 --oversubscribe ./build/examples/ring_attention --seq 64 --causal --check
   (usage() lists the flags; --device 0:%l puts each rank of a host on its own device).
   --check: rank 0 gathers out, lse (and dq, dk, dv) and compares them with one clattn call
   over the whole sequence on its own context.
   Exit status: 0; 1 a failure or --check over its tolerance; 2 a usage error (on every rank);
   77 no OpenCL device (Meson counts the test as skipped). */
#include <clattn.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { EXIT_USAGE = 2, EXIT_SKIP = 77, TAG_KV = 1, TAG_DKV = 2, MAX_CHUNKS = 2 };
static const uint64_t DROPOUT_SEED = 0x5eed;

/* --check tolerances, max |x - ref| / max |ref| per tensor. Both sides read the same input
   bits and compute in f32 (out and the gradients are stored in f32); they differ only in how
   the sums over keys are split (the merge, the host's sums of dq, dk, dv), a few f32 roundings
   per chunk: measured under 1e-6 in every dtype. The f16/bf16 bound is the one the issue set
   (room for outputs stored in those dtypes); a wrong, missing or twice-counted chunk moves the
   result by O(1) (0.8 to 46 when each step of the ring was broken in turn). */
static const double TOL_F32 = 1e-4, TOL_HALF = 2e-3;

static void die(const char *what, const char *why)
{
    int rank = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fprintf(stderr, "rank %d: %s: %s\n", rank, what, why);
    /* a rank that stops alone would leave the others waiting in the ring */
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

#define CHECK(call)                                                                          \
    do {                                                                                     \
        clattn_status s_ = (call);                                                           \
        if (s_ != CLATTN_SUCCESS)                                                            \
            die(#call, clattn_last_error());                                                 \
    } while (0)

#define CHECK_CL(call)                                                                       \
    do {                                                                                     \
        cl_int e_ = (call);                                                                  \
        if (e_ != CL_SUCCESS) {                                                              \
            char m_[32];                                                                     \
            snprintf(m_, sizeof m_, "OpenCL error %d", (int)e_);                             \
            die(#call, m_);                                                                  \
        }                                                                                    \
    } while (0)

#define CHECK_MPI(call)                                                                      \
    do {                                                                                     \
        if ((call) != MPI_SUCCESS)                                                           \
            die(#call, "MPI error");                                                         \
    } while (0)

/* ---- options ------------------------------------------------------------------------------ */

typedef struct options {
    int64_t batch, seq, heads, kv_heads, dim;
    int causal, backward, zigzag, check, repeat;
    clattn_dtype dtype;
    double dropout;
    const char *device; /* clattn's selector, %l for the rank's index on its host; or NULL */
} options;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: mpirun -np N ring_attention [options]\n"
        "  --seq S          tokens (default 64); S must split into N equal shards\n"
        "                   (2N with --zigzag)\n"
        "  --batch B        (default 1)\n"
        "  --heads H        query heads (default 4)\n"
        "  --kv-heads HKV   key/value heads, dividing H (default H)\n"
        "  --dim D          head dim of q, k and v (default 32)\n"
        "  --causal         causal mask\n"
        "  --dtype T        f32 | f16 | bf16 for q, k, v (default f32)\n"
        "  --dropout P      dropout probability in [0, 1) (default 0)\n"
        "  --backward       also dq, dk, dv of a pseudo-random dout\n"
        "  --zigzag         each rank holds chunks r and 2N-1-r of 2N (even causal work)\n"
        "  --check          compare with one clattn call on rank 0; exit 1 over tolerance\n"
        "  --repeat R       run the ring R times, time the last (default 1)\n"
        "  --device SEL     clattn's device selector (default: $CLATTN_DEVICE, else the first\n"
        "                   GPU...); %%l in it becomes the rank's index on its host, so\n"
        "                   --device 0:%%l gives each rank of a host its own device\n"
        "Every call gets its chunks' positions in the sequence (q_start, k_start), which key\n"
        "the dropout mask, so the shards drop what one call over the whole sequence drops.\n");
}

/* The value of a flag, or NULL when argv has none. */
static const char *flag_value(int argc, char **argv, int *i)
{
    return *i + 1 < argc ? argv[++*i] : NULL;
}

static int parse_count(const char *s, int64_t *out)
{
    char *end;
    if (!s)
        return -1;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > (1LL << 24))
        return -1;
    *out = v;
    return 0;
}

static int parse_dtype(const char *s, clattn_dtype *t)
{
    const char *names[] = {"f32", "f16", "bf16"};
    const clattn_dtype types[] = {CLATTN_F32, CLATTN_F16, CLATTN_BF16};
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *t = types[i];
            return 0;
        }
    return -1;
}

static int parse_probability(const char *s, double *p)
{
    char *end;
    if (!s)
        return -1;
    *p = strtod(s, &end);
    return *s != '\0' && *end == '\0' && *p >= 0.0 && *p < 1.0 ? 0 : -1;
}

/* One flag at argv[*i]; 0, or -1 with why set. */
static int parse_flag(int argc, char **argv, int *i, options *o, const char **why)
{
    const char *a = argv[*i];
    int64_t repeat = 1;
    int bad = 0;
    if (strcmp(a, "--causal") == 0)
        o->causal = 1;
    else if (strcmp(a, "--backward") == 0)
        o->backward = 1;
    else if (strcmp(a, "--zigzag") == 0)
        o->zigzag = 1;
    else if (strcmp(a, "--check") == 0)
        o->check = 1;
    else if (strcmp(a, "--seq") == 0)
        bad = parse_count(flag_value(argc, argv, i), &o->seq);
    else if (strcmp(a, "--batch") == 0)
        bad = parse_count(flag_value(argc, argv, i), &o->batch);
    else if (strcmp(a, "--heads") == 0)
        bad = parse_count(flag_value(argc, argv, i), &o->heads);
    else if (strcmp(a, "--kv-heads") == 0)
        bad = parse_count(flag_value(argc, argv, i), &o->kv_heads);
    else if (strcmp(a, "--dim") == 0)
        bad = parse_count(flag_value(argc, argv, i), &o->dim);
    else if (strcmp(a, "--dtype") == 0)
        bad = parse_dtype(flag_value(argc, argv, i), &o->dtype);
    else if (strcmp(a, "--dropout") == 0)
        bad = parse_probability(flag_value(argc, argv, i), &o->dropout);
    else if (strcmp(a, "--device") == 0)
        bad = (o->device = flag_value(argc, argv, i)) == NULL;
    else if (strcmp(a, "--repeat") == 0) {
        bad = parse_count(flag_value(argc, argv, i), &repeat);
        o->repeat = bad ? o->repeat : (int)repeat;
    } else {
        *why = "unknown option";
        return -1;
    }
    if (bad)
        *why = "missing or bad value";
    return bad ? -1 : 0;
}

/* Flags that parse but cannot run together; NULL when the options are consistent. */
static const char *options_problem(const options *o, int nranks)
{
    int64_t chunks = (int64_t)nranks * (o->zigzag ? 2 : 1);
    if (o->heads % o->kv_heads != 0)
        return "--kv-heads must divide --heads";
    if (o->seq % chunks != 0)
        return o->zigzag ? "--seq must be a multiple of 2N (N = number of ranks) with --zigzag"
                         : "--seq must be a multiple of N (N = number of ranks)";
    /* whole tensors are built on every rank, and a shard's K and V travel as one MPI message
       of bytes counted in an int: 2 * 2^27 f32 elements stay under 2^31 */
    if (o->batch * o->heads * o->seq * o->dim > (1LL << 27))
        return "tensors over 2^27 elements are beyond this example";
    return NULL;
}

/* 0: run; 1: --help; -1: usage error (why set). */
static int parse_options(int argc, char **argv, int nranks, options *o, const char **why)
{
    *o = (options){.batch = 1, .seq = 64, .heads = 4, .kv_heads = 0, .dim = 32,
                   .dtype = CLATTN_F32, .repeat = 1};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0)
            return 1;
        if (parse_flag(argc, argv, &i, o, why) != 0) {
            static char msg[160];
            snprintf(msg, sizeof msg, "%s: %s", argv[i], *why);
            *why = msg;
            return -1;
        }
    }
    if (o->kv_heads == 0)
        o->kv_heads = o->heads;
    *why = options_problem(o, nranks);
    return *why ? -1 : 0;
}

/* ---- inputs ------------------------------------------------------------------------------- */

/* splitmix64: the same numbers on every rank */
static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* uniform in [-1, 1) */
static void fill_uniform(float *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(rng_next(&seed) >> 40) / 8388608.0f - 1.0f;
}

/* f32 -> f16, round to nearest even (subnormals and overflow to infinity included). */
static uint16_t f16_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u)
        return sign | 0x7e00;                    /* NaN */
    if (a >= 0x477ff000u)
        return sign | 0x7c00;                    /* rounds to 65520 or more: infinity */
    if (a < 0x38800000u) {                       /* under 2^-14: an f16 subnormal */
        float m;
        memcpy(&m, &a, sizeof m);
        return sign | (uint16_t)lrintf(m * 16777216.0f);
    }
    return sign | (uint16_t)((a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u) >> 13);
}

/* f32 -> bf16, round to nearest even. */
static uint16_t bf16_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

static size_t dtype_size(clattn_dtype t)
{
    return t == CLATTN_F32 ? 4 : 2;
}

/* n pseudo-random values from seed, stored as dtype t. */
static unsigned char *random_tensor(size_t n, clattn_dtype t, uint64_t seed)
{
    float *x = malloc(n * sizeof *x);
    if (!x)
        die("random_tensor", "out of host memory");
    fill_uniform(x, n, seed);
    if (t == CLATTN_F32)
        return (unsigned char *)x;
    uint16_t *h = malloc(n * sizeof *h);
    if (!h)
        die("random_tensor", "out of host memory");
    for (size_t i = 0; i < n; i++)
        h[i] = t == CLATTN_F16 ? f16_bits(x[i]) : bf16_bits(x[i]);
    free(x);
    return (unsigned char *)h;
}

/* The whole sequence's tensors, identical on every rank: q [B,H,S,D], k and v [B,HKV,S,D]
   in the input dtype; dout [B,H,S,D] f32 (the dtype of out). */
typedef struct inputs {
    unsigned char *q, *k, *v, *dout;
} inputs;

static void inputs_make(inputs *in, const options *o)
{
    size_t nq = (size_t)(o->batch * o->heads * o->seq * o->dim);
    size_t nkv = (size_t)(o->batch * o->kv_heads * o->seq * o->dim);
    in->q = random_tensor(nq, o->dtype, 1);
    in->k = random_tensor(nkv, o->dtype, 2);
    in->v = random_tensor(nkv, o->dtype, 3);
    in->dout = random_tensor(nq, CLATTN_F32, 4);
}

static void inputs_free(inputs *in)
{
    free(in->q);
    free(in->k);
    free(in->v);
    free(in->dout);
}

/* ---- shards ------------------------------------------------------------------------------- */

/* The sequence is cut into equal chunks of len tokens: rank r holds chunk r, or with --zigzag
   chunks r and 2N-1-r of 2N. A rank's tensors are its chunks, each dense [B, heads, len, D]. */
typedef struct layout {
    int nranks, rank, nc;
    int64_t len;
} layout;

/* The sequence chunk that rank's i-th chunk is. */
static int chunk_of(const layout *l, int rank, int i)
{
    return i == 0 ? rank : 2 * l->nranks - 1 - rank;
}

/* Copy tokens [start, start+len) of full [B,H,S,D] (elements of size es) to the dense
   shard [B,H,len,D], or (to_full) back. */
static void copy_chunk(unsigned char *full, unsigned char *shard, size_t es,
                       const int64_t dims[4], int64_t start, int64_t len, int to_full)
{
    size_t row = (size_t)dims[3] * es, n = (size_t)len * row;
    for (int64_t bh = 0; bh < dims[0] * dims[1]; bh++) {
        unsigned char *f = full + ((size_t)(bh * dims[2] + start)) * row;
        unsigned char *d = shard + (size_t)bh * n;
        if (to_full)
            memcpy(f, d, n);
        else
            memcpy(d, f, n);
    }
}

/* ---- device and host state ---------------------------------------------------------------- */

typedef struct step_times {
    double compute_ms, wait_ms, total_ms;
} step_times;

typedef struct ring {
    options o;
    layout l;
    size_t es;                  /* bytes per input element */
    size_t q_elems, kv_elems;   /* of one chunk: B*H*len*D, B*HKV*len*D */
    size_t rows;                /* query rows of one chunk: B*H*len */
    clattn_context *ctx;
    cl_context cl;
    cl_command_queue queue;
    /* device: own q and running (out, lse) per chunk (ping-pong for the merge), the visiting
       K/V message, one partial, and one backward call's dq, dk, dv */
    cl_mem q[MAX_CHUNKS], out[MAX_CHUNKS][2], lse[MAX_CHUNKS][2], dout[MAX_CHUNKS];
    cl_mem kv, part_out, part_lse, dq, dk, dv;
    int cur[MAX_CHUNKS];        /* which of out[i][0..1], lse[i][0..1] hold chunk i's result */
    int valid[MAX_CHUNKS];      /* whether they hold one yet in this run of the ring */
    /* host: K/V messages [chunk][K|V] (own, and two for the ring), f32 dK/dV messages of the
       same layout, dq sums per chunk, one backward call's results */
    unsigned char *kv_own, *kv_msg[2];
    float *dkv_step, *dkv_recv, *dkv_send, *dq_sum[MAX_CHUNKS];
    float *h_dq, *h_dk, *h_dv;
    step_times *fwd, *bwd;      /* [nranks]: each step of the last run */
} ring;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static void *host_alloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p)
        die("host_alloc", "out of host memory");
    return p;
}

static cl_mem device_alloc(const ring *r, size_t bytes, const void *init)
{
    cl_int err;
    cl_mem m = clCreateBuffer(r->cl, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                              (void *)init, &err);
    CHECK_CL(err);
    return m;
}

static size_t kv_msg_bytes(const ring *r, size_t es)
{
    return (size_t)r->l.nc * 2 * r->kv_elems * es;
}

/* Element offset of chunk i's K (which 0) or V (which 1) in a K/V or dK/dV message. */
static size_t kv_slot(const ring *r, int i, int which)
{
    return (size_t)(2 * i + which) * r->kv_elems;
}

static void q_dims(const ring *r, int64_t dims[4])
{
    dims[0] = r->o.batch, dims[1] = r->o.heads, dims[2] = r->o.seq, dims[3] = r->o.dim;
}

static void kv_dims(const ring *r, int64_t dims[4])
{
    dims[0] = r->o.batch, dims[1] = r->o.kv_heads, dims[2] = r->o.seq, dims[3] = r->o.dim;
}

/* This rank's chunks of the inputs, on the device (q, dout) and in its own K/V message. */
static void shards_load(ring *r, const inputs *in)
{
    int64_t qd[4], kd[4];
    q_dims(r, qd);
    kv_dims(r, kd);
    unsigned char *q = host_alloc(r->q_elems * r->es), *dout = host_alloc(r->q_elems * 4);
    for (int i = 0; i < r->l.nc; i++) {
        int64_t start = chunk_of(&r->l, r->l.rank, i) * r->l.len;
        copy_chunk(in->q, q, r->es, qd, start, r->l.len, 0);
        copy_chunk(in->dout, dout, 4, qd, start, r->l.len, 0);
        r->q[i] = device_alloc(r, r->q_elems * r->es, q);
        r->dout[i] = device_alloc(r, r->q_elems * 4, dout);
        copy_chunk(in->k, r->kv_own + kv_slot(r, i, 0) * r->es, r->es, kd, start, r->l.len, 0);
        copy_chunk(in->v, r->kv_own + kv_slot(r, i, 1) * r->es, r->es, kd, start, r->l.len, 0);
    }
    free(q);
    free(dout);
}

static void buffers_alloc(ring *r)
{
    size_t out_bytes = r->q_elems * 4, lse_bytes = r->rows * 4;
    for (int i = 0; i < r->l.nc; i++)
        for (int p = 0; p < 2; p++) {
            r->out[i][p] = device_alloc(r, out_bytes, NULL);
            r->lse[i][p] = device_alloc(r, lse_bytes, NULL);
        }
    r->kv = device_alloc(r, kv_msg_bytes(r, r->es), NULL);
    r->part_out = device_alloc(r, out_bytes, NULL);
    r->part_lse = device_alloc(r, lse_bytes, NULL);
    r->kv_own = host_alloc(kv_msg_bytes(r, r->es));
    for (int p = 0; p < 2; p++)
        r->kv_msg[p] = host_alloc(kv_msg_bytes(r, r->es));
    r->fwd = host_alloc((size_t)r->l.nranks * sizeof *r->fwd);
    r->bwd = host_alloc((size_t)r->l.nranks * sizeof *r->bwd);
    if (!r->o.backward)
        return;
    r->dq = device_alloc(r, out_bytes, NULL);
    r->dk = device_alloc(r, r->kv_elems * 4, NULL);
    r->dv = device_alloc(r, r->kv_elems * 4, NULL);
    r->dkv_step = host_alloc(kv_msg_bytes(r, 4));
    r->dkv_recv = host_alloc(kv_msg_bytes(r, 4));
    r->dkv_send = host_alloc(kv_msg_bytes(r, 4));
    for (int i = 0; i < r->l.nc; i++)
        r->dq_sum[i] = host_alloc(out_bytes);
    r->h_dq = host_alloc(out_bytes);
    r->h_dk = host_alloc(r->kv_elems * 4);
    r->h_dv = host_alloc(r->kv_elems * 4);
}

static void release_mem(cl_mem m)
{
    if (m)
        CHECK_CL(clReleaseMemObject(m));
}

static void ring_release(ring *r)
{
    if (r->queue)
        CHECK_CL(clFinish(r->queue)); /* nothing may still read the host buffers freed below */
    for (int i = 0; i < MAX_CHUNKS; i++) {
        release_mem(r->q[i]);
        release_mem(r->dout[i]);
        for (int p = 0; p < 2; p++) {
            release_mem(r->out[i][p]);
            release_mem(r->lse[i][p]);
        }
        free(r->dq_sum[i]);
    }
    cl_mem rest[] = {r->kv, r->part_out, r->part_lse, r->dq, r->dk, r->dv};
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
        release_mem(rest[i]);
    void *host[] = {r->kv_own, r->kv_msg[0], r->kv_msg[1], r->dkv_step, r->dkv_recv,
                    r->dkv_send, r->h_dq, r->h_dk, r->h_dv, r->fwd, r->bwd};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
    clattn_context_release(r->ctx);
    memset(r, 0, sizeof *r);
}

/* This rank's index among the ranks of its host. */
static int local_rank(void)
{
    MPI_Comm host;
    int rank;
    CHECK_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL,
                                  &host));
    CHECK_MPI(MPI_Comm_rank(host, &rank));
    CHECK_MPI(MPI_Comm_free(&host));
    return rank;
}

/* --device with each %l replaced by the rank's index on its host; NULL without --device. */
static char *device_selector(const char *pattern)
{
    if (!pattern)
        return NULL;
    char local[16];
    snprintf(local, sizeof local, "%d", local_rank());
    char *sel = host_alloc(strlen(pattern) * sizeof local + 1), *out = sel;
    for (const char *p = pattern; *p; p++) {
        if (p[0] == '%' && p[1] == 'l') {
            out += sprintf(out, "%s", local);
            p++;
        } else {
            *out++ = *p;
        }
    }
    *out = '\0';
    return sel;
}

/* Every rank creates its context; they agree on one outcome: 0, EXIT_SKIP when some rank has
   no device, 1 when some rank failed otherwise. */
static int contexts_create(ring *r)
{
    char *sel = device_selector(r->o.device);
    clattn_status s = clattn_context_create(sel, &r->ctx);
    free(sel);
    int mine = s == CLATTN_SUCCESS ? 0 : s == CLATTN_ERROR_DEVICE_NOT_FOUND ? 1 : 2, worst;
    if (s != CLATTN_SUCCESS)
        fprintf(stderr, "rank %d: clattn_context_create: %s: %s\n", r->l.rank,
                clattn_status_string(s), clattn_last_error());
    CHECK_MPI(MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    return worst == 0 ? 0 : worst == 1 ? EXIT_SKIP : 1;
}

static int ring_setup(ring *r, const options *o, int rank, int nranks)
{
    memset(r, 0, sizeof *r);
    r->o = *o;
    r->l = (layout){.nranks = nranks, .rank = rank, .nc = o->zigzag ? 2 : 1};
    r->l.len = o->seq / (nranks * r->l.nc);
    r->es = dtype_size(o->dtype);
    r->rows = (size_t)(o->batch * o->heads * r->l.len);
    r->q_elems = r->rows * (size_t)o->dim;
    r->kv_elems = (size_t)(o->batch * o->kv_heads * r->l.len * o->dim);
    int code = contexts_create(r);
    if (code != 0)
        return code;
    r->cl = clattn_context_cl_context(r->ctx);
    r->queue = clattn_context_queue(r->ctx);
    buffers_alloc(r);
    return 0;
}

/* ---- one (query chunk, key chunk) pair ---------------------------------------------------- */

typedef enum pair_kind { PAIR_HIDDEN, PAIR_FULL, PAIR_DIAGONAL } pair_kind;

/* Chunks have equal lengths: under the causal mask an earlier key chunk is wholly visible, a
   later one wholly hidden, and the same chunk is causal with row i seeing keys j <= i. */
static pair_kind pair_visibility(int causal, int q_chunk, int k_chunk)
{
    if (!causal || k_chunk < q_chunk)
        return PAIR_FULL;
    return k_chunk == q_chunk ? PAIR_DIAGONAL : PAIR_HIDDEN;
}

/* The dropout of the ring and of --check's reference: one mask over the whole sequence. */
static void desc_set_dropout(clattn_attention_desc *d, const options *o)
{
    d->dropout_p = (float)o->dropout;
    d->dropout_seed = DROPOUT_SEED;
    d->dropout_offset = 0;
}

/* The call for own query chunk qi and key chunk ki of the K/V from rank src. The positions
   place both chunks in the sequence: the dropout mask is keyed on them, so a chunk drops what
   the whole sequence's call drops. The mask follows kind: a diagonal pair has q_start ==
   k_start, where the positions' causal mask is the local one. */
static clattn_attention_desc pair_desc(const ring *r, int src, int qi, int ki, pair_kind kind)
{
    clattn_attention_desc d;
    clattn_attention_desc_init(&d);
    d.causal = kind == PAIR_DIAGONAL;
    d.align = CLATTN_ALIGN_TOP_LEFT; /* with positions, row i sees keys at or before its own */
    d.q_start = chunk_of(&r->l, r->l.rank, qi) * r->l.len;
    d.k_start = chunk_of(&r->l, src, ki) * r->l.len;
    desc_set_dropout(&d, &r->o);
    return d;
}

static clattn_tensor chunk_view(const ring *r, cl_mem m, clattn_dtype t, int64_t heads,
                                int64_t dim)
{
    return clattn_tensor_bhsd(m, t, r->o.batch, heads, r->l.len, dim);
}

/* Key chunk i (which 0) or its values (1) of the visiting K/V message on the device. */
static clattn_tensor visiting_view(const ring *r, int i, int which)
{
    clattn_tensor t = chunk_view(r, r->kv, r->o.dtype, r->o.kv_heads, r->o.dim);
    t.offset = kv_slot(r, i, which) * r->es;
    return t;
}

/* Attention of own query chunk qi to visiting key chunk ki, folded into qi's running result:
   the first visible pair writes it, every later one is merged into the other buffer. */
static void forward_pair(ring *r, int src, int qi, int ki, pair_kind kind)
{
    clattn_attention_desc d = pair_desc(r, src, qi, ki, kind);
    int64_t H = r->o.heads, D = r->o.dim;
    clattn_tensor q = chunk_view(r, r->q[qi], r->o.dtype, H, D);
    clattn_tensor k = visiting_view(r, ki, 0), v = visiting_view(r, ki, 1);
    int c = r->cur[qi];
    clattn_tensor acc_out = chunk_view(r, r->out[qi][c], CLATTN_F32, H, D);
    clattn_tensor acc_lse = chunk_view(r, r->lse[qi][c], CLATTN_F32, H, 1);
    if (!r->valid[qi]) {
        CHECK(clattn_attention_forward(r->ctx, &d, &q, &k, &v, &acc_out, &acc_lse, 0, NULL,
                                       NULL));
        r->valid[qi] = 1;
        return;
    }
    clattn_tensor outs[2] = {acc_out, chunk_view(r, r->part_out, CLATTN_F32, H, D)};
    clattn_tensor lses[2] = {acc_lse, chunk_view(r, r->part_lse, CLATTN_F32, H, 1)};
    CHECK(clattn_attention_forward(r->ctx, &d, &q, &k, &v, &outs[1], &lses[1], 0, NULL, NULL));
    clattn_tensor out = chunk_view(r, r->out[qi][!c], CLATTN_F32, H, D);
    clattn_tensor lse = chunk_view(r, r->lse[qi][!c], CLATTN_F32, H, 1);
    CHECK(clattn_attention_merge(r->ctx, 2, outs, lses, &out, &lse, 0, NULL, NULL));
    r->cur[qi] = !c;
}

static void add_into(float *acc, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += x[i];
}

/* Waits for the queue while driving the pending MPI requests: Open MPI moves a large message
   only inside MPI calls (no progress thread by default), so the ring's transfers overlap the
   device's work only if this thread keeps testing them. It sleeps 50 us between tests to
   leave the CPU to PoCL's threads where the device is this CPU. */
static void wait_device_driving_mpi(const ring *r, MPI_Request *req, int n)
{
    cl_event done;
    CHECK_CL(clEnqueueMarkerWithWaitList(r->queue, 0, NULL, &done));
    CHECK_CL(clFlush(r->queue));
    for (;;) {
        cl_int st;
        CHECK_CL(clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL));
        if (st < 0)
            die("the device's queue", "a command failed");
        if (st == CL_COMPLETE)
            break;
        int flag;
        CHECK_MPI(MPI_Testall(n, req, &flag, MPI_STATUSES_IGNORE));
        nanosleep(&(struct timespec){.tv_nsec = 50000}, NULL);
    }
    CHECK_CL(clReleaseEvent(done));
}

/* dq, dk, dv of own query chunk qi against visiting key chunk ki (with the global out and
   lse, exactly that key chunk's share), added into the chunk's dq sum and this step's dK/dV. */
static void backward_pair(ring *r, int src, int qi, int ki, pair_kind kind, MPI_Request *req,
                          int n)
{
    clattn_attention_desc d = pair_desc(r, src, qi, ki, kind);
    int64_t H = r->o.heads, HKV = r->o.kv_heads, D = r->o.dim;
    clattn_tensor q = chunk_view(r, r->q[qi], r->o.dtype, H, D);
    clattn_tensor k = visiting_view(r, ki, 0), v = visiting_view(r, ki, 1);
    clattn_tensor out = chunk_view(r, r->out[qi][r->cur[qi]], CLATTN_F32, H, D);
    clattn_tensor lse = chunk_view(r, r->lse[qi][r->cur[qi]], CLATTN_F32, H, 1);
    clattn_tensor dout = chunk_view(r, r->dout[qi], CLATTN_F32, H, D);
    clattn_tensor dq = chunk_view(r, r->dq, CLATTN_F32, H, D);
    clattn_tensor dk = chunk_view(r, r->dk, CLATTN_F32, HKV, D);
    clattn_tensor dv = chunk_view(r, r->dv, CLATTN_F32, HKV, D);
    CHECK(clattn_attention_backward(r->ctx, &d, &q, &k, &v, &out, &dout, &lse, &dq, &dk, &dv, 0,
                                    NULL, NULL));
    CHECK_CL(clEnqueueReadBuffer(r->queue, r->dq, CL_FALSE, 0, r->q_elems * 4, r->h_dq, 0, NULL,
                                 NULL));
    CHECK_CL(clEnqueueReadBuffer(r->queue, r->dk, CL_FALSE, 0, r->kv_elems * 4, r->h_dk, 0,
                                 NULL, NULL));
    CHECK_CL(clEnqueueReadBuffer(r->queue, r->dv, CL_FALSE, 0, r->kv_elems * 4, r->h_dv, 0,
                                 NULL, NULL));
    wait_device_driving_mpi(r, req, n);
    add_into(r->dq_sum[qi], r->h_dq, r->q_elems);
    add_into(r->dkv_step + kv_slot(r, ki, 0), r->h_dk, r->kv_elems);
    add_into(r->dkv_step + kv_slot(r, ki, 1), r->h_dv, r->kv_elems);
}

/* ---- the ring ----------------------------------------------------------------------------- */

static int next_rank(const layout *l)
{
    return (l->rank + 1) % l->nranks;
}

static int prev_rank(const layout *l)
{
    return (l->rank + l->nranks - 1) % l->nranks;
}

/* Upload the K/V message that visits at this step (it came from rank - step). */
static void upload_visiting(ring *r, const unsigned char *msg)
{
    CHECK_CL(clEnqueueWriteBuffer(r->queue, r->kv, CL_FALSE, 0, kv_msg_bytes(r, r->es), msg, 0,
                                  NULL, NULL));
}

/* Post the receive of the next step's K/V and the send of this one's; returns the count. */
static int kv_exchange_post(ring *r, int step, int cur, MPI_Request *req)
{
    if (step == r->l.nranks - 1)
        return 0;
    int bytes = (int)kv_msg_bytes(r, r->es);
    CHECK_MPI(MPI_Irecv(r->kv_msg[!cur], bytes, MPI_BYTE, prev_rank(&r->l), TAG_KV,
                        MPI_COMM_WORLD, &req[0]));
    CHECK_MPI(MPI_Isend(r->kv_msg[cur], bytes, MPI_BYTE, next_rank(&r->l), TAG_KV,
                        MPI_COMM_WORLD, &req[1]));
    return 2;
}

/* The rank whose K/V visits at this step. */
static int visiting_rank(const ring *r, int step)
{
    return (r->l.rank - step + r->l.nranks) % r->l.nranks;
}

/* The visibility of own query chunk qi to key chunk ki of the K/V that visits at this step
   (it came from rank - step). */
static pair_kind step_pair(const ring *r, int step, int qi, int ki)
{
    int src = visiting_rank(r, step);
    return pair_visibility(r->o.causal, chunk_of(&r->l, r->l.rank, qi),
                           chunk_of(&r->l, src, ki));
}

/* Whether any pair of this step is visible: a causal step with none skips the upload too. */
static int step_has_work(const ring *r, int step)
{
    for (int qi = 0; qi < r->l.nc; qi++)
        for (int ki = 0; ki < r->l.nc; ki++)
            if (step_pair(r, step, qi, ki) != PAIR_HIDDEN)
                return 1;
    return 0;
}

static void forward_step(ring *r, int step, const unsigned char *msg, MPI_Request *req, int n)
{
    if (!step_has_work(r, step))
        return;
    upload_visiting(r, msg);
    for (int qi = 0; qi < r->l.nc; qi++)
        for (int ki = 0; ki < r->l.nc; ki++) {
            pair_kind kind = step_pair(r, step, qi, ki);
            if (kind != PAIR_HIDDEN)
                forward_pair(r, visiting_rank(r, step), qi, ki, kind);
        }
    wait_device_driving_mpi(r, req, n);
}

/* out and lse of own rows over the whole sequence, in r->out/lse[i][r->cur[i]]. */
static void ring_forward(ring *r)
{
    int cur = 0;
    memcpy(r->kv_msg[0], r->kv_own, kv_msg_bytes(r, r->es));
    for (int i = 0; i < r->l.nc; i++)
        r->valid[i] = 0, r->cur[i] = 0;
    for (int step = 0; step < r->l.nranks; step++) {
        MPI_Request req[2];
        double t0 = now_ms();
        int n = kv_exchange_post(r, step, cur, req);
        forward_step(r, step, r->kv_msg[cur], req, n);
        double t1 = now_ms();
        CHECK_MPI(MPI_Waitall(n, req, MPI_STATUSES_IGNORE));
        double t2 = now_ms();
        r->fwd[step] = (step_times){t1 - t0, t2 - t1, t2 - t0};
        cur = !cur;
    }
}

static void backward_step(ring *r, int step, const unsigned char *msg, MPI_Request *req, int n)
{
    memset(r->dkv_step, 0, kv_msg_bytes(r, 4));
    if (!step_has_work(r, step))
        return;
    upload_visiting(r, msg);
    for (int qi = 0; qi < r->l.nc; qi++)
        for (int ki = 0; ki < r->l.nc; ki++) {
            pair_kind kind = step_pair(r, step, qi, ki);
            if (kind != PAIR_HIDDEN)
                backward_pair(r, visiting_rank(r, step), qi, ki, kind, req, n);
        }
}

/* The dK/dV sums of the visiting chunks so far (received, none at step 0) plus this step's,
   sent on with them: after N hops they reach their owner. */
static void dkv_pass_on(ring *r, int step, MPI_Request *send)
{
    size_t n = kv_msg_bytes(r, 4) / 4;
    memcpy(r->dkv_send, r->dkv_step, n * 4);
    if (step > 0)
        add_into(r->dkv_send, r->dkv_recv, n);
    CHECK_MPI(MPI_Isend(r->dkv_send, (int)(n * 4), MPI_BYTE, next_rank(&r->l), TAG_DKV,
                        MPI_COMM_WORLD, send));
}

/* dq (r->dq_sum) and, in r->dkv_recv, the dK/dV of own chunks. */
static void ring_backward(ring *r)
{
    int cur = 0, bytes = (int)kv_msg_bytes(r, 4);
    MPI_Request send = MPI_REQUEST_NULL;
    memcpy(r->kv_msg[0], r->kv_own, kv_msg_bytes(r, r->es));
    for (int i = 0; i < r->l.nc; i++)
        memset(r->dq_sum[i], 0, r->q_elems * 4);
    for (int step = 0; step < r->l.nranks; step++) {
        MPI_Request req[4];
        double t0 = now_ms();
        int n = kv_exchange_post(r, step, cur, req);
        if (step > 0)
            CHECK_MPI(MPI_Irecv(r->dkv_recv, bytes, MPI_BYTE, prev_rank(&r->l), TAG_DKV,
                                MPI_COMM_WORLD, &req[n++]));
        req[n++] = send; /* the previous step's dK/dV, still in r->dkv_send */
        backward_step(r, step, r->kv_msg[cur], req, n);
        double t1 = now_ms();
        CHECK_MPI(MPI_Waitall(n, req, MPI_STATUSES_IGNORE));
        double t2 = now_ms();
        dkv_pass_on(r, step, &send);
        r->bwd[step] = (step_times){t1 - t0 + now_ms() - t2, t2 - t1, now_ms() - t0};
        cur = !cur;
    }
    MPI_Request last[2] = {send, MPI_REQUEST_NULL};
    CHECK_MPI(MPI_Irecv(r->dkv_recv, bytes, MPI_BYTE, prev_rank(&r->l), TAG_DKV, MPI_COMM_WORLD,
                        &last[1]));
    CHECK_MPI(MPI_Waitall(2, last, MPI_STATUSES_IGNORE));
}

/* ---- timing report ------------------------------------------------------------------------ */

static void step_report(const char *phase, const step_times *t, int steps)
{
    for (int s = 0; s < steps; s++)
        printf("%s step %d (rank 0): attention %.1f ms, waiting for the next shard %.1f ms, "
               "step %.1f ms\n", phase, s, t[s].compute_ms, t[s].wait_ms, t[s].total_ms);
}

/* Wall and CPU time (this process, all its threads: PoCL's workers included) of one phase. */
typedef struct phase_clock {
    double wall_ms, cpu_ms;
} phase_clock;

static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static phase_clock clock_start(void)
{
    return (phase_clock){now_ms(), cpu_ms()};
}

static phase_clock clock_since(phase_clock start)
{
    return (phase_clock){now_ms() - start.wall_ms, cpu_ms() - start.cpu_ms};
}

/* Rank 0's steps, every rank's sums and CPU time, the wall time of the slowest rank and the
   CPU time of all: on a CPU that other processes share, more ranks get a larger share of it,
   so the CPU time tells the ring's overhead where the wall time cannot. */
static void times_report(const ring *r, const char *phase, const step_times *t, phase_clock c)
{
    int n = r->l.nranks;
    double mine[3] = {0, 0, c.cpu_ms}, worst, cpu;
    for (int s = 0; s < n; s++)
        mine[0] += t[s].compute_ms, mine[1] += t[s].wait_ms;
    double *all = r->l.rank == 0 ? host_alloc((size_t)n * sizeof mine) : NULL;
    CHECK_MPI(MPI_Gather(mine, 3, MPI_DOUBLE, all, 3, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Reduce(&c.wall_ms, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Reduce(&c.cpu_ms, &cpu, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));
    if (r->l.rank != 0)
        return;
    step_report(phase, t, n);
    for (int p = 0; p < n; p++)
        printf("%s rank %d: attention %.1f ms, waiting %.1f ms, cpu %.1f ms\n", phase, p,
               all[3 * p], all[3 * p + 1], all[3 * p + 2]);
    printf("%s wall: %.1f ms (slowest rank), cpu: %.1f ms (all ranks)\n", phase, worst, cpu);
    free(all);
}

/* Runs the ring (forward, then backward with --backward) R times; reports the last. */
static void ring_run_timed(ring *r)
{
    phase_clock fwd = {0, 0}, bwd = {0, 0};
    for (int rep = 0; rep < r->o.repeat; rep++) {
        CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
        phase_clock start = clock_start();
        ring_forward(r);
        fwd = clock_since(start);
        if (!r->o.backward)
            continue;
        CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
        start = clock_start();
        ring_backward(r);
        bwd = clock_since(start);
    }
    times_report(r, "forward", r->fwd, fwd);
    if (r->o.backward)
        times_report(r, "backward", r->bwd, bwd);
}

/* ---- --check ------------------------------------------------------------------------------ */

/* Whole-sequence results, f32: out and dq [B,H,S,D], lse [B,H,S,1], dk and dv [B,HKV,S,D]. */
typedef struct results {
    float *out, *lse, *dq, *dk, *dv;
} results;

static void results_alloc(results *x, const options *o)
{
    size_t nq = (size_t)(o->batch * o->heads * o->seq * o->dim);
    size_t nkv = (size_t)(o->batch * o->kv_heads * o->seq * o->dim);
    x->out = host_alloc(nq * 4);
    x->lse = host_alloc(nq / (size_t)o->dim * 4);
    x->dq = host_alloc(nq * 4);
    x->dk = host_alloc(nkv * 4);
    x->dv = host_alloc(nkv * 4);
}

static void results_free(results *x)
{
    free(x->out);
    free(x->lse);
    free(x->dq);
    free(x->dk);
    free(x->dv);
}

static void read_buffer(const ring *r, cl_mem m, size_t bytes, void *dst)
{
    CHECK_CL(clEnqueueReadBuffer(r->queue, m, CL_TRUE, 0, bytes, dst, 0, NULL, NULL));
}

/* Gather n floats from every rank into rank 0's all[rank * n ...]. */
static void gather(const float *mine, size_t n, float *all)
{
    CHECK_MPI(MPI_Gather(mine, (int)n, MPI_FLOAT, all, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD));
}

/* Rank p's chunk i of a gathered tensor (each rank's part per_rank floats, chunk i at
   i * chunk_stride + first in it) to its place in full [dims]. */
static void place_chunks(const ring *r, const float *all, size_t per_rank, size_t chunk_stride,
                         size_t first, float *full, const int64_t dims[4])
{
    for (int p = 0; p < r->l.nranks; p++)
        for (int i = 0; i < r->l.nc; i++) {
            const float *src = all + (size_t)p * per_rank + (size_t)i * chunk_stride + first;
            copy_chunk((unsigned char *)full, (unsigned char *)src, 4, dims,
                       chunk_of(&r->l, p, i) * r->l.len, r->l.len, 1);
        }
}

/* out and lse (and dq) of own chunks, packed chunk after chunk. */
static void pack_rows(const ring *r, float *out, float *lse, float *dq)
{
    for (int i = 0; i < r->l.nc; i++) {
        read_buffer(r, r->out[i][r->cur[i]], r->q_elems * 4, out + i * r->q_elems);
        read_buffer(r, r->lse[i][r->cur[i]], r->rows * 4, lse + i * r->rows);
        if (r->o.backward)
            memcpy(dq + i * r->q_elems, r->dq_sum[i], r->q_elems * 4);
    }
}

/* The ring's results of every rank, in whole-sequence order on rank 0. */
static void results_gather(const ring *r, results *x)
{
    int n = r->l.nranks, nc = r->l.nc;
    size_t qn = r->q_elems * nc, ln = r->rows * nc, kvn = 2 * r->kv_elems * nc;
    float *out = host_alloc(qn * 4), *lse = host_alloc(ln * 4), *dq = host_alloc(qn * 4);
    float *all = r->l.rank == 0 ? host_alloc((size_t)n * (qn > kvn ? qn : kvn) * 4) : NULL;
    int64_t qd[4], ld[4], kd[4];
    q_dims(r, qd);
    q_dims(r, ld);
    ld[3] = 1;
    kv_dims(r, kd);
    pack_rows(r, out, lse, dq);
    gather(out, qn, all);
    if (all)
        place_chunks(r, all, qn, r->q_elems, 0, x->out, qd);
    gather(lse, ln, all);
    if (all)
        place_chunks(r, all, ln, r->rows, 0, x->lse, ld);
    if (r->o.backward) {
        gather(dq, qn, all);
        if (all)
            place_chunks(r, all, qn, r->q_elems, 0, x->dq, qd);
        gather(r->dkv_recv, kvn, all);
        if (all) {
            /* a dK/dV message holds chunk i's dK at 2i and dV at 2i+1 */
            place_chunks(r, all, kvn, 2 * r->kv_elems, 0, x->dk, kd);
            place_chunks(r, all, kvn, 2 * r->kv_elems, r->kv_elems, x->dv, kd);
        }
    }
    free(out);
    free(lse);
    free(dq);
    free(all);
}

/* One clattn call (forward, then backward) over the whole sequence on rank 0's context: the
   answer the ring must give. */
static void reference_compute(const ring *r, const inputs *in, results *x)
{
    const options *o = &r->o;
    size_t nq = (size_t)(o->batch * o->heads * o->seq * o->dim);
    size_t nkv = (size_t)(o->batch * o->kv_heads * o->seq * o->dim), nl = nq / (size_t)o->dim;
    cl_mem b[] = {device_alloc(r, nq * r->es, in->q), device_alloc(r, nkv * r->es, in->k),
                  device_alloc(r, nkv * r->es, in->v), device_alloc(r, nq * 4, NULL),
                  device_alloc(r, nl * 4, NULL), device_alloc(r, nq * 4, in->dout),
                  device_alloc(r, nq * 4, NULL), device_alloc(r, nkv * 4, NULL),
                  device_alloc(r, nkv * 4, NULL)};
    int64_t B = o->batch, H = o->heads, HKV = o->kv_heads, S = o->seq, D = o->dim;
    clattn_tensor q = clattn_tensor_bhsd(b[0], o->dtype, B, H, S, D);
    clattn_tensor k = clattn_tensor_bhsd(b[1], o->dtype, B, HKV, S, D);
    clattn_tensor v = clattn_tensor_bhsd(b[2], o->dtype, B, HKV, S, D);
    clattn_tensor out = clattn_tensor_bhsd(b[3], CLATTN_F32, B, H, S, D);
    clattn_tensor lse = clattn_tensor_bhsd(b[4], CLATTN_F32, B, H, S, 1);
    clattn_tensor dout = clattn_tensor_bhsd(b[5], CLATTN_F32, B, H, S, D);
    clattn_tensor dq = clattn_tensor_bhsd(b[6], CLATTN_F32, B, H, S, D);
    clattn_tensor dk = clattn_tensor_bhsd(b[7], CLATTN_F32, B, HKV, S, D);
    clattn_tensor dv = clattn_tensor_bhsd(b[8], CLATTN_F32, B, HKV, S, D);
    clattn_attention_desc d;
    clattn_attention_desc_init(&d);
    d.causal = o->causal;
    desc_set_dropout(&d, o);
    CHECK(clattn_attention_forward(r->ctx, &d, &q, &k, &v, &out, &lse, 0, NULL, NULL));
    if (o->backward)
        CHECK(clattn_attention_backward(r->ctx, &d, &q, &k, &v, &out, &dout, &lse, &dq, &dk, &dv,
                                        0, NULL, NULL));
    read_buffer(r, b[3], nq * 4, x->out);
    read_buffer(r, b[4], nl * 4, x->lse);
    if (o->backward) {
        read_buffer(r, b[6], nq * 4, x->dq);
        read_buffer(r, b[7], nkv * 4, x->dk);
        read_buffer(r, b[8], nkv * 4, x->dv);
    }
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        CHECK_CL(clReleaseMemObject(b[i]));
}

/* max |x - ref| / max |ref|; NaN anywhere gives NaN (which fails every tolerance). */
static double rel_err(const float *x, const float *ref, size_t n)
{
    double diff = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)x[i] - ref[i]);
        if (isnan(e))
            return NAN;
        diff = e > diff ? e : diff;
        scale = fabs(ref[i]) > scale ? fabs(ref[i]) : scale;
    }
    return scale > 0 ? diff / scale : diff;
}

/* Prints each tensor's error and the largest; 0 when it is within the tolerance. */
static int results_compare(const options *o, const results *ring, const results *ref)
{
    size_t nq = (size_t)(o->batch * o->heads * o->seq * o->dim);
    size_t nkv = (size_t)(o->batch * o->kv_heads * o->seq * o->dim);
    const char *names[] = {"out", "lse", "dq", "dk", "dv"};
    const float *got[] = {ring->out, ring->lse, ring->dq, ring->dk, ring->dv};
    const float *want[] = {ref->out, ref->lse, ref->dq, ref->dk, ref->dv};
    size_t n[] = {nq, nq / (size_t)o->dim, nq, nkv, nkv};
    double tol = o->dtype == CLATTN_F32 ? TOL_F32 : TOL_HALF, worst = 0;
    int tensors = o->backward ? 5 : 2, bad = 0;
    for (int t = 0; t < tensors; t++) {
        double e = rel_err(got[t], want[t], n[t]);
        printf("max_rel_err %s=%.3g\n", names[t], e);
        bad |= !(e <= tol);
        worst = e > worst || isnan(e) ? e : worst;
    }
    printf("max_rel_err=%.3g (tolerance %.0e): %s\n", worst, tol, bad ? "FAIL" : "ok");
    return bad;
}

/* Rank 0 compares the gathered ring results with the reference; every rank gets the verdict. */
static int ring_check(const ring *r, const inputs *in)
{
    results got = {0}, want = {0};
    int bad = 0;
    if (r->l.rank == 0) {
        results_alloc(&got, &r->o);
        results_alloc(&want, &r->o);
    }
    results_gather(r, &got);
    if (r->l.rank == 0) {
        reference_compute(r, in, &want);
        bad = results_compare(&r->o, &got, &want);
        results_free(&got);
        results_free(&want);
    }
    CHECK_MPI(MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD));
    return bad;
}

static const char *dtype_name(clattn_dtype t)
{
    return t == CLATTN_F32 ? "f32" : t == CLATTN_F16 ? "f16" : "bf16";
}

static void describe(const ring *r)
{
    const options *o = &r->o;
    /* one line per rank: with --device each may have its own */
    printf("rank %d: device %s\n", r->l.rank, clattn_context_device_name(r->ctx));
    fflush(stdout);
    CHECK_MPI(MPI_Barrier(MPI_COMM_WORLD));
    if (r->l.rank != 0)
        return;
    printf("ring attention: %d ranks\n", r->l.nranks);
    printf("B=%lld H=%lld HKV=%lld S=%lld D=%lld %s%s%s%s dropout %g: %d chunk(s) of %lld "
           "tokens per rank\n", (long long)o->batch, (long long)o->heads,
           (long long)o->kv_heads, (long long)o->seq, (long long)o->dim, dtype_name(o->dtype),
           o->causal ? " causal" : "", o->zigzag ? " zigzag" : "",
           o->backward ? " backward" : "", o->dropout, r->l.nc, (long long)r->l.len);
}

/* Inputs, the timed ring, then --check; the exit status. */
static int ring_run(ring *r)
{
    inputs in;
    inputs_make(&in, &r->o);
    shards_load(r, &in);
    describe(r);
    ring_run_timed(r);
    int bad = r->o.check ? ring_check(r, &in) : 0;
    inputs_free(&in);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    int rank, nranks;
    CHECK_MPI(MPI_Init(&argc, &argv));
    CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &nranks));
    options o;
    const char *why = NULL;
    int parsed = parse_options(argc, argv, nranks, &o, &why);
    if (parsed != 0) {
        /* every rank parses the same argv, so every rank leaves here, with the same status */
        if (rank == 0 && parsed < 0)
            fprintf(stderr, "ring_attention: %s\n", why);
        if (rank == 0)
            usage(parsed < 0 ? stderr : stdout);
        CHECK_MPI(MPI_Finalize());
        return parsed < 0 ? EXIT_USAGE : 0;
    }
    ring r;
    int code = ring_setup(&r, &o, rank, nranks);
    if (code == 0)
        code = ring_run(&r);
    ring_release(&r);
    CHECK_MPI(MPI_Finalize());
    return code;
}
