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
    "as_keepdims",
    "batch_shape",
    "check_label_smoothing",
    "keepdims_shape",
    "labels_fast",
    "prepare_labels",
    "prepare_lse",
    "prepare_weights",
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
    return math.prod([shape[a] for a in axis])


# -- logsumexp and the softmax cross-entropies ------------------------------------------------------
def keepdims_shape(shape: tuple[Any, ...], axis: tuple[int, ...]) -> tuple[Any, ...]:
    """``shape`` with each axis of ``axis`` of size 1 (a per-slice result, keepdims)."""
    return tuple(1 if a in axis else s for a, s in enumerate(shape))


def batch_shape(shape: tuple[Any, ...], axis: tuple[int, ...]) -> tuple[Any, ...]:
    """``shape`` without the axes of ``axis`` (a per-slice result)."""
    return tuple(s for a, s in enumerate(shape) if a not in axis)


def as_keepdims(
    func: str, name: str, xp: Namespace, arr: Array, shape: tuple[Any, ...], axis: tuple[int, ...]
) -> Array:
    """A per-slice array given in the batch shape (or already in the keepdims shape), reshaped
    to the keepdims shape of an input of ``shape``; ``ValueError`` naming ``name`` otherwise."""
    got = _shape(arr)
    keep, batch = keepdims_shape(shape, axis), batch_shape(shape, axis)
    if _same_shape(got, keep):
        return arr
    if not _same_shape(got, batch):
        raise ValueError(
            f"{func}: argument `{name}` must have one entry per slice, shape {batch} (or {keep}), "
            f"got {got}"
        )
    for a in axis:  # expand_dims, in order: the axes are sorted
        arr = xp.expand_dims(arr, axis=a)
    return arr


def check_label_smoothing(func: str, label_smoothing: Any) -> float:
    """A float in ``[0, 1]``, or ``TypeError`` / ``ValueError`` naming the argument."""
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)):
        raise TypeError(
            f"{func}: argument `label_smoothing` must be a Python float in [0, 1], got "
            f"{_describe(label_smoothing)}"
        )
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"{func}: argument `label_smoothing` = {eps!r} is not in [0, 1]")
    return eps


def prepare_lse(
    func: str,
    names: tuple[str, ...],
    arrays: tuple[Array, ...],
    axis: AxisArg,
    where: Array | None,
    xp: Namespace | None,
    *,
    reduced: tuple[str, ...] = (),
) -> Prepared:
    """Validate the arguments of logsumexp and of its derivative kernels: ``arrays[0]`` is the
    input ``x``; the others are floating arrays of its shape, or, where their name is in
    ``reduced``, per-slice arrays (batch or keepdims shape, made keepdims here)."""
    xp = namespace(func, xp, **dict(zip(names, arrays, strict=True)), where=where)
    arrs = tuple(as_array(a) for a in arrays)
    where = as_array(where)
    dts = [_check_dtype(func, n, xp, a) for n, a in zip(names, arrs, strict=True)]
    out_dtype = dts[0]
    for dt in dts[1:]:
        out_dtype = out_dtype if dt == out_dtype else xp.result_type(out_dtype, dt)
    shape = _shape(arrs[0])
    axes = normalize_axis(func, axis, len(shape))
    out: list[Array] = []
    for n, a in zip(names, arrs, strict=True):
        if n in reduced:
            a = as_keepdims(func, n, xp, a, shape, axes)
        elif not _same_shape(_shape(a), shape):
            raise ValueError(
                f"{func}: arguments `{names[0]}` and `{n}` must have the same shape, got "
                f"{shape} and {_shape(a)}"
            )
        out.append(a)
    _check_device(func, (*names, *(("where",) if where is not None else ())),
                  (*arrs, *((where,) if where is not None else ())))  # fmt: skip
    mask = _check_where(func, xp, where, shape, arrs[0])
    work = _work_dtype(xp, out_dtype)
    return Prepared(xp, tuple(_to(xp, a, work) for a in out), axes, mask, out_dtype)


def prepare_weights(func: str, p: Prepared, b: Array) -> Array:
    """``b`` of ``logsumexp(x, b=b)``: an array of the namespace of ``x``, of a real dtype,
    broadcastable to the shape of ``x``; returned broadcast, in the working dtype."""
    xp = p.xp
    namespace(func, None, x=p.arrays[0], b=b)
    b = as_array(b)
    _check_dtype(func, "b", xp, b)
    shape, bshape = _shape(p.arrays[0]), _shape(b)
    if len(bshape) > len(shape) or any(
        not (w == 1 or _same_size(w, s)) for w, s in zip(bshape[::-1], shape[::-1], strict=False)
    ):
        raise ValueError(
            f"{func}: argument `b` with shape {bshape} does not broadcast to the shape of `x`, "
            f"{shape}"
        )
    _check_device(func, ("x", "b"), (p.arrays[0], b))
    b = _to(xp, b, p.arrays[0].dtype)
    return b if bshape == shape else xp.broadcast_to(b, shape)


def prepare_labels(
    func: str,
    x: Array,
    labels: Array,
    axis: AxisArg,
    where: Array | None,
    dtype: Any,
    ignore_index: Any,
    xp: Namespace | None,
) -> tuple[Prepared, Array]:
    """Validate the arguments of the integer-label cross-entropy; ``labels`` comes back in the
    keepdims shape."""
    p = prepare_forward(func, x, axis, where, dtype, xp)
    namespace(func, None, x=p.arrays[0], labels=labels)
    labels = as_array(labels)
    xp = p.xp
    dt = labels.dtype
    try:
        integral = bool(xp.isdtype(dt, "integral"))
    except Exception:
        integral = False
    if not integral:
        raise TypeError(
            f"{func}: argument `labels` must be an array of integer class indices, got dtype {dt}"
        )
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
    ):
        raise TypeError(
            f"{func}: argument `ignore_index` must be an int or None, got {_describe(ignore_index)}"
        )
    _check_device(func, ("x", "labels"), (p.arrays[0], labels))
    return p, as_keepdims(func, "labels", xp, labels, _shape(p.arrays[0]), p.axis)


def _concrete(xp: Namespace, arr: Array) -> bool:
    """Whether reading ``arr``'s values now is cheap and allowed: a NumPy array, a CPU torch
    tensor outside ``torch.compile`` and ``torch.func``, a JAX array that is not a tracer."""
    if array_api_compat.is_numpy_namespace(xp):
        return True
    if array_api_compat.is_torch_namespace(xp):
        import torch

        return bool(
            arr.device.type == "cpu"
            and not torch.compiler.is_compiling()
            and not torch._C._functorch.is_functorch_wrapped_tensor(arr)
        )
    if array_api_compat.is_jax_namespace(xp):
        import jax

        return not isinstance(arr, jax.core.Tracer)
    return False


def check_label_values(func: str, xp: Namespace, labels: Array, c: int, ignore: Any) -> None:
    """Refuse, naming ``labels``, a class index outside ``[0, c)`` (other than ``ignore``).

    The one check here that reads values: only where they are at hand (see :func:`_concrete`);
    elsewhere (under ``jax.jit``, on CUDA, on Dask) such a slice's loss is NaN instead.
    """
    if math.prod(_shape(labels)) == 0 or not _concrete(xp, labels):
        return
    if int(xp.min(labels)) >= 0 and int(xp.max(labels)) < c:
        return  # the common case: two reductions
    bad = xp.logical_or(labels < 0, labels >= c)
    if ignore is not None:
        bad = xp.logical_and(bad, labels != ignore)
    if bool(xp.any(bad)):
        first = int(
            xp.reshape(labels, (-1,))[int(xp.argmax(xp.astype(xp.reshape(bad, (-1,)), xp.int8)))]
        )
        raise ValueError(
            f"{func}: argument `labels` holds class index {first}, outside [0, {c}) for slices "
            f"of {c} classes" + ("" if ignore is None else f" (and not `ignore_index` = {ignore})")
        )


_LABEL_DTYPES = frozenset({"int64", "int32", "torch.int64", "torch.int32"})


def labels_fast(x: Array, labels: Array, axis: int) -> Array | None:
    """The labels of the common integer-label cross-entropy call in the keepdims shape, checked
    as the full path checks them, or None where the full path must decide (and raise): labels of
    the type of ``x`` (a NumPy array or a CPU torch tensor), int32 or int64, of the batch shape,
    on the device of ``x``, every one in ``[0, C)``."""
    kind = type(labels)
    if kind is not type(x) or str(labels.dtype) not in _LABEL_DTYPES:
        return None
    if kind is not np.ndarray and not (kind.__module__ == "torch" and kind.__name__ == "Tensor"):
        return None  # JAX arrays and tracers, and everything else: the full path
    ndim = x.ndim
    if not -ndim <= axis < ndim:
        return None
    a = axis % ndim
    shape = x.shape
    if tuple(labels.shape) != (*shape[:a], *shape[a + 1 :]) or labels.ndim == 0:
        return None
    c = shape[a]
    if isinstance(labels, np.ndarray):
        if not labels.size or not (int(labels.min()) >= 0 and int(labels.max()) < c):
            return None
        return np.expand_dims(labels, a)
    if labels.device != x.device or labels.device.type != "cpu" or not labels.numel():
        return None
    import torch

    if torch.compiler.is_compiling():
        return None
    lo, hi = torch.aminmax(labels)
    if not (int(lo) >= 0 and int(hi) < c):
        return None
    return labels.unsqueeze(a)
