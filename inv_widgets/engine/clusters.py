"""Clusters: one cut of one layer's dendrogram, the cluster maps a person sees (made by LayerResult.cut)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import export
from . import display
from .ablation import Ablation, Curves
from .keys import MapKey
from .maps import reveal_image, upsample_minmax
from .numeric import pearson
from .records import LayerCut
from .request import check_index

__all__ = ["Clusters"]


class Clusters:
    """One cut of one layer's dendrogram: the cluster maps, sorted by weight (descending).

    A view of one :class:`~inv_widgets.engine.records.LayerCut` (the record a stored run keeps too) with what
    needs the explanation: the maps at the input's resolution, Deep Reveal, keys, ablation, pictures.

    ``weights`` are percentages of the layer. For ``maps="published"`` (and ``"contrast"``) each map's is the sum
    of its members' ``channel_weights``: they sum to the kept channels' share of the layer (often 70-99 %, less
    after the paper recipe's pruning), not to 100 as ``channel_weights`` do, since the channels below the keep
    filter (89.6 / C %) are in no cluster map. For ``maps="gradcam"`` (the default) each map's is the first-order
    worth of every channel it is drawn from (sum of mean(G A)) in percent of the layer's positive worth: negative
    for a cluster whose channels lower the class's score; they sum to the worth of the channels in the maps
    (at most 100).
    """

    def __init__(self, layer: Any, cut: LayerCut):
        self.layer = layer  # the LayerResult that made this cut (engine/explanation.py, which imports this module)
        self.cut = cut
        self._maps: np.ndarray | None = None

    @property
    def maps(self) -> np.ndarray:
        """(K, H, W) float32 in [0, 1]: each cluster map bilinear to the input's resolution and min-max scaled
        (made on first use, then kept with the cut)."""
        if self._maps is None:
            self._maps = upsample_minmax(torch.from_numpy(self.cut.maps_lowres), self.layer.explanation.input_size)
        return self._maps

    @property
    def weights(self) -> np.ndarray:
        """(K,) percent of the layer, descending (see the class docstring for what they sum to)."""
        return self.cut.weights

    @property
    def members(self) -> list[np.ndarray]:
        """Channel indices (into the layer's channels, ascending) of each map, aligned with ``maps``."""
        return list(self.cut.members)

    @property
    def maps_lowres(self) -> np.ndarray:
        """(K, h, w) float32 in [0, 1]: the cluster maps at feature resolution, min-max scaled (as a run stores
        them)."""
        return self.cut.maps_lowres

    @property
    def assignment(self) -> np.ndarray:
        """(len(kept),) cluster index of each kept channel, aligned with ``maps``; -1 where pruned."""
        return self.cut.assignment

    @property
    def threshold(self) -> float:
        """A cut height of the dendrogram that gives this cut."""
        return self.cut.threshold

    @property
    def k_cut(self) -> int:
        """Clusters at the cut before pruning."""
        return self.cut.k_cut

    @property
    def cut_by(self) -> str:
        """How the cut was asked for: "suggested" (``cut()``), "k" (``cut(k=...)``, also a ``cut(height=...)``
        that ``max_k`` turned into a cut by k) or "threshold" (``cut(threshold=...)``, ``cut(height=...)``)."""
        return self.cut.cut_by

    @property
    def k(self) -> int:
        """The number of cluster maps in this cut."""
        return self.cut.k

    def __len__(self) -> int:
        return self.k

    @property
    def pruned(self) -> int:
        """How many light clusters the cut dropped (the paper's pruning; 0 without it)."""
        return self.cut.pruned

    def find(self, key) -> int:
        """The index of the cluster map whose identity is ``key`` (a :class:`MapKey`), -1 if this cut has none."""
        if key is None:
            return -1
        try:
            return self.keys().index(key)
        except ValueError:
            return -1

    def gradcam_agreement(self) -> np.ndarray:
        """Pearson correlation of each cluster map with the layer's plain Grad-CAM, (K,) in [-1, 1] (0 for a
        flat map). Made once per cut."""
        got = getattr(self, "_agreement", None)
        if got is None:
            got = self._agreement = pearson(self.maps, self.layer.gradcam()) if self.k else np.zeros(0)
        return got.copy()

    def ablation(self) -> Ablation:
        """What each cluster map's member channels are worth to the target: the drop of its logit and
        probability when they are zeroed at the layer's output (one batched forward pass of the K masked
        copies from the layer on; made once per cut). Aligned with ``maps``; ``.share`` is each drop as a
        percentage of the drop when the whole layer is zeroed."""
        got = getattr(self, "_ablation", None)
        if got is None:
            channels = self.cut.channels  # a "gradcam" map is drawn from more channels than its kept members
            got = self._ablation = self.layer.ablation(list(channels) if channels is not None else self.members)
        return got

    def curves(self, j: int, *, steps: int = 20, progress=None) -> Curves:
        """Deletion and insertion curves of cluster map ``j`` (row 0) and of the layer's Grad-CAM (row 1),
        scored by the target's probability (:meth:`Explanation.curves`); made once per map and ``steps``."""
        j = check_index(j, self.k, what="cluster map", owner="this cut")
        cache = self.__dict__.setdefault("_curves", {})
        key = (int(j), int(steps))
        if key not in cache:
            sal = np.stack([self.maps[j], self.layer.gradcam()])
            cache[key] = self.layer.explanation.curves(sal, steps=steps, progress=progress)
        return cache[key]

    def reveal(self, j: int, step: int, fill=None) -> np.ndarray:
        """Deep Reveal image of cluster map ``j`` at step 0..5 (2, 4.5, 8, 13, 20, 30 % of pixels), uint8 (H, W, 3);
        hidden pixels black, or ``fill`` (a colour or an image, 0..255: :func:`reveal_image`)."""
        j = check_index(j, self.k, what="cluster map", owner="this cut")
        return reveal_image(self.layer.explanation.image, self.maps_lowres[j], step, fill)

    def key(self, j: int) -> MapKey:
        """The identity of cluster map ``j`` (model, image, target, layer, sorted member channels)."""
        e = self.layer.explanation
        return MapKey(
            e.model_id, e.image_id, int(e.target), self.layer.name, tuple(int(c) for c in np.sort(self.members[j]))
        )

    def keys(self) -> list[MapKey]:
        """The :class:`MapKey` of every cluster map, in order (the key a label store files its answers under)."""
        keys = getattr(self, "_keys", None)
        if keys is None:
            keys = self._keys = [self.key(j) for j in range(self.k)]
        return list(keys)

    # ---- notebook views (engine/display.py) and files (inv_widgets.export, plain functions) ----------------
    def __repr__(self) -> str:
        return display.clusters_repr(self)

    def _repr_html_(self) -> str:
        return display.clusters_html(self)

    def to_frame(self):
        """One row per cluster map: layer, map (rank), weight (percent), size (feature maps), members, key, ..."""
        return display.frame(display.clusters_rows(self))

    def to_png(self, j: int, path=None, *, cmap: str = "jet", alpha: float = 0.5, overlay: bool = True) -> bytes:
        """Cluster map ``j`` at the input resolution as PNG bytes, over the image (``overlay=False``: the
        coloured map alone); also written to ``path`` when given (whole or not at all)."""
        return export.map_png(self, j, path, cmap=cmap, alpha=alpha, overlay=overlay)

    def to_sheet(
        self,
        path=None,
        *,
        cmap: str = "jet",
        alpha: float = 0.5,
        size: int = 160,
        cols: int | None = None,
        gradcam: bool = True,
    ) -> bytes:
        """The gallery as one PNG: the layer's Grad-CAM, then every cluster map over the image with its weight and
        number of feature maps; also written to ``path`` when given."""
        return export.gallery_sheet(self, path, cmap=cmap, alpha=alpha, size=size, cols=cols, gradcam=gradcam)
