/* 工单查询: POST /v1/public/case-status, show the progress. No sign-in, no other data.
 * Words, dates and the language (zh-Hans by default, zh-Hant and English chosen and
 * remembered) come from the shared catalogue (/static/shared/messages.js + i18n.js) like on
 * every other page: st.* keys, public_status.<status>, and the progress steps by their
 * zh-Hans text (the server's words, gettext style). */
(function () {
  "use strict";
  const I = window.GDI18N;
  const T = (key, vars) => I.t(key, vars);
  const $ = (s) => document.querySelector(s);
  let shown = null; // the last answer, drawn again when the language changes
  let problem = null; // [key, vars] of the error shown

  function el(tag, text, attrs) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = text;
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  /* 2026-12-05 09:30, Beijing time, whatever the browser's zone and language. */
  const when = (iso) => I.dateTime(iso);

  function show(data) {
    shown = data;
    const box = $("#result");
    const dl = el("dl");
    const category = I.lang === "en" ? data.category_name_en || data.category_name : data.category_name;
    for (const [k, v] of [["st.category", category], ["st.reported_at", when(data.reported_at)],
                          ["st.updated_at", when(data.updated_at)],
                          ...(data.closed_at ? [["st.closed_at", when(data.closed_at)]] : [])]) {
      dl.append(el("dt", T(k)), el("dd", v || "—"));
    }
    const list = el("ol", null, { "aria-label": T("st.progress") });
    for (const step of data.progress) {
      const li = el("li");
      li.append(el("time", when(step.at), { datetime: step.at }), el("span", T(step.text)));
      list.append(li);
    }
    const status = `public_status.${data.status}` in I.messages ? T(`public_status.${data.status}`) : data.status_text;
    box.replaceChildren(el("h2", T("st.case", { no: data.case_no })), el("p", status, { class: "now", id: "status-text" }), dl,
      el("h3", T("st.progress")), list);
    box.hidden = false;
  }

  function fail(key, vars) {
    problem = key ? [key, vars] : null;
    $("#error").textContent = key ? T(key, vars) : "";
  }

  $("#lookup").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const caseNo = $("#case-no").value.trim().toUpperCase();
    const last4 = $("#phone4").value.trim();
    fail(null);
    $("#result").hidden = true;
    shown = null;
    if (!caseNo) return fail("st.need_case_no");
    if (!/^\d{4}$/.test(last4)) return fail("st.need_phone4");
    $("#submit").disabled = true;
    try {
      const r = await fetch("/v1/public/case-status", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ case_no: caseNo, phone_last4: last4 }),
      });
      if (r.status === 429) fail("st.too_many", { s: r.headers.get("Retry-After") || "60" });
      else if (!r.ok) fail("st.not_found");
      else show(await r.json());
    } catch (e) {
      fail("st.network");
    } finally {
      $("#submit").disabled = false;
    }
  });

  // The language switch like on the other pages: remembered, the page redrawn in place.
  $("#lang-slot").append(I.picker());
  I.onLang(() => {
    if (shown) show(shown);
    if (problem) fail(...problem);
  });
  I.applyStatic(document);
  document.body.dataset.ready = "1";
})();
