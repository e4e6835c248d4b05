/*
 * semantics.h — the arithmetic of the semantics that the host and the kernels must compute
 * alike, defined once for both (C99 that is also OpenCL C; after launch.h in every program):
 * which keys a query row sees (docs/semantics.md "Which keys a row sees") and the dropout
 * decision (docs/semantics.md "Dropout"). The kernels mask and drop with these functions; the
 * host uses the same ones to bound the keys of a chunk of the unfused path (src/unfused.c) and
 * for clattn_dropout_keep (src/dropout.c).
 */
#ifndef CLATTN_SEMANTICS_H
#define CLATTN_SEMANTICS_H

/* ---- the mask ------------------------------------------------------------------------------ */

/* The mask of one batch. With seq_q, seq_k its valid lengths and off = seq_k - seq_q
   (bottom-right alignment) or 0 (top-left), plus q_start - k_start (positions: key j is at
   k_start + j, row i at q_start + i): key j is visible to query row i iff i < seq_q,
   j < seq_k, causal => j <= i + off, window_left >= 0 => j >= i + off - window_left,
   window_right >= 0 => j <= i + off + window_right. For rows i < seq_q the visible keys form
   the interval [clattn_visible_lo(i), clattn_visible_hi(i)], both ends non-decreasing in i. */
typedef struct clattn_mask {
    clattn_i64 seq_q, seq_k;
    clattn_i64 off;
    clattn_i64 window_left, window_right;  /* -1: unbounded */
    clattn_i32 causal;
} clattn_mask;

CLATTN_SHARED clattn_i64 clattn_min_i64(clattn_i64 a, clattn_i64 b)
{
    return a < b ? a : b;
}

CLATTN_SHARED clattn_i64 clattn_max_i64(clattn_i64 a, clattn_i64 b)
{
    return a > b ? a : b;
}

/* *m: the mask of a batch whose valid lengths are seq_q and seq_k. (Kernel helpers fill
   structs through pointers rather than return them: oclgrind 21.10 cannot run the code LLVM
   makes when it inlines a function that returns a struct.) */
CLATTN_SHARED void clattn_mask_init(clattn_mask *m, const clattn_attention_params *a,
                                    clattn_i64 seq_q, clattn_i64 seq_k)
{
    m->seq_q = seq_q;
    m->seq_k = seq_k;
    m->off = ((a->flags & ATTENTION_BOTTOM_RIGHT) ? seq_k - seq_q : 0) + a->start_shift;
    m->window_left = a->window_left;
    m->window_right = a->window_right;
    m->causal = (a->flags & ATTENTION_CAUSAL) != 0;
}

/* First visible key of row i, clamped to [0, seq_k]. */
CLATTN_SHARED clattn_i64 clattn_visible_lo(const clattn_mask *m, clattn_i64 i)
{
    clattn_i64 lo = 0;
    if (m->window_left >= 0)
        lo = clattn_max_i64(lo, i + m->off - m->window_left);
    return clattn_min_i64(lo, m->seq_k);
}

/* Last visible key of row i, clamped to [-1, seq_k - 1]; -1 for rows i >= seq_q. */
CLATTN_SHARED clattn_i64 clattn_visible_hi(const clattn_mask *m, clattn_i64 i)
{
    clattn_i64 hi = i < m->seq_q ? m->seq_k - 1 : -1;
    if (m->causal)
        hi = clattn_min_i64(hi, i + m->off);
    if (m->window_right >= 0)
        hi = clattn_min_i64(hi, i + m->off + m->window_right);
    return clattn_max_i64(hi, -1);
}

/* The same mask seen from key j (the backward): the query rows that see key j form the
   interval [clattn_seeing_lo(j), clattn_seeing_hi(j)], both ends non-decreasing in j. First
   one, clamped to [0, seq_q]: */
CLATTN_SHARED clattn_i64 clattn_seeing_lo(const clattn_mask *m, clattn_i64 j)
{
    clattn_i64 lo = 0;
    if (m->causal)
        lo = clattn_max_i64(lo, j - m->off);
    if (m->window_right >= 0)
        lo = clattn_max_i64(lo, j - m->off - m->window_right);
    return clattn_min_i64(lo, m->seq_q);
}

/* Last query row that sees key j, clamped to [-1, seq_q - 1]; -1 for keys j >= seq_k. */
CLATTN_SHARED clattn_i64 clattn_seeing_hi(const clattn_mask *m, clattn_i64 j)
{
    clattn_i64 hi = j < m->seq_k ? m->seq_q - 1 : -1;
    if (m->window_left >= 0)
        hi = clattn_min_i64(hi, j - m->off + m->window_left);
    return clattn_max_i64(hi, -1);
}

/* ---- dropout ------------------------------------------------------------------------------- */

/* The first output word of Philox4x32-10 (Salmon et al. 2011, 10 rounds) for counter
   (c0, c1, c2, c3) and key (k0, k1). Known answer: counter 0, key 0 gives 0x6627e8d5. */
CLATTN_SHARED clattn_u32 clattn_philox4x32_10_x0(clattn_u32 c0, clattn_u32 c1, clattn_u32 c2,
                                                 clattn_u32 c3, clattn_u32 k0, clattn_u32 k1)
{
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        const clattn_u64 p0 = (clattn_u64)0xD2511F53u * c0, p1 = (clattn_u64)0xCD9E8D57u * c2;
        const clattn_u32 next0 = (clattn_u32)(p1 >> 32) ^ c1 ^ k0;
        const clattn_u32 next2 = (clattn_u32)(p0 >> 32) ^ c3 ^ k1;
        c1 = (clattn_u32)p1;
        c3 = (clattn_u32)p0;
        c0 = next0;
        c2 = next2;
    }
    return c0;
}

/* 1 when key j of query row i of head bh = b * heads_q + h is kept: Philox's first word for
   key (seed_lo, seed_hi) and counter (k_start + j, q_start + i, bh, offset_lo), each counter
   word the low 32 bits of its value, reaches the threshold ceil(p * 2^32) that the host
   computed. */
CLATTN_SHARED int clattn_dropout_kept(const clattn_dropout_params *d, clattn_i64 bh,
                                      clattn_i64 i, clattn_i64 j)
{
    return clattn_philox4x32_10_x0((clattn_u32)j + d->k_start_lo, (clattn_u32)i + d->q_start_lo,
                                   (clattn_u32)bh, d->offset_lo, d->seed_lo,
                                   d->seed_hi) >= d->threshold;
}

#endif
