"""
Out of core with Dask
=====================

A softmax and its backward pass over a lazy Dask array, chunked along the class axis too, that is
streamed through memory chunk by chunk: no task holds more than one block of an operand, and
only a few numbers per row travel between the blocks of a row. The array here is small enough
for the docs build; the same code runs on arrays larger than memory (see the scaling page).
"""

import os
import time

import dask
import dask.array as da
import numpy as np

import softmax_xp as sx

ROWS = 2048 if os.environ.get("SOFTMAX_XP_GALLERY_QUICK") else 16384
CLASSES, CHUNKS = 8192, (512, 2048)  # each row is split over 4 chunks

rng = da.random.default_rng(0)
x = 8 * rng.random((ROWS, CLASSES), dtype="float32", chunks=CHUNKS)
y = sx.softmax(x)  # lazy
dx = sx.softmax_vjp(y, da.cos(x))  # lazy backward pass, from the output only
checks = [
    da.max(da.abs(y.astype("float64").sum(axis=-1) - 1)),
    da.max(da.abs(dx.astype("float64").sum(axis=-1))),
]
print(f"input {x.nbytes / 2**20:.0f} MiB in blocks of {x.blocks[0, 0].nbytes / 2**20:.0f} MiB")
graph = {}
for c in checks:
    graph.update(dict(c.__dask_graph__()))
print(f"tasks in the graph: {len(graph)}")

t0 = time.perf_counter()
sum_err, vjp_sum = dask.compute(*checks, scheduler="threads")
print(f"computed in {time.perf_counter() - t0:.2f} s (threaded scheduler)")
print(f"max |sum(y) - 1| = {sum_err:.1e}, max |sum(dx)| = {vjp_sum:.1e}")
assert sum_err <= 1e-6
assert vjp_sum <= 1e-6

# %%
# One row block, against NumPy on the same data.

block = x.blocks[0, :].compute()
assert np.allclose(y.blocks[0, :].compute(), sx.softmax(block), rtol=1e-6, atol=0)
print("the first row block matches sx.softmax on the NumPy block")
