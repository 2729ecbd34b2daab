"""Helpers for the COCO-keypoints tests: part of LSPET written as a COCO keypoints dataset."""
import json
import pathlib
import shutil

import numpy as np

from vl4pose_jax import skeletons

# The COCO person category: 17 keypoints and the 19-link skeleton (1-based).
COCO_PERSON = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
               "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"]
COCO_PERSON_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13],
                        [6, 7], [6, 8], [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3],
                        [2, 4], [3, 5], [4, 6], [5, 7]]


def lspet_category():
    sk = skeletons.lsp14
    return {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(sk.names),
            "skeleton": [[p + 1, c + 1] for p, c in sk.links]}


def coco_dict(shared, indices, *, bbox=True):
    """A COCO keypoints dict of LSPET images `indices` (0-based), file names `im00001.jpg`."""
    from PIL import Image
    from vl4pose_jax.data import formats
    labels = formats.read_lsp_mat(pathlib.Path(shared) / "lspet" / "joints.mat")
    images, anns = [], []
    for n, i in enumerate(indices):
        name = formats.lsp_image_name(i, extended=True)
        with Image.open(pathlib.Path(shared) / "lspet" / "images" / name) as im:
            w, h = im.size
        images.append({"id": n + 1, "file_name": name, "width": w, "height": h})
        j, v = labels.joints[i], labels.visibility[i]
        flags = np.where(v == 1, 2, np.where(v == 0, 1, 0))
        kps = []
        for (x, y), f in zip(j.tolist(), flags.tolist()):
            kps += [float(x), float(y), int(f)] if f else [0.0, 0.0, 0]
        ann = {"id": 100 + n, "image_id": n + 1, "category_id": 1, "keypoints": kps,
               "num_keypoints": int((flags > 0).sum()), "iscrowd": 0}
        if bbox:
            pts = j[v >= 0]
            x0, y0 = pts.min(0) - 5
            x1, y1 = pts.max(0) + 5
            ann["bbox"] = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        anns.append(ann)
    return {"images": images, "annotations": anns, "categories": [lspet_category()]}


def write_dataset(shared, root, splits, *, copy_images=True):
    """`root/images/` + one COCO file per split ({'train': [indices], 'test': [...]})."""
    from vl4pose_jax.data import formats
    root = pathlib.Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for split, indices in splits.items():
        (root / f"{split}.json").write_text(json.dumps(coco_dict(shared, indices)))
        if copy_images:
            for i in indices:
                name = formats.lsp_image_name(i, extended=True)
                shutil.copy(pathlib.Path(shared) / "lspet" / "images" / name, root / "images" / name)
    return root
