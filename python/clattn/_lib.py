"""ctypes bindings of include/clattn.h: the library, its structs and its functions."""

import ctypes
import ctypes.util
import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _library_file_name():
    if sys.platform == "win32":
        return "clattn.dll"
    if sys.platform == "darwin":
        return "libclattn.dylib"
    return "libclattn.so"


def _load_library():
    """$CLATTN_LIBRARY if set, else the copy inside this package (pip install .), else the
    system's libclattn (a Meson install of the C library)."""
    explicit = os.environ.get("CLATTN_LIBRARY")
    if explicit:
        return ctypes.CDLL(explicit)
    bundled = os.path.join(_PACKAGE_DIR, _library_file_name())
    if os.path.exists(bundled):
        return ctypes.CDLL(bundled)
    found = ctypes.util.find_library("clattn")
    if found is None:
        raise ImportError(f"clattn: no {bundled}, no libclattn on the system, and "
                          "CLATTN_LIBRARY is not set")
    return ctypes.CDLL(found)


lib = _load_library()

# enum clattn_status, in the header's order.
SUCCESS = 0

DTYPE_F32, DTYPE_F16 = 0, 1
ALIGNS = {"bottom_right": 0, "top_left": 1}
ALGOS = {"auto": 0, "fused": 1, "split_kv": 2, "unfused": 3}


class Tensor(ctypes.Structure):
    """struct clattn_tensor: a view of a cl_mem; offset in bytes, strides in elements."""
    _fields_ = [
        ("buffer", ctypes.c_void_p),
        ("offset", ctypes.c_size_t),
        ("dtype", ctypes.c_int),
        ("dims", ctypes.c_int64 * 4),
        ("strides", ctypes.c_int64 * 4),
    ]


class AttentionDesc(ctypes.Structure):
    """struct clattn_attention_desc; its fields' meaning is in include/clattn.h."""
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("scale", ctypes.c_float),
        ("causal", ctypes.c_int),
        ("align", ctypes.c_int),
        ("window_left", ctypes.c_int64),
        ("window_right", ctypes.c_int64),
        ("softcap", ctypes.c_float),
        ("bias", ctypes.POINTER(Tensor)),
        ("seqlens_q", ctypes.c_void_p),
        ("seqlens_k", ctypes.c_void_p),
        ("dropout_p", ctypes.c_float),
        ("dropout_seed", ctypes.c_uint64),
        ("dropout_offset", ctypes.c_uint64),
        ("algo", ctypes.c_int),
        ("workspace", ctypes.c_void_p),
        ("workspace_size", ctypes.c_size_t),
        ("q_start", ctypes.c_int64),
        ("k_start", ctypes.c_int64),
        ("accumulate", ctypes.c_int),
        ("sinks", ctypes.POINTER(Tensor)),
    ]


class Error(Exception):
    """A clattn call failed: .status is its status name (e.g. "CLATTN_ERROR_INVALID_ARGUMENT"),
    the message is clattn_last_error()'s."""

    def __init__(self, status, message):
        super().__init__(status, message)
        self.status = status
        self.message = message

    def __str__(self):
        return f"{self.status}: {self.message}"


def _function(name, restype, *argtypes):
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = argtypes
    return function


_p = ctypes.c_void_p
_tensor_p = ctypes.POINTER(Tensor)
_desc_p = ctypes.POINTER(AttentionDesc)
_status = ctypes.c_int

status_string = _function("clattn_status_string", ctypes.c_char_p, _status)
last_error = _function("clattn_last_error", ctypes.c_char_p)
version_string = _function("clattn_version_string", ctypes.c_char_p)
context_create = _function("clattn_context_create", _status, ctypes.c_char_p, ctypes.POINTER(_p))
context_create_from_queue = _function("clattn_context_create_from_queue", _status, _p,
                                      ctypes.POINTER(_p))
context_release = _function("clattn_context_release", None, _p)
context_cl_context = _function("clattn_context_cl_context", _p, _p)
context_queue = _function("clattn_context_queue", _p, _p)
context_device_name = _function("clattn_context_device_name", ctypes.c_char_p, _p)
attention_desc_init = _function("clattn_attention_desc_init", None, _desc_p)
attention_forward = _function("clattn_attention_forward", _status, _p, _desc_p,
                              _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p,
                              ctypes.c_uint, _p, _p)
attention_backward = _function("clattn_attention_backward", _status, _p, _desc_p,
                               _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p, _tensor_p,
                               _tensor_p, _tensor_p, _tensor_p, ctypes.c_uint, _p, _p)
attention_plan = _function("clattn_attention_plan", _status, _p, _desc_p,
                           _tensor_p, _tensor_p, _tensor_p, ctypes.c_char_p, ctypes.c_size_t)
_dropout_keep = _function("clattn_dropout_keep", ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64,
                          ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                          ctypes.c_int64, ctypes.c_float)


def check(status):
    """Raise Error for a failed call's status, with this thread's clattn_last_error()."""
    if status != SUCCESS:
        raise Error(status_string(status).decode(), last_error().decode(errors="replace"))


def new_desc():
    """A desc as clattn_attention_desc_init sets it, checking that the ctypes layout is the
    size the library expects."""
    desc = AttentionDesc()
    attention_desc_init(ctypes.byref(desc))
    if desc.struct_size != ctypes.sizeof(AttentionDesc):
        raise ImportError(f"clattn: the library's clattn_attention_desc is {desc.struct_size} "
                          f"bytes, the Python binding's {ctypes.sizeof(AttentionDesc)}")
    return desc


def dropout_keep(seed, offset, b, h, num_q_heads, i, j, p):
    """clattn_dropout_keep: True if the kernels keep key j of query row i (batch b, query head
    h of num_q_heads) under dropout probability p with this seed and offset."""
    return bool(_dropout_keep(seed, offset, b, h, num_q_heads, i, j, p))
