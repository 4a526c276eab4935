// Auditor page (审计): find a case, replay its history step by step from the event store,
// show its integrity, export. Talks only to /v1/auth/token and /v1/audit/* with a Bearer
// token kept in sessionStorage (it dies with the tab). Every read is recorded server-side.
import { drawWhere, whereHtml } from "/static/shared/evidence.js";

const KEY = "gd.audit.session";

// Words, dates and the language come from the shared catalogue (/static/shared/messages.js and
// i18n.js, loaded before this module): the same as on every other page.
const I = window.GDI18N;
const t = (key) => I.t(`audit.${key}`);
// The state panel: these fields, labelled, in this order; values translated (names, not codes).
const STATE_FIELDS = [
  "status", "level", "node", "department", "priority", "due", "due_step", "category", "grid", "reporter",
  "rework_count", "return_count", "extension_count", "escalations", "supervised", "satisfaction", "closed_at",
];
// Reference data for names (any signed-in user may read it), loaded once after sign-in.
const refs = { categories: {}, departments: {}, nodes: {}, grids: {}, levels: {}, people: new Map(), basemap: null };
async function loadRefs() {
  const get = (path) => api(path).catch(() => null);
  const [cats, deps, tree, grids] = await Promise.all([get("/v1/categories"), get("/v1/departments"), get("/v1/jurisdiction"), get("/v1/grids")]);
  for (const c of cats?.items || []) refs.categories[c.code] = c;
  for (const d of deps?.items || []) refs.departments[d.code] = d;
  for (const n of tree?.nodes || []) refs.nodes[n.code] = n;
  if (tree?.city) refs.nodes[tree.city.code] = tree.city;
  for (const l of tree?.levels || []) refs.levels[l.key] = l;
  refs.basemap = tree?.basemap || null;
  for (const g of grids?.items || []) refs.grids[g.code] = g;
}
async function loadPeople(ids) {
  const missing = [...new Set(ids)].filter((id) => id && !refs.people.has(id));
  if (!missing.length) return;
  for (const id of missing) refs.people.set(id, null);
  const data = await api("/v1/people", { ids: missing.join(",") }).catch(() => null);
  for (const p of data?.items || []) refs.people.set(p.user_id, p);
}
const person = (id) => refs.people.get(id)?.name || I.label("actor", id);
/** A field's value for people: translated words, names with the code after them. */
function show(key, v) {
  if (v === null || v === undefined || v === "") return "—";
  const named = (rec, code) => (rec ? `${I.name(rec)} (${code})` : String(code));
  switch (key) {
    case "status": case "from_status": case "to_status": return I.label("status", v);
    case "priority": return I.label("priority", v);
    case "due_step": return I.label("step", v);
    case "satisfaction": return I.label("satisfaction", v);
    case "source": case "channel": return I.label("source", v);
    case "kind": return I.label("kind", v);
    case "role": return I.label("role", v);
    case "level": return refs.levels[v] ? I.name(refs.levels[v]) : String(v);
    case "category": return named(refs.categories[v], v);
    case "department": return named(refs.departments[v], v);
    case "grid": return named(refs.grids[v], v);
    case "node": case "district": case "community": return named(refs.nodes[v] || refs.grids[v], v);
    case "actor": case "last_dispatcher": return `${person(v)}${person(v) === v ? "" : ` (${v})`}`;
    case "returned_from": return named(refs.departments[v], v);
    case "located_grid": return named(refs.grids[v], v);
    case "warning_for": case "overdue_for": {
      // "<step>@<due>": the deadline the light was raised for.
      const [step, at] = String(v).split("@");
      return at ? `${I.label("step", step)} · ${fmtTime(at)}` : String(v);
    }
    case "warned": case "overdue": case "supervised": case "overridden": return I.t(v ? "yes" : "no");
    case "reporters": // every reporter of the case, merged duplicates' included
      return Array.isArray(v) ? v.map((r) => show("reporter", r)).join("；") || "—" : String(v);
    case "reporter":
      return typeof v === "object"
        ? [v.name || (v.id ? person(v.id) : ""), v.phone, I.label("reporter_type", v.type)].filter(Boolean).join(" · ") || "—"
        : String(v);
    default: break;
  }
  if (typeof v === "boolean") return I.t(v ? "yes" : "no");
  return fmt(v);
}
const fieldName = (key) => I.label("field", key);

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
};

// ------------------------------------------------------------------ session and API
const session = () => { try { return JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch { return null; } };
const token = () => session()?.access_token || null;

class ApiError extends Error {
  constructor(status, body) { super(body?.message || `HTTP ${status}`); this.status = status; this.body = body; }
}

async function api(path, query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.append(k, v);
  const url = path + (q.toString() ? `?${q}` : "");
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token()}` } });
  const body = await res.json().catch(() => null);
  if (res.status === 401) { sessionStorage.removeItem(KEY); showSignin(); }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

function download(path, query) {
  // A plain link streams big exports straight to disk; the token rides in the query
  // (accepted on the export endpoints only and never written to the read log).
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) q.append(k, v);
  q.append("access_token", token());
  const a = el("a", { href: `${path}?${q}`, download: "" });
  document.body.append(a);
  a.click();
  a.remove();
}

function toast(text) {
  const box = $("#toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 3500);
}

const fmtTime = (iso) => I.dateTime(iso);
const fmt = (v) => {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT.*Z$/.test(v)) return fmtTime(v);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
};
const typeName = (type) => I.label("event", type);
const localDay = (d, plus = 0) => {
  if (!d) return null;
  const day = new Date(`${d}T00:00:00+08:00`);
  day.setUTCDate(day.getUTCDate() + plus);
  return day.toISOString();
};

// ------------------------------------------------------------------ i18n
function applyLang() {
  I.applyStatic(document);
  if (view.history) renderCase();
  renderHouseholdReads();
}

// ------------------------------------------------------------------ sign-in
function showSignin() { $("#signin").hidden = false; $("#app").hidden = true; $("#signout").hidden = true; $("#who").textContent = ""; }
function showApp() {
  const s = session();
  $("#signin").hidden = true; $("#app").hidden = false; $("#signout").hidden = false;
  $("#who").textContent = s?.user ? `${s.user.name || s.user.username} · ${I.label("role", s.user.role)}` : "";
  loadRefs().then(() => { if (view.history) renderCase(); }).catch(() => {});
}

async function signIn(ev) {
  ev.preventDefault();
  $("#signin-error").textContent = "";
  const form = new URLSearchParams({
    username: $("#signin-username").value, password: $("#signin-password").value,
    client_id: "audit-web",
  });
  const res = await fetch("/v1/auth/token", { method: "POST", body: form });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const word = { 401: "signin_failed", 403: "signin_disabled", 429: "signin_locked" }[res.status];
    $("#signin-error").textContent = word ? I.t(word) : body.message || `HTTP ${res.status}`;
    return;
  }
  const role = body.user?.role;
  if (role && role !== "auditor") { $("#signin-error").textContent = I.t("此页面供 {roles} 使用", { roles: I.label("role", "auditor") }); return; }
  sessionStorage.setItem(KEY, JSON.stringify(body));
  showApp();
}

// ------------------------------------------------------------------ finding
async function find(ev) {
  ev?.preventDefault();
  const body = await api("/v1/audit/cases", {
    q: $("#find-q").value.trim(), reporter: $("#find-reporter").value.trim(),
    grid: $("#find-grid").value.trim(), date: $("#find-date").value,
  });
  const tbody = $("#results tbody");
  tbody.replaceChildren();
  for (const c of body.items) {
    tbody.append(el("tr", { class: "pick", "data-case": c.case_no, onclick: () => openCase(c.case_no) },
      el("td", { class: "mono nowrap" }, c.case_no),
      el("td", { class: "nowrap" }, I.label("status", c.status)),
      el("td", { class: "nowrap muted" }, fmtTime(c.reported_at))));
  }
  $("#results-empty").hidden = body.items.length > 0;
  if (body.items.length === 1) openCase(body.items[0].case_no);
}

// ------------------------------------------------------------------ one case
const view = { history: null, states: [], index: 0, timer: null, perEvent: new Map() };

function foldStates(events) {
  // The state after each event = the previous state with the event's changed fields applied
  // (the server computed `changes` by replaying the aggregate, so this is its state).
  let state = {};
  return events.map((e) => {
    state = { ...state };
    for (const [k, c] of Object.entries(e.changes || {})) state[k] = c.to;
    state.version = e.version;
    state.updated_at = e.at;
    return state;
  });
}

async function openCase(caseNo) {
  stop();
  const history = await api(`/v1/audit/cases/${encodeURIComponent(caseNo)}/history`);
  view.history = history;
  view.states = foldStates(history.events);
  view.index = history.events.length - 1;
  view.perEvent = new Map((history.integrity?.per_event || []).map((p) => [p.position, p]));
  for (const row of document.querySelectorAll("#results tr")) row.classList.toggle("sel", row.dataset.case === caseNo);
  $("#case").hidden = false;
  $("#placeholder").hidden = true;
  $("#hh-reads-view").hidden = true;
  renderCase();
  loadReads(caseNo);
}

// ------------------------------------------------------------------ where and 核查 evidence
// The case's point and the on-site evidence of its last 核查 (distance from the case with the
// category's limit, photo time, both pinned over the base map): shared/evidence.js, the same
// as the command centre's case panel. From the event store's history (final state, events).
let whereMap = null;
let whereDrawn = 0; // the latest call: an earlier one still waiting for the outlines stops
let gridRings = null; // grid code -> outline, from GET /v1/grids.geojson (once)
async function renderWhere() {
  const h = view.history;
  const box = $("#case-where");
  const mine = ++whereDrawn;
  if (whereMap) { whereMap.remove(); whereMap = null; }
  if (!h) { box.hidden = true; return; }
  const state = h.state || view.states[view.states.length - 1] || {};
  const events = h.events || [];
  const html = whereHtml(state, events, { person, address: true });
  box.hidden = !html;
  box.innerHTML = html;
  if (!html) return;
  if (!gridRings) {
    const geo = await api("/v1/grids.geojson").catch(() => null);
    gridRings ||= {};
    for (const f of geo?.features || []) gridRings[f.properties.code] = { ring: f.geometry?.coordinates?.[0] };
  }
  if (mine !== whereDrawn || view.history !== h) return; // drawn again meanwhile
  whereMap = drawWhere(box, state, events, {
    basemap: refs.basemap, grid: gridRings[state.grid], theme: "light", fetchJSON: (url) => api(url),
  });
}

function renderCase() {
  const h = view.history;
  const n = h.events.length;
  $("#case-no").textContent = h.case_no;
  const last = h.state || {};
  $("#case-sub").textContent = `${show("category", last.category)} · ${t("grid")} ${show("grid", last.grid)} · ${h.partition} · ${n} ${t("events")}`;
  const actorLine = (e) => `${fmtTime(e.at)} · ${person(e.actor)} (${I.label("role", e.role)}, ${show("channel", e.channel)})`;
  const reporterIds = [...(last.reporters || []), last.reporter].map((r) => (r && typeof r === "object" ? r.id : null));
  loadPeople([...h.events.map((e) => e.actor), ...reporterIds]).then(() => {
    if (view.history !== h) return;
    // The timeline by name too, now that the names are here (it was drawn with the ids).
    h.events.forEach((e, i) => { const span = $("#timeline").children[i]?.querySelector("span.muted"); if (span) span.textContent = actorLine(e); });
    renderStep();
    renderWhere().catch((e) => toast(e.message));
  });
  const integ = h.integrity || {};
  const badge = $("#integrity");
  badge.className = `badge ${integ.ok ? "ok" : "bad"}`;
  badge.textContent = integ.ok ? `✓ ${t("intact")}` : `✗ ${t("tampered")}`;
  badge.dataset.ok = integ.ok ? "true" : "false";
  const fp = integ.first_problem;
  $("#integrity-detail").textContent = fp
    ? `${t("first_problem")}: ${fp.kind} — ${t("position")} ${fp.partition}:${fp.position}, ${t("version")} ${fp.version}: ${fp.detail}`
    : `${integ.events ?? n} ${t("events")}, ${integ.sealed ?? 0} ${t("sealed")}, ${(integ.events ?? n) - (integ.sealed ?? 0)} ${t("unsealed")} · ${t("hash")} ${String(integ.last_hash || "").slice(0, 16)}…`;
  const slider = $("#slider");
  slider.max = String(n);
  slider.value = String(view.index + 1);
  const list = $("#timeline");
  list.replaceChildren();
  h.events.forEach((e, i) => {
    const status = view.perEvent.get(e.position);
    const bad = status && status.status !== "ok";
    const seal = status ? (bad ? `✗ ${status.status}` : status.sealed ? `✓ ${t("sealed")}` : t("unsealed")) : "";
    list.append(el("li", { "data-step": String(i + 1), class: bad ? "bad" : "", onclick: () => go(i) },
      el("strong", {}, `v${e.version} ${typeName(e.type)}`), " ",
      el("span", { class: "muted", title: e.actor }, actorLine(e)), " ",
      el("span", { class: "seal" }, seal)));
  });
  renderStep();
}

function renderStep() {
  const h = view.history;
  const i = view.index;
  const e = h.events[i];
  const state = view.states[i];
  $("#slider").value = String(i + 1);
  $("#step-label").textContent = `${t("step")} ${i + 1} ${t("of")} ${h.events.length} · ${fmtTime(e.at)}`;
  const kv = [
    [t("event"), typeName(e.type) === e.type ? e.type : `${typeName(e.type)} (${e.type})`], // the code once in English [t("version"), e.version], [t("at"), fmtTime(e.at)],
    [t("actor"), show("actor", e.actor)], [t("role"), show("role", e.role)], [t("channel"), show("channel", e.channel)], [t("reason"), e.reason],
    [t("status_change"), `${e.from_status ? show("status", e.from_status) : "—"} → ${show("status", e.to_status)}`],
    [t("position"), `${h.partition}:${e.position}`], [t("hash"), e.hash], [t("prev_hash"), e.prev_hash || "∅"],
  ];
  const dl = $("#event");
  dl.replaceChildren();
  for (const [k, v] of kv) dl.append(el("dt", {}, k), el("dd", { class: k === t("hash") || k === t("prev_hash") ? "mono small" : "" }, fmt(v)));
  const tbody = $("#changes tbody");
  tbody.replaceChildren(el("tr", {}, el("th", {}, t("field")), el("th", {}, t("before")), el("th", {}, t("after"))));
  // status_zh repeats status in Chinese (the read models keep it): not a change of its own.
  const changes = Object.entries(e.changes || {}).filter(([k]) => k !== "status_zh");
  if (!changes.length) tbody.append(el("tr", {}, el("td", { colspan: "3", class: "muted" }, t("nothing_changed"))));
  for (const [k, c] of changes) {
    tbody.append(el("tr", {}, el("td", { title: k }, fieldName(k)), el("td", { class: "change-from" }, show(k, c.from)), el("td", { class: "change-to" }, show(k, c.to))));
  }
  const sdl = $("#state");
  sdl.replaceChildren();
  for (const key of STATE_FIELDS) {
    const raw = state[key];
    const code = raw === null || raw === undefined || typeof raw === "object" ? "" : String(raw);
    sdl.append(el("dt", { title: key }, fieldName(key)), el("dd", { "data-field": key, title: code }, show(key, raw)));
  }
  $("#state-version").textContent = `${t("version")} ${state.version}`;
  $("#state-json").textContent = JSON.stringify(state, null, 2);
  for (const li of document.querySelectorAll("#timeline li")) {
    const step = Number(li.dataset.step) - 1;
    li.classList.toggle("done", step <= i);
    li.classList.toggle("current", step === i);
  }
}

function go(i) {
  view.index = Math.max(0, Math.min(view.history.events.length - 1, i));
  renderStep();
}

function stop() {
  if (view.timer) clearInterval(view.timer);
  view.timer = null;
  $("#play").textContent = "▶";
}

function togglePlay() {
  if (view.timer) { stop(); return; }
  if (view.index >= view.history.events.length - 1) go(0);
  $("#play").textContent = "⏸";
  view.timer = setInterval(() => {
    if (view.index >= view.history.events.length - 1) { stop(); return; }
    go(view.index + 1);
  }, 900);
}

function asOf() {
  const value = $("#asof").value;
  if (!value || !view.history) return;
  const when = new Date(value).getTime();
  let index = -1;
  view.history.events.forEach((e, i) => { if (new Date(e.at).getTime() <= when) index = i; });
  if (index < 0) { toast(t("not_yet")); return; }
  stop();
  go(index);
}

async function loadReads(caseNo) {
  const body = await api("/v1/audit/reads", { case_no: caseNo, limit: 50 });
  const tbody = $("#reads tbody");
  tbody.replaceChildren(el("tr", {}, el("th", {}, t("at")), el("th", {}, t("user")), el("th", {}, t("path"))));
  for (const r of body.items) tbody.append(el("tr", {}, el("td", {}, fmtTime(r.at)), el("td", {}, `${r.user_id} (${r.role})`), el("td", { class: "mono" }, r.path + (r.query ? `?${r.query}` : ""))));
}

// ------------------------------------------------------------------ household read log
// Who read which household (六必访 register: details, lists, exports), from
// GET /v1/households/reads: readers by name, households by number and address.
const HH_WHAT = ["detail", "history", "register", "worklist", "export"];
let hhReads = null; // the last answer, drawn again when the language changes
async function householdReads(ev) {
  ev?.preventDefault();
  const body = await api("/v1/households/reads", {
    household: $("#hh-reads-household").value.trim(), reader: $("#hh-reads-reader").value.trim(),
    since: localDay($("#hh-reads-since").value), until: localDay($("#hh-reads-until").value, 1), limit: 500,
  });
  hhReads = body.reads;
  await loadPeople(hhReads.map((r) => r.user_id));
  // The reader box offers the readers seen so far by name (its value is the user name).
  const list = $("#hh-readers");
  const known = new Set([...list.options].map((o) => o.value));
  for (const id of new Set(hhReads.map((r) => r.user_id))) {
    if (!known.has(id)) list.append(el("option", { value: id, label: person(id) === id ? id : `${person(id)} · ${id}` }));
  }
  stop();
  $("#case").hidden = true;
  $("#placeholder").hidden = true;
  $("#hh-reads-view").hidden = false;
  renderHouseholdReads();
}
function renderHouseholdReads() {
  if (!hhReads) return;
  // The worklist and register lists are logged on every refresh: the reads that showed
  // sensitive facts can be picked out of them.
  const reads = $("#hh-reads-sensitive").checked ? hhReads.filter((r) => r.sensitive_shown) : hhReads;
  $("#hh-reads-summary").textContent = I.t("audit.hh_reads_count", { n: hhReads.length, s: hhReads.filter((r) => r.sensitive_shown).length });
  const tbody = $("#hh-reads tbody");
  tbody.replaceChildren(el("tr", {}, ...["at", "reader", "role", "hh_what", "hh_households", "hh_sensitive"].map((k) => el("th", {}, t(k)))));
  if (!reads.length) tbody.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, t("hh_none"))));
  for (const r of reads) {
    const households = el("td", { class: "hh-list" });
    r.households.forEach((hh, i) => {
      if (i) households.append(el("br"));
      households.append(el("span", { class: "mono nowrap", title: hh.household_id }, hh.household_no || "—"), " ", hh.address || "");
    });
    const name = person(r.user_id);
    tbody.append(el("tr", { "data-reader": r.user_id },
      el("td", { class: "nowrap" }, fmtTime(r.at)),
      el("td", { title: r.user_id }, name === r.user_id ? name : `${name} (${r.user_id})`),
      el("td", { class: "nowrap" }, I.label("role", r.role)),
      el("td", { class: "nowrap", title: r.path || "" }, HH_WHAT.includes(r.what) ? t(`hh_what_${r.what}`) : r.what),
      households,
      el("td", { class: r.sensitive_shown ? "sensitive nowrap" : "nowrap" }, I.t(r.sensitive_shown ? "yes" : "no"))));
  }
}

// ------------------------------------------------------------------ activity, log, exports
function activityQuery() {
  return {
    [$("#act-kind").value]: $("#act-value").value.trim(),
    since: localDay($("#act-since").value), until: localDay($("#act-until").value, 1),
  };
}

async function activity(ev) {
  ev.preventDefault();
  const body = await api("/v1/audit/activity", { ...activityQuery(), limit: 500 });
  $("#act-summary").textContent = `${body.count} ${t("events_found")}, ${body.cases} ${t("cases")}${body.truncated ? t("truncated") : ""}`;
  const tbody = $("#act-list tbody");
  tbody.replaceChildren();
  for (const e of body.events) {
    tbody.append(el("tr", { class: "pick", onclick: () => openCase(e.case_no) },
      el("td", {}, fmtTime(e.at)), el("td", { class: "mono" }, e.case_no),
      el("td", {}, typeName(e.type)), el("td", {}, `${e.actor} (${e.role})`)));
  }
}

async function heads() {
  const body = await api("/v1/audit/heads");
  const box = $("#heads");
  box.replaceChildren();
  for (const p of body.partitions) {
    const s = p.sealed;
    box.append(el("div", {}, `${p.partition}: ${t("store_head")} ${p.store_head} · ${t("sealed")} ${s ? s.position : 0} · ${t("chain")} ${s ? s.chain.slice(0, 16) + "…" : "∅"} · ${t("unsealed")} ${p.unsealed}`));
  }
}

function wire() {
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); showSignin(); });
  $("#lang-slot").replaceChildren(I.picker());
  I.onLang(applyLang);
  $("#signin-form").append(I.demoBox(["auditor"], (u, p) => { $("#signin-username").value = u; $("#signin-password").value = p; }));
  $("#find-form").addEventListener("submit", (ev) => find(ev).catch((e) => toast(e.message)));
  $("#act-form").addEventListener("submit", (ev) => activity(ev).catch((e) => toast(e.message)));
  $("#hh-reads-form").addEventListener("submit", (ev) => householdReads(ev).catch((e) => toast(e.message)));
  $("#hh-reads-sensitive").addEventListener("change", renderHouseholdReads);
  $("#slider").addEventListener("input", (ev) => { stop(); go(Number(ev.target.value) - 1); });
  $("#play").addEventListener("click", togglePlay);
  $("#asof").addEventListener("change", asOf);
  $("#heads-go").addEventListener("click", () => heads().catch((e) => toast(e.message)));
  $("#export-case-jsonl").addEventListener("click", () => download("/v1/audit/export.jsonl", { case_no: view.history.case_no }));
  $("#export-case-csv").addEventListener("click", () => download("/v1/audit/export.csv", { case_no: view.history.case_no }));
  $("#act-export-jsonl").addEventListener("click", () => download("/v1/audit/export.jsonl", activityQuery()));
  $("#act-export-csv").addEventListener("click", () => download("/v1/audit/export.csv", activityQuery()));
  $("#export-all-jsonl").addEventListener("click", () => download("/v1/audit/export.jsonl", {}));
  $("#export-all-csv").addEventListener("click", () => download("/v1/audit/export.csv", {}));
  window.addEventListener("unhandledrejection", (ev) => { ev.preventDefault(); toast(ev.reason?.message || String(ev.reason)); });
}

wire();
applyLang();
if (token()) showApp(); else showSignin();
const wanted = new URLSearchParams(location.search).get("case");
if (wanted && token()) openCase(wanted).catch((e) => toast(e.message));
