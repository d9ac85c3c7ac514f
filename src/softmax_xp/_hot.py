"""The common call, routed once and cached.

Most calls are a plain ``np.ndarray`` / ``torch.Tensor`` / ``jax.Array`` of float32 or float64,
an int ``axis``, no ``where``, no ``dtype`` and no ``xp``. For those the public functions ask
:func:`route` for a *route*: validation (layer 1) has run once for the call's key
``(kernel, array type, dtype, ndim, axis)``, the namespace, the normalised axes and the backend's
fast path (layer 3, with the autodiff adapter of layer 4 for forward kernels) are bound, and each
later call with that key runs only the per-array checks the key does not cover (contiguity, the
second array's type, dtype and shape, a torch tensor's layout and device, autograd state) before
the kernel itself.

A route returns ``NotImplemented`` wherever it is not sure to do exactly what the full path does
(a tracer, ``torch.compile``, a tensor that autograd tracks in a way it does not handle, any
check that fails); the public function then takes the full path, which gives the same result and
raises the same errors as always. Keys whose first call would raise, or that need a cast, get no
route; a builder may also answer ``NOT_NOW`` (no route for this call, none recorded). Routes are built by the backends' and adapters' ``hot`` functions (``None`` where they
have none); a key's route is built once, under no lock (two threads may both build one; either
is correct).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _validation as _v
from ._autodiff import hot_route as _adapter_route
from ._backends import NOT_NOW, backend_name, hot_route
from ._kernels import KERNELS

__all__ = ["route"]

Route = Callable[..., Any]

#: Routes by array type, then by ``(kernel, dtype, ndim, axis)``; ``None`` records a key that has
#: none. Two levels, so that tracing a torch call under ``torch.compile`` (Dynamo traces the
#: lookup, and compares the keys it meets) meets torch dtypes only. Bounded: past the bound, new
#: keys are not recorded.
_routes: dict[type, dict[tuple[Any, ...], Route | None]] = {}
_MAX_ROUTES = 4096


def route(name: str, x: Any, axis: int) -> Route | None:
    """The cached route of kernel ``name`` for arrays like ``x`` and the int ``axis``, or None."""
    kind = type(x)
    by_key = _routes.get(kind)
    try:
        key = (name, x.dtype, x.ndim, axis)
        if by_key is not None:
            return by_key[key]
    except KeyError:
        pass
    except Exception:  # not an array (no dtype), or an unhashable dtype: the full path decides
        return None
    run = _build(name, x, axis)
    if run is NOT_NOW:  # e.g. while torch.compile traces: ask again on a later call
        return None
    if by_key is None:
        by_key = _routes.setdefault(kind, {})
    if len(by_key) < _MAX_ROUTES:
        by_key[key] = run
    return run  # type: ignore[no-any-return]


def _build(name: str, x: Any, axis: int) -> Any:
    kernel = KERNELS[name]
    if kernel.output == "jacobian":  # budget checks per call; the kernels dwarf the overhead
        return None
    try:
        if kernel.forward:
            p = _v.prepare_forward(name, x, axis, None, None, None)
        else:
            p = _v.prepare_pair(name, kernel.args, x, x, axis, None, None)  # type: ignore[arg-type]
    except Exception:  # the full path raises it, with its message
        return None
    if p.arrays[0] is not x or p.out_dtype != x.dtype:  # a cast or a promotion: the full path
        return None
    backend = backend_name(p.xp)
    run = hot_route(name, backend, p.axis, p.xp, x)
    if run is None or run is NOT_NOW or not kernel.forward:
        return run
    return _adapter_route(name, backend, p.axis, p.xp, x, run)
