"""``fast`` (the default): Ward linkage directly on the scaled maps; the suggested k is read from the
dendrogram, the k in 3..8 whose cut sits in the widest gap between consecutive merge heights."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from ..ward_torch import pairwise_sq_euclidean, ward_linkage_groups
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
    layers_apart = True
    summary = "Ward linkage on the feature maps; k from the largest gap in the dendrogram (milliseconds)"

    def link(self, x: torch.Tensor, seed: int = PAPER_SEED) -> Link:
        z = ward(x)
        return Link(z, gap_k(z[:, 2], x.shape[0]))

    def link_many_device(self, xs: Iterable[torch.Tensor], seed: int, done: Callable[[int, Link], None]) -> None:
        """Every layer's Ward linkage at once with the batched Lance-Williams kernel (``engine/ward_torch.py``) on
        the rows' device: on a GPU the maps never leave it, only the linkage matrices come back. float64
        arithmetic on the CPU (scipy's heights to about 1e-12), float32 on a GPU."""
        xs = list(xs)
        if not xs:
            return
        by_width: dict[int, list[int]] = {}
        for i, x in enumerate(xs):
            by_width.setdefault(int(x.shape[1]), []).append(i)
        groups = list(by_width.values())
        d2s, counts = [], []
        for idx in groups:
            cnt = [int(xs[i].shape[0]) for i in idx]
            padded = xs[idx[0]].new_zeros((len(idx), max(cnt), xs[idx[0]].shape[1]))
            for r, i in enumerate(idx):
                padded[r, : cnt[r]] = xs[i]
            d2s.append(pairwise_sq_euclidean(padded, torch.as_tensor(cnt)))
            counts.append(cnt)
        dtype = torch.float64 if xs[0].device.type == "cpu" else torch.float32
        for idx, links in zip(groups, ward_linkage_groups(d2s, counts, dtype=dtype)):
            for i, z in zip(idx, links):
                done(i, Link(z, gap_k(z[:, 2], int(xs[i].shape[0]))))
