"""COCO-keypoints datasets (`vl4pose_jax.data.coco`): files, prepare, ranking new images and
video frames, exports, labels merged back (`commands.merge` and its command line).

The loop test runs the whole real loop on LSPET images: part of LSPET written as COCO keypoints
files, prepared, a micro model trained, the rest scored and exported, the export "annotated"
(ground truth standing in for an annotator) and merged back, and a model fine-tuned from the
previous weights. Exports are checked with real consumers: pycocotools, and the Label Studio
predictions format as documented.
"""
import json
import pathlib
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import require_shared_data
import coco_util
from coco_util import COCO_PERSON, COCO_PERSON_SKELETON
from vl4pose_jax.data import coco
from vl4pose_jax.data.coco import commands

# ----------------------------------------------------------------------------- no data needed



def test_tree_from_a_tree_skeleton_keeps_it():
    names = ("a", "b", "c", "d")
    links, root, how, dropped = coco.tree_links(names, [(0, 1), (1, 2), (1, 3)])
    assert sorted(map(sorted, links)) == [[0, 1], [1, 2], [1, 3]] and not dropped
    assert names[root] == "b" and "a tree" in how
    links, root, _, _ = coco.tree_links(names, [(0, 1), (1, 2), (1, 3)], root="a")
    assert root == 0 and links[0] == (0, 1)


def test_coco_person_skeleton_gets_a_spanning_tree():
    from vl4pose_jax import skeletons
    pairs = [(a - 1, b - 1) for a, b in COCO_PERSON_SKELETON]
    links, root, how, dropped = coco.tree_links(COCO_PERSON, pairs)
    sk = skeletons.Skeleton(tuple(COCO_PERSON), tuple(links))  # validates: a tree
    assert sk.num_links == 16 and len(dropped) == 19 - 16
    assert "spanning tree" in how and "dropped" in how
    flips = coco.flip_pairs(COCO_PERSON)
    assert (COCO_PERSON.index("left_eye"), COCO_PERSON.index("right_eye")) in flips
    assert len(flips) == 8


def test_disconnected_skeleton_and_links_option():
    names = ("a", "b", "c")
    links, root, how, _ = coco.tree_links(names, [(0, 1)])
    assert len(links) == 2 and "not reached" in how
    links, root, how, _ = coco.tree_links(names, [], links=["a-b", "b-c"], root="a")
    assert links == [(0, 1), (1, 2)] and "--links" in how
    with pytest.raises(coco.CocoError, match="zz"):
        coco.tree_links(names, [], links=["a-zz"])


def _minimal(tmp_path, **changes):
    raw = {"images": [{"id": 1, "file_name": "x.jpg", "width": 10, "height": 10}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                            "keypoints": [1, 1, 2, 2, 2, 1, 0, 0, 0]}],
           "categories": [{"id": 1, "name": "p", "keypoints": ["a", "b", "c"],
                           "skeleton": [[1, 2], [2, 3]]}]}
    for key, value in changes.items():
        raw[key] = value
    path = tmp_path / "train.json"
    path.write_text(json.dumps(raw) if not isinstance(raw, str) else raw)
    return path


def test_read_coco_maps_visibility_and_boxes(tmp_path):
    c = coco.read_coco(_minimal(tmp_path))
    (p,) = c.people
    assert p.visibility.tolist() == [1, 0, -1]          # v 2, 1, 0
    assert p.box.tolist() == [1, 1, 2, 2] and p.id == "x.jpg#0"


@pytest.mark.parametrize("change,match", [
    ({"annotations": [{"id": 1, "image_id": 1, "keypoints": [1, 1, 2]}]},
     r"annotations\[0\]\.keypoints.*3 values.*3 keypoints"),
    ({"categories": [{"id": 1, "keypoints": ["a", "b", "c"], "skeleton": [[1, 4]]}]},
     r"skeleton\[0\].*unknown joint 4"),
    ({"categories": [{"id": 1, "keypoints": ["a", "b", "c"], "skeleton": [["a", "q"]]}]},
     r"unknown joint 'q'"),
    ({"images": [{"id": 1, "file_name": "/etc/passwd"}]}, r"file_name.*outside"),
    ({"images": [{"id": 1, "file_name": "../x.jpg"}]}, r"file_name.*outside"),
    ({"categories": [{"id": 1, "name": "person"}]}, r"categories\[\]\.keypoints"),
    ({"annotations": {"a": 1}}, r"`annotations`"),
])
def test_bad_coco_files_name_file_and_field(tmp_path, change, match):
    path = _minimal(tmp_path, **change)
    with pytest.raises(coco.CocoError, match=match) as err:
        coco.read_coco(path)
    assert str(path) in str(err.value)


def test_not_json_and_not_coco(tmp_path):
    path = tmp_path / "train.json"
    path.write_text("{not json")
    with pytest.raises(coco.CocoError, match="not valid JSON"):
        coco.read_coco(path)
    path.write_text("[1, 2]")
    with pytest.raises(coco.CocoError, match="not a JSON object"):
        coco.read_coco(path)


# ----------------------------------------------------------------------------- real loop

def _check_coco_file(path):
    """pycocotools must load it; return the COCO object."""
    from pycocotools.coco import COCO
    c = COCO(str(path))
    assert c.getImgIds() and c.getAnnIds()
    return c


def _check_label_studio(folder, num_joints):
    """The Label Studio import, against the documented predictions / KeyPointLabels format."""
    config = ET.fromstring((folder / "labeling_config.xml").read_text())
    assert config.tag == "View"
    image = config.find("Image")
    control = config.find("KeyPointLabels")
    labels = {e.get("value") for e in control.findall("Label")}
    assert len(labels) == num_joints and control.get("toName") == image.get("name")
    tasks = json.loads((folder / "tasks.json").read_text())
    assert isinstance(tasks, list) and tasks
    assert [e.get("model_index") for e in control.findall("Label")] == [
        str(k) for k in range(num_joints)]
    boxes = config.find("RectangleLabels")
    for rank, task in enumerate(tasks, 1):
        assert isinstance(task["data"][image.get("value").lstrip("$")], str)
        assert task["data"]["rank"] == rank and isinstance(task["data"]["file_name"], str)
        (pred,) = task["predictions"]
        assert isinstance(pred["result"], list) and pred["result"]
        assert pred["score"] == (rank - 1) / len(tasks) and isinstance(pred["model_version"], str)
        box_ids = {r["id"] for r in pred["result"] if r["type"] == "rectanglelabels"}
        for r in pred["result"]:
            if r["type"] == "rectanglelabels":
                assert r["from_name"] == boxes.get("name") and r["to_name"] == image.get("name")
                continue
            assert r["from_name"] == control.get("name") and r["to_name"] == image.get("name")
            assert r["type"] == "keypointlabels" and r["parentID"] in box_ids
            assert isinstance(r["original_width"], int) and isinstance(r["original_height"], int)
            v = r["value"]
            assert 0 <= v["x"] <= 100 and 0 <= v["y"] <= 100 and v["width"] > 0
            assert len(v["keypointlabels"]) == 1 and v["keypointlabels"][0] in labels
    return tasks


def _score(loop, images, out, **kw):
    """`experiments.score.run` with the loop's workdir and data directory (as the command is
    given `--data_dir`)."""
    from experiments import score
    kw.setdefault("progress", False)
    kw.setdefault("log", lambda *a: None)
    # test_full_loop merges some of loop["new"]; the other tests score the whole folder
    kw.setdefault("include_labelled", True)
    return score.run(loop["w1"], images, out, data_dir=str(loop["data_dir"]), **kw)


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """Part of LSPET as a COCO dataset (train.json 16 images, of which 3 hash into
    validation; pool 8, test 8), prepared; a micro vl4pose model trained on train alone
    (rounds=0); 12 more images as the new, unlabelled data."""
    shared = require_shared_data()
    from vl4pose_jax import protocol, simulate
    from vl4pose_jax import workdir as wd
    from vl4pose_jax.data import formats
    base = tmp_path_factory.mktemp("coco_loop")
    manual = coco_util.write_dataset(shared, base / "manual", {
        "train": range(0, 16), "pool": range(16, 24), "test": range(24, 32)})
    data_dir = base / "tfds"
    builder = commands.prepare(manual, data_dir=data_dir)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
        "train": 13, "validation": 3, "pool": 8, "test": 8}
    assert coco.read_meta(data_dir)["splits"] == ["train", "validation", "pool", "test"]
    new = base / "new"
    new.mkdir()
    for i in range(32, 44):
        name = formats.lsp_image_name(i, extended=True)
        shutil.copy(shared / "lspet" / "images" / name, new / name)
    config = protocol.Config(dataset="coco_keypoints", methods=("vl4pose",), init_size=10**9,
                             rounds=0, epochs=1, preset="micro", batch_size=8,
                             data_dir=str(data_dir), progress=False, checkpoint_every=0)
    rows = simulate.run(config, base / "w1", log=lambda *a: None)
    wd.record_data(base / "w1", config)   # as experiments.al does
    assert rows[0]["num_labelled"] == 13
    return dict(base=base, manual=manual, data_dir=data_dir, new=new, w1=base / "w1",
                config=config, shared=shared)


def test_full_loop_on_real_images(loop):
    from experiments import score
    from vl4pose_jax import protocol, simulate
    from vl4pose_jax import workdir as wd
    base, manual, data_dir = loop["base"], loop["manual"], loop["data_dir"]
    out, scored = _score(loop, loop["new"], base / "out", top_k=5, progress=False,
                            log=lambda *a: None)
    # ranking.csv: every input, rank 1..12, keypoints in original pixels
    import csv
    rows = list(csv.DictReader(open(out / "ranking.csv")))
    assert len(rows) == 12 and sorted(int(r["rank"]) for r in rows) == list(range(1, 13))
    assert [int(r["rank"]) for r in rows] == list(range(1, 13))
    scores = [float(r["input_score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)       # vl4pose: highest NLL first
    assert "head_x" in rows[0] and "rankl_y" in rows[0]
    # Keypoints map back through the crop: the crop centre maps to the image centre.
    w, h = scored.size[0]
    assert scored.crop[0, 2] == max(w, h)
    # Exports: pycocotools, Label Studio, gallery
    c = _check_coco_file(out / "top_k.coco.json")
    assert len(c.getImgIds()) == 5
    top_names = [c.imgs[i]["file_name"] for i in sorted(c.getImgIds())]
    assert top_names == [r["input"] for r in rows[:5]]
    tasks = _check_label_studio(out / "label_studio", 14)
    assert len(tasks) == 5
    from PIL import Image
    with Image.open(out / "gallery.png") as g:
        assert g.size[0] > 0
    # An annotator corrects the pre-annotations: here, ground truth replaces the predictions.
    exported = json.loads((out / "top_k.coco.json").read_text())
    indices = [int(pathlib.Path(n).stem[2:]) - 1 for n in top_names]
    gt = coco_util.coco_dict(loop["shared"], indices)
    by_name = {im["file_name"]: im["id"] for im in exported["images"]}
    for ann, im in zip(gt["annotations"], gt["images"]):
        ann["image_id"] = by_name[im["file_name"]]
    exported["annotations"] = gt["annotations"]
    annotated = base / "annotated.json"
    annotated.write_text(json.dumps(exported))
    old_ids = set(_source_ids(data_dir, "train"))
    old_validation = set(_source_ids(data_dir, "validation"))
    with pytest.raises(coco.CocoError, match="--images.*exported from"):
        commands.merge(manual, annotated, data_dir=data_dir, log_fn=lambda *a: None)
    result = commands.merge(manual, annotated, images=loop["new"], data_dir=data_dir,
                        log_fn=lambda *a: None)
    assert result["added_images"] == 5 and result["already_labelled"] == 0
    merged = _check_coco_file(manual / "train.json")
    assert len(merged.getImgIds()) == 21
    names = [im["file_name"] for im in merged.dataset["images"]]
    assert len(set(names)) == len(names)
    new_ids = _source_ids(data_dir, "train")
    validation = set(_source_ids(data_dir, "validation"))
    assert old_ids < set(new_ids) and old_validation <= validation
    assert len(set(new_ids)) == len(new_ids)
    assert len(new_ids) + len(validation) == 21 and not validation & set(new_ids)
    assert all((manual / "images" / n).is_file() for n in top_names)
    # Merging the same file again adds nothing.
    again = commands.merge(manual, annotated, images=loop["new"], data_dir=data_dir,
                       log_fn=lambda *a: None)
    assert again["added_images"] == 0 and again["already_labelled"] == 5
    # Train again, starting from the previous weights.
    import dataclasses
    import jax
    # --init_from trains the fine-tuning schedule (cycle_epochs), here none
    config = dataclasses.replace(loop["config"], init_from=str(loop["w1"]), cycle_epochs=0)
    rows = simulate.run(config, base / "w2", log=lambda *a: None)
    assert rows[0]["num_labelled"] == len(new_ids)
    a = wd.load_trained(loop["w1"]).state.params
    b = wd.load_trained(base / "w2").state.params
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    config = dataclasses.replace(loop["config"], init_from=str(loop["w1"]), cycle_epochs=1)
    rows = simulate.run(config, base / "w3", log=lambda *a: None)
    assert rows[0]["num_labelled"] == len(new_ids)


def _source_ids(data_dir, split):
    from vl4pose_jax import data
    return data.load("coco_keypoints", split, data_dir=data_dir).ids()


def test_simulation_on_a_coco_dataset(loop):
    """`experiments.al --dataset=coco_keypoints` simulates on pool.json like on LSPET."""
    import dataclasses
    from vl4pose_jax import protocol, simulate
    from vl4pose_jax import workdir as wd
    config = dataclasses.replace(loop["config"], rounds=1, budget=3, init_size=8)
    rows = simulate.run(config, loop["base"] / "sim", log=lambda *a: None)
    assert [r["num_labelled"] for r in rows] == [8, 11]
    assert all(i.startswith("pool/") for i in rows[0]["selected_ids"])


def test_video_frames_are_ranked_and_written(loop, tmp_path):
    av = pytest.importorskip("av")
    from PIL import Image
    from experiments import score
    images = sorted(loop["new"].iterdir())[:6]
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 96, 128, "yuv420p"
        for path in images:
            with Image.open(path) as im:
                frame = av.VideoFrame.from_image(im.convert("RGB").resize((96, 128)))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out, scored = _score(loop, video, tmp_path / "out", top_k=2, stride=2,
                            progress=False, log=lambda *a: None)
    assert scored.inputs.frames == [0, 2, 4]
    frames = sorted(p.relative_to(out / "frames").as_posix() for p in (out / "frames").rglob("*.png"))
    assert len(frames) == 2 and all(f.startswith("clip/frame_") for f in frames)
    c = _check_coco_file(out / "top_k.coco.json")
    assert sorted(im["file_name"] for im in c.dataset["images"]) == frames
    assert c.dataset["info"]["images_root"] == str((out / "frames").resolve())
    _check_label_studio(out / "label_studio", 14)
    import csv
    rows = list(csv.DictReader(open(out / "ranking.csv")))
    assert sorted(int(r["frame"]) for r in rows) == [0, 2, 4]


def test_person_boxes_give_one_crop_each(loop, tmp_path):
    from experiments import score
    names = sorted(p.name for p in loop["new"].iterdir())
    boxes = {"images": [{"id": k + 1, "file_name": n} for k, n in enumerate(names)],
             "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 40, 60]},
                             {"id": 2, "image_id": 1, "bbox": [30, 10, 40, 60]},
                             {"id": 3, "image_id": 2, "bbox": [5, 5, 50, 50]}],
             "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(boxes))
    out, scored = _score(loop, loop["new"], tmp_path / "out", top_k=2, boxes=path,
                            progress=False, log=lambda *a: None)
    assert len(scored.inputs.crops) == 3
    c = _check_coco_file(out / "top_k.coco.json")
    assert len(c.getAnnIds()) == 3  # both top images, all their people
    assert scored.crop[0, 2] == pytest.approx(1.75 * 60)


def test_bad_scoring_input_is_refused_without_output(loop, tmp_path):
    from experiments import score
    from vl4pose_jax import protocol, rank, simulate
    from vl4pose_jax import workdir as wd
    from vl4pose_jax.data import builders
    with pytest.raises(rank.InputError, match="top_k=13.*12 images"):
        _score(loop, loop["new"], tmp_path / "o1", top_k=13, progress=False)
    assert not (tmp_path / "o1").exists()
    (tmp_path / "empty_workdir").mkdir()
    with pytest.raises(protocol.SimulationError, match="config.json"):
        score.run(tmp_path / "empty_workdir", loop["new"], tmp_path / "o2", top_k=2)
    bad = tmp_path / "bad"
    shutil.copytree(loop["new"], bad)
    victim = sorted(bad.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(builders.CorruptImageError, match=victim.name):
        _score(loop, bad, tmp_path / "o3", top_k=2, progress=False)
    assert not (tmp_path / "o3").exists() and not list(tmp_path.glob(".o3.partial-*"))
    out, scored = _score(loop, bad, tmp_path / "o4", top_k=2, progress=False,
                            skip_corrupt=True, log=lambda *a: None)
    assert len(scored.skipped) == 1 and (out / "skipped.txt").is_file()
    assert scored.image_rank[3] == 0
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"images": [{"id": 1, "file_name": "../../etc/x.jpg"}],
                                 "annotations": []}))
    with pytest.raises(coco.CocoError, match="outside"):
        _score(loop, loop["new"], tmp_path / "o5", top_k=2, boxes=boxes)


def _split_ids(data_dir) -> dict:
    from vl4pose_jax.data import builders
    splits = builders.get_builder("coco_keypoints", data_dir=data_dir).info.splits
    return {s: set(_source_ids(data_dir, s)) for s in splits}


def test_validation_is_carved_from_train_and_survives_merges(tmp_path):
    """Validation = the train.json images whose file name hashes below 10 %, never test's or
    pool's; merging new images keeps every earlier member in validation (and every train
    image in train); the size is in the build report and printed."""
    shared = require_shared_data()
    from vl4pose_jax.data import base, formats
    manual = coco_util.write_dataset(shared, tmp_path / "m", {
        "train": range(0, 20), "pool": range(40, 52), "test": range(60, 64)})
    data_dir = tmp_path / "tfds"
    printed = []
    commands.prepare(manual, data_dir=data_dir, log_fn=printed.append)
    first = _split_ids(data_dir)
    names = lambda ids: {i.split("#")[0] for i in ids}
    assert names(first["validation"]) == {"im00002.jpg", "im00005.jpg", "im00013.jpg"}
    assert names(first["validation"]) == {n for n in names(first["train"] | first["validation"])
                                          if base.in_validation(n)}
    assert len(first["train"]) == 17 and len(first["pool"]) == 12 and len(first["test"]) == 4
    assert any(p.startswith("coco_keypoints: validation = 3 people of 3 images, taken out of "
                            "'train' (20 images)") for p in printed)
    report = json.loads(next(data_dir.glob("coco_keypoints/*/build_report.json")).read_text())
    assert report["validation"]["people"] == report["built_splits"]["validation"] == 3
    # Merge 20 more images (2 of which hash into validation): nothing moves.
    annotated = tmp_path / "annotated.json"
    annotated.write_text(json.dumps(coco_util.coco_dict(shared, range(20, 40))))
    commands.merge(manual, annotated, images=shared / "lspet" / "images", data_dir=data_dir,
                   log_fn=lambda *a: None)
    second = _split_ids(data_dir)
    assert first["validation"] < second["validation"] and first["train"] < second["train"]
    assert names(second["validation"] - first["validation"]) == {"im00022.jpg", "im00035.jpg"}
    assert second["pool"] == first["pool"] and second["test"] == first["test"]
    assert len(second["train"]) + len(second["validation"]) == 40
    everything = sum(map(list, second.values()), [])
    assert len(everything) == len(set(everything))  # disjoint splits
    assert formats.lsp_image_name(0, extended=True) + "#0" in second["train"]


def test_tiny_train_set_has_no_validation(tmp_path):
    """Fewer than 10 train.json images: all of them stay in train, the build report says why,
    and loading the validation split says where to look."""
    shared = require_shared_data()
    from vl4pose_jax import data
    manual = coco_util.write_dataset(shared, tmp_path / "m", {"train": range(0, 5),
                                                             "test": range(5, 7)})
    data_dir = tmp_path / "tfds"
    printed = []
    commands.prepare(manual, data_dir=data_dir, log_fn=printed.append)
    assert len(data.load("coco_keypoints", "train", data_dir=data_dir)) == 5
    assert "coco_keypoints: no validation split: 'train' has 5 images, fewer than 10" in printed
    report = json.loads(next(data_dir.glob("coco_keypoints/*/build_report.json")).read_text())
    assert "no validation split: 'train' has 5 images, fewer than 10" in report["notes"]
    assert coco.read_meta(data_dir)["splits"] == ["train", "test"]
    with pytest.raises(KeyError, match=r"no split 'validation'.*build_report\.json"):
        data.load("coco_keypoints", "validation", data_dir=data_dir)


def test_prepare_refuses_mismatched_files(tmp_path):
    shared = require_shared_data()
    manual = coco_util.write_dataset(shared, tmp_path / "m", {"train": range(2),
                                                             "test": range(2, 4)})
    test = json.loads((manual / "test.json").read_text())
    test["categories"][0]["keypoints"] = test["categories"][0]["keypoints"][:-1] + ["tail"]
    (manual / "test.json").write_text(json.dumps(test))
    with pytest.raises(coco.CocoError, match=r"test\.json.*keypoints"):
        commands.prepare(manual, data_dir=tmp_path / "tfds", log_fn=lambda *a: None)
    assert not (tmp_path / "tfds").exists()


def test_prepare_a_non_tree_skeleton(tmp_path):
    """17 COCO-person joints with the COCO skeleton (cycles): a spanning tree, recorded."""
    shared = require_shared_data()
    from vl4pose_jax import data
    manual = coco_util.write_dataset(shared, tmp_path / "m", {"train": range(3),
                                                             "test": range(3, 5)})
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        raw = json.loads((manual / f"{split}.json").read_text())
        raw["categories"] = [{"id": 1, "name": "person", "keypoints": COCO_PERSON,
                              "skeleton": COCO_PERSON_SKELETON}]
        for ann in raw["annotations"]:
            x, y, w, h = ann["bbox"]
            pts = rng.uniform([x, y], [x + w, y + h], size=(17, 2))
            ann["keypoints"] = [float(v) for p in pts for v in (*p, 2)]
        (manual / f"{split}.json").write_text(json.dumps(raw))
    data_dir = tmp_path / "tfds"
    commands.prepare(manual, data_dir=data_dir, log_fn=lambda *a: None)
    meta = coco.read_meta(data_dir)
    assert "spanning tree" in meta["tree"] and len(meta["links"]) == 16
    source = data.load("coco_keypoints", "train", data_dir=data_dir)
    assert source.skeleton.num_joints == 17 and source[0]["joints"].shape == (17, 2)
    assert data.spec("coco_keypoints").skeleton.num_links == 16


def test_prepare_command_reports_bad_input(tmp_path):
    import subprocess
    import sys
    manual = tmp_path / "m"
    (manual / "images").mkdir(parents=True)
    path = _minimal(manual, annotations=[{"id": 1, "image_id": 1, "keypoints": [1, 2]}])
    (manual / "test.json").write_text(path.read_text())
    proc = subprocess.run([sys.executable, "-m", "vl4pose_jax.data.prepare",
                           "--dataset=coco_keypoints", f"--manual_dir={manual}",
                           f"--data_dir={tmp_path / 'tfds'}"], capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 1
    assert "train.json" in proc.stderr and "annotations[0].keypoints" in proc.stderr


def test_merge_command_line(tmp_path):
    """`python -m vl4pose_jax.data.coco merge` (the package's __main__): a one-paragraph error,
    no warning about the module being imported twice, usage without `merge`."""
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "vl4pose_jax.data.coco"]
    flags = [f"--manual_dir={tmp_path / 'm'}", f"--annotations={tmp_path / 'a.json'}"]
    run = dict(capture_output=True, text=True, cwd=pathlib.Path(__file__).resolve().parents[1],
               timeout=120)
    proc = subprocess.run(cmd + ["merge"] + flags, **run)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"error: coco_keypoints: manual directory {tmp_path / 'm'} "
                                  "does not exist")
    (tmp_path / "m").mkdir()
    proc = subprocess.run(cmd + ["merge"] + flags, **run)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {tmp_path / 'm' / 'train.json'}: file not found")
    assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(cmd + flags, **run)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: python -m vl4pose_jax.data.coco")


def test_other_methods_rank_with_their_own_scores(loop, tmp_path):
    from experiments import score
    from vl4pose_jax import rank
    out, scored = _score(loop, loop["new"], tmp_path / "me", top_k=3,
                            method="multipeak_entropy", progress=False, log=lambda *a: None)
    order = scored.image_order
    assert np.all(np.diff(scored.image_score[order]) <= 0)     # highest entropy first
    _check_coco_file(out / "top_k.coco.json")
    out, scored = _score(loop, loop["new"], tmp_path / "cs", top_k=3, method="coreset",
                            progress=False, log=lambda *a: None)
    assert len(set(scored.image_order.tolist())) == 12
    with pytest.raises(rank.InputError, match="learning_loss"):
        _score(loop, loop["new"], tmp_path / "ll", top_k=3, method="learning_loss",
                  progress=False)
    assert not (tmp_path / "ll").exists()


def test_scoring_uses_every_device(loop, tmp_path):
    """The command on 4 forced host devices (batches of 5 padded to 8 and sharded) ranks like
    one device, to float tolerance."""
    import os
    import subprocess
    import sys
    _, single = _score(loop, loop["new"], tmp_path / "one", top_k=3, batch_size=5)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    root = pathlib.Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = str(root)
    proc = subprocess.run([sys.executable, "-m", "experiments.score", f"--workdir={loop['w1']}",
                           f"--images={loop['new']}", "--top_k=3", f"--out={tmp_path / 'four'}",
                           f"--data_dir={loop['data_dir']}", "--batch_size=5", "--noprogress",
                           "--include_labelled"],
                          env=env, capture_output=True, text=True, timeout=400, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import csv
    rows = list(csv.DictReader(open(tmp_path / "four" / "ranking.csv")))
    four = {r["input"]: float(r["score"]) for r in rows}
    for pos, name in enumerate(single.inputs.names):
        assert four[name] == pytest.approx(single.score[pos], rel=1e-4, abs=1e-3)


# ----------------------------------------------------------------- absurd input (issue 28)

def test_absurd_coordinates_are_masked_counted_and_kept_out_of_the_metric(tmp_path):
    """The prepare command on people whose box or joints are absurd: the box and the PCK
    normaliser come from the joints that survive masking (one joint at x = 1e7 without a
    bbox, a bbox of 1e30, an Inf joint, a NaN joint), every person stays, and the counts are
    printed."""
    import subprocess
    import sys
    from test_merge_transaction import _image, coco_file
    from vl4pose_jax import data
    manual = tmp_path / "m"
    names = [f"p{i}.jpg" for i in range(5)]
    for i, name in enumerate(names):
        _image(manual / "images" / name, i)
    raw = coco_file(names[:4], bbox=False)
    good = [10, 5, 2, 20, 15, 2, 30, 20, 2]        # valid box 20 x 15 -> normaliser 10
    kps = [list(good) for _ in range(4)]
    kps[0][0] = 1e7                                 # far outside, no bbox
    kps[2][3] = float("inf")
    kps[3][3] = float("nan")
    for ann, k in zip(raw["annotations"], kps):
        ann["keypoints"] = k
    raw["annotations"][1]["bbox"] = [0, 0, 1e30, 1e30]
    (manual / "train.json").write_text(json.dumps(raw))     # Infinity / NaN as Python writes
    (manual / "test.json").write_text(json.dumps(coco_file(names[4:])))
    data_dir = tmp_path / "tfds"
    proc = subprocess.run([sys.executable, "-m", "vl4pose_jax.data.prepare",
                           "--dataset=coco_keypoints", f"--manual_dir={manual}",
                           f"--data_dir={data_dir}"], capture_output=True, text=True,
                          cwd=pathlib.Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 labelled joint(s) masked" in proc.stdout
    assert "1 bbox(es) larger than the image" in proc.stdout
    source = data.load("coco_keypoints", "train", data_dir=data_dir)
    people = {source[i]["id"].decode(): source[i] for i in range(len(source))}
    assert sorted(people) == [f"p{i}.jpg#0" for i in range(4)]       # nobody removed
    expected = {"p0.jpg#0": 5.0, "p1.jpg#0": 10.0, "p2.jpg#0": 10.0, "p3.jpg#0": 10.0}
    for pid, ex in people.items():
        assert np.all(np.isfinite(ex["box"])) and ex["normalizer"] == pytest.approx(
            expected[pid]), (pid, ex["box"], ex["normalizer"])
    report = json.loads(next(data_dir.glob("coco_keypoints/*/build_report.json")).read_text())
    assert report["masked_joints"] == 3 and report["absurd_boxes"] == 1
    assert report["skipped_annotations"]["train"]["non_finite_joints"] == 2


def test_read_coco_counts_what_it_leaves_out(tmp_path):
    path = _minimal(tmp_path)
    raw = json.loads(path.read_text())
    dup = dict(raw["annotations"][0], id=7)
    other = {"id": 8, "image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5]}
    raw["annotations"] += [dup, other]
    raw["categories"].append({"id": 2, "name": "ball"})
    path.write_text(json.dumps(raw))
    c = coco.read_coco(path)
    assert len(c.people) == 1
    assert c.skipped["duplicates"] == 1 and c.skipped["other_category"] == 1


def test_deeply_nested_json_is_refused_in_one_line(tmp_path):
    path = tmp_path / "train.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(coco.CocoError, match="nests more than 64 levels"):
        coco.read_coco(path)
    with pytest.raises(coco.CocoError, match="nests more than"):
        coco.read_coco_boxes(path)


# ----------------------------------------------------------- score never deletes (issue 28)

def test_score_checks_every_flag_before_the_model_loads(loop, tmp_path):
    """A workdir with its config but no checkpoint: each bad flag is reported (not the
    missing checkpoint), so it was checked before loading; good flags reach the load."""
    from experiments import score
    from vl4pose_jax import protocol, rank
    w = tmp_path / "w"
    w.mkdir()
    for name in ("config.json", "data.json"):
        shutil.copy(loop["w1"] / name, w / name)
    kw = dict(top_k=2, progress=False, log=lambda *a: None)
    for bad, match in [(dict(batch_size=0), "--batch_size=0"), (dict(workers=-2), "--workers=-2"),
                       (dict(method="bogus"), "--method=bogus: unknown"),
                       (dict(method="learning_loss"), "auxiliary head"),
                       (dict(seed=5), "--seed=5"), (dict(top_k=0), "--top_k=0")]:
        with pytest.raises((rank.InputError, protocol.SimulationError), match=match):
            score.run(w, loop["new"], tmp_path / "o", **{**kw, **bad})
    with pytest.raises(protocol.SimulationError, match="no finished round"):
        score.run(w, loop["new"], tmp_path / "o", **kw)
    assert not (tmp_path / "o").exists()


def test_score_overwrites_only_its_own_output(loop, tmp_path):
    from experiments import score
    from vl4pose_jax import export, protocol
    kw = dict(top_k=2, progress=False, log=lambda *a: None, overwrite=True)
    new = tmp_path / "new"
    shutil.copytree(loop["new"], new)
    before = sorted(p.name for p in new.iterdir())
    manual_files = sorted(p.name for p in loop["manual"].iterdir())
    (tmp_path / "file").write_text("x")
    for out, match in [(new, "overlap"), (new / "out", "overlap"), (tmp_path, "overlap"),
                       (loop["manual"], "not written by experiments.score.*dataset folder"),
                       (loop["w1"], "not written by experiments.score.*workdir"),
                       (tmp_path / "file", "is a file"), (tmp_path / "file" / "o", "which is a file")]:
        with pytest.raises(export.OutputError, match=match):
            score.run(loop["w1"], new, out, **kw)
    assert sorted(p.name for p in new.iterdir()) == before
    assert sorted(p.name for p in loop["manual"].iterdir()) == manual_files
    # The run's own data directory is read from the workdir (no data_dir given).
    out = tmp_path / "o"
    score.run(loop["w1"], new, out, **kw)
    assert (out / score.MARKER).is_file() and (out / "ranking.csv").is_file()
    leftover = tmp_path / ".o.partial-killed"
    leftover.mkdir()
    said = []
    score.run(loop["w1"], new, out, **{**kw, "log": said.append})   # replaces its own output
    assert not leftover.exists() and any("killed runs" in line for line in said)
    with pytest.raises(protocol.SimulationError, match="not the dataset"):
        score.run(loop["w1"], new, tmp_path / "o2", data_dir=tmp_path / "elsewhere", **kw)


def _flock_held(path) -> bool:
    """Whether another process holds `path`'s flock now (a lock file keeps its holder's details
    after release, so its content says nothing)."""
    import fcntl
    import os
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_score_command_line_ctrl_c_and_bad_flags(loop, tmp_path):
    """The real command: a bad flag is one line at once; Ctrl-C during the run exits 130
    with nothing written and no traceback."""
    import signal
    import subprocess
    import sys
    import time
    root = pathlib.Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "experiments.score", f"--workdir={loop['w1']}",
           f"--images={loop['new']}", "--top_k=2", f"--out={tmp_path / 'o'}", "--noprogress"]
    for extra, said in [(["--workers=-2"], "error: --workers=-2"),
                        (["--method=bogus"], "error: --method=bogus: unknown"),
                        ([f"--out={loop['manual']}", "--overwrite"], "error: --overwrite: "
                         f"{loop['manual']} was not written by experiments.score")]:
        t0 = time.monotonic()
        proc = subprocess.run(cmd + extra, capture_output=True, text=True, cwd=root,
                              timeout=120)
        assert proc.returncode == 1 and proc.stderr.startswith(said), proc.stderr
        assert "Traceback" not in proc.stderr and time.monotonic() - t0 < 60
    assert (loop["manual"] / "train.json").is_file()
    # as from a terminal: a shell's background job (e.g. CI under nohup ... &) starts with
    # SIGINT ignored, which Python then leaves ignored
    holder = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              text=True, cwd=root,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lock = tmp_path / ".score-o.lock"
    end = time.monotonic() + 120
    while not _flock_held(lock) and holder.poll() is None:   # the file outlives its holder
        assert time.monotonic() < end
        time.sleep(0.05)
    assert holder.poll() is None, "the run ended before it could be interrupted"
    holder.send_signal(signal.SIGINT)
    _, err = holder.communicate(timeout=120)
    assert holder.returncode == 130, err[-2000:]
    assert "interrupted: nothing was written" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.partial-*"))


def test_diagnose_names_missing_seeds_and_gone_rounds(loop, tmp_path):
    """The run says it has seeds 0 and 1 (seed 1 never trained) and results.jsonl lists a
    round 1 whose checkpoint is gone: seed 0 is diagnosed (round 0, its row's num_labelled,
    a note), seed 1 is named; a method without a score is refused before any work."""
    import subprocess
    import sys
    w = tmp_path / "w"
    shutil.copytree(loop["w1"], w, ignore=shutil.ignore_patterns("compilation_cache"))
    config = json.loads((w / "config.json").read_text())
    (w / "config.json").write_text(json.dumps(dict(config, trials=2)))
    rows = [json.loads(line) for line in (w / "results.jsonl").read_text().splitlines()]
    rows.append(dict(rows[0], round=1, num_labelled=rows[0]["num_labelled"] + 5))
    (w / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    root = pathlib.Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "experiments.diagnose", str(w), f"--out={tmp_path / 'd'}",
           f"--data_dir={loop['data_dir']}"]
    proc = subprocess.run(cmd + ["--method=random"], capture_output=True, text=True, cwd=root,
                          timeout=120)
    assert proc.returncode == 1 and "--method=random" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    from experiments import diagnose
    said = []
    diagnose.run(w, "vl4pose", tmp_path / "d", data_dir=loop["data_dir"], log=said.append)
    assert any(m.startswith("warning: seed 1 cannot be diagnosed") for m in said)
    out = json.loads((tmp_path / "d" / "diagnosis.json").read_text())
    (seed0,) = out["seeds"]
    assert seed0["seed"] == 0 and seed0["round"] == 0
    assert seed0["num_labelled"] == rows[0]["num_labelled"]
    assert "rounds up to 1" in seed0["note"]
    assert [m["seed"] for m in out["seeds_missing"]] == [1]


def test_a_very_large_image_is_reduced_once_with_the_same_crop():
    """Above rank.LARGE_PIXELS an input is reduced by a whole factor before cropping: the
    crop stays in original pixels and the network sees (nearly) the same picture."""
    import io
    from PIL import Image
    from vl4pose_jax import rank, skeletons
    side = 4200                                   # 17.6 MP > 16.8 MP: reduced by 2
    tiles = np.random.default_rng(0).integers(0, 255, (14, 14, 3), np.uint8)
    big = Image.fromarray(tiles).resize((side, side), Image.NEAREST)   # 300 px squares
    buf = io.BytesIO()
    big.save(buf, format="PNG", compress_level=1)
    args = (buf.getvalue(), None, 0, skeletons.lsp14, 64, "big.png")
    out, size, crop = rank._prepare(args)
    assert size == (side, side) and crop.tolist() == [(side - 1) / 2, (side - 1) / 2, side]
    small = io.BytesIO()
    big.resize((side // 2, side // 2), Image.BOX).save(small, format="PNG")
    ref, _, _ = rank._prepare((small.getvalue(), None, 0, skeletons.lsp14, 64, "small.png"))
    assert np.abs(out["image"] - ref["image"]).mean() < 0.02


def test_an_undecodable_video_frame_is_named(tmp_path):
    av = pytest.importorskip("av")
    from PIL import Image
    from vl4pose_jax import rank
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(8):
            pixels = np.random.default_rng(i).integers(0, 255, (64, 64, 3), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_image(Image.fromarray(pixels))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(video.read_bytes())
    for k in range(len(data) // 3, 2 * len(data) // 3):   # garbage in the middle frames
        data[k] = (data[k] * 7 + 13) % 256
    video.write_bytes(bytes(data))
    with pytest.raises(rank.InputError, match=r"clip\.mp4: video decoding failed at frame \d+"):
        list(rank.iter_frames(video))
