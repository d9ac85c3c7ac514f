"""The JAX fast paths (jitted XLA, the host C path) against the generic kernel.

See tests/_fastpaths.py for the contract: a fast path agrees with the generic kernel, and
really ran."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat
import numpy as np
import pytest
from _fastpaths import (
    CASES,
    FORWARD,
    JACOBIANS,
    LARGE,
    MASKED_PAIRS,
    PAIRS,
    _assert_agree,
    _data,
    _mask,
    _pair_inputs,
    _scale,
)
from _support import in_session

from softmax_xp import _generic

pytest.importorskip("jax")
pytestmark = pytest.mark.skipif(not in_session("jax"), reason="runs in the jax session")

# -- JAX -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _jax_dtype(dtype: str) -> Iterator[Any]:
    jax = pytest.importorskip("jax")
    with jax.enable_x64(dtype == "float64"):
        yield jax


def _kernel_inputs(
    name: str, shape: tuple[int, ...], axis: tuple[int, ...], seed: int
) -> list[Any]:
    """float64 inputs of kernel ``name``: logits with special values, or forward outputs (and
    tangents / cotangents with special values)."""
    if name in FORWARD:
        return [_data(shape, seed, special=True)]
    pair = _pair_inputs(name, shape, axis, "float64")
    return pair[:1] if name in JACOBIANS else pair


def _run_jax(name: str, arrays: list[Any], axis: tuple[int, ...], where: Any = None) -> Any:
    from softmax_xp._backends import _jax

    xp = array_api_compat.array_namespace(arrays[0])
    kw: dict[str, Any] = {"axis": axis, "xp": xp}
    if where is not None:
        kw["where"] = where
    fast = getattr(_jax, name)(*arrays, **kw)
    ref = getattr(_generic, name)(*arrays, **kw)
    assert fast is not NotImplemented
    return fast, ref


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), CASES)
@pytest.mark.parametrize(
    ("name", "masked"),
    [(n, False) for n in FORWARD + PAIRS + JACOBIANS] + [(n, True) for n in FORWARD + MASKED_PAIRS],
)
def test_jax(
    name: str, shape: tuple[int, ...], axis: tuple[int, ...], masked: bool, dtype: str
) -> None:
    with _jax_dtype(dtype) as jax:
        jnp = jax.numpy
        arrays = _kernel_inputs(name, shape, axis, 30)
        if name in JACOBIANS:
            arrays[0][0, ...] = np.nan
        ja = [jnp.asarray(a, dtype=dtype) for a in arrays]
        w = jnp.asarray(_mask(shape, 31)) if masked else None
        fast, ref = _run_jax(name, ja, axis, w)
        assert fast.dtype == ja[0].dtype
        _assert_agree(np.asarray(fast), np.asarray(ref), dtype, _scale(arrays[1:]))


def _host_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The JAX host path's threshold lowered to 1 MiB (small arrays take it), and the list of
    the kernels it hands to the NumPy/C path from now on (filled as they run)."""
    from softmax_xp._backends import _jax, _numpy

    monkeypatch.setattr(_jax, "_HOST_MIN_BYTES", 1024 * 1024)
    calls: list[str] = []
    run_into = _numpy.run_into

    def spy(kernel: str, *args: Any) -> Any:
        calls.append(kernel)
        return run_into(kernel, *args)

    monkeypatch.setattr(_numpy, "run_into", spy)
    return calls


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("name", "masked"),
    [(n, False) for n in FORWARD + PAIRS + JACOBIANS] + [(n, True) for n in FORWARD + MASKED_PAIRS],
)
def test_jax_large_concrete_arrays_on_the_c_kernels(
    name: str, masked: bool, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concrete CPU arrays with large results run the NumPy/C kernels on zero-copy views and come
    back through DLPack (aligned, on the input's device); under jit the same call runs XLA. The
    size threshold is lowered to 1 MiB here to keep the arrays small."""
    from softmax_xp._backends import _jax, _numpy

    calls = _host_calls(monkeypatch)
    shape, axis = ((24, 160), (1,)) if name in JACOBIANS else ((600, 520), (1,))  # >= 1 MiB results
    with _jax_dtype(dtype) as jax:
        jnp = jax.numpy
        arrays = _kernel_inputs(name, shape, axis, 60)
        ja = [jnp.asarray(a, dtype=dtype) for a in arrays]
        w = jnp.asarray(_mask(shape, 61)) if masked else None
        assert ja[0].nbytes * (shape[1] if name in JACOBIANS else 1) >= _jax._HOST_MIN_BYTES
        fast, ref = _run_jax(name, ja, axis, w)
        narrow = _numpy._rows is not None and _numpy._rows.isa() in _jax._NARROW_LEVELS
        assert calls == ([] if narrow and name in FORWARD else [name])
        assert isinstance(fast, jax.Array)
        assert fast.dtype == ja[0].dtype
        assert fast.devices() == ja[0].devices()
        assert fast.unsafe_buffer_pointer() % 64 == 0
        _assert_agree(np.asarray(fast), np.asarray(ref), dtype, _scale(arrays[1:]))

        calls.clear()
        xp = array_api_compat.array_namespace(ja[0])
        kw: dict[str, Any] = {} if w is None else {"where": w}
        jitted = jax.jit(lambda *a: getattr(_jax, name)(*a, axis=axis, xp=xp, **kw))
        _assert_agree(np.asarray(jitted(*ja)), np.asarray(ref), dtype, _scale(arrays[1:]))
        assert not calls


@pytest.mark.parametrize("name", FORWARD + PAIRS)
def test_jax_host_path_by_level(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the C kernels' 16-byte level (SSE2) the forward kernels stay on XLA, where it was
    measured as fast; the derivative kernels still take the C kernels. At the best level every
    kernel does (where it is wider than 16 bytes)."""
    from softmax_xp._backends import _numpy

    rows = _numpy._rows
    if rows is None or "sse2" not in rows.isa_levels():
        pytest.skip("needs the C kernels' x86-64 SSE2 level")
    calls = _host_calls(monkeypatch)
    with _jax_dtype("float32") as jax:
        arrays = _kernel_inputs(name, (600, 520), (1,), 62)
        ja = [jax.numpy.asarray(a, dtype="float32") for a in arrays]
        for level in rows.isa_levels():
            previous = rows.use_isa(level)
            try:
                calls.clear()
                fast, ref = _run_jax(name, ja, (1,), None)
            finally:
                rows.use_isa(previous)
            narrow = level == "sse2" and name in FORWARD
            assert calls == ([] if narrow else [name]), (level, calls)
            _assert_agree(np.asarray(fast), np.asarray(ref), "float32", _scale(arrays[1:]))


@pytest.mark.parametrize("name", FORWARD + PAIRS + JACOBIANS)
def test_jax_under_transforms(name: str) -> None:
    """jit, vmap and grad of each fast path (traced values) equal the generic kernel's."""
    with _jax_dtype("float64") as jax:
        from softmax_xp._backends import _jax

        jnp = jax.numpy
        shape, axis = (4, 3, 5), (0, 2)
        xp = array_api_compat.array_namespace(jnp.zeros(1))
        base = _pair_inputs(name, shape, axis, "float64")
        if name in FORWARD:
            base = [_data(shape, 32, special=False)]
        n_in = 1 if name in FORWARD + JACOBIANS else 2
        ins = [jnp.asarray(a) for a in base[:n_in]]

        def loss(fn: Callable[..., Any]) -> Callable[..., Any]:
            return lambda *a: jnp.sum(jnp.sin(fn(*a, axis=axis, xp=xp)))

        got = jax.jit(jax.grad(loss(getattr(_jax, name)), argnums=tuple(range(n_in))))(*ins)
        want = jax.grad(loss(getattr(_generic, name)), argnums=tuple(range(n_in)))(*ins)
        for a, b in zip(got, want, strict=True):
            _assert_agree(np.asarray(a), np.asarray(b), "float64")
        batched = jax.vmap(lambda *a: getattr(_jax, name)(*a, axis=(1,), xp=xp))(*ins)
        ref = jax.vmap(lambda *a: getattr(_generic, name)(*a, axis=(1,), xp=xp))(*ins)
        _assert_agree(np.asarray(batched), np.asarray(ref), "float64")


def test_sizes_are_consistent() -> None:
    """The shapes above exercise every NumPy path: short rows, blocks, threads, n-d fallback."""
    from softmax_xp._backends import _numpy

    assert any(
        shape[axis[0]] <= _numpy._SHORT_C and len(axis) == 1 for shape, axis in CASES + LARGE
    )
    assert any(math.prod(shape) * 4 >= _numpy._THREAD_MIN_BYTES for shape, _ in LARGE)
