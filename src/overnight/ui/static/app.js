// overnight dashboard: shared helpers and the live store (polls /api/version, fetches only changed rows).
"use strict";

const BOOT = JSON.parse(document.getElementById("boot").textContent);

// Build DOM nodes; text always goes in as text nodes, never as HTML (descriptions come from agents).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

async function api(path, opts) {
  // the page's first GETs were started by an inline script in <head>, before this file loaded
  const pre = !opts && window.__pre && window.__pre[path];
  if (pre) delete window.__pre[path];
  const res = await (pre || fetch(path, opts));
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.json();
}

const fmt = {
  metric(v) {
    if (v === null || v === undefined) return "—";
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? Number(v.toPrecision(4)).toExponential() : Number(v.toPrecision(6)).toString();
  },
  // three significant digits: a delta is read against the noise floor, not to the last bit
  delta(v) { return v === null || v === undefined ? "—" : (v > 0 ? "+" : v < 0 ? "−" : "±") + fmt.metric(Number(Math.abs(v).toPrecision(3))); },
  p(v) { return v === null || v === undefined ? "—" : v < 1e-4 ? v.toExponential(1) : v.toFixed(4); },
  usd(v) { return "$" + (v >= 100 ? v.toFixed(0) : v.toFixed(2)); },
  ago(t) {
    if (!t) return "—";
    const s = Date.now() / 1000 - t;
    if (s < 60) return `${Math.max(0, Math.round(s))} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
    return `${(s / 86400).toFixed(1)} d ago`;
  },
  dur(s) {
    if (s === null || s === undefined) return "—";
    s = Math.max(0, s);  // clocks of different writers may disagree by a little
    if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 5400) return `${(s / 60).toFixed(1)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  },
  int(n) { return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ","); },
  // by hand: the first toLocaleString with options loads locale data for tens of ms
  time(t) {
    if (!t) return "—";
    const d = new Date(t * 1000), p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  },
};

let INFO = null;  // the last /api/track answer: colours, metric, direction, summary
function statusColor(s) { return (INFO && INFO.colors[s]) || (INFO && INFO.default_color) || "#1f77b4"; }
function badge(s) { return h("span", { class: "badge", style: { background: statusColor(s) } }, s.replace("_", " ")); }
// Δ of an experiment against its head: the policy's delta if recorded, else the difference of metrics.
function deltaOf(e) { return e.delta ?? (e.metric !== null && e.head_metric !== null ? e.metric - e.head_metric : null); }
function isBetter(d) { return d === null ? null : INFO.direction === "minimize" ? d < 0 : d > 0; }

function setLive(ok, text) {
  const el = document.getElementById("live");
  el.className = "live " + (ok ? "ok" : "err");
  el.lastElementChild.textContent = text;
}

// The live store: all experiment rows of the tag, refreshed incrementally.
class Store {
  constructor(withRows) {
    this.withRows = withRows;
    this.exps = [];
    this.byId = new Map();
    this.version = null;
    this.since = null;
    this.listeners = [];
    this.tag = new URLSearchParams(location.search).get("tag");
  }
  q(extra) {
    const p = new URLSearchParams(extra || {});
    if (this.tag) p.set("tag", this.tag);
    const s = p.toString();
    return s ? "?" + s : "";
  }
  on(fn) { this.listeners.push(fn); }
  async start() {
    const [info, list] = await Promise.all([
      api("api/track" + this.q()), this.withRows ? api("api/experiments" + this.q()) : null]);
    INFO = info;
    if (list) this.merge(list);
    this.version = info.version;
    this.emit(new Set());
    this.lastOk = Date.now();
    this.tickLive();
    setInterval(() => this.poll(), 1500);
    setInterval(() => this.tickLive(), 1000);
  }
  merge(list) {
    const fresh = new Set();
    // one object shape for every row (a generated constructor): fast to build and to read for 10,000 rows
    if (!this.make || this.cols !== list.columns.join()) {
      this.cols = list.columns.join();
      this.make = new Function("r", "return {" + list.columns.map((c, i) => `${JSON.stringify(c)}: r[${i}]`).join(",") + "};");
    }
    for (const row of list.rows) {
      const e = this.make(row);
      const old = this.byId.get(e.id);
      if (old) {
        if (old.status !== e.status || old.metric !== e.metric) fresh.add(e.id);
        Object.assign(old, e);
      } else {
        this.byId.set(e.id, e);
        this.exps.push(e);
        fresh.add(e.id);
      }
    }
    if (fresh.size) this.exps.sort((a, b) => a.id - b.id);
    this.since = list.now - 5;  // a little overlap: rows written while we were asking are fetched again
    return fresh;
  }
  async poll() {
    if (document.hidden || this.busy) return;
    this.busy = true;
    try {
      const v = await api("api/version" + this.q());
      this.lastOk = Date.now();
      if (v.version !== this.version) {
        const [info, list] = await Promise.all([
          api("api/track" + this.q()),
          this.withRows ? api("api/experiments" + this.q({ updated_after: this.since })) : null]);
        INFO = info;
        const fresh = list ? this.merge(list) : new Set();
        this.version = info.version;
        this.emit(fresh);
      }
    } catch (err) {
      setLive(false, "disconnected");
    } finally {
      this.busy = false;
    }
  }
  tickLive() {
    const age = (Date.now() - this.lastOk) / 1000;
    if (age < 6) setLive(true, "live");
    else setLive(false, `no answer for ${Math.round(age)} s`);
  }
  emit(fresh) { for (const fn of this.listeners) fn(fresh); }
}

function showError(err) {
  const main = document.getElementById("main");
  main.replaceChildren(h("div", { class: "card" }, h("h2", {}, "could not load"), h("pre", { class: "log" }, String(err))));
}
