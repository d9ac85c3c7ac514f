"""What the test suite and ``softmax-xp check`` share: references, errors and tolerances.

- :func:`rel_error`: the max absolute error over the max absolute reference (float64);
- :func:`fd_jacobian`: per-slice Jacobians by float64 central finite differences of any row
  function (the reference the libraries without autodiff are checked against);
- :data:`TOLERANCES`, :data:`FD_TOLERANCE`: ``(rtol, atol)`` of the test suite per dtype, and for
  a finite-difference reference;
- :data:`THRESHOLDS`: ``softmax-xp check``'s pass threshold on :func:`rel_error` per dtype and
  kind of reference;
- the named tolerances (:class:`Tolerance` constants such as :data:`EXACT`) and the named factors
  (such as :data:`SUM_FACTOR`) of the checks that are not "a result of one dtype against a
  float64 reference", each with the reason for its value.

Every tolerance of the test suite is one of these: no test writes a tolerance as a number.

Only NumPy is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, TypedDict

import numpy as np

__all__ = [
    "BF16_PRODUCT_FACTOR",
    "BF16_ROUNDED",
    "BF16_VJP",
    "EXACT",
    "F32_JACOBIAN_VS_TORCH",
    "F32_SIMPLE_VALUES",
    "F32_VS_TORCH",
    "F64_JACOBIAN_FORMULA",
    "F64_LSTSQ",
    "F64_MASKED_ROW",
    "F64_OTHER_ROUTE",
    "F64_REORDERED",
    "F64_TRACE_CANCELS",
    "F64_TRACE_EXACT",
    "FAST_PATH_ULPS",
    "FD_QUADRATIC",
    "FD_STEP",
    "FD_TOLERANCE",
    "HALF_SUM_TO_ONE",
    "HALF_ULPS",
    "LOG_FACTOR",
    "LONGDOUBLE_ULPS",
    "PRINTED_2_DECIMALS",
    "PRINTED_4_DECIMALS",
    "PRINTED_8_DECIMALS",
    "ROUNDED_INPUT_2_DECIMALS",
    "SHIFT_ULPS",
    "SOLVE_AT_1E308",
    "SUM_FACTOR",
    "THRESHOLDS",
    "TOLERANCES",
    "Tolerance",
    "ToleranceKw",
    "fd_jacobian",
    "rel_error",
]

NDArray = np.ndarray[Any, Any]


class ToleranceKw(TypedDict):
    """``rtol=`` and ``atol=`` as keyword arguments."""

    rtol: float
    atol: float


class Tolerance(NamedTuple):
    """An ``(rtol, atol)`` pair: it unpacks as ``rtol, atol = tol``, and ``**tol.kw`` passes it
    to ``np.testing.assert_allclose``, ``torch.testing.assert_close`` and the tests' own
    ``assert_close``."""

    rtol: float
    atol: float

    @property
    def kw(self) -> ToleranceKw:
        return {"rtol": self.rtol, "atol": self.atol}

    @classmethod
    def absolute(cls, atol: float) -> Tolerance:
        """An absolute-only comparison (rtol 0): for values compared in absolute terms, such as
        logs, or a matrix against its own transpose."""
        return cls(0.0, atol)


#: ``(rtol, atol)`` of a result against a float64 reference, by the result's dtype.
TOLERANCES: dict[str, Tolerance] = {
    "float64": Tolerance(1e-9, 1e-12),
    "float32": Tolerance(2e-5, 1e-6),
    "float16": Tolerance(4e-3, 1e-3),
    "bfloat16": Tolerance(3e-2, 8e-3),
}

#: Central finite differences in float64 with step :data:`FD_STEP` carry about 1e-9 relative
#: error (truncation and round-off): the ``(rtol, atol)`` against such a reference.
FD_TOLERANCE = Tolerance(1e-6, 1e-8)
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


# -- named tolerances -----------------------------------------------------------------------------
# The checks that are not "a result of one dtype against a float64 reference" (TOLERANCES), each
# with the reason for its value. A zero rtol or atol is part of the check (an absolute-only or a
# relative-only comparison), not a missing value.

#: The same computation by two routes that must agree bit for bit (a shortcut and the full path
#: it stands for): no rounding may differ.
EXACT = Tolerance(0.0, 0.0)

# float64 against float64
#: A float64 softmax / log_softmax against scipy.special on the same float64 input (rows of 33):
#: only the order of the operations differs, a few dozen ulps (eps = 2.2e-16).
F64_REORDERED = Tolerance(1e-14, 1e-15)
#: A float64 result against a float64 reference reached by another route (torch on the same
#: values, a dense block-diagonal matrix product): sums in another order over short slices; the
#: atol covers products with random vectors that cancel to about 0.
F64_OTHER_ROUTE = Tolerance(1e-12, 1e-14)
#: Float64 Jacobian entries or a VJP against the textbook formula evaluated in float64
#: (``diag(y) - y y^T``, a double loop over the entries): rounding only, on entries of magnitude
#: at most 1/4, hence the smaller atol than :data:`F64_OTHER_ROUTE`.
F64_JACOBIAN_FORMULA = Tolerance(1e-12, 1e-15)
#: A masked float64 row against the float64 reference: relative only, as the masked entries are
#: the same exact 0 (or -inf) on both sides.
F64_MASKED_ROW = Tolerance(1e-12, 0.0)
#: The LogSoftmaxJacobian trace ``C - sum(y)`` against the exact ``C - 1``: the rounding of one
#: float64 sum of C terms, relative.
F64_TRACE_EXACT = Tolerance(1e-14, 0.0)
#: The SoftmaxJacobian trace ``1 - sum(y**2)`` against scipy's probabilities: both sides' roundings
#: of y, then the cancellation in ``1 - sum(y**2)``, relative.
F64_TRACE_CANCELS = Tolerance(1e-13, 0.0)
#: ``solve`` against ``numpy.linalg.lstsq`` on the dense (singular) Jacobian: the conditioning of
#: the system away from its null space multiplies the float64 rounding of either side.
F64_LSTSQ = Tolerance(1e-10, 1e-12)
#: The finite entries of a solve whose slice is at the scale 1e308: XLA under jit reassociates the
#: scaling, so an exact 0 comes out as a few ulps of 1e308 (1e-15 of it is about 5 ulps).
SOLVE_AT_1E308 = Tolerance(0.0, 1e308 * 1e-15)

# float32
#: Exact values (a sum of 1, 1/3, -log 2) from huge or -inf logits, in float32 and float64 alike:
#: about 8 float32 ulps (eps = 1.2e-7); relative only, as none of them is 0.
F32_SIMPLE_VALUES = Tolerance(1e-6, 0.0)
#: float32 kernels against torch's own float32 kernels on the same tensors (rows of 1024): sums
#: in another order, given about 17 float32 ulps (eps = 1.2e-7).
F32_VS_TORCH = Tolerance(2e-6, 1e-6)
#: A float32 dense Jacobian against torch.func.jacrev of torch.softmax (rows of 32): as
#: :data:`F32_VS_TORCH`, with the atol of entries ``y_i y_j`` that are mostly far below 1.
F32_JACOBIAN_VS_TORCH = Tolerance(2e-6, 1e-7)

# half precision
#: A bfloat16 softmax / log_softmax (float32 arithmetic, rounded once) against the float64 result
#: rounded once to bfloat16: one bfloat16 ulp apart (eps = 2**-7), atol half of it.
BF16_ROUNDED = Tolerance(2**-7, 2**-8)
#: A bfloat16 VJP against the float64 formula on the same bfloat16 values: twice
#: :data:`BF16_ROUNDED`, as the cancellation in ``v - <y, v>`` makes its rounding relative to
#: the inputs rather than to the (smaller) result.
BF16_VJP = Tolerance(2**-6, 2**-7)
#: The sum over a row of 4096 float16 / bfloat16 probabilities, each rounded once: at most one
#: rounding of the total (2**-8 for bfloat16) in the worst case, with a wide margin; absolute.
HALF_SUM_TO_ONE = Tolerance(0.0, 3e-2)

# finite differences
#: Central differences of a quadratic are exact but for round-off (about eps * |f| / h, below
#: 1e-9 here at step :data:`FD_STEP`): rtol 1e-7 (assert_allclose's default, which this check has
#: always used) and atol 1e-8 for the entries that are 0.
FD_QUADRATIC = Tolerance(1e-7, 1e-8)

# published examples: their printed precision, absolute
#: Figures printed to 8 decimals: half a unit in the 8th decimal.
PRINTED_8_DECIMALS = Tolerance(0.0, 5e-9)
#: Figures printed to 4 decimals: half a unit in the 4th decimal.
PRINTED_4_DECIMALS = Tolerance(0.0, 5e-5)
#: Figures printed to 2 decimals: half a unit in the 2nd decimal.
PRINTED_2_DECIMALS = Tolerance(0.0, 0.005)
#: A Jacobian ``y_i (delta_ij - y_j)`` whose published figures were computed from y rounded to
#: 2 decimals: each entry moves by at most about 2 x 0.005 = 0.01.
ROUNDED_INPUT_2_DECIMALS = Tolerance(0.0, 0.01)

# -- named factors -----------------------------------------------------------------------------
# Multiples of a TOLERANCES entry or of a dtype's eps, for checks that compound more roundings
# than one result against a reference does.

#: Reference-free identities that sum over a slice (a slice sums to one, a Jacobian's rows sum to
#: zero, ``J v`` against the dense Jacobian times v): every one of the up to 5**3 = 125 entries
#: of the property tests' slices brings its own rounding, so the sum gets ten per-entry tolerances.
SUM_FACTOR = 10
#: ``log(y)`` against ``l`` in absolute terms where ``y > 1e-3``: l's rounding is relative to
#: ``|l| < log(1000) = 6.9``, so up to about 7 of the dtype's rtol; ten of them.
LOG_FACTOR = 10
#: Shift invariance: the shifted logits ``x + c`` are rounded to the dtype, each by up to
#: ``eps * (|c| + max|x|)``; four such roundings of the logits.
SHIFT_ULPS = 4
#: A longdouble softmax / log_softmax against the formula in longdouble (rows of 4): 16
#: longdouble ulps for exp, a short sum, a division and a log.
LONGDOUBLE_ULPS = 16
#: float16 / bfloat16 NumPy fast paths against the formula in longdouble: float32 arithmetic,
#: rounded once to the half dtype, whose error in a JVP / VJP is relative to the inputs: four
#: ulps of the half dtype (2**-10 for float16, 2**-7 for bfloat16), relative and absolute.
HALF_ULPS = 4
#: float32 / float64 / longdouble NumPy fast paths against the formula in longdouble: 64 ulps of
#: the dtype for every level of a blocked sum of C terms (log2(C) + 1 levels).
FAST_PATH_ULPS = 64
#: A Triton bfloat16 JVP / VJP against torch in float64: bfloat16 inputs carry 8 bits and the
#: product's error is relative to the row's scale: four bfloat16 rtols of that scale (plus atol).
BF16_PRODUCT_FACTOR = 4


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
