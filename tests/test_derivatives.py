"""JVP, VJP and dense Jacobians against each framework's autodiff (torch.func, jax transforms) or,
for libraries without autodiff, float64 central finite differences of scipy.special."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import forward, jacobian, jvp, vjp
from _support import FD_TOLERANCE, Lib, assert_close, tolerance

import softmax_xp as sx
from softmax_xp._testing import F64_JACOBIAN_FORMULA

CASES = [
    ((6,), -1),
    ((4, 7), -1),
    ((4, 7), 0),
    ((3, 4, 5), 1),
    ((3, 4, 2), (0, 2)),
    ((2, 3, 2), None),
]


def _tol(lib: Lib, dtype: str) -> dict[str, float]:
    """Finite differences limit float64 agreement; float32 keeps its own tolerance."""
    if dtype == "float64" and not (lib.backend.is_torch or lib.backend.is_jax):
        return {"rtol": FD_TOLERANCE[0], "atol": FD_TOLERANCE[1]}
    return {}


def _data(shape: tuple[int, ...], dtype: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2).astype(dtype).astype(np.float64)
    v = rng.standard_normal(shape).astype(dtype).astype(np.float64)
    return x, v


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jvp(lib: Lib, log: bool, shape: tuple[int, ...], axis: object, dtype: str) -> None:
    x, v = _data(shape, dtype, 10)
    fwd, kernel = (sx.log_softmax, sx.log_softmax_jvp) if log else (sx.softmax, sx.softmax_jvp)
    y = lib.call(fwd, lib.asarray(x, dtype), axis=axis)
    out = lib.call(kernel, y, lib.asarray(v, dtype), axis=axis)
    assert_close(lib, out, jvp(lib, x, v, axis, log=log), dtype=dtype, **_tol(lib, dtype))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vjp(lib: Lib, log: bool, shape: tuple[int, ...], axis: object, dtype: str) -> None:
    x, g = _data(shape, dtype, 11)
    fwd, kernel = (sx.log_softmax, sx.log_softmax_vjp) if log else (sx.softmax, sx.softmax_vjp)
    y = lib.call(fwd, lib.asarray(x, dtype), axis=axis)
    out = lib.call(kernel, y, lib.asarray(g, dtype), axis=axis)
    assert_close(lib, out, vjp(lib, x, g, axis, log=log), dtype=dtype, **_tol(lib, dtype))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jacobian_layout_and_values(
    lib: Lib, log: bool, shape: tuple[int, ...], axis: object, dtype: str
) -> None:
    """batch axes first in their original order, then (C, C) with J[..., i, j] = dy_i/dx_j."""
    x, _ = _data(shape, dtype, 12)
    fwd, kernel = (
        (sx.log_softmax, sx.log_softmax_jacobian) if log else (sx.softmax, sx.softmax_jacobian)
    )
    y = lib.call(fwd, lib.asarray(x, dtype), axis=axis)
    out = lib.call(kernel, y, axis=axis)
    want = jacobian(lib, x, axis, log=log)
    assert_close(lib, out, want, dtype=dtype, **_tol(lib, dtype))


def test_jacobian_layout_example(lib: Lib) -> None:
    """docs/design.md: a (C, N) input with axis=0 gives (N, C, C)."""
    x = np.arange(12.0).reshape(3, 4) / 5
    y = lib.call(sx.softmax, lib.asarray(x), axis=0)
    jac = lib.call(sx.softmax_jacobian, y, axis=0)
    assert tuple(jac.shape) == (4, 3, 3)
    col = forward(lib, x, 0, log=False)[:, 1]
    np.testing.assert_allclose(
        lib.to_numpy(jac)[1], np.diag(col) - np.outer(col, col), **F64_JACOBIAN_FORMULA.kw
    )


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_masked_derivatives(lib: Lib, log: bool) -> None:
    """With a where-mask, derivatives match the framework's masked softmax and vanish off-mask."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 6))
    v = rng.standard_normal((4, 6))
    mask = rng.random((4, 6)) < 0.6
    mask[:, 0] = True  # no all-masked slice here (see test_all_masked_derivatives_are_zero)
    xb, vb, wb = lib.asarray(x), lib.asarray(v), lib.asarray(mask)
    if log:
        l = lib.call(sx.log_softmax, xb, where=wb)
        out_j = lib.call(sx.log_softmax_jvp, l, vb, where=wb)
        out_v = lib.call(sx.log_softmax_vjp, l, vb, where=wb)
    else:
        y = lib.call(sx.softmax, xb, where=wb)
        out_j = lib.call(sx.softmax_jvp, y, vb)
        out_v = lib.call(sx.softmax_vjp, y, vb)
    tol = _tol(lib, "float64")
    assert_close(lib, out_j, jvp(lib, x, v, -1, log=log, where=mask), dtype="float64", **tol)
    assert_close(lib, out_v, vjp(lib, x, v, -1, log=log, where=mask), dtype="float64", **tol)
    assert np.all(lib.to_numpy(out_j)[~mask] == 0)
    assert np.all(lib.to_numpy(out_v)[~mask] == 0)


def test_all_masked_derivatives_are_zero(lib: Lib) -> None:
    x = lib.asarray(np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    w = lib.asarray(np.array([[False, False, False], [True, True, False]]))
    v = lib.asarray(np.array([[1.0, -2.0, 0.5], [1.0, -2.0, 0.5]]))
    y = lib.call(sx.softmax, x, where=w)
    l = lib.call(sx.log_softmax, x, where=w)
    for out in (
        lib.call(sx.softmax_jvp, y, v),
        lib.call(sx.softmax_vjp, y, v),
        lib.call(sx.log_softmax_jvp, l, v, where=w),
        lib.call(sx.log_softmax_vjp, l, v, where=w),
    ):
        got = lib.to_numpy(out)
        np.testing.assert_array_equal(got[0], 0.0)
        assert np.isfinite(got).all()
    np.testing.assert_array_equal(lib.to_numpy(lib.call(sx.softmax_jacobian, y))[0], 0.0)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_derivatives(lib: Lib, log: bool, dtype: str) -> None:
    """Half-precision kernels accumulate in float32: within one half-precision rounding (normwise)
    of the float64 derivative at the same (half-precision) input."""
    rng = np.random.default_rng(14)
    xh = lib.asarray(rng.standard_normal((3, 512)), dtype)
    gh = lib.asarray(rng.standard_normal((3, 512)), dtype)
    x, g = lib.to_numpy(xh), lib.to_numpy(gh)
    fwd, kernel = (sx.log_softmax, sx.log_softmax_vjp) if log else (sx.softmax, sx.softmax_vjp)
    out = lib.call(kernel, lib.call(fwd, xh), gh)
    want = vjp(lib, x, g, -1, log=log)
    rtol, _ = tolerance(dtype)
    assert_close(lib, out, want, dtype=dtype, rtol=rtol, atol=rtol * float(np.max(np.abs(want))))
