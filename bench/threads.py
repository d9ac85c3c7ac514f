"""Threads for the C row kernels: the C pool against the Python pool, and where either pays.

    python bench/threads.py [--repeats 31] [--out bench/results/threads.json]

For each size (float32 rows of 1024; rows of 32768 beyond 16 MiB) and kernel (softmax,
softmax_vjp, logsumexp), times ``softmax_xp`` on NumPy arrays three ways in one process,
round-robin so that the machine's load falls on all three alike:

- ``serial``: one thread (the size threshold for threads set beyond every input);
- ``c pool``: the C kernels split a call over the cores on their own C thread pool;
- ``python pool``: the C kernels are called per row piece from the Python thread pool.

Both threaded variants run with the size threshold at 0, so that every size is threaded; the
printed table gives medians (microseconds) and each variant's ratio to the serial time, and
names the smallest size from which the C pool beats one thread (where the threshold belongs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import softmax_xp as sx
from softmax_xp._backends import _numpy
from softmax_xp._cli._bench import run_facts

SIZES_KIB = [256, 1024, 2048, 3072, 4096, 8192, 16384, 65536]


def _shape(kib: int) -> tuple[int, int]:
    c = 32768 if kib > 16384 else 1024
    return (kib * 1024 // (4 * c), c)


def _variants() -> dict[str, tuple[bool, int]]:
    # name -> (_C_POOL, _THREAD_MIN_BYTES)
    return {"serial": (True, 1 << 62), "c pool": (True, 0), "python pool": (False, 0)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if _numpy._rows is None:
        print("the C row kernels were not built: nothing to compare", file=sys.stderr)
        return 1
    load = os.getloadavg()
    saved = (_numpy._C_POOL, _numpy._THREAD_MIN_BYTES)
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    try:
        for kib in SIZES_KIB:
            shape = _shape(kib)
            x = rng.standard_normal(shape).astype(np.float32)
            y = sx.softmax(x)
            calls = {
                "softmax": lambda x=x: sx.softmax(x),
                "softmax_vjp": lambda x=x, y=y: sx.softmax_vjp(y, x),
                "logsumexp": lambda x=x: sx.logsumexp(x),
            }
            for kernel, fn in calls.items():
                inner = max(1, int(2e5 // kib))  # calls per sample: samples of ~0.1 s or less
                samples: dict[str, list[float]] = {v: [] for v in _variants()}
                for k in range(args.repeats + 2):
                    for v, (pool, threshold) in _variants().items():
                        _numpy._C_POOL, _numpy._THREAD_MIN_BYTES = pool, threshold
                        t0 = time.perf_counter()
                        for _ in range(inner):
                            fn()
                        dt = (time.perf_counter() - t0) / inner
                        if k >= 2:  # two warm-up rounds
                            samples[v].append(dt)
                med = {v: statistics.median(s) for v, s in samples.items()}
                rows.append(
                    {"kernel": kernel, "shape": list(shape), "kib": kib,
                     "median_s": med, "vs_serial": {v: med[v] / med["serial"] for v in med}}
                )  # fmt: skip
    finally:
        _numpy._C_POOL, _numpy._THREAD_MIN_BYTES = saved
    facts = run_facts(["bench/threads.py", *argv], args.repeats, load)
    facts["isa"] = _numpy._rows.isa()
    facts["threads"] = _numpy._n_threads()
    print(f"{facts['cpu']}, C kernels at {facts['isa']}, {facts['threads']} threads, "
          f"{platform.python_version()}; float32, medians of {args.repeats} round-robin samples")  # fmt: skip
    print(f"{'kernel':<14}{'shape':>14}{'KiB':>7}{'serial µs':>11}{'C pool':>9}{'Python pool':>13}")
    for r in rows:
        m, q = r["median_s"], r["vs_serial"]
        print(
            f"{r['kernel']:<14}{'x'.join(map(str, r['shape'])):>14}{r['kib']:>7}"
            f"{m['serial'] * 1e6:>11.1f}{q['c pool']:>8.2f}x{q['python pool']:>12.2f}x"
        )
    for kernel in ("softmax", "softmax_vjp", "logsumexp"):
        sel = [r for r in rows if r["kernel"] == kernel]
        wins = [r["kib"] for r in sel if r["vs_serial"]["c pool"] < 0.95]
        first = next((k for k in SIZES_KIB if all(w in wins for w in SIZES_KIB if w >= k)), None)
        print(f"{kernel}: the C pool is at least 5% faster than one thread from {first} KiB up")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**facts, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
