"""pytest-benchmark suite: every kernel against its peers and the copy of the same bytes.

Run with ``pytest bench --benchmark-only`` (add ``--benchmark-json=FILE`` to keep the numbers,
``--benchmark-compare`` to compare two runs). One benchmark per (backend, dtype, shape, kernel,
implementation); the cases are the ones ``softmax-xp bench`` times (``softmax_xp._cli._bench``),
so both report the same things. Each benchmark's ``extra_info`` holds the bytes the kernel must
move and its role (ours, peer, or the copy roofline); group names put a kernel's implementations
side by side.

Shapes are moderate by default so the suite runs in a few minutes; set
``SOFTMAX_XP_BENCH_FULL=1`` for the shapes of ``softmax-xp bench`` (much longer).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Any

import pytest

from softmax_xp._cli import _bench

BACKENDS = [b for b in ("numpy", "torch", "jax") if importlib.util.find_spec(b) is not None]
DTYPES = ["float32", "float64"]
if os.environ.get("SOFTMAX_XP_BENCH_FULL"):
    SHAPES = list(_bench.FULL_SHAPES)
    JAC_SHAPES = list(_bench.FULL_JAC)
else:
    SHAPES = [(512, 2048), (16384, 16)]
    JAC_SHAPES = [(32, 256)]
JAC_SHAPES.append(_bench.TEXTBOOK_JAC)


@functools.cache
def _cases(backend: str, dtype: str, shape: tuple[int, ...], jac: bool) -> dict[str, Any]:
    cases = _bench._build(backend, shape, dtype, jac, "cpu")
    return {f"{c.kernel}|{c.impl}": c for c in cases}


def _names(backend: str, jac: bool) -> list[str]:
    """Case names, from a tiny shape (the set of cases does not depend on the shape)."""
    return [f"{c.kernel}|{c.impl}" for c in _bench._build(backend, (2, 8), "float32", jac, "cpu")]


def _params() -> list[Any]:
    out = []
    for backend in BACKENDS:
        for jac, shapes in ((False, SHAPES), (True, JAC_SHAPES)):
            names = _names(backend, jac)
            for dtype in DTYPES:
                for shape in shapes:
                    for name in names:
                        if "textbook" in name and shape != _bench.TEXTBOOK_JAC:
                            continue
                        sid = "x".join(map(str, shape))
                        out.append(
                            pytest.param(
                                backend,
                                dtype,
                                shape,
                                jac,
                                name,
                                id=f"{backend}-{dtype}-{sid}-{name}",
                            )
                        )
    return out


@pytest.mark.parametrize(("backend", "dtype", "shape", "jac", "name"), _params())
def test_kernel(
    benchmark: Any, backend: str, dtype: str, shape: tuple[int, ...], jac: bool, name: str
) -> None:
    with _bench._context(backend, dtype):  # JAX float64: x64 on, for this test only
        case = _cases(backend, dtype, shape, jac).get(name)
        if case is None:
            pytest.skip(f"{name} not available for {shape}")
        sync = _bench._sync_for(backend, "cpu")
        fn = case.fn if sync is None else (lambda: sync(case.fn()))
        sid = "x".join(map(str, shape))
        benchmark.group = f"{backend} {dtype} {sid} {case.kernel}"
        benchmark.extra_info.update(
            {"bytes": case.nbytes, "role": case.role, "impl": case.impl, "kernel": case.kernel}
        )
        benchmark(fn)
