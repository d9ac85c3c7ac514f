"""
Multinomial logistic regression by Newton-CG
============================================

The Hessian of the multinomial logistic loss is ``X^T J X`` per sample, with ``J`` the softmax
Jacobian ``diag(p) - p p^T`` of that sample's predicted probabilities. A Newton-CG (here a
trust-region Newton-CG) solver needs only Hessian-vector products, and
:class:`softmax_xp.SoftmaxJacobian` gives ``J v`` from the probabilities alone: the dense
``(640, 640)`` Hessian of this problem (64 pixels x 10 classes) is never formed, nor is any
per-sample ``(10, 10)`` Jacobian.

The optimum is compared with :class:`sklearn.linear_model.LogisticRegression` under the same L2
penalty on scikit-learn's digits data (shipped with scikit-learn, no download).
"""

import time
import tracemalloc

import numpy as np
from scipy.optimize import minimize
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import softmax_xp as sx

X, labels = load_digits(return_X_y=True)
X = X / 16.0  # pixels in [0, 1]
n, d = X.shape
k = int(labels.max()) + 1
Y = np.eye(k)[labels]  # one-hot, (n, k)
C = 1.0  # scikit-learn's inverse regularisation strength

# %%
# The objective of scikit-learn's L2-penalised multinomial model without intercept:
# ``C * sum_i -log p_i[y_i] + ||W||^2 / 2``, ``W`` of shape (k, d).


def loss_grad(w):
    W = w.reshape(k, d)
    Z = X @ W.T
    L = sx.log_softmax(Z)
    loss = -C * np.sum(L * Y) + 0.5 * np.dot(w, w)
    P = np.exp(L)
    grad = C * (P - Y).T @ X + W
    return loss, grad.ravel()


def hessp(w, v):
    """H v = C X^T J(p) (X V^T) + v, through SoftmaxJacobian.matvec (J never formed)."""
    W, V = w.reshape(k, d), v.reshape(k, d)
    P = sx.softmax(X @ W.T)
    dZ = sx.SoftmaxJacobian(P).matvec(X @ V.T)  # (n, k): one J v per sample
    return (C * dZ.T @ X + V).ravel()


w0 = np.zeros(k * d)
t0 = time.perf_counter()
res = minimize(loss_grad, w0, jac=True, hessp=hessp, method="trust-ncg", options={"gtol": 1e-9})
t_ours = time.perf_counter() - t0
W_ours = res.x.reshape(k, d)

t0 = time.perf_counter()
clf = LogisticRegression(C=C, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(X, labels)
t_sk = time.perf_counter() - t0
W_sk = clf.coef_

# %%
# Same optimum: the loss to 1e-8 relative, the coefficients to 1e-4.

loss_ours = loss_grad(res.x)[0]
loss_sk = loss_grad(W_sk.ravel())[0]
rel_loss = abs(loss_ours - loss_sk) / abs(loss_sk)
coef_err = float(np.max(np.abs(W_ours - W_sk)))
print(
    f"loss: ours {loss_ours:.12g}, scikit-learn {loss_sk:.12g}, relative difference {rel_loss:.1e}"
)
print(f"coefficients: max |ours - scikit-learn| = {coef_err:.1e}")
assert rel_loss <= 1e-8, rel_loss
assert coef_err <= 1e-4, coef_err

# %%
# Wall time and the memory a Hessian-vector product needs, against the dense Hessian.

tracemalloc.start()
hessp(res.x, np.ones(k * d))
_, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
dense = (k * d) ** 2 * 8
print(
    f"wall time: trust-ncg with SoftmaxJacobian.matvec {t_ours:.3f} s "
    f"({res.nit} iterations, {res.nhev} Hessian-vector products); "
    f"scikit-learn lbfgs {t_sk:.3f} s"
)
print(
    f"Hessian: dense ({k * d}, {k * d}) float64 would be {dense / 2**20:.2f} MiB; "
    f"one product here peaks at {peak / 2**20:.2f} MiB of temporaries ((n, k) arrays), "
    f"and no (k, k) Jacobian or (k d, k d) Hessian is formed"
)
