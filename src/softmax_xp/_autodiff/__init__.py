"""Layer 4: autodiff adapters.

``forward(name, x, axis=..., where=..., xp=...)`` runs ``softmax`` or ``log_softmax`` so that the
framework's autodiff differentiates through this package's own JVP/VJP kernels (PyTorch: an
``autograd.Function`` that saves only the output; JAX: a ``custom_jvp``). For other namespaces it
runs the kernel directly (layer 3). Frameworks are imported only when one of their arrays arrives.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from .._backends import backend_name, call

__all__ = ["forward"]


def _adapter(backend: str) -> ModuleType | None:
    # Plain imports, not importlib: torch.compile (Dynamo) traces these but refuses importlib.
    if backend == "torch":
        from . import _torch

        return _torch
    if backend == "jax":
        from . import _jax

        return _jax
    return None


def forward(name: str, x: Any, /, *, axis: tuple[int, ...], where: Any, xp: Any) -> Any:
    """Forward ``name`` ("softmax" or "log_softmax"), differentiable through our own rules."""
    mod = _adapter(backend_name(xp))
    if mod is not None:
        adapter = getattr(mod, name, None)
        if adapter is not None:
            out = adapter(x, axis=axis, where=where, xp=xp)
            if out is not NotImplemented:
                return out
    return call(name, x, axis=axis, where=where, xp=xp)
