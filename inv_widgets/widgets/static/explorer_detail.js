// INV Explorer detail view (anywidget front end): the selected cluster map large, its opacity and colour
// map, the six Deep Reveal steps, its member channels and labels.



function render({ model, el: root }) {
  root.classList.add("inv-detail");
  let urls = []; // object URLs of the images shown now
  const take = tickets();

  const left = el("div", "inv-detail-left");
  const big = el("div", "inv-detail-stack");
  const baseImg = el("img", "inv-base");
  const heatImg = el("img", "inv-heat");
  baseImg.draggable = heatImg.draggable = false;
  big.append(baseImg, heatImg);
  const scale = colorbar();
  const figure = el("div", "inv-detail-figure");
  figure.append(big, scale.el);
  const tools = el("div", "inv-detail-tools");
  const opLabel = el("label", "inv-tool");
  opLabel.append(el("span", "", "opacity"));
  const opacity = el("input");
  opacity.type = "range";
  opacity.min = "0";
  opacity.max = "1";
  opacity.step = "0.05";
  opacity.className = "inv-opacity";
  const opValue = el("span", "inv-tool-value");
  opLabel.append(opacity, opValue);
  const cmLabel = el("label", "inv-tool");
  cmLabel.append(el("span", "", "colours"));
  const cmap = el("select", "inv-cmap");
  cmLabel.append(cmap);
  tools.append(opLabel, cmLabel);
  left.append(figure, tools);

  const right = el("div", "inv-detail-right");
  const title = el("div", "inv-detail-title");
  const meaning = el("div", "inv-detail-meaning"); // what a map shows (its map type), in one line
  const facts = el("div", "inv-detail-facts");
  const revealHead = el("div", "inv-detail-sub", "Deep Reveal: what a player sees at each step");
  const reveals = el("div", "inv-reveals");
  const labelsHead = el("div", "inv-detail-sub", "Labels");
  const labels = el("div", "inv-detail-labels");
  const membersHead = el("div", "inv-detail-sub");
  const members = el("div", "inv-members");
  right.append(title, meaning, facts, revealHead, reveals, labelsHead, labels, membersHead, members);
  const empty = el("div", "inv-detail-empty", "Click a cluster map to see it here.");
  root.append(left, right, empty);

  const applyAlpha = () => {
    const a = Number(model.get("alpha"));
    heatImg.style.opacity = String(a);
    opacity.value = String(a);
    opValue.textContent = Math.round(100 * a) + "%";
  };
  opacity.addEventListener("input", () => {
    model.set("alpha", Number(opacity.value));
    model.save_changes();
    applyAlpha();
  });

  const renderCmaps = () => {
    const names = model.get("cmaps") || [];
    cmap.replaceChildren(...names.map((n) => {
      const o = el("option", "", n);
      o.value = n;
      return o;
    }));
    cmap.value = model.get("cmap");
  };
  cmap.addEventListener("change", () => {
    model.set("cmap", cmap.value);
    model.save_changes();
  });

  // The content: rebuilt from the traits, swapped in once its images are decoded.
  async function content() {
    const fresh = take();
    const bag = [];
    const has = model.get("heat") && model.get("heat").byteLength > 0;
    root.classList.toggle("inv-has-content", !!has);
    const color = model.get("color") || "#888";
    root.style.setProperty("--inv-color", color);
    const bu = pngUrl(model.get("base"), bag);
    const hu = pngUrl(model.get("heat"), bag);
    const pending = [];
    const nb = new Image();
    const nh = new Image();
    if (bu) { nb.src = bu; pending.push(nb); }
    if (hu) { nh.src = hu; pending.push(nh); }

    const revFrag = document.createDocumentFragment();
    const percents = model.get("reveal_percents") || [];
    (model.get("reveals") || []).forEach((dv, s) => {
      const fig = el("figure", "inv-reveal");
      const img = el("img");
      img.src = pngUrl(dv, bag);
      img.alt = `Deep Reveal step ${s + 1}`;
      img.draggable = false;
      pending.push(img);
      fig.append(img, el("figcaption", "", `${s + 1} · top ${percents[s] ?? "?"}%`));
      revFrag.appendChild(fig);
    });

    await decoded(pending);
    if (!fresh()) {
      revokeAll(bag);
      return;
    }
    baseImg.src = bu;
    heatImg.src = hu;
    scale.set(has ? model.get("colorbar") : "");
    reveals.replaceChildren(revFrag);
    title.textContent = model.get("title") || "";
    meaning.textContent = model.get("meaning") || "";

    facts.replaceChildren();
    const w = Number(model.get("weight"));
    const n = Number(model.get("n_maps"));
    const addFact = (k, v, tip) => {
      const f = el("div", "inv-fact");
      f.append(el("span", "inv-fact-value", v), el("span", "inv-fact-key", k));
      if (tip) f.title = tip;
      facts.appendChild(f);
    };
    addFact(model.get("weight_name") || "gradient weight", "w = " + pct(w), model.get("weight_tip") || "Share of the layer's weight");
    addFact("feature maps", String(n), "Channels of this layer merged into this cluster map");
    const gc = Number(model.get("gradcam_overlap"));
    if (isFinite(gc) && gc >= 0) addFact("agreement with Grad-CAM", gc.toFixed(2), "Pearson correlation between this cluster map and the layer's Grad-CAM");

    const labs = model.get("labels") || [];
    labelsHead.style.display = "";
    labels.replaceChildren();
    if (!labs.length) {
      labels.appendChild(el("div", "inv-muted", model.get("labels_hint") || "No labels yet."));
    } else {
      const top = Math.max(...labs.map((l) => Number(l[1]) || 0), 1e-9);
      for (const [text, score] of labs) {
        const row = el("div", "inv-dlabel");
        const bar = el("div", "inv-dlabel-bar");
        bar.style.width = Math.max(3, (100 * (Number(score) || 0)) / top) + "%";
        row.append(bar, el("span", "inv-dlabel-text", String(text)), el("span", "inv-dlabel-score", Number(score).toFixed(2)));
        labels.appendChild(row);
      }
    }

    const mem = model.get("members") || [];
    membersHead.textContent = `Member channels (${mem.length}), heaviest first`;
    members.replaceChildren();
    const maps = model.get("member_maps") || [];
    if (maps.length) {
      const strip = el("div", "inv-member-maps");
      maps.forEach((dv, i) => {
        const fig = el("figure", "inv-member-map");
        const img = el("img");
        img.src = pngUrl(dv, bag);
        img.alt = `feature map of channel ${mem[i] ? mem[i][0] : "?"}`;
        img.draggable = false;
        fig.append(img, el("figcaption", "", mem[i] ? `#${mem[i][0]}` : ""));
        if (mem[i]) fig.title = `channel ${mem[i][0]}: its feature map at the layer's resolution, ${pct(Number(mem[i][1]))} of the layer's weight`;
        strip.appendChild(fig);
      });
      members.appendChild(strip);
    }
    const shown = mem.slice(0, 48);
    const wmax = Math.max(...shown.map((m) => Number(m[1]) || 0), 1e-9);
    for (const [ch, wc] of shown) {
      const chip = el("span", "inv-chip");
      const bar = el("span", "inv-chip-bar");
      bar.style.width = Math.max(4, (100 * Number(wc)) / wmax) + "%";
      chip.append(bar, el("span", "inv-chip-text", `#${ch} · ${pct(Number(wc))}`));
      chip.title = `channel ${ch}: ${pct(Number(wc))} of the layer's weight`;
      members.appendChild(chip);
    }
    if (mem.length > shown.length) members.appendChild(el("span", "inv-muted", `+${mem.length - shown.length} more`));

    revokeAll(urls);
    urls = bag;
    root.dataset.revision = String(model.get("revision"));
  }

  const CONTENT = ["title", "base", "heat", "colorbar", "reveals", "reveal_percents", "weight", "weight_tip", "weight_name", "meaning", "n_maps",
    "gradcam_overlap", "color", "members", "member_maps", "labels", "labels_hint", "revision"];
  const stop = watch(model, [...CONTENT, "alpha", "cmaps", "cmap"], (changed) => {
    if (changed.has("alpha")) applyAlpha();
    if (anyOf(changed, ["cmaps", "cmap"])) renderCmaps();
    if (anyOf(changed, CONTENT)) content();
  });
  return () => {
    stop();
    take(); // a draw still decoding gives up
    revokeAll(urls);
  };
}

export default { render };
