"""The pool of a labelling game: which cluster maps are played, and everything needed to show one again.

    spec = PoolSpec.for_session(session, images=[0, 1, 2], layers=None, recipe=None, k=None)
    pool = Pool.from_session(session, spec)          # explains every image once
    item = pool.item(key)                            # by MapKey: a dict look-up, no search
    pool.reveal(item, step=2)                        # the Deep Reveal image, uint8 (H, W, 3)
    pool.image(item), pool.heatmap(item)             # the whole image and the cluster map (H, W)

A :class:`PoolItem` holds the map's identity (:class:`MapKey`), where its image comes from (an index for
the pool's image provider), the cluster map at feature resolution and the cut that made it. Showing a
map again (another reveal step, the overlay after the guess, after an undo) needs neither the model nor
the explanation: the pool draws it from the low-resolution map and the image, exactly as
:meth:`~inv_widgets.engine.Clusters.reveal` and ``Clusters.maps`` do.

A pool can come from anything that gives these items: :meth:`Pool.from_session` explains the images of
a :class:`~inv_widgets.Session`; :meth:`Pool.from_run` takes the same items from a stored dataset run
(:func:`inv_widgets.explain_dataset`): its table of maps, with each map read from disk when it is shown,
so a pool over tens of thousands of maps holds only their identities, and no model runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..engine.keys import MapKey
from ..engine.maps import reveal_image, upsample_minmax
from ..engine.request import TARGET_MODES, check_layers
from ..engine.runtime import LRU
from ..engine.sources import MapSource

__all__ = ["Pool", "PoolItem", "PoolSpec", "TARGETS"]

#: Which class the maps of an image explain: the dataset's label (else the prediction), or the prediction.
TARGETS = TARGET_MODES


@dataclass(frozen=True)
class PoolSpec:
    """What a game plays, validated against its source (a Session or a Run): images, layers (forward order), the
    cut (recipe and k; None: the suggested cut) and the target ("label", "predicted", or a run's "class N")."""

    images: tuple[int, ...]
    layers: tuple[str, ...]
    recipe: str
    k: int | None = None
    target: str = "label"

    @classmethod
    def for_source(
        cls,
        source: MapSource,
        images: Iterable[int] | None = None,
        layers: Sequence[str] | str | None = None,
        recipe: str | None = None,
        k: int | None = None,
        target: str | None = None,
    ) -> PoolSpec:
        """Check a choice against ``source``: its images (default: every one it can show; a Session takes
        negative indices too), its layers, and the cut (``source.resolve_cut``: a registered recipe, k and target,
        the source's defaults filled in; a stored run refuses any cut but its own)."""
        recipe, k, target = source.resolve_cut(recipe, k, target)
        image_list = source.check_images(images)
        if not image_list:
            raise ValueError("no images to play: the source has no images (or images=[] was given)")
        return cls(tuple(image_list), tuple(check_layers(layers, source.layers, owner="the source")), recipe, k, target)

    @classmethod
    def for_session(
        cls,
        session,
        images: Iterable[int] | None = None,
        layers: Sequence[str] | str | None = None,
        recipe: str | None = None,
        k: int | None = None,
        target: str = "label",
    ) -> PoolSpec:
        """:meth:`for_source` of a Session (target "label" by default)."""
        return cls.for_source(session, images, layers, recipe, k, target)

    @classmethod
    def for_run(
        cls,
        run,
        images: Iterable[int] | None = None,
        layers: Sequence[str] | str | None = None,
        recipe: str | None = None,
        k: int | None = None,
        target: str | None = None,
    ) -> PoolSpec:
        """:meth:`for_source` of a stored Run: its finished images, and its own recipe, cut and target."""
        return cls.for_source(run, images, layers, recipe, k, target)


@dataclass(frozen=True, eq=False)
class PoolItem:
    """One cluster map of the pool."""

    key: MapKey
    image: int  # index for the pool's image provider (a session index)
    target: int  # the class the map explains: the right answer of the game
    layer: str
    depth: int  # 1-based position of the layer among the pool's layers
    rank: int  # position in its cut (0 = heaviest)
    weight: float  # percent of the layer
    lowres: np.ndarray | None  # the cluster map at feature resolution (read-only); None: the pool reads it
    recipe: str  # the cut that made it: recipe and k (None: the suggested cut)
    k: int | None
    order: tuple  # deterministic tie-break among maps with as many labels


class Pool:
    """The cluster maps of a game, in tie-break order, found by key in constant time.

    Parameters
    ----------
    items : iterable of PoolItem
        Sorted by ``item.order`` here; keys must be distinct.
    image : callable
        ``image(item.image) -> np.ndarray`` uint8 (H, W, 3): the picture a person sees at model-input
        size. The last ``cache_images`` pictures are kept.
    layers : sequence of str
        The layers played, in forward order ("layer 3 of 8").
    lowres : callable, optional
        ``lowres(item) -> np.ndarray`` (h, w): the cluster map of an item made without one (``item.lowres is
        None``), read when the map is shown; the last ``cache_images`` are kept.
    """

    def __init__(
        self,
        items: Iterable[PoolItem],
        image: Callable[[int], Any],
        layers: Sequence[str],
        *,
        cache_images: int = 16,
        lowres: Callable[[PoolItem], Any] | None = None,
    ):
        self._items = sorted(items, key=lambda it: it.order)
        self._by_key: dict[MapKey, PoolItem] = {}
        for it in self._items:
            if it.key in self._by_key:
                raise ValueError(f"the pool has the cluster map {it.key} twice")
            self._by_key[it.key] = it
        self._image = image
        self.layers = list(layers)
        self._pictures = LRU(cache_images)
        self._read_lowres = lowres
        self._lowres = LRU(cache_images)

    @classmethod
    def from_source(
        cls,
        source: MapSource,
        spec: PoolSpec | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
        **spec_kwargs: Any,
    ) -> Pool:
        """Every cluster map of ``spec`` (or of ``PoolSpec.for_source(source, **spec_kwargs)``) from a Session
        (each image explained once, ``progress(done, total)`` after each batch) or a stored Run (no model: each
        map is read from disk when it is shown).

        Items are ordered by their rank in the cut (heaviest first), then the deepest layer, then the image
        order, so that consecutive maps come from different images. Only maps with a positive weight are played:
        the game asks which class a map is evidence for, and a Grad-CAM map (``maps="gradcam"``) whose channels
        lower the class's score (a negative weight, about a third of the demo's maps) is evidence against it
        (the Explorer still shows it).
        """
        spec = spec or PoolSpec.for_source(source, **spec_kwargs)
        position = {i: p for p, i in enumerate(spec.images)}
        depth = {name: d for d, name in enumerate(spec.layers)}
        items = [
            PoolItem(
                key=it.key,
                image=it.image,
                target=int(it.key.target),
                layer=it.layer,
                depth=depth[it.layer] + 1,
                rank=it.rank,
                weight=it.weight,
                lowres=it.lowres,
                recipe=spec.recipe,
                k=spec.k,
                order=(it.rank, len(spec.layers) - depth[it.layer], position[it.image]),
            )
            for it in source.items(
                spec.images, spec.layers, recipe=spec.recipe, k=spec.k, target=spec.target, progress=progress
            )
            if it.weight > 0
        ]
        return cls(items, source.image, spec.layers, lowres=lambda item: source.lowres(item.key))

    @classmethod
    def from_session(
        cls,
        session,
        spec: PoolSpec | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
        **spec_kwargs: Any,
    ) -> Pool:
        """:meth:`from_source` of a Session."""
        return cls.from_source(session, spec or PoolSpec.for_session(session, **spec_kwargs), progress=progress)

    @classmethod
    def from_run(cls, run, images: Iterable[int] | None = None, layers: Sequence[str] | str | None = None) -> Pool:
        """:meth:`from_source` of a stored run (``inv.Run``): every map of the run's cut of ``images`` (default:
        every finished one) at ``layers`` (default: all the run's), without a model."""
        return cls.from_source(run, PoolSpec.for_run(run, images, layers))

    # -- the items --------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[PoolItem]:
        return iter(self._items)

    def __contains__(self, key: Any) -> bool:
        return key in self._by_key

    @property
    def keys(self) -> list[MapKey]:
        """Every map's key, in tie-break order."""
        return [it.key for it in self._items]

    def item(self, key: Any) -> PoolItem:
        """The item of a cluster map (``KeyError`` when the map is not in the pool)."""
        try:
            return self._by_key[key]
        except KeyError:
            raise KeyError(f"cluster map {key} is not in this pool") from None

    # -- pictures --------------------------------------------------------------------------------------

    def image(self, item: PoolItem) -> np.ndarray:
        """The whole picture of the item's image, uint8 (H, W, 3)."""
        return self._pictures.get(item.image, lambda: np.asarray(self._image(item.image), dtype=np.uint8))

    def lowres(self, item: PoolItem) -> np.ndarray:
        """The cluster map at feature resolution (h, w), read-only."""
        if item.lowres is not None:
            return item.lowres
        if self._read_lowres is None:
            raise ValueError(f"the pool item {item.key} has no map and the pool no reader for it")

        def read():
            low = np.array(self._read_lowres(item), dtype=np.float32)
            low.flags.writeable = False
            return low

        return self._lowres.get(item.key, read)

    def reveal(self, item: PoolItem, step: int) -> np.ndarray:
        """The Deep Reveal image of the map at ``step`` (0..5), uint8 (H, W, 3)."""
        return reveal_image(self.image(item), self.lowres(item), step)

    def heatmap(self, item: PoolItem) -> np.ndarray:
        """The cluster map at image size in [0, 1], float32 (H, W): ``Clusters.maps[j]`` of its cut."""
        size = tuple(self.image(item).shape[:2])
        return upsample_minmax(torch.from_numpy(np.array(self.lowres(item))[None]), size)[0]
