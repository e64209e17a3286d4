"""The one walk over a dendrogram's nodes (engine/tree.py), against scipy's own dendrogram layout."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import dendrogram, fcluster, linkage, to_tree

from inv_widgets.engine.tree import nodes


@pytest.mark.parametrize("n,seed", [(2, 0), (7, 1), (40, 2)])
def test_walk_matches_scipys_dendrogram(n, seed):
    z = linkage(np.random.default_rng(seed).normal(size=(n, 3)), "ward")
    walk = nodes(z)
    d = dendrogram(z, no_plot=True)
    assert walk.order.tolist() == d["leaves"]
    # scipy draws leaf p at x = 5 + 10 p: the same U shapes, scaled
    ours = sorted(zip(walk.x[walk.left].tolist(), walk.x[walk.right].tolist(), walk.height[n:].tolist()))
    theirs = sorted(((ic[0] - 5) / 10, (ic[3] - 5) / 10, dc[1]) for ic, dc in zip(d["icoord"], d["dcoord"]))
    for a, b in zip(ours, theirs):
        assert sorted(a[:2]) == pytest.approx(sorted(b[:2])) and a[2] == pytest.approx(b[2])
    # sizes, parents and leaves of every node, against scipy's tree objects
    root = to_tree(z, rd=True)[1]
    for node in root:
        assert walk.size[node.id] == node.count
        assert sorted(walk.leaves(node.id).tolist()) == sorted(node.pre_order())
        for child in (node.left, node.right):
            if child is not None:
                assert walk.parent[child.id] == node.id
    assert walk.parent[2 * n - 2] == -1


def test_clusters_of_nodes_follow_the_cut():
    z = linkage(np.array([[0.0], [0.1], [5.0], [5.2], [9.0]]), "ward")
    walk = nodes(z)
    labels = fcluster(z, 3, criterion="maxclust") - 1
    c = walk.clusters(labels)
    assert c[:5].tolist() == labels.tolist()
    merged_inside = [i for i in range(4) if c[5 + i] >= 0]
    assert len(merged_inside) == 2  # the two within-cluster merges; the rest are above the cut
    assert (c[5:] == -2).sum() == 2


def test_a_single_leaf_has_no_merges():
    walk = nodes(np.zeros((0, 4)))
    assert walk.n == 1 and walk.order.tolist() == [0] and walk.leaves(0).tolist() == [0]
