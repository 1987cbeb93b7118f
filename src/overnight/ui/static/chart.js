// The progress chart on a canvas: every experiment a dot coloured by status (plot.py's colours),
// the kept frontier a step line, the noise floor a band around it. Canvas, because 10,000 SVG nodes are slow.
"use strict";

const M = { left: 64, right: 18, top: 14, bottom: 52 };
const STRIP = 12;  // height of the strip under the plot where experiments without a metric are ticked

function niceTicks(lo, hi, n) {
  const span = hi - lo || 1;
  const step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function quantile(sorted, q) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[i];
}

class ProgressChart {
  constructor(box, onClick) {
    this.box = box;
    this.onClick = onClick;
    this.base = h("canvas", { "aria-label": "progress chart" });
    this.over = h("canvas", {});
    this.tip = h("div", { class: "tip" });
    box.append(this.base, this.over, this.tip);
    this.exps = [];
    this.fresh = new Map();  // id -> time it arrived, to ring new dots for a few seconds
    this.hover = null;
    this.over.addEventListener("mousemove", (ev) => this.onMove(ev));
    this.over.addEventListener("mouseleave", () => { this.hover = null; this.drawOverlay(); });
    this.over.addEventListener("click", () => { if (this.hover) this.onClick(this.hover); });
    new ResizeObserver(() => this.draw()).observe(box);
  }

  setData(exps, freshIds) {
    this.exps = exps;
    const now = performance.now();
    for (const id of freshIds || []) this.fresh.set(id, now);
    this.draw();
    if (this.fresh.size) setTimeout(() => this.draw(), 4100);
  }

  size(canvas) {
    const dpr = window.devicePixelRatio || 1, w = this.box.clientWidth, hh = this.box.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hh * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(hh * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return [ctx, w, hh];
  }

  // y range: every kept point, and the bulk of the rest (outliers are clamped to the edge, not allowed to squash it)
  domain() {
    const all = [], kept = [];
    for (const e of this.exps) {
      if (e.metric === null) continue;
      all.push(e.metric);
      if (e.status === "keep") kept.push(e.metric);
    }
    if (!all.length) return [0, 1];
    all.sort((a, b) => a - b);
    const robust = all.length > 20 ? [quantile(all, 0.02), quantile(all, 0.98)] : [all[0], all[all.length - 1]];
    const noise = INFO.summary.noise ? INFO.summary.noise.sd : 0;
    let lo = robust[0], hi = robust[1];
    for (const v of kept) { lo = Math.min(lo, v - noise); hi = Math.max(hi, v + noise); }
    if (hi === lo) { const d = Math.abs(hi) * 0.01 || 1; lo -= d; hi += d; }
    const pad = (hi - lo) * 0.06;
    return [lo - pad, hi + pad];
  }

  draw() {
    if (!INFO) return;  // the resize observer fires before the first data arrives
    const [ctx, w, hh] = this.size(this.base);
    ctx.clearRect(0, 0, w, hh);
    const n = this.exps.length;
    const pw = w - M.left - M.right, ph = hh - M.top - M.bottom - STRIP;
    const [lo, hi] = this.domain();
    const X = (i) => M.left + (n > 1 ? (i / (n - 1)) * pw : pw / 2);
    const Y = (v) => M.top + (1 - (v - lo) / (hi - lo)) * ph;
    this.geom = { X, Y, lo, hi, ph, pw };
    // grid and axes
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#6b7385";
    ctx.strokeStyle = "#edf0f4";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of niceTicks(lo, hi, 6)) {
      const y = Math.round(Y(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(M.left, y); ctx.lineTo(M.left + pw, y); ctx.stroke();
      ctx.fillText(fmt.metric(t), M.left - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const stripY = M.top + ph + 3;
    for (const t of niceTicks(0, Math.max(n - 1, 1), 10)) {
      if (t !== Math.floor(t) || t > n - 1) continue;
      ctx.fillText(String(t), X(t), stripY + STRIP + 4);
    }
    const noMetric = this.exps.filter((e) => e.metric === null).length;
    ctx.fillText(this.xLabel ? this.xLabel(n, noMetric) : `experiment (${n} total, ${noMetric} without a metric, ticked below the plot)`,
      M.left + pw / 2, hh - 16);
    ctx.save();
    ctx.translate(14, M.top + ph / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(`${INFO.metric} (${INFO.direction === "minimize" ? "lower" : "higher"} is better)`, 0, -6);
    ctx.restore();
    ctx.strokeStyle = "#c9cfdb";
    ctx.strokeRect(M.left + 0.5, M.top + 0.5, pw, ph);
    if (!n) return;

    // the kept frontier with the noise band
    const kept = [];
    this.exps.forEach((e, i) => { if (e.status === "keep" && e.metric !== null) kept.push([i, e.metric]); });
    const keepColor = statusColor("keep");
    const noise = INFO.summary.noise ? INFO.summary.noise.sd : 0;
    if (kept.length && noise) {
      ctx.fillStyle = "rgba(44, 160, 44, 0.09)";
      kept.forEach(([i, v], k) => {
        const x2 = k + 1 < kept.length ? kept[k + 1][0] : n - 1;
        const y1 = Math.max(M.top, Y(v + noise)), y2 = Math.min(M.top + ph, Y(v - noise));
        ctx.fillRect(X(i), y1, Math.max(1, X(x2) - X(i)), y2 - y1);
      });
    }
    // dots, batched by status; discards first so the rarer outcomes stay visible on top
    const r = n > 3000 ? 2 : n > 500 ? 2.6 : 3.4;
    const pts = (this.pts = []);
    const groups = new Map();
    this.exps.forEach((e, i) => {
      const x = X(i);
      let y, clamped = false;
      if (e.metric === null) y = stripY + STRIP / 2;
      else {
        y = Y(e.metric);
        if (y < M.top) { y = M.top; clamped = true; } else if (y > M.top + ph) { y = M.top + ph; clamped = true; }
      }
      pts.push({ x, y, e });
      const key = e.metric === null ? "tick:" + e.status : (clamped ? "clamp:" : "dot:") + e.status;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push([x, y]);
    });
    const order = [...groups.keys()].sort((a, b) => (a.endsWith(":discard") ? -1 : 0) - (b.endsWith(":discard") ? -1 : 0)
      || (a.endsWith(":keep") ? 1 : 0) - (b.endsWith(":keep") ? 1 : 0));
    for (const key of order) {
      const [kind, status] = key.split(":");
      const list = groups.get(key);
      ctx.fillStyle = ctx.strokeStyle = statusColor(status);
      if (kind === "tick") {
        ctx.globalAlpha = 0.8;
        for (const [x] of list) ctx.fillRect(x - 0.75, stripY, 1.5, STRIP);
        continue;
      }
      if (status === "keep") continue;  // drawn after the frontier
      ctx.globalAlpha = status === "discard" ? 0.55 : 0.85;
      ctx.beginPath();
      for (const [x, y] of list) {
        if (kind === "clamp") { ctx.moveTo(x - r, y); ctx.lineTo(x + r, y); ctx.lineTo(x, y + (y <= M.top ? r * 1.6 : -r * 1.6)); }
        else { ctx.moveTo(x + r, y); ctx.arc(x, y, r, 0, 2 * Math.PI); }
      }
      ctx.fill();
    }
    ctx.globalAlpha = 1;
    if (kept.length) {
      ctx.strokeStyle = keepColor;
      ctx.lineWidth = 2;
      ctx.beginPath();
      kept.forEach(([i, v], k) => { if (k === 0) ctx.moveTo(X(i), Y(v)); else { ctx.lineTo(X(i), Y(kept[k - 1][1])); ctx.lineTo(X(i), Y(v)); } });
      ctx.lineTo(X(n - 1), Y(kept[kept.length - 1][1]));
      ctx.stroke();
      ctx.fillStyle = keepColor;
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = 1.2;
      for (const [i, v] of kept) {
        ctx.beginPath(); ctx.arc(X(i), Math.min(Math.max(Y(v), M.top), M.top + ph), r + 1.4, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
      }
    }
    this.drawOverlay();
    if (window.__chartDrawn === undefined) window.__chartDrawn = performance.now();
    this.box.dataset.drawn = String(n);
  }

  drawOverlay() {
    const [ctx, w, hh] = this.size(this.over);
    ctx.clearRect(0, 0, w, hh);
    const now = performance.now();
    const rings = [];
    for (const [id, t] of this.fresh) { if (now - t > 4000) this.fresh.delete(id); else rings.push(id); }
    if (this.pts && rings.length) {
      const ids = new Set(rings);
      ctx.strokeStyle = "#f2a900";
      ctx.lineWidth = 2.5;
      for (const p of this.pts) if (ids.has(p.e.id)) { ctx.beginPath(); ctx.arc(p.x, p.y, 8, 0, 2 * Math.PI); ctx.stroke(); }
    }
    const p = this.hoverPt;
    if (this.hover && p) {
      ctx.strokeStyle = "#151a2d";
      ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(p.x, p.y, 6, 0, 2 * Math.PI); ctx.stroke();
    }
  }

  onMove(ev) {
    const rect = this.over.getBoundingClientRect();
    const mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
    let best = null, bd = 14 * 14;
    for (const p of this.pts || []) {
      const d = (p.x - mx) ** 2 + (p.y - my) ** 2;
      if (d < bd) { bd = d; best = p; }
    }
    this.hover = best ? best.e : null;
    this.hoverPt = best;
    this.over.style.cursor = best ? "pointer" : "crosshair";
    this.drawOverlay();
    if (!best) { this.tip.style.display = "none"; return; }
    const e = best.e, d = deltaOf(e), good = isBetter(d);
    this.tip.replaceChildren(
      h("div", {}, h("b", {}, `#${e.id} `), badge(e.status), e.baseline ? h("span", { class: "k" }, " baseline") : null),
      h("div", {}, h("span", { class: "k" }, `${INFO.metric} `), h("b", {}, fmt.metric(e.metric)),
        h("span", { class: "k" }, "  Δ vs head "), h("span", { style: { color: good === null ? "" : good ? "#7ee08a" : "#ff8a80" } }, fmt.delta(d)),
        e.p_value !== null ? [h("span", { class: "k" }, "  p "), fmt.p(e.p_value)] : null),
      h("div", { class: "d" }, e.description || "(no description)"),
      h("div", { class: "k" }, `${e.proposer} · ${fmt.ago(e.finished_at || e.created_at)} · click to open`));
    this.tip.style.display = "block";
    const tw = this.tip.offsetWidth, th = this.tip.offsetHeight;
    this.tip.style.left = `${best.x + 14 + tw > rect.width ? best.x - tw - 14 : best.x + 14}px`;
    this.tip.style.top = `${Math.max(0, Math.min(best.y - th / 2, rect.height - th))}px`;
  }
}
