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
- **logsumexp and the softmax cross-entropies** (whose derivative kernels take the inputs and
  one ``lse`` per slice): with the class axes whole, one task per block runs the kernel (the
  NumPy fast path, else the generic kernel) on the blocks, plus one per block and output for
  the tuple-valued ones. With a class axis split, ``logsumexp`` is a ``dask.array.reduction``:
  one task per block reads it once for its partials ``(m, s)``, merged in a tree by the
  log-sum-exp rule as above; the cross-entropies take that lse, then per-block sums of their
  loss terms. The derivative kernels are elementwise given the slice's ``lse`` (and its class
  count and target sum where smoothing or the VJP needs them), plus sums over the slice: one
  task per block for the elementwise part and the block's partial sums, which are summed in a
  tree (``logsumexp_vjp`` is elementwise: one task per block in both cases). The sums run
  under ``errstate`` too, so ``inf - inf`` in a sum stays quiet.

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

from .. import _generic
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


# -- logsumexp and the softmax cross-entropies ------------------------------------------------------
# Per-slice operands and results (lse, g, h, labels, loss) have the keepdims shape; here their
# chunks are x's along the batch axes and one chunk of length 1 along each reduced axis.
# Block functions name their operands with ``layout`` (absent optional ones are left out).

#: Arguments of these kernels that hold one number per slice.
_PER_SLICE = frozenset({"lse", "g", "h", "labels"})


def _keep_chunks(x: Array, axes: Axes) -> tuple[tuple[float, ...], ...]:
    """Chunks of a per-slice result: x's batch chunks, one chunk of 1 along each reduced axis."""
    return tuple((1,) if a in axes else c for a, c in enumerate(x.chunks))


def _part_chunks(x: Array, axes: Axes) -> tuple[tuple[float, ...], ...]:
    """Chunks of per-block partials: one number per slice and block of x."""
    return tuple((1,) * len(c) if a in axes else c for a, c in enumerate(x.chunks))


def _keep_shape(shape: tuple[int, ...], axes: Axes) -> tuple[int, ...]:
    return tuple(1 if a in axes else n for a, n in enumerate(shape))


def _keep_ok(b: Array, x: Array, axes: Axes) -> bool:
    """Whether ``b`` has the keepdims shape of ``x`` (unknown sizes taken as matching)."""
    if b.ndim != x.ndim:
        return False
    for a, (n, m) in enumerate(zip(b.shape, x.shape, strict=True)):
        if a in axes:
            if n != 1:
                return False
        elif not (math.isnan(n) or math.isnan(m)) and n != m:
            return False
    return True


def _aligned_keep(b: Array, x: Array, axes: Axes, name: str, first: str) -> Array:
    """Per-slice operand ``b`` with the chunks of a per-slice result of ``x``."""
    want = _keep_chunks(x, axes)
    if b.chunks == want:
        return b
    if _unknown(b.chunks) or _unknown(want):
        raise ValueError(
            f"argument `{name}` has chunks {b.chunks} and `{first}` has chunks {x.chunks}: "
            f"unknown (NaN) chunk sizes cannot be matched; call `compute_chunk_sizes()` on "
            f"them first"
        )
    return b.rechunk(want)


def _applies_labels(labels: Array) -> bool:
    return (
        isinstance(labels, da.Array)
        and type(labels._meta) is np.ndarray
        and labels.dtype.kind in "iu"
    )


def _prepare(
    name: str, arrays: Sequence[Array | None], where: Array | None, axis: Axes
) -> tuple[list[Array | None], Array | None] | None:
    """The operands aligned to the chunks of ``arrays[0]`` (None for an absent optional one) and
    the mask, or None where this module does not apply."""
    names = _NAMES[name]
    x = arrays[0]
    floats = [a for n, a in zip(names, arrays, strict=True) if a is not None and n != "labels"]
    if not _applies(*floats) or (where is not None and not _applies_mask(where)):
        return None
    out: list[Array | None] = [x]
    for n, a in zip(names[1:], arrays[1:], strict=True):
        if a is None:
            out.append(None)
        elif n == "labels" and not _applies_labels(a):
            return None
        elif n in _PER_SLICE:
            if not _keep_ok(a, x, axis):
                return None
            out.append(_aligned_keep(a, x, axis, n, names[0]))
        else:
            out.append(_aligned(a, x, n, names[0]))
    w = None if where is None else _aligned(where, x, "where", names[0])
    return out, w


def _map(
    fn: Any,
    ops: Sequence[Array],
    *,
    dtype: Any,
    chunks: tuple[tuple[float, ...], ...],
    token: str,
    n_out: int = 1,
    **kw: Any,
) -> Any:
    """``map_blocks(fn, *ops)`` with the given output chunks; a block function that returns a
    tuple of ``n_out`` arrays (of those chunks) gives a tuple of Dask arrays, each taken out of
    the blocks' results by one small task per block."""
    meta = _meta(len(chunks), dtype)
    t = da.map_blocks(  # type: ignore[no-untyped-call]
        fn, *ops, chunks=chunks, dtype=dtype, meta=meta, token=token, **kw
    )
    if n_out == 1:
        return t
    return tuple(
        da.map_blocks(  # type: ignore[no-untyped-call]
            operator.getitem, t, i, dtype=dtype, meta=meta, token=f"{token}-out{i}"
        )
        for i in range(n_out)
    )


def _apply_kernel(
    *blocks: NDArray, kernel: str, axes: Axes, present: tuple[bool, ...], masked: bool, kw: Any
) -> Any:
    """Kernel ``kernel`` on NumPy blocks (the NumPy fast path, else the generic kernel); the
    positional arguments that ``present`` marks False are None."""
    it = iter(blocks)
    args = [next(it) if p else None for p in present]
    w = next(it) if masked else None
    with _serial(), np.errstate(all="ignore"):
        return call(kernel, *args, axis=axes, where=w, xp=_np_xp, **dict(kw))


def _blocks(
    kernel: str,
    ops: Sequence[Array],
    w: Array | None,
    axis: Axes,
    chunks: tuple[tuple[float, ...], ...],
    n_out: int = 1,
    **options: Any,
) -> Any:
    """One task per block running the kernel on the blocks (plus one per output and block for
    a tuple-valued kernel)."""
    x = ops[0]
    arrays = [o for o in ops if o is not None] + ([] if w is None else [w])
    return _map(
        _apply_kernel,
        arrays,
        dtype=x.dtype,
        chunks=chunks,
        token=kernel,
        n_out=n_out,
        kernel=kernel,
        axes=axis,
        present=tuple(o is not None for o in ops),
        masked=w is not None,
        kw=tuple(sorted(options.items())),
    )


# The log-sum-exp reduction: per-block partials (m, s) with s = sum exp(x - m), merged by
# M = max m, S = sum s exp(m - M), and lse = log S + M. m is the block's maximum, or, where the
# NumPy fast path's C row kernel takes an unmasked block (it reads each row once, a streaming
# maximum and sum), the block's own lse with s = 1. A maximum that is not finite shifts by 0
# instead, in the block's sum and in the merge (no inf - inf, as in the generic kernel): a part
# with a +inf entry makes the slice +inf, one with a NaN NaN, parts of only -inf add nothing, so
# that a slice is +inf, -inf or NaN exactly where the generic kernel's is.


def _batch_steps(a: NDArray, axes: Axes) -> list[slice]:
    """Ranges of about ``_STEP_BYTES`` along axis 0 when it is a batch axis (the reductions over
    each range then read it from cache), else the whole block."""
    if a.ndim == 0 or 0 in axes or a.shape[0] == 0:
        return [slice(None)]
    rows = max(1, _STEP_BYTES // max(1, (a.size // a.shape[0]) * a.itemsize))
    return [slice(r, r + rows) for r in range(0, a.shape[0], rows)]


def _lse_chunk(
    x: NDArray,
    w: NDArray | None = None,
    *,
    axis: Axes,
    keepdims: bool,
    computing_meta: bool = False,
) -> Any:
    """A block's partials over its part of each slice; masked-out entries are ``-inf``."""
    if computing_meta:
        return x
    if w is None and x.size:
        with _serial():
            lse = _numpy.logsumexp(x, axis=axis, xp=_np_xp)
        if lse is not NotImplemented:
            return {"m": lse, "s": np.ones_like(lse)}
    shape = _keep_shape(x.shape, axis)
    m = np.full(shape, -np.inf, dtype=x.dtype)
    s = np.zeros(shape, dtype=x.dtype)
    if x.size == 0:
        return {"m": m, "s": s}
    ninf = np.asarray(-np.inf, dtype=x.dtype)
    steps = _batch_steps(x, axis)
    tmp = np.empty_like(x[steps[0]])
    with np.errstate(all="ignore"):
        for sl in steps:
            xs = x[sl] if w is None else np.where(w[sl], x[sl], ninf)
            t = tmp[: xs.shape[0]] if len(steps) > 1 else tmp
            mm = np.max(xs, axis=axis, keepdims=True)  # NaN where the part holds a NaN
            finite = np.isfinite(mm)
            np.subtract(xs, np.where(finite, mm, 0), out=t)
            np.exp(t, out=t)
            m[sl] = mm
            np.sum(t, axis=axis, keepdims=True, out=s[sl])
    return {"m": m, "s": s}


def _flat(parts: Any) -> list[dict[str, NDArray]]:
    """The partials of a combining step (nested lists of them, one level per reduced axis)."""
    if isinstance(parts, dict):
        return [parts]
    return [p for q in parts for p in _flat(q)]


def _lse_combine(parts: Any, *, axis: Axes, keepdims: bool, **_: Any) -> dict[str, NDArray]:
    ps = _flat(parts)
    if len(ps) == 1:
        return ps[0]
    m = np.stack([p["m"] for p in ps])
    s = np.stack([p["s"] for p in ps])
    with np.errstate(all="ignore"):
        big = np.max(m, axis=0)
        finite = np.isfinite(big)
        f = np.exp(m - np.where(finite, big, 0))  # parts of only -inf: s = 0, f = 0
        total = np.sum(s * f, axis=0)
    return {"m": big, "s": total}


def _lse_aggregate(parts: Any, *, axis: Axes, keepdims: bool, **_: Any) -> NDArray:
    p = _lse_combine(parts, axis=axis, keepdims=keepdims)
    m, s = p["m"], p["s"]
    with np.errstate(all="ignore"):
        out: NDArray = np.log(s) + m
    return out


def _lse_reduce(x: Array, axes: Axes, w: Array | None) -> Array:
    """The slices' log-sum-exp (keepdims): one chunk task per block, then a tree of combining
    tasks (at most ``split_every`` partials each, Dask's config)."""
    if w is not None and _unknown(x.chunks):  # a weighted reduction needs known sizes
        x, w = da.where(w, x, np.asarray(-np.inf, dtype=x.dtype)), None
    return da.reduction(  # type: ignore[no-untyped-call]
        x,
        _lse_chunk,
        _lse_aggregate,
        combine=_lse_combine,
        axis=axes,
        keepdims=True,
        dtype=x.dtype,
        concatenate=False,
        meta=_meta(x.ndim, x.dtype),
        name="logsumexp",
        weights=w,  # the mask, applied first in each chunk task
    )


def _quiet_sum(
    a: NDArray, *, axis: Axes, keepdims: bool, computing_meta: bool = False, **_: Any
) -> NDArray:
    if computing_meta:
        return a
    with np.errstate(all="ignore"):
        r: NDArray = np.sum(a, axis=axis, keepdims=keepdims)
    return r


def _sum_blocks(parts: Array, axes: Axes, name: str) -> Array:
    """Per-block partial sums summed over the reduced axes in a tree (keepdims), warning-free."""
    return da.reduction(  # type: ignore[no-untyped-call]
        parts,
        _quiet_sum,
        _quiet_sum,
        axis=axes,
        keepdims=True,
        dtype=parts.dtype,
        concatenate=True,
        meta=_meta(parts.ndim, parts.dtype),
        name=f"{name}-sum",
    )


def _class_count(w: Array | None, axes: Axes, eps: float) -> Array | None:
    """The number of unmasked classes of each slice where smoothing needs it from the mask (an
    int64 per slice, keepdims), else None (the static class count)."""
    if not eps or w is None:
        return None
    return da.reduction(  # type: ignore[no-untyped-call]
        w,
        _count_chunk,
        _quiet_sum,
        axis=axes,
        keepdims=True,
        dtype=np.int64,
        concatenate=True,
        meta=_meta(w.ndim, np.int64),
        name="class-count",
    )


def _count_chunk(
    w: NDArray, *, axis: Axes, keepdims: bool, computing_meta: bool = False
) -> NDArray:
    if computing_meta:
        return w
    return np.asarray(np.sum(w, axis=axis, keepdims=True, dtype=np.int64))


def _static_count(x: Array, axes: Axes) -> float | None:
    sizes = [x.shape[a] for a in axes]
    return None if any(math.isnan(s) for s in sizes) else float(math.prod(sizes))


# Block functions for a split class axis, in NumPy, with the generic kernels' helpers (so that
# the elementwise edge values are theirs); ``k`` is the slice's class count, global.


def _smooth(t: NDArray, w: NDArray | None, k: NDArray, eps: float) -> NDArray:
    """The generic ``_smoothed`` with the slice's class count ``k`` given."""
    if eps:
        k = np.where(k == 0, np.asarray(1.0, dtype=k.dtype), k)
        t = np.asarray(1.0 - eps, dtype=t.dtype) * t + np.asarray(eps, dtype=t.dtype) / k
    return t if w is None else np.where(w, t, np.asarray(0.0, dtype=t.dtype))


def _count_of(b: dict[str, NDArray], dtype: Any, c: float | None) -> NDArray:
    k = b.get("k")
    return np.asarray(c, dtype=dtype) if k is None else k.astype(dtype)


def _rsum(a: NDArray, axes: Axes) -> NDArray:
    r: NDArray = np.sum(a, axis=axes, keepdims=True)
    return r


def _onehot(
    shape: tuple[int, ...],
    labels: NDArray,
    axes: Axes,
    starts: tuple[tuple[int, ...], ...],
    classes: tuple[int, ...],
    block_id: tuple[int, ...],
) -> NDArray:
    """Whether each entry of the block is its slice's labelled class (flat C-order index over
    the class axes, from the block's offsets along them)."""
    ndim = len(shape)
    bid = block_id[len(block_id) - ndim :]
    index = np.zeros((1,) * ndim, dtype=np.int64)
    for j, a in enumerate(axes):
        lo = starts[j][bid[a]]
        r = np.arange(lo, lo + shape[a], dtype=np.int64)
        stride = math.prod(classes[j + 1 :])
        r = np.reshape(r, tuple(shape[a] if i == a else 1 for i in range(ndim)))
        index = index + r * stride
    hot: NDArray = index == labels
    return hot


def _valid(labels: NDArray, c: float, ignore_index: int | None) -> NDArray:
    v: NDArray = (labels >= 0) & (labels < c)
    if ignore_index is not None:
        v &= labels != ignore_index
    return v


def _label_t(
    b: dict[str, NDArray], dtype: Any, lab: dict[str, Any], eps: float, block_id: tuple[int, ...]
) -> tuple[NDArray, NDArray]:
    """The block's smoothed one-hot targets (0 for a label that does not count) and one-hot."""
    labels = b["labels"]
    shape = b["x"].shape
    hot = _onehot(shape, labels, lab["axes"], lab["starts"], lab["classes"], block_id)
    t = _smooth(hot.astype(dtype), b.get("w"), _count_of(b, dtype, lab["c"]), eps)
    t = np.where(_valid(labels, lab["c"], lab["ignore_index"]), t, np.asarray(0.0, dtype=dtype))
    return t, hot


def _ce_part(
    *blocks: NDArray,
    layout: tuple[str, ...],
    kind: str,
    axes: Axes,
    eps: float,
    c: float | None,
    lab: dict[str, Any] | None,
    lead: bool,
    block_id: tuple[int, ...] = (),
) -> NDArray:
    """A block's partial sums over its part of each slice, stacked along a new leading axis
    where there are several.

    ``loss``: the loss terms (labels: and whether the label's class is masked out here);
    ``jvp``: ``<p, v>``, ``<t, v>``, ``sum t`` (and ``<lse - x, u>``); ``tsum``: ``sum t``;
    ``weighted``: ``sum b p``, the weight at ``+inf`` and whether a NaN is unmasked here."""
    b = dict(zip(layout, blocks, strict=True))
    w = b.get("w")
    with np.errstate(all="ignore"):
        if kind == "weighted":
            x, wt, m, mk = b["x"], b["b"], b["lse"], b["mask"]
            zero = np.asarray(0.0, dtype=x.dtype)
            s = _rsum(wt * _generic._probs(x, m, mk, _np_xp), axes)
            wb = _rsum(np.where(mk & (x == np.inf), wt, zero), axes)
            nan = np.any(mk & np.isnan(x), axis=axes, keepdims=True).astype(x.dtype)
            return np.stack([s, wb, nan])
        dtype = (b["x"] if "x" in b else b["t"]).dtype
        if lab is None:
            t = _smooth(b["t"], w, _count_of(b, dtype, c), eps)
            hot = None
        else:
            t, hot = _label_t(b, dtype, lab, eps, block_id)
        if kind == "tsum":
            return _rsum(t, axes)
        x, lse = b["x"], b["lse"]
        zero = np.asarray(0.0, dtype=dtype)
        if kind == "loss":
            parts = [_rsum(_generic._soft_terms(t, x, lse, w, _np_xp), axes)]
            if hot is not None and w is not None:
                parts.append(np.any(hot & ~w, axis=axes, keepdims=True).astype(dtype))
        else:  # jvp
            p = _generic._probs(x, lse, w, _np_xp)
            v = b["v"] if w is None else np.where(w, b["v"], zero)
            parts = [_rsum(p * v, axes), _rsum(t * v, axes), _rsum(t, axes)]
            if "u" in b:
                du = b["u"] * _generic._gap(x, lse, _np_xp)
                parts.append(_rsum(du if w is None else np.where(w, du, zero), axes))
    return np.stack(parts) if lead else parts[0]


def _ce_vjp_block(
    *blocks: NDArray,
    layout: tuple[str, ...],
    eps: float,
    c: float | None,
    lab: dict[str, Any] | None,
    block_id: tuple[int, ...] = (),
) -> Any:
    """``dx = (g S + h) p - g t`` (soft targets: and ``dt = g (1 - eps) (lse - x)``) on a block,
    from the slices' target sums ``S``; 0 where masked out."""
    b = dict(zip(layout, blocks, strict=True))
    x, lse, g, h, s, w = b["x"], b["lse"], b["g"], b["h"], b["s"], b.get("w")
    zero = np.asarray(0.0, dtype=x.dtype)
    with np.errstate(all="ignore"):
        if lab is None:
            t = _smooth(b["t"], w, _count_of(b, x.dtype, c), eps)
        else:
            t, _ = _label_t(b, x.dtype, lab, eps, block_id)
        p = _generic._probs(x, lse, w, _np_xp)
        dx = (g * s + h) * p - g * t
        if w is not None:
            dx = np.where(w, dx, zero)
        if lab is not None:
            return dx
        dt = g * np.asarray(1.0 - eps, dtype=x.dtype) * _generic._gap(x, lse, _np_xp)
        return dx, (dt if w is None else np.where(w, dt, zero))


def _ce_finish(
    sums: NDArray,
    *blocks: NDArray,
    layout: tuple[str, ...],
    kind: str,
    eps: float = 0.0,
    lab: dict[str, Any] | None = None,
) -> Any:
    """Per-slice results from the summed partials (leading axis) of :func:`_ce_part`."""
    b = dict(zip(layout, blocks, strict=True))
    dt = sums.dtype
    nan, inf = np.asarray(np.nan, dtype=dt), np.asarray(np.inf, dtype=dt)
    with np.errstate(all="ignore"):
        if kind == "weighted":
            s, wb, has_nan, m = sums[0], sums[1], sums[2] > 0, b["lse"]
            out = np.log(np.abs(s)) + m
            sign = np.where(np.isnan(s), nan, np.sign(s))
            top = np.isinf(m) & (m > 0) & ~has_nan  # a +inf entry of nonzero weight
            out = np.where(top, np.where(wb == 0, nan, inf), out)
            sign = np.where(top, np.where(wb == 0, nan, np.sign(wb)), sign)
            return out, sign
        if kind == "loss" and lab is not None:
            labels = b["labels"]
            valid = _valid(labels, lab["c"], lab["ignore_index"])
            loss = sums[0]
            if sums.shape[0] > 1:
                loss = np.where((sums[1] > 0) & valid, inf, loss)
            bad = ~valid
            if lab["ignore_index"] is not None:
                bad &= labels != lab["ignore_index"]
            return np.where(bad, nan, loss)
        dlse = sums[0]
        dloss = sums[2] * dlse - sums[1]
        if sums.shape[0] > 3:
            dloss = dloss + np.asarray(1.0 - eps, dtype=dt) * sums[3]
        return dloss, dlse


def _lse_sign(lse: NDArray) -> NDArray:
    """The sign of ``sum exp(x)``: NaN with the lse, 0 for an empty sum, else 1."""
    dt = lse.dtype
    one, zero, nan = (np.asarray(v, dtype=dt) for v in (1.0, 0.0, np.nan))
    r: NDArray = np.where(np.isnan(lse), nan, np.where(lse == -np.inf, zero, one))
    return r


def _ops(named: Sequence[tuple[str, Array | None]]) -> tuple[tuple[str, ...], list[Array]]:
    """The layout and arrays of the operands that are present."""
    kept = [(n, a) for n, a in named if a is not None]
    return tuple(n for n, _ in kept), [a for _, a in kept]


def _labels_info(x: Array, axis: Axes, ignore_index: int | None) -> dict[str, Any] | None:
    """What a block function needs to find its labelled classes: None where a class axis has
    unknown chunk sizes."""
    if any(_unknown((x.chunks[a],)) for a in axis):
        return None
    starts = tuple(
        tuple(int(v) for v in itertools.accumulate(x.chunks[a], initial=0)) for a in axis
    )
    classes = tuple(int(x.shape[a]) for a in axis)
    return {
        "axes": axis,
        "starts": starts,
        "classes": classes,
        "c": float(math.prod(classes)),
        "ignore_index": ignore_index,
    }


def _slice_sums(
    name: str,
    kind: str,
    x: Array,
    named: Sequence[tuple[str, Array | None]],
    n_parts: int,
    axis: Axes,
    **kw: Any,
) -> Array:
    """:func:`_ce_part` on every block, summed over the blocks of each slice (keepdims):
    ``n_parts`` numbers per slice along a new leading axis, or one number (``n_parts`` 0)."""
    layout, ops = _ops(named)
    chunks = _part_chunks(x, axis)
    if n_parts:
        chunks = ((n_parts,), *chunks)
    parts = _map(
        _ce_part,
        ops,
        dtype=x.dtype,
        chunks=chunks,
        token=f"{name}-parts",
        new_axis=[0] if n_parts else None,
        layout=layout,
        kind=kind,
        axes=axis,
        lead=bool(n_parts),
        **kw,
    )
    shift = 1 if n_parts else 0
    return _sum_blocks(parts, tuple(a + shift for a in axis), name)


def _slice_results(
    name: str,
    kind: str,
    x: Array,
    sums: Array,
    named: Sequence[tuple[str, Array | None]],
    axis: Axes,
    n_out: int,
    **kw: Any,
) -> Any:
    layout, ops = _ops(named)
    return _map(
        _ce_finish,
        [sums, *ops],
        dtype=x.dtype,
        chunks=_keep_chunks(x, axis),
        token=f"{name}-finish",
        n_out=n_out,
        drop_axis=[0],
        layout=layout,
        kind=kind,
        **kw,
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
    "logsumexp": ("x",),
    "logsumexp_jvp": ("x", "lse", "v"),
    "logsumexp_vjp": ("x", "lse", "g"),
    "logsumexp_weighted": ("x", "b"),
    "softmax_cross_entropy": ("x", "targets"),
    "softmax_cross_entropy_jvp": ("x", "targets", "lse", "v", "u"),
    "softmax_cross_entropy_vjp": ("x", "targets", "lse", "g", "h"),
    "softmax_cross_entropy_with_integer_labels": ("x", "labels"),
    "softmax_cross_entropy_with_integer_labels_jvp": ("x", "labels", "lse", "v"),
    "softmax_cross_entropy_with_integer_labels_vjp": ("x", "labels", "lse", "g", "h"),
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


# -- logsumexp and the softmax cross-entropies: entry points ------------------------------------


def logsumexp(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """One task per block (the NumPy fast path), or, with a split axis, the reduction of the
    blocks' partials ``(max, sum exp(x - max))`` in a tree."""
    prep = _prepare("logsumexp", [x], where, axis)
    if prep is None:
        return NotImplemented
    (x,), w = prep
    if not _split(x, axis):
        return _blocks("logsumexp", [x], w, axis, _keep_chunks(x, axis))
    return _lse_reduce(x, axis, w)


def logsumexp_jvp(
    x: Array,
    lse: Array,
    v: Array,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    xp: Namespace,
) -> Array:
    """``<softmax(x), v>``: the kernel on each block (its part of the dot, with the slice's
    ``lse``), summed over the blocks of a split axis."""
    name = "logsumexp_jvp"
    prep = _prepare(name, [x, lse, v], where, axis)
    if prep is None:
        return NotImplemented
    ops, w = prep
    if not _split(x, axis):
        return _blocks(name, ops, w, axis, _keep_chunks(x, axis))
    return _sum_blocks(_blocks(name, ops, w, axis, _part_chunks(x, axis)), axis, name)


def logsumexp_vjp(
    x: Array,
    lse: Array,
    g: Array,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    xp: Namespace,
) -> Array:
    """``g * softmax(x)``, elementwise given the slice's ``lse``: one task per block."""
    name = "logsumexp_vjp"
    prep = _prepare(name, [x, lse, g], where, axis)
    if prep is None:
        return NotImplemented
    ops, w = prep
    return _blocks(name, ops, w, axis, x.chunks)


def logsumexp_weighted(
    x: Array,
    b: Array | None,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    xp: Namespace,
) -> Any:
    """``(log|sum b exp(x)|, sign)``: one task per block (and one per output), or, with a split
    axis, the log-sum-exp reduction over the entries of nonzero weight, then per-block partial
    sums in a tree."""
    name = "logsumexp_weighted"
    prep = _prepare(name, [x, b], where, axis)
    if prep is None:
        return NotImplemented
    ops, w = prep
    x, b = ops
    if not _split(x, axis):
        return _blocks(name, ops, w, axis, _keep_chunks(x, axis), n_out=2)
    if b is None:
        lse = _lse_reduce(x, axis, w)
        sign = da.map_blocks(  # type: ignore[no-untyped-call]
            _lse_sign, lse, dtype=x.dtype, meta=_meta(x.ndim, x.dtype), token=f"{name}-sign"
        )
        return lse, sign
    mask = b != 0
    mask = mask if w is None else da.logical_and(w, mask)
    m = _lse_reduce(x, axis, mask)
    named = [("x", x), ("b", b), ("lse", m), ("mask", mask)]
    sums = _slice_sums(name, "weighted", x, named, 3, axis, eps=0.0, c=None, lab=None)
    return _slice_results(name, "weighted", x, sums, [("lse", m)], axis, 2)


def softmax_cross_entropy(
    x: Array,
    targets: Array,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    label_smoothing: float = 0.0,
    xp: Namespace,
) -> Any:
    """``(loss, lse)``: one task per block (and one per output), or, with a split axis, the
    log-sum-exp reduction, then per-block sums of the loss terms in a tree."""
    name = "softmax_cross_entropy"
    prep = _prepare(name, [x, targets], where, axis)
    if prep is None:
        return NotImplemented
    ops, w = prep
    x, t = ops
    eps = label_smoothing
    if not _split(x, axis):
        return _blocks(name, ops, w, axis, _keep_chunks(x, axis), 2, label_smoothing=eps)
    c, k = _static_count(x, axis), _class_count(w, axis, eps)
    if eps and k is None and c is None:
        return NotImplemented
    lse = _lse_reduce(x, axis, w)
    named = [("x", x), ("t", t), ("lse", lse), ("k", k), ("w", w)]
    loss = _slice_sums(name, "loss", x, named, 0, axis, eps=eps, c=c, lab=None)
    return loss, lse


def softmax_cross_entropy_jvp(
    x: Array,
    targets: Array,
    lse: Array,
    v: Array,
    u: Array | None,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    label_smoothing: float = 0.0,
    xp: Namespace,
) -> Any:
    """``(dloss, dlse)``: one task per block, or per-block partial sums in a tree."""
    name = "softmax_cross_entropy_jvp"
    prep = _prepare(name, [x, targets, lse, v, u], where, axis)
    if prep is None:
        return NotImplemented
    ops, w = prep
    x, t, lse, v, u = ops
    eps = label_smoothing
    if not _split(x, axis):
        return _blocks(name, ops, w, axis, _keep_chunks(x, axis), 2, label_smoothing=eps)
    c, k = _static_count(x, axis), _class_count(w, axis, eps)
    if eps and k is None and c is None:
        return NotImplemented
    named = [("x", x), ("t", t), ("lse", lse), ("v", v), ("u", u), ("k", k), ("w", w)]
    n = 3 if u is None else 4
    sums = _slice_sums(name, "jvp", x, named, n, axis, eps=eps, c=c, lab=None)
    return _slice_results(name, "jvp", x, sums, [], axis, 2, eps=eps)


def softmax_cross_entropy_vjp(
    x: Array,
    targets: Array,
    lse: Array,
    g: Array,
    h: Array,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    label_smoothing: float = 0.0,
    xp: Namespace,
) -> Any:
    """``(dx, dtargets)``: one task per block, or, with a split axis, the targets' sums per
    slice in a tree, then one task per block."""
    name = "softmax_cross_entropy_vjp"
    prep = _prepare(name, [x, targets, lse, g, h], where, axis)
    if prep is None:
        return NotImplemented
    ops, w = prep
    x, t, lse, g, h = ops
    eps = label_smoothing
    if not _split(x, axis):
        return _blocks(name, ops, w, axis, x.chunks, 2, label_smoothing=eps)
    c, k = _static_count(x, axis), _class_count(w, axis, eps)
    if eps and k is None and c is None:
        return NotImplemented
    s = _slice_sums(
        name, "tsum", x, [("t", t), ("k", k), ("w", w)], 0, axis, eps=eps, c=c, lab=None
    )
    named = [("x", x), ("t", t), ("lse", lse), ("g", g), ("h", h), ("s", s), ("k", k), ("w", w)]
    layout, arrays = _ops(named)
    return _map(
        _ce_vjp_block,
        arrays,
        dtype=x.dtype,
        chunks=x.chunks,
        token=name,
        n_out=2,
        layout=layout,
        eps=eps,
        c=c,
        lab=None,
    )


def softmax_cross_entropy_with_integer_labels(
    x: Array,
    labels: Array,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    xp: Namespace,
) -> Any:
    """``(loss, lse)``: one task per block (and one per output), or, with a split axis, the
    log-sum-exp reduction, then per-block sums of the loss terms in a tree."""
    name = "softmax_cross_entropy_with_integer_labels"
    prep = _prepare(name, [x, labels], where, axis)
    if prep is None:
        return NotImplemented
    ops, w = prep
    x, labels = ops
    eps = label_smoothing
    if not _split(x, axis):
        opts: dict[str, Any] = {"label_smoothing": eps, "ignore_index": ignore_index}
        return _blocks(name, ops, w, axis, _keep_chunks(x, axis), n_out=2, **opts)
    lab = _labels_info(x, axis, ignore_index)
    if lab is None:
        return NotImplemented
    k = _class_count(w, axis, eps)
    lse = _lse_reduce(x, axis, w)
    named = [("x", x), ("labels", labels), ("lse", lse), ("k", k), ("w", w)]
    n = 1 if w is None else 2
    sums = _slice_sums(name, "loss", x, named, n, axis, eps=eps, c=lab["c"], lab=lab)
    loss = _slice_results(name, "loss", x, sums, [("labels", labels)], axis, 1, lab=lab)
    return loss, lse


def softmax_cross_entropy_with_integer_labels_jvp(
    x: Array,
    labels: Array,
    lse: Array,
    v: Array,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    xp: Namespace,
) -> Any:
    """``(dloss, dlse)``: one task per block, or per-block partial sums in a tree."""
    name = "softmax_cross_entropy_with_integer_labels_jvp"
    prep = _prepare(name, [x, labels, lse, v], where, axis)
    if prep is None:
        return NotImplemented
    ops, w = prep
    x, labels, lse, v = ops
    eps = label_smoothing
    if not _split(x, axis):
        opts: dict[str, Any] = {"label_smoothing": eps, "ignore_index": ignore_index}
        return _blocks(name, ops, w, axis, _keep_chunks(x, axis), n_out=2, **opts)
    lab = _labels_info(x, axis, ignore_index)
    if lab is None:
        return NotImplemented
    k = _class_count(w, axis, eps)
    named = [("x", x), ("labels", labels), ("lse", lse), ("v", v), ("k", k), ("w", w)]
    sums = _slice_sums(name, "jvp", x, named, 3, axis, eps=eps, c=lab["c"], lab=lab)
    return _slice_results(name, "jvp", x, sums, [], axis, 2, eps=eps)


def softmax_cross_entropy_with_integer_labels_vjp(
    x: Array,
    labels: Array,
    lse: Array,
    g: Array,
    h: Array,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    xp: Namespace,
) -> Array:
    """``dx``: one task per block, or, with a split axis, the targets' sums per slice in a
    tree, then one task per block."""
    name = "softmax_cross_entropy_with_integer_labels_vjp"
    prep = _prepare(name, [x, labels, lse, g, h], where, axis)
    if prep is None:
        return NotImplemented
    ops, w = prep
    x, labels, lse, g, h = ops
    eps = label_smoothing
    if not _split(x, axis):
        opts: dict[str, Any] = {"label_smoothing": eps, "ignore_index": ignore_index}
        return _blocks(name, ops, w, axis, x.chunks, **opts)
    lab = _labels_info(x, axis, ignore_index)
    if lab is None:
        return NotImplemented
    k = _class_count(w, axis, eps)
    c = lab["c"]
    named = [("x", x), ("labels", labels), ("k", k), ("w", w)]
    s = _slice_sums(name, "tsum", x, named, 0, axis, eps=eps, c=c, lab=lab)
    named = [("x", x), ("labels", labels), ("lse", lse), ("g", g), ("h", h), ("s", s), ("k", k)]
    layout, arrays = _ops([*named, ("w", w)])
    return _map(
        _ce_vjp_block,
        arrays,
        dtype=x.dtype,
        chunks=x.chunks,
        token=name,
        layout=layout,
        eps=eps,
        c=c,
        lab=lab,
    )
