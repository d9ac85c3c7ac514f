"""softmax / log_softmax on JAX arrays differentiate through our own kernels (layer 4).

Every derivative is compared with JAX's own autodiff of ``jax.nn.softmax`` /
``jax.nn.log_softmax`` (same ``axis`` and ``where`` semantics), or checked by
``jax.test_util.check_grads`` (float64 finite differences, to order 2). float64 runs inside a
scoped ``jax.enable_x64(True)``; the global flag is never changed.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402
from _support import TOLERANCES  # noqa: E402
from jax.ad_checkpoint import print_saved_residuals  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import softmax_xp as sx  # noqa: E402

FUNCS = {"softmax": sx.softmax, "log_softmax": sx.log_softmax}
NATIVE = {"softmax": jax.nn.softmax, "log_softmax": jax.nn.log_softmax}
AXES = [-1, 0, (0, 2)]
SHAPE = (3, 4, 5)


@pytest.fixture
def x64() -> Iterator[None]:
    """float64 for this test only; the global flag is restored on exit."""
    before = jax.config.jax_enable_x64
    with jax.enable_x64(True):
        yield
    assert jax.config.jax_enable_x64 == before


def _x(dtype: Any = "float64", shape: tuple[int, ...] = SHAPE, seed: int = 0) -> Any:
    g = np.random.default_rng(seed)
    return jnp.asarray(g.standard_normal(shape) * 2, dtype=dtype)


def _mask(shape: tuple[int, ...] = SHAPE, seed: int = 1) -> Any:
    m = np.random.default_rng(seed).random(shape) > 0.35
    m[..., 0] = True
    m[0, ...] = True
    return jnp.asarray(m)


def _wrap(f: Callable[..., Any], axis: Any, where: Any) -> Callable[[Any], Any]:
    """``f`` over ``axis`` with ``where``; masked-out log_softmax entries (-inf) set to 0."""

    def g(x: Any) -> Any:
        out = f(jnp.asarray(x), axis=axis, where=where)
        return out if where is None else jnp.where(where, out, 0.0)

    return g


def saved_residuals(f: Callable[..., Any], *args: Any) -> list[str]:
    """The arrays a backward pass of ``f`` keeps, as ``dtype[shape]`` (e.g. ``f32[16,33]``).

    ``jax.ad_checkpoint.print_saved_residuals`` is the public form of this listing.
    """
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_saved_residuals(f, *args)
    return [line.split(" ", 1)[0] for line in buf.getvalue().splitlines() if line.strip()]


def _close(actual: Any, expected: Any, dtype: str = "float64") -> None:
    rtol, atol = TOLERANCES[dtype]
    assert actual.dtype == expected.dtype
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=rtol,
        atol=atol,
    )


# -- our rule, one residual -----------------------------------------------------------------------
@pytest.mark.parametrize("name", FUNCS)
def test_is_custom_jvp(name: str) -> None:
    jaxpr = jax.make_jaxpr(lambda x: FUNCS[name](x))(_x("float32"))
    assert "custom_jvp_call" in str(jaxpr)


@pytest.mark.parametrize("name", FUNCS)
def test_one_saved_residual_the_output(name: str) -> None:
    x = _x("float32", shape=(16, 33))
    ours = saved_residuals(lambda x: FUNCS[name](x), x)
    assert ours == ["f32[16,33]"]
    # it is the output: the backward pass computed from it alone is the vjp of that output
    # (JAX transposes our linear jvp rule, so the round-off differs from our vjp kernel's)
    y, pullback = jax.vjp(lambda x: FUNCS[name](x), x)
    g = _x("float32", shape=(16, 33), seed=3)
    kernel = sx.softmax_vjp if name == "softmax" else sx.log_softmax_vjp
    _close(pullback(g)[0], kernel(y, g), "float32")
    native = saved_residuals(lambda x: NATIVE[name](x), x)
    assert len(ours) <= len(native)  # jax 0.10.2: softmax 3, log_softmax 2


def test_residuals_with_mask() -> None:
    x, m = _x("float32"), _mask()
    # y is 0 where masked: softmax keeps y only
    assert saved_residuals(lambda x: sx.softmax(x, where=m), x) == ["f32[3,4,5]"]
    # log_softmax also keeps the mask (an unmasked -inf logit gives -inf too, with a gradient)
    res = saved_residuals(lambda x, m: sx.log_softmax(x, where=m), x, m)
    assert sorted(res) == ["bool[3,4,5]", "f32[3,4,5]"]


# -- first and second order, against JAX's autodiff -----------------------------------------------
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", FUNCS)
def test_check_grads_order_2(name: str, axis: Any, masked: bool) -> None:
    f = _wrap(FUNCS[name], axis, _mask() if masked else None)
    check_grads(f, (_x(),), order=2, modes=("fwd", "rev"))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", FUNCS)
def test_transforms_match_jax(name: str, axis: Any, masked: bool) -> None:
    """float64; float32 is covered by test_small_model_same_gradients."""
    dtype = "float64"
    where = _mask() if masked else None
    ours, ref = _wrap(FUNCS[name], axis, where), _wrap(NATIVE[name], axis, where)
    x, t = _x(dtype), _x(dtype, seed=7)
    _close(jax.jacrev(ours)(x), jax.jacrev(ref)(x), dtype)
    _close(jax.jacfwd(ours)(x), jax.jacrev(ref)(x), dtype)
    _close(jax.jvp(ours, (x,), (t,))[1], jax.jvp(ref, (x,), (t,))[1], dtype)
    _close(jax.vjp(ours, x)[1](t)[0], jax.vjp(ref, x)[1](t)[0], dtype)

    def loss(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda x: jnp.sum(f(x) * t)

    _close(jax.jit(jax.grad(loss(ours)))(x), jax.grad(loss(ref))(x), dtype)
    xb = jnp.stack([x, 2 * x, x - 1])
    _close(jax.vmap(jax.grad(loss(ours)))(xb), jax.vmap(jax.grad(loss(ref)))(xb), dtype)
    _close(jax.jit(jax.vmap(ours))(xb), jax.vmap(ref)(xb), dtype)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("name", FUNCS)
def test_second_order_all_mode_pairs(name: str, masked: bool) -> None:
    where = _mask((6,)) if masked else None
    ours, ref = _wrap(FUNCS[name], -1, where), _wrap(NATIVE[name], -1, where)
    x = _x(shape=(6,))
    expected = jax.jacrev(jax.jacrev(ref))(x)
    for outer in (jax.jacrev, jax.jacfwd):
        for inner in (jax.jacrev, jax.jacfwd):
            _close(jax.jit(outer(inner(ours)))(x), expected)


# -- where-masks ----------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", FUNCS)
def test_masked_entries_get_exactly_zero_derivative(name: str) -> None:
    where = _mask()
    x, t = _x(), _x(seed=9)
    f = _wrap(FUNCS[name], -1, where)
    g = jax.grad(lambda x: jnp.sum(f(x) * t) + jnp.sum(f(x) ** 2))(x)
    assert bool(jnp.all(g[~where] == 0))
    _, tan = jax.jvp(lambda x: FUNCS[name](x, where=where), (x,), (t,))
    assert bool(jnp.all(tan[~where] == 0))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("name", FUNCS)
def test_huge_masked_logit_no_nan(name: str) -> None:
    x = jnp.asarray([36.0, 10000.0])
    where = x < 1000

    def f(x: Any) -> Any:
        return FUNCS[name](x, where=where)

    expected = [0.0, -math.inf] if name == "log_softmax" else [1.0, 0.0]
    assert np.asarray(f(x)).tolist() == expected
    assert np.asarray(jax.jit(f)(x)).tolist() == expected
    derivs = [jax.grad(lambda x: f(x)[0])(x), jax.jacrev(f)(x), jax.jacfwd(f)(x)]
    derivs += [T1(T2(f))(x) for T1 in (jax.jacrev, jax.jacfwd) for T2 in (jax.jacrev, jax.jacfwd)]
    for d in derivs:
        assert not bool(jnp.any(jnp.isnan(d)))
        assert bool(jnp.all(d[..., 1] == 0))  # the masked-out entry gets no derivative


# -- half precision -------------------------------------------------------------------------------
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", FUNCS)
def test_half_precision_gradients(name: str, dtype: str) -> None:
    """Computed in float32 between the casts; within the dtype's tolerance of the float64
    gradient taken at the same (rounded) values."""
    x, c = _x(dtype, shape=(8, 300)), _x(dtype, shape=(8, 300), seed=4)
    g = jax.grad(lambda x: jnp.sum(FUNCS[name](x) * c))(x)
    assert g.dtype == x.dtype
    # the one residual is the float32 output
    assert saved_residuals(lambda x: FUNCS[name](x), x) == ["f32[8,300]"]
    x64, c64 = x.astype("float64"), c.astype("float64")
    g64 = jax.grad(lambda x: jnp.sum(NATIVE[name](x) * c64))(x64)
    rtol, atol = TOLERANCES[dtype]
    np.testing.assert_allclose(
        np.asarray(g, dtype=np.float64), np.asarray(g64), rtol=rtol, atol=atol
    )


# -- a small model --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", FUNCS)
def test_small_model_same_gradients(x64: None, name: str, dtype: str) -> None:
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.standard_normal((32, 10)), dtype=dtype)
    labels = jax.nn.one_hot(jnp.asarray(rng.integers(0, 6, 32)), 6, dtype=dtype)
    params = {
        "w": jnp.asarray(rng.standard_normal((10, 6)) / 3, dtype=dtype),
        "b": jnp.asarray(rng.standard_normal(6) / 3, dtype=dtype),
    }

    def make_loss(act: Callable[..., Any]) -> Callable[[Any], Any]:
        def loss(p: Any) -> Any:
            out = act(inputs @ p["w"] + p["b"], axis=-1)
            logp = out if name == "log_softmax" else jnp.log(out)
            return -jnp.mean(jnp.sum(labels * logp, axis=-1))

        return loss

    ours = jax.jit(jax.value_and_grad(make_loss(FUNCS[name])))(params)
    ref = jax.value_and_grad(make_loss(NATIVE[name]))(params)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        _close(a, b, dtype)
