"""TFDS builders from real files (subsets copied into temp dirs) and from broken copies."""
import json
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from scipy import io as sio

from conftest import lspet_manual_dir, require_shared_data
from vl4pose_jax import skeletons
from vl4pose_jax.data import base, builders, formats, hands, loader, real_builders

N_LSPET = 40  # images copied into each temp manual dir


def _lspet_manual(shared_data, root, n=N_LSPET, start=0):
    return lspet_manual_dir(shared_data, root, n, start)


@pytest.fixture(scope="module")
def lspet_built(tmp_path_factory):
    root = tmp_path_factory.mktemp("lspet")
    manual = _lspet_manual(require_shared_data(), root)
    data_dir = root / "tfds"
    builders.build("lspet", manual_dir=manual, data_dir=data_dir)
    return data_dir


def test_lspet_subset_builds_and_loads(lspet_built):
    report = json.loads(next(lspet_built.glob("lspet/*/build_report.json")).read_text())
    assert report["labels"] == 10000 and report["missing_images"] == 10000 - N_LSPET
    pool = loader.load("lspet", "pool", data_dir=lspet_built)
    test = loader.load("lspet", "test", data_dir=lspet_built)
    validation = loader.load("lspet", "validation", data_dir=lspet_built)
    assert len(pool) + len(validation) + len(test) == N_LSPET and len(test) >= 1
    ids = pool.ids() + validation.ids() + test.ids()
    assert sorted(ids) == [f"{formats.lsp_image_name(i, extended=True)}#0" for i in range(N_LSPET)]
    # records keep the labels: joints and visibility of image k equal the file's
    labels = formats.read_lsp_mat(lspet_built.parent / "lspet_dataset" / "joints.mat")
    ex = pool[3]
    k = int(ex["id"].decode()[2:7]) - 1
    assert ex["index"] == 3
    np.testing.assert_array_equal(ex["visibility"], labels.visibility[k])
    lab = labels.visibility[k] >= 0
    np.testing.assert_allclose(ex["joints"][lab], labels.joints[k][lab])
    assert not ex["joints"][~lab].any()  # absent joints' garbage is zeroed
    np.testing.assert_array_equal(pool.indices_of([ex["id"].decode()]), [3])
    # the test split only holds people whose torso (the PCK normaliser) is labelled
    for i in range(len(test)):
        t = test[i]
        assert np.isfinite(formats.torso_size(t["joints"], t["visibility"]))
        assert t["normalizer"] == pytest.approx(formats.torso_size(t["joints"], t["visibility"]))


def _split_ids(data_dir, name="lspet"):
    """{split: set of ids} of every split built in `data_dir`."""
    return {s: set(loader.load(name, s, data_dir=data_dir).ids())
            for s in builders.get_builder(name, data_dir=data_dir).info.splits}


def test_lspet_split_is_stable_under_subsets(lspet_built, shared_data, tmp_path):
    manual = _lspet_manual(shared_data, tmp_path, n=20, start=1)
    builders.build("lspet", manual_dir=manual, data_dir=tmp_path / "tfds")
    first, second = _split_ids(lspet_built), _split_ids(tmp_path / "tfds")
    assert set(first) == set(second) == {"pool", "validation", "test"}
    present = set().union(*second.values())
    for split, ids in second.items():  # each image keeps its split, whatever else is present
        assert ids == first[split] & present


def test_lspet_validation_split(lspet_built, shared_data, tmp_path):
    """Validation: carved from the pool side by the documented rule (10 % of the images whose
    torso is labelled, by a hash of the name), disjoint from pool and test, in the report, and
    the same in a second build of the same files."""
    splits = _split_ids(lspet_built)
    val, pool, test = splits["validation"], splits["pool"], splits["test"]
    assert not (val & pool) and not (val & test) and not (pool & test)
    labels = formats.read_lsp_mat(shared_data / "lspet" / "joints.mat")
    expected_val, expected_test = set(), set()
    for i in range(N_LSPET):
        name = formats.lsp_image_name(i, extended=True)
        torso = np.isfinite(formats.torso_size(labels.joints[i], labels.visibility[i]))
        if torso and base.stable_fraction(f"{name}#0") < real_builders.LSPET_TEST_FRACTION:
            expected_test.add(f"{name}#0")
        elif torso and base.in_validation(name, 0.10):
            expected_val.add(f"{name}#0")
    assert test == expected_test and val == expected_val and len(val) == 2
    report = json.loads(next(lspet_built.glob("lspet/2.0.0/build_report.json")).read_text())
    assert report["built_splits"]["validation"] == report["validation"]["people"] == len(val)
    assert report["validation"]["source"] == "pool" and report["validation"]["fraction"] == 0.1
    again = tmp_path / "again"
    builders.build("lspet", manual_dir=lspet_built.parent / "lspet_dataset", data_dir=again)
    assert _split_ids(again) == splits


def test_validation_sizes_on_the_full_label_files(shared_data, tmp_path):
    """The rule on every label of LSPET (10,000) and NYU's training set (72,757 names): the
    sizes the docs give, and the paper protocols still fit (lsp / lspet: 1,000 initial labels
    + 5 x 1,000 acquisitions; NYU, CKE: 1,000 + 9 x 1,000)."""
    lspet = real_builders._plan_lsp_images(shared_data / "lspet", extended=True, what="lspet",
                                           instructions="")
    builder = real_builders.Lspet(data_dir=tmp_path)
    torso = real_builders._torso_known
    test = {it.id for it in lspet
            if torso(it) and base.stable_fraction(it.id) < real_builders.LSPET_TEST_FRACTION}
    pool, val = builder.carve_validation([it for it in lspet if it.id not in test], "pool",
                                         torso)
    assert (len(pool), len(val), len(test)) == (8304, 742, 954)
    assert len(pool) >= 1000 + 5 * 1000
    for it in lspet:
        it.id = "lspet/" + it.id
    pool, val = real_builders.Lsp(data_dir=tmp_path).carve_validation(lspet, "pool", torso)
    assert (len(pool), len(val)) == (9134, 866) and len(pool) >= 5 * 1000
    nyu = [base.Planned(f"train/depth_1_{i + 1:07d}.png#0", None, None, None)
           for i in range(72757)]
    pool, val = real_builders.Nyu(data_dir=tmp_path).carve_validation(nyu, "pool")
    assert (len(pool), len(val)) == (71258, 1499) and len(pool) >= 10 * 1000
    fractions = {cls.name: cls.VALIDATION_FRACTION for cls in (
        real_builders.Lsp, real_builders.Lspet, real_builders.Mpii, real_builders.Icvl,
        real_builders.Nyu)}
    assert fractions == dict(lsp=0.1, lspet=0.1, mpii=0.1, icvl=0.01, nyu=0.02)


def test_build_before_validation_is_named_with_the_rebuild_command(shared_data, tmp_path,
                                                                 monkeypatch):
    """A build of the 1.0.0 layout (no validation split) is never read: loading any split
    names the old version and the command that rebuilds."""
    manual = _lspet_manual(shared_data, tmp_path, n=12)
    with monkeypatch.context() as m:
        m.setattr(real_builders.Lspet, "VERSION", tfds.core.Version("1.0.0"))
        m.setattr(base.Builder, "carve_validation", lambda self, items, *a, **k: (items, []))
        builders.build("lspet", manual_dir=manual, data_dir=tmp_path / "tfds")
    assert not builders.get_builder("lspet", data_dir=tmp_path / "tfds").is_prepared()
    for split in ("validation", "pool"):
        with pytest.raises(builders.DatasetNotPreparedError,
                           match=r"(?s)built by version 1\.0\.0.*validation.*Rebuild it with:\n"
                                 r"  python -m vl4pose_jax.data.prepare --dataset=lspet "):
            loader.load("lspet", split, data_dir=tmp_path / "tfds")
    builders.build("lspet", manual_dir=manual, data_dir=tmp_path / "tfds")
    assert loader.load("lspet", "validation", data_dir=tmp_path / "tfds").ids() == ["im00002.jpg#0"]


def test_lspet_batches(lspet_built):
    source = loader.load("lspet", "pool", data_dir=lspet_built)
    batches = list(loader.make_loader(source, batch_size=8, seed=0, train=False, image_size=64))
    assert sum(len(b["index"]) for b in batches) == len(source)
    b = batches[0]
    assert set(b) == {"image", "heatmaps", "joints", "visible", "normalizer", "ood", "id", "index"}
    assert b["image"].shape == (8, 64, 64, 3) and b["heatmaps"].shape == (8, 16, 16, 14)
    assert b["joints"].shape == (8, 14, 2) and b["visible"].shape == (8, 14)
    assert b["normalizer"].dtype == np.float32 and (b["normalizer"] > 0).all()
    assert (b["ood"] == 0).all()
    np.testing.assert_array_equal(b["index"], np.arange(8))
    vis = b["visible"] > 0
    assert (b["joints"][vis] >= -0.5).all() and (b["joints"][vis] <= 15.5).all()


def test_not_prepared_names_the_command(tmp_path):
    with pytest.raises(builders.DatasetNotPreparedError,
                       match=r"python -m vl4pose_jax.data.prepare --dataset=lspet"):
        loader.load("lspet", "pool", data_dir=tmp_path)


def test_interrupted_build_never_loads_as_complete(shared_data, tmp_path, monkeypatch):
    manual = _lspet_manual(shared_data, tmp_path, n=12)
    calls = {"n": 0}
    original = base.Builder._example

    def dying(self, *args):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # as a Ctrl-C half way through
        return original(self, *args)

    monkeypatch.setattr(base.Builder, "_example", dying)
    with pytest.raises(KeyboardInterrupt):
        builders.build("lspet", manual_dir=manual, data_dir=tmp_path / "tfds")
    assert not builders.get_builder("lspet", data_dir=tmp_path / "tfds").is_prepared()
    with pytest.raises(builders.DatasetNotPreparedError):
        loader.load("lspet", "pool", data_dir=tmp_path / "tfds")
    monkeypatch.setattr(base.Builder, "_example", original)
    builders.build("lspet", manual_dir=manual, data_dir=tmp_path / "tfds")
    assert len(loader.load("lspet", "pool", data_dir=tmp_path / "tfds")) >= 1


def test_missing_manual_dir_and_label_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)nowhere.*sam.johnson.io"):
        builders.build("lspet", manual_dir=tmp_path / "nowhere", data_dir=tmp_path / "tfds")
    (tmp_path / "lspet" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"joints.mat"):
        builders.build("lspet", manual_dir=tmp_path, data_dir=tmp_path / "tfds")
    with pytest.raises(FileNotFoundError, match=r"manual_dir"):
        builders.build("mpii", manual_dir=None, data_dir=tmp_path / "tfds")


def test_corrupt_image_is_named_or_skipped_and_listed(shared_data, tmp_path):
    manual = _lspet_manual(shared_data, tmp_path, n=10)
    victim = manual / "images" / "im00004.jpg"
    victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 3])  # truncated
    with pytest.raises(builders.CorruptImageError, match="im00004.jpg"):
        builders.build("lspet", manual_dir=manual, data_dir=tmp_path / "a")
    b = builders.build("lspet", manual_dir=manual, data_dir=tmp_path / "b", skip_corrupt=True)
    listed = (tmp_path / "b" / "lspet" / "2.0.0" / "corrupt_files.txt").read_text().split()
    assert listed == [str(victim)]
    report = json.loads((tmp_path / "b" / "lspet" / "2.0.0" / "build_report.json").read_text())
    assert report["corrupt"] == [str(victim)]
    ids = sum((loader.load("lspet", s, data_dir=tmp_path / "b").ids()
               for s in b.info.splits), [])
    assert len(ids) == 9 and "im00004.jpg#0" not in ids


def test_nan_and_absurd_coordinates_are_masked_and_counted(tmp_path):
    manual = tmp_path / "lspet"
    (manual / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 6
    raw = np.zeros((14, 3, n))
    raw[:, 0] = rng.uniform(10, 90, (14, n))
    raw[:, 1] = rng.uniform(10, 150, (14, n))
    raw[:, 2] = 1
    raw[0, 0, 0] = np.nan       # image 1, file joint 0 (rankl): NaN
    raw[13, 1, 1] = 1e7         # image 2, head top: absurd
    raw[5, 0, 2] = -np.inf      # image 3, lankl: Inf
    sio.savemat(manual / "joints.mat", {"joints": raw})
    for i in range(n):
        Image.new("RGB", (100, 160)).save(manual / "images" / formats.lsp_image_name(i, extended=True))
    builders.build("lspet", manual_dir=manual, data_dir=tmp_path / "tfds")
    report = json.loads((tmp_path / "tfds" / "lspet" / "2.0.0" / "build_report.json").read_text())
    assert report["masked_joints"] == 3
    b = builders.get_builder("lspet", data_dir=tmp_path / "tfds")
    examples = {}
    for s in b.info.splits:
        src = loader.load("lspet", s, data_dir=tmp_path / "tfds")
        for i in range(len(src)):
            examples[src[i]["id"].decode()] = src[i]
    assert examples["im00001.jpg#0"]["visibility"][skeletons.lsp14.index("rankl")] == -1
    assert examples["im00002.jpg#0"]["visibility"][skeletons.lsp14.index("head")] == -1
    assert examples["im00003.jpg#0"]["visibility"][skeletons.lsp14.index("lankl")] == -1
    assert (examples["im00004.jpg#0"]["visibility"] == 1).all()
    for ex in examples.values():
        assert np.isfinite(ex["joints"]).all() and np.isfinite(ex["normalizer"])


def test_lsp_protocol_with_blank_images(shared_data, tmp_path):
    lsp = formats.read_lsp_mat(shared_data / "lsp" / "joints.mat")
    manual = tmp_path / "manual"
    (manual / "lsp" / "images").mkdir(parents=True)
    shutil.copy(shared_data / "lsp" / "joints.mat", manual / "lsp" / "joints.mat")
    occluded = np.flatnonzero((lsp.visibility[:1000] == 0).any(-1))
    picked = [0] + list(occluded[:2]) + [1000, 1001]  # two train images with occluded joints
    for i in picked:  # blank images just big enough for every joint
        w, h = (np.ceil(lsp.joints[i].max(0)) + 10).astype(int)
        Image.new("RGB", (int(w), int(h))).save(
            manual / "lsp" / "images" / formats.lsp_image_name(i, extended=False))
    _lspet_manual(shared_data, manual, n=5)
    builders.build("lsp", manual_dir=manual, data_dir=tmp_path / "tfds")
    train = loader.load("lsp", "train", data_dir=tmp_path / "tfds")
    test = loader.load("lsp", "test", data_dir=tmp_path / "tfds")
    pool = loader.load("lsp", "pool", data_dir=tmp_path / "tfds")
    assert train.ids() == [f"{formats.lsp_image_name(i, extended=False)}#0" for i in picked[:3]]
    assert test.ids() == ["im1001.jpg#0", "im1002.jpg#0"]
    assert len(pool) == 5 and pool.ids()[0] == "lspet/im00001.jpg#0"
    for k, i in enumerate(picked[:3]):
        np.testing.assert_array_equal(train[k]["visibility"], lsp.visibility[i])
    all_vis = np.stack([train[k]["visibility"] for k in range(3)])
    assert (all_vis >= 0).all() and (all_vis == 0).any()  # occluded, never absent
    # Validation comes from the pool side, and a pool of 5 images is too small to give any.
    report = json.loads((tmp_path / "tfds" / "lsp" / "2.0.0" / "build_report.json").read_text())
    assert "no validation split: 'pool' has 5 images, fewer than 10" in report["notes"]
    assert report["validation"]["people"] == 0 and "validation" not in report["built_splits"]
    with pytest.raises(KeyError, match=r"no split 'validation'.*build_report\.json"):
        loader.load("lsp", "validation", data_dir=tmp_path / "tfds")


def test_mpii_validation_comes_from_the_pool_images(tmp_path):
    """MPII without Newell's files: test = a stable 30 % of the images, validation = 10 % of
    the other images with all their people, pool = the rest."""
    manual = tmp_path / "mpii"
    (manual / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    people = []
    for i in range(60):
        image = f"{i:09d}.jpg"
        Image.new("RGB", (120, 120)).save(manual / "images" / image)
        for _ in range(1 + i % 2):  # one or two people per image
            people.append(dict(image=image, joints=rng.uniform(10, 110, (16, 2)).tolist(),
                               joints_vis=[1] * 16, center=[60, 60], scale=0.5))
    (manual / "train.json").write_text(json.dumps(people))
    builders.build("mpii", manual_dir=manual, data_dir=tmp_path / "tfds")
    splits = _split_ids(tmp_path / "tfds", "mpii")
    image_of = lambda ids: {i.split("#")[0] for i in ids}
    images = {s: image_of(ids) for s, ids in splits.items()}
    assert not (images["validation"] & images["pool"]) and not (images["validation"]
                                                                 & images["test"])
    assert images["test"] == {im for im in image_of(sum(map(list, splits.values()), []))
                              if base.stable_fraction(im) < real_builders.MPII_TEST_FRACTION}
    assert images["validation"] == {im for im in images["validation"] | images["pool"]
                                    if base.in_validation(im, 0.10)}
    assert images["validation"] and sum(map(len, splits.values())) == len(people)
    report = json.loads((tmp_path / "tfds" / "mpii" / "2.0.0" / "build_report.json").read_text())
    assert report["validation"]["images"] == len(images["validation"])
    assert report["validation"]["people"] == len(splits["validation"])


def test_mpii_sample_builds_with_newell_split(shared_data, tmp_path):
    manual = tmp_path / "mpii"
    shutil.copytree(shared_data / "mpii_sample", manual)
    builders.build("mpii", manual_dir=manual, data_dir=tmp_path / "tfds")
    b = builders.get_builder("mpii", data_dir=tmp_path / "tfds")
    assert list(b.info.splits) == ["test"]  # all 5 sample images are Newell validation images
    test = loader.load("mpii", "test", data_dir=tmp_path / "tfds")
    # two sample people lack knees/ankles (joints_vis 0): not all 16 annotated, left out
    assert test.ids() == ["005808361.jpg#0", "052475643.jpg#0", "060754485.jpg#0"]
    report = json.loads((tmp_path / "tfds" / "mpii" / "2.0.0" / "build_report.json").read_text())
    assert "2 people without all 16 joints left out" in report["notes"]
    valid = formats.read_newell_valid(manual / "valid.h5")
    assert test[0]["normalizer"] == pytest.approx(valid.normalize[0])
    batch = next(iter(loader.make_loader(test, batch_size=3, seed=0, train=False, image_size=64)))
    assert batch["joints"].shape == (3, 16, 2) and (batch["visible"] == 1).all()
    assert batch["heatmaps"].shape == (3, 16, 16, 16)


def _render_hand(joints_uvd, shape):
    """A depth image with a disc of radius 6 px at each joint, at the joint's depth."""
    depth = np.zeros(shape, np.uint16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for u, v, d in joints_uvd:
        depth[(xx - u) ** 2 + (yy - v) ** 2 < 36] = int(d) - 8
    return depth


def test_icvl_builds_from_real_labels(shared_data, tmp_path):
    manual = tmp_path / "icvl"
    (manual / "Testing").mkdir(parents=True)
    shutil.copy(shared_data / "icvl_labels" / "test_seq_1.txt", manual / "Testing")
    (manual / "Testing" / "test_seq_2.txt").write_text("")
    labels = formats.read_icvl_labels(manual / "Testing" / "test_seq_1.txt")
    for k in range(3):
        path = manual / "Testing" / "Depth" / labels.names[k]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(formats.encode_depth_png(_render_hand(labels.joints[k], (240, 320))))
    (manual / "Training" / "Depth" / "seq").mkdir(parents=True)
    (manual / "Training" / "labels.txt").write_text(
        "seq/image_0000.png " + " ".join(f"{x:.3f}" for x in labels.joints[10].reshape(-1)) + "\n")
    (manual / "Training" / "Depth" / "seq" / "image_0000.png").write_bytes(
        formats.encode_depth_png(_render_hand(labels.joints[10], (240, 320))))
    builders.build("icvl", manual_dir=manual, data_dir=tmp_path / "tfds")
    test = loader.load("icvl", "test", data_dir=tmp_path / "tfds")
    assert len(test) == 3 and test.ids()[0] == "test_seq_1/image_0000.png#0"
    assert len(loader.load("icvl", "pool", data_dir=tmp_path / "tfds")) == 1
    batch = next(iter(loader.make_loader(test, batch_size=3, seed=0, train=False)))
    assert batch["depth"].shape == (3, 128, 128, 1) and batch["joints"].shape == (3, 16, 3)
    assert set(batch) == {"depth", "joints", "visible", "center_uvd", "cube_mm", "ood", "id",
                          "index"}
    intr = test.intrinsics
    xyz = hands.normalised_uvd_to_xyz_mm(batch["joints"], batch["center_uvd"], batch["cube_mm"],
                                         intr)
    np.testing.assert_allclose(xyz, hands.uvd_to_xyz(labels.joints[:3].astype(np.float64), intr),
                               atol=0.01)


def test_nyu_builds_from_real_frame(shared_data, tmp_path):
    manual = tmp_path / "nyu"
    (manual / "test").mkdir(parents=True)
    for name in ("nyu_test_groundtruth_label.txt", "nyu_test_list.txt", "depth_1_0000001.png"):
        shutil.copy(shared_data / "nyu_sample" / name, manual / "test" / name)
    (manual / "train").mkdir()
    uvd = np.zeros((3, 2, 36, 3), np.float32)
    uvd[..., 0], uvd[..., 1], uvd[..., 2] = 300, 200, 700
    sio.savemat(manual / "train" / "joint_data.mat", {"joint_uvd": uvd})  # labels, no images
    with pytest.raises(FileNotFoundError, match="joint_data.mat"):
        builders.build("nyu", manual_dir=tmp_path / "empty_dir_missing", data_dir=tmp_path / "x")
    builders.build("nyu", manual_dir=manual, data_dir=tmp_path / "tfds")
    report = json.loads((tmp_path / "tfds" / "nyu" / "2.0.0" / "build_report.json").read_text())
    assert report["missing_images"] == 8251 + 2 and report["splits"]["pool"] == 0
    assert report["splits"]["validation"] == 0 and report["validation"]["source"] == "pool"
    test = loader.load("nyu", "test", data_dir=tmp_path / "tfds")
    assert test.ids() == ["test/depth_1_0000001.png#0"]
    stored = formats.decode_depth_icvl(test[0]["depth"])  # converted to 16-bit grey mm
    np.testing.assert_array_equal(
        stored, formats.decode_depth_nyu((manual / "test" / "depth_1_0000001.png").read_bytes()))
    batch = next(iter(loader.make_loader(test, batch_size=1, seed=0, train=False)))
    assert np.abs(batch["joints"]).max() < 1.0
