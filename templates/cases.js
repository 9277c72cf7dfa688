/* medgate case explorer: filters, sort and virtualised rows over the JSON in #cx-data.
   No network, no dependencies; case text is only ever set with textContent.
   Row layout: [id, label, score, answer, status, outcome, [attributes], raw, error, thumb]. */
(function () {
  "use strict";
  var root = document.getElementById("cx");
  var src = document.getElementById("cx-data");
  if (!root || !src) return;
  var data = JSON.parse(src.textContent);
  var attrs = data.attributes, rows = data.rows, outcomes = data.outcomes;
  var thumbPx = parseInt(root.getAttribute("data-thumb") || "0", 10);
  var hasThumbs = thumbPx > 0 && rows.some(function (r) { return r[9]; });
  var rowH = hasThumbs ? Math.max(26, thumbPx + 6) : 26, overscan = 8;
  var state = { out: {}, level: {}, sort: "manifest", q: "" };
  outcomes.forEach(function (o) { state.out[o] = true; });
  var shown = [];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function fmt(s) { return s === null || s === undefined ? "n/a" : s.toFixed(3); }

  // Controls.
  var controls = el("div", "cx-controls");
  var outBox = el("fieldset", "cx-out");
  outBox.appendChild(el("legend", null, "Outcome"));
  var counts = {};
  rows.forEach(function (r) { counts[r[5]] = (counts[r[5]] || 0) + 1; });
  outcomes.forEach(function (o) {
    var lab = el("label");
    var cb = el("input");
    cb.type = "checkbox"; cb.checked = true; cb.value = o;
    cb.setAttribute("data-outcome", o);
    cb.addEventListener("change", function () { state.out[o] = cb.checked; apply(); });
    lab.appendChild(cb);
    lab.appendChild(document.createTextNode(" " + o + " (" + (counts[o] || 0) + ")"));
    outBox.appendChild(lab);
  });
  controls.appendChild(outBox);
  var selects = [];
  attrs.forEach(function (a, k) {
    var levels = {};
    rows.forEach(function (r) { levels[r[6][k]] = true; });
    var lab = el("label", "cx-sel", a + " ");
    var s = el("select");
    s.setAttribute("data-attr", a);
    s.appendChild(el("option", null, "all")).value = "";
    Object.keys(levels).sort().forEach(function (v) { s.appendChild(el("option", null, v)).value = v; });
    s.addEventListener("change", function () { state.level[k] = s.value; apply(); });
    lab.appendChild(s);
    controls.appendChild(lab);
    selects.push(s);
  });
  var sortLab = el("label", "cx-sel", "sort ");
  var sortSel = el("select");
  sortSel.id = "cx-sort";
  [["manifest", "manifest order"], ["score-desc", "score, high first"], ["score-asc", "score, low first"]]
    .forEach(function (o) { sortSel.appendChild(el("option", null, o[1])).value = o[0]; });
  sortSel.addEventListener("change", function () { state.sort = sortSel.value; apply(); });
  sortLab.appendChild(sortSel);
  controls.appendChild(sortLab);
  var qLab = el("label", "cx-sel", "case ID ");
  var q = el("input");
  q.type = "search"; q.id = "cx-q";
  q.addEventListener("input", function () { state.q = q.value; apply(); });
  qLab.appendChild(q);
  controls.appendChild(qLab);
  var count = el("p", "cx-count");
  count.id = "cx-count";
  root.appendChild(controls);
  root.appendChild(count);

  // Header, viewport, detail.
  var cols = (hasThumbs ? [thumbPx + 6 + "px"] : []).concat(["minmax(5rem,8rem)", "2.5rem", "3.2rem", "4.5rem", "5.5rem"],
    attrs.map(function () { return "minmax(2.5rem,1fr)"; }), ["minmax(5rem,2fr)"]);
  var grid = cols.join(" ");
  var head = el("div", "cx-row cx-head");
  head.style.gridTemplateColumns = grid;
  (hasThumbs ? ["image"] : []).concat(["Case", "Label", "Score", "Answer", "Outcome"], attrs, ["Raw answer"])
    .forEach(function (h) { head.appendChild(el("span", null, h)); });
  var view = el("div", "cx-view");
  view.id = "cx-view";
  var spacer = el("div", "cx-spacer");
  view.appendChild(head); // sticky: scrolls with the rows' width, stays on top
  view.appendChild(spacer);
  var detail = el("div", "cx-detail");
  detail.id = "cx-detail";
  root.appendChild(view);
  root.appendChild(detail);

  function apply() {
    var want = state.level, qq = state.q.toLowerCase();
    shown = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (!state.out[r[5]]) continue;
      var ok = true;
      for (var k = 0; k < attrs.length; k++) {
        if (want[k] && r[6][k] !== want[k]) { ok = false; break; }
      }
      if (ok && qq && r[0].toLowerCase().indexOf(qq) < 0) ok = false;
      if (ok) shown.push(i);
    }
    if (state.sort !== "manifest") {
      var sign = state.sort === "score-asc" ? 1 : -1;
      shown.sort(function (a, b) {
        var x = rows[a][2], y = rows[b][2];
        if (x === null) return y === null ? a - b : 1;
        if (y === null) return -1;
        return x === y ? a - b : sign * (x - y);
      });
    }
    count.textContent = shown.length + " of " + rows.length + " cases shown";
    spacer.style.height = shown.length * rowH + "px";
    view.scrollTop = 0;
    draw();
  }

  function draw() {
    var first = Math.max(0, Math.floor(view.scrollTop / rowH) - overscan);
    var last = Math.min(shown.length, first + Math.ceil((view.clientHeight || 480) / rowH) + 2 * overscan);
    while (spacer.firstChild) spacer.removeChild(spacer.firstChild);
    for (var j = first; j < last; j++) spacer.appendChild(rowEl(shown[j], j));
  }

  function rowEl(i, j) {
    var r = rows[i];
    var d = el("div", "cx-row o-" + r[5].replace(" ", "-"));
    d.style.gridTemplateColumns = grid;
    d.style.top = j * rowH + "px";
    d.style.height = rowH + "px";
    d.setAttribute("data-case", r[0]);
    if (hasThumbs) {
      var c = el("span");
      if (r[9]) { var im = el("img"); im.src = r[9]; im.alt = ""; c.appendChild(im); }
      d.appendChild(c);
    }
    [r[0], r[1] ? "1" : "0", fmt(r[2]), r[3], r[5]].concat(r[6], [r[7] || r[8]])
      .forEach(function (v) { d.appendChild(el("span", null, v)); });
    d.addEventListener("click", function () { show(i); });
    return d;
  }

  function show(i) {
    var r = rows[i];
    while (detail.firstChild) detail.removeChild(detail.firstChild);
    detail.appendChild(el("h4", null, "Case " + r[0]));
    if (r[9]) { var im = el("img", "cx-big"); im.src = r[9]; im.alt = "case " + r[0]; detail.appendChild(im); }
    var dl = el("dl");
    [["Label", r[1] ? "positive (1)" : "negative (0)"], ["Score", fmt(r[2])], ["Answer", r[3] || "none"],
     ["Status", r[4]], ["Outcome", r[5]]]
      .concat(attrs.map(function (a, k) { return [a, r[6][k]]; }))
      .concat(r[8] ? [["Reason not evaluated", r[8]]] : [])
      .forEach(function (p) { dl.appendChild(el("dt", null, p[0])); dl.appendChild(el("dd", null, p[1])); });
    detail.appendChild(dl);
    detail.appendChild(el("p", "muted", "Raw model answer:"));
    detail.appendChild(el("pre", null, r[7] || "(none)"));
  }

  // Filter to one subgroup level: only that attribute constrained, every outcome shown.
  function pick(a, v) {
    var k = attrs.indexOf(a);
    if (k < 0) return false;
    selects.forEach(function (s, m) { s.value = m === k ? v : ""; state.level[m] = s.value; });
    root.scrollIntoView();
    apply();
    return true;
  }
  document.querySelectorAll("[data-sg-attr]").forEach(function (tr) {
    tr.classList.add("cx-link");
    tr.title = "show these cases in the case explorer";
    tr.addEventListener("click", function () { pick(tr.getAttribute("data-sg-attr"), tr.getAttribute("data-sg-level")); });
  });
  // Forest plot labels read `attribute=level (n=N)`.
  document.querySelectorAll("#fig-forest svg text").forEach(function (t) {
    var s = t.textContent, m = / \(n=\d+\)( small)?$/.exec(s);
    if (!m) return;
    s = s.slice(0, m.index);
    attrs.forEach(function (a) {
      if (s.indexOf(a + "=") === 0) {
        var v = s.slice(a.length + 1);
        t.style.cursor = "pointer";
        t.addEventListener("click", function () { pick(a, v); });
      }
    });
  });

  view.addEventListener("scroll", draw);
  apply();
})();
