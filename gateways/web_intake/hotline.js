/* 12319 call-taker (受理员): register a citizen's call as a case (caller, address or map pick →
 * grid, category, description) and do the return visit (回访) after closure. */
(function () {
  "use strict";
  const T = (key, vars) => window.GDI18N.t(key, vars);
  const { $, $$, h } = GD;
  let grids = [];
  let catIndex = {}; // category code → record (names in the list, the code on hover)
  let picked = null; // {lat, lon, grid}
  let key = GD.uuid(); // one idempotency key per call being registered
  let mapApi = null;

  function showTab(name) {
    for (const b of $$("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
    $("#tab-call").hidden = name !== "call";
    $("#tab-visits").hidden = name !== "visits";
    if (name === "visits") loadVisits();
    if (name === "call" && mapApi) setTimeout(() => mapApi.map.invalidateSize(), 30);
  }

  function gridLine(text, bad) {
    const line = $("#grid-line");
    line.className = bad ? "gridline error" : "gridline";
    line.replaceChildren(...(Array.isArray(text) ? text : [text]));
  }

  async function setupCall(cats) {
    const questions = GD.questionsForm();
    const nearby = GD.nearbyBox();
    const checkNearby = () => (picked && picker.value ? nearby.show(picked.lat, picked.lon, picker.value.code) : nearby.hide());
    // A 部件 category: the caller may read the component's code off its plate (GD.componentField,
    // as in the inspector app). Found, it locates the call there (unless a standard address
    // was picked for it).
    const component = GD.componentField({
      onFound(c) {
        if (place.value || c.lat == null) return;
        picked = { lat: c.lat, lon: c.lon, grid: c.grid };
        sel.value = c.grid;
        const g = grids.find((x) => x.code === c.grid);
        gridLine([`${T("网格")}: `, h("b", {}, g ? g.name_zh : c.grid), ` (${c.grid}) · ${T("component")} ${c.kind || ""}`]);
        if (mapApi) { mapApi.mark(c.lat, c.lon); mapApi.select(c.grid); mapApi.map.setView([c.lat, c.lon], Math.max(mapApi.map.getZoom(), 16), { animate: false }); }
        checkNearby();
      },
    });
    const picker = GD.categoryPicker(cats, {
      storageKey: "gd.hotline.recent",
      filter: (c) => !c.code.startsWith("ZL03"),
      onPick: (c) => { questions.set(c); component.set(c); checkNearby(); },
    });
    $("#category-slot").replaceChildren(picker.el);
    $("#component-slot").replaceChildren(component.el);
    $("#questions-slot").replaceChildren(questions.el);
    $("#nearby-slot").replaceChildren(nearby.el);
    const sel = $("#grid-select");
    // The standard address (标准地址库): picking one locates the call (its point and grid).
    const place = GD.placeSearch($("#address"), {
      onPick(p) {
        picked = { lat: p.lat, lon: p.lon, grid: p.grid };
        sel.value = p.grid;
        const g = grids.find((x) => x.code === p.grid);
        gridLine([`${T("网格")}: `, h("b", {}, g ? window.GDI18N.name(g) : p.grid), ` (${p.grid}) · ${T("标准地址")}`]);
        if (mapApi) { mapApi.mark(p.lat, p.lon); mapApi.select(p.grid); mapApi.map.setView([p.lat, p.lon], Math.max(mapApi.map.getZoom(), 15), { animate: false }); }
        checkNearby();
      },
    });
    sel.replaceChildren(h("option", { value: "" }, T("手选网格")), ...grids.map((g) => h("option", { value: g.code, title: g.code }, window.GDI18N.name(g))));
    sel.addEventListener("change", () => {
      picked = null;
      nearby.hide();
      if (sel.value) {
        const g = grids.find((x) => x.code === sel.value);
        gridLine([`${T("网格")}: `, h("b", {}, window.GDI18N.name(g)), ` (${g.code}) · ${T("手选")}`]);
        if (mapApi) { mapApi.select(sel.value); mapApi.fit(sel.value); }
      }
    });
    const basemap = await GD.basemap();
    mapApi = GD.gridMap($("#map"), grids, {
      basemap,
      onPick(lat, lon) {
        const g = GD.locateGrid(grids, lat, lon);
        if (!g) {
          picked = null;
          sel.value = "";
          gridLine(`(${lat.toFixed(5)}, ${lon.toFixed(5)}) ${T("不在任何网格内")}`, true);
          return;
        }
        picked = { lat, lon, grid: g.code };
        sel.value = g.code;
        mapApi.select(g.code);
        gridLine([`${T("网格")}: `, h("b", {}, window.GDI18N.name(g)), ` (${g.code}) · ${lat.toFixed(5)}, ${lon.toFixed(5)}`]);
        checkNearby();
      },
    });

    $("#call-form").addEventListener("input", () => ($("#call-error").textContent = ""));
    $("#call-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const err = $("#call-error");
      err.textContent = "";
      const cat = picker.value;
      const grid = sel.value;
      const name = $("#caller-name").value.trim();
      const phone = $("#caller-phone").value.trim();
      const description = $("#description").value.trim();
      if (!name || !phone) return (err.textContent = T("请填写来电人姓名和电话"));
      if (!cat) return (err.textContent = T("请选择类别"));
      const named = component.read(); // before the grid: a good code locates the call
      if (named.problem) return (err.textContent = named.problem);
      if (!grid) return (err.textContent = T("请在地图上点选或手选网格"));
      if (!description) return (err.textContent = T("请填写问题描述"));
      const { answers, problem } = questions.read();
      if (problem) return (err.textContent = problem);
      const body = {
        category: cat.code,
        grid,
        address: $("#address").value.trim() || null,
        description,
        source: "hotline",
        reporter: { name, phone, type: "citizen" },
        answers,
      };
      if (place.value) body.place_id = place.value.id;
      if (named.code) body.component = named.code;
      if (picked && picked.grid === grid) Object.assign(body, { lat: picked.lat, lon: picked.lon });
      const button = $("#submit-call");
      button.disabled = true;
      try {
        const r = await GD.api("/v1/reports", { method: "POST", json: body, headers: { "Idempotency-Key": key } });
        picker.remember(cat.code);
        $("#call-result").replaceChildren(
          h("div", { class: "panel", id: "registered" },
            h("b", {}, `${T("已登记")}: `), h("span", { class: "case-no" }, r.case_no),
            h("p", { class: "small muted" }, T("请告知来电人案件编号")))
        );
        GD.toast(`${T("已登记")}: ${r.case_no}`, "good");
        key = GD.uuid();
        for (const id of ["#caller-name", "#caller-phone", "#description"]) $(id).value = "";
        place.clear();
        picker.clear();
        component.set(null);
        nearby.hide();
      } catch (e) {
        err.textContent = e.message; // same key: a retry after an error never creates two cases
      } finally {
        button.disabled = false;
      }
    });
  }

  const SATISFACTION = [
    ["satisfied", T("满意")],
    ["basically_satisfied", T("基本满意")],
    ["dissatisfied", T("不满意")],
  ];

  function visitCard(c) {
    const name = `sat-${c.case_no}`;
    const seg = h("div", { class: "seg", role: "radiogroup" },
      ...SATISFACTION.map(([v, t]) => h("label", {}, h("input", { type: "radio", name, value: v }), t)));
    const comment = h("textarea", { maxlength: 2000, placeholder: T("来电人意见") });
    const err = h("p", { class: "error small", role: "alert" });
    const save = h("button", { type: "button", class: "primary" }, T("保存回访"));
    const cat = catIndex[c.category];
    const el = h("div", { class: "card item filed", dataset: { caseNo: c.case_no } },
      h("div", { class: "top" }, h("strong", {}, c.case_no), h("span", { class: "pill" }, `${T("结案")} ${GD.time(c.closed_at || c.updated_at)}`)),
      h("div", { class: "desc" },
        h("span", { class: "cat-name", title: `${T("类别")} ${c.category}` }, cat ? window.GDI18N.name(cat) : c.category),
        " · ", c.description),
      h("div", { class: "meta" },
        h("span", {}, GD.icon("phone"), ` ${c.reporter_name || "—"} ${c.reporter_phone || ""}`),
        c.address ? h("span", {}, GD.icon("pin"), ` ${c.address}`) : null),
      h("label", {}, T("满意度")), seg,
      h("label", {}, T("意见"), comment), err,
      h("div", { class: "actions" }, save));
    save.addEventListener("click", async () => {
      err.textContent = "";
      const choice = $(`input[name="${name}"]:checked`, el);
      if (!choice) return (err.textContent = T("请选择满意度"));
      save.disabled = true;
      try {
        const r = await GD.api(`/v1/cases/${encodeURIComponent(c.case_no)}/actions/return_visit`, {
          method: "POST",
          json: { satisfaction: choice.value, comment: comment.value.trim() || null },
          headers: { "Idempotency-Key": GD.uuid() },
        });
        if (r && r.ok === false) throw new Error(r.error ? r.error.message : "refused");
        GD.toast(`${T("回访已记录")}: ${c.case_no}`, "good");
        el.remove();
        setTimeout(loadVisits, 800);
      } catch (e) {
        err.textContent = e.message;
        save.disabled = false;
      }
    });
    return el;
  }

  let visitEls = new Map();
  let visitPage = 1;
  // A call-taker works down a short page (the count says how many in all); ?page_size=N in
  // the address sets another (1-50).
  const PAGE_SIZE = Math.min(50, Math.max(1, Number(new URLSearchParams(location.search).get("page_size")) || 10));
  /** Previous / next page of the list (the API's pages), "第 2 / 5 页 · 共 87 件": above the
   * list (ids, for tests and keyboard users) and again below it. */
  function pager(data, top) {
    const pages = Math.max(1, data.pages || 1);
    const go = (p) => { visitPage = p; loadVisits().then(() => { if (!top) $("#tab-visits").scrollIntoView(); }); };
    const id = (name) => (top ? { id: `visits-${name}` } : {});
    const prev = h("button", { type: "button", class: "ghost", ...id("prev"), disabled: data.page <= 1, onclick: () => go(data.page - 1) }, T("page_prev"));
    const next = h("button", { type: "button", class: "ghost", ...id("next"), disabled: data.page >= pages, onclick: () => go(data.page + 1) }, T("page_next"));
    return h("div", { class: "pager row", ...id("pager"), hidden: pages <= 1 },
      prev, h("span", { class: "grow muted small", ...id("page") }, T("第 {p} / {n} 页 · 共 {total} 件", { p: data.page, n: pages, total: data.total })), next);
  }
  async function loadVisits() {
    try {
      // The closed cases due a return visit (回访) under the city's rule, oldest closing first,
      // from the read model (GET /v1/return-visits; the badge counts all of them, not a page).
      let data = await GD.api(`/v1/return-visits?page=${visitPage}&page_size=${PAGE_SIZE}`);
      if (!data.items.length && visitPage > 1 && data.total) {
        visitPage = Math.max(1, data.pages); // the last page emptied (visits recorded): step back
        data = await GD.api(`/v1/return-visits?page=${visitPage}&page_size=${PAGE_SIZE}`);
      }
      const due = data.items;
      $("#visit-badge").textContent = data.total ? String(data.total) : "";
      const next = new Map();
      const els = due.map((c) => {
        const el = visitEls.get(c.case_no) || visitCard(c);
        next.set(c.case_no, el);
        return el;
      });
      visitEls = next;
      $("#visits-pager-slot").replaceChildren(pager(data, true));
      $("#visits").replaceChildren(...(els.length ? els : [h("p", { class: "empty card" }, T("没有待回访案件"))]), pager(data, false));
      document.body.dataset.visitsPage = String(data.page);
    } catch (e) {
      GD.toast(e.message, "bad");
    }
  }

  async function start() {
    const header = GD.header(T("12319 受理"), T("热线受理 / 回访"));
    $("#header").replaceChildren(header.el);
    const user = await GD.signInFlow({
      app: "hotline",
      roles: ["call_taker"],
      container: $("#signin-slot"),
    });
    header.signedIn(user);
    $("#app").hidden = false;
    for (const b of $$("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
    let cats = [];
    try {
      [cats, grids] = await Promise.all([GD.categories(), GD.grids()]);
      for (const c of cats) catIndex[c.code] = c;
    } catch (e) {
      GD.toast(e.message, "bad");
    }
    await setupCall(cats);
    loadVisits();
    GD.listen((n) => {
      if (n.kind === "return_visit_due") {
        GD.toast(`${GD.noticeTitle(n)} · ${n.case_no}`);
        [0, 1000, 3000].forEach((ms) => setTimeout(loadVisits, ms));
      }
    });
    document.body.dataset.ready = "1";
  }
  window.GDHotline = { loadVisits, showTab };
  start();
})();
