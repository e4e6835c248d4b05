/*
 * The f64 CPU reference of clattn's attention forward and backward: plain loops in double precision with a
 * max-subtracted softmax, written straight from docs/semantics.md ("Scores", "Which keys a row
 * sees", "Softmax, lse and empty rows", "Dropout", "Backward", "Precise rules"). Tests compare
 * the library against it; tests/test_reference.c checks it by hand.
 *
 * It needs no device: it only borrows the enum values of clattn.h (CLATTN_ALIGN_*).
 */
#ifndef CLATTN_TEST_REFERENCE_H
#define CLATTN_TEST_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "clattn.h"

/* A strided view of host doubles in logical order [batch, heads, seq, dim]: element [b,h,s,d]
   is data[b*strides[0] + h*strides[1] + s*strides[2] + d*strides[3]] (strides in elements, any
   sign, 0 to broadcast). Inputs are only read; outputs are written only at view elements. */
typedef struct ref_tensor {
    double *data;
    int64_t dims[4];
    int64_t strides[4];
} ref_tensor;

/* A dense [b, h, s, d] view of data (which must hold b*h*s*d doubles). */
ref_tensor ref_tensor_dense(double *data, int64_t b, int64_t h, int64_t s, int64_t d);

/* Address of element [b,h,s,d] of t. */
double *ref_at(const ref_tensor *t, int64_t b, int64_t h, int64_t s, int64_t d);

/* Element count b*h*s*d of a view's dims. */
int64_t ref_numel(const ref_tensor *t);

/* What to compute; the fields mirror clattn_attention_desc. */
typedef struct ref_params {
    double  scale;              /* 0: 1/sqrt(D) with D = q.dims[3] */
    int     causal;             /* 0 or 1 */
    int     align;              /* CLATTN_ALIGN_BOTTOM_RIGHT or CLATTN_ALIGN_TOP_LEFT */
    int64_t window_left;        /* -1: unbounded */
    int64_t window_right;       /* -1: unbounded */
    double  softcap;            /* 0: off; else s = softcap * tanh(s / softcap) */
    const ref_tensor *bias;     /* NULL or [B|1, Hq|1, Sq|1, Sk]; a dim of 1 broadcasts */
    const int32_t *seqlens_q;   /* NULL or [B] valid query rows per batch */
    const int32_t *seqlens_k;   /* NULL or [B] valid keys per batch */
    double  dropout_p;          /* [0, 1); 0: off */
    uint64_t dropout_seed;
    uint64_t dropout_offset;
    int64_t q_start, k_start;   /* positions of query row 0 and key 0 (masks and dropout) */
    const double *sinks;        /* NULL or [Hq]: exp(sinks[h]) joins each denominator of head
                                   h; a row with no visible key gets out 0 and lse sinks[h] */
} ref_params;

/* The defaults of clattn_attention_desc_init: scale 0, not causal, BOTTOM_RIGHT, windows -1,
   no softcap, bias, seqlens or dropout, positions from 0, no sinks. */
void ref_params_init(ref_params *p);

/* The valid lengths of batch b: seqlens entries when given, else the dims. */
int64_t ref_seq_q(const ref_params *p, int64_t b, int64_t sq);
int64_t ref_seq_k(const ref_params *p, int64_t b, int64_t sk);

/* 1 if key j is visible to query i of a batch whose valid lengths are sq_b, sk_b: i < sq_b,
   j < sk_b, and the causal and window rules between the positions k_start + j and
   q_start + i + off, off = sk_b - sq_b (BOTTOM_RIGHT) or 0. */
int ref_key_visible(const ref_params *p, int64_t sq_b, int64_t sk_b, int64_t i, int64_t j);

/* Visible (i, j) pairs summed over b < batch and h < heads_q (the "pairs" of the FLOP count
   2*pairs*(D+Dv)); a batch whose seqlens entry is outside [0, dim] counts 0. Bias is ignored. */
int64_t ref_visible_pairs(const ref_params *p, int64_t batch, int64_t heads_q,
                          int64_t seq_q, int64_t seq_k);

/* Philox4x32-10 (Salmon et al. 2011) of counter ctr under key; writes the four output words. */
void ref_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* The dropout decision (docs/semantics.md "Dropout"): 1 if key j of query i, batch b, query
   head h is kept. */
int ref_dropout_keep(uint64_t seed, uint64_t offset, int64_t b, int64_t h, int64_t heads_q,
                     int64_t i, int64_t j, double p);

/* The forward: q [B,Hq,Sq,D], k [B,Hkv,Sk,D], v [B,Hkv,Sk,Dv] -> out [B,Hq,Sq,Dv] and, when lse
   is not NULL, lse [B,Hq,Sq,1] (natural log of the sum of exp(score) over visible keys, before
   dropout). Query head h reads kv head h / (Hq / Hkv). Rows with no visible key (or whose
   visible scores are all -INFINITY), and rows i >= seqlens_q[b], get out = 0 and
   lse = -INFINITY; a batch whose seqlens entry is outside [0, dim] gets NaN. Invisible keys are
   never read. Returns 0, or -1 (writing nothing) when the shapes do not fit together. */
int ref_attention_forward(const ref_params *p, const ref_tensor *q, const ref_tensor *k,
                          const ref_tensor *v, const ref_tensor *out, const ref_tensor *lse);

/* The backward: the exact gradients, in double, of L = sum over b, h, i, d of
   out[b,h,i,d] * dout[b,h,i,d], where out is ref_attention_forward's output for the same p, q,
   k, v. Shapes: dout like out [B,Hq,Sq,Dv]; dq like q, dk like k, dv like v; dbias NULL or the
   dims of p->bias (which must then be given). With s_ij the score of docs/semantics.md
   (t = scale * q_i . k_j, s = softcap * tanh(t / softcap) when softcap > 0, else t, plus bias),
   P_ij the softmax of s over the keys that take part in row i (visible and s != -INFINITY),
   before dropout, and w_ij = 1 without dropout, else ref_dropout_keep(...) / (1 - dropout_p)
   (the mask is a constant of the call), so that out_i = sum_j P_ij w_ij v_j, it computes per
   query head h and valid row i:
     dP_ij    = w_ij * (dout_i . v_j)
     delta_i  = sum_j P_ij dP_ij                       (= dout_i . out_i)
     dS_ij    = P_ij * (dP_ij - delta_i)               (dL/ds_ij; dbias[ij] += dS_ij)
     dT_ij    = dS_ij * (1 - tanh^2(t_ij / softcap))   (softcap; else dT = dS)
     dq_i    += scale * dT_ij * k_j
     dk_j    += scale * dT_ij * q_i                    (into kv head h / (Hq / Hkv))
     dv_j    += P_ij * w_ij * dout_i                   (into kv head h / (Hq / Hkv))
   So dk and dv sum over the query heads of each group, and dbias sums over its broadcast dims
   (dim of 1): it is the gradient with respect to the elements of the bias view. Every element
   of dq, dk, dv (and dbias) is written: 0 where nothing contributes, namely padding rows
   i >= seqlens_q[b], keys j >= seqlens_k[b], invisible or -INFINITY-scored pairs, and rows with
   no key taking part (their out is the constant 0). dout is read only for rows with a key
   taking part; invisible keys are never read. A batch whose seqlens entry is outside [0, dim]
   (forward output NaN) gets NaN in all of its dq, dk and dv, and adds NaN to every dbias
   element it reads. NaN inputs propagate as the arithmetic does. Returns 0, or -1 (writing
   nothing) when the shapes do not fit or memory runs out. */
int ref_attention_backward(const ref_params *p, const ref_tensor *q, const ref_tensor *k,
                           const ref_tensor *v, const ref_tensor *dout, const ref_tensor *dq,
                           const ref_tensor *dk, const ref_tensor *dv,
                           const ref_tensor *dbias);

#endif
