"""Where eager JAX arrays should take the C row kernels: the host path against XLA.

    python bench/jax_host.py [--repeats 9] [--out bench/results/jax_host.json]

Concrete JAX CPU arrays whose result is ``_jax._HOST_MIN_BYTES`` (32 MiB) or more skip XLA and
run the NumPy/C fast path on zero-copy views. This times, in one process and round-robin, at
every instruction-set level the C kernels have on this CPU (``_rows.use_isa``):

- ``jit``: ``jax.jit(jax.nn.softmax)``, ``jax.jit(jax.nn.log_softmax)`` and the jitted
  ``jax.vjp`` of softmax (the calls we replace);
- ``host``: ``softmax_xp`` with the host path forced on (threshold 0);
- ``xla``: ``softmax_xp`` with it forced off (our jitted XLA kernels).

Sizes from 16 MiB (below the threshold) to 256 MiB, float32 and float64. The threshold holds
where ``host`` is faster than ``jit`` at every size from it up, and not clearly faster below.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import softmax_xp as sx
from softmax_xp._backends import _jax, _numpy
from softmax_xp._cli._bench import run_facts

CASES = [((4096, 1024), "float32"), ((8192, 1024), "float32"), ((2048, 2048), "float64"),
         ((4096, 1024), "float64"), ((8192, 1024), "float64"), ((16384, 1024), "float64"),
         ((1024, 32768), "float32"), ((64, 262144), "float32"), ((1024, 32768), "float64")]  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rows_mod = _numpy._rows
    if rows_mod is None:
        print("the C row kernels were not built: nothing to compare", file=sys.stderr)
        return 1
    load = os.getloadavg()
    jit_softmax = jax.jit(jax.nn.softmax)
    jit_log_softmax = jax.jit(jax.nn.log_softmax)
    jit_vjp = jax.jit(lambda x, g: jax.vjp(jax.nn.softmax, x)[1](g)[0])
    saved_min, saved_isa = _jax._HOST_MIN_BYTES, rows_mod.isa()
    rows: list[dict[str, Any]] = []
    try:
        with jax.enable_x64(True):
            for shape, dtype in CASES:
                x = jnp.asarray(np.random.default_rng(0).standard_normal(shape).astype(dtype))
                y = jax.block_until_ready(sx.softmax(x))
                calls = {
                    "softmax": (lambda x=x: jit_softmax(x), lambda x=x: sx.softmax(x)),
                    "log_softmax": (lambda x=x: jit_log_softmax(x), lambda x=x: sx.log_softmax(x)),
                    "softmax_vjp": (
                        lambda x=x: jit_vjp(x, x),
                        lambda x=x, y=y: sx.softmax_vjp(y, x),
                    ),
                }
                for name, (ref, ours) in calls.items():
                    for level in rows_mod.isa_levels():
                        rows_mod.use_isa(level)
                        samples: dict[str, list[float]] = {"jit": [], "host": [], "xla": []}
                        for k in range(args.repeats + 1):
                            for v in samples:
                                _jax._HOST_MIN_BYTES = 0 if v == "host" else 1 << 62
                                fn = ref if v == "jit" else ours
                                t0 = time.perf_counter()
                                jax.block_until_ready(fn())
                                if k:  # one warm-up round
                                    samples[v].append(time.perf_counter() - t0)
                        med = {v: statistics.median(s) for v, s in samples.items()}
                        rows.append(
                            {"kernel": name, "shape": list(shape), "dtype": dtype, "isa": level,
                             "mib": int(np.prod(shape)) * np.dtype(dtype).itemsize / 2**20,
                             "median_s": med,
                             "host_vs_jit": med["host"] / med["jit"],
                             "xla_vs_jit": med["xla"] / med["jit"]}
                        )  # fmt: skip
    finally:
        _jax._HOST_MIN_BYTES = saved_min
        rows_mod.use_isa(saved_isa)
    facts = run_facts(["bench/jax_host.py", *argv], args.repeats, load)
    facts["jax"] = jax.__version__
    print(f"{facts['cpu']}, jax {jax.__version__}; medians of {args.repeats} round-robin samples")
    print(f"{'kernel':<12}{'shape':>12}{'dtype':>9}{'MiB':>5}{'isa':>8}{'jit ms':>9}"
          f"{'host/jit':>10}{'xla/jit':>9}")  # fmt: skip
    for r in rows:
        print(
            f"{r['kernel']:<12}{'x'.join(map(str, r['shape'])):>12}{r['dtype']:>9}"
            f"{r['mib']:>5.0f}{r['isa']:>8}{r['median_s']['jit'] * 1e3:>9.2f}"
            f"{r['host_vs_jit']:>10.2f}{r['xla_vs_jit']:>9.2f}"
        )
    at_or_above = [r for r in rows if r["mib"] * 2**20 >= saved_min]
    slower = [r for r in at_or_above if r["host_vs_jit"] >= 1.0]
    print(f"from {saved_min >> 20} MiB up the host path is faster than jit in "
          f"{len(at_or_above) - len(slower)} of {len(at_or_above)} cases")  # fmt: skip
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**facts, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
