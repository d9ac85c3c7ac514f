"""
A JAX + optax MLP under jax.jit
===============================

The same two-layer perceptron in JAX, trained with optax's Adam in float64 under ``jax.jit``:
once with :func:`softmax_xp.log_softmax` (a ``custom_jvp`` whose rule is softmax_xp's own JVP),
once with ``jax.nn.log_softmax``. The loss curves agree step for step to 1e-10.
"""

import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import softmax_xp as sx

STEPS = 5 if os.environ.get("SOFTMAX_XP_GALLERY_QUICK") else 200

with jax.enable_x64(True):
    X_np, y_np = load_digits(return_X_y=True)
    X = jnp.asarray(X_np / 16.0, dtype=jnp.float64)
    Y = jax.nn.one_hot(jnp.asarray(y_np), 10, dtype=jnp.float64)
    k1, k2 = jax.random.split(jax.random.key(0))
    params0 = {
        "w1": jax.random.normal(k1, (64, 64), dtype=jnp.float64) / 8.0,
        "b1": jnp.zeros(64, dtype=jnp.float64),
        "w2": jax.random.normal(k2, (64, 10), dtype=jnp.float64) / 8.0,
        "b2": jnp.zeros(10, dtype=jnp.float64),
    }
    opt = optax.adam(1e-2)

    def make_step(log_softmax):
        def loss_fn(p):
            h = jnp.tanh(X @ p["w1"] + p["b1"])
            return -jnp.mean(jnp.sum(Y * log_softmax(h @ p["w2"] + p["b2"]), axis=-1))

        @jax.jit
        def step(p, state):
            loss, g = jax.value_and_grad(loss_fn)(p)
            updates, state = opt.update(g, state, p)
            return optax.apply_updates(p, updates), state, loss

        return step

    def train(log_softmax):
        step = make_step(log_softmax)
        p, state = params0, opt.init(params0)
        p, state, _ = step(p, state)  # compile outside the timed loop, then start again
        p, state = params0, opt.init(params0)
        losses, times = [], []
        for _ in range(STEPS):
            t0 = time.perf_counter()
            p, state, loss = step(p, state)
            loss.block_until_ready()
            times.append(time.perf_counter() - t0)
            losses.append(float(loss))
        return np.array(losses), times

    ours, t_ours = train(lambda z: sx.log_softmax(z, axis=-1))
    ref, t_ref = train(lambda z: jax.nn.log_softmax(z, axis=-1))

# %%
# The loss curves, step by step.

worst = float(np.max(np.abs(ours - ref) / np.abs(ref)))
print(f"{STEPS} steps: loss {ref[0]:.6f} -> {ref[-1]:.6f}")
print(f"largest relative difference of the loss curves: {worst:.1e}")
assert worst <= 1e-10, worst

ratio = statistics.median(t_ours) / statistics.median(t_ref)
print(
    f"median jitted step: softmax_xp {statistics.median(t_ours) * 1e3:.3f} ms, "
    f"jax.nn {statistics.median(t_ref) * 1e3:.3f} ms, ratio {ratio:.2f}"
)
