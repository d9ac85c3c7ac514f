"""The NumPy fast paths (the C row kernels and the ufunc blocks) against the generic kernel.

See tests/_fastpaths.py for the contract: a fast path agrees with the generic kernel, and
really ran."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import tracemalloc
from typing import Any

import array_api_compat
import numpy as np
import pytest
from _fastpaths import (
    CASES,
    FORWARD,
    JACOBIANS,
    LARGE,
    MASKED_PAIRS,
    PAIRS,
    RowsSpy,
    _assert_agree,
    _data,
    _mask,
    _numpy_layout,
    _pair_inputs,
    _quiet,
    _scale,
    require_rows,
)
from _support import in_session

from softmax_xp import _generic

pytestmark = pytest.mark.skipif(not in_session("numpy"), reason="runs in the numpy session")

# -- NumPy ---------------------------------------------------------------------------------------

NP_LAYOUTS = ["c", "f", "neg", "strided", "transposed", "flipud", "unaligned"]


def _np_fast() -> Any:
    from softmax_xp._backends import _numpy

    return _numpy


@pytest.fixture(params=["c", "ufunc"])
def np_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> RowsSpy | None:
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
    spy = RowsSpy(numpy_fast._rows)
    monkeypatch.setattr(numpy_fast, "_rows", spy)
    return spy


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
    np_path: RowsSpy | None,
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


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("c", ROW_LENGTHS)
@pytest.mark.parametrize("name", FORWARD + PAIRS)
def test_numpy_c_rows_every_length(name: str, c: int, dtype: str, np_path: RowsSpy | None) -> None:
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
    layout: str, masked: bool, np_path: RowsSpy | None
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


class _Out:
    """An output operand of a C kernel call: a new array of this shape per call."""

    def __init__(self, *shape: int) -> None:
        self.shape = shape


def _c_calls(rows: Any, dtype: str) -> dict[str, Any]:
    """Every C kernel function on inputs of many row pieces, NaN and infinities included: name ->
    ``call(threads)``, which returns ``(threads that took part, outputs)``."""
    rng = np.random.default_rng(50)
    x = (rng.standard_normal((3000, 513)) * 4).astype(dtype)  # a millisecond or so per call
    x[3, 7], x[11, :], x[20, 0] = np.inf, -np.inf, np.nan
    v = rng.standard_normal(x.shape).astype(dtype)
    n, c = x.shape
    lab = rng.integers(-1, c + 1, n).astype(np.int64)
    lse, g, h = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    y = np.abs(rng.standard_normal((300, 60))).astype(dtype)

    def with_outputs(fn: Any, *args: Any) -> Any:
        def call(threads: int) -> tuple[int, list[np.ndarray]]:
            outs = {
                i: np.full(a.shape, -7, dtype) for i, a in enumerate(args) if isinstance(a, _Out)
            }
            used = fn(*(outs.get(i, a) for i, a in enumerate(args)), threads)
            return used, list(outs.values())

        return call

    return {
        "forward": with_outputs(rows.forward, x, _Out(n, c), False),
        "forward log": with_outputs(rows.forward, x, _Out(n, c), True),
        "prod": with_outputs(rows.prod, x, v, _Out(n, c)),
        "log_vjp": with_outputs(rows.log_vjp, x, v, _Out(n, c)),
        "log_jvp": with_outputs(rows.log_jvp, x, v, _Out(n, c)),
        "jacobian": with_outputs(rows.jacobian, y, _Out(300 * 60, 60), False),
        "jacobian log": with_outputs(rows.jacobian, -y, _Out(300 * 60, 60), True),
        "logsumexp": with_outputs(rows.logsumexp, x, _Out(n)),
        "logsumexp_vjp": with_outputs(rows.logsumexp_vjp, x, lse, g, _Out(n, c)),
        "ce_labels": with_outputs(rows.ce_labels, x, lab, 0.1, 5, True, _Out(n), _Out(n)),
        "ce_labels_vjp": with_outputs(
            rows.ce_labels_vjp, x, lab, lse, g, h, 0.1, 5, True, _Out(n, c)
        ),
        "exp": with_outputs(rows.exp, x, _Out(n, c)),
    }


_C_NAMES = ["forward", "forward log", "prod", "log_vjp", "log_jvp", "jacobian", "jacobian log",
            "logsumexp", "logsumexp_vjp", "ce_labels", "ce_labels_vjp", "exp"]  # fmt: skip


@pytest.mark.usefixtures("isa_level")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", _C_NAMES)
def test_c_pool_gives_the_serial_results(name: str, dtype: str) -> None:
    """Every C kernel split over 2, 3 and 16 threads of the C pool gives what one thread gives,
    bit for bit (NaN included), and says how many threads took part: more than one in at least
    one of several calls (a worker that wakes after the caller has run every piece takes no
    part, which a loaded machine can make happen now and then)."""
    rows = require_rows()
    call = _c_calls(rows, dtype)[name]
    used, want = call(1)
    assert used == 1
    for threads in (2, 3, 16):
        took_part = []
        for _ in range(50):
            used, got = call(threads)
            took_part.append(used)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)
            if used > 1:
                break
        assert all(1 <= u <= threads for u in took_part), took_part
        assert max(took_part) > 1, f"{threads} threads asked, never more than one took part"


_FORK_CHILD = """
import os, sys
import numpy as np
from softmax_xp._backends import _numpy
rows = _numpy._rows
x = np.random.default_rng(0).standard_normal((3000, 513)).astype(np.float32)

def split():  # the most threads that took part in 50 calls, and the result
    best, out = 0, None
    for _ in range(50):
        out = np.empty_like(x)
        best = max(best, rows.forward(x, out, False, 2))
        if best == 2:
            break
    return best, out

want = np.empty_like(x)
rows.forward(x, want, False, 1)
assert split()[0] == 2, "the parent's pool did not start"
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        used, got = split()
        os.write(write, b"ok" if used == 2 and np.array_equal(got, want) else b"bad")
    finally:
        os._exit(0)
os.close(write)
os.waitpid(pid, 0)
print(os.read(read, 8).decode())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork()")
def test_c_pool_in_a_forked_child() -> None:
    """A child forked after the C pool started (its workers are not copied) starts a pool of
    its own: a split call there returns, with the parent's results. (In a fresh interpreter:
    this one has torch's and JAX's threads, which fork() does not suit.)"""
    require_rows()
    run = subprocess.run(
        [sys.executable, "-c", _FORK_CHILD], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok", "the child's split call failed"
