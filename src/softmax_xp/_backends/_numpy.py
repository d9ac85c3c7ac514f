"""Layer 3: numpy fast paths.

Each function here has the signature of its twin in ``softmax_xp._generic`` and returns
``NotImplemented`` where it does not apply. Kernels not defined here use the generic code.

Every kernel is memory-bound, so the aim is to move each byte once:

- **No output-sized temporaries.** The result buffer is allocated once and every step (shift,
  ``exp``, scale) is written into it in place; the only other arrays are per-slice reductions and
  scratch the size of one cache block.
- **Row blocks that stay in cache.** The slices are cut into blocks of about ``_BLOCK_BYTES`` per
  array, so the second and later passes over a block read it from L2, not from memory.
- **Threads over row blocks.** Large inputs are split between the cores. The C kernels do it
  themselves: one call hands its rows to the C thread pool (``_rows_pool.c``), the calling thread
  one of the workers, with no Python in between. The NumPy ufunc path (which releases the GIL
  inside its loops) uses a module-level Python pool, created lazily under a lock, the calling
  thread again one of them. Nested calls from a pool thread run serially (no deadlock).
- **Fused C row kernels** (``_rows.c``, built with the package where a C compiler is found).
  Unmasked float32/float64 kernels whose slices are contiguous rows go to C, where the maximum,
  ``exp`` and its sum, and the scaling take three passes over a row (two read it from cache), with
  one vectorised ``exp`` and block sums totalled in double: the copy's memory traffic, and no
  per-row Python or ufunc overhead (rows of up to two vectors go four at a time). Everything else
  (masks, slices that are not contiguous rows, unaligned or byte-swapped data, a build without the
  extension) takes the NumPy ufunc path below.
- **Short rows.** A NumPy reduction over a short contiguous axis (say 16 numbers) costs far more
  than the bytes it reads. Blocks of such rows are copied transposed into cache-sized scratch,
  where every reduction runs across rows (vectorised), and copied back.

The arithmetic is the generic kernel's, step for step (same shift, same ``where`` handling; the
one liberty is scaling by ``1 / sum`` instead of dividing, which differs by an ulp), so results
agree with it, NaN placement included. Floating-point warnings
(``inf - inf`` and the like, which the generic code can raise) are silenced inside a local
``np.errstate`` in each worker; no global state is changed.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .. import _generic
from ._host import rows as _rows

Array = Any
Namespace = Any
NDArray = np.ndarray[Any, Any]
Axes = tuple[int, ...]

#: Bytes of one array in one block. The operands' and the result's blocks then fit in L2 (2 MiB per
#: core here) or at worst L3; smaller blocks cost more in per-call overhead than they save (measured:
#: 512 KiB was the best or within noise of the best of 64 KiB to 2 MiB on the four benchmark shapes).
_BLOCK_BYTES = 512 * 1024
#: Rows at most this long (and contiguous) take the transposed short-row path.
_SHORT_C = 32
#: Bytes of one operand per task handed to a thread by the C path (tasks are taken dynamically;
#: the C kernels work row by row, so this only sets the scheduling grain).
_ROWS_TASK_BYTES = 1024 * 1024
#: Below this many bytes of input the threads cost more than they save.
_THREAD_MIN_BYTES = 2 * 1024 * 1024

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_local = threading.local()


def _n_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(1, _n_threads() - 1),
                thread_name_prefix="softmax_xp",
                initializer=_mark_worker,
            )
        return _pool


def _mark_worker() -> None:
    _local.in_worker = True


def _threads_for(nbytes: int) -> int:
    """How many threads a call over ``nbytes`` of input (per operand) is worth: 1 below the
    threshold and inside a pool thread or a Dask task (which already fill the cores)."""
    if nbytes < _THREAD_MIN_BYTES or getattr(_local, "in_worker", False):
        return 1
    return _n_threads()


def _run_parallel(n_blocks: int, nbytes: int, work: Callable[[int, int], None]) -> None:
    """Run ``work(lo, hi)`` over block indices ``[0, n_blocks)``, split between the cores."""
    n_threads = _threads_for(nbytes)
    if n_threads == 1 or n_blocks < 2:
        work(0, n_blocks)
        return
    # Dynamic scheduling: every thread (the caller included) takes the next block from a shared
    # counter, so a thread slowed by another process on its core takes fewer blocks instead of
    # holding up the call with a fixed half of the work. itertools.count's next() is atomic.
    counter = itertools.count()

    def drain() -> None:
        while (b := next(counter)) < n_blocks:
            work(b, b + 1)

    pool = _get_pool()
    futures: list[Future[None]] = [pool.submit(drain) for _ in range(min(n_threads, n_blocks) - 1)]
    try:
        drain()
    finally:
        for f in futures:
            if not f.cancel():  # a helper that never started (pool busy) has nothing left to do
                f.result()


#: Whether the C kernels split a large call between the cores on their own C thread pool (one
#: call, no Python pool wake) or, off, get row pieces from this module's Python pool, as before
#: the C pool existed (kept for the benchmark, which compares both in one run).
_C_POOL = True


def _c_run(call: Callable[[slice, int], object], n_rows: int, row_bytes: int, nbytes: int) -> None:
    """Run a C row kernel over rows ``[0, n_rows)`` of its operands: ``call(rows, threads)`` runs
    it on the rows ``rows`` with up to ``threads`` threads of the C pool. A large call is split
    between the cores by the C pool, or with ``_C_POOL`` off by the Python pool in pieces of
    about ``_ROWS_TASK_BYTES`` (``row_bytes`` per row)."""
    threads = _threads_for(nbytes)
    if threads == 1 or _C_POOL:
        call(slice(None), threads)
        return
    step = max(1, _ROWS_TASK_BYTES // max(1, row_bytes))

    def work(lo: int, hi: int) -> None:
        for b in range(lo, hi):
            call(slice(b * step, (b + 1) * step), 1)

    _run_parallel(-(-n_rows // step), nbytes, work)


# -- layout --------------------------------------------------------------------------------------


class _Layout:
    """Operands viewed so that blocks are slices along axis 0 and reductions run over ``red``.

    ``views[i]`` are views (never copies) of the operands and of the result: 2-D ``(N, C)`` where
    the batch axes and the softmax axes each merge without a copy, else the operands permuted to
    ``batch + axis`` order (blocks along the first batch axis), with a leading length-1 axis when
    there are no batch axes.
    """

    def __init__(self, arrays: Sequence[NDArray], axis: Axes) -> None:
        ndim = arrays[0].ndim
        batch = tuple(a for a in range(ndim) if a not in axis)
        perm = batch + axis
        shape = arrays[0].shape
        n = math.prod(shape[a] for a in batch)
        c = math.prod(shape[a] for a in axis)
        permuted = [a.transpose(perm) for a in arrays]
        try:
            self.views = [np.reshape(v, (n, c), copy=False) for v in permuted]
            self.red: Axes = (1,)
        except ValueError:  # some operand does not merge without a copy: keep the n-d views
            if batch:
                self.views = permuted
            else:
                self.views = [v[np.newaxis] for v in permuted]
            self.red = tuple(range(self.views[0].ndim - len(axis), self.views[0].ndim))
        self.n_rows = self.views[0].shape[0]
        self.row_items = math.prod(self.views[0].shape[1:])
        itemsize = arrays[0].itemsize
        self.short = (
            self.red == (1,)
            and c <= _SHORT_C
            and self.n_rows > 1
            and all(v.strides[1] == v.itemsize or c == 1 for v in self.views[:1])
        )
        self.block = max(1, _BLOCK_BYTES // max(1, self.row_items * itemsize))
        self.n_blocks = -(-self.n_rows // self.block)
        self.nbytes = self.n_rows * self.row_items * itemsize


#: ``kernel(operand_blocks, work, red, dest)``: ``work`` is a block-sized buffer the kernel may
#: use for intermediate passes, ``dest`` receives the result (the same array, or the strided
#: output block that the transposed short-row path writes straight into).
Kernel = Callable[[Sequence[NDArray], NDArray, Axes, NDArray], None]


#: ``alloc(shape, dtype)``: allocates a kernel's (uninitialised) result.
Alloc = Callable[[tuple[int, ...], Any], NDArray]

#: ``rows(*operand_rows, out_rows, threads)``: a C row kernel bound to its options.
RowsKernel = Callable[..., object]


def _rows_apply(lay: _Layout) -> bool:
    """Whether the C kernels can take these views: 2-D, aligned, contiguous native-endian rows."""
    return lay.red == (1,) and all(
        v.dtype.isnative and v.flags.aligned and (v.strides[1] == v.itemsize or v.shape[1] == 1)
        for v in lay.views
    )


def _apply(
    kernel: Kernel,
    operands: Sequence[NDArray],
    out: NDArray,
    axis: Axes,
    rows: RowsKernel | None = None,
) -> NDArray:
    """Run ``kernel(operand_blocks, out_block, red)`` over cache-sized row blocks, or ``rows``
    (the same computation in C) over row ranges where the C path applies."""
    lay = _Layout([*operands, out], axis)
    ins, ov = lay.views[:-1], lay.views[-1]
    bsz = lay.block

    if rows is not None and _rows_apply(lay):
        c_rows, views = rows, lay.views

        def call(s: slice, threads: int) -> None:
            c_rows(*(v[s] for v in views), threads)

        _c_run(call, lay.n_rows, lay.row_items * out.itemsize, lay.nbytes)
        return out

    if lay.short:
        c = lay.row_items

        def work(lo: int, hi: int) -> None:
            scratch = [np.empty((c, bsz), dtype=v.dtype) for v in ins]
            oscr = np.empty((c, bsz), dtype=ov.dtype)
            with np.errstate(all="ignore"):
                for b in range(lo, hi):
                    r0 = b * bsz
                    r1 = min(r0 + bsz, lay.n_rows)
                    k = r1 - r0
                    blocks = []
                    for v, s in zip(ins, scratch, strict=True):
                        np.copyto(s[:, :k], v[r0:r1].T)
                        blocks.append(s[:, :k])
                    kernel(blocks, oscr[:, :k], (0,), ov[r0:r1].T)

    else:
        red = lay.red

        def work(lo: int, hi: int) -> None:
            with np.errstate(all="ignore"):
                for b in range(lo, hi):
                    r0 = b * bsz
                    r1 = min(r0 + bsz, lay.n_rows)
                    ob = ov[r0:r1]
                    kernel([v[r0:r1] for v in ins], ob, red, ob)

    _run_parallel(lay.n_blocks, lay.nbytes, work)
    return out


# -- kernels on one block (the generic kernels' arithmetic, in place) ----------------------------


def _rsum(a: NDArray, red: Axes) -> NDArray:
    """Sums over ``red`` (kept as length-1 axes).

    NumPy's pairwise sum along a contiguous axis is slower than its elementwise adds, so long
    float32 rows are summed as 16 interleaved partial sums (elementwise adds of 16 contiguous
    segments, then one short pairwise sum): about twice as fast and as accurate. BLAS (a product
    with a vector of ones) would be faster still on an idle machine, but OpenBLAS's own threads
    stall for milliseconds when the cores are shared, and they would nest inside ours.
    """
    if red == (1,) and a.ndim == 2 and a.dtype == np.float32 and a.shape[1] >= 8192:
        c = a.shape[1]
        if c % 16 == 0 and a.strides[1] == a.itemsize:
            parts = np.add.reduce(np.reshape(a, (a.shape[0], 16, c // 16)), axis=1)
            s: NDArray = np.sum(parts, axis=1, keepdims=True)
            return s
    r: NDArray = np.sum(a, axis=red, keepdims=True)
    return r


def _rdot(a: NDArray, b: NDArray, out: NDArray, red: Axes) -> NDArray:
    """``sum(a * b)`` over ``red``, using ``out`` (the block's result buffer) as scratch.

    float64 rows use ``np.einsum`` (NumPy's own sum-of-products loop, no BLAS): one pass instead
    of two, and its per-lane sums stay far inside float64 tolerances. float32 keeps the pairwise
    (or 16-way) sum, which is more accurate for long rows than einsum's accumulation.
    """
    if red == (1,) and a.ndim == 2 and a.dtype == np.float64 and a.shape[1] >= _SHORT_C:
        d: NDArray = np.einsum("ij,ij->i", a, b)[:, np.newaxis]
        return d
    np.multiply(a, b, out=out)
    return _rsum(out, red)


def _softmax_block(
    ops: Sequence[NDArray], out: NDArray, red: Axes, dest: NDArray, log: bool
) -> None:
    x = ops[0]
    w = ops[1] if len(ops) > 1 else None
    if w is None:
        m = np.max(x, axis=red, keepdims=True)
        np.subtract(x, m, out=out)
    else:
        out.fill(-np.inf)
        np.copyto(out, x, where=w)  # xm = where(w, x, -inf)
        m = np.max(out, axis=red, keepdims=True)
        none_valid = np.logical_not(np.any(w, axis=red, keepdims=True))
        np.copyto(m, 0.0, where=none_valid)  # an all-masked slice is shifted by 0
        np.subtract(out, m, out=out)
    if log:
        s = _rsum(np.exp(out), red)  # block-sized scratch
        if w is not None:
            np.copyto(s, 1.0, where=none_valid)
        np.log(s, out=s)
        np.subtract(out, s, out=dest)
        if w is not None:
            np.copyto(dest, -np.inf, where=np.logical_not(w))
    else:
        np.exp(out, out=out)
        s = _rsum(out, red)
        if w is not None:
            np.copyto(s, 1.0, where=none_valid)
        # s is in [1, C] (the maximum contributes exp(0) = 1; all-masked slices use 1) or NaN,
        # so scaling by 1/s is safe; it costs half a division pass and differs by an ulp.
        np.reciprocal(s, out=s)
        np.multiply(out, s, out=dest)
        if w is not None:
            np.copyto(dest, 0.0, where=np.logical_not(w))


def _softmax_prod_block(ops: Sequence[NDArray], out: NDArray, red: Axes, dest: NDArray) -> None:
    """``y * (v - sum(v * y))``: the softmax JVP and VJP (J is symmetric)."""
    y, v = ops
    d = _rdot(v, y, out, red)
    np.subtract(v, d, out=out)
    np.multiply(out, y, out=dest)


def _log_vjp_block(ops: Sequence[NDArray], out: NDArray, red: Axes, dest: NDArray) -> None:
    """``g - exp(l) * sum(g)``, with ``g`` zeroed and the result zero where masked out."""
    l, g = ops[0], ops[1]
    w = ops[2] if len(ops) > 2 else None
    if w is None:
        s = _rsum(g, red)
        np.exp(l, out=out)
        np.multiply(out, s, out=out)
        np.subtract(g, out, out=dest)
        return
    gm = np.zeros_like(g)  # block-sized scratch
    np.copyto(gm, g, where=w)
    s = _rsum(gm, red)
    np.exp(l, out=out)
    np.multiply(out, s, out=out)
    np.subtract(gm, out, out=dest)
    np.copyto(dest, 0.0, where=np.logical_not(w))


def _log_jvp_block(ops: Sequence[NDArray], out: NDArray, red: Axes, dest: NDArray) -> None:
    """``v - sum(exp(l) * v)``, with ``v`` zeroed and the result zero where masked out."""
    l, v = ops[0], ops[1]
    w = ops[2] if len(ops) > 2 else None
    if w is None:
        np.exp(l, out=out)
        d = _rdot(out, v, out, red)
        np.subtract(v, d, out=dest)
        return
    np.copyto(out, 0.0)
    np.copyto(out, v, where=w)  # out = v masked
    e = np.exp(l)  # block-sized scratch
    d = _rdot(e, out, e, red)
    np.subtract(out, d, out=dest)
    np.copyto(dest, 0.0, where=np.logical_not(w))


# -- entry points -------------------------------------------------------------------------------


def _applies(*arrays: Array) -> bool:
    a = arrays[0]
    return (
        all(type(b) is np.ndarray for b in arrays)
        and a.dtype in (np.float32, np.float64)
        and all(b.dtype == a.dtype for b in arrays)
        and a.size > 0
    )


def _mask(where: Array | None, x: NDArray) -> NDArray | None:
    if where is None:
        return None
    w = np.asarray(where)
    if w.dtype != np.bool_ or w.shape != x.shape:
        return None
    return w


def _forward(
    x: Array, axis: Axes, where: Array | None, log: bool, alloc: Alloc = np.empty
) -> Array:
    if not _applies(x) or not isinstance(axis, tuple):
        return NotImplemented
    w = _mask(where, x)
    if where is not None and w is None:
        return NotImplemented
    out = alloc(x.shape, x.dtype)
    ops = [x] if w is None else [x, w]

    def kernel(blocks: Sequence[NDArray], ob: NDArray, red: Axes, dest: NDArray) -> None:
        _softmax_block(blocks, ob, red, dest, log)

    rows = None
    if _rows is not None and w is None:
        fwd = _rows.forward

        def rows(xr: NDArray, yr: NDArray, threads: int) -> None:
            fwd(xr, yr, log, threads)

    return _apply(kernel, ops, out, axis, rows)


def softmax(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """Softmax in place into one fresh buffer, in cache blocks, on all cores."""
    return _forward(x, axis, where, log=False)


def log_softmax(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """log_softmax in place into one fresh buffer, in cache blocks, on all cores."""
    return _forward(x, axis, where, log=True)


def _pair(
    kernel: Kernel,
    a: Array,
    b: Array,
    axis: Axes,
    where: Array | None,
    rows: str,
    alloc: Alloc = np.empty,
) -> Array:
    if not _applies(a, b) or a.shape != b.shape:
        return NotImplemented
    w = _mask(where, a)
    if where is not None and w is None:
        return NotImplemented
    out = alloc(a.shape, a.dtype)
    if w is not None:
        return _apply(kernel, [a, b, w], out, axis)
    return _apply(kernel, [a, b], out, axis, None if _rows is None else getattr(_rows, rows))


def softmax_jvp(y: Array, v: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y * (v - <y, v>)`` with no temporary beyond the result."""
    return _pair(_softmax_prod_block, y, v, axis, None, "prod")


def softmax_vjp(y: Array, g: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y * (g - <g, y>)`` with no temporary beyond the result."""
    return _pair(_softmax_prod_block, y, g, axis, None, "prod")


def log_softmax_jvp(
    l: Array,
    v: Array,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    xp: Namespace,
) -> Array:
    """``v - <exp(l), v>`` with no temporary beyond the result."""
    return _pair(_log_jvp_block, l, v, axis, where, "log_jvp")


def log_softmax_vjp(
    l: Array,
    g: Array,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    xp: Namespace,
) -> Array:
    """``g - exp(l) * sum(g)`` with no temporary beyond the result."""
    return _pair(_log_vjp_block, l, g, axis, where, "log_vjp")


def _jacobian(y: Array, axis: Axes, log: bool, alloc: Alloc = np.empty) -> Array:
    if not _applies(y):
        return NotImplemented
    rows = _generic.to_rows(y, axis, np)  # N·C numbers: a copy here costs little
    batch = rows.shape[:-1]
    c = rows.shape[-1]
    if _rows is not None and y.dtype.isnative and y.flags.aligned:
        r2c = np.ascontiguousarray(np.reshape(rows, (-1, c)))
        outc = alloc((*batch, c, c), y.dtype)
        o2 = np.reshape(outc, (-1, c))
        jac = _rows.jacobian

        def call(s: slice, threads: int) -> None:
            o = o2 if s.stop is None else o2[s.start * c : s.stop * c]
            jac(r2c[s], o, log, threads)

        _c_run(call, r2c.shape[0], c * c * y.itemsize, outc.nbytes)
        return outc
    r2 = np.reshape(rows, (-1, c))
    if log:
        with np.errstate(all="ignore"):  # l from no forward pass (l > log(max)) overflows quietly
            r2 = np.exp(r2)
    out = alloc((*batch, c, c), y.dtype)
    o3 = np.reshape(out, (-1, c, c))
    n = r2.shape[0]
    bsz = max(1, _BLOCK_BYTES // max(1, c * c * y.itemsize))

    def work(lo: int, hi: int) -> None:
        with np.errstate(all="ignore"):
            for b in range(lo, hi):
                r = r2[b * bsz : (b + 1) * bsz]
                o = o3[b * bsz : (b + 1) * bsz]
                diag = np.reshape(o, (o.shape[0], c * c))[:, :: c + 1]
                # Broadcasting -y_j down the rows, then scaling the block in place while it is
                # in cache, is about twice as fast in NumPy as one broadcast outer product.
                np.copyto(o, np.negative(r)[:, np.newaxis, :])
                if log:  # δ_ij - p_j
                    np.subtract(1.0, r, out=diag)
                else:  # y_i (δ_ij - y_j)
                    np.multiply(o, r[:, :, np.newaxis], out=o)
                    np.multiply(r, np.subtract(1.0, r), out=diag)

    _run_parallel(-(-n // bsz), out.nbytes, work)
    return out


def softmax_jacobian(y: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """Dense ``diag(y) - y yᵀ`` written once (C rows kernel, or NumPy blocks), on all cores."""
    return _jacobian(y, axis, log=False)


def log_softmax_jacobian(l: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """Dense ``I - 1 softmaxᵀ`` written once, in blocks, on all cores."""
    return _jacobian(l, axis, log=True)


# -- logsumexp (C rows only) ---------------------------------------------------------------------


def _lse_shape(x: NDArray, axis: Axes) -> tuple[int, ...]:
    return tuple(1 if a in axis else d for a, d in enumerate(x.shape))


def _small_last(x: NDArray, axis: Axes) -> bool:
    """The direct route of ``hot``: C-contiguous, over the last axis, too small for threads."""
    return axis == (x.ndim - 1,) and x.nbytes < _THREAD_MIN_BYTES and _direct(x)


def logsumexp(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """``log(sum(exp(x)))`` over ``axis`` (kept as length-1 axes) by the C row kernels, which
    read each row once (a streaming maximum and sum).

    ``NotImplemented`` where the softmax C path would not run: a mask, another dtype, an empty
    input, slices that are not contiguous rows, unaligned or byte-swapped data, or a build
    without the C kernels."""
    rows = _rows
    if rows is None or where is not None or not _applies(x) or not isinstance(axis, tuple):
        return NotImplemented
    out = np.empty(_lse_shape(x, axis), x.dtype)
    if _small_last(x, axis):
        rows.logsumexp(np.reshape(x, (-1, x.shape[-1])), np.reshape(out, (-1,)))
        return out
    lay = _Layout([x], axis)
    if not _rows_apply(lay):
        return NotImplemented
    xv, ov = lay.views[0], np.reshape(out, (lay.n_rows,))
    lse = rows.logsumexp

    def call(s: slice, threads: int) -> None:
        lse(xv[s], ov[s], threads)

    _c_run(call, lay.n_rows, lay.row_items * x.itemsize, lay.nbytes)
    return out


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
    """``g * exp(x - lse)`` (``lse`` and ``g`` in the keepdims shape) by the C row kernels in
    one pass, with the generic kernel's (softmax's) edge values: NaN throughout a slice whose
    ``lse`` is not finite.

    ``NotImplemented`` where :func:`logsumexp` declines, or where ``lse`` or ``g`` is not of
    the keepdims shape, aligned and native."""
    rows = _rows
    if rows is None or where is not None or not isinstance(axis, tuple):
        return NotImplemented
    if not _applies(x, lse, g) or lse.shape != _lse_shape(x, axis) or g.shape != lse.shape:
        return NotImplemented
    if not all(a.dtype.isnative and a.flags.aligned for a in (lse, g)):
        return NotImplemented
    out = np.empty(x.shape, x.dtype)
    n = lse.size
    lv, gv = np.reshape(lse, (n,)), np.reshape(g, (n,))  # views, or copies of n numbers
    if _small_last(x, axis):
        c = x.shape[-1]
        rows.logsumexp_vjp(np.reshape(x, (-1, c)), lv, gv, np.reshape(out, (-1, c)))
        return out
    lay = _Layout([x, out], axis)
    if not _rows_apply(lay):
        return NotImplemented
    xv, ov = lay.views
    vjp = rows.logsumexp_vjp

    def call(s: slice, threads: int) -> None:
        vjp(xv[s], lv[s], gv[s], ov[s], threads)

    _c_run(call, n, lay.row_items * x.itemsize, lay.nbytes)
    return out


# -- the softmax cross-entropy with integer labels (C rows only) ----------------------------------

_INT64 = np.iinfo(np.int64)


def _label_rows(labels: Array, shape: tuple[int, ...]) -> NDArray | None:
    """``labels`` (an integer array of the keepdims ``shape``) as n native int64 numbers, one per
    slice in row order: a view where it already is one, else a copy of n numbers; None for what
    the C kernels cannot take (another type or shape, or a dtype that does not fit in int64)."""
    if type(labels) is not np.ndarray or labels.shape != shape:
        return None
    if labels.dtype.kind not in "iu" or not np.can_cast(labels.dtype, np.int64):
        return None
    return np.require(np.reshape(labels, (labels.size,)), np.int64, ("C", "A"))


def _ignore(ignore_index: int | None) -> tuple[int, bool]:
    """``(ignore, has_ignore)`` for the C kernels: no int64 label equals an index beyond int64."""
    if ignore_index is None or not _INT64.min <= ignore_index <= _INT64.max:
        return 0, False
    return int(ignore_index), True


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
    """``(loss, lse)`` (keepdims) by the C row kernels, which read each row once: the lse
    streamed as in :func:`logsumexp`, with the smoothing term's sum of the logits in the same
    pass, and the label's logit one load. The generic kernel's values, edges included (0 for an
    ignored label, NaN for one out of range).

    ``NotImplemented`` where :func:`logsumexp` declines, or where ``labels`` is not a NumPy
    integer array of the keepdims shape whose dtype fits in int64."""
    rows = _rows
    if rows is None or where is not None or not _applies(x) or not isinstance(axis, tuple):
        return NotImplemented
    shape = _lse_shape(x, axis)
    lab = _label_rows(labels, shape)
    if lab is None:
        return NotImplemented
    ignore, has_ignore = _ignore(ignore_index)
    eps = float(label_smoothing)
    loss, lse = np.empty(shape, x.dtype), np.empty(shape, x.dtype)
    lo, ls = np.reshape(loss, (lab.size,)), np.reshape(lse, (lab.size,))
    if _small_last(x, axis):
        rows.ce_labels(np.reshape(x, (-1, x.shape[-1])), lab, eps, ignore, has_ignore, lo, ls)
        return loss, lse
    lay = _Layout([x], axis)
    if not _rows_apply(lay):
        return NotImplemented
    xv = lay.views[0]
    ce = rows.ce_labels

    def call(s: slice, threads: int) -> None:
        ce(xv[s], lab[s], eps, ignore, has_ignore, lo[s], ls[s], threads)

    _c_run(call, lay.n_rows, lay.row_items * x.itemsize, lay.nbytes)
    return loss, lse


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
    """``(g S + h) softmax(x) - g t`` (``lse``, ``g`` and ``h`` in the keepdims shape; ``t`` the
    smoothed one-hot target of a label that counts, else 0, and ``S`` its sum) by the C row
    kernels in one pass: read ``x``, write the result. NaN throughout a slice whose ``lse`` is
    not finite, as in the generic kernel.

    ``NotImplemented`` where :func:`softmax_cross_entropy_with_integer_labels` declines, or
    where ``lse``, ``g`` or ``h`` is not of the keepdims shape, aligned and native."""
    rows = _rows
    if rows is None or where is not None or not isinstance(axis, tuple):
        return NotImplemented
    if not _applies(x, lse, g, h):
        return NotImplemented
    shape = _lse_shape(x, axis)
    if any(a.shape != shape for a in (lse, g, h)):
        return NotImplemented
    if not all(a.dtype.isnative and a.flags.aligned for a in (lse, g, h)):
        return NotImplemented
    lab = _label_rows(labels, shape)
    if lab is None:
        return NotImplemented
    ignore, has_ignore = _ignore(ignore_index)
    eps = float(label_smoothing)
    out = np.empty_like(x)  # x's memory order: its slices' rows are out's too
    n = lab.size
    lv, gv, hv = (np.reshape(a, (n,)) for a in (lse, g, h))  # views, or copies of n numbers
    if _small_last(x, axis):
        c = x.shape[-1]
        rows.ce_labels_vjp(
            np.reshape(x, (-1, c)), lab, lv, gv, hv, eps, ignore, has_ignore,
            np.reshape(out, (-1, c)),
        )  # fmt: skip
        return out
    lay = _Layout([x, out], axis)
    if not _rows_apply(lay):
        return NotImplemented
    xv, ov = lay.views
    vjp = rows.ce_labels_vjp

    def call(s: slice, threads: int) -> None:
        vjp(xv[s], lab[s], lv[s], gv[s], hv[s], eps, ignore, has_ignore, ov[s], threads)

    _c_run(call, n, lay.row_items * x.itemsize, lay.nbytes)
    return out


# -- results for other frameworks ---------------------------------------------------------------


def run_into(
    name: str, arrays: Sequence[NDArray], axis: Axes, where: NDArray | None, alloc: Alloc
) -> Any:
    """Kernel ``name`` of this module on NumPy ``arrays``, its result allocated by ``alloc``;
    ``NotImplemented`` where the fast path does not apply."""
    if name in ("softmax", "log_softmax"):
        return _forward(arrays[0], axis, where, name == "log_softmax", alloc)
    if name in ("softmax_jacobian", "log_softmax_jacobian"):
        return _jacobian(arrays[0], axis, name == "log_softmax_jacobian", alloc)
    kernel, rows = {
        "softmax_jvp": (_softmax_prod_block, "prod"),
        "softmax_vjp": (_softmax_prod_block, "prod"),
        "log_softmax_jvp": (_log_jvp_block, "log_jvp"),
        "log_softmax_vjp": (_log_vjp_block, "log_vjp"),
    }[name]
    return _pair(kernel, arrays[0], arrays[1], axis, where, rows, alloc)


# -- the common call's direct route (see softmax_xp._hot) ---------------------------------------

_PAIRS: dict[str, tuple[Kernel, str]] = {
    "softmax_jvp": (_softmax_prod_block, "prod"),
    "softmax_vjp": (_softmax_prod_block, "prod"),
    "log_softmax_jvp": (_log_jvp_block, "log_jvp"),
    "log_softmax_vjp": (_log_vjp_block, "log_vjp"),
}


def _direct(a: NDArray) -> bool:
    f = a.flags
    return bool(f.c_contiguous and f.aligned)


def hot(name: str, axis: Axes, xp: Namespace, sample: Any) -> Callable[..., Any] | None:
    """The route of kernel ``name`` for plain float32/float64 arrays over ``axis``: C-contiguous
    input over the last axis, too small for threads, goes straight to the C row kernel (no layout
    object, no pool); anything else runs this module's kernel (the generic one where it declines)."""
    if type(sample) is not np.ndarray or sample.dtype not in (np.float32, np.float64):
        return None
    last = axis == (sample.ndim - 1,)
    if name in ("softmax", "log_softmax"):
        log = name == "log_softmax"
        fwd = None if _rows is None else _rows.forward

        def forward(x: NDArray) -> Any:
            if fwd is not None and last and x.nbytes < _THREAD_MIN_BYTES and x.size and _direct(x):
                c = x.shape[-1]
                out = np.empty(x.shape, x.dtype)
                fwd(x.reshape(-1, c), out.reshape(-1, c), log)
                return out
            out = _forward(x, axis, None, log)
            return (
                out if out is not NotImplemented else getattr(_generic, name)(x, axis=axis, xp=xp)
            )

        return forward
    if name in ("logsumexp", "softmax_cross_entropy_with_integer_labels"):
        return _reduced_route(name, axis, xp)
    if name not in _PAIRS:
        return None
    kernel, rows_name = _PAIRS[name]
    rows = None if _rows is None else getattr(_rows, rows_name)
    generic = getattr(_generic, name)

    def pair(a: NDArray, b: Any) -> Any:
        if type(b) is not np.ndarray or b.dtype != a.dtype or b.shape != a.shape:
            return NotImplemented
        if (
            rows is not None
            and last
            and a.nbytes < _THREAD_MIN_BYTES
            and a.size
            and _direct(a)
            and _direct(b)
        ):
            c = a.shape[-1]
            out = np.empty(a.shape, a.dtype)
            rows(a.reshape(-1, c), b.reshape(-1, c), out.reshape(-1, c))
            return out
        out = _pair(kernel, a, b, axis, None, rows_name)
        return out if out is not NotImplemented else generic(a, b, axis=axis, xp=xp)

    return pair


def _reduced_route(name: str, axis: Axes, xp: Namespace) -> Callable[..., Any]:
    """The route of logsumexp (``run(x)``) or of the integer-label cross-entropy (``run(x,
    labels)``, labels in the keepdims shape): this module's kernel, else the generic one, in the
    public (batch) shape."""
    fast, generic = globals()[name], getattr(_generic, name)

    def reduced(*arrays: Any) -> Any:
        out = fast(*arrays, axis=axis, xp=xp)
        if out is NotImplemented:
            out = generic(*arrays, axis=axis, xp=xp)
        return np.squeeze(out[0] if isinstance(out, tuple) else out, axis)

    return reduced
