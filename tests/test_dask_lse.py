"""The Dask fast paths of logsumexp and the softmax cross-entropies (and their derivative
kernels) against the generic kernels on the same NumPy data, for class axes whole in one chunk
and split over several (tuple axes too), masks, float32 and float64, and edge rows (NaN,
``+inf``, only ``-inf``, all masked, finite logits whose span overflows ``x - max``); no
floating-point warning at compute, no compute during the call, and the graph the fast path
builds (its task names, tasks per block, the tree of the log-sum-exp reduction)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import array_api_compat.numpy as np_xp
import numpy as np
import pytest
from _support import Backend, Lib, in_session, make_lib

import softmax_xp as sx
from softmax_xp import _generic
from softmax_xp._backends import call
from softmax_xp._testing import TOLERANCES

pytestmark = pytest.mark.skipif(not in_session("dask"), reason="runs in the dask session")

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

Axes = tuple[int, ...]


@pytest.fixture
def lib() -> Lib:
    return make_lib(Backend.DASK)


# -- data: rows (N, C) with edge rows, laid out over the class axes -------------------------------

IGNORE = -1  # the ignore_index used where one is given


def _layout(shape: tuple[int, ...], axes: Axes) -> tuple[int, int, list[int]]:
    batch = [i for i in range(len(shape)) if i not in axes]
    n = math.prod(shape[i] for i in batch)
    c = math.prod(shape[a] for a in axes)
    return n, c, batch + list(axes)


def _from_rows(rows: np.ndarray, shape: tuple[int, ...], axes: Axes) -> np.ndarray:
    """Rows ``(N, C)`` (or ``(N, 1)``, one number per slice) as an array of ``shape`` (or its
    keepdims shape): row i is the i-th slice in C order, its entries in the C order of the
    class axes (the flat index that labels use)."""
    _, _, order = _layout(shape, axes)
    per_slice = rows.shape[1] == 1
    dims = [1 if per_slice and i in axes else shape[i] for i in order]
    return np.transpose(rows.reshape(dims), [order.index(i) for i in range(len(shape))])


def _data(shape: tuple[int, ...], axes: Axes, dtype: str) -> dict[str, np.ndarray]:
    """Inputs of every kernel, with these rows (slices):

    0 finite, its label on a masked-out class; 1 a NaN; 2 a ``+inf``; 3 only ``-inf``;
    4 one finite logit, the rest ``-inf`` (zero targets there); 5 ``-fmax`` and ``fmax``
    (``x - max`` overflows); 6 a NaN that is masked out; 7 all masked; 8 ``+inf`` and ``-inf``;
    9 two ``+inf`` with weights of opposite sign, label ``IGNORE``; 10 label ``C`` (out of
    range); the rest finite.
    """
    n, c, _ = _layout(shape, axes)
    assert n >= 11
    assert c >= 6
    rng = np.random.default_rng(3)
    fmax = float(np.finfo(dtype).max)
    x = rng.normal(scale=2.0, size=(n, c))
    x[1, c // 2] = np.nan
    x[2, c - 1] = np.inf
    x[3] = -np.inf
    x[4] = -np.inf
    x[4, c // 3] = 3.0
    x[5, 0], x[5, c - 1] = -fmax, fmax
    x[6, 1] = np.nan
    x[8, 0], x[8, c - 1] = np.inf, -np.inf
    x[9, 2], x[9, c - 2] = np.inf, np.inf

    labels = rng.integers(0, c, size=(n, 1))
    labels[0] = 2
    labels[9] = IGNORE
    labels[10] = c

    w = rng.random((n, c)) < 0.8
    w[0, 2] = False  # row 0's labelled class
    w[6, 1] = False  # the NaN
    w[7] = False
    w[[2, 8, 9], :] = True  # the +inf entries take part
    w[5, [0, c - 1]] = True

    t = rng.random((n, c))
    t[0, :2] = 0.0
    t[4, x[4] == -np.inf] = 0.0
    t /= t.sum(axis=1, keepdims=True)

    b = rng.normal(size=(n, c))
    b[rng.random((n, c)) < 0.3] = 0.0
    b[2, c - 1] = 1.5
    b[8, 0] = 0.0  # the +inf takes no part
    b[9, 2], b[9, c - 2] = 1.0, -1.0  # weights at +inf sum to 0

    v = rng.normal(size=(n, c))
    u = rng.normal(size=(n, c))
    u[5] = 0.0  # no overflowing sums of finite products on row 5: only u * inf at -fmax
    u[5, 0] = 1.0
    g = rng.normal(size=(n, 1))
    h = rng.normal(size=(n, 1))

    out = {}
    for name, a in {"x": x, "t": t, "b": b, "v": v, "u": u, "g": g, "h": h}.items():
        out[name] = _from_rows(a.astype(dtype), shape, axes)
    out["w"] = _from_rows(w, shape, axes)
    out["labels"] = _from_rows(labels, shape, axes)
    return out


# shape, class axes, chunkings (whole class axes first, then several ways of splitting them)
CASES_2D = [
    ((11, 12), (1,), [(11, 12), (4, 12), (11, 5), (4, 4), ((5, 6), (1, 3, 8)), (3, 1)]),
    ((12, 11), (0,), [(12, 4), (5, 3)]),
    ((3, 11, 5), (0, 2), [(3, 4, 5), (2, 11, 5), (3, 6, 2), (1, 4, 2)]),
    ((11, 3, 6), (1, 2), [(4, 3, 6), (11, 2, 6), (5, 3, 4), (11, 1, 1)]),
]
CASES = [(shape, axes, chunks) for shape, axes, cs in CASES_2D for chunks in cs]


def _split(shape: tuple[int, ...], chunks: Any, axes: Axes) -> bool:
    normal = da.core.normalize_chunks(chunks, shape)
    return any(len(normal[a]) > 1 for a in axes)


def _calls(
    d: dict[str, np.ndarray], lse: np.ndarray, masked: bool, eps: float
) -> list[tuple[str, str, list[Any], dict[str, Any]]]:
    """(label, kernel, arguments, options) for every kernel."""
    x, t, b, v, u, g, h, lab = (d[k] for k in ("x", "t", "b", "v", "u", "g", "h", "labels"))
    ce = {"label_smoothing": eps}
    out: list[tuple[str, str, list[Any], dict[str, Any]]] = [
        ("logsumexp", "logsumexp", [x], {}),
        ("logsumexp_jvp", "logsumexp_jvp", [x, lse, v], {}),
        ("logsumexp_vjp", "logsumexp_vjp", [x, lse, g], {}),
        ("logsumexp_weighted", "logsumexp_weighted", [x, None], {}),
        ("logsumexp_weighted b", "logsumexp_weighted", [x, b], {}),
        ("sce", "softmax_cross_entropy", [x, t], ce),
        ("sce_jvp", "softmax_cross_entropy_jvp", [x, t, lse, v, u], ce),
        ("sce_jvp u=None", "softmax_cross_entropy_jvp", [x, t, lse, v, None], ce),
        ("sce_vjp", "softmax_cross_entropy_vjp", [x, t, lse, g, h], ce),
    ]
    for ignore in (None, IGNORE):
        kw = {"label_smoothing": eps, "ignore_index": ignore}
        name = "softmax_cross_entropy_with_integer_labels"
        out += [
            (f"labels ignore={ignore}", name, [x, lab], kw),
            (f"labels_jvp ignore={ignore}", f"{name}_jvp", [x, lab, lse, v], kw),
            (f"labels_vjp ignore={ignore}", f"{name}_vjp", [x, lab, lse, g, h], kw),
        ]
    return out


def _key_names(outs: tuple[Any, ...]) -> set[str]:
    """The task names (keys without their token) of the outputs' graphs."""
    names = set()
    for o in outs:
        for k in dict(o.__dask_graph__()):
            names.add(str(k[0] if isinstance(k, tuple) else k).rsplit("-", 1)[0])
    return names


def _fast_path_names(name: str, args: list[Any], split: bool) -> list[str]:
    """Task names that only the fast path of kernel ``name`` gives its graph."""
    if name == "logsumexp_weighted" and args[1] is None and split:
        return ["logsumexp-aggregate", "logsumexp_weighted-sign"]
    if name == "logsumexp":
        return ["logsumexp-aggregate" if split else "logsumexp"]
    if name == "logsumexp_vjp" or not split:
        return [name]
    if name == "logsumexp_jvp":
        return [name, f"{name}-sum-aggregate"]
    forward = ("logsumexp_weighted", "softmax_cross_entropy", f"{_LABELS}")
    lse = ["logsumexp-aggregate"] if name in forward else []
    return [*lse, name if name.endswith("_vjp") else f"{name}-parts", f"{name}-sum-aggregate"]


_LABELS = "softmax_cross_entropy_with_integer_labels"


def _as_tuple(out: Any) -> tuple[Any, ...]:
    return out if isinstance(out, tuple) else (out,)


def _compute_quietly(outs: tuple[Any, ...], scheduler: str = "sync") -> tuple[Any, ...]:
    """Compute, with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return tuple(dask.compute(*outs, scheduler=scheduler))


@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "where"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("shape", "axes", "chunks"), CASES)
def test_kernels_match_the_generic_kernels(
    lib: Lib,
    shape: tuple[int, ...],
    axes: Axes,
    chunks: Any,
    dtype: str,
    masked: bool,
    eps: float,
) -> None:
    d = _data(shape, axes, dtype)
    wn = d["w"] if masked else None
    lse = _generic.logsumexp(d["x"], axis=axes, where=wn, xp=np_xp)
    # the mask with chunks of its own (rechunked by the fast path); per-slice operands whole
    w = None if wn is None else da.from_array(wn, chunks=tuple(max(1, s // 2) for s in shape))
    split = _split(shape, chunks, axes)
    tol = TOLERANCES[dtype]
    for label, name, args, kw in _calls(d, lse, masked, eps):
        expected = _as_tuple(getattr(_generic, name)(*args, axis=axes, where=wn, xp=np_xp, **kw))
        dargs = [
            None if a is None else da.from_array(a, chunks=chunks if a.shape == shape else a.shape)
            for a in args
        ]
        # no compute during the call (the scheduler refuses); the dispatch picks the fast path
        outs = _as_tuple(lib.call(call, name, *dargs, axis=axes, where=w, xp=lib.xp, **kw))
        assert len(outs) == len(expected), label
        names = _key_names(outs)
        for want in _fast_path_names(name, args, split):
            assert want in names, f"{label}: no task {want!r} in {sorted(names)}"
        for o, e in zip(outs, expected, strict=True):
            assert isinstance(o, da.Array), label
            assert type(o._meta) is np.ndarray, label
            assert o._meta.ndim == e.ndim, label
            assert o.dtype == e.dtype == np.dtype(dtype), label
            assert o.shape == e.shape, label
        got = _compute_quietly(outs)  # no floating-point warning at compute
        for i, (o, e) in enumerate(zip(got, expected, strict=True)):
            np.testing.assert_allclose(
                o, e, **tol.kw, equal_nan=True, err_msg=f"{label} output {i} {chunks}"
            )


def test_the_generic_kernel_warns_on_dask(lib: Lib) -> None:
    """The control for the check above: on Dask, the generic kernel warns at compute on an
    edge row (``log(0)`` for a row of only ``-inf``); the fast path does not."""
    d = _data((11, 12), (1,), "float64")
    x = da.from_array(d["x"], chunks=(4, 5))
    generic = _generic.logsumexp(x, axis=(1,), xp=lib.xp)
    with pytest.raises(RuntimeWarning):
        _compute_quietly((generic,))
    ours = lib.call(call, "logsumexp", x, axis=(1,), where=None, xp=lib.xp)
    np.testing.assert_allclose(
        _compute_quietly((ours,))[0],
        _generic.logsumexp(d["x"], axis=(1,), xp=np_xp),
        **TOLERANCES["float64"].kw,
        equal_nan=True,
    )


def test_threaded_compute_is_quiet_and_matches(lib: Lib) -> None:
    """The block functions silence warnings in the worker threads themselves."""
    d = _data((11, 12), (1,), "float32")
    lse = _generic.logsumexp(d["x"], axis=(1,), xp=np_xp)
    for chunks in [(4, 12), (4, 5)]:
        x, t = (da.from_array(d[k], chunks=chunks) for k in ("x", "t"))
        for name, args in [
            ("logsumexp", [x]),
            ("softmax_cross_entropy", [x, t]),
            ("softmax_cross_entropy_vjp", [x, t, lse, d["g"], d["h"]]),
        ]:
            dargs = [a if isinstance(a, da.Array) else da.from_array(a) for a in args]
            nargs = [d["x"], d["t"], lse, d["g"], d["h"]][: len(args)]
            outs = _as_tuple(lib.call(call, name, *dargs, axis=(1,), where=None, xp=lib.xp))
            got = _compute_quietly(outs, scheduler="threads")
            expected = _as_tuple(getattr(_generic, name)(*nargs, axis=(1,), xp=np_xp))
            for o, e in zip(got, expected, strict=True):
                np.testing.assert_allclose(
                    o, e, **TOLERANCES["float32"].kw, equal_nan=True, err_msg=name
                )


# -- the public functions on Dask arrays ----------------------------------------------------------

Fn = Callable[..., Any]


def _public(axis: Any) -> dict[str, Fn]:
    """Public calls as ``f(arrays)``, on NumPy or Dask data alike (labels in range or ignored:
    NumPy refuses others)."""
    return {
        "logsumexp": lambda a: sx.logsumexp(a["x"], axis=axis),
        "logsumexp where": lambda a: sx.logsumexp(a["x"], axis=axis, where=a["w"]),
        "logsumexp keepdims": lambda a: sx.logsumexp(a["x"], axis=axis, keepdims=True),
        "logsumexp b": lambda a: sx.logsumexp(a["x"], axis=axis, b=a["b"]),
        "logsumexp sign": lambda a: sx.logsumexp(a["x"], axis=axis, b=a["b"], return_sign=True),
        "logsumexp_jvp": lambda a: sx.logsumexp_jvp(a["x"], a["lse"], a["v"], axis=axis),
        "logsumexp_vjp": lambda a: sx.logsumexp_vjp(
            a["x"], a["lse"], a["g"], axis=axis, where=a["w"]
        ),
        "sce": lambda a: sx.softmax_cross_entropy(a["x"], a["t"], axis=axis),
        "sce where smoothed": lambda a: sx.softmax_cross_entropy(
            a["x"], a["t"], axis=axis, where=a["w"], label_smoothing=0.1
        ),
        "labels": lambda a: sx.softmax_cross_entropy_with_integer_labels(
            a["x"], a["labels"], axis=axis, ignore_index=IGNORE
        ),
        "labels where smoothed": lambda a: sx.softmax_cross_entropy_with_integer_labels(
            a["x"], a["labels"], axis=axis, where=a["w"], label_smoothing=0.1,
            ignore_index=IGNORE,
        ),
    }  # fmt: skip


@pytest.mark.parametrize("chunks", [(4, 12), (4, 5), (11, 1)])
def test_public_functions_reach_the_fast_paths(lib: Lib, chunks: tuple[int, int]) -> None:
    shape, axes = (11, 12), (1,)
    d = _data(shape, axes, "float64")
    d["labels"][10] = 0  # in range: NumPy refuses out-of-range labels
    d["lse"] = sx.logsumexp(d["x"], axis=-1)
    d["g"] = d["g"][:, 0]
    ours = {k: da.from_array(a, chunks=chunks if a.shape == shape else -1) for k, a in d.items()}
    for label, f in _public(-1).items():
        outs = _as_tuple(lib.call(f, ours))  # no compute during the call
        expected = _as_tuple(f(d))
        names = _key_names(outs)
        assert any(n.startswith(("logsumexp", "softmax_cross_entropy")) for n in names), (
            f"{label}: the fast path did not run ({sorted(names)})"
        )
        got = _compute_quietly(outs)  # no warning, even on the edge rows
        for o, e in zip(got, expected, strict=True):
            assert o.shape == e.shape, label
            np.testing.assert_allclose(
                o, e, **TOLERANCES["float64"].kw, equal_nan=True, err_msg=label
            )


# -- the graph ------------------------------------------------------------------------------------


def _new_tasks(outs: tuple[Any, ...], *inputs: Any) -> int:
    known: set[Any] = set()
    for a in inputs:
        known |= set(dict(a.__dask_graph__()))
    keys: set[Any] = set()
    for o in outs:
        keys |= set(dict(o.__dask_graph__()))
    return len(keys - known)


def test_one_task_per_block_when_the_class_axis_is_whole(lib: Lib) -> None:
    """One task per block, plus one per block and output for the tuple-valued kernels."""
    d = _data((12, 16), (1,), "float32")
    lse = _generic.logsumexp(d["x"], axis=(1,), xp=np_xp)
    ops = {k: da.from_array(a, chunks=(3, 16)) for k, a in d.items()}
    ops["lse"] = da.from_array(lse, chunks=(3, 1))
    ops["g"] = da.from_array(d["g"], chunks=(3, 1))
    ops["h"] = da.from_array(d["h"], chunks=(3, 1))
    ops["labels"] = da.from_array(d["labels"], chunks=(3, 1))
    blocks = 4
    for name, args in [
        ("logsumexp", ["x"]),
        ("logsumexp_jvp", ["x", "lse", "v"]),
        ("logsumexp_vjp", ["x", "lse", "g"]),
        ("logsumexp_weighted", ["x", "b"]),
        ("softmax_cross_entropy", ["x", "t"]),
        ("softmax_cross_entropy_jvp", ["x", "t", "lse", "v", "u"]),
        ("softmax_cross_entropy_vjp", ["x", "t", "lse", "g", "h"]),
        (_LABELS, ["x", "labels"]),
        (f"{_LABELS}_jvp", ["x", "labels", "lse", "v"]),
        (f"{_LABELS}_vjp", ["x", "labels", "lse", "g", "h"]),
    ]:
        inputs = [ops[k] for k in args]
        outs = _as_tuple(lib.call(call, name, *inputs, axis=(1,), where=ops["w"], xp=lib.xp))
        per_block = 1 if len(outs) == 1 else 1 + len(outs)
        assert _new_tasks(outs, *inputs, ops["w"]) == per_block * blocks, name


def _tree_tasks(n: int, split_every: int) -> int:
    """Combining tasks over ``n`` partials, as dask.array.reduction builds them."""
    depth = max(1, math.ceil(math.log(n, split_every))) if n > 1 else 1
    tasks = 0
    for _ in range(depth):
        n = math.ceil(n / split_every)
        tasks += n
    return tasks


@pytest.mark.parametrize("split_every", [2, 4, 8])
def test_logsumexp_is_one_task_per_block_and_a_tree(lib: Lib, split_every: int) -> None:
    """A split class axis: one task per block reads the block (once: no other task reads it),
    then a tree per row of blocks with at most ``split_every`` partials per task."""
    from dask.core import get_dependencies

    xn = _data((12, 64), (1,), "float64")["x"]
    x = da.from_array(xn, chunks=(3, 8))
    rows, cols = x.numblocks
    with dask.config.set(split_every=split_every):
        out = lib.call(call, "logsumexp", x, axis=(1,), where=None, xp=lib.xp)
    assert out.chunks == ((3, 3, 3, 3), (1,))
    assert _new_tasks((out,), x) == rows * cols + rows * _tree_tasks(cols, split_every)
    graph = dict(out.__dask_graph__())
    inputs = set(dict(x.__dask_graph__()))
    readers: dict[Any, int] = dict.fromkeys(inputs, 0)
    for key, task in graph.items():
        if key in inputs:
            continue
        deps = set(get_dependencies(graph, task=task))
        for k in deps & inputs:
            readers[k] += 1
        assert len(deps) <= split_every, (key, len(deps))
    assert set(readers.values()) == {1}  # every block of x is read by one task
    np.testing.assert_allclose(
        _compute_quietly((out,))[0],
        _generic.logsumexp(xn, axis=(1,), xp=np_xp),
        **TOLERANCES["float64"].kw,
        equal_nan=True,
    )


def test_smaller_graph_than_the_generic_kernel(lib: Lib) -> None:
    d = _data((12, 16), (1,), "float32")
    for chunks in [(3, 16), (3, 4)]:
        x, t = (da.from_array(d[k], chunks=chunks) for k in ("x", "t"))
        for name, args in [("logsumexp", [x]), ("softmax_cross_entropy", [x, t])]:
            ours = _as_tuple(lib.call(call, name, *args, axis=(1,), where=None, xp=lib.xp))
            generic = _as_tuple(getattr(_generic, name)(*args, axis=(1,), xp=lib.xp))
            assert _new_tasks(ours[:1], *args) < _new_tasks(generic[:1], *args), (name, chunks)


def test_unknown_chunk_sizes(lib: Lib) -> None:
    """Unknown (NaN) batch chunk sizes: the reduction works, a mask too (applied first)."""
    d = _data((11, 12), (1,), "float64")
    keep = np.arange(11) % 3 != 1
    for chunks in [(4, 12), (4, 5)]:
        x, w = (da.from_array(d[k], chunks=chunks) for k in ("x", "w"))
        idx = da.from_array(keep, chunks=4)
        xu, wu = x[idx], w[idx]
        assert math.isnan(xu.shape[0])
        for where, wn in [(None, None), (wu, d["w"][keep])]:
            out = lib.call(call, "logsumexp", xu, axis=(1,), where=where, xp=lib.xp)
            assert any(n.startswith("logsumexp") for n in _key_names((out,)))
            np.testing.assert_allclose(
                _compute_quietly((out,))[0],
                _generic.logsumexp(d["x"][keep], axis=(1,), where=wn, xp=np_xp),
                **TOLERANCES["float64"].kw,
                equal_nan=True,
            )


def test_not_for_other_operands(lib: Lib) -> None:
    """Mixed dtypes and NumPy operands are left to the generic kernel (NotImplemented)."""
    from softmax_xp._backends import _dask

    d = _data((11, 12), (1,), "float64")
    x = da.from_array(d["x"], chunks=(4, 5))
    t32 = da.from_array(d["t"].astype(np.float32), chunks=(4, 5))
    assert _dask.softmax_cross_entropy(x, t32, axis=(1,), xp=lib.xp) is NotImplemented
    assert _dask.logsumexp(d["x"], axis=(1,), xp=lib.xp) is NotImplemented
    lab = da.from_array(d["labels"].astype(np.float64))
    assert _dask.softmax_cross_entropy_with_integer_labels(x, lab, axis=(1,), xp=lib.xp) is (
        NotImplemented
    )
