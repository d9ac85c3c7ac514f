"""Every error rule of DESIGN.md: the exception type and a message naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
from _support import Lib

import softmax_xp as sx

FORWARD = [sx.softmax, sx.log_softmax]
PAIR = [
    (sx.softmax_jvp, "y", "v"),
    (sx.softmax_vjp, "y", "g"),
    (sx.log_softmax_jvp, "l", "v"),
    (sx.log_softmax_vjp, "l", "g"),
]
SINGLE = [(sx.softmax_jacobian, "y"), (sx.log_softmax_jacobian, "l")]


def _all_calls(lib: Lib, data: np.ndarray) -> list[tuple[str, object]]:
    """(name, callable taking **kwargs) for all eight public functions on ``data``."""
    a = lib.asarray(data)
    out: list[tuple[str, object]] = [(f.__name__, lambda f=f, **kw: f(a, **kw)) for f in FORWARD]
    out += [(f.__name__, lambda f=f, **kw: f(a, a, **kw)) for f, _, _ in PAIR]
    out += [(f.__name__, lambda f=f, **kw: f(a, **kw)) for f, _ in SINGLE]
    return out


@pytest.mark.parametrize("axis", [2, -3, (0, 2), 5])
def test_axis_out_of_range(lib: Lib, axis: object) -> None:
    for name, call in _all_calls(lib, np.ones((2, 3))):
        with pytest.raises(ValueError, match=rf"{name}: argument `axis`.*out of range"):
            call(axis=axis)  # type: ignore[operator]


@pytest.mark.parametrize("axis", [(0, 0), (1, -1), (0, 1, 0)])
def test_axis_repeated(lib: Lib, axis: object) -> None:
    for name, call in _all_calls(lib, np.ones((2, 3))):
        with pytest.raises(ValueError, match=rf"{name}: argument `axis`.*repeats"):
            call(axis=axis)  # type: ignore[operator]


@pytest.mark.parametrize("axis", [1.0, "0", [0, 1], (0, 1.5)])
def test_axis_wrong_type(lib: Lib, axis: object) -> None:
    for name, call in _all_calls(lib, np.ones((2, 3))):
        with pytest.raises(TypeError, match=rf"{name}: argument `axis`"):
            call(axis=axis)  # type: ignore[operator]


def test_shape_mismatch(lib: Lib) -> None:
    y, v = lib.asarray(np.ones((2, 3))), lib.asarray(np.ones((3, 2)))
    for f, a, b in PAIR:
        with pytest.raises(
            ValueError, match=rf"{f.__name__}: arguments `{a}` and `{b}` must have the same shape"
        ):
            f(y, v)


def test_complex_input_is_a_type_error(lib: Lib) -> None:
    if not hasattr(lib.xp, "complex128"):
        pytest.skip("no complex dtype")
    z = lib.asarray(np.ones((2, 3)) + 1j)
    for f in FORWARD:
        with pytest.raises(TypeError, match=rf"{f.__name__}: argument `x` has complex dtype"):
            f(z)
    for f, a, _ in PAIR:
        with pytest.raises(TypeError, match=rf"{f.__name__}: argument `{a}` has complex dtype"):
            f(z, z)
    for f, a in SINGLE:
        with pytest.raises(TypeError, match=rf"{f.__name__}: argument `{a}` has complex dtype"):
            f(z)


def test_mixed_namespaces_are_a_type_error() -> None:
    torch = pytest.importorskip("torch")
    y, t = np.ones((2, 3)), torch.ones((2, 3), dtype=torch.float64)
    for f, a, b in PAIR:
        with pytest.raises(
            TypeError, match=rf"{f.__name__}: arguments `{a}` and `{b}` come from different"
        ):
            f(y, t)
    for f in FORWARD:
        with pytest.raises(
            TypeError, match=rf"{f.__name__}: arguments `x` and `where` come from different"
        ):
            f(y, where=torch.ones((2, 3), dtype=torch.bool))


def test_where_must_be_boolean_and_broadcastable(lib: Lib) -> None:
    x = lib.asarray(np.ones((2, 3)))
    for f in FORWARD:
        with pytest.raises(
            TypeError, match=rf"{f.__name__}: argument `where` must be a boolean array"
        ):
            f(x, where=lib.asarray(np.ones((2, 3))))
        with pytest.raises(
            ValueError, match=rf"{f.__name__}: argument `where` .* does not broadcast"
        ):
            f(x, where=lib.asarray(np.ones((3, 2), dtype=bool)))
        with pytest.raises(
            ValueError, match=rf"{f.__name__}: argument `where` .* does not broadcast"
        ):
            f(x, where=lib.asarray(np.ones((4, 2, 3), dtype=bool)))


def test_dtype_argument_must_be_real_floating(lib: Lib) -> None:
    x = lib.asarray(np.ones((2, 3)))
    for f in FORWARD:
        for bad in (lib.xp.int64, lib.xp.bool, "float32x", 3):
            with pytest.raises(TypeError, match=rf"{f.__name__}: argument `dtype`"):
                f(x, dtype=bad)


def test_not_an_array_is_a_type_error() -> None:
    for f in FORWARD:
        for bad in ([1.0, 2.0], 1.0, "abc", object()):
            with pytest.raises(TypeError, match=rf"{f.__name__}: argument `x` must be an array"):
                f(bad)
