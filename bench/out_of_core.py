"""Out-of-core benchmark: softmax -> VJP -> a reduction on a Dask array bigger than memory.

The input is ``--gib`` GiB of float32 logits made lazily by ``dask.array.random``, chunked along
both the batch axis and the class axis (so the softmax reductions run across chunks). The pipeline
is the one a training step runs on a classifier's logits::

    y  = softmax(x)                      # over the class axis, chunked
    g  = cos(x)                          # a cotangent derived from x (no second input)
    dx = softmax_vjp(y, g)               # the backward pass, from the output only
    reduce: max |sum(y) - 1|, max |sum(dx)|, sum(dx**2)

It runs once on Dask's threaded scheduler and once on a ``dask.distributed.LocalCluster`` (worker
processes), sampling the resident memory (RSS) of this process and all of its children every
``--interval`` seconds with psutil, and prints input size, wall time and peak memory per scheduler.

Run it as::

    python bench/out_of_core.py --gib 32

Use a small ``--gib`` (e.g. 0.5) for a quick check. ``--schedulers threads`` or ``distributed``
runs only one of them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import dask
import dask.array as da
import numpy as np
import psutil

import softmax_xp as sx

GIB = 1024**3


class PeakRSS:
    """Sample the summed RSS of a process tree (this process and its descendants) in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self.baseline = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._root = psutil.Process(os.getpid())

    def sample(self) -> int:
        total = 0
        procs = [self._root]
        with contextlib.suppress(psutil.Error):  # the tree may change under us
            procs += self._root.children(recursive=True)
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:  # a worker that just exited
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.baseline = self.sample()
        self.peak = self.baseline
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.sample())


def build(
    gib: float, n_classes: int, row_chunk: int, class_chunk: int, seed: int
) -> tuple[Any, ...]:
    """The lazy pipeline: returns (input array, the three reductions)."""
    n_rows = max(1, round(gib * GIB / (4 * n_classes)))
    rng = da.random.default_rng(seed)
    x = rng.random((n_rows, n_classes), dtype=np.float32, chunks=(row_chunk, class_chunk))
    x = 8.0 * x  # logits in [0, 8): a spread that makes softmax non-trivial, still float32
    y = sx.softmax(x, axis=-1)
    g = da.cos(x)
    dx = sx.softmax_vjp(y, g, axis=-1)
    checks = (
        da.max(da.abs(da.sum(y, axis=-1, dtype=np.float64) - 1.0)),
        da.max(da.abs(da.sum(dx, axis=-1, dtype=np.float64))),
        da.sum(dx.astype(np.float64) ** 2),
    )
    return (x, *checks)


@contextmanager
def threaded(workers: int) -> Iterator[Callable[..., Any]]:
    with dask.config.set(scheduler="threads", num_workers=workers):
        yield dask.compute


@contextmanager
def distributed_cluster(workers: int, worker_memory: str) -> Iterator[Callable[..., Any]]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=worker_memory,
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
    ):
        yield dask.compute  # the active Client is the default scheduler here


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    x, *checks = build(args.gib, args.classes, args.row_chunk, args.class_chunk, args.seed)
    ctx = (
        threaded(args.workers)
        if name == "threads"
        else distributed_cluster(args.workers, args.worker_memory)
    )
    with PeakRSS(args.interval) as mem, ctx as compute:
        t0 = time.perf_counter()
        values = compute(*checks)
        wall = time.perf_counter() - t0
    y_err, dx_rowsum, dx_sq = (float(v) for v in values)
    return {
        "scheduler": name,
        "input_gib": x.nbytes / GIB,
        "shape": list(x.shape),
        "chunks": [x.chunksize[0], x.chunksize[1]],
        "n_chunks": math.prod(len(c) for c in x.chunks),
        "chunk_mib": x.chunksize[0] * x.chunksize[1] * 4 / 2**20,
        "workers": args.workers,
        "wall_s": wall,
        "throughput_gib_s": x.nbytes / GIB / wall,
        "peak_rss_gib": mem.peak / GIB,
        "baseline_rss_gib": mem.baseline / GIB,
        "max_abs_sum_y_minus_1": y_err,
        "max_abs_rowsum_dx": dx_rowsum,
        "sum_dx_squared": dx_sq,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--gib", type=float, default=32.0, help="input size in GiB of float32 (default 32)"
    )
    ap.add_argument(
        "--classes", type=int, default=2**16, help="C, the softmax axis length (default 65536)"
    )
    ap.add_argument("--row-chunk", type=int, default=1024, help="rows per chunk (default 1024)")
    ap.add_argument(
        "--class-chunk", type=int, default=2**14, help="classes per chunk (default 16384)"
    )
    ap.add_argument("--workers", type=int, default=2, help="threads / worker processes (default 2)")
    ap.add_argument("--worker-memory", default="2GiB", help="LocalCluster memory_limit per worker")
    ap.add_argument("--schedulers", default="threads,distributed", help="comma separated list")
    ap.add_argument("--interval", type=float, default=0.05, help="RSS sampling interval in seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)

    total = psutil.virtual_memory().total
    print(
        f"# machine: {platform.node()} {os.cpu_count()} cores, {total / GIB:.1f} GiB RAM; "
        f"python {platform.python_version()}, dask {dask.__version__}, numpy {np.__version__}, "
        f"softmax_xp {sx.__version__}",
        flush=True,
    )
    results = []
    for name in [s.strip() for s in args.schedulers.split(",") if s.strip()]:
        if name not in ("threads", "distributed"):
            ap.error(f"unknown scheduler {name!r}")
        r = run_one(name, args)
        results.append(r)
        print(
            f"{r['scheduler']:12s} input {r['input_gib']:.2f} GiB {tuple(r['shape'])} "
            f"in {r['n_chunks']} chunks of {r['chunk_mib']:.0f} MiB | "
            f"wall {r['wall_s']:.1f} s ({r['throughput_gib_s']:.3f} GiB/s) | "
            f"peak RSS {r['peak_rss_gib']:.2f} GiB (baseline {r['baseline_rss_gib']:.2f}) | "
            f"max|sum y - 1| {r['max_abs_sum_y_minus_1']:.2e}, "
            f"max|sum dx| {r['max_abs_rowsum_dx']:.2e}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine_ram_gib": total / GIB, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
