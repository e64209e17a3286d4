"""The Explorer: one image, one target class, one layer at a time, with its cluster maps.

    import inv_widgets as inv
    model, data = inv.demo.load()
    inv.Explorer(inv.Session(model, data))          # or inv.Explorer(model, images, transform=..., class_names=...)

A composition of small views over one :class:`~inv_widgets.Session`:

- a header (anywidget, ``static/explorer.js``): image picker with thumbnails and an upload tile, the top-5
  prediction (click a class to explain it), progress and errors, and the keyboard for the whole Explorer;
- ipywidgets controls: target class, recipe, layer slider, cut (k slider, "suggested cut");
- the dendrogram of the layer (:class:`~inv_widgets.widgets.dendrogram.Dendrogram`, a plotly FigureWidget):
  click or drag to set the cut height;
- the :class:`~inv_widgets.widgets.gallery.Gallery` of cluster maps beside the layer's plain Grad-CAM;
- a detail view (anywidget, ``static/explorer_detail.js``) of the selected cluster map: large overlay,
  opacity, colour map, the six Deep Reveal steps, member channels, labels.

Everything updates in place: a change sets trait values or figure data (never rebuilds the widget tree), and
the model runs only for a new (image, target); a layer, cut or recipe change reuses the Session's cache.
Images go to the browser as PNG bytes in binary buffers.
"""
from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

import anywidget
import ipywidgets as W
import numpy as np
import traitlets as t
from PIL import Image

from .. import render
from ..engine.cluster import RECIPES
from ..engine.maps import REVEAL_PERCENTS
from .dendrogram import MAX_K, PALETTE, Dendrogram
from .gallery import Gallery
from ._common import STATIC, esm, readable
from ..engine.runtime import LRU

__all__ = ["Explorer", "store_labels", "LabelsProvider"]

log = logging.getLogger("inv_widgets.explorer")


#: ``labels(keys) -> [[(label, score), ...] per key]``: top labels of cluster maps, best first.
LabelsProvider = Callable[[Sequence[Any]], Sequence[Sequence[tuple[str, float]]]]

_KEEP = object()

HINT = ("Keyboard (click the Explorer first): ← → layer · ↑ ↓ move the cut (↑ fewer, ↓ more clusters). "
        "Click or drag on the dendrogram to cut it; click a cluster map for its details.")

#: Recipes offered by the recipe buttons (any engine recipe works with ``set_recipe``).
SHOWN_RECIPES = ("fast", "paper")

RECIPE_TIPS = {
    "fast": "Ward linkage on the feature maps; k from the largest gap in the dendrogram (milliseconds)",
    "paper": "As published: PCA, t-SNE (seed 432), Ward, k by silhouette, light clusters pruned (seconds per layer)",
}


class _Header(anywidget.AnyWidget):
    """Picker, prediction, progress, errors and keyboard (front end: static/explorer.js)."""

    _esm = esm("explorer.js")
    _css = STATIC / "explorer.css"

    thumbs = t.List(t.Bytes()).tag(sync=True)
    thumb_indices = t.List(t.Int()).tag(sync=True)
    thumb_captions = t.List(t.Unicode()).tag(sync=True)
    index = t.Int(0).tag(sync=True)
    page = t.Int(0).tag(sync=True)
    page_size = t.Int(24).tag(sync=True)
    n_images = t.Int(0).tag(sync=True)
    top = t.List(t.List()).tag(sync=True)
    target = t.Int(-1).tag(sync=True)
    predicted = t.Int(-1).tag(sync=True)
    truth = t.Unicode("").tag(sync=True)
    busy = t.Bool(False).tag(sync=True)
    progress = t.Float(-1.0).tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    hint = t.Unicode("").tag(sync=True)


class _Detail(anywidget.AnyWidget):
    """The selected cluster map (front end: static/explorer_detail.js)."""

    _esm = esm("explorer_detail.js")
    _css = STATIC / "explorer_detail.css"

    title = t.Unicode("").tag(sync=True)
    base = t.Bytes(b"").tag(sync=True)
    heat = t.Bytes(b"").tag(sync=True)
    alpha = t.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    cmap = t.Unicode("jet").tag(sync=True)
    cmaps = t.List(t.Unicode()).tag(sync=True)
    reveals = t.List(t.Bytes()).tag(sync=True)
    reveal_percents = t.List(t.Float()).tag(sync=True)
    weight = t.Float(0.0).tag(sync=True)
    n_maps = t.Int(0).tag(sync=True)
    gradcam_overlap = t.Float(-1.0).tag(sync=True)
    color = t.Unicode("#888").tag(sync=True)
    members = t.List(t.List()).tag(sync=True)
    labels = t.List(t.List()).tag(sync=True)
    labels_hint = t.Unicode("").tag(sync=True)
    revision = t.Int(0).tag(sync=True)


def store_labels(store, n: int = 3) -> LabelsProvider:
    """A labels provider over a label store: ``store.top_labels(key, n) -> [(label, score), ...]``.

    Stores that answer many keys at once may offer ``top_labels_many(keys, n)`` instead (one query)."""
    many = getattr(store, "top_labels_many", None)
    one = getattr(store, "top_labels", None)
    if many is None and one is None:
        raise TypeError(f"{type(store).__name__} has no top_labels(key, n) method; pass labels=callable instead, "
                        "a function keys -> [[(label, score), ...] per key]")

    def provider(keys):
        if many is not None:
            return [list(x) for x in many(list(keys), n)]
        return [list(one(k, n)) for k in keys]

    return provider


def _import_plotly_widget() -> None:
    try:
        import plotly.graph_objects as go

        go.FigureWidget  # noqa: B018 - the import is the point (plotly.io pulls in nbformat and jsonschema)
    except Exception:  # the Explorer imports it again and reports any real problem
        pass


def _start_plotly_import() -> None:
    """Import plotly's FigureWidget in a background thread (1-2 s: plotly.io pulls in nbformat and jsonschema),
    while the kernel is idle and the browser draws the first gallery; the dendrogram needs it right after."""
    if "plotly.basewidget" not in sys.modules:
        threading.Thread(target=_import_plotly_widget, name="inv-import-plotly", daemon=True).start()


def _as_session(obj, images, kwargs):
    if hasattr(obj, "explain") and hasattr(obj, "image") and hasattr(obj, "classes"):
        if images is not None or kwargs:
            raise TypeError("Explorer(session) takes no images or session options; give them to the Session, "
                            "or call Explorer(model, images, **session_options)")
        return obj
    from ..session import Session

    return Session(obj, images, **kwargs)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


class Explorer(W.VBox):
    """Explore INV cluster maps: image, target class, layer, cut, cluster map.

    Parameters
    ----------
    session : Session or torch.nn.Module
        The session to explore, or a model (then ``images`` and ``session_options`` build one:
        ``Explorer(model, images, transform=..., class_names=...)``).
    store : label store, optional
        Shows each cluster map's top labels when the store has ``top_labels(key, n)``.
    labels : callable, optional
        ``labels(keys) -> [[(label, score), ...] per key]``; overrides ``store``.
    index, target, layer, k, recipe :
        Where to start (default: image 0, its predicted class, the last layer, the suggested cut,
        the session's recipe).
    cmap, alpha :
        Colour map (``"jet"`` as in the paper, ``"viridis"``, ``"inferno"``, ``"gray"``) and its opacity.
    page_size : int
        Thumbnails per page in the image picker.
    """

    def __init__(self, session, images=None, *, store=None, labels: LabelsProvider | None = None, index: int = 0,
                 target=None, layer=None, k: int | None = None, recipe: str | None = None, cmap: str = "jet",
                 alpha: float = 0.5, page_size: int = 24, thumb_size: int = 96, **session_options):
        session = _as_session(session, images, session_options)
        render.colormap(cmap)  # validates the name
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
        recipe = recipe or getattr(session, "recipe", "fast")
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; choose one of {RECIPES}")
        if len(session) == 0:
            raise ValueError("the session has no images; add some with session.add_image(...) or pass images")

        self.session = session
        self.store = store
        self.labels_provider: LabelsProvider | None = labels if labels is not None else (
            store_labels(store) if store is not None else None)
        self.last_error: BaseException | None = None
        #: (request, seconds in the kernel) of the last UI requests, newest last (for benchmarks).
        self.timings: deque = deque(maxlen=256)
        self._recipe = recipe
        self._cmap = cmap
        self._thumb_size = int(thumb_size)
        self._png = LRU(512)
        self._quiet = 0
        self._busy_depth = 0
        self._last_progress = 0.0
        self._names: dict[int, str] = {}
        self._index = -1
        self._exp = None
        self._lr = None
        self._cl = None
        self._layer: str | None = None
        self._cut: tuple[str, Any] = ("suggested", None)
        self._selected = -1
        self._selected_key = None
        self._captions: dict[int, str] = {}
        self._thumbs_pending = True  # the picker's thumbnails follow once the front end is up


        # ---- views ---------------------------------------------------------------------------
        self.header = _Header(page_size=int(page_size), n_images=len(session), hint=HINT)
        self.target_select = W.Dropdown(description="Explain class", options=[("–", -1)], value=-1,
                                        style={"description_width": "initial"}, layout=W.Layout(width="340px"))
        shown = [r for r in SHOWN_RECIPES if r in RECIPES] + ([recipe] if recipe not in SHOWN_RECIPES else [])
        self.recipe_select = W.ToggleButtons(options=shown, value=recipe, description="Recipe",
                                             tooltips=[RECIPE_TIPS.get(r, r) for r in shown],
                                             style={"description_width": "initial", "button_width": "auto"})
        self.layer_slider = W.SelectionSlider(options=["–"], value="–", description="Layer", continuous_update=True,
                                              style={"description_width": "80px"}, layout=W.Layout(width="100%"))
        self.k_slider = W.IntSlider(value=1, min=1, max=2, description="Clusters k", continuous_update=True,
                                    style={"description_width": "80px"}, layout=W.Layout(width="380px"))
        self.suggest_button = W.Button(description="suggested cut", tooltip="Back to the suggested number of clusters",
                                       layout=W.Layout(width="auto"))
        self.cut_info = W.HTML(layout=W.Layout(margin="0 0 0 8px"))
        self.cut_info.add_class("inv-cutinfo")
        self._dendrogram: Dendrogram | None = None  # made when a view is up (or when asked for): see dendrogram
        self.gallery = Gallery(alpha=float(alpha))
        self.detail = _Detail(alpha=float(alpha), cmap=cmap, cmaps=list(render.COLORMAPS),
                              reveal_percents=[float(p) for p in REVEAL_PERCENTS])
        self._alpha_link = W.jslink((self.detail, "alpha"), (self.gallery, "alpha"))

        controls = W.HBox([self.target_select, self.recipe_select])
        controls.add_class("inv-controls")
        cut_row = W.HBox([self.k_slider, self.suggest_button, self.cut_info])
        cut_row.add_class("inv-controls")
        placeholder = W.HTML("<div class='inv-dendro-wait'>dendrogram…</div>")
        self._dendro_box = dendro_box = W.VBox([placeholder])
        dendro_box.add_class("inv-dendro-box")
        gallery_box = W.VBox([self.gallery])
        gallery_box.add_class("inv-gallery-box")
        main = W.HBox([dendro_box, gallery_box])
        main.add_class("inv-main")
        super().__init__(children=[self.header, controls, self.layer_slider, cut_row, main, self.detail])
        self.add_class("inv-explorer")

        # ---- wiring ----------------------------------------------------------------------------
        self.header.on_msg(self._on_header_msg)
        self.target_select.observe(self._ui_target, "value")
        self.recipe_select.observe(self._ui_recipe, "value")
        self.layer_slider.observe(self._ui_layer, "value")
        self.k_slider.observe(self._ui_k, "value")
        self.suggest_button.on_click(self._ui_suggested)
        self.gallery.observe(self._ui_select, "selected")
        self.detail.observe(self._ui_cmap, "cmap")

        cut = ("k", int(k)) if k is not None else ("suggested", None)
        self._go(index=index, target=target, layer=layer, cut=cut)
        # While the browser draws the gallery, import plotly's widget for the dendrogram (made on "ready").
        _start_plotly_import()

    # ==== public API ===============================================================================
    @property
    def dendrogram(self) -> Dendrogram:
        """The dendrogram view (a plotly FigureWidget in ``.figure``).

        Made once, when the Explorer's first view has rendered (or on first access): plotly's widget carries
        plotly.js (about 5 MB) to the browser, so the gallery comes first and the dendrogram right after."""
        if self._dendrogram is None:
            self._dendrogram = Dendrogram(on_cut=self._ui_cut_height)
            self._dendro_box.children = [self._dendrogram.figure]
            if self._lr is not None:
                self._push_dendrogram()
        return self._dendrogram

    @property
    def index(self) -> int:
        """Index of the image shown."""
        return self._index

    @property
    def explanation(self):
        return self._exp

    @property
    def target(self) -> int:
        """The class being explained."""
        return int(self._exp.target)

    @property
    def layer(self) -> str:
        return self._layer

    @property
    def layers(self) -> list[str]:
        return list(self._exp.layers)

    @property
    def recipe(self) -> str:
        return self._recipe

    @property
    def layer_result(self):
        return self._lr

    @property
    def clusters(self):
        """The current cut (``Clusters``): ``.maps``, ``.weights``, ``.members``, ``.key(j)``."""
        return self._cl

    @property
    def k(self) -> int:
        """Number of cluster maps shown (after pruning, for the paper recipe)."""
        return int(self._cl.k)

    @property
    def threshold(self) -> float:
        return float(self._cl.threshold)

    @property
    def selected(self) -> int:
        """Index (in weight order) of the cluster map in the detail view, -1 for none."""
        return self._selected

    @property
    def cmap(self) -> str:
        return self._cmap

    @property
    def alpha(self) -> float:
        return float(self.gallery.alpha)

    @alpha.setter
    def alpha(self, value: float):
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]; got {value}")
        self.gallery.alpha = value
        self.detail.alpha = value

    def select_image(self, index: int, target=None) -> None:
        """Explain image ``index`` (for ``target``, default its predicted class)."""
        self._go(index=index, target=target)

    def set_target(self, target) -> None:
        """Explain another class (index or name; ``None`` = the predicted class) for the current image."""
        self._go(target=target)

    def set_layer(self, layer) -> None:
        """Show another layer (name or position in ``layers``)."""
        if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
            layers = self.layers
            if not -len(layers) <= int(layer) < len(layers):
                raise IndexError(f"layer {int(layer)} out of range: there are {len(layers)} layers")
            layer = layers[int(layer)]
        self._go(layer=layer)

    def set_cut(self, k: int | None = None, threshold: float | None = None) -> None:
        """Cut the dendrogram into ``k`` clusters, at height ``threshold``, or (neither) at the suggested cut."""
        if k is not None and threshold is not None:
            raise ValueError("give either k or threshold, not both")
        if k is not None:
            if int(k) < 1:
                raise ValueError(f"k must be at least 1; got {k}")
            self._go(cut=("k", int(k)))
        elif threshold is not None:
            self._go(cut=self._cut_from_height(float(threshold)))
        else:
            self._go(cut=("suggested", None))

    def set_recipe(self, recipe: str) -> None:
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; choose one of {RECIPES}")
        self._go(recipe=recipe)

    def select_cluster(self, j: int) -> None:
        """Show cluster map ``j`` (weight order, 0 = heaviest) in the detail view."""
        if self._cl is None or not 0 <= int(j) < self._cl.k:
            raise IndexError(f"cluster map {j} does not exist; this cut has {0 if self._cl is None else self._cl.k} maps")
        self._set_selected(int(j))
        with self._silenced():
            self.gallery.selected = self._selected
        self._push_detail()

    def set_cmap(self, cmap: str) -> None:
        render.colormap(cmap)
        self._cmap = cmap
        with self._silenced():
            self.detail.cmap = cmap
        self._push_gallery()
        self._push_detail()

    def add_image(self, image, *, select: bool = True, name: str | None = None) -> int:
        """Add an image (PIL, array, path or tensor) to the session and the picker; returns its index."""
        i = int(self.session.add_image(image))
        if name:
            self._names[i] = str(name)
        self.header.n_images = len(self.session)
        if select:
            self._go(index=i)
        else:
            self._push_thumbs(self.header.page)
        return i

    def refresh_labels(self) -> None:
        """Ask the labels provider again (e.g. after a labelling game round)."""
        self._push_gallery()
        self._push_detail()

    # ==== state changes ============================================================================
    def _go(self, *, index=None, target=_KEEP, layer=None, recipe=None, cut=None) -> None:
        """Compute the new state first, commit it only when everything succeeded, then update the views.

        ``index``: another image (its predicted class unless ``target`` is given); ``target``: another class
        for the image (``None`` = predicted); ``layer``, ``recipe``, ``cut``: reuse the cached explanation."""
        exp = self._exp
        recipe = recipe or self._recipe
        i = self._index if index is None else int(index)
        if index is not None and target is _KEEP:
            target = None  # a new image starts at its predicted class
        if exp is None or i != self._index or target is not _KEEP:
            tgt = None if target is _KEEP else target
            with self._busy(f"explaining image {i}…"):
                exp = self.session.explain(i, tgt, recipe=recipe, progress=self._progress, lazy=True)
        if layer is None:
            layer = self._layer if self._layer in exp.layers else exp.layers[-1]
        elif layer not in exp.layers:
            raise KeyError(f"layer {layer!r} is not explained; the layers are {exp.layers}")
        lr = exp.layer(layer, recipe)
        if not lr.is_built:  # dendrogram not built yet (paper recipe: seconds)
            with self._busy(f"clustering {layer} ({recipe} recipe)…"):
                lr.tree
        if cut is None:
            cut = self._cut
            if cut[0] == "threshold":  # heights differ between layers and recipes: keep the number of clusters
                cut = ("k", int(self._cl.k_cut)) if self._cl is not None else ("suggested", None)
        cl = self._cut_of(lr, cut)

        image_changed = exp is not self._exp or i != self._index
        layer_changed = lr is not self._lr
        if not image_changed and not layer_changed and cl is self._cl:
            self._cut = cut
            return  # nothing to show that is not already shown
        self._index, self._exp, self._recipe, self._layer, self._lr, self._cl, self._cut = (
            i, exp, recipe, layer, lr, cl, cut)
        keys = [cl.key(j) for j in range(cl.k)]
        self._set_selected(keys.index(self._selected_key) if self._selected_key in keys else (0 if cl.k else -1))
        # The gallery first: it is what a person waits for.
        self._push_gallery()
        if image_changed:
            self._push_image()
        self._push_controls(layer_changed or image_changed)
        self._push_dendrogram()
        self._push_detail()

    def _cut_of(self, lr, cut):
        mode, v = cut
        n = lr.tree.n
        if mode == "k":
            return lr.cut(k=int(np.clip(int(v), 1, max(n, 1))))
        if mode == "threshold":
            return lr.cut(threshold=float(v))
        return lr.cut()

    def _cut_from_height(self, h: float):
        """A cut at height ``h``; more than MAX_K clusters snaps to MAX_K (the gallery stays readable)."""
        if not np.isfinite(h):
            raise ValueError(f"the cut height must be a finite number; got {h}")
        heights = np.asarray(self._lr.heights)
        n = self._lr.tree.n
        k_at = n - int(np.sum(heights <= h)) if n > 1 else n
        if k_at > MAX_K:
            return ("k", MAX_K)
        return ("threshold", max(float(h), 0.0))

    def _set_selected(self, j: int) -> None:
        self._selected = j
        self._selected_key = self._cl.key(j) if (self._cl is not None and 0 <= j < self._cl.k) else None

    # ==== pushing state to the views ===================================================================
    def _base_png(self) -> bytes:
        exp = self._exp
        return self._png.get(("base", exp.image_id), lambda: render.to_png(exp.image))

    def _heat_png(self, j: int) -> bytes:
        cl = self._cl
        return self._png.get(("heat", cl.key(j), self._cmap), lambda: render.to_png(render.apply_cmap(cl.maps[j], self._cmap)))

    def _gradcam_png(self) -> bytes:
        exp, lr = self._exp, self._lr
        key = ("gradcam", exp.model_id, exp.image_id, int(exp.target), lr.name, self._cmap)
        return self._png.get(key, lambda: render.to_png(render.apply_cmap(lr.gradcam(), self._cmap)))

    def _thumb_png(self, i: int) -> bytes:
        return self._png.get(("thumb", i, self._thumb_size),
                             lambda: render.to_png(render.thumbnail(self.session.image(i), self._thumb_size)))

    def _labels(self, keys) -> list[list]:
        if self.labels_provider is None or not keys:
            return [[] for _ in keys]
        try:
            got = self.labels_provider(list(keys))
            return [[[str(a), float(b)] for a, b in list(lab)[:10]] for lab in got]
        except Exception as e:  # a failing label store must not break the Explorer
            log.warning("labels provider failed: %s", e)
            self.last_error = e
            return [[] for _ in keys]

    def _caption(self, i: int) -> str:
        if i not in self._captions:
            self._captions[i] = self._make_caption(i)
        return self._captions[i]

    def _make_caption(self, i: int) -> str:
        if i in self._names:
            return self._names[i]
        label = getattr(self.session, "label", None)
        y = None
        if label is not None:
            try:
                y = label(i)
            except Exception:
                y = None
        if y is not None and 0 <= int(y) < len(self.session.classes):
            return f"#{i} {self.session.classes[int(y)]}"
        return f"#{i}"

    def _push_gallery(self) -> None:
        cl, lr, exp = self._cl, self._lr, self._exp
        if cl is None:
            return
        keys = [cl.key(j) for j in range(cl.k)]
        labels = [lab[:3] for lab in self._labels(keys)]
        n_kept = len(lr.kept)
        pruned = int(getattr(cl, "k_cut", cl.k)) - cl.k
        sub = [f"{self._recipe} recipe", f"cut at h = {cl.threshold:.3g}", f"{n_kept} of {lr.n_channels} channels kept"]
        if pruned > 0:
            sub.append(f"{pruned} light cluster{'s' if pruned > 1 else ''} pruned")
        msg = ""
        if cl.k == 0:
            msg = ("No feature map of this layer has a positive weight for this class, so there is nothing to "
                   "cluster. Try another layer or class.")
        target_name = exp.class_names[exp.target] if exp.class_names else str(exp.target)
        with self._silenced():
            self.gallery.show(
                base=self._base_png(), heats=[self._heat_png(j) for j in range(cl.k)], weights=list(cl.weights),
                counts=[len(m) for m in cl.members], colors=[PALETTE[j % MAX_K] for j in range(cl.k)],
                labels=labels, gradcam=self._gradcam_png(), gradcam_caption="Grad-CAM",
                title=f"{lr.name} · {cl.k} cluster map{'s' if cl.k != 1 else ''} for “{target_name}”",
                subtitle=" · ".join(sub), selected=self._selected, message=msg)

    def _push_image(self) -> None:
        exp = self._exp
        p = np.asarray(exp.probabilities, dtype=np.float64)
        names = exp.class_names or self.session.classes
        order = np.argsort(-p, kind="stable")
        truth = ""
        label = getattr(self.session, "label", None)
        if label is not None and self._index >= 0:
            try:
                y = label(self._index)
                truth = names[int(y)] if y is not None else ""
            except Exception:
                truth = ""
        page = self._index // max(1, self.header.page_size)
        with self.header.hold_sync():
            self.header.index = self._index
            self.header.n_images = len(self.session)
            self.header.top = [[int(c), str(names[c]), float(p[c])] for c in order[:5]]
            self.header.target = int(exp.target)
            self.header.predicted = int(exp.predicted)
            self.header.truth = truth
        if page != self.header.page or not self.header.thumbs or self._index not in self.header.thumb_indices:
            self._push_thumbs(page)
        options = [(f"{names[c]} · {100 * p[c]:.1f} %" + ("  (predicted)" if c == exp.predicted else ""), int(c))
                   for c in order]
        with self._silenced(), self.target_select.hold_sync():
            self.target_select.options = options
            self.target_select.value = int(exp.target)

    def _push_thumbs(self, page: int, lazy: bool = False) -> None:
        """Thumbnails of one page of images. ``lazy``: only those already made (the current image's); the
        others are placeholders until the front end asks (its first render sends "ready")."""
        n = len(self.session)
        ps = max(1, self.header.page_size)
        page = int(np.clip(page, 0, max(0, (n - 1) // ps)))
        idx = list(range(page * ps, min(n, (page + 1) * ps)))
        lazy = lazy or self._thumbs_pending
        if lazy:
            thumbs = [self._thumb_png(i) if i == self._index else self._png.get(("thumb", i, self._thumb_size), default=b"")
                      for i in idx]
            captions = [self._captions.get(i, self._names.get(i, f"#{i}")) for i in idx]
        else:
            thumbs = [self._thumb_png(i) for i in idx]
            captions = [self._caption(i) for i in idx]
        with self.header.hold_sync():
            self.header.thumbs = thumbs
            self.header.thumb_indices = idx
            self.header.thumb_captions = captions
            self.header.page = page
            self.header.n_images = n

    def _push_controls(self, layer_changed: bool) -> None:
        lr, cl = self._lr, self._cl
        n = lr.tree.n
        with self._silenced():
            if layer_changed:
                layers = tuple(self._exp.layers)
                if tuple(self.layer_slider.options) != layers:
                    self.layer_slider.options = layers
                self.layer_slider.value = self._layer
            if self._recipe not in self.recipe_select.options:
                self.recipe_select.options = [*self.recipe_select.options, self._recipe]
            if self.recipe_select.value != self._recipe:
                self.recipe_select.value = self._recipe
            kmax = max(2, min(n, MAX_K))
            k_cut = int(getattr(cl, "k_cut", cl.k)) or 1
            with self.k_slider.hold_sync():
                if self.k_slider.max != kmax:
                    if k_cut > self.k_slider.max:
                        self.k_slider.max = kmax
                        self.k_slider.value = min(k_cut, kmax)
                    else:
                        self.k_slider.value = min(k_cut, kmax)
                        self.k_slider.max = kmax
                else:
                    self.k_slider.value = min(k_cut, kmax)
                self.k_slider.disabled = n < 2
        suggested = lr.suggested_k
        mode = {"suggested": "suggested cut", "k": "k chosen", "threshold": "height chosen"}[self._cut[0]]
        self.cut_info.value = (f"cut height <b>{cl.threshold:.3g}</b> · suggested k = <b>{suggested}</b> · {mode}")
        self.suggest_button.disabled = self._cut[0] == "suggested"

    def _push_dendrogram(self) -> None:
        if self._dendrogram is None:
            return  # drawn when it is made
        lr, cl = self._lr, self._cl
        tree = lr.tree
        title = f"{lr.name}: {tree.n} kept of {lr.n_channels} channels"
        if tree.n < 2:
            self.dendrogram.clear(title=title + " (nothing to cluster)")
            return
        sk = int(tree.suggested_k)
        self.dendrogram.show(lr.linkage, cl.assignment, cl.threshold, suggested_threshold=tree.threshold_for(sk),
                             suggested_k=sk, k=int(getattr(cl, "k_cut", cl.k)), title=title)

    def _push_detail(self) -> None:
        cl, lr, exp = self._cl, self._lr, self._exp
        d = self.detail
        j = self._selected
        if cl is None or not 0 <= j < cl.k:
            with d.hold_sync():
                d.heat = b""
                d.reveals = []
                d.title = ""
                d.revision += 1
            return
        key = cl.key(j)
        reveals = [self._png.get(("reveal", key, s), lambda s=s: render.to_png(cl.reveal(j, s)))
                   for s in range(len(REVEAL_PERCENTS))]
        w = np.asarray(lr.channel_weights)
        mem = np.asarray(cl.members[j])
        mem = mem[np.argsort(-w[mem], kind="stable")]
        labels = self._labels([key])[0]
        hint = ("No label store connected: pass Explorer(session, store=...) and collect labels with the labelling game."
                if self.labels_provider is None else "No labels for this cluster map yet.")
        target_name = exp.class_names[exp.target] if exp.class_names else str(exp.target)
        overlap = self._png.get(("corr", key), lambda: _corr(cl.maps[j], lr.gradcam()))
        with d.hold_sync():
            d.base = self._base_png()
            d.heat = self._heat_png(j)
            d.reveals = reveals
            d.title = f"Cluster map {j + 1} of {cl.k} · {lr.name} · why “{target_name}”"
            d.weight = float(cl.weights[j])
            d.n_maps = int(len(mem))
            d.gradcam_overlap = float(overlap)
            d.color = PALETTE[j % MAX_K]
            d.members = [[int(c), float(w[c])] for c in mem]
            d.labels = labels
            d.labels_hint = hint
            d.revision += 1

    # ==== progress, errors ============================================================================
    @contextlib.contextmanager
    def _silenced(self):
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    @contextlib.contextmanager
    def _busy(self, message: str):
        h = self.header
        self._busy_depth += 1
        with h.hold_sync():
            h.busy = True
            h.progress = -1.0
            h.status = message
        try:
            yield
        finally:
            self._busy_depth -= 1
            if self._busy_depth == 0:
                with h.hold_sync():
                    h.busy = False
                    h.progress = -1.0
                    h.status = ""

    def _progress(self, done: int, total: int, message: str) -> None:
        now = time.perf_counter()
        if done < total and now - self._last_progress < 0.08:
            return
        self._last_progress = now
        with self.header.hold_sync():
            self.header.busy = True
            self.header.progress = float(done) / float(total) if total else -1.0
            self.header.status = str(message)

    def _safely(self, action: str, fn, *args, **kwargs) -> None:
        """Run a UI request; an error shows in the widget and leaves it as it was."""
        if self.header.error:
            self.header.error = ""  # a new request replaces the last message
        t0 = time.perf_counter()
        try:
            fn(*args, **kwargs)
            self.timings.append((action, time.perf_counter() - t0))
        except Exception as e:  # shown to the person, logged for the developer
            self.last_error = e
            log.warning("Explorer could not %s", action, exc_info=True)
            self.header.error = readable(e, action)
            self._resync()

    def _resync(self) -> None:
        """Put the controls back to the state actually shown (after a failed request)."""
        try:
            if self._exp is not None:
                self._push_image()
                self._push_controls(True)
                with self._silenced():
                    self.gallery.selected = self._selected
                    self.detail.cmap = self._cmap
        except Exception:  # pragma: no cover - best effort
            log.exception("Explorer could not restore its controls")

    # ==== UI events ===================================================================================
    def _on_header_msg(self, widget, content, buffers) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ready":  # a view is up: now the dendrogram, then the picker's thumbnails
            if self._dendrogram is None:
                self._safely("draw the dendrogram", lambda: self.dendrogram)
            if self._thumbs_pending:
                self._thumbs_pending = False
                self._safely("show the images", self._push_thumbs, self.header.page)
        elif kind == "image":
            self._safely(f"explain image {content.get('index')}", self._go, index=int(content["index"]))
        elif kind == "target":
            self._safely("explain that class", self._go, target=int(content["cls"]))
        elif kind == "page":
            self._safely("show those images", self._push_thumbs, int(content.get("page", 0)))
        elif kind == "key":
            self._safely("follow that key", self._key, str(content.get("key")))
        elif kind == "upload":
            name = str(content.get("name") or "uploaded image")
            self._safely(f"add {name}", self._upload, name, buffers)

    def _upload(self, name: str, buffers) -> None:
        if not buffers:
            raise ValueError(f"{name} arrived empty")
        data = bytes(buffers[0])
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Exception:
            raise ValueError(f"{name} is not an image this Explorer can read; use a PNG, JPEG, GIF, BMP or WebP "
                             "file") from None
        self.add_image(img, name=name)

    def _key(self, key: str) -> None:
        if self._exp is None:
            return
        if key in ("ArrowLeft", "ArrowRight"):
            layers = self._exp.layers
            pos = layers.index(self._layer) + (1 if key == "ArrowRight" else -1)
            if 0 <= pos < len(layers):
                self._go(layer=layers[pos])
        elif key in ("ArrowUp", "ArrowDown"):
            n = self._lr.tree.n
            if n < 2:
                return
            k = int(getattr(self._cl, "k_cut", self._cl.k)) + (-1 if key == "ArrowUp" else 1)
            k = int(np.clip(k, 1, min(n, MAX_K)))
            if k != int(getattr(self._cl, "k_cut", self._cl.k)):
                self._go(cut=("k", k))

    def _ui_target(self, change) -> None:
        if self._quiet or change.new is None or int(change.new) < 0:
            return
        if self._exp is not None and int(change.new) == int(self._exp.target):
            return
        self._safely("explain that class", self._go, target=int(change.new))

    def _ui_recipe(self, change) -> None:
        if self._quiet or change.new == self._recipe:
            return
        self._safely(f"switch to the {change.new} recipe", self._go, recipe=change.new)

    def _ui_layer(self, change) -> None:
        if self._quiet or change.new == self._layer or change.new not in (self._exp.layers if self._exp else []):
            return
        self._safely(f"show layer {change.new}", self._go, layer=change.new)

    def _ui_k(self, change) -> None:
        if self._quiet or self._cl is None or int(change.new) == int(getattr(self._cl, "k_cut", self._cl.k)):
            return
        self._safely(f"cut into {change.new} clusters", self._go, cut=("k", int(change.new)))

    def _ui_suggested(self, _button) -> None:
        self._safely("go back to the suggested cut", self._go, cut=("suggested", None))

    def _ui_cut_height(self, h: float) -> None:
        if self._quiet or self._lr is None:
            return
        self._safely("cut the dendrogram there", lambda: self._go(cut=self._cut_from_height(h)))

    def _ui_select(self, change) -> None:
        if self._quiet:
            return
        j = int(change.new)
        if self._cl is None or not 0 <= j < self._cl.k:
            return
        self._set_selected(j)
        self._safely("show that cluster map", self._push_detail)

    def _ui_cmap(self, change) -> None:
        if self._quiet or change.new == self._cmap:
            return
        self._safely(f"use the {change.new} colour map", self.set_cmap, change.new)
