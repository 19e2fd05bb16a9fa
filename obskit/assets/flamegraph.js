/* obskit flame graph viewer. Runs offline; data comes from the JSON script element.
   Text from the profile reaches the page only through textContent, new Option() and
   canvas fillText: never innerHTML. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("obskit-data").textContent);
  var DIFF = D.mode === "diff";
  var STRIDE = DIFF ? 6 : 4;
  var S = D.strings;
  var ROW = 18, MINW = 0.4, PAD = 14;

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function pct(x) { return (x * 100).toFixed(x !== 0 && Math.abs(x) < 0.001 ? 3 : 1) + "%"; }
  function pp(x) { return (x >= 0 ? "+" : "") + (x * 100).toFixed(2) + " pp"; }
  function fmt(n) { return Number(n).toLocaleString("en-US"); }

  function fname(f) { return f < 0 ? "all" : S[D.funcs[3 * f]]; }
  function ffile(f) { return f < 0 ? "" : S[D.funcs[3 * f + 1]]; }
  function fline(f) { return f < 0 ? 0 : D.funcs[3 * f + 2]; }
  function label(n) { return n.label !== undefined ? n.label : fname(n.f); }

  /* --- data: flat pre-order runs [func, depth, total, self(, baseTotal, baseSelf)] --- */
  function parse(flat) {
    var root = null, path = [];
    for (var i = 0; i < flat.length; i += STRIDE) {
      var n = { f: flat[i], t: flat[i + 2], s: flat[i + 3], c: [] };
      if (DIFF) { n.bt = flat[i + 4]; n.bs = flat[i + 5]; }
      var d = flat[i + 1];
      path[d] = n;
      if (d === 0) root = n; else path[d - 1].c.push(n);
    }
    return root || { f: -1, t: 0, s: 0, c: [], bt: 0, bs: 0 };
  }
  var trees = D.roots.map(parse);

  function fresh(f, lbl) {
    var n = { f: f, t: 0, s: 0, c: [], bt: 0, bs: 0, idx: new Map() };
    if (lbl !== undefined) n.label = lbl;
    return n;
  }
  function merge(into, src) {
    into.t += src.t; into.s += src.s;
    if (DIFF) { into.bt += src.bt || 0; into.bs += src.bs || 0; }
    for (var i = 0; i < src.c.length; i++) {
      var ch = src.c[i], m = into.idx.get(ch.f);
      if (!m) { m = fresh(ch.f); into.idx.set(ch.f, m); into.c.push(m); }
      merge(m, ch);
    }
  }
  function child(parent, key, lbl) {
    var m = parent.idx.get(key);
    if (!m) { m = fresh(-1, lbl); parent.idx.set(key, m); parent.c.push(m); }
    return m;
  }
  function finish(n, parent, depth) {
    n.p = parent; n.d = depth; n.idx = null;
    var pruned = n.t - n.s;
    n.c.sort(function (a, b) {  /* by name, with [other] last */
      var oa = a.f === D.other, ob = b.f === D.other;
      if (oa !== ob) return oa ? 1 : -1;
      var x = label(a), y = label(b); return x < y ? -1 : x > y ? 1 : 0;
    });
    for (var i = 0; i < n.c.length; i++) { pruned -= n.c[i].t; finish(n.c[i], n, depth + 1); }
    n.pr = pruned > 0 ? pruned : 0;
  }

  var procSel = $("process"), threadSel = $("thread"), split = $("split");
  var view = null, zoom = null, matcher = null;

  function buildView() {
    var pid = procSel.value === "" ? null : Number(procSel.value);
    var ti = threadSel.value === "" ? null : Number(threadSel.value);
    var root = fresh(-1);
    root.label = "all";
    for (var i = 0; i < trees.length; i++) {
      var th = D.threads[i];
      if (pid !== null && th[0] !== pid) continue;
      if (ti !== null && ti !== i) continue;
      if (split.checked && !DIFF) {
        var proc = procMeta(th[0]);
        var pnode = child(root, "p" + th[0], "process " + th[0] + (proc && proc[1] ? " " + proc[1] : ""));
        var tnode = child(pnode, "t" + i, "thread " + th[2] + " (" + th[1] + ")");
        root.t += trees[i].t;
        pnode.t += trees[i].t;
        tnode.t += trees[i].t; tnode.s += trees[i].s;
        var tmp = fresh(-1); merge(tmp, trees[i]);
        for (var k = 0; k < tmp.c.length; k++) { tnode.c.push(tmp.c[k]); }
      } else {
        merge(root, trees[i]);
      }
    }
    finish(root, null, 0);
    view = root; zoom = root;
    mark();
    draw();
    if (!DIFF) topTable();
  }
  function procMeta(pid) {
    for (var i = 0; i < D.processes.length; i++) if (D.processes[i][0] === pid) return D.processes[i];
    return null;
  }

  /* --- search --- */
  var search = $("search"), matchedOut = $("matched");
  function compile(q) {
    if (!q) return null;
    if (q.length > 2 && q.charAt(0) === "/" && q.charAt(q.length - 1) === "/") {
      try { var re = new RegExp(q.slice(1, -1), "i"); return function (s) { return re.test(s); }; }
      catch (e) { return "invalid"; }
    }
    var low = q.toLowerCase();
    return function (s) { return s.toLowerCase().indexOf(low) >= 0; };
  }
  function mark() {
    var m = matcher, hit = 0;
    (function walk(n, covered) {
      var on = false;
      if (typeof m === "function") {
        on = m(label(n)) || (n.f >= 0 && m(ffile(n.f)));
      }
      n.m = on;
      if (on && !covered) hit += n.t;
      for (var i = 0; i < n.c.length; i++) walk(n.c[i], covered || on);
    })(view, false);
    if (m === "invalid") matchedOut.textContent = "invalid regular expression";
    else if (typeof m === "function") matchedOut.textContent = "matched " + pct(view.t ? hit / view.t : 0) + " (" + fmt(hit) + " samples)";
    else matchedOut.textContent = "";
  }
  search.addEventListener("input", function () { matcher = compile(search.value.trim()); mark(); draw(); });

  /* --- colours --- */
  function hash(s) { var h = 2166136261; for (var i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); } return (h >>> 0) / 4294967295; }
  function kind(n) {
    if (n.f < 0 || n.f === D.other) return "meta";
    var file = ffile(n.f);
    if (!file) return "native";
    if (/[\\\/](site|dist)-packages[\\\/]/.test(file)) return "lib";
    if (file.charAt(0) === "<" || /[\\\/]lib[\\\/](pypy|python)[0-9.]*[\\\/]/.test(file)) return "std";
    return "app";
  }
  var KINDS = { app: [18, 82, 58], lib: [188, 55, 58], std: [45, 80, 60], native: [0, 0, 72], meta: [220, 12, 78] };
  var KIND_NAMES = { app: "application code", lib: "installed packages", std: "standard library", native: "native / unknown" };
  function plainColour(n) {
    var k = KINDS[kind(n)], v = hash(label(n));
    return "hsl(" + (k[0] + v * 14).toFixed(0) + "," + k[1] + "%," + (k[2] + v * 10 - 5).toFixed(0) + "%)";
  }
  var colourBy = $("colour");
  function delta(n) {
    var bt = D.baseTotal || 0;
    if (colourBy.value === "total") return (view.t ? n.t / D.total : 0) - (bt ? n.bt / bt : 0);
    return (D.total ? n.s / D.total : 0) - (bt ? n.bs / bt : 0);
  }
  var maxDelta = 0;
  function computeMaxDelta() {
    maxDelta = 0;
    (function walk(n) { var d = Math.abs(delta(n)); if (d > maxDelta) maxDelta = d; n.c.forEach(walk); })(view);
  }
  function diffColour(n) {
    var d = delta(n);
    if (!maxDelta || d === 0) return "rgb(235,235,235)";
    var a = Math.sqrt(Math.min(1, Math.abs(d) / maxDelta));
    var to = d > 0 ? [220, 40, 40] : [40, 90, 220];
    return "rgb(" + [0, 1, 2].map(function (i) { return Math.round(235 + (to[i] - 235) * a); }).join(",") + ")";
  }
  colourBy.addEventListener("change", function () { computeMaxDelta(); draw(); });

  /* --- drawing --- */
  var canvas = $("flame"), ctx = canvas.getContext("2d"), rows = [];
  function draw() {
    if (DIFF) computeMaxDelta();
    var W = canvas.parentNode.clientWidth - 2 * PAD;
    if (W < 100) W = 100;
    rows = [];
    var boxes = [], maxD = 0;
    for (var a = zoom.p; a; a = a.p) boxes.push([a, 0, W, true]);
    var scale = zoom.t ? W / zoom.t : 0, stack = [[zoom, 0]];
    while (stack.length) {
      var it = stack.pop(), n = it[0], x = it[1], w = n.t * scale;
      boxes.push([n, x, w, false]);
      if (n.d > maxD) maxD = n.d;
      var cx = x;
      for (var i = 0; i < n.c.length; i++) {
        var cw = n.c[i].t * scale;
        if (cw >= MINW) stack.push([n.c[i], cx]);
        cx += cw;
      }
    }
    var dpr = window.devicePixelRatio || 1, H = (maxD + 1) * ROW;
    canvas.style.height = H + "px";
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.font = "12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
    ctx.textBaseline = "middle";
    var charW = ctx.measureText("m").width || 7;
    for (var b = 0; b < boxes.length; b++) {
      var bx = boxes[b], node = bx[0], y = node.d * ROW;
      (rows[node.d] = rows[node.d] || []).push(bx);
      ctx.globalAlpha = bx[3] ? 0.55 : 1;
      ctx.fillStyle = node.m ? "rgb(206,70,240)" : DIFF ? diffColour(node) : plainColour(node);
      ctx.fillRect(bx[1], y, Math.max(bx[2] - 0.5, 0.4), ROW - 1);
      if (bx[2] > 3 * charW) {
        var text = label(node), max = Math.floor((bx[2] - 6) / charW);
        if (text.length > max) text = text.slice(0, Math.max(max - 1, 1)) + "\u2026";
        ctx.fillStyle = "#111";
        ctx.fillText(text, bx[1] + 3, y + ROW / 2);
      }
    }
    ctx.globalAlpha = 1;
    status();
  }
  function at(ev) {
    var r = canvas.getBoundingClientRect(), x = ev.clientX - r.left, d = Math.floor((ev.clientY - r.top) / ROW);
    var row = rows[d] || [];
    for (var i = 0; i < row.length; i++) if (x >= row[i][1] && x < row[i][1] + Math.max(row[i][2], 1)) return row[i][0];
    return null;
  }

  /* --- tooltip --- */
  var tip = $("tooltip");
  function line(text, cls) { tip.appendChild(el("div", text, cls)); }
  function showTip(n, ev) {
    tip.textContent = "";
    line(label(n), "name");
    if (n.f >= 0 && ffile(n.f)) line(ffile(n.f) + (fline(n.f) ? ":" + fline(n.f) : ""));
    var all = D.total || 1;
    line("total  " + fmt(n.t) + " samples  " + pct(n.t / all) + " of all" + (zoom !== view && zoom.t ? ", " + pct(n.t / zoom.t) + " of zoom" : ""));
    line("self   " + fmt(n.s) + " samples  " + pct(n.s / all));
    if (n.f === D.other) line("frames under " + fmt(D.minCount) + " samples each, merged (too many to draw)");
    if (n.pr) line("pruned " + fmt(n.pr) + " samples in frames below the threshold");
    if (DIFF) {
      var bt = D.baseTotal || 1;
      line("total  base " + pct(n.bt / bt) + " \u2192 new " + pct(n.t / all) + "  (" + pp(n.t / all - n.bt / bt) + ")", n.t / all >= n.bt / bt ? "up" : "down");
      line("self   base " + pct(n.bs / bt) + " \u2192 new " + pct(n.s / all) + "  (" + pp(n.s / all - n.bs / bt) + ")", n.s / all >= n.bs / bt ? "up" : "down");
    }
    line("click to zoom");
    tip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14, w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 4) x = Math.max(4, ev.clientX - w - 14);
    if (y + h > window.innerHeight - 4) y = Math.max(4, ev.clientY - h - 14);
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  canvas.addEventListener("mousemove", function (ev) { var n = at(ev); if (n) showTip(n, ev); else tip.hidden = true; });
  canvas.addEventListener("mouseleave", function () { tip.hidden = true; });
  canvas.addEventListener("click", function (ev) { var n = at(ev); if (n) { zoom = n; draw(); } });
  $("reset").addEventListener("click", function () { zoom = view; draw(); });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { zoom = view; draw(); }
    else if (ev.key === "/" && document.activeElement !== search) { ev.preventDefault(); search.focus(); }
  });
  window.addEventListener("resize", function () { draw(); });

  function status() {
    var out = $("status"), parts = [fmt(view.t) + " samples in view"];
    if (D.pruned) parts.push("pruned " + pct(D.pruned / (D.total || 1)) + " of samples (subtrees under " + fmt(D.minCount) + " samples, merged into [other])");
    else parts.push("nothing pruned");
    if (zoom !== view) parts.push("zoomed on " + label(zoom) + " (" + pct(zoom.t / (view.t || 1)) + ")");
    parts.push("click a frame to zoom, Esc to reset, / to search");
    out.textContent = parts.join(" \u00b7 ");
  }

  /* --- top functions of the current view (self and total, recursion counted once) --- */
  function topTable() {
    var self = new Map(), total = new Map(), on = new Map();
    (function walk(n) {
      if (n.f >= 0) {
        self.set(n.f, (self.get(n.f) || 0) + n.s);
        var depth = on.get(n.f) || 0;
        if (!depth) total.set(n.f, (total.get(n.f) || 0) + n.t);
        on.set(n.f, depth + 1);
      }
      for (var i = 0; i < n.c.length; i++) walk(n.c[i]);
      if (n.f >= 0) on.set(n.f, on.get(n.f) - 1);
    })(view);
    var rowsOut = Array.from(total.keys()).sort(function (a, b) {
      return (self.get(b) - self.get(a)) || (total.get(b) - total.get(a));
    }).slice(0, 25);
    var sec = $("top"), all = view.t || 1;
    sec.textContent = "";
    sec.appendChild(el("h2", "Top functions in view (by self samples; click to search)"));
    var table = el("table"), head = el("tr");
    ["self", "total", "function", "file:line"].forEach(function (h) { head.appendChild(el("th", h)); });
    table.appendChild(head);
    rowsOut.forEach(function (f) {
      var tr = el("tr");
      tr.appendChild(el("td", pct(self.get(f) / all)));
      tr.appendChild(el("td", pct(total.get(f) / all)));
      tr.appendChild(el("td", fname(f)));
      tr.appendChild(el("td", ffile(f) + (fline(f) ? ":" + fline(f) : "")));
      tr.addEventListener("click", function () { search.value = fname(f); matcher = compile(fname(f)); mark(); draw(); });
      table.appendChild(tr);
    });
    sec.appendChild(table);
  }

  /* --- header, filters, legend, diff tables --- */
  $("title").textContent = (DIFF ? "Differential flame graph: " : "Flame graph: ") + D.title;
  D.meta.forEach(function (kv) { var s = el("span", kv[0] + ":"); s.appendChild(el("b", kv[1])); $("meta").appendChild(s); });
  var tot = el("span", "Samples shown:"); tot.appendChild(el("b", fmt(D.total) + (D.pruned ? " (" + pct(D.pruned / D.total) + " pruned)" : ""))); $("meta").appendChild(tot);
  D.warnings.forEach(function (w) { $("warnings").appendChild(el("li", w)); });

  function fillThreads() {
    var pid = procSel.value === "" ? null : Number(procSel.value), n = 0;
    threadSel.textContent = "";
    threadSel.appendChild(new Option("all threads", ""));
    D.threads.forEach(function (t, i) {
      if (pid !== null && t[0] !== pid) return;
      n++;
      threadSel.appendChild(new Option((D.processes.length > 1 ? "pid " + t[0] + " \u00b7 " : "") + t[2] + " (" + t[1] + ") \u00b7 " + pct(t[3] / (D.total || 1)), String(i)));
    });
    $("thread-box").hidden = n < 2 && pid === null && D.threads.length < 2;
  }
  procSel.appendChild(new Option("all processes", ""));
  D.processes.forEach(function (p) {
    var text = "pid " + p[0] + (p[2] && p[2] !== "plain" ? " (" + p[2] + ")" : "") + (p[3] ? " exited" : "") + " \u00b7 " + pct(p[4] / (D.total || 1)) + (p[1] ? " \u00b7 " + p[1] : "");
    procSel.appendChild(new Option(text.length > 110 ? text.slice(0, 109) + "\u2026" : text, String(p[0])));
  });
  $("process-box").hidden = D.processes.length < 2;
  fillThreads();
  procSel.addEventListener("change", function () { fillThreads(); buildView(); });
  threadSel.addEventListener("change", buildView);
  split.addEventListener("change", buildView);
  $("split-box").hidden = DIFF || D.threads.length < 2;
  $("colour-box").hidden = !DIFF;

  var legend = $("legend");
  if (DIFF) {
    legend.appendChild(el("span", "shrank"));
    legend.appendChild(el("span", "", "ramp"));
    legend.appendChild(el("span", "grew"));
    legend.appendChild(el("span", "blue: share shrank \u00b7 red: share grew \u00b7 shares normalised by each profile's samples (base " + fmt(D.baseTotal) + ", new " + fmt(D.total) + ") \u00b7 shaped by the new profile"));
  } else {
    Object.keys(KIND_NAMES).forEach(function (k) {
      var s = el("span"), sw = el("span", "", "sw"), c = KINDS[k];
      sw.style.background = "hsl(" + c[0] + "," + c[1] + "%," + c[2] + "%)";
      s.appendChild(sw); s.appendChild(document.createTextNode(KIND_NAMES[k])); legend.appendChild(s);
    });
    var ms = el("span"), msw = el("span", "", "sw"); msw.style.background = "rgb(206,70,240)";
    ms.appendChild(msw); ms.appendChild(document.createTextNode("search match")); legend.appendChild(ms);
  }

  if (DIFF) {
    var sec = $("changes");
    sec.hidden = false;
    [["Grew most (self share)", D.grown], ["Shrank most (self share)", D.shrunk], ["Vanished (in base, not in new)", D.vanished]].forEach(function (g) {
      if (!g[1].length) return;
      sec.appendChild(el("h2", g[0]));
      var table = el("table"), head = el("tr");
      ["function", "base self", "new self", "\u0394 self", "base total", "new total"].forEach(function (h) { head.appendChild(el("th", h)); });
      table.appendChild(head);
      g[1].forEach(function (r) {
        var tr = el("tr"), d = r[4] - r[3];
        tr.appendChild(el("td", r[0] + (r[1] ? " (" + r[1] + (r[2] ? ":" + r[2] : "") + ")" : "")));
        tr.appendChild(el("td", pct(r[3]))); tr.appendChild(el("td", pct(r[4])));
        tr.appendChild(el("td", pp(d), d >= 0 ? "up" : "down"));
        tr.appendChild(el("td", pct(r[5]))); tr.appendChild(el("td", pct(r[6])));
        table.appendChild(tr);
      });
      sec.appendChild(table);
    });
  }

  buildView();
})();
