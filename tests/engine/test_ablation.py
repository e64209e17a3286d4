"""Ablation and deletion / insertion curves, checked against plain forward passes written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import inv_widgets as inv
from inv_widgets.engine.ablation import ModelProbe, pixel_order


def masked_logits(model, x, layer, channels):
    """The model's logits for one input with ``channels`` of ``layer`` zeroed at its output: a plain forward
    pass with a hook of its own (what ablation must reproduce, one copy at a time)."""
    module = dict(model.named_modules())[layer]

    def zero(mod, inputs, out):
        out = out.clone()
        out[:, list(channels)] = 0.0
        return out

    h = module.register_forward_hook(zero)
    try:
        with torch.no_grad():
            return model(x[None])[0].double()
    finally:
        h.remove()


def check_layer(model, x, exp, name, groups):
    with torch.no_grad():
        plain = model(x[None])[0].double()
    t = exp.target
    ab = exp[name].ablation(groups)
    n_channels = exp[name].n_channels
    for j, g in enumerate(groups):
        want = masked_logits(model, x, name, g)
        assert ab.logit_drop[j] == pytest.approx(float(plain[t] - want[t]), abs=2e-4, rel=1e-4)
        p0, p1 = torch.softmax(plain, 0)[t], torch.softmax(want, 0)[t]
        assert ab.probability_drop[j] == pytest.approx(float(p0 - p1), abs=1e-5)
    whole = masked_logits(model, x, name, range(n_channels))
    assert ab.layer_logit_drop == pytest.approx(float(plain[t] - whole[t]), abs=2e-4, rel=1e-4)
    assert ab.logit == pytest.approx(float(plain[t]), abs=1e-4)
    assert list(ab.sizes) == [len(g) for g in groups]
    return ab


@pytest.mark.slow
def test_cluster_ablation_equals_plain_masked_forwards_on_the_demo(demo):
    """At the convolution's output (check_layer masks there) a published map's ablation zeroes its members;
    tests/engine/test_points.py checks the activation point, tests/engine/test_contrast.py a Grad-CAM map's
    channels."""
    model, data = demo
    session = inv.Session(model, data, layer_point="conv", maps="published")
    exp = session.explain(3)
    for name in exp.layers:
        cl = exp[name].cut()
        ab = cl.ablation()
        assert cl.ablation() is ab  # made once per cut
        assert len(ab) == cl.k
        check_layer(model, session.input(3), exp, name, cl.members)
        np.testing.assert_allclose(ab.share, 100 * ab.logit_drop / ab.layer_logit_drop)
        frame = ab.to_frame()
        assert list(frame.columns) == ["map", "channels", "logit_drop", "probability_drop", "share"]
        assert frame.channels.tolist() == [len(m) for m in cl.members]
    # the heaviest map of the last layer matters for the class: its channels hold most of its evidence
    assert exp[exp.layers[-1]].cut().ablation().logit_drop[0] > 0


@pytest.mark.slow
def test_ablation_after_a_skip_connection_and_before_a_concatenation(tiny_cnn, tiny_image):
    """TinyCNN adds a batch-1 tensor after conv2 (broadcast: copies after the layer work) and concatenates
    one before dw (the copies cannot pass: the input is copied instead); both give the plain result."""
    session = inv.Session(tiny_cnn, [tiny_image])
    exp = session.explain(0)
    rng = np.random.default_rng(0)
    for name in exp.layers:
        c = exp[name].n_channels
        groups = [rng.choice(c, size=k, replace=False) for k in (1, 2, c // 2)] + [np.arange(c)]
        check_layer(tiny_cnn, session.input(0), exp, name, groups)
    probe = exp.probe
    assert probe._expand_ok["conv2"] is True  # the skip connection broadcasts over the copies
    assert probe._expand_ok["dw"] is False  # the concatenation with the batch-1 tensor does not


class HardBatch(nn.Module):
    """A head that flattens with a hard-coded batch of one (copies after the conv cannot pass)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 8 * 8, 4)

    def forward(self, x):
        a = torch.relu(self.conv(x))
        if x.shape[0] == 1:
            return self.fc(a.reshape(1, -1))  # wrong for a larger batch after the layer: caught by the check
        return self.fc(a.reshape(x.shape[0], -1))


def test_a_model_that_hides_a_batch_size_is_copied_whole():
    torch.manual_seed(0)
    model = HardBatch().eval()
    x = torch.rand(3, 8, 8)
    session = inv.Session(model, [x])
    exp = session.explain(0)
    check_layer(model, session.input(0), exp, "conv", [[0], [1, 2], [3, 4, 5]])
    assert exp.probe._expand_ok["conv"] is False


def test_ablation_leaves_the_model_as_it_was(tiny_cnn, tiny_image):
    session = inv.Session(tiny_cnn, [tiny_image])
    exp = session.explain(0)
    tiny_cnn.train()
    before = {n: m.training for n, m in tiny_cnn.named_modules()}
    exp["conv1"].cut(k=2).ablation()
    exp.curves(np.random.default_rng(0).random((1, 32, 32)), steps=3)
    assert {n: m.training for n, m in tiny_cnn.named_modules()} == before
    assert all(p.grad is None for p in tiny_cnn.parameters())
    assert not any(m._forward_hooks for m in tiny_cnn.modules())
    tiny_cnn.eval()


def test_bad_groups_and_no_model():
    torch.manual_seed(0)
    model = HardBatch().eval()
    exp = inv.Session(model, [torch.rand(3, 8, 8)]).explain(0)
    with pytest.raises(IndexError, match="not one of the layer's 6 channels"):
        exp["conv"].ablation([[6]])
    import dataclasses

    bare = dataclasses.replace(exp, probe=None, _results={})  # as build_explanations makes it without probes
    with pytest.raises(ValueError, match="no model attached"):
        bare["conv"].ablation([[0]])
    with pytest.raises(ValueError, match="no model attached"):
        bare.curves(np.zeros((1, 8, 8)))


def test_pixel_order_ranks_the_most_salient_first_and_breaks_ties_alike():
    s = np.zeros((2, 4, 4))
    s[0, 0, 0], s[0, 3, 3] = 2.0, 1.0
    s[1] = s[0]
    r = pixel_order(s)
    assert sorted(r[0]) == list(range(16))
    assert r[0, 0] == 0 and r[0, 15] == 1
    assert (r[0] == r[1]).all()  # the same maps, the same order of their ties
    assert not (np.diff(r[0][1:15]) == 1).all()  # flat pixels not taken row by row


def test_curves_equal_plain_forwards_of_deleted_and_inserted_images(small_cnn):
    x = torch.rand(3, 48, 48, generator=torch.Generator().manual_seed(0))
    fill = torch.zeros(3, 48, 48)
    target = 2
    probe = ModelProbe(small_cnn, x, target, fill=lambda: fill)
    sal = np.random.default_rng(1).random((2, 48, 48))
    c = probe.curves(sal, steps=4)
    np.testing.assert_allclose(c.fractions, [0, 0.25, 0.5, 0.75, 1.0])
    ranks = pixel_order(sal)

    def p(img):
        with torch.no_grad():
            return torch.softmax(small_cnn(img[None]), 1)[0, target].item()

    for i in range(2):
        for s, f in enumerate(c.fractions):
            top = torch.from_numpy(ranks[i] < round(f * 48 * 48)).reshape(1, 48, 48)
            assert c.deletion[i, s] == pytest.approx(p(torch.where(top, fill, x)), abs=1e-6)
            assert c.insertion[i, s] == pytest.approx(p(torch.where(top, x, fill)), abs=1e-6)
    np.testing.assert_allclose(c.deletion_area, np.trapezoid(c.deletion, c.fractions, axis=1))
    # uneven shares: the same points where they coincide
    c2 = probe.curves(sal, fractions=[0, 0.25, 0.3, 1.0])
    np.testing.assert_allclose(c2.deletion[:, [0, 1, 3]], c.deletion[:, [0, 1, 4]], atol=1e-6)
    with pytest.raises(ValueError, match="increase from 0 to 1"):
        probe.curves(sal, fractions=[0, 0.5])
    with pytest.raises(ValueError, match="like the input"):
        probe.curves(np.zeros((1, 8, 8)))


@pytest.mark.slow
def test_a_faithful_map_deletes_faster_than_its_opposite(demo):
    """On the demo, deleting the most salient pixels of the last layer's Grad-CAM first takes the class away
    sooner than deleting its least salient pixels first (and inserting them brings it back sooner)."""
    model, data = demo
    exp = inv.Session(model, data).explain(0)
    gc = exp[exp.layers[-1]].gradcam()
    c = exp.curves(np.stack([gc, 1.0 - gc]), steps=10)
    assert c.deletion_area[0] < c.deletion_area[1]
    assert c.insertion_area[0] > c.insertion_area[1]
    # the fill is the demo's own background: everything deleted is the image without its object
    assert c.deletion[0, -1] == pytest.approx(c.insertion[0, 0])
    assert c.deletion[0, -1] < 0.5 < c.deletion[0, 0]
    cl = exp[exp.layers[-1]].cut()
    cc = cl.curves(0, steps=5)
    assert cl.curves(0, steps=5) is cc and len(cc) == 2
    with pytest.raises(IndexError):
        cl.curves(cl.k)


def test_session_fill_is_the_background_or_a_blur(demo, small_images):
    model, data = demo
    session = inv.Session(model, data)
    np.testing.assert_allclose(session.fill(2).numpy(), data.to_tensor(data.background(2)).numpy(), atol=1e-6)
    s2 = inv.Session(model, [data.image(2)], transform=data.transform)
    blurred = s2.fill(0)
    assert blurred.shape == s2.input(0).shape
    assert float(blurred.std()) < float(s2.input(0).std())  # detail gone
