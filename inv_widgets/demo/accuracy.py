"""Accuracy of the shipped demo CNN on held-out parts images.

    python -m inv_widgets.demo.accuracy            # 2,000 EVAL_SEED images (never used in training)

Prints the accuracy per class, then a last line ``accuracy: 0.xxx``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .parts import CLASSES, EVAL_SEED, PartsDataset


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m inv_widgets.demo.accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    p.add_argument("--seed", type=int, default=EVAL_SEED, help=f"image seed (default EVAL_SEED={EVAL_SEED})")
    p.add_argument("--weights", default=None, help="state_dict to test (default: the shipped weights)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:  # the command's thread count, as asked, for the whole process (not a cap for a block)
        torch.set_num_threads(args.threads)

    from . import load
    from .train import evaluate

    model, _ = load(n=0, weights=args.weights)
    data = PartsDataset(n=args.n, seed=args.seed)
    t0 = time.time()
    acc, correct, total = evaluate(model, data)
    print(f"{len(data)} images of seed {args.seed} in {time.time() - t0:.1f}s")
    for k, name in enumerate(CLASSES):
        print(f"  {name:<11} {correct[k] / max(1, total[k]):.3f}  ({correct[k]}/{total[k]})")
    print(f"accuracy: {acc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
