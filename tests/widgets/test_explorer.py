"""The Explorer without a browser: what its views would show after each action, and what it does not do
(rerun the model, rebuild the widget tree, send base64 images)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget import _remove_buffers
from nets import CLASS_NAMES as CLASSES
from nets import small_images
from PIL import Image
from torch import nn

import inv_widgets as inv
from inv_widgets import render
from inv_widgets.engine.maps import upsample_minmax
from inv_widgets.widgets import Explorer, store_labels
from inv_widgets.widgets.dendrogram import MAX_K, PALETTE, cluster_stubs


class Counter:
    def __init__(self, model):
        self.calls = 0
        model.register_forward_hook(lambda *a: setattr(self, "calls", self.calls + 1))


def _images(n=5):
    return small_images(n)


@pytest.fixture
def model(small_cnn):
    return small_cnn


@pytest.fixture
def session(model, small_images):
    return inv.Session(model, small_images, class_names=CLASSES)


@pytest.fixture
def explorer(session):
    return Explorer(session)


def png_shape(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data))).shape


def test_first_view_shows_the_suggested_cut_of_the_last_layer(explorer, session):
    g = explorer.gallery
    cl = explorer.clusters
    assert explorer.layer == session.layers[-1]
    assert explorer.layer_slider.value == explorer.layer and explorer.layer_slider.options == tuple(explorer.layers)
    assert cl.k == g.k == len(g.counts) == len(g.colors) >= 1 and g.heats == []
    assert g.weights == sorted(g.weights, reverse=True)
    assert np.allclose(g.weights, cl.weights)
    assert g.counts == [len(m) for m in cl.members]
    assert g.colors == list(PALETTE[: cl.k])
    assert png_shape(g.base) == (48, 48, 3)
    # the maps travel as float32 numbers at feature resolution, exactly the cut's, to be drawn at input size
    h, w = cl.maps_lowres.shape[1:]
    assert g.map_shape == [h, w] and g.size == [48, 48]
    got = np.frombuffer(g.maps, dtype="<f4").reshape(cl.k, h, w)
    assert np.array_equal(got, cl.maps_lowres)
    assert g.cmap == "jet" and g.lut == render.colormap("jet").tobytes()
    # the layer's Grad-CAM too: at feature resolution, drawn as the maps are, it is the kernel's at input size
    lr = explorer.layer_result
    assert g.gradcam_shape == [h, w]
    cam = np.frombuffer(g.gradcam_map, dtype="<f4").reshape(h, w)
    assert np.array_equal(cam, lr.gradcam_lowres())
    assert np.allclose(upsample_minmax(torch.from_numpy(cam.copy())[None], (48, 48))[0], lr.gradcam(), atol=1e-5)
    assert explorer.k_slider.value == cl.k_cut == explorer.layer_result.suggested_k
    assert explorer.selected == 0 and g.selected == 0
    assert f"“{CLASSES[explorer.target]}”" in g.title


def test_prediction_and_target_options(explorer):
    h = explorer.header
    p = explorer.explanation.probabilities
    assert [row[0] for row in h.top] == list(np.argsort(-p)[:5])
    assert h.predicted == h.target == explorer.explanation.predicted
    values = [v for _, v in explorer.target_select.options]
    assert values == list(np.argsort(-p, kind="stable")) and explorer.target_select.value == h.target
    assert "(predicted)" in explorer.target_select.label


def test_layer_cut_and_recipe_changes_never_rerun_the_model(model, session):
    ex = Explorer(session)
    calls = Counter(model)
    rev = ex.gallery.revision
    for name in ex.layers:
        ex.set_layer(name)
        assert ex.gallery.title.startswith(name)
    ex.set_cut(k=2)
    ex.set_cut(threshold=float(ex.layer_result.heights[-1]) * 2)
    ex.set_cut()
    ex.set_recipe("paper")
    ex.set_layer(0)
    ex.set_recipe("fast")
    assert calls.calls == 0
    assert ex.gallery.revision > rev
    ex.set_target(2)  # a new class does run the model, once
    assert calls.calls == 1 and ex.target == 2
    ex.set_layer(-1)
    ex.set_target(2)
    assert calls.calls == 1


def test_cuts_by_k_height_and_suggestion(explorer):
    lr = explorer.layer_result
    n = lr.tree.n
    assert n >= 4
    explorer.set_cut(k=3)
    assert explorer.k == 3 == explorer.gallery.k == explorer.k_slider.value
    h = float(lr.tree.threshold_for(2))
    explorer.set_cut(threshold=h)
    assert explorer.k == 2 and explorer.threshold == pytest.approx(h)
    explorer.set_cut(threshold=float(lr.heights[-1]) * 1.01)
    assert explorer.k == 1
    explorer.set_cut(threshold=0.0)  # below every merge: more clusters than a gallery shows -> MAX_K
    assert explorer.k == min(n, MAX_K)
    explorer.set_cut()
    assert explorer.k == lr.suggested_k and explorer.suggest_button.disabled
    with pytest.raises(ValueError):
        explorer.set_cut(k=0)


def test_widget_tree_and_figure_are_updated_in_place(explorer):
    children = list(explorer.children)
    fig = explorer.dendrogram.figure
    n_traces = len(fig.data)
    gallery, detail, header = explorer.gallery, explorer.detail, explorer.header
    explorer.set_layer(0)
    explorer.set_cut(k=2)
    explorer.set_target(1)
    explorer.select_image(3)
    explorer.set_recipe("paper")
    assert list(explorer.children) == children
    assert explorer.gallery is gallery and explorer.detail is detail and explorer.header is header
    assert explorer.dendrogram.figure is fig and len(fig.data) == n_traces


def test_dendrogram_uses_k_plus_one_line_traces(explorer):
    explorer.set_cut(k=3)
    fig = explorer.dendrogram.figure
    lines = [tr for tr in fig.data[2:] if tr.x is not None and len(tr.x) > 0]  # skip the catcher and suggestion
    assert 1 <= len(lines) <= explorer.k + 1
    lr, cl = explorer.layer_result, explorer.clusters
    stubs = cluster_stubs(lr.linkage, cl.assignment, cl.threshold)[2]
    n_pieces = sum(int(np.isnan(np.asarray(tr.y, float)).sum()) for tr in lines)
    # every merge drawn once, plus one coloured leg per cluster up to the cut, pieces joined with gaps
    assert n_pieces == (lr.tree.n - 1) + len(stubs)
    assert set(stubs.tolist()) == set(range(cl.k))
    assert fig.layout.shapes[0].y0 == pytest.approx(explorer.threshold)
    # colours follow the gallery: cluster j's links are drawn with the gallery's colour j
    used = {tr.line.color for tr in lines}
    assert set(explorer.gallery.colors) <= used | {"#a0a7b0"}


def test_clicking_and_dragging_the_dendrogram_sets_the_cut(explorer):
    lr = explorer.layer_result
    h = float(lr.tree.threshold_for(2))
    explorer.dendrogram._emit(h)  # what a click on the tree sends
    assert explorer.k == 2
    h3 = float(lr.tree.threshold_for(3))
    explorer.dendrogram.figure.plotly_relayout({"shapes[0].y0": h3, "shapes[0].y1": h3})  # a drag of the line
    assert explorer.k == 3 and explorer.threshold == pytest.approx(h3)


def test_keys_from_the_browser(explorer):
    layers = explorer.layers
    explorer._on_header_msg(explorer.header, {"type": "key", "key": "ArrowLeft"}, [])
    assert explorer.layer == layers[-2]
    explorer._on_header_msg(explorer.header, {"type": "key", "key": "ArrowRight"}, [])
    assert explorer.layer == layers[-1]
    explorer._on_header_msg(explorer.header, {"type": "key", "key": "ArrowRight"}, [])  # already the last
    assert explorer.layer == layers[-1]
    k = explorer.clusters.k_cut
    explorer._on_header_msg(explorer.header, {"type": "key", "key": "ArrowDown"}, [])
    assert explorer.clusters.k_cut == k + 1
    explorer._on_header_msg(explorer.header, {"type": "key", "key": "ArrowUp"}, [])
    assert explorer.clusters.k_cut == k


def test_controls_drive_the_explorer(explorer):
    explorer.layer_slider.value = explorer.layers[0]
    assert explorer.layer == explorer.layers[0] and explorer.gallery.title.startswith(explorer.layers[0])
    explorer.k_slider.value = 2
    assert explorer.k == 2
    explorer.gallery.selected = 1  # a click on the second card
    assert explorer.selected == 1 and explorer.detail.title.startswith("Cluster map 2 of 2")
    explorer.target_select.value = 4
    assert explorer.target == 4 and explorer.header.target == 4
    explorer.recipe_select.value = "paper"
    assert explorer.recipe == "paper" and explorer.layer_result.recipe == "paper"
    explorer.detail.cmap = "gray"
    lut = np.frombuffer(explorer.gallery.lut, dtype=np.uint8).reshape(256, 3)
    assert explorer.gallery.cmap == "gray" and np.array_equal(lut[:, 0], lut[:, 1])  # grey maps
    explorer._on_header_msg(explorer.header, {"type": "image", "index": 2}, [])
    assert explorer.index == 2 and explorer.header.index == 2


def test_detail_view(explorer):
    explorer.select_cluster(0)
    d = explorer.detail
    cl = explorer.clusters
    assert len(d.reveals) == 6 and all(png_shape(r) == (48, 48, 3) for r in d.reveals)
    assert d.weight == pytest.approx(cl.weights[0]) and d.n_maps == len(cl.members[0])
    members = [c for c, _ in d.members]
    assert sorted(members) == sorted(cl.members[0].tolist())
    w = explorer.layer_result.channel_weights
    assert [x for _, x in d.members] == sorted((float(w[c]) for c in members), reverse=True)
    assert -1.0 <= d.gradcam_overlap <= 1.0
    with pytest.raises(IndexError):
        explorer.select_cluster(99)


def test_detail_shows_the_member_channels_feature_maps(explorer):
    """The heaviest members' own feature maps, at the layer's resolution, min-max scaled, heaviest first."""
    from inv_widgets import render

    explorer.select_cluster(0)
    d, lr = explorer.detail, explorer.layer_result
    members = [c for c, _ in d.members]
    assert len(d.member_maps) == min(12, len(members)) >= 1
    for c, data in list(zip(members, d.member_maps))[:4]:
        fm = lr.feature_maps[list(lr.kept).index(c)]
        assert png_shape(data) == (*fm.shape, 3)
        span = fm.max() - fm.min()
        want = render.apply_cmap((fm - fm.min()) / span if span > 0 else np.zeros_like(fm), "viridis")
        got = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert np.abs(got.astype(int) - want).max() <= 3


def test_selection_follows_the_cluster_identity_across_cuts(explorer):
    explorer.set_cut(k=3)
    key = explorer.clusters.key(2)
    explorer.select_cluster(2)
    explorer.set_cut(k=3)  # same cut: same selection
    assert explorer.clusters.key(explorer.selected) == key


def test_images_travel_as_binary_buffers_not_base64(explorer):
    state, paths, buffers = _remove_buffers(explorer.gallery.get_state())
    text = json.dumps(state)
    assert len(buffers) >= 4  # image, maps, Grad-CAM, colour table
    assert explorer.gallery.maps in [bytes(b) for b in buffers]
    assert "iVBOR" not in text  # base64 PNG signature
    data = json.dumps({k: v for k, v in state.items() if k not in ("_esm", "_css")})  # the front-end code aside
    assert len(data) < 5_000
    state, _, buffers = _remove_buffers(explorer.detail.get_state())
    assert len(buffers) >= 8 and "iVBOR" not in json.dumps(state)


def test_errors_show_in_the_widget_and_leave_it_usable(explorer):
    before = (explorer.index, explorer.layer, explorer.k, explorer.gallery.revision)
    explorer._on_header_msg(explorer.header, {"type": "image", "index": 999}, [])
    assert "out of range" in explorer.header.error and "999" in explorer.header.error
    assert (explorer.index, explorer.layer, explorer.k, explorer.gallery.revision) == before
    assert explorer.header.busy is False
    explorer._on_header_msg(explorer.header, {"type": "upload", "name": "notes.txt"}, [b"plain text"])
    assert "notes.txt is not an image" in explorer.header.error
    explorer._on_header_msg(explorer.header, {"type": "key", "key": "ArrowLeft"}, [])
    assert explorer.header.error == "" and explorer.layer == explorer.layers[-2]


def test_upload_and_add_image(explorer, session):
    n = len(session)
    buf = io.BytesIO()
    Image.new("RGB", (64, 40), (250, 10, 10)).save(buf, "PNG")
    explorer._on_header_msg(explorer.header, {"type": "upload", "name": "red.png"}, [memoryview(buf.getvalue())])
    assert explorer.header.error == ""
    assert len(session) == n + 1 and explorer.index == n
    assert explorer.header.n_images == n + 1 and n in explorer.header.thumb_indices
    assert "red.png" in explorer.header.thumb_captions
    i = explorer.add_image(np.zeros((48, 48, 3), np.uint8), select=False)
    assert i == n + 1 and explorer.index == n


def test_progress_is_reported_while_explaining(session):
    ex = Explorer(session)
    seen = []
    ex.header.observe(lambda ch: seen.append((ch.name, ch.new)), ["busy", "progress", "status"])
    ex.select_image(4)
    assert ("busy", True) in seen and ("busy", False) in seen
    assert any(name == "status" and "explaining image 4" in str(v) for name, v in seen)
    assert ex.header.busy is False


def test_labels_hook(session):
    def provider(keys):
        return [[(f"{k.layer}-part", 2.0), ("edge", 1.0)] for k in keys]

    ex = Explorer(session, labels=provider)
    assert ex.gallery.labels[0] == [[f"{ex.layer}-part", 2.0], ["edge", 1.0]]
    assert ex.detail.labels[0][0] == f"{ex.layer}-part"

    def broken(keys):
        raise RuntimeError("database is down")

    ex2 = Explorer(session, labels=broken)  # a failing store does not break the Explorer
    assert ex2.gallery.labels == [[] for _ in range(ex2.gallery.k)] and ex2.gallery.k >= 1


def test_store_labels_adapter():
    class Store:
        def __init__(self):
            self.asked = []

        def top_labels_many(self, keys, n):
            self.asked.append(len(keys))
            return [[("wheel", 3.0)] for _ in keys]

    s = Store()
    assert store_labels(s)(["a", "b"]) == [[("wheel", 3.0)], [("wheel", 3.0)]] and s.asked == [2]
    with pytest.raises(TypeError, match="top_labels"):
        store_labels(object())


def test_explorer_with_the_real_label_store(session, tmp_path):
    store = inv.LabelStore(tmp_path / "labels.sqlite")
    ex = Explorer(session, store=store)
    assert ex.gallery.labels == [[] for _ in range(ex.gallery.k)]  # no labels yet, no error
    assert ex.last_error is None


def test_shortcut_constructor_and_bad_arguments(model):
    ex = Explorer(model, _images(2), class_names=CLASSES)
    assert len(ex.session) == 2 and ex.session.classes == CLASSES
    with pytest.raises(TypeError, match="session"):
        Explorer(ex.session, _images(1))
    with pytest.raises(ValueError, match="colour map"):
        Explorer(ex.session, cmap="rainbow")
    with pytest.raises(ValueError, match="recipe"):
        Explorer(ex.session, recipe="nope")
    with pytest.raises(KeyError, match="layer"):
        Explorer(ex.session, layer="nope")


def test_alpha_is_shared_by_gallery_and_detail(explorer):
    explorer.alpha = 0.8
    assert explorer.gallery.alpha == explorer.detail.alpha == explorer.compare.alpha == 0.8
    with pytest.raises(ValueError):
        explorer.alpha = 2


def test_demo_explorer():
    model, data = inv.demo.load(n=4)
    ex = inv.Explorer(inv.Session(model, data))
    assert ex.layers == [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert ex.header.truth == data.classes[data[0][1]]
    # the picker: the current image at once, the others once a view has rendered (it sends "ready")
    assert ex.header.thumbs[0] and not any(ex.header.thumbs[1:])
    ex._on_header_msg(ex.header, {"type": "ready"}, [])
    assert all(ex.header.thumbs) and len(ex.header.thumbs) == 4
    assert ex.header.thumb_captions[0] == f"#0 {data.classes[data[0][1]]}"
    assert 1 <= ex.k <= MAX_K


def test_dendrogram_is_made_after_the_first_view(session):
    ex = Explorer(session)
    assert ex._dendrogram is None  # plotly.js (5 MB) must not delay the first gallery
    ex.set_cut(k=2)
    ex._on_header_msg(ex.header, {"type": "ready"}, [])
    fig = ex._dendrogram.figure
    assert ex._dendro_box.children == (fig,)
    assert fig.layout.shapes[0].y0 == pytest.approx(ex.threshold)  # drawn with the current cut
    ex._on_header_msg(ex.header, {"type": "ready"}, [])  # a second view: same figure
    assert ex.dendrogram.figure is fig


def test_what_the_explorer_shows_is_a_value(explorer):
    """``explorer.view`` is the resolved state (widgets/explorer/state.py) the views were drawn from."""
    view = explorer.view
    assert view.explanation is explorer.explanation and view.clusters is explorer.clusters
    assert view.selection.layer == explorer.layer and view.selection.target == explorer.target
    explorer.set_cut(k=2)
    assert explorer.view is not view and view.cut.mode == "suggested"  # a new value; the old one as it was
    assert explorer.view.cut.mode == "k" and explorer.view.cut.value == 2
    with pytest.raises(ValueError, match="k must be at least 1"):
        Explorer(explorer.session, k=0)


def test_while_the_person_looks_the_next_keys_cuts_are_worked_out_ahead(explorer, monkeypatch):
    from inv_widgets.engine.explanation import LayerResult
    from inv_widgets.widgets.explorer.state import Cut

    explorer.set_layer(explorer.layers[1])  # a layer with neighbours on both sides
    view = explorer._view
    made = []
    real = LayerResult._make_cut
    monkeypatch.setattr(LayerResult, "_make_cut", lambda self, *a: made.append(self.name) or real(self, *a))
    guesses = explorer._ahead()
    ks = [k for k in (view.moved_k(1, MAX_K), view.moved_k(-1, MAX_K)) if k]
    assert ks and len(guesses) == 2 + len(ks)  # the layers on either side, one cluster more and one fewer
    for guess in guesses:
        guess()
    assert view.neighbour_layer(-1) in made  # never shown before (the last layer was, and is cached)
    made.clear()
    explorer._go(layer=view.neighbour_layer(-1))  # the arrow keys: their cuts are already made
    explorer._go(layer=view.layer_name)
    explorer._go(layer=view.neighbour_layer(1))
    explorer._go(layer=view.layer_name)
    explorer._go(cut=Cut.k(ks[0]))
    assert made == []
