// The experiments page: every experiment, sortable and filterable by status, proposer, time and text.
"use strict";

const PAGE = 200;  // rows per page: 10,000 table rows would make every re-render slow
const WINDOWS = [["all", "any time", Infinity], ["1h", "last hour", 3600], ["24h", "last 24 h", 86400], ["7d", "last 7 days", 604800]];

async function main() {
  const store = new Store(true);
  const params = new URLSearchParams(location.search);
  const st = {
    off: new Set((params.get("hide") || "").split(",").filter(Boolean)),
    proposer: params.get("proposer") || "", window: params.get("since") || "all", text: "",
    key: "id", dir: -1, page: 0,
  };
  const chips = h("div", { class: "chips" });
  const proposer = h("select", { onchange: () => { st.proposer = proposer.value; st.page = 0; render(); } });
  const since = h("select", { onchange: () => { st.window = since.value; st.page = 0; render(); } },
    WINDOWS.map(([v, label]) => h("option", { value: v, selected: v === st.window }, label)));
  const search = h("input", { type: "search", placeholder: "search descriptions", oninput: () => { st.text = search.value.toLowerCase(); st.page = 0; render(); } });
  const count = h("span", { class: "dim" });
  const table = h("div", {});
  const pager = h("div", { class: "pager" });
  document.getElementById("main").replaceChildren(h("div", { class: "card" },
    h("div", { class: "filters" }, chips), h("div", { class: "filters" }, proposer, since, search, count), table, pager));

  const cols = [
    ["id", "#", (e) => expLinkCell(e)], ["status", "status", (e) => h("td", {}, badge(e.status))],
    ["metric", () => INFO.metric, (e) => h("td", { class: "r num" }, fmt.metric(e.metric)), "r"],
    ["delta", "Δ vs head", (e) => { const d = deltaOf(e), g = isBetter(d); return h("td", { class: "r num " + (g === null ? "" : g ? "better" : "worse") }, fmt.delta(d)); }, "r"],
    ["p_value", "p", (e) => h("td", { class: "r num" }, fmt.p(e.p_value)), "r"],
    ["proposer", "proposer", (e) => h("td", { class: "dim" }, e.proposer)],
    ["description", "description", (e) => h("td", { class: "desc", title: e.description }, e.description)],
    ["created_at", "started", (e) => h("td", { class: "dim", title: fmt.time(e.created_at) }, fmt.ago(e.created_at))],
    ["duration", "took", (e) => h("td", { class: "r dim num" }, fmt.dur(e.finished_at ? e.finished_at - e.created_at : null)), "r"],
  ];
  function expLinkCell(e) { return h("td", {}, h("a", { href: `experiments/${e.id}` }, `#${e.id}`)); }
  const value = (e, k) => k === "delta" ? deltaOf(e) : k === "duration" ? (e.finished_at ? e.finished_at - e.created_at : null) : e[k];

  function render(fresh) {
    const counts = {}, proposers = new Set();
    for (const e of store.exps) { counts[e.status] = (counts[e.status] || 0) + 1; proposers.add(e.proposer); }
    chips.replaceChildren(...Object.keys(counts).sort().map((s) => h("span", {
      class: "chip" + (st.off.has(s) ? " off" : ""), "data-status": s, title: "click to show/hide; double-click to show only this",
      onclick: () => { st.off.has(s) ? st.off.delete(s) : st.off.add(s); st.page = 0; render(); },
      ondblclick: () => { st.off = new Set(Object.keys(counts).filter((k) => k !== s)); st.page = 0; render(); },
    }, h("i", { style: { background: statusColor(s) } }), `${s.replace("_", " ")} ${counts[s]}`)));
    proposer.replaceChildren(h("option", { value: "" }, "any proposer"),
      [...proposers].sort().map((p) => h("option", { value: p, selected: p === st.proposer }, p)));
    const cutoff = Date.now() / 1000 - WINDOWS.find((w) => w[0] === st.window)[2];
    let rows = store.exps.filter((e) => !st.off.has(e.status) && (!st.proposer || e.proposer === st.proposer)
      && e.created_at >= cutoff && (!st.text || (e.description || "").toLowerCase().includes(st.text)));
    rows = rows.slice().sort((a, b) => {
      const va = value(a, st.key), vb = value(b, st.key);
      if (va === vb) return (a.id - b.id) * st.dir;
      if (va === null || va === undefined) return 1;  // blanks last in either direction
      if (vb === null || vb === undefined) return -1;
      return (va < vb ? -1 : 1) * st.dir;
    });
    count.textContent = `${rows.length} of ${store.exps.length} experiments`;
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    st.page = Math.min(st.page, pages - 1);
    const shown = rows.slice(st.page * PAGE, (st.page + 1) * PAGE);
    table.replaceChildren(h("table", { id: "exp-table" },
      h("thead", {}, h("tr", {}, cols.map(([k, label, , cls]) => h("th", {
        class: `sort ${cls || ""} ${st.key === k ? (st.dir > 0 ? "asc" : "desc") : ""}`, "data-key": k,
        onclick: () => { st.dir = st.key === k ? -st.dir : k === "description" || k === "proposer" ? 1 : -1; st.key = k; render(); },
      }, typeof label === "function" ? label() : label)))),
      h("tbody", {}, shown.map((e) => h("tr", { class: "click" + (fresh && fresh.has(e.id) ? " fresh" : ""), "data-id": e.id,
        onclick: (ev) => { if (ev.target.tagName !== "A") location.href = `experiments/${e.id}`; } }, cols.map(([, , cell]) => cell(e)))))));
    pager.replaceChildren(pages > 1 ? h("span", {},
      h("button", { disabled: st.page === 0, onclick: () => { st.page--; render(); } }, "‹ previous"), ` page ${st.page + 1} of ${pages} `,
      h("button", { disabled: st.page >= pages - 1, onclick: () => { st.page++; render(); } }, "next ›")) : "");
  }
  store.on((fresh) => render(fresh.size < store.exps.length ? fresh : null));
  await store.start();
}

main().catch(showError);
