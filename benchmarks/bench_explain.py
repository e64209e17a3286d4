"""Speed and memory of a full explanation, as ratios to the model's own forward+backward time.

    python benchmarks/bench_explain.py            # VGG-16 and ResNet-50, random weights, 224 px, CPU
    python benchmarks/bench_explain.py --quick    # fewer repeats
    python benchmarks/bench_explain.py --ablation-only   # only the ablation and baseline figures (demo, VGG-16)

For each model it prints the median forward+backward time (the logit's backward with parameter
gradients, what a plain training step or a hand-written Grad-CAM does), the median time of a full
explanation of all conv layers per recipe and its ratio to that, the median recut time for k = 2..8
and the peak resident memory of a fresh process that runs one explanation.
Targets (issue "Core INV engine"): fast recipe over all 13 VGG-16 conv layers <= 1.25x, paper recipe
<= 3x, recut <= 10 ms median, peak memory of one VGG-16 explanation < 1.5 GB.

Ablation (issue 10): ``Clusters.ablation()`` of the suggested cut, per layer (one batched forward pass of the
K masked copies from the layer on, plus the whole-layer copy), for the demo CNN (target: <= 100 ms for one
layer) and VGG-16, against the model's plain forward pass; and the Explorer's deletion / insertion curves of
one map against Grad-CAM (25 steps).

Baselines (issue 10): the per-image cost of LIME, KernelSHAP (captum over SLIC superpixels, the default
sample and superpixel counts) and Grad-CAM as the Explorer's compare view and ``inv-widgets explain
--baselines`` compute them (``inv_widgets.concepts.baselines.attribution_maps``, nothing cached: each
repeat another seed), for the demo CNN and VGG-16, against the model's plain forward pass.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torchvision

import inv_widgets as inv

MODELS = {"vgg16": torchvision.models.vgg16, "resnet50": torchvision.models.resnet50}


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def build(name):
    torch.manual_seed(0)
    model = MODELS[name](weights=None).eval()
    x = torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(1))
    return model, x


def peak_memory(name, recipe):
    """Resident memory (MB) of a fresh process: with the model loaded, and its peak during one explanation
    (sampled every 2 ms from /proc/self/statm; model construction's own transient peak excluded)."""
    code = f"""
import gc, json, os, sys, threading, time
sys.path.insert(0, {repr(str(__file__).rsplit('/', 1)[0])})
from bench_explain import build
import inv_widgets as inv
page = os.sysconf("SC_PAGE_SIZE") / 2**20
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
model, x = build({name!r})
gc.collect()
base = rss(); peak = [base]; done = [False]
def sample():
    while not done[0]:
        peak[0] = max(peak[0], rss()); time.sleep(0.002)
t = threading.Thread(target=sample); t.start()
exp = inv.Session(model, [x]).explain(0, recipe={recipe!r})
[exp[n].cut() for n in exp.layers]
done[0] = True; t.join()
print(json.dumps({{"base": base, "peak": max(peak[0], rss())}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(name, repeats, recipes):
    model, x = build(name)
    target = int(model(x[None]).argmax())

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        model(x[None])[0, target].backward()

    fwd_bwd()  # warm-up
    inv.Session(model, [x]).explain(0, recipe="paper")  # warm-up: imports, allocator
    model.zero_grad(set_to_none=True)

    def full(recipe):
        exp = inv.Session(model, [x], cache_size=1).explain(0, recipe=recipe)
        for n in exp.layers:
            exp.layer(n, recipe).cut()

    # interleaved, so that a change of load on a shared machine hits every figure alike
    times = {"fwd+bwd": []} | {r: [] for r in recipes}
    for i in range(repeats):
        times["fwd+bwd"].append(median_time(fwd_bwd, 1))
        model.zero_grad(set_to_none=True)
        for recipe in recipes:
            if recipe == "fast" or i < max(1, repeats // 2):  # the slow recipes fewer times
                times[recipe].append(median_time(lambda: full(recipe), 1))
    base = statistics.median(times["fwd+bwd"])
    n_layers = len(inv.Session(model, [x]).layers)
    print(f"\n{name}: {n_layers} conv layers, input 224x224, {torch.get_num_threads()} threads, "
          f"medians of {repeats} interleaved runs")
    print(f"  forward+backward                 {base * 1000:8.1f} ms   1.00x")
    for recipe in recipes:
        t = statistics.median(times[recipe])
        print(f"  explain, recipe {recipe:<14}  {t * 1000:8.1f} ms   {t / base:.2f}x")
    exp = inv.Session(model, [x]).explain(0, recipe="fast")
    recut = []
    for n in exp.layers:
        lr = exp.layer(n, "fast")
        for k in range(2, 9):
            lr._cuts.clear()
            t = time.perf_counter()
            lr.cut(k=k)
            recut.append(time.perf_counter() - t)
    recut_sorted = sorted(recut)
    print(f"  recut k=2..8, all layers         median {statistics.median(recut) * 1000:.2f} ms, "
          f"p95 {recut_sorted[int(0.95 * (len(recut) - 1))] * 1000:.2f} ms  ({len(recut)} cuts)")
    for recipe in [r for r in recipes if r != "paper-sklearn"]:
        mem = peak_memory(name, recipe)
        print(f"  peak RSS, recipe {recipe:<14} {mem['peak']:8.0f} MB for one explanation "
              f"({mem['base']:.0f} MB with the model loaded, +{mem['peak'] - mem['base']:.0f} MB)")


def bench_ablation(repeats):
    """Per layer: the median time of one cut's ablation (nothing cached), against a plain forward pass."""
    from inv_widgets.widgets.explorer.faithfulness_view import CURVE_STEPS

    demo_model, demo_data = inv.demo.load(n=4)
    vgg, x = build("vgg16")
    cases = [("demo CNN (128 px)", inv.Session(demo_model, demo_data)),
             ("VGG-16 (224 px, random weights)", inv.Session(vgg, [x]))]
    for title, session in cases:
        exp = session.explain(0)
        x0 = session.input(0)[None]
        with torch.no_grad():
            fwd = median_time(lambda: session.model(x0), repeats)
        print(f"\nablation, {title}: {torch.get_num_threads()} threads, medians of {repeats}; plain forward "
              f"{fwd * 1000:.1f} ms")
        worst = 0.0
        for name in exp.layers:
            lr = exp[name]
            cl = lr.cut()
            if not cl.k:
                continue
            lr.ablation(cl.members)  # first use at a layer also checks the copies against the plain pass
            t = median_time(lambda: lr.ablation(cl.members), repeats)
            worst = max(worst, t)
            print(f"  {name:<28} K = {cl.k}  {t * 1000:7.1f} ms  {t / fwd:5.2f}x forward")
        target = "  (target <= 100 ms)" if session.model is demo_model else ""
        print(f"  slowest layer {worst * 1000:.1f} ms{target}")
        cl = exp[exp.layers[-1]].cut()
        t = median_time(lambda: exp.curves(np.stack([cl.maps[0], exp[exp.layers[-1]].gradcam()]), steps=CURVE_STEPS),
                        max(1, repeats // 3))
        print(f"  deletion + insertion curves of one map and Grad-CAM ({CURVE_STEPS} steps, "
              f"{4 * (CURVE_STEPS - 1) + 2} images): {t * 1000:.0f} ms")


def bench_baselines(repeats):
    """Per image: LIME, KernelSHAP and Grad-CAM (nothing cached), against a plain forward pass."""
    from inv_widgets.concepts import baselines
    from inv_widgets.concepts.baselines import BATCH, DEFAULT_SAMPLES, DEFAULT_SEGMENTS, attribution_maps

    demo_model, demo_data = inv.demo.load(n=4)
    vgg, x = build("vgg16")
    cases = [("demo CNN (128 px)", inv.Session(demo_model, demo_data), repeats),
             ("VGG-16 (224 px, random weights)", inv.Session(vgg, [x]), max(1, repeats // 3))]
    for title, session, reps in cases:
        exp = session.explain(0)
        x0 = session.input(0)[None]
        with torch.no_grad():
            fwd = median_time(lambda: session.model(x0), repeats)
            batch = median_time(lambda: session.model(x0.expand(BATCH, -1, -1, -1)), max(1, repeats // 3))
        print(f"\nbaselines, {title}: {torch.get_num_threads()} threads, medians of {reps}; {DEFAULT_SAMPLES} "
              f"model evaluations each for LIME and KernelSHAP, {DEFAULT_SEGMENTS} superpixels asked for; plain "
              f"forward {fwd * 1000:.1f} ms, a batch of {BATCH} {batch * 1000:.0f} ms")
        attribution_maps(session, 0, exp.target, methods=["lime"], n_samples=8)  # captum's and skimage's imports
        for method in ("lime", "kernelshap", "gradcam"):
            def once():
                baselines._caches.pop(session, None)  # nothing cached: SLIC included, as on a first request
                attribution_maps(session, 0, exp.target, methods=[method])
            t = median_time(once, reps)
            how = "from INV's cached pass" if method == "gradcam" else "SLIC included"
            print(f"  {method:<11} {t:8.3f} s per image  {t / fwd:7.1f}x forward  ({how})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 repeats")
    ap.add_argument("--recipes", nargs="+", default=["fast", "paper", "paper-sklearn"])
    ap.add_argument("--ablation-only", action="store_true", help="only the ablation and baseline figures")
    ap.add_argument("--no-baselines", action="store_true", help="leave out LIME / KernelSHAP / Grad-CAM costs")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:  # the command's setting for the whole process (on a busy machine one thread is steadier)
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else args.repeats
    print(f"torch {torch.__version__}, inv-widgets {inv.__version__}, CPU")
    if not args.ablation_only:
        for name in args.models:
            bench(name, repeats, args.recipes)
    bench_ablation(repeats)
    if not args.no_baselines:
        bench_baselines(repeats)


if __name__ == "__main__":
    main()
