"""Built-in synthetic pose datasets: rendered people (RGB) and hands (depth), pure numpy.

These are the default data when no real data is installed: the whole active-learning simulation
runs on them on a CPU, with no download. Every example is a pure function of
(seed, index, arguments), drawn from `np.random.default_rng([seed, index, stream])`, so a
builder or a data loader can make example i alone (random access) and two calls give the same
bytes. A fraction of each set is out-of-distribution (OOD), flagged per example, so an AL
simulator can measure whether a method finds what the model has not seen:

  * 'none': in distribution;
  * 'rare_pose': a pose outside the normal range (people: upside down, cartwheels, splits and
    limbs beyond the usual joint limits; hands: palm facing away, fingers pointing down,
    hyperextended or over-flexed fingers);
  * 'appearance': a visual shift with an ordinary pose (people: greyscale, inverted colours or a
    high-frequency stripe texture; hands: heavy sensor noise, large holes, or a cluttered
    background close behind the hand). In-distribution examples never use these.

Usage::

    from vl4pose_jax.data import synthetic
    ex = synthetic.human_example(seed=0, index=7)            # one example, random access
    kinds = synthetic.assign_ood(1000, 0.1, seed=0)          # the OOD kind of each index
    for ex in synthetic.human_examples(0, 1000, ood_fraction=0.1):
        ex['image']        # uint8 (S, S, 3)
        ex['joints']       # float32 (14, 2) (x, y) = (column, row) pixels, lsp14 order
        ex['visibility']   # int8 (14,): 1 visible, 0 occluded, -1 absent
    hand = synthetic.hand_example(0, 3)
    hand['depth']          # uint16 (240, 320) mm, 0 = no reading; ICVL intrinsics
    hand['joints']         # float32 (16, 3) (u px, v px, d mm), icvl16 order

Conventions. Pixel centres are at integer coordinates (pixel (row i, column j) is centred on
x = j, y = i), as in `vl4pose_jax.heatmaps`. Humans use `skeletons.lsp14` ("l" = the person's
left; people face the camera, so an upright person's left side is on the image's right).
Hands use `skeletons.icvl16` and ICVL's camera (`HAND_INTRINSICS`, `HAND_IMAGE_SHAPE`); a joint's
d is the depth (camera z, mm) of its 3-D centre, not of the skin in front of it.

Human occlusion is exact: joint j is occluded (visibility 0) iff the shape on top at its pixel
(the pixel nearest the joint) is a shape drawn after j's first shape (the first body part
that contains j) and is not one of the parts that contain j (e.g. an occluder, or a forearm
crossing the other hip). All human joints lie inside the image with a margin; all hand joints
project inside the frame.

`pose=` renders a given pose instead of a sampled one (real annotations with synthetic
appearance). Humans: (14, 2) pixel positions at any scale, NaN rows = absent joints; they are
normalised by `normalise_human_pose` (bounding-box centre to the image centre, larger box
side scaled to `POSE_FILL` of the image) and absent joints come back as NaN with visibility -1.
Hands: (16, 3) uvd joints in ICVL's frame, rendered where they are and returned unchanged.
With `ood_kind='rare_pose'` a given pose is first turned (people: rotated by 150 to 210
degrees about its box centre; hands: turned 180 degrees about the vertical axis through the
palm, then shifted back into the frame if needed), so the returned joints differ from the input.
"""
from __future__ import annotations

import functools
import math
from typing import Iterator, Optional, Sequence

import numpy as np

OOD_KINDS = ("none", "rare_pose", "appearance")
HAND_INTRINSICS = (241.42, 241.42, 160.0, 120.0)  # fx, fy, cx, cy (ICVL)
HAND_IMAGE_SHAPE = (240, 320)  # rows, columns
POSE_FILL = 0.8  # a given human pose's larger box side spans this fraction of (S - 1)

NUM_HUMAN_JOINTS = 14
NUM_HAND_JOINTS = 16

# Random streams (the last entry of the seed sequence); each is drawn in a fixed order.
_S_HUMAN_POSE, _S_HUMAN_SCENE = 1, 2
_S_HAND_POSE, _S_HAND_SCENE = 11, 12
_S_ASSIGN = 99
_OOD_CODE = {k: i for i, k in enumerate(OOD_KINDS)}


def _rng(seed: int, index: int, stream: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), int(stream), _OOD_CODE[kind]])


def _check_kind(ood_kind: str) -> None:
    if ood_kind not in OOD_KINDS:
        raise ValueError(f"ood_kind must be one of {OOD_KINDS}, got {ood_kind!r}")


def assign_ood(num: int, ood_fraction: float, seed: int) -> np.ndarray:
    """OOD kind of each of `num` examples: a (num,) array of str from `OOD_KINDS`.

    Exactly floor(ood_fraction * num + 0.5) examples are OOD: the first half of them (rounded
    down) 'rare_pose', the rest 'appearance', at positions from a permutation seeded by `seed`.
    """
    num = int(num)
    if not 0.0 <= ood_fraction <= 1.0:
        raise ValueError(f"ood_fraction must be in [0, 1], got {ood_fraction}")
    kinds = np.full(num, "none", dtype="<U10")
    num_ood = int(math.floor(ood_fraction * num + 0.5))
    if num_ood:
        order = np.random.default_rng([int(seed), _S_ASSIGN]).permutation(num)
        num_rare = num_ood // 2
        kinds[order[:num_rare]] = "rare_pose"
        kinds[order[num_rare:num_ood]] = "appearance"
    return kinds


# ---------------------------------------------------------------------------------------------
# Small drawing helpers (float32 images, bounding-box local, no loops over pixels).

@functools.lru_cache(maxsize=16)
def _arange(n: int) -> np.ndarray:
    a = np.arange(n, dtype=np.float32)
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=32)
def _interp_matrix(n: int, k: int) -> np.ndarray:
    """(n, k) bilinear weights that upsample k control values to n samples."""
    pos = (np.arange(n) + 0.5) * (k - 1) / n
    lo = np.minimum(np.floor(pos).astype(int), k - 2)
    frac = pos - lo
    m = np.zeros((n, k), np.float32)
    m[np.arange(n), lo] = 1 - frac
    m[np.arange(n), lo + 1] = frac
    m.setflags(write=False)
    return m


def _upsample_grid(grid_CxKxK: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(C, rows, cols) float32 bilinear upsampling of a (C, k, k) grid of control values."""
    k = grid_CxKxK.shape[1]
    my, mx = _interp_matrix(rows, k), _interp_matrix(cols, k)
    return my @ (grid_CxKxK.astype(np.float32) @ mx.T)


def _smooth_field(rng, rows: int, cols: int, k: int, channels: int = 1) -> np.ndarray:
    """(channels, rows, cols) smooth random field in about [-1, 1] (bilinear k x k grid)."""
    return _upsample_grid(rng.uniform(-1.0, 1.0, (channels, k, k)), rows, cols)


def _bbox(xmin, xmax, ymin, ymax, rows, cols):
    x0, x1 = max(int(math.floor(xmin)), 0), min(int(math.ceil(xmax)) + 1, cols)
    y0, y1 = max(int(math.floor(ymin)), 0), min(int(math.ceil(ymax)) + 1, rows)
    if x0 >= x1 or y0 >= y1:
        return None
    return y0, y1, x0, x1


def _segment_geometry(ax, ay, bx, by, box):
    """Per pixel of `box`: offset (ex, ey) from the closest point of segment AB, and t."""
    y0, y1, x0, x1 = box
    ax, ay = float(ax), float(ay)  # Python floats keep the float32 arrays float32
    px = _arange(x1)[x0:] - ax
    py = (_arange(y1)[y0:] - ay)[:, None]
    dx, dy = float(bx) - ax, float(by) - ay
    l2 = dx * dx + dy * dy
    if l2 > 1e-12:
        t = px * (dx / l2) + py * (dy / l2)
        np.maximum(t, 0.0, out=t)
        np.minimum(t, 1.0, out=t)
    else:
        t = np.zeros((y1 - y0, x1 - x0), np.float32)
    return px - t * dx, py - t * dy, t


class _Canvas:
    """An RGB float image (planar: channels first, so per-row loops are long) plus a label
    buffer (the id of the shape on top at each pixel)."""

    def __init__(self, image_3xSxS):
        self.image = image_3xSxS  # float32 (3, S, S), 0..255
        self.size = image_3xSxS.shape[1]
        self.labels = np.zeros(image_3xSxS.shape[1:], np.int16)
        self.joints_of = [0]  # bit mask of the human joints each shape contains; 0 = background
        self.labelling = False  # background shapes stay label 0

    def paint(self, box, alpha, colour, joints_mask=0, weight=None):
        """Blend `colour` ((h, w, 3) or (3,)) times `weight` (h, w) into `box` with `alpha`
        (h, w) or None (opaque); label pixels with alpha >= 0.5 when labelling."""
        y0, y1, x0, x1 = box
        region = self.image[:, y0:y1, x0:x1]
        colour = colour.reshape(-1, 1, 1) if colour.ndim == 1 else colour
        if alpha is None:
            region[...] = colour if weight is None else weight * colour
        else:
            region *= 1.0 - alpha
            region += (alpha if weight is None else alpha * weight) * colour
        if not self.labelling:
            return 0
        shape_id = len(self.joints_of)
        self.joints_of.append(joints_mask)
        if alpha is None:
            self.labels[y0:y1, x0:x1] = shape_id
        else:
            self.labels[y0:y1, x0:x1][alpha >= 0.5] = shape_id
        return shape_id

    def capsule(self, a, b, radius, colour, joints_mask=0):
        """All pixels within `radius` of segment ab, antialiased, shaded like a cylinder."""
        s = self.size
        r = max(float(radius), 1.0)
        box = _bbox(min(a[0], b[0]) - r - 1, max(a[0], b[0]) + r + 1,
                    min(a[1], b[1]) - r - 1, max(a[1], b[1]) + r + 1, s, s)
        if box is None:
            return None
        ex, ey, _ = _segment_geometry(a[0], a[1], b[0], b[1], box)
        u = ex * ex
        u += ey * ey
        u *= -1.0 / (r * r)
        u += 1.0  # 1 - (d / r)^2
        # Coverage (r^2 - d^2) / 2r + 1/2 ~ r - d + 1/2 near the rim.
        alpha = u * (0.5 * r)
        alpha += 0.5
        np.maximum(alpha, 0.0, out=alpha)
        np.minimum(alpha, 1.0, out=alpha)
        np.maximum(u, 0.0, out=u)
        np.sqrt(u, out=u)
        u *= 0.45
        u += 0.6  # bright on the axis, darker at the rim
        return self.paint(box, alpha, np.asarray(colour, np.float32), joints_mask, weight=u)

    def ellipse(self, centre, axis_angle, semi_a, semi_b, colour, joints_mask=0, hard=False,
                top_colour=None, shaded=True):
        """Ellipse with semi-axes semi_a along direction axis_angle (radians) and semi_b across.

        `hard`: no antialiasing (alpha 0 or 1). With `top_colour`, the part towards +axis
        beyond about 0.15 semi_a gets that colour (hair).
        """
        s = self.size
        semi_a, semi_b = max(float(semi_a), 1.0), max(float(semi_b), 1.0)
        ext = max(semi_a, semi_b) + 1
        box = _bbox(centre[0] - ext, centre[0] + ext, centre[1] - ext, centre[1] + ext, s, s)
        if box is None:
            return None
        y0, y1, x0, x1 = box
        px = _arange(x1)[x0:] - float(centre[0])
        py = (_arange(y1)[y0:] - float(centre[1]))[:, None]
        c, sn = math.cos(axis_angle), math.sin(axis_angle)
        ua = px * (c / semi_a) + py * (sn / semi_a)
        ub = py * (c / semi_b) - px * (sn / semi_b)
        q2 = ua * ua
        q2 += ub * ub
        if hard:
            alpha = (q2 <= 1.0).astype(np.float32)
        else:
            alpha = (1.0 - np.sqrt(q2)) * min(semi_a, semi_b) + 0.5
            np.maximum(alpha, 0.0, out=alpha)
            np.minimum(alpha, 1.0, out=alpha)
        col = np.asarray(colour, np.float32)
        if top_colour is not None:
            w = np.clip((ua - 0.15) * 6.0, 0.0, 1.0)
            top = np.asarray(top_colour, np.float32)
            col = col[:, None, None] + w * (top - col)[:, None, None]
        weight = None
        if shaded:
            weight = 1.0 - q2
            np.maximum(weight, 0.0, out=weight)
            np.sqrt(weight, out=weight)
            weight *= 0.4
            weight += 0.6
        return self.paint(box, alpha, col, joints_mask, weight)

    def polygon(self, points, pad, colour, joints_mask=0):
        """Convex hull of `points` (N, 2), grown by `pad` pixels, shaded towards its rim."""
        pts = _convex_hull(np.asarray(points, np.float64))
        s = self.size
        if len(pts) < 3:
            return None
        box = _bbox(pts[:, 0].min() - pad - 1, pts[:, 0].max() + pad + 1,
                    pts[:, 1].min() - pad - 1, pts[:, 1].max() + pad + 1, s, s)
        if box is None:
            return None
        y0, y1, x0, x1 = box
        px = _arange(x1)[x0:]
        py = _arange(y1)[y0:][:, None]
        sd = None
        for i in range(len(pts)):
            (ax, ay), (bx, by) = pts[i], pts[(i + 1) % len(pts)]
            length = math.hypot(bx - ax, by - ay)
            if length < 1e-9:
                continue
            nx, ny = -(by - ay) / length, (bx - ax) / length  # inward (left) normal
            d = (px - float(ax)) * nx + (py - float(ay)) * ny
            sd = d if sd is None else np.minimum(sd, d)
        if sd is None:
            return None
        sd += pad
        alpha = np.clip(sd + 0.5, 0.0, 1.0)
        depth = max(float(sd.max()), 1.0)
        shade = 0.62 + 0.38 * np.sqrt(np.clip(sd * (2.0 / depth), 0.0, 1.0))
        return self.paint(box, alpha, np.asarray(colour, np.float32), joints_mask, shade)

    def rect(self, x0, y0, x1, y1, colour, joints_mask=0, gradient=0.0):
        """Opaque axis-aligned rectangle of pixels x0 <= x <= x1 - 1, y0 <= y <= y1 - 1."""
        s = self.size
        box = _bbox(x0, x1 - 1, y0, y1 - 1, s, s)
        if box is None:
            return None
        weight = None
        if gradient:
            by0, by1, bx0, bx1 = box
            weight = np.broadcast_to(
                1.0 + gradient * np.linspace(-1, 1, by1 - by0, dtype=np.float32)[:, None],
                (by1 - by0, bx1 - bx0))
        return self.paint(box, None, np.asarray(colour, np.float32), joints_mask, weight)


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain), vertices in positive-area order."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return np.asarray(pts, np.float64).reshape(-1, 2)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    # Positive signed area in (x, y): the interior is left of each edge, (-dy, dx) points in.
    return np.asarray(lower[:-1] + upper[:-1], np.float64)


def _hsv_to_rgb(h, s, v):
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _make_palette() -> np.ndarray:
    """The synthetic world's palette: (32, 3) saturated RGB colours in 0..255. One palette for
    every seed and split, so that train, pool and test share one in-distribution appearance
    (only 'appearance' OOD examples are colour-shifted)."""
    rng = np.random.default_rng([0, 0xC0105])
    cols = [_hsv_to_rgb(rng.uniform(), rng.uniform(0.35, 0.9), rng.uniform(0.3, 0.95))
            for _ in range(32)]
    pal = np.asarray(cols, np.float32) * 255.0
    pal.setflags(write=False)
    return pal


_PALETTE = _make_palette()

_SKIN = np.asarray([[255, 219, 172], [241, 194, 125], [224, 172, 105], [198, 134, 66],
                    [141, 85, 36], [92, 56, 32], [234, 192, 160]], np.float32)
_HAIR = np.asarray([[20, 15, 10], [60, 40, 25], [110, 75, 40], [200, 160, 90],
                    [150, 50, 20], [90, 90, 90]], np.float32)


# ---------------------------------------------------------------------------------------------
# Human poses. Body units: a standing person is about 1 tall (head top to the floor).

_HJ = {n: i for i, n in enumerate(("head", "neck", "lsho", "lelb", "lwri", "rsho", "relb",
                                   "rwri", "lhip", "lknee", "lankl", "rhip", "rknee",
                                   "rankl"))}
_NOMINAL_HEIGHT = 0.98
# Nominal lengths (body units) of segments used to estimate a given pose's size.
_SIZE_SEGMENTS = ((0, 1, 0.16), (2, 3, 0.17), (5, 6, 0.17), (3, 4, 0.15), (6, 7, 0.15),
                  (8, 9, 0.245), (11, 12, 0.245), (9, 10, 0.245), (12, 13, 0.245),
                  (2, 8, 0.31), (5, 11, 0.31))


def _u(lo, hi, rng):
    return float(rng.uniform(lo, hi))


def _sample_human_pose(rng, rare: bool) -> np.ndarray:
    """(14, 2) joints in body units, neck at the origin, y down; person faces the camera."""
    deg = math.radians
    yaw = _u(-60, 60, rng)
    width = max(abs(math.cos(deg(yaw))), 0.3)
    head_len = 0.16 * _u(0.9, 1.1, rng)
    torso_len = 0.30 * _u(0.9, 1.1, rng)
    sho_w = 0.115 * _u(0.85, 1.15, rng) * width
    hip_w = 0.08 * _u(0.85, 1.15, rng) * width
    lengths = {k: v * _u(0.9, 1.1, rng) for k, v in
               (("uarm", 0.17), ("farm", 0.15), ("thigh", 0.245), ("shin", 0.245))}
    head_tilt = _u(-20, 20, rng)
    bend = _u(-10, 10, rng)

    mode = rng.integers(3) if rare else -1  # 0 inverted, 1 cartwheel, 2 extreme articulation
    if not rare:
        lean = float(np.clip(rng.normal(0.0, 12.0), -30.0, 30.0))
    elif mode == 0:
        lean = 180.0 + _u(-30, 30, rng)
    elif mode == 1:
        lean = _u(70, 150, rng) * (1 if rng.uniform() < 0.5 else -1)
    else:
        lean = _u(-25, 25, rng)

    def foreshorten():
        return 1.0 if rng.uniform() < 0.5 else _u(0.55, 1.0, rng)

    def arm_angles():
        if rare and (mode == 2 or rng.uniform() < 0.5):
            # Beyond the usual range: behind the back/over to the other side, hyperextended.
            a = _u(175, 250, rng) if rng.uniform() < 0.5 else _u(-110, -50, rng)
            e = _u(150, 200, rng) * (1 if rng.uniform() < 0.5 else -1)
            return a, e
        p = rng.uniform()
        a = _u(-20, 45, rng) if p < 0.5 else (_u(45, 120, rng) if p < 0.85 else _u(120, 170, rng))
        if rng.uniform() < 0.5:
            e = _u(-20, 30, rng)
        else:
            e = _u(30, 150, rng) * (-1 if rng.uniform() < 0.7 else 1)
        return a, e

    def leg_angles():
        if rare and (mode == 2 or rng.uniform() < 0.5):
            h = _u(100, 170, rng)  # splits / kicks above the hip
            k = _u(-30, 30, rng) if rng.uniform() < 0.5 else _u(120, 160, rng)
            return h, k
        p = rng.uniform()
        h = _u(-12, 25, rng) if p < 0.7 else (_u(25, 60, rng) if p < 0.9 else _u(60, 85, rng))
        k = _u(-10, 15, rng) if rng.uniform() < 0.6 else \
            _u(15, 110, rng) * (1 if rng.uniform() < 0.5 else -1)
        return h, k

    def direction(side, angle):  # angle from "down", positive = outward on `side`
        r = deg(angle)
        return np.array([side * math.sin(r), math.cos(r)])

    j = np.zeros((14, 2))
    j[_HJ["head"]] = head_len * np.array([math.sin(deg(head_tilt)), -math.cos(deg(head_tilt))])
    b = deg(bend)
    axis = np.array([math.sin(b), math.cos(b)])
    across = np.array([math.cos(b), -math.sin(b)])  # towards the person's left (image right)
    pelvis = torso_len * axis
    for side, pre in ((1, "l"), (-1, "r")):
        sho = np.array([side * sho_w, 0.035])
        hip = pelvis + side * hip_w * across
        a, e = arm_angles()
        elb = sho + lengths["uarm"] * foreshorten() * direction(side, a)
        wri = elb + lengths["farm"] * foreshorten() * direction(side, a + e)
        h, k = leg_angles()
        knee = hip + lengths["thigh"] * foreshorten() * direction(side, h + bend * side)
        ankle = knee + lengths["shin"] * foreshorten() * direction(side, h + k + bend * side)
        for name, p in (("sho", sho), ("elb", elb), ("wri", wri), ("hip", hip),
                        ("knee", knee), ("ankl", ankle)):
            j[_HJ[pre + name]] = p
    c, s = math.cos(deg(lean)), math.sin(deg(lean))
    rot = np.array([[c, -s], [s, c]])
    return j @ rot.T


def normalise_human_pose(pose: np.ndarray, image_size: int) -> np.ndarray:
    """Fit a (14, 2) pixel pose (NaN rows absent) into an image_size square.

    The bounding box of the present joints is centred on ((S-1)/2, (S-1)/2) and scaled so its
    larger side spans `POSE_FILL` * (S - 1); absent rows stay NaN. Returns float64 (14, 2).
    """
    pose = np.asarray(pose, np.float64)
    if pose.shape != (NUM_HUMAN_JOINTS, 2):
        raise ValueError(f"human pose must be (14, 2), got {pose.shape}")
    present = np.all(np.isfinite(pose), axis=1)
    if not present.any():
        raise ValueError("human pose has no present (finite) joint")
    lo, hi = pose[present].min(0), pose[present].max(0)
    extent = float((hi - lo).max())
    if extent < 1e-9:
        raise ValueError("human pose needs at least two distinct present joints")
    scale = POSE_FILL * (image_size - 1) / extent
    out = (pose - (lo + hi) / 2) * scale + (image_size - 1) / 2
    out[~present] = np.nan
    return out


def _body_unit(joints_px: np.ndarray) -> float:
    """Estimated standing height (pixels) of a pose, from its segment lengths."""
    ratios = []
    for a, b, nominal in _SIZE_SEGMENTS:
        d = joints_px[b] - joints_px[a]
        if np.all(np.isfinite(d)):
            ratios.append(math.hypot(d[0], d[1]) / nominal)
    if not ratios:
        extent = np.nanmax(joints_px, 0) - np.nanmin(joints_px, 0)
        return float(np.nanmax(extent)) / 0.9
    # Foreshortening only shortens segments: trust the longer ones.
    return float(np.percentile(ratios, 75))


def _fit_sampled_pose(body: np.ndarray, rng, size: int) -> tuple[np.ndarray, float]:
    """Scale body units to pixels (standing height 60-85 % of the image) and place the pose
    inside with a 5 % margin. Done in image units (0..1 across the image, pixel x = u S - 1/2)
    so that the same example at another size is the same scene."""
    margin = 0.05
    scale = _u(0.60, 0.85, rng) / _NOMINAL_HEIGHT
    lo, hi = body.min(0), body.max(0)
    scale = min(scale, (1.0 - 2 * margin) / max(float((hi - lo).max()), 1e-9))
    first = margin - lo * scale
    room = np.maximum((1.0 - margin - hi * scale) - first, 0.0)  # >= 0 up to rounding
    offset = first + room * rng.uniform(size=2)
    return (body * scale + offset) * size - 0.5, scale * _NOMINAL_HEIGHT * size


def _bit(*names):
    m = 0
    for n in names:
        m |= 1 << _HJ[n]
    return m


def _render_person(canvas: _Canvas, joints: np.ndarray, unit: float, look: dict) -> None:
    """Draw a person (capsules, torso polygon, head ellipse) back to front."""
    J = joints
    ok = np.all(np.isfinite(J), axis=1)

    def P(name):
        return J[_HJ[name]]

    def has(*names):
        return all(ok[_HJ[n]] for n in names)

    shirt, trousers, skin, hair, shoes = (look[k] for k in
                                          ("shirt", "trousers", "skin", "hair", "shoes"))
    forearm_col = shirt if look["long_sleeves"] else skin
    shin_col = skin if look["shorts"] else trousers
    near = look["near"]  # 'l' or 'r'
    far = "r" if near == "l" else "l"
    r_uarm, r_farm, r_thigh, r_shin = (f * unit for f in (0.032, 0.027, 0.046, 0.036))

    # Body axis; feet point sideways (either way) from the ankles.
    if has("neck", "lhip", "rhip"):
        down = (P("lhip") + P("rhip")) / 2 - P("neck")
    elif has("lsho", "lhip"):
        down = P("lhip") - P("lsho")
    else:
        down = np.array([0.0, 1.0])
    down = down / max(np.linalg.norm(down), 1e-9)
    leftward = np.array([down[1], -down[0]])  # the person's left = image right when upright

    def leg(side):
        hip, knee, ank = side + "hip", side + "knee", side + "ankl"
        if has(hip, knee):
            canvas.capsule(P(hip), P(knee), r_thigh, trousers, _bit(hip, knee))
        if has(knee, ank):
            canvas.capsule(P(knee), P(ank), r_shin, shin_col, _bit(knee, ank))
        if has(ank):
            toe_dir = down * 0.3 + leftward * (look["toe_sign"] * 0.95)
            toe = P(ank) + toe_dir * unit * look["foot_len"]
            canvas.capsule(P(ank), toe, 0.026 * unit, shoes, _bit(ank))

    def arm(side):
        sho, elb, wri = side + "sho", side + "elb", side + "wri"
        if has(sho, elb):
            canvas.capsule(P(sho), P(elb), r_uarm, shirt, _bit(sho, elb))
        if has(elb, wri):
            canvas.capsule(P(elb), P(wri), r_farm, forearm_col, _bit(elb, wri))
        if has(wri):
            d = P(wri) - P(elb) if has(elb) else down
            d = d / max(np.linalg.norm(d), 1e-9)
            canvas.capsule(P(wri), P(wri) + d * 0.055 * unit, 0.03 * unit, skin, _bit(wri))

    def torso():
        corners = [n for n in ("lsho", "rsho", "rhip", "lhip") if has(n)]
        mask = _bit(*corners) | (_bit("neck") if has("neck") else 0)
        if len(corners) >= 3:
            canvas.polygon(np.stack([P(n) for n in corners]), 0.03 * unit, shirt, mask)
        elif len(corners) == 2:
            canvas.capsule(P(corners[0]), P(corners[1]), 0.06 * unit, shirt, mask)

    def head():
        if has("neck", "head"):
            axis = P("head") - P("neck")
            length = max(float(np.linalg.norm(axis)), 1e-6)
            u = axis / length
            centre = P("head") - u * 0.42 * length
            neck_top = P("neck") + u * 0.45 * length
            canvas.capsule(P("neck"), neck_top, 0.032 * unit, skin, _bit("neck", "head"))
            canvas.ellipse(centre, math.atan2(u[1], u[0]), 0.45 * length, 0.33 * length,
                           skin, _bit("head"), top_colour=hair)
        elif has("head"):
            canvas.ellipse(P("head"), 0.0, 0.06 * unit, 0.06 * unit, skin, _bit("head"))

    leg(far)
    leg(near)
    if look["far_arm_behind"]:
        arm(far)
    torso()
    head()
    if not look["far_arm_behind"]:
        arm(far)
    arm(near)


def _first_shapes(canvas: _Canvas, num_joints: int) -> np.ndarray:
    """(J,) id of the first labelled shape containing each joint (len(shapes) if none)."""
    masks = np.asarray(canvas.joints_of, np.int64)
    contains = (masks[:, None] >> np.arange(num_joints)) & 1  # (shapes, J)
    return np.where(contains.any(0), contains.argmax(0), len(masks))


def _visibility_from_labels(canvas: _Canvas, joints: np.ndarray, first_id: np.ndarray):
    """(J,) int8: -1 absent; 0 where the shape on top at the joint's nearest pixel was drawn
    after the joint's first shape and does not contain the joint; else 1."""
    s = canvas.size
    present = np.all(np.isfinite(joints), axis=1)
    cols = np.clip(np.rint(np.where(present, joints[:, 0], 0)), 0, s - 1).astype(np.intp)
    rows = np.clip(np.rint(np.where(present, joints[:, 1], 0)), 0, s - 1).astype(np.intp)
    top = canvas.labels[rows, cols].astype(np.int64)
    contains = (np.asarray(canvas.joints_of, np.int64)[top] >> np.arange(len(joints))) & 1
    occluded = (top > first_id) & (contains == 0)
    return np.where(present, np.where(occluded, 0, 1), -1).astype(np.int8)


def _background(rng, size: int, palette: np.ndarray) -> _Canvas:
    """Gradient + smooth colour noise + clutter (rectangles, blobs, sticks, a floor)."""
    c0, c1 = palette[rng.integers(32)], palette[rng.integers(32)]
    theta = _u(0, 2 * math.pi, rng)
    # A linear gradient c0 -> c1 plus smooth colour noise, as one bilinear 5 x 5 grid (bilinear
    # interpolation reproduces the linear ramp exactly).
    k = 5
    nodes = np.linspace(0.0, 1.0, k)
    t = nodes[None, :] * math.cos(theta) + nodes[:, None] * math.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
    grid = (c0[:, None, None] + t[None] * (c1 - c0)[:, None, None]
            + rng.uniform(-1.0, 1.0, (3, k, k)) * _u(10, 40, rng))
    image = _upsample_grid(grid, size, size)
    canvas = _Canvas(image)
    if rng.uniform() < 0.5:  # floor
        top = _u(0.55, 0.85, rng) * size
        canvas.rect(0, top, size, size, palette[rng.integers(32)] * 0.8, gradient=0.15)
    for _ in range(int(rng.integers(3, 10))):
        kind = rng.integers(3)
        col = palette[rng.integers(32)] * np.float32(_u(0.6, 1.1, rng))
        cx, cy = _u(-0.1, 1.1, rng) * size, _u(-0.1, 1.1, rng) * size
        w, h = _u(0.05, 0.4, rng) * size, _u(0.05, 0.4, rng) * size
        if kind == 0:
            canvas.rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, col,
                        gradient=_u(-0.2, 0.2, rng))
        elif kind == 1:
            canvas.ellipse((cx, cy), _u(0, math.pi, rng), w / 2, h / 2, col, shaded=False)
        else:
            ang = _u(0, 2 * math.pi, rng)
            end = (cx + w * math.cos(ang), cy + w * math.sin(ang))
            canvas.capsule((cx, cy), end, _u(0.01, 0.04, rng) * size, col)
    return canvas


def _person_look(rng, palette) -> dict:
    def pal():
        return palette[rng.integers(32)] * np.float32(_u(0.85, 1.15, rng))
    return dict(
        shirt=pal(), trousers=pal() * np.float32(0.8),
        skin=_SKIN[rng.integers(len(_SKIN))] * np.float32(_u(0.9, 1.05, rng)),
        hair=_HAIR[rng.integers(len(_HAIR))], shoes=pal() * np.float32(0.4),
        long_sleeves=bool(rng.uniform() < 0.5), shorts=bool(rng.uniform() < 0.3),
        near="l" if rng.uniform() < 0.5 else "r", far_arm_behind=bool(rng.uniform() < 0.5),
        toe_sign=1.0 if rng.uniform() < 0.5 else -1.0, foot_len=_u(0.03, 0.07, rng))


def _human(seed: int, index: int, image_size: int, ood_kind: str, pose, occluders: bool):
    """Everything for one human example; `occluders=False` (tests) skips drawing occluders
    without changing any other draw."""
    _check_kind(ood_kind)
    size = int(image_size)
    if size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    palette = _PALETTE
    scene = _rng(seed, index, _S_HUMAN_SCENE, ood_kind)
    if pose is None:
        body = _sample_human_pose(_rng(seed, index, _S_HUMAN_POSE, ood_kind),
                                  rare=ood_kind == "rare_pose")
        joints, unit = _fit_sampled_pose(body, scene, size)
    else:
        given = np.asarray(pose, np.float64)
        if given.shape != (NUM_HUMAN_JOINTS, 2):
            raise ValueError(f"human pose must be (14, 2), got {given.shape}")
        present = np.all(np.isfinite(given), axis=1)
        if not present.any():
            raise ValueError("human pose has no present (finite) joint")
        if ood_kind == "rare_pose":
            centre = (given[present].min(0) + given[present].max(0)) / 2
            ang = math.radians(_u(150, 210, scene))
            rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
            given = (given - centre) @ rot.T + centre
        else:
            _u(150, 210, scene)  # keep the draw order identical
        joints = normalise_human_pose(given, size)
        unit = _body_unit(joints)

    look = _person_look(scene, palette)
    canvas = _background(scene, size, palette)
    canvas.labelling = True
    _render_person(canvas, joints, unit, look)
    first_id = _first_shapes(canvas, NUM_HUMAN_JOINTS)  # each joint's layer

    # Occluders: hard-edged flat objects in front of the person, near a random joint.
    num_occ = 0 if scene.uniform() < 0.5 else (1 if scene.uniform() < 0.7 else 2)
    present = np.flatnonzero(np.all(np.isfinite(joints), axis=1))
    for _ in range(num_occ):
        j = present[scene.integers(len(present))]
        cx = joints[j, 0] + scene.normal(0.0, 0.06) * unit
        cy = joints[j, 1] + scene.normal(0.0, 0.06) * unit
        w, h = _u(0.06, 0.3, scene) * unit, _u(0.06, 0.3, scene) * unit
        col = palette[scene.integers(32)] * np.float32(_u(0.6, 1.0, scene))
        is_rect = scene.uniform() < 0.5
        ang = _u(0, math.pi, scene)
        if not occluders:
            continue
        if is_rect:
            canvas.rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, col)
        else:
            canvas.ellipse((cx, cy), ang, w / 2, h / 2, col, hard=True, shaded=False)

    visibility = _visibility_from_labels(canvas, joints, first_id)

    image = canvas.image
    # Global lighting variation and sensor noise.
    image *= 1.0 + _smooth_field(scene, size, size, 4) * _u(0.0, 0.15, scene)
    sigma = _u(1.0, 5.0, scene)
    image += scene.standard_normal((size, size), np.float32) * sigma
    if ood_kind == "appearance":
        mode = int(scene.integers(3))
        if mode == 0:  # greyscale
            grey = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
            image = np.broadcast_to(grey, image.shape)
        elif mode == 1:  # inverted colours
            image = 255.0 - image
        else:  # high-frequency stripes over everything
            period = _u(3.0, 7.0, scene) * size / 128.0
            ang = _u(0, math.pi, scene)
            xs = _arange(size)
            phase = (xs[None, :] * np.float32(math.cos(ang)) + xs[:, None] * np.float32(
                math.sin(ang))) * np.float32(2 * math.pi / period)
            image *= 0.75 + 0.35 * np.sign(np.sin(phase))
    image = np.clip(image, 0.0, 255.0).astype(np.uint8).transpose(1, 2, 0).copy()

    example = {
        "id": f"synthetic_human/{seed}/{index:07d}",
        "image": image,
        "joints": joints.astype(np.float32),
        "visibility": visibility,
        "ood_kind": ood_kind,
    }
    return example, canvas


def human_example(seed: int, index: int, *, image_size: int = 128, ood_kind: str = "none",
                  pose: Optional[np.ndarray] = None) -> dict:
    """One synthetic person, a pure function of (seed, index, image_size, ood_kind, pose).

    Args:
      seed, index: non-negative ints; the example is drawn from
        `np.random.default_rng([seed, index, stream, ood code])`.
      image_size: S, the side of the square image in pixels (>= 16).
      ood_kind: one of `OOD_KINDS`.
      pose: optional (14, 2) lsp14 (x, y) positions at any pixel scale, NaN rows absent, to
        render instead of a sampled pose (normalised by `normalise_human_pose`).
    Returns a dict: `id` str; `image` uint8 (S, S, 3); `joints` float32 (14, 2) (x, y) =
    (column, row) pixels, lsp14 order (NaN where absent); `visibility` int8 (14,) 1 visible,
    0 occluded, -1 absent; `ood_kind` str.
    """
    return _human(seed, index, image_size, ood_kind, pose, occluders=True)[0]


def human_examples(seed: int, num: int, *, image_size: int = 128, ood_fraction: float = 0.0,
                   start: int = 0, poses: Optional[Sequence[np.ndarray]] = None
                   ) -> Iterator[dict]:
    """Examples `start`..`num - 1` of the `num`-example set: `human_example(seed, i, ...)` with
    `ood_kind = assign_ood(num, ood_fraction, seed)[i]` and `pose = poses[i % len(poses)]`
    when `poses` is given. Skipping with `start` does not change any example."""
    kinds = assign_ood(num, ood_fraction, seed)
    for i in range(int(start), int(num)):
        pose = None if poses is None else poses[i % len(poses)]
        yield human_example(seed, i, image_size=image_size, ood_kind=str(kinds[i]), pose=pose)


# ---------------------------------------------------------------------------------------------
# Hands: a kinematic hand in camera millimetres, z-buffered capsules, a depth sensor model.

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
    scale = _u(0.85, 1.15, rng)
    joints = np.zeros((16, 3))
    normal = np.array([0.0, 0.0, -1.0])  # the palm side
    curl = _u(0.0, 1.0, rng) ** 1.5
    spread = _u(-0.3, 1.0, rng)
    extreme = rare_mode == 2
    for f in range(5):
        root = (_ROOTS[f] + rng.uniform(-3, 3, 3) * np.array([1, 1, 0.5])) * scale
        l1, l2 = _BONES[f] * scale * rng.uniform(0.92, 1.08, 2)
        joints[1 + 3 * f] = root
        if f == 0:  # thumb: opposition swings it across the palm, then the tip flexes
            opp = _u(0, 1, rng) * (0.7 if not extreme else 1.0) + (0.3 if extreme else 0.0)
            d1 = _unit((1 - opp) * _THUMB_BASE + opp * _THUMB_ACROSS)
            flex = _u(0, 55, rng) if not extreme else _u(70, 100, rng)
            side = _unit(normal + np.array([0.5, 0, 0]) - d1 * d1.dot(normal))
            d2 = math.cos(math.radians(flex)) * d1 + math.sin(math.radians(flex)) * side
        else:
            splay = np.array([root[0] * 0.012, -1.0, 0.0])
            abd = spread * 6.0 * (f - 2.5) + _u(-6, 6, rng)
            if extreme:
                abd = (f - 2.5) * _u(12, 20, rng)
            base = _rot("z", abd) @ _unit(splay)
            if extreme and rng.uniform() < 0.5:
                t1, t2 = _u(-70, -35, rng), _u(-10, 10, rng)  # hyperextended
            elif extreme:
                t1, t2 = _u(95, 115, rng), _u(105, 130, rng)  # beyond a full fist
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
    roll, yaw, pitch = _u(-45, 45, rng), _u(-35, 35, rng), _u(-30, 30, rng)
    if rare_mode == 0:  # palm facing away
        yaw = 180 + _u(-35, 35, rng)
    elif rare_mode == 1:  # fingers pointing down / sideways-down
        roll = 180 + _u(-50, 50, rng)
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
        box = _bbox(min(ua, ub) - reach, max(ua, ub) + reach,
                    min(va, vb) - reach, max(va, vb) + reach, rows, cols)
        if box is None:
            continue
        ex, ey, t = _segment_geometry(ua, va, ub, vb, box)
        zt = np.float32(za) + t * np.float32(zb - za)
        dm2 = (ex * ex + ey * ey) * (zt * np.float32(1.0 / f)) ** 2
        inside = dm2 < np.float32(r * r)
        surf = np.where(inside, zt - np.sqrt(np.maximum(np.float32(r * r) - dm2, 0.0)), np.inf)
        y0, y1, x0, x1 = box
        np.minimum(depth[y0:y1, x0:x1], surf, out=depth[y0:y1, x0:x1])


def _disc_mask(mask: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> None:
    rows, cols = mask.shape
    box = _bbox(cx - rx - 1, cx + rx + 1, cy - ry - 1, cy + ry + 1, rows, cols)
    if box is None:
        return
    y0, y1, x0, x1 = box
    px = (_arange(max(cols, rows))[x0:x1] - np.float32(cx)) / np.float32(max(rx, 0.5))
    py = (_arange(max(cols, rows))[y0:y1] - np.float32(cy))[:, None] / np.float32(max(ry, 0.5))
    mask[y0:y1, x0:x1] |= (px * px + py * py) <= 1.0


def _hand(seed: int, index: int, ood_kind: str, pose) -> dict:
    _check_kind(ood_kind)
    rows, cols = HAND_IMAGE_SHAPE
    scene = _rng(seed, index, _S_HAND_SCENE, ood_kind)
    if pose is None:
        prng = _rng(seed, index, _S_HAND_POSE, ood_kind)
        rare_mode = int(prng.integers(3)) if ood_kind == "rare_pose" else -1
        local, scale = _sample_hand_local(prng, rare_mode)
        rot = _hand_rotation(prng, rare_mode)
        palm = _unproject(np.array([_u(90, 230, prng), _u(70, 170, prng), _u(250, 550, prng)]))
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

    forearm_len = _u(90, 220, scene) * scale
    forearm_r = _u(20, 27, scene) * scale
    a, b, radii = _hand_capsules(xyz, scale, forearm_len, forearm_r)
    depth = np.full((rows, cols), np.inf, np.float32)
    _zbuffer(depth, a, b, radii)
    hand_mask = np.isfinite(depth)

    appearance = int(scene.integers(3)) if ood_kind == "appearance" else -1
    # Background: nothing (no reading) or a tilted wall beyond 700 mm, maybe with boxes.
    palm_z = float(xyz[0, 2])
    gu, gv = _u(-1.0, 1.0, scene), _u(-1.0, 1.0, scene)  # wall tilt, mm per pixel
    if appearance == 2:  # close clutter right behind the hand
        wall = palm_z + _u(70, 160, scene)
        use_wall = True
    else:  # nearest point of the wall beyond 705 mm
        wall = _u(705, 1400, scene) + abs(gu) * cols / 2 + abs(gv) * rows / 2
        use_wall = scene.uniform() < 0.6
    if use_wall:
        plane = (wall + gu * (_arange(cols) - cols / 2)
                 + gv * (_arange(rows) - rows / 2)[:, None])
        np.minimum(depth, plane, out=depth)
        nbox = int(scene.integers(0, 4)) if appearance != 2 else int(scene.integers(4, 9))
        for _ in range(nbox):
            bz = _u(705, wall, scene) if appearance != 2 else _u(palm_z + 40, wall, scene)
            x0, y0 = _u(-40, cols, scene), _u(-40, rows, scene)
            w, h = _u(20, 140, scene), _u(20, 140, scene)
            box = _bbox(x0, x0 + w, y0, y0 + h, rows, cols)
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
    p_edge = _u(0.2, 0.6, scene)
    drop = scene.random(n_edge) < p_edge
    holes[np.nonzero(edge)[0][drop], np.nonzero(edge)[1][drop]] = True
    # Small random clusters of missing pixels, mostly on the hand; large ones for OOD.
    uv = joints[:, :2]
    lo, hi = uv.min(0) - 15, uv.max(0) + 15
    for _ in range(int(scene.integers(2, 12))):
        cx, cy = _u(lo[0], hi[0], scene), _u(lo[1], hi[1], scene)
        _disc_mask(holes, cx, cy, _u(0.5, 3.0, scene), _u(0.5, 3.0, scene))
    if appearance == 1:  # large holes over the hand
        for _ in range(int(scene.integers(3, 8))):
            cx, cy = _u(lo[0], hi[0], scene), _u(lo[1], hi[1], scene)
            _disc_mask(holes, cx, cy, _u(8, 25, scene), _u(8, 25, scene))
    sigma = _u(1.0, 3.0, scene) if appearance != 0 else _u(8.0, 20.0, scene)
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
