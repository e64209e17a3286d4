"""Cluster maps that carry the class: variants of the published cluster map, and what each map type means.

The published cluster map (PAPER.md, step 8) is the weighted mean of its member feature maps, each member a
channel kept because its guided gradient votes for the class. Every kept channel of any class tends to fire on
the object, so the map shows *where these channels are active*; it barely changes when the classifier is
re-initialised or another class is explained (``python -m inv_widgets.eval sanity``). The variants here keep
the published clusters (the same members, so the same :class:`MapKey` identities and labels) and change what a
cluster's map is drawn from:

- ``"signed"``: the signed contributions of **all** of a cluster's channels, gradient x activation at every pixel,
  summed and clipped at 0. Each channel the keep filter dropped joins the cluster of the kept channel whose map
  is nearest its own (Euclidean, rows min-max scaled as the ``fast`` recipe scales them), so that channels voting
  against the class where the cluster fires cancel there, as they do in Grad-CAM.
- ``"gradcam"``: the Grad-CAM of the cluster's channels (the same extended channel sets) with the sign of each
  channel's mean gradient kept: ReLU(sum_k mean_ij(G_k) A_k).
- ``"contrast"``: the published map of a pass whose score is the target's logit minus the mean of all logits
  (``run_model(score="contrast")``): channel weights that favour the class over the others, kept, clustered
  and drawn as published.

Every function is pure torch / numpy, from captured tensors of one image and one layer: the activations ``A``
(C, h, w) and gradients ``G`` (C, h, w) read at the session's layer point, the kept channels and the cut's
assignment of them. :data:`MAP_MEANINGS` says in one line what each map type shows, for the Explorer, the game,
the report and the docs.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "MAP_TYPES",
    "MAP_MEANINGS",
    "map_meaning",
    "check_maps",
    "extend_groups",
    "group_maps",
    "group_weights",
    "variant_cut",
    "gradcam_cut",
    "map_channels",
    "nearest_kept",
    "nearest_kept_many",
    "channels_weight",
    "GRADIENT_MAPS",
    "WIRED",
]

#: The map types (``Session(maps=...)``): "published" (the paper's), and the class-contrastive variants.
MAP_TYPES = ("published", "signed", "gradcam", "contrast")

#: Map types drawn from the same pass's gradients with the published clusters extended to every channel.
GRADIENT_MAPS = ("signed", "gradcam")

#: The map types a Session and a dataset run offer (``Session(maps=...)``); "signed" stays an evaluation variant
#: (its maps miss the object too often: ``python -m inv_widgets.eval sanity``).
WIRED = ("published", "gradcam", "contrast")

#: What a cluster map of each type shows, in one line (shown under the Explorer's gallery and in its detail
#: view, in the game's instructions, in the report and in the docs).
MAP_MEANINGS = {
    "published": (
        "Where this cluster's channels are active (the paper's map: the weighted mean of the feature maps "
        "that vote for the class). It shows what these channels respond to, not where the model looks "
        "for this class: the maps barely change for another class or a randomised classifier."
    ),
    "signed": (
        "Where this cluster's channels, all of them, push the class's score up (gradient x activation summed "
        "over the cluster, negative parts cancelled and cut at zero): it changes with the class explained."
    ),
    "gradcam": (
        "The Grad-CAM of this cluster's channels, all of them: their activations weighted by how much each "
        "raises or lowers the class's score, cut at zero; it changes with the class explained."
    ),
    "contrast": (
        "Where the channels that set this class apart from the others are active (weights from the class's "
        "score minus the mean score of all classes); still a map of channel activity."
    ),
}


def check_maps(maps, choices=MAP_TYPES) -> str:
    """``maps`` if it is one of ``choices`` (default :data:`MAP_TYPES`), else a ValueError naming them."""
    if maps not in choices:
        raise ValueError(
            f'maps {maps!r} is unknown; use one of {list(choices)} ("published": the paper\'s cluster maps)'
        )
    return maps


def map_meaning(maps: str = "published") -> str:
    """The one-line meaning of a map type (:data:`MAP_MEANINGS`)."""
    return MAP_MEANINGS[check_maps(maps)]


def extend_groups(acts: torch.Tensor, kept, assignment, k: int, nearest=None) -> np.ndarray:
    """Every channel's cluster, (C,): kept channels keep the cut's ``assignment`` (-1 where a pruning cut dropped
    them, and they stay out); every other channel follows the kept channel whose map is nearest to its own
    (Euclidean, rows min-max scaled as the ``fast`` recipe scales them). That nearest kept channel does not depend
    on the cut, so a cluster's channels, and its map, depend on its members only: the same members give the same
    map in every cut (a cluster map's identity stays its members). Channels whose map is flat (a ReLU that never
    fires) stay out (-1): they add nothing to any map. ``nearest``: :func:`nearest_kept` of these activations and
    kept channels, when the caller keeps it (a Session cuts one layer many times)."""
    c = int(acts.shape[0])
    kept = np.asarray(kept, np.int64)
    assignment = np.asarray(assignment, np.int64)
    out = np.full(c, -1, np.int64)
    if k == 0 or not len(kept):
        return out
    out[kept] = assignment
    others, near = nearest if nearest is not None else nearest_kept(acts, kept)
    out[others] = np.where(near >= 0, assignment[np.maximum(near, 0)], -1)
    return out


def nearest_kept(acts: torch.Tensor, kept) -> tuple[np.ndarray, np.ndarray]:
    """The channels not kept, and for each the position (in ``kept``) of the kept channel whose min-max scaled map
    is nearest its own (-1 for a flat map); it does not depend on the cut.

    One matrix product: the nearest kept row minimises |k|^2 - 2 o.k. Where float32 rounding could decide
    (the two best within a bound of the product's error), the row's distances are taken again in float64 from
    the differences, so the answer is the exact nearest (the first of equal ones). The one-image case of
    :func:`nearest_kept_many`."""
    return nearest_kept_many(acts[None], [kept])[0]


#: :func:`nearest_kept_many` takes images in groups of at most this many activation values (1 MB of float32):
#: beyond that its passes over the rows run from memory instead of the cache, and one image at a time is faster.
_CHUNK = 1 << 18


def nearest_kept_many(acts: torch.Tensor, kept_list) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`nearest_kept` of every image of a batch, ``acts`` (B, C, h, w) and each image's kept channels: one
    scaling pass and one batched matrix product for a group of images at once (their rows padded to the most
    others and kept channels of any of them; groups of about 1 MB, so that the passes stay in the cache) instead
    of a few small operations per image. Where float32 rounding could decide (the two best within a bound of the
    product's error), a row's distances are taken again in float64 from the differences: the answers are the
    exact nearest, whatever the group."""
    b, c = int(acts.shape[0]), int(acts.shape[1])
    kept_list = [np.asarray(k, np.int64) for k in kept_list]
    if len(kept_list) != b:
        raise ValueError(f"got kept channels for {len(kept_list)} images of a batch of {b}")
    per_image = max(1, acts[0].numel())
    step = max(1, _CHUNK // per_image)
    if b > step:  # a few images at a time, so that their rows and temporaries stay in the cache
        return [r for s in range(0, b, step) for r in nearest_kept_many(acts[s : s + step], kept_list[s : s + step])]
    others_list = [_others(c, k) for k in kept_list]
    n_o = max((len(o) for o, k in zip(others_list, kept_list) if len(k)), default=0)
    n_k = max((len(k) for o, k in zip(others_list, kept_list) if len(o)), default=0)
    if b == 0 or not n_o or not n_k:  # nothing to compare: no channel joins a kept one
        return [(o, np.full(len(o), -1, np.int64)) for o in others_list]
    rows, moving = _scaled(acts.reshape(b * c, -1))
    rows, moving = rows.reshape(b, c, -1), moving.reshape(b, c)
    oi = torch.zeros(b, n_o, dtype=torch.long)
    ki = torch.zeros(b, n_k, dtype=torch.long)
    k_pad = torch.ones(b, n_k, dtype=torch.bool)
    for i, (o, k) in enumerate(zip(others_list, kept_list)):
        if len(o) and len(k):
            oi[i, : len(o)] = torch.as_tensor(o)
            ki[i, : len(k)] = torch.as_tensor(k)
            k_pad[i, : len(k)] = False
    img = torch.arange(b)[:, None]
    o, kr = rows[img, oi], rows[img, ki]  # (b, n_o, hw), (b, n_k, hw)
    k2 = (kr * kr).sum(2)
    d = (k2[:, None, :] - 2.0 * torch.bmm(o, kr.transpose(1, 2))).masked_fill_(k_pad[:, None, :], float("inf"))
    nearest = d.argmin(2)
    if n_k > 1:  # near ties: exact distances for those rows, as nearest_kept takes them
        two = d.topk(2, dim=2, largest=False).values
        bound = 1e-5 * ((o * o).sum(2) + k2.masked_fill(k_pad, 0.0).amax(1, keepdim=True)) + 1e-12
        for i, r in torch.nonzero(two[:, :, 1] - two[:, :, 0] <= bound).tolist():
            n = len(kept_list[i])
            if r < len(others_list[i]) and n > 1:
                exact = (kr[i, :n].double() - o[i, r].double()).pow(2).sum(1)
                nearest[i, r] = int(exact.argmin())
    out = []
    for i, (others, k) in enumerate(zip(others_list, kept_list)):
        if not len(others) or not len(k):
            out.append((others, np.full(len(others), -1, np.int64)))
            continue
        flat = ~moving[i, torch.as_tensor(others)]
        near = nearest[i, : len(others)]
        out.append((others, np.where(flat.numpy(), -1, near.numpy()).astype(np.int64)))
    return out


def _others(c: int, kept: np.ndarray) -> np.ndarray:
    """The channels 0..c-1 not in ``kept``, ascending (``np.setdiff1d(np.arange(c), kept)``, without its sort)."""
    out = np.ones(c, dtype=bool)
    out[kept] = False
    return np.flatnonzero(out)


def _scaled(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows min-max scaled (flat rows 0) and which rows are not flat, (C,) bool."""
    flat = a.reshape(a.shape[0], -1).float()
    lo = flat.amin(1, keepdim=True)
    span = flat.amax(1, keepdim=True) - lo
    moving = span > 0
    rows = (flat - lo).div_(torch.where(moving, span, torch.ones_like(span)))
    if not bool(moving.all()):
        rows[~moving[:, 0]] = 0.0
    return rows, moving[:, 0]


def map_channels(acts: torch.Tensor, kept, members, nearest=None) -> np.ndarray:
    """Every channel a ``"gradcam"`` map of these members is drawn from, ascending: the members and each channel
    the keep filter dropped whose nearest kept channel is a member (:func:`extend_groups`, for one map;
    ``nearest`` as there)."""
    kept = np.asarray(kept, np.int64)
    members = np.asarray(members, np.int64)
    others, nearest = nearest if nearest is not None else nearest_kept(acts, kept)
    joined = others[(nearest >= 0) & np.isin(kept[np.maximum(nearest, 0)], members)]
    return np.union1d(members, joined)


def channels_weight(worth: torch.Tensor, channels) -> float:
    """The weight a ``"gradcam"`` map of ``channels`` shows: their summed first-order worth (mean_ij(G A) per
    channel) in percent of the layer's positive total (as :func:`gradcam_cut` weighs it)."""
    t = worth.double().cpu().numpy()
    total = float(np.clip(t, 0, None).sum())
    return 100.0 * float(t[np.asarray(channels, np.int64)].sum()) / total if total > 0 else 0.0


def group_maps(acts: torch.Tensor, grads: torch.Tensor, groups: np.ndarray, k: int, kind: str) -> torch.Tensor:
    """Cluster maps (k, h, w) at feature resolution, not scaled, of the channel groups ``groups`` (C,) (-1: in
    none): ``kind="signed"`` ReLU(sum_{c in j} G_c * A_c) pixel by pixel, ``"gradcam"`` ReLU(sum_{c in j}
    mean(G_c) A_c)."""
    if kind not in GRADIENT_MAPS:
        raise ValueError(f"kind must be one of {list(GRADIENT_MAPS)}, got {kind!r}")
    a, g = acts.float(), grads.float()
    contrib = g * a if kind == "signed" else g.mean(dim=(1, 2), keepdim=True) * a
    c, h, w = a.shape
    onehot = torch.zeros(k, c)
    ok = np.flatnonzero(np.asarray(groups) >= 0)
    if len(ok):
        onehot[torch.as_tensor(np.asarray(groups)[ok]), torch.as_tensor(ok)] = 1.0
    return torch.relu((onehot @ contrib.reshape(c, h * w)).reshape(k, h, w))


def group_weights(acts: torch.Tensor, grads: torch.Tensor, groups: np.ndarray, k: int) -> np.ndarray:
    """Each group's first-order worth to the score, (k,): the sum of its channels' mean_ij(G A) (what zeroing
    them costs, to first order), in percent of the layer's total positive worth (negative: the group lowers the
    score)."""
    t = (grads.float() * acts.float()).mean(dim=(1, 2)).numpy().astype(np.float64)
    total = float(np.clip(t, 0, None).sum())
    g = np.asarray(groups)
    w = np.array([t[g == j].sum() for j in range(k)], np.float64)
    return 100.0 * w / total if total > 0 else np.zeros(k)


def variant_cut(
    acts: torch.Tensor, grads: torch.Tensor, kept, assignment, k: int, kind: str, size: tuple[int, int]
) -> dict:
    """One layer's cluster maps of a gradient map type (``"signed"`` or ``"gradcam"``) from the published cut:
    ``maps`` (k, H, W) in [0, 1] at ``size`` (a map that is 0 everywhere, a cluster that only lowers the score,
    stays 0), ``maps_lowres`` (k, h, w), ``weights`` (k,) percent (:func:`group_weights`), ``groups`` (C,) every
    channel's cluster (:func:`extend_groups`), aligned with the published cut's maps (same order, same members
    among the kept channels)."""
    from .maps import upsample_minmax

    groups = extend_groups(acts, kept, assignment, k)
    low = group_maps(acts, grads, groups, k, kind)
    return {
        "maps": upsample_minmax(low, size),
        "maps_lowres": low.numpy(),
        "weights": group_weights(acts, grads, groups, k),
        "groups": groups,
    }


def gradcam_cut(
    acts: torch.Tensor, grad_mean: torch.Tensor, worth: torch.Tensor, kept, assignment, k: int, nearest=None
):
    """A published cut's ``"gradcam"`` maps, for :func:`inv_widgets.engine.cut.cut_layer`: every channel joins a
    cluster (:func:`extend_groups`; ``nearest`` as there), each cluster map is ReLU(sum_c mean_ij(G_c) A_c) over
    its channels, and its weight their summed first-order worth ``worth`` (mean_ij(G A) per channel) in percent
    of the layer's positive total. Returns ``(maps (k, h, w) not scaled, weights (k,), groups (C,), order)``:
    ``order`` puts the clusters heaviest first (by the new weights)."""
    a = acts.float().cpu()
    groups = extend_groups(a, kept, assignment, k, nearest)
    c, h, w = a.shape
    onehot = torch.zeros(k, c)
    ok = np.flatnonzero(groups >= 0)
    if len(ok):
        onehot[torch.as_tensor(groups[ok]), torch.as_tensor(ok)] = 1.0
    contrib = grad_mean.float().cpu()[:, None, None] * a
    maps = torch.relu((onehot @ contrib.reshape(c, h * w)).reshape(k, h, w))
    t = worth.double().cpu().numpy()
    total = float(np.clip(t, 0, None).sum())
    weights = np.array([t[groups == j].sum() for j in range(k)], np.float64)
    weights = 100.0 * weights / total if total > 0 else np.zeros(k)
    order = np.argsort(-weights, kind="stable")
    return maps, weights, groups, order
