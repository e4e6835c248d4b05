"""The backward against the float64 gradients of conftest.py's reference."""

import numpy as np
import pytest

from reference import (TOL_F16_GRAD, TOL_F32_GRAD, Reference, random_qkv, record,
                       relative_error)

# (group, shape of q, k, v as random_qkv takes it, keywords of the forward and backward)
CASES = [
    ("plain", {}, {}),
    ("multi-query", dict(heads_kv=1), {}),
    ("value dim", dict(dim_v=8), {}),
    ("scale", {}, dict(scale=0.3)),
    ("causal bottom_right", dict(rows=21, keys=13), dict(causal=True)),
    ("causal top_left", {}, dict(causal=True, align="top_left")),
    ("window", {}, dict(window=(3, 2))),
    ("softcap", {}, dict(softcap=1.5, scale=1.0, causal=True)),
    ("bias", {}, dict(bias=np.linspace(-2, 2, 4 * 13 * 21, dtype=np.float32)
                      .reshape(1, 4, 13, 21))),
    ("seqlens", {}, dict(seqlens_q=np.array([13, 6]), seqlens_k=np.array([9, 21]))),
    ("dropout", {}, dict(dropout_p=0.25, seed=5, offset=3, causal=True)),
    ("positions", {}, dict(causal=True, align="top_left", q_start=12, k_start=3,
                           dropout_p=0.25, seed=6)),
    ("sinks", {}, dict(sinks=np.linspace(-1, 2, 4, dtype=np.float32).reshape(1, 4, 1, 1),
                       causal=True)),
]


def check_backward(ctx, group, q, k, v, tolerance, **keywords):
    out, lse = ctx.forward(q, k, v, **keywords)
    dout = np.random.default_rng(7).standard_normal(out.shape).astype(q.dtype)
    gradients = ctx.backward(q, k, v, out, dout, lse, **keywords)
    wanted = Reference(q, k, v, **keywords).gradients(dout)
    for name, got, want, of in zip(("dq", "dk", "dv"), gradients, wanted, (q, k, v)):
        assert got.dtype == q.dtype and got.shape == of.shape, name
        error = record(f"backward {group}: {name}", relative_error(got, want), tolerance)
        assert error <= tolerance, name


@pytest.mark.parametrize("group, shape, keywords", CASES, ids=[c[0] for c in CASES])
def test_matches_reference(ctx, rng, group, shape, keywords):
    check_backward(ctx, group, *random_qkv(rng, **shape), TOL_F32_GRAD, **keywords)


def test_float16(ctx, rng):
    q, k, v = random_qkv(rng, dtype=np.float16)
    check_backward(ctx, "float16", q, k, v, TOL_F16_GRAD, causal=True)


def test_is_deterministic(ctx, rng):
    q, k, v = random_qkv(rng)
    out, lse = ctx.forward(q, k, v)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    first = ctx.backward(q, k, v, out, dout, lse)
    again = ctx.backward(q, k, v, out, dout, lse)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
