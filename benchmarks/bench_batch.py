"""Throughput of explain_dataset (a stored run) against the model's own forward+backward on the same batches.

    python benchmarks/bench_batch.py                  # CPU: demo CNN and VGG-16, one process and 2 Dask workers
    python benchmarks/bench_batch.py --memory         # peak RSS of a 200- and a 2,000-image run (fresh processes)
    python benchmarks/bench_batch.py --device cuda    # GPU: VGG-16 at 224 px, batch 32/64/128, torch Ward on
                                                      # the device, then 4 Dask workers sharing the GPU, the
                                                      # Ward kernel alone
    python benchmarks/bench_batch.py --dry-run        # the GPU script's code path on the CPU, tiny sizes
    python benchmarks/bench_batch.py --quick          # fewer images and repeats (a dry run)
    python benchmarks/bench_batch.py --baseline REF   # CPU, one process: the working tree against the code of
                                                      # git revision REF, alternating in fresh processes

Forward+backward is the model's own ``logit.backward()`` with parameter gradients on batches already in
memory (on the device), what a training step does; ``explain_dataset`` is the whole stored run: reading
the images from the dataset, one forward and backward pass, weights, clustering, cluster maps and
Grad-CAMs, writing the shards to disk. Both see the same images in the same batches. Medians of
interleaved repeats, so that a change of load on a shared machine hits both alike.
``explain_dataset`` keeps freed memory in the process for the next batch (``reuse_freed_memory``); a plain
training loop does not unless it is told to, so the CPU figures give forward+backward both ways: as a
plain loop runs, and inside the same setting (a loop tuned alike: the stricter ratio).
Target (issue 11): on this CPU >= 0.5x forward+backward throughput for the demo model in one process; on
a GPU >= 0.5x for VGG-16 at 224 px at the same batch size.
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import inv_widgets as inv


class RandomImages:
    """``n`` random 224-px images (seeded by index), ImageNet-normalised, as a dataset: nothing stored."""

    classes = [f"class {i}" for i in range(1000)]

    def __init__(self, n: int, size: int = 224):
        self.n, self.size = n, size
        self.mean = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        x = torch.rand(3, self.size, self.size, generator=torch.Generator().manual_seed(int(i)))
        return (x - self.mean) / self.std, int(i) % 1000

    def image(self, i):
        x = torch.rand(3, self.size, self.size, generator=torch.Generator().manual_seed(int(i)))
        return (x.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def vgg_session(n: int, device: str = "cpu"):
    """The session factory for VGG-16 (random weights, seeded): each Dask worker builds its own."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.vgg16(weights=None).eval()
    return inv.Session(model, RandomImages(n), device=device)


def demo_session(n: int, device: str = "cpu"):
    return inv.demo.session(n, device)


FACTORIES = {"demo": demo_session, "vgg16": vgg_session}


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def fwd_bwd_rate(session, indices, batch_size, reuse=False) -> float:
    """Images per second of the model's own forward+backward on the same batches, inputs already on the device;
    ``reuse``: inside ``reuse_freed_memory()``, as explain_dataset runs."""
    if reuse:
        from inv_widgets.engine.runtime import reuse_freed_memory

        with reuse_freed_memory():
            return fwd_bwd_rate(session, indices, batch_size)
    model, dev = session.model, session.device
    batches = [torch.stack([session.input(i) for i in indices[s:s + batch_size]]).to(dev)
               for s in range(0, len(indices), batch_size)]
    targets = []
    with torch.no_grad():
        for x in batches:
            targets.append(model(x).argmax(1))
    sync(dev)
    t = time.perf_counter()
    for x, y in zip(batches, targets):
        model.zero_grad(set_to_none=True)
        model(x).gather(1, y[:, None]).sum().backward()
    sync(dev)
    dt = time.perf_counter() - t
    model.zero_grad(set_to_none=True)
    session._inputs.clear()
    return len(indices) / dt


def run_rate(session, indices, batch_size, root: Path, client=None, ward="auto") -> float:
    out = root / f"run-{time.monotonic_ns()}"
    t = time.perf_counter()
    run = inv.explain_dataset(session, indices, out=out, batch_size=batch_size, client=client, progress=False,
                              ward=ward)
    if isinstance(session, inv.Session):
        sync(session.device)
    dt = time.perf_counter() - t
    assert run.complete
    shutil.rmtree(out, ignore_errors=True)
    return len(indices) / dt


def one_process(name, n, batch_size, repeats, root, device="cpu", wards=("auto",), all_rates=False):
    session = FACTORIES[name](n, device)
    indices = list(range(n))
    inv.explain_dataset(session, indices[:batch_size], out=root / f"warm-{name}-{device}-{batch_size}",
                        batch_size=batch_size, progress=False)
    fwd_bwd_rate(session, indices[:batch_size], batch_size)  # warm-up
    rates = {"fwd+bwd": [], "fwd+bwd reuse": []} | {w: [] for w in wards}
    for _ in range(repeats):
        rates["fwd+bwd"].append(fwd_bwd_rate(session, indices, batch_size))
        rates["fwd+bwd reuse"].append(fwd_bwd_rate(session, indices, batch_size, reuse=True))
        for w in wards:
            rates[w].append(run_rate(session, indices, batch_size, root, ward=w))
    return rates if all_rates else {k: statistics.median(v) for k, v in rates.items()}


def cpu_bench(args, root):
    threads = torch.get_num_threads()
    for name, n, bs in (("demo", args.demo_images, args.batch_size), ("vgg16", args.vgg_images, args.vgg_batch_size)):
        r = one_process(name, n, bs, args.repeats, root)
        base = r["fwd+bwd"]
        print(f"\n{name}: {n} images, batch {bs}, one process ({threads} threads), medians of {args.repeats}")
        tuned = r["fwd+bwd reuse"]
        print(f"  forward+backward          {base:8.1f} images/s   1.00x")
        print(f"  ... freed memory reused   {tuned:8.1f} images/s   {tuned / base:.2f}x")
        print(f"  explain_dataset           {r['auto']:8.1f} images/s   {r['auto'] / base:.2f}x"
              + ("   (target >= 0.5x)" if name == "demo" else "")
              + f";  {r['auto'] / tuned:.2f}x of the tuned loop")
        if not args.no_dask:
            dask_bench(name, n, bs, args.repeats, root, base)


def dask_bench(name, n, bs, repeats, root, base):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                      silence_logs=50) as cluster, Client(cluster) as client:
        factory = functools.partial(FACTORIES[name], n)
        indices = list(range(n))
        run_rate(factory, indices[:2 * bs], bs, root, client)  # warm-up: each worker builds its session
        rates = [run_rate(factory, indices, bs, root, client) for _ in range(repeats)]
    r = statistics.median(rates)
    print(f"  explain_dataset, 2 Dask workers x 1 thread   {r:8.1f} images/s   {r / base:.2f}x "
          "(of one process's forward+backward)")


def cuda_bench(args, root):
    """VGG-16 at 224 px on the GPU: one process at several batch sizes, then several Dask workers sharing it.

    ``--dry-run`` runs the same code on the CPU with tiny sizes (to check the script where no GPU is)."""
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: nothing to measure (--dry-run checks the script on the CPU)")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(0)
        print(f"device: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        name = "CPU (dry run)"
    agreement(root, device, 8 if args.dry_run else 64)
    sizes = [2] if args.dry_run else args.cuda_batch_sizes
    for bs in sizes:
        n = bs * (2 if args.quick or args.dry_run else 4)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        wards = ("auto",) if args.quick or args.dry_run or bs != 64 else ("auto", "scipy")
        r = one_process("vgg16", n, bs, 1 if args.quick or args.dry_run else 3, root, device=device, wards=wards)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        base = r["fwd+bwd"]
        print(f"\nVGG-16 on {name}, 224 px, batch {bs}, {n} images, one process (peak GPU memory {peak:.1f} GiB)")
        print(f"  forward+backward                      {base:8.1f} images/s   1.00x")
        print(f"  explain_dataset, Ward on the device   {r['auto']:8.1f} images/s   {r['auto'] / base:.2f}x   "
              "(target >= 0.5x)")
        if "scipy" in r:
            print(f"  explain_dataset, Ward by scipy (CPU)  {r['scipy']:8.1f} images/s   {r['scipy'] / base:.2f}x")
    # the CPU side of a run (reading images, cuts, tables, compression) is one core's work per process:
    # several Dask workers can share one GPU, each with its own copy of the model
    for workers in ([2] if args.dry_run else args.cuda_workers):
        bs = sizes[-1] if args.dry_run else 64
        n = bs * (2 if args.dry_run else 8) * workers
        from distributed import Client, LocalCluster

        session = vgg_session(n, device)
        base = fwd_bwd_rate(session, list(range(min(n, 4 * bs))), bs)
        del session
        with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None,
                          silence_logs=50) as cluster, Client(cluster) as client:
            factory = functools.partial(vgg_session, n, device)
            run_rate(factory, list(range(workers * bs)), bs, root, client)  # warm-up: sessions built
            rate = run_rate(factory, list(range(n)), bs, root, client)
        print(f"  explain_dataset, {workers} Dask workers sharing the device, batch {bs}: {rate:8.1f} images/s   "
              f"{rate / base:.2f}x (forward+backward {base:.1f} images/s)")
    ward_kernel_rate(torch.device(device), small=args.dry_run)


def agreement(root, device, n):
    """The device's torch Ward (float32 on a GPU) against scipy on the same captures: identical cuts (demo)."""
    s = inv.demo.session(n, device)
    a = inv.explain_dataset(s, range(n), out=root / "agree-torch", batch_size=32, ward="torch", progress=False).maps
    b = inv.explain_dataset(s, range(n), out=root / "agree-scipy", batch_size=32, ward="scipy", progress=False).maps
    ka = a.groupby(["image", "layer"])["members"].apply(tuple)
    kb = b.groupby(["image", "layer"])["members"].apply(tuple)
    same = (ka == kb.reindex(ka.index)).mean()
    print(f"torch Ward on {device} vs scipy, same captures: {same:.1%} of {len(ka)} layer cuts identical "
          f"({n} demo images)")


def ward_kernel_rate(dev, small=False):
    """The kernel alone on VGG-16-like problems: 13 layers x batch, 30..300 kept maps per layer."""
    from inv_widgets.engine.ward_torch import pairwise_sq_euclidean, ward_linkage_groups

    g = torch.Generator().manual_seed(0)
    shapes = ((40, 50176), (40, 50176), (80, 12544), (80, 12544), (150, 3136), (150, 3136), (150, 3136),
              (300, 784), (300, 784), (300, 784), (300, 196), (300, 196), (300, 196))
    for b in ((2,) if small else (64, 256)):
        d2s, counts = [], []
        for n_max, hw in shapes:
            n_max = n_max // 10 if small else n_max
            cnt = torch.randint(n_max // 3, n_max + 1, (b,), generator=g)
            x = torch.rand(b, n_max, min(hw, 4096), generator=g).to(dev)
            d2s.append(pairwise_sq_euclidean(x, cnt))
            counts.append(cnt)
        dtype = torch.float32 if dev.type == "cuda" else torch.float64
        ward_linkage_groups(d2s, counts, dtype=dtype)
        sync(dev)
        t = time.perf_counter()
        ward_linkage_groups(d2s, counts, dtype=dtype)
        sync(dev)
        dt = time.perf_counter() - t
        print(f"  Ward kernel alone on {dev.type}, {b} images x 13 layers: {dt * 1000:.0f} ms ({b / dt:.0f} images/s)")


MEMORY_CHILD = """
import json, os, sys, threading, time
import inv_widgets as inv
page = os.sysconf("SC_PAGE_SIZE") / 2**20
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page
n, out = int(sys.argv[1]), sys.argv[2]
session = inv.demo.session(n)
inv.explain_dataset(session, range(32), out=out + "-warm", batch_size=32, progress=False)
base = rss(); done = [False]; samples = []
def sample():
    while not done[0]:
        samples.append(rss()); time.sleep(0.01)
t = threading.Thread(target=sample); t.start()
t0 = time.perf_counter()
inv.explain_dataset(session, range(n), out=out, batch_size=32, progress=False)
secs = time.perf_counter() - t0
done[0] = True; t.join()
q = len(samples) // 4
quarters = [max(samples[i * q:(i + 1) * q] or [base]) for i in range(4)]
print(json.dumps({"base": base, "peak": max(samples + [base]), "end": rss(), "quarters": quarters, "seconds": secs}))
"""


def memory_bench(root, sizes):
    print("\nresident memory of one process running explain_dataset on the demo (batch 32), a fresh process each")
    for n in sizes:
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(n), str(root / f"mem{n}")],
                             capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        qs = " / ".join(f"{v:.0f}" for v in m["quarters"])
        print(f"  {n:>5} images: {m['base']:.0f} MB before, peak {m['peak']:.0f} MB (+{m['peak'] - m['base']:.0f}); "
              f"peak of each quarter of the run {qs} MB; {n / m['seconds']:.1f} images/s")


def baseline_bench(args, root):
    """The one-process rows for the working tree and for the code of git revision ``args.baseline``, each round
    in fresh processes, the two codes alternating (a change of the machine's speed hits both alike); printed:
    each code's rates, medians over all rounds, and its run's ratio to forward+backward measured in the same
    process."""
    import os

    repo = Path(__file__).resolve().parents[1]
    old = root / "baseline"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", args.baseline], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    codes = {"working tree": repo, f"baseline {args.baseline}": old}
    models = [("demo", args.demo_images, args.batch_size)] + (
        [] if args.no_vgg else [("vgg16", args.vgg_images, args.vgg_batch_size)])
    for name, n, bs in models:
        got: dict[str, list[dict]] = {label: [] for label in codes}
        for r in range(args.rounds):
            for label, code in (codes.items() if r % 2 == 0 else reversed(codes.items())):
                cmd = [sys.executable, str(Path(__file__).resolve()), "--one-process", name, "--repeats",
                       str(args.repeats), "--images", str(n), "--batch", str(bs)]
                out = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(code)}, capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"the benchmark process for {label} failed:\n{out.stderr[-3000:]}")
                got[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"\n{name}: {n} images, batch {bs}, one process, {args.rounds} rounds (fresh processes, the codes "
              f"alternating) x {args.repeats} interleaved repeats; each run against the forward+backward just before it")
        ratios = {}
        for label, runs in got.items():
            pooled = {k: [v for run in runs for v in run[k]] for k in runs[0]}
            # each repeat's run over the forward+backward measured just before it, in the same process
            paired = [a / b for run in runs for a, b in zip(run["auto"], run["fwd+bwd"])]
            tuned = [a / b for run in runs for a, b in zip(run["auto"], run["fwd+bwd reuse"])]
            med = {k: statistics.median(v) for k, v in pooled.items()}
            ratios[label] = statistics.median(paired)
            print(f"  {label:24s} forward+backward {med['fwd+bwd']:7.1f} images/s; explain_dataset {med['auto']:7.1f} "
                  f"images/s; ratio per repeat: median {ratios[label]:.2f}x, lowest {min(paired):.2f}x, highest "
                  f"{max(paired):.2f}x (n={len(paired)}); {statistics.median(tuned):.2f}x of the tuned loop")
        new, base = ratios["working tree"], ratios[f"baseline {args.baseline}"]
        print(f"  working tree against {args.baseline}: {base:.2f}x -> {new:.2f}x of forward+backward "
              f"({new / base:.2f})" + ("   target >= 0.7x" if name == "demo" else "   target >= 0.95x"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memory", action="store_true", help="only the memory figures (200 and 2,000 images)")
    ap.add_argument("--no-dask", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--demo-images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--vgg-images", type=int, default=16)
    ap.add_argument("--vgg-batch-size", type=int, default=8)
    ap.add_argument("--cuda-batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--cuda-workers", type=int, nargs="+", default=[4], help="Dask workers sharing the GPU")
    ap.add_argument("--dry-run", action="store_true", help="with --device cuda: the GPU code path on the CPU, tiny")
    ap.add_argument("--baseline", default=None, help="CPU, one process: also the code of this git revision, the two "
                    "alternating in fresh processes")
    ap.add_argument("--rounds", type=int, default=4, help="with --baseline: processes per code and model")
    ap.add_argument("--no-vgg", action="store_true", help="with --baseline: the demo model only")
    ap.add_argument("--one-process", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--images", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_process:  # a baseline round: this process's rates as JSON
        with tempfile.TemporaryDirectory(prefix="inv-bench-") as tmp:
            rates = one_process(args.one_process, args.images, args.batch, args.repeats, Path(tmp), all_rates=True)
        print(json.dumps(rates))
        return
    if args.quick:
        args.repeats, args.demo_images, args.vgg_images = 1, 64, 8
        args.cuda_batch_sizes = [64]
    print(f"torch {torch.__version__}, inv-widgets {inv.__version__}, {torch.get_num_threads()} torch threads")
    with tempfile.TemporaryDirectory(prefix="inv-bench-") as tmp:
        root = Path(tmp)
        if args.memory:
            memory_bench(root, (200, 2000) if not args.quick else (50, 200))
        elif args.baseline:
            baseline_bench(args, root)
        elif args.device == "cuda" or args.dry_run:
            cuda_bench(args, root)
        else:
            cpu_bench(args, root)


if __name__ == "__main__":
    main()
