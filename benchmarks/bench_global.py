"""Benchmark: global explanations and TCAV.

    python benchmarks/bench_global.py [--maps 10000] [--repeat 5] [--images 100] [--skip-tcav]

1. **10,000 aggregated maps -> global explanation** (target <= 2 s on this CPU): a synthetic
   ``aggregate_labels`` table (10 classes x 8 layers, three ranked labels per map, a weight per map) goes
   through ``GlobalExplanation.from_labels``; also timed: ``weights=`` as a MapKey mapping instead of a column,
   every ``top`` and ``trends`` call of the explanation, and ``to_html`` without images. Medians of
   ``--repeat`` runs.
2. **TCAV, 10 classes x 2 layers x 5 labels x 10 runs on the demo model** (target <= 2 min on this CPU):
   simulated players label the two deepest layers of ``--images`` (300) held-out images through a real store
   (not timed), then ``inv.concept_test`` runs on a fresh Session (nothing cached) with an empty CAV folder;
   then once more, reusing the saved CAVs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import inv_widgets as inv  # noqa: E402
from inv_widgets import MapKey  # noqa: E402
from inv_widgets.concepts import GlobalExplanation  # noqa: E402

CLASSES = [f"class{c}" for c in range(10)]
LAYERS = [f"features.block{b}_conv{k}" for b in range(1, 5) for k in (1, 2)]
WORDS = ["wheel", "window", "roof", "door", "wall", "trunk", "leaf", "flame", "fin", "nose", "hat", "stem",
         "petal", "sail", "mast", "cap", "spot", "tower", "lantern", "rim", "hand", "face", "body", "hull"]
NOISE = ["colour", "texture", "shape", "edge", "pattern", "idea"]


def synthetic_aggregate(n_maps: int, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """An aggregate_labels-shaped table of ``n_maps`` cluster maps (3 ranked labels each) and their weights."""
    rng = np.random.default_rng(seed)
    per_image = 2
    n_img = max(1, n_maps // (len(LAYERS) * per_image))
    rows, weights = [], {}
    m = 0
    while m < n_maps:
        for img in range(n_img):
            target = img % len(CLASSES)
            vocab = WORDS[(3 * target) % len(WORDS):(3 * target) % len(WORDS) + 5] + NOISE
            for layer in LAYERS:
                for j in range(per_image):
                    if m >= n_maps:
                        break
                    members = ",".join(map(str, sorted(rng.choice(128, rng.integers(1, 12), replace=False))))
                    key = ("bench-model", f"img{img:05d}", target, layer, members)
                    weights[MapKey(*key)] = float(rng.uniform(1, 60))
                    labels = rng.choice(vocab, 3, replace=False)
                    scores = np.sort(rng.uniform(0.2, 6.0, 3))[::-1]
                    for rank, (lab, sc) in enumerate(zip(labels, scores), start=1):
                        rows.append((*key, str(lab), float(sc), int(rng.integers(1, 9)), float(rng.uniform(0, 5)),
                                     0, rank, 1, weights[MapKey(*key)]))
                    m += 1
            if m >= n_maps:
                break
    cols = ["model", "image_id", "target", "layer", "members", "label", "score", "frequency", "mean_step",
            "n_wrong", "rank", "n_maps", "weight"]
    return pd.DataFrame(rows, columns=cols), weights


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def bench_table(n_maps: int, repeat: int) -> None:
    df, weights = synthetic_aggregate(n_maps)
    no_col = df.drop(columns=["weight"])
    print(f"1. {n_maps:,} aggregated maps ({len(df):,} label rows, {df['image_id'].nunique():,} images, "
          f"{len(CLASSES)} classes x {len(LAYERS)} layers), median of {repeat}:")
    t_col, ge = timed(lambda: GlobalExplanation.from_labels(df, class_names=CLASSES, layers=LAYERS), repeat)
    print(f"   from_labels, weights in a column:   {t_col:6.3f} s   (target <= 2 s: {t_col / 2.0:.2f} of it)  -> {ge}")
    t_map, _ = timed(lambda: GlobalExplanation.from_labels(no_col, class_names=CLASSES, layers=LAYERS,
                                                           weights=weights), repeat)
    print(f"   from_labels, weights= a mapping:    {t_map:6.3f} s")
    t_top, _ = timed(lambda: [ge.top(c, layer) for c in CLASSES for layer in LAYERS], repeat)
    print(f"   top() of every class and layer ({len(CLASSES) * len(LAYERS)} calls): {t_top:6.3f} s")
    t_tr, _ = timed(lambda: [ge.trends(c) for c in CLASSES], repeat)
    print(f"   trends() of every class:            {t_tr:6.3f} s")
    t_html, page = timed(lambda: ge.to_html(), repeat)
    print(f"   to_html() without images:           {t_html:6.3f} s ({len(page) / 1e3:.0f} kB)")


def bench_tcav(n_images: int, players: int, runs: int, threads: int) -> None:
    from inv_widgets.eval.play import play

    model, data = inv.demo.load(n=n_images)
    setup = inv.Session(model, data, cache_size=4)
    layers = setup.layers[-2:]
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = inv.LabelStore(Path(tmp) / "labels.sqlite")
        weights = play(setup, store, range(n_images), players=players, layers=layers, progress=False)
        df = inv.aggregate_labels(store, class_names=data.classes, progress=False)
        store.close()
    print(f"2. TCAV on the demo model: {len(weights)} cluster maps of {n_images} images at {', '.join(layers)} "
          f"labelled by {players} simulated players ({time.perf_counter() - t:.0f} s, not timed)")
    session = inv.Session(model, data)  # fresh: no explanation cached
    ge = GlobalExplanation.from_labels(df, session, weights=weights)
    with tempfile.TemporaryDirectory() as cavs:
        t = time.perf_counter()
        res = inv.concept_test(session, ge, layers=layers, n_labels=5, runs=runs, save_path=cavs, progress=False,
                               threads=threads)
        cold = time.perf_counter() - t
        n_cavs = sum(1 for _ in Path(cavs).rglob("*.pkl"))
        size = sum(p.stat().st_size for p in Path(cavs).rglob("*")) / 2**20
        t = time.perf_counter()
        inv.concept_test(session, ge, layers=layers, n_labels=5, runs=runs, save_path=cavs, progress=False,
                         threads=threads)
        warm = time.perf_counter() - t
    tested = res[res["note"] == ""]
    print(f"   {len(res)} (class, layer, label) rows = 10 classes x 2 layers x 5 labels; {len(tested)} tested, "
          f"{len(res) - len(tested)} with fewer than 5 maps; {runs} random runs; {n_cavs} CAVs ({size:.0f} MB on disk)")
    print(f"   concept_test (threads={threads}), cold (reveals, activations, CAVs trained): {cold:6.1f} s   (target <= 120 s: "
          f"{cold / 120:.2f} of it; {cold / max(len(tested), 1):.2f} s per tested label)")
    print(f"   concept_test, again (CAVs loaded from save_path):                   {warm:6.1f} s")
    print(f"   significant: {int(tested['significant'].sum())} of {len(tested)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--images", type=int, default=300,
                    help="labelled demo images for TCAV (default 300: 30 per class, so that most top labels have "
                    "the 5 maps a test needs)")
    ap.add_argument("--players", type=int, default=8)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="concept_test(threads=...) (default 1)")
    ap.add_argument("--skip-tcav", action="store_true")
    args = ap.parse_args(argv)
    bench_table(args.maps, args.repeat)
    if not args.skip_tcav:
        bench_tcav(args.images, args.players, args.runs, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
