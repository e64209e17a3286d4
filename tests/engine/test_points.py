"""layer_point: a layer's maps read where the network hands them on (after BatchNorm and activation), and its
channels zeroed at the same point."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nets import TinyCNN
from torch import nn

import inv_widgets as inv
from inv_widgets.engine.ablation import ModelProbe
from inv_widgets.engine.capture import forward_activations, run_model
from inv_widgets.engine.points import points_for, trace_points


class Residual(nn.Module):
    """ResNet's pattern: one ReLU module shared by the block, and ``out += identity`` between bn2 and the ReLU."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv1 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(6, 3)
        with torch.no_grad():  # BatchNorm statistics that are not the identity, and a negative scale
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(-1.0, 1.0)
                bn.bias.uniform_(-0.3, 0.3)

    def forward(self, x):
        identity = self.conv0(x)
        out = self.relu(self.bn1(self.conv1(identity)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.head(self.relu(out).mean((2, 3)))


def _x(seed=0, size=16):
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_the_chain_is_followed_through_bn_inplace_relu_and_shared_modules():
    torch.manual_seed(0)
    tiny = TinyCNN().eval()
    p = trace_points(tiny, _x()[:1], ["conv1", "conv2", "dw", "conv3"])
    assert p["conv1"].module == "relu1" and p["conv1"].chain == ("conv1", "bn1", "relu1")
    assert p["conv2"].chain == ("conv2", "relu2")  # no BatchNorm: the in-place ReLU right after the conv
    assert p["dw"].module == "dw" and p["conv3"].module == "conv3"  # nothing after / a function call: own output
    torch.manual_seed(0)
    res = Residual().eval()
    p = trace_points(res, _x()[:1], ["conv0", "conv1", "conv2"])
    assert p["conv1"].module == "relu" and p["conv1"].call == 0  # the shared ReLU's first call
    assert p["conv2"].chain == ("conv2", "bn2")  # `out += identity` ends the chain before the ReLU
    assert p["conv0"].chain == ("conv0",)
    # "conv" reads every layer at its own output
    assert {n: q.module for n, q in points_for(res, ["conv1", "conv2"], "conv").items()} == {
        "conv1": "conv1",
        "conv2": "conv2",
    }
    with pytest.raises(ValueError, match="layer_point 'pre' is unknown"):
        points_for(res, ["conv1"], "pre")


def test_activation_point_records_what_the_network_hands_on_and_its_gradient():
    torch.manual_seed(0)
    res = Residual().eval()
    x = _x()
    cap = run_model(res, x, ["conv1", "conv2"], target=1, keep_gradients=True, layer_point="activation")
    with torch.no_grad():
        identity = res.conv0(x)
        a1 = torch.relu(res.bn1(res.conv1(identity)))
        b2 = res.bn2(res.conv2(a1))
    assert torch.allclose(cap.activations["conv1"], a1, atol=1e-6)
    assert torch.allclose(cap.activations["conv2"], b2, atol=1e-6)  # before the shortcut, not after the add
    # the gradient is the target's gradient at that tensor (finite differences on one channel's maps)
    xx = x.clone().requires_grad_(True)
    identity = res.conv0(xx)
    a1 = torch.relu(res.bn1(res.conv1(identity)))
    a1.retain_grad()
    b2 = res.bn2(res.conv2(a1))
    b2.retain_grad()
    out = b2 + identity
    res.head(torch.relu(out).mean((2, 3)))[:, 1].sum().backward()
    assert torch.allclose(cap.gradients["conv1"], a1.grad, atol=1e-6)
    assert torch.allclose(cap.gradients["conv2"], b2.grad, atol=1e-6)
    # the conv point still reads the convolution's output
    conv = run_model(res, x, ["conv2"], target=1, layer_point="conv")
    with torch.no_grad():
        assert torch.allclose(
            conv.activations["conv2"], res.conv2(torch.relu(res.bn1(res.conv1(res.conv0(x))))), atol=1e-6
        )
    assert torch.allclose(
        forward_activations(res, x, ["conv1", "conv2"], layer_point="activation")["conv2"],
        cap.activations["conv2"],
        atol=1e-6,
    )


def test_ablation_zeroes_channels_at_the_same_point():
    torch.manual_seed(0)
    res = Residual().eval()
    x = _x()[0]
    keep = torch.ones(2, 6)
    keep[1, [0, 2]] = 0.0
    got = ModelProbe(res, x, 1, layer_point="activation").ablate("conv2", keep)
    with torch.no_grad():
        identity = res.conv0(x[None])
        b2 = res.bn2(res.conv2(torch.relu(res.bn1(res.conv1(identity)))))
        want = res.head(torch.relu(b2 * keep[1][None, :, None, None] + identity).mean((2, 3)))[0]
        plain = res(x[None])[0]
    assert torch.allclose(got[0], plain, atol=1e-5) and torch.allclose(got[1], want, atol=1e-5)
    # at the conv point the same keep mask zeroes before BatchNorm: the channel comes back as its shift
    conv = ModelProbe(res, x, 1, layer_point="conv").ablate("conv2", keep)
    assert not torch.allclose(conv[1], want, atol=1e-4)


def test_session_layer_point_reaches_maps_weights_and_ablation(demo):
    model, data = demo
    act = inv.Session(model, data, cache_size=1, maps="published")
    conv = inv.Session(model, data, layer_point="conv", cache_size=1, maps="published")
    assert act.layer_point == "activation" and conv.layer_point == "conv"  # "activation" is the default
    last = act.layers[-1]
    ea, ec = act.explain(0, lazy=True), conv.explain(0, lazy=True)
    # after BatchNorm and ReLU: another set of kept channels, and maps the network passes on (no negative part
    # was cut off by the explanation: what the ReLU left is what is shown)
    assert not np.array_equal(ea[last].kept, ec[last].kept)
    ab = ea[last].ablation([ea[last].kept[:2]])
    keep = torch.ones(ea[last].n_channels)
    keep[torch.as_tensor(ea[last].kept[:2])] = 0.0
    h = model.features.block4_relu2.register_forward_hook(lambda m, i, o: o * keep[None, :, None, None])
    try:
        with torch.no_grad():
            lo = model(data[0][0][None])[0]
    finally:
        h.remove()
    assert ab.logit_drop[0] == pytest.approx(float(ea.logits[ea.target] - lo[ea.target]), abs=1e-4)
    with pytest.raises(ValueError, match="layer_point"):
        inv.Session(model, data, layer_point="after")


class NeedsSize(nn.Module):
    """A model that refuses inputs under 100 px (as Inception v3 does under 75): traced at full size."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        if min(x.shape[-2:]) < 100:
            raise ValueError("input too small")
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


@pytest.mark.parametrize("arch", ["vgg11_bn", "resnet18", "demo"])
def test_the_trace_runs_on_a_small_copy_once_per_model_and_finds_the_full_size_points(arch):
    """Issue 24: the activation point costs one pass without gradients on the image shrunk to 64 px, once per
    model for every convolution; the points are those a trace at full size finds."""
    import torchvision

    model = inv.demo.load(n=1)[0] if arch == "demo" else getattr(torchvision.models, arch)(weights=None).eval()
    size = 128 if arch == "demo" else 224
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    shapes = []
    model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    got = points_for(model, convs[:3], "activation", x)
    assert shapes == [(1, 3, 64, 64)]
    assert points_for(model, convs, "activation", x) == trace_points(model, x, convs)  # no pass for more layers
    assert shapes[:2] == [(1, 3, 64, 64), (1, 3, size, size)]  # the second: trace_points itself, at full size
    assert got == {n: trace_points(model, x, convs)[n] for n in convs[:3]}


def test_a_model_that_cannot_run_small_is_traced_at_full_size():
    model = NeedsSize().eval()
    x = torch.rand(1, 3, 128, 128)
    assert points_for(model, ["conv"], "activation", x)["conv"].chain == ("conv", "bn")
