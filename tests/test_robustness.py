"""Edges of the fast paths and of the operators: devices, sharding, byte order and precision,
NumPy scalars, sparse tensors, unknown Dask sizes, budgets under vmap, non-finite operator input.

Every reference here is independent of softmax_xp: NumPy / SciPy in float64 or longdouble,
torch and JAX's own softmax, or the defining formulas evaluated in a wider dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from _support import in_session

import softmax_xp as sx

numpy_session = pytest.mark.skipif(not in_session("numpy"), reason="runs in the numpy session")
torch_session = pytest.mark.skipif(not in_session("torch"), reason="runs in the torch session")
jax_session = pytest.mark.skipif(not in_session("jax"), reason="runs in the jax session")
dask_session = pytest.mark.skipif(not in_session("dask"), reason="runs in the dask session")

FORWARD = [sx.softmax, sx.log_softmax]


def _ref_forward(f: object, x: np.ndarray, axis: int | None = -1) -> np.ndarray:
    g = scipy.special.softmax if f is sx.softmax else scipy.special.log_softmax
    return np.asarray(g(np.asarray(x, dtype=np.float64), axis=axis))


# -- byte order and precision (NumPy) ------------------------------------------------------------
@numpy_session
@pytest.mark.parametrize("f", FORWARD, ids=lambda f: f.__name__)
@pytest.mark.parametrize("order", [">", "<"])
def test_dtype_argument_of_either_byte_order_computes_in_native_float64(
    f: object, order: str
) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 33))
    out = f(x, dtype=np.dtype(f"{order}f8"))  # type: ignore[operator]
    assert out.dtype == np.float64
    assert out.dtype.isnative
    np.testing.assert_allclose(out, _ref_forward(f, x), rtol=1e-14, atol=1e-15)


@numpy_session
@pytest.mark.parametrize("f", FORWARD, ids=lambda f: f.__name__)
def test_longdouble_is_computed_in_longdouble(f: object) -> None:
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("longdouble is float64 on this platform")
    x = (np.arange(12, dtype=np.longdouble) / np.longdouble(7)).reshape(3, 4)
    x64 = x.astype(np.float64)
    tol = 16 * np.finfo(np.longdouble).eps
    for out, xl in ((f(x), x), (f(x64, dtype=np.longdouble), x64.astype(np.longdouble))):  # type: ignore[operator]
        e = np.exp(xl - xl.max(axis=-1, keepdims=True))
        ref = e / e.sum(axis=-1, keepdims=True)
        if f is sx.log_softmax:
            ref = np.log(ref)
        assert out.dtype == np.longdouble
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


# -- NumPy scalars ---------------------------------------------------------------------------------
@numpy_session
@pytest.mark.parametrize("scalar", [np.float64, np.float32, np.float16, np.int64, np.bool_])
def test_numpy_scalars_are_zero_d_arrays(scalar: type) -> None:
    s = scalar(2)
    want = np.float64 if scalar in (np.int64, np.bool_) else scalar
    for f in FORWARD:
        out = f(s, axis=None)
        assert type(out) is np.ndarray
        assert out.shape == ()
        assert out.dtype == want
        assert float(out) == (1.0 if f is sx.softmax else 0.0)
    for f in (sx.softmax_jvp, sx.softmax_vjp, sx.log_softmax_jvp, sx.log_softmax_vjp):
        out = f(s, s, axis=None)
        assert type(out) is np.ndarray
        assert out.shape == ()
    jac = sx.softmax_jacobian(s, axis=None)
    assert type(jac) is np.ndarray
    assert jac.shape == (1, 1)
    assert type(sx.SoftmaxJacobian(s, axis=None).trace()) is np.ndarray


@numpy_session
def test_python_scalars_are_still_refused() -> None:
    for value in (2.0, 2, True):
        with pytest.raises(TypeError, match="softmax: argument `x` must be an array"):
            sx.softmax(value)  # type: ignore[arg-type]


# -- ml_dtypes.bfloat16 ----------------------------------------------------------------------------
@numpy_session
def test_numpy_bfloat16_computes_in_float32_and_returns_bfloat16() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 9)).astype(bf16)
    x64 = x.astype(np.float64)
    for f in FORWARD:
        ref = _ref_forward(f, x64).astype(bf16).astype(np.float64)
        out = f(x)
        assert out.dtype == bf16
        np.testing.assert_allclose(out.astype(np.float64), ref, rtol=2**-7, atol=2**-8)
        out = f(x64, dtype=bf16)
        assert out.dtype == bf16
    y = sx.softmax(x)
    y64 = y.astype(np.float64)
    v = rng.normal(size=x.shape).astype(bf16)
    ref = y64 * (v.astype(np.float64) - (y64 * v.astype(np.float64)).sum(-1, keepdims=True))
    out = sx.softmax_vjp(y, v)
    assert out.dtype == bf16
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=2**-6, atol=2**-7)
    assert sx.SoftmaxJacobian(y).to_dense().dtype == bf16
