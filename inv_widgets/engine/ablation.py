"""Does a cluster map matter? Channels zeroed at a layer's output, and deletion / insertion curves.

A :class:`ModelProbe` holds what it takes to run the model again on changed copies of one explained input:
the model, the input, the target class, the fill that stands for "no content" (deletion and insertion
curves), and the lock of the session that owns the model. Pure torch; the result objects are numpy.

- :meth:`ModelProbe.ablate`: the target's logits with chosen channels of one layer zeroed at its output,
  for M channel sets in one batched forward pass. The model runs once at batch 1 up to the layer; there
  the hook turns the layer's output into M masked copies and the rest of the network runs on the batch.
  A model that cannot take a larger batch after the layer (a hard-coded batch size, a concatenation with an
  earlier batch-1 tensor) is detected by an unmasked reference copy that must reproduce the plain forward,
  and then runs M copies of the whole input instead (same result, more work).
- :meth:`ModelProbe.curves`: deletion and insertion curves (Petsiuk et al., 2018, RISE): the pixels of a
  saliency map, most salient first, replaced by the fill (deletion) or put back onto the fill (insertion),
  scored by the target's probability; the area under each curve (deletion: lower is better; insertion:
  higher is better).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .modelio import Output, input_dtype, select_output
from .points import check_layer_point, points_for
from .runtime import eval_mode

__all__ = ["ModelProbe", "Ablation", "Curves", "pixel_order"]

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, eq=False)
class Ablation:
    """What zeroing channel groups of one layer does to the target class, one row per group.

    ``logit_drop[j]`` = target logit as explained minus the target logit with group ``j``'s channels zeroed at
    the layer's output (positive: the group supported the class); ``probability_drop[j]`` likewise for its
    softmax probability. ``layer_logit_drop`` is the drop when every channel of the layer is zeroed, and
    :attr:`share` each group's drop as a percentage of it (how "drop x %" reads beside "w = x %").
    """

    layer: str
    target: int
    logit: float
    probability: float
    logit_drop: np.ndarray  # (K,)
    probability_drop: np.ndarray  # (K,)
    layer_logit_drop: float
    layer_probability_drop: float
    sizes: np.ndarray  # (K,) channels per group

    def __len__(self) -> int:
        return len(self.logit_drop)

    @property
    def share(self) -> np.ndarray:
        """Each group's logit drop as a percentage of the whole layer's (NaN when zeroing the layer changes
        nothing). Not bounded by 100: channels interact, and a group can hurt the class (negative)."""
        d = self.layer_logit_drop
        if not np.isfinite(d) or abs(d) < 1e-12:
            return np.full(len(self.logit_drop), np.nan)
        return 100.0 * self.logit_drop / d

    def to_frame(self) -> pd.DataFrame:
        """One row per group: ``map``, ``channels``, ``logit_drop``, ``probability_drop``, ``share``."""
        return pd.DataFrame(
            {
                "map": np.arange(len(self)),
                "channels": self.sizes,
                "logit_drop": self.logit_drop,
                "probability_drop": self.probability_drop,
                "share": self.share,
            }
        )

    def __repr__(self) -> str:
        drops = ", ".join(f"{d:.3g}" for d in self.logit_drop[:8]) + (" ..." if len(self) > 8 else "")
        return (
            f"Ablation({self.layer!r}, target={self.target}, logit={self.logit:.3g}, logit_drop=[{drops}], "
            f"layer_logit_drop={self.layer_logit_drop:.3g})"
        )


@dataclass(frozen=True, eq=False)
class Curves:
    """Deletion and insertion curves of M saliency maps: the target's probability after each step.

    ``fractions`` (S+1,) share of pixels deleted (or inserted), 0 to 1; ``deletion`` and ``insertion``
    (M, S+1). Areas by the trapezoid rule over the fractions: a faithful map makes the deletion curve fall
    early (small area) and the insertion curve rise early (large area).
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray

    @property
    def deletion_area(self) -> np.ndarray:
        return np.trapezoid(self.deletion, self.fractions, axis=1)

    @property
    def insertion_area(self) -> np.ndarray:
        return np.trapezoid(self.insertion, self.fractions, axis=1)

    def __len__(self) -> int:
        return len(self.deletion)


def pixel_order(saliency: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rank of every pixel of each map (M, H*W), 0 = most salient; ties broken by one fixed random order
    (``seed``), the same for every map, so that a flat region is not taken row by row from the top."""
    s = np.asarray(saliency, dtype=np.float64).reshape(len(saliency), -1)
    tie = np.random.default_rng(seed).permutation(s.shape[1])
    ranks = np.empty(s.shape, dtype=np.int64)
    for i, row in enumerate(s):
        order = np.lexsort((tie, -row))
        ranks[i, order] = np.arange(s.shape[1])
    return ranks


class ModelProbe:
    """The model, one explained input (C, H, W) and its target class, ready to run on changed copies.

    ``fill``: the input with its content removed, (C, H, W) in model-input space, or a callable making it
    (called once, on first use by :meth:`curves`). ``lock``: held while the model runs (the session's).
    ``output``: which of the model's outputs holds the logits (``Session(output=...)``); the input is cast to
    the model's own dtype (float16 and bfloat16 models run as they are). ``layer_point``: where a layer's
    channels are zeroed, the same point its maps are read at (:mod:`inv_widgets.engine.points`: ``"conv"``, the
    convolution's output, or ``"activation"``, after its normalisation and activation).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        target: int,
        *,
        fill=None,
        lock: threading.RLock | None = None,
        output: Output = None,
        layer_point: str = "conv",
    ):
        if x.dim() != 3:
            raise ValueError(f"ModelProbe takes one input (C, H, W), got shape {tuple(x.shape)}")
        self.layer_point = check_layer_point(layer_point)
        self.model = model
        self.x = x.detach().to(input_dtype(model))
        self.output = output
        self.target = int(target)
        self._fill = fill
        self._lock = lock if lock is not None else threading.RLock()
        self._base: torch.Tensor | None = None
        self._expand_ok: dict[str, bool] = {}

    # ---- running the model ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _running(self):
        with self._lock, torch.no_grad(), eval_mode(self.model):
            yield

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        out, _ = select_output(self.model(batch), self.output)
        return out.detach().float()

    def logits(self) -> torch.Tensor:
        """The target's plain forward pass, (classes,) float32 (made once)."""
        if self._base is None:
            with self._running():
                self._base = self._forward(self.x[None])[0].cpu()
        return self._base

    @property
    def fill(self) -> torch.Tensor:
        if callable(self._fill):
            self._fill = self._fill()
        if self._fill is None:
            raise ValueError(
                "this explanation has no fill for deletion and insertion curves; give the probe a "
                "fill (Session does: the dataset's background(i), else a blurred copy)"
            )
        f = torch.as_tensor(self._fill).to(self.x.device, self.x.dtype)
        if f.shape != self.x.shape:
            raise ValueError(f"the fill has shape {tuple(f.shape)}; the input has {tuple(self.x.shape)}")
        self._fill = f
        return f

    def ablate(self, layer: str, keep: torch.Tensor, *, batch_size: int = 32) -> torch.Tensor:
        """Logits (M, classes), float32 on the CPU, with layer ``layer``'s output multiplied by ``keep`` (M, C)
        per copy (1 keeps a channel, 0 zeroes it), ``batch_size`` copies per forward pass. The output is taken
        at the probe's ``layer_point``."""
        named = dict(self.model.named_modules())
        if named.get(layer) is None:
            raise ValueError(f"the model has no layer {layer!r}")
        with self._running():
            point = points_for(self.model, [layer], self.layer_point, self.x[None])[layer]
        module = (named[point.module], point.call)
        keep = torch.as_tensor(keep, dtype=torch.float32)
        if keep.dim() != 2:
            raise ValueError(f"keep must be (copies, channels), got shape {tuple(keep.shape)}")
        base = self.logits()
        out = []
        for s in range(0, keep.shape[0], batch_size):
            chunk = keep[s : s + batch_size]
            verified = self._expand_ok.get(layer)
            if verified is None:
                # first use at this layer: copies after the layer, checked by an unmasked reference copy (row 0)
                # that must give the plain forward pass
                logits = self._ablate_once(module, layer, chunk, expand=True, reference=True)
                rtol = 3e-2 if self._half_precision() else 1e-3  # half precision rounds batches differently
                tol = rtol * max(1.0, float(base.abs().max()))
                ok = logits is not None and torch.allclose(logits[0], base, rtol=rtol, atol=tol)
                self._expand_ok[layer] = ok
                logits = logits[1:] if ok else None
            elif verified:
                logits = self._ablate_once(module, layer, chunk, expand=True, reference=False)
            else:
                logits = None
            if logits is None:
                logits = self._ablate_once(module, layer, chunk, expand=False, reference=False)
            out.append(logits)
        return torch.cat(out) if out else torch.zeros(0, base.shape[0])

    def _half_precision(self) -> bool:
        p = next(self.model.parameters(), None)
        low = (torch.float16, torch.bfloat16)
        return self.x.dtype in low or (p is not None and p.dtype in low)

    def _ablate_once(
        self, module, layer: str, keep: torch.Tensor, *, expand: bool, reference: bool
    ) -> torch.Tensor | None:
        """One forward pass: ``expand`` turns the layer's batch-1 output into the copies (else the input is
        copied); ``reference`` adds an unmasked copy as row 0. None when the network after the layer does not
        take the larger batch (``expand`` only)."""
        if reference:
            keep = torch.cat([torch.ones(1, keep.shape[1]), keep])
        m = keep.shape[0]
        fired = []
        module, call = module
        calls = [0]

        def hook(mod, inputs, output):
            calls[0] += 1
            if fired or calls[0] - 1 != call:
                return None  # another call of the module: only the layer's point, as capture records it
            t = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.shape[1] != keep.shape[1]:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"layer {layer!r} outputs {shape}; ablation needs (N, {keep.shape[1]}, H, W)")
            fired.append(True)
            k = keep.to(t.device, t.dtype)[:, :, None, None]
            new = (t.expand(m, *t.shape[1:]) if expand else t) * k
            if isinstance(output, tuple):
                return (new, *output[1:])
            if isinstance(output, list):
                return [new, *output[1:]]
            return new

        batch = self.x[None] if expand else self.x[None].expand(m, *self.x.shape).contiguous()
        handle = module.register_forward_hook(hook)
        try:
            with self._running():
                logits = self._forward(batch)
        except (RuntimeError, ValueError):
            if not expand or not fired:
                raise
            return None  # the network after the layer does not take the larger batch: copy the input instead
        finally:
            handle.remove()
        if not fired:
            raise ValueError(f"layer {layer!r} did not run in the forward pass, so nothing can be zeroed there")
        if logits.dim() != 2 or logits.shape[0] != m:
            if expand:
                return None
            raise ValueError(f"the model returned {tuple(logits.shape)} for {m} copies")
        return logits.cpu()

    # ---- deletion and insertion -------------------------------------------------------------------
    def curves(
        self,
        saliency: np.ndarray,
        *,
        steps: int = 20,
        fractions=None,
        batch_size: int = 64,
        progress: Progress | None = None,
    ) -> Curves:
        """Deletion and insertion curves of saliency maps (M, H, W) at the input's resolution: ``steps`` equal
        shares of the pixels, most salient first (or the shares ``fractions``, increasing from 0 to 1), each
        step one forward pass of a copy of the input."""
        sal = np.asarray(saliency)
        if sal.ndim == 2:
            sal = sal[None]
        h, w = self.x.shape[1:]
        if sal.ndim != 3 or sal.shape[1:] != (h, w):
            raise ValueError(f"saliency maps must be (M, {h}, {w}) like the input, got {sal.shape}")
        if fractions is None:
            if int(steps) < 1:
                raise ValueError(f"steps must be at least 1, got {steps}")
            fractions = np.linspace(0.0, 1.0, int(steps) + 1)
        fractions = np.asarray(fractions, dtype=np.float64)
        if (
            fractions.ndim != 1
            or len(fractions) < 2
            or fractions[0] != 0
            or fractions[-1] != 1
            or (np.diff(fractions) <= 0).any()
        ):
            raise ValueError("fractions must increase from 0 to 1 (shares of the pixels), e.g. np.linspace(0, 1, 21)")
        steps = len(fractions) - 1
        counts = np.rint(fractions * h * w).astype(np.int64)
        ranks = torch.from_numpy(pixel_order(sal)).to(self.x.device)
        x, fill = self.x, self.fill
        ends = self._probabilities(torch.stack([x, fill]))  # nothing deleted / everything deleted
        m, inner = len(sal), steps - 1
        deletion = np.empty((m, steps + 1))
        insertion = np.empty((m, steps + 1))
        deletion[:, 0], deletion[:, -1] = ends[0], ends[1]
        insertion[:, 0], insertion[:, -1] = ends[1], ends[0]
        # rows: (map, step, kind) for the inner steps, made and scored batch by batch
        jobs = [(i, s, kind) for i in range(m) for s in range(1, steps) for kind in (0, 1)]
        total = len(jobs)
        for b in range(0, total, batch_size):
            part = jobs[b : b + batch_size]
            masks = torch.stack([(ranks[i] < int(counts[s])).reshape(1, h, w) for i, s, _ in part])
            kinds = torch.tensor([k for _, _, k in part], device=x.device).reshape(-1, 1, 1, 1).bool()
            # deletion (kind 0): the top pixels take the fill; insertion (kind 1): only the top pixels are the input
            deleted = torch.where(masks, fill, x)
            inserted = torch.where(masks, x, fill)
            p = self._probabilities(torch.where(kinds, inserted, deleted))
            for (i, s, kind), v in zip(part, p):
                (insertion if kind else deletion)[i, s] = v
            if progress:
                progress(min(b + batch_size, total), total, "deletion and insertion curves")
        if inner == 0 and progress:
            progress(1, 1, "deletion and insertion curves")
        return Curves(fractions, deletion, insertion)

    def _probabilities(self, batch: torch.Tensor) -> np.ndarray:
        with self._running():
            logits = self._forward(batch)
        return torch.softmax(logits, dim=1)[:, self.target].cpu().numpy().astype(np.float64)
