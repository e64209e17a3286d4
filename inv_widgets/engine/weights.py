"""Per-channel weights: guided gradients (the paper's alpha_k) or gradient x activation (a first-order Taylor
estimate of what zeroing a channel costs), the keep filter, plain Grad-CAM."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .runtime import parallel_map

__all__ = [
    "guided_alpha",
    "taylor_alpha",
    "channel_statistics",
    "guided_weights",
    "to_percent",
    "keep_channels",
    "gradcam_lowres",
    "KEEP_FACTOR",
    "WEIGHTINGS",
    "check_weighting",
    "layer_percent",
]

#: Maps whose share is below KEEP_FACTOR / N percent are dropped (0.175 % at 512 maps, as published).
KEEP_FACTOR = 89.6


def guided_alpha(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """alpha_k = mean_ij((A > 0)(G > 0) G), (B, C), from ``acts`` and ``grads`` (B, C, h, w)."""
    g = torch.where((acts > 0) & (grads > 0), grads, torch.zeros((), dtype=grads.dtype, device=grads.device))
    return g.mean(dim=(2, 3))


def taylor_alpha(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Gradient x activation, mean_ij(G A), (B, C): the first-order (Taylor) estimate of the target's drop when
    a channel is zeroed, divided by the number of pixels. Negative where removing the channel would raise the
    target."""
    return (acts * grads).mean(dim=(2, 3))


def channel_statistics(acts: torch.Tensor, grads: torch.Tensor, weighting: str | None = None):
    """``(guided_alpha, mean gradient, taylor_alpha)`` of a layer, each (B, C) float32; ``weighting``
    ("guided" or "taylor") computes that one of the two weightings only (the other is None).

    On the CPU the statistics are reduced a piece at a time (an image, or a block of an image's channels), the
    pieces side by side on one thread each (:func:`~inv_widgets.engine.runtime.parallel_map`): each piece's
    temporaries stay in the cache, and no thread waits for another after every small operation, as torch's own
    threads do (on a busy machine that waiting costs more than the work). Bit for bit what the batched
    expressions give (every (image, channel) row is reduced by itself either way). On a GPU, the whole batch at
    once.
    """
    b, c = acts.shape[:2]
    if acts.device.type != "cpu" or not b * c:
        return _statistics(acts.float(), grads.float(), weighting, cpu=acts.device.type == "cpu")
    per_image = max(1, min(c, -(-_PIECES // b), -(-acts[0].numel() // _PIECE_MIN)))  # blocks of channels per image
    step = -(-c // per_image)
    pieces = [(i, s) for i in range(b) for s in range(0, c, step)]
    got = parallel_map(
        lambda p: _statistics(
            acts[p[0] : p[0] + 1, p[1] : p[1] + step].float(),
            grads[p[0] : p[0] + 1, p[1] : p[1] + step].float(),
            weighting,
            cpu=True,
        ),
        pieces,
    )

    def joined(k):
        if got[0][k] is None:
            return None
        rows = [
            torch.cat([g[k] for g in got[i * per_image : (i + 1) * per_image]], 1) if per_image > 1 else got[i][k]
            for i in range(b)
        ]
        return rows[0] if b == 1 else torch.cat(rows)

    return joined(0), joined(1), joined(2)


#: The CPU statistics are split into at least this many pieces (images, or blocks of one image's channels) ...
_PIECES = 8
#: ... of at least this many values each (a few hundred KB: below that, the calls cost more than the work).
_PIECE_MIN = 1 << 16


def _statistics(a: torch.Tensor, g: torch.Tensor, weighting: str | None, *, cpu: bool):
    guided = (_guided_alpha_cpu(a, g) if cpu else guided_alpha(a, g)) if weighting != "taylor" else None
    mean = g.mean(dim=(2, 3))
    taylor = taylor_alpha(a, g) if weighting != "guided" else None
    return guided, mean, taylor


def _guided_alpha_cpu(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """:func:`guided_alpha` bit for bit, about twice as fast on the CPU (where ``torch.where`` and bool masks
    are slow).

    The mask A > 0 is written as 1.0 / 0.0 (``gt`` into a float tensor: a NaN activation gives 0, as in the
    mask), multiplied by G and thresholded at 0 (values that are not positive become +0): the guided product
    wherever it is not NaN, the same values reduced alike. NaN appears only from ``0 * inf`` (an infinite
    gradient where A <= 0) or a NaN gradient, where the guided product is 0 (it has no NaN at all); such rows
    are computed again by ``guided_alpha`` itself.
    """
    t = torch.gt(acts, 0, out=torch.empty_like(acts)).mul_(grads)
    F.threshold(t, 0.0, 0.0, inplace=True)
    alpha = t.mean(dim=(2, 3))
    bad = alpha.isnan()
    if bad.any():
        alpha = torch.where(bad, guided_alpha(acts, grads), alpha)
    return alpha


#: The per-channel weightings a Session offers: ``"guided"`` (the paper's), ``"taylor"`` (gradient x activation).
WEIGHTINGS = ("guided", "taylor")


def check_weighting(weighting) -> str:
    """``weighting`` if it is one of :data:`WEIGHTINGS`, else a ValueError naming the choices."""
    if weighting not in WEIGHTINGS:
        raise ValueError(
            f'weighting {weighting!r} is unknown; use one of {list(WEIGHTINGS)} ("guided": the paper\'s '
            'guided gradients, "taylor": gradient x activation)'
        )
    return weighting


def layer_percent(captured, name: str, weighting: str = "guided") -> torch.Tensor:
    """Percent weights (B, C) of layer ``name`` of a captured pass under ``weighting``: the guided alpha, or the
    positive part of gradient x activation (a channel whose removal would raise the target gets 0), as a
    percentage of the layer total."""
    alpha = {"guided": captured.guided, "taylor": captured.taylor}[check_weighting(weighting)][name]
    return to_percent(alpha.clamp_min(0))


def to_percent(alpha: torch.Tensor) -> torch.Tensor:
    """Per-channel weights (B, C) as percentages of the layer total (all zeros when the total is not positive)."""
    total = alpha.sum(dim=1, keepdim=True)
    return torch.where(
        total > 0, 100.0 * alpha / total.clamp_min(torch.finfo(alpha.dtype).tiny), torch.zeros_like(alpha)
    )


def guided_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """The paper's weights: guided alpha_k as a percentage of the layer total, per image, (B, C)."""
    return to_percent(guided_alpha(acts, grads))


def keep_channels(percent: torch.Tensor, factor: float = KEEP_FACTOR) -> torch.Tensor:
    """Indices of channels whose percent weight is at least ``factor / N`` (N = number of channels)."""
    n = percent.shape[-1]
    return torch.nonzero((percent >= factor / n) & (percent > 0)).reshape(-1)


def gradcam_lowres(
    acts: torch.Tensor, grads: torch.Tensor | None = None, *, grad_mean: torch.Tensor | None = None
) -> torch.Tensor:
    """Plain Grad-CAM at feature resolution: ReLU(sum_k mean_ij(G_k) A_k), (B, h, w), not normalised.

    Pass the gradients, or only their spatial means ``grad_mean`` (B, C).
    """
    if (grads is None) == (grad_mean is None):
        raise TypeError("gradcam_lowres needs either grads (B, C, h, w) or grad_mean (B, C), not both or neither")
    alpha = grads.mean(dim=(2, 3)) if grad_mean is None else grad_mean
    b, c, h, w = acts.shape
    dtype = torch.promote_types(alpha.dtype, acts.dtype)  # as alpha * acts would give (half maps: float32)
    alpha, acts = alpha.to(dtype), acts.to(dtype)
    # a vector-matrix product per image (no (B, C, h, w) temporary), the same call whatever the batch: an image's
    # Grad-CAM has the same bits in a batch of one and in a dataset run's batch
    cam = (
        torch.stack([alpha[i][None] @ acts[i].reshape(c, h * w) for i in range(b)])
        if b
        else acts.new_zeros(0, 1, h * w)
    )
    return F.relu(cam.reshape(b, h, w))
