"""How results show in a notebook: short reprs, small HTML tables, DataFrames.

The HTML here is tables, escaped (``html.escape``). Pictures and files (thumbnails, PNG files and sheets, the
report page) are plain functions of ``inv_widgets.export``, which the result objects call directly: ``export``
(with ``render``, ``report`` and ``files``) sits below the engine, imports nothing of it, and takes the result
objects as they come (tests/test_layout.py holds it there).
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from .. import export

__all__ = ["table", "png_tag", "MAX_ROWS"]

#: At most this many rows in a notebook table (the rest is counted).
MAX_ROWS = 24


def table(header: list[str], rows: list[list[Any]], *, raw: set[int] = frozenset(), more: int = 0) -> str:
    """A small HTML table; every cell escaped except the columns in ``raw`` (pictures made here)."""
    esc = html.escape
    head = "".join(f"<th style='text-align:left;padding:1px 6px'>{esc(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td style='padding:1px 6px'>{c if i in raw else esc(_cell(c))}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    tail = f"<tr><td colspan='{len(header)}' style='color:#777'>… {more} more</td></tr>" if more else ""
    return f"<table style='border-collapse:collapse;font-size:12px'><tr>{head}</tr>{body}{tail}</table>"


def _cell(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.2f}"
    return str(v)


def png_tag(png: bytes, size: int, alt: str) -> str:
    """An inline ``<img>`` of PNG bytes."""
    import base64

    data = base64.b64encode(png).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' width='{size}' alt='{html.escape(alt)}' style='display:block'>"


# ---- the views of the result objects (engine/explanation.py calls these) -------------------------------------


def _thumb(image, m, size: int, alt: str) -> str:
    return png_tag(export.overlay_png(image, m, size), size, alt)


def _members_text(members, n: int = 8) -> str:
    m = [int(c) for c in np.sort(members)]
    return ", ".join(map(str, m[:n])) + (f", … ({len(m)})" if len(m) > n else "")


def clusters_repr(cl) -> str:
    w = ", ".join(f"{x:.1f}" for x in cl.weights[:8]) + (", …" if cl.k > 8 else "")
    pruned = f", pruned={cl.pruned}" if cl.pruned else ""
    return (
        f"Clusters({cl.layer.name!r}, k={cl.k}, weights=[{w}] %, maps={tuple(cl.maps.shape)}, "
        f"cut_by={cl.cut_by!r}{pruned})"
    )


def clusters_html(cl, thumb: int = 72) -> str:
    e = cl.layer.explanation
    esc = html.escape
    rows = [
        [
            _thumb(e.image, cl.maps[j], thumb, f"cluster map {j}"),
            j,
            float(cl.weights[j]),
            len(cl.members[j]),
            _members_text(cl.members[j]),
        ]
        for j in range(min(cl.k, MAX_ROWS))
    ]
    pruned = f", {cl.pruned} light cluster(s) pruned" if cl.pruned else ""
    what = (
        "the first-order worth of the channels in its maps, in percent of the layer's positive worth"
        if cl.layer.explanation.maps == "gradcam"
        else "the kept channels' share"
    )
    head = (
        f"<div><b>{esc(cl.layer.name)}</b>: {cl.k} cluster map{'s' if cl.k != 1 else ''} ({esc(cl.cut_by)} cut, "
        f"recipe {esc(cl.layer.recipe)}{pruned}); weights sum to {float(np.sum(cl.weights)):.1f} % of the layer "
        f"({what})</div>"
    )
    if cl.k == 0:
        return head + "<div style='color:#777'>no feature map has a positive guided gradient for this class</div>"
    return head + table(
        ["map", "#", "weight %", "feature maps", "channels"], rows, raw={0}, more=max(0, cl.k - MAX_ROWS)
    )


def layer_html(lr, thumb: int = 72) -> str:
    e = lr.explanation
    esc = html.escape
    kept = lr.kept
    share = float(lr.channel_weights[kept].astype(np.float64).sum()) if len(kept) else 0.0
    h, w = lr.shape
    head = (
        f"<div><b>{esc(lr.name)}</b>: {lr.n_channels} channels, {len(kept)} kept ({share:.1f} % of the weight), "
        f"feature maps {h}×{w}, recipe {esc(lr.recipe)}</div>"
    )
    cam = (
        "<div style='display:flex;gap:12px;align-items:flex-start'><figure style='margin:0;font-size:11px'>"
        + _thumb(e.image, lr.gradcam(), thumb, "Grad-CAM")
        + "Grad-CAM, whole layer</figure>"
    )
    if lr.is_built or len(kept) < 2:
        body = clusters_html(lr.cut(), thumb)
    else:
        body = "<div style='color:#777'>dendrogram not built yet: <code>cut()</code> builds it</div>"
    return head + cam + f"<div>{body}</div></div>"


def explanation_html(exp, thumb: int = 48) -> str:
    esc = html.escape
    p = float(exp.probabilities[exp.target]) if len(exp.probabilities) > exp.target else float("nan")
    head = (
        f"<div style='display:flex;gap:12px;align-items:center'>{_thumb(exp.image, None, 96, 'image')}<div>"
        f"Why <b>{esc(exp.target_name)}</b> ({p:.1%})? Predicted <b>{esc(exp.predicted_name)}</b> · recipe "
        f"{esc(exp.recipe)} · {len(exp.layers)} layers<br><span style='color:#777'>exp[name].cut() for a "
        "layer's cluster maps; exp.to_frame() for all of them</span></div></div>"
    )
    rows = []
    for name in exp.layers[:MAX_ROWS]:
        lr = exp.layer(name)
        built = lr.is_built or len(lr.kept) < 2
        rows.append(
            [
                name,
                lr.n_channels,
                len(lr.kept),
                "×".join(map(str, lr.shape)),
                lr.suggested_k if built else "…",
                _thumb(exp.image, lr.gradcam(), thumb, f"Grad-CAM {name}"),
            ]
        )
    return head + table(
        ["layer", "channels", "kept", "size", "suggested k", "Grad-CAM"],
        rows,
        raw={5},
        more=max(0, len(exp.layers) - MAX_ROWS),
    )


#: What an explanation's maps table has after the one schema (engine.records.MAP_COLUMNS): the layer's channels,
#: kept channels and their share of the weight, the recipe, and each map's MapKey.
FRAME_EXTRA = ["channels", "kept", "kept_share", "recipe", "key"]


def clusters_rows(cl, layer_index: int = -1) -> list[dict]:
    lr = cl.layer
    e = lr.explanation
    kept = lr.kept
    share = float(lr.channel_weights[kept].astype(np.float64).sum()) if len(kept) else 0.0
    keys = cl.keys()
    return [
        {
            "model": e.model_id,
            "image_id": e.image_id,
            "target": int(e.target),
            "layer": lr.name,
            "members": keys[j].members_text,
            "image": e.index,
            "layer_index": layer_index,
            "map": j,
            "weight": float(cl.weights[j]),
            "size": len(cl.members[j]),
            "k": cl.k,
            "predicted": int(e.predicted),
            "channels": lr.n_channels,
            "kept": len(kept),
            "kept_share": share,
            "recipe": lr.recipe,
            "key": keys[j],
        }
        for j in range(cl.k)
    ]


def frame(rows: list[dict]):
    from .records import maps_frame

    return maps_frame(rows, extra=FRAME_EXTRA)
