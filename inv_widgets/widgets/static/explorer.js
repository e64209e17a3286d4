// INV Explorer header (anywidget front end): image picker with thumbnails and upload, the prediction
// (top-5, click a class to explain it), progress and errors, and the keyboard for the whole Explorer.
//
// Changes made here go to the kernel as messages ({type: ...}); the kernel owns the state and answers
// by setting traits. Arrow keys: left/right move the layer, up/down move the cut (up: fewer clusters).


const KEYS = new Set(["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"]);

// Elements that use arrow keys themselves (sliders, inputs, selects): the key stays theirs.
function ownsArrows(target) {
  if (!(target instanceof Element)) return false;
  if (target.closest("input, select, textarea, [contenteditable=''], [contenteditable='true']")) return true;
  if (target.closest(".noUi-target, .widget-slider, .widget-dropdown")) return true;
  return false;
}

function installKeyboard(model, root) {
  if (root.__invKeys) return;
  root.__invKeys = true;
  if (!root.hasAttribute("tabindex")) root.tabIndex = 0;
  // JupyterLab / Notebook 7 (lumino) skip their shortcuts for events from inside this element.
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.setAttribute("aria-label", "INV Explorer: left/right arrows change the layer, up/down move the cut");
  root.addEventListener("keydown", (ev) => {
    if (!KEYS.has(ev.key) || ev.altKey || ev.ctrlKey || ev.metaKey) {
      if (KEYS.has(ev.key)) ev.stopPropagation();
      return;
    }
    if (ownsArrows(ev.target)) {
      ev.stopPropagation(); // the control handles it; JupyterLab must not
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();
    model.send({ type: "key", key: ev.key, shift: ev.shiftKey });
  });
  // Clicking anywhere in the Explorer (outside a control) gives it the keyboard.
  root.addEventListener("mousedown", (ev) => {
    const t = ev.target;
    if (t instanceof Element && !t.closest("input, select, textarea, button, .noUi-target, .widget-dropdown")) {
      setTimeout(() => {
        if (!root.contains(document.activeElement) || document.activeElement === document.body) root.focus({ preventScroll: true });
      }, 0);
    }
  });
}

function findRoot(elm, model, tries = 0) {
  const root = elm.closest(".inv-explorer");
  if (root) {
    installKeyboard(model, root);
    return;
  }
  if (tries < 200) setTimeout(() => findRoot(elm, model, tries + 1), tries < 20 ? 25 : 250);
}

function render({ model, el: root }) {
  root.classList.add("inv-header");
  let urls = [];

  // --- picker -------------------------------------------------------------------------------
  const picker = el("div", "inv-picker");
  const prev = el("button", "inv-page", "‹");
  prev.title = "Previous images";
  const strip = el("div", "inv-strip");
  const next = el("button", "inv-page", "›");
  next.title = "More images";
  const add = el("label", "inv-add");
  add.title = "Add your own image (or drop one here)";
  const addIcon = el("span", "inv-add-icon", "+");
  const addText = el("span", "inv-add-text", "add image");
  const file = el("input");
  file.type = "file";
  file.accept = "image/*";
  file.multiple = true;
  add.append(addIcon, addText, file);
  picker.append(prev, strip, next, add);

  // --- prediction + status ---------------------------------------------------------------------
  const info = el("div", "inv-info");
  const pred = el("div", "inv-pred");
  const predHead = el("div", "inv-pred-head");
  const bars = el("div", "inv-bars");
  pred.append(predHead, bars);
  const side = el("div", "inv-side");
  const status = el("div", "inv-status");
  const statusText = el("span", "inv-status-text");
  const track = el("div", "inv-progress");
  const fill = el("div", "inv-progress-fill");
  track.appendChild(fill);
  status.append(statusText, track);
  const error = el("div", "inv-error");
  error.setAttribute("role", "alert");
  const errorText = el("span", "inv-error-text");
  const errorClose = el("button", "inv-error-close", "×");
  errorClose.title = "Dismiss";
  error.append(errorText, errorClose);
  const hint = el("div", "inv-hint");
  side.append(status, error, hint);
  info.append(pred, side);
  root.append(picker, info);

  function renderThumbs() {
    const bag = [];
    const frag = document.createDocumentFragment();
    const thumbs = model.get("thumbs") || [];
    const idx = model.get("thumb_indices") || [];
    const caps = model.get("thumb_captions") || [];
    const current = model.get("index");
    thumbs.forEach((dv, j) => {
      const b = el("button", "inv-thumb");
      const i = idx[j];
      b.dataset.index = String(i);
      if (i === current) b.classList.add("inv-current");
      const img = el("img");
      img.alt = caps[j] || `image ${i}`;
      img.draggable = false;
      const u = pngUrl(dv, bag);
      if (u) img.src = u;
      b.appendChild(img);
      b.appendChild(el("span", "inv-thumb-cap", caps[j] || `#${i}`));
      b.title = `${caps[j] || "image " + i} — click to explain it`;
      b.addEventListener("click", () => model.send({ type: "image", index: i }));
      frag.appendChild(b);
    });
    strip.replaceChildren(frag);
    revokeAll(urls);
    urls = bag;
    const page = model.get("page");
    const pages = Math.max(1, Math.ceil(model.get("n_images") / Math.max(1, model.get("page_size"))));
    prev.disabled = page <= 0;
    next.disabled = page >= pages - 1;
    prev.style.visibility = next.style.visibility = pages > 1 ? "visible" : "hidden";
  }

  function markCurrent() {
    const current = model.get("index");
    for (const b of strip.querySelectorAll(".inv-thumb")) b.classList.toggle("inv-current", Number(b.dataset.index) === current);
  }

  function renderPrediction() {
    const top = model.get("top") || [];
    const target = model.get("target");
    const predicted = model.get("predicted");
    predHead.replaceChildren();
    const truth = model.get("truth");
    predHead.append(el("span", "inv-pred-title", "Prediction"));
    if (truth) predHead.append(el("span", "inv-truth", "true class: " + truth));
    const frag = document.createDocumentFragment();
    for (const [cls, name, p] of top) {
      const row = el("button", "inv-bar-row");
      row.dataset.cls = String(cls);
      if (cls === target) row.classList.add("inv-target");
      if (cls === predicted) row.classList.add("inv-predicted");
      const label = el("span", "inv-bar-label", name);
      const barBox = el("span", "inv-bar-box");
      const bar = el("span", "inv-bar");
      bar.style.width = Math.max(0.5, 100 * p) + "%";
      barBox.appendChild(bar);
      const val = el("span", "inv-bar-value", (100 * p).toFixed(p >= 0.1 ? 1 : 2) + "%");
      row.append(label, barBox, val);
      row.title = cls === target ? `Explaining “${name}”` : `Explain why “${name}” (and not the prediction)`;
      row.addEventListener("click", () => model.send({ type: "target", cls }));
      frag.appendChild(row);
    }
    bars.replaceChildren(frag);
  }

  function renderStatus() {
    const busy = model.get("busy");
    const p = model.get("progress");
    status.classList.toggle("inv-busy", !!busy);
    statusText.textContent = busy ? model.get("status") || "working…" : model.get("status") || "";
    track.classList.toggle("inv-indeterminate", busy && !(p >= 0));
    fill.style.width = busy && p >= 0 ? Math.round(100 * Math.min(1, p)) + "%" : busy ? "30%" : "0%";
    track.style.visibility = busy ? "visible" : "hidden";
    root.dataset.busy = busy ? "true" : "false";
  }

  function renderError() {
    const msg = model.get("error");
    errorText.textContent = msg || "";
    error.style.display = msg ? "flex" : "none";
  }

  function renderHint() {
    hint.textContent = model.get("hint") || "";
  }

  prev.addEventListener("click", () => model.send({ type: "page", page: model.get("page") - 1 }));
  next.addEventListener("click", () => model.send({ type: "page", page: model.get("page") + 1 }));
  errorClose.addEventListener("click", () => {
    model.set("error", "");
    model.save_changes();
  });

  async function upload(files) {
    for (const f of files) {
      const buf = await f.arrayBuffer();
      model.send({ type: "upload", name: f.name, mime: f.type }, undefined, [buf]);
    }
  }
  file.addEventListener("change", () => {
    if (file.files && file.files.length) upload(Array.from(file.files));
    file.value = "";
  });
  picker.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    picker.classList.add("inv-drop");
  });
  picker.addEventListener("dragleave", () => picker.classList.remove("inv-drop"));
  picker.addEventListener("drop", (ev) => {
    ev.preventDefault();
    picker.classList.remove("inv-drop");
    if (ev.dataTransfer && ev.dataTransfer.files.length) upload(Array.from(ev.dataTransfer.files));
  });

  const THUMBS = ["thumbs", "thumb_indices", "thumb_captions", "page", "n_images", "page_size"];
  const PREDICTION = ["top", "target", "predicted", "truth"];
  const STATUS = ["busy", "progress", "status"];
  const stop = watch(model, [...THUMBS, "index", ...PREDICTION, ...STATUS, "error", "hint"], (changed) => {
    if (anyOf(changed, THUMBS)) renderThumbs(); // marks the current image too
    else if (changed.has("index")) markCurrent();
    if (anyOf(changed, PREDICTION)) renderPrediction();
    if (anyOf(changed, STATUS)) renderStatus();
    if (changed.has("error")) renderError();
    if (changed.has("hint")) renderHint();
  });
  findRoot(root, model);
  model.send({ type: "ready" });

  return () => {
    stop();
    revokeAll(urls);
  };
}

export default { render };
