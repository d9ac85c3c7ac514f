"""The shared references of ``softmax_xp._testing`` against independent ones."""

from __future__ import annotations

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
    np.testing.assert_allclose(got[0], np.diag([1.0, 0.0, 4.0]), atol=1e-8)


def test_rel_error() -> None:
    assert _testing.rel_error(np.ones(3), np.ones(4)) == math.inf
    assert _testing.rel_error(np.array([1.0, np.nan]), np.ones(2)) == math.inf
    assert _testing.rel_error(np.array([1.0, 2.5]), np.array([1.0, 2.0])) == pytest.approx(0.25)
    assert _testing.rel_error(np.zeros(0), np.zeros(0)) == 0.0
