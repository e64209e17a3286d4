"""Do cluster maps find the parts? Part purity and part recall on the embedded default.

    python -m inv_widgets.eval parts [--n 100] [--recipes fast paper spatial] [--draws 3] [--weighting guided]
                                     [--csv out.csv]

For every layer and every clustering recipe (and cut rule), and for plain Grad-CAM at the same layer as
the one-map baseline, over a fixed held-out set of parts images:

- purity of a cluster map: the largest share of its mass (sum of its values in [0, 1]) inside one part's
  mask; ``purity_w`` weights each map by its cluster weight;
- pointing recall: the share of an image's visible parts that contain the peak of some cluster map of the
  layer (the pointing game, with a tolerance of ``--tolerance`` pixels);
- mass recall: the share of parts that hold >= 50 % of some cluster map's mass;
- hit_w: the share of cluster weight carried by maps whose peak lies on a part.

Two baselines beside each recipe's suggested cut: random smooth maps with the same k (chance), and
**random channel groups** (``<recipe>/random-groups``): the same kept channels shuffled into groups of the
cut's sizes (channels a pruning cut drops stay dropped), weighted and merged exactly like cluster maps,
``--draws`` shuffles per image and layer. Is it the clustering that finds the parts, or would any grouping
of these channels do as well?

The last lines give, per recipe, the gain over random channel groups (mean pointing recall, its worst
layer, the layers where purity is below them), then the default recipe's best layer by pointing recall.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.ndimage import binary_dilation

__all__ = ["evaluate_parts", "map_part_scores", "main", "CUT_RULES"]

#: (recipe, cut rule) pairs evaluated; "suggested" is each recipe's own rule (gap / silhouette + pruning).
CUT_RULES = {
    "fast": ["suggested", "k=3", "k=5", "k=8"],
    "paper": ["suggested"],
    "paper-sklearn": ["suggested"],
    "spatial": ["suggested", "k=5"],
}


class PartMasks:
    """An image's part masks, flattened once, with the pointing-game tolerance applied."""

    def __init__(self, masks: dict[str, np.ndarray], tolerance: int = 3):
        self.names = list(masks)
        if not self.names:
            self.flat = self.dilated = np.zeros((0, 0), bool)
            return
        struct = np.ones((2 * tolerance + 1, 2 * tolerance + 1), bool) if tolerance > 0 else None
        self.flat = np.stack([masks[n] for n in self.names]).reshape(len(self.names), -1).astype(np.float64)
        self.dilated = np.stack([binary_dilation(masks[n], struct) if struct is not None else masks[n]
                                 for n in self.names]).reshape(len(self.names), -1)


def map_part_scores(maps: np.ndarray, parts: PartMasks):
    """Mass share per (map, part), and whether each map's peak lies on each part (K, P)."""
    k, p = len(maps), len(parts.names)
    if not p or not k:
        return np.zeros((k, p)), np.zeros((k, p), bool)
    flat = maps.reshape(k, -1).astype(np.float64)
    mass = flat.sum(1, keepdims=True)
    share = (flat @ parts.flat.T) / np.where(mass > 0, mass, 1.0)
    on = parts.dilated[:, flat.argmax(1)].T
    return share, on


def random_maps(k: int, size: tuple[int, int], rng: np.random.Generator, sigma: float = 8.0) -> np.ndarray:
    """K smooth random maps in [0, 1]: the chance level of every metric."""
    from scipy.ndimage import gaussian_filter

    out = np.stack([gaussian_filter(rng.random(size), sigma) for _ in range(max(k, 1))])
    lo = out.reshape(len(out), -1).min(1)[:, None, None]
    hi = out.reshape(len(out), -1).max(1)[:, None, None]
    return ((out - lo) / np.where(hi > lo, hi - lo, 1)).astype(np.float32)


@dataclass
class _Acc:
    purity: list
    purity_w: list
    recall_point: list
    recall_mass: list
    hit_w: list
    k: list

    @classmethod
    def new(cls):
        return cls([], [], [], [], [], [])

    def add(self, maps, weights, parts: PartMasks):
        share, on = map_part_scores(maps, parts)
        if not parts.names or len(maps) == 0:
            return
        w = np.asarray(weights, np.float64)
        w = w / w.sum() if w.sum() > 0 else np.full(len(maps), 1 / len(maps))
        pur = share.max(1)
        self.purity.append(pur.mean())
        self.purity_w.append(float((w * pur).sum()))
        self.recall_point.append(on.any(0).mean())
        self.recall_mass.append((share >= 0.5).any(0).mean())
        self.hit_w.append(float((w * on.any(1)).sum()))
        self.k.append(len(maps))

    def row(self):
        f = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
        return dict(purity=f(self.purity), purity_w=f(self.purity_w), recall_point=f(self.recall_point),
                    recall_mass=f(self.recall_mass), hit_w=f(self.hit_w), mean_k=f(self.k), images=len(self.k))


def random_groups(lr, cl, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The kept channels of ``lr`` shuffled into groups of the sizes of cut ``cl`` (its dropped channels as
    many), merged like cluster maps: (maps (K, H, W) in [0, 1] at input size, weights (K,) percent)."""
    from ..engine.maps import cluster_maps_lowres, upsample_minmax

    labels = rng.permutation(cl.assignment)
    maps = lr._data.maps
    pct = lr._data.percent[lr._data.kept]
    low = cluster_maps_lowres(maps, pct, labels, cl.k)
    ok = labels >= 0
    weights = np.bincount(labels[ok], weights=pct.cpu().numpy().astype(np.float64)[ok], minlength=cl.k)
    return upsample_minmax(low, lr.explanation.input_size), weights


def _cut(lr, rule):
    if rule == "suggested":
        return lr.cut()
    return lr.cut(k=int(rule.split("=")[1]))


def evaluate_parts(model=None, data=None, n: int = 100, recipes=("fast", "paper", "spatial"), tolerance: int = 3,
                   offset: int = 0, progress: bool = True, draws: int = 3, weighting: str = "guided") -> pd.DataFrame:
    """The table: one row per (layer, method, cut) with purity and recall averaged over ``n`` images.

    ``draws``: random channel groupings per image, layer and recipe (rows ``<recipe>/random-groups``);
    ``weighting``: the channel weights (``Session(weighting=...)``)."""
    import inv_widgets as inv
    from ..engine.recipes import get_recipe

    recipes = tuple(get_recipe(r).name for r in recipes)  # an unknown name fails now, not after loading
    if model is None or data is None:
        model, data = inv.demo.load(n=offset + n)
    session = inv.Session(model, data, cache_size=1, weighting=weighting)
    idx = list(range(offset, offset + n))
    acc: dict = {}
    rng = np.random.default_rng(0)
    groups_rng = np.random.default_rng(1)
    from tqdm.auto import tqdm

    for i in tqdm(idx, desc="eval parts", unit="img", disable=not progress):
        parts = PartMasks(data.part_masks(i), tolerance)
        exp = session.explain(i, target=data[i][1], lazy=True)  # the true class: where are its parts?
        for li, name in enumerate(exp.layers):
            lr = exp.layer(name, recipes[0])
            acc.setdefault((li, name, "gradcam", "-"), _Acc.new()).add(lr.gradcam()[None], [1.0], parts)
            for recipe in recipes:
                lr = exp.layer(name, recipe)
                for rule in CUT_RULES.get(recipe, ["suggested"]):
                    cl = _cut(lr, rule)
                    acc.setdefault((li, name, recipe, rule), _Acc.new()).add(cl.maps, cl.weights, parts)
                    if recipe == recipes[0] and rule == "suggested":  # chance level at the same k
                        rnd = random_maps(cl.k, exp.input_size, rng)
                        acc.setdefault((li, name, "random", "same k"), _Acc.new()).add(rnd, np.ones(len(rnd)), parts)
                    if rule == "suggested" and cl.k:  # the same channels in random groups of the same sizes
                        for _ in range(draws):
                            rmaps, rw = random_groups(lr, cl, groups_rng)
                            acc.setdefault((li, name, f"{recipe}/random-groups", rule), _Acc.new()).add(rmaps, rw, parts)
    rows = [dict(layer_index=li, layer=name, method=method, cut=rule, **a.row())
            for (li, name, method, rule), a in acc.items()]
    return pd.DataFrame(rows).sort_values(["method", "cut", "layer_index"]).reset_index(drop=True)


def grouping_gain(df: pd.DataFrame, recipe: str) -> pd.DataFrame:
    """Per layer: the recipe's suggested cut against random channel groups of the same sizes (recall and
    purity of both, and the differences)."""
    own = df[(df.method == recipe) & (df.cut == "suggested")].set_index("layer")
    rnd = df[(df.method == f"{recipe}/random-groups")].set_index("layer")
    out = pd.DataFrame({"layer_index": own.layer_index, "recall": own.recall_point, "random_recall": rnd.recall_point,
                        "purity": own.purity, "random_purity": rnd.purity}).dropna().sort_values("layer_index")
    out["recall_gain"] = out.recall - out.random_recall
    out["purity_gain"] = out.purity - out.random_purity
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inv_widgets.eval parts", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="held-out images (default 100)")
    ap.add_argument("--recipes", nargs="+", default=["fast", "paper", "spatial"])
    ap.add_argument("--tolerance", type=int, default=3, help="pointing-game tolerance in pixels (default 3)")
    ap.add_argument("--draws", type=int, default=3, help="random channel groupings per image and layer (default 3)")
    ap.add_argument("--weighting", default="guided", choices=["guided", "taylor"],
                    help="the channel weights (Session(weighting=...); default guided)")
    ap.add_argument("--csv", default=None, help="also write the table to this CSV file")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    df = evaluate_parts(n=args.n, recipes=tuple(args.recipes), tolerance=args.tolerance, draws=args.draws,
                        weighting=args.weighting)
    pd.set_option("display.width", 160)
    pd.set_option("display.max_rows", 500)
    cols = ["layer", "method", "cut", "mean_k", "purity", "purity_w", "recall_point", "recall_mass", "hit_w"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.csv:
        df.to_csv(args.csv, index=False)
    print(f"({args.n} held-out images, {time.perf_counter() - t:.0f} s)")
    for recipe in dict.fromkeys(args.recipes):
        g = grouping_gain(df, recipe)
        if g.empty:
            continue
        below = [name.split(".")[-1] for name in g.index[g.purity_gain < 0]]
        print(f"{recipe} against random channel groups of the same sizes: pointing recall {g.recall.mean():.3f} vs "
              f"{g.random_recall.mean():.3f} (gain {g.recall_gain.mean():+.3f}, worst layer {g.recall_gain.min():+.3f}); "
              f"purity {g.purity.mean():.3f} vs {g.random_purity.mean():.3f}, below random in {len(below)} of "
              f"{len(g)} layers{': ' + ', '.join(below) if below else ''}")
    default = df[(df.method == args.recipes[0]) & (df.cut == "suggested")]
    best = default.loc[default.recall_point.idxmax()]
    gc = df[(df.method == "gradcam") & (df.layer == best.layer)].iloc[0]
    print(f"default recipe ({args.recipes[0]}, suggested cut) best-layer pointing recall: {best.recall_point:.3f} "
          f"at {best.layer} (mass recall {best.recall_mass:.3f}, purity {best.purity:.3f}; "
          f"Grad-CAM there: {gc.recall_point:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
