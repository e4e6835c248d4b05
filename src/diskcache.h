/* On-disk cache of compiled program binaries. Never trusted: every entry is verified. */
#ifndef CLATTN_DISKCACHE_H
#define CLATTN_DISKCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

/* The cache directory: $CLATTN_CACHE_DIR, else $XDG_CACHE_HOME/clattn, else ~/.cache/clattn.
   Returns 0 when the cache is off (CLATTN_CACHE_DIR=off, or no location is known). */
int clattn_diskcache_dir(char *buf, size_t size);

/* The entry's path for a key (the key text holds everything the binary depends on). */
void clattn_diskcache_path(const char *dir, const char *key, size_t key_len, char *buf,
                           size_t size);

/* 1 and a malloc'ed copy of the binary if the entry at path exists and its magic, format, key,
   length and checksum all check out; else 0 (the reason logged at debug level). */
int clattn_diskcache_load(const char *path, const char *key, size_t key_len,
                          unsigned char **binary, size_t *size);

/* Write the entry through a temporary file and a rename, so readers never see half of it.
   Failures are logged at debug level and otherwise ignored: the cache is an optimisation. */
void clattn_diskcache_store(const char *path, const char *key, size_t key_len,
                            const unsigned char *binary, size_t size);

/* fopen(path, "rb") of a regular file only: a FIFO, device or directory (which would block a
   reader, or never end) is refused without blocking, with *why saying so; so is a file that
   does not open (*why: strerror). Fills *st when st is not NULL. */
FILE *clattn_open_regular_file(const char *path, struct stat *st, const char **why);

/* 64-bit hash (FNV-1a with a seed, then a final avalanche). */
uint64_t clattn_hash64(const void *data, size_t len, uint64_t seed);

#endif
