"""The Triton kernels of the torch CUDA path, against torch.softmax, torch.autograd and torch.func.

Without a GPU they run on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``, set by
the fixture before the kernels are first imported); with one, on CUDA tensors, compiled. Shapes
are small (the interpreter is slow) and the path thresholds are lowered with
``_triton.tuning`` so that every path (single block, online, split row) runs on them, with
tails (lengths that are not a multiple of the block) everywhere.

JAX GPU arrays (XLA) and CuPy arrays (the generic code) are tested where such a GPU exists.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _support import TOLERANCES, in_session

pytestmark = pytest.mark.skipif(not in_session("torch"), reason="runs in the torch session")

torch = pytest.importorskip("torch")
if importlib.util.find_spec("triton") is None:  # not imported here: the fixture sets it up first
    pytest.skip("triton is not installed", allow_module_level=True)

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import softmax_xp as sx  # noqa: E402
from softmax_xp._backends import _torch_cuda  # noqa: E402
from softmax_xp._testing import BF16_PRODUCT_FACTOR  # noqa: E402

CUDA = bool(torch.cuda.is_available())
DEVICE = "cuda" if CUDA else "cpu"
if not CUDA:
    # Triton's interpreter must be chosen before triton is first imported (its own library is
    # decorated then), so it is set at collection, before any test can import triton; it only
    # matters where SOFTMAX_XP_TORCH_CUDA=triton is set too (the fixture below).
    os.environ.setdefault("TRITON_INTERPRET", "1")

#: Lowered thresholds that send these small shapes down each path.
PATHS: dict[str, dict[str, int]] = {
    "single": {},
    "online": {"max_single": 16, "chunk": 8},
    "split": {"max_single": 16, "chunk": 8, "split_min": 24, "split_seg": 8, "split_rows": 64},
}
DTYPES = ["float32", "float64", "float16", "bfloat16"]


@pytest.fixture
def kernels(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The kernel module, with the Triton path selected (interpreted where there is no GPU)."""
    if not CUDA:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv(_torch_cuda.ENV, "triton")
    from softmax_xp._backends import _triton

    return _triton


# -- layouts: (shape, axis, how the input is made from a contiguous tensor) -----------------------
def _plain(t: Any) -> Any:
    return t


def _transposed(t: Any) -> Any:
    return t.transpose(0, 1)  # a view: the softmax axis has a large stride


def _strided(t: Any) -> Any:
    return t[:, ::2]  # every other entry of the (last) softmax axis


LAYOUTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], Callable[[Any], Any]]] = {
    "last": ((5, 37), (1,), _plain),
    "middle": ((3, 37, 6), (1,), _plain),
    "first": ((37, 10), (0,), _plain),
    "transposed": ((10, 37), (1,), _transposed),  # built (37, 10): the axis has stride 10
    "step2": ((6, 37), (1,), _strided),  # built (6, 74)
    "adjacent_pair": ((3, 5, 7, 2), (1, 2), _plain),
}


def _make(layout: str, dtype: str, seed: int = 0) -> tuple[Any, tuple[int, ...]]:
    shape, axis, how = LAYOUTS[layout]
    gen = torch.Generator().manual_seed(seed)
    base_shape = {"transposed": (37, 10), "step2": (6, 74)}.get(layout, shape)
    x = how(torch.randn(base_shape, generator=gen, dtype=torch.float64) * 3)
    assert tuple(x.shape) == shape
    return x.to(device=DEVICE, dtype=getattr(torch, dtype)), axis


def _tol(dtype: str) -> dict[str, float]:
    rtol, atol = TOLERANCES[dtype]
    return {"rtol": rtol, "atol": atol}


def _close(actual: Any, expected: Any, dtype: str) -> None:
    assert actual.dtype == getattr(torch, dtype), actual.dtype
    assert actual.device.type == DEVICE
    assert tuple(actual.shape) == tuple(expected.shape)
    np.testing.assert_allclose(
        actual.double().cpu().numpy(),
        expected.double().cpu().numpy(),
        equal_nan=True,
        **_tol(dtype),
    )


def _rows_view(t: Any, axis: tuple[int, ...]) -> Any:
    """``t`` with the softmax axes last and flattened (the torch reference's layout)."""
    batch = [d for d in range(t.ndim) if d not in axis]
    moved = t.permute((*batch, *axis))
    return moved.reshape((*moved.shape[: len(batch)], -1))


def _ref_forward(x: Any, axis: tuple[int, ...], log: bool) -> Any:
    """torch's own (log_)softmax over ``axis``, in float64, cast to x's dtype."""
    r = _rows_view(x.double(), axis)
    out = torch.log_softmax(r, -1) if log else torch.softmax(r, -1)
    batch = [d for d in range(x.ndim) if d not in axis]
    moved_shape = [x.shape[d] for d in (*batch, *axis)]
    inv = np.argsort([*batch, *axis]).tolist()
    return out.reshape(moved_shape).permute(inv).to(x.dtype)


def _run_path(kernels: Any, path: str, x: Any, axis: tuple[int, ...]) -> Any:
    """Check that ``path`` is the one the lowered thresholds select for x."""
    g = kernels.geometry(x, axis[0], axis[-1])
    assert g is not None
    assert kernels.plan(g).path == path


# -- forward --------------------------------------------------------------------------------------
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("path", list(PATHS))
def test_forward(kernels: Any, path: str, dtype: str, layout: str, log: bool) -> None:
    x, axis = _make(layout, dtype)
    with kernels.tuning(**PATHS[path]):
        _run_path(kernels, path, x, axis)
        before = x.clone()
        out = kernels.forward(x, axis[0], axis[-1], None, log)
    assert torch.equal(x, before)  # no input mutated
    _close(out, _ref_forward(x, axis, log), dtype)


def _edge_case(dtype: str) -> tuple[Any, Any]:
    """Rows: plain, one NaN, one +inf, all -inf, all masked, a single unmasked -inf, ..."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn((8, 29), generator=gen, dtype=torch.float64)
    w = torch.rand((8, 29), generator=gen) > 0.3
    x[1, 4] = math.nan
    x[2, 7] = math.inf
    x[3, :] = -math.inf
    w[4, :] = False
    x[5, :] = -math.inf
    x[5, 0] = 1.0  # only masked-out finite entries: the row is all -inf where it counts
    w[5, 0] = False
    w[5, 1] = True
    x[6, 10] = math.nan  # a NaN that is masked out changes nothing
    w[6, 10] = False
    x[7, 3] = 80.0  # large logits (exp overflows without the shift)
    return x.to(device=DEVICE, dtype=getattr(torch, dtype)), w.to(DEVICE)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "where"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("path", list(PATHS))
def test_forward_masks_and_edges(
    kernels: Any, path: str, dtype: str, masked: bool, log: bool
) -> None:
    """Masked-out entries: 0 (log: -inf); all-masked rows: 0 (-inf); a row whose unmasked
    maximum is not finite: NaN at its unmasked entries (torch.softmax's own NaN)."""
    x, w = _edge_case(dtype)
    where = w if masked else None
    with kernels.tuning(**PATHS[path]):
        out = kernels.forward(x, 1, 1, where, log)
    fill = -math.inf if log else 0.0
    xm = x.double() if where is None else x.double().masked_fill(~w, -math.inf)
    ref = torch.log_softmax(xm, -1) if log else torch.softmax(xm, -1)
    if where is not None:
        ref = torch.where(w, ref, fill)
        ref[~w.any(-1)] = fill
    _close(out, ref.to(x.dtype), dtype)
    assert out.isnan().any(-1).tolist() == ref.isnan().any(-1).tolist()


@pytest.mark.parametrize("path", list(PATHS))
def test_forward_extreme_logits(kernels: Any, path: str) -> None:
    """Logits at -max and +max of float32: the shift overflows to -inf (probability 0), with no
    floating-point warning (pytest turns the interpreter's NumPy warnings into errors)."""
    fmax = torch.finfo(torch.float32).max
    x = torch.zeros((3, 40), device=DEVICE)
    x[0, 0], x[0, 1] = -fmax, fmax
    x[1, 5] = -fmax
    x[2, :] = fmax
    x[2, 7] = -fmax
    with kernels.tuning(**PATHS[path]):
        got = [kernels.forward(x, 1, 1, None, log) for log in (False, True)]
    for out, fn in zip(got, (torch.softmax, torch.log_softmax), strict=True):
        _close(out, fn(x.double(), -1).float(), "float32")


def test_forward_long_row(kernels: Any) -> None:
    """One row of 2^20 + 3 at the default thresholds (split path) and three rows of 2^15 + 5
    with the split disabled (online path)."""
    gen = torch.Generator().manual_seed(4)
    x = (torch.randn((1, 2**20 + 3), generator=gen) * 4).to(DEVICE)
    g = kernels.geometry(x, 1, 1)
    assert kernels.plan(g).path == "split"
    _close(kernels.forward(x, 1, 1, None, False), torch.softmax(x.double(), -1).float(), "float32")
    x = (torch.randn((3, 2**15 + 5), generator=gen) * 4).to(DEVICE)
    with kernels.tuning(split_min=2**30):
        assert kernels.plan(kernels.geometry(x, 1, 1)).path == "online"
        out = kernels.forward(x, 1, 1, None, True)
    _close(out, torch.log_softmax(x.double(), -1).float(), "float32")


def test_uncollapsible_strides_fall_back_to_a_copy(kernels: Any) -> None:
    """Axes adjacent in the view but not in memory: read through one contiguous copy."""
    x = torch.randn((4, 5, 6), dtype=torch.float64, device=DEVICE).permute(0, 2, 1)
    assert kernels.geometry(x, 1, 2) is None
    with _Ops() as ops:
        out = sx.softmax(x, axis=(1, 2))
    assert "softmax_xp::forward" in ops.seen
    ref = torch.softmax(x.reshape(4, 30), -1).reshape(4, 6, 5)
    _close(out, ref, "float64")


# -- derivative products --------------------------------------------------------------------------
def _masked_log_softmax(x: Any, w: Any | None, dim: int) -> Any:
    """torch's log_softmax with the package's mask semantics (rows with an unmasked entry)."""
    if w is None:
        return torch.log_softmax(x, dim)
    return torch.where(w, torch.log_softmax(x.masked_fill(~w, -math.inf), dim), -math.inf)


@pytest.mark.parametrize("layout", ["last", "middle", "transposed", "adjacent_pair"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("path", list(PATHS))
def test_products(kernels: Any, path: str, dtype: str, layout: str) -> None:
    """VJP by torch.autograd, JVP by torch.func.jvp, on torch's own (log_)softmax."""
    x, axis = _make(layout, "float64", seed=1)
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    w = (torch.rand(x.shape, generator=gen) > 0.25).to(DEVICE)
    d = axis[0]
    a0, a1 = axis[0], axis[-1]
    if len(axis) > 1:  # the references run on the flattened (adjacent) axes
        flat = (*x.shape[:a0], -1, *x.shape[a1 + 1 :])
        x, g, w = x.reshape(flat), g.reshape(flat), w.reshape(flat)
        a0 = a1 = d
    w[(slice(None),) * d + (0,)] = True  # every slice keeps an unmasked entry
    y = torch.softmax(x, d)
    ls = _masked_log_softmax(x, w, d)
    xr = x.clone().requires_grad_()
    vjp_ref = torch.autograd.grad(torch.softmax(xr, d), xr, g)[0]
    lvjp_ref = torch.autograd.grad(_masked_log_softmax(xr, w, d), xr, g)[0]
    ljvp_ref = torch.func.jvp(lambda t: _masked_log_softmax(t, w, d), (x,), (g,))[1]
    ljvp_ref = torch.where(w, ljvp_ref, 0.0)  # its masked entries are NaN (-inf - -inf)
    dt = getattr(torch, dtype)
    with kernels.tuning(**PATHS[path]):
        _run_path(kernels, path, y, (a0,))
        got = [
            kernels.product(y.to(dt), g.to(dt), a0, a1, None, 0),
            kernels.product(y.to(dt), g.to(dt), a0, a1, None, 0),
            kernels.product(ls.to(dt), g.to(dt), a0, a1, w, 1),
            kernels.product(ls.to(dt), g.to(dt), a0, a1, w, 2),
        ]
    jvp_ref = torch.func.jvp(lambda t: torch.softmax(t, d), (x,), (g,))[1]
    refs = [vjp_ref, jvp_ref, lvjp_ref, ljvp_ref]
    for out, ref in zip(got, refs, strict=True):
        if dtype == "bfloat16":
            _close_bf16(out, ref)
        else:
            _close(out, ref.to(dt), dtype)


def _close_bf16(out: Any, ref: Any) -> None:
    """bfloat16 inputs carry 8 bits: the product's error is relative to the row's scale."""
    scale = ref.abs().amax().item()
    rtol, atol = TOLERANCES["bfloat16"]
    assert out.dtype == torch.bfloat16
    err = (out.double() - ref).abs().amax().item()
    assert err <= BF16_PRODUCT_FACTOR * rtol * scale + atol, (err, scale)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("layout", ["last", "middle", "transposed", "adjacent_pair"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_jacobian(kernels: Any, dtype: str, layout: str, log: bool) -> None:
    """The dense Jacobian against torch.func.jacrev of torch's own (log_)softmax, per row."""
    x, axis = _make(layout, "float64", seed=5)
    y = _ref_forward(x, axis, log)
    fn = torch.log_softmax if log else torch.softmax
    rows = _rows_view(x, axis)
    ref = torch.func.vmap(torch.func.jacrev(lambda r: fn(r, -1)))(rows.reshape(-1, rows.shape[-1]))
    c = rows.shape[-1]
    ref = ref.reshape((*rows.shape[:-1], c, c))
    dt = getattr(torch, dtype)
    out = kernels.jacobian(y.to(dt), axis[0], axis[-1], log)
    _close(out, ref.to(dt), dtype)


# -- through the public API: selection, autograd, torch.func, torch.compile -----------------------
class _Ops(TorchDispatchMode):  # type: ignore[misc]
    """Records the names of the operators dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.seen.add(str(func.name()))
        return func(*args, **(kwargs or {}))


PUBLIC = {
    "softmax": lambda t, w: sx.softmax(t, axis=1),
    "log_softmax": lambda t, w: sx.log_softmax(t, axis=1, where=w),
    "softmax_vjp": lambda t, w: sx.softmax_vjp(torch.softmax(t, 1), t, axis=1),
    "softmax_jvp": lambda t, w: sx.softmax_jvp(torch.softmax(t, 1), t, axis=1),
    "log_softmax_vjp": lambda t, w: sx.log_softmax_vjp(torch.log_softmax(t, 1), t, axis=1),
    "log_softmax_jvp": lambda t, w: sx.log_softmax_jvp(torch.log_softmax(t, 1), t, axis=1),
    "softmax_jacobian": lambda t, w: sx.softmax_jacobian(torch.softmax(t, 1), axis=1),
    "log_softmax_jacobian": lambda t, w: sx.log_softmax_jacobian(torch.log_softmax(t, 1), axis=1),
}


@pytest.mark.parametrize("name", list(PUBLIC))
def test_selection(kernels: Any, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """With the variable set, every public kernel runs a softmax_xp op, and gives what torch's
    path gives; unset or ``native``, none does."""
    x = torch.randn((4, 9, 3), dtype=torch.float64, device=DEVICE)
    w = torch.rand((4, 9, 3), device=DEVICE) > 0.2
    w[:, 0] = True
    assert _torch_cuda.path(x.device) == "triton"
    with _Ops() as ops:
        ours = PUBLIC[name](x, w)
    assert any(s.startswith("softmax_xp::") for s in ops.seen), ops.seen
    for value in (None, "native"):
        if value is None:
            monkeypatch.delenv(_torch_cuda.ENV)
        else:
            monkeypatch.setenv(_torch_cuda.ENV, value)
        assert _torch_cuda.path(x.device) == "native"
        with _Ops() as ops:
            theirs = PUBLIC[name](x, w)
        assert not any(s.startswith("softmax_xp::") for s in ops.seen), ops.seen
        _close(ours, theirs, "float64")


def test_selection_rejects_unknown_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_torch_cuda.ENV, "cutlass")
    with pytest.raises(ValueError, match=_torch_cuda.ENV):
        sx.softmax(torch.randn(3, 4))


def test_cpu_tensors_need_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU tensor keeps torch's kernels unless Triton's interpreter runs (tests only)."""
    monkeypatch.setenv(_torch_cuda.ENV, "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert _torch_cuda.path("cpu") == "native"
    with _Ops() as ops:
        sx.softmax(torch.randn(3, 4))
    assert not any(s.startswith("softmax_xp::") for s in ops.seen)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "where"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_autograd_second_order(kernels: Any, name: str, masked: bool) -> None:
    """gradcheck and gradgradcheck (float64 finite differences) through the Triton ops."""
    fn = getattr(sx, name)
    x = torch.randn((3, 6), dtype=torch.float64, device=DEVICE, requires_grad=True)
    w = torch.rand((3, 6), device=DEVICE) > 0.3 if masked else None
    if w is not None:
        w[:, 0] = True

    def f(t: Any) -> Any:
        out = fn(t, axis=1, where=w)
        # log_softmax is -inf where masked out: finite differences of it are NaN there
        return out if w is None else torch.where(w, out, 0.0)

    with _Ops() as ops:
        (f(x) * torch.arange(6.0, dtype=x.dtype, device=DEVICE)).sum().backward()
    assert "softmax_xp::product" in ops.seen, ops.seen
    assert torch.autograd.gradcheck(f, (x,), check_batched_grad=True)
    assert torch.autograd.gradgradcheck(f, (x,), check_batched_grad=True)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_torch_func(kernels: Any, name: str) -> None:
    """vmap, jacrev, jvp, jacfwd(jacfwd) and hessian against the same transforms of torch."""
    ours = lambda t: getattr(sx, name)(t, axis=-1)  # noqa: E731
    theirs = lambda t: getattr(torch, name)(t, -1)  # noqa: E731
    x = torch.randn((4, 5), dtype=torch.float64, device=DEVICE)
    v = torch.randn((4, 5), dtype=torch.float64, device=DEVICE)
    f = torch.func
    checks = [
        (f.vmap(ours, in_dims=1), f.vmap(theirs, in_dims=1), (x,)),
        (f.jacrev(ours), f.jacrev(theirs), (x,)),
        (lambda t: f.jvp(ours, (t,), (v,))[1], lambda t: f.jvp(theirs, (t,), (v,))[1], (x,)),
        (f.jacfwd(f.jacfwd(ours)), f.jacfwd(f.jacfwd(theirs)), (x[0],)),
        (f.hessian(lambda t: ours(t)[1]), f.hessian(lambda t: theirs(t)[1]), (x[0],)),
        (f.vmap(f.jacrev(ours)), f.vmap(f.jacrev(theirs)), (x,)),
    ]
    for k, (a, b, args) in enumerate(checks):
        with _Ops() as ops:
            got = a(*args)
        _close(got, b(*args), "float64")
        if k in (0, 1, 2, 5):  # first derivatives (and vmap) run the Triton ops
            assert "softmax_xp::forward" in ops.seen, (k, ops.seen)
        if k in (1, 5):
            assert "softmax_xp::product" in ops.seen, (k, ops.seen)


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")
@pytest.mark.filterwarnings(
    "ignore:<class 'torch.autograd.function.Function'> should not be:DeprecationWarning"
)
def test_compile_fullgraph(kernels: Any) -> None:
    """torch.compile(fullgraph=True) traces the custom ops (no graph break) and its gradient is
    torch's."""
    torch._dynamo.reset()
    graphs: list[Any] = []

    def capture(gm: Any, example_inputs: Any) -> Any:
        graphs.append(gm)
        return gm.forward

    def loss(x: Any, w: Any) -> Any:
        return (sx.softmax(x, axis=1) * x).sum() + torch.where(
            w, sx.log_softmax(x, axis=0, where=w), 0.0
        ).sum()

    def ref(x: Any, w: Any) -> Any:
        return (torch.softmax(x, 1) * x).sum() + torch.where(
            w, _masked_log_softmax(x, w, 0), 0.0
        ).sum()

    x = torch.randn((6, 7), device=DEVICE, requires_grad=True)
    w = torch.rand((6, 7), device=DEVICE) > 0.3
    w[0] = True
    compiled = torch.compile(loss, fullgraph=True, backend=capture)
    (g,) = torch.autograd.grad(compiled(x, w), x)
    (g_ref,) = torch.autograd.grad(ref(x, w), x)
    _close(g, g_ref, "float32")
    targets = {
        str(n.target)
        for gm in graphs
        for mod in gm.modules()
        if hasattr(mod, "graph")
        for n in mod.graph.nodes
        if n.op == "call_function"
    }
    assert any("softmax_xp.forward" in t for t in targets), targets


# -- other GPU array libraries: they skip cleanly without a GPU -----------------------------------
def test_jax_gpu_uses_xla() -> None:
    jax = pytest.importorskip("jax")
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        pytest.skip("no JAX GPU here")
    x = jax.device_put(
        jax.numpy.asarray(np.random.default_rng(0).standard_normal((8, 300))), gpus[0]
    )
    out = sx.softmax(x)
    assert out.devices() == {gpus[0]}
    np.testing.assert_allclose(np.asarray(out), np.asarray(jax.nn.softmax(x)), **_tol("float32"))


def test_cupy_uses_generic_code() -> None:
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA device for CuPy")
    except Exception:
        pytest.skip("no CUDA device for CuPy")
    x = cupy.random.default_rng(0).standard_normal((8, 300))
    out = sx.softmax(x)
    assert isinstance(out, cupy.ndarray)
    ref = torch.softmax(torch.as_tensor(cupy.asnumpy(x)), -1).numpy()
    np.testing.assert_allclose(cupy.asnumpy(out), ref, **_tol("float64"))


# -- front ends: `softmax-xp check` and the prepared GPU run, without a GPU -----------------------
ROOT = Path(__file__).resolve().parents[1]


def test_check_reports_the_torch_cuda_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from softmax_xp._cli import _check

    monkeypatch.delenv(_torch_cuda.ENV, raising=False)
    assert _check.torch_cuda_line().startswith("torch CUDA path: native")
    monkeypatch.setenv(_torch_cuda.ENV, "triton")
    assert _check.torch_cuda_line().startswith("torch CUDA path: triton")


@pytest.mark.skipif(CUDA, reason="checks the no-GPU message")
def test_bench_device_cuda_without_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    from softmax_xp._cli import _bench

    assert _bench.main(["--device", "cuda", "--backend", "torch"]) == 0
    err = capsys.readouterr().err
    assert "skipping torch on cuda: no GPU here" in err
    assert "nothing to run" in err
    with pytest.raises(SystemExit):
        _bench.main(["--device", "tpu"])
    assert "--device: cpu or cuda" in capsys.readouterr().err


def test_gpu_run_script_dry_run(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    res = subprocess.run(
        ["bash", str(ROOT / "bench/gpu/run.sh"), "--dry-run"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for name in ("tests", "check", "bench_cli", "sweep"):
        assert f"[dry-run] {name} " in res.stdout
    assert "softmax_xp bench --device cuda" in res.stdout
    assert re.search(r"^\d+ cases$", res.stdout, re.M)


def test_gpu_sweep_pipeline_under_the_interpreter(tmp_path: Path) -> None:
    """The sweep's whole pipeline (timing, JSON, defaults table, plot) on one tiny case."""
    env = {k: v for k, v in os.environ.items() if k != _torch_cuda.ENV}
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu/sweep.py"), "--interpret", "--out",
         str(tmp_path), "--budget-s", "0.01"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "gpu-bench.json").read_text())
    assert report["environment"]["gpu"] is None
    impls = {r["impl"] for r in report["rows"]}
    assert {"triton", "torch.softmax", "x.clone()"} <= impls, impls
    assert all("error" not in r for r in report["rows"]), report["rows"]
    assert report["cases_not_run"] > 0
    table = json.loads((tmp_path / "gpu-defaults.json").read_text())["table"]
    assert table
    assert table[0]["faster"] in ("triton", "native")
    try:  # the plot needs matplotlib (the bench extra); without it the sweep says so and goes on
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot: matplotlib is not installed" in res.stdout
        assert not (tmp_path / "gpu-bench.png").exists()
    else:
        assert (tmp_path / "gpu-bench.png").stat().st_size > 0
