"""What every clustering recipe is: a name, a default for pruning, and one method, ``link``.

A recipe turns one layer's kept feature maps, flattened to rows (n, d) and min-max scaled to [0, 1], into a
scipy linkage matrix and a suggested number of clusters. The driver (``build_trees`` in this package) does
everything around it, the same for every recipe: layers with fewer than two kept maps, the scaling, wrapping
the answer into a :class:`~inv_widgets.engine.tree.Tree`, progress. A new recipe is one module with a
:class:`Recipe` subclass and a ``register`` line (see ``recipes/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar, NamedTuple

import numpy as np
import torch
from scipy.cluster.hierarchy import linkage as scipy_linkage

from ..numeric import condensed_euclidean
from ..tree import Tree, one_cluster_linkage

__all__ = ["Recipe", "Link", "K_RANGE", "PAPER_SEED", "ward"]

#: The numbers of clusters a suggested cut chooses from (the paper's 3..8).
K_RANGE = (3, 8)
#: The paper's t-SNE seed; every recipe receives it (``build_tree(..., seed=...)``) and may ignore it.
PAPER_SEED = 432


class Link(NamedTuple):
    """A recipe's answer for one layer."""

    linkage: np.ndarray  # (n - 1, 4) scipy linkage matrix over the n rows, in their order
    suggested_k: int  # the number of clusters the suggested cut gives
    embedding: np.ndarray | None = None  # the points clustered, when not the maps themselves


try:  # the kernel scipy's linkage(method="ward") runs, called without linkage()'s checks and dispatch
    from scipy.cluster import _hierarchy as _scipy_hierarchy
    from scipy.cluster.hierarchy import _LINKAGE_METHODS

    _NN_CHAIN, _WARD = _scipy_hierarchy.nn_chain, _LINKAGE_METHODS["ward"]
except (ImportError, AttributeError, KeyError):  # pragma: no cover - a scipy without them: the public call
    _NN_CHAIN = _WARD = None


def ward(x: torch.Tensor) -> np.ndarray:
    """Ward linkage of rows ``x`` (n >= 2, d), Euclidean distances from one matrix product.

    scipy's ``linkage(y, "ward")``, bit for bit (tested): its nearest-neighbour-chain kernel is called
    directly where scipy has it, because the public function's checks and array-API dispatch cost more than the
    kernel itself on a layer of a few dozen maps, and a dataset run links thousands.
    Distances that are not finite go through the public function and get its error.
    """
    y = condensed_euclidean(x)
    if _NN_CHAIN is None or not np.isfinite(y).all():
        return scipy_linkage(y, method="ward")
    return np.asarray(_NN_CHAIN(y, int(x.shape[0]), _WARD))


class Recipe:
    """A way to build a layer's dendrogram. Subclass it, set the class attributes, override :meth:`link`.

    ``name`` is what people type (``Session(recipe=...)``, ``exp.layer(name, recipe)``, the CLI); ``prune``
    whether cuts drop light clusters by default (the paper's rule); ``summary`` one line for people (the
    Explorer's tooltip). Recipes are stateless: one instance serves every layer and thread.
    """

    name: ClassVar[str] = ""
    prune: ClassVar[bool] = False
    summary: ClassVar[str] = ""
    #: Link only the distinct maps (copies join their original at height 0): for recipes that cannot take
    #: repeated points (t-SNE: scikit-learn's Barnes-Hut crashes the process on identical points).
    distinct_rows: ClassVar[bool] = False
    #: Whether a layer's :meth:`link` may run beside another layer's, in another thread, on the CPU: true for
    #: recipes whose ``link`` is pure (``fast``, ``spatial``); ``build_trees`` then links a model's layers side by
    #: side, each on one thread. Recipes that override :meth:`link_many` to share work between layers keep False.
    layers_apart: ClassVar[bool] = False

    def link(self, x: torch.Tensor, seed: int = PAPER_SEED) -> Link:
        """The dendrogram of one layer: ``x`` (n, d) with n >= 2, rows min-max scaled to [0, 1]. Deterministic."""
        raise NotImplementedError(f"recipe {self.name!r} does not implement link(x, seed)")

    def link_many(self, xs: Iterable[torch.Tensor], seed: int, done: Callable[[int, Link], None]) -> None:
        """Several layers' dendrograms; ``done(i, link)`` as the i-th is ready, in any order.

        ``xs`` is lazy (each layer's rows are made as they are asked for, and can be dropped once used). By
        default one layer at a time; override only to share work between layers (the paper recipes embed
        the layers side by side). The answer for a layer must not depend on the other layers.
        """
        for i, x in enumerate(xs):
            done(i, self.link(x, seed))

    def link_many_device(self, xs: Iterable[torch.Tensor], seed: int, done: Callable[[int, Link], None]) -> None:
        """:meth:`link_many` without leaving the rows' device (a GPU): only recipes with a device kernel have it
        (``fast``: the batched Ward of ``engine/ward_torch.py``)."""
        raise ValueError(
            f"the {self.name!r} recipe has no device kernel; only 'fast' links on the device "
            "(ward='torch'); use ward='scipy' for this recipe"
        )

    def tree(self, link: Link, n: int) -> Tree:
        """The :class:`~inv_widgets.engine.tree.Tree` of ``n`` kept maps from this recipe's linkage."""
        return Tree(self.name, link.linkage, n, int(link.suggested_k), self.prune, link.embedding)

    def empty_tree(self, n: int) -> Tree:
        """The tree of a layer with fewer than two kept maps: nothing to link."""
        return Tree(self.name, np.zeros((0, 4)), n, max(n, 1), self.prune)

    def same_tree(self, n: int) -> Tree:
        """The tree of a layer whose ``n`` maps are all the same after scaling: one cluster at every cut."""
        return Tree(self.name, one_cluster_linkage(n), n, 1, self.prune)

    def __repr__(self) -> str:
        return f"<recipe {self.name!r}: {self.summary}>"
