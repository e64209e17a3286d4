"""Do the maps depend on the model and on the class? Sanity checks (Adebayo et al. 2018) on the parts world.

    python -m inv_widgets.eval sanity [--split dev|test] [--n 30] [--layer-point activation|conv]
                                      [--maps published signed gradcam contrast] [--tests cascade random-class]
                                      [--csv out.csv]

Images of the split, each explained for its predicted class by the demo CNN (``fast`` recipe, suggested cut),
at the deepest layer and at block3_conv1. For each map type (``--maps``: the published cluster maps and the
class-contrastive variants of ``inv_widgets.engine.contrast``) and for the layer's Grad-CAM, the heaviest
cluster map and the weighted union of the layer's maps are compared with the map the same method gives

- after **cascading randomisation** (the classifier head re-initialised, then each conv layer with its
  BatchNorm, from the output back), and after **independent randomisation** of one part at a time;
- for a **random other class**;
- and, as references, with **another image's** map and with the image's **edge map** (Sobel).

Spearman's rho over the pixels and SSIM, each the mean over images with a bootstrap 95 % CI over images
(``inv_widgets.engine.sanity``: our implementations, tested against scipy's Spearman and scikit-image's SSIM).
Also the **pointing game** at the deepest layer (the map's maximum inside the object; quantus's definition) for
the heaviest map, the union and every cluster map, and the share of cluster maps that are empty (a cluster that
only lowers the class's score has nothing to show). Issue 25's target for a map type: rho <= 0.3 after
re-initialising the head and for a random class at the deepest layer (heaviest map and union), with the
pointing game >= 0.95.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

__all__ = ["evaluate_sanity", "main", "target_rows"]

DEFAULT_KINDS = ("published", "signed", "gradcam", "contrast")


def evaluate_sanity(
    split: str = "dev",
    n: int = 30,
    *,
    point: str = "activation",
    kinds=DEFAULT_KINDS,
    tests=("cascade", "independent", "random class"),
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Run the checks; returns ``{"records", "summary", "pointing", "units", "layers", "split", "n", "seconds"}``."""
    import torch

    from ..engine.sanity import pointing, sanity_records, summarise
    from ..engine.stats import ci
    from .stats import split_data

    t0 = time.perf_counter()
    model, data = split_data(split, n)
    layers_all = model.conv_layer_names
    layers = [layers_all[4], layers_all[-1]]
    xs = torch.stack([data[i][0] for i in range(n)])
    images = [data.array(i) for i in range(n)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=1, desc="eval sanity", unit="model")

    def step(done, total, msg):
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(msg, refresh=True)

    originals: list = []
    try:
        recs = sanity_records(
            model,
            xs,
            images,
            layers,
            point=point,
            kinds=kinds,
            explain_layers=layers_all,
            tests=tests,
            seed=seed,
            progress=step,
            originals=originals,
        )
    finally:
        if bar is not None:
            bar.close()
    summary = pd.DataFrame(summarise(recs, seed=seed))
    deepest = layers[-1]
    prows = []
    for kind in list(kinds) + ["Grad-CAM"]:
        heavy, uni, every, empty = [], [], [], []
        for i, rec in enumerate(originals):
            obj = data.object_mask(i)
            if kind == "Grad-CAM":
                g = rec["maps"][deepest]["_layer"].gradcam()
                heavy.append(pointing(g, obj))
                uni.append(pointing(g, obj))
                every.append(float(pointing(g, obj)))
                empty.append(float(np.ptp(g) == 0))
                continue
            lm = rec["maps"][deepest][kind]
            if not lm.k:
                continue
            heavy.append(pointing(lm.heaviest(), obj))
            uni.append(pointing(lm.union(), obj))
            every.append(float(np.mean([pointing(m, obj) for m in lm.maps])))
            empty.append(float(np.mean([np.ptp(m) == 0 for m in lm.maps])))
        prows.append(
            dict(
                kind=kind,
                heaviest=ci(heavy, seed=seed),
                union=ci(uni, seed=seed),
                every=ci(every, seed=seed),
                empty=ci(empty, seed=seed),
            )
        )
    return dict(
        records=recs,
        summary=summary,
        pointing=pd.DataFrame(prows),
        units=recs.attrs["units"],
        layers=layers,
        split=split,
        n=n,
        point=point,
        kinds=list(kinds),
        seconds=time.perf_counter() - t0,
    )


def _fig(summary, kind, layer, which, test, step=None):
    from ..engine.stats import Figure

    s = summary[(summary.kind == kind) & (summary.layer == layer) & (summary["map"] == which) & (summary.test == test)]
    if step is not None:
        s = s[s.step == step]
    if s.empty:
        return Figure(float("nan"), float("nan"), float("nan"), 0), Figure(float("nan"), float("nan"), float("nan"), 0)
    r = s.iloc[-1] if step is None else s.iloc[0]
    return Figure(r.rho, r.rho_lo, r.rho_hi, int(r.images)), Figure(r.ssim, r.ssim_lo, r.ssim_hi, int(r.images))


def target_rows(r: dict) -> list[tuple[str, bool, str]]:
    """Issue 25's target per map type at the deepest layer: (what, met, the figures)."""
    s, deepest, head = r["summary"], r["layers"][-1], r["units"][0]
    out = []
    for kind in r["kinds"]:
        figs, ok = [], True
        for which in ("heaviest", "union"):
            h, _ = _fig(s, kind, deepest, which, "cascade", head)
            c, _ = _fig(s, kind, deepest, which, "random class")
            ok &= bool(h.value <= 0.3 and c.value <= 0.3)
            figs.append(f"{which}: head {h.fmt()}, class {c.fmt()}")
        p = r["pointing"].set_index("kind").loc[kind]
        ok &= bool(p["heaviest"].value >= 0.95 and p["union"].value >= 0.95)
        figs.append(f"pointing heaviest {p['heaviest'].fmt()}, union {p['union'].fmt()}")
        out.append((f"{kind}: rho <= 0.3 (head, random class) and pointing >= 0.95", ok, "; ".join(figs)))
    return out


def report(r: dict) -> str:
    """The printed tables."""
    s, lines = r["summary"], []
    head, last = r["units"][0], r["units"][-1]
    lines.append(
        f"eval sanity: split {r['split']} ({r['n']} images), layer point {r['point']}, fast recipe, suggested "
        f"cut; Spearman rho [95 % CI over images] against the original map ({r['seconds']:.0f} s)"
    )
    tests = [
        ("head re-initialised", "cascade", head),
        (f"cascade to {last.split('.')[-1]}", "cascade", last),
        ("random class", "random class", None),
        ("ref: other image", "other image", None),
        ("ref: edge map", "edge", None),
    ]
    indep = sorted(set(s.loc[s.test == "independent", "step"]), key=list(r["units"]).index)
    for layer in r["layers"]:
        lines.append(f"\n{layer}")
        lines.append(
            "  "
            + f"{'map':<22}"
            + "".join(f"{t:<24}" for t, _, _ in tests)
            + ("  independent (median rho over parts)" if indep else "")
        )
        for kind in r["kinds"] + ["Grad-CAM"]:
            for which in ("map",) if kind == "Grad-CAM" else ("heaviest", "union"):
                figs = [_fig(s, kind, layer, which, test, step)[0].fmt() for _, test, step in tests]
                extra = ""
                if indep:
                    v = s[(s.kind == kind) & (s.layer == layer) & (s["map"] == which) & (s.test == "independent")]
                    extra = f"  {v.rho.median():.2f}" if len(v) else ""
                lines.append("  " + f"{kind + ' ' + which:<22}" + "".join(f"{f:<24}" for f in figs) + extra)
        lines.append(
            "  SSIM, head re-initialised / random class: "
            + "; ".join(
                f"{kind} {which} {_fig(s, kind, layer, which, 'cascade', head)[1].fmt()} / "
                f"{_fig(s, kind, layer, which, 'random class')[1].fmt()}"
                for kind in r["kinds"] + ["Grad-CAM"]
                for which in (("map",) if kind == "Grad-CAM" else ("union",))
            )
        )
    lines.append(f"\npointing game at {r['layers'][-1]} (the map's maximum inside the object) and empty maps:")
    for _, p in r["pointing"].iterrows():
        lines.append(
            f"  {p['kind']:<10} heaviest {p['heaviest'].fmt()}  union {p['union'].fmt()}  every map "
            f"{p['every'].fmt()}  empty maps {p['empty'].fmt()}"
        )
    lines.append("\nissue 25's target at the deepest layer:")
    for what, ok, figs in target_rows(r):
        lines.append(f"  {'met' if ok else 'NOT met'}: {what} ({figs})")
    return "\n".join(lines)


def main(argv=None) -> int:
    from ._args import common_arguments, parser

    ap = parser("sanity", __doc__)
    common_arguments(ap, n=30)
    ap.add_argument(
        "--maps",
        nargs="+",
        default=list(DEFAULT_KINDS),
        choices=list(DEFAULT_KINDS),
        help="map types compared (default: all; Grad-CAM is always beside them)",
    )
    ap.add_argument(
        "--tests",
        nargs="+",
        default=["cascade", "independent", "random-class"],
        choices=["cascade", "independent", "random-class"],
        help="which randomisations (default: all)",
    )
    ap.add_argument("--csv", default=None, help="also write the per-image records to this CSV file")
    args = ap.parse_args(argv)
    tests = tuple(t.replace("-", " ") for t in args.tests)
    r = evaluate_sanity(
        args.split,
        args.n,
        point=args.layer_point,
        kinds=tuple(args.maps),
        tests=tests,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(report(r))
    if args.csv:
        r["records"].to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
