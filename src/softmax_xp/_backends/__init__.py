"""Layer 3: backend fast paths, chosen by namespace.

``kernel(name, xp)`` returns the implementation of kernel ``name`` for namespace ``xp``: a backend
module's function of the same name where one exists, else the generic kernel (layer 2). Every
kernel has the signature of its generic twin (``x, [v,] /, *, axis, [where,] xp``) and receives
validated arguments in the working dtype. A fast path returns ``NotImplemented`` when the exact
conditions under which it is correct do not hold; the generic kernel then runs instead.

Backend modules import their framework lazily: this module imports neither torch nor jax.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import array_api_compat

from .. import _generic

__all__ = ["backend_name", "call"]

_MODULES = {"numpy": "._numpy", "torch": "._torch", "jax": "._jax"}


def backend_name(xp: Any) -> str:
    """A short name for the namespace: numpy, torch, jax, cupy, dask or the module's name."""
    if array_api_compat.is_numpy_namespace(xp):
        return "numpy"
    if array_api_compat.is_torch_namespace(xp):
        return "torch"
    if array_api_compat.is_jax_namespace(xp):
        return "jax"
    if array_api_compat.is_cupy_namespace(xp):
        return "cupy"
    if array_api_compat.is_dask_namespace(xp):
        return "dask"
    return str(getattr(xp, "__name__", type(xp).__name__))


def _fast(name: str, xp: Any) -> Callable[..., Any] | None:
    mod = _MODULES.get(backend_name(xp))
    if mod is None:
        return None
    return getattr(importlib.import_module(mod, __name__), name, None)  # type: ignore[no-any-return]


def call(name: str, *arrays: Any, xp: Any, **kwargs: Any) -> Any:
    """Run kernel ``name`` on ``arrays``: the backend's fast path if it applies, else the generic one."""
    fast = _fast(name, xp)
    if fast is not None:
        out = fast(*arrays, xp=xp, **kwargs)
        if out is not NotImplemented:
            return out
    return getattr(_generic, name)(*arrays, xp=xp, **kwargs)
