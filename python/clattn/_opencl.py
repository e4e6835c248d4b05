"""The few OpenCL calls the package makes itself, through the ICD loader: buffers that carry
numpy arrays to the device and results back, on a clattn context's cl_context and queue."""

import ctypes
import ctypes.util
import sys

from ._lib import Error


def _load_opencl():
    if sys.platform == "darwin":
        return ctypes.CDLL("/System/Library/Frameworks/OpenCL.framework/OpenCL")
    try:
        return ctypes.CDLL("OpenCL.dll" if sys.platform == "win32" else "libOpenCL.so.1")
    except OSError:
        found = ctypes.util.find_library("OpenCL")
        if found is None:
            raise
        return ctypes.CDLL(found)


_cl = _load_opencl()
_p = ctypes.c_void_p
_cl_int = ctypes.c_int32

_create_buffer = _cl.clCreateBuffer
_create_buffer.restype = _p
_create_buffer.argtypes = [_p, ctypes.c_uint64, ctypes.c_size_t, _p, ctypes.POINTER(_cl_int)]
_read_buffer = _cl.clEnqueueReadBuffer
_read_buffer.restype = _cl_int
_read_buffer.argtypes = [_p, _p, ctypes.c_uint32, ctypes.c_size_t, ctypes.c_size_t, _p,
                         ctypes.c_uint32, _p, _p]
_release_mem_object = _cl.clReleaseMemObject
_release_mem_object.restype = _cl_int
_release_mem_object.argtypes = [_p]

_CL_MEM_READ_WRITE = 1 << 0
_CL_MEM_COPY_HOST_PTR = 1 << 5
_CL_TRUE = 1


def _check(function_name, code):
    if code != 0:
        raise Error("CLATTN_ERROR_OPENCL", f"{function_name} returned OpenCL error {code}")


class Buffer:
    """A cl_mem this package owns; release() (or leaving a with block) releases it. OpenCL
    keeps the memory until the commands that use it are done."""

    def __init__(self, cl_context, size, host_pointer=None):
        """size bytes (at least 1: OpenCL has no empty buffers), copied from host_pointer when
        given (which must hold size bytes)."""
        copy = host_pointer is not None and size > 0
        flags = _CL_MEM_READ_WRITE | (_CL_MEM_COPY_HOST_PTR if copy else 0)
        code = _cl_int()
        self.handle = _create_buffer(cl_context, flags, max(size, 1),
                                     host_pointer if copy else None, ctypes.byref(code))
        _check("clCreateBuffer", code.value)

    def read_into(self, queue, array):
        """Wait for the queue's commands before this read, then copy the buffer's first
        array.nbytes bytes into the C-contiguous numpy array."""
        if array.nbytes:
            _check("clEnqueueReadBuffer", _read_buffer(queue, self.handle, _CL_TRUE, 0,
                                                       array.nbytes, array.ctypes.data, 0,
                                                       None, None))

    def release(self):
        if self.handle:
            _release_mem_object(self.handle)
            self.handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()
