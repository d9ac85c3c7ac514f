"""``softmax-xp bench`` records the C kernels' instruction-set level and times their ``exp`` at
every level next to ``np.exp`` (a tiny run: this checks what is written, not how fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from softmax_xp._backends import _numpy


@pytest.mark.skipif(
    "numpy" not in os.environ.get("SOFTMAX_XP_BACKENDS", "numpy").split(","),
    reason="runs in the numpy session",
)
def test_bench_records_isa_and_exp(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "softmax_xp", "bench", "--quick", "--backend", "numpy"]
    cmd += ["--dtype", "float32", "--shape", "8x16", "--repeats", "3", "--no-plot"]
    run = subprocess.run([*cmd, "--out", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "bench-quick.json").read_text())
    rows = _numpy._rows
    impls = {(e["dtype"], e["impl"]) for e in report["exp"]}
    for dtype in ("float32", "float64"):
        assert (dtype, "np.exp") in impls
    if rows is None:
        assert report["isa"] is None
        return
    assert report["isa"] == {"level": rows.isa(), "levels": list(rows.isa_levels())}
    for level in rows.isa_levels():
        assert ("float32", f"softmax_xp exp ({level})") in impls
    assert all(e["ns_per_element"] > 0 for e in report["exp"])
    assert "exp in L1" in run.stdout


@pytest.mark.skipif(
    "numpy" not in os.environ.get("SOFTMAX_XP_BACKENDS", "numpy").split(","),
    reason="runs in the numpy session",
)
def test_bench_overhead_writes_every_case(tmp_path: Path) -> None:
    """``--overhead``: each NumPy function next to its peer at each quick shape, in the JSON."""
    from softmax_xp._cli import _overhead

    cmd = [sys.executable, "-m", "softmax_xp", "bench", "--overhead", "--quick"]
    cmd += ["--backend", "numpy", "--repeats", "1", "--out", str(tmp_path)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "overhead.json").read_text())
    got = {(r["kernel"], tuple(r["shape"])) for r in report["rows"]}
    kernels = {"softmax", "log_softmax", "softmax_vjp", "softmax_jvp", "log_softmax_vjp"}
    assert {(k, s) for k in kernels for s in _overhead.QUICK_SHAPES} <= got
    for r in report["rows"]:
        assert r["ours_us"] > 0
        assert r["peer_us"] > 0
        assert r["ratio"] == pytest.approx(r["ours_us"] / r["peer_us"])
    assert report["cpu"]
    assert "isa" in report
    assert (tmp_path / "overhead.png").exists() or "no plot written" in run.stdout
