"""The ``spatial`` recipe: channels grouped by where they respond (each map as a distribution over pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import linkage
from sklearn.metrics import adjusted_rand_score

import inv_widgets as inv
from inv_widgets.engine import assign, build_tree

from .helpers import planted_maps


def blob(cy, cx, width, size=16):
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * width**2))


def test_spatial_is_ward_on_the_maps_as_distributions():
    """Against scipy's Ward on the min-max scaled rows divided by their sums (the same tree; heights scaled by
    the number of pixels, as the recipe keeps values near 1)."""
    maps, _ = planted_maps(seed=4)
    x = maps.reshape(len(maps), -1).double()
    lo, hi = x.min(1, keepdim=True).values, x.max(1, keepdim=True).values
    scaled = (x - lo) / (hi - lo)
    p = (scaled / scaled.sum(1, keepdim=True)).numpy()
    ref = linkage(p, method="ward")
    tree = build_tree(maps, "spatial")
    np.testing.assert_array_equal(tree.linkage[:, [0, 1, 3]], ref[:, [0, 1, 3]])
    np.testing.assert_allclose(tree.linkage[:, 2], ref[:, 2] * x.shape[1], rtol=1e-3)


def test_spatial_separates_places_and_keeps_faint_textures_together():
    """Sharp responses at three places, and faint textures over the whole image (a background channel):
    min-max scaling stretches each texture to full contrast, so ``fast`` splits the textures into clusters of
    their own and lumps the three places together; as distributions the textures stay near the uniform
    one, so ``spatial`` keeps them in one cluster and separates the places."""
    rng = np.random.default_rng(0)
    maps, truth = [], []
    for g, (cy, cx) in enumerate([(3, 3), (12, 4), (8, 12)]):
        for width in (1.0, 1.25, 1.5):
            maps.append(blob(cy, cx, width) * rng.uniform(0.5, 2))
            truth.append(g)
    yy, xx = np.mgrid[:16, :16]
    for a in np.linspace(0, np.pi, 6, endpoint=False):
        maps.append(0.8 + 0.2 * np.sin(1.3 * (np.cos(a) * xx + np.sin(a) * yy)))
        truth.append(3)
    maps = torch.tensor(np.array(maps), dtype=torch.float32)
    tree = build_tree(maps, "spatial")
    assert tree.suggested_k == 4 and adjusted_rand_score(truth, assign(tree)) == 1.0
    assert adjusted_rand_score(truth, assign(build_tree(maps, "fast"), k=4)) < 0.5  # what spatial changes


@pytest.mark.parametrize("case", ["constant", "zeros", "identical", "proportional"])
def test_degenerate_layers_give_one_cluster(case):
    base = torch.rand(6, 6, generator=torch.Generator().manual_seed(1))
    maps = {
        "constant": torch.full((5, 6, 6), 3.0),
        "zeros": torch.zeros(5, 6, 6),
        "identical": base.expand(5, 6, 6).clone(),
        "proportional": torch.stack([base * s for s in (0.5, 1.0, 2.0, 3.0, 7.0)]),
    }[case]
    tree = build_tree(maps, "spatial")
    assert tree.suggested_k == 1
    assert tree.linkage.shape == (4, 4) and np.isfinite(tree.linkage).all()
    assert assign(tree).tolist() == [0] * 5
    assert assign(tree, k=3).max() <= 2  # a cut by k still answers


@pytest.mark.slow
def test_spatial_in_a_session_cuts_locates_and_recuts(small_cnn, small_images):
    s = inv.Session(small_cnn, small_images, recipe="spatial")
    exp = s.explain(0)
    for name in exp.layers:
        lr = exp[name]
        assert lr.recipe == "spatial"
        cl = lr.cut()
        kept = sorted(lr.kept.tolist())
        assert sorted(np.concatenate(cl.members).tolist()) == kept if cl.k else kept == []
        if cl.k:
            assert cl.maps.shape[0] == cl.k and 0 <= cl.maps.min() and cl.maps.max() <= 1
            assert (np.diff(cl.weights) <= 1e-9).all()
            _, found, j = s.locate(cl.key(cl.k - 1))
            assert found.key(j) == cl.key(cl.k - 1)
        if len(kept) >= 4:
            assert lr.cut(k=2).k == 2 and lr.cut(threshold=lr.cut(k=3).threshold).k == 3
    again = inv.Session(small_cnn, small_images, recipe="spatial").explain(0)
    for name in exp.layers:
        np.testing.assert_array_equal(exp[name].linkage, again[name].linkage)
