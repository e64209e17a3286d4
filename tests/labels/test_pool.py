"""The pool of a labelling game (inv_widgets.labels.pool): which maps are played, found by key, and drawn
again from what the pool holds, without the model."""

from __future__ import annotations

import numpy as np
import pytest

from inv_widgets.labels.pool import Pool, PoolItem, PoolSpec
from inv_widgets.labels.store import MapKey


@pytest.fixture(scope="module")
def layers(game_session):
    return game_session.layers[-2:]


@pytest.fixture(scope="module")
def pool(game_session, layers):
    return Pool.from_session(game_session, images=[0, 1, 2], layers=layers)


def test_spec_is_validated_against_the_session(game_session, layers):
    spec = PoolSpec.for_session(game_session, images=[2, -4, 2], layers=list(reversed(layers)))
    assert spec.images == (2, 0)  # negative indices wrap, repeats go
    assert spec.layers == tuple(layers)  # forward order, whatever order they were given in
    assert (spec.recipe, spec.k, spec.target) == (game_session.recipe, None, "label")
    assert PoolSpec.for_session(game_session, layers=layers[0]).layers == (layers[0],)
    for kwargs, error, match in [
        (dict(layers=["nope"]), ValueError, "unknown layer 'nope'"),
        (dict(layers=[]), ValueError, "layers is empty"),
        (dict(images=[99]), IndexError, "out of range: the session has 4 images"),
        (dict(images=[]), ValueError, "no images to play"),
        (dict(images=["0"]), TypeError, "image index must be an int"),
        (dict(k=0), ValueError, "k must be at least 1"),
        (dict(k=True), TypeError, "k must be a whole number"),
        (dict(recipe="magic"), ValueError, "unknown recipe"),
        (dict(target="truth"), ValueError, "target must be one of"),
    ]:
        with pytest.raises(error, match=match):
            PoolSpec.for_session(game_session, **kwargs)


def test_pool_has_every_map_of_the_cut_in_the_shared_order(pool, game_session, layers):
    """Every map of the cut with a positive weight (a Grad-CAM map that lowers the class is not played)."""
    expected, against = [], 0
    for pos, i in enumerate([0, 1, 2]):
        exp = game_session.explain(i, target=game_session.label(i))
        for depth, name in enumerate(layers):
            cl = exp[name].cut()
            for j in range(cl.k):
                if not cl.weights[j] > 0:
                    against += 1
                    continue
                expected.append(
                    ((j, len(layers) - depth, pos), MapKey(*cl.key(j)), i, int(exp.target), name, float(cl.weights[j]))
                )
    expected.sort(key=lambda e: e[0])
    assert against > 0 and all(pool.item(k).weight > 0 for k in pool.keys)  # the rule was exercised
    assert pool.keys == [e[1] for e in expected]  # heaviest maps first, deepest layer, then image order
    assert len(pool) == len(expected) and list(pool) == [pool.item(k) for k in pool.keys]
    for order, key, image, target, layer, weight in expected:
        item = pool.item(key)
        assert key in pool and item.key == key and item.order == order
        assert (item.image, item.target, item.layer, item.weight) == (image, target, layer, weight)
        assert item.depth == layers.index(layer) + 1 and item.rank == order[0]
        assert (item.recipe, item.k) == (game_session.recipe, None)
    assert {k.target for k in pool.keys} == {game_session.label(i) for i in (0, 1, 2)}
    other = MapKey("m", "x", 0, layers[0], [1])
    assert other not in pool
    with pytest.raises(KeyError, match="not in this pool"):
        pool.item(other)


def test_pool_draws_exactly_what_the_cut_draws(pool, game_session):
    for item in pool:
        exp = game_session.explain(item.image, target=item.target)
        cl = exp[item.layer].cut()
        j = cl.keys().index(item.key)
        assert np.array_equal(pool.image(item), exp.image)
        assert np.array_equal(pool.heatmap(item), cl.maps[j])  # the overlay after the guess
        for step in (0, 3, 5):
            assert np.array_equal(pool.reveal(item, step), cl.reveal(j, step))
        assert not item.lowres.flags.writeable


@pytest.mark.slow
def test_showing_a_map_again_needs_neither_the_model_nor_the_explanation(game_session, layers, monkeypatch):
    pool = Pool.from_session(game_session, images=[0, 3], layers=layers[-1:])
    game_session.clear_cache()

    def no_model(*args, **kwargs):
        raise AssertionError("the pool asked the session for an explanation again")

    monkeypatch.setattr(game_session, "explain", no_model)
    monkeypatch.setattr(game_session, "explain_many", no_model)
    for item in pool:
        assert pool.reveal(item, 2).shape == pool.image(item).shape
        assert pool.heatmap(item).max() == pytest.approx(1.0)


@pytest.mark.slow
def test_progress_predicted_target_and_fixed_k(game_session, layers):
    seen = []
    pool = Pool.from_session(
        game_session,
        images=[0, 1, 2, 3],
        layers=layers[-1:],
        k=2,
        target="predicted",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (4, 4) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    played = [w for i in range(4) for w in game_session.explain(i, lazy=True)[layers[-1]].cut(k=2).weights if w > 0]
    assert len(pool) == len(played) > 4 and all(it.k == 2 and it.weight > 0 for it in pool)
    for item in pool:
        assert item.target == int(game_session.explain(item.image).predicted)


def test_a_pool_from_items_of_any_origin(monkeypatch):
    """What a stored dataset run gives: keys, an image provider, low-resolution maps and the cut."""
    low = np.zeros((4, 4), np.float32)
    low[1, 2] = 1.0
    calls = []

    def picture(i):
        calls.append(i)
        return np.full((32, 32, 3), 200, np.uint8)

    items = [
        PoolItem(
            MapKey("run-model", f"img{i}", 3, "conv", [i, 9]), i, 3, "conv", 1, 0, 50.0, low, "fast", None, (0, 1, i)
        )
        for i in (1, 0)
    ]
    pool = Pool(items, picture, ["conv"])
    assert [it.image for it in pool] == [0, 1]  # sorted by order
    item = pool.item(MapKey("run-model", "img1", 3, "conv", [9, 1]))
    shown = pool.reveal(item, 0)
    assert shown.shape == (32, 32, 3) and shown[9:16, 17:24].mean() > 100 and shown[28:, :4].max() == 0
    pool.reveal(item, 5)
    pool.heatmap(item)
    assert calls == [1]  # the picture is read once and kept
    with pytest.raises(ValueError, match="twice"):
        Pool(items + items[:1], picture, ["conv"])
