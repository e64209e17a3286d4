"""Records of results that every source shares: one layer's cut (:class:`LayerCut`) and the one maps table.

A :class:`LayerCut` is what cutting one layer's dendrogram gives, for one image: the cluster maps at feature
resolution, their weights, members and assignment. A Session's :class:`~inv_widgets.engine.Clusters` wraps one
(and adds the maps at the input's resolution, Deep Reveal, ablation, pictures); a stored run writes the same
record to disk and reads it back (``inv_widgets.runs``). Both make it with :mod:`inv_widgets.engine.cut`.

The maps table (:data:`MAP_COLUMNS`) is the one schema of "one row per cluster map": ``exp.to_frame()``,
``Run.maps`` and the label store's exports start with these columns, with these types; ``members`` is always the
canonical text ``"3,17,42"`` (:attr:`MapKey.members_text`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .keys import MapKey, members_text

__all__ = ["LayerCut", "MAP_COLUMNS", "KEY_COLUMNS", "maps_frame", "empty_maps_frame", "keys_of", "CutBy"]

CutBy = Literal["suggested", "k", "threshold"]


@dataclass(frozen=True, eq=False)
class LayerCut:
    """One cut of one layer's dendrogram for one image: the cluster maps, heaviest first.

    Attributes
    ----------
    layer : str
        The layer's name.
    maps_lowres : ndarray (K, h, w) float32
        Each cluster map at feature resolution: the weighted mean of its members' maps, min-max scaled to
        [0, 1] (a map flat to rounding is all zeros: there is nothing in it to stretch).
    weights : ndarray (K,) float64
        Percent of the layer's total channel weight: the sum of the members' weights, descending.
    members : tuple of ndarray
        Channel indices (into the layer's channels, sorted) of each cluster map, aligned with ``weights``.
    assignment : ndarray (n,) int64
        Cluster index of every kept channel (aligned with the layer's ``kept``), -1 where pruned.
    threshold : float
        A height of the dendrogram that gives this cut.
    k_cut : int
        Clusters at the cut before pruning (``k_cut - k`` were pruned).
    cut_by : str
        How the cut was asked for: "suggested", "k" or "threshold".
    channels : tuple of ndarray, optional
        For the ``"gradcam"`` map type (``Session(maps=...)``): every channel each map is drawn from (its kept
        members and the channels the keep filter dropped that joined it); None for the published maps, drawn
        from ``members`` alone.
    """

    layer: str
    maps_lowres: np.ndarray
    weights: np.ndarray
    members: tuple
    assignment: np.ndarray
    threshold: float
    k_cut: int
    cut_by: CutBy = "suggested"
    channels: tuple | None = None

    @property
    def k(self) -> int:
        """The number of cluster maps."""
        return len(self.weights)

    @property
    def pruned(self) -> int:
        """How many light clusters the cut dropped (the paper's pruning; 0 without it)."""
        return int(self.k_cut) - self.k

    @property
    def shape(self) -> tuple[int, int]:
        """Feature-map resolution (h, w)."""
        return tuple(int(s) for s in self.maps_lowres.shape[1:])

    def members_text(self, j: int) -> str:
        """The canonical text of map ``j``'s members, e.g. ``"3,17,42"``."""
        return members_text(self.members[j].tolist())


#: The MapKey fields, the first five columns of every maps table and of the label store's tables.
KEY_COLUMNS = ["model", "image_id", "target", "layer", "members"]

#: The one maps-table schema: column -> dtype. ``image`` is the source's image index (a session's or a run's),
#: ``layer_index`` the layer's position in forward order, ``map`` the rank in its cut (0 = heaviest), ``weight``
#: percent of the layer, ``size`` member channels, ``k`` maps in the cut, ``predicted`` the model's class.
MAP_COLUMNS: dict[str, object] = {
    "model": str,
    "image_id": str,
    "target": np.int64,
    "layer": str,
    "members": str,
    "image": np.int64,
    "layer_index": np.int64,
    "map": np.int64,
    "weight": np.float64,
    "size": np.int64,
    "k": np.int64,
    "predicted": np.int64,
}


def _column(name: str, values):
    import pandas as pd

    kind = MAP_COLUMNS[name]
    if kind is str:
        return pd.array([str(v) for v in values], dtype=object)
    return np.asarray(list(values), dtype=kind)


def maps_frame(rows: Iterable[dict], extra: Iterable[str] = ()):
    """A maps table from row dicts: the :data:`MAP_COLUMNS` in order with their types, then ``extra`` columns
    (a source's own: a run's storage place, an explanation's recipe) as given."""
    import pandas as pd

    rows = list(rows)
    extra = list(extra)
    if not rows:
        return empty_maps_frame(extra)
    data = {c: _column(c, (r[c] for r in rows)) for c in MAP_COLUMNS}
    for c in extra:
        data[c] = [r[c] for r in rows]
    return pd.DataFrame(data)


def empty_maps_frame(extra: Iterable[str] = ()):
    """A maps table without rows (the schema's columns and types)."""
    import pandas as pd

    data = {c: pd.Series(dtype=object if t is str else t) for c, t in MAP_COLUMNS.items()}
    for c in extra:
        data[c] = pd.Series(dtype=object)
    return pd.DataFrame(data)


def keys_of(frame) -> list[MapKey]:
    """The :class:`MapKey` of every row of a maps table (or of any table with the key columns)."""
    cols = [frame[c].tolist() for c in KEY_COLUMNS]
    return [MapKey(*row) for row in zip(*cols)]
