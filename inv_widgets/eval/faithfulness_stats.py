"""The statistics of :mod:`inv_widgets.eval.faithfulness`: Spearman and partial Spearman correlations, the
per-(layer, map type) and per-method tables with their bootstrap CIs, and the targets checked on them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata, spearmanr

__all__ = ["summarise", "check_targets", "partial_spearman", "BASELINE_METHODS", "AREAS"]

BASELINE_METHODS = ("lime", "kernelshap")
AREAS = ("del_union", "del_heaviest", "del_gradcam", "ins_union", "ins_heaviest", "ins_gradcam")


def _spearman(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def partial_spearman(x, y, z) -> float:
    """Spearman's partial correlation of ``x`` and ``y`` given ``z``: the Pearson partial correlation of their
    ranks (NaN when a variable is constant or z explains x or y entirely)."""
    x, y, z = (np.asarray(v, np.float64) for v in (x, y, z))
    if len(x) < 3 or min(np.ptp(x), np.ptp(y)) == 0:
        return float("nan")
    if np.ptp(z) == 0:
        return _spearman(x, y)
    rx, ry, rz = rankdata(x), rankdata(y), rankdata(z)
    c = np.corrcoef([rx, ry, rz])
    den = (1 - c[0, 2] ** 2) * (1 - c[1, 2] ** 2)
    return float((c[0, 1] - c[0, 2] * c[1, 2]) / np.sqrt(den)) if den > 1e-12 else float("nan")


def _nanmean(values) -> float:
    v = np.asarray(list(values), np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def _pooled(units, key_w, key_d, q=None):
    w = np.concatenate([u[key_w] if q is None else u[key_w][q] for u in units]) if units else np.zeros(0)
    d = np.concatenate([u[key_d] if q is None else u[key_d][q] for u in units]) if units else np.zeros(0)
    return w, d


def summarise(records: list[dict], seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-(layer, map type) table and the per-method table (LIME, KernelSHAP) from :func:`image_records`,
    each figure with a 95 % CI resampling images (``*_lo``, ``*_hi``)."""
    from ..engine.stats import ci, cluster_ci

    by: dict = {}
    for r in records:
        for rec in r["layers"]:
            by.setdefault((rec["layer_index"], rec["layer"], rec.get("kind", "published")), []).append(rec)
    rows = []
    for (li, name, kind), recs in sorted(by.items()):
        full = [r for r in recs if r["k"]]
        row = {
            "layer_index": li,
            "layer": name,
            "kind": kind,
            "images": len(recs),
            "mean_k": float(np.mean([r["k"] for r in recs])),
        }

        def put(key, fig, row=row):
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = fig.value, fig.lo, fig.hi

        put("spearman_pooled", cluster_ci(full, lambda u: _spearman(*_pooled(u, "weights", "drops")), seed=seed))
        put("size_pooled", cluster_ci(full, lambda u: _spearman(*_pooled(u, "sizes", "drops")), seed=seed))
        put(
            "partial_pooled",
            cluster_ci(
                full,
                lambda u: partial_spearman(*_pooled(u, "weights", "drops"), _pooled(u, "sizes", "drops")[0]),
                seed=seed,
            ),
        )
        per = [_spearman(r["weights"], r["drops"]) for r in full if r["k"] >= 3]
        row["spearman_image"], row["images_k3"] = ci(per, seed=seed).value, int(np.isfinite(per).sum()) if per else 0
        top = [(int(np.argmax(r["weights"])) == int(np.argmax(r["drops"])), 1.0 / r["k"]) for r in full if r["k"] >= 2]
        put("heaviest_top", ci([t for t, _ in top], seed=seed))
        row["chance"] = float(np.mean([c for _, c in top])) if top else float("nan")
        reps = full[0]["rnd_weights"].shape[0] if full else 0
        rnd_sp = [_spearman(*_pooled(full, "rnd_weights", "rnd_drops", q)) for q in range(reps)]
        row["random_pooled"] = _nanmean(rnd_sp)
        rnd_img = [
            _nanmean([_spearman(r["rnd_weights"][q], r["rnd_drops"][q]) for r in full if r["k"] >= 3])
            for q in range(reps)
        ]
        row["random_image"] = _nanmean(rnd_img)
        put(
            "random_partial",
            cluster_ci(
                full,
                lambda u, reps=reps: (
                    _nanmean(
                        [
                            partial_spearman(
                                *_pooled(u, "rnd_weights", "rnd_drops", q), np.concatenate([x["sizes"] for x in u])
                            )
                            for q in range(reps)
                        ]
                    )
                    if reps
                    else float("nan")
                ),
                seed=seed,
                n_boot=300,
            ),
        )
        rtop = [
            float(
                np.mean([int(np.argmax(r["rnd_weights"][q])) == int(np.argmax(r["rnd_drops"][q])) for q in range(reps)])
            )
            for r in full
            if r["k"] >= 2
        ]
        row["random_top"] = float(np.mean(rtop)) if rtop else float("nan")
        row["heaviest_weight_share"] = (
            float(np.mean([r["weights"][0] / r["weights"].sum() for r in full if r["weights"].sum() > 0]))
            if full
            else float("nan")
        )
        row["heaviest_drop_share"] = (
            float(np.mean([r["drops"][0] / r["kept_drop"] for r in full if abs(r["kept_drop"]) > 1e-9]))
            if full
            else float("nan")
        )
        for key in AREAS:
            if full and key in full[0]:
                put(key, ci([r[key] for r in full], seed=seed))
            else:
                row[key] = row[f"{key}_lo"] = row[f"{key}_hi"] = float("nan")
        row["union_deletes_better"] = (
            float(np.mean([r["del_union"] <= r["del_gradcam"] for r in full]))
            if full and "del_union" in full[0]
            else float("nan")
        )
        rows.append(row)
    img = pd.DataFrame([r["image"] for r in records])
    methods = []
    for m in BASELINE_METHODS:
        if f"del_{m}" in img:
            d, s = ci(img[f"del_{m}"], seed=seed), ci(img[f"ins_{m}"], seed=seed)
            methods.append(
                {
                    "method": m,
                    "images": d.n,
                    "deletion_area": d.value,
                    "deletion_lo": d.lo,
                    "deletion_hi": d.hi,
                    "insertion_area": s.value,
                    "insertion_lo": s.lo,
                    "insertion_hi": s.hi,
                }
            )
    return pd.DataFrame(rows), pd.DataFrame(
        methods,
        columns=[
            "method",
            "images",
            "deletion_area",
            "deletion_lo",
            "deletion_hi",
            "insertion_area",
            "insertion_lo",
            "insertion_hi",
        ],
    )


def check_targets(layers: pd.DataFrame, weighting: str, kind: str | None = None) -> list[tuple[str, bool, str]]:
    """The targets on the demo for one map type (default: the table's first): (what, met, the figures); none for a
    map type the table does not have."""
    kinds = layers.get("kind", pd.Series("published", index=layers.index))
    kind = kind or (kinds.iloc[0] if len(kinds) else "published")
    layers = layers[kinds == kind]
    if layers.empty:
        return []
    f = lambda s: ", ".join(f"{v:.2f}" for v in s)  # noqa: E731
    out = []
    if "partial_pooled" in layers:
        out.append(
            (
                "partial rho(weight, drop | size) >= 0.5 in every layer",
                bool((layers.partial_pooled >= 0.5).all()),
                f(layers.partial_pooled),
            )
        )
    blocks34 = layers[layers.layer.str.contains(r"block[34]_")]
    out += [
        (
            "pooled Spearman >= 0.5 in every layer",
            bool((layers.spearman_pooled >= 0.5).all()),
            f(layers.spearman_pooled),
        ),
        (
            "pooled Spearman >= 0.8 in blocks 3-4",
            bool((blocks34.spearman_pooled >= 0.8).all()),
            f(blocks34.spearman_pooled),
        ),
        (
            "heaviest map = largest drop in >= 50 % of images in every layer",
            bool((layers.heaviest_top >= 0.5).all()),
            f(layers.heaviest_top),
        ),
    ]
    if layers.del_union.notna().any():
        wins = int((layers.del_union <= layers.del_gradcam).sum())
        out.append(
            (
                "union deletes no worse than Grad-CAM in >= 6 of 8 layers",
                wins >= min(6, len(layers) * 6 // 8),
                f"{wins} of {len(layers)} layers",
            )
        )
    if weighting == "taylor":
        out.append(
            (
                "taylor: pooled Spearman >= 0.8 in every layer",
                bool((layers.spearman_pooled >= 0.8).all()),
                f(layers.spearman_pooled),
            )
        )
    return out
