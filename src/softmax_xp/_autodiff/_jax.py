"""Layer 4: jax autodiff adapter (softmax / log_softmax differentiable through our own rules)."""

from __future__ import annotations
