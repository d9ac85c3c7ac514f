"""Layer 4: autodiff adapters.

``forward(name, x, axis=..., where=..., xp=...)`` runs a forward kernel (``softmax``,
``log_softmax``: ``softmax_xp._kernels.FORWARD``) so that the framework's autodiff differentiates
through this package's own JVP/VJP kernels (PyTorch: an ``autograd.Function`` that saves only the
output; JAX: a ``custom_jvp``). For other namespaces it runs the kernel directly (layer 3).
Adapters are registered per backend, as loaders: a framework is imported only when one of its
arrays arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from .._backends import backend_name, call

__all__ = ["adapter", "forward", "hot_route", "register"]

_registry: dict[str, Callable[[], ModuleType]] = {}


def register(backend: str, loader: Callable[[], ModuleType]) -> None:
    """Register the module ``loader()`` returns as the autodiff adapter of ``backend`` arrays:
    its functions named after forward kernels take ``(x, *, axis, where, xp)``."""
    _registry[backend] = loader


def adapter(name: str, backend: str) -> Callable[..., Any] | None:
    """The adapter of forward kernel ``name`` for ``backend``, or None."""
    load = _registry.get(backend)
    return None if load is None else getattr(load(), name, None)


def forward(
    name: str, *arrays: Any, axis: tuple[int, ...], where: Any, xp: Any, **options: Any
) -> Any:
    """Forward kernel ``name`` of ``arrays``, differentiable through this package's own rules.

    Kernels that keep a log-sum-exp per slice (``saves == "lse"``) return their first output
    here (the loss), not the pair their kernel computes."""
    fn = adapter(name, backend_name(xp))
    if fn is not None:
        out = fn(*arrays, axis=axis, where=where, xp=xp, **options)
        if out is not NotImplemented:
            return out
    out = call(name, *arrays, axis=axis, where=where, xp=xp, **options)
    return out[0] if isinstance(out, tuple) else out


def hot_route(
    name: str,
    backend: str,
    axis: tuple[int, ...],
    xp: Any,
    sample: Any,
    run: Callable[..., Any],
) -> Callable[..., Any] | None:
    """The direct route ``run`` of forward kernel ``name`` (see ``softmax_xp._hot``) wrapped by
    the backend's adapter (its ``hot`` function: None where it offers no route for arrays like
    ``sample``); ``run`` itself for backends with no adapter."""
    load = _registry.get(backend)
    if load is None:
        return run
    hot = getattr(load(), "hot", None)
    return None if hot is None else hot(name, axis, xp, sample, run)  # type: ignore[no-any-return]


# Plain imports, not importlib: torch.compile (Dynamo) traces these but refuses importlib.
def _load_torch() -> ModuleType:
    from . import _torch

    return _torch


def _load_jax() -> ModuleType:
    from . import _jax

    return _jax


register("torch", _load_torch)
register("jax", _load_jax)
