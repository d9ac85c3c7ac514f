"""The cached route of the common call (``softmax_xp._hot``) does what the full path does.

Passing ``xp=`` takes the full path (no route), so every check compares the two on the same
data: results bit for bit, errors word for word, autograd graphs and traced programs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import softmax_xp as sx
from softmax_xp import _hot, _kernels
from softmax_xp._testing import EXACT

# the kernels with direct routes: softmax, log_softmax and their JVPs/VJPs
ROUTED = [n for n in _kernels.OF_OUTPUT if _kernels.KERNELS[n].output == "same"]
SHAPES = [(4, 8), (3, 1), (2, 3, 5), (0, 4), (300, 2048)]  # the last: past the thread threshold


def _call(name: str, arrays: list[Any], axis: int, **kw: Any) -> Any:
    return getattr(sx, name)(*arrays, axis=axis, **kw)


def _operands(name: str, x: Any) -> list[Any]:
    if _kernels.KERNELS[name].forward:
        return [x]
    out = _call(_kernels.KERNELS[name].of or "", [x], -1)
    return [out, x * 0.5 - 0.25]


@pytest.mark.parametrize("name", ROUTED)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES)
def test_numpy_route_equals_full_path(name: str, dtype: str, shape: tuple[int, ...]) -> None:
    import array_api_compat.numpy as xp

    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype) * 4
    for axis in range(-x.ndim, x.ndim):
        for arr in (x, x.T.copy().T, np.flip(x, -1)):  # contiguous, F-ordered, negative stride
            ops = _operands(name, arr)
            got = _call(name, ops, axis)
            want = _call(name, ops, axis, xp=xp)
            assert type(got) is np.ndarray
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    assert _hot.route(name, x, -1) is not None  # the common call has a route


def _message(fn: Callable[[], Any]) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as info:  # noqa: PT011 - compared below
        fn()
    return info.type, str(info.value)


@pytest.mark.parametrize("name", [n for n in ROUTED if not _kernels.KERNELS[n].forward])
def test_numpy_route_errors_are_the_full_paths(name: str) -> None:
    import array_api_compat.numpy as xp

    y = sx.softmax(np.ones((3, 4)))
    assert _hot.route(name, y, -1) is not None
    fn = getattr(sx, name)
    for bad in ([1.0, 2.0, 3.0, 4.0], np.ones((3, 5)), np.ones((3, 4), dtype=np.complex128)):
        got = _message(lambda bad=bad: fn(y, bad))
        want = _message(lambda bad=bad: fn(y, bad, xp=xp))
        assert got == want
        assert re.search(r"`[gv]`", got[1]), got  # the message names the argument


def test_route_refuses_what_validation_refuses() -> None:
    for bad in (np.ones(()), np.ones(3, dtype=np.complex64)):
        with pytest.raises((TypeError, ValueError)):
            sx.softmax(bad)
        assert _hot.route("softmax", bad, -1) is None
    assert _hot.route("softmax", np.ones(3, dtype=np.int64), -1) is None  # promoted: full path


def test_route_leaves_input_and_warnings_alone() -> None:
    x = np.array([[np.inf, 1.0, -np.inf], [np.nan, 0.0, 1.0]])
    x.setflags(write=False)
    before = x.copy()
    for name in ("softmax", "log_softmax"):
        with np.errstate(all="raise"):
            got = getattr(sx, name)(x)
        np.testing.assert_array_equal(got, getattr(sx, name)(x, xp=np))
    np.testing.assert_array_equal(x, before)


# -- torch --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ROUTED)
def test_torch_route_equals_full_path(name: str) -> None:
    torch = pytest.importorskip("torch")
    x = torch.randn(5, 7, dtype=torch.float64)
    for axis in (-1, 0):
        ops = _operands(name, x)
        got = _call(name, ops, axis)
        want = _call(name, ops, axis, xp=torch)
        torch.testing.assert_close(got, want, **EXACT.kw)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_torch_route_under_autograd(name: str) -> None:
    torch = pytest.importorskip("torch")
    ref = getattr(torch, name)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    for _ in range(2):  # the second call runs the cached route
        y = getattr(sx, name)(x)
        assert type(y.grad_fn).__name__.startswith("_" + name.title().replace("_", ""))
        g = torch.randn_like(y)
        (gx,) = torch.autograd.grad(y, x, g, create_graph=True)
        (want,) = torch.autograd.grad(ref(x, -1), x, g, create_graph=True)
        torch.testing.assert_close(gx, want)
        # second order through our rules, against torch's own
        (ggx,) = torch.autograd.grad(gx.sum(), x)
        (gg_want,) = torch.autograd.grad(want.sum(), x)
        torch.testing.assert_close(ggx, gg_want)


# Dynamo warns as it traces array-api-compat's lru_cache-wrapped helpers and instantiates the
# autograd.Function (torch 2.13): the full path's warnings, filtered as in test_autodiff_torch.py.
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")
@pytest.mark.filterwarnings(
    "ignore:<class 'torch.autograd.function.Function'> should not be:DeprecationWarning"
)
def test_torch_route_declines_sparse_and_transforms() -> None:
    torch = pytest.importorskip("torch")
    dense = torch.randn(3, 4)
    sx.softmax(dense)
    assert _hot.route("softmax", dense, -1) is not None
    with pytest.raises(TypeError, match="`x` is a sparse torch tensor"):
        sx.softmax(dense.to_sparse())
    jac = torch.func.jacrev(lambda t: sx.softmax(t))(dense)
    torch.testing.assert_close(jac, torch.func.jacrev(lambda t: torch.softmax(t, -1))(dense))
    torch._dynamo.reset()
    compiled = torch.compile(lambda t: sx.softmax(t), fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(dense), torch.softmax(dense, -1))
    tracked = dense.clone().requires_grad_()
    (g,) = torch.autograd.grad(compiled(tracked)[:, 0].sum(), tracked)
    (want,) = torch.autograd.grad(torch.softmax(tracked, -1)[:, 0].sum(), tracked)
    torch.testing.assert_close(g, want)


def test_torch_route_refuses_a_bad_second_tensor() -> None:
    torch = pytest.importorskip("torch")
    y = sx.softmax(torch.randn(3, 4))
    for bad in (torch.ones(3, 5), np.ones((3, 4)), torch.ones(3, 4).to_sparse()):
        got = _message(lambda bad=bad: sx.softmax_vjp(y, bad))  # type: ignore[misc]
        want = _message(lambda bad=bad: sx.softmax_vjp(y, bad, xp=torch))  # type: ignore[misc]
        assert got == want
        assert "`g`" in got[1], got
    # float64 cotangent: promoted, as on the full path
    got = sx.softmax_vjp(y, torch.ones(3, 4, dtype=torch.float64))
    assert got.dtype == torch.float64


# -- jax ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ROUTED)
def test_jax_route_equals_full_path_and_jit_is_unchanged(name: str) -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 7)).astype(np.float32))
    ops = _operands(name, x)
    got = _call(name, ops, -1)
    want = _call(name, ops, -1, xp=jnp)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    def routed(*a: Any) -> Any:
        return _call(name, list(a), -1)

    def full(*a: Any) -> Any:
        return _call(name, list(a), -1, xp=jnp)

    assert str(jax.make_jaxpr(routed)(*ops)) == str(jax.make_jaxpr(full)(*ops))
    assert _hot.route(name, x, -1) is not None
