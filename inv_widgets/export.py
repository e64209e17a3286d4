"""Results out of the notebook: PNG files of cluster maps, the gallery as one PNG sheet, the HTML report, and
the thumbnails of the notebook views (``_repr_html_``).

The engine's result objects call these plain functions directly (``exp.to_html(path)``, ``clusters.to_png(j,
path)``, ``clusters.to_sheet(path)``, the thumbnails of ``_repr_html_``): this module, like ``render``, ``report``
and ``files`` that it uses, sits below the engine and imports nothing of it; it takes the results as they come.
Every file is written whole or not at all (a temporary file in the same folder, renamed into place).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import render
from .files import atomic_write

__all__ = ["write_atomically", "check_output_path", "overlay_png", "map_png", "gallery_sheet", "explanation_page"]


def check_output_path(path, *, try_write: bool = False) -> Path:
    """``path`` as a Path, if a file can be written there: an error naming the fix otherwise (before any work).
    ``try_write`` creates and removes a temporary file in the folder (some folders, such as /proc, refuse new
    files whatever their permissions say)."""
    path = Path(os.fspath(path))
    if path.is_dir():
        raise IsADirectoryError(
            f"{str(path)!r} is a directory; give a file name inside it, e.g. {str(path / 'inv_report.html')!r}"
        )
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"the folder {str(folder)!r} does not exist; create it first or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write in the folder {str(folder)!r}; choose a path in a folder you can write to")
    if try_write:
        import tempfile

        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".check"):
                pass
        except OSError as e:
            raise PermissionError(
                f"cannot write in the folder {str(folder)!r} ({e.strerror or e}); choose a path in "
                "a folder you can write to"
            ) from None
    return path


def write_atomically(path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed into place: never a
    half-written file, and no temporary file left after an error."""
    path = check_output_path(path)
    try:
        return atomic_write(path, lambda f: f.write(data), binary=not isinstance(data, str))
    except OSError as e:
        raise OSError(f"could not write {str(path)!r}: {e.strerror or e}") from e


def overlay_png(
    image: np.ndarray, m: np.ndarray | None, size: int = 96, cmap: str = "jet", alpha: float = 0.5
) -> bytes:
    """A small PNG of a map blended over the image (or the image alone when ``m`` is None)."""
    picture = image if m is None else render.overlay(image, m, cmap=cmap, alpha=alpha)
    return render.to_png(render.thumbnail(picture, size), compress_level=6)


def map_png(clusters, j: int, path=None, *, cmap: str = "jet", alpha: float = 0.5, overlay: bool = True) -> bytes:
    """Cluster map ``j`` at the input resolution as PNG bytes: blended over the image (the paper's 50/50 jet),
    or the coloured map alone with ``overlay=False``. Written to ``path`` when given."""
    if not 0 <= int(j) < clusters.k:
        raise IndexError(f"cluster map {j} does not exist; this cut has {clusters.k} maps (0..{clusters.k - 1})")
    if path is not None:
        check_output_path(path)
    m = clusters.maps[int(j)]
    picture = (
        render.overlay(clusters.layer.explanation.image, m, cmap=cmap, alpha=alpha)
        if overlay
        else render.apply_cmap(m, cmap)
    )
    png = render.to_png(picture, compress_level=6)
    if path is not None:
        write_atomically(path, png)
    return png


def gallery_sheet(
    clusters,
    path=None,
    *,
    cmap: str = "jet",
    alpha: float = 0.5,
    size: int = 160,
    cols: int | None = None,
    gradcam: bool = True,
) -> bytes:
    """The gallery of a cut as one PNG: the layer's Grad-CAM (with ``gradcam``), then every cluster map over the
    image, captioned with its weight and number of feature maps. Written to ``path`` when given."""
    if path is not None:
        check_output_path(path)
    image = clusters.layer.explanation.image
    pictures, captions = [], []
    if gradcam:
        pictures.append(render.overlay(image, clusters.layer.gradcam(), cmap=cmap, alpha=alpha))
        captions.append("Grad-CAM, whole layer")
    for j in range(clusters.k):
        n = len(clusters.members[j])
        pictures.append(render.overlay(image, clusters.maps[j], cmap=cmap, alpha=alpha))
        captions.append(f"#{j} w = {clusters.weights[j]:.1f}% · {n} map{'s' if n != 1 else ''}")
    png = render.to_png(render.sheet(pictures, captions, cols=cols, size=size), compress_level=6)
    if path is not None:
        write_atomically(path, png)
    return png


def explanation_page(exp, path=None, **kwargs) -> str:
    """The self-contained HTML report of an explanation (``report.explanation_html``); written to ``path``
    when given."""
    from .report import explanation_html

    if path is not None:
        check_output_path(path)
    page = explanation_html(exp, **kwargs)
    if path is not None:
        write_atomically(path, page)
    return page
