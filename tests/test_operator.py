"""SoftmaxJacobian / LogSoftmaxJacobian: the structured operators against the dense Jacobian of each
framework's autodiff (torch.func.jacrev in float64 as the reference on every backend; torch.func /
jax transforms on their own arrays), numpy.linalg.lstsq for the solves, and the dense budget."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np
import pytest
from _support import Backend, Lib, assert_close, tolerance

import softmax_xp as sx
from softmax_xp._testing import F64_OTHER_ROUTE

torch = pytest.importorskip("torch")  # the reference Jacobians come from torch.func.jacrev

# (shape, axis): last axis, first axis, a tuple of non-adjacent axes, all axes
CASES = [((4, 6), -1), ((6, 3), 0), ((2, 3, 4), (0, 2)), ((2, 3), None)]
CASE_IDS = ["last", "first", "tuple", "none"]


def _axes(shape: tuple[int, ...], axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(len(shape)))
    ax = axis if isinstance(axis, tuple) else (axis,)
    return tuple(sorted(a % len(shape) for a in ax))


def to_rows(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The layout of the dense Jacobian: batch axes first, then the softmax axes flattened."""
    k = len(axes)
    moved = np.moveaxis(a, axes, tuple(range(a.ndim - k, a.ndim)))
    return moved.reshape((*moved.shape[: a.ndim - k], -1))


def from_rows(r: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    k = len(axes)
    moved_shape = tuple(s for i, s in enumerate(shape) if i not in axes) + tuple(
        shape[a] for a in axes
    )
    moved = r.reshape(moved_shape)
    return np.moveaxis(moved, tuple(range(len(shape) - k, len(shape))), axes)


def ref_jacobian(kind: str, p_rows: np.ndarray) -> np.ndarray:
    """Dense Jacobian (batch + (C, C)) at ``p_rows`` by torch.func.jacrev, in float64."""
    c = p_rows.shape[-1]
    with np.errstate(divide="ignore"):
        z = torch.from_numpy(np.log(p_rows).reshape(-1, c))
    f = torch.softmax if kind == "softmax" else torch.log_softmax
    jac = torch.func.vmap(torch.func.jacrev(lambda t: f(t, -1)))(z)
    return jac.numpy().reshape((*p_rows.shape[:-1], c, c))


def _skip_f64(lib: Lib, dtype: str) -> None:
    if dtype == "float64" and lib.backend.is_jax:
        pytest.skip("JAX runs without x64 here (its global flag is not ours to change)")


def _point(
    lib: Lib, kind: str, shape: tuple[int, ...], axis: Any, dtype: str, seed: int = 0
) -> Any:
    """The operator's input on the backend, and the float64 probabilities it stands for (rows)."""
    import scipy.special

    axes = _axes(shape, axis)
    x = np.random.default_rng(seed).uniform(-1.5, 1.5, size=shape)
    fwd = scipy.special.softmax if kind == "softmax" else scipy.special.log_softmax
    arr = lib.asarray(fwd(x, axis=axes), dtype=dtype)
    seen = to_rows(lib.to_numpy(arr), axes)
    p = seen if kind == "softmax" else np.exp(seen)
    return arr, p / p.sum(axis=-1, keepdims=True)


OPS = {"softmax": sx.SoftmaxJacobian, "log_softmax": sx.LogSoftmaxJacobian}


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_products_match_autodiff_jacobian(
    lib: Lib, kind: str, dtype: str, shape: Any, axis: Any
) -> None:
    _skip_f64(lib, dtype)
    op_cls = OPS[kind]
    axes = _axes(shape, axis)
    y, p = _point(lib, kind, shape, axis, dtype)
    jac = ref_jacobian(kind, p)
    rng = np.random.default_rng(1)
    v_np = rng.normal(size=shape)
    k = 3
    vb_np = rng.normal(size=(*shape, k))
    v, vb = lib.asarray(v_np, dtype=dtype), lib.asarray(vb_np, dtype=dtype)
    vr = to_rows(v_np, axes)

    out = lib.call(lambda a, b: op_cls(a, axis=axis).matvec(b), y, v)
    assert_close(
        lib, out, from_rows(np.einsum("...ij,...j->...i", jac, vr), shape, axes), dtype=dtype
    )

    out = lib.call(lambda a, b: op_cls(a, axis=axis).rmatvec(b), y, v)
    assert_close(
        lib, out, from_rows(np.einsum("...i,...ij->...j", vr, jac), shape, axes), dtype=dtype
    )

    # a block of k vectors: one extra trailing axis
    cols = [to_rows(vb_np[..., j], axes) for j in range(k)]
    exp_mm = np.stack(
        [from_rows(np.einsum("...ij,...j->...i", jac, c), shape, axes) for c in cols], axis=-1
    )
    exp_rmm = np.stack(
        [from_rows(np.einsum("...i,...ij->...j", c, jac), shape, axes) for c in cols], axis=-1
    )
    assert_close(
        lib, lib.call(lambda a, b: op_cls(a, axis=axis).matmat(b), y, vb), exp_mm, dtype=dtype
    )
    assert_close(
        lib, lib.call(lambda a, b: op_cls(a, axis=axis).rmatmat(b), y, vb), exp_rmm, dtype=dtype
    )

    diag = np.diagonal(jac, axis1=-2, axis2=-1)
    assert_close(
        lib,
        lib.call(lambda a: op_cls(a, axis=axis).diagonal(), y),
        from_rows(diag, shape, axes),
        dtype=dtype,
    )
    assert_close(
        lib,
        lib.call(lambda a: op_cls(a, axis=axis).trace(), y),
        np.trace(jac, axis1=-2, axis2=-1),
        dtype=dtype,
    )
    assert_close(lib, lib.call(lambda a: op_cls(a, axis=axis).to_dense(), y), jac, dtype=dtype)


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_to_dense_is_the_dense_function(lib: Lib, kind: str) -> None:
    y, _ = _point(lib, kind, (3, 5), -1, "float32")
    dense_fn = sx.softmax_jacobian if kind == "softmax" else sx.log_softmax_jacobian
    expected = lib.to_numpy(lib.call(dense_fn, y))
    assert_close(lib, lib.call(lambda a: OPS[kind](a).to_dense(), y), expected, dtype="float32")


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_description(lib: Lib, kind: str) -> None:
    y, _ = _point(lib, kind, (2, 3, 4), (0, 2), "float32")
    op = OPS[kind](y, axis=(2, 0))
    assert op.shape == (3, 8, 8)
    assert op.axis == (0, 2)
    assert op.dtype == y.dtype
    assert str(op.device) == str(array_api_compat.device(y))
    assert type(op).__name__ in repr(op)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_softmax_solve_is_lstsq(lib: Lib, dtype: str, shape: Any, axis: Any) -> None:
    _skip_f64(lib, dtype)
    axes = _axes(shape, axis)
    y, p = _point(lib, "softmax", shape, axis, dtype)
    jac = ref_jacobian("softmax", p)
    rng = np.random.default_rng(2)
    b_gen = rng.normal(size=shape) * 0.1
    b_tan = to_rows(b_gen, axes)
    b_tan = from_rows(b_tan - b_tan.mean(axis=-1, keepdims=True), shape, axes)  # Σ b = 0
    outs = []
    for b_np in (b_tan, b_gen):  # tangent right-hand side, and a general one (least squares)
        br = to_rows(b_np, axes)
        expected = np.empty_like(br)
        for idx in np.ndindex(br.shape[:-1]):
            expected[idx] = np.linalg.lstsq(jac[idx], br[idx], rcond=None)[0]
        b = lib.asarray(b_np, dtype)
        out = lib.call(lambda a, b: sx.SoftmaxJacobian(a, axis=axis).solve(b), y, b)
        assert_close(lib, out, from_rows(expected, shape, axes), dtype=dtype)
        outs.append(out)
    # on the tangent space the solve is exact: J x = b
    jx = np.einsum("...ij,...j->...i", jac, to_rows(lib.to_numpy(outs[0]), axes))
    np.testing.assert_allclose(from_rows(jx, shape, axes), b_tan, *tolerance(dtype))


def test_softmax_solve_with_zero_probabilities(lib: Lib) -> None:
    """Masked-out entries (y = 0) enlarge the null space; the pseudo-inverse ignores them."""
    x = np.random.default_rng(3).uniform(-1, 1, size=(3, 6))
    where = np.ones((3, 6), dtype=bool)
    where[0, [1, 4]] = False
    where[2, :] = False  # an all-masked slice: J = 0, x = 0
    y_np = np.where(where, np.exp(x), 0.0)
    y_np = y_np / np.maximum(y_np.sum(-1, keepdims=True), 1e-300)
    dtype = "float32" if lib.backend.is_jax else "float64"
    y = lib.asarray(y_np, dtype)
    seen = lib.to_numpy(y)
    sums = seen.sum(-1, keepdims=True)
    p = np.where(sums > 0, seen / np.where(sums > 0, sums, 1), 0)
    jac = np.zeros((3, 6, 6))
    jac[:2] = ref_jacobian("softmax", p[:2])  # the all-masked slice: zero output, zero derivative
    b_np = np.random.default_rng(4).normal(size=(3, 6)) * 0.1
    expected = np.stack([np.linalg.pinv(jac[i]) @ b_np[i] for i in range(3)])
    out = lib.call(lambda a, b: sx.SoftmaxJacobian(a).solve(b), y, lib.asarray(b_np, dtype))
    assert_close(lib, out, expected, dtype=dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_log_softmax_solve_is_lstsq(lib: Lib, dtype: str, shape: Any, axis: Any) -> None:
    _skip_f64(lib, dtype)
    axes = _axes(shape, axis)
    l, p = _point(lib, "log_softmax", shape, axis, dtype)
    jac = ref_jacobian("log_softmax", p)
    b_np = np.random.default_rng(5).normal(size=shape)
    br = to_rows(b_np, axes)
    expected = np.empty_like(br)
    for idx in np.ndindex(br.shape[:-1]):
        expected[idx] = np.linalg.lstsq(jac[idx], br[idx], rcond=None)[0]
    out = lib.call(
        lambda a, b: sx.LogSoftmaxJacobian(a, axis=axis).solve(b), l, lib.asarray(b_np, dtype)
    )
    assert_close(lib, out, from_rows(expected, shape, axes), dtype=dtype)
    # the tangent space pᵀ b = 0 is J's range: there the solution is exact (J x = J b = b)
    bt = np.einsum("...ij,...j->...i", jac, br)  # J b lies in the range, pᵀ (J b) = 0
    b = lib.asarray(from_rows(bt, shape, axes), dtype)
    x = lib.call(lambda a, b: sx.LogSoftmaxJacobian(a, axis=axis).solve(b), l, b)
    jx = np.einsum("...ij,...j->...i", jac, to_rows(lib.to_numpy(x), axes))
    np.testing.assert_allclose(jx, bt, *tolerance(dtype))


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_matches_the_framework_autodiff(lib: Lib, kind: str) -> None:
    """On torch and JAX arrays: matvec = the framework's jvp, rmatvec = its vjp, to_dense = its
    jacobian of its own softmax, all on that framework's arrays."""
    x_np = np.random.default_rng(6).normal(size=(3, 7))
    v_np = np.random.default_rng(7).normal(size=(3, 7))
    if lib.backend.is_torch:
        x, v = lib.asarray(x_np, "float32"), lib.asarray(v_np, "float32")
        f = (
            (lambda t: torch.softmax(t, -1))
            if kind == "softmax"
            else (lambda t: torch.log_softmax(t, -1))
        )
        y, jv = torch.func.jvp(f, (x,), (v,))
        _, vjp_fn = torch.func.vjp(f, x)
        (vj,) = vjp_fn(v)
        jac = torch.func.vmap(torch.func.jacrev(f))(x)
    elif lib.backend.is_jax:
        import jax

        x, v = lib.asarray(x_np, "float32"), lib.asarray(v_np, "float32")
        f = jax.nn.softmax if kind == "softmax" else jax.nn.log_softmax
        y, jv = jax.jvp(f, (x,), (v,))
        _, vjp_fn = jax.vjp(f, x)
        (vj,) = vjp_fn(v)
        jac = jax.vmap(jax.jacfwd(f))(x)
    else:
        pytest.skip("a framework with its own autodiff (torch, jax)")
    op = OPS[kind]
    assert_close(
        lib, lib.call(lambda a, b: op(a).matvec(b), y, v), lib.to_numpy(jv), dtype="float32"
    )
    assert_close(
        lib, lib.call(lambda a, b: op(a).rmatvec(b), y, v), lib.to_numpy(vj), dtype="float32"
    )
    assert_close(lib, lib.call(lambda a: op(a).to_dense(), y), lib.to_numpy(jac), dtype="float32")


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_keeps_its_dtype(lib: Lib, kind: str, dtype: str) -> None:
    lib.dtype(dtype)  # skips backends without it
    y, p = _point(lib, kind, (3, 9), -1, dtype)
    jac = ref_jacobian(kind, p)
    v_np = np.random.default_rng(8).normal(size=(3, 9))
    out = lib.call(lambda a, b: OPS[kind](a).matvec(b), y, lib.asarray(v_np, dtype))
    assert_close(lib, out, np.einsum("...ij,...j->...i", jac, v_np), dtype=dtype)
    assert_close(
        lib,
        lib.call(lambda a: OPS[kind](a).trace(), y),
        np.trace(jac, axis1=-2, axis2=-1),
        dtype=dtype,
    )


def test_validation(lib: Lib) -> None:
    y, _ = _point(lib, "softmax", (3, 4), -1, "float32")
    op = sx.SoftmaxJacobian(y)
    with pytest.raises(ValueError, match="`v`"):
        op.matvec(lib.asarray(np.zeros((3, 5)), "float32"))
    with pytest.raises(ValueError, match="`V`"):
        op.matmat(lib.asarray(np.zeros((3, 4)), "float32"))
    with pytest.raises(ValueError, match="`b`"):
        op.solve(lib.asarray(np.zeros((4, 3)), "float32"))
    with pytest.raises(ValueError, match="axis"):
        sx.SoftmaxJacobian(y, axis=2)
    with pytest.raises(TypeError, match="`y`"):
        sx.SoftmaxJacobian([0.5, 0.5])
    with pytest.raises(TypeError, match="`l`"):
        sx.LogSoftmaxJacobian(3.0)
    numpy_like = lib.backend in (Backend.NUMPY, Backend.NUMPY_READONLY)
    if not numpy_like:
        with pytest.raises(TypeError, match="different array libraries"):
            op.matvec(np.zeros((3, 4), dtype=np.float32))
    if numpy_like:
        with pytest.raises(TypeError, match="complex"):
            sx.SoftmaxJacobian(np.zeros((2, 2), dtype=np.complex64))
    else:
        with pytest.raises(TypeError, match="as_linear_operator"):
            op.as_linear_operator()


# -- the dense budget ------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [sx.softmax_jacobian, sx.log_softmax_jacobian])
def test_dense_budget_refuses_before_allocating(lib: Lib, fn: Any) -> None:
    # 2**20 classes: a 4 TiB dense result; the check must fire before anything is allocated
    y = lib.asarray(np.full((1, 2**20), 2.0**-20), "float32")
    name = "SoftmaxJacobian" if fn is sx.softmax_jacobian else "LogSoftmaxJacobian"
    with pytest.raises(MemoryError, match=name) as info:
        lib.call(fn, y)
    assert "SOFTMAX_XP_MAX_DENSE_BYTES" in str(info.value)
    assert f"{2**42} bytes" in str(info.value)  # 1 · 2**20 · 2**20 · 4: counted, not allocated


def test_dense_budget_is_read_at_call_time(lib: Lib, monkeypatch: pytest.MonkeyPatch) -> None:
    y, _ = _point(lib, "softmax", (4, 32), -1, "float32")  # result: 4·32·32·4 bytes = 16 KiB

    def dense(a: Any) -> Any:  # a new function per call: under jax.jit the budget is read when
        return sx.softmax_jacobian(a)  # tracing, and a fresh function is traced afresh

    monkeypatch.setenv("SOFTMAX_XP_MAX_DENSE_BYTES", "8KiB")
    with pytest.raises(MemoryError, match="SoftmaxJacobian"):
        lib.call(lambda a: dense(a), y)
    with pytest.raises(MemoryError, match="SoftmaxJacobian"):
        lib.call(lambda a: sx.SoftmaxJacobian(a).to_dense(), y)
    # an explicit budget overrides the environment
    ok = lib.call(lambda a: sx.SoftmaxJacobian(a).to_dense(max_bytes=16 * 1024), y)
    assert tuple(ok.shape) == (4, 32, 32)
    monkeypatch.setenv("SOFTMAX_XP_MAX_DENSE_BYTES", "16KiB")
    assert tuple(lib.call(lambda a: dense(a), y).shape) == (4, 32, 32)
    monkeypatch.setenv("SOFTMAX_XP_MAX_DENSE_BYTES", "lots")
    with pytest.raises(ValueError, match="SOFTMAX_XP_MAX_DENSE_BYTES"):
        lib.call(lambda a: dense(a), y)


# -- scipy LinearOperator view ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "axis"), CASES, ids=CASE_IDS)
def test_as_linear_operator_is_the_block_diagonal(
    lib: Lib, kind: str, shape: Any, axis: Any
) -> None:
    if lib.backend not in (Backend.NUMPY, Backend.NUMPY_READONLY):
        pytest.skip("a scipy LinearOperator view is for NumPy input")
    import scipy.linalg
    import scipy.sparse.linalg

    y, p = _point(lib, kind, shape, axis, "float64")
    jac = ref_jacobian(kind, p)
    c = jac.shape[-1]
    dense = scipy.linalg.block_diag(*jac.reshape(-1, c, c))
    lo = OPS[kind](y, axis=axis).as_linear_operator()
    assert isinstance(lo, scipy.sparse.linalg.LinearOperator)
    assert lo.shape == dense.shape
    n = dense.shape[0]
    rng = np.random.default_rng(9)
    v, vb = rng.normal(size=n), rng.normal(size=(n, 3))
    tol = F64_OTHER_ROUTE
    np.testing.assert_allclose(lo.matvec(v), dense @ v, **tol.kw)
    np.testing.assert_allclose(lo.rmatvec(v), dense.T @ v, **tol.kw)
    np.testing.assert_allclose(lo.matmat(vb), dense @ vb, **tol.kw)
    np.testing.assert_allclose(lo.rmatmat(vb), dense.T @ vb, **tol.kw)
    np.testing.assert_allclose(lo @ np.eye(n), dense, **tol.kw)
    # a scalar: relative alone (math.isclose's abs_tol stays 0)
    assert math.isclose(float(np.trace(lo @ np.eye(n))), float(np.trace(dense)), rel_tol=tol.rtol)
