"""Session and inputs: every kind of image, clear errors, the caches, locating a cluster map, the one-off
explain()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import inv_widgets as inv
from inv_widgets.inputs import display_image, to_model_input


@pytest.fixture(scope="module")
def tiny(tiny_cnn):
    return tiny_cnn


def pil_images():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 255, (40, 48, 4), dtype=np.uint8))
    gray = Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8))
    i16 = Image.fromarray(rng.integers(0, 65535, (40, 48), dtype=np.uint16))
    return {"RGB": rgb, "RGBA": rgba, "L": gray, "I;16": i16, "P": rgb.convert("P")}


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I;16", "P"])
def test_pil_images_of_any_mode(tiny, mode):
    img = pil_images()[mode]
    tf = torchvision.transforms.Compose([torchvision.transforms.Resize((32, 32)), torchvision.transforms.ToTensor()])
    exp = inv.explain(tiny, img, transform=tf)
    assert exp.image.shape == (32, 32, 3) and exp.image.dtype == np.uint8
    assert exp[exp.layers[-1]].cut().maps.shape[1:] == (32, 32)


def test_i16_image_keeps_its_contrast():
    a = np.zeros((8, 8), np.uint16)
    a[:, 4:] = 60000
    img = Image.fromarray(a)
    assert img.mode == "I;16"
    x = to_model_input(img)
    assert x.shape == (3, 8, 8)
    assert float(x[0, 0, 0]) == 0.0 and float(x[0, 0, 7]) == pytest.approx(60000 / 65535, abs=0.01)


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8),  # HWC uint8
        lambda: np.random.default_rng(0).random((32, 32)),  # gray float in [0, 1]
        lambda: np.random.default_rng(0).random((3, 32, 32)).astype(np.float32),  # CHW float
        lambda: torch.rand(3, 32, 32),  # tensor
        lambda: torch.rand(1, 3, 32, 32),  # tensor with a batch dimension of one
    ],
)
def test_arrays_and_tensors(tiny, make):
    exp = inv.explain(tiny, make())
    assert exp.image.shape == (32, 32, 3)
    assert len(exp.layers) == 4


def test_torchvision_weights_transforms_and_display():
    weights = torchvision.models.ResNet18_Weights.DEFAULT  # the transforms need no download
    model = torchvision.models.resnet18(weights=None).eval()
    img = Image.fromarray(np.full((300, 260, 3), (200, 40, 10), np.uint8))
    s = inv.Session(model, [img], transform=weights.transforms(), class_names=weights.meta["categories"])
    exp = s.explain(0, lazy=True)
    assert exp.image.shape == (224, 224, 3)
    # normalisation undone: a person sees the colour they gave
    assert np.abs(exp.image.reshape(-1, 3).mean(0) - np.array([200, 40, 10])).max() < 3
    assert s.classes[exp.predicted] == exp.predicted_name


def test_errors_name_the_problem_and_the_fix(tiny):
    no_conv = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(ValueError, match="no Conv2d layer.*layers="):
        inv.Session(no_conv, [torch.rand(3, 2, 2)])
    with pytest.raises(ValueError, match="outputs .* not a 4-D feature map"):
        inv.explain(no_conv, torch.rand(3, 2, 2), layers=["1"])
    with pytest.raises(ValueError, match="unknown layer name.*'conv9'"):
        inv.explain(tiny, torch.rand(3, 16, 16), layers=["conv9"])
    with pytest.raises(ValueError, match="target class 7 is outside"):
        inv.explain(tiny, torch.rand(3, 16, 16), target=7)
    s = inv.Session(tiny, [torch.rand(3, 16, 16)], class_names=list("abcde"))
    with pytest.raises(ValueError, match="outside the 5 classes"):
        s.explain(0, target=5)
    with pytest.raises(ValueError, match="unknown class name 'z'"):
        s.explain(0, target="z")
    bad = torch.rand(3, 16, 16)
    bad[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        inv.explain(tiny, bad)
    arr = np.random.rand(16, 16, 3)
    arr[2, 2, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        inv.explain(tiny, arr)
    with pytest.raises(ValueError, match="batch of 2 images"):
        inv.explain(tiny, torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="empty"):
        inv.explain(tiny, np.zeros((0, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        inv.explain(tiny, Image.new("RGB", (0, 5)))

    def broken(img):
        raise KeyError("no such size")

    with pytest.raises(ValueError, match="transform could not take this .*KeyError"):
        inv.explain(tiny, Image.new("RGB", (16, 16)), transform=broken)
    with pytest.raises(TypeError, match="must return a torch tensor"):
        inv.explain(tiny, Image.new("RGB", (16, 16)), transform=lambda im: np.asarray(im))
    with pytest.raises(TypeError, match="cannot use a dict"):
        inv.explain(tiny, {"not": "an image"})
    with pytest.raises(ValueError, match="could not run on an input of shape"):
        inv.explain(torchvision.models.vgg11(weights=None), torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="unknown recipe"):
        s.explain(0, recipe="magic")


def test_session_cache_runs_model_once_per_image_and_target(tiny):
    calls = []
    h = tiny.register_forward_hook(lambda *a: calls.append(1))
    try:
        s = inv.Session(tiny, [torch.rand(3, 16, 16), torch.rand(3, 16, 16)], cache_size=2)
        e1 = s.explain(0)
        assert s.explain(0) is e1 and s.explain(0, target=e1.target) is e1
        n = len(calls)
        for name in e1.layers:  # layers, recipes and cuts never rerun the model
            for k in (1, 2, 3):
                e1[name].cut(k=k)
        s.explain(0, recipe="paper")
        assert len(calls) == n
        other = (e1.target + 1) % 5
        e2 = s.explain(0, target=other)
        assert e2.target == other and len(calls) == n + 1
        s.explain(1)
        assert len(calls) == n + 2
        s.explain(0)  # the cache holds 2: image 0's first explanation was dropped
        assert len(calls) == n + 3
    finally:
        h.remove()


def test_explain_many_batches_agree_with_single(tiny):
    imgs = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    s = inv.Session(tiny, imgs)
    many = s.explain_many(range(5), batch_size=2)
    for i, e in enumerate(many):
        single = inv.explain(tiny, imgs[i])
        assert e.target == single.target
        for name in e.layers:
            np.testing.assert_allclose(e[name].channel_weights, single[name].channel_weights, rtol=1e-4, atol=1e-5)


def test_add_image_and_display(tiny):
    s = inv.Session(tiny, [], class_names=list("abcde"))
    assert len(s) == 0
    i = s.add_image(Image.new("RGB", (16, 16), (255, 0, 0)))
    assert i == 0 and len(s) == 1
    assert s.image(0).getpixel((3, 3)) == (255, 0, 0)
    with pytest.raises(IndexError, match="out of range"):
        s.explain(3)
    assert display_image(torch.zeros(3, 4, 4)).shape == (4, 4, 3)


def test_deterministic_explanations(tiny):
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(9))
    for recipe in ("fast", "paper"):
        a = inv.explain(tiny, x, recipe=recipe)
        b = inv.explain(tiny, x.clone(), recipe=recipe)
        for name in a.layers:
            ca, cb = a[name].cut(), b[name].cut()
            assert [m.tolist() for m in ca.members] == [m.tolist() for m in cb.members]
            np.testing.assert_array_equal(ca.maps, cb.maps)


def test_one_explanation_under_both_names_and_bounded_caches(tiny):
    """``explain(i)`` and ``explain(i, predicted)`` are one object, counted once against ``cache_size``; the
    other caches are bounded too."""
    imgs = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    s = inv.Session(tiny, imgs, cache_size=2)
    e0 = s.explain(0)
    assert s.explain(0, target=e0.target) is e0
    explicit = s.explain(1, target=s.explain(1).target)  # asked by class first, then by None: one object
    assert s.explain(1) is explicit
    assert len(s._cache) == 2  # two explanations, each once
    s.explain(2)
    assert len(s._cache) == 2 and s._cached(s.image_id(0), None) is None  # image 0 was least recently used
    assert s._inputs.maxsize == 32 and s._preds.maxsize == 1024  # inputs: 2 x cache_size, at least 32
    p = s.predict(3)
    assert s.predict(3) is p  # kept
    s.clear_cache()
    assert len(s._cache) == len(s._preds) == len(s._inputs) == len(s._predicted) == 0
    assert s.explain(1) is not explicit


def test_added_images_survive_the_input_cache(tiny):
    s = inv.Session(tiny, [], class_names=list("abcde"))
    i = s.add_image(Image.new("RGB", (16, 16), (0, 255, 0)))
    x = s.input(i)
    s._inputs.clear()  # dropped from the cache: made again from the image
    torch.testing.assert_close(s.input(i), x)


def test_locate_finds_every_map_of_every_cut_and_refuses_foreign_keys(demo_session):
    s = demo_session
    exp = s.explain(2)
    for name in exp.layers[::3]:
        for k in (None, 2, 6):
            cl = exp[name].cut(k=k)
            for j in range(cl.k):
                i, found, jj = s.locate(cl.key(j))
                assert i == 2 and found.key(jj) == cl.key(j)
                np.testing.assert_allclose(found.maps[jj], cl.maps[j])
    key = exp[exp.layers[0]].cut().key(0)
    with pytest.raises(KeyError, match="another model"):
        s.locate(key._replace(model="0" * 16))
    with pytest.raises(KeyError, match="no image"):
        s.locate(key._replace(image_id="not-an-image"))
    with pytest.raises(KeyError, match="not all kept|not one cluster"):
        s.locate(key._replace(members=tuple(range(16))))


def test_memory_held_is_bounded_by_cache_size_and_emptied_by_clear_cache(tiny):
    """Browsing many images keeps at most ``cache_size`` explanations and ``max(2 * cache_size, 32)`` model inputs,
    whatever the number of images seen; ``clear_cache()`` lets go of all of them (issue 14, item 8: the inputs grew
    with every image and survived ``clear_cache()``)."""
    imgs = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(120)]

    def held_input_bytes(s):
        return sum(x.numel() * x.element_size() for x in s._inputs.values())

    one = imgs[0].numel() * imgs[0].element_size()
    for cache_size, inputs_kept in ((3, 32), (20, 40)):
        s = inv.Session(tiny, imgs, cache_size=cache_size)
        for i in range(len(imgs)):
            s.predict(i)
            if i % 10 == 0:
                s.explain(i)
        assert len(s._cache) == min(cache_size, 12)
        assert len(s._inputs) == inputs_kept and held_input_bytes(s) == inputs_kept * one
        s.clear_cache()
        assert held_input_bytes(s) == 0 and len(s._cache) == len(s._preds) == len(s._predicted) == 0
        torch.testing.assert_close(s.input(5), imgs[5])  # made again on demand


def test_dropped_explanations_are_freed_without_waiting_for_the_garbage_collector(tiny):
    """An explanation pushed out of the cache is a reference cycle (its layers point back to it); Python's cyclic
    collector runs rarely, so dropped explanations piled up (+1.7 GB of resident memory after 600 demo images
    with 107 MB in the caches). The session frees them itself: with automatic collection off, at most
    ``cache_size`` kept plus ``max(cache_size, 8)`` dropped explanations exist at any time."""
    import gc

    from inv_widgets.engine.explanation import Explanation

    imgs = [torch.rand(3, 17, 15, generator=torch.Generator().manual_seed(1000 + i)) for i in range(40)]
    s = inv.Session(tiny, imgs, cache_size=2)
    ids = {s.image_id(i) for i in range(len(imgs))}  # this session's explanations only: other tests' sessions live on
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        most = 0
        for i in range(len(imgs)):
            exp = s.explain(i)
            for name in exp.layers:
                exp[name].cut()
            del exp
            most = max(
                most, sum(type(o) is Explanation and o.image_id in ids for o in gc.get_objects())
            )  # garbage included
    finally:
        if was:
            gc.enable()
    assert len(s._cache) == 2
    assert most <= 2 + 8 + 1, most


def test_readme_states_the_bounds_the_code_has(tiny):
    """docs/method.md, "Memory held by a session" (the Session docstring points there): its table gives the bounds
    the caches really have."""
    from pathlib import Path

    from inv_widgets.engine.explanation import LayerResult

    page = (Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text()
    section = page.split("## Memory held by a session\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = {r.split("|")[1].strip(): r.split("|")[2].strip() for r in section.splitlines() if r.startswith("| ")}
    bound = {name.split(" ")[0].split(",")[0]: value for name, value in rows.items()}
    for cache_size in (1, 4, 16, 40):
        s = inv.Session(tiny, [torch.rand(3, 16, 16)], cache_size=cache_size)
        assert bound["explanations"] == "`cache_size` (default 16)" and s._cache.maxsize == cache_size
        assert bound["model"] == "`max(2 * cache_size, 32)`" and s._inputs.maxsize == max(2 * cache_size, 32)
        assert bound["class"] == f"{s._preds.maxsize:,} images"
        assert bound["predicted"] == f"{s._predicted.maxsize:,} images"
    assert bound["cuts"] == f"{LayerResult.CUTS_KEPT} per layer"
    assert inspect_default_cache_size() == 16
    assert "python benchmarks/bench_memory.py" in section and "clear_cache()" in section


def inspect_default_cache_size():
    import inspect

    return inspect.signature(inv.Session).parameters["cache_size"].default


def test_the_first_explanation_learns_the_layers_from_its_own_pass(small_cnn):
    """inv.explain runs the model once, the explanation's own pass, which also tells which layers run (issue 24: no
    pass of its own for that); the layers' rules hold as when a pass of its own learnt them. At the activation point
    (the default) a model's chains conv -> norm -> activation are traced once, in one pass without gradients of one
    image, and known from then on."""
    passes = []
    small_cnn.register_forward_pre_hook(lambda module, args: passes.append(bool(args[0].requires_grad)))
    g = torch.Generator().manual_seed(0)
    x4, x8 = torch.rand(3, 4, 4, generator=g), torch.rand(3, 8, 8, generator=g)
    exp = inv.explain(small_cnn, x4, layer_point="conv")
    assert passes == [True]
    assert exp.layers == ["features.0", "features.3"]  # at 4 px features.6 gives 1 x 1 maps: left out
    small_cnn.idle = nn.Conv2d(3, 2, 1)  # never called in forward
    passes.clear()
    with pytest.warns(UserWarning, match=r"\['idle'\] do not run"):
        s = inv.Session(small_cnn, [x4], layers=["idle", "features.6", "features.0"], layer_point="conv")
        assert s.explain(0).layers == ["features.0", "features.6"]  # named: kept although 1 x 1, in firing order
    assert passes == [True] and s.layers == ["features.0", "features.6"]
    passes.clear()
    s = inv.Session(small_cnn, [x4, x8], layer_point="conv")
    assert s.explain(1).layers == ["features.0", "features.3"]  # learnt at image 0's size, as before
    assert passes == [False, True]
    passes.clear()
    s = inv.Session(small_cnn, [x8], layer_point="conv")
    assert s.layers == ["features.0", "features.3", "features.6"] and passes == [False]  # asked for first
    assert s.explain(0).layers == s.layers and passes == [False, True]
    passes.clear()
    first = inv.explain(small_cnn, x4, layers=["features.0", "features.3"])  # activation point: traced once
    assert passes == [False, True] and first.layers == ["features.0", "features.3"]
    passes.clear()
    inv.explain(small_cnn, x8, layers=["features.0", "features.3"])
    assert passes == [True]
