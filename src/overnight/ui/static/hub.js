// The hub's pages: the index of tracks, a track's leaderboard + chain + verification queue, one chain entry.
"use strict";

const KEEP = "#2ca02c", PENDING = "#1f77b4", VERIFYING = "#ff7f0e";

async function text(path) {
  const pre = window.__pre && window.__pre[path];
  if (pre) delete window.__pre[path];
  const res = await (pre || fetch(path));
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return res.text();
}

// app.js's helpers read INFO for the metric, direction and colours
function setInfo(t) {
  INFO = { metric: t.metric, direction: t.direction, colors: { keep: KEEP, pending: PENDING, verifying: VERIFYING, accepted: KEEP },
    default_color: "#7f7f7f", summary: { noise: null } };
}

function stat(label, value, sub, cls) {
  return h("div", { class: "stat " + (cls || "") }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), h("div", { class: "sub" }, sub || "\u00a0"));
}
function short(c) { return c ? c.slice(0, 10) : "—"; }
function gainText(g) { return g === null || g === undefined ? "—" : (g > 0 ? "+" : g < 0 ? "−" : "±") + fmt.metric(Math.abs(g)); }
function gainCell(g) { return h("td", { class: "r num mono " + (g > 0 ? "better" : g < 0 ? "worse" : "") }, gainText(g)); }
function pct(x) { return x === null || x === undefined ? "" : `${(100 * x).toFixed(x < 0.001 ? 3 : 2)}%`; }
function table(head, rows, empty, id) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("table", { id }, h("thead", {}, h("tr", {}, head.map(([t, c]) => h("th", { class: c || "" }, t)))), h("tbody", {}, rows));
}

// Poll every few seconds and re-render only when an answer changed.
function poll(load, render, every) {
  let last = null;
  const tick = async () => {
    try {
      const data = await load();
      const key = JSON.stringify(data);
      setLive(true, "live");
      if (key !== last) { last = key; render(data); }
    } catch (err) {
      if (last === null) showError(err); else setLive(false, "disconnected");
    }
  };
  tick();
  setInterval(() => { if (!document.hidden) tick(); }, every || 4000);
  return tick;
}

// --- the index ----------------------------------------------------------------------------------
function hubPage() {
  poll(() => api("overview"), (tracks) => {
    const rows = tracks.map((t) => {
      setInfo(t);
      const gain = t.head_metric !== null && t.base_metric !== null ? t.head_metric - t.base_metric : null;
      return h("tr", { class: "click", "data-track": t.name, onclick: () => { location.href = `tracks/${t.name}/`; } },
        h("td", {}, h("a", { href: `tracks/${t.name}/` }, h("b", {}, t.name))),
        h("td", {}, `${t.metric} `, h("span", { class: "dim" }, t.direction === "minimize" ? "↓ lower is better" : "↑ higher is better")),
        h("td", { class: "r num" }, t.seq),
        h("td", { class: "r num mono" }, fmt.metric(t.head_metric ?? t.base_metric)),
        h("td", { class: "r num mono " + (gain === null ? "" : isBetter(gain) ? "better" : "worse") }, gain === null ? "—" : fmt.delta(gain)),
        h("td", { class: "r num" }, t.contributors), h("td", { class: "r num" }, t.pending),
        h("td", { class: "mono dim" }, short(t.head)), h("td", { class: "dim" }, t.last_verified_at ? fmt.ago(t.last_verified_at) : "not yet"));
    });
    document.getElementById("main").replaceChildren(h("div", { class: "card" }, h("h2", {}, `Tracks (${tracks.length})`),
      table([["track"], ["metric"], ["verified commits", "r"], ["head", "r"], ["since base", "r"], ["contributors", "r"],
        ["pending", "r"], ["head commit"], ["last verified"]], rows, "no tracks yet: an admin adds them with `overnight hub add-track`", "tracks")));
  }, 5000);
}

// --- a track: leaderboard, chain, queue -----------------------------------------------------------
function boardPage() {
  const name = BOOT.track, T = `tracks/${encodeURIComponent(name)}`;
  let tier = "";
  const stats = h("div", { class: "stats", id: "stats" }), chartBox = h("div", { class: "chart", id: "chart" });
  const board = h("div", {}), chain = h("div", {}), queue = h("div", {}), tiers = h("span", {}), legend = h("div", { class: "legend" });
  document.getElementById("main").replaceChildren(stats,
    h("div", { class: "card" }, h("div", { class: "chart-head" }, h("h2", {}, "Chain progress"), legend), chartBox),
    h("div", { class: "grid2" },
      h("div", {}, h("div", { class: "card" }, h("div", { class: "chart-head" }, h("h2", {}, "Leaderboard"), tiers), board),
        h("div", { class: "card" }, h("h2", {}, "Chain: verified commits, newest first"), chain)),
      h("div", {}, h("div", { class: "card" }, h("h2", {}, "Pending verifications"), queue))));
  const chart = new ProgressChart(chartBox, (e) => { location.href = `${T}/entries/${e.id}`; });
  chart.xLabel = (n) => `chain entry (0 = the base, then ${n - 1} verified commit${n === 2 ? "" : "s"})`;
  window.__chart = chart;
  const load = () => Promise.all([api(T), api(`${T}/chain`), api(`${T}/leaderboard${tier ? "?tier=" + encodeURIComponent(tier) : ""}`), api(`${T}/pending`)]);
  const tick = poll(load, ([info, entries, lb, pend]) => {
    setInfo(info);
    renderStats(stats, info, entries, lb, pend);
    legend.replaceChildren(h("span", {}, h("i", { style: { background: KEEP } }), "verified metric of each chain entry"),
      h("span", {}, h("i", { class: "line", style: { background: KEEP } }), "head"), h("span", {}, "click a dot to open the entry"));
    chart.setData(chainPoints(entries), null);
    tiers.replaceChildren(lb.tiers.length > 1 ? h("select", { id: "tier", onchange: (ev) => { tier = ev.target.value; tick(); } },
      h("option", { value: "" }, "all platform tiers"), lb.tiers.map((t) => h("option", { value: t, selected: t === tier }, t)))
      : h("span", { class: "dim" }, lb.tiers.length ? `platform tier: ${lb.tiers[0]}` : ""));
    board.replaceChildren(table([["#"], ["contributor"], [`verified improvement (${info.metric})`, "r"], ["accepted", "r"], ["trust", "r"]],
      lb.leaderboard.map((r) => h("tr", { "data-contributor": r.contributor }, h("td", { class: "num" }, r.rank), h("td", {}, h("b", {}, r.contributor)),
        gainCell(r.verified_improvement), h("td", { class: "r num" }, r.accepted), h("td", { class: "r num" }, r.trust.toFixed(2)))),
      "no verified improvement yet", "leaderboard"));
    chain.replaceChildren(table([["#"], ["commit"], [info.metric, "r"], ["gain", "r"], ["contributor"], ["verifier"], ["tier"], ["when"], [""]],
      entries.slice().reverse().map((e) => h("tr", { "data-seq": e.seq },
        h("td", {}, h("a", { href: `${T}/entries/${e.seq}` }, `#${e.seq}`)), h("td", { class: "mono" }, short(e.commit)),
        h("td", { class: "r num mono" }, fmt.metric(e.seq ? e.metric : (entries[1] || {}).head_metric)),
        e.seq ? gainCell(e.gain) : h("td", { class: "r dim" }, "base"),
        h("td", {}, e.contributor || "—"), h("td", {}, e.verifier || "—"), h("td", { class: "dim" }, e.tier || ""),
        h("td", { class: "dim" }, fmt.ago(e.created_at)),
        h("td", {}, e.diff_url ? [h("a", { href: e.diff_url.replace(/^\//, ""), class: "diff-link" }, "diff"), " · ",
          h("a", { href: `${T}/entries/${e.seq}` }, "runs")] : ""))),
      "the chain has only its base", "chain"));
    queue.replaceChildren(h("p", { class: "dim", style: { margin: "0 0 8px" } },
      `${pend.total} waiting, in the order verifiers take them (trust, then first come; a claimed gain buys nothing). Claims are the contributors' own numbers until re-run.`),
    table([["#"], ["contributor"], ["claimed gain", "r"], ["claimed", "r"], ["status"], ["waiting"]],
      pend.pending.map((p) => h("tr", { "data-sub": p.id }, h("td", { class: "num" }, `#${p.id}`), h("td", {}, p.contributor),
        h("td", { class: "r num mono", style: { whiteSpace: "nowrap" }, title: pct(p.relative_gain) }, gainText(p.claimed_gain), h("span", { class: "dim" }, p.relative_gain !== null ? ` (${pct(p.relative_gain)})` : "")),
        h("td", { class: "r num mono dim" }, `${fmt.metric(p.claimed_head)} → ${fmt.metric(p.claimed_metric)}`),
        h("td", {}, badge(p.status), p.on_head ? "" : h("span", { class: "dim", title: "its parent is no longer the head" }, " stale")),
        h("td", { class: "dim" }, fmt.ago(p.created_at).replace(" ago", "")))),
      "nothing waiting for verification", "pending"));
  });
}

// The chain as chart points: the base (as the first verifier measured it), then each verified commit.
function chainPoints(entries) {
  const base = entries[1] ? entries[1].head_metric : null;
  return entries.map((e) => ({ id: e.seq, status: "keep", metric: e.seq ? e.metric : base, head_metric: e.seq ? e.head_metric : null,
    delta: e.seq && e.metric !== null && e.head_metric !== null ? e.metric - e.head_metric : null, p_value: (e.stats || {}).p_value ?? null,
    description: e.seq ? (e.description || "(no description)") : "the track's base commit",
    proposer: e.seq ? `by ${e.contributor}, verified by ${e.verifier} on ${e.tier}` : "base", finished_at: e.created_at, created_at: e.created_at }));
}

function renderStats(box, info, entries, lb, pend) {
  const last = entries[entries.length - 1], base = entries[1] ? entries[1].head_metric : null;
  const total = entries.reduce((a, e) => a + (e.seq ? e.gain || 0 : 0), 0);
  box.replaceChildren(
    stat("Head", fmt.metric(last.seq ? last.metric : base), h("span", { class: "mono" }, `#${last.seq} · ${short(info.head)}`), "best"),
    stat("Base", fmt.metric(base), base === null ? "measured at the first verification" : "first verifier's measurement"),
    stat("Verified gain", gainText(total), `over ${entries.length - 1} commit${entries.length === 2 ? "" : "s"}`),
    stat("Contributors", String(lb.leaderboard.length), "with a verified commit"),
    stat("Pending", String(pend.total), `${pend.pending.filter((p) => p.status === "verifying").length} being verified now`),
    stat("Metric", info.metric, info.direction === "minimize" ? "lower is better" : "higher is better"));
}

// --- one chain entry ----------------------------------------------------------------------------
function diffView(src) {
  const lines = src.replace(/\n$/, "").split("\n");
  return h("div", { class: "diff", id: "diff" }, lines.map((l) => h("div", { class: l.startsWith("diff --git") || l.startsWith("+++ ") || l.startsWith("--- ") || l.startsWith("index ") ? "file"
    : l.startsWith("@@") ? "hunk" : l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : "" }, l)));
}

async function entryPage() {
  const T = `tracks/${encodeURIComponent(BOOT.track)}`, seq = BOOT.seq;
  const [info, entries] = await Promise.all([api(T), api(`${T}/chain`)]);
  setInfo(info);
  setLive(true, "loaded");
  const e = entries.find((x) => x.seq === seq);
  if (!e) throw new Error(`no chain entry #${seq}`);
  const diff = e.seq ? await text(`${T}/chain/${seq}/diff`) : "";
  const runs = e.runs || [], heads = e.head_runs || [], n = Math.max(runs.length, heads.length);
  const kv = (pairs) => h("dl", { class: "kv" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
  document.getElementById("main").replaceChildren(
    h("div", { class: "card" }, h("div", { class: "exp-head" }, h("h1", {}, `Chain entry #${seq}`), badge(e.seq ? "accepted" : "keep"),
      h("span", { class: "dim" }, e.seq ? `by ${e.contributor} · verified by ${e.verifier}` : "the track's base"),
      h("span", { class: "nav" }, seq > 0 ? h("a", { href: `${T}/entries/${seq - 1}` }, `‹ #${seq - 1}`) : null, h("a", { href: `${T}/` }, "leaderboard & chain"),
        seq < entries.length - 1 ? h("a", { href: `${T}/entries/${seq + 1}` }, `#${seq + 1} ›`) : null)),
    h("p", { style: { fontSize: "15px", margin: "8px 0 0" } }, e.description || (e.seq ? "(no description)" : "the commit the track started from"))),
    h("div", { class: "grid2" },
      h("div", { class: "card" }, h("h2", {}, "Verified result"), kv([
        [`${info.metric} (verified)`, h("b", { class: "num" }, fmt.metric(e.metric))], ["head, same verifier", fmt.metric(e.head_metric)],
        ["gain", h("span", { class: e.gain > 0 ? "better" : "" }, gainText(e.gain))], ["claimed by the contributor", fmt.metric(e.claimed_metric)],
        ["commit", h("span", { class: "mono" }, e.commit)], ["parent", h("span", { class: "mono" }, e.parent || "—")],
        ["platform tier", e.tier || "—"], ["submission", e.submission ? `#${e.submission}` : "—"], ["verified", fmt.time(e.created_at)]])),
      h("div", { class: "card" }, h("h2", {}, "Runs (fresh seeds, same verifier)"), n ? table([["run"], ["candidate", "r"], ["head", "r"]],
        Array.from({ length: n }, (_, i) => h("tr", {}, h("td", { class: "dim" }, i + 1), h("td", { class: "r num mono" }, fmt.metric(runs[i] ?? null)),
          h("td", { class: "r num mono" }, fmt.metric(heads[i] ?? null)))), "", "runs") : h("p", { class: "empty" }, "no runs recorded"),
        e.stats && Object.keys(e.stats).length ? [h("h2", { style: { marginTop: "14px" } }, "Decision statistics"),
          kv(Object.entries(e.stats).map(([k, v]) => [k, h("span", { class: "num mono" }, typeof v === "number" ? fmt.metric(v) : String(v))]))] : null)),
    h("div", { class: "card", style: { marginTop: "16px" } }, h("h2", {}, "Diff ", e.diff_url ? h("a", { href: e.diff_url.replace(/^\//, ""), style: { textTransform: "none" } }, "(raw)") : null),
      diff ? diffView(diff) : h("p", { class: "empty" }, "the base has no diff")));
}

Promise.resolve().then({ hub: hubPage, board: boardPage, entry: entryPage }[BOOT.page]).catch(showError);
