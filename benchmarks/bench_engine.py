"""The explanation rows of issue 24, each against its baseline measured in the same run (interleaved).

    python benchmarks/bench_engine.py [--repeats 5] [--rounds 2] [--baseline REF] [--stages] [--no-paper]
                                      [--maps gradcam|published] [--layer-point activation|conv]

VGG-16 (torchvision, random weights), 224 x 224, all 13 conv layers, a new image each call:

- **the limit**: the network's forward pass and a backward pass to the input only
  (``torch.autograd.grad(logit, x)``: no parameter gradients), what any gradient explanation must pay;
- forward+backward with parameter gradients (``logit.backward()``, a training step's or a hand-written
  Grad-CAM's pass), the baseline the older figures used;
- ``fast``: ``session.explain(i)`` and every layer's suggested cut (``Explanation.cuts()``; a ``--baseline``
  revision without it builds the trees together with ``compute()`` and cuts the layers in turn), the Session built
  once (target <= 1.1x of the limit);
- ``inv.explain(model, image)`` and every suggested cut: one-off, builds a Session each call (target <= 1.2x);
- ``paper``: the same work with the paper recipe, the Session built once (target <= 1.5x of the limit).

Each round is a fresh process that runs the rows in turn, ``--repeats`` times (so that a change of the machine's
speed hits every row alike); printed per row: the median and p95 of its time over all repeats, and of its ratio
to the limit taken repeat by repeat (the row's time over the limit's in the same repeat), and the median ratio
to forward+backward. ``--baseline REF`` runs the code of git revision REF (``git archive``) in
processes of its own, alternating with the working tree round by round, and prints its rows and the ratio of the
two codes' ratios. ``--stages`` adds where the working tree's ``fast`` explanation spends its time (the model's
pass with the capture, the layers' maps, the trees, the cuts), each stage against the limit, interleaved, and the
same pass with its hooks but the per-channel statistics replaced by zeros (what the hooks alone cost).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ROWS = {
    "limit": "limit: forward + backward to the input",
    "fwd_bwd": "forward+backward, parameter gradients",
    "fast": "fast, session built once",
    "one_off": "inv.explain(model, image), one-off",
    "paper": "paper, session built once",
}
TARGETS = {"fast": 1.1, "one_off": 1.2, "paper": 1.5}
STAGES = ["stage_capture", "stage_layer_maps", "stage_trees", "stage_cuts", "stage_capture_no_statistics"]


def pct(values, q):
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def worker(args) -> dict:
    """The rows, timed in this process with the ``inv_widgets`` on ``PYTHONPATH``: {row: [seconds]}."""
    import torch
    import torchvision

    import inv_widgets as inv

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    g = torch.Generator().manual_seed(1)
    images = [torch.randn(3, 224, 224, generator=g) for _ in range(args.images)]
    with torch.no_grad():
        targets = [int(model(x[None]).argmax()) for x in images]
    import inspect

    kw = {"maps": args.maps, "layer_point": args.layer_point}  # the session's defaults unless asked
    if "maps" not in inspect.signature(inv.Session).parameters:  # a --baseline revision from before map types
        kw = {}
    session = inv.Session(model, images, cache_size=1, **kw)
    paper = inv.Session(model, images, cache_size=1, recipe="paper", **kw)
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
        if hasattr(exp, "cuts"):  # every layer's cut in one call (Explanation.cuts: the layers side by side)
            exp.cuts(recipe)
            return
        exp.compute(recipe)  # a --baseline revision from before Explanation.cuts: its best, trees built together
        for name in exp.layers:
            exp.layer(name, recipe).cut()

    def fast():
        with_cuts(session.explain(next_image()), "fast")

    def one_off():
        with_cuts(inv.explain(model, images[next_image()], **kw), "fast")

    def paper_recipe():
        with_cuts(paper.explain(next_image()), "paper")

    rows = {"limit": limit, "fwd_bwd": fwd_bwd, "fast": fast, "one_off": one_off}
    if args.paper_every:
        rows["paper"] = paper_recipe
    stage_times: dict[str, list[float]] = {s: [] for s in STAGES} if args.stages else {}
    if args.stages:
        from inv_widgets.engine.cut import cut_layer, layer_maps
        from inv_widgets.engine.recipes import build_trees

        layers = session.layers
        capture_module = importlib.import_module("inv_widgets.engine.capture")

        def no_statistics(acts, grads, weighting=None):
            zero = torch.zeros(acts.shape[:2])
            return zero, zero, zero

        def stages():
            i = next_image()
            t0 = time.perf_counter()
            gradcam = getattr(session, "maps", "published") == "gradcam"  # needs both channel statistics
            cap = session.runner.capture(
                images[i][None], layers, None, weighting=None if gradcam else "guided", spatial_only=True
            )
            t1 = time.perf_counter()
            lms = layer_maps(cap, "guided", **({"maps": session.maps} if gradcam else {}))[0]
            t2 = time.perf_counter()
            trees = build_trees([lms[n].maps for n in cap.order], "fast")
            t3 = time.perf_counter()
            for n, tree in zip(cap.order, trees):
                cut_layer(n, lms[n], tree)
            t4 = time.perf_counter()
            # the same pass and hooks with the per-channel statistics replaced by zeros: what the hooks themselves
            # cost (a floor for the capture: the default maps need all three statistics)
            real = capture_module.channel_statistics
            capture_module.channel_statistics = no_statistics
            try:
                t5 = time.perf_counter()
                session.runner.capture(images[i][None], layers, None, weighting=None, spatial_only=True)
                t6 = time.perf_counter()
            finally:
                capture_module.channel_statistics = real
            for s, t in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t6 - t5)):
                stage_times[s].append(t)

        rows["stages"] = stages
    for fn in rows.values():  # warm-up: imports, allocator, the sessions' first pass
        fn()
    times: dict[str, list[float]] = {name: [] for name in rows if name != "stages"}
    repeat_of: dict[str, list[int]] = {name: [] for name in list(times) + list(stage_times)}
    for r in range(args.repeats):
        for name, fn in rows.items():
            if name == "paper" and r % args.paper_every:
                continue
            t = timed(fn)
            for key in (STAGES if name == "stages" else [name]):
                repeat_of[key].append(r)
            if name != "stages":
                times[name].append(t)
    times.update(stage_times)
    times["_repeat"] = repeat_of
    times["_meta"] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "layers": len(session.layers)}
    return times


def extract(ref: str, dest: Path) -> Path:
    """The repository's files at git revision ``ref`` in ``dest`` (``git archive``: the checkout is not touched)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_worker(code: Path, args, stages: bool) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--repeats", str(args.repeats),
           "--images", str(args.images), "--paper-every", str(args.paper_every), "--threads", str(args.threads),
           "--maps", args.maps, "--layer-point", args.layer_point]
    if stages:
        cmd.append("--stages")
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"the benchmark process for {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(label: str, runs: list[dict]) -> dict[str, float]:
    """Print a code's rows (all its rounds pooled); returns each row's median ratio to the limit.

    A row's ratio is taken repeat by repeat (its time over the limit's in the same repeat, a few seconds
    apart), so that the machine's changes of speed between repeats and rounds cancel out; printed: the
    median and p95 of those ratios, and the median and p95 of the times themselves."""
    pooled: dict[str, list[float]] = {}
    paired: dict[str, list[float]] = {}
    for run in runs:
        for k, v in run.items():
            if k.startswith("_"):
                continue
            pooled.setdefault(k, []).extend(v)
            for key in ("limit", "fwd_bwd"):  # the reference ran in every repeat
                paired.setdefault((k, key), []).extend(t / run[key][r] for t, r in zip(v, run["_repeat"][k]))
    print(f"\n{label}")
    ratios = {}
    for key in list(ROWS) + STAGES:
        ts = pooled.get(key)
        if not ts:
            continue
        r_lim, r_fb = paired[(key, "limit")], paired[(key, "fwd_bwd")]
        ratios[key] = statistics.median(r_lim)
        goal = f"  target <= {TARGETS[key]:.1f}x" if key in TARGETS else ""
        name = ROWS.get(key, "  " + key.replace("stage_", "stage: "))
        print(f"  {name:42s} {1000 * statistics.median(ts):8.1f} ms (p95 {1000 * pct(ts, 0.95):8.1f}, n={len(ts):2d})  "
              f"{ratios[key]:5.2f}x the limit (p95 {pct(r_lim, 0.95):5.2f}x), "
              f"{statistics.median(r_fb):5.2f}x forward+backward{goal}")
    return ratios


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="repeats of every row per round")
    ap.add_argument("--rounds", type=int, default=2, help="fresh processes per code")
    ap.add_argument("--images", type=int, default=8, help="distinct images, used in turn")
    ap.add_argument("--paper-every", type=int, default=2, help="the paper row runs in every n-th repeat")
    ap.add_argument("--no-paper", action="store_true", help="leave the paper row out")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice); on a busy "
                    "machine 1 measures the work of each row without the waits of threads for each other")
    ap.add_argument("--baseline", default=None, help="git revision measured in the same run, alternating")
    ap.add_argument("--stages", action="store_true", help="where the fast explanation's time goes")
    ap.add_argument("--maps", default="gradcam", choices=["gradcam", "published", "contrast"],
                    help="the sessions' map type (default gradcam, the Session's default)")
    ap.add_argument("--layer-point", default="activation", choices=["activation", "conv"],
                    help="where the sessions read each layer (default activation, the Session's default)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.no_paper:
        args.paper_every = 0
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    codes = {"working tree": REPO}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            codes[f"baseline {args.baseline}"] = extract(args.baseline, Path(tmp) / "baseline")
        runs: dict[str, list[dict]] = {label: [] for label in codes}
        for r in range(args.rounds):
            for label, code in (codes.items() if r % 2 == 0 else reversed(codes.items())):
                runs[label].append(run_worker(code, args, args.stages and label == "working tree"))
    meta = runs["working tree"][0]["_meta"]
    print(f"VGG-16, random weights, 224 x 224, {meta['layers']} conv layers, torch {meta['torch']}, "
          f"{meta['threads']} threads; {args.rounds} rounds (fresh processes) x {args.repeats} interleaved repeats, "
          f"a new image each call; load average before: {os.getloadavg()[0]:.1f}")
    ratios = {label: report(label, rs) for label, rs in runs.items()}
    if args.baseline:
        new, old = ratios["working tree"], ratios[f"baseline {args.baseline}"]
        print(f"\nworking tree against {args.baseline} (ratio of their ratios to the limit):")
        for key in ROWS:
            if key in new and key in old and key != "limit":
                print(f"  {ROWS[key]:42s} {old[key]:5.2f}x -> {new[key]:5.2f}x of the limit ({new[key] / old[key]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
