"""Layer 3: backend fast paths, one registry keyed by (namespace, device).

``call(name, *arrays, xp=..., **kwargs)`` runs kernel ``name`` (see ``softmax_xp._kernels``): the
fast paths registered for the arrays' backend and device kind, in order, then the generic kernel
(layer 2). Every kernel has the signature of its generic twin (``x, [v,] /, *, axis, [where,]
xp``) and receives validated arguments in the working dtype. A fast path returns
``NotImplemented`` when the exact conditions under which it is correct do not hold; the next one,
and at last the generic kernel, then runs instead.

A backend module registers itself with :func:`register` (a loader, so that nothing is imported
before one of its arrays arrives): ``register("torch", "cuda", loader)`` serves CUDA tensors
before the entries registered for every torch device (``"*"``). docs/backends.md shows how.
Backend modules import their framework lazily: this module imports neither torch nor jax.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import array_api_compat

from .. import _generic
from .._kernels import KERNELS

__all__ = [
    "ANY_DEVICE",
    "NOT_NOW",
    "backend_name",
    "call",
    "device_kind",
    "hot_route",
    "implementations",
    "register",
]

#: The device key of an entry that serves every device of its backend.
ANY_DEVICE = "*"

#: What a ``hot`` builder answers when it cannot build a route for this call but might for a
#: later one with the same key (torch, while ``torch.compile`` traces): nothing is recorded.
NOT_NOW: Any = type("NotNow", (), {"__repr__": lambda self: "NOT_NOW"})()

Loader = Callable[[], ModuleType]

_registry: dict[tuple[str, str], list[Loader]] = {}
_lock = threading.Lock()


def register(backend: str, device: str, loader: Loader, *, first: bool = False) -> None:
    """Register the module returned by ``loader()`` as a fast path for ``backend`` arrays on
    devices of kind ``device`` (``"cpu"``, ``"cuda"``, ... or :data:`ANY_DEVICE`).

    Its functions named after kernels serve those kernels; later registrations for the same key
    run after earlier ones, unless ``first``. Device-specific entries run before ``"*"`` ones.
    """
    with _lock:
        entries = _registry.setdefault((backend, device), [])
        entries.insert(0, loader) if first else entries.append(loader)


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


def device_kind(backend: str, array: Any) -> str:
    """The device key of ``array``: the device type for torch and CuPy, else :data:`ANY_DEVICE`
    (NumPy and Dask have one kind; JAX chooses its device inside its own kernels)."""
    if backend == "torch":
        return str(array.device.type)
    if backend == "cupy":
        return "cuda"
    return ANY_DEVICE


def implementations(name: str, backend: str, device: str) -> list[Callable[..., Any]]:
    """The fast paths of kernel ``name`` for ``backend`` arrays on ``device``, in order.

    Looked up at each call, not cached: torch.compile traces this, and a traced function may not
    mutate state outside itself (inside an autograd.Function's backward, say)."""
    if name not in KERNELS:
        raise KeyError(f"unknown kernel {name!r}")
    loaders = _registry.get((backend, device), []) if device != ANY_DEVICE else []
    out = []
    for load in (*loaders, *_registry.get((backend, ANY_DEVICE), ())):
        fn = getattr(load(), name, None)
        if fn is not None:
            out.append(fn)
    return out


def call(name: str, *arrays: Any, xp: Any, **kwargs: Any) -> Any:
    """Run kernel ``name`` on ``arrays``: a registered fast path if one applies, else the generic one."""
    backend = backend_name(xp)
    for fast in implementations(name, backend, device_kind(backend, arrays[0])):
        out = fast(*arrays, xp=xp, **kwargs)
        if out is not NotImplemented:
            return out
    return getattr(_generic, name)(*arrays, xp=xp, **kwargs)


def hot_route(
    name: str, backend: str, axis: tuple[int, ...], xp: Any, sample: Any
) -> Callable[..., Any] | None:
    """A direct route of kernel ``name`` for arrays like ``sample`` (see ``softmax_xp._hot``):
    the first one a module registered for every ``backend`` device offers through its ``hot``
    function, or None. A module offers one only where it can check per call, cheaply, every
    condition under which the route does what :func:`call` would (and returns ``NotImplemented``
    otherwise)."""
    for load in _registry.get((backend, ANY_DEVICE), ()):
        hot = getattr(load(), "hot", None)
        run = None if hot is None else hot(name, axis, xp, sample)
        if run is not None:
            return run  # type: ignore[no-any-return]
    return None


# -- the built-in backends ------------------------------------------------------------------------
# Plain imports, not importlib: torch.compile (Dynamo) traces these but refuses importlib.
def _load_numpy() -> ModuleType:
    from . import _numpy

    return _numpy


def _load_torch() -> ModuleType:
    from . import _torch_cuda  # torch's own kernels, or Triton where selected

    return _torch_cuda


def _load_jax() -> ModuleType:
    from . import _jax

    return _jax


def _load_dask() -> ModuleType:
    from . import _dask

    return _dask


register("numpy", ANY_DEVICE, _load_numpy)
register("torch", ANY_DEVICE, _load_torch)
register("jax", ANY_DEVICE, _load_jax)
register("dask", ANY_DEVICE, _load_dask)
