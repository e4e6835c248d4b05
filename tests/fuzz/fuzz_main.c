/* Standalone driver for the fuzz target fuzz_validate.c, for builds without libFuzzer (any
   compiler; the `fuzz_validate` Meson test):

     fuzz_validate [-check-seeds] [-runs=N] [-seconds=S] [-seed=N] [-write-corpus=DIR]
                   [-describe] [FILE|DIR]...

   -write-corpus=DIR  write the seed table (seeds.c) as files into DIR and exit (regenerate
                      tests/fuzz/corpus so after a change of the input format or of the seeds)
   -check-seeds       every seed gives its expected status and message, survives an
                      encode/decode round trip, and, for each DIR given, DIR/<seed name> holds
                      exactly its encoding (the checked-in corpus is up to date)
   FILE|DIR           run each file (each file of DIR) once: the corpus, or a crash-* file
   -describe          print each input as the case it decodes to, and its result
   -runs=N            then run N random mutations of those inputs (default 0) ...
   -seconds=S         ... or as many as S seconds allow (both: whichever ends first)
   -seed=N            of the mutations (default 1): the same seed and -runs give the same
                      inputs, so the Meson test (a fixed -runs) is deterministic

   On an invariant violation (abort) or a crash, the input being run is written to
   fuzz_validate-crash.bin in the current folder and printed in hex on stderr. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_validate.h"

/* The input being run, for the crash handler. */
static uint8_t current[FZ_MAX_ENCODED];
static size_t current_len;

static void on_crash(int sig)
{
    static const char head[] = "\nfuzz_validate: the input that failed (also written to "
                               "fuzz_validate-crash.bin), hex:\n";
    static const char digits[] = "0123456789abcdef";
    int fd = open("fuzz_validate-crash.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (write(fd, current, current_len) < 0) {
        }
        close(fd);
    }
    if (write(2, head, sizeof head - 1) < 0) {
    }
    for (size_t i = 0; i < current_len; i++) {
        char b[2] = {digits[current[i] >> 4], digits[current[i] & 15]};
        if (write(2, b, 2) < 0) {
        }
    }
    if (write(2, "\n", 1) < 0) {
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Sanitizer reports end in abort(), so that on_crash saves the input (the driver may be built
   with ASan and UBSan; without them these are unused). */
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__asan_default_options(void) { return "abort_on_error=1"; }
const char *__ubsan_default_options(void) { return "abort_on_error=1:print_stacktrace=1"; }

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static void run(const uint8_t *data, size_t len, fz_result *r)
{
    if (len > sizeof current)
        len = sizeof current;
    memcpy(current, data, len);
    current_len = len;
    fz_run(current, current_len, r);
}

/* ---------------------------------------------------------------------------------------- */
/* Inputs                                                                                    */
/* ---------------------------------------------------------------------------------------- */

typedef struct input {
    uint8_t data[FZ_MAX_ENCODED];
    size_t  len;
} input;

static input *inputs;
static size_t ninputs, cap_inputs;

static void add_input(const uint8_t *data, size_t len)
{
    if (ninputs == cap_inputs) {
        cap_inputs = cap_inputs ? 2 * cap_inputs : 64;
        inputs = realloc(inputs, cap_inputs * sizeof *inputs);
        if (!inputs) {
            perror("fuzz_validate");
            exit(2);
        }
    }
    input *in = &inputs[ninputs++];
    in->len = len < sizeof in->data ? len : sizeof in->data;
    memcpy(in->data, data, in->len);
}

/* Reads at most FZ_MAX_ENCODED bytes; returns -1 when the file cannot be read. */
static long read_file(const char *path, uint8_t *buf)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, FZ_MAX_ENCODED, f);
    fclose(f);
    return (long)n;
}

static int load(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz_validate: %s: not found\n", path);
        return -1;
    }
    static uint8_t buf[FZ_MAX_ENCODED];
    if (!S_ISDIR(st.st_mode)) {
        long n = read_file(path, buf);
        if (n < 0)
            return -1;
        add_input(buf, (size_t)n);
        return 0;
    }
    struct dirent **names; /* sorted by name: the same inputs in the same order everywhere */
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0)
        return -1;
    char file[4096];
    for (int i = 0; i < n; i++) {
        snprintf(file, sizeof file, "%s/%s", path, names[i]->d_name);
        if (names[i]->d_name[0] != '.' && stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
            long len = read_file(file, buf);
            if (len >= 0)
                add_input(buf, (size_t)len);
        }
        free(names[i]);
    }
    free(names);
    return 0;
}

/* An input in words: what fz_run builds from it. */
static void describe(const uint8_t *data, size_t len)
{
    static const char *const ops[FZ_OPS] = {"check_desc", "validate_forward", "forward query",
                                            "validate_merge", "validate_backward"};
    static const char *const fwd[6] = {"q", "k", "v", "out", "lse", "bias"};
    static const char *const bwd[10] = {"q", "k", "v", "out", "dout", "lse", "dq", "dk", "dv",
                                        "bias"};
    fz_case c;
    fz_decode(data, len, &c);
    const int op = c.op % FZ_OPS, nb = c.nbufs % (FZ_MAX_BUFS + 1);
    const size_t np = c.nparts % FZ_MAX_PARTS + 1u;
    printf("%zu bytes: %s%s, num_wait %u, wait_list %s\n", len, ops[op],
           c.raw & 1 ? " (raw buffer facts)" : "", c.num_wait, c.wait_null ? "NULL" : "set");
    for (int i = 0; i < nb; i++) {
        const fz_buf *b = &c.bufs[i];
        printf("  buffer %d: %s size %llu flags 0x%llx%s", i, b->live ? "live" : "released",
               (unsigned long long)b->size, (unsigned long long)b->flags,
               b->foreign ? " foreign context" : "");
        if (b->parent)
            printf(" sub-buffer of %d at %llu", (b->parent - 1) % nb,
                   (unsigned long long)b->origin);
        printf("\n");
    }
    const fz_desc *d = &c.desc;
    if (d->absent)
        printf("  desc NULL\n");
    else
        printf("  desc: struct_size %s%llu scale %g causal %d align %d window %lld,%lld softcap %g "
               "dropout %g algo %d bias %d seqlens_q %d seqlens_k %d workspace %d (%llu bytes) "
               "q_start %lld k_start %lld accumulate %d\n",
               d->size_given ? "" : "sizeof ", (unsigned long long)d->size, d->scale, d->causal,
               d->align, (long long)d->window_left, (long long)d->window_right, d->softcap,
               d->dropout_p, d->algo, d->bias, d->seqlens_q, d->seqlens_k, d->workspace,
               (unsigned long long)d->workspace_size, (long long)d->q_start,
               (long long)d->k_start, d->accumulate);
    size_t nt = op == FZ_FORWARD || op == FZ_QUERY ? 6 : op == FZ_BACKWARD ? 10
              : op == FZ_MERGE ? 2 + 2 * np : 0;
    for (size_t i = 0; i < nt; i++) {
        const fz_tensor *t = &c.t[i];
        char name[16];
        if (op == FZ_MERGE)
            snprintf(name, sizeof name, i == 0 ? "out" : i == 1 ? "lse" : i < 2 + np ? "outs[%zu]"
                     : "lses[%zu]", i < 2 + np ? i - 2 : i - 2 - np);
        else
            snprintf(name, sizeof name, "%s", op == FZ_BACKWARD ? bwd[i] : fwd[i]);
        if (!t->present) {
            printf("  %s NULL\n", name);
            continue;
        }
        printf("  %s: buffer %d dtype %d offset %llu dims [%lld,%lld,%lld,%lld] strides "
               "[%lld,%lld,%lld,%lld]\n", name, t->buf, t->dtype, (unsigned long long)t->offset,
               (long long)t->dims[0], (long long)t->dims[1], (long long)t->dims[2],
               (long long)t->dims[3], (long long)t->strides[0], (long long)t->strides[1],
               (long long)t->strides[2], (long long)t->strides[3]);
    }
    fflush(stdout);
    fz_result r;
    run(data, len, &r);
    printf("  -> %s %s\n", clattn_status_string(r.status), r.message);
}

/* ---------------------------------------------------------------------------------------- */
/* Seeds                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static int write_corpus(const char *dir)
{
    fz_seed *seeds;
    size_t n = fz_seeds(&seeds);
    mkdir(dir, 0755);
    uint8_t buf[FZ_MAX_ENCODED];
    char path[4096];
    for (size_t i = 0; i < n; i++) {
        size_t len = fz_encode(&seeds[i].c, buf);
        snprintf(path, sizeof path, "%s/%s", dir, seeds[i].name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
            perror(path);
            return 1;
        }
    }
    printf("fuzz_validate: wrote %zu seeds to %s\n", n, dir);
    free(seeds);
    return 0;
}

static int check_seeds(char **dirs, int ndirs)
{
    fz_seed *seeds;
    size_t n = fz_seeds(&seeds);
    int failed = 0;
    uint8_t buf[FZ_MAX_ENCODED], again[FZ_MAX_ENCODED], file[FZ_MAX_ENCODED];
    char path[4096];
    for (size_t i = 0; i < n; i++) {
        const fz_seed *s = &seeds[i];
        size_t len = fz_encode(&s->c, buf);
        fz_case c;
        fz_decode(buf, len, &c);
        if (fz_encode(&c, again) != len || memcmp(buf, again, len) != 0) {
            fprintf(stderr, "seed %s: the encode/decode round trip changes it\n", s->name);
            failed++;
        }
        fz_result r;
        run(buf, len, &r);
        if (s->status != (clattn_status)-1000 &&
            (r.status != s->status || !strstr(r.message, s->message))) {
            fprintf(stderr, "seed %s: %s \"%s\", expected %s with \"%s\"\n", s->name,
                    clattn_status_string(r.status), r.message, clattn_status_string(s->status),
                    s->message);
            failed++;
        }
        for (int d = 0; d < ndirs; d++) {
            snprintf(path, sizeof path, "%s/%s", dirs[d], s->name);
            long got = read_file(path, file);
            if (got != (long)len || memcmp(file, buf, len) != 0) {
                fprintf(stderr, "seed %s: %s is %s; regenerate the corpus with "
                        "fuzz_validate -write-corpus=%s\n", s->name, path,
                        got < 0 ? "missing" : "out of date", dirs[d]);
                failed++;
            }
        }
    }
    printf("fuzz_validate: %zu seeds checked, %d failures\n", n, failed);
    free(seeds);
    return failed;
}

/* ---------------------------------------------------------------------------------------- */
/* Mutations                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static void put(uint8_t *d, size_t len, size_t at, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes && at + (size_t)i < len; i++)
        d[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

static void mutate(input *in)
{
    static const uint64_t wide[] = {
        0, 1, 2, 3, 4, 7, 8, 16, 64, 255, 256, 4096, UINT64_MAX, UINT64_MAX - 1,
        (uint64_t)INT64_MAX, (uint64_t)INT64_MIN, 1ull << 31, 1ull << 32, (1ull << 61) + 1,
        1ull << 62, (1ull << 62) + 1, (uint64_t)INT64_MAX / 4 + 1, (uint64_t)-2, (uint64_t)-4};
    static const uint32_t narrow[] = {
        0, 1, 2, 3, 4, 0xffffffffu, 0xfffffffeu, 0x7fffffffu, 0x80000000u,
        0x7fc00000u /* NaN */, 0x7f800000u /* inf */, 0xff800000u /* -inf */,
        0x3f800000u /* 1.0f */, 0xbf800000u /* -1.0f */, 0x3f000000u /* 0.5f */,
        0x80000000u /* -0.0f */};
    uint8_t *d = in->data;
    int rounds = 1 + (int)below(4);
    for (int k = 0; k < rounds; k++) {
        if (in->len == 0)
            in->len = 1 + below(64), memset(d, 0, in->len);
        size_t at = below(in->len);
        switch (below(9)) {
        case 0: d[at] ^= (uint8_t)(1u << below(8)); break;
        case 1: d[at] = (uint8_t)rnd(); break;
        case 2: put(d, in->len, at, wide[below(sizeof wide / sizeof wide[0])], 8); break;
        case 3: put(d, in->len, at, narrow[below(sizeof narrow / sizeof narrow[0])], 4); break;
        case 4: d[at] = (uint8_t)(d[at] + 1 - 2 * (int)below(2)); break;
        case 5: { /* add a small delta to an 8-byte field */
            uint64_t v = 0;
            for (int i = 0; i < 8 && at + (size_t)i < in->len; i++)
                v |= (uint64_t)d[at + (size_t)i] << (8 * i);
            put(d, in->len, at, v + below(9) - 4, 8);
            break;
        }
        case 6: { /* splice: the same bytes of another input */
            const input *o = &inputs[below(ninputs)];
            size_t n = 1 + below(64);
            for (size_t i = 0; i < n && at + i < in->len && at + i < o->len; i++)
                d[at + i] = o->data[at + i];
            break;
        }
        case 7: in->len = at + 1; break; /* truncate */
        case 8: { /* extend */
            size_t n = below(128);
            for (size_t i = 0; i < n && in->len < sizeof in->data; i++)
                d[in->len++] = (uint8_t)rnd();
            break;
        }
        }
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    double seconds = 0;
    long max_runs = 0;
    unsigned long long seed = 1;
    int want_check = 0, want_describe = 0;
    char *dirs[64];
    int ndirs = 0;
    signal(SIGABRT, on_crash);
#ifndef UNDER_ASAN /* ASan reports these itself, then aborts */
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGFPE, on_crash);
    signal(SIGILL, on_crash);
#endif
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "-seconds=", 9) == 0)
            seconds = atof(a + 9);
        else if (strncmp(a, "-runs=", 6) == 0)
            max_runs = atol(a + 6);
        else if (strncmp(a, "-seed=", 6) == 0)
            seed = strtoull(a + 6, NULL, 0);
        else if (strcmp(a, "-check-seeds") == 0)
            want_check = 1;
        else if (strcmp(a, "-describe") == 0)
            want_describe = 1;
        else if (strncmp(a, "-write-corpus=", 14) == 0)
            return write_corpus(a + 14);
        else if (a[0] == '-') {
            fprintf(stderr, "fuzz_validate: unknown option %s (see tests/fuzz/fuzz_main.c)\n", a);
            return 2;
        } else {
            struct stat st;
            if (load(a) != 0)
                return 2;
            if (stat(a, &st) == 0 && S_ISDIR(st.st_mode) && ndirs < 64)
                dirs[ndirs++] = argv[i];
        }
    }
    int failed = want_check ? check_seeds(dirs, ndirs) : 0;

    long conservative = 0, accepted = 0, gaps = 0;
    fz_result r;
    for (size_t i = 0; i < ninputs; i++) {
        if (want_describe)
            describe(inputs[i].data, inputs[i].len);
        run(inputs[i].data, inputs[i].len, &r);
        conservative += r.conservative;
        accepted += r.status == CLATTN_SUCCESS;
        if (r.gap[0] && !gaps++)
            printf("fuzz_validate: note: accepted although %s\n", r.gap);
    }
    printf("fuzz_validate: %zu inputs run, %ld accepted\n", ninputs, accepted);

    if ((seconds > 0 || max_runs > 0) && ninputs > 0) {
        rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
        const double start = now();
        long runs = 0, ok = 0, by_op[FZ_OPS] = {0};
        static input in;
        while ((seconds <= 0 || now() - start < seconds) && (max_runs <= 0 || runs < max_runs)) {
            for (int k = 0; k < 256 && (max_runs <= 0 || runs < max_runs); k++, runs++) {
                in = inputs[below(ninputs)];
                if (rnd() & 1) {
                    mutate(&in);
                } else {
                    static fz_case c;
                    fz_decode(in.data, in.len, &c);
                    fz_mutate_case(&c, rnd());
                    in.len = fz_encode(&c, in.data);
                }
                run(in.data, in.len, &r);
                ok += r.status == CLATTN_SUCCESS;
                by_op[r.op]++;
                if (r.gap[0] && !gaps++)
                    printf("fuzz_validate: note: accepted although %s\n", r.gap);
                if (r.conservative && !conservative++)
                    printf("fuzz_validate: note: a conservative rejection (no two elements of the "
                           "output meet): %s: %s\n", r.message, r.note);
            }
        }
        printf("fuzz_validate: %ld mutated inputs in %.1f s (seed %llu): %ld accepted; "
               "desc %ld, forward %ld, query %ld, merge %ld, backward %ld\n", runs,
               now() - start, seed, ok, by_op[FZ_DESC], by_op[FZ_FORWARD], by_op[FZ_QUERY],
               by_op[FZ_MERGE], by_op[FZ_BACKWARD]);
    }
    if (gaps)
        printf("fuzz_validate: %ld accepted calls with an output sharing bytes with a seqlens or "
               "workspace buffer\n", gaps);
    if (conservative)
        printf("fuzz_validate: %ld conservative rejections of outputs whose elements do not "
               "overlap\n", conservative);
    free(inputs);
    return failed ? 1 : 0;
}
