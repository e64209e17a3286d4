"""A layer's dendrogram and its cuts: the tree a recipe builds, one walk over its nodes, cluster assignment.

The walk (:class:`Nodes`) is the one place that follows a scipy linkage matrix node by node: drawing the
dendrogram (widgets/dendrogram.py) and finding the node of a cluster map (``LayerResult.locate``) both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.cluster.hierarchy import fcluster, leaves_list

__all__ = ["Tree", "Nodes", "nodes", "assign", "prune_mask", "one_cluster_linkage", "expand_linkage"]


@dataclass(frozen=True)
class Nodes:
    """Every node of a dendrogram over n leaves, numbered as scipy does: leaves 0..n-1, merge i is node n + i.

    Arrays of length 2n - 1: ``x`` the horizontal position (leaves at 0..n-1 in ``order``, a merge halfway
    between its two children), ``height`` (0 for leaves), ``size`` (leaves below), ``parent`` (-1 for the root)
    and ``first``, the position in ``order`` of its leftmost leaf: a node's leaves are always contiguous in
    the drawing order, ``order[first:first + size]``. ``left``/``right`` (n - 1,) are each merge's children.
    """

    n: int
    order: np.ndarray
    x: np.ndarray
    height: np.ndarray
    size: np.ndarray
    parent: np.ndarray
    first: np.ndarray
    left: np.ndarray
    right: np.ndarray

    def leaves(self, node: int) -> np.ndarray:
        """The leaves under ``node``, in drawing order."""
        return self.order[self.first[node] : self.first[node] + self.size[node]]

    def clusters(self, leaf_cluster: np.ndarray) -> np.ndarray:
        """The cluster of every node given each leaf's: a merge inside one cluster has it, others -2."""
        c = np.full(2 * self.n - 1, -2, dtype=np.int64)
        c[: self.n] = np.asarray(leaf_cluster, dtype=np.int64)
        for i in range(self.n - 1):  # children always come before parents in a linkage matrix
            a, b = self.left[i], self.right[i]
            c[self.n + i] = c[a] if c[a] == c[b] else -2
        return c


def nodes(linkage: np.ndarray) -> Nodes:
    """Walk a linkage matrix once: positions, heights, sizes, parents and leaf ranges of every node."""
    z = np.asarray(linkage, dtype=np.float64)
    m = z.shape[0]
    n = m + 1
    left = z[:, 0].astype(np.int64)
    right = z[:, 1].astype(np.int64)
    order = leaves_list(z) if m else np.arange(n)
    x = np.empty(2 * n - 1)
    x[order] = np.arange(n, dtype=np.float64)
    first = np.empty(2 * n - 1, dtype=np.int64)
    first[order] = np.arange(n)
    parent = np.full(2 * n - 1, -1, dtype=np.int64)
    for i in range(m):
        a, b = left[i], right[i]
        x[n + i] = 0.5 * (x[a] + x[b])
        first[n + i] = min(first[a], first[b])
        parent[a] = parent[b] = n + i
    height = np.r_[np.zeros(n), z[:, 2]]
    size = np.r_[np.ones(n), z[:, 3]].astype(np.int64)
    return Nodes(n, order, x, height, size, parent, first, left, right)


@dataclass(frozen=True)
class Tree:
    """A layer's dendrogram over its kept channels."""

    recipe: str
    linkage: np.ndarray  # (n-1, 4) scipy linkage matrix; (0, 4) when n < 2
    n: int  # number of leaves (kept channels)
    suggested_k: int
    prune: bool  # whether cuts drop light clusters by default (the paper's rule)
    embedding: np.ndarray | None = None  # the points that were clustered when not the maps themselves

    @property
    def heights(self) -> np.ndarray:
        """The merge heights, bottom up (the linkage's third column, a copy)."""
        return self.linkage[:, 2].copy()

    @cached_property
    def nodes(self) -> Nodes:
        """The walk over this tree's nodes (made once)."""
        return nodes(self.linkage)

    def threshold_for(self, k: int) -> float:
        """A cut height that yields k clusters: halfway between the merges that separate k-1 and k."""
        h = self.heights
        n = self.n
        k = int(np.clip(k, 1, max(n, 1)))
        if n < 2:
            return 0.0
        upper = h[n - k] if k > 1 else h[-1] * 1.05 + 1e-9
        lower = h[n - k - 1] if k < n else 0.0
        return float((upper + lower) / 2)

    def k_at(self, height: float) -> int:
        """How many clusters a cut at ``height`` gives (merges at or below it are joined)."""
        if self.n < 2:
            return self.n
        return self.n - int(np.sum(self.linkage[:, 2] <= height))


def assign(tree: Tree, k: int | None = None, threshold: float | None = None) -> np.ndarray:
    """Cluster index 0..K-1 for every leaf, for a cut by k, by height, or the suggested cut."""
    if k is not None and threshold is not None:
        raise ValueError("give either k or threshold, not both")
    n = tree.n
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    z = tree.linkage
    h = z[:, 2]
    monotone = bool(np.all(h[1:] >= h[:-1]))
    if threshold is not None:
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold}")
        if monotone:
            return _cut_monotone(z, float(threshold))
        labels = fcluster(z, float(threshold), criterion="distance")
    else:
        k = tree.suggested_k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        # merges at height 0 join copies of one map: no cut by k separates them
        separable = 1 + int(np.count_nonzero(h > 0))
        k = min(k, n, separable)
        if k >= n:  # every leaf alone, numbered as the leaves are (as maxclust does)
            return np.arange(n, dtype=np.int64)
        if monotone:  # the lowest merge height that leaves at most k clusters (what maxclust searches for)
            return _cut_monotone(z, float(h[n - k - 1]))
        labels = fcluster(z, k, criterion="maxclust")
    _, idx = np.unique(labels, return_inverse=True)
    return idx.astype(np.int64)


def _cut_monotone(z: np.ndarray, height: float) -> np.ndarray:
    """``fcluster(z, height, "distance")`` as 0-based labels, for a linkage whose merge heights never go down
    (Ward's, and every recipe's here): the same clusters (merges at or below ``height`` joined), numbered in
    the same order as scipy's walk numbers them (tested against it). Without scipy's checks of the matrix,
    which cost several times the cut itself at these sizes (a dataset run cuts every layer of every image)."""
    m = z.shape[0]
    n = m + 1
    left = z[:, 0].astype(np.int64).tolist()
    right = z[:, 1].astype(np.int64).tolist()
    joined = (z[:, 2] <= height).tolist()
    labels = [0] * n
    count, leader = 0, -1
    # depth first from the root, left before right: a joined merge met on the way down opens a cluster (all
    # its leaves), a leaf outside every joined merge is a cluster by itself, numbered when its parent is left
    stack = [(n + m - 1, False)]
    while stack:
        node, children_done = stack.pop()
        i = node - n
        a, b = left[i], right[i]
        if not children_done:
            if leader < 0 and joined[i]:
                leader = node
                count += 1
            stack.append((node, True))
            if b >= n:
                stack.append((b, False))
            if a >= n:
                stack.append((a, False))
            continue
        for leaf in (a, b):
            if leaf < n:
                if leader < 0:
                    count += 1
                labels[leaf] = count - 1
        if leader == node:
            leader = -1
    return np.asarray(labels, dtype=np.int64)


def prune_mask(weights: np.ndarray) -> np.ndarray:
    """The paper's pruning: keep clusters whose weight is at least max(max_w / 3, mean_w / 2)."""
    if weights.size == 0:
        return np.zeros(0, dtype=bool)
    bar = max(weights.max() / 3.0, weights.mean() / 2.0)
    return weights >= bar - 1e-9


def one_cluster_linkage(n: int) -> np.ndarray:
    """A linkage over ``n`` leaves that are all the same: every merge at height 0, so every cut gives one cluster."""
    z = np.zeros((max(n - 1, 0), 4))
    for i in range(n - 1):
        z[i] = (0 if i == 0 else n + i - 1, i + 1, 0.0, i + 2)
    return z


def expand_linkage(z: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The linkage over ``len(groups)`` leaves from a linkage ``z`` over the distinct ones.

    ``groups[i]`` is the distinct row leaf ``i`` is a copy of (0..m-1, ``z`` is over m leaves): copies are merged
    first, at height 0, then the distinct rows' merges follow as ``z`` says, so no cut separates two copies.
    """
    groups = np.asarray(groups, dtype=np.int64)
    n, m = len(groups), int(groups.max()) + 1
    rows: list[tuple[float, float, float, float]] = []
    node = np.empty(m, dtype=np.int64)  # the node standing for each distinct row
    size = np.zeros(m, dtype=np.int64)
    for g in range(m):
        members = np.flatnonzero(groups == g)
        node[g], size[g] = members[0], 1
        for leaf in members[1:]:
            size[g] += 1
            rows.append((float(node[g]), float(leaf), 0.0, float(size[g])))
            node[g] = n + len(rows) - 1
    ids = list(node)  # ids of z's nodes in the expanded tree: leaves first, then each merge as it is made
    sizes = list(size)
    for a, b, h, _ in np.asarray(z, dtype=np.float64):
        a, b = int(a), int(b)
        s = sizes[a] + sizes[b]
        rows.append((float(ids[a]), float(ids[b]), float(h), float(s)))
        ids.append(n + len(rows) - 1)
        sizes.append(s)
    return np.array(rows, dtype=np.float64).reshape(-1, 4)
