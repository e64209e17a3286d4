"""``paper``: as published. PCA to at most 50 components, t-SNE to 2-D (perplexity 30), Ward on the 2-D
points, k in 3..8 by the best silhouette, light clusters pruned at cut time.

The t-SNE is our exact, deterministic implementation (engine/tsne.py, scikit-learn's optimiser step for
step); the layers of one explanation are embedded side by side, the same embeddings as one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster
from scipy.cluster.hierarchy import linkage as scipy_linkage

from ..numeric import pca_scores, silhouette
from ..runtime import limited_threads
from .base import K_RANGE, PAPER_SEED, Link, Recipe, ward

__all__ = ["Paper", "silhouette_k", "pca50"]


def silhouette_k(points: np.ndarray, z: np.ndarray, n: int, k_range=K_RANGE) -> int:
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


def pca50(x: torch.Tensor) -> torch.Tensor:
    """The paper's first step: PCA to min(50, n, d) components (the scaled maps themselves if d is smaller).

    On one thread: MKL's threaded symmetric eigensolver took 6-11 s instead of 0.4 s for a 512 x 512 Gram matrix
    on this project's busy 2-core machine (its threads spin while the cores are taken), and its result depends on
    the thread count in the last bits, which t-SNE can amplify: on one thread the embedding is the same on every
    machine."""
    n, d = x.shape
    if min(50, n) < d:
        with limited_threads(1):
            return pca_scores(x, min(50, n, d))
    return x.double()


class Paper(Recipe):
    name = "paper"
    prune = True
    distinct_rows = True  # t-SNE of repeated points is degenerate (scikit-learn's crashes the process)
    summary = "As published: PCA, t-SNE (seed 432), Ward, k by silhouette, light clusters pruned (seconds per layer)"

    #: Fewer points than this are clustered as they are: t-SNE needs a few neighbours per point.
    MIN_POINTS = 4
    #: t-SNE iterations (scikit-learn's default, as published), the first 250 with early exaggeration.
    MAX_ITER = 1000

    def embed(self, pcs: list[torch.Tensor], seed: int, on_done: Callable[[int, np.ndarray], None]) -> None:
        """t-SNE to 2-D of several layers' principal components, side by side; ``on_done(i, points)``."""
        from ..tsne import capped_perplexity, tsne_exact_many

        tsne_exact_many(
            pcs,
            [capped_perplexity(30.0, pc.shape[0]) for pc in pcs],
            on_done=on_done,  # 30 as published
            max_iter=self.MAX_ITER,
        )

    def link(self, x: torch.Tensor, seed: int = PAPER_SEED) -> Link:
        out: list[Link] = []
        self.link_many([x], seed, lambda i, link: out.append(link))
        return out[0]

    def link_many(self, xs: Iterable[torch.Tensor], seed: int, done: Callable[[int, Link], None]) -> None:
        ids, pcs = [], []
        for i, x in enumerate(xs):
            if x.shape[0] < self.MIN_POINTS:  # too few points for t-SNE: cluster the maps themselves
                done(i, Link(ward(x), x.shape[0]))
            else:  # keep only the (n, <= 50) components of each layer until the embeddings are done
                ids.append(i)
                pcs.append(pca50(x.cpu()))

        def embedded(j: int, pts: np.ndarray) -> None:
            z = scipy_linkage(pts, method="ward", metric="euclidean")
            done(ids[j], Link(z, silhouette_k(pts, z, pts.shape[0]), pts))

        if pcs:
            self.embed(pcs, seed, embedded)
