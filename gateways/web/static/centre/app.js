// Command centre (指挥中心): wires the map, the queue, the case panel, the metrics and the
// live stream together. State is small and explicit (`state`); every read is an API call
// through api.js; the live stream triggers throttled re-reads so thousands of changes per
// minute cost a few requests, not thousands.
/* global GDDom */
import { api, download, onAuthRequired, signIn, signOut, user } from "./api.js";
import { CasePanel, esc } from "./casepanel.js";
import {
  applyStatic, fmtClock, fmtDateTime, fmtDue, fmtPct, fmtTime, languagePicker, nameOf, onLang, t, tPriority, tRole,
  tStatus,
} from "./i18n.js";
import { JurisdictionMap } from "./map.js";
import { MetricsPanel } from "./metrics.js";
import { LiveStream } from "./stream.js";

const PAGE = 50;
const $ = (sel) => document.querySelector(sel);

const state = {
  root: null, // the user's own node (jurisdiction root of this screen)
  node: null, // drill-down node (filters map, queue and metrics)
  light: "", status: "", priority: "", level: "", department: "", q: "",
  // Default: by urgency — overdue first (the longest overdue on top), then the soonest due.
  sort: "due_at", order: "asc",
  cursors: [null], page: 0, total: null,
  rows: new Map(), // case_no -> row shown
  selected: null, serverToday: null, tab: "queue",
};
// Statuses and priorities come from the server's vocabulary (GET /v1/vocabulary).
const refs = { nodes: {}, grids: {}, departments: {}, categories: {}, levels: [], cityCode: null, cityName: null, statuses: [], priorities: [] };
let map, panel, metrics, live;

// ------------------------------------------------------------------------------ boot
async function boot() {
  $("#lang-slot").replaceChildren(languagePicker());
  applyStatic();
  onLang(() => { liveState(liveNow); if (refs.cityName) $("#city-name").textContent = nameOf(refs.cityName); renderFilters(); renderSaved(); renderAll(); panel?.rerender(); metrics?.render(); metrics?.labels(); renderUser(); });
  setInterval(() => { $("#clock").textContent = fmtClock(new Date()); }, 1000);
  $("#signin-form").addEventListener("submit", onSignIn);
  $("#sign-out").addEventListener("click", () => signOut());
  onAuthRequired(() => { live?.stop(); showSignIn(); });
  if (!user()) { showSignIn(); return; }
  await start();
}

let demoShown = false;
function showSignIn() {
  $("#signin").hidden = false;
  if (!demoShown) {
    demoShown = true;
    $("#signin-form").append(window.GDI18N.demoBox(
      ["dispatcher", "shift_leader", "call_taker", "supervisor", "auditor"],
      (u, p) => { $("#signin-username").value = u; $("#signin-password").value = p; }));
  }
  $("#user-box").hidden = true;
  $("#sign-out").hidden = true;
  setTimeout(() => $("#signin-username").focus(), 0);
}

async function onSignIn(e) {
  e.preventDefault();
  const err = $("#signin-error");
  err.hidden = true;
  $("#signin-submit").disabled = true;
  try {
    await signIn($("#signin-username").value.trim(), $("#signin-password").value);
    $("#signin").hidden = true;
    $("#signin-password").value = "";
    await start();
  } catch (ex) {
    err.textContent = ex.status === 401 ? t("signin_failed") : ex.status === 429 ? t("signin_locked")
      : ex.status === 403 ? t("signin_disabled") : ex.message;
    err.hidden = false;
  } finally {
    $("#signin-submit").disabled = false;
  }
}

let started = false;
async function start() {
  renderUser();
  if (!started) {
    started = true;
    await loadReference();
    setupUi();
    renderUser(); // the node's name, now that the reference data is here
  }
  const me = user();
  state.root = me && me.node && refs.nodes[me.node] ? me.node : refs.cityCode;
  state.node = state.root;
  restoreFilters();
  try {
    await refreshView();
    await loadQueue();
  } catch (e) {
    if (e.status === 403) {
      // An admin (a new city's first user) is told where users are made, not only who may.
      toast(t(me && me.role === "admin" ? "centre_admin" : "centre_only"), "err", 0);
      return;
    }
    throw e;
  }
  map.invalidate();
  map.focus(state.node === refs.cityCode ? null : state.node, false);
  live?.stop();
  live = new LiveStream({ onHello, onChanges, onReset, onState: liveState });
  live.start();
  caseFromHash();
}

/** A link to a case (/#case=GD-…: from a notification, a document, a colleague) opens it,
 * also when the centre is already open. */
function caseFromHash() {
  const m = /^#case=([A-Za-z0-9-]{4,40})$/.exec(location.hash);
  if (m && panel && m[1] !== state.selected) openCase(decodeURIComponent(m[1])).catch((e) => toast(e.message, "err"));
}
window.addEventListener("hashchange", caseFromHash);

function renderUser() {
  const me = user();
  if (!me) return;
  $("#user-box").hidden = false;
  $("#sign-out").hidden = false;
  $("#user-name").textContent = me.name || me.user_id;
  const scope = me.node ? nameOf(refs.nodes[me.node] || (me.node === refs.cityCode ? refs.cityName : null), me.node) : "";
  $("#user-role").textContent = [tRole(me.role), scope].filter(Boolean).join(" · ");
}

async function loadReference() {
  const [tree, deps, cats, geo, words] = await Promise.all([
    api("/v1/jurisdiction"), api("/v1/departments"), api("/v1/categories"), api("/v1/grids.geojson"),
    api("/v1/vocabulary"),
  ]);
  refs.statuses = words.statuses.map((s) => s.value);
  refs.priorities = words.priorities.map((p) => p.value);
  refs.cityCode = tree.city.code;
  refs.cityName = tree.city;
  document.getElementById("city-name").textContent = nameOf(tree.city);
  refs.levels = tree.levels;
  for (const n of tree.nodes) refs.nodes[n.code] = n;
  for (const d of deps.items) refs.departments[d.code] = d;
  for (const c of cats.items) refs.categories[c.code] = c;
  for (const f of geo.features) refs.grids[f.properties.code] = { ...f.properties, code: f.properties.code, ring: f.geometry?.coordinates?.[0] };
  refs.basemap = tree.basemap;
  map = new JurisdictionMap($("#map"), { onDrill: drillTo, basemap: tree.basemap, fetchJSON: (url) => api(url) });
  map.setGeometry(geo, refs.levels);
  panel = new CasePanel($("#case-panel"), refs, { toast, onAction: () => scheduleRefresh() });
  metrics = new MetricsPanel($("#metrics-view"), {
    getNode: () => state.node, getServerToday: () => state.serverToday, toast, levels: refs.levels,
  });
}

function setupUi() {
  renderFilters();
  for (const chip of document.querySelectorAll("#light-chips .chip")) {
    chip.addEventListener("click", () => {
      state.light = chip.dataset.light;
      for (const c of document.querySelectorAll("#light-chips .chip")) c.classList.toggle("active", c === chip);
      rememberFilters(); resetPaging(); loadQueue();
    });
  }
  for (const [id, key] of [["#f-status", "status"], ["#f-priority", "priority"], ["#f-level", "level"], ["#f-department", "department"], ["#sort", "sort"]]) {
    $(id).addEventListener("change", () => {
      state[key] = $(id).value;
      if (key === "sort") state.order = state.sort === "reported_at" || state.sort === "updated_at" ? "desc" : "asc";
      rememberFilters(); renderOrder(); resetPaging(); loadQueue();
    });
  }
  setupSaved();
  let searchTimer;
  $("#f-q").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { state.q = $("#f-q").value.trim(); rememberFilters(); resetPaging(); loadQueue(); }, 300);
  });
  $("#queue-filters").addEventListener("submit", (e) => e.preventDefault());
  $("#order").addEventListener("click", () => {
    state.order = state.order === "asc" ? "desc" : "asc";
    rememberFilters(); renderOrder(); resetPaging(); loadQueue();
  });
  $("#page-first").addEventListener("click", () => { resetPaging(); loadQueue(); });
  $("#page-prev").addEventListener("click", () => { if (state.page > 0) { state.page -= 1; loadQueue(); } });
  $("#page-next").addEventListener("click", () => { if (state.cursors[state.page + 1]) { state.page += 1; loadQueue(); } });
  $("#export-csv").addEventListener("click", () => exportQueue("csv"));
  $("#export-jsonl").addEventListener("click", () => exportQueue("jsonl"));
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  $("#queue-body").addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-case-no]");
    if (tr) openCase(tr.dataset.caseNo);
  });
  $("#children").addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-code]");
    if (tr) drillTo(tr.dataset.code);
  });
  document.addEventListener("case-closed", () => { state.selected = null; markSelected(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("#case-panel").hidden) panel.close(); });
  renderOrder();
}

function renderFilters() {
  const opt = (value, label, current) => `<option value="${esc(value)}" ${value === current ? "selected" : ""}>${esc(label)}</option>`;
  $("#f-status").innerHTML = opt("", t("any_status"), state.status) + refs.statuses.map((s) => opt(s, tStatus(s), state.status)).join("");
  $("#f-priority").innerHTML = opt("", t("any_priority"), state.priority) + refs.priorities.map((p) => opt(p, tPriority(p), state.priority)).join("");
  $("#f-level").innerHTML = opt("", t("any_level"), state.level) + refs.levels.slice(0, -1).map((l) => opt(l.key, nameOf(l), state.level)).join("");
  const deps = Object.values(refs.departments).filter((d) => !state.node || state.node === refs.cityCode || underOrAbove(d.node, state.node));
  $("#f-department").innerHTML = opt("", t("any_department"), state.department) + deps.map((d) => opt(d.code, nameOf(d), state.department)).join("");
  $("#sort").innerHTML = ["due_at", "priority", "reported_at", "updated_at"].map((s) => opt(s, t(s === "due_at" ? "sort_urgency" : `sort_${s}`), state.sort)).join("");
  for (const c of document.querySelectorAll("#light-chips .chip")) c.classList.toggle("active", c.dataset.light === state.light);
  $("#f-q").value = state.q;
}

// ------------------------------------------------------------------------------ saved filters
// Per user, in this browser (localStorage): the last filters come back at the next start, and
// named filters ("已存筛选") are one click away.
const FILTER_KEYS = ["light", "status", "priority", "level", "department", "q", "sort", "order"];
const filterKey = (kind) => `gd.centre.${kind}.${user()?.user_id || "anon"}`;
const currentFilters = () => Object.fromEntries(FILTER_KEYS.map((k) => [k, state[k]]));
function readJson(key, fallback) {
  try { return JSON.parse(localStorage.getItem(key) || "null") ?? fallback; } catch { return fallback; }
}
function rememberFilters() { localStorage.setItem(filterKey("last"), JSON.stringify(currentFilters())); }
function applyFilters(f) {
  for (const k of FILTER_KEYS) if (typeof f[k] === "string") state[k] = f[k];
  if (state.department && !refs.departments[state.department]) state.department = "";
  renderFilters(); renderOrder();
}
function restoreFilters() { applyFilters(readJson(filterKey("last"), {})); renderSaved(); }
function savedFilters() { return readJson(filterKey("saved"), []); }
function renderSaved() {
  const sel = $("#f-saved");
  if (!sel) return;
  const list = savedFilters();
  sel.innerHTML = `<option value="">${esc(t("saved_filters"))} (${list.length})</option>` +
    list.map((f, i) => `<option value="${i}">${esc(f.name)}</option>`).join("");
  $("#f-delete").hidden = true;
}
function setupSaved() {
  $("#f-saved").addEventListener("change", () => {
    const f = savedFilters()[Number($("#f-saved").value)];
    $("#f-delete").hidden = !f;
    if (!f) return;
    applyFilters(f.filters); rememberFilters(); resetPaging(); loadQueue();
  });
  $("#f-save").addEventListener("click", () => {
    const name = (window.prompt(t("filter_name"), "") || "").trim();
    if (!name) return;
    const list = savedFilters().filter((f) => f.name !== name);
    list.push({ name, filters: currentFilters() });
    localStorage.setItem(filterKey("saved"), JSON.stringify(list));
    renderSaved();
    $("#f-saved").value = String(list.length - 1);
    $("#f-delete").hidden = false;
    toast(t("filter_saved", { a: name }));
  });
  $("#f-delete").addEventListener("click", () => {
    const i = Number($("#f-saved").value);
    const list = savedFilters();
    if (Number.isNaN(i) || !list[i]) return;
    list.splice(i, 1);
    localStorage.setItem(filterKey("saved"), JSON.stringify(list));
    renderSaved();
  });
}

function underOrAbove(deptNode, node) {
  // A department is relevant to a node when it sits on the node's path or below it.
  let n = node;
  while (n) { if (n === deptNode) return true; n = refs.nodes[n]?.parent; }
  n = deptNode;
  while (n) { if (n === node) return true; n = refs.nodes[n]?.parent; }
  return false;
}

function renderOrder() { $("#order").innerHTML = icon(state.order === "asc" ? "up" : "down"); }
const icon = (name) => `<svg class="icon" aria-hidden="true"><use href="/static/shared/icons.svg#i-${name}"/></svg>`;

function selectTab(tab) {
  state.tab = tab;
  for (const el of document.querySelectorAll(".tab")) el.classList.toggle("active", el.dataset.tab === tab);
  $("#queue-view").hidden = tab !== "queue";
  $("#metrics-view").hidden = tab !== "metrics";
  if (tab === "metrics") metrics.load().catch((e) => toast(e.message, "err"));
}

// ------------------------------------------------------------------------------ drill-down + map
async function drillTo(code) {
  state.node = code;
  if (state.department && !underOrAbove(refs.departments[state.department]?.node, code)) state.department = "";
  renderFilters();
  resetPaging();
  map.focus(code === refs.cityCode ? null : code);
  await refreshView();
  await loadQueue();
  if (state.tab === "metrics") metrics.load().catch((e) => toast(e.message, "err"));
}

let view = null;
let viewSeq = 0;
async function refreshView() {
  const mine = ++viewSeq;
  const [mapView, rootView, today] = await Promise.all([
    api("/v1/map", { query: { node: state.node } }),
    state.node === state.root ? null : api("/v1/map", { query: { node: state.root } }),
    api("/v1/metrics", { query: { node: state.root, group_by: "none", metrics: "reports,filed,closed,on_time_handling_rate", ...todayRange() } }),
  ]);
  // A later drill or refresh has asked since: this answer is for a node no longer shown.
  if (mine !== viewSeq) return;
  view = mapView;
  if (!state.serverToday) state.serverToday = today.to;
  const kpi = (rootView || mapView).totals;
  $("#kpi-open").textContent = kpi.open;
  $("#kpi-warning").textContent = kpi.warning;
  $("#kpi-overdue").textContent = kpi.overdue;
  $("#kpi-supervised").textContent = kpi.supervised;
  const m = today.totals.metrics;
  $("#kpi-reports").textContent = m.reports;
  $("#kpi-filed").textContent = m.filed;
  $("#kpi-closed").textContent = m.closed;
  $("#kpi-handling").textContent = fmtPct(m.on_time_handling_rate);
  map.update(mapView);
  renderBreadcrumb();
  renderChildren();
}

function todayRange() {
  return state.serverToday ? { from: state.serverToday, to: state.serverToday } : {};
}

function renderBreadcrumb() {
  if (!view) return;
  const chain = [...view.path, view.node];
  const rootIndex = chain.findIndex((n) => n.code === state.root);
  const visible = rootIndex >= 0 ? chain.slice(rootIndex) : [view.node];
  $("#breadcrumb").innerHTML = visible.map((n, i) => {
    const last = i === visible.length - 1;
    const name = n.code in refs.grids ? nameOf(refs.grids[n.code], n.code) : nameOf(n, n.code);
    return `${i ? '<span class="sep">›</span>' : ""}<button type="button" data-code="${esc(n.code)}" class="${last ? "current" : ""}">${esc(name)}</button>`;
  }).join("");
  for (const b of document.querySelectorAll("#breadcrumb button:not(.current)")) b.addEventListener("click", () => drillTo(b.dataset.code));
  const me = user();
  $("#scope-chip").textContent = `${t("view_scope")}: ${nameOf(view.node, view.node.code)}${me && me.node ? "" : ` · ${t("all_cases")}`}`;
}

function renderChildren() {
  if (!view) return;
  const badge = (n, cls) => `<span class="badge-n ${n ? cls : "z"}">${n}</span>`;
  const rows = view.children.length ? view.children : [{ ...view.node, ...view.totals }];
  $("#children").innerHTML = rows.map((c) =>
    `<tr data-code="${esc(c.code)}"><td class="name">${esc(nameOf(c, c.code))}<small>${esc(c.code)}</small></td>` +
    `<td class="num">${c.open}</td><td class="num">${badge(c.warning, "y")}</td><td class="num">${badge(c.overdue, "r")}</td>` +
    `<td class="num">${badge(c.supervised, "p")}</td></tr>`).join("");
}

// ------------------------------------------------------------------------------ queue
function resetPaging() { state.cursors = [null]; state.page = 0; }

function queueQuery() {
  const q = {
    node: state.node, sort: state.sort, order: state.order, q: state.q || undefined,
    priority: state.priority || undefined, level: state.level || undefined, department: state.department || undefined,
  };
  if (state.status) q.status = state.status; else q.open = "true";
  if (state.light === "supervised") q.supervised = "true";
  else if (state.light) q.light = state.light;
  return q;
}

/** The total of the default views comes from the map aggregates (no count(*) per refresh,
 * which matters with hundreds of thousands of open cases); other filters ask the queue. */
function knownTotal() {
  if (!view || state.status || state.priority || state.level || state.department || state.q) return null;
  const field = { "": "open", yellow: "warning", red: "overdue", supervised: "supervised" }[state.light];
  return field ? view.totals[field] : null;
}

let queueSeq = 0;
async function loadQueue({ flash = new Set() } = {}) {
  const mine = ++queueSeq;
  if (state.light === "reopen") return loadDecisions(mine);
  reopenCount(); // the chip's number, beside any list
  const page = state.page;
  const known = knownTotal();
  const data = await api("/v1/queue", {
    query: {
      ...queueQuery(), limit: PAGE, cursor: state.cursors[page] || undefined,
      with_total: known === null ? "true" : undefined,
    },
  });
  if (known !== null) data.total = knownTotal();
  if (mine !== queueSeq) return;
  state.cursors[page + 1] = data.next_cursor;
  state.cursors.length = page + 2;
  state.total = data.total;
  const before = state.rows;
  state.rows = new Map(data.items.map((r) => [r.case_no, r]));
  const body = $("#queue-body");
  syncRows(body, data.items);
  for (const r of data.items) {
    const old = before.get(r.case_no);
    if (flash.has(r.case_no) || (before.size && (!old || old.version !== r.version))) {
      flashRow(body.querySelector(`tr[data-case-no="${CSS.escape(r.case_no)}"]`));
    }
  }
  $("#queue-empty").hidden = data.items.length > 0;
  const first = page * PAGE + (data.items.length ? 1 : 0);
  $("#queue-count").textContent = `${t("count_of", { n: data.total ?? "?" })} · ${t("showing", { a: first, b: page * PAGE + data.items.length })}`;
  $("#page-no").textContent = String(page + 1);
  $("#page-prev").disabled = page === 0;
  $("#page-first").disabled = page === 0;
  $("#page-next").disabled = !data.next_cursor;
  markSelected();
}

// 回访不满意: closed cases whose return visit was dissatisfied, awaiting the shift leader's
// 重办 (reopen) or 不予重办 (decline_reopen) — GET /v1/return-visits/decisions, oldest visit
// first, paged by number. Opening one shows both actions in the case panel.
async function reopenCount() {
  const data = await api("/v1/return-visits/decisions", { query: { page_size: 1 } }).catch(() => null);
  const chip = $("#reopen-chip");
  chip.hidden = !data || (!data.total && state.light !== "reopen");
  $("#reopen-count").textContent = data && data.total ? String(data.total) : "";
}

async function loadDecisions(mine) {
  const page = state.page;
  const data = await api("/v1/return-visits/decisions", { query: { page: page + 1, page_size: PAGE } });
  if (mine !== queueSeq) return;
  state.total = data.total;
  state.cursors[page + 1] = page + 1 < data.pages ? `page-${page + 2}` : null;
  state.cursors.length = page + 2;
  state.rows = new Map(data.items.map((r) => [r.case_no, r]));
  syncRows($("#queue-body"), data.items);
  $("#queue-empty").hidden = data.items.length > 0;
  const first = page * PAGE + (data.items.length ? 1 : 0);
  $("#queue-count").textContent = `${t("count_of", { n: data.total })} · ${t("showing", { a: first, b: page * PAGE + data.items.length })}`;
  $("#page-no").textContent = String(page + 1);
  $("#page-prev").disabled = page === 0;
  $("#page-first").disabled = page === 0;
  $("#page-next").disabled = !state.cursors[page + 1];
  $("#reopen-chip").hidden = false;
  $("#reopen-count").textContent = data.total ? String(data.total) : "";
  markSelected();
}

function lightOf(r) {
  if (!r.due_at) return ""; // no clock runs (the event said so: finished cases have none)
  if (r.overdue) return "r";
  if (r.warning) return "y";
  return "g";
}

function rowHtml(r) {
  const cat = refs.categories[r.category];
  const grid = refs.grids[r.grid];
  const light = lightOf(r);
  let due = "—";
  const d = fmtDue(r.due_at);
  if (d) {
    due = `<span class="due ${light === "r" || d.overdue ? "r" : light === "y" ? "y" : ""}" title="${esc(fmtDateTime(r.due_at))}">${esc(d.text)}</span>`;
  }
  const dept = r.department ? nameOf(refs.departments[r.department], r.department) : "—";
  return `<tr data-case-no="${esc(r.case_no)}" data-status="${esc(r.status)}" data-grid="${esc(r.grid)}">` +
    `<td class="light-col"><span class="light ${light}"></span></td>` +
    `<td class="nowrap"><span class="case-no">${esc(r.case_no)}</span>${r.supervised ? `<span class="sup" title="${esc(t("supervised_mark"))}">${icon("flag")}</span>` : ""}</td>` +
    `<td class="ellip" title="${esc(`${r.category} · ${r.description || ""}`)}">${esc(cat ? nameOf(cat) : r.category)}</td>` +
    `<td class="ellip" title="${esc(placeTitle(r))}">${esc(grid ? nameOf(grid) : r.grid)}</td>` +
    `<td><span class="status ${esc(r.status)}">${esc(tStatus(r.status))}</span></td>` +
    `<td><span class="prio ${esc(r.priority)}">${esc(tPriority(r.priority))}</span></td>` +
    `<td class="ellip dept" title="${esc(r.department ? `${dept} (${r.department})` : "")}">${esc(dept)}</td>` +
    `<td class="nowrap">${due}</td><td class="nowrap" title="${esc(fmtDateTime(r.reported_at))}">${esc(fmtTime(r.reported_at))}</td></tr>`;
}

function placeTitle(r) {
  return [refs.nodes[r.district], refs.nodes[r.community], refs.grids[r.grid]]
    .filter(Boolean).map((n) => nameOf(n)).join(" › ") + ` (${r.grid})` + (r.address ? ` · ${r.address}` : "");
}

// The queue's rows are kept, not rebuilt: a refresh (once a second in a storm) patches the
// rows whose content changed, adds and removes the others and restores the order, so the row
// a dispatcher is clicking stays the same element (a rebuilt table swallowed the clicks that
// fell between two refreshes — and made a browser test's click retry for 20 s).
const rowTemplate = document.createElement("tbody");

function rowElement(html) {
  rowTemplate.innerHTML = html;
  const tr = rowTemplate.firstElementChild;
  tr._html = html;
  return tr;
}

function patchRow(tr, html) {
  if (tr._html === html) return;
  const fresh = rowElement(html);
  for (const a of [...tr.attributes]) if (!fresh.hasAttribute(a.name)) tr.removeAttribute(a.name);
  for (const a of [...fresh.attributes]) tr.setAttribute(a.name, a.value);
  tr.replaceChildren(...fresh.childNodes);
  tr._html = html;
}

function syncRows(body, items) {
  const kept = new Map([...body.children].map((tr) => [tr.dataset.caseNo, tr]));
  GDDom.placeInOrder(body, items.map((item) => {
    const html = rowHtml(item);
    const tr = kept.get(item.case_no);
    if (!tr) return rowElement(html);
    patchRow(tr, html);
    return tr;
  }));
}

function flashRow(tr) {
  if (!tr) return;
  tr.classList.remove("flash");
  void tr.offsetWidth; // restart the animation on a kept row
  tr.classList.add("flash");
}

function markSelected() {
  for (const tr of document.querySelectorAll("#queue-body tr")) tr.classList.toggle("selected", tr.dataset.caseNo === state.selected);
}

async function openCase(caseNo) {
  state.selected = caseNo;
  markSelected();
  await panel.open(caseNo);
}

async function exportQueue(fmt) {
  try {
    await download(`/v1/queue/export.${fmt}`, queueQuery(), `queue.${fmt}`);
  } catch (e) {
    toast(`${t("export_failed")}: ${e.message}`, "err");
  }
}

function renderAll() {
  if (!view) return;
  renderBreadcrumb();
  renderChildren();
  map.update(view);
  syncRows($("#queue-body"), [...state.rows.values()]);
  markSelected();
  applyStatic();
  renderOrder();
}

// ------------------------------------------------------------------------------ live
let liveNow = "connecting";
function liveState(s, seq) {
  liveNow = s;
  const el = $("#live");
  el.classList.toggle("on", s === "on");
  el.classList.toggle("off", s === "off");
  $("#live-text").textContent = t(s === "on" ? "live_on" : s === "off" ? "live_off" : "live_connecting");
  if (seq !== undefined && seq !== null) el.title = `EVENTS #${seq}`;
}

function onHello() {
  // Everything up to the hello id is in the read models now: (re)load once, then follow.
  scheduleRefresh(0);
}

function onReset() {
  toast(t("stream_reset"));
  scheduleRefresh(0);
}

let pendingFlash = new Set();
function onChanges(changes, lastId) {
  const el = $("#live");
  el.title = `EVENTS #${lastId}`;
  let panelTouched = false;
  for (const ch of changes) {
    if (ch.case_no) pendingFlash.add(ch.case_no);
    if (ch.case_no && ch.case_no === panel.caseNo) panelTouched = true;
    // Patch a visible row at once; the throttled re-read below settles order and membership.
    if (ch.case && state.rows.has(ch.case_no)) {
      state.rows.set(ch.case_no, ch.case);
      const tr = document.querySelector(`#queue-body tr[data-case-no="${CSS.escape(ch.case_no)}"]`);
      if (tr) {
        patchRow(tr, rowHtml(ch.case));
        flashRow(tr);
        markSelected();
      }
    }
  }
  if (panelTouched) panel.reload();
  scheduleRefresh();
}

let refreshTimer = null, refreshing = false, refreshAgain = false, lastRefresh = 0;
function scheduleRefresh(delay) {
  if (refreshing) { refreshAgain = true; return; }
  if (refreshTimer) return;
  const wait = delay ?? Math.max(150, 1000 - (Date.now() - lastRefresh));
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    refreshing = true;
    const flash = pendingFlash;
    pendingFlash = new Set();
    try {
      await refreshView();
      await loadQueue({ flash });
      if (state.tab === "metrics") await metrics.load();
    } catch (e) {
      if (e.status !== 401) console.warn("refresh failed", e);
    } finally {
      lastRefresh = Date.now();
      refreshing = false;
      if (refreshAgain) { refreshAgain = false; scheduleRefresh(); }
    }
  }, wait);
}

// ------------------------------------------------------------------------------ toasts
function toast(message, kind = "", ms = 4500) {
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.textContent = message;
  $("#toasts").append(el);
  if (ms) setTimeout(() => el.remove(), ms); // 0: stays (nothing else on the page to do)
}

window.addEventListener("resize", () => map?.invalidate());
document.addEventListener("layout-changed", () => setTimeout(() => {
  map?.invalidate();
  map?.focus(state.node === refs.cityCode ? null : state.node, false);
}, 50));
boot().catch((e) => { console.error(e); toast(e.message, "err"); });
