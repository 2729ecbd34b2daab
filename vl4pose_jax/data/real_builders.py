"""Builders of the published datasets, read from the folder the user downloaded them to.

    builders.build("lspet", manual_dir=".../lspet_dataset", data_dir=...)
    python -m vl4pose_jax.data.prepare --dataset=lspet --manual_dir=...   # the same, as a command

Splits (every dataset has `pool`, `validation` and `test`; `train` is a fixed initial labelled
set). `validation` is carved from the pool, never from test or train, by
`base.Builder.carve_validation`: the pool images whose name hashes below the builder's
`VALIDATION_FRACTION` (10 %; hands less, see `Icvl`), so an image always lands in the same split.
  lsp   train = LSP 1-1000 (whole: the protocol's 1,000 initial labels), pool = LSPET (10,000;
        ids "lspet/im00001.jpg#0") less validation (its torso-labelled images hashing below
        10 %: 866, leaving 9,134), test = LSP 1001-2000
  lspet test = ~12 % of the images whose torso is labelled (a stable hash of the image name;
        954), validation = 10 % of the other torso-labelled images (742), pool = the rest
        (8,304 >= 1,000 initial + 5 x 1,000 acquired).
  mpii  persons with all 16 joints annotated; test = Newell's validation images (valid.h5 or a
        name list) when present, else a `*val*.json` file, else a stable 30 % hash split by
        image; validation = 10 % of the other images (all their people); pool = the rest.
  icvl  pool = Training/labels.txt less validation (1 %), test = Testing/test_seq_{1,2}.txt
  nyu   pool = train/joint_data.mat less validation (2 %), test = test/joint_data.mat or the
        14-joint text labels.
A split with no example present is left out of the build (and reported). Each class's
`DOWNLOAD` says where to get the files and what the manual directory must hold; the records
and the checks on bad input are `base.Builder`'s.
"""
from __future__ import annotations

import pathlib

import numpy as np

from vl4pose_jax import skeletons
from vl4pose_jax.data import base, formats

LSPET_TEST_FRACTION = 0.12
MPII_TEST_FRACTION = 0.3


# ----------------------------------------------------------------------------- LSP / LSPET

_LSP_DOWNLOAD = (
    "LSP: http://sam.johnson.io/research/lsp.html (lsp_dataset.zip: joints.mat, images/im0001.jpg "
    "... im2000.jpg).")
_LSPET_DOWNLOAD = (
    "LSPET: http://sam.johnson.io/research/lspet.html (lspet_dataset.zip: joints.mat, "
    "images/im00001.jpg ... im10000.jpg).")


def _lsp_folder(manual: pathlib.Path, names, what, instructions):
    if (manual / "joints.mat").is_file() and what == "lspet":
        return manual
    found = base.find_first(manual, names)
    if found is None:
        raise FileNotFoundError(f"{what}: no {' or '.join(names)}/ folder with joints.mat under "
                                f"{manual}.\n{instructions}")
    return found


TORSO_CONDITION = "torso labelled (as in test)"


def _torso_known(item: base.Planned) -> bool:
    return bool(np.isfinite(formats.torso_size(item.joints, item.visibility)))


def _plan_lsp_images(folder: pathlib.Path, *, extended: bool, instructions: str, what: str):
    labels = formats.read_lsp_mat(base.require_file(folder / "joints.mat", what, instructions))
    images = folder / "images" if (folder / "images").is_dir() else folder
    out = []
    for i in range(len(labels.joints)):
        name = formats.lsp_image_name(i, extended=extended)
        norm, _ = base.torso_normalizer(labels.joints[i], labels.visibility[i])
        out.append(base.Planned(f"{name}#0", images / name, labels.joints[i], labels.visibility[i],
                            norm))
    return out


class Lspet(base.Builder, skip_registration=True):
    """LSP Extended (10,000 images) alone: a deterministic pool/test split."""

    name = "lspet"
    DOWNLOAD = (_LSPET_DOWNLOAD + " manual_dir = the extracted folder (holding joints.mat and "
                "images/), or a folder holding lspet/ or lspet_dataset/.")

    def _plan(self, manual):
        folder = _lsp_folder(manual, ("lspet", "lspet_dataset"), "lspet", self.DOWNLOAD)
        items = self._present(_plan_lsp_images(folder, extended=True, what="lspet",
                                               instructions=self.DOWNLOAD))
        pool, test = [], []
        for it in items:
            if _torso_known(it) and base.stable_fraction(it.id) < LSPET_TEST_FRACTION:
                test.append(it)
            else:
                pool.append(it)
        pool, validation = self.carve_validation(pool, "pool", _torso_known, TORSO_CONDITION)
        return {"pool": pool, "validation": validation, "test": test}


class Lsp(base.Builder, skip_registration=True):
    """The VL4Pose LSP protocol: LSP train (initial labelled), LSPET pool, LSP test."""

    name = "lsp"
    DOWNLOAD = (_LSP_DOWNLOAD + " " + _LSPET_DOWNLOAD + " manual_dir must hold both extracted "
                "folders: lsp/ (or lsp_dataset/) and lspet/ (or lspet_dataset/).")

    def _plan(self, manual):
        lsp = _lsp_folder(manual, ("lsp", "lsp_dataset"), "lsp", self.DOWNLOAD)
        lspet = _lsp_folder(manual, ("lspet", "lspet_dataset"), "lsp (LSPET part)", self.DOWNLOAD)
        lsp_items = _plan_lsp_images(lsp, extended=False, what="lsp", instructions=self.DOWNLOAD)
        if len(lsp_items) != 2000:
            self.report["notes"].append(f"LSP joints.mat has {len(lsp_items)} people, not 2000")
        half = len(lsp_items) // 2
        train = self._present(lsp_items[:half])
        test = self._present(lsp_items[half:])
        pool = self._present(_plan_lsp_images(lspet, extended=True, what="lsp (LSPET part)",
                                              instructions=self.DOWNLOAD))
        for it in pool:  # LSP and LSPET share file-name stems: keep ids distinct
            it.id = "lspet/" + it.id
        # From the pool, not from train: LSP train is the protocol's 1,000 initial labels.
        pool, validation = self.carve_validation(pool, "pool", _torso_known, TORSO_CONDITION)
        return {"train": train, "pool": pool, "validation": validation, "test": test}


# ----------------------------------------------------------------------------- MPII


class Mpii(base.Builder, skip_registration=True):
    """MPII Human Pose, single persons with all 16 joints annotated (the VL4Pose protocol)."""

    name = "mpii"
    SKELETON = skeletons.mpii16
    DOWNLOAD = (
        "MPII: http://human-pose.mpi-inf.mpg.de (mpii_human_pose_v1.tar.gz: images/*.jpg). "
        "Annotations as JSON lists of people (image, joints 16x[x, y], joints_vis, center, scale; "
        "e.g. mmpose's mpii_train.json / mpii_val.json or HRNet's train.json / valid.json), in "
        "manual_dir or manual_dir/annot/. Optional: Newell's validation split valid.h5 "
        "(github.com/princeton-vl/pose-hg-train, data/mpii/annot/valid.h5) or "
        "Stacked_HG_ValidationImageNames.txt. Images in manual_dir/images/ or manual_dir/.")

    def _plan(self, manual):
        search = [manual, manual / "annot"]
        jsons = sorted(p for d in search if d.is_dir() for p in d.glob("*.json"))
        if not jsons:
            raise FileNotFoundError(f"mpii: no annotation *.json under {manual} or "
                                    f"{manual / 'annot'}.\n{self.DOWNLOAD}")
        images = manual / "images" if (manual / "images").is_dir() else manual
        newell_h5 = base.find_first(manual, ("valid.h5", "annot/valid.h5"))
        newell_txt = base.find_first(manual, ("Stacked_HG_ValidationImageNames.txt",
                                    "annot/Stacked_HG_ValidationImageNames.txt"))
        newell = formats.read_newell_valid(newell_h5) if newell_h5 else None
        val_names = None
        if newell is not None:
            val_names = set(newell.imgname)
            self.report["notes"].append(f"test = Newell validation images ({newell_h5.name})")
        elif newell_txt is not None:
            val_names = set(formats.read_name_list(newell_txt))
            self.report["notes"].append(f"test = Newell validation images ({newell_txt.name})")
        seen, people, val_json_images = set(), [], set()
        for path in jsons:
            is_val = "val" in path.stem.lower()
            for p in formats.read_mpii_json(path):
                key = (p.image, tuple(np.round(p.joints.reshape(-1), 1)))
                if is_val:
                    val_json_images.add(p.image)
                if key in seen:
                    continue
                seen.add(key)
                people.append(p)
        if val_names is None and val_json_images:
            val_names = val_json_images
            self.report["notes"].append("test = people of the *val*.json file(s)")
        if val_names is None:
            self.report["notes"].append(f"test = stable {MPII_TEST_FRACTION:.0%} hash split by image")
        # Newell's normaliser per (image, joints) for the validation people.
        newell_norm = {}
        if newell is not None:
            for name, j, n in zip(newell.imgname, newell.joints, newell.normalize):
                newell_norm.setdefault(name, []).append((j, float(n)))
        per_image: dict[str, int] = {}
        pool, test, incomplete = [], [], 0
        sources = dict(headbox=0, newell=0, estimate=0)
        for p in people:
            person = per_image.get(p.image, 0)
            per_image[p.image] = person + 1
            if (p.visibility < 0).any():
                incomplete += 1
                continue
            norm = p.headsize
            if np.isfinite(norm):
                sources["headbox"] += 1
            else:
                for j, n in newell_norm.get(p.image, ()):
                    if np.abs(j - p.joints).max() < 2.0:
                        norm = n
                        sources["newell"] += 1
                        break
                else:
                    norm = formats.mpii_headsize_estimate(p.joints)
                    sources["estimate"] += 1
            item = base.Planned(f"{p.image}#{person}", images / p.image, p.joints, p.visibility,
                                norm)
            in_test = (p.image in val_names) if val_names is not None else (
                base.stable_fraction(p.image) < MPII_TEST_FRACTION)
            (test if in_test else pool).append(item)
        self.report["notes"].append(f"{incomplete} people without all 16 joints left out")
        self.report["notes"].append(f"head size from: {sources}")
        pool, validation = self.carve_validation(self._present(pool), "pool")
        return {"pool": pool, "validation": validation, "test": self._present(test)}


# ----------------------------------------------------------------------------- hands


class Icvl(base.Builder, skip_registration=True):
    """ICVL hand depth (Tang et al. 2014): 16 joints, 320x240 depth PNGs in mm."""

    name = "icvl"
    KIND = "hand"
    # 1 % of up to 331,006 frames (labels.txt lists rotated copies of each): ~3,300 to score
    # every epoch. Frames come from videos and rotated copies, so a validation frame's
    # neighbours can be in the pool: its loss picks checkpoints and drives the learning rate,
    # the held-out score is test's.
    VALIDATION_FRACTION = 0.01
    SKELETON = skeletons.icvl16
    DOWNLOAD = (
        "ICVL: https://labicvl.github.io/hand.html (Training.tar.gz, Testing.tar.gz). manual_dir "
        "must hold Training/labels.txt with Training/Depth/<path>.png and Testing/test_seq_1.txt, "
        "Testing/test_seq_2.txt with Testing/Depth/<path>.png.")

    def _plan(self, manual):
        def load(folder, label_names):
            out = []
            for label_name in label_names:
                path = base.require_file(manual / folder / label_name, "icvl", self.DOWNLOAD)
                labels = formats.read_icvl_labels(path)
                depth_root = manual / folder / "Depth"
                if not depth_root.is_dir():
                    depth_root = manual / folder
                for name, joints in zip(labels.names, labels.joints):
                    out.append(base.Planned(f"{name}#0", depth_root / name, joints,
                                        np.ones(len(joints), np.int8)))
            return out
        pool, validation = self.carve_validation(
            self._present(load("Training", ["labels.txt"])), "pool")
        return {"pool": pool, "validation": validation,
                "test": self._present(load("Testing", ["test_seq_1.txt", "test_seq_2.txt"]))}


class Nyu(base.Builder, skip_registration=True):
    """NYU hand depth (Tompson et al. 2014): the 14 evaluation joints, frontal camera."""

    name = "nyu"
    KIND = "hand"
    VALIDATION_FRACTION = 0.02  # ~1,450 of the 72,757 training frames (video: see Icvl)
    SKELETON = skeletons.nyu14
    DOWNLOAD = (
        "NYU: https://jonathantompson.github.io/NYU_Hand_Pose_Dataset.htm (nyu_hand_dataset_v2.zip)."
        " manual_dir must hold train/joint_data.mat with train/depth_1_*.png, and test/ with "
        "either joint_data.mat or the 14-joint text labels nyu_test_groundtruth_label.txt "
        "(+ nyu_test_list.txt), with test/depth_1_*.png.")

    def _plan(self, manual):
        train = formats.read_nyu_joint_data(
            base.require_file(manual / "train" / "joint_data.mat", "nyu", self.DOWNLOAD))
        test_mat = manual / "test" / "joint_data.mat"
        if test_mat.is_file():
            test = formats.read_nyu_joint_data(test_mat)
            test_root = manual / "test"
        else:
            txt = base.find_first(manual, ("test/nyu_test_groundtruth_label.txt",
                                 "nyu_test_groundtruth_label.txt"))
            if txt is None:
                raise FileNotFoundError(f"nyu: neither {test_mat} nor "
                                        f"nyu_test_groundtruth_label.txt found.\n{self.DOWNLOAD}")
            lst = base.find_first(txt.parent, ("nyu_test_list.txt",))
            test = formats.read_nyu_labels_txt(txt, lst)
            test_root = txt.parent

        def items(labels, root, split):
            out = []
            for name, joints in zip(labels.names, labels.joints):
                path = root / name
                if not path.is_file():
                    for alt in (root / pathlib.Path(name).name, manual / name):
                        if alt.is_file():
                            path = alt
                            break
                out.append(base.Planned(f"{split}/{pathlib.Path(name).name}#0", path, joints,
                                    np.ones(len(joints), np.int8)))
            return out
        pool, validation = self.carve_validation(
            self._present(items(train, manual / "train", "train")), "pool")
        return {"pool": pool, "validation": validation,
                "test": self._present(items(test, test_root, "test"))}

    def _depth_png(self, data: bytes) -> bytes:
        return formats.encode_depth_png(formats.decode_depth_nyu(data))
