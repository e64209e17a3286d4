// INV GlobalView (anywidget front end): a class picker and, for the class, one column per layer with its
// top labels (score bar, mean weight, images, TCAV result) and example overlays. Clicking a class or an
// example sends an intent to the kernel ({type: "select_class"} / {type: "open_example"}); the kernel owns
// the state and answers by setting traits. Label text is set with textContent only. The helpers (el, pct,
// watch, tickets, pngUrl, decoded, revokeAll) are dom.js's, with its one re-render rule.

function tcavChip(tcav) {
  if (!tcav) return null;
  if (tcav.note !== undefined) {
    const chip = el("span", "inv-tcav inv-tcav-na", "TCAV –");
    chip.title = `Not tested: ${tcav.note}`;
    return chip;
  }
  const sig = !!tcav.significant;
  const p = Number(tcav.p);
  const pText = p < 0.001 ? "p < 0.001" : `p = ${p.toFixed(3)}`;
  const chip = el("span", "inv-tcav " + (sig ? "inv-tcav-sig" : "inv-tcav-ns"), `TCAV ${Number(tcav.score).toFixed(2)} · ${pText}`);
  chip.title =
    `TCAV score ${Number(tcav.score).toFixed(2)}: share of the class's images whose logit rises along this concept ` +
    `(random concepts: ${Number(tcav.random).toFixed(2)}); two-sided t-test ${pText}` +
    (sig ? "" : " — not significant");
  return chip;
}

function render({ model, el: root }) {
  root.classList.add("inv-global");
  const head = el("div", "inv-global-head");
  const title = el("span", "inv-global-title", "Global explanation");
  const picker = el("div", "inv-global-classes");
  picker.setAttribute("role", "tablist");
  picker.setAttribute("aria-label", "Class");
  const subtitle = el("div", "inv-global-subtitle");
  head.append(title, picker);
  const message = el("div", "inv-global-message");
  const error = el("div", "inv-global-error");
  error.setAttribute("role", "alert");
  const cols = el("div", "inv-global-cols");
  root.append(head, subtitle, error, message, cols);

  const urls = []; // object URLs of the examples shown now
  const take = tickets();

  function drawPicker() {
    const classes = model.get("classes") || [];
    const counts = model.get("class_counts") || [];
    const current = model.get("class_index");
    picker.replaceChildren(
      ...classes.map((name, i) => {
        const b = el("button", "inv-global-class", name);
        b.type = "button";
        b.dataset.index = String(i);
        b.setAttribute("role", "tab");
        b.setAttribute("aria-selected", i === current ? "true" : "false");
        b.classList.toggle("inv-active", i === current);
        b.disabled = !counts[i];
        b.title = counts[i] ? `${name}: ${counts[i]} labelled image${counts[i] === 1 ? "" : "s"}` : `${name}: no labels yet`;
        b.addEventListener("click", () => model.send({ type: "select_class", index: i }));
        return b;
      })
    );
  }

  function drawText() {
    subtitle.textContent = model.get("subtitle") || "";
    message.textContent = model.get("message") || "";
    message.style.display = model.get("message") ? "" : "none";
    error.textContent = model.get("error") || "";
    error.style.display = model.get("error") ? "" : "none";
  }

  async function full() {
    const fresh = take();
    const bag = [];
    const imgs = [];
    const urlOf = (images, n) => (n >= 0 && n < images.length ? pngUrl(images[n], bag) : "");
    const images = model.get("images") || [];
    const columns = model.get("columns") || [];
    const frag = document.createDocumentFragment();
    columns.forEach((col, li) => {
      const c = el("div", "inv-global-col");
      c.dataset.layer = col.layer;
      const h = el("div", "inv-global-layer", col.short || col.layer);
      h.title = col.layer;
      c.appendChild(h);
      if (!col.labels.length) c.appendChild(el("div", "inv-global-empty", "no labels"));
      col.labels.forEach((lab, ri) => {
        const row = el("div", "inv-global-label");
        row.dataset.label = lab.label;
        const tested = lab.tcav && lab.tcav.note === undefined;
        row.classList.toggle("inv-ns", !!(tested && !lab.tcav.significant));
        const name = el("div", "inv-global-name", lab.label);
        name.title = lab.label;
        const bar = el("div", "inv-global-bar");
        bar.style.width = Math.max(3, Math.round(100 * Number(lab.bar))) + "%";
        const w = lab.mean_weight === null || lab.mean_weight === undefined ? "w̄ –" : "w̄ " + pct(Number(lab.mean_weight));
        const facts = el("div", "inv-global-facts", `${Number(lab.score).toFixed(1)} · ${w} · ${lab.n_images} img`);
        facts.title = `score ${Number(lab.score).toFixed(2)} (best-label scores summed over the images) · w̄ ${w.slice(3)}: the mean weight of the cluster maps carrying this label, as a share of their layer · ${lab.n_images} image${lab.n_images === 1 ? "" : "s"}, ${lab.n_maps} cluster map${lab.n_maps === 1 ? "" : "s"}`;
        row.append(name, bar, facts);
        const chip = tcavChip(lab.tcav);
        if (chip) row.appendChild(chip);
        const ex = el("div", "inv-global-examples");
        lab.examples.forEach((n, k) => {
          const u = urlOf(images, n);
          if (!u) return;
          const im = el("img", "inv-global-example");
          im.src = u;
          im.alt = `example ${k + 1} of ${lab.label}`;
          im.title = `Open example ${k + 1} in the Explorer`;
          im.draggable = false;
          im.tabIndex = 0;
          im.dataset.example = String(k);
          const open = () => model.send({ type: "open_example", layer: li, row: ri, example: k });
          im.addEventListener("click", open);
          im.addEventListener("keydown", (ev) => {
            if (ev.key === "Enter" || ev.key === " ") {
              ev.preventDefault();
              open();
            }
          });
          imgs.push(im);
          ex.appendChild(im);
        });
        row.appendChild(ex);
        c.appendChild(row);
      });
      frag.appendChild(c);
    });
    await decoded(imgs);
    if (!fresh()) {
      revokeAll(bag);
      return;
    }
    drawPicker();
    drawText();
    cols.replaceChildren(frag);
    revokeAll(urls);
    urls.push(...bag);
    root.dataset.class = (model.get("classes") || [])[model.get("class_index")] || "";
    root.dataset.revision = String(model.get("revision"));
  }

  const stop = watch(model, ["revision", "message", "error"], (changed) => {
    if (anyOf(changed, ["message", "error"])) drawText();
    if (changed.has("revision")) full();
  });
  return () => {
    stop();
    take(); // a draw still decoding its images does not land
    revokeAll(urls);
  };
}

export default { render };
