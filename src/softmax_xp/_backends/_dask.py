"""Layer 3: dask fast paths.

Each function here has the signature of its twin in ``softmax_xp._generic`` and returns
``NotImplemented`` where it does not apply (operands that are not NumPy-backed Dask arrays of
one float32/float64 dtype, or empty arrays); the generic kernel then runs instead.

The generic kernels cost Dask about six tasks per block (shift, ``exp``, sum, divide, ...), each
with its own output-sized temporary. Here every kernel is one task per block:

- **Softmax axes each inside one chunk**: ``map_blocks`` runs the NumPy fast path of
  ``_numpy.py`` (its fused C row kernels where they apply) on each block. One task per block,
  beyond the inputs' own; the dense Jacobians likewise (one ``blockwise`` task per block).
- **A softmax axis split over several chunks**: a two-stage online reduction. Each block gives
  its partial ``(m, s) = (max x, sum exp(x - m))`` over its part of every slice; partials are
  combined in a tree (``dask.array.reduction``, ``split_every`` from Dask's config) by the
  log-sum-exp rule ``M = max(m_i)``, ``S = sum(s_i exp(m_i - M))``, never all at once; one
  normalising task per block then writes ``exp(x - M) / S`` (log: ``(x - M) - log S``). The JVP
  and VJP combine per-block partial dots ``sum(g * y)`` the same way. No task holds more than one
  block of any operand plus one number per slice.

Masks (``where``) and second operands with chunks of their own are rechunked to the first
operand's chunks first (the result keeps them). Arrays with unknown (NaN) chunk sizes work as
long as no rechunk is needed; otherwise a ``ValueError`` names the argument.

Nothing here computes: results are lazy, and every ``map_blocks`` / ``reduction`` is given its
``meta`` so that Dask does not call the kernels on empty arrays to find it. Block functions run on
worker threads or processes, so each silences floating-point warnings in its own local
``numpy.errstate`` (the values follow IEEE semantics; see ``_generic.py`` for the edge cases,
which are reproduced here: a slice with a non-finite maximum among its unmasked entries is NaN,
an all-masked slice is 0, log: ``-inf``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import array_api_compat.numpy as _np_xp
import dask.array as da
import numpy as np

from . import call

__all__ = [
    "log_softmax",
    "log_softmax_jacobian",
    "log_softmax_jvp",
    "log_softmax_vjp",
    "softmax",
    "softmax_jacobian",
    "softmax_jvp",
    "softmax_vjp",
]

Array = Any
Namespace = Any
NDArray = np.ndarray[Any, Any]
Axes = tuple[int, ...]

#: Bytes of one operand per step of a block function's inner loop (rows of a 2-D block): small
#: enough that the second and third passes over those rows read them from L2.
_STEP_BYTES = 512 * 1024

#: The kernels that take ``where``.
_MASKED = frozenset({"softmax", "log_softmax", "log_softmax_jvp", "log_softmax_vjp"})


# -- checks and alignment ------------------------------------------------------------------------


def _applies(*arrays: Array) -> bool:
    """NumPy-backed Dask arrays of one float32/float64 dtype, not known to be empty."""
    a = arrays[0]
    if not all(isinstance(b, da.Array) and type(b._meta) is np.ndarray for b in arrays):
        return False
    if a.dtype not in (np.float32, np.float64) or any(b.dtype != a.dtype for b in arrays):
        return False
    return not any(s == 0 for s in a.shape)  # an empty array: the generic kernel's zeros


def _unknown(chunks: tuple[tuple[float, ...], ...]) -> bool:
    return any(math.isnan(c) for cs in chunks for c in cs)


def _aligned(b: Array, to: Array, name: str, first: str) -> Array:
    """``b`` with the chunks of ``to`` (a rechunk where they differ)."""
    if b.chunks == to.chunks:
        return b
    if _unknown(b.chunks) or _unknown(to.chunks):
        raise ValueError(
            f"argument `{name}` has chunks {b.chunks} and `{first}` has chunks {to.chunks}: "
            f"unknown (NaN) chunk sizes cannot be matched; call `compute_chunk_sizes()` on "
            f"them first"
        )
    return b.rechunk(to.chunks)


def _split(x: Array, axis: Axes) -> bool:
    """Whether some softmax axis is split over several chunks."""
    return any(len(x.chunks[a]) > 1 for a in axis)


def _meta(ndim: int, dtype: Any) -> NDArray:
    return np.empty((0,) * ndim, dtype=dtype)


# -- one task per block: the NumPy fast path on each block ---------------------------------------


def _block_kernel(*blocks: NDArray, kernel: str, axes: Axes, n_arrays: int) -> Any:
    """Kernel ``kernel`` on NumPy blocks (the NumPy fast path, else the generic kernel)."""
    arrays = blocks[:n_arrays]
    kw: dict[str, Any] = {}
    if kernel in _MASKED:
        kw["where"] = blocks[n_arrays] if len(blocks) > n_arrays else None
    return call(kernel, *arrays, axis=axes, xp=_np_xp, **kw)


def _per_block(
    kernel: str, arrays: Sequence[Array], names: Sequence[str], axis: Axes, where: Array | None
) -> Array:
    x = arrays[0]
    ops = [x, *(_aligned(b, x, n, names[0]) for b, n in zip(arrays[1:], names[1:], strict=True))]
    if where is not None:
        ops.append(_aligned(where, x, "where", names[0]))
    return da.map_blocks(  # type: ignore[no-untyped-call]
        _block_kernel,
        *ops,
        kernel=kernel,
        axes=axis,
        n_arrays=len(arrays),
        token=kernel,
        dtype=x.dtype,
        meta=_meta(x.ndim, x.dtype),
    )


# -- block helpers for the online reduction -------------------------------------------------------


def _steps(a: NDArray, axes: Axes) -> list[slice]:
    """Row ranges of about ``_STEP_BYTES`` for a 2-D block reduced over its last axis, else one
    range for the whole block (the reductions are then left to NumPy)."""
    if a.ndim != 2 or axes != (1,) or a.shape[0] == 0:
        return [slice(None)]
    rows = max(1, _STEP_BYTES // max(1, a.shape[1] * a.itemsize))
    return [slice(r, r + rows) for r in range(0, a.shape[0], rows)]


def _empty_axes(a: NDArray, axes: Axes) -> bool:
    return any(a.shape[i] == 0 for i in axes)


def _lse_chunk(
    x: NDArray,
    w: NDArray | None = None,
    *,
    axis: Axes,
    keepdims: bool,
    computing_meta: bool = False,
    **_: Any,
) -> Any:
    """A block's partial ``m = max x`` and ``s = sum exp(x - m)`` over its part of each slice
    (masked-out entries left out), and ``v``: whether the part has an unmasked entry.

    (Dask calls it once with ``computing_meta=True`` to learn the partials' array type.)"""
    if computing_meta:
        return x
    shape = tuple(1 if i in axis else n for i, n in enumerate(x.shape))
    if _empty_axes(x, axis):
        return {
            "m": np.full(shape, -np.inf, dtype=x.dtype),
            "s": np.zeros(shape, dtype=x.dtype),
            "v": np.zeros(shape, dtype=bool),
        }
    with np.errstate(all="ignore"):
        if w is None:
            xm = x
            v = np.ones(shape, dtype=bool)
        else:
            xm = np.where(w, x, np.asarray(-np.inf, dtype=x.dtype))
            v = np.any(w, axis=axis, keepdims=True)
        m = np.empty(shape, dtype=x.dtype)
        s = np.empty(shape, dtype=x.dtype)
        steps = _steps(xm, axis)
        t = np.empty_like(xm[steps[0]])  # one step's scratch
        for sl in steps:
            xs = xm[sl]
            ts = t[: xs.shape[0]] if len(steps) > 1 else t
            np.max(xs, axis=axis, keepdims=True, out=m[sl])
            np.subtract(xs, m[sl], out=ts)
            np.exp(ts, out=ts)
            np.sum(ts, axis=axis, keepdims=True, out=s[sl])
        np.copyto(s, 0.0, where=m == -np.inf)  # no finite entry: nothing to add (not NaN)
    return {"m": m, "s": s, "v": v}


def _lse_combine(
    p: dict[str, NDArray], *, axis: Axes, keepdims: bool, **_: Any
) -> dict[str, NDArray]:
    """Partials (concatenated along ``axis``) combined by ``M = max m``, ``S = sum s exp(m - M)``."""
    m, s, v = p["m"], p["s"], p["v"]
    with np.errstate(all="ignore"):
        big = np.max(m, axis=axis, keepdims=True)
        f = np.exp(m - big)
        np.copyto(f, 1.0, where=m == big)  # the maximum's own part (and -inf - -inf)
        out = {
            "m": big,
            "s": np.sum(s * f, axis=axis, keepdims=True),
            "v": np.any(v, axis=axis, keepdims=True),
        }
    if not keepdims:
        out = {k: np.squeeze(a, axis=axis) for k, a in out.items()}
    return out


def _lse_aggregate(p: dict[str, NDArray], *, axis: Axes, keepdims: bool, **_: Any) -> NDArray:
    """The final ``(m, s)`` per slice as one structured array: the shift and the sum.

    A slice whose maximum over its unmasked entries is not finite gets ``m = NaN`` (it comes out
    NaN throughout); an all-masked slice gets ``(0, 1)`` (its entries are all masked out).
    """
    c = _lse_combine(p, axis=axis, keepdims=keepdims)
    big, s, v = c["m"], c["s"], c["v"]
    out = np.empty(big.shape, dtype=_stats_dtype(big.dtype))
    finite = np.isfinite(big)
    out["m"] = np.where(v, np.where(finite, big, np.nan), 0.0)
    out["s"] = np.where(v & finite, s, 1.0)
    return out


def _stats_dtype(dtype: Any) -> np.dtype[Any]:
    return np.dtype([("m", dtype), ("s", dtype)])


def _normalise(
    x: NDArray, st: NDArray, w: NDArray | None = None, *, axes: Axes, log: bool
) -> NDArray:
    """``exp(x - m) / s`` (log: ``(x - m) - log s``) on one block, from the slices' ``(m, s)``."""
    st = np.expand_dims(st, axes)
    m = st["m"]
    out = np.empty(x.shape, dtype=x.dtype)
    with np.errstate(all="ignore"):
        k = np.log(st["s"]) if log else np.reciprocal(st["s"])
        steps = _steps(x, axes)
        for sl in steps:
            o = out[sl]
            np.subtract(x[sl], m[sl], out=o)
            if log:
                np.subtract(o, k[sl], out=o)
            else:
                np.exp(o, out=o)
                np.multiply(o, k[sl], out=o)
        if w is not None:
            np.copyto(out, -np.inf if log else 0.0, where=np.logical_not(w))
    return out


def _online_forward(x: Array, axis: Axes, where: Array | None, log: bool) -> Array:
    w = None if where is None else _aligned(where, x, "where", "x")
    batch = tuple(i for i in range(x.ndim) if i not in axis)
    sdt = _stats_dtype(x.dtype)
    stats = da.reduction(  # type: ignore[no-untyped-call]
        x,
        _lse_chunk,
        _lse_aggregate,
        combine=_lse_combine,
        axis=axis,
        keepdims=False,
        dtype=sdt,
        concatenate=True,
        meta=_meta(len(batch), sdt),
        name="log_softmax-lse" if log else "softmax-lse",
        weights=w,
    )
    inds = tuple(range(x.ndim))
    args: list[Any] = [x, inds, stats, batch]
    if w is not None:
        args += [w, inds]
    return da.blockwise(  # type: ignore[no-untyped-call]
        _normalise,
        inds,
        *args,
        axes=axis,
        log=log,
        token="log_softmax" if log else "softmax",
        dtype=x.dtype,
        meta=_meta(x.ndim, x.dtype),
        align_arrays=False,
        concatenate=False,
    )


# -- online dots: the JVP / VJP with a split softmax axis -----------------------------------------


def _dot_chunk(
    a: NDArray,
    b: NDArray | None = None,
    *,
    axis: Axes,
    keepdims: bool,
    exp_a: bool,
    computing_meta: bool = False,
    **_: Any,
) -> NDArray:
    """``sum(a * b)`` (``exp(a) * b`` when ``exp_a``; ``sum(a)`` without ``b``) over ``axis``."""
    if computing_meta:
        return a
    with np.errstate(all="ignore"):
        if b is None:
            r: NDArray = np.sum(a, axis=axis, keepdims=True)
            return r
        if _empty_axes(a, axis):
            return np.zeros(tuple(1 if i in axis else n for i, n in enumerate(a.shape)), a.dtype)
        steps = _steps(a, axis)
        out = np.empty(tuple(1 if i in axis else n for i, n in enumerate(a.shape)), a.dtype)
        t = np.empty_like(a[steps[0]])
        for sl in steps:
            ts = t[: a[sl].shape[0]] if len(steps) > 1 else t
            if exp_a:
                np.exp(a[sl], out=ts)
                np.multiply(ts, b[sl], out=ts)
            else:
                np.multiply(a[sl], b[sl], out=ts)
            np.sum(ts, axis=axis, keepdims=True, out=out[sl])
    return out


def _sum_combine(p: NDArray, *, axis: Axes, keepdims: bool, **_: Any) -> NDArray:
    r: NDArray = np.sum(p, axis=axis, keepdims=keepdims)
    return r


def _finish(
    a: NDArray, b: NDArray, d: NDArray, w: NDArray | None = None, *, axes: Axes, kind: str
) -> NDArray:
    """The per-block second stage from the slices' dots ``d``:
    ``prod``: ``a * (b - d)``; ``log_jvp``: ``b - d``; ``log_vjp``: ``b - exp(a) * d``
    (``b`` already zeroed where masked out); zero where ``w`` is False."""
    d = np.expand_dims(d, axes)
    out = np.empty(a.shape, dtype=a.dtype)
    with np.errstate(all="ignore"):
        for sl in _steps(a, axes):
            o = out[sl]
            if kind == "prod":
                np.subtract(b[sl], d[sl], out=o)
                np.multiply(o, a[sl], out=o)
            elif kind == "log_jvp":
                np.subtract(b[sl], d[sl], out=o)
            else:
                np.exp(a[sl], out=o)
                np.multiply(o, d[sl], out=o)
                np.subtract(b[sl], o, out=o)
        if w is not None:
            np.copyto(out, 0.0, where=np.logical_not(w))
    return out


def _online_pair(
    kind: str, a: Array, b: Array, names: Sequence[str], axis: Axes, where: Array | None
) -> Array:
    b = _aligned(b, a, names[1], names[0])
    w = None if where is None else _aligned(where, a, "where", names[0])
    if w is not None:  # masked-out entries of the vector are zero (the generic kernels' rule)
        b = da.where(w, b, np.asarray(0.0, dtype=b.dtype))
    batch = tuple(i for i in range(a.ndim) if i not in axis)
    # prod: sum(a * b); log_jvp: sum(exp(a) * b); log_vjp: sum(b)
    first, second = (b, None) if kind == "log_vjp" else (a, b)
    d = da.reduction(  # type: ignore[no-untyped-call]
        first,
        functools.partial(_dot_chunk, exp_a=kind == "log_jvp"),
        _sum_combine,
        combine=_sum_combine,
        axis=axis,
        keepdims=False,
        dtype=a.dtype,
        concatenate=True,
        meta=_meta(len(batch), a.dtype),
        name=f"{kind}-dot",
        weights=second,
    )
    inds = tuple(range(a.ndim))
    args: list[Any] = [a, inds, b, inds, d, batch]
    if w is not None:
        args += [w, inds]
    return da.blockwise(  # type: ignore[no-untyped-call]
        _finish,
        inds,
        *args,
        axes=axis,
        kind=kind,
        token=kind,
        dtype=a.dtype,
        meta=_meta(a.ndim, a.dtype),
        align_arrays=False,
        concatenate=False,
    )


# -- entry points ----------------------------------------------------------------------------------

_NAMES = {
    "softmax": ("x",),
    "log_softmax": ("x",),
    "softmax_jvp": ("y", "v"),
    "softmax_vjp": ("y", "g"),
    "log_softmax_jvp": ("l", "v"),
    "log_softmax_vjp": ("l", "g"),
    "softmax_jacobian": ("y",),
    "log_softmax_jacobian": ("l",),
}


def _forward(name: str, x: Array, axis: Axes, where: Array | None) -> Array:
    if not _applies(x) or (where is not None and not _applies_mask(where)):
        return NotImplemented
    if not _split(x, axis):
        return _per_block(name, [x], _NAMES[name], axis, where)
    return _online_forward(x, axis, where, log=name == "log_softmax")


def _applies_mask(where: Array) -> bool:
    return isinstance(where, da.Array) and type(where._meta) is np.ndarray and where.dtype == bool


def _pair(name: str, kind: str, a: Array, b: Array, axis: Axes, where: Array | None) -> Array:
    if not _applies(a, b) or (where is not None and not _applies_mask(where)):
        return NotImplemented
    names = _NAMES[name]
    if not _split(a, axis):
        return _per_block(name, [a, b], names, axis, where)
    return _online_pair(kind, a, b, names, axis, where)


def softmax(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """One task per block, or the online reduction when a softmax axis is split."""
    return _forward("softmax", x, axis, where)


def log_softmax(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """One task per block, or the online reduction when a softmax axis is split."""
    return _forward("log_softmax", x, axis, where)


def softmax_jvp(y: Array, v: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y * (v - <y, v>)``: one task per block, or per-block partial dots in a tree."""
    return _pair("softmax_jvp", "prod", y, v, axis, None)


def softmax_vjp(y: Array, g: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y * (g - <g, y>)``: one task per block, or per-block partial dots in a tree."""
    return _pair("softmax_vjp", "prod", y, g, axis, None)


def log_softmax_jvp(
    l: Array, v: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Array:
    """``v - <exp(l), v>``: one task per block, or per-block partial dots in a tree."""
    return _pair("log_softmax_jvp", "log_jvp", l, v, axis, where)


def log_softmax_vjp(
    l: Array, g: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Array:
    """``g - exp(l) * sum(g)``: one task per block, or per-block partial sums in a tree."""
    return _pair("log_softmax_vjp", "log_vjp", l, g, axis, where)


def _jacobian(name: str, y: Array, axis: Axes) -> Array:
    if not _applies(y):
        return NotImplemented
    if any(math.isnan(y.shape[a]) for a in axis):
        raise ValueError(
            f"{name}: argument `{_NAMES[name][0]}` has unknown (NaN) sizes along the softmax "
            f"axes {axis}, so the Jacobian's shape is unknown; call `compute_chunk_sizes()` first"
        )
    c = math.prod(int(y.shape[a]) for a in axis)
    batch = tuple(i for i in range(y.ndim) if i not in axis)
    nd = y.ndim
    # One task per batch block; a softmax axis split over chunks is concatenated inside the
    # task (each task writes (rows, C, C) from its rows, which it needs whole).
    return da.blockwise(  # type: ignore[no-untyped-call]
        _block_kernel,
        (*batch, nd, nd + 1),
        y,
        tuple(range(nd)),
        kernel=name,
        axes=axis,
        n_arrays=1,
        new_axes={nd: c, nd + 1: c},
        concatenate=True,
        token=name,
        dtype=y.dtype,
        meta=_meta(len(batch) + 2, y.dtype),
    )


def softmax_jacobian(y: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """Dense ``diag(y) - y yᵀ`` by the NumPy fast path, one task per batch block."""
    return _jacobian("softmax_jacobian", y, axis)


def log_softmax_jacobian(l: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """Dense ``I - 1 softmaxᵀ`` by the NumPy fast path, one task per batch block."""
    return _jacobian("log_softmax_jacobian", l, axis)
