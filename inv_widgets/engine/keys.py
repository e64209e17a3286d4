"""A cluster map's identity: (model fingerprint, image id, target, layer, sorted member channels).

Never its position in a list, so labels stay attached when the cut or the order changes. Pure Python:
the engine makes these keys (``Clusters.key(j)``) and the label store files answers under them.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

__all__ = ["MapKey", "members_text", "parse_members"]


def members_text(members: Iterable[int]) -> str:
    """The canonical text of a cluster map's member channels: sorted, comma-separated, e.g. ``"3,17,42"`` (what
    the label store, a run's table and every maps table hold)."""
    return ",".join(str(m) for m in _members_tuple(members))


def parse_members(text: str) -> tuple[int, ...]:
    """The member channels of a canonical text (or any order, any spacing): ``"17, 3,42"`` -> ``(3, 17, 42)``."""
    return _members_tuple(str(text))


def _members_tuple(members: Any) -> tuple[int, ...]:
    if isinstance(members, str):
        parts = [p.strip() for p in members.split(",")]
        if parts == [""]:
            raise ValueError("members is empty: a cluster map has at least one member channel")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"members {members!r} is not a comma-separated list of channel indices like '3,17,42'"
            ) from None
    else:
        try:
            values = [operator.index(m) for m in members]
        except TypeError:
            raise TypeError(f"members must be integers (channel indices), got {members!r}") from None
    if not values:
        raise ValueError("members is empty: a cluster map has at least one member channel")
    if any(v < 0 for v in values):
        raise ValueError(f"members must be non-negative channel indices, got {values}")
    out = tuple(sorted(set(values)))
    if len(out) != len(values):
        raise ValueError(f"members has repeated channels: {values}")
    return out


class _MapKeyFields(NamedTuple):
    model: str
    image_id: str
    target: int
    layer: str
    members: tuple[int, ...]


class MapKey(_MapKeyFields):
    """Identity of one cluster map: ``(model, image_id, target, layer, members)``.

    An immutable named tuple. ``members`` may be given in any order (list, array, or text
    ``"3,17,42"``); it is kept as a sorted tuple of ints. ``image_id`` is kept as text and ``target``
    as int, so keys built from a DataFrame row compare equal to the keys that were recorded. Being a
    plain tuple underneath, it equals (and hashes like) any 5-tuple with the same canonical values,
    e.g. the engine's ``Clusters.key(j)``.
    """

    __slots__ = ()

    def __new__(cls, model: str, image_id: Any, target: Any, layer: str, members: Any) -> MapKey:
        for field, value in (("model", model), ("layer", layer)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"MapKey.{field} must be a non-empty str, got {value!r}")
        if not isinstance(image_id, str):
            try:
                image_id = str(operator.index(image_id))
            except TypeError:
                raise TypeError(f"MapKey.image_id must be a str or an int, got {type(image_id).__name__}") from None
        if not image_id:
            raise ValueError("MapKey.image_id must not be empty")
        if isinstance(target, bool):
            raise TypeError("MapKey.target must be the int class index, got a bool")
        try:
            target = operator.index(target)
        except TypeError:
            if isinstance(target, str) and target.strip().lstrip("-").isdigit():
                target = int(target)
            else:
                raise TypeError(f"MapKey.target must be the int class index, got {target!r}") from None
        return super().__new__(cls, model, image_id, int(target), layer, _members_tuple(members))

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> MapKey:  # keeps _replace canonical too
        return cls(*iterable)

    @property
    def members_text(self) -> str:
        """Canonical text of the members, e.g. ``"3,17,42"``."""
        return ",".join(map(str, self.members))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MapKey:
        """Key of a row of :meth:`LabelStore.games`, :meth:`LabelStore.labels` or an aggregate."""
        return cls(row["model"], row["image_id"], row["target"], row["layer"], row["members"])

    def as_dict(self) -> dict[str, Any]:
        """The key as a plain dict (model, image_id, target, layer, members as a list), for JSON and tables."""
        return {
            "model": self.model,
            "image_id": self.image_id,
            "target": self.target,
            "layer": self.layer,
            "members": self.members_text,
        }
