"""Reference computations and planted data shared by the engine tests."""

from __future__ import annotations

import copy

import numpy as np
import torch


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


def scaled(m: np.ndarray) -> np.ndarray:
    """A map min-max scaled to [0, 1] (a constant map: zeros), as cluster maps are kept at feature resolution."""
    m = np.asarray(m, dtype=np.float64)
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)
