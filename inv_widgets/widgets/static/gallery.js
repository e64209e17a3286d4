// Gallery of INV cluster maps (anywidget front end).
// Images arrive as PNG bytes in binary buffers (DataView); each card stacks the coloured map over the
// image with CSS opacity `alpha`, so the overlay is (1 - alpha) * image + alpha * heat.



function labelBars(labels) {
  const box = el("div", "inv-labels");
  if (!labels || !labels.length) return box;
  const top = Math.max(...labels.map((l) => Number(l[1]) || 0), 1e-9);
  for (const [text, score] of labels.slice(0, 3)) {
    const row = el("div", "inv-label");
    const bar = el("div", "inv-label-bar");
    bar.style.width = Math.max(4, (100 * (Number(score) || 0)) / top) + "%";
    row.appendChild(bar);
    const t = el("span", "inv-label-text", String(text));
    t.title = `${text} (score ${Number(score).toFixed(2)})`;
    row.appendChild(t);
    box.appendChild(row);
  }
  return box;
}

function render({ model, el: root }) {
  root.classList.add("inv-gallery");
  const head = el("div", "inv-gallery-head");
  const title = el("span", "inv-gallery-title");
  const subtitle = el("span", "inv-gallery-subtitle");
  head.append(title, subtitle);
  const grid = el("div", "inv-gallery-grid");
  grid.setAttribute("role", "listbox");
  const message = el("div", "inv-gallery-message");
  root.append(head, message, grid);

  let urls = [];
  let seq = 0;

  const toUrl = (dv, bag) => {
    if (!dv || !dv.byteLength) return null;
    const u = URL.createObjectURL(new Blob([dv], { type: "image/png" }));
    bag.push(u);
    return u;
  };

  const applyAlpha = () => {
    root.style.setProperty("--inv-alpha", String(model.get("alpha")));
  };

  const applySelected = () => {
    const sel = model.get("selected");
    for (const card of grid.querySelectorAll(".inv-card[data-index]")) {
      const on = Number(card.dataset.index) === sel;
      card.classList.toggle("inv-selected", on);
      card.setAttribute("aria-selected", on ? "true" : "false");
    }
  };

  const select = (j) => {
    model.set("selected", j);
    model.save_changes();
    applySelected();
  };

  function stack(baseUrl, heatUrl, alt) {
    const s = el("div", "inv-stack");
    const imgs = [];
    if (baseUrl) {
      const b = el("img", "inv-base");
      b.src = baseUrl;
      b.alt = "";
      b.draggable = false;
      s.appendChild(b);
      imgs.push(b);
    }
    if (heatUrl) {
      const h = el("img", "inv-heat");
      h.src = heatUrl;
      h.alt = alt;
      h.draggable = false;
      s.appendChild(h);
      imgs.push(h);
    }
    return [s, imgs];
  }

  async function full() {
    const my = ++seq;
    const rev = model.get("revision");
    performance.mark(`inv-gallery-arrived-${rev}`); // for benchmarks: kernel answer -> rendered
    const bag = [];
    const imgs = [];
    const frag = document.createDocumentFragment();
    const baseUrl = toUrl(model.get("base"), bag);
    const heats = model.get("heats") || [];
    const weights = model.get("weights") || [];
    const counts = model.get("counts") || [];
    const colors = model.get("colors") || [];
    const labels = model.get("labels") || [];

    const gc = model.get("gradcam");
    if (gc && gc.byteLength) {
      const card = el("div", "inv-card inv-gradcam");
      const [s, ii] = stack(baseUrl, toUrl(gc, bag), "Grad-CAM of the layer");
      imgs.push(...ii);
      card.appendChild(s);
      const cap = el("div", "inv-cap");
      cap.append(el("span", "inv-w", model.get("gradcam_caption") || "Grad-CAM"), el("span", "inv-n", "whole layer"));
      card.appendChild(cap);
      card.title = "Plain Grad-CAM of this layer, for comparison";
      frag.appendChild(card);
      frag.appendChild(el("div", "inv-divider"));
    }

    heats.forEach((dv, j) => {
      const card = el("div", "inv-card");
      card.dataset.index = String(j);
      card.setAttribute("role", "option");
      card.tabIndex = -1;
      card.style.setProperty("--inv-color", colors[j] || "#888");
      const w = Number(weights[j]);
      const n = Number(counts[j]);
      const [s, ii] = stack(baseUrl, toUrl(dv, bag), `cluster map ${j + 1}, w = ${pct(w)}`);
      imgs.push(...ii);
      const rank = el("span", "inv-rank", String(j + 1));
      s.appendChild(rank);
      card.appendChild(s);
      const cap = el("div", "inv-cap");
      cap.append(el("span", "inv-w", "w = " + pct(w)), el("span", "inv-n", `${n} map${n === 1 ? "" : "s"}`));
      card.appendChild(cap);
      card.appendChild(labelBars(labels[j]));
      card.title = `Cluster map ${j + 1}: weight ${pct(w)} of the layer, ${n} feature map${n === 1 ? "" : "s"}. Click for details.`;
      card.addEventListener("click", () => select(j));
      card.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          select(j);
        }
      });
      frag.appendChild(card);
    });

    // Decode before swapping, so the gallery never flashes half-loaded images.
    await Promise.all(imgs.map((im) => (im.decode ? im.decode().catch(() => {}) : Promise.resolve())));
    if (my !== seq) {
      bag.forEach((u) => URL.revokeObjectURL(u));
      return;
    }
    title.textContent = model.get("title") || "";
    subtitle.textContent = model.get("subtitle") || "";
    message.textContent = model.get("message") || "";
    message.style.display = model.get("message") ? "" : "none";
    grid.replaceChildren(frag);
    urls.forEach((u) => URL.revokeObjectURL(u));
    urls = bag;
    applySelected();
    root.dataset.count = String(heats.length);
    root.dataset.revision = String(model.get("revision"));
    performance.mark(`inv-gallery-rendered-${rev}`);
    root.dispatchEvent(new CustomEvent("inv-gallery-rendered", { bubbles: true, detail: { revision: model.get("revision") } }));
  }

  applyAlpha();
  model.on("change:revision", full);
  model.on("change:selected", applySelected);
  model.on("change:alpha", applyAlpha);
  full();
  return () => {
    seq++;
    model.off("change:revision", full);
    model.off("change:selected", applySelected);
    model.off("change:alpha", applyAlpha);
    urls.forEach((u) => URL.revokeObjectURL(u));
    urls = [];
  };
}

export default { render };
