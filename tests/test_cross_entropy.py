"""The softmax cross-entropies on every backend, against torch's and optax's losses (float64).

References: ``torch.nn.functional.cross_entropy(reduction='none')`` (probability targets and
class indices, ``label_smoothing``, ``ignore_index``) with the class axis moved to dim 1 (tuple
axes flattened), and optax's ``softmax_cross_entropy`` / ``..._with_integer_labels`` for masks
(``where``), which torch lacks. Every nox session installs both frameworks. Gradients against
each framework's autodiff are in tests/test_lse_autodiff.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _support import Backend, Lib, assert_close

import softmax_xp as sx

torch = pytest.importorskip("torch")
F = torch.nn.functional

Axis = int | tuple[int, ...]

# (shape, axis): the last axis, a leading one, tuple axes (adjacent and not), a 1-d input
CASES: list[tuple[tuple[int, ...], Axis]] = [
    ((6, 5), -1),
    ((5, 6), 0),
    ((3, 4, 5), (1, 2)),
    ((3, 4, 5), (0, 2)),
    ((7,), -1),
]


def _rows(a: np.ndarray, axis: Axis) -> np.ndarray:
    """The class axes last and flattened (C order): ``(N, C)`` with N the batch size."""
    axes = tuple(np.atleast_1d(axis) % a.ndim)
    batch = tuple(i for i in range(a.ndim) if i not in axes)
    moved = np.transpose(a, batch + tuple(sorted(axes)))
    return moved.reshape(-1, int(np.prod([a.shape[i] for i in axes])))


def _batch(shape: tuple[int, ...], axis: Axis) -> tuple[int, ...]:
    axes = set(np.atleast_1d(axis) % len(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _torch_loss(x: np.ndarray, target: np.ndarray, axis: Axis, **kw: Any) -> np.ndarray:
    """torch's per-slice loss, float64, on the flattened rows."""
    rows = torch.from_numpy(_rows(x, axis))
    t = torch.from_numpy(_rows(target, axis) if target.dtype.kind == "f" else target.reshape(-1))
    out = F.cross_entropy(rows, t, reduction="none", **kw).numpy()
    return out.reshape(_batch(x.shape, axis))


def _data(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=2.0, size=shape)


def _targets(shape: tuple[int, ...], axis: Axis, seed: int = 1) -> np.ndarray:
    rows = _rows(np.random.default_rng(seed).random(shape), axis)
    rows = rows / rows.sum(axis=1, keepdims=True)
    # back to the input's layout: invert _rows
    axes = tuple(sorted(np.atleast_1d(axis) % len(shape)))
    batch = tuple(i for i in range(len(shape)) if i not in axes)
    moved = rows.reshape(tuple(shape[i] for i in batch + axes))
    return np.transpose(moved, np.argsort(batch + axes))


def _labels(shape: tuple[int, ...], axis: Axis, seed: int = 2) -> np.ndarray:
    c = int(np.prod([shape[i] for i in np.atleast_1d(axis) % len(shape)]))
    return np.random.default_rng(seed).integers(0, c, size=_batch(shape, axis))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_probability_targets_match_torch(
    lib: Lib, shape: tuple[int, ...], axis: Axis, dtype: str, eps: float
) -> None:
    x, t = _data(shape), _targets(shape, axis)
    want = _torch_loss(x, t, axis, label_smoothing=eps)
    got = lib.call(sx.softmax_cross_entropy, lib.asarray(x, dtype), lib.asarray(t, dtype),
                   axis=axis, label_smoothing=eps)  # fmt: skip
    assert_close(lib, got, want, dtype=dtype, shape=_batch(shape, axis))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_integer_labels_match_torch(
    lib: Lib, shape: tuple[int, ...], axis: Axis, dtype: str, eps: float
) -> None:
    x, lab = _data(shape), _labels(shape, axis)
    want = _torch_loss(x, lab, axis, label_smoothing=eps)
    got = lib.call(sx.softmax_cross_entropy_with_integer_labels, lib.asarray(x, dtype),
                   lib.asarray(lab, "int64"), axis=axis, label_smoothing=eps)  # fmt: skip
    assert_close(lib, got, want, dtype=dtype, shape=_batch(shape, axis))


def test_ignore_index_matches_torch(lib: Lib) -> None:
    x, lab = _data((8, 5)), _labels((8, 5), -1)
    lab[[1, 4]] = -100
    for eps in (0.0, 0.2):
        want = _torch_loss(x, lab, -1, label_smoothing=eps, ignore_index=-100)
        got = lib.call(sx.softmax_cross_entropy_with_integer_labels, lib.asarray(x),
                       lib.asarray(lab, "int64"), ignore_index=-100, label_smoothing=eps)  # fmt: skip
        assert_close(lib, got, want, dtype="float64")
        assert (lib.to_numpy(got)[[1, 4]] == 0).all()


# -- masks, against optax ------------------------------------------------------------------------
def _optax() -> Any:
    return pytest.importorskip("optax")


def _mask(shape: tuple[int, ...]) -> np.ndarray:
    m = np.random.default_rng(3).random(shape) < 0.7
    m[..., 0] = True
    return m


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_masked_probability_targets_match_optax(lib: Lib, eps: float) -> None:
    optax = _optax()
    import jax
    import jax.numpy as jnp

    x, m = _data((6, 5)), _mask((6, 5))
    t = np.where(m, _targets((6, 5), -1), 0.0)
    with jax.enable_x64(True):
        # torch's smoothing over the classes that take part: eps / K, K per slice
        k = m.sum(axis=-1, keepdims=True)
        ts = np.where(m, (1 - eps) * t + eps / k, 0.0)
        want = np.asarray(optax.softmax_cross_entropy(jnp.asarray(x), jnp.asarray(ts),
                                                      where=jnp.asarray(m)))  # fmt: skip
    got = lib.call(sx.softmax_cross_entropy, lib.asarray(x), lib.asarray(t),
                   where=lib.asarray(m), label_smoothing=eps)  # fmt: skip
    assert_close(lib, got, want, dtype="float64")


def test_masked_labels_match_optax(lib: Lib) -> None:
    optax = _optax()
    import jax
    import jax.numpy as jnp

    x, m = _data((6, 5)), _mask((6, 5))
    lab = np.array([0, 1, 2, 3, 4, 0])
    with jax.enable_x64(True):
        want = np.asarray(optax.softmax_cross_entropy_with_integer_labels(
            jnp.asarray(x), jnp.asarray(lab), where=jnp.asarray(m)))  # fmt: skip
    got = lib.call(sx.softmax_cross_entropy_with_integer_labels, lib.asarray(x),
                   lib.asarray(lab, "int64"), where=lib.asarray(m))  # fmt: skip
    on_masked = ~m[np.arange(6), lab]
    assert on_masked.any()
    assert not on_masked.all()
    # a label on a masked-out class: probability 0, so loss +inf here (softmax with where gives
    # that class 0); optax returns lse - x[label] there, as if the class took part
    assert_close(lib, got, np.where(on_masked, np.inf, want), dtype="float64")


# -- edge values -------------------------------------------------------------------------------------
INF, NAN = np.inf, np.nan


def test_edge_values(lib: Lib) -> None:
    """A zero target takes no part whatever its logit; a non-finite slice maximum gives NaN; a
    positive target on a -inf logit gives +inf; an all-masked slice gives 0."""
    x = np.array([[-INF, 1.0, 2.0], [INF, 1.0, 2.0], [NAN, 1.0, 2.0], [-INF, 1.0, 2.0],
                  [-INF, -INF, -INF], [1.0, 2.0, 3.0]])  # fmt: skip
    t = np.array([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5], [0.0, 0.5, 0.5], [0.5, 0.5, 0.0],
                  [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])  # fmt: skip
    m = np.ones_like(x, dtype=bool)
    m[5] = False
    got = lib.to_numpy(lib.call(sx.softmax_cross_entropy, lib.asarray(x), lib.asarray(t),
                                where=lib.asarray(m)))  # fmt: skip
    want0 = _torch_loss(x[:1, 1:], t[:1, 1:], -1)[0]
    np.testing.assert_allclose(got[0], want0)
    assert np.isnan(got[1])
    assert np.isnan(got[2])
    assert np.isnan(got[4])
    assert got[3] == INF
    assert got[5] == 0.0
    lab = np.array([1, 1, 1, 0, 0, 0])
    got = lib.to_numpy(lib.call(sx.softmax_cross_entropy_with_integer_labels, lib.asarray(x),
                                lib.asarray(lab, "int64"), where=lib.asarray(m)))  # fmt: skip
    np.testing.assert_allclose(got[0], _torch_loss(x[:1, 1:], np.array([0]), -1)[0])
    assert np.isnan(got[1])
    assert np.isnan(got[2])
    assert np.isnan(got[4])
    assert got[3] == INF
    assert got[5] == INF  # the label's class is masked out


# -- misuse ------------------------------------------------------------------------------------------
def test_errors_name_the_argument() -> None:
    x = np.zeros((2, 3))
    ce, cel = sx.softmax_cross_entropy, sx.softmax_cross_entropy_with_integer_labels
    with pytest.raises(ValueError, match="arguments `x` and `targets` must have the same shape"):
        ce(x, np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"argument `label_smoothing` = 1\.5 is not in"):
        ce(x, np.zeros((2, 3)), label_smoothing=1.5)
    with pytest.raises(TypeError, match="argument `label_smoothing` must be a Python float"):
        ce(x, np.zeros((2, 3)), label_smoothing="0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="argument `labels` must be an array of integer class"):
        cel(x, np.zeros(2))
    with pytest.raises(ValueError, match="argument `labels` must have one entry per slice"):
        cel(x, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="argument `labels` holds class index 3, outside"):
        cel(x, np.array([0, 3]))
    with pytest.raises(ValueError, match="argument `labels` holds class index -1"):
        cel(x, np.array([-1, 0]), ignore_index=-100)
    with pytest.raises(TypeError, match="argument `ignore_index` must be an int"):
        cel(x, np.array([0, 1]), ignore_index=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="arguments `x` and `labels` come from different"):
        cel(x, torch.tensor([0, 1]))


def test_out_of_range_labels_raise_on_torch_and_are_nan_under_jit() -> None:
    with pytest.raises(ValueError, match="argument `labels` holds class index 5"):
        sx.softmax_cross_entropy_with_integer_labels(torch.zeros(2, 3), torch.tensor([5, 0]))
    jax = pytest.importorskip("jax")
    f = jax.jit(sx.softmax_cross_entropy_with_integer_labels)
    out = np.asarray(f(jax.numpy.zeros((2, 3)), jax.numpy.array([5, 0])))
    assert np.isnan(out[0])
    assert np.isclose(out[1], np.log(3.0))


def test_inputs_are_not_mutated_and_nothing_warns() -> None:
    x = np.array([[-INF, 1.0, 2.0], [INF, 1.0, 2.0], [NAN, 1.0, 2.0], [-INF, -INF, -INF]])
    t = np.array([[0.0, 0.5, 0.5], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.5, 0.0]])
    lab = np.array([0, 1, 2, 0])
    x0, t0, lab0 = x.copy(), t.copy(), lab.copy()
    with np.errstate(all="raise"):
        sx.softmax_cross_entropy(x, t, label_smoothing=0.1)
        sx.softmax_cross_entropy_with_integer_labels(x, lab, label_smoothing=0.1)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(t, t0)
    np.testing.assert_array_equal(lab, lab0)


# -- misuse on every backend: every array argument of the five new functions ------------------------
def _lse_calls(lib: Lib) -> dict[str, tuple[Any, list[str], list[Any]]]:
    """name -> (function, its array arguments' names, valid arrays)."""
    x = _data((4, 5))
    lse = np.log(np.exp(x).sum(axis=-1))
    t = _targets((4, 5), -1)
    return {
        "logsumexp": (sx.logsumexp, ["x"], [lib.asarray(x)]),
        "logsumexp_jvp": (sx.logsumexp_jvp, ["x", "lse", "v"],
                          [lib.asarray(x), lib.asarray(lse), lib.asarray(t)]),
        "logsumexp_vjp": (sx.logsumexp_vjp, ["x", "lse", "g"],
                          [lib.asarray(x), lib.asarray(lse), lib.asarray(lse)]),
        "softmax_cross_entropy": (sx.softmax_cross_entropy, ["x", "targets"],
                                  [lib.asarray(x), lib.asarray(t)]),
        "softmax_cross_entropy_with_integer_labels": (
            sx.softmax_cross_entropy_with_integer_labels, ["x", "labels"],
            [lib.asarray(x), lib.asarray(np.array([0, 1, 2, 4]), "int64")]),
    }  # fmt: skip


@pytest.mark.parametrize("name", [
    "logsumexp", "logsumexp_jvp", "logsumexp_vjp", "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
])  # fmt: skip
def test_each_array_argument_is_checked_by_name(lib: Lib, name: str) -> None:
    fn, names, arrays = _lse_calls(lib)[name]
    for i, arg in enumerate(names):
        bad = list(arrays)
        bad[i] = [[1.0, 2.0]]  # a list: not an array
        with pytest.raises(TypeError, match=f"argument `{arg}`"):
            lib.call(fn, *bad)
        # a second library's array (under jax.jit every argument becomes a tracer: not there)
        if i and lib.xp is not _np_xp() and lib.backend is not Backend.JAX_JIT:
            bad[i] = np.asarray(lib.to_numpy(arrays[i]))
            with pytest.raises(TypeError, match=f"arguments `x` and `{arg}` come from"):
                lib.call(fn, *bad)
    with pytest.raises(ValueError, match="argument `axis`"):
        lib.call(fn, *arrays, axis=5)
    with pytest.raises(TypeError, match="argument `where` must be a boolean array"):
        lib.call(fn, *arrays, where=arrays[0])
    before = [lib.to_numpy(a).copy() for a in arrays]
    err = np.geterr()
    lib.call(fn, *arrays)
    assert np.geterr() == err
    for a, b in zip(arrays, before, strict=True):
        np.testing.assert_array_equal(lib.to_numpy(a), b)


def _np_xp() -> Any:
    import array_api_compat

    return array_api_compat.array_namespace(np.empty(0))
