"""Human-pose example transform: person-centred square crop, augmentation, heatmap targets.

`human_transform(example, rng, train=..., image_size=256)` turns one stored example (encoded
image bytes, joints in original image pixels, visibility, PCK normaliser) into one training /
evaluation example of the batch contract. Numpy and Pillow only (safe in grain worker
processes; no JAX), deterministic given the `np.random.Generator` it is handed.

Geometry, in one affine map (one resampling, zero padding outside the image):
  * crop: centre = centre of the labelled joints' bounding box (or of the example's person
    `box`, COCO sets; an explicit `crop` wins, see `example_crop`), side L = s * max(box w, box h)
    with s ~ U(1.5, 2.0) when training and s = 1.75 otherwise (scoring and evaluation use the
    same crop);
  * training augmentation, drawn per example: horizontal flip (p = 0.5, then left/right joint
    labels swapped with `skeleton.flip_permutation()`), rotation U(-45, 45) deg, zoom
    1 + U(-0.25, 0.25), shift U(-0.2, 0.2) x S in each axis. Up to `max_tries` draws are made
    until every labelled joint stays inside the crop; if none succeeds the unaugmented crop
    (flip kept) is used.
Images are decoded upright (EXIF orientation applied, `formats.upright`), as the builders
record their sizes. Coordinates: image pixels (x, y) with pixel centres at integers. Heatmap
cell k of a stride-4 map covers crop pixels 4k .. 4k+3, so x_cell = (x_px + 0.5) / 4 - 0.5
(cell centres at integers, as `vl4pose_jax.heatmaps`). The heatmaps are `heatmaps_numpy`, the
numpy twin of `vl4pose_jax.heatmaps.gaussian_targets` (same formula; the twin keeps JAX out of
workers).
"""
from __future__ import annotations

import io
import math

import numpy as np

from vl4pose_jax import skeletons
from vl4pose_jax.data import formats
from vl4pose_jax.heatmaps import DEFAULT_PEAK, DEFAULT_SIGMA

TRAIN_CROP_SCALE = (1.5, 2.0)
EVAL_CROP_SCALE = 1.75
MIN_BOX_PX = 8.0  # a degenerate joint box (one joint) still gets a crop of this size x s


def heatmaps_numpy(joints_xy_Jx2, visible_J, height: int, width: int, *,
                   sigma: float = DEFAULT_SIGMA, peak: float = DEFAULT_PEAK):
    """Numpy twin of `heatmaps.gaussian_targets` for one example: (H, W, J) float32, (J,) bool."""
    joints = np.asarray(joints_xy_Jx2, np.float32)
    x, y = joints[:, 0], joints[:, 1]
    with np.errstate(invalid="ignore"):
        exists = (np.asarray(visible_J) > 0) & np.isfinite(x) & np.isfinite(y)
        exists &= (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    gx = np.exp(-((xs[None, :] - np.where(exists, x, 0)[:, None]) ** 2) / (2 * sigma**2))  # J,W
    gy = np.exp(-((ys[None, :] - np.where(exists, y, 0)[:, None]) ** 2) / (2 * sigma**2))  # J,H
    gx *= (peak * exists)[:, None]
    maps = np.einsum("jh,jw->hwj", gy, gx).astype(np.float32)
    return maps, exists


def labelled_box(joints_Jx2, visibility_J):
    """(x0, y0, x1, y1) of the labelled (visibility >= 0), finite joints; None if there are none."""
    joints = np.asarray(joints_Jx2, np.float64)
    ok = (np.asarray(visibility_J) >= 0) & np.all(np.isfinite(joints), axis=-1)
    if not ok.any():
        return None
    pts = joints[ok]
    return (*pts.min(0), *pts.max(0))


def crop_window(joints_Jx2, visibility_J, crop_scale: float):
    """Centre (2,) and side (px) of the square person crop in original image pixels."""
    box = labelled_box(joints_Jx2, visibility_J)
    if box is None:
        raise ValueError("example has no labelled joint to centre a crop on")
    x0, y0, x1, y1 = box
    side = crop_scale * max(x1 - x0, y1 - y0, MIN_BOX_PX)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2]), float(side)


def example_crop(example, crop_scale: float):
    """Centre (2,) and side (px) of an example's square crop: its `crop` (centre x, centre y,
    side; used as given), else its person `box` (x0, y0, x1, y1: side = s x the longer box
    side, COCO sets), else its labelled joints' box (`crop_window`)."""
    crop = example.get("crop")
    if crop is not None:
        crop = np.asarray(crop, np.float64)
        return crop[:2], float(crop[2])
    box = example.get("box")
    if box is not None and np.all(np.isfinite(box)) and box[2] > box[0] and box[3] > box[1]:
        x0, y0, x1, y1 = (float(t) for t in box)
        side = crop_scale * max(x1 - x0, y1 - y0, MIN_BOX_PX)
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2]), float(side)
    return crop_window(example["joints"], example["visibility"], crop_scale)


def crop_affine(center_xy, side_px, out_size: int, *, flip=False, rotation_deg=0.0,
                zoom=1.0, shift_xy=(0.0, 0.0)):
    """Forward map image px -> crop px as (A (2x2), b (2,)): q = A p + b.

    Content is scaled by (out_size / side) * zoom, rotated by `rotation_deg` (counter-clockwise
    on screen), optionally mirrored, and shifted by `shift_xy` output pixels.
    """
    f = out_size / side_px * zoom
    t = math.radians(rotation_deg)
    c, s = math.cos(t), math.sin(t)
    rot = np.array([[c, s], [-s, c]])  # y points down: this turns content counter-clockwise
    mirror = np.diag([-1.0, 1.0]) if flip else np.eye(2)
    a = f * rot @ mirror
    mid = (out_size - 1) / 2.0
    b = np.array([mid, mid]) + np.asarray(shift_xy, np.float64) - a @ np.asarray(center_xy, np.float64)
    return a, b


def warp_image(image, a, b, out_size: int):
    """Resample a PIL image (or HxWx3 uint8) through q = A p + b into (S, S, 3) uint8, zero fill."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    inv = np.linalg.inv(a)
    t = -inv @ b  # p = inv q + t, pixel centres at integers
    # Pillow samples input corner-coordinates at inv (q + 0.5) + c; convert from centres.
    coeffs = (inv[0, 0], inv[0, 1], t[0] + 0.5 - 0.5 * (inv[0, 0] + inv[0, 1]),
              inv[1, 0], inv[1, 1], t[1] + 0.5 - 0.5 * (inv[1, 0] + inv[1, 1]))
    out = image.transform((out_size, out_size), Image.AFFINE, coeffs,
                          resample=Image.BILINEAR, fillcolor=(0, 0, 0))
    return np.asarray(out)


def open_image_for_crop(image_bytes, side_px: float, out_size: int):
    """Open encoded bytes as an upright RGB PIL image (EXIF orientation applied, so sizes and
    coordinates are the upright picture's), using JPEG draft (DCT) downscaling when the crop
    shrinks by 2x or more. Returns (image, reduce (2,)): reduced pixel p' covers original pixels
    [p' r, (p' + 1) r), i.e. original p = r p' + (r - 1) / 2 per axis."""
    from PIL import Image  # pylint: disable=import-outside-toplevel
    im = Image.open(io.BytesIO(image_bytes))
    stored, full = im.size, formats.oriented_size(im)
    shrink = side_px / out_size
    if im.format == "JPEG" and shrink >= 2.0:
        reduce = 1 << min(3, int(math.log2(shrink)))
        im.draft("RGB", (max(1, stored[0] // reduce), max(1, stored[1] // reduce)))
    im = formats.upright(im).convert("RGB")
    return im, np.array([full[0] / im.size[0], full[1] / im.size[1]])


def _inside(q, out_size):
    return np.all((q >= -0.5) & (q <= out_size - 0.5), axis=-1)


def human_transform(example, rng: np.random.Generator | None = None, *, train: bool,
                    image_size: int = 256, stride: int = 4, skeleton=skeletons.lsp14,
                    sigma: float = DEFAULT_SIGMA, peak: float = DEFAULT_PEAK,
                    crop_scale=None, max_tries: int = 5, flip_prob: float = 0.5,
                    rotation_deg: float = 45.0, zoom_range: float = 0.25,
                    shift_fraction: float = 0.2):
    """One stored human example -> one example of the batch contract (see `loader`).

    Args:
      example: dict with `image` (encoded bytes), `joints` (J, 2) image px, `visibility` (J,)
        int8 (1 visible, 0 occluded, -1 absent), `normalizer` () px, and optionally `id`,
        `ood`, `index`.
      rng: numpy Generator; required when `train` (augmentation draws), unused otherwise.
      crop_scale: override s (a float, or a (lo, hi) range when training).
    Returns: dict image (S,S,3) float32 [0,1], heatmaps (S/stride, S/stride, J) float32,
      joints (J, 2) float32 heatmap cells, visible (J,) float32, normalizer () float32 cells,
      ood () int32, id, index () int64.
    """
    joints = np.asarray(example["joints"], np.float64)
    visibility = np.asarray(example["visibility"], np.int8)
    num_joints = joints.shape[0]
    labelled = visibility >= 0
    if train:
        if rng is None:
            raise ValueError("train=True needs an rng")
        lo, hi = crop_scale if isinstance(crop_scale, (tuple, list)) else (
            TRAIN_CROP_SCALE if crop_scale is None else (crop_scale, crop_scale))
        s = float(rng.uniform(lo, hi))
    else:
        s = EVAL_CROP_SCALE if crop_scale is None else float(crop_scale)
    center, side = example_crop(example, s)

    flip = False
    a, b = crop_affine(center, side, image_size)
    if train:
        flip = bool(rng.random() < flip_prob)
        a, b = crop_affine(center, side, image_size, flip=flip)
        for _ in range(max_tries):
            rot = float(rng.uniform(-rotation_deg, rotation_deg))
            zoom = 1.0 + float(rng.uniform(-zoom_range, zoom_range))
            shift = rng.uniform(-shift_fraction, shift_fraction, size=2) * image_size
            a_try, b_try = crop_affine(center, side, image_size, flip=flip, rotation_deg=rot,
                                       zoom=zoom, shift_xy=shift)
            q = joints @ a_try.T + b_try
            if np.all(_inside(q[labelled], image_size)):
                a, b = a_try, b_try
                break

    image, reduce = open_image_for_crop(bytes(example["image"]), side, image_size)
    a_img = a * reduce[None, :]  # q = A (r p' + (r - 1) / 2) + b
    b_img = b + a @ (0.5 * (reduce - 1.0))
    crop = warp_image(image, a_img, b_img, image_size)

    q = joints @ a.T + b  # crop px
    if flip:
        perm = skeleton.flip_permutation()
        q, visibility, labelled = q[perm], visibility[perm], labelled[perm]
    inside = _inside(q, image_size) & np.all(np.isfinite(q), axis=-1)
    visible = (labelled & inside).astype(np.float32)
    cells = (q + 0.5) / stride - 0.5
    cells = np.where(visible[:, None] > 0, cells, 0.0).astype(np.float32)
    size = image_size // stride
    heatmaps, _ = heatmaps_numpy(cells, visible, size, size, sigma=sigma, peak=peak)
    scale = float(np.sqrt(abs(np.linalg.det(a))))  # crop px per image px
    normalizer = float(example.get("normalizer", np.nan)) * scale / stride
    out = dict(
        image=crop.astype(np.float32) / 255.0,
        heatmaps=heatmaps,
        joints=cells,
        visible=visible,
        normalizer=np.float32(normalizer),
        ood=np.int32(example.get("ood", 0)),
        id=as_str(example.get("id", "")),
        index=np.int64(example.get("index", -1)),
    )
    assert out["joints"].shape == (num_joints, 2)
    return out


def as_str(value):
    """A record's string field (bytes, a 0-d object array or str) as str."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        value = value.item()
        return value.decode() if isinstance(value, bytes) else str(value)
    return str(value)
