"""Layer 4: jax autodiff adapter (softmax / log_softmax differentiable through our own rules).

``softmax`` and ``log_softmax`` are ``jax.custom_jvp`` functions whenever JAX traces the input
(concrete arrays, which no transformation can differentiate, run the kernel directly): the
forward runs the kernel of layer 3, and the JVP rule is ``softmax_jvp`` / ``log_softmax_jvp``
(layer 3) applied to the forward output. JAX derives reverse mode (``grad``, ``vjp``,
``jacrev``) by linearising and transposing that rule; the rule is linear in the tangent, so the
only array a backward pass keeps is the forward output. ``axis`` and the namespace are static
(``nondiff_argnums``); the mask is an ordinary argument whose tangent is ignored (it is
boolean). The rule calls the custom_jvp function itself for the output, so second and higher
derivatives go through the rule again.

``log_softmax_jvp`` reads ``exp(l)``. Left as is, JAX would keep that ``exp(l)`` as the residual;
the rule runs it under ``jax.checkpoint`` so that the residual is ``l`` itself and ``exp(l)`` is
recomputed in the backward pass (as torch's own log_softmax backward does), fused by XLA.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax

from .._backends import call

__all__ = ["log_softmax", "softmax"]

Array = Any


@partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _softmax(x: Array, where: Array | None, axis: tuple[int, ...], xp: Any) -> Array:
    return call("softmax", x, axis=axis, where=where, xp=xp)


@_softmax.defjvp
def _softmax_rule(
    axis: tuple[int, ...], xp: Any, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[Array, Array]:
    x, where = primals
    x_t = tangents[0]
    y = _softmax(x, where, axis, xp)
    # y is 0 at masked-out entries, so the rule needs no mask.
    return y, call("softmax_jvp", y, x_t, axis=axis, xp=xp)


@partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _log_softmax(x: Array, where: Array | None, axis: tuple[int, ...], xp: Any) -> Array:
    return call("log_softmax", x, axis=axis, where=where, xp=xp)


@_log_softmax.defjvp
def _log_softmax_rule(
    axis: tuple[int, ...], xp: Any, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[Array, Array]:
    x, where = primals
    x_t = tangents[0]
    l = _log_softmax(x, where, axis, xp)

    def rule(l: Array, v: Array, where: Array | None) -> Array:
        return call("log_softmax_jvp", l, v, axis=axis, where=where, xp=xp)

    return l, jax.checkpoint(rule)(l, x_t, where)


def _traced(x: Array) -> bool:
    """Whether a JAX transformation (jit, grad, jvp, vmap, ...) is tracing ``x``.

    Every transformation hands functions tracers; a concrete array can be differentiated by
    none of them, so it runs the kernel directly: an eager ``custom_jvp`` call costs about
    0.1 ms of Python on each call (it traces the function anew), the kernel a few µs.
    """
    return isinstance(x, jax.core.Tracer)


def softmax(x: Array, *, axis: tuple[int, ...], where: Array | None, xp: Any) -> Array:
    """Softmax of validated ``x`` (float32/float64), differentiable through ``softmax_jvp``."""
    if not _traced(x):
        return call("softmax", x, axis=axis, where=where, xp=xp)
    return _softmax(x, where, axis, xp)


def log_softmax(x: Array, *, axis: tuple[int, ...], where: Array | None, xp: Any) -> Array:
    """Log-softmax of validated ``x``, differentiable through ``log_softmax_jvp``."""
    if not _traced(x):
        return call("log_softmax", x, axis=axis, where=where, xp=xp)
    return _log_softmax(x, where, axis, xp)
