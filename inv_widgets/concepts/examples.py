"""Cluster maps named by their keys, found again in their source: stored weights, overlays and Deep Reveal images.

A global explanation refers to cluster maps by :class:`~inv_widgets.MapKey` only. Its weights come with the
answers (:func:`stored_weights`) and its pictures from any MapSource (:func:`overlays`: a Session or a Run).
The concept tests need the model (:func:`model_runner`) and the Deep Reveal images of a Session's maps
(:func:`located`: each image explained once per target, ``Session.explain_many``, batched).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np

from .. import render
from ..engine import MapKey
from ..engine.keys import members_text

__all__ = ["by_image", "located", "model_runner", "overlay_thumbnail", "overlays", "stored_weights"]


def _key(k) -> MapKey:
    return k if isinstance(k, MapKey) else MapKey(*k)


def by_image(session, keys: Iterable) -> dict[tuple[int, str], list[MapKey]]:
    """Keys grouped by (target, image id), in first-seen order. Keys of another model raise ``KeyError``."""
    groups: dict = {}  # first-seen order
    fp = session.fingerprint
    for k in keys:
        k = _key(k)
        if k.model != fp:
            raise KeyError(
                f"cluster map {k.members_text!r} at {k.layer!r} was made by another model ({k.model}), "
                f"not this session's ({fp}); build the global explanation from this model's labels"
            )
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
            part = items[s : s + chunk]
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


def overlays(source, keys: Iterable, *, size: int, cmap: str = "jet") -> Iterator[tuple[MapKey, np.ndarray]]:
    """``(key, overlay thumbnail)`` of every key a MapSource (a Session or a Run) holds: the map at feature
    resolution (``source.lowres``), upsampled to its image as ``Clusters.maps`` is, over the image
    (``source.image`` of ``source.index_of(key.image_id)``), uint8 at most ``size`` pixels. A key the source does
    not hold (another model's, a merged map of ``merge=True``) is left out. A stored run reads both from disk; a
    Session explains each key's image once (cached)."""
    import torch

    from ..engine.maps import upsample_minmax

    pictures: dict[int, np.ndarray] = {}
    for k in keys:
        k = _key(k)
        try:
            low = np.asarray(source.lowres(k), dtype=np.float32)
            i = source.index_of(k.image_id)
        except KeyError:
            continue
        picture = pictures.get(i)
        if picture is None:
            picture = pictures[i] = render.to_uint8_image(source.image(i))
        full = upsample_minmax(torch.from_numpy(low[None]), picture.shape[:2])[0]
        yield k, overlay_thumbnail(picture, full, size=size, cmap=cmap)


def stored_weights(labels) -> dict[MapKey, float]:
    """The weight (percent) stored with the answers of each cluster map of a label table (``LabelStore.labels()``
    or ``games()``; its ``weight`` column), for the maps that have one: the mean of their answers' weights (one
    map's answers carry the same weight). Answers stored before weights were (old stores) give none."""
    if "weight" not in labels.columns or labels.empty:
        return {}
    cols = ["model", "image_id", "target", "layer", "members"]
    known = labels.loc[np.isfinite(labels["weight"].to_numpy(dtype=np.float64, na_value=np.nan)), cols + ["weight"]]
    if known.empty:
        return {}
    known = known.assign(
        image_id=known["image_id"].astype(str),
        members=known["members"].map(lambda m: m if isinstance(m, str) else members_text(m)),
    )
    per_map = known.groupby(cols, sort=False)["weight"].mean()
    out: dict[MapKey, float] = {}
    for key, w in zip(per_map.index, per_map.to_numpy()):
        out.setdefault(MapKey(*key), float(w))
    return out


def model_runner(source, what: str = "the concept test"):
    """The :class:`~inv_widgets.engine.runner.ModelRunner` of a source that has the model (a Session's
    ``runner``); a ``TypeError`` that says what to pass for one that has not (a stored Run)."""
    try:
        runner = source.runner
    except AttributeError:
        runner = None
    if runner is None:
        raise TypeError(
            f"{what} needs the model, and {type(source).__name__} has none (a stored run holds maps, "
            "not the model): pass the Session the run was made with, e.g. concept_test(inv.Session("
            "model, dataset, ...), ge); the global explanation itself may come from the run"
        )
    return runner


def overlay_thumbnail(
    image: np.ndarray, cluster_map: np.ndarray, *, size: int = 96, cmap: str = "jet", alpha: float = 0.5
) -> np.ndarray:
    """The cluster map over its image (the paper's 50/50 jet blend), at most ``size`` pixels, uint8."""
    return render.thumbnail(render.overlay(image, cluster_map, cmap=cmap, alpha=alpha), size)


# ---- shared by the concept tests (tcav.py, calibrated.py) ----------------------------------------------
#: The columns of a concept test's result under the published procedure (the calibrated test adds its own).
TCAV_COLUMNS = [
    "class",
    "target",
    "layer",
    "label",
    "global_score",
    "n_examples",
    "n_random",
    "n_images",
    "runs",
    "tcav_score",
    "tcav_std",
    "random_score",
    "random_std",
    "p_value",
    "significant",
    "cav_accuracy",
    "note",
]


def _rng(seed: int, *parts) -> np.random.Generator:
    h = hashlib.sha1("\x1f".join(map(str, (seed,) + parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _keys(df) -> list[MapKey]:
    return [
        MapKey(*row)
        for row in df[["model", "image_id", "target", "layer", "members"]].itertuples(index=False, name=None)
    ]


def _order(k: MapKey):
    return k.target, k.image_id, k.layer, k.members


#: What a concept example's hidden pixels show (``concept_test(fill=...)``): black (the game's Deep Reveal view) or
#: the mean colour of the model's Normalize step (model input 0; mid grey where the transform has none).
FILLS = ("black", "mean")


def fill_colour(session, fill: str):
    """The colour (3,) 0..255 hidden pixels take for ``fill`` (None: black, the game's view)."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if fill == "black":
        return None
    from ..inputs import find_normalize

    norm = find_normalize(session.transform)
    mean = norm[0] if norm is not None and norm[0].size in (1, 3) else np.float32([0.5])
    return np.broadcast_to(np.asarray(mean, np.float32) * 255.0, (3,)).copy()


def _reveal(session, keys, step: int, out: dict, fill: str = "black") -> None:
    """Deep Reveal images (uint8) of ``keys`` at ``step``, each image explained once; hidden pixels ``fill``."""
    if not keys:
        return
    colour = fill_colour(session, fill)
    ordered = sorted(keys, key=_order)
    for key, _, cl, j in located(session, ordered):
        if cl is None:
            raise KeyError(
                f"cluster map {key.members_text!r} at {key.layer!r} is no cluster of its layer's "
                "dendrogram (a merged map?); TCAV needs maps as the game showed them: aggregate "
                "without merge=True"
            )
        out[key] = cl.reveal(j, step, colour)
