"""Reading a stored run: ``Run.open(path)``, the table of maps, one image's layers and maps, consumers.

Nothing here runs a model. Everything comes from the committed shards (see runs/store.py); a run that is
still being written shows the images finished so far (``run.refresh()`` looks again). Every shard is checked
when it is first seen (runs/store.py, "Verification"): a damaged one is left out with a warning that names it
and the repair (``explain_dataset(..., repair=True)``), or refused with ``Run.open(path, strict=True)``; a
read that fails later names the shard's file and the repair too.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine import MapKey
from ..engine.records import MAP_COLUMNS, empty_maps_frame
from ..engine.request import check_layers
from ..engine.runtime import LRU
from ..engine.sources import MapItem
from .image import RunImage, RunLayer
from .store import CUT_COLUMNS, STORAGE_COLUMNS, RunDamagedError, RunStore, shard_name

__all__ = ["Run", "RunImage", "RunLayer", "RunDamageWarning"]  # RunImage and RunLayer live in runs/image.py


class RunDamageWarning(UserWarning):
    """A run's damaged shards were left out (their images count as missing)."""


class _Shard:
    """One committed shard's arrays, opened read-only (zarr over one zip file). A failure to read names the
    file and the repair (:class:`~inv_widgets.runs.store.RunDamagedError`)."""

    def __init__(self, path: Path, root: Path | None = None, s: int = -1):
        import zarr

        self.path = path
        self._root, self._s = root or path.parent.parent, s
        try:
            self._store = zarr.storage.ZipStore(path / "arrays.zarr.zip", mode="r")
            self.group = zarr.open_group(self._store, mode="r")
        except Exception as e:  # noqa: BLE001 - zipfile, zarr and OS errors alike: the file cannot be used
            raise self._damaged(e) from e
        self._lock = threading.Lock()

    def _damaged(self, e: BaseException) -> RunDamagedError:
        return RunDamagedError(
            self._root, {self._s: f"{self.path / 'arrays.zarr.zip'} cannot be read ({type(e).__name__}: {e})"}
        )

    def read(self, name: str, sel) -> np.ndarray:
        with self._lock:
            try:
                return np.asarray(self.group[name][sel])
            except (IndexError, TypeError):
                raise
            except Exception as e:  # noqa: BLE001 - a damaged chunk: a zip, zstd or zarr error
                raise self._damaged(e) from e


class Run:
    """A stored dataset-scale explanation (made by :func:`inv_widgets.explain_dataset`).

    ``Run.open(path)``; ``run.maps`` (DataFrame, one row per cluster map), ``run.images`` (one row per
    finished image), ``run[i]`` (image index ``i`` of the session -> :class:`RunImage`), ``len(run)``
    (finished images), ``run.complete``, ``run.missing()``. For labelling and aggregation without the
    model: ``run.keys()``, ``run.weights()``, ``run.locate(key)``, ``run.map(key)``, ``run.reveal(key, step)``.
    """

    def __init__(self, path, *, strict: bool = False, _meta: dict | None = None):
        self.store = RunStore(path)
        self.meta = _meta or self.store.read_meta()
        self.strict = bool(strict)
        self._checked: dict[Path, str | None] = {}  # shard folder -> what is wrong with it (None: fine)
        #: committed shards that cannot be used, ``{shard number: what is wrong}`` (left out of the tables)
        self.damaged: dict[int, str] = {}
        self._shards = LRU(8)
        self._lock = threading.Lock()
        self._maps: pd.DataFrame | None = None
        self._images: pd.DataFrame | None = None
        self._by_image: dict[int, int] | None = None
        self._by_key: dict[MapKey, int] | None = None
        self._by_id: dict[str, int] | None = None
        self._pos: np.ndarray | None = None
        self._committed: dict[int, Path] = {}
        self.refresh()

    @classmethod
    def open(cls, path, *, strict: bool = False) -> Run:
        """Open a run directory (complete or not) for reading. Every committed shard is checked (runs/store.py):
        a damaged one is left out, its images counted as missing, with a :class:`RunDamageWarning` naming it and
        the repair; ``strict=True`` raises :class:`~inv_widgets.runs.store.RunDamagedError` instead."""
        return cls(path, strict=strict)

    # ---- what the run is -----------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """The run's folder."""
        return self.store.root

    @property
    def layers(self) -> list[str]:
        """The explained layers, in the model's order."""
        return list(self.meta["layers"])

    @property
    def classes(self) -> list[str]:
        """The class names the run was made with."""
        return list(self.meta["classes"])

    @property
    def model(self) -> str:
        """Fingerprint of the model that made the run (``MapKey.model`` of every map)."""
        return self.meta["model"]

    @property
    def fingerprint(self) -> str:
        """The model's fingerprint, as ``Session.fingerprint`` (MapSource): the same as :attr:`model`."""
        return self.meta["model"]

    @property
    def target(self) -> str:
        """What the run's maps explain: "label" (each image's label, the predicted class where unknown),
        "predicted", or "class N" (one class for every image)."""
        stored = self.meta.get("target")
        return "label" if stored == "label" else "predicted" if stored is None else f"class {stored}"

    @property
    def recipe(self) -> str:
        """The clustering recipe of the stored cuts."""
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
    def map_type(self) -> str:
        """What the run's cluster maps are drawn from (its session's ``maps``; "published" for runs made before)."""
        return self.meta.get("maps", "published")

    @property
    def k(self) -> int | None:
        """The stored cuts' number of cluster maps (None: each layer's suggested cut)."""
        return self.meta["k"]

    @property
    def indices(self) -> list[int]:
        """The session's image indices the run covers, in run order."""
        return list(self.meta["indices"])

    def __repr__(self):
        return (
            f"Run({str(self.path)!r}, images={len(self)}/{len(self.meta['indices'])}, layers={len(self.layers)}, "
            f"maps={len(self._table()[0])}, recipe={self.recipe!r})"
        )

    # ---- tables -----------------------------------------------------------------------------------
    def refresh(self) -> Run:
        """Look again for shards committed since the run was opened (a run being written); new ones are checked."""
        with self._lock:
            committed = self.store.committed()
            for s, p in committed.items():
                if p not in self._checked:
                    self._checked[p] = self.store.check_shard(s, self.meta, p)
            damaged = {s: self._checked[p] for s, p in committed.items() if self._checked[p] is not None}
            if damaged and self.strict:
                raise RunDamagedError(self.store.root, damaged)
            new = {s: why for s, why in damaged.items() if self.damaged.get(s) != why}
            self.damaged = damaged
            if new:
                warnings.warn(
                    str(RunDamagedError(self.store.root, new)).replace(
                        "cannot be used (", "are left out, their images counted as missing (", 1
                    ),
                    RunDamageWarning,
                    stacklevel=3,
                )
            committed = {s: p for s, p in committed.items() if s not in damaged}
            if committed.keys() != self._committed.keys():
                self._committed = committed
                self._maps = self._images = None
                self._by_image = self._by_key = self._by_id = self._pos = None
        return self

    def _read_table(self, s: int, path: Path, name: str) -> pd.DataFrame:
        try:
            return pd.read_parquet(path / name)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
            raise RunDamagedError(
                self.store.root, {s: f"{path / name} cannot be read ({type(e).__name__}: {e})"}
            ) from e

    def _table(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        with self._lock:
            if self._maps is None:
                maps = [_schema(self._read_table(s, p, "maps.parquet")) for s, p in self._committed.items()]
                imgs = [self._read_table(s, p, "images.parquet") for s, p in self._committed.items()]
                self._maps = pd.concat(maps, ignore_index=True) if maps else _empty_maps()
                self._images = pd.concat(imgs, ignore_index=True) if imgs else _empty_images()
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
        """Whether every image the run was asked for is stored (see :meth:`missing`)."""
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
        return self._shards.get(s, lambda: _Shard(path, self.store.root, s))

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
                raise KeyError(
                    f"cluster map {key.members_text!r} at {key.layer!r} was made by another model "
                    f"({key.model}), not this run's ({self.model})"
                )
            raise KeyError(
                f"cluster map {key.members_text!r} at {key.layer!r} of image {key.image_id} is not in this run"
            )
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
            maps = maps[maps["layer"].isin(check_layers(layers, self.layers, owner="this run"))]
        for (s, li), part in maps.groupby(["shard", "layer_index"], sort=True):
            rows = part["row"].to_numpy()
            lo, hi = int(rows.min()), int(rows.max()) + 1
            block = self._shard(int(s)).read(f"maps/{int(li)}", slice(lo, hi))
            for rec, r in zip(part.to_dict("records"), rows):
                yield rec, block[r - lo].astype(np.float32)

    # ---- MapSource: what a labelling pool, a game and a global explanation ask ----------------------
    @property
    def image_indices(self) -> list[int]:
        """The finished images (session indices), in run order."""
        return [int(i) for i in self._table()[1].sort_values("position")["image"]]

    def check_images(self, images=None) -> list[int]:
        """The finished images asked for (session indices, once each); None: every finished one, in run order
        (MapSource). An image that is not finished, or not in the run, is refused."""
        if images is None:
            return self.image_indices
        if isinstance(images, (int, np.integer, str)):
            raise TypeError(f"images must be a sequence of image indices (e.g. [0, 3]), not {images!r}")
        chosen = []
        for i in images:
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
                raise TypeError(f"image index must be an int, got {type(i).__name__}")
            if int(i) not in chosen:
                chosen.append(int(i))
        done = self._image_rows()
        missing = [i for i in chosen if i not in done]
        if missing:
            raise ValueError(
                f"images {missing[:10]}{' ...' if len(missing) > 10 else ''} are not finished in the "
                f"run {str(self.path)!r}; finish it with the same explain_dataset call, or use the "
                "finished ones (run.image_indices)"
            )
        return chosen

    def index_of(self, image_id: str) -> int:
        """The session index of the finished image whose id (``MapKey.image_id``) is ``image_id`` (MapSource; read
        from the table, no image is hashed); ``KeyError`` if none."""
        if self._by_id is None:
            imgs = self._table()[1]
            self._by_id = dict(zip(imgs["image_id"].astype(str).tolist(), imgs["image"].astype(int).tolist()))
        hit = self._by_id.get(str(image_id))
        if hit is None:
            raise KeyError(f"no finished image of the run {str(self.path)!r} has id {image_id!r}")
        return hit

    @property
    def runner(self) -> None:
        """A stored run holds no model (a Session's ``runner`` calls it): what needs the model (the concept test)
        takes the Session the run was made with."""
        return None

    def label(self, i) -> int | None:
        """The ground-truth class of a finished image, when the session knew it."""
        y = self[i].label
        return None if y is None else int(y)

    def resolve_cut(
        self, recipe: str | None = None, k: int | None = None, target: str | None = None
    ) -> tuple[str, int | None, str]:
        """The run's own ``(recipe, k, target)`` (MapSource): a run stores one cut per image and layer, so a
        ``recipe``, ``k`` or ``target`` other than the run's is refused."""
        for name, given, have in (("recipe", recipe, self.recipe), ("k", k, self.k), ("target", target, self.target)):
            if given is not None and given != have:
                raise ValueError(
                    f"{name}={given!r} differs from the run's {name} ({have!r}): a run stores one cut "
                    f"per image and layer; leave {name} out, or make another run with "
                    f"explain_dataset(..., {name}={given!r})"
                )
        return self.recipe, self.k, self.target

    def items(
        self,
        images,
        layers,
        *,
        recipe: str | None = None,
        k: int | None = None,
        target: str | None = None,
        progress=None,
    ) -> Iterator[MapItem]:
        """Every stored cluster map of ``images`` at ``layers`` (MapSource), read from the table (no map is read
        until shown); the cut is the run's (:meth:`resolve_cut`)."""
        self.resolve_cut(recipe, k, target)
        images = self.check_images(images)
        layers = check_layers(layers, self.layers, owner="this run")
        table = self._table()[0]
        table = table[table["image"].isin(images) & table["layer"].isin(layers)]
        for row in table.to_dict("records"):
            yield MapItem(
                MapKey.from_row(row), int(row["image"]), row["layer"], int(row["map"]), float(row["weight"]), None
            )
        if progress is not None:
            progress(len(images), len(images))

    def lowres(self, key) -> np.ndarray:
        """A cluster map at feature resolution, (h, w) float32 in [0, 1] (MapSource): :meth:`map`."""
        return self.map(key)

    def weight(self, key) -> float:
        """A cluster map's weight, percent of its layer (MapSource), from the table."""
        key = key if isinstance(key, MapKey) else MapKey(*key)
        r = self._key_rows().get(key)
        if r is None:
            self.locate(key)  # raises the KeyError that says why
        return float(self._table()[0]["weight"].iloc[r])

    def map(self, key) -> np.ndarray:
        """A cluster map at feature resolution, (h, w) float32 in [0, 1]."""
        lr, j = self.entry(key)
        return lr.maps_lowres[j]

    def reveal(self, key, step: int) -> np.ndarray:
        """The Deep Reveal image of a cluster map at step 0..5, uint8 (H, W, 3); no model needed."""
        lr, j = self.entry(key)
        return lr.reveal(j, step)


def _empty_maps() -> pd.DataFrame:
    frame = empty_maps_frame(CUT_COLUMNS + STORAGE_COLUMNS)
    return frame.astype({"threshold": np.float64, **{c: np.int64 for c in ["k_cut"] + STORAGE_COLUMNS}})


def _schema(maps: pd.DataFrame) -> pd.DataFrame:
    """A shard's maps table in the one schema (engine.records.MAP_COLUMNS, then the run's columns): the tables of
    runs written before the schema was one lack ``k`` (clusters in the cut), ``threshold`` and ``k_cut``."""
    if "k" not in maps:
        maps["k"] = maps.groupby(["position", "layer_index"])["map"].transform("size").astype(np.int64)
    if "k_cut" not in maps:
        maps["k_cut"] = maps["k"]
    if "threshold" not in maps:
        maps["threshold"] = np.nan
    return maps[list(MAP_COLUMNS) + CUT_COLUMNS + STORAGE_COLUMNS]


def _empty_images() -> pd.DataFrame:
    cols = {
        "position": np.int64,
        "image": np.int64,
        "image_id": str,
        "label": "Int64",
        "predicted": np.int64,
        "target": np.int64,
        "probability": np.float64,
        "shard": np.int64,
        "row": np.int64,
    }
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
