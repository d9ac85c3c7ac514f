"""The benchmark suite: collected by ``pytest bench --benchmark-only``.

The root conftest keeps bench/ out of the test and doctest collection (it lists ``bench/*`` in
``collect_ignore_glob``); this hook lets the suite's own ``test_bench_*.py`` files through.
"""

from __future__ import annotations

from pathlib import Path


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    if collection_path.name.startswith("test_bench_") and collection_path.suffix == ".py":
        return False
    return None
