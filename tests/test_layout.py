"""The package's layout, checked from the source: imports point one way and never in a circle, files stay
small, and the rules that must exist once do.

Every exception is named below with its reason, and each one is checked to be still needed: when the code
no longer needs an exception, its test fails until the entry is removed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "inv_widgets"
#: files stay under this many lines as ruff formats them (one argument per line where a call does not fit: the
#: 500 lines of the hand-packed style are about 600 formatted)
MAX_LINES = 600

#: Files allowed over MAX_LINES, with the reason.
LONG_FILES = {
    "demo/parts.py": "one idea: the procedural parts world (ten classes drawn from their parts, masks, vocabulary)",
    "widgets/game.py": "the game widget's traits (each documented) and its message table; the logic is in labels/",
}

#: Import cycles that exist for now, with the reason (each a sorted tuple of module names).
KNOWN_CYCLES: dict = {}

#: What each part may import from the rest of the package (DESIGN.md: imports point one way).
MAY_IMPORT = {
    # pictures and files out (plain functions the result objects call) sit below the engine and import none of it
    "inv_widgets.files": set(),
    "inv_widgets.render": set(),
    "inv_widgets.report": {"inv_widgets.render"},
    "inv_widgets.export": {"inv_widgets.render", "inv_widgets.files", "inv_widgets.report"},
    "inv_widgets.engine": {
        "inv_widgets.engine",
        "inv_widgets.export",
        "inv_widgets.render",
        "inv_widgets.report",
        "inv_widgets.files",
    },
    "inv_widgets.inputs": {"inv_widgets.engine"},
    "inv_widgets.sizing": {"inv_widgets.engine", "inv_widgets.inputs"},
    "inv_widgets.keyed": {"inv_widgets.engine"},
    "inv_widgets.session": {"inv_widgets.engine", "inv_widgets.inputs", "inv_widgets.sizing", "inv_widgets.keyed"},
}


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["inv_widgets", *path.relative_to(PACKAGE).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _imported(module: str, is_pkg: bool, node, mods) -> set[str]:
    """The package's modules an import statement names (function-level imports count too)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in mods}
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    out = set()
    for a in node.names:
        sub = f"{target}.{a.name}"
        if sub in mods:
            out.add(sub)
        elif target in mods:
            out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, at any depth of its code. Importing ``a.b.c`` from outside
    ``a.b`` runs ``a.b``'s ``__init__`` first: that counts as importing it."""
    mods = _modules()
    graph = {}
    for m, (path, is_pkg) in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for d in _imported(m, is_pkg, node, mods) - {m}:
                deps.add(d)
                parts = d.split(".")
                for i in range(2, len(parts)):
                    ancestor = ".".join(parts[:i])
                    if ancestor in mods and not m.startswith(ancestor + "."):
                        deps.add(ancestor)
        graph[m] = deps - {m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(tuple(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_cycles_through_function_level_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [("a", "b", "c")]
    g = import_graph()
    assert "inv_widgets.engine.recipes" in g["inv_widgets.engine.explanation"]
    assert "inv_widgets.labels" in g["inv_widgets.widgets._common"]  # imported inside readable()
    assert "inv_widgets.engine" in g["inv_widgets.session"]  # session imports engine.runtime: runs engine/__init__


def test_no_module_imports_one_that_imports_it_back():
    found = cycles(import_graph())
    assert sorted(set(found) - set(KNOWN_CYCLES)) == [], "import cycles"
    stale = sorted(set(KNOWN_CYCLES) - set(found))
    assert not stale, f"these cycles are gone: remove them from KNOWN_CYCLES: {stale}"


def test_imports_point_one_way():
    graph = import_graph()
    for part, allowed in MAY_IMPORT.items():
        for m, deps in graph.items():
            if m != part and not m.startswith(part + "."):
                continue
            bad = {
                d
                for d in deps
                if d != "inv_widgets"
                and not any(d == a or d.startswith(a + ".") for a in allowed)
                and not (d == part or d.startswith(part + "."))
            }
            assert not bad, (
                f"{m} imports {sorted(bad)}: {part} may import only {sorted(allowed) or 'nothing'} of the package"
            )


def test_python_files_stay_small():
    lengths = {
        str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")
    }
    long = {f: n for f, n in lengths.items() if n > MAX_LINES}
    assert sorted(set(long) - set(LONG_FILES)) == [], f"files over {MAX_LINES} lines: {long}"
    shorter = sorted(f for f in LONG_FILES if lengths.get(f, 0) <= MAX_LINES)
    assert not shorter, f"remove from LONG_FILES, they are short enough now (or gone): {shorter}"


#: Places that still check a recipe name themselves, with the reason.
OWN_RECIPE_CHECKS: dict = {}


def _sources():
    return {str(p.relative_to(PACKAGE)): p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}


def test_rules_that_exist_once():
    src = _sources()
    checks = {f for f, s in src.items() if "unknown recipe" in s}
    assert checks - set(OWN_RECIPE_CHECKS) == {"engine/recipes/__init__.py"}, checks
    assert set(OWN_RECIPE_CHECKS) <= checks, "remove from OWN_RECIPE_CHECKS: it asks the registry now"
    assert {f for f, s in src.items() if re.search(r"^STATIC\s*=", s, re.M)} == {"widgets/_common.py"}
    assert {f for f, s in src.items() if re.search(r"^def _?readable\(", s, re.M)} == {"widgets/_common.py"}
    # one walk over a dendrogram's nodes: leaves_list and parent tables only in engine/tree.py
    assert {f for f, s in src.items() if "leaves_list" in s} == {"engine/tree.py"}
    # train/eval flags come back through engine.runtime.eval_mode, thread caps through limited_threads
    restores = {f for f, s in src.items() if re.search(r"\.train\(\s*was", s)} - {"engine/runtime.py"}
    assert not restores, f"restore the mode with engine.runtime.eval_mode: {restores}"
    caps = {f for f, s in src.items() if "set_num_threads" in s} - {"engine/runtime.py"}
    assert caps <= {"demo/train.py", "demo/accuracy.py"}, caps  # command-line settings, not caps (said there)


@pytest.mark.parametrize("name", ["OrderedDict", "popitem(last=False)"])
def test_caches_use_the_shared_lru(name):
    """Hand-rolled least-recently-used caches are engine.runtime.LRU, except where a comment says why not."""
    allowed = {
        "engine/runtime.py": "the LRU itself",
        "demo/parts.py": "importable without torch; pickled to DataLoader workers (said there)",
        "demo/model.py": "an ordered dict of layers, not a cache",
    }
    users = {f for f, s in _sources().items() if name in s}
    assert users <= set(allowed), f"use engine.runtime.LRU (or say here why not): {sorted(users - set(allowed))}"


#: Modules that import by name at run time, with the reason; each such name must point down or sideways.
IMPORTS_BY_NAME = {
    "__init__.py": "the package's public names, imported on first use (inv.Explorer, inv.runs, ...)",
    "widgets/__init__.py": "the widgets, imported on first use",
    "labels/store/backend.py": "the PostgreSQL backend (labels/store/postgres.py), only when a URL asks for it",
    "cli.py": "the evaluations (inv_widgets.eval), only for `inv-widgets eval`",
}


def test_no_registry_hides_an_import():
    """Results reach export.py by a plain import (issue 21): no registry of tools by name, and every module that
    imports by name is listed above with its reason."""
    src = _sources()
    registries = {f for f, s in src.items() if re.search(r"^def (provide|tool)\(|display\.tool\(", s, re.M)}
    assert not registries, f"a registry of tools hides the import graph: {sorted(registries)}"
    by_name = {f for f, s in src.items() if "import_module(" in s or "__import__(" in s}
    assert by_name == set(IMPORTS_BY_NAME), f"imports by name: {sorted(by_name)} (list each with its reason)"
    graph = import_graph()
    assert "inv_widgets.export" in graph["inv_widgets.engine.clusters"]  # a visible arrow, checked by MAY_IMPORT


#: Where a rule's message may be written, besides engine/request.py, with the reason.
OWN_INDEX_CHECKS = {
    "demo/parts.py": "importable without torch (DataLoader workers load it); its IndexError ends iteration"
}


def test_one_result_path_and_checks_declared_once():
    """Issue 21: no module under runs/, labels/, concepts/ or widgets/ restates the cut (engine/cut.py is the one
    path); the "out of range" and "unknown layer" messages are written once (engine/request.py); options are read
    from a session's own attributes, never fished for with getattr."""
    src = _sources()
    wings = ("runs/", "labels/", "concepts/", "widgets/")
    # the cut's steps called (a method of the same name, defined or called on an object, is not the step), and the
    # cut's ordering of maps by weight outside the widgets (which sort class probabilities for display)
    cut_steps = re.compile(
        r"(?<![.\w])(?<!def )(prune_mask|cluster_maps_lowres|gradcam_lowres|ward_linkage\w*|gap_k)\("
    )
    restated = {f for f, s in src.items() if f.startswith(wings) and cut_steps.search(s)}
    restated |= {f for f, s in src.items() if f.startswith(wings[:3]) and "argsort(-" in s}
    assert not restated, f"these restate the cut (call engine/cut.py instead): {sorted(restated)}"
    for message in ("out of range", "unknown layer"):
        where = {f for f, s in src.items() if message in s} - set(OWN_INDEX_CHECKS)
        assert where == {"engine/request.py"}, f"{message!r} is written in {sorted(where)}"
    fished = {f for f, s in src.items() if re.search(r"getattr\((self\.)?(session|source|run|ex\.session), ", s)}
    assert not fished, f"getattr on a session for its options: {sorted(fished)}"
