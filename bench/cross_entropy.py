"""Cross-entropy training step on the CPU: softmax_xp against ``torch.nn.functional.cross_entropy``.

For each shape, float32 logits with integer labels: the time of one forward + backward
(``loss.sum().backward()``; medians of interleaved repeats in one process) and the peak memory of
one step beyond the logits, measured in a fresh subprocess per implementation as the growth of
the process's peak resident set (``VmHWM`` after ``/proc/self/clear_refs`` reset it, Linux) over
its resident set once the logits and labels exist. The step keeps the gradient (one N x C array),
so the least any implementation can use is one N x C array plus O(N).

    python bench/cross_entropy.py --out bench/results              # (4096, 32768), 9 repeats
    python bench/cross_entropy.py --shape 8192 131072 --repeats 1  # 4 GiB of logits
    python bench/cross_entropy.py --shape 8192 131072 --repeats 1 --only ours

Writes ``cross_entropy.json`` (with the CPU model and the C kernels' ISA level) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

IMPLS = ("ours", "torch")


def _step(impl: str, x: Any, labels: Any) -> None:
    import torch

    import softmax_xp as sx

    if impl == "ours":
        loss = sx.softmax_cross_entropy_with_integer_labels(x, labels)
    else:
        loss = torch.nn.functional.cross_entropy(x, labels, reduction="none")
    loss.sum().backward()


def _inputs(n: int, c: int) -> tuple[Any, Any]:
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn((n, c), generator=gen).requires_grad_()
    labels = torch.randint(0, c, (n,), generator=gen)
    return x, labels


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _memory_child(impl: str, n: int, c: int) -> None:
    """One step in this (fresh) process; print the peak growth over the inputs, in bytes."""
    x, labels = _inputs(n, c)
    base = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    _step(impl, x, labels)
    print(json.dumps({"impl": impl, "peak_over_inputs": _status("VmHWM") - base}))


def _memory(impl: str, n: int, c: int) -> dict[str, Any]:
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import cross_entropy as m; m._memory_child({impl!r}, {n}, {c})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return {"impl": impl, "error": (out.stderr.strip().splitlines() or ["?"])[-1],
                "returncode": out.returncode}  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _times(impls: list[str], n: int, c: int, repeats: int) -> dict[str, float]:
    x, labels = _inputs(n, c)
    samples: dict[str, list[float]] = {i: [] for i in impls}
    for impl in impls:  # warm up
        _step(impl, x, labels)
        x.grad = None
    for _ in range(repeats):
        for impl in impls:
            t = time.perf_counter()
            _step(impl, x, labels)
            samples[impl].append(time.perf_counter() - t)
            x.grad = None
    return {i: statistics.median(s) * 1e3 for i, s in samples.items()}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs=2, default=[4096, 32768])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--only", choices=IMPLS, action="append")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    import torch

    from softmax_xp._backends import _host
    from softmax_xp._cli._bench import _cpu_name

    n, c = args.shape
    impls = args.only or list(IMPLS)
    result: dict[str, Any] = {
        "cpu": _cpu_name(),
        "isa": _host.rows.isa() if _host.HAVE_ROWS else None,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "shape": [n, c],
        "dtype": "float32",
        "logits_bytes": n * c * 4,
        "repeats": args.repeats,
        "memory": [_memory(i, n, c) for i in impls],
    }
    if args.repeats:
        result["median_ms"] = _times(impls, n, c, args.repeats)
        if len(impls) == 2:
            result["ratio_ours_to_torch"] = (
                result["median_ms"]["ours"] / result["median_ms"]["torch"]
            )
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        name = "cross_entropy.json" if [n, c] == [4096, 32768] else f"cross_entropy_{n}x{c}.json"
        (args.out / name).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
