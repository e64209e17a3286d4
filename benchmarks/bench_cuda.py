"""The CUDA path: explanations on a GPU agree with the CPU, and how fast batches go.

    python benchmarks/bench_cuda.py              # needs a CUDA device
    python benchmarks/bench_cuda.py --device cpu --quick   # a dry run of the same code on the CPU

Prints, for the device named:
1. agreement with the CPU on the embedded demo (8 images): the largest difference of the per-channel
   weights (percent) and of the Grad-CAMs, the share of layers whose kept channels are the same, and the
   adjusted Rand index of the default cut of every layer;
2. torchvision VGG-16 (random weights, 224 px): the model's own forward+backward time, one explanation
   (capture only, then with the fast and the paper recipe) as ratios to it;
3. ``Session.explain_many`` throughput (images per second, capture and per-layer weights, dendrograms left
   lazy) for several batch sizes, with the peak GPU memory of each, for VGG-16 and the demo CNN.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torchvision
from sklearn.metrics import adjusted_rand_score

import inv_widgets as inv


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, repeats, device):
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def agreement(device, n_images):
    model, data = inv.demo.load()
    cpu = inv.Session(model, data, device="cpu", cache_size=1)
    model_dev, _ = inv.demo.load()
    dev = inv.Session(model_dev, data, device=device, cache_size=1)
    d_weight = d_cam = 0.0
    same_kept, aris, layers = 0, [], 0
    same_pred = 0
    for i in range(n_images):
        a, b = cpu.explain(i, lazy=True), dev.explain(i, lazy=True)
        same_pred += a.predicted == b.predicted
        for name in a.layers:
            la, lb = a[name], b[name]
            layers += 1
            d_weight = max(d_weight, float(np.abs(la.channel_weights - lb.channel_weights).max()))
            d_cam = max(d_cam, float(np.abs(la.gradcam() - lb.gradcam()).max()))
            if np.array_equal(la.kept, lb.kept):
                same_kept += 1
                aris.append(adjusted_rand_score(la.cut().assignment, lb.cut().assignment))
    print(f"\n1. CPU vs {device} on the demo ({n_images} images, {layers} layers)")
    print(f"  same prediction                    {same_pred}/{n_images}")
    print(f"  max |weight difference|            {d_weight:.2e} percentage points")
    print(f"  max |Grad-CAM difference|          {d_cam:.2e} (maps in [0, 1])")
    print(f"  layers with the same kept channels {same_kept}/{layers}")
    if aris:
        print(f"  default cut, adjusted Rand index   median {np.median(aris):.3f}, min {min(aris):.3f} "
              f"({sum(a == 1.0 for a in aris)}/{len(aris)} identical)")


def vgg_ratios(device, repeats):
    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval().to(device)
    x = torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(1))
    xd = x[None].to(device)
    target = int(model(xd).argmax())

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        model(xd)[0, target].backward()

    def explain(recipe, lazy):
        exp = inv.Session(model, [x], device=device, cache_size=1).explain(0, recipe=recipe, lazy=lazy)
        if not lazy:
            for n in exp.layers:
                exp.layer(n, recipe).cut()

    fwd_bwd()
    explain("paper", False)  # warm-up: kernels, imports
    model.zero_grad(set_to_none=True)
    base = median_time(fwd_bwd, repeats, device)
    model.zero_grad(set_to_none=True)
    print(f"\n2. VGG-16 on {device}, 224 px, medians of {repeats}")
    print(f"  forward+backward                   {base * 1000:8.1f} ms   1.00x")
    for label, recipe, lazy in (("capture and weights", "fast", True), ("explain, recipe fast", "fast", False),
                                ("explain, recipe paper", "paper", False)):
        t = median_time(lambda: explain(recipe, lazy), repeats, device)
        print(f"  {label:<34} {t * 1000:8.1f} ms   {t / base:.2f}x")
    return model


def throughput(device, name, model, size, batch_sizes, n_images, repeats):
    g = torch.Generator().manual_seed(2)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n_images)]
    print(f"\n3. explain_many on {device}: {name}, {n_images} images of {size} px, medians of {repeats}")
    base = None
    for bs in batch_sizes:
        def run():
            s = inv.Session(model, images, device=device, cache_size=n_images, batch_size=bs)
            s.explain_many(range(n_images), lazy=True)

        run()  # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t = median_time(run, repeats, device)
        rate = n_images / t
        base = base or rate
        mem = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB" if device.type == "cuda" else ""
        print(f"  batch {bs:>4}: {rate:8.1f} images/s  ({rate / base:.1f}x batch {batch_sizes[0]}){mem}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="fewer images and repeats (a dry run)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing to measure (try --device cpu for a dry run)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, inv-widgets {inv.__version__}, device {device}: {name}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    quick = args.quick
    agreement(device, 2 if quick else 8)
    vgg = vgg_ratios(device, 2 if quick else 7)
    throughput(device, "VGG-16", vgg, 224, [1, 8] if quick else [1, 8, 32, 64], 16 if quick else 128, 1 if quick else 3)
    demo, _ = inv.demo.load()
    throughput(device, "demo CNN", demo, 128, [1, 64] if quick else [1, 16, 64, 256], 64 if quick else 512,
               1 if quick else 3)


if __name__ == "__main__":
    main()
