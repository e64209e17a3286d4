"""The front-end files (widgets/static/*.js): one module of DOM helpers, one re-render rule, no HTML parsing of
text. The shared helpers run in Node when it is installed; the widgets themselves run in the browser tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from inv_widgets.widgets._common import STATIC, esm

VIEWS = ["explorer.js", "explorer_detail.js", "explorer_compare.js", "gallery.js", "game.js", "global_view.js"]
NODE = shutil.which("node") or "node"  # missing in CI: FileNotFoundError naming node
#: Without Node.js these checks are skipped on a person's machine (the browser tests run the same files) and fail in
#: CI, where `make test` installs it (Makefile: system-deps).
needs_node = pytest.mark.skipif(
    shutil.which("node") is None and not os.environ.get("CI"),
    reason="Node.js is not installed (the browser tests run these files)",
)


def test_dom_helpers_live_in_dom_js_only():
    helpers = re.findall(r"^function (\w+)\(", (STATIC / "dom.js").read_text(), re.M)
    assert {"el", "pct", "button", "watch", "tickets", "pngUrl", "decoded"} <= set(helpers)
    for name in VIEWS:
        js = (STATIC / name).read_text()
        redefined = [h for h in helpers if re.search(rf"^\s*(function {h}\(|const {h} = )", js, re.M)]
        assert not redefined, f"{name} defines its own {redefined}: use static/dom.js"
        assert "createObjectURL" not in js, f"{name}: use pngUrl() from dom.js"


def test_every_view_follows_the_one_re_render_rule():
    """Views subscribe to trait changes through watch() only (dom.js), never with their own model.on."""
    for name in VIEWS:
        js = (STATIC / name).read_text()
        assert "watch(model," in js, f"{name} does not draw through watch()"
        assert "model.on(" not in js and "model.off(" not in js, f"{name} subscribes to traits by itself"
        assert "queueMicrotask" not in js, f"{name} schedules its own redraws"


def test_no_text_is_parsed_as_html():
    for path in STATIC.glob("*.js"):
        js = path.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in js, f"{path.name} uses {sink}"


@needs_node
@pytest.mark.parametrize("name", VIEWS)
def test_each_widget_module_parses(tmp_path, name):
    f = tmp_path / (name.replace(".js", ".mjs"))
    f.write_text(esm(name))
    r = subprocess.run([NODE, "--check", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


HARNESS = r"""
const events = {};
const values = {a: 1, b: 2, c: 3};
const model = {
  get: (k) => values[k],
  on: (e, f) => { (events[e] = events[e] || []).push(f); },
  off: (e, f) => { events[e] = (events[e] || []).filter((g) => g !== f); },
};
const change = (k, v) => { values[k] = v; (events["change:" + k] || []).forEach((f) => f()); };
const log = [];
const stop = watch(model, ["a", "b", "c"], (changed) => log.push([...changed].sort()));
const out = {};
out.first = log.slice();                        // drawn at once, with every trait
change("a", 10); change("b", 20); change("a", 11); // one message, three changes
out.sync = log.length;                          // nothing drawn yet: coalesced
(async () => {
  await Promise.resolve();
  out.batched = log.slice(1);
  change("c", 30);
  await Promise.resolve();
  out.second = log.slice(2);
  stop();
  change("a", 12);
  await Promise.resolve();
  out.afterStop = log.length;
  out.listeners = (events["change:a"] || []).length;
  const take = tickets();
  const first = take();
  const second = take();
  out.tickets = [first(), second()];             // only the latest ticket is fresh
  let landed = [];
  const slow = async (tag, ms) => { const fresh = take(); await new Promise((r) => setTimeout(r, ms)); if (fresh()) landed.push(tag); };
  await Promise.all([slow("old", 30), slow("new", 1)]);
  out.landed = landed;                           // the older draw, decoded last, does not land
  out.pct = [pct(12.345), pct(0.5), pct(NaN)];
  console.log(JSON.stringify(out));
})();
"""


@needs_node
def test_watch_coalesces_changes_and_tickets_drop_stale_work(tmp_path):
    f = tmp_path / "harness.mjs"
    f.write_text((STATIC / "dom.js").read_text() + HARNESS)
    r = subprocess.run([NODE, str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["first"] == [["a", "b", "c"]]
    assert out["sync"] == 1 and out["batched"] == [["a", "b"]]
    assert out["second"] == [["c"]]
    assert out["afterStop"] == 3 and out["listeners"] == 0
    assert out["tickets"] == [False, True]
    assert out["landed"] == ["new"]
    assert out["pct"] == ["12.3%", "0.50%", "–"]
