"""Hypothesis properties over shapes, axes (tuples too), masks and dtypes, on every backend.

Mathematical identities that any correct softmax satisfies: they need no reference at all.
"""

from __future__ import annotations

import numpy as np
from _reference import to_rows
from _support import Lib, tolerance
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softmax_xp as sx
from softmax_xp._testing import LOG_FACTOR, SHIFT_ULPS, SUM_FACTOR, Tolerance


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, object, np.ndarray | None, str]:
    """(x, axis, mask or None, dtype) with 1-3 dims of size 1-5 and any legal axis spec."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    ndim = len(shape)
    kind = draw(st.sampled_from(["int", "tuple", "none"]))
    if kind == "int":
        axis: object = draw(st.integers(-ndim, ndim - 1))
    elif kind == "tuple":
        axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        axis = tuple(a - ndim if draw(st.booleans()) else a for a in axes)
    else:
        axis = None
    dtype = draw(st.sampled_from(["float32", "float64"]))
    x = draw(hnp.arrays(np.float64, shape, elements=st.floats(-30, 30, width=32)))
    mask = draw(st.one_of(st.none(), hnp.arrays(np.bool_, shape)))
    return x, axis, mask, dtype


@given(problems())
def test_slices_sum_to_one_and_masked_entries_vanish(
    lib: Lib, p: tuple[np.ndarray, object, np.ndarray | None, str]
) -> None:
    x, axis, mask, dtype = p
    w = None if mask is None else lib.asarray(mask)
    y = lib.to_numpy(lib.call(sx.softmax, lib.asarray(x, dtype), axis=axis, where=w))
    rtol, _ = tolerance(dtype)
    sums = to_rows(y, axis).sum(-1)
    if mask is None:
        np.testing.assert_allclose(sums, 1.0, rtol=SUM_FACTOR * rtol)
    else:
        any_valid = to_rows(mask, axis).any(-1)
        np.testing.assert_allclose(sums[any_valid], 1.0, rtol=SUM_FACTOR * rtol)
        np.testing.assert_array_equal(sums[~any_valid], 0.0)
        assert np.all(y[~mask] == 0)
    assert np.all((y >= 0) & (y <= 1))


@given(problems(), st.floats(-50, 50))
def test_shift_invariance(
    lib: Lib, p: tuple[np.ndarray, object, np.ndarray | None, str], c: float
) -> None:
    x, axis, _, dtype = p
    a = lib.to_numpy(lib.call(sx.softmax, lib.asarray(x, dtype), axis=axis))
    b = lib.to_numpy(lib.call(sx.softmax, lib.asarray(x + c, dtype), axis=axis))
    rtol, _ = tolerance(dtype)
    # the shifted input is rounded to the dtype, so allow the resulting change in the logits
    shift_err = float(np.finfo(dtype).eps) * (abs(c) + np.abs(x).max())
    np.testing.assert_allclose(
        a, b, rtol=rtol + SHIFT_ULPS * shift_err, atol=SHIFT_ULPS * shift_err
    )


@given(problems())
def test_log_softmax_is_log_of_softmax(
    lib: Lib, p: tuple[np.ndarray, object, np.ndarray | None, str]
) -> None:
    x, axis, mask, dtype = p
    w = None if mask is None else lib.asarray(mask)
    xb = lib.asarray(x, dtype)
    y = lib.to_numpy(lib.call(sx.softmax, xb, axis=axis, where=w))
    l = lib.to_numpy(lib.call(sx.log_softmax, xb, axis=axis, where=w))
    rtol, atol = tolerance(dtype)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(np.exp(l), y, rtol=rtol, atol=atol)
        # where y is not tiny, log(y) == l to rtol (in absolute terms, as l is a log)
        big = y > 1e-3
        np.testing.assert_allclose(
            l[big], np.log(y[big]), **Tolerance.absolute(LOG_FACTOR * rtol).kw
        )


@given(problems())
def test_jacobian_is_symmetric_with_ones_in_null_space(
    lib: Lib, p: tuple[np.ndarray, object, np.ndarray | None, str]
) -> None:
    x, axis, _, dtype = p
    y = lib.call(sx.softmax, lib.asarray(x, dtype), axis=axis)
    jac = lib.to_numpy(lib.call(sx.softmax_jacobian, y, axis=axis))
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(jac, np.swapaxes(jac, -1, -2), **Tolerance.absolute(atol).kw)
    np.testing.assert_allclose(jac.sum(-1), 0.0, atol=SUM_FACTOR * rtol)
    l = lib.call(sx.log_softmax, lib.asarray(x, dtype), axis=axis)
    ljac = lib.to_numpy(lib.call(sx.log_softmax_jacobian, l, axis=axis))
    np.testing.assert_allclose(ljac.sum(-1), 0.0, atol=SUM_FACTOR * rtol)  # J 1 = 1 - sum(p) = 0


@given(problems(), st.integers(0, 2**32 - 1))
def test_jvp_and_vjp_agree_with_the_dense_jacobian(
    lib: Lib, p: tuple[np.ndarray, object, np.ndarray | None, str], seed: int
) -> None:
    x, axis, _mask, dtype = p
    v = np.random.default_rng(seed).standard_normal(x.shape)
    xb, vb = lib.asarray(x, dtype), lib.asarray(v, dtype)
    v64 = lib.to_numpy(vb)
    rtol, atol = tolerance(dtype)
    for log in (False, True):
        fwd = sx.log_softmax if log else sx.softmax
        jac_fn = sx.log_softmax_jacobian if log else sx.softmax_jacobian
        y = lib.call(fwd, xb, axis=axis)
        jac = lib.to_numpy(lib.call(jac_fn, y, axis=axis))
        vr = to_rows(v64, axis)
        jv = lib.to_numpy(lib.call(sx.log_softmax_jvp if log else sx.softmax_jvp, y, vb, axis=axis))
        vj = lib.to_numpy(lib.call(sx.log_softmax_vjp if log else sx.softmax_vjp, y, vb, axis=axis))
        scale = float(np.abs(vr).sum(-1).max(initial=1.0))
        np.testing.assert_allclose(
            to_rows(jv, axis),
            np.einsum("...ij,...j->...i", jac, vr),
            rtol=rtol,
            atol=atol * scale * SUM_FACTOR,
        )
        np.testing.assert_allclose(
            to_rows(vj, axis),
            np.einsum("...i,...ij->...j", vr, jac),
            rtol=rtol,
            atol=atol * scale * SUM_FACTOR,
        )
