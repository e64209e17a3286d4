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
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..maps import minmax_maps
from ..numeric import distinct_rows
from ..runtime import parallel_map
from ..tree import Tree, expand_linkage
from .base import K_RANGE, PAPER_SEED, Link, Recipe
from .fast import Fast
from .paper import Paper
from .paper_sklearn import PaperSklearn
from .spatial import Spatial

__all__ = [
    "Recipe",
    "Link",
    "register_recipe",
    "get_recipe",
    "recipe_names",
    "RECIPES",
    "build_tree",
    "build_trees",
    "K_RANGE",
    "PAPER_SEED",
    "DEFAULT_RECIPE",
]

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
            raise ValueError(
                f"recipe {name!r} is already registered ({type(_registry[name]).__name__}); "
                "pass replace=True to replace it"
            )
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
    to the tuple of names (``RECIPES`` below: a live view of the registry for membership tests and loops)."""

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


def build_trees(
    maps_list: list[torch.Tensor],
    recipe: str = DEFAULT_RECIPE,
    seed: int = PAPER_SEED,
    progress: Callable[[int], None] | None = None,
    *,
    device: bool = False,
) -> list[Tree]:
    """Dendrograms of several layers' maps, the same trees as ``build_tree`` one layer at a time.

    ``device=True`` links on the maps' device with the recipe's device kernel (``fast`` only: the batched
    Ward of ``engine/ward_torch.py``, for dataset runs on a GPU); every rule below holds the same.

    A recipe may share work between the layers (the paper recipes embed them side by side). Each layer's
    maps are flattened and min-max scaled (``engine.maps.minmax_maps``: a map flat to rounding is zeros, as the
    cluster maps show it) only when the recipe asks for them, so at most one scaled copy exists at a time.
    ``progress(i)`` is called as the tree of ``maps_list[i]`` is ready.

    Degenerate layers get one answer from every recipe: fewer than two maps, nothing to link; maps that are
    all the same after scaling (constant, identical or all-zero maps, 1-pixel layers), one cluster (every merge
    at height 0, suggested k = 1). Copies of a map join it at height 0, so no cut separates them, and the
    suggested k is at most the number of distinct maps. A recipe with ``distinct_rows`` (the t-SNE recipes,
    which cannot take repeated points) only ever sees distinct maps; for the others the maps are compared
    (one pass) only when the dendrogram's top merges are as low as rounding noise, and then the distinct maps
    are linked again.

    On the CPU, a recipe whose layers are independent (``Recipe.layers_apart``: ``fast``, ``spatial``) links
    the layers side by side, each on one thread (:func:`~inv_widgets.engine.runtime.parallel_map`); the trees
    are the same as one layer at a time, and ``progress`` is called once they are all ready.
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

    def scaled(i: int) -> torch.Tensor:
        maps = maps_list[i]
        return minmax_maps(maps.reshape(maps.shape[0], -1))  # a map flat to rounding is zeros, as it is shown

    def prepare(i: int) -> tuple[torch.Tensor, np.ndarray | None] | Tree:
        """The rows the recipe links for layer ``i`` and which distinct row each map is (None: all distinct),
        or the layer's tree when there is nothing to link."""
        x = scaled(i)
        if r.distinct_rows:
            first, groups = distinct_rows(x)
            if len(first) == 1:
                return r.same_tree(x.shape[0])
            if len(first) < len(groups):
                return x[torch.as_tensor(first)], groups
        return x, None

    def finish(i: int, link: Link, groups: np.ndarray | None) -> Tree:
        n = maps_list[i].shape[0]
        if groups is None and _may_hold_copies(link, n, maps_list[i][0].numel()):
            x = scaled(i)
            first, groups = distinct_rows(x)
            if len(first) == 1:
                return r.same_tree(n)
            if len(first) < n:
                link = r.link(x[torch.as_tensor(first)], seed)
            else:
                groups = None
        if groups is not None:
            emb = None if link.embedding is None else np.asarray(link.embedding)[groups]
            link = Link(expand_linkage(link.linkage, groups), min(int(link.suggested_k), int(groups.max()) + 1), emb)
        if not np.isfinite(np.asarray(link.linkage, dtype=np.float64)).all():
            raise ValueError(
                f"the {r.name!r} recipe made a dendrogram with non-finite heights for a layer of {n} "
                "feature maps; try the 'fast' recipe for this layer"
            )
        return r.tree(link, n)

    if not todo:
        return trees
    if r.layers_apart and not device and len(todo) > 1 and all(maps_list[i].device.type == "cpu" for i in todo):
        # each layer by itself, side by side (one thread each): the same trees as in turn
        def whole(i: int) -> Tree:
            got = prepare(i)
            return got if isinstance(got, Tree) else finish(i, r.link(got[0], seed), got[1])

        cost = {i: float(maps_list[i].shape[0]) ** 2 * maps_list[i][0].numel() for i in todo}
        for i, tree in zip(todo, parallel_map(whole, todo, cost=cost.__getitem__)):
            done(i, tree)
        return trees

    sent: list[tuple[int, np.ndarray | None]] = []  # the layers handed to the recipe, in the order it sees them

    def rows():
        for i in todo:
            got = prepare(i)
            if isinstance(got, Tree):
                done(i, got)
                continue
            sent.append((i, got[1]))
            yield got[0]

    def linked(j: int, link: Link) -> None:
        i, groups = sent[j]
        done(i, finish(i, link, groups))

    (r.link_many_device if device else r.link_many)(rows(), seed, linked)
    return trees


def _may_hold_copies(link: Link, n: int, d: int) -> bool:
    """Whether the merges a cut into the suggested k undoes (or all merges) are as low as the rounding noise
    between copies of a map: float32 distances between copies in [0, 1]^d are about 1e-3 sqrt(d), and a Ward
    merge of clusters multiplies them by at most sqrt(n)."""
    h = np.sort(np.asarray(link.linkage, dtype=np.float64)[:, 2])
    if not h.size:
        return False
    tol = 2e-3 * np.sqrt(float(n) * d)
    k = int(link.suggested_k)
    return bool(h[-1] <= tol or (k >= 2 and h[max(n - k, 0) :].min() <= tol))


register_recipe(Fast)
register_recipe(Paper)
register_recipe(PaperSklearn)
register_recipe(Spatial)
