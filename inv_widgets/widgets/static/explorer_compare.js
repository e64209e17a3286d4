// INV Explorer compare view (anywidget front end): LIME, KernelSHAP and Grad-CAM of the image and class the
// Explorer shows, computed on demand by the kernel in a worker thread. The kernel owns the state; the
// browser sends the intents "compute" and "cancel" and sets only the opacity.

function render({ model, el: root }) {
  root.classList.add("inv-compare");
  let urls = [];
  const take = tickets();

  const head = el("div", "inv-compare-head");
  const title = el("div", "inv-compare-title");
  const go = button("inv-compare-go", "Compute", "Compute LIME, KernelSHAP and Grad-CAM for this image and class");
  const stop = button("inv-compare-stop", "Stop", "Stop the computation");
  head.append(title, go, stop);
  const bar = el("div", "inv-compare-bar");
  const fill = el("div", "inv-compare-fill");
  bar.appendChild(fill);
  const status = el("div", "inv-compare-status");
  const panels = el("div", "inv-compare-panels");
  const scale = colorbar();
  const settings = el("div", "inv-compare-settings");
  root.append(head, bar, status, panels, settings);

  go.addEventListener("click", () => model.send({ type: "compute" }));
  stop.addEventListener("click", () => model.send({ type: "cancel" }));

  const applyAlpha = () => {
    const a = String(Number(model.get("alpha")));
    panels.querySelectorAll("img.inv-heat").forEach((im) => { im.style.opacity = a; });
  };

  const drawState = () => {
    const state = model.get("state") || "idle";
    root.dataset.state = state;
    go.style.display = state === "running" || state === "done" ? "none" : "";
    go.textContent = state === "stopped" || state === "error" ? "Compute again" : "Compute";
    stop.style.display = state === "running" ? "" : "none";
    bar.style.display = state === "running" ? "" : "none";
    const total = Number(model.get("total")) || 0;
    const done = Number(model.get("done")) || 0;
    fill.style.width = (total > 0 ? Math.min(100, (100 * done) / total) : 0) + "%";
    status.textContent = model.get("message") || "";
    status.classList.toggle("inv-error", state === "error");
    title.textContent = model.get("title") || "";
    settings.textContent = model.get("settings") || "";
  };

  async function drawPanels() {
    const fresh = take();
    const bag = [];
    const base = pngUrl(model.get("base"), bag);
    const caps = model.get("captions") || [];
    const pending = [];
    const frag = document.createDocumentFragment();
    (model.get("heats") || []).forEach((dv, i) => {
      const fig = el("figure", "inv-compare-panel");
      const stack = el("div", "inv-compare-stack");
      const b = el("img", "inv-base");
      const h = el("img", "inv-heat");
      b.draggable = h.draggable = false;
      if (base) { b.src = base; pending.push(b); }
      h.src = pngUrl(dv, bag);
      h.alt = caps[i] || "";
      pending.push(h);
      stack.append(b, h);
      fig.append(stack, el("figcaption", "", caps[i] || ""));
      frag.appendChild(fig);
    });
    await decoded(pending);
    if (!fresh()) {
      revokeAll(bag);
      return;
    }
    scale.set(frag.childNodes.length ? model.get("colorbar") : "");
    if (frag.childNodes.length) frag.appendChild(scale.el);
    panels.replaceChildren(frag);
    applyAlpha();
    revokeAll(urls);
    urls = bag;
    root.dataset.revision = String(model.get("revision"));
  }

  const STATE = ["state", "done", "total", "message", "title", "settings"];
  const PANELS = ["heats", "captions", "base", "revision"];
  const unwatch = watch(model, [...STATE, ...PANELS, "alpha"], (changed) => {
    if (anyOf(changed, STATE)) drawState();
    if (anyOf(changed, PANELS)) drawPanels();
    else if (changed.has("alpha")) applyAlpha();
  });
  return () => {
    unwatch();
    take();
    revokeAll(urls);
  };
}

export default { render };
