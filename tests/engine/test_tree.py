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


def _points(kind: str, n: int, rng) -> np.ndarray:
    if kind == "distinct":
        return rng.random((n, 4))
    if kind == "ties":  # a 3 x 3 grid of values: many equal merge heights
        return rng.integers(0, 3, (n, 2)).astype(float)
    return np.repeat(rng.random((max(1, n // 3), 3)), 3, axis=0)[:n]  # copies: merges at height 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["distinct", "ties", "copies"])
def test_cuts_equal_scipys_fcluster_labels_and_numbering(kind):
    """``assign`` cuts monotone trees without scipy (engine.tree._cut_monotone): the same clusters, numbered
    the same, as fcluster by maxclust and by distance, for every k and at every merge height (ties too)."""
    from inv_widgets.engine.tree import Tree, assign

    rng = np.random.default_rng({"distinct": 0, "ties": 1, "copies": 2}[kind])
    cases = 0
    for _ in range(150):
        x = _points(kind, int(rng.integers(2, 40)), rng)
        n = len(x)
        if n < 2:
            continue
        z = linkage(x, "ward")
        tree = Tree("fast", z, n, 1, False)
        separable = 1 + int(np.count_nonzero(z[:, 2] > 0))
        for k in range(1, n + 2):
            want = np.unique(fcluster(z, min(k, n, separable), "maxclust"), return_inverse=True)[1]
            assert assign(tree, k=k).tolist() == want.tolist(), (k, z)
            cases += 1
        for height in [0.0, *z[:, 2], float(z[:, 2].mean()), float(z[:, 2].max() * 2)]:
            want = np.unique(fcluster(z, height, "distance"), return_inverse=True)[1]
            assert assign(tree, threshold=height).tolist() == want.tolist(), (height, z)
            cases += 1
    assert cases > 3000
