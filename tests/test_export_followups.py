"""export.py follow-ups, from hand-made rankings (no model): never-labelled joints written absent,
output readable by all whatever the umask, spreadsheet formulas defused in ranking.csv, a rank
per person, and labels of an EXIF-rotated photo checked against its upright size."""
import csv
import json
import os
import types

import numpy as np
import pytest
from PIL import Image

from vl4pose_jax import export, rank, skeletons
from vl4pose_jax.data import coco

NAMES = list(skeletons.lsp14.names)
CATEGORY = {"id": 1, "name": "person", "keypoints": NAMES,
            "skeleton": [[a + 1, b + 1] for a, b in skeletons.lsp14.links]}


def _scored(images, files, scores, boxes=None, person_rank=True):
    """A ranking of `files` (40 x 30 images written into `images`), one crop per score (two per
    image when `boxes`, a COCO boxes file, says so), scored as given."""
    images.mkdir(exist_ok=True)
    for k, name in enumerate(files):
        Image.new("RGB", (40, 30), (40 * k, 0, 0)).save(images / name)
    inputs = rank.open_inputs(images, boxes=boxes)
    n = len(inputs.crops)
    scores = np.asarray(scores, float)
    assert len(scores) == n
    ok = np.ones(n, bool)
    order = rank._crop_order(scores, np.zeros(0, np.int64), ok)  # pylint: disable=protected-access
    image_order, image_score, image_rank = rank._image_ranking(  # pylint: disable=protected-access
        inputs, order, scores, ok)
    joints = np.random.default_rng(0).uniform(2, 28, (n, 14, 2))
    own = None
    if person_rank:
        own = np.zeros((n,), np.int64)
        own[order] = np.arange(1, n + 1)
    return rank.Scored(inputs, skeletons.lsp14, "toy", scores, joints, np.tile([40, 30], (n, 1)),
                       np.tile([20.0, 15.0, 30.0], (n, 1)), ok, order, image_score, image_order,
                       image_rank, [], own)


def _meta(data_dir, never_labelled):
    path = coco.meta_path(data_dir, coco.NAME)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"names": NAMES, "never_labelled": never_labelled}))


def test_never_labelled_joints_are_absent_in_both_formats(tmp_path):
    """coco_meta.json's never-labelled joints: [0, 0, 0] and not counted in top_k.coco.json, no
    keypoint region in the Label Studio tasks (the annotator adds them where seen)."""
    _meta(tmp_path / "data", ["head", "neck"])
    absent = export.absent_for(coco.NAME, tmp_path / "data")
    assert absent == {NAMES.index("head"), NAMES.index("neck")}
    assert export.absent_for("lsp", tmp_path / "data") == set()   # not COCO: none
    scored = _scored(tmp_path / "new", ["a.png", "b.png"], [1.0, 2.0])
    out = export.write(scored, tmp_path / "out", top_k=2, category=CATEGORY, absent=absent)
    top = json.loads((out / "top_k.coco.json").read_text())
    for ann in top["annotations"]:
        kps = np.array(ann["keypoints"]).reshape(14, 3)
        assert (kps[sorted(absent)] == 0).all()
        others = [j for j in range(14) if j not in absent]
        assert (kps[others, 2] == 2).all() and ann["num_keypoints"] == 12
    tasks = json.loads((out / "label_studio" / "tasks.json").read_text())
    for task in tasks:
        points = [r for r in task["predictions"][0]["result"] if r["type"] == "keypointlabels"]
        labels = {r["value"]["keypointlabels"][0] for r in points}
        assert len(points) == 12 and not labels & {"head", "neck"}
        assert not any(r["id"].endswith((f"_{NAMES.index('head')}", f"_{NAMES.index('neck')}"))
                       for r in points)


def test_score_passes_the_datasets_never_labelled_joints(tmp_path, monkeypatch):
    """experiments.score.run (the model and scoring replaced by a hand-made ranking) writes the
    dataset's never-labelled joints absent, and its marker with the rest, readable by all."""
    from experiments import score
    _meta(tmp_path / "data", ["head"])
    scored = _scored(tmp_path / "new", ["a.png", "b.png"], [1.0, 2.0])
    trained = types.SimpleNamespace(
        config=types.SimpleNamespace(dataset=coco.NAME, data_dir=str(tmp_path / "data")),
        meta={"round": 0})
    monkeypatch.setattr(score, "check_flags", lambda *a, **k: None)
    monkeypatch.setattr(score, "data_dir_for", lambda workdir, data_dir=None: data_dir)
    monkeypatch.setattr(score, "_load_trained", lambda *a, **k: trained)
    monkeypatch.setattr(rank, "score", lambda *a, **k: scored)
    umask = os.umask(0o077)
    try:
        out, _ = score.run(tmp_path / "w", tmp_path / "new", tmp_path / "out", top_k=2,
                           include_labelled=True, progress=False, log=lambda *a: None)
    finally:
        os.umask(umask)
    top = json.loads((out / "top_k.coco.json").read_text())
    head = NAMES.index("head")
    assert all(a["keypoints"][3 * head:3 * head + 3] == [0, 0, 0] and a["num_keypoints"] == 13
               for a in top["annotations"])
    assert json.loads((out / score.MARKER).read_text())["written_by"] == "experiments.score"
    assert all(p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644)
               for p in [out, *out.rglob("*")])
    assert not hasattr(score, "make_readable")   # one function for one job: export's


def test_output_is_readable_by_all_whatever_the_umask(tmp_path):
    """export.write alone: folders 0o755 and files 0o644 under a umask of 0o077 (the temporary
    folder is 0o700), before it is renamed into place."""
    scored = _scored(tmp_path / "new", ["a.png", "b.png", "c.png"], [1.0, 3.0, 2.0])
    umask = os.umask(0o077)
    try:
        out = export.write(scored, tmp_path / "deep" / "out", top_k=2, category=CATEGORY)
    finally:
        os.umask(umask)
    found = [out, *out.rglob("*")]
    assert len(found) >= 6   # ranking, coco, label_studio/ and its two files, gallery
    assert all(p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644) for p in found)


def test_spreadsheet_formulas_are_defused_in_ranking_csv(tmp_path):
    """A file name a spreadsheet would run as a formula (= + - @, tab, CR first) gets a leading
    '; an ordinary name and the numbers (negative frame -1 too) are left as they are."""
    names = ["=1+2.jpg", "+a.png", "-b.png", "@c.png", "\td.png", "\re.png", "plain.png"]
    scored = _scored(tmp_path / "new", names, [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    export.write_ranking_csv(scored, tmp_path / "ranking.csv")
    with open(tmp_path / "ranking.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["input"] for r in rows) == sorted(["'" + n for n in names[:-1]]
                                                      + ["plain.png"])
    assert all(r["frame"] == "-1" for r in rows)
    assert export.csv_text("a=b") == "a=b" and export.csv_text("") == ""


def test_ranking_csv_has_a_rank_per_person(tmp_path):
    """Two people in one image: the image's score is their mean, and each person has their own
    place among all crops (`Scored.person_rank`); without one the column is left out."""
    (tmp_path / "boxes.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 20, 30]},
                        {"id": 2, "image_id": 1, "bbox": [20, 0, 20, 30]},
                        {"id": 3, "image_id": 2, "bbox": [0, 0, 40, 30]}]}))
    scored = _scored(tmp_path / "new", ["a.png", "b.png"], [10.0, 0.0, 6.0],
                     boxes=tmp_path / "boxes.json")
    export.write_ranking_csv(scored, tmp_path / "ranking.csv")
    with open(tmp_path / "ranking.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = {(r["input"], r["person"]): r for r in rows}
    assert got[("b.png", "0")]["rank"] == "1" and got[("a.png", "0")]["rank"] == "2"
    assert float(got[("a.png", "0")]["input_score"]) == 5.0     # mean of 10 and 0
    assert [got[k]["person_rank"] for k in [("a.png", "0"), ("b.png", "0"), ("a.png", "1")]] == [
        "1", "2", "3"]
    plain = _scored(tmp_path / "new2", ["a.png"], [1.0], person_rank=False)
    export.write_ranking_csv(plain, tmp_path / "plain.csv")
    with open(tmp_path / "plain.csv", newline="") as fh:
        assert "person_rank" not in next(csv.reader(fh))


def test_labels_of_an_exif_rotated_photo_match_its_upright_size(tmp_path):
    """A JPEG stored 60 x 40 with EXIF orientation 6 is shown upright as 40 x 60 by Label
    Studio: a task labelled at 40 x 60 is accepted (the upright size written), one at the
    stored 60 x 40 is refused."""
    from vl4pose_jax.data.coco import labelstudio
    (tmp_path / "new").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (60, 40), "gray").save(tmp_path / "new" / "turned.jpg", exif=exif)

    def task(w, h):
        def region(rid, kind, name, value, parent=None):
            return {"id": rid, **({"parentID": parent} if parent else {}), "from_name": name,
                    "to_name": "image", "type": kind, "original_width": w,
                    "original_height": h, "image_rotation": 0, "value": value}
        result = [region("p0", "rectanglelabels", "person",
                         {"x": 10, "y": 10, "width": 80, "height": 80, "rotation": 0,
                          "rectanglelabels": ["person"]})]
        result += [region(f"p0_{j}", "keypointlabels", "keypoints",
                          {"x": 20 + 4 * j, "y": 20 + 4 * j, "width": 0.6,
                           "keypointlabels": [n]}, parent="p0") for j, n in enumerate(NAMES)]
        return [{"id": 1, "data": {"file_name": "turned.jpg"},
                 "annotations": [{"id": 1, "result": result, "was_cancelled": False}]}]

    labels, _ = labelstudio.from_json_export(task(40, 60), CATEGORY, tmp_path / "new",
                                             "export.json")
    (image,) = labels["images"]
    assert (image["width"], image["height"]) == (40, 60)
    xs = labels["annotations"][0]["keypoints"][0::3]
    assert max(xs) < 40
    with pytest.raises(labelstudio.LabelStudioError,
                       match=r"turned.jpg is 40 x 60 \(upright\) but was labelled as 60 x 40"):
        labelstudio.from_json_export(task(60, 40), CATEGORY, tmp_path / "new", "export.json")
