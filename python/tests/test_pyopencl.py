"""pyopencl arrays: a context on pyopencl's queue reads them in place and leaves its results on
the device as pyopencl arrays."""

import numpy as np
import pytest

import clattn
from reference import (TOL_F32_GRAD, TOL_F32_LSE, TOL_F32_OUT, Reference, lse_error,
                       random_qkv, record, relative_error)

cl = pytest.importorskip("pyopencl", reason="pyopencl is not installed")
cl_array = pytest.importorskip("pyopencl.array", reason="pyopencl is not installed")


@pytest.fixture(scope="module")
def queue(ctx):
    """A pyopencl queue on the device of the session's context."""
    for platform in cl.get_platforms():
        for device in platform.get_devices():
            if device.name == ctx.device_name:
                return cl.CommandQueue(cl.Context([device]))
    pytest.skip(f"pyopencl does not list the device {ctx.device_name!r}")


@pytest.fixture(scope="module")
def queue_ctx(queue):
    with clattn.Context.from_queue(queue) as context:
        yield context


def test_forward_and_backward_stay_on_the_device(queue, queue_ctx, rng):
    q, k, v = random_qkv(rng)
    # q as a [B, S, H, D] array on the device viewed [B, H, S, D]: read with its strides
    q_bshd = cl_array.to_device(queue, np.ascontiguousarray(q.transpose(0, 2, 1, 3)))
    q_view = q_bshd.transpose((0, 2, 1, 3))
    k_device, v_device = cl_array.to_device(queue, k), cl_array.to_device(queue, v)
    out, lse = queue_ctx.forward(q_view, k_device, v_device, causal=True)
    assert isinstance(out, cl_array.Array) and isinstance(lse, cl_array.Array)
    dout = rng.standard_normal(out.shape).astype(np.float32)
    gradients = queue_ctx.backward(q_view, k_device, v_device, out,
                                   cl_array.to_device(queue, dout), lse, causal=True)
    assert all(isinstance(g, cl_array.Array) for g in gradients)
    reference = Reference(q, k, v, causal=True)
    checks = [("out", out, reference.out, TOL_F32_OUT)] + [
        (name, got, want, TOL_F32_GRAD)
        for name, got, want in zip(("dq", "dk", "dv"), gradients, reference.gradients(dout))]
    for name, got, want, tolerance in checks:
        error = record(f"pyopencl: {name}", relative_error(got.get(), want), tolerance)
        assert error <= tolerance, name
    assert record("pyopencl: lse", lse_error(lse.get(), reference.lse),
                  TOL_F32_LSE) <= TOL_F32_LSE


def test_seqlens_on_the_device(queue, queue_ctx, rng):
    q, k, v = random_qkv(rng)
    seqlens_q, seqlens_k = np.array([13, 6], np.int32), np.array([9, 21], np.int32)
    out, lse = queue_ctx.forward(*(cl_array.to_device(queue, x) for x in (q, k, v)),
                                 seqlens_q=cl_array.to_device(queue, seqlens_q),
                                 seqlens_k=cl_array.to_device(queue, seqlens_k))
    reference = Reference(q, k, v, seqlens_q=seqlens_q, seqlens_k=seqlens_k)
    error = record("pyopencl: out", relative_error(out.get(), reference.out), TOL_F32_OUT)
    assert error <= TOL_F32_OUT
    assert record("pyopencl: lse", lse_error(lse.get(), reference.lse),
                  TOL_F32_LSE) <= TOL_F32_LSE


def test_numpy_arrays_on_a_queue_context_come_back_as_numpy(queue_ctx, rng):
    q, k, v = random_qkv(rng)
    out, lse = queue_ctx.forward(q, k, v)
    assert isinstance(out, np.ndarray) and isinstance(lse, np.ndarray)
    error = record("pyopencl: out", relative_error(out, Reference(q, k, v).out), TOL_F32_OUT)
    assert error <= TOL_F32_OUT


def test_arrays_of_another_queue_are_refused(ctx, queue, rng):
    q, k, v = (cl_array.to_device(queue, x) for x in random_qkv(rng))
    with pytest.raises(ValueError, match="^q is a pyopencl array on another queue"):
        ctx.forward(q, k, v)
