# Triton kernels are untyped (the decorator and the tl values); branches on constexpr stay
# statements rather than conditional expressions, which the Triton front end handles in fewer
# versions.
# mypy: disable-error-code="no-untyped-def,untyped-decorator,no-untyped-call"
# ruff: noqa: SIM108
"""Layer 3: Triton kernels for torch tensors on CUDA (and, for tests, CPU tensors under
``TRITON_INTERPRET=1``).

Imported only when the Triton path is selected (see ``_torch_cuda``); triton itself is imported
when a kernel first runs (see ``_kernel``).

Every kernel sees its tensor as ``(outer, C, inner)``: the softmax axes (one axis, or a run of
adjacent axes whose strides collapse) are ``C``; the axes before and after them are collapsed
into ``outer`` and ``inner`` with one stride each. A "row" is one ``(outer, inner)`` pair, so
any axis is read in place through its strides, with no transposed copy: for a non-last axis a
program takes a tile of ``BLOCK_R`` neighbouring rows (contiguous along ``inner``) by
``BLOCK_C`` entries of the axis, so its loads stay coalesced.

Paths (the thresholds are in :class:`Tuning`):

- single block: a row (or a tile of rows) fits in one program; read once, written once;
- online: the row is read in chunks of ``BLOCK_C`` keeping a running maximum and sum (rescaled
  when the maximum grows), then read again to write the result; rows of any length (2^20+);
- split: few, very long rows. Each row is cut into ``nsplit`` segments, one program each; a
  first kernel writes each segment's (max, sum, flags) to a small workspace, and the second
  combines a row's segments and writes the result.

Inputs are loaded in their own dtype (float16, bfloat16, float32, float64) and cast inside the
kernel to float32 (float64 stays float64) for the arithmetic; outputs are stored in the input's
dtype. Masks (``where``) and edge values follow docs/semantics.md: masked-out entries give 0
(log: ``-inf``) and zero derivative, an all-masked row gives zeros (log: ``-inf``), a row whose
maximum over its unmasked entries is not finite (a ``+inf`` or NaN, or only ``-inf``) is NaN at
its unmasked entries. No ``inf - inf`` is ever evaluated (the interpreter would warn).

Derivative kernels, one pass over their inputs when the row fits (``MODE``):

- 0: ``y * (g - <g, y>)`` (softmax VJP and JVP: J is symmetric);
- 1: ``g - exp(l) * sum(g)`` (log_softmax VJP);
- 2: ``v - <exp(l), v>`` (log_softmax JVP);

and the dense Jacobians ``y_i (δ_ij - y_j)`` / ``δ_ij - exp(l_j)``, written in one pass over the
``N·C²`` output by tiles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # imported for real by _ensure, on first use
    import triton.language as tl

__all__ = [
    "Tuning",
    "forward",
    "geometry",
    "jacobian",
    "plan",
    "product",
    "tuning",
]


@dataclasses.dataclass
class Tuning:
    """Path thresholds, in elements (not yet measured on a GPU: reasonable first guesses)."""

    #: A row (times the rows in its tile) up to this size runs in one block.
    max_single: int = 16384
    #: Chunk of a row per loop step of the online path.
    chunk: int = 4096
    #: Rows of at least this length, when there are fewer than ``split_rows`` of them, are split.
    split_min: int = 65536
    split_rows: int = 128
    #: Target length of one segment of a split row (and at most ``max_splits`` segments).
    split_seg: int = 16384
    max_splits: int = 128
    #: Short rows are packed into tiles of about this many elements.
    pack: int = 4096


_TUNING = Tuning()
_LOCK = threading.Lock()


@contextlib.contextmanager
def tuning(**kwargs: int) -> Iterator[Tuning]:
    """Override the path thresholds for a block of code (tests use it to reach every path)."""
    global _TUNING
    old = _TUNING
    _TUNING = dataclasses.replace(old, **kwargs)
    try:
        yield _TUNING
    finally:
        _TUNING = old


# -- geometry -------------------------------------------------------------------------------------
def _collapse(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, int] | None:
    """(size, stride) of a run of dims viewed as one, or None where their strides do not allow."""
    dims = [(n, s) for n, s in zip(shape, strides, strict=True) if n != 1]
    if not dims:
        return 1, 0
    for (_, s0), (n1, s1) in itertools.pairwise(dims):
        if s0 != s1 * n1:
            return None
    return math.prod(n for n, _ in dims), dims[-1][1]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A tensor as (outer, C, inner) with one stride each (in elements)."""

    outer: int
    c: int
    inner: int
    so: int
    sc: int
    si: int

    @property
    def rows(self) -> int:
        return self.outer * self.inner


def geometry(t: torch.Tensor, a0: int, a1: int) -> Geometry | None:
    """``t`` over the softmax axes ``a0..a1`` (inclusive), or None where strides do not collapse."""
    shape, strides = tuple(t.shape), tuple(t.stride())
    parts = [
        _collapse(shape[:a0], strides[:a0]),
        _collapse(shape[a0 : a1 + 1], strides[a0 : a1 + 1]),
        _collapse(shape[a1 + 1 :], strides[a1 + 1 :]),
    ]
    if any(p is None for p in parts):
        return None
    (o, so), (c, sc), (i, si) = parts  # type: ignore[misc]
    return Geometry(o, c, i, so, sc, si)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _p2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class Plan:
    """Which path runs, and its block sizes."""

    path: str  # "single", "online" or "split"
    block_r: int
    block_c: int
    nsplit: int = 1
    seg: int = 0  # elements of a row per split segment (a multiple of block_c)


def plan(g: Geometry) -> Plan:
    """Choose the path and blocks for a (outer, C, inner) problem."""
    tu = _TUNING
    c = g.c
    strided = g.inner > 1 and g.si == 1 and g.sc != 1
    if strided:  # non-last axis: neighbouring rows are contiguous, take a tile of them
        br = min(_p2(g.inner), 32)
        if _p2(c) * br <= tu.max_single:
            return Plan("single", br, _p2(c))
        bc = max(16, _p2(max(1, tu.chunk // br)))
    else:
        if _p2(c) <= tu.max_single:
            bc = _p2(c)
            br = max(1, min(_p2(g.rows), tu.pack // bc))
            return Plan("single", br, bc)
        br, bc = 1, _p2(tu.chunk)
    if c >= tu.split_min and g.rows < tu.split_rows:
        nsplit = max(1, min(tu.max_splits, _cdiv(c, tu.split_seg)))
        seg = _cdiv(_cdiv(c, nsplit), bc) * bc
        nsplit = _cdiv(c, seg)
        if nsplit > 1:
            return Plan("split", br, bc, nsplit, seg)
    return Plan("online", br, bc, 1, _cdiv(c, bc) * bc)


def _warps(elems: int) -> int:
    return 4 if elems <= 2048 else 8 if elems <= 8192 else 16


# -- kernel registration --------------------------------------------------------------------------
_RAW: dict[str, Callable[..., Any]] = {}
_READY: list[bool] = []


def _kernel(fn: Callable[..., Any]) -> Any:
    """Mark ``fn`` as a Triton function; :func:`_ensure` applies ``triton.jit`` on first use.

    Not at import, and triton itself is imported only then: importing triton and applying
    ``triton.jit`` fix whether Triton's interpreter runs the kernels (``TRITON_INTERPRET``),
    and importing this module (doctest collection, say) should not decide that for the process.
    """
    _RAW[fn.__name__] = fn
    return fn


def _ensure() -> None:
    """Replace every marked function in this module by its ``triton.jit`` form (once)."""
    if _READY:
        return
    with _LOCK:
        if not _READY:
            import triton
            import triton.language as tl

            g = globals()
            g["triton"], g["tl"] = triton, tl
            for name, fn in _RAW.items():
                g[name] = triton.jit(fn)
            _READY.append(True)


# -- shared device helpers ------------------------------------------------------------------------
@_kernel
def _offsets(r, c, inner, so, si, sc):
    r = r.to(tl.int64)
    o = r // inner
    i = r % inner
    return (o * so + i * si)[:, None] + c.to(tl.int64)[None, :] * sc


@_kernel
def _load_x(x_ptr, w_ptr, r, c, n_rows, C, inner, sxo, sxi, sxc, swo, swi, swc, HAS_WHERE, F64):
    inb = (r < n_rows)[:, None] & (c < C)[None, :]
    x = tl.load(x_ptr + _offsets(r, c, inner, sxo, sxi, sxc), mask=inb, other=0.0)
    if F64:
        x = x.to(tl.float64)
    else:
        x = x.to(tl.float32)
    valid = inb
    if HAS_WHERE:
        w = tl.load(w_ptr + _offsets(r, c, inner, swo, swi, swc), mask=inb, other=0)
        valid = valid & (w != 0)
    return x, valid, inb


@_kernel
def _finite_part(x, valid):
    """x where it is valid and finite, else -inf; and per-row flags (1 NaN, 2 +inf, 4 any)."""
    ok = valid & (x == x) & (x < float("inf")) & (x > -float("inf"))
    xf = tl.where(ok, x, -float("inf"))
    nan = tl.max((valid & (x != x)).to(tl.int32), axis=1)
    pinf = tl.max((valid & (x == float("inf"))).to(tl.int32), axis=1)
    anyv = tl.max(valid.to(tl.int32), axis=1)
    return xf, nan | (pinf * 2) | (anyv * 4)


@_kernel
def _safe(m):
    return tl.where(m > -float("inf"), m, 0.0)


@_kernel
def _shift(a, b, F64):
    """``a - b`` for ``a <= b`` with b finite, ``-inf`` where that overflows (a near -max, b
    near +max), computed without the overflow itself (the interpreter would warn about it)."""
    if F64:
        lim = -8.98846567431158e307  # -max / 2
    else:
        lim = -1.7014117e38
    big = a * 0.5 - b * 0.5 < lim
    return tl.where(big, -float("inf"), tl.where(big, b, a) - b)


@_kernel
def _rescale(m_old, m_new_safe, F64):
    """exp(m_old - m_new), 0 where m_old is -inf (m_new_safe is finite, >= m_old)."""
    return tl.exp(_shift(m_old, m_new_safe, F64))


@_kernel
def _write_forward(o_ptr, r, c, n_rows, C, inner, soo, soi, soc, xf, valid, inb, m, s, flags,
                   LOG, HAS_WHERE, F64):  # fmt: skip
    bad = ((flags & 3) != 0) | (((flags & 4) != 0) & (m == -float("inf")))
    ms = _safe(m)
    s_safe = tl.where(s > 0, s, 1.0)
    d = _shift(xf, ms[:, None], F64)
    if LOG:
        out = d - tl.log(s_safe)[:, None]
        fill = -float("inf")
    else:
        out = tl.exp(d) / s_safe[:, None]
        fill = 0.0
    out = tl.where(bad[:, None], float("nan"), out)
    if HAS_WHERE:
        out = tl.where(valid, out, fill)
    ptrs = o_ptr + _offsets(r, c, inner, soo, soi, soc)
    tl.store(ptrs, out.to(o_ptr.dtype.element_ty), mask=inb)


# -- forward kernels ------------------------------------------------------------------------------
@_kernel
def _fwd_single(x_ptr, w_ptr, o_ptr, n_rows, C, inner,
                sxo, sxi, sxc, swo, swi, swc, soo, soi, soc,
                LOG: tl.constexpr, HAS_WHERE: tl.constexpr, F64: tl.constexpr,
                BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = tl.arange(0, BLOCK_C)
    x, valid, inb = _load_x(x_ptr, w_ptr, r, c, n_rows, C, inner, sxo, sxi, sxc, swo, swi, swc,
                            HAS_WHERE, F64)  # fmt: skip
    xf, flags = _finite_part(x, valid)
    m = tl.max(xf, axis=1)
    s = tl.sum(tl.exp(_shift(xf, _safe(m)[:, None], F64)), axis=1)
    _write_forward(o_ptr, r, c, n_rows, C, inner, soo, soi, soc, xf, valid, inb, m, s, flags,
                   LOG, HAS_WHERE, F64)  # fmt: skip


@_kernel
def _fwd_stats(x_ptr, w_ptr, m_ptr, s_ptr, f_ptr, n_rows, C, inner,
               sxo, sxi, sxc, swo, swi, swc, SEG, NSPLIT,
               HAS_WHERE: tl.constexpr, F64: tl.constexpr,
               BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """Running (max, sum, flags) of segment ``program_id(1)`` of each row in the tile."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    k = tl.program_id(1)
    start = k * SEG
    if F64:
        m = tl.full((BLOCK_R,), -float("inf"), tl.float64)
        s = tl.zeros((BLOCK_R,), tl.float64)
    else:
        m = tl.full((BLOCK_R,), -float("inf"), tl.float32)
        s = tl.zeros((BLOCK_R,), tl.float32)
    flags = tl.zeros((BLOCK_R,), tl.int32)
    for off in range(0, SEG, BLOCK_C):
        c = start + off + tl.arange(0, BLOCK_C)
        x, valid, _inb = _load_x(x_ptr, w_ptr, r, c, n_rows, C, inner, sxo, sxi, sxc,
                                 swo, swi, swc, HAS_WHERE, F64)  # fmt: skip
        xf, fl = _finite_part(x, valid)
        m_new = tl.maximum(m, tl.max(xf, axis=1))
        ms = _safe(m_new)
        s = s * _rescale(m, ms, F64) + tl.sum(tl.exp(_shift(xf, ms[:, None], F64)), axis=1)
        m = m_new
        flags = flags | fl
    ws = r.to(tl.int64) * NSPLIT + k
    rm = r < n_rows
    tl.store(m_ptr + ws, m, mask=rm)
    tl.store(s_ptr + ws, s, mask=rm)
    tl.store(f_ptr + ws, flags, mask=rm)


@_kernel
def _combine_stats(m_ptr, s_ptr, f_ptr, r, n_rows, NSPLIT, F64, NSP: tl.constexpr):
    j = tl.arange(0, NSP)
    inb = (r < n_rows)[:, None] & (j < NSPLIT)[None, :]
    ws = r.to(tl.int64)[:, None] * NSPLIT + j[None, :]
    mk = tl.load(m_ptr + ws, mask=inb, other=-float("inf"))
    sk = tl.load(s_ptr + ws, mask=inb, other=0.0)
    fk = tl.load(f_ptr + ws, mask=inb, other=0)
    m = tl.max(mk, axis=1)
    s = tl.sum(sk * _rescale(mk, _safe(m)[:, None], F64), axis=1)
    flags = (tl.max(fk & 1, axis=1)) | (tl.max(fk & 2, axis=1)) | (tl.max(fk & 4, axis=1))
    return m, s, flags


@_kernel
def _fwd_write(x_ptr, w_ptr, o_ptr, m_ptr, s_ptr, f_ptr, n_rows, C, inner,
               sxo, sxi, sxc, swo, swi, swc, soo, soi, soc, SEG, NSPLIT,
               LOG: tl.constexpr, HAS_WHERE: tl.constexpr, F64: tl.constexpr,
               NSP: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    """Combine a row's segment statistics and write segment ``program_id(1)`` of the result."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    start = tl.program_id(1) * SEG
    m, s, flags = _combine_stats(m_ptr, s_ptr, f_ptr, r, n_rows, NSPLIT, F64, NSP)
    for off in range(0, SEG, BLOCK_C):
        c = start + off + tl.arange(0, BLOCK_C)
        x, valid, inb = _load_x(x_ptr, w_ptr, r, c, n_rows, C, inner, sxo, sxi, sxc,
                                swo, swi, swc, HAS_WHERE, F64)  # fmt: skip
        xf, _ = _finite_part(x, valid)
        _write_forward(o_ptr, r, c, n_rows, C, inner, soo, soi, soc, xf, valid, inb, m, s,
                       flags, LOG, HAS_WHERE, F64)  # fmt: skip


# -- derivative kernels ---------------------------------------------------------------------------
@_kernel
def _load_pair(a_ptr, b_ptr, w_ptr, r, c, n_rows, C, inner, sao, sai, sac, sbo, sbi, sbc,
               swo, swi, swc, HAS_WHERE, F64):  # fmt: skip
    inb = (r < n_rows)[:, None] & (c < C)[None, :]
    a = tl.load(a_ptr + _offsets(r, c, inner, sao, sai, sac), mask=inb, other=0.0)
    b = tl.load(b_ptr + _offsets(r, c, inner, sbo, sbi, sbc), mask=inb, other=0.0)
    if F64:
        a = a.to(tl.float64)
        b = b.to(tl.float64)
    else:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    valid = inb
    if HAS_WHERE:
        w = tl.load(w_ptr + _offsets(r, c, inner, swo, swi, swc), mask=inb, other=0)
        valid = valid & (w != 0)
        b = tl.where(valid, b, 0.0)
    return a, b, valid, inb


@_kernel
def _contribution(a, b, inb, MODE):
    if MODE == 0:
        t = a * b
    elif MODE == 1:
        t = b
    else:
        t = tl.where(inb, tl.exp(a), 0.0) * b
    return tl.sum(t, axis=1)


@_kernel
def _write_product(o_ptr, r, c, n_rows, C, inner, soo, soi, soc, a, b, valid, inb, dot,
                   MODE, HAS_WHERE):  # fmt: skip
    if MODE == 0:
        out = a * (b - dot[:, None])
    elif MODE == 1:
        out = b - tl.exp(a) * dot[:, None]
    else:
        out = b - dot[:, None]
    if HAS_WHERE:
        out = tl.where(valid, out, 0.0)
    tl.store(o_ptr + _offsets(r, c, inner, soo, soi, soc), out.to(o_ptr.dtype.element_ty),
             mask=inb)  # fmt: skip


@_kernel
def _prod_single(a_ptr, b_ptr, w_ptr, o_ptr, n_rows, C, inner,
                 sao, sai, sac, sbo, sbi, sbc, swo, swi, swc, soo, soi, soc,
                 MODE: tl.constexpr, HAS_WHERE: tl.constexpr, F64: tl.constexpr,
                 BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    c = tl.arange(0, BLOCK_C)
    a, b, valid, inb = _load_pair(a_ptr, b_ptr, w_ptr, r, c, n_rows, C, inner, sao, sai, sac,
                                  sbo, sbi, sbc, swo, swi, swc, HAS_WHERE, F64)  # fmt: skip
    dot = _contribution(a, b, inb, MODE)
    _write_product(o_ptr, r, c, n_rows, C, inner, soo, soi, soc, a, b, valid, inb, dot,
                   MODE, HAS_WHERE)  # fmt: skip


@_kernel
def _prod_stats(a_ptr, b_ptr, w_ptr, d_ptr, n_rows, C, inner,
                sao, sai, sac, sbo, sbi, sbc, swo, swi, swc, SEG, NSPLIT,
                MODE: tl.constexpr, HAS_WHERE: tl.constexpr, F64: tl.constexpr,
                BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    k = tl.program_id(1)
    start = k * SEG
    if F64:
        dot = tl.zeros((BLOCK_R,), tl.float64)
    else:
        dot = tl.zeros((BLOCK_R,), tl.float32)
    for off in range(0, SEG, BLOCK_C):
        c = start + off + tl.arange(0, BLOCK_C)
        a, b, _valid, inb = _load_pair(a_ptr, b_ptr, w_ptr, r, c, n_rows, C, inner, sao, sai,
                                       sac, sbo, sbi, sbc, swo, swi, swc, HAS_WHERE, F64)  # fmt: skip
        dot += _contribution(a, b, inb, MODE)
    tl.store(d_ptr + r.to(tl.int64) * NSPLIT + k, dot, mask=r < n_rows)


@_kernel
def _prod_write(a_ptr, b_ptr, w_ptr, o_ptr, d_ptr, n_rows, C, inner,
                sao, sai, sac, sbo, sbi, sbc, swo, swi, swc, soo, soi, soc, SEG, NSPLIT,
                MODE: tl.constexpr, HAS_WHERE: tl.constexpr, F64: tl.constexpr,
                NSP: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    start = tl.program_id(1) * SEG
    j = tl.arange(0, NSP)
    dk = tl.load(d_ptr + r.to(tl.int64)[:, None] * NSPLIT + j[None, :],
                 mask=(r < n_rows)[:, None] & (j < NSPLIT)[None, :], other=0.0)  # fmt: skip
    dot = tl.sum(dk, axis=1)
    for off in range(0, SEG, BLOCK_C):
        c = start + off + tl.arange(0, BLOCK_C)
        a, b, valid, inb = _load_pair(a_ptr, b_ptr, w_ptr, r, c, n_rows, C, inner, sao, sai,
                                      sac, sbo, sbi, sbc, swo, swi, swc, HAS_WHERE, F64)  # fmt: skip
        _write_product(o_ptr, r, c, n_rows, C, inner, soo, soi, soc, a, b, valid, inb, dot,
                       MODE, HAS_WHERE)  # fmt: skip


@_kernel
def _jac_kernel(a_ptr, o_ptr, C, CC, inner, sao, sai, sac,
                LOG: tl.constexpr, F64: tl.constexpr,
                BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr):  # fmt: skip
    """Tile (program_id(1), program_id(2)) of row program_id(0)'s C x C Jacobian."""
    row = tl.program_id(0).to(tl.int64)
    base = (row // inner) * sao + (row % inner) * sai
    i = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    j = tl.program_id(2) * BLOCK_J + tl.arange(0, BLOCK_J)
    aj = tl.load(a_ptr + base + j.to(tl.int64) * sac, mask=j < C, other=0.0)
    if F64:
        aj = aj.to(tl.float64)
    else:
        aj = aj.to(tl.float32)
    eye = i[:, None] == j[None, :]
    if LOG:
        out = tl.where(eye, 1.0, 0.0) - tl.exp(aj)[None, :]
    else:
        ai = tl.load(a_ptr + base + i.to(tl.int64) * sac, mask=i < C, other=0.0)
        if F64:
            ai = ai.to(tl.float64)
        else:
            ai = ai.to(tl.float32)
        out = ai[:, None] * (tl.where(eye, 1.0, 0.0) - aj[None, :])
    ptrs = o_ptr + row * CC + i.to(tl.int64)[:, None] * C + j.to(tl.int64)[None, :]
    tl.store(ptrs, out.to(o_ptr.dtype.element_ty), mask=(i < C)[:, None] & (j < C)[None, :])


# -- launchers ------------------------------------------------------------------------------------
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _stat_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _strides(g: Geometry) -> tuple[int, int, int]:
    return g.so, g.si, g.sc


def _mask_geometry(where: torch.Tensor | None, a0: int, a1: int) -> tuple[Any, Geometry | None]:
    """The mask as uint8 with its (outer, C, inner) strides (made contiguous if they do not
    collapse, as a partly broadcast mask may not)."""
    if where is None:
        return None, None
    w = where.view(torch.uint8) if where.dtype == torch.bool else where
    g = geometry(w, a0, a1)
    if g is None:
        w = w.contiguous()
        g = geometry(w, a0, a1)
    return w, g


def _dummy(t: torch.Tensor) -> torch.Tensor:
    return torch.empty(1, dtype=torch.uint8, device=t.device)


def forward(
    x: torch.Tensor, a0: int, a1: int, where: torch.Tensor | None, log: bool
) -> torch.Tensor | None:
    """softmax / log_softmax of ``x`` over axes ``a0..a1``; None where the strides do not suit."""
    _ensure()
    g = geometry(x, a0, a1)
    if g is None or x.dtype not in _DTYPES:
        return None
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    go = geometry(out, a0, a1)
    w, gw = _mask_geometry(where, a0, a1)
    assert go is not None
    p = plan(g)
    f64 = x.dtype == torch.float64
    has_w = w is not None
    wptr = w if has_w else _dummy(x)
    ws = _strides(gw) if gw is not None else (0, 0, 0)
    n = g.rows
    common = (n, g.c, g.inner, *_strides(g), *ws)
    nw = _warps(p.block_r * p.block_c)
    if p.path == "single":
        _fwd_single[(_cdiv(n, p.block_r),)](
            x, wptr, out, *common, *_strides(go), LOG=log, HAS_WHERE=has_w, F64=f64,
            BLOCK_R=p.block_r, BLOCK_C=p.block_c, num_warps=nw,
        )  # fmt: skip
        return out
    sd = _stat_dtype(x)
    m = torch.empty((n, p.nsplit), dtype=sd, device=x.device)
    s = torch.empty((n, p.nsplit), dtype=sd, device=x.device)
    f = torch.empty((n, p.nsplit), dtype=torch.int32, device=x.device)
    grid = (_cdiv(n, p.block_r), p.nsplit)
    _fwd_stats[grid](
        x, wptr, m, s, f, *common, p.seg, p.nsplit, HAS_WHERE=has_w, F64=f64,
        BLOCK_R=p.block_r, BLOCK_C=p.block_c, num_warps=nw,
    )  # fmt: skip
    _fwd_write[grid](
        x, wptr, out, m, s, f, *common, *_strides(go), p.seg, p.nsplit, LOG=log,
        HAS_WHERE=has_w, F64=f64, NSP=_p2(p.nsplit), BLOCK_R=p.block_r, BLOCK_C=p.block_c,
        num_warps=nw,
    )  # fmt: skip
    return out


def product(
    a: torch.Tensor, b: torch.Tensor, a0: int, a1: int, where: torch.Tensor | None, mode: int
) -> torch.Tensor | None:
    """The derivative products of the module docstring (``mode`` 0, 1, 2) over ``a0..a1``."""
    _ensure()
    ga, gb = geometry(a, a0, a1), geometry(b, a0, a1)
    if ga is None or gb is None or a.dtype not in _DTYPES or b.dtype != a.dtype:
        return None
    out = torch.empty(a.shape, dtype=a.dtype, device=a.device)
    if out.numel() == 0:
        return out
    go = geometry(out, a0, a1)
    assert go is not None
    w, gw = _mask_geometry(where, a0, a1)
    p = plan(ga)
    f64 = a.dtype == torch.float64
    has_w = w is not None
    wptr = w if has_w else _dummy(a)
    ws = _strides(gw) if gw is not None else (0, 0, 0)
    n = ga.rows
    common = (n, ga.c, ga.inner, *_strides(ga), *_strides(gb), *ws)
    nw = _warps(p.block_r * p.block_c)
    if p.path == "single":
        _prod_single[(_cdiv(n, p.block_r),)](
            a, b, wptr, out, *common, *_strides(go), MODE=mode, HAS_WHERE=has_w, F64=f64,
            BLOCK_R=p.block_r, BLOCK_C=p.block_c, num_warps=nw,
        )  # fmt: skip
        return out
    d = torch.empty((n, p.nsplit), dtype=_stat_dtype(a), device=a.device)
    grid = (_cdiv(n, p.block_r), p.nsplit)
    _prod_stats[grid](
        a, b, wptr, d, *common, p.seg, p.nsplit, MODE=mode, HAS_WHERE=has_w, F64=f64,
        BLOCK_R=p.block_r, BLOCK_C=p.block_c, num_warps=nw,
    )  # fmt: skip
    _prod_write[grid](
        a, b, wptr, out, d, *common, *_strides(go), p.seg, p.nsplit, MODE=mode,
        HAS_WHERE=has_w, F64=f64, NSP=_p2(p.nsplit), BLOCK_R=p.block_r, BLOCK_C=p.block_c,
        num_warps=nw,
    )  # fmt: skip
    return out


def jacobian(a: torch.Tensor, a0: int, a1: int, log: bool) -> torch.Tensor | None:
    """Dense Jacobian from the forward output over ``a0..a1``: shape batch + (C, C)."""
    _ensure()
    ga = geometry(a, a0, a1)
    if ga is None or a.dtype not in _DTYPES:
        return None
    batch = (*a.shape[:a0], *a.shape[a1 + 1 :])
    out = torch.empty((*batch, ga.c, ga.c), dtype=a.dtype, device=a.device)
    if out.numel() == 0:
        return out
    bi = min(_p2(ga.c), 64)
    bj = min(_p2(ga.c), 128)
    grid = (ga.rows, _cdiv(ga.c, bi), _cdiv(ga.c, bj))
    _jac_kernel[grid](
        a, out, ga.c, ga.c * ga.c, ga.inner, *_strides(ga), LOG=log, F64=a.dtype == torch.float64,
        BLOCK_I=bi, BLOCK_J=bj, num_warps=_warps(bi * bj),
    )  # fmt: skip
    return out
