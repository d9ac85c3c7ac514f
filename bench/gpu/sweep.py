"""GPU sweep: the Triton kernels against the device copy and torch's / JAX's softmax on CUDA.

    python bench/gpu/sweep.py --out DIR            # on a CUDA machine (bench/gpu/run.sh runs it)
    python bench/gpu/sweep.py --dry-run            # print the plan (no GPU needed)
    python bench/gpu/sweep.py --interpret --out D  # tiny shapes on the CPU under Triton's
                                                   # interpreter: checks the pipeline, no figures

Every case is timed with ``triton.testing.do_bench`` (CUDA events, L2 flushed between samples),
reporting the median with p20 / p80, and as GB/s over the bytes the kernel must move:

- forward (x read, y written) against ``x.clone()`` in the same run (the device copy);
- VJP (y and g read, the result written) against ``torch.add(y, g)`` (a fresh 3-array pass);
- dense Jacobian (N·C² written) against ``torch.empty(...).fill_`` (a fresh write).

Peers: ``torch.softmax``, ``torch.compile``d softmax, torch autograd backward,
``torch._softmax_backward_data``, ``torch.func.jacrev`` (vmapped), ``jit(jax.nn.softmax)`` where
JAX sees the GPU. Writes ``gpu-bench.json`` (GPU name, driver, versions, every row),
``gpu-bench.png`` and ``gpu-defaults.json`` (for each dtype and row length, whether the Triton
kernels or torch's were faster: the measured default-selection table) under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MiB = 2**20
POW2 = [2**k for k in range(7, 21)]  # 128 .. 2^20
AWKWARD = [2049, 3000, 50257]
ROW_LENGTHS = sorted(POW2 + AWKWARD)
MAIN_BYTES = 256 * MiB  # the row-length sweep: one x of this size
SIZES = [1 * MiB, 16 * MiB, 256 * MiB, 2048 * MiB]  # the size sweep, at SIZE_ROWS
SIZE_ROWS = [4096, 32768]
NONLAST = [(128, 64), (1024, 64), (4096, 16)]  # (C, inner): x of shape (N, C, inner), axis 1
JAC_ROWS = [128, 512, 2048]
JAC_BYTES = 512 * MiB
DTYPES = ["float32", "bfloat16"]


def plan(interpret: bool) -> list[dict[str, Any]]:
    """Every case: kind (forward, vjp, nonlast, jacobian), dtype, shape, axis."""
    cases: list[dict[str, Any]] = []
    if interpret:  # tiny: checks the pipeline only
        rows, sizes, size_rows = [128, 3000], [MiB // 16], [256]
        nonlast, jac = [(64, 8)], [32]
        main_bytes, jac_bytes = MiB // 16, MiB // 4
    else:
        rows, sizes, size_rows = ROW_LENGTHS, SIZES, SIZE_ROWS
        nonlast, jac, main_bytes, jac_bytes = NONLAST, JAC_ROWS, MAIN_BYTES, JAC_BYTES
    for dt in DTYPES:
        item = 4 if dt == "float32" else 2
        for c in rows:
            n = max(1, main_bytes // (item * c))
            cases += [{"kind": k, "dtype": dt, "shape": [n, c], "axis": 1, "sweep": "rows"}
                      for k in ("forward", "vjp")]  # fmt: skip
        for c in size_rows:
            for b in sizes:
                n = max(1, b // (item * c))
                cases += [{"kind": k, "dtype": dt, "shape": [n, c], "axis": 1, "sweep": "size"}
                          for k in ("forward", "vjp")]  # fmt: skip
        for c, inner in nonlast:
            n = max(1, main_bytes // (item * c * inner))
            cases.append({"kind": "forward", "dtype": dt, "shape": [n, c, inner], "axis": 1,
                          "sweep": "nonlast"})  # fmt: skip
        for c in jac:
            n = max(1, jac_bytes // (item * c * c))
            cases.append({"kind": "jacobian", "dtype": dt, "shape": [n, c], "axis": 1,
                          "sweep": "jacobian"})  # fmt: skip
    # the row sweep of both dtypes first, then sizes, non-last axes, Jacobians: a run cut short
    # by its time budget keeps the most important comparisons
    order = {"rows": 0, "size": 1, "nonlast": 2, "jacobian": 3}
    return sorted(cases, key=lambda c: order[c["sweep"]])  # stable: dtype order within a sweep


# -- timing ---------------------------------------------------------------------------------------
def _timer(interpret: bool) -> Callable[[Callable[[], Any]], tuple[float, float, float]]:
    if interpret:

        def cpu(fn: Callable[[], Any]) -> tuple[float, float, float]:
            fn()
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                ts.append((time.perf_counter() - t0) * 1e3)
            ts.sort()
            return statistics.median(ts), ts[0], ts[-1]

        return cpu
    from triton.testing import do_bench

    def gpu(fn: Callable[[], Any]) -> tuple[float, float, float]:
        q = do_bench(fn, warmup=10, rep=40, quantiles=[0.5, 0.2, 0.8])
        return float(q[0]), float(q[1]), float(q[2])

    return gpu


def _impls(case: dict[str, Any], device: str, jax_dev: Any) -> list[tuple[str, str, Callable[[], Any], int]]:  # fmt: skip
    """(impl, role, fn, bytes) for one case: role is ours, peer or copy."""
    import torch

    from softmax_xp._backends import _triton

    dt = getattr(torch, case["dtype"])
    shape, ax = tuple(case["shape"]), case["axis"]
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dt)
    item = x.element_size()
    kind = case["kind"]
    if kind == "jacobian":
        y = torch.softmax(x.float(), ax).to(dt)
        c = shape[1]
        nj = shape[0] * c * c * item
        jr = torch.func.vmap(torch.func.jacrev(lambda r: torch.softmax(r, -1)))
        return [
            (
                "fresh write",
                "copy",
                lambda: torch.empty((shape[0], c, c), dtype=dt, device=device).fill_(0.5),
                nj,
            ),
            ("triton", "ours", lambda: _triton.jacobian(y, ax, ax, False), nj),
            ("torch.func.jacrev", "peer", lambda: jr(x), nj),
        ]
    n2, n3 = 2 * x.numel() * item, 3 * x.numel() * item
    if kind == "forward":
        out: list[tuple[str, str, Callable[[], Any], int]] = [
            ("x.clone()", "copy", lambda: x.clone(), n2),
            ("triton", "ours", lambda: _triton.forward(x, ax, ax, None, False), n2),
            ("torch.softmax", "peer", lambda: torch.softmax(x, ax), n2),
        ]
        if device == "cuda" and case["sweep"] == "rows":
            compiled = _compiled_softmax()
            out.append(("torch.compile(softmax)", "peer", lambda: compiled(x), n2))
        if jax_dev is not None and case["sweep"] in ("rows", "nonlast"):
            import jax
            import jax.numpy as jnp

            xj = jax.device_put(jnp.asarray(x.float().cpu().numpy(), dtype=case["dtype"]), jax_dev)
            fj = jax.jit(lambda t: jax.nn.softmax(t, axis=ax))
            out.append(("jit(jax.nn.softmax)", "peer", lambda: fj(xj).block_until_ready(), n2))
        return out
    g = torch.randn(shape, generator=gen, device=device, dtype=torch.float32).to(dt)
    y = torch.softmax(x.float(), ax).to(dt)
    xr = x.clone().requires_grad_()
    yr = torch.softmax(xr, ax)
    return [
        ("torch.add(y, g)", "copy", lambda: torch.add(y, g), n3),
        ("triton", "ours", lambda: _triton.product(y, g, ax, ax, None, 0), n3),
        (
            "torch._softmax_backward_data",
            "peer",
            lambda: torch._softmax_backward_data(g, y, ax, dt),
            n3,
        ),
        (
            "torch autograd backward",
            "peer",
            lambda: torch.autograd.grad(yr, xr, g, retain_graph=True)[0],
            n3,
        ),
    ]


_COMPILED: list[Any] = []


def _compiled_softmax() -> Any:
    """One ``torch.compile``d softmax for the whole run (dynamic shapes: compiled once or twice)."""
    if not _COMPILED:
        import torch

        _COMPILED.append(torch.compile(lambda t: torch.softmax(t, -1), dynamic=True))
    return _COMPILED[0]


# -- report ---------------------------------------------------------------------------------------
def _environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("torch", "triton", "jax", "jaxlib", "numpy"):
        with contextlib.suppress(Exception):
            env[mod] = __import__(mod).__version__
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = p.name
        env["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
        env["cuda"] = torch.version.cuda
        with contextlib.suppress(Exception):
            q = ["nvidia-smi", "--query-gpu=driver_version,clocks.max.mem", "--format=csv,noheader"]
            env["driver"] = subprocess.run(q, capture_output=True, text=True, timeout=20).stdout.strip()  # fmt: skip
    else:
        env["gpu"] = None
        env["note"] = (
            "Triton interpreter on the CPU: a pipeline check; these timings are no GPU figures"
        )
    return env


def _defaults(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dtype, kind and row length (the row sweep): the faster of triton and torch."""
    best: dict[tuple[str, str, int], dict[str, float]] = {}
    for r in rows:
        if r["sweep"] != "rows":
            continue
        key = (r["dtype"], r["kind"], r["shape"][-1])
        native = {"forward": "torch.softmax", "vjp": "torch._softmax_backward_data"}[r["kind"]]
        if r["impl"] in ("triton", native):
            best.setdefault(key, {})["triton" if r["impl"] == "triton" else "native"] = r["median_ms"]  # fmt: skip
    table = []
    for (dt, kind, c), t in sorted(best.items()):
        if len(t) == 2:
            table.append({"dtype": dt, "kernel": kind, "row_length": c,
                          "faster": min(t, key=t.__getitem__),
                          "triton_ms": t["triton"], "native_ms": t["native"],
                          "speedup_vs_native": t["native"] / t["triton"]})  # fmt: skip
    return table


def _plot(rows: list[dict[str, Any]], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed"
    fig, axes = plt.subplots(2, 2, figsize=(13, 8), sharex=True)
    for i, kind in enumerate(("forward", "vjp")):
        for j, dt in enumerate(DTYPES):
            ax = axes[i][j]
            sel = [
                r for r in rows if r["sweep"] == "rows" and r["kind"] == kind and r["dtype"] == dt
            ]
            for impl in sorted({r["impl"] for r in sel}):
                pts = sorted((r["shape"][-1], r["gbps"]) for r in sel if r["impl"] == impl)
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=impl)
            ax.set_xscale("log", base=2)
            per = 2 if kind == "forward" else 3  # arrays moved per input array
            size = max((r["bytes"] // per for r in sel if "bytes" in r), default=0)
            ax.set_title(f"{kind}, {dt}, {size / MiB:g} MiB input")
            ax.set_ylabel("GB/s (bytes moved / median time)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("row length C")
    if any(r.get("device") == "cpu" for r in rows):
        fig.suptitle("Triton interpreter on the CPU: a pipeline check, not a GPU measurement")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="directory for JSON and PNG")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    parser.add_argument("--interpret", action="store_true", help="tiny CPU run under Triton's interpreter")  # fmt: skip
    parser.add_argument("--budget-s", type=float, default=240.0, help="stop timing after this long")  # fmt: skip
    args = parser.parse_args(argv)
    cases = plan(args.interpret)
    if args.dry_run:
        for c in cases:
            print(c)
        print(f"{len(cases)} cases")
        return 0
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is first imported
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX shares the GPU
    import torch

    device = "cpu" if args.interpret else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --dry-run or --interpret here", file=sys.stderr)
        return 2
    jax_dev = None
    if not args.interpret:
        with contextlib.suppress(Exception):
            import jax

            jax_dev = jax.devices("gpu")[0]
    timer = _timer(args.interpret)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    env = _environment(device)
    skipped = 0
    for k, case in enumerate(cases):
        if k > 0 and time.perf_counter() - start > args.budget_s:  # at least one case
            skipped = len(cases) - k
            print(f"time budget spent: {skipped} cases not run", file=sys.stderr)
            break
        try:
            _run_case(case, device, jax_dev, timer, rows)
        except KeyboardInterrupt:  # a time limit from outside: keep what was measured
            skipped = len(cases) - k
            break
        if args.out is not None:  # written after every case, so that a cut-off run keeps its rows
            _write(args.out, env, rows, time.perf_counter() - start, len(cases) - k - 1)
    if args.out is not None:
        _write(args.out, env, rows, time.perf_counter() - start, skipped)
        print(_plot(rows, args.out / "gpu-bench.png"))
        print(f"results written to {args.out}")
    return 0


def _write(out: Path, env: dict[str, Any], rows: list[dict[str, Any]], elapsed: float,
           not_run: int) -> None:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    report = {"environment": env, "elapsed_s": elapsed, "cases_not_run": not_run, "rows": rows}
    (out / "gpu-bench.json").write_text(json.dumps(report, indent=1))
    table = {"environment": env, "table": _defaults(rows)}
    (out / "gpu-defaults.json").write_text(json.dumps(table, indent=1))


def _run_case(case: dict[str, Any], device: str, jax_dev: Any,
              timer: Callable[[Callable[[], Any]], tuple[float, float, float]],
              rows: list[dict[str, Any]]) -> None:  # fmt: skip
    import torch

    impls = _impls(case, device, jax_dev)
    copy_ms = None
    for impl, role, fn, nbytes in impls:
        try:
            med, p20, p80 = timer(fn)
        except Exception as exc:  # a failing peer is reported, not fatal
            rows.append({**case, "impl": impl, "role": role, "error": repr(exc)[:300]})
            continue
        if role == "copy":
            copy_ms = med
        rows.append({**case, "device": device, "impl": impl, "role": role, "bytes": nbytes, "median_ms": med,
                     "p20_ms": p20, "p80_ms": p80, "gbps": nbytes / med / 1e6,
                     "frac_of_copy": None if copy_ms is None else copy_ms / med})  # fmt: skip
    del impls
    if device == "cuda":
        torch.cuda.empty_cache()
    done = [r for r in rows if r.get("impl") == "triton" and r["shape"] == case["shape"]
            and r["kind"] == case["kind"] and r["dtype"] == case["dtype"]]  # fmt: skip
    if done and "gbps" in done[-1]:
        r = done[-1]
        print(f"{case['kind']:9s} {case['dtype']:9s} {case['shape']!s:18s} triton "
              f"{r['gbps']:8.1f} GB/s  {r['frac_of_copy'] or math.nan:5.2f} of copy")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
