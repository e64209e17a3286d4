"""A global explanation from either MapSource (issue 21): each map weighs what its answers stored, so a store filled
by the game is read without running the model; examples are drawn from a Session or from a stored Run; the
concept test, which needs the model, refuses a run and says what to pass."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import inv_widgets as inv
from inv_widgets.concepts.examples import overlays
from inv_widgets.concepts.global_ import GlobalExplanation

N = 6
LABELS = ("wheel", "window", "roof")


@pytest.fixture(scope="module")
def session(demo):
    # the default maps; a cache of one explanation, so that weighing the maps again would have to run the model
    model, _ = demo
    return inv.Session(model, inv.demo.PartsDataset(N), cache_size=1)


@pytest.fixture(scope="module")
def run(session, tmp_path_factory):
    out = tmp_path_factory.mktemp("global_sources") / "run"
    inv.explain_dataset(session, out=out, batch_size=3, target="label", progress=False)
    return inv.Run.open(out)  # a fresh reader: nothing of the session


@pytest.fixture(scope="module")
def stores(session):
    """The same answers twice, on the maps the game plays (its pool): with each map's weight as the game stores it
    (PoolItem.weight), and without (a store written before weights were kept)."""
    items = list(inv.labels.Pool.from_source(session, images=list(range(N)), layers=session.layers[-2:]))
    new, old = inv.LabelStore(":memory:"), inv.LabelStore(":memory:")
    for n, it in enumerate(items):
        name = session.classes[it.key.target]
        for p, player in enumerate(("ada", "bo")):
            answer = (player, it.key, name, name, "win", 2, [LABELS[(n + p * (n % 2)) % 3]])
            new.record_answer(*answer, weight=it.weight)
            old.record_answer(*answer)
    return new, old, {it.key: it.weight for it in items}


def _same(a: GlobalExplanation, b: GlobalExplanation, rtol: float = 0.0) -> None:
    ta, tb = a.table, b.table
    pd.testing.assert_frame_equal(
        ta.drop(columns=["examples", "mean_weight"]), tb.drop(columns=["examples", "mean_weight"])
    )
    np.testing.assert_allclose(ta["mean_weight"], tb["mean_weight"], rtol=rtol)
    assert list(ta["examples"]) == list(tb["examples"])


def test_from_a_store_the_game_filled_the_model_is_never_called(session, stores, monkeypatch):
    new, _, weights = stores
    df = inv.aggregate_labels(new, class_names=session.classes, progress=False)
    reference = GlobalExplanation.from_labels(df, class_names=session.classes, layers=session.layers, weights=weights)
    assert len(reference.maps) == len(weights) and reference.table["mean_weight"].notna().all()

    def broken(*_):
        raise RuntimeError("the model was called")

    hook = session.runner.model.register_forward_pre_hook(broken)
    monkeypatch.setattr(session, "index_of", lambda image_id: pytest.fail("an image was looked up by its id"))
    try:
        with pytest.raises(ValueError, match="the model was called"):  # the hook bites
            session.explain(0, lazy=True)
        g = GlobalExplanation.from_store(new, session)
    finally:
        hook.remove()
    _same(g, reference)
    assert g.session is session and g.layers == session.layers and g.classes == session.classes


def test_the_same_from_a_run_and_old_stores_weighed_by_the_source(session, run, stores):
    new, old, _ = stores
    from_session = GlobalExplanation.from_store(new, session)
    _same(GlobalExplanation.from_store(new, run), from_session)  # the run's weights are not even read
    assert GlobalExplanation.from_store(new, run).session is run
    # answers without a weight: the source weighs their maps (a run from its table, a session by explaining them)
    _same(GlobalExplanation.from_store(old, run), from_session, rtol=1e-5)
    _same(GlobalExplanation.from_store(old, session), from_session, rtol=1e-5)
    # without a source an old store's weights stay unknown, a new store's are known
    assert GlobalExplanation.from_store(old).table["mean_weight"].isna().all()
    _same(GlobalExplanation.from_store(new, class_names=session.classes), from_session)


def test_merged_maps_weigh_the_sum_of_the_maps_they_merge(run, stores):
    new, _, weights = stores
    g = GlobalExplanation.from_store(new, run, merge=True)
    merged = g.maps[g.maps["n_maps"] > 1]
    assert len(merged) > 0
    for r in merged.itertuples():
        members = set(int(m) for m in r.members.split(","))
        parts = [
            w
            for k, w in weights.items()
            if (k.image_id, k.target, k.layer) == (r.image_id, r.target, r.layer) and set(k.members) <= members
        ]
        assert r.weight == pytest.approx(sum(parts), rel=1e-9)


def test_examples_are_drawn_from_either_source(session, run, stores, tmp_path):
    new, _, _ = stores
    for source in (session, run):
        g = GlobalExplanation.from_store(new, source)
        page = g.to_html(tmp_path / "g.html")
        n_img = len(re.findall(r'<img src="data:image/jpeg;base64,', page))
        shown = g.table.groupby(["class", "layer"]).head(5)
        assert n_img == sum(len(e) for e in shown["examples"]) > 0
        view = inv.GlobalView(g)
        keys = [k for e in g.table["examples"] for k in e]
        assert set(view._example_pngs(keys)) == set(keys)
    key = keys[0]
    a, b = dict(overlays(session, [key], size=64)), dict(overlays(run, [key], size=64))
    assert a[key].shape == b[key].shape and a[key].dtype == np.uint8
    # the run stores its maps as float16: the same picture to a colour step or two
    assert np.abs(a[key].astype(int) - b[key].astype(int)).mean() < 2.0


def test_the_concept_test_needs_the_session_not_the_run(run, stores, tmp_path):
    new, _, _ = stores
    g = GlobalExplanation.from_store(new, run)
    with pytest.raises(TypeError, match="needs the model.*pass the Session the run was made with"):
        inv.concept_test(run, g)
    from inv_widgets.concepts import TCAVRunner

    with pytest.raises(TypeError, match="needs the model"):
        TCAVRunner(run, tmp_path / "cavs")
