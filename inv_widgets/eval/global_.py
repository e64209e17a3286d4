"""Does the concept test tell a part label from noise? Global explanations with controls whose answer is known.

    python -m inv_widgets.eval global [--split dev|test] [--n 200] [--players 8] [--noise 0.2] [--runs 10]
                                      [--null 30] [--scored 20] [--layer-point activation|conv] [--csv out.csv]
                                      [--curated] [--step 0-5] [--fill black|mean]

1. Simulated players (``inv_widgets.eval.simulate``) label every cluster map of the two deepest layers (default
   cut) of ``--n`` images of the split through a real SQLite LabelStore; the labels are aggregated with
   Sentence-BERT and the global explanation is built. Per layer: the share of classes whose top label names one
   of the class's parts, and whose top label names the part most of the class's maps truly show
   (``simulate.truth_part``, read independently of the players).
2. ``inv.concept_test`` with its defaults (the calibrated test: random concepts of the class's own maps, the
   concept as the unit, Holm's correction) on the top ``--labels`` labels of every class at both layers. Scored
   images: ``--scored`` fresh images per class (never labelled, so held out from every concept). The examples of
   the labels and the controls: Deep Reveal images at ``--step`` (default 3), hidden pixels ``--fill`` (default
   black; ``mean``: the Normalize step's mean colour).
3. Controls, tested in the same way against the same random concepts (one call per family, Holm within it):
   - **noise labels**: the maps of a class on which players typed a noise word ("texture", "no idea", ...),
     any rank; **random subsets** of the class's maps (``--controls`` per class and layer): both nulls;
   - **absent parts**: maps of other classes whose true part is a part this class does not have;
   - **the class's parts**: its maps whose true part is that part, split by the part's **occlusion
     importance**: the part painted out with the image's object-free background (the demo's
     ``background(i)``) on the scored images, the class logit's mean drop; at or above the median of the
     class's parts = important;
   - **curated** (an oracle, with ``--curated``): random subsets, absent, important and unimportant
     parts with curated part images (the part alone on its image's background) as the examples instead of
     revealed maps (``inv_widgets.eval.curated``).
   Reported: how often each family comes out significant (either direction; nulls: the false-positive rate)
   and significant above, before and after Holm, with 95 % CIs over concepts; the part labels against the noise
   labels as an AUROC of the t statistic (CI by bootstrap); and the published procedure's t-test of the runs on
   the same CAVs beside it.
Every random step is seeded: the figures are the same on every run.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .curated import drawn_concepts
from .stats import auroc

__all__ = ["evaluate_global", "label_kind", "occlusion_importance", "main"]


@lru_cache(maxsize=1)
def _vocab():
    from ..demo import CLASS_PART_VOCABULARY, CLASS_PARTS
    from ..labels.text import lemmatize
    from .labels import part_words
    from .simulate import NOISE_LABELS

    words = part_words(CLASS_PART_VOCABULARY)
    every_part_word = set().union(*words.values())
    noise = {lemmatize(w) for ph in NOISE_LABELS for w in re.findall(r"\w+", ph.lower())} - every_part_word
    return CLASS_PARTS, words, noise, lemmatize


def label_kind(label: str, cls: str) -> tuple[str, str | None]:
    """("part", part) when the label is a word for one of ``cls``'s parts (the first such part), ("noise", None)
    for a word of the noise labels, else ("other", None) (e.g. a part of another class)."""
    class_parts, words, noise, lemmatize = _vocab()
    w = lemmatize(str(label).lower())
    for part in class_parts.get(cls, []):
        if w in words[(cls, part)]:
            return "part", part
    return ("noise", None) if w in noise else ("other", None)


def occlusion_importance(model, data, indices, classes) -> dict[str, dict[str, float]]:
    """``{class: {part: mean drop of the class's logit}}`` when the part is painted out with the image's own
    object-free background, over ``indices`` (images of the dataset; a part counts where at least 30 pixels
    of it are visible)."""
    import torch

    drops: dict = {}
    with torch.no_grad():
        for i in indices:
            y = int(data.label(i))
            img, bg = data.array(i), data.background(i)
            masks = {p: m for p, m in data.part_masks(i).items() if m.sum() >= 30}
            if not masks:
                continue
            xs = [data.to_tensor(img)] + [data.to_tensor(np.where(m[..., None], bg, img)) for m in masks.values()]
            logits = model(torch.stack(xs))[:, y]
            for p, d in zip(masks, (logits[0] - logits[1:]).tolist()):
                drops.setdefault(classes[y], {}).setdefault(p, []).append(d)
    return {c: {p: float(np.mean(v)) for p, v in parts.items()} for c, parts in drops.items()}


def control_row(cls, layer, family, concept, n, importance, r) -> dict:
    """One control concept's row: its class, layer, family, name, size, occlusion importance and calibrated
    result ``r`` (``ConceptSpace.test``)."""
    return dict(
        cls=cls,
        layer=layer,
        family=family,
        concept=concept,
        n=n,
        importance=importance,
        t=r.t,
        p=r.p,
        direction=r.direction,
        cosine=r.score,
        null_cosine=r.null_score,
        sign=r.sign,
        null_sign=r.null_sign,
        p_tcav=r.p_tcav,
        n_scored=r.n_scored,
    )


def _controls(
    session,
    ge,
    agg,
    truth,
    layers,
    scored,
    importance,
    *,
    runs,
    null,
    min_examples,
    max_examples,
    controls,
    seed,
    progress,
    absent: int = 3,
    step: int = 3,
    fill: str = "black",
):
    """One row per control concept (class, layer, family, name) with its calibrated result (``absent`` parts the
    class does not have, drawn at random among those with enough maps, per class and layer)."""
    from ..concepts.calibrated import ConceptSpace, reveal_inputs
    from ..engine import MapKey
    from ..labels.text import lemmatize

    _, _, noise_words, _ = _vocab()
    rows = []
    key_cols = ["model", "image_id", "target", "layer", "members"]
    lem = agg["label"].map(lambda t: lemmatize(str(t).lower()))
    noisy = agg[lem.isin(noise_words)]
    noise_keys = {MapKey(*r) for r in noisy[key_cols].itertuples(index=False, name=None)}
    rng = np.random.default_rng(seed)
    from tqdm.auto import tqdm

    # every map's Deep Reveal image at ``step`` once (each image explained once for its class), shared by all tests
    at_layers = ge.maps[ge.maps["layer"].isin(layers)]
    at_keys = [MapKey(*r) for r in at_layers[key_cols].itertuples(index=False, name=None)]
    reveals = reveal_inputs(session, at_keys, step, fill=fill)
    bar = tqdm(total=len(layers) * len(ge.classes), desc="controls", unit="class", disable=not progress)
    for li, layer in enumerate(layers):
        at = ge.maps[ge.maps["layer"] == layer]
        all_keys = [MapKey(*r) for r in at[key_cols].itertuples(index=False, name=None)]
        by_truth: dict = {}
        for k in all_keys:
            by_truth.setdefault((session.classes[k.target], truth.get(k)), []).append(k)
        for ci_, name in enumerate(ge.classes):
            pool = [k for k in all_keys if session.classes[k.target] == name]
            if len(pool) < 2 * min_examples or name not in scored:
                bar.update(1)
                continue
            concepts = []  # (family, concept name, keys, important)
            cap = min(max_examples, len(pool) // 2)  # a concept leaves room for random sets of its size
            nk = [k for k in pool if k in noise_keys]
            if len(nk) >= min_examples:
                concepts.append(("noise label", "noise", nk[:cap], None))
            concepts += drawn_concepts(
                name,
                pool,
                by_truth,
                importance.get(name, {}),
                rng,
                cap=cap,
                min_examples=min_examples,
                controls=controls,
                absent=absent,
            )
            used = list(dict.fromkeys(list(pool) + [k for _, _, ks, _ in concepts for k in ks]))
            examples = {k: reveals[k] for k in used}
            space = ConceptSpace(
                session.model,
                layer,
                ge.classes.index(name),
                examples,
                {i: session.input(i) for i in scored[name]},
                {k: session.index_of(k.image_id) for k in examples},
                point=session.layer_point,
                seed=seed,
            )
            for fam, cname, keys, imp_v in concepts:
                r = space.test(keys, pool, runs=runs, n_null=null, seed=[seed, li, ci_], null_pool=pool)
                rows.append(control_row(name, layer, fam, cname, len(keys), imp_v, r))
            bar.update(1)
    bar.close()
    return pd.DataFrame(rows)


def evaluate_global(
    split: str = "dev",
    n_images: int = 200,
    players: int = 8,
    noise: float = 0.2,
    *,
    point: str = "activation",
    maps: str = "gradcam",
    runs: int = 10,
    null: int = 30,
    n_labels: int = 5,
    scored: int = 20,
    tcav_layers: int = 2,
    min_examples: int = 10,
    max_examples: int = 30,
    controls: int = 5,
    seed: int = 0,
    store_path=None,
    progress: bool = True,
    curated: bool = False,
    step: int = 3,
    fill: str = "black",
) -> dict:
    import inv_widgets as inv

    from ..concepts import GlobalExplanation, concept_test
    from ..concepts.calibrated import holm
    from .play import play
    from .stats import split_data

    model, data = split_data(split, n_images + 10 * scored)
    session = inv.Session(model, data, cache_size=16, layer_point=point, maps=maps)
    layers = session.layers[-int(tcav_layers) :]
    fresh = range(n_images, n_images + 10 * scored)  # every block of 10 images holds each class once
    scored_of = {}
    for i in fresh:
        scored_of.setdefault(session.classes[data.label(i)], []).append(i)
    tmp = tempfile.TemporaryDirectory()
    store = inv.LabelStore(store_path or Path(tmp.name) / "labels.sqlite")
    t0 = time.perf_counter()
    truth: dict = {}
    weights = play(
        session,
        store,
        range(n_images),
        players=players,
        noise=noise,
        seed=seed,
        truth=truth,
        layers=layers,
        progress=progress,
    )
    agg = inv.aggregate_labels(store, class_names=session.classes, progress=False)
    store.close()
    play_s = time.perf_counter() - t0
    ge = GlobalExplanation.from_labels(agg, session, weights=weights)
    naming = []
    for layer in layers:
        for name in ge.classes:
            top = ge.top(name, layer, 5)
            if top.empty:
                continue
            at = ge.maps[(ge.maps["class"] == name) & (ge.maps["layer"] == layer)]
            parts = pd.Series([truth.get(inv.MapKey.from_row(r)) for _, r in at.iterrows()]).dropna()
            main_part = parts.value_counts().idxmax() if len(parts) else None
            kind, part = label_kind(top["label"].iloc[0], name)
            naming.append(dict(layer=layer, cls=name, top1=kind == "part", main=part is not None and part == main_part))
    t1 = time.perf_counter()
    with np.errstate(all="ignore"):
        tc = concept_test(
            session,
            ge,
            layers=layers,
            n_labels=n_labels,
            runs=runs,
            null=null,
            seed=seed,
            min_examples=min_examples,
            max_examples=max_examples,
            scored_images=scored_of,
            progress=progress,
            attach=False,
            step=step,
            fill=fill,
        )
    kinds = [label_kind(lab, c) for lab, c in zip(tc["label"], tc["class"])]
    tc["kind"], tc["part"] = [k for k, _ in kinds], [p for _, p in kinds]
    importance = occlusion_importance(model, data, fresh, session.classes)
    # the map controls and the curated ones are tested alike
    alike = dict(
        runs=runs,
        null=null,
        min_examples=min_examples,
        max_examples=max_examples,
        controls=controls,
        seed=seed,
        progress=progress,
    )
    ctl = _controls(session, ge, agg, truth, layers, scored_of, importance, step=step, fill=fill, **alike)
    tcav_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    if curated:
        from .curated import curated_tests

        found = curated_tests(session, data, layers, range(n_images), scored_of, importance, **alike)
        ctl = pd.concat([ctl, pd.DataFrame([control_row(*f) for f in found])], ignore_index=True)
    curated_s = time.perf_counter() - t2
    if len(ctl):
        ctl["p_holm"] = np.nan
        for _, g in ctl.groupby("family"):
            ctl.loc[g.index, "p_holm"] = holm(g["p"].to_numpy())
    tmp.cleanup()
    return dict(
        split=split,
        n_images=n_images,
        players=players,
        noise=noise,
        runs=runs,
        null=null,
        step=step,
        fill=fill,
        scored=scored,
        point=point,
        maps_type=maps,
        layers=layers,
        maps=len(ge.maps),
        play_s=play_s,
        tcav_s=tcav_s,
        curated_s=curated_s if curated else None,
        naming=pd.DataFrame(naming),
        labels=tc,
        controls=ctl,
        importance=importance,
        untested=list(tc.attrs.get("untested", [])),
        min_examples=min_examples,
        max_examples=max_examples,
    )


def summary(r: dict, seed: int = 0) -> pd.DataFrame:
    """Per family (label rows by kind, and each control family): significant (either direction) and significant
    above, unadjusted and after Holm, and the published procedure's t-test, each a share with a 95 % CI over
    concepts."""
    from ..engine.stats import ci
    from .curated import curated_families

    rows = []
    lab = r["labels"][r["labels"]["note"] == ""]
    fams = [(f"label: {k}", lab[lab["kind"] == k], "p_raw", "p_value") for k in ("part", "other", "noise")]
    ctl = r["controls"]
    if len(ctl):
        fams += [
            (f"control: {f}", ctl[ctl["family"] == f], "p", "p_holm")
            for f in ("noise label", "random subset", "absent part", "important part", "unimportant part")
        ]
        fams += [(f"control: {f}", ctl[ctl["family"] == f], "p", "p_holm") for f in curated_families(ctl)]
    for name, g, p, ph in fams:
        if not len(g):
            rows.append(dict(family=name, n=0))
            continue
        up = g["direction"] == "above"
        row = dict(
            family=name,
            n=len(g),
            significant=ci(g[p] < 0.05, seed=seed),
            above=ci((g[p] < 0.05) & up, seed=seed),
            significant_holm=ci(g[ph] < 0.05, seed=seed),
            above_holm=ci((g[ph] < 0.05) & up, seed=seed),
            mean_t=ci(g["t"], seed=seed),
            tcav_significant=ci(g["p_tcav"] < 0.05, seed=seed),
        )
        rows.append(row)
    return pd.DataFrame(rows)


def check_targets(r: dict, seed: int = 0) -> list[tuple[str, bool, str]]:
    s = summary(r, seed).set_index("family")
    out = []

    def fig(fam, col):
        return s.loc[fam, col] if fam in s.index and s.loc[fam, "n"] else None

    for fam in ("control: noise label", "control: random subset"):
        f = fig(fam, "significant")
        ok = f is not None and f.value <= 0.05 and f.hi <= 0.10
        out.append(
            (
                f"{fam.split(': ')[1]} concepts significant <= 0.05 (CI upper <= 0.10)",
                bool(ok),
                f"{f} over {int(s.loc[fam, 'n'])} concepts" if f is not None else "none tested",
            )
        )
    nulls = sum(int(s.loc[f, "n"]) for f in ("control: noise label", "control: random subset") if f in s.index)
    out.append((">= 100 null concepts", nulls >= 100, str(nulls)))
    f = fig("control: absent part", "above")
    out.append(("absent parts significant-above <= 0.05", f is not None and f.value <= 0.05, str(f)))
    f, fh = fig("control: important part", "above"), fig("control: important part", "above_holm")
    out.append(
        (
            "causally important parts significant-above >= 0.5 (unadjusted / Holm within the family)",
            f is not None and f.value >= 0.5,
            f"{f} / {fh}",
        )
    )
    lab = r["labels"][r["labels"]["note"] == ""]
    ctl = r["controls"]
    noise_t = (
        np.r_[lab.loc[lab["kind"] == "noise", "t"], ctl.loc[ctl["family"] == "noise label", "t"]]
        if len(ctl)
        else lab.loc[lab["kind"] == "noise", "t"]
    )
    a = auroc(lab.loc[lab["kind"] == "part", "t"], noise_t, seed=seed)
    n_part = int((lab["kind"] == "part").sum())
    out.append(
        (
            "part labels vs noise labels AUROC >= 0.8",
            bool(a.value >= 0.8),
            f"{a} ({n_part} part labels, {len(noise_t)} noise)",
        )
    )
    return out


def report(r: dict, seed: int = 0) -> str:
    lines = [
        f"eval global: split {r['split']}, {r['maps']} labelled cluster maps of {r['n_images']} images at "
        f"{', '.join(x.split('.')[-1] for x in r['layers'])}, {r['players']} simulated players at "
        f"{r['noise']:.0%} noise; layer point {r['point']}, {r['maps_type']} maps; calibrated concept test, "
        f"Deep Reveal step {r.get('step', 3)} ({r.get('fill', 'black')} fill), {r['runs']} runs, "
        f"{r['null']} random concepts, "
        f"{r['scored']} fresh scored images per class, concepts of {r['min_examples']}-{r['max_examples']} maps "
        f"(play + aggregate {r['play_s']:.0f} s, tests {r['tcav_s']:.0f} s)"
    ]
    nm = r["naming"]
    for layer, g in nm.groupby("layer", sort=False):
        lines.append(
            f"  {layer.split('.')[-1]}: top label names a part of the class {g.top1.mean():.2f}, names the "
            f"part most of the class's maps truly show {g.main.mean():.2f} ({len(g)} classes)"
        )
    lines.append(
        f"  label rows: {len(r['labels'])}, tested {int((r['labels']['note'] == '').sum())}, untested "
        f"{len(r['untested'])} (every one listed by concept_test with its reason)"
    )
    lines.append(
        "\nshare significant (either direction) / significant above, unadjusted and after Holm; the published "
        "procedure's t-test on the same CAVs; [95 % CI over concepts]"
    )
    for _, s in summary(r, seed).iterrows():
        if not s.get("n"):
            lines.append(f"  {s.family:<34} none tested")
            continue
        lines.append(
            f"  {s.family:<34} n {int(s.n):>3}  sig {s.significant.fmt()}  above {s.above.fmt()}  | Holm: sig "
            f"{s.significant_holm.fmt()} above {s.above_holm.fmt()}  | published t-test sig "
            f"{s.tcav_significant.fmt()}  | mean t {s.mean_t.fmt()}"
        )
    from .curated import _ranking, curated_checks

    lines.append("\nissue 20's concept-test targets:")
    for what, ok, figs in check_targets(r, seed):
        lines.append(f"  {'met' if ok else 'NOT met'}: {what}: {figs}")
    cur = curated_checks(summary(r, seed), r["controls"], seed)
    if cur:
        lines.append(f"\nthe oracle control, curated part images ({r['curated_s']:.0f} s):")
        lines += [f"  {'met' if ok else 'NOT met'}: {what}: {figs}" for what, ok, figs in cur]
    elif len(r["controls"]):
        lines += [f"  (figure) {what}: {figs}" for what, _, figs in _ranking(r["controls"], seed, r["importance"])]
    return "\n".join(lines)


def main(argv=None) -> int:
    from ._args import common_arguments, parser
    from ._args import whole as _whole

    ap = parser("global", __doc__)
    common_arguments(ap, n=200)
    ap.add_argument("--players", type=_whole(1, "--players"), default=8)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--runs", type=_whole(2, "--runs"), default=10, help="CAVs per concept (default 10)")
    ap.add_argument("--null", type=_whole(3, "--null"), default=30, help="random concepts per size (default 30)")
    ap.add_argument("--labels", type=_whole(1, "--labels"), default=5, help="top labels tested per class and layer")
    ap.add_argument(
        "--scored", type=_whole(2, "--scored"), default=20, help="fresh scored images per class (default 20)"
    )
    ap.add_argument(
        "--controls",
        type=_whole(1, "--controls"),
        default=5,
        help="random-subset concepts per class and layer (default 5)",
    )
    ap.add_argument(
        "--curated",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also the oracle control: curated part images as the concept examples (inv_widgets.eval.curated; "
        "default off: about a third more time)",
    )
    ap.add_argument(
        "--csv",
        default=None,
        help="write the label rows and the control rows here (two files: <name>.labels.csv, <name>.controls.csv)",
    )
    ap.add_argument(
        "--maps",
        default="gradcam",
        choices=["published", "gradcam", "contrast"],
        help="the map type played (Session(maps=...); default gradcam)",
    )
    ap.add_argument(
        "--step",
        type=int,
        default=3,
        choices=range(6),
        help="Deep Reveal step of the concept examples, labels and controls (0..5: 2 to 30 %% of pixels; default 3)",
    )
    ap.add_argument(
        "--fill",
        default="black",
        choices=["black", "mean"],
        help="what the examples' hidden pixels show: black (default, the game's view) or the mean colour of the "
        "model's Normalize step",
    )
    args = ap.parse_args(argv)
    if not 0 <= args.noise <= 1:
        ap.error(f"--noise must be in [0, 1], got {args.noise}")
    r = evaluate_global(
        args.split,
        args.n,
        args.players,
        args.noise,
        point=args.layer_point,
        maps=args.maps,
        runs=args.runs,
        null=args.null,
        n_labels=args.labels,
        scored=args.scored,
        controls=args.controls,
        seed=args.seed,
        progress=not args.quiet,
        curated=args.curated,
        step=args.step,
        fill=args.fill,
    )
    print(report(r, args.seed))
    if args.csv:
        stem = str(args.csv).removesuffix(".csv")
        r["labels"].to_csv(f"{stem}.labels.csv", index=False)
        r["controls"].to_csv(f"{stem}.controls.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
