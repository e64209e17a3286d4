"""Small networks and images the tests share (the fixtures in conftest.py hand them out)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

#: The class names of the small test networks (SmallCNN has six outputs).
CLASS_NAMES = ["ant", "bee", "cat", "dog", "eel", "fox"]


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


class SmallCNN(nn.Module):
    """Three plain conv layers (12, 24, 32 channels) and a linear head: enough channels for real dendrograms."""

    def __init__(self, n_classes=6):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(12, 24, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(24, 32, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(32, n_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def small_images(n=5, size=48):
    """``n`` PIL images of a flat colour with a rectangle of another colour, the same every time."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        a = np.zeros((size, size, 3), np.uint8)
        a[...] = rng.integers(0, 255, 3)
        r = rng.integers(4, size // 2)
        a[r : r + size // 3, r : r + size // 4] = rng.integers(0, 255, 3)
        out.append(Image.fromarray(a))
    return out
