"""The Explorer's compare view without a browser: LIME, KernelSHAP and Grad-CAM on demand, in a worker thread,
cached per image and class, stoppable, and never in the way of the rest of the Explorer."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from nets import CLASS_NAMES as CLASSES
from PIL import Image
from torch import nn

import inv_widgets as inv
from inv_widgets.concepts.baselines import attribution_maps
from inv_widgets.widgets import Explorer
from inv_widgets.widgets.explorer import compare as compare_module

FAST = dict(n_samples=24, n_segments=12, seed=0)


class Gate:
    """Holds the worker after its first batch of model evaluations (in its progress report, where it holds no
    lock) until the test opens it: what the Explorer does meanwhile is deterministic."""

    def __init__(self, monkeypatch):
        self.reached = threading.Event()
        self.open = threading.Event()
        self.open.set()
        real = compare_module.attribution_maps

        def held(*args, progress=None, **kwargs):
            def report(done, total, message):
                progress(done, total, message)
                if done > 0 and not self.open.is_set():
                    self.reached.set()
                    assert self.open.wait(60), "the test never opened the gate"

            return real(*args, progress=report, **kwargs)

        monkeypatch.setattr(compare_module, "attribution_maps", held)

    def hold(self):
        self.reached.clear()
        self.open.clear()

    def wait_reached(self):
        assert self.reached.wait(60), "the worker never reached its first batch"


@pytest.fixture
def gated(small_cnn, small_images, monkeypatch):
    ex = Explorer(inv.Session(small_cnn, small_images, class_names=CLASSES))
    ex.compare.options.update(FAST)
    return ex, Gate(monkeypatch)


def png_shape(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data))).shape


def test_compare_view_is_offered_then_computed_on_demand(gated):
    ex, _ = gated
    c = ex.compare
    assert c in ex.children and c.state == "idle" and c.heats == [] and c.maps is None  # nothing yet
    assert ex.explanation.target_name in c.title
    c.compute()
    assert c.wait(60) and c.state == "done" and c.message == ""
    assert c.captions == ["LIME", "KernelSHAP", "Grad-CAM"] and len(c.heats) == 3
    assert all(png_shape(h) == (48, 48, 3) for h in c.heats) and png_shape(c.base) == (48, 48, 3)
    ref = attribution_maps(ex.session, ex.index, ex.target, **FAST)  # the same maps, from the cache
    for m in ("lime", "kernelshap", "gradcam"):
        np.testing.assert_array_equal(c.maps[m], ref[m])
    assert c.done == c.total > 0


def test_the_explorer_answers_while_the_baselines_run(gated):
    ex, gate = gated
    c = ex.compare
    gate.hold()
    c.compute()
    gate.wait_reached()  # the worker is between two batches of perturbed images
    assert c.state == "running" and 0 < c.done < c.total
    ex.set_layer(0)  # the rest of the Explorer works meanwhile: the worker holds the model only per batch
    ex.set_recipe("spatial")
    ex.set_cut(k=2)
    ex.select_cluster(1)
    assert ex.layer == ex.layers[0] and ex.recipe == "spatial" and ex.k == 2 and ex.selected == 1
    assert c.state == "running"  # same image and class: the run goes on
    gate.open.set()
    assert c.wait(60) and c.state == "done"


def test_stop_and_compute_again(gated):
    ex, gate = gated
    c = ex.compare
    gate.hold()
    c.compute()
    gate.wait_reached()
    c._on_msg(c, {"type": "cancel"}, [])  # the browser's Stop button
    gate.open.set()
    assert c.wait(60) and c.state == "stopped" and c.heats == [] and "Stopped" in c.message
    c._on_msg(c, {"type": "compute"}, [])  # the browser's Compute button
    assert c.wait(60) and c.state == "done" and len(c.heats) == 3


def test_another_image_stops_the_run_and_cached_maps_come_back_at_once(gated):
    ex, gate = gated
    c = ex.compare
    c.compute()
    assert c.wait(60) and c.state == "done"
    first = {k: v.copy() for k, v in c.maps.items()}
    ex.select_image(1)
    assert c.state == "idle" and c.heats == []
    gate.hold()
    c.compute()
    gate.wait_reached()
    ex.select_image(0)  # back: its maps at once, and the run for image 1 stops
    assert c.state == "done" and len(c.heats) == 3
    for k in first:
        np.testing.assert_array_equal(c.maps[k], first[k])
    gate.open.set()
    assert c.wait(60)
    assert c.state == "done" and ex.index == 0  # the stopped run did not touch the view
    ex.select_image(1)
    assert c.state == "idle"  # nothing was cached for image 1


def test_another_class_is_another_comparison(gated):
    ex, _ = gated
    c = ex.compare
    c.compute()
    assert c.wait(60)
    other = next(i for i in range(len(CLASSES)) if i != ex.target)
    ex.set_target(other)
    assert c.state == "idle" and CLASSES[other] in c.title


def test_an_error_is_shown_in_the_view(small_cnn, small_images):
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = small_cnn

        def forward(self, x):
            if x.shape[0] > 1:
                raise RuntimeError("out of memory (simulated)")
            return self.inner(x)

    ex = Explorer(inv.Session(Broken(), small_images, class_names=CLASSES))
    ex.compare.options.update(FAST)
    ex.compare.compute()
    assert ex.compare.wait(60)
    assert ex.compare.state == "error" and "out of memory (simulated)" in ex.compare.message
    assert isinstance(ex.compare.last_error, RuntimeError)


def test_colour_map_follows_the_explorer(gated):
    ex, _ = gated
    c = ex.compare
    c.compute()
    assert c.wait(60)
    jet = list(c.heats)
    ex.set_cmap("gray")
    assert c.heats != jet and len(c.heats) == 3
    gray = np.asarray(Image.open(io.BytesIO(c.heats[0])))
    assert (gray[..., 0] == gray[..., 1]).all()


def test_sample_counts_are_explorer_options(small_cnn, small_images):
    session = inv.Session(small_cnn, small_images, class_names=CLASSES)
    ex = Explorer(session, baselines=dict(n_samples=20, n_segments=10, seed=3))
    assert ex.compare.options == dict(n_samples=20, n_segments=10, seed=3)
    assert "20 model evaluations" in ex.compare.settings and "10 superpixels" in ex.compare.settings
    ex.compare.compute()
    assert ex.compare.wait(60) and ex.compare.state == "done"
    ref = attribution_maps(session, ex.index, ex.target, n_samples=20, n_segments=10, seed=3)
    np.testing.assert_array_equal(ex.compare.maps["lime"], ref["lime"])
    with pytest.raises(ValueError, match="unknown baselines setting.*samples"):
        Explorer(session, baselines=dict(samples=20))
    with pytest.raises(ValueError, match="n_samples must be an integer >= 3"):
        Explorer(session, baselines=dict(n_samples=1))
