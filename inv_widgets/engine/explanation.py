"""Result objects: Explanation (one image, one target) -> LayerResult (one layer) -> Clusters (one cut,
engine/clusters.py)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .. import export
from . import display
from .ablation import Ablation, Curves, ModelProbe
from .capture import Captured
from .clusters import Clusters
from .cut import cut_layer, layer_maps
from .keys import MapKey
from .maps import upsample_minmax
from .recipes import build_tree, build_trees, get_recipe
from .request import check_layer, check_whole
from .runtime import LRU, parallel_map
from .tree import Tree
from .weights import check_weighting

__all__ = ["Explanation", "LayerResult", "Clusters", "MapKey", "build_explanations"]

Progress = Callable[[int, int, str], None]


class LayerResult:
    """One layer of an Explanation for one clustering recipe. The linkage is computed once."""

    #: How many cuts of one layer are kept (a recut of a kept one is free; any other costs a millisecond). Each
    #: holds its cluster maps at the input resolution (K x H x W float32: 1.6 MB for 8 maps at 224 px).
    CUTS_KEPT = 8

    def __init__(self, explanation: Explanation, name: str, recipe: str):
        self.explanation = explanation
        self.name = name
        self.recipe = get_recipe(recipe).name
        self._data = explanation._layers[name]
        self._tree: Tree | None = None
        self._lock = threading.Lock()
        self._cuts = LRU(self.CUTS_KEPT)

    def __repr__(self):
        return f"LayerResult({self.name!r}, recipe={self.recipe!r}, channels={self.n_channels}, kept={len(self.kept)})"

    def _repr_html_(self) -> str:
        return display.layer_html(self)

    @property
    def n_channels(self) -> int:
        """The layer's number of channels (feature maps), kept or not."""
        return int(self._data.percent.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Feature-map resolution (h, w)."""
        return tuple(self._data.gradcam.shape)

    @property
    def weighting(self) -> str:
        """How the channel weights were made: "guided" or "taylor" (the explanation's, the session's)."""
        return self.explanation.weighting

    @property
    def channel_weights(self) -> np.ndarray:
        """Weight of every channel under the explanation's weighting (guided gradients, or the positive part of
        gradient x activation), percent of the layer total, (C,)."""
        return self._data.percent.cpu().numpy()

    def map_weight(self, members) -> float:
        """The weight, percent of this layer, of the cluster map whose members are ``members`` (channel indices),
        as the cut weighs it: the members' channel weights summed; for ``maps="gradcam"``, the first-order worth
        of every channel the map is drawn from (:func:`~inv_widgets.engine.contrast.channels_weight`). One rule
        for the Session, the game's pool and the global explanation."""
        w = self.channel_weights
        members = np.asarray(members, dtype=np.int64)
        if members.size and (members.max() >= w.shape[0] or members.min() < 0):
            raise KeyError(
                f"cluster map {list(members.tolist())} names channels outside the {w.shape[0]} channels "
                f"of layer {self.name!r}"
            )
        if self._data.map_type == "gradcam":
            from .contrast import channels_weight, map_channels

            acts, _, worth = self._data.channels
            kept = self._data.kept.cpu().numpy()
            return channels_weight(worth, map_channels(acts, kept, members, self._data.nearest_kept()))
        return float(w[members].astype(np.float64).sum())  # as the cut sums them (engine.cut.plan_cut)

    @property
    def kept(self) -> np.ndarray:
        """Indices of the channels kept by the weight filter (percent >= 89.6 / C)."""
        return self._data.kept.cpu().numpy()

    @property
    def feature_maps(self) -> np.ndarray:
        """The kept feature maps at feature resolution, (len(kept), h, w) float32, post-ReLU, aligned with
        ``kept`` (row i is channel ``kept[i]``). A read-only view of what the explanation holds, no copy."""
        maps = self._data.maps.numpy()
        maps.flags.writeable = False
        return maps

    @property
    def tree(self) -> Tree:
        """The dendrogram of the kept maps under this result's recipe, built on first use (seconds for the paper
        recipe) and kept."""
        with self._lock:
            if self._tree is None:
                self._tree = build_tree(self._data.maps, self.recipe)
            return self._tree

    def _set_tree(self, tree: Tree) -> None:
        """Adopt a tree built elsewhere (``Explanation.compute``), unless one was built meanwhile."""
        with self._lock:
            if self._tree is None:
                self._tree = tree

    @property
    def is_built(self) -> bool:
        """Whether the dendrogram exists already (otherwise the next use builds it: seconds for "paper")."""
        return self._tree is not None

    @property
    def linkage(self) -> np.ndarray:
        """scipy linkage matrix over the kept channels (leaf i is channel ``kept[i]``)."""
        return self.tree.linkage

    @property
    def heights(self) -> np.ndarray:
        """The merge heights of the dendrogram, bottom up (a copy)."""
        return self.tree.heights

    @property
    def suggested_k(self) -> int:
        """The recipe's suggested number of cluster maps (the default cut)."""
        return self.tree.suggested_k

    def gradcam(self) -> np.ndarray:
        """Plain Grad-CAM at this layer: ReLU(sum_k mean(G_k) A_k), bilinear to the input size, min-max, (H, W)."""
        return upsample_minmax(self._data.gradcam[None], self.explanation.input_size)[0]

    def gradcam_lowres(self) -> np.ndarray:
        """The plain Grad-CAM at feature resolution, min-max scaled, (h, w) float32 (what a stored run keeps);
        :meth:`gradcam` is it upsampled to the input size and scaled again."""
        from .cut import scaled_lowres

        return scaled_lowres(self._data.gradcam[None])[0]

    def ablation(self, groups) -> Ablation:
        """Zero each group of channels (a list of channel-index arrays) at this layer's output, one group per
        masked copy, all copies in one batched forward pass from the layer on: the target's logit and
        probability drop per group, and the drop when every channel of the layer is zeroed."""
        e = self.explanation
        probe = e._need_probe("ablation")
        c = self.n_channels
        groups = [np.asarray(g, dtype=np.int64).reshape(-1) for g in groups]
        keep = torch.ones(len(groups) + 1, c)
        keep[0] = 0.0  # the whole layer
        for i, g in enumerate(groups, 1):
            if g.size and (g.min() < 0 or g.max() >= c):
                raise IndexError(
                    f"channel {int(g.max() if g.max() >= c else g.min())} is not one of the layer's {c} channels"
                )
            keep[i, g] = 0.0
        logits = probe.ablate(self.name, keep)
        base = probe.logits()
        t = probe.target
        p0 = torch.softmax(base, 0)[t].item()
        probs = torch.softmax(logits, 1)[:, t].numpy().astype(np.float64)
        drops = (base[t] - logits[:, t]).numpy().astype(np.float64)
        return Ablation(
            self.name,
            t,
            float(base[t]),
            float(p0),
            drops[1:],
            p0 - probs[1:],
            float(drops[0]),
            float(p0 - probs[0]),
            np.array([len(g) for g in groups], dtype=np.int64),
        )

    def cut(
        self,
        k: int | None = None,
        threshold: float | None = None,
        prune: bool | None = None,
        *,
        height: float | None = None,
        max_k: int | None = None,
    ) -> Clusters:
        """Cut the dendrogram: ``cut()`` the suggested cut, ``cut(k=5)``, ``cut(threshold=t)`` or ``cut(height=h)``.

        ``height`` is a height picked by a person (a click on the dendrogram): below 0 it means 0, and with
        ``max_k`` a height that would give more than ``max_k`` clusters gives the cut into ``max_k`` instead.
        ``prune`` drops clusters lighter than max(max_w / 3, mean_w / 2) (default: on for the paper
        recipe, off otherwise). Cheap: the linkage is reused, and recent cuts are kept.
        """
        if height is not None:
            if k is not None or threshold is not None:
                raise ValueError("give one of k, threshold or height, not several")
            h = float(height)
            if not np.isfinite(h):
                raise ValueError(f"the cut height must be a finite number; got {height}")
            h = max(h, 0.0)
            if max_k is not None and self.tree.k_at(h) > int(max_k):
                return self.cut(k=int(max_k), prune=prune)
            return self.cut(threshold=h, prune=prune)
        tree = self.tree
        k = check_whole("k", k, lo=1, none_ok=True)
        prune = tree.prune if prune is None else bool(prune)
        return self._cuts.get((k, threshold, prune), lambda: self._make_cut(tree, k, threshold, prune))

    def _make_cut(self, tree: Tree, k, threshold, prune: bool) -> Clusters:
        return Clusters(self, cut_layer(self.name, self._data, tree, k=k, threshold=threshold, prune=prune))

    def locate(self, members) -> tuple[Clusters, int]:
        """The cut in which the channels ``members`` form one cluster map, and that map's index in it.

        Any cluster of any cut is a node of the dendrogram: the node whose leaves are ``members`` is found
        by walking up from one of them, and the layer is cut between that node's merge height and its
        parent's. Raises ``KeyError`` when no node of this layer's dendrogram has exactly these channels
        (another recipe, another weighting, or channels that are not kept).
        """
        want = np.array(sorted({int(m) for m in members}), dtype=np.int64)
        kept = self.kept
        pos = np.searchsorted(kept, want)
        if want.size == 0 or (pos >= kept.size).any() or (kept[np.minimum(pos, kept.size - 1)] != want).any():
            raise KeyError(
                f"channels {want.tolist()} are not all kept at layer {self.name!r}: no cluster map of "
                "this explanation has them"
            )
        tree = self.tree
        n = tree.n
        if want.size == n:
            cl = self.cut(k=1, prune=False)
            return cl, 0
        walk = tree.nodes
        parent, size, height = walk.parent, walk.size, walk.height
        node = int(pos[0])
        while node != -1 and size[node] < want.size:
            node = int(parent[node])
        if node == -1 or size[node] != want.size or not np.array_equal(np.sort(walk.leaves(node)), pos):
            raise KeyError(
                f"channels {want.tolist()} are not one cluster of layer {self.name!r}'s dendrogram "
                f"(recipe {self.recipe!r})"
            )
        lo, hi = height[node], height[parent[node]]
        for prune in (None, False):
            cl = self.cut(threshold=float((lo + hi) / 2), prune=prune) if hi > lo else None
            if cl is None:  # equal merge heights: no height separates the node, try the cuts by k
                cl = next(
                    (
                        c
                        for c in (self.cut(k=k, prune=prune) for k in range(1, n + 1))
                        if any(np.array_equal(np.sort(m), want) for m in c.members)
                    ),
                    None,
                )
            if cl is not None:
                for j, m in enumerate(cl.members):
                    if np.array_equal(np.sort(m), want):
                        return cl, j
        raise KeyError(f"channels {want.tolist()} form a pruned cluster of layer {self.name!r}")  # pragma: no cover


@dataclass(eq=False)
class Explanation:
    """Everything INV knows about one image and one target class."""

    image: np.ndarray  # (H, W, 3) uint8, what a person sees, at input resolution
    predicted: int
    target: int
    probabilities: np.ndarray  # (num_classes,)
    logits: np.ndarray
    layers: list[str]  # forward order
    model_id: str = ""
    image_id: str = ""
    class_names: list[str] | None = None
    recipe: str = "fast"
    weighting: str = "guided"  # how the channel weights were made: "guided" or "taylor"
    maps: str = "published"  # what a cluster map is drawn from (engine/contrast.py: MAP_TYPES)
    index: int = -1  # the image's index in its session (-1: a picture given directly)
    #: the model and this input, to run again on changed copies (ablation, deletion / insertion curves)
    probe: ModelProbe | None = field(default=None, repr=False, compare=False)
    _layers: dict = field(default_factory=dict, repr=False)
    _results: dict = field(default_factory=dict, repr=False)

    @property
    def input_size(self) -> tuple[int, int]:
        """The explained image's size (H, W) in pixels, as the model saw it."""
        return tuple(self.image.shape[:2])

    @property
    def map_meaning(self) -> str:
        """What a cluster map of this explanation shows, in one line (``engine.contrast.MAP_MEANINGS``)."""
        from .contrast import map_meaning

        return map_meaning(self.maps)

    def __getitem__(self, name) -> LayerResult:
        return self.layer(name)

    def __iter__(self):
        return (self[n] for n in self.layers)

    def __len__(self):
        return len(self.layers)

    def layer(self, name: str | int, recipe: str | None = None) -> LayerResult:
        """One layer by name (or position), for a recipe (default: the explanation's)."""
        name = check_layer(name, self.layers, owner="this explanation")
        recipe = get_recipe(recipe or self.recipe).name
        key = (name, recipe)
        if key not in self._results:
            self._results[key] = LayerResult(self, name, recipe)
        return self._results[key]

    def compute(self, recipe: str | None = None, progress: Progress | None = None) -> Explanation:
        """Build every layer's dendrogram now (otherwise each is built on first use).

        The layers not built yet are built together (``build_trees``): for the paper recipes their t-SNE
        embeddings run side by side, the same trees as one layer at a time, in less time.
        """
        recipe = recipe or self.recipe
        total = len(self.layers)
        todo = [lr for lr in (self.layer(name, recipe) for name in self.layers) if not lr.is_built]
        finished = [total - len(todo)]

        def built(i: int) -> None:
            finished[0] += 1
            if progress:
                progress(finished[0], total, f"clustered {todo[i].name}")

        if todo:
            for lr, tree in zip(todo, build_trees([lr._data.maps for lr in todo], recipe, progress=built)):
                lr._set_tree(tree)
        elif progress:
            progress(total, total, "clustered")
        return self

    def cuts(self, recipe: str | None = None, *, k: int | None = None) -> dict[str, Clusters]:
        """Every layer's cut, ``{layer: Clusters}`` in the layers' order: each layer's suggested cut, or ``k``
        clusters (as ``layer(name).cut(k=k)``). The dendrograms are built together (:meth:`compute`), and on the
        CPU the layers are cut side by side (one thread each, :func:`~inv_widgets.engine.runtime.parallel_map`):
        the same cuts, kept by each layer as one at a time would keep them, in less time."""
        self.compute(recipe)
        results = [self.layer(name, recipe) for name in self.layers]

        def cut(lr: LayerResult) -> Clusters:
            return lr.cut(k=k)

        if all(lr._data.maps.device.type == "cpu" for lr in results):
            got = parallel_map(cut, results, cost=lambda lr: lr._data.maps.numel())
        else:
            got = [cut(lr) for lr in results]
        return dict(zip(self.layers, got))

    def _need_probe(self, what: str) -> ModelProbe:
        if self.probe is None:
            raise ValueError(
                f"{what} runs the model again, and this explanation has no model attached; explain "
                "the image with a Session (or inv.explain) to use it"
            )
        return self.probe

    def with_recipe(self, recipe: str) -> Explanation:
        """A view of the same explanation whose default recipe is ``recipe`` (dendrograms are shared)."""
        return dataclasses.replace(self, recipe=recipe)

    def curves(
        self, saliency: np.ndarray, *, steps: int = 20, fractions=None, batch_size: int = 64, progress=None
    ) -> Curves:
        """Deletion and insertion curves of saliency maps (M, H, W) at the input's resolution: the most salient
        pixels first, in ``steps`` equal shares, replaced by the fill (deletion) or put back onto it
        (insertion), scored by the target's probability (or at the shares ``fractions``, 0 to 1). The fill is
        the image without its content (the session's: the dataset's ``background(i)`` when it has one, else a
        blurred copy)."""
        return self._need_probe("a deletion or insertion curve").curves(
            saliency, steps=steps, fractions=fractions, batch_size=batch_size, progress=progress
        )

    @property
    def target_name(self) -> str:
        """The explained class's name (its index as text when the session has no class names)."""
        return self.class_names[self.target] if self.class_names else str(self.target)

    @property
    def predicted_name(self) -> str:
        """The predicted class's name (its index as text when the session has no class names)."""
        return self.class_names[self.predicted] if self.class_names else str(self.predicted)

    def __repr__(self):
        return (
            f"Explanation(target={self.target_name!r}, predicted={self.predicted_name!r}, "
            f"layers={len(self.layers)}, recipe={self.recipe!r})"
        )

    def _repr_html_(self) -> str:
        return display.explanation_html(self)

    def to_frame(self, recipe: str | None = None, k: int | None = None):
        """One row per layer and cluster map (``cut(k=k)``, default each layer's suggested cut), in the one maps
        schema (:data:`inv_widgets.engine.records.MAP_COLUMNS`, as ``Run.maps`` and the label store): the MapKey
        fields (members as text ``"3,17,42"``), image (the session index, -1 for a picture given directly),
        layer_index, map (rank), weight (percent of the layer), size (feature maps), k, predicted; then the
        layer's channels, kept channels and their share, the recipe and each map's MapKey. Builds every
        dendrogram."""
        rows = []
        for i, cl in enumerate(self.cuts(recipe, k=k).values()):
            rows.extend(display.clusters_rows(cl, i))
        return display.frame(rows)

    def to_html(self, path=None, *, k: int | None = None, cmap: str = "jet", title: str | None = None) -> str:
        """The self-contained HTML report of this explanation (images inline, no script, no network): every
        layer's cluster maps (``cut(k=k)``, default the suggested cut) with weights, beside its Grad-CAM. Returns
        the page; also written to ``path`` when given (whole or not at all)."""
        return export.explanation_page(self, path, k=k, cmap=cmap, title=title)

    @property
    def nbytes(self) -> int:
        """Bytes held by the layers' kept maps, weights and Grad-CAMs, and, for ``maps="gradcam"``, every channel's
        activations and statistics (what a map of all of a cluster's channels is drawn from)."""
        total = 0
        for d in self._layers.values():
            total += d.maps.numel() * 4 + d.percent.numel() * 4 + d.gradcam.numel() * 4
            total += sum(t.numel() * t.element_size() for t in (d.channels or ()))
        return total


def build_explanations(
    captured: Captured,
    images: list[np.ndarray],
    *,
    model_id: str = "",
    image_ids: list[str] | None = None,
    class_names: list[str] | None = None,
    recipe: str = "fast",
    weighting: str = "guided",
    probes: list[ModelProbe] | None = None,
    maps: str = "published",
) -> list[Explanation]:
    """Turn one captured batch into one Explanation per image (weights, filter, kept maps, Grad-CAM:
    :func:`inv_widgets.engine.cut.layer_maps`).

    ``weighting``: the channel weights every later step uses (keep filter, clusters, cluster weights and maps,
    Deep Reveal): "guided" (the paper's guided gradients) or "taylor" (gradient x activation). ``probes``: one
    :class:`ModelProbe` per image, for ablation and deletion / insertion curves (optional). ``maps``: what a
    cluster map is drawn from (``engine.contrast``; "gradcam" needs a pass captured with ``weighting=None``)."""
    check_weighting(weighting)
    logits = captured.logits.float()
    probs = F.softmax(logits, dim=1).cpu().numpy()
    pred = logits.argmax(1).cpu().numpy()
    per_image = layer_maps(captured, weighting, maps=maps)
    out = []
    for i in range(logits.shape[0]):
        out.append(
            Explanation(
                image=images[i],
                predicted=int(pred[i]),
                target=int(captured.targets[i]),
                probabilities=probs[i],
                logits=logits[i].cpu().numpy(),
                layers=list(captured.order),
                model_id=model_id,
                image_id=(image_ids[i] if image_ids else ""),
                class_names=class_names,
                recipe=recipe,
                weighting=weighting,
                maps=maps,
                probe=probes[i] if probes else None,
                _layers=per_image[i],
            )
        )
    return out
