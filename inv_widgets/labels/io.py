"""Export and import of a label store: UTF-8 CSV (one row per game) and JSON, losslessly.

    store.to_csv("labels.csv")            # = write_csv(store, "labels.csv")
    store.to_json("labels.json")
    LabelStore.from_csv("labels.csv")     # a new store (in memory) with those answers
    store.import_("labels.json")          # append to a store

Files are written next to their target and renamed into place: no half-written file is left. An import
reads and validates every game with the rules of :func:`~inv_widgets.labels.rules.validate_answer` first
(a bad row is reported with the file name and its line, and adds nothing) and adds them in one
transaction (:meth:`LabelStore.record_answers`). Importing is idempotent: a game already in the store
(the same ``answer_id``, or for files without one the same participant, map and answer time) is skipped, so
importing the same file twice adds it once. Every error of an import names the file and the line (and for JSON
the column): a file that is not UTF-8, not JSON, nested too deeply, with a cell too long for a CSV reader, or a
row that breaks a rule of the store.

Exports carry the answer's identity (``answer_id``), its cluster map's weight (``weight``, percent) and
whether its labels are still to come (``labels_pending``); files written before these columns (schema 1)
import as they are.

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

__all__ = [
    "EXPORT_FORMAT",
    "CSV_COLUMNS",
    "write_csv",
    "write_json",
    "read_export",
    "read_answers",
    "import_file",
    "atomic_write",
    "check_suffix",
    "csv_cell",
    "from_csv_cell",
]

EXPORT_FORMAT = "inv-widgets-labels"
#: the columns of an export written before answers had an identity and a weight (schema 1): still imported
CSV_COLUMNS_V1 = [
    "record",
    "participant",
    "participant_created",
    "model",
    "image_id",
    "target",
    "layer",
    "members",
    "class_guessed",
    "true_class",
    "outcome",
    "reveal_step",
    "started_at",
    "answered_at",
    "duration_s",
    "label_1",
    "label_2",
    "label_3",
]
CSV_COLUMNS = CSV_COLUMNS_V1 + ["answer_id", "weight", "labels_pending"]
#: exports nest objects four levels deep; a JSON file nested deeper than this is not one
MAX_JSON_DEPTH = 32


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
            w.writerow(
                [
                    csv_cell(x)
                    for x in [
                        "game",
                        g["participant"],
                        created[g["participant"]],
                        g["model"],
                        g["image_id"],
                        g["target"],
                        g["layer"],
                        g["members"],
                        g["class_guessed"] or "",
                        g["true_class"],
                        g["outcome"],
                        g["reveal_step"],
                        g["started_at"] or "",
                        g["answered_at"],
                        "" if g["duration_s"] is None else repr(g["duration_s"]),
                    ]
                    + labels
                    + [
                        g.get("answer_id") or "",
                        "" if g.get("weight") is None else repr(g["weight"]),
                        "1" if g.get("labels_pending") else "",
                    ]
                ]
            )

    return atomic_write(path, write, newline="")


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> ValueError:
    """Where a file stops being UTF-8: its line, found by decoding it line by line."""
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                return ValueError(
                    f"{path.name}: line {n} is not UTF-8 text (byte 0x{line[bad.start]:02x} at "
                    f"column {bad.start + 1}); save the file as UTF-8 (spreadsheets: CSV UTF-8) and "
                    "import it again"
                )
    return ValueError(f"{path.name} is not UTF-8 text ({exc}); save it as UTF-8 and import it again")


def _too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> tuple[int, int] | None:
    """(line, depth) where a JSON text first nests deeper than ``limit``; None when it does not."""
    depth, line, in_string, escaped = 0, 1, False, False
    for ch in text:
        if ch == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line, depth
        elif ch in "]}":
            depth -= 1
    return None


def _read_json(path: Path) -> tuple[list[tuple[str, str | None]], list[dict[str, Any]]]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path.name}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}); "
            "import a file written by to_json"
        ) from None
    except RecursionError:
        where = _too_deep(text, MAX_JSON_DEPTH)
        line = f"line {where[0]}: " if where else ""
        raise ValueError(
            f"{path.name}: {line}JSON nested more than {MAX_JSON_DEPTH} levels deep, which no label "
            "export is; import a file written by to_json"
        ) from None
    where = _too_deep(text) if len(text) < 64 << 20 else None
    if where is not None:
        raise ValueError(
            f"{path.name}: line {where[0]}: JSON nested more than {MAX_JSON_DEPTH} levels deep, which "
            "no label export is; import a file written by to_json"
        )
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path.name} is not an inv-widgets label export (format field missing)")
    people = []
    participants = doc.get("participants", [])
    if not isinstance(participants, list):
        raise ValueError(f"{path.name}: participants must be a list, got {type(participants).__name__}")
    for i, p in enumerate(participants, 1):
        try:
            if not isinstance(p, dict):
                raise TypeError(f"a participant must be an object with a name, got {type(p).__name__}")
            name = rules.check_name(p.get("name"))
            created = p.get("created")
            people.append((name, None if created in (None, "") else rules.iso(rules.as_time(created, "created"))))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path.name}: participant {i} is invalid: {exc}") from None
    games = doc.get("games", [])
    if not isinstance(games, list):
        raise ValueError(f"{path.name}: games must be a list, got {type(games).__name__}")
    games = list(games)
    for i, g in enumerate(games, 1):
        if isinstance(g, dict):
            g["_where"] = f"game {i}"
    return people, games


def _read_csv(path: Path) -> tuple[list[tuple[str, str | None]], list[dict[str, Any]]]:
    # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the first column's name
    reader = None
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            return _csv_rows(path, reader)
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None
    except csv.Error as exc:
        n = max(1, reader.line_num) if reader is not None else 1  # the line being read
        if "field larger than field limit" in str(exc):
            raise ValueError(
                f"{path.name}: line {n}: a cell is longer than {csv.field_size_limit():,} characters, "
                f"which no label export has (a label is at most {rules.MAX_LABEL_CHARS}); is it the "
                "right file?"
            ) from None
        raise ValueError(f"{path.name}: line {n}: not readable as CSV ({exc})") from None


def _csv_rows(path: Path, reader) -> tuple[list[tuple[str, str | None]], list[dict[str, Any]]]:
    header = next(reader, None)
    if header not in (CSV_COLUMNS, CSV_COLUMNS_V1):
        raise ValueError(
            f"{path.name}: line 1: not an inv-widgets label export: expected the columns {', '.join(CSV_COLUMNS)}"
        )
    columns = header
    people: dict[str, str | None] = {}
    games = []
    games_seen = 0
    for row in reader:
        n = reader.line_num  # the file's line where this row ends (a cell may hold line breaks)
        if len(row) != len(columns):
            raise ValueError(f"{path.name}: line {n} has {len(row)} cells, expected {len(columns)}")
        d = dict(zip(columns, (from_csv_cell(x) for x in row)))
        people.setdefault(d["participant"], d["participant_created"] or None)
        if d["record"] == "participant":
            continue
        if d["record"] != "game":
            raise ValueError(f"{path.name}: line {n}: record must be 'game' or 'participant'")
        games_seen += 1
        d["labels"] = [d[f"label_{i}"] for i in range(1, rules.MAX_LABELS + 1) if d[f"label_{i}"] != ""]
        d["class_guessed"] = d["class_guessed"] or None
        d["started_at"] = d["started_at"] or None
        if d.get("labels_pending", "") not in ("", "0", "1"):
            raise ValueError(f"{path.name}: line {n}: labels_pending must be 1 or empty, got {d['labels_pending']!r}")
        d["labels_pending"] = d.get("labels_pending") == "1"
        d["_where"] = f"line {n} (game {games_seen})"
        games.append(d)
    for name, created in people.items():
        try:
            rules.check_name(name)
            rules.as_time(created, "participant_created")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path.name}: participant {name!r} is invalid: {exc}") from None
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


def _int(value: Any, what: str) -> Any:
    """A whole number as read from a file (CSV text "3", JSON 3), checked to fit the store's columns."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**31) <= value < 2**31:
        raise ValueError(f"{what} {value} is too large for a class index (at most {2**31 - 1:,})")
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
            pending = g.get("labels_pending", False)
            if not isinstance(pending, bool):
                raise TypeError(f"labels_pending must be true or false, got {pending!r}")
            answers.append(
                rules.validate_answer(
                    g["participant"],
                    (g["model"], g["image_id"], _int(g["target"], "target"), g["layer"], g["members"]),
                    g.get("class_guessed"),
                    g["true_class"],
                    g["outcome"],
                    _step(g["reveal_step"]),
                    [] if labels is None else labels,
                    g.get("started_at"),
                    g["answered_at"],
                    duration_s=g.get("duration_s"),
                    answer_id=g.get("answer_id"),
                    weight=g.get("weight"),
                    labels_pending=pending and not labels,
                )
            )
            places.append(where)
        except KeyError as exc:
            raise ValueError(f"{path.name}: {where} is invalid: the field {exc} is missing") from exc
        except (TypeError, ValueError, OverflowError) as exc:
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
