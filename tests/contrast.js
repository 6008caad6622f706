// Every piece of visible text in the app whose contrast with what is behind it is under the WCAG
// AA minimum: 4.5:1 for body text, 3:1 for large text (24 px, or 18.66 px bold). Colours are the
// browser's computed ones; backgrounds are composited from the root down, with opacity.
() => {
  function parse(value) {
    let m = value.match(/^rgba?\(([^)]+)\)$/);
    if (m) {
      const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    }
    m = value.match(/^color\(srgb ([^)]+)\)$/);
    if (m) {
      const p = m[1].split(/[\s\/]+/).filter(Boolean).map(Number);
      return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1];
    }
    return null;
  }
  function over(top, bottom) {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  }
  function luminance(c) {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }
  function ratio(a, b) {
    const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  }
  function background(el) {
    const chain = [];
    for (let e = el; e; e = e.parentElement) { chain.push(e); }
    let color = [255, 255, 255, 1];
    let unknown = false;
    for (const e of chain.reverse()) {
      const cs = getComputedStyle(e);
      const c = parse(cs.backgroundColor);
      if (c && c[3] > 0) { color = over(c, color); }
      if (cs.backgroundImage && cs.backgroundImage !== "none") { unknown = true; }
    }
    return [color, unknown];
  }
  function opacity(el) {
    let o = 1;
    for (let e = el; e; e = e.parentElement) { o *= parseFloat(getComputedStyle(e).opacity); }
    return o;
  }
  function shown(el) {
    if (!el.getClientRects().length) { return false; }
    const cs = getComputedStyle(el);
    if (cs.visibility !== "visible") { return false; }
    if (el.closest(".pq-sr, .pq-mu, [hidden], [aria-hidden='true']")) { return false; }
    for (let e = el; e; e = e.parentElement) {
      const s = getComputedStyle(e);
      if (s.clip === "rect(0px, 0px, 0px, 0px)" || s.clipPath === "inset(50%)") { return false; }
    }
    return opacity(el) > 0.05;
  }
  function describe(el) {
    return el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
      + (el.className && typeof el.className === "string"
         ? "." + el.className.trim().split(/\s+/).slice(0, 3).join(".") : "");
  }
  function check(el, text, colour) {
    const cs = getComputedStyle(el);
    const [bg, unknown] = background(el);
    let fg = parse(colour);
    if (!fg) { return {el: describe(el), text, problem: "colour " + colour}; }
    fg = [fg[0], fg[1], fg[2], fg[3] * opacity(el)];
    const size = parseFloat(cs.fontSize);
    const bold = parseInt(cs.fontWeight, 10) >= 700;
    const large = size >= 24 || (size >= 18.66 && bold);
    const need = large ? 3 : 4.5;
    const r = ratio(over(fg, bg), bg);
    if (unknown || r < need) {
      return {el: describe(el), text: text.slice(0, 60), ratio: Math.round(r * 100) / 100, need,
              fg: colour, bg: "rgb(" + bg.slice(0, 3).map(Math.round).join(",") + ")",
              gradient: unknown};
    }
    return null;
  }
  const found = [];
  let checked = 0;
  const root = document.querySelector("gradio-app") || document.body;
  for (const el of root.querySelectorAll("*")) {
    if (el.disabled) { continue; }
    const own = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent)
      .join("").trim();
    if (own && shown(el)) {
      checked += 1;
      const bad = check(el, own, getComputedStyle(el).color);
      if (bad) { found.push(bad); }
    }
    if ((el.tagName === "TEXTAREA" || el.tagName === "INPUT") && el.placeholder && !el.value
        && shown(el)) {
      checked += 1;
      const bad = check(el, "placeholder: " + el.placeholder,
                        getComputedStyle(el, "::placeholder").color);
      if (bad) { found.push(bad); }
    }
  }
  return {checked, found};
}
