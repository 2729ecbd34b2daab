"""The annotation round trip through a real Label Studio server (`export.py` ->
Label Studio -> `vl4pose_jax.data.coco.labelstudio` -> `coco merge`).

A Label Studio server ($VL4POSE_LABEL_STUDIO: a `label-studio` executable, e.g. the one `.ci/run`
installs in its own environment; else one beside this Python, the `labelstudio` extra) is started on
127.0.0.1 in a temporary folder (its own data folder, a free port, strict prediction validation
on) while a micro model trains on a 12-image COCO dataset cut from LSPET. The model ranks 4 new
images (one with two person boxes); its Label Studio tasks are imported through the REST API
into a project with our config, the predictions must validate and be served most unusual first,
the images must resolve through a local storage below the document root; an "annotator" (API
calls) moves a keypoint, deletes a joint, marks one occluded, labels both people of one image
and skips a task, and the same image, imported again, gets a newer annotation; the JSON export
is converted by the command line and merged by `coco merge`, and train.json must have grown by
exactly those people with exactly those coordinates and visibilities; a second export and merge
adds nothing. Label Studio's COCO and JSON-MIN exports of the same project are refused with the
message naming the JSON export; its COCO exports of the one-person task alone are read back under
the original file name. The server is always killed at the end. Skipped only when Label
Studio is not installed.
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import require_shared_data
import coco_util

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOKEN = "vl4pose0test0token0123456789"


def _executable():
    path = os.environ.get("VL4POSE_LABEL_STUDIO") or shutil.which(
        "label-studio", path=str(pathlib.Path(sys.executable).parent))
    if not path:
        pytest.skip("Label Studio is not installed: set VL4POSE_LABEL_STUDIO to a label-studio "
                    "executable (.ci/run installs one in .ci-venv/label-studio), or pip install "
                    "-e '.[labelstudio]' beside this project")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One Label Studio process in `folder` (data, document root, log), killed by `stop`."""

    def __init__(self, executable, folder):
        self.folder = pathlib.Path(folder)
        self.docroot = self.folder / "docroot"
        self.docroot.mkdir(parents=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_",
                                                                          "HEARTEX_"))}
        env.update({
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.folder / "data"),
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.docroot),
            "LABEL_STUDIO_USERNAME": "annotator@example.com",
            "LABEL_STUDIO_PASSWORD": "vl4pose-test-password",
            "LABEL_STUDIO_USER_TOKEN": TOKEN,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            # strict validation: an import with an invalid prediction is refused (HTTP 400)
            "fflag_feat_utc_210_prediction_validation_15082025": "true",
            "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "HOME": str(self.folder)})
        self.log = open(self.folder / "server.log", "w")
        self.proc = subprocess.Popen(
            [executable, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port",
             str(self.port), "--data-dir", str(self.folder / "data")],
            env=env, cwd=self.folder, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, n=3000):
        self.log.flush()
        return (self.folder / "server.log").read_text(errors="replace")[-n:]

    def wait_ready(self, timeout=300):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                pytest.fail(f"Label Studio exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.call("GET", "/health")[0] == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.5)
        pytest.fail(f"Label Studio not ready after {timeout} s:\n{self.log_tail()}")

    def call(self, method, path, body=None, raw=False):
        """(HTTP status, parsed JSON or bytes) of one authenticated API call."""
        req = urllib.request.Request(
            self.url + path, method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                out = r.read()
                return r.status, out if raw else (json.loads(out) if out else None)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def ok(self, method, path, body=None, raw=False):
        status, out = self.call(method, path, body, raw)
        assert 200 <= status < 300, f"{method} {path}: HTTP {status}: {str(out)[:2000]}"
        return out

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        self.log.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A running server, and meanwhile: a 12-image COCO dataset (LSPET), a micro vl4pose model
    trained on it, 4 new images (one with two person boxes) ranked into the document root."""
    executable = _executable()
    shared = require_shared_data()
    base = tmp_path_factory.mktemp("labelstudio")
    server = Server(executable, base / "ls")
    try:
        from experiments import score
        from vl4pose_jax import protocol, simulate
        from vl4pose_jax.data import formats
        from vl4pose_jax.data.coco import commands
        manual = coco_util.write_dataset(shared, base / "manual", {"train": range(0, 12),
                                                                  "test": range(12, 14)})
        data_dir = base / "tfds"
        commands.prepare(manual, data_dir=data_dir, log_fn=lambda *a: None)
        new = server.docroot / "new"
        new.mkdir()
        names = []
        for i in range(40, 44):
            names.append(formats.lsp_image_name(i, extended=True))
            shutil.copy(shared / "lspet" / "images" / names[-1], new / names[-1])
        from PIL import Image
        sizes = []
        for n in names:
            with Image.open(new / n) as im:
                sizes.append(im.size)
        (w, h) = sizes[0]
        boxes = {"images": [{"id": k + 1, "file_name": n} for k, n in enumerate(names)],
                 "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, w / 2, h]},
                                 {"id": 2, "image_id": 1, "bbox": [w / 2, 0, w / 2, h]}]
                 + [{"id": k + 2, "image_id": k + 1,
                     "bbox": [2, 2, sizes[k][0] - 4, sizes[k][1] - 4]} for k in range(1, 4)]}
        (base / "boxes.json").write_text(json.dumps(boxes))
        config = protocol.Config(dataset="coco_keypoints", methods=("vl4pose",),
                                 init_size=10**9, rounds=0, epochs=1, preset="micro",
                                 batch_size=8, data_dir=str(data_dir), progress=False,
                                 checkpoint_every=0)
        simulate.run(config, base / "w", log=lambda *a: None)
        out, scored = score.run(base / "w", new, base / "out", top_k=4, boxes=base / "boxes.json",
                                data_dir=str(data_dir), label_studio_root=str(server.docroot),
                                progress=False, log=lambda *a: None)
        seconds = server.wait_ready()
        yield dict(server=server, manual=manual, data_dir=data_dir, new=new, out=out,
                   scored=scored, two=names[0], base=base, ready_s=seconds)
    finally:
        server.stop()


def _run(*args):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    return proc


def _px(r):
    v = r["value"]
    return v["x"] * r["original_width"] / 100, v["y"] * r["original_height"] / 100


def test_round_trip_through_label_studio(setup):
    server, out, manual = setup["server"], setup["out"], setup["manual"]
    print(f"Label Studio {server.ok('GET', '/api/version/').get('release')} ready "
          f"{setup['ready_s']:.0f} s after the model was trained")
    tasks = json.loads((out / "label_studio" / "tasks.json").read_text())
    config = (out / "label_studio" / "labeling_config.xml").read_text()
    top = json.loads((out / "top_k.coco.json").read_text())
    assert [t["data"]["rank"] for t in tasks] == [1, 2, 3, 4]

    # Import: a project with our config, uncertainty sampling (lowest score first); tasks
    # imported worst-first-last, so only the scores can put rank 1 first.
    project = server.ok("POST", "/api/projects/", {
        "title": "vl4pose round trip", "label_config": config,
        "sampling": "Uncertainty sampling"})["id"]
    status, refused = server.call("POST", f"/api/projects/{project}/import", [
        dict(tasks[0], predictions=[dict(tasks[0]["predictions"][0], score=94.97)])])
    assert status == 400 and "Score must be between" in refused  # strict validation is on
    imported = server.ok("POST", f"/api/projects/{project}/import?return_task_ids=true",
                         tasks[::-1])
    assert imported["task_count"] == 4 and imported["prediction_count"] == 4
    ids = {}
    for task_id in imported["task_ids"]:
        task = server.ok("GET", f"/api/tasks/{task_id}/")
        ids[task["data"]["rank"]] = task_id
    assert server.ok("GET", f"/api/projects/{project}/next/")["data"]["rank"] == 1
    # The predictions Label Studio stored are the model's keypoints (top_k.coco.json) and boxes.
    by_name = {im["file_name"]: im["id"] for im in top["images"]}
    for rank, task_id in ids.items():
        task = server.ok("GET", f"/api/tasks/{task_id}/")
        (pred,) = task["predictions"]
        assert pred["score"] == pytest.approx((rank - 1) / 4)
        anns = [a for a in top["annotations"] if a["image_id"] == by_name[task["data"]["file_name"]]]
        kps = [r for r in pred["result"] if r["type"] == "keypointlabels"]
        assert len(kps) == 14 * len(anns)
        for k, ann in enumerate(anns):
            mine = [r for r in kps if r["parentID"] == f"p{k}"]
            got = np.array([_px(r) for r in mine])
            assert np.abs(got - np.array(ann["keypoints"]).reshape(14, 3)[:, :2]).max() < 0.005
    # The images resolve through a local storage (connected, not synced) below the root.
    server.ok("POST", "/api/storages/localfiles/", {
        "project": project, "path": str(setup["new"]), "use_blob_urls": False,
        "title": "new images"})
    for task in tasks:
        assert task["data"]["image"].startswith("/data/local-files/?d=new/")
        body = server.ok("GET", task["data"]["image"], raw=True)
        assert body == (setup["new"] / task["data"]["file_name"]).read_bytes()

    # Annotate: the two-person image (move a keypoint, delete a joint, mark one occluded),
    # another accepted as predicted, one skipped, one left alone.
    two = [r for r, t in ((r, server.ok("GET", f"/api/tasks/{i}/")) for r, i in ids.items())
           if t["data"]["file_name"] == setup["two"]][0]
    one = min(r for r in ids if r != two)
    skipped = max(r for r in ids if r not in (two, one))
    result = server.ok("GET", f"/api/tasks/{ids[two]}/")["predictions"][0]["result"]
    assert {r["id"] for r in result if r["type"] == "rectanglelabels"} == {"p0", "p1"}
    moved = next(r for r in result if r["id"] == "p0_3")
    moved["value"]["x"] = 100 * 20.0 / moved["original_width"]
    moved["value"]["y"] = 100 * 30.0 / moved["original_height"]
    result = [r for r in result if r["id"] != "p0_7"]                    # deleted joint
    occluded = next(r for r in result if r["id"] == "p1_5")
    result.append({"id": "p1_5", "from_name": "visibility", "to_name": "image",
                   "type": "choices", "origin": "manual",
                   "original_width": occluded["original_width"],
                   "original_height": occluded["original_height"], "image_rotation": 0,
                   "value": dict(occluded["value"], choices=["occluded"])})
    server.ok("POST", f"/api/tasks/{ids[two]}/annotations/", {"result": result,
                                                               "was_cancelled": False})
    accepted = server.ok("GET", f"/api/tasks/{ids[one]}/")["predictions"][0]["result"]
    server.ok("POST", f"/api/tasks/{ids[one]}/annotations/", {"result": accepted,
                                                               "was_cancelled": False})
    server.ok("POST", f"/api/tasks/{ids[skipped]}/annotations/", {"result": [],
                                                                   "was_cancelled": True})
    # The same image imported again and annotated later (head moved 10 px): it comes back
    # once, with the newest annotation.
    (again,) = server.ok("POST", f"/api/projects/{project}/import?return_task_ids=true",
                         [tasks[one - 1]])["task_ids"]
    newer = json.loads(json.dumps(accepted))
    head = next(r for r in newer if r["id"] == "p0_0")
    head["value"]["x"] += 100 * 10.0 / head["original_width"]
    time.sleep(1.0)
    server.ok("POST", f"/api/tasks/{again}/annotations/", {"result": newer,
                                                           "was_cancelled": False})
    expected = {}
    for task_id, res in ((ids[two], result), (again, newer)):
        name = server.ok("GET", f"/api/tasks/{task_id}/")["data"]["file_name"]
        people = []
        for p in sorted({r["id"] for r in res if r["type"] == "rectanglelabels"}):
            kp = np.zeros((14, 3))
            for r in res:
                if r["type"] == "keypointlabels" and r.get("parentID") == p:
                    j = int(r["id"].split("_")[1])
                    kp[j] = (*_px(r), 2)
            people.append(kp)
        expected[name] = people
    expected[setup["two"]][1][5, 2] = 1
    assert expected[setup["two"]][0][3, :2].tolist() == pytest.approx([20.0, 30.0])
    assert expected[setup["two"]][0][7, 2] == 0

    # Export JSON, convert with the command line, merge with the real `coco merge`.
    train_before = json.loads((manual / "train.json").read_text())
    for attempt in (1, 2):
        export = setup["base"] / f"export{attempt}.json"
        export.write_bytes(server.ok("GET", f"/api/projects/{project}/export?exportType=JSON",
                                     raw=True))
        annotated = setup["base"] / f"annotated{attempt}.json"
        proc = _run("vl4pose_jax.data.coco.labelstudio", str(export), f"--images={setup['new']}",
                    f"--manual_dir={manual}", f"--out={annotated}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "2 images, 3 people (1 occluded joints)" in proc.stdout
        assert "1 repeated images" in proc.stdout
        proc = _run("vl4pose_jax.data.coco", "merge", f"--manual_dir={manual}",
                    f"--annotations={annotated}", f"--images={setup['new']}",
                    f"--data_dir={setup['data_dir']}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        train = json.loads((manual / "train.json").read_text())
        if attempt == 1:
            after = train
        else:
            assert train == after  # the second merge adds nothing
    old = {im["file_name"] for im in train_before["images"]}
    added = [im for im in after["images"] if im["file_name"] not in old]
    assert sorted(im["file_name"] for im in added) == sorted(expected)
    assert len(after["annotations"]) == len(train_before["annotations"]) + 3
    for im in added:
        anns = sorted((a for a in after["annotations"] if a["image_id"] == im["id"]),
                      key=lambda a: a["id"])
        assert len(anns) == len(expected[im["file_name"]])
        for ann, kp in zip(anns, expected[im["file_name"]]):
            got = np.array(ann["keypoints"], float).reshape(14, 3)
            assert got[:, 2].tolist() == kp[:, 2].tolist()                # visibilities
            seen = kp[:, 2] > 0
            assert np.abs(got[seen, :2] - kp[seen, :2]).max() <= 1.0      # +-1 px
    assert (manual / "images" / setup["two"]).read_bytes() == (
        setup["new"] / setup["two"]).read_bytes()
    from vl4pose_jax import data
    built = set()
    for split in ("train", "validation"):
        try:
            built |= set(data.load("coco_keypoints", split, data_dir=setup["data_dir"]).ids())
        except KeyError:
            pass
    assert {f"{setup['two']}#0", f"{setup['two']}#1"} <= built

    # Label Studio's COCO export loses the second person and JSON-MIN loses who is who:
    # both are refused, naming the export to use (the library call the command makes).
    from vl4pose_jax.data.coco import labelstudio
    category = json.loads((manual / "train.json").read_text())["categories"][0]
    for kind, suffix in (("COCO", "zip"), ("JSON_MIN", "json")):
        lossy = setup["base"] / f"export.{kind}.{suffix}"
        lossy.write_bytes(server.ok("GET", f"/api/projects/{project}/export?exportType={kind}",
                                    raw=True))
        with pytest.raises(labelstudio.LabelStudioError,
                           match=f"{lossy}: .*Export -> JSON"):
            labelstudio.convert(lossy, setup["new"], category)
    # Where one person and no occlusion is all there is, the COCO export is enough: its
    # `../<folder>/x.jpg` name (COCO) or `images/<hash>__x.jpg` copy (COCO_WITH_IMAGES) comes
    # back as the original file name, coordinates to +-1 px.
    import zipfile
    (one_name,) = [n for n in expected if n != setup["two"]]
    first = np.array([_px(r) for r in accepted if r["type"] == "keypointlabels"])
    for kind in ("COCO", "COCO_WITH_IMAGES"):
        coco_zip = setup["base"] / f"export.one.{kind}.zip"
        coco_zip.write_bytes(server.ok(
            "GET", f"/api/projects/{project}/export?exportType={kind}&ids[]={ids[one]}",
            raw=True))
        with zipfile.ZipFile(coco_zip) as z:
            (name,) = [im["file_name"] for im in json.loads(z.read("result.json"))["images"]]
        assert name != one_name and name.endswith(one_name)       # Label Studio's own path
        one_coco, _ = labelstudio.convert(coco_zip, setup["new"], category)
        assert [im["file_name"] for im in one_coco["images"]] == [one_name]
        (ann,) = one_coco["annotations"]
        got = np.array(ann["keypoints"], float).reshape(14, 3)
        assert got[:, 2].tolist() == [2] * 14
        assert np.abs(got[:, :2] - first).max() <= 1.0     # the task's own (older) annotation


def test_image_urls_come_from_the_document_root(tmp_path):
    """`--label_studio_root`: the URL below the root by construction; images outside a
    subfolder of it, or a prefix given too, are refused naming the flag and the value."""
    from vl4pose_jax import export
    (tmp_path / "root" / "a b").mkdir(parents=True)
    assert export.local_files_prefix(tmp_path / "root" / "a b", tmp_path / "root") == (
        "/data/local-files/?d=a%20b/")
    for images in (tmp_path / "root", tmp_path):
        with pytest.raises(export.OutputError, match=f"--label_studio_root={tmp_path / 'root'}"
                           ".*subfolder"):
            export.local_files_prefix(images, tmp_path / "root")
    with pytest.raises(export.OutputError, match="--label_studio_root=.*not a folder"):
        export.local_files_prefix(tmp_path / "root" / "a b", tmp_path / "nowhere")
    with pytest.raises(export.OutputError, match="give one"):
        export.write(None, tmp_path / "out", top_k=1, category={}, image_url_prefix="/x/",
                     label_studio_root=tmp_path / "root")


def _tiny_tasks(tmp_path):
    """Our Label Studio tasks (export.label_studio_tasks) of one 64 x 48 image with two people
    side by side, from a hand-made ranking (no model needed)."""
    from PIL import Image
    from vl4pose_jax import export, rank, skeletons
    (tmp_path / "new").mkdir()
    Image.new("RGB", (64, 48), "gray").save(tmp_path / "new" / "a.png")
    (tmp_path / "boxes.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 30, 48]},
                        {"id": 2, "image_id": 1, "bbox": [34, 0, 30, 48]}]}))
    inputs = rank.open_inputs(tmp_path / "new", boxes=tmp_path / "boxes.json")
    rng = np.random.default_rng(0)
    joints = np.stack([rng.uniform([2, 2], [28, 46], (14, 2)),
                       rng.uniform([36, 2], [62, 46], (14, 2))])
    scored = rank.Scored(inputs, skeletons.lsp14, "vl4pose", np.array([3.0, 2.0]), joints,
                         np.array([[64, 48]] * 2), np.zeros((2, 3)), np.ones(2, bool),
                         np.arange(2), np.array([3.0]), np.array([0]), np.array([1]), [])
    return export.label_studio_tasks(scored, [0]), joints


def test_keypoints_without_a_parent_go_to_the_box_holding_them(tmp_path):
    """A keypoint drawn without its box selected has no parentID: it belongs to the one box
    that contains it; in two boxes it is refused naming the task and the joint."""
    from vl4pose_jax.data.coco import labelstudio
    (task,), joints = _tiny_tasks(tmp_path)
    result = task["predictions"][0]["result"]
    for r in result:
        r.pop("parentID", None)
    names = list(coco_util.lspet_category()["keypoints"])
    size, people = labelstudio.people_of(result, names, "export.json: task 1")
    assert size == (64, 48) and len(people) == 2
    for person, expected in zip(people, joints):
        got = np.array([person["joints"][j][:2] for j in range(14)])
        assert np.abs(got - expected).max() < 1e-9
    box = next(r for r in result if r["id"] == "p1")
    box["value"]["x"], box["value"]["width"] = 0.0, 100.0     # p1 now covers p0's joints too
    with pytest.raises(labelstudio.LabelStudioError,
                       match=r"export.json: task 1, result\[1\]: keypoint 'head' has no person"):
        labelstudio.people_of(result, names, "export.json: task 1")
