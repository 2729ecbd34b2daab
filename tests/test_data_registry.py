"""The dataset registry (`vl4pose_jax.data.registry`): the built-in datasets, the spec lookup, and
a dataset of the tests' own (`toy_dataset`) added with one `register` call, built and loaded."""
import numpy as np
import pytest

import toy_dataset
from vl4pose_jax import data, skeletons
from vl4pose_jax.data import builders, real_builders, registry

BUILT_IN = ["lsp", "lspet", "mpii", "icvl", "nyu", "coco_keypoints", "synthetic_human",
            "synthetic_hand"]


def test_built_in_datasets_and_specs():
    assert registry.names()[:len(BUILT_IN)] == BUILT_IN
    assert set(BUILT_IN) <= set(data.SPECS)
    assert data.SPECS["mpii"] is data.spec("mpii") and data.spec("mpii").metric == "pckh"
    assert data.spec("icvl").intrinsics == data.INTRINSICS["icvl"]
    assert data.spec("coco_keypoints", data_dir="/nonexistent").skeleton is None  # not prepared
    with pytest.raises(KeyError, match=r"unknown dataset 'nope'; known: \['coco_keypoints'"):
        data.spec("nope")
    assert "nope" not in data.SPECS
    for name in ("lsp", "lspet", "mpii", "icvl", "nyu"):  # carved from the training side
        assert data.spec(name).splits[-2:] == ("validation", "test"), name
    assert data.spec("lsp").splits == ("train", "pool", "validation", "test")
    assert "validation" in data.spec("coco_keypoints", data_dir="/nonexistent").splits


def test_download_help_names_every_dataset():
    lines = registry.download_help().splitlines()
    assert lines[0].startswith("  lsp: LSP: http")
    assert any(line.startswith("  coco_keypoints: your own data.") for line in lines)
    # the built-ins' lines (datasets registered later, e.g. the toy one, follow them)
    assert any(line.startswith("  synthetic_human, synthetic_hand: built-in generators")
               for line in lines)


def test_register_refuses_conflicts():
    toy_dataset.register_toy()
    assert toy_dataset.register_toy() == "toy_pose"  # the same again: a no-op
    lsp_spec = data.spec("lsp")

    class OtherLspet(real_builders.Lspet, skip_registration=True):
        name = "lspet"

    with pytest.raises(ValueError, match="'lspet' is already registered"):
        data.register("lspet", data.spec("lspet"), OtherLspet)
    with pytest.raises(ValueError, match="spec is named 'lsp'"):
        data.register("other", lsp_spec, real_builders.Lsp)
    with pytest.raises(ValueError, match="builder Lsp is named 'lsp'"):
        data.register("other", data.DatasetSpec("other", "human", skeletons.lsp14, ("test",)),
                      real_builders.Lsp)
    assert "other" not in data.SPECS


def test_toy_dataset_builds_and_loads(tmp_path):
    name = toy_dataset.register_toy()
    assert name in data.SPECS and data.spec(name) == toy_dataset.SPEC
    assert "--manual_dir" not in builders.prepare_command(name)
    with pytest.raises(data.DatasetNotPreparedError, match=f"--dataset={name}"):
        data.load(name, "pool", data_dir=tmp_path)
    data.build(name, data_dir=tmp_path)
    sizes = {split: len(data.load(name, split, data_dir=tmp_path))
             for split in data.spec(name).splits}
    assert sizes == toy_dataset.SIZES
    pool = data.load(name, "pool", data_dir=tmp_path)
    assert pool.skeleton.name == "toy5" and pool.ids()[:2] == ["pool:000", "pool:001"]
    batch = next(iter(data.make_loader(pool, batch_size=8, seed=0, train=True, image_size=64)))
    assert batch["image"].shape == (8, 64, 64, 3) and batch["heatmaps"].shape == (8, 16, 16, 5)
    assert batch["visible"].sum() > 0.9 * batch["visible"].size and not batch["ood"].any()
    # A second folder, built on first use: the same records.
    again = data.load(name, "pool", data_dir=tmp_path / "again", build_if_missing=True)
    for i in (0, 31):
        assert again[i]["image"] == pool[i]["image"]
        np.testing.assert_array_equal(again[i]["joints"], pool[i]["joints"])
