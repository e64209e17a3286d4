"""The global explanation as one self-contained HTML page: images inline, no script, no network.

Per class: a column per layer (forward order) with the top labels, their score bars, mean cluster weight,
TCAV result when attached, and example overlays; then the rising and falling labels as inline SVG charts.
Every text from people (labels) and every name is escaped.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime

import numpy as np
from PIL import Image

from .. import render

__all__ = ["global_html"]

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} .sub{color:#666;margin-bottom:16px}
section.cls{background:#fff;border:1px solid #e2e2e2;border-radius:8px;padding:10px 12px;margin:14px 0}
section.cls h2{font-size:16px;margin:0 0 8px} h2 small{color:#777;font-weight:normal}
.cols{display:flex;gap:10px;overflow-x:auto;padding-bottom:6px}
.col{min-width:170px;max-width:220px;flex:1 0 170px;border-left:1px solid #eee;padding-left:8px}
.col h3{font-size:12px;margin:0 0 6px;color:#444;word-break:break-all}
.lab{margin:0 0 10px} .lab .name{font-weight:600;word-break:break-word}
.bar{background:#4a78c2;height:7px;border-radius:2px;margin:2px 0}
.facts{font-size:11px;color:#555} .tcav{font-size:11px;margin-top:2px}
.tcav.sig{color:#1b5e20} .tcav.ns{color:#9e9e9e} .tcav.na{color:#b0b0b0;font-style:italic}
.ex{display:flex;gap:3px;margin-top:3px} .ex img{border-radius:3px}
.empty{color:#999;font-style:italic;font-size:12px}
.trends{display:flex;gap:24px;flex-wrap:wrap;margin-top:8px} .trends figure{margin:0}
.trends figcaption{font-size:12px;color:#444;font-weight:600}
.legend{font-size:11px;columns:2;margin-top:4px}
.legend span{display:inline-block;width:10px;height:3px;margin-right:4px;vertical-align:middle}
"""
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _uri(array: np.ndarray) -> str:
    """A JPEG data URI: overlays are photographs in effect, a third of the PNG's size at quality 85."""
    buf = io.BytesIO()
    Image.fromarray(render.to_uint8_image(array)).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def example_images(ge, source, keys, thumb: int) -> dict:
    """MapKey -> data URI of its overlay thumbnail, drawn from a MapSource (a Session or a Run; keys it does not
    hold are left out)."""
    from .examples import overlays

    if source is None or not keys:
        return {}
    return {key: _uri(picture) for key, picture in overlays(source, keys, size=int(1.25 * thumb))}


def _tcav_line(res) -> str:
    if res is None:
        return ""
    if res.get("tcav_score") is None or not np.isfinite(res.get("tcav_score", np.nan)):
        note = html.escape(str(res.get("note") or "not tested"))
        return f'<div class="tcav na">TCAV: {note}</div>'
    cls = "sig" if res.get("significant") else "ns"
    return (
        f'<div class="tcav {cls}" title="share of the class\'s images whose directional derivative along the '
        f'concept is positive, against random concepts">TCAV {res["tcav_score"]:.2f} '
        f"(random {res['random_score']:.2f}), p = {res['p_value']:.3g}"
        f"{'' if res.get('significant') else ' · not significant'}</div>"
    )


def _trend_svg(tr, layers, kind: str, width: int = 360, height: int = 150) -> str:
    rows = tr[tr["trend"] == kind]
    if rows.empty:
        return (
            f"<figure><figcaption>{'Rising' if kind == 'rising' else 'Falling'} labels</figcaption>"
            '<div class="empty">none</div></figure>'
        )
    vals = rows[layers].to_numpy(dtype=float)
    top = max(float(vals.max()), 1e-9)
    pad, n = 24, len(layers)
    xs = [pad + (width - 2 * pad) * (k / max(n - 1, 1)) for k in range(n)]
    lines, legend = [], []
    for (label, row), color in zip(rows.iterrows(), _COLORS * 3):
        pts = " ".join(f"{x:.1f},{height - pad - (height - 2 * pad) * v / top:.1f}" for x, v in zip(xs, row[layers]))
        lines.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}">'
            f"<title>{html.escape(str(label))} (slope {row['slope']:+.3f})</title></polyline>"
        )
        legend.append(
            f'<div><span style="background:{color}"></span>{html.escape(str(label))} ({row["slope"]:+.3f}/layer)</div>'
        )
    axis = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
        f'<text x="{pad}" y="{height - 6}" font-size="10" fill="#666">{html.escape(layers[0])}</text>'
        f'<text x="{width - pad}" y="{height - 6}" font-size="10" fill="#666" text-anchor="end">'
        f"{html.escape(layers[-1])}</text>"
        f'<text x="2" y="{pad - 8}" font-size="10" fill="#666">score per image (max {top:.2f})</text>'
    )
    title = "Rising labels" if kind == "rising" else "Falling labels"
    return (
        f"<figure><figcaption>{title}</figcaption><svg width='{width}' height='{height}' "
        f"xmlns='http://www.w3.org/2000/svg' role='img'>{axis}{''.join(lines)}</svg>"
        f"<div class='legend'>{''.join(legend)}</div></figure>"
    )


def global_html(ge, session=None, *, n: int = 5, thumb: int = 56, title: str | None = None) -> str:
    esc = html.escape
    table = ge.table
    shown = table.groupby(["class", "layer"], sort=False).head(int(n))
    keys = [k for ex in shown["examples"] for k in ex]
    images = example_images(ge, session, keys, thumb)
    title = title or "INV global explanation"
    tested = ge.tcav is not None and len(ge.tcav)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<div class="sub">{len(ge.maps)} labelled cluster maps of {ge.maps["image_id"].nunique()} images · '
        f"{len(ge.layers)} layers · score = best-label scores summed over the images; w̄ = mean cluster weight"
        f"{' · TCAV attached' if tested else ''}"
        f"{'' if session is not None else ' · no session: example images not drawn'} · generated "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by inv-widgets</div>",
    ]
    for target, name in enumerate(ge.classes):
        rows = shown[shown["target"] == target]
        if rows.empty:
            continue
        top = float(rows["score"].max()) or 1.0
        cols = []
        for layer in ge.layers:
            lab_rows = rows[rows["layer"] == layer]
            cards = []
            for _, r in lab_rows.iterrows():
                ex = "".join(
                    f'<img src="{images[k]}" width="{int(thumb)}" alt="example of {esc(r["label"])}">'
                    for k in r["examples"]
                    if k in images
                )
                w = f"w̄ = {r['mean_weight']:.1f}%" if np.isfinite(r["mean_weight"]) else "w̄ unknown"
                cards.append(
                    f'<div class="lab"><div class="name">{esc(str(r["label"]))}</div>'
                    f'<div class="bar" style="width:{max(2, int(100 * r["score"] / top))}%"></div>'
                    f'<div class="facts">score {r["score"]:.2f} · {w} · {int(r["n_images"])} image'
                    f"{'s' if r['n_images'] != 1 else ''}</div>"
                    f"{_tcav_line(ge.tcav_of(name, layer, r['label'])) if tested else ''}"
                    f"{f'<div class=ex>{ex}</div>' if ex else ''}</div>"
                )
            body = "".join(cards) or '<div class="empty">no labels</div>'
            cols.append(f'<div class="col"><h3>{esc(layer)}</h3>{body}</div>')
        tr = ge.trends(name)
        trends = ""
        if len(tr):
            trends = (
                f'<div class="trends">{_trend_svg(tr, ge.layers, "rising")}{_trend_svg(tr, ge.layers, "falling")}</div>'
            )
        parts.append(
            f'<section class="cls"><h2>{esc(name)} <small>{ge.n_images(name)} labelled images</small></h2>'
            f'<div class="cols">{"".join(cols)}</div>{trends}</section>'
        )
    if len(shown) == 0:
        parts.append('<div class="empty">No labelled cluster maps yet.</div>')
    parts.append("</body></html>")
    return "".join(parts)
