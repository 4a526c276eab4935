// 走访覆盖 (issue 18): visit coverage of the six must-visit households per grid, community,
// district or inspector, from GET /v1/households/coverage (counts only, masked per role by
// the server), with the definitions the server sends. A tab of its own: it listens to the
// tab buttons itself, so app.js needs no change.
import { api } from "./api.js";
import { fmtPct, nameOf, onLang, t, zhEn } from "./i18n.js";
import { esc } from "./casepanel.js";

// Words from the shared catalogue (shared/messages.js: hh.*, care_flag.*).
const GROUPS = [["grid", "group_grid"], ["community", "hh.by_community"], ["district", "hh.by_district"], ["inspector", "group_inspector"]];
let flags = {};
let last = null; // the last answer, drawn again when the language changes
/** A must-visit flag's name in the page's language (the vocabulary's zh-Hans label else). */
const flagName = (f) => (`care_flag.${f}` in window.GDI18N.messages ? window.GDI18N.label("care_flag", f) : flags[f] || f);

function view() { return document.querySelector("#visits-view"); }

function skeleton(root) {
  root.innerHTML = `
    <div class="filters">
      <select id="v-period" aria-label="${esc(t("hh.period"))}">${[7, 30, 90].map((d) =>
        `<option value="${d}" ${d === 30 ? "selected" : ""}>${esc(t("period_days", { n: d }))}</option>`).join("")}</select>
      <select id="v-group" aria-label="${esc(t("hh.group_by"))}">${GROUPS.map(([k, l]) => `<option value="${k}">${esc(t(l))}</option>`).join("")}</select>
    </div>
    <div class="metric-cards" id="v-cards"></div>
    <div class="table-wrap metrics-table-wrap"><table class="queue metrics-table" id="v-table"></table></div>
    <details class="definitions" id="v-definitions" open>
      <summary>${esc(t("definitions"))}</summary><dl id="v-definition-list"></dl>
    </details>`;
  root.querySelector("#v-period").addEventListener("change", load);
  root.querySelector("#v-group").addEventListener("change", load);
}

// Inspectors by name (GET /v1/people), cached for the page.
const people = new Map();
async function loadPeople(ids) {
  const missing = [...new Set(ids)].filter((id) => id && !people.has(id));
  if (!missing.length) return;
  for (const id of missing) people.set(id, null);
  const got = await api("/v1/people", { query: { ids: missing.join(",") } }).catch(() => ({ items: [] }));
  for (const p of got.items || []) people.set(p.user_id, p);
}
/** A unit's name: a person for "by inspector", else the grid / community / district. */
function unitName(u, by) {
  if (!u.unit) return "—";
  if (by === "inspector") return people.get(u.unit)?.name || u.unit;
  return nameOf({ name_zh: u.name_zh, name_en: u.name_en }, u.unit);
}

async function load() {
  const root = view();
  if (!root) return;
  if (!root.querySelector("#v-cards")) skeleton(root);
  if (!Object.keys(flags).length) {
    const vocab = await api("/v1/vocabulary");
    for (const f of vocab.care_flags || []) flags[f.value] = f.label;
  }
  const days = root.querySelector("#v-period").value;
  const by = root.querySelector("#v-group").value;
  const data = await api("/v1/households/coverage", { query: { by, days } });
  if (by === "inspector") await loadPeople(data.units.map((u) => u.unit));
  render(root, data);
}

function render(root, data) {
  last = data;
  const total = data.total;
  const cards = [
    [fmtPct(total.coverage), "hh.coverage", "hh.coverage_formula"],
    [total.visits_due, "hh.visits_due", null, t("period_days", { n: root.querySelector("#v-period").value })],
    [total.visits_on_time, "hh.visits_on_time", null],
    [total.overdue, "hh.overdue", "hh.red"],
    [data.units.reduce((s, u) => s + u.flagged, 0), "hh.flagged", "六必访"],
  ];
  root.querySelector("#v-cards").innerHTML = cards.map(([v, l, f, text]) =>
    `<div class="mcard"><div class="v">${esc(v ?? "—")}</div><div class="l">${esc(t(l))}</div><div class="f">${esc(text || (f ? t(f) : ""))}</div></div>`).join("");
  const shownFlags = Object.keys(flags).filter((f) => data.units.some((u) => f in u.per_flag));
  const th = (key) => `<th class="num">${esc(t(key))}</th>`;
  // The figures first (coverage, overdue), the households per flag after them: on a narrow
  // screen the table scrolls sideways and what a leader looks for stays in view.
  const head = `<thead><tr><th>${esc(t("col_place"))}</th>${th("hh.households")}${th("hh.flagged")}${th("hh.visits_due")}${th("hh.visits_on_time")}${th("hh.coverage")}${th("hh.overdue")}${th("hh.warning")}${
    shownFlags.map((f) => `<th class="num flag" title="${esc(f)}">${esc(flagName(f))}</th>`).join("")}</tr></thead>`;
  const rows = data.units.map((u) => `<tr data-unit="${esc(u.unit || "")}"><td title="${esc(u.unit || "")}">${esc(unitName(u, data.by))}</td>
    <td class="num">${u.households}</td><td class="num">${u.flagged}</td>
    <td class="num">${u.visits_due}</td><td class="num">${u.visits_on_time}</td><td class="num">${esc(fmtPct(u.coverage))}</td>
    <td class="num ${u.overdue ? "bad" : ""}">${u.overdue}</td><td class="num">${u.warning}</td>${shownFlags.map((f) => `<td class="num flag">${u.per_flag[f] ?? 0}</td>`).join("")}</tr>`).join("");
  const table = root.querySelector("#v-table");
  table.style.minWidth = `${560 + shownFlags.length * 72}px`;
  table.innerHTML = `${head}<tbody>${rows}</tbody>`;
  // The definitions the server sends (aggregates/households/coverage.py, the same as in
  // GET /v1/metrics/definitions beside the case metrics).
  root.querySelector("#v-definition-list").innerHTML = (data.metrics || []).map((m) =>
    `<dt>${esc(zhEn(m.zh, m.en))}</dt><dd><code>${esc(zhEn(m.formula_zh, m.formula_en))}</code>${
      zhEn(m.note_zh, m.note_en) ? `<br>${esc(zhEn(m.note_zh, m.note_en))}` : ""}</dd>`).join("") +
    (data.sensitive_counts_shown ? "" : `<dt>${esc(t("hh.restricted"))}</dt><dd>${esc(t("hh.sensitive_hidden"))}</dd>`);
  root.dataset.loaded = "1";
}

function select(tab) {
  const root = view();
  if (!root) return;
  root.hidden = tab !== "visits";
  document.querySelector("#tab-visits")?.classList.toggle("active", tab === "visits");
  if (tab === "visits") load().catch((e) => { root.dataset.error = e.message; });
}

for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => select(tab.dataset.tab));
// Another language: the filters' words and the last answer drawn again (no new request).
onLang(() => {
  const root = view();
  if (!root || !root.querySelector("#v-cards")) return;
  const [days, by] = [root.querySelector("#v-period").value, root.querySelector("#v-group").value];
  skeleton(root);
  root.querySelector("#v-period").value = days;
  root.querySelector("#v-group").value = by;
  if (last) render(root, last);
});
