"""Export and import of a label store: UTF-8 CSV (one row per game) and JSON, losslessly.

    store.to_csv("labels.csv")            # = write_csv(store, "labels.csv")
    store.to_json("labels.json")
    LabelStore.from_csv("labels.csv")     # a new store (in memory) with those answers
    store.import_("labels.json")          # append to a store

Files are written next to their target and renamed into place: no half-written file is left. An import
reads and validates every game with the rules of :func:`~inv_widgets.labels.rules.validate_answer` first
and adds them in one transaction (:meth:`LabelStore.record_answers`), so a bad row adds nothing. This
module does not import the store; it uses the store's ``export_rows()``, ``schema_version`` and
``record_answers()``.
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from . import rules

__all__ = ["EXPORT_FORMAT", "CSV_COLUMNS", "write_csv", "write_json", "read_export", "read_answers",
           "import_file", "atomic_write", "check_suffix"]

EXPORT_FORMAT = "inv-widgets-labels"
CSV_COLUMNS = [
    "record", "participant", "participant_created", "model", "image_id", "target", "layer",
    "members", "class_guessed", "true_class", "outcome", "reveal_step", "started_at",
    "answered_at", "duration_s", "label_1", "label_2", "label_3",
]


def atomic_write(path: Any, write: Callable[[Any], None], newline: str | None = None) -> Path:
    """Write to a temporary file next to ``path`` and rename it: no half-written file is left."""
    path = Path(os.fspath(path)).expanduser()
    if not path.parent.exists():
        raise FileNotFoundError(f"cannot write {str(path)!r}: the folder does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_json(store, path: Any) -> Path:
    """Write everything (participants, games, labels as typed) to a UTF-8 JSON file."""
    people, games = store.export_rows()
    doc = {
        "format": EXPORT_FORMAT,
        "schema_version": store.schema_version,
        "participants": [{"name": n, "created": c} for _, n, c in people],
        "games": games,
    }
    return atomic_write(path, lambda f: json.dump(doc, f, ensure_ascii=False, indent=1))


def write_csv(store, path: Any) -> Path:
    """Write everything to one UTF-8 CSV file, one row per game (``record = "game"``).

    Columns: record, participant, participant_created, the map identity, class_guessed,
    true_class, outcome, reveal_step, started_at, answered_at, duration_s, label_1..label_3.
    Every participant first gets a row with ``record = "participant"`` (so that people without
    games and the sign-up order survive). Empty cells mean "none" (labels and class names are
    never empty).
    """
    people, games = store.export_rows()
    created = {n: c for _, n, c in people}

    def write(f):
        w = csv.writer(f)  # RFC 4180: CRLF rows, fields with CR, LF, "," or quotes quoted
        w.writerow(CSV_COLUMNS)
        for _, name, c in people:
            w.writerow(["participant", name, c] + [""] * (len(CSV_COLUMNS) - 3))
        for g in games:
            labels = g["labels"] + [""] * (rules.MAX_LABELS - len(g["labels"]))
            w.writerow(
                ["game", g["participant"], created[g["participant"]], g["model"], g["image_id"],
                 g["target"], g["layer"], g["members"], g["class_guessed"] or "",
                 g["true_class"], g["outcome"], g["reveal_step"], g["started_at"] or "",
                 g["answered_at"], "" if g["duration_s"] is None else repr(g["duration_s"])]
                + labels
            )

    return atomic_write(path, write, newline="")


def _read_json(path: Path) -> tuple[list[tuple[str, str | None]], list[dict[str, Any]]]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path.name} is not an inv-widgets label export (format field missing)")
    people = [(p["name"], p.get("created")) for p in doc.get("participants", [])]
    return people, list(doc.get("games", []))


def _read_csv(path: Path) -> tuple[list[tuple[str, str | None]], list[dict[str, Any]]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != CSV_COLUMNS:
            raise ValueError(
                f"{path.name} is not an inv-widgets label export: expected the columns "
                f"{', '.join(CSV_COLUMNS)}"
            )
        people: dict[str, str | None] = {}
        games = []
        for n, row in enumerate(reader, 2):
            if len(row) != len(CSV_COLUMNS):
                raise ValueError(f"{path.name}: line {n} has {len(row)} cells, expected {len(CSV_COLUMNS)}")
            d = dict(zip(CSV_COLUMNS, row))
            people.setdefault(d["participant"], d["participant_created"] or None)
            if d["record"] == "participant":
                continue
            if d["record"] != "game":
                raise ValueError(f"{path.name}: line {n}: record must be 'game' or 'participant'")
            d["labels"] = [d[f"label_{i}"] for i in range(1, rules.MAX_LABELS + 1) if d[f"label_{i}"] != ""]
            d["class_guessed"] = d["class_guessed"] or None
            d["started_at"] = d["started_at"] or None
            games.append(d)
    return list(people.items()), games


def check_suffix(path: Any, suffix: str, what: str) -> None:
    if Path(os.fspath(path)).suffix.lower() != suffix:
        raise ValueError(f"{what} expects a {suffix} file, got {os.fspath(path)!r}")


def read_export(path: Any) -> tuple[list[tuple[str, str | None]], list[dict[str, Any]]]:
    """``(participants, games)`` of an export file, as written (not validated): by extension."""
    path = Path(os.fspath(path))
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return _read_csv(path)
    raise ValueError(f"cannot import {str(path)!r}: expected a .csv or .json file")


def read_answers(path: Any) -> tuple[list[tuple[str, str | None]], list[rules.Answer]]:
    """The participants and the validated answers of an export file; ``ValueError`` naming the file and
    the game at the first broken rule."""
    path = Path(os.fspath(path))
    people, games = read_export(path)
    answers = []
    for i, g in enumerate(games, 1):
        try:
            if not isinstance(g.get("participant"), str):
                raise TypeError(f"participant must be a name (str), got {g.get('participant')!r}")
            if g.get("answered_at") in (None, ""):
                raise ValueError("answered_at is required")
            answers.append(rules.validate_answer(
                g["participant"], (g["model"], g["image_id"], g["target"], g["layer"], g["members"]),
                g.get("class_guessed"), g["true_class"], g["outcome"], int(g["reveal_step"]),
                g.get("labels") or [], g.get("started_at"), g["answered_at"], duration_s=g.get("duration_s")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path.name}: game {i} is invalid: {exc}") from exc
    return people, answers


def import_file(store, path: Any) -> int:
    """Add the answers of an export file to ``store`` in one transaction; returns the number of games."""
    people, answers = read_answers(path)
    return store.record_answers(answers, participants=people)
