"""A Session's cluster maps by key (the :class:`~inv_widgets.engine.sources.MapSource` half of a Session): where
a key's map lives, its picture at feature resolution, its weight, and every map of a set of images' cuts. Kept
apart from ``session.py`` (the model, the images and the cache) so that each file holds one idea."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from .engine import Clusters, MapKey
from .engine.recipes import get_recipe, recipe_names
from .engine.request import TARGET_MODES, check_choice, check_k, check_recipe
from .engine.sources import MapItem

__all__ = ["KeyedMaps"]


class KeyedMaps:
    """Cluster maps by key, for a class that has ``fingerprint``, ``recipe``, ``classes``, ``image_set``,
    ``index_of``, ``label``, ``explain`` and ``explain_many`` (the Session)."""

    # ---- cluster maps by key (MapSource) ----------------------------------------------------------
    def locate(self, key, recipe: str | None = None) -> tuple[int, Clusters, int]:
        """Where a cluster map lives: ``(image index, Clusters, j)`` for a :class:`MapKey`.

        The image is explained for the key's target (cached), and the cut in which the key's member channels
        form one cluster map is returned with that map's index (``recipe`` first, default the session's, then
        the others: a key does not name its recipe). ``KeyError`` when the key belongs to another
        model, to no image of this session, or to no cluster of the layer's dendrogram.
        """
        key = key if isinstance(key, MapKey) else MapKey(*key)
        if key.model != self.fingerprint:
            raise KeyError(
                f"cluster map {key.members_text!r} at {key.layer!r} was made by another model "
                f"({key.model}), not this session's ({self.fingerprint})"
            )
        i = self.index_of(key.image_id)
        exp = self.explain(i, key.target, lazy=True)
        if key.layer not in exp.layers:
            raise KeyError(f"layer {key.layer!r} is not explained by this session; its layers are {exp.layers}")
        first = get_recipe(recipe or self.recipe).name
        # a key does not say which recipe made it: the session's first, then dendrograms already built
        recipes = sorted(recipe_names(), key=lambda r: (r != first, not exp.layer(key.layer, r).is_built))
        error = None
        for r in recipes:
            try:
                cl, j = exp.layer(key.layer, r).locate(key.members)
                return i, cl, j
            except KeyError as e:
                error = error or e
        raise error

    def lowres(self, key) -> np.ndarray:
        """A cluster map at feature resolution, (h, w) float32 in [0, 1] (MapSource; explains its image once)."""
        _, cl, j = self.locate(key)
        return cl.maps_lowres[j]

    def weight(self, key) -> float:
        """A cluster map's weight, percent of its layer, as its cut weighs it (``LayerResult.map_weight``;
        MapSource; one model pass for its image and target, no dendrogram)."""
        key = key if isinstance(key, MapKey) else MapKey(*key)
        exp = self.explain(self.index_of(key.image_id), key.target, lazy=True)
        return exp.layer(key.layer).map_weight(key.members)

    def resolve_cut(
        self, recipe: str | None = None, k: int | None = None, target: str | None = None
    ) -> tuple[str, int | None, str]:
        """``(recipe, k, target)`` checked, defaults filled in (the session's recipe, the suggested cut, each
        image's label) (MapSource): a session cuts any way."""
        target = "label" if target is None else target
        return check_recipe(recipe or self.recipe), check_k(k), check_choice("target", target, TARGET_MODES)

    def items(
        self,
        images: Sequence[int],
        layers: Sequence[str],
        *,
        recipe: str | None = None,
        k: int | None = None,
        target: str = "label",
        progress: Callable[[int, int], None] | None = None,
        chunk: int = 16,
    ) -> Iterator[MapItem]:
        """Every cluster map of each image's cut (``recipe``, ``k``: default the suggested cut) at ``layers``
        (MapSource): the images are explained ``chunk`` per model pass, for their label (``target="label"``,
        the predicted class where it is unknown) or their predicted class (``"predicted"``)."""
        recipe, k, target = self.resolve_cut(recipe, k, target)
        images = [self.image_set.check(i) for i in images]
        groups: dict[int | None, list[int]] = {}
        for i in images:
            y = self.label(i) if target == "label" else None
            groups.setdefault(int(y) if y is not None and 0 <= int(y) < len(self.classes) else None, []).append(i)
        position = {i: p for p, i in enumerate(images)}
        done = 0
        for tgt, idxs in sorted(groups.items(), key=lambda kv: position[kv[1][0]]):
            for s in range(0, len(idxs), chunk):
                part = idxs[s : s + chunk]
                for i, exp in zip(part, self.explain_many(part, target=tgt, recipe=recipe, lazy=True, progress=False)):
                    for layer in layers:
                        cl = exp.layer(layer, recipe).cut(k=k)
                        for j, key in enumerate(cl.keys()):
                            low = np.array(cl.maps_lowres[j])
                            low.flags.writeable = False
                            yield MapItem(key, i, layer, j, float(cl.weights[j]), low)
                done += len(part)
                if progress is not None:
                    progress(done, len(images))
