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
runs only one of them. ``--report FILE.html`` writes a ``dask.distributed`` performance report
(task stream, worker profiles, transfers) of the distributed run (it needs bokeh).

``--in-memory`` instead times softmax on an in-memory (8192, 4096) float32 array: NumPy against
Dask's threaded scheduler with chunks (1024, 4096) (the softmax axis whole) and (1024, 1024)
(the softmax axis in 4 chunks), the samples interleaved, and prints medians (p20, p80), the
ratio of throughputs and the graph sizes. The Dask time is ``.compute()`` (which ends by
concatenating the blocks into one NumPy array) and, separately, ``.persist()`` (the blocks left
as they are).
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

import array_api_compat
import dask
import dask.array as da
import numpy as np
import psutil

import softmax_xp as sx
from softmax_xp import _generic

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
        report: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if name == "distributed" and args.report:
            from distributed import performance_report

            report = performance_report(filename=args.report)
        with report:
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
        "graph_tasks": len({k for c in checks for k in dict(c.__dask_graph__())}),
        "max_abs_sum_y_minus_1": y_err,
        "max_abs_rowsum_dx": dx_rowsum,
        "sum_dx_squared": dx_sq,
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _quantiles(ts: list[float]) -> dict[str, float]:
    q = np.quantile(np.asarray(ts), [0.2, 0.5, 0.8])
    return {"p20_s": float(q[0]), "median_s": float(q[1]), "p80_s": float(q[2])}


def in_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    """NumPy against Dask (threaded) on one in-memory array, the samples interleaved."""
    shape = (8192, 4096)
    xn = np.random.default_rng(args.seed).normal(size=shape).astype(np.float32)
    variants: dict[str, Callable[[], Any]] = {"numpy": lambda: sx.softmax(xn)}
    graphs: dict[str, int] = {}
    for chunks in ((1024, 4096), (1024, 1024)):
        x = da.from_array(xn, chunks=chunks)
        tag = f"dask {chunks[0]}x{chunks[1]}"
        graphs[tag] = len(sx.softmax(x).__dask_graph__()) - len(x.__dask_graph__())
        variants[f"{tag} compute"] = lambda x=x: sx.softmax(x).compute()
        variants[f"{tag} persist"] = lambda x=x: sx.softmax(x).persist()
        # the generic array-API kernel on the same array (what Dask ran before its fast path)
        xp = array_api_compat.array_namespace(x)
        gtag = f"{tag} generic"
        graphs[gtag] = len(_generic.softmax(x, axis=(1,), xp=xp).__dask_graph__()) - len(
            x.__dask_graph__()
        )
        variants[f"{gtag} compute"] = lambda x=x, xp=xp: _generic.softmax(
            x, axis=(1,), xp=xp
        ).compute()
    samples: dict[str, list[float]] = {k: [] for k in variants}
    with dask.config.set(scheduler="threads", num_workers=args.workers):
        for f in variants.values():  # warm-up (imports, thread pools, first-touch pages)
            f()
        for _ in range(args.repeats):
            for name, f in variants.items():
                t0 = time.perf_counter()
                f()
                samples[name].append(time.perf_counter() - t0)
    base = float(np.median(samples["numpy"]))
    rows = []
    for name, ts in samples.items():
        q = _quantiles(ts)
        tag = name.rsplit(" ", 1)[0]
        rows.append(
            {
                "variant": name,
                "shape": list(shape),
                "dtype": "float32",
                "repeats": args.repeats,
                **q,
                "throughput_vs_numpy": base / q["median_s"],
                "graph_tasks_beyond_input": graphs.get(tag),
            }
        )
    return rows


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
    ap.add_argument("--report", help="write a performance report (HTML) of the distributed run")
    ap.add_argument("--in-memory", action="store_true", help="time the in-memory comparison")
    ap.add_argument("--repeats", type=int, default=15, help="samples per variant (--in-memory)")
    args = ap.parse_args(argv)

    total = psutil.virtual_memory().total
    print(
        f"# machine: {platform.node()} {_cpu_model()}, {os.cpu_count()} cores, "
        f"{total / GIB:.1f} GiB RAM, load average {os.getloadavg()[0]:.1f}; "
        f"python {platform.python_version()}, dask {dask.__version__}, numpy {np.__version__}, "
        f"softmax_xp {sx.__version__}",
        flush=True,
    )
    if args.in_memory:
        rows = in_memory(args)
        for r in rows:
            tasks = r["graph_tasks_beyond_input"]
            print(
                f"{r['variant']:26s} median {r['median_s'] * 1e3:7.1f} ms "
                f"(p20 {r['p20_s'] * 1e3:.1f}, p80 {r['p80_s'] * 1e3:.1f}) | "
                f"{100 * r['throughput_vs_numpy']:5.1f}% of NumPy's throughput"
                + ("" if tasks is None else f" | {tasks} tasks"),
                flush=True,
            )
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine_ram_gib": total / GIB, "results": rows}, f, indent=2)
        return 0
    results = []
    for name in [s.strip() for s in args.schedulers.split(",") if s.strip()]:
        if name not in ("threads", "distributed"):
            ap.error(f"unknown scheduler {name!r}")
        r = run_one(name, args)
        results.append(r)
        print(
            f"{r['scheduler']:12s} input {r['input_gib']:.2f} GiB {tuple(r['shape'])} "
            f"in {r['n_chunks']} chunks of {r['chunk_mib']:.0f} MiB | "
            f"{r['graph_tasks']} tasks | wall {r['wall_s']:.1f} s ({r['throughput_gib_s']:.3f} GiB/s) | "
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
