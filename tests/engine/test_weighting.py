"""Session(weighting=...): gradient x activation against plain autograd, and every later step following it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import inv_widgets as inv
from inv_widgets.engine import find_layers, run_model
from inv_widgets.engine.weights import WEIGHTINGS, check_weighting

from .helpers import reference_capture, scaled


@pytest.mark.slow
def test_taylor_statistic_equals_gradient_times_activation_by_autograd(tiny_cnn, tiny_image):
    layers = find_layers(tiny_cnn)
    cap = run_model(tiny_cnn, tiny_image[None], layers, target=3)
    for name in layers:
        a, g = reference_capture(tiny_cnn, tiny_image, name, 3)  # dY/dA by torch.autograd.grad
        torch.testing.assert_close(cap.taylor[name][0], (a * g).mean(dim=(1, 2)), rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_taylor_is_the_first_order_estimate_of_zeroing_a_channel(demo):
    """sum_ij(G A) predicts the logit drop of zeroing one channel (exactly for the layer the head reads
    linearly; closely elsewhere): the weighting estimates what ablation measures."""
    model, data = demo
    s = inv.Session(model, data, weighting="taylor")
    exp = s.explain(1)
    lr = exp[exp.layers[-1]]
    cap = run_model(model, s.input(1)[None], [lr.name], target=exp.target, layer_point=s.layer_point)
    taylor = cap.taylor[lr.name][0].numpy() * np.prod(lr.shape)  # sum over pixels
    top = np.argsort(-taylor)[:8]
    ab = lr.ablation([[c] for c in top])
    from scipy.stats import spearmanr

    assert spearmanr(taylor[top], ab.logit_drop).statistic > 0.7
    np.testing.assert_allclose(ab.logit_drop, taylor[top], rtol=0.5, atol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_everything_after_the_pass_follows_the_weighting(small_cnn, small_images, weighting):
    """The keep filter, the cluster weights, the published maps and Deep Reveal follow the weighting."""
    s = inv.Session(small_cnn, small_images, weighting=weighting, maps="published")
    exp = s.explain(0)
    assert exp.weighting == weighting and s.weighting == weighting and f"weighting={weighting!r}" in repr(s)
    for name in exp.layers:
        lr = exp[name]
        cap = run_model(small_cnn, s.input(0)[None], [name], target=exp.target, layer_point=s.layer_point)
        alpha = (cap.guided if weighting == "guided" else cap.taylor)[name][0].clamp_min(0).numpy()
        want = 100 * alpha / alpha.sum() if alpha.sum() > 0 else np.zeros_like(alpha)
        np.testing.assert_allclose(lr.channel_weights, want, rtol=1e-5, atol=1e-6)
        assert lr.weighting == weighting
        # the keep filter, the cluster weights and maps use these weights
        c = lr.n_channels
        np.testing.assert_array_equal(lr.kept, np.flatnonzero((want >= 89.6 / c) & (want > 0)))
        if not len(lr.kept):
            continue
        cl = lr.cut()
        for j in range(cl.k):
            m = cl.members[j]
            assert cl.weights[j] == pytest.approx(want[m].sum(), rel=1e-5)
            rows = np.searchsorted(lr.kept, m)
            acts = lr.feature_maps[rows]
            mean = np.tensordot(want[m], acts, axes=1) / want[m].sum()
            np.testing.assert_allclose(cl.maps_lowres[j], scaled(mean), rtol=1e-4, atol=1e-5)
        # Deep Reveal shows that map
        from inv_widgets.engine.maps import reveal_image

        np.testing.assert_array_equal(cl.reveal(0, 2), reveal_image(exp.image, cl.maps_lowres[0], 2))


@pytest.mark.slow
def test_the_weightings_differ_and_keys_name_member_channels_only(demo):
    """Another weighting keeps other channels and finds other clusters; a MapKey names the member channels,
    so a key is found again wherever its channels form a cluster (under either weighting)."""
    model, data = demo
    g = inv.Session(model, data).explain(0)
    t = inv.Session(model, data, weighting="taylor").explain(0)
    name = g.layers[4]
    assert not np.allclose(g[name].channel_weights, t[name].channel_weights)
    key = g[name].cut().key(0)
    assert key.members == tuple(sorted(g[name].cut().members[0]))
    s = inv.Session(model, data, weighting="taylor")
    try:
        i, cl, j = s.locate(key)
    except KeyError as e:
        assert "dendrogram" in str(e) or "kept" in str(e)
    else:
        assert tuple(sorted(cl.members[j])) == key.members and cl.layer.weighting == "taylor"


def test_bad_weighting_is_refused_with_the_choices(small_cnn):
    with pytest.raises(ValueError, match=r"weighting 'gradcam' is unknown; use one of \['guided', 'taylor'\]"):
        inv.Session(small_cnn, weighting="gradcam")
    assert check_weighting("taylor") == "taylor"


@pytest.mark.slow
def test_a_run_follows_the_sessions_weighting(demo, tmp_path):
    model, _ = demo
    s = inv.Session(model, inv.demo.PartsDataset(8), weighting="taylor")
    run = inv.explain_dataset(s, range(4), out=tmp_path / "t", batch_size=4, progress=False)
    assert run.weighting == "taylor" and run.meta["weighting"] == "taylor"
    exps = s.explain_many(range(4), batch_size=4)
    for i, exp in enumerate(exps):
        for name in exp.layers:
            cl, rl = exp[name].cut(), run[i][name]
            assert [m.tolist() for m in rl.members] == [m.tolist() for m in cl.members]
            np.testing.assert_allclose(rl.weights, cl.weights, rtol=1e-6)
