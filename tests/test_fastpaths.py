"""Layer 3: every backend fast path agrees with the generic kernel (its contract).

Each test calls a fast-path function of ``softmax_xp._backends._numpy`` / ``_torch`` / ``_jax``
directly and ``softmax_xp._generic`` on the same inputs: special logits (+inf, -inf, NaN, an
all -inf slice), masks (with an all-masked slice, broadcast masks), tuple axes, non-contiguous,
negative-stride and Fortran-order views, float32 and float64. Values agree within
``TOLERANCES`` and NaNs sit in the same places. Each test also checks that the fast path really
ran (did not return ``NotImplemented``), so that it cannot pass by comparing generic with generic.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np
import pytest
from _support import TOLERANCES

from softmax_xp import _generic, _kernels

# The kernels by kind, from the registry
FORWARD = list(_kernels.FORWARD)
PAIRS = [k.name for k in _kernels.KERNELS.values() if k.of is not None and k.output == "same"]
MASKED_PAIRS = [n for n in PAIRS if _kernels.KERNELS[n].where]
JACOBIANS = [k.name for k in _kernels.KERNELS.values() if k.output == "jacobian"]

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


# -- NumPy ---------------------------------------------------------------------------------------

NP_LAYOUTS = ["c", "f", "neg", "strided", "transposed", "flipud", "unaligned"]


def _np_fast() -> Any:
    from softmax_xp._backends import _numpy

    return _numpy


class _RowsSpy:
    """The C row kernels module, with a count of the calls that reached it."""

    def __init__(self, rows: Any) -> None:
        self._rows = rows
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._rows, name)

        def counted(*args: Any) -> Any:
            self.calls += 1
            return fn(*args)

        return counted


@pytest.fixture(params=["c", "ufunc"])
def np_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> _RowsSpy | None:
    """Run a NumPy fast-path test through the C row kernels, then through NumPy's ufuncs alone.

    Without the extension the "c" run skips, unless SOFTMAX_XP_REQUIRE_ROWS=1 (set by nox, so
    that a build that silently lost its C kernels fails CI).
    """
    numpy_fast = _np_fast()
    if request.param == "ufunc":
        monkeypatch.setattr(numpy_fast, "_rows", None)
        return None
    if numpy_fast._rows is None:
        if os.environ.get("SOFTMAX_XP_REQUIRE_ROWS") == "1":
            pytest.fail("the C row kernels (softmax_xp._backends._rows) were not built")
        pytest.skip("built without the C row kernels")
    spy = _RowsSpy(numpy_fast._rows)
    monkeypatch.setattr(numpy_fast, "_rows", spy)
    return spy


def _scale(arrays: list[Any]) -> float:
    vals = [np.asarray(a, dtype=np.float64) for a in arrays]
    finite = [np.abs(v[np.isfinite(v)]) for v in vals]
    return max((float(f.max()) for f in finite if f.size), default=1.0)


_EXACT: dict[int, Any] = {}


def _run_np(
    name: str, arrays: list[np.ndarray], axis: tuple[int, ...], where: np.ndarray | None = None
) -> tuple[Any, Any]:
    xp = array_api_compat.array_namespace(arrays[0])
    kw: dict[str, Any] = {"axis": axis, "xp": xp}
    if where is not None:
        kw["where"] = where
    before = [a.copy() for a in arrays]
    with _quiet():
        fast = getattr(_np_fast(), name)(*arrays, **kw)
        ref = getattr(_generic, name)(*arrays, **kw)
        exact = getattr(_generic, name)(*[a.astype(np.float64) for a in arrays], **kw)
    _EXACT[id(ref)] = exact
    assert fast is not NotImplemented, f"the NumPy fast path for {name} did not apply"
    for a, b in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(a, b, err_msg="an input was mutated")
    assert type(fast) is np.ndarray
    assert fast.dtype == arrays[0].dtype
    return fast, ref


@pytest.mark.usefixtures("np_path")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", NP_LAYOUTS)
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("name", FORWARD)
def test_numpy_forward(
    name: str, shape: tuple[int, ...], axis: tuple[int, ...], layout: str, dtype: str
) -> None:
    x = _numpy_layout(_data(shape, 0, special=True).astype(dtype), layout)
    fast, ref = _run_np(name, [x], axis)
    _assert_agree(fast, ref, dtype)


@pytest.mark.usefixtures("np_path")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["c", "f", "neg"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("name", FORWARD)
def test_numpy_forward_masked(
    name: str, shape: tuple[int, ...], axis: tuple[int, ...], layout: str, dtype: str
) -> None:
    x = _numpy_layout(_data(shape, 1, special=True).astype(dtype), layout)
    w = _numpy_layout(_mask(shape, 1), layout)
    fast, ref = _run_np(name, [x], axis, w)
    _assert_agree(fast, ref, dtype)


@pytest.mark.usefixtures("np_path")
@pytest.mark.parametrize("name", FORWARD + MASKED_PAIRS)
def test_numpy_broadcast_mask(name: str) -> None:
    """A mask broadcast from one row (zero strides) is read in place, not copied."""
    shape = (50, 24)
    x = _data(shape, 2, special=True).astype("float32")
    row = np.random.default_rng(3).random(shape[1]) > 0.5
    w = np.broadcast_to(row, shape)
    arrays = [x] if name in FORWARD else [x, _data(shape, 4, special=False).astype("float32")]
    fast, ref = _run_np(name, arrays, (1,), w)
    _assert_agree(fast, ref, "float32", _scale(arrays[1:]))


def _pair_inputs(name: str, shape: tuple[int, ...], axis: tuple[int, ...], dtype: str) -> list[Any]:
    x = _data(shape, 5, special=False)
    with _quiet():
        fwd = "log_softmax" if name.startswith("log") else "softmax"
        y = getattr(_generic, fwd)(x, axis=axis, xp=array_api_compat.array_namespace(x))
    v = _data(shape, 6, special=True)  # +-inf and NaN in the tangents / cotangents
    return [np.asarray(y, dtype=dtype), v.astype(dtype)]


@pytest.mark.usefixtures("np_path")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", NP_LAYOUTS)
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("name", PAIRS)
def test_numpy_pairs(
    name: str, shape: tuple[int, ...], axis: tuple[int, ...], layout: str, dtype: str
) -> None:
    y, v = (_numpy_layout(a, layout) for a in _pair_inputs(name, shape, axis, dtype))
    fast, ref = _run_np(name, [y, v], axis)
    _assert_agree(fast, ref, dtype, _scale([v]))


@pytest.mark.usefixtures("np_path")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("name", MASKED_PAIRS)
def test_numpy_pairs_masked(
    name: str, shape: tuple[int, ...], axis: tuple[int, ...], dtype: str
) -> None:
    y, v = _pair_inputs(name, shape, axis, dtype)
    w = _mask(shape, 7)
    fast, ref = _run_np(name, [_numpy_layout(y, "f"), v], axis, w)
    _assert_agree(fast, ref, dtype, _scale([v]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["c", "neg", "transposed"])
@pytest.mark.parametrize(("shape", "axis"), CASES[:6])
@pytest.mark.parametrize("name", JACOBIANS)
def test_numpy_jacobian(
    name: str,
    shape: tuple[int, ...],
    axis: tuple[int, ...],
    layout: str,
    dtype: str,
    np_path: _RowsSpy | None,
) -> None:
    y, _ = _pair_inputs(name, shape, axis, dtype)
    y[0, ...] = np.nan  # NaN placement in the dense output too
    fast, ref = _run_np(name, [_numpy_layout(y, layout)], axis)
    _assert_agree(fast, ref, dtype)
    if np_path is not None:
        assert np_path.calls > 0, "the C Jacobian kernel did not run"


@pytest.mark.usefixtures("np_path")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), LARGE)
@pytest.mark.parametrize("name", FORWARD + PAIRS)
def test_numpy_large_threaded(
    name: str, shape: tuple[int, ...], axis: tuple[int, ...], dtype: str
) -> None:
    """Inputs big enough to be split into cache blocks and between threads."""
    if name in FORWARD:
        arrays = [_data(shape, 8, special=True).astype(dtype)]
    else:
        arrays = _pair_inputs(name, shape, axis, dtype)
    fast, ref = _run_np(name, arrays, axis)
    _assert_agree(fast, ref, dtype, _scale(arrays[1:]), _EXACT.pop(id(ref)))


@pytest.mark.usefixtures("np_path")
def test_numpy_jacobian_large_threaded() -> None:
    y, _ = _pair_inputs("softmax_jacobian", (64, 256), (1,), "float32")
    fast, ref = _run_np("softmax_jacobian", [y], (1,))
    _assert_agree(fast, ref, "float32")


@pytest.mark.usefixtures("np_path")
@pytest.mark.parametrize("name", ["softmax", "softmax_vjp", "log_softmax"])
def test_numpy_concurrent_callers(name: str) -> None:
    """Eight user threads calling at once share the pool safely and get their own results."""
    shape = (256, 4096)  # 4 MiB in float32: threaded
    inputs = [_data(shape, 10 + k, special=False).astype("float32") for k in range(8)]
    xp = array_api_compat.array_namespace(inputs[0])
    fn = getattr(_np_fast(), name)

    def call(a: np.ndarray) -> Any:
        return fn(a, a, axis=(1,), xp=xp) if name.endswith("vjp") else fn(a, axis=(1,), xp=xp)

    expected = [call(a) for a in inputs]
    results: list[Any] = [None] * 8
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(k: int) -> None:
        try:
            start.wait()
            for _ in range(3):
                results[k] = call(inputs[k])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.usefixtures("np_path")
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "softmax_vjp", "log_softmax_vjp"])
def test_numpy_no_output_sized_temporaries(name: str) -> None:
    """Peak traced allocation stays near the result's size (scipy's softmax needs three)."""
    shape = (512, 8192)  # 16 MiB in float32
    x = _data(shape, 11, special=False).astype("float32")
    xp = array_api_compat.array_namespace(x)
    fn = getattr(_np_fast(), name)
    args = (x, x) if name.endswith("vjp") else (x,)
    fn(*args, axis=(1,), xp=xp)  # warm up (pool threads, BLAS buffers)
    tracemalloc.start()
    try:
        out = fn(*args, axis=(1,), xp=xp)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * out.nbytes, f"peak {peak} bytes for a {out.nbytes}-byte result"


def test_numpy_declines_what_it_does_not_cover() -> None:
    """Other dtypes and empty inputs go to the generic kernel."""
    fast = _np_fast()
    xp = array_api_compat.array_namespace(np.empty(0))
    assert fast.softmax(np.ones((2, 3), dtype=np.float16), axis=(1,), xp=xp) is NotImplemented
    assert fast.softmax(np.ones((0, 3), dtype=np.float32), axis=(1,), xp=xp) is NotImplemented


# Around every vector width (2, 4, 8, 16 lanes) and twice it (the short-row code's limit).
ROW_LENGTHS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 64, 65, 100, 1000]


def _isa_levels() -> tuple[str, ...]:
    rows = _np_fast()._rows
    return ("none",) if rows is None else tuple(rows.isa_levels())


@pytest.fixture(params=_isa_levels())
def isa_level(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a C-kernel test at each instruction-set level this CPU and build have (AVX-512, AVX2,
    SSE2 on x86-64; NEON on aarch64), as on a CPU whose best level that is."""
    rows = _np_fast()._rows
    if rows is None:
        if os.environ.get("SOFTMAX_XP_REQUIRE_ROWS") == "1":
            pytest.fail("the C row kernels (softmax_xp._backends._rows) were not built")
        pytest.skip("built without the C row kernels")
    previous = rows.use_isa(request.param)
    try:
        assert rows.isa() == request.param
        yield request.param
    finally:
        rows.use_isa(previous)


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c", ROW_LENGTHS)
@pytest.mark.parametrize("name", FORWARD + PAIRS)
def test_numpy_c_rows_every_length(name: str, c: int, dtype: str, np_path: _RowsSpy | None) -> None:
    """Rows of every length around the vector widths, at every instruction-set level: full
    vectors and the padded last part, each with +-inf and NaN; the C kernels are the ones that
    ran."""
    shape = (6, c)
    if name in FORWARD:
        arrays = [_data(shape, 30 + c, special=True).astype(dtype)]
    else:
        arrays = _pair_inputs(name, shape, (1,), dtype)
    fast, ref = _run_np(name, arrays, (1,))
    _assert_agree(fast, ref, dtype, _scale(arrays[1:]))
    if np_path is not None:
        assert np_path.calls > 0, "the C row kernels did not run"


@pytest.mark.parametrize("layout", ["f", "strided"])
@pytest.mark.parametrize("masked", [False, True])
def test_numpy_c_rows_only_where_they_apply(
    layout: str, masked: bool, np_path: _RowsSpy | None
) -> None:
    """Masks and slices that are not contiguous rows take the ufunc path (and still agree)."""
    if np_path is None:
        pytest.skip("the C path only")
    x = _numpy_layout(_data((8, 40), 40, special=True).astype("float32"), layout)
    w = _mask((8, 40), 41) if masked else None
    fast, ref = _run_np("softmax", [x], (1,), w)
    _assert_agree(fast, ref, "float32")
    assert np_path.calls == 0


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_c_exp_within_one_ulp(dtype: str) -> None:
    """The C kernels' own exp, over its whole range and at every instruction-set level, against
    float64 ``np.exp`` (glibc, correctly rounded here) rounded to ``dtype``: at most 1 ulp; exact
    at the special values."""
    rows = _np_fast()._rows
    if rows is None:
        pytest.skip("built without the C row kernels")
    lo, hi = (-110.0, 90.0) if dtype == "float32" else (-750.0, 712.0)
    x = np.linspace(lo, hi, 400_001).astype(dtype)
    specials = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, -1e-30, 1e-30], dtype=dtype)
    x = np.concatenate([x, specials])[np.newaxis]
    got = np.empty_like(x)
    rows.exp(x, got)
    with np.errstate(all="ignore"):
        if dtype == "float32":
            want = np.exp(x.astype(np.float64)).astype(np.float32)
        else:  # float64: x87 long double exp, rounded once to float64
            want = np.exp(x.astype(np.longdouble)).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want) & (want > 0)
    ulp = np.abs(got[fin].astype(np.float64) - want[fin]) / np.spacing(want[fin]).astype(np.float64)
    assert float(ulp.max()) <= 1.0, f"max error {ulp.max()} ulp"
    np.testing.assert_array_equal(got[want == 0], 0.0)


def test_numpy_c_isa_levels() -> None:
    """The loader picks the best level the CPU has; use_isa refuses a level it does not, naming
    the argument, and changes nothing then."""
    rows = _np_fast()._rows
    if rows is None:
        pytest.skip("built without the C row kernels")
    levels = rows.isa_levels()
    assert levels[-1] in ("sse2", "neon", "generic")
    if not os.environ.get("SOFTMAX_XP_ISA"):
        assert rows.isa() == levels[0]
    before = rows.isa()
    with pytest.raises(ValueError, match="name must be one of"):
        rows.use_isa("avx1024")
    assert rows.isa() == before


@pytest.mark.parametrize("level", ["lowest", "bogus"])
def test_numpy_c_isa_from_the_environment(level: str) -> None:
    """SOFTMAX_XP_ISA picks a lower level when the module loads; a level the CPU or build lacks
    is a ValueError naming the variable, not a silent fallback to the ufuncs."""
    rows = _np_fast()._rows
    if rows is None:
        pytest.skip("built without the C row kernels")
    want = rows.isa_levels()[-1] if level == "lowest" else "avx1024"
    code = "import softmax_xp._backends._rows as r; print(r.isa())"
    env = {**os.environ, "SOFTMAX_XP_ISA": want}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if level == "lowest":
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == want
    else:
        assert run.returncode != 0
        assert "ValueError: SOFTMAX_XP_ISA=avx1024" in run.stderr


def test_advise_hugepages_gives_huge_pages() -> None:
    """A fresh buffer advised before its first touch is faulted in 2 MiB pages (Linux, where
    transparent huge pages are not off): /proc/self/smaps counts them for its mapping."""
    rows = _np_fast()._rows
    if rows is None:
        pytest.skip("built without the C row kernels")
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            mode = f.read()
        with open("/proc/self/smaps") as f:
            f.read(1)
    except OSError:
        pytest.skip("no transparent huge pages here (not Linux)")
    if "[never]" in mode:
        pytest.skip("transparent huge pages are off on this machine")
    import mmap

    nbytes = 64 * 1024 * 1024
    # fresh private anonymous memory, not yet touched (mmap's default for -1 is shared memory)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = np.frombuffer(buf, dtype=np.uint8)
    address = view.__array_interface__["data"][0]
    rows.advise_hugepages(address, nbytes)
    view[::4096] = 1  # touch every 4 KiB page
    huge_kib = 0
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "AnonHugePages:":
                huge_kib = int(line.split()[1])
    del view
    buf.close()
    assert huge_kib >= 2048, "no huge page in the advised mapping"


# -- PyTorch -------------------------------------------------------------------------------------


def _torch_layout(t: Any, layout: str) -> Any:
    import torch

    if layout == "c":
        return t.contiguous()
    if layout == "transposed":
        return t.permute(*reversed(range(t.ndim))).contiguous().permute(*reversed(range(t.ndim)))
    if layout == "strided":
        big = torch.zeros(tuple(2 * s for s in t.shape), dtype=t.dtype)
        view = big[(slice(None, None, 2),) * t.ndim]
        view.copy_(t)
        return view
    raise AssertionError(layout)


def _run_torch(
    name: str, arrays: list[Any], axis: tuple[int, ...], where: Any = None, *, applies: bool = True
) -> tuple[Any, Any]:
    from softmax_xp._backends import _torch

    xp = array_api_compat.array_namespace(arrays[0])
    kw: dict[str, Any] = {"axis": axis, "xp": xp}
    if where is not None:
        kw["where"] = where
    fast = getattr(_torch, name)(*arrays, **kw)
    ref = getattr(_generic, name)(*arrays, **kw)
    if applies:
        assert fast is not NotImplemented, f"the torch fast path for {name} did not apply"
        assert fast.dtype == arrays[0].dtype
    return fast, ref


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.detach().cpu().double().numpy())


TORCH_PAIRS = ["softmax_jvp", "softmax_vjp", "log_softmax_vjp"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["c", "transposed", "strided"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("name", FORWARD + TORCH_PAIRS + JACOBIANS)
def test_torch(
    name: str, shape: tuple[int, ...], axis: tuple[int, ...], layout: str, dtype: str
) -> None:
    torch = pytest.importorskip("torch")
    if name in FORWARD:
        arrays = [_data(shape, 20, special=True)]
    elif name in JACOBIANS:
        arrays = _pair_inputs(name, shape, axis, "float64")[:1]
        arrays[0][0, ...] = np.nan
    else:
        arrays = _pair_inputs(name, shape, axis, "float64")
    tensors = [
        _torch_layout(torch.from_numpy(a.copy()).to(getattr(torch, dtype)), layout) for a in arrays
    ]
    fast, ref = _run_torch(name, tensors, axis)
    _assert_agree(_np(fast), _np(ref), dtype, _scale(arrays[1:]))


@pytest.mark.parametrize("name", ["softmax", "log_softmax", *TORCH_PAIRS, *JACOBIANS])
def test_torch_large_results_in_advised_buffers(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results of 4 MiB and more are written by the same ATen kernels (``out=`` overloads) into
    buffers advised MADV_HUGEPAGE; they agree with the generic kernel and are ordinary tensors.
    Under autograd the plain (allocating) form runs instead."""
    import torch

    from softmax_xp._backends import _torch

    if _torch._advise_hugepages is None:
        pytest.skip("built without the C row kernels")
    calls: list[int] = []
    advise = _torch._advise_hugepages

    def spy(address: int, nbytes: int) -> None:
        calls.append(nbytes)
        advise(address, nbytes)

    monkeypatch.setattr(_torch, "_advise_hugepages", spy)
    shape = (33, 512) if name in JACOBIANS else (8400, 1024)  # 33 MiB / 32.8 MiB results
    if name in ("softmax", "log_softmax"):
        base = [_data(shape, 50, special=True)]
    else:
        base = _pair_inputs(name, shape, (1,), "float32")[: 1 if name in JACOBIANS else 2]
    arrays = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in base]
    fast, ref = _run_torch(name, arrays, (1,))
    _assert_agree(_np(fast), _np(ref), "float32", _scale([_np(a) for a in arrays[1:]]))
    assert calls
    assert calls[0] == fast.numel() * fast.element_size()
    fast.resize_(0)  # an ordinary, resizable tensor

    # Any operand under autograd (all of them, or only the second, as in a double backward or a
    # VJP whose cotangent requires grad) takes the allocating form, which autograd can follow.
    for tracked_at in [range(len(arrays)), range(1, len(arrays))]:
        calls.clear()
        ins = [a.clone().requires_grad_() if i in tracked_at else a for i, a in enumerate(arrays)]
        if not any(t.requires_grad for t in ins):
            continue
        xp = array_api_compat.array_namespace(ins[0])
        out = getattr(_torch, name)(*ins, axis=(1,), xp=xp)
        assert not calls
        out.sum().backward()
        assert all(t.grad is not None for t in ins if t.requires_grad)


def test_torch_masks_use_the_generic_kernel() -> None:
    torch = pytest.importorskip("torch")
    x = torch.zeros(3, 4)
    w = torch.ones(3, 4, dtype=torch.bool)
    _run_torch("softmax", [x], (1,), w, applies=False)
    from softmax_xp._backends import _torch

    xp = array_api_compat.array_namespace(x)
    assert _torch.softmax(x, axis=(1,), where=w, xp=xp) is NotImplemented
    assert _torch.log_softmax_vjp(x, x, axis=(1,), where=w, xp=xp) is NotImplemented


def _torch_fast(name: str) -> Callable[..., Any]:
    from softmax_xp._backends import _torch

    fn: Callable[..., Any] = getattr(_torch, name)
    return fn


@pytest.mark.parametrize("name", FORWARD + TORCH_PAIRS + JACOBIANS)
def test_torch_under_autograd(name: str) -> None:
    """Gradients through each fast path equal those through the generic kernel."""
    torch = pytest.importorskip("torch")
    shape, axis = (4, 3, 5), (0, 2)
    xp = array_api_compat.array_namespace(torch.empty(0))
    base = _pair_inputs(name, shape, axis, "float64")
    n_in = 1 if name in FORWARD + JACOBIANS else 2
    if name in FORWARD:
        base = [_data(shape, 21, special=False)]
    weights = None

    def grads(fn: Callable[..., Any]) -> list[Any]:
        nonlocal weights
        ts = [torch.from_numpy(a.copy()).requires_grad_() for a in base[:n_in]]
        out = fn(*ts, axis=axis, xp=xp)
        assert out is not NotImplemented
        if weights is None:
            weights = torch.from_numpy(np.random.default_rng(22).standard_normal(out.shape))
        return list(torch.autograd.grad((out * weights).sum(), ts))

    for a, b in zip(grads(_torch_fast(name)), grads(getattr(_generic, name)), strict=True):
        _assert_agree(_np(a), _np(b), "float64")


@pytest.mark.parametrize("name", FORWARD + TORCH_PAIRS + JACOBIANS)
def test_torch_under_torch_func(name: str) -> None:
    """vmap and jacrev of each fast path (torch.func-wrapped tensors) equal the generic kernel's."""
    torch = pytest.importorskip("torch")
    from torch.func import jacrev, vmap

    shape, axis = (3, 5), (1,)
    xp = array_api_compat.array_namespace(torch.empty(0))
    base = [torch.from_numpy(a) for a in _pair_inputs(name, shape, axis, "float64")]
    if name in FORWARD:
        base = [torch.from_numpy(_data(shape, 23, special=False))]
    n_in = 1 if name in FORWARD + JACOBIANS else 2
    ins = base[:n_in]

    def per_row(fn: Callable[..., Any]) -> Callable[..., Any]:
        return lambda *rows: fn(*rows, axis=(0,), xp=xp)

    for transform in (vmap, lambda f: vmap(jacrev(f))):
        got = transform(per_row(_torch_fast(name)))(*ins)
        want = transform(per_row(getattr(_generic, name)))(*ins)
        _assert_agree(_np(got), _np(want), "float64")


# -- JAX -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _jax_dtype(dtype: str) -> Iterator[Any]:
    jax = pytest.importorskip("jax")
    with jax.enable_x64(dtype == "float64"):
        yield jax


def _kernel_inputs(
    name: str, shape: tuple[int, ...], axis: tuple[int, ...], seed: int
) -> list[Any]:
    """float64 inputs of kernel ``name``: logits with special values, or forward outputs (and
    tangents / cotangents with special values)."""
    if name in FORWARD:
        return [_data(shape, seed, special=True)]
    pair = _pair_inputs(name, shape, axis, "float64")
    return pair[:1] if name in JACOBIANS else pair


def _run_jax(name: str, arrays: list[Any], axis: tuple[int, ...], where: Any = None) -> Any:
    from softmax_xp._backends import _jax

    xp = array_api_compat.array_namespace(arrays[0])
    kw: dict[str, Any] = {"axis": axis, "xp": xp}
    if where is not None:
        kw["where"] = where
    fast = getattr(_jax, name)(*arrays, **kw)
    ref = getattr(_generic, name)(*arrays, **kw)
    assert fast is not NotImplemented
    return fast, ref


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize(
    ("name", "masked"),
    [(n, False) for n in FORWARD + PAIRS + JACOBIANS] + [(n, True) for n in FORWARD + MASKED_PAIRS],
)
def test_jax(
    name: str, shape: tuple[int, ...], axis: tuple[int, ...], masked: bool, dtype: str
) -> None:
    with _jax_dtype(dtype) as jax:
        jnp = jax.numpy
        arrays = _kernel_inputs(name, shape, axis, 30)
        if name in JACOBIANS:
            arrays[0][0, ...] = np.nan
        ja = [jnp.asarray(a, dtype=dtype) for a in arrays]
        w = jnp.asarray(_mask(shape, 31)) if masked else None
        fast, ref = _run_jax(name, ja, axis, w)
        assert fast.dtype == ja[0].dtype
        _assert_agree(np.asarray(fast), np.asarray(ref), dtype, _scale(arrays[1:]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("name", "masked"),
    [(n, False) for n in FORWARD + PAIRS + JACOBIANS] + [(n, True) for n in FORWARD + MASKED_PAIRS],
)
def test_jax_large_concrete_arrays_on_the_c_kernels(
    name: str, masked: bool, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concrete CPU arrays with large results run the NumPy/C kernels on zero-copy views and come
    back through DLPack (aligned, on the input's device); under jit the same call runs XLA. The
    size threshold is lowered to 1 MiB here to keep the arrays small."""
    from softmax_xp._backends import _jax, _numpy

    monkeypatch.setattr(_jax, "_HOST_MIN_BYTES", 1024 * 1024)

    calls: list[str] = []
    run_into = _numpy.run_into

    def spy(kernel: str, *args: Any) -> Any:
        calls.append(kernel)
        return run_into(kernel, *args)

    monkeypatch.setattr(_numpy, "run_into", spy)
    shape, axis = ((24, 160), (1,)) if name in JACOBIANS else ((600, 520), (1,))  # >= 1 MiB results
    with _jax_dtype(dtype) as jax:
        jnp = jax.numpy
        arrays = _kernel_inputs(name, shape, axis, 60)
        ja = [jnp.asarray(a, dtype=dtype) for a in arrays]
        w = jnp.asarray(_mask(shape, 61)) if masked else None
        assert ja[0].nbytes * (shape[1] if name in JACOBIANS else 1) >= _jax._HOST_MIN_BYTES
        fast, ref = _run_jax(name, ja, axis, w)
        assert calls == [name]
        assert isinstance(fast, jax.Array)
        assert fast.dtype == ja[0].dtype
        assert fast.devices() == ja[0].devices()
        assert fast.unsafe_buffer_pointer() % 64 == 0
        _assert_agree(np.asarray(fast), np.asarray(ref), dtype, _scale(arrays[1:]))

        calls.clear()
        xp = array_api_compat.array_namespace(ja[0])
        kw: dict[str, Any] = {} if w is None else {"where": w}
        jitted = jax.jit(lambda *a: getattr(_jax, name)(*a, axis=axis, xp=xp, **kw))
        _assert_agree(np.asarray(jitted(*ja)), np.asarray(ref), dtype, _scale(arrays[1:]))
        assert not calls


@pytest.mark.parametrize("name", FORWARD + PAIRS + JACOBIANS)
def test_jax_under_transforms(name: str) -> None:
    """jit, vmap and grad of each fast path (traced values) equal the generic kernel's."""
    with _jax_dtype("float64") as jax:
        from softmax_xp._backends import _jax

        jnp = jax.numpy
        shape, axis = (4, 3, 5), (0, 2)
        xp = array_api_compat.array_namespace(jnp.zeros(1))
        base = _pair_inputs(name, shape, axis, "float64")
        if name in FORWARD:
            base = [_data(shape, 32, special=False)]
        n_in = 1 if name in FORWARD + JACOBIANS else 2
        ins = [jnp.asarray(a) for a in base[:n_in]]

        def loss(fn: Callable[..., Any]) -> Callable[..., Any]:
            return lambda *a: jnp.sum(jnp.sin(fn(*a, axis=axis, xp=xp)))

        got = jax.jit(jax.grad(loss(getattr(_jax, name)), argnums=tuple(range(n_in))))(*ins)
        want = jax.grad(loss(getattr(_generic, name)), argnums=tuple(range(n_in)))(*ins)
        for a, b in zip(got, want, strict=True):
            _assert_agree(np.asarray(a), np.asarray(b), "float64")
        batched = jax.vmap(lambda *a: getattr(_jax, name)(*a, axis=(1,), xp=xp))(*ins)
        ref = jax.vmap(lambda *a: getattr(_generic, name)(*a, axis=(1,), xp=xp))(*ins)
        _assert_agree(np.asarray(batched), np.asarray(ref), "float64")


def test_sizes_are_consistent() -> None:
    """The shapes above exercise every NumPy path: short rows, blocks, threads, n-d fallback."""
    from softmax_xp._backends import _numpy

    assert any(
        shape[axis[0]] <= _numpy._SHORT_C and len(axis) == 1 for shape, axis in CASES + LARGE
    )
    assert any(math.prod(shape) * 4 >= _numpy._THREAD_MIN_BYTES for shape, _ in LARGE)
