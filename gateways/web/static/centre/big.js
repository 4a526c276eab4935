// The big screen (大屏, /centre/big): live counters, the whole-jurisdiction map, the overdue
// list (longest overdue first) and the last 30 days' metrics rotating every 8 s. Nothing to
// click: after one sign-in it follows the live stream and re-reads at most once a second.
import { api, onAuthRequired, signIn, user } from "./api.js";
import { esc } from "./casepanel.js";
import { applyStatic, fmtClock, fmtDue, fmtPct, nameOf, t, zhEn } from "./i18n.js";
import { JurisdictionMap } from "./map.js";
import { LiveStream } from "./stream.js";

const $ = (sel) => document.querySelector(sel);
const refs = { categories: {}, grids: {}, city: null, levels: [] };
const ROTATE = ["closure_rate", "on_time_handling_rate", "on_time_closure_rate", "satisfaction_rate",
  "on_time_dispatch_rate", "dispatch_accuracy", "rework_rate", "reopen_rate", "filing_rate", "valid_report_rate",
  "reports", "closed"];
let map, defs, metricValues = {}, page = 0, serverToday = null, live;

async function boot() {
  applyStatic();
  const tick = () => { $("#clock").textContent = fmtClock(new Date()); };
  tick(); // at once: not "--:--:--" for the first second
  setInterval(tick, 1000);
  $("#signin-form").addEventListener("submit", onSignIn);
  onAuthRequired(() => { live?.stop(); $("#signin").hidden = false; });
  if (!user()) { $("#signin").hidden = false; $("#signin-form").append(window.GDI18N.demoBox(["dispatcher", "supervisor", "shift_leader"], fill)); return; }
  await start();
}
function fill(u, p) { $("#signin-username").value = u; $("#signin-password").value = p; }

async function onSignIn(e) {
  e.preventDefault();
  try {
    await signIn($("#signin-username").value.trim(), $("#signin-password").value);
    $("#signin").hidden = true;
    await start();
  } catch (ex) {
    $("#signin-error").textContent = ex.status === 401 ? t("signin_failed") : ex.message;
    $("#signin-error").hidden = false;
  }
}

let started = false;
async function start() {
  if (!started) {
    started = true;
    const [tree, cats, geo] = await Promise.all([api("/v1/jurisdiction"), api("/v1/categories"), api("/v1/grids.geojson")]);
    refs.city = tree.city;
    refs.levels = tree.levels;
    for (const c of cats.items) refs.categories[c.code] = c;
    for (const f of geo.features) refs.grids[f.properties.code] = f.properties;
    $("#city-name").textContent = nameOf(tree.city);
    map = new JurisdictionMap($("#map"), { onDrill: () => {}, basemap: tree.basemap });
    for (const h of ["dragging", "scrollWheelZoom", "doubleClickZoom", "boxZoom", "keyboard", "touchZoom"]) map.map[h]?.disable();
    map.map.zoomControl?.remove();
    map.setGeometry(geo, tree.levels);
    setInterval(rotate, 8000);
    setInterval(() => refresh(), 30000); // also without events: deadlines pass by themselves
  }
  await refresh();
  map.invalidate();
  map.focus(null, false);
  live?.stop();
  live = new LiveStream({ onHello: () => schedule(0), onChanges: () => schedule(), onReset: () => schedule(0), onState: liveState });
  live.start();
}

function liveState(s) {
  $("#live").classList.toggle("on", s === "on");
  $("#live").classList.toggle("off", s === "off");
  $("#live-text").textContent = t(s === "on" ? "live_on" : s === "off" ? "live_off" : "live_connecting");
}

let timer = null, last = 0;
function schedule(delay) {
  if (timer) return;
  timer = setTimeout(async () => { timer = null; last = Date.now(); await refresh().catch(() => {}); }, delay ?? Math.max(200, 1000 - (Date.now() - last)));
}

async function refresh() {
  const node = refs.city.code;
  const today = serverToday ? { from: serverToday, to: serverToday } : {};
  const [view, todays, overdue] = await Promise.all([
    api("/v1/map", { query: { node } }),
    api("/v1/metrics", { query: { node, group_by: "none", metrics: "reports,filed,closed,on_time_handling_rate", ...today } }),
    api("/v1/queue", { query: { node, open: "true", light: "red", sort: "due_at", order: "asc", limit: 14 } }),
  ]);
  if (!serverToday) serverToday = todays.to;
  const k = view.totals;
  for (const [id, v] of [["open", k.open], ["warning", k.warning], ["overdue", k.overdue], ["supervised", k.supervised]]) $(`#kpi-${id}`).textContent = v;
  const m = todays.totals.metrics;
  $("#kpi-reports").textContent = m.reports;
  $("#kpi-filed").textContent = m.filed;
  $("#kpi-closed").textContent = m.closed;
  $("#kpi-handling").textContent = fmtPct(m.on_time_handling_rate);
  map.update(view);
  $("#map-title").textContent = nameOf(view.node, view.node.code);
  renderOverdue(overdue.items, k.overdue);
  if (!defs || Date.now() - (metricValues.at || 0) > 60000) await loadMetrics();
}

function renderOverdue(items, total) {
  $("#overdue-count").textContent = t("count_of", { n: total });
  $("#overdue-list").innerHTML = items.length ? items.map((r) => {
    const cat = refs.categories[r.category], grid = refs.grids[r.grid];
    const due = fmtDue(r.due_at);
    return `<li><span class="no">${esc(r.case_no)}</span><span class="what">${esc(cat ? nameOf(cat) : r.category)} · ${esc(grid ? nameOf(grid) : r.grid)}</span>` +
      `<span class="late">${esc(due ? due.text : "")}</span></li>`;
  }).join("") : `<li><span class="empty">${esc(t("big_none_overdue"))}</span></li>`;
}

async function loadMetrics() {
  defs ||= await api("/v1/metrics/definitions");
  const data = await api("/v1/metrics", { query: { node: refs.city.code, group_by: "none" } });
  metricValues = { at: Date.now(), values: data.totals.metrics };
  renderMetrics();
}

function renderMetrics() {
  const keys = ROTATE.filter((k) => defs.metrics.some((d) => d.key === k) && k in (metricValues.values || {}));
  if (!keys.length) return;
  const per = 4, pages = Math.ceil(keys.length / per);
  page %= pages;
  $("#metric-page").textContent = `${page + 1} / ${pages}`;
  $("#metrics").innerHTML = keys.slice(page * per, page * per + per).map((k) => {
    const d = defs.metrics.find((x) => x.key === k);
    const v = metricValues.values[k];
    const shown = d.kind === "rate" ? fmtPct(v) : v ?? "—";
    return `<div class="bm"><span class="n">${esc(zhEn(d.zh, d.en))}</span><b>${esc(shown)}</b><span class="f">${esc(zhEn(d.formula_zh, d.formula_en))}</span></div>`;
  }).join("");
}

function rotate() { page += 1; if (defs) renderMetrics(); }

window.addEventListener("resize", () => { map?.invalidate(); map?.focus(null, false); });
boot().catch((e) => console.error(e));
