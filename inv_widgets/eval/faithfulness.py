"""Does a cluster map matter as much as its weight says? Ablation and deletion / insertion on the demo.

    python -m inv_widgets.eval faithfulness [--split dev|test] [--n 50] [--layer-point activation|conv]
                                            [--maps gradcam published] [--weighting guided] [--steps N] [--random 5]
                                            [--workers 1] [--baselines] [--no-curves] [--csv out.csv]

Images of the split, each explained for its predicted class, every layer cut at the recipe's suggested cut.
Per layer and map type (``--maps``):

- ablation: each cluster map's channels zeroed **at the layer point** (``--layer-point``: after BatchNorm and
  activation, or at the conv output) in one batched pass (``LayerResult.ablation``); Spearman's rho between
  weight and target-logit drop pooled over all (image, map) pairs, rho between the member count and the drop,
  and the **partial** rho of weight and drop given the member count (rank-based: does the weight say more than
  the cluster's size?), each with a 95 % CI resampling images; the mean of the per-image correlations (images
  with >= 3 maps); the share of images (>= 2 maps) where the heaviest map causes the largest drop, with its
  chance level mean(1 / K);
- the same for random channel groups: the map type's channels dealt at random into groups of its sizes
  (``--random`` deals per image and layer), each weighted by the sum of its channels' weights;
- deletion and insertion (0-100 % of the pixels, most salient first, in steps of 2 % up to 30 % and of 10 %
  beyond; ``--steps N``: N equal steps; the demo's own background as the fill, the target's probability): the area
  under each curve for the union of the cluster maps (their weighted mean), the heaviest map and the layer's
  Grad-CAM, with 95 % CIs over images; with ``--baselines`` also LIME and KernelSHAP once per image
  (``inv_widgets.concepts.baselines.attribution_maps``).

Issue 20's target: partial rho(weight, drop | size) >= 0.5 in every layer at the default weighting.
Every random step is seeded (``--seed``); the figures do not depend on ``--workers``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .faithfulness_stats import AREAS, BASELINE_METHODS, check_targets, partial_spearman, summarise

__all__ = [
    "evaluate_faithfulness",
    "image_records",
    "summarise",
    "random_groups",
    "union_map",
    "check_targets",
    "partial_spearman",
    "Faithfulness",
    "main",
    "BASELINE_METHODS",
    "FRACTIONS",
]


#: The shares of pixels deleted / inserted: 2 % steps while the object goes (objects cover 5-40 % of a demo
#: image), 10 % steps beyond.
FRACTIONS = np.round(np.r_[np.arange(0.0, 0.30, 0.02), np.arange(0.30, 1.0001, 0.10)], 10)


def random_groups(kept: np.ndarray, sizes, rng: np.random.Generator) -> list[np.ndarray]:
    """The channels ``kept`` dealt at random into groups of ``sizes`` (a cut's cluster sizes; channels left over
    when the sizes add up to fewer, as after pruning, stay out)."""
    perm = rng.permutation(np.asarray(kept))
    out, at = [], 0
    for s in sizes:
        out.append(np.sort(perm[at : at + int(s)]))
        at += int(s)
    return out


def union_map(maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The union of a cut's cluster maps: their mean weighted by the cluster weights, (H, W)."""
    w = np.asarray(weights, np.float64)
    if not len(maps):
        raise ValueError("a cut without cluster maps has no union")
    w = np.clip(w, 0, None)
    w = w / w.sum() if w.sum() > 0 else np.full(len(maps), 1.0 / len(maps))
    return np.tensordot(w, np.asarray(maps, np.float64), axes=1).astype(np.float32)


def _fractions(steps: int | None) -> np.ndarray:
    return FRACTIONS if not steps else np.linspace(0.0, 1.0, int(steps) + 1)


def image_records(
    model,
    data,
    i: int,
    *,
    point: str = "activation",
    kinds=("published",),
    recipe: str = "fast",
    weighting: str = "guided",
    steps: int | None = None,
    repeats: int = 5,
    seed: int = 0,
    session=None,
    attribution_maps=None,
    curves: bool = True,
) -> dict:
    """Everything measured on image ``i`` (explained for its predicted class): per layer and map type the weights,
    member counts, ablation drops, the random groups' weights and drops, and the deletion / insertion areas; per
    image the LIME and KernelSHAP areas (when ``attribution_maps`` and a ``session`` over the same images are
    given)."""
    from ..engine.sanity import explain_images

    x, _ = data[i]
    fill = data.to_tensor(data.background(i)) if hasattr(data, "background") else None
    layers = getattr(model, "conv_layer_names", None) or [
        n for n, m in model.named_modules() if type(m).__name__ == "Conv2d"
    ]
    rec = explain_images(
        model,
        x[None],
        [data.array(i)],
        None,
        layers,
        point=point,
        kinds=kinds,
        recipe=recipe,
        weighting=weighting,
        probes=True,
        fills=[fill],
    )[0]
    exp = rec["exp"]
    rng = np.random.default_rng([seed, i])
    out_layers, saliency, where = [], [], []
    for li, name in enumerate(exp.layers):
        lr = rec["maps"][name]["_layer"]
        for kind in kinds:
            lm = rec["maps"][name][kind]
            r = {"layer_index": li, "layer": name, "kind": kind, "k": lm.k}
            if lm.k:
                sizes = [len(g) for g in lm.groups]
                pool = np.concatenate(lm.groups)
                pct = lr.channel_weights if kind != "contrast" else lm.layer.channel_weights
                rnd = [random_groups(pool, sizes, rng) for _ in range(repeats)]
                groups = list(lm.groups) + [g for rr in rnd for g in rr] + [pool]
                ab = lm.layer.ablation(groups)
                k = lm.k
                if kind in ("published", "contrast"):
                    rnd_w = [[pct[g].sum() for g in rr] for rr in rnd]
                else:  # the gradient map types weigh a group by its channels' first-order worth
                    from ..engine.contrast import group_weights

                    rnd_w = []
                    for rr in rnd:
                        lab = np.full(lr.n_channels, -1)
                        for j, g in enumerate(rr):
                            lab[g] = j
                        rnd_w.append(group_weights(*rec["maps"][name]["_tensors"], lab, k))
                r.update(
                    weights=np.asarray(lm.weights, np.float64),
                    sizes=np.asarray(sizes, np.float64),
                    drops=ab.logit_drop[:k],
                    rnd_weights=np.asarray(rnd_w, np.float64).reshape(repeats, k),
                    rnd_drops=ab.logit_drop[k : k + repeats * k].reshape(repeats, k),
                    kept_drop=float(ab.logit_drop[-1]),
                    layer_drop=ab.layer_logit_drop,
                )
                if curves:
                    where.append(len(out_layers))
                    saliency += [union_map(lm.maps, lm.weights), lm.maps[0], lr.gradcam()]
            out_layers.append(r)
    if saliency:
        cv = exp.curves(np.stack(saliency), fractions=_fractions(steps))
        for pos, at in enumerate(where):
            d, ins = cv.deletion_area[3 * pos : 3 * pos + 3], cv.insertion_area[3 * pos : 3 * pos + 3]
            out_layers[at].update(zip(AREAS, [*d, *ins]))
    image = {"image": i, "target": exp.target}
    if attribution_maps is not None and session is not None and curves:
        maps = attribution_maps(session, i, exp.target, methods=BASELINE_METHODS)
        got = [m for m in BASELINE_METHODS if m in maps]
        if got:
            c = exp.curves(np.stack([np.asarray(maps[m], np.float32) for m in got]), fractions=_fractions(steps))
            for j, m in enumerate(got):
                image[f"del_{m}"], image[f"ins_{m}"] = float(c.deletion_area[j]), float(c.insertion_area[j])
    return {"image": image, "layers": out_layers}


@dataclass
class Faithfulness:
    """The evaluation's result: ``layers`` (one row per layer and map type), ``methods`` (LIME, KernelSHAP), the
    raw per-image ``records`` and what was asked."""

    layers: pd.DataFrame
    methods: pd.DataFrame
    records: list = field(repr=False)
    settings: dict = field(default_factory=dict)


_WORKER: dict = {}


def _init_worker(split, n, kwargs) -> None:
    from .stats import split_data

    model, data = split_data(split, n)
    _WORKER.update(model=model, data=data, kwargs=kwargs)


def _one(i) -> dict:
    from ..engine.runtime import limited_threads

    with limited_threads(1):
        return image_records(_WORKER["model"], _WORKER["data"], i, **_WORKER["kwargs"])


def evaluate_faithfulness(
    n: int = 50,
    *,
    split: str = "dev",
    point: str = "activation",
    kinds=("published",),
    recipe: str = "fast",
    weighting: str = "guided",
    steps: int | None = None,
    repeats: int = 5,
    seed: int = 0,
    baselines: bool = False,
    curves: bool = True,
    attribution_maps=None,
    workers: int = 1,
    model=None,
    data=None,
    progress: bool = True,
) -> Faithfulness:
    """Run the evaluation on ``n`` images of ``split`` (or of ``data`` with ``model``), one thread per process.
    ``baselines``: also LIME and KernelSHAP (``attribution_maps``, default ``inv_widgets.concepts.baselines.
    attribution_maps``); ``curves=False``: the ablation figures only; ``workers`` > 1 shares the images out to
    that many processes (the demo model only)."""
    import inv_widgets as inv

    from ..engine.points import check_layer_point
    from ..engine.recipes import get_recipe
    from ..engine.runtime import limited_threads
    from ..engine.weights import check_weighting
    from .stats import split_data

    recipe = get_recipe(recipe).name
    check_weighting(weighting)
    check_layer_point(point)
    if n < 1 or (steps is not None and steps < 2) or repeats < 1:
        raise ValueError(f"n >= 1, steps >= 2 and repeats >= 1 are needed; got n={n}, steps={steps}, repeats={repeats}")
    baselines = (baselines or attribution_maps is not None) and curves
    if baselines and attribution_maps is None:
        from ..concepts import baselines as _b

        attribution_maps = _b.attribution_maps
    kw = dict(
        point=point,
        kinds=tuple(kinds),
        recipe=recipe,
        weighting=weighting,
        steps=steps,
        repeats=repeats,
        seed=seed,
        curves=curves,
    )
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="eval faithfulness", unit="img", disable=not progress)
    records: list[dict] = []
    if workers > 1 and model is None and not baselines:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(split, n, kw)
        ) as pool:
            for rec in pool.map(_one, range(n)):
                records.append(rec)
                bar.update()
    else:
        if model is None or data is None:
            model, data = split_data(split, n)
        session = (
            inv.Session(model, data, recipe=recipe, weighting=weighting, layer_point=point, cache_size=1)
            if baselines
            else None
        )
        with limited_threads(1):
            for i in range(n):
                records.append(image_records(model, data, i, session=session, attribution_maps=attribution_maps, **kw))
                bar.update()
    bar.close()
    layers, methods = summarise(records, seed=seed)
    settings = dict(
        n=n,
        split=split,
        point=point,
        kinds=list(kinds),
        recipe=recipe,
        weighting=weighting,
        steps=steps,
        repeats=repeats,
        seed=seed,
        curves=curves,
        baselines=baselines,
        seconds=time.perf_counter() - t0,
    )
    return Faithfulness(layers, methods, records, settings)


def _f(row, key, digits=2):
    from ..engine.stats import Figure

    return Figure(row[key], row.get(f"{key}_lo", np.nan), row.get(f"{key}_hi", np.nan), 0).fmt(digits)


def report(res: Faithfulness) -> str:
    s, df = res.settings, res.layers
    lines = [
        f"eval faithfulness: split {s['split']} ({s['n']} images, explained for the predicted class), layer point "
        f"{s['point']} (channels zeroed there), {s['recipe']} recipe, {s['weighting']} weights, suggested cut, "
        f"{s['repeats']} random groupings per image and layer; [95 % CI resampling images] ({s['seconds']:.0f} s)"
    ]
    for kind in s["kinds"]:
        lines.append(
            f"\n{kind}: per layer k, rho(weight, drop) pooled, rho(size, drop), partial rho(weight, drop | "
            "size), random groups' partial rho, heaviest = largest drop (chance)"
        )
        for _, r in df[df.kind == kind].iterrows():
            lines.append(
                f"  {r.layer.split('.')[-1]:<13} k {r.mean_k:.1f}  {_f(r, 'spearman_pooled'):<19} "
                f"{_f(r, 'size_pooled'):<19} {_f(r, 'partial_pooled'):<19} {_f(r, 'random_partial'):<19} "
                f"{_f(r, 'heaviest_top')} ({r.chance:.2f})"
            )
        if s["curves"]:
            lines.append(f"{kind}: deletion area (lower is better) union / heaviest / Grad-CAM; insertion union")
            for _, r in df[df.kind == kind].iterrows():
                lines.append(
                    f"  {r.layer.split('.')[-1]:<13} {_f(r, 'del_union', 3):<21} "
                    f"{_f(r, 'del_heaviest', 3):<21} {_f(r, 'del_gradcam', 3):<21} {_f(r, 'ins_union', 3)}"
                )
    for _, m in res.methods.iterrows():
        lines.append(
            f"  {m.method}: deletion {m.deletion_area:.3f} [{m.deletion_lo:.3f}, {m.deletion_hi:.3f}], "
            f"insertion {m.insertion_area:.3f}"
        )
    for kind in s["kinds"]:
        for what, ok, figures in check_targets(df, s["weighting"], kind):
            lines.append(f"target {'met   ' if ok else 'MISSED'}  {kind}: {what}: {figures}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from ._args import common_arguments, parser

    ap = parser("faithfulness", __doc__)
    common_arguments(ap, n=50)
    ap.add_argument(
        "--maps",
        nargs="+",
        default=["gradcam", "published"],
        choices=["published", "signed", "gradcam", "contrast"],
        help="map types measured (default: gradcam, the session's default, and the paper's published maps)",
    )
    ap.add_argument("--recipe", default="fast", help="clustering recipe (default fast)")
    ap.add_argument(
        "--weighting", default="guided", choices=["guided", "taylor"], help="channel weights (default guided)"
    )
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="equal steps of the deletion / insertion curves (default: 2 %% steps to 30 %%, then 10 %%)",
    )
    ap.add_argument("--random", type=int, default=5, help="random channel groupings per image and layer (default 5)")
    ap.add_argument("--workers", type=int, default=1, help="processes of one thread each (default 1)")
    ap.add_argument("--baselines", action="store_true", help="also LIME and KernelSHAP (hundreds of passes per image)")
    ap.add_argument("--no-curves", action="store_true", help="the ablation figures only (a fraction of the time)")
    ap.add_argument("--csv", default=None, help="also write the per-layer table to this CSV file")
    args = ap.parse_args(argv)
    for opt, v, lo in (("--steps", args.steps, 2), ("--random", args.random, 1), ("--workers", args.workers, 1)):
        if v is not None and v < lo:
            ap.error(f"{opt} must be at least {lo}, got {v}")
    res = evaluate_faithfulness(
        args.n,
        split=args.split,
        point=args.layer_point,
        kinds=tuple(args.maps),
        recipe=args.recipe,
        weighting=args.weighting,
        steps=args.steps,
        repeats=args.random,
        seed=args.seed,
        baselines=args.baselines,
        curves=not args.no_curves,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(report(res))
    if args.csv:
        res.layers.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
