"""Cuts of a layer's dendrogram and what they give: cluster maps, weights, members, identities, Deep Reveal
images; the answers the widgets read from the engine (cut by height, kept feature maps, Grad-CAM agreement)."""

from __future__ import annotations

import numpy as np
import pytest

import inv_widgets as inv
from inv_widgets.engine import assign, build_tree
from inv_widgets.engine.maps import REVEAL_PERCENTS, reveal_mask
from inv_widgets.engine.tree import prune_mask

from .helpers import planted_maps, scaled


def test_cut_by_k_threshold_and_prune():
    maps, _ = planted_maps(seed=1)
    tree = build_tree(maps, "fast")
    for k in range(1, 8):
        labels = assign(tree, k=k)
        assert len(np.unique(labels)) == k
        np.testing.assert_array_equal(labels, assign(tree, threshold=tree.threshold_for(k)))
        assert tree.k_at(tree.threshold_for(k)) == k
    with pytest.raises(ValueError, match="either k or threshold"):
        assign(tree, k=2, threshold=1.0)
    w = np.array([50.0, 30.0, 15.0, 5.0])
    # bar = max(50 / 3, 25 / 2) = 16.7: the two light clusters go
    assert prune_mask(w).tolist() == [True, True, False, False]


def test_explanation_cut_maps_weights_members(tiny_cnn, tiny_image):
    s = inv.Session(tiny_cnn, [tiny_image], maps="published")  # the paper's maps (gradcam: tests/engine/test_contrast)
    exp = s.explain(0)
    assert exp.layers == ["conv1", "conv2", "dw", "conv3"]
    assert exp.predicted == int(np.argmax(exp.probabilities)) and exp.target == exp.predicted
    lr = exp["conv2"]
    kept = lr.kept
    assert np.all(lr.channel_weights[kept] >= 89.6 / lr.n_channels)
    for k in range(1, min(6, len(kept)) + 1):
        cl = lr.cut(k=k)
        assert cl.k == k and cl.maps.shape == (k, 32, 32) and cl.maps.dtype == np.float32
        assert cl.maps.min() >= 0 and cl.maps.max() <= 1
        assert np.all(np.diff(cl.weights) <= 1e-9)  # descending
        assert sorted(np.concatenate(cl.members).tolist()) == sorted(kept.tolist())  # a partition of kept
        for j, members in enumerate(cl.members):
            assert cl.weights[j] == pytest.approx(lr.channel_weights[members].sum())
    # a cluster map is the weighted mean of its members, upsampled, min-max scaled
    cl = lr.cut(k=2)
    a = exp._layers["conv2"].maps.numpy()
    w = lr.channel_weights[kept]
    j = 0
    idx = np.isin(kept, cl.members[j])
    low = (w[idx, None, None] * a[idx]).sum(0) / w[idx].sum()
    np.testing.assert_allclose(cl.maps_lowres[j], scaled(low), rtol=1e-5, atol=1e-6)  # min-max scaled, as runs store it
    # identity: sorted members, independent of position in the list
    key = cl.key(j)
    assert key.members == tuple(sorted(cl.members[j].tolist())) and key.layer == "conv2"
    assert key.model == s.fingerprint and key.image_id == s.image_id(0) and key.target == exp.target


def test_feature_maps_are_the_kept_maps_the_cluster_maps_are_made_of(tiny_cnn, tiny_image):
    exp = inv.explain(tiny_cnn, tiny_image, maps="published")
    for name in exp.layers:
        lr = exp[name]
        fm = lr.feature_maps
        assert fm.shape == (len(lr.kept), *lr.shape) and fm.dtype == np.float32 and (fm >= 0).all()  # post-ReLU
        with pytest.raises(ValueError):
            fm[...] = 0  # a view of the explanation, not to be written
        cl = lr.cut()
        w = lr.channel_weights
        for j, members in enumerate(cl.members):  # each cluster map from its members' feature maps
            rows = np.searchsorted(lr.kept, members)
            low = (w[members, None, None] * fm[rows]).sum(0) / w[members].sum()
            np.testing.assert_allclose(cl.maps_lowres[j], scaled(low), rtol=1e-5, atol=1e-6)


def _widest_layer(exp):
    return max((exp[n] for n in exp.layers), key=lambda lr: len(lr.kept))


def test_cut_by_height_as_a_person_picks_it(small_cnn, small_images):
    lr = _widest_layer(inv.explain(small_cnn, small_images[0]))
    tree = lr.tree
    assert tree.n >= 6
    h2 = tree.threshold_for(2)
    by_height = lr.cut(height=h2)
    assert by_height.k == 2 and by_height.threshold == h2 and by_height.cut_by == "threshold"
    assert by_height is lr.cut(threshold=h2)  # the same cut, kept once
    low = lr.cut(height=-3.0)  # below 0 means 0: every channel alone
    assert low.threshold == 0.0 and low.k == tree.n
    capped = lr.cut(height=0.0, max_k=4)  # more than max_k clusters: max_k instead
    assert capped.k == 4 and capped.cut_by == "k" and capped is lr.cut(k=4)
    assert lr.cut(height=h2, max_k=4) is by_height  # at or under max_k: the height itself
    assert lr.cut().cut_by == "suggested" and lr.cut(k=3).cut_by == "k"
    with pytest.raises(ValueError, match="finite number"):
        lr.cut(height=float("nan"))
    with pytest.raises(ValueError, match="one of k, threshold or height"):
        lr.cut(k=2, height=1.0)


def test_what_a_cut_tells_the_widgets(small_cnn, small_images):
    lr = _widest_layer(inv.explain(small_cnn, small_images[0], recipe="paper"))
    pruned = next((c for c in (lr.cut(k=k) for k in range(2, 9)) if c.k < c.k_cut), None)
    assert pruned is not None, "the paper recipe prunes light clusters at some k"
    assert pruned.pruned == pruned.k_cut - pruned.k > 0 and lr.cut(k=3, prune=False).pruned == 0
    cl = lr.cut(k=3, prune=False)
    for j, key in enumerate(cl.keys()):
        assert cl.find(key) == j
    assert cl.find(None) == -1 and cl.find(cl.key(0)._replace(layer="elsewhere")) == -1
    # agreement with Grad-CAM: Pearson correlation, against numpy's
    r = cl.gradcam_agreement()
    ref = [np.corrcoef(cl.maps[j].ravel(), lr.gradcam().ravel())[0, 1] for j in range(cl.k)]
    np.testing.assert_allclose(r, ref, atol=1e-9)


def test_recent_cuts_are_kept_and_old_ones_dropped(tiny_cnn, tiny_image):
    lr = inv.explain(tiny_cnn, tiny_image)["conv3"]
    first = lr.cut(k=2)
    assert lr.cut(k=2) is first
    for i in range(lr.CUTS_KEPT):
        lr.cut(threshold=0.001 * (i + 1))
    again = lr.cut(k=2)
    assert again is not first and [m.tolist() for m in again.members] == [m.tolist() for m in first.members]


def test_every_layers_cut_at_once_is_each_layers_own_cut(small_cnn, small_images):
    s = inv.Session(small_cnn, small_images)
    one_by_one = s.explain(0)
    want = {n: one_by_one.layer(n).cut() for n in one_by_one.layers}
    s.clear_cache()
    exp = s.explain(0)
    got = exp.cuts()
    assert list(got) == exp.layers
    for name, cl in got.items():
        assert cl is exp.layer(name).cut()  # kept by the layer, as one cut at a time is
        assert cl.k == want[name].k and [m.tolist() for m in cl.members] == [m.tolist() for m in want[name].members]
        np.testing.assert_array_equal(cl.maps, want[name].maps)
        np.testing.assert_array_equal(cl.weights, want[name].weights)
    by_k = exp.cuts(k=2)
    assert all(cl.k == 2 for cl in by_k.values()) and by_k[exp.layers[0]] is exp.layer(0).cut(k=2)


def test_reveal_steps_show_growing_share():
    m = np.zeros((8, 8), np.float32)
    m[2:4, 2:4] = 1.0
    m += np.linspace(0, 0.5, 64).reshape(8, 8)
    shown = []
    for step in range(6):
        mask = reveal_mask(m, (128, 128), step)
        assert mask.shape == (128, 128) and mask.max() == pytest.approx(1.0)
        shown.append(float((mask > 0.5).mean()))
    assert all(b > a for a, b in zip(shown, shown[1:]))
    # what a player sees is close to the published share of pixels (soft edges add a little)
    for share, pct in zip(shown, REVEAL_PERCENTS):
        assert 0.8 * pct / 100 <= share <= 2 * pct / 100
    # the brightest block is revealed first
    mask0 = reveal_mask(m, (128, 128), 0)
    assert mask0[56, 56] > 0.8 and mask0[120, 8] < 0.05  # block (3, 3) is the brightest
    with pytest.raises(ValueError, match="0..5"):
        reveal_mask(m, (128, 128), 6)
    assert REVEAL_PERCENTS == (2.0, 4.5, 8.0, 13.0, 20.0, 30.0)


def test_reveal_image_from_cut(tiny_cnn, tiny_image):
    exp = inv.explain(tiny_cnn, tiny_image)
    cl = exp["conv2"].cut(k=2)
    img0, img5 = cl.reveal(0, 0), cl.reveal(0, 5)
    assert img0.shape == (32, 32, 3) and img0.dtype == np.uint8
    assert (img5 > 0).sum() > (img0 > 0).sum()
    with pytest.raises(IndexError):
        cl.reveal(5, 0)
