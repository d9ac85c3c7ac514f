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

from collections.abc import Callable
from functools import partial
from typing import Any

import jax

from .._backends import call
from .._kernels import KERNELS, Kernel

__all__ = [
    "log_softmax",
    "logsumexp",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]

Array = Any


def _custom(kernel: Kernel, checkpoint: bool) -> Callable[..., Array]:
    """Forward kernel ``kernel`` as a ``custom_jvp`` function whose rule is its JVP kernel applied
    to the forward output (with the forward's mask where the JVP kernel takes one); under
    ``jax.checkpoint`` where ``checkpoint``, so that the residual is the output itself."""
    name, jvp = kernel.name, kernel.jvp
    assert jvp is not None
    masked = KERNELS[jvp].where

    @partial(jax.custom_jvp, nondiff_argnums=(2, 3))
    def fn(x: Array, where: Array | None, axis: tuple[int, ...], xp: Any) -> Array:
        return call(name, x, axis=axis, where=where, xp=xp)

    @fn.defjvp
    def _rule(
        axis: tuple[int, ...], xp: Any, primals: tuple[Any, ...], tangents: tuple[Any, ...]
    ) -> tuple[Array, Array]:
        x, where = primals
        out = fn(x, where, axis, xp)

        def rule(out: Array, v: Array, where: Array | None) -> Array:
            kw = {"where": where} if masked else {}
            return call(jvp, out, v, axis=axis, xp=xp, **kw)

        return out, (jax.checkpoint(rule) if checkpoint else rule)(out, tangents[0], where)

    fn.__name__ = fn.__qualname__ = f"_{name}"  # type: ignore[attr-defined]
    return fn  # type: ignore[no-any-return]


# softmax_jvp reads y, the residual already; log_softmax_jvp reads exp(l): recomputed (see above).
_softmax = _custom(KERNELS["softmax"], checkpoint=False)
_log_softmax = _custom(KERNELS["log_softmax"], checkpoint=True)


def _traced(x: Array) -> bool:
    """Whether a JAX transformation (jit, grad, jvp, vmap, ...) is tracing ``x``.

    Every transformation hands functions tracers; a concrete array can be differentiated by
    none of them, so it runs the kernel directly: an eager ``custom_jvp`` call costs about
    0.1 ms of Python on each call (it traces the function anew), the kernel a few µs.
    """
    return isinstance(x, jax.core.Tracer)


def _adapter(name: str, custom: Callable[..., Array]) -> Callable[..., Array]:
    def adapt(x: Array, *, axis: tuple[int, ...], where: Array | None, xp: Any) -> Array:
        if not _traced(x):
            return call(name, x, axis=axis, where=where, xp=xp)
        return custom(x, where, axis, xp)

    adapt.__name__ = adapt.__qualname__ = name
    adapt.__doc__ = f"``{name}`` of validated ``x``, differentiable through its JVP kernel."
    return adapt


softmax = _adapter("softmax", _softmax)
log_softmax = _adapter("log_softmax", _log_softmax)


def _custom_lse(kernel: Kernel) -> Callable[..., Array]:
    """Forward kernel ``kernel`` that keeps one log-sum-exp per slice (``saves == "lse"``) as a
    ``custom_jvp`` function of ``(*inputs, where, axis, xp, options)`` returning the kernel's
    ``(out, lse)`` (logsumexp: the lse alone). The rule is the kernel's JVP kernel of the inputs
    and ``lse``, under ``jax.checkpoint``, so that reverse mode keeps the inputs and ``lse`` and
    recomputes the softmax it needs. Integer inputs (labels) have no tangent."""
    name, jvp = kernel.name, kernel.jvp
    assert jvp is not None
    n = len(kernel.args)
    single = name == "logsumexp"

    @partial(jax.custom_jvp, nondiff_argnums=(n + 1, n + 2, n + 3))
    def fn(*args: Any) -> Any:
        *inputs, where, axis, xp, options = args
        return call(name, *inputs, axis=axis, where=where, xp=xp, **dict(options))

    @partial(fn.defjvp, symbolic_zeros=True)
    def _rule(
        axis: tuple[int, ...],
        xp: Any,
        options: tuple[tuple[str, Any], ...],
        primals: tuple[Any, ...],
        tangents: tuple[Any, ...],
    ) -> tuple[Any, Any]:
        *inputs, where = primals
        out = fn(*inputs, where, axis, xp, options)
        lse = out if single else out[1]
        floats = [i for i in range(n) if jax.numpy.issubdtype(inputs[i].dtype, jax.numpy.floating)]

        def rule(inputs: Any, lse: Array, tans: Any, where: Any) -> Any:
            return call(jvp, *inputs, lse, *tans, axis=axis, where=where, xp=xp, **dict(options))

        # x's tangent as an array (zeros where symbolic); the targets' as None where symbolic:
        # a target that does not move adds no ``0 * inf`` term at a -inf logit.
        tans = [
            (None if i else jax.numpy.zeros_like(inputs[i])) if _zero(tangents[i]) else tangents[i]
            for i in floats
        ]
        tan = jax.checkpoint(rule)(tuple(inputs), lse, tans, where)
        return out, (tan if single else tuple(tan))

    fn.__name__ = fn.__qualname__ = f"_{name}"  # type: ignore[attr-defined]
    return fn  # type: ignore[no-any-return]


def _zero(t: Any) -> bool:
    return type(t).__name__ == "SymbolicZero" or getattr(t, "dtype", None) == jax.dtypes.float0


def _lse_adapter(name: str) -> Callable[..., Array]:
    custom = _custom_lse(KERNELS[name])
    single = name == "logsumexp"

    def adapt(
        *arrays: Array, axis: tuple[int, ...], where: Array | None, xp: Any, **options: Any
    ) -> Array:
        if not any(_traced(a) for a in arrays):
            out = call(name, *arrays, axis=axis, where=where, xp=xp, **options)
        else:
            out = custom(*arrays, where, axis, xp, tuple(sorted(options.items())))
        return out if single else out[0]

    adapt.__name__ = adapt.__qualname__ = name
    adapt.__doc__ = f"``{name}`` of validated arrays, differentiable through its own kernels."
    return adapt


logsumexp = _lse_adapter("logsumexp")
softmax_cross_entropy = _lse_adapter("softmax_cross_entropy")
softmax_cross_entropy_with_integer_labels = _lse_adapter(
    "softmax_cross_entropy_with_integer_labels"
)


def hot(name: str, axis: tuple[int, ...], xp: Any, sample: Any, run: Callable[..., Any]) -> Any:
    """The direct route ``run`` of forward kernel ``name`` for concrete arrays, which no
    transformation can differentiate (see :func:`_traced`); tracers get no route."""
    return None if _traced(sample) else run
