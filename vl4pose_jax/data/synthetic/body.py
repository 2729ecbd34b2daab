"""Synthetic people's bodies in body units (a standing person about 1 tall): lsp14 joint indices
by name and the seeded draw of one person's proportions, shared by the in-distribution pose
sampler (`people`) and the rare-pose families (`families`), so that both draw the same bodies.
"""
from __future__ import annotations

import dataclasses

from vl4pose_jax import skeletons
from vl4pose_jax.data.synthetic.sampling import uniform

JOINT = {name: i for i, name in enumerate(skeletons.lsp14.names)}


@dataclasses.dataclass(frozen=True)
class Proportions:
    """Head (neck to head top), torso (neck to pelvis), half widths of the shoulders and hips,
    and the limb segments, in body units."""
    head: float
    torso: float
    shoulder: float
    hip: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float


def draw_proportions(rng, width: float = 1.0) -> Proportions:
    """One person's proportions, drawn in this order; `width` (the cosine of the body's yaw,
    for a sampler that narrows the body itself) scales the shoulder and hip half widths."""
    head = 0.16 * uniform(0.9, 1.1, rng)
    torso = 0.30 * uniform(0.9, 1.1, rng)
    shoulder = 0.115 * uniform(0.85, 1.15, rng) * width
    hip = 0.08 * uniform(0.85, 1.15, rng) * width
    limbs = [v * uniform(0.9, 1.1, rng) for v in (0.17, 0.15, 0.245, 0.245)]
    return Proportions(head, torso, shoulder, hip, *limbs)
