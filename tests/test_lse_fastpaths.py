"""The torch and JAX fast paths of logsumexp and the cross-entropies against the generic kernel.

Each backend function either returns ``NotImplemented`` (the generic kernel then runs) or agrees
with the generic kernel run on the same arrays; the torch CPU path through the C row kernels is
shown to run (its result is a tensor on a NumPy buffer)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _support import in_session

from softmax_xp import _generic
from softmax_xp._testing import TOLERANCES

INF, NAN = np.inf, np.nan

#: logits with the edge rows: a +inf, a NaN, a -inf among finite ones, all -inf
X = np.array(
    [[0.5, -1.0, 2.0, 0.0], [INF, 1.0, 0.0, 2.0], [NAN, 1.0, 0.0, 2.0], [-INF, 1.0, 0.5, 3.0],
     [-INF, -INF, -INF, -INF], [3.0, 3.0, 3.0, 3.0]]
)  # fmt: skip
T = np.array(
    [[0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 0.5, 0.0], [0.0, 0.5, 0.5, 0.0], [0.0, 0.5, 0.25, 0.25],
     [0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]]
)  # fmt: skip
LABELS = np.array([2, 1, 0, 0, 3, -100])[:, None]  # keepdims; the last one ignored
G = np.array([1.0, -2.0, 0.5, 1.5, 1.0, 2.0])[:, None]
H = np.array([0.5, 0.0, 1.0, -1.0, 0.0, 0.25])[:, None]
OPTIONS = [{"label_smoothing": 0.0}, {"label_smoothing": 0.2}]


def _calls(xp_arrays: Any) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    x, t, lab, g, h, lse = xp_arrays
    out: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("logsumexp", (x,), {}),
        ("logsumexp_vjp", (x, lse, g), {}),
        ("logsumexp_jvp", (x, lse, t), {}),
    ]
    for o in OPTIONS:
        out += [
            ("softmax_cross_entropy", (x, t), o),
            ("softmax_cross_entropy_vjp", (x, t, lse, g, h), o),
            ("softmax_cross_entropy_with_integer_labels", (x, lab), {**o, "ignore_index": -100}),
            (
                "softmax_cross_entropy_with_integer_labels_vjp",
                (x, lab, lse, g, h),
                {**o, "ignore_index": -100},
            ),
        ]
    return out


def _agree(got: Any, want: Any, to_np: Any, dtype: str) -> None:
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    rtol, atol = TOLERANCES[dtype]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(to_np(a), to_np(b), rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.skipif(not in_session("torch"), reason="runs in the torch session")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("axis", [1, 0])
@pytest.mark.parametrize("tracked", [False, True], ids=["plain", "tracked"])
def test_torch_fast_paths_agree_with_the_generic_kernel(
    dtype: str, axis: int, tracked: bool
) -> None:
    """Plain CPU tensors over their rows take the C row kernels; tensors autograd records (and
    strided rows) take the ATen operations every device runs."""
    torch = pytest.importorskip("torch")
    import array_api_compat

    from softmax_xp._backends import _torch

    xp = array_api_compat.array_namespace(torch.empty(0))

    def t(a: np.ndarray, dt: Any = None) -> Any:
        a = a if axis == 1 else np.ascontiguousarray(a.T)
        return torch.from_numpy(a).to(getattr(torch, dtype) if dt is None else dt)

    x = t(X).requires_grad_(tracked)
    lse = _generic.logsumexp(x, axis=(axis,), xp=xp)
    arrays = (x, t(T), t(LABELS, torch.int64), t(G), t(H), lse)
    ran = 0
    for name, args, kw in _calls(arrays):
        fast = getattr(_torch, name)(*args, axis=(axis,), xp=xp, **kw)
        if fast is NotImplemented:
            continue
        ran += 1
        want = getattr(_generic, name)(*args, axis=(axis,), xp=xp, **kw)
        _agree(fast, want, lambda a: a.detach().double().numpy(), dtype)
    assert ran == len(_calls(arrays))  # every one has a torch path for one dense dim


@pytest.mark.skipif(not in_session("torch"), reason="runs in the torch session")
def test_torch_cpu_lse_runs_the_c_row_kernels() -> None:
    torch = pytest.importorskip("torch")
    from softmax_xp._backends import _host, _torch

    if not _host.HAVE_ROWS:
        pytest.skip("built without the C row kernels")
    x = torch.randn(8, 300)
    out = _torch._host_rows("logsumexp", [x], (1,))
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out[:, 0], torch.logsumexp(x, 1))
    labels = torch.randint(0, 300, (8, 1))
    opts = {"label_smoothing": 0.1, "ignore_index": None}
    name = "softmax_cross_entropy_with_integer_labels"
    loss, lse = _torch._host_rows(name, [x, labels], (1,), **opts)
    torch.testing.assert_close(lse[:, 0], torch.logsumexp(x, 1))
    want = torch.nn.functional.cross_entropy(x, labels[:, 0], reduction="none", label_smoothing=0.1)
    torch.testing.assert_close(loss[:, 0], want)
    g, h = torch.ones(8, 1), torch.zeros(8, 1)
    dx = _torch._host_rows(name + "_vjp", [x, labels, lse, g, h], (1,), **opts)
    assert isinstance(dx, torch.Tensor)
    assert dx.shape == x.shape
    # tracked by autograd, it is torch's own (differentiable) kernels instead
    assert _torch._host_rows("logsumexp", [x.requires_grad_()], (1,)) is NotImplemented


@pytest.mark.skipif(not in_session("jax"), reason="runs in the jax session")
@pytest.mark.parametrize("axis", [1, 0])
def test_jax_jitted_kernels_agree_with_the_generic_kernel(axis: int) -> None:
    jax = pytest.importorskip("jax")
    import array_api_compat

    from softmax_xp._backends import _jax

    with jax.enable_x64(True):
        jnp = jax.numpy
        xp = array_api_compat.array_namespace(jnp.empty(0))

        def j(a: np.ndarray, dt: Any = None) -> Any:
            return jnp.asarray(a if axis == 1 else a.T, dtype=dt)

        x = j(X)
        lse = _generic.logsumexp(x, axis=(axis,), xp=xp)
        arrays = (x, j(T), j(LABELS, jnp.int64), j(G), j(H), lse)
        for name, args, kw in _calls(arrays):
            fast = getattr(_jax, name)(*args, axis=(axis,), xp=xp, **kw)
            assert fast is not NotImplemented
            want = getattr(_generic, name)(*args, axis=(axis,), xp=xp, **kw)
            _agree(fast, want, np.asarray, "float64")


@pytest.mark.skipif(not in_session("torch"), reason="runs in the torch session")
@pytest.mark.parametrize("shape", [(4, 8), (3, 1), (2, 3, 5), (0, 4), (300, 2048), (7,)])
def test_torch_logsumexp_route_is_the_full_path(shape: tuple[int, ...]) -> None:
    """The common call's route (int axis, nothing else) gives what the full path gives (asked for
    with ``keepdims=True``, which takes no route), bit for bit, and stays differentiable."""
    torch = pytest.importorskip("torch")
    import softmax_xp as sx

    x = torch.randn(shape, dtype=torch.float64)
    for axis in (-1, 0):
        got = sx.logsumexp(x, axis=axis)
        full = sx.logsumexp(x, axis=axis, keepdims=True).squeeze(axis)
        torch.testing.assert_close(got, full, rtol=0, atol=0)
    xr = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(sx.logsumexp(xr).sum(), xr)
    torch.testing.assert_close(g, torch.softmax(x, -1), rtol=TOLERANCES["float64"][0],
                               atol=TOLERANCES["float64"][1])  # fmt: skip


@pytest.mark.parametrize("shape", [(4, 8), (3, 1), (2, 3, 5), (300, 2048), (7,)])
def test_cross_entropy_route_is_the_full_path(shape: tuple[int, ...]) -> None:
    """The common integer-label call (int axis, no options) routed once per key gives what the
    full path gives (asked for with an ``ignore_index`` no label has), bit for bit, on NumPy and
    torch, and the same gradient under torch autograd; labels the route cannot take (out of
    range, wrong shape) still raise the full path's errors."""
    import softmax_xp as sx

    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    arrays = [(x, rng.integers(0, shape[a], np.delete(shape, a))) for a in (-1, 0)]
    f = sx.softmax_cross_entropy_with_integer_labels
    for axis, (xa, lab) in zip((-1, 0), arrays, strict=True):
        got, full = f(xa, lab, axis=axis), f(xa, lab, axis=axis, ignore_index=-12345)
        np.testing.assert_array_equal(got, full)
        assert got.shape == full.shape
    with pytest.raises(ValueError, match="argument `labels` holds class index"):
        f(x, np.full(np.delete(shape, -1), shape[-1]))
    with pytest.raises(ValueError, match="argument `labels` must have one entry per slice"):
        f(x, np.zeros(x.size + 1, dtype=int))
    if not in_session("torch"):
        return
    torch = pytest.importorskip("torch")
    for axis, (xa, lab) in zip((-1, 0), arrays, strict=True):
        xt, lt = torch.from_numpy(xa), torch.from_numpy(lab)
        torch.testing.assert_close(f(xt, lt, axis=axis), f(xt, lt, axis=axis, ignore_index=-12345),
                                   rtol=0, atol=0)  # fmt: skip
        xr = xt.clone().requires_grad_()
        (a,) = torch.autograd.grad(f(xr, lt, axis=axis).sum(), xr)
        (b,) = torch.autograd.grad(f(xr, lt, axis=axis, ignore_index=-12345).sum(), xr)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
