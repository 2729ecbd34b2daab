"""Data-parallel training over 4 forced CPU devices equals single-device training."""
import os
import pathlib
import subprocess
import sys

import numpy as np

from vl4pose_jax import parallel

_SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np, optax
from vl4pose_jax import heatmaps, models, parallel, skeletons, train
assert len(jax.devices()) == 4
skeleton = skeletons.lsp14
model = models.StackedHourglass(num_joints=14, num_stacks=1, channels=16, depth=1)
aux = models.AuxNet(head="vl4pose_heatmap", num_links=skeleton.num_links)
rng = np.random.default_rng(0)
joints = rng.uniform(1, 6, (8, 14, 2)).astype(np.float32)
visible = np.ones((8, 14), np.float32)
batch = {"image": rng.random((8, 32, 32, 3), np.float32),
         "heatmaps": np.asarray(heatmaps.gaussian_targets(joints, visible, 8, 8)[0]),
         "joints": joints, "visible": visible, "id": np.array(["x"] * 8)}
tx = optax.sgd(1e-2)  # Adam's first steps are ~lr*sign(g): they amplify float noise
initial = train.init_heatmap_state(model, aux, jax.random.key(0), 32, tx, tx)
results = []
for mesh in (None, parallel.data_mesh()):
    step = train.make_heatmap_train_step(model, aux, tx, tx, skeleton=skeleton)
    state = parallel.replicate(jax.tree_util.tree_map(jnp.copy, initial), mesh)  # steps donate
    sharded = parallel.shard_batch(batch, mesh)
    if mesh is not None:
        assert "id" not in sharded
        assert {s.data.shape[0] for s in sharded["image"].addressable_shards} == {2}
    state, logs = step(state, sharded)  # one step: later steps compound float noise
    results.append(jax.tree_util.tree_map(np.asarray, (state.params, state.batch_stats,
                                                      state.aux_params)))
for a, b in zip(jax.tree_util.tree_leaves(results[0]), jax.tree_util.tree_leaves(results[1])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
print("OK")
"""


def test_training_on_four_devices_matches_one_device():
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_single_device_helpers_are_identity_and_check_divisibility():
    assert parallel.data_mesh([object()]) is None
    batch = {"x": np.ones((3, 2)), "id": np.array(["a", "b", "c"])}
    assert set(parallel.shard_batch(batch, None)) == {"x"}
    assert parallel.replicate({"a": 1}, None) == {"a": 1}
