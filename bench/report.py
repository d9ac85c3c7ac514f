"""Turn the JSON of one ``softmax-xp bench`` run into the Markdown of docs/performance.md.

    python bench/report.py bench/results/bench.json > report.md

Prints the machine, the table (median ms, GB/s, x copy, x best peer) and every performance target
the project sets itself (docs/performance.md: each kernel against its peers and against the
copy-bandwidth roofline), with the ratio measured in that run and whether it is met. Nothing here
is typed in by hand: every figure comes from the JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

LARGE = [(1024, 32768), (64, 262144)]
ALL = [(4096, 1024), (1024, 32768), (64, 262144), (65536, 16)]
SEED = (8, 32)  # the small shape of the textbook double-loop Jacobian
# Labels as the JSON records them -> as the tables print them.
LABELS = {"seeds double loop": "textbook double loop"}


def _find(rows: list[dict[str, Any]], **kw: Any) -> dict[str, Any] | None:
    for r in rows:
        if all((tuple(r[k]) if k == "shape" else r[k]) == v for k, v in kw.items()):
            return r
    return None


def _ms(rows: list[dict[str, Any]], **kw: Any) -> float | None:
    r = _find(rows, **kw)
    return None if r is None else float(r["median_ms"])


def _fmt_shape(s: Any) -> str:
    return "x".join(map(str, s))


def table(rows: list[dict[str, Any]]) -> Iterator[str]:
    yield (
        "| backend | dtype | shape | kernel | implementation | median ms | GB/s | x copy "
        "| x best peer |"
    )
    yield "|---|---|---|---|---|---:|---:|---:|---:|"
    for r in rows:
        xc = f"{r['x_copy']:.2f}" if r.get("x_copy") is not None else ""
        xp = f"{r['x_best_peer']:.2f}" if r.get("x_best_peer") is not None else ""
        name = LABELS.get(r["impl"], r["impl"])
        impl = f"**{name}**" if r["role"] == "ours" else name
        yield (
            f"| {r['backend']} | {r['dtype']} | {_fmt_shape(r['shape'])} | {r['kernel']} | "
            f"{impl} | {r['median_ms']:.3f} | {r['gbps']:.1f} | {xc} | {xp} |"
        )


def targets(rows: list[dict[str, Any]], memory: list[dict[str, Any]]) -> Iterator[str]:
    yield "| target | dtype | shape | measured | met |"
    yield "|---|---|---|---:|:---:|"

    def line(
        name: str, dt: str, shape: Any, value: float | None, ok: bool | None, unit: str = "x"
    ) -> str:
        if value is None:
            return f"| {name} | {dt} | {_fmt_shape(shape)} | not measured | |"
        return (
            f"| {name} | {dt} | {_fmt_shape(shape)} | {value:.2f}{unit} | "
            f"{'yes' if ok else '**no**'} |"
        )

    for dt in ("float32", "float64"):
        np_kw = {"backend": "numpy", "dtype": dt}
        for kernel, peer in (
            ("softmax", "scipy.special.softmax"),
            ("log_softmax", "scipy.special.log_softmax"),
        ):
            for s in ALL:
                need = 5.0 if s == (65536, 16) else 1.5 if s == (4096, 1024) else 2.5
                ours = _ms(rows, shape=s, kernel=kernel, impl="softmax_xp", **np_kw)
                sp = _ms(rows, shape=s, kernel=kernel, impl=peer, **np_kw)
                v = sp / ours if ours and sp else None
                yield line(
                    f"NumPy {kernel}: {peer} time / ours >= {need}",
                    dt,
                    s,
                    v,
                    v is not None and v >= need,
                )
            for s in LARGE:
                ours = _ms(rows, shape=s, kernel=kernel, impl="softmax_xp", **np_kw)
                cp = _ms(rows, shape=s, kernel="copy2", **np_kw)
                v = ours / cp if ours and cp else None
                yield line(
                    f"NumPy {kernel}: ours / np.copyto <= 2.5", dt, s, v, v is not None and v <= 2.5
                )
        for kernel in ("softmax_vjp", "softmax_jvp", "log_softmax_vjp"):
            for s in LARGE:
                ours = _ms(rows, shape=s, kernel=kernel, impl="softmax_xp", **np_kw)
                cp = _ms(rows, shape=s, kernel="copy3", **np_kw)
                v = ours / cp if ours and cp else None
                yield line(
                    f"NumPy {kernel}: ours / 3-array copy <= 1.5",
                    dt,
                    s,
                    v,
                    v is not None and v <= 1.5,
                )
        for kernel in ("softmax_vjp", "log_softmax_vjp"):
            for s in ALL:
                ours = _ms(rows, shape=s, kernel=kernel, impl="softmax_xp", **np_kw)
                tb = _ms(rows, shape=s, kernel=kernel, impl="torch autograd backward", **np_kw)
                v = ours / tb if ours and tb else None
                yield line(
                    f"NumPy {kernel}: ours / torch autograd backward <= 1",
                    dt,
                    s,
                    v,
                    v is not None and v <= 1.0,
                )
        for backend, jrs in (
            ("numpy", []),
            ("torch", ["torch.func.jacrev"]),
            ("jax", ["jax.jacrev (jit, vmap)", "jax.jacrev (vmap, eager)"]),
        ):
            for r in rows:
                if (r["backend"], r["dtype"], r["kernel"], r["impl"]) != (
                    backend,
                    dt,
                    "softmax_jacobian",
                    "softmax_xp",
                ):
                    continue
                s = tuple(r["shape"])
                fw = _ms(
                    rows,
                    backend=backend,
                    dtype=dt,
                    shape=s,
                    kernel="softmax_jacobian",
                    impl="fresh write",
                )
                seed = next(
                    (
                        m
                        for label in ("textbook double loop", *LABELS)  # older results' label
                        if (m := _ms(rows, backend=backend, dtype=dt, shape=s,
                                     kernel="softmax_jacobian", impl=label))
                    ),
                    None,
                )  # fmt: skip
                if seed:
                    v = seed / r["median_ms"]
                    yield line(
                        "NumPy Jacobian: textbook double loop / ours (information)", dt, s, v, v > 1
                    )
                if s == SEED and not seed:
                    continue  # a few microseconds: call overhead, not bandwidth
                if fw and s != SEED:
                    v = r["median_ms"] / fw
                    yield line(f"{backend} Jacobian: ours / fresh write <= 1.3", dt, s, v, v <= 1.3)
                for jr in jrs:
                    p = _ms(
                        rows, backend=backend, dtype=dt, shape=s, kernel="softmax_jacobian", impl=jr
                    )
                    if p:
                        v = p / r["median_ms"]
                        yield line(f"{backend} Jacobian: {jr} / ours >= 5", dt, s, v, v >= 5)
        for backend, pairs, need in (
            (
                "torch",
                [
                    ("softmax", "torch.softmax"),
                    ("log_softmax", "torch.log_softmax"),
                    ("softmax_vjp", "torch autograd backward"),
                    ("log_softmax_vjp", "torch autograd backward"),
                ],
                1.05,
            ),
            (
                "jax",
                [("softmax", "jit(jax.nn.softmax)"), ("log_softmax", "jit(jax.nn.log_softmax)")],
                1.05,
            ),
            (
                "jax",
                [
                    ("softmax_vjp", "jax.vjp backward (jit)"),
                    ("softmax_vjp", "jax.vjp backward (eager)"),
                ],
                0.8,
            ),
        ):
            for kernel, peer in pairs:
                for s in ALL:
                    ours = _ms(
                        rows, backend=backend, dtype=dt, shape=s, kernel=kernel, impl="softmax_xp"
                    )
                    p = _ms(rows, backend=backend, dtype=dt, shape=s, kernel=kernel, impl=peer)
                    v = ours / p if ours and p else None
                    yield line(
                        f"{backend} {kernel}: ours / {peer} <= {need}",
                        dt,
                        s,
                        v,
                        v is not None and v <= need,
                    )
    for m in memory:
        met = ""
        if "softmax_xp" in m["impl"]:
            met = "yes" if m["peak_over_output"] < 1.25 else "**no**"
        yield (
            f"| NumPy peak allocation: {m['impl']} | {m['dtype']} | {_fmt_shape(m['shape'])} "
            f"| {m['peak_over_output']:.2f}x output | {met} |"
        )


def cpu_targets(data: dict[str, Any]) -> Iterator[str]:
    """The CPU kernels' targets at the copy limit (every instruction-set level is held to them):
    ``exp`` in cache, the forward and derivative kernels against the copies and SciPy, and eager
    JAX against ``jit(jax.nn.softmax)``. The level the run's kernels ran at is named."""
    rows = data["rows"]
    isa = (data.get("isa") or {}).get("level", "none")
    yield "| target | dtype | shape | measured | met |"
    yield "|---|---|---|---:|:---:|"

    def line(name: str, dt: str, shape: Any, v: float | None, ok: bool, unit: str = "x") -> str:
        where = _fmt_shape(shape) if shape else ""
        if v is None:
            return f"| {name} | {dt} | {where} | not measured | |"
        return f"| {name} | {dt} | {where} | {v:.2f}{unit} | {'yes' if ok else '**no**'} |"

    for e in data.get("exp", []):
        if e["impl"].startswith("softmax_xp exp") and e["dtype"] == "float32":
            v = e["ns_per_element"]
            yield line(
                f"{e['impl']} in L1 <= 0.5 ns per element", "float32", None, v, v <= 0.5, " ns"
            )
    for dt in ("float32", "float64"):
        kw = {"backend": "numpy", "dtype": dt}
        bound = 1.3 if dt == "float32" else 1.6
        for kernel in ("softmax", "log_softmax"):
            for sh in LARGE:
                ours = _ms(rows, shape=sh, kernel=kernel, impl="softmax_xp", **kw)
                cp = _ms(rows, shape=sh, kernel="copy2", **kw)
                v = ours / cp if ours and cp else None
                yield line(f"NumPy {kernel} ({isa}): ours / np.copyto <= {bound}", dt, sh, v,
                           v is not None and v <= bound)  # fmt: skip
                fresh = _ms(rows, shape=sh, kernel="copy2_fresh", **kw)
                if ours and fresh:  # the same bytes into a fresh array, as ours returns
                    yield f"| (information) ours / x.copy(), a fresh output | {dt} | {_fmt_shape(sh)} | {ours / fresh:.2f}x | |"  # fmt: skip
            for sh in ((65536, 16), (4096, 1024)):
                ours = _ms(rows, shape=sh, kernel=kernel, impl="softmax_xp", **kw)
                sp = _ms(rows, shape=sh, kernel=kernel, impl=f"scipy.special.{kernel}", **kw)
                v = sp / ours if ours and sp else None
                yield line(f"NumPy {kernel} ({isa}): scipy.special time / ours >= 5", dt, sh, v,
                           v is not None and v >= 5)  # fmt: skip
        if dt != "float32":
            continue
        for kernel, b in (("softmax_vjp", 1.3), ("softmax_jvp", 1.3), ("log_softmax_vjp", 1.5),
                          ("log_softmax_jvp", 1.5)):  # fmt: skip
            for sh in LARGE:
                ours = _ms(rows, shape=sh, kernel=kernel, impl="softmax_xp", **kw)
                cp = _ms(rows, shape=sh, kernel="copy3", **kw)
                v = ours / cp if ours and cp else None
                yield line(f"NumPy {kernel} ({isa}): ours / 3-array copy <= {b}", dt, sh, v,
                           v is not None and v <= b)  # fmt: skip
    for dt in ("float32", "float64"):
        for kernel in ("softmax", "log_softmax"):
            for sh in ALL:
                kw = {"backend": "jax", "dtype": dt, "shape": sh, "kernel": kernel}
                ours = _ms(rows, impl="softmax_xp", **kw)
                ref = _ms(rows, impl=f"jit(jax.nn.{kernel})", **kw)
                v = ours / ref if ours and ref else None
                # results of 32 MiB and more take the C kernels, smaller ones XLA (_jax.py)
                host = sh[0] * sh[1] * (4 if dt == "float32" else 8) >= 32 * 2**20
                path, bound = ("C path", 1.0) if host else ("XLA path", 1.05)
                yield line(f"eager JAX {kernel} ({path}): ours / jit(jax.nn.{kernel}) <= {bound}",
                           dt, sh, v, v is not None and v <= bound)  # fmt: skip


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        data = json.load(f)
    rows, memory = data["rows"], data.get("memory", [])
    print(
        f"Run: `{' '.join(data['command'])}` at {data['time']}, {data['repeats']} timed samples "
        "per case (medians).\n"
    )
    print(f"Machine: {data['cpu']}, {data['cpu_count']} CPUs ({data['platform']}).\n")
    if data.get("loadavg_before"):
        lb, la = data["loadavg_before"], data["loadavg_after"]
        print(
            f"Load average (1/5/15 min) before the run: {lb[0]:.1f} / {lb[1]:.1f} / {lb[2]:.1f}; "
            f"after: {la[0]:.1f} / {la[1]:.1f} / {la[2]:.1f} (on {data['cpu_count']} CPUs).\n"
        )
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + ".\n")
    print("### Targets\n")
    print("\n".join(targets(rows, memory)))
    print("\n### The CPU kernels at the copy limit\n")
    print("\n".join(cpu_targets(data)))
    print("\n### All timings\n")
    print("\n".join(table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
