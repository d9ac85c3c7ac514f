"""Misuse gets a clear exception naming the argument; no call leaks state or writes to its input.

The last part checks every error rule of the design, rule by rule.

Every public function is checked against: wrong types (lists, Python scalars, strings, objects
without the array API), mixed namespaces, mixed devices, mismatched shapes, bad ``axis`` /
``where`` / ``dtype`` / ``xp`` values. Each case asserts the exception type and, with ``match=``,
that the message names the offending argument.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _support import Backend, Lib

import softmax_xp as sx

Fn = Callable[..., Any]

#: name -> (function, names of its array arguments, takes where=, takes dtype=)
FUNCS: dict[str, tuple[Fn, tuple[str, ...], bool, bool]] = {
    "softmax": (sx.softmax, ("x",), True, True),
    "log_softmax": (sx.log_softmax, ("x",), True, True),
    "softmax_jvp": (sx.softmax_jvp, ("y", "v"), False, False),
    "softmax_vjp": (sx.softmax_vjp, ("y", "g"), False, False),
    "softmax_jacobian": (sx.softmax_jacobian, ("y",), False, False),
    "log_softmax_jvp": (sx.log_softmax_jvp, ("l", "v"), True, False),
    "log_softmax_vjp": (sx.log_softmax_vjp, ("l", "g"), True, False),
    "log_softmax_jacobian": (sx.log_softmax_jacobian, ("l",), False, False),
}
ALL = list(FUNCS)
WITH_WHERE = [n for n in ALL if FUNCS[n][2]]
PAIRS = [n for n in ALL if len(FUNCS[n][1]) == 2]
FORWARD = [n for n in ALL if FUNCS[n][3]]

DATA = np.array([[0.5, -1.0, 2.0], [1.0, 3.0, -0.5]])


def _args(lib: Lib, name: str, data: np.ndarray = DATA) -> list[Any]:
    """Valid array arguments for ``name`` (a probability-like input for the derivative kernels)."""
    arrays = [lib.asarray(data, "float32")]
    if len(FUNCS[name][1]) == 2:
        arrays.append(lib.asarray(data[..., ::-1].copy(), "float32"))
    return arrays


def _call(lib: Lib, name: str, *arrays: Any, **kw: Any) -> Any:
    return lib.call(FUNCS[name][0], *arrays, **kw)


# -- wrong types -----------------------------------------------------------------------------------
NOT_ARRAYS = {
    "list": [[0.5, 1.0], [2.0, 3.0]],
    "python float": 1.5,
    "python int": 3,
    "python bool": True,
    "string": "0.5 1.0",
    "object": object(),
    "None-like dict": {"x": 1.0},
}


@pytest.mark.parametrize("bad", list(NOT_ARRAYS))
@pytest.mark.parametrize("name", ALL)
def test_not_an_array_first_argument(name: str, bad: str) -> None:
    fn, argnames, _, _ = FUNCS[name]
    args = [NOT_ARRAYS[bad]] + [DATA] * (len(argnames) - 1)
    with pytest.raises(TypeError, match=f"{name}: argument `{argnames[0]}` must be an array"):
        fn(*args)


@pytest.mark.parametrize("bad", list(NOT_ARRAYS))
@pytest.mark.parametrize("name", PAIRS)
def test_not_an_array_second_argument(lib: Lib, name: str, bad: str) -> None:
    _, argnames, _, _ = FUNCS[name]
    with pytest.raises(TypeError, match=f"argument `{argnames[1]}` must be an array"):
        FUNCS[name][0](_args(lib, name)[0], NOT_ARRAYS[bad])


@pytest.mark.parametrize("name", WITH_WHERE)
def test_where_not_an_array(lib: Lib, name: str) -> None:
    with pytest.raises(TypeError, match="argument `where` must be an array"):
        _call(lib, name, *_args(lib, name), where=[True, False, True])


# -- mixed namespaces and devices ------------------------------------------------------------------
def _other_namespace_array(lib: Lib, data: np.ndarray) -> Any:
    """The same data in a library other than ``lib``'s."""
    if lib.backend in (Backend.NUMPY, Backend.NUMPY_READONLY):
        xs = pytest.importorskip("array_api_strict")
        return xs.asarray(data)
    return np.asarray(data)


@pytest.mark.parametrize("name", PAIRS)
def test_mixed_namespaces(lib: Lib, name: str) -> None:
    first, _ = _args(lib, name)
    other = _other_namespace_array(lib, DATA[..., ::-1].astype(np.float32))
    a, b = FUNCS[name][1]
    with pytest.raises(TypeError, match=f"arguments `{a}` and `{b}` come from different array"):
        FUNCS[name][0](first, other)


@pytest.mark.parametrize("name", WITH_WHERE)
def test_where_from_another_namespace(lib: Lib, name: str) -> None:
    where = _other_namespace_array(lib, np.array([True, False, True]))
    with pytest.raises(TypeError, match="and `where` come from different array"):
        FUNCS[name][0](*_args(lib, name), where=where)


def _strict_on(device: str, data: np.ndarray) -> Any:
    xs = pytest.importorskip("array_api_strict")
    return xs.asarray(data, device=xs.Device(device))


@pytest.mark.parametrize("name", PAIRS)
def test_mixed_devices(name: str) -> None:
    a, b = FUNCS[name][1]
    y = _strict_on("CPU_DEVICE", DATA)
    v = _strict_on("device1", DATA)
    with pytest.raises(ValueError, match=f"argument `{b}` is on device .*device1.* but `{a}`"):
        FUNCS[name][0](y, v)


@pytest.mark.parametrize("name", WITH_WHERE)
def test_where_on_another_device(name: str) -> None:
    arrays = [_strict_on("device1", DATA) for _ in FUNCS[name][1]]
    where = _strict_on("CPU_DEVICE", np.array([True, False, True]))
    with pytest.raises(ValueError, match="argument `where` is on device"):
        FUNCS[name][0](*arrays, where=where)


# -- shapes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PAIRS)
def test_mismatched_shapes(lib: Lib, name: str) -> None:
    a, b = FUNCS[name][1]
    y = lib.asarray(DATA, "float32")
    v = lib.asarray(DATA[:, :2], "float32")
    with pytest.raises(ValueError, match=f"arguments `{a}` and `{b}` must have the same shape"):
        _call(lib, name, y, v)


@pytest.mark.parametrize("name", WITH_WHERE)
def test_where_does_not_broadcast(lib: Lib, name: str) -> None:
    where = lib.asarray(np.array([True, False]))
    with pytest.raises(ValueError, match="argument `where` with shape"):
        _call(lib, name, *_args(lib, name), where=where)


@pytest.mark.parametrize("name", WITH_WHERE)
def test_where_with_more_dimensions(lib: Lib, name: str) -> None:
    where = lib.asarray(np.ones((2, 2, 3), dtype=bool))
    with pytest.raises(ValueError, match="argument `where` with shape"):
        _call(lib, name, *_args(lib, name), where=where)


@pytest.mark.parametrize("name", WITH_WHERE)
def test_where_not_boolean(lib: Lib, name: str) -> None:
    where = lib.asarray(np.array([1, 0, 1]))
    with pytest.raises(TypeError, match="argument `where` must be a boolean array"):
        _call(lib, name, *_args(lib, name), where=where)


# -- axis ------------------------------------------------------------------------------------------
BAD_AXES: dict[str, tuple[Any, type[Exception], str]] = {
    "out of range": (2, ValueError, "out of range"),
    "negative out of range": (-3, ValueError, "out of range"),
    "tuple out of range": ((0, 5), ValueError, "out of range"),
    "repeated": ((1, -1), ValueError, "repeats axis 1"),
    "empty tuple": ((), ValueError, "empty tuple"),
    "float": (1.0, TypeError, "must be an int, a tuple of ints or None"),
    "string": ("-1", TypeError, "must be an int, a tuple of ints or None"),
    "list": ([0, 1], TypeError, "must be an int, a tuple of ints or None"),
    "bool": (True, TypeError, "must be an int, a tuple of ints or None"),
    "float in tuple": ((0, 1.0), TypeError, "must be an int, a tuple of ints or None"),
}


@pytest.mark.parametrize("bad", list(BAD_AXES))
@pytest.mark.parametrize("name", ALL)
def test_bad_axis(lib: Lib, name: str, bad: str) -> None:
    axis, exc, msg = BAD_AXES[bad]
    with pytest.raises(exc, match=f"{name}: argument `axis`.*{msg}"):
        FUNCS[name][0](*_args(lib, name), axis=axis)


@pytest.mark.parametrize("name", ALL)
def test_integer_axis_on_0d(lib: Lib, name: str) -> None:
    arrays = [lib.asarray(np.array(0.5), "float32") for _ in FUNCS[name][1]]
    with pytest.raises(ValueError, match="argument `axis` = -1 is out of range"):
        FUNCS[name][0](*arrays)


# -- dtypes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_complex_input(name: str) -> None:
    fn, argnames, _, _ = FUNCS[name]
    args = [DATA + 1j] + [DATA] * (len(argnames) - 1)
    with pytest.raises(TypeError, match=f"argument `{argnames[0]}` has complex dtype"):
        fn(*args)


@pytest.mark.parametrize("name", PAIRS)
def test_complex_second_argument(name: str) -> None:
    with pytest.raises(TypeError, match=f"argument `{FUNCS[name][1][1]}` has complex dtype"):
        FUNCS[name][0](DATA, DATA + 1j)


@pytest.mark.parametrize("name", ALL)
def test_string_dtype_input(name: str) -> None:
    fn, argnames, _, _ = FUNCS[name]
    args = [np.array([["a", "b"]])] * len(argnames)
    with pytest.raises(TypeError, match=f"argument `{argnames[0]}` has unsupported dtype"):
        fn(*args)


BAD_DTYPES: dict[str, tuple[Any, str]] = {
    "integer": (np.int32, "must be a real floating dtype"),
    "bool": (np.bool_, "must be a real floating dtype"),
    "string name": ("float32", "must be a real floating dtype"),
    "object": (object, "must be a real floating dtype"),
    "complex": (np.complex64, "is complex"),
}


@pytest.mark.parametrize("bad", list(BAD_DTYPES))
@pytest.mark.parametrize("name", FORWARD)
def test_bad_dtype(name: str, bad: str) -> None:
    dtype, msg = BAD_DTYPES[bad]
    with pytest.raises(TypeError, match=f"{name}: argument `dtype`.*{msg}"):
        FUNCS[name][0](DATA, dtype=dtype)


@pytest.mark.parametrize("name", FORWARD)
def test_dtype_of_another_library(lib: Lib, name: str) -> None:
    torch = pytest.importorskip("torch")
    if lib.backend.is_torch:
        pytest.skip("torch.float32 is this library's own dtype")
    with pytest.raises(TypeError, match="argument `dtype`"):
        FUNCS[name][0](*_args(lib, name), dtype=torch.float32)


# -- xp --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_xp_not_a_namespace(name: str) -> None:
    args = [DATA] * len(FUNCS[name][1])
    with pytest.raises(TypeError, match=f"{name}: argument `xp` must be an array-API namespace"):
        FUNCS[name][0](*args, xp="numpy")


@pytest.mark.parametrize("name", ALL)
def test_xp_of_another_library(name: str) -> None:
    xs = pytest.importorskip("array_api_strict")
    args = [DATA] * len(FUNCS[name][1])
    with pytest.raises(TypeError, match=f"{name}: argument `xp` = 'array_api_strict' is not the"):
        FUNCS[name][0](*args, xp=xs)


@pytest.mark.parametrize("name", ALL)
def test_xp_as_the_library_module_is_accepted(name: str) -> None:
    args = [DATA] * len(FUNCS[name][1])
    expected = FUNCS[name][0](*args)
    np.testing.assert_array_equal(FUNCS[name][0](*args, xp=np), expected)


# -- state: warnings, global settings, inputs ------------------------------------------------------
NASTY = np.array(
    [[1.0, math.inf, 2.0, 0.0], [-math.inf] * 4, [math.nan, 1.0, 2.0, 3.0], [3e38, -3e38, 0.0, 1.0]]
)
NASTY_WHERE = np.array([True, False, True, True])


TANGENT = np.array(
    [[1e30, -2.0, 0.5, 3.0], [0.0, 1.0, -1e30, 2.0], [4.0, -4.0, 1.0, 0.0], [1.0] * 4]
)


def _all_calls(lib: Lib, *, garbage: bool) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """Every public function with inf / NaN / overflowing inputs (and a mask where it applies).

    The forward functions get the logits ``NASTY``. The derivative kernels get what a backward
    pass holds: the forward outputs of ``NASTY`` (NaN slices, zeros, ``-inf``) and large finite
    tangents; with ``garbage``, ``NASTY`` itself and an infinite tangent (not a forward output).
    """
    x = lib.asarray(NASTY, "float32")
    outs = {
        "softmax": lib.asarray(lib.to_numpy(sx.softmax(x)), "float32"),
        "log_softmax": lib.asarray(lib.to_numpy(sx.log_softmax(x)), "float32"),
    }
    t = lib.asarray(NASTY[::-1].copy() if garbage else TANGENT, "float32")
    calls: list[tuple[str, list[Any], dict[str, Any]]] = []
    for name in ALL:
        if name in FORWARD:
            first = x
        else:
            first = x if garbage else outs["log_softmax" if name.startswith("log") else "softmax"]
        arrays = [first, t][: len(FUNCS[name][1])]
        calls.append((name, arrays, {}))
        if FUNCS[name][2]:
            calls.append((name, arrays, {"where": lib.asarray(NASTY_WHERE)}))
        calls.append((name, arrays, {"axis": None}))
    return calls


def _global_state() -> dict[str, Any]:
    import sys

    state: dict[str, Any] = {"numpy errstate": np.geterr()}
    if "torch" in sys.modules:
        import torch

        state["torch default dtype"] = torch.get_default_dtype()
        state["torch threads"] = torch.get_num_threads()
        state["torch interop threads"] = torch.get_num_interop_threads()
        state["torch grad mode"] = torch.is_grad_enabled()
    if "jax" in sys.modules:
        import jax

        state["jax x64"] = jax.config.jax_enable_x64
        state["jax matmul precision"] = jax.config.jax_default_matmul_precision
    return state


@pytest.mark.parametrize("garbage", [False, True], ids=["forward outputs", "garbage"])
def test_no_warning_and_no_global_state_change(lib: Lib, garbage: bool) -> None:
    if garbage and lib.backend is Backend.DASK:
        pytest.skip("Dask computes chunks later on its own threads: see docs/semantics.md")
    calls = _all_calls(lib, garbage=garbage)
    before = _global_state()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, arrays, kw in calls:
            lib.to_numpy(_call(lib, name, *arrays, **kw))  # Dask: the compute runs here
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert _global_state() == before


@pytest.mark.parametrize("garbage", [False, True], ids=["forward outputs", "garbage"])
def test_no_input_is_written_to(lib: Lib, garbage: bool) -> None:
    if garbage and lib.backend is Backend.DASK:
        pytest.skip("Dask computes chunks later on its own threads: see docs/semantics.md")
    for name, arrays, kw in _all_calls(lib, garbage=garbage):
        inputs = [*arrays, *(a for a in kw.values() if a is not None)]
        copies = [lib.to_numpy(a).copy() for a in inputs]
        versions = [a._version for a in inputs] if lib.backend.is_torch else None
        lib.to_numpy(_call(lib, name, *arrays, **kw))
        for a, c in zip(inputs, copies, strict=True):
            np.testing.assert_array_equal(lib.to_numpy(a), c, err_msg=f"{name} wrote to its input")
        if versions is not None:  # torch counts in-place writes, even ones that restore the value
            assert [a._version for a in inputs] == versions, f"{name} wrote to its input in place"


# -- the error rules of the design (docs/design.md): type and a message naming the argument --
_E_FORWARD = [sx.softmax, sx.log_softmax]
_E_PAIR = [
    (sx.softmax_jvp, "y", "v"),
    (sx.softmax_vjp, "y", "g"),
    (sx.log_softmax_jvp, "l", "v"),
    (sx.log_softmax_vjp, "l", "g"),
]
_E_SINGLE = [(sx.softmax_jacobian, "y"), (sx.log_softmax_jacobian, "l")]


def _every_call(lib: Lib, data: np.ndarray) -> list[tuple[str, object]]:
    """(name, callable taking **kwargs) for all eight public functions on ``data``."""
    a = lib.asarray(data)
    out: list[tuple[str, object]] = [(f.__name__, lambda f=f, **kw: f(a, **kw)) for f in _E_FORWARD]
    out += [(f.__name__, lambda f=f, **kw: f(a, a, **kw)) for f, _, _ in _E_PAIR]
    out += [(f.__name__, lambda f=f, **kw: f(a, **kw)) for f, _ in _E_SINGLE]
    return out


@pytest.mark.parametrize("axis", [2, -3, (0, 2), 5])
def test_axis_out_of_range(lib: Lib, axis: object) -> None:
    for name, call in _every_call(lib, np.ones((2, 3))):
        with pytest.raises(ValueError, match=rf"{name}: argument `axis`.*out of range"):
            call(axis=axis)  # type: ignore[operator]


@pytest.mark.parametrize("axis", [(0, 0), (1, -1), (0, 1, 0)])
def test_axis_repeated(lib: Lib, axis: object) -> None:
    for name, call in _every_call(lib, np.ones((2, 3))):
        with pytest.raises(ValueError, match=rf"{name}: argument `axis`.*repeats"):
            call(axis=axis)  # type: ignore[operator]


@pytest.mark.parametrize("axis", [1.0, "0", [0, 1], (0, 1.5)])
def test_axis_wrong_type(lib: Lib, axis: object) -> None:
    for name, call in _every_call(lib, np.ones((2, 3))):
        with pytest.raises(TypeError, match=rf"{name}: argument `axis`"):
            call(axis=axis)  # type: ignore[operator]


def test_shape_mismatch(lib: Lib) -> None:
    y, v = lib.asarray(np.ones((2, 3))), lib.asarray(np.ones((3, 2)))
    for f, a, b in _E_PAIR:
        with pytest.raises(
            ValueError, match=rf"{f.__name__}: arguments `{a}` and `{b}` must have the same shape"
        ):
            f(y, v)


def test_complex_input_is_a_type_error(lib: Lib) -> None:
    if not hasattr(lib.xp, "complex128"):
        pytest.skip("no complex dtype")
    z = lib.asarray(np.ones((2, 3)) + 1j)
    for f in _E_FORWARD:
        with pytest.raises(TypeError, match=rf"{f.__name__}: argument `x` has complex dtype"):
            f(z)
    for f, a, _ in _E_PAIR:
        with pytest.raises(TypeError, match=rf"{f.__name__}: argument `{a}` has complex dtype"):
            f(z, z)
    for f, a in _E_SINGLE:
        with pytest.raises(TypeError, match=rf"{f.__name__}: argument `{a}` has complex dtype"):
            f(z)


def test_mixed_namespaces_are_a_type_error() -> None:
    torch = pytest.importorskip("torch")
    y, t = np.ones((2, 3)), torch.ones((2, 3), dtype=torch.float64)
    for f, a, b in _E_PAIR:
        with pytest.raises(
            TypeError, match=rf"{f.__name__}: arguments `{a}` and `{b}` come from different"
        ):
            f(y, t)
    for f in _E_FORWARD:
        with pytest.raises(
            TypeError, match=rf"{f.__name__}: arguments `x` and `where` come from different"
        ):
            f(y, where=torch.ones((2, 3), dtype=torch.bool))


def test_where_must_be_boolean_and_broadcastable(lib: Lib) -> None:
    x = lib.asarray(np.ones((2, 3)))
    for f in _E_FORWARD:
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
    for f in _E_FORWARD:
        for bad in (lib.xp.int64, lib.xp.bool, "float32x", 3):
            with pytest.raises(TypeError, match=rf"{f.__name__}: argument `dtype`"):
                f(x, dtype=bad)


def test_not_an_array_is_a_type_error() -> None:
    for f in _E_FORWARD:
        for bad in ([1.0, 2.0], 1.0, "abc", object()):
            with pytest.raises(TypeError, match=rf"{f.__name__}: argument `x` must be an array"):
                f(bad)
