"""Explorer latency in a real browser (JupyterLab 4 + the system Chromium, 127.0.0.1).

    python benchmarks/bench_widget.py [--changes 24] [--models demo,vgg16] [--baseline REF] [--trace DIR]

For each model it opens a notebook, runs all cells and measures:

- first gallery: from opening the notebook (page load) to the first rendered gallery, split into the page and
  kernel start, and "run all" to gallery; plus, in the warm kernel, one fresh explanation (model run and the
  shown layer's dendrogram) and the model's own forward+backward, so the overhead of everything else shows;
- layer and cut changes once cached: a key press on the layer slider's handle (a real slider change) and the
  Explorer's arrow keys, timed in the page from the browser's keydown to the re-rendered gallery (new images
  decoded and swapped in, next animation frame); median and p95 over ``--changes`` changes each, with the
  kernel's share (the Explorer's own ``timings``) and the ratio to the model's forward+backward time. The
  presses follow each other as soon as the gallery is drawn (a person holding or tapping a key); "paced"
  rows wait 0.5 s after each change, so that the kernel has finished the dendrogram and the detail view too.

``--baseline REF`` measures the code of git revision REF (``git archive``, kernels started with it on
``PYTHONPATH``) in the same run, alternating with the working tree model by model, and prints the ratios of the
medians; ``--trace DIR`` also records a Chromium trace of 8 layer changes for each and prints where the
renderer's main thread spent them (``benchmarks/trace_summary.py``).

Models: "demo" is notebooks/01_explore.ipynb (the trained demo CNN, 128 px); "vgg16" is torchvision's VGG-16
with random weights at 224 px on four scikit-image photos, the paper's nine layers. Nothing is downloaded.
Targets (issue 24): layer or cut change <= 60 ms median, p95 <= 90 ms once cached (issue "Explorer widget":
<= 150 ms); first gallery <= 2 s plus one explanation.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.browser import servers  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.explorer_ui import ExplorerUI  # noqa: E402
from tests.browser.pages import KERNEL_EXEC, NotebookPage  # noqa: E402

VGG_CELLS = [
    """import torch, torchvision
from torch import nn
from PIL import Image
from skimage import data as skdata
import inv_widgets as inv""",
    """torch.manual_seed(0)
vgg = torchvision.models.vgg16(weights=None).eval()     # random weights: nothing to download
w = torchvision.models.VGG16_Weights.IMAGENET1K_V1
photos = [Image.fromarray(getattr(skdata, n)()) for n in ["astronaut", "coffee", "chelsea", "rocket"]]
convs = [f"features.{n}" for n, m in vgg.features.named_children() if isinstance(m, nn.Conv2d)][-9:]
session = inv.Session(vgg, photos, transform=w.transforms(), class_names=w.meta["categories"], layers=convs)""",
    """explorer = inv.Explorer(session)
explorer""",
]

# In the page: arm a timer on the next keydown and a promise that resolves when the gallery's revision changes
# (the new images are decoded and swapped in), one animation frame later.
ARM = """() => {
  const g = document.querySelector('.inv-explorer .inv-gallery');
  const old = g.dataset.revision;
  window.__invT0 = null;
  document.addEventListener('keydown', () => { window.__invT0 = performance.now(); }, {capture: true, once: true});
  window.__invLat = new Promise((resolve) => {
    const obs = new MutationObserver(() => {
      if (g.dataset.revision !== old) {
        obs.disconnect();
        requestAnimationFrame(() => resolve(performance.now() - window.__invT0));
      }
    });
    setTimeout(() => { obs.disconnect(); resolve(-1); }, 60000);
    obs.observe(g, {attributes: true, attributeFilter: ['data-revision']});
  }).then((total) => {
    const rev = g.dataset.revision;
    const a = performance.getEntriesByName('inv-gallery-arrived-' + rev).pop();
    return {total, arrived: a && window.__invT0 !== null ? a.startTime - window.__invT0 : -1};
  });
}"""

KERNEL_PROBE = """
import json, time, torch
_s = explorer.session
_i = len(_s) - 1
_x = _s.input(_i)[None].to(_s.device)
_fb = []
for _ in range(5):
    _t = time.perf_counter()
    _out = _s.model(_x)
    _out[0].max().backward()
    _fb.append(time.perf_counter() - _t)
_s.model.zero_grad(set_to_none=True)
_s.clear_cache()
_t = time.perf_counter()
_e = _s.explain(_i, lazy=True)
_t_model = time.perf_counter() - _t
_lr = _e.layer(_e.layers[-1], explorer.recipe); _lr.tree; _lr.cut()
_t_explain = time.perf_counter() - _t
import psutil
print(json.dumps({"fwd_bwd_s": sorted(_fb)[2], "explain_model_s": _t_model, "explain_s": _t_explain,
                  "kernel_rss_mib": psutil.Process().memory_info().rss / 2**20}))
"""


def pct(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def kernel(page, code: str) -> str:
    return page.evaluate(KERNEL_EXEC, code)


def kernel_timings(page) -> list:
    """Seconds of the Explorer's answers to the page's requests (not the dendrogram and detail drawn after them)."""
    out = kernel(page, "import json; print(json.dumps([t for a, t in explorer.timings if not a.startswith('draw ')]))")
    return json.loads(out.strip().splitlines()[-1])


def timed_press(page, key: str) -> dict:
    """{"total": keydown -> gallery re-rendered, "arrived": keydown -> the kernel's answer reached the gallery} (ms)."""
    page.evaluate(ARM)
    page.keyboard.press(key)
    return page.evaluate("() => window.__invLat")


CELL_TIMES = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    const e = c.getMetadata('execution') || {};
    const a = Date.parse(e['iopub.execute_input']), b = Date.parse(e['shell.execute_reply']);
    out.push({source: c.sharedModel.getSource(), s: (b - a) / 1000});
  }
  return out;
}"""


def measure_changes(page, ui: ExplorerUI, n: int, how: str, pause_ms: int = 0) -> list[dict]:
    """``how``: "layer-slider" (keys on the layer slider's handle), "layer-keys" or "cut-keys" (Explorer keys);
    ``pause_ms`` after each change before the next key."""
    lat = []
    if how == "layer-slider":
        handle = ui.slider("Layer").locator(".noUi-handle").first
        handle.focus()
        keys = ("ArrowLeft", "ArrowRight")
    else:
        ui.focus_explorer()
        keys = ("ArrowLeft", "ArrowRight") if how == "layer-keys" else ("ArrowDown", "ArrowUp")
    # sweep back and forth over three positions so every change is a real change of a cached view
    pattern = [keys[0], keys[0], keys[1], keys[1]]
    for i in range(n):
        if how == "layer-slider":
            handle.focus()
        lat.append(timed_press(page, pattern[i % 4]))
        if pause_ms:
            page.wait_for_timeout(pause_ms)
    return lat


CONTROLS = [("layer-slider", 0), ("layer-keys", 0), ("cut-keys", 0), ("layer-keys-paced", 500),
            ("cut-keys-paced", 500)]


def trace_changes(browser, page, path: Path) -> dict:
    """A Chromium trace of 8 layer changes by the arrow keys, summarised (trace_summary.py)."""
    from trace_summary import summarise

    browser.start_tracing(page=page, path=str(path), categories=[
        "devtools.timeline", "disabled-by-default-devtools.timeline", "blink.user_timing", "v8.execute", "toplevel",
        "blink", "cc", "disabled-by-default-devtools.timeline.frame", "loading"])
    try:
        for i, key in enumerate(["ArrowLeft", "ArrowLeft", "ArrowRight", "ArrowRight"] * 2):
            page.evaluate(f"() => document.addEventListener('keydown', () => performance.mark('inv-key-{i}'), "
                          "{capture: true, once: true})")
            timed_press(page, key)
            page.wait_for_timeout(300)
    finally:
        browser.stop_tracing()
    return summarise(str(path))


def run_model(browser, server, name: str, path: str, n: int, screenshot_dir: Path | None,
              trace: Path | None = None) -> dict:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
    page = ctx.new_page()
    res: dict = {"model": name}
    try:
        nb = NotebookPage(page, server, path)
        t0 = time.monotonic()
        nb.open()
        res["open_to_kernel_idle_s"] = time.monotonic() - t0
        nb.command("application:toggle-left-area")
        t1 = time.monotonic()
        nb.command("notebook:run-all-cells")
        ui = ExplorerUI(page)
        ui.wait_gallery(600_000)
        t2 = time.monotonic()
        res["run_all_to_gallery_s"] = t2 - t1
        res["open_to_first_gallery_s"] = t2 - t0
        page.locator(".inv-explorer .inv-dendro-box .js-plotly-plot .main-svg").first.wait_for(timeout=600_000)
        res["gallery_to_dendrogram_s"] = time.monotonic() - t2
        nb.wait_cells_done(600_000)
        res["cells"] = page.evaluate(CELL_TIMES)
        res["explorer_cell_s"] = next(c["s"] for c in res["cells"] if "inv.Explorer(" in c["source"])
        probe = json.loads(kernel(page, KERNEL_PROBE).strip().splitlines()[-1])
        res.update(probe)
        # warm up: every layer and the cut positions used below, so the changes are "once cached"
        ui.focus_explorer()
        layers = int(kernel(page, "print(len(explorer.layers))").strip())
        for key in ["ArrowLeft"] * (layers - 1) + ["ArrowRight"] * (layers - 1):
            timed_press(page, key)
        for key in ("ArrowDown", "ArrowDown", "ArrowUp", "ArrowUp"):
            timed_press(page, key)
        before = len(kernel_timings(page))
        for how, pause in CONTROLS:
            if pause:
                page.wait_for_timeout(pause)
            got = measure_changes(page, ui, n if not pause else max(n // 2, 12), how.removesuffix("-paced"), pause)
            lat = [x["total"] for x in got]
            bad = [x for x in lat if x < 0]
            if bad:
                raise RuntimeError(f"{len(bad)} of {len(lat)} {how} changes did not re-render the gallery within 60 s")
            arrived = [x["arrived"] for x in got if x["arrived"] >= 0]
            ks = kernel_timings(page)[before:]
            before += len(ks)
            res[how] = {"median_ms": statistics.median(lat), "p95_ms": pct(lat, 0.95), "n": len(lat), "all_ms": lat,
                        "kernel_median_ms": 1000 * statistics.median(ks) if ks else float("nan"),
                        "arrived_median_ms": statistics.median(arrived) if arrived else float("nan"),
                        "ratio_to_fwd_bwd": statistics.median(lat) / 1000 / probe["fwd_bwd_s"]}
        if trace is not None:
            ui.focus_explorer()
            res["trace"] = trace_changes(browser, page, trace)
        if screenshot_dir is not None:
            page.set_viewport_size({"width": 1400, "height": 2100})
            page.wait_for_timeout(500)
            loc = page.locator(".inv-explorer")
            loc.scroll_into_view_if_needed()
            loc.screenshot(path=str(screenshot_dir / f"explorer_{name}.png"))
    finally:
        try:  # free the kernel before the next model
            page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        except Exception:
            pass
        ctx.close()
    return res


def import_time() -> float:
    import subprocess

    code = ("import time; t=time.perf_counter(); import inv_widgets, inv_widgets.widgets, plotly.graph_objects as go; "
            "go.FigureWidget; print(time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def extract(ref: str, dest: Path) -> Path:
    """The repository's files at git revision ``ref`` in ``dest`` (``git archive``: the checkout is not touched)."""
    import subprocess

    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def main(argv=None):
    import signal

    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # stop the server (finally) when terminated
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=24, help="changes timed per control (>= 20)")
    ap.add_argument("--models", default="demo,vgg16")
    ap.add_argument("--baseline", default=None, help="git revision measured in the same run, alternating")
    ap.add_argument("--rounds", type=int, default=None, help="runs per model and code (default 1; 2 with --baseline)")
    ap.add_argument("--trace", type=Path, default=None, help="folder for Chromium traces of 8 layer changes")
    ap.add_argument("--screenshots", type=Path, default=None, help="save explorer_<model>.png there")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    rounds = args.rounds or (2 if args.baseline else 1)
    if args.trace:
        args.trace.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inv-bench-") as tmp:
        tmp = Path(tmp)
        codes = [("this tree", {})]
        if args.baseline:
            codes.append((f"baseline {args.baseline}", {"PYTHONPATH": str(extract(args.baseline, tmp / "baseline"))}))
        root = tmp / "root"
        servers.copy_notebooks(root, ["01_explore.ipynb"])
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in VGG_CELLS]
        nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
        nbformat.write(nb, root / "bench_vgg16.ipynb")
        running = {}
        results = []
        try:
            for i, (code, env) in enumerate(codes):
                running[code] = servers.start("lab", root, tmp / f"home{i}", env_extra={"INV_RANDOM_WEIGHTS": "1", **env})
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                try:
                    for name in args.models.split(","):
                        path = {"demo": "01_explore.ipynb", "vgg16": "bench_vgg16.ipynb"}[name]
                        for r in range(rounds):
                            for j, (code, _) in enumerate(codes if r % 2 == 0 else codes[::-1]):
                                trace = (args.trace / f"{name}-{'base' if code != 'this tree' else 'tree'}-{r}.json"
                                         if args.trace else None)
                                res = run_model(browser, running[code], name, path, args.changes, args.screenshots,
                                                trace)
                                res.update(code=code, round=r)
                                results.append(res)
                                report(res)
                        if args.baseline:
                            compare([x for x in results if x["model"] == name], codes[0][0], codes[1][0])
                finally:
                    browser.close()
        finally:
            for server in running.values():
                servers.stop(server)
    imp = import_time()
    print(f"\nimports (inv_widgets + widgets + plotly FigureWidget, fresh interpreter): {imp:.2f} s")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "import_s": imp}, indent=2))
    return results


def compare(results: list[dict], code: str, baseline: str) -> None:
    """Medians and p95 of every control for both codes (all their changes pooled), and their ratios."""
    print(f"\n== {results[0]['model']}: {code} against {baseline}, the same run, {len(results) // 2} runs each "
          "alternating ==")
    for how, _ in CONTROLS:
        got = {}
        for c in (code, baseline):
            lat = [x for r in results if r["code"] == c for x in r[how]["all_ms"]]
            got[c] = (statistics.median(lat), pct(lat, 0.95), len(lat))
        (m1, p1, n1), (m0, p0, n0) = got[code], got[baseline]
        print(f"{how:17s} median {m1:6.1f} ms vs {m0:6.1f} ms ({m1 / m0:.2f}x), p95 {p1:6.1f} vs {p0:6.1f} ms "
              f"({p1 / p0:.2f}x), n = {n1} / {n0}")


def report(r: dict) -> None:
    print(f"\n== {r['model']}, {r.get('code', 'this tree')} ==")
    print(f"open notebook -> first gallery: {r['open_to_first_gallery_s']:.2f} s "
          f"(page + kernel idle {r['open_to_kernel_idle_s']:.2f} s, run all -> gallery {r['run_all_to_gallery_s']:.2f} s)")
    print(f"the dendrogram (plotly.js) follows {r['gallery_to_dendrogram_s']:.2f} s after the gallery; "
          f"kernel RSS after all cells and the dendrogram: {r['kernel_rss_mib']:.0f} MiB")
    cells = ", ".join(f"{c['s']:.2f} s" for c in r["cells"])
    print(f"cells in the kernel: {cells}; the Explorer cell {r['explorer_cell_s']:.2f} s")
    print(f"one fresh explanation in the warm kernel: {r['explain_s']:.2f} s (model run {r['explain_model_s']:.2f} s); "
          f"model forward+backward (all parameter gradients) {1000 * r['fwd_bwd_s']:.0f} ms")
    print(f"Explorer cell + front end after the cell, minus one explanation: "
          f"{r['run_all_to_gallery_s'] - sum(c['s'] for c in r['cells'] if c['s'] != r['explorer_cell_s']) - r['explain_s']:.2f} s "
          "(target <= 2 s)")
    for how, _ in CONTROLS:
        m = r[how]
        print(f"{how:17s} keydown -> gallery re-rendered: median {m['median_ms']:6.1f} ms, p95 {m['p95_ms']:6.1f} ms "
              f"(n={m['n']}; kernel work {m['kernel_median_ms']:.1f} ms, answer in the page after "
              f"{m['arrived_median_ms']:.1f} ms; {m['ratio_to_fwd_bwd']:.2f} x fwd+bwd)")
    if "trace" in r:
        from trace_summary import report as trace_report

        print(trace_report(r["trace"]))


if __name__ == "__main__":
    main()
