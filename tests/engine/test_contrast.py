"""Class-contrastive cluster maps (engine/contrast.py): channel groups extended to every channel, the gradient map
types, and what each map type means."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inv_widgets.engine.contrast import (
    MAP_MEANINGS,
    MAP_TYPES,
    check_maps,
    extend_groups,
    group_maps,
    group_weights,
    map_meaning,
    nearest_kept,
    nearest_kept_many,
    variant_cut,
)


def _layer(seed=0, c=6, h=5, w=5):
    g = torch.Generator().manual_seed(seed)
    acts = torch.rand(c, h, w, generator=g)
    acts[:3, :, :2] = 0.0  # channels 0-2 fire on the right, 3-5 on the left
    acts[3:, :, 3:] = 0.0
    grads = torch.randn(c, h, w, generator=g)
    return acts, grads


def test_every_channel_joins_the_cluster_of_the_kept_channel_it_resembles():
    acts, _ = _layer()
    acts[5] = 0.0  # a channel that never fires
    kept, assignment = np.array([0, 3]), np.array([0, 1])
    groups = extend_groups(acts, kept, assignment, 2)
    assert groups[0] == 0 and groups[3] == 1  # kept channels keep the cut's clusters
    assert list(groups[[1, 2]]) == [0, 0] and groups[4] == 1  # others: the cluster of the nearest kept channel
    assert groups[5] == -1  # a flat channel adds nothing anywhere
    pruned = extend_groups(acts, kept, np.array([0, -1]), 1)
    assert pruned[3] == -1  # a channel a pruning cut dropped stays out
    assert (extend_groups(acts, np.array([], int), np.array([], int), 0) == -1).all()


def _nearest_reference(acts, kept):
    """Brute force in float64: each other channel's nearest kept channel (the first of equal ones), -1 if flat."""
    rows = acts.reshape(acts.shape[0], -1).double()
    lo, hi = rows.min(1, keepdim=True).values, rows.max(1, keepdim=True).values
    rows = torch.where(hi > lo, (rows - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi)), 0.0)
    others = [c for c in range(acts.shape[0]) if c not in set(kept.tolist())]
    out = [int(((rows[kept] - rows[o]) ** 2).sum(1).argmin()) if hi[o] > lo[o] else -1 for o in others]
    return np.array(others), np.array(out)


@pytest.mark.parametrize("c,hw", [(16, 4096), (64, 256), (40, 1)])
def test_nearest_kept_channel_is_the_exact_nearest_even_for_copies_and_flat_maps(c, hw):
    g = torch.Generator().manual_seed(c)
    acts = torch.rand(c, hw, 1, generator=g) * (torch.rand(c, 1, 1, generator=g) * 50)
    kept = np.arange(0, c, 3)
    acts[kept[1]] = acts[kept[0]]  # two kept channels alike: a tie, the first wins
    acts[1] = acts[kept[0]] * 2.0 + 1.0  # scaled alike: the same row after min-max scaling
    acts[2] = 7.0  # flat: in no cluster
    acts[4] = acts[kept[2]] + 1e-6 * torch.rand(hw, 1, generator=g)  # a near tie float32 could decide
    others, near = nearest_kept(acts, kept)
    ref_others, ref = _nearest_reference(acts, kept)
    assert np.array_equal(others, ref_others) and np.array_equal(near, ref)
    if hw == 1:  # 1 x 1 maps are all flat
        assert (near == -1).all()
    else:
        assert near[list(others).index(1)] == 0 and near[list(others).index(2)] == -1


@pytest.mark.parametrize("hw", [64, 9000])  # a batch of small maps at once, and large ones a few at a time
def test_nearest_kept_of_a_batch_equals_each_image_by_itself(hw):
    g = torch.Generator().manual_seed(hw)
    b, c = 7, 24
    acts = torch.rand(b, c, hw, 1, generator=g) * (torch.rand(b, c, 1, 1, generator=g) * 10)
    kepts = [np.arange(i % 3, c, 2 + i % 3) for i in range(b)]
    kepts[1] = np.arange(c)  # every channel kept: nothing to join
    kepts[2] = np.array([], np.int64)  # none kept: every other channel in no cluster
    kepts[3] = np.array([5])  # one kept channel: every moving channel joins it
    acts[4, 3] = acts[4, 1] * 3.0  # a copy of a kept channel (scaled alike) and a flat channel
    acts[4, 2] = 2.0
    k0, k1 = kepts[5][:2]  # two kept channels a rounding apart, and a channel equal to the first: a near tie
    acts[5, k1] = acts[5, k0] + 1e-6 * torch.rand(hw, 1, generator=g)
    acts[5, 1] = acts[5, k0]
    many = nearest_kept_many(acts, kepts)
    assert len(many) == b
    for i in range(b):
        others, near = nearest_kept(acts[i], kepts[i])
        assert np.array_equal(many[i][0], others) and np.array_equal(many[i][1], near)
        if len(kepts[i]) and len(others):  # and the brute-force float64 answer
            ref_others, ref = _nearest_reference(acts[i], kepts[i])
            assert np.array_equal(many[i][0], ref_others) and np.array_equal(many[i][1], ref)
    assert len(many[1][0]) == 0 and (many[2][1] == -1).all() and set(many[3][1].tolist()) <= {0, -1}
    near4 = dict(zip(many[4][0].tolist(), many[4][1].tolist()))
    assert near4[2] == -1 and near4[3] == 0  # flat: in no cluster; the copy: with the kept channel it copies
    assert dict(zip(many[5][0].tolist(), many[5][1].tolist()))[1] == 0  # the tie goes to the exact nearest
    with pytest.raises(ValueError, match="kept channels for 2 images"):
        nearest_kept_many(acts, kepts[:2])


def test_gradient_maps_keep_the_sign_and_sum_to_the_layers_gradcam():
    acts, grads = _layer(1)
    groups = np.array([0, 0, 1, 1, 2, 2])
    cam = group_maps(acts, grads, groups, 3, "gradcam")
    want = [torch.relu((grads[g].mean((1, 2))[:, None, None] * acts[g]).sum(0)) for g in ([0, 1], [2, 3], [4, 5])]
    torch.testing.assert_close(cam, torch.stack(want))
    signed = group_maps(acts, grads, groups, 3, "signed")
    torch.testing.assert_close(signed[0], torch.relu((grads[:2] * acts[:2]).sum(0)))
    # before the cut at zero, the clusters' Grad-CAMs add up to the layer's: nothing of the layer is lost
    whole = (grads.mean((1, 2))[:, None, None] * acts).sum(0)
    parts = sum((grads[g].mean((1, 2))[:, None, None] * acts[g]).sum(0) for g in ([0, 1], [2, 3], [4, 5]))
    torch.testing.assert_close(parts, whole)
    with pytest.raises(ValueError, match="kind must be one of"):
        group_maps(acts, grads, groups, 3, "published")


def test_group_weights_are_first_order_worth_in_percent():
    acts, grads = _layer(2)
    t = (grads * acts).mean((1, 2)).double().numpy()
    groups = np.array([0, 0, 0, 1, 1, -1])
    w = group_weights(acts, grads, groups, 2)
    total = np.clip(t, 0, None).sum()
    np.testing.assert_allclose(w, [100 * t[:3].sum() / total, 100 * t[3:5].sum() / total])


def test_variant_cut_gives_maps_in_unit_range_aligned_with_the_cut():
    acts, grads = _layer(3)
    v = variant_cut(acts, grads, np.array([0, 3]), np.array([0, 1]), 2, "gradcam", (20, 20))
    assert v["maps"].shape == (2, 20, 20) and v["maps_lowres"].shape == (2, 5, 5) and v["weights"].shape == (2,)
    assert v["maps"].min() >= 0 and v["maps"].max() <= 1
    assert v["groups"][0] == 0 and v["groups"][3] == 1


def test_every_map_type_says_what_it_shows():
    assert set(MAP_MEANINGS) == set(MAP_TYPES) and MAP_TYPES[0] == "published"
    assert "not where the model looks" in map_meaning("published") and map_meaning() == map_meaning("published")
    for kind in MAP_TYPES:
        assert len(MAP_MEANINGS[kind]) < 300
    with pytest.raises(ValueError, match="maps 'saliency' is unknown"):
        check_maps("saliency")


def test_session_maps_gradcam_is_the_evaluated_variant_and_a_run_stores_the_same(demo, tmp_path):
    """Session(maps="gradcam") draws each cluster map as the evaluation measured it (engine.sanity.explain_images),
    its ablation zeroes every channel the map is drawn from, and a stored run gives the same maps (engine/cut)."""
    import inv_widgets as inv
    from inv_widgets.engine.sanity import explain_images

    model, data = demo
    s = inv.Session(model, data, layer_point="activation", maps="gradcam", cache_size=4)
    assert s.fingerprint.endswith("-act-gradcam") and "maps='gradcam'" in repr(s)
    last = s.layers[-1]
    cl = s.explain(0)[last].cut()
    ref = explain_images(
        model, data[0][0][None], [data.array(0)], None, s.layers, point="activation", kinds=("gradcam",)
    )[0]["maps"][last]["gradcam"]
    np.testing.assert_allclose(cl.maps, ref.maps, atol=1e-5)
    np.testing.assert_allclose(cl.weights, ref.weights)
    assert all(set(m) <= set(c) for m, c in zip(cl.members, cl.cut.channels))  # kept members and the others
    ab = cl.ablation()
    assert list(ab.sizes) == [len(c) for c in cl.cut.channels]
    run = inv.explain_dataset(s, [0, 1], out=tmp_path / "run", progress=False)
    assert run.map_type == "gradcam" and run.layer_point == "activation"
    stored = run[0][last]
    np.testing.assert_allclose(stored.maps_lowres, cl.maps_lowres, atol=1e-3)  # stored as float16
    np.testing.assert_allclose(stored.weights, cl.weights, rtol=1e-6)
    with pytest.raises(ValueError, match="maps 'signed' is unknown"):
        inv.Session(model, data, maps="signed")
