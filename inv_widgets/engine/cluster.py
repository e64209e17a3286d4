"""Clustering, as it was imported before the recipe registry: the names other code relies on.

The recipes live in ``engine/recipes/`` (one module per recipe, one registry), the dendrogram and its cuts in
``engine/tree.py``, the numeric kernels in ``engine/numeric.py``. ``RECIPES`` is the registry's live tuple of
names; ``build_tree``/``build_trees`` are the registry's.
"""
from __future__ import annotations

from .numeric import minmax_rows, silhouette
from .recipes import K_RANGE, PAPER_SEED, RECIPES, build_tree, build_trees
from .tree import Tree, assign, prune_mask

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
