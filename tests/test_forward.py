"""softmax and log_softmax on every backend against the framework's own (or scipy's float64) result."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import forward
from _support import Backend, Lib, assert_close

import softmax_xp as sx
from softmax_xp._testing import F32_SIMPLE_VALUES, F64_MASKED_ROW, HALF_SUM_TO_ONE

SHAPES_AXES = [
    ((7,), -1),
    ((4, 9), -1),
    ((4, 9), 0),
    ((3, 4, 5), 1),
    ((3, 4, 5), (0, 2)),
    ((3, 4, 5), (-1, -3)),
    ((2, 3, 4), None),
    ((6, 1), -1),
]


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "axis"), SHAPES_AXES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_reference(
    lib: Lib, log: bool, shape: tuple[int, ...], axis: object, dtype: str
) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(dtype).astype(np.float64)
    fn = sx.log_softmax if log else sx.softmax
    out = lib.call(fn, lib.asarray(x, dtype), axis=axis)
    assert_close(lib, out, forward(lib, x, axis, log=log), dtype=dtype)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_accumulates_in_float32(lib: Lib, log: bool, dtype: str) -> None:
    """float16/bfloat16 results are the float64 result rounded once, not a low-precision sum."""
    if lib.backend in (Backend.NUMPY, Backend.NUMPY_READONLY, Backend.DASK) and dtype == "bfloat16":
        pytest.skip("no bfloat16 in NumPy")
    rng = np.random.default_rng(1)
    x_data = rng.standard_normal((3, 4096)) * 2
    x = lib.asarray(x_data, dtype)
    x64 = lib.to_numpy(x)  # the values the half-precision array really holds
    fn = sx.log_softmax if log else sx.softmax
    out = lib.call(fn, x)
    assert_close(lib, out, forward(lib, x64, -1, log=log), dtype=dtype)
    if not log:
        np.testing.assert_allclose(lib.to_numpy(out).sum(axis=-1), 1.0, **HALF_SUM_TO_ONE.kw)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("in_dtype", ["int64", "int32", "bool"])
def test_integer_and_bool_promote_to_default_float(lib: Lib, log: bool, in_dtype: str) -> None:
    data = np.array([[0, 1, 1, 0], [1, 1, 0, 0]])
    x = lib.asarray(data.astype(in_dtype))
    fn = sx.log_softmax if log else sx.softmax
    out = lib.call(fn, x)
    info = lib.xp.__array_namespace_info__()
    default = info.default_dtypes(
        device=lib.device if lib.backend is Backend.ARRAY_API_STRICT else None
    )
    assert out.dtype == default["real floating"]
    assert_close(lib, out, forward(lib, data.astype(np.float64), -1, log=log))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_dtype_argument_casts_first(lib: Lib, log: bool) -> None:
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]])
    fn = sx.log_softmax if log else sx.softmax
    out = lib.call(fn, lib.asarray(x, "float64"), dtype=lib.dtype("float32"))
    assert_close(lib, out, forward(lib, x, -1, log=log), dtype="float32")


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize(
    ("shape", "axis", "mshape"),
    [((4, 6), -1, (4, 6)), ((4, 6), -1, (6,)), ((4, 6), 0, (4, 1)), ((2, 3, 4), (1, 2), (2, 3, 4))],
)
def test_where_mask(
    lib: Lib, log: bool, shape: tuple[int, ...], axis: object, mshape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    mask = rng.random(mshape) < 0.6
    mask.flat[0] = True
    fn = sx.log_softmax if log else sx.softmax
    out = lib.call(fn, lib.asarray(x), axis=axis, where=lib.asarray(mask))
    assert_close(lib, out, forward(lib, x, axis, log=log, where=mask), dtype="float64")
    full = np.broadcast_to(mask, shape)
    got = lib.to_numpy(out)
    assert np.all(got[~full] == (-np.inf if log else 0.0))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_all_masked_slice_gives_zeros_not_nan(lib: Lib, log: bool) -> None:
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = np.array([[False, False, False], [True, False, True]])
    fn = sx.log_softmax if log else sx.softmax
    got = lib.to_numpy(lib.call(fn, lib.asarray(x), where=lib.asarray(mask)))
    empty = -np.inf if log else 0.0
    np.testing.assert_array_equal(got[0], [empty] * 3)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(
        got[1], forward(lib, x, -1, log=log, where=mask)[1], **F64_MASKED_ROW.kw
    )


def test_huge_masked_out_logit_stays_finite(lib: Lib) -> None:
    x = np.array([36.0, 10000.0])
    out = lib.to_numpy(lib.call(sx.softmax, lib.asarray(x), where=lib.asarray(x < 1000)))
    np.testing.assert_array_equal(out, [1.0, 0.0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stable_for_huge_and_neg_inf_logits(lib: Lib, dtype: str) -> None:
    big = float(np.finfo(dtype).max) / 4
    x = np.array([[big, big, -np.inf], [-1e30, 0.0, -np.inf], [1e4, 1e4, 1e4]])
    y = lib.to_numpy(lib.call(sx.softmax, lib.asarray(x, dtype)))
    l = lib.to_numpy(lib.call(sx.log_softmax, lib.asarray(x, dtype)))
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, **F32_SIMPLE_VALUES.kw)
    np.testing.assert_allclose(y[1], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(y[2], [1 / 3] * 3, **F32_SIMPLE_VALUES.kw)
    np.testing.assert_allclose(l[0, :2], [-np.log(2.0)] * 2, **F32_SIMPLE_VALUES.kw)
    assert l[0, 2] == -np.inf
    np.testing.assert_allclose(l[1], [-1e30, 0.0, -np.inf])


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "axis"), [((0, 3), -1), ((3, 0), -1), ((3, 0), 0), ((0,), None)])
def test_empty_arrays(lib: Lib, log: bool, shape: tuple[int, ...], axis: object) -> None:
    fn = sx.log_softmax if log else sx.softmax
    out = lib.call(fn, lib.asarray(np.zeros(shape), "float32"), axis=axis)
    assert_close(lib, out, np.zeros(shape), dtype="float32")


def test_zero_dim_with_axis_none(lib: Lib) -> None:
    x = lib.asarray(np.array(2.5))
    assert_close(lib, lib.call(sx.softmax, x, axis=None), np.array(1.0), dtype="float64")
    assert_close(lib, lib.call(sx.log_softmax, x, axis=None), np.array(0.0), dtype="float64")


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_shift_invariance(lib: Lib, log: bool) -> None:
    """softmax(x + c) == softmax(x) for a per-slice constant, even a large one (SciPy's test)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 8))
    fn = sx.log_softmax if log else sx.softmax
    a = lib.call(fn, lib.asarray(x))
    b = lib.call(fn, lib.asarray(x + 100.0))
    assert_close(lib, b, lib.to_numpy(a), dtype="float64")


def test_inputs_are_not_mutated(lib: Lib) -> None:
    rng = np.random.default_rng(4)
    data = rng.standard_normal((3, 5))
    mask = data > -1
    x, w = lib.asarray(data), lib.asarray(mask)
    y = lib.call(sx.softmax, x, where=w)
    lib.call(sx.log_softmax, x, where=w)
    g = lib.asarray(rng.standard_normal((3, 5)))
    for fn in (sx.softmax_jvp, sx.softmax_vjp):
        lib.call(fn, y, g)
    lib.call(sx.softmax_jacobian, y)
    np.testing.assert_array_equal(lib.to_numpy(x), data)
    np.testing.assert_array_equal(lib.to_numpy(w), mask)
