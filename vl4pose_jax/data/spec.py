"""What a consumer needs to know about a dataset without opening it: `DatasetSpec`, OOD kinds.

A leaf every other data module may import (it imports nothing else of `vl4pose_jax.data`). The
specs themselves are registered with their builders in `registry` (`data.spec(name)` looks one
up); the synthetic generators, the builders and the loaders share `OOD_KINDS`: an example's
`ood` field is an index into it (0 for real data).
"""
from __future__ import annotations

import dataclasses

from vl4pose_jax import skeletons

OOD_KINDS = ("none", "rare_pose", "appearance")  # the synthetic sets' kinds; real data is 0


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a consumer needs to know about a dataset without opening it."""
    name: str
    kind: str  # "human" or "hand"
    skeleton: skeletons.Skeleton | None  # None: a COCO set not prepared yet
    splits: tuple[str, ...]
    intrinsics: tuple[float, float, float, float] | None = None
    cube_mm: float | None = None
    metric: str = ""  # "pck" (torso), "pckh" (head size) or "mm"
