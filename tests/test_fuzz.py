"""Hypothesis fuzzing of every public function: backends, dtypes, shapes, axes, masks, values.

Drawn per example: the dtype (float16, bfloat16, float32, float64, as the backend has them), a shape
from a fixed list (0-size and 1-size axes included; a fixed list keeps ``jax.jit`` compilations
bounded), the axis (int, negative int, tuple, None), the mask (none, random, broadcast) and the
value range (normal, huge: up to the dtype's max, -inf-heavy).

Properties:

- forward: each result equals the float64 SciPy softmax of the values the array holds (over the
  unmasked entries), rounded to the dtype, within the dtype's tolerance; it is finite exactly
  where docs/semantics.md says so; softmax slices sum to 1 within the dtype's tolerance;
- derivatives: JVP and VJP equal the dense Jacobian applied to the vector;
- the dense Jacobian equals float64 central finite differences of ``scipy.special.softmax`` /
  ``log_softmax`` (float64, small shapes);
- the operators' matvec, rmatvec, diagonal, trace and solve equal the float64 dense matrices of
  their definitions (solve: ``numpy.linalg.lstsq``), NaN slices included;
- logsumexp equals SciPy's over the unmasked entries, and both cross-entropies equal
  ``-sum(t * log_softmax)`` with SciPy's log_softmax (the table's rules at the edges).

Each property runs at least 300 examples per backend (``HYPOTHESIS_PROFILE=long`` runs more).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from _reference import from_rows as _unrows
from _reference import to_rows as _rows
from _support import FD_TOLERANCE, Backend, Lib, assert_close, tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

import softmax_xp as sx
from softmax_xp._testing import fd_jacobian

Axis = int | tuple[int, ...] | None

EXAMPLES = max(300, settings().max_examples)

SHAPES: list[tuple[int, ...]] = [
    (6,),
    (1,),
    (0,),
    (3, 5),
    (4, 1),
    (1, 7),
    (0, 3),
    (3, 0),
    (2, 3, 4),
    (2, 1, 3),
    (2, 0, 3),
]
VALUES = ["normal", "huge", "-inf-heavy"]


# -- drawing --------------------------------------------------------------------------------------
def _dtypes(lib: Lib) -> list[str]:
    names = ["float16", "bfloat16", "float32", "float64"]
    b = lib.backend
    if b in (Backend.NUMPY, Backend.NUMPY_READONLY, Backend.DASK, Backend.ARRAY_API_STRICT):
        names.remove("bfloat16")
    if b is Backend.ARRAY_API_STRICT:
        names.remove("float16")
    if b.is_jax:
        import jax

        if not jax.config.jax_enable_x64:
            names.remove("float64")
    return names


def _axes(ndim: int) -> list[Axis]:
    out: list[Axis] = [None]
    if ndim:
        out += [ndim - 1, -1, 0, -ndim]
    if ndim >= 2:
        out += [(0, ndim - 1), (-1, 0), tuple(range(ndim))]
    if ndim >= 3:
        out += [(1,), (0, 2), (-2, -1)]
    return out


def _np_dtype(name: str) -> Any:
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(name)


def _fmax(name: str) -> float:
    return {"float16": 65504.0, "bfloat16": 3.3895313892515355e38}.get(
        name, float(np.finfo(name).max) if name in ("float32", "float64") else 0.0
    )


def _values(rng: np.random.Generator, kind: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Logits of one value range, as the float64 values the ``dtype`` array will hold."""
    if kind == "normal":
        x = rng.normal(0.0, 3.0, shape)
    elif kind == "huge":
        fmax = _fmax(dtype)
        x = rng.uniform(-1.0, 1.0, shape) * fmax
        pick = rng.random(shape)
        x = np.where(pick < 0.15, fmax, np.where(pick < 0.3, -fmax, x))
        x = np.where((pick > 0.3) & (pick < 0.4), rng.normal(0, 3, shape), x)
    else:
        x = np.where(rng.random(shape) < 0.6, -np.inf, rng.normal(0.0, 3.0, shape))
    return x.astype(_np_dtype(dtype)).astype(np.float64)


def _mask(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "broadcast" and shape:
        return rng.random(shape[-1:]) < 0.6
    return rng.random(shape) < 0.6


class Case:
    """One drawn example."""

    def __init__(self, data: st.DataObject, lib: Lib, *, values: list[str] = VALUES) -> None:
        self.dtype: str = data.draw(st.sampled_from(_dtypes(lib)), label="dtype")
        self.shape: tuple[int, ...] = data.draw(st.sampled_from(SHAPES), label="shape")
        self.axis: Axis = data.draw(st.sampled_from(_axes(len(self.shape))), label="axis")
        self.values: str = data.draw(st.sampled_from(values), label="values")
        mask_kind = data.draw(st.sampled_from(["none", "random", "broadcast"]), label="mask")
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        self.x = _values(rng, self.values, self.shape, self.dtype)
        self.where = _mask(rng, mask_kind, self.shape)
        self.t = rng.normal(0.0, 1.0, self.shape).astype(_np_dtype(self.dtype)).astype(np.float64)

    def full_mask(self) -> np.ndarray:
        if self.where is None:
            return np.ones(self.shape, bool)
        return np.broadcast_to(self.where, self.shape)


# -- references -----------------------------------------------------------------------------------
def scipy_forward(x: np.ndarray, mask: np.ndarray, axis: Axis, *, log: bool) -> np.ndarray:
    """float64 SciPy softmax over the unmasked entries, with the table's rules for the rest."""
    from scipy.special import log_softmax, softmax

    rows, mrows = _rows(x, axis), _rows(mask, axis)
    out = np.full(rows.shape, -np.inf if log else 0.0)
    for idx in np.ndindex(rows.shape[:-1]):
        keep = mrows[idx]
        if not keep.any():
            continue  # all masked: zeros (log: -inf)
        r = rows[idx][keep]
        if not np.isfinite(r.max()):  # +inf, NaN or only -inf: NaN (torch and JAX agree)
            out[idx][keep] = np.nan
            continue
        with np.errstate(over="ignore"):  # -max - max: -inf is the rounded result
            out[idx][keep] = (log_softmax if log else softmax)(r)
    return _unrows(out, x.shape, axis)


def _round(a: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        return a.astype(_np_dtype(dtype)).astype(np.float64)


def _settings() -> settings:
    return settings(max_examples=EXAMPLES)


_JITTED: dict[tuple[Any, ...], Any] = {}


def _call(lib: Lib, fn: Any, *arrays: Any, where: Any = None, **kw: Any) -> Any:
    """``lib.call``, but under ``jax.jit`` one compiled function per (function, static arguments),
    with ``where`` traced: XLA then compiles once per shape and dtype, not once per example."""
    if lib.backend is not Backend.JAX_JIT:
        return lib.call(fn, *arrays, **kw, **({} if where is None else {"where": where}))
    import jax

    key = (fn, tuple(sorted(kw.items())), where is None)
    if key not in _JITTED:
        if where is None:
            _JITTED[key] = jax.jit(functools.partial(fn, **kw))
        else:
            _JITTED[key] = jax.jit(lambda *a: fn(*a[:-1], where=a[-1], **kw))
    return _JITTED[key](*arrays) if where is None else _JITTED[key](*arrays, where)


# -- forward --------------------------------------------------------------------------------------
@_settings()
@given(data=st.data())
def test_forward(lib: Lib, data: st.DataObject) -> None:
    c = Case(data, lib)
    log = data.draw(st.booleans(), label="log")
    fn = sx.log_softmax if log else sx.softmax
    where = None if c.where is None else lib.asarray(c.where)
    out = _call(lib, fn, lib.asarray(c.x, c.dtype), axis=c.axis, where=where)
    mask = c.full_mask()
    expected = _round(scipy_forward(c.x, mask, c.axis, log=log), c.dtype)
    assert_close(lib, out, expected, dtype=c.dtype)

    got = lib.to_numpy(out)
    rows, mrows, xrows = _rows(got, c.axis), _rows(mask, c.axis), _rows(c.x, c.axis)
    for idx in np.ndindex(rows.shape[:-1]):
        keep = mrows[idx]
        if not keep.any() or rows.shape[-1] == 0:
            continue
        if np.isfinite(xrows[idx][keep].max()):  # the table: a finite slice maximum
            probs = np.exp(rows[idx]) if log else rows[idx]
            assert np.all(np.isfinite(probs)), f"non-finite result in a finite slice: {rows[idx]}"
            if not log:
                rtol, _ = tolerance(c.dtype)
                assert abs(probs.sum() - 1.0) <= rtol, f"slice sums to {probs.sum()}"


# -- derivatives against the dense Jacobian -------------------------------------------------------
def _wide(lib: Lib, a: Any, dtype: str) -> Any:
    """``a`` in float32 when it is half precision (its values unchanged)."""
    return a if dtype in ("float32", "float64") else lib.xp.astype(a, lib.dtype("float32"))


@_settings()
@given(data=st.data())
def test_derivatives_match_dense_jacobian(lib: Lib, data: st.DataObject) -> None:
    c = Case(data, lib)
    log = data.draw(st.booleans(), label="log")
    mask = c.full_mask()
    x = lib.asarray(c.x, c.dtype)
    t = lib.asarray(c.t, c.dtype)
    where = None if c.where is None else lib.asarray(c.where)
    rows_shape = _rows(c.x, c.axis).shape
    if log:
        fwd = _call(lib, sx.log_softmax, x, axis=c.axis, where=where)
        jvp = _call(lib, sx.log_softmax_jvp, fwd, t, axis=c.axis, where=where)
        vjp = _call(lib, sx.log_softmax_vjp, fwd, t, axis=c.axis, where=where)
        jac_fn = sx.log_softmax_jacobian
    else:
        fwd = _call(lib, sx.softmax, x, axis=c.axis, where=where)
        jvp = _call(lib, sx.softmax_jvp, fwd, t, axis=c.axis)
        vjp = _call(lib, sx.softmax_vjp, fwd, t, axis=c.axis)
        jac_fn = sx.softmax_jacobian
    jac = _call(lib, jac_fn, _wide(lib, fwd, c.dtype), axis=c.axis)
    assert tuple(jac.shape) == (*rows_shape, rows_shape[-1])
    J = lib.to_numpy(jac)
    m = _rows(mask, c.axis)
    trows = _rows(c.t, c.axis)
    if log:  # the mask-aware kernels: masked tangents ignored, masked outputs zero
        tm = np.where(m, trows, 0.0)
        with np.errstate(invalid="ignore"):
            jv = np.where(m, np.einsum("...ij,...j->...i", J, tm), 0.0)
            vj = np.where(m, np.einsum("...i,...ij->...j", tm, J), 0.0)
    else:
        with np.errstate(invalid="ignore"):
            jv = np.einsum("...ij,...j->...i", J, trows)
            vj = np.einsum("...i,...ij->...j", trows, J)
    assert_close(lib, jvp, _round(_unrows(jv, c.shape, c.axis), c.dtype), dtype=c.dtype)
    assert_close(lib, vjp, _round(_unrows(vj, c.shape, c.axis), c.dtype), dtype=c.dtype)


# -- the dense Jacobian against finite differences ------------------------------------------------
def _fd_jacobian(x: np.ndarray, mask: np.ndarray, axis: Axis, *, log: bool) -> np.ndarray:
    """Central differences of SciPy's forward (a -inf output does not move: derivative 0)."""

    def flat(r: np.ndarray) -> np.ndarray:
        return _rows(scipy_forward(_unrows(r, x.shape, axis), mask, axis, log=log), axis)

    return fd_jacobian(flat, _rows(x, axis), None if log else _rows(mask, axis))


@_settings()
@given(data=st.data())
def test_dense_jacobian_matches_finite_differences(lib: Lib, data: st.DataObject) -> None:
    if "float64" not in _dtypes(lib):
        pytest.skip(f"{lib.backend.value}: no float64")
    log = data.draw(st.booleans(), label="log")
    # Finite differences see no change at a -inf output; the derivative of log_softmax there is
    # still I - 1 softmaxᵀ (torch and JAX agree, tests/test_edge_values.py), so log: finite only.
    c = Case(data, lib, values=["normal"] if log else ["normal", "-inf-heavy"])
    seed = data.draw(st.integers(0, 2**32 - 1), label="float64 seed")
    x = _values(np.random.default_rng(seed), c.values, c.shape, "float64")
    mask = np.ones(c.shape, bool) if log else c.full_mask()  # log_softmax_jacobian takes no mask
    where = None if log or c.where is None else lib.asarray(c.where)
    fwd_fn, jac_fn = (
        (sx.log_softmax, sx.log_softmax_jacobian) if log else (sx.softmax, sx.softmax_jacobian)
    )
    fwd = _call(lib, fwd_fn, lib.asarray(x, "float64"), axis=c.axis, where=where)
    jac = _call(lib, jac_fn, fwd, axis=c.axis)
    expected = _fd_jacobian(x, mask, c.axis, log=log)
    # docs/semantics.md: in a NaN slice (unmasked logits all -inf) the masked entries' derivatives
    # are unspecified for the kernels that take no mask; they are not compared.
    mrows = _rows(mask, c.axis)
    nan_slice = np.isnan(_rows(lib.to_numpy(fwd), c.axis)).any(axis=-1)[..., None, None]
    free = nan_slice & ~(mrows[..., :, None] & mrows[..., None, :])
    expected = np.where(free, lib.to_numpy(jac), expected)
    rtol, atol = FD_TOLERANCE
    assert_close(lib, jac, expected, dtype="float64", rtol=rtol, atol=atol)


# -- the Jacobian operators against the dense matrices of their definitions -----------------------
def _operator_dense(y_rows: np.ndarray, *, log: bool) -> np.ndarray:
    """float64 per-slice Jacobians from the definitions: ``diag(y) - y yᵀ`` (y = softmax) or
    ``I - 1 pᵀ`` (p = exp(l)), from the forward output's values."""
    c = y_rows.shape[-1]
    if log:
        with np.errstate(over="ignore"):
            p = np.exp(y_rows)
        return np.eye(c) - p[..., None, :]
    return y_rows[..., :, None] * (np.eye(c) - y_rows[..., None, :])


def _operator_methods(y: Any, b: Any, *, log: bool, axis: Axis) -> dict[str, Any]:
    J = (sx.LogSoftmaxJacobian if log else sx.SoftmaxJacobian)(y, axis=axis)
    return {
        "matvec": J.matvec(b),
        "rmatvec": J.rmatvec(b),
        "solve": J.solve(b),
        "diagonal": J.diagonal(),
        "trace": J.trace(),
    }


@_settings()
@given(data=st.data())
def test_operators_match_their_dense_matrices(lib: Lib, data: st.DataObject) -> None:
    """matvec, rmatvec, diagonal, trace and solve (the minimum-norm least-squares solution,
    ``numpy.linalg.lstsq`` on the dense matrix) on forward outputs of finite, ``-inf``-heavy and
    non-finite logits; a NaN slice (a ``+inf`` or NaN logit) is NaN in every method."""
    dtype = data.draw(st.sampled_from([d for d in _dtypes(lib) if d in ("float32", "float64")]))
    # a few shapes and axes (1-size and tuple axes included): JAX compiles once per combination
    shape = data.draw(st.sampled_from([(6,), (4, 1), (3, 5), (2, 3, 4)]), label="shape")
    axes: list[Axis] = [-1, None] + ([(0, len(shape) - 1)] if len(shape) > 1 else [])
    axis = data.draw(st.sampled_from(axes), label="axis")
    kind = data.draw(st.sampled_from(["normal", "-inf-heavy", "non-finite"]), label="values")
    log = data.draw(st.booleans(), label="log")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = rng.normal(0.0, 1.0, shape)
    if kind == "-inf-heavy":
        x = np.where(rng.random(shape) < 0.4, -np.inf, x)
    elif kind == "non-finite":
        x = np.where(rng.random(shape) < 0.15, rng.choice([np.inf, np.nan], shape), x)
    x = x.astype(dtype).astype(np.float64)
    b = rng.normal(0.0, 1.0, shape).astype(dtype).astype(np.float64)
    fwd = sx.log_softmax if log else sx.softmax
    y = _call(lib, fwd, lib.asarray(x, dtype), axis=axis)
    bb = lib.asarray(b, dtype)

    y_rows = _rows(lib.to_numpy(y), axis)
    dense = _operator_dense(y_rows, log=log)
    b_rows = _rows(b, axis)
    dead = ~np.isfinite(np.exp(y_rows) if log else y_rows).all(axis=-1)  # NaN slices
    with np.errstate(invalid="ignore", over="ignore"):
        want = {
            "matvec": np.einsum("...ij,...j->...i", dense, b_rows),
            "rmatvec": np.einsum("...i,...ij->...j", b_rows, dense),
            "diagonal": np.einsum("...ii->...i", dense),
            "trace": np.einsum("...ii->...", dense),
        }
    solve = np.full(b_rows.shape, np.nan)
    # rcond: a float32 output sums to 1 only to rounding, so its J's null direction has a
    # singular value of that size, which the exact pseudo-inverse of a true output drops
    rcond = 1e3 * float(np.finfo(dtype).eps)
    for idx in np.ndindex(b_rows.shape[:-1]):
        if not dead[idx]:
            solve[idx] = np.linalg.lstsq(dense[idx], b_rows[idx], rcond=rcond)[0]
    want["solve"] = solve
    rtol, atol = tolerance(dtype)
    outs = _call(lib, _operator_methods, y, bb, log=log, axis=axis)
    for name, ref in want.items():
        out = outs[name]
        if name != "trace":
            ref = _unrows(ref, shape, axis)
        tol = atol
        if name == "solve":  # conditioned by 1 / min y over the slice's positive entries
            pos = np.where(y_rows > 0, y_rows, np.inf) if not log else np.ones_like(y_rows)
            tol = atol + rtol * float(np.max(1 / np.min(pos, axis=-1, initial=np.inf), initial=1))
            tol *= float(np.max(np.abs(b), initial=1))
        assert_close(lib, out, ref, dtype=dtype, rtol=rtol, atol=tol)


# -- logsumexp and the cross-entropies against SciPy ------------------------------------------------
def _slices(a: np.ndarray, axis: Axis) -> np.ndarray:
    return _rows(a, axis)


@_settings()
@given(data=st.data())
def test_logsumexp_and_cross_entropies(lib: Lib, data: st.DataObject) -> None:
    """logsumexp: SciPy's over the unmasked entries (``-inf`` for none), every value range.
    The cross-entropies (normal and -inf-heavy logits; their values come from the lse, so
    logits near the dtype's maximum are left to logsumexp): ``-sum(t * log_softmax)`` with the
    table's log_softmax, zero targets and masked classes taking no part, a label on a masked
    class giving ``+inf``."""
    from scipy.special import logsumexp as sp_lse

    c = Case(data, lib)
    where = None if c.where is None else lib.asarray(c.where)
    mask = c.full_mask()
    xrows, mrows = _slices(c.x, c.axis), _slices(mask, c.axis)
    batch = xrows.shape[:-1]
    want = np.full(batch, -np.inf)
    for idx in np.ndindex(batch):
        r = xrows[idx][mrows[idx]]
        if r.size:
            with np.errstate(all="ignore"):
                want[idx] = sp_lse(r)
    x = lib.asarray(c.x, c.dtype)
    got = _call(lib, sx.logsumexp, x, axis=c.axis, where=where)
    assert_close(lib, got, _round(want, c.dtype), dtype=c.dtype, shape=batch)
    if c.values == "huge" or xrows.shape[-1] == 0:
        return
    logp = _slices(scipy_forward(c.x, mask, c.axis, log=True), c.axis)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="targets"))
    t = np.abs(_slices(c.t, c.axis))
    t = np.where(rng.random(t.shape) < 0.2, 0.0, t).astype(_np_dtype(c.dtype)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        soft = -np.sum(np.where((t == 0) | ~mrows, 0.0, t * logp), axis=-1)
    tb = lib.asarray(_unrows(t, c.shape, c.axis), c.dtype)
    got = _call(lib, sx.softmax_cross_entropy, x, tb, axis=c.axis, where=where)
    assert_close(lib, got, _round(soft, c.dtype), dtype=c.dtype, shape=batch)
    labels = rng.integers(0, xrows.shape[-1], batch)
    picked = np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    on_mask = np.take_along_axis(mrows, labels[..., None], -1)[..., 0]
    hard = np.where(on_mask, -picked, np.inf)
    got = _call(lib, sx.softmax_cross_entropy_with_integer_labels, x,
                lib.asarray(labels, "int64"), axis=c.axis, where=where)  # fmt: skip
    assert_close(lib, got, _round(hard, c.dtype), dtype=c.dtype, shape=batch)
