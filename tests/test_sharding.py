"""Sharded JAX arrays: on 8 host devices, inputs sharded along the batch axis and along the class
(softmax) axis give the unsharded results under ``jax.jit``; outputs keep the input's sharding.

JAX fixes its device count when it starts, so the work runs in a fresh interpreter with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``; it saves every result and sharding check to
an ``.npz`` file, and the assertions (with the tolerances of ``_support``) run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _support import selected_backends, tolerance

pytest.importorskip("jax")
pytestmark = pytest.mark.skipif(
    not any(b.is_jax for b in selected_backends()),
    reason="JAX sharding runs in the sessions that test a JAX backend",
)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import softmax_xp as sx

    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()).reshape(8), ("d",))
    rng = np.random.default_rng(0)
    N, C = 16, 64
    x_np = rng.normal(size=(N, C)).astype(np.float32)
    v_np = rng.normal(size=(N, C)).astype(np.float32)
    m_np = rng.random((N, C)) > 0.2

    def fns():
        return {
            "softmax": lambda x, v, m: sx.softmax(x),
            "softmax_where": lambda x, v, m: sx.softmax(x, where=m),
            "log_softmax": lambda x, v, m: sx.log_softmax(x),
            "log_softmax_where": lambda x, v, m: sx.log_softmax(x, where=m),
            "softmax_jvp": lambda x, v, m: sx.softmax_jvp(sx.softmax(x), v),
            "softmax_vjp": lambda x, v, m: sx.softmax_vjp(sx.softmax(x), v),
            "log_softmax_jvp": lambda x, v, m: sx.log_softmax_jvp(sx.log_softmax(x), v),
            "log_softmax_vjp": lambda x, v, m: sx.log_softmax_vjp(sx.log_softmax(x), v),
            "softmax_jacobian": lambda x, v, m: sx.softmax_jacobian(sx.softmax(x)),
            "log_softmax_jacobian": lambda x, v, m: sx.log_softmax_jacobian(sx.log_softmax(x)),
            "SoftmaxJacobian.matvec": lambda x, v, m: sx.SoftmaxJacobian(sx.softmax(x)).matvec(v),
            "SoftmaxJacobian.solve": lambda x, v, m: sx.SoftmaxJacobian(sx.softmax(x)).solve(v),
            "LogSoftmaxJacobian.matvec": lambda x, v, m: sx.LogSoftmaxJacobian(
                sx.log_softmax(x)
            ).matvec(v),
        }

    # the unsharded results, on one device
    dev0 = jax.devices()[0]
    plain = [jax.device_put(a, dev0) for a in (x_np, v_np, m_np)]
    out = {}
    checks = {}
    for name, f in fns().items():
        out[f"{name}|unsharded"] = np.asarray(jax.jit(f)(*plain))
    for layout, spec in (("batch", P("d", None)), ("class", P(None, "d"))):
        sh = NamedSharding(mesh, spec)
        args = [jax.device_put(a, sh) for a in (x_np, v_np, m_np)]
        for name, f in fns().items():
            res = jax.jit(f)(*args)
            out[f"{name}|{layout}"] = np.asarray(res)
            if res.ndim == 2:
                wants = [sh]
            else:  # a dense Jacobian (N, C, C): the batch axis keeps its sharding; a class
                # sharding may land on either class axis (J[i, j] = dy_i / dx_j: y's or x's)
                wants = [
                    NamedSharding(mesh, P(spec[0], spec[1], None)),
                    NamedSharding(mesh, P(spec[0], None, spec[1])),
                ]
            checks[f"{name}|{layout}"] = {
                "same_sharding": any(res.sharding.is_equivalent_to(w, res.ndim) for w in wants),
                "sharding": str(res.sharding),
                "n_devices": len(res.sharding.device_set),
                "shard_shape": list(res.sharding.shard_shape(res.shape)),
            }
    np.savez(sys.argv[1], **out)
    with open(sys.argv[2], "w") as fh:
        json.dump(checks, fh)
    """
)

NAMES = [
    "softmax",
    "softmax_where",
    "log_softmax",
    "log_softmax_where",
    "softmax_jvp",
    "softmax_vjp",
    "log_softmax_jvp",
    "log_softmax_vjp",
    "softmax_jacobian",
    "log_softmax_jacobian",
    "SoftmaxJacobian.matvec",
    "SoftmaxJacobian.solve",
    "LogSoftmaxJacobian.matvec",
]


@pytest.fixture(scope="module")
def sharded_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    tmp = tmp_path_factory.mktemp("sharding")
    script, npz, js = tmp / "run.py", tmp / "out.npz", tmp / "checks.json"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, str(script), str(npz), str(js)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"the sharded run failed:\n{proc.stdout}\n{proc.stderr}"
    with np.load(npz) as data:
        results = {k: data[k] for k in data.files}
    return results, json.loads(Path(js).read_text())


@pytest.mark.parametrize("layout", ["batch", "class"])
@pytest.mark.parametrize("name", NAMES)
def test_sharded_matches_unsharded_and_keeps_sharding(
    sharded_run: tuple[dict[str, np.ndarray], dict[str, dict]], name: str, layout: str
) -> None:
    results, checks = sharded_run
    rtol, atol = tolerance("float32")
    np.testing.assert_allclose(
        results[f"{name}|{layout}"],
        results[f"{name}|unsharded"],
        rtol=rtol,
        atol=atol,
        equal_nan=True,
    )
    c = checks[f"{name}|{layout}"]
    assert c["n_devices"] == 8, c
    assert c["same_sharding"], f"{name} with a {layout}-sharded input came back as {c['sharding']}"
