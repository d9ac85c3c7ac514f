"""Structured Jacobian operators: ``diag(y) - y yᵀ`` (softmax) and ``I - 1 pᵀ`` (log_softmax)
kept as the forward output, in O(N·C) memory instead of the dense O(N·C²).

Layout
------
A vector ``v`` for :meth:`~SoftmaxJacobian.matvec` has the shape of the forward output ``y``: each
slice along ``axis`` is one vector of length ``C`` (the product of the sizes along ``axis``), so a
batch of N slices is N independent ``(C, C)`` operators applied at once. A block of k vectors for
:meth:`~SoftmaxJacobian.matmat` is ``y.shape + (k,)``: one extra trailing axis indexes the vectors.
For a ``(N, C)`` input with ``axis=-1`` that is ``(N, C, k)``, exactly ``J @ V`` for the dense
``(N, C, C)`` Jacobian of :func:`softmax_jacobian`.

Validation goes through layer 1 (``_validation``); products go through the backend dispatch
(``_backends.call``, layer 3, with the generic kernels of layer 2 behind it), so every backend's
fast path is used. The solves and the diagonal are a handful of array-API calls written here.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

import array_api_compat

from . import _generic
from . import _validation as _v
from ._backends import call as _call

Array = Any
Namespace = Any
Axis = int | tuple[int, ...] | None

__all__ = [
    "DEFAULT_DENSE_BUDGET",
    "DENSE_BUDGET_ENV",
    "LogSoftmaxJacobian",
    "SoftmaxJacobian",
    "check_dense_budget",
    "dense_budget",
    "vmap_sizes",
]

#: The environment variable read (at every call) for the dense-Jacobian memory budget.
DENSE_BUDGET_ENV = "SOFTMAX_XP_MAX_DENSE_BYTES"
#: The default budget for one dense Jacobian result: 2 GiB.
DEFAULT_DENSE_BUDGET = 2 * 1024**3

_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


_SIZE_HELP = "give bytes (e.g. 4294967296), a size with a unit (e.g. 8GiB, 500MB), or 'inf'"


def _parse_bytes(text: str, what: str = f"environment variable {DENSE_BUDGET_ENV}") -> float:
    s = text.strip()
    if s.lower() in ("inf", "none", "unlimited"):
        return math.inf
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([A-Za-z]*)", s)
    if m is None or m.group(2).upper() not in _UNITS:
        raise ValueError(f"{what}={text!r} is not a size: {_SIZE_HELP}")
    return float(m.group(1)) * _UNITS[m.group(2).upper()]


def dense_budget(max_bytes: float | str | None = None, func: str = "dense_budget") -> float:
    """The dense-Jacobian budget in bytes: ``max_bytes`` if given (a number of bytes, or a size
    as the environment variable takes it), else the environment variable
    ``SOFTMAX_XP_MAX_DENSE_BYTES`` read now (bytes, a size such as ``8GiB``, or ``inf``), else
    2 GiB."""
    if max_bytes is not None:
        what = f"{func}: argument `max_bytes`"
        if isinstance(max_bytes, str):
            return _parse_bytes(max_bytes, what)
        if isinstance(max_bytes, bool):
            raise TypeError(f"{what} must be a number of bytes or a size string, got {max_bytes!r}")
        try:
            value = float(max_bytes)
        except (TypeError, ValueError):
            raise TypeError(
                f"{what} must be a number of bytes or a size string, got "
                f"{type(max_bytes).__qualname__}"
            ) from None
        if math.isnan(value) or value < 0:
            raise ValueError(f"{what}={max_bytes!r} is not a size: {_SIZE_HELP}")
        return value
    env = os.environ.get(DENSE_BUDGET_ENV)
    if env is None or not env.strip():
        return float(DEFAULT_DENSE_BUDGET)
    return _parse_bytes(env)


def _itemsize(xp: Namespace, dtype: Any) -> int:
    try:
        return int(xp.finfo(dtype).bits) // 8
    except Exception:  # pragma: no cover - every real floating dtype has finfo
        return 8


def _gib(n: float) -> str:
    if n == math.inf:
        return "inf"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n:.0f} bytes"


def vmap_sizes(arr: Array) -> tuple[int, ...]:
    """The sizes of the ``jax.vmap`` / ``torch.func.vmap`` axes mapped over ``arr`` (outermost
    last; empty outside any vmap): a kernel called per example allocates that many results."""
    sizes: list[int] = []
    if array_api_compat.is_torch_array(arr):
        import torch

        functorch = getattr(torch._C, "_functorch", None)
        t: Any = arr
        while functorch is not None and functorch.is_functorch_wrapped_tensor(t):
            if functorch.is_batchedtensor(t):
                inner = functorch.get_unwrapped(t)
                sizes.append(int(inner.shape[functorch.maybe_get_bdim(t)]))
                t = inner
            else:  # torch.func.grad / jvp wrappers: the same values, one level in
                t = functorch.get_unwrapped(t)
        return tuple(sizes)
    if array_api_compat.is_jax_array(arr):
        import jax

        t = arr
        while isinstance(t, jax.core.Tracer):
            if hasattr(t, "batch_dim") and hasattr(t, "val"):  # a vmap level
                if isinstance(t.batch_dim, int):
                    sizes.append(int(t.val.shape[t.batch_dim]))
                t = t.val
            elif hasattr(t, "primal"):  # jvp / linearize (grad, jacfwd): the primal, one level in
                t = t.primal
            else:  # jit and other traces: the shape is the full one already
                break
    return tuple(sizes)


def check_dense_budget(
    func: str, p: _v.Prepared, shape: tuple[Any, ...], max_bytes: float | str | None = None
) -> None:
    """Raise ``MemoryError`` before allocating a dense Jacobian larger than the budget.

    The size counted is ``batch · C² · itemsize`` of the *working* dtype (float16 and bfloat16
    are computed in float32, so they count 4 bytes an entry): the largest array the dense path
    allocates, times the examples of any enclosing ``jax.vmap`` / ``torch.func.vmap`` (each one
    allocates its own result). Shapes with unknown sizes (Dask's NaN chunks) are not checked.
    """
    try:
        sizes = [int(s) for s in shape]
    except (TypeError, ValueError):  # unknown (None / NaN) sizes: nothing to check
        return
    c = math.prod(sizes[a] for a in p.axis)
    batch = math.prod(s for i, s in enumerate(sizes) if i not in p.axis)
    mapped = vmap_sizes(p.arrays[0])  # the examples of enclosing vmaps (one result each)
    work = p.arrays[0].dtype
    need = math.prod(mapped) * batch * c * c * _itemsize(p.xp, work)
    budget = dense_budget(max_bytes, func)
    if need > budget:
        op = "LogSoftmaxJacobian" if func.startswith("log_softmax") else "SoftmaxJacobian"
        bshape = tuple(s for i, s in enumerate(sizes) if i not in p.axis)
        under = f" under vmap over {mapped} examples" if mapped else ""
        raise MemoryError(
            f"{func}: the dense Jacobian would have shape {(*bshape, c, c)}{under} and take "
            f"{_gib(need)} "
            f"({need} bytes in {work}), over the budget of {_gib(budget)}. Use softmax_xp.{op}"
            f"(..., axis=...) instead: it keeps only the forward output (O(N·C) memory) and offers "
            f"matvec, rmatvec, matmat, diagonal, trace and solve. To allow a larger dense result, "
            f"set the environment variable {DENSE_BUDGET_ENV} (e.g. '16GiB' or 'inf'), or call "
            f"{op}(...).to_dense(max_bytes=...)."
        )


def _const(xp: Namespace, like: Array, value: float) -> Array:
    if array_api_compat.is_jax_namespace(xp):
        # A 0-d constant cannot take a sharded array's sharding (JAX raises); an uncommitted one
        # combines with arrays on any device and any sharding.
        return xp.asarray(value, dtype=like.dtype)
    return xp.asarray(value, dtype=like.dtype, device=array_api_compat.device(like))


_M = TypeVar("_M", bound=Callable[..., Any])


def _quiet(method: _M) -> _M:
    """Run an operator method under a local ``numpy.errstate`` on NumPy-backed namespaces: its
    results follow IEEE arithmetic (an overflow is ``inf``, a NaN slice stays NaN), and the
    warnings NumPy would emit for them must not reach the user."""

    @functools.wraps(method)
    def wrapper(self: _JacobianOperator, *args: Any, **kwargs: Any) -> Any:
        if _generic._numpy_backed(self._xp):
            import numpy as np

            ctx: contextlib.AbstractContextManager[Any] = np.errstate(all="ignore")
        else:
            ctx = contextlib.nullcontext()
        with ctx:
            return method(self, *args, **kwargs)

    return cast(_M, wrapper)


def _shape(a: Array) -> tuple[Any, ...]:
    return tuple(a.shape)


def _scale(xp: Namespace, b: Array, axis: tuple[int, ...]) -> Array:
    """``sqrt(max |b|)`` per slice where that is finite and positive, else 1: the solves divide
    by it twice first and multiply by it twice last, so that a ``b`` near the dtype's maximum
    gives the rounded solution (``inf`` only where the solution itself is beyond range), not
    NaN. The square root keeps every factor's reciprocal normal: XLA on CPU divides by
    multiplying with the reciprocal and flushes subnormals to zero (``1e308 / 1e308`` is 0)."""
    s = xp.max(xp.abs(b), axis=axis, keepdims=True)
    one = _const(xp, b, 1.0)
    return xp.sqrt(xp.where(xp.isfinite(s) & (s > _const(xp, b, 0.0)), s, one))


class _JacobianOperator:
    """Shared machinery: validation, layout, products through the backend dispatch."""

    _name = ""
    _arg = ""
    _jvp = ""
    _vjp = ""
    _dense = ""

    def __init__(self, y: Array, /, *, axis: Axis = -1) -> None:
        p = _v.prepare_single(self._name, self._arg, y, axis, None)
        y = _v.as_array(y)
        self._orig = y  # kept, never modified: matvec's dtype rules follow it
        self._p = p
        self._xp: Namespace = p.xp
        self._w: Array = p.arrays[0]  # the forward output in the working dtype
        self._axis: tuple[int, ...] = p.axis
        shape = _shape(y)
        self._c = math.prod(shape[a] for a in p.axis) if shape else 1
        # Dask arrays with unknown sizes along the softmax axes (after boolean indexing)
        self._c_known = not _v.has_unknown_sizes(tuple(shape[a] for a in p.axis))
        self._batch = tuple(s for i, s in enumerate(shape) if i not in p.axis)

    # -- description ----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """``batch + (C, C)``: the shape of :meth:`to_dense` (the batch axes in their order)."""
        return (*self._batch, self._c, self._c)

    @property
    def dtype(self) -> Any:
        """The dtype of the results (that of the forward output; integers promoted)."""
        return self._p.out_dtype

    @property
    def device(self) -> Any:
        """The device of the forward output, where every result is made."""
        return array_api_compat.device(self._orig)

    @property
    def axis(self) -> tuple[int, ...]:
        """The softmax axes, normalised (sorted, non-negative)."""
        return self._axis

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(shape={self.shape}, dtype={self.dtype}, axis={self._axis}, "
            f"namespace={self._xp.__name__})"
        )

    # -- helpers ----------------------------------------------------------------------------------
    def _pair(self, method: str, name: str, v: Array) -> _v.Prepared:
        return _v.prepare_pair(
            f"{type(self).__name__}.{method}",
            (self._arg, name),
            self._orig,
            v,
            self._axis,
            None,
            self._xp,
        )

    def _block(self, method: str, name: str, v: Array) -> _v.Prepared:
        func = f"{type(self).__name__}.{method}"
        _v.namespace(func, self._xp, **{self._arg: self._orig, name: v})
        y = self._orig
        if v.ndim != y.ndim + 1 or not _v._same_shape(_shape(v)[:-1], _shape(y)):
            raise ValueError(
                f"{func}: argument `{name}` must have shape {self._arg}.shape + (k,) = "
                f"{(*_shape(y), 'k')} (one vector per index of the last axis), got {_shape(v)}"
            )
        xp = self._xp
        if _v.has_unknown_sizes(_shape(v)):  # Dask cannot broadcast_to NaN sizes; `+` can
            yb = _generic.expand_dims(y, -1, xp) + xp.zeros_like(v, dtype=y.dtype)
        else:
            yb = xp.broadcast_to(xp.expand_dims(y, axis=-1), _shape(v))
        return _v.prepare_pair(func, (self._arg, name), yb, v, self._axis, None, xp)

    def _run(self, kernel: str, p: _v.Prepared) -> Array:
        kw: dict[str, Any] = {"where": None} if kernel.startswith("log_") else {}
        return _v.restore_dtype(p, _call(kernel, *p.arrays, axis=p.axis, xp=p.xp, **kw))

    def _done(self, out: Array) -> Array:
        if not self._batch and array_api_compat.is_numpy_namespace(self._xp):
            out = self._xp.asarray(out)  # NumPy reduces to a scalar; hand back a 0-d array
        return _v.restore_dtype(self._p, out)

    # -- products ---------------------------------------------------------------------------------
    @_quiet
    def matvec(self, v: Array, /) -> Array:
        """``J v`` for every slice; `v` has the shape of the forward output."""
        return self._run(self._jvp, self._pair("matvec", "v", v))

    @_quiet
    def rmatvec(self, g: Array, /) -> Array:
        """``gᵀ J`` (the vector-Jacobian product) for every slice; `g` has the output's shape."""
        return self._run(self._vjp, self._pair("rmatvec", "g", g))

    @_quiet
    def matmat(self, V: Array, /) -> Array:
        """``J V`` for a block of ``k`` vectors: `V` has shape ``y.shape + (k,)``, as the result."""
        return self._run(self._jvp, self._block("matmat", "V", V))

    @_quiet
    def rmatmat(self, G: Array, /) -> Array:
        """``Gᵀ J`` for a block of ``k`` vectors, in the layout of :meth:`matmat`."""
        return self._run(self._vjp, self._block("rmatmat", "G", G))

    @_quiet
    def to_dense(self, *, max_bytes: float | str | None = None) -> Array:
        """The dense Jacobian, shape ``batch + (C, C)`` as :func:`softmax_jacobian` gives it.

        Raises ``MemoryError`` before allocating more than `max_bytes`: bytes, or a size string
        as the environment variable takes (``'1GB'``, ``'8GiB'``, ``'inf'``); default: the
        environment variable ``SOFTMAX_XP_MAX_DENSE_BYTES``, else 2 GiB.
        """
        func = f"{type(self).__name__}.to_dense"
        dense_budget(max_bytes, func)  # a bad max_bytes is an error even for an unknown shape
        _v.require_known_sizes(func, self._arg, self._orig, self._axis)
        check_dense_budget(func, self._p, _shape(self._orig), max_bytes)
        return self._done(_call(self._dense, self._w, axis=self._axis, xp=self._xp))

    # -- scipy ------------------------------------------------------------------------------------
    def as_linear_operator(self) -> Any:
        """A ``scipy.sparse.linalg.LinearOperator`` of the block-diagonal batch (NumPy input only).

        Its shape is ``(M·C, M·C)`` with ``M`` the number of slices: vectors are the rows layout
        ``batch + (C,)`` of :meth:`to_dense`, flattened in C order, so the matrix is
        ``scipy.linalg.block_diag(*to_dense().reshape(-1, C, C))``. For one slice, build the
        operator from that slice (e.g. ``SoftmaxJacobian(y[i])``).
        """
        if not array_api_compat.is_numpy_namespace(self._xp):
            raise TypeError(
                f"{type(self).__name__}.as_linear_operator: needs a NumPy forward output, got an "
                f"array of {self._xp.__name__}; use matvec / rmatvec / matmat directly instead"
            )
        import numpy as np
        from scipy.sparse.linalg import LinearOperator

        xp = self._xp
        rows = _generic.to_rows(self._w, self._axis, xp)
        m, c = math.prod(self._batch), self._c
        rows = xp.reshape(rows, (m, c))
        work, out = rows.dtype, self.dtype
        jvp, vjp = self._jvp, self._vjp

        def apply(kernel: str, v: Any) -> Any:
            vv = np.asarray(v, dtype=work)
            if vv.ndim == 2:  # a block of k column vectors, shape (M·C, k)
                vv = vv.reshape(m, c, vv.shape[1])
                yy = np.broadcast_to(rows[:, :, None], vv.shape)
            else:
                vv, yy = vv.reshape(m, c), rows
            kw: dict[str, Any] = {"where": None} if kernel.startswith("log_") else {}
            res = _call(kernel, yy, vv, axis=(1,), xp=xp, **kw)
            return np.asarray(res).astype(out, copy=False).reshape(np.shape(v))

        return LinearOperator(
            shape=(m * c, m * c),
            dtype=np.dtype(out),
            matvec=lambda v: apply(jvp, v),
            rmatvec=lambda v: apply(vjp, v),
            matmat=lambda v: apply(jvp, v),
            rmatmat=lambda v: apply(vjp, v),
        )


class SoftmaxJacobian(_JacobianOperator):
    """The Jacobian of softmax, ``J = diag(y) - y yᵀ`` per slice, kept as ``y`` (O(N·C) memory).

    Parameters
    ----------
    y : array
        The forward output ``softmax(x, axis=axis)`` (any array-API library, any device). It is
        referenced, not copied; do not modify it while the operator is in use.
    axis : int, tuple of ints or None, optional
        The axis (or axes, taken jointly) the softmax ran over. Default: ``-1``.

    Notes
    -----
    ``J`` is symmetric, so :meth:`rmatvec` equals :meth:`matvec`. It is singular: ``J 1 = 0``.
    Its range is the tangent space of the probability simplex, ``{b : Σ b = 0}`` (and ``b_i = 0``
    where ``y_i = 0``); :meth:`solve` returns the minimum-norm solution there. Vectors have the
    shape of ``y``; a block of ``k`` vectors has shape ``y.shape + (k,)`` (see :meth:`matmat`).

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> y = sx.softmax(np.array([0.0, 0.0]))
    >>> J = sx.SoftmaxJacobian(y)
    >>> J.matvec(np.array([1.0, 0.0]))
    array([ 0.25, -0.25])
    >>> J.solve(np.array([0.25, -0.25]))
    array([ 0.5, -0.5])
    >>> J.trace()
    array(0.5)
    """

    _name = "SoftmaxJacobian"
    _arg = "y"
    _jvp = "softmax_jvp"
    _vjp = "softmax_vjp"
    _dense = "softmax_jacobian"

    @_quiet
    def diagonal(self) -> Array:
        """``y - y²``: the diagonal ``J[..., i, i]``, in the shape of ``y`` (not rows layout)."""
        y = self._w
        return self._done(y - y * y)

    @_quiet
    def trace(self) -> Array:
        """``Σ y - Σ y²`` per slice (``1 - Σ y²`` for a normalised ``y``), shape ``batch``."""
        y = self._w
        return self._done(self._xp.sum(y - y * y, axis=self._axis))

    @_quiet
    def solve(self, b: Array, /) -> Array:
        """The minimum-norm solution ``x = J⁺ b`` of ``J x = b`` for every slice.

        For ``b`` in the tangent space (``Σ b = 0`` over the slice, and ``b_i = 0`` where
        ``y_i = 0``) this solves ``J x = b`` exactly: ``x = b / y - mean(b / y)`` over the entries
        with ``y_i > 0``, zero elsewhere; it is the solution orthogonal to the null space
        (``1`` and the ``e_i`` with ``y_i = 0``). Any other ``b`` is first projected orthogonally
        onto the tangent space, which gives the least-squares minimum-norm solution, as
        ``numpy.linalg.lstsq`` does on the dense matrix. O(C) work per slice.
        """
        p = self._pair("solve", "b", b)
        y, bb = p.arrays
        xp, axis = p.xp, p.axis
        if self._c == 0:
            return _v.restore_dtype(p, xp.zeros_like(bb))
        zero, one = _const(xp, y, 0.0), _const(xp, y, 1.0)
        pos = y > zero
        count = xp.sum(xp.astype(pos, y.dtype), axis=axis, keepdims=True)
        count = xp.where(count > zero, count, one)
        bz = xp.where(pos, bb, zero)
        scale = _scale(xp, bz, axis)
        bz = bz / scale / scale  # |b| <= 1: no sum below overflows, bar a solution beyond range
        bz = bz - xp.sum(bz, axis=axis, keepdims=True) / count  # onto Σ b = 0
        q = xp.where(pos, bz / xp.where(pos, y, one), zero)
        x = xp.where(pos, q - xp.sum(q, axis=axis, keepdims=True) / count, zero) * scale * scale
        # A slice with a non-finite entry of y (NaN throughout, from a +inf or NaN logit) is NaN,
        # as matvec, to_dense and diagonal give it: no solution is hidden behind zeros.
        bad = xp.any(xp.logical_not(xp.isfinite(y)), axis=axis, keepdims=True)
        return _v.restore_dtype(p, xp.where(bad, _const(xp, y, math.nan), x))


class LogSoftmaxJacobian(_JacobianOperator):
    """The Jacobian of log_softmax, ``J = I - 1 pᵀ`` with ``p = exp(l)`` per slice, kept as ``l``.

    Parameters
    ----------
    l : array
        The forward output ``log_softmax(x, axis=axis)``. Referenced, not copied.
    axis : int, tuple of ints or None, optional
        The axis (or axes, taken jointly) the log_softmax ran over. Default: ``-1``.

    Notes
    -----
    ``J`` is an oblique projection (``J² = J``), not symmetric: :meth:`rmatvec` is
    ``g - p Σ g``. Its null space is ``1`` (shifting all logits), its range is
    ``{b : pᵀ b = 0}``: the tangent space of the set of log-probability vectors
    (``Σ exp(l) = 1``), which :meth:`solve` works in. Like :func:`log_softmax_jacobian` it takes
    no ``where``: an entry masked out in the forward pass (``l = -inf``, ``p = 0``) keeps its row
    ``e_i - p`` of ``J``.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> J = sx.LogSoftmaxJacobian(sx.log_softmax(np.array([0.0, 0.0])))
    >>> J.matvec(np.array([1.0, 0.0]))
    array([ 0.5, -0.5])
    >>> J.trace()
    array(1.)
    """

    _name = "LogSoftmaxJacobian"
    _arg = "l"
    _jvp = "log_softmax_jvp"
    _vjp = "log_softmax_vjp"
    _dense = "log_softmax_jacobian"

    @_quiet
    def diagonal(self) -> Array:
        """``1 - softmax``: the diagonal ``J[..., i, i]``, in the shape of ``l``."""
        p = self._xp.exp(self._w)
        return self._done(_const(self._xp, p, 1.0) - p)

    @_quiet
    def trace(self) -> Array:
        """``C - Σ softmax`` per slice (``C - 1`` for a normalised input), shape ``batch``."""
        xp = self._xp
        p = xp.exp(self._w)
        if not self._c_known:  # C is not known yet (Dask): Σ (1 - p) needs no size
            return self._done(xp.sum(_const(xp, p, 1.0) - p, axis=self._axis))
        return self._done(_const(xp, p, float(self._c)) - xp.sum(p, axis=self._axis))

    @_quiet
    def solve(self, b: Array, /) -> Array:
        """The minimum-norm solution ``x = J⁺ b`` of ``J x = b`` for every slice.

        For ``b`` in the tangent space ``pᵀ b = 0`` (``p = exp(l)``), ``J b = b``, so every
        solution is ``b + c 1``; the minimum-norm one is ``x = b - mean(b)``. Any other ``b`` is
        first projected orthogonally onto ``{pᵀ b = 0}`` (``b - (pᵀb / pᵀp) p``), which gives the
        least-squares minimum-norm solution, as ``numpy.linalg.lstsq`` does on the dense matrix.
        A slice with ``p = 0`` throughout (all masked out) has ``J = I`` and gives ``x = b``.
        """
        p_ = self._pair("solve", "b", b)
        l, bb = p_.arrays
        xp, axis = p_.xp, p_.axis
        if self._c == 0:
            return _v.restore_dtype(p_, xp.zeros_like(bb))
        zero, one = _const(xp, bb, 0.0), _const(xp, bb, 1.0)
        p = xp.exp(l)
        pp = xp.sum(p * p, axis=axis, keepdims=True)
        live = pp > zero
        scale = _scale(xp, bb, axis)
        bs = bb / scale / scale  # |b| <= 1: no sum below overflows, bar a solution beyond range
        coef = xp.sum(p * bs, axis=axis, keepdims=True) / xp.where(live, pp, one)
        z = bs - xp.where(live, coef, zero) * p
        x = (z - xp.mean(z, axis=axis, keepdims=True)) * scale * scale
        # A slice with a non-finite p (NaN throughout, from a +inf or NaN logit) is NaN, as
        # matvec, to_dense and diagonal give it; an all-masked slice (p = 0) keeps x = b.
        bad = xp.any(xp.logical_not(xp.isfinite(p)), axis=axis, keepdims=True)
        x = xp.where(bad, _const(xp, bb, math.nan), xp.where(live, x, bb))
        return _v.restore_dtype(p_, x)
