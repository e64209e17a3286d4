"""The MapSource contract, checked against both implementations: a live Session and a stored Run give the same
keys, weights, maps and pictures, and every consumer (pool, game, global explanation) takes either."""

from __future__ import annotations

import numpy as np
import pytest

import inv_widgets as inv
from inv_widgets.engine.sources import MapItem, MapSource, is_map_source

N = 6


@pytest.fixture(scope="module")
def session(demo):
    model, _ = demo
    return inv.Session(model, inv.demo.PartsDataset(N))


@pytest.fixture(scope="module")
def run(session, tmp_path_factory):
    out = tmp_path_factory.mktemp("sources") / "run"
    inv.explain_dataset(session, out=out, batch_size=3, target="label", progress=False)
    return inv.Run.open(out)  # a fresh reader: nothing of the session


@pytest.fixture(params=["session", "run"])
def source(request, session, run):
    return session if request.param == "session" else run


def test_the_contract(source):
    assert is_map_source(source) and not is_map_source(type(source)) and not is_map_source(object())
    assert isinstance(source, MapSource)
    assert source.classes == inv.demo.PartsDataset(N).classes
    assert len(source.layers) == 8 and source.recipe == "fast" and len(source.fingerprint) >= 16
    assert source.map_type == "gradcam"  # the session's default maps; a run keeps its session's
    assert source.check_images() == list(range(N)) and source.check_images([4, 1, 4]) == [4, 1]
    picture = np.asarray(source.image(2))
    assert picture.dtype == np.uint8 and picture.shape == (128, 128, 3)
    assert source.label(2) == inv.demo.PartsDataset(N)[2][1]
    assert source.resolve_cut() == ("fast", None, "label")
    layers = source.layers[-2:]
    items = list(source.items([1, 4], layers))
    assert items and all(isinstance(it, MapItem) for it in items)
    for it in items:
        assert it.key.model == source.fingerprint and it.layer in layers and it.image in (1, 4)
        assert it.key.target == source.label(it.image)  # target "label": each image's own class
        low = source.lowres(it.key)
        assert low.dtype == np.float32 and low.ndim == 2 and low.min() >= 0 and low.max() <= 1
        if it.lowres is not None:
            np.testing.assert_array_equal(low, it.lowres)
        assert source.weight(it.key) == pytest.approx(it.weight, rel=1e-12)
        assert source.index_of(it.key.image_id) == it.image  # the image a key names
    for image in (1, 4):
        for layer in layers:
            ranks = [it.rank for it in items if it.image == image and it.layer == layer]
            weights = [it.weight for it in items if it.image == image and it.layer == layer]
            assert ranks == list(range(len(ranks))) and weights == sorted(weights, reverse=True)


def test_a_session_and_its_run_give_the_same_maps(session, run):
    layers = session.layers[::3]
    a = {it.key: it for it in session.items(range(N), layers)}
    b = {it.key: it for it in run.items(range(N), layers)}
    assert a.keys() == b.keys() and len(a) > 10
    for key, it in a.items():  # other batches than the run's (grouped by class): the model's bits differ a little
        assert (it.image, it.layer, it.rank) == (b[key].image, b[key].layer, b[key].rank)
        assert it.weight == pytest.approx(b[key].weight, rel=1e-5)
        np.testing.assert_allclose(run.lowres(key), it.lowres, atol=2e-3)
    np.testing.assert_array_equal(np.asarray(session.image(3)), run.image(3))


def test_a_run_refuses_a_cut_it_does_not_hold(run):
    with pytest.raises(ValueError, match="differs from the run's recipe"):
        run.resolve_cut(recipe="paper")
    with pytest.raises(ValueError, match="differs from the run's target"):
        run.resolve_cut(target="predicted")
    with pytest.raises(ValueError, match="not finished"):
        list(run.items([N + 3], run.layers))


def test_consumers_take_either_source(source, tmp_path):
    from inv_widgets.labels.pool import Pool

    pool = Pool.from_source(source, images=[0, 5], layers=source.layers[-1:])
    assert len(pool) >= 2
    item = next(iter(pool))
    assert pool.reveal(item, 2).shape == (128, 128, 3)
    game = inv.LabelingGame(source, tmp_path / "labels.db", "ada", images=[0, 5], layers=source.layers[-1:])
    game.start()
    assert game.current in set(pool.keys) and game.total == len(pool)
