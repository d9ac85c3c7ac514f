"""The gallery's examples (examples/plot_*.py) run as tests: each is a real client whose own
assertions compare with an independent result (scikit-learn's optimum, the same model with
``torch.log_softmax`` or ``jax.nn.log_softmax``, NumPy on the same block).

Each runs in a fresh interpreter (the JAX example scopes float64 itself; nothing leaks into the
test process), with ``SOFTMAX_XP_GALLERY_QUICK=1`` so that the training loops are short; the docs
build (``nox -s docs``) runs them in full. An example whose client library is not installed
(scikit-learn and optax come with the ``docs`` extra) skips.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NEEDS = {
    "plot_newton_logistic.py": ["sklearn", "scipy"],
    "plot_torch_mlp.py": ["sklearn", "torch"],
    "plot_jax_mlp.py": ["sklearn", "jax", "optax"],
    "plot_dask_out_of_core.py": ["dask"],
}
#: What each example must print (its figures), beyond exiting cleanly.
PRINTS = {
    "plot_newton_logistic.py": ["relative difference", "wall time", "Hessian: dense (640, 640)"],
    "plot_torch_mlp.py": ["largest relative difference", "ratio"],
    "plot_jax_mlp.py": ["largest relative difference", "ratio"],
    "plot_dask_out_of_core.py": ["max |sum(y) - 1|", "matches"],
}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("plot_*.py")) == sorted(NEEDS)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_example_runs(name: str) -> None:
    missing = [m for m in NEEDS[name] if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name} needs {missing} (pip install -c constraints.txt '.[docs]')")
    env = {**os.environ, "SOFTMAX_XP_GALLERY_QUICK": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    missing_out = [s for s in PRINTS[name] if s not in run.stdout]
    assert not missing_out, f"{name} did not print {missing_out}:\n{run.stdout}"
    print(run.stdout)
