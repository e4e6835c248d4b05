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

/* The entry's path for a key (the key text holds everything the binary depends on):
   dir/<name>-<128-bit hash of the key>.bin, name saying what it holds (the program's main
   file without ".cl": attention_forward, probe). */
void clattn_diskcache_path(const char *dir, const char *name, const char *key, size_t key_len,
                           char *buf, size_t size);

/* 1 and a malloc'ed copy of the payload if the entry at path exists and its magic, format,
   key, verdict, length and checksum all check out; else 0 (the reason logged at debug level).
   *refused: 0, the payload is a binary that passed its known-answer check (check.h); 1, the
   program failed it and the payload says why (text, not NUL-terminated). */
int clattn_diskcache_load(const char *path, const char *key, size_t key_len,
                          unsigned char **payload, size_t *size, int *refused);

/* Write the entry (refused and payload as clattn_diskcache_load reads them) through a
   temporary file and a rename, so readers never see half of it. Failures are logged at debug
   level and otherwise ignored: the cache is an optimisation. */
void clattn_diskcache_store(const char *path, const char *key, size_t key_len, int refused,
                            const unsigned char *payload, size_t size);

/* fopen(path, "rb") of a regular file only: a FIFO, device or directory (which would block a
   reader, or never end) is refused without blocking, with *why saying so; so is a file that
   does not open (*why: strerror). Fills *st when st is not NULL. */
FILE *clattn_open_regular_file(const char *path, struct stat *st, const char **why);

/* 64-bit hash (FNV-1a with a seed, then a final avalanche). */
uint64_t clattn_hash64(const void *data, size_t len, uint64_t seed);

#endif
