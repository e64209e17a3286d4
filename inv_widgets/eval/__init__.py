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

import sys

from ._args import common_arguments, parser

__all__ = ["main", "EVALUATIONS", "parser", "common_arguments"]

#: The evaluations, in the order ``all`` runs them.
EVALUATIONS = ("sanity", "parts", "faithfulness", "labels", "global")


def _main_of(what: str):
    """The ``main`` of one evaluation (imported when asked for: each pulls in its own dependencies)."""
    if what == "sanity":
        from .sanity import main
    elif what == "parts":
        from .parts import main
    elif what == "faithfulness":
        from .faithfulness import main
    elif what == "labels":
        from .labels import main
    elif what == "global":
        from .global_ import main
    else:
        from .all import main
    return main


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = (
        f"usage: python -m inv_widgets.eval {{{','.join(EVALUATIONS + ('all',))}}} [options]   (-h after the "
        "name for help)"
    )
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage + "\n\n" + __doc__)
        return 0
    what, rest = argv[0], argv[1:]
    if what not in EVALUATIONS + ("all",):
        print(
            f"python -m inv_widgets.eval: error: unknown evaluation {what!r}; choose one of "
            f"{', '.join(EVALUATIONS + ('all',))}",
            file=sys.stderr,
        )
        return 2
    run = _main_of(what)
    try:
        return run(rest)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
