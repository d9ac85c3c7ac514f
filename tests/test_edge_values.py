"""The edge-value table of docs/semantics.md, cell by cell, for every public function and backend.

Each cell's expected result is what ``torch.softmax`` / ``torch.log_softmax`` (with ``torch.func``
for the derivatives) and ``jax.nn.softmax`` / ``jax.nn.log_softmax`` (with ``jax.jvp`` / ``jax.vjp``
/ ``jax.jacfwd``) return for the same input, computed here in the same dtype. A cell first checks
that the two frameworks agree (NaN and infinity positions exactly, values within the dtype's
tolerance), then that we return the same. Cells with a ``where`` mask compare with JAX only (torch
has no ``where``; docs/design.md follows ``jax.nn.softmax``). The derivative kernels get the
framework's forward output (what a backward pass keeps) and a fixed tangent / cotangent.

The suite runs with warnings as errors, so every cell also checks that no floating-point warning
escapes (NumPy warns on ``inf - inf`` and overflow in naive code; Dask warns at compute time).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from _reference import from_rows as _unrows
from _reference import to_rows as _rows
from _support import Backend, Lib, assert_close, tolerance

import softmax_xp as sx

inf, nan = math.inf, math.nan
Axis = int | tuple[int, ...] | None
Data = Callable[[np.dtype[Any]], np.ndarray]

FORWARD = {"softmax": sx.softmax, "log_softmax": sx.log_softmax}
DERIVATIVES = {
    "softmax_jvp": sx.softmax_jvp,
    "softmax_vjp": sx.softmax_vjp,
    "softmax_jacobian": sx.softmax_jacobian,
    "log_softmax_jvp": sx.log_softmax_jvp,
    "log_softmax_vjp": sx.log_softmax_vjp,
    "log_softmax_jacobian": sx.log_softmax_jacobian,
}
#: The derivative kernels that take ``where``; the others see only the forward output.
MASK_AWARE = ("log_softmax_jvp", "log_softmax_vjp")
DTYPES = ["float32", "float64"]


def _fmax(dt: np.dtype[Any]) -> float:
    return float(np.finfo(dt).max)


def _tiny(dt: np.dtype[Any]) -> float:
    return float(np.finfo(dt).smallest_subnormal)


@dataclass(frozen=True)
class Cell:
    """One row of the table: logits (as a function of the dtype), axis and mask."""

    data: Data
    axis: Axis = -1
    where: np.ndarray | None = None


def _const(rows: list[list[float]]) -> Data:
    return lambda dt: np.array(rows, dtype=np.float64)


CELLS: dict[str, Cell] = {
    # non-finite logits (a finite row next to them shows that NaN stays in its slice)
    "+inf one": Cell(_const([[1.0, inf, 2.0], [0.0, 1.0, 2.0]])),
    "+inf several": Cell(_const([[inf, 1.0, inf], [3.0, 2.0, 1.0]])),
    "+inf all": Cell(_const([[inf, inf, inf]])),
    "-inf one": Cell(_const([[1.0, -inf, 2.0]])),
    "-inf several": Cell(_const([[-inf, 1.0, -inf, -inf]])),
    "-inf all": Cell(_const([[-inf, -inf, -inf], [1.0, 2.0, 3.0]])),
    "nan one": Cell(_const([[1.0, nan, 2.0], [1.0, 2.0, 3.0]])),
    "nan several": Cell(_const([[nan, 1.0, nan]])),
    "nan all": Cell(_const([[nan, nan, nan]])),
    "+inf, -inf and nan": Cell(_const([[inf, -inf, 1.0], [nan, -inf, 1.0]])),
    # extreme finite logits
    "float max": Cell(lambda dt: np.array([[_fmax(dt), _fmax(dt), 0.0]])),
    "float max and its negative": Cell(lambda dt: np.array([[_fmax(dt), -_fmax(dt), 0.0]])),
    "negative float max everywhere": Cell(lambda dt: np.full((2, 3), -_fmax(dt))),
    "subnormals": Cell(
        lambda dt: np.array([[_tiny(dt), 0.0, -_tiny(dt), 3 * _tiny(dt)], [_tiny(dt)] * 4])
    ),
    "all equal": Cell(_const([[7.0] * 4, [-3e30] * 4, [0.0] * 4])),
    # shapes
    "single-element axis": Cell(_const([[2.0], [-5.0], [inf], [-inf], [nan]])),
    "empty axis": Cell(lambda dt: np.zeros((3, 0))),
    "empty batch": Cell(lambda dt: np.zeros((0, 4))),
    "empty, axis=None": Cell(lambda dt: np.zeros((2, 0)), axis=None),
    "0-d, axis=None": Cell(lambda dt: np.array(2.5), axis=None),
    "0-d -inf, axis=None": Cell(lambda dt: np.array(-inf), axis=None),
    "tuple axis with +inf": Cell(
        lambda dt: np.where(
            np.arange(12).reshape(2, 3, 2) == 7, inf, np.arange(12.0).reshape(2, 3, 2)
        ),
        axis=(0, 2),
    ),
    # masks (compared with jax.nn.softmax(..., where=))
    "mask removes all": Cell(
        _const([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        where=np.array([[False] * 3, [True, True, False]]),
    ),
    "mask keeps one": Cell(
        _const([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        where=np.array([[False, True, False], [True, False, False]]),
    ),
    "mask hides nan and +inf": Cell(
        _const([[1.0, nan, inf, 2.0]]), where=np.array([[True, False, False, True]])
    ),
    "mask keeps only -inf": Cell(
        _const([[-inf, -inf, 5.0], [-inf, 0.0, 5.0]]), where=np.array([[True, True, False]] * 2)
    ),
    "mask broadcast": Cell(
        _const([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]), where=np.array([True, False, True])
    ),
}


# -- references -----------------------------------------------------------------------------------
def _row_torch(kind: str, log: bool, row: np.ndarray, t: np.ndarray, dtype: str) -> np.ndarray:
    import torch

    tdt = getattr(torch, dtype)

    def f(a: Any) -> Any:
        return torch.log_softmax(a, -1) if log else torch.softmax(a, -1)

    x = torch.tensor(row, dtype=tdt)
    if kind == "forward":
        out = f(x)
    elif kind == "jvp":
        with warnings.catch_warnings():  # torch's first forward-mode call imports torch.jit code
            warnings.filterwarnings(
                "ignore", "`torch.jit.script` is deprecated", DeprecationWarning
            )
            out = torch.func.jvp(f, (x,), (torch.tensor(t, dtype=tdt),))[1]
    elif kind == "vjp":
        out = torch.func.vjp(f, x)[1](torch.tensor(t, dtype=tdt))[0]
    else:
        out = torch.func.jacrev(f)(x)
    return np.asarray(out.to(torch.float64).numpy())


def _row_jax(
    kind: str, log: bool, row: np.ndarray, t: np.ndarray, mask: np.ndarray | None, dtype: str
) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        jdt = getattr(jnp, dtype)
        w = None if mask is None else jnp.asarray(mask)

        def f(a: Any) -> Any:
            return (jax.nn.log_softmax if log else jax.nn.softmax)(a, axis=-1, where=w)

        x = jnp.asarray(row, dtype=jdt)
        tt = jnp.asarray(t, dtype=jdt)
        if kind == "forward":
            out = f(x)
        elif kind == "jvp":
            out = jax.jvp(f, (x,), (tt,))[1]
        elif kind == "vjp":
            out = jax.vjp(f, x)[1](tt)[0]
        else:
            out = jax.jacfwd(f)(x)
        return np.asarray(out, dtype=np.float64)


def _assert_agree(a: np.ndarray, b: np.ndarray, dtype: str, what: str) -> None:
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


_CACHE: dict[tuple[Any, ...], np.ndarray] = {}


def reference(
    kind: str,
    log: bool,
    x: np.ndarray,
    t: np.ndarray,
    axis: Axis,
    where: np.ndarray | None,
    dtype: str,
) -> np.ndarray:
    """:func:`_reference`, computed once per input (the frameworks are slow to call per row)."""
    key = (
        kind,
        log,
        x.shape,
        x.tobytes(),
        t.tobytes(),
        axis,
        None if where is None else (where.shape, where.tobytes()),
        dtype,
    )
    if key not in _CACHE:
        _CACHE[key] = _reference(kind, log, x, t, axis, where, dtype)
    return _CACHE[key].copy()


def _reference(
    kind: str,
    log: bool,
    x: np.ndarray,
    t: np.ndarray,
    axis: Axis,
    where: np.ndarray | None,
    dtype: str,
) -> np.ndarray:
    """torch's and JAX's answer for one cell (they are checked to agree); JAX's alone with a mask.

    ``kind`` is forward, jvp, vjp or jac; ``t`` the tangent / cotangent. The Jacobian comes back
    in our layout, batch + (C, C).
    """
    rows, trows = _rows(x, axis), _rows(t, axis)
    mask = None if where is None else _rows(np.broadcast_to(where, x.shape), axis)
    c = rows.shape[-1]
    out_shape = (*rows.shape, c) if kind == "jac" else rows.shape
    out = np.zeros(out_shape)
    for idx in np.ndindex(rows.shape[:-1]):
        if c == 0:
            continue
        m = None if mask is None else mask[idx]
        j = _row_jax(kind, log, rows[idx], trows[idx], m, dtype)
        if m is None:
            tr = _row_torch(kind, log, rows[idx], trows[idx], dtype)
            _assert_agree(tr, j, dtype, f"torch and JAX disagree on {kind} of row {rows[idx]}")
        out[idx] = j
    return out if kind == "jac" else _unrows(out, x.shape, axis)


# -- helpers ---------------------------------------------------------------------------------------
def _skip_unsupported(lib: Lib, dtype: str) -> None:
    if dtype == "float64" and lib.backend.is_jax:
        import jax

        if not jax.config.jax_enable_x64:
            pytest.skip("JAX float64 needs jax_enable_x64")


def _in_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """The values the array really holds in ``dtype`` (float max stays finite), as float64."""
    return x.astype(dtype).astype(np.float64)


def _tangent(shape: tuple[int, ...]) -> np.ndarray:
    n = math.prod(shape)
    return np.linspace(-1.5, 2.0, n).reshape(shape) if n else np.zeros(shape)


def _where_arg(lib: Lib, where: np.ndarray | None) -> dict[str, Any]:
    return {} if where is None else {"where": lib.asarray(where)}


def _call_derivative(
    lib: Lib, name: str, fwd: np.ndarray, t: np.ndarray, cell: Cell, dtype: str, make: Any = None
) -> Any:
    make = make or (lambda a: lib.asarray(a, dtype))
    fn = DERIVATIVES[name]
    kw: dict[str, Any] = {"axis": cell.axis}
    if name in MASK_AWARE:
        kw.update(_where_arg(lib, cell.where))
    if name.endswith("jacobian"):
        return lib.call(fn, make(fwd), **kw)
    return lib.call(fn, make(fwd), make(t), **kw)


def _kind(name: str) -> str:
    return {"jvp": "jvp", "vjp": "vjp", "jacobian": "jac"}[name.rsplit("_", 1)[1]]


# -- the table, cell by cell ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fname", list(FORWARD))
@pytest.mark.parametrize("cell", list(CELLS))
def test_forward_cell(lib: Lib, cell: str, fname: str, dtype: str) -> None:
    _skip_unsupported(lib, dtype)
    c = CELLS[cell]
    x = _in_dtype(c.data(np.dtype(dtype)), dtype)
    expected = reference("forward", fname == "log_softmax", x, x, c.axis, c.where, dtype)
    out = lib.call(FORWARD[fname], lib.asarray(x, dtype), axis=c.axis, **_where_arg(lib, c.where))
    assert_close(lib, out, expected, dtype=dtype)
    if c.where is not None:  # docs/design.md: masked out -> 0 (log: -inf); all-masked -> never NaN
        got = lib.to_numpy(out)
        masked = ~np.broadcast_to(c.where, x.shape)
        assert np.all(got[masked] == (-inf if fname == "log_softmax" else 0.0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fname", list(DERIVATIVES))
@pytest.mark.parametrize("cell", list(CELLS))
def test_derivative_cell(lib: Lib, cell: str, fname: str, dtype: str) -> None:
    _skip_unsupported(lib, dtype)
    c = CELLS[cell]
    log = fname.startswith("log_")
    x = _in_dtype(c.data(np.dtype(dtype)), dtype)
    t = _in_dtype(_tangent(x.shape), dtype)
    fwd = _in_dtype(reference("forward", log, x, x, c.axis, c.where, dtype), dtype)
    kind = _kind(fname)
    expected = reference(kind, log, x, t, c.axis, c.where, dtype)
    out = _call_derivative(lib, fname, fwd, t, c, dtype)
    if fname == "log_softmax_jacobian" and c.where is not None:
        # log_softmax_jacobian takes no mask: from l alone a masked entry (-inf) looks like a -inf
        # logit, whose row is I - 1 softmaxᵀ (torch and JAX agree on that), not JAX's masked zero.
        # The rows of unmasked entries are JAX's; the masked rows are those of a -inf logit.
        rows_mask = _rows(np.broadcast_to(c.where, x.shape), c.axis)
        p = np.exp(_rows(fwd, c.axis))
        eye = np.eye(p.shape[-1])
        as_neg_inf = eye - p[..., None, :]  # what torch/JAX give at a -inf logit's row
        expected = np.where(rows_mask[..., :, None], expected, as_neg_inf)
    if c.where is not None and fname not in MASK_AWARE:
        # A slice whose unmasked logits are all -inf is NaN (as in JAX) with 0 at its masked
        # entries. A kernel given only that output cannot tell masked from -inf entries: its
        # values there are unspecified (NaN or 0; JAX gives 0). Everything else must match.
        free = _unspecified(np.broadcast_to(c.where, x.shape), fwd, c.axis, jac=kind == "jac")
        expected = np.where(free, np.nan_to_num(lib.to_numpy(out), nan=0.0), expected)
        expected[free & np.isnan(lib.to_numpy(out))] = np.nan
    assert_close(lib, out, expected, dtype=dtype, shape=expected.shape)


def _unspecified(where: np.ndarray, fwd: np.ndarray, axis: Axis, *, jac: bool) -> np.ndarray:
    """Masked positions of NaN slices, in the output layout (batch + (C, C) for a Jacobian)."""
    mask, f = _rows(where, axis), _rows(fwd, axis)
    nan_slice = np.isnan(f).any(axis=-1, keepdims=True)
    if jac:
        m = ~mask
        return nan_slice[..., None] & (m[..., :, None] | m[..., None, :])
    return _unrows(nan_slice & ~mask, where.shape, axis)


# -- layouts: views, strides, memory order, byte order, read-only ---------------------------------
def _layout(lib: Lib, kind: str, a: np.ndarray, dtype: str) -> Any:
    """An array of ``lib`` holding ``a``'s values in the given memory layout."""
    b = lib.backend
    if kind == "non-contiguous view":
        base = np.zeros((a.shape[0], 2 * a.shape[1]))
        base[:, ::2] = a
        return lib.asarray(base, dtype)[:, ::2]
    if kind == "negative strides":
        flipped = np.ascontiguousarray(a[::-1, ::-1])
        if b.is_torch:  # torch has no negative strides: flip() is its way to reverse
            return lib.asarray(flipped, dtype).flip((0, 1))
        return lib.asarray(flipped, dtype)[::-1, ::-1]
    if kind == "Fortran order":
        if b in (Backend.NUMPY, Backend.NUMPY_READONLY):
            out = np.asfortranarray(a.astype(dtype))
            out.flags.writeable = b is Backend.NUMPY
            return out
        t = lib.asarray(np.ascontiguousarray(a.T), dtype)
        return t.T if b.is_torch or b is Backend.DASK else lib.xp.permute_dims(t, (1, 0))
    if kind == "big-endian":
        if b not in (Backend.NUMPY, Backend.NUMPY_READONLY, Backend.DASK):
            pytest.skip(f"{b.value} has no byte order other than the native one")
        be = a.astype(np.dtype(dtype).newbyteorder(">"))
        if b is Backend.DASK:
            import dask.array as da

            return da.from_array(be, chunks=(1, 2))
        be.flags.writeable = b is Backend.NUMPY
        return be
    if kind == "read-only":
        if b is not Backend.NUMPY:
            pytest.skip("read-only: NumPy arrays with writeable=False (numpy_readonly tests all)")
        out = a.astype(dtype)
        out.flags.writeable = False
        return out
    raise AssertionError(kind)


LAYOUTS = ["non-contiguous view", "negative strides", "Fortran order", "big-endian", "read-only"]
LAYOUT_X = np.array(
    [[0.5, -1.0, 2.0, 3.5, -inf], [1.0, 1.0, 1.0, 1.0, 1.0], [4.0, -2.0, 0.0, 7.0, 0.25]]
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fname", list(FORWARD) + list(DERIVATIVES))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_cell(lib: Lib, layout: str, fname: str, dtype: str) -> None:
    _skip_unsupported(lib, dtype)
    x = _in_dtype(LAYOUT_X, dtype)
    cell = Cell(lambda dt: x)
    if fname in FORWARD:
        expected = reference("forward", fname == "log_softmax", x, x, -1, None, dtype)
        out = lib.call(FORWARD[fname], _layout(lib, layout, x, dtype))
        assert_close(lib, out, expected, dtype=dtype)
        return
    log = fname.startswith("log_")
    t = _in_dtype(_tangent(x.shape), dtype)
    fwd = _in_dtype(reference("forward", log, x, x, -1, None, dtype), dtype)
    expected = reference(_kind(fname), log, x, t, -1, None, dtype)
    out = _call_derivative(
        lib, fname, fwd, t, cell, dtype, make=lambda a: _layout(lib, layout, a, dtype)
    )
    assert_close(lib, out, expected, dtype=dtype, shape=expected.shape)
