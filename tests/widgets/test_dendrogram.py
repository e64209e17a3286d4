"""The dendrogram view alone (widgets/dendrogram.py): geometry from the engine's one walk, the figure, clicks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import dendrogram, fcluster, linkage

from inv_widgets.widgets.dendrogram import Dendrogram, cluster_stubs, dendrogram_segments, label_shifts


def test_dendrogram_segments_geometry():
    pts = np.array([[0.0], [0.1], [5.0], [5.2], [9.0]])
    z = linkage(pts, "ward")
    xs, ys, c, order = dendrogram_segments(z, np.array([0, 0, 1, 1, 2]))
    assert xs.shape == ys.shape == (4, 4)
    assert sorted(order.tolist()) == list(range(5))
    assert (c >= 0).sum() == 2  # the two within-cluster merges; the rest are above the cut
    assert np.allclose(ys[:, 1], z[:, 2]) and np.allclose(ys[:, 2], z[:, 2])


def test_dendrogram_alone():
    got = []
    d = Dendrogram(on_cut=got.append)
    z = linkage(np.random.default_rng(1).normal(size=(20, 3)), "ward")
    d.show(z, np.zeros(20, int), float(z[-1, 2]) * 1.01, suggested_threshold=float(z[-2, 2]), suggested_k=2, k=1)
    d._emit(1.0)
    assert got == [1.0]
    d.clear("empty")
    assert all(len(tr.x or []) == 0 for tr in d.figure.data[1:])


def test_segments_are_scipys_dendrogram():
    z = linkage(np.random.default_rng(4).normal(size=(25, 3)), "average")
    xs, ys, _, order = dendrogram_segments(z)
    d = dendrogram(z, no_plot=True)
    assert order.tolist() == d["leaves"]
    ours = sorted(map(tuple, np.round(np.hstack([xs * 10 + 5, ys]), 9)))
    theirs = sorted(map(tuple, np.round(np.hstack([d["icoord"], d["dcoord"]]), 9)))
    assert ours == theirs


def test_every_cluster_shows_its_colour_up_to_the_cut():
    z = linkage(np.array([[0.0], [0.1], [5.0], [5.2], [9.0], [30.0]]), "ward")
    labels = fcluster(z, 3, criterion="maxclust") - 1
    t = 0.5 * (z[-3, 2] + z[-2, 2])  # between the merges that leave 3 clusters
    sx, sy, sc = cluster_stubs(z, labels, t)
    assert sorted(set(sc.tolist())) == sorted(set(labels.tolist()))  # each cluster, a lone leaf too
    assert np.all(sy[:, 1] <= t + 1e-12) and np.all(sy[:, 1] > sy[:, 0])  # legs go up to the cut, no further
    assert np.all(sx[:, 0] == sx[:, 1])  # vertical


def test_cut_labels_sit_beside_the_plot_and_apart():
    """The labels of the cut and of the suggested cut are in the right margin, at the end of their lines (never
    over a branch: issue 14, item 17; the browser test measures it on screen), pushed apart when the lines are
    close, and kept inside the figure."""
    d = Dendrogram()
    z = linkage(np.random.default_rng(1).normal(size=(20, 3)), "ward")
    d.show(z, np.zeros(20, int), float(z[-3, 2]), suggested_threshold=float(z[-2, 2]), suggested_k=2, k=3)
    cut, sugg = d.figure.layout.annotations
    assert d.figure.layout.margin.r >= 70
    for a in (cut, sugg):
        assert (a.xref, a.x, a.xanchor, a.yanchor) == ("paper", 1.0, "left", "middle")  # right of the plot area
    assert cut.text == "cut k = 3<br>⇕ drag" and sugg.text == "suggested<br>k = 2"
    d.show(z, np.zeros(20, int), float(z[-2, 2]), suggested_threshold=float(z[-2, 2]), suggested_k=2, k=2)
    cut, sugg = d.figure.layout.annotations
    assert cut.text.endswith("= suggested") and sugg.text == ""  # one label for both lines
    # far apart: each at its line; close: apart by their half heights; at the top or bottom: inside
    assert label_shifts([80.0, 20.0], [30, 28], 200.0, 100.0) == [0.0, 0.0]
    up, down = label_shifts([50.0, 49.0], [30, 28], 200.0, 100.0)
    assert (100 - up) + 29 + 3 == pytest.approx(102 - down)  # centres 29 + 3 px apart, the higher line's above
    top = label_shifts([100.0], [30], 200.0, 100.0)[0]
    assert top == pytest.approx(-15.0)  # centred 15 px below the top, not cut by it
    a, b = label_shifts([1.0, 0.0], [45, 28], 200.0, 100.0, hi=220.0)  # both at the bottom
    ca, cb = 198 - a, 200 - b  # their centres, px from the top of the plot area
    assert cb + 28 / 2 <= 220 + 1e-9 and cb - ca >= (45 + 28) / 2 + 3 - 1e-9
