"""The softmax cross-entropy with integer labels on the NumPy fast path: the C row kernels
(``_rows.ce_labels``, ``_rows.ce_labels_vjp``) behind
``softmax_xp._backends._numpy.softmax_cross_entropy_with_integer_labels`` and its ``_vjp``,
against the generic kernels (``softmax_xp._generic``, run on ``array_api_compat.numpy``) and
finite differences, at every instruction-set level this CPU and build have."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat.numpy as anp
import numpy as np
import pytest
from _fastpaths import RowsSpy, np_fast, require_rows
from _support import in_session

from softmax_xp import _generic
from softmax_xp._testing import EXACT, FD_STEP, FD_TOLERANCE, TOLERANCES

pytestmark = pytest.mark.skipif(not in_session("numpy"), reason="runs in the numpy session")

NDArray = np.ndarray[Any, Any]

#: Every row length of the checks against the generic kernel: all vector widths (2 to 16 lanes),
#: twice them (the short-row code) and the padded tails around them.
LENGTHS = range(1, 301)
#: The label smoothings: none, some, and all (the label's own target is then eps / C too).
SMOOTHING = (0.0, 0.1, 1.0)
#: The ``ignore_index`` options: none, torch's default, and one that is a class index (1).
IGNORES: tuple[int | None, ...] = (None, -100, 1)
FUNC = "softmax_cross_entropy_with_integer_labels"


# -- the two routes ---------------------------------------------------------------------------


def _fast(
    x: NDArray, labels: NDArray, axis: tuple[int, ...], eps: float, ignore: int | None
) -> Any:
    return np_fast().softmax_cross_entropy_with_integer_labels(
        x, labels, axis=axis, label_smoothing=eps, ignore_index=ignore, xp=np
    )


def _fast_vjp(
    x: NDArray,
    labels: NDArray,
    lse: NDArray,
    g: NDArray,
    h: NDArray,
    axis: tuple[int, ...],
    eps: float,
    ignore: int | None,
) -> Any:
    return np_fast().softmax_cross_entropy_with_integer_labels_vjp(
        x, labels, lse, g, h, axis=axis, label_smoothing=eps, ignore_index=ignore, xp=np
    )


def _generic_ce(
    x: NDArray, labels: NDArray, axis: tuple[int, ...], eps: float, ignore: int | None
) -> tuple[NDArray, NDArray]:
    loss, lse = _generic.softmax_cross_entropy_with_integer_labels(
        x, labels, axis=axis, label_smoothing=eps, ignore_index=ignore, xp=anp
    )
    return loss, lse


def _generic_vjp(
    x: NDArray,
    labels: NDArray,
    lse: NDArray,
    g: NDArray,
    h: NDArray,
    axis: tuple[int, ...],
    eps: float,
    ignore: int | None,
) -> NDArray:
    dx: NDArray = _generic.softmax_cross_entropy_with_integer_labels_vjp(
        x, labels, lse, g, h, axis=axis, label_smoothing=eps, ignore_index=ignore, xp=anp
    )
    return dx


def _assert_same(got: NDArray, want: NDArray, what: str, ref: NDArray | None = None) -> None:
    """The generic kernel's value ``want`` (in the input dtype): its dtype and shape, NaN and
    +-inf exactly where it has them (its float32 overflows included); finite values within
    TOLERANCES of ``ref``, the generic kernel's float64 value of the same inputs (``want``
    where None). The float32 generic kernel is no reference for those: its ``sum(t)`` over a
    strided axis is a plain float32 sum, 1 to within 1e-5 over 1000 classes."""
    assert type(got) is np.ndarray, what
    assert got.dtype == want.dtype, what
    assert got.shape == want.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN where {what}")
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf], err_msg=f"inf where {what}")
    np.testing.assert_array_equal(np.isinf(got), inf, err_msg=f"inf where {what}")
    fin = np.isfinite(want)
    rtol, atol = TOLERANCES[str(want.dtype)]
    close = (want if ref is None else ref)[fin]
    np.testing.assert_allclose(got[fin], close, rtol=rtol, atol=atol, err_msg=what)


def _wide(*arrays: NDArray) -> list[NDArray]:
    return [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]


def _check(
    x: NDArray,
    labels: NDArray,
    eps: float,
    ignore: int | None,
    what: str,
    axis: tuple[int, ...] = (1,),
    seed: int = 0,
) -> tuple[NDArray, NDArray, NDArray]:
    """Loss, lse and VJP (random g and h) of the fast path against the generic kernels;
    returns the fast path's three results."""
    got = _fast(x, labels, axis, eps, ignore)
    assert got is not NotImplemented, what
    loss, lse = got
    want_loss, want_lse = _generic_ce(x, labels, axis, eps, ignore)
    ref_loss, ref_lse = _generic_ce(*_wide(x, labels), axis, eps, ignore)
    _assert_same(lse, want_lse, f"lse {what}", ref_lse)
    _assert_same(loss, want_loss, f"loss {what}", ref_loss)
    # an ignored label's loss is exactly 0, whatever its row holds
    if ignore is not None:
        np.testing.assert_array_equal(loss[labels == ignore], 0, err_msg=f"ignored {what}")
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(lse.shape).astype(x.dtype)
    h = rng.standard_normal(lse.shape).astype(x.dtype)
    dx = _fast_vjp(x, labels, lse, g, h, axis, eps, ignore)
    assert dx is not NotImplemented, what
    want_dx = _generic_vjp(x, labels, lse, g, h, axis, eps, ignore)
    ref_dx = _generic_vjp(*_wide(x, labels, lse, g, h), axis, eps, ignore)
    _assert_same(dx, want_dx, f"vjp {what}", ref_dx)
    return loss, lse, dx


def _labels(n: int, c: int, seed: int, ignore: int | None) -> NDArray:
    """n labels (keepdims, (n, 1)): the first and the last class, the ignored one, one out of
    range above and one below (where n allows), the others random classes."""
    lab = np.random.default_rng(seed).integers(0, c, n)
    special = [0, c - 1, -100 if ignore is None else ignore, c, -1]
    lab[: min(n, len(special))] = special[: min(n, len(special))]
    return lab[:, np.newaxis]


# -- against the generic kernels at every length, smoothing, ignore option and level ------------


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_length(dtype: str, spy: RowsSpy) -> None:
    """Rows of every length 1..300 (eight rows: a four-row short group and leftovers), every
    smoothing and ignore option, labels at both ends, ignored and out of range."""
    for c in LENGTHS:
        x = (np.random.default_rng(c).standard_normal((8, c)) * 4).astype(dtype)
        for eps in SMOOTHING:
            for ignore in IGNORES:
                before = spy.calls
                _check(
                    x, _labels(8, c, c, ignore), eps, ignore, f"c={c} eps={eps} {ignore}", seed=c
                )
                assert spy.calls == before + 2, f"c={c}: the C kernels did not run"


def _edge_rows(c: int, dtype: str) -> NDArray:
    """Rows of length c: one +inf, one -inf, one NaN (at the first, a middle and the last
    position), +inf with -inf, +inf with NaN, all -inf, -inf with one finite value, huge values
    (near float32's largest), huge ones of both signs (lse - x overflows), tiny ones (-1e30),
    each beside finite ones."""
    inf, nan = np.inf, np.nan
    base = np.random.default_rng(c).standard_normal(c) * 3
    rows = []
    for v in (inf, -inf, nan):
        for p in sorted({0, c // 2, c - 1}):
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
    r[c // 2] = 2.5
    rows.append(r)
    rows.append(np.full(c, 3e38) * (1 - 0.01 * (np.arange(c) % 3)))
    rows.append(np.where(np.arange(c) % 2 == 0, 3e38, -3e38))
    rows.append(np.full(c, -1e30) * (1 + 0.01 * (np.arange(c) % 3)))
    if dtype == "float64":
        rows.append(np.where(np.arange(c) % 2 == 0, 1.7e308, -1.7e308))
        rows.append(np.full(c, -1e300))
    return np.stack(rows).astype(dtype)


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 100, 1025, 3000])
def test_edge_rows(c: int, dtype: str, spy: RowsSpy) -> None:
    """Edge rows with the label at the special value and elsewhere (first, middle and last
    class), ignored and out of range: the generic kernel's values, edges included."""
    edges = _edge_rows(c, dtype)
    choices = [*sorted({0, c // 2, c - 1}), -100, c]
    x = np.repeat(edges, len(choices), axis=0)
    labels = np.tile(np.array(choices), len(edges))[:, np.newaxis]
    for eps in SMOOTHING:
        for ignore in (None, -100):
            _check(x, labels, eps, ignore, f"c={c} eps={eps} ignore={ignore}")
            assert spy.calls > 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_edge_semantics(dtype: str) -> None:
    """The edge values themselves, independently of the generic kernel: without smoothing only
    the label's logit matters beside the lse (a -inf elsewhere is harmless, at the label +inf);
    with smoothing every class has a positive target (a -inf logit anywhere: +inf); a row with
    +inf, NaN or only -inf: NaN; an ignored label: 0 even there; one out of range: NaN."""
    require_rows()
    inf, nan = np.inf, np.nan
    x = np.array(
        [
            [0.0, -inf, 1.0],
            [-inf, 0.0, 1.0],
            [0.0, inf, 1.0],
            [0.0, nan, 1.0],
            [-inf, -inf, -inf],
            [0.0, nan, 1.0],
            [0.0, 1.0, 2.0],
            [0.0, 1.0, 2.0],
            [3e38, -3e38, 0.0],
        ],
        dtype=dtype,
    )
    labels = np.array([0, 0, 0, 0, 0, -100, 3, -1, 0])[:, np.newaxis]
    loss0, _ = _fast(x, labels, (1,), 0.0, -100)
    loss1, _ = _fast(x, labels, (1,), 0.1, -100)
    assert np.isfinite(loss0[0, 0])
    assert loss1[0, 0] == inf
    assert loss0[1, 0] == inf
    assert loss1[1, 0] == inf
    assert np.isnan(loss0[2:5]).all()
    assert np.isnan(loss1[2:5]).all()
    assert loss0[5, 0] == 0
    assert loss1[5, 0] == 0
    assert np.isnan(loss0[6:8]).all()
    assert np.isnan(loss1[6:8]).all()
    # lse - x overflows (float32) at the -3e38 logit: a positive target there gives +inf
    assert np.isfinite(loss0[8, 0])
    assert (loss1[8, 0] == inf) == (dtype == "float32")


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_long_rows(dtype: str) -> None:
    """Rows over many blocks, with a new maximum in every block (the smoothing term's sum moves
    with the running maximum), decreasing, wide-ranged and nearly constant ones."""
    rng = np.random.default_rng(7)
    lo = -80.0 if dtype == "float32" else -700.0
    for c in (1023, 1024, 1025, 4097, 40000):
        t = np.linspace(0.0, 1.0, c)
        x = np.stack(
            [
                rng.uniform(lo, 60.0, c),
                lo + (60.0 - lo) * t,
                60.0 - (60.0 - lo) * t,
                np.full(c, -10.0),
                rng.standard_normal(c) * 1e-3,
                rng.standard_normal(c) * 30,
            ]
        ).astype(dtype)
        labels = np.array([0, c - 1, c - 1, 5, c // 2, 1])[:, np.newaxis]
        for eps in SMOOTHING:
            _check(x, labels, eps, None, f"c={c} eps={eps}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cotangents_at_the_edges(dtype: str) -> None:
    """g or h of inf or NaN, and g = 0: the generic kernel's IEEE arithmetic (a NaN g makes the
    row NaN even where its target is 0)."""
    require_rows()
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((6, 9)) * 3).astype(dtype)
    x[2, 4] = -np.inf
    labels = np.array([0, 8, 4, -100, 3, 12])[:, np.newaxis]
    g = np.array([np.inf, np.nan, 1.0, np.inf, 0.0, 2.0], dtype=dtype)[:, np.newaxis]
    h = np.array([0.5, 0.0, -np.inf, 1.0, np.nan, 0.0], dtype=dtype)[:, np.newaxis]
    for eps in SMOOTHING:
        _, lse = _fast(x, labels, (1,), eps, -100)
        got = _fast_vjp(x, labels, lse, g, h, (1,), eps, -100)
        want = _generic_vjp(x, labels, lse, g, h, (1,), eps, -100)
        ref = _generic_vjp(*_wide(x, labels, lse, g, h), (1,), eps, -100)
        _assert_same(got, want, f"eps={eps}", ref)


def test_vjp_finite_differences() -> None:
    """The VJP is the derivative of (loss, lse): central differences of the generic forward in
    float64, ``sum_i g_i d loss_i / d x_ij + h_i d lse_i / d x_ij``."""
    require_rows()
    rng = np.random.default_rng(8)
    for c in (1, 2, 5, 17, 40):
        x = rng.standard_normal((4, c)) * 2
        labels = np.array([0, c - 1, c // 2, -100])[:, np.newaxis]
        g, h = rng.standard_normal((4, 1)), rng.standard_normal((4, 1))
        for eps in SMOOTHING:
            _, lse = _fast(x, labels, (1,), eps, -100)
            got = _fast_vjp(x, labels, lse, g, h, (1,), eps, -100)
            fd = np.empty_like(x)
            for j in range(c):
                step = np.zeros(c)
                step[j] = FD_STEP
                up = _generic_ce(x + step, labels, (1,), eps, -100)
                down = _generic_ce(x - step, labels, (1,), eps, -100)
                d = [(u - v) / (2 * FD_STEP) for u, v in zip(up, down, strict=True)]
                fd[:, j] = (g * d[0] + h * d[1])[:, 0]
            rtol, atol = FD_TOLERANCE
            np.testing.assert_allclose(got, fd, rtol=rtol, atol=atol, err_msg=f"c={c} eps={eps}")


# -- layouts, label dtypes, threads, the public function -----------------------------------------

LAYOUTS: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = [
    ("c", (6, 7), (1,)),
    ("c", (4, 3, 5), (2,)),
    ("c", (4, 3, 5), (1, 2)),  # the label is the flat index into the (3, 5) slice
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


def _keepdims_labels(shape: tuple[int, ...], axis: tuple[int, ...], seed: int) -> NDArray:
    c = int(np.prod([shape[a] for a in axis]))
    kd = tuple(1 if a in axis else s for a, s in enumerate(shape))
    lab = np.random.default_rng(seed).integers(0, c, kd)
    lab.reshape(-1)[::7] = c - 1
    lab.reshape(-1)[3::11] = -100
    return lab


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("layout", "shape", "axis"), LAYOUTS)
def test_layouts(
    layout: str, shape: tuple[int, ...], axis: tuple[int, ...], dtype: str, spy: RowsSpy
) -> None:
    """Every layout whose slices are contiguous rows runs in C (threads for large inputs), in
    the keepdims shape; the inputs (read-only here) are not mutated."""
    x = _layout(np.random.default_rng(3).standard_normal(shape).astype(dtype) * 4, layout)
    x[(0,) * x.ndim] = np.inf  # one NaN slice
    labels = _keepdims_labels(shape, axis, 4)
    kept = [a.copy() for a in (x, labels)]
    for a in (x, labels):
        a.flags.writeable = False
    for eps in (0.0, 0.1):
        loss, lse, _ = _check(x, labels, eps, -100, f"{layout} {shape} {axis}", axis=axis)
        assert spy.calls > 0, "the C kernels did not run"
        assert loss.shape == lse.shape == tuple(1 if a in axis else s for a, s in enumerate(shape))
    for a, b in zip((x, labels), kept, strict=True):
        np.testing.assert_array_equal(a, b, err_msg="an input was mutated")


@pytest.mark.parametrize("c_pool", [True, False], ids=["c-pool", "python-pool"])
def test_threads_agree_with_one_call(
    spy: RowsSpy, c_pool: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Split between threads (the C pool in one call, or the Python pool over many C calls) or
    run serially in one call: the same numbers, bit for bit."""
    rows = require_rows()
    monkeypatch.setattr(np_fast(), "_C_POOL", c_pool)
    monkeypatch.setattr(np_fast(), "_n_threads", lambda: 2)  # two threads, on any machine

    def split(calls: int) -> None:
        if c_pool:
            assert spy.calls == calls + 1, "not one call"
            assert spy.threads[-1] == 2, "not split in C"
        else:
            assert spy.calls > calls + 1, "not split in Python"

    x = np.random.default_rng(5).standard_normal((3000, 1024)).astype(np.float32)
    labels = _keepdims_labels(x.shape, (1,), 6)
    lab = labels[:, 0].astype(np.int64)
    for eps in (0.0, 0.1):
        calls = spy.calls
        loss, lse = _fast(x, labels, (1,), eps, -100)
        split(calls)
        one_loss, one_lse = np.empty(3000, np.float32), np.empty(3000, np.float32)
        rows.ce_labels(x, lab, eps, -100, True, one_loss, one_lse)
        rtol, atol = EXACT
        np.testing.assert_allclose(loss[:, 0], one_loss, rtol=rtol, atol=atol)
        np.testing.assert_allclose(lse[:, 0], one_lse, rtol=rtol, atol=atol)
        g, h = np.ones_like(lse), np.full_like(lse, 0.5)
        calls = spy.calls
        dx = _fast_vjp(x, labels, lse, g, h, (1,), eps, -100)
        split(calls)
        one = np.empty_like(x)
        rows.ce_labels_vjp(x, lab, lse[:, 0], g[:, 0], h[:, 0], eps, -100, True, one)
        np.testing.assert_allclose(dx, one, rtol=rtol, atol=atol)


@pytest.mark.parametrize("label_dtype", ["int8", "uint8", "int16", "int32", ">i4", ">i8", "uint32"])
def test_label_dtypes(label_dtype: str, spy: RowsSpy) -> None:
    """Labels of every integer dtype that fits in int64 (byte-swapped ones too) give what int64
    labels give."""
    x = np.random.default_rng(2).standard_normal((9, 6))
    lab64 = np.array([0, 5, 2, 3, 1, 4, 7, 0, 5])[:, np.newaxis]
    want = _fast(x, lab64, (1,), 0.1, None)
    got = _fast(x, lab64.astype(label_dtype), (1,), 0.1, None)
    rtol, atol = EXACT
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    assert spy.calls == 2


def test_ignore_beyond_int64(spy: RowsSpy) -> None:
    """An ``ignore_index`` no int64 label can equal ignores nothing: out-of-range labels NaN."""
    x = np.random.default_rng(2).standard_normal((3, 6))
    labels = np.array([0, -1, 6])[:, np.newaxis]
    loss, lse = _fast(x, labels, (1,), 0.0, 2**70)
    want_loss, want_lse = _generic_ce(x, labels, (1,), 0.0, 2**70)
    _assert_same(loss, want_loss, "loss")
    _assert_same(lse, want_lse, "lse")
    assert np.isnan(loss[1:]).all()
    assert spy.calls == 1


def test_declines(spy: RowsSpy) -> None:
    """A mask, slices that are not contiguous rows, byte-swapped, unaligned or float16 data, an
    empty input, labels that are not integers fitting in int64 or not of the keepdims shape,
    per-slice arrays of another shape or dtype: NotImplemented (the generic kernel runs), with
    no C call."""
    fast = np_fast()
    x = np.random.default_rng(9).standard_normal((8, 40))
    labels = np.arange(8)[:, np.newaxis]
    lse = np.ones((8, 1))
    g = h = np.ones((8, 1))
    unaligned = np.zeros(8 * 40 * 8 + 1, np.uint8)[1:].view(np.float64).reshape(8, 40)
    assert not unaligned.flags.aligned
    col = np.zeros((1, 40))  # per-slice arrays over axis 0
    swapped = x.astype(x.dtype.newbyteorder())

    def ce(xx: Any, lab: Any = labels, axis: tuple[int, ...] = (1,), **kw: Any) -> Any:
        return fast.softmax_cross_entropy_with_integer_labels(xx, lab, axis=axis, xp=np, **kw)

    def vjp(*args: Any, axis: tuple[int, ...] = (1,), **kw: Any) -> Any:
        a = dict(zip(("x", "labels", "lse", "g", "h"), (x, labels, lse, g, h), strict=True))
        a.update(zip(("x", "labels", "lse", "g", "h"), args, strict=False))
        return fast.softmax_cross_entropy_with_integer_labels_vjp(
            *a.values(), axis=axis, xp=np, **kw
        )

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("where", lambda: ce(x, where=x > 0)),
        ("strided rows", lambda: ce(x[:, ::2])),
        ("columns", lambda: ce(x, col.astype(np.int64), axis=(0,))),
        ("byte-swapped", lambda: ce(swapped)),
        ("unaligned", lambda: ce(unaligned)),
        ("float16", lambda: ce(x.astype(np.float16))),
        ("empty", lambda: ce(np.empty((0, 5)), np.empty((0, 1), np.int64))),
        ("float labels", lambda: ce(x, labels.astype(np.float64))),
        ("uint64 labels", lambda: ce(x, labels.astype(np.uint64))),
        ("bool labels", lambda: ce(x, labels > 3)),
        ("labels of the batch shape", lambda: ce(x, labels[:, 0])),
        ("labels as a list", lambda: ce(x, labels.tolist())),
        ("vjp where", lambda: vjp(where=x > 0)),
        ("vjp strided rows", lambda: vjp(x[:, ::2])),
        ("vjp columns", lambda: vjp(x, col.astype(np.int64), col, col, col, axis=(0,))),
        ("vjp byte-swapped lse", lambda: vjp(x, labels, lse.astype(swapped.dtype))),
        ("vjp lse of another shape", lambda: vjp(x, labels, lse[:, 0])),
        ("vjp h broadcast", lambda: vjp(x, labels, lse, g, h[:1])),
        ("vjp dtypes differ", lambda: vjp(x, labels, lse, g, h.astype(np.float32))),
        ("vjp uint64 labels", lambda: vjp(x, labels.astype(np.uint64))),
    ]
    for what, call in cases:
        assert call() is NotImplemented, what
    assert spy.calls == 0


def test_public_function_runs_the_fast_path(spy: RowsSpy) -> None:
    """``softmax_xp.softmax_cross_entropy_with_integer_labels`` on NumPy arrays reaches the C
    kernels (labels in the batch shape, of any integer dtype), as does the backends' dispatch of
    the VJP kernel; both return the generic kernels' values."""
    import softmax_xp as sx
    from softmax_xp import _backends

    rng = np.random.default_rng(12)
    x = rng.standard_normal((5, 9)).astype(np.float32)
    labels = np.array([0, 8, 4, -100, 2], dtype=np.int32)
    got = sx.softmax_cross_entropy_with_integer_labels(
        x, labels, label_smoothing=0.1, ignore_index=-100
    )
    assert spy.calls == 1
    want, lse = _generic_ce(x, labels[:, np.newaxis], (1,), 0.1, -100)
    _assert_same(got, want[:, 0], "public")
    g, h = rng.standard_normal((5, 1)).astype(np.float32), np.zeros((5, 1), np.float32)
    dx = _backends.call(
        f"{FUNC}_vjp", x, labels[:, np.newaxis], lse, g, h, axis=(1,), xp=np,
        label_smoothing=0.1, ignore_index=-100,
    )  # fmt: skip
    assert spy.calls == 2
    _assert_same(dx, _generic_vjp(x, labels[:, np.newaxis], lse, g, h, (1,), 0.1, -100), "vjp")


def test_binding_checks_its_arguments() -> None:
    """The bindings refuse what the kernels cannot take, naming the argument."""
    rows = require_rows()
    x = np.ones((4, 8))
    lab = np.zeros(4, np.int64)
    out = np.empty(4)
    with pytest.raises(ValueError, match="ce_labels: expected x"):
        rows.ce_labels(x[:, ::2], lab, 0.0, 0, False, out, np.empty(4))
    with pytest.raises(ValueError, match="ce_labels: labels"):
        rows.ce_labels(x, lab.astype(np.int32), 0.0, 0, False, out, np.empty(4))
    with pytest.raises(ValueError, match="ce_labels: labels"):
        rows.ce_labels(x, lab[:3], 0.0, 0, False, out, np.empty(4))
    with pytest.raises(ValueError, match="ce_labels: loss"):
        rows.ce_labels(x, lab, 0.0, 0, False, out.astype(np.float32), np.empty(4))
    with pytest.raises(ValueError, match="ce_labels: lse"):
        rows.ce_labels(x, lab, 0.0, 0, False, out, np.empty(5))
    with pytest.raises(ValueError, match="ce_labels_vjp: labels"):
        rows.ce_labels_vjp(x, lab.astype(np.float64), out, out, out, 0.0, 0, False, x.copy())
    with pytest.raises(ValueError, match="ce_labels_vjp: h"):
        rows.ce_labels_vjp(x, lab, out, out, np.empty(3), 0.0, 0, False, x.copy())
    with pytest.raises(ValueError, match="operand 1"):
        rows.ce_labels_vjp(x, lab, out, out, out, 0.0, 0, False, np.empty((4, 9)))
    readonly = np.empty(4)
    readonly.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        rows.ce_labels(x, lab, 0.0, 0, False, readonly, np.empty(4))
