"""Evaluations on the embedded default, where the truth is known, each figure with a 95 % bootstrap CI:

    python -m inv_widgets.eval parts         # do cluster maps find the parts? (against random groups and the truth)
    python -m inv_widgets.eval faithfulness  # does a cluster map matter as much as its weight says?
    python -m inv_widgets.eval labels        # do simulated labellers' labels, aggregated, name the parts?
    python -m inv_widgets.eval global        # does the concept test tell part labels from noise? (with controls)
    python -m inv_widgets.eval sanity        # do the maps change with the model and the class? (Adebayo et al.)
    python -m inv_widgets.eval all --split test --n 30    # all of them, one after the other

Every evaluation takes ``--split dev`` (default: the images the defaults were chosen on) or ``--split test``
(sealed images, only to report), ``--n`` (images), ``--layer-point`` and ``--seed``; ``-h`` after the name
lists the rest. The figures of docs/evaluations.md are ``--split test`` runs.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main", "EVALUATIONS", "parser", "common_arguments"]

#: The evaluations, in the order ``all`` runs them.
EVALUATIONS = ("sanity", "parts", "faithfulness", "labels", "global")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line naming it (and the fix), not a usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser(what: str, doc: str | None) -> argparse.ArgumentParser:
    return _Parser(prog=f"python -m inv_widgets.eval {what}", description=doc,
                   formatter_class=argparse.RawDescriptionHelpFormatter)


def _whole(lo: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {lo}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {lo}, got {v}")
        return v

    return parse


def common_arguments(ap: argparse.ArgumentParser, *, n: int, n_name: str = "--n", n_help: str | None = None,
                     min_n: int = 1) -> argparse.ArgumentParser:
    """The options every evaluation takes: the split, the number of images, the layer point, the seed, quiet."""
    from .stats import SPLITS

    ap.add_argument("--split", default="dev", choices=list(SPLITS),
                    help="dev: the images the defaults were chosen on (default); test: sealed images, to report only")
    ap.add_argument(n_name, type=_whole(min_n, n_name), default=n, dest="n",
                    help=n_help or f"images of the split (default {n})")
    ap.add_argument("--layer-point", default="activation", choices=["activation", "conv"],
                    help="where each conv layer's maps are read (Session(layer_point=...); default activation)")
    ap.add_argument("--seed", type=_whole(0, "--seed"), default=0, help="seeds every random step (default 0)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python -m inv_widgets.eval {{{','.join(EVALUATIONS + ('all',))}}} [options]   (-h after the name for help)"
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage + "\n\n" + __doc__)
        return 0
    what, rest = argv[0], argv[1:]
    if what not in EVALUATIONS + ("all",):
        print(f"python -m inv_widgets.eval: error: unknown evaluation {what!r}; choose one of "
              f"{', '.join(EVALUATIONS + ('all',))}", file=sys.stderr)
        return 2
    if what == "all":
        from .all import main as run
    else:
        run = __import__(f"{__name__}.{ {'global': 'global_'}.get(what, what) }", fromlist=["main"]).main
    try:
        return run(rest)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
