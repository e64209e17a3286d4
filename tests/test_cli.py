"""The headless main job: `inv-widgets explain` writes a self-contained HTML page."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

import inv_widgets as inv
from inv_widgets.report import explanation_html


def test_cli_explain_torchvision_model_writes_page(tmp_path):
    img = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (180, 200, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "page.html"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "inv_widgets.cli",
            "explain",
            str(img),
            "--model",
            "mobilenet_v3_small",
            "--k",
            "3",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    page = out.read_text()
    tv = __import__("torchvision").models
    n_layers = len(
        inv.Session(
            tv.mobilenet_v3_small(), [str(img)], transform=tv.MobileNet_V3_Small_Weights.DEFAULT.transforms()
        ).layers
    )
    assert n_layers == 52 - 18  # the 1 x 1 convolutions of the squeeze-excitation blocks are left out
    assert page.count("Grad-CAM</figure>") == n_layers
    assert len(re.findall(r"w = \d+\.\d%", page)) >= n_layers  # every layer shows weighted cluster maps
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_reports_bad_input_clearly(tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "inv_widgets.cli",
            "explain",
            str(bad),
            "--model",
            "mobilenet_v3_small",
            "--out",
            str(tmp_path / "x.html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode != 0
    assert "cannot read" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.html").exists()


def test_report_escapes_class_names(tiny_cnn):
    names = ["<script>alert(1)</script>", "b", "c", "d", "e"]
    exp = inv.explain(tiny_cnn, torch.rand(3, 16, 16), class_names=names, target=0)
    page = explanation_html(exp, k=2)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ---- arguments checked first, one line, non-zero, nothing left behind (issue 14, item 9) --------------------


def _run(argv, capsys):
    from inv_widgets.cli import main

    try:
        status = main(argv)
    except SystemExit as e:  # argparse
        status = e.code
    err = capsys.readouterr().err
    return status, err


def _one_line_error(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_cli_refuses_bad_arguments_before_any_work(tmp_path, capsys):
    img = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    cases = {
        ("--out", str(tmp_path / "missing" / "r.html")): "does not exist; create it first",
        ("--out", "/proc/r.html"): "cannot write in the folder '/proc'",
        ("--out", str(tmp_path)): "is a directory; give a file name inside it",
        ("--k", "0"): "must be at least 1",
        ("--k", "2.5"): "expected a whole number",
        ("--target", "-1"): "-1 is not a class index: indices start at 0",
        (str(img), "--model", "raft_small"): "a torchvision model, but not an image classifier",
        (str(img), "--model", "no_such_net"): "not a torchvision model",
        (
            str(img),
            "--model",
            "mobilenet_v3_small",
            "--weights",
            "BOGUS",
        ): "choose none (random, offline), DEFAULT or one of IMAGENET1K_V1",
        (str(tmp_path / "nope.png"),): "no such file",
        ("--layers", "features.nosuch", "--out", str(tmp_path / "r.html")): "unknown layer name(s) ['features.nosuch']",
        ("--target", "zebra", "--out", str(tmp_path / "r.html")): "unknown class name 'zebra'",
    }
    for args, message in cases.items():
        status, err = _run(["explain", *args, "--quiet"], capsys)
        assert status not in (0, None), args
        assert message in _one_line_error(err), (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]  # no page, no temporary file


def test_cli_default_weights_offline_is_one_line(tmp_path, capsys, monkeypatch):
    import urllib.error

    import torch.hub

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    img = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    status, err = _run(
        [
            "explain",
            str(img),
            "--model",
            "mobilenet_v3_small",
            "--weights",
            "DEFAULT",
            "--out",
            str(tmp_path / "r.html"),
            "--quiet",
        ],
        capsys,
    )
    line = [x for x in err.splitlines() if x.startswith("error")]
    assert status == 1 and len(line) == 1 and "Traceback" not in err
    assert "could not get the MobileNet_V3_Small_Weights.IMAGENET1K_V1 weights" in line[0]
    assert "use --weights none" in line[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_cli_help_describes_every_option(capsys):
    from inv_widgets.cli import _parser

    ex = _parser()._subparsers._group_actions[0].choices["explain"]
    for action in ex._actions:
        assert action.help and action.help != argparse_suppress(), action.dest
    status, _ = _run(["explain", "--help"], capsys)
    assert status == 0


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


def test_cli_writes_the_demo_page_and_a_target_by_index(tmp_path, capsys):
    status, err = _run(["explain", "--target", "3", "--k", "2", "--out", str(tmp_path / "r.html"), "--quiet"], capsys)
    assert status == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "Why <b>tree</b>?" in page and page.count("Grad-CAM</figure>") == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_cli_existing_directory_as_out_leaves_nothing_behind(tmp_path):
    """In a subprocess as a user runs it: refused at once in one line, nothing written in the directory or beside it
    (the old CLI computed the explanation, printed a traceback and left a temporary file next to the directory)."""
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "inv_widgets.cli", "explain", "--out", str(outdir), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 2
    line = _one_line_error(r.stderr)
    assert "is a directory; give a file name inside it" in line and str(outdir / "inv_report.html") in line
    assert [p.name for p in tmp_path.iterdir()] == ["outdir"] and not list(outdir.iterdir())


def test_cli_default_weights_without_network_subprocess(tmp_path):
    """``--weights DEFAULT`` with no way to download (an empty torch cache, every HTTPS request sent to a closed
    port): one line naming the fix, exit status 1, no traceback, nothing written."""
    import os

    img = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    env = dict(
        os.environ,
        TORCH_HOME=str(tmp_path / "torch_home"),
        https_proxy="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        no_proxy="",
        NO_PROXY="",
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "inv_widgets.cli",
            "explain",
            str(img),
            "--model",
            "mobilenet_v3_small",
            "--weights",
            "DEFAULT",
            "--out",
            str(tmp_path / "r.html"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error")]
    assert len(errors) == 1 and "could not get the MobileNet_V3_Small_Weights.IMAGENET1K_V1 weights" in errors[0]
    assert "use --weights none" in errors[0]
    assert not (tmp_path / "r.html").exists() and not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_cli_explain_help_text_names_and_describes_every_option(capsys):
    """What ``inv-widgets explain --help`` prints: every option, each followed by words saying what it does."""
    from inv_widgets.cli import main

    try:
        main(["explain", "--help"])
    except SystemExit as e:
        assert e.code == 0
    text = capsys.readouterr().out
    described = {
        "--model": "torchvision classifier",
        "--weights": "random, offline",
        "--target": "class to explain",
        "--layers": "layer names",
        "--layer-mode": "blocks",
        "--recipe": "clustering recipe",
        "--weighting": "gradient x activation",
        "--k": "cluster maps per layer",
        "--cmap": "colour map",
        "--out": "HTML file to write",
        "--quiet": "no progress bar",
        "image": "image file to explain",
    }
    flat = " ".join(text.split())
    for option, words in described.items():
        assert option in text and words in flat, (option, text)


def test_write_atomically_leaves_no_temporary_file_when_the_write_fails(tmp_path, monkeypatch):
    import os

    from inv_widgets.export import write_atomically

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    try:
        write_atomically(tmp_path / "r.html", "<p>page</p>")
    except OSError as e:
        assert "could not write" in str(e) and "No space left" in str(e)
    else:
        raise AssertionError("the failed write was not reported")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    write_atomically(tmp_path / "r.png", b"\x89PNG")  # bytes too
    assert (tmp_path / "r.png").read_bytes() == b"\x89PNG" and len(list(tmp_path.iterdir())) == 1


# ---- LIME, KernelSHAP and Grad-CAM beside INV (--baselines, issue 10, item 4) ---------------------------------


def _figures(page):
    """{caption: decoded image} of the page's figures whose caption follows the image."""
    import base64
    import io

    out = {}
    for data, caption in re.findall(r'<figure><img src="data:image/png;base64,([^"]+)"[^>]*>([^<]+)</figure>', page):
        out.setdefault(caption, np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))))
    return out


def test_cli_baselines_put_lime_kernelshap_and_gradcam_of_the_same_image_on_the_page(tmp_path, capsys):
    from inv_widgets import render
    from inv_widgets.concepts.baselines import attribution_maps

    out = tmp_path / "r.html"
    status, err = _run(
        [
            "explain",
            "--baselines",
            "--baseline-samples",
            "24",
            "--baseline-segments",
            "12",
            "--k",
            "2",
            "--out",
            str(out),
            "--quiet",
        ],
        capsys,
    )
    assert status == 0, err
    page = out.read_text()
    assert "Beside INV" in page and "24 model evaluations each over about 12 SLIC superpixels" in page
    figs = _figures(page)
    model, data = inv.demo.load()
    session = inv.Session(model, data)
    exp = session.explain(0)
    maps = attribution_maps(session, 0, exp.target, n_samples=24, n_segments=12, seed=0)
    for method, caption in [("lime", "LIME"), ("kernelshap", "KernelSHAP"), ("gradcam", "Grad-CAM")]:
        want = render.thumbnail(render.overlay(exp.image, maps[method], cmap="jet"), int(1.5 * 256))
        np.testing.assert_array_equal(figs[caption], want)  # the method's own map of this image and class
    assert "<script" not in page and page.count("Grad-CAM</figure>") == 8 + 1  # 8 layers and the baseline
    plain = tmp_path / "plain.html"
    status, err = _run(["explain", "--k", "2", "--out", str(plain), "--quiet"], capsys)
    assert status == 0 and "Beside INV" not in plain.read_text()


def test_cli_baseline_options_are_checked_first(tmp_path, capsys):
    out = tmp_path / "r.html"
    status, err = _run(["explain", "--baseline-samples", "50", "--out", str(out)], capsys)
    assert status == 2 and "add --baselines" in _one_line_error(err)
    status, err = _run(["explain", "--baselines", "--baseline-samples", "1", "--out", str(out)], capsys)
    assert status == 2 and "at least 3" in _one_line_error(err)
    status, err = _run(["explain", "--baselines", "--baseline-segments", "many", "--out", str(out)], capsys)
    assert status == 2 and "superpixels" in _one_line_error(err)
    assert list(tmp_path.iterdir()) == []


def test_cli_out_must_be_an_html_page(tmp_path, capsys):
    """``--out report.png`` wrote HTML into a .png (issue 22): refused first, in one line that names the fix."""
    for name in ("report.png", "report.pdf", "report"):
        status, err = _run(["explain", "--out", str(tmp_path / name), "--quiet"], capsys)
        line = _one_line_error(err)
        assert status == 2 and "the report is an HTML page" in line and ".to_sheet(" in line, line
    assert list(tmp_path.iterdir()) == []
    status, err = _run(["explain", "--k", "2", "--out", str(tmp_path / "Report.HTM"), "--quiet"], capsys)
    assert status == 0, err


def test_cli_baselines_without_the_concepts_extra_say_so_before_explaining(tmp_path, capsys, monkeypatch):
    """Without captum (the ``concepts`` extra) ``--baselines`` ran the whole explanation, then printed a
    traceback; now the one-line error names the install command, and the model never runs."""
    import importlib.util

    import inv_widgets.session

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == "captum" else real(name, *a, **k)
    )
    ran = []
    monkeypatch.setattr(inv_widgets.session.Session, "explain", lambda *a, **k: ran.append(1))
    status, err = _run(["explain", "--baselines", "--out", str(tmp_path / "r.html")], capsys)
    line = _one_line_error(err)
    assert status == 2 and "captum" in line and "pip install 'inv-widgets[concepts]'" in line, line
    assert ran == [] and list(tmp_path.iterdir()) == []
