"""Pure computation: capture (hooks), weights, clustering recipes (a registry), cluster maps, reveal masks.

numpy / torch / scipy / scikit-learn only: no widgets, no files, no printing.
"""

from .capture import Captured, capture, find_layers, fingerprint, run_model
from .explanation import Clusters, Explanation, LayerResult, MapKey, build_explanations
from .maps import REVEAL_PERCENTS, reveal_image, reveal_mask
from .recipes import RECIPES, Recipe, build_tree, build_trees, get_recipe, recipe_names, register_recipe
from .tree import Tree, assign, prune_mask
from .weights import KEEP_FACTOR, gradcam_lowres, guided_alpha, guided_weights, keep_channels, to_percent

__all__ = [
    "Captured",
    "capture",
    "find_layers",
    "fingerprint",
    "run_model",
    "RECIPES",
    "Recipe",
    "build_tree",
    "build_trees",
    "get_recipe",
    "recipe_names",
    "register_recipe",
    "Tree",
    "assign",
    "prune_mask",
    "Clusters",
    "Explanation",
    "LayerResult",
    "MapKey",
    "build_explanations",
    "REVEAL_PERCENTS",
    "reveal_image",
    "reveal_mask",
    "KEEP_FACTOR",
    "gradcam_lowres",
    "guided_alpha",
    "guided_weights",
    "keep_channels",
    "to_percent",
]
