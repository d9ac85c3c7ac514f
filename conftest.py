"""Root conftest: doctests run on the public modules only.

Framework-specific modules (autodiff adapters, backend fast paths, the command) import torch or
jax when an array of theirs arrives; collecting them for doctests would import frameworks that a
session may not have installed.
"""

collect_ignore_glob = [
    "src/softmax_xp/_autodiff/*",
    "src/softmax_xp/_backends/*",
    "src/softmax_xp/_cli/*",
    "src/softmax_xp/__main__.py",
    "bench/out_of_core.py",
    "bench/report.py",
    "noxfile.py",
]
