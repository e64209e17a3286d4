"""Do global explanations name the parts, and does TCAV agree? Ground truth on the embedded default.

    python -m inv_widgets.eval global [--images 100] [--players 8] [--noise 0.2] [--runs 10]

1. Simulated players (inv_widgets.eval.simulate) label every cluster map (default cut, every layer) of
   ``--images`` held-out parts images through a real SQLite LabelStore; the labels are aggregated with
   Sentence-BERT and the global explanation is built (GlobalExplanation.from_store).
2. Per layer: the share of classes whose top label names one of that class's parts (a word of the part
   vocabulary of one of its parts), and the share with such a label within the top 5.
3. TCAV (inv.concept_test) at the two deepest layers, top 5 labels per class and every noise label with
   enough maps: the share of (class, top label) significant; the share of noise-label concepts ("texture",
   "no idea", ...) significant.
4. Ground-truth concepts: for each class, part and layer, fresh images of the class (not the labelled ones)
   masked to that one true part, against random sets of other classes' images masked to one of their parts;
   the same TCAV test (captum, same runs, same class images). Printed: the share significant, and how often
   the label concept and the ground-truth concept of the part it names agree (both significant or both not).
Every random step is seeded: the figures are the same on every run.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["evaluate_global", "label_kind", "main"]


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


def _gt_images(data, n_per_class: int, min_pixels: int = 30):
    """class -> part -> up to n masked images (image x part mask, black elsewhere), and class -> list of
    (part, masked image) for the random sets; from ``data`` (fresh images never labelled)."""
    per = {}
    for i in range(len(data)):
        cls = data.classes[int(data[i][1])]
        img = np.asarray(data.image(i).convert("RGB"))
        for part, mask in data.part_masks(i).items():
            if mask.sum() >= min_pixels:
                per.setdefault(cls, {}).setdefault(part, []).append((img * mask[..., None]).astype(np.uint8))
    return {c: {p: v[:n_per_class] for p, v in parts.items()} for c, parts in per.items()}


def evaluate_global(n_images: int = 100, players: int = 8, noise: float = 0.2, *, runs: int = 10,
                    n_labels: int = 5, gt_images: int = 400, gt_examples: int = 20, tcav_layers: int = 2,
                    min_examples: int = 5, seed: int = 0, store_path=None, progress: bool = True) -> dict:
    import torch

    import inv_widgets as inv

    from ..concepts import GlobalExplanation, concept_test
    from ..concepts.tcav import TCAVRunner
    from .play import play

    model, data = inv.demo.load(n=n_images)
    session = inv.Session(model, data, cache_size=16)
    tmp = tempfile.TemporaryDirectory()
    store = inv.LabelStore(store_path or Path(tmp.name) / "labels.sqlite")
    t0 = time.perf_counter()
    weights = play(session, store, range(n_images), players=players, noise=noise, seed=seed, progress=progress)
    play_s = time.perf_counter() - t0
    ge = GlobalExplanation.from_store(store, session, weights=weights)
    store.close()

    # ---- do the top labels name the class's parts? ----
    naming = []
    for layer in ge.layers:
        for name in ge.classes:
            top = ge.top(name, layer, 5)
            if top.empty:
                continue
            kinds = [label_kind(lab, name)[0] for lab in top["label"]]
            naming.append(dict(layer=layer, cls=name, top1=kinds[0] == "part", top5="part" in kinds,
                               label=top["label"].iloc[0]))
    naming = pd.DataFrame(naming)

    # ---- TCAV of the labels ----
    layers = ge.layers[-int(tcav_layers):]
    _, _, noise_words, _ = _vocab()
    present = sorted(set(ge.maps["label"]) & noise_words)
    t1 = time.perf_counter()
    tc = concept_test(session, ge, layers=layers, n_labels=n_labels, runs=runs, labels=present, seed=seed,
                      min_examples=min_examples, save_path=Path(tmp.name) / "cav", progress=progress)
    tcav_s = time.perf_counter() - t1
    tc["rank"] = [int(np.flatnonzero(ge.top(c, la, 10_000)["label"] == lab)[0]) + 1
                  for c, la, lab in zip(tc["class"], tc["layer"], tc["label"])]
    tc["kind"], tc["part"] = zip(*[label_kind(lab, c) for lab, c in zip(tc["label"], tc["class"])]) if len(tc) \
        else ([], [])
    tested = tc[tc["note"] == ""]

    # ---- TCAV of ground-truth concepts ----
    fresh = inv.demo.PartsDataset(n=gt_images, seed=data.seed, offset=n_images)
    gt = _gt_images(fresh, gt_examples)
    runner = TCAVRunner(session, Path(tmp.name) / "cav", seed=seed)
    rng = np.random.default_rng(seed)
    src = f"{fresh!r}|{gt_examples}"

    def load_gt(examples):
        return [gt[c][p][k] for _, _, c, p, k in examples]

    gt_rows = []
    for name in ge.classes:
        if name not in gt or not ge.n_images(name):
            continue
        ids = sorted(set(ge.maps.loc[ge.maps["class"] == name, "image_id"]))
        inputs = torch.stack([session.input(session.index_of(i)) for i in ids])
        others = [(c, p, k) for c, parts in gt.items() if c != name for p, ims in parts.items()
                  for k in range(len(ims))]
        for layer in layers:
            sets = []
            for _ in range(runs + 1):
                pick = sorted(rng.choice(len(others), gt_examples, replace=False).tolist())
                sets.append(runner.concept([("gt", src, *others[q]) for q in pick], load_gt, tag="gt-random"))
            for part, ims in gt[name].items():
                if len(ims) < min_examples:  # a part rarely visible enough (e.g. a small nose)
                    gt_rows.append(dict(cls=name, layer=layer, part=part, n=len(ims), tcav=np.nan, random=np.nan,
                                        p=np.nan, significant=False, positive=False, tested=False))
                    continue
                concept = runner.concept([("gt", src, name, part, k) for k in range(len(ims))], load_gt, tag="gt")
                res = runner.test(layer, inputs, ge.classes.index(name), concept, sets)
                gt_rows.append(dict(cls=name, layer=layer, part=part, n=len(ims),
                                    tcav=float(np.mean(res["concept"])), random=float(np.mean(res["random"])),
                                    p=res["p_value"], significant=res["p_value"] < 0.05,
                                    positive=res["p_value"] < 0.05 and np.mean(res["concept"]) > np.mean(res["random"]),
                                    tested=True))
                runner.forget_activations([concept])
            runner.forget_activations(sets)
    for layer in layers:
        runner.forget_activations(layer=layer)
    gt_df = pd.DataFrame(gt_rows)
    gt_tested = gt_df[gt_df["tested"]] if len(gt_df) else gt_df
    # a verdict: the concept significantly pushes the class's logit up (significant and above random)
    gt_up = {(r.cls, r.layer, r.part): bool(r.positive) for r in gt_tested.itertuples()}
    named = tested.rename(columns={"class": "cls"})
    named = named.assign(up=named["significant"] & (named["tcav_score"] > named["random_score"]))
    agree = [(bool(r.up), gt_up[(r.cls, r.layer, r.part)]) for r in named.itertuples()
             if r.kind == "part" and (r.cls, r.layer, r.part) in gt_up]
    top1 = tested[tested["rank"] == 1]
    top1_parts = [(bool(r.up), gt_up[(r.cls, r.layer, r.part)]) for r in named[named["rank"] == 1].itertuples()
                  if r.kind == "part" and (r.cls, r.layer, r.part) in gt_up]
    noise_t = tested[tested["kind"] == "noise"]
    tmp.cleanup()
    return dict(
        n_images=n_images, players=players, noise=noise, runs=runs, maps=len(ge.maps), play_s=play_s,
        tcav_s=tcav_s, layers=ge.layers, tcav_layers=layers, naming=naming, tcav=tc, gt=gt_df,
        by_layer=naming.groupby("layer", sort=False)[["top1", "top5"]].mean().reindex(ge.layers),
        top1_significant=(float(top1["significant"].mean()) if len(top1) else float("nan"), len(top1)),
        top1_positive=float((top1["significant"] & (top1["tcav_score"] > top1["random_score"])).mean())
        if len(top1) else float("nan"),
        untested_top1=int(((tc["rank"] == 1) & (tc["note"] != "")).sum()),
        gt_significant=(float(gt_tested["significant"].mean()) if len(gt_tested) else float("nan"), len(gt_tested)),
        gt_positive=float(gt_tested["positive"].mean()) if len(gt_tested) else float("nan"),
        agreement=(float(np.mean([a == b for a, b in agree])) if agree else float("nan"), len(agree)),
        agreement_top1=(float(np.mean([a == b for a, b in top1_parts])) if top1_parts else float("nan"),
                        len(top1_parts)),
        noise_significant=(float(noise_t["significant"].mean()) if len(noise_t) else float("nan"), len(noise_t)),
        noise_untested=int(((tc["kind"] == "noise") & (tc["note"] != "")).sum()),
    )


def _share(pair) -> str:
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
    ap.add_argument("--csv", default=None, help="write the TCAV table of the labels here")
    args = ap.parse_args(argv)
    if args.images < 100:
        print(f"note: {args.images} images (the evaluation is specified for at least 100)", file=sys.stderr)
    r = evaluate_global(args.images, args.players, args.noise, runs=args.runs, seed=args.seed)
    print(f"{r['maps']} labelled cluster maps of {r['n_images']} held-out images, {r['players']} simulated players at "
          f"{r['noise']:.0%} noise (play + store: {r['play_s']:.0f} s; TCAV of the labels: {r['tcav_s']:.0f} s)")
    print("share of classes whose top label names one of the class's parts (top 1 / within the top 5):")
    for layer, v in r["by_layer"].iterrows():
        print(f"  {layer:<28} {v['top1']:.2f} / {v['top5']:.2f}")
    print(f"TCAV at {', '.join(r['tcav_layers'])}, {r['runs']} random runs, two-sided t-test, alpha = 0.05:")
    print(f"  (class, top label) significant: {_share(r['top1_significant'])}; significant and above random: "
          f"{r['top1_positive']:.3f}; top labels with too few maps to test: {r['untested_top1']}")
    print(f"  ground-truth part concepts significant: {_share(r['gt_significant'])}; significant and above random: "
          f"{r['gt_positive']:.3f}")
    print(f"  label concept and ground-truth concept of the part it names agree (both significant and above random, "
          f"or neither): all tested part labels {_share(r['agreement'])}; top labels {_share(r['agreement_top1'])}")
    print(f"  noise-label concepts significant: {_share(r['noise_significant'])} "
          f"({r['noise_untested']} noise labels with too few maps to test)")
    if args.csv:
        r["tcav"].to_csv(args.csv, index=False)
        print(f"TCAV table written to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
