"""The ``concepts`` extra (captum, scikit-image, threadpoolctl): a clear ImportError when it is not installed."""

from __future__ import annotations

import importlib.util

__all__ = ["require_concepts"]


def require_concepts(what: str, modules=("captum", "skimage", "threadpoolctl")) -> None:
    """ImportError naming the ``concepts`` extra when a library ``what`` needs is not installed."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        names = {"skimage": "scikit-image"}
        raise ImportError(
            f"{what} needs {', '.join(names.get(m, m) for m in missing)}, which is not installed; "
            "install it with: pip install 'inv-widgets[concepts]'"
        )
