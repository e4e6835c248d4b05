#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

static pthread_mutex_t callback_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*callback_fn)(int, const char *, void *);
static void *callback_user;

static pthread_once_t stderr_level_once = PTHREAD_ONCE_INIT;
static int stderr_level; /* 0: silent */

/* CLATTN_LOG: a level name, unset or empty (silent); anything else is said once on stderr,
   and the log stays silent. */
static void read_stderr_level(void)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    const char *env = getenv("CLATTN_LOG");
    for (int i = 0; env && i < 4; i++)
        if (strcasecmp(env, names[i]) == 0)
            stderr_level = i + 1;
    if (env && env[0] && stderr_level == 0)
        fprintf(stderr, "clattn: CLATTN_LOG=\"%s\" is not error, warn, info or debug; "
                        "logging stays off\n", env);
}

CLATTN_API void clattn_set_log_callback(void (*fn)(int level, const char *msg, void *user),
                                        void *user)
{
    pthread_mutex_lock(&callback_lock);
    callback_fn = fn;
    callback_user = fn ? user : NULL;
    pthread_mutex_unlock(&callback_lock);
}

void clattn_log(int level, const char *fmt, ...)
{
    pthread_mutex_lock(&callback_lock);
    void (*fn)(int, const char *, void *) = callback_fn;
    void *user = callback_user;
    pthread_mutex_unlock(&callback_lock);

    pthread_once(&stderr_level_once, read_stderr_level);
    if (!fn && level > stderr_level)
        return;

    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (fn)
        fn(level, line, user);
    else
        fprintf(stderr, "clattn: %s\n", line);
}
