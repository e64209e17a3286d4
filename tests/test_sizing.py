"""Inputs sized for the model (issue 23, finding 1): a photo with the default model no longer takes the machine.

The done-when figures run in subprocesses: peak resident memory of a 12-megapixel photo through the CLI and
through ``Session(*inv.demo.load())`` (under 1.5 GB, the process's VmHWM), and the seconds an 81-megapixel
picture takes to be refused. Each subprocess also runs under an address-space limit 3 GB above what it holds
after its imports, so that a regression fails the test instead of taking the machine.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import inv_widgets as inv
from inv_widgets.inputs import InputTooLargeError
from inv_widgets.sizing import DEFAULT_MAX_PIXELS, InputLimits, model_size, transform_size

#: run in a subprocess: argv = mode ("cli" | "session"), picture path, html out. Prints one JSON line.
_PROBE = r"""
import json, resource, sys, time
mode, path, out = sys.argv[1:4]
import inv_widgets as inv
from inv_widgets.cli import main
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))
resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + (3 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
error = ""
try:
    if mode == "cli":
        t0 = time.perf_counter()
        status_ = main(["explain", path, "--quiet", "--out", out])
    else:
        session = inv.Session(*inv.demo.load())
        t0 = time.perf_counter()
        exp = session.explain(path)
        status_ = 0
except Exception as e:
    status_, error = 1, f"{type(e).__name__}: {e}"
seconds = time.perf_counter() - t0
# VmHWM, not ru_maxrss: Linux keeps the parent's high-water mark in ru_maxrss across fork and exec
print(json.dumps({"status": status_, "error": error, "seconds": seconds, "peak_mb": status("VmHWM") / 2 ** 20}))
"""


def _measure(mode, picture, tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", _PROBE, mode, str(picture), str(tmp_path / "page.html")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"the subprocess died (status {r.returncode}): {r.stderr[-2000:]}"
    return json.loads(lines[-1]), r.stderr


@pytest.fixture(scope="module")
def photo_12mp(tmp_path_factory):
    """A 4000 x 3000 JPEG with a photo's mix of smooth light and fine texture."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:3000, 0:4000].astype(np.float32)
    base = np.stack([x / 4000 * 200, y / 3000 * 180, (x + y) / 7000 * 160], -1)
    img = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("photos") / "phone.jpg"
    Image.fromarray(img).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def picture_81mp(tmp_path_factory):
    """A 9000 x 9000 PNG (81 megapixels, under PIL's decompression-bomb guard of 89.5)."""
    path = tmp_path_factory.mktemp("photos") / "huge.png"
    Image.new("1", (9000, 9000), 1).save(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["cli", "session"])
def test_a_12_megapixel_photo_with_the_demo_model_stays_under_1_5_gb(mode, photo_12mp, tmp_path):
    got, stderr = _measure(mode, photo_12mp, tmp_path)
    assert got["status"] == 0, (got, stderr[-2000:])
    assert got["peak_mb"] < 1536, got
    print(f"{mode}: peak {got['peak_mb']:.0f} MB, {got['seconds']:.1f} s")
    if mode == "cli":
        assert (tmp_path / "page.html").stat().st_size > 0
        assert stderr.count("resized to 171x128") == 1  # said once, on stderr, not silently


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["cli", "session"])
def test_an_81_megapixel_picture_is_refused_in_seconds_naming_the_option(mode, picture_81mp, tmp_path):
    got, stderr = _measure(mode, picture_81mp, tmp_path)
    text = got["error"] or stderr
    assert got["status"] != 0
    assert "9000x9000 (81.0 megapixels)" in text and "max_pixels" in text, text
    assert "Traceback" not in stderr
    assert got["seconds"] < 15, got  # (the CLI's includes loading the demo; about 1-2 s on 2 idle cores)
    print(f"{mode}: refused in {got['seconds']:.2f} s, peak {got['peak_mb']:.0f} MB")
    if mode == "cli":
        assert "--max-pixels" in stderr and not (tmp_path / "page.html").exists()


def test_a_large_picture_is_resized_to_the_demo_size_keeping_its_aspect_with_one_warning(demo):
    model, data = demo
    s = inv.Session(model, data)
    assert s.inputs.size == (128, 128) and model_size(model) == (128, 128)
    pic = Image.fromarray(np.random.default_rng(1).integers(0, 255, (600, 800, 3), np.uint8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp = s.explain(pic, lazy=True)
        s.explain(pic.rotate(90, expand=True), lazy=True)
    said = [str(w.message) for w in caught if "resized" in str(w.message)]
    assert len(said) == 1 and "800x600 picture is resized to 171x128" in said[0] and "input_size=None" in said[0]
    assert exp.layer(exp.layers[0]).cut().maps.shape[1:] == (128, 171)
    small = Image.fromarray(np.zeros((100, 90, 3), np.uint8))
    assert tuple(s.image_set.resolve(small)[0].shape) == (3, 100, 90)  # smaller pictures are not enlarged


def test_the_explorer_upload_keeps_the_resized_picture_and_refuses_a_huge_one(demo):
    model, data = demo
    s = inv.Session(model, inv.demo.PartsDataset(n=3))
    ex = inv.Explorer(s)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (900, 1200, 3), np.uint8)).save(buf, "PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ex._on_header_msg(ex.header, {"type": "upload", "name": "photo.png"}, [memoryview(buf.getvalue())])
    assert ex.header.error == "" and len(s) == 4
    assert s.image_set._extra[-1].size == (171, 128) and tuple(s.input(3).shape) == (3, 128, 171)
    buf = io.BytesIO()
    Image.new("1", (9000, 9000), 1).save(buf, "PNG")
    t0 = time.perf_counter()
    ex._on_header_msg(ex.header, {"type": "upload", "name": "huge.png"}, [memoryview(buf.getvalue())])
    assert time.perf_counter() - t0 < 5
    assert "huge.png is 9000x9000 (81.0 megapixels)" in ex.header.error and "max_pixels" in ex.header.error
    assert len(s) == 4


def test_a_transform_that_resizes_gets_pictures_as_they_come():
    import torchvision as tv  # a dependency of the package: missing, it is a failure

    preset = tv.models.ResNet18_Weights.DEFAULT.transforms()
    assert transform_size(preset) == (224, 224)
    assert transform_size(tv.transforms.Compose([tv.transforms.Resize(96), tv.transforms.ToTensor()])) == (96, 96)
    assert transform_size(tv.transforms.Compose([tv.transforms.ToTensor()])) is None
    torch.manual_seed(0)
    model = tv.models.resnet18(weights=None, num_classes=3).eval()
    model.input_size = (32, 32)  # the transform's own resize wins over what the model says
    lim = InputLimits(model, preset)
    assert lim.resizes_itself and lim.size is None
    pic = Image.new("RGB", (640, 480))
    assert lim.fit(pic) is pic


def test_input_size_none_explains_at_full_size_and_an_explicit_size_is_used(demo):
    model, data = demo
    pic = Image.fromarray(np.random.default_rng(3).integers(0, 255, (300, 400, 3), np.uint8))
    full = inv.Session(model, [pic], transform=data.transform, input_size=None)
    assert tuple(full.input(0).shape) == (3, 300, 400)
    sized = inv.Session(model, [pic], transform=data.transform, input_size=(64, 64))
    with pytest.warns(UserWarning, match="resized to 85x64"):
        assert tuple(sized.input(0).shape) == (3, 64, 85)
    with pytest.raises(ValueError, match="input_size must be"):
        inv.Session(model, [pic], input_size=(0, 3))
    with pytest.raises(ValueError, match="max_pixels must be"):
        inv.Session(model, [pic], max_pixels=-1)
    with pytest.raises(ValueError, match="max_memory must be"):
        inv.Session(model, [pic], max_memory="lots")


def test_model_input_is_never_resized_but_is_capped(demo):
    model, data = demo
    s = inv.Session(model, data, max_pixels=100_000)
    x = torch.zeros(3, 200, 300)
    assert tuple(s.image_set.resolve(x)[0].shape) == (3, 200, 300)
    with pytest.raises(InputTooLargeError, match=r"400x300 \(0.1 megapixels\), above the limit of 0.1 megapixels"):
        s.image_set.resolve(torch.zeros(3, 300, 400))
    with pytest.raises(InputTooLargeError, match="max_pixels"):
        s.image_set.resolve(np.zeros((300, 400, 3), np.uint8))


def test_an_explanation_that_needs_more_memory_than_allowed_is_refused_before_the_model_runs(demo):
    model, data = demo
    seen = []
    hook = model.features.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[-2:])))
    try:
        s = inv.Session(
            model, [Image.new("RGB", (64, 64))], transform=data.transform, input_size=None, max_memory=300e6
        )
        pic = Image.fromarray(np.random.default_rng(4).integers(0, 255, (1200, 1600, 3), np.uint8))
        with pytest.raises(InputTooLargeError) as err:
            s.explain(pic)
        msg = str(err.value)
        assert "1600x1200 input needs about" in msg and "0.30 GB allowed by max_memory" in msg
        assert "input_size=" in msg and "max_memory=" in msg and "\n" not in msg
        assert all(h * w <= 128 * 128 * 1.1 for h, w in seen), seen  # only the shape probe ran, shrunk
        need = s.inputs.estimate(torch.zeros(3, 1200, 1600))
        assert need == pytest.approx(s.inputs.estimate(torch.zeros(3, 2400, 800)), rel=0.02)  # per pixel
        assert 2 * need == pytest.approx(s.inputs.estimate(torch.zeros(3, 2400, 1600)) + 64 * 2**20, rel=0.02)
        # the same picture within the budget is explained; inputs up to 512 x 512 are not probed
        ok = inv.Session(model, [pic], transform=data.transform, input_size=None, max_memory=need * 1.01)
        assert ok.explain(0, lazy=True).predicted >= 0
        seen.clear()
        inv.Session(model, data, max_memory=1).explain(0, lazy=True)
        assert seen and set(seen) == {(128, 128)}
    finally:
        hook.remove()


def test_the_cli_default_cap_is_the_library_default():
    from inv_widgets import cli

    assert cli.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS
