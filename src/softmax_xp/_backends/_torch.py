"""Layer 3: torch fast paths.

Each function here has the signature of its twin in ``softmax_xp._generic`` and returns
``NotImplemented`` where it does not apply. Kernels not defined here use the generic code.
"""

from __future__ import annotations
