"""Train the demo CNN on the parts dataset.

    python -m inv_widgets.demo.train                      # the shipped weights (about 25 min, 2 CPU cores)
    python -m inv_widgets.demo.train --epochs 1 --n-train 256 --out /tmp/try.pt   # a quick try

Every epoch draws ``--n-train`` *fresh* images from the TRAIN_SEED stream (epoch e uses images
e*n_train ... (e+1)*n_train - 1), so the model never sees the same picture twice and never sees a
VAL_SEED or EVAL_SEED picture. Progress is reported on ``--n-val`` VAL_SEED images after every epoch;
the held-out EVAL_SEED images are for ``python -m inv_widgets.demo.accuracy`` only.

The run is deterministic for a given ``--seed`` and ``--threads``. The state_dict is written
atomically to ``--out`` (loadable with ``torch.load(path, weights_only=True)``), with a JSON file of
the training settings and validation accuracy next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..engine.runtime import eval_mode
from .model import DEFAULT_WIDTHS, DemoCNN
from .parts import CLASSES, EVAL_SEED, TRAIN_SEED, VAL_SEED, PartsDataset

DEFAULT_OUT = Path(__file__).resolve().parent / "weights" / "demo_cnn.pt"


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m inv_widgets.demo.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--epochs", type=int, default=8, help="passes, each over fresh images (default 8)")
    p.add_argument("--n-train", type=int, default=8000, help="images per epoch (default 8000)")
    p.add_argument("--n-val", type=int, default=500, help="VAL_SEED images checked after each epoch")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (AdamW, one-cycle)")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0, help="seed for weight init and dropout")
    p.add_argument(
        "--data-seed",
        type=int,
        default=TRAIN_SEED,
        help=f"seed of the training images (default TRAIN_SEED={TRAIN_SEED})",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=1, help="DataLoader processes drawing images")
    p.add_argument("--widths", type=str, default=",".join(map(str, DEFAULT_WIDTHS)))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"state_dict path (default {DEFAULT_OUT})")
    p.add_argument("--quiet", action="store_true", help="only the final line")
    return p


def _log(args, *a):
    if not args.quiet:
        print(*a, flush=True)


@torch.no_grad()
def evaluate(model, data, batch_size=100, threads=None):
    """Accuracy of ``model`` on ``data``; returns (accuracy, per-class correct counts, per-class totals).
    The model runs in eval mode; every module's own train flag comes back afterwards."""
    n_cls = len(CLASSES)
    correct, total = np.zeros(n_cls, int), np.zeros(n_cls, int)
    with eval_mode(model):
        for start in range(0, len(data), batch_size):
            idx = range(start, min(len(data), start + batch_size))
            x = torch.stack([data[i][0] for i in idx])
            y = np.array([data.label(i) for i in idx])
            pred = model(x).argmax(1).numpy()
            np.add.at(total, y, 1)
            np.add.at(correct, y, pred == y)
    return correct.sum() / max(1, total.sum()), correct, total


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.data_seed in (VAL_SEED, EVAL_SEED):
        raise SystemExit(
            f"--data-seed {args.data_seed} is reserved for validation/evaluation "
            f"(VAL_SEED={VAL_SEED}, EVAL_SEED={EVAL_SEED}); train on another seed."
        )
    for name in ("epochs", "n_train", "batch_size", "threads"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    widths = tuple(int(w) for w in args.widths.split(","))

    # the process's thread count, not a cap for a block (engine.runtime.limited_threads): the trained weights
    # depend on it, so it is set exactly as asked, for the whole run
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = DemoCNN(num_classes=len(CLASSES), widths=widths).to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    _log(
        args,
        f"DemoCNN {widths}: {n_params:,} parameters; {args.epochs} epochs x {args.n_train} "
        f"fresh images (seed {args.data_seed}), batch {args.batch_size}, {args.threads} threads, "
        f"{args.workers} workers",
    )

    steps_per_epoch = math.ceil(args.n_train / args.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.15
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    val = PartsDataset(n=args.n_val, seed=VAL_SEED) if args.n_val > 0 else None

    t0 = time.time()
    history = []
    for epoch in range(args.epochs):
        data = PartsDataset(n=args.n_train, seed=args.data_seed, offset=epoch * args.n_train)
        loader = torch.utils.data.DataLoader(
            data,
            batch_size=args.batch_size,
            shuffle=False,
            num_workers=args.workers,
            persistent_workers=False,
            prefetch_factor=4 if args.workers else None,
        )
        model.train()
        run_loss, run_ok, seen = 0.0, 0, 0
        te = time.time()
        for step, (x, y) in enumerate(loader, 1):
            x = x.contiguous(memory_format=torch.channels_last)
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run_loss += loss.item() * len(y)
            run_ok += (out.argmax(1) == y).sum().item()
            seen += len(y)
            if step % 25 == 0 or step == steps_per_epoch:
                rate = seen / (time.time() - te)
                _log(
                    args,
                    f"  epoch {epoch + 1}/{args.epochs} step {step}/{steps_per_epoch} "
                    f"loss {run_loss / seen:.3f} train-acc {run_ok / seen:.3f} "
                    f"({rate:.0f} img/s, {time.time() - t0:.0f}s)",
                )
        row = {
            "epoch": epoch + 1,
            "train_loss": run_loss / seen,
            "train_acc": run_ok / seen,
            "seconds": round(time.time() - t0, 1),
        }
        if val is not None:
            row["val_acc"] = float(evaluate(model, val)[0])
        history.append(row)
        _log(
            args,
            f"epoch {epoch + 1}: "
            + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
        )

    model.eval()
    model = model.to(memory_format=torch.contiguous_format)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "arch": "DemoCNN",
        "widths": list(widths),
        "num_classes": len(CLASSES),
        "classes": CLASSES,
        "epochs": args.epochs,
        "n_train": args.n_train,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "data_seed": args.data_seed,
        "val_seed": VAL_SEED,
        "n_val": args.n_val,
        "threads": args.threads,
        "train_seconds": round(time.time() - t0, 1),
        "history": history,
        "parameters": n_params,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # write atomically: a crash leaves the old file, never half a file
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    last = history[-1].get("val_acc")
    print(
        f"saved {out} ({out.stat().st_size / 1e6:.2f} MB) after {meta['train_seconds']:.0f}s"
        + (f"; val accuracy {last:.3f}" if last is not None else ""),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
