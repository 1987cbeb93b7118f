// The track page: headline numbers, the progress chart, kept improvements, what is running, the idea queue.
"use strict";

function stat(label, value, sub, cls) {
  return h("div", { class: "stat " + (cls || "") }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), h("div", { class: "sub", title: typeof sub === "string" ? sub : null }, sub || "\u00a0"));
}

// the same estimate and words as `overnight status`; other platforms' estimates in the tooltip
function noiseSub(n) {
  const others = n.platforms.filter((p) => p.name !== n.platform).map((p) => `±${fmt.metric(p.sd)} on ${p.name}`);
  return h("span", { title: others.length ? others.join("\n") : n.source }, `sd of ${n.source}` + (others.length ? ` (+${others.length} platform(s))` : ""));
}

function expLink(id, text) { return h("a", { href: `experiments/${id}` }, text || `#${id}`); }

function renderStats(box) {
  const s = INFO.summary, head = s.head, base = s.baseline;
  let rel = null;
  if (head && base && head.metric !== null && base.metric !== null && base.id !== head.id) {
    const d = head.metric - base.metric;
    const pct = base.metric !== 0 ? ` (${(100 * d / Math.abs(base.metric)).toFixed(1)}%)` : "";
    rel = h("span", { class: isBetter(d) ? "better" : "worse" }, `${fmt.delta(d)}${pct} from baseline`);
  }
  const kept = s.counts.keep || 0;
  const running = s.running.length;
  box.replaceChildren(
    stat("Current best", head ? fmt.metric(head.metric) : "—",
      head ? h("span", {}, expLink(head.id), " ", rel || "the baseline") : "no kept experiment yet", "best"),
    stat("Baseline", base ? fmt.metric(base.metric) : "—", base ? h("span", {}, expLink(base.id), " · ", fmt.time(base.created_at))
      : s.baseline_attempt ? h("span", {}, expLink(s.baseline_attempt.id), ` ${s.baseline_attempt.status} · none kept yet`) : "not run yet"),
    stat("Noise floor", s.noise ? "±" + fmt.metric(s.noise.sd) : "—", s.noise ? noiseSub(s.noise) : "needs a kept version run ≥ 2 times"),
    stat("Experiments", String(s.total), h("span", { id: "false-keeps", title: "false keeps the judge's decisions allow in expectation; [policy] night_alpha makes keeps reproduce" },
      `${kept} kept · ${s.per_hour ? s.per_hour.toFixed(1) : "—"} per hour` + (s.false_keeps && s.false_keeps.decisions ? ` · ≤ ${s.false_keeps.bound.toFixed(2)} false keeps expected` : ""))),
    stat("Cost so far", fmt.usd(s.cost_usd), s.tokens ? `${fmt.int(s.tokens)} tokens` : "no LLM tokens"),
    stat("Running", String(running), running ? s.running.map((r) => `slot ${r.slot}: #${r.id}`).join(", ")
      : s.last_finished_at ? `idle · last finished ${fmt.ago(s.last_finished_at)}` : "idle"),
  );
}

function renderLegend(box) {
  const counts = INFO.summary.counts;
  const statuses = Object.keys(counts).sort((a, b) => counts[b] - counts[a]);
  box.replaceChildren(
    ...statuses.map((s) => h("span", {}, h("i", { style: { background: statusColor(s) } }), `${s.replace("_", " ")} ${counts[s]}`)),
    h("span", {}, h("i", { class: "line", style: { background: statusColor("keep") } }), "kept frontier"),
    INFO.summary.noise ? h("span", {}, h("i", { class: "line", style: { background: "rgba(44,160,44,.25)", height: "8px" } }), "noise floor") : "");
}

function renderKept(box, exps) {
  const kept = exps.filter((e) => e.status === "keep" && e.metric !== null);
  const items = [];
  for (let k = kept.length - 1; k >= 0 && items.length < 12; k--) {
    const e = kept[k], prev = kept[k - 1], d = prev ? e.metric - prev.metric : null;
    items.push(h("li", {}, expLink(e.id), h("span", { class: "num mono" }, fmt.metric(e.metric)),
      h("span", { class: "num mono " + (d === null ? "dim" : "better"), style: { minWidth: "76px" } }, d === null ? "start" : fmt.delta(d)),
      h("span", { class: "grow", title: e.description }, e.description || "(no description)")));
  }
  box.replaceChildren(items.length ? h("ul", { class: "list" }, items) : h("p", { class: "empty" }, "nothing kept yet"));
}

function renderRecent(box, exps, fresh) {
  const rows = exps.slice(-10).reverse().map((e) => {
    const d = deltaOf(e), good = isBetter(d);
    return h("tr", { class: "click" + (fresh.has(e.id) ? " fresh" : ""), "data-id": e.id, onclick: () => { location.href = `experiments/${e.id}`; } },
      h("td", {}, expLink(e.id)), h("td", {}, badge(e.status)), h("td", { class: "r num" }, fmt.metric(e.metric)),
      h("td", { class: "r num " + (good === null ? "" : good ? "better" : "worse") }, fmt.delta(d)),
      h("td", { class: "desc", title: e.description }, e.description), h("td", { class: "dim" }, fmt.ago(e.finished_at || e.created_at)));
  });
  box.replaceChildren(h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "status"),
    h("th", { class: "r" }, INFO.metric), h("th", { class: "r" }, "Δ vs head"), h("th", {}, "description"), h("th", {}, "when"))),
  h("tbody", {}, rows)));
}

function renderRunning(box) {
  const run = INFO.summary.running;
  box.replaceChildren(run.length ? h("ul", { class: "list" }, run.map((r) => h("li", {},
    r.status === "running" ? h("i", { class: "pulse" }) : badge(r.status), h("span", { class: "dim" }, `slot ${r.slot}`), expLink(r.id),
    h("span", { class: "grow", title: r.description }, r.description || r.proposer),
    h("span", { class: "dim" }, fmt.ago(r.created_at).replace(" ago", ""))))) : h("p", { class: "empty" }, "nothing running"));
}

async function renderIdeas(box) {
  const ideas = await api("api/ideas");
  box.replaceChildren(ideas.length ? h("ul", { class: "list", id: "idea-list" }, ideas.map((i) => h("li", { "data-idea": i.id },
    h("span", { class: "dim" }, `#${i.id}`), h("span", { class: "grow", title: i.text }, i.text),
    i.status === "claimed" ? h("span", { class: "dim" }, `claimed by ${i.claimed_by || "?"}`) : h("span", { class: "dim" }, i.source),
    h("button", { class: "ghost", title: "drop this idea", onclick: async () => {
      await api(`api/ideas/${i.id}/drop`, { method: "POST" });
      renderIdeas(box);
    } }, "drop")))) : h("p", { class: "empty" }, "no ideas queued: the proposer picks its own"));
}

async function renderTournaments(box) {
  const ts = await api("api/tournaments");
  box.style.display = ts.length ? "" : "none";
  box.replaceChildren(h("h2", {}, "Tournaments"), ...ts.map((t) => h("div", { class: "tournament", "data-tournament": t.name },
    h("p", {}, h("b", {}, t.name), " · ", t.tags.map((tag, i) => h("a", { href: "?tag=" + encodeURIComponent(tag), style: { marginRight: "8px" } }, t.contestants[i])),
      h("span", { class: "dim" }, t.finished ? (t.winner ? ` · winner ${t.winner}` : " · no winner beyond noise") : ` · ${t.turns} turns, running`)),
    t.lines.length ? h("pre", { class: "log" }, t.lines.join("\n")) : "")));
}

async function main() {
  const store = new Store(true);
  const stats = h("div", { class: "stats", id: "stats" });
  const legend = h("div", { class: "legend" });
  const chartBox = h("div", { class: "chart", id: "chart" });
  const tree = h("div", { id: "tree" });
  const kept = h("div", {}), recent = h("div", {}), running = h("div", {}), ideas = h("div", {});
  const tournaments = h("div", { class: "card", id: "tournaments", style: { display: "none" } });
  const input = h("input", { type: "text", name: "text", placeholder: "an idea to try next, in a sentence", required: true, maxlength: 4000 });
  const form = h("form", { class: "inline", id: "idea-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    await api("api/ideas", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ text }) });
    input.value = "";
    renderIdeas(ideas);
  } }, input, h("button", { type: "submit" }, "Add idea"));
  const title = h("div", { class: "chart-head" });
  document.getElementById("main").replaceChildren(
    stats,
    h("div", { class: "card" }, title, chartBox),
    h("div", { class: "card" }, h("h2", {}, "Research tree"), tree),
    tournaments,
    h("div", { class: "grid2" },
      h("div", {}, h("div", { class: "card" }, h("h2", {}, "Latest experiments"), recent),
        h("div", { class: "card" }, h("h2", {}, "Kept improvements"), kept)),
      h("div", {}, h("div", { class: "card" }, h("h2", {}, "Running now"), running),
        h("div", { class: "card" }, h("h2", {}, "Idea queue"), form, ideas))));
  const chart = new ProgressChart(chartBox, (e) => { location.href = `experiments/${e.id}`; });
  window.__chart = chart;  // for tests and the console
  store.on((fresh) => {
    const tags = INFO.tags.length > 1 ? h("select", { onchange: (ev) => { location.search = "?tag=" + encodeURIComponent(ev.target.value); } },
      INFO.tags.map((t) => h("option", { value: t, selected: t === INFO.summary.tag }, t))) : h("span", { class: "dim" }, INFO.summary.tag || "");
    title.replaceChildren(h("h2", {}, "Progress"), tags, legend);
    renderStats(stats);
    renderLegend(legend);
    chart.setData(store.exps, fresh.size < store.exps.length ? fresh : null);
    renderTree(tree, store.exps);
    renderKept(kept, store.exps);
    renderRecent(recent, store.exps, fresh.size < store.exps.length ? fresh : new Set());
    renderRunning(running);
    renderIdeas(ideas);
    renderTournaments(tournaments);
  });
  await store.start();
}

main().catch(showError);
