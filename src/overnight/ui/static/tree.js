// The research tree: every experiment a node under the one it branched from (debug, refine, combine, draft),
// the kept chain along the top; x is the order of experiments, y how far a node is off the kept chain.
"use strict";

const OP_LETTER = { improve: "", debug: "D", refine: "R", combine: "C", draft: "F" };
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// parent of each node: its parent_id; rows from before operators were recorded hang under the last keep before them
function treeOf(exps) {
  const byId = new Map(exps.map((e) => [e.id, e]));
  const parent = new Map();
  let lastKeep = null;
  for (const e of exps) {
    const p = e.baseline ? null : (e.parent_id !== null && e.parent_id !== undefined && byId.has(e.parent_id) ? e.parent_id : lastKeep);
    parent.set(e.id, p === e.id ? null : p);
    if (e.status === "keep") lastKeep = e.id;
  }
  const lane = new Map();  // 0 on the kept chain (every keep is on it: re-parented on the head), else one below its node
  for (const e of exps) {
    const p = parent.get(e.id);
    lane.set(e.id, e.status === "keep" || p === null ? 0 : (lane.get(p) ?? 0) + 1);
  }
  return { parent, lane };
}

function renderTree(box, exps) {
  if (!exps.length) { box.replaceChildren(h("p", { class: "empty" }, "no experiments yet")); return; }
  const { parent, lane } = treeOf(exps);
  const dx = 16, dy = 26, pad = 14, index = new Map(exps.map((e, i) => [e.id, i]));
  const x = (id) => pad + index.get(id) * dx, y = (id) => pad + lane.get(id) * dy;
  const lanes = Math.max(...lane.values()) + 1;
  const width = pad * 2 + (exps.length - 1) * dx, height = pad * 2 + (lanes - 1) * dy;
  const edges = svg("g", { class: "edges" }), nodes = svg("g", { class: "nodes" });
  for (const e of exps) {
    const p = parent.get(e.id);
    if (p !== null) edges.append(svg("path", { d: `M${x(p)},${y(p)} C${x(p)},${y(e.id)} ${x(p)},${y(e.id)} ${x(e.id)},${y(e.id)}`,
      stroke: "#b8bfcc", fill: "none", "data-edge": `${p}-${e.id}` }));
    const op = e.operator || (e.baseline ? "baseline" : "improve");
    const a = svg("a", { href: `experiments/${e.id}`, "data-node": e.id, "data-operator": op, "data-parent": p ?? "" },
      svg("title", {}, `#${e.id} ${op} · ${e.status}${p !== null ? ` · from #${p}` : ""}\n${e.description || ""}`),
      svg("circle", { cx: x(e.id), cy: y(e.id), r: e.status === "keep" ? 6 : 4.5, fill: statusColor(e.status) }));
    if (OP_LETTER[op]) a.append(svg("text", { x: x(e.id), y: y(e.id) - 8, "text-anchor": "middle", "font-size": 9, fill: "#6b7385" }, OP_LETTER[op]));
    nodes.append(a);
  }
  const counts = {};
  for (const e of exps) if (!e.baseline) counts[e.operator || "improve"] = (counts[e.operator || "improve"] || 0) + 1;
  box.replaceChildren(
    h("p", { class: "dim" }, Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(" · "),
      " — letters: D debug, R refine, C combine, F fresh draft; the top row is the kept chain"),
    h("div", { class: "tree", style: { overflowX: "auto" } }, svg("svg", { width, height, id: "tree-svg" }, edges, nodes)));
  box.querySelector(".tree").scrollLeft = width;  // the newest experiments first
}
