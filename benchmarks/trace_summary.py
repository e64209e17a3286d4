"""Where the browser's time goes: a Chromium trace (Playwright's ``browser.start_tracing``) cut into windows
from a key press to the gallery re-rendered, the renderer's main thread broken down by kind of work.

    python benchmarks/trace_summary.py trace.json         # the windows marked inv-key-N .. inv-gallery-rendered-*

The page marks each key press (``performance.mark("inv-key-N")``, bench_widget.py) and the gallery marks its
kernel answer and its render (``inv-gallery-arrived-REV``, ``inv-gallery-rendered-REV``, static/gallery.js).
Self time of the main thread's trace events (an event's duration minus its children's) is summed per kind:
script (JavaScript, split by the script it runs in: the gallery, plotly.js, JupyterLab and the widget manager),
style and layout, paint and compositing, garbage collection, image decoding, and the rest; the time the main
thread is idle in a window is what it waits for (the kernel, the network, the next frame).
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict

KINDS = [
    ("gc", re.compile(r"GC|Sweep|Mark|Scavenge|BlinkGC", re.I)),
    ("image decode", re.compile(r"Decode|ImageDecod|BitmapImage|ImageResource|ImageFrame|PNG|Image::", re.I)),
    ("style + layout", re.compile(r"Layout|Style|RecalcStyle|UpdateLayoutTree|Shape|InvalidateLayout|"
                                  r"ParseAuthorStyleSheet|ScheduleStyleRecalculation", re.I)),
    ("paint + composite", re.compile(r"Paint|Layeriz|Composit|Commit|Raster|UpdateLayer|LayerTree|"
                                     r"PrePaint|HitTest|IntersectionObserver|Animation", re.I)),
    ("script", re.compile(r"FunctionCall|EvaluateScript|v8\.|V8\.|RunMicrotasks|TimerFire|EventDispatch|"
                          r"FireAnimationFrame|MicrotaskCheckpoint|AsyncTask|ParseHTML|v8\.run|"
                          r"XHR|WebSocket|CallbackFunction|RunTask", re.I)),
]


def kind_of(name: str) -> str:
    for kind, pat in KINDS:
        if pat.search(name):
            return kind
    return "other"


def script_of(url: str) -> str:
    u = url or ""
    if "plotly" in u:
        return "plotly.js"
    if u.startswith("blob:") or "anywidget" in u or "inv" in u:
        return "widgets (anywidget modules)"
    if "lab/extensions" in u or "static/lab" in u or "static/notebook" in u or "jupyter" in u:
        return "JupyterLab + widget manager"
    return "other script"


def load(path: str) -> list[dict]:
    with open(path) as f:
        d = json.load(f)
    return d["traceEvents"] if isinstance(d, dict) else d


def main_thread(events: list[dict]) -> tuple[int, int]:
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "thread_name" and e["args"].get("name") == "CrRendererMain":
            return e["pid"], e["tid"]
    raise ValueError("no CrRendererMain thread in the trace")


def intervals(events: list[dict], pid: int, tid: int) -> list[tuple[float, float, str, str]]:
    """(start, end, name, url of the script it runs) of the main thread's complete events, in microseconds."""
    out, open_ = [], defaultdict(list)
    for e in events:
        if e.get("pid") != pid or e.get("tid") != tid:
            continue
        ph = e.get("ph")
        data = (e.get("args") or {}).get("data") or {}
        url = data.get("url") or data.get("scriptName") or ""
        if ph == "X" and "dur" in e:
            out.append((float(e["ts"]), float(e["ts"]) + float(e["dur"]), e["name"], url))
        elif ph == "B":
            open_[e["name"]].append((float(e["ts"]), url))
        elif ph == "E" and open_[e["name"]]:
            ts, url0 = open_[e["name"]].pop()
            out.append((ts, float(e["ts"]), e["name"], url0))
    out.sort(key=lambda x: (x[0], -(x[1] - x[0])))
    return out


def self_times(iv, lo: float, hi: float) -> dict[str, float]:
    """Milliseconds of main-thread self time per kind (script split by script) inside [lo, hi], and idle."""
    got: dict[str, float] = defaultdict(float)
    stack: list[list] = []  # [end, name, url, child_time_clipped]

    def close(item):
        end, name, url, start, children = item
        own = max(0.0, min(end, hi) - max(start, lo)) - children
        if own <= 0:
            return
        kind = kind_of(name)
        if kind == "script":
            url = url or next((s[2] for s in reversed(stack) if s[2]), "")
            kind = "script: " + script_of(url)
        got[kind] += own / 1000

    busy = 0.0
    for start, end, name, url in iv:
        if end < lo or start > hi:
            if start > hi:
                break
            continue
        while stack and stack[-1][0] <= start:
            close(stack.pop())
        clipped = max(0.0, min(end, hi) - max(start, lo))
        if stack:
            stack[-1][4] += clipped
            url = url or stack[-1][2]
        else:
            busy += clipped
        stack.append([end, name, url, start, 0.0])
    while stack:
        close(stack.pop())
    got["idle (waiting: kernel, network, next frame)"] = max(0.0, (hi - lo) - busy) / 1000
    return dict(got)


def windows(events: list[dict]) -> list[tuple[float, float, float]]:
    """(key press, gallery's answer arrived, gallery rendered) in microseconds, one per marked key press."""
    marks = sorted((float(e["ts"]), e["name"]) for e in events
                   if str(e.get("name", "")).startswith("inv-") and e.get("cat", "").startswith("blink.user_timing"))
    out = []
    for i, (ts, name) in enumerate(marks):
        if not name.startswith("inv-key-"):
            continue
        arrived = rendered = None
        for ts2, name2 in marks[i + 1:]:
            if name2.startswith("inv-key-"):
                break
            if name2.startswith("inv-gallery-arrived-") and arrived is None:
                arrived = ts2
            if name2.startswith("inv-gallery-rendered-"):
                rendered = ts2
        if rendered is not None:
            out.append((ts, arrived if arrived is not None else ts, rendered))
    return out


def summarise(path: str) -> dict:
    """Median milliseconds per kind of work over the windows: key -> answer arrived, answer -> rendered."""
    events = load(path)
    pid, tid = main_thread(events)
    iv = intervals(events, pid, tid)
    per = {"key -> answer in the page": defaultdict(list), "answer -> gallery rendered": defaultdict(list)}
    spans = {"key -> answer in the page": [], "answer -> gallery rendered": []}
    ws = windows(events)
    for key, arrived, rendered in ws:
        for part, (lo, hi) in (("key -> answer in the page", (key, arrived)),
                               ("answer -> gallery rendered", (arrived, rendered))):
            spans[part].append((hi - lo) / 1000)
            st = self_times(iv, lo, hi)
            for k in set(st) | set(per[part]):
                per[part][k].append(st.get(k, 0.0))
    return {"n": len(ws), "spans": {p: statistics.median(v) for p, v in spans.items() if v},
            "parts": {p: {k: statistics.median(v) for k, v in sorted(d.items(), key=lambda kv: -statistics.median(kv[1]))}
                      for p, d in per.items()}}


def report(s: dict) -> str:
    lines = [f"{s['n']} key presses; medians per window (ms), main thread self time by kind of work:"]
    for part, total in s["spans"].items():
        lines.append(f"  {part}: {total:.1f} ms")
        for k, v in s["parts"][part].items():
            if v >= 0.05:
                lines.append(f"      {k:48s} {v:6.1f}")
    return "\n".join(lines)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(p)
        print(report(summarise(p)))
