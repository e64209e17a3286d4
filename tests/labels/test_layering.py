"""Imports point one way: no module of inv_widgets imports one that imports it back (read from the source,
function-level imports included), aggregation knows nothing of the store, the label side nothing of the
widgets."""

from __future__ import annotations

import ast
from pathlib import Path

import inv_widgets

ROOT = Path(inv_widgets.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _known(name: str, mods) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of the package it imports anywhere in its source (a ``from pkg import sub`` of
    a submodule counts as importing the submodule)."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [_known(a.name, mods) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = (
                    ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".")
                    if node.level
                    else node.module or ""
                )
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else _known(base, mods) for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in targets if t and t != mod}
    return graph


def _reachable(graph, start) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_reader_sees_function_level_imports():
    graph = import_graph()
    assert "inv_widgets.labels" in graph["inv_widgets.widgets._common"]  # inside readable()
    assert "inv_widgets.labels" in graph["inv_widgets.eval.labels"]  # inside evaluate_labels()
    assert "inv_widgets.labels.rules" in graph["inv_widgets.labels.store.queries"]  # from .. import rules


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    cycles = sorted(m for m in graph if m in _reachable(graph, m))
    assert cycles == [], f"import cycles through {cycles}"


def test_aggregation_and_the_pure_label_modules_know_nothing_of_the_store_or_the_widgets():
    graph = import_graph()
    store = {m for m in graph if m.startswith("inv_widgets.labels.store")}
    for pure in ("aggregate", "rules", "text", "pool", "protocols", "index", "io"):
        reached = _reachable(graph, f"inv_widgets.labels.{pure}")
        assert not reached & store, f"labels.{pure} imports the store: {sorted(reached & store)}"
        assert not any(m.startswith("inv_widgets.widgets") for m in reached), pure
    assert not any(m.startswith("inv_widgets.widgets") for m in _reachable(graph, "inv_widgets.labels"))
