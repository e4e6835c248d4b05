"""clattn.Context: a device and its queue, and attention's forward, backward and plan on it."""

import ctypes
import numbers

import numpy as np

from . import _lib
from ._arrays import Call, is_pyopencl_array

_INT64 = (-2**63, 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_PLAN_LINE_BYTES = 1024


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


def _check_real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    return float(value)


def _check_integer(name, value, bounds):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name}={value} is outside [{bounds[0]}, {bounds[1]}]")
    return int(value)


def _check_choice(name, value, choices):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name}={value!r} is none of {', '.join(map(repr, choices))}")
    return choices[value]


def _check_window(window):
    if not isinstance(window, (tuple, list)) or len(window) != 2:
        raise TypeError(f"window must be a (left, right) pair of ints, not {window!r}")
    return [_check_integer(f"window[{i}]", w, _INT64) for i, w in enumerate(window)]


class Context:
    """A clattn context: one OpenCL device and an in-order queue (clattn_context).

    Arrays are [batch, heads, seq, head_dim]: numpy arrays (results come back as numpy arrays)
    or, on a context from Context.from_queue(queue), pyopencl arrays on that queue (results are
    pyopencl arrays on the device, computed in the queue's order, not copied). q, k, v, out and
    dout are float32 or float16, with any strides the C API reads (non-negative whole elements,
    the last axis contiguous; others are copied first); outputs have q's dtype, lse is float32
    [batch, heads, seq].

    The keywords of forward, backward and plan are the fields of clattn_attention_desc
    (include/clattn.h gives their exact meaning):
      causal     bool
      scale      None for 1/sqrt(head_dim), else a nonzero number (the C API reads 0 as None)
      align      "bottom_right" (the last query sees the last key) or "top_left"
      window     (left, right): keys within left before and right after the query's diagonal
                 position; -1 is unbounded
      softcap    0.0 for none, else scores become softcap * tanh(score / softcap)
      bias       None, or an additive array [batch|1, heads|1, seq_q|1, seq_k] (-inf hides a
                 key; dims of 1 or zero strides, as from numpy.broadcast_to, broadcast)
      seqlens_q, seqlens_k  None, or integer arrays [batch] of each batch's valid query rows
                 and keys
      dropout_p, seed, offset  dropout probability in [0, 1) and its Philox seed and offset
                 (which keys are dropped: clattn.dropout_keep)
      q_start, k_start  positions of query row 0 and key 0 in a longer sequence (a shard of
                 it): masks compare positions and dropout counts them; 0 and 0 by default
      sinks      None, or a float32 array [1, heads_q, 1, 1]: one logit per query head that
                 joins every softmax denominator of that head (gpt-oss); lse includes it
      algo       "auto", "fused", "split_kv" or "unfused"

    Wrong Python types raise TypeError naming the argument; everything the C library checks
    (shapes, strides, values) raises clattn.Error with its status and message, before anything
    runs.
    """

    def __init__(self, device=None):
        """device: a selector as clattn_context_create takes it ("cpu", "gpu", "P:D", or part of
        the device's name; None for $CLATTN_DEVICE or the library's choice)."""
        if device is not None and not isinstance(device, str):
            raise TypeError(f"device must be a str or None, not {type(device).__name__}")
        handle = ctypes.c_void_p()
        self._handle = None
        self.pyopencl_queue = None
        _lib.check(_lib.context_create(device.encode() if device else None,
                                       ctypes.byref(handle)))
        self._handle = handle.value

    @classmethod
    def from_queue(cls, queue):
        """A context on a pyopencl CommandQueue (in order), which it retains until closed."""
        if not hasattr(queue, "int_ptr"):
            raise TypeError(f"queue must be a pyopencl.CommandQueue, not {type(queue).__name__}")
        context = cls.__new__(cls)
        context._handle = None
        context.pyopencl_queue = queue
        handle = ctypes.c_void_p()
        _lib.check(_lib.context_create_from_queue(queue.int_ptr, ctypes.byref(handle)))
        context._handle = handle.value
        return context

    def close(self):
        """Release the C context (commands already enqueued still run); later calls fail."""
        if self._handle is not None:
            _lib.context_release(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            self.close()

    def _live_handle(self):
        if self._handle is None:
            raise ValueError("the clattn context is closed")
        return self._handle

    @property
    def device_name(self):
        return _lib.context_device_name(self._live_handle()).decode()

    @property
    def cl_context(self):
        """The cl_context handle, as an int."""
        return _lib.context_cl_context(self._live_handle())

    @property
    def queue(self):
        """The cl_command_queue handle, as an int."""
        return _lib.context_queue(self._live_handle())

    def _desc(self, call, causal=False, scale=None, align="bottom_right", window=(-1, -1),
              softcap=0.0, bias=None, seqlens_q=None, seqlens_k=None, dropout_p=0.0, seed=0,
              offset=0, q_start=0, k_start=0, sinks=None, algo="auto"):
        desc = _lib.new_desc()
        desc.causal = _check_bool("causal", causal)
        if scale is not None:
            desc.scale = _check_real("scale", scale)
            if desc.scale == 0:
                raise ValueError("scale=0 would mean the default to the C API: pass None")
        desc.align = _check_choice("align", align, _lib.ALIGNS)
        desc.window_left, desc.window_right = _check_window(window)
        desc.softcap = _check_real("softcap", softcap)
        if bias is not None:
            desc.bias = ctypes.pointer(call.input("bias", bias))
        desc.seqlens_q = call.seqlens("seqlens_q", seqlens_q)
        desc.seqlens_k = call.seqlens("seqlens_k", seqlens_k)
        desc.dropout_p = _check_real("dropout_p", dropout_p)
        desc.dropout_seed = _check_integer("seed", seed, _UINT64)
        desc.dropout_offset = _check_integer("offset", offset, _UINT64)
        desc.q_start = _check_integer("q_start", q_start, _INT64)
        desc.k_start = _check_integer("k_start", k_start, _INT64)
        if sinks is not None:
            desc.sinks = ctypes.pointer(call.input("sinks", sinks))
        desc.algo = _check_choice("algo", algo, _lib.ALGOS)
        return desc

    def forward(self, q, k, v, **keywords):
        """(out, lse) of attention over q [B, Hq, Sq, D], k [B, Hkv, Sk, D], v [B, Hkv, Sk, Dv]
        (Hq a multiple of Hkv: grouped-query): out [B, Hq, Sq, Dv] in q's dtype, lse float32
        [B, Hq, Sq] (natural log of each row's softmax denominator). Keywords: the class's."""
        handle = self._live_handle()
        with Call(self) as call:
            desc = self._desc(call, **keywords)
            tq, tk, tv = call.input("q", q), call.input("k", k), call.input("v", v)
            on_device = is_pyopencl_array(q)
            batch, heads, rows = q.shape[:3]
            out, finish_out = call.output((batch, heads, rows, v.shape[3]), q.dtype, on_device)
            lse, finish_lse = call.output((batch, heads, rows), np.float32, on_device)
            _lib.check(_lib.attention_forward(handle, desc, tq, tk, tv, out, lse, 0, None,
                                              None))
            return finish_out(), finish_lse()

    def backward(self, q, k, v, out, dout, lse, **keywords):
        """(dq, dk, dv) in q's dtype, from the forward's out and lse and dout = dL/dout [B, Hq,
        Sq, Dv], with the forward's keywords. For grouped-query attention dk and dv sum over
        each group's query heads; the bias gets no gradient."""
        handle = self._live_handle()
        with Call(self) as call:
            desc = self._desc(call, **keywords)
            tq, tk, tv = call.input("q", q), call.input("k", k), call.input("v", v)
            tout, tdout = call.input("out", out), call.input("dout", dout)
            tlse = call.input("lse", lse, ndim=3)
            on_device = is_pyopencl_array(q)
            dq, finish_dq = call.output(q.shape, q.dtype, on_device)
            dk, finish_dk = call.output(k.shape, q.dtype, on_device)
            dv, finish_dv = call.output(v.shape, q.dtype, on_device)
            _lib.check(_lib.attention_backward(handle, desc, tq, tk, tv, tout, tdout, tlse,
                                               dq, dk, dv, 0, None, None))
            return finish_dq(), finish_dk(), finish_dv()

    def plan(self, q, k, v, **keywords):
        """The line clattn_attention_plan writes for a forward with these arguments: the
        algorithm first ("fused", "split_kv" or "unfused"), then its tiling."""
        handle = self._live_handle()
        with Call(self) as call:
            desc = self._desc(call, **keywords)
            tq, tk, tv = call.input("q", q), call.input("k", k), call.input("v", v)
            line = ctypes.create_string_buffer(_PLAN_LINE_BYTES)
            _lib.check(_lib.attention_plan(handle, desc, tq, tk, tv, line, len(line)))
            return line.value.decode()

