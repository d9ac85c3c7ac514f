"""What the fast-path tests of every backend share: data, layouts, kernel lists and the
agreement check (the tests: test_fastpaths_numpy.py, _torch.py, _jax.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import array_api_compat
import numpy as np
import pytest
from _support import TOLERANCES

from softmax_xp import _generic, _kernels

# The kernels by kind, from the registry
# (softmax and log_softmax and their derivatives; logsumexp and the cross-entropies have tests
# of their own)
_OF_OUTPUT = [_kernels.KERNELS[n] for n in _kernels.OF_OUTPUT]
FORWARD = [k.name for k in _OF_OUTPUT if k.forward]
PAIRS = [k.name for k in _OF_OUTPUT if k.of is not None and k.output == "same"]
MASKED_PAIRS = [n for n in PAIRS if _kernels.KERNELS[n].where]
JACOBIANS = [k.name for k in _OF_OUTPUT if k.output == "jacobian"]

# (shape, axis): single axes, tuple axes (adjacent and not), all axes, short and long rows
CASES: list[tuple[tuple[int, ...], tuple[int, ...]]] = [
    ((6, 7), (1,)),
    ((6, 7), (0,)),
    ((4, 3, 5), (0, 2)),
    ((4, 3, 5), (1, 2)),
    ((4, 3, 5), (0, 1, 2)),
    ((3, 4, 5), (1,)),
    ((300, 16), (1,)),  # short rows: the transposed path, several blocks
    ((5, 300), (1,)),
]

# inputs large enough for the threads (>= 2 MiB) and several cache blocks
LARGE: list[tuple[tuple[int, ...], tuple[int, ...]]] = [
    ((40000, 16), (1,)),
    ((300, 2048), (1,)),
    ((2048, 300), (0,)),
    ((80, 8192), (1,)),  # long float32 rows: summed as 16 interleaved partial sums
]


def _data(shape: tuple[int, ...], seed: int, special: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    if special and x.ndim >= 2 and x.shape[0] >= 4:
        flat = x.reshape(x.shape[0], -1)
        flat[0, 0] = np.inf
        flat[1, -1] = -np.inf
        flat[2, 1 % flat.shape[1]] = np.nan
        flat[3, :] = -np.inf
    return x


def _mask(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    w = rng.random(shape) > 0.3
    w.reshape(shape[0], -1)[-1, :] = False  # an all-masked slice (for axis=-1 at least)
    if len(shape) >= 2:
        w[(slice(None),) * (len(shape) - 1) + (0,)] = False  # all-masked columns too
    return w


def _numpy_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` in another memory layout (a view where the name says so)."""
    if layout == "c":
        return np.ascontiguousarray(a)
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "neg":  # negative strides on every axis
        flipped = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
        return flipped[(slice(None, None, -1),) * a.ndim]
    if layout == "strided":  # every other element of a bigger buffer
        big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
        view = big[(slice(None, None, 2),) * a.ndim]
        view[...] = a
        return view
    if layout == "transposed":  # C-order data viewed transposed
        return np.ascontiguousarray(a.T).T
    if layout == "flipud":  # rows in reverse order: a negative row stride, contiguous rows
        return np.ascontiguousarray(a[::-1])[::-1]
    if layout == "unaligned":  # a copy whose data starts one byte off its dtype's alignment
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
        view = raw[1:].view(a.dtype).reshape(a.shape)
        view[...] = a
        return view
    raise AssertionError(layout)


def _assert_agree(
    actual: Any, expected: Any, dtype: str, scale: float = 1.0, exact: Any = None
) -> None:
    """Same NaN placement as the generic kernel, values within ``TOLERANCES`` of it.

    ``scale`` is the largest finite magnitude among the inputs: a JVP / VJP subtracts a dot
    product from its inputs, so two float32 evaluations that sum in different orders differ by a
    few ulp *of the inputs*, not of the (possibly much smaller) result; the absolute tolerance is
    taken relative to that scale. Where the two still differ by more (long float32 sums in
    another order), ``exact`` (the generic kernel in float64 on the same inputs) decides: the
    fast path must then be at least as accurate as the generic kernel, within a factor of 2.
    """
    rtol, atol = TOLERANCES[dtype]
    atol *= max(1.0, scale)
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg="NaN placement differs")
    np.testing.assert_array_equal(np.isinf(a), np.isinf(e), err_msg="inf placement differs")
    fin = np.isfinite(a)
    np.testing.assert_array_equal(a[~fin], e[~fin])
    close = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if close.all() or exact is None:
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
        return
    x = np.asarray(exact, dtype=np.float64)
    err_fast = float(np.max(np.abs(a[fin] - x[fin])))
    err_generic = float(np.max(np.abs(e[fin] - x[fin])))
    assert err_fast <= 2 * err_generic, (
        f"fast path error {err_fast:.3g} vs generic {err_generic:.3g} (float64 reference)"
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The generic kernel on NumPy warns on ``inf - inf``; the fast path stays silent."""
    with np.errstate(all="ignore"):
        yield


def _scale(arrays: list[Any]) -> float:
    vals = [np.asarray(a, dtype=np.float64) for a in arrays]
    finite = [np.abs(v[np.isfinite(v)]) for v in vals]
    return max((float(f.max()) for f in finite if f.size), default=1.0)


def _pair_inputs(name: str, shape: tuple[int, ...], axis: tuple[int, ...], dtype: str) -> list[Any]:
    x = _data(shape, 5, special=False)
    with _quiet():
        fwd = "log_softmax" if name.startswith("log") else "softmax"
        y = getattr(_generic, fwd)(x, axis=axis, xp=array_api_compat.array_namespace(x))
    v = _data(shape, 6, special=True)  # +-inf and NaN in the tangents / cotangents
    return [np.asarray(y, dtype=dtype), v.astype(dtype)]


# -- the NumPy fast path's C row kernels: the module, its levels, a counting spy -----------------
def np_fast() -> Any:
    """``softmax_xp._backends._numpy`` (imported when a test asks)."""
    from softmax_xp._backends import _numpy

    return _numpy


def isa_levels() -> tuple[str, ...]:
    """The instruction-set levels this CPU and build have, best first (``("none",)`` without
    the C row kernels)."""
    rows = np_fast()._rows
    return ("none",) if rows is None else tuple(rows.isa_levels())


def require_rows() -> Any:
    """The C row kernels module; without it the test skips, or fails where
    ``SOFTMAX_XP_REQUIRE_ROWS=1`` (set by nox, so that a build that lost them fails CI)."""
    rows = np_fast()._rows
    if rows is None:
        if os.environ.get("SOFTMAX_XP_REQUIRE_ROWS") == "1":
            pytest.fail("the C row kernels (softmax_xp._backends._rows) were not built")
        pytest.skip("built without the C row kernels")
    return rows


class RowsSpy:
    """The C row kernels module, with a count of the calls that reached it and, per call, the
    number of threads of the C pool it was given (the optional last argument; 1 without it)."""

    def __init__(self, rows: Any) -> None:
        self._rows = rows
        self.calls = 0
        self.threads: list[int] = []

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._rows, name)

        def counted(*args: Any) -> Any:
            self.calls += 1
            self.threads.append(args[-1] if type(args[-1]) is int else 1)
            return fn(*args)

        return counted
