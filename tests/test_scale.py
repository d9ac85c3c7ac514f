"""Scale: a million classes in O(N·C) memory, float16/bfloat16 accuracy over long rows, and Dask
arrays chunked along every axis (the softmax axis included) staying lazy and chunk-sized."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import numpy as np
import pytest
import scipy.special
from _support import Backend, Lib, assert_close, make_lib, selected_backends, tolerance

import softmax_xp as sx

BIG_C = 2**20


def _torch_ref(kind: str, x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 (JVP, VJP) along the last axis from torch.func on torch.softmax / log_softmax."""
    torch = pytest.importorskip("torch")
    f = torch.softmax if kind == "softmax" else torch.log_softmax
    xt, vt = torch.from_numpy(x), torch.from_numpy(v)
    _, jv = torch.func.jvp(lambda t: f(t, -1), (xt,), (vt,))
    _, vjp_fn = torch.func.vjp(lambda t: f(t, -1), xt)
    return jv.numpy(), vjp_fn(vt)[0].numpy()


# -- a million classes ---------------------------------------------------------------------------


def test_big_c_kernels_and_operator(lib: Lib) -> None:
    """forward, JVP, VJP and the operator at C = 2**20 (a dense Jacobian would be 8 TiB)."""
    rng = np.random.default_rng(0)
    x_np = rng.normal(size=(2, BIG_C)).astype(np.float32).astype(np.float64)
    v_np = rng.normal(size=(2, BIG_C)).astype(np.float32).astype(np.float64)
    x, v = lib.asarray(x_np, "float32"), lib.asarray(v_np, "float32")

    y = lib.call(sx.softmax, x)
    assert_close(lib, y, scipy.special.softmax(x_np, axis=-1), dtype="float32")
    l = lib.call(sx.log_softmax, x)
    assert_close(lib, l, scipy.special.log_softmax(x_np, axis=-1), dtype="float32")

    for kind, out in (("softmax", y), ("log_softmax", l)):
        jv, vj = _torch_ref(kind, x_np, v_np)
        jvp = sx.softmax_jvp if kind == "softmax" else sx.log_softmax_jvp
        vjp = sx.softmax_vjp if kind == "softmax" else sx.log_softmax_vjp
        op = sx.SoftmaxJacobian if kind == "softmax" else sx.LogSoftmaxJacobian
        assert_close(lib, lib.call(jvp, out, v), jv, dtype="float32")
        assert_close(lib, lib.call(vjp, out, v), vj, dtype="float32")
        assert_close(
            lib, lib.call(lambda a, b, op=op: op(a).matvec(b), out, v), jv, dtype="float32"
        )
        assert_close(
            lib, lib.call(lambda a, b, op=op: op(a).rmatvec(b), out, v), vj, dtype="float32"
        )
        # solve undoes matvec on the tangent space; J v is in the range by construction
        x_back = lib.call(
            lambda a, b, op=op: op(a).matvec(op(a).solve(b)), out, lib.asarray(jv, "float32")
        )
        assert_close(lib, x_back, jv, dtype="float32")

    op = sx.SoftmaxJacobian(y)
    assert op.shape == (2, BIG_C, BIG_C)
    y64 = scipy.special.softmax(x_np, axis=-1)
    assert_close(
        lib,
        lib.call(lambda a: sx.SoftmaxJacobian(a).trace(), y),
        1 - (y64**2).sum(-1),
        dtype="float32",
    )


@pytest.mark.skipif(
    Backend.NUMPY not in selected_backends(),
    reason="a NumPy check (tracemalloc sees NumPy's buffers)",
)
def test_big_c_memory_is_linear_in_c() -> None:
    """NumPy: every operation at C = 2**20 allocates a small multiple of one row batch (N·C)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, BIG_C)).astype(np.float32)
    v = rng.normal(size=(2, BIG_C)).astype(np.float32)
    row_bytes = x.nbytes  # N·C·4 = 8 MiB; one dense (C, C) slice would be 4 TiB
    y = sx.softmax(x)
    l = sx.log_softmax(x)
    ops = [
        lambda: sx.softmax(x),
        lambda: sx.log_softmax(x),
        lambda: sx.softmax_jvp(y, v),
        lambda: sx.softmax_vjp(y, v),
        lambda: sx.log_softmax_jvp(l, v),
        lambda: sx.log_softmax_vjp(l, v),
        lambda: sx.SoftmaxJacobian(y).matvec(v),
        lambda: sx.SoftmaxJacobian(y).solve(v),
        lambda: sx.SoftmaxJacobian(y).diagonal(),
        lambda: sx.SoftmaxJacobian(y).trace(),
        lambda: sx.LogSoftmaxJacobian(l).rmatvec(v),
        lambda: sx.LogSoftmaxJacobian(l).solve(v),
    ]
    for i, f in enumerate(ops):
        tracemalloc.start()
        try:
            f()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # the solve holds a handful of float32 temporaries and a boolean mask: well under 16 rows
        assert peak < 16 * row_bytes, (
            f"operation {i} peaked at {peak / row_bytes:.1f} x N·C·4 bytes"
        )


# -- float16 / bfloat16 over long rows ---------------------------------------------------------


def test_naive_float16_sum_saturates() -> None:
    """Why float32 accumulation is needed: a float16 running sum of ones stops at 2048 (2048 + 1
    rounds back to 2048), and the true sum 2**20 is not even representable (float16 max 65504)."""
    ones = np.ones(BIG_C, dtype=np.float16)
    running = np.cumsum(ones, dtype=np.float16)
    assert running[-1] == 2048
    with np.errstate(over="ignore"):
        assert np.isinf(np.sum(ones, dtype=np.float16))
    assert np.sum(ones, dtype=np.float32) == BIG_C


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_long_rows_sum_to_one(lib: Lib, dtype: str) -> None:
    lib.dtype(dtype)  # skips backends without it
    # a long row of equal logits: each probability 2**-20, which float16 holds (as a subnormal)
    x = lib.asarray(np.zeros((2, BIG_C)), dtype)
    y = lib.call(sx.softmax, x)
    assert lib.dtype_name(y.dtype) == dtype
    y_np = lib.to_numpy(y)
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(y_np.sum(axis=-1), 1.0, rtol=rtol, atol=atol)
    np.testing.assert_allclose(y_np, 2.0**-20, rtol=rtol)  # not 1/2048 (a saturated denominator)
    # one large logit among a million equal ones: its probability is a normal float16 number
    x_np = np.zeros((2, BIG_C))
    x_np[:, 7] = 12.0
    y = lib.call(sx.softmax, lib.asarray(x_np, dtype))
    y_np = lib.to_numpy(y)
    np.testing.assert_allclose(
        y_np[:, 7], scipy.special.softmax(x_np, axis=-1)[:, 7], rtol=rtol, atol=atol
    )
    # (the other 2**20 - 1 entries, about 8e-7 each, are float16 subnormals with a few bits: their
    # rounding, not the accumulation, decides how close their sum is to 1, so no check on it here)
    l = lib.call(sx.log_softmax, lib.asarray(x_np, dtype))
    np.testing.assert_allclose(
        lib.to_numpy(l)[:, :9],
        scipy.special.log_softmax(x_np, axis=-1)[:, :9],
        rtol=rtol,
        atol=atol,
    )
    # the VJP of a one-hot cotangent at the large entry: y_7 (e_7 - y), again normal numbers there
    g_np = np.zeros((2, BIG_C))
    g_np[:, 7] = 1.0
    _, vj = _torch_ref("softmax", x_np, g_np)
    out = lib.to_numpy(lib.call(sx.softmax_vjp, y, lib.asarray(g_np, dtype)))
    np.testing.assert_allclose(out[:, 7], vj[:, 7], rtol=rtol, atol=atol)


# -- Dask: chunked along every axis, lazy, chunk-sized --------------------------------------------

DASK_CASES = [
    # shape, chunks, axis
    ((6, 64), (2, 8), -1),  # the softmax axis split in 8 chunks
    ((64, 6), (8, 3), 0),
    ((4, 6, 10), (2, 3, 4), (0, 2)),  # a tuple of axes, each chunked
    ((8, 12), (3, 5), None),  # all axes, ragged chunks
]


def _dask_lib() -> Lib:
    if Backend.DASK not in selected_backends():
        pytest.skip("Dask runs in the sessions that test the dask backend")
    pytest.importorskip("dask.array")
    return make_lib(Backend.DASK)


def _public_calls(axis: Any, where: Any) -> dict[str, Any]:
    return {
        "softmax": lambda x, v: sx.softmax(x, axis=axis),
        "softmax_where": lambda x, v: sx.softmax(x, axis=axis, where=where(x)),
        "log_softmax": lambda x, v: sx.log_softmax(x, axis=axis),
        "log_softmax_where": lambda x, v: sx.log_softmax(x, axis=axis, where=where(x)),
        "softmax_jvp": lambda x, v: sx.softmax_jvp(sx.softmax(x, axis=axis), v, axis=axis),
        "softmax_vjp": lambda x, v: sx.softmax_vjp(sx.softmax(x, axis=axis), v, axis=axis),
        "log_softmax_jvp": lambda x, v: sx.log_softmax_jvp(
            sx.log_softmax(x, axis=axis), v, axis=axis
        ),
        "log_softmax_vjp": lambda x, v: sx.log_softmax_vjp(
            sx.log_softmax(x, axis=axis), v, axis=axis
        ),
        "softmax_jacobian": lambda x, v: sx.softmax_jacobian(sx.softmax(x, axis=axis), axis=axis),
        "log_softmax_jacobian": lambda x, v: sx.log_softmax_jacobian(
            sx.log_softmax(x, axis=axis), axis=axis
        ),
        "op_matvec": lambda x, v: sx.SoftmaxJacobian(sx.softmax(x, axis=axis), axis=axis).matvec(v),
        "op_solve": lambda x, v: sx.SoftmaxJacobian(sx.softmax(x, axis=axis), axis=axis).solve(v),
        "op_diagonal": lambda x, v: sx.SoftmaxJacobian(
            sx.softmax(x, axis=axis), axis=axis
        ).diagonal(),
        "op_trace": lambda x, v: sx.SoftmaxJacobian(sx.softmax(x, axis=axis), axis=axis).trace(),
        "logop_rmatvec": lambda x, v: sx.LogSoftmaxJacobian(
            sx.log_softmax(x, axis=axis), axis=axis
        ).rmatvec(v),
        "logop_solve": lambda x, v: sx.LogSoftmaxJacobian(
            sx.log_softmax(x, axis=axis), axis=axis
        ).solve(v),
    }


def _mask(x: Any) -> Any:
    """A mask that keeps about 3/4 of the entries (computed lazily from x's own values)."""
    return x > -0.7


@pytest.mark.parametrize(
    ("shape", "chunks", "axis"), DASK_CASES, ids=["last", "first", "tuple", "none"]
)
def test_dask_is_lazy_chunked_and_matches_numpy(shape: Any, chunks: Any, axis: Any) -> None:
    import dask
    import dask.array as da
    from dask.callbacks import Callback

    lib = _dask_lib()
    rng = np.random.default_rng(2)
    x_np, v_np = rng.normal(size=shape), rng.normal(size=shape)
    x, v = da.from_array(x_np, chunks=chunks), da.from_array(v_np, chunks=chunks)
    chunk_elems = math.prod(chunks)

    class Largest(Callback):  # the largest array any task of the graph produces
        def __init__(self) -> None:
            super().__init__()
            self.largest = 0

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
            name = key[0] if isinstance(key, tuple) else str(key)
            # skip from_array's embedded inputs and the final concatenation of the result
            if result is not x_np and result is not v_np and not name.startswith("finalize"):
                self.largest = max(self.largest, int(getattr(result, "size", 0)))

    for name, f in _public_calls(axis, _mask).items():
        out = lib.call(f, x, v)  # refuses any compute during the call
        assert isinstance(out, da.Array), name
        expected = f(x_np, v_np)  # the same call on NumPy arrays
        if not name.endswith("jacobian"):
            assert out.shape == expected.shape
            if out.ndim == x.ndim:
                assert out.chunks == x.chunks, f"{name}: rechunked from {x.chunks} to {out.chunks}"
            with Largest() as probe, dask.config.set(scheduler="sync"):
                got = out.compute()
            # no task ever holds more than one input chunk: the softmax axis is never gathered
            assert probe.largest <= chunk_elems, (
                f"{name}: a task made {probe.largest} > {chunk_elems}"
            )
        else:
            got = out.compute(scheduler="sync")
        np.testing.assert_allclose(got, expected, *tolerance("float64"), err_msg=name)
        # and NumPy itself against the float64 reference, for the forward functions
        if name == "softmax":
            np.testing.assert_allclose(
                got, scipy.special.softmax(x_np, axis=axis), *tolerance("float64"), err_msg=name
            )
