// The command centre's view of the shared catalogue (/static/shared/messages.js + i18n.js,
// loaded as classic scripts by index.html): the same words, dates and durations as every
// other page. zh-Hans is the default; zh-Hant and English are remembered per browser.
const I = window.GDI18N;

export const getLang = () => I.lang;
/** True for either Chinese script (data names: name_zh). */
export const isZh = () => I.lang !== "en";
export const onLang = (fn) => I.onLang(fn);
export const setLang = (value) => I.setLang(value);
export const t = (key, vars) => I.t(key, vars);
export const tPriority = (p) => (p ? I.label("priority", p) : "—");
export const tStatus = (s) => I.label("status", s);
export const tAction = (a) => I.label("action", a);
export const tEvent = (e) => I.label("event", e);
export const tRole = (r) => I.label("role", r);
export const tStep = (s) => I.label("step", s);
export const tSatisfaction = (s) => I.label("satisfaction", s);
export const tField = (f) => I.label("field", f);
/** Name of a reference record with name_zh / name_en. */
export const nameOf = (rec, fallback = "—") => I.name(rec, fallback);
/** Text chosen from a zh / en pair the server sent (metric definitions, labels). */
export const zhEn = (zh, en) => I.zhEn(zh, en); // zh-Hant: the zh text in traditional characters
export const applyStatic = (root) => I.applyStatic(root);
export const languagePicker = () => I.picker();
export const fmtTime = (iso) => I.shortDateTime(iso);
export const fmtDateTime = (iso) => I.dateTime(iso);
export const fmtClock = (d) => I.clock(d);
export const fmtDuration = (ms) => I.duration(ms);
export const fmtDue = (iso, now) => I.due(iso, now);
export const fmtPct = (v) => I.pct(v);
