"""The torch fast paths (ATen kernels, huge-page buffers) against the generic kernel.

See tests/_fastpaths.py for the contract: a fast path agrees with the generic kernel, and
really ran."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np
import pytest
from _fastpaths import (
    CASES,
    FORWARD,
    JACOBIANS,
    _assert_agree,
    _data,
    _pair_inputs,
    _scale,
)
from _support import in_session

from softmax_xp import _generic

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not in_session("torch"), reason="runs in the torch session")

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

    from softmax_xp._backends import _host, _torch

    if not _host.HAVE_ROWS:
        pytest.skip("built without the C row kernels")
    calls: list[int] = []
    advise = _host.advise_hugepages

    def spy(address: int, nbytes: int) -> bool:
        calls.append(nbytes)
        return advise(address, nbytes)

    monkeypatch.setattr(_host, "advise_hugepages", spy)
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
