"""The embedded default: parts dataset, demo CNN, training script, shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from inv_widgets import demo
from inv_widgets.demo import (
    CLASS_PART_VOCABULARY,
    CLASS_PARTS,
    EVAL_SEED,
    PART_VOCABULARY,
    TRAIN_SEED,
    VAL_SEED,
    PartsDataset,
)
from inv_widgets.demo.model import DemoCNN


@pytest.fixture(scope="module")
def data():
    return PartsDataset(n=60, seed=EVAL_SEED)


# ------------------------------------------------------------------------------------------ dataset
def test_seed_constants_are_distinct():
    assert len({TRAIN_SEED, VAL_SEED, EVAL_SEED}) == 3


def test_same_seed_and_index_give_identical_pixels_and_masks():
    a, b = PartsDataset(n=12, seed=7), PartsDataset(n=12, seed=7)  # separate instances, separate caches
    for i in (0, 5, 11):
        assert np.array_equal(a.array(i), b.array(i))
        assert np.array_equal(np.asarray(a.image(i)), a.array(i))
        ma, mb = a.part_masks(i), b.part_masks(i)
        assert ma.keys() == mb.keys()
        for k in ma:
            assert np.array_equal(ma[k], mb[k])
        xa, ya = a[i]
        xb, yb = b[i]
        assert ya == yb and torch.equal(xa, xb)


def test_offset_continues_the_same_stream():
    full, tail = PartsDataset(n=8, seed=4), PartsDataset(n=3, seed=4, offset=5)
    for j in range(3):
        assert np.array_equal(full.array(5 + j), tail.array(j))


def test_different_seeds_or_indices_differ():
    a, b = PartsDataset(n=5, seed=7), PartsDataset(n=5, seed=8)
    for i in range(5):
        assert not np.array_equal(a.array(i), b.array(i))
    assert not np.array_equal(a.array(0), a.array(1))


def test_train_val_eval_images_are_different():
    sets = [PartsDataset(n=20, seed=s) for s in (TRAIN_SEED, VAL_SEED, EVAL_SEED)]
    digests = [{d.array(i).tobytes() for i in range(20)} for d in sets]
    assert not (digests[0] & digests[1]) and not (digests[0] & digests[2]) and not (digests[1] & digests[2])


def test_shapes_and_dtypes(data):
    assert len(data) == 60
    x, y = data[3]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (3, 128, 128)
    assert isinstance(y, int) and 0 <= y < len(data.classes)
    im = data.image(3)
    assert im.mode == "RGB" and im.size == (128, 128)
    x, _ = data[-1]
    assert x.shape == (3, 128, 128)
    small = PartsDataset(n=2, seed=1, size=64)
    assert small[0][0].shape == (3, 64, 64) and small.image(1).size == (64, 64)
    assert all(m.shape == (64, 64) for m in small.part_masks(0).values())


def test_tensor_is_the_normalised_image_and_can_be_inverted(data):
    from torchvision import transforms

    t = data.transform
    assert isinstance(t, transforms.Compose)
    assert [type(s) for s in t.transforms] == [transforms.ToTensor, transforms.Normalize]
    for i in (0, 7):
        x, _ = data[i]
        assert torch.allclose(x, t(data.image(i)), atol=1e-5)
        mean = torch.tensor(data.mean).view(3, 1, 1)
        std = torch.tensor(data.std).view(3, 1, 1)
        back = ((x * std + mean) * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        assert np.array_equal(back, data.array(i))
    # the statistics really normalise the data: channel means near 0, stds near 1
    xs = torch.stack([data[i][0] for i in range(40)])
    assert xs.mean(dim=(0, 2, 3)).abs().max() < 0.25
    assert (xs.std(dim=(0, 2, 3)) - 1).abs().max() < 0.3


def test_bad_arguments_raise_clear_errors(data):
    with pytest.raises(IndexError, match="out of range"):
        data[60]
    with pytest.raises(TypeError):
        data["3"]
    with pytest.raises(ValueError, match="n must be"):
        PartsDataset(n=-1)
    with pytest.raises(KeyError, match="unknown class"):
        data.parts_of("spaceship")


def test_every_class_appears_and_classes_are_balanced():
    d = PartsDataset(n=100, seed=11)
    counts = np.bincount([d.label(i) for i in range(100)], minlength=len(d.classes))
    assert len(d.classes) >= 8
    assert (counts == 10).all(), counts
    assert {d.class_name(i) for i in range(10)} == set(d.classes)


def test_parts_per_class_and_vocabulary():
    d = PartsDataset(n=1)
    assert set(CLASS_PARTS) == set(d.classes)
    for c in d.classes:
        parts = d.parts_of(c)
        assert 2 <= len(parts) <= 4 and len(set(parts)) == len(parts)
        assert d.parts_of(d.classes.index(c)) == parts
        for p in parts:
            words = PART_VOCABULARY[p]
            assert len(words) >= 3 and all(isinstance(w, str) and w.strip() for w in words)
            assert set(words) <= set(CLASS_PART_VOCABULARY[c][p])
    every_part = {p for ps in CLASS_PARTS.values() for p in ps}
    assert set(PART_VOCABULARY) == every_part
    assert d.part_vocabulary is PART_VOCABULARY and demo.PART_VOCABULARY is PART_VOCABULARY


def test_part_masks_are_visible_parts_of_the_drawn_object(data):
    seen_parts = set()
    for i in range(len(data)):
        masks = data.part_masks(i)
        cls = data.class_name(i)
        assert masks, f"image {i} ({cls}) has no visible part"
        assert set(masks) <= set(data.parts_of(cls))
        total = np.zeros((128, 128), int)
        for name, m in masks.items():
            assert m.dtype == bool and m.shape == (128, 128)
            assert m.any(), f"{name} is listed but empty"
            total += m
            seen_parts.add((cls, name))
        assert total.max() == 1, "visible parts must not overlap"
        assert 0.02 < total.mean() < 0.7, f"object of image {i} covers {total.mean():.3f} of the image"
        assert np.array_equal(data.object_mask(i), total > 0)
    # nearly every (class, part) pair shows up in 60 images (occlusion hides a few)
    all_pairs = {(c, p) for c, ps in CLASS_PARTS.items() for p in ps}
    assert len(seen_parts) >= 0.9 * len(all_pairs)


def test_mask_edges_follow_image_edges(data):
    """Mask boundaries sit on strong colour edges of the picture (they are not shifted/scaled)."""
    ratios = []
    for i in range(20):
        img = data.array(i).astype(float)
        grad = np.abs(np.diff(img, axis=1)).sum(-1)  # horizontal colour change between pixel pairs
        obj = data.object_mask(i)
        edge = obj[:, 1:] != obj[:, :-1]
        ratios.append(grad[edge].mean() / grad.mean())
        shifted = np.roll(obj, 6, axis=1)
        sedge = shifted[:, 1:] != shifted[:, :-1]
        assert grad[edge].mean() > grad[sedge].mean(), f"image {i}: a shifted mask fits as well"
    assert np.median(ratios) > 3


def test_part_colours_match_their_names():
    """Ground truth means what it says: clock faces are light, car wheels dark, crowns not bluish."""
    d = PartsDataset(n=200, seed=21)
    face, wheels = [], []
    for i in range(200):
        c, m = d.class_name(i), d.part_masks(i)
        px = d.array(i).astype(float)
        if c == "clock" and "face" in m:
            face.append(px[m["face"]].mean())
        if c == "car" and "wheels" in m:
            wheels.append(px[m["wheels"]].mean())
    assert len(face) > 10 and len(wheels) > 10
    assert np.median(face) > 170 and np.median(wheels) < 110


def test_occluders_in_front_are_not_part_of_any_mask():
    """About a third of the images have something in front of the object; it hides part pixels."""
    from inv_widgets.demo.parts import _render

    d = PartsDataset(n=80, seed=31)
    occluded = 0
    for i in range(80):
        _, labels, lut, _ = _render(31, i, 128, len(d.classes))
        in_front = labels > np.flatnonzero(lut).max()  # regions drawn after the object's parts
        occluded += bool(in_front.any())
        covered = in_front.reshape(128, 2, 128, 2).all(axis=(1, 3))
        assert not (d.object_mask(i) & covered).any()
    assert 8 <= occluded <= 48, occluded


def test_the_images_are_the_ones_the_shipped_weights_were_trained_on():
    """The rendering is pinned: drawing the background alongside (PartsDataset.background) changed no pixel."""
    import hashlib

    d = PartsDataset(n=10, seed=EVAL_SEED)
    h = hashlib.sha1()
    for i in range(10):
        h.update(d.array(i).tobytes())
    assert h.hexdigest() == "2b7abfd0217a5e1313a22182097e3d9d4b4a333e"


def test_background_is_the_image_without_its_object(data):
    """Every pixel the object does not reach is the image's own (occluders in front included); the object's
    pixels show the background behind it, and the demo CNN no longer sees the class there."""
    from scipy.ndimage import binary_dilation

    probs = []
    model, _ = demo.load(n=0)
    for i in range(12):
        img, bg = data.array(i).astype(int), data.background(i).astype(int)
        obj = data.object_mask(i)
        assert bg.shape == img.shape and data.background(i).dtype == np.uint8
        assert (img == bg)[~binary_dilation(obj, iterations=2)].all()
        assert np.abs(img - bg)[obj].mean() > 20
        with torch.no_grad():
            probs.append(torch.softmax(model(data.to_tensor(data.background(i))[None]), 1)[0, data.label(i)].item())
    assert np.mean(probs) < 0.3, probs


# ------------------------------------------------------------------------------------------ model
def test_model_has_named_conv_layers():
    m = DemoCNN()
    names = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Conv2d)]
    assert len(names) >= 8
    assert names[0] == "features.block1_conv1" and names[-1] == "features.block4_conv2"
    assert m.conv_layer_names == names
    assert m(torch.zeros(2, 3, 128, 128)).shape == (2, 10)
    with pytest.raises(ValueError, match="even"):
        DemoCNN(widths=(8, 8, 8))


def test_train_script_runs_and_writes_a_loadable_file(tmp_path):
    from inv_widgets.demo import train
    from inv_widgets.demo._load import load_model

    out = tmp_path / "sub" / "m.pt"
    args = [
        "--epochs",
        "1",
        "--n-train",
        "24",
        "--batch-size",
        "8",
        "--n-val",
        "10",
        "--workers",
        "0",
        "--threads",
        "1",
        "--widths",
        "4,4,8,8",
        "--quiet",
    ]
    rc = train.main(args + ["--out", str(out)])
    assert rc == 0 and out.is_file()
    state = torch.load(out, weights_only=True)
    # seeded: the same command gives the same weights
    train.main(args + ["--out", str(tmp_path / "again.pt")])
    again = torch.load(tmp_path / "again.pt", weights_only=True)
    assert state.keys() == again.keys() and all(torch.equal(state[k], again[k]) for k in state)
    assert "features.block1_conv1.weight" in state and state["classifier.weight"].shape == (10, 8)
    init = DemoCNN(widths=(4, 4, 8, 8)).state_dict()
    assert not torch.equal(state["classifier.weight"], init["classifier.weight"])
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["data_seed"] == TRAIN_SEED and meta["epochs"] == 1 and len(meta["history"]) == 1
    model = load_model(out)
    assert not model.training and model.widths == (4, 4, 8, 8)
    assert not list(tmp_path.glob("sub/*.tmp")), "temporary file left behind"
    # the training script refuses the held-out seeds
    with pytest.raises(SystemExit, match="reserved"):
        train.main(["--data-seed", str(EVAL_SEED), "--out", str(tmp_path / "x.pt")])
    assert not (tmp_path / "x.pt").exists()


def test_missing_weights_error_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m inv_widgets\.demo\.train"):
        demo.load(weights=tmp_path / "nope.pt")


# ------------------------------------------------------------------------------------------ shipped weights
def test_shipped_weights_are_small_and_load_with_weights_only():
    path = demo.WEIGHTS_PATH
    assert path.is_file(), "run `python -m inv_widgets.demo.train` to create the shipped weights"
    assert path.stat().st_size < 10 * 1024 * 1024
    state = torch.load(path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    DemoCNN().load_state_dict(state)  # strict: the shipped file fits the default architecture


def test_load_gives_an_accurate_model_in_eval_mode():
    model, data = demo.load(n=100)
    assert isinstance(model, DemoCNN) and not model.training
    assert data.seed == EVAL_SEED and len(data) == 100
    with torch.no_grad():
        x = torch.stack([data[i][0] for i in range(len(data))])
        pred = model(x).argmax(1).numpy()
    y = np.array([data.label(i) for i in range(len(data))])
    assert (pred == y).mean() >= 0.9
    assert not model.training
