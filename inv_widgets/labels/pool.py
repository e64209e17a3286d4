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

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..engine.recipes import get_recipe
from ..engine.keys import MapKey
from ..engine.maps import reveal_image, upsample_minmax
from ..engine.runtime import LRU

__all__ = ["Pool", "PoolItem", "PoolSpec", "TARGETS", "is_run"]

#: Which class the maps of an image explain: the dataset's label (else the prediction), or the prediction.
TARGETS = ("label", "predicted")
_CHUNK = 16  # images explained per batch while the pool is built


@dataclass(frozen=True)
class PoolSpec:
    """What a game plays, validated against a session: images, layers (forward order) and the cut."""

    images: tuple[int, ...]
    layers: tuple[str, ...]
    recipe: str
    k: int | None = None
    target: str = "label"

    @classmethod
    def for_session(cls, session, images: Iterable[int] | None = None, layers: Sequence[str] | str | None = None,
                    recipe: str | None = None, k: int | None = None, target: str = "label") -> "PoolSpec":
        """The pool a game over ``session`` plays: its ``images`` (default all), ``layers`` (default all),
        ``recipe`` (default the session's), cut ``k`` (default the suggested one) and ``target`` (one of
        :data:`TARGETS`: "label", the dataset's label, else the prediction; or "predicted"); every value checked
        here."""
        recipe = recipe or session.recipe
        get_recipe(recipe)  # the registry checks the name (its error lists the choices)
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive int (clusters per layer) or None for the suggested cut; got {k!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}; got {target!r}")
        n = len(session)
        image_list: list[int] = []
        for i in range(n) if images is None else images:
            i = _index(i)
            if not -n <= i < n:
                raise IndexError(f"image index {i} out of range: the session has {n} images")
            if i % n not in image_list:
                image_list.append(i % n)
        if not image_list:
            raise ValueError("no images to play: the session is empty (or images=[] was given)")
        return cls(tuple(image_list), _layers(list(session.layers), layers, "session"), recipe, k, target)

    @classmethod
    def for_run(cls, run, images: Iterable[int] | None = None, layers: Sequence[str] | str | None = None,
                recipe: str | None = None, k: int | None = None, target: str | None = None) -> "PoolSpec":
        """What a game plays from a stored run: its images (default: every finished one), layers, and the run's
        own recipe, cut and targets (a ``recipe``, ``k`` or ``target`` that differs is refused)."""
        stored = run.meta.get("target")
        mode = "label" if stored == "label" else "predicted" if stored is None else f"class {stored}"
        for name, given, have in (("recipe", recipe, run.recipe), ("k", k, run.k), ("target", target, mode)):
            if given is not None and given != have:
                raise ValueError(f"{name}={given!r} differs from the run's {name} ({have!r}): a run stores one cut "
                                 f"per image and layer; leave {name} out, or make another run with "
                                 f"explain_dataset(..., {name}={given!r})")
        done = [int(i) for i in run.images.sort_values("position")["image"]]
        if images is None:
            chosen = done
        else:
            chosen = list(dict.fromkeys(_index(i) for i in images))
            missing = [i for i in chosen if i not in set(done)]
            if missing:
                raise ValueError(f"images {missing[:10]}{' ...' if len(missing) > 10 else ''} are not finished in "
                                 f"the run {str(run.path)!r}; finish it with the same explain_dataset call, or "
                                 "play the finished ones (run.images)")
        if not chosen:
            raise ValueError(f"no images to play: the run {str(run.path)!r} has no finished image yet")
        return cls(tuple(chosen), _layers(list(run.layers), layers, "run"), run.recipe, run.k, mode)


def _index(i) -> int:
    """An image index given by a person: an int (numpy ints too), not a bool or a float."""
    if isinstance(i, bool) or not hasattr(i, "__index__"):
        raise TypeError(f"images must be session indices (int), got {i!r}")
    return int(i)


def _layers(have: list[str], layers, owner: str) -> tuple[str, ...]:
    """The chosen ``layers`` (None: all, a name, or names) in the order of ``have``, the layers of the
    session or run (``owner``); unknown names and an empty choice are refused."""
    wanted = have if layers is None else [layers] if isinstance(layers, str) else list(layers)
    unknown = [name for name in wanted if name not in have]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; the {owner}'s layers are {have}")
    if not wanted:
        raise ValueError("layers is empty: give at least one layer name")
    return tuple(name for name in have if name in wanted)


def is_run(obj) -> bool:
    """A stored dataset run (``inv.Run``): told by what a pool uses of it, not by importing ``runs``."""
    return all(hasattr(obj, a) for a in ("iter_maps", "map", "image", "maps", "images", "recipe", "classes"))


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

    def __init__(self, items: Iterable[PoolItem], image: Callable[[int], Any], layers: Sequence[str], *,
                 cache_images: int = 16, lowres: Callable[[PoolItem], Any] | None = None):
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
    def from_session(cls, session, spec: PoolSpec | None = None, *, progress: Callable[[int, int], None] | None = None,
                     **spec_kwargs: Any) -> "Pool":
        """Explain every image of ``spec`` once (``_CHUNK`` per batch) and keep every map of each layer's cut.

        ``progress(done, total)`` is called after each batch. Items are ordered by their rank in the cut
        (heaviest first), then the deepest layer, then the image order, so that consecutive maps come
        from different images.
        """
        spec = spec or PoolSpec.for_session(session, **spec_kwargs)
        groups: dict[int | None, list[int]] = {}
        for i in spec.images:
            groups.setdefault(_target_for(session, spec.target, i), []).append(i)
        position = {i: p for p, i in enumerate(spec.images)}
        depth = {name: d for d, name in enumerate(spec.layers)}
        items: list[PoolItem] = []
        done = 0
        for target, idxs in sorted(groups.items(), key=lambda kv: position[kv[1][0]]):
            for s in range(0, len(idxs), _CHUNK):
                chunk = idxs[s:s + _CHUNK]
                exps = session.explain_many(chunk, target=target, recipe=spec.recipe, lazy=True, progress=False)
                for i, exp in zip(chunk, exps):
                    for layer in spec.layers:
                        cl = exp.layer(layer, spec.recipe).cut(k=spec.k)
                        for j in range(cl.k):
                            low = np.array(cl.maps_lowres[j])
                            low.flags.writeable = False
                            items.append(PoolItem(
                                key=cl.key(j), image=i, target=int(exp.target), layer=layer, depth=depth[layer] + 1,
                                rank=j, weight=float(cl.weights[j]), lowres=low, recipe=spec.recipe, k=spec.k,
                                order=(j, len(spec.layers) - depth[layer], position[i])))
                done += len(chunk)
                if progress is not None:
                    progress(done, len(spec.images))
        return cls(items, lambda i: np.asarray(session.image(i)), spec.layers)

    @classmethod
    def from_run(cls, run, images: Iterable[int] | None = None, layers: Sequence[str] | str | None = None) -> "Pool":
        """The cluster maps of a stored run (``inv.Run``), without a model: every map of the run's cut of
        ``images`` (session indices; default: every finished image) at ``layers`` (default: all the run's).

        Items are ordered as :meth:`from_session` orders them, and show the same pictures (tested); each
        map is read from the run when it is shown.
        """
        spec = PoolSpec.for_run(run, images, layers)
        image_list, played = list(spec.images), list(spec.layers)
        table = run.maps
        position = {i: p for p, i in enumerate(image_list)}
        depth = {name: d for d, name in enumerate(played)}
        table = table[table["image"].isin(image_list) & table["layer"].isin(played)]
        items = [PoolItem(key=MapKey.from_row(row), image=int(row["image"]), target=int(row["target"]),
                          layer=row["layer"], depth=depth[row["layer"]] + 1, rank=int(row["map"]),
                          weight=float(row["weight"]), lowres=None, recipe=run.recipe, k=run.k,
                          order=(int(row["map"]), len(played) - depth[row["layer"]], position[int(row["image"])]))
                 for row in table.to_dict("records")]
        return cls(items, run.image, played, lowres=lambda item: run.map(item.key))

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


def _target_for(session, mode: str, i: int) -> int | None:
    """The class image ``i``'s maps explain: its label in ``"label"`` mode when valid, else None (predicted)."""
    if mode == "label":
        y = session.label(i)
        if y is not None and 0 <= int(y) < len(session.classes):
            return int(y)
    return None
