"""Do global explanations name the parts, and does TCAV agree? Ground truth on the embedded default.

    python -m inv_widgets.eval global [--images 100] [--players 8] [--noise 0.2] [--runs 10] [--csv out.csv]

1. Simulated players (inv_widgets.eval.simulate) label every cluster map (default cut, every layer) of
   ``--images`` held-out parts images through a real SQLite LabelStore; the labels are aggregated with
   Sentence-BERT and the global explanation is built.
2. Per layer: the share of classes whose top label names one of that class's parts (a word of the part
   vocabulary of one of its parts), the share with such a label within the top 5, and the share whose top label
   names the part that most of the class's cluster maps at that layer show (their dominant part).
3. TCAV (inv.concept_test) at the two deepest layers, top 5 labels per class, with both random baselines:
   "other_labels" (the default: revealed maps of other labels from other images, mostly other classes) and
   "same_class" (the class's own maps with other labels). Printed: the share of (class, top label) significant
   (and significant with a TCAV score above random); the share of noise-label concepts significant. Noise
   labels ("texture", "no idea", ...) are rarely any map's best label, so a noise concept is the maps on which
   players typed that noise word (any rank), the most frequent noise word per class and layer.
4. Ground-truth concepts: for each class, part and layer, fresh images of the class (never labelled) masked to that
   one true part, against random sets of images masked to one part of another class ("other_labels") or to
   another part of the same class ("same_class"); the same captum TCAV test on the same class images. Printed:
   the share significant and above random, and how often the label concept and the ground-truth concept of the
   part it names agree (both significant and above random, or neither).
Every random step is seeded: the figures are the same on every run.
"""
from __future__ import annotations

import argparse
import re
from functools import lru_cache
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["evaluate_global", "label_kind", "main"]

BASELINES = ("other_labels", "same_class")


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


def _names_part(label: str, cls: str, part: str | None) -> bool:
    class_parts, words, _, lemmatize = _vocab()
    return part is not None and lemmatize(str(label).lower()) in words[(cls, part)]


def _gt_images(data, n_per_class: int, min_pixels: int = 30):
    """class -> part -> up to n masked images (image x part mask, black elsewhere), from ``data`` (fresh
    images never labelled)."""
    per = {}
    for i in range(len(data)):
        cls = data.classes[int(data[i][1])]
        img = np.asarray(data.image(i).convert("RGB"))
        for part, mask in data.part_masks(i).items():
            if mask.sum() >= min_pixels:
                per.setdefault(cls, {}).setdefault(part, []).append((img * mask[..., None]).astype(np.uint8))
    return {c: {p: v[:n_per_class] for p, v in parts.items()} for c, parts in per.items()}


def _noise_explanation(df, ge, session, weights, noise_words):
    """A global explanation whose label of a map is the noise word players typed on it most (any rank)."""
    from ..concepts import GlobalExplanation

    lemmas = df["label"].map(lambda lab: _vocab()[3](str(lab).lower()))
    noisy = df[lemmas.isin(noise_words)].sort_values("score", ascending=False, kind="stable")
    noisy = noisy.drop_duplicates(["model", "image_id", "target", "layer", "members"]).assign(rank=1)
    return GlobalExplanation.from_labels(noisy, session, layers=ge.layers, weights=weights)


def _gt_tests(runner, session, ge, gt, layers, runs, n, min_examples, seed, baseline):
    import torch

    from ..concepts.tcav import random_sets

    rng = np.random.default_rng(seed)
    src = f"{n}|{sorted((c, p, len(v)) for c, ps in gt.items() for p, v in ps.items())}"

    def load(examples):
        return [gt[c][p][k] for _, _, c, p, k in examples]

    rows = []
    for name in ge.classes:
        if name not in gt or not ge.n_images(name):
            continue
        ids = sorted(set(ge.maps.loc[ge.maps["class"] == name, "image_id"]))
        inputs = torch.stack([session.input(session.index_of(i)) for i in ids])
        for layer in layers:
            for part, ims in gt[name].items():
                if len(ims) < min_examples:  # a part rarely visible enough (e.g. a small nose)
                    continue
                if baseline == "other_labels":
                    others = [(c, p, k) for c, parts in gt.items() if c != name for p, v in parts.items()
                              for k in range(len(v))]
                else:
                    others = [(name, p, k) for p, v in gt[name].items() if p != part for k in range(len(v))]
                if len(others) < min_examples:
                    continue
                size = min(n, max(min_examples, len(others) // 2))  # random sets that differ from each other
                picks = random_sets(len(others), size, runs + 1, rng)
                if picks is None:  # too few other examples for runs + 1 different random sets
                    continue
                sets = [runner.concept([("gt", src, *others[q]) for q in pick], load, tag="gt-random")
                        for pick in picks]
                concept = runner.concept([("gt", src, name, part, k) for k in range(len(ims))], load, tag="gt")
                res = runner.test(layer, inputs, ge.classes.index(name), concept, sets)
                up = res["p_value"] < 0.05 and np.mean(res["concept"]) > np.mean(res["random"])
                rows.append(dict(cls=name, layer=layer, part=part, n=len(ims), baseline=baseline,
                                 tcav=float(np.mean(res["concept"])), random=float(np.mean(res["random"])),
                                 p=res["p_value"], significant=res["p_value"] < 0.05, up=bool(up)))
    for layer in layers:
        runner.forget_activations(layer=layer)
    return pd.DataFrame(rows)


def _share(frame, col) -> tuple[float, int]:
    return (float(frame[col].mean()) if len(frame) else float("nan")), len(frame)


def evaluate_global(n_images: int = 100, players: int = 8, noise: float = 0.2, *, runs: int = 10,
                    n_labels: int = 5, gt_images: int = 400, gt_examples: int = 20, tcav_layers: int = 2,
                    min_examples: int = 5, seed: int = 0, store_path=None, progress: bool = True) -> dict:
    import inv_widgets as inv

    from ..concepts import GlobalExplanation, concept_test
    from ..concepts.tcav import TCAVRunner
    from .play import play

    model, data = inv.demo.load(n=n_images)
    session = inv.Session(model, data, cache_size=16)
    tmp = tempfile.TemporaryDirectory()
    store = inv.LabelStore(store_path or Path(tmp.name) / "labels.sqlite")
    t0 = time.perf_counter()
    truth: dict = {}
    weights = play(session, store, range(n_images), players=players, noise=noise, seed=seed, truth=truth,
                   progress=progress)
    play_s = time.perf_counter() - t0
    df = inv.aggregate_labels(store, class_names=session.classes, progress=False)
    store.close()
    ge = GlobalExplanation.from_labels(df, session, weights=weights)

    # ---- do the top labels name the class's parts, and the part its maps show? ----
    naming = []
    for layer in ge.layers:
        for name in ge.classes:
            top = ge.top(name, layer, 5)
            if top.empty:
                continue
            at = ge.maps[(ge.maps["class"] == name) & (ge.maps["layer"] == layer)]
            parts = pd.Series([truth.get(inv.MapKey.from_row(r)) for _, r in at.iterrows()]).dropna()
            main_part = parts.value_counts().idxmax() if len(parts) else None
            kinds = [label_kind(lab, name)[0] for lab in top["label"]]
            naming.append(dict(layer=layer, cls=name, top1=kinds[0] == "part", top5="part" in kinds,
                               main=_names_part(top["label"].iloc[0], name, main_part), label=top["label"].iloc[0],
                               main_part=main_part))
    naming = pd.DataFrame(naming)

    layers = ge.layers[-int(tcav_layers):]
    _, _, noise_words, _ = _vocab()
    noise_ge = _noise_explanation(df, ge, session, weights, noise_words)
    fresh = inv.demo.PartsDataset(n=gt_images, seed=data.seed, offset=n_images)
    gt = _gt_images(fresh, gt_examples)
    cav_dir = Path(tmp.name) / "cav"
    out = dict(n_images=n_images, players=players, noise=noise, runs=runs, maps=len(ge.maps), play_s=play_s,
               layers=ge.layers, tcav_layers=layers, naming=naming,
               by_layer=naming.groupby("layer", sort=False)[["top1", "top5", "main"]].mean().reindex(ge.layers),
               tcav={}, gt={}, summary={})
    t1 = time.perf_counter()
    for baseline in BASELINES:
        tc = concept_test(session, ge, layers=layers, n_labels=n_labels, runs=runs, seed=seed, random=baseline,
                          min_examples=min_examples, save_path=cav_dir, progress=progress, attach=False)
        tc["rank"] = [int(np.flatnonzero(ge.top(c, la, 10_000)["label"] == lab)[0]) + 1
                      for c, la, lab in zip(tc["class"], tc["layer"], tc["label"])]
        kinds = [label_kind(lab, c) for lab, c in zip(tc["label"], tc["class"])]
        tc["kind"], tc["part"] = [k for k, _ in kinds], [p for _, p in kinds]
        tc["up"] = tc["significant"] & (tc["tcav_score"] > tc["random_score"])
        nz = concept_test(session, noise_ge, layers=layers, n_labels=1, runs=runs, seed=seed, random=baseline,
                          min_examples=min_examples, save_path=cav_dir, progress=progress, attach=False)
        runner = TCAVRunner(session, cav_dir, seed=seed)
        gtd = _gt_tests(runner, session, ge, gt, layers, runs, gt_examples, min_examples, seed, baseline)
        tested = tc[tc["note"] == ""]
        top1 = tested[tested["rank"] == 1]
        up = {(r.cls, r.layer, r.part): r.up for r in gtd.itertuples()}
        pairs = [(bool(r.up), up[(r.cls, r.layer, r.part)]) for r in tested.rename(columns={"class": "cls"}).itertuples()
                 if r.kind == "part" and (r.cls, r.layer, r.part) in up]
        pairs1 = [(bool(r.up), up[(r.cls, r.layer, r.part)])
                  for r in top1.rename(columns={"class": "cls"}).itertuples()
                  if r.kind == "part" and (r.cls, r.layer, r.part) in up]
        nz_t = nz[nz["note"] == ""]
        out["tcav"][baseline], out["gt"][baseline] = tc.assign(baseline=baseline), gtd
        out["summary"][baseline] = dict(
            top1_significant=_share(top1, "significant"), top1_up=_share(top1, "up"),
            untested_top1=int(((tc["rank"] == 1) & (tc["note"] != "")).sum()),
            labels_up=_share(tested, "up"),
            gt_significant=_share(gtd, "significant") if len(gtd) else (float("nan"), 0),
            gt_up=_share(gtd, "up") if len(gtd) else (float("nan"), 0),
            agreement=(float(np.mean([a == b for a, b in pairs])) if pairs else float("nan"), len(pairs)),
            agreement_top1=(float(np.mean([a == b for a, b in pairs1])) if pairs1 else float("nan"), len(pairs1)),
            noise_significant=_share(nz_t, "significant"), noise_untested=int((nz["note"] != "").sum()),
        )
    out["tcav_s"] = time.perf_counter() - t1
    tmp.cleanup()
    return out


def _fmt(pair) -> str:
    value, n = pair
    return f"{value:.3f} (n = {n})" if n else "– (n = 0)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inv_widgets.eval global", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100, help="held-out images labelled (default 100)")
    ap.add_argument("--players", type=int, default=8)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--runs", type=int, default=10, help="TCAV random runs (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", default=None, help="write the TCAV tables of the labels (both baselines) here")
    args = ap.parse_args(argv)
    if args.images < 100:
        print(f"note: {args.images} images (the evaluation is specified for at least 100)", file=sys.stderr)
    r = evaluate_global(args.images, args.players, args.noise, runs=args.runs, seed=args.seed)
    print(f"{r['maps']} labelled cluster maps of {r['n_images']} held-out images, {r['players']} simulated players at "
          f"{r['noise']:.0%} noise (play + store: {r['play_s']:.0f} s; all TCAV tests: {r['tcav_s']:.0f} s)")
    print("share of classes whose top label names one of the class's parts (top 1 / within the top 5) / names the "
          "part most of the class's maps at the layer show:")
    for layer, v in r["by_layer"].iterrows():
        print(f"  {layer:<28} {v['top1']:.2f} / {v['top5']:.2f} / {v['main']:.2f}")
    print(f"TCAV at {', '.join(r['tcav_layers'])}, {r['runs']} random runs, two-sided t-test, alpha = 0.05; "
          "random baseline: other_labels (default) | same_class")
    s = r["summary"]
    rows = [("(class, top label) significant", "top1_significant"),
            ("(class, top label) significant and above random", "top1_up"),
            ("all tested labels significant and above random", "labels_up"),
            ("ground-truth part concepts significant", "gt_significant"),
            ("ground-truth part concepts significant and above random", "gt_up"),
            ("label and ground-truth concept agree, tested part labels", "agreement"),
            ("label and ground-truth concept agree, top labels", "agreement_top1"),
            ("noise-label concepts significant", "noise_significant")]
    for text, key in rows:
        print(f"  {text + ':':<58} {_fmt(s['other_labels'][key]):>18} | {_fmt(s['same_class'][key])}")
    print(f"  top labels with too few maps to test: {s['other_labels']['untested_top1']}; noise concepts with too "
          f"few maps: {s['other_labels']['noise_untested']}")
    if args.csv:
        pd.concat(r["tcav"].values(), ignore_index=True).to_csv(args.csv, index=False)
        print(f"TCAV tables written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
