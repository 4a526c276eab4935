// 走访覆盖 (issue 18): visit coverage of the six must-visit households per grid, community,
// district or inspector, from GET /v1/households/coverage (counts only, masked per role by
// the server), with the definitions the server sends. A tab of its own: it listens to the
// tab buttons itself, so app.js needs no change.
import { api } from "./api.js";
import { fmtPct, t, zhEn } from "./i18n.js";
import { esc } from "./casepanel.js";

const GROUPS = [["grid", "按网格"], ["community", "按社区"], ["district", "按区县"], ["inspector", "按网格员"]];
let flags = {};

function view() { return document.querySelector("#visits-view"); }

function skeleton(root) {
  root.innerHTML = `
    <div class="filters">
      <select id="v-period" aria-label="period">${[7, 30, 90].map((d) =>
        `<option value="${d}" ${d === 30 ? "selected" : ""}>${esc(t("period_days", { n: d }))}</option>`).join("")}</select>
      <select id="v-group" aria-label="group by">${GROUPS.map(([k, l]) => `<option value="${k}">${esc(t(l))}</option>`).join("")}</select>
    </div>
    <div class="metric-cards" id="v-cards"></div>
    <div class="table-wrap metrics-table-wrap"><table class="queue metrics-table" id="v-table"></table></div>
    <details class="definitions" id="v-definitions" open>
      <summary>${esc(t("指标定义"))}</summary><dl id="v-definition-list"></dl>
    </details>`;
  root.querySelector("#v-period").addEventListener("change", load);
  root.querySelector("#v-group").addEventListener("change", load);
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
  render(root, data);
}

function render(root, data) {
  const total = data.total;
  const cards = [
    [fmtPct(total.coverage), "走访覆盖率", "按期走访 ÷ 应走访"],
    [total.visits_due, "应走访", `${t("period_days", { n: root.querySelector("#v-period").value })}`],
    [total.visits_on_time, "按期走访", ""],
    [total.overdue, "逾期未访户", "红灯"],
    [data.units.reduce((s, u) => s + u.flagged, 0), "必访户", "六必访"],
  ];
  root.querySelector("#v-cards").innerHTML = cards.map(([v, l, f]) =>
    `<div class="mcard"><div class="v">${esc(v ?? "—")}</div><div class="l">${esc(t(l))}</div><div class="f">${esc(t(f))}</div></div>`).join("");
  const shownFlags = Object.keys(flags).filter((f) => data.units.some((u) => f in u.per_flag));
  const head = `<thead><tr><th>${esc(t("col_place"))}</th><th class="num">${esc(t("户数"))}</th><th class="num">${esc(t("必访户"))}</th>${
    shownFlags.map((f) => `<th class="num">${esc(flags[f])}</th>`).join("")}<th class="num">${esc(t("应走访"))}</th><th class="num">${esc(t("按期走访"))}</th><th class="num">${esc(t("走访覆盖率"))}</th><th class="num">${esc(t("逾期未访户"))}</th><th class="num">${esc(t("临期户"))}</th></tr></thead>`;
  const rows = data.units.map((u) => `<tr data-unit="${esc(u.unit || "")}"><td title="${esc(u.unit || "")}">${esc(u.name_zh || u.unit || "—")}</td>
    <td class="num">${u.households}</td><td class="num">${u.flagged}</td>${shownFlags.map((f) => `<td class="num">${u.per_flag[f] ?? 0}</td>`).join("")}
    <td class="num">${u.visits_due}</td><td class="num">${u.visits_on_time}</td><td class="num">${esc(fmtPct(u.coverage))}</td>
    <td class="num ${u.overdue ? "bad" : ""}">${u.overdue}</td><td class="num">${u.warning}</td></tr>`).join("");
  const table = root.querySelector("#v-table");
  table.style.minWidth = `${420 + shownFlags.length * 80}px`;
  table.innerHTML = `${head}<tbody>${rows}</tbody>`;
  const defs = data.definition;
  root.querySelector("#v-definition-list").innerHTML = [
    ["走访覆盖率", zhEn(defs.coverage, defs.coverage_en)], ["逾期未访户", zhEn(defs.overdue, defs.overdue_en)],
    ["临期户", zhEn(defs.warning, defs.warning_en)],
  ].map(([k, v]) => `<dt>${esc(t(k))}</dt><dd>${esc(v)}</dd>`).join("") +
    (data.sensitive_counts_shown ? "" : `<dt>${esc(t("受限"))}</dt><dd>${esc(t("重大疾病、刑释解教/社区矫正的户数仅对有知悉需要的角色显示"))}</dd>`);
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
