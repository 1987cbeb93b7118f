// One experiment: verdict, numbers, diff, measurements, runs with their interval, log tails, agent transcript.
"use strict";

function diffView(text) {
  if (!text) return h("p", { class: "empty" }, "no diff recorded (the baseline, or a candidate that changed nothing)");
  const lines = text.replace(/\n$/, "").split("\n");
  return h("div", { class: "diff", id: "diff" }, lines.map((l) => {
    const cls = l.startsWith("diff --git") || l.startsWith("+++ ") || l.startsWith("--- ") || l.startsWith("index ") ? "file"
      : l.startsWith("@@") ? "hunk" : l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : "";
    return h("div", { class: cls }, l);
  }));
}

function kvList(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function numTable(obj) {
  const keys = Object.keys(obj || {}).sort();
  if (!keys.length) return h("p", { class: "empty" }, "none");
  return h("table", {}, h("tbody", {}, keys.map((k) => h("tr", {}, h("td", { class: "dim" }, k),
    h("td", { class: "num mono" }, typeof obj[k] === "number" ? fmt.metric(obj[k]) : JSON.stringify(obj[k]))))));
}

// What the decision used: per measurement the mean over the runs it compared (a keep or discard),
// else the last run's value, with each of those runs beside it.
function measurementTable(e) {
  const d = e.decision, keys = Object.keys(d.means).sort();
  if (!keys.length) return h("p", { class: "empty" }, "none");
  const ids = d.run_ids, mean = d.how === "mean";
  const label = mean ? `mean of ${ids.length} run${ids.length === 1 ? "" : "s"}` : "last run";
  const later = d.later_run_ids.length ? h("p", { class: "dim" }, `${d.later_run_ids.length === 1 ? "run" : "runs"} ${d.later_run_ids.map((i) => "#" + i).join(", ")} came later (the kept head measured afresh): not part of this decision`) : null;
  return [h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", { class: "r" }, label),
    ...(mean && ids.length > 1 ? ids.map((i) => h("th", { class: "r dim" }, `run ${i}`)) : []))),
  h("tbody", {}, keys.map((k) => h("tr", {}, h("td", { class: "dim" }, k),
    h("td", { class: "num mono", "data-key": k }, fmt.metric(d.means[k])),
    ...(mean && ids.length > 1 ? ids.map((i) => h("td", { class: "num mono dim" }, fmt.metric((d.per_run[String(i)] || {})[k] ?? null))) : []))))), later];
}

// The interval of the effect, drawn against zero: a band that does not cross the line is a clear result.
function ciBar(lo, hi) {
  const span = Math.max(Math.abs(lo), Math.abs(hi)) * 1.2 || 1;
  const pos = (v) => `${50 + (50 * v) / span}%`;
  return h("span", { style: { display: "inline-flex", gap: "10px", alignItems: "center" } },
    h("span", { class: "ci", style: { width: "180px" } }, h("span", { class: "zero", style: { left: "50%" } }),
      h("span", { class: "band", style: { left: pos(lo), width: `${(50 * (hi - lo)) / span}%` } })),
    h("span", { class: "num mono" }, `[${fmt.metric(lo)}, ${fmt.metric(hi)}]`));
}

function render(e) {
  const s = e.stats || {};
  const d = s.delta ?? (e.metric !== null && e.head_metric !== null ? e.metric - e.head_metric : null);
  const good = isBetter(d);
  const head = h("div", { class: "card" },
    h("div", { class: "exp-head" }, h("h1", {}, `Experiment #${e.id}`), badge(e.status),
      e.status === "running" ? h("i", { class: "pulse" }) : null,
      h("span", { class: "dim" }, `${e.proposer} · tag ${e.tag}`),
      h("span", { class: "nav" }, e.prev_id ? h("a", { href: `experiments/${e.prev_id}` }, `‹ #${e.prev_id}`) : null,
        h("a", { href: "experiments" }, "all experiments"), e.next_id ? h("a", { href: `experiments/${e.next_id}` }, `#${e.next_id} ›`) : null)),
    h("p", { style: { fontSize: "15px", margin: "8px 0 0" } }, e.description || "(no description)"),
    e.reason ? h("div", { class: "reason" }, e.reason) : null);
  const dur = e.finished_at ? e.finished_at - e.created_at : null;
  const numbers = h("div", { class: "card" }, h("h2", {}, "Result"), kvList([
    [INFO.metric, h("b", { class: "num" }, fmt.metric(e.metric))],
    ["head it was compared to", fmt.metric(e.head_metric)],
    ["Δ vs head", h("span", { class: good === null ? "" : good ? "better" : "worse" }, fmt.delta(d))],
    ["p-value", s.p_value !== undefined ? fmt.p(s.p_value) : null],
    ["interval of Δ", s.ci_low !== undefined && s.ci_high !== undefined ? ciBar(s.ci_low, s.ci_high) : null],
    ["commit", e.commit ? h("code", {}, e.commit.slice(0, 12)) : null],
    ["parent", h("code", {}, (e.parent_commit || "").slice(0, 12))],
    ["operator", e.operator ? h("span", { id: "operator" }, e.operator, e.parent_id ? [" of ", h("a", { href: `experiments/${e.parent_id}` }, `#${e.parent_id}`)] : null,
      e.meta && e.meta.other_id ? [" and ", h("a", { href: `experiments/${e.meta.other_id}` }, `#${e.meta.other_id}`)] : null) : null],
    ["started", fmt.time(e.created_at)], ["took", dur !== null ? fmt.dur(dur) : "still running"],
    ["slot", String(e.slot)], ["idea", e.idea_id ? `#${e.idea_id}` : null],
    ["LLM", e.tokens_in || e.tokens_out ? `${e.tokens_in} in / ${e.tokens_out} out · ${fmt.usd(e.cost_usd)}` : null],
    ["proposing took", e.propose_seconds ? fmt.dur(e.propose_seconds) : null],
    ["platform", e.platform && Object.keys(e.platform).length ? h("span", { class: "mono" },
      [e.platform.gpu || e.platform.cpu, e.platform.key].filter(Boolean).join(" · ") || JSON.stringify(e.platform).slice(0, 120)) : null],
  ]));
  const side = h("div", {},
    h("div", { class: "card", id: "measurements" }, h("h2", {}, "Measurements"), measurementTable(e)),
    Object.keys(s).length ? h("div", { class: "card" }, h("h2", {}, "Decision statistics"), numTable(s)) : null);
  const runs = h("div", { class: "card" }, h("h2", {}, `Runs (${e.runs.length})`), e.runs.length ? [
    h("table", {}, h("thead", {}, h("tr", {}, ["#", "seed", "status", INFO.metric, "wall", "exit", "log"].map((c) => h("th", {}, c)))),
      h("tbody", {}, e.runs.map((r) => h("tr", {}, h("td", {}, String(r.id)), h("td", { class: "num" }, String(r.seed)), h("td", {}, badge(r.status)),
        h("td", { class: "num mono" }, fmt.metric(r.metric)), h("td", { class: "num" }, fmt.dur(r.wall_seconds)),
        h("td", { class: "num" }, r.exit_code ?? "—"), h("td", { class: "dim mono" }, r.log_path || "—"))))),
    e.runs.map((r, k) => r.tail ? h("details", { open: k === e.runs.length - 1 }, h("summary", {}, `log tail of run ${r.id} (seed ${r.seed})`),
      h("pre", { class: "log" }, r.tail)) : null),
  ] : h("p", { class: "empty" }, "no runs yet"));
  const transcript = h("div", { class: "card" }, h("h2", {}, "Agent transcript"), e.transcript
    ? h("details", { open: e.transcript.length < 6000 }, h("summary", {}, `${e.transcript.length.toLocaleString()} characters`),
      h("pre", { class: "log", id: "transcript" }, e.transcript))
    : h("p", { class: "empty" }, "no transcript (not an agent proposer, or nothing recorded)"));
  const meta = Object.keys(e.meta || {}).length ? h("div", { class: "card" }, h("h2", {}, "Proposer details"),
    h("pre", { class: "log" }, JSON.stringify(e.meta, null, 1))) : null;
  document.getElementById("main").replaceChildren(head,
    h("div", { class: "grid2" }, numbers, side),
    h("div", { class: "card", style: { marginTop: "16px" } }, h("h2", {}, "Diff"), diffView(e.diff)),
    ...[runs, transcript, meta].filter(Boolean));
}

async function main() {
  const store = new Store(false);
  let shown = null;
  store.on(async () => {
    const e = await api(`api/experiments/${BOOT.id}`);
    const key = JSON.stringify([e.status, e.finished_at, e.runs.length, e.next_id]);
    if (key !== shown) { shown = key; render(e); }  // re-render only when this experiment moved
    document.title = `#${e.id} ${e.status} · ${BOOT.name} · overnight`;
  });
  await store.start();
}

main().catch(showError);
