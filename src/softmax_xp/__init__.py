"""softmax_xp: softmax, log_softmax, logsumexp and the softmax cross-entropies, their Jacobians,
JVPs and VJPs on every array library.

Written once against the Python array API standard and dispatched through array-api-compat to
NumPy, PyTorch, JAX, CuPy, Dask and array-api-strict. Importing it imports neither torch nor jax.
"""

from ._api import (
    log_softmax,
    log_softmax_jacobian,
    log_softmax_jvp,
    log_softmax_vjp,
    logsumexp,
    logsumexp_jvp,
    logsumexp_vjp,
    softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
    softmax_jacobian,
    softmax_jvp,
    softmax_vjp,
)
from ._operator import LogSoftmaxJacobian, SoftmaxJacobian

__version__ = "0.1.0"

__all__ = [
    "LogSoftmaxJacobian",
    "SoftmaxJacobian",
    "log_softmax",
    "log_softmax_jacobian",
    "log_softmax_jvp",
    "log_softmax_vjp",
    "logsumexp",
    "logsumexp_jvp",
    "logsumexp_vjp",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "softmax_jacobian",
    "softmax_jvp",
    "softmax_vjp",
]
