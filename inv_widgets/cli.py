"""Command-line entry points.

    inv-widgets explain                          # the demo model on the demo's first image -> inv_report.html
    inv-widgets explain photo.jpg --model vgg16 --weights none --out vgg.html
    inv-widgets eval sanity | parts | faithfulness | labels | global | all   # evaluations on the embedded default

Arguments are checked before anything is computed; a problem is one line on stderr that names the fix
(``error: ...``), exit status 2 for a wrong argument and 1 when the work itself fails, and no file is left
behind (the page is written whole or not at all).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

__all__ = ["main"]

DEFAULT_MAX_PIXELS = 50_000_000  # inv_widgets.sizing.DEFAULT_MAX_PIXELS (not imported: --help stays light)


class CliError(Exception):
    """A problem to report in one line; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def _progress():
    """A progress callback drawing a tqdm bar (notebook or terminal) on stderr."""
    from tqdm.auto import tqdm

    bar = None

    def update(done, total, msg):
        nonlocal bar
        total = max(total, 1)  # nothing left to do (all cached) still draws a whole bar
        if bar is None:
            bar = tqdm(total=total, unit="step", desc="explaining", file=sys.stderr, leave=False)
        bar.total = total
        bar.set_postfix_str(msg[:40], refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _target(text: str):
    """argparse type: a class index (0 or more) or a class name."""
    if re.fullmatch(r"[+-]?\d+", text.strip()):
        value = int(text)
        if value < 0:
            raise argparse.ArgumentTypeError(
                f"{value} is not a class index: indices start at 0 (give 0..classes-1, or a class name)"
            )
        return value
    return text


def _at_least(low: int, what: str):
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number of {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low} ({what}), got {value}")
        return value

    return check


_positive = _at_least(1, "cluster maps per layer")


def _baseline_setting(name: str, what: str):
    """argparse type for a LIME / KernelSHAP setting, with the lowest value the baselines accept."""
    from .concepts.baselines import LOWEST

    return _at_least(LOWEST[name], what)


def _recipe(name: str) -> str:
    """argparse type: a recipe name, checked by the recipe registry (its message names the choices)."""
    from .engine.recipes import get_recipe

    try:
        return get_recipe(name).name
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _torchvision_weights(name: str, weights: str):
    """(builder, weights enum member or None): checked without building or downloading anything."""
    import torchvision

    classifiers = torchvision.models.list_models(module=torchvision.models)
    if name not in classifiers:
        try:
            torchvision.models.get_model_builder(name)
            what = "a torchvision model, but not an image classifier"
        except ValueError:
            what = "not a torchvision model"
        raise CliError(
            f"--model {name}: {what}; choose a classifier such as vgg16, resnet50 or "
            "mobilenet_v3_small (torchvision.models.list_models(module=torchvision.models))",
            2,
        )
    builder = torchvision.models.get_model_builder(name)
    enum = torchvision.models.get_model_weights(name)
    if weights.lower() == "none":
        return builder, None, enum.DEFAULT
    if weights.upper() == "DEFAULT":
        return builder, enum.DEFAULT, enum.DEFAULT
    try:
        w = enum[weights]
    except KeyError:
        choices = ", ".join(m.name for m in enum)
        raise CliError(
            f"--weights {weights}: {name} has no such weights; choose none (random, offline), DEFAULT or "
            f"one of {choices}",
            2,
        ) from None
    return builder, w, w


def _torchvision_model(name: str, weights: str):
    builder, w, meta = _torchvision_weights(name, weights)
    import torch

    if w is None:
        torch.manual_seed(0)  # random weights, but the same ones every run
        model = builder(weights=None)
    else:
        print(f"loading {w} (downloads the weights once if they are not cached)", file=sys.stderr)
        try:
            model = builder(weights=w)
        except OSError as e:  # URLError (offline), a full disk, an unreadable cache
            reason = getattr(e, "reason", None) or e
            raise CliError(
                f"--weights {weights}: could not get the {w} weights of {name} ({reason}); check the "
                "network, or use --weights none (random weights, offline)"
            ) from None
    return model.eval(), meta.transforms(), meta.meta["categories"]


#: File names the report may have: it is one HTML page (a PNG of one layer's gallery is ``clusters.to_sheet``).
REPORT_SUFFIXES = (".html", ".htm")


def _check_paths(args) -> Path:
    from .export import check_output_path

    if args.image is not None and not Path(args.image).is_file():
        raise CliError(f"image {args.image}: no such file; give the path of an image file", 2)
    try:
        out = check_output_path(args.out, try_write=True)
    except OSError as e:
        raise CliError(f"--out {args.out}: {e}", 2) from None
    if out.suffix.lower() not in REPORT_SUFFIXES:
        raise CliError(
            f"--out {args.out}: the report is an HTML page, so its name ends in .html (got "
            f"{out.suffix or 'no suffix'}); for a PNG of one layer's cluster maps use Python: "
            "exp[layer].cut().to_sheet('maps.png')",
            2,
        )
    return out


def cmd_explain(args) -> int:
    if not args.baselines and (args.baseline_samples is not None or args.baseline_segments is not None):
        raise CliError(
            "--baseline-samples and --baseline-segments set up --baselines: add --baselines, or leave them out", 2
        )
    out = _check_paths(args)
    if args.baselines:  # before any work: the whole explanation first, then a traceback, was the old way
        from .concepts.extras import require_concepts

        try:
            require_concepts("--baselines (LIME and KernelSHAP)", ("captum", "skimage"))
        except ImportError as e:
            raise CliError(str(e), 2) from None
    if args.model != "demo":
        if args.image is None:
            raise CliError(
                "give an image file to explain with a torchvision model (inv-widgets explain photo.jpg "
                f"--model {args.model})",
                2,
            )
        _torchvision_weights(args.model, args.weights)  # a wrong name or weights: said before loading anything

    import warnings

    import inv_widgets as inv

    from .export import write_atomically
    from .report import explanation_html

    warnings.formatwarning = lambda message, category, *args, **kwargs: f"note: {message}\n"  # one line each

    t0 = time.perf_counter()
    options = dict(
        recipe=args.recipe,
        layers=args.layers,
        layer_mode=args.layer_mode,
        weighting=args.weighting,
        max_pixels=args.max_pixels,
    )
    try:
        if args.model == "demo":
            model, data = inv.demo.load()
            if args.image is None:
                session = inv.Session(model, data, **options)
                title = f"demo image 0 ({data.classes[data[0][1]]})"
            else:
                session = inv.Session(
                    model, [args.image], transform=data.transform, class_names=data.classes, **options
                )
                title = Path(args.image).name
        else:
            model, transform, classes = _torchvision_model(args.model, args.weights)
            session = inv.Session(model, [args.image], transform=transform, class_names=classes, **options)
            title = f"{Path(args.image).name} · {args.model} ({args.weights} weights)"
        exp = session.explain(0, target=args.target, progress=None if args.quiet else _progress())  # checks the
        # target (a class index or name) before the model runs
        maps, note = _baselines(session, exp, args) if args.baselines else (None, "")
        page = explanation_html(exp, k=args.k, cmap=args.cmap, title=title, baselines=maps, baselines_note=note)
        write_atomically(out, page)
    except (ValueError, TypeError, OSError, KeyError) as e:
        raise CliError(str(e).strip("'\"")) from None
    print(
        f"wrote {out} ({len(page) / 1e6:.1f} MB): target {exp.target_name!r}, predicted {exp.predicted_name!r}, "
        f"{len(exp.layers)} layers, {time.perf_counter() - t0:.1f} s"
    )
    return 0


def _baselines(session, exp, args):
    """LIME, KernelSHAP and Grad-CAM of the explained image and target, and a line saying how."""
    from .concepts.baselines import DEFAULT_SAMPLES, DEFAULT_SEGMENTS, attribution_maps

    n_samples = args.baseline_samples or DEFAULT_SAMPLES
    n_segments = args.baseline_segments or DEFAULT_SEGMENTS
    t0 = time.perf_counter()
    progress = None
    if not args.quiet:
        progress = _progress()
    maps = attribution_maps(
        session, 0, exp.target, n_samples=n_samples, n_segments=n_segments, seed=0, progress=progress
    )
    note = (
        f"LIME and KernelSHAP: captum, {n_samples} model evaluations each over about {n_segments} SLIC "
        f"superpixels (seed 0); Grad-CAM at {exp.layers[-1]}; computed in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return maps, note


_EXPLAIN_EPILOG = """examples:
  inv-widgets explain                                     the demo model on the demo's first image
  inv-widgets explain photo.jpg --model vgg16             any torchvision classifier, random weights (offline)
  inv-widgets explain photo.jpg --model vgg16 --weights DEFAULT --target 'golden retriever' --k 5
  inv-widgets explain --baselines                         also LIME, KernelSHAP and Grad-CAM of the same image
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with a wrong argument answered in one line that says where the help is."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="inv-widgets", description="Interpretable Network Visualizations (INV)")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser(
        "explain",
        help="explain one image and write a self-contained HTML page",
        description="Explain one image with INV and write one self-contained HTML page (images "
        "inline, no script, no network): every layer's cluster maps with their weights, "
        "beside the layer's plain Grad-CAM.",
        epilog=_EXPLAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("image", nargs="?", help="image file to explain (default: the demo dataset's first image)")
    ex.add_argument(
        "--model",
        default="demo",
        help="'demo' (the embedded demo CNN, default) or a torchvision classifier name, e.g. vgg16, "
        "resnet50, mobilenet_v3_small",
    )
    ex.add_argument(
        "--weights",
        default="none",
        help="torchvision weights: 'none' (random, offline; default), 'DEFAULT' or an enum name "
        "such as IMAGENET1K_V1 (downloads once, then cached)",
    )
    ex.add_argument(
        "--target",
        default=None,
        type=_target,
        help="the class to explain: an index (0 or more) or a class name (default: the predicted class)",
    )
    ex.add_argument(
        "--layers",
        nargs="+",
        default=None,
        metavar="NAME",
        help="layer names to explain (default: every Conv2d with feature maps larger than 1x1)",
    )
    ex.add_argument(
        "--layer-mode",
        default="conv",
        choices=["conv", "blocks"],
        help="layers found automatically: every Conv2d ('conv', default) or the model's blocks "
        "(ResNet's BasicBlock, GoogLeNet's inception modules, ...)",
    )
    ex.add_argument(
        "--recipe",
        default="fast",
        type=_recipe,
        help="clustering recipe: fast (default), paper, paper-sklearn, spatial or another registered one",
    )
    ex.add_argument(
        "--weighting",
        default="guided",
        choices=["guided", "taylor"],
        help="channel weights: guided (the paper's guided gradients, default) or taylor (gradient x activation)",
    )
    ex.add_argument(
        "--k",
        type=_positive,
        default=None,
        help="cluster maps per layer, 1 or more (default: each layer's suggested cut)",
    )
    ex.add_argument(
        "--cmap",
        default="jet",
        choices=["jet", "viridis", "inferno", "gray"],
        help="colour map of the cluster maps (default: jet, as in the paper)",
    )
    ex.add_argument(
        "--out",
        default="inv_report.html",
        help="the HTML file to write (a name ending in .html), in an existing folder (default: inv_report.html)",
    )
    ex.add_argument(
        "--baselines",
        action="store_true",
        help="also show LIME, KernelSHAP (captum, over SLIC superpixels) and Grad-CAM of the same "
        "image and class (hundreds of model evaluations: seconds on the demo, longer on large "
        "models)",
    )
    ex.add_argument(
        "--baseline-samples",
        type=_baseline_setting("n_samples", "model evaluations"),
        default=None,
        metavar="N",
        help="model evaluations for LIME and for KernelSHAP with --baselines (default 256)",
    )
    ex.add_argument(
        "--baseline-segments",
        type=_baseline_setting("n_segments", "superpixels"),
        default=None,
        metavar="N",
        help="SLIC superpixels asked for with --baselines (default 50)",
    )
    ex.add_argument(
        "--max-pixels",
        type=_at_least(1, "pixels"),
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help="refuse pictures with more pixels than this, before decoding them (default 50000000); "
        "pictures larger than the model's input size (the demo's 128x128) are resized to it",
    )
    ex.add_argument("--quiet", action="store_true", help="no progress bar")
    ex.set_defaults(func=cmd_explain)
    ev = sub.add_parser("eval", help="evaluations on the embedded default (python -m inv_widgets.eval ...)")
    ev.add_argument("what", choices=["sanity", "parts", "faithfulness", "labels", "global", "all"])
    ev.add_argument("rest", nargs=argparse.REMAINDER)
    ev.set_defaults(func=lambda a: __import__("inv_widgets.eval", fromlist=["main"]).main([a.what, *a.rest]))
    return ap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
