"""The public API is exactly DESIGN.md's: names, signatures, and an import that stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import softmax_xp as sx

P, K = inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.KEYWORD_ONLY

#: DESIGN.md's signatures: (name, kind, default) per parameter.
SIGNATURES = {
    "softmax": [
        ("x", P, None),
        ("axis", K, -1),
        ("where", K, None),
        ("dtype", K, None),
        ("xp", K, None),
    ],
    "log_softmax": [
        ("x", P, None),
        ("axis", K, -1),
        ("where", K, None),
        ("dtype", K, None),
        ("xp", K, None),
    ],
    "softmax_jvp": [("y", P, None), ("v", P, None), ("axis", K, -1), ("xp", K, None)],
    "softmax_vjp": [("y", P, None), ("g", P, None), ("axis", K, -1), ("xp", K, None)],
    "softmax_jacobian": [("y", P, None), ("axis", K, -1), ("xp", K, None)],
    "log_softmax_jvp": [
        ("l", P, None),
        ("v", P, None),
        ("axis", K, -1),
        ("where", K, None),
        ("xp", K, None),
    ],
    "log_softmax_vjp": [
        ("l", P, None),
        ("g", P, None),
        ("axis", K, -1),
        ("where", K, None),
        ("xp", K, None),
    ],
    "log_softmax_jacobian": [("l", P, None), ("axis", K, -1), ("xp", K, None)],
}
CLASSES = {"SoftmaxJacobian", "LogSoftmaxJacobian"}


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
