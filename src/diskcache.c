/* On-disk kernel cache: one file per (device, source, options), written by rename.
 *
 * File layout (host byte order; the key hashes make a foreign file a miss):
 *   magic "CLATTNK" + NUL        8 bytes
 *   format version               u32
 *   header size (56)             u32
 *   key hash a, key hash b       u64, u64
 *   payload length               u64
 *   payload checksum             u64  (clattn_hash64 of the payload, seeded with the verdict)
 *   verdict                      u32  (0: passed its known-answer check, 1: refused; check.h)
 *   reserved                     u32  (0)
 *   payload                      passed: the program binary; refused: why, as text
 */
#include "diskcache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fault.h"
#include "log.h"

#define CACHE_MAGIC "CLATTNK"
#define CACHE_FORMAT 2u
#define SEED_KEY_A 0x6a09e667f3bcc908ull
#define SEED_KEY_B 0xbb67ae8584caa73bull
#define SEED_PAYLOAD 0x3c6ef372fe94f82bull

typedef struct entry_header {
    char     magic[8];
    uint32_t format;
    uint32_t header_size;
    uint64_t key_a, key_b;
    uint64_t length;
    uint64_t checksum;
    uint32_t verdict;
    uint32_t reserved;
} entry_header;

uint64_t clattn_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

int clattn_diskcache_dir(char *buf, size_t size)
{
    const char *dir = getenv("CLATTN_CACHE_DIR");
    if (dir && strcmp(dir, "off") == 0)
        return 0;
    int n;
    if (dir && dir[0])
        n = snprintf(buf, size, "%s", dir);
    else if ((dir = getenv("XDG_CACHE_HOME")) && dir[0])
        n = snprintf(buf, size, "%s/clattn", dir);
    else if ((dir = getenv("HOME")) && dir[0])
        n = snprintf(buf, size, "%s/.cache/clattn", dir);
    else
        return 0;
    return n > 0 && (size_t)n < size;
}

void clattn_diskcache_path(const char *dir, const char *name, const char *key, size_t key_len,
                           char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s-%016llx%016llx.bin", dir, name,
             (unsigned long long)clattn_hash64(key, key_len, SEED_KEY_A),
             (unsigned long long)clattn_hash64(key, key_len, SEED_KEY_B));
}

static int reject(const char *path, const char *why, FILE *f, unsigned char *payload)
{
    clattn_log(CLATTN_LOG_DEBUG, "kernel cache: %s: %s; rebuilding", path, why);
    if (f)
        fclose(f);
    free(payload);
    return 0;
}

FILE *clattn_open_regular_file(const char *path, struct stat *st, const char **why)
{
    struct stat own;
    st = st ? st : &own;
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        *why = errno == ENOENT ? "no such file" : strerror(errno);
        return NULL;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        *why = "not a regular file";
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        *why = strerror(errno);
        close(fd);
    }
    return f;
}

int clattn_diskcache_load(const char *path, const char *key, size_t key_len,
                          unsigned char **payload_out, size_t *size, int *refused)
{
    const char *why = "";
    struct stat st;
    FILE *f = clattn_open_regular_file(path, &st, &why);
    if (!f)
        return reject(path, why, NULL, NULL);
    entry_header h;
    if (fread(&h, sizeof h, 1, f) != 1)
        return reject(path, "shorter than its header", f, NULL);
    if (memcmp(h.magic, CACHE_MAGIC, 8) != 0 || h.format != CACHE_FORMAT ||
        h.header_size != sizeof h)
        return reject(path, "bad magic or format", f, NULL);
    if (h.key_a != clattn_hash64(key, key_len, SEED_KEY_A) ||
        h.key_b != clattn_hash64(key, key_len, SEED_KEY_B))
        return reject(path, "entry is for another device, source or options", f, NULL);
    if (h.verdict > 1 || h.reserved != 0)
        return reject(path, "bad verdict", f, NULL);
    if (h.length == 0 || (uint64_t)st.st_size != sizeof h + h.length)
        return reject(path, "length does not match the file size", f, NULL);
    unsigned char *payload = clattn_malloc(h.length);
    if (!payload)
        return reject(path, "no host memory to read it", f, NULL);
    if (fread(payload, 1, h.length, f) != h.length)
        return reject(path, "read failed", f, payload);
    if (clattn_hash64(payload, h.length, SEED_PAYLOAD ^ h.verdict) != h.checksum)
        return reject(path, "checksum mismatch", f, payload);
    fclose(f);
    *payload_out = payload;
    *size = h.length;
    *refused = (int)h.verdict;
    return 1;
}

/* mkdir -p for the directory part of path. */
static int make_parent_dirs(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(dir, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

void clattn_diskcache_store(const char *path, const char *key, size_t key_len, int refused,
                            const unsigned char *payload, size_t size)
{
    static atomic_uint counter;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
    entry_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.format = CACHE_FORMAT;
    h.header_size = sizeof h;
    h.key_a = clattn_hash64(key, key_len, SEED_KEY_A);
    h.key_b = clattn_hash64(key, key_len, SEED_KEY_B);
    h.length = size;
    h.verdict = refused ? 1u : 0u;
    h.checksum = clattn_hash64(payload, size, SEED_PAYLOAD ^ h.verdict);

    FILE *f = make_parent_dirs(path) == 0 ? fopen(tmp, "wbx") : NULL;
    int ok = f && fwrite(&h, sizeof h, 1, f) == 1 && fwrite(payload, 1, size, f) == size;
    ok = f && fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) == 0) {
        clattn_log(CLATTN_LOG_DEBUG, "kernel cache: stored %s (%zu bytes)", path, size);
        return;
    }
    clattn_log(CLATTN_LOG_DEBUG, "kernel cache: cannot store %s: %s", path, strerror(errno));
    unlink(tmp);
}
