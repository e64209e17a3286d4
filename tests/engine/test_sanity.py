"""Sanity checks (engine/sanity.py): our Spearman, SSIM and pointing game against their definitions, model
randomisation, and the one-call check on a user's model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import inv_widgets as inv
from inv_widgets.engine.sanity import edge_map, model_units, pointing, randomised, spearman, ssim


def test_spearman_is_scipys_and_a_flat_map_keeps_nothing():
    rng = np.random.default_rng(0)
    a, b = rng.random((12, 12)), rng.random((12, 12))
    b[:4] = 0.5  # ties
    assert spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic)
    assert spearman(a, a) == pytest.approx(1.0) and spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.zeros_like(a)) == 0.0


def test_ssim_is_scikit_images_default():
    from skimage import metrics  # the concepts extra, installed by dev: missing, it is a failure

    rng = np.random.default_rng(1)
    a = rng.random((32, 32))
    b = np.clip(a + 0.3 * rng.standard_normal((32, 32)), 0, 1)
    assert ssim(a, b) == pytest.approx(metrics.structural_similarity(a, b, data_range=1.0), abs=1e-10)
    assert ssim(a, a) == pytest.approx(1.0)


def test_pointing_game_and_edge_reference():
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    s = np.zeros((8, 8))
    s[3, 3] = 1.0
    assert pointing(s, mask) and not pointing(np.roll(s, 3, 0), mask) and not pointing(np.zeros((8, 8)), mask)
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, 8:] = 255
    e = edge_map(img)
    assert e.max() == 1.0 and e[:, 7:9].min() > 0.5 and e[:, :5].max() == 0.0


def test_units_run_from_the_head_back_and_randomising_leaves_the_model_alone(demo):
    model, data = demo
    units = model_units(model, model.conv_layer_names, data[0][0][None])
    assert units[0] == ("classifier", ["classifier"])
    assert units[1] == ("features.block4_conv2", ["features.block4_conv2", "features.block4_bn2"])
    assert len(units) == 9 and units[-1][0] == "features.block1_conv1"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    r1, r2 = randomised(model, ["classifier"], seed=3), randomised(model, ["classifier"], seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert torch.equal(r1.classifier.weight, r2.classifier.weight)
    assert not torch.equal(r1.classifier.weight, model.classifier.weight)
    assert torch.equal(r1.features.block4_conv2.weight, model.features.block4_conv2.weight)


def test_session_sanity_check_on_the_demo(demo):
    model, data = demo
    session = inv.Session(model, data, layer_point="activation", cache_size=2)
    table = session.sanity_check(
        range(6), maps=("published", "gradcam"), tests=("cascade", "random class"), progress=False
    )
    last = session.layers[-1]
    assert set(table.kind) == {"published", "gradcam", "Grad-CAM"} and set(table.layer) == {last}
    assert set(table.test) == {"cascade", "random class", "other image", "edge"}
    assert table.rho.between(-1, 1).all() and (table.images == 6).all()
    assert (table.rho_lo <= table.rho).all() and (table.rho <= table.rho_hi).all()
    head = table[(table.test == "cascade") & (table.step == "classifier")].set_index(["kind", "map"]).rho
    cls = table[table.test == "random class"].set_index(["kind", "map"]).rho
    # the published maps barely change with the class or a random head; the Grad-CAM of the clusters does
    assert head["published", "union"] > head["gradcam", "union"] + 0.2
    assert cls["published", "union"] > cls["gradcam", "union"] + 0.2
    assert "rho near 0" in table.attrs["meaning"]
    fig = table.plot()
    assert fig.layout.title.text.startswith("Sanity checks at") and len(fig.data) == 5
    with pytest.raises(ValueError, match="unknown sanity tests"):
        session.sanity_check(range(2), tests=("shuffle",))
    with pytest.raises(ValueError, match="at least 2 images"):
        session.sanity_check([0])
