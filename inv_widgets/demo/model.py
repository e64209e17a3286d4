"""The demo CNN: a small VGG-style network for the parts dataset.

Eight 3x3 convolutions in four blocks (conv-BN-ReLU, conv-BN-ReLU, max-pool), global average
pooling and a linear head. The conv layers have readable names (``features.block1_conv1`` ...
``features.block4_conv2``) so that a layer slider shows something a person can read. Small
widths keep an explanation on a laptop CPU fast.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["DemoCNN", "DEFAULT_WIDTHS"]

DEFAULT_WIDTHS = (16, 16, 32, 32, 64, 64, 128, 128)


class DemoCNN(nn.Module):
    """VGG-style CNN: ``features`` (named conv blocks) -> global average pool -> ``classifier``.

    Parameters
    ----------
    num_classes : int
        Output classes (10 for the parts dataset).
    widths : sequence of int
        Output channels of each conv layer, two per block; its length must be even.
    dropout : float
        Dropout before the linear head (training only).
    input_size : int
        The side of the square pictures it is trained on (the parts dataset's 128). A session reads it
        (``model.input_size``, (height, width)) and resizes larger pictures to it (``inv_widgets.sizing``).
    """

    def __init__(self, num_classes: int = 10, widths=DEFAULT_WIDTHS, dropout: float = 0.1, input_size: int = 128):
        super().__init__()
        self.input_size = (int(input_size), int(input_size))
        widths = tuple(int(w) for w in widths)
        if len(widths) == 0 or len(widths) % 2:
            raise ValueError(f"DemoCNN: widths needs an even, non-zero number of entries, got {widths}")
        self.num_classes = int(num_classes)
        self.widths = widths
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = 3
        for b in range(len(widths) // 2):
            for j in range(2):
                c_out = widths[2 * b + j]
                name = f"block{b + 1}_conv{j + 1}"
                layers[name] = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)
                layers[f"block{b + 1}_bn{j + 1}"] = nn.BatchNorm2d(c_out)
                layers[f"block{b + 1}_relu{j + 1}"] = nn.ReLU(inplace=True)
                c_in = c_out
            layers[f"block{b + 1}_pool"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c_in, self.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, 10) of images (batch, 3, H, W) normalised as the dataset's transform does."""
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))

    @property
    def conv_layer_names(self) -> list[str]:
        """Qualified names of the conv layers, in forward order (``features.block1_conv1``, ...)."""
        return [f"features.{n}" for n, m in self.features.named_children() if isinstance(m, nn.Conv2d)]
