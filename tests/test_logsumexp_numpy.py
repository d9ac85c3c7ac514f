"""logsumexp and its VJP on the NumPy fast path: the C row kernels (``_rows.logsumexp``,
``_rows.logsumexp_vjp``) and ``softmax_xp._backends._numpy.logsumexp`` / ``logsumexp_vjp``,
against ``scipy.special.logsumexp`` and references from the definition, at every instruction-set
level this CPU and build have."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.special
from _fastpaths import RowsSpy, np_fast, require_rows
from _support import in_session

from softmax_xp._testing import FD_STEP, FD_TOLERANCE, TOLERANCES

pytestmark = pytest.mark.skipif(not in_session("numpy"), reason="runs in the numpy session")

#: A finite logsumexp is within this many ulps of its reference (float64 from the float32
#: inputs; long double for float64), ulps taken at the scale max(|reference|, 1): below 1 the
#: error is that of the sum of exponentials, about one eps absolute, not relative to the result.
LSE_ULPS = 4.0

#: The VJP ``g * exp(x - lse)`` rounds ``x - lse`` in the input dtype, an error up to
#: ``|x - lse| eps`` relative that exp carries on: the relative tolerance per element is
#: ``VJP_ULPS * eps * (2 + |x - lse|)``.
VJP_ULPS = 4.0

#: Every row length of the C tests here: all vector widths (2 to 16 lanes), twice them (the
#: short-row code) and the padded tails around them.
LENGTHS = range(1, 301)

NDArray = np.ndarray[Any, Any]


# -- references -----------------------------------------------------------------------------------


def _ref(x: NDArray, axis: tuple[int, ...]) -> NDArray:
    """logsumexp in a higher precision (float32: float64; float64: long double), keepdims."""
    wide = np.float64 if x.dtype == np.float32 else np.longdouble
    with np.errstate(all="ignore"):
        r: NDArray = scipy.special.logsumexp(x.astype(wide), axis=axis, keepdims=True)
    return r


def _scipy(x: NDArray, axis: tuple[int, ...]) -> NDArray:
    with np.errstate(all="ignore"):
        r: NDArray = scipy.special.logsumexp(x, axis=axis, keepdims=True)
    return r


def _assert_lse(got: NDArray, x: NDArray, axis: tuple[int, ...], what: str = "") -> None:
    """Edge values exactly those of scipy.special.logsumexp (in x's dtype); finite values within
    LSE_ULPS of the higher-precision reference; within TOLERANCES of scipy in x's dtype."""
    want = _ref(x, axis)
    sp = _scipy(x, axis)
    assert got.dtype == x.dtype, what
    assert got.shape == want.shape, what
    special = ~np.isfinite(sp)
    np.testing.assert_array_equal(got[special], sp[special], err_msg=f"edge values {what}")
    fin = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), fin, err_msg=f"finite where {what}")
    eps = float(np.finfo(x.dtype).eps)
    scale = np.maximum(np.abs(want[fin]), 1)
    err = np.abs(got[fin].astype(want.dtype) - want[fin]) / (eps * scale)
    worst = float(err.max()) if err.size else 0.0
    assert worst <= LSE_ULPS, f"{worst:.2f} ulps {what}"
    rtol, atol = TOLERANCES[str(x.dtype)]
    np.testing.assert_allclose(got[fin], sp[fin], rtol=rtol, atol=atol, err_msg=what)


def _vjp_ref(x: NDArray, lse: NDArray, g: NDArray) -> NDArray:
    """``g * exp(x - lse)`` in float64 by NumPy; NaN throughout a slice whose lse is not finite
    (softmax's edge values, as the generic kernel has them)."""
    x64, l64, g64 = (a.astype(np.float64) for a in (x, lse, g))
    with np.errstate(all="ignore"):
        r: NDArray = np.where(np.isfinite(l64), g64 * np.exp(x64 - l64), np.nan)
    return r


def _assert_vjp(got: NDArray, x: NDArray, lse: NDArray, g: NDArray, what: str = "") -> None:
    want = _vjp_ref(x, lse, g)
    assert got.dtype == x.dtype, what
    assert got.shape == x.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN where {what}")
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf], err_msg=f"inf where {what}")
    zero = want == 0
    np.testing.assert_array_equal(got[zero], 0, err_msg=f"zero where {what}")
    fin = np.isfinite(want) & ~zero
    eps = float(np.finfo(x.dtype).eps)
    with np.errstate(all="ignore"):
        d = np.abs(np.broadcast_to(x.astype(np.float64) - lse.astype(np.float64), x.shape))
    tol = VJP_ULPS * eps * np.abs(want[fin]) * (2 + d[fin])
    bad = np.abs(got[fin].astype(np.float64) - want[fin]) > tol
    assert not bad.any(), f"{int(bad.sum())} elements off {what}"


def _rows_data(n: int, c: int, dtype: str, seed: int) -> NDArray:
    x: NDArray = (np.random.default_rng(seed).standard_normal((n, c)) * 5).astype(dtype)
    return x


# -- the C kernels and the fast path at every length and level -------------------------------------


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binding_every_length(dtype: str) -> None:
    """``_rows.logsumexp`` on 6 rows of every length 1..300 (five rows in a group of four and a
    leftover row), a padded row stride and a strided 1-D output."""
    rows = require_rows()
    for c in LENGTHS:
        base = _rows_data(6, c + 3, dtype, c)
        x = base[:, :c]  # rows c + 3 apart
        out = np.full(12, 7.0, dtype=dtype)
        rows.logsumexp(x, out[::2])
        assert np.all(out[1::2] == 7.0), f"c={c}: wrote between the strided items"
        _assert_lse(out[::2, np.newaxis], x, (1,), f"c={c}")


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_path_every_length(dtype: str, spy: RowsSpy) -> None:
    """``_numpy.logsumexp`` over the last axis at every length 1..300 runs the C kernels."""
    fast = np_fast()
    for c in LENGTHS:
        x = _rows_data(5, c, dtype, 1000 + c)
        before = spy.calls
        got = fast.logsumexp(x, axis=(1,), xp=np)
        assert got is not NotImplemented
        assert spy.calls > before, f"c={c}: the C kernels did not run"
        _assert_lse(got, x, (1,), f"c={c}")


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_long_rows_and_ranges(dtype: str) -> None:
    """Rows over many blocks (the running maximum rescales the sum), increasing, decreasing and
    wide-ranged ones, and sums of thousands of nearly equal terms."""
    fast = np_fast()
    require_rows()
    rng = np.random.default_rng(7)
    lo = -80.0 if dtype == "float32" else -700.0
    for c in (1023, 1024, 1025, 4097, 40000):
        t = np.linspace(0.0, 1.0, c)
        x = np.stack(
            [
                rng.uniform(lo, 60.0, c),
                lo + (60.0 - lo) * t,  # a new maximum in every block
                60.0 - (60.0 - lo) * t,
                np.full(c, -10.0),  # log(c) - 10: the result cancels
                rng.standard_normal(c) * 1e-3,
                rng.standard_normal(c) * 30,
            ]
        ).astype(dtype)
        got = fast.logsumexp(x, axis=(1,), xp=np)
        _assert_lse(got, x, (1,), f"c={c}")


def _edge_rows(c: int, dtype: str) -> NDArray:
    """Rows of length c: one +inf, one -inf, one NaN (at the first, a middle and the last
    position), +inf with -inf, +inf with NaN, all -inf, -inf with one finite value, huge values
    (near float32's largest) and tiny ones (-1e30), each beside finite ones."""
    inf, nan = np.inf, np.nan
    base = np.random.default_rng(c).standard_normal(c) * 3
    rows = []
    for v in (inf, -inf, nan):
        for p in {0, c // 2, c - 1}:
            r = base.copy()
            r[p] = v
            rows.append(r)
    for a, b in ((inf, -inf), (inf, nan), (-inf, inf), (nan, inf)):
        r = np.full(c, -inf)
        r[0] = a
        r[-1] = b if c > 1 else a
        rows.append(r)
    rows.append(np.full(c, -inf))
    r = np.full(c, -inf)
    r[c // 3] = 2.5
    rows.append(r)
    rows.append(np.full(c, 3e38) * (1 - 0.01 * (np.arange(c) % 3)))
    rows.append(np.full(c, -1e30) * (1 + 0.01 * (np.arange(c) % 3)))
    rows.append(np.where(np.arange(c) % 2 == 0, 3e38, -1e30))
    if dtype == "float64":
        rows.append(np.full(c, 1.7e308))
        rows.append(np.full(c, -1e300))
    return np.stack(rows).astype(dtype)


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 1025, 3000])
def test_edge_rows(c: int, dtype: str, spy: RowsSpy) -> None:
    """Edge values exactly as scipy.special.logsumexp returns them, in rows of every kind of
    length (one vector, two, several, several blocks)."""
    x = _edge_rows(c, dtype)
    got = np_fast().logsumexp(x, axis=(1,), xp=np)
    assert spy.calls > 0
    _assert_lse(got, x, (1,), f"c={c}")
    # the rows one at a time as well (no short-row group around them)
    for i in range(x.shape[0]):
        one = np_fast().logsumexp(x[i : i + 1], axis=(1,), xp=np)
        _assert_lse(one, x[i : i + 1], (1,), f"c={c} row {i}")


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_empty_rows(dtype: str) -> None:
    """The kernel gives -inf for rows of no numbers (scipy's value); the fast path leaves an
    empty input to the generic kernel."""
    rows = require_rows()
    out = np.zeros(3, dtype=dtype)
    rows.logsumexp(np.empty((3, 0), dtype=dtype), out)
    np.testing.assert_array_equal(out, _scipy(np.empty((3, 0), dtype=dtype), (1,))[:, 0])
    assert np.all(np.isneginf(out))
    rows.logsumexp(np.empty((0, 5), dtype=dtype), np.empty(0, dtype=dtype))  # no rows: no error
    fast = np_fast()
    assert fast.logsumexp(np.empty((3, 0), dtype=dtype), axis=(1,), xp=np) is NotImplemented


# -- layouts, axes, threads ---------------------------------------------------------------------

LAYOUTS: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = [
    ("c", (6, 7), (1,)),
    ("c", (4, 3, 5), (2,)),
    ("c", (4, 3, 5), (1, 2)),
    ("c", (4, 3, 5), (0, 1, 2)),
    ("c", (40,), (0,)),
    ("f", (7, 6), (0,)),  # the columns of a Fortran array are contiguous rows
    ("rowstride", (6, 7), (1,)),  # every other row: contiguous rows, a padded stride
    ("c", (1200, 1024), (1,)),  # float32: 4.7 MiB, past the threads' threshold
    ("c", (3, 400, 1000), (2,)),
    ("f", (1000, 800), (0,)),
]


def _layout(a: NDArray, layout: str) -> NDArray:
    if layout == "f":
        return np.asfortranarray(a)
    if layout == "rowstride":
        wide = np.repeat(a, 2, axis=0)
        wide[1::2] = np.nan  # never read
        return wide[::2]
    return a


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("layout", "shape", "axis"), LAYOUTS)
def test_fast_path_layouts(
    layout: str, shape: tuple[int, ...], axis: tuple[int, ...], dtype: str, spy: RowsSpy
) -> None:
    """Every layout whose reduced slices are contiguous rows runs in C (threads for large
    inputs); the keepdims shape and x's dtype; the input is not mutated."""
    x = _layout(np.random.default_rng(3).standard_normal(shape).astype(dtype) * 4, layout)
    x[(0,) * x.ndim] = np.inf  # one +inf row
    before = x.copy()
    got = np_fast().logsumexp(x, axis=axis, xp=np)
    assert got is not NotImplemented
    assert spy.calls > 0, "the C kernels did not run"
    np.testing.assert_array_equal(x, before, err_msg="the input was mutated")
    assert type(got) is np.ndarray
    _assert_lse(got, x, axis)


def test_fast_path_declines(spy: RowsSpy) -> None:
    """A mask, slices that are not contiguous rows, byte-swapped, unaligned or float16 data, an
    empty input: NotImplemented (the generic kernel runs), with no C call."""
    fast = np_fast()
    x = np.random.default_rng(4).standard_normal((8, 40))
    w = np.ones(x.shape, dtype=bool)
    unaligned = np.ndarray(x.shape, np.float64, buffer=np.zeros(x.nbytes + 1, np.uint8), offset=1)
    unaligned[...] = x
    assert not unaligned.flags.aligned
    cases: list[tuple[str, NDArray, tuple[int, ...], Any]] = [
        ("where", x, (1,), w),
        ("columns of a C array", x, (0,), None),
        ("strided rows", x[:, ::2], (1,), None),
        ("not mergeable", np.asfortranarray(np.ones((3, 4, 5))), (0,), None),
        ("byte-swapped", x.astype(x.dtype.newbyteorder()), (1,), None),
        ("unaligned", unaligned, (1,), None),
        ("float16", x.astype(np.float16), (1,), None),
        ("empty", np.empty((0, 4)), (1,), None),
    ]
    for what, a, axis, where in cases:
        assert fast.logsumexp(a, axis=axis, where=where, xp=np) is NotImplemented, what
    assert spy.calls == 0


def test_fast_path_declines_without_the_c_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = np_fast()
    monkeypatch.setattr(fast, "_rows", None)
    x = np.ones((4, 8))
    assert fast.logsumexp(x, axis=(1,), xp=np) is NotImplemented
    lse = np.ones((4, 1))
    assert fast.logsumexp_vjp(x, lse, lse, axis=(1,), xp=np) is NotImplemented


# -- the VJP ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vjp_every_length(dtype: str, spy: RowsSpy) -> None:
    """``g * exp(x - lse)`` at every length 1..300 with lse from the forward pass, against the
    float64 NumPy formula."""
    fast = np_fast()
    for c in LENGTHS:
        x = _rows_data(6, c, dtype, 2000 + c)
        lse = fast.logsumexp(x, axis=(1,), xp=np)
        g = (np.random.default_rng(c).standard_normal((6, 1)) * 2).astype(dtype)
        before = (x.copy(), lse.copy(), g.copy())
        got = fast.logsumexp_vjp(x, lse, g, axis=(1,), xp=np)
        assert got is not NotImplemented
        for a, b in zip((x, lse, g), before, strict=True):
            np.testing.assert_array_equal(a, b, err_msg="an input was mutated")
        _assert_vjp(got, x, lse, g, f"c={c}")
    assert spy.calls > 0


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c", [1, 3, 4, 8, 16, 17, 33, 100])
def test_vjp_edges(c: int, dtype: str) -> None:
    """NaN throughout a row whose lse is not finite (+inf, NaN, or -inf: a row of -inf only);
    elsewhere IEEE arithmetic of the formula (x = -inf: 0; x = +inf: g * inf; x NaN: NaN)."""
    fast = np_fast()
    x = _edge_rows(c, dtype)
    lse = fast.logsumexp(x, axis=(1,), xp=np)
    g = np.random.default_rng(c).standard_normal(lse.shape).astype(dtype)
    got = fast.logsumexp_vjp(x, lse, g, axis=(1,), xp=np)
    _assert_vjp(got, x, lse, g, f"c={c}")
    all_neg = np.all(np.isneginf(x), axis=1)
    assert all_neg.any()
    assert np.all(np.isnan(got[all_neg]))
    # lse not from this x: NaN, +inf, -inf beside finite x; g of 0 and inf; x of +-inf
    x2 = _rows_data(6, c, dtype, c)
    x2[5, 0] = np.inf
    x2[4, -1] = -np.inf
    lse2 = np.array([[np.nan], [np.inf], [-np.inf], [1.0], [2.0], [0.5]], dtype=dtype)
    g2 = np.array([[1.0], [2.0], [3.0], [0.0], [np.inf], [-1.0]], dtype=dtype)
    _assert_vjp(fast.logsumexp_vjp(x2, lse2, g2, axis=(1,), xp=np), x2, lse2, g2, f"c={c}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("layout", "shape", "axis"), LAYOUTS)
def test_vjp_layouts(
    layout: str, shape: tuple[int, ...], axis: tuple[int, ...], dtype: str, spy: RowsSpy
) -> None:
    """As the softmax C path: rows contiguous in x and in the (C-ordered) result, so the
    columns of a Fortran array are left to the generic kernel."""
    fast = np_fast()
    x = _layout(np.random.default_rng(5).standard_normal(shape).astype(dtype) * 4, layout)
    lse = _scipy(x, axis).astype(dtype)
    g = np.random.default_rng(6).standard_normal(lse.shape).astype(dtype)
    got = fast.logsumexp_vjp(x, lse, g, axis=axis, xp=np)
    if layout == "f":
        assert got is NotImplemented
        assert spy.calls == 0
        return
    assert got is not NotImplemented
    assert spy.calls > 0
    _assert_vjp(got, x, lse, g)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c", [1, 5, 16, 33, 1025])
def test_agrees_with_the_generic_kernels(c: int, dtype: str, spy: RowsSpy) -> None:
    """The fast path returns what ``softmax_xp._generic`` returns (the public functions take
    either): NaN, inf and 0 at the same places, values within TOLERANCES."""
    from softmax_xp import _generic

    fast = np_fast()
    x = _edge_rows(c, dtype)
    rtol, atol = TOLERANCES[dtype]
    got = fast.logsumexp(x, axis=(1,), xp=np)
    with np.errstate(all="ignore"):
        want = _generic.logsumexp(x, axis=(1,), xp=np)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    g = np.random.default_rng(c).standard_normal(want.shape).astype(dtype)
    got_v = fast.logsumexp_vjp(x, want, g, axis=(1,), xp=np)
    with np.errstate(all="ignore"):
        want_v = _generic.logsumexp_vjp(x, want, g, axis=(1,), xp=np)
    np.testing.assert_allclose(got_v, want_v, rtol=rtol, atol=atol)
    np.testing.assert_array_equal(got_v == 0, want_v == 0)
    assert spy.calls == 2


def test_vjp_finite_differences() -> None:
    """The VJP is the derivative of logsumexp: central differences of scipy.special.logsumexp
    in float64, ``sum_i g_i d lse_i / d x_ij``."""
    require_rows()
    fast = np_fast()
    rng = np.random.default_rng(8)
    for c in (1, 2, 5, 17, 40):
        x = rng.standard_normal((3, c)) * 2
        g = rng.standard_normal((3, 1))
        lse = fast.logsumexp(x, axis=(1,), xp=np)
        got = fast.logsumexp_vjp(x, lse, g, axis=(1,), xp=np)
        fd = np.empty_like(x)
        for j in range(c):
            step = np.zeros(c)
            step[j] = FD_STEP
            up = scipy.special.logsumexp(x + step, axis=1, keepdims=True)
            down = scipy.special.logsumexp(x - step, axis=1, keepdims=True)
            fd[:, j] = (g * (up - down) / (2 * FD_STEP))[:, 0]
        rtol, atol = FD_TOLERANCE
        np.testing.assert_allclose(got, fd, rtol=rtol, atol=atol, err_msg=f"c={c}")


def test_vjp_declines(spy: RowsSpy) -> None:
    fast = np_fast()
    x = np.random.default_rng(9).standard_normal((8, 40))
    lse = _scipy(x, (1,))
    g = np.ones_like(lse)
    swapped = lse.astype(lse.dtype.newbyteorder())
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("where", lambda: fast.logsumexp_vjp(x, lse, g, axis=(1,), where=x > 0, xp=np)),
        ("strided rows", lambda: fast.logsumexp_vjp(x[:, ::2], lse, g, axis=(1,), xp=np)),
        ("columns", lambda: fast.logsumexp_vjp(x, lse.T, g.T, axis=(0,), xp=np)),
        (
            "byte-swapped x",
            lambda: fast.logsumexp_vjp(x.astype(swapped.dtype), lse, g, axis=(1,), xp=np),
        ),
        ("byte-swapped lse", lambda: fast.logsumexp_vjp(x, swapped, g, axis=(1,), xp=np)),
        ("lse of another shape", lambda: fast.logsumexp_vjp(x, lse[:, 0], g, axis=(1,), xp=np)),
        ("g broadcast", lambda: fast.logsumexp_vjp(x, lse, g[:1], axis=(1,), xp=np)),
        (
            "dtypes differ",
            lambda: fast.logsumexp_vjp(x, lse.astype(np.float32), g, axis=(1,), xp=np),
        ),
    ]
    for what, call in cases:
        assert call() is NotImplemented, what
    assert spy.calls == 0


def test_binding_checks_its_arguments() -> None:
    """The bindings refuse what the kernels cannot take, naming the argument."""
    rows = require_rows()
    x = np.ones((4, 8))
    with pytest.raises(ValueError, match="logsumexp: expected x"):
        rows.logsumexp(x[:, ::2], np.empty(4))
    with pytest.raises(ValueError, match="logsumexp: out"):
        rows.logsumexp(x, np.empty(3))
    with pytest.raises(ValueError, match="logsumexp: out"):
        rows.logsumexp(x, np.empty(4, dtype=np.float32))
    with pytest.raises(ValueError, match="logsumexp_vjp: lse"):
        rows.logsumexp_vjp(x, np.empty((4, 1)), np.empty(4), np.empty_like(x))
    with pytest.raises(ValueError, match="logsumexp_vjp: g"):
        rows.logsumexp_vjp(x, np.empty(4), np.empty(5), np.empty_like(x))
    with pytest.raises(ValueError, match="operand 1"):
        rows.logsumexp_vjp(x, np.empty(4), np.empty(4), np.empty((4, 9)))
    readonly = np.empty(4)
    readonly.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        rows.logsumexp(x, readonly)
