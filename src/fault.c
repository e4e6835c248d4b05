/* Fault injection (built only with -Dfault_injection=true): see fault.h. */
#include "fault.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static const char *const kind_names[CLATTN_FAULT_KINDS] = {"alloc", "build", "host",
                                                            "miscompile"};

static atomic_long counts[CLATTN_FAULT_KINDS];
static atomic_int armed_kind = -1; /* -1: none */
static atomic_long armed_at;       /* 1-based */
static atomic_int fired;
static atomic_int armed_by_call;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static int kind_of(const char *name, size_t length)
{
    for (int k = 0; k < CLATTN_FAULT_KINDS; k++)
        if (strlen(kind_names[k]) == length && strncmp(name, kind_names[k], length) == 0)
            return k;
    return -1;
}

/* Parse "kind:N" into *kind, *at; 0 for NULL or "" (disarmed: *kind = -1); -1 if malformed. */
static int parse(const char *spec, int *kind, long *at)
{
    *kind = -1;
    *at = 0;
    if (!spec || !spec[0])
        return 0;
    const char *colon = strchr(spec, ':');
    if (!colon)
        return -1;
    char *end = NULL;
    long n = strtol(colon + 1, &end, 10);
    int k = kind_of(spec, (size_t)(colon - spec));
    if (k < 0 || n < 1 || !end || *end != '\0')
        return -1;
    *kind = k;
    *at = n;
    return 0;
}

static void arm(int kind, long at)
{
    for (int k = 0; k < CLATTN_FAULT_KINDS; k++)
        atomic_store(&counts[k], 0);
    atomic_store(&fired, 0);
    atomic_store(&armed_at, at);
    atomic_store(&armed_kind, kind);
}

static void read_env(void)
{
    if (atomic_load(&armed_by_call))
        return;
    const char *spec = getenv("CLATTN_FAULT_AT");
    int kind;
    long at;
    if (parse(spec, &kind, &at) != 0) {
        clattn_log(CLATTN_LOG_WARN, "CLATTN_FAULT_AT=%s: expected alloc:N, build:N, host:N "
                   "or miscompile:N",
                   spec);
        return;
    }
    if (kind >= 0)
        arm(kind, at);
}

int clattn_fault_hit(clattn_fault_kind kind)
{
    pthread_once(&env_once, read_env);
    const long n = atomic_fetch_add(&counts[kind], 1) + 1;
    if (atomic_load(&armed_kind) != (int)kind || n != atomic_load(&armed_at))
        return 0;
    atomic_store(&fired, 1);
    clattn_log(CLATTN_LOG_DEBUG, "fault injection: failing %s #%ld", kind_names[kind], n);
    return 1;
}

CLATTN_API int clattn_fault_arm(const char *spec)
{
    atomic_store(&armed_by_call, 1);
    pthread_once(&env_once, read_env);
    int kind;
    long at;
    const int ok = parse(spec, &kind, &at);
    arm(ok == 0 ? kind : -1, at);
    return ok;
}

CLATTN_API long clattn_fault_count(const char *kind)
{
    const int k = kind ? kind_of(kind, strlen(kind)) : -1;
    return k < 0 ? -1 : atomic_load(&counts[k]);
}

CLATTN_API int clattn_fault_fired(void)
{
    return atomic_load(&fired);
}

const char *clattn_fault_build_options(const char *options, char *buf, size_t size)
{
    static const char *const swaps[][2] = {{"QKV_TYPE=F32", "QKV_TYPE=F16"},
                                           {"QKV_TYPE=F16", "QKV_TYPE=BF16"},
                                           {"QKV_TYPE=BF16", "QKV_TYPE=F16"}};
    if (!strstr(options, "QKV_TYPE=") || !clattn_fault_hit(CLATTN_FAULT_MISCOMPILE))
        return options; /* only the attention programs count (not the device probes) */
    for (size_t i = 0; i < sizeof swaps / sizeof swaps[0]; i++) {
        const char *at = strstr(options, swaps[i][0]);
        if (at) {
            snprintf(buf, size, "%.*s%s%s", (int)(at - options), options, swaps[i][1],
                     at + strlen(swaps[i][0]));
            return buf;
        }
    }
    return options;
}
