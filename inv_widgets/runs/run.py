"""Reading a stored run: ``Run.open(path)``, the table of maps, one image's layers and maps, consumers.

Nothing here runs a model. Everything comes from the committed shards (see runs/store.py); a run that is
still being written shows the images finished so far (``run.refresh()`` looks again).
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..engine import MapKey
from ..engine.maps import reveal_image, upsample_minmax
from ..engine.runtime import LRU
from ..engine.weights import keep_channels
from .store import RunStore, shard_name

__all__ = ["Run", "RunImage", "RunLayer"]


class _Shard:
    """One committed shard's arrays, opened read-only (zarr over one zip file)."""

    def __init__(self, path: Path):
        import zarr

        self.path = path
        self._store = zarr.storage.ZipStore(path / "arrays.zarr.zip", mode="r")
        self.group = zarr.open_group(self._store, mode="r")
        self._lock = threading.Lock()

    def read(self, name: str, sel) -> np.ndarray:
        with self._lock:
            return np.asarray(self.group[name][sel])


class RunLayer:
    """One layer of one stored image: the cut's cluster maps, as :class:`~inv_widgets.engine.Clusters` has them.

    ``maps_lowres`` (K, h, w) float32 in [0, 1] (feature resolution, min-max scaled; stored as float16),
    ``maps`` (K, H, W) upsampled to the image, ``weights`` (K,) percent, ``members`` channel indices,
    ``key(j)``, ``reveal(j, step)``, ``gradcam()`` and ``channel_weights``.
    """

    def __init__(self, image: "RunImage", name: str, index: int, rows: pd.DataFrame):
        self.image = image
        self.name = name
        self.index = index
        self._rows = rows
        self.weights = rows["weight"].to_numpy(np.float64)
        self.members = [np.array([int(c) for c in m.split(",")], dtype=np.int64) for m in rows["members"]]
        self._maps_lowres: np.ndarray | None = None

    def __repr__(self):
        return f"RunLayer({self.name!r}, image={self.image.index}, k={self.k})"

    @property
    def k(self) -> int:
        return len(self.weights)

    def __len__(self) -> int:
        return self.k

    @property
    def maps_lowres(self) -> np.ndarray:
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
        h, w = self.image.run.meta["shapes"][self.name]
        return int(h), int(w)

    @property
    def channel_weights(self) -> np.ndarray:
        """Guided-gradient weight of every channel, percent of the layer total, (C,)."""
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

    def key(self, j: int) -> MapKey:
        if not 0 <= j < self.k:
            raise IndexError(f"cluster map {j} does not exist; layer {self.name!r} of image {self.image.index} "
                             f"has {self.k}")
        r = self._rows.iloc[j]
        return MapKey(r["model"], r["image_id"], int(r["target"]), r["layer"], r["members"])

    def keys(self) -> list[MapKey]:
        return [self.key(j) for j in range(self.k)]

    def reveal(self, j: int, step: int) -> np.ndarray:
        """Deep Reveal image of cluster map ``j`` at step 0..5, uint8 (H, W, 3), as ``Clusters.reveal``."""
        if not 0 <= j < self.k:
            raise IndexError(f"cluster map {j} does not exist; layer {self.name!r} of image {self.image.index} "
                             f"has {self.k}")
        return reveal_image(self.image.image, self.maps_lowres[j], step)


class RunImage:
    """One stored image: ``image`` (uint8), prediction and target, and ``img[layer]`` -> :class:`RunLayer`."""

    def __init__(self, run: "Run", info: pd.Series, rows: pd.DataFrame):
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
        return (f"RunImage({self.index}, target={self.target_name!r}, predicted={self.predicted_name!r}, "
                f"layers={len(self.layers)})")

    @property
    def _shard(self) -> _Shard:
        return self.run._shard(self.shard)

    @property
    def layers(self) -> list[str]:
        return list(self.run.layers)

    @property
    def image(self) -> np.ndarray:
        """What a person sees, uint8 (H, W, 3), at the model's input size."""
        if self._image is None:
            self._image = self._shard.read("images", self.row)
        return self._image

    @property
    def size(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.run.meta["input_size"])

    @property
    def logits(self) -> np.ndarray:
        return self._shard.read("logits", self.row).astype(np.float32)

    @property
    def probabilities(self) -> np.ndarray:
        z = self.logits.astype(np.float64)
        e = np.exp(z - z.max())
        return e / e.sum()

    @property
    def target_name(self) -> str:
        return self.run.classes[self.target]

    @property
    def predicted_name(self) -> str:
        return self.run.classes[self.predicted]

    def __getitem__(self, name) -> RunLayer:
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
            name = self.run.layers[int(name)]
        if name not in self.run.layers:
            raise KeyError(f"layer {name!r} is not in this run; its layers are {self.run.layers}")
        if name not in self._layers:
            li = self.run.layers.index(name)
            rows = self._rows[self._rows["layer_index"] == li].sort_values("map")
            self._layers[name] = RunLayer(self, name, li, rows)
        return self._layers[name]

    def __iter__(self):
        return (self[n] for n in self.run.layers)

    def __len__(self) -> int:
        return len(self.run.layers)


class Run:
    """A stored dataset-scale explanation (made by :func:`inv_widgets.explain_dataset`).

    ``Run.open(path)``; ``run.maps`` (DataFrame, one row per cluster map), ``run.images`` (one row per
    finished image), ``run[i]`` (image index ``i`` of the session -> :class:`RunImage`), ``len(run)``
    (finished images), ``run.complete``, ``run.missing()``. For labelling and aggregation without the
    model: ``run.keys()``, ``run.weights()``, ``run.locate(key)``, ``run.map(key)``, ``run.reveal(key, step)``.
    """

    def __init__(self, path, *, _meta: dict | None = None):
        self.store = RunStore(path)
        self.meta = _meta or self.store.read_meta()
        self._shards = LRU(8)
        self._lock = threading.Lock()
        self._maps: pd.DataFrame | None = None
        self._images: pd.DataFrame | None = None
        self._by_image: dict[int, int] | None = None
        self._by_key: dict[MapKey, int] | None = None
        self._pos: np.ndarray | None = None
        self._committed: dict[int, Path] = {}
        self.refresh()

    @classmethod
    def open(cls, path) -> "Run":
        """Open a run directory (complete or not) for reading."""
        return cls(path)

    # ---- what the run is -----------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.store.root

    @property
    def layers(self) -> list[str]:
        return list(self.meta["layers"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def model(self) -> str:
        """Fingerprint of the model that made the run (``MapKey.model`` of every map)."""
        return self.meta["model"]

    @property
    def recipe(self) -> str:
        return self.meta["recipe"]

    @property
    def weighting(self) -> str:
        """The channel weights the run used: "guided" or "taylor" (its session's)."""
        return self.meta.get("weighting", "guided")

    @property
    def layer_point(self) -> str:
        """Where the run read each layer: "activation" or "conv" (its session's; runs made before the option
        existed read the conv output)."""
        return self.meta.get("layer_point", "conv")

    @property
    def k(self) -> int | None:
        return self.meta["k"]

    @property
    def indices(self) -> list[int]:
        """The session's image indices the run covers, in run order."""
        return list(self.meta["indices"])

    def __repr__(self):
        return (f"Run({str(self.path)!r}, images={len(self)}/{len(self.meta['indices'])}, layers={len(self.layers)}, "
                f"maps={len(self._table()[0])}, recipe={self.recipe!r})")

    # ---- tables -----------------------------------------------------------------------------------
    def refresh(self) -> "Run":
        """Look again for shards committed since the run was opened (a run being written)."""
        with self._lock:
            committed = self.store.committed()
            if committed.keys() != self._committed.keys():
                self._committed = committed
                self._maps = self._images = None
                self._by_image = self._by_key = self._pos = None
        return self

    def _table(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        with self._lock:
            if self._maps is None:
                maps = [pd.read_parquet(p / "maps.parquet") for p in self._committed.values()]
                imgs = [pd.read_parquet(p / "images.parquet") for p in self._committed.values()]
                self._maps = (pd.concat(maps, ignore_index=True) if maps else _empty_maps())
                self._images = (pd.concat(imgs, ignore_index=True) if imgs else _empty_images())
            return self._maps, self._images

    @property
    def maps(self) -> pd.DataFrame:
        """One row per cluster map: the MapKey fields (model, image_id, target, layer, members), the session's
        image index, position in the run, layer_index, map (rank in its layer by weight), weight (percent of
        the layer), size (member channels), predicted, and where it is stored (shard, row). A copy."""
        return self._table()[0].copy()

    @property
    def images(self) -> pd.DataFrame:
        """One row per finished image: image (session index), position, image_id, label (ground truth, if
        known), predicted, target, probability (of the target), shard, row. A copy."""
        return self._table()[1].copy()

    def __len__(self) -> int:
        return len(self._table()[1])

    @property
    def complete(self) -> bool:
        return len(self) == len(self.meta["indices"])

    def missing(self) -> list[int]:
        """Image indices of the run not finished yet (run order)."""
        done = set(self._table()[1]["image"].tolist())
        return [i for i in self.meta["indices"] if i not in done]

    def __contains__(self, i) -> bool:
        return int(i) in self._image_rows()

    # ---- one image --------------------------------------------------------------------------------
    def _image_rows(self) -> dict[int, int]:
        if self._by_image is None:
            imgs = self._table()[1]
            self._by_image = dict(zip(imgs["image"].tolist(), range(len(imgs))))
        return self._by_image

    def _positions(self) -> np.ndarray:
        """The maps table's position column (sorted: shards in order, images in order within a shard)."""
        if self._pos is None:
            self._pos = self._table()[0]["position"].to_numpy()
        return self._pos

    def _shard(self, s: int) -> _Shard:
        path = self._committed.get(s) or (self.store.shards / shard_name(s))
        return self._shards.get(s, lambda: _Shard(path))

    def __getitem__(self, i) -> RunImage:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"run[i] takes the session's image index (int), got {type(i).__name__}")
        row = self._image_rows().get(int(i))
        if row is None:
            why = "is not finished yet" if int(i) in set(self.meta["indices"]) else "is not part of this run"
            raise KeyError(f"image {int(i)} {why}")
        maps, imgs = self._table()
        info = imgs.iloc[row]
        pos = self._positions()
        p = int(info["position"])
        lo, hi = np.searchsorted(pos, p, side="left"), np.searchsorted(pos, p, side="right")
        return RunImage(self, info, maps.iloc[lo:hi])

    def __iter__(self):
        imgs = self._table()[1].sort_values("position")
        return (self[int(i)] for i in imgs["image"])

    def image(self, i) -> np.ndarray:
        """What a person sees of image ``i``, uint8 (H, W, 3), stored with the run."""
        return self[i].image

    # ---- maps by key: what a labelling pool and the aggregation use ---------------------------------
    def keys(self) -> list[MapKey]:
        """Every cluster map's key, in table order (by position, layer, rank)."""
        return list(self._key_rows())

    def _key_rows(self) -> dict[MapKey, int]:
        if self._by_key is None:
            maps = self._table()[0]
            cols = zip(maps["model"], maps["image_id"], maps["target"], maps["layer"], maps["members"])
            self._by_key = {MapKey(*c): r for r, c in enumerate(cols)}
        return self._by_key

    def weights(self) -> dict[MapKey, float]:
        """Percent weight of every cluster map: ``aggregate_labels(store, merge=True, weights=run.weights())``."""
        w = self._table()[0]["weight"].to_numpy()
        return {k: float(w[r]) for k, r in self._key_rows().items()}

    def locate(self, key) -> tuple[int, str, int]:
        """``(image index, layer, j)`` of a cluster map: ``run[i][layer]`` holds it as map ``j``."""
        key = key if isinstance(key, MapKey) else MapKey(*key)
        r = self._key_rows().get(key)
        if r is None:
            if key.model != self.model:
                raise KeyError(f"cluster map {key.members_text!r} at {key.layer!r} was made by another model "
                               f"({key.model}), not this run's ({self.model})")
            raise KeyError(f"cluster map {key.members_text!r} at {key.layer!r} of image {key.image_id} is not in "
                           "this run")
        row = self._table()[0].iloc[r]
        return int(row["image"]), str(row["layer"]), int(row["map"])

    def entry(self, key) -> tuple[RunLayer, int]:
        """The stored layer that holds a cluster map, and the map's index in it."""
        i, layer, j = self.locate(key)
        return self[i][layer], j

    def iter_maps(self, images=None, layers=None):
        """``(row, map)`` for every cluster map (of ``images`` and ``layers`` if given), in table order:
        ``row`` a dict of the ``run.maps`` columns, ``map`` (h, w) float32 in [0, 1] at feature resolution.

        Reads each shard's arrays once: what a labelling pool built from a run needs in one pass.
        """
        maps = self._table()[0]
        if images is not None:
            maps = maps[maps["image"].isin([int(i) for i in images])]
        if layers is not None:
            layers = [layers] if isinstance(layers, str) else list(layers)
            unknown = [n for n in layers if n not in self.layers]
            if unknown:
                raise ValueError(f"unknown layers {unknown}; the run's layers are {self.layers}")
            maps = maps[maps["layer"].isin(layers)]
        for (s, li), part in maps.groupby(["shard", "layer_index"], sort=True):
            rows = part["row"].to_numpy()
            lo, hi = int(rows.min()), int(rows.max()) + 1
            block = self._shard(int(s)).read(f"maps/{int(li)}", slice(lo, hi))
            for rec, r in zip(part.to_dict("records"), rows):
                yield rec, block[r - lo].astype(np.float32)

    def map(self, key) -> np.ndarray:
        """A cluster map at feature resolution, (h, w) float32 in [0, 1]."""
        lr, j = self.entry(key)
        return lr.maps_lowres[j]

    def reveal(self, key, step: int) -> np.ndarray:
        """The Deep Reveal image of a cluster map at step 0..5, uint8 (H, W, 3); no model needed."""
        lr, j = self.entry(key)
        return lr.reveal(j, step)


def _empty_maps() -> pd.DataFrame:
    cols = {"model": str, "image_id": str, "target": np.int64, "layer": str, "members": str, "image": np.int64,
            "position": np.int64, "layer_index": np.int64, "map": np.int64, "weight": np.float64, "size": np.int64,
            "predicted": np.int64, "shard": np.int64, "row": np.int64}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})


def _empty_images() -> pd.DataFrame:
    cols = {"position": np.int64, "image": np.int64, "image_id": str, "label": "Int64", "predicted": np.int64,
            "target": np.int64, "probability": np.float64, "shard": np.int64, "row": np.int64}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
