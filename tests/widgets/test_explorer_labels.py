"""Labels from the game reach the Explorer's gallery: real store, real aggregation, real cluster-map keys."""
from __future__ import annotations

import inv_widgets as inv
from inv_widgets.widgets import Explorer


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
