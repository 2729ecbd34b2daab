"""The synthetic TFDS sets (`synthetic_builders`): seeded bytes, OOD shares, the validation
split and its own generator seed, old configs' records unchanged, joints inside the image,
batches."""
import hashlib
import io
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from vl4pose_jax.data import builders, loader, synthetic
from vl4pose_jax.data.synthetic_builders import (CONFIGS, MAX_SEED, SPLITS, _png,
                                                 generator_seed)

TINY = {c.name: c for c in CONFIGS}["tiny"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    for name in ("synthetic_human", "synthetic_hand"):
        builders.build(name, config="tiny", data_dir=root / "a")
    return root


def _records(name, split, data_dir, config="tiny"):
    src = loader.load(name, split, data_dir=data_dir, config=config)
    return [src[i] for i in range(len(src))]


def test_same_seed_gives_identical_bytes(built):
    builders.build("synthetic_human", config="tiny", data_dir=built / "b")
    for split in SPLITS:
        a = _records("synthetic_human", split, built / "a")
        b = _records("synthetic_human", split, built / "b")
        assert [x["id"] for x in a] == [y["id"] for y in b]
        for x, y in zip(a, b):
            assert x["image"] == y["image"]
            np.testing.assert_array_equal(x["joints"], y["joints"])
    shards_a = sorted((built / "a" / "synthetic_human").rglob("*.array_record*"))
    shards_b = sorted((built / "b" / "synthetic_human").rglob("*.array_record*"))
    assert [p.name for p in shards_a] == [p.name for p in shards_b]
    for pa, pb in zip(shards_a, shards_b):
        assert pa.read_bytes() == pb.read_bytes()
    # the stored pixels are exactly the generator's (pool = generator seed 3 * 0 + 1)
    pool = _records("synthetic_human", "pool", built / "a")
    kinds = synthetic.assign_ood(TINY.num_pool, TINY.ood_fraction, 1)
    ex = synthetic.human_example(1, 5, image_size=TINY.image_size, ood_kind=str(kinds[5]))
    assert pool[5]["image"] == _png(ex["image"])
    assert pool[5]["id"].decode() == "pool:" + ex["id"]


@pytest.mark.parametrize("name", ["synthetic_human", "synthetic_hand"])
def test_ood_shares(built, name):
    sizes = TINY.sizes()
    for split in SPLITS:
        ood = np.array([r["ood"] for r in _records(name, split, built / "a")])
        assert len(ood) == sizes[split]
        expected = 0 if split == "train" else int(np.floor(TINY.ood_fraction * sizes[split] + 0.5))
        assert (ood > 0).sum() == expected
        if expected >= 2:
            assert set(np.unique(ood)) == {0, 1, 2}  # both OOD kinds present
    all_ids = sum((loader.load(name, s, data_dir=built / "a", config="tiny").ids()
                   for s in SPLITS), [])
    assert len(set(all_ids)) == len(all_ids)  # splits never share an example


def test_validation_has_its_own_generator_seed(built):
    seeds = [generator_seed(split, s) for s in (0, 1, 2, 5, MAX_SEED - 1) for split in SPLITS]
    assert len(set(seeds)) == len(seeds)
    assert [generator_seed(split, 4) for split in SPLITS[:3]] == [12, 13, 14]
    with pytest.raises(ValueError):
        generator_seed("validation", MAX_SEED)
    # Its records are the generator's at that seed and share no image with another split.
    val = _records("synthetic_human", "validation", built / "a")
    kinds = synthetic.assign_ood(TINY.num_validation, TINY.ood_fraction,
                                 generator_seed("validation", 0))
    ex = synthetic.human_example(generator_seed("validation", 0), 3,
                                 image_size=TINY.image_size, ood_kind=str(kinds[3]))
    assert val[3]["image"] == _png(ex["image"])
    assert val[3]["id"].decode() == "validation:synthetic_human/300000000/0000003"
    others = {r["image"] for split in SPLITS[:3]
              for r in _records("synthetic_human", split, built / "a")}
    assert not others & {r["image"] for r in val}
    report = json.loads((pathlib.Path(builders.get_builder(
        "synthetic_human", data_dir=built / "a", config="tiny").data_dir)
                         / "build_report.json").read_text())
    assert report["splits"]["validation"] == report["built_splits"]["validation"] == 16


def _digest(name, split, data_dir, config="tiny", version=None):
    """sha256 (16 hex digits) of a split's ids, decoded pixels and labels, in record order."""
    builder = builders.get_builder(name, data_dir=data_dir, config=config, version=version)
    h = hashlib.sha256()
    for r in builder.as_data_source(split):
        h.update(r["id"])
        h.update(np.asarray(Image.open(io.BytesIO(r.get("image", r.get("depth"))))).tobytes())
        for key in ("joints", "visibility", "normalizer", "ood"):
            if key in r:
                h.update(np.asarray(r[key]).tobytes())
    return h.hexdigest()[:16]


# The tiny config's train / pool / test as built by version 1.1.0 (before the validation split).
TINY_1_1_DIGESTS = {
    "synthetic_human": {"train": "21c2fbbf0198b786", "pool": "a0071117cab5ad4d",
                        "test": "0bc4862eda4f8ada"},
    "synthetic_hand": {"train": "13e437072a8044ec", "pool": "bfb393ac1e1eca49",
                       "test": "a80c89ca83eaf437"},
}


@pytest.mark.parametrize("name", ["synthetic_human", "synthetic_hand"])
def test_old_configs_keep_their_train_pool_and_test(built, name, tmp_path):
    assert {s: _digest(name, s, built / "a") for s in SPLITS[:3]} == TINY_1_1_DIGESTS[name]
    # Version 1.1.0 still builds: the same three splits, byte for byte, and no validation.
    old = builders.get_builder(name, data_dir=tmp_path, config="tiny", version="1.1.0")
    old.download_and_prepare()
    assert list(old.info.splits) == list(SPLITS[:3])
    new = pathlib.Path(builders.get_builder(name, data_dir=built / "a", config="tiny").data_dir)
    for split in SPLITS[:3]:
        (shard_old,), (shard_new,) = (sorted(pathlib.Path(d).glob(f"*-{split}.array_record*"))
                                      for d in (old.data_dir, new))
        assert shard_old.read_bytes() == shard_new.read_bytes()


@pytest.mark.parametrize("name", ["synthetic_human", "synthetic_hand"])
def test_old_configs_keep_their_train_pool_and_test(built, name, tmp_path):
    assert {s: _digest(name, s, built / "a") for s in SPLITS[:3]} == TINY_1_1_DIGESTS[name]
    # TFDS generates only the current version; 1.1.0 stays a version that opens when built.
    old = builders.get_builder(name, data_dir=tmp_path, config="tiny", version="1.1.0")
    assert str(old.version) == "1.1.0" and not old.is_prepared()
    with pytest.raises(ValueError, match="too old"):
        old.download_and_prepare()


def test_families_config_draws_rare_poses_from_the_families(tmp_path):
    builders.build("synthetic_human", config="families_tiny", data_dir=tmp_path)
    cfg = {c.name: c for c in CONFIGS}["families_tiny"]
    test = _records("synthetic_human", "test", tmp_path, "families_tiny")
    seed = generator_seed("test", cfg.seed)
    kinds = synthetic.assign_ood(cfg.num_test, cfg.ood_fraction, seed)
    assert [int(r["ood"]) for r in test] == [synthetic.OOD_KINDS.index(k) for k in kinds]
    for i in np.flatnonzero(kinds == "rare_pose"):
        ex = synthetic.human_example(seed, i, image_size=cfg.image_size, ood_kind="rare_pose",
                                     rare_poses="families")
        np.testing.assert_array_equal(test[i]["joints"], ex["joints"])
    assert {s: len(_records("synthetic_human", s, tmp_path, "families_tiny"))
            for s in SPLITS} == cfg.sizes()
    # The full config: the per-kind counts the CPU regime needs.
    full = {c.name: c for c in CONFIGS}["families"]
    for split in ("test", "validation"):
        kinds = synthetic.assign_ood(full.sizes()[split], full.ood_fraction,
                                     generator_seed(split, full.seed))
        assert (kinds == "rare_pose").sum() >= 100 and (kinds == "appearance").sum() >= 100
    assert (synthetic.assign_ood(full.num_pool, full.ood_fraction, 1) == "rare_pose").sum() >= 500
    assert full.num_train >= 3 * 200
    # Families are people only: the hand builder has no such config.
    with pytest.raises(ValueError, match="families"):
        builders.get_builder("synthetic_hand", data_dir=tmp_path, config="families")


def test_human_joints_inside_the_image(built):
    for split in ("train", "pool", "test"):
        for r in _records("synthetic_human", split, built / "a"):
            lab = r["visibility"] >= 0
            assert lab.sum() >= 4
            assert (r["joints"][lab] >= 0).all() and (r["joints"][lab] <= TINY.image_size - 1).all()
            assert np.isfinite(r["normalizer"]) and r["normalizer"] > 0


def test_hand_joints_inside_the_frame_and_cube(built):
    rows, cols = synthetic.HAND_IMAGE_SHAPE
    recs = _records("synthetic_hand", "pool", built / "a")
    for r in recs:
        j = r["joints"]
        assert (j[:, 0] >= 0).all() and (j[:, 0] <= cols - 1).all()
        assert (j[:, 1] >= 0).all() and (j[:, 1] <= rows - 1).all()
    src = loader.load("synthetic_hand", "pool", data_dir=built / "a", config="tiny")
    batch = next(iter(loader.make_loader(src, batch_size=32, seed=0, train=False)))
    assert batch["depth"].shape == (32, 128, 128, 1)
    extent = np.abs(batch["joints"]).max(axis=(1, 2))
    # In distribution, the 250 mm cube around the centre of mass holds the whole hand; clutter
    # close behind an 'appearance' OOD hand may pull the centre of mass off.
    assert extent[batch["ood"] == 0].max() < 1.0 and extent.max() < 1.5
    assert batch["ood"].dtype == np.int32


def test_human_batches_flag_ood(built):
    src = loader.load("synthetic_human", "test", data_dir=built / "a", config="tiny")
    batches = list(loader.make_loader(src, batch_size=8, seed=0, train=False, image_size=64))
    ood = np.concatenate([b["ood"] for b in batches])
    assert ood.shape == (TINY.num_test,) and (ood > 0).sum() == 4
    vis = np.concatenate([b["visible"] for b in batches])
    assert (vis.sum(1) >= 4).all()


def test_build_if_missing_only_for_synthetic(tmp_path):
    src = loader.load("synthetic_hand", "train", data_dir=tmp_path, config="tiny",
                      build_if_missing=True)
    assert len(src) == TINY.num_train
    with pytest.raises(builders.DatasetNotPreparedError, match="--manual_dir"):
        loader.load("icvl", "test", data_dir=tmp_path, build_if_missing=True)
