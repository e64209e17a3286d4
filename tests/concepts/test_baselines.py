"""LIME, KernelSHAP and Grad-CAM beside INV, on a tiny model whose answer is known: the score of class 0 reads
only the red square in the top-left corner, the score of class 1 only the green outside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import inv_widgets as inv
from inv_widgets.concepts.baselines import METHODS, Cancelled, attribution_maps, superpixels

SIZE = 48
SQUARE = (slice(4, 22), slice(4, 22))


class RegionNet(nn.Module):
    """A 1x1 convolution copies red and green; logit 0 is the mean red inside SQUARE, logit 1 the mean green
    outside it. Counts the images it sees."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.weight[1, 1] = 1.0
        region = torch.zeros(SIZE, SIZE)
        region[SQUARE] = 1.0
        self.register_buffer("region", region)
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        a = torch.relu(self.conv(x))
        red = (a[:, 0] * self.region).mean((1, 2))
        green = (a[:, 1] * (1 - self.region)).mean((1, 2))
        return torch.stack([red, green], 1) * 10


def picture():
    rng = np.random.default_rng(0)
    a = np.zeros((SIZE, SIZE, 3), np.uint8)
    a[..., 1] = 120 + rng.integers(0, 40, (SIZE, SIZE))  # textured green everywhere
    a[SQUARE] = (230, 20, 20)
    a[30:40, 30:40] = (20, 20, 230)  # a blue patch the model ignores
    return Image.fromarray(a)


@pytest.fixture
def region_session():
    model = RegionNet().eval()
    return inv.Session(model, [picture()], class_names=["red", "green"])


def inside(m):
    mask = np.zeros(m.shape, bool)
    mask[SQUARE] = True
    return m[mask].mean(), m[~mask].mean()


def test_maps_point_at_what_the_score_reads(region_session):
    maps = attribution_maps(region_session, 0, target="red", n_samples=96, n_segments=25)
    assert list(maps) == list(METHODS)
    for name, m in maps.items():
        assert m.shape == (SIZE, SIZE) and m.dtype == np.float32, name
        assert m.min() == 0.0 and m.max() == 1.0, name
        on, off = inside(m)
        assert on > 0.5 > off + 0.3, (name, on, off)
    # the other class reads the outside: the maps turn around
    green = attribution_maps(region_session, 0, target=1, methods=("lime", "kernelshap"), n_samples=96, n_segments=25)
    for name, m in green.items():
        on, off = inside(m)
        assert off > on, (name, on, off)


def test_same_seed_same_maps_cached_and_other_seed_resamples(region_session):
    model = region_session.model
    a = attribution_maps(region_session, 0, methods=["lime"], n_samples=40, n_segments=20, seed=3)
    seen = model.seen
    b = attribution_maps(region_session, 0, methods=["lime"], n_samples=40, n_segments=20, seed=3)
    assert model.seen == seen  # cached: the model did not run again
    np.testing.assert_array_equal(a["lime"], b["lime"])
    b["lime"][:] = 0  # the caller's copy, not the cache
    assert attribution_maps(region_session, 0, methods=["lime"], n_samples=40, n_segments=20, seed=3)["lime"].max() == 1
    fresh = inv.Session(RegionNet().eval(), [picture()], class_names=["red", "green"])
    c = attribution_maps(fresh, 0, methods=["lime"], n_samples=40, n_segments=20, seed=3)
    np.testing.assert_array_equal(a["lime"], c["lime"])  # deterministic across sessions
    d = attribution_maps(region_session, 0, methods=["lime"], n_samples=40, n_segments=20, seed=4)
    assert model.seen == seen + 40  # 40 samples, one model evaluation each
    assert not np.array_equal(a["lime"], d["lime"])


def test_global_generator_and_model_mode_are_left_alone(region_session):
    model = region_session.model.train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    attribution_maps(region_session, 0, methods=["kernelshap"], n_samples=20, n_segments=10)
    assert torch.equal(torch.rand(3), expected)
    assert model.training


def test_progress_counts_model_evaluations_and_can_stop(region_session):
    calls = []
    attribution_maps(region_session, 0, n_samples=64, n_segments=16, progress=lambda d, t, m: calls.append((d, t, m)))
    done = [d for d, _, _ in calls]
    assert done == sorted(done) and calls[-1][0] == calls[-1][1] == 2 * 64 + 1
    assert any("KernelSHAP" in m for _, _, m in calls) and any("Grad-CAM" in m for _, _, m in calls)

    def stop(d, t, m):
        if d >= 32:
            raise Cancelled()

    with pytest.raises(Cancelled):
        attribution_maps(region_session, 0, methods=["kernelshap"], n_samples=200, n_segments=16, progress=stop)
    seen = region_session.model.seen
    attribution_maps(region_session, 0, methods=["kernelshap"], n_samples=40, n_segments=16)
    assert region_session.model.seen > seen  # nothing was cached from the stopped run


def test_bad_arguments_are_named(region_session):
    with pytest.raises(ValueError, match="lime"):
        attribution_maps(region_session, 0, methods=["shap"])
    with pytest.raises(ValueError, match="n_samples"):
        attribution_maps(region_session, 0, n_samples=1)
    with pytest.raises(ValueError, match="n_segments"):
        attribution_maps(region_session, 0, n_segments=0)
    with pytest.raises(IndexError):
        attribution_maps(region_session, 5)
    with pytest.raises(ValueError, match="unknown class"):
        attribution_maps(region_session, 0, target="blue")


def test_superpixels_are_numbered_without_gaps():
    seg = superpixels(np.asarray(picture()), 20)
    assert seg.shape == (SIZE, SIZE) and seg.min() == 0
    assert np.array_equal(np.unique(seg), np.arange(seg.max() + 1))
    assert seg.max() + 1 >= 5


def test_cached_maps_answer_without_work(region_session):
    from inv_widgets.concepts.baselines import cached_maps

    model = region_session.model
    assert cached_maps(region_session, 0, methods=["lime", "gradcam"], n_samples=30, n_segments=12) is None
    seen = model.seen
    got = attribution_maps(region_session, 0, methods=["lime", "gradcam"], n_samples=30, n_segments=12)
    hit = cached_maps(region_session, 0, methods=["lime", "gradcam"], n_samples=30, n_segments=12)
    assert model.seen == seen + 30 and list(hit) == ["lime", "gradcam"]
    for m in got:
        np.testing.assert_array_equal(hit[m], got[m])
    assert cached_maps(region_session, 0, methods=["lime"], n_samples=31, n_segments=12) is None  # other settings
    assert model.seen == seen + 30


class _AuxAndLogits(nn.Module):
    """RegionNet's logits under the key "logits" of a dict, beside an auxiliary output that comes first."""

    def __init__(self):
        super().__init__()
        self.net = RegionNet()

    def forward(self, x):
        return {"aux": x.mean((2, 3)), "logits": self.net(x)}


def test_lime_and_kernelshap_read_the_output_the_session_chooses(region_session):
    """The baselines call the model through the session's runner: Session(output=...) holds for them too (they used
    to take the model's first output, here the auxiliary one)."""
    chosen = inv.Session(_AuxAndLogits().eval(), [picture()], class_names=["red", "green"], output="logits")
    for method in ("lime", "kernelshap"):
        got = attribution_maps(chosen, 0, target="red", methods=(method,), n_samples=64, n_segments=16)[method]
        want = attribution_maps(region_session, 0, target="red", methods=(method,), n_samples=64, n_segments=16)[method]
        np.testing.assert_allclose(got, want, atol=1e-6)
