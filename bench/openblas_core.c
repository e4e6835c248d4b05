/* The OpenBLAS core choice of clattn-bench (see openblas_core.h): a self-check in a child
   process, then one re-execution with OPENBLAS_CORETYPE=SkylakeX. */
#include "openblas_core.h"

#include "openblas_attention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#define SELFTEST_VAR "CLATTN_BENCH_OPENBLAS_SELFTEST"
#define REEXEC_VAR "CLATTN_BENCH_OPENBLAS_REEXEC"   /* value: the core OpenBLAS picked itself */
#define FAST_CORE "SkylakeX"
#define TOLERANCE 1e-4

/* 1 if /proc/cpuinfo's first "flags" line lists avx512f. */
static int cpu_has_avx512f(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    int found = 0, done = 0;
    while (f && !done && fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        done = 1;
        for (char *save = NULL, *w = strtok_r(line, " \t\n", &save); w && !found;
             w = strtok_r(NULL, " \t\n", &save))
            found = strcmp(w, "avx512f") == 0;
    }
    if (f)
        fclose(f);
    return found;
}

static int is_avx512_core(const char *name)
{
    static const char *const cores[] = {"skylakex", "cooperlake", "sapphirerapids"};
    for (size_t i = 0; i < sizeof cores / sizeof cores[0]; i++)
        if (strcasecmp(name, cores[i]) == 0)
            return 1;
    return 0;
}

static void fill(float *x, size_t n, unsigned seed)
{
    unsigned s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        x[i] = (float)(s >> 8) / 8388608.0f - 1.0f;
    }
}

/* Worst error of one threading of a small causal GQA problem over all its heads; 1 on failure. */
static double self_check_error(const cpu_attention_problem *p, cpu_attention_threading t,
                               const float *q, const float *k, const float *v, float *out)
{
    double worst = 0.0;
    if (!cpu_attention_forward(p, t, 2, q, k, v, out))
        return 1.0;
    for (int64_t pair = 0; pair < p->b * p->hq; pair++) {
        double e = cpu_attention_check(p, q, k, v, out, pair / p->hq, pair % p->hq);
        if (!(e >= 0.0))   /* no scratch, or NaN */
            return 1.0;
        worst = e > worst ? e : worst;
    }
    return worst;
}

/* Exit status of the self-check: 0 when both threadings match the double loop. */
static int self_check(void)
{
    const cpu_attention_problem p = {2, 4, 2, 150, 170, 64, 40, 1};
    size_t nq = 2 * 4 * 150 * 64, nk = 2 * 2 * 170 * 64, nv = 2 * 2 * 170 * 40;
    size_t no = 2 * 4 * 150 * 40;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nv * 4), *out = malloc(no * 4);
    double e1 = 1.0, e2 = 1.0;
    if (q && k && v && out) {
        fill(q, nq, 1), fill(k, nk, 2), fill(v, nv, 3);
        e1 = self_check_error(&p, CPU_ATTENTION_THREADS_OVER_HEADS, q, k, v, out);
        e2 = self_check_error(&p, CPU_ATTENTION_THREADS_IN_BLAS, q, k, v, out);
    }
    free(q), free(k), free(v), free(out);
    if (e1 < TOLERANCE && e2 < TOLERANCE)
        return 0;
    fprintf(stderr, "clattn-bench: OpenBLAS core %s fails the self-check: rel err %.3g, %.3g\n",
            cpu_attention_core(), e1, e2);
    return 1;
}

/* 1 if a child run with OPENBLAS_CORETYPE=SkylakeX passes the self-check. */
static int fast_core_passes(char **argv)
{
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("OPENBLAS_CORETYPE", FAST_CORE, 1);
        setenv(SELFTEST_VAR, "1", 1);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    int status = 0;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

const char *openblas_core_choose(char **argv)
{
    static char how[160];
    if (getenv(SELFTEST_VAR))
        exit(self_check());
    const char *first = getenv(REEXEC_VAR);
    if (first) {
        snprintf(how, sizeof how, "OPENBLAS_CORETYPE=" FAST_CORE " set by clattn-bench after a "
                 "passing self-check; OpenBLAS alone picked %s", first);
        return how;
    }
    if (getenv("OPENBLAS_CORETYPE"))
        return "OPENBLAS_CORETYPE from the environment";
    if (is_avx512_core(cpu_attention_core()))
        return "OpenBLAS's own choice";
    if (!cpu_has_avx512f())
        return "OpenBLAS's own choice; the CPU has no avx512f";
    if (!fast_core_passes(argv))
        return "OpenBLAS's own choice; " FAST_CORE " failed the self-check";
    setenv("OPENBLAS_CORETYPE", FAST_CORE, 1);
    setenv(REEXEC_VAR, cpu_attention_core(), 1);
    fflush(stdout), fflush(stderr);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(REEXEC_VAR);
    return "OpenBLAS's own choice; re-executing with " FAST_CORE " failed";
}
