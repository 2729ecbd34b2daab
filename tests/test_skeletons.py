"""Skeleton definitions: trees, orders, mappings from file orders."""
import numpy as np
import pytest

from vl4pose_jax import skeletons


@pytest.mark.parametrize("skeleton", list(skeletons.BUILTIN.values()), ids=str)
def test_builtin_trees_and_orders(skeleton):
    assert skeleton.num_links == skeleton.num_joints - 1
    assert sorted(skeleton.topo_order.tolist()) == list(range(skeleton.num_joints))
    seen = set()
    for j in skeleton.topo_order:  # parents come before children
        assert skeleton.parents[j] == -1 or skeleton.parents[j] in seen
        seen.add(int(j))
    done = set()
    for k in skeleton.links_bottom_up:  # all links below a child are processed before it
        parent, child = skeleton.links[k]
        below = {i for i, (p, _) in enumerate(skeleton.links) if p == child}
        assert below <= done
        done.add(int(k))
    perm = skeleton.flip_permutation()
    assert sorted(perm.tolist()) == list(range(skeleton.num_joints))
    assert (perm[perm] == np.arange(skeleton.num_joints)).all()


def test_reference_link_orders():
    s = skeletons.lsp14
    named = [(s.names[p], s.names[c]) for p, c in s.links]
    assert named[0] == ("head", "neck") and named[7] == ("lsho", "lhip")
    assert s.names[s.root] == "head" and s.depth.max() == 5
    m = skeletons.mpii16
    assert [(m.names[p], m.names[c]) for p, c in m.links][2] == ("thorax", "pelvis")
    assert m.depth.max() == 6


def test_source_index_maps_file_orders():
    lsp_file = ["rankl", "rknee", "rhip", "lhip", "lknee", "lankl", "rwri", "relb", "rsho",
                "lsho", "lelb", "lwri", "neck", "head"]
    assert [lsp_file[i] for i in skeletons.LSP_SOURCE_INDEX] == list(skeletons.lsp14.names)
    mpii_file = ["rankl", "rknee", "rhip", "lhip", "lknee", "lankl", "pelvis", "thorax", "neck",
                 "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri"]
    assert [mpii_file[i] for i in skeletons.MPII_SOURCE_INDEX] == list(skeletons.mpii16.names)


@pytest.mark.parametrize("links, message", [
    (((0, 1), (1, 2)), "needs 3 links"),
    (((0, 1), (1, 2), (2, 0)), "not reachable"),
    (((0, 1), (2, 1), (0, 3)), "two parents"),
    (((0, 1), (2, 3), (3, 2)), "not reachable"),
    (((0, 1), (1, 1), (0, 3)), "itself"),
    (((0, 1), (1, 9), (0, 3)), "outside"),
])
def test_invalid_skeletons_are_rejected(links, message):
    with pytest.raises(ValueError, match=message):
        skeletons.Skeleton(("a", "b", "c", "d"), links)


def test_custom_skeleton_is_hashable_and_equal_by_definition():
    a = skeletons.Skeleton(("r", "x", "y"), [(0, 1), (1, 2)])
    b = skeletons.Skeleton(["r", "x", "y"], ((0, 1), (1, 2)), name="other")
    assert a == b and hash(a) == hash(b)
    assert a.links_bottom_up.tolist() == [1, 0]
