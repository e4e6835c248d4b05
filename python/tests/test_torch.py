"""clattn against torch.nn.functional.scaled_dot_product_attention, computed by torch in
float64 on the same (rounded) inputs: out and, through autograd, dq, dk, dv."""

import numpy as np
import pytest

from reference import (TOL_F16_GRAD, TOL_F16_OUT, TOL_F32_GRAD, TOL_F32_OUT, random_qkv,
                       record, relative_error)

torch = pytest.importorskip(
    "torch", reason="torch is not installed: no comparison with its scaled_dot_product_attention")


def torch_attention(q, k, v, dout, causal=False, scale=None, bias=None):
    """out, dq, dk, dv of torch's attention in float64. Its is_causal aligns the mask top-left
    (query row i sees keys j <= i), clattn's align="top_left"."""
    q, k, v = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (q, k, v))
    mask = None if bias is None else torch.tensor(bias, dtype=torch.float64)
    out = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=causal, scale=scale, enable_gqa=True)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return [x.detach().numpy() for x in (out, q.grad, k.grad, v.grad)]


# (group, shape of q, k, v as random_qkv takes it, keywords of torch_attention)
CASES = [
    ("grouped-query", {}, {}),
    ("multi-query", dict(heads_kv=1), {}),
    ("causal", {}, dict(causal=True)),
    ("causal", dict(rows=21, keys=13), dict(causal=True)),
    ("scale", {}, dict(scale=0.3)),
    ("attn_mask", {}, dict(bias=np.linspace(-3, 1, 4 * 21, dtype=np.float32)
                           .reshape(1, 4, 1, 21))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("group, shape, keywords", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(ctx, rng, group, shape, keywords, dtype):
    q, k, v = random_qkv(rng, dtype=dtype, **shape)
    align = "top_left" if keywords.get("causal") else "bottom_right"
    out, lse = ctx.forward(q, k, v, align=align, **keywords)
    dout = rng.standard_normal(out.shape).astype(dtype)
    gradients = ctx.backward(q, k, v, out, dout, lse, align=align, **keywords)
    wanted = torch_attention(q, k, v, dout, **keywords)
    f16 = dtype == np.float16
    tolerances = [TOL_F16_OUT if f16 else TOL_F32_OUT] + [TOL_F16_GRAD if f16 else TOL_F32_GRAD]*3
    for name, got, want, tolerance in zip(("out", "dq", "dk", "dv"), (out, *gradients), wanted,
                                          tolerances):
        label = f"torch {group} {np.dtype(dtype).name}: {name}"
        assert record(label, relative_error(got, want), tolerance) <= tolerance, name
