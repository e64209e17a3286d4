"""What the Explorer shows, as values: a frozen :class:`Selection` and the :class:`View` it resolves to.

Pure: no ipywidgets, no rendering. A person's request makes a new Selection from the current View
(:meth:`View.request`); :meth:`Selection.resolve` asks the Session and the engine for everything it names
(the Explanation, the layer, the cut, the selected cluster map) and returns a View, or raises and leaves
the current one as it was. The widget only compares the old and the new View and updates its views.

Rules kept here, in one place:

- a new image starts at its predicted class (unless a class is asked for);
- a layer that the explanation does not have falls back to the last layer;
- a cut by height becomes a cut by number of clusters when the layer, recipe, image or class changes
  (heights of different dendrograms are not comparable; the number of clusters is);
- a height that would give more than ``max_k`` clusters gives ``max_k`` (the gallery stays readable);
- the selected cluster map is followed by its identity (:class:`~inv_widgets.engine.MapKey`) across cuts;
  when the new cut has no such map, the heaviest is selected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

__all__ = ["Cut", "Selection", "View", "KEEP"]

KEEP: Any = type("Keep", (), {"__repr__": lambda self: "KEEP"})()  # "as it is" (None means something)

CutMode = Literal["suggested", "k", "height"]


@dataclass(frozen=True)
class Cut:
    """How to cut a layer's dendrogram: the suggested cut, into ``k`` clusters, or at a height."""

    mode: CutMode = "suggested"
    value: float | None = None

    def __post_init__(self):
        if self.mode not in ("suggested", "k", "height"):
            raise ValueError(f"a cut is 'suggested', 'k' or 'height', got {self.mode!r}")
        if self.mode == "k":
            if self.value is None or int(self.value) < 1:
                raise ValueError(f"k must be at least 1; got {self.value}")
            object.__setattr__(self, "value", int(self.value))
        elif self.mode == "height":
            if self.value is None or not np.isfinite(float(self.value)):
                raise ValueError(f"the cut height must be a finite number; got {self.value}")
            object.__setattr__(self, "value", float(self.value))
        elif self.value is not None:
            raise ValueError("the suggested cut takes no value")

    @classmethod
    def suggested(cls) -> Cut:
        return cls("suggested")

    @classmethod
    def k(cls, k: int) -> Cut:
        return cls("k", int(k))

    @classmethod
    def height(cls, h: float) -> Cut:
        return cls("height", float(h))

    @property
    def label(self) -> str:
        """How a person chose it, as the cut line reads it."""
        return {"suggested": "suggested cut", "k": "k chosen", "height": "height chosen"}[self.mode]

    def apply(self, lr, max_k: int | None = None):
        """The ``Clusters`` of layer result ``lr`` for this cut (k is clipped to the layer's channels)."""
        if self.mode == "k":
            return lr.cut(k=int(np.clip(self.value, 1, max(lr.tree.n, 1))))
        if self.mode == "height":
            return lr.cut(height=self.value, max_k=max_k)
        return lr.cut()

    def settled(self, clusters) -> Cut:
        """This cut as it was applied: a height that ``max_k`` turned into a number of clusters is that
        number, a negative height is 0."""
        if self.mode == "height":
            if clusters.cut_by == "k":
                return Cut.k(clusters.k_cut)
            return Cut.height(clusters.threshold)
        return self


@dataclass(frozen=True)
class Selection:
    """Which image, class, layer, recipe, cut and cluster map the Explorer shows.

    ``target`` None is the image's predicted class and ``layer`` None the last layer: :meth:`resolve` fills
    them in. ``selected`` is the identity of the cluster map in the detail view (None: the heaviest).
    """

    image: int = 0
    target: int | str | None = None
    layer: str | None = None
    recipe: str = "fast"
    cut: Cut = field(default_factory=Cut)
    selected: Any = None

    def resolve(
        self,
        session,
        *,
        max_k: int | None = None,
        busy: Callable[[str], ContextManager] | None = None,
        progress=None,
        previous: View | None = None,
    ) -> View:
        """Everything this selection names, from ``session`` (which caches: the model runs once per image
        and class). ``busy(message)`` wraps the slow steps (a context manager, e.g. a progress bar);
        ``progress`` is passed to ``session.explain``. With ``previous``, an unchanged image and class
        reuse its explanation. Raises (``IndexError``, ``KeyError``, ``ValueError``) when a part does not
        exist; nothing is changed then."""
        busy = busy or (lambda message: contextlib.nullcontext())
        exp = None
        if previous is not None and previous.image == self.image and self.target == previous.target:
            exp = previous.explanation
        if exp is None:
            with busy(f"explaining image {self.image}…"):
                exp = session.explain(self.image, self.target, recipe=self.recipe, progress=progress, lazy=True)
        if self.layer is None or (
            self.layer not in exp.layers and previous is not None and self.layer == previous.layer_name
        ):
            layer = exp.layers[-1]  # the default, or the shown layer when the new explanation lacks it
        elif self.layer in exp.layers:
            layer = self.layer
        else:
            raise KeyError(f"layer {self.layer!r} is not explained; the layers are {exp.layers}")
        lr = exp.layer(layer, self.recipe)
        if not lr.is_built:  # dendrogram not built yet (paper recipe: seconds)
            with busy(f"clustering {layer} ({self.recipe} recipe)…"):
                lr.tree  # noqa: B018 (building the dendrogram is the point)
        cl = self.cut.apply(lr, max_k)
        j = cl.find(self.selected)
        if j < 0:
            j = 0 if cl.k else -1
        settled = replace(
            self,
            target=int(exp.target),
            layer=layer,
            recipe=lr.recipe,
            cut=self.cut.settled(cl),
            selected=cl.keys()[j] if j >= 0 else None,
        )
        return View(settled, exp, lr, cl, j)


@dataclass(frozen=True, eq=False)
class View:
    """A resolved :class:`Selection`: the objects the Explorer shows and the index of the selected map."""

    selection: Selection
    explanation: Any  # Explanation
    layer: Any  # LayerResult
    clusters: Any  # Clusters
    selected: int  # index (weight order) of the cluster map in the detail view, -1 for none

    # ---- what it shows ----------------------------------------------------------------------------
    @property
    def image(self) -> int:
        return self.selection.image

    @property
    def target(self) -> int:
        return int(self.explanation.target)

    @property
    def layer_name(self) -> str:
        return self.layer.name

    @property
    def recipe(self) -> str:
        return self.selection.recipe

    @property
    def cut(self) -> Cut:
        return self.selection.cut

    @property
    def selected_key(self):
        return self.selection.selected

    def same_content(self, other: View | None) -> bool:
        """Whether ``other`` shows the same explanation, layer and cut (the selection may differ)."""
        return (
            other is not None
            and other.image == self.image
            and other.explanation is self.explanation
            and other.layer is self.layer
            and other.clusters is self.clusters
        )

    # ---- requests -------------------------------------------------------------------------------------
    def request(
        self,
        *,
        image: int | None = None,
        target=KEEP,
        layer: str | None = None,
        recipe: str | None = None,
        cut: Cut | None = None,
    ) -> Selection:
        """The selection after a person's request (resolve it to see it).

        ``image``: another image, at its predicted class unless ``target`` is given; ``target``: another
        class (None: the predicted one); ``layer``, ``recipe``, ``cut``: the rest as it is. A cut by height
        becomes a cut into as many clusters as it gives now, unless a new cut is asked for.
        """
        sel = self.selection
        if image is not None and target is KEEP:
            target = None
        if cut is None:
            cut = Cut.k(max(1, self.clusters.k_cut)) if sel.cut.mode == "height" else sel.cut
        return replace(
            sel,
            image=sel.image if image is None else int(image),
            target=sel.target if target is KEEP else target,
            layer=layer if layer is not None else sel.layer,
            recipe=recipe or sel.recipe,
            cut=cut,
        )

    def select(self, j: int) -> View:
        """This view with cluster map ``j`` (weight order) in the detail view."""
        cl = self.clusters
        if not 0 <= int(j) < cl.k:
            raise IndexError(f"cluster map {j} does not exist; this cut has {cl.k} maps")
        return replace(self, selection=replace(self.selection, selected=cl.key(int(j))), selected=int(j))

    def neighbour_layer(self, step: int) -> str | None:
        """The layer ``step`` places away in forward order (arrow keys), None past either end."""
        layers = self.explanation.layers
        pos = layers.index(self.layer_name) + int(step)
        return layers[pos] if 0 <= pos < len(layers) else None

    def moved_k(self, step: int, max_k: int) -> int | None:
        """The number of clusters one cut ``step`` away (up: fewer), within 1..min(channels, max_k); None
        when there is nothing to move (fewer than two channels, or already at the end)."""
        n = self.layer.tree.n
        if n < 2:
            return None
        k = int(np.clip(self.clusters.k_cut + int(step), 1, min(n, max_k)))
        return None if k == self.clusters.k_cut else k
