"""Readers for the public datasets' label files and images: pure functions, numpy out.

Every reader returns joints already in the project's skeleton order (`skeletons.lsp14`,
`mpii16`, `icvl16`, `nyu14`) and a per-joint `visibility` int8 with one convention for all
datasets: 1 = labelled and visible, 0 = labelled but occluded, -1 = absent (no usable label;
its coordinates are meaningless and must never be trained on).

  * LSP `joints.mat` (3, 14, N): the third row means *occluded* (1 = occluded), so it is
    inverted; every LSP joint is labelled.
  * LSPET `joints.mat` (14, 3, N): the third row means *visible*; 0 is absent (coordinates are
    often garbage, e.g. negative), so it maps to -1.
  * MPII JSON (the mmpose/HRNet list of person dicts: image, joints 16x[x, y], joints_vis,
    center, scale, optional headbox): joints_vis 0 or a negative coordinate is absent.
  * Newell's `valid.h5` (via h5py): the stacked-hourglass validation people.
  * ICVL `labels.txt` / `test_seq_N.txt`: a relative image path then 16 x (u px, v px, d mm).
  * NYU: the 14-joint text labels (one frame per line, 14 x (u, v, d mm)) with an optional list
    of file names, or `joint_data.mat` (`joint_uvd` (cameras, N, 36, 3), reduced to 14 joints).
  * Depth PNGs: ICVL 16-bit grey in mm; NYU RGB with depth = (G << 8) | B in mm.
Image pixel coordinates are (x, y) = (column, row) with pixel centres at integers.

Images are read as people see them: a JPEG's EXIF orientation tag (0x0112, e.g. a phone photo
"rotate 90 CW") is applied wherever an image is decoded (`upright`, `oriented_size`), so
widths, heights and coordinates are those of the upright picture, as viewers and annotation
tools show it.
"""
from __future__ import annotations

import io
import json
import os
import re
from typing import NamedTuple

import h5py
import numpy as np

from vl4pose_jax import skeletons

# Official MPII head size = 0.6 x head-box diagonal. Without a head box we estimate it from the
# head-top / upper-neck distance: on Newell's 2,958 validation people normalize / |head - neck|
# has median 0.750 (5-95 %: 0.740-0.761).
MPII_HEADSIZE_PER_HEAD_NECK = 0.75


class HumanLabels(NamedTuple):
    """Per-person labels: joints (N, J, 2) float32 image px, visibility (N, J) int8."""
    joints: np.ndarray
    visibility: np.ndarray


# ----------------------------------------------------------------------------- LSP / LSPET


def _load_mat_array(path, key: str) -> np.ndarray:
    """Array `key` of a MATLAB label file; errors name the file and the keys it has."""
    from scipy import io as sio  # pylint: disable=import-outside-toplevel
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    try:
        mat = sio.loadmat(path)
    except Exception as err:  # pylint: disable=broad-except  (scipy raises many kinds)
        raise ValueError(f"{path}: not a readable MATLAB file ({type(err).__name__}: {err}); "
                         "download and extract it again") from None
    if key not in mat:
        raise ValueError(f"{path}: no {key!r} array (keys: {sorted(k for k in mat if k[0] != '_')})")
    return mat[key]


def read_lsp_mat(path, *, flag_means: str | None = None) -> HumanLabels:
    """LSP or LSPET `joints.mat` -> labels in lsp14 order for every image (N = 2000 or 10000).

    The layout tells the two apart: LSP is (3, 14, N) with an *occluded* flag, LSPET is
    (14, 3, N) with a *visible* flag (0 = absent). `flag_means` ('occluded' or 'visible')
    overrides that guess.
    """
    path = os.fspath(path)
    raw = np.asarray(_load_mat_array(path, "joints"), np.float64)
    if raw.ndim != 3 or 14 not in raw.shape[:2] or 3 not in raw.shape[:2]:
        raise ValueError(f"{path}: 'joints' has shape {raw.shape}, expected (3, 14, N) or (14, 3, N)")
    if raw.shape[0] == 3:  # LSP: ([x, y, flag], joint, image)
        data = np.transpose(raw, (2, 1, 0))
        guess = "occluded"
    else:  # LSPET: (joint, [x, y, flag], image)
        data = np.transpose(raw, (2, 0, 1))
        guess = "visible"
    flag_means = flag_means or guess
    data = data[:, skeletons.LSP_SOURCE_INDEX, :]
    joints = data[..., :2].astype(np.float32)
    flag = data[..., 2]
    if flag_means == "occluded":
        visibility = np.where(flag > 0.5, 0, 1).astype(np.int8)
    elif flag_means == "visible":
        visibility = np.where(flag > 0.5, 1, -1).astype(np.int8)
    else:
        raise ValueError(f"flag_means must be 'occluded' or 'visible', got {flag_means!r}")
    return HumanLabels(joints, visibility)


def lsp_image_name(index: int, *, extended: bool) -> str:
    """File name of LSP (im0001.jpg) or LSPET (im00001.jpg) image `index` (0-based)."""
    return f"im{index + 1:05d}.jpg" if extended else f"im{index + 1:04d}.jpg"


def torso_size(joints_Jx2, visibility_J, skeleton=skeletons.lsp14) -> float:
    """LSP PCK normaliser max(|lsho - rhip|, |rsho - lhip|) over the labelled pairs; NaN if none."""
    joints = np.asarray(joints_Jx2, np.float64)
    visibility = np.asarray(visibility_J)
    sizes = []
    for a, b in (("lsho", "rhip"), ("rsho", "lhip")):
        i, j = skeleton.index(a), skeleton.index(b)
        if visibility[i] >= 0 and visibility[j] >= 0:
            sizes.append(float(np.linalg.norm(joints[i] - joints[j])))
    return max(sizes) if sizes else float("nan")


# ----------------------------------------------------------------------------- MPII


class MpiiPerson(NamedTuple):
    image: str
    person: int          # index of this person among the image's people, in file order
    joints: np.ndarray   # (16, 2) float32, mpii16 order
    visibility: np.ndarray  # (16,) int8
    center: np.ndarray   # (2,) float32
    scale: float         # person height / 200 px
    headsize: float      # 0.6 x head-box diagonal when the file has a head box, else NaN


def read_mpii_json(path) -> list[MpiiPerson]:
    """An MPII annotation JSON (mmpose/HRNet format) -> one `MpiiPerson` per entry."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    with open(path) as f:
        entries = json.load(f)
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of person dicts")
    counts: dict[str, int] = {}
    out = []
    for k, e in enumerate(entries):
        try:
            image = str(e["image"])
            raw = np.asarray(e["joints"], np.float64).reshape(16, 2)
            vis = np.asarray(e.get("joints_vis", np.ones(16)), np.float64).reshape(16)
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: entry {k} is not an MPII person dict ({err})") from None
        joints = raw[skeletons.MPII_SOURCE_INDEX].astype(np.float32)
        vis = vis[skeletons.MPII_SOURCE_INDEX]
        absent = (vis <= 0) | np.any(raw[skeletons.MPII_SOURCE_INDEX] < 0, axis=-1)
        visibility = np.where(absent, -1, 1).astype(np.int8)
        headsize = float("nan")
        if "headbox" in e:
            box = np.asarray(e["headbox"], np.float64).reshape(-1)
            headsize = 0.6 * float(np.linalg.norm(box[2:4] - box[0:2]))
        person = counts.get(image, 0)
        counts[image] = person + 1
        out.append(MpiiPerson(image, person, joints, visibility,
                              np.asarray(e.get("center", (np.nan, np.nan)), np.float32),
                              float(e.get("scale", np.nan)), headsize))
    return out


def mpii_headsize_estimate(joints_16x2) -> float:
    """Head size (0.6 x head-box diagonal) estimated from |head top - upper neck| (mpii16 order)."""
    joints = np.asarray(joints_16x2, np.float64)
    head, neck = skeletons.mpii16.index("head"), skeletons.mpii16.index("neck")
    return MPII_HEADSIZE_PER_HEAD_NECK * float(np.linalg.norm(joints[head] - joints[neck]))


class NewellValid(NamedTuple):
    imgname: list      # (N,) image file names
    joints: np.ndarray  # (N, 16, 2) float32, mpii16 order
    visible: np.ndarray  # (N, 16) float32 as stored (1 visible)
    normalize: np.ndarray  # (N,) float32: head size, 0.6 x head-box diagonal, px
    center: np.ndarray  # (N, 2)
    scale: np.ndarray   # (N,)


def read_newell_valid(path) -> NewellValid:
    """Newell's stacked-hourglass `valid.h5` (or `annot.h5`): the MPII validation people."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Newell validation file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            d = {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    missing = {"imgname", "part", "normalize"} - set(d)
    if missing:
        raise ValueError(f"{path}: missing fields {sorted(missing)} (has {sorted(d)})")
    names = d["imgname"]
    if names.dtype.kind in "iuf":  # some versions store names as character codes
        names = [bytes(int(c) for c in row if c > 0).decode() for row in names.reshape(len(names), -1)]
    else:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    n = len(names)
    return NewellValid(
        names, np.asarray(d["part"], np.float32)[:, skeletons.MPII_SOURCE_INDEX],
        np.asarray(d.get("visible", np.ones((n, 16))), np.float32)[:, skeletons.MPII_SOURCE_INDEX],
        np.asarray(d["normalize"], np.float32).reshape(n),
        np.asarray(d.get("center", np.full((n, 2), np.nan)), np.float32),
        np.asarray(d.get("scale", np.full(n, np.nan)), np.float32).reshape(n))


def read_name_list(path) -> list[str]:
    """A text list of file names, one per line (e.g. Stacked_HG_ValidationImageNames.txt)."""
    with open(os.fspath(path)) as f:
        return [line.strip() for line in f if line.strip()]


# ----------------------------------------------------------------------------- hands


class HandLabels(NamedTuple):
    names: list         # (N,) relative image paths, as in the label file
    joints: np.ndarray  # (N, J, 3) float32 (u px, v px, d mm), skeleton order


def read_icvl_labels(path) -> HandLabels:
    """ICVL `labels.txt` / `test_seq_N.txt`: `<path> u v d x 16` per line -> icvl16 order."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file not found: {path}")
    names, rows = [], []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 1 + 16 * 3:
                raise ValueError(f"{path}:{lineno}: expected a path and 48 numbers, got "
                                 f"{len(parts) - 1} numbers")
            names.append(parts[0])
            rows.append([float(x) for x in parts[1:]])
    joints = np.asarray(rows, np.float32).reshape(-1, 16, 3)[:, skeletons.ICVL_SOURCE_INDEX]
    return HandLabels(names, joints)


def read_nyu_labels_txt(label_path, list_path=None) -> HandLabels:
    """NYU 14-joint text labels (one frame per line, 14 x (u, v, d mm)); names from `list_path`
    (e.g. `nyu_test_list.txt`, lines like `test/depth_1_0000001.png`) or, without it,
    `depth_1_%07d.png` numbered from 1."""
    label_path = os.fspath(label_path)
    if not os.path.isfile(label_path):
        raise FileNotFoundError(f"label file not found: {label_path}")
    joints = np.loadtxt(label_path, dtype=np.float64, ndmin=2)
    if joints.shape[1] != 14 * 3:
        raise ValueError(f"{label_path}: expected 42 numbers per line, got {joints.shape[1]}")
    joints = joints.astype(np.float32).reshape(-1, 14, 3)
    if list_path is not None:
        names = read_name_list(list_path)
        if len(names) != len(joints):
            raise ValueError(f"{list_path}: {len(names)} names for {len(joints)} label lines "
                             f"in {label_path}")
    else:
        names = [f"depth_1_{i + 1:07d}.png" for i in range(len(joints))]
    return HandLabels(names, joints)


def read_nyu_joint_data(path, *, camera: int = 0) -> HandLabels:
    """NYU `joint_data.mat` -> the 14 evaluation joints (u, v, d mm) of one camera (0 = frontal).

    Names follow the dataset's layout: `depth_<camera+1>_%07d.png` numbered from 1."""
    uvd = np.asarray(_load_mat_array(path, "joint_uvd"), np.float32)
    if uvd.ndim == 3:
        uvd = uvd[None]
    joints = uvd[camera][:, skeletons.NYU_SOURCE_INDEX, :]
    names = [f"depth_{camera + 1}_{i + 1:07d}.png" for i in range(len(joints))]
    return HandLabels(names, joints)


# ----------------------------------------------------------------------------- images


def _open(data):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    if isinstance(data, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(data)))
    return Image.open(os.fspath(data))


EXIF_ORIENTATION = 0x0112   # the EXIF tag; 1 = upright, 2..8 = mirrored and/or rotated
_SWAPS_SIDES = (5, 6, 7, 8)  # orientations that exchange width and height


def exif_orientation(im) -> int:
    """The EXIF orientation (1..8) of an opened PIL image; 1 when absent or unreadable."""
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # pylint: disable=broad-except  # a broken EXIF block: shown as stored
        return 1
    return value if 1 <= value <= 8 else 1


def oriented_size(im) -> tuple[int, int]:
    """(width, height) of an opened PIL image as shown upright (EXIF orientation applied)."""
    w, h = im.size
    return (h, w) if exif_orientation(im) in _SWAPS_SIDES else (w, h)


def upright(im):
    """The opened PIL image turned as its EXIF orientation says (itself when upright; the
    result carries no orientation tag)."""
    if exif_orientation(im) == 1:
        return im
    from PIL import ImageOps  # pylint: disable=import-outside-toplevel
    return ImageOps.exif_transpose(im)


def decode_rgb(data) -> np.ndarray:
    """JPEG/PNG bytes or a path -> (H, W, 3) uint8 RGB, upright (EXIF orientation applied).
    Raises OSError on a corrupt file."""
    im = _open(data)
    im.load()
    return np.asarray(upright(im).convert("RGB"))


def decode_depth_icvl(data) -> np.ndarray:
    """A 16-bit grey depth PNG (ICVL, synthetic) -> (H, W) uint16 mm, 0 = no reading."""
    im = _open(data)
    im.load()
    arr = np.asarray(im)
    if arr.ndim == 3:
        raise ValueError("expected a single-channel 16-bit depth PNG, got a colour image")
    return arr.astype(np.uint16)


def decode_depth_nyu(data) -> np.ndarray:
    """An NYU depth PNG (RGB, depth = (G << 8) | B in mm) -> (H, W) uint16 mm, 0 = no reading."""
    if isinstance(data, np.ndarray) and data.ndim == 3:
        rgb = data
    else:
        im = _open(data)
        im.load()
        rgb = np.asarray(im.convert("RGB"))
    return (rgb[..., 1].astype(np.uint16) << 8) | rgb[..., 2].astype(np.uint16)


def encode_depth_png(depth_HxW_mm) -> bytes:
    """(H, W) uint16 mm -> 16-bit grey PNG bytes (lossless; `decode_depth_icvl` inverts it)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    depth = np.ascontiguousarray(np.asarray(depth_HxW_mm, np.uint16))
    buf = io.BytesIO()
    Image.fromarray(depth).save(buf, format="PNG")
    return buf.getvalue()


_SEQ_RE = re.compile(r"(\d+)")


def natural_key(name: str):
    """Sort key treating digit runs as numbers (image_2 before image_10)."""
    return [int(t) if t.isdigit() else t for t in _SEQ_RE.split(name)]
