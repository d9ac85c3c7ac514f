"""Host memory and the C row kernels, for every backend that runs them.

NumPy runs the C row kernels (``_rows.c``) on its own arrays; JAX runs them on zero-copy NumPy
views of large concrete CPU arrays and takes the result back by DLPack; torch writes its large
CPU results into buffers advised for huge pages. What they share lives here:

- :data:`rows`, :data:`HAVE_ROWS`: the C extension, when the build made it (see setup.py);
- :func:`aligned_empty`: an uninitialised buffer on a 64-byte boundary (what
  ``jax.dlpack.from_dlpack(copy=False)`` needs);
- :func:`advise_hugepages`: ``madvise(MADV_HUGEPAGE)`` on a fresh buffer before its first touch;
- :func:`run_into`: a NumPy-path kernel on NumPy views, its result allocated by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

rows: ModuleType | None
try:
    from . import _rows as rows  # the C row kernels (optional: see setup.py)
except ImportError:  # pragma: no cover - a build without a C compiler
    rows = None

#: Whether the C row kernels were built (``softmax-xp check`` reports it).
HAVE_ROWS = rows is not None

__all__ = ["HAVE_ROWS", "advise_hugepages", "aligned_empty", "rows", "run_into"]

NDArray = np.ndarray[Any, Any]
Alloc = Callable[[tuple[int, ...], Any], NDArray]


def aligned_empty(shape: tuple[int, ...], dtype: Any, align: int = 64) -> NDArray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte boundary (what
    ``jax.dlpack.from_dlpack(copy=False)`` needs to take the buffer without copying it)."""
    dt = np.dtype(dtype)
    nbytes = math.prod(shape) * dt.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    offset = -int(raw.__array_interface__["data"][0]) % align
    out: NDArray = raw[offset : offset + nbytes].view(dt).reshape(shape)
    return out


def advise_hugepages(address: int, nbytes: int) -> bool:
    """Advise ``MADV_HUGEPAGE`` for ``nbytes`` at ``address`` (a fresh, untouched buffer);
    False where the C kernels were not built (nothing is advised)."""
    if rows is None:
        return False
    rows.advise_hugepages(address, nbytes)
    return True


def run_into(
    name: str, arrays: Sequence[NDArray], axis: tuple[int, ...], where: NDArray | None, alloc: Alloc
) -> Any:
    """Kernel ``name`` of the NumPy backend on NumPy ``arrays``, its result allocated by
    ``alloc``; ``NotImplemented`` where the fast path does not apply."""
    from . import _numpy

    return _numpy.run_into(name, arrays, axis, where, alloc)
