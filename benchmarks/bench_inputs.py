"""Inputs sized for the model (issue 23, finding 1): memory and time of a phone photo with the default model,
and how close the memory estimate comes to what an explanation takes.

    python benchmarks/bench_inputs.py            # 12-MP photo via CLI and Session, 81-MP refusal, estimate
    python benchmarks/bench_inputs.py --quick    # the estimate at two sizes only

Every figure comes from a fresh process (``VmHWM``: the peak resident memory of that process; not
``ru_maxrss``, which Linux carries over from a parent across fork and exec):

* the 12-megapixel photo (a 4000 x 3000 JPEG) through ``inv-widgets explain photo.jpg`` (the demo model, the
  default) and through ``Session(*inv.demo.load()).explain(path)``: peak MB and seconds (target: < 1.5 GB);
* an 81-megapixel PNG (9000 x 9000) through both: seconds to the error (target: a clear error in seconds);
* the demo CNN explained at full size (``input_size=None``) at 0.5, 1 and 2 megapixels: the memory the
  explanation adds (peak minus the peak after a 64 x 64 explanation) against ``InputLimits.estimate``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO = r"""
import json, sys, time
mode, path, out = sys.argv[1:4]
import inv_widgets as inv
from inv_widgets.cli import main
def hwm():
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
error = ""
t0 = time.perf_counter()
try:
    if mode == "cli":
        status = main(["explain", path, "--quiet", "--out", out])
    else:
        inv.Session(*inv.demo.load()).explain(path)
        status = 0
except Exception as e:
    status, error = 1, str(e)
print(json.dumps({"status": status, "seconds": time.perf_counter() - t0, "peak_mb": hwm(), "error": error[:200]}))
"""

ESTIMATE = r"""
import json, sys
import numpy as np, torch
import inv_widgets as inv
from PIL import Image
side = int(sys.argv[1])
def hwm():
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
model, data = inv.demo.load()
s = inv.Session(model, [Image.new("RGB", (64, 64))], transform=data.transform, input_size=None, max_memory=None)
s.explain(0)
base = hwm()
pic = Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), np.uint8))
estimate = s.inputs.estimate(torch.zeros(3, side, side))
s.explain(pic)
print(json.dumps({"side": side, "added_mb": (hwm() - base) / 2**20, "estimate_mb": estimate / 2**20}))
"""


def run(code, *args):
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.quick:
            rng = np.random.default_rng(0)
            y, x = np.mgrid[0:3000, 0:4000].astype(np.float32)
            base = np.stack([x / 4000 * 200, y / 3000 * 180, (x + y) / 7000 * 160], -1)
            Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)).save(
                tmp / "photo.jpg", quality=90)
            Image.new("1", (9000, 9000), 1).save(tmp / "huge.png")
            for name, pic in (("12-MP photo", "photo.jpg"), ("81-MP picture", "huge.png")):
                for mode in ("cli", "session"):
                    got = run(PHOTO, mode, tmp / pic, tmp / "page.html")
                    what = "explained" if got["status"] == 0 else f"refused ({got['error'][:70]}...)"
                    print(f"{name:14s} {mode:8s} {what}: peak {got['peak_mb']:.0f} MB, {got['seconds']:.2f} s")
        sides = (724, 1024) if args.quick else (724, 1024, 1448)
        for side in sides:
            got = run(ESTIMATE, side)
            print(f"demo CNN at {side}x{side} ({side * side / 1e6:.2f} MP): the explanation adds "
                  f"{got['added_mb']:.0f} MB, estimated {got['estimate_mb']:.0f} MB "
                  f"(estimate / measured {got['estimate_mb'] / got['added_mb']:.2f})")


if __name__ == "__main__":
    main()
