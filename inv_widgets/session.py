"""Session: a model and the images it explains, with a bounded cache of explanations; a MapSource.

Each idea has its own home, and the Session puts them together: how the model is called
(``engine/runner.py``, :class:`~inv_widgets.engine.runner.ModelRunner`), the images and their model inputs
(``inputs.py``, :class:`~inv_widgets.inputs.ImageSet`), the results (``engine/explanation.py``, cut by
``engine/cut.py``); here are the cache of explanations and the lookup of cluster maps by key
(:class:`~inv_widgets.engine.sources.MapSource`, as a stored Run offers them too) is in ``keyed.py``. The model
runs once per (image, target); everything after that (layers, recipes, cuts) reuses the cached Explanation.
"""

from __future__ import annotations

import gc
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .engine import Explanation, build_explanations, find_layers
from .engine.ablation import ModelProbe
from .engine.capture import LAYER_MODES
from .engine.contrast import WIRED as WIRED_MAPS
from .engine.contrast import check_maps
from .engine.modelio import Output, layer_names, warn_one_layer
from .engine.request import check_batch_size, check_choice, check_indices, check_recipe, check_target, check_whole
from .engine.runner import ModelRunner
from .engine.runtime import LRU, return_freed_memory
from .engine.weights import check_weighting
from .inputs import ImageSet, tensor_id
from .keyed import KeyedMaps
from .sizing import DEFAULT_MAX_PIXELS, InputLimits

__all__ = ["Session", "explain"]

Progress = Callable[[int, int, str], None]


class Session(KeyedMaps):
    """A model and the images it explains, with a bounded cache of explanations.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier returning logits (batch, classes). It is moved to ``device`` and explained in eval
        mode; its own train/eval flags are restored after each pass.
    data : dataset or list of images, optional
        A dataset whose items are ``(tensor, label)`` (it may offer ``.image(i)``, ``.classes`` and
        ``.transform``), or a list of PIL images / arrays / file paths / tensors.
    transform : callable, optional
        PIL image -> model tensor (e.g. ``torchvision.models.VGG16_Weights.DEFAULT.transforms()``).
        Defaults to the dataset's ``transform``, else a plain [0, 1] tensor.
    class_names : list of str, optional
        Defaults to the dataset's ``classes``.
    device : str or torch.device, optional
        Where the model runs (default: where its parameters are).
    layers : str or list of str, optional
        Layer names to explain (a string is one name; repeated names are explained once, with a warning);
        checked against the model here. By default found automatically (``layer_mode="conv"``: every Conv2d;
        ``"blocks"``: the model's building blocks, such as ResNet's BasicBlock or GoogLeNet's inception
        modules) and, when the model first runs, kept only if they run and give feature maps larger than
        1 x 1 (the 1 x 1 convolutions of squeeze-excitation blocks have nothing to show; name such a layer to
        explain it anyway). ``session.layers`` is that list once the model has run.
    recipe : str
        Default clustering recipe, a name of the recipe registry (``inv_widgets.engine.recipes``): "fast"
        (default), "paper", "paper-sklearn" or "spatial".
    output : int, str or callable, optional
        Which of the model's outputs holds the logits, for a model that returns several: an index into a
        tuple, a key of a dict, or a callable ``f(outputs) -> logits``. By default a tensor as it is, the first
        item of a tuple (with a warning naming the outputs) or a dict's ``"logits"`` (else its first value).
    weighting : str
        How each feature map is weighted: "guided" (the paper's guided gradients, mean_ij((A>0)(G>0)G)) or
        "taylor" (gradient x activation, mean_ij(G A), its positive part): a first-order estimate of what
        zeroing the map costs the target. Everything after the model's pass follows it: the keep filter,
        the clusters, the cluster weights and maps, Deep Reveal and the labels' keys.
    layer_point : str
        Where each convolution's maps are read (and its channels zeroed by ``ablation``): "activation" (after
        its BatchNorm and activation, where the network hands them on; a convolution with neither stays at its
        output) or "conv" (the convolution's own output, before them). See ``inv_widgets.engine.points``. Part
        of the maps' identity: labels given at one point never attach to the other's maps.
    maps : str
        What a cluster map is drawn from (``inv_widgets.engine.contrast``, whose ``map_meaning(maps)`` says it in
        a line): "published" (the paper's), "gradcam" (the Grad-CAM of all of a cluster's channels, signs kept; a
        map's weight is then its channels' first-order worth) or "contrast" (weights from the class's logit minus
        the mean logit). Part of the maps' identity, as ``layer_point``.
    cache_size : int
        How many explanations to keep (least recently used are dropped). An explanation asked for with
        ``target=None`` is the same object as the one asked for with its predicted class. Model inputs are
        kept for ``2 * cache_size`` images (at least 32), class probabilities for 1,024; ``clear_cache()``
        empties all of them. Dropped explanations are freed as they go (one garbage collection per
        ``max(cache_size, 8)`` dropped). See docs/method.md, "Memory held by a session".
    input_size, max_pixels, max_memory :
        Pictures sized for the model (``session.inputs``, :class:`inv_widgets.sizing.InputLimits`, where each is
        described): larger than the model's input size ("auto": ``model.input_size``, the demo's 128 x 128),
        resized to it with a warning; above ``max_pixels`` (50 MP), refused before decoding; an explanation that
        would need more than ``max_memory`` bytes ("auto": what the process can allocate), refused before it runs.

    A float16 or bfloat16 model runs in its own dtype (the input is cast to it); weights and maps are
    computed in float32 from what it records.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any = None,
        *,
        transform=None,
        class_names: Sequence[str] | None = None,
        device=None,
        layers: str | Sequence[str] | None = None,
        layer_mode: str = "conv",
        recipe: str = "fast",
        weighting: str = "guided",
        cache_size: int = 16,
        batch_size: int = 8,
        output: Output = None,
        layer_point: str = "activation",
        maps: str = "gradcam",
        input_size="auto",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        max_memory="auto",
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.recipe = check_recipe(recipe)
        self.weighting = check_weighting(weighting)
        self.maps = check_maps(maps, WIRED_MAPS)
        self.cache_size = check_whole("cache_size", cache_size, lo=1)
        self.batch_size = check_batch_size(batch_size)
        check_choice("layer_mode", layer_mode, LAYER_MODES)
        #: how the model is called (device, output, dtype, eval mode, one pass at a time): engine/runner.py
        self.runner = ModelRunner(model, device, output, layer_point=layer_point)
        #: the images (dataset + added images) and their model inputs: inputs.ImageSet
        self.image_set = ImageSet(data, transform, cache_size=max(2 * self.cache_size, 32))
        self.layer_mode = layer_mode
        self._auto_layers = layers is None
        self._layers = layer_names(model, layers) if layers is not None else find_layers(model, layer_mode)
        self._probed = False
        if self._auto_layers and len(self._layers) == 1:
            warn_one_layer(model, self._layers[0])
        self.inputs = self.image_set.limits = InputLimits(  # pictures sized for the model (the image set applies it)
            model,
            self.image_set.transform,
            self._layers,
            input_size=input_size,
            max_pixels=max_pixels,
            max_memory=max_memory,
            device=self.runner.device,
            lock=self.runner.lock,
        )
        names = class_names if class_names is not None else self.image_set.classes
        self._class_names = [str(c) for c in names] if names is not None else None
        # Bounded caches (engine.runtime.LRU), all emptied by clear_cache(). Explanations are kept under
        # (image id, target class); an explanation of the predicted class (target=None) is found through
        # ``_predicted`` (image id -> predicted class), so that both ways of asking give the same object and it
        # counts once.
        self._cache = LRU(self.cache_size)
        self._predicted = LRU(4096)
        self._preds = LRU(1024)  # class probabilities by image id

    # ---- what the session is made of ----------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        """The explained model (on :attr:`device`)."""
        return self.runner.model

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.runner.device

    @property
    def output(self) -> Output:
        """Which of the model's outputs holds the logits (None: the default choice)."""
        return self.runner.output

    @property
    def _lock(self):
        return self.runner.lock

    @property
    def layer_point(self) -> str:
        """Where each convolution's maps are read: "activation" or "conv" (``Session(layer_point=...)``)."""
        return self.runner.layer_point

    @property
    def dataset(self):
        """The dataset given as ``data`` (None for a list of images)."""
        return self.image_set.dataset

    @property
    def transform(self):
        """PIL image -> model tensor, as given or taken from the dataset."""
        return self.image_set.transform

    @property
    def _inputs(self) -> LRU:
        return self.image_set._inputs

    def __len__(self) -> int:
        return len(self.image_set)

    def __repr__(self):
        classes = len(self._class_names) if self._class_names is not None else "?"
        return (
            f"Session({type(self.model).__name__}, images={len(self)}, classes={classes}, "
            f"layers={len(self._layers)}, device={str(self.device)!r}, recipe={self.recipe!r}, "
            f"weighting={self.weighting!r}, layer_point={self.layer_point!r}, maps={self.maps!r})"
        )

    @property
    def layers(self) -> list[str]:
        """The layers explained, in the order they run. Until the model has run once, the layers found in the
        model; then only those that ran and gave feature maps (for automatically found layers, larger than 1 x 1).
        The first explanation of an image of image 0's size learns them from its own pass; asked for before,
        they are learnt from a forward pass on image 0, without gradients."""
        if not self._probed and len(self):
            self._probe()
        return list(self._layers)

    def _probe(self) -> None:
        """Run the model once on image 0 (no gradients) to learn which layers run, and check its output."""
        with self._lock:
            if not self._probed:
                x = self.input(0)
                self._layers, logits = self.runner.resolve_layers(x[None], self._layers, auto=self._auto_layers)
                self._probed = True
                self._preds.put(tensor_id(x), torch.softmax(logits.float(), 1)[0].cpu().numpy())

    @property
    def classes(self) -> list[str]:
        """The class names (given, the dataset's, else ``'0'``, ``'1'``, ... after one prediction)."""
        if self._class_names is None:
            n = int(self.predict(0).shape[0]) if len(self) else 0
            self._class_names = [str(i) for i in range(n)]
        return self._class_names

    @property
    def fingerprint(self) -> str:
        """Short id of the model's architecture and weights (part of every cluster map's identity)."""
        return self.runner.fingerprint + ("" if self.maps == "published" else f"-{self.maps}")

    @property
    def map_type(self) -> str:
        """What the cluster maps are drawn from: :attr:`maps` (MapSource, as a run's ``map_type``)."""
        return self.maps

    # ---- images (inputs.ImageSet) ---------------------------------------------------------------
    def check_images(self, images: Sequence[int] | None = None) -> list[int]:
        """Image indices checked (negative ones count from the end) and once each; None: every image (MapSource)."""
        return check_indices(images, len(self), what="image", owner="the session", allow_empty=True)

    def add_image(self, image: Any) -> int:
        """Add an image (PIL, array, path or tensor); returns its index. Checked now, not at first use."""
        return self.image_set.add(image)

    def input(self, i: int) -> torch.Tensor:
        """Model input (C, H, W) of image ``i``."""
        return self.image_set.input(i)

    def image(self, i: int) -> Image.Image:
        """What a person sees of image ``i``, at model-input size (PIL RGB)."""
        return self.image_set.picture(i)

    def item(self, i: int) -> tuple[torch.Tensor, np.ndarray, int | None]:
        """``(model input, what a person sees as uint8 (H, W, 3), ground-truth label or None)`` of image
        ``i``, read once and not cached: for passes over a whole dataset (``explain_dataset``), where the
        session's caches would only grow."""
        return self.image_set.item(i)

    def image_id(self, i: int) -> str:
        """A stable id of image ``i`` (a hash of its model input): the key of its answers and cached results."""
        return self.image_set.image_id(i)

    def index_of(self, image_id: str) -> int:
        """The index of the image whose id (``MapKey.image_id``) is ``image_id``; ``KeyError`` if none."""
        with self._lock:
            return self.image_set.index_of(image_id)

    def label(self, i: int) -> int | None:
        """Ground-truth class of a dataset image, if the dataset gives one."""
        return self.image_set.label(i)

    def fill(self, image) -> torch.Tensor:
        """Image ``image`` (index, PIL image, array or tensor) with its content removed, as model input (C, H, W):
        what deletion and insertion curves put in place of the pixels they delete. The dataset's
        ``background(i)`` when it has one (the demo draws each image's own background without the object),
        otherwise a Gaussian blur of the input (sigma: 1/16 of the longer side)."""
        x, _, index = self.image_set.resolve(image)
        return self.image_set.fill(index, x)

    # ---- model --------------------------------------------------------------------------------
    def predict(self, i) -> np.ndarray:
        """Class probabilities (softmax of the logits) for image ``i`` (cached)."""
        x, key, _ = self.image_set.resolve(i)
        with self._lock:
            return self._preds.get(key, lambda: self._probabilities(x))

    def _probabilities(self, x: torch.Tensor) -> np.ndarray:
        if not self._probed:
            self.layers  # noqa: B018 - the first run checks the model's output (and warns once)
        return self.runner.probabilities(x[None])[0].cpu().numpy()

    def _check_target(self, target):
        return check_target(target, self._class_names, modes=())

    def explain(
        self, image, target=None, *, recipe: str | None = None, progress: Progress | None = None, lazy: bool = False
    ) -> Explanation:
        """Explain one image (index, PIL image, array or tensor) for ``target`` (None: the predicted class).

        The model runs once per (image, target); the result is cached. ``lazy=True`` returns before the
        layers' dendrograms are built (each is then built on first use).
        """
        recipe = check_recipe(recipe or self.recipe)
        target = self._check_target(target)
        x, iid, index = self.image_set.resolve(image)
        with self._lock:
            exp = self._cached(iid, target)
            if exp is None:
                if progress:
                    progress(0, len(self._layers) + 1, "running the model")
                exp = self._store(self._run([x], [iid], [index], target)[0], iid, target)
            if exp.recipe != recipe:
                exp = exp.with_recipe(recipe)
        if not lazy:
            total = len(exp.layers) + 1
            exp.compute(recipe, (lambda d, t, m: progress(d + 1, total, m)) if progress else None)
        elif progress:
            progress(1, 1, "done")
        return exp

    def explain_many(
        self,
        images: Sequence,
        target=None,
        *,
        recipe: str | None = None,
        batch_size: int | None = None,
        progress: Progress | bool = True,
        lazy: bool = True,
    ) -> list[Explanation]:
        """Explain several images, ``batch_size`` per forward/backward pass (fast on a GPU).

        Images of different sizes are batched by size, so mixed sizes work whatever is cached. ``progress``:
        True (default) shows a progress bar (tqdm: notebook or terminal) at once when there is more than one
        batch to run, and for one batch once it has run for two seconds (the model's pass over a large batch
        takes a while; a quick call stays quiet); False nothing; or a callable ``progress(done, total, message)``,
        called after each batch.

        The in-memory form of :func:`inv_widgets.explain_dataset`: full explanations (every kept map,
        recuts at any k) in the session's bounded cache, nothing on disk. For a dataset, use that."""
        recipe = check_recipe(recipe or self.recipe)
        target = self._check_target(target)
        bs = check_batch_size(batch_size, none_ok=True) or self.batch_size
        resolved = [self.image_set.resolve(im) for im in images]
        out: list[Explanation | None] = [None] * len(resolved)
        by_shape: dict[tuple, list[int]] = {}  # images not cached, by input shape (in order of appearance)
        for j, (x, iid, _) in enumerate(resolved):
            hit = self._cached(iid, target)
            if hit is not None:
                out[j] = hit
            else:
                by_shape.setdefault(tuple(x.shape), []).append(j)
        chunks = [todo[s : s + bs] for todo in by_shape.values() for s in range(0, len(todo), bs)]
        done = len(resolved) - sum(len(c) for c in chunks)
        bar, ticking, ticker = None, threading.Event(), None
        if progress is True and chunks:
            from tqdm.auto import tqdm

            one = len(chunks) == 1  # shown after two seconds, and kept ticking while the model's pass runs
            bar = tqdm(total=len(resolved), initial=done, unit="img", desc="explaining", delay=2.0 if one else 0)
            if one:
                ticker = threading.Thread(target=_tick, args=(bar, ticking), daemon=True)
                ticker.start()
        try:
            for chunk in chunks:
                if bar is not None:
                    bar.set_postfix_str(
                        f"model pass of {len(chunk)} image{'s' if len(chunk) != 1 else ''}", refresh=False
                    )
                exps = self._run(
                    [resolved[j][0] for j in chunk],
                    [resolved[j][1] for j in chunk],
                    [resolved[j][2] for j in chunk],
                    target,
                )
                for j, e in zip(chunk, exps):
                    out[j] = self._store(e, resolved[j][1], target)
                done += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                elif callable(progress):
                    progress(done, len(resolved), f"explained {done}/{len(resolved)} images")
        finally:
            ticking.set()
            if ticker is not None:
                ticker.join()
            if bar is not None:
                bar.set_postfix_str("", refresh=False)
                bar.close()
        out = [e if e.recipe == recipe else e.with_recipe(recipe) for e in out]
        if not lazy:
            for e in out:
                e.compute(recipe)
        return out

    def _run(self, xs, iids, indices, target) -> list[Explanation]:
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) > 1:
            raise ValueError(f"images in one batch must have the same shape, got {sorted(shapes)}")
        batch = torch.stack(xs).to(self.device)
        with self._lock:
            weighting = None if self.maps == "gradcam" else self.weighting  # gradcam: gradient x activation too
            score = "contrast" if self.maps == "contrast" else "logit"
            if not self._probed and (not len(self) or tuple(batch.shape[1:]) == tuple(self.input(0).shape)):
                # the first pass learns the layers itself (at image 0's size, as _probe would): no pass of its own
                cap, self._layers = self.runner.capture_first(
                    batch, self._layers, target, auto=self._auto_layers, weighting=weighting, score=score
                )
                self._probed = True
            else:
                layers = self.layers  # the first run also checks the layers and the model's output
                cap = self.runner.capture(
                    batch, layers, target, weighting=weighting, score=score, spatial_only=self._auto_layers
                )
        names = self._class_names
        if names is None:
            names = self._class_names = [str(i) for i in range(cap.logits.shape[1])]
        elif len(names) != cap.logits.shape[1]:
            raise ValueError(f"the model has {cap.logits.shape[1]} outputs but {len(names)} class names were given")
        probes = [
            ModelProbe(
                self.model,
                batch[i],
                cap.targets[i],
                lock=self._lock,
                output=self.output,
                layer_point=self.layer_point,
                fill=lambda index=index, x=xs[i]: self.image_set.fill(index, x),
            )
            for i, index in enumerate(indices)
        ]
        shown = [self.image_set.shown(index, x) for index, x in zip(indices, xs)]
        exps = build_explanations(
            cap,
            shown,
            model_id=self.fingerprint,
            image_ids=iids,
            class_names=names,
            recipe=self.recipe,
            weighting=self.weighting,
            probes=probes,
            maps=self.maps,
        )
        for e, index in zip(exps, indices):
            e.index = index
            if all(len(d.kept) == 0 for d in e._layers.values()):
                warnings.warn(
                    f"no feature map is kept in any layer for class {e.target_name!r}: the class score does not "
                    "depend on the explained layers (every channel weight is zero or negative). Check the model's "
                    "head (an untrained or zeroed last layer outputs constants).",
                    UserWarning,
                    stacklevel=4,
                )
        return exps

    def _cached(self, iid, target) -> Explanation | None:
        if target is None:
            target = self._predicted.get(iid)
            if target is None:
                return None
        return self._cache.get((iid, target))

    def _store(self, exp: Explanation, iid, target) -> Explanation:
        """Keep ``exp``; returns the explanation now held for it (one already there wins: one object). Dropped
        explanations are reference cycles (layers point back) that the cyclic collector reached too rarely: one
        ``gc.collect()`` per ``max(cache_size, 8)`` dropped frees them (docs/method.md, "Memory held by a session")."""
        held = self._cache.put((iid, exp.target), exp)
        if target is None:
            self._predicted.put(iid, exp.target)
        if self._cache.dropped >= max(self.cache_size, 8):
            self._cache.dropped = 0
            gc.collect()
        return held

    def sanity_check(
        self,
        images=None,
        *,
        layers=None,
        maps=("published",),
        tests=("cascade", "random class"),
        seed: int = 0,
        progress: bool = True,
    ):
        """Sanity checks (Adebayo et al. 2018) of this session's maps on its own model: do they change when the
        model is re-initialised from the output back, or another class is explained? Returns a DataFrame (one
        row per map type, layer, map, test and step: Spearman's rho and SSIM against the original map with their
        95 % CIs over the images; ``.plot()`` draws the cascade). See
        :func:`inv_widgets.engine.sanity.session_sanity_check` for the arguments."""
        from .engine.sanity import session_sanity_check

        return session_sanity_check(self, images, layers=layers, maps=maps, tests=tests, seed=seed, progress=progress)

    def clear_cache(self):
        """Empty every cache (explanations with their cuts, predicted classes, class probabilities, model inputs)
        and hand the freed memory back to the system (``malloc_trim`` on Linux). The index from image ids to
        indices stays (about 100 bytes per image); so do explanations you hold and the widgets' own bounded
        picture caches. See docs/method.md, "Memory held by a session"."""
        with self._lock:
            self._cache.clear()
            self._predicted.clear()
            self._preds.clear()
            self.image_set.clear()
        return_freed_memory()


def _tick(bar, stop: threading.Event, every: float = 1.0) -> None:
    """Redraw ``bar`` every second until ``stop``: its clock moves (and, past its ``delay``, it appears) while
    one long batch gives it nothing to count."""
    while not stop.wait(every):
        bar.update(0)


def explain(
    model: nn.Module,
    image,
    target=None,
    *,
    layers=None,
    layer_mode: str = "conv",
    transform=None,
    class_names=None,
    recipe: str = "fast",
    weighting: str = "guided",
    device=None,
    output: Output = None,
    layer_point: str = "activation",
    maps: str = "gradcam",
) -> Explanation:
    """One-off explanation of one image: ``inv.explain(model, image)``; see :class:`Session` (``output``
    chooses among the outputs of a model that returns several)."""
    s = Session(
        model,
        [image],
        transform=transform,
        class_names=class_names,
        device=device,
        layers=layers,
        layer_mode=layer_mode,
        recipe=recipe,
        weighting=weighting,
        cache_size=1,
        output=output,
        layer_point=layer_point,
        maps=maps,
    )
    return s.explain(0, target)
