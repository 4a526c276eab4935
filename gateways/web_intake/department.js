/* Department worklist (处置部门): cases dispatched to my department, sorted by deadline;
 * accept 接单, report the result with photos 处置反馈, return a mis-dispatch 退单 with a
 * reason, request an extension 延期申请. New dispatches and reworks arrive live. */
(function () {
  "use strict";
  const T = (key, vars) => window.GDI18N.t(key, vars);
  const grids = {}; // code -> grid (names, not codes, on the cards)
  const gridName = (code) => (grids[code] ? window.GDI18N.name(grids[code]) : code);
  const categories = {};
  const categoryName = (code) => (categories[code] ? window.GDI18N.name(categories[code]) : code);
  const { $, h } = GD;
  const OPEN = ["dispatched", "in_progress", "suspended"];
  let user = null;

  async function act(caseNo, verb, args) {
    const r = await GD.api(`/v1/cases/${encodeURIComponent(caseNo)}/actions/${verb}`, {
      method: "POST",
      json: args,
      headers: { "Idempotency-Key": GD.uuid() },
      raw: true,
    });
    const body = await r.json().catch(() => ({}));
    if (r.status === 200 || r.status === 202) {
      settle();
      return body;
    }
    throw new GD.ApiError(r.status, body);
  }

  /** The worker has answered; the read model follows a moment later: re-read a few times. */
  function settle() {
    for (const ms of [250, 800, 2000, 4000]) setTimeout(load, ms);
  }

  function form(kind, c, done) {
    const err = h("p", { class: "error small", role: "alert" });
    const fields = {};
    let photos = null;
    const parts = [];
    if (kind === "result") {
      fields.note = h("textarea", { maxlength: 2000, placeholder: T("处置情况"), required: true });
      photos = GD.photoPicker();
      parts.push(h("label", {}, T("处置说明"), fields.note), h("label", {}, T("处置照片")), photos.el);
    } else if (kind === "return") {
      fields.reason = h("textarea", { maxlength: 2000, placeholder: T("不属于本部门职责的原因"), required: true });
      parts.push(h("label", {}, T("退单原因"), fields.reason));
    } else if (kind === "extension") {
      fields.hours = h("input", { type: "number", min: "1", max: "720", step: "1", value: "8" });
      fields.reason = h("textarea", { maxlength: 2000, placeholder: T("需要延期的原因"), required: true });
      parts.push(h("label", {}, T("延长小时数"), fields.hours), h("label", {}, T("延期原因"), fields.reason));
    }
    const labels = { result: T("提交反馈"), return: T("确认退单"), extension: T("提交申请") };
    const submit = h("button", { type: "button", class: kind === "return" ? "danger" : "primary" }, labels[kind]);
    submit.addEventListener("click", async () => {
      err.textContent = "";
      submit.disabled = true;
      try {
        if (kind === "result") {
          if (!fields.note.value.trim()) throw new Error(T("请填写处置说明"));
          const refs = [];
          for (const p of photos.items) refs.push(await GD.uploadPhoto(p.blob));
          await act(c.case_no, "report_result", { note: fields.note.value.trim(), photos: refs });
          GD.toast(T("处置结果已反馈，等待核查"), "good");
        } else if (kind === "return") {
          if (!fields.reason.value.trim()) throw new Error(T("请填写退单原因"));
          await act(c.case_no, "return_case", { reason: fields.reason.value.trim() });
          GD.toast(T("已退单"), "good");
        } else {
          if (!fields.reason.value.trim()) throw new Error(T("请填写延期原因"));
          await act(c.case_no, "request_extension", { hours: Number(fields.hours.value), reason: fields.reason.value.trim() });
          GD.toast(T("延期申请已提交"), "good");
        }
        done();
      } catch (e) {
        err.textContent = e.message;
        submit.disabled = false;
      }
    });
    return h("div", { class: "panel", dataset: { form: kind } }, ...parts, err, h("div", { class: "actions" }, submit));
  }

  function noop() {
  }

  function card(c) {
    const due = GD.dueText(c.due_at);
    const light = c.overdue ? "red" : c.warning ? "yellow" : due.light;
    const slot = h("div");
    const open = (kind) => {
      const existing = slot.firstChild;
      if (existing && existing.dataset.form === kind) return slot.replaceChildren();
      slot.replaceChildren(form(kind, c, noop));
    };
    // Exactly the actions the server offers on this case now (rules and guards are its job).
    const offered = new Set(c.allowed_actions || []);
    const buttons = [];
    if (offered.has("accept")) {
      buttons.push(h("button", { type: "button", class: "primary", onclick: async (ev) => {
        ev.target.disabled = true;
        try { await act(c.case_no, "accept", {}); GD.toast(T("已接单"), "good"); }
        catch (e) { GD.toast(e.message, "bad"); ev.target.disabled = false; }
      } }, T("接单")));
    }
    if (offered.has("report_result")) {
      buttons.push(h("button", { type: "button", class: "ok", onclick: () => open("result") }, T("处置反馈")));
    }
    if (offered.has("request_extension")) {
      buttons.push(h("button", { type: "button", onclick: () => open("extension") }, T("延期")));
    }
    if (offered.has("return_case")) {
      buttons.push(h("button", { type: "button", class: "danger", onclick: () => open("return") }, T("退单")));
    }
    // Where: the case's pin on the city's base map, opened on demand (one map per card).
    if (c.lat != null && c.lon != null && window.GDBasemap) {
      const mapSlot = h("div", { class: "card-map", hidden: true });
      let shown = null;
      buttons.push(h("button", { type: "button", class: "ghost", "aria-expanded": "false", onclick: (ev) => {
        mapSlot.hidden = !mapSlot.hidden;
        ev.currentTarget.setAttribute("aria-expanded", String(!mapSlot.hidden));
        if (!mapSlot.hidden && !shown) {
          const g = grids[c.grid];
          shown = window.GDBasemap.pinMap(mapSlot, basemap, [{ lat: c.lat, lon: c.lon, label: c.address || T("案件位置") }],
            { grid: g && g.polygon ? g.polygon.coordinates[0] : null });
        }
      } }, GD.icon("pin"), ` ${T("地图")}`));
      mapSlots.set(c.case_no, mapSlot);
    }
    const photos = h("div", { class: "thumbs" }, ...(c.photos || []).map(GD.photoImg));
    return h(
      "div",
      { class: `card item ${c.overdue ? "rejected" : c.status === "dispatched" ? "queued" : "sent"}`, dataset: { caseNo: c.case_no, status: c.status } },
      h("div", { class: "top" }, h("strong", {}, c.case_no), h("span", { class: "pill" }, GD.STATUS[c.status] || c.status)),
      h("div", { class: "meta" },
        h("span", {}, h("span", { class: `light ${light}` }), h("b", {}, due.text), ` · ${GD.time(c.due_at)}`),
        c.priority ? h("span", { class: `pill ${c.priority}` }, GD.PRIORITY[c.priority] || c.priority) : null,
        c.rework_count ? h("span", { class: "pill urgent" }, `${T("返工")} ×${c.rework_count}`) : null,
        c.pending_extension ? h("span", { class: "pill important" }, `${T("延期审批中")} (${c.pending_extension.hours}${T("dur.h")})`) : null),
      h("div", { class: "desc" }, h("b", { title: c.category }, categoryName(c.category)), " ", c.description),
      h("div", { class: "meta" }, c.address ? h("span", {}, GD.icon("pin"), ` ${c.address}`) : null, h("span", { title: c.grid }, `${T("网格")} ${gridName(c.grid)}`), h("span", {}, `${T("上报")} ${GD.time(c.reported_at)}`)),
      photos,
      buttons.length ? h("div", { class: "actions" }, ...buttons) : null,
      mapSlots.get(c.case_no) || null,
      slot
    );
  }

  let loading = null;
  let rendered = new Map();
  async function load() {
    if (loading) return loading;
    loading = (async () => {
      const q = OPEN.map((s) => `status=${s}`).join("&");
      const data = await GD.api(`/v1/cases?${q}&department=${encodeURIComponent(user.department || "")}&limit=500`);
      const items = data.items.sort((a, b) => (a.due_at ? Date.parse(a.due_at) : Infinity) - (b.due_at ? Date.parse(b.due_at) : Infinity));
      $("#k-new").textContent = items.filter((c) => c.status === "dispatched").length;
      $("#k-work").textContent = items.filter((c) => c.status === "in_progress").length;
      $("#k-warn").textContent = items.filter((c) => c.warning && !c.overdue).length;
      $("#k-over").textContent = items.filter((c) => c.overdue).length;
      // Keep the card (and any half-filled form in it) while the case has not changed.
      const next = new Map();
      const els = items.map((c) => {
        const old = rendered.get(c.case_no);
        const el = old && old.version === c.version ? old.el : card(c);
        next.set(c.case_no, { version: c.version, el });
        return el;
      });
      rendered = next;
      $("#list").replaceChildren(...(els.length ? els : [h("p", { class: "empty card" }, T("暂无待处置案件"))]));
    })()
      .catch((e) => GD.toast(e.message, "bad"))
      .finally(() => (loading = null));
    return loading;
  }

  let basemap = null;
  const mapSlots = new Map(); // case number -> its card's map box (built with the card)

  async function start() {
    const header = GD.header(T("处置部门工作台"), T("处置部门"));
    $("#header").replaceChildren(header.el);
    user = await GD.signInFlow({
      app: "department",
      roles: ["handler"],
      container: $("#signin-slot"),
    });
    header.signedIn(user);
    $("#dept-name").textContent = T("本部门案件");
    $("#dept-name").title = user.department || "";
    GD.departments().then((deps) => {
      const d = deps.find((x) => x.code === user.department);
      if (d) $("#dept-name").textContent = `${window.GDI18N.name(d)} · ${T("本部门案件")}`;
    }).catch(() => {});
    basemap = await GD.basemap();
    await Promise.all([GD.grids(), GD.categories()]).then(([gs, cs]) => {
      for (const g of gs) grids[g.code] = g;
      for (const c of cs) categories[c.code] = c;
    }).catch(() => {});
    $("#app").hidden = false;
    $("#reload").addEventListener("click", load);
    await load();
    GD.listen((n) => {
      GD.toast(`${GD.noticeTitle(n)} · ${n.case_no}`, n.kind === "overdue" || n.kind === "returned" ? "bad" : n.kind === "deadline_approaching" ? "warn" : "");
      load();
      settle(); // the notifier can be a moment ahead of the case list
    });
    setInterval(load, 60000);
    document.body.dataset.ready = "1";
  }
  window.GDDepartment = { load };
  start();
})();
