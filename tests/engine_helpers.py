"""Small models and reference computations shared by the engine tests."""
from __future__ import annotations

import copy

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Conv-ReLU(in place)-pool x2, BatchNorm, a skip connection and a concatenation: the awkward cases."""

    def __init__(self, n_classes=5, inplace=True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.pool = nn.MaxPool2d(2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise
        self.conv3 = nn.Conv2d(16, 12, 3, padding=1)
        self.head = nn.Linear(12, n_classes)

    def forward(self, x):
        a = self.relu1(self.bn1(self.conv1(x)))
        b = self.relu2(self.conv2(a)) + a  # skip connection
        b = self.pool(b)
        c = torch.cat([b, self.dw(b)], 1)  # concatenation
        d = torch.relu(self.conv3(c))
        return self.head(d.mean((2, 3)))


def no_inplace(model):
    m = copy.deepcopy(model)
    for mod in m.modules():
        if hasattr(mod, "inplace"):
            mod.inplace = False
    return m


def reference_capture(model, x, layer, target):
    """Activation and gradient of one layer by plain autograd on a copy without in-place ops."""
    m = no_inplace(model).eval()
    store = {}
    h = dict(m.named_modules())[layer].register_forward_hook(lambda mod, i, o: store.__setitem__("a", o))
    try:
        logits = m(x[None])
        g = torch.autograd.grad(logits[0, target], store["a"])[0]
    finally:
        h.remove()
    return store["a"].detach()[0], g[0]
