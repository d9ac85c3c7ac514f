"""logsumexp and its JVP/VJP on every backend, against SciPy (float64) and finite differences.

``scipy.special.logsumexp`` is the reference for values, weights ``b``, ``return_sign`` and edge
values; a mask ``where`` is checked as SciPy's weights ``b = where`` (an entry of weight 0 takes
no part there, as here). The derivative kernels are checked against central differences of
SciPy's logsumexp in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.special as sp
from _support import FD_TOLERANCE, Lib, assert_close

import softmax_xp as sx
from softmax_xp._testing import FD_STEP

Axis = int | tuple[int, ...] | None

# (shape, axis): single, negative, tuple (adjacent or not), all axes, a 1-d and a 0-size batch
CASES: list[tuple[tuple[int, ...], Axis]] = [
    ((5, 7), -1),
    ((5, 7), 0),
    ((3, 4, 5), (0, 2)),
    ((3, 4, 5), (1, 2)),
    ((3, 4), None),
    ((9,), -1),
    ((0, 4), -1),
]


def _data(shape: tuple[int, ...], seed: int = 0, scale: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


def _mask(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    m = np.random.default_rng(seed).random(shape) < 0.7
    if m.size:
        m.flat[0] = False
    return m


def _scipy_axis(axis: Axis, ndim: int) -> Any:
    return tuple(range(ndim)) if axis is None else axis


def _batch(shape: tuple[int, ...], axis: Axis, keepdims: bool) -> tuple[int, ...]:
    axes = range(len(shape)) if axis is None else np.atleast_1d(axis) % max(len(shape), 1)
    return tuple(
        1 if a in set(axes) else s for a, s in enumerate(shape) if keepdims or a not in set(axes)
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_matches_scipy(
    lib: Lib, shape: tuple[int, ...], axis: Axis, dtype: str, keepdims: bool
) -> None:
    x = _data(shape)
    want = sp.logsumexp(x, axis=_scipy_axis(axis, x.ndim), keepdims=keepdims)
    got = lib.call(sx.logsumexp, lib.asarray(x, dtype), axis=axis, keepdims=keepdims)
    assert_close(lib, got, want, dtype=dtype, shape=_batch(shape, axis, keepdims))


@pytest.mark.parametrize(("shape", "axis"), CASES[:5])
def test_where_is_scipys_zero_weight(lib: Lib, shape: tuple[int, ...], axis: Axis) -> None:
    x, m = _data(shape), _mask(shape)
    want = sp.logsumexp(x, axis=_scipy_axis(axis, x.ndim), b=m.astype(float))
    got = lib.call(sx.logsumexp, lib.asarray(x), axis=axis, where=lib.asarray(m))
    assert_close(lib, got, want, dtype="float64")


@pytest.mark.parametrize(("shape", "axis"), CASES[:5])
def test_weights_and_sign_match_scipy(lib: Lib, shape: tuple[int, ...], axis: Axis) -> None:
    x = _data(shape)
    b = np.random.default_rng(2).normal(size=shape)
    b.flat[1] = 0.0
    ax = _scipy_axis(axis, x.ndim)
    want, want_sign = sp.logsumexp(x, axis=ax, b=b, return_sign=True)
    got, sign = lib.call(
        sx.logsumexp, lib.asarray(x), axis=axis, b=lib.asarray(b), return_sign=True
    )
    assert_close(lib, got, want, dtype="float64")
    assert_close(lib, sign, want_sign, dtype="float64")
    # without return_sign, a negative sum's log is NaN, as in SciPy
    with np.errstate(invalid="ignore"):
        plain = sp.logsumexp(x, axis=ax, b=b)
    assert_close(lib, lib.call(sx.logsumexp, lib.asarray(x), axis=axis, b=lib.asarray(b)), plain)


def test_weights_broadcast(lib: Lib) -> None:
    x, b = _data((4, 6)), np.abs(_data((6,), seed=3))
    got = lib.call(sx.logsumexp, lib.asarray(x), b=lib.asarray(b))
    assert_close(lib, got, sp.logsumexp(x, axis=-1, b=b))


INF, NAN = np.inf, np.nan
#: rows whose value SciPy defines at the edges (and the weights of the weighted ones)
EDGE_ROWS = [
    [INF, 1.0, 2.0],
    [-INF, -INF, -INF],
    [NAN, 1.0, 2.0],
    [INF, NAN, 0.0],
    [INF, -INF, 0.0],
    [-INF, 1.0, 2.0],
    ["max", "max", 1.0],
    ["-max", "-max", "-max"],
]
EDGE_WEIGHTS = [
    ([INF, 1.0, 2.0], [-1.0, 1.0, 1.0]),
    ([INF, INF, 2.0], [1.0, -1.0, 1.0]),
    ([INF, 1.0, 2.0], [0.0, 1.0, 1.0]),
    ([1.0, 1.0, -INF], [1.0, -1.0, 1.0]),
    ([NAN, 1.0, 2.0], [0.0, 1.0, 1.0]),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_edge_values_match_scipy(lib: Lib, dtype: str) -> None:
    big = float(np.finfo(dtype).max)
    x = np.array([[{"max": big, "-max": -big}.get(v, v) for v in r] for r in EDGE_ROWS], dtype)
    with np.errstate(all="ignore"):
        want = sp.logsumexp(x, axis=-1)  # SciPy in the input's dtype: max + log 2 overflows
    got = lib.call(sx.logsumexp, lib.asarray(x, dtype))
    assert_close(lib, got, want, dtype=dtype)


@pytest.mark.parametrize(("row", "b"), EDGE_WEIGHTS)
def test_weighted_edge_values_match_scipy(lib: Lib, row: list[float], b: list[float]) -> None:
    x, w = np.array(row), np.array(b)
    with np.errstate(all="ignore"):
        want, want_sign = sp.logsumexp(x, b=w, return_sign=True)
    got, sign = lib.call(sx.logsumexp, lib.asarray(x), b=lib.asarray(w), return_sign=True)
    assert_close(lib, got, want)
    assert_close(lib, sign, want_sign)


def test_all_masked_and_empty_slices_are_minus_inf(lib: Lib) -> None:
    x = _data((2, 3))
    m = np.array([[False] * 3, [True, False, True]])
    got = lib.to_numpy(lib.call(sx.logsumexp, lib.asarray(x), where=lib.asarray(m)))
    assert got[0] == -np.inf
    np.testing.assert_allclose(got[1], sp.logsumexp(x[1, [0, 2]]))
    empty = lib.to_numpy(lib.call(sx.logsumexp, lib.asarray(np.zeros((3, 0)))))
    np.testing.assert_array_equal(empty, np.full(3, -np.inf))


def test_integer_input_is_promoted_as_softmax_promotes_it(lib: Lib) -> None:
    x = np.arange(6).reshape(2, 3)
    got = lib.call(sx.logsumexp, lib.asarray(x, "int64"))
    promoted = lib.dtype_name(lib.call(sx.softmax, lib.asarray(x, "int64")).dtype)
    assert_close(lib, got, sp.logsumexp(x.astype(float), axis=-1), dtype=promoted)


# -- the derivative kernels against finite differences of SciPy ------------------------------------
def _fd_grad(x: np.ndarray, axis: Axis, mask: np.ndarray | None) -> np.ndarray:
    """d sum(logsumexp(x)) / dx by central differences (each slice's lse depends on its own
    entries only, so the gradient of the sum is every slice's gradient)."""
    b = None if mask is None else mask.astype(float)
    ax = _scipy_axis(axis, x.ndim)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = FD_STEP
        up = sp.logsumexp(x + step, axis=ax, b=b).sum()
        down = sp.logsumexp(x - step, axis=ax, b=b).sum()
        grad[i] = (up - down) / (2 * FD_STEP)
    return grad


@pytest.mark.parametrize(("shape", "axis"), CASES[:5])
@pytest.mark.parametrize("masked", [False, True])
def test_vjp_and_jvp_match_finite_differences(
    lib: Lib, shape: tuple[int, ...], axis: Axis, masked: bool
) -> None:
    x = _data(shape, scale=1.0)
    m = _mask(shape) if masked else None
    fd = _fd_grad(x, axis, m)
    kw: dict[str, Any] = {"axis": axis}
    if m is not None:
        kw["where"] = lib.asarray(m)
    lse = sp.logsumexp(x, axis=_scipy_axis(axis, x.ndim), b=None if m is None else m.astype(float))
    g = np.random.default_rng(4).normal(size=lse.shape)
    bshape = _batch(shape, axis, True)
    # VJP: g * softmax, i.e. g times the gradient of each slice's lse
    got = lib.call(sx.logsumexp_vjp, lib.asarray(x), lib.asarray(lse), lib.asarray(g), **kw)
    assert_close(lib, got, fd * np.reshape(g, bshape), rtol=FD_TOLERANCE[0], atol=FD_TOLERANCE[1])
    # JVP: <grad, v> per slice
    v = np.random.default_rng(5).normal(size=shape)
    ax = _scipy_axis(axis, x.ndim)
    want = np.sum(fd * v, axis=ax)
    got = lib.call(sx.logsumexp_jvp, lib.asarray(x), lib.asarray(lse), lib.asarray(v), **kw)
    assert_close(lib, got, want, rtol=FD_TOLERANCE[0], atol=FD_TOLERANCE[1])
    # lse and g given with the reduced axes kept give the same
    got_keep = lib.call(
        sx.logsumexp_vjp,
        lib.asarray(x),
        lib.asarray(np.reshape(lse, bshape)),
        lib.asarray(np.reshape(g, bshape)),
        **kw,
    )
    np.testing.assert_array_equal(
        lib.to_numpy(got_keep),
        lib.to_numpy(
            lib.call(sx.logsumexp_vjp, lib.asarray(x), lib.asarray(lse), lib.asarray(g), **kw)
        ),
    )


def test_vjp_has_the_edge_values_of_softmax(lib: Lib) -> None:
    """``g * softmax(x)``: NaN throughout a slice with a +inf or NaN logit or only -inf ones (as
    softmax itself), 0 in an all-masked slice."""
    x = np.array([[-INF, -INF], [NAN, 1.0], [INF, 1.0], [1.0, 2.0]])
    m = np.array([[True, True], [True, True], [True, True], [False, False]])
    lse = np.array([-INF, NAN, INF, -INF])
    got = lib.to_numpy(lib.call(sx.logsumexp_vjp, lib.asarray(x), lib.asarray(lse),
                                lib.asarray(np.ones(4)), where=lib.asarray(m)))  # fmt: skip
    assert np.isnan(got[:3]).all()
    np.testing.assert_array_equal(got[3], [0.0, 0.0])
    plain = lib.to_numpy(lib.call(sx.logsumexp_vjp, lib.asarray(x[:3]), lib.asarray(lse[:3]),
                                  lib.asarray(np.ones(3))))  # fmt: skip
    assert np.isnan(plain).all()
    y = lib.to_numpy(lib.call(sx.softmax, lib.asarray(x[:3])))
    np.testing.assert_array_equal(np.isnan(got[:3]), np.isnan(y))


# -- misuse: clear errors naming the argument ------------------------------------------------------
def test_errors_name_the_argument() -> None:
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="argument `b` with shape"):
        sx.logsumexp(x, b=np.ones(4))
    with pytest.raises(TypeError, match="argument `b`"):
        sx.logsumexp(x, b=[1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="argument `keepdims`"):
        sx.logsumexp(x, keepdims=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="argument `return_sign`"):
        sx.logsumexp(x, return_sign="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="argument `axis`"):
        sx.logsumexp(x, axis=2)
    with pytest.raises(ValueError, match="argument `lse` must have one entry per slice"):
        sx.logsumexp_vjp(x, np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="argument `g` must have one entry per slice"):
        sx.logsumexp_vjp(x, np.zeros(2), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="arguments `x` and `v` must have the same shape"):
        sx.logsumexp_jvp(x, np.zeros(2), np.zeros(3))
    with pytest.raises(TypeError, match="argument `x` has complex dtype"):
        sx.logsumexp(np.zeros(3, complex))


def test_inputs_are_not_mutated_and_nothing_warns() -> None:
    x = np.array([[INF, 1.0], [-INF, -INF], [NAN, 0.0], [1e308, 1e308]])
    b = np.array([1.0, -1.0])
    x0, b0 = x.copy(), b.copy()
    with np.errstate(all="raise"):
        sx.logsumexp(x)
        sx.logsumexp(x, b=b, return_sign=True)
        sx.logsumexp(x, b=b)
        lse = sx.logsumexp(x)
        sx.logsumexp_vjp(x, lse, np.ones(4))
        sx.logsumexp_jvp(x, lse, np.ones_like(x))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(b, b0)
