"""Clusters: one cut of one layer's dendrogram, the cluster maps a person sees (made by LayerResult.cut)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from . import display
from .ablation import Ablation, Curves
from .keys import MapKey
from .maps import reveal_image
from .numeric import pearson

__all__ = ["Clusters"]


@dataclass(eq=False)
class Clusters:
    """One cut of one layer's dendrogram: the cluster maps, sorted by weight (descending).

    ``weights`` are percentages of the layer's total guided-gradient weight: each map's is the sum of its
    members' ``channel_weights``. They sum to the kept channels' share of the layer (often 70-99 %, less after
    the paper recipe's pruning), not to 100 as ``channel_weights`` do: the channels below the keep filter
    (89.6 / C %) are in no cluster map.
    """

    layer: Any  # the LayerResult that made this cut (engine/explanation.py, which imports this module)
    maps: np.ndarray  # (K, H, W) float32 in [0, 1], input resolution
    weights: np.ndarray  # (K,) percent of the layer total, descending; sum = the kept channels' share
    members: list[np.ndarray]  # channel indices (into the layer's channels), aligned with maps
    maps_lowres: np.ndarray  # (K, h, w) feature resolution, before min-max
    assignment: np.ndarray  # (len(kept),) cluster index aligned with maps, -1 where pruned
    threshold: float  # a cut height of the dendrogram that gives this cut
    k_cut: int  # clusters at the cut before pruning
    #: how the cut was asked for: "suggested" (``cut()``), "k" (``cut(k=...)``, also a ``cut(height=...)``
    #: that ``max_k`` turned into a cut by k) or "threshold" (``cut(threshold=...)``, ``cut(height=...)``)
    cut_by: Literal["suggested", "k", "threshold"] = "k"

    @property
    def k(self) -> int:
        return len(self.weights)

    def __len__(self) -> int:
        return self.k

    @property
    def pruned(self) -> int:
        """How many light clusters the cut dropped (the paper's pruning; 0 without it)."""
        return int(self.k_cut) - self.k

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
            got = self._ablation = self.layer.ablation(self.members)
        return got

    def curves(self, j: int, *, steps: int = 20, progress=None) -> Curves:
        """Deletion and insertion curves of cluster map ``j`` (row 0) and of the layer's Grad-CAM (row 1),
        scored by the target's probability (:meth:`Explanation.curves`); made once per map and ``steps``."""
        if not 0 <= j < self.k:
            raise IndexError(f"cluster map {j} does not exist; this cut has {self.k} maps")
        cache = self.__dict__.setdefault("_curves", {})
        key = (int(j), int(steps))
        if key not in cache:
            sal = np.stack([self.maps[j], self.layer.gradcam()])
            cache[key] = self.layer.explanation.curves(sal, steps=steps, progress=progress)
        return cache[key]

    def reveal(self, j: int, step: int) -> np.ndarray:
        """Deep Reveal image of cluster map ``j`` at step 0..5 (2, 4.5, 8, 13, 20, 30 % of pixels), uint8 (H, W, 3)."""
        if not 0 <= j < self.k:
            raise IndexError(f"cluster map {j} does not exist; this cut has {self.k} maps")
        return reveal_image(self.layer.explanation.image, self.maps_lowres[j], step)

    def key(self, j: int) -> MapKey:
        """The identity of cluster map ``j`` (model, image, target, layer, sorted member channels)."""
        e = self.layer.explanation
        return MapKey(e.model_id, e.image_id, int(e.target), self.layer.name, tuple(int(c) for c in np.sort(self.members[j])))

    def keys(self) -> list[MapKey]:
        keys = getattr(self, "_keys", None)
        if keys is None:
            keys = self._keys = [self.key(j) for j in range(self.k)]
        return list(keys)

    # ---- notebook views and export (engine/display.py; pictures and files by inv_widgets.export) ----------
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
        return display.tool("export").map_png(self, j, path, cmap=cmap, alpha=alpha, overlay=overlay)

    def to_sheet(self, path=None, *, cmap: str = "jet", alpha: float = 0.5, size: int = 160, cols: int | None = None,
                 gradcam: bool = True) -> bytes:
        """The gallery as one PNG: the layer's Grad-CAM, then every cluster map over the image with its weight and
        number of feature maps; also written to ``path`` when given."""
        return display.tool("export").gallery_sheet(self, path, cmap=cmap, alpha=alpha, size=size, cols=cols,
                                                   gradcam=gradcam)
