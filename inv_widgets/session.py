"""Session: model + images + transform + class names + device + a bounded cache of explanations.

The one stateful object that widgets observe. The model runs once per (image, target); everything
after that (layers, recipes, cuts) reuses the cached Explanation.
"""
from __future__ import annotations

import gc
import threading
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .engine import Clusters, Explanation, MapKey, build_explanations, find_layers, fingerprint, run_model
from .engine.capture import LAYER_MODES, InferenceModeError
from .engine.points import check_layer_point
from .engine.modelio import Output, failure_message, input_dtype, layer_names, resolve_layers, select_output, \
    warn_one_layer
from .engine.ablation import ModelProbe
from .engine.recipes import get_recipe, recipe_names
from .engine.runtime import LRU, eval_mode, return_freed_memory
from .engine.weights import check_weighting
from .inputs import blurred, display_image, is_dataset, tensor_id, to_model_input, to_pil

__all__ = ["Session", "explain"]

Progress = Callable[[int, int, str], None]


class Session:
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
        (default), "paper" or "paper-sklearn".
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
        output) or "conv" (the convolution's own output, before them). See ``inv_widgets.engine.points``.
    cache_size : int
        How many explanations to keep (least recently used are dropped). An explanation asked for with
        ``target=None`` is the same object as the one asked for with its predicted class. Model inputs are
        kept for ``2 * cache_size`` images (at least 32), class probabilities for 1,024; ``clear_cache()``
        empties all of them. Dropped explanations are freed as they go (one garbage collection per
        ``max(cache_size, 8)`` dropped). See README, "Memory held by a session".

    A float16 or bfloat16 model runs in its own dtype (the input is cast to it); weights and maps are
    computed in float32 from what it records.
    """

    def __init__(self, model: nn.Module, data: Any = None, *, transform=None, class_names: Sequence[str] | None = None,
                 device=None, layers: str | Sequence[str] | None = None, layer_mode: str = "conv", recipe: str = "fast",
                 weighting: str = "guided", cache_size: int = 16, batch_size: int = 8, output: Output = None,
                 layer_point: str = "conv"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        recipe = get_recipe(recipe).name
        self.weighting = check_weighting(weighting)
        self.layer_point = check_layer_point(layer_point)
        if isinstance(cache_size, bool) or not isinstance(cache_size, (int, np.integer)) or cache_size < 1:
            raise ValueError(f"cache_size must be an integer of at least 1, got {cache_size!r}")
        if layer_mode not in LAYER_MODES:
            raise ValueError(f"layer mode {layer_mode!r} is unknown; use one of {LAYER_MODES} or pass layer names")
        if output is not None and not (callable(output) or isinstance(output, (int, str))) or isinstance(output, bool):
            raise TypeError(f"output must be an index, a key or a callable, got {output!r}")
        if device is None:
            p = next(iter(model.parameters()), None)
            device = p.device if p is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.recipe = recipe
        self.output = output
        self.batch_size = int(batch_size)
        self.cache_size = int(cache_size)
        self.layer_mode = layer_mode
        self._auto_layers = layers is None
        self._layers = layer_names(model, layers) if layers is not None else find_layers(model, layer_mode)
        self._probed = False
        if self._auto_layers and len(self._layers) == 1:
            warn_one_layer(model, self._layers[0])
        self.dataset = data if is_dataset(data) else None
        self.transform = transform if transform is not None else getattr(self.dataset, "transform", None)
        self._extra: list[Any] = []
        if data is not None and self.dataset is None:
            if isinstance(data, (Image.Image, str, np.ndarray, torch.Tensor)):
                data = [data]
            self._extra = list(data)
        names = class_names if class_names is not None else getattr(self.dataset, "classes", None)
        self._class_names = [str(c) for c in names] if names is not None else None
        # Bounded caches (engine.runtime.LRU), all emptied by clear_cache(). Explanations are kept under
        # (image id, target class); an explanation of the predicted class (target=None) is found through
        # ``_predicted`` (image id -> predicted class), so that both ways of asking give the same object and it
        # counts once.
        self._cache = LRU(self.cache_size)
        self._predicted = LRU(4096)
        self._inputs = LRU(max(2 * self.cache_size, 32))  # model inputs by image index (made again when dropped)
        self._preds = LRU(1024)  # class probabilities by image id
        self._lock = threading.RLock()
        self._fingerprint: str | None = None
        # image id -> index, filled as ids are computed: an index of the session's images, not a cache
        # (bounded by the number of images, about 100 bytes each, nothing to evict)
        self._ids: dict[str, int] = {}
        self._ids_seen: set[int] = set()

    # ---- images -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return (len(self.dataset) if self.dataset is not None else 0) + len(self._extra)

    def __repr__(self):
        classes = len(self._class_names) if self._class_names is not None else "?"
        return (f"Session({type(self.model).__name__}, images={len(self)}, classes={classes}, "
                f"layers={len(self._layers)}, device={str(self.device)!r}, recipe={self.recipe!r}, "
                f"weighting={self.weighting!r}, layer_point={self.layer_point!r})")

    @property
    def layers(self) -> list[str]:
        """The layers explained, in the order they run. Until the model has run once (the first use runs it on
        image 0, without gradients), the layers found in the model; then only those that ran and gave feature
        maps (for automatically found layers, larger than 1 x 1)."""
        if not self._probed and len(self):
            self._probe()
        return list(self._layers)

    def _probe(self) -> None:
        """Run the model once on image 0 (no gradients) to learn which layers run, and check its output."""
        with self._lock:
            if not self._probed:
                x = self.input(0)
                self._layers, logits = resolve_layers(self.model, x[None].to(self.device), self._layers,
                                                      auto=self._auto_layers, output=self.output)
                self._probed = True
                self._preds.put(tensor_id(x), torch.softmax(logits.float(), 1)[0].cpu().numpy())

    @property
    def classes(self) -> list[str]:
        if self._class_names is None:
            n = self._num_classes()
            self._class_names = [str(i) for i in range(n)]
        return self._class_names

    def _num_classes(self) -> int:
        if len(self):
            return int(self.predict(0).shape[0])
        return 0

    @property
    def fingerprint(self) -> str:
        """Short id of the model's architecture and weights (part of every cluster map's identity). Maps read
        after the activation (``layer_point="activation"``) are other maps than the conv output's: their id ends in
        ``-act``, so that labels given on one kind never attach to the other."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.model) + ("-act" if self.layer_point == "activation" else "")
        return self._fingerprint

    def add_image(self, image: Any) -> int:
        """Add an image (PIL, array, path or tensor); returns its index. Checked now, not at first use."""
        x = to_model_input(image, self.transform)
        self._extra.append(image)
        i = len(self) - 1
        self._inputs.put(i, x)
        return i

    def _check_index(self, i) -> int:
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"image index must be an int, got {type(i).__name__}")
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"image index {i} out of range: the session has {n} images")
        return i % n

    def input(self, i: int) -> torch.Tensor:
        """Model input (C, H, W) of image ``i``."""
        i = self._check_index(i)
        return self._inputs.get(i, lambda: self._make_input(i))

    def _make_input(self, i: int) -> torch.Tensor:
        nd = len(self.dataset) if self.dataset is not None else 0
        if i < nd:
            item = self.dataset[i]
            x = item[0] if isinstance(item, (tuple, list)) else item
            return to_model_input(x, self.transform)
        return to_model_input(self._extra[i - nd], self.transform)

    def image(self, i: int) -> Image.Image:
        """What a person sees of image ``i``, at model-input size (PIL RGB)."""
        i = self._check_index(i)
        nd = len(self.dataset) if self.dataset is not None else 0
        x = self.input(i)
        size = (x.shape[2], x.shape[1])
        if i < nd and hasattr(self.dataset, "image"):
            img = to_pil(self.dataset.image(i))
            return img if img.size == size else img.resize(size, Image.BILINEAR)
        return Image.fromarray(display_image(x, self.transform))

    def item(self, i: int) -> tuple[torch.Tensor, np.ndarray, int | None]:
        """``(model input, what a person sees as uint8 (H, W, 3), ground-truth label or None)`` of image
        ``i``, read once and not cached: for passes over a whole dataset (``explain_dataset``), where the
        session's caches would only grow."""
        i = self._check_index(i)
        nd = len(self.dataset) if self.dataset is not None else 0
        label = None
        x = self._inputs.get(i)
        if x is None and i < nd:
            item = self.dataset[i]
            x = item[0] if isinstance(item, (tuple, list)) else item
            label = int(item[1]) if isinstance(item, (tuple, list)) and len(item) > 1 else None
            x = to_model_input(x, self.transform)
        elif x is None:
            x = to_model_input(self._extra[i - nd], self.transform)
        elif i < nd:
            label = self.label(i)
        if i < nd and hasattr(self.dataset, "image"):
            img = to_pil(self.dataset.image(i))
            size = (x.shape[2], x.shape[1])
            shown = np.asarray(img if img.size == size else img.resize(size, Image.BILINEAR))
        else:
            shown = display_image(x, self.transform)
        return x, shown, label

    def image_id(self, i: int) -> str:
        return tensor_id(self.input(i))

    def index_of(self, image_id: str) -> int:
        """The index of the image whose id (``MapKey.image_id``) is ``image_id``; ``KeyError`` if none."""
        image_id = str(image_id)
        with self._lock:
            hit = self._ids.get(image_id)
            if hit is not None:
                return hit
            for i in range(len(self)):
                if i in self._ids_seen:
                    continue
                iid = self.image_id(i)
                self._ids_seen.add(i)
                self._ids.setdefault(iid, i)
                if iid == image_id:
                    return i
        raise KeyError(f"no image of this session has id {image_id!r} (it belongs to other images, or the "
                       "transform changed)")

    def locate(self, key, recipe: str | None = None) -> tuple[int, "Clusters", int]:
        """Where a cluster map lives: ``(image index, Clusters, j)`` for a :class:`MapKey`.

        The image is explained for the key's target (cached), and the cut in which the key's member channels
        form one cluster map is returned with that map's index (``recipe`` first, default the session's, then
        the others: a key does not name its recipe). ``KeyError`` when the key belongs to another
        model, to no image of this session, or to no cluster of the layer's dendrogram.
        """
        key = key if isinstance(key, MapKey) else MapKey(*key)
        if key.model != self.fingerprint:
            raise KeyError(f"cluster map {key.members_text!r} at {key.layer!r} was made by another model "
                           f"({key.model}), not this session's ({self.fingerprint})")
        i = self.index_of(key.image_id)
        exp = self.explain(i, key.target, lazy=True)
        if key.layer not in exp.layers:
            raise KeyError(f"layer {key.layer!r} is not explained by this session; its layers are {exp.layers}")
        first = get_recipe(recipe or self.recipe).name
        # a key does not say which recipe made it: the session's first, then dendrograms already built
        recipes = sorted(recipe_names(), key=lambda r: (r != first, not exp.layer(key.layer, r).is_built))
        error = None
        for r in recipes:
            try:
                cl, j = exp.layer(key.layer, r).locate(key.members)
                return i, cl, j
            except KeyError as e:
                error = error or e
        raise error

    def label(self, i: int) -> int | None:
        """Ground-truth class of a dataset image, if the dataset gives one."""
        i = self._check_index(i)
        nd = len(self.dataset) if self.dataset is not None else 0
        if i < nd:
            item = self.dataset[i]
            if isinstance(item, (tuple, list)) and len(item) > 1:
                return int(item[1])
        return None

    # ---- model --------------------------------------------------------------------------------
    def predict(self, i) -> np.ndarray:
        """Class probabilities (softmax of the logits) for image ``i`` (cached)."""
        x, key = self._resolve(i)
        with self._lock:
            return self._preds.get(key, lambda: self._probabilities(x))

    def _probabilities(self, x: torch.Tensor) -> np.ndarray:
        if not self._probed:
            self.layers  # noqa: B018 - the first run checks the model's output (and warns once)
        with torch.no_grad(), eval_mode(self.model):
            logits, _ = select_output(self.model(x[None].to(self.device, input_dtype(self.model))), self.output)
        return torch.softmax(logits.float(), 1)[0].cpu().numpy()

    def _resolve(self, item) -> tuple[torch.Tensor, str]:
        if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            x = self.input(item)
        else:
            x = to_model_input(item, self.transform)
        return x, tensor_id(x)

    def _display(self, item, x) -> np.ndarray:
        if isinstance(item, (int, np.integer)):
            return np.asarray(self.image(item))
        return display_image(x, self.transform)

    def _check_target(self, target):
        if target is None:
            return None
        if isinstance(target, str):
            if target not in self.classes:
                raise ValueError(f"unknown class name {target!r}; classes are {self.classes[:20]}"
                                 + (" ..." if len(self.classes) > 20 else ""))
            return self.classes.index(target)
        if isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, np.integer)):
            raise TypeError(f"target must be a class index or name, got {type(target).__name__}")
        n = len(self._class_names) if self._class_names is not None else None
        if n is not None and not 0 <= int(target) < n:
            raise ValueError(f"target class {int(target)} is outside the {n} classes (0..{n - 1})")
        return int(target)

    def explain(self, image, target=None, *, recipe: str | None = None, progress: Progress | None = None,
                lazy: bool = False) -> Explanation:
        """Explain one image (index, PIL image, array or tensor) for ``target`` (None: the predicted class).

        The model runs once per (image, target); the result is cached. ``lazy=True`` returns before the
        layers' dendrograms are built (each is then built on first use).
        """
        recipe = get_recipe(recipe or self.recipe).name
        target = self._check_target(target)
        x, iid = self._resolve(image)
        with self._lock:
            exp = self._cached(iid, target)
            if exp is None:
                if progress:
                    progress(0, len(self._layers) + 1, "running the model")
                exp = self._store(self._run([x], [self._display(image, x)], [iid], target, sources=[image])[0],
                                  iid, target)
            if exp.recipe != recipe:
                exp = exp.with_recipe(recipe)
        if not lazy:
            total = len(exp.layers) + 1
            exp.compute(recipe, (lambda d, t, m: progress(d + 1, total, m)) if progress else None)
        elif progress:
            progress(1, 1, "done")
        return exp

    def explain_many(self, images: Sequence, target=None, *, recipe: str | None = None, batch_size: int | None = None,
                     progress: Progress | bool = True, lazy: bool = True) -> list[Explanation]:
        """Explain several images, ``batch_size`` per forward/backward pass (fast on a GPU).

        Images of different sizes are batched by size, so mixed sizes work whatever is cached. ``progress``:
        True (default) shows a progress bar (tqdm: notebook or terminal) when there is more than one batch to
        run, False nothing, or a callable ``progress(done, total, message)``.

        The in-memory form of :func:`inv_widgets.explain_dataset`: full explanations (every kept map,
        recuts at any k) in the session's bounded cache, nothing on disk. For a dataset, use that."""
        recipe = get_recipe(recipe or self.recipe).name
        target = self._check_target(target)
        bs = int(batch_size or self.batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        resolved = [self._resolve(im) for im in images]
        out: list[Explanation | None] = [None] * len(resolved)
        by_shape: dict[tuple, list[int]] = {}  # images not cached, by input shape (in order of appearance)
        for j, (x, iid) in enumerate(resolved):
            hit = self._cached(iid, target)
            if hit is not None:
                out[j] = hit
            else:
                by_shape.setdefault(tuple(x.shape), []).append(j)
        chunks = [todo[s:s + bs] for todo in by_shape.values() for s in range(0, len(todo), bs)]
        done = len(resolved) - sum(len(c) for c in chunks)
        bar = None
        if progress is True and len(chunks) > 1:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(resolved), initial=done, unit="img", desc="explaining")
        try:
            for chunk in chunks:
                xs = [resolved[j][0] for j in chunk]
                exps = self._run(xs, [self._display(images[j], resolved[j][0]) for j in chunk],
                                 [resolved[j][1] for j in chunk], target, sources=[images[j] for j in chunk])
                for j, e in zip(chunk, exps):
                    out[j] = self._store(e, resolved[j][1], target)
                done += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                elif callable(progress):
                    progress(done, len(resolved), f"explained {done}/{len(resolved)} images")
        finally:
            if bar is not None:
                bar.close()
        out = [e if e.recipe == recipe else e.with_recipe(recipe) for e in out]
        if not lazy:
            for e in out:
                e.compute(recipe)
        return out

    def _run(self, xs, displays, iids, target, sources=None) -> list[Explanation]:
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) > 1:
            raise ValueError(f"images in one batch must have the same shape, got {sorted(shapes)}")
        batch = torch.stack(xs).to(self.device)
        with self._lock:
            layers = self.layers  # the first run also checks the layers and the model's output
            try:
                cap = run_model(self.model, batch, layers, target, output=self.output, spatial_only=self._auto_layers,
                                weighting=self.weighting, layer_point=self.layer_point)
            except InferenceModeError:
                raise  # says what to do itself; not the model's failure
            except RuntimeError as e:
                raise ValueError(failure_message(self.model, batch[0], e)) from e
        names = self._class_names
        if names is None:
            names = self._class_names = [str(i) for i in range(cap.logits.shape[1])]
        elif len(names) != cap.logits.shape[1]:
            raise ValueError(f"the model has {cap.logits.shape[1]} outputs but {len(names)} class names were given")
        sources = sources if sources is not None else [xs[i] for i in range(len(xs))]
        probes = [ModelProbe(self.model, batch[i], cap.targets[i], lock=self._lock, output=self.output,
                             layer_point=self.layer_point,
                             fill=lambda src=src, x=xs[i]: self._fill(src, x))
                  for i, src in enumerate(sources)]
        exps = build_explanations(cap, displays, model_id=self.fingerprint, image_ids=iids, class_names=names,
                                  recipe=self.recipe, weighting=self.weighting, probes=probes)
        for e in exps:
            if all(len(d.kept) == 0 for d in e._layers.values()):
                warnings.warn(
                    f"no feature map is kept in any layer for class {e.target_name!r}: the class score does not "
                    "depend on the explained layers (every channel weight is zero or negative). Check the model's "
                    "head (an untrained or zeroed last layer outputs constants).", UserWarning, stacklevel=4)
        return exps

    def sanity_check(self, images=None, *, layers=None, maps=("published",), tests=("cascade", "random class"),
                     seed: int = 0, progress: bool = True):
        """Sanity checks (Adebayo et al. 2018) of this session's maps on its own model: are they changed by
        re-initialising the model from the output back (cascade), one part at a time ("independent") and by
        explaining a random other class? ``images``: indices or images (default: the first 8; all of one size);
        ``layers``: the layers compared (default the deepest); ``maps``: map types
        (``inv_widgets.engine.contrast.MAP_TYPES``; the layer's Grad-CAM is always beside them). Returns a
        DataFrame (``inv_widgets.engine.sanity.SanityTable``), one row per (map type, layer, map, test, step)
        with Spearman's rho and SSIM against the original map and their 95 % CIs over the images; ``.plot()``
        draws the cascade (plotly). See ``python -m inv_widgets.eval sanity`` for the figures on the demo."""
        from .engine.contrast import check_maps
        from .engine.sanity import TESTS, sanity_check

        kinds = tuple(check_maps(m) for m in ([maps] if isinstance(maps, str) else maps))
        tests = tuple([tests] if isinstance(tests, str) else tests)
        bad = [t for t in tests if t not in TESTS]
        if bad:
            raise ValueError(f"unknown sanity tests {bad}; choose from {list(TESTS)}")
        items = list(range(min(8, len(self)))) if images is None else list(images)
        if len(items) < 2:
            raise ValueError("a sanity check needs at least 2 images (the other-image reference compares them)")
        resolved = [self._resolve(im) for im in items]
        shapes = {tuple(x.shape) for x, _ in resolved}
        if len(shapes) > 1:
            raise ValueError(f"the images of one sanity check must have one size, got {sorted(shapes)}")
        xs = torch.stack([x for x, _ in resolved]).to(self.device)
        shown = [self._display(im, x) for im, (x, _) in zip(items, resolved)]
        names = self.layers
        layers = [names[-1]] if layers is None else [layers] if isinstance(layers, str) else list(layers)
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ValueError(f"layers {unknown} are not explained by this session; its layers are {names}")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(desc="sanity check", unit="model")

        def step(done, total, message):
            if bar is not None:
                bar.total, bar.n = total, done
                bar.set_postfix_str(message)

        try:
            with self._lock:
                return sanity_check(self.model, xs, shown, layers, point=self.layer_point, kinds=kinds, tests=tests,
                                    explain_layers=names, seed=seed, output=self.output, progress=step,
                                    recipe=self.recipe, weighting=self.weighting)
        finally:
            if bar is not None:
                bar.close()

    def fill(self, image) -> torch.Tensor:
        """Image ``image`` (index, PIL image, array or tensor) with its content removed, as model input (C, H, W):
        what deletion and insertion curves put in place of the pixels they delete. The dataset's
        ``background(i)`` when it has one (the demo draws each image's own background without the object),
        otherwise a Gaussian blur of the input (sigma: 1/16 of the longer side)."""
        x, _ = self._resolve(image)
        return self._fill(image, x)

    def _fill(self, image, x: torch.Tensor) -> torch.Tensor:
        nd = len(self.dataset) if self.dataset is not None else 0
        if (isinstance(image, (int, np.integer)) and not isinstance(image, (bool, np.bool_))
                and 0 <= int(image) % max(len(self), 1) < nd and hasattr(self.dataset, "background")):
            bg = to_model_input(self.dataset.background(int(image) % len(self)), self.transform)
            if bg.shape == x.shape:
                return bg
        return blurred(x)

    def _cached(self, iid, target) -> Explanation | None:
        if target is None:
            target = self._predicted.get(iid)
            if target is None:
                return None
        return self._cache.get((iid, target))

    def _store(self, exp: Explanation, iid, target) -> Explanation:
        """Keep ``exp``; returns the explanation now held for it (one already there wins: one object). Dropped
        explanations are reference cycles (layers point back) that the cyclic collector reached too rarely: one
        ``gc.collect()`` per ``max(cache_size, 8)`` dropped frees them (README, "Memory held by a session")."""
        held = self._cache.put((iid, exp.target), exp)
        if target is None:
            self._predicted.put(iid, exp.target)
        if self._cache.dropped >= max(self.cache_size, 8):
            self._cache.dropped = 0
            gc.collect()
        return held

    def clear_cache(self):
        """Empty every cache (explanations with their cuts, predicted classes, class probabilities, model inputs)
        and hand the freed memory back to the system (``malloc_trim`` on Linux). The index from image ids to
        indices stays (about 100 bytes per image); so do explanations you hold and the widgets' own bounded
        picture caches. See README, "Memory held by a session"."""
        with self._lock:
            self._cache.clear()
            self._predicted.clear()
            self._preds.clear()
            self._inputs.clear()
        return_freed_memory()


def explain(model: nn.Module, image, target=None, *, layers=None, layer_mode: str = "conv", transform=None,
            class_names=None, recipe: str = "fast", weighting: str = "guided", device=None,
            output: Output = None, layer_point: str = "conv") -> Explanation:
    """One-off explanation of one image: ``inv.explain(model, image)``; see :class:`Session` (``output``
    chooses among the outputs of a model that returns several)."""
    s = Session(model, [image], transform=transform, class_names=class_names, device=device, layers=layers,
                layer_mode=layer_mode, recipe=recipe, weighting=weighting, cache_size=1, output=output,
                layer_point=layer_point)
    return s.explain(0, target)
