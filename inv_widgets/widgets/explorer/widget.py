"""The Explorer: one image, one target class, one layer at a time, with its cluster maps.

    import inv_widgets as inv
    model, data = inv.demo.load()
    inv.Explorer(inv.Session(model, data))          # or inv.Explorer(model, images, transform=..., class_names=...)

A composition of small views over one :class:`~inv_widgets.Session` (listed in ``__init__.py``).

What is shown is a value (``state.py``): a person's request makes a new Selection, which is resolved against
the Session into a View; only then does anything change on screen, so a failed request leaves the Explorer as
it was. A change sets trait values or figure data (never rebuilds the widget tree), and the model runs only
for a new (image, target); a layer, cut or recipe change reuses the Session's cache. The gallery is drawn first
and the rest once a person's requests pause (``pacing.py``); its maps go to the page as numbers in binary buffers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import deque

import ipywidgets as W
import numpy as np

from ... import render
from ...engine.maps import REVEAL_PERCENTS
from ...engine.recipes import get_recipe
from ...engine.request import check_index
from ...engine.runtime import LRU
from .._common import as_session, readable
from ..dendrogram import MAX_K, Dendrogram
from ..gallery import Gallery
from .compare import Compare
from .controls import Controls
from .dendrogram_view import show_dendrogram, start_plotly_import
from .detail import NO_LABELS_HINT, NO_STORE_HINT, Detail
from .faithfulness_view import FaithfulnessView
from .gallery_view import color, show_gallery
from .header import HINT, Header, caption, read_upload, true_class
from .images import Pictures
from .pacing import Later, send_now
from .provider import LabelsProvider, store_labels, top_labels
from .state import KEEP, Cut, Selection, View

__all__ = ["Explorer"]

log = logging.getLogger("inv_widgets.explorer")


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
    baselines : dict, optional
        Settings of the compare view (LIME, KernelSHAP and Grad-CAM on demand): ``n_samples`` (model
        evaluations each for LIME and KernelSHAP, default 256), ``n_segments`` (SLIC superpixels, default 50),
        ``seed`` (default 0).
    """

    def __init__(
        self,
        session,
        images=None,
        *,
        store=None,
        labels: LabelsProvider | None = None,
        index: int = 0,
        target=None,
        layer=None,
        k: int | None = None,
        recipe: str | None = None,
        cmap: str = "jet",
        alpha: float = 0.5,
        page_size: int = 24,
        thumb_size: int = 96,
        baselines: dict | None = None,
        **session_options,
    ):
        session = as_session(session, images, session_options, "Explorer")
        render.colormap(cmap)  # validates the name
        baselines = Compare.check_options(baselines)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
        recipe = get_recipe(recipe or session.recipe).name
        if len(session) == 0:
            raise ValueError("the session has no images; add some with session.add_image(...) or pass images")
        start = Selection(
            image=index, target=target, layer=layer, recipe=recipe, cut=Cut.k(k) if k is not None else Cut.suggested()
        )

        self.session = session
        self.store = store
        self.labels_provider: LabelsProvider | None = (
            labels if labels is not None else (store_labels(store) if store is not None else None)
        )
        self.last_error: BaseException | None = None
        #: (request, seconds in the kernel) of the last UI requests, newest last (for benchmarks).
        self.timings: deque = deque(maxlen=256)
        self._cmap = cmap
        self._pictures = Pictures(session, thumb_size=thumb_size)
        self._quiet = 0
        self._view: View | None = None
        self._names: dict[int, str] = {}  # names given to added images (uploads): data, not a cache
        self._captions = LRU(4096)
        self._thumbs_pending = True  # the picker's thumbnails follow once the front end is up
        self._from_ui = 0  # > 0 while a person's request (a message from the page) is handled (pacing.py)
        self._later = Later(
            lambda: [self._push_dendrogram, self._push_detail, self.faithfulness.update],
            lambda step: self._safely("draw the dendrogram and the detail view", step, request=False),
            self._ahead,
        )

        # ---- views ---------------------------------------------------------------------------
        self.header = Header(page_size=int(page_size), n_images=len(session), hint=HINT)
        self.controls = Controls(recipe)
        self.target_select = self.controls.target_select
        self.recipe_select = self.controls.recipe_select
        self.layer_slider = self.controls.layer_slider
        self.k_slider = self.controls.k_slider
        self.suggest_button = self.controls.suggest_button
        self.cut_info = self.controls.cut_info
        self._dendrogram: Dendrogram | None = None  # made when a view is up (or when asked for): see dendrogram
        self.gallery = Gallery(alpha=float(alpha))
        self.detail = Detail(
            alpha=float(alpha),
            cmap=cmap,
            cmaps=list(render.COLORMAPS),
            reveal_percents=[float(p) for p in REVEAL_PERCENTS],
        )
        self._alpha_link = W.jslink((self.detail, "alpha"), (self.gallery, "alpha"))
        # LIME, KernelSHAP, Grad-CAM on demand
        self.compare = Compare(session, cmap=cmap, alpha=float(alpha), **baselines)
        self._compare_alpha = W.jslink((self.detail, "alpha"), (self.compare, "alpha"))

        placeholder = W.HTML("<div class='inv-dendro-wait'>dendrogram…</div>")
        self._dendro_box = dendro_box = W.VBox([placeholder])
        dendro_box.add_class("inv-dendro-box")
        self.faithfulness = FaithfulnessView(self.gallery, self.header, lambda: self._view)
        self.drop_toggle = self.faithfulness.toggle
        gallery_box = W.VBox([self.faithfulness.tools, self.gallery])
        gallery_box.add_class("inv-gallery-box")
        main = W.HBox([dendro_box, gallery_box])
        main.add_class("inv-main")
        super().__init__(
            children=[self.header, *self.controls.rows(), main, self.detail, self.faithfulness.box, self.compare]
        )
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

        self._show(start)
        # While the browser draws the gallery, import plotly's widget for the dendrogram (made on "ready").
        start_plotly_import()

    # ==== public API ===============================================================================
    @property
    def dendrogram(self) -> Dendrogram:
        """The dendrogram view (a plotly FigureWidget in ``.figure``).

        Made once, when the Explorer's first view has rendered (or on first access): plotly's widget carries
        plotly.js (about 5 MB) to the browser, so the gallery comes first and the dendrogram right after."""
        if self._dendrogram is None:
            self._dendrogram = Dendrogram(on_cut=self._ui_cut_height)
            self._dendro_box.children = [self._dendrogram.figure]
            self._push_dendrogram()
        return self._dendrogram

    @property
    def view(self) -> View:
        """What the Explorer shows now, as a value (``.selection``, ``.explanation``, ``.layer``, ``.clusters``)."""
        return self._view

    @property
    def index(self) -> int:
        """Index of the image shown."""
        return self._view.image

    @property
    def explanation(self):
        """The Explanation shown (the image and target picked)."""
        return self._view.explanation

    @property
    def target(self) -> int:
        """The class being explained."""
        return self._view.target

    @property
    def layer(self) -> str:
        """The name of the layer shown."""
        return self._view.layer_name

    @property
    def layers(self) -> list[str]:
        """The explained layers, in the slider's order."""
        return list(self._view.explanation.layers)

    @property
    def recipe(self) -> str:
        """The clustering recipe shown (the recipe buttons, :meth:`set_recipe`)."""
        return self._view.recipe

    @property
    def layer_result(self):
        """The LayerResult of the layer shown."""
        return self._view.layer

    @property
    def clusters(self):
        """The current cut (``Clusters``): ``.maps``, ``.weights``, ``.members``, ``.key(j)``."""
        return self._view.clusters

    @property
    def k(self) -> int:
        """Number of cluster maps shown (after pruning, for the paper recipe)."""
        return int(self._view.clusters.k)

    @property
    def threshold(self) -> float:
        """The height at which the dendrogram is cut (the cut control)."""
        return float(self._view.clusters.threshold)

    @property
    def selected(self) -> int:
        """Index (in weight order) of the cluster map in the detail view, -1 for none."""
        return self._view.selected

    @property
    def cmap(self) -> str:
        """The colour map of the maps (gallery, detail view, compare view)."""
        return self._cmap

    @property
    def alpha(self) -> float:
        """The maps' opacity over the image, 0..1 (gallery, detail and compare views)."""
        return float(self.gallery.alpha)

    @alpha.setter
    def alpha(self, value: float):
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]; got {value}")
        self.gallery.alpha = value
        self.detail.alpha = value
        self.compare.alpha = value  # jslink keeps the three together in the browser, not in the kernel

    def select_image(self, index: int, target=None) -> None:
        """Explain image ``index`` (for ``target``, default its predicted class)."""
        self._go(image=index, target=target)

    def set_target(self, target) -> None:
        """Explain another class (index or name; ``None`` = the predicted class) for the current image."""
        self._go(target=target)

    def set_layer(self, layer) -> None:
        """Show another layer (name or position in ``layers``)."""
        if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
            layer = self.layers[check_index(layer, len(self.layers), what="layer", owner="this explanation")]
        self._go(layer=layer)

    def set_cut(self, k: int | None = None, threshold: float | None = None) -> None:
        """Cut the dendrogram into ``k`` clusters, at height ``threshold``, or (neither) at the suggested cut.

        A height below every merge that would give more clusters than the gallery shows (12) gives 12."""
        if k is not None and threshold is not None:
            raise ValueError("give either k or threshold, not both")
        if k is not None:
            self._go(cut=Cut.k(k))
        elif threshold is not None:
            self._go(cut=Cut.height(threshold))
        else:
            self._go(cut=Cut.suggested())

    def set_recipe(self, recipe: str) -> None:
        """Cluster with another recipe (a name of the recipe registry); the model does not run again."""
        self._go(recipe=get_recipe(recipe).name)

    def select_cluster(self, j: int) -> None:
        """Show cluster map ``j`` (weight order, 0 = heaviest) in the detail view."""
        self._view = self._view.select(j)
        with self._silenced():
            self.gallery.selected = self._view.selected
        self._push_detail()

    def set_cmap(self, cmap: str) -> None:
        """Colour the maps with ``cmap`` (a name of ``render.COLORMAPS``) in every view."""
        render.colormap(cmap)
        self._cmap = cmap
        with self._silenced():
            self.detail.cmap = cmap
        self.compare.set_cmap(cmap)
        self._push_gallery()
        self._push_detail()

    def add_image(self, image, *, select: bool = True, name: str | None = None) -> int:
        """Add an image (PIL, array, path or tensor) to the session and the picker; returns its index."""
        i = int(self.session.add_image(image))
        if name:
            self._names[i] = str(name)
        self.header.n_images = len(self.session)
        if select:
            self._go(image=i)
        else:
            self._push_thumbs(self.header.page)
        return i

    def refresh_labels(self) -> None:
        """Ask the labels provider again (e.g. after a labelling game round)."""
        self._push_gallery()
        self._push_detail()

    # ==== state changes ============================================================================
    def _go(self, **request) -> None:
        """A person's request (``image``, ``target``, ``layer``, ``recipe``, ``cut``): resolve the new
        selection first, show it only when everything succeeded."""
        request.setdefault("target", KEEP)
        self._show(self._view.request(**request))

    def _show(self, selection: Selection) -> None:
        old = self._view
        new = selection.resolve(
            self.session, max_k=MAX_K, busy=self.header.working, progress=self.header.report, previous=old
        )
        self._view = new
        if new.same_content(old):
            return  # nothing to show that is not already shown
        image_changed = old is None or new.explanation is not old.explanation or new.image != old.image
        layer_changed = old is None or new.layer is not old.layer
        # The gallery first: it is what a person waits for; it leaves the kernel before the rest is worked out.
        self._push_gallery()
        send_now()
        if image_changed:
            self._push_image()
        self.controls.show(new, layer_changed or image_changed, self._silenced)
        self._later.due(soon=self._from_ui > 0)  # the dendrogram, the detail view, the drops

    def _ahead(self) -> list:
        """While the person looks (pacing.py): the cuts the arrow keys lead to next, worked out into the caches
        (the neighbouring layers, one cluster more and fewer); not where a dendrogram costs seconds to build."""
        view = self._view
        if view is None:
            return []
        asks = [view.request(layer=n) for n in (view.neighbour_layer(1), view.neighbour_layer(-1)) if n]
        asks += [view.request(cut=Cut.k(k)) for k in (view.moved_k(1, MAX_K), view.moved_k(-1, MAX_K)) if k]

        def warm(selection) -> None:
            if self._view is not view:
                return
            lr = view.explanation.layer(selection.layer or view.layer_name, view.recipe)
            if lr.is_built or view.recipe == "fast":
                selection.resolve(self.session, max_k=MAX_K, previous=view)

        return [functools.partial(warm, a) for a in asks]

    # ==== pushing state to the views ===================================================================
    def _labels(self, keys) -> list[list]:
        return top_labels(self.labels_provider, keys, on_error=self._labels_failed)

    def _labels_failed(self, exc: BaseException) -> None:
        self.last_error = exc

    def _push_gallery(self) -> None:
        view = self._view
        with self._silenced():
            show_gallery(self.gallery, view, self._pictures, cmap=self._cmap, labels=self._labels(view.clusters.keys()))

    def _push_dendrogram(self) -> None:
        if self._dendrogram is not None and self._view is not None:
            show_dendrogram(self._dendrogram, self._view)

    def _push_detail(self) -> None:
        view = self._view
        j = view.selected
        if not 0 <= j < view.clusters.k:
            self.detail.clear()
            return
        self.detail.show(
            view,
            self._pictures,
            cmap=self._cmap,
            color=color(j),
            labels=self._labels([view.clusters.key(j)])[0],
            labels_hint=NO_STORE_HINT if self.labels_provider is None else NO_LABELS_HINT,
        )

    def _push_image(self) -> None:
        view = self._view
        exp = view.explanation
        names = exp.class_names or self.session.classes
        self.header.show_prediction(
            exp,
            index=view.image,
            n_images=len(self.session),
            names=names,
            truth=true_class(self.session, view.image, names),
        )
        if self.header.page_of(view.image) != self.header.page or not self.header.shows(view.image):
            self._push_thumbs(self.header.page_of(view.image))
        self.controls.show_targets(exp, names, self._silenced)
        self.compare.show(view.image, exp.target, image_png=self._pictures.image(exp), class_name=exp.target_name)

    def _caption(self, i: int) -> str:
        if i in self._names:
            return self._names[i]
        return self._captions.get(i, lambda: caption(self.session, i))

    def _push_thumbs(self, page: int, lazy: bool = False) -> None:
        """Thumbnails of one page of images. ``lazy``: only those already made (the current image's); the
        others are placeholders until the front end asks (its first render sends "ready")."""
        n = len(self.session)
        page, idx = self.header.page_indices(page, n)
        current = self._view.image if self._view is not None else -1
        if lazy or self._thumbs_pending:
            thumbs = [self._pictures.thumb(i) if i == current else self._pictures.thumb_if_made(i) for i in idx]
            captions = [self._names.get(i) or self._captions.get(i, default=f"#{i}") for i in idx]
        else:
            thumbs = [self._pictures.thumb(i) for i in idx]
            captions = [self._caption(i) for i in idx]
        self.header.show_thumbs(page, idx, thumbs, captions, n)

    # ==== errors ======================================================================================
    @contextlib.contextmanager
    def _silenced(self):
        """The views change because the kernel changes them: the observers below do nothing meanwhile."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    def _safely(self, action: str, fn, *args, request: bool = True, **kwargs) -> None:
        """Run a UI request; an error shows in the widget and leaves it as it was. A new request replaces the last
        message; the paced drawing of an earlier request (``request=False``) leaves it (it would hide an error
        that came after it was scheduled)."""
        if request and self.header.error:
            self.header.error = ""
        t0 = time.perf_counter()
        self._from_ui += 1
        try:
            fn(*args, **kwargs)
            self.timings.append((action, time.perf_counter() - t0))
        except Exception as e:  # shown to the person, logged for the developer
            self.last_error = e
            log.warning("Explorer could not %s", action, exc_info=True)
            self.header.error = readable(e, action)
            self._resync()
        finally:
            self._from_ui -= 1

    def _resync(self) -> None:
        """Put the controls back to the state actually shown (after a failed request)."""
        try:
            if self._view is not None:
                self._push_image()
                self.controls.show(self._view, True, self._silenced)
                with self._silenced():
                    self.gallery.selected = self._view.selected
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
            self._safely(f"explain image {content.get('index')}", self._go, image=int(content["index"]))
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
        self.add_image(read_upload(name, buffers, self.session.inputs), name=name)

    def _key(self, key: str) -> None:
        if self._view is None:
            return
        if key in ("ArrowLeft", "ArrowRight"):
            layer = self._view.neighbour_layer(1 if key == "ArrowRight" else -1)
            if layer is not None:
                self._go(layer=layer)
        elif key in ("ArrowUp", "ArrowDown"):
            k = self._view.moved_k(-1 if key == "ArrowUp" else 1, MAX_K)
            if k is not None:
                self._go(cut=Cut.k(k))

    def _ui_target(self, change) -> None:
        if self._quiet or change.new is None or int(change.new) < 0:
            return
        if self._view is not None and int(change.new) == self._view.target:
            return
        self._safely("explain that class", self._go, target=int(change.new))

    def _ui_recipe(self, change) -> None:
        if self._quiet or change.new == self.recipe:
            return
        self._safely(f"switch to the {change.new} recipe", self._go, recipe=change.new)

    def _ui_layer(self, change) -> None:
        if self._quiet or change.new == self.layer or change.new not in self.layers:
            return
        self._safely(f"show layer {change.new}", self._go, layer=change.new)

    def _ui_k(self, change) -> None:
        if self._quiet or int(change.new) == int(self._view.clusters.k_cut):
            return
        self._safely(f"cut into {change.new} clusters", self._go, cut=Cut.k(int(change.new)))

    def _ui_suggested(self, _button) -> None:
        self._safely("go back to the suggested cut", self._go, cut=Cut.suggested())

    def _ui_cut_height(self, h: float) -> None:
        if self._quiet or self._view is None:
            return
        self._safely("cut the dendrogram there", lambda: self._go(cut=Cut.height(h)))

    def _ui_select(self, change) -> None:
        if self._quiet:
            return
        j = int(change.new)
        if not 0 <= j < self._view.clusters.k:
            return
        self._view = self._view.select(j)
        self._safely("show that cluster map", self._push_detail)

    def _ui_cmap(self, change) -> None:
        if self._quiet or change.new == self._cmap:
            return
        self._safely(f"use the {change.new} colour map", self.set_cmap, change.new)
