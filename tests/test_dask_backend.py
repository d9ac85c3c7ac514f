"""The Dask fast path: every public function on Dask arrays in every chunking (chunks of size 1,
each axis split, the softmax axes included) against NumPy on the same data and SciPy; the graph
it builds (tasks per block, the tree of the online reduction); no compute during the call; no
task holding more than one input chunk; masks with chunks of their own; unknown chunk sizes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import scipy.special
from _support import Backend, Lib, make_lib, selected_backends, tolerance

import softmax_xp as sx

pytestmark = pytest.mark.skipif(
    Backend.DASK not in selected_backends(), reason="runs in the sessions that test dask"
)

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")


@pytest.fixture
def lib() -> Lib:
    return make_lib(Backend.DASK)


Fn = Callable[..., Any]


def _functions(axis: Any) -> dict[str, Fn]:
    """Each public function (and an operator product) as ``f(x, v, w)`` on NumPy or Dask data:
    the derivative kernels get a forward output made by this package from ``x``."""
    return {
        "softmax": lambda x, v, w: sx.softmax(x, axis=axis),
        "log_softmax": lambda x, v, w: sx.log_softmax(x, axis=axis),
        "softmax_where": lambda x, v, w: sx.softmax(x, axis=axis, where=w),
        "log_softmax_where": lambda x, v, w: sx.log_softmax(x, axis=axis, where=w),
        "softmax_jvp": lambda x, v, w: sx.softmax_jvp(sx.softmax(x, axis=axis), v, axis=axis),
        "softmax_vjp": lambda x, v, w: sx.softmax_vjp(sx.softmax(x, axis=axis), v, axis=axis),
        "log_softmax_jvp": lambda x, v, w: sx.log_softmax_jvp(
            sx.log_softmax(x, axis=axis), v, axis=axis
        ),
        "log_softmax_vjp": lambda x, v, w: sx.log_softmax_vjp(
            sx.log_softmax(x, axis=axis), v, axis=axis
        ),
        "log_softmax_jvp_where": lambda x, v, w: sx.log_softmax_jvp(
            sx.log_softmax(x, axis=axis, where=w), v, axis=axis, where=w
        ),
        "log_softmax_vjp_where": lambda x, v, w: sx.log_softmax_vjp(
            sx.log_softmax(x, axis=axis, where=w), v, axis=axis, where=w
        ),
        "softmax_jacobian": lambda x, v, w: sx.softmax_jacobian(
            sx.softmax(x, axis=axis), axis=axis
        ),
        "log_softmax_jacobian": lambda x, v, w: sx.log_softmax_jacobian(
            sx.log_softmax(x, axis=axis), axis=axis
        ),
        "op_matvec": lambda x, v, w: sx.SoftmaxJacobian(sx.softmax(x, axis=axis), axis=axis).matvec(
            v
        ),
    }


# shape, chunkings (the first leaves every axis whole, the last is chunks of size 1), axes
CASES_2D = (
    (6, 10),
    [(6, 10), (2, 10), (6, 3), (2, 3), ((1, 5), (7, 3)), (1, 1)],
    [-1, 0, None, (0, 1)],
)
CASES_3D = (
    (4, 3, 5),
    [(4, 3, 5), (2, 3, 5), (4, 1, 5), (4, 3, 2), (3, 2, 4), (1, 1, 1)],
    [-1, 1, (0, 2), None],
)
CASES = [
    (shape, chunks, axis)
    for shape, chunkings, axes in (CASES_2D, CASES_3D)
    for chunks in chunkings
    for axis in axes
]


def _data(shape: tuple[int, ...], dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=shape).astype(dtype)
    v = rng.normal(size=shape).astype(dtype)
    w = rng.random(size=shape) < 0.75
    w.reshape(-1)[: shape[-1]] = False  # the first slice along the last axis all masked out
    return x, v, w


def _mask_chunks(chunks: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks for the mask unlike those of the data (so it has to be rechunked)."""
    return tuple(max(1, (s + 1) // 2) for s in shape)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("shape", "chunks", "axis"), CASES)
def test_matches_numpy_for_every_chunking(
    lib: Lib, shape: tuple[int, ...], chunks: Any, axis: Any, dtype: str
) -> None:
    xn, vn, wn = _data(shape, dtype)
    x = da.from_array(xn, chunks=chunks)
    v = da.from_array(vn, chunks=chunks)
    w = da.from_array(wn, chunks=_mask_chunks(chunks, shape))
    rtol, atol = tolerance(dtype)
    for name, f in _functions(axis).items():
        out = lib.call(f, x, v, w)  # no compute during the call
        assert isinstance(out, da.Array), name
        assert out.dtype == np.dtype(dtype), name
        expected = f(xn, vn, wn)  # the same call on NumPy arrays
        if "jacobian" not in name:
            assert out.chunks == x.chunks, f"{name}: chunks {out.chunks}, input {x.chunks}"
        got = out.compute(scheduler="sync")
        assert got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, rtol, atol, err_msg=name)
    # and against SciPy (float64 reference) for the forward functions
    ref = scipy.special.softmax(xn.astype(np.float64), axis=axis)
    got = sx.softmax(x, axis=axis).compute(scheduler="sync")
    np.testing.assert_allclose(got, ref, rtol, atol)
    ref = scipy.special.log_softmax(xn.astype(np.float64), axis=axis)
    got = sx.log_softmax(x, axis=axis).compute(scheduler="sync")
    np.testing.assert_allclose(got, ref, rtol, atol)


# -- the graph ------------------------------------------------------------------------------------


def _new_tasks(out: Any, *inputs: Any) -> int:
    """Tasks in ``out``'s graph that are not in the inputs' graphs."""
    known: set[Any] = set()
    for a in inputs:
        known |= set(dict(a.__dask_graph__()))
    return len(set(dict(out.__dask_graph__())) - known)


def _graph_calls(axis: Any) -> dict[str, tuple[Fn, int]]:
    """Each kernel on ready-made operands, and its tasks per block with a split softmax axis:
    forward: the block's own softmax with its partials, the partials taken out of it (so that
    only they travel to the tree), the rescaling; JVP / VJP: the partial dot and the result, plus
    masking the vector for a masked log_softmax JVP / VJP."""
    return {
        "softmax": (lambda x, v, w: sx.softmax(x, axis=axis), 3),
        "log_softmax": (lambda x, v, w: sx.log_softmax(x, axis=axis), 3),
        "softmax_where": (lambda x, v, w: sx.softmax(x, axis=axis, where=w), 3),
        "log_softmax_where": (lambda x, v, w: sx.log_softmax(x, axis=axis, where=w), 3),
        "softmax_jvp": (lambda x, v, w: sx.softmax_jvp(x, v, axis=axis), 2),
        "softmax_vjp": (lambda x, v, w: sx.softmax_vjp(x, v, axis=axis), 2),
        "log_softmax_jvp": (lambda x, v, w: sx.log_softmax_jvp(x, v, axis=axis), 2),
        "log_softmax_vjp": (lambda x, v, w: sx.log_softmax_vjp(x, v, axis=axis), 2),
        "log_softmax_jvp_where": (
            lambda x, v, w: sx.log_softmax_jvp(x, v, axis=axis, where=w),
            3,
        ),
        "log_softmax_vjp_where": (
            lambda x, v, w: sx.log_softmax_vjp(x, v, axis=axis, where=w),
            3,
        ),
    }


def test_one_task_per_block_when_the_softmax_axis_is_whole(lib: Lib) -> None:
    xn, vn, wn = _data((8, 16), "float32")
    x, v, w = (da.from_array(a, chunks=(2, 16)) for a in (xn, vn, wn))
    blocks = x.npartitions
    assert blocks == 4
    for name, (f, _) in _graph_calls(-1).items():
        out = lib.call(f, x, v, w)
        assert _new_tasks(out, x, v, w) == blocks, name
    for f in (sx.softmax_jacobian, sx.log_softmax_jacobian):
        out = lib.call(f, x, axis=-1)
        assert _new_tasks(out, x) == blocks, f.__name__
        assert out.chunks == ((2, 2, 2, 2), (16,), (16,))


@pytest.mark.parametrize("split_every", [2, 4, 8])
def test_online_reduction_is_a_tree_with_a_few_tasks_per_block(lib: Lib, split_every: int) -> None:
    """C in 8 chunks: per block the tasks of ``_graph_calls``, and per row of blocks a tree of
    combining tasks with at most ``split_every`` partials each."""
    xn, vn, wn = _data((6, 64), "float64")
    x, v, w = (da.from_array(a, chunks=(2, 8)) for a in (xn, vn, wn))
    row_blocks, col_blocks = x.numblocks
    blocks = row_blocks * col_blocks
    # tree tasks per row of blocks: ceil(8 / k) + ceil(8 / k²) + ... down to one
    tree, n = 0, col_blocks
    while True:
        n = math.ceil(n / split_every)
        tree += n
        if n == 1:
            break
    with dask.config.set(split_every=split_every):
        for name, (f, per_block) in _graph_calls(-1).items():
            out = lib.call(f, x, v, w)
            want = per_block * blocks + row_blocks * tree
            assert _new_tasks(out, x, v, w) == want, name
            graph = dict(out.__dask_graph__())
            inputs = {k for a in (x, v, w) for k in dict(a.__dask_graph__())}
            for key, task in graph.items():
                if key in inputs:
                    continue
                deps = _dependencies(task, graph)
                # a combining task reads at most split_every partials; a block task reads one
                # block of each operand and one vector of per-slice numbers
                assert len(deps) <= max(split_every, 4), (name, key, len(deps))
        # the dense Jacobian needs whole rows: one task per row of blocks, fed by its blocks
        out = lib.call(sx.softmax_jacobian, x, axis=-1)
        assert _new_tasks(out, x) == row_blocks


def _dependencies(task: Any, graph: dict[Any, Any]) -> set[Any]:
    from dask.core import get_dependencies

    return set(get_dependencies(graph, task=task))


def test_generic_kernels_would_build_a_bigger_graph(lib: Lib) -> None:
    """The fast path's graph is smaller than the generic kernels' for the same call (the
    reason for it): one task per block against several."""
    from softmax_xp import _generic

    xn, _, _ = _data((8, 16), "float32")
    x = da.from_array(xn, chunks=(2, 8))
    ours = lib.call(sx.softmax, x)
    generic = _generic.softmax(x, axis=(1,), xp=lib.xp)
    assert _new_tasks(ours, x) < _new_tasks(generic, x)
    np.testing.assert_allclose(
        ours.compute(scheduler="sync"), generic.compute(scheduler="sync"), *tolerance("float32")
    )


# -- memory: no task holds a row ------------------------------------------------------------------


def test_no_task_holds_more_than_one_chunk(lib: Lib) -> None:
    from dask.callbacks import Callback

    xn, vn, wn = _data((4, 96), "float64")
    chunks = (2, 12)
    x, v = (da.from_array(a, chunks=chunks) for a in (xn, vn))
    w = da.from_array(wn, chunks=(4, 32))

    class Largest(Callback):  # the largest array any task of the graph produces
        def __init__(self) -> None:
            super().__init__()
            self.largest = 0

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, id: Any) -> None:
            name = key[0] if isinstance(key, tuple) else str(key)
            embedded = any(result is a for a in (xn, vn, wn))
            if not embedded and not name.startswith(("finalize", "rechunk")):
                size = getattr(result, "size", 0)
                if isinstance(result, dict):  # the partials (m, s, v) of a block
                    size = sum(int(a.size) for a in result.values())
                self.largest = max(self.largest, int(size))

    for name, (f, _) in _graph_calls(-1).items():
        out = lib.call(f, x, v, w)
        with Largest() as probe, dask.config.set(scheduler="sync"):
            out.compute()
        assert probe.largest <= math.prod(chunks), (name, probe.largest)


# -- edge values across chunks --------------------------------------------------------------------


def test_edge_values_across_chunks_match_numpy(lib: Lib) -> None:
    """NaN, +inf and all -inf slices, all-masked slices, masked-out NaN and a finite span that
    overflows x - max, with the special entries in different chunks of a row."""
    fmax = np.finfo(np.float64).max
    rows = np.array(
        [
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            [0.0, 1.0, 2.0, 3.0, np.nan, 5.0],
            [0.0, 1.0, 2.0, 3.0, np.inf, 5.0],
            [-np.inf] * 6,
            [-np.inf, -np.inf, -np.inf, 3.0, -np.inf, -np.inf],
            [-fmax, 0.0, 1.0, 2.0, 3.0, fmax],
            [np.nan, 1.0, 2.0, 3.0, 4.0, 5.0],
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        ]
    )
    mask = np.ones(rows.shape, bool)
    mask[6, 0] = False  # the NaN is masked out
    mask[7] = False  # all masked
    vn = np.linspace(-1.0, 1.0, rows.size).reshape(rows.shape)
    for chunks in [(8, 6), (3, 2), (1, 1), (2, 4)]:
        x, v = (da.from_array(a, chunks=chunks) for a in (rows, vn))
        w = da.from_array(mask, chunks=(4, 3))
        for name, f in _functions(-1).items():
            out = lib.call(f, x, v, w)
            with dask.config.set(scheduler="sync"):  # warnings (errors here) reach this thread
                got = out.compute()
            with np.errstate(all="ignore"):  # the same call on NumPy (quiet by itself anyway)
                expected = f(rows, vn, mask)
            np.testing.assert_allclose(
                got, expected, *tolerance("float64"), equal_nan=True, err_msg=f"{name} {chunks}"
            )


# -- unknown chunk sizes --------------------------------------------------------------------------


def test_unknown_chunk_sizes_work_or_name_the_argument(lib: Lib) -> None:
    xn, _, _ = _data((6, 10), "float64")
    x = da.from_array(xn, chunks=(2, 3))
    rows = xn[:, 0] > -0.5
    cols = xn[0, :] > -0.5
    unknown_rows = x[da.from_array(rows, chunks=2)]
    unknown_cols = x.T[da.from_array(cols, chunks=3)].T
    assert math.isnan(unknown_rows.shape[0])
    assert math.isnan(unknown_cols.shape[1])
    for arr, ref in ((unknown_rows, xn[rows]), (unknown_cols, xn[:, cols])):
        for axis in (-1, 0, None):
            for f in (sx.softmax, sx.log_softmax):
                out = lib.call(f, arr, axis=axis)
                np.testing.assert_allclose(
                    out.compute(scheduler="sync"), f(ref, axis=axis), *tolerance("float64")
                )
    out = lib.call(sx.softmax_jacobian, unknown_rows, axis=-1)
    np.testing.assert_allclose(
        out.compute(scheduler="sync"), sx.softmax_jacobian(xn[rows]), *tolerance("float64")
    )
    with pytest.raises(ValueError, match=r"`y`.*unknown"):
        lib.call(sx.softmax_jacobian, unknown_cols, axis=-1)
    with pytest.raises(ValueError, match=r"`l`.*unknown"):
        lib.call(sx.log_softmax_jacobian, unknown_cols, axis=-1)


def test_masks_and_operands_with_other_chunks_are_rechunked(lib: Lib) -> None:
    xn, vn, wn = _data((6, 12), "float64")
    x = da.from_array(xn, chunks=(2, 4))
    v = da.from_array(vn, chunks=(3, 6))
    w = da.from_array(wn, chunks=(6, 1))
    for name, f in _functions(-1).items():
        out = lib.call(f, x, v, w)
        if "jacobian" not in name:
            assert out.chunks == x.chunks, name
        np.testing.assert_allclose(
            out.compute(scheduler="sync"), f(xn, vn, wn), *tolerance("float64"), err_msg=name
        )
    # a mask that broadcasts (one row for all rows) is broadcast, then rechunked to x's chunks
    row = da.from_array(wn[:1], chunks=(1, 5))
    out = lib.call(sx.softmax, x, where=row)
    assert out.chunks == x.chunks
    np.testing.assert_allclose(
        out.compute(scheduler="sync"), sx.softmax(xn, where=wn[:1]), *tolerance("float64")
    )


def test_inputs_are_not_mutated_and_meta_is_numpy(lib: Lib) -> None:
    xn, vn, _ = _data((4, 9), "float32")
    x0, v0 = xn.copy(), vn.copy()
    for chunks in [(2, 9), (2, 4)]:
        x, v = (da.from_array(a, chunks=chunks) for a in (xn, vn))
        for name, f in _functions(-1).items():
            out = lib.call(f, x, v, x > 0)
            assert type(out._meta) is np.ndarray, name
            out.compute(scheduler="threads")
    np.testing.assert_array_equal(xn, x0)
    np.testing.assert_array_equal(vn, v0)
