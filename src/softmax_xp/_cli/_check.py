"""``softmax-xp check``: every kernel on every installed backend and device against that
framework's own autodiff (NumPy and other libraries without autodiff: float64 central finite
differences of an independent exactly-summed reference).

Prints a table (backend, device, dtype, kernel, max relative error, verdict) and exits with
status 1 on any failure. Works with NumPy alone; torch, JAX, CuPy, Dask and array-api-strict are
checked when installed (torch on CUDA and JAX on GPU when present).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

import softmax_xp as sx
from softmax_xp import _kernels, _testing

__all__ = ["Row", "main", "run_checks", "torch_cuda_line"]

#: The kernels whose derivatives take the forward output, forward kernels first (the order of
#: the report); logsumexp and the cross-entropies are checked by :data:`LSE_KERNELS`.
KERNELS = tuple(
    dict.fromkeys(
        n
        for n in (*_kernels.FORWARD, *_kernels.NAMES)
        if n in _kernels.OF_OUTPUT and n in _kernels.NAMES
    )
)


THRESHOLDS = _testing.THRESHOLDS

#: Each case: (shape, axis). axis=0 checks the Jacobian layout (batch axes first).
CASES = (((4, 7), -1), ((5, 3), 0))


@dataclass
class Row:
    """One line of the report."""

    backend: str
    device: str
    dtype: str
    kernel: str
    error: float
    passed: bool
    reference: str = ""


_rel_error = _testing.rel_error


# ----------------------------------------------------------------------------------------------
# float64 references for libraries without autodiff
# ----------------------------------------------------------------------------------------------
def _rows_last(a: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(a, axis, -1)


def _ref_softmax(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    """softmax / log_softmax in float64 with exactly rounded sums (math.fsum), row by row."""
    rows = _rows_last(x, axis)
    out = np.empty_like(rows)
    for idx in np.ndindex(rows.shape[:-1]):
        r = rows[idx]
        m = max(r)
        e = [math.exp(v - m) for v in r]
        s = math.fsum(e)
        out[idx] = [(v - m) - math.log(s) for v in r] if log else [t / s for t in e]
    return np.moveaxis(out, -1, axis)


def _fd_jacobian(x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    """Per-slice Jacobian by central differences of the reference, layout batch + (C, C)."""
    return _testing.fd_jacobian(lambda r: _ref_softmax(r, -1, log), _rows_last(x, axis))


class _FiniteDifferences:
    kind = "finite differences"

    def forward(self, x: np.ndarray, axis: int, log: bool) -> np.ndarray:
        return _ref_softmax(x, axis, log)

    def jvp(self, x: np.ndarray, v: np.ndarray, axis: int, log: bool) -> np.ndarray:
        jac = _fd_jacobian(x, axis, log)
        out = np.einsum("...ij,...j->...i", jac, _rows_last(v, axis))
        return np.moveaxis(out, -1, axis)

    def vjp(self, x: np.ndarray, g: np.ndarray, axis: int, log: bool) -> np.ndarray:
        jac = _fd_jacobian(x, axis, log)
        out = np.einsum("...i,...ij->...j", _rows_last(g, axis), jac)
        return np.moveaxis(out, -1, axis)

    def jacobian(self, x: np.ndarray, axis: int, log: bool) -> np.ndarray:
        return _fd_jacobian(x, axis, log)


# ----------------------------------------------------------------------------------------------
# Backends: how to make arrays, read them back, and the framework's own autodiff
# ----------------------------------------------------------------------------------------------
@dataclass
class _Backend:
    name: str
    device: str
    dtypes: tuple[str, ...]
    to_backend: Callable[[np.ndarray, str], Any]
    to_numpy: Callable[[Any], np.ndarray]
    reference: Any  # an object with forward / jvp / vjp / jacobian on NumPy float64 data
    context: Callable[[str], Any] | None = None


class _TorchAutodiff:
    kind = "autodiff"

    def __init__(self, device: Any) -> None:
        import torch

        self.torch: Any = torch
        self.device = device

    def _t(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(np.array(a, dtype=np.float64)).to(self.device)

    def _f(self, axis: int, log: bool) -> Callable[[Any], Any]:
        fn = self.torch.log_softmax if log else self.torch.softmax
        return lambda t: fn(t, dim=axis)

    def _np(self, t: Any) -> np.ndarray:
        return np.asarray(t.detach().cpu().numpy(), dtype=np.float64)

    def forward(self, x: np.ndarray, axis: int, log: bool) -> np.ndarray:
        return self._np(self._f(axis, log)(self._t(x)))

    def jvp(self, x: np.ndarray, v: np.ndarray, axis: int, log: bool) -> np.ndarray:
        _, tangent = self.torch.func.jvp(self._f(axis, log), (self._t(x),), (self._t(v),))
        return self._np(tangent)

    def vjp(self, x: np.ndarray, g: np.ndarray, axis: int, log: bool) -> np.ndarray:
        _, pullback = self.torch.func.vjp(self._f(axis, log), self._t(x))
        return self._np(pullback(self._t(g))[0])

    def jacobian(self, x: np.ndarray, axis: int, log: bool) -> np.ndarray:
        rows = self._t(_rows_last(x, axis).copy())
        flat = rows.reshape(-1, rows.shape[-1])
        jac = self.torch.func.vmap(self.torch.func.jacrev(self._f(-1, log)))(flat)
        return self._np(jac).reshape((*rows.shape, rows.shape[-1]))


class _JaxAutodiff:
    kind = "autodiff"

    def __init__(self, device: Any) -> None:
        import jax

        self.jax: Any = jax
        self.device = device

    def _j(self, a: np.ndarray) -> Any:
        return self.jax.device_put(np.asarray(a, dtype=np.float64), self.device)

    def _f(self, axis: int, log: bool) -> Callable[[Any], Any]:
        fn = self.jax.nn.log_softmax if log else self.jax.nn.softmax
        return lambda a: fn(a, axis=axis)

    def forward(self, x: np.ndarray, axis: int, log: bool) -> np.ndarray:
        with self.jax.enable_x64(True):
            return np.asarray(self._f(axis, log)(self._j(x)))

    def jvp(self, x: np.ndarray, v: np.ndarray, axis: int, log: bool) -> np.ndarray:
        with self.jax.enable_x64(True):
            _, tangent = self.jax.jvp(self._f(axis, log), (self._j(x),), (self._j(v),))
            return np.asarray(tangent)

    def vjp(self, x: np.ndarray, g: np.ndarray, axis: int, log: bool) -> np.ndarray:
        with self.jax.enable_x64(True):
            _, pullback = self.jax.vjp(self._f(axis, log), self._j(x))
            return np.asarray(pullback(self._j(g))[0])

    def jacobian(self, x: np.ndarray, axis: int, log: bool) -> np.ndarray:
        with self.jax.enable_x64(True):
            rows = self._j(_rows_last(x, axis).copy())
            flat = rows.reshape(-1, rows.shape[-1])
            jac = self.jax.vmap(self.jax.jacfwd(self._f(-1, log)))(flat)
            return np.asarray(jac).reshape((*rows.shape, rows.shape[-1]))


def _to_torch(a: np.ndarray, dtype: str, *, torch: Any, device: str) -> Any:
    return torch.from_numpy(a.astype(dtype)).to(device)


def _to_jax(a: np.ndarray, dtype: str, *, jax: Any, device: Any) -> Any:
    return jax.device_put(a.astype(dtype), device)


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _backends() -> Iterator[_Backend]:
    fd = _FiniteDifferences()
    yield _Backend(
        "numpy",
        "cpu",
        ("float32", "float64"),
        lambda a, dt: a.astype(dt),
        lambda a: np.asarray(a, dtype=np.float64),
        fd,
    )
    if _installed("array_api_strict"):
        import array_api_strict as xs

        yield _Backend(
            "array_api_strict",
            "device1",
            ("float32", "float64"),
            lambda a, dt: xs.asarray(a.astype(dt), device=xs.Device("device1")),
            lambda a: np.from_dlpack(a).astype(np.float64),
            fd,
        )
    if _installed("dask"):
        da: Any = importlib.import_module("dask.array")

        yield _Backend(
            "dask",
            "cpu",
            ("float32", "float64"),
            lambda a, dt: da.from_array(
                a.astype(dt), chunks=tuple(max(1, s // 2) for s in a.shape)
            ),
            lambda a: np.asarray(a.compute(), dtype=np.float64),
            fd,
        )
    if _installed("torch"):
        torch: Any = importlib.import_module("torch")

        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for dev in devices:
            yield _Backend(
                "torch",
                dev if _torch_path(dev) == "native" else f"{dev} (triton)",
                ("float32", "float64"),
                functools.partial(_to_torch, torch=torch, device=dev),
                lambda t: np.asarray(t.detach().cpu().numpy(), dtype=np.float64),
                _TorchAutodiff(torch.device(dev)),
            )
    if _installed("jax"):
        jax: Any = importlib.import_module("jax")

        for d in jax.devices():
            yield _Backend(
                "jax",
                f"{d.platform}:{d.id}",
                ("float32", "float64"),
                functools.partial(_to_jax, jax=jax, device=d),
                lambda a: np.asarray(a, dtype=np.float64),
                _JaxAutodiff(d),
                context=lambda dt: jax.enable_x64(dt == "float64"),
            )
    if _installed("cupy"):
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() > 0:
                yield _Backend(
                    "cupy",
                    "cuda:0",
                    ("float32", "float64"),
                    lambda a, dt: cupy.asarray(a.astype(dt)),
                    lambda a: np.asarray(a.get(), dtype=np.float64),
                    fd,
                )
        except Exception:
            pass


def _torch_path(device: str) -> str:
    from .._backends import _torch_cuda

    return _torch_cuda.path(device)


def torch_cuda_line() -> str:
    """Which implementation serves torch CUDA tensors, and how to change it."""
    from .._backends import _torch_cuda

    env = _torch_cuda.ENV
    if _torch_cuda.selected() == "triton":
        if not _torch_cuda.triton_available():
            return f"torch CUDA path: native ({env}=triton, but triton is not installed)"
        return f"torch CUDA path: triton ({env}=triton; the package's Triton kernels)"
    return f"torch CUDA path: native (torch.softmax and friends; {env}=triton selects Triton)"


def _check_one(b: _Backend, dtype: str, kernel: str, rng: np.random.Generator) -> Row:
    log = kernel.startswith("log_")
    errors = []
    for shape, axis in CASES:
        x = rng.standard_normal(shape) * 2.0
        v = rng.standard_normal(shape)
        # values representable in the checked dtype, so both sides see the same input
        x = x.astype(dtype).astype(np.float64)
        v = v.astype(dtype).astype(np.float64)
        ref = b.reference
        fwd = sx.log_softmax if log else sx.softmax
        xb, vb = b.to_backend(x, dtype), b.to_backend(v, dtype)
        if kernel in ("softmax", "log_softmax"):
            got, want = fwd(xb, axis=axis), ref.forward(x, axis, log)
        else:
            y = fwd(xb, axis=axis)
            if kernel.endswith("_jvp"):
                got = getattr(sx, kernel)(y, vb, axis=axis)
                want = ref.jvp(x, v, axis, log)
            elif kernel.endswith("_vjp"):
                got = getattr(sx, kernel)(y, vb, axis=axis)
                want = ref.vjp(x, v, axis, log)
            else:
                got = getattr(sx, kernel)(y, axis=axis)
                want = ref.jacobian(x, axis, log)
        errors.append(_rel_error(b.to_numpy(got), want))
    err = max(errors)
    limit = THRESHOLDS[(dtype, ref.kind)]
    return Row(b.name, b.device, dtype, kernel, err, err <= limit, ref.kind)


# ----------------------------------------------------------------------------------------------
# logsumexp and the cross-entropies: values against SciPy / torch / JAX / optax in float64,
# derivatives against the framework's autodiff of its own function (float64 finite differences
# of SciPy's logsumexp for libraries without autodiff)
# ----------------------------------------------------------------------------------------------
#: The checks of :func:`_check_lse`, in the order of the report.
LSE_KERNELS = (
    "logsumexp",
    "logsumexp_jvp",
    "logsumexp_vjp",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "softmax_cross_entropy (gradient)",
    "softmax_cross_entropy_with_integer_labels (gradient)",
)
_LSE_SHAPE, _LSE_LABELS, _EPS = (5, 7), np.array([0, 6, 3, 2, 6]), 0.1


def _lse_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, float64 with exactly rounded sums: lse, softmax, log_softmax."""
    lse = np.array([max(r) + math.log(math.fsum(math.exp(v - max(r)) for v in r)) for r in x])
    return lse, np.exp(x - lse[:, None]), x - lse[:, None]


def _losses(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smoothed soft-target and label losses of the rows of ``x`` (float64 reference)."""
    _, _, logp = _lse_reference(x)
    c = x.shape[-1]
    soft = -np.sum(((1 - _EPS) * t + _EPS / c) * logp, axis=-1)
    hot = np.eye(c)[_LSE_LABELS]
    labels = -np.sum(((1 - _EPS) * hot + _EPS / c) * logp, axis=-1)
    return soft, labels


def _fd_gradient(f: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = _testing.FD_STEP
        grad[i] = (f(x + step) - f(x - step)) / (2 * _testing.FD_STEP)
    return grad


def _framework_gradient(
    b: _Backend, kernel: str, x: np.ndarray, t: np.ndarray, dtype: str
) -> tuple[np.ndarray, np.ndarray]:
    """d sum(loss) / dx of ours and of the framework's own loss (torch: ``F.cross_entropy``;
    JAX: ``-sum(t * jax.nn.log_softmax(x))``), each by the framework's autodiff."""
    if b.name == "torch":
        import torch

        F = torch.nn.functional
        xt = b.to_backend(x, dtype).requires_grad_()
        tt, lab = b.to_backend(t, dtype), b.to_backend(_LSE_LABELS, "int64")
        if kernel.startswith("softmax_cross_entropy_with"):
            loss = sx.softmax_cross_entropy_with_integer_labels(xt, lab, label_smoothing=_EPS)
        else:
            loss = sx.softmax_cross_entropy(xt, tt, label_smoothing=_EPS)
        (got,) = torch.autograd.grad(loss.sum(), xt)
        x64 = torch.from_numpy(x).requires_grad_()
        target = torch.from_numpy(t) if "labels" not in kernel else torch.from_numpy(_LSE_LABELS)
        theirs = F.cross_entropy(x64, target, reduction="sum", label_smoothing=_EPS)
        (want,) = torch.autograd.grad(theirs, x64)
        return b.to_numpy(got), want.numpy()
    import jax

    labels = b.to_backend(_LSE_LABELS, "int64")
    tb = b.to_backend(t, dtype)

    def ours(a: Any) -> Any:
        if kernel.startswith("softmax_cross_entropy_with"):
            loss = sx.softmax_cross_entropy_with_integer_labels(a, labels, label_smoothing=_EPS)
            return loss.sum()
        return sx.softmax_cross_entropy(a, tb, label_smoothing=_EPS).sum()

    got = jax.grad(ours)(b.to_backend(x, dtype))
    c = x.shape[-1]
    tt = np.eye(c)[_LSE_LABELS] if "labels" in kernel else t
    ts = (1 - _EPS) * tt + _EPS / c
    with jax.enable_x64(True):
        want = jax.grad(lambda a: -(ts * jax.nn.log_softmax(a, axis=-1)).sum())(np.asarray(x))
    return b.to_numpy(got), np.asarray(want)


def _check_lse(b: _Backend, dtype: str, kernel: str, rng: np.random.Generator) -> Row | None:
    x = (rng.standard_normal(_LSE_SHAPE) * 2.0).astype(dtype).astype(np.float64)
    e = np.exp(rng.standard_normal(_LSE_SHAPE))
    t = (e / e.sum(axis=-1, keepdims=True)).astype(dtype).astype(np.float64)
    v = rng.standard_normal(_LSE_SHAPE).astype(dtype).astype(np.float64)
    g = rng.standard_normal(_LSE_SHAPE[0]).astype(dtype).astype(np.float64)
    lse, p, _ = _lse_reference(x)
    xb = b.to_backend(x, dtype)
    kind = "autodiff" if b.name in ("torch", "jax") else "finite differences"
    if kernel.endswith("(gradient)"):
        if kind != "autodiff":
            return None  # the gradient comes from a framework's autodiff: torch and JAX only
        got_np, want = _framework_gradient(b, kernel, x, t, dtype)
        err = _rel_error(got_np, want)
        return Row(b.name, b.device, dtype, kernel, err, err <= THRESHOLDS[(dtype, kind)], kind)
    else:
        ref = "float64 reference"
        soft, labels = _losses(x, t)
        if kernel == "logsumexp":
            got, want = sx.logsumexp(xb), lse
        elif kernel == "logsumexp_vjp":
            got = sx.logsumexp_vjp(xb, sx.logsumexp(xb), b.to_backend(g, dtype))
            if kind == "autodiff":
                want = g[:, None] * p
            else:
                fd = _fd_gradient(lambda a: float(np.sum(_lse_reference(a)[0])), x)
                want, ref = g[:, None] * fd, "finite differences"
        elif kernel == "logsumexp_jvp":
            got = sx.logsumexp_jvp(xb, sx.logsumexp(xb), b.to_backend(v, dtype))
            want = np.sum(p * v, axis=-1)
        elif kernel == "softmax_cross_entropy":
            got = sx.softmax_cross_entropy(xb, b.to_backend(t, dtype), label_smoothing=_EPS)
            want = soft
        else:
            got = sx.softmax_cross_entropy_with_integer_labels(
                xb, b.to_backend(_LSE_LABELS, "int64"), label_smoothing=_EPS
            )
            want = labels
    err = _rel_error(b.to_numpy(got), want)
    limit = THRESHOLDS[(dtype, "finite differences" if ref == "finite differences" else "autodiff")]
    return Row(b.name, b.device, dtype, kernel, err, err <= limit, ref)


def run_checks(seed: int = 0) -> list[Row]:
    """Run every kernel on every installed backend, device and dtype; return the report rows."""
    rows: list[Row] = []
    rng = np.random.default_rng(seed)
    for b in _backends():
        for dtype in b.dtypes:
            for kernel in (*KERNELS, *LSE_KERNELS):
                check = _check_lse if kernel in LSE_KERNELS else _check_one
                try:
                    if b.context is not None:
                        with b.context(dtype):
                            row = check(b, dtype, kernel, rng)
                    else:
                        row = check(b, dtype, kernel, rng)
                except Exception as exc:  # a crash is a failure, reported, not raised
                    row = Row(b.name, b.device, dtype, kernel, math.inf, False, repr(exc))
                if row is not None:
                    rows.append(row)
    return rows


def _integration_rows() -> list[Row]:
    if importlib.util.find_spec("softmax_xp._cli._integration") is None:
        return []
    from . import _integration

    out = []
    for r in _integration.integration_rows():
        out.append(
            Row(
                str(r["backend"]),
                str(r["device"]),
                str(r["dtype"]),
                str(r["kernel"]),
                float(r["error"]),  # type: ignore[arg-type]
                bool(r["passed"]),
                "integration",
            )
        )
    return out


def format_table(rows: list[Row]) -> str:
    header = ("backend", "device", "dtype", "kernel", "max rel err", "verdict", "reference")
    body = [
        (
            r.backend,
            r.device,
            r.dtype,
            r.kernel,
            f"{r.error:.2e}",
            "pass" if r.passed else "FAIL",
            r.reference,
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(row[i]) for row in body)) if body else len(h)
        for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``softmax-xp check [--seed N] [--no-integration]``."""
    parser = argparse.ArgumentParser(prog="softmax-xp check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="random seed for the test inputs")
    parser.add_argument(
        "--no-integration", action="store_true", help="skip the autodiff integration checks"
    )
    args = parser.parse_args(argv)
    rows = run_checks(args.seed)
    if not args.no_integration:
        rows += _integration_rows()
    print(format_table(rows))
    failed = [r for r in rows if not r.passed]
    backends = sorted({f"{r.backend}/{r.device}" for r in rows})
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed ({', '.join(backends)})")
    if _installed("torch"):
        print(torch_cuda_line())
    from .._backends import _host

    kernels = _host.rows
    print(
        f"NumPy fast path: C row kernels built, running at {kernels.isa()}"
        f" (this CPU and build: {', '.join(kernels.isa_levels())})"
        if kernels is not None
        else "NumPy fast path: C row kernels absent (NumPy ufuncs do the work, slower); to get them,"
        " install GCC or Clang and reinstall softmax-xp from source"
    )
    return 1 if failed else 0
