"""The label store's SQL, written once for every backend: standard SQL with ``:name`` parameters.

Text from people is always a bound parameter, never part of the SQL. Statements that differ between
databases (the schema, locking, integrity checks) live in the backends and in :mod:`.schema`.
"""

from __future__ import annotations

import operator
from typing import Any

from .. import rules

GAME_COLUMNS = [
    "game_id",
    "participant",
    "model",
    "image_id",
    "target",
    "layer",
    "members",
    "class_guessed",
    "true_class",
    "outcome",
    "reveal_step",
    "points",
    "n_labels",
    "started_at",
    "answered_at",
    "duration_s",
    "answer_id",
    "weight",
    "labels_pending",
]
LABEL_COLUMNS = [
    "label_id",
    "game_id",
    "participant",
    "model",
    "image_id",
    "target",
    "layer",
    "members",
    "class_guessed",
    "true_class",
    "outcome",
    "reveal_step",
    "position",
    "text",
    "text_clean",
    "answered_at",
    "answer_id",
    "weight",
]
#: the columns of a game in an export, in order (participant by name)
EXPORT_GAME_COLUMNS = [
    "participant",
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
    "answer_id",
    "weight",
    "labels_pending",
]

SCHEMA_VERSION = "SELECT MAX(version) FROM schema_version"

ADD_PARTICIPANT = "INSERT INTO participants (name, created) VALUES (:name, :created) ON CONFLICT (name) DO NOTHING"
PARTICIPANT_BY_NAME = "SELECT id FROM participants WHERE name = :name"
PARTICIPANT_BY_ID = "SELECT id FROM participants WHERE id = :id"
PARTICIPANTS = "SELECT id, name, created FROM participants ORDER BY id"

ADD_GAME = (
    "INSERT INTO games (participant, model, image_id, target, layer, members, class_guessed,"
    " true_class, outcome, reveal_step, started_at, answered_at, duration_s, answer_id, weight, labels_pending)"
    " VALUES (:participant, :model, :image_id, :target, :layer, :members, :class_guessed,"
    " :true_class, :outcome, :reveal_step, :started_at, :answered_at, :duration_s, :answer_id, :weight,"
    " :labels_pending)"
)
#: the game stored under a writer's answer id, with what identifies the answer
GAME_BY_ANSWER_ID = (
    "SELECT g.id, g.participant, g.model, g.image_id, g.target, g.layer, g.members, g.class_guessed,"
    " g.true_class, g.outcome, g.reveal_step, g.labels_pending FROM games g WHERE g.answer_id = :answer_id"
)
#: one game: its participant, outcome and whether its labels are still to come
GAME_OF = "SELECT participant, outcome, class_guessed, true_class, labels_pending FROM games WHERE id = :game_id"
LABELS_DONE = "UPDATE games SET labels_pending = 0 WHERE id = :game_id"
ADD_LABEL = "INSERT INTO labels (game_id, text, text_clean, position) VALUES (:game_id, :text, :text_clean, :position)"

_KEY_MATCH = (
    "model = :k_model AND image_id = :k_image_id AND target = :k_target AND layer = :k_layer AND members = :k_members"
)
#: does the participant have a game on this map
ANSWERED = "SELECT 1 FROM games WHERE participant = :participant AND " + _KEY_MATCH + " LIMIT 1"
#: a game's identity: participant, map and answer time
GAME_BY_IDENTITY = (
    "SELECT id, class_guessed, true_class, outcome, reveal_step, started_at, duration_s FROM games"
    " WHERE participant = :participant AND answered_at = :answered_at AND " + _KEY_MATCH + " ORDER BY id"
)
LABEL_TEXTS_OF = "SELECT text FROM labels WHERE game_id = :game_id ORDER BY position"

LAST_GAME_OF = "SELECT id FROM games WHERE participant = :participant ORDER BY id DESC LIMIT 1"
DELETE_LABELS_OF = "DELETE FROM labels WHERE game_id = :game_id"
DELETE_GAME = "DELETE FROM games WHERE id = :game_id"

LABEL_COUNTS = (
    "SELECT g.target, g.members, COUNT(l.id) FROM games g JOIN labels l ON l.game_id = g.id"
    " WHERE g.model = :model AND g.image_id = :image_id AND g.layer = :layer"
    " GROUP BY g.target, g.members"
)

GAMES = (
    "SELECT g.id, p.name, g.model, g.image_id, g.target, g.layer, g.members,"
    " g.class_guessed, g.true_class, g.outcome, g.reveal_step,"
    " (SELECT COUNT(*) FROM labels l WHERE l.game_id = g.id),"
    " g.started_at, g.answered_at, g.duration_s, g.answer_id, g.weight, g.labels_pending"
    " FROM games g JOIN participants p ON p.id = g.participant{where} ORDER BY g.id"
)
LABELS = (
    "SELECT l.id, g.id, p.name, g.model, g.image_id, g.target, g.layer, g.members,"
    " g.class_guessed, g.true_class, g.outcome, g.reveal_step, l.position, l.text,"
    " l.text_clean, g.answered_at, g.answer_id, g.weight"
    " FROM labels l JOIN games g ON g.id = l.game_id"
    " JOIN participants p ON p.id = g.participant{where} ORDER BY g.id, l.position"
)
LEADERBOARD = (
    "SELECT p.name, g.outcome, g.reveal_step FROM participants p"
    " LEFT JOIN games g ON g.participant = p.id ORDER BY p.id, g.id"
)
#: every game with its number of labels and highest position: finds partial answers
LABELS_PER_GAME = (
    "SELECT g.id, g.outcome, COUNT(l.id), MAX(l.position), g.labels_pending FROM games g"
    " LEFT JOIN labels l ON l.game_id = g.id GROUP BY g.id, g.outcome, g.labels_pending"
)

EXPORT_GAMES = (
    "SELECT g.id, p.name, g.model, g.image_id, g.target, g.layer, g.members,"
    " g.class_guessed, g.true_class, g.outcome, g.reveal_step, g.started_at,"
    " g.answered_at, g.duration_s, g.answer_id, g.weight, g.labels_pending FROM games g"
    " JOIN participants p ON p.id = g.participant ORDER BY g.id"
)
EXPORT_LABELS = "SELECT game_id, text FROM labels ORDER BY game_id, position"


def key_params(key) -> dict[str, Any]:
    """The ``:k_*`` parameters of a map key."""
    return dict(
        k_model=key.model, k_image_id=key.image_id, k_target=key.target, k_layer=key.layer, k_members=key.members_text
    )


def where(participant=None, key=None, model=None, image_id=None, target=None, layer=None) -> tuple[str, dict[str, Any]]:
    """`` WHERE ...`` for the filters of ``games()`` and ``labels()``, and its parameters."""
    clauses, params = [], {}
    if key is not None:
        key = rules.as_key(key)
        clauses.append(
            "g.model = :k_model AND g.image_id = :k_image_id AND g.target = :k_target"
            " AND g.layer = :k_layer AND g.members = :k_members"
        )
        params.update(key_params(key))
    if participant is not None:
        if isinstance(participant, int) and not isinstance(participant, bool):
            clauses.append("p.id = :p_id")
            params["p_id"] = participant
        else:
            clauses.append("p.name = :p_name")
            params["p_name"] = rules.check_name(participant)
    for col, value in (("model", model), ("image_id", image_id), ("layer", layer)):
        if value is not None:
            clauses.append(f"g.{col} = :{col}")
            params[col] = str(value)
    if target is not None:
        clauses.append("g.target = :target")
        params["target"] = operator.index(target)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
