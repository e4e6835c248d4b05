"""The float64 reference of attention and its gradients in numpy, the error measures and the
tolerances of the tests, and a record of the worst error of each group of checks."""

import math

import numpy as np

import clattn

# The C suite's tolerances (tests/common.h): f32 arithmetic against the f64 definition, plus
# half an ulp (with margin) of a result stored in float16, plus, for gradients, float16's
# rounding of out and dout.
TOL_F32_OUT = 2e-5
TOL_F32_LSE = 2e-5
TOL_F32_GRAD = 2e-5
TOL_F16_STORE = 1e-3
TOL_F16_OUT = TOL_F32_OUT + TOL_F16_STORE
TOL_F16_GRAD = TOL_F32_GRAD + TOL_F16_STORE + TOL_F16_STORE

worst = {}


def record(group, error, tolerance):
    """Keep the worst error of a group of checks for the session's summary; return error."""
    previous = worst.get(group, (0.0, tolerance))
    worst[group] = (max(previous[0], error), tolerance)
    return error


def random_qkv(rng, batch=2, heads_q=4, heads_kv=2, rows=13, keys=21, dim=16, dim_v=16,
               dtype=np.float32):
    q = rng.standard_normal((batch, heads_q, rows, dim)).astype(dtype)
    k = rng.standard_normal((batch, heads_kv, keys, dim)).astype(dtype)
    v = rng.standard_normal((batch, heads_kv, keys, dim_v)).astype(dtype)
    return q, k, v


def relative_error(got, want):
    """max |got - want| / max |want| (floor 1e-6) over the whole array, as the C suite
    measures gradients; -inf must match exactly."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    infinite = np.isinf(want)
    assert np.array_equal(np.isinf(got), infinite), "infinities differ"
    assert np.array_equal(got[infinite], want[infinite]), "infinities differ"
    difference = np.abs(got[~infinite] - want[~infinite])
    scale = max(np.abs(want[~infinite]).max(initial=0.0), 1e-6)
    return difference.max(initial=0.0) / scale


def lse_error(got, want):
    """max |got - want| / max(1, |want|), as the C suite measures lse; -inf must match."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    infinite = np.isinf(want)
    assert np.array_equal(got[infinite], want[infinite]), "infinities differ"
    finite = ~infinite
    return (np.abs(got[finite] - want[finite]) / np.maximum(1.0, np.abs(want[finite]))).max(
        initial=0.0)


def visible(batch, heads, rows, keys, causal=False, align="bottom_right", window=(-1, -1),
            seqlens_q=None, seqlens_k=None, q_start=0, k_start=0):
    """Boolean [B, H, Sq, Sk]: key j visible to query row i, as include/clattn.h defines it
    (rows past seqlens_q see nothing; the rules compare positions q_start + i, k_start + j)."""
    mask = np.zeros((batch, heads, rows, keys), bool)
    i = q_start + np.arange(rows)[:, None]
    j = k_start + np.arange(keys)[None, :]
    for b in range(batch):
        valid_rows = rows if seqlens_q is None else int(seqlens_q[b])
        valid_keys = keys if seqlens_k is None else int(seqlens_k[b])
        diagonal = i + (valid_keys - valid_rows if align == "bottom_right" else 0)
        seen = (j < k_start + valid_keys) & (i < q_start + valid_rows)
        if causal:
            seen &= j <= diagonal
        if window[0] >= 0:
            seen &= j >= diagonal - window[0]
        if window[1] >= 0:
            seen &= j <= diagonal + window[1]
        mask[b] = seen
    return mask


def dropout_mask(seed, offset, p, shape, q_start=0, k_start=0):
    """[B, H, Sq, Sk] of 1/(1-p) where clattn_dropout_keep keeps the weight at the positions
    q_start + i, k_start + j, else 0."""
    keep = np.zeros(shape)
    batch, heads, rows, keys = shape
    for b, h, i, j in np.ndindex(*shape):
        keep[b, h, i, j] = clattn.dropout_keep(seed, offset, b, h, heads, q_start + i,
                                               k_start + j, p)
    return keep / (1.0 - p)


class Reference:
    """Attention in float64 on the given (already rounded) inputs: out, lse and, from dout,
    the gradients, following include/clattn.h's definition."""

    def __init__(self, q, k, v, causal=False, scale=None, align="bottom_right",
                 window=(-1, -1), softcap=0.0, bias=None, seqlens_q=None, seqlens_k=None,
                 dropout_p=0.0, seed=0, offset=0, q_start=0, k_start=0, sinks=None):
        q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
        batch, heads, rows, dim = q.shape
        group = heads // k.shape[1]
        self.q, self.group = q, group
        self.k, self.v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        self.scale = 1.0 / math.sqrt(dim) if scale is None else scale
        self.softcap = softcap
        x = np.einsum("bhid,bhjd->bhij", q, self.k) * self.scale
        self.tanh = np.tanh(x / softcap) if softcap else None
        s = softcap * self.tanh if softcap else x
        if bias is not None:
            s = s + np.asarray(bias, np.float64)
        seen = visible(batch, heads, rows, self.k.shape[2], causal, align, window, seqlens_q,
                       seqlens_k, q_start, k_start)
        s = np.where(seen, s, -np.inf)
        # a sink joins each row's denominator as a key with no value (padding rows: none)
        sink = np.full(s.shape[:3] + (1,), -np.inf)
        if sinks is not None:
            rows_seen = rows if seqlens_q is None else np.asarray(seqlens_q).reshape(-1, 1, 1, 1)
            live = np.arange(rows).reshape(1, 1, -1, 1) < rows_seen
            sink = np.where(live, np.asarray(sinks, np.float64).reshape(1, -1, 1, 1), -np.inf)
        row_max = np.maximum(s.max(axis=-1, keepdims=True), sink)
        empty = np.isneginf(row_max)
        shift = np.where(empty, 0.0, row_max)
        weights = np.where(empty, 0.0, np.exp(s - shift))
        total = weights.sum(axis=-1, keepdims=True) + np.where(empty, 0.0, np.exp(sink - shift))
        self.p = np.where(empty, 0.0, weights / np.where(empty, 1.0, total))
        self.lse = np.where(empty, -np.inf, row_max + np.log(np.where(empty, 1.0, total)))[..., 0]
        self.drop = (dropout_mask(seed, offset, dropout_p, s.shape, q_start, k_start)
                     if dropout_p else 1.0)
        self.out = np.einsum("bhij,bhjd->bhid", self.p * self.drop, self.v)

    def _sum_groups(self, x):
        batch, heads = x.shape[:2]
        return x.reshape(batch, heads // self.group, self.group, *x.shape[2:]).sum(axis=2)

    def gradients(self, dout):
        dout = np.asarray(dout, np.float64)
        dv = np.einsum("bhij,bhid->bhjd", self.p * self.drop, dout)
        dp = np.einsum("bhid,bhjd->bhij", dout, self.v) * self.drop
        ds = self.p * (dp - (self.p * dp).sum(axis=-1, keepdims=True))
        if self.softcap:
            ds = ds * (1.0 - self.tanh ** 2)
        dq = np.einsum("bhij,bhjd->bhid", ds, self.k) * self.scale
        dk = np.einsum("bhij,bhid->bhjd", ds, self.q) * self.scale
        return dq, self._sum_groups(dk), self._sum_groups(dv)
