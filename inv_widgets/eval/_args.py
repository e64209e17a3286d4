"""The command-line options every evaluation shares, and one-line errors for bad ones."""

from __future__ import annotations

import argparse

__all__ = ["parser", "common_arguments", "whole"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line naming it (and the fix), not a usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(what: str, doc: str | None) -> argparse.ArgumentParser:
    return _Parser(
        prog=f"python -m inv_widgets.eval {what}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def whole(lo: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {lo}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {lo}, got {v}")
        return v

    return parse


def common_arguments(
    ap: argparse.ArgumentParser, *, n: int, n_name: str = "--n", n_help: str | None = None, min_n: int = 1
) -> argparse.ArgumentParser:
    """The options every evaluation takes: the split, the number of images, the layer point, the seed, quiet."""
    from .stats import SPLITS

    ap.add_argument(
        "--split",
        default="dev",
        choices=list(SPLITS),
        help="dev: the images the defaults were chosen on (default); test: sealed images, to report only",
    )
    ap.add_argument(
        n_name, type=whole(min_n, n_name), default=n, dest="n", help=n_help or f"images of the split (default {n})"
    )
    ap.add_argument(
        "--layer-point",
        default="activation",
        choices=["activation", "conv"],
        help="where each conv layer's maps are read (Session(layer_point=...); default activation)",
    )
    ap.add_argument("--seed", type=whole(0, "--seed"), default=0, help="seeds every random step (default 0)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap
