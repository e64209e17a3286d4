"""Command-line entry points.

    inv-widgets explain                          # the demo model on the demo's first image -> inv_report.html
    inv-widgets explain photo.jpg --model vgg16 --weights none --out vgg.html
    inv-widgets eval parts | labels | faithfulness   # evaluations on the embedded default
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _progress(done, total, msg):
    width = 24
    filled = int(width * done / max(total, 1))
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {msg:<40}", end="", file=sys.stderr, flush=True)
    if done >= total:
        print(file=sys.stderr)


def _torchvision_model(name: str, weights: str):
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        raise SystemExit(f"error: unknown torchvision model {name!r} (e.g. vgg16, resnet50, mobilenet_v3_small)")
    meta_weights = enum.DEFAULT
    if weights.lower() == "none":
        import torch

        torch.manual_seed(0)  # random weights, but the same ones every run
        model = builder(weights=None)
    else:
        w = meta_weights if weights.upper() == "DEFAULT" else enum[weights]
        print(f"loading {w} (downloads the weights once if they are not cached)", file=sys.stderr)
        model = builder(weights=w)
        meta_weights = w
    return model.eval(), meta_weights.transforms(), meta_weights.meta["categories"]


def _recipe(name: str) -> str:
    """argparse type: a recipe name, checked by the recipe registry (its message names the choices)."""
    from .engine.recipes import get_recipe

    try:
        return get_recipe(name).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_explain(args) -> int:
    import inv_widgets as inv
    from .report import explanation_html

    t0 = time.perf_counter()
    if args.model == "demo":
        model, data = inv.demo.load()
        if args.image is None:
            session = inv.Session(model, data, recipe=args.recipe, layers=args.layers, layer_mode=args.layer_mode,
                                  weighting=args.weighting)
            source, title = 0, f"demo image 0 ({data.classes[data[0][1]]})"
        else:
            session = inv.Session(model, [args.image], transform=data.transform, class_names=data.classes,
                                  recipe=args.recipe, layers=args.layers, layer_mode=args.layer_mode,
                                  weighting=args.weighting)
            source, title = 0, Path(args.image).name
    else:
        if args.image is None:
            raise SystemExit("error: give an image file to explain with a torchvision model")
        model, transform, classes = _torchvision_model(args.model, args.weights)
        session = inv.Session(model, [args.image], transform=transform, class_names=classes, recipe=args.recipe,
                              layers=args.layers, layer_mode=args.layer_mode, weighting=args.weighting)
        source, title = 0, f"{Path(args.image).name} · {args.model} ({args.weights} weights)"
    try:
        exp = session.explain(source, target=args.target if args.target is None or not args.target.isdigit()
                              else int(args.target), progress=None if args.quiet else _progress)
    except (ValueError, TypeError) as e:
        raise SystemExit(f"error: {e}")
    page = explanation_html(exp, k=args.k, cmap=args.cmap, title=title)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)  # never leave a half-written page behind
    print(f"wrote {out} ({len(page) / 1e6:.1f} MB): target {exp.target_name!r}, predicted {exp.predicted_name!r}, "
          f"{len(exp.layers)} layers, {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="inv-widgets", description="Interpretable Network Visualizations (INV)")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="explain one image and write a self-contained HTML page")
    ex.add_argument("image", nargs="?", help="image file (default: the demo dataset's first image)")
    ex.add_argument("--model", default="demo", help="'demo' (default) or a torchvision model name, e.g. vgg16")
    ex.add_argument("--weights", default="none",
                    help="torchvision weights: 'none' (random, offline; default), 'DEFAULT' or an enum name "
                         "such as IMAGENET1K_V1 (downloads once)")
    ex.add_argument("--target", default=None, help="class index or name (default: the predicted class)")
    ex.add_argument("--layers", nargs="+", default=None, help="layer names (default: every Conv2d)")
    ex.add_argument("--layer-mode", default="conv", choices=["conv", "blocks"])
    ex.add_argument("--recipe", default="fast", type=_recipe,
                    help="clustering recipe: fast (default), paper, paper-sklearn or another registered one")
    ex.add_argument("--weighting", default="guided", choices=["guided", "taylor"],
                    help="channel weights: guided (the paper's guided gradients, default) or taylor "
                         "(gradient x activation)")
    ex.add_argument("--k", type=int, default=None, help="cluster maps per layer (default: the suggested cut)")
    ex.add_argument("--cmap", default="jet", choices=["jet", "viridis", "inferno", "gray"])
    ex.add_argument("--out", default="inv_report.html")
    ex.add_argument("--quiet", action="store_true")
    ex.set_defaults(func=cmd_explain)
    ev = sub.add_parser("eval", help="evaluations on the embedded default (python -m inv_widgets.eval ...)")
    ev.add_argument("what", choices=["parts", "labels", "faithfulness"])
    ev.add_argument("rest", nargs=argparse.REMAINDER)
    ev.set_defaults(func=lambda a: __import__("inv_widgets.eval", fromlist=["main"]).main([a.what, *a.rest]))
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
