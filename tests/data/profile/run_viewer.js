// Runs obskit's flame-graph page under node with a minimal DOM, for tests.
// usage: node run_viewer.js PAGE.html '[{"op":"search","value":"hot"}, ...]'
// Prints JSON: the page's static text and, after each action, what the canvas drew.
// The stub DOM throws on any use of innerHTML/outerHTML/insertAdjacentHTML/document.write.
"use strict";
const fs = require("fs");
const vm = require("vm");

const page = fs.readFileSync(process.argv[2], "utf8");
const actions = JSON.parse(process.argv[3] || "[]");
const dataMatch = page.match(/<script type="application\/json" id="obskit-data">([\s\S]*?)<\/script>/);
const scripts = [...page.matchAll(/<script>([\s\S]*?)<\/script>/g)];
if (!dataMatch || scripts.length !== 1) throw new Error("page must have one data script and one code script");

let drawn = { texts: [], rects: [] };
const ctx = {
  fillStyle: "", globalAlpha: 1, font: "", textBaseline: "",
  setTransform() {}, clearRect() { drawn = { texts: [], rects: [] }; },
  fillRect(x, y, w, h) { drawn.rects.push([x, y, w, h, this.fillStyle]); },
  fillText(t, x, y) { drawn.texts.push([t, x, y]); },
  measureText() { return { width: 7 }; },
};

class Elem {
  constructor(tag, id) {
    this.tagName = tag; this.id = id || ""; this.children = []; this._text = ""; this.style = {};
    this.hidden = false; this.className = ""; this.value = ""; this.checked = false; this.listeners = {};
    this.clientWidth = 1228; this.offsetWidth = 300; this.offsetHeight = 100; this.parentNode = null;
  }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  set textContent(v) { this._text = String(v); this.children = []; }
  get innerHTML() { throw new Error("innerHTML read"); }
  set innerHTML(v) { throw new Error("innerHTML written"); }
  set outerHTML(v) { throw new Error("outerHTML written"); }
  insertAdjacentHTML() { throw new Error("insertAdjacentHTML used"); }
  setAttribute() { throw new Error("setAttribute used"); }
  appendChild(c) { this.children.push(c); c.parentNode = this; return c; }
  addEventListener(t, f) { (this.listeners[t] = this.listeners[t] || []).push(f); }
  dispatch(t, ev) { (this.listeners[t] || []).forEach((f) => f(ev || {})); }
  getContext() { return ctx; }
  getBoundingClientRect() { return { left: 0, top: 0 }; }
  focus() { document.activeElement = this; }
}
class Option extends Elem {
  constructor(text, value) { super("option"); this._text = String(text); this.value = value; }
}
const byId = {};
const document = {
  activeElement: null,
  listeners: {},
  getElementById(id) { return byId[id] || (byId[id] = new Elem("div", id)); },
  createElement(tag) { return new Elem(tag); },
  createTextNode(t) { const e = new Elem("#text"); e._text = String(t); return e; },
  addEventListener(t, f) { (this.listeners[t] = this.listeners[t] || []).push(f); },
  write() { throw new Error("document.write used"); },
};
const data = document.getElementById("obskit-data");
data._text = dataMatch[1];
document.getElementById("flame").parentNode = document.getElementById("chart");
document.getElementById("tooltip").hidden = true;  // hidden in the page markup
document.getElementById("changes").hidden = true;
const window = { devicePixelRatio: 1, innerWidth: 1400, innerHeight: 900, addEventListener() {} };

vm.runInNewContext(scripts[0][1], { document, window, Option, console });

const $ = (id) => document.getElementById(id);
function snapshot(label) {
  return {
    action: label,
    texts: drawn.texts.map((t) => t[0]),
    rects: drawn.rects.length,
    colours: drawn.texts.map((t) => {
      const r = drawn.rects.find((r) => r[0] + 3 === t[1] && r[1] + 9 === t[2]);
      return r ? r[4] : null;
    }),
    matched: $("matched").textContent,
    status: $("status").textContent,
    tooltip: $("tooltip").hidden ? null : $("tooltip").children.map((c) => c.textContent),
    top: topRows().map((r) => r.children.map((c) => c.textContent)),
  };
}
function topRows() {
  const table = $("top").children.find((c) => c.tagName === "table");
  return table ? table.children.slice(1) : [];
}
function find(text) {
  const t = drawn.texts.find((t) => t[0] === text || t[0].startsWith(text));
  if (!t) throw new Error("no frame drawn with text " + JSON.stringify(text));
  return { clientX: t[1] + 1, clientY: t[2] };
}
const out = {
  title: $("title").textContent,
  meta: $("meta").children.map((c) => c.textContent),
  warnings: $("warnings").children.map((c) => c.textContent),
  legend: $("legend").textContent,
  processes: $("process").children.map((c) => [c.value, c.textContent]),
  threads: $("thread").children.map((c) => [c.value, c.textContent]),
  hidden: Object.fromEntries(["process-box", "thread-box", "split-box", "colour-box", "changes"].map((k) => [k, $(k).hidden])),
  changes: $("changes").children.map((c) => c.textContent),
  steps: [snapshot("load")],
};
for (const a of actions) {
  if (a.op === "search") { $("search").value = a.value; $("search").dispatch("input"); }
  else if (a.op === "process") { $("process").value = a.value; $("process").dispatch("change"); }
  else if (a.op === "thread") { $("thread").value = a.value; $("thread").dispatch("change"); }
  else if (a.op === "split") { $("split").checked = a.checked; $("split").dispatch("change"); }
  else if (a.op === "colour") { $("colour").value = a.value; $("colour").dispatch("change"); }
  else if (a.op === "hover") { $("flame").dispatch("mousemove", find(a.text)); }
  else if (a.op === "click") { $("flame").dispatch("click", find(a.text)); }
  else if (a.op === "reset") { $("reset").dispatch("click"); }
  else if (a.op === "toprow") { topRows()[a.value].dispatch("click"); }
  else throw new Error("unknown op " + a.op);
  out.steps.push(snapshot(a.op + " " + (a.value !== undefined ? a.value : a.text || a.checked || "")));
}
process.stdout.write(JSON.stringify(out));
