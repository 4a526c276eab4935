// Auditor page (审计): find a case, replay its history step by step from the event store,
// show its integrity, export. Talks only to /v1/auth/token and /v1/audit/* with a Bearer
// token kept in sessionStorage (it dies with the tab). Every read is recorded server-side.
const KEY = "gd.audit.session";
const LANG_KEY = "gd.audit.lang";

const T = {
  zh: {
    title: "案件审计", subtitle: "事件溯源 · 哈希链 · 可验证导出", signin: "审计员登录",
    username: "用户名", password: "密码", signin_go: "登录", signout: "退出",
    find: "查找案件", case_no: "案件编号", reporter: "上报人 / 电话", grid: "网格",
    date: "上报日期", search: "查找", no_results: "没有找到案件",
    activity: "网格 / 部门 / 人员 的历史", filter_by: "按", department: "部门", actor: "操作人",
    code: "编码 / 用户", since: "自", until: "至", show: "显示", log: "全量日志",
    heads: "链头", export_all_jsonl: "全部导出 JSONL", export_all_csv: "全部导出 CSV",
    export_jsonl: "导出 JSONL", export_csv: "导出 CSV", as_of: "时点", event: "事件",
    changes: "变更字段", state: "状态", all_fields: "全部字段", timeline: "时间线",
    reads: "查阅记录（谁在何时查看了此案件）",
    pick: "在左侧查找并选择一个案件，回放其完整历史。",
    step: "步骤", of: "/", version: "版本", at: "时间", role: "角色", channel: "渠道",
    reason: "原因", status_change: "状态变化", position: "日志位置", hash: "哈希",
    prev_hash: "前一哈希", field: "字段", before: "之前", after: "之后",
    intact: "完整性已验证", tampered: "发现篡改", events: "事件", sealed: "已封存",
    unsealed: "未封存", not_yet: "该时点案件尚不存在", events_found: "条事件",
    cases: "个案件", truncated: "（已截断）", store_head: "存储头", chain: "链值",
    user: "用户", path: "路径", nothing_changed: "（无字段变化）", first_problem: "首个问题",
  },
  en: {
    title: "Case audit", subtitle: "event sourcing · hash chains · verifiable exports",
    signin: "Auditor sign-in", username: "Username", password: "Password", signin_go: "Sign in",
    signout: "Sign out", find: "Find a case", case_no: "Case number",
    reporter: "Reporter / phone", grid: "Grid", date: "Reported on", search: "Search",
    no_results: "No case found", activity: "History of a grid / department / person",
    filter_by: "By", department: "Department", actor: "Actor", code: "Code / user",
    since: "From", until: "To", show: "Show", log: "Whole log", heads: "Chain heads",
    export_all_jsonl: "Export all JSONL", export_all_csv: "Export all CSV",
    export_jsonl: "Export JSONL", export_csv: "Export CSV", as_of: "As of", event: "Event",
    changes: "Fields changed", state: "State", all_fields: "All fields", timeline: "Timeline",
    reads: "Read log (who looked at this case, when)",
    pick: "Find and pick a case on the left to replay its whole history.",
    step: "Step", of: "/", version: "Version", at: "Time", role: "Role", channel: "Channel",
    reason: "Reason", status_change: "Status", position: "Log position", hash: "Hash",
    prev_hash: "Previous hash", field: "Field", before: "Before", after: "After",
    intact: "Integrity verified", tampered: "Tampering detected", events: "events",
    sealed: "sealed", unsealed: "unsealed", not_yet: "The case did not exist yet at that time",
    events_found: "events", cases: "cases", truncated: " (truncated)", store_head: "store head",
    chain: "chain", user: "User", path: "Path", nothing_changed: "(no field changed)",
    first_problem: "First problem",
  },
};

const TYPES = {
  Reported: ["上报", "Reported"], Filed: ["立案", "Filed"], Rejected: ["不予立案", "Rejected"],
  MarkedDuplicate: ["标记重复", "Marked duplicate"], ReporterLinked: ["关联上报人", "Reporter linked"],
  Dispatched: ["派遣", "Dispatched"], Accepted: ["接单", "Accepted"], Returned: ["退单", "Returned"],
  ExtensionRequested: ["延期申请", "Extension requested"],
  ExtensionApproved: ["批准延期", "Extension approved"],
  ExtensionRefused: ["驳回延期", "Extension refused"], Suspended: ["挂账", "Suspended"],
  Resumed: ["恢复处置", "Resumed"], ResultReported: ["处置反馈", "Result reported"],
  VerificationPassed: ["核查通过", "Verification passed"],
  VerificationFailed: ["核查不通过（返工）", "Verification failed (rework)"],
  Escalated: ["上提一级", "Escalated"], Supervised: ["督办", "Supervision order"],
  Closed: ["结案", "Closed"], ReturnVisited: ["回访", "Return visit"],
  WarningMarked: ["黄灯预警", "Yellow light"], OverdueMarked: ["红灯超期", "Overdue (red)"],
};

const STATE_FIELDS = [
  ["status", "状态", "Status"], ["level", "层级", "Level"], ["node", "责任节点", "Node"],
  ["department", "处置部门", "Department"], ["priority", "优先级", "Priority"],
  ["due", "时限", "Deadline"], ["due_step", "计时环节", "Deadline step"],
  ["category", "类别", "Category"], ["grid", "网格", "Grid"],
  ["reporter", "上报人", "Reporter"],
  ["rework_count", "返工次数", "Rework"], ["return_count", "退单次数", "Returns"],
  ["extension_count", "延期次数", "Extensions"], ["escalations", "上提次数", "Escalations"],
  ["supervised", "督办", "Supervised"], ["satisfaction", "满意度", "Satisfaction"],
  ["closed_at", "结案时间", "Closed at"],
];

let lang = localStorage.getItem(LANG_KEY) || "zh";
const t = (key) => T[lang][key] ?? T.zh[key] ?? key;
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

const fmtTime = (iso) => {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { timeZone: "Asia/Shanghai", hour12: false });
};
const fmt = (v) => {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT.*Z$/.test(v)) return fmtTime(v);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
};
const typeName = (type) => (TYPES[type] ? TYPES[type][lang === "zh" ? 0 : 1] : type);
const localDay = (d, plus = 0) => {
  if (!d) return null;
  const day = new Date(`${d}T00:00:00+08:00`);
  day.setUTCDate(day.getUTCDate() + plus);
  return day.toISOString();
};

// ------------------------------------------------------------------ i18n
function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("#lang").textContent = lang === "zh" ? "EN" : "中文";
  if (view.history) renderCase();
}

// ------------------------------------------------------------------ sign-in
function showSignin() { $("#signin").hidden = false; $("#app").hidden = true; $("#signout").hidden = true; $("#who").textContent = ""; }
function showApp() {
  const s = session();
  $("#signin").hidden = true; $("#app").hidden = false; $("#signout").hidden = false;
  $("#who").textContent = s?.user ? `${s.user.name || s.user.username} · ${s.user.role}` : "";
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
  if (!res.ok) { $("#signin-error").textContent = body.message || `HTTP ${res.status}`; return; }
  const role = body.user?.role;
  if (role && role !== "auditor") { $("#signin-error").textContent = `role ${role}: auditors only`; return; }
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
      el("td", { class: "nowrap" }, lang === "zh" ? (c.status_zh || c.status || "") : (c.status || "")),
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
  renderCase();
  loadReads(caseNo);
}

function renderCase() {
  const h = view.history;
  const n = h.events.length;
  $("#case-no").textContent = h.case_no;
  const last = h.state || {};
  $("#case-sub").textContent = `${last.category || ""} · ${t("grid")} ${last.grid || ""} · ${h.partition} · ${n} ${t("events")}`;
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
      el("span", { class: "muted" }, `${fmtTime(e.at)} · ${e.actor} (${e.role}, ${e.channel})`), " ",
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
    [t("event"), lang === "zh" ? `${typeName(e.type)} (${e.type})` : typeName(e.type)], [t("version"), e.version], [t("at"), fmtTime(e.at)],
    [t("actor"), e.actor], [t("role"), e.role], [t("channel"), e.channel], [t("reason"), e.reason],
    [t("status_change"), `${e.from_status || "—"} → ${e.to_status}`],
    [t("position"), `${h.partition}:${e.position}`], [t("hash"), e.hash], [t("prev_hash"), e.prev_hash || "∅"],
  ];
  const dl = $("#event");
  dl.replaceChildren();
  for (const [k, v] of kv) dl.append(el("dt", {}, k), el("dd", { class: k === t("hash") || k === t("prev_hash") ? "mono small" : "" }, fmt(v)));
  const tbody = $("#changes tbody");
  tbody.replaceChildren(el("tr", {}, el("th", {}, t("field")), el("th", {}, t("before")), el("th", {}, t("after"))));
  const changes = Object.entries(e.changes || {});
  if (!changes.length) tbody.append(el("tr", {}, el("td", { colspan: "3", class: "muted" }, t("nothing_changed"))));
  for (const [k, c] of changes) {
    tbody.append(el("tr", {}, el("td", {}, k), el("td", { class: "change-from" }, fmt(c.from)), el("td", { class: "change-to" }, fmt(c.to))));
  }
  const sdl = $("#state");
  sdl.replaceChildren();
  for (const [key, zh, en] of STATE_FIELDS) {
    let value = state[key];
    if (key === "status" && lang === "zh" && state.status_zh) value = `${state.status_zh} (${state.status})`;
    if (key === "reporter" && value) value = [value.name, value.phone, value.id, value.type].filter(Boolean).join(" · ");
    sdl.append(el("dt", {}, lang === "zh" ? zh : en), el("dd", { "data-field": key }, fmt(value)));
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
  $("#lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem(LANG_KEY, lang); applyLang(); });
  $("#find-form").addEventListener("submit", (ev) => find(ev).catch((e) => toast(e.message)));
  $("#act-form").addEventListener("submit", (ev) => activity(ev).catch((e) => toast(e.message)));
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
