"""One batch of images -> everything a stored run keeps of them, without Explanation objects.

The same steps as ``Session.explain`` followed by ``cut()`` on every layer (the same engine functions:
``run_model``, ``layer_percent``, the keep filter, the fast recipe's ``link``,
``build_trees`` itself for the other recipes, ``assign``,
``prune_mask``), batched across the images and layers of a batch, and only what is stored is made: cluster maps at feature
resolution (min-max scaled, float16), their weights and members, the layer's Grad-CAM (feature
resolution, min-max scaled), per-channel weights, logits. No map is upsampled to the input size.

``ward="torch"`` builds the ``fast`` recipe's dendrograms with the batched Lance-Williams kernel of
``engine/ward_torch.py`` on the model's device: on a GPU the kept maps never leave it, only the linkage
matrices and the finished cluster maps come back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import run_model
from ..engine.recipes import build_trees, get_recipe
from ..engine.recipes.fast import gap_k
from ..engine.runtime import limited_threads
from ..engine.tree import Tree, assign, prune_mask
from ..engine.ward_torch import pairwise_sq_euclidean, ward_linkage_groups
from ..engine.weights import KEEP_FACTOR, check_weighting, layer_percent

__all__ = ["LayerOut", "BatchOut", "explain_batch", "WARD_BACKENDS"]

WARD_BACKENDS = ("auto", "scipy", "torch")
_FAST = get_recipe("fast")


@dataclass
class LayerOut:
    """One layer of a batch: per image, the cut's cluster maps, weights and members."""

    name: str
    channel_weights: np.ndarray  # (B, C) float32, percent of the layer total
    gradcam: np.ndarray  # (B, h, w) float16, min-max scaled
    maps: list[np.ndarray]  # per image (K, h, w) float16, min-max scaled, sorted by weight
    weights: list[np.ndarray]  # per image (K,) float64 percent, descending
    members: list[list[np.ndarray]]  # per image, K arrays of channel indices (sorted)


@dataclass
class BatchOut:
    logits: np.ndarray  # (B, num_classes) float32
    targets: np.ndarray  # (B,) int64, the class explained
    layers: list[LayerOut]  # in the order the layers fired


def _minmax_(x: torch.Tensor) -> torch.Tensor:
    """``minmax_rows`` in place on a 2-D tensor we own, bit for bit the same (a constant row is 0 after the
    subtraction either way, so its ``torch.where`` and temporaries are not needed)."""
    if x.shape[0]:
        # amin and amax rather than aminmax: the same values, and on the CPU the fused row reduction is about
        # four times slower than the two separate ones (torch 2.x)
        lo, hi = x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
        x.sub_(lo).div_((hi - lo).clamp_min_(1e-12))
    return x


def _scaled_half(x: torch.Tensor) -> np.ndarray:
    """Min-max scale each leading item of (N, ...) to [0, 1] (in place) and bring it to the CPU as float16."""
    if x.shape[0] == 0:
        return np.zeros(tuple(x.shape), np.float16)
    return _minmax_(x.reshape(x.shape[0], -1)).reshape(x.shape).to(torch.float16).cpu().numpy()


def _cut(tree: Tree, pct_kept: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``LayerResult.cut(k)`` without the maps: (assignment aligned with kept, -1 where pruned; weights)."""
    if tree.n == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    labels = assign(tree, k=k)
    k_cut = int(labels.max()) + 1
    weights = np.bincount(labels, weights=pct_kept.astype(np.float64), minlength=k_cut)
    keep = prune_mask(weights) if tree.prune else np.ones(k_cut, dtype=bool)
    order = [c for c in np.argsort(-weights, kind="stable") if keep[c]]
    remap = np.full(k_cut, -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return remap[labels], weights[order].astype(np.float64)


def _kept_rows(r: torch.Tensor, kept: list[np.ndarray]) -> tuple[torch.Tensor, np.ndarray]:
    """Every image's kept maps of one layer, stacked (sum of kept, h*w), each row min-max scaled, and the
    counts per image. ``r`` is the layer's ReLU'd activations (B, C, h, w).

    Elementwise and row-wise steps only, so every row is bit for bit what ``minmax_rows`` gives."""
    b, c = r.shape[:2]
    cnt = np.array([len(k) for k in kept], dtype=np.int64)
    flat_idx = np.concatenate([k + i * c for i, k in enumerate(kept)]) if b else np.zeros(0, np.int64)
    # a copy we may scale in place (index_select: the same rows as indexing, a third faster on the CPU)
    x = torch.index_select(r.reshape(b * c, -1), 0, torch.as_tensor(flat_idx, device=r.device))
    return _minmax_(x), cnt


def _padded(x: torch.Tensor, cnt: np.ndarray) -> torch.Tensor:
    """Stacked rows (sum of cnt, d) -> (B, max cnt, d), zero padding."""
    n = max(int(cnt.max(initial=0)), 1)
    out = x.new_zeros((len(cnt), n, x.shape[1]))
    starts = np.r_[0, np.cumsum(cnt)[:-1]]
    rows = np.concatenate([np.full(c, i) for i, c in enumerate(cnt)]) if cnt.sum() else np.zeros(0, np.int64)
    cols = np.arange(int(cnt.sum())) - np.repeat(starts, cnt)
    out[torch.as_tensor(rows, device=x.device), torch.as_tensor(cols, device=x.device)] = x
    return out


def _scipy_fast_trees(xs: list[tuple[torch.Tensor, np.ndarray]]) -> list[list[Tree]]:
    """The fast recipe's dendrograms, exactly as ``build_trees(maps, "fast")`` makes them (the recipe's own
    ``link``), from rows already scaled."""
    out = []
    for x, cnt in xs:
        trees, start = [], 0
        for n in cnt:
            n = int(n)
            if n < 2:
                trees.append(Tree("fast", np.zeros((0, 4)), n, max(n, 1), False))
            else:
                link = _FAST.link(x[start:start + n])
                trees.append(Tree("fast", link.linkage, n, link.suggested_k, _FAST.prune))
            start += n
        out.append(trees)
    return out


def _torch_trees(xs: list[tuple[torch.Tensor, np.ndarray]], dtype) -> list[list[Tree]]:
    """The fast recipe's dendrograms from the batched torch Ward kernel, on the rows' device."""
    d2s = [pairwise_sq_euclidean(_padded(x, cnt), torch.as_tensor(cnt)) for x, cnt in xs]
    out = []
    for links, (_, cnt) in zip(ward_linkage_groups(d2s, [cnt for _, cnt in xs], dtype=dtype), xs):
        trees = []
        for z, n in zip(links, cnt):
            n = int(n)
            if n < 2:
                trees.append(Tree("fast", np.zeros((0, 4)), n, max(n, 1), False))
            else:
                trees.append(Tree("fast", z, n, gap_k(z[:, 2], n), False))
        out.append(trees)
    return out


def explain_batch(model, x: torch.Tensor, layers: list[str], target=None, *, recipe: str = "fast",
                  k: int | None = None, ward: str = "scipy", ward_dtype: torch.dtype | None = None,
                  weighting: str = "guided", output=None, after_pass=None, layer_point: str = "conv") -> BatchOut:
    """Explain a batch ``x`` (B, C, H, W) on the model's device and cut every layer (suggested cut, or ``k``).

    ``target``: None (each image's predicted class), an int, or B ints. ``ward``: ``"scipy"`` (the
    engine's recipes, as ``Session.explain``) or ``"torch"`` (the batched kernel; ``fast`` recipe only).
    ``weighting``: the channel weights, "guided" or "taylor" (``Session(weighting=...)``); ``output``: which of
    the model's outputs holds the logits (``Session(output=...)``); ``layer_point``: where each layer is read
    (``Session(layer_point=...)``). ``after_pass``: called without
    arguments between the model's pass (all cores) and the clustering (one thread), e.g. to start work that
    can use the other cores meanwhile.
    """
    check_weighting(weighting)
    if ward not in ("scipy", "torch"):
        raise ValueError(f"ward must be 'scipy' or 'torch' here, got {ward!r}")
    if ward == "torch" and recipe != "fast":
        raise ValueError(f"the torch Ward kernel builds the 'fast' recipe's dendrograms, not {recipe!r}; "
                         "use ward='scipy' for other recipes")
    cap = run_model(model, x, layers, target, output=output, weighting=weighting, layer_point=layer_point)
    if after_pass is not None:
        after_pass()
    # after the model's pass: many small ops per image and layer, which extra threads only slow down (on a
    # busy CPU by several times); one big pass on a GPU does not care
    with limited_threads(1):
        return _summarise(cap, x.shape[0], x.device, recipe, k, ward, ward_dtype, weighting)


def _summarise(cap, b: int, device: torch.device, recipe: str, k: int | None, ward: str, ward_dtype,
               weighting: str = "guided") -> BatchOut:
    acts, pcts, keeps, cams = [], [], [], []
    for name in cap.order:
        a = cap.activations[name].float()
        pct = layer_percent(cap, name, weighting)
        n = pct.shape[-1]
        # plain Grad-CAM, ReLU(sum_k mean(G_k) A_k) as engine.weights.gradcam_lowres, as one batched product
        gm = cap.grad_mean[name].to(a.dtype)
        cams.append(F.relu(torch.bmm(gm[:, None, :], a.reshape(a.shape[0], a.shape[1], -1))).reshape(
            a.shape[0], *a.shape[2:]))
        acts.append(a.relu_())  # post-activation maps, as INV clusters them; in place: the capture is ours
        pcts.append(pct)
        keeps.append((pct >= KEEP_FACTOR / n) & (pct > 0))  # engine.weights.keep_channels, batched
    # the small per-channel results cross to the CPU once per batch
    pct_np = [p.cpu().numpy() for p in pcts]
    kept = [[np.flatnonzero(row) for row in m.cpu().numpy()] for m in keeps]
    cams_np = [_scaled_half(c) for c in cams]
    if recipe == "fast":
        scaled = [_kept_rows(r, kl) for r, kl in zip(acts, kept)]
        if ward == "torch":
            trees = _torch_trees(scaled, ward_dtype or (torch.float64 if device.type == "cpu" else torch.float32))
        else:
            trees = _scipy_fast_trees(scaled)
        del scaled
    else:
        maps_list = [r[i].index_select(0, torch.as_tensor(kept[li][i], device=r.device))
                     for li, r in enumerate(acts) for i in range(b)]
        flat = build_trees(maps_list, recipe)
        del maps_list
        trees = [flat[li * b:(li + 1) * b] for li in range(len(acts))]
    out_layers = []
    for li, name in enumerate(cap.order):
        a = acts[li]
        c = a.shape[1]
        cuts = [_cut(trees[li][i], pct_np[li][i][kept[li][i]], k) for i in range(b)]
        kmax = max((len(w) for _, w in cuts), default=0)
        maps_np: list[np.ndarray] = []
        if kmax:
            # weighted mean of each cluster's members (engine.maps.cluster_maps_lowres), all images at once
            wm = np.zeros((b, kmax, c), np.float32)
            for i, (assignment, _) in enumerate(cuts):
                ok = assignment >= 0
                wm[i, assignment[ok], kept[li][i][ok]] = pct_np[li][i][kept[li][i][ok]]
            wm /= np.maximum(wm.sum(2, keepdims=True), np.float32(1e-12))
            low = torch.bmm(torch.as_tensor(wm, device=a.device), a.reshape(b, c, -1))
            low_np = _scaled_half(low.reshape(b * kmax, *a.shape[2:])).reshape(b, kmax, *a.shape[2:])
            maps_np = [low_np[i, :len(w)].copy() for i, (_, w) in enumerate(cuts)]
        else:
            maps_np = [np.zeros((0, *a.shape[2:]), np.float16) for _ in range(b)]
        members = [[kept[li][i][assignment == j] for j in range(len(w))] for i, (assignment, w) in enumerate(cuts)]
        out_layers.append(LayerOut(name, pct_np[li], cams_np[li], maps_np, [w for _, w in cuts], members))
    return BatchOut(cap.logits.float().cpu().numpy(), np.asarray(cap.targets, dtype=np.int64), out_layers)
