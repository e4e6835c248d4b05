/* Dropout on the host: the threshold and the kernels' dropout words (the decision itself is
   cl/semantics.h's clattn_dropout_kept, shared with the kernels). */
#ifndef CLATTN_DROPOUT_H
#define CLATTN_DROPOUT_H

#include <stdint.h>

#include "launch.h"

/* ceil(p * 2^32) computed in double (0 for p <= 0); a key is kept iff Philox's first word is
   at least this. For p in [0, 1), the range the calls accept, it fits 32 bits; p >= 1 gives
   2^32 (nothing kept). */
uint64_t clattn_dropout_threshold(float p);

/* The dropout words of the kernels (launch.h clattn_dropout_params) for desc: seed low and
   high words, the offset's low word, the threshold, and keep_scale = 1 / (1 - p), 0 when
   dropout is off. */
clattn_dropout_params clattn_dropout_params_of(const clattn_attention_desc *desc);

#endif
