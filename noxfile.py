"""The test matrix: one session per array backend, plus lint and bench.

Every install goes through constraints.txt (the tested versions; torch pinned to the CPU build so
that a CPU-only machine never downloads CUDA wheels). ``nox`` runs the default sessions below;
``nox -s bench`` runs the benchmark suite. Environment variable SOFTMAX_XP_BACKENDS tells the
test suite which backends the session tests (GPU variants skip cleanly without a GPU).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "numpy", "strict", "dask", "torch", "jax"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

CONSTRAINTS = ("-c", "constraints.txt")


def _install(session: nox.Session) -> None:
    # Every test session installs every framework: they are each other's references (an edge
    # case on NumPy is checked against what torch and JAX return); SOFTMAX_XP_BACKENDS picks the
    # arrays a session tests.
    session.install(*CONSTRAINTS, "-e", ".[test,torch,jax,dask]")


def _pytest(session: nox.Session, backends: str) -> None:
    # SOFTMAX_XP_REQUIRE_ROWS: the C row kernels must have been built (a test fails otherwise).
    env = {"SOFTMAX_XP_BACKENDS": backends, "SOFTMAX_XP_REQUIRE_ROWS": "1"}
    session.run("pytest", *session.posargs, env=env)
    session.run("softmax-xp", "check", env=env)


@nox.session
def numpy(session: nox.Session) -> None:
    """NumPy (writable and read-only arrays), with float64 references and finite differences."""
    _install(session)
    _pytest(session, "numpy,numpy_readonly")


@nox.session
def strict(session: nox.Session) -> None:
    """array-api-strict: the generic kernels on the standard alone, on a non-default device."""
    _install(session)
    _pytest(session, "array_api_strict")


@nox.session
def dask(session: nox.Session) -> None:
    """dask.array, chunked along every axis, the softmax axis included; no compute by our code."""
    _install(session)
    _pytest(session, "dask")


@nox.session
def torch(session: nox.Session) -> None:
    """PyTorch CPU (and CUDA where present), against torch.autograd and torch.func."""
    _install(session)
    _pytest(session, "torch,torch_gpu")


@nox.session
def jax(session: nox.Session) -> None:
    """JAX CPU eager and under jax.jit (and GPU where present), against jax transforms."""
    _install(session)
    _pytest(session, "jax,jax_jit,jax_gpu")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy --strict (with the frameworks installed, so that their types are checked)."""
    session.install(
        *CONSTRAINTS, "-e", ".[torch,jax]", "ruff", "mypy", "pytest", "hypothesis", "nox"
    )
    session.run("ruff", "check", "src", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "noxfile.py")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """The pytest-benchmark suite and a quick `softmax-xp bench` run (timings, not tests)."""
    session.install(*CONSTRAINTS, "-e", ".[torch,jax,bench]")
    tmp = session.create_tmp()
    session.run(
        "pytest", "bench", "--benchmark-only", "-q", "--benchmark-max-time=0.25",
        "--benchmark-min-rounds=5", f"--benchmark-json={tmp}/pytest-benchmark.json",
    )  # fmt: skip
    session.run("softmax-xp", "bench", "--quick", "--out", tmp, *session.posargs)
