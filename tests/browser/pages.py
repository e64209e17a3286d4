"""Driving JupyterLab 4 / Notebook 7 / Voila pages with Playwright (sync API).

Helpers only wait on what a person would see: the status bar's kernel state, cell prompts, rendered widgets.
"""

from __future__ import annotations

import io
import re
import time

import numpy as np

LONG = 240_000  # ms: first run of a notebook on a slow shared machine (kernel start + imports + model)
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"  # the notebook on screen (not a hidden tab)


KERNEL_EXEC = """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const f = k.requestExecute({code, silent: false, store_history: false});
  let out = '';
  f.onIOPub = (msg) => {
    if (msg.header.msg_type === 'stream') out += msg.content.text;
    if (msg.header.msg_type === 'error') out += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
  };
  await f.done;
  return out;
}"""


class NotebookPage:
    """A notebook opened in JupyterLab (``kind="lab"``) or Notebook 7 (``kind="notebook"``)."""

    def __init__(self, page, server, path: str):
        self.page = page
        self.server = server
        self.path = path
        self.console: list[str] = []
        page.on(
            "console", lambda m: self.console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
        )
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    # ---- opening --------------------------------------------------------------------------------
    def open(self, timeout: float = LONG) -> NotebookPage:
        if self.server.kind == "lab":
            # a workspace of its own: no tabs restored from an earlier page on the same server
            ws = f"inv-{int(time.time() * 1000)}"
            self.page.goto(self.server.url(f"lab/workspaces/{ws}/tree/{self.path}"), wait_until="domcontentloaded")
        else:
            self.page.goto(self.server.url(f"notebooks/{self.path}"), wait_until="domcontentloaded")
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout)
        self.wait_idle(timeout)
        return self

    def kernel_status(self) -> str:
        """The kernel state as the page shows it ('Idle', 'Busy', ... or '')."""
        return self.page.evaluate(
            """() => {
                const sb = Array.from(document.querySelectorAll('.jp-StatusBar-TextItem, .jp-StatusBar-Item'))
                    .map(e => e.textContent || '').find(t => /\\|\\s*(Idle|Busy|Starting|Connecting|Restarting|Unknown|Dead|Disconnected)/.test(t));
                if (sb) return sb.split('|').pop().trim();
                const ind = document.querySelector('.jp-Notebook-ExecutionIndicator, [data-status]');
                if (ind) return (ind.getAttribute('data-status') || '').replace(/^./, c => c.toUpperCase());
                const k = document.querySelector('.jp-KernelStatus, .jp-Toolbar-kernelStatus');
                return k ? (k.getAttribute('title') || k.textContent || '') : '';
            }"""
        )

    def kernel_connection(self) -> str:
        """'connected:idle' when the page's kernel connection is up and the kernel idle (app API)."""
        return self.page.evaluate(
            """() => {
                const app = window.jupyterapp;
                const w = app && app.shell && app.shell.currentWidget;
                const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                return k ? `${k.connectionStatus}:${k.status}` : '';
            }"""
        )

    def wait_idle(self, timeout: float = LONG) -> None:
        """Wait for the status bar's 'Idle' (and a connected kernel behind it)."""
        deadline = time.monotonic() + timeout / 1000
        while time.monotonic() < deadline:
            if "idle" in self.kernel_status().lower() and self.kernel_connection() == "connected:idle":
                return
            self.page.wait_for_timeout(250)
        raise TimeoutError(
            f"the kernel did not become idle within {timeout / 1000:.0f} s "
            f"(status: {self.kernel_status()!r}); console: {self.console[-10:]}"
        )

    # ---- running --------------------------------------------------------------------------------
    def command(self, name: str, args: dict | None = None) -> None:
        """Start a JupyterLab/Notebook command, as the menu or the command palette would (returns at once;
        wait for its effect with a bounded wait such as :meth:`wait_cells_done`)."""
        self.page.evaluate("([n, a]) => { window.jupyterapp.commands.execute(n, a || {}); }", [name, args])

    def run_all(self, timeout: float = LONG) -> None:
        self.wait_idle(timeout)
        self.command("notebook:run-all-cells")
        self.wait_cells_done(timeout)

    def wait_cells_done(self, timeout: float = LONG) -> None:
        """Wait until every code cell has an execution count and the kernel is idle."""
        deadline = time.monotonic() + timeout / 1000
        self.page.wait_for_timeout(300)
        while time.monotonic() < deadline:
            prompts = self.page.eval_on_selector_all(
                f"{PANEL} .jp-CodeCell .jp-InputArea-prompt", "els => els.map(e => e.textContent.trim())"
            )
            if (
                prompts
                and all(re.fullmatch(r"\[\d+\]:?", p) for p in prompts)
                and "idle" in self.kernel_status().lower()
            ):
                return
            self.page.wait_for_timeout(300)
        raise TimeoutError(f"cells still running after {timeout / 1000:.0f} s; console: {self.console[-10:]}")

    def kernel(self, code: str) -> str:
        """Run ``code`` in the notebook's kernel (not in a cell: nothing is added to the notebook); its printed
        output, and "ERROR name: value" for an exception."""
        return self.page.evaluate(KERNEL_EXEC, code)

    def error_outputs(self) -> list[str]:
        return self.page.eval_on_selector_all(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']",
            "els => els.map(e => e.textContent)",
        )

    def active_cell_index(self) -> int:
        return self.page.evaluate(
            "() => Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell')).findIndex(c => c.classList.contains('jp-mod-active'))"
        )


def png_array(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def images_differ(a: bytes, b: bytes, min_fraction: float = 0.01) -> bool:
    """True when two screenshots differ in more than ``min_fraction`` of their pixels (or in size)."""
    x, y = png_array(a), png_array(b)
    if x.shape != y.shape:
        return True
    changed = (np.abs(x - y).max(axis=2) > 24).mean()
    return bool(changed > min_fraction)
