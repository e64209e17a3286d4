"""The explanations people already know, beside INV: LIME, KernelSHAP and Grad-CAM for one image and target.

    from inv_widgets.concepts.baselines import attribution_maps
    maps = attribution_maps(session, 0)                  # {"lime": (H, W), "kernelshap": ..., "gradcam": ...}

- **LIME** (Ribeiro et al. 2016) and **KernelSHAP** (Lundberg and Lee 2017) are captum's ``Lime`` and
  ``KernelShap`` over SLIC superpixels (scikit-image) of the image as a person sees it: a superpixel that is
  switched off shows the image's mean colour. LIME weighs samples as the original ``lime_image`` does (an
  exponential kernel, width 0.25, on the cosine distance to the whole image) and fits a ridge regression
  (alpha 1); KernelSHAP uses the Shapley kernel and a linear regression, captum's defaults. Both explain the
  target's pre-softmax logit, the score INV's weights differentiate (a probability near 1 barely moves).
  Every random draw comes from ``seed``.
- **Grad-CAM** (Selvaraju et al. 2017) at the session's last explained layer (the last convolution by
  default), from the same cached forward and backward pass as INV's explanation.

Every map is (H, W) at model-input size, min-max scaled to [0, 1] (a flat map is all zeros); the order of
pixels, what deletion and insertion curves read, is the attribution's. Results are cached per session,
image, target and settings. ``progress(done, total, message)`` is called as model evaluations finish; an
exception it raises (e.g. :class:`Cancelled`) stops the computation: the method it stopped is not cached
(methods finished before it are).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..engine.runtime import LRU

__all__ = [
    "attribution_maps",
    "cached_maps",
    "superpixels",
    "check_settings",
    "METHODS",
    "DEFAULT_SAMPLES",
    "DEFAULT_SEGMENTS",
    "LOWEST",
    "Cancelled",
]

#: The baselines, in the order they are shown.
METHODS = ("lime", "kernelshap", "gradcam")
#: Model evaluations per LIME or KernelSHAP explanation (about 5 per superpixel).
DEFAULT_SAMPLES = 256
#: SLIC superpixels asked for (SLIC returns about as many).
DEFAULT_SEGMENTS = 50
#: Perturbed images per forward pass.
BATCH = 32
#: LIME's kernel width on the cosine distance (``lime_image``'s default).
LIME_KERNEL_WIDTH = 0.25

Progress = Callable[[int, int, str], None]


class Cancelled(Exception):
    """Raise it from a ``progress`` callback to stop :func:`attribution_maps` (the stopped method is not cached)."""


_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()
#: captum draws its samples from torch's global generator: one seeded computation at a time.
_rng_lock = threading.Lock()


def _cache(session) -> LRU:
    with _caches_lock:
        c = _caches.get(session)
        if c is None:
            c = _caches[session] = LRU(64)
        return c


def _check_methods(methods) -> tuple[str, ...]:
    if isinstance(methods, str):
        methods = (methods,)
    try:
        out = tuple(str(m).lower() for m in methods)
    except TypeError:
        raise TypeError(f"methods must be a sequence of names from {METHODS}, got {methods!r}") from None
    bad = [m for m in out if m not in METHODS]
    if bad or not out:
        raise ValueError(f"unknown baseline method(s) {bad or methods!r}; choose from {METHODS}")
    return tuple(dict.fromkeys(out))


#: The lowest value of each setting of LIME and KernelSHAP (the compare view, ``--baselines`` and
#: :func:`attribution_maps` all check against these).
LOWEST = {"n_samples": 3, "n_segments": 2, "seed": 0}


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_settings(**settings) -> dict:
    """The settings given (``n_samples``, ``n_segments``, ``seed``), checked: a clear error for an unknown name
    or a value below :data:`LOWEST`."""
    unknown = sorted(set(settings) - set(LOWEST))
    if unknown:
        raise ValueError(
            f"unknown baselines setting(s) {unknown}; the settings are n_samples (model "
            "evaluations, >= 3), n_segments (superpixels, >= 2) and seed"
        )
    return {k: _check_int(k, v, LOWEST[k]) for k, v in settings.items()}


def superpixels(image: np.ndarray, n_segments: int = DEFAULT_SEGMENTS) -> np.ndarray:
    """SLIC superpixels of an (H, W, 3) uint8 image: (H, W) int64 labels 0..M-1 with no gaps."""
    from skimage.segmentation import slic

    img = np.asarray(image)
    seg = slic(
        img,
        n_segments=int(n_segments),
        compactness=10.0,
        sigma=1.0,
        start_label=0,
        channel_axis=-1 if img.ndim == 3 else None,
    )
    _, labels = np.unique(seg, return_inverse=True)
    return labels.reshape(seg.shape).astype(np.int64)


def _minmax(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(a.shape, np.float32)
    return ((a - lo) / (hi - lo)).astype(np.float32)


def _lime_similarity(original, perturbed, interpretable, **kwargs):
    """LIME's sample weight: exp kernel (width 0.25) on the cosine distance of the superpixels kept to all."""
    z = interpretable.float().reshape(-1)
    kept = float(z.sum())
    cos = kept / (np.sqrt(kept) * np.sqrt(z.numel())) if kept > 0 else 0.0
    d = 1.0 - cos
    return float(np.sqrt(np.exp(-(d**2) / LIME_KERNEL_WIDTH**2)))


def _surrogate(
    session,
    x: torch.Tensor,
    target: int,
    seg: np.ndarray,
    method: str,
    n_samples: int,
    seed: int,
    tick: Callable[[int], None],
) -> np.ndarray:
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import KernelShap, Lime

    device = session.device

    def forward(batch: torch.Tensor) -> torch.Tensor:
        # through the session's model runner: its output choice, eval mode and lock around each batch (an
        # explanation on another thread, the Explorer's, puts hooks on this same model; between batches it can run)
        out = session.runner.logits(batch)
        tick(int(batch.shape[0]))
        return out

    inp = x[None].to(device)
    fill = inp.mean(dim=(2, 3), keepdim=True).expand_as(inp).contiguous()  # the image's mean colour
    mask = torch.as_tensor(seg, device=device)[None, None]
    if method == "lime":
        explainer = Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=_lime_similarity)
    else:
        explainer = KernelShap(forward)
    with _rng_lock, torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        attr = explainer.attribute(
            inp,
            baselines=fill,
            target=int(target),
            feature_mask=mask,
            n_samples=int(n_samples),
            perturbations_per_eval=min(BATCH, int(n_samples)),
        )
    return attr[0, 0].detach().float().cpu().numpy()


def _keys(session, index, target, methods, n_samples, n_segments, seed):
    """(explanation, image id, {method: cache key}, checked settings) after checking every argument."""
    methods = _check_methods(methods)
    n_samples, n_segments, seed = check_settings(n_samples=n_samples, n_segments=n_segments, seed=seed).values()
    exp = session.explain(index, target, lazy=True)  # checks index and target; cached, as INV's own pass
    tgt = int(exp.target)
    iid = session.image_id(index)
    keys = {m: (iid, tgt, m) if m == "gradcam" else (iid, tgt, m, n_samples, n_segments, seed) for m in methods}
    return exp, iid, keys, (n_samples, n_segments, seed)


def cached_maps(
    session,
    index,
    target=None,
    methods: Sequence[str] = METHODS,
    n_samples: int = DEFAULT_SAMPLES,
    n_segments: int = DEFAULT_SEGMENTS,
    seed: int = 0,
) -> dict[str, np.ndarray] | None:
    """What :func:`attribution_maps` would return if every map is cached already, else ``None`` (no work)."""
    keys = _keys(session, index, target, methods, n_samples, n_segments, seed)[2]
    cache = _cache(session)
    hits = {m: cache.get(k) for m, k in keys.items()}
    return None if any(v is None for v in hits.values()) else {m: v.copy() for m, v in hits.items()}


def attribution_maps(
    session,
    index,
    target=None,
    methods: Sequence[str] = METHODS,
    n_samples: int = DEFAULT_SAMPLES,
    n_segments: int = DEFAULT_SEGMENTS,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """LIME, KernelSHAP and Grad-CAM maps of image ``index`` for ``target`` (None: the predicted class).

    Parameters
    ----------
    session : inv_widgets.Session
    index : int
        An image of the session.
    target : int or str, optional
        The class explained (index or name); the predicted class by default.
    methods : sequence of str
        Any of ``"lime"``, ``"kernelshap"``, ``"gradcam"``.
    n_samples : int
        Model evaluations for LIME and for KernelSHAP each (default 256, about 5 per superpixel).
    n_segments : int
        SLIC superpixels asked for (default 50).
    seed : int
        Seed of the perturbation samples: the same arguments give the same maps.
    progress : callable, optional
        ``progress(done, total, message)`` as model evaluations finish; raise from it to stop.

    Returns
    -------
    dict mapping each method to an (H, W) float32 array in [0, 1] at model-input size.
    """
    exp, iid, keys, (n_samples, n_segments, seed) = _keys(session, index, target, methods, n_samples, n_segments, seed)
    tgt = int(exp.target)
    cache = _cache(session)
    out: dict[str, np.ndarray] = {}
    for m in keys:
        hit = cache.get(keys[m])
        if hit is not None:
            out[m] = hit.copy()
    todo = [m for m in keys if m not in out]
    total = sum(1 if m == "gradcam" else n_samples for m in todo)
    done = [0]

    def report(message: str) -> None:
        if progress is not None:
            progress(min(done[0], total), total, message)

    if any(m != "gradcam" for m in todo):
        from .extras import require_concepts

        require_concepts("LIME and KernelSHAP", ("captum", "skimage"))
    report("starting" if todo else "cached")
    seg = None
    for m in todo:
        if m == "gradcam":
            cam = _minmax(exp[exp.layers[-1]].gradcam())
            done[0] += 1
            report(f"Grad-CAM at {exp.layers[-1]}")
        else:
            if seg is None:
                seg = cache.get(
                    ("slic", iid, n_segments), lambda: superpixels(np.asarray(session.image(index)), n_segments)
                )
            name = "LIME" if m == "lime" else "KernelSHAP"

            def tick(b: int, name=name) -> None:
                done[0] += b
                report(f"{name}: {done[0]}/{total} model evaluations")

            cam = _minmax(_surrogate(session, session.input(index), tgt, seg, m, n_samples, seed, tick))
        cam.flags.writeable = False
        cache.put(keys[m], cam)
        out[m] = cam.copy()
    return {m: out[m] for m in keys}
