"""Fixtures: ``lib`` runs a test once per selected backend (see ``_support.Backend``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from _fastpaths import RowsSpy, isa_levels, np_fast, require_rows
from _support import Backend, Lib, in_session, make_lib, selected_backends
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("SOFTMAX_XP_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = selected_backends()


@pytest.fixture(params=BACKENDS, ids=[b.value for b in BACKENDS])
def lib(request: pytest.FixtureRequest) -> Iterator[Lib]:
    """One backend under test (skips if not installed or without its GPU).

    JAX backends run inside a scoped ``jax.enable_x64(True)`` so that float64 is tested too;
    the global flag is left as it was (tests/test_forward.py covers the default, x64 off).
    """
    backend: Backend = request.param
    for marker in request.node.iter_markers("skip_backend"):
        if backend.value in marker.args:
            pytest.skip(marker.kwargs.get("reason", f"not for {backend.value}"))
    lib = make_lib(backend)
    ctx: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if backend.is_jax:
        import jax

        ctx = jax.enable_x64(True)
    with ctx:
        yield lib


#: Framework-specific test files (not parametrized over backends) and the session they belong to.
_FRAMEWORK_FILES = {"test_autodiff_torch.py": "torch", "test_autodiff_jax.py": "jax"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run framework-specific tests once, in their own framework's session."""
    for item in items:
        name = item.path.name
        framework = _FRAMEWORK_FILES.get(name)
        if framework is not None and not in_session(framework):
            item.add_marker(pytest.mark.skip(reason=f"runs in the {framework} session"))


# -- the C row kernels: every instruction-set level, and a spy counting the calls --------------
@pytest.fixture(params=isa_levels())
def isa_level(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a C-kernel test at each instruction-set level this CPU and build have (AVX-512, AVX2,
    SSE2 on x86-64; NEON on aarch64), as on a CPU whose best level that is."""
    rows = require_rows()
    previous = rows.use_isa(request.param)
    try:
        assert rows.isa() == request.param
        yield request.param
    finally:
        rows.use_isa(previous)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> RowsSpy:
    """The NumPy fast path's C kernels, counted (a test asserts that they ran, or did not)."""
    s = RowsSpy(require_rows())
    monkeypatch.setattr(np_fast(), "_rows", s)
    return s
