"""Top labels per cluster map: the store's cached aggregation, LabelIndex, and the Explorer's gallery (real
store, real aggregation, real cluster-map keys)."""

from __future__ import annotations

import pytest

import inv_widgets as inv
from inv_widgets.labels import LabelIndex, LabelStore, aggregate_labels
from inv_widgets.labels import aggregate as agg_mod
from inv_widgets.widgets import Explorer

from ._support import WordVectors, answer, key


@pytest.mark.slow
def test_gallery_shows_top_labels_from_a_real_store(tmp_path):
    model, data = inv.demo.load(n=2)
    session = inv.Session(model, data)
    store = inv.LabelStore(tmp_path / "labels.sqlite")
    ex = Explorer(session, store=store)
    assert all(lab == [] for lab in ex.gallery.labels)  # nothing labelled yet
    key = ex.clusters.key(0)  # the heaviest map the gallery shows now
    truth = data.classes[data[ex.index][1]]
    for who, words in [("ada", ["wheels", "round tyres"]), ("bob", ["wheel"]), ("cy", ["black wheels", "tires"])]:
        store.record_answer(who, key, truth, truth, "win", 1, words)
    ex.refresh_labels()
    best_label, best_score = ex.gallery.labels[0][0]  # gallery slot 0 is that map
    assert best_label in ("wheel", "tire", "tyre") and best_score > 0
    assert all(lab == [] for lab in ex.gallery.labels[1:])


@pytest.mark.slow
def test_store_top_labels_are_cached_until_the_labels_change(tmp_path):
    path = tmp_path / "gallery.db"
    s = LabelStore(path)
    k, k2 = key([1, 2]), key([3])
    answer(s, k, ["spire", "cross"], step=1)
    answer(s, k, ["spire"], step=0)
    enc = WordVectors()
    assert s.top_labels(k, model=enc) == [("spire", pytest.approx(1.9)), ("cross", pytest.approx(0.9))]
    assert s.top_labels_many([k, k2], n=1, model=enc) == [[("spire", pytest.approx(1.9))], []]
    calls = sum(enc.calls.values())
    s.top_labels(k, model=enc)
    assert sum(enc.calls.values()) == calls  # served from the cache
    answer(s, k2, ["door"])  # a write through this store
    assert s.top_labels(k2, model=enc) == [("door", pytest.approx(1.0))]
    other = LabelStore(path)  # a write through another connection
    answer(other, k2, ["door"], step=5)
    assert s.top_labels(k2, model=enc) == [("door", pytest.approx(1.5))]
    other.undo_last("p")
    assert s.top_labels(k2, model=enc) == [("door", pytest.approx(1.0))]


@pytest.mark.slow
def test_label_index_gives_what_the_store_gives(tmp_path):
    s = LabelStore(tmp_path / "index.db")
    k, k2, k3 = key([1, 2]), key([3]), key([4])
    answer(s, k, ["spire", "cross"], step=1)
    answer(s, k, ["spire"], step=0)
    answer(s, k2, ["door", "window"], step=2, outcome="lose")
    enc = WordVectors()
    index = LabelIndex(s, n=2, model=enc)
    expected = s.top_labels_many([k, k2, k3], n=2, model=enc)
    assert index.top([k, k2, k3]) == expected
    assert expected[0] == [("spire", pytest.approx(1.9)), ("cross", pytest.approx(0.9))] and expected[2] == []
    # as the Explorer's labels provider: the same lists as the provider over the store's top_labels_many
    assert index([k, k2, k3]) == [list(x) for x in s.top_labels_many([k, k2, k3], 2, model=enc)]
    assert index.top([k], n=1) == [[("spire", pytest.approx(1.9))]]
    assert index.table().equals(aggregate_labels(s, model=enc, progress=False))
    with pytest.raises(TypeError, match="LabelIndex reads a label store"):
        LabelIndex(object())
    with pytest.raises(ValueError, match="positive int"):
        LabelIndex(s, n=0)


def test_label_index_is_cached_until_the_labels_change_and_loads_nothing_without_labels(tmp_path, monkeypatch):
    s = LabelStore(tmp_path / "cache.db")
    calls = []
    real = agg_mod.aggregate_labels

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("inv_widgets.labels.index.aggregate_labels", counting)
    enc = WordVectors()
    index = s.index(model=enc)
    assert index([key([1])]) == [[]] and calls == []  # nothing labelled: nothing aggregated (no model loaded)
    answer(s, key([1]), ["wheel"], true="car")
    assert index([key([1])]) == [[("wheel", pytest.approx(1.0))]] and len(calls) == 1
    assert index([key([1]), key([2])]) == [[("wheel", pytest.approx(1.0))], []] and len(calls) == 1
    s.top_labels(key([1]), model=enc)  # store.index() shares the store's cache
    assert len(calls) == 1
    other = LabelStore(tmp_path / "cache.db")
    answer(other, key([1]), ["wheel"], true="car", step=5)  # another connection writes
    assert index([key([1])]) == [[("wheel", pytest.approx(1.5))]] and len(calls) == 2
    index.refresh()
    index([key([1])])
    assert len(calls) == 3


@pytest.mark.slow
def test_explorer_shows_labels_from_a_label_index(tmp_path):
    model, data = inv.demo.load(n=2)
    session = inv.Session(model, data)
    store = LabelStore(tmp_path / "labels.sqlite")
    key0 = Explorer(session).clusters.key(0)
    truth = data.classes[data[0][1]]
    store.record_answer("ada", key0, truth, truth, "win", 0, ["wheels", "round tyres"])
    by_store = Explorer(session, store=store)  # today's path: store_labels(store) -> store.top_labels_many
    by_index = Explorer(session, labels=LabelIndex(store))  # the index the Explorer will switch to
    assert by_index.gallery.labels == by_store.gallery.labels
    assert by_index.gallery.labels[0][0][0] in ("wheel", "tyre")
    assert all(lab == [] for lab in by_index.gallery.labels[1:])
