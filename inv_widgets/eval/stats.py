"""Splits shared by every evaluation, and the confidence intervals (``inv_widgets.engine.stats``).

- **Splits**: ``dev`` (the demo's EVAL_SEED images, on which the defaults were chosen: recipe, cut rule,
  simulated players, layer point, map type) and ``test`` (TEST_SEED images, used only to report). Every
  figure says which split it comes from; nothing is chosen on ``test``.
- **Confidence intervals**: a seeded percentile bootstrap over the unit of replication, 95 %
  (:mod:`inv_widgets.engine.stats`: ``ci``, ``paired``, ``cluster_ci``, ``ratio_ci``).
"""

from __future__ import annotations

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
