"""Cluster maps and Deep Reveal masks."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

__all__ = [
    "cluster_maps_lowres",
    "minmax_maps",
    "upsample_minmax",
    "reveal_mask",
    "reveal_image",
    "REVEAL_PERCENTS",
    "reveal_sigma",
    "FLAT_RTOL",
]

#: Share of pixels shown at each Deep Reveal step (the published game).
REVEAL_PERCENTS = (2.0, 4.5, 8.0, 13.0, 20.0, 30.0)

# Blur sigma (pixels) by upsampling factor, as published: 2 -> 3, 4 -> 6, 8 -> 12, 16 -> 16, 32 -> 24.
_SIGMA_LOG2 = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
_SIGMA_PX = np.array([1.5, 3.0, 6.0, 12.0, 16.0, 24.0])


def reveal_sigma(factor: float) -> float:
    """Gaussian sigma in pixels for a map upsampled by ``factor`` (interpolated in log2 between the
    published points, extrapolated linearly in log2 beyond 32)."""
    f = max(float(factor), 1.0)
    l2 = np.log2(f)
    if l2 > _SIGMA_LOG2[-1]:
        return float(_SIGMA_PX[-1] * f / 32.0)
    return float(np.interp(l2, _SIGMA_LOG2, _SIGMA_PX))


def cluster_maps_lowres(maps: torch.Tensor, percent: torch.Tensor, assignment: np.ndarray, k: int) -> torch.Tensor:
    """Weighted mean of each cluster's member maps at feature resolution.

    ``maps`` (n, h, w) kept maps, ``percent`` (n,) their weights, ``assignment`` (n,) cluster index
    (-1 = dropped). Returns (k, h, w): sum(w_i A_i) / sum(w_i) over the members of each cluster. Each map is
    computed from its own members only, so its bits do not depend on the rest of the cut (the same cluster
    in a cut by k and in a cut by height is the same map, to the bit)."""
    n, h, w = maps.shape
    a = np.asarray(assignment)
    flat = maps.reshape(n, h * w)
    pct = percent.to(maps.dtype)
    out = maps.new_zeros((k, h * w))
    for j in range(k):
        rows = torch.as_tensor(np.flatnonzero(a == j), device=maps.device)
        wj = pct.index_select(0, rows)
        out[j] = (wj / wj.sum().clamp_min(1e-12)) @ flat.index_select(0, rows)
    return out.reshape(k, h, w)


#: A map whose values span at most this share of their magnitude is flat (float32 rounding, about 100 units in
#: the last place): min-max scaling would stretch rounding noise to [0, 1], so it is shown as zeros instead.
FLAT_RTOL = 1e-5


def minmax_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max of (k, ...) maps to [0, 1], float32 (the one scaling rule of cluster maps and Grad-CAMs).

    A map that is flat to rounding (constant, 1 x 1, or values at most :data:`FLAT_RTOL` of their magnitude
    apart) becomes zeros: there is nothing in it to stretch."""
    flat = maps.reshape(maps.shape[0], -1).float()
    if flat.shape[0] == 0 or flat.shape[1] == 0:
        return flat.reshape(maps.shape)
    lo = flat.amin(1, keepdim=True)
    hi = flat.amax(1, keepdim=True)
    span = hi - lo
    shaped = span > FLAT_RTOL * torch.maximum(lo.abs(), hi.abs())
    # (flat - lo) / span in one new tensor, flat maps zeroed after: the same values as a full-size torch.where
    # (every element's division is the same), with two passes over the maps instead of five
    out = torch.sub(flat, lo).div_(torch.where(shaped, span, torch.ones_like(span)))
    if out.device.type != "cpu" or not bool(shaped.all()):  # on a device, no wait for the answer
        out.masked_fill_(~shaped, 0.0)
    return out.reshape(maps.shape)


def upsample_minmax(maps: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of (k, h, w) maps to ``size`` and per-map min-max to [0, 1] (:func:`minmax_maps`: a
    map flat to rounding becomes zeros), float32 numpy."""
    if maps.shape[0] == 0:
        return np.zeros((0, *size), dtype=np.float32)
    up = F.interpolate(torch.as_tensor(maps)[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return minmax_maps(up).cpu().numpy().astype(np.float32, copy=False)


def reveal_mask(map_lowres: np.ndarray, size: tuple[int, int], step: int) -> np.ndarray:
    """Soft mask (H, W) in [0, 1] keeping the top ``REVEAL_PERCENTS[step]`` % pixels of a cluster map.

    As published: the feature-resolution map is upsampled by blocks (nearest neighbour), thresholded at
    the percentile, then blurred with a Gaussian whose sigma grows with the upsampling factor (the
    published sigmas, given for 256-px inputs, scaled to the image size), and scaled to a peak of 1.
    """
    if not 0 <= int(step) < len(REVEAL_PERCENTS):
        raise ValueError(f"reveal step must be 0..{len(REVEAL_PERCENTS) - 1}, got {step}")
    m = np.asarray(map_lowres, dtype=np.float32)
    h, w = m.shape
    H, W = size
    rows = np.minimum((np.arange(H) * h) // H, h - 1)
    cols = np.minimum((np.arange(W) * w) // W, w - 1)
    up = m[rows][:, cols]
    pct = REVEAL_PERCENTS[int(step)]
    thr = np.percentile(up, 100.0 - pct)
    binary = (up >= thr).astype(np.float32)
    if binary.all() and up.max() == up.min():  # a flat map has no salient pixels: show nothing
        binary[:] = 0.0
    # the published sigmas are pixels of 256-px images: keep the same softness relative to the image
    sigma = max(1.0, reveal_sigma(max(H / h, W / w)) * min(H, W) / 256.0)
    soft = gaussian_filter(binary, sigma=sigma, mode="constant")
    peak = soft.max()
    return (soft / peak).astype(np.float32) if peak > 0 else soft


def reveal_image(image: np.ndarray, map_lowres: np.ndarray, step: int, fill=None) -> np.ndarray:
    """The Deep Reveal view: the image (H, W, 3) uint8 multiplied by the soft mask, uint8: hidden pixels black.

    ``fill``: what hidden pixels show instead of black, a colour (3,) or an image (H, W, 3) in 0..255 (the view
    is then ``image * mask + fill * (1 - mask)``)."""
    img = np.asarray(image)
    mask = reveal_mask(map_lowres, img.shape[:2], step)[..., None]
    out = img.astype(np.float32) * mask
    if fill is not None:
        out += np.asarray(fill, np.float32) * (1.0 - mask)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
