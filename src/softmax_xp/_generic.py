"""Layer 2: the generic kernels, in pure array-API-standard code.

This is the single source of truth: it runs on array-api-strict, and every backend fast path is
tested against it. Every function takes ``xp`` as a required keyword, an already-normalised
``axis`` (a sorted tuple of non-negative ints), arrays already in the working dtype (float32 or
float64), and, where it applies, a boolean ``where`` already broadcast to the input's shape.

No in-place writes (JAX arrays are immutable); new arrays follow the input's device and dtype.
The numerics follow ``jax.nn.softmax`` / ``jax.nn.log_softmax``: the shift by the slice maximum
is the only difference from the textbook formula, and masked-out entries never reach ``exp``.

Edge values (docs/semantics.md is the contract): a slice whose maximum is not finite (a ``+inf``
or NaN logit, or only ``-inf`` logits among its unmasked entries) is NaN throughout, as in
``torch.softmax`` and ``jax.nn.softmax``. It is made NaN by shifting it by NaN, so no ``inf - inf``
is ever evaluated. No floating-point warning reaches the user: NumPy-backed eager namespaces run
under a local ``numpy.errstate``; for Dask, whose chunks run later on worker threads where no
errstate of ours applies, the one remaining source of a warning (``x - max`` overflowing when
finite logits span more than the dtype's range) is guarded arithmetically.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import array_api_compat
import numpy as np
from array_api_compat import device as _device

from ._kernels import NAMES

Array = Any
Namespace = Any

__all__ = list(NAMES)  # one function per kernel of the registry (softmax_xp._kernels)


_F = TypeVar("_F", bound=Callable[..., Any])


def _numpy_backed(xp: Namespace) -> bool:
    """NumPy itself or array-api-strict (which wraps NumPy): eager, and warns on inf/overflow."""
    if array_api_compat.is_numpy_namespace(xp):
        return True
    return bool(getattr(xp, "__name__", "") == "array_api_strict")


def _quiet(func: _F) -> _F:
    """Run a kernel under a local ``numpy.errstate`` when its namespace is NumPy-backed.

    The kernels' results are right with IEEE semantics (``exp(-inf) = 0``, NaN propagates); the
    warnings NumPy would emit for them are noise to the user. ``errstate`` is a context variable
    (thread-safe) and is restored on exit, so no global state changes.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, xp: Namespace, **kwargs: Any) -> Any:
        ctx = (
            np.errstate(over="ignore", invalid="ignore", divide="ignore")
            if _numpy_backed(xp)
            else contextlib.nullcontext()
        )
        with ctx:
            return func(*args, xp=xp, **kwargs)

    return cast(_F, wrapper)


def _const(xp: Namespace, like: Array, value: float) -> Array:
    dev = _device(like)
    # "cpu" is NumPy's and Dask's only device, and what a JAX literal (a constant primal under
    # nested jvp) reports, which jax.numpy refuses as a device: leave the default there.
    return xp.asarray(value, dtype=like.dtype, device=None if isinstance(dev, str) else dev)


def _empty_slices(x: Array, axis: tuple[int, ...]) -> bool:
    """True when there is nothing to compute: an empty softmax axis or an empty batch
    (Dask cannot reduce a zero-size chunk along a non-empty axis)."""
    return bool(math.prod(x.shape) == 0)


def _shift(x: Array, m: Array, xp: Namespace) -> Array:
    """``x - m`` where ``m >= x`` is finite or NaN; ``-inf`` where the difference overflows."""
    if not array_api_compat.is_dask_namespace(xp):
        return x - m
    # Dask: chunks are computed later, outside any errstate of ours, so avoid the overflow itself.
    # Halving is exact (bar subnormals, irrelevant at this scale) and commutes with rounding, so
    # x - m rounds to -inf exactly when x/2 - m/2 (which cannot overflow) rounds below -fmax/2.
    half = _const(xp, x, 0.5)
    big = x * half - m * half < _const(xp, x, -float(xp.finfo(x.dtype).max) / 2)
    return xp.where(big, _const(xp, x, -math.inf), xp.where(big, m, x) - m)


def _masked_shift(x: Array, axis: tuple[int, ...], where: Array | None, xp: Namespace) -> Array:
    """``x - max(x)`` over each slice; masked-out entries become ``-inf``.

    A slice whose maximum (over its unmasked entries) is ``+inf``, ``-inf`` or NaN is shifted by
    NaN and so comes out NaN throughout, as in torch and JAX, without evaluating ``inf - inf``.
    An all-masked slice is shifted by 0: its entries are all ``-inf`` and it never becomes NaN.
    """
    nan = _const(xp, x, math.nan)
    if where is None:
        m = xp.max(x, axis=axis, keepdims=True)
        return _shift(x, xp.where(xp.isfinite(m), m, nan), xp)
    xm = xp.where(where, x, _const(xp, x, -math.inf))
    m = xp.max(xm, axis=axis, keepdims=True)
    any_valid = xp.any(where, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, nan)
    m = xp.where(any_valid, m, _const(xp, x, 0.0))
    return _shift(xm, m, xp)


@_quiet
def softmax(
    x: Array, /, *, axis: tuple[int, ...], where: Array | None = None, xp: Namespace
) -> Array:
    """``exp(x - max) / sum(exp(x - max))`` over the slices along ``axis``."""
    if _empty_slices(x, axis):
        return xp.zeros_like(x)
    e = xp.exp(_masked_shift(x, axis, where, xp))
    s = xp.sum(e, axis=axis, keepdims=True)
    if where is None:
        return e / s
    any_valid = xp.any(where, axis=axis, keepdims=True)
    s = xp.where(any_valid, s, _const(xp, s, 1.0))  # all-masked: 0 / 1, not 0 / 0
    return xp.where(where, e / s, _const(xp, e, 0.0))


@_quiet
def log_softmax(
    x: Array, /, *, axis: tuple[int, ...], where: Array | None = None, xp: Namespace
) -> Array:
    """``(x - max) - log(sum(exp(x - max)))``; masked-out entries are ``-inf``."""
    if _empty_slices(x, axis):
        return xp.zeros_like(x)
    shifted = _masked_shift(x, axis, where, xp)
    s = xp.sum(xp.exp(shifted), axis=axis, keepdims=True)
    if where is None:
        return shifted - xp.log(s)
    # An all-masked slice sums to 0: take log(1) there (its entries are all masked out anyway).
    any_valid = xp.any(where, axis=axis, keepdims=True)
    s = xp.where(any_valid, s, _const(xp, s, 1.0))
    return xp.where(where, shifted - xp.log(s), _const(xp, shifted, -math.inf))


def _dot(a: Array, b: Array, axis: tuple[int, ...], xp: Namespace) -> Array:
    return xp.sum(a * b, axis=axis, keepdims=True)


@_quiet
def softmax_jvp(y: Array, v: Array, /, *, axis: tuple[int, ...], xp: Namespace) -> Array:
    """``J v = y * (v - <y, v>)`` per slice, from the forward output ``y``."""
    if _empty_slices(y, axis):
        return xp.zeros_like(y)
    return y * (v - _dot(y, v, axis, xp))


@_quiet
def softmax_vjp(y: Array, g: Array, /, *, axis: tuple[int, ...], xp: Namespace) -> Array:
    """``gᵀ J = y * (g - <g, y>)`` per slice (J is symmetric)."""
    if _empty_slices(y, axis):
        return xp.zeros_like(y)
    return y * (g - _dot(g, y, axis, xp))


@_quiet
def log_softmax_jvp(
    l: Array,
    v: Array,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    xp: Namespace,
) -> Array:
    """``J v = v - <softmax, v>`` per slice; zero at masked-out entries."""
    if _empty_slices(l, axis):
        return xp.zeros_like(l)
    zero = _const(xp, v, 0.0)
    if where is not None:
        v = xp.where(where, v, zero)
    out = v - _dot(xp.exp(l), v, axis, xp)
    return out if where is None else xp.where(where, out, zero)


@_quiet
def log_softmax_vjp(
    l: Array,
    g: Array,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    xp: Namespace,
) -> Array:
    """``gᵀ J = g - softmax * sum(g)`` per slice; zero at masked-out entries."""
    if _empty_slices(l, axis):
        return xp.zeros_like(l)
    zero = _const(xp, g, 0.0)
    if where is not None:
        g = xp.where(where, g, zero)
    out = g - xp.exp(l) * xp.sum(g, axis=axis, keepdims=True)
    return out if where is None else xp.where(where, out, zero)


def _unknown_sizes(a: Array) -> bool:
    """Whether some size of ``a`` is not known yet (Dask's NaN sizes after boolean indexing)."""
    return any(s is None or (isinstance(s, float) and math.isnan(s)) for s in a.shape)


def to_rows(y: Array, axis: tuple[int, ...], xp: Namespace) -> Array:
    """Move the softmax axes last and flatten them (C order): shape ``batch + (C,)``."""
    batch = tuple(a for a in range(y.ndim) if a not in axis)
    order = batch + axis
    if order != tuple(range(y.ndim)):
        y = xp.permute_dims(y, order)
    if len(axis) == 1 and _unknown_sizes(y):  # already batch + (C,): Dask cannot reshape NaN sizes
        return y
    c = math.prod(y.shape[len(batch) :])
    if math.prod(y.shape) == 0:  # nothing to move (and Dask cannot reshape some empty arrays)
        return xp.zeros((*y.shape[: len(batch)], c), dtype=y.dtype, device=_device(y))
    return xp.reshape(y, (*y.shape[: len(batch)], c))


def expand_dims(a: Array, axis: int, xp: Namespace) -> Array:
    """``xp.expand_dims`` (axis -1 or -2), by ``None`` indexing where a size is unknown (Dask's
    NaN sizes, which its ``expand_dims`` cannot reshape)."""
    if not _unknown_sizes(a):
        return xp.expand_dims(a, axis=axis)
    return a[..., None] if axis == -1 else a[..., None, :]


def _jacobian_rows(y: Array, axis: tuple[int, ...], xp: Namespace) -> Array:
    """:func:`to_rows` for a dense Jacobian.

    On Dask, C is made one chunk: the Jacobian's blocks are (C, C) per batch block anyway, and a
    C split into k chunks would multiply the number of blocks by k in the outer product (Dask
    then warns, PerformanceWarning, from the user's call).
    """
    rows = to_rows(y, axis, xp)
    if array_api_compat.is_dask_namespace(xp) and len(rows.chunks[-1]) > 1:
        rows = rows.rechunk({rows.ndim - 1: -1})
    return rows


@_quiet
def softmax_jacobian(y: Array, /, *, axis: tuple[int, ...], xp: Namespace) -> Array:
    """Dense ``diag(y) - y yᵀ`` per slice, shape ``batch + (C, C)``."""
    rows = _jacobian_rows(y, axis, xp)
    c = rows.shape[-1]
    eye = xp.eye(c, dtype=rows.dtype, device=_device(rows))
    col = expand_dims(rows, -1, xp)
    return col * (eye - expand_dims(rows, -2, xp))


@_quiet
def log_softmax_jacobian(l: Array, /, *, axis: tuple[int, ...], xp: Namespace) -> Array:
    """Dense ``I - 1 softmaxᵀ`` per slice, shape ``batch + (C, C)``."""
    p = xp.exp(_jacobian_rows(l, axis, xp))
    c = p.shape[-1]
    eye = xp.eye(c, dtype=p.dtype, device=_device(p))
    return eye - expand_dims(p, -2, xp)


# -- logsumexp and the softmax cross-entropies -----------------------------------------------------
# These kernels keep what a backward pass needs beyond their inputs in one number per slice, the
# log-sum-exp ``lse`` (keepdims shape), never a second array of the input's shape: their
# derivative kernels take the inputs and ``lse``.


def _lse(x: Array, axis: tuple[int, ...], where: Array | None, xp: Namespace) -> Array:
    """``log(sum(exp(x)))`` over each slice (keepdims), masked-out entries left out.

    SciPy's and JAX's values: a slice holding ``+inf`` (and no NaN) gives ``+inf``, one holding
    NaN gives NaN, one of only ``-inf`` (or all masked, or empty) gives ``-inf``. The shift is the
    slice maximum where that is finite, else 0, so no ``inf - inf`` is evaluated.
    """
    zero = _const(xp, x, 0.0)
    xm = x if where is None else xp.where(where, x, _const(xp, x, -math.inf))
    if _empty_slices(x, axis):
        shape = tuple(1 if a in axis else s for a, s in enumerate(x.shape))
        return xp.full(shape, -math.inf, dtype=x.dtype, device=_device(x))
    m = xp.max(xm, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, zero)
    return xp.log(xp.sum(xp.exp(_shift(xm, m, xp)), axis=axis, keepdims=True)) + m


def _probs(x: Array, lse: Array, where: Array | None, xp: Namespace) -> Array:
    """``exp(x - lse)``, the softmax, from the slice's lse, with softmax's edge values: NaN
    throughout a slice whose lse is not finite (a ``+inf`` or NaN logit, or only ``-inf``
    logits among the unmasked ones); 0 at masked-out entries (so an all-masked slice is 0)."""
    finite = xp.isfinite(lse)
    p = xp.exp(x - xp.where(finite, lse, _const(xp, lse, 0.0)))
    p = xp.where(finite, p, _const(xp, p, math.nan))
    return p if where is None else xp.where(where, p, _const(xp, p, 0.0))


@_quiet
def logsumexp(
    x: Array, /, *, axis: tuple[int, ...], where: Array | None = None, xp: Namespace
) -> Array:
    """``log(sum(exp(x)))`` over the slices along ``axis`` (keepdims), computed stably."""
    return _lse(x, axis, where, xp)


@_quiet
def logsumexp_jvp(
    x: Array,
    lse: Array,
    v: Array,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    xp: Namespace,
) -> Array:
    """``<softmax(x), v>`` per slice (keepdims), from ``x`` and the slice's ``lse``."""
    p = _probs(x, lse, where, xp)
    if where is not None:
        v = xp.where(where, v, _const(xp, v, 0.0))
    return xp.sum(p * v, axis=axis, keepdims=True)


@_quiet
def logsumexp_vjp(
    x: Array,
    lse: Array,
    g: Array,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    xp: Namespace,
) -> Array:
    """``g * softmax(x)``, the input's shape, from ``x``, the slice's ``lse`` and ``g`` (keepdims)."""
    return g * _probs(x, lse, where, xp)


@_quiet
def logsumexp_weighted(
    x: Array,
    b: Array | None,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    xp: Namespace,
) -> tuple[Array, Array]:
    """``(log(abs(s)), sign(s))`` of ``s = sum(b * exp(x))`` per slice (keepdims; ``b=None``:
    weights 1). An entry of weight 0 takes no part, whatever its ``x``. A slice whose largest
    ``x`` of nonzero weight is ``+inf`` gives ``+inf`` with the sign of those entries' total
    weight (NaN, both, where that is 0); one holding NaN gives NaN, sign NaN; an empty sum
    gives ``-inf``, sign 0."""
    if b is not None:
        nonzero = b != _const(xp, b, 0.0)
        where = nonzero if where is None else xp.logical_and(where, nonzero)
    m = _lse(x, axis, where, xp)
    nan, zero, one = (_const(xp, m, v) for v in (math.nan, 0.0, 1.0))
    if b is None:
        return m, xp.where(xp.isnan(m), nan, xp.where(m == -math.inf, zero, one))
    s = xp.sum(b * _probs(x, m, where, xp), axis=axis, keepdims=True)  # sum(b exp(x - m))
    out = xp.log(xp.abs(s)) + m
    sign = xp.where(xp.isnan(s), nan, xp.sign(s))
    # a +inf entry of nonzero weight: the sum is +-inf by the total weight at +inf
    at_inf = x == math.inf if where is None else xp.logical_and(where, x == math.inf)
    wb = xp.sum(xp.where(at_inf, b, _const(xp, b, 0.0)), axis=axis, keepdims=True)
    top = xp.logical_and(xp.isinf(m), m > zero)
    has_nan = xp.isnan(_lse(xp.where(at_inf, _const(xp, x, 0.0), x), axis, where, xp))
    top = xp.logical_and(top, xp.logical_not(has_nan))
    out = xp.where(top, xp.where(wb == zero, nan, _const(xp, m, math.inf)), out)
    sign = xp.where(top, xp.where(wb == zero, nan, xp.sign(wb)), sign)
    return out, sign


def _count(x: Array, axis: tuple[int, ...], where: Array | None, xp: Namespace) -> Array:
    """The number of unmasked entries of each slice (keepdims), in ``x``'s dtype."""
    if where is None:
        c = math.prod([x.shape[a] for a in axis])
        shape = tuple(1 if a in axis else s for a, s in enumerate(x.shape))
        return xp.full(shape, float(c), dtype=x.dtype, device=_device(x))
    return xp.sum(xp.astype(where, x.dtype), axis=axis, keepdims=True)


def _smoothed(
    t: Array, axis: tuple[int, ...], where: Array | None, eps: float, xp: Namespace
) -> Array:
    """Targets ``(1 - eps) t + eps / K`` over the ``K`` unmasked classes of each slice; 0 where
    masked out."""
    zero = _const(xp, t, 0.0)
    if eps:
        k = _count(t, axis, where, xp)
        k = xp.where(k == zero, _const(xp, k, 1.0), k)
        t = _const(xp, t, 1.0 - eps) * t + _const(xp, t, eps) / k
    return t if where is None else xp.where(where, t, zero)


def _gap(x: Array, lse: Array, xp: Namespace) -> Array:
    """``lse - x``: each class's ``-log_softmax``; NaN throughout a slice whose maximum is not
    finite (a ``+inf`` or NaN logit) or whose lse is ``-inf`` (only ``-inf`` logits)."""
    nan = _const(xp, lse, math.nan)
    bad = xp.isinf(lse)  # +inf: a +inf logit; -inf: only -inf logits (NaN lse stays NaN)
    return xp.where(bad, nan, lse) - x


def _soft_terms(t: Array, x: Array, lse: Array, where: Array | None, xp: Namespace) -> Array:
    """``t * (lse - x)`` with a zero target contributing 0 (whatever its logit, ``-inf`` too),
    masked-out entries 0; a slice with no unmasked entry contributes nothing."""
    zero = _const(xp, x, 0.0)
    terms = xp.where(t == zero, zero, t * _gap(x, lse, xp))
    return terms if where is None else xp.where(where, terms, zero)


@_quiet
def softmax_cross_entropy(
    x: Array,
    targets: Array,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    label_smoothing: float = 0.0,
    xp: Namespace,
) -> tuple[Array, Array]:
    """``(sum(t * (lse - x)), lse)`` per slice (keepdims), ``t`` the smoothed targets."""
    lse = _lse(x, axis, where, xp)
    t = _smoothed(targets, axis, where, label_smoothing, xp)
    loss = xp.sum(_soft_terms(t, x, lse, where, xp), axis=axis, keepdims=True)
    return loss, lse


@_quiet
def softmax_cross_entropy_jvp(
    x: Array,
    targets: Array,
    lse: Array,
    v: Array,
    u: Array | None,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    label_smoothing: float = 0.0,
    xp: Namespace,
) -> tuple[Array, Array]:
    """The tangents of ``(loss, lse)`` for tangents ``v`` of ``x`` and ``u`` of the targets
    (None: the targets do not move): ``<S p - t, v> + (1 - eps) <lse - x, u>`` and ``<p, v>``,
    ``p`` the softmax, ``t`` the smoothed targets and ``S`` their sum over the slice."""
    zero = _const(xp, x, 0.0)
    p = _probs(x, lse, where, xp)
    t = _smoothed(targets, axis, where, label_smoothing, xp)
    if where is not None:
        v = xp.where(where, v, zero)
    s = xp.sum(t, axis=axis, keepdims=True)
    dlse = xp.sum(p * v, axis=axis, keepdims=True)
    dloss = s * dlse - xp.sum(t * v, axis=axis, keepdims=True)
    if u is None:  # the targets do not move: no ``0 * inf`` at a -inf logit
        return dloss, dlse
    du = u * _gap(x, lse, xp)
    if where is not None:
        du = xp.where(where, du, zero)
    dloss = dloss + _const(xp, x, 1.0 - label_smoothing) * xp.sum(du, axis=axis, keepdims=True)
    return dloss, dlse


@_quiet
def softmax_cross_entropy_vjp(
    x: Array,
    targets: Array,
    lse: Array,
    g: Array,
    h: Array,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    label_smoothing: float = 0.0,
    xp: Namespace,
) -> tuple[Array, Array]:
    """The cotangents of ``x`` and the targets for cotangents ``g`` of the loss and ``h`` of the
    lse (keepdims): ``(g S + h) p - g t`` and ``g (1 - eps) (lse - x)``."""
    zero = _const(xp, x, 0.0)
    p = _probs(x, lse, where, xp)
    t = _smoothed(targets, axis, where, label_smoothing, xp)
    s = xp.sum(t, axis=axis, keepdims=True)
    dx = (g * s + h) * p - g * t
    dt = g * _const(xp, x, 1.0 - label_smoothing) * _gap(x, lse, xp)
    if where is not None:
        dx = xp.where(where, dx, zero)
        dt = xp.where(where, dt, zero)
    return dx, dt


def _label_targets(
    x: Array,
    labels: Array,
    axis: tuple[int, ...],
    where: Array | None,
    eps: float,
    ignore_index: int | None,
    xp: Namespace,
) -> tuple[Array, Array, Array]:
    """The smoothed one-hot targets of ``labels`` (keepdims; a label is the flat, C-order index
    into the slice over ``axis``), 0 throughout a slice whose label does not count; whether
    each slice's label is out of range (and not ``ignore_index``: its loss is NaN); whether it
    names a masked-out class (its log-probability is ``-inf``: its loss is ``+inf``)."""
    c = math.prod([x.shape[a] for a in axis])
    index = xp.reshape(
        xp.arange(c, dtype=labels.dtype, device=_device(x)),
        tuple(s if a in axis else 1 for a, s in enumerate(x.shape)),
    )
    valid = xp.logical_and(labels >= 0, labels < c)
    if ignore_index is not None:
        valid = xp.logical_and(valid, labels != ignore_index)
    hot = index == labels
    t = _smoothed(xp.astype(hot, x.dtype), axis, where, eps, xp)
    t = xp.where(valid, t, _const(xp, t, 0.0))
    bad = xp.logical_not(valid)
    if ignore_index is not None:
        bad = xp.logical_and(bad, labels != ignore_index)
    on_masked = xp.zeros_like(bad)
    if where is not None:
        on_masked = xp.any(xp.logical_and(hot, xp.logical_not(where)), axis=axis, keepdims=True)
        on_masked = xp.logical_and(on_masked, valid)
    return t, bad, on_masked


@_quiet
def softmax_cross_entropy_with_integer_labels(
    x: Array,
    labels: Array,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    xp: Namespace,
) -> tuple[Array, Array]:
    """``(lse - x[label], lse)`` per slice (keepdims; with the label smoothed); 0 for an ignored
    label, NaN for one out of range, ``+inf`` for one on a masked-out class. ``labels`` is an
    integer array of the keepdims shape."""
    lse = _lse(x, axis, where, xp)
    t, bad, on_masked = _label_targets(x, labels, axis, where, label_smoothing, ignore_index, xp)
    loss = xp.sum(_soft_terms(t, x, lse, where, xp), axis=axis, keepdims=True)
    loss = xp.where(on_masked, _const(xp, loss, math.inf), loss)
    return xp.where(bad, _const(xp, loss, math.nan), loss), lse


@_quiet
def softmax_cross_entropy_with_integer_labels_jvp(
    x: Array,
    labels: Array,
    lse: Array,
    v: Array,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    xp: Namespace,
) -> tuple[Array, Array]:
    """The tangents of ``(loss, lse)`` for a tangent ``v`` of ``x``: ``<S p - t, v>``, ``<p, v>``."""
    p = _probs(x, lse, where, xp)
    t, _, _ = _label_targets(x, labels, axis, where, label_smoothing, ignore_index, xp)
    if where is not None:
        v = xp.where(where, v, _const(xp, v, 0.0))
    s = xp.sum(t, axis=axis, keepdims=True)
    dlse = xp.sum(p * v, axis=axis, keepdims=True)
    return s * dlse - xp.sum(t * v, axis=axis, keepdims=True), dlse


@_quiet
def softmax_cross_entropy_with_integer_labels_vjp(
    x: Array,
    labels: Array,
    lse: Array,
    g: Array,
    h: Array,
    /,
    *,
    axis: tuple[int, ...],
    where: Array | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    xp: Namespace,
) -> Array:
    """The cotangent of ``x`` for cotangents ``g`` of the loss and ``h`` of the lse:
    ``(g S + h) p - g t``."""
    p = _probs(x, lse, where, xp)
    t, _, _ = _label_targets(x, labels, axis, where, label_smoothing, ignore_index, xp)
    s = xp.sum(t, axis=axis, keepdims=True)
    dx = (g * s + h) * p - g * t
    return dx if where is None else xp.where(where, dx, _const(xp, dx, 0.0))
