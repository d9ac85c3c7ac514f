"""Autodiff integration checks for ``softmax-xp check`` (layer 4, per framework and device).

Each check differentiates ``softmax_xp.softmax`` / ``log_softmax`` with the framework's own
machinery (torch autograd, ``torch.func``, ``torch.compile``; ``jax.grad``, ``jax.jacfwd``,
``jax.jit``, ``jax.vmap``) and compares with the same derivative of the framework's softmax
(``torch.softmax``, ``jax.nn.softmax``), or is a pass/fail property (gradcheck, the number of
saved tensors, no NaN next to a huge masked-out logit). Frameworks that are not installed are
skipped; torch and JAX are imported only inside the functions here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import softmax_xp as sx

__all__ = ["integration_rows"]

Row = dict[str, object]

#: Pass threshold on the max relative error (max abs error / max abs reference) per dtype. float16
#: and bfloat16 gradients (float32 inside) are compared with the float64 gradient at the same
#: values; their thresholds are the dtype's rtol in tests/_support.TOLERANCES.
THRESHOLDS = {"float64": 1e-10, "float32": 1e-5, "float16": 4e-3, "bfloat16": 3e-2}

NAMES = ("softmax", "log_softmax")


def _rel_error(actual: Any, expected: Any) -> float:
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape or not np.all(np.isfinite(a)):
        return math.inf
    if e.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(e))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - e))) / scale


def _run(
    rows: list[Row], backend: str, device: str, dtype: str, kernel: str, check: Callable[[], Any]
) -> None:
    """Append one row: ``check()`` returns a relative error (float) or a pass/fail bool."""
    try:
        with warnings.catch_warnings():  # local: framework chatter is not a result
            warnings.simplefilter("ignore")
            result = check()
    except Exception:  # a crash is a failure, reported in the table, not raised
        rows.append(dict(backend=backend, device=device, dtype=dtype, kernel=kernel,
                         error=math.inf, passed=False))  # fmt: skip
        return
    if isinstance(result, bool):
        error, passed = (0.0 if result else 1.0), result
    else:
        error = float(result)
        passed = error <= THRESHOLDS[dtype]
    rows.append(dict(backend=backend, device=device, dtype=dtype, kernel=kernel,
                     error=error, passed=passed))  # fmt: skip


# ----------------------------------------------------------------------------------------------
# torch
# ----------------------------------------------------------------------------------------------
def _torch_rows() -> list[Row]:
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows: list[Row] = []
    for dev in devices:
        _torch_device_rows(rows, torch, dev)
    return rows


def _torch_device_rows(rows: list[Row], torch: Any, dev: str) -> None:
    from torch.func import jacfwd, jacrev, jvp, vmap

    gen = np.random.default_rng(0)
    data = gen.standard_normal((4, 7)) * 2
    cot = gen.standard_normal((4, 7))
    native = {"softmax": torch.softmax, "log_softmax": torch.log_softmax}
    ours = {"softmax": sx.softmax, "log_softmax": sx.log_softmax}

    def t(a: Any, dtype: Any) -> Any:
        return torch.as_tensor(a, dtype=dtype, device=dev)

    def np_(a: Any) -> Any:
        return a.detach().to("cpu", torch.float64).numpy()

    def add(dtype: str, kernel: str, check: Callable[[], Any]) -> None:
        _run(rows, "torch", dev, dtype, kernel, check)

    for name in NAMES:
        f, ref = ours[name], native[name]
        for dname in ("float64", "float32"):
            dt = getattr(torch, dname)

            def grad_check(f: Any = f, ref: Any = ref, dt: Any = dt) -> float:
                grads = []
                for use_ours in (True, False):
                    x = t(data, dt).requires_grad_()
                    y = f(x, axis=-1) if use_ours else ref(x, -1)
                    (gx,) = torch.autograd.grad((y * t(cot, dt)).sum(), x)
                    grads.append(np_(gx))
                return _rel_error(*grads)

            add(dname, f"{name} grad via autograd", grad_check)

            def jvp_check(f: Any = f, ref: Any = ref, dt: Any = dt) -> float:
                x, v = t(data, dt), t(cot, dt)
                a = jvp(lambda x: f(x, axis=-1), (x,), (v,))[1]
                return _rel_error(np_(a), np_(jvp(lambda x: ref(x, -1), (x,), (v,))[1]))

            add(dname, f"{name} jvp via torch.func.jvp", jvp_check)

            def vmap_check(f: Any = f, ref: Any = ref, dt: Any = dt) -> float:
                x = t(data, dt)
                a = vmap(jacrev(lambda r: f(r, axis=-1)))(x)
                return _rel_error(np_(a), np_(vmap(jacrev(lambda r: ref(r, -1)))(x)))

            add(dname, f"{name} vmap(jacrev)", vmap_check)

        def hessian_check(f: Any = f, ref: Any = ref) -> float:
            x = t(data[0], torch.float64)
            expected = np_(jacrev(jacrev(lambda r: ref(r, -1)))(x))
            errs = [
                _rel_error(np_(outer(inner(lambda r: f(r, axis=-1)))(x)), expected)
                for outer in (jacrev, jacfwd)
                for inner in (jacrev, jacfwd)
            ]
            return max(errs)

        add("float64", f"{name} second derivatives (all 4 mode pairs)", hessian_check)

        def gradcheck(f: Any = f) -> bool:
            x = t(data, torch.float64).requires_grad_()
            return bool(torch.autograd.gradcheck(lambda x: f(x), (x,), check_forward_ad=True))

        def gradgradcheck(f: Any = f) -> bool:
            x = t(data, torch.float64).requires_grad_()
            return bool(torch.autograd.gradgradcheck(lambda x: f(x), (x,)))

        add("float64", f"{name} gradcheck", gradcheck)
        add("float64", f"{name} gradgradcheck", gradgradcheck)

        def saved_check(f: Any = f) -> bool:
            saved: list[Any] = []

            def pack(s: Any) -> Any:
                saved.append(s)
                return s

            x = t(data, torch.float32).requires_grad_()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda s: s):
                y = f(x)
            return len(saved) == 1 and saved[0].data_ptr() == y.data_ptr()

        add("float32", f"{name} saved tensors (only the output)", saved_check)

        def mask_check(f: Any = f) -> bool:
            x = t([36.0, 10000.0], torch.float64)
            where = x < 1000

            def g(x: Any) -> Any:
                return f(x, where=where)

            xs = x.clone().requires_grad_()
            (d1,) = torch.autograd.grad(g(xs)[0], xs, create_graph=True)
            (d2,) = torch.autograd.grad(d1.sum(), xs, materialize_grads=True)
            ds = [d1, d2, jacrev(g)(x), jacfwd(jacrev(g))(x), jacfwd(jacfwd(g))(x)]
            return all(
                not bool(torch.isnan(d).any()) and bool(torch.all(d[..., 1] == 0)) for d in ds
            )

        add("float64", f"{name} masked huge logit: no NaN, zero gradient", mask_check)

        for half in ("float16", "bfloat16"):

            def half_check(f: Any = f, ref: Any = ref, half: str = half) -> float:
                hd = getattr(torch, half)
                x = t(data, hd).requires_grad_()
                c = t(cot, hd)
                (g,) = torch.autograd.grad((f(x) * c).sum(), x)
                if g.dtype != hd:
                    return math.inf
                x64 = x.detach().double().requires_grad_()
                (g64,) = torch.autograd.grad((ref(x64, -1) * c.double()).sum(), x64)
                return _rel_error(np_(g), np_(g64))

            add(half, f"{name} grad via autograd (float32 inside) vs float64", half_check)

        def compile_check(f: Any = f) -> float:
            torch._dynamo.reset()
            c = t(cot, torch.float32)

            def loss(x: Any) -> Any:
                return (f(x) * c).sum()

            compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
            x = t(data, torch.float32).requires_grad_()
            (g1,) = torch.autograd.grad(compiled(x), x)
            (g2,) = torch.autograd.grad(loss(x), x)
            return _rel_error(np_(g1), np_(g2))

        add("float32", f"{name} torch.compile(fullgraph=True) grad", compile_check)


# ----------------------------------------------------------------------------------------------
# jax
# ----------------------------------------------------------------------------------------------
def _jax_rows() -> list[Row]:
    import jax

    rows: list[Row] = []
    devices = [jax.devices("cpu")[0]]
    with contextlib.suppress(RuntimeError):  # no GPU backend
        devices += jax.devices("gpu")[:1]
    for dev in devices:
        with jax.enable_x64(True), jax.default_device(dev):  # scoped; the global flag is kept
            _jax_device_rows(rows, jax, dev)
    return rows


def _residual_count(f: Callable[[Any], Any], x: Any) -> int:
    from jax.ad_checkpoint import print_saved_residuals

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_saved_residuals(f, x)  # type: ignore[no-untyped-call]
    return sum(1 for line in buf.getvalue().splitlines() if line.strip())


def _jax_device_rows(rows: list[Row], jax: Any, dev: Any) -> None:
    import jax.numpy as jnp
    from jax.test_util import check_grads

    device = f"{dev.platform}:{dev.id}"
    gen = np.random.default_rng(0)
    data = gen.standard_normal((4, 7)) * 2
    cot = gen.standard_normal((4, 7))
    native = {"softmax": jax.nn.softmax, "log_softmax": jax.nn.log_softmax}
    ours = {"softmax": sx.softmax, "log_softmax": sx.log_softmax}

    def add(dtype: str, kernel: str, check: Callable[[], Any]) -> None:
        _run(rows, "jax", device, dtype, kernel, check)

    for name in NAMES:
        f, ref = ours[name], native[name]
        for dname in ("float64", "float32"):

            def grad_check(f: Any = f, ref: Any = ref, dname: str = dname) -> float:
                x, c = jnp.asarray(data, dtype=dname), jnp.asarray(cot, dtype=dname)
                a = jax.jit(jax.grad(lambda x: jnp.sum(f(x) * c)))(x)
                return _rel_error(a, jax.grad(lambda x: jnp.sum(ref(x) * c))(x))

            add(dname, f"{name} grad via jax.jit(jax.grad)", grad_check)

            def jvp_check(f: Any = f, ref: Any = ref, dname: str = dname) -> float:
                x, v = jnp.asarray(data, dtype=dname), jnp.asarray(cot, dtype=dname)
                a = jax.jvp(f, (x,), (v,))[1]
                return _rel_error(a, jax.jvp(ref, (x,), (v,))[1])

            add(dname, f"{name} jvp via jax.jvp", jvp_check)

            def vmap_check(f: Any = f, ref: Any = ref, dname: str = dname) -> float:
                x = jnp.asarray(data, dtype=dname)
                return _rel_error(jax.vmap(jax.jacrev(f))(x), jax.vmap(jax.jacrev(ref))(x))

            add(dname, f"{name} vmap(jacrev)", vmap_check)

        def hessian_check(f: Any = f, ref: Any = ref) -> float:
            x = jnp.asarray(data[0])
            expected = jax.jacrev(jax.jacrev(ref))(x)
            return max(
                _rel_error(outer(inner(f))(x), expected)
                for outer in (jax.jacrev, jax.jacfwd)
                for inner in (jax.jacrev, jax.jacfwd)
            )

        add("float64", f"{name} second derivatives (all 4 mode pairs)", hessian_check)

        def grads_check(f: Any = f) -> bool:
            check_grads(lambda x: f(jnp.asarray(x)), (jnp.asarray(data),), order=2)  # type: ignore[no-untyped-call]
            return True

        add("float64", f"{name} check_grads order 2", grads_check)

        def residual_check(f: Any = f) -> bool:
            return _residual_count(f, jnp.asarray(data, dtype="float32")) == 1

        add("float32", f"{name} saved residuals (only the output)", residual_check)

        def mask_check(f: Any = f) -> bool:
            x = jnp.asarray([36.0, 10000.0])
            where = x < 1000

            def g(x: Any) -> Any:
                return f(x, where=where)

            def first(x: Any) -> Any:
                return g(x)[0]

            ds = [jax.grad(first)(x), jax.jacrev(g)(x)]
            ds += [o(i(g))(x) for o in (jax.jacrev, jax.jacfwd) for i in (jax.jacrev, jax.jacfwd)]
            return all(
                not bool(jnp.any(jnp.isnan(d))) and bool(jnp.all(d[..., 1] == 0)) for d in ds
            )

        add("float64", f"{name} masked huge logit: no NaN, zero gradient", mask_check)

        for half in ("float16", "bfloat16"):

            def half_check(f: Any = f, ref: Any = ref, half: str = half) -> float:
                x, c = jnp.asarray(data, dtype=half), jnp.asarray(cot, dtype=half)
                g = jax.grad(lambda x: jnp.sum(f(x) * c))(x)
                if g.dtype != x.dtype:
                    return math.inf
                x64, c64 = x.astype("float64"), c.astype("float64")
                return _rel_error(g, jax.grad(lambda x: jnp.sum(ref(x) * c64))(x64))

            add(half, f"{name} grad (float32 inside) vs float64", half_check)


def integration_rows() -> list[dict[str, object]]:
    """One row per integration check and installed framework (torch, jax) and device.

    Each row has keys ``backend``, ``device``, ``dtype``, ``kernel``, ``error`` (max relative
    error against the framework's own softmax, or 0/1 for a pass/fail check) and ``passed``.
    """
    rows: list[Row] = []
    if importlib.util.find_spec("torch") is not None:
        rows += _torch_rows()
    if importlib.util.find_spec("jax") is not None:
        rows += _jax_rows()
    return rows
