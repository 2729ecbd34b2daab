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


def _write_top_txt(job, folder):
    """A toy annotation format: the top inputs' file names, one per line."""
    (folder / "top.txt").write_text("".join(job.scored.inputs.names[p] + "\n" for p in job.top))


def test_a_registered_export_format_is_written(tmp_path, monkeypatch):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    from vl4pose_jax import export, rank, skeletons  # pylint: disable=import-outside-toplevel
    monkeypatch.setitem(export.FORMATS, "top_txt", _write_top_txt)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (40 * i, 0, 0)).save(images / f"im{i}.png")
    inputs = rank.open_inputs(images)
    scores = np.array([0.5, 2.0, 1.0])
    order = rank._crop_order(scores, np.zeros(0, np.int64), np.ones(3, bool))  # pylint: disable=protected-access
    image_order, image_score, image_rank = rank._image_ranking(  # pylint: disable=protected-access
        inputs, order, scores, np.ones(3, bool))
    joints = np.random.default_rng(0).uniform(0, 30, (3, 14, 2))
    scored = rank.Scored(inputs, skeletons.lsp14, "toy", scores, joints,
                         np.tile([40, 30], (3, 1)), np.tile([20.0, 15.0, 40.0], (3, 1)),
                         np.ones(3, bool), order, image_score, image_order, image_rank, [])
    category = {"id": 1, "name": "person", "keypoints": list(skeletons.lsp14.names),
                "skeleton": [[a + 1, b + 1] for a, b in skeletons.lsp14.links]}
    out = export.write(scored, tmp_path / "out", top_k=2, category=category,
                       formats=["top_txt", "coco"])
    assert (out / "top.txt").read_text() == "im1.png\nim2.png\n"
    assert (out / "top_k.coco.json").is_file() and not (out / "label_studio").exists()
    assert (out / "ranking.csv").is_file() and (out / "gallery.png").is_file()


def test_a_registered_dataset_runs_end_to_end(tmp_path):
    import toy_dataset  # pylint: disable=import-outside-toplevel
    from vl4pose_jax import protocol  # pylint: disable=import-outside-toplevel
    name = toy_dataset.register_toy()
    assert protocol.protocol_of(name) == protocol.PROTOCOLS["lsp"]   # no protocol: its kind's
    cfg = micro_config(str(tmp_path / "data"), dataset=name, data_config=None,
                       methods=("vl4pose",), init_size=8)
    rows = simulate.run(cfg, tmp_path / "w", log=lambda *_: None)
    assert [(r["method"], r["round"]) for r in rows] == [("vl4pose", 0), ("vl4pose", 1)]
    assert all(len(r["per_joint"]["pck@0.2"]) == 5 for r in rows)
    assert all(i.startswith("pool/") for i in rows[0]["selected_ids"])
    assert rows[0]["num_labelled"] == 8 and rows[1]["num_labelled"] == 12
