"""Every check of what is asked, declared once: whole numbers, indices, layers, targets, recipes, cuts,
weightings, batch sizes.

Session, explain_dataset, Pool, GlobalExplanation, the widgets and the CLI call these, so each rule has one
message (as scikit-learn declares its parameter constraints once and validates them in one place). Each
function returns the value in its canonical form (an ``int``, a list in forward order, ...) or raises a
``TypeError`` (wrong kind of value), ``ValueError`` (a value that is not allowed) or ``IndexError`` /
``KeyError`` (an index or name that is not there), naming what was expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import numpy as np

from .recipes import get_recipe
from .weights import check_weighting

__all__ = [
    "check_whole",
    "check_index",
    "check_indices",
    "check_layers",
    "check_layer",
    "check_module_names",
    "check_target",
    "check_recipe",
    "check_k",
    "check_weighting",
    "check_batch_size",
    "check_choice",
    "check_number",
    "TARGET_MODES",
]

#: The targets that are not a class: each image's predicted class, or its ground-truth label.
TARGET_MODES = ("predicted", "label")


def check_whole(name: str, value, *, lo: int | None = None, hi: int | None = None, none_ok: bool = False) -> int | None:
    """``value`` as an ``int``: an int (numpy ints too) or a float that is whole; never a bool. ``lo``/``hi``:
    the smallest and largest allowed; ``none_ok``: None passes (and is returned)."""
    if value is None and none_ok:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a whole number{' or None' if none_ok else ''}, got {value!r}")
    if isinstance(value, numbers.Integral):
        v = int(value)
    elif math.isfinite(float(value)) and float(value).is_integer():
        v = int(value)
    else:
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be at least {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be at most {hi}, got {v}")
    return v


def check_number(
    name: str, value, *, lo: float | None = None, hi: float | None = None, none_ok: bool = False
) -> float | None:
    """``value`` as a finite ``float`` (never a bool), within ``lo``..``hi`` when given."""
    if value is None and none_ok:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = (
            f"between {lo} and {hi}"
            if lo is not None and hi is not None
            else f"at least {lo}"
            if lo is not None
            else f"at most {hi}"
        )
        raise ValueError(f"{name} must be {bounds}, got {v}")
    return v


def check_index(i, n: int, *, what: str = "image", owner: str = "the session") -> int:
    """An index into ``n`` things (negative counts from the end), returned in 0..n-1. ``what`` names the things
    ("image", "layer", "cluster map", "class") and ``owner`` what holds them, for the message."""
    if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral):
        raise TypeError(f"{what} index must be an int, got {type(i).__name__}")
    i = int(i)
    if not -n <= i < n:
        raise IndexError(f"{what} index {i} out of range: {owner} has {n} {_plural(what, n)}")
    return i % n


def _plural(what: str, n: int) -> str:
    return what if n == 1 else what + ("es" if what.endswith("s") else "s")


def check_indices(
    indices, n: int, *, what: str = "image", owner: str = "the session", unique: bool = False, allow_empty: bool = False
) -> list[int]:
    """Indices into ``n`` things (default: all of them), each checked as :func:`check_index`, in 0..n-1.
    ``unique``: a repeated index is refused (otherwise it is kept once, in first-seen order)."""
    if indices is None:
        return list(range(n))
    if isinstance(indices, (numbers.Integral, np.bool_)) or isinstance(indices, (str, bytes)):
        raise TypeError(f"{what} indices must be a sequence of ints (e.g. range(10)), not {indices!r}")
    out: list[int] = []
    seen: set[int] = set()
    for i in indices:
        j = check_index(i, n, what=what, owner=owner)
        if j in seen:
            if unique:
                raise ValueError(f"the {what}s asked for name {what} {j} more than once; give each {what} once")
            continue
        seen.add(j)
        out.append(j)
    if not out and not allow_empty:
        raise ValueError(f"no {what}s given: the list is empty" + (f" ({owner} has none)" if n == 0 else ""))
    return out


def _unknown_layers(names: list, have: list[str], owner: str) -> str:
    return (
        f"unknown layer{'s' if len(names) > 1 else ''} {', '.join(map(repr, names))}; the layers of {owner} are {have}"
    )


def check_layer(name, have: Sequence[str], *, owner: str = "the session") -> str:
    """One layer, by name or position (an int) among ``have``: a ``KeyError`` (a look-up) when it is not there."""
    have = list(have)
    if isinstance(name, numbers.Integral) and not isinstance(name, (bool, np.bool_)):
        return have[check_index(name, len(have), what="layer", owner=owner)]
    if not isinstance(name, str) or name not in have:
        raise KeyError(_unknown_layers([name], have, owner))
    return name


def check_module_names(names: Sequence[str], modules: Iterable[str]) -> None:
    """Layer names a person gave for a model: a ``ValueError`` naming those that are no module of it (and close
    names) if any."""
    modules = list(modules)
    known = set(modules)
    missing = [n for n in names if n not in known]
    if missing:
        close = [n for n in modules if n and any(m.split(".")[-1] in n for m in missing)][:5]
        raise ValueError(
            f"unknown layer name(s) {missing}; the model has no such module. "
            + (f"Did you mean one of {close}? " if close else "")
            + "List the names with [n for n, _ in model.named_modules()]."
        )


def check_layers(wanted, have: Sequence[str], *, owner: str = "the session") -> list[str]:
    """The chosen layers (None: all; a name or position; or several) in the order of ``have``: a ``ValueError``
    (an argument) naming every unknown one; an empty choice is refused."""
    have = list(have)
    if wanted is None:
        return have
    names = [wanted] if isinstance(wanted, (str, numbers.Integral)) else list(wanted)
    if not names:
        raise ValueError("layers is empty: give at least one layer name (or None for all)")
    unknown = [
        n
        for n in names
        if not (isinstance(n, str) and n in have)
        and not (isinstance(n, numbers.Integral) and not isinstance(n, (bool, np.bool_)))
    ]
    if unknown:
        raise ValueError(_unknown_layers(unknown, have, owner))
    chosen = {check_layer(n, have, owner=owner) for n in names}
    return [n for n in have if n in chosen]


def check_target(target, classes: Sequence[str] | None, *, modes: Iterable[str] = ("predicted",)):
    """A target as asked: None or "predicted" (each image's predicted class) -> None; "label" (when allowed by
    ``modes``) -> "label"; a class name or index -> the class index (checked against ``classes`` when known)."""
    modes = tuple(modes)
    if target is None or (target == "predicted" and "predicted" in modes):
        return None
    if isinstance(target, str):
        if target in modes:
            return target
        if classes is not None and target in list(classes):
            return list(classes).index(target)
        choices = ", ".join(repr(m) for m in modes)
        shown = (
            f"; classes are {list(classes)[:20]}{' ...' if len(classes) > 20 else ''}" if classes is not None else ""
        )
        raise ValueError(f"unknown class name {target!r}{shown}" + (f" (or one of {choices})" if choices else ""))
    if isinstance(target, (bool, np.bool_)) or not isinstance(target, numbers.Integral):
        raise TypeError(f"target must be a class index or name, got {type(target).__name__}")
    t = int(target)
    n = len(classes) if classes is not None else None
    if t < 0 or (n is not None and t >= n):
        raise ValueError(
            f"target class {t} is outside the {n} classes (0..{n - 1})"
            if n is not None
            else f"target class {t} must be >= 0"
        )
    return t


def check_recipe(recipe) -> str:
    """A registered recipe's name (the registry's error names the choices)."""
    return get_recipe(recipe).name


def check_k(k) -> int | None:
    """A cut's number of clusters: None (the suggested cut) or a whole number >= 1."""
    return check_whole("k", k, lo=1, none_ok=True)


def check_batch_size(batch_size, *, none_ok: bool = False) -> int | None:
    """Images per model pass: a whole number >= 1."""
    return check_whole("batch_size", batch_size, lo=1, none_ok=none_ok)


def check_choice(name: str, value, choices: Sequence) -> object:
    """``value`` if it is one of ``choices``; else a ValueError listing them."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value
