"""Thread safety and memory: threads share inputs and get the serial results; calls do not leak.

- 8 threads call every public function on shared inputs, several times each, in different orders;
  every result must equal (bit for bit) the one a serial run gives. The inputs are large enough
  for the NumPy fast paths to split work over their thread pool.
- 100,000 calls on small arrays, after a warm-up, must not grow Python-tracked memory
  (tracemalloc sees NumPy's buffers and every Python object) beyond a small bound.
"""

from __future__ import annotations

import contextlib
import gc
import random
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _support import Backend, Lib

import softmax_xp as sx

N_THREADS = 8
REPEATS = 3


def _cases(lib: Lib) -> dict[str, tuple[Callable[..., Any], list[Any], dict[str, Any]]]:
    """Every public function with shared inputs (the Jacobians on a smaller array)."""
    rng = np.random.default_rng(7)
    big = (256, 2048) if lib.backend in (Backend.NUMPY, Backend.NUMPY_READONLY) else (64, 512)
    x_np = rng.normal(0.0, 3.0, big)
    x_np[::17, ::13] = -np.inf
    x = lib.asarray(x_np, "float64" if _has_float64(lib) else "float32")
    dt = "float64" if _has_float64(lib) else "float32"
    t = lib.asarray(rng.normal(size=big), dt)
    where = lib.asarray(rng.random(big[-1:]) < 0.7)
    small_np = rng.normal(size=(16, 24))
    y = sx.softmax(x)
    ls = sx.log_softmax(x, where=where)
    y_small = sx.softmax(lib.asarray(small_np, dt))
    l_small = sx.log_softmax(lib.asarray(small_np, dt))
    return {
        "softmax": (sx.softmax, [x], {}),
        "softmax where": (sx.softmax, [x], {"where": where}),
        "log_softmax": (sx.log_softmax, [x], {"axis": 0}),
        "log_softmax where": (sx.log_softmax, [x], {"where": where}),
        "softmax_jvp": (sx.softmax_jvp, [y, t], {}),
        "softmax_vjp": (sx.softmax_vjp, [y, t], {}),
        "softmax_jacobian": (sx.softmax_jacobian, [y_small], {}),
        "log_softmax_jvp": (sx.log_softmax_jvp, [ls, t], {"where": where}),
        "log_softmax_vjp": (sx.log_softmax_vjp, [ls, t], {"where": where}),
        "log_softmax_jacobian": (sx.log_softmax_jacobian, [l_small], {"axis": None}),
    }


def _has_float64(lib: Lib) -> bool:
    if lib.backend.is_jax:
        import jax

        return bool(jax.config.jax_enable_x64)
    return True


def _run(lib: Lib, fn: Callable[..., Any], arrays: list[Any], kw: dict[str, Any]) -> np.ndarray:
    # Dask: lib.call's no-compute guard is a global config setting, not one for threads
    jit = lib.backend is Backend.JAX_JIT
    return lib.to_numpy(lib.call(fn, *arrays, **kw) if jit else fn(*arrays, **kw))


def _same_config(lib: Lib) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """JAX's ``enable_x64`` context (the fixture's) is thread-local: carry it into the threads.

    Read here, in the calling thread; the returned factory is entered in each worker.
    """
    if not lib.backend.is_jax:
        return contextlib.nullcontext
    import jax

    x64 = bool(jax.config.jax_enable_x64)
    return lambda: jax.enable_x64(x64)


def test_threads_get_the_serial_results(lib: Lib) -> None:
    cases = _cases(lib)
    serial = {name: _run(lib, *case) for name, case in cases.items()}
    results: dict[tuple[int, int, str], np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(N_THREADS)
    config = _same_config(lib)

    def worker(k: int) -> None:
        order = [name for name in cases for _ in range(REPEATS)]
        random.Random(k).shuffle(order)
        try:
            with config():
                start.wait()
                for i, name in enumerate(order):
                    results[(k, i, name)] = _run(lib, *cases[name])
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(results) == N_THREADS * REPEATS * len(cases)
    for (k, i, name), got in results.items():
        np.testing.assert_array_equal(got, serial[name], err_msg=f"thread {k}, call {i}: {name}")


MEMORY_CALLS = 100_000
WARMUP_CALLS = 2_000
#: bytes of Python-tracked memory that 100,000 calls may leave behind (allocator noise)
MEMORY_BOUND = 64 * 1024


@pytest.mark.skip_backend(
    "numpy_readonly",
    "jax",
    "jax_jit",
    "dask",
    reason="numpy_readonly runs numpy's code; for JAX and Dask, per-call dispatch (XLA, graph "
    "building) makes 100,000 calls take many minutes, and their buffers live outside tracemalloc",
)
def test_no_memory_growth_over_many_calls(lib: Lib) -> None:
    rng = np.random.default_rng(3)
    x = lib.asarray(rng.normal(size=(4, 8)), "float32")
    t = lib.asarray(rng.normal(size=(4, 8)), "float32")
    where = lib.asarray(rng.random(8) < 0.7)
    y, ls = sx.softmax(x), sx.log_softmax(x, where=where)
    calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
        (sx.softmax, (x,), {}),
        (sx.log_softmax, (x,), {"where": where}),
        (sx.softmax_jvp, (y, t), {}),
        (sx.softmax_vjp, (y, t), {"axis": 0}),
        (sx.softmax_jacobian, (y,), {}),
        (sx.log_softmax_jvp, (ls, t), {"where": where}),
        (sx.log_softmax_vjp, (ls, t), {}),
        (sx.log_softmax_jacobian, (ls,), {"axis": None}),
    ]

    def run(n: int) -> None:
        for i in range(n):
            fn, args, kw = calls[i % len(calls)]
            fn(*args, **kw)

    run(WARMUP_CALLS)
    gc.collect()
    tracemalloc.start()
    try:
        run(WARMUP_CALLS)  # caches that fill lazily on the first traced calls
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        run(MEMORY_CALLS)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    growth = after - before
    assert growth < MEMORY_BOUND, f"{MEMORY_CALLS} calls left {growth} bytes behind"
