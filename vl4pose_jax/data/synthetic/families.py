"""Rare human poses a pose network can learn: coherent acrobatic families with human joint angles.

The 'families' mode of `people.human_example` draws each 'rare_pose' person from one of
`FAMILIES` (handstand, cartwheel, somersault in pike, side-lying leg lift), each a posture
with its own range of roll (the body's rotation in the image plane) and of limb articulation,
built by 3-D forward kinematics. Body frame: x the person's left, y down, z towards the camera
(the person's front), neck at the origin, body units (standing height about 1, as `people`). A
limb is placed by its elevation (degrees from hanging straight down), its azimuth (the plane it
is raised in: 0 sideways, 90 forwards, -90 backwards), the flexion of its middle joint (elbow,
knee; 0 = straight) and a twist of that bend about the upper segment (humeral or hip
rotation); every family keeps these inside `LIMITS` (`hip_limit`). The body is then turned
about its long axis (yaw), projected orthographically onto the image plane and rolled:
`sample(rng)` returns the family, the 3-D joints (before yaw and roll, for checking angles) and
the (14, 2) lsp14 joints in body units that `people` renders.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from vl4pose_jax.data.synthetic.body import JOINT, draw_proportions
from vl4pose_jax.data.synthetic.sampling import uniform

FAMILIES = ("handstand", "cartwheel", "pike", "leg_lift")
# Joint ranges (degrees) every family keeps to: elbow and knee flexion; the thigh's elevation
# when raised forwards (flexion), sideways (abduction: a trained gymnast's; most adults reach
# 45) or backwards (extension); the upper arm's elevation when raised backwards.
LIMITS = dict(elbow_flexion=145.0, knee_flexion=150.0, hip_flexion=125.0, hip_abduction=75.0,
              hip_extension=30.0, shoulder_extension=60.0)

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


def _pike(rng):
    """A somersault in pike: straight legs raised together, hands reaching towards them, turned
    aside so that the fold shows, rolled 90-270 degrees."""
    hips = uniform(70, 115, rng)
    legs = [Limb(hips + uniform(-5, 5, rng), uniform(75, 100, rng), uniform(0, 20, rng))
            for _ in range(2)]
    arms = [Limb(uniform(60, 110, rng), uniform(60, 100, rng), uniform(0, 30, rng))
            for _ in range(2)]
    return 180 + uniform(-90, 90, rng), _either(rng) * uniform(25, 65, rng), arms, legs


def _leg_lift(rng):
    """Lying on one side, the top leg raised sideways, the lower arm under the head."""
    roll = _either(rng) * uniform(75, 105, rng)  # > 0: head to the image's right, left side down
    lower_leg = Limb(uniform(0, 20, rng), uniform(-10, 60, rng), uniform(0, 40, rng))
    top_leg = Limb(uniform(35, 75, rng), uniform(-15, 25, rng), uniform(0, 20, rng))
    lower_arm = Limb(uniform(140, 180, rng), uniform(-10, 40, rng), uniform(60, 140, rng))
    if rng.uniform() < 0.5:  # the top hand on the hip, or reaching up towards the raised leg
        top_arm = Limb(uniform(0, 40, rng), uniform(0, 90, rng), uniform(0, 60, rng))
    else:
        top_arm = Limb(uniform(60, 120, rng), uniform(-15, 30, rng), uniform(0, 30, rng))
    arms, legs = [lower_arm, top_arm], [lower_leg, top_leg]  # [left, right] when left is down
    if roll < 0:
        arms, legs = arms[::-1], legs[::-1]
    return roll, uniform(-30, 30, rng), arms, legs


_POSTURES = {"handstand": _handstand, "cartwheel": _cartwheel, "pike": _pike,
             "leg_lift": _leg_lift}


def sample(rng, family: str | None = None) -> FamilyPose:
    """A rare pose: its family (drawn uniformly first, unless given), then proportions (as the
    in-distribution people's), then posture, yaw and roll."""
    if family is None:
        family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    body = draw_proportions(rng)
    tilt = math.radians(uniform(-20, 20, rng))
    roll, yaw, arms, legs = _POSTURES[family](rng)

    j = np.zeros((14, 3))
    j[JOINT["head"]] = body.head * np.array([math.sin(tilt), -math.cos(tilt), 0.0])
    for side, pre, arm, leg in ((1, "l", arms[0], legs[0]), (-1, "r", arms[1], legs[1])):
        sho = np.array([side * body.shoulder, 0.035, 0.0])
        hip = np.array([side * body.hip, body.torso, 0.0])
        j[JOINT[pre + "sho"]], j[JOINT[pre + "hip"]] = sho, hip
        j[JOINT[pre + "elb"]], j[JOINT[pre + "wri"]] = _place(sho, side, arm, body.upper_arm,
                                                              body.forearm, _FRONT)
        j[JOINT[pre + "knee"]], j[JOINT[pre + "ankl"]] = _place(hip, side, leg, body.thigh,
                                                                body.shin, -_FRONT)
    c, s = math.cos(math.radians(yaw)), math.sin(math.radians(yaw))
    flat = np.stack([j[:, 0] * c + j[:, 2] * s, j[:, 1]], axis=1)  # yaw, then drop depth
    c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    return FamilyPose(family, j, flat @ np.array([[c, -s], [s, c]]).T)
