// The evaluation panel (综合评价): metric cards with their definitions, daily charts (uPlot),
// a table per group (department, community, grid, inspector …), and the definitions list —
// all from GET /v1/metrics and GET /v1/metrics/definitions (the one table of definitions).
/* global uPlot */
import { api, download } from "./api.js";
import { fmtPct, isZh, nameOf, t, zhEn } from "./i18n.js";
import { esc } from "./casepanel.js";

const CARDS = [
  "reports", "valid_report_rate", "filing_rate", "dispatched", "on_time_dispatch_rate", "dispatch_accuracy",
  "on_time_handling_rate", "closed", "closure_rate", "on_time_closure_rate", "rework_rate", "overdue_open",
  "escalations", "supervision_orders", "satisfaction_rate",
];
const TABLE = [
  "reports", "valid_report_rate", "filing_rate", "dispatched", "on_time_dispatch_rate", "dispatch_accuracy",
  "on_time_handling_rate", "closed", "closure_rate", "on_time_closure_rate", "rework_rate", "overdue_open",
  "escalations", "supervision_orders", "satisfaction_rate",
];
const COUNT_SERIES = [["reports", "#38bdf8"], ["filed", "#a78bfa"], ["dispatched", "#22c55e"], ["closed", "#e2e8f0"]];
const RATE_SERIES = [
  ["on_time_dispatch_rate", "#22c55e"], ["on_time_handling_rate", "#38bdf8"],
  ["dispatch_accuracy", "#a78bfa"], ["valid_report_rate", "#f59e0b"],
];

export class MetricsPanel {
  constructor(root, { getNode, getServerToday, toast, levels }) {
    this.root = root;
    this.getNode = getNode;
    this.getServerToday = getServerToday;
    this.toast = toast;
    this.levels = levels;
    this.defs = null;
    this.charts = [];
    const group = root.querySelector("#m-group");
    const groups = [["department", "group_department"], ["community", null], ["district", null], ["grid", "group_grid"],
      ["inspector", "group_inspector"], ["level", "group_level"], ["week", "group_week"]];
    this.groupOptions = groups;
    group.addEventListener("change", () => this.load());
    root.querySelector("#m-period").addEventListener("change", () => this.load());
    root.querySelector("#m-export-csv").addEventListener("click", () => this.export("csv"));
    root.querySelector("#m-export-jsonl").addEventListener("click", () => this.export("jsonl"));
    // The evaluation report (综合评价: rankings of districts, departments, communities and
    // grids by the published metrics) for the tab's period, as Excel or PDF
    // (GET /v1/documents/evaluation.xlsx|pdf, gateways/http/documents.py).
    const right = root.querySelector(".filters-right");
    this.docButtons = ["pdf", "xlsx"].map((fmt) => { // prepended: Excel first, then PDF
      const b = document.createElement("button");
      b.type = "button";
      b.className = "btn btn-ghost";
      b.id = `m-evaluation-${fmt}`;
      b.textContent = t(`evaluation_${fmt}`);
      b.title = t("evaluation_hint");
      b.addEventListener("click", () => this.evaluation(fmt, b));
      right?.prepend(b);
      return b;
    });
    window.addEventListener("resize", () => this.resizeCharts());
  }

  labels() {
    const group = this.root.querySelector("#m-group");
    const value = group.value || "department";
    group.innerHTML = this.groupOptions.map(([key, label]) => {
      const lv = this.levels.find((l) => l.key === key);
      const text = label ? t(label) : `${isZh() ? "按" : "By "}${lv ? nameOf(lv) : key}`;
      return `<option value="${key}" ${key === value ? "selected" : ""}>${esc(text)}</option>`;
    }).join("");
    for (const opt of this.root.querySelectorAll("#m-period option")) opt.textContent = t("period_days", { n: opt.value });
    for (const b of this.docButtons) {
      const fmt = b.id.endsWith("pdf") ? "pdf" : "xlsx";
      if (!b.disabled) b.textContent = t(`evaluation_${fmt}`);
      b.title = t("evaluation_hint");
    }
  }

  /** Download the evaluation report of the tab's period (generating a PDF takes a moment). */
  async evaluation(fmt, button) {
    const { from, to } = this.period();
    button.disabled = true;
    button.textContent = t("evaluation_busy");
    try {
      await download(`/v1/documents/evaluation.${fmt}`, { from, to }, `evaluation-${from}-${to}.${fmt}`);
    } catch (e) {
      this.toast(`${t("export_failed")}: ${e.message}`, "err");
    } finally {
      button.disabled = false;
      button.textContent = t(`evaluation_${fmt}`);
    }
  }

  period() {
    const days = Number(this.root.querySelector("#m-period").value);
    const to = this.getServerToday();
    if (!to) return {};
    const d = new Date(`${to}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() - days + 1);
    return { from: d.toISOString().slice(0, 10), to };
  }

  async load() {
    this.labels();
    if (!this.defs) this.defs = await api("/v1/metrics/definitions");
    const node = this.getNode();
    const period = this.period();
    const groupBy = this.root.querySelector("#m-group").value || "department";
    const [daily, grouped] = await Promise.all([
      api("/v1/metrics", { query: { node, ...period, group_by: "day" } }),
      api("/v1/metrics", { query: { node, ...period, group_by: groupBy } }),
    ]);
    this.daily = daily;
    this.grouped = grouped;
    this.render();
  }

  def(key) { return this.defs.metrics.find((m) => m.key === key); }
  name(key) { const d = this.def(key); return d ? (zhEn(d.zh, d.en)) : key; }
  formula(key) { const d = this.def(key); return d ? (zhEn(d.formula_zh, d.formula_en)) : ""; }
  note(key) { const d = this.def(key); return d ? (zhEn(d.note_zh, d.note_en)) : ""; }
  value(key, metrics) {
    const d = this.def(key);
    const v = metrics[key];
    return d && d.kind === "rate" ? fmtPct(v) : v ?? "—";
  }

  render() {
    if (!this.daily || !this.defs) return;
    const totals = this.daily.totals.metrics;
    this.root.querySelector("#metric-cards").innerHTML = CARDS.map((key) =>
      `<div class="mcard" data-metric="${key}" title="${esc(`${this.formula(key)}\n${this.note(key)}`)}">
         <div class="v">${esc(this.value(key, totals))}</div><div class="l">${esc(this.name(key))}</div>
         <div class="f">${esc(this.formula(key))}</div></div>`).join("");
    this.renderCharts();
    this.renderTable();
    this.renderDefinitions();
  }

  renderCharts() {
    for (const c of this.charts) c.destroy();
    this.charts = [];
    const groups = this.daily.groups;
    const xs = groups.map((g) => Date.parse(`${g.key}T00:00:00+08:00`) / 1000);
    const axis = { stroke: "#8a9bb8", grid: { stroke: "rgba(45,61,95,.55)", width: 1 }, ticks: { stroke: "rgba(45,61,95,.8)" } };
    const make = (el, series, data, pct) => {
      const width = el.clientWidth || 400;
      const opts = {
        width, height: 190, cursor: { points: { size: 6 } }, legend: { live: false },
        scales: { x: { time: true }, y: pct ? { range: [0, 100] } : {} },
        // Days as Chinese offices write them (12-05; 2026-12-05 in the legend), in every language.
        axes: [{ ...axis, values: (u, vals) => vals.map((v) => window.GDI18N.date(v * 1000).slice(5)) },
          { ...axis, values: (u, vals) => vals.map((v) => (pct ? `${v}%` : v)) }],
        series: [{ value: (u, v) => (v === null ? "—" : window.GDI18N.date(v * 1000)) }, ...series.map(([key, colour]) => ({
          label: this.name(key), stroke: colour, width: 2, spanGaps: true,
          fill: pct ? undefined : `${colour}1a`, points: { show: false },
        }))],
      };
      el.innerHTML = "";
      this.charts.push(new uPlot(opts, [xs, ...data], el));
    };
    make(this.root.querySelector("#chart-counts"), COUNT_SERIES,
      COUNT_SERIES.map(([k]) => groups.map((g) => g.metrics[k] ?? 0)), false);
    make(this.root.querySelector("#chart-rates"), RATE_SERIES,
      RATE_SERIES.map(([k]) => groups.map((g) => (g.metrics[k] == null ? null : +(g.metrics[k] * 100).toFixed(2)))), true);
  }

  resizeCharts() {
    for (const chart of this.charts) {
      const el = chart.root.parentElement;
      if (el && el.clientWidth) chart.setSize({ width: el.clientWidth, height: 190 });
    }
  }

  renderTable() {
    const head = `<thead><tr><th>${esc(t("col_place"))}</th>${TABLE.map((k) =>
      `<th class="num" title="${esc(`${this.formula(k)}\n${this.note(k)}`)}">${esc(this.name(k))}</th>`).join("")}</tr></thead>`;
    const rows = [...this.grouped.groups, { key: "TOTAL", label_zh: "合计", label_en: "Total", metrics: this.grouped.totals.metrics }];
    const body = rows.map((g) => `<tr class="${g.key === "TOTAL" ? "total" : ""}"><td title="${esc(g.key || "")}">${esc(zhEn(g.label_zh, g.label_en))}</td>${TABLE.map((k) =>
      `<td class="num">${esc(this.value(k, g.metrics))}</td>`).join("")}</tr>`).join("");
    const table = this.root.querySelector("#metrics-table");
    table.style.minWidth = `${200 + TABLE.length * 92}px`;
    table.innerHTML = head + `<tbody>${body}</tbody>`;
  }

  renderDefinitions() {
    const zh = isZh();
    this.root.querySelector("#definition-rules").textContent = zhEn(this.defs.rules_zh, this.defs.rules_en);
    this.root.querySelector("#definition-list").innerHTML = this.defs.metrics.map((m) =>
      `<dt>${esc(zhEn(m.zh, m.en))}<br><small class="muted">${esc(zh ? m.en : zhEn(m.zh))}</small></dt>` +
      `<dd><code>${esc(zhEn(m.formula_zh, m.formula_en))}</code>${zhEn(m.note_zh, m.note_en) ? `<br>${esc(zhEn(m.note_zh, m.note_en))}` : ""}</dd>`).join("") +
      // The household figures (六必访, the 走访覆盖 tab) are defined in the same answer.
      ((this.defs.household_metrics || []).length ? `<dt class="def-group">${esc(t("tab_visits"))}</dt>` : "") +
      (this.defs.household_metrics || []).map((m) =>
        `<dt data-household-metric="${esc(m.key)}">${esc(zhEn(m.zh, m.en))}<br><small class="muted">${esc(zh ? m.en : zhEn(m.zh))}</small></dt>` +
        `<dd><code>${esc(zhEn(m.formula_zh, m.formula_en))}</code>${zhEn(m.note_zh, m.note_en) ? `<br>${esc(zhEn(m.note_zh, m.note_en))}` : ""}</dd>`).join("");
  }

  async export(fmt) {
    const groupBy = this.root.querySelector("#m-group").value || "department";
    try {
      await download(`/v1/metrics/export.${fmt}`, { node: this.getNode(), ...this.period(), group_by: groupBy }, `metrics.${fmt}`);
    } catch (e) {
      this.toast(`${t("export_failed")}: ${e.message}`, "err");
    }
  }
}
