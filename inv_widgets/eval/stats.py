"""Splits shared by every evaluation, and the confidence intervals (``inv_widgets.engine.stats``).

- **Splits**: ``dev`` (the demo's EVAL_SEED images, on which the defaults were chosen: recipe, cut rule,
  simulated players, layer point, map type) and ``test`` (TEST_SEED images, used only to report). Every
  figure says which split it comes from; nothing is chosen on ``test``.
- **Confidence intervals**: a seeded percentile bootstrap over the unit of replication, 95 %
  (:mod:`inv_widgets.engine.stats`: ``ci``, ``paired``, ``cluster_ci``, ``ratio_ci``); ``auroc`` with a bootstrap CI.
"""

from __future__ import annotations

import numpy as np

from ..engine.stats import CONFIDENCE, N_BOOT, Figure, ci, cluster_ci, paired, ratio_ci

__all__ = [
    "SPLITS",
    "split_seed",
    "split_data",
    "Figure",
    "ci",
    "paired",
    "cluster_ci",
    "ratio_ci",
    "N_BOOT",
    "CONFIDENCE",
    "auroc",
]

#: The splits by name.
SPLITS = ("dev", "test")


def split_seed(split: str) -> int:
    """The PartsDataset seed of a split: ``"dev"`` (EVAL_SEED) or ``"test"`` (TEST_SEED)."""
    from ..demo.parts import EVAL_SEED, TEST_SEED

    if split not in SPLITS:
        raise ValueError(f"split {split!r} is unknown; use 'dev' (to choose) or 'test' (to report)")
    return {"dev": EVAL_SEED, "test": TEST_SEED}[split]


def split_data(split: str, n: int, offset: int = 0):
    """The demo model and ``n`` images of ``split`` from ``offset`` on: ``(model, PartsDataset)`` (the dataset
    holds ``offset + n`` images; use indices ``offset .. offset + n - 1``)."""
    import inv_widgets as inv

    return inv.demo.load(n=offset + n, seed=split_seed(split))


def auroc(pos, neg, *, seed: int = 0, n_boot: int = 2000):
    """P(a positive's score > a negative's) (ties count half) with a bootstrap 95 % CI resampling both groups."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if not len(pos) or not len(neg):
        return Figure(float("nan"), float("nan"), float("nan"), 0)

    def a(p, q):
        return float(((p[:, None] > q[None]).sum() + 0.5 * (p[:, None] == q[None]).sum()) / (len(p) * len(q)))

    rng = np.random.default_rng(seed)
    boot = [a(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(n_boot)]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return Figure(a(pos, neg), float(lo), float(hi), len(pos) + len(neg))
