"""Results in a notebook and out of it (issue 14, items 11, 12 and 14): short reprs, HTML views, DataFrames,
PNG files and sheets, the HTML report as a method."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

import inv_widgets as inv
from inv_widgets.report import explanation_html

NAMES = ["<b>ant</b>", "bee", "cat", "dog", "eel", "fox"]


def _explain(**kwargs):
    from nets import SmallCNN

    torch.manual_seed(0)
    x = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(1))
    return inv.explain(SmallCNN().eval(), x, class_names=NAMES, target=0, **kwargs)


@pytest.fixture(scope="module")
def exp():
    """The paper's maps, whose cut weights are the members' channel weights."""
    return _explain(maps="published")


@pytest.fixture(scope="module")
def exp_gradcam():
    """The default maps: each weighs its channels' first-order worth."""
    return _explain()


def test_reprs_are_short(exp):
    cl = exp[exp.layers[-1]].cut()
    text = repr(cl)
    assert len(text) < 200 and "array" not in text and text.startswith(f"Clusters('{exp.layers[-1]}', k={cl.k}")
    assert len(repr(exp)) < 200 and len(repr(exp[0])) < 200
    assert len(str([cl])) < 200  # also inside a list


def test_html_views_are_small_tables_with_thumbnails_and_escape_text(exp):
    cl = exp[exp.layers[-1]].cut()
    page = cl._repr_html_()
    assert page.count("data:image/png;base64,") == cl.k and "<table" in page
    assert f"{cl.weights[0]:.2f}" in page and len(page) < 20_000 * max(cl.k, 1)
    top = exp._repr_html_()
    assert "&lt;b&gt;ant&lt;/b&gt;" in top and "<b>ant</b>" not in top  # a class name is text
    assert top.count("data:image/png;base64,") == len(exp.layers) + 1  # the image and a Grad-CAM per layer
    layer = exp[0]._repr_html_()
    assert "Grad-CAM" in layer and f"{exp[0].n_channels} channels" in layer


def test_to_frame_has_one_row_per_layer_and_cluster_map(exp):
    df = exp.to_frame()
    cuts = [exp[n].cut() for n in exp.layers]
    assert len(df) == sum(c.k for c in cuts)
    assert {"layer", "map", "weight", "size", "members", "key", "kept_share"} <= set(df.columns)
    for name, c in zip(exp.layers, cuts):
        rows = df[df.layer == name]
        np.testing.assert_allclose(rows.weight.to_numpy(), c.weights)
        assert list(rows.key) == c.keys() and list(rows["size"]) == [len(m) for m in c.members]
        # cut weights sum to the kept channels' share of the layer; channel_weights sum to 100
        assert rows.weight.sum() == pytest.approx(rows.kept_share.iloc[0], abs=1e-6)
        assert exp[name].channel_weights.sum() == pytest.approx(100.0, abs=1e-3)
    df3 = exp.to_frame(k=3)
    assert set(df3.groupby("layer").size()) <= {3} and len(cuts[0].to_frame()) == cuts[0].k


def test_to_png_and_to_sheet(exp, tmp_path):
    cl = exp[exp.layers[-1]].cut()
    png = cl.to_png(0, tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes() == png
    assert Image.open(io.BytesIO(png)).size == (40, 40)
    assert Image.open(io.BytesIO(cl.to_png(0, overlay=False))).size == (40, 40)
    with pytest.raises(IndexError, match=f"this cut has {cl.k} maps"):
        cl.to_png(cl.k)
    sheet = Image.open(io.BytesIO(cl.to_sheet(tmp_path / "gallery.png", size=64, cols=cl.k + 1)))
    assert sheet.size[0] >= (cl.k + 1) * 64 and sheet.size[1] >= 64
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        cl.to_png(0, tmp_path / "missing" / "map.png")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        cl.to_sheet(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["gallery.png", "map.png"]  # nothing half-written, no temporary file


def test_to_html_is_the_report(exp, tmp_path):
    page = exp.to_html(tmp_path / "report.html", k=2)
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == page
    assert page.count("Grad-CAM</figure>") == len(exp.layers) and "<script" not in page
    a, b = (p.split("generated")[0] for p in (page, explanation_html(exp, k=2)))
    assert a == b
    assert os.listdir(tmp_path) == ["report.html"]


def test_readme_shows_the_export_api_that_exists(exp):
    """docs/explorer.md, "Out of the notebook": every call it shows exists, and static images of plotly figures
    are explained (kaleido is not a dependency; issue 14, item 14)."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "explorer.md").read_text()
    section = page.split("## Out of the notebook: pages, pictures, tables\n", 1)[1].split("\n## ", 1)[0]
    cl = exp[exp.layers[-1]].cut()
    for obj, names in ((exp, ("to_frame", "to_html", "_repr_html_")), (cl, ("to_png", "to_sheet", "to_frame"))):
        for name in names:
            assert callable(getattr(obj, name))
            if not name.startswith("_"):
                assert f".{name}(" in section, name
    assert "pip install kaleido" in section and "write_html" in section
    assert not any(r.startswith("kaleido") for r in _pyproject_requirements())


def _pyproject_requirements():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [r for reqs in project["optional-dependencies"].values() for r in reqs]


def test_cut_weights_sum_to_the_kept_share_and_the_docs_say_so(exp):
    """Published cut weights sum to the kept channels' share (70-99 %), channel_weights to 100: said where weights
    are documented (Clusters docstring, getting started, the Clusters table) (issue 14, item 11)."""
    from pathlib import Path

    from inv_widgets.engine.explanation import Clusters

    lr = exp[exp.layers[-1]]
    cl = lr.cut()
    kept_share = float(np.asarray(lr.channel_weights)[np.asarray(lr.kept)].sum())
    assert float(np.sum(cl.weights)) == pytest.approx(kept_share, abs=0.01)
    assert float(np.sum(lr.channel_weights)) == pytest.approx(100.0, abs=0.01)
    assert "kept channels' share" in " ".join(Clusters.__doc__.split())
    page = " ".join((Path(__file__).resolve().parents[1] / "docs" / "getting-started.md").read_text().split())
    assert "add up to the kept channels' share of the layer" in page and "`lr.channel_weights` add up to 100 %" in page
    assert f"weights sum to {kept_share:.1f} % of the layer (the kept channels' share)" in cl._repr_html_()


def test_grad_cam_cut_weights_are_the_channels_worth_and_the_table_says_so(exp_gradcam):
    """A Grad-CAM map weighs every channel it is drawn from by its first-order worth, in percent of the layer's
    positive worth: the cut's weights sum to the worth of the channels in its maps (at most 100), said in the
    table."""
    lr = exp_gradcam[exp_gradcam.layers[-1]]
    cl = lr.cut()
    worth = lr._data.channels[2].double().numpy()
    drawn = np.concatenate(cl.cut.channels)
    assert len(set(drawn.tolist())) == len(drawn)  # a channel is in one map at most
    net = 100 * worth[drawn].sum() / np.clip(worth, 0, None).sum()
    for j in range(cl.k):
        assert cl.weights[j] == pytest.approx(100 * worth[cl.cut.channels[j]].sum() / np.clip(worth, 0, None).sum())
    assert float(np.sum(cl.weights)) == pytest.approx(net, rel=1e-5) and net <= 100
    said = f"weights sum to {net:.1f} % of the layer (the first-order worth of the channels in its maps"
    assert said in cl._repr_html_()
