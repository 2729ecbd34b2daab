"""Parsers of the real label formats, against ../shared/data (skipped when it is absent)."""
import numpy as np
import pytest

from vl4pose_jax import skeletons
from vl4pose_jax.data import formats, hands


def test_lspet_joints_mat(shared_data):
    labels = formats.read_lsp_mat(shared_data / "lspet" / "joints.mat")
    assert labels.joints.shape == (10000, 14, 2) and labels.visibility.shape == (10000, 14)
    assert set(np.unique(labels.visibility)) == {-1, 1}  # LSPET: visible or absent
    assert 0.85 < (labels.visibility == 1).mean() < 0.92  # the README's 88 %
    # Image 1's right ankle is (0, -26) with flag 0: it must come out absent.
    rankl = skeletons.lsp14.index("rankl")
    assert labels.visibility[0, rankl] == -1
    np.testing.assert_allclose(labels.joints[0, rankl], [0, -26], atol=1)


def test_lsp_joints_mat_inverts_the_flag(shared_data):
    from scipy import io as sio
    raw = sio.loadmat(shared_data / "lsp" / "joints.mat")["joints"]  # (3, 14, 2000)
    labels = formats.read_lsp_mat(shared_data / "lsp" / "joints.mat")
    assert labels.joints.shape == (2000, 14, 2)
    assert set(np.unique(labels.visibility)) <= {0, 1}  # every LSP joint is labelled
    occluded_in_file = raw[2].T[:, skeletons.LSP_SOURCE_INDEX] > 0.5
    np.testing.assert_array_equal(labels.visibility == 0, occluded_in_file)
    assert occluded_in_file.any() and not occluded_in_file.all()
    # file column 13 (head top) of image 0 -> lsp14 joint 0 (head)
    np.testing.assert_allclose(labels.joints[0, 0], raw[:2, 13, 0], rtol=1e-6)


def test_torso_size_uses_the_diagonals():
    joints = np.zeros((14, 2), np.float32)
    joints[skeletons.lsp14.index("lsho")] = (0, 0)
    joints[skeletons.lsp14.index("rhip")] = (3, 4)
    joints[skeletons.lsp14.index("rsho")] = (10, 0)
    joints[skeletons.lsp14.index("lhip")] = (10, 12)
    vis = np.ones(14, np.int8)
    assert formats.torso_size(joints, vis) == pytest.approx(12.0)
    vis[skeletons.lsp14.index("lhip")] = -1
    assert formats.torso_size(joints, vis) == pytest.approx(5.0)
    vis[skeletons.lsp14.index("lsho")] = -1
    assert np.isnan(formats.torso_size(joints, vis))


def test_mpii_sample_json(shared_data):
    people = formats.read_mpii_json(shared_data / "mpii_sample" / "test_mpii.json")
    assert len(people) == 5
    p = people[0]
    assert p.image == "005808361.jpg" and p.person == 0
    assert p.joints.shape == (16, 2) and (p.visibility == 1).all()
    # MPII id 9 (head top) -> mpii16 joint 0; id 6 (pelvis) -> 14
    np.testing.assert_allclose(p.joints[0], [962.2409, 80.0306], atol=1e-3)
    np.testing.assert_allclose(p.joints[skeletons.mpii16.index("pelvis")], [974, 446])


def test_newell_valid_h5(shared_data):
    valid = formats.read_newell_valid(shared_data / "mpii_sample" / "valid.h5")
    assert len(valid.imgname) == 2958 and valid.joints.shape == (2958, 16, 2)
    assert valid.imgname[0] == "005808361.jpg"
    assert (valid.normalize > 0).all()
    # The first validation person is the JSON's first person.
    people = formats.read_mpii_json(shared_data / "mpii_sample" / "test_mpii.json")
    np.testing.assert_allclose(valid.joints[0], people[0].joints, atol=1.0)  # h5 is rounded
    # Head-size estimate from head/neck agrees with Newell's normaliser within 5 %.
    est = np.array([formats.mpii_headsize_estimate(j) for j in valid.joints])
    ok = np.isfinite(est) & (est > 0)
    assert np.median(np.abs(est[ok] / valid.normalize[ok] - 1)) < 0.05


def test_newell_valid_rejects_non_hdf5(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not an hdf5 file at all" * 4)
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        formats.read_newell_valid(bad)


def test_icvl_test_labels(shared_data):
    labels = formats.read_icvl_labels(shared_data / "icvl_labels" / "test_seq_1.txt")
    assert len(labels.names) == 702 and labels.joints.shape == (702, 16, 3)
    assert labels.names[0] == "test_seq_1/image_0000.png"
    np.testing.assert_allclose(labels.joints[0, 0], [180.210, 145.428, 368.854], atol=1e-3)
    assert (labels.joints[..., 2] > 100).all()  # depths in mm
    two = formats.read_icvl_labels(shared_data / "icvl_labels" / "test_seq_2.txt")
    assert len(two.names) == 894


def test_icvl_bad_line_names_the_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("a.png " + " ".join(["1"] * 48) + "\nb.png 1 2 3\n")
    with pytest.raises(ValueError, match=r"labels.txt:2"):
        formats.read_icvl_labels(path)


def test_nyu_frame_depth_agrees_with_labels(shared_data):
    folder = shared_data / "nyu_sample"
    labels = formats.read_nyu_labels_txt(folder / "nyu_test_groundtruth_label.txt",
                                         folder / "nyu_test_list.txt")
    assert labels.joints.shape == (8252, 14, 3)
    assert labels.names[0].endswith("depth_1_0000001.png")
    depth = formats.decode_depth_nyu((folder / "depth_1_0000001.png").read_bytes())
    assert depth.shape == (480, 640) and depth.dtype == np.uint16
    uvd = labels.joints[0]
    u = np.round(uvd[:, 0]).astype(int)
    v = np.round(uvd[:, 1]).astype(int)
    behind_surface = uvd[:, 2] - depth[v, u].astype(np.float32)  # joints lie inside the hand
    assert (behind_surface > -5).all()
    wrist = [skeletons.nyu14.index("wrist_1"), skeletons.nyu14.index("wrist_2")]
    fingers_palm = np.setdiff1d(np.arange(14), wrist)
    assert behind_surface[fingers_palm].max() < 30.0
    assert behind_surface[wrist].max() < 40.0  # the wrist is thicker: its centre is deeper


def test_nyu_crop_contains_the_hand(shared_data):
    folder = shared_data / "nyu_sample"
    labels = formats.read_nyu_labels_txt(folder / "nyu_test_groundtruth_label.txt")
    depth = formats.decode_depth_nyu((folder / "depth_1_0000001.png").read_bytes())
    out = hands.hand_transform(
        dict(depth=depth, joints=labels.joints[0], visibility=np.ones(14, np.int8)),
        intrinsics=hands.INTRINSICS["nyu"], cube_mm=hands.CUBE_MM["nyu"])
    assert out["depth"].shape == (128, 128, 1)
    assert -1 <= out["depth"].min() < 0.5 and out["depth"].max() == 1.0  # hand + background
    assert np.abs(out["joints"]).max() < 1.0  # every joint inside the cube
    # the CoM is near the joints' mean (within 40 mm in depth, 30 px in the image)
    assert abs(out["center_uvd"][2] - labels.joints[0, :, 2].mean()) < 40
    assert np.abs(out["center_uvd"][:2] - labels.joints[0, :, :2].mean(0)).max() < 40


def test_depth_png_round_trip():
    depth = np.random.default_rng(0).integers(0, 2000, size=(24, 32)).astype(np.uint16)
    np.testing.assert_array_equal(formats.decode_depth_icvl(formats.encode_depth_png(depth)), depth)


def test_missing_label_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="joints.mat"):
        formats.read_lsp_mat(tmp_path / "joints.mat")
