"""The synthetic generators (`vl4pose_jax.data.synthetic`): people (RGB) with both rare-pose
modes, and hands (depth)."""
import hashlib
import math

import numpy as np
import pytest

from vl4pose_jax import skeletons
from vl4pose_jax.data import formats
from vl4pose_jax.data import synthetic as sy
from vl4pose_jax.data.synthetic import families, people

HEAD, NECK, LSHO, LELB, LWRI, RSHO, RELB, RWRI, LHIP, LKNEE, LANKL, RHIP, RKNEE, RANKL = range(14)
TIPS = (3, 6, 9, 12, 15)


def _nearest_pixel(xy):
    return int(np.rint(xy[1])), int(np.rint(xy[0]))  # (row, column)


# ----------------------------------------------------------------------------------- OOD flags

@pytest.mark.parametrize("num,fraction", [(100, 0.1), (37, 0.25), (10, 0.0), (7, 1.0), (3, 0.5)])
def test_assign_ood_counts(num, fraction):
    kinds = sy.assign_ood(num, fraction, seed=5)
    assert kinds.shape == (num,)
    assert set(kinds) <= set(sy.OOD_KINDS)
    num_ood = int(np.floor(fraction * num + 0.5))
    assert np.sum(kinds != "none") == num_ood
    assert np.sum(kinds == "rare_pose") == num_ood // 2
    assert np.sum(kinds == "appearance") == num_ood - num_ood // 2
    np.testing.assert_array_equal(kinds, sy.assign_ood(num, fraction, seed=5))


def test_assign_ood_positions_depend_on_seed():
    a, b = sy.assign_ood(200, 0.2, seed=0), sy.assign_ood(200, 0.2, seed=1)
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError):
        sy.assign_ood(10, 1.5, seed=0)


def test_examples_carry_ood_flags_in_proportion():
    kinds = [ex["ood_kind"] for ex in sy.human_examples(3, 20, image_size=32, ood_fraction=0.3)]
    assert kinds.count("rare_pose") == 3 and kinds.count("appearance") == 3
    kinds = [ex["ood_kind"] for ex in sy.hand_examples(3, 8, ood_fraction=0.5)]
    assert kinds.count("rare_pose") == 2 and kinds.count("appearance") == 2


# ------------------------------------------------------------------------------------- humans

def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key] == b[key]


def test_human_is_deterministic_and_seeded():
    a = sy.human_example(4, 11)
    _assert_same(a, sy.human_example(4, 11))
    assert a["id"] == "synthetic_human/4/0000011"
    other_seed, other_index = sy.human_example(5, 11), sy.human_example(4, 12)
    for other in (other_seed, other_index):
        assert not np.array_equal(a["image"], other["image"])
        assert not np.array_equal(a["joints"], other["joints"])


def test_human_random_access_equals_iteration():
    seed, num = 2, 10
    kinds = sy.assign_ood(num, 0.6, seed)
    examples = list(sy.human_examples(seed, num, image_size=48, ood_fraction=0.6))
    assert [ex["ood_kind"] for ex in examples] == list(kinds)
    for i in (3, 7):
        _assert_same(examples[i], sy.human_example(seed, i, image_size=48, ood_kind=kinds[i]))
    # Skipping ahead does not change any example.
    _assert_same(next(sy.human_examples(seed, num, image_size=48, ood_fraction=0.6, start=7)),
                 examples[7])


@pytest.mark.parametrize("size", [64, 128, 256])
def test_human_shapes_and_joints_inside(size):
    for i, kind in enumerate(["none", "rare_pose", "appearance"] * 3):
        ex = sy.human_example(1, i, image_size=size, ood_kind=kind)
        assert ex["image"].shape == (size, size, 3) and ex["image"].dtype == np.uint8
        assert ex["joints"].shape == (14, 2) and ex["joints"].dtype == np.float32
        assert ex["visibility"].shape == (14,) and ex["visibility"].dtype == np.int8
        assert ex["ood_kind"] == kind
        assert set(np.unique(ex["visibility"])) <= {0, 1}
        margin = 0.03 * size
        assert np.all(ex["joints"] >= margin) and np.all(ex["joints"] <= size - 1 - margin)
        assert ex["image"].std() > 10  # not blank


def test_human_same_scene_at_any_size():
    """The scene is drawn in relative units: the same example at 64 and 256 px matches."""
    small, big = (sy.human_example(6, 3, image_size=s)["joints"] for s in (64, 256))
    np.testing.assert_allclose((small + 0.5) * 4 - 0.5, big, atol=1e-3)


def test_human_person_height_and_pose_ranges():
    heights, tilts, rare_tilts = [], [], []
    for i in range(40):
        j = sy.human_example(0, i, image_size=64)["joints"]
        heights.append(np.ptp(j[:, 1]) / 64)
        down = (j[LHIP] + j[RHIP]) / 2 - j[NECK]
        tilts.append(abs(np.degrees(np.arctan2(down[0], down[1]))))
        j = sy.human_example(0, i, image_size=64, ood_kind="rare_pose")["joints"]
        down = (j[LHIP] + j[RHIP]) / 2 - j[NECK]
        rare_tilts.append(abs(np.degrees(np.arctan2(down[0], down[1]))))
    assert 0.35 < np.median(heights) < 0.9
    assert max(tilts) <= 45  # in distribution: upright, moderate lean
    assert np.mean(np.asarray(rare_tilts) > 60) >= 0.4  # rare: inverted, cartwheels
    # In distribution the person's left shoulder is on the image's right (facing the camera).
    assert all(sy.human_example(0, i, image_size=64)["joints"][LSHO, 0]
               > sy.human_example(0, i, image_size=64)["joints"][RSHO, 0] for i in range(10))


def test_human_appearance_shift_only_in_ood():
    def is_grey(image):
        return np.abs(image.astype(int) - image[..., :1]).max() == 0
    assert not any(is_grey(sy.human_example(0, i, image_size=32)["image"]) for i in range(20))
    shifted = [sy.human_example(0, i, image_size=32, ood_kind="appearance")["image"]
               for i in range(20)]
    assert 2 <= sum(map(is_grey, shifted)) <= 18


def test_occluder_flags_match_pixels():
    """Render each example with and without its occluders (all other draws identical): a joint
    whose pixel changed is covered by an occluder and must be flagged 0; a joint flagged
    visible without occluders and 0 with them must have a changed pixel."""
    changed_total, self_visible = 0, []
    for i in range(30):
        with_occ, _ = people._human(8, i, 96, "none", None, occluders=True)
        without, _ = people._human(8, i, 96, "none", None, occluders=False)
        np.testing.assert_array_equal(with_occ["joints"], without["joints"])
        self_visible.append(without["visibility"])
        for j in range(14):
            pixel = _nearest_pixel(with_occ["joints"][j])
            changed = np.any(with_occ["image"][pixel] != without["image"][pixel])
            if without["visibility"][j] == 0:
                assert with_occ["visibility"][j] == 0
            else:
                assert (with_occ["visibility"][j] == 0) == changed, (i, j)
            changed_total += changed
    assert changed_total >= 5  # the test saw occluders at work
    # Self-occlusion is occasional: a joint's own limbs (drawn later) do not hide it.
    assert 0.85 <= np.mean(self_visible) < 1.0


def _crossing_poses():
    """Upright person (pixels); in the first pose the left forearm's axis passes exactly
    through the right hip, in the second the left forearm hangs clear. Same bounding box and
    segment lengths, hence the same normalisation and limb widths."""
    base = np.zeros((14, 2))
    base[HEAD], base[NECK] = (100, 20), (100, 45)
    base[LSHO], base[RSHO] = (125, 50), (75, 50)
    base[LHIP], base[RHIP] = (115, 110), (85, 110)
    base[LKNEE], base[LANKL] = (117, 150), (118, 190)
    base[RKNEE], base[RANKL] = (83, 150), (82, 190)
    base[RELB], base[RWRI] = (50, 40), (35, 15)
    crossing, clear = base.copy(), base.copy()
    crossing[LELB] = (150, 95)
    crossing[LWRI] = (60, 95 + 15 * 90 / 65)  # on the line from the elbow through (85, 110)
    clear[LELB] = crossing[LELB]
    clear[LWRI] = crossing[LELB] + (0, np.linalg.norm(crossing[LWRI] - crossing[LELB]))
    return crossing, clear


def test_self_occlusion_by_a_crossing_forearm():
    crossing, clear = _crossing_poses()
    flags = []
    for i in range(24):
        a, _ = people._human(0, i, 128, "none", crossing, occluders=False)
        b, _ = people._human(0, i, 128, "none", clear, occluders=False)
        np.testing.assert_allclose(a["joints"][RHIP], b["joints"][RHIP], atol=1e-5)
        pixel = _nearest_pixel(a["joints"][RHIP])
        same = np.array_equal(a["image"][pixel], b["image"][pixel])
        # Visible <=> the forearm went behind the torso, so the hip pixel is untouched.
        assert (a["visibility"][RHIP] == 1) == same, i
        assert b["visibility"][RHIP] == 1
        flags.append(int(a["visibility"][RHIP]))
    assert 0 < sum(flags) < len(flags)  # both drawing orders occurred


def test_human_given_pose_is_normalised():
    rng = np.random.default_rng(0)
    pose = rng.uniform(-300, 900, (14, 2))
    pose[[4, 10]] = np.nan
    for size in (64, 200):
        ex = sy.human_example(1, 0, image_size=size, pose=pose)
        present = np.isfinite(pose[:, 0])
        lo, hi = pose[present].min(0), pose[present].max(0)
        scale = sy.POSE_FILL * (size - 1) / (hi - lo).max()
        expected = (pose - (lo + hi) / 2) * scale + (size - 1) / 2
        np.testing.assert_allclose(ex["joints"][present], expected[present], rtol=1e-5,
                                   atol=1e-3)
        assert np.all(np.isnan(ex["joints"][~present]))
        np.testing.assert_array_equal(ex["visibility"][~present], -1)
        assert np.all(ex["visibility"][present] >= 0)
    # Rare-pose on a given pose turns it upside down (about its box centre), then normalises.
    turned = sy.human_example(1, 0, pose=pose, ood_kind="rare_pose")["joints"]
    normal = sy.human_example(1, 0, pose=pose)["joints"]
    assert turned[NECK, 1] > turned[LANKL - 1, 1] or normal[NECK, 1] > normal[LKNEE, 1] or \
        not np.allclose(turned[present], normal[present])
    with pytest.raises(ValueError):
        sy.human_example(0, 0, pose=np.zeros((13, 2)))
    with pytest.raises(ValueError):
        sy.human_example(0, 0, ood_kind="weird")


def test_real_lspet_poses_render(shared_data):
    scipy_io = pytest.importorskip("scipy.io")
    joints_file = scipy_io.loadmat(str(shared_data / "lspet" / "joints.mat"))["joints"]
    assert joints_file.shape[:2] == (14, 3)
    for image in (0, 1, 2, 500):
        per_joint = joints_file[:, :, image][skeletons.LSP_SOURCE_INDEX]  # (14, 3) lsp14
        pose = np.where(per_joint[:, 2:3] > 0, per_joint[:, :2], np.nan)
        ex = sy.human_example(0, image, image_size=128, pose=pose)
        present = np.isfinite(pose[:, 0])
        assert np.all(ex["visibility"][~present] == -1)
        assert np.all(ex["joints"][present] >= 0) and np.all(ex["joints"][present] <= 127)
        expected = sy.normalise_human_pose(pose, 128)
        np.testing.assert_allclose(ex["joints"][present], expected[present], atol=1e-3)
        # The rendered person is there: the head pixel differs from the image's mean colour.
        assert ex["image"].std() > 10


def test_many_small_examples_are_valid():
    """A sweep over indices and kinds: no failures, joints always inside the image."""
    for ex in sy.human_examples(21, 240, image_size=32, ood_fraction=0.5):
        j = ex["joints"]
        assert np.all(j >= 0.5) and np.all(j <= 30.5), ex["id"]
    for ex in sy.hand_examples(21, 45, ood_fraction=0.67):
        u, v = ex["joints"][:, 0], ex["joints"][:, 1]
        assert np.all((u >= 0) & (u <= 319) & (v >= 0) & (v <= 239)), ex["id"]


# ----------------------------------------------------------------------- rare-pose families

def _angle(u, v):
    """Degrees between vectors u and v."""
    cos = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
    return math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))


@pytest.mark.parametrize("family", sy.FAMILIES)
def test_family_joint_angles_stay_in_human_ranges(family):
    limits = families.LIMITS
    rng = np.random.default_rng(3)
    for _ in range(100):
        pose = families.sample(rng, family)
        assert pose.family == family and pose.joints.shape == (14, 2)
        j = pose.joints_3d
        for side, (sho, elb, wri, hip, knee, ank) in ((1, (2, 3, 4, 8, 9, 10)),
                                                      (-1, (5, 6, 7, 11, 12, 13))):
            assert _angle(j[elb] - j[sho], j[wri] - j[elb]) <= limits["elbow_flexion"] + 1e-6
            assert _angle(j[knee] - j[hip], j[ank] - j[knee]) <= limits["knee_flexion"] + 1e-6
            for root, mid, backwards_limit in ((hip, knee, None),
                                               (sho, elb, limits["shoulder_extension"])):
                d = j[mid] - j[root]
                elevation = _angle(d, np.array([0.0, 1.0, 0.0]))  # from hanging down
                azimuth = math.degrees(math.atan2(d[2], side * d[0]))
                if elevation > 1:  # a hanging limb has no plane
                    if backwards_limit is None:
                        assert elevation <= families.hip_limit(azimuth) + 1e-6, (family, azimuth)
                    elif azimuth < -45:
                        assert elevation <= backwards_limit + 1e-6
        # The projection keeps the pose's size: the neck-to-pelvis distance is the torso's.
        torso = np.linalg.norm((j[8] + j[11]) / 2 - j[1])
        flat = pose.joints
        assert np.linalg.norm((flat[8] + flat[11]) / 2 - flat[1]) <= torso + 1e-9


def test_families_are_their_postures():
    rng = np.random.default_rng(4)
    for _ in range(50):
        j = families.sample(rng, "handstand").joints
        assert j[0, 1] > (j[8, 1] + j[11, 1]) / 2  # head below the hips
        j = families.sample(rng, "cartwheel").joints
        down = (j[8] + j[11]) / 2 - j[1]
        assert 70 <= _angle(down, np.array([0.0, 1.0])) <= 125  # sideways
        j3 = families.sample(rng, "pike").joints_3d
        for hip, knee, ankle in ((8, 9, 10), (11, 12, 13)):  # straight legs raised forwards
            assert j3[knee, 2] > 0.1 and _angle(j3[knee] - j3[hip], j3[ankle] - j3[knee]) <= 20
        pose = families.sample(rng, "leg_lift")
        j, j3 = pose.joints, pose.joints_3d
        down = (j[8] + j[11]) / 2 - j[1]
        assert 70 <= _angle(down, np.array([0.0, 1.0])) <= 110  # lying
        lower = LHIP if j[LSHO, 1] > j[RSHO, 1] else RHIP  # the side nearer the floor
        top = RHIP if lower == LHIP else LHIP
        raised = [_angle(j3[h + 1] - j3[h], np.array([0.0, 1.0, 0.0])) for h in (lower, top)]
        assert raised[1] >= 35 and raised[0] <= 20  # the top leg raised, the lower one not


def _wrist_near_shoulder_share(examples):
    """Share of wrists within the PCK@0.2 radius (0.2 torso) of their own shoulder."""
    near = []
    for ex in examples:
        torso = formats.torso_size(ex["joints"], ex["visibility"])
        near += [np.linalg.norm(ex["joints"][s] - ex["joints"][w]) <= 0.2 * torso
                 for s, w in ((LSHO, LWRI), (RSHO, RWRI))]
    return np.mean(near)


def test_family_wrists_rarely_fold_onto_the_shoulder():
    def rare(mode):
        return [sy.human_example(0, i, image_size=32, ood_kind="rare_pose", rare_poses=mode)
                for i in range(120)]
    assert _wrist_near_shoulder_share(rare("extreme")) > 0.3  # elbows folded 150-200 degrees
    assert _wrist_near_shoulder_share(rare("families")) < 0.05


def test_rare_pose_mode_changes_rare_poses_only():
    for kind in ("none", "appearance"):
        _assert_same(sy.human_example(2, 5, image_size=32, ood_kind=kind),
                     sy.human_example(2, 5, image_size=32, ood_kind=kind, rare_poses="families"))
    a, b = (sy.human_example(2, 5, image_size=32, ood_kind="rare_pose", rare_poses=m)
            for m in sy.RARE_POSE_MODES)
    assert not np.array_equal(a["joints"], b["joints"])
    # The 'extreme' mode (the default) draws what it drew before the families existed; the
    # families draw what studies/learnability measured.
    for mode, digest in (("extreme", "95b521bb337d0f92"), ("families", "b37e17af3749b201")):
        h = hashlib.sha256()
        for i in range(20):
            h.update(sy.human_example(0, i, image_size=64, ood_kind="rare_pose",
                                      rare_poses=mode)["joints"].tobytes())
        assert h.hexdigest()[:16] == digest, mode
    with pytest.raises(ValueError, match="rare_poses"):
        sy.human_example(0, 0, rare_poses="acrobatic")


def test_rare_pose_family_names_the_drawn_family():
    names = [sy.rare_pose_family(1, i) for i in range(400)]
    counts = [names.count(f) for f in sy.FAMILIES]
    assert sum(counts) == 400 and min(counts) >= 70  # about 100 each
    for i in range(8):  # the family is the one the example was drawn from
        j = sy.human_example(1, i, image_size=64, ood_kind="rare_pose",
                             rare_poses="families")["joints"]
        tilt = _angle((j[LHIP] + j[RHIP]) / 2 - j[NECK], np.array([0.0, 1.0]))
        assert tilt >= 155 if names[i] == "handstand" else tilt >= 65  # never upright
    for ex in sy.human_examples(21, 120, image_size=32, ood_fraction=1.0, rare_poses="families"):
        assert np.all(ex["joints"] >= 0.5) and np.all(ex["joints"] <= 30.5), ex["id"]


# -------------------------------------------------------------------------------------- hands

def test_hand_is_deterministic_and_seeded():
    a = sy.hand_example(4, 2)
    _assert_same(a, sy.hand_example(4, 2))
    assert a["id"] == "synthetic_hand/4/0000002"
    for other in (sy.hand_example(5, 2), sy.hand_example(4, 3)):
        assert not np.array_equal(a["depth"], other["depth"])
        assert not np.array_equal(a["joints"], other["joints"])


def test_hand_random_access_equals_iteration():
    kinds = sy.assign_ood(6, 0.5, 1)
    examples = list(sy.hand_examples(1, 6, ood_fraction=0.5, start=4))
    assert len(examples) == 2
    _assert_same(examples[1], sy.hand_example(1, 5, ood_kind=kinds[5]))


def _tip_errors(ex):
    errors = []
    for t in TIPS:
        row, col = _nearest_pixel(ex["joints"][t])
        value = float(ex["depth"][row, col])
        errors.append(abs(value - ex["joints"][t, 2]) if value > 0 else np.inf)
    return np.asarray(errors)


@pytest.mark.parametrize("kind", sy.OOD_KINDS)
def test_hand_frames(kind):
    rows, cols = sy.HAND_IMAGE_SHAPE
    assert (rows, cols) == (240, 320) and sy.HAND_INTRINSICS == (241.42, 241.42, 160.0, 120.0)
    near = []
    for i in range(8):
        ex = sy.hand_example(7, i, ood_kind=kind)
        assert ex["depth"].shape == (240, 320) and ex["depth"].dtype == np.uint16
        assert ex["joints"].shape == (16, 3) and ex["joints"].dtype == np.float32
        np.testing.assert_array_equal(ex["visibility"], np.ones(16, np.int8))
        u, v, d = ex["joints"].T
        assert np.all((u >= 0) & (u <= cols - 1) & (v >= 0) & (v <= rows - 1))
        if kind != "rare_pose":
            assert 200 <= d[0] <= 600
        assert np.any(ex["depth"] == 0)  # holes / no reading
        # The hand is the nearest thing: a crop around it holds mostly readings near d.
        hand = (ex["depth"] > 0) & (np.abs(ex["depth"].astype(float) - d[0]) < 100)
        assert hand.sum() > 300
        near.append(np.sum(_tip_errors(ex) <= 30))
    if kind == "none":
        assert min(near) >= 3  # visible fingertips: the depth image agrees within 30 mm
    assert np.mean(near) >= 3


def test_hand_given_pose_is_rendered_in_place():
    ex = sy.hand_example(2, 0)
    again = sy.hand_example(9, 4, pose=ex["joints"])
    np.testing.assert_array_equal(again["joints"], ex["joints"])
    assert np.sum(_tip_errors(again) <= 30) >= 3
    turned = sy.hand_example(9, 4, pose=ex["joints"], ood_kind="rare_pose")
    np.testing.assert_allclose(turned["joints"][0, 2], ex["joints"][0, 2], atol=1e-3)
    assert not np.allclose(turned["joints"], ex["joints"])
    with pytest.raises(ValueError):
        sy.hand_example(0, 0, pose=np.zeros((16, 2)))


def test_real_icvl_poses_render(shared_data):
    path = shared_data / "icvl_labels" / "test_seq_1.txt"
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    for k in (0, 100, 400):
        pose = np.asarray(lines[k][1:], np.float64).reshape(16, 3)
        ex = sy.hand_example(0, k, pose=pose)
        np.testing.assert_array_equal(ex["joints"], pose.astype(np.float32))
        assert np.sum(_tip_errors(ex) <= 30) >= 3
        palm_row, palm_col = _nearest_pixel(pose[0])
        window = ex["depth"][palm_row - 3:palm_row + 4, palm_col - 3:palm_col + 4].astype(float)
        window = window[window > 0]
        assert window.size and np.median(np.abs(window - pose[0, 2])) < 30


def test_in_distribution_appearance_is_one_distribution_across_seeds():
    """Splits are drawn with different generator seeds (train 3s, pool 3s+1, test 3s+2): their
    in-distribution colours must come from one distribution (a per-seed palette made every pool
    and test image colour-shifted from the labelled set). Pooled 4x4x4 colour histograms of two
    seeds differ no more than two halves of one seed."""
    def hist(seed, indices):
        h = np.zeros(64)
        for i in indices:
            rgb = sy.human_example(seed, i, image_size=32)["image"].reshape(-1, 3) // 64
            h += np.bincount(rgb[:, 0] * 16 + rgb[:, 1] * 4 + rgb[:, 2], minlength=64)
        return h / h.sum()

    def tv(p, q):
        return 0.5 * np.abs(p - q).sum()

    first, second = hist(0, range(150)), hist(0, range(150, 300))
    for seed in (1, 2):  # before the fix: 0.21 and 0.29 against 0.096 within seed 0
        assert tv(first, hist(seed, range(150))) < 1.5 * tv(first, second)
