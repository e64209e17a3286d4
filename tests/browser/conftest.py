"""Fixtures for real-browser tests: Playwright (sync API) + the system Chromium against JupyterLab 4,
Notebook 7 or Voila, each served on 127.0.0.1 with a token from a temporary copy of the notebooks.

Reusable by any widget's browser test::

    def test_something(browser, jupyter_server):
        server = jupyter_server("lab", notebooks=["01_explore.ipynb"])
        page = browser.new_page()
        nb = NotebookPage(page, server, "01_explore.ipynb").open()
        nb.run_all()

Every test under tests/browser is marked ``browser``; select or skip them with ``-m browser`` / ``-m "not browser"``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from . import servers

CHROMIUM = os.environ.get("INV_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = servers.REPO / "docs" / "screenshots"


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def _missing(reason: str):
    """A missing browser-test dependency: a failure in CI (which must run these tests), a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (make test installs everything)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    """The system Chromium, headless, driven by Playwright (never downloads a browser)."""
    if not servers.have_module("playwright"):
        _missing("playwright is not installed (pip install -e '.[dev]'; it drives the system Chromium)")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set INV_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield b
    finally:
        b.close()
        pw.stop()


@pytest.fixture
def page(browser):
    """A fresh page (own context: no shared storage) with a wide viewport for the widgets."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    p = ctx.new_page()
    try:
        yield p
    finally:
        ctx.close()


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory):
    """Factory: ``jupyter_server(kind, notebooks=[...], notebook=None, env=None)`` starts a server.

    ``kind`` is "lab" (JupyterLab 4), "notebook" (Notebook 7, skipped when not installed) or "voila" (serving
    ``notebook``). The notebooks are copied from notebooks/ into a fresh root. Kernels run with
    ``INV_RANDOM_WEIGHTS=1`` (no downloads). Every server is stopped, kernels included, at the end.
    """
    started = []

    def start(kind: str, notebooks=("01_explore.ipynb",), notebook: str | None = None, env: dict | None = None):
        if kind == "notebook" and not servers.have_module("notebook"):
            _missing("Notebook 7 is not installed (pip install notebook)")
        if kind == "voila" and not servers.have_module("voila"):
            _missing("voila is not installed (pip install voila)")
        if not servers.have_module("jupyterlab") and kind == "lab":
            _missing("jupyterlab is not installed (pip install jupyterlab)")
        root = tmp_path_factory.mktemp(f"{kind}-root")
        home = tmp_path_factory.mktemp(f"{kind}-home")
        servers.copy_notebooks(root, notebooks)
        s = servers.start(kind, root, home, notebook=notebook, env_extra={"INV_RANDOM_WEIGHTS": "1", **(env or {})})
        started.append(s)
        return s

    yield start
    for s in started:
        servers.stop(s)


@pytest.fixture(scope="session")
def lab_server(jupyter_server):
    """One JupyterLab 4 for the session, serving copies of the project's notebooks."""
    names = sorted(p.name for p in servers.NOTEBOOKS.glob("*.ipynb"))
    return jupyter_server("lab", notebooks=names)


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory):
    """Where the browser tests save their screenshots: a temporary folder, so that a test run leaves the
    tracked docs/screenshots/*.png as they are; ``INV_UPDATE_SCREENSHOTS=1`` writes the README's pictures
    there instead (then commit them)."""
    if os.environ.get("INV_UPDATE_SCREENSHOTS", "") not in ("", "0"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")
