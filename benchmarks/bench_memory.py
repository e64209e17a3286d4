"""Memory a Session holds after explaining many images, and after ``clear_cache()`` (issue 14, item 8).

    python benchmarks/bench_memory.py            # 600 demo images, the default Session
    python benchmarks/bench_memory.py --n 200 --cuts 4

Explains images 0..n-1 of the demo one by one as a person browsing them would (the suggested cut of every
layer, plus ``--cuts`` more cuts by k on the last layer, and the class probabilities), then prints what each of
the session's caches holds (bytes of the arrays and tensors in it, counted exactly) and the process's resident
memory (psutil) at each quarter of the run, then after ``session.clear_cache()`` (which also hands freed
memory back to the system with ``malloc_trim`` on Linux; before it did, the resident size stayed high). Runs against any checkout (it reads the caches'
private attributes), so the same script measures main and a branch.
"""
from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import psutil
import torch

import inv_widgets as inv

MB = 1e6


def _rss(collect: bool = True) -> float:
    if collect:
        gc.collect()
    return psutil.Process().memory_info().rss / MB


def _tensor_bytes(v) -> int:
    if isinstance(v, torch.Tensor):
        return v.numel() * v.element_size()
    if isinstance(v, np.ndarray):
        return v.nbytes
    return 0


def held(session) -> dict[str, float]:
    """Bytes (MB) each cache of the session holds."""
    out = {"explanations (kept maps, Grad-CAMs, weights)": 0, "cuts kept with them (cluster maps)": 0}
    for exp in session._cache.values():
        out["explanations (kept maps, Grad-CAMs, weights)"] += exp.nbytes + exp.image.nbytes
        for lr in exp._results.values():
            for cl in lr._cuts.values():
                out["cuts kept with them (cluster maps)"] += cl.maps.nbytes + cl.maps_lowres.nbytes
    out["model inputs"] = sum(_tensor_bytes(v) for v in session._inputs.values())
    out["class probabilities"] = sum(_tensor_bytes(v) for v in session._preds.values())
    return {k: v / MB for k, v in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--cuts", type=int, default=4, help="extra cuts by k on the last layer of each image")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, data = inv.demo.load(n=args.n)
    session = inv.Session(model, data)
    session.explain(0)
    session.clear_cache()
    base = _rss()
    t0 = time.perf_counter()
    quarters = []
    for i in range(args.n):
        exp = session.explain(i)
        for name in exp.layers:
            exp[name].cut()
        for k in range(2, 2 + args.cuts):
            exp[exp.layers[-1]].cut(k=k)
        session.predict(i)
        if (i + 1) % max(1, args.n // 4) == 0:
            quarters.append((i + 1, _rss(collect=False)))  # as a user sees it: no collection of our own
    del exp
    took = time.perf_counter() - t0
    h = held(session)
    after = _rss(collect=False)
    print(f"{args.n} demo images explained in {took:.0f} s (cache_size={session.cache_size})")
    print(f"  entries held / bound: explanations {len(session._cache)}/{session._cache.maxsize}, "
          f"model inputs {len(session._inputs)}/{session._inputs.maxsize}, "
          f"class probabilities {len(session._preds)}/{session._preds.maxsize}, "
          f"predicted classes {len(session._predicted)}/{session._predicted.maxsize}")
    for k, v in h.items():
        print(f"  {k:<48} {v:8.1f} MB")
    print(f"  {'total held by the caches':<48} {sum(h.values()):8.1f} MB")
    print(f"  resident memory: {base:.0f} MB before the first image, {after:.0f} MB after (+{after - base:.0f} MB); "
          "after " + ", ".join(f"{n} images +{r - base:.0f} MB" for n, r in quarters))
    session.clear_cache()
    h = held(session)
    cleared = _rss()
    print(f"after clear_cache(): caches hold {sum(h.values()):.1f} MB ({len(session._cache)} explanations, "
          f"{len(session._inputs)} inputs, {len(session._preds)} probabilities); resident {cleared:.0f} MB "
          f"(+{cleared - base:.0f} MB over the start)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
