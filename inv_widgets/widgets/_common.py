"""What every widget of the package shares: where the front-end files live, how a widget's ES module is
put together, and how an error reads to a person.
"""

from __future__ import annotations

import pathlib
from functools import cache

__all__ = ["STATIC", "esm", "readable", "as_session"]

STATIC = pathlib.Path(__file__).parent / "static"


@cache
def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def esm(name: str) -> str:
    """A widget's ES module: the shared DOM helpers (``static/dom.js``) followed by ``static/<name>``.

    anywidget loads one module per widget from a string, so the helpers travel with each widget instead
    of being imported; no build step, and each widget file reads as if ``el`` and ``pct`` were imported.
    """
    return _read("dom.js") + "\n" + _read(name)


def readable(exc: BaseException, action: str) -> str:
    """One sentence for a person: what could not be done and why (busy stores say nothing was lost)."""
    from ..labels import StoreBusyError

    if isinstance(exc, StoreBusyError):
        return (
            f"The label store is busy (someone else is saving), so {action} did not happen. "
            "Nothing was lost: try again in a moment."
        )
    msg = str(exc).strip() or type(exc).__name__
    kind = "" if isinstance(exc, (ValueError, TypeError, KeyError, IndexError)) else f"{type(exc).__name__}: "
    return f"Could not {action}: {kind}{msg}"


def as_session(obj, images, kwargs: dict, widget: str):
    """``obj`` if it is a Session; else a Session built from a model, ``images`` and session options."""
    if hasattr(obj, "explain") and hasattr(obj, "image") and hasattr(obj, "classes"):
        if images is not None or kwargs:
            raise TypeError(
                f"{widget}(session) takes no images or session options; give them to the Session, "
                f"or call {widget}(model, images, **session_options)"
            )
        return obj
    from ..session import Session

    return Session(obj, images, **kwargs)
