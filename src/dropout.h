/* Dropout: the threshold and kernel arguments shared by the host decision and the kernels. */
#ifndef CLATTN_DROPOUT_H
#define CLATTN_DROPOUT_H

#include <stdint.h>

#include "clattn.h"

/* ceil(p * 2^32) computed in double (0 for p <= 0); a key is kept iff Philox's first word is
   at least this. For p in [0, 1), the range the calls accept, it fits 32 bits; p >= 1 gives
   2^32 (nothing kept). */
uint64_t clattn_dropout_threshold(float p);

/* The dropout arguments of the kernels (cl/common.cl dropout_params): seed low and high words,
   offset low word, threshold; and keep_scale = 1 / (1 - p), 0 when dropout is off. */
void clattn_dropout_args(const clattn_attention_desc *desc, cl_uint words[4], cl_float *keep_scale);

#endif
