/*
 * The kernel cache on disk: where it lives, cold and warm starts, every kind of bad entry
 * rebuilt (never trusted), and CLATTN_CACHE_DIR=off. Each test points the cache at a fresh
 * temporary directory and reads what the library did from its debug log lines.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

/* ---- log capture ------------------------------------------------------------------------- */

static char captured[65536];

static void capture(int level, const char *msg, void *user)
{
    (void)level;
    (void)user;
    size_t used = strlen(captured);
    snprintf(captured + used, sizeof captured - used, "%s\n", msg);
}

static void start_capture(void)
{
    captured[0] = '\0';
    clattn_set_log_callback(capture, NULL);
}

static int logged(const char *needle)
{
    return strstr(captured, needle) != NULL;
}

/* ---- a fresh cache directory ------------------------------------------------------------- */

static char cache_root[256];

static void make_root(void)
{
    snprintf(cache_root, sizeof cache_root, "/tmp/clattn-cache-test-%d-XXXXXX", (int)getpid());
    cr_assert_not_null(mkdtemp(cache_root), "mkdtemp");
}

/* Paths of the *.bin entries under dir (at most max), returns how many. */
static int list_entries(const char *dir, char paths[][512], int max)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".bin") == 0 && n < max)
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
    start_capture();
    forward_matches_reference();
    cr_assert(logged("kernel cache: built"), "cold start should build; log:\n%s", captured);
    char paths[4][512];
    cr_assert_eq(list_entries(cache_root, paths, 4), 1, "one entry after one program");
    cr_assert_gt(file_size(paths[0]), 48);

    start_capture();
    forward_matches_reference();
    cr_assert(logged("kernel cache: hit"), "warm start should load the entry; log:\n%s", captured);
    cr_assert_not(logged("kernel cache: built"), "warm start rebuilt; log:\n%s", captured);
}

/* How an entry is damaged. */
typedef enum damage { ZERO_LENGTH, HEADER_ONLY_PART, TRUNCATED_PAYLOAD, FLIPPED_PAYLOAD_BIT,
                      FOREIGN_KEY, BAD_MAGIC, EXTRA_BYTES, DAMAGE_COUNT } damage;

static const char *const damage_names[] = {"zero-length", "half a header", "truncated payload",
                                           "flipped payload bit", "another device's key",
                                           "bad magic", "trailing bytes"};

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
    /* byte 0: magic; byte 16: first key hash; the last byte: payload */
    long at = how == BAD_MAGIC ? 0 : how == FOREIGN_KEY ? 16 : size - 1;
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
        start_capture();
        forward_matches_reference();
        cr_assert(logged("rebuilding") && logged("kernel cache: built"),
                  "%s entry should be rebuilt; log:\n%s", damage_names[how], captured);
        cr_assert_not(logged("kernel cache: hit"), "%s entry was used; log:\n%s",
                      damage_names[how], captured);
        cr_assert_eq(file_size(paths[0]), good_size, "%s: entry not rewritten whole",
                     damage_names[how]);

        start_capture();
        forward_matches_reference();
        cr_assert(logged("kernel cache: hit"), "after %s the rewritten entry should hit; log:\n%s",
                  damage_names[how], captured);
    }
}

Test(cache, off_writes_nothing)
{
    make_root();
    setenv("CLATTN_CACHE_DIR", "off", 1);
    setenv("XDG_CACHE_HOME", cache_root, 1);
    setenv("HOME", cache_root, 1);
    start_capture();
    forward_matches_reference();
    cr_assert(logged("kernel cache: off"), "log:\n%s", captured);
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
    start_capture();
    forward_matches_reference();
    cr_assert(logged("cannot store"), "log:\n%s", captured);
}
