"""What the test suite and ``softmax-xp check`` share: references, errors and tolerances.

- :func:`rel_error`: the max absolute error over the max absolute reference (float64);
- :func:`fd_jacobian`: per-slice Jacobians by float64 central finite differences of any row
  function (the reference the libraries without autodiff are checked against);
- :data:`TOLERANCES`, :data:`FD_TOLERANCE`: ``(rtol, atol)`` of the test suite per dtype, and for
  a finite-difference reference;
- :data:`THRESHOLDS`: ``softmax-xp check``'s pass threshold on :func:`rel_error` per dtype and
  kind of reference.

Only NumPy is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["FD_STEP", "FD_TOLERANCE", "THRESHOLDS", "TOLERANCES", "fd_jacobian", "rel_error"]

NDArray = np.ndarray[Any, Any]

#: ``(rtol, atol)`` of a result against a float64 reference, by the result's dtype.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-9, 1e-12),
    "float32": (2e-5, 1e-6),
    "float16": (4e-3, 1e-3),
    "bfloat16": (3e-2, 8e-3),
}

#: Central finite differences in float64 with step :data:`FD_STEP` carry about 1e-9 relative
#: error (truncation and round-off): the ``(rtol, atol)`` against such a reference.
FD_TOLERANCE: tuple[float, float] = (1e-6, 1e-8)
FD_STEP = 1e-6

#: ``softmax-xp check``'s pass threshold on :func:`rel_error`, per dtype and kind of reference.
#: float32 results are compared with a float64 reference: a JVP/VJP's cancellation in
#: ``v - <y, v>`` costs up to a few dozen float32 ulps (eps = 1.2e-7) normwise.
THRESHOLDS: dict[tuple[str, str], float] = {
    ("float64", "autodiff"): 1e-10,
    ("float64", "finite differences"): 1e-7,
    ("float32", "autodiff"): 1e-5,
    ("float32", "finite differences"): 1e-5,
}


def rel_error(actual: Any, expected: Any) -> float:
    """``max|actual - expected| / max|expected|`` in float64; ``inf`` for a shape mismatch or
    a non-finite ``actual``; 0 for empty arrays."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return math.inf
    if expected.size == 0:
        return 0.0
    if not np.all(np.isfinite(actual)):
        return math.inf
    scale = max(float(np.max(np.abs(expected))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(actual - expected))) / scale


def fd_jacobian(
    fn: Callable[[NDArray], NDArray],
    rows: NDArray,
    mask: NDArray | None = None,
    h: float = FD_STEP,
) -> NDArray:
    """``J[..., i, j] = d fn(rows)[..., i] / d rows[..., j]`` by central differences, float64.

    ``fn`` maps rows (the softmax axis last) to rows. An output that is ``-inf`` at ``rows`` does
    not move (a masked entry of log_softmax): its derivative is 0, not the NaN of ``-inf - -inf``;
    any other NaN stays. With ``mask``, masked-out outputs and inputs have zero derivative.
    """
    rows = np.asarray(rows, dtype=np.float64)
    c = rows.shape[-1]
    jac = np.zeros((*rows.shape, c))
    with np.errstate(invalid="ignore"):
        still = np.isneginf(fn(rows))
    for j in range(c):
        step = np.zeros(c)
        step[j] = h
        with np.errstate(invalid="ignore"):
            d = (fn(rows + step) - fn(rows - step)) / (2 * h)
        jac[..., :, j] = np.where(still, 0.0, d)
    if mask is not None:
        jac = jac * mask[..., :, None] * mask[..., None, :]
    return jac
