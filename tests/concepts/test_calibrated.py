"""The calibrated concept test: the concept, not the run, is the unit; a tiny model whose answer is known, the
null's false positives, Holm, and concept_test's defaults on the demo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import inv_widgets as inv
from inv_widgets.concepts.calibrated import ConceptSpace, holm


class RedGreen(nn.Module):
    """logit 0 = mean red - mean green (read off a 1x1 convolution 'feat'), logit 1 the opposite."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.feat.weight.zero_()
            self.feat.weight[0, 0] = 1.0
            self.feat.weight[1, 1] = 1.0

    def forward(self, x):
        a = self.feat(x).mean((2, 3))
        return torch.stack([a[:, 0] - a[:, 1], a[:, 1] - a[:, 0]], 1)


def patch(rng, channel=None, size=8):
    img = rng.uniform(0, 0.15, (3, size, size)).astype(np.float32)
    y, x = rng.integers(0, size - 3, 2)
    colour = rng.uniform(0, 1, 3) if channel is None else np.eye(3)[channel] * 0.9
    img[:, y : y + 4, x : x + 4] = colour[:, None, None]
    return torch.from_numpy(img)


def test_holm_steps_down_and_leaves_nan_alone():
    got = holm([0.01, 0.04, 0.03, np.nan])
    np.testing.assert_allclose(got[:3], [0.03, 0.06, 0.06])
    assert np.isnan(got[3])
    assert np.all(holm([0.5, 0.9]) <= 1.0) and holm([]).shape == (0,)


def test_a_concept_the_logit_reads_stands_out_and_random_concepts_do_not():
    rng = np.random.default_rng(0)
    examples = {("red", k): patch(rng, 0) for k in range(12)}
    examples.update({("green", k): patch(rng, 1) for k in range(12)})
    examples.update({("any", k): patch(rng) for k in range(80)})
    scored = {f"img{k}": patch(rng, 0) for k in range(16)}
    space = ConceptSpace(RedGreen().eval(), "feat", 0, examples, scored)
    pool = [("any", k) for k in range(80)]
    red = space.test([("red", k) for k in range(12)], pool, runs=5, n_null=30, seed=1)
    green = space.test([("green", k) for k in range(12)], pool, runs=5, n_null=30, seed=1)
    assert red.direction == "above" and red.p < 0.01 and red.score > red.null_score and red.sign == 1.0
    assert green.direction == "below" and green.p < 0.01 and green.sign == 0.0
    assert red.n_null == 30 and red.n_scored == 16 and red.n_examples == 12
    # random concepts of the pool against the same null: about alpha of them come out significant, not most
    ps = [
        space.test(
            [pool[j] for j in np.random.default_rng(100 + r).choice(80, 12, replace=False)],
            pool,
            runs=5,
            n_null=30,
            seed=1,
        ).p
        for r in range(30)
    ]
    assert np.mean(np.asarray(ps) < 0.05) <= 0.15


def test_scored_images_are_held_out_from_the_concepts_sources():
    rng = np.random.default_rng(0)
    examples = {("red", k): patch(rng, 0) for k in range(10)}
    examples.update({("any", k): patch(rng) for k in range(40)})
    scored = {k: patch(rng, 0) for k in range(6)}
    sources = {("red", k): k % 3 for k in range(10)}  # the red maps come from images 0, 1 and 2
    space = ConceptSpace(RedGreen().eval(), "feat", 0, examples, scored, sources)
    r = space.test([("red", k) for k in range(10)], [("any", k) for k in range(40)], runs=3, n_null=5, seed=0)
    assert r.n_scored == 3  # images 3, 4 and 5 only


N_IMAGES = 40


@pytest.fixture(scope="module")
def labelled(demo):
    """40 demo images, the deepest layer's maps labelled by the part that holds most of each map's mass (no
    players, no aggregation: a global explanation whose labels are known)."""
    import pandas as pd

    from inv_widgets.eval.simulate import truth_part

    model, data = demo
    session = inv.Session(model, data, cache_size=64)
    last = session.layers[-1]
    rows = []
    for i, exp in enumerate(session.explain_many(list(range(N_IMAGES)), progress=False)):
        cl = exp[last].cut()
        masks = data.part_masks(i)
        for j in range(cl.k):
            if not cl.weights[j] > 0:  # a map against the class: never played, never labelled
                continue
            part = truth_part(cl.maps[j], masks) or "background"
            rows.append(dict(cl.key(j).as_dict(), label=part, score=1.0, rank=1))
    ge = inv.GlobalExplanation.from_labels(pd.DataFrame(rows), session)
    return session, ge


def test_concept_test_is_calibrated_by_default_and_says_what_its_rows_mean(labelled):
    session, ge = labelled
    last = session.layers[-1]
    classes = [c for c in ge.classes if ge.n_images(c)][:3]
    with pytest.warns(UserWarning, match="too few for a significant result to mean anything"):
        res = inv.concept_test(
            session, ge, classes=classes, layers=[last], n_labels=3, runs=2, min_examples=2, null=5, progress=False
        )
    assert set(res.procedure) == {"calibrated"} and res.attrs["correction"] == "holm"
    assert "does not mean that the label names what the maps show" in res.attrs["meaning"]
    tested = res[res.note == ""]
    assert len(tested) >= 1
    assert set(tested.direction) <= {"above", "below"} and tested.n_null.between(2, 5).all()
    assert (tested.p_value >= tested.p_raw - 1e-12).all()  # Holm never lowers a p-value
    assert (tested.significant == (tested.p_value < 0.05)).all()
    for _, r in tested.iterrows():  # scored images: the class's labelled images the concept's maps do not come from
        sources = set(ge.maps_of(r["class"], last, r["label"]).image_id)
        assert r.n_images == ge.n_images(r["class"]) - len(sources)
    untested = res[res.note != ""]
    assert len(res.attrs["untested"]) == len(untested) and untested.tcav_score.isna().all()
    # the default min_examples is 10: every label with fewer maps is listed untested, with the reason
    again = inv.concept_test(
        session, ge, classes=classes, layers=[last], n_labels=3, null=30, runs=10, progress=False, attach=False
    )
    few = again[again.n_examples < 10]
    assert (few.note.str.contains("min_examples=10")).all() and len(again.attrs["untested"]) >= len(few)
    with pytest.raises(ValueError, match="procedure='tcav'"):
        inv.concept_test(session, ge, random="other_labels")
    with pytest.raises(ValueError, match="procedure must be"):
        inv.concept_test(session, ge, procedure="magic")
