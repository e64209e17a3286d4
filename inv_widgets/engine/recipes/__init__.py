"""Clustering recipes: one registry, one module per recipe.

- ``fast`` (default, ``fast.py``): Ward linkage on the scaled maps, k from the widest gap between merges.
- ``paper`` (``paper.py``): as published, PCA, exact t-SNE, Ward, k by silhouette, light clusters pruned.
- ``paper-sklearn`` (``paper_sklearn.py``): ``paper`` with scikit-learn's Barnes-Hut TSNE, as the authors ran it.
- ``spatial`` (``spatial.py``): Ward linkage on each map as a distribution over the pixels (where it responds).

This module is the only place that knows which recipes exist and the only one that checks a recipe name:
Session, Explanation, the widgets, the CLI and the evaluations ask :func:`get_recipe` (which raises a
``ValueError`` naming the choices) or :func:`recipe_names`. Adding a recipe:

    # inv_widgets/engine/recipes/nmf.py
    from .base import Link, Recipe

    class NMF(Recipe):
        name = "nmf"
        summary = "..."

        def link(self, x, seed):          # x: (n, d) kept maps, rows scaled to [0, 1]
            return Link(linkage, suggested_k)

and one line below, ``register_recipe(NMF)`` (code outside the package may call it too).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Callable

import torch

from ..numeric import minmax_rows
from ..tree import Tree
from .base import K_RANGE, PAPER_SEED, Link, Recipe
from .fast import Fast
from .paper import Paper
from .paper_sklearn import PaperSklearn
from .spatial import Spatial

__all__ = ["Recipe", "Link", "register_recipe", "get_recipe", "recipe_names", "RECIPES", "build_tree", "build_trees",
           "K_RANGE", "PAPER_SEED", "DEFAULT_RECIPE"]

DEFAULT_RECIPE = "fast"

_registry: dict[str, Recipe] = {}
_lock = threading.Lock()


def register_recipe(recipe: type[Recipe] | Recipe, *, replace: bool = False):
    """Make a recipe available by its ``name`` (a :class:`Recipe` subclass or instance); returns it, so it
    works as a class decorator. A name already taken raises unless ``replace=True``."""
    obj = recipe() if isinstance(recipe, type) else recipe
    if not isinstance(obj, Recipe):
        raise TypeError(f"a recipe is a subclass of inv_widgets.engine.recipes.Recipe, got {type(obj).__name__}")
    name = obj.name
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"a recipe needs a name without surrounding spaces, got {name!r}")
    with _lock:
        if name in _registry and not replace and type(_registry[name]) is not type(obj):
            raise ValueError(f"recipe {name!r} is already registered ({type(_registry[name]).__name__}); "
                             "pass replace=True to replace it")
        _registry[name] = obj
    return recipe


def recipe_names() -> tuple[str, ...]:
    """The names of the registered recipes, in registration order."""
    return tuple(_registry)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; a ``ValueError`` naming the choices when there is none."""
    recipe = _registry.get(name) if isinstance(name, str) else None
    if recipe is None:
        raise ValueError(f"unknown recipe {name!r}; choose one of {recipe_names()}")
    return recipe


class _Names(Sequence):
    """The registered recipe names, read when used (so a recipe registered later is in it). Compares equal
    to the tuple of names; ``RECIPES`` below, kept for code written before the registry."""

    def __getitem__(self, i):
        return recipe_names()[i]

    def __len__(self) -> int:
        return len(_registry)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in _registry

    def __eq__(self, other) -> bool:
        return isinstance(other, (tuple, list, _Names)) and tuple(self) == tuple(other)

    __hash__ = None

    def __repr__(self) -> str:
        return repr(recipe_names())


RECIPES = _Names()


def build_tree(maps: torch.Tensor, recipe: str = DEFAULT_RECIPE, seed: int = PAPER_SEED) -> Tree:
    """Dendrogram of ``maps`` (n, h, w) or (n, d) for one recipe. Deterministic for a given input."""
    return build_trees([maps], recipe, seed)[0]


def build_trees(maps_list: list[torch.Tensor], recipe: str = DEFAULT_RECIPE, seed: int = PAPER_SEED,
                progress: Callable[[int], None] | None = None) -> list[Tree]:
    """Dendrograms of several layers' maps, the same trees as ``build_tree`` one layer at a time.

    A recipe may share work between the layers (the paper recipes embed them side by side). Each layer's
    maps are flattened and min-max scaled only when the recipe asks for them, so at most one scaled copy
    exists at a time. ``progress(i)`` is called as the tree of ``maps_list[i]`` is ready.
    """
    r = get_recipe(recipe)
    trees: list[Tree | None] = [None] * len(maps_list)

    def done(i: int, tree: Tree) -> None:
        trees[i] = tree
        if progress:
            progress(i)

    todo = []
    for i, maps in enumerate(maps_list):
        if maps.shape[0] < 2:
            done(i, r.empty_tree(maps.shape[0]))
        else:
            todo.append(i)

    def rows():
        for i in todo:
            maps = maps_list[i]
            yield minmax_rows(maps.reshape(maps.shape[0], -1).float())

    def linked(j: int, link: Link) -> None:
        i = todo[j]
        done(i, r.tree(link, maps_list[i].shape[0]))

    if todo:
        r.link_many(rows(), seed, linked)
    return trees


register_recipe(Fast)
register_recipe(Paper)
register_recipe(PaperSklearn)
register_recipe(Spatial)
