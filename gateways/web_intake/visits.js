/* 六必访 on the inspector's phone: this week's due visits and the visit form (issue 18).
 *
 * Offline-first like reports: a visit is written to IndexedDB ("gd-visits") with its own
 * idempotency key and the time it was recorded (visited_at), then sent to
 * POST /v1/households/{no}/actions/record_visit when the network allows. The server records
 * a visit once per key and answers the case numbers of the needs raised, however often it
 * is sent. The worklist (GET /v1/households/worklist) is kept in localStorage so the list
 * still opens in a dead zone. Mounted at #visits-slot in the "我的网格" tab. */
(function () {
  "use strict";
  const T = (key, vars) => window.GDI18N.t(key, vars);
  const { $, h } = GD;
  const LIST_KEY = "gd.visits.worklist";
  // Words from the shared catalogue (shared/messages.js; keys are the zh-Hans text).
  const light = (l) => ({ red: T("逾期"), yellow: T("临期"), green: T("未到期") })[l] || "—";
  let flags = {};
  /** A must-visit flag's name in the page's language (the vocabulary's zh-Hans label else). */
  const flagName = (f) => (`care_flag.${f}` in window.GDI18N.messages ? window.GDI18N.label("care_flag", f) : flags[f] || f);
  let categories = [];

  // ------------------------------------------------------------------ IndexedDB outbox
  let dbp = null;
  function db() {
    if (!dbp)
      dbp = new Promise((resolve, reject) => {
        const req = indexedDB.open("gd-visits", 1);
        req.onupgradeneeded = () => req.result.createObjectStore("outbox", { keyPath: "key" });
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    return dbp;
  }
  async function store(mode, fn) {
    const d = await db();
    return new Promise((resolve, reject) => {
      const t = d.transaction("outbox", mode);
      const req = fn(t.objectStore("outbox"));
      t.oncomplete = () => resolve(req && req.result);
      t.onerror = () => reject(t.error);
    });
  }
  const Outbox = {
    all: () => store("readonly", (s) => s.getAll()),
    put: (item) => store("readwrite", (s) => s.put(item)),
    del: (key) => store("readwrite", (s) => s.delete(key)),
  };

  // ------------------------------------------------------------------ sending
  let sending = null;
  function flush() {
    if (!sending) sending = sendAll().finally(() => (sending = null));
    return sending;
  }
  async function sendAll() {
    if (!navigator.onLine || !GD.auth.state) return;
    let changed = false;
    for (const item of await Outbox.all()) {
      if (item.state !== "queued" || !navigator.onLine) continue;
      changed = true;
      try {
        const args = Object.assign({}, item.args);
        if (item.photo && !item.photoRef) {
          item.photoRef = await GD.uploadPhoto(item.photo);
          await Outbox.put(item);
        }
        if (item.photoRef) args.photo = item.photoRef;
        const r = await GD.api(`/v1/households/${encodeURIComponent(item.household_no)}/actions/record_visit`, {
          method: "POST",
          json: { args },
          headers: { "Idempotency-Key": item.key },
        });
        await Outbox.del(item.key);
        const cases = (r.cases || []).map((c) => c.case_no).join("、");
        GD.toast(cases ? T("走访已记录，诉求已转案件 {cases}", { cases }) : T("走访已记录"), "good");
      } catch (e) {
        if (e instanceof GD.ApiError && e.status >= 400 && e.status < 500 && ![401, 408, 429].includes(e.status)) {
          item.state = "rejected";
          item.error = e.message;
          await Outbox.put(item);
          GD.toast(`${T("被拒")}: ${e.message}`, "bad");
        } else break; // offline, server busy, signed out: later
      }
    }
    // Only when something was sent or refused: this runs every 5 s while online.
    if (!changed) return;
    await render();
    if (navigator.onLine) refresh();
  }

  // ------------------------------------------------------------------ the worklist
  function cachedList() {
    try {
      return JSON.parse(localStorage.getItem(LIST_KEY) || "null");
    } catch (e) {
      return null;
    }
  }
  async function refresh() {
    try {
      const data = await GD.api("/v1/households/worklist");
      localStorage.setItem(LIST_KEY, JSON.stringify(data));
    } catch (e) {
      /* offline: the cached list stays */
    }
    await render();
  }

  function flagText(names) {
    return (names || []).map(flagName).join(" · ");
  }

  async function render() {
    const slot = $("#visits-slot");
    if (!slot) return;
    const data = cachedList();
    const pending = await Outbox.all();
    const queuedFor = new Set(pending.filter((p) => p.state === "queued").map((p) => p.household_no));
    const list = (data && data.households) || [];
    // A row whose visit form or details are open is kept as it is (the same element, what was
    // typed, the focus): the list is re-drawn whenever the worklist or the outbox changes.
    const old = slot.querySelector("#visit-worklist");
    const open = new Map();
    for (const r of old ? old.querySelectorAll(":scope > .visit-row") : []) {
      if (r.querySelector(".visit-form-slot")?.childElementCount) open.set(r.dataset.household, r);
    }
    const rows = list.map((hh) =>
      open.get(hh.household_no) && !queuedFor.has(hh.household_no) ? open.get(hh.household_no) : row(hh, queuedFor.has(hh.household_no))
    );
    const rejected = pending.filter((p) => p.state === "rejected");
    const card = old || h("div", { class: "card", id: "visit-worklist" });
    if (!old) slot.replaceChildren(card);
    GDDom.placeInOrder(
      card,
      [
        h("h2", {}, T("本周走访")),
        h(
          "p",
          { class: "muted small", id: "visit-summary" },
          data
            ? T("逾期 {n} 户 · 7 天内到期 {m} 户", { n: data.overdue, m: list.length - data.overdue })
            : T("载入中"),
          pending.length ? ` · ${T("待发送 {n}", { n: pending.filter((p) => p.state === "queued").length })}` : ""
        ),
        ...(rows.length ? rows : [h("p", { class: "empty" }, data ? T("本周没有到期的走访") : T("载入中"))]),
        ...rejected.map((p) =>
          h(
            "div",
            { class: "error small" },
            `${p.household_no}: ${p.error} `,
            h("button", { type: "button", class: "ghost", onclick: async () => (await Outbox.del(p.key), render()) }, T("删除"))
          )
        ),
      ]
    );
  }

  /** The household's details (flags with reasons, members, cases and their outcome). */
  async function openDetail(hh, slot) {
    // The slot holds either the details or the form: the same button closes, the other swaps.
    if (slot.querySelector(".visit-detail")) return slot.replaceChildren();
    let d;
    try {
      d = await GD.api(`/v1/households/${encodeURIComponent(hh.household_no)}`);
    } catch (e) {
      return slot.replaceChildren(h("p", { class: "error small" }, navigator.onLine ? e.message : T("离线时无法查看详情")));
    }
    const flagLines = Object.entries(d.flags || {}).map(([f, v]) =>
      h("li", {}, `${flagName(f)}${v.reason ? "：" + v.reason : ""}${v.since ? " · " + GD.time(v.since) : ""}`));
    const members = (d.members || []).map((m) => h("li", {}, [m.name, m.relation, m.birth_year, m.phone].filter(Boolean).join(" · ")));
    const cases = (d.cases || []).map((c) =>
      h("li", {}, h("span", { class: "code" }, c.case_no), " ", c.outcome ? c.outcome.status_zh : T("待建案")));
    slot.replaceChildren(
      h(
        "div",
        { class: "visit-detail" },
        h("div", { class: "muted small" }, `${T("联系党员")}: ${d.party_member || "—"} · ${T("走访次数")}: ${d.visits}`),
        h("strong", { class: "small" }, T("必访标记")),
        h("ul", {}, ...flagLines),
        d.restricted ? h("p", { class: "muted small" }, T("含受限信息")) : "",
        members.length ? h("strong", { class: "small" }, T("成员")) : "",
        h("ul", {}, ...members),
        cases.length ? h("strong", { class: "small" }, T("诉求案件")) : "",
        h("ul", {}, ...cases)
      )
    );
  }

  function row(hh, queued) {
    const due = GD.dueText(hh.due_at);
    const body = h("div", { class: "visit-form-slot" });
    const btn = h("button", { type: "button", class: "primary", onclick: () => openForm(hh, body, btn) }, T("走访"));
    const more = h("button", { type: "button", class: "ghost detail-btn", onclick: () => openDetail(hh, body) }, T("详情"));
    return h(
      "div",
      { class: `visit-row light-${hh.light}`, dataset: { household: hh.household_no } },
      h(
        "div",
        { class: "row" },
        h("span", { class: `vlight ${hh.light}`, title: light(hh.light) }, light(hh.light)),
        h("strong", { class: "grow" }, hh.address),
        more,
        queued ? h("span", { class: "badge" }, T("待发送")) : btn
      ),
      h(
        "div",
        { class: "muted small" },
        `${hh.household_no} · ${flagText(hh.flag_names)}${hh.restricted ? " · " + T("含受限信息") : ""} · ${T("期限")} ${GD.time(hh.due_at)} (${due.text})`
      ),
      body
    );
  }

  function openForm(hh, slot, btn) {
    if (slot.querySelector(".visit-form")) return slot.replaceChildren();
    const findings = h("textarea", { maxlength: 2000, placeholder: T("身体状况、生活情况、已提供帮助 …"), "aria-label": T("走访情况") });
    const party = h("input", { type: "checkbox" });
    const consent = h("input", { type: "checkbox" });
    const photos = GD.photoPicker();
    const needCat = h("select", { "aria-label": T("诉求类别") }, h("option", { value: "" }, T("无诉求")), ...categories.map((c) => h("option", { value: c.code }, `${window.GDI18N.name(c)} · ${c.code}`)));
    const needText = h("input", { maxlength: 2000, placeholder: T("诉求内容，将转为案件"), "aria-label": T("诉求内容") });
    const err = h("p", { class: "error", role: "alert" });
    const form = h(
      "form",
      { class: "visit-form", novalidate: true },
      h("label", {}, T("走访情况")),
      findings,
      h("label", { class: "check" }, party, " ", T("联系党员同行")),
      h("label", {}, T("照片")),
      photos.el,
      h("label", { class: "check" }, consent, " ", T("拍照已征得住户同意")),
      h("label", {}, T("发现诉求")),
      needCat,
      needText,
      err,
      h("button", { type: "submit", class: "primary block" }, T("记录走访"))
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      err.textContent = "";
      if (!findings.value.trim()) return (err.textContent = T("请填写走访情况"));
      if (photos.items.length && !consent.checked) return (err.textContent = T("拍照须征得住户同意"));
      if (needCat.value && !needText.value.trim()) return (err.textContent = T("请填写诉求内容"));
      const args = {
        findings: findings.value.trim(),
        visited_at: new Date().toISOString(),
        party_member_present: party.checked,
        photo_consent: consent.checked,
        needs: needCat.value ? [{ category: needCat.value, description: needText.value.trim() }] : [],
      };
      await Outbox.put({
        key: GD.uuid(),
        household_no: hh.household_no,
        args,
        photo: photos.items.length ? photos.items[0].blob : null,
        photoRef: null,
        state: "queued",
        created: new Date().toISOString(),
      });
      slot.replaceChildren();
      GD.toast(navigator.onLine ? T("正在发送走访记录") : T("已离线保存，恢复网络后自动发送"), "good");
      await render();
      flush();
    });
    slot.replaceChildren(form);
    findings.focus();
  }

  // ------------------------------------------------------------------ start
  async function start() {
    try {
      const vocab = await GD.api("/v1/vocabulary");
      for (const f of vocab.care_flags || []) flags[f.value] = f.label;
    } catch (e) {
      /* offline: flag codes are shown as they are */
    }
    try {
      categories = (await GD.categories()).filter((c) => !c.code.startsWith("ZL03"));
    } catch (e) {
      categories = [];
    }
    await render();
    refresh();
    flush();
    window.addEventListener("online", () => flush());
    setInterval(() => navigator.onLine && flush(), 5000);
    document.body.dataset.visitsReady = "1";
  }

  // Wait for the inspector app to sign in (it shows #app then).
  const wait = setInterval(() => {
    const app = $("#app");
    if (app && !app.hidden && GD.auth.state) {
      clearInterval(wait);
      start();
    }
  }, 200);

  window.GDVisits = { flush, refresh, outbox: Outbox };
})();
