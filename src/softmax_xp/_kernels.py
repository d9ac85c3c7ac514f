"""The kernel registry: every kernel of the package, declared once.

A :class:`Kernel` names a public function and everything the other layers need to know about it:
its array arguments, whether it takes ``where``, the kind of its output, and its derivative
kernels. The public ``__all__``, the backend dispatch, the autodiff adapters (one factory per
forward kernel and its derivative pair), ``softmax-xp check`` and the test suite's lists all read
this table, so that a new kernel is one entry here plus its code (see docs/backends.md).

This module imports nothing beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FORWARD", "KERNELS", "NAMES", "OF_OUTPUT", "Kernel", "derivatives_of"]

Output = Literal["same", "reduced", "jacobian"]
Saves = Literal["output", "lse"]


@dataclass(frozen=True)
class Kernel:
    """One kernel: ``name(*args, /, *, axis, [where,] xp)`` in the generic layer and every backend.

    Attributes
    ----------
    name : str
        The public function's name (and the generic and backend kernels' name).
    args : tuple of str
        The positional array arguments, in order (the names used in error messages).
    where : bool
        Whether it takes a ``where`` mask.
    output : {"same", "reduced", "jacobian"}
        ``same``: the shape of the first argument; ``reduced``: the batch shape (one number per
        slice); ``jacobian``: ``batch + (C, C)``.
    of : str or None
        For a derivative kernel: the forward kernel it differentiates, whose output is ``args[0]``.
    jvp, vjp : str or None
        For a forward kernel: its derivative kernels, called as ``jvp(out, tangent)`` and
        ``vjp(out, cotangent)`` (with the forward's mask where they take one).
    jacobian : str or None
        For a forward kernel: its dense Jacobian kernel, called on the forward's output.
    saves : {"output", "lse"}
        What a backward pass keeps, and so what the derivative kernels take. ``output``: the
        forward's output (softmax, log_softmax; ``jvp(out, tangent)``). ``lse``: the forward's
        inputs, which the caller holds anyway, and the log-sum-exp of each slice, one number per
        slice (logsumexp and the cross-entropies: ``jvp(*inputs, lse, *tangents)``); such a
        forward kernel returns ``(out, lse)`` unless its output is the lse itself.
    options : tuple of str
        Keyword arguments beyond ``axis``, ``where`` and ``xp`` (static, not arrays).
    public : bool
        Whether the kernel is a public function of the package (the cross-entropies' derivative
        kernels are reached through autodiff only).
    """

    name: str
    args: tuple[str, ...]
    where: bool
    output: Output = "same"
    of: str | None = None
    jvp: str | None = None
    vjp: str | None = None
    jacobian: str | None = None
    saves: Saves = "output"
    options: tuple[str, ...] = ()
    public: bool = True

    @property
    def forward(self) -> bool:
        """Whether this is a forward kernel (one with derivative kernels of its own; a kernel with
        neither, such as ``logsumexp_weighted``, is differentiated by the framework itself)."""
        return self.of is None and self.jvp is not None


_TABLE = (
    Kernel("softmax", ("x",), where=True, jvp="softmax_jvp", vjp="softmax_vjp",
           jacobian="softmax_jacobian"),
    Kernel("log_softmax", ("x",), where=True, jvp="log_softmax_jvp", vjp="log_softmax_vjp",
           jacobian="log_softmax_jacobian"),
    Kernel("softmax_jvp", ("y", "v"), where=False, of="softmax"),
    Kernel("softmax_vjp", ("y", "g"), where=False, of="softmax"),
    Kernel("log_softmax_jvp", ("l", "v"), where=True, of="log_softmax"),
    Kernel("log_softmax_vjp", ("l", "g"), where=True, of="log_softmax"),
    Kernel("softmax_jacobian", ("y",), where=False, output="jacobian", of="softmax"),
    Kernel("log_softmax_jacobian", ("l",), where=False, output="jacobian", of="log_softmax"),
    Kernel("logsumexp", ("x",), where=True, output="reduced", jvp="logsumexp_jvp",
           vjp="logsumexp_vjp", saves="lse"),
    Kernel("logsumexp_jvp", ("x", "lse", "v"), where=True, output="reduced", of="logsumexp",
           saves="lse"),
    Kernel("logsumexp_vjp", ("x", "lse", "g"), where=True, of="logsumexp", saves="lse"),
    Kernel("logsumexp_weighted", ("x", "b"), where=True, output="reduced", public=False),
    Kernel("softmax_cross_entropy", ("x", "targets"), where=True, output="reduced",
           jvp="softmax_cross_entropy_jvp", vjp="softmax_cross_entropy_vjp", saves="lse",
           options=("label_smoothing",)),
    Kernel("softmax_cross_entropy_jvp", ("x", "targets", "lse", "v", "u"), where=True,
           output="reduced", of="softmax_cross_entropy", saves="lse",
           options=("label_smoothing",), public=False),
    Kernel("softmax_cross_entropy_vjp", ("x", "targets", "lse", "g", "h"), where=True,
           of="softmax_cross_entropy", saves="lse", options=("label_smoothing",), public=False),
    Kernel("softmax_cross_entropy_with_integer_labels", ("x", "labels"), where=True,
           output="reduced", jvp="softmax_cross_entropy_with_integer_labels_jvp",
           vjp="softmax_cross_entropy_with_integer_labels_vjp", saves="lse",
           options=("label_smoothing", "ignore_index")),
    Kernel("softmax_cross_entropy_with_integer_labels_jvp", ("x", "labels", "lse", "v"),
           where=True, output="reduced", of="softmax_cross_entropy_with_integer_labels",
           saves="lse", options=("label_smoothing", "ignore_index"), public=False),
    Kernel("softmax_cross_entropy_with_integer_labels_vjp", ("x", "labels", "lse", "g", "h"),
           where=True, of="softmax_cross_entropy_with_integer_labels", saves="lse",
           options=("label_smoothing", "ignore_index"), public=False),
)  # fmt: skip

#: Every kernel by name.
KERNELS: dict[str, Kernel] = {k.name: k for k in _TABLE}
#: The public kernels' names, sorted (the public functions' ``__all__``).
NAMES: tuple[str, ...] = tuple(sorted(k.name for k in _TABLE if k.public))
#: The forward kernels (those differentiated through the package's own derivative kernels).
FORWARD: tuple[str, ...] = tuple(k.name for k in _TABLE if k.forward)
#: The kernels whose derivatives take the forward's output: softmax, log_softmax and theirs.
OF_OUTPUT: tuple[str, ...] = tuple(
    k.name for k in _TABLE if (KERNELS[k.of] if k.of else k).saves == "output" and (k.of or k.jvp)
)


def derivatives_of(name: str) -> tuple[Kernel, ...]:
    """The kernels that differentiate forward kernel ``name`` (its JVP, VJP and Jacobian)."""
    return tuple(k for k in _TABLE if k.of == name)
