"""Cluster maps named by their keys, found again in a Session: weights, overlays and Deep Reveal images.

A global explanation refers to cluster maps by :class:`~inv_widgets.MapKey` only. These helpers explain
each image once per target (``Session.explain_many``, batched) and find every key's map in it, so that
many keys cost one model pass per image, not one per key.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Iterator

import numpy as np

from .. import render
from ..engine import MapKey

__all__ = ["by_image", "located", "map_weights", "overlay_thumbnail"]


def _key(k) -> MapKey:
    return k if isinstance(k, MapKey) else MapKey(*k)


def by_image(session, keys: Iterable) -> dict[tuple[int, str], list[MapKey]]:
    """Keys grouped by (target, image id), in first-seen order. Keys of another model raise ``KeyError``."""
    groups: dict = {}  # first-seen order
    fp = session.fingerprint
    for k in keys:
        k = _key(k)
        if k.model != fp:
            raise KeyError(f"cluster map {k.members_text!r} at {k.layer!r} was made by another model ({k.model}), "
                           f"not this session's ({fp}); build the global explanation from this model's labels")
        groups.setdefault((k.target, k.image_id), []).append(k)
    return groups


def _explained(session, keys, chunk: int) -> Iterator[tuple[int, object, list[MapKey]]]:
    """(image index, Explanation, its keys), explaining ``chunk`` images of one target per model pass."""
    groups = by_image(session, keys)
    per_target: dict = {}
    for (target, image_id), ks in groups.items():
        per_target.setdefault(target, []).append((session.index_of(image_id), ks))
    for target, items in per_target.items():
        for s in range(0, len(items), chunk):
            part = items[s:s + chunk]
            exps = session.explain_many([i for i, _ in part], target=target, lazy=True, progress=False)
            for (i, ks), exp in zip(part, exps):
                yield i, exp, ks


def located(session, keys: Iterable, *, chunk: int = 16) -> Iterator[tuple[MapKey, int, object, int]]:
    """``(key, image index, Clusters, j)`` for every key whose map is found.

    A key whose members are no node of the layer's dendrogram (e.g. a merged map of ``merge=True``
    aggregation) yields ``Clusters`` None and ``j`` -1.
    """
    for i, exp, ks in _explained(session, keys, chunk):
        for k in ks:
            lr = exp.layer(k.layer)
            cl = lr.cut()  # most keys are maps of the suggested cut (what the game plays): one cut per layer
            j = cl.find(k)
            if j >= 0:
                yield k, i, cl, j
                continue
            try:
                cl, j = lr.locate(k.members)
            except KeyError:
                try:
                    _, cl, j = session.locate(k)  # another recipe's dendrogram may have it
                except KeyError:
                    cl, j = None, -1
            yield k, i, cl, j


def map_weights(session, keys: Iterable, *, chunk: int = 16) -> dict[MapKey, float]:
    """Percent weight of each key's cluster map: the sum of its member channels' weights at its layer (for a
    ``maps="gradcam"`` session, the first-order worth of every channel the map is drawn from).

    Needs one model pass per image (no dendrogram): the same number ``Clusters.weights`` shows.
    """
    out: dict[MapKey, float] = {}
    for _, exp, ks in _explained(session, keys, chunk):
        for k in ks:
            out[k] = exp.layer(k.layer).map_weight(k.members)
    return out


def overlay_thumbnail(image: np.ndarray, cluster_map: np.ndarray, *, size: int = 96, cmap: str = "jet",
                      alpha: float = 0.5) -> np.ndarray:
    """The cluster map over its image (the paper's 50/50 jet blend), at most ``size`` pixels, uint8."""
    return render.thumbnail(render.overlay(image, cluster_map, cmap=cmap, alpha=alpha), size)


# ---- shared by the concept tests (tcav.py, calibrated.py) ----------------------------------------------
def _rng(seed: int, *parts) -> np.random.Generator:
    h = hashlib.sha1("\x1f".join(map(str, (seed,) + parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _keys(df) -> list[MapKey]:
    return [MapKey(*row) for row in df[["model", "image_id", "target", "layer", "members"]]
            .itertuples(index=False, name=None)]


def _order(k: MapKey):
    return k.target, k.image_id, k.layer, k.members


def _reveal(session, keys, step: int, out: dict) -> None:
    """Deep Reveal images (uint8) of ``keys`` at ``step``, each image explained once."""
    if not keys:
        return
    ordered = sorted(keys, key=_order)
    for key, _, cl, j in located(session, ordered):
        if cl is None:
            raise KeyError(f"cluster map {key.members_text!r} at {key.layer!r} is no cluster of its layer's "
                           "dendrogram (a merged map?); TCAV needs maps as the game showed them: aggregate "
                           "without merge=True")
        out[key] = cl.reveal(j, step)
