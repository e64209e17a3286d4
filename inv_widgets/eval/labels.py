"""Do aggregated labels name the parts? Simulated players through the real store and aggregation.

    python -m inv_widgets.eval labels [--split dev|test] [--n 60] [--players 8] [--noise 0.2]
                                      [--layer-point activation|conv]

Every cluster map (default cut, every layer) of the split's images, explained for the true class, is played by
each simulated player (``inv_widgets.eval.simulate``: after a wrong guess a player names parts of the class it
guessed); answers go through a real SQLite LabelStore; labels are aggregated with the default label model
(all-MiniLM-L6-v2 distilled into a static model, offline; ``--model all-MiniLM-L6-v2`` for the transformer
itself). Two questions, kept apart, each with a 95 % CI over images:

- **recovery**: how often a map's representative label names the part most of its players named (read back
  from the store): what the aggregation keeps of what people said;
- **truth**: how often the part most players named is the map's true part, and how often the representative
  label names it. The truth (``simulate.truth_part``) is read independently of what the players saw: the part
  holding most of the map's mass above its mean over all pixels at full resolution (the players name what the
  first revealed pixels show).

Also the aggregation time for 10,000 labels.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

__all__ = ["evaluate_labels", "main", "part_words", "players_part"]


def part_words(vocabulary: dict) -> dict[tuple[str, str], set[str]]:
    """(class, part) -> the lemmatised single words of every phrase a person might type for it."""
    from ..labels.text import lemmatize

    out = {}
    for cls, parts in vocabulary.items():
        for part, phrases in parts.items():
            words = {lemmatize(w) for ph in phrases + [part] for w in re.findall(r"\w+", ph.lower())}
            out[(cls, part)] = words
    return out


def players_part(labels: pd.DataFrame, vocabulary: dict) -> dict:
    """{MapKey: the part of the map's true class most of the players' labels on that map are phrases for} (noise
    labels, phrases of no part of the true class, left out; ties go to the part named first). What the players
    said, read back from the store: the aggregation can only name what the players named."""
    from ..labels import MapKey

    phrase = {
        (cls, ph.lower()): part
        for cls, parts in vocabulary.items()
        for part, phrases in parts.items()
        for ph in phrases + [part]
    }
    parts = [phrase.get((c, str(t).lower())) for c, t in zip(labels["true_class"], labels["text"])]
    named = labels.assign(part=parts).dropna(subset=["part"])
    out = {}
    for key, grp in named.groupby(list(MapKey._fields), sort=False):
        out[MapKey(*key)] = Counter(grp["part"]).most_common(1)[0][0]  # equal counts: the one named first
    return out


def evaluate_labels(
    n_images: int = 60,
    players: int = 8,
    noise: float = 0.2,
    *,
    split: str = "dev",
    point: str = "activation",
    maps: str = "gradcam",
    store_path=None,
    model_name: str | None = None,
    seed: int = 0,
    progress: bool = True,
    timing_labels: int = 10_000,
    layers=None,
) -> dict:
    import inv_widgets as inv

    from ..engine.stats import ci
    from ..labels import LabelStore, aggregate_labels
    from ..labels.embed import DEFAULT_MODEL
    from ..labels.text import lemmatize
    from .play import play
    from .stats import split_data

    model_name = model_name or DEFAULT_MODEL
    demo = inv.demo
    model, data = split_data(split, n_images)
    session = inv.Session(model, data, cache_size=2, layer_point=point, maps=maps)
    tmp = None
    if store_path is None:
        tmp = tempfile.TemporaryDirectory()
        store_path = Path(tmp.name) / "labels.sqlite"
    store = LabelStore(store_path)
    truth: dict = {}
    t0 = time.perf_counter()
    play(
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
    play_s = time.perf_counter() - t0
    labels_df = store.labels()
    t = time.perf_counter()
    agg = aggregate_labels(labels_df, class_names=data.classes, model=model_name, progress=False)
    agg_all_s = time.perf_counter() - t
    words = part_words(demo.CLASS_PART_VOCABULARY)
    said = players_part(labels_df, demo.CLASS_PART_VOCABULARY)
    index = {session.image_id(i): i for i in range(n_images)}
    best = agg[agg["rank"] == 1]
    rows = []
    for _, r in best.iterrows():
        key = inv.MapKey.from_row(r)
        if key not in truth:
            continue
        cls, part = session.classes[key.target], truth[key]
        word = lemmatize(str(r["label"]).lower())
        most = said.get(key)
        rows.append(
            dict(
                image=index.get(key.image_id, -1),
                layer=r["layer"],
                label=r["label"],
                truth=part,
                players_part=most,
                named=part is not None and word in words[(cls, part)],
                recovered=most is not None and word in words[(cls, most)],
                players_right=most is not None and most == part,
            )
        )
    res = pd.DataFrame(rows)
    timing = {}
    if len(labels_df) >= timing_labels:
        sample = labels_df.sample(n=timing_labels, random_state=seed)
        from ..labels.embed import clear_embedding_cache

        clear_embedding_cache()  # time the embeddings too (the model itself stays loaded)
        t = time.perf_counter()
        aggregate_labels(sample, class_names=data.classes, model=model_name, progress=False)
        timing["agg_10k_s"] = time.perf_counter() - t

    def per_image(frame, col):
        return ci(frame.groupby("image")[col].mean(), seed=seed) if len(frame) else ci([], seed=seed)

    layer_names = list(dict.fromkeys(session.layers if layers is None else layers))
    deep = set(layer_names[len(layer_names) // 2 :])
    deep_rows = res[res["layer"].isin(deep)] if len(res) else res
    out = dict(
        maps=len(truth),
        answers=len(store.games()),
        labels=len(labels_df),
        play_s=play_s,
        agg_all_s=agg_all_s,
        embedding=agg.attrs.get("embedding"),
        split=split,
        point=point,
        maps_type=maps,
        n_images=n_images,
        players=players,
        noise=noise,
        recovered=per_image(res, "recovered"),
        players_right=per_image(res, "players_right"),
        named=per_image(res, "named"),
        named_deep=per_image(deep_rows, "named"),
        deep_layers=[n for n in layer_names if n in deep],
        by_layer={layer: per_image(g, "named") for layer, g in res.groupby("layer", sort=False)} if len(res) else {},
        integrity=store.integrity_check(),
        table=res,
        **timing,
    )
    # the figures under their former names (recovery: named_players_share; truth: named_share)
    out.update(
        named_share=out["named"].value,
        named_share_deep=out["named_deep"].value,
        named_players_share=out["recovered"].value,
        players_agree=out["players_right"].value,
    )
    store.close()
    if tmp is not None:
        tmp.cleanup()
    return out


def report(r: dict) -> str:
    lines = [
        f"eval labels: split {r['split']} ({r['n_images']} images, explained for the true class), layer point "
        f"{r['point']}, {r['maps_type']} maps: {r['maps']} cluster maps, {r['answers']} answers, {r['labels']} "
        f"labels from {r['players']} "
        f"simulated players at {r['noise']:.0%} noise (play + store: {r['play_s']:.0f} s); embeddings: "
        f"{r['embedding']}; mean [95 % CI over images]",
        f"  recovery: the representative label names the part most players named: {r['recovered']}",
        f"  truth: the part most players named is the map's true part: {r['players_right']}",
        f"  truth: the representative label names the map's true part: {r['named']} (deeper half, "
        f"{r['deep_layers'][0].split('.')[-1]} .. {r['deep_layers'][-1].split('.')[-1]}: {r['named_deep']})",
        "  named share by layer: " + ", ".join(f"{k.split('.')[-1]} {v.fmt()}" for k, v in r["by_layer"].items()),
        f"  aggregation of all {r['labels']} labels: {r['agg_all_s']:.1f} s (includes loading the model)",
    ]
    if "agg_10k_s" in r:
        lines.append(
            f"  aggregation time for 10,000 labels: {r['agg_10k_s']:.1f} s (model loaded, embeddings computed)"
        )
    lines.append(f"  store integrity: {', '.join(r['integrity']) or 'ok'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from ._args import common_arguments, parser

    ap = parser("labels", __doc__)
    common_arguments(ap, n=60)
    ap.add_argument("--players", type=int, default=8)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--store", default=None, help="keep the SQLite store at this path (default: a temporary file)")
    ap.add_argument(
        "--model",
        default=None,
        help="label model: minilm-static (default), all-MiniLM-L6-v2, "
        "a sentence-transformers or model2vec name or folder",
    )
    ap.add_argument(
        "--maps",
        default="gradcam",
        choices=["published", "gradcam", "contrast"],
        help="the map type played (Session(maps=...); default gradcam)",
    )
    args = ap.parse_args(argv)
    if args.players < 1:
        ap.error(f"--players must be at least 1, got {args.players}")
    if not 0 <= args.noise <= 1:
        ap.error(f"--noise must be in [0, 1], got {args.noise}")
    r = evaluate_labels(
        args.n,
        args.players,
        args.noise,
        split=args.split,
        point=args.layer_point,
        maps=args.maps,
        store_path=args.store,
        model_name=args.model,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
