"""clattn: attention (scaled dot-product, grouped-query, forward and backward) on any OpenCL
device, through the C library's API (include/clattn.h) with numpy and pyopencl arrays.

    import clattn, numpy as np
    ctx = clattn.Context()
    q = np.random.rand(1, 4, 16, 32).astype(np.float32)
    out, lse = ctx.forward(q, q, q, causal=True)

See clattn.Context for the arrays and keywords.
"""

from ._context import Context
from . import _lib
from ._lib import Error, dropout_keep

__version__ = _lib.version_string().decode()

__all__ = ["Context", "Error", "dropout_keep"]
