"""Every file the package writes follows the umask, as a plain ``open(path, "w")`` would (issue 22): a report on a
shared JupyterHub is readable by the group under umask 022 and private under 077, and overwriting a shared file
keeps its permissions."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from inv_widgets.files import atomic_write, current_umask

# Run in a fresh process: the umask is the process's, and every export path is exercised as a user calls it.
SCRIPT = textwrap.dedent("""
    import json, os, stat, sys
    from pathlib import Path
    import pandas as pd
    os.umask(int(sys.argv[2], 8))
    import inv_widgets as inv
    from inv_widgets.cli import main
    from inv_widgets.concepts import GlobalExplanation
    out = Path(sys.argv[1])
    model, data = inv.demo.load(n=4)
    exp = inv.Session(model, data).explain(0)
    cl = exp[exp.layers[-1]].cut()
    exp.to_html(out / "report.html")
    cl.to_png(0, out / "map0.png")
    cl.to_sheet(out / "sheet.png")
    row = dict(model="m0", image_id="img0", target=0, layer="l", members="1", label="wheel", score=1.0,
               frequency=1, mean_step=0.0, n_wrong=0, rank=1, n_maps=1, weight=10.0)
    GlobalExplanation.from_labels(pd.DataFrame([row]), class_names=["car"], layers=["l"]).to_html(out / "global.html")
    inv.LabelStore(":memory:").to_csv(out / "labels.csv")
    assert main(["explain", "--k", "2", "--quiet", "--out", str(out / "cli.html")]) == 0
    shared = out / "shared.html"
    shared.write_text("old")
    os.chmod(shared, 0o640)
    exp.to_html(shared)
    print(json.dumps({p.name: stat.S_IMODE(p.stat().st_mode) for p in sorted(out.iterdir())}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("umask, mode", [("022", 0o644), ("077", 0o600)])
def test_every_export_follows_the_umask(tmp_path, umask, mode):
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), umask], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    modes = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(modes) == {
        "report.html",
        "map0.png",
        "sheet.png",
        "global.html",
        "labels.csv",
        "cli.html",
        "shared.html",
    }  # nothing else, no temporary file
    assert modes.pop("shared.html") == 0o640  # an overwritten file keeps its own permissions
    assert modes == dict.fromkeys(modes, mode), {k: oct(v) for k, v in modes.items()}


def test_atomic_write_applies_the_umask_in_this_process(tmp_path):
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        p = atomic_write(tmp_path / "a.txt", lambda f: f.write("x"))
        assert stat.S_IMODE(p.stat().st_mode) == 0o640
        os.chmod(p, 0o604)
        atomic_write(p, lambda f: f.write(b"y"), binary=True)
        assert stat.S_IMODE(p.stat().st_mode) == 0o604 and p.read_bytes() == b"y"
    finally:
        os.umask(old)
    assert current_umask() == old
