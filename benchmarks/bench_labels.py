"""Benchmark: the label store under 8 concurrent writers (SQLite and PostgreSQL), and the aggregation of
10,000 synthetic game labels written through a real LabelStore file.

    python benchmarks/bench_labels.py [--labels 10000] [--model all-MiniLM-L6-v2] [--repeat 3]
    python benchmarks/bench_labels.py --writers-only [--writers 8] [--answers 300] [--pg-url URL]
    python benchmarks/bench_labels.py --aggregation-only --all-distinct --labels 50000 --repeat 1

**Writers.** ``--writers`` processes each record ``--answers`` answers back to back into one store (the
worst case: no pause between answers) and time every ``record_answer``. Printed per backend: answers per
second, median, p99 and the longest single wait, and busy errors (``StoreBusyError``, timeout 5 s). SQLite
is a file in a temporary folder (``synchronous=FULL``); PostgreSQL is ``--pg-url`` or a throwaway server
started like the tests' (Debian's postgresql, default durability: fsync on).

**Aggregation.**
Synthetic players label cluster maps of 10 classes. Each map shows one concept of its class (its
"expected word"); most labels are variants of that concept ("wheels", "round black tyres", typos),
some name another concept of the class, a few are noise ("something on the left"). 80 % of the guesses
are right. The script prints:

* the time to write the answers into a file store (one transaction per answer),
* the model load time (once per process),
* the aggregation time, median of ``--repeat`` runs, with the embedding cache emptied before each
  run ("cold": every distinct label and word is embedded again) and kept ("warm"),
* the share of maps whose best label (rank 1) is the expected word, and the share of label instances
  whose representative is the expected word of their concept,
* the peak resident memory of the process during the cold aggregation, and the clustering scope used.

``--all-distinct`` replaces every label by two made-up words: the worst case, where the time is
spent embedding every distinct label and its words (``--labels 50000`` for the issue's figure). The baseline of
the same run: all-MiniLM-L6-v2 (the transformer the default static model is distilled from) embeds a sample of
the same strings, and its time for all of them is extrapolated from its rate (``--baseline-sample``; 0: none).

**Quality of the embedding** (``--pairs``): ``benchmarks/label_pairs.tsv`` holds label pairs that should be
merged (the same part, as players would say it) and pairs that should not (other parts of the same object,
unrelated words). For the default model and all-MiniLM-L6-v2, each pair's cosine distance is compared with the
aggregation's ``distance_threshold`` (0.55: at most this far is one concept); printed: the share of pairs decided
right, the share of should-merge pairs merged and of should-not pairs kept apart, and the ROC AUC of the
similarity, each with a 95 % bootstrap interval. Nothing is tuned on these pairs.
``--fake-embeddings`` replaces Sentence-BERT by random unit vectors of its size (384), seeded by the
text: what is left is the time and memory of cleaning, clustering and scoring alone. ``--scope`` forces
the clustering scope (``class``: every label of a guessed class together, as before ``map`` existed).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inv_widgets.labels import LabelStore, MapKey  # noqa: E402
from inv_widgets.labels import aggregate as agg  # noqa: E402
from inv_widgets.labels import embed  # noqa: E402

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


# --------------------------------------------------------------------------------------------------
# concurrent writers


def _writer(target: str, worker: int, n: int, barrier, out: str) -> None:
    from inv_widgets.labels import StoreBusyError

    store = LabelStore(target, timeout=5.0)
    rng = random.Random(worker)
    waits, busy = [], 0
    barrier.wait()
    for i in range(n):
        key = MapKey("bench", f"img{worker}-{i}", i % 10, f"layer{i % 4}", [i % 7, 7 + worker])
        labels = [f"w{worker} label {i} {j}" for j in range(1 + i % 3)]
        t0 = time.perf_counter()
        try:
            store.record_answer(f"player{rng.randrange(30)}", key, "car", "car", "win", i % 6, labels)
        except StoreBusyError:
            busy += 1
        waits.append(time.perf_counter() - t0)
    store.close()
    Path(out).write_text(" ".join(f"{w:.6f}" for w in waits) + f"\n{busy}\n")


def _quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def bench_writers(target: str, name: str, writers: int, answers: int, tmp: Path) -> dict:
    LabelStore(target).close()  # the schema exists before the writers start
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["inv_widgets.labels.store"])
    barrier = ctx.Barrier(writers + 1)
    outs = [tmp / f"{name}-{w}.txt" for w in range(writers)]
    procs = [ctx.Process(target=_writer, args=(target, w, answers, barrier, str(outs[w]))) for w in range(writers)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    waits, busy = [], 0
    for out in outs:
        first, second = out.read_text().splitlines()[:2]
        waits += [float(x) for x in first.split()]
        busy += int(second)
    stored = len(LabelStore(target).games())
    res = dict(backend=name, answers=len(waits), stored=stored, busy=busy, per_s=len(waits) / wall,
               median_ms=1000 * statistics.median(waits), p99_ms=1000 * _quantile(waits, 0.99),
               max_ms=1000 * max(waits))
    print(f"{name:<11} {writers} writers x {answers} answers: {res['per_s']:.0f} answers/s, wait per answer "
          f"median {res['median_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, longest {res['max_ms']:.0f} ms; "
          f"busy errors: {busy}; stored {stored}/{writers * answers}", flush=True)
    return res


def run_writers(args) -> None:
    print(f"-- {args.writers} concurrent writers, back to back (machine: {os.cpu_count()} cores) --", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bench_writers(str(tmp / "writers.sqlite"), "sqlite", args.writers, args.answers, tmp)
        if args.pg_url:
            bench_writers(args.pg_url, "postgresql", args.writers, args.answers, tmp)
            return
        sys.path.insert(0, str(ROOT / "tests"))
        import pg_server

        reason = pg_server.missing_reason()
        if reason:
            print(f"postgresql: skipped ({reason}; or pass --pg-url)")
            return
        with pg_server.PgServer(fsync=True) as server:
            bench_writers(server.create_database("bench"), "postgresql", args.writers, args.answers, tmp)


# --------------------------------------------------------------------------------------------------
# aggregation


def read_pairs(path: Path = ROOT / "benchmarks" / "label_pairs.tsv") -> list[tuple[int, str, str]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            merge, a, b = line.split("\t")
            rows.append((int(merge), a, b))
    return rows


def pair_quality(model, threshold: float = 0.55, boot: int = 2000, seed: int = 0) -> dict:
    """How ``model`` decides the pairs of label_pairs.tsv (cleaned as the aggregation cleans labels)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from inv_widgets.labels.text import clean_label

    pairs = read_pairs()
    y = np.array([m for m, _, _ in pairs])
    a = [clean_label(x, []) for _, x, _ in pairs]
    b = [clean_label(x, []) for _, _, x in pairs]
    vec = embed._Embedder(model).embed(a + b)
    sim = np.array([float(vec[p] @ vec[q]) for p, q in zip(a, b)])
    merged = (1.0 - sim) <= threshold

    def stats(idx):
        yy, mm, ss = y[idx], merged[idx], sim[idx]
        return ((mm == yy).mean(), mm[yy == 1].mean(), (~mm[yy == 0]).mean(),
                roc_auc_score(yy, ss) if 0 < yy.sum() < len(yy) else np.nan)

    point = stats(np.arange(len(y)))
    rng = np.random.default_rng(seed)
    draws = np.array([stats(rng.integers(0, len(y), len(y))) for _ in range(boot)])
    lo, hi = np.nanpercentile(draws, 2.5, axis=0), np.nanpercentile(draws, 97.5, axis=0)
    names = ["decided right", "should-merge merged", "should-not kept apart", "ROC AUC"]
    return {"n": len(y), "n_merge": int(y.sum()),
            **{n: (float(p), float(a_), float(b_)) for n, p, a_, b_ in zip(names, point, lo, hi)}}


def run_pairs() -> None:
    for model in (embed.DEFAULT_MODEL, embed.MINILM):
        q = pair_quality(model)
        print(f"label pairs ({q['n']}: {q['n_merge']} should merge), model {model}, distance threshold 0.55:")
        for name in ("decided right", "should-merge merged", "should-not kept apart", "ROC AUC"):
            p, lo, hi = q[name]
            print(f"  {name:22s} {p:.3f} (95 % CI {lo:.3f}-{hi:.3f})")


def baseline_rate(texts: list[str], n: int) -> tuple[float, int]:
    """Seconds per string of all-MiniLM-L6-v2 on ``n`` of ``texts`` (the cleaned labels and words of the run)."""
    import random as _random

    sample = _random.Random(0).sample(texts, min(n, len(texts)))
    emb = embed._Embedder(embed.MINILM)
    emb.embed(["warm up"])
    embed.clear_embedding_cache()
    t0 = time.perf_counter()
    emb.embed(sample)
    return (time.perf_counter() - t0) / max(1, len(sample)), len(sample)


class FakeEmbeddings:
    """Random unit vectors (384 numbers, as all-MiniLM-L6-v2), the same for the same text."""

    def encode(self, texts, **kwargs):
        import zlib

        import numpy as np

        out = np.empty((len(texts), 384), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i] = np.random.default_rng(zlib.crc32(t.encode("utf-8"))).standard_normal(384)
        return out


class _PeakRSS:
    """The largest resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self):
        import psutil

        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=int, default=10_000)
    ap.add_argument("--model", default=embed.DEFAULT_MODEL)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--all-distinct", action="store_true",
                    help="worst case: every label is two made-up words (the expected-word shares "
                         "are then meaningless)")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--answers", type=int, default=300, help="answers per writer")
    ap.add_argument("--pg-url", default=None, help="a PostgreSQL database for the writers (default: a throwaway "
                                                   "server, when Debian's postgresql is installed)")
    ap.add_argument("--fake-embeddings", action="store_true",
                    help="random vectors instead of Sentence-BERT: time cleaning, clustering and scoring alone")
    ap.add_argument("--scope", default="auto", choices=["auto", "class", "map"])
    ap.add_argument("--writers-only", action="store_true")
    ap.add_argument("--aggregation-only", action="store_true")
    ap.add_argument("--pairs", action="store_true", help="the embedding's quality on label_pairs.tsv first")
    ap.add_argument("--pairs-only", action="store_true")
    ap.add_argument("--baseline-sample", type=int, default=2000,
                    help="strings embedded by all-MiniLM-L6-v2 in the same run, as the baseline (0: none)")
    args = ap.parse_args()
    if args.pairs or args.pairs_only:
        run_pairs()
    if args.pairs_only:
        return

    if not args.aggregation_only:
        run_writers(args)
    if args.writers_only:
        return
    print(f"-- aggregation of {args.labels} labels --", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        store, expected, write_s, answers, classes = make_labels(
            Path(tmp) / "bench.db", args.labels, all_distinct=args.all_distinct)
        n = len(store.labels())
        print(f"wrote {n} labels in {answers} answers to a file store in {write_s:.2f} s "
              f"({1000 * write_s / answers:.2f} ms per answer)")

        model = FakeEmbeddings() if args.fake_embeddings else args.model
        t0 = time.perf_counter()
        embedder = embed._Embedder(model)
        print(f"model: {embedder.kind} {embedder.name} loaded in {time.perf_counter() - t0:.2f} s")

        cold, warm = [], []
        result = None
        for r in range(args.repeat):
            embed.clear_embedding_cache()
            with _PeakRSS() as mem:
                t0 = time.perf_counter()
                result = agg.aggregate_labels(store, class_names=classes, model=model,
                                              progress=False, scope=args.scope)
                cold.append(time.perf_counter() - t0)
            if r == 0:
                print(f"peak resident memory during the cold aggregation: {mem.peak / 2**30:.2f} GiB "
                      f"({mem.start / 2**30:.2f} GiB before it); clustering scope: {result.attrs['scope']}",
                      flush=True)
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            agg.aggregate_labels(store, class_names=classes, model=model, progress=False, scope=args.scope)
            warm.append(time.perf_counter() - t0)

        distinct = store.labels()["text"].nunique()
        print(f"{n} labels ({distinct} distinct as typed, {result.attrs['n_noise']} noise), "
              f"{len(expected)} maps")
        print(f"aggregation, cold embedding cache: median {statistics.median(cold):.2f} s "
              f"(runs: {', '.join(f'{t:.2f}' for t in cold)})")
        if args.baseline_sample and not args.fake_embeddings and model != embed.MINILM:
            from inv_widgets.labels.text import clean_label, lemmatize

            labels = store.labels()
            names = sorted(set(classes) | set(labels["true_class"].astype(str)))
            texts = list(dict.fromkeys(clean_label(t, names) for t in labels["text"].astype(str)))
            texts = [t for t in texts if t]
            strings = texts + sorted({lemmatize(w) for t in texts for w in t.split()})
            per, m = baseline_rate(strings, args.baseline_sample)
            embed_s = statistics.median(cold) - statistics.median(warm)
            print(f"baseline, the same run: all-MiniLM-L6-v2 embeds {m} of the {len(strings)} strings at "
                  f"{1000 * per:.2f} ms each: {per * len(strings):.0f} s for all of them, against "
                  f"{max(embed_s, 0.0):.1f} s of embedding here (cold minus warm): "
                  f"{per * len(strings) / max(embed_s, 1e-3):.0f}x")
        print(f"aggregation, warm embedding cache (cleaning, clustering, scoring): median "
              f"{statistics.median(warm):.2f} s (runs: {', '.join(f'{t:.2f}' for t in warm)})")

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
