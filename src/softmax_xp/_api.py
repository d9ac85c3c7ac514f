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
