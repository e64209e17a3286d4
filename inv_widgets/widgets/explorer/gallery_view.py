"""The Explorer's gallery: what :class:`~inv_widgets.widgets.gallery.Gallery` shows for a View."""

from __future__ import annotations

from ..dendrogram import MAX_K, PALETTE

__all__ = ["show_gallery", "color", "colors"]

EMPTY = (
    "No feature map of this layer has a positive weight for this class, so there is nothing to cluster. "
    "Try another layer or class."
)


def color(j: int) -> str:
    """The colour of cluster map ``j`` (weight order): the dendrogram's colour of its branches."""
    return PALETTE[j % MAX_K]


def colors(k: int) -> list[str]:
    """The colours of ``k`` cluster maps, heaviest first."""
    return [color(j) for j in range(k)]


def show_gallery(gallery, view, pictures, *, cmap: str, labels: list) -> None:
    """Put the cut of ``view`` in ``gallery``, one message: the maps, the layer's Grad-CAM, the captions.

    The maps and the layer's Grad-CAM go at feature resolution (``Clusters.maps_lowres``,
    ``LayerResult.gradcam_lowres``) and the page upsamples, scales and colours them as ``Clusters.maps``,
    ``LayerResult.gradcam`` and ``render.apply_cmap`` do; the image goes as a PNG (made once per image)."""
    cl, lr, exp = view.clusters, view.layer, view.explanation
    sub = [
        f"{view.recipe} recipe",
        f"cut at h = {cl.threshold:.3g}",
        f"{len(lr.kept)} of {lr.n_channels} channels kept",
    ]
    if cl.pruned > 0:
        sub.append(f"{cl.pruned} light cluster{'s' if cl.pruned > 1 else ''} pruned")
    gallery.show(
        base=pictures.image(exp),
        maps=cl.maps_lowres,
        size=exp.input_size,
        cmap=cmap,
        weights=list(cl.weights),
        counts=[len(m) for m in cl.members],
        colors=colors(cl.k),
        labels=[lab[:3] for lab in labels],
        gradcam=lr.gradcam_lowres(),  # the page upsamples and scales it as the maps
        gradcam_caption="Grad-CAM",
        title=f"{lr.name} · {cl.k} cluster map{'s' if cl.k != 1 else ''} for “{exp.target_name}”",
        subtitle=" · ".join(sub),
        selected=view.selected,
        message=EMPTY if cl.k == 0 else "",
        note=f"What a map shows: {exp.map_meaning}" if cl.k else "",
    )
