"""Synthetic hands: a kinematic icvl16 hand in camera millimetres, rendered as a depth frame.

`hand_example(seed, index, ood_kind=...)` samples finger articulation and a hand rotation,
places the hand in front of ICVL's camera (`HAND_INTRINSICS`, `HAND_IMAGE_SHAPE`), z-buffers
its capsules (fingers, palm, forearm) and adds a depth sensor's habits: a wall or nothing behind,
parallax shadows, holes at depth edges and small clusters, noise. 'rare_pose' hands face away,
point down or bend fingers beyond their limits; 'appearance' hands have heavy noise, large holes
or clutter close behind. `pose=` renders given (16, 3) uvd joints where they are. Joints' d is
the depth of the joint's 3-D centre, not of the skin in front of it.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence

import numpy as np

from vl4pose_jax.data.synthetic.raster import arange, bbox, segment_geometry
from vl4pose_jax.data.synthetic.sampling import assign_ood, check_kind, example_rng, uniform

HAND_INTRINSICS = (241.42, 241.42, 160.0, 120.0)  # fx, fy, cx, cy (ICVL)
HAND_IMAGE_SHAPE = (240, 320)  # rows, columns
NUM_HAND_JOINTS = 16

# Random streams (the third entry of the seed sequence); each is drawn in a fixed order.
_S_HAND_POSE, _S_HAND_SCENE = 11, 12

# Local hand frame (mm): x towards the little finger, y from the fingers towards the wrist,
# z away from the camera (palm faces the camera); origin = the "palm" joint.
_ROOTS = np.array([[-25.0, 14.0, 3.0], [-31.0, -48.0, 0.0], [-9.0, -54.0, 0.0],
                   [10.0, -46.0, 0.0], [28.0, -33.0, 0.0]])
_BONES = np.array([[30.0, 26.0], [29.0, 20.0], [34.0, 22.0], [31.0, 21.0], [24.0, 19.0]])
_FINGER_RADII = np.array([[10.0, 9.0], [8.5, 8.0], [8.8, 8.0], [8.2, 7.6], [7.4, 7.0]])
_THUMB_BASE = np.array([-0.87, -0.47, -0.15])
_THUMB_ACROSS = np.array([0.55, -0.45, -0.70])


def _rot(axis: str, degrees: float) -> np.ndarray:
    r = math.radians(degrees)
    c, s = math.cos(r), math.sin(r)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _unit(v):
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _sample_hand_local(rng, rare_mode: int) -> tuple[np.ndarray, float]:
    """(16, 3) joints in the local hand frame (mm), and the hand's size factor."""
    scale = uniform(0.85, 1.15, rng)
    joints = np.zeros((16, 3))
    normal = np.array([0.0, 0.0, -1.0])  # the palm side
    curl = uniform(0.0, 1.0, rng) ** 1.5
    spread = uniform(-0.3, 1.0, rng)
    extreme = rare_mode == 2
    for f in range(5):
        root = (_ROOTS[f] + rng.uniform(-3, 3, 3) * np.array([1, 1, 0.5])) * scale
        l1, l2 = _BONES[f] * scale * rng.uniform(0.92, 1.08, 2)
        joints[1 + 3 * f] = root
        if f == 0:  # thumb: opposition swings it across the palm, then the tip flexes
            opp = uniform(0, 1, rng) * (0.7 if not extreme else 1.0) + (0.3 if extreme else 0.0)
            d1 = _unit((1 - opp) * _THUMB_BASE + opp * _THUMB_ACROSS)
            flex = uniform(0, 55, rng) if not extreme else uniform(70, 100, rng)
            side = _unit(normal + np.array([0.5, 0, 0]) - d1 * d1.dot(normal))
            d2 = math.cos(math.radians(flex)) * d1 + math.sin(math.radians(flex)) * side
        else:
            splay = np.array([root[0] * 0.012, -1.0, 0.0])
            abd = spread * 6.0 * (f - 2.5) + uniform(-6, 6, rng)
            if extreme:
                abd = (f - 2.5) * uniform(12, 20, rng)
            base = _rot("z", abd) @ _unit(splay)
            if extreme and rng.uniform() < 0.5:
                t1, t2 = uniform(-70, -35, rng), uniform(-10, 10, rng)  # hyperextended
            elif extreme:
                t1, t2 = uniform(95, 115, rng), uniform(105, 130, rng)  # beyond a full fist
            else:
                t1 = float(np.clip(curl * 85 - 10 + rng.normal(0, 10), -15, 80))
                t2 = float(np.clip(curl * 95 + rng.normal(0, 10), 0, 95))
            r1, r2 = math.radians(t1), math.radians(t1 + t2)
            d1 = math.cos(r1) * base + math.sin(r1) * normal
            d2 = math.cos(r2) * base + math.sin(r2) * normal
        joints[2 + 3 * f] = root + l1 * d1
        joints[3 + 3 * f] = joints[2 + 3 * f] + l2 * d2
    return joints, scale


def _hand_rotation(rng, rare_mode: int) -> np.ndarray:
    roll, yaw, pitch = uniform(-45, 45, rng), uniform(-35, 35, rng), uniform(-30, 30, rng)
    if rare_mode == 0:  # palm facing away
        yaw = 180 + uniform(-35, 35, rng)
    elif rare_mode == 1:  # fingers pointing down / sideways-down
        roll = 180 + uniform(-50, 50, rng)
    return _rot("z", roll) @ _rot("y", yaw) @ _rot("x", pitch)


def _project(xyz: np.ndarray) -> np.ndarray:
    fx, fy, cx, cy = HAND_INTRINSICS
    z = xyz[..., 2]
    return np.stack([xyz[..., 0] * fx / z + cx, xyz[..., 1] * fy / z + cy, z], axis=-1)


def _unproject(uvd: np.ndarray) -> np.ndarray:
    fx, fy, cx, cy = HAND_INTRINSICS
    z = uvd[..., 2]
    return np.stack([(uvd[..., 0] - cx) * z / fx, (uvd[..., 1] - cy) * z / fy, z], axis=-1)


def _fit_hand_in_frame(xyz: np.ndarray, margin: float = 6.0) -> np.ndarray:
    """Translate camera-space joints (16, 3) so that all project inside the frame."""
    rows, cols = HAND_IMAGE_SHAPE
    fx, fy = HAND_INTRINSICS[:2]
    xyz = xyz.copy()
    for _ in range(20):
        uv = _project(xyz)
        lo, hi = uv[:, :2].min(0), uv[:, :2].max(0)
        avail = np.array([cols - 1 - 2 * margin, rows - 1 - 2 * margin])
        if np.all(lo >= margin) and hi[0] <= cols - 1 - margin and hi[1] <= rows - 1 - margin:
            return xyz
        ratio = float(((hi - lo) / avail).max())
        if ratio > 1.0:  # too big: move away from the camera along the palm's ray
            xyz += xyz[0] * (ratio * 1.05 - 1.0)
            continue
        du = max(margin - lo[0], 0.0) - max(hi[0] - (cols - 1 - margin), 0.0)
        dv = max(margin - lo[1], 0.0) - max(hi[1] - (rows - 1 - margin), 0.0)
        z = float(xyz[:, 2].min())
        xyz[:, 0] += (du * 1.05 + np.sign(du) * 0.5) * z / fx
        xyz[:, 1] += (dv * 1.05 + np.sign(dv) * 0.5) * z / fy
    raise RuntimeError("could not fit the hand inside the frame")


def _hand_capsules(xyz: np.ndarray, scale: float, forearm_len: float, forearm_r: float):
    """(A (N,3), B (N,3), r (N,)) capsules of a hand given camera-space joints."""
    palm = xyz[0]
    roots = xyz[[4, 7, 10, 13]]
    up = _unit(roots.mean(0) - palm)  # towards the fingers
    wrist = palm - up * 28.0 * scale
    segs = []
    for f in range(5):
        r0, r1, r2 = xyz[1 + 3 * f], xyz[2 + 3 * f], xyz[3 + 3 * f]
        rad = _FINGER_RADII[f] * scale
        segs.append((r0, r1, rad[0]))
        segs.append((r1, r2, rad[1]))
        if f == 0:
            segs.append((wrist + up * 8 * scale, r0, 12.5 * scale))
        else:
            segs.append((wrist, r0, 11.5 * scale))
    segs.append((xyz[4], xyz[13], 10.5 * scale))
    segs.append((palm - up * 5 * scale, palm + up * 25 * scale, 13.0 * scale))
    # Forearm: from the wrist away from the fingers, tilted a little away from the camera.
    fdir = _unit(-up + np.array([0.0, 0.0, 0.25]))
    segs.append((wrist, wrist + fdir * 25 * scale, 20.0 * scale))
    segs.append((wrist + fdir * 20 * scale, wrist + fdir * forearm_len, forearm_r))
    a = np.stack([s[0] for s in segs])
    b = np.stack([s[1] for s in segs])
    r = np.array([s[2] for s in segs], np.float64)
    return a, b, r


def _zbuffer(depth: np.ndarray, a: np.ndarray, b: np.ndarray, radii: np.ndarray) -> None:
    """Render capsules (camera mm) into `depth` (rows, cols) float32, nearest surface wins.

    Per pixel: the closest point of the projected axis (parameter t in the image), the axis
    depth z_t there, the metric distance d = pixel distance * z_t / f, and the surface depth
    z_t - sqrt(r^2 - d^2) where d < r.
    """
    rows, cols = depth.shape
    f = HAND_INTRINSICS[0]
    pa, pb = _project(a), _project(b)
    for (ua, va, za), (ub, vb, zb), r in zip(pa, pb, radii):
        if za <= r or zb <= r:
            continue
        reach = r * f / min(za, zb) + 1.0
        box = bbox(min(ua, ub) - reach, max(ua, ub) + reach,
                    min(va, vb) - reach, max(va, vb) + reach, rows, cols)
        if box is None:
            continue
        ex, ey, t = segment_geometry(ua, va, ub, vb, box)
        zt = np.float32(za) + t * np.float32(zb - za)
        dm2 = (ex * ex + ey * ey) * (zt * np.float32(1.0 / f)) ** 2
        inside = dm2 < np.float32(r * r)
        surf = np.where(inside, zt - np.sqrt(np.maximum(np.float32(r * r) - dm2, 0.0)), np.inf)
        y0, y1, x0, x1 = box
        np.minimum(depth[y0:y1, x0:x1], surf, out=depth[y0:y1, x0:x1])


def _disc_mask(mask: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> None:
    rows, cols = mask.shape
    box = bbox(cx - rx - 1, cx + rx + 1, cy - ry - 1, cy + ry + 1, rows, cols)
    if box is None:
        return
    y0, y1, x0, x1 = box
    px = (arange(max(cols, rows))[x0:x1] - np.float32(cx)) / np.float32(max(rx, 0.5))
    py = (arange(max(cols, rows))[y0:y1] - np.float32(cy))[:, None] / np.float32(max(ry, 0.5))
    mask[y0:y1, x0:x1] |= (px * px + py * py) <= 1.0


def _hand(seed: int, index: int, ood_kind: str, pose) -> dict:
    check_kind(ood_kind)
    rows, cols = HAND_IMAGE_SHAPE
    scene = example_rng(seed, index, _S_HAND_SCENE, ood_kind)
    if pose is None:
        prng = example_rng(seed, index, _S_HAND_POSE, ood_kind)
        rare_mode = int(prng.integers(3)) if ood_kind == "rare_pose" else -1
        local, scale = _sample_hand_local(prng, rare_mode)
        rot = _hand_rotation(prng, rare_mode)
        palm = _unproject(np.array([uniform(90, 230, prng), uniform(70, 170, prng),
                                    uniform(250, 550, prng)]))
        xyz = _fit_hand_in_frame(local @ rot.T + palm)
        joints = _project(xyz)
    else:
        joints = np.asarray(pose, np.float64)
        if joints.shape != (NUM_HAND_JOINTS, 3) or not np.all(np.isfinite(joints)):
            raise ValueError(f"hand pose must be finite (16, 3) uvd, got {joints.shape}")
        xyz = _unproject(joints)
        if ood_kind == "rare_pose":  # turn 180 degrees about the vertical axis through the palm
            xyz = (xyz - xyz[0]) @ _rot("y", 180.0).T + xyz[0]
            xyz = _fit_hand_in_frame(xyz)
            joints = _project(xyz)
        bones = [np.linalg.norm(xyz[c] - xyz[c - 1]) / _BONES[(c - 2) // 3, 0]
                 for c in (2, 5, 8, 11, 14)]
        scale = float(np.clip(np.median(bones), 0.6, 1.6))

    forearm_len = uniform(90, 220, scene) * scale
    forearm_r = uniform(20, 27, scene) * scale
    a, b, radii = _hand_capsules(xyz, scale, forearm_len, forearm_r)
    depth = np.full((rows, cols), np.inf, np.float32)
    _zbuffer(depth, a, b, radii)
    hand_mask = np.isfinite(depth)

    appearance = int(scene.integers(3)) if ood_kind == "appearance" else -1
    # Background: nothing (no reading) or a tilted wall beyond 700 mm, maybe with boxes.
    palm_z = float(xyz[0, 2])
    gu, gv = uniform(-1.0, 1.0, scene), uniform(-1.0, 1.0, scene)  # wall tilt, mm per pixel
    if appearance == 2:  # close clutter right behind the hand
        wall = palm_z + uniform(70, 160, scene)
        use_wall = True
    else:  # nearest point of the wall beyond 705 mm
        wall = uniform(705, 1400, scene) + abs(gu) * cols / 2 + abs(gv) * rows / 2
        use_wall = scene.uniform() < 0.6
    if use_wall:
        plane = (wall + gu * (arange(cols) - cols / 2)
                 + gv * (arange(rows) - rows / 2)[:, None])
        np.minimum(depth, plane, out=depth)
        nbox = int(scene.integers(0, 4)) if appearance != 2 else int(scene.integers(4, 9))
        for _ in range(nbox):
            bz = uniform(705, wall, scene) if appearance != 2 else uniform(palm_z + 40, wall, scene)
            x0, y0 = uniform(-40, cols, scene), uniform(-40, rows, scene)
            w, h = uniform(20, 140, scene), uniform(20, 140, scene)
            box = bbox(x0, x0 + w, y0, y0 + h, rows, cols)
            if box is not None:
                y0_, y1_, x0_, x1_ = box
                np.minimum(depth[y0_:y1_, x0_:x1_], np.float32(bz),
                           out=depth[y0_:y1_, x0_:x1_])
    # Parallax shadow: pixels just left of the hand see the wall but not the projector.
    valid = np.isfinite(depth)
    holes = np.zeros((rows, cols), bool)
    shift = int(scene.integers(0, 6))
    if shift and use_wall:
        shadow = np.zeros_like(hand_mask)
        shadow[:, :-shift] = hand_mask[:, shift:]
        holes |= shadow & ~hand_mask
    # Holes at depth edges.
    d_fill = np.where(valid, depth, np.float32(0.0))
    edge = np.zeros((rows, cols), bool)
    jump = np.abs(np.diff(d_fill, axis=1)) > 12.0
    edge[:, 1:] |= jump
    edge[:, :-1] |= jump
    jump = np.abs(np.diff(d_fill, axis=0)) > 12.0
    edge[1:] |= jump
    edge[:-1] |= jump
    edge &= valid
    n_edge = int(edge.sum())
    p_edge = uniform(0.2, 0.6, scene)
    drop = scene.random(n_edge) < p_edge
    holes[np.nonzero(edge)[0][drop], np.nonzero(edge)[1][drop]] = True
    # Small random clusters of missing pixels, mostly on the hand; large ones for OOD.
    uv = joints[:, :2]
    lo, hi = uv.min(0) - 15, uv.max(0) + 15
    for _ in range(int(scene.integers(2, 12))):
        cx, cy = uniform(lo[0], hi[0], scene), uniform(lo[1], hi[1], scene)
        _disc_mask(holes, cx, cy, uniform(0.5, 3.0, scene), uniform(0.5, 3.0, scene))
    if appearance == 1:  # large holes over the hand
        for _ in range(int(scene.integers(3, 8))):
            cx, cy = uniform(lo[0], hi[0], scene), uniform(lo[1], hi[1], scene)
            _disc_mask(holes, cx, cy, uniform(8, 25, scene), uniform(8, 25, scene))
    sigma = uniform(1.0, 3.0, scene) if appearance != 0 else uniform(8.0, 20.0, scene)
    noise = scene.standard_normal((rows, cols), np.float32) * np.float32(sigma)
    out = np.where(valid & ~holes, depth + noise, np.float32(0.0))
    depth_u16 = np.clip(np.rint(out), 0, 65535).astype(np.uint16)
    return {
        "id": f"synthetic_hand/{seed}/{index:07d}",
        "depth": depth_u16,
        "joints": joints.astype(np.float32),
        "visibility": np.ones(NUM_HAND_JOINTS, np.int8),
        "ood_kind": ood_kind,
    }


def hand_example(seed: int, index: int, *, ood_kind: str = "none",
                 pose: Optional[np.ndarray] = None) -> dict:
    """One synthetic depth frame of a hand, a pure function of (seed, index, ood_kind, pose).

    Args:
      seed, index: non-negative ints (`np.random.default_rng([seed, index, stream, ood])`).
      ood_kind: one of `OOD_KINDS`.
      pose: optional (16, 3) icvl16 (u px, v px, d mm) joints in ICVL's frame to render.
    Returns a dict: `id` str; `depth` uint16 (240, 320) mm, 0 = no reading, camera
    `HAND_INTRINSICS`; `joints` float32 (16, 3) (u px, v px, d mm = z of the joint's centre);
    `visibility` int8 (16,) all 1; `ood_kind` str.
    """
    return _hand(seed, index, ood_kind, pose)


def hand_examples(seed: int, num: int, *, ood_fraction: float = 0.0, start: int = 0,
                  poses: Optional[Sequence[np.ndarray]] = None) -> Iterator[dict]:
    """Examples `start`..`num - 1` of the `num`-example hand set (see `human_examples`)."""
    kinds = assign_ood(num, ood_fraction, seed)
    for i in range(int(start), int(num)):
        pose = None if poses is None else poses[i % len(poses)]
        yield hand_example(seed, i, ood_kind=str(kinds[i]), pose=pose)
