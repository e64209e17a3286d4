"""Global explanations: which named features each layer uses for each class (PAPER.md, "Labels to explanations").

From the output of :func:`~inv_widgets.labels.aggregate_labels` (one scored label per cluster map and label),
each map's best label (rank 1) counts for its class (the map's target) and layer:

- ``score``: the sum of the best-label scores of the maps carrying that label (the paper's "best-label
  scores summed over the images");
- ``n_images`` / ``n_maps``: images and cluster maps that carry it (a merged map counts its merged maps);
- ``mean_weight``: the mean percent weight of those cluster maps (from ``weights``, a ``weight`` column, the
  weight the game stored with each answer, or, for answers stored without one, the source's ``weight(key)``:
  the sum of the member channels' weights, as ``Clusters.weights`` shows it);
- ``examples``: the MapKeys of the best examples, at most one per image (highest score, then weight).

``trends(cls)`` follows each label through the layers: its score per image of the class at each layer
(0 where it is nobody's best label) and the least-squares slope over the layer positions; the 6 most rising
and the 6 most falling labels, as in the paper's second view.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..engine import MapKey
from ..engine.request import check_index, check_layer

__all__ = ["GlobalExplanation"]

_KEY_COLS = ["model", "image_id", "target", "layer", "members"]
_REQUIRED = _KEY_COLS + ["label", "score", "rank"]
TABLE_COLUMNS = [
    "class",
    "target",
    "layer",
    "label",
    "score",
    "n_images",
    "n_maps",
    "share_images",
    "mean_weight",
    "mean_step",
    "examples",
]
TCAV_COLUMNS = ["tcav_score", "tcav_random", "tcav_p", "tcav_significant"]


#: the numbers of a labels table and what each may be: (column, lowest, highest, NaN allowed)
_NUMBERS = (
    ("score", 0.0, np.inf, False),
    ("frequency", 1, np.inf, False),
    ("n_maps", 1, np.inf, False),
    ("mean_step", 0.0, 5.0, True),
    ("weight", 0.0, 100.0 + 1e-6, True),
    ("target", 0, np.inf, False),
)


def _check_numbers(maps: pd.DataFrame, columns) -> None:
    """Refuse a labels table whose numbers (of ``columns``, those it has) cannot be scores, counts, steps or
    weights (NaN, infinite, negative, outside their bounds, not numbers), naming the column, the first bad map and the
    fix: inf broke ``to_html``, NaN vanished from ``trends()`` and a negative weight showed "w̄ = -50.0 %"."""
    for col, lo, hi, nan_ok in _NUMBERS:
        if col not in columns or col not in maps.columns:
            continue
        try:
            v = pd.to_numeric(maps[col], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"the labels table's {col} column holds values that are not numbers ({e}); pass the "
                "output of inv.aggregate_labels, or fix the column"
            ) from None
        nan = np.isnan(v)
        bad = (nan & (not nan_ok)) | (~nan & (~np.isfinite(v) | (v < lo) | (v > hi)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            row = maps.iloc[i]
            what = "NaN" if nan[i] else f"{v[i]:g}"
            allowed = f"{lo:g} or more" if hi == np.inf else f"from {lo:g} to {min(hi, 100):g}"
            raise ValueError(
                f"the labels table has {int(bad.sum())} {col} value{'s' if bad.sum() != 1 else ''} that "
                f"{'are' if bad.sum() != 1 else 'is'} not a finite number {allowed} (first: {what} for label "
                f"{row['label']!r} of image {row['image_id']} at {row['layer']}); {col} must be "
                + ("a finite number " if not nan_ok else "a number (or NaN for unknown) ")
                + f"{allowed}: pass "
                "the output of inv.aggregate_labels, or fix the column"
            )


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def _merged_weight(key: MapKey, by_layer: Mapping) -> float | None:
    """A merged map's weight from the stored weights of the maps it merges (``by_layer``: (model, image, target,
    layer) -> [(members, weight)]; the maps whose channels it holds: map weights add up as their channels' do), or
    None when one is unknown."""
    parts = [(members, w) for members, w in by_layer.get(key[:4], ()) if set(members) <= set(key.members)]
    covered = sorted(m for members, _ in parts for m in members)
    return float(sum(w for _, w in parts)) if covered == list(key.members) else None


class GlobalExplanation:
    """Per class and layer, the labels people gave the cluster maps, summed over images.

    Build it with :meth:`from_labels` (an :func:`aggregate_labels` table) or :meth:`from_store`.

    Attributes
    ----------
    maps : DataFrame
        One row per labelled cluster map: its key columns, class, best label, score, frequency,
        mean_step, n_maps and weight (percent; NaN when unknown).
    classes : list of str
        Every class name, in class-index order (also those without labels).
    layers : list of str
        Layers in forward order.
    tcav : DataFrame or None
        The last :func:`~inv_widgets.concept_test` result attached (see :meth:`attach_tcav`).
    """

    def __init__(
        self,
        maps: pd.DataFrame,
        *,
        class_names: Sequence[str],
        layers: Sequence[str],
        n_examples: int = 3,
        session=None,
        attrs: Mapping[str, Any] | None = None,
    ):
        if int(n_examples) < 0:
            raise ValueError(f"n_examples must be >= 0, got {n_examples}")
        self.classes = [str(c) for c in class_names]
        self.layers = [str(name) for name in layers]
        self.n_examples = int(n_examples)
        self.maps = maps.reset_index(drop=True)
        self.session = session
        self.attrs = dict(attrs or {})
        self.tcav: pd.DataFrame | None = None
        self._listeners: list[Callable[[GlobalExplanation], None]] = []
        self._base = self._build_table()
        self._table: pd.DataFrame | None = None

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def from_labels(
        cls,
        df: pd.DataFrame,
        session=None,
        *,
        class_names: Sequence[str] | None = None,
        layers: Sequence[str] | None = None,
        weights: Mapping | None = None,
        n_examples: int = 3,
    ) -> GlobalExplanation:
        """A global explanation from an :func:`~inv_widgets.aggregate_labels` table.

        Parameters
        ----------
        df : DataFrame
            The aggregated labels (columns model, image_id, target, layer, members, label, score, rank, and
            optionally frequency, mean_step, n_maps, weight). Only each map's best label (rank 1) counts.
        session : MapSource, optional
            A Session or a stored Run (any :class:`~inv_widgets.engine.sources.MapSource`): gives the class
            names and the layer order, weighs the maps that ``weights`` and a ``weight`` column leave unknown
            (``source.weight(key)``: a run reads its table; a Session explains the map's image), keeps only this
            model's maps, and lets :meth:`to_html` and the GlobalView show the maps (TCAV needs a Session).
        class_names, layers : optional
            Class names in class-index order and layers in forward order (default: the session's; else
            ``str(target)`` and the layers found, in natural order).
        weights : mapping MapKey -> percent, optional
            Cluster-map weights (e.g. collected from ``Clusters.weights`` while playing).
        n_examples : int
            MapKeys kept per (class, layer, label) as examples (default 3).
        """
        return cls._from_table(
            df, session, class_names=class_names, layers=layers, weights=weights, stored=None, n_examples=n_examples
        )

    @classmethod
    def _from_table(cls, df, session, *, class_names, layers, weights, stored, n_examples) -> GlobalExplanation:
        """:meth:`from_labels`, with ``stored``: the weights the answers carry (:meth:`from_store`), used for the
        maps that ``weights`` and a ``weight`` column leave unknown, before the source is asked."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(
                f"expected the DataFrame of aggregate_labels, got {type(df).__name__}; "
                "from a label store use GlobalExplanation.from_store(store, session)"
            )
        missing = [c for c in _REQUIRED if c not in df.columns]
        if missing:
            raise ValueError(
                f"the labels table lacks the columns {missing}; pass the output of "
                f"inv.aggregate_labels(store, class_names=...) (it has {_REQUIRED})"
            )
        best = df[df["rank"] == 1]
        _check_numbers(best, [c for c, *_ in _NUMBERS if c != "weight"])
        dropped = 0
        if session is not None:
            keep = best["model"] == session.fingerprint
            dropped = int((~keep).sum())
            best = best[keep]
            if dropped:
                warnings.warn(
                    f"{dropped} labelled maps belong to other models than the session's "
                    f"({session.fingerprint}) and are left out",
                    stacklevel=3,
                )
        elif best["model"].nunique() > 1:
            raise ValueError(
                f"the labels come from {best['model'].nunique()} models "
                f"({sorted(best['model'].unique())}); pass the session of one model, or filter "
                "the table by its 'model' column first"
            )
        maps = pd.DataFrame(
            {
                "model": best["model"].astype(str).to_numpy(),
                "image_id": best["image_id"].astype(str).to_numpy(),
                "target": best["target"].astype("int64").to_numpy(),
                "layer": best["layer"].astype(str).to_numpy(),
                "members": best["members"].astype(str).to_numpy(),
                "label": best["label"].astype(str).to_numpy(),
                "score": best["score"].astype("float64").to_numpy(),
                "frequency": (best["frequency"] if "frequency" in best else pd.Series(1, index=best.index))
                .astype("int64")
                .to_numpy(),
                "mean_step": (best["mean_step"] if "mean_step" in best else pd.Series(np.nan, index=best.index))
                .astype("float64")
                .to_numpy(),
                "n_maps": (best["n_maps"] if "n_maps" in best else pd.Series(1, index=best.index))
                .astype("int64")
                .to_numpy(),
            }
        )
        if maps.duplicated(_KEY_COLS).any():
            raise ValueError(
                "some cluster maps have more than one rank-1 label; pass the output of "
                "aggregate_labels (one rank 1 per map)"
            )
        maps["weight"] = cls._weights(maps, best, session, weights, stored or {})
        _check_numbers(maps, ["weight"])

        if class_names is None and session is not None:
            class_names = session.classes
        top = int(maps["target"].max()) + 1 if len(maps) else 0
        if class_names is None:
            class_names = [str(i) for i in range(top)]
        elif top > len(class_names):
            raise ValueError(f"the labels name class {top - 1} but class_names has only {len(class_names)} entries")
        found = list(dict.fromkeys(maps["layer"]))
        if layers is None:
            layers = session.layers if session is not None else sorted(found, key=_natural)
        layers = list(layers)
        unknown = [name for name in found if name not in layers]
        if unknown:
            raise ValueError(f"the labels name layers {unknown} that are not among the layers {layers}")
        maps.insert(3, "class", [class_names[t] for t in maps["target"]])
        attrs = {k: v for k, v in df.attrs.items() if isinstance(v, (str, int, float))}
        attrs["n_other_models"] = dropped
        return cls(maps, class_names=class_names, layers=layers, n_examples=n_examples, session=session, attrs=attrs)

    @staticmethod
    def _weights(maps: pd.DataFrame, best: pd.DataFrame, source, weights, stored: Mapping) -> np.ndarray:
        """Each map's weight: from ``weights`` (every map), else the table's ``weight`` column, else the weight
        stored with its answers (a merged map: the sum of its maps' weights), else ``source.weight(key)`` (old
        stores; no source: unknown, NaN)."""
        keys = [MapKey(*row) for row in maps[_KEY_COLS].itertuples(index=False, name=None)]
        if weights is not None:
            lost = [k for k in keys if k not in weights]
            if lost:
                raise KeyError(
                    f"weights has no entry for {len(lost)} labelled maps (e.g. {lost[0]}); give every "
                    "map a weight, or leave weights out to compute them from the session"
                )
            return np.array([float(weights[k]) for k in keys], dtype=np.float64)
        out = (
            best["weight"].astype("float64").to_numpy(copy=True)
            if "weight" in best.columns
            else np.full(len(maps), np.nan)
        )
        merged = maps["n_maps"].to_numpy() > 1
        by_layer: dict = {}
        if stored and merged.any():
            for k, w in stored.items():
                by_layer.setdefault(k[:4], []).append((k.members, w))
        unknown = []
        for n in np.flatnonzero(np.isnan(out)):
            k = keys[n]
            w = stored.get(k)
            if w is None and merged[n]:
                w = _merged_weight(k, by_layer)
            if w is None and source is not None:
                try:
                    w = source.weight(k)
                except KeyError:  # a merged map a stored run does not hold, an image the source lacks
                    w = None
            if w is None:
                unknown.append(k)
            out[n] = np.nan if w is None else float(w)
        if unknown and (source is not None or stored):
            warnings.warn(
                f"{len(unknown)} labelled maps have no known weight (e.g. {unknown[0]}); their weight shows as unknown",
                stacklevel=4,
            )
        return out

    @classmethod
    def from_store(
        cls,
        store,
        session=None,
        *,
        class_names: Sequence[str] | None = None,
        merge: bool = False,
        min_labels: int = 1,
        model: Any = None,
        weights: Mapping | None = None,
        n_examples: int = 3,
        progress: bool = False,
    ) -> GlobalExplanation:
        """Aggregate a label store (:func:`~inv_widgets.aggregate_labels`) and build the global explanation.

        ``session`` is any MapSource (a Session or a stored Run). Each map weighs what its answers stored
        (``PoolItem.weight``, saved by the game); only maps whose answers carry none (stores written before
        weights were kept) are weighed by the source, so a store filled by the game is read without running
        the model. ``class_names`` defaults to the source's; ``merge``, ``min_labels`` and ``model`` (the
        Sentence-BERT model) are passed to ``aggregate_labels`` (``merge`` weighs the merged maps by
        ``weights``, else by the stored weights when every map has one, else equally).
        """
        from ..labels import aggregate_labels
        from .examples import stored_weights

        if class_names is None and session is not None:
            class_names = session.classes
        labels = store
        if not isinstance(store, pd.DataFrame) and callable(getattr(store, "labels", None)):
            labels = store.labels()  # read once: for the aggregation and for the stored weights
        stored = stored_weights(labels) if isinstance(labels, pd.DataFrame) else {}
        options = dict(class_names=class_names, merge=merge, min_labels=min_labels, progress=progress)
        if model is not None:
            options["model"] = model
        if merge:
            every = isinstance(labels, pd.DataFrame) and "weight" in labels and bool(labels["weight"].notna().all())
            options["weights"] = weights if weights is not None else stored if every and stored else None
        df = aggregate_labels(labels, **options)
        return cls._from_table(
            df,
            session,
            class_names=class_names,
            layers=None,
            weights=None if merge else weights,
            stored=stored,
            n_examples=n_examples,
        )

    # ---- the table ------------------------------------------------------------------------------
    def _build_table(self) -> pd.DataFrame:
        maps = self.maps
        if maps.empty:
            return pd.DataFrame(
                {
                    c: pd.Series(dtype=t)
                    for c, t in zip(
                        TABLE_COLUMNS,
                        [
                            object,
                            "int64",
                            object,
                            object,
                            "float64",
                            "int64",
                            "int64",
                            "float64",
                            "float64",
                            "float64",
                            object,
                        ],
                    )
                }
            )
        group = ["target", "layer", "label"]
        maps = maps.assign(_wstep=maps["mean_step"] * maps["frequency"])
        agg = (
            maps.groupby(group, sort=False)
            .agg(
                score=("score", "sum"),
                n_images=("image_id", "nunique"),
                n_maps=("n_maps", "sum"),
                mean_weight=("weight", "mean"),
                _wstep=("_wstep", "sum"),
                _freq=("frequency", "sum"),
            )
            .reset_index()
        )
        agg["mean_step"] = agg["_wstep"] / agg["_freq"]
        per_class = maps.groupby("target")["image_id"].nunique()
        agg["share_images"] = agg["n_images"] / agg["target"].map(per_class)
        agg["class"] = [self.classes[t] for t in agg["target"]]
        found = self._examples(maps, group)
        agg["examples"] = [list(found.get(k, [])) for k in agg[group].itertuples(index=False, name=None)]
        pos = {name: i for i, name in enumerate(self.layers)}
        agg["_layer_pos"] = agg["layer"].map(pos)
        agg = agg.sort_values(
            ["target", "_layer_pos", "score", "label"], ascending=[True, True, False, True], kind="stable"
        )
        return agg[TABLE_COLUMNS].reset_index(drop=True)

    def _examples(self, maps: pd.DataFrame, group: list[str]) -> dict:
        """Per (target, layer, label): the keys of the best maps, one per image, unmerged maps first."""
        if self.n_examples == 0:
            return {}
        ranked = maps.assign(_merged=maps["n_maps"] > 1, _w=maps["weight"].fillna(-1.0)).sort_values(
            group + ["_merged", "score", "_w", "image_id", "members"],
            ascending=[True, True, True, True, False, False, True, True],
            kind="stable",
        )
        ranked = ranked.drop_duplicates(group + ["image_id"]).groupby(group, sort=False).head(self.n_examples)
        out: dict = {}
        for g, row in zip(
            ranked[group].itertuples(index=False, name=None), ranked[_KEY_COLS].itertuples(index=False, name=None)
        ):
            out.setdefault(g, []).append(MapKey(*row))
        return out

    @property
    def table(self) -> pd.DataFrame:
        """One row per (class, layer, label): score, n_images, n_maps, share_images (of the class's labelled
        images), mean_weight, mean_step, examples (MapKeys); after TCAV also tcav_score, tcav_random, tcav_p,
        tcav_significant (NaN / None where not tested). Sorted by class, layer (forward order), score."""
        if self._table is None:
            t = self._base.copy()
            if self.tcav is not None and len(self.tcav):
                cols = self.tcav[["class", "layer", "label", "tcav_score", "random_score", "p_value", "significant"]]
                cols = cols.rename(
                    columns={"random_score": "tcav_random", "p_value": "tcav_p", "significant": "tcav_significant"}
                )
                t = t.merge(cols, on=["class", "layer", "label"], how="left")
            self._table = t
        return self._table.copy()

    def __repr__(self):
        n_cls = self.maps["target"].nunique() if len(self.maps) else 0
        return (
            f"GlobalExplanation({len(self.maps)} labelled maps, {n_cls}/{len(self.classes)} classes, "
            f"{len(self.layers)} layers, {len(self._base)} (class, layer, label) rows"
            + (", TCAV attached" if self.tcav is not None else "")
            + ")"
        )

    # ---- lookups ----------------------------------------------------------------------------------
    def class_name(self, cls) -> str:
        """The class name of ``cls`` (a name or a class index)."""
        if isinstance(cls, str):
            if cls not in self.classes:
                raise KeyError(f"unknown class {cls!r}; the classes are {self.classes}")
            return cls
        return self.classes[check_index(cls, len(self.classes), what="class", owner="this global explanation")]

    def layer_name(self, layer) -> str:
        """The layer name of ``layer`` (a name or a position in :attr:`layers`, negative from the end)."""
        return check_layer(layer, self.layers, owner="this global explanation")

    def n_images(self, cls) -> int:
        """Labelled images of a class (images with at least one labelled map for that class)."""
        name = self.class_name(cls)
        return int(self.maps.loc[self.maps["class"] == name, "image_id"].nunique())

    def top(self, class_name, layer, n: int = 5) -> pd.DataFrame:
        """The ``n`` best labels of a class at a layer (rows of :attr:`table`, best first)."""
        name, layer = self.class_name(class_name), self.layer_name(layer)
        t = self.table
        return t[(t["class"] == name) & (t["layer"] == layer)].head(int(n)).reset_index(drop=True)

    def maps_of(self, class_name, layer, label: str) -> pd.DataFrame:
        """Every labelled map of a class at a layer whose best label is ``label`` (rows of :attr:`maps`)."""
        name, layer = self.class_name(class_name), self.layer_name(layer)
        m = self.maps
        return m[(m["class"] == name) & (m["layer"] == layer) & (m["label"] == str(label))].reset_index(drop=True)

    def trends(self, class_name, n: int = 6) -> pd.DataFrame:
        """How each label of a class rises and falls through the layers.

        Returns one row per label (index ``label``): its score per labelled image of the class at each layer
        (a column per layer, forward order; 0 where it is no map's best label), ``slope`` (least squares over
        the layer positions 0, 1, ...), ``trend`` ("rising" or "falling"). The ``n`` most rising labels (largest
        positive slopes) come first, then the ``n`` most falling (most negative), as in the paper.
        """
        name = self.class_name(class_name)
        t = self._base[self._base["class"] == name]
        cols = self.layers + ["slope", "trend"]
        if t.empty or len(self.layers) < 2:
            return pd.DataFrame(columns=cols).rename_axis("label")
        per_image = t.pivot_table(index="label", columns="layer", values="score", aggfunc="sum", fill_value=0.0)
        per_image = per_image.reindex(columns=self.layers, fill_value=0.0) / max(self.n_images(name), 1)
        x = np.arange(len(self.layers), dtype=np.float64)
        xc = x - x.mean()
        slope = per_image.to_numpy() @ xc / float(xc @ xc)
        per_image["slope"] = slope
        per_image = per_image.reset_index()
        rising = per_image[per_image["slope"] > 0].sort_values(["slope", "label"], ascending=[False, True]).head(n)
        falling = per_image[per_image["slope"] < 0].sort_values(["slope", "label"], ascending=[True, True]).head(n)
        out = pd.concat([rising.assign(trend="rising"), falling.assign(trend="falling")], ignore_index=True)
        out.columns.name = None
        return out.set_index("label")[cols]

    # ---- TCAV ------------------------------------------------------------------------------------------
    def attach_tcav(self, results: pd.DataFrame) -> None:
        """Keep a :func:`~inv_widgets.concept_test` result (replacing rows of the same class, layer and label)
        and tell the views that show this explanation."""
        need = ["class", "layer", "label", "tcav_score", "random_score", "p_value", "significant"]
        missing = [c for c in need if c not in results.columns]
        if missing:
            raise ValueError(f"TCAV results lack the columns {missing}; pass the output of inv.concept_test")
        if self.tcav is not None and len(self.tcav):
            old = self.tcav.set_index(["class", "layer", "label"])
            new = results.set_index(["class", "layer", "label"])
            results = pd.concat([old[~old.index.isin(new.index)], new]).reset_index()
        self.tcav = results.reset_index(drop=True)
        self._table = None
        for fn in list(self._listeners):
            fn(self)

    def tcav_of(self, class_name, layer, label: str) -> dict | None:
        """The TCAV result of one (class, layer, label), or None when it was not tested."""
        if self.tcav is None or self.tcav.empty:
            return None
        t = self.tcav
        rows = t[
            (t["class"] == self.class_name(class_name))
            & (t["layer"] == self.layer_name(layer))
            & (t["label"] == str(label))
        ]
        return None if rows.empty else rows.iloc[-1].to_dict()

    def observe(self, callback: Callable[[GlobalExplanation], None]) -> Callable[[], None]:
        """Call ``callback(self)`` when TCAV results are attached; returns a function that stops it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    # ---- the page -------------------------------------------------------------------------------------
    def to_html(self, path=None, *, session=None, n: int = 5, thumb: int = 56, title: str | None = None) -> str:
        """One self-contained HTML page (images inline, no script, no network): per class, a column per
        layer with the top ``n`` labels (score bars, mean weight, TCAV when attached) and their example
        overlays (drawn with ``session``, default the one this explanation was built with; without one the
        page has no images), and the rising and falling labels. Written atomically to ``path`` when given;
        returns the HTML."""
        from ..export import check_output_path, write_atomically
        from .html import global_html

        if path is not None:
            check_output_path(path)  # a wrong path is said before the page is drawn
        page = global_html(self, session if session is not None else self.session, n=n, thumb=thumb, title=title)
        if path is not None:
            write_atomically(path, page)
        return page
