// Chinese and English (中文 / English). Chinese is the default: dispatchers work in it; the
// English column keeps the screen usable for visitors and for the README screenshots.
const STRINGS = {
  title: ["網格化管理指揮中心", "Grid Command Centre"],
  subtitle: ["12319 城市管理指揮調度", "12319 city management dispatch"],
  kpi_open: ["在辦", "Open"],
  kpi_warning: ["黃燈預警", "Yellow"],
  kpi_overdue: ["超期", "Overdue"],
  kpi_supervised: ["督辦", "Supervised"],
  kpi_reports: ["今日上報", "Reports today"],
  kpi_filed: ["今日立案", "Filed today"],
  kpi_closed: ["今日結案", "Closed today"],
  kpi_handling: ["按期處置率", "On-time handling"],
  live_connecting: ["連接中", "Connecting"],
  live_on: ["實時", "Live"],
  live_off: ["已斷開, 重連中", "Offline, retrying"],
  sign_out: ["登出", "Sign out"],
  sign_in: ["登錄", "Sign in"],
  signin_title: ["指揮中心登錄", "Command centre sign-in"],
  signin_hint: ["使用您的賬號登錄 (OAuth2 / JWT)", "Sign in with your account (OAuth2 / JWT)"],
  username: ["用戶名", "Username"],
  password: ["密碼", "Password"],
  legend_none: ["無案件", "None"],
  legend_ontime: ["全部正常", "All on time"],
  legend_some: ["有預警/超期", "Some late"],
  legend_severe: ["超期 ≥ 30%", "≥ 30 % late"],
  legend_open: ["在辦", "Open"],
  legend_yellow: ["預警", "Yellow"],
  legend_red: ["超期", "Overdue"],
  col_place: ["區域", "Area"],
  col_case: ["案件號", "Case"],
  col_category: ["類別", "Category"],
  col_status: ["狀態", "Status"],
  col_priority: ["優先級", "Priority"],
  col_department: ["處置部門", "Department"],
  col_due: ["時限", "Deadline"],
  col_reported: ["上報時間", "Reported"],
  tab_queue: ["案件隊列", "Queue"],
  tab_metrics: ["綜合評價", "Evaluation"],
  f_all_open: ["全部在辦", "All open"],
  f_green: ["正常", "On time"],
  f_yellow: ["預警", "Yellow"],
  f_red: ["超期", "Overdue"],
  f_supervised: ["督辦", "Supervised"],
  f_search: ["案件號 / 描述 / 地址", "Case no. / text / address"],
  any_status: ["全部狀態", "Any status"],
  any_priority: ["全部優先級", "Any priority"],
  any_level: ["全部層級", "Any level"],
  any_department: ["全部部門", "Any department"],
  sort_reported_at: ["按上報時間", "By reported"],
  sort_due_at: ["按時限", "By deadline"],
  sort_priority: ["按優先級", "By priority"],
  sort_updated_at: ["按更新時間", "By last change"],
  queue_empty: ["沒有符合條件的案件", "No case matches"],
  page_first: ["首頁", "First"],
  page_prev: ["上一頁", "Prev"],
  page_next: ["下一頁", "Next"],
  count_of: ["共 {n} 件", "{n} cases"],
  showing: ["第 {a}-{b} 件", "{a}-{b}"],
  chart_counts: ["每日案件量", "Cases per day"],
  chart_rates: ["每日比率", "Rates per day"],
  definitions: ["指標定義 (口徑)", "Metric definitions"],
  group_none: ["不分組", "No grouping"],
  group_day: ["按日", "By day"],
  group_week: ["按周", "By week"],
  group_month: ["按月", "By month"],
  group_department: ["按部門", "By department"],
  group_level: ["按層級", "By level"],
  group_inspector: ["按網格員", "By inspector"],
  group_grid: ["按網格", "By grid"],
  period_days: ["近 {n} 天", "Last {n} days"],
  reporter: ["上報人", "Reporter"],
  place: ["位置", "Place"],
  category: ["類別", "Category"],
  level: ["層級", "Level"],
  department: ["部門", "Department"],
  proposal: ["分撥建議", "Triage proposal"],
  source: ["來源", "Source"],
  counters: ["計數", "Counters"],
  description: ["描述", "Description"],
  deadline: ["當前環節時限", "Current deadline"],
  remaining: ["剩餘", "left"],
  overdue_by: ["已超期", "overdue by"],
  no_clock: ["無計時", "no clock running"],
  photos: ["照片", "Photos"],
  no_photos: ["無照片", "No photos"],
  timeline: ["處置過程", "Timeline"],
  actions: ["可執行操作", "Actions you may take"],
  no_actions: ["當前狀態下您無可執行的操作", "Nothing you may do in this state"],
  submit: ["確認", "Confirm"],
  cancel: ["取消", "Cancel"],
  done: ["已完成: {a}", "Done: {a}"],
  queued: ["已提交, 等待處理: {a}", "Queued: {a}"],
  reason: ["原因", "Reason"],
  note: ["備註", "Note"],
  comment: ["回訪意見", "Comment"],
  of_case_no: ["原案件號 (合併到)", "Original case no. (merge into)"],
  override_reason: ["改派 / 調整原因 (與建議不同時必填)", "Override reason (required when differing from the proposal)"],
  priority: ["優先級", "Priority"],
  pending_extension: ["延期申請", "Extension requested"],
  hours: ["小時", "hours"],
  satisfaction: ["滿意度", "Satisfaction"],
  review_at: ["復核日期", "Review date"],
  rework: ["返工", "Rework"],
  returns: ["退單", "Returns"],
  escalations: ["上提", "Escalations"],
  extensions: ["延期", "Extensions"],
  stream_reset: ["實時連接已重置, 已重新載入", "Live stream reset; data reloaded"],
  export_failed: ["導出失敗", "Export failed"],
  all_cases: ["全部轄區", "whole jurisdiction"],
  view_scope: ["範圍", "Scope"],
};

const PRIORITY = { urgent: ["緊急", "Urgent"], important: ["重要", "Important"], ordinary: ["一般", "Ordinary"] };
const STATUS = {
  reported: ["已上報(待立案)", "Reported"], filed: ["已立案(待派遣)", "Filed"],
  rejected: ["不予立案", "Rejected"], merged: ["已合併(重複)", "Merged"],
  dispatched: ["已派遣(待接單)", "Dispatched"], in_progress: ["處置中", "In progress"],
  returned: ["已退單(待重派)", "Returned"], suspended: ["掛賬", "Suspended"],
  awaiting_verification: ["待核查", "Awaiting verification"], verified: ["核查通過(待結案)", "Verified"],
  closed: ["已結案", "Closed"],
};
const ACTIONS = {
  file: ["立案", "File"], reject: ["不予立案", "Reject"], mark_duplicate: ["標記重複(合併)", "Merge duplicate"],
  dispatch: ["派遣", "Dispatch"], accept: ["接單", "Accept"], return_case: ["退單", "Return"],
  request_extension: ["延期申請", "Request extension"], approve_extension: ["批准延期", "Approve extension"],
  refuse_extension: ["駁回延期", "Refuse extension"], suspend: ["掛賬", "Suspend"], resume: ["恢復處置", "Resume"],
  report_result: ["處置反饋", "Report result"], verify_pass: ["核查通過", "Verification passed"],
  verify_fail: ["核查不通過(返工)", "Verification failed"], escalate: ["上提一級", "Escalate"],
  supervise: ["督辦", "Supervise"], close: ["結案", "Close"], return_visit: ["回訪", "Return visit"],
  reopen: ["重办", "Reopen"],
};
const EVENTS = {
  Reported: ["上報", "Reported"], Filed: ["立案", "Filed"], Rejected: ["不予立案", "Rejected"],
  MarkedDuplicate: ["合併為重複", "Merged as duplicate"], ReporterLinked: ["關聯上報人", "Reporter linked"],
  Dispatched: ["派遣", "Dispatched"], Accepted: ["接單", "Accepted"], Returned: ["退單", "Returned"],
  ExtensionRequested: ["延期申請", "Extension requested"], ExtensionApproved: ["批准延期", "Extension approved"],
  ExtensionRefused: ["駁回延期", "Extension refused"], Suspended: ["掛賬", "Suspended"], Resumed: ["恢復處置", "Resumed"],
  ResultReported: ["處置反饋", "Result reported"], VerificationPassed: ["核查通過", "Verification passed"],
  VerificationFailed: ["核查不通過 → 返工", "Verification failed → rework"], Escalated: ["上提一級", "Escalated"],
  Supervised: ["督辦", "Supervision order"], Closed: ["結案", "Closed"], ReturnVisited: ["回訪", "Return visit"],
  Reopened: ["回访不满意重办", "Reopened after a dissatisfied visit"],
  WarningMarked: ["黃燈預警", "Yellow light"], OverdueMarked: ["紅燈超期", "Red light (overdue)"],
};
const ROLES = {
  inspector: ["網格員", "Inspector"], call_taker: ["受理員", "Call-taker"], shift_leader: ["值班長", "Shift leader"],
  dispatcher: ["派遣員", "Dispatcher"], handler: ["處置部門", "Department handler"], supervisor: ["督辦領導", "Supervisor"],
  auditor: ["審計員", "Auditor"], admin: ["系統管理員", "Admin"], system: ["系統", "System"],
};
const STEPS = {
  file: ["立案", "filing"], dispatch: ["派遣", "dispatch"], handle: ["處置", "handling"], review: ["掛賬復核", "review"],
  verify: ["核查", "verification"], close: ["結案", "closing"],
};
const SATISFACTION = { satisfied: ["滿意", "Satisfied"], basically_satisfied: ["基本滿意", "Basically satisfied"], dissatisfied: ["不滿意", "Dissatisfied"] };

let lang = localStorage.getItem("gd.lang") === "en" ? "en" : "zh";
const listeners = new Set();

export function getLang() { return lang; }
export function isZh() { return lang === "zh"; }
export function onLang(fn) { listeners.add(fn); }
export function setLang(value) {
  lang = value === "en" ? "en" : "zh";
  localStorage.setItem("gd.lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-Hant" : "en";
  applyStatic();
  for (const fn of listeners) fn(lang);
}

function pick(pair, fallback) { return pair ? pair[lang === "zh" ? 0 : 1] : fallback; }
export function t(key, vars = {}) {
  let s = pick(STRINGS[key], key);
  for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, v);
  return s;
}
export const tPriority = (p) => pick(PRIORITY[p], p || "—");
export const tStatus = (s) => pick(STATUS[s], s);
export const tAction = (a) => pick(ACTIONS[a], a);
export const tEvent = (e) => pick(EVENTS[e], e);
export const tRole = (r) => pick(ROLES[r], r || "");
export const tStep = (s) => pick(STEPS[s], s || "");
export const tSatisfaction = (s) => pick(SATISFACTION[s], s || "");
/** Name of a reference record with name_zh / name_en. */
export const nameOf = (rec, fallback = "—") => (rec ? (lang === "zh" ? rec.name_zh : rec.name_en) || rec.name_zh : fallback);
export const zhEn = (zh, en) => (lang === "zh" ? zh : en);

export function applyStatic(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
}

const fmtCache = {};
function fmt(opts) {
  const key = lang + JSON.stringify(opts);
  fmtCache[key] ||= new Intl.DateTimeFormat(lang === "zh" ? "zh-CN" : "en-GB", { timeZone: "Asia/Shanghai", ...opts });
  return fmtCache[key];
}
export const fmtTime = (iso) => (iso ? fmt({ month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false }).format(new Date(iso)) : "—");
export const fmtClock = (d) => fmt({ hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }).format(d);
export function fmtDuration(ms) {
  const m = Math.round(Math.abs(ms) / 60000);
  const d = Math.floor(m / 1440), h = Math.floor((m % 1440) / 60), mm = m % 60;
  if (lang === "zh") return d ? `${d}天${h}時` : h ? `${h}時${mm}分` : `${mm}分`;
  return d ? `${d}d ${h}h` : h ? `${h}h ${mm}m` : `${mm}m`;
}
export const fmtPct = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`);
