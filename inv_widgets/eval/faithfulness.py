"""Does a cluster map matter as much as its weight says? Ablation and deletion / insertion on the demo.

    python -m inv_widgets.eval faithfulness [--n 50] [--recipe fast] [--weighting guided] [--steps N]
                                            [--random 5] [--workers 2] [--no-baselines] [--no-curves]
                                            [--offset 0] [--csv out.csv]

Held-out parts images, each explained for its predicted class, every layer cut at the recipe's suggested cut.
Per layer:

- ablation: each cluster map's member channels zeroed at the layer's output (``Clusters.ablation``); the
  Spearman correlation between cluster weight and target-logit drop, pooled over all (image, map) pairs and
  as the mean of the per-image correlations (images with >= 3 maps); the share of images (>= 2 maps) where
  the heaviest map causes the largest drop, with its chance level mean(1 / K); the heaviest map's share of
  the cut's weight and of the drop when all kept channels are zeroed;
- the same for random channel groups: the kept channels dealt at random into groups of the cut's sizes
  (``--random`` deals per image and layer), each weighted by the sum of its members' weights;
- deletion and insertion (0-100 % of the pixels, most salient first, in steps of 2 % up to 30 % and of 10 %
  beyond, where every curve is flat or nearly so; ``--steps N``: N equal steps instead; the demo's own
  background as the fill, the target's probability): the area under each curve for the union of the
  cluster maps (their weighted mean, the weights as shown), the heaviest map and the layer's Grad-CAM; and
  once per image for LIME and KernelSHAP (``inv_widgets.concepts.baselines.attribution_maps``, as the
  Explorer's compare view and ``inv-widgets explain --baselines``).

Every random step is seeded (``--seed``); the figures do not depend on ``--workers``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

__all__ = ["evaluate_faithfulness", "image_records", "summarise", "random_groups", "union_map", "check_targets",
           "Faithfulness", "main"]

BASELINE_METHODS = ("lime", "kernelshap")

#: The shares of pixels deleted / inserted: 2 % steps while the object goes (objects cover 5-40 % of a demo
#: image), 10 % steps beyond.
FRACTIONS = np.round(np.r_[np.arange(0.0, 0.30, 0.02), np.arange(0.30, 1.0001, 0.10)], 10)


def random_groups(kept: np.ndarray, sizes, rng: np.random.Generator) -> list[np.ndarray]:
    """The kept channels dealt at random into groups of ``sizes`` (a cut's cluster sizes; channels left over
    when the sizes add up to fewer, as after pruning, stay out)."""
    perm = rng.permutation(np.asarray(kept))
    out, at = [], 0
    for s in sizes:
        out.append(np.sort(perm[at:at + int(s)]))
        at += int(s)
    return out


def union_map(maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The union of a cut's cluster maps: their mean weighted by the cluster weights, (H, W)."""
    w = np.asarray(weights, np.float64)
    if not len(maps):
        raise ValueError("a cut without cluster maps has no union")
    w = w / w.sum() if w.sum() > 0 else np.full(len(maps), 1.0 / len(maps))
    return np.tensordot(w, np.asarray(maps, np.float64), axes=1).astype(np.float32)


def _baseline_function():
    """``inv_widgets.concepts.baselines.attribution_maps``: the one implementation of LIME and KernelSHAP, the
    one the Explorer's compare view and ``inv-widgets explain --baselines`` call (looked up at call time)."""
    from ..concepts import baselines

    return baselines.attribution_maps


def _fractions(steps: int | None) -> np.ndarray:
    return FRACTIONS if not steps else np.linspace(0.0, 1.0, int(steps) + 1)


def image_records(session, i: int, *, recipe: str, steps: int | None, repeats: int, seed: int,
                  attribution_maps=None, curves: bool = True) -> dict:
    """Everything measured on image ``i`` (explained for its predicted class): per layer the cut's weights,
    ablation drops, the random groups' weights and drops, and the deletion / insertion areas; per image the
    LIME and KernelSHAP areas (when ``attribution_maps`` is given). ``curves=False``: ablation only (no
    deletion / insertion areas, no LIME / KernelSHAP)."""
    exp = session.explain(i, lazy=True)
    rng = np.random.default_rng([seed, i])
    layers, saliency, rows = [], [], []
    for li, name in enumerate(exp.layers):
        lr = exp.layer(name, recipe)
        cl = lr.cut()
        rec = {"layer_index": li, "layer": name, "k": cl.k}
        if cl.k:
            sizes = [len(m) for m in cl.members]
            pct = lr.channel_weights
            rnd = [random_groups(lr.kept, sizes, rng) for _ in range(repeats)]
            groups = list(cl.members) + [g for r in rnd for g in r] + [lr.kept]
            ab = lr.ablation(groups)
            k = cl.k
            rec.update(weights=np.asarray(cl.weights, np.float64), drops=ab.logit_drop[:k],
                       prob_drops=ab.probability_drop[:k],
                       rnd_weights=np.array([[pct[g].sum() for g in r] for r in rnd]).reshape(repeats, k),
                       rnd_drops=ab.logit_drop[k:k + repeats * k].reshape(repeats, k),
                       kept_drop=float(ab.logit_drop[-1]), layer_drop=ab.layer_logit_drop)
            if curves:
                saliency += [union_map(cl.maps, cl.weights), cl.maps[0], lr.gradcam()]
                rows.append(len(layers))
        layers.append(rec)
    cv = exp.curves(np.stack(saliency), fractions=_fractions(steps)) if saliency else None
    for pos, li in enumerate(rows):
        d, ins = cv.deletion_area[3 * pos:3 * pos + 3], cv.insertion_area[3 * pos:3 * pos + 3]
        layers[li].update(del_union=d[0], del_heaviest=d[1], del_gradcam=d[2],
                          ins_union=ins[0], ins_heaviest=ins[1], ins_gradcam=ins[2])
    image = {"image": i, "target": exp.target}
    if attribution_maps is not None and curves:
        maps = attribution_maps(session, i, exp.target, methods=BASELINE_METHODS)
        got = [m for m in BASELINE_METHODS if m in maps]
        if got:
            c = exp.curves(np.stack([np.asarray(maps[m], np.float32) for m in got]), fractions=_fractions(steps))
            for j, m in enumerate(got):
                image[f"del_{m}"], image[f"ins_{m}"] = float(c.deletion_area[j]), float(c.insertion_area[j])
    return {"image": image, "layers": layers}


def _spearman(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _ranking(weights: list, drops: list) -> dict:
    """Pooled and per-image Spearman, and how often the heaviest causes the largest drop (with chance)."""
    pooled = _spearman(np.concatenate(weights), np.concatenate(drops)) if weights else float("nan")
    per = [_spearman(w, d) for w, d in zip(weights, drops) if len(w) >= 3]
    per = [r for r in per if np.isfinite(r)]
    top = [(int(np.argmax(w)) == int(np.argmax(d)), 1.0 / len(w)) for w, d in zip(weights, drops) if len(w) >= 2]
    return {"pooled": pooled, "per_image": float(np.mean(per)) if per else float("nan"), "per_image_n": len(per),
            "top1": float(np.mean([t for t, _ in top])) if top else float("nan"),
            "chance": float(np.mean([c for _, c in top])) if top else float("nan")}


def summarise(records: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-layer table and the per-image-method table (LIME, KernelSHAP) from :func:`image_records`."""
    by_layer: dict = {}
    for r in records:
        for rec in r["layers"]:
            by_layer.setdefault((rec["layer_index"], rec["layer"]), []).append(rec)
    rows = []
    for (li, name), recs in sorted(by_layer.items()):
        full = [r for r in recs if r["k"]]
        inv = _ranking([r["weights"] for r in full], [r["drops"] for r in full])
        repeats = full[0]["rnd_weights"].shape[0] if full else 0
        rnd = [_ranking([r["rnd_weights"][q] for r in full], [r["rnd_drops"][q] for r in full]) for q in range(repeats)]
        mean = lambda key: float(np.nanmean([x[key] for x in rnd])) if rnd else float("nan")  # noqa: E731
        heavy_w = [r["weights"][0] / r["weights"].sum() for r in full if r["weights"].sum() > 0]
        heavy_d = [r["drops"][0] / r["kept_drop"] for r in full if abs(r["kept_drop"]) > 1e-9]
        row = {"layer_index": li, "layer": name, "images": len(recs), "mean_k": float(np.mean([r["k"] for r in recs])),
               "spearman_pooled": inv["pooled"], "spearman_image": inv["per_image"], "images_k3": inv["per_image_n"],
               "heaviest_top": inv["top1"], "chance": inv["chance"],
               "random_pooled": mean("pooled"), "random_image": mean("per_image"), "random_top": mean("top1"),
               "heaviest_weight_share": float(np.mean(heavy_w)) if heavy_w else float("nan"),
               "heaviest_drop_share": float(np.mean(heavy_d)) if heavy_d else float("nan")}
        for key in ("del_union", "del_heaviest", "del_gradcam", "ins_union", "ins_heaviest", "ins_gradcam"):
            row[key] = float(np.mean([r[key] for r in full])) if full and key in full[0] else float("nan")
        row["union_deletes_better"] = (float(np.mean([r["del_union"] <= r["del_gradcam"] for r in full]))
                                       if full and "del_union" in full[0] else float("nan"))
        rows.append(row)
    layers = pd.DataFrame(rows)
    img = pd.DataFrame([r["image"] for r in records])
    methods = []
    for m in BASELINE_METHODS:
        if f"del_{m}" in img:
            methods.append({"method": m, "images": int(img[f"del_{m}"].notna().sum()),
                            "deletion_area": float(img[f"del_{m}"].mean()),
                            "insertion_area": float(img[f"ins_{m}"].mean())})
    return layers, pd.DataFrame(methods, columns=["method", "images", "deletion_area", "insertion_area"])


def check_targets(layers: pd.DataFrame, weighting: str) -> list[tuple[str, bool, str]]:
    """The issue's targets on the demo: (what, met, the figures)."""
    blocks34 = layers[layers.layer.str.contains(r"block[34]_")]
    f = lambda s: ", ".join(f"{v:.2f}" for v in s)  # noqa: E731
    out = [("pooled Spearman >= 0.5 in every layer", bool((layers.spearman_pooled >= 0.5).all()),
            f(layers.spearman_pooled)),
           ("pooled Spearman >= 0.8 in blocks 3-4", bool((blocks34.spearman_pooled >= 0.8).all()),
            f(blocks34.spearman_pooled)),
           ("heaviest map = largest drop in >= 50 % of images in every layer", bool((layers.heaviest_top >= 0.5).all()),
            f(layers.heaviest_top))]
    wins = int((layers.del_union <= layers.del_gradcam).sum())
    if layers.del_union.notna().any():
        out.append(("union deletes no worse than Grad-CAM in >= 6 of 8 layers",
                    wins >= min(6, len(layers) * 6 // 8), f"{wins} of {len(layers)} layers"))
    if weighting == "taylor":
        out.append(("taylor: pooled Spearman >= 0.8 in every layer", bool((layers.spearman_pooled >= 0.8).all()),
                    f(layers.spearman_pooled)))
    return out


@dataclass
class Faithfulness:
    """The evaluation's result: ``layers`` (one row per layer), ``methods`` (LIME, KernelSHAP: one row each),
    the raw per-image ``records`` and what was asked."""

    layers: pd.DataFrame
    methods: pd.DataFrame
    records: list = field(repr=False)
    settings: dict = field(default_factory=dict)


def _demo(n: int):
    """The demo model and data; the model in channels-last memory format (its own copy: 1.5-2x faster
    convolutions on a CPU, the same results within float rounding)."""
    import torch

    import inv_widgets as inv

    model, data = inv.demo.load(n=n)
    return model.to(memory_format=torch.channels_last), data


_WORKER: dict = {}


def _init_worker(n: int, offset: int, recipe: str, weighting: str, baselines: bool) -> None:
    """A worker process: its own model and session (one thread: :func:`_one`)."""
    import inv_widgets as inv

    model, data = _demo(offset + n)
    _WORKER["session"] = inv.Session(model, data, recipe=recipe, weighting=weighting, cache_size=1)
    _WORKER["fn"] = _baseline_function() if baselines else None


def _one(args) -> dict:
    from ..engine.runtime import limited_threads

    i, recipe, steps, repeats, seed, curves = args
    with limited_threads(1):
        return image_records(_WORKER["session"], i, recipe=recipe, steps=steps, repeats=repeats, seed=seed,
                             attribution_maps=_WORKER["fn"], curves=curves)


def evaluate_faithfulness(n: int = 50, *, recipe: str = "fast", weighting: str = "guided", steps: int | None = None,
                          repeats: int = 5, seed: int = 0, offset: int = 0, baselines: bool = True,
                          curves: bool = True, attribution_maps=None, workers: int = 1, model=None, data=None,
                          progress: bool = True) -> Faithfulness:
    """Run the evaluation on ``n`` held-out demo images (``offset`` onwards), one thread per process.
    ``attribution_maps``: the LIME / KernelSHAP function (default: ``inv_widgets.concepts.baselines.
    attribution_maps``; none with ``baselines=False``). ``workers`` > 1 shares the images out to
    that many processes (the demo model only). ``curves=False``: the ablation figures only (no deletion /
    insertion areas, and so no LIME / KernelSHAP), a fraction of the time."""
    import inv_widgets as inv
    from ..engine.recipes import get_recipe
    from ..engine.runtime import limited_threads
    from ..engine.weights import check_weighting

    recipe = get_recipe(recipe).name
    check_weighting(weighting)
    if n < 1 or (steps is not None and steps < 2) or repeats < 1:
        raise ValueError(f"n >= 1, steps >= 2 and repeats >= 1 are needed; got n={n}, steps={steps}, repeats={repeats}")
    baselines = baselines and curves
    fn = (attribution_maps or _baseline_function()) if baselines else None
    idx = list(range(offset, offset + n))
    t0 = time.perf_counter()
    records: list[dict] = []

    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="eval faithfulness", unit="img", disable=not progress)
    if workers > 1 and model is None and attribution_maps is None:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                 initargs=(n, offset, recipe, weighting, baselines)) as pool:
            for rec in pool.map(_one, [(i, recipe, steps, repeats, seed, curves) for i in idx]):
                records.append(rec)
                bar.update()
    else:
        if model is None or data is None:
            model, data = _demo(offset + n)
        session = inv.Session(model, data, recipe=recipe, weighting=weighting, cache_size=1)
        with limited_threads(1):  # as the workers: the same figures whatever --workers says
            for i in idx:
                records.append(image_records(session, i, recipe=recipe, steps=steps, repeats=repeats, seed=seed,
                                             attribution_maps=fn, curves=curves))
                bar.update()
    bar.close()
    layers, methods = summarise(records)
    settings = dict(n=n, offset=offset, recipe=recipe, weighting=weighting, steps=steps, repeats=repeats, seed=seed,
                    curves=curves,
                    baselines=baselines,
                    seconds=time.perf_counter() - t0)
    return Faithfulness(layers, methods, records, settings)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inv_widgets.eval faithfulness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="held-out images (default 50)")
    ap.add_argument("--offset", type=int, default=0, help="first image (default 0)")
    ap.add_argument("--recipe", default="fast", help="clustering recipe (default fast)")
    ap.add_argument("--weighting", default="guided", choices=["guided", "taylor"],
                    help="channel weights (default guided)")
    ap.add_argument("--steps", type=int, default=None,
                    help="equal steps of the deletion / insertion curves (default: 2 %% steps to 30 %%, then 10 %%)")
    ap.add_argument("--random", type=int, default=5, help="random channel groupings per image and layer (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                    help="processes of one thread each (default: 2, or 1 on a 1-core machine)")
    ap.add_argument("--no-baselines", action="store_true", help="leave out LIME and KernelSHAP")
    ap.add_argument("--no-curves", action="store_true",
                    help="the ablation figures only: no deletion / insertion areas and no LIME / KernelSHAP "
                         "(a fraction of the time)")
    ap.add_argument("--csv", default=None, help="also write the per-layer table to this CSV file")
    args = ap.parse_args(argv)
    res = evaluate_faithfulness(args.n, recipe=args.recipe, weighting=args.weighting, steps=args.steps,
                                repeats=args.random, seed=args.seed, offset=args.offset,
                                baselines=not args.no_baselines, curves=not args.no_curves,
                                workers=max(1, args.workers))
    df = res.layers.copy()
    df["layer"] = df.layer.str.replace("features.", "", regex=False)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 40)
    cols = ["layer", "mean_k", "spearman_pooled", "spearman_image", "heaviest_top", "chance", "random_pooled",
            "random_image", "random_top", "heaviest_weight_share", "heaviest_drop_share"]
    print(f"recipe {res.settings['recipe']}, weighting {res.settings['weighting']}, {args.n} images, "
          f"{args.random} random groupings per image and layer")
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    cols = ["layer", "del_union", "del_heaviest", "del_gradcam", "union_deletes_better", "ins_union", "ins_heaviest",
            "ins_gradcam"]
    grid = f"{args.steps} equal steps" if args.steps else "2 % steps to 30 %, 10 % steps to 100 %"
    if args.no_curves:
        print("\ndeletion / insertion areas: not measured (--no-curves)")
    else:
        print(f"\ndeletion / insertion areas (0-100 % of the pixels in {grid}; the image's background as the fill; "
              "target probability)")
        print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if len(res.methods):
        print(res.methods.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv:
        res.layers.to_csv(args.csv, index=False)
    print(f"({args.n} images, {res.settings['seconds']:.0f} s)")
    for what, ok, figures in check_targets(res.layers, res.settings["weighting"]):
        print(f"target {'met   ' if ok else 'MISSED'}  {what}: {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
