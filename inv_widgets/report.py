"""A self-contained HTML page of one explanation: every layer's cluster maps, weights and Grad-CAM.

The headless way to share an explanation: one file, images inline, no JavaScript, no network.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime

import numpy as np

from . import render

__all__ = ["explanation_html"]

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} .sub{color:#666;margin-bottom:16px}
.head{display:flex;gap:24px;align-items:flex-start;margin-bottom:24px}
.head img{border-radius:6px;box-shadow:0 1px 4px #0003}
table.pred td{padding:1px 8px} .bar{background:#4a78c2;height:10px;border-radius:2px}
.layer{background:#fff;border:1px solid #e2e2e2;border-radius:8px;padding:10px 12px;margin:10px 0}
.layer h2{font-size:15px;margin:0 0 6px} .layer h2 small{color:#777;font-weight:normal}
.row{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;text-align:center;font-size:12px;color:#333} figure img{display:block;border-radius:4px}
figure.cam{padding-right:10px;border-right:1px dashed #ccc}
.empty{color:#999;font-style:italic;align-self:center}
.baselines .note{color:#666;font-size:12px;margin-top:6px}
"""

#: What each baseline is called on the page.
_TITLES = {"lime": "LIME", "kernelshap": "KernelSHAP", "gradcam": "Grad-CAM"}


def _img(array: np.ndarray, size: int, alt: str) -> str:
    small = render.thumbnail(array, int(1.5 * size))  # keeps the file small, still sharp on high-DPI screens
    data = base64.b64encode(render.to_png(small, compress_level=6)).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" width="{size}" height="{size}" alt="{html.escape(alt)}">'


def explanation_html(
    exp,
    *,
    k: int | None = None,
    cmap: str = "jet",
    thumb: int = 128,
    title: str | None = None,
    top: int = 5,
    baselines: dict | None = None,
    baselines_note: str = "",
) -> str:
    """The page as a string. ``k``: clusters per layer (default: each layer's suggested cut).

    ``baselines``: maps of the explanations people already know, method -> (H, W) in [0, 1] (what
    :func:`inv_widgets.concepts.baselines.attribution_maps` returns for this image and target), shown in a
    section of their own above the layers; ``baselines_note`` says how they were computed.
    """
    esc = html.escape
    meaning = getattr(exp, "map_meaning", "")  # the engine's one line per map type (engine.contrast.MAP_MEANINGS)
    names = exp.class_names or [str(i) for i in range(len(exp.probabilities))]
    order = np.argsort(-exp.probabilities)[:top]
    rows = "".join(
        f"<tr><td>{esc(names[c])}</td><td>{exp.probabilities[c] * 100:.1f}%</td>"
        f'<td><div class="bar" style="width:{max(1, int(exp.probabilities[c] * 160))}px"></div></td></tr>'
        for c in order
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title or 'INV explanation')}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title or 'INV explanation')}</h1>",
        f'<div class="sub">Why <b>{esc(exp.target_name)}</b>? Predicted: <b>{esc(exp.predicted_name)}</b> · '
        f"recipe <code>{esc(exp.recipe)}</code> · weighting <code>{esc(exp.weighting)}</code> · "
        f"{len(exp.layers)} layers · "
        f"generated {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by inv-widgets</div>",
        f'<div class="sub meaning">What a cluster map shows: {esc(meaning)}</div>' if meaning else "",
        f'<div class="head">{_img(exp.image, 224, "input image")}<table class="pred">{rows}</table></div>',
    ]
    if baselines:
        figs = "".join(
            f"<figure>{_img(render.overlay(exp.image, m, cmap=cmap), 2 * thumb, _TITLES.get(k_, k_))}"
            f"{esc(_TITLES.get(k_, k_))}</figure>"
            for k_, m in baselines.items()
        )
        note = f'<div class="note">{esc(baselines_note)}</div>' if baselines_note else ""
        scale = render.colorbar_html(cmap, height=2 * thumb)
        parts.append(
            f'<div class="layer baselines"><h2>Beside INV <small>the same image and class, explained by '
            f'the methods people already know</small></h2><div class="row">{figs}{scale}</div>{note}</div>'
        )
    cuts = exp.cuts(k=k)  # every layer's cut, side by side
    for name in exp.layers:
        lr = exp[name]
        cl = cuts[name]
        cam = render.overlay(exp.image, lr.gradcam(), cmap=cmap)
        figs = [f'<figure class="cam">{_img(cam, thumb, "Grad-CAM")}Grad-CAM</figure>']
        for j in range(cl.k):
            ov = render.overlay(exp.image, cl.maps[j], cmap=cmap)
            n = len(cl.members[j])
            figs.append(
                f"<figure>{_img(ov, thumb, f'cluster map {j + 1}')}w = {cl.weights[j]:.1f}% · "
                f"{n} map{'s' if n != 1 else ''}</figure>"
            )
        if cl.k == 0:
            figs.append('<div class="empty">no feature map has a positive guided gradient for this class</div>')
        figs.append(render.colorbar_html(cmap, height=thumb))  # the colour scale, beside the maps
        parts.append(
            f'<div class="layer"><h2>{esc(name)} <small>{lr.n_channels} channels, {len(lr.kept)} kept, '
            f'{lr.shape[0]}×{lr.shape[1]}, {cl.k} cluster maps</small></h2><div class="row">{"".join(figs)}</div></div>'
        )
    parts.append("</body></html>")
    return "".join(parts)
