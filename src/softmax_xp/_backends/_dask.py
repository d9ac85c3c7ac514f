"""Layer 3: dask fast paths.

Each function here has the signature of its twin in ``softmax_xp._generic`` and returns
``NotImplemented`` where it does not apply (operands that are not NumPy-backed Dask arrays of
one float32/float64 dtype, or empty arrays); the generic kernel then runs instead.

The generic kernels cost Dask about six tasks per block (shift, ``exp``, sum, divide, ...), each
with its own output-sized temporary. Here each kernel takes one task per block, or a few when a
softmax axis is split over chunks:

- **Softmax axes each inside one chunk**: ``map_blocks`` runs the NumPy fast path of
  ``_numpy.py`` (its fused C row kernels where they apply) on each block. One task per block,
  beyond the inputs' own; the dense Jacobians likewise (one ``blockwise`` task per block).
  The NumPy path runs serially inside a task (Dask's own threads fill the cores), so a Dask
  array of a single chunk runs on one core.
- **A softmax axis split over several chunks**: a two-stage online reduction. Each block's task
  runs the NumPy fast path on the block (its own softmax, ``exp(x - m) / s`` over its part of
  every slice) and reads off its partial ``(m, s) = (max x, sum exp(x - m))`` (the largest entry
  of the block's softmax is ``1 / s``). The partials, one pair per slice, are combined in a tree
  by the log-sum-exp rule ``M = max m_i``, ``S = sum s_i exp(m_i - M)``, at most
  ``split_every`` (Dask's config, as for its own reductions) per combining task, never all at
  once; then one task per block rescales the block's own softmax by ``s exp(m - M) / S``
  (log_softmax: adds ``(m + log s) - (M + log S)``): one multiply per entry instead of a second
  ``exp``. The JVP and VJP combine per-block partial dots ``sum(g * y)`` the same way
  (``dask.array.reduction``) and finish with one task per block. No task holds more than one
  block of any operand plus a few numbers per slice, and only the partials travel between
  tasks of different blocks.

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

import contextlib
import functools
import itertools
import math
import operator
from collections.abc import Iterator, Sequence
from typing import Any

import array_api_compat.numpy as _np_xp
import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import _numpy, call

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


@contextlib.contextmanager
def _serial() -> Iterator[None]:
    """Run the NumPy fast path in this thread only, as it runs its nested calls: Dask already
    keeps every core busy with blocks, and the NumPy path's own threads on top of Dask's would
    oversubscribe the cores (measured: 20-30% slower out of core on 2 cores)."""
    local = _numpy._local
    before = getattr(local, "in_worker", False)
    local.in_worker = True
    try:
        yield
    finally:
        local.in_worker = before


def _block_kernel(*blocks: NDArray, kernel: str, axes: Axes, n_arrays: int) -> Any:
    """Kernel ``kernel`` on NumPy blocks (the NumPy fast path, else the generic kernel)."""
    arrays = blocks[:n_arrays]
    kw: dict[str, Any] = {}
    if kernel in _MASKED:
        kw["where"] = blocks[n_arrays] if len(blocks) > n_arrays else None
    with _serial():
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


def _partials(
    x: NDArray, out: NDArray, w: NDArray | None, axes: Axes, log: bool
) -> dict[str, NDArray]:
    """A block's ``m = max x`` and ``s = sum exp(x - m)`` over its part of each slice (masked-out
    entries left out), and ``v``: whether that part has an unmasked entry, from the block's own
    softmax ``out``: its largest entry is ``1 / s`` (log: ``-log s``), so no second ``exp``."""
    shape = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    if _empty_axes(x, axes):
        return {
            "m": np.full(shape, -np.inf, dtype=x.dtype),
            "s": np.zeros(shape, dtype=x.dtype),
            "v": np.zeros(shape, dtype=bool),
        }
    if w is None:
        m = np.max(x, axis=axes, keepdims=True)
        v = np.ones(shape, dtype=bool)
    else:
        m = np.max(np.where(w, x, np.asarray(-np.inf, dtype=x.dtype)), axis=axes, keepdims=True)
        v = np.any(w, axis=axes, keepdims=True)
    top = np.max(out, axis=axes, keepdims=True)
    s = np.exp(-top) if log else np.reciprocal(top)
    np.copyto(s, 0.0, where=(m == -np.inf) | np.logical_not(v))  # nothing to add (not NaN)
    np.copyto(m, -np.inf, where=np.logical_not(v))
    return {"m": m, "s": s, "v": v}


def _stage1(
    x: NDArray, w: NDArray | None = None, *, axes: Axes, log: bool
) -> tuple[NDArray, dict[str, NDArray]]:
    """The block's own softmax (log_softmax) by the NumPy fast path, and its partials."""
    kernel = "log_softmax" if log else "softmax"
    with _serial():
        out = call(kernel, x, axis=axes, where=w, xp=_np_xp)
    with np.errstate(all="ignore"):
        return out, _partials(x, out, w, axes, log)


def _merge(parts: list[dict[str, NDArray]]) -> dict[str, NDArray]:
    """Partials of one batch block combined by ``M = max m``, ``S = sum s exp(m - M)``."""
    if len(parts) == 1:
        return parts[0]
    m = np.stack([p["m"] for p in parts])
    with np.errstate(all="ignore"):
        big = np.max(m, axis=0)
        f = np.exp(m - big)
        np.copyto(f, 1.0, where=m == big)  # the maximum's own part (and -inf - -inf)
        s = np.sum(np.stack([p["s"] for p in parts]) * f, axis=0)
    v = np.any(np.stack([p["v"] for p in parts]), axis=0)
    return {"m": big, "s": s, "v": v}


def _stage2(
    t: tuple[NDArray, dict[str, NDArray]],
    st: dict[str, NDArray],
    w: NDArray | None = None,
    *,
    log: bool,
) -> NDArray:
    """The block's softmax rescaled to its slices: ``out * s exp(m - M) / S``
    (log: ``out + (m + log s) - (M + log S)``).

    A slice whose maximum over its unmasked entries is not finite is NaN; an all-masked slice
    is 0 (log: ``-inf``); a block part with no finite unmasked entry is 0 (log: ``-inf``)."""
    own, p = t
    m, s = p["m"], p["s"]
    big, total, v = st["m"], st["s"], st["v"]
    res = np.empty(own.shape, dtype=own.dtype)
    with np.errstate(all="ignore"):
        finite = np.isfinite(big)
        if log:
            c = (m.astype(np.float64) - big) + (np.log(s.astype(np.float64)) - np.log(total))
        else:
            c = s.astype(np.float64) * np.exp(m.astype(np.float64) - big) / total
        c = np.where(v & finite, c, np.nan)  # a NaN slice
        c = np.where(v, c, 0.0)  # an all-masked slice: the block's own output as it is
        empty = v & finite & (m == -np.inf)
        if log:
            np.add(own, c.astype(own.dtype), out=res)
        else:
            np.multiply(own, c.astype(own.dtype), out=res)
        if np.any(empty):
            np.copyto(res, -np.inf if log else 0.0, where=empty)
        if w is not None:
            np.copyto(res, -np.inf if log else 0.0, where=np.logical_not(w))
    return res


def _split_every(axes: Axes) -> dict[int, int]:
    """Partials per combining task along each reduced axis, from Dask's ``split_every`` (as
    ``dask.array.reduction`` reads it)."""
    k = dask.config.get("split_every", 4) or 4
    if isinstance(k, dict):
        return {a: max(2, int(k.get(a, 2))) for a in axes}
    n = max(int(int(k) ** (1 / len(axes))), 2)
    return dict.fromkeys(axes, n)


def _tree(t: Array, axes: Axes, dtype: Any) -> Array:
    """The slices' ``(M, S, v)`` from the partials of ``t``'s blocks, combined in a tree.

    One small task per block takes the partials out of the block's result (so that only they,
    not the block, travel to the combining tasks); each combining task merges at most
    ``split_every`` of them. The result has ``t``'s batch chunks and one chunk of length 1 along
    each reduced axis (keepdims)."""
    k = _split_every(axes)
    name = "softmax-lse-" + tokenize(t.name, axes, k)
    dsk: dict[Any, Any] = {}
    cur: dict[tuple[int, ...], Any] = {}
    for idx in itertools.product(*(range(n) for n in t.numblocks)):
        key = (f"{name}-partials", *idx)
        dsk[key] = (operator.getitem, (t.name, *idx), 1)
        cur[idx] = key
    nb = list(t.numblocks)
    level = 0
    while True:
        nb = [-(-n // k[a]) if a in axes else n for a, n in enumerate(nb)]
        last = all(nb[a] == 1 for a in axes)
        lname = name if last else f"{name}-combine-{level}"
        groups: dict[tuple[int, ...], list[Any]] = {}
        for idx, key in cur.items():
            out = tuple(i // k[a] if a in axes else i for a, i in enumerate(idx))
            groups.setdefault(out, []).append(key)
        for out, keys in groups.items():
            dsk[(lname, *out)] = (_merge, keys)
        cur = {out: (lname, *out) for out in groups}
        level += 1
        if last:
            break
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[t])
    chunks = tuple((1,) if a in axes else c for a, c in enumerate(t.chunks))
    return da.Array(graph, name, chunks=chunks, meta=_meta(t.ndim, dtype))  # type: ignore[no-untyped-call]


def _online_forward(x: Array, axis: Axes, where: Array | None, log: bool) -> Array:
    """Stage 1: each block's own softmax and partials; a tree of the partials; stage 2: each
    block's softmax rescaled (one multiply, or add for log, per entry)."""
    kernel = "log_softmax" if log else "softmax"
    w = None if where is None else _aligned(where, x, "where", "x")
    inds = tuple(range(x.ndim))
    ops: list[Any] = [x, inds] if w is None else [x, inds, w, inds]
    # blocks of t are (block result, partials) pairs, read only by the tasks below
    t = da.blockwise(  # type: ignore[no-untyped-call]
        _stage1,
        inds,
        *ops,
        axes=axis,
        log=log,
        token=f"{kernel}-blocks",
        dtype=x.dtype,
        meta=_meta(x.ndim, x.dtype),
        align_arrays=False,
        concatenate=False,
    )
    stats = _tree(t, axis, x.dtype)
    args: list[Any] = [t, inds, stats, inds]
    if w is not None:
        args += [w, inds]
    return da.blockwise(  # type: ignore[no-untyped-call]
        _stage2,
        inds,
        *args,
        log=log,
        token=kernel,
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
    if _unknown(a.chunks) or _unknown(b.chunks):
        # dask's weighted reduction cannot broadcast arrays of unknown size: the generic kernel
        return NotImplemented
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
