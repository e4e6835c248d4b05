"""The forward against the float64 reference of conftest.py, one feature at a time."""

import numpy as np
import pytest

import clattn
from reference import (TOL_F16_OUT, TOL_F32_LSE, TOL_F32_OUT, Reference, lse_error,
                      random_qkv, record, relative_error)


def check_forward(ctx, group, q, k, v, tolerance=TOL_F32_OUT, **keywords):
    out, lse = ctx.forward(q, k, v, **keywords)
    definition = {name: value for name, value in keywords.items() if name != "algo"}
    reference = Reference(q, k, v, **definition)
    assert out.dtype == q.dtype and out.shape == reference.out.shape
    assert lse.dtype == np.float32 and lse.shape == reference.lse.shape
    out_error = record(f"forward {group}: out", relative_error(out, reference.out), tolerance)
    lse_error_ = record(f"forward {group}: lse", lse_error(lse, reference.lse), TOL_F32_LSE)
    assert out_error <= tolerance
    assert lse_error_ <= TOL_F32_LSE
    return out, lse


# (group, shape of q, k, v as random_qkv takes it, forward keywords)
CASES = [
    ("plain", {}, {}),
    ("multi-head", dict(heads_q=2, heads_kv=2), {}),
    ("multi-query", dict(heads_kv=1), {}),
    ("value dim", dict(dim_v=8), {}),
    ("scale", {}, dict(scale=0.3)),
    ("causal bottom_right", {}, dict(causal=True)),
    ("causal bottom_right", dict(rows=21, keys=13), dict(causal=True)),
    ("causal top_left", {}, dict(causal=True, align="top_left")),
    ("causal top_left", dict(rows=21, keys=13), dict(causal=True, align="top_left")),
    ("window", {}, dict(window=(3, 2))),
    ("window", {}, dict(window=(4, -1), causal=True)),
    ("window", {}, dict(window=(-1, 0), align="top_left")),
    ("softcap", {}, dict(softcap=1.5, scale=1.0)),
    ("positions", {}, dict(causal=True, align="top_left", q_start=15, k_start=4)),
    ("positions", {}, dict(window=(5, 1), q_start=3, k_start=9, dropout_p=0.25, seed=8)),
    ("sinks", {}, dict(sinks=np.array([0.5, -1.0, 3.0, 2.0], np.float32).reshape(1, 4, 1, 1),
                       causal=True, align="top_left")),
    ("sinks", dict(rows=21, keys=5), dict(sinks=np.full((1, 4, 1, 1), 1.5, np.float32),
                                          causal=True)),
    ("algo fused", {}, dict(algo="fused")),
    ("algo split_kv", dict(batch=1, heads_q=2, heads_kv=1, rows=1, keys=600),
     dict(algo="split_kv")),
]


@pytest.mark.parametrize("group, shape, keywords", CASES, ids=[c[0] for c in CASES])
def test_matches_reference(ctx, rng, group, shape, keywords):
    check_forward(ctx, group, *random_qkv(rng, **shape), **keywords)


def test_unfused_matches_reference(ctx, rng):
    q, k, v = random_qkv(rng)
    try:
        check_forward(ctx, "algo unfused", q, k, v, algo="unfused")
    except clattn.Error as error:
        if error.status != "CLATTN_ERROR_UNSUPPORTED":
            raise
        pytest.skip(f"the unfused path does not run here: {error.message}")


def test_float16(ctx, rng):
    q, k, v = random_qkv(rng, dtype=np.float16)
    check_forward(ctx, "float16", q, k, v, tolerance=TOL_F16_OUT, causal=True)


@pytest.mark.parametrize("bias_shape", [(2, 4, 13, 21), (1, 4, 1, 21), (2, 1, 13, 21)])
def test_bias(ctx, rng, bias_shape):
    q, k, v = random_qkv(rng)
    bias = rng.standard_normal(bias_shape).astype(np.float32)
    bias[..., 3] = -np.inf
    check_forward(ctx, "bias", q, k, v, bias=bias)


def test_bias_broadcast_by_zero_strides(ctx, rng):
    q, k, v = random_qkv(rng)
    row = rng.standard_normal(21).astype(np.float16)
    bias = np.broadcast_to(row, (2, 4, 13, 21))
    assert bias.strides[:3] == (0, 0, 0)
    check_forward(ctx, "bias", q, k, v, bias=bias, causal=True)


def test_bias_hiding_every_key_of_a_row(ctx, rng):
    q, k, v = random_qkv(rng)
    bias = np.zeros((1, 1, 13, 21), np.float32)
    bias[0, 0, 5] = -np.inf
    out, lse = check_forward(ctx, "bias", q, k, v, bias=bias)
    assert np.all(out[:, :, 5] == 0) and np.all(np.isneginf(lse[:, :, 5]))


def test_seqlens(ctx, rng):
    q, k, v = random_qkv(rng)
    seqlens_q = np.array([13, 6], np.int32)
    seqlens_k = np.array([9, 21], np.int64)
    out, lse = check_forward(ctx, "seqlens", q, k, v, seqlens_q=seqlens_q, seqlens_k=seqlens_k,
                             causal=True)
    assert np.all(out[1, :, 6:] == 0) and np.all(np.isneginf(lse[1, :, 6:]))


def test_strided_views(ctx, rng):
    """q and k as [B, S, H, D] arrays viewed [B, H, S, D] (read in place, with their strides),
    v reversed along its keys (a negative stride: copied first)."""
    q_bshd = rng.standard_normal((2, 13, 4, 16)).astype(np.float32)
    k_bshd = rng.standard_normal((2, 21, 2, 16)).astype(np.float32)
    v = rng.standard_normal((2, 2, 21, 16)).astype(np.float32)[:, :, ::-1]
    check_forward(ctx, "strided views", q_bshd.transpose(0, 2, 1, 3),
                  k_bshd.transpose(0, 2, 1, 3), v, causal=True)


def test_dropout_matches_reference_with_clattn_dropout_keep(ctx, rng):
    q, k, v = random_qkv(rng)
    check_forward(ctx, "dropout", q, k, v, dropout_p=0.25, seed=1234, offset=7, causal=True)


def test_dropout_is_reproducible_and_follows_the_seed(ctx, rng):
    q, k, v = random_qkv(rng)
    first, first_lse = ctx.forward(q, k, v, dropout_p=0.25, seed=99)
    again, again_lse = ctx.forward(q, k, v, dropout_p=0.25, seed=99)
    other_seed, _ = ctx.forward(q, k, v, dropout_p=0.25, seed=100)
    other_offset, _ = ctx.forward(q, k, v, dropout_p=0.25, seed=99, offset=1)
    without, without_lse = ctx.forward(q, k, v)
    assert np.array_equal(first, again) and np.array_equal(first_lse, again_lse)
    assert not np.array_equal(first, other_seed)
    assert not np.array_equal(first, other_offset)
    assert not np.array_equal(first, without)
    assert np.array_equal(first_lse, without_lse)  # lse is before dropout


def test_plan_names_the_algorithm(ctx, rng):
    q, k, v = random_qkv(rng)
    assert ctx.plan(q, k, v, algo="fused").split()[0] == "fused"
    decode = random_qkv(rng, batch=1, heads_q=2, heads_kv=1, rows=1, keys=600)
    assert ctx.plan(*decode, algo="split_kv").split()[0] == "split_kv"
