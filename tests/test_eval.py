"""Evaluation metrics and the simulated labeller, on hand-made masks where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from inv_widgets.demo import CLASS_PART_VOCABULARY, CLASS_PARTS
from inv_widgets.eval.parts import PartMasks, map_part_scores, random_maps, specific_found, truth_groups
from inv_widgets.eval.simulate import NOISE_LABELS, SimulatedPlayer, dominant_part, truth_part


def masks():
    a = np.zeros((32, 32), bool)
    a[2:10, 2:10] = True
    b = np.zeros((32, 32), bool)
    b[20:30, 20:30] = True
    return {"wheels": a, "body": b}


def test_map_part_scores_mass_share_and_pointing():
    m = masks()
    parts = PartMasks(m, tolerance=0)
    maps = np.stack(
        [
            m["wheels"].astype(np.float32),  # all mass on wheels
            0.5 * m["wheels"] + 0.5 * m["body"],  # split, peak on wheels (first max)
            np.zeros((32, 32), np.float32),
        ]
    )
    maps[2, 0, 31] = 1.0  # peak in the background
    share, on = map_part_scores(maps, parts)
    np.testing.assert_allclose(share[0], [1.0, 0.0])
    np.testing.assert_allclose(share[1], [64 / 164, 100 / 164])
    assert on[0].tolist() == [True, False] and on[2].tolist() == [False, False]
    # a tolerance lets a peak just outside the part count
    near = np.zeros((1, 32, 32), np.float32)
    near[0, 11, 5] = 1.0
    assert not map_part_scores(near, PartMasks(m, tolerance=0))[1].any()
    assert map_part_scores(near, PartMasks(m, tolerance=2))[1][0, 0]


def test_specific_recall_needs_the_parts_size_of_top_pixels_mostly_inside_it():
    m = masks()
    parts = PartMasks(m, tolerance=0)
    tight = m["wheels"].astype(np.float32)[None]  # the wheels' 64 pixels are the map's top 64
    broad = (0.5 + 0.5 * m["wheels"] + 0.4 * m["body"]).astype(np.float32)[None]  # body: 100 px, top 100 spill
    flat = np.ones((1, 32, 32), np.float32)
    assert specific_found(tight, parts).tolist() == [True, False]
    assert specific_found(broad, parts).tolist() == [True, False]  # top 100 pixels: 64 wheels + 36 body: < 50 %
    assert not specific_found(flat, parts).any()  # a map that covers everything finds no part
    assert specific_found(np.concatenate([tight, m["body"].astype(np.float32)[None]]), parts).all()


def test_truth_grouping_puts_channels_with_the_part_their_peak_lies_on():
    m = masks()
    feats = np.zeros((4, 8, 8), np.float32)
    feats[0, 1, 1] = feats[1, 1, 2] = 1.0  # peak on the wheels (top left)
    feats[2, 6, 6] = 1.0  # on the body (bottom right)
    feats[3, 0, 7] = 1.0  # on no part
    groups = truth_groups(feats, PartMasks(m, tolerance=0), (32, 32))
    assert groups[0] == groups[1] and len({groups[0], groups[2], groups[3]}) == 3


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

    exp = inv.Session(small_cnn, small_images, maps="published").explain(0)  # random groups merge as published
    for name in exp.layers:
        lr = exp[name]
        cl = lr.cut(k=3)
        maps, w = random_groups(lr, cl, Identity())
        np.testing.assert_allclose(maps, cl.maps, atol=1e-6)
        np.testing.assert_allclose(w, cl.weights, rtol=1e-6)
        rmaps, rw = random_groups(lr, cl, np.random.default_rng(0))
        assert rmaps.shape == cl.maps.shape and rmaps.min() >= 0 and rmaps.max() <= 1
        assert np.isclose(rw.sum(), cl.weights.sum())  # the same channels, regrouped


def test_dominant_part_reads_the_salient_pixels_and_the_truth_reads_them_all():
    m = masks()
    cmap = 0.2 * m["body"] + 1.0 * m["wheels"]
    assert dominant_part(cmap.astype(np.float32), m) == "wheels"
    assert dominant_part(np.zeros((32, 32), np.float32), {}) is None
    # the truth weighs every pixel's mass above the map's mean: a broad, moderate response on the larger part
    # outweighs a stronger one on the smaller part, which fills the game's first 8 % of pixels
    graded = np.linspace(0.75, 0.65, 32 * 32).reshape(32, 32)  # no ties at the game's threshold
    broad = (graded * m["body"] + 0.9 * m["wheels"]).astype(np.float32)
    assert dominant_part(broad, m) == "wheels" and truth_part(broad, m) == "body"
    assert truth_part(np.zeros((32, 32), np.float32), m) is None and truth_part(cmap, {}) is None


def reveal_on(mask):
    return [mask.astype(np.float32)] * 6


def test_player_guesses_from_a_telling_part_and_names_it():
    m = masks()
    p = SimulatedPlayer("a", CLASS_PARTS, CLASS_PART_VOCABULARY, noise=0.0, slip=0.0, seed=1)
    ans = p.play(reveal_on(m["wheels"]), m, "car")  # only cars have wheels
    assert (ans.guess, ans.outcome, ans.step) == ("car", "win", 0)
    assert 1 <= len(ans.labels) <= 3
    assert all(lab in CLASS_PART_VOCABULARY["car"]["wheels"] for lab in ans.labels)


def test_after_a_wrong_guess_a_player_names_parts_of_the_class_it_guessed():
    m = masks()
    wrong = 0
    for seed in range(40):
        q = SimulatedPlayer("w", CLASS_PARTS, CLASS_PART_VOCABULARY, noise=0.0, slip=0.0, seed=seed)
        ans = q.play(reveal_on(m["body"]), {"body": m["body"]}, "car")  # car or snowman: a coin toss
        if ans.outcome == "lose":
            wrong += 1
            phrases = {ph for parts in CLASS_PART_VOCABULARY[ans.guess].values() for ph in parts}
            assert set(ans.labels) <= phrases and ans.guess == "snowman"
    assert wrong > 0


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
    maps point at most of an image's parts, far above chance; random groups of the same channels and the
    ground-truth grouping are measured on the same images, and the gains are paired per image."""
    from inv_widgets.eval.parts import check_targets, evaluate_parts, gains, report, table

    df = evaluate_parts("dev", 6, progress=False, draws=1)
    assert set(df.method) == {"published", "published/random-groups", "truth", "truth/random-groups", "Grad-CAM"}
    pub = df[df.method == "published"]
    assert set(pub.image) == set(range(6)) and pub.pointing.between(0, 1).all() and pub.specific.between(0, 1).all()
    t = table(df, "pointing").set_index(["layer", "method"])["figure"]
    best = max((t[layer, "published"].value, layer) for layer in set(df.layer))[1]
    assert t[best, "published"].value >= 0.6 and t[best, "published"].lo <= t[best, "published"].value
    g = gains(df)
    assert {"pointing", "specific"} == set(g) and len(g["specific"]["per_layer"]) == 8
    assert [what for what, _, _ in check_targets(g)][0].startswith("specific-recall gain")
    assert "split dev (6 images" in report(df)


def test_simulated_label_session_end_to_end(tmp_path):
    """Simulated players -> real SQLite store -> Sentence-BERT aggregation: most maps get the right name."""
    from inv_widgets.eval.labels import evaluate_labels
    from inv_widgets.labels import LabelStore

    path = tmp_path / "labels.sqlite"
    r = evaluate_labels(n_images=4, players=2, noise=0.2, store_path=path, progress=False, timing_labels=10**9)
    assert r["maps"] > 20 and r["integrity"] == []
    assert "minilm" in r["embedding"].lower()  # the default label model (a static distillation of MiniLM)
    assert r["named"].value > 0.3  # a random vocabulary word would name the true part far less often
    assert r["named"].lo <= r["named"].value <= r["named"].hi
    # the part most players named, read back from the store, and how often the aggregation names it
    assert r["recovered"].value > 0.6
    t = r["table"]
    assert set(t["players_part"].dropna()) <= {p for parts in CLASS_PARTS.values() for p in parts}
    assert r["players_right"].value == pytest.approx(t.groupby("image")["players_right"].mean().mean())
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

    evaluate_parts(n=2, progress=True, draws=1)
    err = capsys.readouterr().err
    assert "eval parts" in err and "2/2" in err and ("img/s" in err or "s/img" in err)
    assert "\r  image" not in err
    evaluate_parts(n=1, progress=False, draws=1)
    assert capsys.readouterr().err == ""
    from inv_widgets.eval.faithfulness import evaluate_faithfulness

    evaluate_faithfulness(n=2, curves=False, progress=True, repeats=1)
    err = capsys.readouterr().err
    assert "eval faithfulness" in err and "2/2" in err and "\r  image" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["parts", "--n", "-5"],
        ["sanity", "--n", "x"],
        ["global", "--split", "train"],
        ["faithfulness", "--random", "0"],
        ["nope"],
    ],
)
def test_bad_evaluation_arguments_get_one_line_not_a_traceback(argv, capsys):
    from inv_widgets.eval import main

    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err and "Traceback" not in err


def test_the_cli_passes_eval_arguments_through(capsys):
    from inv_widgets.cli import main

    try:
        status = main(["eval", "parts", "--n", "-5"])
    except SystemExit as e:
        status = e.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.endswith("must be a whole number >= 1, got -5 (see --help)")
    assert len(err.splitlines()) == 1


def test_auroc_and_part_kinds_of_the_global_evaluation():
    from inv_widgets.eval.global_ import label_kind
    from inv_widgets.eval.stats import auroc

    a = auroc([3.0, 2.0, 1.0], [0.0, -1.0])
    assert a.value == 1.0 and a.lo <= a.value <= a.hi
    assert auroc([0.0], [0.0]).value == 0.5 and auroc([0.0], [1.0]).value == 0.0
    assert np.isnan(auroc([], [1.0]).value)
    assert label_kind("tyres", "car") == ("part", "wheels") and label_kind("texture", "car") == ("noise", None)
    assert label_kind("sail", "car") == ("other", None)


def test_occlusion_importance_paints_a_part_out_with_the_images_own_background(demo):
    from inv_widgets.eval.global_ import occlusion_importance

    model, data = demo
    imp = occlusion_importance(model, data, range(10), data.classes)
    assert set(imp) <= set(data.classes) and len(imp) == 10  # ten images: every class once
    for cls, parts in imp.items():
        assert set(parts) <= set(CLASS_PARTS[cls])
    # removing a part costs the class logit something on average (the model looks at the object)
    assert np.mean([d for parts in imp.values() for d in parts.values()]) > 0


def test_curated_part_images_hold_only_the_part_and_the_background(demo):
    from inv_widgets.eval.curated import curated_examples, curated_image

    _, data = demo
    i = 3
    masks = data.part_masks(i)
    part = max(masks, key=lambda p: masks[p].sum())
    img, bg, m = curated_image(data, i, part), data.background(i), masks[part]
    assert np.array_equal(img[~m], bg[~m]) and np.array_equal(img[m], data.array(i)[m])
    assert not np.array_equal(img, data.array(i))  # the rest of the object is gone
    ex = curated_examples(data, [i])
    assert set(ex) == {(i, p) for p, mk in masks.items() if mk.sum() >= 30}
    assert np.allclose(ex[(i, part)].numpy(), data.to_tensor(img).numpy())


def test_the_curated_control_families_are_tested_and_reported(demo):
    import pandas as pd

    import inv_widgets as inv
    from inv_widgets.eval.curated import CURATED_FAMILIES, curated_checks, curated_tests
    from inv_widgets.eval.global_ import control_row, occlusion_importance, summary

    model, data = demo
    session = inv.Session(model, data)
    layer = session.layers[-1]
    scored = {}
    for i in range(60, 90):
        scored.setdefault(data.class_name(i), []).append(i)
    importance = occlusion_importance(model, data, range(60, 90), data.classes)
    found = curated_tests(
        session,
        data,
        [layer],
        range(60),
        scored,
        importance,
        runs=2,
        null=4,
        min_examples=3,
        max_examples=6,
        controls=2,
        seed=0,
        progress=False,
    )
    ctl = pd.DataFrame([control_row(*f) for f in found])
    ctl["p_holm"] = ctl["p"]
    assert set(ctl["family"]) <= set(CURATED_FAMILIES)
    assert {"curated random subset", "curated absent part", "curated important part"} <= set(ctl["family"])
    assert (ctl.loc[ctl["family"] == "curated random subset", "n"] >= 3).all()
    assert np.isfinite(ctl["t"]).mean() > 0.9 and set(ctl["direction"]) <= {"above", "below", ""}
    # the scored images are never sources of curated examples: every scored image of the class counts
    assert (ctl["n_scored"] == ctl["cls"].map(lambda c: len(scored[c]))).all()
    for cls, g in ctl[ctl["family"].str.endswith("important part")].groupby("cls"):
        assert set(g["concept"]) <= set(CLASS_PARTS[cls])
    absent = ctl[ctl["family"] == "curated absent part"]
    assert all(p not in CLASS_PARTS[c] for c, p in zip(absent["cls"], absent["concept"]))
    labels = pd.DataFrame(columns=["note", "kind", "p_raw", "p_value", "direction", "t", "p_tcav"])
    s = summary(dict(labels=labels, controls=ctl)).set_index("family")
    for fam in CURATED_FAMILIES:
        assert f"control: {fam}" in s.index
    assert s.loc["control: curated random subset", "n"] == (ctl["family"] == "curated random subset").sum()
    checks = [what for what, _, _ in curated_checks(summary(dict(labels=labels, controls=ctl)), ctl)]
    assert "curated: each class's most important part significant above >= 0.5" in checks
    assert any(w.startswith("curated important parts significant-above") for w in checks)


def test_the_global_evals_step_and_fill_reach_the_label_tests_and_the_controls(monkeypatch):
    import inv_widgets.concepts as concepts
    import inv_widgets.concepts.calibrated as calibrated
    from inv_widgets.eval import global_

    seen = {"concept_test": [], "reveal_inputs": []}
    real_test, real_reveal = concepts.concept_test, calibrated.reveal_inputs

    def spy_test(*a, **kw):
        seen["concept_test"].append((kw.get("step", 3), kw.get("fill", "black")))
        return real_test(*a, **kw)

    def spy_reveal(session, keys, step, transform=None, fill="black"):
        seen["reveal_inputs"].append((step, fill))
        return real_reveal(session, keys, step, transform, fill)

    monkeypatch.setattr(concepts, "concept_test", spy_test)
    monkeypatch.setattr(calibrated, "reveal_inputs", spy_reveal)
    small = dict(players=2, runs=2, null=3, n_labels=2, scored=2, tcav_layers=1, min_examples=2, max_examples=4)
    with pytest.warns(UserWarning):
        r = global_.evaluate_global("dev", 20, controls=1, progress=False, step=5, fill="mean", **small)
    assert seen["concept_test"] == [(5, "mean")]
    # the label tests' spaces and the controls' shared reveal images: every one at the step and fill asked for
    assert len(seen["reveal_inputs"]) >= 1 and set(seen["reveal_inputs"]) == {(5, "mean")}
    assert len(r["controls"]) and "Deep Reveal step 5 (mean fill)" in global_.report(r)
    # the command line reaches evaluate_global; its defaults are today's step 3, black
    got = {}
    monkeypatch.setattr(global_, "evaluate_global", lambda *a, **kw: got.update(kw) or r)
    assert global_.main(["--quiet", "--step", "1", "--fill", "mean"]) == 0
    assert (got["step"], got["fill"]) == (1, "mean")
    global_.main(["--quiet"])
    assert (got["step"], got["fill"]) == (3, "black")


def test_a_reveal_fill_shows_the_normalize_mean_where_the_map_hides(demo):
    import inv_widgets as inv
    from inv_widgets.concepts.calibrated import reveal_inputs
    from inv_widgets.engine.maps import reveal_mask

    model, data = demo
    session = inv.Session(model, data)
    cl = session.explain(0)[session.layers[-1]].cut()
    key = cl.key(0)
    black, mean = (reveal_inputs(session, [key], 1, fill=f)[key].numpy() for f in ("black", "mean"))
    mask = reveal_mask(cl.maps_lowres[0], data.array(0).shape[:2], 1)
    hidden, shown = mask == 0, mask == 1
    assert hidden.any() and shown.any()
    # hidden pixels: black, or the Normalize step's mean colour (model input 0 to the rounding of uint8)
    assert np.allclose(black[:, hidden], ((0 - np.float32(data.mean)) / np.float32(data.std))[:, None], atol=1e-5)
    assert np.abs(mean[:, hidden]).max() < 0.02
    assert np.array_equal(black[:, shown], mean[:, shown])  # the revealed pixels are the image's either way
    assert np.array_equal(cl.reveal(0, 1), cl.reveal(0, 1, None))  # no fill: the game's view, to the bit
    with pytest.raises(ValueError, match="fill must be one of"):
        reveal_inputs(session, [key], 1, fill="blur")
