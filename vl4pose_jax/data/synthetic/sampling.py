"""Seeded randomness shared by the synthetic generators: per-example streams and the OOD draw.

Every example is a pure function of (seed, index, arguments): each of its random streams is
`example_rng(seed, index, stream, ood kind)` = `np.random.default_rng([seed, index, stream,
ood code])`, drawn in a fixed order, so example i can be made alone (random access) and two
calls give the same bytes. `assign_ood` decides which examples of a set are out of
distribution; `uniform` is the scalar draw the generators use throughout.
"""
from __future__ import annotations

import math

import numpy as np

from vl4pose_jax.data.spec import OOD_KINDS

_S_ASSIGN = 99  # the stream of `assign_ood`
_OOD_CODE = {k: i for i, k in enumerate(OOD_KINDS)}


def example_rng(seed: int, index: int, stream: int, kind: str) -> np.random.Generator:
    """The generator of one random stream of example (seed, index) of OOD kind `kind`."""
    return np.random.default_rng([int(seed), int(index), int(stream), _OOD_CODE[kind]])


def check_kind(ood_kind: str) -> None:
    """ValueError unless `ood_kind` is one of `OOD_KINDS`."""
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


def uniform(lo, hi, rng) -> float:
    """One draw from U(lo, hi) as a Python float."""
    return float(rng.uniform(lo, hi))
