"""References the tests compare with: the real thing, never a copy of our formula.

- torch backends: torch.softmax / torch.log_softmax and torch.func (jvp, vjp, jacrev), float64.
- JAX backends: jax.nn.softmax / jax.nn.log_softmax and jax.jvp / jax.vjp / jax.jacfwd, float64
  (inside a scoped ``jax.enable_x64``).
- everything else: scipy.special.softmax / log_softmax in float64, and central finite
  differences of it.

Inputs and outputs are NumPy float64 arrays; the per-slice Jacobian has the layout of docs/design.md
(batch axes in their original order, then (C, C), the softmax axes flattened in C order).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from _support import Lib

from softmax_xp._testing import fd_jacobian

Axis = int | tuple[int, ...] | None


def norm_axis(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    return tuple(sorted(a % ndim for a in items))


def to_rows(a: np.ndarray, axis: Axis) -> np.ndarray:
    """Move the softmax axes last and flatten them: shape batch + (C,)."""
    axes = norm_axis(axis, a.ndim)
    batch = tuple(i for i in range(a.ndim) if i not in axes)
    moved = np.transpose(a, batch + axes)
    c = math.prod(a.shape[i] for i in axes)
    return np.array(moved.reshape((*moved.shape[: len(batch)], c)), copy=True)


def from_rows(rows: np.ndarray, shape: tuple[int, ...], axis: Axis) -> np.ndarray:
    axes = norm_axis(axis, len(shape))
    batch = tuple(i for i in range(len(shape)) if i not in axes)
    moved = rows.reshape(tuple(shape[i] for i in batch) + tuple(shape[i] for i in axes))
    return np.transpose(moved, np.argsort(batch + axes))


# ------------------------------------------------------------------------------------------------
# scipy + finite differences
# ------------------------------------------------------------------------------------------------
def _scipy_rows(rows: np.ndarray, mask: np.ndarray | None, log: bool) -> np.ndarray:
    from scipy.special import log_softmax, softmax

    fn = log_softmax if log else softmax
    out = np.full(rows.shape, -np.inf if log else 0.0)
    for idx in np.ndindex(rows.shape[:-1]):
        r = rows[idx]
        keep = np.ones(r.shape, bool) if mask is None else mask[idx]
        if keep.any():
            out[idx][keep] = fn(r[keep])
    return out


def _fd_rows(rows: np.ndarray, mask: np.ndarray | None, log: bool) -> np.ndarray:
    return fd_jacobian(lambda r: _scipy_rows(r, mask, log), rows, mask)


# ------------------------------------------------------------------------------------------------
# framework autodiff
# ------------------------------------------------------------------------------------------------
def _torch_fn(log: bool, mask: np.ndarray | None) -> Callable[..., object]:
    import torch

    m = None if mask is None else torch.from_numpy(mask)

    def f(r: torch.Tensor) -> torch.Tensor:  # r: rows, softmax over the last axis
        if m is None:
            return torch.log_softmax(r, -1) if log else torch.softmax(r, -1)
        filled = r.masked_fill(~m, -math.inf)
        out = torch.log_softmax(filled, -1) if log else torch.softmax(filled, -1)
        return torch.where(m, out, torch.tensor(-math.inf if log else 0.0, dtype=r.dtype))

    return f


def _jax_fn(log: bool, mask: np.ndarray | None) -> Callable[..., object]:
    import jax

    def f(r: object) -> object:
        fn = jax.nn.log_softmax if log else jax.nn.softmax
        return fn(r, axis=-1, where=mask)

    return f


def _framework(lib: Lib) -> str:
    if lib.backend.is_torch:
        return "torch"
    if lib.backend.is_jax:
        return "jax"
    return "fd"


def forward(
    lib: Lib, x: np.ndarray, axis: Axis, *, log: bool, where: np.ndarray | None = None
) -> np.ndarray:
    rows = to_rows(x, axis)
    mask = None if where is None else to_rows(np.broadcast_to(where, x.shape), axis)
    kind = _framework(lib)
    if kind == "torch":
        import torch

        out = _torch_fn(log, mask)(torch.from_numpy(rows.copy())).numpy()  # type: ignore[attr-defined]
    elif kind == "jax":
        import jax

        with jax.enable_x64(True):
            out = np.asarray(_jax_fn(log, mask)(rows))
    else:
        out = _scipy_rows(rows, mask, log)
    return from_rows(np.asarray(out, dtype=np.float64), x.shape, axis)


def jacobian(
    lib: Lib, x: np.ndarray, axis: Axis, *, log: bool, where: np.ndarray | None = None
) -> np.ndarray:
    """Per-slice Jacobian, layout batch + (C, C)."""
    rows = to_rows(x, axis)
    mask = None if where is None else to_rows(np.broadcast_to(where, x.shape), axis)
    kind = _framework(lib)
    c = rows.shape[-1]
    flat = rows.reshape(-1, c)
    fmask = None if mask is None else mask.reshape(-1, c)
    if kind == "torch":
        import torch

        jacs = []
        for i in range(flat.shape[0]):
            mi = None if fmask is None else fmask[i]
            jac_i = torch.func.jacrev(_torch_fn(log, mi))(torch.from_numpy(flat[i].copy()))
            jacs.append(jac_i.numpy())
        jac = np.stack(jacs) if jacs else np.zeros((0, c, c))
        if fmask is not None:
            jac = jac * fmask[:, :, None] * fmask[:, None, :]
    elif kind == "jax":
        import jax

        with jax.enable_x64(True):
            jacs = [
                np.asarray(jax.jacfwd(_jax_fn(log, None if fmask is None else fmask[i]))(flat[i]))
                for i in range(flat.shape[0])
            ]
        jac = np.stack(jacs) if jacs else np.zeros((0, c, c))
        if fmask is not None:
            jac = jac * fmask[:, :, None] * fmask[:, None, :]
    else:
        jac = _fd_rows(flat, fmask, log)
    return np.nan_to_num(jac.reshape((*rows.shape, c)), nan=0.0)


def jvp(
    lib: Lib,
    x: np.ndarray,
    v: np.ndarray,
    axis: Axis,
    *,
    log: bool,
    where: np.ndarray | None = None,
) -> np.ndarray:
    """J v per slice, by the framework's own forward mode (torch.func.jvp / jax.jvp) or FD."""
    rows, vrows = to_rows(x, axis), to_rows(v, axis)
    mask = None if where is None else to_rows(np.broadcast_to(where, x.shape), axis)
    kind = _framework(lib)
    if kind == "torch":
        import torch

        _, out = torch.func.jvp(
            _torch_fn(log, mask),
            (torch.from_numpy(rows.copy()),),
            (torch.from_numpy(vrows.copy()),),
        )
        res = out.numpy()
    elif kind == "jax":
        import jax

        with jax.enable_x64(True):
            _, out = jax.jvp(_jax_fn(log, mask), (rows,), (vrows,))
            res = np.asarray(out)
    else:
        res = np.einsum("...ij,...j->...i", _fd_rows(rows, mask, log), vrows)
    if mask is not None:
        res = np.where(mask, res, 0.0)
    return from_rows(np.asarray(res, dtype=np.float64), x.shape, axis)


def vjp(
    lib: Lib,
    x: np.ndarray,
    g: np.ndarray,
    axis: Axis,
    *,
    log: bool,
    where: np.ndarray | None = None,
) -> np.ndarray:
    """gᵀ J per slice, by the framework's reverse mode (torch.func.vjp / jax.vjp) or FD."""
    rows, grows = to_rows(x, axis), to_rows(g, axis)
    mask = None if where is None else to_rows(np.broadcast_to(where, x.shape), axis)
    kind = _framework(lib)
    if kind == "torch":
        import torch

        _, pull = torch.func.vjp(_torch_fn(log, mask), torch.from_numpy(rows.copy()))
        gt = torch.from_numpy(grows.copy())
        if mask is not None:
            gt = torch.where(torch.from_numpy(mask), gt, 0.0)
        res = pull(gt)[0].numpy()
    elif kind == "jax":
        import jax

        with jax.enable_x64(True):
            _, pull = jax.vjp(_jax_fn(log, mask), rows)
            gj = grows if mask is None else np.where(mask, grows, 0.0)
            res = np.asarray(pull(gj)[0])
    else:
        res = np.einsum("...i,...ij->...j", grows, _fd_rows(rows, mask, log))
    return from_rows(np.nan_to_num(np.asarray(res, dtype=np.float64), nan=0.0), x.shape, axis)
