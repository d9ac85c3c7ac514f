"""Layer 1: validation and normalisation, written once and used by every public function.

Everything here is about arguments (namespace, axis, dtype, shapes, masks); nothing here computes.
It never reads array values, so it is safe under ``jax.jit`` tracing and on lazy Dask arrays.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

Array = Any
Namespace = Any
AxisArg = int | tuple[int, ...] | None

__all__ = [
    "Prepared",
    "as_array",
    "has_unknown_sizes",
    "namespace",
    "normalize_axis",
    "prepare_forward",
    "prepare_pair",
    "prepare_single",
    "require_known_sizes",
    "restore_dtype",
]


def _describe(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def as_array(arr: Array) -> Array:
    """A NumPy scalar (``np.float64(2.0)``, ``np.int64(3)``, ...) as the 0-d array it stands for;
    any other value unchanged. docs/semantics.md: NumPy scalars are 0-d NumPy arrays here."""
    return np.asarray(arr) if isinstance(arr, np.generic) else arr


def _check_layout(func: str, name: str, arr: Array) -> None:
    """Refuse sparse torch tensors (COO, CSR, ...): docs/semantics.md says why."""
    layout = getattr(arr, "layout", None)
    if layout is None or not array_api_compat.is_torch_array(arr):
        return
    if str(layout) != "torch.strided":
        raise TypeError(
            f"{func}: argument `{name}` is a sparse torch tensor (layout {layout}); softmax_xp "
            "takes dense (strided) tensors, where every entry is a logit: pass "
            f"`{name}.to_dense()`, or use torch.sparse.softmax to treat the unspecified entries "
            "as masked out"
        )


def namespace(func: str, xp: Namespace | None, /, **arrays: Array | None) -> Namespace:
    """Return the array-API namespace shared by ``arrays`` (``None`` values are skipped).

    Raises ``TypeError`` naming the argument when a value is not an array (Python scalars are
    not; NumPy scalars count as 0-d NumPy arrays), is a sparse torch tensor, or when arrays from
    two different libraries are mixed.
    """
    first_name: str | None = None
    first_ns: Namespace | None = None
    for name, arr in arrays.items():
        if arr is None:
            continue
        arr = as_array(arr)
        if not array_api_compat.is_array_api_obj(arr) or isinstance(
            arr, (bool, int, float, complex)
        ):
            raise TypeError(
                f"{func}: argument `{name}` must be an array of an array-API library "
                f"(NumPy, PyTorch, JAX, CuPy, Dask, ...), got {_describe(arr)}"
            )
        _check_layout(func, name, arr)
        ns = array_api_compat.array_namespace(arr)
        if first_ns is None:
            first_name, first_ns = name, ns
        elif ns is not first_ns:
            raise TypeError(
                f"{func}: arguments `{first_name}` and `{name}` come from different array "
                f"libraries ({first_ns.__name__} and {ns.__name__}); convert one of them first"
            )
    if first_ns is None:  # pragma: no cover - every public function has a required array
        raise TypeError(f"{func}: no array argument given")
    if xp is None or xp is first_ns:
        return first_ns
    if not hasattr(xp, "exp") or not hasattr(xp, "sum"):
        raise TypeError(f"{func}: argument `xp` must be an array-API namespace, got {xp!r}")
    # The library's own module (``numpy``, ``torch``, ``dask.array``) names the same namespace as
    # its array-api-compat wrapper; run with the wrapper, which is the standard-conforming one.
    name = str(getattr(xp, "__name__", ""))
    first = str(first_ns.__name__)
    if name and name in (first, first.removeprefix("array_api_compat.")):
        return first_ns
    raise TypeError(
        f"{func}: argument `xp` = {name or xp!r} is not the namespace of argument `{first_name}` "
        f"({first}); leave `xp` out or pass the arrays' own namespace"
    )


def normalize_axis(func: str, axis: AxisArg, ndim: int) -> tuple[int, ...]:
    """Turn ``axis`` (int, tuple of ints, or None) into a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    items: tuple[Any, ...] = axis if isinstance(axis, tuple) else (axis,)
    out: list[int] = []
    for a in items:
        if isinstance(a, bool):
            raise TypeError(
                f"{func}: argument `axis` must be an int, a tuple of ints or None, got {a!r}"
            )
        try:
            a = operator.index(a)
        except TypeError:
            raise TypeError(
                f"{func}: argument `axis` must be an int, a tuple of ints or None, got {axis!r}"
            ) from None
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{func}: argument `axis` = {axis!r} is out of range for an array with {ndim} "
                f"dimension{'s' if ndim != 1 else ''}"
            )
        a %= ndim
        if a in out:
            raise ValueError(f"{func}: argument `axis` = {axis!r} repeats axis {a}")
        out.append(a)
    if isinstance(axis, tuple) and not out and ndim > 0:
        raise ValueError(
            f"{func}: argument `axis` is an empty tuple; give at least one axis or None"
        )
    return tuple(sorted(out))


def _is_ml_bfloat16(dtype: Any) -> bool:
    """``ml_dtypes.bfloat16`` (the NumPy bfloat16 of JAX, Keras, SciPy); NumPy calls it kind 'V'."""
    if getattr(dtype, "name", None) != "bfloat16" and getattr(dtype, "__name__", None) != (
        "bfloat16"
    ):
        return False
    try:
        import ml_dtypes

        return bool(np.dtype(dtype) == np.dtype(ml_dtypes.bfloat16))
    except Exception:  # ml_dtypes not installed, or not a NumPy dtype at all
        return False


def _is_real_floating(xp: Namespace, dtype: Any) -> bool:
    try:
        if xp.isdtype(dtype, "real floating"):
            return True
    except Exception:
        pass
    return _numpy_dtypes(xp) and _is_ml_bfloat16(dtype)


def _numpy_dtypes(xp: Namespace) -> bool:
    """Namespaces whose dtypes are NumPy dtypes (NumPy itself and Dask)."""
    return bool(array_api_compat.is_numpy_namespace(xp) or array_api_compat.is_dask_namespace(xp))


def _native(dtype: Any) -> Any:
    """A NumPy dtype of non-native byte order (``>f8`` on a little-endian machine) as the native
    dtype of the same kind and precision; any other dtype unchanged."""
    if getattr(dtype, "isnative", True) is False:
        return dtype.newbyteorder("=")
    return dtype


def _is_complex(xp: Namespace, dtype: Any) -> bool:
    try:
        return bool(xp.isdtype(dtype, "complex floating"))
    except Exception:
        return False


def _default_float(xp: Namespace, x: Array) -> Any:
    try:
        info = xp.__array_namespace_info__()
        return info.default_dtypes(device=array_api_compat.device(x))["real floating"]
    except Exception:  # pragma: no cover - namespaces without the inspection API
        return xp.float64


def _work_dtype(xp: Namespace, dtype: Any) -> Any:
    """float32 / float64 (and NumPy's longdouble) compute in themselves; float16 and bfloat16
    in float32."""
    if dtype == xp.float32 or dtype == xp.float64:
        return dtype
    if _numpy_dtypes(xp) and not _is_ml_bfloat16(dtype) and np.dtype(dtype) == np.longdouble:
        return dtype
    return xp.float32


def _check_dtype(func: str, name: str, xp: Namespace, arr: Array) -> Any:
    """Return the output dtype for an input array (promoting integers and bools)."""
    # NumPy (and Dask) arrays of non-native byte order: compute in, and return, the native
    # dtype of the same kind, as NumPy's own ufuncs do (a big-endian float64 stays float64).
    dt = _native(arr.dtype)
    if _is_complex(xp, dt):
        raise TypeError(
            f"{func}: argument `{name}` has complex dtype {dt}; softmax is defined for real input"
        )
    if _is_real_floating(xp, dt):
        return dt
    try:
        promotable = bool(xp.isdtype(dt, ("integral", "bool")))
    except Exception:
        promotable = False
    if promotable:
        return _default_float(xp, arr)
    raise TypeError(f"{func}: argument `{name}` has unsupported dtype {dt}")


def _shape(arr: Array) -> tuple[int, ...]:
    return tuple(arr.shape)


def _known(size: Any) -> bool:
    """False for a size Dask does not know yet (NaN, after boolean indexing) or None."""
    return size is not None and not (isinstance(size, float) and math.isnan(size))


def has_unknown_sizes(shape: tuple[Any, ...]) -> bool:
    """Whether any size of ``shape`` is unknown (Dask's NaN chunks)."""
    return not all(_known(s) for s in shape)


def _same_size(a: Any, b: Any) -> bool:
    """Equal sizes, or at least one unknown (Dask checks those when it computes)."""
    return not (_known(a) and _known(b)) or a == b


def _same_shape(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(_same_size(s, t) for s, t in zip(a, b, strict=True))


@dataclass(frozen=True)
class Prepared:
    """Arguments after validation: arrays cast to the working dtype, the axes, the output dtype."""

    xp: Namespace
    arrays: tuple[Array, ...]
    axis: tuple[int, ...]
    where: Array | None
    out_dtype: Any


def _check_where(
    func: str, xp: Namespace, where: Array | None, shape: tuple[int, ...], like: Array
) -> Array | None:
    if where is None:
        return None
    if where.dtype != xp.bool:
        raise TypeError(
            f"{func}: argument `where` must be a boolean array, got dtype {where.dtype}"
        )
    wshape = _shape(where)
    if len(wshape) > len(shape) or any(
        not (w == 1 or _same_size(w, s)) for w, s in zip(wshape[::-1], shape[::-1], strict=False)
    ):
        raise ValueError(
            f"{func}: argument `where` with shape {wshape} does not broadcast to the input's "
            f"shape {shape}"
        )
    if wshape != shape and not (len(wshape) == len(shape) and _same_shape(wshape, shape)):
        if has_unknown_sizes(shape):  # Dask cannot broadcast_to a NaN size; elementwise ops can
            none = xp.logical_and(xp.isnan(like), xp.asarray(False))  # all False, like's chunks
            return xp.logical_or(where, none)
        where = xp.broadcast_to(where, shape)
    return where


def _check_device(func: str, names: tuple[str, ...], arrays: tuple[Array, ...]) -> None:
    try:
        devices = [array_api_compat.device(a) for a in arrays]
    except Exception:  # tracers and lazy arrays may not expose a device
        return
    if any(d is None for d in devices):  # e.g. a JAX tracer under jit: the device is not known yet
        return
    for name, dev in zip(names[1:], devices[1:], strict=True):
        try:
            same = dev == devices[0]
        except Exception:  # pragma: no cover
            same = True
        if not same:
            raise ValueError(
                f"{func}: argument `{name}` is on device {dev} but `{names[0]}` is on "
                f"{devices[0]}; move them to one device first"
            )


def _to(xp: Namespace, arr: Array, dtype: Any) -> Array:
    return arr if arr.dtype == dtype else xp.astype(arr, dtype)


def prepare_forward(
    func: str, x: Array, axis: AxisArg, where: Array | None, dtype: Any, xp: Namespace | None
) -> Prepared:
    """Validate the arguments of ``softmax`` / ``log_softmax``."""
    xp = namespace(func, xp, x=x, where=where)
    x, where = as_array(x), as_array(where)
    if dtype is not None:
        if _is_complex(xp, dtype):
            raise TypeError(
                f"{func}: argument `dtype` = {dtype} is complex; softmax is defined for real input"
            )
        if not _is_real_floating(xp, dtype):
            raise TypeError(
                f"{func}: argument `dtype` must be a real floating dtype of {xp.__name__}, "
                f"got {dtype!r}"
            )
        _check_dtype(func, "x", xp, x)  # complex input is an error even with dtype=
        # ``dtype=np.dtype('>f8')``: computed in, and returned as, native float64 (as for input)
        out_dtype = _native(np.dtype(dtype)) if _numpy_dtypes(xp) else dtype
    else:
        out_dtype = _check_dtype(func, "x", xp, x)
    axes = normalize_axis(func, axis, x.ndim)
    if where is not None:
        _check_device(func, ("x", "where"), (x, where))
    mask = _check_where(func, xp, where, _shape(x), x)
    return Prepared(xp, (_to(xp, x, _work_dtype(xp, out_dtype)),), axes, mask, out_dtype)


def prepare_single(func: str, name: str, y: Array, axis: AxisArg, xp: Namespace | None) -> Prepared:
    """Validate the arguments of a Jacobian (one forward output)."""
    xp = namespace(func, xp, **{name: y})
    y = as_array(y)
    out_dtype = _check_dtype(func, name, xp, y)
    axes = normalize_axis(func, axis, y.ndim)
    return Prepared(xp, (_to(xp, y, _work_dtype(xp, out_dtype)),), axes, None, out_dtype)


def prepare_pair(
    func: str,
    names: tuple[str, str],
    y: Array,
    v: Array,
    axis: AxisArg,
    where: Array | None,
    xp: Namespace | None,
) -> Prepared:
    """Validate the arguments of a JVP / VJP: a forward output and a same-shaped vector."""
    xp = namespace(func, xp, **{names[0]: y, names[1]: v}, where=where)
    y, v, where = as_array(y), as_array(v), as_array(where)
    dt_y = _check_dtype(func, names[0], xp, y)
    dt_v = _check_dtype(func, names[1], xp, v)
    if not _same_shape(_shape(y), _shape(v)):
        raise ValueError(
            f"{func}: arguments `{names[0]}` and `{names[1]}` must have the same shape, "
            f"got {_shape(y)} and {_shape(v)}"
        )
    if where is None:
        _check_device(func, names, (y, v))
    else:
        _check_device(func, (*names, "where"), (y, v, where))
    out_dtype = dt_y if dt_y == dt_v else xp.result_type(dt_y, dt_v)
    axes = normalize_axis(func, axis, y.ndim)
    mask = _check_where(func, xp, where, _shape(y), y)
    work = _work_dtype(xp, out_dtype)
    return Prepared(xp, (_to(xp, y, work), _to(xp, v, work)), axes, mask, out_dtype)


def restore_dtype(p: Prepared, result: Array) -> Array:
    """Cast a result computed in the working dtype back to the output dtype.

    Narrowing to float16 / bfloat16 can overflow (``log_softmax`` of logits near the float16
    max goes below -65504); the correctly rounded result is then ``-inf``, which the cast gives.
    NumPy warns about it, so NumPy-backed namespaces cast under a local ``errstate``; Dask casts
    later on its own threads, so there values beyond the rounding threshold are made infinite
    before the cast.
    """
    xp = p.xp
    if array_api_compat.is_numpy_namespace(xp) and isinstance(result, np.generic):
        result = np.asarray(result)  # NumPy reduces 0-d input to scalars: hand back 0-d arrays
    if result.dtype == p.out_dtype:
        return result
    if array_api_compat.is_dask_namespace(xp) and _narrows(xp, result.dtype, p.out_dtype):
        info = xp.finfo(p.out_dtype)
        fmax, eps = float(info.max), float(info.eps)
        threshold = fmax + eps * fmax / (2.0 - eps) / 2.0  # max + half an ulp: rounds to inf
        inf = xp.asarray(math.inf, dtype=result.dtype, device=array_api_compat.device(result))
        result = xp.where(result >= threshold, inf, xp.where(result <= -threshold, -inf, result))
    if array_api_compat.is_numpy_namespace(xp) or getattr(xp, "__name__", "") == "array_api_strict":
        with np.errstate(over="ignore"):
            return xp.astype(result, p.out_dtype)
    return xp.astype(result, p.out_dtype)


def _narrows(xp: Namespace, src: Any, dst: Any) -> bool:
    try:
        return bool(xp.finfo(dst).max < xp.finfo(src).max)
    except Exception:  # pragma: no cover - not floating
        return False


def require_known_sizes(func: str, name: str, arr: Array, axis: tuple[int, ...]) -> None:
    """Refuse, naming the argument, a dense Jacobian of an array whose shape Dask does not know
    yet where the layout ``batch + (C, C)`` needs it: along the softmax axes (C itself), or
    anywhere when several softmax axes are flattened into one."""
    shape = _shape(arr)
    if not has_unknown_sizes(shape):
        return
    c_unknown = has_unknown_sizes(tuple(shape[a] for a in axis))
    if c_unknown or len(axis) > 1:
        where = "along the softmax axes" if c_unknown else "while several softmax axes are merged"
        raise ValueError(
            f"{func}: argument `{name}` has unknown sizes {shape} {where} (a Dask array after "
            f"boolean indexing, say); the dense Jacobian's shape depends on them: call "
            f"`{name}.compute_chunk_sizes()` first, or use the products of the Jacobian operator"
        )


def axis_size(shape: tuple[int, ...], axis: tuple[int, ...]) -> int:
    """Number of elements of one softmax slice."""
    return math.prod(shape[a] for a in axis)
