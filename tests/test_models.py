"""Models as a demanding user brings them (issue 14): 1 x 1 layers (item 4), block layers of inception-style
networks and transformers (10), several outputs (6), float16 and bfloat16 weights (7), layer choices (11)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import inv_widgets as inv
from inv_widgets.engine import find_layers
from inv_widgets.engine.maps import upsample_minmax


def _x(size=64, seed=0):
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


# ---- item 4: layers with no spatial extent ---------------------------------------------------------------


@pytest.fixture(scope="module")
def mobilenet():
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(weights=None).eval()


def test_1x1_feature_maps_are_left_out_by_default(mobilenet):
    se = [n for n, m in mobilenet.named_modules() if n.endswith((".fc1", ".fc2"))]
    assert len(se) == 18 and len(find_layers(mobilenet)) == 52
    s = inv.Session(mobilenet, [_x()])
    assert len(s.layers) == 52 - 18 and not set(se) & set(s.layers)
    exp = s.explain(0, lazy=True)
    assert exp.layers == s.layers
    assert all(exp[n].shape[0] * exp[n].shape[1] > 1 for n in exp.layers)


def test_a_named_1x1_layer_is_explained_and_its_flat_maps_are_not_stretched(mobilenet):
    se = "features.1.block.1.fc2"
    exp = inv.explain(mobilenet, _x(), layers=[se, "features.0.0"])
    assert exp.layers == ["features.0.0", se] and exp[se].shape == (1, 1)
    cl = exp[se].cut()
    assert cl.k >= 1 and float(np.abs(cl.maps).max()) == 0.0  # nothing to show: zeros, not noise in [0, 1]
    assert float(np.abs(exp[se].gradcam()).max()) == 0.0
    assert float(exp["features.0.0"].cut().maps.max()) == pytest.approx(1.0)


def test_a_map_flat_to_rounding_is_zeros_and_a_faint_map_is_stretched():
    flat = torch.full((1, 4, 4), 1000.0)
    flat[0, 1, 2] = torch.nextafter(torch.tensor(1000.0), torch.tensor(2000.0))
    assert float(upsample_minmax(flat, (8, 8)).max()) == 0.0
    faint = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0)) * 1e-20
    up = upsample_minmax(faint, (8, 8))
    assert float(up.min()) == 0.0 and float(up.max()) == pytest.approx(1.0)


# ---- item 10: blocks --------------------------------------------------------------------------------------


def test_blocks_of_googlenet_are_its_inception_modules_and_aux_heads_are_left_out():
    torch.manual_seed(0)
    g = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).eval()
    blocks = find_layers(g, "blocks")
    assert [b for b in blocks if b.startswith("inception")] == [
        "inception3a",
        "inception3b",
        "inception4a",
        "inception4b",
        "inception4c",
        "inception4d",
        "inception4e",
        "inception5a",
        "inception5b",
    ]
    assert not any(".branch" in b for b in blocks)
    s = inv.Session(g, [_x(96)], layer_mode="blocks")
    assert s.layers == ["conv1", "conv2", "conv3"] + blocks[3:12]  # aux1, aux2 do not run in eval mode
    assert not any(n.startswith("aux") for n in inv.Session(g, [_x(96)]).layers)  # conv mode: the same
    assert s.explain(0, lazy=True).layers == s.layers


def test_blocks_of_inception_v3_and_resnet():
    inc = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    blocks = find_layers(inc, "blocks")
    assert [b for b in blocks if b.startswith("Mixed")] == [
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
        "Mixed_7a",
        "Mixed_7b",
        "Mixed_7c",
    ]
    assert blocks[0] == "Conv2d_1a_3x3" and "AuxLogits" in blocks  # found; dropped when it does not run
    r = torchvision.models.resnet18(weights=None)
    assert find_layers(r, "blocks") == ["conv1"] + [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]

    class Wrapped(nn.Module):  # a backbone inside a model is looked into, not taken as one block
        def __init__(self):
            super().__init__()
            self.backbone = torchvision.models.resnet18(weights=None)

        def forward(self, x):
            return self.backbone(x)

    assert find_layers(Wrapped(), "blocks") == ["backbone." + b for b in find_layers(r, "blocks")]


def test_a_vision_transformer_has_one_conv_and_says_so():
    vit = torchvision.models.vit_b_16(weights=None)
    for mode in ("blocks", "conv"):
        with pytest.warns(UserWarning, match=r"one layer with feature maps to explain, 'conv_proj'.*tokens"):
            s = inv.Session(vit, [], layer_mode=mode)
        assert s.layers == ["conv_proj"]


# ---- item 6: several outputs ---------------------------------------------------------------------------


class FeaturesAndLogits(nn.Module):
    def __init__(self, dict_output=False):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)
        self.dict_output = dict_output

    def forward(self, x):
        f = self.conv2(self.conv(x).relu()).relu().mean((2, 3))
        logits = self.fc(f)
        return {"features": f, "cls": logits} if self.dict_output else (f, logits)


def test_a_tuple_output_is_named_and_chosen():
    m = FeaturesAndLogits().eval()
    with pytest.warns(
        UserWarning, match=r"tuple of 2 outputs: \[0\] \(1, 8\), \[1\] \(1, 4\); explaining output \[0\]"
    ):
        _ = inv.Session(m, [_x(16)]).layers
    exp = inv.explain(m, _x(16), output=1)
    with torch.no_grad():
        want = m(_x(16)[None])[1][0]
    np.testing.assert_allclose(exp.logits, want.numpy(), rtol=1e-5, atol=1e-6)
    assert len(exp.probabilities) == 4
    by_callable = inv.explain(m, _x(16), output=lambda out: out[1])
    np.testing.assert_allclose(by_callable.logits, exp.logits)
    with pytest.raises(
        ValueError, match=r"output 2 is not one of the model's 2 outputs; it returned a tuple of 2 outputs"
    ):
        _ = inv.Session(m, [_x(16)], output=2).layers


def test_a_dict_output_by_key_and_session_classes_work():
    m = FeaturesAndLogits(dict_output=True).eval()
    s = inv.Session(m, [_x(16)], output="cls")
    assert s.classes == ["0", "1", "2", "3"]
    assert s.explain(0).probabilities.shape == (4,)
    with pytest.warns(UserWarning, match=r"explaining output \['features'\]"):
        assert len(inv.Session(m, [_x(16)]).classes) == 8  # the first value, said so
    with pytest.raises(ValueError, match=r"output 'logits' is not among the model's outputs; it returned a dict"):
        _ = inv.Session(m, [_x(16)], output="logits").classes


def test_a_dict_with_logits_is_taken_by_that_key():
    class HF(FeaturesAndLogits):
        def forward(self, x):
            f, logits = super().forward(x)
            return {"hidden": f, "logits": logits}

    with pytest.warns(UserWarning, match=r"explaining output \['logits'\]"):
        assert inv.Session(HF().eval(), [_x(16)]).explain(0).probabilities.shape == (4,)


# ---- item 7: float16 and bfloat16 ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_run_in_their_own_dtype(dtype):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    ref = inv.explain(model, _x(48), layers=["layer3.1.conv2", "layer4.1.conv2"])
    half = inv.explain(model.to(dtype), _x(48), layers=["layer3.1.conv2", "layer4.1.conv2"])
    assert next(model.parameters()).dtype == dtype  # the model is left as it was
    for name in half.layers:
        w = half[name].channel_weights
        assert w.dtype == np.float32 and w.sum() == pytest.approx(100.0, abs=1e-2)
        assert np.isfinite(half[name].cut().maps).all()
    assert np.corrcoef(ref[half.layers[-1]].gradcam().ravel(), half[half.layers[-1]].gradcam().ravel())[0, 1] > 0.9


def test_an_error_about_dtypes_does_not_blame_the_image_size():
    class Picky(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            raise RuntimeError("\"slow_conv2d_cpu\" not implemented for 'Half'")

    with pytest.raises(ValueError) as e:
        inv.explain(Picky(), _x(16))
    assert "model.float()" in str(e.value) and "image size" not in str(e.value)
    fixed = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 2)).eval()  # 16 x 16 only
    assert inv.explain(fixed, _x(16)).probabilities.shape == (2,)
    with pytest.raises(ValueError, match=r"input of shape \(3, 20, 20\) .*Check the image size"):
        inv.explain(fixed, _x(20))


# ---- item 11: layer choices -------------------------------------------------------------------------------


def test_layers_are_checked_when_the_session_is_built(demo):
    model, data = demo
    with pytest.raises(ValueError, match=r"unknown layer name\(s\) \['features.block9'\]"):
        inv.Session(model, data, layers=["features.block9"])
    s = inv.Session(model, data, layers="features.block1_conv1")  # a string is one name
    assert s.layers == ["features.block1_conv1"]
    with pytest.warns(UserWarning, match=r"given more than once"):
        s = inv.Session(model, data, layers=["features.block2_conv1", "features.block1_conv1", "features.block2_conv1"])
    assert s.layers == ["features.block1_conv1", "features.block2_conv1"]  # once each, in the order they run
    with pytest.raises(TypeError, match="layer names are strings"):
        inv.Session(model, data, layers=[3])
    with pytest.raises(ValueError, match="layers is empty"):
        inv.Session(model, data, layers=[])


def test_exp_index_out_of_range_and_a_fractional_k_are_refused(demo_session):
    exp = demo_session.explain(0)
    with pytest.raises(IndexError, match=r"layer index 100 out of range: this explanation has 8 layers"):
        exp[100]
    assert exp[-1].name == exp.layers[-1]
    lr = exp[0]
    with pytest.raises(ValueError, match="k must be a whole number, got 2.7"):
        lr.cut(k=2.7)
    assert lr.cut(k=3.0).k_cut == lr.cut(k=3).k_cut == 3


def test_a_head_that_outputs_zeros_warns(small_cnn):
    with torch.no_grad():
        small_cnn.head.weight.zero_()
        small_cnn.head.bias.zero_()
    with pytest.warns(UserWarning, match="no feature map is kept in any layer"):
        exp = inv.explain(small_cnn, _x(24))
    assert all(len(exp[n].kept) == 0 for n in exp.layers)


def test_explain_many_on_mixed_sizes_is_the_same_whatever_is_cached(small_cnn):
    images = [_x(24, 0), _x(32, 1), _x(24, 2), _x(40, 3)]
    fresh = inv.Session(small_cnn, images).explain_many(range(4), batch_size=2, progress=False)
    s = inv.Session(small_cnn, images)
    s.explain(1)  # one image of another size cached first
    again = s.explain_many(range(4), batch_size=2, progress=False)
    assert [e.input_size for e in again] == [(24, 24), (32, 32), (24, 24), (40, 40)]
    for a, b in zip(fresh, again):
        assert a.predicted == b.predicted and a.image_id == b.image_id
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-6)


def test_progress_bar_for_several_batches(small_cnn, capsys):
    s = inv.Session(small_cnn, [_x(24, i) for i in range(4)])
    s.explain_many(range(4), batch_size=2)
    err = capsys.readouterr().err
    assert "explaining" in err and "4/4" in err
    seen = []
    s.clear_cache()
    s.explain_many(range(4), batch_size=2, progress=lambda d, t, m: seen.append((d, t)))
    assert seen == [(2, 4), (4, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s.explain_many(range(4), batch_size=2, progress=False)


def test_progress_for_one_long_batch_and_quiet_for_a_quick_one(small_cnn, capsys):
    """One batch of 32 images that takes 22 s showed nothing (issue 22): a single batch now gets a bar once it has
    run for two seconds, ticking while the model's pass runs; a quick call stays quiet."""
    s = inv.Session(small_cnn, [_x(24, i) for i in range(6)])
    s.explain_many(range(3), batch_size=8)
    assert capsys.readouterr().err == ""  # quick: no bar at all

    class Slow(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            import time

            time.sleep(3.5)
            return self.net(x)

    slow = inv.Session(Slow(small_cnn), [_x(24, i) for i in range(6)])
    slow.explain_many(range(3), batch_size=8)
    err = capsys.readouterr().err
    assert "explaining" in err and "model pass of 3 images" in err and "3/3" in err, err
    assert "0/3 [00:02" in err or "0/3 [00:03" in err, err  # the clock moved during the one model pass
