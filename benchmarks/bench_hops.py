"""Where a key's answer waits, with and without the server extension ``inv_widgets_server`` (TCP_NODELAY).

    python benchmarks/bench_hops.py [--presses 16]

Opens the demo notebook in JupyterLab (system Chromium, headless, 127.0.0.1) twice, once with the extension
switched off for that server (``jpserver_extensions: {inv_widgets_server: false}`` in its own config) and once
as installed, and presses the Explorer's layer keys back to back (the next key as soon as the gallery is drawn)
and paced (0.5 s apart). Per press, from the page's keydown: when the kernel began the request (the kernel's
clock and the page's are the same machine's), how long the kernel worked, when the answer reached the gallery
in the page and when the gallery was drawn; medians printed per server and pace. The gap between the kernel's
end and the answer's arrival is the server and the browser relaying the message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_widget as bw  # noqa: E402

from tests.browser import servers  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.explorer_ui import ExplorerUI  # noqa: E402
from tests.browser.pages import NotebookPage  # noqa: E402

SPY = r"""
import time as _time
_hops = []
_handle = explorer._safely
def _spy(action, fn, *a, **k):
    t0 = _time.time()
    _handle(action, fn, *a, **k)
    _hops.append((action, t0, _time.time()))
explorer._safely = _spy
print("ok")
"""

KEYDOWN = """() => { window.__k = null; document.addEventListener('keydown',
  () => { window.__k = performance.timeOrigin + performance.now(); }, {capture: true, once: true}); }"""


def measure(browser, server, presses: int) -> dict:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    nb = NotebookPage(page, server, "01_explore.ipynb")
    nb.open()
    nb.command("notebook:run-all-cells")
    ui = ExplorerUI(page)
    ui.wait_gallery(600_000)
    nb.wait_cells_done(600_000)
    page.locator(".inv-explorer .inv-dendro-box .js-plotly-plot .main-svg").first.wait_for(timeout=600_000)
    bw.kernel(page, SPY)
    ui.focus_explorer()
    for key in ["ArrowLeft"] * 7 + ["ArrowRight"] * 7:  # every layer once: cached from here on
        bw.timed_press(page, key)
    page.wait_for_timeout(1000)
    bw.kernel(page, "_hops.clear(); print('ok')")
    ui.focus_explorer()
    pressed = []
    for pace, pause in (("back to back", 0), ("paced", 500)):
        for i in range(presses):
            page.evaluate(bw.ARM)
            page.evaluate(KEYDOWN)
            page.keyboard.press(["ArrowLeft", "ArrowLeft", "ArrowRight", "ArrowRight"][i % 4])
            lat = page.evaluate("() => window.__invLat")
            pressed.append((pace, page.evaluate("() => window.__k"), lat))
            if pause:
                page.wait_for_timeout(pause)
    hops = json.loads(bw.kernel(page, "import json; print(json.dumps(_hops))").strip().splitlines()[-1])
    hops = [h for h in hops if not h[0].startswith("draw")]
    page.context.close()
    if len(hops) != len(pressed):
        raise RuntimeError(f"{len(pressed)} presses but {len(hops)} requests reached the kernel")
    out: dict = {}
    for (pace, key_ms, lat), (_, t0, t1) in zip(pressed, hops):
        out.setdefault(pace, []).append(
            (t0 * 1000 - key_ms, (t1 - t0) * 1000, lat["arrived"] - (t1 * 1000 - key_ms), lat["arrived"], lat["total"])
        )
    return {pace: [statistics.median(col) for col in zip(*rows)] for pace, rows in out.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presses", type=int, default=16, help="key presses per pace and server")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="inv-hops-") as tmp:
        tmp = Path(tmp)
        root = tmp / "root"
        servers.copy_notebooks(root, ["01_explore.ipynb"])
        results = {}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                for name, on in (("extension off", False), ("extension on (as installed)", True)):
                    home = tmp / f"home-{int(on)}"
                    (home / "config").mkdir(parents=True)
                    switch = {"ServerApp": {"jpserver_extensions": {"inv_widgets_server": on}}}
                    (home / "config" / "jupyter_server_config.json").write_text(json.dumps(switch))
                    server = servers.start("lab", root, home, env_extra={"INV_RANDOM_WEIGHTS": "1"})
                    try:
                        log = server.log_path.read_text(errors="replace")
                        if ("TCP_NODELAY" in log) != on:
                            raise RuntimeError(f"the extension is not {'on' if on else 'off'} as asked:\n{log[-2000:]}")
                        results[name] = measure(browser, server, args.presses)
                    finally:
                        servers.stop(server)
            finally:
                browser.close()
    print(f"demo, layer keys, {args.presses} presses per row; medians in ms from the page's keydown")
    print(
        f"{'server':28s} {'pace':13s} {'kernel starts':>13s} {'kernel works':>12s} {'kernel->page':>12s} "
        f"{'answer in page':>14s} {'gallery drawn':>13s}"
    )
    for name, paces in results.items():
        for pace, (start, work, relay, arrived, total) in paces.items():
            print(f"{name:28s} {pace:13s} {start:13.1f} {work:12.1f} {relay:12.1f} {arrived:14.1f} {total:13.1f}")


if __name__ == "__main__":
    main()
