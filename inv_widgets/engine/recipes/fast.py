"""``fast`` (the default): Ward linkage directly on the scaled maps; the suggested k is read from the
dendrogram, the k in 3..8 whose cut sits in the widest gap between consecutive merge heights."""
from __future__ import annotations

import numpy as np
import torch

from .base import K_RANGE, PAPER_SEED, Link, Recipe, ward

__all__ = ["Fast", "gap_k"]


def gap_k(heights: np.ndarray, n: int, k_range=K_RANGE) -> int:
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


class Fast(Recipe):
    name = "fast"
    prune = False
    summary = "Ward linkage on the feature maps; k from the largest gap in the dendrogram (milliseconds)"

    def link(self, x: torch.Tensor, seed: int = PAPER_SEED) -> Link:
        z = ward(x)
        return Link(z, gap_k(z[:, 2], x.shape[0]))
