"""numpy and pyopencl arrays as clattn_tensor views: inputs, outputs and the buffers of one
call, which live until its results are read back."""

import sys

import numpy as np

from . import _lib
from ._opencl import Buffer

_DTYPES = {np.dtype(np.float32): _lib.DTYPE_F32, np.dtype(np.float16): _lib.DTYPE_F16}


def _pyopencl_array_type():
    """pyopencl.array.Array if the caller has imported pyopencl (no array can be one else)."""
    module = sys.modules.get("pyopencl.array")
    return module.Array if module is not None else None


def is_pyopencl_array(value):
    array_type = _pyopencl_array_type()
    return array_type is not None and isinstance(value, array_type)


def _tensor(buffer, offset, dtype, dims, strides):
    tensor = _lib.Tensor(buffer, offset, dtype)
    tensor.dims[:] = dims
    tensor.strides[:] = strides
    return tensor


def _dense_strides(dims):
    strides = [1, 1, 1, 1]
    for axis in (2, 1, 0):
        strides[axis] = strides[axis + 1] * dims[axis + 1]
    return strides


def _numpy_view(array):
    """(array, strides in elements) such that the C API reads array through them: array's own
    memory when its strides fit the API (non-negative whole elements, the last one 1), else a
    C-contiguous copy. Axes of length 1 get stride 0 (1 for the last)."""
    item = array.itemsize
    strides = [0 if n <= 1 else s for n, s in zip(array.shape, array.strides)]
    if (array.shape[3] > 1 and strides[3] != item) or any(s < 0 or s % item for s in strides):
        array = np.ascontiguousarray(array)
        strides = [0 if n <= 1 else s for n, s in zip(array.shape, array.strides)]
    strides = [s // item for s in strides[:3]] + [1]
    return array, strides


class Call:
    """The device side of one clattn call on context (a clattn._context.Context), used as a
    with block: leaving it releases the buffers it made."""

    def __init__(self, context):
        self.context = context
        self._buffers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        for buffer in self._buffers:
            buffer.release()

    def _upload(self, array, size):
        buffer = Buffer(self.context.cl_context, size, array.ctypes.data)
        self._buffers.append(buffer)
        return buffer.handle

    def _check_pyopencl(self, name, array):
        if array.queue is None or array.queue.int_ptr != self.context.queue:
            raise ValueError(f"{name} is a pyopencl array on another queue than the context's: "
                             "make the context with clattn.Context.from_queue(that queue)")

    def input(self, name, array, ndim=4):
        """A tensor viewing array (float32 or float16, ndim axes, a trailing axis of 1 added
        when ndim is 3): a pyopencl array in place, a numpy array copied to a buffer."""
        on_device = is_pyopencl_array(array)
        if not on_device and not isinstance(array, np.ndarray):
            raise TypeError(f"{name} must be a numpy or pyopencl array, not "
                            f"{type(array).__name__}")
        if array.dtype not in _DTYPES:
            raise TypeError(f"{name} must be float32 or float16, not {array.dtype}")
        if array.ndim != ndim:
            raise ValueError(f"{name} must have {ndim} axes, not {array.ndim} "
                             f"(shape {tuple(array.shape)})")
        dims = list(array.shape) + [1] * (4 - ndim)
        if on_device:
            self._check_pyopencl(name, array)
            strides = [s // array.dtype.itemsize for s in array.strides] + [1] * (4 - ndim)
            return _tensor(array.base_data.int_ptr if array.base_data else None, array.offset,
                           _DTYPES[array.dtype], dims, strides)
        array, strides = _numpy_view(array.reshape(dims))
        span = 0 if array.size == 0 else array.itemsize * (
            1 + sum((n - 1) * s for n, s in zip(array.shape, strides)))
        return _tensor(self._upload(array, span), 0, _DTYPES[array.dtype], dims, strides)

    def seqlens(self, name, lengths):
        """The cl_mem of lengths (None: NULL): a numpy integer vector copied as int32, or a
        pyopencl int32 array without offset used in place."""
        if lengths is None:
            return None
        if is_pyopencl_array(lengths):
            self._check_pyopencl(name, lengths)
            if lengths.dtype != np.int32:
                raise TypeError(f"{name} must be int32 as a pyopencl array, not {lengths.dtype}")
            if lengths.offset != 0:
                raise ValueError(f"{name} must start its buffer (offset 0) as a pyopencl array")
            return lengths.base_data.int_ptr if lengths.base_data else None
        if not isinstance(lengths, np.ndarray) or lengths.dtype.kind not in "iu":
            raise TypeError(f"{name} must be a numpy integer array, not {type(lengths).__name__}"
                            + (f" of {lengths.dtype}" if isinstance(lengths, np.ndarray) else ""))
        lengths = np.ascontiguousarray(lengths, dtype=np.int32)
        return self._upload(lengths, lengths.nbytes)

    def output(self, shape, dtype, on_device):
        """(tensor, finish): a dense output of shape (3 or 4 axes: a trailing axis of 1 in the
        tensor for 3) and dtype; finish() returns it as a pyopencl array (on_device: at once,
        the queue computes it) or as a numpy array (read back, waiting for the queue)."""
        dims = list(shape) + [1] * (4 - len(shape))
        if on_device:
            import pyopencl.array
            array = pyopencl.array.empty(self.context.pyopencl_queue, shape, dtype)
            tensor = _tensor(array.base_data.int_ptr if array.base_data else None, 0,
                             _DTYPES[np.dtype(dtype)], dims, _dense_strides(dims))
            return tensor, lambda: array
        array = np.empty(shape, dtype)
        buffer = Buffer(self.context.cl_context, array.nbytes)
        self._buffers.append(buffer)
        tensor = _tensor(buffer.handle, 0, _DTYPES[np.dtype(dtype)], dims, _dense_strides(dims))

        def finish():
            buffer.read_into(self.context.queue, array)
            return array
        return tensor, finish
