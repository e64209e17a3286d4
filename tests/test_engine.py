"""Engine: capture, weights, recipes, cuts, cluster maps, reveal, on tiny and torchvision models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import adjusted_rand_score
from torch import nn

import inv_widgets as inv
from inv_widgets.engine import build_tree, assign, find_layers, run_model
from inv_widgets.engine.cluster import prune_mask
from inv_widgets.engine.weights import guided_alpha
from inv_widgets.engine.maps import REVEAL_PERCENTS, reveal_mask

from engine_helpers import TinyCNN, reference_capture


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture(scope="module")
def image():
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))


# ---- capture -------------------------------------------------------------------------------------

def test_capture_matches_autograd_with_inplace_relu_skip_bn_depthwise_concat(tiny, image):
    layers = find_layers(tiny)
    assert layers == ["conv1", "conv2", "dw", "conv3"]
    cap = run_model(tiny, image[None], layers, target=2, keep_gradients=True)
    lean = run_model(tiny, image[None], layers, target=2)  # what a Session runs: gradients reduced in the hook
    assert cap.order == lean.order == layers and cap.targets == [2] and lean.gradients == {}
    for name in layers:
        a_ref, g_ref = reference_capture(tiny, image, name, 2)
        torch.testing.assert_close(cap.activations[name][0], a_ref)
        torch.testing.assert_close(cap.gradients[name][0], g_ref, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(lean.guided[name][0], guided_alpha(a_ref[None], g_ref[None])[0], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(lean.grad_mean[name][0], g_ref.mean(dim=(1, 2)), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("arch,mode", [
    ("vgg16", "conv"), ("resnet18", "conv"), ("resnet18", "blocks"),
    ("mobilenet_v3_small", "conv"), ("densenet121", "blocks"),
])
def test_torchvision_models_capture_and_explain(arch, mode):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    layers = find_layers(model, mode)
    if arch == "resnet18" and mode == "blocks":
        assert layers == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    if arch == "densenet121":
        assert "features.denseblock1" in layers and "features.transition1" in layers
    s = inv.Session(model, [x], layers=layers)
    exp = s.explain(0, lazy=True)
    assert set(exp.layers) == set(layers)
    # gradients agree with plain autograd on a copy without in-place ops, for a few layers
    for name in [exp.layers[0], exp.layers[len(exp.layers) // 2], exp.layers[-1]]:
        cap = run_model(model, x[None], [name], target=exp.target, keep_gradients=True)
        a_ref, g_ref = reference_capture(model, x, name, exp.target)
        torch.testing.assert_close(cap.activations[name][0], a_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(cap.gradients[name][0], g_ref, rtol=1e-3, atol=1e-6)
    lr = exp[exp.layers[-1]]
    assert lr.channel_weights.sum() == pytest.approx(100.0, abs=1e-3) or lr.channel_weights.sum() == 0
    cl = lr.cut()
    assert cl.maps.shape[1:] == (64, 64)


def test_hooks_removed_and_mode_restored_after_exception():
    class Broken(TinyCNN):
        def forward(self, x):
            super().forward(x)
            raise RuntimeError("boom")

    m = Broken().train()
    m.conv2.eval()  # a mixed state must come back exactly
    flags = {n: p.requires_grad for n, p in m.named_parameters()}
    m.conv1.weight.requires_grad_(False)
    flags["conv1.weight"] = False
    with pytest.raises(RuntimeError, match="boom"):
        run_model(m, torch.rand(1, 3, 16, 16), find_layers(m))
    assert all(not mod._forward_hooks for mod in m.modules())
    assert m.training and m.conv1.training and not m.conv2.training
    assert {n: p.requires_grad for n, p in m.named_parameters()} == flags


def test_model_state_untouched_after_explain(tiny, image):
    tiny.train()
    try:
        before = {k: v.clone() for k, v in tiny.state_dict().items()}
        inv.explain(tiny, image)
        assert tiny.training  # mode as the caller left it
        assert all(p.grad is None for p in tiny.parameters())  # no .grad left behind
        for k, v in tiny.state_dict().items():  # BatchNorm running stats untouched (eval during the pass)
            torch.testing.assert_close(v, before[k])
        assert all(not mod._forward_hooks for mod in tiny.modules())
    finally:
        tiny.eval()


# ---- weights -------------------------------------------------------------------------------------

def test_guided_weights_and_filter_by_hand():
    from inv_widgets.engine.weights import guided_weights, keep_channels

    a = torch.tensor([[[[1.0, -1.0]], [[2.0, 2.0]], [[0.0, 3.0]], [[1.0, 1.0]]]])  # (1, 4, 1, 2)
    g = torch.tensor([[[[2.0, 5.0]], [[-1.0, 1.0]], [[4.0, 4.0]], [[0.01, 0.0]]]])
    # alpha: ch0 mean(2, 0) = 1; ch1 mean(0, 1) = 0.5; ch2 mean(0, 4) = 2; ch3 mean(.01, 0) = .005
    pct = guided_weights(a, g)[0]
    expected = torch.tensor([1.0, 0.5, 2.0, 0.005]) / 3.505 * 100
    torch.testing.assert_close(pct, expected)
    # shares 28.5, 14.3, 57.1, 0.14 %; the bar is 89.6 / 4 = 22.4 %
    assert keep_channels(pct).tolist() == [0, 2]


def test_gradcam_agrees_with_captum():
    from captum.attr import LayerAttribution, LayerGradCam

    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(2))
    exp = inv.explain(model, x)
    for name in ["layer2.0.conv1", "layer3.1.conv2", "layer4.1.conv2"]:
        attr = LayerGradCam(model, dict(model.named_modules())[name]).attribute(
            x[None], target=exp.target, relu_attributions=True)
        up = LayerAttribution.interpolate(attr, (96, 96), interpolate_mode="bilinear")[0, 0].detach()
        up = (up - up.min()) / (up.max() - up.min())
        ours = exp[name].gradcam()
        assert ours.shape == (96, 96)
        np.testing.assert_allclose(ours, up.numpy(), atol=1e-4)


# ---- recipes and cuts ----------------------------------------------------------------------------

def planted_maps(seed=0, per_group=12, size=16):
    """Three groups of channels, each a noisy copy of a blob at a different place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = [(3, 3), (12, 4), (8, 12)]
    maps, truth = [], []
    for g, (cy, cx) in enumerate(centres):
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)
        for _ in range(per_group):
            maps.append(blob * rng.uniform(0.5, 2.0) + rng.normal(0, 0.03, blob.shape))
            truth.append(g)
    return torch.tensor(np.array(maps), dtype=torch.float32), np.array(truth)


@pytest.mark.parametrize("recipe", ["fast", "paper", "paper-sklearn"])
def test_recipes_recover_planted_groups(recipe):
    maps, truth = planted_maps()
    tree = build_tree(maps, recipe)
    assert tree.linkage.shape == (len(truth) - 1, 4)
    assert tree.suggested_k == 3
    assert adjusted_rand_score(truth, assign(tree)) == 1.0


def test_recipe_is_deterministic():
    maps, _ = planted_maps(seed=5)
    for recipe in ("fast", "paper"):
        a, b = build_tree(maps, recipe), build_tree(maps.clone(), recipe)
        np.testing.assert_array_equal(a.linkage, b.linkage)


def test_tsne_of_several_layers_side_by_side_equals_one_at_a_time():
    """Batching pads each set to a bucket, not to its batch: a layer's embedding is the same bit for bit
    whether it runs alone or with others of the same or another size."""
    from inv_widgets.engine.tsne import tsne_exact, tsne_exact_many

    g = torch.Generator().manual_seed(0)
    sizes = [40, 33, 64, 5, 1, 90, 36]  # 33, 36 and 40 share a bucket; 1 point has no embedding to learn
    xs = [torch.randn(n, 12, generator=g).double() for n in sizes]
    together = tsne_exact_many(xs, max_iter=300)
    for x, y in zip(xs, together):
        assert y.shape == (x.shape[0], 2) and np.isfinite(y).all()
        np.testing.assert_array_equal(y, tsne_exact(x, max_iter=300))
    # the embedding separates what is apart: two far-away blobs land in two groups
    blobs = torch.cat([torch.randn(30, 12, generator=g), torch.randn(30, 12, generator=g) + 20]).double()
    labels = fcluster(linkage(tsne_exact(blobs), method="ward"), 2, criterion="maxclust")
    assert adjusted_rand_score(np.repeat([0, 1], 30), labels) == 1.0


def test_compute_builds_the_same_trees_as_layer_by_layer(tiny, image):
    s = inv.Session(tiny, [image])
    lazy = s.explain(0, recipe="paper", lazy=True)
    one_by_one = [lazy.layer(n).tree for n in lazy.layers]
    seen = []
    together = inv.Session(tiny, [image]).explain(0, recipe="paper", progress=lambda d, t, m: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] == len(together.layers) + 1
    for name, a in zip(together.layers, one_by_one):
        b = together[name].tree
        np.testing.assert_array_equal(a.linkage, b.linkage)
        assert a.suggested_k == b.suggested_k


def test_cut_by_k_threshold_and_prune():
    maps, _ = planted_maps(seed=1)
    tree = build_tree(maps, "fast")
    for k in range(1, 8):
        labels = assign(tree, k=k)
        assert len(np.unique(labels)) == k
        np.testing.assert_array_equal(labels, assign(tree, threshold=tree.threshold_for(k)))
    with pytest.raises(ValueError, match="either k or threshold"):
        assign(tree, k=2, threshold=1.0)
    w = np.array([50.0, 30.0, 15.0, 5.0])
    # bar = max(50 / 3, 25 / 2) = 16.7: the two light clusters go
    assert prune_mask(w).tolist() == [True, True, False, False]


def test_explanation_cut_maps_weights_members(tiny, image):
    s = inv.Session(tiny, [image])
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
    np.testing.assert_allclose(cl.maps_lowres[j], low, rtol=1e-5, atol=1e-6)
    # identity: sorted members, independent of position in the list
    key = cl.key(j)
    assert key.members == tuple(sorted(cl.members[j].tolist())) and key.layer == "conv2"
    assert key.model == s.fingerprint and key.image_id == s.image_id(0) and key.target == exp.target


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


def test_reveal_image_from_cut(tiny, image):
    exp = inv.explain(tiny, image)
    cl = exp["conv2"].cut(k=2)
    img0, img5 = cl.reveal(0, 0), cl.reveal(0, 5)
    assert img0.shape == (32, 32, 3) and img0.dtype == np.uint8
    assert (img5 > 0).sum() > (img0 > 0).sum()
    with pytest.raises(IndexError):
        cl.reveal(5, 0)
