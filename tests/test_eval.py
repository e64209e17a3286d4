"""Evaluation metrics and the simulated labeller, on hand-made masks where the answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from inv_widgets.demo import CLASS_PART_VOCABULARY, CLASS_PARTS
from inv_widgets.eval.parts import PartMasks, map_part_scores, random_maps
from inv_widgets.eval.simulate import NOISE_LABELS, SimulatedPlayer, dominant_part


def masks():
    a = np.zeros((32, 32), bool)
    a[2:10, 2:10] = True
    b = np.zeros((32, 32), bool)
    b[20:30, 20:30] = True
    return {"wheels": a, "body": b}


def test_map_part_scores_mass_share_and_pointing():
    m = masks()
    parts = PartMasks(m, tolerance=0)
    maps = np.stack([m["wheels"].astype(np.float32),                 # all mass on wheels
                     0.5 * m["wheels"] + 0.5 * m["body"],              # split, peak on wheels (first max)
                     np.zeros((32, 32), np.float32)])
    maps[2, 0, 31] = 1.0                                              # peak in the background
    share, on = map_part_scores(maps, parts)
    np.testing.assert_allclose(share[0], [1.0, 0.0])
    np.testing.assert_allclose(share[1], [64 / 164, 100 / 164])
    assert on[0].tolist() == [True, False] and on[2].tolist() == [False, False]
    # a tolerance lets a peak just outside the part count
    near = np.zeros((1, 32, 32), np.float32)
    near[0, 11, 5] = 1.0
    assert not map_part_scores(near, PartMasks(m, tolerance=0))[1].any()
    assert map_part_scores(near, PartMasks(m, tolerance=2))[1][0, 0]


def test_random_maps_are_a_low_baseline():
    rng = np.random.default_rng(0)
    r = random_maps(4, (32, 32), rng)
    assert r.shape == (4, 32, 32) and r.min() == 0 and r.max() == 1
    share, _ = map_part_scores(r, PartMasks(masks()))
    assert share.max(1).mean() < 0.5  # no random map concentrates on one part


def test_random_groups_have_the_cuts_sizes_and_merge_like_cluster_maps(small_cnn, small_images):
    """Random channel groups: the same kept channels, the cut's group sizes, weighted and merged like cluster
    maps; with the shuffle left out they are the cut's own maps."""
    import inv_widgets as inv
    from inv_widgets.eval.parts import random_groups

    class Identity:
        def permutation(self, a):
            return np.asarray(a).copy()

    exp = inv.Session(small_cnn, small_images).explain(0)
    for name in exp.layers:
        lr = exp[name]
        cl = lr.cut(k=3)
        maps, w = random_groups(lr, cl, Identity())
        np.testing.assert_allclose(maps, cl.maps, atol=1e-6)
        np.testing.assert_allclose(w, cl.weights, rtol=1e-6)
        rmaps, rw = random_groups(lr, cl, np.random.default_rng(0))
        assert rmaps.shape == cl.maps.shape and rmaps.min() >= 0 and rmaps.max() <= 1
        assert np.isclose(rw.sum(), cl.weights.sum())  # the same channels, regrouped


def test_dominant_part_reads_the_salient_pixels():
    m = masks()
    cmap = 0.2 * m["body"] + 1.0 * m["wheels"]
    assert dominant_part(cmap.astype(np.float32), m) == "wheels"
    assert dominant_part(np.zeros((32, 32), np.float32), {}) is None


def reveal_on(mask):
    return [mask.astype(np.float32)] * 6


def test_player_guesses_from_a_telling_part_and_names_it():
    m = masks()
    p = SimulatedPlayer("a", CLASS_PARTS, CLASS_PART_VOCABULARY, noise=0.0, slip=0.0, seed=1)
    ans = p.play(reveal_on(m["wheels"]), m, "car")  # only cars have wheels
    assert (ans.guess, ans.outcome, ans.step) == ("car", "win", 0)
    assert 1 <= len(ans.labels) <= 3
    assert all(lab in CLASS_PART_VOCABULARY["car"]["wheels"] for lab in ans.labels)


def test_player_with_all_noise_types_noise_and_ambiguous_parts_need_more():
    m = masks()
    p = SimulatedPlayer("b", CLASS_PARTS, CLASS_PART_VOCABULARY, noise=1.0, slip=0.0, seed=2)
    ans = p.play(reveal_on(m["wheels"]), m, "car")
    assert all(lab in NOISE_LABELS for lab in ans.labels)
    # "body" belongs to car and snowman: the player reveals all six steps, then picks a candidate
    q = SimulatedPlayer("c", CLASS_PARTS, CLASS_PART_VOCABULARY, noise=0.0, slip=0.0, seed=3)
    ans = q.play(reveal_on(m["body"]), {"body": m["body"]}, "car")
    assert ans.step == 5 and ans.guess in ("car", "snowman")
    with pytest.raises(ValueError, match="noise"):
        SimulatedPlayer("d", CLASS_PARTS, CLASS_PART_VOCABULARY, noise=2.0)


def test_trained_demo_separates_parts_into_cluster_maps():
    """Issue 'embedded default', real structure: with the default recipe and cut some layer's cluster
    maps point at most of an image's parts, far above chance, on held-out images."""
    from inv_widgets.eval.parts import evaluate_parts

    df = evaluate_parts(n=12, recipes=("fast",), progress=False, draws=1)
    default = df[(df.method == "fast") & (df.cut == "suggested")].set_index("layer")
    chance = df[df.method == "random"].set_index("layer")
    groups = df[df.method == "fast/random-groups"].set_index("layer")
    assert list(groups.index) == list(default.index) and (groups.images == 12).all()
    np.testing.assert_allclose(groups.mean_k, default.mean_k)  # the cut's sizes
    best = default.recall_point.idxmax()
    assert default.recall_point[best] >= 0.6
    assert default.recall_point[best] > chance.recall_point[best] + 0.2
    assert default.purity[best] > chance.purity[best]


def test_simulated_label_session_end_to_end(tmp_path):
    """Simulated players -> real SQLite store -> Sentence-BERT aggregation: most maps get the right name."""
    from inv_widgets.eval.labels import evaluate_labels
    from inv_widgets.labels import LabelStore

    path = tmp_path / "labels.sqlite"
    r = evaluate_labels(n_images=4, players=2, noise=0.2, store_path=path, progress=False, timing_labels=10**9)
    assert r["maps"] > 20 and r["integrity"] == []
    assert r["embedding"].startswith("sentence-transformers")
    assert r["named_share"] > 0.5  # a random vocabulary word would name the dominant part far less often
    # the part most players named, read back from the store, and how often the aggregation names it
    assert r["named_players_share"] > 0.6
    t = r["table"]
    assert set(t["players_part"].dropna()) <= {p for parts in CLASS_PARTS.values() for p in parts}
    assert r["players_agree"] == pytest.approx((t["players_part"] == t["part"]).mean())
    with LabelStore(path) as store:  # every answer is in the store, under both players
        games = store.games()
        assert len(games) == r["answers"] and set(store.participants()["participant"]) == {"sim-0", "sim-1"}


def test_players_part_counts_phrases_of_parts_and_ignores_noise():
    import pandas as pd

    from inv_widgets import MapKey
    from inv_widgets.eval.labels import players_part

    vocab = {"car": {"wheels": ["tires", "wheel"], "body": ["car body"]}}
    key = MapKey("m", "img", 0, "l", "1,2")
    rows = [("tires",), ("Wheel",), ("car body",), ("no idea",), ("texture",), ("car body",), ("wheels",)]
    labels = pd.DataFrame([dict(key.as_dict(), true_class="car", text=t) for (t,) in rows])
    assert players_part(labels, vocab) == {key: "wheels"}  # 3 wheels phrases (any case) against 2, noise left out
    assert players_part(labels[labels.text.isin(["no idea"])], vocab) == {}


def test_evaluations_show_a_progress_bar_not_bare_carriage_returns(capsys):
    """Issue 14, item 13: tqdm (notebook or terminal), which also says the rate and the time left."""
    from inv_widgets.eval.parts import evaluate_parts

    evaluate_parts(n=2, recipes=("fast",), progress=True)
    err = capsys.readouterr().err
    assert "eval parts" in err and "2/2" in err and ("img/s" in err or "s/img" in err)
    assert "\r  image" not in err
    evaluate_parts(n=1, recipes=("fast",), progress=False)
    assert capsys.readouterr().err == ""
    from inv_widgets.eval.faithfulness import evaluate_faithfulness

    evaluate_faithfulness(n=2, curves=False, progress=True)
    err = capsys.readouterr().err
    assert "eval faithfulness" in err and "2/2" in err and "\r  image" not in err
