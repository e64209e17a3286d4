"""The package as a newcomer meets it (issue 22): subpackages as attributes in a fresh process, the version it
reports, and a docstring on every public name (what the API reference renders)."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import inv_widgets as inv

ROOT = Path(__file__).resolve().parents[1]


def test_subpackages_work_as_attributes_in_a_fresh_process():
    code = (
        "import inv_widgets as inv, types; "
        "mods = [inv.labels, inv.concepts, inv.runs, inv.widgets, inv.eval, inv.demo, inv.labels.pool]; "
        "assert all(isinstance(m, types.ModuleType) for m in mods); "
        "print(inv.labels.pool.Pool.__name__, inv.concepts.GlobalExplanation.__name__, inv.runs.Run.__name__)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["Pool", "GlobalExplanation", "Run"]


def test_star_import_does_not_hide_the_builtin_eval():
    ns: dict = {}
    exec("from inv_widgets import *", ns)
    assert "Session" in ns and "eval" not in ns
    assert "eval" in dir(inv)


def test_version_is_the_installed_distributions():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert inv.__version__ == importlib.metadata.version("inv-widgets") == declared


def public_names() -> dict[str, object]:
    """Every name of ``inv.__all__`` and of each public module's ``__all__`` (what the API reference shows),
    once each, under the name of the module that defines it."""
    found = [getattr(inv, n) for n in inv.__all__]
    for module in (
        "inv_widgets.engine",
        "inv_widgets.engine.sources",
        "inv_widgets.engine.records",
        "inv_widgets.engine.cut",
        "inv_widgets.engine.request",
        "inv_widgets.labels",
        "inv_widgets.concepts",
        "inv_widgets.runs",
        "inv_widgets.widgets",
        "inv_widgets.demo",
        "inv_widgets.render",
        "inv_widgets.export",
    ):
        mod = importlib.import_module(module)
        found += [getattr(mod, n) for n in getattr(mod, "__all__", [])]
    names = {}
    for obj in found:
        if inspect.ismodule(obj):
            names[obj.__name__] = obj
        elif inspect.isclass(obj) or inspect.isfunction(obj):
            names[f"{obj.__module__}.{obj.__qualname__}"] = obj
        # constants are documented where they are defined (a comment or the module's docstring)
    return names


#: Public methods and properties still without a docstring (none now); the test fails when one gains a docstring
#: and is still listed here.
KNOWN_UNDOCUMENTED: set = set()


def undocumented() -> set[str]:
    missing = set()
    for name, obj in public_names().items():
        if not (inspect.getdoc(obj) or "").strip():
            missing.add(name)
        if inspect.isclass(obj):  # and every public method and property the class defines itself
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                target = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                if inspect.isfunction(target) and not (target.__doc__ or "").strip():
                    missing.add(f"{name}.{attr}")
    return missing


def test_every_public_name_has_a_docstring():
    missing = undocumented()
    assert len(public_names()) > 80  # the walk found the API (classes, functions, modules)
    new, stale = sorted(missing - KNOWN_UNDOCUMENTED), sorted(KNOWN_UNDOCUMENTED - missing)
    assert not new, f"public names without a docstring: {new}"
    assert not stale, f"documented now: remove from KNOWN_UNDOCUMENTED: {stale}"


def test_every_registered_recipe_is_named_where_a_user_chooses_one():
    """The CLI's ``--recipe`` help, the Session docstring and the Explorer's recipe buttons name every recipe of
    the registry (``spatial`` was missing from all three)."""
    from inv_widgets.cli import _parser
    from inv_widgets.engine.recipes import recipe_names
    from inv_widgets.widgets.explorer.controls import Controls

    explain = _parser()._subparsers._group_actions[0].choices["explain"]
    recipe_help = next(a.help for a in explain._actions if "--recipe" in a.option_strings)
    doc = " ".join(inv.Session.__doc__.split())
    buttons = Controls("fast").recipe_select.options
    for name in recipe_names():
        assert name in recipe_help, (name, recipe_help)
        assert f'"{name}"' in doc, name
        # paper-sklearn, the reference (9x slower than paper), gets its button when set_recipe asks for it
        assert name in buttons or name == "paper-sklearn", (name, buttons)


def test_release_files_agree_with_the_package():
    """CITATION.cff cites the INV paper and this package at its version; the changelog has its Unreleased section."""
    yaml = __import__("pytest").importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["authors"]
    assert str(cff["version"]) == project["version"] and cff["license"] == project["license"]
    paper = cff["preferred-citation"]
    assert [a["family-names"] for a in paper["authors"]] == ["Bianchi", "De Santis", "Tocchetti", "Brambilla"]
    assert paper["year"] == 2024 and "arXiv:2405.03301" in [i["value"] for i in paper["identifiers"]]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in changelog and "\n## Unreleased\n" in changelog
    assert "Development Status :: 3 - Alpha" in project["classifiers"] and project["urls"]
