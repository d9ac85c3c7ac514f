"""Layer 3: torch fast paths.

Each function here has the signature of its twin in ``softmax_xp._generic`` and returns
``NotImplemented`` where it does not apply. Kernels not defined here use the generic code.

- ``softmax`` / ``log_softmax`` without a mask run ``torch.softmax`` / ``torch.log_softmax`` (one
  fused ATen kernel on every device). A tuple of adjacent axes is flattened into one dimension (a
  view for contiguous input); other tuples are permuted last first. Masks use the generic code.
- ``softmax_vjp`` and ``softmax_jvp`` (the same product, as J is symmetric) run
  ``torch._softmax_backward_data``; ``log_softmax_vjp`` without a mask runs
  ``torch._log_softmax_backward_data``: the kernels torch's own autograd uses.
- The dense Jacobians are written in closed form in one pass over the output.

Large results on the CPU (32 MiB and more, outside autograd, torch.func and torch.compile) are
written by the same ATen kernels through their ``out=`` overloads into a fresh buffer advised
``MADV_HUGEPAGE`` before its first touch (``_rows.advise_hugepages``, what NumPy does for its own
large arrays): torch's CPU allocator maps large buffers fresh in 4 KiB pages, and their page
faults cost more than the kernel itself (measured, 1024x32768 float32: torch.softmax 52 ms, the
same kernel into an advised buffer 19 ms; a 64x512x512 Jacobian 21 ms vs 5 ms).

All of these are ordinary differentiable ATen operations with batching rules, so they also run
inside the autograd.Function of layer 4 and on ``torch.func``-wrapped tensors (vmap, grad, jvp,
jacrev); where an in-place write would not be safe there (the Jacobian's diagonal) the out-of-place
form is used instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import _generic
from . import _host

Array = Any
Namespace = Any
Axes = tuple[int, ...]

_FLOATS = (torch.float32, torch.float64)

#: Results at least this large get a huge-page-advised buffer: glibc maps allocations of 32 MiB
#: and more fresh from the kernel every time (below, it reuses freed heap memory, already mapped).
_HUGE_MIN_BYTES = 32 * 1024 * 1024


def _huge_out(
    like: torch.Tensor, shape: tuple[int, ...] | None = None, others: Sequence[torch.Tensor] = ()
) -> torch.Tensor | None:
    """A fresh contiguous CPU buffer advised MADV_HUGEPAGE for a result computed from ``like``
    and ``others``, or None where that does not apply (small, not dense CPU tensors, any operand
    tracked by autograd or torch.func, under torch.compile): ``out=`` overloads refuse autograd."""
    shape = tuple(like.shape) if shape is None else shape
    nbytes = math.prod(shape) * like.element_size()
    if (
        not _host.HAVE_ROWS
        or nbytes < _HUGE_MIN_BYTES
        or torch.compiler.is_compiling()
        or not all(
            t.device.type == "cpu" and t.layout == torch.strided and _plain(t)
            for t in (like, *others)
        )
    ):
        return None
    # device= explicitly: torch.set_default_device / `with torch.device(...)` must not move it
    out = torch.empty(shape, dtype=like.dtype, device=like.device)
    _host.advise_hugepages(out.data_ptr(), nbytes)
    return out


def _applies(*arrays: Any) -> bool:
    a = arrays[0]
    return (
        all(isinstance(b, torch.Tensor) for b in arrays)
        and a.dtype in _FLOATS
        and all(b.dtype == a.dtype and b.shape == a.shape for b in arrays)
    )


def _over_one_dim(
    fn: Callable[[list[torch.Tensor], int], torch.Tensor], arrays: list[torch.Tensor], axis: Axes
) -> torch.Tensor:
    """Run ``fn(arrays, dim)`` with the softmax axes gathered into the single dimension ``dim``."""
    if len(axis) == 1:
        return fn(arrays, axis[0])
    shape = arrays[0].shape
    sizes = tuple(shape[a] for a in axis)
    if axis == tuple(range(axis[0], axis[-1] + 1)):  # adjacent: flatten them (a view if possible)
        # reshape, not flatten: torch's legacy vmap (gradcheck) has no batching rule for flatten
        c = math.prod(sizes)  # explicit, not -1: a zero-size tensor makes -1 ambiguous
        flat = [a.reshape((*a.shape[: axis[0]], c, *a.shape[axis[-1] + 1 :])) for a in arrays]
        return _unflatten(fn(flat, axis[0]), axis[0], sizes)
    ndim = arrays[0].ndim
    batch = tuple(a for a in range(ndim) if a not in axis)
    perm = batch + axis
    inv = [0] * ndim
    for i, p in enumerate(perm):
        inv[p] = i
    nb = len(batch)
    moved = [
        m.reshape((*m.shape[:nb], math.prod(sizes))) for m in (a.permute(perm) for a in arrays)
    ]
    out = _unflatten(fn(moved, nb), nb, sizes)
    return out.permute(inv)


def _unflatten(t: torch.Tensor, dim: int, sizes: tuple[int, ...]) -> torch.Tensor:
    return t.reshape((*t.shape[:dim], *sizes, *t.shape[dim + 1 :]))


def _forward(x: Array, axis: Axes, where: Array | None, log: bool) -> Array:
    if where is not None or not axis or not _applies(x):
        return NotImplemented
    op = torch.log_softmax if log else torch.softmax
    op_out = torch.ops.aten._log_softmax.out if log else torch.ops.aten._softmax.out

    def fn(a: list[torch.Tensor], dim: int) -> torch.Tensor:
        out = _huge_out(a[0])
        if out is not None:
            return op_out(a[0], dim, False, out=out)  # type: ignore[no-any-return]
        return op(a[0], dim)

    return _over_one_dim(fn, [x], axis)


def softmax(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """``torch.softmax`` over ``axis`` (no mask)."""
    return _forward(x, axis, where, log=False)


def log_softmax(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """``torch.log_softmax`` over ``axis`` (no mask)."""
    return _forward(x, axis, where, log=True)


def _softmax_product(y: Array, v: Array, axis: Axes) -> Array:
    if not axis or not _applies(y, v):
        return NotImplemented

    def fn(a: list[torch.Tensor], dim: int) -> torch.Tensor:
        out = _huge_out(a[0], others=a[1:])
        if out is not None:
            return torch.ops.aten._softmax_backward_data.out(  # type: ignore[no-any-return]
                a[1], a[0], dim, a[0].dtype, grad_input=out
            )
        return torch._softmax_backward_data(a[1], a[0], dim, a[0].dtype)

    return _over_one_dim(fn, [y, v], axis)


def softmax_vjp(y: Array, g: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y * (g - <g, y>)`` by ``torch._softmax_backward_data``."""
    return _softmax_product(y, g, axis)


def softmax_jvp(y: Array, v: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y * (v - <y, v>)``: J is symmetric, so torch's softmax backward kernel computes it."""
    return _softmax_product(y, v, axis)


def log_softmax_vjp(
    l: Array,
    g: Array,
    /,
    *,
    axis: Axes,
    where: Array | None = None,
    xp: Namespace,
) -> Array:
    """``g - exp(l) * sum(g)`` by ``torch._log_softmax_backward_data`` (no mask)."""
    if where is not None or not axis or not _applies(l, g):
        return NotImplemented

    def fn(a: list[torch.Tensor], dim: int) -> torch.Tensor:
        out = _huge_out(a[0], others=a[1:])
        if out is not None:
            return torch.ops.aten._log_softmax_backward_data.out(  # type: ignore[no-any-return]
                a[1], a[0], dim, a[0].dtype, out=out
            )
        return torch._log_softmax_backward_data(a[1], a[0], dim, a[0].dtype)

    return _over_one_dim(fn, [l, g], axis)


def _plain(t: torch.Tensor) -> bool:
    """True for a tensor outside autograd and torch.func: in-place writes on results are safe."""
    if t.requires_grad:
        return False
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is None:  # pragma: no cover - very old torch
        return False
    return not bool(functorch.is_functorch_wrapped_tensor(t))


def _rows(y: torch.Tensor, axis: Axes) -> torch.Tensor:
    return _generic.to_rows(y, axis, _XP)  # type: ignore[no-any-return]


class _TorchReshape:
    """The two namespace calls ``_generic.to_rows`` makes, on plain torch (no compat wrapper)."""

    @staticmethod
    def permute_dims(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
        return x.permute(axes)

    @staticmethod
    def reshape(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return x.reshape(shape)


_XP = _TorchReshape()


def softmax_jacobian(y: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y_i (δ_ij - y_j)`` in closed form: one write of the ``N·C²`` output."""
    if not _applies(y) or math.prod(y.shape) == 0:
        return NotImplemented
    r = _rows(y, axis)
    out = _huge_out(r, (*r.shape, r.shape[-1]))
    if out is not None:
        jac = torch.mul(r.unsqueeze(-1), r.neg().unsqueeze(-2), out=out)
    else:
        jac = r.unsqueeze(-1) * r.neg().unsqueeze(-2)
    diag = r * (1 - r)
    if _plain(jac):
        jac.diagonal(0, -2, -1).copy_(diag)
        return jac
    return torch.diagonal_scatter(jac, diag, 0, -2, -1)


def log_softmax_jacobian(l: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``δ_ij - softmax_j`` in closed form: one write of the ``N·C²`` output."""
    if not _applies(l) or math.prod(l.shape) == 0:
        return NotImplemented
    p = torch.exp(_rows(l, axis))
    c = p.shape[-1]
    eye = torch.eye(c, dtype=p.dtype, device=p.device)
    out = _huge_out(p, (*p.shape, c))
    if out is not None:
        return torch.sub(eye, p.unsqueeze(-2), out=out)
    return eye - p.unsqueeze(-2)


# -- logsumexp and the cross-entropies ---------------------------------------------------------------
# One class dimension, no mask (other calls take the generic kernel). On dense CPU tensors outside
# autograd, torch.func and torch.compile, the lse and the softmax-times-cotangent come from the
# NumPy fast path's C row kernels on zero-copy views (one read of x for the lse; one read and one
# write for the VJP): torch.logsumexp takes an amax pass, an x - max temporary, an exp pass and a
# sum, and torch's cross_entropy keeps an N x C log_softmax. Elsewhere (CUDA, autograd recording
# a second derivative, torch.func, torch.compile) the same values come from differentiable ATen
# operations: torch.logsumexp, and torch.softmax for ``exp(x - lse)`` (the same edge values).

_NP_XP: Any = None


def _np_xp() -> Any:
    global _NP_XP
    if _NP_XP is None:
        import array_api_compat.numpy as np_xp

        _NP_XP = np_xp
    return _NP_XP


def _one_dim(x: Any, axis: Axes, where: Any) -> int | None:
    """The class dimension where the fast paths below apply, else None."""
    if where is not None or len(axis) != 1 or not isinstance(x, torch.Tensor):
        return None
    if x.dtype not in _FLOATS or x.numel() == 0:  # (validation refused sparse layouts)
        return None
    return axis[0]


def _host_rows(name: str, arrays: Sequence[torch.Tensor], axis: Axes, **options: Any) -> Any:
    """Kernel ``name`` of the NumPy fast path (the C row kernels) on zero-copy views of dense,
    plain CPU tensors, while autograd records nothing; NotImplemented otherwise. A kernel with
    several results gives a tuple of tensors."""
    if not _host.HAVE_ROWS or torch.compiler.is_compiling():
        return NotImplemented
    grad = torch.is_grad_enabled()
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    for a in arrays:
        if not a.is_cpu or wrapped(a) or (grad and a.requires_grad):
            return NotImplemented
    from . import _numpy

    views = [(a.detach() if a.requires_grad else a).numpy() for a in arrays]
    out = getattr(_numpy, name)(*views, axis=axis, xp=_np_xp(), **options)
    if out is NotImplemented:
        return out
    return tuple(map(torch.from_numpy, out)) if isinstance(out, tuple) else torch.from_numpy(out)


def _lse(x: torch.Tensor, dim: int) -> torch.Tensor:
    out = _host_rows("logsumexp", [x], (dim,))
    return torch.logsumexp(x, dim, keepdim=True) if out is NotImplemented else out


def _probs_times(x: torch.Tensor, lse: torch.Tensor, g: torch.Tensor, dim: int) -> torch.Tensor:
    """``g * softmax(x)`` (``g`` per slice), NaN throughout a slice whose lse is not finite."""
    if g.shape == lse.shape and g.dtype == x.dtype:
        out = _host_rows("logsumexp_vjp", [x, lse, g], (dim,))
        if out is not NotImplemented:
            return out  # type: ignore[no-any-return]
    return torch.softmax(x, dim) * g


def logsumexp(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """The C row kernels (one read of ``x``) on the CPU, else ``torch.logsumexp``."""
    dim = _one_dim(x, axis, where)
    return NotImplemented if dim is None else _lse(x, dim)


def logsumexp_vjp(
    x: Array, lse: Array, g: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Array:
    """``g * softmax(x)``: the C row kernels in one pass on the CPU, else ``torch.softmax``."""
    dim = _one_dim(x, axis, where)
    if dim is None or not _applies(lse, g):
        return NotImplemented
    return _probs_times(x, lse, g, dim)


def logsumexp_jvp(
    x: Array, lse: Array, v: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Array:
    """``<softmax(x), v>`` by ``torch.softmax``."""
    dim = _one_dim(x, axis, where)
    if dim is None or not _applies(x, v):
        return NotImplemented
    return (torch.softmax(x, dim) * v).sum(dim, keepdim=True)


def _labels_parts(
    x: torch.Tensor, labels: torch.Tensor, dim: int, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The labels clamped into range (for gather/scatter), whether each counts, and whether
    each is out of range and not ignored (keepdims)."""
    c = x.shape[dim]
    valid = (labels >= 0) & (labels < c)
    bad = ~valid
    if ignore_index is not None:
        valid = valid & (labels != ignore_index)
        bad = bad & (labels != ignore_index)
    return labels.clamp(0, c - 1), valid, bad


def softmax_cross_entropy_with_integer_labels(
    x: Array, labels: Array, /, *, axis: Axes, where: Array | None = None,
    label_smoothing: float = 0.0, ignore_index: int | None = None, xp: Namespace,
) -> Any:  # fmt: skip
    """``(1 - eps) (lse - x[label]) + eps (lse - mean(x))`` from one lse pass and a gather."""
    dim = _one_dim(x, axis, where)
    if dim is None or not isinstance(labels, torch.Tensor) or labels.device != x.device:
        return NotImplemented
    opts = {"label_smoothing": label_smoothing, "ignore_index": ignore_index}
    host = _host_rows("softmax_cross_entropy_with_integer_labels", [x, labels], axis, **opts)
    if host is not NotImplemented:  # one C pass: the loss and the lse together
        return host
    lse = _lse(x, dim)
    lab, valid, bad = _labels_parts(x, labels, dim, ignore_index)
    loss = lse - x.gather(dim, lab)
    if label_smoothing:
        eps = label_smoothing
        loss = (1.0 - eps) * loss + eps * (lse - x.mean(dim, keepdim=True))
    nan = torch.tensor(math.nan, dtype=x.dtype, device=x.device)
    loss = torch.where(valid, torch.where(torch.isfinite(lse), loss, nan), 0.0)
    return torch.where(bad, nan, loss), lse


def softmax_cross_entropy_with_integer_labels_vjp(
    x: Array, labels: Array, lse: Array, g: Array, h: Array, /, *, axis: Axes,
    where: Array | None = None, label_smoothing: float = 0.0, ignore_index: int | None = None,
    xp: Namespace,
) -> Any:  # fmt: skip
    """``(g S + h) softmax - g onehot`` (smoothed): one softmax-times-cotangent pass and a
    scatter (and one more pass with label smoothing)."""
    dim = _one_dim(x, axis, where)
    if dim is None or not _applies(lse, g, h) or not isinstance(labels, torch.Tensor):
        return NotImplemented
    opts = {"label_smoothing": label_smoothing, "ignore_index": ignore_index}
    name = "softmax_cross_entropy_with_integer_labels_vjp"
    host = _host_rows(name, [x, labels, lse, g, h], axis, **opts)
    if host is not NotImplemented:  # one C pass: read x, write dx
        return host
    lab, valid, _ = _labels_parts(x, labels, dim, ignore_index)
    gv = torch.where(valid, g, 0.0)  # the loss's cotangent where the label counts
    dx = _probs_times(x, lse, gv + h, dim)
    eps = label_smoothing
    # in place on a fresh result nothing else refers to, where nothing records it
    inplace = not torch.compiler.is_compiling() and not torch.is_grad_enabled() and _plain(dx)
    if inplace:
        dx.scatter_add_(dim, lab, -(1.0 - eps) * gv)
        if eps:
            dx.sub_(gv * (eps / x.shape[dim]))
        return dx
    dx = dx.scatter_add(dim, lab, -(1.0 - eps) * gv)
    return dx - gv * (eps / x.shape[dim]) if eps else dx


def softmax_cross_entropy(
    x: Array, targets: Array, /, *, axis: Axes, where: Array | None = None,
    label_smoothing: float = 0.0, xp: Namespace,
) -> Any:  # fmt: skip
    """``sum(t (lse - x))`` (zero targets taking no part) from one lse pass."""
    dim = _one_dim(x, axis, where)
    if dim is None or not _applies(x, targets):
        return NotImplemented
    lse = _lse(x, dim)
    eps = label_smoothing
    t = targets if not eps else (1.0 - eps) * targets + eps / x.shape[dim]
    gap = torch.where(torch.isinf(lse), math.nan, lse) - x
    loss = torch.where(t != 0, t * gap, 0.0).sum(dim, keepdim=True)
    return loss, lse


def softmax_cross_entropy_vjp(
    x: Array, targets: Array, lse: Array, g: Array, h: Array, /, *, axis: Axes,
    where: Array | None = None, label_smoothing: float = 0.0, xp: Namespace,
) -> Any:  # fmt: skip
    """``((g S + h) softmax - g t, g (1 - eps) (lse - x))``."""
    dim = _one_dim(x, axis, where)
    if dim is None or not _applies(x, targets) or not _applies(lse, g, h):
        return NotImplemented
    eps = label_smoothing
    t = targets if not eps else (1.0 - eps) * targets + eps / x.shape[dim]
    s = t.sum(dim, keepdim=True)
    dx = _probs_times(x, lse, g * s + h, dim) - g * t
    dt = (g * (1.0 - eps)) * (torch.where(torch.isinf(lse), math.nan, lse) - x)
    return dx, dt
