"""Helpers for the Deep Reveal game's browser tests: a page object, an oracle that knows the answer of the
map on screen, and the kernel environment of notebooks/03_label_session.ipynb."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

LONG = 300_000  # ms: kernel start + imports + explaining the images on a slow shared machine
STEP = 60_000  # ms: one action (the kernel may be explaining an image that left the session's cache)


class GamePage:
    """One LabelingGame on a page (Voila, or a notebook in JupyterLab): what a player sees and does."""

    ROOT = ".inv-game .ig-root"

    def __init__(self, page, nth: int = 0):
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.root = page.locator(self.ROOT).nth(nth)

    def _dialog(self, d) -> None:
        self.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    # ---- state ------------------------------------------------------------------------------------
    def phase(self) -> str:
        return self.root.get_attribute("data-phase") or ""

    def wait_phase(self, phase: str, timeout: float = STEP) -> None:
        self.page.wait_for_selector(f"{self.ROOT}[data-phase='{phase}']", timeout=timeout)

    def wait_rendered(self, timeout: float = LONG) -> None:
        self.page.wait_for_selector(self.ROOT, timeout=timeout)

    def step_label(self) -> str:
        return self.root.locator(".ig-step.ig-now .ig-step-label").inner_text()

    def wait_step(self, percent: str, timeout: float = STEP) -> None:
        self.page.wait_for_function(
            "([sel, p]) => { const e = document.querySelector(sel + ' .ig-step.ig-now .ig-step-label');"
            " return e && e.textContent === p; }",
            arg=[self.ROOT, percent],
            timeout=timeout,
        )

    def message(self) -> str:
        m = self.root.locator(".ig-msg")
        return m.inner_text() if m.is_visible() else ""

    def wait_message(self, pattern: str, timeout: float = STEP) -> str:
        """Wait until the message box shows text matching the regular expression ``pattern``."""
        deadline = time.monotonic() + timeout / 1000
        last = ""
        while time.monotonic() < deadline:
            last = self.message()
            if re.search(pattern, last):
                return last
            self.page.wait_for_timeout(150)
        raise AssertionError(f"the game did not say /{pattern}/ within {timeout / 1000:.0f} s; it says {last!r}")

    def masked_src(self) -> str:
        return self.root.locator(".ig-fig-masked img").get_attribute("src") or ""

    def points(self) -> int:
        return int(re.search(r"\d+", self.root.locator(".ig-points").inner_text()).group())

    def leaderboard(self) -> list[str]:
        return self.root.locator(".ig-table tbody .ig-player").all_inner_texts()

    def wait_leaderboard_has(self, names: list[str], timeout: float = STEP) -> list[str]:
        deadline = time.monotonic() + timeout / 1000
        rows: list[str] = []
        while time.monotonic() < deadline:
            rows = self.leaderboard()
            if all(n in rows for n in names):
                return rows
            self.page.wait_for_timeout(200)
        raise AssertionError(f"leaderboard {rows} lacks some of {names}")

    def class_names(self) -> list[str]:
        return self.root.locator(".ig-class .ig-class-name").all_inner_texts()

    # ---- actions ----------------------------------------------------------------------------------
    def focus(self) -> None:
        """Give the game the keyboard the way a person does: click on it (its title bar)."""
        self.root.locator(".ig-brand").click()

    def enter_name(self, name: str, press_enter: bool = True) -> None:
        box = self.root.locator(".ig-name-input")
        box.click()
        box.fill("")
        box.type(name, delay=10)
        if press_enter:
            box.press("Enter")
        else:
            self.root.locator(".ig-name-go").click()

    def type_label(self, i: int, text: str) -> None:
        box = self.root.locator(".ig-label-input").nth(i)
        box.click()
        box.fill("")
        if len(text) > 60:
            box.fill(text)
        else:
            box.type(text, delay=5)

    def round_id(self) -> str:
        return self.root.evaluate("r => r.dataset.round || ''")


def screenshot(locator_or_page, path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    return locator_or_page.screenshot(path=str(path))


def env_for_game(store, images: int = 4) -> dict:
    """Kernel environment of the game notebook: untrained weights, a small pool, the store to use (a file
    path or a postgresql:// URL)."""
    return {
        "INV_RANDOM_WEIGHTS": "1",
        "INV_LABEL_STORE": str(store),
        "INV_GAME_IMAGES": str(images),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }


class Oracle:
    """The game the notebook's kernel plays, rebuilt in the test process from the same seeded network,
    images and store: it knows the answer of the map on a player's screen (the browser never does)."""

    def __init__(self, store_path, images: int = 4):
        import torch

        import inv_widgets as inv

        torch.manual_seed(0)  # as the notebook does for its untrained network
        model = inv.demo.DemoCNN(num_classes=len(inv.demo.CLASSES)).eval()
        self.session = inv.Session(model, inv.demo.PartsDataset(n=images))
        self.store_path = store_path if "://" in str(store_path) else Path(store_path)

    def current(self, participant: str):
        """The game ``participant`` sees now (its ``current`` map, ``classes``, ``masked`` PNG)."""
        from inv_widgets.labels import LabelStore
        from inv_widgets.widgets.game import LabelingGame

        store = LabelStore(self.store_path)
        try:
            game = LabelingGame(self.session, store, participant)
            game.start()
        finally:
            store.close()
        return game


def page_image(game_page: GamePage, which: str = "masked") -> bytes:
    """The PNG bytes the page shows in the masked (or overlay) frame."""
    data = game_page.root.locator(f".ig-fig-{which} img").evaluate(
        "async img => Array.from(new Uint8Array(await (await fetch(img.src)).arrayBuffer()))"
    )
    return bytes(data)


def same_picture(a: bytes, b: bytes, tol: float = 3.0) -> bool:
    """Two PNGs that show the same picture (mean absolute difference below ``tol`` of 255)."""
    import io

    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.float32)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float32)
    return x.shape == y.shape and float(np.abs(x - y).mean()) < tol
