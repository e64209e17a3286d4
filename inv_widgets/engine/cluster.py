"""Clustering recipes: from a layer's kept feature maps to a dendrogram, and from a cut to clusters.

A recipe turns the kept maps (n, h*w), min-max scaled to [0, 1], into a scipy linkage matrix and a
suggested number of clusters. The linkage is computed once; every cut reuses it.

- ``"fast"`` (default): Ward linkage directly on the scaled maps, Euclidean distances computed with one
  matrix product; the suggested k is read from the dendrogram (largest gap between merge heights for
  k in 3..8).
- ``"paper"``: as published: PCA to at most 50 components, t-SNE to 2-D, Ward on the 2-D points, k in
  3..8 by the best silhouette, light clusters pruned at cut time. t-SNE is our exact, deterministic
  implementation (engine/tsne.py, scikit-learn's optimiser); ``"paper-sklearn"`` runs scikit-learn's
  Barnes-Hut TSNE with seed 432 instead, as the authors did (about 4x slower).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage as scipy_linkage

from .numeric import condensed_euclidean, minmax_rows, silhouette

__all__ = [
    "RECIPES",
    "Tree",
    "build_tree",
    "build_trees",
    "minmax_rows",
    "assign",
    "prune_mask",
    "silhouette",
    "K_RANGE",
    "PAPER_SEED",
]

RECIPES = ("fast", "paper", "paper-sklearn")
K_RANGE = (3, 8)
PAPER_SEED = 432


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
        return self.linkage[:, 2].copy()

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


def _gap_k(heights: np.ndarray, n: int, k_range=K_RANGE) -> int:
    """The k in k_range whose cut sits in the widest gap between consecutive merge heights."""
    lo, hi = max(2, k_range[0]), min(k_range[1], n)
    if n <= 2 or hi < lo:
        return max(1, min(n, k_range[0]))
    best, best_gap = lo, -1.0
    for k in range(lo, hi + 1):
        upper = heights[n - k]
        lower = heights[n - k - 1] if k < n else 0.0
        gap = upper - lower
        if gap > best_gap + 1e-12:
            best, best_gap = k, gap
    return best


def _silhouette_k(points: np.ndarray, z: np.ndarray, n: int, k_range=K_RANGE) -> int:
    """The k in k_range with the best silhouette of the cut (distances computed once)."""
    from scipy.spatial.distance import pdist, squareform

    lo, hi = k_range[0], min(k_range[1], n - 1)
    if hi < lo:
        return max(1, min(n, lo))
    dist = squareform(pdist(points))
    best, best_s = lo, -np.inf
    for k in range(lo, hi + 1):
        labels = fcluster(z, k, criterion="maxclust")
        if len(np.unique(labels)) < 2:
            continue
        s = silhouette(dist, labels)
        if s > best_s + 1e-12:
            best, best_s = k, s
    return best


def _pca(x: torch.Tensor) -> torch.Tensor:
    """The paper's first step: PCA to min(50, n, d) components (the scaled maps themselves if d is smaller)."""
    from .tsne import pca_scores

    n, d = x.shape
    return pca_scores(x, min(50, n, d)) if min(50, n) < d else x.double()


def _paper_embeddings(pcs: list[torch.Tensor], seed: int, reference: bool = False, on_done=None) -> list[np.ndarray]:
    """t-SNE to 2-D of several layers' principal components; our t-SNE runs them side by side.
    ``on_done(i, points)`` as each is ready."""
    from .tsne import capped_perplexity, tsne_exact_many

    perplexities = [capped_perplexity(30.0, pc.shape[0]) for pc in pcs]  # 30 as published
    if not reference:
        return tsne_exact_many(pcs, perplexities, on_done=on_done)
    from sklearn.manifold import TSNE  # scikit-learn's Barnes-Hut t-SNE, as the authors ran it (slow)

    out = []
    for i, (pc, perplexity) in enumerate(zip(pcs, perplexities)):
        out.append(TSNE(n_components=2, random_state=seed, perplexity=perplexity, init="pca").fit_transform(
            pc.numpy()).astype(np.float64))
        if on_done:
            on_done(i, out[-1])
    return out


def build_tree(maps: torch.Tensor, recipe: str = "fast", seed: int = PAPER_SEED) -> Tree:
    """Dendrogram of ``maps`` (n, h, w) or (n, d) for one recipe. Deterministic for a given input."""
    return build_trees([maps], recipe, seed)[0]


def build_trees(maps_list: list[torch.Tensor], recipe: str = "fast", seed: int = PAPER_SEED,
                progress: Callable[[int], None] | None = None) -> list[Tree]:
    """Dendrograms of several layers' maps, the same trees as ``build_tree`` one layer at a time.

    For the paper recipes the layers' t-SNE embeddings are computed side by side, which is faster.
    ``progress(i)`` is called as the tree of ``maps_list[i]`` is ready.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {RECIPES}")
    trees: list[Tree | None] = [None] * len(maps_list)

    def done(i: int, tree: Tree) -> None:
        trees[i] = tree
        if progress:
            progress(i)

    embed, pcs = [], []
    for i, maps in enumerate(maps_list):
        n = maps.shape[0]
        if n < 2:
            done(i, Tree(recipe, np.zeros((0, 4)), n, max(n, 1), recipe != "fast"))
            continue
        x = minmax_rows(maps.reshape(n, -1).float())
        if recipe == "fast":
            z = scipy_linkage(condensed_euclidean(x), method="ward")
            done(i, Tree(recipe, z, n, _gap_k(z[:, 2], n), False))
        elif n < 4:  # too few points for t-SNE: cluster the maps themselves
            done(i, Tree(recipe, scipy_linkage(condensed_euclidean(x), method="ward"), n, n, True))
        else:  # keep only the (n, <= 50) components of each layer until the embeddings are done
            embed.append(i)
            pcs.append(_pca(x.cpu()))

    def embedded(j: int, pts: np.ndarray) -> None:
        i, n = embed[j], pcs[j].shape[0]
        z = scipy_linkage(pts, method="ward", metric="euclidean")
        done(i, Tree(recipe, z, n, _silhouette_k(pts, z, n), True, embedding=pts))

    if embed:
        _paper_embeddings(pcs, seed, reference=recipe == "paper-sklearn", on_done=embedded)
    return trees


def assign(tree: Tree, k: int | None = None, threshold: float | None = None) -> np.ndarray:
    """Cluster index 0..K-1 for every leaf, for a cut by k, by height, or the suggested cut."""
    if k is not None and threshold is not None:
        raise ValueError("give either k or threshold, not both")
    n = tree.n
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    if threshold is not None:
        if not np.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold}")
        labels = fcluster(tree.linkage, float(threshold), criterion="distance")
    else:
        k = tree.suggested_k if k is None else int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        labels = fcluster(tree.linkage, min(k, n), criterion="maxclust")
    _, idx = np.unique(labels, return_inverse=True)
    return idx.astype(np.int64)


def prune_mask(weights: np.ndarray) -> np.ndarray:
    """The paper's pruning: keep clusters whose weight is at least max(max_w / 3, mean_w / 2)."""
    if weights.size == 0:
        return np.zeros(0, dtype=bool)
    bar = max(weights.max() / 3.0, weights.mean() / 2.0)
    return weights >= bar - 1e-9
