"""Edges of the fast paths and of the operators: devices, sharding, byte order and precision,
NumPy scalars, sparse tensors, unknown Dask sizes, budgets under vmap, non-finite operator input.

Every reference here is independent of softmax_xp: NumPy / SciPy in float64 or longdouble,
torch and JAX's own softmax, or the defining formulas evaluated in a wider dtype.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.special
from _support import Backend, Lib, in_session, tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

import softmax_xp as sx
from softmax_xp._testing import (
    BF16_ROUNDED,
    BF16_VJP,
    F32_JACOBIAN_VS_TORCH,
    F32_VS_TORCH,
    F64_LSTSQ,
    F64_OTHER_ROUTE,
    F64_REORDERED,
    F64_TRACE_CANCELS,
    F64_TRACE_EXACT,
    FAST_PATH_ULPS,
    HALF_ULPS,
    LONGDOUBLE_ULPS,
    SOLVE_AT_1E308,
)

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
    np.testing.assert_allclose(out, _ref_forward(f, x), **F64_REORDERED.kw)


@numpy_session
@pytest.mark.parametrize("f", FORWARD, ids=lambda f: f.__name__)
def test_longdouble_is_computed_in_longdouble(f: object) -> None:
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("longdouble is float64 on this platform")
    x = (np.arange(12, dtype=np.longdouble) / np.longdouble(7)).reshape(3, 4)
    x64 = x.astype(np.float64)
    tol = LONGDOUBLE_ULPS * np.finfo(np.longdouble).eps
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
        np.testing.assert_allclose(out.astype(np.float64), ref, **BF16_ROUNDED.kw)
        out = f(x64, dtype=bf16)
        assert out.dtype == bf16
    y = sx.softmax(x)
    y64 = y.astype(np.float64)
    v = rng.normal(size=x.shape).astype(bf16)
    ref = y64 * (v.astype(np.float64) - (y64 * v.astype(np.float64)).sum(-1, keepdims=True))
    out = sx.softmax_vjp(y, v)
    assert out.dtype == bf16
    np.testing.assert_allclose(out.astype(np.float64), ref, **BF16_VJP.kw)
    assert sx.SoftmaxJacobian(y).to_dense().dtype == bf16


# -- operators: no floating-point warning, NaN never hidden, max_bytes as a size ---------------
def _numpy_backed(lib: Lib) -> bool:
    return lib.backend in (Backend.NUMPY, Backend.NUMPY_READONLY, Backend.ARRAY_API_STRICT)


def _methods(J: object, v: object) -> dict[str, object]:
    """Every method and property of an operator that computes, on one vector ``v``."""
    return {
        "matvec": lambda: J.matvec(v),  # type: ignore[attr-defined]
        "rmatvec": lambda: J.rmatvec(v),  # type: ignore[attr-defined]
        "solve": lambda: J.solve(v),  # type: ignore[attr-defined]
        "diagonal": lambda: J.diagonal(),  # type: ignore[attr-defined]
        "trace": lambda: J.trace(),  # type: ignore[attr-defined]
        "to_dense": lambda: J.to_dense(),  # type: ignore[attr-defined]
    }


OPERATORS = [(sx.SoftmaxJacobian, sx.softmax), (sx.LogSoftmaxJacobian, sx.log_softmax)]


@pytest.mark.parametrize(
    ("b", "want"),
    [
        ([1e308, -1e308, 0.0], [math.inf, -math.inf, 0.0]),  # the solution is beyond float64
        ([math.inf, 0.0, 0.0], [math.nan] * 3),
        ([math.nan, 0.0, 0.0], [math.nan] * 3),
    ],
)
def test_softmax_jacobian_solve_of_huge_or_infinite_b_warns_nothing(
    lib: Lib, b: list[float], want: list[float]
) -> None:
    if lib.backend is Backend.DASK:
        pytest.skip("Dask computes later on its own threads: docs/semantics.md, What never happens")
    y = lib.asarray(np.full(3, 1 / 3), "float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = lib.to_numpy(lib.call(lambda y, b: sx.SoftmaxJacobian(y).solve(b), y, lib.asarray(b)))
    want_np = np.array(want)
    finite = np.isfinite(want_np)
    np.testing.assert_array_equal(out[~finite], want_np[~finite])  # inf, -inf and NaN exactly
    # the finite entries to rounding relative to the slice's scale (1e308): XLA under jit
    # reassociates the scaling, so the 0 comes out as a few ulps of 1e308
    np.testing.assert_allclose(out[finite], want_np[finite], **SOLVE_AT_1E308.kw)


def test_operators_on_non_outputs_warn_nothing(lib: Lib) -> None:
    if lib.backend is Backend.DASK:
        pytest.skip("Dask computes later on its own threads: docs/semantics.md, What never happens")
    y = lib.asarray(np.array([[math.inf, 1.0, 0.0], [0.2, 0.3, 0.5]]), "float64")
    v = lib.asarray(np.array([[1.0, -1.0, 0.0], [math.inf, 0.0, -math.inf]]), "float64")
    for op, _ in OPERATORS:
        J = op(y)
        for name, call in _methods(J, v).items():
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                out = lib.to_numpy(call())  # type: ignore[operator]
            if name == "solve":  # the slice with +inf has no solution to give
                assert np.isnan(out[0]).all(), op.__name__


@pytest.mark.parametrize(("op", "fwd"), OPERATORS, ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_solve_is_nan_where_matvec_is(lib: Lib, op: type, fwd: object, bad: float) -> None:
    """A slice that is NaN throughout (a +inf or NaN logit) solves to NaN, as it multiplies."""
    x = lib.asarray(np.array([[1.0, bad, 2.0], [0.5, -1.0, 2.0]]), "float64")
    b = lib.asarray(np.array([[0.1, -0.2, 0.1], [0.3, 0.1, -0.4]]), "float64")
    y = lib.call(fwd, x)
    for name in ("solve", "matvec", "diagonal", "to_dense"):
        out = lib.to_numpy(lib.call(lambda y, b, name=name: _methods(op(y), b)[name](), y, b))
        assert np.isnan(out[0]).all(), name
        assert np.isfinite(out[1]).all(), name


@pytest.mark.parametrize("size", ["1GB", "1 GiB", "inf", "4096", 4096, 4096.0])
def test_to_dense_takes_max_bytes_as_a_size(lib: Lib, size: object) -> None:
    y = lib.asarray(np.full((2, 8), 1 / 8), "float64")
    for op, _ in OPERATORS:
        assert tuple(op(y).to_dense(max_bytes=size).shape) == (2, 8, 8)
    with pytest.raises(MemoryError, match="over the budget of 1000 bytes"):
        sx.SoftmaxJacobian(y).to_dense(max_bytes="1000B")


@pytest.mark.parametrize(
    ("size", "exc"),
    [("1 parsec", ValueError), ("-3GB", ValueError), (-1, ValueError), (math.nan, ValueError),
     (True, TypeError), ([1], TypeError)],
)  # fmt: skip
def test_to_dense_names_a_bad_max_bytes(lib: Lib, size: object, exc: type) -> None:
    y = lib.asarray(np.full((2, 8), 1 / 8), "float64")
    with pytest.raises(exc, match=r"LogSoftmaxJacobian.to_dense: argument `max_bytes`"):
        sx.LogSoftmaxJacobian(y).to_dense(max_bytes=size)  # type: ignore[arg-type]


# -- property: every operator method, non-finite inputs, no warning, NaN placement --------------
_SPECIAL = [math.inf, -math.inf, math.nan, 1e308, -1e308, 0.0, 5e-324, 1.0, -1.0]


@numpy_session
@settings(max_examples=300)
@given(data=st.data())
def test_operator_methods_on_non_finite_input_warn_nothing(data: st.DataObject) -> None:
    import array_api_strict as xps

    shape = data.draw(st.sampled_from([(3,), (2, 4), (1, 1), (3, 2)]), label="shape")
    values = st.one_of(st.sampled_from(_SPECIAL), st.floats(-1e3, 1e3))
    n = math.prod(shape)
    x = np.array(data.draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    b = np.array(data.draw(st.lists(values, min_size=n, max_size=n)), dtype=np.float64)
    x, b = x.reshape(shape), b.reshape(shape)
    as_output = data.draw(st.booleans(), label="from a forward pass")
    xp_mod = data.draw(st.sampled_from([np, xps]), label="namespace")
    for op, fwd in OPERATORS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = xp_mod.asarray(x)
            if as_output:
                y = fwd(y)
            J = op(y)
            bb = xp_mod.asarray(b)
            outs = {k: np.asarray(c()) for k, c in _methods(J, bb).items()}  # type: ignore[operator]
            J.matmat(xp_mod.reshape(bb, (*shape, 1)))
            J.rmatmat(xp_mod.reshape(bb, (*shape, 1)))
        y_np = np.asarray(y)
        with np.errstate(over="ignore"):
            p_np = y_np if op is sx.SoftmaxJacobian else np.exp(y_np)
        dead = ~np.isfinite(p_np).all(axis=-1, keepdims=True)
        dead = np.broadcast_to(dead, shape)
        # solve: a slice with a non-finite entry has no solution; forward outputs are then NaN
        # throughout, and so is every method's result there
        for name in ("solve", "diagonal", "matvec", "to_dense") if as_output else ("solve",):
            if name == "to_dense":
                continue  # rows layout; covered by the slice-wise methods
            assert np.isnan(outs[name][dead]).all(), (op.__name__, name)


# -- torch: sparse tensors, the default device ----------------------------------------------------
@torch_session
@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_torch_tensors_are_refused_naming_the_argument(layout: str) -> None:
    torch = pytest.importorskip("torch")
    dense = torch.eye(3, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "sparse CSR support is in beta" notice
        sparse = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    for f in FORWARD:
        with pytest.raises(TypeError, match=rf"{f.__name__}: argument `x` is a sparse torch"):
            f(sparse)
    with pytest.raises(TypeError, match=r"softmax_vjp: argument `g` is a sparse torch"):
        sx.softmax_vjp(sx.softmax(dense), sparse)
    with pytest.raises(TypeError, match=r"log_softmax: argument `where` is a sparse torch"):
        sx.log_softmax(dense, where=dense.bool().to_sparse())
    with pytest.raises(TypeError, match=r"SoftmaxJacobian: argument `y` is a sparse torch"):
        sx.SoftmaxJacobian(sparse)
    with pytest.raises(TypeError, match=r"SoftmaxJacobian.matvec: argument `v` is a sparse torch"):
        sx.SoftmaxJacobian(dense).matvec(sparse)


@torch_session
@pytest.mark.parametrize("how", ["context", "set_default_device"])
@pytest.mark.parametrize("nbytes", [32 * 2**20 - 4096, 32 * 2**20])
def test_torch_cpu_tensors_under_another_default_device(how: str, nbytes: int) -> None:
    """CPU tensors on both sides of the 32 MiB huge-page threshold, with a default device that is
    not the CPU ('meta': every machine has it; 'cuda' where present)."""
    torch = pytest.importorskip("torch")
    c = 1024
    n = nbytes // (4 * c)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, generator=g)
    v = torch.randn(n, c, generator=g)
    y = torch.softmax(x, -1)
    want = {
        "softmax": y,
        "log_softmax": torch.log_softmax(x, -1),
        "softmax_vjp": torch._softmax_backward_data(v, y, -1, torch.float32),
        "log_softmax_vjp": v - torch.exp(torch.log_softmax(x, -1)) * v.sum(-1, keepdim=True),
    }
    jx = x[: nbytes // (4 * 32 * 32), :32]  # a Jacobian result of `nbytes` too
    jy = torch.softmax(jx, -1)
    want_jac = torch.func.vmap(torch.func.jacrev(lambda r: torch.softmax(r, -1)))(jx)
    devices = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        if how == "context":
            ctx: object = torch.device(dev)
        else:
            ctx = _default_device(torch, dev)
        with ctx:  # type: ignore[attr-defined]
            got = {
                "softmax": sx.softmax(x),
                "log_softmax": sx.log_softmax(x),
                "softmax_vjp": sx.softmax_vjp(want["softmax"], v),
                "log_softmax_vjp": sx.log_softmax_vjp(want["log_softmax"], v),
            }
            jac = sx.softmax_jacobian(jy)
        for name, out in got.items():
            assert out.device.type == "cpu", name
            torch.testing.assert_close(out, want[name], **F32_VS_TORCH.kw)
        assert jac.device.type == "cpu"
        torch.testing.assert_close(jac, want_jac, **F32_JACOBIAN_VS_TORCH.kw)


class _default_device:
    """``torch.set_default_device(dev)`` for the duration of a block, then the CPU again."""

    def __init__(self, torch: object, dev: str) -> None:
        self.torch, self.dev = torch, dev

    def __enter__(self) -> None:
        self.torch.set_default_device(self.dev)  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        self.torch.set_default_device(None)  # type: ignore[attr-defined]


# -- JAX: several host devices, sharding, both sides of the 32 MiB host-path threshold -----------
JAX_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import softmax_xp as sx

    assert jax.device_count() == 8, jax.devices()
    MiB = 2**20
    rng = np.random.default_rng(0)
    report = {}

    def err(a, b):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        same_nan = bool((np.isnan(a) == np.isnan(b)).all())
        d = np.abs(np.where(np.isnan(a), 0, a) - np.where(np.isnan(b), 0, b))
        scale = np.maximum(np.abs(np.where(np.isnan(b), 0, b)), 1e-30)
        return {"abs": float(d.max(initial=0)), "scale": float(scale.max(initial=1)),
                "same_nan": same_nan}

    def kernels(x, v):
        y, l = jax.nn.softmax(x), jax.nn.log_softmax(x)
        vjp_s = jax.vjp(jax.nn.softmax, x)[1](v)[0]
        vjp_l = jax.vjp(jax.nn.log_softmax, x)[1](v)[0]
        jvp_s = jax.jvp(jax.nn.softmax, (x,), (v,))[1]
        jvp_l = jax.jvp(jax.nn.log_softmax, (x,), (v,))[1]
        return {
            "softmax": (lambda: sx.softmax(x), y),
            "log_softmax": (lambda: sx.log_softmax(x), l),
            "softmax_vjp": (lambda: sx.softmax_vjp(y, v), vjp_s),
            "softmax_jvp": (lambda: sx.softmax_jvp(y, v), jvp_s),
            "log_softmax_vjp": (lambda: sx.log_softmax_vjp(l, v), vjp_l),
            "log_softmax_jvp": (lambda: sx.log_softmax_jvp(l, v), jvp_l),
            "SoftmaxJacobian.matvec": (lambda: sx.SoftmaxJacobian(y).matvec(v), jvp_s),
            "LogSoftmaxJacobian.rmatvec": (lambda: sx.LogSoftmaxJacobian(l).rmatvec(v), vjp_l),
        }

    # devices 0, 3 and 7 (committed), each on both sides of the threshold, with a +inf row
    C = 1024
    for dev_id in (0, 3, 7):
        dev = jax.devices()[dev_id]
        for nbytes in (32 * MiB - 4 * C, 32 * MiB):
            n = nbytes // (4 * C)
            x_np = rng.normal(size=(n, C)).astype(np.float32)
            x_np[1, 5] = np.inf
            x = jax.device_put(x_np, dev)
            v = jax.device_put(rng.normal(size=(n, C)).astype(np.float32), dev)
            for name, (ours, ref) in kernels(x, v).items():
                try:
                    out = ours()
                except Exception as exc:  # recorded, so that the other cases still run
                    report[f"{name}|dev{dev_id}|{nbytes}"] = {"error": repr(exc)}
                    continue
                report[f"{name}|dev{dev_id}|{nbytes}"] = dict(
                    err(out, ref), devices=[d.id for d in out.devices()], want=[dev_id])
            # the dense Jacobian: a result of nbytes from a (n, 32) input
            jx = jax.device_put(x_np[: nbytes // (4 * 32 * 32), :32], dev)
            for name, fwd in (("softmax_jacobian", jax.nn.softmax),
                              ("log_softmax_jacobian", jax.nn.log_softmax)):
                ref = jax.vmap(jax.jacfwd(fwd))(jx)
                key = f"{name}|dev{dev_id}|{nbytes}"
                try:
                    out = getattr(sx, name)(fwd(jx))
                except Exception as exc:
                    report[key] = {"error": repr(exc)}
                    continue
                report[key] = dict(err(out, ref), devices=[d.id for d in out.devices()],
                                   want=[dev_id])

    # every operator method, eager, on sharded forward outputs, against the dense Jacobian
    mesh = Mesh(np.array(jax.devices()).reshape(8), ("d",))
    x_np = rng.normal(size=(16, 64)).astype(np.float32)
    b_np = rng.normal(size=(16, 64)).astype(np.float32)
    for layout, spec in (("batch", P("d", None)), ("class", P(None, "d"))):
        sh = NamedSharding(mesh, spec)
        x, b = jax.device_put(x_np, sh), jax.device_put(b_np, sh)
        for op, fwd in ((sx.SoftmaxJacobian, jax.nn.softmax),
                        (sx.LogSoftmaxJacobian, jax.nn.log_softmax)):
            J = op(fwd(x))
            dense = np.asarray(jax.vmap(jax.jacfwd(fwd))(jnp.asarray(x_np)), dtype=np.float64)
            bb = b_np.astype(np.float64)
            # minimum-norm least squares on the dense matrix, slice by slice (rcond: the
            # matrices are float32 values, whose null direction has a singular value ~1e-8)
            want_solve = np.stack([np.linalg.lstsq(dense[i], bb[i], rcond=1e-5)[0]
                                   for i in range(16)])
            want = {
                "matvec": np.einsum("nij,nj->ni", dense, bb),
                "rmatvec": np.einsum("nij,ni->nj", dense, bb),
                "diagonal": np.einsum("nii->ni", dense),
                "trace": np.einsum("nii->n", dense),
                "to_dense": dense,
                "solve": want_solve,
            }
            got = {
                "matvec": lambda: J.matvec(b), "rmatvec": lambda: J.rmatvec(b),
                "diagonal": J.diagonal, "trace": J.trace, "to_dense": J.to_dense,
                "solve": lambda: J.solve(b),
            }
            for name, call in got.items():
                try:
                    out = call()
                except Exception as exc:
                    report[f"{op.__name__}.{name}|{layout}"] = {"error": repr(exc)}
                    continue
                report[f"{op.__name__}.{name}|{layout}"] = dict(
                    err(out, want[name]), devices=sorted(d.id for d in out.devices()),
                    want=list(range(8)))
    with open(sys.argv[1], "w") as fh:
        json.dump(report, fh)
    """
)


@pytest.fixture(scope="module")
def jax_devices_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("jax_devices")
    script, js = tmp / "run.py", tmp / "report.json"
    script.write_text(JAX_SCRIPT)
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, str(script), str(js)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"the multi-device run failed:\n{proc.stdout}\n{proc.stderr}"
    report: dict[str, dict] = json.loads(Path(js).read_text())
    return report


def _bad(report: dict[str, dict]) -> dict[str, dict]:
    rtol, atol = tolerance("float32")
    return {
        k: r
        for k, r in report.items()
        if "error" in r
        or not r["same_nan"]
        or r["devices"] != r["want"]
        or r["abs"] > atol + rtol * (r["scale"] if ".solve" in k else 1.0)
    }


@jax_session
def test_jax_host_devices_and_the_host_threshold(jax_devices_run: dict[str, dict]) -> None:
    """Every kernel on CPU devices 0, 3 and 7 on both sides of 32 MiB: right values (float32
    tolerance against jax's own transforms, float64 NumPy on the dense Jacobian), NaN where jax
    has NaN, the input's device (an eager array of 32 MiB on device 3 raised in the host
    path's DLPack return)."""
    cases = {k: r for k, r in jax_devices_run.items() if "|dev" in k}
    assert len(cases) == 3 * 2 * 10
    bad = _bad(cases)
    assert not bad, bad


@jax_session
def test_jax_operator_methods_on_sharded_arrays(jax_devices_run: dict[str, dict]) -> None:
    """Every operator method, eager, on batch- and class-sharded input (8 host devices), against
    the dense Jacobian (a 0-d constant built with a 2-D array's sharding raised here)."""
    cases = {k: r for k, r in jax_devices_run.items() if "|dev" not in k}
    assert len(cases) == 2 * 2 * 6
    bad = _bad(cases)
    assert not bad, bad


# -- every dense-Jacobian budget under every vmap -------------------------------------------------
def _budget_calls() -> dict[str, object]:
    return {
        "softmax_jacobian": sx.softmax_jacobian,
        "log_softmax_jacobian": sx.log_softmax_jacobian,
        "SoftmaxJacobian.to_dense": lambda y: sx.SoftmaxJacobian(y).to_dense(),
        "LogSoftmaxJacobian.to_dense": lambda y: sx.LogSoftmaxJacobian(y).to_dense(),
        "to_dense(max_bytes=)": lambda y: sx.SoftmaxJacobian(y).to_dense(max_bytes="4KiB"),
    }


def _jax_maps() -> dict[str, object]:
    import jax

    return {
        "vmap": lambda f: jax.vmap(f),
        "jit(vmap)": lambda f: jax.jit(jax.vmap(f)),
        "vmap(vmap)": lambda f: jax.vmap(jax.vmap(f)),
        "vmap(jacfwd)": lambda f: jax.vmap(lambda r: jax.jacfwd(lambda t: f(t).sum())(r)),
    }


def _torch_maps() -> dict[str, object]:
    import torch

    return {
        "vmap": lambda f: torch.func.vmap(f),
        "vmap(vmap)": lambda f: torch.func.vmap(torch.func.vmap(f)),
        "vmap(grad)": lambda f: torch.func.vmap(torch.func.grad(lambda t: f(t).sum())),
    }


# 8 examples of (2, 1, 16) float32: one example's Jacobian is 2·16²·4 = 2 KiB, all of them 16 KiB
_EXAMPLE = (2, 1, 16)
_PER_EXAMPLE = 2 * 16 * 16 * 4


def _vmapped_input(framework: str, nested: bool) -> object:
    shape = (4, 2, *_EXAMPLE) if nested else (8, *_EXAMPLE)
    data = np.full(shape, 1 / 16, dtype=np.float32)
    if framework == "jax":
        import jax.numpy as jnp

        return jnp.asarray(data)
    import torch

    return torch.from_numpy(data)


@pytest.mark.parametrize("call", list(_budget_calls()))
@pytest.mark.parametrize(
    ("framework", "mapping"),
    # not vmap(jit(f)): jit traces f once per example shape, before vmap batches the program, so
    # no trace-time check can see the mapped size (docs/semantics.md)
    [*(("jax", m) for m in ("vmap", "jit(vmap)", "vmap(vmap)", "vmap(jacfwd)")),
     *(("torch", m) for m in ("vmap", "vmap(vmap)", "vmap(grad)"))],
)  # fmt: skip
def test_dense_budget_counts_every_vmapped_example(
    framework: str, mapping: str, call: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not in_session(framework):
        pytest.skip(f"runs in the {framework} session")
    pytest.importorskip(framework)
    maps = _jax_maps() if framework == "jax" else _torch_maps()
    fn = _budget_calls()[call]
    y = _vmapped_input(framework, nested=mapping == "vmap(vmap)")
    mapped = maps[mapping](fn)  # type: ignore[operator]
    # 4 KiB: two examples' worth, far below the eight examples' 16 KiB
    monkeypatch.setenv("SOFTMAX_XP_MAX_DENSE_BYTES", "4KiB")
    with pytest.raises(MemoryError, match=r"under vmap over .* examples"):
        mapped(y)
    # one example alone fits: the direct, unmapped call passes
    example = y[0, 0] if mapping == "vmap(vmap)" else y[0]  # type: ignore[index]
    assert tuple(fn(example).shape) == (2, 1, 16, 16)  # type: ignore[operator]
    if call != "to_dense(max_bytes=)":  # the per-call budget does not read the environment
        monkeypatch.setenv("SOFTMAX_XP_MAX_DENSE_BYTES", str(8 * _PER_EXAMPLE))
        out = mapped(y)
        assert out.shape[0] in (4, 8)


# -- Dask: unknown chunk sizes (boolean indexing) -------------------------------------------------
def _unknown_rows(seed: int = 5) -> tuple[object, np.ndarray]:
    """A Dask array of shape (nan, 3) (rows picked by a lazy boolean mask), and its values."""
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(seed)
    x_np = rng.normal(size=(12, 3))
    keep = np.random.default_rng(0).random(12) > 0.4  # the same rows for every seed
    x = da.from_array(x_np, chunks=(5, 2))[da.from_array(keep, chunks=5)]
    assert math.isnan(x.shape[0])
    return x, x_np[keep]


@dask_session
def test_dask_unknown_sizes_every_function() -> None:
    x, x_np = _unknown_rows()
    import torch

    t = torch.from_numpy(x_np)
    y, l = torch.softmax(t, -1), torch.log_softmax(t, -1)
    ys, ls = sx.softmax(x), sx.log_softmax(x)
    v = x * 0.5 - 0.1
    v_t = t * 0.5 - 0.1

    def vjp(f: object, arg: object) -> np.ndarray:
        _, back = torch.func.vjp(f, t)  # type: ignore[arg-type]
        return back(arg)[0].numpy()  # type: ignore[no-any-return]

    def jvp(f: object) -> np.ndarray:
        return torch.func.jvp(f, (t,), (v_t,))[1].numpy()  # type: ignore[arg-type, no-any-return]

    sm = lambda a: torch.softmax(a, -1)  # noqa: E731
    lsm = lambda a: torch.log_softmax(a, -1)  # noqa: E731
    jac = torch.func.vmap(torch.func.jacrev(sm))(t).numpy()
    ljac = torch.func.vmap(torch.func.jacrev(lsm))(t).numpy()
    keep = np.array([True, False, True])
    want_where = scipy.special.softmax(np.where(keep, x_np, -np.inf), axis=-1)
    cases = {
        "softmax": (ys, y.numpy()),
        "log_softmax": (ls, l.numpy()),
        "softmax where (3,)": (sx.softmax(x, where=_dask(keep)), want_where),
        "softmax where full": (sx.softmax(x, where=x > -np.inf), y.numpy()),
        "softmax_vjp": (sx.softmax_vjp(ys, v), vjp(sm, v_t)),
        "softmax_jvp": (sx.softmax_jvp(ys, v), jvp(sm)),
        "log_softmax_vjp": (sx.log_softmax_vjp(ls, v), vjp(lsm, v_t)),
        "log_softmax_jvp": (sx.log_softmax_jvp(ls, v), jvp(lsm)),
        "softmax_jacobian": (sx.softmax_jacobian(ys), jac),
        "log_softmax_jacobian": (sx.log_softmax_jacobian(ls), ljac),
        "SoftmaxJacobian.matmat": (
            sx.SoftmaxJacobian(ys).matmat(v[..., None]),
            jvp(sm)[..., None],
        ),
        "SoftmaxJacobian.to_dense": (sx.SoftmaxJacobian(ys).to_dense(), jac),
        "LogSoftmaxJacobian.trace": (sx.LogSoftmaxJacobian(ls).trace(), np.trace(ljac, 0, 1, 2)),
    }
    for name, (ours, want) in cases.items():
        np.testing.assert_allclose(ours.compute(), want, **F64_OTHER_ROUTE.kw, err_msg=name)


def _dask(a: np.ndarray) -> object:
    import dask.array as da

    return da.from_array(a)


@dask_session
def test_dask_unknown_sizes_along_the_softmax_axis() -> None:
    """axis=0 runs over the rows whose number is unknown: products, trace and solve need no size;
    the dense Jacobian, whose shape is (C, C), is refused naming the argument."""
    x, x_np = _unknown_rows()
    c = x_np.shape[0]
    ls = sx.log_softmax(x, axis=0)
    ys = sx.softmax(x, axis=0)
    L, J = sx.LogSoftmaxJacobian(ls, axis=0), sx.SoftmaxJacobian(ys, axis=0)
    np.testing.assert_allclose(L.trace().compute(), np.full(3, c - 1.0), **F64_TRACE_EXACT.kw)
    y_np = scipy.special.softmax(x_np, axis=0)
    np.testing.assert_allclose(J.trace().compute(), 1 - (y_np**2).sum(0), **F64_TRACE_CANCELS.kw)
    b, b_np = _unknown_rows(seed=6)
    dense = [np.diag(y_np[:, k]) - np.outer(y_np[:, k], y_np[:, k]) for k in range(3)]
    ldense = [np.eye(c) - np.outer(np.ones(c), y_np[:, k]) for k in range(3)]
    for op, mats in ((J, dense), (L, ldense)):
        got = op.solve(b).compute()
        for k in range(3):
            want = np.linalg.lstsq(mats[k], b_np[:, k], rcond=None)[0]
            np.testing.assert_allclose(got[:, k], want, **F64_LSTSQ.kw)
    for call, func in (
        (lambda: sx.softmax_jacobian(ys, axis=0), "softmax_jacobian"),
        (lambda: sx.log_softmax_jacobian(ls, axis=None), "log_softmax_jacobian"),
        (lambda: J.to_dense(), r"SoftmaxJacobian.to_dense"),
    ):
        with pytest.raises(ValueError, match=rf"{func}: argument `[yl]` has unknown sizes"):
            call()


# -- property: the NumPy fast paths on both sides of every size threshold -------------------------
_THRESHOLD_C = [1, 2, 31, 32, 33, 8191, 8192, 8208]  # short rows <= 32; 16-way float32 sums >= 8192
_THRESHOLD_BYTES = [512 * 1024, 1024 * 1024, 2 * 1024 * 1024]  # block, C task, thread minimum


def _np_reference(kernel: str, x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The kernel in longdouble NumPy from the defining formulas (x: logits, v: a vector)."""
    xl = x.astype(np.longdouble)
    e = np.exp(xl - xl.max(-1, keepdims=True))
    y = e / e.sum(-1, keepdims=True)
    vl = v.astype(np.longdouble)
    return {
        "softmax": y,
        "log_softmax": np.log(y),
        "softmax_vjp": y * (vl - (vl * y).sum(-1, keepdims=True)),
        "log_softmax_jvp": vl - (y * vl).sum(-1, keepdims=True),
        "log_softmax_vjp": vl - y * vl.sum(-1, keepdims=True),
    }[kernel]


@numpy_session
@settings(max_examples=40)
@given(
    c=st.sampled_from(_THRESHOLD_C),
    target=st.sampled_from(_THRESHOLD_BYTES),
    side=st.sampled_from([-1, 0, 1]),
    dtype=st.sampled_from(["float32", "float64", "longdouble", "float16", "bfloat16"]),
    swapped=st.booleans(),
    layout=st.sampled_from(["C", "F", "strided", "unaligned"]),
    kernel=st.sampled_from(
        ["softmax", "log_softmax", "softmax_vjp", "log_softmax_jvp", "log_softmax_vjp"]
    ),
)
def test_numpy_fast_paths_across_thresholds_byte_orders_and_precisions(
    c: int, target: int, side: int, dtype: str, swapped: bool, layout: str, kernel: str
) -> None:
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dt = np.dtype(ml_dtypes.bfloat16)
        swapped = False  # no byte-swapped bfloat16
    else:
        dt = np.dtype(dtype)
    if swapped:
        dt = dt.newbyteorder("S")
    work = 4 if dt.itemsize <= 4 else dt.itemsize
    n = max(1, target // (c * work) + side)  # rows: one below, at, one above the threshold
    rng = np.random.default_rng(c * 7 + n)
    x64 = rng.normal(scale=3.0, size=(n, c))
    v64 = rng.normal(size=(n, c))
    x, v = _layout(x64.astype(dt), layout), _layout(v64.astype(dt), layout)
    x_in, v_in = x.copy(), v.copy()
    want = _np_reference(kernel, x.astype(np.float64), v.astype(np.float64))
    if kernel in ("softmax", "log_softmax"):
        out = getattr(sx, kernel)(x)
    else:
        fwd = sx.softmax if kernel.startswith("softmax") else sx.log_softmax
        out = getattr(sx, kernel)(fwd(x), v)
    assert out.dtype == dt.newbyteorder("=")  # the native dtype of the same precision
    assert out.shape == (n, c)
    np.testing.assert_array_equal(x, x_in)  # inputs untouched
    np.testing.assert_array_equal(v, v_in)
    if dtype in ("float16", "bfloat16"):
        # float32 arithmetic, rounded once to a dtype with 11 (8) significant bits
        ulp = 2.0 ** (-10 if dtype == "float16" else -7)
        np.testing.assert_allclose(
            out.astype(np.float64),
            want.astype(np.float64),
            rtol=HALF_ULPS * ulp,
            atol=HALF_ULPS * ulp,
        )
        return
    eps = float(np.finfo(dt.newbyteorder("=")).eps)
    tol = FAST_PATH_ULPS * eps * max(1.0, math.log2(c) + 1)
    np.testing.assert_allclose(
        out.astype(np.longdouble), want, rtol=tol, atol=tol * float(np.abs(want).max())
    )


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout: Fortran order, a strided view, or data that
    starts one byte off alignment."""
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided":
        big = np.empty((a.shape[0], 2 * a.shape[1]), dtype=a.dtype)
        big[:, ::2] = a
        return big[:, ::2]
    if layout == "unaligned":
        raw = np.empty(a.nbytes + 1, dtype=np.uint8)
        out = raw[1:].view(a.dtype).reshape(a.shape)
        out[...] = a
        return out
    return a
