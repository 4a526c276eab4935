// Language and formats shared by every page (classic script; load messages.js first).
// zh-Hans is the default; zh-Hant and English are chosen per user and remembered in
// localStorage ("gd.lang"). Dates and durations are written the way Chinese offices write
// them in every language: 2026-12-05 09:30, 超期 1小时22分 (English: overdue 1 h 22 min).
(function () {
  "use strict";
  const LANGS = [
    ["zh-Hans", "简体中文"],
    ["zh-Hant", "繁體中文"],
    ["en", "English"],
  ];
  const INDEX = { "zh-Hans": 0, "zh-Hant": 1, en: 2 };
  const KEY = "gd.lang";
  const M = window.GD_MESSAGES || {};
  const listeners = new Set();

  function normal(value) {
    if (value in INDEX) return value;
    if (value === "zh") return "zh-Hans"; // the old two-language setting
    return "zh-Hans";
  }
  let lang = "zh-Hans";
  try {
    lang = normal(localStorage.getItem(KEY) || localStorage.getItem("gd.audit.lang"));
  } catch (e) {
    lang = "zh-Hans";
  }

  /** The message `key` in the current language, `{name}` replaced from `vars`. A key the
   * catalogue lacks is its own text (intake pages key by the zh-Hans wording). */
  function t(key, vars) {
    const entry = M[key];
    let s = entry ? entry[INDEX[lang]] || entry[0] : key;
    if (vars) for (const [k, v] of Object.entries(vars)) s = s.split(`{${k}}`).join(String(v));
    return s;
  }
  /** A word of the vocabulary: label("status", "closed") → 已结案. Unknown values stay as is. */
  function label(kind, value) {
    if (value === null || value === undefined || value === "") return "";
    const k = `${kind}.${value}`;
    return k in M ? t(k) : String(value);
  }
  // Text the server keeps in zh-Hans only (place, category and department names, metric
  // definitions) is shown in zh-Hant character by character: OpenCC's table
  // (static/vendor/opencc/st-characters.js, loaded before this file), and over it a map learnt
  // from this catalogue — every entry whose zh-Hans and zh-Hant texts have the same length
  // pairs their characters, the most used pairing winning — so the pages' own wording rules
  // (里 → 裡 as the catalogue writes it). A character neither knows stays as it is.
  let HANT = null;
  function hantMap() {
    if (HANT) return HANT;
    HANT = new Map();
    const table = [...(window.GD_HANT_PAIRS || "")];
    for (let i = 0; i + 1 < table.length; i += 2) HANT.set(table[i], table[i + 1]);
    const counts = new Map(); // simplified char -> Map(traditional char -> uses)
    for (const v of Object.values(M)) {
      if (!Array.isArray(v) || !v[0] || !v[1]) continue;
      const a = [...v[0]], b = [...v[1]];
      if (a.length !== b.length) continue;
      a.forEach((c, i) => {
        if (c === b[i] || c < "\u4e00" || c > "\u9fff") return;
        const seen = counts.get(c) || new Map();
        seen.set(b[i], (seen.get(b[i]) || 0) + 1);
        counts.set(c, seen);
      });
    }
    for (const [c, seen] of counts) HANT.set(c, [...seen].sort((x, y) => y[1] - x[1])[0][0]);
    return HANT;
  }
  /** zh-Hans text in zh-Hant (as above); other text as it is. */
  function hant(text) {
    if (!text) return text;
    const map = hantMap();
    let out = "";
    for (const c of String(text)) out += map.get(c) || c;
    return out;
  }
  /** Text of the server's zh / en pair in the page's language (zh-Hant from zh). */
  function zhEn(zh, en) {
    if (lang === "en") return en || zh;
    return lang === "zh-Hant" ? hant(zh || en) : zh || en;
  }
  /** The name of a reference record (name_zh / name_en): English only in English. */
  function name(rec, fallback) {
    if (!rec) return fallback === undefined ? "—" : fallback;
    const zh = rec.name_zh || rec.name;
    if (lang === "en") return rec.name_en || zh || rec.code || fallback || "—";
    return (lang === "zh-Hant" ? hant(zh) : zh) || rec.name_en || rec.code || fallback || "—";
  }

  function applyStatic(root) {
    root = root || document;
    for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
    for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
    for (const el of root.querySelectorAll("[data-i18n-aria]")) el.setAttribute("aria-label", t(el.dataset.i18nAria));
    for (const el of root.querySelectorAll("select.lang-picker")) el.value = lang;
    if (root === document) document.documentElement.lang = lang;
  }
  function setLang(value) {
    lang = normal(value);
    try {
      localStorage.setItem(KEY, lang);
    } catch (e) {
      /* private mode: the choice lasts for this page */
    }
    applyStatic(document);
    for (const fn of listeners) fn(lang);
  }
  /** A <select> of the three languages; changing it switches and remembers. */
  function picker() {
    const sel = document.createElement("select");
    sel.className = "lang-picker";
    sel.setAttribute("aria-label", t("lang.label"));
    sel.title = t("lang.label");
    for (const [value, text] of LANGS) {
      const o = document.createElement("option");
      o.value = value;
      o.textContent = text;
      sel.append(o);
    }
    sel.value = lang;
    sel.addEventListener("change", () => setLang(sel.value));
    return sel;
  }

  // ---------------------------------------------------------------- dates and durations
  // Always Beijing time, always year-month-day and a 24-hour clock, whatever the language.
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });
  function fields(value) {
    const d = value instanceof Date ? value : new Date(value);
    if (Number.isNaN(d.getTime())) return null;
    const o = {};
    for (const p of parts.formatToParts(d)) o[p.type] = p.value;
    return o;
  }
  /** 2026-12-05 09:30 */
  function dateTime(value) {
    if (!value) return "—";
    const f = fields(value);
    return f ? `${f.year}-${f.month}-${f.day} ${f.hour}:${f.minute}` : String(value);
  }
  /** 12-05 09:30 (dense tables; the year is on hover via dateTime). */
  function shortDateTime(value) {
    if (!value) return "—";
    const f = fields(value);
    return f ? `${f.month}-${f.day} ${f.hour}:${f.minute}` : String(value);
  }
  /** 2026-12-05 */
  function date(value) {
    if (!value) return "—";
    if (typeof value === "string" && /^\d{4}-\d\d-\d\d$/.test(value)) return value;
    const f = fields(value);
    return f ? `${f.year}-${f.month}-${f.day}` : String(value);
  }
  /** 09:30:15 */
  function clock(value) {
    const f = fields(value || new Date());
    return f ? `${f.hour}:${f.minute}:${f.second}` : "--:--:--";
  }
  /** A span of time without sign: 1小时22分, 2天3小时, 5分 (en: 1 h 22 min). */
  function duration(ms) {
    const m = Math.max(0, Math.floor(Math.abs(ms) / 60000));
    const d = Math.floor(m / 1440), h = Math.floor((m % 1440) / 60), mm = m % 60;
    const [D, H, Mi] = [t("dur.d"), t("dur.h"), t("dur.m")];
    const sep = lang === "en" ? " " : "";
    const out = d ? [`${d}${D}`, h ? `${h}${H}` : ""] : h ? [`${h}${H}`, mm ? `${mm}${Mi}` : ""] : [`${mm}${Mi}`];
    return out.filter(Boolean).join(sep);
  }
  /** Time to a deadline: {text: "剩余 3小时" | "超期 1小时22分", overdue} (null when no clock). */
  function due(iso, now) {
    if (!iso) return null;
    const ms = new Date(iso).getTime() - (now === undefined ? Date.now() : now);
    const overdue = ms < 0;
    return { text: t(overdue ? "due.overdue" : "due.left", { d: duration(ms) }), overdue, ms };
  }
  /** The demo accounts box of a sign-in form: empty and hidden unless the server says demo
   * users are enabled and still as published (GET /v1/auth/demo). Clicking one fills the form. */
  function demoBox(roles, onPick) {
    const box = document.createElement("div");
    box.className = "gd-demo";
    box.hidden = true;
    const q = new URLSearchParams();
    for (const r of roles || []) q.append("role", r);
    fetch(`/v1/auth/demo?${q}`).then((r) => (r.ok ? r.json() : null)).then((data) => {
      if (!data || !data.enabled || !data.accounts.length) return;
      const head = document.createElement("div");
      head.textContent = t("demo_accounts");
      box.append(head);
      for (const a of data.accounts.slice(0, 6)) {
        const line = document.createElement("div");
        const code = document.createElement("code");
        code.textContent = `${a.username} / ${a.password}`;
        code.style.cursor = onPick ? "pointer" : "";
        if (onPick) code.addEventListener("click", () => onPick(a.username, a.password));
        line.append(code, ` · ${label("role", a.role)}`);
        box.append(line);
      }
      box.hidden = false;
    }).catch(() => {});
    return box;
  }
  const pct = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`);

  window.GDI18N = {
    LANGS,
    messages: M,
    get lang() { return lang; },
    setLang,
    onLang: (fn) => listeners.add(fn),
    t,
    label,
    name,
    hant,
    zhEn,
    applyStatic,
    picker,
    dateTime,
    shortDateTime,
    date,
    clock,
    duration,
    due,
    pct,
    demoBox,
  };
  if (document.readyState !== "loading") document.documentElement.lang = lang;
  else document.addEventListener("DOMContentLoaded", () => { document.documentElement.lang = lang; });
})();
