"""The public API is exactly the kernel registry's: names, signatures, and a light import."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import softmax_xp as sx
from softmax_xp._kernels import KERNELS, NAMES, OF_OUTPUT, Kernel

P, K = inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.KEYWORD_ONLY


def _expected(kernel: Kernel) -> list[tuple[str, inspect._ParameterKind, object]]:
    """The signature the registry declares: the arrays positional-only, then ``axis=-1``,
    ``where=None`` (kernels that take a mask), ``dtype=None`` (forward kernels), ``xp=None``."""
    params: list[tuple[str, inspect._ParameterKind, object]] = [(a, P, None) for a in kernel.args]
    params.append(("axis", K, -1))
    if kernel.where:
        params.append(("where", K, None))
    if kernel.forward:
        params.append(("dtype", K, None))
    return [*params, ("xp", K, None)]


#: (name, kind, default) per parameter, per public function: from the kernel registry for softmax,
#: log_softmax and their derivatives; as documented (README, docs/api.rst) for the others.
SIGNATURES = {name: _expected(KERNELS[name]) for name in NAMES if name in OF_OUTPUT}
_LSE = [("x", P, None), ("axis", K, -1), ("where", K, None)]
SIGNATURES["logsumexp"] = [
    *_LSE, ("b", K, None), ("keepdims", K, False), ("return_sign", K, False), ("dtype", K, None),
    ("xp", K, None),
]  # fmt: skip
SIGNATURES["logsumexp_jvp"] = [
    ("x", P, None), ("lse", P, None), ("v", P, None), ("axis", K, -1), ("where", K, None),
    ("xp", K, None),
]  # fmt: skip
SIGNATURES["logsumexp_vjp"] = [
    ("x", P, None), ("lse", P, None), ("g", P, None), ("axis", K, -1), ("where", K, None),
    ("xp", K, None),
]  # fmt: skip
SIGNATURES["softmax_cross_entropy"] = [
    ("x", P, None), ("targets", P, None), ("axis", K, -1), ("where", K, None),
    ("label_smoothing", K, 0.0), ("xp", K, None),
]  # fmt: skip
SIGNATURES["softmax_cross_entropy_with_integer_labels"] = [
    ("x", P, None), ("labels", P, None), ("axis", K, -1), ("where", K, None),
    ("label_smoothing", K, 0.0), ("ignore_index", K, None), ("xp", K, None),
]  # fmt: skip
CLASSES = {"SoftmaxJacobian", "LogSoftmaxJacobian"}


def test_registry_declares_the_documented_kernels() -> None:
    """The registry's table against the documented API (the README's API table)."""
    assert set(NAMES) == {
        "softmax", "log_softmax", "softmax_jvp", "softmax_vjp", "softmax_jacobian",
        "log_softmax_jvp", "log_softmax_vjp", "log_softmax_jacobian",
        "logsumexp", "logsumexp_jvp", "logsumexp_vjp",
        "softmax_cross_entropy", "softmax_cross_entropy_with_integer_labels",
    }  # fmt: skip
    assert set(SIGNATURES) == set(NAMES)
    for k in KERNELS.values():  # every signature's arrays are the registry's
        if k.public:
            assert [p[0] for p in SIGNATURES[k.name] if p[1] is P] == list(k.args)
    assert SIGNATURES["softmax_vjp"] == [
        ("y", P, None), ("g", P, None), ("axis", K, -1), ("xp", K, None)
    ]  # fmt: skip
    assert [p[0] for p in SIGNATURES["log_softmax"]] == ["x", "axis", "where", "dtype", "xp"]
    for k in KERNELS.values():
        for d in (k.jvp, k.vjp, k.jacobian):
            assert d is None or KERNELS[d].of == k.name


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in dir(sx) if not n.startswith("_")}
    assert set(sx.__all__) == public
    assert set(SIGNATURES) <= set(sx.__all__)
    assert set(sx.__all__) - set(SIGNATURES) <= CLASSES


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature(name: str) -> None:
    params = inspect.signature(getattr(sx, name)).parameters.values()
    got = [
        (p.name, p.kind, None if p.default is inspect.Parameter.empty else p.default)
        for p in params
    ]
    assert got == SIGNATURES[name]


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_docstring_has_a_runnable_example(name: str) -> None:
    doc = getattr(sx, name).__doc__
    assert "Parameters\n    ----------" in doc
    assert "Examples\n    --------" in doc
    assert ">>> " in doc


def test_import_is_light() -> None:
    code = "import sys, softmax_xp; print(sorted(m for m in ('torch', 'jax', 'dask', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_command_help_and_unknown_subcommand() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "softmax_xp", "--help"], capture_output=True, text=True
    )
    assert ok.returncode == 0
    assert "check" in ok.stdout
    assert "bench" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "softmax_xp", "frobnicate"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr
