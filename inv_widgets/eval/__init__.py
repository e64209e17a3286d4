"""Evaluations on the embedded default: ``python -m inv_widgets.eval parts`` (do cluster maps find the
parts?), ``python -m inv_widgets.eval labels`` (do simulated labellers' labels name them?) and
``python -m inv_widgets.eval global`` (do global explanations name each class's parts, and does TCAV agree?)
and ``python -m inv_widgets.eval faithfulness`` (does a cluster map matter as much as its weight says?)."""
from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("parts", "labels", "global", "faithfulness"):
        print("usage: python -m inv_widgets.eval {parts,labels,global,faithfulness} [options]   (-h after the name for help)")
        return 2
    what, rest = argv[0], argv[1:]
    if what == "parts":
        from .parts import main as run
    elif what == "faithfulness":
        from .faithfulness import main as run
    elif what == "labels":
        from .labels import main as run
    else:
        from .global_ import main as run
    return run(rest)
