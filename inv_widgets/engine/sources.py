"""Where cluster maps come from: the :class:`MapSource` protocol that a live :class:`~inv_widgets.Session` and a
stored :class:`~inv_widgets.Run` both implement.

The labelling pool and game, the global explanation, the concept test and the GlobalView take any MapSource:
they ask for keys, pictures, low-resolution maps and weights, never whether the source is a session or a run.

    source.classes, source.layers, source.fingerprint, source.recipe, source.map_type
    source.check_images(images)         # the images asked for, checked (None: all it can show; a run: finished)
    source.image(i)                     # what a person sees of image i (np.asarray gives uint8 (H, W, 3))
    source.label(i)                     # its ground-truth class, or None
    source.index_of(image_id)           # the image whose id a key names (MapKey.image_id)
    source.resolve_cut(recipe, k, target)  # the cut it gives for that: (recipe, k, target), defaults filled in
    source.items(images, layers, ...)   # MapItem per cluster map of each image's cut: what a pool plays
    source.lowres(key)                  # a cluster map at feature resolution, (h, w) float32 in [0, 1]
    source.weight(key)                  # its weight, percent of the layer
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .keys import MapKey

__all__ = ["MapSource", "MapItem", "is_map_source"]


@dataclass(frozen=True, eq=False)
class MapItem:
    """One cluster map of a source's cut, as a pool takes it."""

    key: MapKey
    image: int  # the source's image index
    layer: str
    rank: int  # position in its cut (0 = heaviest)
    weight: float  # percent of the layer
    lowres: np.ndarray | None  # the map at feature resolution (read-only), or None: ``source.lowres(key)`` reads it


@runtime_checkable
class MapSource(Protocol):
    """What every consumer of cluster maps asks of their source (a Session, a Run)."""

    @property
    def classes(self) -> list[str]:
        """Class names, in class-index order."""

    @property
    def layers(self) -> list[str]:
        """The layers explained, in forward order."""

    @property
    def fingerprint(self) -> str:
        """The model's fingerprint (``MapKey.model`` of every map)."""

    @property
    def recipe(self) -> str:
        """The clustering recipe of its cuts."""

    @property
    def map_type(self) -> str:
        """What its cluster maps are drawn from ("published", "gradcam", ...: ``Session(maps=...)``)."""

    def check_images(self, images: Sequence[int] | None = None) -> list[int]:
        """The image indices asked for, checked and in canonical form, once each (None: every image it can show
        now, in order); an image it cannot show is refused naming why."""

    def image(self, i: int) -> Any:
        """What a person sees of image ``i``."""

    def label(self, i: int) -> int | None:
        """The ground-truth class of image ``i``, when known."""

    def index_of(self, image_id: str) -> int:
        """The index of the image whose id is ``image_id`` (a key's ``image_id``); ``KeyError`` if none."""

    def resolve_cut(
        self, recipe: str | None = None, k: int | None = None, target: str | None = None
    ) -> tuple[str, int | None, str]:
        """The cut this source gives for what was asked, ``(recipe, k, target)`` with its defaults filled in; a
        cut it cannot give (a stored run holds one) is refused with a ``ValueError`` that says why."""

    def items(
        self,
        images: Sequence[int],
        layers: Sequence[str],
        *,
        recipe: str | None = None,
        k: int | None = None,
        target: str = "label",
        progress: Callable[[int, int], None] | None = None,
    ) -> Iterator[MapItem]:
        """Every cluster map of each image's cut at ``layers`` (heaviest first within a layer)."""

    def lowres(self, key: MapKey) -> np.ndarray:
        """A cluster map at feature resolution, (h, w) float32 in [0, 1]."""

    def weight(self, key: MapKey) -> float:
        """A cluster map's weight, percent of its layer."""


_MEMBERS = (
    "classes",
    "layers",
    "fingerprint",
    "recipe",
    "map_type",
    "check_images",
    "image",
    "label",
    "index_of",
    "resolve_cut",
    "items",
    "lowres",
    "weight",
)


def is_map_source(obj) -> bool:
    """Whether ``obj`` implements :class:`MapSource` (a Session, a Run, or a source of one's own). Looked up
    without running anything (``isinstance`` with the protocol would evaluate a Session's ``layers``, which runs
    the model the first time)."""
    return not isinstance(obj, type) and all(_has(obj, name) for name in _MEMBERS)


def _has(obj, name: str) -> bool:
    try:
        inspect.getattr_static(obj, name)
        return True
    except AttributeError:
        return False
