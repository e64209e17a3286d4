"""Export and import of a label store: UTF-8 CSV (one row per game) and JSON, losslessly.

    store.to_csv("labels.csv")            # = write_csv(store, "labels.csv")
    store.to_json("labels.json")
    LabelStore.from_csv("labels.csv")     # a new store (in memory) with those answers
    store.import_("labels.json")          # append to a store

Files are written next to their target and renamed into place: no half-written file is left. An import
reads and validates every game with the rules of :func:`~inv_widgets.labels.rules.validate_answer` first
(a bad row is reported with the file name and its line, and adds nothing) and adds them in one
transaction (:meth:`LabelStore.record_answers`). Importing is idempotent: a game already in the store
(same participant, map and answer time) is skipped, so importing the same file twice adds it once.

CSV cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, TAB or CR)
are written with a leading apostrophe, and so are cells that start with an apostrophe; the import
removes it again, so round trips stay exact. A CSV saved by a spreadsheet with a byte-order mark imports.
This module does not import the store; it uses the store's ``export_rows()``, ``schema_version`` and
``record_answers()``.
"""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

from ..files import atomic_write
from . import rules

__all__ = ["EXPORT_FORMAT", "CSV_COLUMNS", "write_csv", "write_json", "read_export", "read_answers",
           "import_file", "atomic_write", "check_suffix", "csv_cell", "from_csv_cell"]

EXPORT_FORMAT = "inv-widgets-labels"
CSV_COLUMNS = [
    "record", "participant", "participant_created", "model", "image_id", "target", "layer",
    "members", "class_guessed", "true_class", "outcome", "reveal_step", "started_at",
    "answered_at", "duration_s", "label_1", "label_2", "label_3",
]


#: first characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """A cell as written: text that a spreadsheet would run as a formula gets a leading apostrophe (and so
    does text that starts with an apostrophe, so that :func:`from_csv_cell` can tell them apart)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS + ("'",)) else text


def from_csv_cell(text: str) -> str:
    """The value of a cell written by :func:`csv_cell`."""
    return text[1:] if text.startswith("'") else text


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
            w.writerow([csv_cell(x) for x in ["participant", name, c] + [""] * (len(CSV_COLUMNS) - 3)])
        for g in games:
            labels = g["labels"] + [""] * (rules.MAX_LABELS - len(g["labels"]))
            w.writerow([csv_cell(x) for x in
                        ["game", g["participant"], created[g["participant"]], g["model"], g["image_id"],
                         g["target"], g["layer"], g["members"], g["class_guessed"] or "",
                         g["true_class"], g["outcome"], g["reveal_step"], g["started_at"] or "",
                         g["answered_at"], "" if g["duration_s"] is None else repr(g["duration_s"])]
                        + labels])

    return atomic_write(path, write, newline="")


def _read_json(path: Path) -> tuple[list[tuple[str, str | None]], list[dict[str, Any]]]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path.name} is not an inv-widgets label export (format field missing)")
    people = [(p["name"], p.get("created")) for p in doc.get("participants", [])]
    games = list(doc.get("games", []))
    for i, g in enumerate(games, 1):
        if isinstance(g, dict):
            g["_where"] = f"game {i}"
    return people, games


def _read_csv(path: Path) -> tuple[list[tuple[str, str | None]], list[dict[str, Any]]]:
    # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the first column's name
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != CSV_COLUMNS:
            raise ValueError(
                f"{path.name} is not an inv-widgets label export: expected the columns "
                f"{', '.join(CSV_COLUMNS)}"
            )
        people: dict[str, str | None] = {}
        games = []
        games_seen = 0
        for row in reader:
            n = reader.line_num  # the file's line where this row ends (a cell may hold line breaks)
            if len(row) != len(CSV_COLUMNS):
                raise ValueError(f"{path.name}: line {n} has {len(row)} cells, expected {len(CSV_COLUMNS)}")
            d = dict(zip(CSV_COLUMNS, (from_csv_cell(x) for x in row)))
            people.setdefault(d["participant"], d["participant_created"] or None)
            if d["record"] == "participant":
                continue
            if d["record"] != "game":
                raise ValueError(f"{path.name}: line {n}: record must be 'game' or 'participant'")
            games_seen += 1
            d["labels"] = [d[f"label_{i}"] for i in range(1, rules.MAX_LABELS + 1) if d[f"label_{i}"] != ""]
            d["class_guessed"] = d["class_guessed"] or None
            d["started_at"] = d["started_at"] or None
            d["_where"] = f"line {n} (game {games_seen})"
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


def _step(value: Any) -> Any:
    """A reveal step as read from a file: CSV text must be digits ("3"), JSON must be an int (not a float,
    not true); :func:`rules.check_step` checks the rest."""
    if isinstance(value, str):
        if not re.fullmatch(r"\s*\d+\s*", value):
            raise ValueError(f"reveal_step must be a whole number 0..{rules.MAX_STEP}, got {value!r}")
        return int(value)
    return value


def read_answers(path: Any, with_places: bool = False):
    """The participants and the validated answers of an export file; ``ValueError`` naming the file and the
    row (CSV: its line) at the first broken rule. Every rule of ``record_answer`` applies.

    With ``with_places``, also the place of each answer in the file ("line 5 (game 3)", "game 3")."""
    path = Path(os.fspath(path))
    people, games = read_export(path)
    answers, places = [], []
    for i, g in enumerate(games, 1):
        where = g.get("_where", f"game {i}") if isinstance(g, dict) else f"game {i}"
        try:
            if not isinstance(g, dict):
                raise TypeError(f"a game must be an object, got {type(g).__name__}")
            if not isinstance(g.get("participant"), str):
                raise TypeError(f"participant must be a name (str), got {g.get('participant')!r}")
            if g.get("answered_at") in (None, ""):
                raise ValueError("answered_at is required")
            labels = g.get("labels")
            answers.append(rules.validate_answer(
                g["participant"], (g["model"], g["image_id"], g["target"], g["layer"], g["members"]),
                g.get("class_guessed"), g["true_class"], g["outcome"], _step(g["reveal_step"]),
                [] if labels is None else labels, g.get("started_at"), g["answered_at"],
                duration_s=g.get("duration_s")))
            places.append(where)
        except KeyError as exc:
            raise ValueError(f"{path.name}: {where} is invalid: the field {exc} is missing") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path.name}: {where} is invalid: {exc}") from exc
    return (people, answers, places) if with_places else (people, answers)


def import_file(store, path: Any) -> int:
    """Add the answers of an export file to ``store`` in one transaction; returns the number of games added
    (games already in the store are skipped: importing a file twice adds nothing the second time)."""
    people, answers, places = read_answers(path, with_places=True)
    try:
        return store.record_answers(answers, participants=people, skip_existing=True)
    except ValueError as exc:
        index = getattr(exc, "index", None)
        if index is None:
            raise
        raise ValueError(f"{Path(os.fspath(path)).name}: {places[index]} is invalid: {exc}") from exc
