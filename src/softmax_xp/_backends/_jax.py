"""Layer 3: jax fast paths.

Each function here has the signature of its twin in ``softmax_xp._generic`` and returns
``NotImplemented`` where it does not apply. Kernels not defined here use the generic code.

Every kernel is the generic one compiled once with ``jax.jit`` per ``(kernel, axis, has_where)``
(cached here), so XLA fuses it: the forward into the same program as ``jax.nn.softmax``, the
JVP/VJP ``y * (g - sum(g * y))`` into one pass that keeps only the output ``y`` (no forward pass
recomputed, unlike ``jax.vjp`` of ``jax.nn.softmax`` without residuals at hand), and the dense
Jacobian into one write of its output. The unmasked forward is the plain ``exp(x - max) / sum``
(the program of ``jax.nn.softmax``): the generic kernel first replaces a non-finite maximum by
NaN, so that NumPy never evaluates ``inf - inf`` and warns, and that guard costs XLA an extra
select per element (measured +18% at 1024x32768 float32); JAX raises no floating-point
warnings, and ``inf - inf`` gives the same NaN slice.

Concrete (eager) arrays whose result is 32 MiB or more, on a single CPU device, skip XLA (the
forward kernels only where the C kernels run at 32-byte vectors or wider, see
``_NARROW_LEVELS``): they
are viewed as NumPy arrays without a copy, computed by the NumPy fast path (the fused C row
kernels of ``_numpy.py``) into a 64-byte aligned buffer, and handed back to JAX by DLPack without
a copy. XLA's CPU programs for these kernels take separate passes for the reductions and the
elementwise parts (measured, 1024x32768 float32: jit(jax.nn.softmax) 57 ms, this path 21 ms).
Traced values (under ``jit``, ``grad``, ``vmap``, ...), other devices (CPU devices other than the
first included), sharded arrays and smaller results (where XLA was measured as fast or faster)
take the jitted path. Eager callers skip
op-by-op dispatch; inside an outer trace (``jit``, ``grad``, ``vmap``, the ``custom_jvp`` of
layer 4) the jitted function is inlined as a nested call and works on traced values.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from .. import _generic
from .._kernels import OF_OUTPUT
from . import _host as _hostmem

#: Results at least this large are computed by the NumPy/C kernels. Measured crossover (one
#: `softmax-xp bench` run on the 2-core test machine): at 16 MiB and below XLA's own programs were
#: as fast or faster (its buffers are reused, its thread pool already awake); from 32 MiB up the
#: C kernels took 0.2-0.6x the time of jit(jax.nn.softmax) and of the jitted jax.vjp backward.
_HOST_MIN_BYTES = 32 * 1024 * 1024
#: C kernel levels at 16-byte vectors: there XLA's forward programs (softmax, log_softmax) were
#: measured as fast or faster than the host path (`bench/jax_host.py`, SSE2 on an AVX-512 machine:
#: host / jit 0.81-1.41 for the forward kernels, 0.25-0.79 for the VJP), so only the derivative
#: kernels take it; at AVX2 and AVX-512 every kernel does (host / jit 0.22-1.03, the highest ratios
#: float64 softmax, where the fresh output's page faults bound both).
_NARROW_LEVELS = frozenset({"sse2", "neon", "generic"})
#: Zero-copy import needs ``from_dlpack(..., device=, copy=False)`` (older jax lacks them).
_DLPACK_NO_COPY = {"device", "copy"} <= set(inspect.signature(jax.dlpack.from_dlpack).parameters)

Array = Any
Namespace = Any
Axes = tuple[int, ...]

Options = tuple[tuple[str, Any], ...]

_cache: dict[tuple[str, Axes, bool, int, Options], Callable[..., Any]] = {}
_lock = threading.Lock()


def _jitted(
    name: str, axis: Axes, has_where: bool, xp: Namespace, options: Options = ()
) -> Callable[..., Any]:
    key = (name, axis, has_where, id(xp), options)
    fn = _cache.get(key)
    if fn is None:
        kernel = functools.partial(getattr(_generic, name), axis=axis, xp=xp, **dict(options))
        if has_where:

            def run(*arrays: Any) -> Any:
                return kernel(*arrays[:-1], where=arrays[-1])

        else:

            def run(*arrays: Any) -> Any:
                return kernel(*arrays)

        with _lock:
            fn = _cache.setdefault(key, jax.jit(run))
    return fn


def _plain_softmax(x: Array, axis: Axes) -> Array:
    e = jax.numpy.exp(x - jax.numpy.max(x, axis=axis, keepdims=True))
    return e / jax.numpy.sum(e, axis=axis, keepdims=True)


def _plain_log_softmax(x: Array, axis: Axes) -> Array:
    shifted = x - jax.numpy.max(x, axis=axis, keepdims=True)
    return shifted - jax.numpy.log(jax.numpy.sum(jax.numpy.exp(shifted), axis=axis, keepdims=True))


_plain = {
    "softmax": jax.jit(_plain_softmax, static_argnums=1),
    "log_softmax": jax.jit(_plain_log_softmax, static_argnums=1),
}


def _forward(name: str, x: Array, axis: Axes, where: Any, xp: Namespace) -> Any:
    if where is None and isinstance(axis, tuple) and x.size > 0:
        out = _host(name, (x,), axis, None)
        return _plain[name](x, axis) if out is NotImplemented else out
    return _call(name, (x,), axis, where, xp)


@functools.cache
def _dlpack_device() -> Any:
    """The device a host buffer comes back on through DLPack without a copy: the first CPU
    device. An array on another host device (``--xla_force_host_platform_device_count``) would
    need a copy there, which ``copy=False`` refuses; those take the jitted path."""
    return jax.local_devices(backend="cpu")[0]


def _host_device(arrays: tuple[Any, ...]) -> Any:
    """The CPU device of concrete, unsharded arrays whose result can come back without a copy
    (and be placed as a jitted call would place it); None otherwise."""
    if arrays[0].dtype not in (np.float32, np.float64):
        return None
    device = None
    for a in arrays:
        if isinstance(a, jax.core.Tracer) or not isinstance(a, jax.Array):
            return None
        devices = a.devices()
        if len(devices) != 1 or not a.is_fully_addressable:
            return None
        (d,) = devices
        if d.platform != "cpu" or (device is not None and d != device) or d != _dlpack_device():
            return None
        # an uncommitted input gives an uncommitted result under jit; DLPack's is committed, which
        # only differs where JAX has another device to put it on
        if not a.committed and len(jax.devices()) != 1:
            return None
        device = d
    return device


def _host(name: str, arrays: tuple[Any, ...], axis: Axes, where: Any) -> Any:
    """Kernel ``name`` by the NumPy/C fast path on zero-copy views, or NotImplemented."""
    out_bytes = arrays[0].nbytes  # the result's size: the Jacobians' is C times the input's
    if name.endswith("jacobian"):
        out_bytes *= math.prod(arrays[0].shape[a] for a in axis)
    if out_bytes < _HOST_MIN_BYTES or not _DLPACK_NO_COPY:
        return NotImplemented
    rows = _hostmem.rows
    if rows is None or (name in ("softmax", "log_softmax") and rows.isa() in _NARROW_LEVELS):
        return NotImplemented
    device = _host_device(arrays if where is None else (*arrays, where))
    if device is None:
        return NotImplemented
    views = [np.asarray(a) for a in arrays]
    mask = None if where is None else np.asarray(where)
    out = _hostmem.run_into(name, views, axis, mask, _hostmem.aligned_empty)
    if out is NotImplemented:
        return NotImplemented
    return jax.dlpack.from_dlpack(out, device=device, copy=False)


def _call(
    name: str, arrays: tuple[Any, ...], axis: Axes, where: Any, xp: Namespace, **options: Any
) -> Any:
    if not isinstance(axis, tuple):
        return NotImplemented
    if not options and name in OF_OUTPUT:
        out = _host(name, arrays, axis, where)
        if out is not NotImplemented:
            return out
    fn = _jitted(name, axis, where is not None, xp, tuple(sorted(options.items())))
    return fn(*arrays) if where is None else fn(*arrays, where)


def softmax(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """``exp(x - max) / sum``: the C kernels for large concrete CPU arrays, else jitted XLA."""
    return _forward("softmax", x, axis, where, xp)


def log_softmax(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """``(x - max) - log(sum(exp(x - max)))``: the C kernels or jitted XLA, as ``softmax``."""
    return _forward("log_softmax", x, axis, where, xp)


def softmax_jvp(y: Array, v: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y * (v - <y, v>)`` as one XLA fusion."""
    return _call("softmax_jvp", (y, v), axis, None, xp)


def softmax_vjp(y: Array, g: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y * (g - <g, y>)`` as one XLA fusion."""
    return _call("softmax_vjp", (y, g), axis, None, xp)


def log_softmax_jvp(
    l: Array, v: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Array:
    """``v - <exp(l), v>``, jitted."""
    return _call("log_softmax_jvp", (l, v), axis, where, xp)


def log_softmax_vjp(
    l: Array, g: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Array:
    """``g - exp(l) * sum(g)``, jitted."""
    return _call("log_softmax_vjp", (l, g), axis, where, xp)


def softmax_jacobian(y: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """Dense ``diag(y) - y yᵀ``, fused into one write of the output."""
    return _call("softmax_jacobian", (y,), axis, None, xp)


def log_softmax_jacobian(l: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """Dense ``I - 1 softmaxᵀ``, fused into one write of the output."""
    return _call("log_softmax_jacobian", (l,), axis, None, xp)


# -- logsumexp and the cross-entropies: the generic kernels, jitted (one XLA program each) --------
def logsumexp(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """``m + log(sum(exp(x - m)))``, jitted."""
    return _call("logsumexp", (x,), axis, where, xp)


def logsumexp_weighted(
    x: Array, b: Array | None, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Any:
    """``(log|sum(b exp(x))|, sign)``, jitted."""
    return _call("logsumexp_weighted", (x, b), axis, where, xp)


def logsumexp_jvp(
    x: Array, lse: Array, v: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Array:
    """``<softmax(x), v>`` from ``x`` and ``lse``, jitted."""
    return _call("logsumexp_jvp", (x, lse, v), axis, where, xp)


def logsumexp_vjp(
    x: Array, lse: Array, g: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Array:
    """``g * softmax(x)`` from ``x`` and ``lse``, jitted."""
    return _call("logsumexp_vjp", (x, lse, g), axis, where, xp)


def softmax_cross_entropy(
    x: Array, targets: Array, /, *, axis: Axes, where: Array | None = None,
    label_smoothing: float = 0.0, xp: Namespace,
) -> Any:  # fmt: skip
    """``(loss, lse)``, jitted."""
    return _call("softmax_cross_entropy", (x, targets), axis, where, xp,
                 label_smoothing=label_smoothing)  # fmt: skip


def softmax_cross_entropy_jvp(
    x: Array, targets: Array, lse: Array, v: Array, u: Array | None, /, *, axis: Axes,
    where: Array | None = None, label_smoothing: float = 0.0, xp: Namespace,
) -> Any:  # fmt: skip
    """The tangents of ``(loss, lse)``, jitted."""
    return _call("softmax_cross_entropy_jvp", (x, targets, lse, v, u), axis, where, xp,
                 label_smoothing=label_smoothing)  # fmt: skip


def softmax_cross_entropy_vjp(
    x: Array, targets: Array, lse: Array, g: Array, h: Array, /, *, axis: Axes,
    where: Array | None = None, label_smoothing: float = 0.0, xp: Namespace,
) -> Any:  # fmt: skip
    """The cotangents of ``x`` and the targets, jitted."""
    return _call("softmax_cross_entropy_vjp", (x, targets, lse, g, h), axis, where, xp,
                 label_smoothing=label_smoothing)  # fmt: skip


def softmax_cross_entropy_with_integer_labels(
    x: Array, labels: Array, /, *, axis: Axes, where: Array | None = None,
    label_smoothing: float = 0.0, ignore_index: int | None = None, xp: Namespace,
) -> Any:  # fmt: skip
    """``(loss, lse)``, jitted."""
    return _call("softmax_cross_entropy_with_integer_labels", (x, labels), axis, where, xp,
                 label_smoothing=label_smoothing, ignore_index=ignore_index)  # fmt: skip


def softmax_cross_entropy_with_integer_labels_jvp(
    x: Array, labels: Array, lse: Array, v: Array, /, *, axis: Axes,
    where: Array | None = None, label_smoothing: float = 0.0, ignore_index: int | None = None,
    xp: Namespace,
) -> Any:  # fmt: skip
    """The tangents of ``(loss, lse)``, jitted."""
    return _call("softmax_cross_entropy_with_integer_labels_jvp", (x, labels, lse, v), axis,
                 where, xp, label_smoothing=label_smoothing, ignore_index=ignore_index)  # fmt: skip


def softmax_cross_entropy_with_integer_labels_vjp(
    x: Array, labels: Array, lse: Array, g: Array, h: Array, /, *, axis: Axes,
    where: Array | None = None, label_smoothing: float = 0.0, ignore_index: int | None = None,
    xp: Namespace,
) -> Any:  # fmt: skip
    """The cotangent of ``x``, jitted."""
    return _call("softmax_cross_entropy_with_integer_labels_vjp", (x, labels, lse, g, h), axis,
                 where, xp, label_smoothing=label_smoothing, ignore_index=ignore_index)  # fmt: skip


# -- the common call's direct route (see softmax_xp._hot) ---------------------------------------


def hot(name: str, axis: Axes, xp: Namespace, sample: Any) -> Any:
    """The route of kernel ``name`` for concrete arrays: this module's kernel with the namespace
    and axes bound (tracers, under ``jit`` and every transformation, get no route)."""
    if isinstance(sample, jax.core.Tracer) or not isinstance(sample, jax.Array):
        return None
    if name not in OF_OUTPUT:  # logsumexp: its eager call is one jitted program already
        return None
    if name in ("softmax", "log_softmax"):
        # the plain program with the axes closed over: jit's dispatch then hashes no static
        # argument (the same program as ``_plain[name]``)
        body = _plain_softmax if name == "softmax" else _plain_log_softmax
        plain = jax.jit(functools.partial(body, axis=axis))

        host_min = _HOST_MIN_BYTES // np.dtype(sample.dtype).itemsize  # in elements: x.size
        # costs a tenth of x.nbytes on a jax.Array

        def forward(x: Any) -> Any:
            n = x.size
            if not n:
                return NotImplemented
            if n >= host_min:
                out = _host(name, (x,), axis, None)
                if out is not NotImplemented:
                    return out
            return plain(x)

        return forward
    kind = type(sample)

    def pair(a: Any, b: Any) -> Any:
        if (
            type(b) is not kind
            or b.dtype != a.dtype
            or b.shape != a.shape
            or not a.size
            or a.sharding != b.sharding
        ):
            return NotImplemented
        return _call(name, (a, b), axis, None, xp)

    return pair
