"""Clustering of labels (step 5 of :mod:`~inv_widgets.labels.aggregate`): unit-norm embeddings, cosine distance,
complete linkage, the number of clusters by silhouette, scipy's kernels called without their per-call checks."""

from __future__ import annotations

import numpy as np

from ..engine.numeric import silhouette

try:  # the kernels scipy's linkage(method="complete") and fcluster run, called without their checks and dispatch
    from scipy.cluster import _hierarchy as _scipy_hierarchy
    from scipy.cluster.hierarchy import _LINKAGE_METHODS

    _NN_CHAIN, _COMPLETE = _scipy_hierarchy.nn_chain, _LINKAGE_METHODS["complete"]
    _CLUSTER_DIST, _CLUSTER_MAXCLUST = _scipy_hierarchy.cluster_dist, _scipy_hierarchy.cluster_maxclust_dist
except (ImportError, AttributeError, KeyError):  # pragma: no cover - a scipy without them: the public calls
    _NN_CHAIN = _COMPLETE = _CLUSTER_DIST = _CLUSTER_MAXCLUST = None


def _complete_linkage(y: np.ndarray, n: int) -> np.ndarray:
    """``scipy.cluster.hierarchy.linkage(y, "complete")`` of a finite condensed distance vector, bit for bit: its
    kernel, without the checks and array-API dispatch that cost more than the kernel for a map's few labels
    (thousands of groups with ``scope="map"``)."""
    if _NN_CHAIN is None:  # pragma: no cover
        from scipy.cluster.hierarchy import linkage

        return linkage(y, method="complete")
    return np.asarray(_NN_CHAIN(np.ascontiguousarray(y, dtype=np.float64), int(n), _COMPLETE))


def _cluster_labels(emb: np.ndarray, distance_threshold: float, max_k: int) -> np.ndarray:
    """Cluster ids (0..k-1) of unit-norm embeddings: cosine, complete linkage, k by silhouette."""
    from scipy.spatial.distance import squareform

    n = len(emb)
    if n == 1:
        return np.zeros(1, dtype=int)
    dist = np.clip(1.0 - emb @ emb.T, 0.0, 2.0).astype(np.float64)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2
    if n == 2:
        return np.array([0, 0]) if dist[0, 1] <= distance_threshold else np.array([0, 1])
    z = _complete_linkage(squareform(dist, checks=False), n)
    if z[-1, 2] <= distance_threshold:
        return np.zeros(n, dtype=int)
    cuts = _Cuts(z)
    best_s, best = -np.inf, None
    seen = set()
    for k in _candidate_ks(n, max_k):
        labels = cuts.maxclust(k)
        got = len(np.unique(labels))
        if got in seen or not 2 <= got <= n - 1:
            continue
        seen.add(got)
        s = silhouette(dist, labels)
        if s > best_s + 1e-12:
            best_s, best = s, labels
    if best is None:
        # No k splits the labels (e.g. a few labels all equally far apart): keep apart what is
        # farther than the threshold instead of forcing unrelated labels together.
        best = cuts.at(distance_threshold)
    return np.unique(best, return_inverse=True)[1]


class _Cuts:
    """Flat clusters of a complete-linkage tree, as ``scipy.cluster.hierarchy.fcluster`` makes them
    (``criterion="maxclust"`` and ``"distance"``, the same partitions, tested), without its per-call
    validation: a group of a few labels is cut dozens of times, and with many small groups (``scope="map"``)
    that validation was most of the time. fcluster's own kernels where scipy has them (the clusters' numbers
    may differ from the walk below; the partitions do not, and nothing here depends on the numbers)."""

    def __init__(self, z: np.ndarray):
        self.z = np.ascontiguousarray(z, dtype=np.float64)
        self.n = len(z) + 1
        self.heights = self.z[:, 2]  # non-decreasing: complete linkage is monotonic

    def at(self, threshold: float) -> np.ndarray:
        """Components of the merges at heights <= ``threshold`` (fcluster's ``"distance"``)."""
        if _CLUSTER_DIST is not None:
            out = np.zeros(self.n, dtype=np.int32)
            _CLUSTER_DIST(self.z, out, float(threshold), int(self.n))
            return out
        return self._components(int(np.searchsorted(self.heights, threshold, side="right")))

    def maxclust(self, k: int) -> np.ndarray:
        """fcluster's ``"maxclust"``: the lowest merge height at which at most ``k`` clusters are left, and
        every merge at that height (ties merge together, so fewer than ``k`` clusters may come out)."""
        n = self.n
        if k >= n:
            return np.arange(n)
        if _CLUSTER_MAXCLUST is not None:
            out = np.zeros(n, dtype=np.int32)
            _CLUSTER_MAXCLUST(self.z, out, int(n), int(k))
            return out
        return self.at(self.heights[n - k - 1])

    def _components(self, merges: int) -> np.ndarray:
        n = self.n
        parent = list(range(2 * n - 1))
        for j in range(merges):
            a, b = int(self.z[j, 0]), int(self.z[j, 1])
            parent[a] = parent[b] = n + j

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        return np.array([root(i) for i in range(n)])


def _candidate_ks(n: int, max_k: int) -> list[int]:
    """k = 2..min(n-1, max_k): every value up to 30, then about 30 geometric steps."""
    hi = min(n - 1, max_k)
    if hi < 2:
        return [2]
    ks = list(range(2, min(hi, 30) + 1))
    if hi > 30:
        ks += sorted({int(round(k)) for k in np.geomspace(31, hi, num=30)})
    return sorted(set(ks))
