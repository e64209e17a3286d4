"""A colour scale beside every map a person reads values from (issue 22): the Explorer's detail view, its compare
view and the HTML report, each following the colour map in use."""

from __future__ import annotations

import re

import numpy as np
import pytest

import inv_widgets as inv
from inv_widgets import render


def _stops(gradient: str) -> list[str]:
    return re.findall(r"#[0-9a-f]{6}", gradient)


@pytest.mark.parametrize("cmap", render.COLORMAPS)
def test_css_gradient_runs_from_the_colour_of_0_to_the_colour_of_1(cmap):
    lut = render.colormap(cmap)
    g = render.css_gradient(cmap)
    assert g.startswith("linear-gradient(to top, ")
    stops = _stops(g)
    hexes = ["#" + "".join(f"{int(c):02x}" for c in lut[i]) for i in (0, 255)]
    assert stops[0] == hexes[0] and stops[-1] == hexes[1]
    assert g.rstrip(")").endswith("100.0%")


def test_the_report_has_a_colour_scale_beside_every_row_of_maps():
    model, data = inv.demo.load(n=2)
    exp = inv.Session(model, data).explain(0)
    page = exp.to_html(cmap="viridis")
    assert page.count('class="inv-colorbar"') == len(exp.layers)
    assert page.count(render.css_gradient("viridis")) == len(exp.layers)
    assert "1 high" in page and "0 low" in page and "<script" not in page


def test_the_detail_and_compare_views_carry_the_colour_scale_of_their_colour_map():
    from inv_widgets.widgets.explorer.compare import Compare

    model, data = inv.demo.load(n=2)
    session = inv.Session(model, data)
    ex = inv.Explorer(session)
    ex.select_cluster(0)
    assert ex.detail.colorbar == render.css_gradient("jet")
    ex.set_cmap("inferno")
    assert ex.detail.colorbar == render.css_gradient("inferno")
    compare = Compare(session)
    compare._put_maps({m: np.random.default_rng(0).random((8, 8)) for m in compare.methods})
    assert compare.colorbar == render.css_gradient("jet")
    compare.set_cmap("gray")
    assert compare.colorbar == render.css_gradient("gray")
