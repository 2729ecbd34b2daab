"""The per-example human crop/augment/heatmap transform and the hand crop/normalisation."""
import io

import numpy as np
import pytest
from PIL import Image

from vl4pose_jax import heatmaps as hm
from vl4pose_jax import skeletons
from vl4pose_jax.data import formats, hands, transforms


def _jpeg(rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _toy_example(seed=0, size=(120, 90)):
    rng = np.random.default_rng(seed)
    w, h = size
    joints = np.stack([rng.uniform(20, w - 20, 14), rng.uniform(15, h - 15, 14)], -1)
    vis = np.ones(14, np.int8)
    vis[3] = 0   # occluded: still labelled
    vis[1] = -1  # absent (the neck: unaffected by flips): garbage coordinates
    joints[1] = (-300, 5000)
    img = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    return dict(image=_jpeg(img), joints=joints.astype(np.float32), visibility=vis,
                normalizer=np.float32(40.0), id=b"toy.jpg#0", ood=np.int32(0), index=7)


@pytest.mark.parametrize("train", [False, True])
def test_visible_joints_inside_crop_and_heatmap_peaks(train):
    rng = np.random.default_rng(0)
    for seed in range(6):
        ex = _toy_example(seed)
        out = transforms.human_transform(ex, rng, train=train, image_size=128)
        assert out["image"].shape == (128, 128, 3) and out["image"].dtype == np.float32
        assert 0 <= out["image"].min() and out["image"].max() <= 1
        assert out["heatmaps"].shape == (32, 32, 14)
        vis = out["visible"] > 0
        assert not vis[1]  # absent stays absent, wherever its garbage lands
        if not train:
            assert vis.sum() == 13  # everything labelled is inside the 1.75 crop
        cells = out["joints"][vis]
        assert (cells >= -0.5).all() and (cells <= 31.5).all()
        for j in np.flatnonzero(vis):
            y, x = np.unravel_index(out["heatmaps"][..., j].argmax(), (32, 32))
            assert abs(x - out["joints"][j, 0]) <= 0.5 + 1e-4
            assert abs(y - out["joints"][j, 1]) <= 0.5 + 1e-4
        assert not out["heatmaps"][..., ~vis].any()
        assert out["id"] == "toy.jpg#0" and out["index"] == 7


def test_eval_crop_is_deterministic_and_centred():
    ex = _toy_example(1)
    a = transforms.human_transform(ex, None, train=False, image_size=64)
    b = transforms.human_transform(ex, None, train=False, image_size=64)
    np.testing.assert_array_equal(a["image"], b["image"])
    # The labelled joints' box is centred and spans 1/1.75 of the crop.
    px = (a["joints"][a["visible"] > 0] + 0.5) * 4 - 0.5
    span = (px.max(0) - px.min(0)).max()
    assert span == pytest.approx(64 / 1.75, rel=1e-3)
    np.testing.assert_allclose((px.max(0) + px.min(0)) / 2, 31.5, atol=1e-3)
    # normaliser: 40 image px at scale 64 / side, in cells
    labelled = ex["joints"][ex["visibility"] >= 0]
    side = 1.75 * (labelled.max(0) - labelled.min(0)).max()
    assert a["normalizer"] == pytest.approx(40 * 64 / side / 4, rel=1e-4)


def test_train_augmentation_is_seeded():
    ex = _toy_example(2)
    a = transforms.human_transform(ex, np.random.default_rng(5), train=True, image_size=64)
    b = transforms.human_transform(ex, np.random.default_rng(5), train=True, image_size=64)
    c = transforms.human_transform(ex, np.random.default_rng(6), train=True, image_size=64)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["joints"], b["joints"])
    assert not np.array_equal(a["joints"], c["joints"])


def test_flip_swaps_left_and_right():
    ex = _toy_example(3)
    kw = dict(train=True, image_size=64, crop_scale=1.75, rotation_deg=0.0, zoom_range=0.0,
              shift_fraction=0.0)
    plain = transforms.human_transform(ex, np.random.default_rng(0), flip_prob=0.0, **kw)
    flipped = transforms.human_transform(ex, np.random.default_rng(0), flip_prob=1.0, **kw)
    perm = skeletons.lsp14.flip_permutation()
    # the image is mirrored ...
    np.testing.assert_allclose(flipped["image"], plain["image"][:, ::-1], atol=2 / 255)
    # ... and joint j of the flipped example is the mirror image of joint perm[j]
    lsho, rsho = skeletons.lsp14.index("lsho"), skeletons.lsp14.index("rsho")
    assert perm[lsho] == rsho
    expected = plain["joints"][perm].copy()
    expected[:, 0] = 16 - 1 - expected[:, 0]
    vis = flipped["visible"] > 0
    np.testing.assert_array_equal(vis, plain["visible"][perm] > 0)
    np.testing.assert_allclose(flipped["joints"][vis], expected[vis], atol=1e-4)
    np.testing.assert_allclose(flipped["heatmaps"], plain["heatmaps"][:, ::-1][..., perm],
                               atol=1e-3)


def test_numpy_heatmaps_match_jax_targets():
    rng = np.random.default_rng(0)
    joints = rng.uniform(-3, 35, size=(14, 2)).astype(np.float32)
    vis = (rng.random(14) > 0.2).astype(np.float32)
    ours, exists = transforms.heatmaps_numpy(joints, vis, 32, 32)
    ref, ref_exists = hm.gaussian_targets(joints, vis, 32, 32)
    np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-4)
    np.testing.assert_array_equal(exists, np.asarray(ref_exists))


def test_jpeg_draft_downscale_keeps_joints_aligned():
    # A big image with a bright dot at a joint: after a strong shrink the dot is where the
    # joint's heatmap peak is.
    w = h = 1600
    img = np.zeros((h, w, 3), np.uint8)
    joints = np.array([[400, 300], [1200, 1300]] * 7, np.float32)
    img[1295:1306, 1195:1206] = 255
    ex = dict(image=_jpeg(img), joints=joints, visibility=np.ones(14, np.int8),
              normalizer=np.float32(100))
    out = transforms.human_transform(ex, None, train=False, image_size=64)
    j = 1  # a joint at (1200, 1300)
    y, x = np.unravel_index(out["image"].mean(-1).argmax(), (64, 64))
    px = (out["joints"][j] + 0.5) * 4 - 0.5
    assert abs(x - px[0]) <= 1.0 and abs(y - px[1]) <= 1.0


def test_lspet_real_crops(shared_data):
    labels = formats.read_lsp_mat(shared_data / "lspet" / "joints.mat")
    rng = np.random.default_rng(0)
    for i in range(20):
        name = formats.lsp_image_name(i, extended=True)
        ex = dict(image=(shared_data / "lspet" / "images" / name).read_bytes(),
                  joints=labels.joints[i], visibility=labels.visibility[i],
                  normalizer=np.float32(30))
        ev = transforms.human_transform(ex, rng, train=False, image_size=128)
        assert (ev["visible"] > 0).sum() == (labels.visibility[i] >= 0).sum()
        tr = transforms.human_transform(ex, rng, train=True, image_size=128)
        cells = tr["joints"][tr["visible"] > 0]
        assert (cells >= -0.5).all() and (cells <= 31.5).all()


# --------------------------------------------------------------------------- hands


def test_hand_normalisation_round_trips_numpy_and_jax():
    import jax.numpy as jnp
    rng = np.random.default_rng(0)
    intr = hands.INTRINSICS["nyu"]
    xyz = np.concatenate([rng.uniform(-100, 100, (4, 14, 2)), rng.uniform(500, 900, (4, 14, 1))], -1)
    center = hands.xyz_to_uvd(xyz.mean(1, keepdims=True), intr)[:, 0]
    cube = np.full(4, 300.0)
    norm = hands.xyz_mm_to_normalised_uvd(xyz, center, cube, intr)
    np.testing.assert_allclose(hands.normalised_uvd_to_xyz_mm(norm, center, cube, intr), xyz,
                               atol=1e-6)
    back = hands.normalised_uvd_to_xyz_mm(jnp.asarray(norm, jnp.float32),
                                          jnp.asarray(center, jnp.float32),
                                          jnp.asarray(cube, jnp.float32), intr)
    np.testing.assert_allclose(np.asarray(back), xyz, atol=0.05)
    # one normalised unit in d is half the cube
    shifted = norm.copy()
    shifted[..., 2] += 1.0
    d = hands.normalised_uvd_to_xyz_mm(shifted, center, cube, intr)[..., 2] - xyz[..., 2]
    np.testing.assert_allclose(d, 150.0, atol=1e-6)


def test_hand_crop_of_a_synthetic_blob():
    intr = hands.INTRINSICS["icvl"]
    depth = np.zeros((240, 320), np.uint16)
    yy, xx = np.mgrid[:240, :320]
    blob = (xx - 200) ** 2 + (yy - 100) ** 2 < 30**2
    depth[blob] = 400
    depth[200:, :] = 900  # far background, outside the cube
    joints = np.array([[200, 100, 410], [210, 90, 405], [190, 110, 400]], np.float32)
    out = hands.hand_transform(dict(depth=formats.encode_depth_png(depth), joints=joints,
                                    visibility=np.ones(3, np.int8)),
                               intrinsics=intr, cube_mm=250.0)
    np.testing.assert_allclose(out["center_uvd"], [200, 100, 400], atol=0.6)
    crop = out["depth"][..., 0]
    assert crop[64, 64] == pytest.approx(0.0, abs=1e-6)  # the blob's centre, at d_c
    assert crop[0, 0] == 1.0  # background
    # joints: u_n = (u - u_c) / (fx * 125 / d_c)
    np.testing.assert_allclose(out["joints"][1, 0], 10 / (241.42 * 125 / 400), atol=0.01)
    np.testing.assert_allclose(out["joints"][0, 2], 10 / 125, atol=0.01)


def test_hand_training_jitter_keeps_targets_in_mm():
    intr = hands.INTRINSICS["icvl"]
    depth = np.zeros((240, 320), np.uint16)
    yy, xx = np.mgrid[:240, :320]
    depth[(xx - 150) ** 2 + (yy - 130) ** 2 < 25**2] = 450
    joints = np.array([[150, 130, 455], [160, 120, 450], [140, 140, 460]], np.float32)
    ex = dict(depth=depth, joints=joints, visibility=np.ones(3, np.int8))
    plain = hands.hand_transform(ex, intrinsics=intr, cube_mm=250.0)
    a = hands.hand_transform(ex, np.random.default_rng(1), intrinsics=intr, cube_mm=250.0, train=True)
    b = hands.hand_transform(ex, np.random.default_rng(1), intrinsics=intr, cube_mm=250.0, train=True)
    np.testing.assert_array_equal(a["depth"], b["depth"])
    assert not np.allclose(a["joints"], plain["joints"])
    assert a["cube_mm"] != 250.0
    truth = hands.uvd_to_xyz(joints[None].astype(np.float64), intr)
    for out in (plain, a):
        xyz = hands.normalised_uvd_to_xyz_mm(out["joints"][None], out["center_uvd"][None],
                                             np.array([out["cube_mm"]]), intr)
        np.testing.assert_allclose(xyz, truth, atol=0.01)
