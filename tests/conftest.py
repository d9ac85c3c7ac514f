"""Fixtures: ``lib`` runs a test once per selected backend (see ``_support.Backend``)."""

from __future__ import annotations

import os

import pytest
from _support import Backend, Lib, make_lib, selected_backends
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
def lib(request: pytest.FixtureRequest) -> Lib:
    """One backend under test (skips if not installed or without its GPU)."""
    backend: Backend = request.param
    for marker in request.node.iter_markers("skip_backend"):
        if backend.value in marker.args:
            pytest.skip(marker.kwargs.get("reason", f"not for {backend.value}"))
    return make_lib(backend)
