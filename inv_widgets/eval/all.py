"""Every evaluation in one run: ``python -m inv_widgets.eval all --split test [--n 30]``.

Runs ``sanity``, ``parts``, ``faithfulness``, ``labels`` and ``global`` one after the other on the same split,
layer point and seed, and prints each one's figures with their 95 % CIs and its targets. ``--n`` is the number
of images of each evaluation (``global`` labels ``--global-n`` images, default 10 x ``--n``: the concept test
needs maps of many images per class); the evaluations' own defaults (docs/evaluations.md) are larger. With
``--n 4`` the whole run takes a few minutes (a smoke test of every figure); the full-size runs and their times
are in docs/evaluations.md.
"""

from __future__ import annotations

import sys
import time

__all__ = ["main"]


def _main_of(what: str):
    if what == "sanity":
        from .sanity import main
    elif what == "parts":
        from .parts import main
    elif what == "faithfulness":
        from .faithfulness import main
    elif what == "labels":
        from .labels import main
    else:
        from .global_ import main
    return main


def main(argv=None) -> int:
    from ._args import common_arguments, parser
    from ._args import whole as _whole

    ap = parser("all", __doc__)
    common_arguments(ap, n=30)
    ap.add_argument(
        "--global-n",
        type=_whole(1, "--global-n"),
        default=None,
        help="images labelled by the simulated players in eval global (default 10 x --n)",
    )
    ap.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=["sanity", "parts", "faithfulness", "labels", "global"],
        help="evaluations left out",
    )
    args = ap.parse_args(argv)
    common = ["--split", args.split, "--layer-point", args.layer_point, "--seed", str(args.seed)]
    if args.quiet:
        common.append("--quiet")
    n = ["--n", str(args.n)]
    plan = [
        ("sanity", n),
        ("parts", n + ["--draws", "3"]),
        ("faithfulness", n + ["--steps", "10"]),
        ("labels", n),
        ("global", ["--n", str(args.global_n or 10 * args.n)]),
    ]
    status = 0
    t0 = time.perf_counter()
    for what, extra in plan:
        if what in args.skip:
            continue
        print(f"\n==== eval {what} {' '.join(extra + common)} ====", flush=True)
        t = time.perf_counter()
        status |= _main_of(what)(extra + common)
        print(f"(eval {what}: {time.perf_counter() - t:.0f} s)", flush=True)
    print(f"\n(eval all: {time.perf_counter() - t0:.0f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
