"""softmax / log_softmax on torch tensors differentiate through our own kernels (layer 4).

Every derivative is compared with torch's own autodiff of ``torch.softmax`` / ``torch.log_softmax``
(with ``masked_fill`` for masks; a permute-and-flatten for tuple axes), or checked by
``torch.autograd.gradcheck`` / ``gradgradcheck`` (float64 finite differences).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _support import TOLERANCES  # noqa: E402
from torch.func import grad, jacfwd, jacrev, jvp, vjp, vmap  # noqa: E402

import softmax_xp as sx  # noqa: E402

FUNCS = {"softmax": sx.softmax, "log_softmax": sx.log_softmax}
AXES = [-1, 0, (0, 2)]
SHAPE = (3, 4, 5)


def _x(dtype: Any = None, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> Any:
    g = np.random.default_rng(seed)
    return torch.from_numpy(g.standard_normal(shape) * 2).to(dtype or torch.float64)


def _mask(shape: tuple[int, ...] = SHAPE, seed: int = 1) -> Any:
    m = np.random.default_rng(seed).random(shape) > 0.35
    m[..., 0] = True  # every slice keeps an entry, so the reference has no all -inf slice
    m[0, ...] = True
    return torch.from_numpy(m)


def _dims(axis: int | tuple[int, ...], ndim: int) -> list[int]:
    return sorted(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,)))


def reference(x: Any, axis: int | tuple[int, ...], where: Any, log: bool) -> Any:
    """torch.softmax / torch.log_softmax over ``axis`` with the semantics of the where-mask."""
    dims = _dims(axis, x.ndim)
    batch = [d for d in range(x.ndim) if d not in dims]
    perm = batch + dims
    inv = [perm.index(d) for d in range(x.ndim)]
    xt = x.permute(perm)
    flat = xt.reshape(*xt.shape[: len(batch)], -1)
    if where is not None:
        w = where.expand(x.shape).permute(perm).reshape(flat.shape)
        flat = flat.masked_fill(~w, -math.inf)
    out = torch.log_softmax(flat, -1) if log else torch.softmax(flat, -1)
    if where is not None:
        out = out.masked_fill(~w, -math.inf if log else 0.0)
    return out.reshape(xt.shape).permute(inv)


def _ours(name: str, axis: Any, where: Any) -> Callable[[Any], Any]:
    def f(x: Any) -> Any:
        out = FUNCS[name](x, axis=axis, where=where)
        return out if where is None else torch.where(where, out, torch.zeros_like(out))

    return f


def _ref(name: str, axis: Any, where: Any) -> Callable[[Any], Any]:
    def f(x: Any) -> Any:
        out = reference(x, axis, where, log=name == "log_softmax")
        return out if where is None else torch.where(where, out, torch.zeros_like(out))

    return f


def _close(actual: Any, expected: Any, dtype: str = "float64") -> None:
    rtol, atol = TOLERANCES[dtype]
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(
        actual.detach().double().numpy(), expected.detach().double().numpy(), rtol=rtol, atol=atol
    )


# -- the Function is ours, it saves only the output -----------------------------------------------
@pytest.mark.parametrize("name", FUNCS)
def test_grad_fn_is_our_function(name: str) -> None:
    x = _x().requires_grad_()
    y = FUNCS[name](x)
    assert "Softmax" in type(y.grad_fn).__name__
    assert type(y.grad_fn).__module__.startswith("torch.autograd")
    assert y.grad_fn.next_functions[0][0].variable is x  # straight from x: no cast, no copy


@pytest.mark.parametrize("name", FUNCS)
def test_plain_tensor_gets_no_graph(name: str) -> None:
    x = _x()
    y = FUNCS[name](x)
    assert y.grad_fn is None
    assert not y.requires_grad
    with torch.no_grad():
        assert FUNCS[name](x.requires_grad_()).grad_fn is None


def _saved(fn: Callable[[], Any]) -> tuple[Any, list[Any]]:
    saved: list[Any] = []

    def pack(t: Any) -> Any:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


@pytest.mark.parametrize(
    ("name", "native"), [("softmax", torch.softmax), ("log_softmax", torch.log_softmax)]
)
def test_saves_only_the_output(name: str, native: Any) -> None:
    x = _x(shape=(16, 33)).requires_grad_()
    y, saved = _saved(lambda: FUNCS[name](x))
    assert len(saved) == 1
    assert saved[0].data_ptr() == y.data_ptr()
    assert saved[0].shape == y.shape
    _, saved_native = _saved(lambda: native(x, -1))
    # torch.softmax and torch.log_softmax save their result too (one tensor each, torch 2.13)
    assert len(saved) <= len(saved_native)


def test_saved_tensors_with_mask() -> None:
    x, m = _x().requires_grad_(), _mask()
    y, saved = _saved(lambda: sx.softmax(x, where=m))
    assert [t.data_ptr() for t in saved] == [y.data_ptr()]  # y is 0 where masked: no mask needed
    # log_softmax needs the mask (an unmasked -inf logit also gives -inf); it is the caller's mask
    y, saved = _saved(lambda: sx.log_softmax(x, where=m))
    assert [t.data_ptr() for t in saved] == [y.data_ptr(), m.data_ptr()]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_saves_a_float32_output(dtype: str) -> None:
    x = _x(getattr(torch, dtype)).requires_grad_()
    y, saved = _saved(lambda: sx.softmax(x))
    assert y.dtype == x.dtype
    assert len(saved) == 1
    assert saved[0].dtype == torch.float32
    assert saved[0].shape == x.shape


# -- first and second order, against torch's autodiff --------------------------------------------
def _gradcheck_cases() -> list[Any]:
    return [
        pytest.param(name, axis, masked)
        for name in FUNCS
        for axis in AXES
        for masked in (False, True)
    ]


@pytest.mark.parametrize(("name", "axis", "masked"), _gradcheck_cases(), ids=str)
def test_gradcheck_gradgradcheck(name: str, axis: Any, masked: bool) -> None:
    x = _x(shape=(2, 3, 4)).requires_grad_()
    f = _ours(name, axis, _mask((2, 3, 4)) if masked else None)
    assert torch.autograd.gradcheck(
        f, (x,), check_forward_ad=True, check_batched_grad=True, check_batched_forward_grad=True
    )
    assert torch.autograd.gradgradcheck(
        f, (x,), check_fwd_over_rev=True, check_rev_over_rev=True, check_batched_grad=True
    )


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("name", FUNCS)
def test_gradcheck_tuple_axis_unbatched(name: str, masked: bool) -> None:
    """The tuple-axis gradcheck without the legacy-vmap batched checks (see above); torch.func.vmap
    over grad, jvp and jacrev is tested for tuple axes in test_torch_func_transforms."""
    x = _x(shape=(2, 3, 4)).requires_grad_()
    f = _ours(name, (0, 2), _mask((2, 3, 4)) if masked else None)
    assert torch.autograd.gradcheck(f, (x,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(f, (x,), check_fwd_over_rev=True, check_rev_over_rev=True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", FUNCS)
def test_backward_matches_torch(name: str, axis: Any, masked: bool, dtype: str) -> None:
    where = _mask() if masked else None
    x = _x(getattr(torch, dtype))
    c = _x(getattr(torch, dtype), seed=5)
    grads = []
    for f in (_ours(name, axis, where), _ref(name, axis, where)):
        xg = x.clone().requires_grad_()
        (g,) = torch.autograd.grad((f(xg) * c).sum(), xg, create_graph=True)
        (gg,) = torch.autograd.grad((g * c).sum(), xg)  # second order: d/dx <c, H c>
        grads.append((g, gg))
    _close(grads[0][0], grads[1][0], dtype)
    _close(grads[0][1], grads[1][1], dtype)


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("name", FUNCS)
def test_torch_func_transforms(name: str, masked: bool) -> None:
    where = _mask() if masked else None
    ours, ref = _ours(name, (0, 2), where), _ref(name, (0, 2), where)
    x, t = _x(), _x(seed=7)
    _close(jacrev(ours)(x), jacrev(ref)(x))
    _close(jacfwd(ours)(x), jacrev(ref)(x))
    _close(jvp(ours, (x,), (t,))[1], jvp(ref, (x,), (t,))[1])
    _close(vjp(ours, x)[1](t)[0], vjp(ref, x)[1](t)[0])
    _close(grad(lambda x: (ours(x) * t).sum())(x), grad(lambda x: (ref(x) * t).sum())(x))
    # vmap over an extra leading axis, of the function and of its gradient
    xb = torch.stack([x, 2 * x, x - 1])
    _close(vmap(ours)(xb), torch.stack([ref(xi) for xi in xb]))
    g = vmap(grad(lambda x: (ours(x) * t).sum()))(xb)
    _close(g, torch.stack([grad(lambda x: (ref(x) * t).sum())(xi) for xi in xb]))
    # batched tangents: vmap over jvp
    tan = vmap(lambda t: jvp(ours, (x,), (t,))[1])(xb)
    _close(tan, torch.stack([jvp(ref, (x,), (ti,))[1] for ti in xb]))


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("name", FUNCS)
def test_second_order_all_mode_pairs(name: str, masked: bool) -> None:
    """All four second-order compositions; forward-over-forward is pytorch/pytorch#197867."""
    where = _mask((5,)) if masked else None
    ours, ref = _ours(name, -1, where), _ref(name, -1, where)
    x = _x(shape=(5,))
    expected = jacrev(jacrev(ref))(x)
    for outer in (jacrev, jacfwd):
        for inner in (jacrev, jacfwd):
            _close(outer(inner(ours))(x), expected)


@pytest.mark.parametrize("name", FUNCS)
def test_forward_ad_dual_tensors(name: str) -> None:
    import torch.autograd.forward_ad as fwad

    x, t = _x(), _x(seed=3)
    with fwad.dual_level():
        y = FUNCS[name](fwad.make_dual(x, t), axis=(0, 2))
        tangent = fwad.unpack_dual(y).tangent
    assert tangent is not None
    _close(tangent, jvp(_ref(name, (0, 2), None), (x,), (t,))[1])


# torch.autograd.functional's vectorized forward-mode path scripts a helper with torch.jit
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(
    ("name", "axis"),
    [
        *[(n, a) for n in FUNCS for a in (-1, 0)],
        pytest.param("softmax", (0, 2)),
        ("log_softmax", (0, 2)),
    ],
    ids=str,
)
def test_autograd_functional_hessian_forward_over_reverse(name: str, axis: Any) -> None:
    """Plain forward AD over reverse, batched: a fast path's permuted (view) output must take
    a tangent of another layout."""
    x = _x(shape=(2, 3, 4))

    def scalar(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda x: f(x)[1, 2, 3]

    h = torch.autograd.functional.hessian(
        scalar(_ours(name, axis, None)), x, vectorize=True, outer_jacobian_strategy="forward-mode"
    )
    _close(h, jacrev(jacrev(scalar(_ref(name, axis, None))))(x))


# -- where-masks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FUNCS)
def test_masked_entries_get_exactly_zero_gradient(name: str) -> None:
    where = _mask()
    x = _x().requires_grad_()
    out = FUNCS[name](x, where=where)
    (g,) = torch.autograd.grad(torch.where(where, out, 0.0).sum() + (out[where] ** 2).sum(), x)
    assert torch.all(g[~where] == 0)
    t = _x(seed=9)
    _, tan = jvp(lambda x: FUNCS[name](x, where=where), (x.detach(),), (t,))
    assert torch.all(tan[~where] == 0)


@pytest.mark.parametrize("name", FUNCS)
def test_huge_masked_logit_no_nan(name: str) -> None:
    x = torch.tensor([36.0, 10000.0], dtype=torch.float64)
    where = x < 1000

    def f(x: Any) -> Any:
        return FUNCS[name](x, where=where)

    xg = x.clone().requires_grad_()
    y = f(xg)
    expected = [0.0, -math.inf] if name == "log_softmax" else [1.0, 0.0]
    assert y.detach().tolist() == expected
    (g,) = torch.autograd.grad(y[0], xg, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), xg, allow_unused=True, materialize_grads=True)
    for d in (
        g,
        gg,
        jacrev(f)(x),
        jacfwd(f)(x),
        jacrev(jacrev(f))(x),
        jacfwd(jacrev(f))(x),
        jacfwd(jacfwd(f))(x),
    ):
        assert not torch.isnan(d).any()
        assert torch.all(d[..., 1] == 0)  # the masked-out entry gets no derivative


# -- half precision -------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", FUNCS)
def test_half_precision_gradients(name: str, dtype: str) -> None:
    """Gradients accumulate in float32 (the cast around the Function) and stay within the dtype's
    tolerance of the float64 gradient taken at the same (rounded) values."""
    tdt = getattr(torch, dtype)
    x = _x(tdt, shape=(8, 300)).requires_grad_()
    c = _x(tdt, shape=(8, 300), seed=4)
    (g,) = torch.autograd.grad((FUNCS[name](x) * c).sum(), x)
    assert g.dtype == tdt
    x64 = x.detach().double().requires_grad_()
    ref = torch.log_softmax if name == "log_softmax" else torch.softmax
    (g64,) = torch.autograd.grad((ref(x64, -1) * c.double()).sum(), x64)
    rtol, atol = TOLERANCES[dtype]
    np.testing.assert_allclose(g.double().numpy(), g64.numpy(), rtol=rtol, atol=atol)


# -- a small model --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", FUNCS)
def test_small_model_same_gradients(name: str, dtype: str) -> None:
    tdt = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(32, 10, generator=gen, dtype=tdt)
    target = torch.randint(0, 6, (32,), generator=gen)
    native = torch.log_softmax if name == "log_softmax" else torch.softmax
    grads = []
    for act in (lambda z: FUNCS[name](z, axis=-1), lambda z: native(z, -1)):
        torch.manual_seed(1)
        model = torch.nn.Linear(10, 6, dtype=tdt)
        out = act(model(inputs))
        logp = out if name == "log_softmax" else torch.log(out)
        loss = torch.nn.functional.nll_loss(logp, target)
        loss.backward()
        grads.append((loss.detach(), model.weight.grad, model.bias.grad))
    for ours, theirs in zip(grads[0], grads[1], strict=True):
        _close(ours, theirs, dtype)


# -- torch.compile --------------------------------------------------------------------------------
# Two warnings that are not graph breaks: array-api-compat's namespace helpers call
# functools.lru_cache-wrapped functions, which Dynamo traces through with a UserWarning; and
# Dynamo (torch 2.13) instantiates every autograd.Function it traces, with a DeprecationWarning.
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")
@pytest.mark.filterwarnings(
    "ignore:<class 'torch.autograd.function.Function'> should not be:DeprecationWarning"
)
@pytest.mark.parametrize("name", FUNCS)
def test_compile_fullgraph(name: str) -> None:
    """No graph break, and the compiled gradient is the eager one: last axis, tuple axis with a
    mask, float16 input (the casts around the Function)."""
    torch._dynamo.reset()
    where = _mask()
    c = _x(torch.float32, seed=2)

    def loss(x: Any, where: Any) -> Any:
        a = FUNCS[name](x, where=None)
        b = FUNCS[name](x, axis=(0, 2), where=where)
        h = FUNCS[name](x.half())
        return (a * c).sum() + torch.where(where, b, 0.0).sum() + (h.float() * c).sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    x = _x(torch.float32).requires_grad_()
    (g,) = torch.autograd.grad(compiled(x, where), x)
    (g_eager,) = torch.autograd.grad(loss(x, where), x)
    _close(g, g_eager, "float32")
