"""Capture (hooks), the model's state after a pass, per-channel weights and Grad-CAM, on tiny and torchvision
models, against plain autograd and captum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from nets import TinyCNN

import inv_widgets as inv
from inv_widgets.engine import find_layers, run_model
from inv_widgets.engine.weights import guided_alpha

from .helpers import reference_capture


def test_capture_matches_autograd_with_inplace_relu_skip_bn_depthwise_concat(tiny_cnn, tiny_image):
    tiny, image = tiny_cnn, tiny_image
    layers = find_layers(tiny)
    assert layers == ["conv1", "conv2", "dw", "conv3"]
    cap = run_model(tiny, image[None], layers, target=2, keep_gradients=True)
    lean = run_model(tiny, image[None], layers, target=2)  # what a Session runs: gradients reduced in the hook
    assert cap.order == lean.order == layers and cap.targets == [2] and lean.gradients == {}
    for name in layers:
        a_ref, g_ref = reference_capture(tiny, image, name, 2)
        torch.testing.assert_close(cap.activations[name][0], a_ref)
        torch.testing.assert_close(cap.gradients[name][0], g_ref, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(
            lean.guided[name][0], guided_alpha(a_ref[None], g_ref[None])[0], rtol=1e-4, atol=1e-7
        )
        torch.testing.assert_close(lean.grad_mean[name][0], g_ref.mean(dim=(1, 2)), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    "arch,mode",
    [
        ("vgg16", "conv"),
        ("resnet18", "conv"),
        ("resnet18", "blocks"),
        ("mobilenet_v3_small", "conv"),
        ("densenet121", "blocks"),
    ],
)
@pytest.mark.slow
def test_torchvision_models_capture_and_explain(arch, mode):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    layers = find_layers(model, mode)
    if arch == "resnet18" and mode == "blocks":
        assert layers == ["conv1"] + [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
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


def test_model_state_untouched_after_explain(tiny_cnn, tiny_image):
    tiny = tiny_cnn
    tiny.train()
    try:
        before = {k: v.clone() for k, v in tiny.state_dict().items()}
        inv.explain(tiny, tiny_image)
        assert tiny.training  # mode as the caller left it
        assert all(p.grad is None for p in tiny.parameters())  # no .grad left behind
        for k, v in tiny.state_dict().items():  # BatchNorm running stats untouched (eval during the pass)
            torch.testing.assert_close(v, before[k])
        assert all(not mod._forward_hooks for mod in tiny.modules())
    finally:
        tiny.eval()


def test_predict_restores_each_modules_own_mode(tiny_cnn):
    """Session.predict runs in eval mode and gives every module its own flag back (not one flag for all)."""
    tiny = tiny_cnn
    tiny.train()
    tiny.bn1.eval()  # a frozen BatchNorm inside a training model
    try:
        s = inv.Session(tiny, [torch.rand(3, 16, 16)])
        p = s.predict(0)
        assert p.shape == (5,) and p.sum() == pytest.approx(1.0, abs=1e-5)
        assert tiny.training and tiny.conv1.training and not tiny.bn1.training
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


@pytest.mark.slow
def test_gradcam_agrees_with_captum():
    from captum.attr import LayerAttribution, LayerGradCam

    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(2))
    exp = inv.explain(model, x, layer_point="conv")  # captum reads the module's own output
    for name in ["layer2.0.conv1", "layer3.1.conv2", "layer4.1.conv2"]:
        attr = LayerGradCam(model, dict(model.named_modules())[name]).attribute(
            x[None], target=exp.target, relu_attributions=True
        )
        up = LayerAttribution.interpolate(attr, (96, 96), interpolate_mode="bilinear")[0, 0].detach()
        up = (up - up.min()) / (up.max() - up.min())
        ours = exp[name].gradcam()
        assert ours.shape == (96, 96)
        np.testing.assert_allclose(ours, up.numpy(), atol=1e-4)


def test_run_model_takes_the_predicted_class_where_a_target_is_none(tiny_cnn, tiny_image):
    x = torch.stack([tiny_image, tiny_image.flip(-1)])
    pred = run_model(tiny_cnn, x, find_layers(tiny_cnn)).targets
    cap = run_model(tiny_cnn, x, find_layers(tiny_cnn), [None, (pred[1] + 1) % 5])
    assert cap.targets == [pred[0], (pred[1] + 1) % 5]


def test_outputs_recorded_without_copy_unless_changed_in_place():
    """A layer output is kept as the model made it (no copy), unless the model changes it in place later (an
    in-place ReLU after the layer: then the pass is rerun once with a copy, found by the tensor's version) or
    another recorded layer shares its memory."""
    from torch import nn

    from inv_widgets.engine.capture import _copied

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.Identity(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    ).eval()
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        a0 = model[0](x)
        a2 = model[2](a0.relu())
        a4 = model[4](model[3](a2))
    made = {}
    model[2].register_forward_hook(lambda m, i, o: made.__setitem__("2", o.untyped_storage().data_ptr()))
    for _ in range(2):  # the first call finds out that layer 0 is changed in place, the second knows it
        cap = run_model(model, x, ["0", "2", "4", "5"], target=1)
        torch.testing.assert_close(cap.activations["0"], a0)  # not the ReLU'd tensor
        assert cap.activations["0"].min() < 0
        torch.testing.assert_close(cap.activations["2"], a2)
        torch.testing.assert_close(cap.activations["4"], a4)
        torch.testing.assert_close(cap.activations["5"], a4)
        assert _copied[model] == {"0"}
        assert cap.activations["2"].untyped_storage().data_ptr() == made["2"]  # the model's own tensor
        # layer 5 (Identity) returns layer 4's tensor: recorded as a copy, so changing one leaves the other
        assert cap.activations["5"].untyped_storage().data_ptr() != cap.activations["4"].untyped_storage().data_ptr()
        cap.activations["4"].zero_()
        torch.testing.assert_close(cap.activations["5"], a4)


def test_channel_statistics_per_image_equal_the_batched_expressions():
    from inv_widgets.engine.weights import channel_statistics, taylor_alpha

    g = torch.Generator().manual_seed(0)
    a, gr = torch.randn(5, 7, 9, 11, generator=g), torch.randn(5, 7, 9, 11, generator=g)
    gr[0, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -0.0])
    # the odd values where the mask A > 0 is on and where it is off: inf * 0 and NaN must not leak through
    a[1, 2, 0, :4] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    gr[1, 2, 0, :4] = torch.tensor([float("inf"), float("inf"), float("nan"), float("nan")])
    a[2, 3, 0, :2] = torch.tensor([-1.0, 0.0])
    gr[2, 3, 0, :2] = torch.tensor([float("inf"), float("-inf")])
    gr[3] = -0.0  # every product a signed zero
    guided, mean, taylor = channel_statistics(a, gr)
    exact = dict(rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(guided, guided_alpha(a, gr), **exact)
    assert torch.equal(guided.view(torch.int32), guided_alpha(a, gr).view(torch.int32))  # bit for bit, signed zeros too
    assert guided[1, 2].isinf() and guided[2, 3] == guided_alpha(a[2:3, 3:4], gr[2:3, 3:4])[0, 0]
    assert not guided.isnan().any()  # a NaN gradient counts as not positive, as in guided_alpha
    torch.testing.assert_close(mean, gr.mean(dim=(2, 3)), **exact)
    torch.testing.assert_close(taylor, taylor_alpha(a, gr), **exact)
    assert channel_statistics(a, gr, "guided")[2] is None and channel_statistics(a, gr, "taylor")[0] is None


def test_inference_mode_gets_a_clear_error_and_no_grad_is_fine(tiny_cnn, tiny_image):
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside the `with torch.inference_mode"):
        run_model(tiny_cnn, tiny_image[None], ["conv1"])
    s = inv.Session(tiny_cnn, [tiny_image])
    with torch.inference_mode(), pytest.raises(RuntimeError, match="^INV needs the gradients"):
        s.explain(0)  # said as it is, not as the model failing on the image
    assert s.explain(0).layers  # and outside the block it explains
    with torch.no_grad():
        cap = run_model(tiny_cnn, tiny_image[None], ["conv1"])
    assert cap.guided["conv1"].abs().sum() > 0
