"""The synthetic TFDS sets (`synthetic_builders`): seeded bytes, OOD shares, joints inside the
image, batches."""
import numpy as np
import pytest

from vl4pose_jax.data import builders, loader, synthetic
from vl4pose_jax.data.synthetic_builders import CONFIGS, _png

TINY = {c.name: c for c in CONFIGS}["tiny"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    for name in ("synthetic_human", "synthetic_hand"):
        builders.build(name, config="tiny", data_dir=root / "a")
    return root


def _records(name, split, data_dir):
    src = loader.load(name, split, data_dir=data_dir, config="tiny")
    return [src[i] for i in range(len(src))]


def test_same_seed_gives_identical_bytes(built):
    builders.build("synthetic_human", config="tiny", data_dir=built / "b")
    for split in ("train", "pool", "test"):
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
    for split in ("train", "pool", "test"):
        ood = np.array([r["ood"] for r in _records(name, split, built / "a")])
        assert len(ood) == sizes[split]
        expected = 0 if split == "train" else int(np.floor(TINY.ood_fraction * sizes[split] + 0.5))
        assert (ood > 0).sum() == expected
        if expected >= 2:
            assert set(np.unique(ood)) == {0, 1, 2}  # both OOD kinds present
    all_ids = sum((loader.load(name, s, data_dir=built / "a", config="tiny").ids()
                   for s in ("train", "pool", "test")), [])
    assert len(set(all_ids)) == len(all_ids)  # splits never share an example


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
