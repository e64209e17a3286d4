"""Do cluster maps find the parts? Against random groups of the same channels and the ground-truth grouping.

    python -m inv_widgets.eval parts [--split dev|test] [--n 100] [--layer-point activation|conv]
                                     [--maps published gradcam ...] [--draws 3] [--weighting guided] [--csv out.csv]

Images of the split, each explained for its true class (``fast`` recipe, suggested cut), every layer. Per image
and layer, for each map type (``--maps``), the layer's Grad-CAM, random channel groups and the ground-truth
grouping:

- **pointing recall**: the share of the image's visible parts that hold the peak of some map of the layer (3 px
  tolerance);
- **specific recall** (layer level, no floor): the share of parts P found by some map whose |P| most salient
  pixels lie >= 50 % inside P (|P| = the part's area): a map that covers the whole object finds no part;
- **purity** (largest share of a map's mass inside one part), for reference.

**Random groups** (``<map>/random-groups``): the published cut's kept channels dealt at random into groups of
the cut's sizes (``--draws`` deals), merged as cluster maps: is it the clustering that finds parts? The
**ground-truth grouping** (``truth``, not a method): each kept channel grouped with the part its map's peak lies
on (channels peaking on no part in one group), merged the same way, with its own random groups
(``truth/random-groups``): the reference bound of what grouping the channels can give. Gains are paired per
image (recipe minus its random groups), with bootstrap 95 % CIs over images; issue 20's targets: the
specific-recall gain >= 75 % of the truth's gain, the pointing-recall gain >= 50 % of it, the gain's CI above 0
in every block 3-4 layer and entirely below 0 in none.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
from scipy.ndimage import binary_dilation

__all__ = [
    "evaluate_parts",
    "map_part_scores",
    "specific_found",
    "PartMasks",
    "main",
    "random_maps",
    "random_groups",
    "truth_groups",
    "gains",
    "check_targets",
]


class PartMasks:
    """An image's part masks, flattened once, with the pointing-game tolerance applied."""

    def __init__(self, masks: dict[str, np.ndarray], tolerance: int = 3):
        self.names = list(masks)
        if not self.names:
            self.flat = self.dilated = np.zeros((0, 0), bool)
            self.area = np.zeros(0)
            return
        struct = np.ones((2 * tolerance + 1, 2 * tolerance + 1), bool) if tolerance > 0 else None
        self.flat = np.stack([masks[n] for n in self.names]).reshape(len(self.names), -1).astype(np.float64)
        self.area = self.flat.sum(1)
        self.dilated = np.stack(
            [binary_dilation(masks[n], struct) if struct is not None else masks[n] for n in self.names]
        ).reshape(len(self.names), -1)


def map_part_scores(maps: np.ndarray, parts: PartMasks):
    """Mass share per (map, part), and whether each map's peak lies on each part (K, P). A flat map (nothing in
    it) has no peak: it points at no part."""
    k, p = len(maps), len(parts.names)
    if not p or not k:
        return np.zeros((k, p)), np.zeros((k, p), bool)
    flat = maps.reshape(k, -1).astype(np.float64)
    mass = flat.sum(1, keepdims=True)
    share = (flat @ parts.flat.T) / np.where(mass > 0, mass, 1.0)
    on = parts.dilated[:, flat.argmax(1)].T & (np.ptp(flat, 1) > 0)[:, None]
    return share, on


def specific_found(maps: np.ndarray, parts: PartMasks) -> np.ndarray:
    """(P,) whether some map's |P| most salient pixels lie >= 50 % inside part P."""
    k, p = len(maps), len(parts.names)
    found = np.zeros(p, bool)
    if not k or not p:
        return found
    flat = maps.reshape(k, -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    for j in range(p):
        a = int(parts.area[j])
        if a == 0:
            continue
        inside = parts.flat[j][order[:, :a]].sum(1)  # (K,) pixels of each map's top a inside the part
        found[j] = bool(((inside >= 0.5 * a) & (np.ptp(flat, 1) > 0)).any())
    return found


def random_maps(k: int, size: tuple[int, int], rng: np.random.Generator, sigma: float = 8.0) -> np.ndarray:
    """K smooth random maps in [0, 1]: the chance level of every metric."""
    from scipy.ndimage import gaussian_filter

    out = np.stack([gaussian_filter(rng.random(size), sigma) for _ in range(max(k, 1))])
    lo = out.reshape(len(out), -1).min(1)[:, None, None]
    hi = out.reshape(len(out), -1).max(1)[:, None, None]
    return ((out - lo) / np.where(hi > lo, hi - lo, 1)).astype(np.float32)


def random_groups(lr, cl, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The kept channels of ``lr`` shuffled into groups of the sizes of cut ``cl`` (its dropped channels as
    many), merged like cluster maps: (maps (K, H, W) in [0, 1] at input size, weights (K,) percent)."""
    labels = rng.permutation(cl.assignment)
    pct = lr.channel_weights[lr.kept].astype(np.float64)
    ok = labels >= 0
    weights = np.bincount(labels[ok], weights=pct[ok], minlength=cl.k)
    maps = _merge(lr.feature_maps, pct, labels, lr.explanation.input_size, cl.k)
    return maps, weights


def _scores(maps, parts: PartMasks) -> dict:
    if not parts.names or not len(maps):
        return {}
    share, on = map_part_scores(maps, parts)
    return {
        "pointing": float(on.any(0).mean()),
        "specific": float(specific_found(maps, parts).mean()),
        "purity": float(share.max(1).mean()),
        "k": len(maps),
    }


def _merge(feature_maps, pct, labels, size, k=None):
    import torch

    from ..engine.maps import cluster_maps_lowres, upsample_minmax

    if k is None:
        k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    if k == 0:
        return np.zeros((0, *size), np.float32)
    return upsample_minmax(
        cluster_maps_lowres(torch.as_tensor(feature_maps), torch.as_tensor(pct).float(), labels, k), size
    )


def truth_groups(feature_maps: np.ndarray, parts: PartMasks, size) -> np.ndarray:
    """The ground-truth grouping (not a method): each kept channel with the part its map's peak lies on (3 px
    tolerance, the first such part), channels peaking on no part in one more group; (n,) group labels."""
    import torch

    from ..engine.maps import upsample_minmax

    up = upsample_minmax(torch.as_tensor(feature_maps), size)
    _, on = map_part_scores(up, parts)
    if on.shape[1] == 0:
        return np.zeros(len(up), np.int64)
    lab = np.where(on.any(1), on.argmax(1), on.shape[1])
    return np.unique(lab, return_inverse=True)[1].astype(np.int64)


def evaluate_parts(
    split: str = "dev",
    n: int = 100,
    *,
    point: str = "activation",
    kinds=("published",),
    recipe: str = "fast",
    draws: int = 3,
    weighting: str = "guided",
    tolerance: int = 3,
    seed: int = 0,
    progress: bool = True,
    batch_size: int = 8,
) -> pd.DataFrame:
    """One row per (image, layer, method) with pointing, specific, purity and k; methods: each map type, Grad-CAM,
    ``published/random-groups`` (per-image mean over the draws), ``truth`` and ``truth/random-groups``."""
    import torch

    from ..engine.recipes import get_recipe
    from ..engine.sanity import explain_images
    from ..engine.weights import check_weighting
    from .stats import split_data

    recipe = get_recipe(recipe).name  # an unknown name fails now, not after loading
    if int(n) < 1 or int(draws) < 1:
        raise ValueError(f"n and draws must be at least 1, got n={n}, draws={draws}")
    check_weighting(weighting)
    if weighting != "guided":
        raise ValueError(
            "eval parts measures the session's default weighting (guided); taylor is measured by eval faithfulness"
        )
    model, data = split_data(split, n)
    layers = model.conv_layer_names
    rng = np.random.default_rng(seed)
    rows = []
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc="eval parts", unit="img", disable=not progress)
    for s in range(0, n, batch_size):
        idx = list(range(s, min(n, s + batch_size)))
        xs = torch.stack([data[i][0] for i in idx])
        recs = explain_images(
            model,
            xs,
            [data.array(i) for i in idx],
            [data.label(i) for i in idx],
            layers,
            point=point,
            kinds=kinds,
            recipe=recipe,
        )
        for i, rec in zip(idx, recs):
            parts = PartMasks(data.part_masks(i), tolerance)
            size = rec["exp"].input_size
            for li, name in enumerate(layers):
                per = rec["maps"][name]
                lr = per["_layer"]

                def add(method, maps, i=i, li=li, name=name, parts=parts):
                    sc = _scores(maps, parts)
                    if sc:
                        rows.append(dict(image=i, layer_index=li, layer=name, method=method, **sc))

                for kind in kinds:
                    add(kind, per[kind].maps)
                add("Grad-CAM", lr.gradcam()[None])
                cl = per["published"].cut if "published" in per else lr.cut()
                feats, pct = lr.feature_maps, lr.channel_weights[lr.kept].astype(np.float64)
                if cl.k and len(feats):
                    rnd = [_scores(random_groups(lr, cl, rng)[0], parts) for _ in range(draws)]
                    truth = truth_groups(feats, parts, size)
                    add("truth", _merge(feats, pct, truth, size))
                    rt = [_scores(_merge(feats, pct, rng.permutation(truth), size), parts) for _ in range(draws)]
                    for method, got in (("published/random-groups", rnd), ("truth/random-groups", rt)):
                        got = [g for g in got if g]
                        if got:
                            rows.append(
                                dict(
                                    image=i,
                                    layer_index=li,
                                    layer=name,
                                    method=method,
                                    **{m: float(np.mean([g[m] for g in got])) for m in got[0]},
                                )
                            )
            bar.update(1)
    bar.close()
    out = pd.DataFrame(rows)
    out.attrs.update(split=split, n=n, point=point, kinds=list(kinds), draws=draws, recipe=recipe)
    return out


def table(df: pd.DataFrame, metric: str, seed: int = 0) -> pd.DataFrame:
    """Per (layer, method): the mean of ``metric`` over images with its 95 % CI."""
    from ..engine.stats import ci

    rows = []
    for (li, layer, method), g in df.groupby(["layer_index", "layer", "method"], sort=True):
        rows.append(dict(layer_index=li, layer=layer, method=method, figure=ci(g[metric], seed=seed)))
    return pd.DataFrame(rows)


def _paired(df, a, b, metric, layer=None):
    sel = df if layer is None else df[df.layer == layer]
    x = sel[sel.method == a].set_index(["image", "layer"])[metric]
    y = sel[sel.method == b].set_index(["image", "layer"])[metric]
    both = x.index.intersection(y.index)
    d = (x.loc[both] - y.loc[both]).groupby(level="image").mean()  # one value per image: its layers averaged
    return d


def gains(df: pd.DataFrame, method: str = "published", seed: int = 0) -> dict:
    """Per metric (pointing, specific): the method's gain over its random groups and the truth's over its own,
    per layer and over all layers (paired per image, 95 % CIs), and the ratio of the two gains (bootstrap CI)."""
    from ..engine.stats import ci, ratio_ci

    out = {}
    for metric in ("pointing", "specific"):
        per_layer = []
        for layer in dict.fromkeys(df.sort_values("layer_index").layer):
            g = _paired(df, method, "published/random-groups", metric, layer)
            t = _paired(df, "truth", "truth/random-groups", metric, layer)
            per_layer.append(dict(layer=layer, gain=ci(g, seed=seed), truth_gain=ci(t, seed=seed)))
        g = _paired(df, method, "published/random-groups", metric)
        t = _paired(df, "truth", "truth/random-groups", metric)
        both = g.index.intersection(t.index)
        out[metric] = dict(
            per_layer=per_layer,
            gain=ci(g, seed=seed),
            truth_gain=ci(t, seed=seed),
            ratio=ratio_ci(g.loc[both], t.loc[both], seed=seed),
        )
    return out


def check_targets(g: dict) -> list[tuple[str, bool, str]]:
    """Issue 20's grouping targets: (what, met, the figures)."""
    sp, pt = g["specific"], g["pointing"]
    deep = [r for r in sp["per_layer"] if "block3_" in r["layer"] or "block4_" in r["layer"]]
    below = [r["layer"].split(".")[-1] for r in sp["per_layer"] if r["gain"].hi < 0]
    above = [r["layer"].split(".")[-1] for r in deep if r["gain"].lo > 0]
    return [
        (
            "specific-recall gain >= 75 % of the ground-truth grouping's",
            bool(sp["ratio"].value >= 0.75),
            f"{sp['ratio'].fmt()} ({sp['gain'].fmt(3)} against {sp['truth_gain'].fmt(3)})",
        ),
        (
            "pointing-recall gain >= 50 % of the ground-truth grouping's",
            bool(pt["ratio"].value >= 0.5),
            f"{pt['ratio'].fmt()} ({pt['gain'].fmt(3)} against {pt['truth_gain'].fmt(3)})",
        ),
        (
            "specific-recall gain's CI above 0 in every block 3-4 layer",
            len(above) == len(deep),
            f"{len(above)} of {len(deep)}" + (f" ({', '.join(above)})" if above else ""),
        ),
        ("no layer with the gain's CI entirely below 0", not below, "none" if not below else ", ".join(below)),
    ]


def report(df: pd.DataFrame, seed: int = 0) -> str:
    a = df.attrs
    lines = [
        f"eval parts: split {a['split']} ({a['n']} images, explained for the true class), layer point "
        f"{a['point']}, {a['recipe']} recipe, suggested cut; mean [95 % CI over images]"
    ]
    methods = list(a["kinds"]) + ["published/random-groups", "truth", "truth/random-groups", "Grad-CAM"]
    for metric, title in (
        ("pointing", "pointing recall"),
        ("specific", "specific recall (|P| top pixels >= 50 % inside the part)"),
        ("purity", "purity"),
    ):
        t = table(df, metric, seed)
        lines.append(f"\n{title}")
        lines.append(f"  {'layer':<14}" + "".join(f"{m:<24}" for m in methods))
        for layer in dict.fromkeys(t.sort_values("layer_index").layer):
            row = t[t.layer == layer].set_index("method")["figure"]
            lines.append(
                f"  {layer.split('.')[-1]:<14}" + "".join(f"{row[m].fmt() if m in row else '–':<24}" for m in methods)
            )
        overall = df.groupby(["method", "image"])[metric].mean().groupby(level="method")
        from ..engine.stats import ci

        lines.append(
            f"  {'all layers':<14}"
            + "".join(
                f"{ci(overall.get_group(m), seed=seed).fmt() if m in overall.groups else '–':<24}" for m in methods
            )
        )
    for kind in a["kinds"]:
        g = gains(df, kind, seed)
        lines.append(
            f"\n{kind} against random groups of the same channels (gain, paired per image), and the "
            "ground-truth grouping's gain over its own random groups:"
        )
        for metric in ("pointing", "specific"):
            m = g[metric]
            lines.append(
                f"  {metric}: gain {m['gain'].fmt(3)}, truth's gain {m['truth_gain'].fmt(3)}, ratio "
                f"{m['ratio'].fmt()}; per layer: "
                + ", ".join(f"{r['layer'].split('.')[-1]} {r['gain'].fmt(3)}" for r in m["per_layer"])
            )
        if kind == "published":
            lines.append("  issue 20's grouping targets:")
            for what, ok, figs in check_targets(g):
                lines.append(f"    {'met' if ok else 'NOT met'}: {what}: {figs}")
    if len(a["kinds"]) > 1:
        lines.append("\nmap types against the published maps (paired per image, all layers):")
        for kind in a["kinds"]:
            if kind != "published":
                lines.append(
                    f"  {kind}: pointing {_fmtd(df, kind, 'pointing', seed)}, specific "
                    f"{_fmtd(df, kind, 'specific', seed)}"
                )
    return "\n".join(lines)


def _fmtd(df, kind, metric, seed):
    from ..engine.stats import ci

    return ci(_paired(df, kind, "published", metric), seed=seed).fmt(3)


def main(argv=None) -> int:
    from ._args import common_arguments, parser

    ap = parser("parts", __doc__)
    common_arguments(ap, n=100)
    ap.add_argument(
        "--maps",
        nargs="+",
        default=["published", "gradcam"],
        choices=["published", "signed", "gradcam", "contrast"],
        help="map types measured (default: the paper's published maps and gradcam, the session's default)",
    )
    ap.add_argument("--recipe", default="fast", help="the clustering recipe (default fast)")
    ap.add_argument("--draws", type=int, default=3, help="random channel groupings per image and layer (default 3)")
    ap.add_argument("--csv", default=None, help="also write the per-image table to this CSV file")
    args = ap.parse_args(argv)
    if args.draws < 1:
        ap.error(f"--draws must be at least 1, got {args.draws}")
    kinds = tuple(dict.fromkeys(["published", *args.maps]))
    t = time.perf_counter()
    from ..engine.recipes import get_recipe

    try:
        get_recipe(args.recipe)
    except ValueError as e:
        ap.error(str(e))
    df = evaluate_parts(
        args.split,
        args.n,
        point=args.layer_point,
        kinds=kinds,
        recipe=args.recipe,
        draws=args.draws,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(report(df, args.seed))
    print(f"({time.perf_counter() - t:.0f} s)")
    if args.csv:
        df.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
