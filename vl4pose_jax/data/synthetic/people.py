"""Synthetic people: sampled (or given) lsp14 poses rendered as RGB images, with exact occlusion.

`human_example(seed, index, image_size=S, ood_kind=...)` draws a pose in body units (a standing
person about 1 tall, facing the camera), fits it into an S x S image, and paints a background
with clutter, the person back to front (capsule limbs, a torso polygon, a head ellipse with
hair) and maybe occluders on a `raster.Canvas`; joint j is occluded iff the shape on top at its
nearest pixel was drawn after j's first body part and does not contain j. 'rare_pose' examples
are, by `rare_poses=`, upside down, cartwheels, splits or beyond the usual joint limits
('extreme') or acrobatic postures with human joint angles ('families': `families`);
'appearance' examples are greyscale, colour-inverted or striped. `pose=` renders a given pose
instead (`normalise_human_pose`). The package doc (`vl4pose_jax.data.synthetic`) has the
conventions.
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence

import numpy as np

from vl4pose_jax.data.synthetic import families
from vl4pose_jax.data.synthetic.body import JOINT
from vl4pose_jax.data.synthetic.body import draw_proportions
from vl4pose_jax.data.synthetic.raster import Canvas, arange, smooth_field, upsample_grid
from vl4pose_jax.data.synthetic.sampling import assign_ood, check_kind, example_rng, uniform

POSE_FILL = 0.8  # a given human pose's larger box side spans this fraction of (S - 1)
NUM_HUMAN_JOINTS = 14
# How 'rare_pose' people are drawn: 'extreme' (upside down, cartwheels and every limb beyond
# the usual joint limits, independently) or 'families' (coherent postures with human joint
# angles: `families`).
RARE_POSE_MODES = ("extreme", "families")

# Random streams (the third entry of the seed sequence); each is drawn in a fixed order.
_S_HUMAN_POSE, _S_HUMAN_SCENE = 1, 2


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

_NOMINAL_HEIGHT = 0.98
# Nominal lengths (body units) of segments used to estimate a given pose's size.
_SIZE_SEGMENTS = ((0, 1, 0.16), (2, 3, 0.17), (5, 6, 0.17), (3, 4, 0.15), (6, 7, 0.15),
                  (8, 9, 0.245), (11, 12, 0.245), (9, 10, 0.245), (12, 13, 0.245),
                  (2, 8, 0.31), (5, 11, 0.31))


def _sample_human_pose(rng, rare: bool) -> np.ndarray:
    """(14, 2) joints in body units, neck at the origin, y down; person faces the camera."""
    deg = math.radians
    yaw = uniform(-60, 60, rng)
    width = max(abs(math.cos(deg(yaw))), 0.3)
    body = draw_proportions(rng, width)
    head_tilt = uniform(-20, 20, rng)
    bend = uniform(-10, 10, rng)

    mode = rng.integers(3) if rare else -1  # 0 inverted, 1 cartwheel, 2 extreme articulation
    if not rare:
        lean = float(np.clip(rng.normal(0.0, 12.0), -30.0, 30.0))
    elif mode == 0:
        lean = 180.0 + uniform(-30, 30, rng)
    elif mode == 1:
        lean = uniform(70, 150, rng) * (1 if rng.uniform() < 0.5 else -1)
    else:
        lean = uniform(-25, 25, rng)

    def foreshorten():
        return 1.0 if rng.uniform() < 0.5 else uniform(0.55, 1.0, rng)

    def arm_angles():
        if rare and (mode == 2 or rng.uniform() < 0.5):
            # Beyond the usual range: behind the back/over to the other side, hyperextended.
            a = uniform(175, 250, rng) if rng.uniform() < 0.5 else uniform(-110, -50, rng)
            e = uniform(150, 200, rng) * (1 if rng.uniform() < 0.5 else -1)
            return a, e
        p = rng.uniform()
        a = (uniform(-20, 45, rng) if p < 0.5 else
             uniform(45, 120, rng) if p < 0.85 else uniform(120, 170, rng))
        if rng.uniform() < 0.5:
            e = uniform(-20, 30, rng)
        else:
            e = uniform(30, 150, rng) * (-1 if rng.uniform() < 0.7 else 1)
        return a, e

    def leg_angles():
        if rare and (mode == 2 or rng.uniform() < 0.5):
            h = uniform(100, 170, rng)  # splits / kicks above the hip
            k = uniform(-30, 30, rng) if rng.uniform() < 0.5 else uniform(120, 160, rng)
            return h, k
        p = rng.uniform()
        h = (uniform(-12, 25, rng) if p < 0.7 else
             uniform(25, 60, rng) if p < 0.9 else uniform(60, 85, rng))
        k = uniform(-10, 15, rng) if rng.uniform() < 0.6 else \
            uniform(15, 110, rng) * (1 if rng.uniform() < 0.5 else -1)
        return h, k

    def direction(side, angle):  # angle from "down", positive = outward on `side`
        r = deg(angle)
        return np.array([side * math.sin(r), math.cos(r)])

    j = np.zeros((14, 2))
    j[JOINT["head"]] = body.head * np.array([math.sin(deg(head_tilt)), -math.cos(deg(head_tilt))])
    b = deg(bend)
    axis = np.array([math.sin(b), math.cos(b)])
    across = np.array([math.cos(b), -math.sin(b)])  # towards the person's left (image right)
    pelvis = body.torso * axis
    for side, pre in ((1, "l"), (-1, "r")):
        sho = np.array([side * body.shoulder, 0.035])
        hip = pelvis + side * body.hip * across
        a, e = arm_angles()
        elb = sho + body.upper_arm * foreshorten() * direction(side, a)
        wri = elb + body.forearm * foreshorten() * direction(side, a + e)
        h, k = leg_angles()
        knee = hip + body.thigh * foreshorten() * direction(side, h + bend * side)
        ankle = knee + body.shin * foreshorten() * direction(side, h + k + bend * side)
        for name, p in (("sho", sho), ("elb", elb), ("wri", wri), ("hip", hip),
                        ("knee", knee), ("ankl", ankle)):
            j[JOINT[pre + name]] = p
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
    scale = uniform(0.60, 0.85, rng) / _NOMINAL_HEIGHT
    lo, hi = body.min(0), body.max(0)
    scale = min(scale, (1.0 - 2 * margin) / max(float((hi - lo).max()), 1e-9))
    first = margin - lo * scale
    room = np.maximum((1.0 - margin - hi * scale) - first, 0.0)  # >= 0 up to rounding
    offset = first + room * rng.uniform(size=2)
    return (body * scale + offset) * size - 0.5, scale * _NOMINAL_HEIGHT * size


def _bit(*names):
    m = 0
    for n in names:
        m |= 1 << JOINT[n]
    return m


def _render_person(canvas: Canvas, joints: np.ndarray, unit: float, look: dict) -> None:
    """Draw a person (capsules, torso polygon, head ellipse) back to front."""
    J = joints
    ok = np.all(np.isfinite(J), axis=1)

    def P(name):
        return J[JOINT[name]]

    def has(*names):
        return all(ok[JOINT[n]] for n in names)

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


def _first_shapes(canvas: Canvas, num_joints: int) -> np.ndarray:
    """(J,) id of the first labelled shape containing each joint (len(shapes) if none)."""
    masks = np.asarray(canvas.joints_of, np.int64)
    contains = (masks[:, None] >> np.arange(num_joints)) & 1  # (shapes, J)
    return np.where(contains.any(0), contains.argmax(0), len(masks))


def _visibility_from_labels(canvas: Canvas, joints: np.ndarray, first_id: np.ndarray):
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


def _background(rng, size: int, palette: np.ndarray) -> Canvas:
    """Gradient + smooth colour noise + clutter (rectangles, blobs, sticks, a floor)."""
    c0, c1 = palette[rng.integers(32)], palette[rng.integers(32)]
    theta = uniform(0, 2 * math.pi, rng)
    # A linear gradient c0 -> c1 plus smooth colour noise, as one bilinear 5 x 5 grid (bilinear
    # interpolation reproduces the linear ramp exactly).
    k = 5
    nodes = np.linspace(0.0, 1.0, k)
    t = nodes[None, :] * math.cos(theta) + nodes[:, None] * math.sin(theta)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-9)
    grid = (c0[:, None, None] + t[None] * (c1 - c0)[:, None, None]
            + rng.uniform(-1.0, 1.0, (3, k, k)) * uniform(10, 40, rng))
    image = upsample_grid(grid, size, size)
    canvas = Canvas(image)
    if rng.uniform() < 0.5:  # floor
        top = uniform(0.55, 0.85, rng) * size
        canvas.rect(0, top, size, size, palette[rng.integers(32)] * 0.8, gradient=0.15)
    for _ in range(int(rng.integers(3, 10))):
        kind = rng.integers(3)
        col = palette[rng.integers(32)] * np.float32(uniform(0.6, 1.1, rng))
        cx, cy = uniform(-0.1, 1.1, rng) * size, uniform(-0.1, 1.1, rng) * size
        w, h = uniform(0.05, 0.4, rng) * size, uniform(0.05, 0.4, rng) * size
        if kind == 0:
            canvas.rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, col,
                        gradient=uniform(-0.2, 0.2, rng))
        elif kind == 1:
            canvas.ellipse((cx, cy), uniform(0, math.pi, rng), w / 2, h / 2, col, shaded=False)
        else:
            ang = uniform(0, 2 * math.pi, rng)
            end = (cx + w * math.cos(ang), cy + w * math.sin(ang))
            canvas.capsule((cx, cy), end, uniform(0.01, 0.04, rng) * size, col)
    return canvas


def _person_look(rng, palette) -> dict:
    def pal():
        return palette[rng.integers(32)] * np.float32(uniform(0.85, 1.15, rng))
    return dict(
        shirt=pal(), trousers=pal() * np.float32(0.8),
        skin=_SKIN[rng.integers(len(_SKIN))] * np.float32(uniform(0.9, 1.05, rng)),
        hair=_HAIR[rng.integers(len(_HAIR))], shoes=pal() * np.float32(0.4),
        long_sleeves=bool(rng.uniform() < 0.5), shorts=bool(rng.uniform() < 0.3),
        near="l" if rng.uniform() < 0.5 else "r", far_arm_behind=bool(rng.uniform() < 0.5),
        toe_sign=1.0 if rng.uniform() < 0.5 else -1.0, foot_len=uniform(0.03, 0.07, rng))


def rare_pose_family(seed: int, index: int) -> str:
    """The family (`families.FAMILIES`) of example (seed, index) drawn as a 'rare_pose' person
    in the 'families' mode."""
    return families.sample(example_rng(seed, index, _S_HUMAN_POSE, "rare_pose")).family


def _human(seed: int, index: int, image_size: int, ood_kind: str, pose, occluders: bool,
           rare_poses: str = "extreme"):
    """Everything for one human example; `occluders=False` (tests) skips drawing occluders
    without changing any other draw."""
    check_kind(ood_kind)
    if rare_poses not in RARE_POSE_MODES:
        raise ValueError(f"rare_poses must be one of {RARE_POSE_MODES}, got {rare_poses!r}")
    size = int(image_size)
    if size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    palette = _PALETTE
    scene = example_rng(seed, index, _S_HUMAN_SCENE, ood_kind)
    if pose is None:
        pose_rng = example_rng(seed, index, _S_HUMAN_POSE, ood_kind)
        if ood_kind == "rare_pose" and rare_poses == "families":
            body = families.sample(pose_rng).joints
        else:
            body = _sample_human_pose(pose_rng, rare=ood_kind == "rare_pose")
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
            ang = math.radians(uniform(150, 210, scene))
            rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
            given = (given - centre) @ rot.T + centre
        else:
            uniform(150, 210, scene)  # keep the draw order identical
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
        w, h = uniform(0.06, 0.3, scene) * unit, uniform(0.06, 0.3, scene) * unit
        col = palette[scene.integers(32)] * np.float32(uniform(0.6, 1.0, scene))
        is_rect = scene.uniform() < 0.5
        ang = uniform(0, math.pi, scene)
        if not occluders:
            continue
        if is_rect:
            canvas.rect(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, col)
        else:
            canvas.ellipse((cx, cy), ang, w / 2, h / 2, col, hard=True, shaded=False)

    visibility = _visibility_from_labels(canvas, joints, first_id)

    image = canvas.image
    # Global lighting variation and sensor noise.
    image *= 1.0 + smooth_field(scene, size, size, 4) * uniform(0.0, 0.15, scene)
    sigma = uniform(1.0, 5.0, scene)
    image += scene.standard_normal((size, size), np.float32) * sigma
    if ood_kind == "appearance":
        mode = int(scene.integers(3))
        if mode == 0:  # greyscale
            grey = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
            image = np.broadcast_to(grey, image.shape)
        elif mode == 1:  # inverted colours
            image = 255.0 - image
        else:  # high-frequency stripes over everything
            period = uniform(3.0, 7.0, scene) * size / 128.0
            ang = uniform(0, math.pi, scene)
            xs = arange(size)
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
                  pose: Optional[np.ndarray] = None, rare_poses: str = "extreme") -> dict:
    """One synthetic person, a pure function of (seed, index, image_size, ood_kind, pose,
    rare_poses).

    Args:
      seed, index: non-negative ints; the example is drawn from
        `np.random.default_rng([seed, index, stream, ood code])`.
      image_size: S, the side of the square image in pixels (>= 16).
      ood_kind: one of `OOD_KINDS`.
      pose: optional (14, 2) lsp14 (x, y) positions at any pixel scale, NaN rows absent, to
        render instead of a sampled pose (normalised by `normalise_human_pose`).
      rare_poses: how a sampled 'rare_pose' person is drawn, one of `RARE_POSE_MODES`; other
        kinds and given poses do not depend on it.
    Returns a dict: `id` str; `image` uint8 (S, S, 3); `joints` float32 (14, 2) (x, y) =
    (column, row) pixels, lsp14 order (NaN where absent); `visibility` int8 (14,) 1 visible,
    0 occluded, -1 absent; `ood_kind` str.
    """
    return _human(seed, index, image_size, ood_kind, pose, occluders=True,
                  rare_poses=rare_poses)[0]


def human_examples(seed: int, num: int, *, image_size: int = 128, ood_fraction: float = 0.0,
                   start: int = 0, poses: Optional[Sequence[np.ndarray]] = None,
                   rare_poses: str = "extreme") -> Iterator[dict]:
    """Examples `start`..`num - 1` of the `num`-example set: `human_example(seed, i, ...)` with
    `ood_kind = assign_ood(num, ood_fraction, seed)[i]` and `pose = poses[i % len(poses)]`
    when `poses` is given. Skipping with `start` does not change any example."""
    kinds = assign_ood(num, ood_fraction, seed)
    for i in range(int(start), int(num)):
        pose = None if poses is None else poses[i % len(poses)]
        yield human_example(seed, i, image_size=image_size, ood_kind=str(kinds[i]), pose=pose,
                            rare_poses=rare_poses)
