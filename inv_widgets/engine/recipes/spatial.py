"""``spatial``: channels grouped by *where* they respond. Each kept map (min-max scaled, as every recipe gets
it) is divided by its sum, so that it is a distribution over the pixels, then Ward linkage on these
distributions; the suggested k is the widest gap between merge heights for k in 3..8, as in ``fast``.

Why: min-max scaling (``fast``) stretches every map to full contrast, so a channel that responds faintly
all over the background (a texture) becomes as strong a pattern as one that fires on a part, and such
channels end up in clusters of their own, often singletons, whose cluster maps sit on no part. As
distributions, faint and broad responses all lie near the uniform distribution and gather in one cluster,
while sharply concentrated maps are far from everything and are grouped by the place where their mass is.
On the parts world (issue 10, ``benchmarks/grouping_study.py``) this makes cluster maps purer than random
groups of the same channels in most layers, where ``fast``'s are less pure than random groups in nearly
every layer; README gives the figures and the choice of the default.

Degenerate layers: when every map is the same distribution (constant maps scale to zeros, identical or
proportional maps to one distribution) there is nothing to separate, and the suggested cut is one cluster.
"""

from __future__ import annotations

import torch

from .base import PAPER_SEED, Link, Recipe, ward
from .fast import gap_k

__all__ = ["Spatial", "distributions", "all_alike"]

#: Rows that differ by no more than this (relative to their largest value) are the same distribution.
ALIKE = 1e-6


def distributions(x: torch.Tensor) -> torch.Tensor:
    """Rows ``x`` (n, d) >= 0 divided by their means (each sums to d; rows summing to 0 stay zeros), float32.

    Dividing by the mean rather than the sum keeps values near 1, so distances computed in float32 (as
    ``fast`` does) keep their precision at any resolution; the dendrogram is the same up to a constant factor.
    """
    x = x.float()
    s = x.mean(1, keepdim=True)
    return torch.where(s > 0, x / s.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(x))


def all_alike(p: torch.Tensor) -> bool:
    """Whether every row of ``p`` is (numerically) the same."""
    top = float(p.abs().max()) if p.numel() else 0.0
    return bool((p - p[:1]).abs().max() <= ALIKE * max(top, 1e-30)) if p.numel() else True


class Spatial(Recipe):
    name = "spatial"
    prune = False
    layers_apart = True
    summary = (
        "Ward linkage on where each feature map responds (the map as a distribution over pixels); "
        "k from the largest gap"
    )

    def link(self, x: torch.Tensor, seed: int = PAPER_SEED) -> Link:
        p = distributions(x)
        z = ward(p)
        k = 1 if all_alike(p) else gap_k(z[:, 2], x.shape[0])
        return Link(z, k)
