"""Test support: the backends under test, array conversion, tolerances and ``assert_close``.

One ``Backend`` enum drives everything. The environment variable ``SOFTMAX_XP_BACKENDS`` (a comma
separated list of Backend values, set by each nox session) picks the backends a run tests; by
default every installed one is tested. GPU backends skip cleanly where no GPU is present.
"""

from __future__ import annotations

import enum
import functools
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np
import pytest

from softmax_xp import _testing


class Backend(enum.Enum):
    """An array library (and device / execution mode) the suite runs against."""

    ARRAY_API_STRICT = "array_api_strict"
    NUMPY = "numpy"
    NUMPY_READONLY = "numpy_readonly"
    TORCH = "torch"
    TORCH_GPU = "torch_gpu"
    JAX = "jax"
    JAX_JIT = "jax_jit"
    JAX_GPU = "jax_gpu"
    CUPY = "cupy"
    DASK = "dask"

    @property
    def module(self) -> str:
        return {
            "array_api_strict": "array_api_strict",
            "numpy": "numpy",
            "numpy_readonly": "numpy",
            "torch": "torch",
            "torch_gpu": "torch",
            "jax": "jax",
            "jax_jit": "jax",
            "jax_gpu": "jax",
            "cupy": "cupy",
            "dask": "dask",
        }[self.value]

    @property
    def is_gpu(self) -> bool:
        return self in (Backend.TORCH_GPU, Backend.JAX_GPU, Backend.CUPY)

    @property
    def is_torch(self) -> bool:
        return self in (Backend.TORCH, Backend.TORCH_GPU)

    @property
    def is_jax(self) -> bool:
        return self in (Backend.JAX, Backend.JAX_JIT, Backend.JAX_GPU)


def selected_backends() -> list[Backend]:
    """Backends chosen by ``SOFTMAX_XP_BACKENDS`` (default: all whose library is installed)."""
    env = os.environ.get("SOFTMAX_XP_BACKENDS", "").strip()
    if env:
        names = [n.strip() for n in env.split(",") if n.strip()]
        unknown = sorted(set(names) - {b.value for b in Backend})
        if unknown:
            raise ValueError(f"SOFTMAX_XP_BACKENDS names unknown backends: {unknown}")
        return [Backend(n) for n in names]
    return [b for b in Backend if importlib.util.find_spec(b.module) is not None]


def in_session(*frameworks: str) -> bool:
    """True when this run tests a backend of one of ``frameworks`` ("numpy", "torch", "jax", ...).

    Every nox session installs all frameworks (they are each other's references); tests that are
    about one framework rather than parametrized over backends run in that framework's session.
    """
    return any(b.module in frameworks for b in selected_backends())


def _gpu_available(backend: Backend) -> bool:
    if backend is Backend.TORCH_GPU:
        import torch

        return bool(torch.cuda.is_available())
    if backend is Backend.JAX_GPU:
        import jax

        try:
            return len(jax.devices("gpu")) > 0
        except RuntimeError:
            return False
    if backend is Backend.CUPY:
        try:
            import cupy

            return int(cupy.cuda.runtime.getDeviceCount()) > 0
        except Exception:
            return False
    return True


@functools.cache
def _dask_no_compute_scheduler() -> Callable[..., Any]:
    def scheduler(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("softmax_xp triggered a Dask compute by itself")

    return scheduler


@dataclass
class Lib:
    """One backend under test: make arrays on its (non-default where possible) device, call, read."""

    backend: Backend
    xp: Any
    device: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- dtypes -----------------------------------------------------------------------------
    def dtype(self, name: str) -> Any:
        """The backend's dtype called ``name`` (float16, bfloat16, float32, float64, int64, bool)."""
        if name == "bfloat16":
            if self.backend.is_torch:
                import torch

                return torch.bfloat16
            if self.backend.is_jax:
                import jax.numpy as jnp

                return jnp.bfloat16
            pytest.skip(f"{self.backend.value} has no bfloat16")
        dt = getattr(self.xp, name, None)
        if dt is None and self.backend is Backend.DASK:
            dt = getattr(np, name, None)  # dask.array's namespace lacks float16; its chunks don't
        if dt is None:
            pytest.skip(f"{self.backend.value} has no {name}")
        return dt

    def dtype_name(self, dt: Any) -> str:
        s = str(dt)
        for name in ("bfloat16", "float16", "float32", "float64", "int64", "int32", "bool"):
            if name in s:
                return name
        return s

    # -- arrays -----------------------------------------------------------------------------
    def asarray(self, a: Any, dtype: str | None = None) -> Any:
        """A copy of NumPy data ``a`` as an array of this backend (``dtype`` a name)."""
        a = np.asarray(a)
        b = self.backend
        if dtype is not None:
            self.dtype(dtype)  # skips the test where the backend lacks the dtype
        if b in (Backend.NUMPY, Backend.NUMPY_READONLY):
            out = a.astype(dtype) if dtype else a.copy()
            if b is Backend.NUMPY_READONLY:
                out.flags.writeable = False
            return out
        if b is Backend.DASK:
            import dask.array as da

            arr = a.astype(dtype) if dtype else a
            chunks = tuple(max(1, (s + 1) // 2) for s in arr.shape)  # every axis split, C too
            return da.from_array(arr, chunks=chunks)
        if b.is_torch:
            import torch

            t = torch.from_numpy(np.array(a, copy=True))
            if dtype:
                t = t.to(self.dtype(dtype))
            return t.to(self.device)
        if b.is_jax:
            import jax
            import jax.numpy as jnp

            arr = jnp.asarray(a, dtype=self.dtype(dtype) if dtype else None)
            return jax.device_put(arr, self.device)
        # array-api-strict, cupy: the standard way, on the chosen device
        arr = self.xp.asarray(a, device=self.device)
        return self.xp.astype(arr, self.dtype(dtype)) if dtype else arr

    def to_numpy(self, a: Any) -> np.ndarray:
        """Values of a backend array as a float64 (or bool) NumPy array."""
        b = self.backend
        if b.is_torch:
            t = a.detach().cpu()
            if t.dtype.is_floating_point:
                t = t.to(dtype=__import__("torch").float64)
            return t.numpy()
        if b is Backend.DASK:
            a = a.compute()
        if b is Backend.CUPY:
            a = a.get()
        if b.is_jax:
            a = np.asarray(a)
            if a.dtype.kind == "V" or "bfloat16" in str(a.dtype):  # ml_dtypes bfloat16
                a = a.astype(np.float32)
        if b is Backend.ARRAY_API_STRICT:
            a = np.from_dlpack(a)
        a = np.asarray(a)
        return a.astype(np.float64) if a.dtype.kind == "f" else a

    # -- calling ------------------------------------------------------------------------------
    def call(self, fn: Callable[..., Any], *arrays: Any, **kwargs: Any) -> Any:
        """Call ``fn(*arrays, **kwargs)`` as a user of this backend would.

        JAX_JIT wraps it in ``jax.jit`` (keyword arguments static); Dask refuses any compute
        during the call, so our code is shown to stay lazy.
        """
        if self.backend is Backend.JAX_JIT:
            # array-valued keywords (where=) are traced arguments; the rest are static. One jitted
            # function per (fn, static keywords), so a test does not recompile on every call.
            dynamic = {k: v for k, v in kwargs.items() if array_api_compat.is_array_api_obj(v)}
            static = tuple((k, v) for k, v in kwargs.items() if k not in dynamic)
            try:
                key = (fn, static, tuple(dynamic))
                hash(key)
            except TypeError:  # unhashable static argument: no caching
                return _jit(fn, static, tuple(dynamic))(*arrays, **dynamic)
            return _cached_jit(*key)(*arrays, **dynamic)
        if self.backend is Backend.DASK:
            import dask

            with dask.config.set(scheduler=_dask_no_compute_scheduler()):
                return fn(*arrays, **kwargs)
        return fn(*arrays, **kwargs)


def _jit(
    fn: Callable[..., Any], static: tuple[tuple[str, Any], ...], names: tuple[str, ...]
) -> Any:
    import jax

    kw = dict(static)
    return jax.jit(lambda *arrays, **dynamic: fn(*arrays, **kw, **dynamic))


_cached_jit = functools.lru_cache(maxsize=512)(_jit)


def make_lib(backend: Backend) -> Lib:
    """Build a ``Lib`` for ``backend``, skipping the test if it is not installed or has no GPU."""
    pytest.importorskip(backend.module)
    if not _gpu_available(backend):
        pytest.skip(f"{backend.value}: no GPU here")
    b = backend
    if b in (Backend.NUMPY, Backend.NUMPY_READONLY):
        import numpy

        return Lib(b, array_api_compat.array_namespace(numpy.empty(0)), "cpu")
    if b is Backend.ARRAY_API_STRICT:
        import array_api_strict as xs

        # a non-default device, so that device-following is really tested
        return Lib(b, xs, xs.Device("device1"))
    if b is Backend.DASK:
        import dask.array as da

        return Lib(b, array_api_compat.array_namespace(da.empty(0)), "cpu")
    if b.is_torch:
        import torch

        dev = torch.device("cuda") if b is Backend.TORCH_GPU else torch.device("cpu")
        return Lib(b, array_api_compat.array_namespace(torch.empty(0)), dev)
    if b.is_jax:
        import jax

        devs = jax.devices("gpu") if b is Backend.JAX_GPU else jax.devices("cpu")
        # the last device: a non-default one where several exist
        return Lib(b, array_api_compat.array_namespace(jax.numpy.empty(0)), devs[-1])
    if b is Backend.CUPY:
        import cupy

        return Lib(b, array_api_compat.array_namespace(cupy.empty(0)), cupy.cuda.Device(0))
    raise AssertionError(b)  # pragma: no cover


# -- tolerances: set in softmax_xp._testing, with the named ones ----------------------------------
#: (rtol, atol) per result dtype, for comparisons against a float64 (or framework) reference.
TOLERANCES = _testing.TOLERANCES
FD_TOLERANCE = _testing.FD_TOLERANCE


def tolerance(dtype_name: str) -> _testing.Tolerance:
    """The dtype's ``(rtol, atol)``; ``**tolerance(dtype).kw`` passes both as keywords."""
    return TOLERANCES[dtype_name]


def assert_close(
    lib: Lib,
    actual: Any,
    expected: Any,
    *,
    dtype: str | None = None,
    shape: tuple[int, ...] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Check namespace, dtype, shape and device of ``actual``, then its values against ``expected``.

    ``expected`` is NumPy data (a float64 reference); ``dtype`` the expected dtype name of the
    result (default: that of ``expected`` when it is a backend array, else not checked).
    """
    ns = array_api_compat.array_namespace(actual)
    assert ns is lib.xp, f"result namespace {ns.__name__}, expected {lib.xp.__name__}"
    if dtype is not None:
        got = lib.dtype_name(actual.dtype)
        assert got == dtype, f"result dtype {actual.dtype}, expected {dtype}"
    exp = np.asarray(expected)
    want_shape = tuple(shape) if shape is not None else exp.shape
    assert tuple(actual.shape) == want_shape, (
        f"result shape {tuple(actual.shape)}, expected {want_shape}"
    )
    if lib.backend is not Backend.DASK and lib.device is not None:
        dev = array_api_compat.device(actual)
        assert _same_device(lib, dev), f"result on device {dev}, expected {lib.device}"
    r_default, a_default = tolerance(dtype or lib.dtype_name(actual.dtype))
    np.testing.assert_allclose(
        lib.to_numpy(actual),
        exp,
        rtol=r_default if rtol is None else rtol,
        atol=a_default if atol is None else atol,
        equal_nan=True,
    )


def _same_device(lib: Lib, dev: Any) -> bool:
    if lib.backend.is_torch:
        return bool(dev.type == lib.device.type)
    return bool(dev == lib.device) or str(dev) == str(lib.device)
