"""Regression tests from two published worked examples (docs/design.md, "Tests").

- 002: neuralthreads, "Softmax function and its Jacobian" (chapter 3.7): x = [0.25, -1, 2.3,
  -0.2, 1], its softmax and 5x5 Jacobian printed to 8 decimals.
- 003: the CMU 11-785 notes on the softmax class: the 2x3 batch Z = [[1, 2, 3], [2, 2, 1]], A
  rounded to two decimals, J(1) computed from the rounded A, and dLdZ from the notes' own
  double-loop backward.
The expected figures are the printed numbers of those examples, so the tolerances are their
printed precision.
"""

from __future__ import annotations

import numpy as np
from _support import Lib, assert_close

import softmax_xp as sx
from softmax_xp._testing import (
    F64_JACOBIAN_FORMULA,
    PRINTED_2_DECIMALS,
    PRINTED_4_DECIMALS,
    PRINTED_8_DECIMALS,
    ROUNDED_INPUT_2_DECIMALS,
)

# example 002 (neuralthreads), printed output of softmax(x) and softmax_dash(x)
X_002 = np.array([0.25, -1.0, 2.3, -0.2, 1.0])
Y_002 = np.array([0.08468093, 0.02426149, 0.6577931, 0.05399495, 0.17926953])
J_002 = np.array(
    [
        [0.07751007, -0.00205449, -0.05570253, -0.00457234, -0.01518071],
        [-0.00205449, 0.02367287, -0.01595904, -0.00131, -0.00434935],
        [-0.05570253, -0.01595904, 0.22510134, -0.0355175, -0.11792226],
        [-0.00457234, -0.00131, -0.0355175, 0.05107949, -0.00967965],
        [-0.01518071, -0.00434935, -0.11792226, -0.00967965, 0.14713197],
    ]
)

# example 003 (CMU 11-785)
Z_003 = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 1.0]])
A_003 = np.array([[0.09, 0.24, 0.67], [0.42, 0.42, 0.16]])  # printed to 2 decimals
J1_003 = np.array(  # from the rounded A(1), as printed
    [[0.0819, -0.0216, -0.0603], [-0.0216, 0.1824, -0.1608], [-0.0603, -0.1608, 0.2211]]
)
J2_003 = np.array(
    [[0.2436, -0.1764, -0.0672], [-0.1764, 0.2436, -0.0672], [-0.0672, -0.0672, 0.1344]]
)
DLDA_003 = np.array([[0.1, -0.2, 0.1], [-0.1, 0.3, -0.2]])


def _cmu_batch_backward(a: np.ndarray, dlda: np.ndarray) -> np.ndarray:
    """The notes' own backward: an explicit Jacobian per row, filled by a double loop."""
    n, c = dlda.shape
    dldz = np.zeros_like(dlda)
    for i in range(n):
        jac = np.zeros((c, c))
        for m in range(c):
            for k in range(c):
                jac[m, k] = a[i, m] * (1 - a[i, m]) if m == k else -a[i, m] * a[i, k]
        dldz[i, :] = dlda[i, :] @ jac
    return dldz


def test_neuralthreads_softmax_and_jacobian(lib: Lib) -> None:
    y = lib.call(sx.softmax, lib.asarray(X_002))
    tol = PRINTED_8_DECIMALS
    assert_close(lib, y, Y_002, dtype="float64", **tol.kw)
    assert_close(lib, lib.call(sx.softmax_jacobian, y), J_002, dtype="float64", **tol.kw)
    # example 002's column-vector form: softmax over axis 0 of a (5, 1) array, J of shape (1, 5, 5)
    y_col = lib.call(sx.softmax, lib.asarray(X_002[:, None]), axis=0)
    assert_close(
        lib,
        lib.call(sx.softmax_jacobian, y_col, axis=0),
        J_002[None],
        dtype="float64",
        **tol.kw,
    )


def test_cmu_batch(lib: Lib) -> None:
    a = lib.call(sx.softmax, lib.asarray(Z_003))
    assert_close(lib, a, A_003, dtype="float64", **PRINTED_2_DECIMALS.kw)
    # The notes' J(1), J(2) were computed from A rounded to 2 decimals: compare ours on that A,
    # and ours on the exact A to the rounding error it implies (|dJ| <= 2 * 0.005).
    jac_rounded = lib.call(sx.softmax_jacobian, lib.asarray(A_003))
    assert_close(
        lib, jac_rounded, np.stack([J1_003, J2_003]), dtype="float64", **PRINTED_4_DECIMALS.kw
    )
    assert_close(
        lib,
        lib.call(sx.softmax_jacobian, a),
        np.stack([J1_003, J2_003]),
        dtype="float64",
        **ROUNDED_INPUT_2_DECIMALS.kw,
    )
    dldz = lib.call(sx.softmax_vjp, a, lib.asarray(DLDA_003))
    assert_close(
        lib,
        dldz,
        _cmu_batch_backward(lib.to_numpy(a), DLDA_003),
        dtype="float64",
        **F64_JACOBIAN_FORMULA.kw,
    )
