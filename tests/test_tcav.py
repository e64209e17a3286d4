"""TCAV with captum: a tiny model whose answer is known, then concept_test on a few demo images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import inv_widgets as inv
from inv_widgets.concepts.tcav import TCAVRunner, ttest_p


class RedGreen(nn.Module):
    """logit 0 = mean red, logit 1 = mean green, read off a 1x1 convolution 'feat' (channel 0 red, 1 green)."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.feat.weight.zero_()
            self.feat.weight[0, 0] = 1.0
            self.feat.weight[1, 1] = 1.0
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        a = self.pool(self.feat(x)).flatten(1)
        return torch.stack([a[:, 0] - a[:, 1], a[:, 1] - a[:, 0]], 1)


def patches(rng, n, channel=None, size=8):
    """Images with a bright square of one colour channel (or of random colours) on dark noise."""
    out = []
    for _ in range(n):
        img = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
        y, x = rng.integers(0, size - 3, 2)
        colour = np.zeros(3, np.uint8)
        if channel is None:
            colour = rng.integers(0, 256, 3).astype(np.uint8)
        else:
            colour[channel] = 230
        img[y : y + 4, x : x + 4] = colour
        out.append(img)
    return out


@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    model = RedGreen().eval()
    session = inv.Session(model, patches(rng, 6, 0), class_names=["red", "green"])
    return session, rng


def test_ttest_matches_scipy_and_handles_no_spread():
    from scipy.stats import ttest_ind

    a, b = [0.9, 1.0, 0.8, 1.0], [0.5, 0.4, 0.7, 0.5]
    assert ttest_p(a, b) == pytest.approx(ttest_ind(a, b).pvalue)
    assert ttest_p([1, 1, 1], [0, 0, 0]) == 0.0 and ttest_p([1, 1], [1, 1]) == 1.0
    with pytest.raises(ValueError, match="at least 2 runs"):
        ttest_p([1.0], [0.0, 1.0])


def pool():
    """Example id -> image: 12 red, 12 green, 40 random-colour patches."""
    rng = np.random.default_rng(1)
    images = {("red", k): im for k, im in enumerate(patches(rng, 12, 0))}
    images.update({("green", k): im for k, im in enumerate(patches(rng, 12, 1))})
    images.update({("any", k): im for k, im in enumerate(patches(rng, 40))})
    return images


def concepts(runner, images, asked=None):
    def load(ids):
        if asked is not None:
            asked.extend(ids)
        return [images[i] for i in ids]

    rng = np.random.default_rng(5)
    red = runner.concept([("red", k) for k in range(12)], load)
    green = runner.concept([("green", k) for k in range(12)], load)
    randoms = [runner.concept([("any", int(k)) for k in rng.choice(40, 12, replace=False)], load) for _ in range(11)]
    return red, green, randoms


@pytest.mark.filterwarnings("ignore:numpy.core is deprecated:DeprecationWarning")
def test_tcav_finds_the_concept_the_logit_reads_and_reuses_saved_cavs(tiny, tmp_path):
    session, rng = tiny
    images = pool()
    runner = TCAVRunner(session, tmp_path, seed=0)
    asked = []
    red, green, randoms = concepts(runner, images, asked)
    inputs = torch.stack([session.input(i) for i in range(len(session))])  # red images, explained as "red"
    r = runner.test("feat", inputs, 0, red, randoms)
    g = runner.test("feat", inputs, 0, green, randoms)
    assert len(r["concept"]) == len(r["random"]) == 10
    # the red logit rises along "red" for every image, falls along "green"; random directions go both ways
    assert r["concept"] == [1.0] * 10 and g["concept"] == [0.0] * 10
    assert 0.0 < np.mean(r["random"]) < 1.0
    assert r["p_value"] < 0.05 and g["p_value"] < 0.05  # two-sided: both differ from random
    assert 0.5 < r["cav_accuracy"] <= 1.0
    # each example went through the model once, although the random sets share examples
    assert sorted(asked, key=repr) == sorted(set(asked), key=repr)
    # the scores are captum's: its stock TCAV.interpret gives the same, to the bit (the CAVs are saved: no retraining)
    from captum.concept import TCAV
    from captum.concept._utils.common import concepts_to_str

    from inv_widgets.concepts.captum_tcav import _sets

    sets = _sets(red, randoms) + _sets(green, randoms)
    ours = runner._for_layer("feat").interpret(inputs, sets, target=0)
    stock = TCAV.interpret(runner._for_layer("feat"), inputs, sets, target=0)
    assert sorted(ours) == sorted(stock) == sorted({concepts_to_str(s) for s in sets})
    for k in stock:
        for kind in ("sign_count", "magnitude"):
            assert torch.equal(ours[k]["feat"][kind], stock[k]["feat"][kind]), (k, kind)
    assert [float(ours[concepts_to_str(s)]["feat"]["sign_count"][0]) for s in sets[10:20]] == r["random"]
    assert runner.concept([("red", k) for k in reversed(range(12))], None) is red  # a set: order does not matter
    n_examples = len(set(asked))
    # the CAVs are saved (captum's save_path) and a second runner reuses them: same scores, nothing retrained
    cavs = sorted(p for p in tmp_path.rglob("*.pkl"))
    assert len(cavs) == 30  # 10 [red, R_k], 10 [green, R_k], 10 [R_k, R_k-1]
    stamps = {p: os.stat(p).st_mtime_ns for p in cavs}
    asked = []
    again = TCAVRunner(session, tmp_path, seed=0)
    red2, _, rnd2 = concepts(again, images, asked)
    assert again.has_cavs("feat", red2, rnd2)
    r2 = again.test("feat", inputs, 0, red2, rnd2)
    assert r2["concept"] == r["concept"] and r2["random"] == r["random"] and r2["p_value"] == r["p_value"]
    assert asked == []  # no example was even computed
    assert {p: os.stat(p).st_mtime_ns for p in cavs} == stamps
    # another seed is another classifier: its CAVs are not mixed up with these
    assert not TCAVRunner(session, tmp_path, seed=1).has_cavs("feat", red2, rnd2)
    # the activations captum stored were only needed to train: gone; the examples' activations stay in memory
    # for the layer until the caller lets them go
    assert not list((tmp_path / "av").rglob("*.pt"))
    assert len(runner._acts) == n_examples
    runner.forget_activations(layer="feat")
    assert not runner._acts


def test_the_model_is_left_as_it_was(tiny, tmp_path):
    session, _ = tiny
    model = session.model
    model.train()
    runner = TCAVRunner(session, tmp_path)
    c, _, rs = concepts(runner, pool())
    rs = rs[:3]
    runner.test("feat", torch.stack([session.input(0)]), 0, c, rs)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert not model.feat._forward_hooks and not model.feat._forward_pre_hooks
    with pytest.raises(ValueError, match="at least 2 random runs"):
        runner.test("feat", torch.stack([session.input(0)]), 0, c, rs[:2])


# ---- concept_test on the demo -----------------------------------------------------------------------
N_IMAGES = 20


@pytest.fixture(scope="module")
def labelled(demo):
    from inv_widgets.eval.play import play

    model, data = demo
    session = inv.Session(model, data, cache_size=4)
    store = inv.LabelStore(":memory:")
    weights = play(session, store, range(N_IMAGES), players=2, layers=session.layers[-1:], progress=False)
    ge = inv.GlobalExplanation.from_labels(
        inv.aggregate_labels(store, class_names=data.classes, progress=False), session, weights=weights
    )
    return session, ge


def test_concept_test_scores_each_label_and_attaches_the_result(labelled, tmp_path):
    session, ge = labelled
    last = session.layers[-1]
    classes = [c for c in ge.classes if ge.n_images(c)][:3]
    res = inv.concept_test(
        session,
        ge,
        classes=classes,
        layers=[last],
        n_labels=2,
        runs=3,
        min_examples=2,
        save_path=tmp_path,
        progress=False,
        procedure="tcav",
    )
    assert list(res.columns[:4]) == ["class", "target", "layer", "label"]
    expect = [(c, lab) for c in classes for lab in ge.top(c, last, 2)["label"]]
    assert sorted(zip(res["class"], res["label"])) == sorted(expect)
    tested = res[res["note"] == ""]
    assert len(tested) >= 1
    assert tested["tcav_score"].between(0, 1).all() and tested["p_value"].between(0, 1).all()
    assert (tested["significant"] == (tested["p_value"] < 0.05)).all()
    assert (tested["n_examples"] >= 2).all() and (tested["n_random"] >= 2).all() and (tested["runs"] == 3).all()
    for _, r in tested.iterrows():
        assert r["n_examples"] == len(ge.maps_of(r["class"], last, r["label"]))
        assert r["n_images"] == ge.n_images(r["class"])
    skipped = res[res["note"] != ""]
    assert skipped["tcav_score"].isna().all() and (~skipped["significant"]).all()
    # attached: the table and the lookups have the TCAV columns
    t = ge.table
    got = t.dropna(subset=["tcav_score"])
    assert len(got) == len(tested)
    # a second call finds every CAV saved and gives the same result without retraining
    stamps = {p: os.stat(p).st_mtime_ns for p in tmp_path.rglob("*.pkl")}
    again = inv.concept_test(
        session,
        ge,
        classes=classes,
        layers=[last],
        n_labels=2,
        runs=3,
        min_examples=2,
        save_path=tmp_path,
        progress=False,
        procedure="tcav",
    )
    pd.testing.assert_frame_equal(res, again)
    assert {p: os.stat(p).st_mtime_ns for p in tmp_path.rglob("*.pkl")} == stamps
    assert not list(tmp_path.rglob("*.pt"))  # the activations captum stored are gone, the CAVs stay


def test_concept_test_refuses_what_it_cannot_test(labelled):
    session, ge = labelled
    with pytest.raises(ValueError, match="runs must be at least 2"):
        inv.concept_test(session, ge, runs=1)
    with pytest.raises(ValueError, match="step must be"):
        inv.concept_test(session, ge, step=6)
    with pytest.raises(ValueError, match="fill must be one of"):
        inv.concept_test(session, ge, fill="blur")
    with pytest.raises(KeyError, match="unknown layer"):
        inv.concept_test(session, ge, layers=["nope"])
    other = inv.Session(inv.demo.DemoCNN(num_classes=10).eval(), session.dataset)
    with pytest.raises(ValueError, match="other models"):
        inv.concept_test(other, ge)


def test_without_save_path_a_second_call_reuses_the_cavs_and_a_progress_bar_follows_the_tests(labelled, monkeypatch):
    """The default: CAVs in a folder kept as long as the GlobalExplanation, found again by a second call; the long
    part runs under a tqdm.auto bar that counts the (class, layer, label) tests."""
    import tqdm.auto

    bars = []

    class Recorder:
        def __init__(self, total=None, **kwargs):
            self.total, self.n, self.closed, self.descs = total, 0, False, [kwargs.get("desc", "")]
            bars.append(self)

        def update(self, k=1):
            self.n += k

        def set_description(self, desc):
            self.descs.append(desc)

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    session, ge = labelled
    last = session.layers[-1]
    classes = [c for c in ge.classes if ge.n_images(c)][:2]
    res = inv.concept_test(
        session, ge, classes=classes, layers=[last], n_labels=2, runs=3, min_examples=2, procedure="tcav"
    )
    assert len(bars) == 1 and bars[0].total == bars[0].n == len(res) and bars[0].closed
    assert bars[0].descs[0].startswith("TCAV: revealing ") and bars[0].descs[-1] == "TCAV"
    folder = res.attrs["save_path"]
    cavs = {p: os.stat(p).st_mtime_ns for p in Path(folder).rglob("*.pkl")}
    assert len(cavs) >= 2 * 3 and len(cavs) >= 3 * (res["note"] == "").sum() > 0  # [concept, R_k] and [R_k, R_k-1]
    again = inv.concept_test(
        session, ge, classes=classes, layers=[last], n_labels=2, runs=3, min_examples=2, procedure="tcav"
    )
    assert again.attrs["save_path"] == folder
    pd.testing.assert_frame_equal(res, again)
    assert {p: os.stat(p).st_mtime_ns for p in Path(folder).rglob("*.pkl")} == cavs
    assert bars[1].descs[0] == "TCAV"  # nothing to reveal: every CAV was found
    assert (
        not inv.concept_test(
            session,
            ge,
            classes=classes,
            layers=[last],
            n_labels=2,
            runs=3,
            min_examples=2,
            progress=False,
            procedure="tcav",
        ).empty
        and len(bars) == 2
    )


def test_random_sets_differ_from_each_other_or_the_label_is_not_tested():
    """Two equal random sets would make a baseline CAV between a concept and itself (captum cannot train it): the
    sets drawn are all different, and a pool too small for that leaves the label untested, with the reason."""
    from inv_widgets.concepts import GlobalExplanation
    from inv_widgets.concepts.tcav import _plan, random_sets

    assert random_sets(5, 5, 11, np.random.default_rng(0)) is None  # one possible set
    assert random_sets(6, 5, 7, np.random.default_rng(0)) is None  # six possible sets
    six = random_sets(6, 5, 6, np.random.default_rng(0))
    assert sorted(map(tuple, six)) == sorted({tuple(s) for s in six}) and len(six) == 6
    # where repeats are unlikely the draws are plain seeded samples
    rng = np.random.default_rng(3)
    assert random_sets(100, 10, 11, np.random.default_rng(3)) == [
        sorted(rng.choice(100, 10, replace=False).tolist()) for _ in range(11)
    ]

    def row(i, label):
        return dict(
            model="m0", image_id=f"img{i}", target=0, layer="feat", members=str(i), label=label, score=1.0, rank=1
        )

    # "same_class": the class's 6 maps with another label, random sets of 5: 6 different sets, not 11
    ge = GlobalExplanation.from_labels(
        pd.DataFrame([row(i, "wheel") for i in range(5)] + [row(i, "door") for i in range(5, 11)]),
        class_names=["car"],
        layers=["feat"],
    )
    tests, families = _plan(ge, ["car"], ["feat"], 5, None, 5, 50, 10, 0, "same_class")
    assert families[("feat", "wheel", "car")]["sets"] is None
    tests, families = _plan(ge, ["car"], ["feat"], 5, None, 5, 50, 5, 0, "same_class")  # 6 sets: possible
    sets = families[("feat", "wheel", "car")]["sets"]
    assert len(sets) == 6 and len({tuple(map(repr, s)) for s in sets}) == 6
