/* 工单查询: POST /v1/public/case-status, show the progress. No sign-in, no other data. */
(function () {
  "use strict";
  const $ = (s) => document.querySelector(s);

  function el(tag, text, attrs) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = text;
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  /* 2026-12-05 09:30, Beijing time, whatever the browser's zone. */
  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    const parts = new Intl.DateTimeFormat("zh-CN", {
      timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hour12: false,
    }).formatToParts(d);
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour === "24" ? "00" : p.hour}:${p.minute}`;
  }

  function show(data) {
    const box = $("#result");
    const dl = el("dl");
    for (const [k, v] of [["问题类别", data.category_name], ["反映时间", when(data.reported_at)],
                          ["最近进展", when(data.updated_at)],
                          ...(data.closed_at ? [["办结时间", when(data.closed_at)]] : [])]) {
      dl.append(el("dt", k), el("dd", v));
    }
    const list = el("ol", null, { "aria-label": "办理进度" });
    for (const step of data.progress) {
      const li = el("li");
      li.append(el("time", when(step.at), { datetime: step.at }), el("span", step.text));
      list.append(li);
    }
    box.replaceChildren(el("h2", `工单 ${data.case_no}`), el("p", data.status_text, { class: "now", id: "status-text" }), dl,
      el("h3", "办理进度"), list);
    box.hidden = false;
  }

  $("#lookup").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const caseNo = $("#case-no").value.trim().toUpperCase();
    const last4 = $("#phone4").value.trim();
    $("#error").textContent = "";
    $("#result").hidden = true;
    if (!caseNo) return ($("#error").textContent = "请填写工单编号");
    if (!/^\d{4}$/.test(last4)) return ($("#error").textContent = "请填写手机号后四位(4 位数字)");
    $("#submit").disabled = true;
    try {
      const r = await fetch("/v1/public/case-status", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ case_no: caseNo, phone_last4: last4 }),
      });
      if (r.status === 429) {
        const wait = r.headers.get("Retry-After") || "60";
        $("#error").textContent = `查询次数过多, 请 ${wait} 秒后再试`;
      } else if (!r.ok) {
        $("#error").textContent = "没有找到该工单: 请核对工单编号和手机号后四位";
      } else {
        show(await r.json());
      }
    } catch (e) {
      $("#error").textContent = "网络异常, 请稍后再试";
    } finally {
      $("#submit").disabled = false;
    }
  });
  document.body.dataset.ready = "1";
})();
