"""``softmax-xp bench --overhead``: the time per call, from tiny arrays up, next to the native call.

Where a model calls softmax, the arrays are often small and the time is the call's own cost, not
the bytes. Each case times our function and the call it replaces side by side, on the same
arrays, in the same run: a sample is a batch of calls long enough to time (about 2 ms), and the
samples of ours and of the peer alternate, so that a noisy neighbour slows both. Reported: the
median time per call (µs) and the ratio ours / peer.

Peers: ``scipy.special.softmax`` / ``log_softmax`` (NumPy; the JVP/VJP against the NumPy
expression), ``torch.softmax`` / ``torch.log_softmax``, ``torch._softmax_backward_data`` /
``torch._log_softmax_backward_data`` (what torch's own autograd calls), a forward + backward
under torch autograd, and ``jax.nn.softmax`` / ``log_softmax`` eager and under ``jax.jit``;
for logsumexp ``scipy.special.logsumexp``, ``torch.logsumexp`` and ``jax.nn.logsumexp``, and for
the integer-label cross-entropy ``torch.nn.functional.cross_entropy(reduction='none')``, alone and
under autograd.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import softmax_xp as sx

__all__ = ["main"]

SHAPES: list[tuple[int, int]] = [
    (1, 2), (4, 8), (32, 10), (64, 1000), (256, 1024), (1024, 1024), (4096, 1024),
]  # fmt: skip
QUICK_SHAPES: list[tuple[int, int]] = [(1, 2), (4, 8), (64, 1000)]


@dataclass
class Row:
    """One function on one backend and shape: ours against the call it replaces."""

    backend: str
    kernel: str
    shape: list[int]
    dtype: str
    peer: str
    ours_us: float
    peer_us: float
    ratio: float  # ours / peer: below 1 is faster


@dataclass
class Case:
    backend: str
    kernel: str
    peer: str
    ours: Callable[[], Any]
    native: Callable[[], Any]


def _per_call(
    fns: list[Callable[[], Any]], repeats: int, sync: Callable[[Any], Any]
) -> list[float]:
    """Median µs per call of each of ``fns``, their samples interleaved."""
    for f in fns:  # warm up (compiles, caches, first-touch)
        for _ in range(3):
            sync(f())
    batch = []
    for f in fns:  # calls per sample: about 2 ms
        t0 = time.perf_counter()
        sync(f())
        dt = time.perf_counter() - t0
        batch.append(max(1, min(20000, int(2e-3 / max(dt, 1e-7)))))
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            n = batch[i]
            t0 = time.perf_counter()
            for _ in range(n - 1):
                f()
            sync(f())
            samples[i].append((time.perf_counter() - t0) / n * 1e6)
    return [statistics.median(s) for s in samples]


def _numpy_cases(x: np.ndarray) -> list[Case]:
    import scipy.special

    y, l = sx.softmax(x), sx.log_softmax(x)
    g = (x * 0.5 - 0.25).astype(x.dtype)

    def prod(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * (b - np.sum(a * b, axis=-1, keepdims=True))  # type: ignore[no-any-return]

    def log_vjp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return b - np.exp(a) * np.sum(b, axis=-1, keepdims=True)  # type: ignore[no-any-return]

    def log_jvp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return b - np.sum(np.exp(a) * b, axis=-1, keepdims=True)  # type: ignore[no-any-return]

    return [
        Case("numpy", "softmax", "scipy.special.softmax",
             lambda: sx.softmax(x), lambda: scipy.special.softmax(x, axis=-1)),
        Case("numpy", "log_softmax", "scipy.special.log_softmax",
             lambda: sx.log_softmax(x), lambda: scipy.special.log_softmax(x, axis=-1)),
        Case("numpy", "softmax_vjp", "NumPy expression",
             lambda: sx.softmax_vjp(y, g), lambda: prod(y, g)),
        Case("numpy", "softmax_jvp", "NumPy expression",
             lambda: sx.softmax_jvp(y, g), lambda: prod(y, g)),
        Case("numpy", "log_softmax_vjp", "NumPy expression",
             lambda: sx.log_softmax_vjp(l, g), lambda: log_vjp(l, g)),
        Case("numpy", "log_softmax_jvp", "NumPy expression",
             lambda: sx.log_softmax_jvp(l, g), lambda: log_jvp(l, g)),
        Case("numpy", "logsumexp", "scipy.special.logsumexp",
             lambda: sx.logsumexp(x), lambda: scipy.special.logsumexp(x, axis=-1)),
    ]  # fmt: skip


def _torch_cases(x_np: np.ndarray) -> list[Case]:
    import torch

    x = torch.from_numpy(x_np)
    y, l = torch.softmax(x, -1), torch.log_softmax(x, -1)
    g = x * 0.5 - 0.25
    xr = x.clone().requires_grad_()

    def fb(fn: Callable[[Any], Any]) -> Callable[[], Any]:
        def run() -> Any:
            out = fn(xr)
            (gx,) = torch.autograd.grad(out, xr, g)
            return gx

        return run

    F = torch.nn.functional
    labels = torch.arange(x.shape[0]) % x.shape[-1]

    def step(fn: Callable[[Any], Any]) -> Callable[[], Any]:
        def run() -> Any:
            (gx,) = torch.autograd.grad(fn(xr).sum(), xr)
            return gx

        return run

    return [
        Case("torch", "softmax", "torch.softmax",
             lambda: sx.softmax(x), lambda: torch.softmax(x, -1)),
        Case("torch", "log_softmax", "torch.log_softmax",
             lambda: sx.log_softmax(x), lambda: torch.log_softmax(x, -1)),
        Case("torch", "softmax_vjp", "torch._softmax_backward_data",
             lambda: sx.softmax_vjp(y, g),
             lambda: torch._softmax_backward_data(g, y, -1, y.dtype)),
        Case("torch", "log_softmax_vjp", "torch._log_softmax_backward_data",
             lambda: sx.log_softmax_vjp(l, g),
             lambda: torch._log_softmax_backward_data(g, l, -1, l.dtype)),
        Case("torch", "softmax forward + backward", "torch.softmax under autograd",
             fb(sx.softmax), fb(lambda t: torch.softmax(t, -1))),
        Case("torch", "log_softmax forward + backward", "torch.log_softmax under autograd",
             fb(sx.log_softmax), fb(lambda t: torch.log_softmax(t, -1))),
        Case("torch", "logsumexp", "torch.logsumexp",
             lambda: sx.logsumexp(x), lambda: torch.logsumexp(x, -1)),
        Case("torch", "cross-entropy (labels)", "F.cross_entropy(reduction='none')",
             lambda: sx.softmax_cross_entropy_with_integer_labels(x, labels),
             lambda: F.cross_entropy(x, labels, reduction="none")),
        Case("torch", "cross-entropy forward + backward", "F.cross_entropy under autograd",
             step(lambda t: sx.softmax_cross_entropy_with_integer_labels(t, labels)),
             step(lambda t: F.cross_entropy(t, labels, reduction="none"))),
    ]  # fmt: skip


def _jax_cases(x_np: np.ndarray) -> list[Case]:
    import jax

    x = jax.numpy.asarray(x_np)
    ours_jit = jax.jit(sx.softmax)
    ours_ljit = jax.jit(sx.log_softmax)
    peer_jit = jax.jit(jax.nn.softmax)
    peer_ljit = jax.jit(jax.nn.log_softmax)
    return [
        Case("jax", "softmax", "jax.nn.softmax (eager)",
             lambda: sx.softmax(x), lambda: jax.nn.softmax(x)),
        Case("jax", "log_softmax", "jax.nn.log_softmax (eager)",
             lambda: sx.log_softmax(x), lambda: jax.nn.log_softmax(x)),
        Case("jax", "softmax under jax.jit", "jax.jit(jax.nn.softmax)",
             lambda: ours_jit(x), lambda: peer_jit(x)),
        Case("jax", "log_softmax under jax.jit", "jax.jit(jax.nn.log_softmax)",
             lambda: ours_ljit(x), lambda: peer_ljit(x)),
        Case("jax", "logsumexp", "jax.nn.logsumexp (eager)",
             lambda: sx.logsumexp(x), lambda: jax.nn.logsumexp(x, -1)),
    ]  # fmt: skip


def _sync(backend: str) -> Callable[[Any], Any]:
    if backend == "jax":
        return lambda out: out.block_until_ready()
    return lambda out: out


def _plot(rows: list[Row], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot written"
    backends = sorted({r.backend for r in rows})
    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4.5), squeeze=False)
    for ax, b in zip(axes[0], backends, strict=True):
        for kernel in dict.fromkeys(r.kernel for r in rows if r.backend == b):
            sel = [r for r in rows if r.backend == b and r.kernel == kernel]
            n = [r.shape[0] * r.shape[1] for r in sel]
            ax.plot(n, [r.ratio for r in sel], marker="o", label=kernel)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("elements (rows x columns)")
        ax.set_ylabel("time per call: softmax_xp / native")
        ax.set_title(b)
        ax.legend(fontsize=7)
    fig.suptitle(f"softmax-xp bench --overhead ({rows[0].dtype}); below 1: faster than native")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"


def main(argv: list[str]) -> int:
    """Run ``softmax-xp bench --overhead``; returns the exit status."""
    from ._bench import run_facts

    parser = argparse.ArgumentParser(
        prog="softmax-xp bench --overhead", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--overhead", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="three shapes, a few seconds")
    parser.add_argument("--backend", action="append", help="numpy, torch, jax (default: installed)")
    parser.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    parser.add_argument("--repeats", type=int, default=None, help="samples per case (default 9)")
    parser.add_argument("--out", type=Path, default=None, help="directory for JSON and PNG")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    args = parser.parse_args(argv)
    if args.dtype not in ("float32", "float64"):
        parser.error("--dtype: float32 or float64")
    installed = [b for b in ("numpy", "torch", "jax") if importlib.util.find_spec(b) is not None]
    wanted = (
        [v.strip() for val in args.backend for v in val.split(",") if v.strip()]
        if args.backend
        else installed
    )
    if any(b not in ("numpy", "torch", "jax") for b in wanted):
        parser.error("--backend: numpy, torch or jax")
    backends = [b for b in wanted if b in installed]
    repeats = args.repeats or (5 if args.quick else 9)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    build = {"numpy": _numpy_cases, "torch": _torch_cases, "jax": _jax_cases}
    if "jax" in backends and args.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]

    rows: list[Row] = []
    rng = np.random.default_rng(0)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    for b in backends:
        for shape in shapes:
            x = (rng.standard_normal(shape) * 3).astype(args.dtype)
            for c in build[b](x):
                ours, peer = _per_call([c.ours, c.native], repeats, _sync(b))
                rows.append(
                    Row(b, c.kernel, list(shape), args.dtype, c.peer, ours, peer, ours / peer)
                )
                r = rows[-1]
                print(
                    f"{b:<6} {c.kernel:<32} {tuple(shape)!s:<13} ours {ours:10.2f} µs"
                    f"   {c.peer:<34} {peer:10.2f} µs   ratio {r.ratio:5.2f}",
                    flush=True,
                )
    if args.out is not None and rows:
        args.out.mkdir(parents=True, exist_ok=True)
        from .._backends import _host

        report = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **run_facts(argv, repeats, load_before),
            "isa": None if _host.rows is None else _host.rows.isa(),
            "rows": [asdict(r) for r in rows],
        }
        path = args.out / "overhead.json"
        path.write_text(json.dumps(report, indent=1))
        print(f"JSON written to {path}")
        if not args.no_plot:
            print(_plot(rows, args.out / "overhead.png"))
    return 0
