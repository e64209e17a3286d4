// INV Deep Reveal game (anywidget front end).
//
// The kernel owns the game: this file draws its state and sends the player's actions as messages
// ({type: "guess", class: i, round}, "more", "resign", "submit", "skip", "undo", "refresh", "name").
// Text typed by people (labels, names on the leaderboard) is only ever set with textContent or
// input.value, never parsed as HTML.
//
// Keyboard (the widget has the focus: click it, or it takes it when it is alone on the page, as in
// Voila): 1-9 and 0 guess the n-th class, space shows more, Enter saves the labels (or the name).
// JupyterLab's shortcuts are off inside the widget (data-lm-suppress-shortcuts) and keys do not
// bubble out of it; while typing in a text box only Enter is the game's.


// Buttons come from dom.js's button(): a click leaves the focus on the game (space would otherwise press
// the button that was clicked last).

// Code points, as Python counts them (an emoji is one character, not two).
function charCount(s) {
  return Array.from(s || "").length;
}

const KEY_OF = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];

function render({ model, el: host }) {
  const root = el("div", "ig-root");
  root.tabIndex = 0;
  root.setAttribute("data-lm-suppress-shortcuts", "true");
  root.setAttribute("role", "application");
  root.setAttribute("aria-label", "Deep Reveal game: keys 1-9 and 0 guess a class, space shows more, Enter saves");
  host.classList.add("inv-game");
  host.appendChild(root);
  const urls = { masked: [], overlay: [] }; // object URLs of the images shown now
  const seen = { round: -1, draft: -1, phase: "" };

  // --- top bar ---------------------------------------------------------------------------------
  const top = el("header", "ig-top");
  const brand = el("div", "ig-brand");
  brand.append(el("span", "ig-logo", "◐"), el("span", "ig-title", "Deep Reveal"),
    el("span", "ig-tagline", "guess the class from a few pixels"));
  const stats = el("div", "ig-stats");
  const who = el("span", "ig-chip ig-who");
  const pts = el("span", "ig-chip ig-points");
  const streak = el("span", "ig-chip ig-streak");
  stats.append(who, pts, streak);
  top.append(brand, stats);

  const prog = el("div", "ig-progress");
  const progTrack = el("div", "ig-progress-track");
  const progFill = el("div", "ig-progress-fill");
  progTrack.appendChild(progFill);
  const progText = el("span", "ig-progress-text");
  const undoBtn = button("ig-btn ig-ghost ig-undo", "↶ Undo last answer", "Bring back your last answer to fix its labels (the guess stays)");
  prog.append(progTrack, progText, undoBtn);

  const msg = el("div", "ig-msg");
  msg.setAttribute("role", "status");
  msg.setAttribute("aria-live", "polite");
  const msgText = el("span", "ig-msg-text");
  const msgClose = button("ig-msg-close", "×", "Dismiss");
  msg.append(msgText, msgClose);

  // --- name screen ------------------------------------------------------------------------------
  const nameBox = el("section", "ig-card ig-name");
  const nameTitle = el("h2", "ig-h", "Who's playing?");
  const nameText = el("p", "ig-p",
    "A network looked at an image. You see only the few pixels it found most telling. Guess the class, " +
    "as early as you can: the less you need to see, the more points you get. Then tell us what gave it away.");
  const nameRow = el("div", "ig-name-row");
  const nameInput = el("input", "ig-input ig-name-input");
  nameInput.type = "text";
  nameInput.placeholder = "Your name or nickname";
  nameInput.autocomplete = "off";
  nameInput.spellcheck = false;
  nameInput.setAttribute("aria-label", "Your name");
  const nameGo = button("ig-btn ig-primary ig-name-go", "Let's play ⏎");
  nameRow.append(nameInput, nameGo);
  const nameHint = el("p", "ig-small");
  nameBox.append(nameTitle, nameText, nameRow, nameHint);

  // --- loading ----------------------------------------------------------------------------------
  const loadBox = el("section", "ig-card ig-loading");
  const loadText = el("p", "ig-p", "Preparing the maps…");
  const loadTrack = el("div", "ig-progress-track ig-load-track");
  const loadFill = el("div", "ig-progress-fill");
  loadTrack.appendChild(loadFill);
  loadBox.append(el("div", "ig-spinner"), loadText, loadTrack);

  // --- the game ---------------------------------------------------------------------------------
  const main = el("section", "ig-main");
  const stage = el("div", "ig-card ig-stage");
  const frames = el("div", "ig-frames");
  const figMasked = el("figure", "ig-fig ig-fig-masked");
  const imgMasked = el("img", "ig-img");
  imgMasked.alt = "What the network looked at (the rest is hidden)";
  imgMasked.draggable = false;
  const capMasked = el("figcaption", "ig-cap");
  figMasked.append(imgMasked, capMasked);
  const figOverlay = el("figure", "ig-fig ig-fig-overlay");
  const imgOverlay = el("img", "ig-img");
  imgOverlay.alt = "The whole image with the cluster map";
  imgOverlay.draggable = false;
  figOverlay.append(imgOverlay, el("figcaption", "ig-cap", "The whole image · the cluster map in colour"));
  frames.append(figMasked, figOverlay);
  const steps = el("div", "ig-steps");
  steps.setAttribute("aria-hidden", "true");
  const controls = el("div", "ig-controls");
  const moreBtn = button("ig-btn ig-more", "Show more", "Reveal more pixels (space)");
  moreBtn.append(el("kbd", "ig-kbd", "space"));
  const giveUpBtn = button("ig-btn ig-ghost ig-giveup", "Give up", "Show the answer; no points");
  controls.append(moreBtn, giveUpBtn);
  const info = el("div", "ig-info");
  stage.append(frames, steps, controls, info);

  const panel = el("div", "ig-card ig-panel");
  // play
  const guessBox = el("div", "ig-guess");
  const guessHead = el("div", "ig-guess-head");
  const guessTitle = el("h2", "ig-h", "What is it?");
  const worth = el("span", "ig-worth");
  guessHead.append(guessTitle, worth);
  const classGrid = el("div", "ig-classes");
  const ladder = el("div", "ig-ladder");
  const ladderSteps = el("div", "ig-ladder-steps");
  ladder.append(el("div", "ig-small", "Points for a right guess: the less you need to see, the more you get."), ladderSteps);
  guessBox.append(guessHead, classGrid, ladder);
  // answer
  const answerBox = el("div", "ig-answer");
  const banner = el("div", "ig-banner");
  const bannerIcon = el("span", "ig-banner-icon");
  const bannerText = el("div", "ig-banner-text");
  const bannerTitle = el("div", "ig-banner-title");
  const bannerSub = el("div", "ig-banner-sub");
  bannerText.append(bannerTitle, bannerSub);
  const bannerPts = el("span", "ig-banner-points");
  banner.append(bannerIcon, bannerText, bannerPts);
  const confetti = el("div", "ig-confetti");
  const askTitle = el("h3", "ig-h3", "What gave it away?");
  const askHint = el("p", "ig-small");
  const labelInputs = [];
  const labelCounters = [];
  const labelList = el("div", "ig-labels");
  const labelPlaceholders = ["e.g. round wheels", "another one (optional)", "one more (optional)"];
  function makeLabelRow(i) {
    const row = el("label", "ig-label-row");
    const num = el("span", "ig-label-num", String(i + 1));
    const input = el("input", "ig-input ig-label-input");
    input.type = "text";
    input.autocomplete = "off";
    input.placeholder = labelPlaceholders[i] || "optional";
    input.setAttribute("aria-label", `Feature ${i + 1}`);
    input.dataset.index = String(i);
    const counter = el("span", "ig-counter");
    input.addEventListener("input", () => updateCounter(i));
    row.append(num, input, counter);
    labelInputs.push(input);
    labelCounters.push(counter);
    return row;
  }
  const answerActions = el("div", "ig-actions");
  const submitBtn = button("ig-btn ig-primary ig-submit", "Save & next", "Save your labels (Enter)");
  submitBtn.append(el("kbd", "ig-kbd", "⏎"));
  const skipBtn = button("ig-btn ig-ghost ig-skip", "Skip", "Go on without labels");
  answerActions.append(submitBtn, skipBtn);
  answerBox.append(banner, confetti, askTitle, askHint, labelList, answerActions);
  panel.append(guessBox, answerBox);
  main.append(stage, panel);

  // --- done -------------------------------------------------------------------------------------
  const doneBox = el("section", "ig-card ig-done");
  const doneTitle = el("h2", "ig-h", "★ All maps labelled!");
  const doneText = el("p", "ig-p");
  doneBox.append(doneTitle, doneText);

  // --- leaderboard ------------------------------------------------------------------------------
  const board = el("aside", "ig-card ig-board");
  const boardHead = el("div", "ig-board-head");
  const refreshBtn = button("ig-btn ig-ghost ig-refresh", "↻ Refresh", "Read the leaderboard again (other players' answers)");
  boardHead.append(el("h3", "ig-h3", "♛ Leaderboard"), refreshBtn);
  const table = el("table", "ig-table");
  const thead = el("thead");
  const hr = el("tr");
  for (const [h, t] of [["#", "rank"], ["Player", ""], ["Points", "6 for a right guess at 2 %, 1 at 30 %"],
    ["Wins", "right guesses / maps played"], ["⚡", "best streak"]]) {
    const th = el("th", "", h);
    if (t) th.title = t;
    hr.appendChild(th);
  }
  thead.appendChild(hr);
  const tbody = el("tbody");
  table.append(thead, tbody);
  const boardEmpty = el("p", "ig-small ig-board-empty", "No answers yet. Be the first!");
  const mine = el("div", "ig-mine");
  const mineList = el("ul", "ig-mine-list");
  mine.append(el("h3", "ig-h3", "✎ Your last answers"), mineList);
  board.append(boardHead, table, boardEmpty, mine);

  const keys = el("footer", "ig-keys");
  keys.append(el("span", "", "Keys: "), el("kbd", "ig-kbd", "1"), el("span", "", "…"), el("kbd", "ig-kbd", "9"),
    el("kbd", "ig-kbd", "0"), el("span", "", " guess · "), el("kbd", "ig-kbd", "space"),
    el("span", "", " show more · "), el("kbd", "ig-kbd", "⏎"), el("span", "", " save · click the game first in a notebook"));

  const body = el("div", "ig-body");
  const left = el("div", "ig-left");
  left.append(nameBox, loadBox, main, doneBox);
  body.append(left, board);
  root.append(top, prog, msg, body, keys);

  // --- actions ----------------------------------------------------------------------------------
  const send = (type, extra) => model.send(Object.assign({ type, round: model.get("round") }, extra || {}));
  const labelsNow = () => labelInputs.map((i) => i.value);
  function sendName() {
    send("name", { name: nameInput.value });
  }
  nameGo.addEventListener("click", sendName);
  moreBtn.addEventListener("click", () => send("more"));
  giveUpBtn.addEventListener("click", () => send("resign"));
  submitBtn.addEventListener("click", () => send("submit", { labels: labelsNow() }));
  skipBtn.addEventListener("click", () => send("skip"));
  undoBtn.addEventListener("click", () => send("undo"));
  refreshBtn.addEventListener("click", () => send("refresh"));
  msgClose.addEventListener("click", () => send("dismiss"));

  function guessIndex(i) {
    const classes = model.get("classes") || [];
    if (i >= 0 && i < classes.length) send("guess", { class: i });
  }

  root.addEventListener("keydown", (ev) => {
    ev.stopPropagation(); // the game's keys are not JupyterLab's (nor the page's)
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const phase = model.get("phase");
    const t = ev.target instanceof Element ? ev.target : null;
    const typing = t && t.closest("input, textarea, select, [contenteditable='true'], [contenteditable='']");
    if (ev.key === "Enter") {
      if (t && t.tagName === "BUTTON" && !typing) return; // a focused button: Enter presses it
      if (phase === "answer") {
        ev.preventDefault();
        if (!ev.repeat) send("submit", { labels: labelsNow() });
      } else if (phase === "name") {
        ev.preventDefault();
        if (!ev.repeat) sendName();
      }
      return;
    }
    if (typing) return; // the text box gets the key
    if (phase !== "play") return;
    if (ev.key === " " || ev.key === "Spacebar") {
      if (t && t.tagName === "BUTTON" && t !== root) return;
      ev.preventDefault();
      if (!ev.repeat) send("more");
      return;
    }
    const n = KEY_OF.indexOf(ev.key);
    if (n >= 0) {
      ev.preventDefault();
      if (!ev.repeat) guessIndex(n);
    }
  });
  // Clicking anywhere in the game (outside a text box) gives it the keyboard.
  root.addEventListener("mousedown", (ev) => {
    const t = ev.target instanceof Element ? ev.target : null;
    if (t && t.closest("input, textarea, select")) return;
    setTimeout(() => {
      if (!(document.activeElement && document.activeElement.closest && document.activeElement.closest("input, textarea"))) {
        root.focus({ preventScroll: true });
      }
    }, 0);
  });

  // --- drawing ----------------------------------------------------------------------------------
  function setImage(which, img, changed) {
    if (!changed.has(which)) return;
    revokeAll(urls[which]);
    const u = pngUrl(model.get(which), urls[which]);
    if (u) img.src = u;
    else img.removeAttribute("src");
  }

  function updateCounter(i) {
    const max = model.get("max_label_chars");
    const n = charCount(labelInputs[i].value);
    labelCounters[i].textContent = `${n}/${max}`;
    labelCounters[i].classList.toggle("ig-over", n > max);
    labelInputs[i].classList.toggle("ig-over", n > max);
  }

  function ensureLabelRows() {
    const want = Math.max(1, model.get("max_labels"));
    while (labelInputs.length < want) labelList.appendChild(makeLabelRow(labelInputs.length));
  }

  function drawClasses() {
    const classes = model.get("classes") || [];
    const phase = model.get("phase");
    const frag = document.createDocumentFragment();
    classes.forEach((name, i) => {
      const b = button("ig-class", undefined, `Guess “${name}”` + (i < 10 ? ` (key ${KEY_OF[i]})` : ""));
      b.dataset.index = String(i);
      if (i < 10) b.appendChild(el("kbd", "ig-kbd ig-class-key", KEY_OF[i]));
      b.appendChild(el("span", "ig-class-name", name));
      b.disabled = phase !== "play";
      b.addEventListener("click", () => guessIndex(i));
      frag.appendChild(b);
    });
    classGrid.replaceChildren(frag);
  }

  function drawLadder() {
    const percents = model.get("percents") || [];
    const step = model.get("step");
    const frag = document.createDocumentFragment();
    percents.forEach((p, i) => {
      const cls = i < step ? " ig-gone" : i === step ? " ig-now" : "";
      const rung = el("div", "ig-rung" + cls);
      rung.append(el("span", "ig-rung-pts", String(percents.length - i)), el("span", "ig-rung-pct", `${p}%`));
      frag.appendChild(rung);
    });
    ladderSteps.replaceChildren(frag);
  }

  function drawSteps() {
    const percents = model.get("percents") || [];
    const step = model.get("step");
    const frag = document.createDocumentFragment();
    percents.forEach((p, i) => {
      const s = el("div", "ig-step" + (i <= step ? " ig-on" : "") + (i === step ? " ig-now" : ""));
      s.append(el("span", "ig-step-bar"), el("span", "ig-step-label", `${p}%`));
      frag.appendChild(s);
    });
    steps.replaceChildren(frag);
  }

  function drawBoard() {
    const rows = model.get("leaderboard") || [];
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const tr = el("tr", r.me ? "ig-me" : "");
      const rank = el("td", "ig-rank");
      rank.appendChild(el("span", `ig-medal ig-medal-${Math.min(r.rank, 4)}`, r.rank));
      const nameCell = el("td", "ig-player", r.participant);
      nameCell.title = r.participant;
      tr.append(rank, nameCell, el("td", "ig-num", r.points),
        el("td", "ig-num", `${r.wins}/${r.games}`), el("td", "ig-num", r.best_streak));
      tr.dataset.participant = r.participant;
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
    table.style.display = rows.length ? "" : "none";
    boardEmpty.style.display = rows.length ? "none" : "";
  }

  function drawRecent() {
    const rows = model.get("recent") || [];
    const icons = { win: "✔", lose: "✘", resign: "⚑" };
    const frag = document.createDocumentFragment();
    for (const r of rows) {
      const li = el("li", `ig-mine-row ig-${r.outcome}`);
      const head = el("div", "ig-mine-head");
      head.append(el("span", "ig-mine-icon", icons[r.outcome] || "•"), el("span", "ig-mine-class", r.true_class),
        el("span", "ig-mine-pts", r.points ? `+${r.points}` : ""));
      const chips = el("div", "ig-chips");
      for (const text of r.labels || []) chips.appendChild(el("span", "ig-label-chip", text));
      if (!(r.labels || []).length) chips.appendChild(el("span", "ig-small", "no labels"));
      li.append(head, chips);
      frag.appendChild(li);
    }
    mineList.replaceChildren(frag);
    mine.hidden = !rows.length;
  }

  function burst() {
    const colors = ["#ff5d8f", "#ffd23f", "#3bceac", "#5b8cff", "#a66cff", "#ff8c42"];
    const frag = document.createDocumentFragment();
    for (let i = 0; i < 26; i++) {
      const p = el("i", "ig-bit");
      p.style.left = `${4 + Math.random() * 92}%`;
      p.style.background = colors[i % colors.length];
      p.style.animationDelay = `${Math.random() * 0.25}s`;
      p.style.setProperty("--drift", `${(Math.random() - 0.5) * 80}px`);
      p.style.setProperty("--spin", `${Math.round((Math.random() - 0.5) * 720)}deg`);
      frag.appendChild(p);
    }
    confetti.replaceChildren(frag);
  }

  function draw(changed) {
    const phase = model.get("phase");
    const hadFocus = root.contains(document.activeElement) || document.activeElement === document.body;
    root.dataset.phase = phase;
    nameBox.hidden = phase !== "name";
    loadBox.hidden = phase !== "loading";
    main.hidden = phase !== "play" && phase !== "answer";
    doneBox.hidden = phase !== "done";
    stats.hidden = !model.get("participant");
    prog.hidden = phase === "name";

    // stats
    who.textContent = model.get("participant") || "";
    who.title = "Playing as " + (model.get("participant") || "");
    pts.textContent = `★ ${model.get("points")} pts`;
    const s = model.get("streak");
    streak.textContent = `⚡ ${s} in a row`;
    streak.title = `Streak: ${s} right in a row (best ${model.get("best_streak")})`;
    streak.classList.toggle("ig-hot", s >= 2);
    const total = model.get("total");
    const answered = model.get("answered");
    progFill.style.width = total ? `${Math.min(100, (100 * answered) / total)}%` : "0%";
    progText.textContent = total ? `${answered} / ${total} maps` : "";
    undoBtn.hidden = !model.get("can_undo");

    // message
    const text = model.get("message");
    msgText.textContent = text || "";
    msg.className = "ig-msg" + (text ? ` ig-msg-${model.get("message_kind") || "info"}` : "");
    msg.setAttribute("role", model.get("message_kind") === "error" ? "alert" : "status");
    msg.hidden = !text;

    // name / loading / done
    nameHint.textContent = `1 to ${model.get("max_name_chars")} characters. Playing again? Use the same name to keep your points.`;
    const p = model.get("loading");
    loadFill.style.width = `${Math.round(100 * Math.max(0.03, Math.min(1, p)))}%`;
    loadText.textContent = p > 0 && p < 1 ? `Preparing the maps… ${Math.round(100 * p)} %` : "Preparing the maps…";
    doneText.textContent = `You answered ${answered} of ${total} maps and scored ${model.get("points")} points. ` +
      "Thank you! Press ↻ Refresh to see how the others are doing.";

    // game
    setImage("masked", imgMasked, changed);
    setImage("overlay", imgOverlay, changed);
    const step = model.get("step");
    const percents = model.get("percents") || [];
    const shown = percents[step];
    const answered_ = phase === "answer";
    capMasked.textContent = answered_ ? `What you saw: the top ${shown} % of pixels`
      : `The network's top ${shown} % of pixels`;
    figOverlay.hidden = !answered_;
    if (anyOf(changed, ["percents", "step"])) {
      drawSteps();
      drawLadder();
    }
    moreBtn.disabled = phase !== "play" || step >= percents.length - 1;
    giveUpBtn.disabled = phase !== "play";
    controls.hidden = answered_;
    info.textContent = model.get("map_info") || "";
    const potential = model.get("potential");
    worth.textContent = `right now: ${potential} pt${potential === 1 ? "" : "s"}`;
    worth.className = "ig-worth ig-worth-" + potential;
    if (anyOf(changed, ["classes", "phase"])) drawClasses();
    guessBox.hidden = answered_;
    answerBox.hidden = !answered_;

    const round = model.get("round");
    root.dataset.round = String(round);
    const newRound = round !== seen.round;
    seen.round = round;
    ensureLabelRows();
    if (newRound) labelInputs.forEach((i) => (i.value = ""));
    const dr = model.get("draft_revision");
    if (dr !== seen.draft) {
      seen.draft = dr;
      const d = model.get("draft") || [];
      labelInputs.forEach((input, i) => (input.value = d[i] !== undefined ? d[i] : ""));
    }
    labelInputs.forEach((_, i) => updateCounter(i));

    if (answered_) {
      const outcome = model.get("outcome");
      const truth = model.get("true_class");
      const classes = model.get("classes") || [];
      const g = model.get("guessed");
      banner.className = `ig-banner ig-${outcome}`;
      const truthSpan = el("span", "ig-truth", truth);
      if (outcome === "win") {
        bannerIcon.textContent = "✔";
        bannerTitle.replaceChildren("Right! ", truthSpan);
        bannerSub.textContent = `You needed only ${shown} % of the pixels.`;
      } else if (outcome === "lose") {
        bannerIcon.textContent = "✘";
        bannerTitle.replaceChildren("Not quite: it's ", truthSpan);
        bannerSub.textContent = `You said ${classes[g] !== undefined ? classes[g] : "?"}.`;
      } else {
        bannerIcon.textContent = "⚑";
        bannerTitle.replaceChildren("It's ", truthSpan);
        bannerSub.textContent = "You gave up; no points this time.";
      }
      const earned = model.get("earned");
      bannerPts.textContent = earned ? `+${earned}` : "+0";
      // the answer was saved before the class was shown (a revealed class is an answer); the labels follow
      askHint.textContent = "Your answer is saved. " + (outcome === "resign"
        ? "Now that you see it: what gives it away? Type up to 3 features, or skip."
        : `Type 1 to ${model.get("max_labels")} features (a few words each, at most ${model.get("max_label_chars")} characters).`);
      skipBtn.hidden = outcome !== "resign";
      if (seen.phase !== "answer") {
        if (outcome === "win") burst();
        else confetti.replaceChildren();
      }
    } else if (confetti.firstChild) {
      confetti.replaceChildren();
    }

    // focus: keep the keyboard in the game; type labels straight after a guess
    const phaseChanged = seen.phase !== phase;
    seen.phase = phase;
    if (phaseChanged && hadFocus) {
      if (phase === "answer") labelInputs[0].focus({ preventScroll: true });
      else if (phase === "name") nameInput.focus({ preventScroll: true });
      else root.focus({ preventScroll: true });
    }
    if (changed.has("leaderboard")) drawBoard();
    if (changed.has("recent")) drawRecent();
  }

  const traits = ["phase", "participant", "classes", "round", "masked", "step", "percents", "potential", "map_info",
    "outcome", "guessed", "true_class", "overlay", "earned", "draft", "draft_revision", "points", "streak",
    "best_streak", "answered", "total", "loading", "leaderboard", "recent", "can_undo", "message", "message_kind",
    "message_revision", "max_labels", "max_label_chars", "max_name_chars"];
  const stop = watch(model, traits, draw);
  // Alone on the page (Voila), the game takes the keyboard at once; in a notebook, click it first.
  // The view is attached to the page after render() returns: wait for that before focusing.
  let tries = 0;
  function autofocus() {
    if (!root.isConnected || root.offsetParent === null) {
      if (tries++ < 100) setTimeout(autofocus, 50);
      return;
    }
    if (!document.activeElement || document.activeElement === document.body) {
      if (model.get("phase") === "name") nameInput.focus({ preventScroll: true });
      else root.focus({ preventScroll: true });
    }
  }
  autofocus();
  model.send({ type: "ready" });

  return () => {
    stop();
    Object.values(urls).forEach(revokeAll);
  };
}

export default { render };
