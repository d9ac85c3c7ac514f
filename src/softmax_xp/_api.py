"""The public delegators: validate (layer 1), then route to the autodiff adapters (layer 4) for the
forward functions, or to the backend kernels (layer 3, falling back to the generic layer 2).

Every function returns an array of the input's namespace, on the input's device, with the output
dtype of docs/design.md (input dtype; integers and bools promoted to the default real floating dtype).
"""

from __future__ import annotations

from typing import Any

from . import _validation as _v
from ._autodiff import forward as _forward
from ._backends import call as _call
from ._hot import route as _route
from ._kernels import NAMES

Array = Any
Namespace = Any
Axis = int | tuple[int, ...] | None

__all__ = list(NAMES)  # one entry per kernel of the registry (softmax_xp._kernels)


def softmax(
    x: Array,
    /,
    *,
    axis: Axis = -1,
    where: Array | None = None,
    dtype: Any = None,
    xp: Namespace | None = None,
) -> Array:
    """Softmax of `x` over `axis`: ``exp(x) / sum(exp(x))``, computed stably.

    Parameters
    ----------
    x : array
        Logits. Integer and bool input is promoted to the default real floating dtype;
        complex input is a ``TypeError``. A NumPy scalar counts as a 0-d NumPy array (the
        result is a 0-d array); sparse torch tensors are a ``TypeError``.
    axis : int, tuple of ints or None, optional
        The axis (or axes, taken jointly) each softmax runs over. ``None`` means all axes.
        Default: ``-1``.
    where : boolean array, optional
        Broadcastable to `x`. Entries where it is False get probability 0 and zero derivative;
        a slice with no True entry gives all zeros (never NaN). Same semantics as
        ``jax.nn.softmax(..., where=...)``.
    dtype : dtype, optional
        Cast `x` to this real floating dtype before computing (like ``torch.softmax(dtype=)``).
        A NumPy dtype of either byte order gives the native dtype of that precision;
        ``numpy.longdouble`` is computed in itself.
    xp : array namespace, optional
        The namespace of `x`; found with array-api-compat when not given.

    Returns
    -------
    array
        Same shape, namespace and device as `x`; each slice along `axis` sums to 1.
        float16 / bfloat16 are computed with float32 accumulation.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> sx.softmax(np.array([1.0, 2.0, 3.0]))
    array([0.09003057, 0.24472847, 0.66524096])
    >>> sx.softmax(np.array([1.0, 2.0, 3.0]), where=np.array([True, True, False]))
    array([0.26894142, 0.73105858, 0.        ])
    """
    if where is None and dtype is None and xp is None and type(axis) is int:
        run = _route("softmax", x, axis)  # the common call: validated once per key
        if run is not None and (out := run(x)) is not NotImplemented:
            return out
    p = _v.prepare_forward("softmax", x, axis, where, dtype, xp)
    out = _forward("softmax", p.arrays[0], axis=p.axis, where=p.where, xp=p.xp)
    return _v.restore_dtype(p, out)


def log_softmax(
    x: Array,
    /,
    *,
    axis: Axis = -1,
    where: Array | None = None,
    dtype: Any = None,
    xp: Namespace | None = None,
) -> Array:
    """Logarithm of the softmax of `x` over `axis`: ``x - logsumexp(x)``, computed stably.

    Parameters
    ----------
    x : array
        Logits (integer and bool input is promoted; complex is a ``TypeError``).
    axis : int, tuple of ints or None, optional
        The axis (or axes, taken jointly) to normalise over; ``None`` means all. Default: ``-1``.
    where : boolean array, optional
        Broadcastable to `x`; masked-out entries give ``-inf`` and zero derivative, and an
        all-masked slice gives ``-inf`` throughout (never NaN).
    dtype : dtype, optional
        Cast `x` to this real floating dtype before computing.
    xp : array namespace, optional
        The namespace of `x`; found with array-api-compat when not given.

    Returns
    -------
    array
        Same shape, namespace, dtype and device as `x`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> sx.log_softmax(np.array([1.0, 2.0, 3.0]))
    array([-2.40760596, -1.40760596, -0.40760596])
    """
    if where is None and dtype is None and xp is None and type(axis) is int:
        run = _route("log_softmax", x, axis)  # the common call: validated once per key
        if run is not None and (out := run(x)) is not NotImplemented:
            return out
    p = _v.prepare_forward("log_softmax", x, axis, where, dtype, xp)
    out = _forward("log_softmax", p.arrays[0], axis=p.axis, where=p.where, xp=p.xp)
    return _v.restore_dtype(p, out)


def softmax_jvp(y: Array, v: Array, /, *, axis: Axis = -1, xp: Namespace | None = None) -> Array:
    """Jacobian-vector product of softmax, ``J v`` with ``J = diag(y) - y yᵀ`` per slice.

    Parameters
    ----------
    y : array
        The forward output ``softmax(x, axis=axis)`` (the logits are not needed).
    v : array
        Tangent vectors, same shape and namespace as `y`.
    axis : int, tuple of ints or None, optional
        The axis (or axes) the forward softmax ran over. Default: ``-1``.
    xp : array namespace, optional
        The namespace of `y`; found with array-api-compat when not given.

    Returns
    -------
    array
        ``y * (v - sum(y * v))`` per slice, same shape as `y`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> y = sx.softmax(np.array([1.0, 2.0, 3.0]))
    >>> sx.softmax_jvp(y, np.array([1.0, 0.0, 0.0]))
    array([ 0.08192507, -0.02203304, -0.05989202])
    """
    if xp is None and type(axis) is int:
        run = _route("softmax_jvp", y, axis)
        if run is not None and (out := run(y, v)) is not NotImplemented:
            return out
    p = _v.prepare_pair("softmax_jvp", ("y", "v"), y, v, axis, None, xp)
    return _v.restore_dtype(p, _call("softmax_jvp", *p.arrays, axis=p.axis, xp=p.xp))


def softmax_vjp(y: Array, g: Array, /, *, axis: Axis = -1, xp: Namespace | None = None) -> Array:
    """Vector-Jacobian product of softmax, ``gᵀ J`` (the backward pass), from the output `y`.

    Parameters
    ----------
    y : array
        The forward output ``softmax(x, axis=axis)``.
    g : array
        Cotangents (upstream gradients), same shape and namespace as `y`.
    axis : int, tuple of ints or None, optional
        The axis (or axes) the forward softmax ran over. Default: ``-1``.
    xp : array namespace, optional
        The namespace of `y`; found with array-api-compat when not given.

    Returns
    -------
    array
        ``y * (g - sum(g * y))`` per slice, same shape as `y`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> y = sx.softmax(np.array([1.0, 2.0, 3.0]))
    >>> sx.softmax_vjp(y, np.array([0.0, 0.0, 1.0]))
    array([-0.05989202, -0.1628034 ,  0.22269543])
    """
    if xp is None and type(axis) is int:
        run = _route("softmax_vjp", y, axis)
        if run is not None and (out := run(y, g)) is not NotImplemented:
            return out
    p = _v.prepare_pair("softmax_vjp", ("y", "g"), y, g, axis, None, xp)
    return _v.restore_dtype(p, _call("softmax_vjp", *p.arrays, axis=p.axis, xp=p.xp))


def softmax_jacobian(y: Array, /, *, axis: Axis = -1, xp: Namespace | None = None) -> Array:
    """Dense Jacobian of softmax, ``J[..., i, j] = ∂y_i / ∂x_j = y_i (δ_ij - y_j)``.

    Parameters
    ----------
    y : array
        The forward output ``softmax(x, axis=axis)``.
    axis : int, tuple of ints or None, optional
        The axis (or axes) the forward softmax ran over. Default: ``-1``.
    xp : array namespace, optional
        The namespace of `y`; found with array-api-compat when not given.

    Returns
    -------
    array
        Shape ``batch + (C, C)``: the non-softmax axes first in their original order, then
        ``(C, C)`` where ``C`` is the product of the sizes along `axis` (flattened in C order).
        It holds ``N·C²`` numbers; for large ``C`` use :class:`SoftmaxJacobian` instead.

    Raises
    ------
    MemoryError
        Before allocating, when the result (counted in its working dtype: float16 and bfloat16
        as float32) would exceed the budget: the environment variable
        ``SOFTMAX_XP_MAX_DENSE_BYTES`` read at each call (bytes, a size such as ``16GiB``, or
        ``inf``), else 2 GiB. ``SoftmaxJacobian(y).to_dense(max_bytes=...)`` takes a budget
        per call.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> sx.softmax_jacobian(sx.softmax(np.array([1.0, 2.0, 3.0])))
    array([[ 0.08192507, -0.02203304, -0.05989202],
           [-0.02203304,  0.18483645, -0.1628034 ],
           [-0.05989202, -0.1628034 ,  0.22269543]])
    """
    p = _v.prepare_single("softmax_jacobian", "y", y, axis, xp)
    _v.require_known_sizes("softmax_jacobian", "y", y, p.axis)
    from ._operator import check_dense_budget  # the budget lives with the operators

    check_dense_budget("softmax_jacobian", p, tuple(y.shape))
    return _v.restore_dtype(p, _call("softmax_jacobian", *p.arrays, axis=p.axis, xp=p.xp))


def log_softmax_jvp(
    l: Array,
    v: Array,
    /,
    *,
    axis: Axis = -1,
    where: Array | None = None,
    xp: Namespace | None = None,
) -> Array:
    """Jacobian-vector product of log_softmax, ``J v`` with ``J = I - 1 softmaxᵀ`` per slice.

    Parameters
    ----------
    l : array
        The forward output ``log_softmax(x, axis=axis, where=where)``.
    v : array
        Tangent vectors, same shape and namespace as `l`.
    axis : int, tuple of ints or None, optional
        The axis (or axes) the forward log_softmax ran over. Default: ``-1``.
    where : boolean array, optional
        The mask the forward pass used; the result is zero at masked-out entries.
    xp : array namespace, optional
        The namespace of `l`; found with array-api-compat when not given.

    Returns
    -------
    array
        ``v - sum(exp(l) * v)`` per slice, same shape as `l`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> l = sx.log_softmax(np.array([1.0, 2.0, 3.0]))
    >>> sx.log_softmax_jvp(l, np.array([1.0, 0.0, 0.0]))
    array([ 0.90996943, -0.09003057, -0.09003057])
    """
    if where is None and xp is None and type(axis) is int:
        run = _route("log_softmax_jvp", l, axis)
        if run is not None and (out := run(l, v)) is not NotImplemented:
            return out
    p = _v.prepare_pair("log_softmax_jvp", ("l", "v"), l, v, axis, where, xp)
    out = _call("log_softmax_jvp", *p.arrays, axis=p.axis, where=p.where, xp=p.xp)
    return _v.restore_dtype(p, out)


def log_softmax_vjp(
    l: Array,
    g: Array,
    /,
    *,
    axis: Axis = -1,
    where: Array | None = None,
    xp: Namespace | None = None,
) -> Array:
    """Vector-Jacobian product of log_softmax, ``gᵀ J = g - softmax · sum(g)`` per slice.

    Parameters
    ----------
    l : array
        The forward output ``log_softmax(x, axis=axis, where=where)``.
    g : array
        Cotangents, same shape and namespace as `l`.
    axis : int, tuple of ints or None, optional
        The axis (or axes) the forward log_softmax ran over. Default: ``-1``.
    where : boolean array, optional
        The mask the forward pass used; the result is zero at masked-out entries.
    xp : array namespace, optional
        The namespace of `l`; found with array-api-compat when not given.

    Returns
    -------
    array
        Same shape as `l`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> l = sx.log_softmax(np.array([1.0, 2.0, 3.0]))
    >>> sx.log_softmax_vjp(l, np.array([0.0, 0.0, 1.0]))
    array([-0.09003057, -0.24472847,  0.33475904])
    """
    if where is None and xp is None and type(axis) is int:
        run = _route("log_softmax_vjp", l, axis)
        if run is not None and (out := run(l, g)) is not NotImplemented:
            return out
    p = _v.prepare_pair("log_softmax_vjp", ("l", "g"), l, g, axis, where, xp)
    out = _call("log_softmax_vjp", *p.arrays, axis=p.axis, where=p.where, xp=p.xp)
    return _v.restore_dtype(p, out)


def log_softmax_jacobian(l: Array, /, *, axis: Axis = -1, xp: Namespace | None = None) -> Array:
    """Dense Jacobian of log_softmax, ``J[..., i, j] = δ_ij - softmax_j``.

    Parameters
    ----------
    l : array
        The forward output ``log_softmax(x, axis=axis)``.
    axis : int, tuple of ints or None, optional
        The axis (or axes) the forward log_softmax ran over. Default: ``-1``.
    xp : array namespace, optional
        The namespace of `l`; found with array-api-compat when not given.

    Returns
    -------
    array
        Shape ``batch + (C, C)``, in the layout of :func:`softmax_jacobian`.

    Raises
    ------
    MemoryError
        Before allocating a result over the budget of :func:`softmax_jacobian`; use
        :class:`LogSoftmaxJacobian` for large ``C``.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> sx.log_softmax_jacobian(sx.log_softmax(np.array([0.0, 0.0])))
    array([[ 0.5, -0.5],
           [-0.5,  0.5]])
    """
    p = _v.prepare_single("log_softmax_jacobian", "l", l, axis, xp)
    _v.require_known_sizes("log_softmax_jacobian", "l", l, p.axis)
    from ._operator import check_dense_budget  # the budget lives with the operators

    check_dense_budget("log_softmax_jacobian", p, tuple(l.shape))
    return _v.restore_dtype(p, _call("log_softmax_jacobian", *p.arrays, axis=p.axis, xp=p.xp))


# -- logsumexp and the softmax cross-entropies -----------------------------------------------------
def _squeeze(xp: Namespace, a: Array, axis: tuple[int, ...]) -> Array:
    """A keepdims per-slice result in the batch shape."""
    return xp.squeeze(a, axis=axis) if axis else a


def logsumexp(
    x: Array,
    /,
    *,
    axis: Axis = -1,
    where: Array | None = None,
    b: Array | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
    dtype: Any = None,
    xp: Namespace | None = None,
) -> Array | tuple[Array, Array]:
    """Log of the sum of exponentials of `x` over `axis`, ``log(sum(b * exp(x)))``, computed stably.

    ``log_softmax(x)`` is ``x - logsumexp(x, keepdims=True)``.

    Parameters
    ----------
    x : array
        Input. Integer and bool input is promoted to the default real floating dtype.
    axis : int, tuple of ints or None, optional
        The axis (or axes, taken jointly) to reduce. ``None`` means all axes. Default: ``-1``.
    where : boolean array, optional
        Broadcastable to `x`. Only entries where it is True take part; a slice with none gives
        ``-inf``.
    b : array, optional
        Weights broadcastable to `x` (``scipy.special.logsumexp``'s and ``jax.nn.logsumexp``'s
        `b`). An entry whose weight is 0 takes no part, whatever its `x` (``inf`` too). With
        negative weights the sum can be negative: its log is NaN unless `return_sign`.
    keepdims : bool, optional
        Keep the reduced axes, with size 1. Default: False.
    return_sign : bool, optional
        Also return the sign of the sum (1, -1, or 0 for a zero sum, NaN for a NaN one), and
        take the log of its absolute value. Default: False.
    dtype : dtype, optional
        Cast `x` to this real floating dtype before computing.
    xp : array namespace, optional
        The namespace of `x`; found with array-api-compat when not given.

    Returns
    -------
    array or (array, array)
        The batch shape of `x` (`keepdims`: with the reduced axes kept); with `return_sign`,
        the pair ``(log(abs(sum)), sign)``. A slice holding ``+inf`` (and no NaN) gives
        ``+inf``, one holding NaN gives NaN, one of only ``-inf`` gives ``-inf``, as in SciPy
        and JAX. Without `b` it is differentiated (torch autograd, ``torch.func``, JAX) through
        :func:`logsumexp_jvp` / :func:`logsumexp_vjp`, keeping only `x` and the result.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> sx.logsumexp(np.array([1.0, 2.0, 3.0]))
    array(3.40760596)
    >>> sx.logsumexp(np.array([[0.0, 0.0], [1.0, -np.inf]]), keepdims=True)
    array([[0.69314718],
           [1.        ]])
    >>> sx.logsumexp(np.array([1.0, 2.0]), b=np.array([1.0, -1.0]), return_sign=True)
    (array(1.54132485), array(-1.))
    """
    func = "logsumexp"
    if (
        where is None and b is None and keepdims is False and return_sign is False
        and dtype is None and xp is None and type(axis) is int
    ):  # fmt: skip
        run = _route(func, x, axis)  # the common call: validated once per key
        if run is not None and (out := run(x)) is not NotImplemented:
            return out
    if not isinstance(keepdims, bool):
        raise TypeError(f"{func}: argument `keepdims` must be a bool, got {keepdims!r}")
    if not isinstance(return_sign, bool):
        raise TypeError(f"{func}: argument `return_sign` must be a bool, got {return_sign!r}")
    p = _v.prepare_forward(func, x, axis, where, dtype, xp)
    xp = p.xp
    if b is None and not return_sign:
        out = _forward(func, p.arrays[0], axis=p.axis, where=p.where, xp=xp)
        out = out if keepdims else _squeeze(xp, out, p.axis)
        return _v.restore_dtype(p, out)
    weights = None if b is None else _v.prepare_weights(func, p, b)
    lse, sign = _call("logsumexp_weighted", p.arrays[0], weights, axis=p.axis, where=p.where, xp=xp)
    if not return_sign:
        lse = xp.where(sign < 0, xp.full_like(lse, float("nan")), lse)  # log of a negative sum
    if not keepdims:
        lse, sign = _squeeze(xp, lse, p.axis), _squeeze(xp, sign, p.axis)
    lse, sign = _v.restore_dtype(p, lse), _v.restore_dtype(p, sign)
    return (lse, sign) if return_sign else lse


def logsumexp_jvp(
    x: Array,
    lse: Array,
    v: Array,
    /,
    *,
    axis: Axis = -1,
    where: Array | None = None,
    xp: Namespace | None = None,
) -> Array:
    """Jacobian-vector product of logsumexp, ``<softmax(x), v>`` per slice, from `x` and `lse`.

    Parameters
    ----------
    x : array
        The input of :func:`logsumexp`.
    lse : array
        Its result, ``logsumexp(x, axis=axis, where=where)`` (batch shape, or keepdims).
    v : array
        The tangent, of the shape of `x`.
    axis, where, xp
        As for :func:`logsumexp`. Masked-out entries of `v` take no part.

    Returns
    -------
    array
        The batch shape of `x`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> x = np.array([0.0, np.log(3.0)])
    >>> sx.logsumexp_jvp(x, sx.logsumexp(x), np.array([1.0, 0.0]))
    array(0.25)
    """
    p = _v.prepare_lse("logsumexp_jvp", ("x", "lse", "v"), (x, lse, v), axis, where, xp,
                       reduced=("lse",))  # fmt: skip
    out = _call("logsumexp_jvp", *p.arrays, axis=p.axis, where=p.where, xp=p.xp)
    return _v.restore_dtype(p, _squeeze(p.xp, out, p.axis))


def logsumexp_vjp(
    x: Array,
    lse: Array,
    g: Array,
    /,
    *,
    axis: Axis = -1,
    where: Array | None = None,
    xp: Namespace | None = None,
) -> Array:
    """Vector-Jacobian product of logsumexp, ``g * softmax(x)`` (the backward pass), from `x` and
    `lse`.

    Parameters
    ----------
    x : array
        The input of :func:`logsumexp`.
    lse : array
        Its result, ``logsumexp(x, axis=axis, where=where)`` (batch shape, or keepdims).
    g : array
        The cotangent of `lse`, one number per slice (batch shape, or keepdims).
    axis, where, xp
        As for :func:`logsumexp`.

    Returns
    -------
    array
        The shape of `x`; 0 at masked-out entries.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> x = np.array([0.0, np.log(3.0)])
    >>> sx.logsumexp_vjp(x, sx.logsumexp(x), np.array(2.0))
    array([0.5, 1.5])
    """
    p = _v.prepare_lse("logsumexp_vjp", ("x", "lse", "g"), (x, lse, g), axis, where, xp,
                       reduced=("lse", "g"))  # fmt: skip
    out = _call("logsumexp_vjp", *p.arrays, axis=p.axis, where=p.where, xp=p.xp)
    return _v.restore_dtype(p, out)


def softmax_cross_entropy(
    x: Array,
    targets: Array,
    /,
    *,
    axis: Axis = -1,
    where: Array | None = None,
    label_smoothing: float = 0.0,
    xp: Namespace | None = None,
) -> Array:
    """Cross-entropy of the softmax of logits `x` against probability targets, per slice:
    ``-sum(targets * log_softmax(x))``.

    The loss of ``torch.nn.functional.cross_entropy(x, targets, reduction='none')`` with
    probability targets (the class axis is `axis`, not 1) and of optax's
    ``softmax_cross_entropy``; reduce it with the caller's ``mean`` or ``sum``.

    Parameters
    ----------
    x : array
        Logits.
    targets : array
        Probabilities (or any weights) of the shape of `x`. A zero target takes no part,
        whatever its logit (``-inf`` too).
    axis : int, tuple of ints or None, optional
        The class axis (or axes, taken jointly). Default: ``-1``.
    where : boolean array, optional
        Broadcastable to `x`: the classes that take part (in the softmax and in the sum).
    label_smoothing : float, optional
        ``eps`` in [0, 1]: the targets become ``(1 - eps) * targets + eps / K``, ``K`` the number
        of classes taking part (as torch's ``label_smoothing``). Default: 0.
    xp : array namespace, optional
        The namespace of `x`; found with array-api-compat when not given.

    Returns
    -------
    array
        The batch shape of `x`. NaN for a slice whose maximum logit is not finite, ``+inf``
        where a positive target's logit is ``-inf``. Differentiable in `x` and `targets`
        (torch autograd, ``torch.func``, JAX) through this package's own rules, which keep `x`,
        `targets` and one log-sum-exp per slice, never an array of the shape of `x`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> sx.softmax_cross_entropy(np.array([0.0, 0.0]), np.array([1.0, 0.0]))
    array(0.69314718)
    """
    func = "softmax_cross_entropy"
    eps = _v.check_label_smoothing(func, label_smoothing)
    p = _v.prepare_lse(func, ("x", "targets"), (x, targets), axis, where, xp)
    out = _forward(func, *p.arrays, axis=p.axis, where=p.where, xp=p.xp, label_smoothing=eps)
    return _v.restore_dtype(p, _squeeze(p.xp, out, p.axis))


def softmax_cross_entropy_with_integer_labels(
    x: Array,
    labels: Array,
    /,
    *,
    axis: Axis = -1,
    where: Array | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
    xp: Namespace | None = None,
) -> Array:
    """Cross-entropy of the softmax of logits `x` against integer class labels, per slice:
    ``logsumexp(x) - x[label]``.

    The loss of ``torch.nn.functional.cross_entropy(x, labels, reduction='none')`` with class
    indices (the class axis is `axis`, not 1) and of optax's
    ``softmax_cross_entropy_with_integer_labels``; reduce it with the caller's ``mean`` or
    ``sum`` (torch's ``reduction='mean'`` with ``ignore_index`` divides by the number of labels
    not ignored).

    Parameters
    ----------
    x : array
        Logits.
    labels : integer array
        One class index per slice, of the batch shape of `x` (or keepdims). With a tuple
        `axis`, the flat (C-order) index into the slice over those axes. Indices outside
        ``[0, C)`` are a ``ValueError`` where the values are at hand (NumPy, CPU torch tensors,
        concrete JAX arrays) and give NaN elsewhere (under ``jax.jit``, on CUDA, on Dask).
    axis : int, tuple of ints or None, optional
        The class axis (or axes, taken jointly). Default: ``-1``.
    where : boolean array, optional
        Broadcastable to `x`: the classes that take part. A label naming a masked-out class
        gives ``+inf``.
    label_smoothing : float, optional
        ``eps`` in [0, 1]: the one-hot target becomes ``(1 - eps) * onehot + eps / K``, ``K``
        the number of classes taking part. Default: 0.
    ignore_index : int, optional
        A label value whose slices get loss 0 and zero gradient (torch's ``ignore_index``;
        torch's default there is -100, here it is None: every label counts).
    xp : array namespace, optional
        The namespace of `x`; found with array-api-compat when not given.

    Returns
    -------
    array
        The batch shape of `x`. Differentiable in `x` (torch autograd, ``torch.func``, JAX)
        through this package's own rules, which keep `x`, `labels` and one log-sum-exp per
        slice, never an array of the shape of `x`.

    Examples
    --------
    >>> import numpy as np
    >>> import softmax_xp as sx
    >>> x = np.array([[0.0, 0.0], [0.0, np.log(3.0)]])
    >>> sx.softmax_cross_entropy_with_integer_labels(x, np.array([0, 1]))
    array([0.69314718, 0.28768207])
    >>> sx.softmax_cross_entropy_with_integer_labels(x, np.array([0, -1]), ignore_index=-1)
    array([0.69314718, 0.        ])
    """
    func = "softmax_cross_entropy_with_integer_labels"
    if (
        where is None and ignore_index is None and xp is None and type(axis) is int
        and type(label_smoothing) is float and label_smoothing == 0.0
    ):  # fmt: skip
        lab = _v.labels_fast(x, labels, axis)  # the common call: labels checked cheaply
        run = None if lab is None else _route(func, x, axis)
        if run is not None and (out := run(x, lab)) is not NotImplemented:
            return out
    eps = _v.check_label_smoothing(func, label_smoothing)
    p, lab = _v.prepare_labels(
        func, x, labels, axis, where, None, ignore_index, None if xp is None else xp
    )
    c = _v.axis_size(tuple(p.arrays[0].shape), p.axis)
    _v.check_label_values(func, p.xp, lab, c, ignore_index)
    out = _forward(func, p.arrays[0], lab, axis=p.axis, where=p.where, xp=p.xp,
                   label_smoothing=eps, ignore_index=ignore_index)  # fmt: skip
    return _v.restore_dtype(p, _squeeze(p.xp, out, p.axis))
