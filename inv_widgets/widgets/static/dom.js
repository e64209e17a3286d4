// DOM helpers shared by every inv-widgets front end (prepended to each widget's module by
// widgets/_common.py: esm()). Text from people is only ever set with textContent, never parsed as HTML.
//
// One re-render rule for every view (explorer.js, explorer_detail.js, gallery.js, game.js):
//   render() builds the elements once, then calls watch(model, traits, draw). draw(changed) reads the
//   traits and updates the elements; it runs once at once (every trait "changed") and then once per batch
//   of trait changes (the changes of one kernel message arrive together and are coalesced in a
//   microtask), with `changed` the set of trait names that changed since the last draw, so a part is
//   rebuilt only when its own traits changed. A part that waits before it swaps in (decoding images) takes
//   a ticket first and gives up when a later draw has taken one since: an older draw never lands over a
//   newer one. The kernel owns the state; the browser sends intents as messages and sets only the traits
//   a person controls (a selection, an opacity).

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// A percentage as the galleries show it: one decimal from 1 %, two below.
function pct(w) {
  if (!isFinite(w)) return "–";
  return (w >= 1 ? w.toFixed(1) : w.toFixed(2)) + "%";
}

// A button that keeps the keyboard focus where it was (a click must not leave it on the button).
function button(cls, text, title) {
  const b = el("button", cls, text);
  b.type = "button";
  if (title) b.title = title;
  b.addEventListener("mousedown", (ev) => ev.preventDefault());
  return b;
}

// Call draw(changed) now and once per batch of changes of `traits`; returns the function that stops it.
function watch(model, traits, draw) {
  let pending = null;
  let live = true;
  const flush = () => {
    const changed = pending;
    pending = null;
    if (live && changed) draw(changed);
  };
  const handlers = traits.map((name) => {
    const onChange = () => {
      if (!live) return;
      if (pending === null) {
        pending = new Set();
        queueMicrotask(flush);
      }
      pending.add(name);
    };
    model.on(`change:${name}`, onChange);
    return [name, onChange];
  });
  draw(new Set(traits));
  return () => {
    live = false;
    for (const [name, onChange] of handlers) model.off(`change:${name}`, onChange);
  };
}

// Tickets for work that waits: `const fresh = take(); await ...; if (!fresh()) return;`. fresh() is true
// until the next ticket is taken (take() once more when the view goes, so nothing late lands).
function tickets() {
  let last = 0;
  return () => {
    const mine = ++last;
    return () => mine === last;
  };
}

// Any of `names` in the set `changed`?
function anyOf(changed, names) {
  return names.some((n) => changed.has(n));
}

// PNG bytes from the kernel (a DataView) as an object URL, kept in `bag` to be revoked together; "" for none.
function pngUrl(dv, bag) {
  if (!dv || !dv.byteLength) return "";
  const u = URL.createObjectURL(new Blob([dv], { type: "image/png" }));
  bag.push(u);
  return u;
}

// Resolves when every image is decoded (or failed to: a broken image must not hold the view back).
function decoded(imgs) {
  return Promise.all(imgs.map((im) => (im.decode ? im.decode().catch(() => {}) : Promise.resolve())));
}

function revokeAll(bag) {
  bag.forEach((u) => URL.revokeObjectURL(u));
  bag.length = 0;
}

// The colour scale beside a map: the kernel's CSS gradient of the colour map (render.css_gradient), 1 at the
// top and 0 at the bottom; set("") hides it. Styled in explorer.css.
function colorbar() {
  const box = el("div", "inv-scale");
  box.title = "map value (min-max scaled): 1 = most salient pixel, 0 = least";
  const ramp = el("div", "inv-scale-ramp");
  const ticks = el("div", "inv-scale-ticks");
  ticks.append(el("span", "", "1 high"), el("span", "", "0 low"));
  box.append(ramp, ticks);
  return {
    el: box,
    set(gradient) {
      ramp.style.background = gradient || "";
      box.style.display = gradient ? "" : "none";
    },
  };
}
