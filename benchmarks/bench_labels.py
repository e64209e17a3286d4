"""Benchmark: aggregate 10,000 synthetic game labels written through a real LabelStore file.

    python benchmarks/bench_labels.py [--labels 10000] [--model all-MiniLM-L6-v2] [--repeat 3]

Synthetic players label cluster maps of 10 classes. Each map shows one concept of its class (its
"expected word"); most labels are variants of that concept ("wheels", "round black tyres", typos),
some name another concept of the class, a few are noise ("something on the left"). 80 % of the guesses
are right. The script prints:

* the time to write the answers into a file store (one transaction per answer),
* the model load time (once per process),
* the aggregation time, median of ``--repeat`` runs, with the embedding cache emptied before each
  run ("cold": every distinct label and word is embedded again) and kept ("warm"),
* the share of maps whose best label (rank 1) is the expected word, and the share of label instances
  whose representative is the expected word of their concept.

``--all-distinct`` replaces every label by two made-up words: the worst case, where the time is
spent embedding ~10,000 distinct labels and their words.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inv_widgets.labels import LabelStore, MapKey  # noqa: E402
from inv_widgets.labels import aggregate as agg  # noqa: E402

# class -> concept word -> variants a player might type
CONCEPTS = {
    "car": {
        "wheel": ["wheel", "wheels", "round wheels", "black wheels", "the wheels", "wheel rims",
                  "wheels and tyres", "front wheel"],
        "window": ["window", "windows", "glass windows", "side windows", "tinted window",
                   "car window glass"],
        "headlight": ["headlight", "headlights", "bright headlights", "front headlights",
                      "headlight lamps"],
    },
    "church": {
        "spire": ["spire", "tall spire", "pointed spire", "the spire on top", "church spire",
                  "spires"],
        "cross": ["cross", "a cross", "cross on the roof", "golden cross", "crosses"],
        "arch": ["arch", "arches", "arched windows", "stone arch", "gothic arches"],
    },
    "dog": {
        "ear": ["ear", "ears", "floppy ears", "long ears", "droopy ears", "fluffy ears"],
        "nose": ["nose", "black nose", "wet nose", "the nose", "dog nose"],
        "fur": ["fur", "curly fur", "brown fur", "fur texture", "fluffy fur"],
    },
    "fish": {
        "fin": ["fin", "fins", "dorsal fin", "tail fin", "fins of the fish"],
        "scale": ["scale", "scales", "shiny scales", "silver scales", "fish scales"],
        "gill": ["gill", "gills", "gill cover", "the gills"],
    },
    "golf ball": {
        "dimple": ["dimple", "dimples", "small dimples", "dimpled surface", "dimples pattern"],
        "grass": ["grass", "green grass", "grass field", "short grass"],
    },
    "parachute": {
        "canopy": ["canopy", "the canopy", "big canopy", "colourful canopy", "canopy fabric"],
        "sky": ["sky", "blue sky", "clear sky", "the sky behind"],
        "rope": ["rope", "ropes", "suspension ropes", "thin ropes", "lines and ropes"],
    },
    "chain saw": {
        "blade": ["blade", "the blade", "long blade", "metal blade", "cutting blade"],
        "chain": ["chain", "chains", "metal chain", "saw chain", "chain teeth"],
        "handle": ["handle", "handles", "orange handle", "grip handle"],
    },
    "french horn": {
        "bell": ["bell", "the bell", "brass bell", "flared bell", "wide bell"],
        "valve": ["valve", "valves", "rotary valves", "valve keys"],
        "tube": ["tube", "tubes", "coiled tubes", "brass tubing", "curved tubes"],
    },
    "gas pump": {
        "nozzle": ["nozzle", "nozzles", "fuel nozzle", "pump nozzle", "the nozzle"],
        "hose": ["hose", "hoses", "black hose", "rubber hose", "fuel hose"],
        "display": ["display", "price display", "digital display", "screen display"],
    },
    "cassette player": {
        "button": ["button", "buttons", "play buttons", "small buttons", "row of buttons"],
        "tape": ["tape", "tapes", "cassette tape", "magnetic tape", "tape reels"],
        "speaker": ["speaker", "speakers", "speaker grill", "round speaker"],
    },
}
NOISE = ["something on the left", "maybe", "the most typical", "like the previous one", "?!",
         "idk", "it is there", "upper right"]


def typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def nonsense(rng: random.Random) -> str:
    """A two-word label of made-up words: every label distinct (the worst case for embedding)."""
    return " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 9)))
                    for _ in range(2))


def make_labels(path: Path, n_labels: int, seed: int = 0, all_distinct: bool = False):
    rng = random.Random(seed)
    classes = list(CONCEPTS)
    store = LabelStore(path)
    expected: dict[MapKey, str] = {}
    maps = []
    for image in range(max(1, n_labels // 200)):
        cls_idx = image % len(classes)
        cls = classes[cls_idx]
        for layer in ("block4_conv3", "block5_conv3"):
            for j, concept in enumerate(CONCEPTS[cls]):
                key = MapKey("synthetic-vgg", f"img{image:04d}", cls_idx, layer, [j * 10, j * 10 + 1])
                expected[key] = concept
                maps.append((key, cls))
    written = 0
    answers = 0
    t0 = time.perf_counter()
    while written < n_labels:
        key, cls = rng.choice(maps)
        concept = expected[key]
        step = rng.choice([0, 0, 1, 1, 2, 2, 3, 4, 5])
        roll = rng.random()
        if roll < 0.8:
            outcome, guessed = "win", cls
        elif roll < 0.93:
            outcome, guessed = "lose", rng.choice([c for c in classes if c != cls])
        else:
            outcome, guessed = "resign", None
        labels = []
        for _ in range(min(rng.choice([1, 1, 2, 2, 3]), n_labels - written)):
            r = rng.random()
            if r < 0.75:
                text = rng.choice(CONCEPTS[cls][concept])
            elif r < 0.9:
                other = rng.choice(list(CONCEPTS[cls]))
                text = rng.choice(CONCEPTS[cls][other])
            else:
                text = rng.choice(NOISE)
            if rng.random() < 0.1:
                words = text.split()
                k = rng.randrange(len(words))
                words[k] = typo(words[k], rng)
                text = " ".join(words)
            if rng.random() < 0.2:
                text = text.capitalize() + rng.choice(["", "!", ".", " :)"])
            if all_distinct:
                text = nonsense(rng)
            labels.append(text)
        store.record_answer(f"player{rng.randrange(60)}", key, guessed, cls, outcome, step, labels)
        written += len(labels)
        answers += 1
    write_s = time.perf_counter() - t0
    return store, expected, write_s, answers, classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=int, default=10_000)
    ap.add_argument("--model", default=agg.DEFAULT_MODEL)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--all-distinct", action="store_true",
                    help="worst case: every label is two made-up words (the expected-word shares "
                         "are then meaningless)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store, expected, write_s, answers, classes = make_labels(
            Path(tmp) / "bench.db", args.labels, all_distinct=args.all_distinct)
        n = len(store.labels())
        print(f"wrote {n} labels in {answers} answers to a file store in {write_s:.2f} s "
              f"({1000 * write_s / answers:.2f} ms per answer)")

        t0 = time.perf_counter()
        embedder = agg._Embedder(args.model)
        print(f"model: {embedder.kind} {embedder.name} loaded in {time.perf_counter() - t0:.2f} s")

        cold, warm = [], []
        result = None
        for _ in range(args.repeat):
            agg.clear_embedding_cache()
            t0 = time.perf_counter()
            result = agg.aggregate_labels(store, class_names=classes, model=args.model,
                                          progress=False)
            cold.append(time.perf_counter() - t0)
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            agg.aggregate_labels(store, class_names=classes, model=args.model, progress=False)
            warm.append(time.perf_counter() - t0)

        distinct = store.labels()["text"].nunique()
        print(f"{n} labels ({distinct} distinct as typed, {result.attrs['n_noise']} noise), "
              f"{len(expected)} maps")
        print(f"aggregation, cold embedding cache: median {statistics.median(cold):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in cold)})")
        print(f"aggregation, warm embedding cache: median {statistics.median(warm):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in warm)})")

        best = result[result["rank"] == 1]
        hits = sum(expected[agg.MapKey.from_row(r)] == r["label"] for _, r in best.iterrows())
        print(f"maps whose best label is the expected word: {hits}/{len(best)} "
              f"= {100 * hits / max(1, len(best)):.1f} %")
        # label instances: does the representative of a concept's variants equal the concept?
        per_label = result.groupby("label")["frequency"].sum().sort_values(ascending=False)
        words = {w for c in CONCEPTS.values() for w in c}
        share = per_label[per_label.index.isin(words)].sum() / max(1, per_label.sum())
        print(f"label instances whose representative is one of the expected words: {100 * share:.1f} %")
        print("most frequent representatives:", ", ".join(per_label.index[:15]))


if __name__ == "__main__":
    main()
