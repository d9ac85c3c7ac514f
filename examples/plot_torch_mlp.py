"""
A PyTorch MLP trained with softmax_xp.log_softmax
=================================================

A two-layer perceptron on scikit-learn's digits data, trained by full-batch gradient descent in
float64, twice from the same initial weights: once with :func:`softmax_xp.log_softmax` in the
loss (differentiated by softmax_xp's own VJP through ``torch.autograd``), once with
``torch.log_softmax``. The two loss curves agree step for step to 1e-10.
"""

import os
import statistics
import time

import torch
from sklearn.datasets import load_digits

import softmax_xp as sx

STEPS = 5 if os.environ.get("SOFTMAX_XP_GALLERY_QUICK") else 200

X_np, y_np = load_digits(return_X_y=True)
X = torch.tensor(X_np / 16.0, dtype=torch.float64)
y = torch.tensor(y_np)


def train(log_softmax):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10)
    ).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses, times = [], []
    for _ in range(STEPS):
        t0 = time.perf_counter()
        opt.zero_grad()
        logp = log_softmax(model(X))
        loss = -logp[torch.arange(len(y)), y].mean()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    return losses, times


ours, t_ours = train(lambda z: sx.log_softmax(z, axis=-1))
ref, t_ref = train(lambda z: torch.log_softmax(z, dim=-1))

# %%
# The loss curves, step by step.

worst = max(abs(a - b) / abs(b) for a, b in zip(ours, ref, strict=True))
print(f"{STEPS} steps: loss {ref[0]:.6f} -> {ref[-1]:.6f}")
print(f"largest relative difference of the loss curves: {worst:.1e}")
assert worst <= 1e-10, worst

ratio = statistics.median(t_ours) / statistics.median(t_ref)
print(
    f"median step: softmax_xp {statistics.median(t_ours) * 1e3:.3f} ms, "
    f"torch {statistics.median(t_ref) * 1e3:.3f} ms, ratio {ratio:.2f}"
)
