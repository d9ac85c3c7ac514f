"""The shared references of ``softmax_xp._testing`` against independent ones."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import scipy.special

from softmax_xp import _testing


def test_fd_jacobian_matches_torch_autograd() -> None:
    torch = pytest.importorskip("torch")
    rows = np.random.default_rng(3).normal(size=(3, 5))
    for log, fn in ((False, scipy.special.softmax), (True, scipy.special.log_softmax)):
        got = _testing.fd_jacobian(lambda r, fn=fn: fn(r, axis=-1), rows)
        tfn = torch.log_softmax if log else torch.softmax
        want = torch.func.vmap(torch.func.jacrev(lambda t, tfn=tfn: tfn(t, -1)))(
            torch.from_numpy(rows)
        ).numpy()
        rtol, atol = _testing.FD_TOLERANCE
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def test_fd_jacobian_mask_zeroes_masked_rows_and_columns() -> None:
    rows = np.array([[0.5, -1.0, 2.0]])
    mask = np.array([[True, False, True]])
    got = _testing.fd_jacobian(lambda r: r**2, rows, mask)
    np.testing.assert_allclose(got[0], np.diag([1.0, 0.0, 4.0]), **_testing.FD_QUADRATIC.kw)


def test_rel_error() -> None:
    assert _testing.rel_error(np.ones(3), np.ones(4)) == math.inf
    assert _testing.rel_error(np.array([1.0, np.nan]), np.ones(2)) == math.inf
    assert _testing.rel_error(np.array([1.0, 2.5]), np.array([1.0, 2.0])) == pytest.approx(0.25)
    assert _testing.rel_error(np.zeros(0), np.zeros(0)) == 0.0


def _named() -> dict[str, object]:
    """The named tolerances and factors: every exported upper-case name but the two tables."""
    return {
        n: getattr(_testing, n)
        for n in _testing.__all__
        if n.isupper() and n not in ("TOLERANCES", "THRESHOLDS", "FD_STEP")
    }


def test_every_named_tolerance_is_exported_and_documented() -> None:
    tolerances = {
        n for n, v in vars(_testing).items() if isinstance(v, _testing.Tolerance) and n.isupper()
    }
    assert tolerances <= set(_testing.__all__)
    lines = inspect.getsource(_testing).splitlines()
    for name, value in _named().items():
        assert isinstance(value, (_testing.Tolerance, int)), name
        if isinstance(value, _testing.Tolerance):
            assert value.rtol >= 0, name
            assert value.atol >= 0, name
            assert value.kw == {"rtol": value.rtol, "atol": value.atol}
        (at,) = [i for i, ln in enumerate(lines) if ln.startswith(f"{name} = ")]
        assert lines[at - 1].startswith("#:"), f"{name} has no doc comment saying why"
    assert _testing.Tolerance.absolute(0.5) == (0.0, 0.5)
    assert all(isinstance(t, _testing.Tolerance) for t in _testing.TOLERANCES.values())


def test_named_tolerances_hold_what_their_docs_say() -> None:
    t = _testing
    assert t.EXACT == (0.0, 0.0)
    # printed figures: half a unit in the last printed decimal
    printed = {8: t.PRINTED_8_DECIMALS, 4: t.PRINTED_4_DECIMALS, 2: t.PRINTED_2_DECIMALS}
    for decimals, tol in printed.items():
        assert tol == t.Tolerance.absolute(0.5 * float(f"1e-{decimals}"))
    assert t.ROUNDED_INPUT_2_DECIMALS.rtol == 0.0
    assert t.ROUNDED_INPUT_2_DECIMALS.atol == 2 * t.PRINTED_2_DECIMALS.atol
    # bfloat16: one ulp (eps = 2**-7), atol half of it; the VJP twice that
    ml_dtypes = pytest.importorskip("ml_dtypes")
    assert t.BF16_ROUNDED.rtol == float(ml_dtypes.finfo(ml_dtypes.bfloat16).eps)
    assert t.BF16_ROUNDED.atol == t.BF16_ROUNDED.rtol / 2
    assert t.BF16_VJP.rtol == 2 * t.BF16_ROUNDED.rtol
    assert t.BF16_VJP.atol == 2 * t.BF16_ROUNDED.atol
    assert t.HALF_SUM_TO_ONE.atol > 2**-8
    # ulp counts
    f32, f64 = np.finfo(np.float32).eps, np.finfo(np.float64).eps
    assert round(t.F32_SIMPLE_VALUES.rtol / f32) == 8
    assert round(t.F32_VS_TORCH.rtol / f32) == 17
    assert t.F32_JACOBIAN_VS_TORCH.rtol == t.F32_VS_TORCH.rtol
    assert 24 <= t.F64_REORDERED.rtol / f64 <= 99  # a few dozen
    assert round(t.SOLVE_AT_1E308.atol / np.spacing(1e308)) == 5
    assert t.F64_JACOBIAN_FORMULA.atol < t.F64_OTHER_ROUTE.atol
    # finite differences of a quadratic: assert_allclose's default rtol, made explicit
    default = inspect.signature(np.testing.assert_allclose).parameters["rtol"].default
    assert t.FD_QUADRATIC.rtol == default
    # the log identity holds where |l| < log(1000)
    assert math.log(1000) <= t.LOG_FACTOR
