"""Bad input: the C library's refusals come back as clattn.Error with its status and message,
wrong Python types as TypeError naming the argument; the inputs are left as they were."""

import re

import numpy as np
import pytest

import clattn
from reference import random_qkv


def expect_error(status, message_part, call, *arrays):
    """call() raises clattn.Error with this status and a message containing message_part, and
    leaves arrays as they were."""
    before = [a.copy() for a in arrays]
    with pytest.raises(clattn.Error) as caught:
        call()
    assert caught.value.status == status
    assert message_part in caught.value.message
    assert str(caught.value) == f"{status}: {caught.value.message}"
    assert all(np.array_equal(a, b) for a, b in zip(arrays, before))


def test_the_c_library_refuses_bad_shapes_and_values(ctx, rng):
    q, k, v = random_qkv(rng)
    invalid = "CLATTN_ERROR_INVALID_ARGUMENT"
    _, k3, v3 = random_qkv(rng, heads_kv=3)
    expect_error(invalid, "k.dims[1]=3 does not divide", lambda: ctx.forward(q, k3, v3), q, k3)
    expect_error(invalid, "k.dims[2]", lambda: ctx.forward(q, k[:, :, :5], v), q, k, v)
    expect_error(invalid, "window_left=-5", lambda: ctx.forward(q, k, v, window=(-5, 1)), q)
    expect_error(invalid, "dropout_p", lambda: ctx.forward(q, k, v, dropout_p=1.0), q)
    expect_error(invalid, "bias", lambda: ctx.forward(q, k, v, bias=np.zeros((2, 4, 13, 5),
                                                                             np.float32)), q)
    expect_error("CLATTN_ERROR_BUFFER_TOO_SMALL", "seqlens_q holds 4 bytes",
                 lambda: ctx.forward(q, k, v, seqlens_q=np.array([3])), q)
    expect_error(invalid, "softcap=-1", lambda: ctx.plan(q, k, v, softcap=-1.0), q)
    expect_error(invalid, "q_start=-3", lambda: ctx.forward(q, k, v, q_start=-3), q)


def test_the_c_library_refuses_a_bad_backward(ctx, rng):
    q, k, v = random_qkv(rng)
    out, lse = ctx.forward(q, k, v)
    expect_error("CLATTN_ERROR_INVALID_ARGUMENT", "lse",
                 lambda: ctx.backward(q, k, v, out, out, lse[:, :, :4]), q, k, v, out, lse)


def test_an_unknown_device_is_not_found():
    expect_error("CLATTN_ERROR_DEVICE_NOT_FOUND", "no-such-device",
                 lambda: clattn.Context("no-such-device"))


@pytest.mark.parametrize("argument, call", [
    ("q", lambda ctx, q, k, v: ctx.forward(q.tolist(), k, v)),
    ("k", lambda ctx, q, k, v: ctx.forward(q, k.astype(np.float64), v)),
    ("v", lambda ctx, q, k, v: ctx.forward(q, k, v.astype(np.int32))),
    ("dout", lambda ctx, q, k, v: ctx.backward(q, k, v, q, "dout", q[..., 0])),
    ("bias", lambda ctx, q, k, v: ctx.forward(q, k, v, bias=[[0.0]])),
    ("causal", lambda ctx, q, k, v: ctx.forward(q, k, v, causal=1)),
    ("scale", lambda ctx, q, k, v: ctx.forward(q, k, v, scale="0.5")),
    ("align", lambda ctx, q, k, v: ctx.forward(q, k, v, align=1)),
    ("window", lambda ctx, q, k, v: ctx.forward(q, k, v, window=3)),
    ("window[1]", lambda ctx, q, k, v: ctx.forward(q, k, v, window=(3, 2.0))),
    ("softcap", lambda ctx, q, k, v: ctx.forward(q, k, v, softcap=None)),
    ("seqlens_q", lambda ctx, q, k, v: ctx.forward(q, k, v, seqlens_q=[13, 13])),
    ("seqlens_k", lambda ctx, q, k, v: ctx.forward(q, k, v, seqlens_k=np.ones(2))),
    ("dropout_p", lambda ctx, q, k, v: ctx.forward(q, k, v, dropout_p="0.1")),
    ("seed", lambda ctx, q, k, v: ctx.forward(q, k, v, seed=1.0)),
    ("algo", lambda ctx, q, k, v: ctx.forward(q, k, v, algo=None)),
    ("device", lambda ctx, q, k, v: clattn.Context(0)),
])
def test_a_wrong_python_type_is_a_type_error_naming_the_argument(ctx, rng, argument, call):
    with pytest.raises(TypeError, match="^" + re.escape(argument) + " must be"):
        call(ctx, *random_qkv(rng))


@pytest.mark.parametrize("argument, call", [
    ("q", lambda ctx, q, k, v: ctx.forward(q[0], k, v)),
    ("align", lambda ctx, q, k, v: ctx.forward(q, k, v, align="middle")),
    ("algo", lambda ctx, q, k, v: ctx.forward(q, k, v, algo="fastest")),
    ("seed", lambda ctx, q, k, v: ctx.forward(q, k, v, seed=-1)),
    ("scale", lambda ctx, q, k, v: ctx.forward(q, k, v, scale=0.0)),
])
def test_a_value_python_cannot_pass_is_a_value_error_naming_it(ctx, rng, argument, call):
    with pytest.raises(ValueError, match=rf"^{argument}"):
        call(ctx, *random_qkv(rng))


def test_a_closed_context_refuses_calls(rng):
    context = clattn.Context()
    context.close()
    context.close()
    with pytest.raises(ValueError, match="closed"):
        context.forward(*random_qkv(rng))
