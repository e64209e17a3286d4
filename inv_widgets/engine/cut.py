"""The cut: the one path from a captured pass to each layer's cluster maps, for one image or a batch, on the
CPU or a device.

    per_image = layer_maps(captured, weighting)        # per image, per layer: weights, kept maps, Grad-CAM
    trees = build_trees([lm.maps for ...], recipe)    # the recipe registry (engine/recipes), every rule
    cut = cut_layer(name, lm, tree, k=None)            # -> LayerCut (engine/records.py)

A Session's :class:`~inv_widgets.engine.LayerResult` keeps the :class:`LayerMaps` of an image and cuts them as
a person asks (any k, any height); a dataset run (``inv_widgets.runs``) calls :func:`cut_batch`, which is the
same three steps for every image and layer of a batch. So a stored run and a Session give the same maps,
weights, members and suggested k, on degenerate layers too (copied channels, constant or near-flat maps,
1 x 1 maps, a single kept channel): they run this code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .capture import Captured
from .contrast import gradcam_cut, nearest_kept, nearest_kept_many
from .maps import cluster_maps_lowres, minmax_maps
from .recipes import build_trees
from .records import CutBy, LayerCut
from .runtime import limited_threads, parallel_map
from .tree import Tree, assign, prune_mask
from .weights import gradcam_lowres, keep_channels, layer_percent

__all__ = ["LayerMaps", "layer_maps", "plan_cut", "cut_layer", "cut_batch", "scaled_lowres"]


@dataclass(eq=False)
class LayerMaps:
    """What one pass gives INV of one layer for one image: everything a cut needs.

    ``percent`` (C,) channel weights, percent of the layer total; ``kept`` (n,) the channels the weight filter
    keeps (ascending); ``maps`` (n, h, w) float32 their feature maps, ReLU applied (on the CPU, or on the
    model's device for a run that links there); ``gradcam`` (h, w) the layer's plain Grad-CAM, not scaled.
    ``map_type``: what a cluster map is drawn from (:mod:`inv_widgets.engine.contrast`); for ``"gradcam"``,
    ``channels`` holds every channel's activations (C, h, w), mean gradient (C,) and first-order worth (C,).
    """

    percent: torch.Tensor
    kept: torch.Tensor
    maps: torch.Tensor
    gradcam: torch.Tensor
    map_type: str = "published"
    channels: tuple | None = None
    _nearest: tuple | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """The feature maps' resolution (h, w)."""
        return tuple(int(s) for s in self.gradcam.shape)

    @property
    def percent_kept(self) -> torch.Tensor:
        """The kept channels' percent weights, aligned with ``kept``."""
        return self.percent[self.kept]

    def nearest_kept(self) -> tuple[np.ndarray, np.ndarray]:
        """For ``"gradcam"`` maps: the channels not kept and each one's nearest kept channel
        (:func:`~inv_widgets.engine.contrast.nearest_kept`), worked out once: every cut of the layer reuses it."""
        if self._nearest is None:
            self._nearest = nearest_kept(self.channels[0], self.kept.cpu().numpy())
        return self._nearest


def layer_maps(
    captured: Captured,
    weighting: str = "guided",
    *,
    on_device: bool = False,
    maps: str = "published",
    nearest: bool = False,
    views: bool = False,
) -> list[dict[str, LayerMaps]]:
    """Per image of a captured batch, per layer (in the order they fired): its :class:`LayerMaps`.

    The small per-channel and per-pixel results cross to the CPU once per batch, the kept maps once per image
    (on a GPU each transfer waits for the device); ``on_device`` leaves the kept maps where the model ran.
    On the CPU the layers are worked on side by side (:func:`~inv_widgets.engine.runtime.parallel_map`: each
    layer on one thread; the same bits as in turn). ``maps``: the map type (``"gradcam"`` keeps every
    channel's activations too, and needs the pass's ``taylor`` statistic).

    ``nearest``: for ``"gradcam"`` maps, work out every image's :meth:`LayerMaps.nearest_kept` now, for the
    whole batch at once (``contrast.nearest_kept_many``: the same answers), as a dataset run that cuts every
    layer of every image wants; otherwise each is worked out at its layer's first cut. Nothing returned is a
    view of a batch of several images (an image's result does not keep the batch alive) unless ``views`` (a
    dataset run, which drops the batch's results together); a batch of one image is not copied."""
    b = captured.logits.shape[0]
    copies = b > 1 and not views
    names = list(captured.order)

    def one(name: str) -> list[LayerMaps]:
        a = captured.activations[name].float()
        pct = layer_percent(captured, name, weighting).cpu()
        cams = gradcam_lowres(a, grad_mean=captured.grad_mean[name]).cpu()
        every = None
        if maps == "gradcam":
            if captured.taylor.get(name) is None:
                raise ValueError(
                    "maps='gradcam' needs gradient x activation from the pass: capture with weighting=None"
                )
            every = (a.cpu(), captured.grad_mean[name].float().cpu(), captured.taylor[name].float().cpu())
        kepts = [keep_channels(pct[i]) for i in range(b)]
        near = [None] * b
        if every is not None and nearest:
            near = nearest_kept_many(every[0], [k.numpy() for k in kepts])
        got = []
        for i, kept in enumerate(kepts):
            kept_maps = a[i].index_select(0, kept.to(a.device)).relu_()  # a copy: ReLU in place
            channels = None if every is None else tuple(t[i].clone() if copies else t[i] for t in every)
            got.append(
                LayerMaps(
                    pct[i].clone(),
                    kept,
                    kept_maps if on_device else kept_maps.cpu(),
                    cams[i].clone(),
                    map_type=maps,
                    channels=channels,
                    _nearest=near[i],
                )
            )
        return got

    if names and captured.activations[names[0]].device.type == "cpu":
        per_layer = parallel_map(one, names, cost=lambda n: captured.activations[n].numel())
    else:  # a device's work is queued in order anyway
        per_layer = [one(n) for n in names]
    out: list[dict[str, LayerMaps]] = [dict() for _ in range(b)]
    for name, got in zip(names, per_layer):
        for i in range(b):
            out[i][name] = got[i]
    return out


def plan_cut(
    tree: Tree, percent_kept, *, k: int | None = None, threshold: float | None = None, prune: bool | None = None
) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Where each kept channel goes in a cut: ``(assignment, weights, k_cut, threshold)``.

    ``assignment`` (n,) the cluster of each kept channel, clusters numbered by weight (0 = heaviest), -1 where
    the paper's pruning dropped it (``prune``, default the recipe's); ``weights`` (K,) float64 percent,
    descending; ``k_cut`` the clusters before pruning; ``threshold`` a height that gives the cut."""
    prune = tree.prune if prune is None else bool(prune)
    if tree.n == 0:
        return np.zeros(0, np.int64), np.zeros(0), 0, 0.0
    labels = assign(tree, k=k, threshold=threshold)
    k_cut = int(labels.max()) + 1
    pct = np.asarray(percent_kept.cpu().numpy() if isinstance(percent_kept, torch.Tensor) else percent_kept)
    weights = np.bincount(labels, weights=pct.astype(np.float64), minlength=k_cut)
    keep = prune_mask(weights) if prune else np.ones(k_cut, dtype=bool)
    order = [c for c in np.argsort(-weights, kind="stable") if keep[c]]
    remap = np.full(k_cut, -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    thr = float(threshold) if threshold is not None else tree.threshold_for(k_cut)
    return remap[labels], weights[order].astype(np.float64), k_cut, thr


def scaled_lowres(maps: torch.Tensor) -> np.ndarray:
    """Maps (K, h, w) min-max scaled to [0, 1] as float32 numpy, flat maps as zeros (engine.maps.minmax_maps)."""
    return minmax_maps(maps).cpu().numpy().astype(np.float32, copy=False)


def cut_layer(
    name: str,
    lm: LayerMaps,
    tree: Tree,
    *,
    k: int | None = None,
    threshold: float | None = None,
    prune: bool | None = None,
    by: CutBy | None = None,
) -> LayerCut:
    """Cut one layer's dendrogram (by ``k``, by ``threshold``, or the suggested cut) into a :class:`LayerCut`:
    each cluster map the weighted mean of its members' maps (weights: the members' percents), or, for
    ``maps="gradcam"`` layer maps, the Grad-CAM of every channel of the cluster weighed by their first-order
    worth (:func:`~inv_widgets.engine.contrast.gradcam_cut`); min-max scaled, heaviest first."""
    by = by or ("suggested" if k is None and threshold is None else ("k" if threshold is None else "threshold"))
    if lm.maps.device.type == "cpu":
        with limited_threads(1):  # a few small operations: threads would wait for each other more than work
            return _cut_layer(name, lm, tree, k, threshold, prune, by)
    return _cut_layer(name, lm, tree, k, threshold, prune, by)


def _cut_layer(name: str, lm: LayerMaps, tree: Tree, k, threshold, prune, by: CutBy) -> LayerCut:
    pct = lm.percent_kept
    assignment, weights, k_cut, thr = plan_cut(tree, pct, k=k, threshold=threshold, prune=prune)
    h, w = lm.shape
    n_maps = len(weights)
    kept = lm.kept.cpu().numpy()
    if n_maps and lm.map_type == "gradcam":  # the Grad-CAM of each cluster's channels, all of them (engine/contrast)
        raw, weights, groups, order = gradcam_cut(*lm.channels, kept, assignment, n_maps, lm.nearest_kept())
        rank = np.empty(n_maps, np.int64)
        rank[order] = np.arange(n_maps)
        assignment = np.where(assignment >= 0, rank[np.maximum(assignment, 0)], -1)
        low = scaled_lowres(raw[torch.as_tensor(order)])
        members = tuple(kept[assignment == j] for j in range(n_maps))
        channels = tuple(np.flatnonzero(groups == int(order[j])) for j in range(n_maps))
        return LayerCut(name, low, weights[order], members, assignment, thr, k_cut, by, channels=channels)
    if n_maps == 0:
        low = np.zeros((0, h, w), np.float32)
    else:
        low = scaled_lowres(cluster_maps_lowres(lm.maps, pct.to(lm.maps.device), assignment, n_maps))
    members = tuple(kept[assignment == j] for j in range(n_maps))
    return LayerCut(name, low, weights, members, assignment, thr, k_cut, by)


def cut_batch(
    captured: Captured,
    *,
    recipe: str = "fast",
    k: int | None = None,
    weighting: str = "guided",
    device_ward: bool = False,
    maps: str = "published",
) -> list[dict[str, tuple[LayerMaps, LayerCut]]]:
    """Every layer of every image of a captured batch, cut (the suggested cut, or ``k``): per image, per layer,
    ``(LayerMaps, LayerCut)``. The dendrograms of the whole batch are built in one call of the registry (the
    paper recipes embed them side by side; ``device_ward`` links the fast recipe on the model's device)."""
    per_image = layer_maps(captured, weighting, on_device=device_ward, maps=maps, nearest=True, views=True)
    names = list(captured.order)
    b = len(per_image)
    trees = build_trees([per_image[i][n].maps for n in names for i in range(b)], recipe, device=device_ward)
    pairs = [(li, i) for li in range(len(names)) for i in range(b)]

    def one(pair: tuple[int, int]) -> LayerCut:
        li, i = pair
        return cut_layer(names[li], per_image[i][names[li]], trees[li * b + i], k=k)

    if device_ward:
        cuts = [one(p) for p in pairs]
    else:  # on the CPU side by side (one thread each), as the layers' maps and trees
        cuts = parallel_map(one, pairs, cost=lambda p: per_image[p[1]][names[p[0]]].maps.numel())
    out: list[dict[str, tuple[LayerMaps, LayerCut]]] = [dict() for _ in range(b)]
    for (li, i), cut in zip(pairs, cuts):
        out[i][names[li]] = (per_image[i][names[li]], cut)
    return out
