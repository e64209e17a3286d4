"""`python -m inv_widgets.eval sanity` end to end at a tiny size (issue 25: "eval sanity runs in CI at a small
size"): the printed table has a row per map type and map at both layers, figures with CIs, the pointing game and
issue 25's target line per map type."""

from __future__ import annotations

import re

import pandas as pd

FIG = r"(-?\d\.\d\d) \[(-?\d\.\d\d), (-?\d\.\d\d)\]"


def test_eval_sanity_prints_its_table_and_the_target_line(capsys, tmp_path):
    from inv_widgets.eval import main

    out_csv = tmp_path / "sanity.csv"
    argv = "sanity --n 3 --maps published gradcam --tests cascade random-class --quiet".split()
    status = main([*argv, "--csv", str(out_csv)])
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith("eval sanity: split dev (3 images), layer point activation")
    lines = out.splitlines()
    for layer in ("features.block3_conv1", "features.block4_conv2"):
        at = lines.index(layer)
        header = lines[at + 1]
        assert "head re-initialised" in header and "random class" in header and "ref: other image" in header
        rows = {}
        for line in lines[at + 2 : at + 7]:
            name = line[:24].strip()
            rows[name] = re.findall(FIG, line)
        assert list(rows) == [
            "published heaviest",
            "published union",
            "gradcam heaviest",
            "gradcam union",
            "Grad-CAM map",
        ]
        for name, figs in rows.items():
            # head re-initialised, cascade to the first layer, random class, other image, edge map: all measured
            assert len(figs) == 5, (name, figs)
            for value, lo, hi in figs:
                assert -1.0 <= float(lo) <= float(value) <= float(hi) <= 1.0, (name, figs)
        assert lines[at + 7].startswith("  SSIM, head re-initialised / random class: published union ")
    pointing = [
        line
        for line in lines
        if line.startswith("  published  heaviest")
        or line.startswith("  gradcam    heaviest")
        or line.startswith("  Grad-CAM   heaviest")
    ]
    assert len(pointing) == 3 and all(len(re.findall(FIG, p)) == 4 for p in pointing)
    target = lines[lines.index("issue 25's target at the deepest layer:") + 1 :]
    assert len(target) == 2
    for kind, line in zip(("published", "gradcam"), target):
        assert re.match(
            rf"  (met|NOT met): {kind}: rho <= 0\.3 \(head, random class\) and pointing >= 0\.95 "
            r"\(heaviest: head ",
            line,
        ), line
        assert len(re.findall(FIG, line)) == 6
    records = pd.read_csv(out_csv)
    assert {"published", "gradcam", "Grad-CAM"} <= set(records["kind"])
    assert records["image"].nunique() == 3
