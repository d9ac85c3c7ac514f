"""Layer 4: torch autodiff adapter (softmax / log_softmax differentiable through our own rules)."""

from __future__ import annotations
