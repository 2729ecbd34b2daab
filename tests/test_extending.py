"""README "Extending": a new acquisition method is one module-like object and one `register`
line, and runs end to end in the simulator with its options from `--method_options`."""
import types

import jax.numpy as jnp
import numpy as np

from conftest import micro_config
from vl4pose_jax import acquisition, simulate
from vl4pose_jax.acquisition import common


def _least_confident(ctx, *, power: float = 1.0):
    """The records whose heatmap maxima are lowest (mean over joints, raised to `power`)."""
    idx, out = common.stream_outputs(
        ctx, ctx.pool, ("heatmaps_BxHxWxJ",),
        post=lambda o: {"s": -jnp.mean(jnp.max(o["heatmaps_BxHxWxJ"], axis=(1, 2)), -1) ** power},
        post_key=("least_confident", power), desc="least confident", gather=False)
    return acquisition.Selection(indices=common.top_pool(out["s"], idx, common.num_to_select(ctx)),
                                 scores=out["s"], scored_indices=idx)


LEAST_CONFIDENT = types.SimpleNamespace(select=_least_confident, TASKS=("heatmap",),
                                        SCORES_RECORDS=True)


def test_a_registered_method_runs_end_to_end(tmp_path, monkeypatch):
    # registered for this test only (other tests list every method)
    monkeypatch.setattr(acquisition, "_REGISTERED", dict(acquisition._REGISTERED))  # pylint: disable=protected-access
    acquisition.register("least_confident", LEAST_CONFIDENT)
    method = acquisition.get("least_confident")
    assert method.scores_records and method.aux_head("heatmap") is None
    cfg = micro_config(str(tmp_path / "data"), methods=("least_confident", "random"),
                       method_options={"least_confident": {"power": 1.0}})
    rows = simulate.run(cfg, tmp_path / "w", log=lambda *_: None)
    mine = [r for r in rows if r["method"] == "least_confident"]
    assert [r["round"] for r in mine] == [0, 1]
    assert len(mine[0]["selected_ids"]) == 4 and "test_spearman" in mine[0]
    assert np.isfinite(mine[1]["metrics"]["pck@0.2"])
    # round 0 is shared: the same model for both methods
    assert mine[0]["metrics"] == next(r for r in rows if r["method"] == "random")["metrics"]
