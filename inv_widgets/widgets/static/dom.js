// DOM helpers shared by every inv-widgets front end (prepended to each widget's module by
// widgets/_common.py: esm()). Text from people is only ever set with textContent, never parsed as HTML.

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
