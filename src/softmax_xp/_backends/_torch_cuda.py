"""Layer 3: the torch backend with its CUDA path chosen explicitly.

Every kernel here first asks :func:`path` which implementation serves its tensors:

- ``"native"`` (the default): ``softmax_xp._backends._torch`` (``torch.softmax`` and friends),
  then the generic code;
- ``"triton"``: this package's Triton kernels (``_triton``), wrapped as ``torch.library``
  custom ops (``softmax_xp::forward``, ``softmax_xp::product``, ``softmax_xp::jacobian``) with
  fake implementations, autograd formulas written with the same ops (so every order of
  derivative works) and vmap rules, so that ``torch.compile(fullgraph=True)``, autograd,
  ``torch.func`` and ``vmap`` all go through them.

The Triton path is used for CUDA tensors when the environment variable
``SOFTMAX_XP_TORCH_CUDA=triton`` is set (read at each call; ``native`` or unset keeps torch's own
kernels). No GPU measurement has chosen it as a default yet, so torch's kernels stay the
default. Under ``TRITON_INTERPRET=1`` the same variable also sends CPU tensors to the Triton
kernels (run by Triton's interpreter: slow, for tests only).

The Triton path does not apply, and torch's kernels run, for: a tuple ``axis`` whose axes are
not adjacent, dtypes other than float16/bfloat16/float32/float64, tensors carrying forward-mode
(dual) tangents, for which custom ops have no rule, and calls under a ``torch.func`` grad or jvp
level (see ``_transforms_allow``): first derivatives by ``torch.func`` still use the Triton
kernels (the autograd.Function of layer 4 runs its rules below those levels). A stride pattern the kernels
cannot read in place (softmax axes that do not collapse into one stride) is copied contiguous
first.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.autograd import forward_ad as _fwad

from . import NOT_NOW
from . import _torch as _native

__all__ = ["ENV", "hot", "path", "selected"]  # and one function per kernel of the registry

Array = Any
Namespace = Any
Axes = tuple[int, ...]

#: The environment variable that selects the torch CUDA path.
ENV = "SOFTMAX_XP_TORCH_CUDA"
_CHOICES = ("native", "triton")
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def selected() -> str:
    """The path ``SOFTMAX_XP_TORCH_CUDA`` asks for: ``"native"`` (default) or ``"triton"``."""
    value = os.environ.get(ENV, "native").strip().lower() or "native"
    if value not in _CHOICES:
        raise ValueError(f"environment variable {ENV}={value!r}: expected one of {_CHOICES}")
    return value


# ``ENV in os.environ`` encodes the key on each call (about 0.6 µs, a quarter of a small
# torch.softmax); the mapping's own store, where CPython has one, answers the same in 40 ns.
_ENV_STORE: Any = getattr(os.environ, "_data", None)
_ENV_KEY: Any = os.environ.encodekey(ENV) if hasattr(os.environ, "encodekey") else ENV


def _env_set() -> bool:
    """Whether ``SOFTMAX_XP_TORCH_CUDA`` is set (to anything) now."""
    if _ENV_STORE is None:  # pragma: no cover - not CPython's os.environ
        return ENV in os.environ
    return _ENV_KEY in _ENV_STORE


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def triton_available() -> bool:
    """Whether triton is installed (it is not imported here)."""
    return importlib.util.find_spec("triton") is not None


def path(device: torch.device | str) -> str:
    """The path that serves tensors on ``device``: ``"triton"`` or ``"native"``."""
    dev = torch.device(device)
    if selected() != "triton":
        return "native"
    if dev.type == "cuda" or (dev.type == "cpu" and _interpreted()):
        return "triton" if triton_available() else "native"
    return "native"


def _has_tangent(t: torch.Tensor) -> bool:
    if torch.compiler.is_compiling() or _fwad._current_level < 0:
        return False
    try:
        return _fwad.unpack_dual(t).tangent is not None  # type: ignore[no-untyped-call]
    except RuntimeError:  # a tensor of torch's legacy vmap (gradcheck's batched gradients)
        return True


def _transforms_allow(arrays: Sequence[torch.Tensor]) -> bool:
    """Whether the custom ops can run under the torch.func transforms active here.

    vmap alone is fine (the ops have vmap rules). Under a ``grad``/``vjp``/``jacrev`` or ``jvp``
    level (second order under torch.func: ``jacrev(jacrev(f))``, ``jacfwd(jacfwd(f))``)
    torch's generated autograd rule of a custom op refuses functorch, and forward mode has no
    rule at all, so torch's kernels run there. Tensors of torch's legacy vmap (gradcheck's
    batched gradients), seen with no functorch level active, also go to torch's kernels.
    """
    if torch.compiler.is_compiling():
        return True
    from torch._C._functorch import (
        TransformType,
        is_batchedtensor,
        is_functorch_wrapped_tensor,
    )
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    stack = retrieve_all_functorch_interpreters()
    if any(i.key() in (TransformType.Grad, TransformType.Jvp) for i in stack):
        return False
    if not stack and any(is_functorch_wrapped_tensor(t) or is_batchedtensor(t) for t in arrays):
        return False
    return not any(_has_tangent(t) for t in arrays)


def _triton_for(arrays: Sequence[Any], axis: Axes) -> tuple[int, int] | None:
    """The axis range ``(a0, a1)`` when the Triton path serves these tensors, else None."""
    if not axis or axis != tuple(range(axis[0], axis[-1] + 1)):
        return None
    a = arrays[0]
    if not all(isinstance(t, torch.Tensor) for t in arrays) or a.dtype not in _DTYPES:
        return None
    if any(t.dtype != a.dtype or t.shape != a.shape for t in arrays):
        return None
    if path(a.device) != "triton" or not _transforms_allow(arrays):
        return None
    return axis[0], axis[-1]


# -- custom ops -----------------------------------------------------------------------------------
def _kernels() -> Any:
    from . import _triton  # triton is imported here, on first use of the Triton path

    return _triton


def _readable(t: torch.Tensor, a0: int, a1: int) -> torch.Tensor:
    """``t`` itself where the kernels read its strides in place, else a contiguous copy."""
    return t if _kernels().geometry(t, a0, a1) is not None else t.contiguous()


@torch.library.custom_op("softmax_xp::forward", mutates_args=())
def _forward_op(
    x: torch.Tensor, where: torch.Tensor | None, a0: int, a1: int, log: bool
) -> torch.Tensor:
    out = _kernels().forward(_readable(x, a0, a1), a0, a1, where, log)
    assert out is not None
    return out  # type: ignore[no-any-return]


@_forward_op.register_fake
def _(x: torch.Tensor, where: torch.Tensor | None, a0: int, a1: int, log: bool) -> torch.Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("softmax_xp::product", mutates_args=())
def _product_op(
    a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None, a0: int, a1: int, mode: int
) -> torch.Tensor:
    k = _kernels()
    out = k.product(_readable(a, a0, a1), _readable(b, a0, a1), a0, a1, where, mode)
    assert out is not None
    return out  # type: ignore[no-any-return]


@_product_op.register_fake
def _(
    a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None, a0: int, a1: int, mode: int
) -> torch.Tensor:
    return torch.empty_like(a, memory_format=torch.contiguous_format)


def _jac_shape(shape: Sequence[int], a0: int, a1: int) -> tuple[int, ...]:
    c = 1
    for n in shape[a0 : a1 + 1]:
        c *= n
    return (*shape[:a0], *shape[a1 + 1 :], c, c)


@torch.library.custom_op("softmax_xp::jacobian", mutates_args=())
def _jacobian_op(a: torch.Tensor, a0: int, a1: int, log: bool) -> torch.Tensor:
    out = _kernels().jacobian(_readable(a, a0, a1), a0, a1, log)
    assert out is not None
    return out  # type: ignore[no-any-return]


@_jacobian_op.register_fake
def _(a: torch.Tensor, a0: int, a1: int, log: bool) -> torch.Tensor:
    return a.new_empty(_jac_shape(a.shape, a0, a1))


# -- autograd formulas (in the same ops and plain torch, so they differentiate again) -------------
def _dims(a0: int, a1: int) -> tuple[int, ...]:
    return tuple(range(a0, a1 + 1))


def _masked(t: torch.Tensor, where: torch.Tensor | None) -> torch.Tensor:
    return t if where is None else torch.where(where, t, torch.zeros_like(t))


def _forward_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    _, where, ctx.a0, ctx.a1, ctx.log = inputs
    ctx.save_for_backward(output, where)


def _forward_backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
    out, where = ctx.saved_tensors
    if ctx.log:
        gx = _product_op(out, g, where, ctx.a0, ctx.a1, 1)
    else:
        gx = _product_op(out, g, None, ctx.a0, ctx.a1, 0)
    return gx, None, None, None, None


_forward_op.register_autograd(_forward_backward, setup_context=_forward_setup)


def _product_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    a, b, where, ctx.a0, ctx.a1, ctx.mode = inputs
    ctx.save_for_backward(a, b, where)


def _product_backward(ctx: Any, u: torch.Tensor) -> tuple[Any, ...]:
    a, b, where = ctx.saved_tensors
    dims, a0, a1 = _dims(ctx.a0, ctx.a1), ctx.a0, ctx.a1
    if ctx.mode == 0:  # out = a (b - <b, a>); symmetric in b
        gb = _product_op(a, u, None, a0, a1, 0)
        ga = u * (b - (b * a).sum(dims, keepdim=True)) - b * (u * a).sum(dims, keepdim=True)
    elif ctx.mode == 1:  # out = b - exp(a) sum(b); its adjoint in b is mode 2
        gb = _product_op(a, u, where, a0, a1, 2)
        bm = _masked(b, where)
        ga = -_masked(u, where) * torch.exp(a) * bm.sum(dims, keepdim=True)
    else:  # out = b - <exp(a), b>; its adjoint in b is mode 1
        gb = _product_op(a, u, where, a0, a1, 1)
        ga = -torch.exp(a) * _masked(b, where) * _masked(u, where).sum(dims, keepdim=True)
    if where is not None:
        ga = _masked(ga, where)
    return ga, gb, None, None, None, None


_product_op.register_autograd(_product_backward, setup_context=_product_setup)


def _to_rows(a: torch.Tensor, a0: int, a1: int) -> torch.Tensor:
    moved = a.movedim(_dims(a0, a1), tuple(range(a.ndim - (a1 - a0 + 1), a.ndim)))
    return moved.reshape(_jac_shape(a.shape, a0, a1)[:-1])


def _from_rows(r: torch.Tensor, like: torch.Tensor, a0: int, a1: int) -> torch.Tensor:
    k = a1 - a0 + 1
    sizes = tuple(like.shape[a0 : a1 + 1])
    moved = r.reshape((*r.shape[:-1], *sizes))
    return moved.movedim(tuple(range(moved.ndim - k, moved.ndim)), _dims(a0, a1))


def _jacobian_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    a, ctx.a0, ctx.a1, ctx.log = inputs
    ctx.save_for_backward(a)


def _jacobian_backward(ctx: Any, u: torch.Tensor) -> tuple[Any, ...]:
    (a,) = ctx.saved_tensors
    r = _to_rows(a, ctx.a0, ctx.a1)
    if ctx.log:  # J = I - 1 p^T
        gr = -torch.exp(r) * u.sum(-2)
    else:  # J = diag(y) - y y^T
        gr = u.diagonal(0, -2, -1) - (u * r.unsqueeze(-2)).sum(-1) - (u * r.unsqueeze(-1)).sum(-2)
    return _from_rows(gr, a, ctx.a0, ctx.a1), None, None, None


_jacobian_op.register_autograd(_jacobian_backward, setup_context=_jacobian_setup)


# -- vmap rules: the mapped dimension becomes one more batch dimension in front -------------------
def _front(t: torch.Tensor | None, bdim: int | None, size: int) -> torch.Tensor | None:
    if t is None:
        return None
    if bdim is None:
        return t.unsqueeze(0).expand((size, *t.shape))
    return t.movedim(bdim, 0)


@_forward_op.register_vmap
def _(info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, where: torch.Tensor | None,
      a0: int, a1: int, log: bool) -> tuple[torch.Tensor, int]:  # fmt: skip
    n = info.batch_size
    xb, wb = _front(x, in_dims[0], n), _front(where, in_dims[1], n)
    assert xb is not None
    return _forward_op(xb, wb, a0 + 1, a1 + 1, log), 0


@_product_op.register_vmap
def _(info: Any, in_dims: tuple[Any, ...], a: torch.Tensor, b: torch.Tensor,
      where: torch.Tensor | None, a0: int, a1: int, mode: int) -> tuple[torch.Tensor, int]:  # fmt: skip
    n = info.batch_size
    ab, bb, wb = _front(a, in_dims[0], n), _front(b, in_dims[1], n), _front(where, in_dims[2], n)
    assert ab is not None
    assert bb is not None
    return _product_op(ab, bb, wb, a0 + 1, a1 + 1, mode), 0


@_jacobian_op.register_vmap
def _(info: Any, in_dims: tuple[Any, ...], a: torch.Tensor, a0: int, a1: int,
      log: bool) -> tuple[torch.Tensor, int]:  # fmt: skip
    ab = _front(a, in_dims[0], info.batch_size)
    assert ab is not None
    return _jacobian_op(ab, a0 + 1, a1 + 1, log), 0


# -- the kernels (signatures of softmax_xp._generic) ----------------------------------------------
def softmax(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """Triton softmax where selected, else ``torch.softmax`` (no mask) or the generic code."""
    r = _triton_for([x], axis)
    if r is None:
        return _native.softmax(x, axis=axis, where=where, xp=xp)
    return _forward_op(x, where, r[0], r[1], False)


def log_softmax(x: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace) -> Array:
    """Triton log_softmax where selected, else ``torch.log_softmax`` or the generic code."""
    r = _triton_for([x], axis)
    if r is None:
        return _native.log_softmax(x, axis=axis, where=where, xp=xp)
    return _forward_op(x, where, r[0], r[1], True)


def softmax_vjp(y: Array, g: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y * (g - <g, y>)`` in one Triton pass where selected."""
    r = _triton_for([y, g], axis)
    if r is None:
        return _native.softmax_vjp(y, g, axis=axis, xp=xp)
    return _product_op(y, g, None, r[0], r[1], 0)


def softmax_jvp(y: Array, v: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """``y * (v - <y, v>)`` (the VJP kernel: J is symmetric) where selected."""
    r = _triton_for([y, v], axis)
    if r is None:
        return _native.softmax_jvp(y, v, axis=axis, xp=xp)
    return _product_op(y, v, None, r[0], r[1], 0)


def log_softmax_vjp(
    l: Array, g: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Array:
    """``g - exp(l) * sum(g)`` (zero where masked out) in one Triton pass where selected."""
    r = _triton_for([l, g], axis)
    if r is None:
        return _native.log_softmax_vjp(l, g, axis=axis, where=where, xp=xp)
    return _product_op(l, g, where, r[0], r[1], 1)


def log_softmax_jvp(
    l: Array, v: Array, /, *, axis: Axes, where: Array | None = None, xp: Namespace
) -> Array:
    """``v - <exp(l), v>`` (zero where masked out) where selected; else the generic code."""
    r = _triton_for([l, v], axis)
    if r is None:
        return NotImplemented
    return _product_op(l, v, where, r[0], r[1], 2)


def softmax_jacobian(y: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """Dense ``y_i (δ_ij - y_j)`` written in one Triton pass where selected."""
    r = _triton_for([y], axis)
    if r is None:
        return _native.softmax_jacobian(y, axis=axis, xp=xp)
    return _jacobian_op(y, r[0], r[1], False)


def log_softmax_jacobian(l: Array, /, *, axis: Axes, xp: Namespace) -> Array:
    """Dense ``δ_ij - exp(l_j)`` written in one Triton pass where selected."""
    r = _triton_for([l], axis)
    if r is None:
        return _native.log_softmax_jacobian(l, axis=axis, xp=xp)
    return _jacobian_op(l, r[0], r[1], True)


def _lse_route(axis: Axes, xp: Namespace, sample: torch.Tensor) -> Callable[..., Any]:
    """logsumexp's route for CPU tensors, in the public (batch) shape: a small contiguous tensor
    over its last dim, that nothing differentiates, goes straight to the C row kernel on NumPy
    views (into a fresh tensor); any other the backend's kernel."""
    from . import _host, _numpy

    dim = axis[0]
    strided, compiling = torch.strided, torch.compiler.is_compiling
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    rows = _host.rows if _host.HAVE_ROWS and dim == sample.ndim - 1 else None
    small = _numpy._THREAD_MIN_BYTES
    floats = (torch.float32, torch.float64)
    lse = _native.logsumexp

    def reduce(x: torch.Tensor) -> Any:
        if x.layout is not strided or not x.is_cpu or compiling():
            return NotImplemented
        if (
            rows is not None
            and x.dtype in floats
            and 0 < x.nbytes < small
            and x.is_contiguous()
            and not x.requires_grad
            and not wrapped(x)
        ):
            out = torch.empty(x.shape[:-1], dtype=x.dtype)
            rows.logsumexp(x.numpy().reshape(-1, x.shape[-1]), out.numpy().reshape(-1))
            return out
        res = lse(x, axis=axis, xp=xp)
        return res if res is NotImplemented else res.squeeze(dim)

    return reduce


# -- logsumexp and the cross-entropies: torch's own kernels on every device (see _torch) ---------
logsumexp = _native.logsumexp
logsumexp_jvp = _native.logsumexp_jvp
logsumexp_vjp = _native.logsumexp_vjp
softmax_cross_entropy = _native.softmax_cross_entropy
softmax_cross_entropy_vjp = _native.softmax_cross_entropy_vjp
softmax_cross_entropy_with_integer_labels = _native.softmax_cross_entropy_with_integer_labels
softmax_cross_entropy_with_integer_labels_vjp = (
    _native.softmax_cross_entropy_with_integer_labels_vjp
)


# -- the common call's direct route (see softmax_xp._hot) ---------------------------------------


def hot(name: str, axis: Axes, xp: Namespace, sample: Any) -> Any:
    """The route of kernel ``name`` for dense CPU tensors over one dim: torch's kernel called
    straight away. CUDA tensors (whose path ``SOFTMAX_XP_TORCH_CUDA`` picks at each call),
    tensors of 32 MiB and more (the huge-page buffers), other layouts, ``torch.compile`` and any
    call while ``SOFTMAX_XP_TORCH_CUDA`` is set (under Triton's interpreter it sends CPU tensors
    to Triton) take the full path."""
    if type(sample) not in (torch.Tensor, torch.nn.Parameter) or len(axis) != 1:
        return None
    if torch.compiler.is_compiling():
        return NOT_NOW
    dim = axis[0]
    strided, compiling = torch.strided, torch.compiler.is_compiling
    huge = _native._HUGE_MIN_BYTES

    if name == "logsumexp":
        return _lse_route(axis, xp, sample)
    if name == "softmax_cross_entropy_with_integer_labels":
        ce = _native.softmax_cross_entropy_with_integer_labels

        def labels_route(x: torch.Tensor, labels: torch.Tensor) -> Any:
            # the backend's kernel (the C row kernels on the CPU), in the public (batch) shape
            if x.layout is not strided or compiling():
                return NotImplemented
            out = ce(x, labels, axis=axis, xp=xp)
            return out if out is NotImplemented else out[0].squeeze(dim)

        return labels_route
    if name in ("softmax", "log_softmax"):
        op = torch.softmax if name == "softmax" else torch.log_softmax

        store, key = _ENV_STORE, _ENV_KEY
        if store is None:  # pragma: no cover - not CPython's os.environ
            return None

        def forward(x: torch.Tensor) -> Any:
            # compiling() last: the adapter's route, which calls this one, has checked it already
            if (
                x.layout is not strided
                or not x.is_cpu
                or x.nbytes >= huge
                or key in store  # SOFTMAX_XP_TORCH_CUDA set (see _env_set)
                or compiling()
            ):
                return NotImplemented
            return op(x, dim)

        return forward
    backwards: dict[str, Callable[..., torch.Tensor]] = {
        "softmax_vjp": torch._softmax_backward_data,
        "softmax_jvp": torch._softmax_backward_data,  # J is symmetric
        "log_softmax_vjp": torch._log_softmax_backward_data,
    }
    backward = backwards.get(name)
    if backward is None:
        return None
    kind = type(sample)

    def pair(a: torch.Tensor, b: Any) -> Any:
        if (
            type(b) is not kind
            or b.dtype != a.dtype
            or b.shape != a.shape
            or a.layout is not strided
            or b.layout is not strided
            or not (a.is_cpu and b.is_cpu)
            or a.nbytes >= huge
            or compiling()
            or _env_set()
        ):
            return NotImplemented
        return backward(b, a, dim, a.dtype)

    return pair
