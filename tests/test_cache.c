/*
 * The kernel cache on disk: where it lives, cold and warm starts, every kind of bad entry
 * rebuilt (never trusted), CLATTN_CACHE_DIR=off, and the faults of its directory: missing
 * (made), read-only, not a directory, full (writes fail), and two processes that build and
 * store the same entry at once. Each test points the cache at a fresh temporary directory and
 * reads what the library did from its debug log lines; every result is checked against the
 * reference.
 */
#define _DEFAULT_SOURCE /* syscall() */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

/* ---- a fresh cache directory ------------------------------------------------------------- */

static char cache_root[256];

static void make_root(void)
{
    snprintf(cache_root, sizeof cache_root, "/tmp/clattn-cache-test-%d-XXXXXX", (int)getpid());
    cr_assert_not_null(mkdtemp(cache_root), "mkdtemp");
}

/* Paths of the attention programs' *.bin entries under dir (at most max; not the entry of the
   loop probe, "probe-*.bin", that every context's first launch builds), returns how many. */
static int list_entries(const char *dir, char paths[][512], int max)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".bin") == 0 &&
            strncmp(e->d_name, "probe-", 6) != 0 && n < max)
            snprintf(paths[n++], 512, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    return n;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* ---- one small forward, checked against the reference ----------------------------------- */

/* Run a causal forward (B=1, Hq=2, Hkv=1, Sq=9, Sk=13, D=20) checked against the reference,
   then release the context so that the next call starts cold in memory and must go to the
   disk cache. */
static void forward_matches_reference(void)
{
    static const int64_t qd[4] = {1, 2, 9, 20}, kd[4] = {1, 1, 13, 20};
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.causal = 1;
    test_forward_vs_reference(&desc, qd, kd, NULL, 0);
    test_ctx_release();
}

/* ---- tests ------------------------------------------------------------------------------- */

static void remove_roots(void)
{
    test_ctx_release();
    char command[300];
    snprintf(command, sizeof command, "rm -rf /tmp/clattn-cache-test-%d-*", (int)getpid());
    if (system(command) != 0)
        cr_log_warn("could not remove the test's cache directories");
}

TestSuite(cache, .fini = remove_roots);

Test(cache, cold_build_then_warm_hit)
{
    make_root();
    setenv("CLATTN_CACHE_DIR", cache_root, 1);
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("kernel cache: built"), "cold start should build; log:\n%s", test_log);
    char paths[4][512];
    cr_assert_eq(list_entries(cache_root, paths, 4), 1, "one entry after one program");
    cr_assert_gt(file_size(paths[0]), 48);

    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("kernel cache: hit"), "warm start should load the entry; log:\n%s",
              test_log);
    cr_assert_not(test_logged("kernel cache: built"), "warm start rebuilt; log:\n%s", test_log);
}

/* A program built from source runs its known-answer check (src/check.h) once: the entry keeps
   the verdict, and a program loaded from it is not checked again. */
Test(cache, a_built_program_is_checked_once)
{
    make_root();
    setenv("CLATTN_CACHE_DIR", cache_root, 1);
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("known-answer check of attention_forward.cl") &&
                  test_logged("passed in"),
              "a built program was not checked; log:\n%s", test_log);
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("kernel cache: hit"), "log:\n%s", test_log);
    cr_assert_not(test_logged("known-answer check"), "a cached program was checked again; "
                  "log:\n%s", test_log);
}

/* How an entry is damaged. */
typedef enum damage { ZERO_LENGTH, HEADER_ONLY_PART, TRUNCATED_PAYLOAD, FLIPPED_PAYLOAD_BIT,
                      FOREIGN_KEY, BAD_MAGIC, EXTRA_BYTES, FLIPPED_VERDICT,
                      DAMAGE_COUNT } damage;

static const char *const damage_names[] = {"zero-length", "half a header", "truncated payload",
                                           "flipped payload bit", "another device's key",
                                           "bad magic", "trailing bytes",
                                           "passed turned refused"};

static void apply_damage(const char *path, damage how)
{
    long size = file_size(path);
    cr_assert_gt(size, 64);
    FILE *f;
    switch (how) {
    case ZERO_LENGTH: cr_assert_eq(truncate(path, 0), 0); return;
    case HEADER_ONLY_PART: cr_assert_eq(truncate(path, 20), 0); return;
    case TRUNCATED_PAYLOAD: cr_assert_eq(truncate(path, size - 1), 0); return;
    case EXTRA_BYTES:
        f = fopen(path, "ab");
        cr_assert_not_null(f);
        fputs("junk", f);
        fclose(f);
        return;
    default: break;
    }
    /* byte 0: magic; byte 16: first key hash; byte 48: the verdict (src/diskcache.c); the
       last byte: payload */
    long at = how == BAD_MAGIC ? 0 : how == FOREIGN_KEY ? 16 : how == FLIPPED_VERDICT ? 48
                                                                                     : size - 1;
    f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x01, f);
    fclose(f);
}

Test(cache, every_bad_entry_is_rebuilt)
{
    make_root();
    setenv("CLATTN_CACHE_DIR", cache_root, 1);
    forward_matches_reference();
    char paths[4][512];
    cr_assert_eq(list_entries(cache_root, paths, 4), 1);
    const long good_size = file_size(paths[0]);

    for (int how = 0; how < DAMAGE_COUNT; how++) {
        apply_damage(paths[0], (damage)how);
        test_log_start();
        forward_matches_reference();
        cr_assert(test_logged("rebuilding") && test_logged("kernel cache: built"),
                  "%s entry should be rebuilt; log:\n%s", damage_names[how], test_log);
        cr_assert_not(test_logged("kernel cache: hit"), "%s entry was used; log:\n%s",
                      damage_names[how], test_log);
        cr_assert_eq(file_size(paths[0]), good_size, "%s: entry not rewritten whole",
                     damage_names[how]);

        test_log_start();
        forward_matches_reference();
        cr_assert(test_logged("kernel cache: hit"),
                  "after %s the rewritten entry should hit; log:\n%s", damage_names[how],
                  test_log);
    }
}

/* A FIFO where an entry or the tuning file should be (a hostile or mistaken cache directory)
   blocked the first forward, or clattn_context_create, for ever: opening it waits for a
   writer. Now only regular files are read; the timeout fails the test if anything blocks. */
Test(cache, a_fifo_in_place_of_an_entry_or_the_tuning_file_does_not_block, .timeout = 300)
{
    make_root();
    setenv("CLATTN_CACHE_DIR", cache_root, 1);
    forward_matches_reference();
    char paths[4][512], tuning[300];
    cr_assert_eq(list_entries(cache_root, paths, 4), 1);
    cr_assert_eq(unlink(paths[0]), 0);
    cr_assert_eq(mkfifo(paths[0], 0600), 0, "mkfifo %s", paths[0]);
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("not a regular file") && test_logged("kernel cache: built"),
              "the FIFO entry should be refused and the program built; log:\n%s", test_log);

    snprintf(tuning, sizeof tuning, "%s/tuning.txt", cache_root);
    cr_assert_eq(mkfifo(tuning, 0600), 0, "mkfifo %s", tuning);
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("tuning database") && test_logged("not a regular file"),
              "the FIFO tuning file should be refused with a warning; log:\n%s", test_log);

    setenv("CLATTN_TUNING_DB", tuning, 1);
    test_log_start();
    forward_matches_reference();
    unsetenv("CLATTN_TUNING_DB");
    cr_assert(test_logged("not a regular file"), "CLATTN_TUNING_DB naming a FIFO; log:\n%s",
              test_log);
}

Test(cache, off_writes_nothing)
{
    make_root();
    setenv("CLATTN_CACHE_DIR", "off", 1);
    setenv("XDG_CACHE_HOME", cache_root, 1);
    setenv("HOME", cache_root, 1);
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("kernel cache: off"), "log:\n%s", test_log);
    /* (the OpenCL implementation may keep its own cache there; clattn's folders must not exist) */
    char dir[512];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/clattn", cache_root);
    cr_assert_neq(stat(dir, &st), 0, "CLATTN_CACHE_DIR=off still made %s", dir);
    snprintf(dir, sizeof dir, "%s/.cache/clattn", cache_root);
    cr_assert_neq(stat(dir, &st), 0, "CLATTN_CACHE_DIR=off still made %s", dir);
}

Test(cache, default_locations)
{
    char paths[4][512], dir[512];
    make_root();
    unsetenv("CLATTN_CACHE_DIR");
    setenv("XDG_CACHE_HOME", cache_root, 1);
    forward_matches_reference();
    snprintf(dir, sizeof dir, "%s/clattn", cache_root);
    cr_assert_eq(list_entries(dir, paths, 4), 1, "expected the entry in $XDG_CACHE_HOME/clattn");

    make_root();
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", cache_root, 1);
    forward_matches_reference();
    snprintf(dir, sizeof dir, "%s/.cache/clattn", cache_root);
    cr_assert_eq(list_entries(dir, paths, 4), 1, "expected the entry in ~/.cache/clattn");
}

Test(cache, unwritable_directory_still_computes)
{
    make_root();
    char file[512];
    snprintf(file, sizeof file, "%s/not-a-directory", cache_root);
    FILE *f = fopen(file, "w");
    cr_assert_not_null(f);
    fclose(f);
    setenv("CLATTN_CACHE_DIR", file, 1); /* a regular file where the directory should be */
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("cannot store"), "log:\n%s", test_log);
}

/* ---- faults of the directory ------------------------------------------------------------- */

/* Files under dir whose name contains part (".bin", ".tmp."). */
static int count_files(const char *dir, const char *part)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

Test(cache, missing_directory_is_made)
{
    make_root();
    char dir[512], paths[4][512];
    snprintf(dir, sizeof dir, "%s/not/there/yet", cache_root);
    setenv("CLATTN_CACHE_DIR", dir, 1);
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("no such file; rebuilding") && test_logged("kernel cache: stored"),
              "a missing directory should be a miss, then made and stored into; log:\n%s",
              test_log);
    cr_assert_eq(list_entries(dir, paths, 4), 1, "expected the entry in the new %s", dir);

    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("kernel cache: hit"), "log:\n%s", test_log);
}

/* 1 if a file can be made in dir (it is removed again). */
static int can_create_in(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/write-probe", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return 0;
    close(fd);
    unlink(path);
    return 1;
}

/* Drop CAP_DAC_OVERRIDE from this process's effective capabilities (Criterion runs each test
   in a process of its own), so that root too is refused a write into a 0555 directory. */
static int drop_dac_override(void)
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &header, data) != 0)
        return -1;
    data[CAP_TO_INDEX(CAP_DAC_OVERRIDE)].effective &= ~CAP_TO_MASK(CAP_DAC_OVERRIDE);
    return (int)syscall(SYS_capset, &header, data);
}

Test(cache, read_only_directory)
{
    make_root();
    char dir[512], paths[4][512];
    snprintf(dir, sizeof dir, "%s/ro", cache_root);
    setenv("CLATTN_CACHE_DIR", dir, 1);
    forward_matches_reference(); /* one valid entry, written while writable */
    cr_assert_eq(list_entries(dir, paths, 4), 1);
    char empty[512];
    snprintf(empty, sizeof empty, "%s/ro-empty", cache_root);
    cr_assert_eq(mkdir(empty, 0555), 0);
    cr_assert_eq(chmod(dir, 0555), 0);
    if (can_create_in(dir)) {
        /* root writes through 0555: without CAP_DAC_OVERRIDE it cannot */
        if (drop_dac_override() != 0)
            cr_log_warn("capset: %s", strerror(errno));
    }
    const int read_only = !can_create_in(dir) && !can_create_in(empty);
    if (!read_only) {
        /* still writable (root with capabilities that cannot be dropped): /proc is a
           directory that nobody can make a file in */
        cr_log_warn("cannot make a read-only directory here; using /proc for the empty case");
        snprintf(empty, sizeof empty, "/proc");
    }

    /* an existing valid entry in a read-only directory is used */
    if (read_only) {
        test_log_start();
        forward_matches_reference();
        cr_assert(test_logged("kernel cache: hit"), "read-only entry not used; log:\n%s", test_log);
        cr_assert_not(test_logged("kernel cache: built"), "log:\n%s", test_log);
    }

    /* a miss in a read-only directory: built, the store fails, the result is right; twice */
    setenv("CLATTN_CACHE_DIR", empty, 1);
    for (int round = 0; round < 2; round++) {
        test_log_start();
        forward_matches_reference();
        cr_assert(test_logged("no such file; rebuilding") && test_logged("kernel cache: built") &&
                      test_logged("cannot store"),
                  "round %d in %s; log:\n%s", round, empty, test_log);
        cr_assert_not(test_logged("kernel cache: stored"), "log:\n%s", test_log);
    }
    chmod(dir, 0755);
    if (read_only) {
        cr_assert_eq(count_files(empty, ".tmp."), 0, "a temporary file was left in %s", empty);
        chmod(empty, 0755);
    }
}

/* A full disk: writes fail part way, as with ENOSPC (RLIMIT_FSIZE with SIGXFSZ ignored:
   write() returns EFBIG once the file reaches the limit). The OpenCL runtime writes files of
   its own while it builds (PoCL: megabytes of preprocessed source), so the limit is on only
   while clattn stores its entry: the log callback sets it at "kernel cache: built", which
   program.c logs right before the store, and lifts it at the store's own line. */
static struct rlimit fsize_old, fsize_small;
static int fsize_limited;

static void capture_under_full_disk(int level, const char *msg, void *user)
{
    test_log_capture(level, msg, user);
    if (strstr(msg, "kernel cache: built")) {
        fsize_limited = setrlimit(RLIMIT_FSIZE, &fsize_small) == 0;
    } else if (strstr(msg, "kernel cache: stored") || strstr(msg, "kernel cache: cannot store")) {
        if (setrlimit(RLIMIT_FSIZE, &fsize_old) != 0)
            abort();
    }
}

Test(cache, full_disk)
{
    make_root();
    char warm[512], full[512], paths[4][512];
    snprintf(warm, sizeof warm, "%s/warm", cache_root);
    snprintf(full, sizeof full, "%s/full", cache_root);
    setenv("CLATTN_CACHE_DIR", warm, 1);
    forward_matches_reference(); /* to learn the entry's size */
    cr_assert_eq(list_entries(warm, paths, 4), 1);
    const long entry_size = file_size(paths[0]);

    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &fsize_old), 0);
    fsize_small = fsize_old;
    fsize_small.rlim_cur = (rlim_t)(entry_size / 2); /* the header and part of the binary */
    cr_assert(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
    setenv("CLATTN_CACHE_DIR", full, 1);
    for (int round = 0; round < 2; round++) {
        test_log[0] = '\0';
        fsize_limited = 0;
        clattn_set_log_callback(capture_under_full_disk, NULL);
        forward_matches_reference();
        clattn_set_log_callback(test_log_capture, NULL);
        struct rlimit now;
        cr_assert(getrlimit(RLIMIT_FSIZE, &now) == 0 && now.rlim_cur == fsize_old.rlim_cur,
                  "the limit was not lifted after the store; log:\n%s", test_log);
        cr_assert(fsize_limited, "setrlimit: %s", strerror(errno));
        cr_assert(test_logged("kernel cache: built") && test_logged("cannot store") &&
                      test_logged(strerror(EFBIG)),
                  "round %d: the failed write should be logged; log:\n%s", round, test_log);
        cr_assert_not(test_logged("kernel cache: stored"), "log:\n%s", test_log);
        cr_assert_eq(list_entries(full, paths, 4), 0, "a partial entry was left");
        cr_assert_eq(count_files(full, ".tmp."), 0, "a temporary file was left");
    }

    /* space again: stored whole, then used */
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("kernel cache: stored"), "log:\n%s", test_log);
    cr_assert_eq(list_entries(full, paths, 4), 1);
    cr_assert_eq(file_size(paths[0]), entry_size);
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("kernel cache: hit"), "log:\n%s", test_log);
}

/* ---- two processes build the same entry at once ------------------------------------------ */

/* The forward of forward_matches_reference, in a forked child, without Criterion (no
   assertion, no log to the runner) and without tests/common.c's context: a context of its
   own, plain buffers, ref_attention_forward. Its log lines go to log_path. Returns the exit
   status: 0 right, 1 wrong, 2 failed, 3 no device. The child writes a byte to ready_fd once it
   has its context (or has failed), then waits on go_fd, so that both children reach the cache
   at the same moment. */
static int child_ready;

static int child_forward(const char *log_path, int ready_fd, int go_fd)
{
    enum { SQ = 9, SK = 13, D = 20, HQ = 2 };
    float q[HQ * SQ * D], k[SK * D], v[SK * D], out[HQ * SQ * D];
    double qd[HQ * SQ * D], kd[SK * D], vd[SK * D], want[HQ * SQ * D];
    test_rng rng;
    rng_seed(&rng, 5);
    rng_fill_f32(&rng, q, HQ * SQ * D, -1.0f, 1.0f);
    rng_fill_f32(&rng, k, SK * D, -1.0f, 1.0f);
    rng_fill_f32(&rng, v, SK * D, -0.5f, 1.5f);
    f32_to_f64(q, qd, HQ * SQ * D);
    f32_to_f64(k, kd, SK * D);
    f32_to_f64(v, vd, SK * D);
    ref_params p;
    ref_params_init(&p);
    p.causal = 1;
    ref_tensor rq = ref_tensor_dense(qd, 1, HQ, SQ, D), rk = ref_tensor_dense(kd, 1, 1, SK, D),
               rv = ref_tensor_dense(vd, 1, 1, SK, D), ro = ref_tensor_dense(want, 1, HQ, SQ, D);
    if (ref_attention_forward(&p, &rq, &rk, &rv, &ro, NULL) != 0)
        return 2;

    test_log_start();
    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create(getenv("CLATTN_TEST_DEVICE"), &ctx);
    if (st != CLATTN_SUCCESS)
        return st == CLATTN_ERROR_DEVICE_NOT_FOUND ? 3 : 2;
    cl_context cl = clattn_context_cl_context(ctx);
    cl_command_queue queue = clattn_context_queue(ctx);
    cl_int err = CL_SUCCESS;
    cl_mem bq = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof q, q, &err);
    cl_mem bk = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof k, k, &err);
    cl_mem bv = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof v, v, &err);
    cl_mem bo = clCreateBuffer(cl, CL_MEM_WRITE_ONLY, sizeof out, NULL, &err);
    if (!bq || !bk || !bv || !bo)
        return 2;
    char byte = 'r';
    child_ready = 1;
    if (write(ready_fd, &byte, 1) != 1 || read(go_fd, &byte, 1) != 1)
        return 2;

    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.causal = 1;
    const clattn_tensor tq = clattn_tensor_bhsd(bq, CLATTN_F32, 1, HQ, SQ, D),
                        tk = clattn_tensor_bhsd(bk, CLATTN_F32, 1, 1, SK, D),
                        tv = clattn_tensor_bhsd(bv, CLATTN_F32, 1, 1, SK, D),
                        to = clattn_tensor_bhsd(bo, CLATTN_F32, 1, HQ, SQ, D);
    clattn_status s = clattn_attention_forward(ctx, &desc, &tq, &tk, &tv, &to, NULL, 0, NULL,
                                               NULL);
    if (s != CLATTN_SUCCESS ||
        clEnqueueReadBuffer(queue, bo, CL_TRUE, 0, sizeof out, out, 0, NULL, NULL) != CL_SUCCESS)
        return 2;
    int wrong = 0;
    for (int i = 0; i < HQ * SQ * D; i++)
        wrong |= !(fabs(out[i] - want[i]) <= 1e-4 * fmax(1.0, fabs(want[i])));
    clReleaseMemObject(bq);
    clReleaseMemObject(bk);
    clReleaseMemObject(bv);
    clReleaseMemObject(bo);
    clattn_context_release(ctx);
    FILE *f = fopen(log_path, "w");
    if (f) {
        fputs(test_log, f);
        fclose(f);
    }
    return wrong;
}

/* 1 if a byte came from fd within the time (a child that crashed before it wrote never will). */
static int read_byte_within(int fd, int seconds)
{
    struct pollfd p = {fd, POLLIN, 0};
    char byte;
    return poll(&p, 1, seconds * 1000) == 1 && read(fd, &byte, 1) == 1;
}

static void read_text_file(const char *path, char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

Test(cache, two_processes_build_the_same_entry)
{
    /* this process must not have touched OpenCL before it forks: no test_ctx() until the
       children are done */
    make_root();
    char dir[512], paths[4][512];
    snprintf(dir, sizeof dir, "%s/shared", cache_root);
    setenv("CLATTN_CACHE_DIR", dir, 1);
    int both_built = 0;
    for (int attempt = 0; attempt < 3 && !both_built; attempt++) {
        char command[600];
        snprintf(command, sizeof command, "rm -rf '%s'", dir);
        cr_assert_eq(system(command), 0);
        int ready[2], go[2];
        cr_assert_eq(pipe(ready), 0);
        cr_assert_eq(pipe(go), 0);
        pid_t pids[2];
        char logs[2][600];
        for (int c = 0; c < 2; c++) {
            snprintf(logs[c], sizeof logs[c], "%s/child-%d-%d.log", cache_root, attempt, c);
            pids[c] = fork();
            cr_assert_neq(pids[c], -1, "fork");
            if (pids[c] == 0) {
                int rc = child_forward(logs[c], ready[1], go[0]);
                if (!child_ready && write(ready[1], "f", 1) != 1)
                    rc = 2;
                _exit(rc);
            }
        }
        close(ready[1]);
        for (int c = 0; c < 2; c++)
            cr_assert(read_byte_within(ready[0], 300), "a child did not get ready");
        cr_assert_eq(write(go[1], "gg", 2), 2); /* both at once */
        int status[2] = {0, 0};
        for (int c = 0; c < 2; c++)
            cr_assert_eq(waitpid(pids[c], &status[c], 0), pids[c]);
        close(ready[0]);
        close(go[0]);
        close(go[1]);
        for (int c = 0; c < 2; c++) {
            if (WIFEXITED(status[c]) && WEXITSTATUS(status[c]) == 3)
                cr_skip_test("no OpenCL device");
            cr_assert(WIFEXITED(status[c]) && WEXITSTATUS(status[c]) == 0, "child %d: %s", c,
                      !WIFEXITED(status[c])          ? "crashed"
                      : WEXITSTATUS(status[c]) == 1 ? "wrong result"
                                                    : "a call failed");
        }
        both_built = 1;
        for (int c = 0; c < 2; c++) {
            read_text_file(logs[c], test_log, sizeof test_log);
            cr_assert(test_logged("kernel cache: hit") || (test_logged("kernel cache: built") &&
                                                           test_logged("kernel cache: stored")),
                      "child %d should have used or stored the entry; log:\n%s", c, test_log);
            both_built &= test_logged("kernel cache: built") && test_logged("kernel cache: stored");
        }
        cr_assert_eq(list_entries(dir, paths, 4), 1, "one entry after both children");
        cr_assert_eq(count_files(dir, ".tmp."), 0, "a temporary file was left");
    }
    if (!both_built)
        cr_log_warn("in 3 attempts one child always found the other's entry: the stores did "
                    "not overlap");
    cr_log_info("two processes %s the same entry at once", both_built ? "built and stored"
                                                                      : "used");
    /* the entry left behind is whole and valid */
    test_log_start();
    forward_matches_reference();
    cr_assert(test_logged("kernel cache: hit"), "the entry left behind should hit; log:\n%s",
              test_log);
}
