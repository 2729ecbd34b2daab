"""Depth hand crops: centre of mass, metric-cube crop, normalised UVD targets, mm conversions.

A hand is cropped in a cube of side `cube_mm` centred on its centre of mass (CoM): the mean
(u, v, d) of the depth pixels inside the cube around a reference point (the mean of the labelled
joints), refined twice. The cube's front face projects to a window of half-size
(fx, fy) * (cube/2) / d_c pixels around (u_c, v_c), resampled (nearest) to S x S (S = 128).
Depth is normalised to (d - d_c) / (cube/2) and clipped to [-1, 1]; pixels with no reading or
beyond the cube's back face are background = +1, nearer than its front face = -1.

Normalised UVD (targets, `joints` of the hand batch):
  u_n = (u - u_c) / (fx (cube/2) / d_c),  v_n = (v - v_c) / (fy (cube/2) / d_c),
  d_n = (d - d_c) / (cube/2),
so the crop spans [-1, 1] in u_n, v_n. `normalised_uvd_to_xyz_mm` inverts this and back-projects
with the pinhole model x = (u - cx) d / fx, y = (v - cy) d / fy, z = d (no y flip for any
dataset; distances, hence the mean joint error in mm, do not depend on that choice). These two
conversion functions are written with plain arithmetic, so they accept numpy or jax arrays
(jit-able). Intrinsics are (fx, fy, cx, cy) in pixels; `INTRINSICS` and `CUBE_MM` per dataset.
"""
from __future__ import annotations

import numpy as np

from vl4pose_jax.data import formats
from vl4pose_jax.data.transforms import as_str

INTRINSICS = {
    "icvl": (241.42, 241.42, 160.0, 120.0),
    "nyu": (588.03, 587.07, 320.0, 240.0),
    "synthetic_hand": (241.42, 241.42, 160.0, 120.0),
}
CUBE_MM = {"icvl": 250.0, "nyu": 300.0, "synthetic_hand": 250.0}
CROP_SIZE = 128


def _xp(*arrays):
    for a in arrays:
        if type(a).__module__.startswith("jax"):
            import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
            return jnp
    return np


def _half_window(center_uvd_Bx3, cube_mm_B, intrinsics):
    fx, fy = intrinsics[0], intrinsics[1]
    half = cube_mm_B / 2.0
    return fx * half / center_uvd_Bx3[..., 2], fy * half / center_uvd_Bx3[..., 2], half


def uvd_to_xyz(uvd_BxJx3, intrinsics):
    """(u px, v px, d mm) -> (x, y, z) mm in the camera frame."""
    xp = _xp(uvd_BxJx3)
    fx, fy, cx, cy = intrinsics
    u, v, d = uvd_BxJx3[..., 0], uvd_BxJx3[..., 1], uvd_BxJx3[..., 2]
    return xp.stack([(u - cx) * d / fx, (v - cy) * d / fy, d], axis=-1)


def xyz_to_uvd(xyz_BxJx3, intrinsics):
    """(x, y, z) mm -> (u px, v px, d mm)."""
    xp = _xp(xyz_BxJx3)
    fx, fy, cx, cy = intrinsics
    x, y, z = xyz_BxJx3[..., 0], xyz_BxJx3[..., 1], xyz_BxJx3[..., 2]
    return xp.stack([x * fx / z + cx, y * fy / z + cy, z], axis=-1)


def normalise_uvd(uvd_BxJx3, center_uvd_Bx3, cube_mm_B, intrinsics):
    """(u px, v px, d mm) -> normalised UVD relative to the crop (module doc)."""
    xp = _xp(uvd_BxJx3, center_uvd_Bx3, cube_mm_B)
    center = xp.asarray(center_uvd_Bx3)[..., None, :]
    hu, hv, hd = _half_window(xp.asarray(center_uvd_Bx3), xp.asarray(cube_mm_B), intrinsics)
    scale = xp.stack([hu, hv, hd * xp.ones_like(hu)], axis=-1)[..., None, :]
    return (uvd_BxJx3 - center) / scale


def denormalise_uvd(joints_BxJx3, center_uvd_Bx3, cube_mm_B, intrinsics):
    """Normalised UVD -> (u px, v px, d mm); inverse of `normalise_uvd`."""
    xp = _xp(joints_BxJx3, center_uvd_Bx3, cube_mm_B)
    center = xp.asarray(center_uvd_Bx3)[..., None, :]
    hu, hv, hd = _half_window(xp.asarray(center_uvd_Bx3), xp.asarray(cube_mm_B), intrinsics)
    scale = xp.stack([hu, hv, hd * xp.ones_like(hu)], axis=-1)[..., None, :]
    return joints_BxJx3 * scale + center


def normalised_uvd_to_xyz_mm(joints_BxJx3, center_uvd_Bx3, cube_mm_B, intrinsics):
    """Normalised UVD (B, J, 3) + crop centre (B, 3) and cube (B,) -> camera xyz (B, J, 3) mm."""
    return uvd_to_xyz(denormalise_uvd(joints_BxJx3, center_uvd_Bx3, cube_mm_B, intrinsics),
                      intrinsics)


def xyz_mm_to_normalised_uvd(xyz_BxJx3, center_uvd_Bx3, cube_mm_B, intrinsics):
    """Inverse of `normalised_uvd_to_xyz_mm`."""
    return normalise_uvd(xyz_to_uvd(xyz_BxJx3, intrinsics), center_uvd_Bx3, cube_mm_B,
                         intrinsics)


def hand_center(depth_HxW_mm, joints_Jx3, visibility_J, intrinsics, cube_mm, *,
                iterations: int = 2):
    """Centre of mass (u, v, d) of the depth pixels in the cube around the labelled joints' mean.

    Falls back to the joints' mean where the cube holds no depth reading."""
    depth = np.asarray(depth_HxW_mm)
    joints = np.asarray(joints_Jx3, np.float64)
    ok = (np.asarray(visibility_J) >= 0) & np.all(np.isfinite(joints), axis=-1)
    if not ok.any():
        raise ValueError("hand example has no labelled joint")
    center = joints[ok].mean(0)
    height, width = depth.shape
    fx, fy = intrinsics[0], intrinsics[1]
    for _ in range(iterations):
        if center[2] <= 0:
            break
        hu, hv = fx * cube_mm / 2 / center[2], fy * cube_mm / 2 / center[2]
        u0, u1 = int(max(0, np.floor(center[0] - hu))), int(min(width, np.ceil(center[0] + hu) + 1))
        v0, v1 = int(max(0, np.floor(center[1] - hv))), int(min(height, np.ceil(center[1] + hv) + 1))
        if u1 <= u0 or v1 <= v0:
            break
        patch = depth[v0:v1, u0:u1].astype(np.float64)
        mask = (patch > 0) & (np.abs(patch - center[2]) <= cube_mm / 2)
        if mask.sum() < 10:
            break
        vs, us = np.nonzero(mask)
        center = np.array([us.mean() + u0, vs.mean() + v0, patch[mask].mean()])
    return center.astype(np.float32)


def crop_depth(depth_HxW_mm, center_uvd, cube_mm, intrinsics, size: int = CROP_SIZE):
    """Metric-cube crop around `center_uvd`, nearest-resampled to (size, size), in [-1, 1]."""
    depth = np.asarray(depth_HxW_mm)
    height, width = depth.shape
    uc, vc, dc = (float(c) for c in center_uvd)
    hu, hv = intrinsics[0] * cube_mm / 2 / dc, intrinsics[1] * cube_mm / 2 / dc
    grid = (np.arange(size) + 0.5) / size * 2.0 - 1.0  # output pixel centres in [-1, 1]
    us = np.floor(uc + grid * hu + 0.5).astype(np.int64)
    vs = np.floor(vc + grid * hv + 0.5).astype(np.int64)
    inside_u = (us >= 0) & (us < width)
    inside_v = (vs >= 0) & (vs < height)
    patch = depth[np.clip(vs, 0, height - 1)[:, None], np.clip(us, 0, width - 1)[None, :]]
    patch = patch.astype(np.float32)
    valid = (patch > 0) & inside_v[:, None] & inside_u[None, :]
    norm = (patch - dc) / (cube_mm / 2)
    norm = np.where(valid & (norm <= 1.0), np.maximum(norm, -1.0), 1.0)
    return norm.astype(np.float32)


def hand_transform(example, rng: np.random.Generator | None = None, *, intrinsics,
                   cube_mm: float, size: int = CROP_SIZE, depth_decoder=None,
                   train: bool = False, center_jitter_mm: float = 8.0,
                   cube_jitter: float = 0.1):
    """One stored hand example -> one example of the hand batch contract.

    Training augmentation (`train=True`, needs `rng`) moves the crop centre by up to
    `center_jitter_mm` in x, y and z and scales the cube by 1 + U(-cube_jitter, cube_jitter).
    Both are carried by the returned `center_uvd` / `cube_mm`, so the targets still convert to
    the hand's true mm coordinates.

    Args:
      example: dict with `depth` (encoded PNG bytes, or an (H, W) uint16 mm array), `joints`
        (J, 3) (u px, v px, d mm), `visibility` (J,), optionally `id`, `ood`, `index`.
      depth_decoder: bytes -> (H, W) uint16 mm (default: 16-bit grey PNG).
    Returns: dict depth (S, S, 1) float32 in [-1, 1], joints (J, 3) float32 normalised UVD,
      visible (J,) float32, center_uvd (3,) float32, cube_mm () float32, ood, id, index.
    """
    depth = example["depth"]
    if not isinstance(depth, np.ndarray) or depth.dtype == object or depth.ndim == 0:
        raw = depth.item() if isinstance(depth, np.ndarray) else depth
        depth = (depth_decoder or formats.decode_depth_icvl)(bytes(raw))
    joints = np.asarray(example["joints"], np.float32)
    visibility = np.asarray(example["visibility"])
    center = hand_center(depth, joints, visibility, intrinsics, cube_mm)
    if train:
        if rng is None:
            raise ValueError("train=True needs an rng")
        xyz = uvd_to_xyz(center[None].astype(np.float64), intrinsics)[0]
        xyz = xyz + rng.uniform(-center_jitter_mm, center_jitter_mm, size=3)
        center = xyz_to_uvd(xyz[None], intrinsics)[0].astype(np.float32)
        cube_mm = float(cube_mm) * (1.0 + float(rng.uniform(-cube_jitter, cube_jitter)))
    crop = crop_depth(depth, center, cube_mm, intrinsics, size)
    norm = normalise_uvd(joints[None].astype(np.float64), center[None].astype(np.float64),
                         np.asarray([cube_mm], np.float64), intrinsics)[0]
    visible = (visibility >= 0) & np.all(np.isfinite(norm), axis=-1)
    norm = np.where(visible[:, None], norm, 0.0)
    return dict(
        depth=crop[..., None],
        joints=norm.astype(np.float32),
        visible=visible.astype(np.float32),
        center_uvd=center.astype(np.float32),
        cube_mm=np.float32(cube_mm),
        ood=np.int32(example.get("ood", 0)),
        id=as_str(example.get("id", "")),
        index=np.int64(example.get("index", -1)),
    )
