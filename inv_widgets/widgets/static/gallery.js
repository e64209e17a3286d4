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

  let urls = []; // object URLs of the images shown now
  const take = tickets();

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

  // "drop x %" under "w = x %": a caption line of its own, changed in place (the images stay).
  const applyDrops = () => {
    const drops = model.get("drops") || [];
    const tips = model.get("drop_tips") || [];
    for (const card of grid.querySelectorAll(".inv-card[data-index]")) {
      const j = Number(card.dataset.index);
      let line = card.querySelector(".inv-drop");
      if (j >= drops.length) {
        if (line) line.remove();
        continue;
      }
      if (!line) {
        line = el("div", "inv-drop");
        card.querySelector(".inv-cap").after(line);
      }
      const d = drops[j];
      line.textContent = d === null || d === undefined ? "drop –" : "drop " + pct(Number(d));
      line.classList.toggle("inv-drop-negative", d !== null && d !== undefined && Number(d) < 0);
      line.title = tips[j] || "";
    }
    root.dataset.drops = String(drops.length);
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

  // The cards: rebuilt from the traits, swapped in once their images are decoded.
  async function cards() {
    const fresh = take();
    const rev = model.get("revision");
    performance.mark(`inv-gallery-arrived-${rev}`); // for benchmarks: kernel answer -> rendered
    const bag = [];
    const imgs = [];
    const frag = document.createDocumentFragment();
    const baseUrl = pngUrl(model.get("base"), bag);
    const heats = model.get("heats") || [];
    const weights = model.get("weights") || [];
    const counts = model.get("counts") || [];
    const colors = model.get("colors") || [];
    const labels = model.get("labels") || [];

    const gc = model.get("gradcam");
    if (gc && gc.byteLength) {
      const card = el("div", "inv-card inv-gradcam");
      const [s, ii] = stack(baseUrl, pngUrl(gc, bag), "Grad-CAM of the layer");
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
      const [s, ii] = stack(baseUrl, pngUrl(dv, bag), `cluster map ${j + 1}, w = ${pct(w)}`);
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
    await decoded(imgs);
    if (!fresh()) {
      revokeAll(bag);
      return;
    }
    title.textContent = model.get("title") || "";
    subtitle.textContent = model.get("subtitle") || "";
    message.textContent = model.get("message") || "";
    message.style.display = model.get("message") ? "" : "none";
    grid.replaceChildren(frag);
    revokeAll(urls);
    urls = bag;
    applySelected();
    applyDrops();
    root.dataset.count = String(heats.length);
    root.dataset.revision = String(model.get("revision"));
    performance.mark(`inv-gallery-rendered-${rev}`);
    root.dispatchEvent(new CustomEvent("inv-gallery-rendered", { bubbles: true, detail: { revision: model.get("revision") } }));
  }

  const CONTENT = ["title", "subtitle", "base", "heats", "weights", "counts", "colors", "labels", "gradcam",
    "gradcam_caption", "message", "revision"];
  const stop = watch(model, [...CONTENT, "selected", "alpha", "drops", "drop_tips"], (changed) => {
    if (changed.has("alpha")) applyAlpha();
    if (anyOf(changed, CONTENT)) cards(); // selects the card and shows the drops too once it lands
    else {
      if (changed.has("selected")) applySelected();
      if (anyOf(changed, ["drops", "drop_tips"])) applyDrops();
    }
  });
  return () => {
    stop();
    take(); // a draw still decoding gives up
    revokeAll(urls);
  };
}

export default { render };
