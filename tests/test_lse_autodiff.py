"""logsumexp and the cross-entropies under torch's and JAX's autodiff.

Each framework differentiates through this package's own derivative kernels: checked here
against that framework's autodiff of its own functions (``torch.logsumexp``,
``F.cross_entropy``, ``jax.nn.logsumexp``, optax), against finite differences
(``gradcheck``/``gradgradcheck``, ``jax.test_util.check_grads`` to order 2), and for what a
backward pass keeps: the inputs and one log-sum-exp per slice, never another array of the
input's shape (``saved_tensors_hooks``; ``jax.ad_checkpoint.saved_residuals``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _support import in_session

import softmax_xp as sx
from softmax_xp._testing import TOLERANCES

LABELS = np.array([0, 5, 2, 1, 3])


def _x(shape: tuple[int, ...] = (5, 6), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=1.5, size=shape)


def _p(shape: tuple[int, ...] = (5, 6), seed: int = 1) -> np.ndarray:
    e = np.exp(np.random.default_rng(seed).normal(size=shape))
    return e / e.sum(axis=-1, keepdims=True)


# == torch ==========================================================================================
torch_only = pytest.mark.skipif(not in_session("torch"), reason="runs in the torch session")


def _torch() -> Any:
    return pytest.importorskip("torch")


def _torch_pairs() -> list[tuple[str, Callable[..., Any], Callable[..., Any]]]:
    """(id, ours, torch's own) as functions of the logits."""
    torch = _torch()
    F = torch.nn.functional
    t = torch.from_numpy(_p())
    lab = torch.from_numpy(LABELS)
    lab_ignored = lab.clone()
    lab_ignored[1] = -100
    return [
        ("logsumexp", lambda x: sx.logsumexp(x), lambda x: torch.logsumexp(x, -1)),
        ("logsumexp-axis0", lambda x: sx.logsumexp(x, axis=0), lambda x: torch.logsumexp(x, 0)),
        (
            "soft",
            lambda x: sx.softmax_cross_entropy(x, t.to(x.dtype), label_smoothing=0.1),
            lambda x: F.cross_entropy(x, t.to(x.dtype), reduction="none", label_smoothing=0.1),
        ),
        (
            "labels",
            lambda x: sx.softmax_cross_entropy_with_integer_labels(
                x, lab_ignored, label_smoothing=0.2, ignore_index=-100
            ),
            lambda x: F.cross_entropy(
                x, lab_ignored, reduction="none", label_smoothing=0.2, ignore_index=-100
            ),
        ),
    ]


def _ids(n: int) -> list[str]:
    return ["logsumexp", "logsumexp-axis0", "soft", "labels"][:n]


@torch_only
@pytest.mark.parametrize("case", range(4), ids=_ids(4))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_gradients_match_torch_autograd(case: int, dtype: str) -> None:
    torch = _torch()
    _, ours, theirs = _torch_pairs()[case]
    rtol, atol = TOLERANCES[dtype]
    x = torch.from_numpy(_x()).to(getattr(torch, dtype)).requires_grad_()
    g = torch.from_numpy(np.random.default_rng(7).normal(size=theirs(x).shape)).to(x.dtype)
    (a,) = torch.autograd.grad(ours(x), x, g)
    (b,) = torch.autograd.grad(theirs(x), x, g)
    torch.testing.assert_close(ours(x), theirs(x), rtol=rtol, atol=atol)
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@torch_only
@pytest.mark.parametrize("case", range(4), ids=_ids(4))
def test_torch_gradcheck_and_gradgradcheck(case: int) -> None:
    torch = _torch()
    _, ours, _ = _torch_pairs()[case]
    x = torch.from_numpy(_x()).requires_grad_()
    assert torch.autograd.gradcheck(ours, (x,))
    assert torch.autograd.gradgradcheck(ours, (x,))
    # forward mode, and forward over reverse
    assert torch.autograd.gradcheck(ours, (x,), check_forward_ad=True, check_backward_ad=False)


@torch_only
def test_torch_targets_and_masks_gradcheck() -> None:
    torch = _torch()
    x = torch.from_numpy(_x()).requires_grad_()
    t = torch.from_numpy(_p()).requires_grad_()
    m = torch.from_numpy(np.random.default_rng(3).random((5, 6)) < 0.7)
    m[:, 0] = True

    def soft(x: Any, t: Any) -> Any:
        return sx.softmax_cross_entropy(x, t, where=m, label_smoothing=0.1)

    assert torch.autograd.gradcheck(soft, (x, t))
    assert torch.autograd.gradgradcheck(soft, (x, t))
    assert torch.autograd.gradcheck(soft, (x, t), check_forward_ad=True, check_backward_ad=False)
    lab = torch.from_numpy(np.array([0, 0, 0, 0, 0]))
    for f in (
        lambda x: sx.softmax_cross_entropy_with_integer_labels(
            x, lab, where=m, label_smoothing=0.3
        ),
        lambda x: sx.logsumexp(x, where=m),
        lambda x: sx.logsumexp(x.reshape(5, 2, 3), axis=(0, 2)),
    ):
        assert torch.autograd.gradcheck(f, (x,))
        assert torch.autograd.gradgradcheck(f, (x,))


@torch_only
@pytest.mark.parametrize("case", range(4), ids=_ids(4))
def test_torch_func_transforms_match_torch(case: int) -> None:
    torch = _torch()
    from torch.func import hessian, jacfwd, jacrev, vmap

    _, ours, theirs = _torch_pairs()[case]
    x = torch.from_numpy(_x())
    rtol, atol = TOLERANCES["float64"]

    def total(f: Callable[..., Any]) -> Callable[..., Any]:
        return lambda x: f(x).sum()

    for transform in (
        jacrev,
        jacfwd,
        hessian,
        lambda f: jacfwd(jacfwd(f)),
        lambda f: jacrev(jacfwd(f)),
    ):
        torch.testing.assert_close(transform(ours)(x), transform(theirs)(x), rtol=rtol, atol=atol)
    torch.testing.assert_close(
        vmap(jacrev(total(ours)))(x[None].expand(3, -1, -1)),
        vmap(jacrev(total(theirs)))(x[None].expand(3, -1, -1)),
        rtol=rtol,
        atol=atol,
    )


def _saved_shapes(fn: Callable[[], Any]) -> list[tuple[int, ...]]:
    torch = _torch()
    shapes: list[tuple[int, ...]] = []

    def pack(t: Any) -> Any:
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return shapes


@torch_only
def test_torch_saves_the_inputs_and_one_lse_per_row() -> None:
    """Beyond the inputs the caller holds anyway (logits, targets or labels), the backward pass
    keeps one number per row; torch's own cross_entropy keeps an N x C log_softmax as well."""
    torch = _torch()
    F = torch.nn.functional
    n, c = 64, 1000
    x = torch.randn(n, c, requires_grad=True)
    t = torch.softmax(torch.randn(n, c), -1)
    lab = torch.randint(0, c, (n,))
    for fn in (
        lambda: sx.softmax_cross_entropy_with_integer_labels(x, lab),
        lambda: sx.softmax_cross_entropy(x, t),
        lambda: sx.logsumexp(x),
    ):
        shapes = _saved_shapes(fn)
        big = [s for s in shapes if int(np.prod(s)) >= n * c]
        assert len(big) <= 2, shapes  # x (and the targets): the inputs themselves
        assert (n, 1) in shapes, shapes  # the lse
        assert sum(int(np.prod(s)) for s in shapes if int(np.prod(s)) < n * c) <= 2 * n
    theirs = _saved_shapes(lambda: F.cross_entropy(x, lab, reduction="none"))
    assert (n, c) in theirs  # its log_softmax output: the array ours does not keep


# Not graph breaks (see tests/test_autodiff_torch.py): Dynamo's warnings on array-api-compat's
# lru_cache-wrapped helpers and on instantiating the autograd.Function it traces.
@torch_only
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`:UserWarning")
@pytest.mark.filterwarnings(
    "ignore:<class 'torch.autograd.function.Function'> should not be:DeprecationWarning"
)
def test_torch_compile_fullgraph_matches_eager() -> None:
    torch = _torch()
    torch._dynamo.reset()
    x = torch.from_numpy(_x()).requires_grad_()
    lab = torch.from_numpy(LABELS)

    def step(x: Any) -> Any:
        return sx.softmax_cross_entropy_with_integer_labels(x, lab, label_smoothing=0.1).mean()

    compiled = torch.compile(step, fullgraph=True, backend="eager")
    (a,) = torch.autograd.grad(compiled(x), x)
    (b,) = torch.autograd.grad(step(x), x)
    torch.testing.assert_close(a, b)


# == JAX ============================================================================================
jax_only = pytest.mark.skipif(not in_session("jax"), reason="runs in the jax session")


def _jax() -> Any:
    return pytest.importorskip("jax")


def _jax_pairs() -> list[tuple[Callable[..., Any], Callable[..., Any]]]:
    jax = _jax()
    jnp = jax.numpy
    optax = pytest.importorskip("optax")
    t = jnp.asarray(_p())
    lab = jnp.asarray(LABELS)
    return [
        (lambda x: sx.logsumexp(jnp.asarray(x)), lambda x: jax.nn.logsumexp(x, -1)),
        (lambda x: sx.logsumexp(jnp.asarray(x), axis=0), lambda x: jax.nn.logsumexp(x, 0)),
        (
            lambda x: sx.softmax_cross_entropy(jnp.asarray(x), t),
            lambda x: optax.softmax_cross_entropy(x, t),
        ),
        (
            lambda x: sx.softmax_cross_entropy_with_integer_labels(jnp.asarray(x), lab),
            lambda x: optax.softmax_cross_entropy_with_integer_labels(x, lab),
        ),
    ]


@jax_only
@pytest.mark.parametrize("case", range(4), ids=_ids(4))
def test_jax_gradients_match_jax_and_optax(case: int) -> None:
    jax = _jax()
    with jax.enable_x64(True):
        ours, theirs = _jax_pairs()[case]
        x = jax.numpy.asarray(_x())
        rtol, atol = TOLERANCES["float64"]
        batched = jax.numpy.stack([x, 2.0 * x])
        for transform, arg in (
            (lambda f: jax.grad(lambda x: f(x).sum()), x),
            (jax.jacfwd, x),
            (jax.jacrev, x),
            (jax.hessian, x),
            (lambda f: jax.jit(jax.vmap(jax.grad(lambda x: f(x).sum()))), batched),
        ):
            got, want = transform(ours)(arg), transform(theirs)(arg)
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=rtol, atol=atol)


@jax_only
@pytest.mark.parametrize("case", range(4), ids=_ids(4))
def test_jax_check_grads_to_order_two(case: int) -> None:
    jax = _jax()
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        ours, _ = _jax_pairs()[case]
        check_grads(ours, (jax.numpy.asarray(_x()),), order=2, modes=["fwd", "rev"])


@jax_only
def test_jax_targets_and_masks_check_grads() -> None:
    jax = _jax()
    jnp = jax.numpy
    from jax.test_util import check_grads

    with jax.enable_x64(True):
        m = jnp.asarray(np.random.default_rng(3).random((5, 6)) < 0.7).at[:, 0].set(True)
        lab = jnp.zeros(5, dtype=jnp.int64)

        def soft(x: Any, t: Any) -> Any:
            return sx.softmax_cross_entropy(jnp.asarray(x), jnp.asarray(t), where=m,
                                            label_smoothing=0.1)  # fmt: skip

        check_grads(soft, (jnp.asarray(_x()), jnp.asarray(_p())), order=2, modes=["fwd", "rev"])
        for f in (
            lambda x: sx.softmax_cross_entropy_with_integer_labels(
                jnp.asarray(x), lab, where=m, label_smoothing=0.3
            ),
            lambda x: sx.logsumexp(jnp.asarray(x), where=m),
            lambda x: sx.logsumexp(jnp.asarray(x).reshape(5, 2, 3), axis=(0, 2)),
        ):
            check_grads(f, (jnp.asarray(_x()),), order=2, modes=["fwd", "rev"])


@jax_only
def test_jax_residuals_are_the_inputs_and_one_lse_per_row() -> None:
    jax = _jax()
    jnp = jax.numpy
    try:
        from jax.ad_checkpoint import saved_residuals  # type: ignore[attr-defined]
    except ImportError:  # jax < 0.11 keeps it private
        from jax._src.ad_checkpoint import saved_residuals

    n, c = 64, 1000
    x = jnp.asarray(np.random.default_rng(0).normal(size=(n, c)), dtype=jnp.float32)
    t = jax.nn.softmax(x[::-1])
    lab = jnp.asarray(np.random.default_rng(1).integers(0, c, n))
    for f, args in (
        (lambda x: sx.softmax_cross_entropy_with_integer_labels(x, lab).sum(), (x,)),
        (lambda x, t: sx.softmax_cross_entropy(x, t).sum(), (x, t)),
        (lambda x: sx.logsumexp(x).sum(), (x,)),
    ):
        res = saved_residuals(f, *args)
        big = [(r[0].shape, r[1]) for r in res if int(np.prod(r[0].shape)) >= n * c]
        assert all("argument" in why for _, why in big), res  # only the inputs themselves
        small = [r for r in res if int(np.prod(r[0].shape)) < n * c]
        assert sum(int(np.prod(r[0].shape)) for r in small) <= 2 * n, res
    # optax's integer-label loss keeps an N x C array beyond its input
    optax = pytest.importorskip("optax")
    res = saved_residuals(
        lambda x: optax.softmax_cross_entropy_with_integer_labels(x, lab).sum(), x
    )
    assert any(int(np.prod(r[0].shape)) >= n * c and "argument" not in r[1] for r in res), res
