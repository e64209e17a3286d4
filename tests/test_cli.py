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
    r = subprocess.run([sys.executable, "-m", "inv_widgets.cli", "explain", str(img), "--model", "mobilenet_v3_small",
                        "--k", "3", "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    page = out.read_text()
    tv = __import__("torchvision").models
    n_layers = len(inv.Session(tv.mobilenet_v3_small(), [str(img)],
                               transform=tv.MobileNet_V3_Small_Weights.DEFAULT.transforms()).layers)
    assert n_layers == 52 - 18  # the 1 x 1 convolutions of the squeeze-excitation blocks are left out
    assert page.count("Grad-CAM</figure>") == n_layers
    assert len(re.findall(r"w = \d+\.\d%", page)) >= n_layers  # every layer shows weighted cluster maps
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained
    assert not list(tmp_path.glob("*.tmp"))


def test_cli_reports_bad_input_clearly(tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    r = subprocess.run([sys.executable, "-m", "inv_widgets.cli", "explain", str(bad), "--model", "mobilenet_v3_small",
                        "--out", str(tmp_path / "x.html")], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert "cannot read" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.html").exists()


def test_report_escapes_class_names(tiny_cnn):
    names = ["<script>alert(1)</script>", "b", "c", "d", "e"]
    exp = inv.explain(tiny_cnn, torch.rand(3, 16, 16), class_names=names, target=0)
    page = explanation_html(exp, k=2)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
