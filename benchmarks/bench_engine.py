"""The explanation rows of issue 24, each against its baseline measured in the same run (interleaved).

    python benchmarks/bench_engine.py [--repeats 7] [--images 8] [--profile]

VGG-16 (torchvision, random weights), 224 x 224, all 13 conv layers, a new image each call:

- **the limit**: the network's forward pass and a backward pass to the input only
  (``torch.autograd.grad(logit, x)``: no parameter gradients), what any gradient explanation must pay;
- forward+backward with parameter gradients (``logit.backward()``, a training step's or a hand-written
  Grad-CAM's pass), the baseline the older figures used;
- ``fast``: ``session.explain(i)`` and every layer's suggested cut, the Session built once (target <= 1.1x of the
  limit);
- ``inv.explain(model, image)`` and every suggested cut: one-off, builds a Session each call (target <= 1.2x);
- ``paper``: the same work with the paper recipe, the Session built once (target <= 1.5x of the limit).

Printed per row: median and p95 of the repeats, and the ratio of medians to the limit and to forward+backward.
The machine's speed moves within minutes, so the rows run in turn within each repeat and only ratios count.
``--profile`` adds where one ``fast`` explanation spends its time (cProfile, cumulative, top entries).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import inv_widgets as inv  # noqa: E402


def pct(values, q):
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--images", type=int, default=8, help="distinct images, used in turn")
    ap.add_argument("--paper-every", type=int, default=2, help="the paper row runs in every n-th repeat")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(3, 224, 224, generator=g) for _ in range(args.images)]
    targets = [int(model(x[None]).argmax()) for x in images]
    session = inv.Session(model, images, cache_size=1)
    paper = inv.Session(model, images, cache_size=1, recipe="paper")
    n_layers = len(session.layers)
    count = {"i": 0}

    def next_image() -> int:
        count["i"] += 1
        return count["i"] % len(images)

    def limit():
        i = next_image()
        x = images[i][None].clone().requires_grad_(True)
        torch.autograd.grad(model(x)[0, targets[i]], x)

    def fwd_bwd():
        i = next_image()
        model.zero_grad(set_to_none=True)
        model(images[i][None])[0, targets[i]].backward()
        model.zero_grad(set_to_none=True)

    def with_cuts(exp, recipe):
        for name in exp.layers:
            exp.layer(name, recipe).cut()

    def fast():
        with_cuts(session.explain(next_image()), "fast")

    def one_off():
        with_cuts(inv.explain(model, images[next_image()]), "fast")

    def paper_recipe():
        with_cuts(paper.explain(next_image()), "paper")

    rows = {"limit: forward + backward to the input": limit, "forward+backward, parameter gradients": fwd_bwd,
            "fast, session built once": fast, "inv.explain(model, image), one-off": one_off,
            "paper, session built once": paper_recipe}
    for fn in rows.values():  # warm-up: imports, allocator, the sessions' first pass
        fn()
    times = {name: [] for name in rows}
    for r in range(args.repeats):
        for name, fn in rows.items():
            if name.startswith("paper") and r % args.paper_every:
                continue
            times[name].append(timed(fn))
    base = statistics.median(times["limit: forward + backward to the input"])
    fb = statistics.median(times["forward+backward, parameter gradients"])
    print(f"VGG-16, random weights, 224 x 224, {n_layers} conv layers, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.repeats} interleaved repeats, a new image each call")
    targets_x = {"fast, session built once": 1.1, "inv.explain(model, image), one-off": 1.2,
                 "paper, session built once": 1.5}
    for name, ts in times.items():
        m = statistics.median(ts)
        goal = f"  target <= {targets_x[name]:.1f}x of the limit" if name in targets_x else ""
        print(f"  {name:40s} median {1000 * m:8.1f} ms, p95 {1000 * pct(ts, 0.95):8.1f} ms (n={len(ts)})  "
              f"{m / base:5.2f}x the limit, {m / fb:5.2f}x forward+backward{goal}")
    if args.profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        fast()
        pr.disable()
        print("\nwhere one fast explanation (and its cuts) spends its time:")
        pstats.Stats(pr).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
