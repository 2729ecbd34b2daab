"""Skeletons: joint names, parent->child links, flip pairs and tree orders.

A `Skeleton` is an immutable, hashable tree over the joints, so it can be passed as a static
argument to `jax.jit`. Its `links` are (parent, child) joint indices in a fixed order: the order
of the auxiliary network's per-link outputs (link k <-> row k of `link_params_BxLx2`).

Derived fields serve tree programmes under jit:
  * `parents` (J,): parent joint of each joint, -1 for the root;
  * `depth` (J,): edges from the root;
  * `topo_order` (J,): joints root first, every parent before its children;
  * `links_bottom_up` (L,): link indices, deepest child first (children's links before their
    parent's link), the order of a bottom-up dynamic programme;
  * `link_of_joint` (J,): the link whose child is that joint, -1 for the root.

Built-ins: `lsp14` (the VL4Pose reference's 14-joint internal order rooted at the head),
`mpii16` (adds pelvis and thorax), `icvl16` (palm + 5 fingers x 3), `nyu14` (NYU's 14
evaluation joints rooted at the palm centre). `*_SOURCE_INDEX` arrays map a dataset's file
order into a skeleton's order: `joints_in_skeleton = joints_in_file[..., SOURCE_INDEX, :]`.
Every skeleton is validated at construction (a tree that reaches every joint).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Skeleton:
    """A tree over named joints. `links` are (parent, child) index pairs; see the module doc."""

    names: tuple[str, ...]
    links: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...] = ()
    name: str = "custom"

    def __post_init__(self):
        names = tuple(str(n) for n in self.names)
        links = tuple((int(p), int(c)) for p, c in self.links)
        flips = tuple((int(a), int(b)) for a, b in self.flip_pairs)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "links", links)
        object.__setattr__(self, "flip_pairs", flips)
        num_joints = len(names)
        if num_joints < 1:
            raise ValueError(f"skeleton {self.name!r}: no joints")
        if len(set(names)) != num_joints:
            raise ValueError(f"skeleton {self.name!r}: duplicate joint names in {names}")
        if len(links) != num_joints - 1:
            raise ValueError(
                f"skeleton {self.name!r}: a tree over {num_joints} joints needs "
                f"{num_joints - 1} links, got {len(links)}")
        parents = np.full(num_joints, -1, np.int32)
        link_of_joint = np.full(num_joints, -1, np.int32)
        for k, (p, c) in enumerate(links):
            for j in (p, c):
                if not 0 <= j < num_joints:
                    raise ValueError(f"skeleton {self.name!r}: link {k} {(p, c)} names joint {j}, "
                                     f"outside 0..{num_joints - 1}")
            if p == c:
                raise ValueError(f"skeleton {self.name!r}: link {k} joins joint {p} to itself")
            if parents[c] != -1:
                raise ValueError(f"skeleton {self.name!r}: joint {names[c]!r} has two parents "
                                 f"({names[parents[c]]!r} and {names[p]!r})")
            parents[c] = p
            link_of_joint[c] = k
        roots = np.flatnonzero(parents == -1)
        if len(roots) != 1:
            raise ValueError(f"skeleton {self.name!r}: expected one root, got "
                             f"{[names[r] for r in roots]}")
        root = int(roots[0])
        # Breadth-first from the root: reaches every joint iff the links form a tree.
        children = [[] for _ in range(num_joints)]
        for p, c in links:
            children[p].append(c)
        depth = np.full(num_joints, -1, np.int32)
        depth[root] = 0
        order = [root]
        for j in order:
            for c in children[j]:
                depth[c] = depth[j] + 1
                order.append(c)
        if len(order) != num_joints:
            unreached = [names[j] for j in range(num_joints) if depth[j] < 0]
            raise ValueError(f"skeleton {self.name!r}: joints {unreached} are not reachable "
                             f"from the root {names[root]!r} (a cycle?)")
        for a, b in flips:
            if not (0 <= a < num_joints and 0 <= b < num_joints) or a == b:
                raise ValueError(f"skeleton {self.name!r}: bad flip pair {(a, b)}")
        links_bottom_up = sorted(range(len(links)), key=lambda k: (-depth[links[k][1]], k))
        for field, value in dict(
                root=root, parents=parents, depth=depth, topo_order=np.asarray(order, np.int32),
                links_bottom_up=np.asarray(links_bottom_up, np.int32),
                link_of_joint=link_of_joint,
                link_parent=np.asarray([p for p, _ in links], np.int32).reshape(-1),
                link_child=np.asarray([c for _, c in links], np.int32).reshape(-1)).items():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, field, value)

    # Identity is the definition, so skeletons can be static jit arguments and dict keys.
    def _key(self):
        return (self.names, self.links, self.flip_pairs)

    def __eq__(self, other):
        return isinstance(other, Skeleton) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def num_links(self) -> int:
        return len(self.links)

    def index(self, joint_name: str) -> int:
        return self.names.index(joint_name)

    def flip_permutation(self) -> np.ndarray:
        """(J,) permutation that swaps left and right joints (identity where unpaired)."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def __repr__(self):
        return f"Skeleton({self.name!r}, {self.num_joints} joints, {self.num_links} links)"


def _by_name(name, names, named_links, named_flips=()):
    idx = {n: i for i, n in enumerate(names)}
    return Skeleton(names=tuple(names),
                    links=tuple((idx[p], idx[c]) for p, c in named_links),
                    flip_pairs=tuple((idx[a], idx[b]) for a, b in named_flips),
                    name=name)


_HUMAN14 = ("head", "neck", "lsho", "lelb", "lwri", "rsho", "relb", "rwri",
            "lhip", "lknee", "lankl", "rhip", "rknee", "rankl")
_HUMAN_FLIPS = (("lsho", "rsho"), ("lelb", "relb"), ("lwri", "rwri"),
                ("lhip", "rhip"), ("lknee", "rknee"), ("lankl", "rankl"))

# VL4Pose reference, LSP: 13 links rooted at the head; each hip hangs off its shoulder.
lsp14 = _by_name("lsp14", _HUMAN14, (
    ("head", "neck"),
    ("neck", "lsho"), ("lsho", "lelb"), ("lelb", "lwri"),
    ("neck", "rsho"), ("rsho", "relb"), ("relb", "rwri"),
    ("lsho", "lhip"), ("lhip", "lknee"), ("lknee", "lankl"),
    ("rsho", "rhip"), ("rhip", "rknee"), ("rknee", "rankl"),
), _HUMAN_FLIPS)

# VL4Pose reference, MPII: 15 links through thorax and pelvis.
mpii16 = _by_name("mpii16", _HUMAN14 + ("pelvis", "thorax"), (
    ("head", "neck"), ("neck", "thorax"), ("thorax", "pelvis"),
    ("thorax", "lsho"), ("lsho", "lelb"), ("lelb", "lwri"),
    ("thorax", "rsho"), ("rsho", "relb"), ("relb", "rwri"),
    ("pelvis", "lhip"), ("lhip", "lknee"), ("lknee", "lankl"),
    ("pelvis", "rhip"), ("rhip", "rknee"), ("rknee", "rankl"),
), _HUMAN_FLIPS)

_FINGERS = ("thumb", "index", "middle", "ring", "little")

# ICVL: 0 palm, then per finger (thumb..little) root -> mid -> tip.
icvl16 = _by_name(
    "icvl16",
    ("palm",) + tuple(f"{f}_{p}" for f in _FINGERS for p in ("root", "mid", "tip")),
    tuple(link for f in _FINGERS for link in (
        ("palm", f"{f}_root"), (f"{f}_root", f"{f}_mid"), (f"{f}_mid", f"{f}_tip"))))

# NYU's 14 evaluation joints (of its 36), in the customary order, rooted at the palm centre.
nyu14 = _by_name("nyu14", (
    "little_tip", "little_mid", "ring_tip", "ring_mid", "middle_tip", "middle_mid",
    "index_tip", "index_mid", "thumb_tip", "thumb_mid", "thumb_root", "wrist_1", "wrist_2",
    "palm"), (
    ("palm", "little_mid"), ("little_mid", "little_tip"),
    ("palm", "ring_mid"), ("ring_mid", "ring_tip"),
    ("palm", "middle_mid"), ("middle_mid", "middle_tip"),
    ("palm", "index_mid"), ("index_mid", "index_tip"),
    ("palm", "thumb_root"), ("thumb_root", "thumb_mid"), ("thumb_mid", "thumb_tip"),
    ("palm", "wrist_1"), ("palm", "wrist_2")))


def _frozen(values):
    array = np.asarray(values, np.int32)
    array.setflags(write=False)
    return array


# LSP / LSPET file order: 0 rankl 1 rknee 2 rhip 3 lhip 4 lknee 5 lankl 6 rwri 7 relb 8 rsho
# 9 lsho 10 lelb 11 lwri 12 neck 13 head top.
LSP_SOURCE_INDEX = _frozen([13, 12, 9, 10, 11, 8, 7, 6, 3, 4, 5, 2, 1, 0])
# MPII ids: 0 rankl 1 rknee 2 rhip 3 lhip 4 lknee 5 lankl 6 pelvis 7 thorax 8 upper neck
# 9 head top 10 rwri 11 relb 12 rsho 13 lsho 14 lelb 15 lwri.
MPII_SOURCE_INDEX = _frozen([9, 8, 13, 14, 15, 12, 11, 10, 3, 4, 5, 2, 1, 0, 6, 7])
# ICVL labels are already in icvl16 order.
ICVL_SOURCE_INDEX = _frozen(np.arange(16))
# NYU joint_data.mat has 36 joints; the customary 14 evaluation joints (and the order of the
# public 14-joint test labels) are these.
NYU_SOURCE_INDEX = _frozen([0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32])

BUILTIN = {s.name: s for s in (lsp14, mpii16, icvl16, nyu14)}


def get(name: str) -> Skeleton:
    """A built-in skeleton by name."""
    try:
        return BUILTIN[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; known: {sorted(BUILTIN)}") from None
