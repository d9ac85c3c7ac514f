"""``softmax-xp bench``: every kernel against its peers and against the copy-bandwidth roofline.

Every kernel is memory-bound, so each is reported as achieved GB/s (bytes it must move / median
time) and as a multiple of the time a plain copy of the same bytes takes *in the same run*:

- forward (x read, y written): ``np.copyto`` / ``tensor.copy_`` / a jitted JAX negation of x;
- JVP / VJP (two arrays read, one written): ``np.add(a, b, out=)`` / ``torch.add(out=)`` / a
  jitted JAX ``a + b``: the cheapest elementwise pass over those three arrays;
- dense Jacobian (``N·C²`` numbers written): a fresh output written once (``np.empty`` + ``fill``,
  ``torch.empty`` + ``fill_``, a jitted broadcast);
- logsumexp (x read once, one number per row written; its bytes are x's): reading x once, the
  cheaper of ``np.max(x, axis=-1)`` and ``x.sum(axis=-1)`` (torch: ``amax`` and ``sum``) in the
  same run (the max is the cheaper for long rows, the sum for short ones); the row's ``extra``
  names which;
- a cross-entropy training step (torch, integer labels: the loss's forward and backward; the
  bytes of x read twice and its gradient written): the 3-array copy.

Peers: ``scipy.special.softmax`` / ``log_softmax`` / ``logsumexp``, ``torch.softmax``,
``torch.logsumexp``, ``torch.nn.functional.cross_entropy`` (forward + backward), torch
autograd backward, ``jax.nn.softmax`` under ``jit``, the backward of ``jax.vjp``,
``torch.func.jacrev`` / ``jax.jacrev`` / ``jax.jacfwd`` (vmapped over rows), and a textbook
double-loop Jacobian on a small shape. Every call returns a fresh output, as the peers do.
Timings: a warm-up, then ``--repeats`` samples; median with p20 / p80. CUDA timings use CUDA
events after a synchronisation.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import softmax_xp as sx

__all__ = ["main"]

FULL_SHAPES: list[tuple[int, ...]] = [(4096, 1024), (1024, 32768), (64, 262144), (65536, 16)]
QUICK_SHAPES: list[tuple[int, ...]] = [(256, 256), (64, 4096), (4096, 16)]
FULL_JAC = [(64, 512)]
QUICK_JAC = [(16, 128)]
TEXTBOOK_JAC = (8, 32)  # a textbook Python double loop: small on purpose


@dataclass
class Row:
    """One timed implementation of one kernel on one backend, device, dtype and shape."""

    backend: str
    device: str
    dtype: str
    shape: list[int]
    kernel: str
    impl: str
    median_ms: float
    p20_ms: float
    p80_ms: float
    bytes: int
    gbps: float
    x_copy: float | None = None
    x_best_peer: float | None = None
    role: str = "peer"  # "ours", "peer" or "copy"
    extra: dict[str, Any] = field(default_factory=dict)


class Progress:
    """A one-line progress bar on stderr (only on a terminal, or when asked)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = max(1, total), 0, enabled

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {label[:60]:<60}")
        sys.stderr.flush()
        if self.done >= self.total:
            sys.stderr.write("\n")

    def close(self) -> None:
        if self.enabled and self.done < self.total:
            sys.stderr.write("\n")


def _sample(fn: Callable[[], Any], sync: Callable[[Any], None] | None, cuda: bool) -> float:
    """One timed call of ``fn`` in ms; ``sync`` waits for the result (JAX), CUDA uses events."""
    if cuda:
        import torch

        torch.cuda.synchronize()
        start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t0 = time.perf_counter()
    out = fn()
    if sync is not None:
        sync(out)
    dt = (time.perf_counter() - t0) * 1e3
    del out
    return dt


def _time_group(
    fns: list[Callable[[], Any]],
    repeats: int,
    sync: Callable[[Any], None] | None,
    cuda: bool = False,
    on_warm: Callable[[int], None] | None = None,
) -> list[tuple[float, float, float]]:
    """Median, p20 and p80 (ms) of each of ``fns``, sampled in turn.

    Each function is warmed up (compilation, caches, pool threads), then the group is sampled
    round-robin, ``repeats`` rounds: a kernel, its peers and the copy of the same bytes see the
    same load on the machine, so their ratios hold even when the machine's speed drifts.
    """
    for k, fn in enumerate(fns):
        for _ in range(2):
            _sample(fn, sync, cuda)
        if on_warm is not None:
            on_warm(k)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            samples[k].append(_sample(fn, sync, cuda))
    out = []
    for ss in samples:
        q = statistics.quantiles(ss, n=5) if len(ss) > 1 else [ss[0]] * 4
        out.append((statistics.median(ss), q[0], q[3]))
    return out


# -- what each backend offers ---------------------------------------------------------------------


@dataclass
class Case:
    kernel: str
    impl: str
    role: str
    fn: Callable[[], Any]
    nbytes: int


def _textbook_jacobian_vjp(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The backward of the CMU 11-785 notes on the softmax class: a Python double loop per row's Jacobian."""
    n, c = g.shape
    out = np.zeros_like(g)
    for i in range(n):
        jac = np.zeros((c, c))
        for m in range(c):
            for k in range(c):
                jac[m, k] = a[i, m] * (1 - a[i, m]) if m == k else -a[i, m] * a[i, k]
        out[i, :] = np.dot(g[i, :], jac)
    return out


def _textbook_jacobian(a: np.ndarray) -> np.ndarray:
    n, c = a.shape
    out = np.empty((n, c, c), dtype=a.dtype)
    for i in range(n):
        for m in range(c):
            for k in range(c):
                out[i, m, k] = a[i, m] * (1 - a[i, m]) if m == k else -a[i, m] * a[i, k]
    return out


def _numpy_logsumexp() -> Callable[[np.ndarray], Any] | None:
    """logsumexp over the last axis: the public ``softmax_xp.logsumexp`` where the package has
    it, else the NumPy fast path itself (None where that would decline: no C kernels)."""
    public = getattr(sx, "logsumexp", None)
    if public is not None:
        return lambda a: public(a, axis=-1)
    if _rows_module() is None:
        return None
    from .._backends import _numpy

    fast = _numpy.logsumexp
    return lambda a: fast(a, axis=(a.ndim - 1,), xp=np)


def _numpy_cases(shape: tuple[int, ...], dtype: str, jac: bool) -> list[Case]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    item = x.itemsize
    n1, n2, n3 = x.size * item, 2 * x.size * item, 3 * x.size * item
    if jac:
        y = sx.softmax(x)
        nj = shape[0] * shape[1] ** 2 * item

        def fresh_write() -> np.ndarray:
            o = np.empty((shape[0], shape[1], shape[1]), dtype=x.dtype)
            o.fill(0.5)
            return o

        cases = [
            Case("softmax_jacobian", "softmax_xp", "ours", lambda: sx.softmax_jacobian(y), nj),
            Case(
                "softmax_jacobian",
                "numpy broadcast",
                "peer",
                lambda: y[:, :, None] * (np.eye(shape[1], dtype=x.dtype) - y[:, None, :]),
                nj,
            ),
            Case("softmax_jacobian", "fresh write", "copy", fresh_write, nj),
        ]
        if shape == TEXTBOOK_JAC:
            cases.append(
                Case(
                    "softmax_jacobian",
                    "textbook double loop",
                    "peer",
                    lambda: _textbook_jacobian(y),
                    nj,
                )
            )
        return cases
    g = rng.standard_normal(shape).astype(dtype)
    y = sx.softmax(x)
    ls = sx.log_softmax(x)
    o = np.empty_like(x)
    cases = [
        Case("copy2", "np.copyto", "copy", lambda: np.copyto(o, x), n2),
        Case("copy2_fresh", "x.copy() (fresh output)", "copy", lambda: x.copy(), n2),
        Case("copy3", "np.add(out=)", "copy", lambda: np.add(x, g, out=o), n3),
        Case("read1", "np.max(x, axis=-1)", "copy", lambda: np.max(x, axis=-1), n1),
        Case("read1", "x.sum(axis=-1)", "copy", lambda: x.sum(axis=-1), n1),
        Case("softmax", "softmax_xp", "ours", lambda: sx.softmax(x), n2),
        Case("log_softmax", "softmax_xp", "ours", lambda: sx.log_softmax(x), n2),
        Case("softmax_vjp", "softmax_xp", "ours", lambda: sx.softmax_vjp(y, g), n3),
        Case("softmax_jvp", "softmax_xp", "ours", lambda: sx.softmax_jvp(y, g), n3),
        Case("log_softmax_vjp", "softmax_xp", "ours", lambda: sx.log_softmax_vjp(ls, g), n3),
        Case("log_softmax_jvp", "softmax_xp", "ours", lambda: sx.log_softmax_jvp(ls, g), n3),
        Case(
            "softmax_vjp",
            "numpy naive",
            "peer",
            lambda: y * (g - np.sum(g * y, axis=-1, keepdims=True)),
            n3,
        ),
    ]
    lse = _numpy_logsumexp()
    if lse is not None:
        cases.append(Case("logsumexp", "softmax_xp", "ours", lambda: lse(x), n1))
    try:
        import scipy.special as ss

        cases += [
            Case("softmax", "scipy.special.softmax", "peer", lambda: ss.softmax(x, axis=-1), n2),
            Case(
                "log_softmax",
                "scipy.special.log_softmax",
                "peer",
                lambda: ss.log_softmax(x, axis=-1),
                n2,
            ),
            Case(
                "logsumexp",
                "scipy.special.logsumexp",
                "peer",
                lambda: ss.logsumexp(x, axis=-1),
                n1,
            ),
        ]
    except ImportError:
        pass
    if importlib.util.find_spec("torch") is not None:  # torch autograd backward on the same data
        import torch

        xt = torch.from_numpy(x).requires_grad_()
        gt = torch.from_numpy(g)
        yt = torch.softmax(xt, -1)
        lt = torch.log_softmax(xt, -1)
        cases += [
            Case(
                "softmax_vjp",
                "torch autograd backward",
                "peer",
                lambda: torch.autograd.grad(yt, xt, gt, retain_graph=True)[0],
                n3,
            ),
            Case(
                "log_softmax_vjp",
                "torch autograd backward",
                "peer",
                lambda: torch.autograd.grad(lt, xt, gt, retain_graph=True)[0],
                n3,
            ),
        ]
    return cases


def _torch_cases(shape: tuple[int, ...], dtype: str, jac: bool, device: str) -> list[Case]:
    import torch

    dt = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=dt).to(device)
    item = x.element_size()
    n2, n3 = 2 * x.numel() * item, 3 * x.numel() * item
    if jac:
        y = torch.softmax(x, -1)
        nj = shape[0] * shape[1] ** 2 * item
        from torch.func import jacfwd, jacrev, vmap

        jr = vmap(jacrev(lambda r: torch.softmax(r, -1)))
        jf = vmap(jacfwd(lambda r: torch.softmax(r, -1)))
        return [
            Case("softmax_jacobian", "softmax_xp", "ours", lambda: sx.softmax_jacobian(y), nj),
            Case("softmax_jacobian", "torch.func.jacrev", "peer", lambda: jr(x), nj),
            Case("softmax_jacobian", "torch.func.jacfwd", "peer", lambda: jf(x), nj),
            Case(
                "softmax_jacobian",
                "fresh write",
                "copy",
                lambda: torch.empty((shape[0], shape[1], shape[1]), dtype=dt, device=device).fill_(
                    0.5
                ),
                nj,
            ),
        ]
    g = torch.randn(shape, generator=gen, dtype=dt).to(device)
    y = torch.softmax(x, -1)
    ls = torch.log_softmax(x, -1)
    o = torch.empty_like(x)
    xr = x.clone().requires_grad_()
    yr = torch.softmax(xr, -1)
    lr = torch.log_softmax(xr, -1)
    return [
        Case("copy2", "tensor.copy_", "copy", lambda: o.copy_(x), n2),
        Case("copy2_fresh", "x.clone() (fresh output)", "copy", lambda: x.clone(), n2),
        Case("copy3", "torch.add(out=)", "copy", lambda: torch.add(x, g, out=o), n3),
        Case("softmax", "softmax_xp", "ours", lambda: sx.softmax(x), n2),
        Case("softmax", "torch.softmax", "peer", lambda: torch.softmax(x, -1), n2),
        Case("log_softmax", "softmax_xp", "ours", lambda: sx.log_softmax(x), n2),
        Case("log_softmax", "torch.log_softmax", "peer", lambda: torch.log_softmax(x, -1), n2),
        Case("softmax_vjp", "softmax_xp", "ours", lambda: sx.softmax_vjp(y, g), n3),
        Case(
            "softmax_vjp",
            "torch autograd backward",
            "peer",
            lambda: torch.autograd.grad(yr, xr, g, retain_graph=True)[0],
            n3,
        ),
        Case("log_softmax_vjp", "softmax_xp", "ours", lambda: sx.log_softmax_vjp(ls, g), n3),
        Case(
            "log_softmax_vjp",
            "torch autograd backward",
            "peer",
            lambda: torch.autograd.grad(lr, xr, g, retain_graph=True)[0],
            n3,
        ),
        Case("softmax_jvp", "softmax_xp", "ours", lambda: sx.softmax_jvp(y, g), n3),
        *_torch_lse_cases(x, xr),
    ]


def _torch_lse_cases(x: Any, xr: Any) -> list[Case]:
    """logsumexp, and one cross-entropy training step (forward + backward, integer labels): x
    read for the lse, then read again and its gradient written (the bytes of three arrays)."""
    import torch

    n1, n3 = x.numel() * x.element_size(), 3 * x.numel() * x.element_size()
    labels = torch.randint(0, x.shape[-1], x.shape[:-1], generator=torch.Generator().manual_seed(1))
    labels = labels.to(x.device)
    F = torch.nn.functional

    def step(loss: Callable[[Any], Any]) -> Callable[[], Any]:
        def run() -> Any:
            return torch.autograd.grad(loss(xr).sum(), xr)[0]

        return run

    return [
        Case("read1", "x.amax(-1)", "copy", lambda: x.amax(-1), n1),
        Case("read1", "x.sum(-1)", "copy", lambda: x.sum(-1), n1),
        Case("logsumexp", "softmax_xp", "ours", lambda: sx.logsumexp(x), n1),
        Case("logsumexp", "torch.logsumexp", "peer", lambda: torch.logsumexp(x, -1), n1),
        Case(
            "cross_entropy_step",
            "softmax_xp",
            "ours",
            step(lambda a: sx.softmax_cross_entropy_with_integer_labels(a, labels)),
            n3,
        ),
        Case(
            "cross_entropy_step",
            "F.cross_entropy",
            "peer",
            step(lambda a: F.cross_entropy(a, labels, reduction="none")),
            n3,
        ),
    ]


def _jax_cases(shape: tuple[int, ...], dtype: str, jac: bool, device: str) -> list[Case]:
    import jax
    import jax.numpy as jnp

    dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]
    rng = np.random.default_rng(0)
    x = jax.device_put(jnp.asarray(rng.standard_normal(shape), dtype=dtype), dev)
    item = x.dtype.itemsize
    n2, n3 = 2 * x.size * item, 3 * x.size * item
    if jac:
        y = jax.nn.softmax(x)
        nj = shape[0] * shape[1] ** 2 * item
        jr = jax.jit(jax.vmap(jax.jacrev(jax.nn.softmax)))
        jf = jax.jit(jax.vmap(jax.jacfwd(jax.nn.softmax)))
        jre = jax.vmap(jax.jacrev(jax.nn.softmax))
        fresh = jax.jit(lambda r: -jnp.broadcast_to(r[:, :, None], (*r.shape, r.shape[-1])))
        return [
            Case("softmax_jacobian", "softmax_xp", "ours", lambda: sx.softmax_jacobian(y), nj),
            Case("softmax_jacobian", "jax.jacrev (jit, vmap)", "peer", lambda: jr(x), nj),
            Case("softmax_jacobian", "jax.jacfwd (jit, vmap)", "peer", lambda: jf(x), nj),
            Case("softmax_jacobian", "jax.jacrev (vmap, eager)", "peer", lambda: jre(x), nj),
            Case("softmax_jacobian", "fresh write", "copy", lambda: fresh(y), nj),
        ]
    g = jax.device_put(jnp.asarray(rng.standard_normal(shape), dtype=dtype), dev)
    y = jax.nn.softmax(x)
    ls = jax.nn.log_softmax(x)
    neg = jax.jit(lambda a: -a)
    add = jax.jit(lambda a, b: a + b)
    fwd = jax.jit(jax.nn.softmax)
    lfwd = jax.jit(jax.nn.log_softmax)
    _, vjp_fn = jax.vjp(jax.nn.softmax, x)
    _, lvjp_fn = jax.vjp(jax.nn.log_softmax, x)
    apply = jax.jit(lambda f, t: f(t))  # the backward alone: residuals are inputs
    return [
        Case("copy2", "jit(-x)", "copy", lambda: neg(x), n2),
        Case("copy3", "jit(a + b)", "copy", lambda: add(x, g), n3),
        Case("softmax", "softmax_xp", "ours", lambda: sx.softmax(x), n2),
        Case("softmax", "jit(jax.nn.softmax)", "peer", lambda: fwd(x), n2),
        Case("log_softmax", "softmax_xp", "ours", lambda: sx.log_softmax(x), n2),
        Case("log_softmax", "jit(jax.nn.log_softmax)", "peer", lambda: lfwd(x), n2),
        Case("softmax_vjp", "softmax_xp", "ours", lambda: sx.softmax_vjp(y, g), n3),
        Case("softmax_vjp", "jax.vjp backward (jit)", "peer", lambda: apply(vjp_fn, g)[0], n3),
        Case("softmax_vjp", "jax.vjp backward (eager)", "peer", lambda: vjp_fn(g)[0], n3),
        Case("log_softmax_vjp", "softmax_xp", "ours", lambda: sx.log_softmax_vjp(ls, g), n3),
        Case("log_softmax_vjp", "jax.vjp backward (jit)", "peer", lambda: apply(lvjp_fn, g)[0], n3),
        Case("softmax_jvp", "softmax_xp", "ours", lambda: sx.softmax_jvp(y, g), n3),
    ]


def _build(backend: str, shape: tuple[int, ...], dtype: str, jac: bool, device: str) -> list[Case]:
    """The cases of one (backend, shape, dtype) group: ours, the peers and the copy."""
    if backend == "numpy":
        return _numpy_cases(shape, dtype, jac)
    if backend == "torch":
        return _torch_cases(shape, dtype, jac, device)
    return _jax_cases(shape, dtype, jac, device)


def _context(backend: str, dtype: str) -> contextlib.AbstractContextManager[Any]:
    """JAX computes in float64 only with x64 on: scoped to the group, never global."""
    if backend == "jax" and dtype == "float64":
        import jax

        ctx: contextlib.AbstractContextManager[Any] = jax.enable_x64(True)
        return ctx
    return contextlib.nullcontext()


def _sync_for(backend: str, device: str) -> Callable[[Any], None] | None:
    if backend == "jax":

        def sync(out: Any) -> None:
            import jax

            jax.block_until_ready(out)  # type: ignore[no-untyped-call]

        return sync
    return None


def _memory_rows(shape: tuple[int, ...], dtype: str) -> list[dict[str, Any]]:
    """Peak traced allocation of NumPy forward and VJP, in units of the output size."""
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    y = sx.softmax(x)
    fns: dict[str, Callable[[], Any]] = {
        "softmax_xp softmax": lambda: sx.softmax(x),
        "softmax_xp softmax_vjp": lambda: sx.softmax_vjp(y, x),
        "numpy naive softmax_vjp": lambda: y * (x - np.sum(x * y, axis=-1, keepdims=True)),
    }
    try:
        import scipy.special as ss

        fns["scipy.special.softmax"] = lambda: ss.softmax(x, axis=-1)
    except ImportError:
        pass
    rows = []
    for name, fn in fns.items():
        fn()
        tracemalloc.start()
        try:
            fn()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        rows.append(
            {
                "impl": name,
                "shape": list(shape),
                "dtype": dtype,
                "peak_bytes": peak,
                "peak_over_output": peak / x.nbytes,
            }
        )
    return rows


# -- environment ----------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_name(backend: str, device: str) -> str:
    if device == "cuda" and backend == "torch":
        import torch

        return str(torch.cuda.get_device_name(0))
    if device == "cuda" and backend == "jax":
        import jax

        return str(jax.devices("gpu")[0].device_kind)
    return f"{_cpu_name()} ({os.cpu_count()} CPUs)"


def run_facts(argv: list[str], repeats: int, load_before: Any) -> dict[str, Any]:
    """What every results JSON records of the run: the machine, the versions, the command, and
    the machine's load (1, 5, 15 min) before and after (it may be shared)."""
    return {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "versions": _versions(),
        "command": ["softmax-xp", "bench", *argv],
        "repeats": repeats,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "softmax_xp": sx.__version__}
    for mod in ("numpy", "scipy", "torch", "jax", "jaxlib", "matplotlib"):
        if importlib.util.find_spec(mod) is not None:
            try:
                out[mod] = str(importlib.import_module(mod).__version__)
            except Exception:  # pragma: no cover - broken install
                out[mod] = "?"
    return out


def _has_cuda(backend: str) -> bool:
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    if backend == "jax":
        import jax

        try:
            return len(jax.devices("gpu")) > 0
        except RuntimeError:
            return False
    return False


# -- exp in cache ---------------------------------------------------------------------------------


def _rows_module() -> Any:
    from .._backends import _host

    return _host.rows


def _exp_impls(
    x: np.ndarray, y: np.ndarray, rows_mod: Any, backends: list[str]
) -> list[tuple[str, Callable[[], Any], str | None]]:
    impls: list[tuple[str, Callable[[], Any], str | None]] = []
    if rows_mod is not None:
        impls += [(f"softmax_xp exp ({lv})", lambda: rows_mod.exp(x, y), lv) for lv in rows_mod.isa_levels()]  # fmt: skip
    impls.append(("np.exp", lambda: np.exp(x, out=y), None))
    if "torch" in backends:
        import torch

        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        impls.append(("torch.exp", lambda: torch.exp(tx, out=ty), None))
    return impls


def _exp_rows(repeats: int, backends: list[str]) -> list[dict[str, Any]]:
    """ns per element of each exp on 4 x 1024 numbers (in L1), one core: the C kernels' own at
    every instruction-set level this CPU and build have, then ``np.exp`` and ``torch.exp``."""
    rows_mod = _rows_module()
    out: list[dict[str, Any]] = []
    calls = 200
    for dtype in ("float32", "float64"):
        x = (np.random.default_rng(0).standard_normal((4, 1024)) * 5).astype(dtype)
        y = np.empty_like(x)
        for name, fn, level in _exp_impls(x, y, rows_mod, backends):
            previous = rows_mod.use_isa(level) if level is not None else None
            try:
                fn()
                samples = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        fn()
                    samples.append((time.perf_counter() - t0) / calls / x.size * 1e9)
            finally:
                if previous is not None:
                    rows_mod.use_isa(previous)
            out.append({"impl": name, "dtype": dtype, "ns_per_element": statistics.median(samples)})
    return out


# -- the run --------------------------------------------------------------------------------------


def _fill_ratios(rows: list[Row]) -> None:
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.backend, r.device, r.dtype, tuple(r.shape)), []).append(r)
    for rs in groups.values():
        copies: dict[str, float] = {}  # per copy kernel, its cheapest implementation
        for r in rs:
            if r.role == "copy":
                copies[r.kernel] = min(copies.get(r.kernel, math.inf), r.median_ms)
        for r in rs:
            if r.role == "copy":
                continue
            size = math.prod(r.shape) * _item(r)
            ref = copies.get({3 * size: "copy3", size: "read1"}.get(r.bytes, "copy2"))
            if r.bytes == size:  # which read of x once was the cheaper, the reference
                r.extra["read_once"] = next(
                    (c.impl for c in rs if c.kernel == "read1" and c.median_ms == ref), None
                )
            if r.kernel.endswith("jacobian"):
                ref = next(
                    (x.median_ms for x in rs if x.kernel == r.kernel and x.role == "copy"), None
                )
            if ref:
                r.x_copy = r.median_ms / ref
            fresh = copies.get("copy2_fresh")
            if fresh and r.bytes == 2 * math.prod(r.shape) * _item(r):
                r.extra["x_fresh_copy"] = r.median_ms / fresh
            if r.role == "ours":
                peers = [p.median_ms for p in rs if p.kernel == r.kernel and p.role == "peer"]
                if peers:
                    r.x_best_peer = r.median_ms / min(peers)


def _item(r: Row) -> int:
    return 8 if r.dtype == "float64" else 4


def _table(rows: list[Row]) -> str:
    head = (
        f"{'backend':<6} {'dev':<4} {'dtype':<7} {'shape':<13} {'kernel':<17} "
        f"{'implementation':<26} {'median ms':>10} {'GB/s':>7} {'x copy':>7} {'x peer':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        xc = f"{r.x_copy:.2f}" if r.x_copy is not None else ""
        xp = f"{r.x_best_peer:.2f}" if r.x_best_peer is not None else ""
        shape = "x".join(map(str, r.shape))
        lines.append(
            f"{r.backend:<6} {r.device:<4} {r.dtype:<7} {shape:<13} {r.kernel:<17} "
            f"{r.impl[:26]:<26} {r.median_ms:>10.3f} {r.gbps:>7.1f} {xc:>7} {xp:>7}"
        )
    return "\n".join(lines)


def _plot(rows: list[Row], path: Path) -> str:
    """GB/s per shape, one panel per backend, device and dtype; the copy rooflines dashed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot written"
    rows = [r for r in rows if not r.kernel.endswith("jacobian")]
    backends = sorted({(r.backend, r.device) for r in rows})
    dtypes = sorted({r.dtype for r in rows})
    if not backends:
        return "nothing to plot"
    fig, axes = plt.subplots(
        len(backends), len(dtypes), figsize=(6.5 * len(dtypes), 3.8 * len(backends)), squeeze=False
    )
    for i, (b, d) in enumerate(backends):
        for j, dt in enumerate(dtypes):
            ax = axes[i][j]
            sel = [r for r in rows if (r.backend, r.device, r.dtype) == (b, d, dt)]
            shapes = sorted({tuple(r.shape) for r in sel}, key=lambda s: (math.prod(s), s))
            pos = {s: k for k, s in enumerate(shapes)}
            series: dict[str, dict[int, float]] = {}
            for r in sel:
                if r.role == "copy":
                    n = {"copy3": "3 arrays", "read1": "1 array"}.get(r.kernel, "2 arrays")
                    label = f"roofline: {r.impl} ({n})"
                elif r.kernel in ("softmax", "softmax_vjp", "logsumexp"):
                    label = f"{r.kernel}: {r.impl}"
                else:
                    continue
                series.setdefault(label, {})[pos[tuple(r.shape)]] = r.gbps
            for label, pts in sorted(series.items()):
                xs = sorted(pts)
                if label.startswith("roofline"):
                    color = (
                        "grey"
                        if "(3 arrays)" in label
                        else "tab:olive"
                        if "(1 array)" in label
                        else "tab:brown"
                        if "fresh" in label
                        else "black"
                    )
                    ax.plot(xs, [pts[x] for x in xs], "--", color=color, label=label, linewidth=2)
                else:
                    ax.plot(
                        xs,
                        [pts[x] for x in xs],
                        "o-" if "softmax_xp" in label else "s:",
                        label=label,
                    )
            ax.set_xticks(range(len(shapes)))
            ax.set_xticklabels(["x".join(map(str, s)) for s in shapes], fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("GB/s (bytes moved / median)")
            ax.set_title(f"{b} {d} {dt}")
            ax.legend(fontsize=6, loc="best")
            ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot written to {path}"


def main(argv: list[str]) -> int:
    """Run ``softmax-xp bench``; returns the exit status."""
    if "--overhead" in argv:  # the time per call from tiny arrays up: a run of its own
        from ._overhead import main as overhead_main

        return overhead_main(argv)
    parser = argparse.ArgumentParser(prog="softmax-xp bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, well under a minute")
    parser.add_argument(
        "--backend",
        action="append",
        help="numpy, torch or jax (repeat or comma-separate; default: installed)",
    )
    parser.add_argument("--dtype", action="append", help="float32, float64 (default: both)")
    parser.add_argument(
        "--device", action="append", help="cpu or cuda (default: cpu, plus cuda where a GPU exists)"
    )
    parser.add_argument("--out", type=Path, default=None, help="directory for JSON and PNG")
    parser.add_argument("--repeats", type=int, default=None, help="timed samples per case")
    parser.add_argument("--shape", action="append", help="override shapes, e.g. 1024x32768")
    parser.add_argument("--progress", action="store_true", help="progress bar even off a tty")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument(
        "--overhead",
        action="store_true",
        help="instead: time per call from (1, 2) to (4096, 1024) next to the native call",
    )
    args = parser.parse_args(argv)

    def listed(vals: list[str] | None, default: list[str]) -> list[str]:
        if not vals:
            return default
        return [v.strip() for val in vals for v in val.split(",") if v.strip()]

    installed = [b for b in ("numpy", "torch", "jax") if importlib.util.find_spec(b) is not None]
    backends = listed(args.backend, installed)
    unknown = [b for b in backends if b not in ("numpy", "torch", "jax")]
    if unknown:
        parser.error(f"--backend: unknown {unknown}")
    missing = [b for b in backends if b not in installed]
    for b in missing:
        print(f"skipping {b}: not installed", file=sys.stderr)
    backends = [b for b in backends if b in installed]
    dtypes = listed(args.dtype, ["float32", "float64"])
    if any(d not in ("float32", "float64") for d in dtypes):
        parser.error("--dtype: float32 or float64")
    devices = listed(args.device, ["cpu", "cuda"] if args.device is None else [])
    if any(d not in ("cpu", "cuda") for d in devices):
        parser.error("--device: cpu or cuda")
    explicit_cuda = args.device is not None and "cuda" in devices
    repeats = args.repeats or (5 if args.quick else 9)
    if args.shape:
        shapes = [tuple(int(s) for s in v.split("x")) for v in listed(args.shape, [])]
    else:
        shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    jac_shapes = [*(QUICK_JAC if args.quick else FULL_JAC), TEXTBOOK_JAC]

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    plan: list[tuple[str, str, str, tuple[int, ...], bool]] = []
    for b in backends:
        for d in devices:
            if d == "cuda" and (b == "numpy" or not _has_cuda(b)):
                if explicit_cuda:
                    print(f"skipping {b} on cuda: no GPU here", file=sys.stderr)
                continue
            for dt in dtypes:
                plan += [(b, d, dt, s, False) for s in shapes]
                plan += [(b, d, dt, s, True) for s in jac_shapes]
    if not plan:
        print("nothing to run", file=sys.stderr)
        return 0

    # count the cases on a tiny shape (cheap), then build each group only while timing it, so
    # that one group's arrays are alive at a time
    total = 0
    for b, _d, dt, s, j in plan:
        with _context(b, dt):
            total += len(_build(b, s if s == TEXTBOOK_JAC else (2, 8), dt, j, "cpu"))
    progress = Progress(total, args.progress or sys.stderr.isatty())
    rows: list[Row] = []
    for b, d, dt, s, j in plan:
        sync = _sync_for(b, d)
        with _context(b, dt):
            cases = _build(b, s, dt, j, d)

            def warm(k: int, cases: list[Case] = cases, group: str = f"{b} {d} {dt} {s}") -> None:
                progress.step(f"{group} {cases[k].kernel} {cases[k].impl}")

            stats = _time_group(
                [c.fn for c in cases],
                repeats,
                sync,
                cuda=(d == "cuda" and b == "torch"),
                on_warm=warm,
            )
            for c, (med, p20, p80) in zip(cases, stats, strict=True):
                rows.append(
                    Row(
                        b,
                        d,
                        dt,
                        list(s),
                        c.kernel,
                        c.impl,
                        med,
                        p20,
                        p80,
                        c.nbytes,
                        c.nbytes / med / 1e6,
                        role=c.role,
                    )
                )
            del cases
    progress.close()
    _fill_ratios(rows)

    memory: list[dict[str, Any]] = []
    if "numpy" in backends and "cpu" in devices:
        mem_shape = (256, 4096) if args.quick else (1024, 32768)
        memory = _memory_rows(mem_shape, "float32")

    exp_rows = _exp_rows(max(repeats, 5), backends) if "cpu" in devices else []
    rows_mod = _rows_module()
    isa = (
        None
        if rows_mod is None
        else {"level": rows_mod.isa(), "levels": list(rows_mod.isa_levels())}
    )

    print(_table(rows))
    if exp_rows:
        print(f"\nexp in L1 (4 x 1024), ns per element, one core; C kernels at {isa}:")
        for e in exp_rows:
            print(f"  {e['dtype']:<8} {e['impl']:<26} {e['ns_per_element']:.3f}")
    if memory:
        print("\nNumPy peak traced allocation (tracemalloc), in units of the output size:")
        for m in memory:
            print(
                f"  {m['impl']:<28} {m['peak_over_output']:.2f}x  "
                f"({m['peak_bytes'] / 2**20:.1f} MiB, {m['dtype']} {m['shape']})"
            )

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc)
        devs = sorted({f"{r.backend}:{r.device}" for r in rows})
        report = {
            "time": stamp.isoformat(timespec="seconds"),
            "device": {k: _device_name(*k.split(":")) for k in devs},
            **run_facts(argv, repeats, load_before),
            # the C row kernels' instruction-set level (None: built without them)
            "isa": isa,
            "rows": [asdict(r) for r in rows],
            "memory": memory,
            "exp": exp_rows,
        }
        name = "bench-quick" if args.quick else "bench"
        jpath = args.out / f"{name}.json"
        jpath.write_text(json.dumps(report, indent=1))
        print(f"\nJSON written to {jpath}")
        if not args.no_plot:
            print(_plot(rows, args.out / f"{name}.png"))
    return 0
