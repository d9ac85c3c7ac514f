"""Layer 3: backend fast paths, chosen by namespace.

``kernel(name, xp)`` returns the implementation of kernel ``name`` for namespace ``xp``: a backend
module's function of the same name where one exists, else the generic kernel (layer 2). Every
kernel has the signature of its generic twin (``x, [v,] /, *, axis, [where,] xp``) and receives
validated arguments in the working dtype. A fast path returns ``NotImplemented`` when the exact
conditions under which it is correct do not hold; the generic kernel then runs instead.

Backend modules import their framework lazily: this module imports neither torch nor jax.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat

from .. import _generic

__all__ = ["backend_name", "call"]


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


def _module(backend: str) -> ModuleType | None:
    # Plain imports, not importlib: torch.compile (Dynamo) traces these but refuses importlib.
    if backend == "numpy":
        from . import _numpy

        return _numpy
    if backend == "torch":
        from . import _torch_cuda  # torch's own kernels, or Triton where selected

        return _torch_cuda
    if backend == "jax":
        from . import _jax

        return _jax
    if backend == "dask":
        from . import _dask

        return _dask
    return None


def _fast(name: str, xp: Any) -> Callable[..., Any] | None:
    mod = _module(backend_name(xp))
    return None if mod is None else getattr(mod, name, None)


def call(name: str, *arrays: Any, xp: Any, **kwargs: Any) -> Any:
    """Run kernel ``name`` on ``arrays``: the backend's fast path if it applies, else the generic one."""
    fast = _fast(name, xp)
    if fast is not None:
        out = fast(*arrays, xp=xp, **kwargs)
        if out is not NotImplemented:
            return out
    return getattr(_generic, name)(*arrays, xp=xp, **kwargs)
