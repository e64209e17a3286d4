"""One stored image of a run and its layers: ``run[i]`` (:class:`RunImage`) and ``run[i][layer]`` (:class:`RunLayer`).

Read from the run's committed shards (``runs/run.py`` opens them); nothing here runs a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..engine import MapKey
from ..engine.keys import parse_members
from ..engine.maps import reveal_image, upsample_minmax
from ..engine.records import LayerCut
from ..engine.request import check_index, check_layer
from ..engine.weights import keep_channels

__all__ = ["RunImage", "RunLayer"]


class RunLayer:
    """One layer of one stored image: the :class:`~inv_widgets.engine.records.LayerCut` the run wrote (``cut``),
    and what :class:`~inv_widgets.engine.Clusters` shows of it.

    ``maps_lowres`` (K, h, w) float32 in [0, 1] (feature resolution, min-max scaled; stored as float16),
    ``maps`` (K, H, W) upsampled to the image, ``weights`` (K,) percent, ``members`` channel indices,
    ``key(j)``, ``reveal(j, step)``, ``gradcam()`` and ``channel_weights``.
    """

    def __init__(self, image: RunImage, name: str, index: int, rows: pd.DataFrame):
        self.image = image
        self.name = name
        self.index = index
        self._rows = rows
        self.weights = rows["weight"].to_numpy(np.float64)
        self.members = [np.array(parse_members(m), dtype=np.int64) for m in rows["members"]]
        self._maps_lowres: np.ndarray | None = None
        self._cut: LayerCut | None = None

    def __repr__(self):
        return f"RunLayer({self.name!r}, image={self.image.index}, k={self.k})"

    @property
    def k(self) -> int:
        """The number of cluster maps stored for this layer (the run's cut)."""
        return len(self.weights)

    def __len__(self) -> int:
        return self.k

    @property
    def cut(self) -> LayerCut:
        """The layer's cut as the run wrote it (the record ``Clusters`` wraps in a Session)."""
        if self._cut is None:
            kept = self.kept
            assignment = np.full(len(kept), -1, dtype=np.int64)
            for j, m in enumerate(self.members):
                assignment[np.searchsorted(kept, m)] = j
            rows = self._rows
            threshold = float(rows["threshold"].iloc[0]) if self.k and "threshold" in rows else float("nan")
            k_cut = int(rows["k_cut"].iloc[0]) if self.k and "k_cut" in rows else self.k
            by = "suggested" if self.image.run.k is None else "k"
            self._cut = LayerCut(
                self.name, self.maps_lowres, self.weights, tuple(self.members), assignment, threshold, k_cut, by
            )
        return self._cut

    @property
    def maps_lowres(self) -> np.ndarray:
        """The stored cluster maps at feature resolution, (k, h, w) float32 in [0, 1] (min-max scaled as the cut
        scales them), read once."""
        if self._maps_lowres is None:
            rows = self._rows["row"].to_numpy()
            h, w = self.image.run.meta["shapes"][self.name]
            if len(rows) == 0:
                self._maps_lowres = np.zeros((0, h, w), np.float32)
            else:
                lo, hi = int(rows.min()), int(rows.max()) + 1
                block = self.image._shard.read(f"maps/{self.index}", slice(lo, hi))
                self._maps_lowres = block[rows - lo].astype(np.float32)
        return self._maps_lowres

    @property
    def maps(self) -> np.ndarray:
        """(K, H, W) float32 in [0, 1]: bilinear to the image size and min-max scaled, as ``Clusters.maps``."""
        return upsample_minmax(torch.from_numpy(self.maps_lowres), self.image.size)

    @property
    def shape(self) -> tuple[int, int]:
        """The layer's feature-map resolution (h, w)."""
        h, w = self.image.run.meta["shapes"][self.name]
        return int(h), int(w)

    @property
    def channel_weights(self) -> np.ndarray:
        """Weight of every channel (the run's weighting), percent of the layer total, (C,)."""
        return self.image._shard.read(f"channel_weights/{self.index}", self.image.row).astype(np.float32)

    @property
    def kept(self) -> np.ndarray:
        """Channels kept by the weight filter (from the stored channel weights)."""
        return keep_channels(torch.from_numpy(self.channel_weights)).numpy()

    def gradcam_lowres(self) -> np.ndarray:
        """Plain Grad-CAM at feature resolution, min-max scaled, (h, w) float32."""
        return self.image._shard.read(f"gradcam/{self.index}", self.image.row).astype(np.float32)

    def gradcam(self) -> np.ndarray:
        """Plain Grad-CAM at this layer, (H, W) in [0, 1] at the image size, as ``LayerResult.gradcam()``."""
        return upsample_minmax(torch.from_numpy(self.gradcam_lowres())[None], self.image.size)[0]

    def _map(self, j) -> int:
        return check_index(j, self.k, what="cluster map", owner=f"layer {self.name!r} of image {self.image.index}")

    def key(self, j: int) -> MapKey:
        """The :class:`MapKey` of cluster map ``j``."""
        r = self._rows.iloc[self._map(j)]
        return MapKey(r["model"], r["image_id"], int(r["target"]), r["layer"], r["members"])

    def keys(self) -> list[MapKey]:
        """The :class:`MapKey` of every stored cluster map, in order."""
        return [self.key(j) for j in range(self.k)]

    def reveal(self, j: int, step: int) -> np.ndarray:
        """Deep Reveal image of cluster map ``j`` at step 0..5, uint8 (H, W, 3), as ``Clusters.reveal``."""
        return reveal_image(self.image.image, self.maps_lowres[self._map(j)], step)


class RunImage:
    """One stored image: ``image`` (uint8), prediction and target, and ``img[layer]`` -> :class:`RunLayer`."""

    def __init__(self, run, info: pd.Series, rows: pd.DataFrame):
        self.run = run
        self.index = int(info["image"])
        self.position = int(info["position"])
        self.image_id = str(info["image_id"])
        self.predicted = int(info["predicted"])
        self.target = int(info["target"])
        self.label = None if pd.isna(info["label"]) else int(info["label"])
        self.probability = float(info["probability"])
        self.shard = int(info["shard"])
        self.row = int(info["row"])
        self._rows = rows
        self._image: np.ndarray | None = None
        self._layers: dict[str, RunLayer] = {}

    def __repr__(self):
        return (
            f"RunImage({self.index}, target={self.target_name!r}, predicted={self.predicted_name!r}, "
            f"layers={len(self.layers)})"
        )

    @property
    def _shard(self):
        """The committed shard that holds this image (opened by the run, kept in its cache)."""
        return self.run._shard(self.shard)

    @property
    def layers(self) -> list[str]:
        """The run's explained layers, in order."""
        return list(self.run.layers)

    @property
    def image(self) -> np.ndarray:
        """What a person sees, uint8 (H, W, 3), at the model's input size."""
        if self._image is None:
            self._image = self._shard.read("images", self.row)
        return self._image

    @property
    def size(self) -> tuple[int, int]:
        """The model input's size (H, W) in pixels."""
        return tuple(int(v) for v in self.run.meta["input_size"])

    @property
    def logits(self) -> np.ndarray:
        """The model's logits for this image, (classes,) float32."""
        return self._shard.read("logits", self.row).astype(np.float32)

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of :attr:`logits`, (classes,) float64."""
        z = self.logits.astype(np.float64)
        e = np.exp(z - z.max())
        return e / e.sum()

    @property
    def target_name(self) -> str:
        """The explained class's name."""
        return self.run.classes[self.target]

    @property
    def predicted_name(self) -> str:
        """The predicted class's name."""
        return self.run.classes[self.predicted]

    def __getitem__(self, name) -> RunLayer:
        try:
            name = check_layer(name, self.run.layers, owner="this run")
        except IndexError as e:  # name them: run[i][99] (issue 23)
            raise IndexError(
                f"{e} (0..{len(self.run.layers) - 1}): {self.run.layers}; a layer's cluster maps are "
                f"run[{self.index}][layer][j]"
            ) from None
        if name not in self._layers:
            li = self.run.layers.index(name)
            rows = self._rows[self._rows["layer_index"] == li].sort_values("map")
            self._layers[name] = RunLayer(self, name, li, rows)
        return self._layers[name]

    def __iter__(self):
        return (self[n] for n in self.run.layers)

    def __len__(self) -> int:
        return len(self.run.layers)
