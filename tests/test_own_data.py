"""Own data as users bring it (issue 30): COCO-17 people with joints nobody labels, EXIF-rotated
phone photos, several people per image, crowd and box-only entries, rescoring after a merge.

Tiny synthetic images (tens of pixels) so that each test takes seconds; the whole loop runs the
real commands (prepare, a micro model, score, merge, fine-tune).
"""
import dataclasses
import io
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from coco_util import COCO_PERSON, COCO_PERSON_SKELETON
from vl4pose_jax.data import base, coco, formats, transforms
from vl4pose_jax.data.coco import commands

NEVER = ("left_eye", "right_eye", "left_ear", "right_ear")   # labelled by nobody here


def _rotated_jpeg(stored_w=48, stored_h=32, orientation=6, seed=0):
    """JPEG bytes of a `stored_w` x `stored_h` picture tagged with EXIF `orientation`, and the
    upright picture as an array (what a viewer shows)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (stored_h // 8, stored_w // 8, 3),
                                                  np.uint8)
    stored = Image.fromarray(pixels).resize((stored_w, stored_h), Image.NEAREST)
    exif = Image.Exif()
    exif[formats.EXIF_ORIENTATION] = orientation
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue(), np.asarray(formats.upright(Image.open(io.BytesIO(buf.getvalue()))))


def test_exif_orientation_is_applied_wherever_an_image_is_decoded():
    """Orientation 6 ("rotate 90 CW to show"): a 48 x 32 stored JPEG is a 32 x 48 picture for
    the builders (size), the training / evaluation crop and the scorer (size, crop)."""
    from vl4pose_jax import rank, skeletons
    data, shown = _rotated_jpeg()
    assert shown.shape == (48, 32, 3)
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(shown, np.rot90(stored, k=-1))     # 90 degrees clockwise
    assert formats.decode_rgb(data).shape == (48, 32, 3)
    assert base._check_decodes(pathlib.Path("p.jpg"), data) == (32, 48)
    im, reduce = transforms.open_image_for_crop(data, 48, 48)
    assert im.size == (32, 48) and reduce.tolist() == [1.0, 1.0]
    assert np.array_equal(np.asarray(im), shown)
    out, size, crop = rank._prepare((data, None, 0, skeletons.lsp14, 32, "r.jpg"))
    assert size == (32, 48) and crop.tolist() == [15.5, 23.5, 48.0]
    png = io.BytesIO()
    Image.fromarray(shown).save(png, format="PNG")   # the same picture, upright, no tag
    ref, ref_size, _ = rank._prepare((png.getvalue(), None, 0, skeletons.lsp14, 32, "u.png"))
    assert ref_size == size and np.abs(out["image"] - ref["image"]).max() < 1e-6
    for orientation in range(1, 9):   # every orientation: the size a viewer shows
        data, shown = _rotated_jpeg(orientation=orientation)
        assert base._check_decodes(pathlib.Path("p.jpg"), data) == shown.shape[1::-1]


# ----------------------------------------------------------------------------- a COCO-17 set

def _pose(cx, cy, scale=1.0):
    """17 COCO joints (x, y) of a standing person centred at (cx, cy), `scale` ~ 20 px tall."""
    body = {"nose": (0, -9), "left_eye": (1, -10), "right_eye": (-1, -10), "left_ear": (2, -9.5),
            "right_ear": (-2, -9.5), "left_shoulder": (3, -6), "right_shoulder": (-3, -6),
            "left_elbow": (4, -2), "right_elbow": (-4, -2), "left_wrist": (4.5, 1),
            "right_wrist": (-4.5, 1), "left_hip": (2, 1), "right_hip": (-2, 1),
            "left_knee": (2, 5.5), "right_knee": (-2, 5.5), "left_ankle": (2, 10),
            "right_ankle": (-2, 10)}
    return np.array([(cx + scale * body[n][0], cy + scale * body[n][1]) for n in COCO_PERSON])


def _ann(ann_id, image_id, joints, *, labelled=None, bbox=True, **extra):
    kps = []
    for name, (x, y) in zip(COCO_PERSON, joints.tolist()):
        on = name not in NEVER if labelled is None else name in labelled
        kps += [round(x, 2), round(y, 2), 2] if on else [0, 0, 0]
    ann = {"id": ann_id, "image_id": image_id, "category_id": 1, "keypoints": kps,
           "num_keypoints": sum(1 for v in kps[2::3] if v), "iscrowd": 0, **extra}
    if bbox:
        x0, y0 = joints.min(0) - 2
        x1, y1 = joints.max(0) + 2
        ann["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
    return ann


def _picture(width, height, people, seed):
    """A dark noisy picture with a bright stick figure per person (joints (17, 2))."""
    from PIL import ImageDraw
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 60, (height, width, 3), np.uint8))
    draw = ImageDraw.Draw(im)
    for joints in people:
        for a, b in COCO_PERSON_SKELETON:
            draw.line([tuple(joints[a - 1]), tuple(joints[b - 1])], fill=(230, 200, 90), width=2)
    return im


CATEGORY = {"id": 1, "name": "person", "supercategory": "person", "keypoints": COCO_PERSON,
            "skeleton": COCO_PERSON_SKELETON}


def write_coco17(root, *, n_train=6, n_test=2, rotated=True, extras=True, seed=0):
    """`root/images/` + train.json / test.json as a user brings them: COCO-17 with eyes and
    ears never labelled, one image with two people, (with `extras`) a crowd annotation
    without keypoints, a box-only annotation of another category and one person without a
    bbox, and (with `rotated`) a phone photo in a subfolder with a space in its name, stored
    sideways with EXIF orientation 6 and labelled upright. Returns root."""
    root = pathlib.Path(root)
    (root / "images" / "phone").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = {}
    for split, count in (("train", n_train), ("test", n_test)):
        images, anns = [], []
        for i in range(count):
            name = f"{split}_{i:02d}.png"
            people = [_pose(20 + rng.uniform(-3, 3), 28 + rng.uniform(-3, 3), 1.6)]
            if split == "train" and i == 0:   # two people side by side
                people = [_pose(14, 28, 1.4), _pose(46, 28, 1.4)]
            _picture(64 if len(people) > 1 else 40, 52, people, seed + i).save(
                root / "images" / name)
            images.append({"id": 10 * i + 7, "file_name": name, "width": 0, "height": 0})
            for k, joints in enumerate(people):
                anns.append(_ann(1000 + 10 * i + k + (500 if split == "test" else 0),
                                 10 * i + 7, joints, bbox=not (extras and i == 1)))
        if split == "train" and rotated:
            upright = [_pose(20, 28, 1.6)]
            pic = _picture(40, 52, upright, seed + 99)
            exif = Image.Exif()
            exif[formats.EXIF_ORIENTATION] = 6          # shown: stored turned 90 deg clockwise
            pic.transpose(Image.Transpose.ROTATE_270).transpose(Image.Transpose.ROTATE_180).save(
                root / "images" / "phone" / "my photo.jpg", quality=95, exif=exif.tobytes())
            images.append({"id": 900, "file_name": "phone/my photo.jpg", "width": 40,
                           "height": 52})
            anns.append(_ann(9000, 900, upright[0]))
        if split == "train" and extras:
            anns.append({"id": 5000, "image_id": 7, "category_id": 1, "iscrowd": 1,
                         "bbox": [0, 0, 30, 30]})                      # crowd, no keypoints
            anns.append({"id": 5001, "image_id": 17, "category_id": 2, "bbox": [1, 1, 9, 9]})
        files[split] = {"images": images, "annotations": anns,
                        "categories": [CATEGORY, {"id": 2, "name": "bag"}]}
        (root / f"{split}.json").write_text(json.dumps(files[split]))
    return root


def test_prepare_builds_a_rotated_photo_upright_and_names_what_it_skips(tmp_path):
    """prepare records the phone photo at its upright size, its labels kept as given; a crowd
    annotation without keypoints and a box-only one of another category are skipped, counted
    and one of each named."""
    from vl4pose_jax import data
    with Image.open(write_coco17(tmp_path / "m") / "images" / "phone" / "my photo.jpg") as im:
        assert im.size == (52, 40) and formats.oriented_size(im) == (40, 52)
    printed = []
    commands.prepare(tmp_path / "m", data_dir=tmp_path / "tfds", log_fn=printed.append)
    assert ("train: annotations skipped: 1 crowd (iscrowd = 1) (e.g. annotations[8] (id 5000, "
            "image 'train_00.png')), 1 of another category (e.g. annotations[9] (id 5001, "
            "image 'train_01.png'))") in "\n".join(printed)
    source = data.load("coco_keypoints", "train", data_dir=tmp_path / "tfds")
    (ex,) = [source[i] for i in range(len(source))
             if transforms.as_str(source[i]["id"]) == "phone/my photo.jpg#0"]
    assert (int(ex["width"]), int(ex["height"])) == (40, 52)
    np.testing.assert_allclose(ex["joints"][5:], _pose(20, 28, 1.6)[5:], atol=0.01)
    report = json.loads(next((tmp_path / "tfds").glob("coco_keypoints/*/build_report.json"))
                        .read_text())
    assert report["masked_joints"] == 0
    meta = coco.read_meta(tmp_path / "tfds")
    assert meta["never_labelled"] == list(NEVER)
    assert coco.absent_joints(tmp_path / "tfds") == [1, 2, 3, 4]
    assert any(f"warning: joint(s) {list(NEVER)} are labelled in no person" in line
               for line in printed)


def test_never_labelled_joints_hang_as_leaves_off_a_spine_of_labelled_joints():
    """COCO-17 with eyes and ears never labelled: without the rule the nose reaches the body
    only through them; with it the nose hangs off its nearest labelled joint (a shoulder) and
    each eye / ear is a leaf of its first labelled skeleton neighbour."""
    pairs = [(a - 1, b - 1) for a, b in COCO_PERSON_SKELETON]
    never = [COCO_PERSON.index(n) for n in NEVER]
    old, _, _, _ = coco.tree_links(COCO_PERSON, pairs)
    assert (1, 0) in old or (2, 0) in old               # nose below an eye
    people = [coco.Person("a.png", 0, _pose(20, 28, s).astype(np.float32),
                          np.array([-1 if n in NEVER else 1 for n in COCO_PERSON], np.int8),
                          np.array([0, 0, 40, 52], np.float32), 1, 1) for s in (1.0, 1.5)]
    assert coco.never_labelled(people, 17) == never
    links, root, how, _ = coco.tree_links(COCO_PERSON, pairs, unlabelled=never,
                                          distances=coco.mean_distances(people, 17))
    parent = {c: p for p, c in links}
    assert len(links) == 16 and root not in parent and set(parent) == set(range(17)) - {root}
    name = dict(enumerate(COCO_PERSON))
    assert name[parent[0]] in ("left_shoulder", "right_shoulder")
    assert {name[j]: name[parent[j]] for j in never} == {
        "left_eye": "nose", "right_eye": "nose", "left_ear": "left_shoulder",
        "right_ear": "right_shoulder"}
    assert not set(never) & set(parent.values())        # leaves: nobody hangs off them
    assert "nose under left_shoulder" in how or "nose under right_shoulder" in how
    assert "hung as leaves (kept out of the tree's spine): left_eye under nose" in how


# ----------------------------------------------------------------------------- several people

def _boxes_file(path, listed):
    """A COCO person-boxes file: {file_name: [bbox, ...]} (an entry "crowd" is a crowd region)."""
    images, anns = [], []
    for k, (name, boxes) in enumerate(listed.items()):
        images.append({"id": k + 1, "file_name": name})
        for b in boxes:
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 1,
                         **({"bbox": [0, 0, 30, 30], "iscrowd": 1} if b == "crowd"
                            else {"bbox": b})})
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "person"}]}))
    return path


def test_inputs_missing_from_the_boxes_file_are_scored_whole_and_top_k_is_checked_first(tmp_path):
    from vl4pose_jax import rank
    folder = tmp_path / "new"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png", "sub/d e.png"):
        Image.new("RGB", (20, 16)).save(folder / name)
    boxes = _boxes_file(tmp_path / "boxes.json", {
        "a.png": [[0, 0, 8, 14], [10, 0, 8, 14], "crowd"], "b.png": []})
    inputs = rank.open_inputs(folder, boxes=boxes)
    assert [(inputs.names[p], k, b is None) for p, k, b in inputs.crops] == [
        ("a.png", 0, False), ("a.png", 1, False), ("c.png", 0, True), ("sub/d e.png", 0, True)]
    assert inputs.scorable == 3
    assert inputs.describe() == [
        "2 input(s) not in the boxes file scored as one whole-image crop each (a whole image "
        "with several people is one crop straddling them), e.g. c.png",
        "1 input(s) listed in the boxes file with no box (no person) not scored, e.g. b.png"]
    with pytest.raises(rank.InputError, match=r"^--top_k=4 but new holds 4 images, of which 1 "
                       r"have no person box and are not scored: choose 1\.\.3$"):
        rank.check_top_k(inputs, 4, "new")
    rank.check_top_k(inputs, 3, "new")


def test_a_crowded_image_does_not_crowd_the_top():
    """An image's score is the mean of its people's: five people of whom one is unusual rank
    below one image whose single person is more unusual than their mean (the maximum would
    put the crowd first: one chance per person). Selection-order methods keep their order."""
    from vl4pose_jax import rank
    inputs = rank.Inputs("images", pathlib.Path("."), ["crowd.png", "one.png", "dull.png"],
                         [-1] * 3, [(0, k, None) for k in range(5)] + [(1, 0, None), (2, 0, None)])
    scores = np.array([1.0, 1.0, 1.0, 1.0, 5.0, 4.0, 0.5])
    ok = np.ones(7, bool)
    order = rank._crop_order(scores, np.zeros(0, np.int64), ok)
    assert order.tolist()[:2] == [4, 5]                 # per person: the crowd's odd one first
    image_order, image_score, image_rank = rank._image_ranking(inputs, order, scores, ok)
    assert image_order.tolist() == [1, 0, 2] and image_rank.tolist() == [2, 1, 3]
    np.testing.assert_allclose(image_score, [1.8, 4.0, 0.5])
    sel = np.array([6, 0])                               # a greedy method picked these first
    order = rank._crop_order(scores, sel, ok)
    image_order, _, _ = rank._image_ranking(inputs, order, scores, ok, selected=2)
    assert image_order.tolist() == [2, 0, 1]


# ----------------------------------------------------------------------------- merge again

def test_merge_reports_corrected_labels_and_applies_them_with_replace_labels(tmp_path):
    manual = write_coco17(tmp_path / "m", rotated=False, extras=False)
    data_dir = tmp_path / "tfds"
    commands.prepare(manual, data_dir=data_dir, log_fn=lambda *a: None)
    fixed = json.loads((manual / "train.json").read_text())
    ann = next(a for a in fixed["annotations"] if a["image_id"] == 17)
    ann["keypoints"][5 * 3] += 3.0                         # left_shoulder moved 3 px
    (tmp_path / "fixed.json").write_text(json.dumps(fixed))
    printed = []
    result = commands.merge(manual, tmp_path / "fixed.json", images=manual / "images",
                            data_dir=data_dir, log_fn=printed.append)
    assert result["corrected"] == ["train_01.png"] and result["replaced"] == []
    assert any("1 image(s) already in" in p and "--replace_labels" in p for p in printed)
    before = (manual / "train.json").read_text()
    assert not list(manual.glob("train.*.json"))          # nothing written
    result = commands.merge(manual, tmp_path / "fixed.json", images=manual / "images",
                            data_dir=data_dir, replace_labels=True, log_fn=printed.append)
    assert result["replaced"] == ["train_01.png"]
    (backup,) = manual.glob("train.*.json")
    assert backup.read_text() == before
    after = json.loads((manual / "train.json").read_text())
    (new_ann,) = [a for a in after["annotations"] if a["image_id"] == 17]
    assert new_ann["keypoints"][15] == pytest.approx(ann["keypoints"][15])
    assert new_ann["id"] > max(a["id"] for a in fixed["annotations"])
    from vl4pose_jax import data
    source = data.load("coco_keypoints", "train", data_dir=data_dir)
    (ex,) = [source[i] for i in range(len(source))
             if transforms.as_str(source[i]["id"]) == "train_01.png#0"]
    assert ex["joints"][5, 0] == pytest.approx(ann["keypoints"][15])   # the dataset follows


# ----------------------------------------------------------------------------- the whole loop

def test_the_whole_loop_on_own_data(tmp_path, monkeypatch):
    """prepare -> train (micro) -> score new images (a copy of a labelled one, a rotated phone
    photo, a two-person image with boxes, the rest without) -> annotate -> merge -> rescore
    (the merged images left out) -> fine-tune with the cycle schedule."""
    import os
    from experiments import score
    from vl4pose_jax import protocol, simulate
    from vl4pose_jax import workdir as wd
    manual = write_coco17(tmp_path / "m")
    data_dir = tmp_path / "tfds"
    commands.prepare(manual, data_dir=data_dir, log_fn=lambda *a: None)
    config = protocol.Config(dataset="coco_keypoints", methods=("vl4pose",), init_size=10**9,
                             rounds=0, epochs=1, preset="micro", batch_size=8,
                             data_dir=str(data_dir), progress=False, checkpoint_every=0)
    simulate.run(config, tmp_path / "w1", log=lambda *a: None)
    wd.record_data(tmp_path / "w1", config)
    new = tmp_path / "new"
    (new / "phone").mkdir(parents=True)
    (new / "old copy.png").write_bytes((manual / "images" / "train_02.png").read_bytes())
    (new / "phone" / "turned.jpg").write_bytes(
        (manual / "images" / "phone" / "my photo.jpg").read_bytes() + b"\0")  # other bytes
    two = [_pose(14, 28, 1.4), _pose(46, 28, 1.4)]
    _picture(64, 52, two, 7).save(new / "two.png")
    for i in range(3):
        _picture(40, 52, [_pose(20, 28, 1.5)], 50 + i).save(new / f"n{i}.png")
    boxes = _boxes_file(tmp_path / "boxes.json", {"two.png": [[3, 10, 22, 36], [35, 10, 22, 36]]})
    said = []
    umask = os.umask(0o077)
    try:
        out, scored = score.run(tmp_path / "w1", new, tmp_path / "out", top_k=5, boxes=boxes,
                                progress=False, log=said.append)
    finally:
        os.umask(umask)
    text = "\n".join(said)
    assert "1 input(s) already in the dataset" in text
    assert "old copy.png = images/train_02.png" in text
    assert "4 input(s) not in the boxes file scored as one whole-image crop each" in text
    assert "old copy.png" not in scored.inputs.names and len(scored.inputs.crops) == 6
    assert sorted(scored.person_rank.tolist()) == list(range(1, 7))
    assert out.stat().st_mode & 0o777 == 0o755
    assert all(p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644)
               for p in out.rglob("*"))
    top = json.loads((out / "top_k.coco.json").read_text())
    by_name = {im["file_name"]: im for im in top["images"]}
    assert (by_name["phone/turned.jpg"]["width"], by_name["phone/turned.jpg"]["height"]) == (40, 52)
    assert sum(a["image_id"] == by_name["two.png"]["id"] for a in top["annotations"]) == 2
    # an annotator corrects the pre-annotations (here: every joint put where it belongs)
    truth = {"phone/turned.jpg": [_pose(20, 28, 1.6)], "two.png": two}
    for ann in top["annotations"]:
        name = next(im["file_name"] for im in top["images"] if im["id"] == ann["image_id"])
        k = sum(a["image_id"] == ann["image_id"] and a["id"] < ann["id"]
                for a in top["annotations"])
        joints = truth.get(name, [_pose(20, 28, 1.5)])[k]
        ann["keypoints"] = _ann(0, 0, joints)["keypoints"]
    annotated = tmp_path / "annotated.json"
    annotated.write_text(json.dumps(top))
    result = commands.merge(manual, annotated, images=new, data_dir=data_dir,
                            log_fn=lambda *a: None)
    assert result["added_images"] == 5 and result["added_people"] == 6
    merged = json.loads((manual / "train.json").read_text())
    turned = next(im for im in merged["images"] if im["file_name"] == "phone/turned.jpg")
    assert (turned["width"], turned["height"]) == (40, 52)
    # rescoring: what was merged is left out; with nothing else, a one-paragraph refusal
    from vl4pose_jax import rank
    with pytest.raises(rank.InputError, match=r"every one of the 6 inputs .* is already in the "
                       r"dataset .*--include_labelled"):
        score.run(tmp_path / "w1", new, tmp_path / "out2", top_k=1, progress=False,
                  log=said.append)
    _picture(40, 52, [_pose(21, 27, 1.5)], 60).save(new / "n3.png")
    said.clear()
    _, again = score.run(tmp_path / "w1", new, tmp_path / "out2", top_k=1, progress=False,
                         log=said.append)
    assert again.inputs.names == ["n3.png"]
    assert "6 input(s) already in the dataset" in "\n".join(said)
    # fine-tuning from the first run trains the cycle schedule, not round 0's epochs
    trained_epochs, fit = [], simulate.fit

    def counting_fit(config, d, n, state, labelled, epochs, *args, **kwargs):
        trained_epochs.append(epochs)
        return fit(config, d, n, state, labelled, epochs, *args, **kwargs)

    monkeypatch.setattr(simulate, "fit", counting_fit)
    tuned = dataclasses.replace(config, init_from=str(tmp_path / "w1"), epochs=7,
                                cycle_epochs=1)
    rows = simulate.run(tuned, tmp_path / "w2", log=lambda *a: None)
    assert trained_epochs == [1] and rows[0]["num_labelled"] == 13


def test_init_from_carries_the_source_schedule_and_coco_cpu_is_a_valid_protocol(tmp_path):
    from experiments import al
    from vl4pose_jax import protocol
    from vl4pose_jax import workdir as wd
    manual = write_coco17(tmp_path / "m", rotated=False, extras=False)
    commands.prepare(manual, data_dir=tmp_path / "tfds", log_fn=lambda *a: None)
    source = protocol.make_config("coco_keypoints", ("vl4pose",), protocol="coco_cpu",
                                  data_dir=str(tmp_path / "tfds"), cycle_epochs=3,
                                  lr_schedule="plateau")
    assert (source.preset, source.epochs, source.rounds) == ("small", 40, 0)
    protocol.check(source)
    wd.check_config(source, tmp_path / "w0")
    wd.record_data(tmp_path / "w0", source)
    flags = al.FLAGS
    try:
        flags.unparse_flags()
        flags(["al", f"--init_from={tmp_path / 'w0'}"])
        c = al.config_from_flags(al.init_from_settings(tmp_path / "w0"))
        assert (c.preset, c.cycle_epochs, c.lr_schedule, c.batch_size) == ("small", 3,
                                                                          "plateau", 16)
        flags.unparse_flags()
        flags(["al", f"--init_from={tmp_path / 'w0'}", "--cycle_epochs=2"])
        assert al.config_from_flags(al.init_from_settings(tmp_path / "w0")).cycle_epochs == 2
    finally:
        flags.unparse_flags()


def test_merge_refuses_a_photo_its_tool_labelled_sideways(tmp_path):
    """An annotated file giving an EXIF-rotated photo its stored (sideways) size: refused,
    nothing written; given the upright size it merges, and train.json says the upright size."""
    manual = write_coco17(tmp_path / "m", n_train=3, extras=False)
    commands.prepare(manual, data_dir=tmp_path / "tfds", log_fn=lambda *a: None)
    new = tmp_path / "new"
    new.mkdir()
    (new / "p.jpg").write_bytes((manual / "images" / "phone" / "my photo.jpg").read_bytes()
                                + b"\0")
    raw = {"images": [{"id": 1, "file_name": "p.jpg", "width": 52, "height": 40}],
           "annotations": [_ann(1, 1, _pose(20, 28, 1.6))], "categories": [CATEGORY]}
    (tmp_path / "a.json").write_text(json.dumps(raw))
    before = (manual / "train.json").read_text()
    with pytest.raises(coco.CocoError, match=r"'p\.jpg' is 52 x 40 there, but the photo is shown "
                       r"40 x 52 .*labelled it sideways"):
        commands.merge(manual, tmp_path / "a.json", images=new, data_dir=tmp_path / "tfds",
                       log_fn=lambda *a: None)
    assert (manual / "train.json").read_text() == before and not (manual / "images/p.jpg").exists()
    raw["images"][0].update(width=40, height=52)
    (tmp_path / "a.json").write_text(json.dumps(raw))
    commands.merge(manual, tmp_path / "a.json", images=new, data_dir=tmp_path / "tfds",
                   log_fn=lambda *a: None)
    merged = json.loads((manual / "train.json").read_text())
    assert [(im["width"], im["height"]) for im in merged["images"]
            if im["file_name"] == "p.jpg"] == [(40, 52)]
