// Gallery of INV cluster maps (anywidget front end).
// The image arrives once as PNG bytes; the maps arrive as raw float32 numbers at feature resolution (one
// binary buffer, K x h x w) and are coloured here: upsampled bilinearly to the image's size and min-max scaled
// as the engine does (engine/maps.py upsample_minmax: PyTorch's bilinear, align_corners=False), then looked up
// in the colour map's 256-entry table as render.apply_cmap does, into a canvas. Each card stacks its canvas
// over the image with CSS opacity `alpha`, so the overlay is (1 - alpha) * image + alpha * heat. Cards are
// updated in place: a layer or cut change rewrites pixels and captions, it does not rebuild the grid.

const FLAT_RTOL = 1e-5; // engine/maps.py FLAT_RTOL: a map flat to rounding is shown as zeros
const f32 = Math.fround;

// Float32Array over a DataView's bytes (copied when the view is not 4-byte aligned).
function floats(dv, count) {
  if (!dv || !dv.byteLength || count <= 0) return new Float32Array(0);
  if (dv.byteOffset % 4 === 0) return new Float32Array(dv.buffer, dv.byteOffset, count);
  return new Float32Array(dv.buffer.slice(dv.byteOffset, dv.byteOffset + 4 * count));
}

// The 256 colours of a LUT (768 bytes, RGB) as packed RGBA words for a Uint32Array view of ImageData.
function packedLut(dv) {
  const out = new Uint32Array(256);
  const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
  for (let i = 0; i < 256; i++) {
    const r = dv && dv.byteLength >= 768 ? dv.getUint8(3 * i) : i;
    const g = dv && dv.byteLength >= 768 ? dv.getUint8(3 * i + 1) : i;
    const b = dv && dv.byteLength >= 768 ? dv.getUint8(3 * i + 2) : i;
    out[i] = little ? ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0 : ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
  }
  return out;
}

// Source index pairs and weights of PyTorch's bilinear upsampling (align_corners=False) along one axis.
function axis(n, N) {
  const i0 = new Int32Array(N), i1 = new Int32Array(N), w0 = new Float32Array(N), w1 = new Float32Array(N);
  const scale = f32(n / N);
  for (let d = 0; d < N; d++) {
    let src = f32(f32(scale * f32(d + 0.5)) - 0.5);
    if (src < 0) src = 0;
    const a = Math.floor(src);
    const l1 = Math.min(Math.max(f32(src - a), 0), 1);
    i0[d] = a;
    i1[d] = a + (a < n - 1 ? 1 : 0);
    w1[d] = l1;
    w0[d] = f32(1 - l1);
  }
  return { i0, i1, w0, w1 };
}

// Paint map `m` (h x w floats at `off` in `src`) into `pixels` (Uint32Array of H x W), coloured with `lut`;
// `buf` is a Float32Array(H * W) of scratch space, `ax` the two axes' tables ({x, y}) for these sizes.
function paintMap(src, off, h, w, H, W, ax, lut, buf, pixels) {
  let lo = Infinity, hi = -Infinity;
  if (h === H && w === W) {
    for (let p = 0; p < H * W; p++) {
      const v = src[off + p];
      buf[p] = v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  } else {
    const { x, y } = ax;
    for (let r = 0; r < H; r++) {
      const r0 = off + y.i0[r] * w, r1 = off + y.i1[r] * w, a0 = y.w0[r], a1 = y.w1[r];
      const o = r * W;
      for (let c = 0; c < W; c++) {
        const c0 = x.i0[c], c1 = x.i1[c], b0 = x.w0[c], b1 = x.w1[c];
        const v = f32(f32(a0 * f32(f32(b0 * src[r0 + c0]) + f32(b1 * src[r0 + c1]))) +
                      f32(a1 * f32(f32(b0 * src[r1 + c0]) + f32(b1 * src[r1 + c1]))));
        buf[o + c] = v;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
  }
  const span = f32(hi - lo);
  if (!(span > FLAT_RTOL * Math.max(Math.abs(lo), Math.abs(hi)))) {
    pixels.fill(lut[0]);
    return;
  }
  for (let p = 0; p < H * W; p++) {
    const t = f32(f32(f32(f32(buf[p] - lo) / span) * 255) + 0.5);
    pixels[p] = lut[t <= 0 ? 0 : t >= 255 ? 255 : Math.floor(t)];
  }
}

function labelBars(box, labels) {
  box.replaceChildren();
  if (!labels || !labels.length) return;
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
}

function render({ model, el: root }) {
  root.classList.add("inv-gallery");
  const head = el("div", "inv-gallery-head");
  const title = el("span", "inv-gallery-title");
  const subtitle = el("span", "inv-gallery-subtitle");
  // the colour scale of the maps: each map is min-max scaled, so its lowest value is 0 and its highest 1
  const scale = el("span", "inv-colorbar");
  scale.title = "Colour scale of the maps: each map is scaled to 0 (its lowest value) .. 1 (its highest)";
  const bar = el("canvas", "inv-colorbar-bar");
  bar.width = 256;
  bar.height = 1;
  scale.append(el("span", "inv-colorbar-tick", "0 low"), bar, el("span", "inv-colorbar-tick", "high 1"));
  head.append(title, subtitle, scale);
  const grid = el("div", "inv-gallery-grid");
  grid.setAttribute("role", "listbox");
  const message = el("div", "inv-gallery-message");
  const note = el("div", "inv-gallery-note"); // what a map shows, under the maps
  root.append(head, message, grid, note);

  let baseUrl = ""; // one object URL for the image, shared by every card
  let baseBytes = null;
  let heatUrls = []; // object URLs of PNG heats (heats= instead of maps=)
  let lutBytes = null;
  let lut = packedLut(null);
  const take = tickets();
  const cards = []; // the map cards, reused: cards[j] shows map j
  let scratch = new Float32Array(0);

  const applyAlpha = () => {
    root.style.setProperty("--inv-alpha", String(model.get("alpha")));
  };

  const applySelected = () => {
    const sel = model.get("selected");
    cards.forEach((c, j) => {
      const on = j === sel;
      c.card.classList.toggle("inv-selected", on);
      c.card.setAttribute("aria-selected", on ? "true" : "false");
    });
  };

  // "drop x %" under "w = x %": a caption line of its own, changed in place (the images stay).
  const applyDrops = () => {
    const drops = model.get("drops") || [];
    const tips = model.get("drop_tips") || [];
    cards.forEach((c, j) => {
      if (j >= drops.length) {
        if (c.drop) c.drop.remove();
        c.drop = null;
        return;
      }
      if (!c.drop) {
        c.drop = el("div", "inv-drop");
        c.cap.after(c.drop);
      }
      const d = drops[j];
      c.drop.textContent = d === null || d === undefined ? "drop –" : "drop " + pct(Number(d));
      c.drop.classList.toggle("inv-drop-negative", d !== null && d !== undefined && Number(d) < 0);
      c.drop.title = tips[j] || "";
    });
    root.dataset.drops = String(drops.length);
  };

  const select = (j) => {
    model.set("selected", j);
    model.save_changes();
    applySelected();
  };

  // One card: the image, a canvas (or PNG) over it, the rank, the caption, the labels, the drop line.
  function makeCard(gradcam) {
    const card = el("div", gradcam ? "inv-card inv-gradcam" : "inv-card");
    const stack = el("div", "inv-stack");
    const base = el("img", "inv-base");
    base.alt = "";
    base.draggable = false;
    const canvas = el("canvas", "inv-heat");
    stack.append(base, canvas);
    card.appendChild(stack);
    const cap = el("div", "inv-cap");
    const w = el("span", "inv-w");
    const n = el("span", "inv-n");
    cap.append(w, n);
    card.appendChild(cap);
    const c = { card, stack, base, canvas, png: null, w, n, cap };
    if (gradcam) {
      n.textContent = "whole layer";
      card.title = "Plain Grad-CAM of this layer, for comparison";
      return c;
    }
    c.rank = el("span", "inv-rank");
    stack.appendChild(c.rank);
    c.drop = null; // "drop x %", made when the drops are shown
    c.labels = el("div", "inv-labels");
    card.append(c.labels);
    card.setAttribute("role", "option");
    card.tabIndex = -1;
    card.addEventListener("click", () => select(Number(card.dataset.index)));
    card.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        select(Number(card.dataset.index));
      }
    });
    return c;
  }
  const cam = makeCard(true);
  const divider = el("div", "inv-divider");
  grid.append(cam.card, divider);

  // The picture of a card: map j of `src` painted into its canvas, or a PNG.
  function paint(c, src, off, h, w, H, W, ax) {
    if (c.png) {
      c.png.remove();
      c.png = null;
    }
    c.canvas.style.display = "";
    if (c.canvas.width !== W || c.canvas.height !== H) {
      c.canvas.width = W;
      c.canvas.height = H;
    }
    const ctx = c.canvas.getContext("2d");
    const img = ctx.createImageData(W, H);
    if (scratch.length < H * W) scratch = new Float32Array(H * W);
    paintMap(src, off, h, w, H, W, ax, lut, scratch, new Uint32Array(img.data.buffer));
    ctx.putImageData(img, 0, 0);
  }

  function showPng(c, url, alt) {
    c.canvas.style.display = "none";
    if (!c.png) {
      c.png = el("img", "inv-heat");
      c.png.draggable = false;
      c.canvas.after(c.png);
    }
    c.png.alt = alt;
    c.png.src = url;
  }

  // the image under a card (set only when it changed: setting the same src would load it again)
  function showBase(c) {
    if (c.base.getAttribute("src") !== baseUrl) {
      if (baseUrl) c.base.src = baseUrl;
      else c.base.removeAttribute("src");
    }
    c.base.style.display = baseUrl ? "" : "none";
  }

  const axes = new Map(); // "h,w,H,W" -> bilinear tables
  function axesFor(h, w, H, W) {
    const key = `${h},${w},${H},${W}`;
    let got = axes.get(key);
    if (!got) {
      got = { x: axis(w, W), y: axis(h, H) };
      if (axes.size > 32) axes.clear();
      axes.set(key, got);
    }
    return got;
  }

  function drawColorbar() {
    const ctx = bar.getContext("2d");
    const img = ctx.createImageData(256, 1);
    new Uint32Array(img.data.buffer).set(lut);
    ctx.putImageData(img, 0, 0);
    scale.dataset.cmap = model.get("cmap") || "";
  }

  // The content: the cards updated in place from the traits (after the image is decoded when it changed).
  async function draw() {
    const fresh = take();
    const rev = model.get("revision");
    performance.mark(`inv-gallery-arrived-${rev}`); // for benchmarks: kernel answer -> rendered
    const bytes = model.get("base");
    if (bytes !== baseBytes) {
      // a new image: decode it once before it replaces the old one, so no card flashes half-loaded
      const old = baseUrl;
      const bag = [];
      const url = pngUrl(bytes, bag);
      if (url) {
        const probe = new Image();
        probe.src = url;
        await decoded([probe]);
      }
      if (!fresh()) {
        revokeAll(bag);
        return;
      }
      baseUrl = url;
      baseBytes = bytes;
      if (old) URL.revokeObjectURL(old);
    }
    const dvLut = model.get("lut");
    if (dvLut !== lutBytes) {
      lutBytes = dvLut;
      lut = packedLut(dvLut);
      drawColorbar();
    }
    const heats = model.get("heats") || [];
    const weights = model.get("weights") || [];
    const counts = model.get("counts") || [];
    const colors = model.get("colors") || [];
    const labels = model.get("labels") || [];
    const k = weights.length;
    const [h, w] = model.get("map_shape") || [0, 0];
    const [H, W] = model.get("size") || [0, 0];
    const usesMaps = !heats.length && k > 0 && h > 0 && w > 0;
    const src = usesMaps ? floats(model.get("maps"), k * h * w) : null;
    revokeAll(heatUrls);

    // Grad-CAM first
    const camMap = model.get("gradcam_map");
    const camPng = model.get("gradcam");
    const [ch, cw] = model.get("gradcam_shape") || [0, 0];
    const hasCam = (camMap && camMap.byteLength && ch > 0) || (camPng && camPng.byteLength);
    cam.card.style.display = hasCam ? "" : "none";
    divider.style.display = hasCam ? "" : "none";
    if (hasCam) {
      showBase(cam);
      if (camMap && camMap.byteLength && ch > 0) {
        const CH = H > 0 ? H : ch, CW = W > 0 ? W : cw;
        paint(cam, floats(camMap, ch * cw), 0, ch, cw, CH, CW, axesFor(ch, cw, CH, CW));
        cam.canvas.setAttribute("aria-label", "Grad-CAM of the layer");
      } else {
        showPng(cam, pngUrl(camPng, heatUrls), "Grad-CAM of the layer");
      }
      cam.w.textContent = model.get("gradcam_caption") || "Grad-CAM";
    }

    // as many cards as maps: reuse, add at the end, remove from the end
    while (cards.length < k) {
      const c = makeCard(false);
      cards.push(c);
      grid.appendChild(c.card);
    }
    while (cards.length > k) cards.pop().card.remove();
    const ax = usesMaps ? axesFor(h, w, H, W) : null;
    for (let j = 0; j < k; j++) {
      const c = cards[j];
      const wj = Number(weights[j]);
      const nj = Number(counts[j]);
      c.card.dataset.index = String(j);
      c.card.style.setProperty("--inv-color", colors[j] || "#888");
      showBase(c);
      const alt = `cluster map ${j + 1}, w = ${pct(wj)}`;
      if (usesMaps) {
        paint(c, src, j * h * w, h, w, H, W, ax);
        c.canvas.setAttribute("aria-label", alt);
      } else {
        showPng(c, pngUrl(heats[j], heatUrls), alt);
      }
      c.rank.textContent = String(j + 1);
      c.w.textContent = "w = " + pct(wj);
      c.n.textContent = `${nj} map${nj === 1 ? "" : "s"}`;
      labelBars(c.labels, labels[j]);
      c.card.title = `Cluster map ${j + 1}: weight ${pct(wj)} of the layer, ${nj} feature map${nj === 1 ? "" : "s"}. Click for details.`;
    }
    scale.style.display = usesMaps || (camMap && camMap.byteLength) ? "" : "none";
    title.textContent = model.get("title") || "";
    subtitle.textContent = model.get("subtitle") || "";
    message.textContent = model.get("message") || "";
    message.style.display = model.get("message") ? "" : "none";
    note.textContent = model.get("note") || "";
    note.style.display = model.get("note") ? "" : "none";
    applySelected();
    applyDrops();
    root.dataset.count = String(k);
    root.dataset.revision = String(rev);
    performance.mark(`inv-gallery-rendered-${rev}`);
    root.dispatchEvent(new CustomEvent("inv-gallery-rendered", { bubbles: true, detail: { revision: rev } }));
  }

  const CONTENT = ["title", "subtitle", "base", "maps", "map_shape", "size", "cmap", "lut", "heats", "weights",
    "counts", "colors", "labels", "gradcam", "gradcam_map", "gradcam_shape", "gradcam_caption", "message", "note", "revision"];
  const stop = watch(model, [...CONTENT, "selected", "alpha", "drops", "drop_tips"], (changed) => {
    if (changed.has("alpha")) applyAlpha();
    if (anyOf(changed, CONTENT)) draw(); // selects the card and shows the drops too once it lands
    else {
      if (changed.has("selected")) applySelected();
      if (anyOf(changed, ["drops", "drop_tips"])) applyDrops();
    }
  });
  return () => {
    stop();
    take(); // a draw still decoding gives up
    revokeAll(heatUrls);
    if (baseUrl) URL.revokeObjectURL(baseUrl);
  };
}

export default { render };
