"""Rare human poses a pose network can learn: coherent acrobatic families with human joint angles.

The 'families' mode of `people.human_example` draws each 'rare_pose' person from one of
`FAMILIES` (handstand, cartwheel, somersault tuck, high kick), each a posture with its own
range of roll (the body's rotation in the image plane) and of limb articulation, built by 3-D
forward kinematics. Body frame: x the person's left, y down, z towards the camera (the person's
front), neck at the origin, body units (standing height about 1, as `people`). A limb is placed
by its elevation (degrees from hanging straight down), its azimuth (the plane it is raised in:
0 sideways, 90 forwards, -90 backwards), the flexion of its middle joint (elbow, knee; 0 =
straight) and a twist of that bend about the upper segment (humeral or hip rotation); every
family keeps these inside `LIMITS` (`hip_limit`). The body is then turned about its long axis
(yaw), projected orthographically onto the image plane and rolled: `sample(rng)` returns the
family, the 3-D joints (before yaw and roll, for checking angles) and the (14, 2) lsp14 joints
in body units that `people` renders.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from vl4pose_jax.data.synthetic.sampling import uniform

FAMILIES = ("handstand", "cartwheel", "tuck", "kick")
# Joint ranges (degrees) every family keeps to: elbow and knee flexion; the thigh's elevation
# when raised forwards (flexion), sideways (abduction: a trained gymnast's; most adults reach
# 45) or backwards (extension); the upper arm's elevation when raised backwards.
LIMITS = dict(elbow_flexion=145.0, knee_flexion=150.0, hip_flexion=125.0, hip_abduction=75.0,
              hip_extension=30.0, shoulder_extension=60.0)

_J = {n: i for i, n in enumerate(("head", "neck", "lsho", "lelb", "lwri", "rsho", "relb",
                                  "rwri", "lhip", "lknee", "lankl", "rhip", "rknee", "rankl"))}
_DOWN, _FRONT = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])


@dataclasses.dataclass(frozen=True)
class Limb:
    """One arm or leg: elevation and azimuth of its upper segment, flexion and twist of its
    middle joint (degrees; module doc)."""
    elevation: float
    azimuth: float
    flexion: float
    twist: float = 0.0


@dataclasses.dataclass(frozen=True)
class FamilyPose:
    family: str
    joints_3d: np.ndarray  # (14, 3) body frame, before yaw and roll
    joints: np.ndarray     # (14, 2) image-plane body units (x right, y down), rolled


def hip_limit(azimuth: float) -> float:
    """The largest thigh elevation (degrees) in the plane at `azimuth`: backwards (< -45)
    extension, sideways (-45..45) abduction, forwards (> 45) flexion."""
    if azimuth < -45:
        return LIMITS["hip_extension"]
    return LIMITS["hip_abduction"] if azimuth <= 45 else LIMITS["hip_flexion"]


def _rotate(v, axis, degrees):
    """`v` rotated by `degrees` about the unit vector `axis` (Rodrigues)."""
    r = math.radians(degrees)
    return (v * math.cos(r) + np.cross(axis, v) * math.sin(r)
            + axis * float(axis @ v) * (1 - math.cos(r)))


def _place(root, side, limb: Limb, upper: float, lower: float, rest_bend):
    """(middle, end) joints of a limb hanging from `root` on `side` (+1 left, -1 right),
    raised as `limb` says; `rest_bend` is where its middle joint bends when it hangs (forwards
    for an elbow, backwards for a knee) and is carried along by the raising rotation."""
    a = math.radians(limb.azimuth)
    plane = np.array([side * math.cos(a), 0.0, math.sin(a)])  # horizontal, in the raising plane
    axis = np.cross(_DOWN, plane)  # unit: down and plane are orthogonal unit vectors
    u = _rotate(_DOWN, axis, limb.elevation)
    bend = _rotate(_rotate(rest_bend, axis, limb.elevation), u, side * limb.twist)
    f = math.radians(limb.flexion)
    middle = root + upper * u
    return middle, middle + lower * (math.cos(f) * u + math.sin(f) * bend)


def _either(rng):
    return 1.0 if rng.uniform() < 0.5 else -1.0


def _handstand(rng):
    """Upside down on straight arms; legs together, split forwards / backwards, or straddled."""
    arms = [Limb(uniform(155, 180, rng), uniform(-10, 30, rng), uniform(0, 15, rng),
                 uniform(-20, 20, rng)) for _ in range(2)]
    variant = rng.integers(3)
    if variant == 0:
        legs = [Limb(uniform(0, 12, rng), uniform(-10, 10, rng), uniform(0, 15, rng))
                for _ in range(2)]
    elif variant == 1:
        legs = [Limb(uniform(40, 110, rng), uniform(75, 95, rng), uniform(0, 20, rng)),
                Limb(uniform(10, 30, rng), uniform(-95, -75, rng), uniform(0, 20, rng))]
        legs = legs if rng.uniform() < 0.5 else legs[::-1]
    else:
        legs = [Limb(uniform(30, 70, rng), uniform(-15, 15, rng), uniform(0, 15, rng))
                for _ in range(2)]
    return 180 + uniform(-20, 20, rng), uniform(-40, 40, rng), arms, legs


def _cartwheel(rng):
    """Sideways through the air, a star: arms raised in a V, legs straddled."""
    arms = [Limb(uniform(110, 165, rng), uniform(-15, 15, rng), uniform(0, 20, rng))
            for _ in range(2)]
    legs = [Limb(uniform(35, 70, rng), uniform(-15, 15, rng), uniform(0, 20, rng))
            for _ in range(2)]
    return _either(rng) * uniform(75, 120, rng), uniform(-30, 30, rng), arms, legs


def _tuck(rng):
    """A somersault: knees pulled to the chest, hands on the shins, rolled 90-270 degrees."""
    arms = [Limb(uniform(50, 100, rng), uniform(60, 100, rng), uniform(40, 110, rng),
                 uniform(-20, 20, rng)) for _ in range(2)]
    legs = [Limb(uniform(95, 125, rng), uniform(70, 100, rng), uniform(110, 150, rng),
                 uniform(-15, 15, rng)) for _ in range(2)]
    return 180 + uniform(-90, 90, rng), uniform(-60, 60, rng), arms, legs


def _kick(rng):
    """On one leg, the other kicked high sideways or forwards, arms out, leaning away from it."""
    arms = [Limb(uniform(70, 120, rng), uniform(-10, 30, rng), uniform(0, 40, rng))
            for _ in range(2)]
    if rng.uniform() < 0.5:
        kicked = Limb(uniform(55, 75, rng), uniform(-10, 20, rng), uniform(0, 30, rng))
    else:
        kicked = Limb(uniform(80, 125, rng), uniform(70, 95, rng), uniform(0, 30, rng))
    standing = Limb(uniform(0, 10, rng), uniform(-10, 10, rng), uniform(0, 15, rng))
    side = _either(rng)  # +1: the left leg kicks (image right), so the body leans right
    legs = [kicked, standing] if side > 0 else [standing, kicked]
    return -side * uniform(15, 40, rng), uniform(-40, 40, rng), arms, legs


_POSTURES = {"handstand": _handstand, "cartwheel": _cartwheel, "tuck": _tuck, "kick": _kick}


def sample(rng, family: str | None = None) -> FamilyPose:
    """A rare pose: its family (drawn uniformly first, unless given), then proportions (as the
    in-distribution people's), then posture, yaw and roll."""
    if family is None:
        family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    head_len = 0.16 * uniform(0.9, 1.1, rng)
    torso_len = 0.30 * uniform(0.9, 1.1, rng)
    sho_w = 0.115 * uniform(0.85, 1.15, rng)
    hip_w = 0.08 * uniform(0.85, 1.15, rng)
    uarm, farm, thigh, shin = (v * uniform(0.9, 1.1, rng) for v in (0.17, 0.15, 0.245, 0.245))
    tilt = math.radians(uniform(-20, 20, rng))
    roll, yaw, arms, legs = _POSTURES[family](rng)

    j = np.zeros((14, 3))
    j[_J["head"]] = head_len * np.array([math.sin(tilt), -math.cos(tilt), 0.0])
    for side, pre, arm, leg in ((1, "l", arms[0], legs[0]), (-1, "r", arms[1], legs[1])):
        sho = np.array([side * sho_w, 0.035, 0.0])
        hip = np.array([side * hip_w, torso_len, 0.0])
        j[_J[pre + "sho"]], j[_J[pre + "hip"]] = sho, hip
        j[_J[pre + "elb"]], j[_J[pre + "wri"]] = _place(sho, side, arm, uarm, farm, _FRONT)
        j[_J[pre + "knee"]], j[_J[pre + "ankl"]] = _place(hip, side, leg, thigh, shin, -_FRONT)
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    flat = np.stack([j[:, 0] * c + j[:, 2] * s, j[:, 1]], axis=1)  # yaw, then drop depth
    c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    return FamilyPose(family, j, flat @ np.array([[c, -s], [s, c]]).T)
