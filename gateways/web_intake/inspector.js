/* Inspector app (网格员): report offline-first, verify fixes (核查), record care visits (六必访).
 *
 * The outbox: every submission (a report or a verification) is first written to IndexedDB
 * with its own idempotency key, then sent when the network allows. States:
 *   queued  — on this phone only; retried on 'online', every 5 s and on "Send now"
 *   sent    — the server accepted it (202 + case number); the case is being created
 *   filed   — the case is on record (GET /v1/cases/{no} answers) / the action succeeded
 *   rejected — the server refused it (4xx) with a message; kept until the user deletes it
 * The server derives the case from the idempotency key, so however often an item is sent
 * (lost responses, two tabs, a crash mid-send) exactly one case exists. */
(function () {
  "use strict";
  const T = (key, vars) => window.GDI18N.t(key, vars);
  const { $, $$, h } = GD;
  // The six 六必访 categories and the must-visit flag each is for (its name, in the page's
  // language, from the shared catalogue: care_flag.<flag>).
  const CARE_FLAG_OF = {
    ZL0301: "hardship", ZL0302: "dispute", ZL0303: "unemployed",
    ZL0304: "serious_illness", ZL0305: "released_or_corrected", ZL0306: "elderly_alone",
  };
  const CARE_VISITS = Object.keys(CARE_FLAG_OF);
  const STATE_TEXT = {
    queued: T("待发送"),
    sending: T("发送中"),
    sent: T("已发送"),
    filed: T("已登记"),
    rejected: T("被拒"),
  };

  // ------------------------------------------------------------------ IndexedDB outbox
  const DB_NAME = "gd-inspector";
  let dbp = null;
  function db() {
    if (!dbp)
      dbp = new Promise((resolve, reject) => {
        const req = indexedDB.open(DB_NAME, 1);
        req.onupgradeneeded = () => {
          const store = req.result.createObjectStore("outbox", { keyPath: "key" });
          store.createIndex("created", "created");
        };
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    return dbp;
  }
  async function tx(mode, fn) {
    const d = await db();
    return new Promise((resolve, reject) => {
      const t = d.transaction("outbox", mode);
      const store = t.objectStore("outbox");
      let result;
      Promise.resolve(fn(store)).then((r) => (result = r));
      t.oncomplete = () => resolve(result);
      t.onerror = () => reject(t.error);
    });
  }
  const req2p = (req) => new Promise((res, rej) => ((req.onsuccess = () => res(req.result)), (req.onerror = () => rej(req.error))));
  const Outbox = {
    put: (item) => tx("readwrite", (s) => req2p(s.put(item))),
    get: (key) => tx("readonly", (s) => req2p(s.get(key))),
    del: (key) => tx("readwrite", (s) => req2p(s.delete(key))),
    all: () => tx("readonly", (s) => req2p(s.index("created").getAll())),
    async update(key, patch) {
      const item = await Outbox.get(key);
      if (!item) return null;
      Object.assign(item, patch, { updated: new Date().toISOString() });
      await Outbox.put(item);
      return item;
    },
  };

  /** Queue a submission; photos are kept as Blobs in IndexedDB until uploaded. */
  async function enqueue(kind, payload, photos, label) {
    const item = {
      key: GD.uuid(),
      kind, // "report" | "action"
      payload,
      photos: photos.map((p) => ({ blob: p.blob, name: p.name })),
      refs: [],
      label,
      state: "queued",
      attempts: 0,
      created: new Date().toISOString(),
      case_no: payload.case_no || null,
      error: null,
    };
    await Outbox.put(item);
    renderQueue();
    flush();
    return item;
  }

  // ------------------------------------------------------------------ sending
  let flushing = null;
  function flush() {
    if (!flushing) flushing = run().finally(() => (flushing = null));
    return flushing;
  }
  async function run() {
    if (!navigator.onLine || !GD.auth.state) return;
    const body = async () => {
      const waiting = (await Outbox.all()).filter((i) => i.state === "queued" || i.state === "sending");
      const reports = waiting.filter((i) => i.kind === "report");
      let signedOut = false;
      // A backlog of reports (back from a dead zone) goes in batches: one round trip each.
      if (reports.length >= 2) {
        try {
          for (let i = 0; i < reports.length && navigator.onLine; i += BATCH) await sendBatch(reports.slice(i, i + BATCH));
        } catch (e) {
          signedOut = e instanceof GD.ApiError && e.status === 401;
        }
      }
      for (const item of signedOut ? [] : await Outbox.all()) {
        if (!navigator.onLine) break;
        try {
          if (item.state === "queued" || item.state === "sending") await send(item);
          else if (item.state === "sent") await confirm(item);
        } catch (e) {
          if (e instanceof GD.ApiError && e.status === 401) break; // sign in again first
        }
      }
      await renderQueue();
    };
    // Web Locks: two open tabs never send the same item at the same moment.
    if (navigator.locks) await navigator.locks.request("gd-outbox", body);
    else await body();
  }

  const BATCH = 50; // reports per POST /v1/reports/batch (the server takes up to 100)

  /** Upload an item's photos that are not uploaded yet; returns their references. */
  async function uploadPhotos(item) {
    const refs = item.refs.slice();
    for (let i = refs.length; i < item.photos.length; i++) {
      refs.push(await GD.uploadPhoto(item.photos[i].blob));
      await Outbox.update(item.key, { refs });
    }
    return refs;
  }

  /** Several queued reports in one request; each item is answered (and kept) on its own. */
  async function sendBatch(items) {
    const ready = [];
    for (const item of items) {
      await Outbox.update(item.key, { state: "sending", attempts: item.attempts + 1 });
      try {
        ready.push({ item, refs: await uploadPhotos(item) });
      } catch (e) {
        await Outbox.update(item.key, { state: "queued", error: navigator.onLine ? e.message : null });
        if (e instanceof GD.ApiError && e.status === 401) throw e;
      }
    }
    if (!ready.length) return;
    let out;
    try {
      out = await GD.api("/v1/reports/batch", {
        method: "POST",
        json: { reports: ready.map(({ item, refs }) => ({ ...item.payload, photos: refs, idempotency_key: item.key })) },
      });
    } catch (e) {
      for (const { item } of ready) await Outbox.update(item.key, { state: "queued", error: navigator.onLine ? e.message : null });
      throw e;
    }
    for (const result of out.results) {
      const { item } = ready[result.index];
      if (result.status === "accepted") {
        await Outbox.update(item.key, { state: "sent", case_no: result.case_no, error: null, sent_at: new Date().toISOString() });
      } else if (result.http_status >= 500 || result.http_status === 429) {
        await Outbox.update(item.key, { state: "queued", error: result.message });
      } else {
        const d = result.details || {};
        await Outbox.update(item.key, { state: "rejected", error: result.message, located_grid: d.located_grid || null, choices: d.choices || null });
        GD.toast(`${T("被拒")}: ${result.message}`, "bad");
      }
    }
  }

  async function send(item) {
    await Outbox.update(item.key, { state: "sending", attempts: item.attempts + 1 });
    try {
      const refs = await uploadPhotos(item);
      const headers = { "Idempotency-Key": item.key };
      if (item.kind === "report") {
        const r = await GD.api("/v1/reports", { method: "POST", json: { ...item.payload, photos: refs }, headers });
        await Outbox.update(item.key, { state: "sent", case_no: r.case_no, error: null, sent_at: new Date().toISOString() });
        await confirm(await Outbox.get(item.key));
      } else {
        const { case_no, verb, args } = item.payload;
        const r = await GD.api(`/v1/cases/${encodeURIComponent(case_no)}/actions/${verb}`, {
          method: "POST",
          json: { ...args, photos: refs },
          headers,
          raw: true,
        });
        const data = await r.json().catch(() => ({}));
        if (r.status === 200) await Outbox.update(item.key, { state: "filed", error: null, filed_at: new Date().toISOString() });
        else if (r.status === 202) await Outbox.update(item.key, { state: "sent", error: null });
        else if (r.status === 401) throw new GD.ApiError(401, data);
        else if (r.status >= 500) throw new GD.ApiError(r.status, data);
        else await Outbox.update(item.key, { state: "rejected", error: data.message || data.error || `HTTP ${r.status}` });
        if (r.status === 200) refreshTasks();
      }
    } catch (e) {
      if (e instanceof GD.ApiError && e.status >= 400 && e.status < 500 && e.status !== 401 && e.status !== 408 && e.status !== 429) {
        // Refused (bad photo, location outside the city, …): keep it with the reason (and,
        // for a fix outside the grid, the choices the server offers).
        await Outbox.update(item.key, { state: "rejected", error: e.message, located_grid: e.body.located_grid || null, choices: e.body.choices || null });
        GD.toast(`${T("被拒")}: ${e.message}`, "bad");
      } else {
        await Outbox.update(item.key, { state: "queued", error: navigator.onLine ? e.message : null });
        if (e instanceof GD.ApiError && e.status === 401) throw e;
      }
    }
  }

  /** A sent report is "filed" once the case can be read back. */
  async function confirm(item) {
    if (!item || item.kind !== "report" || !item.case_no) return;
    try {
      const c = await GD.api(`/v1/cases/${encodeURIComponent(item.case_no)}`);
      await Outbox.update(item.key, { state: "filed", status: c.status, filed_at: new Date().toISOString() });
    } catch (e) {
      if (!(e instanceof GD.ApiError && e.status === 404)) throw e; // 404: not yet projected
    }
  }

  /** A report refused for its GPS fix (422 grid_mismatch / 403 outside_jurisdiction): the
   * server's choices as buttons; choosing one queues the report again (a new key: the refused
   * one made no case), with its photos, fix and answers. */
  function fixChoices(it) {
    const resend = async (patch) => {
      await Outbox.del(it.key);
      await enqueue("report", { ...it.payload, ...patch }, it.photos, it.label);
    };
    const buttons = [];
    for (const c of it.choices) {
      if (c.choice === "report_there" && myGrids.includes(c.send.grid))
        buttons.push(h("button", { type: "button", class: "primary", dataset: { choice: c.choice }, onclick: () => resend(c.send) }, T("在 {grid} 上报", { grid: gridName(c.send.grid) })));
      else if (c.choice === "keep_grid")
        buttons.push(h("button", { type: "button", class: "ghost", dataset: { choice: c.choice }, onclick: () => resend(c.send) }, T("在 {grid} 上报并保留定位", { grid: gridName(c.send.grid) })));
      else if (c.choice === "choose_grid")
        for (const code of c.grids || [])
          buttons.push(h("button", { type: "button", class: "ghost", dataset: { choice: c.choice, grid: code }, onclick: () => resend({ grid: code, fix_outside_grid: true }) }, T("在 {grid} 上报并保留定位", { grid: gridName(code) })));
    }
    return buttons.length ? h("div", { class: "actions choices" }, ...buttons) : null;
  }

  // ------------------------------------------------------------------ rendering the queue
  async function renderQueue() {
    const items = (await Outbox.all()).reverse();
    const waiting = items.filter((i) => i.state === "queued" || i.state === "sending").length;
    $("#queue-badge").textContent = waiting ? String(waiting) : "";
    const list = $("#queue-list");
    if (!items.length) {
      list.replaceChildren(h("p", { class: "empty card" }, T("队列是空的")));
      return;
    }
    list.replaceChildren(
      ...items.map((it) =>
        h(
          "div",
          { class: `card item ${it.state}`, dataset: { key: it.key, state: it.state } },
          h("div", { class: "top" }, h("strong", {}, it.label), h("span", { class: `state ${it.state}` }, STATE_TEXT[it.state] || it.state)),
          h("div", { class: "desc" }, it.kind === "report" ? it.payload.description : it.payload.args.note || ""),
          h(
            "div",
            { class: "meta" },
            h("span", {}, GD.time(it.created)),
            it.case_no ? h("span", { class: "case-no" }, `${T("案件")} ${it.case_no}`) : null,
            it.photos.length ? h("span", { title: `${T("幂等键")} ${it.key}` }, GD.icon("camera"), ` ${it.photos.length}`) : null
          ),
          it.error ? h("p", { class: "error small" }, it.error) : null,
          it.state === "rejected" && it.kind === "report" && it.choices ? fixChoices(it) : null,
          it.state === "rejected"
            ? h(
                "div",
                { class: "actions" },
                h("button", { type: "button", class: "danger", onclick: async () => { await Outbox.del(it.key); renderQueue(); } }, T("删除"))
              )
            : null
        )
      )
    );
  }

  // ------------------------------------------------------------------ the report form
  let grids = [];
  const catIndex = {}; // code -> category (names, not codes)
  const categoryName = (code) => (catIndex[code] ? window.GDI18N.name(catIndex[code]) : code);
  let myGrids = [];
  let located = null; // {lat, lon, grid}: the last GPS fix (grid null: in no grid)
  let chosen = null; // {grid, fix_outside_grid}: what the user chose for a fix outside the grid
  let onLocated = null;
  let mapApi = null;
  const gridName = (code) => {
    const g = grids.find((x) => x.code === code);
    return g ? `${window.GDI18N.name(g)} (${code})` : code;
  };

  /** A GPS fix outside the chosen grid (or outside the user's grids): the explicit choice —
   * report it in the grid it lies in (when it is one of the user's) or file it in one of the
   * user's grids keeping the fix (fix_outside_grid). `andSubmit`: the form is sent once chosen. */
  function showChoice(andSubmit, fromServer) {
    const box = $("#fix-choice");
    const here = fromServer ? fromServer.located_grid : located && located.grid;
    const own = myGrids.includes(here);
    const selected = $("#grid-select").value;
    const targets = selected && selected !== here ? [selected] : myGrids.filter((c) => c !== here);
    const choose = (grid, keep) => {
      chosen = { grid, fix_outside_grid: keep };
      setGrid(grid, keep ? T("保留定位，定位在 {grid}", { grid: here ? gridName(here) : T("网格外") }) : "GPS");
      box.hidden = true;
      if (andSubmit) $("#report-form").requestSubmit();
    };
    box.hidden = false;
    box.replaceChildren(
      h("b", {}, here
        ? T("定位在 {grid}，不是所选网格", { grid: gridName(here) })
        : T("定位不在任何网格内")),
      h("p", { class: "small muted" }, own ? T("请选择在哪个网格上报；定位会一并保存") : T("该网格不归您负责：请选择您的网格上报，定位会一并保存")),
      h("div", { class: "actions choices" },
        own ? h("button", { type: "button", class: "primary", dataset: { choice: "report_there" }, onclick: () => choose(here, false) }, T("在 {grid} 上报", { grid: gridName(here) })) : null,
        ...targets.map((code) => h("button", { type: "button", class: "ghost", dataset: { choice: "keep_grid", grid: code }, onclick: () => choose(code, true) }, T("在 {grid} 上报并保留定位", { grid: gridName(code) })))
      )
    );
    box.scrollIntoView({ block: "nearest" });
  }

  /** A standard address or component picked in a grid that is not the inspector's: said at
   * once (the report would still be filed in the grid chosen below). */
  function outsideMine(code) {
    if (!code || myGrids.includes(code) || located) return;
    const g = grids.find((x) => x.code === code);
    const line = $("#grid-line");
    line.className = "gridline error";
    line.textContent = T("该位置在 {grid}，不是您负责的网格", { grid: `${g ? window.GDI18N.name(g) : code} (${code})` });
  }

  function setGrid(code, why) {
    const sel = $("#grid-select");
    if (code && !Array.from(sel.options).some((o) => o.value === code)) code = "";
    sel.value = code || "";
    const g = grids.find((x) => x.code === code);
    const line = $("#grid-line");
    if (g) {
      line.className = "gridline";
      line.replaceChildren(`${T("网格")}: `, h("b", {}, `${g.name_zh}`), ` (${g.code}) · ${why}`);
      if (mapApi) mapApi.select(code);
    }
  }

  function locate() {
    const line = $("#grid-line");
    if (!navigator.geolocation) {
      line.textContent = T("此设备不支持定位，请手选网格");
      return;
    }
    line.textContent = T("定位中");
    navigator.geolocation.getCurrentPosition(
      (pos) => {
        const { latitude: lat, longitude: lon, accuracy } = pos.coords;
        const g = GD.locateGrid(grids, lat, lon);
        if (mapApi) mapApi.mark(lat, lon);
        // The fix is kept whatever grid it lies in: it goes with the report (never dropped).
        located = { lat, lon, grid: g ? g.code : null };
        chosen = null;
        if (onLocated) onLocated();
        if (!g) {
          line.className = "gridline error";
          line.textContent = `(${lat.toFixed(5)}, ${lon.toFixed(5)}) ${T("不在任何网格内，请手选网格")}`;
          return;
        }
        if (!myGrids.includes(g.code)) {
          line.className = "gridline error";
          line.textContent = T("您在 {grid}，不是您负责的网格", { grid: `${g.name_zh} (${g.code})` });
          showChoice(false);
          return;
        }
        setGrid(g.code, `GPS ±${Math.round(accuracy)} m`);
      },
      () => {
        located = null;
        line.className = "gridline";
        line.textContent = T("无法定位（GPS 关闭？），请手选网格");
      },
      { enableHighAccuracy: true, timeout: 10000, maximumAge: 60000 }
    );
  }

  async function setupReport(cats) {
    const questions = GD.questionsForm();
    // A 部件 category: the component's code may be named (from its plate; GD.componentField,
    // as on the hotline page). Found, with no GPS fix, it marks the map.
    const component = GD.componentField({
      onFound(c) {
        if (mapApi && !located && c.lat != null) { mapApi.mark(c.lat, c.lon); mapApi.map.panTo([c.lat, c.lon], { animate: false }); }
        outsideMine(c.grid);
      },
    });
    $("#component-slot").replaceChildren(component.el);
    const nearby = GD.nearbyBox();
    let place = null;
    const point = () => (located ? located : place && place.value ? place.value : null);
    const checkNearby = () => {
      const p = point();
      return p && picker.value ? nearby.show(p.lat, p.lon, picker.value.code) : nearby.hide();
    };
    onLocated = checkNearby;
    const picker = GD.categoryPicker(cats, {
      storageKey: "gd.inspector.recent",
      filter: (c) => !CARE_VISITS.includes(c.code),
      onPick: (c) => {
        questions.set(c);
        checkNearby();
        component.set(c);
      },
    });
    $("#category-slot").replaceChildren(picker.el);
    $("#questions-slot").replaceChildren(questions.el);
    $("#nearby-slot").replaceChildren(nearby.el);
    // The standard address (标准地址库): its id goes with the report (address text, and the
    // location when there is no GPS fix); in one of my grids it also picks the grid.
    place = GD.placeSearch($("#address"), {
      onPick(p) {
        if (!located && myGrids.includes(p.grid)) setGrid(p.grid, T("标准地址"));
        if (mapApi && !located) { mapApi.mark(p.lat, p.lon); mapApi.map.panTo([p.lat, p.lon], { animate: false }); }
        outsideMine(p.grid);
        checkNearby();
      },
    });
    const photos = GD.photoPicker();
    $("#photo-slot").replaceChildren(photos.el);
    const sel = $("#grid-select");
    sel.replaceChildren(
      h("option", { value: "" }, T("手选网格")),
      ...myGrids.map((code) => {
        const g = grids.find((x) => x.code === code);
        return h("option", { value: code }, g ? `${g.name_zh} ${code}` : code);
      })
    );
    sel.addEventListener("change", () => {
      chosen = null; // the GPS fix stays: a fix in another grid asks again on submit
      $("#fix-choice").hidden = true;
      if (sel.value) setGrid(sel.value, T("手选"));
      if (mapApi && sel.value) mapApi.fit(sel.value);
    });
    if (myGrids.length === 1) setGrid(myGrids[0], T("您的网格"));
    const basemap = await GD.basemap();
    mapApi = GD.gridMap($("#map"), grids.filter((g) => myGrids.includes(g.code) || myGrids.length === 0), { highlight: myGrids, basemap });
    $("#gps-btn").addEventListener("click", locate);

    $("#report-form").addEventListener("input", () => ($("#report-error").textContent = ""));
    $("#report-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const err = $("#report-error");
      err.textContent = "";
      const cat = picker.value;
      const grid = sel.value;
      const description = $("#description").value.trim();
      if (!cat) return (err.textContent = T("请选择类别"));
      const { answers, problem } = questions.read();
      if (problem) return (err.textContent = problem);
      if (!description) return (err.textContent = T("请填写描述"));
      const outside = located && located.grid && located.grid !== grid;
      const keep = outside && chosen && chosen.grid === grid && chosen.fix_outside_grid;
      if (outside && !keep) return showChoice(true); // never file it elsewhere silently
      if (!grid) return (err.textContent = T("请定位或手选网格"));
      const named = component.read();
      if (named.problem) return (err.textContent = named.problem);
      const payload = {
        category: cat.code,
        grid,
        description,
        address: $("#address").value.trim() || null,
        source: "inspector_app",
        client_time: new Date().toISOString(),
        answers,
      };
      if (place.value) payload.place_id = place.value.id;
      if (located) Object.assign(payload, { lat: located.lat, lon: located.lon });
      if (keep) payload.fix_outside_grid = true;
      if (named.code) payload.component = named.code;
      await enqueue("report", payload, photos.items.slice(), `${cat.name_zh} · ${cat.code}`);
      picker.remember(cat.code);
      picker.clear();
      photos.clear();
      place.clear();
      nearby.hide();
      chosen = null; // the fix stays for the next report (as before); a choice is asked again
      $("#fix-choice").hidden = true;
      $("#description").value = "";
      component.set(null);
      GD.toast(navigator.onLine ? T("已提交") : T("已存入队列，恢复网络后发送"), navigator.onLine ? "good" : "warn");
      showTab("queue");
    });
  }

  // ------------------------------------------------------------------ my grid: 核查 and 六必访
  let taskEls = new Map(); // case_no → {version, el}: a half-written note survives a refresh
  async function refreshTasks() {
    const box = $("#tasks");
    let data;
    try {
      data = await GD.api("/v1/cases?action=verify_pass&limit=100");
    } catch (e) {
      if (!box.children.length || box.querySelector(".empty")) box.replaceChildren(h("p", { class: "empty" }, navigator.onLine ? e.message : T("离线：连网后显示")));
      return;
    }
    const pending = new Set((await Outbox.all()).filter((i) => i.kind === "action" && i.state !== "rejected").map((i) => i.payload.case_no));
    const tasks = data.items.filter((c) => !pending.has(c.case_no));
    $("#task-badge").textContent = tasks.length ? String(tasks.length) : "";
    if (!tasks.length) {
      box.replaceChildren(h("p", { class: "empty" }, T("没有待核查的案件")));
      return;
    }
    const next = new Map();
    box.replaceChildren(
      ...tasks.map((c) => {
        const old = taskEls.get(c.case_no);
        const el = old && old.version === c.version ? old.el : taskCard(c);
        next.set(c.case_no, { version: c.version, el });
        return el;
      })
    );
    taskEls = next;
  }

  // 核查 on site: when the action's argument schema (GET /v1/vocabulary, the registry's own)
  // asks for the inspector's fix (lat / lon), the phone's GPS position goes with the decision.
  let verifySchema = null;
  const needsFix = async (verb) => {
    verifySchema ||= GD.api("/v1/vocabulary")
      .then((v) => Object.fromEntries(v.actions.map((x) => [x.value, x.args])))
      .catch(() => ((verifySchema = null), {})); // offline: ask for the evidence anyway
    const args = (await verifySchema)[verb];
    return !args || Boolean(args.properties && args.properties.lat);
  };
  const fix = () => new Promise((resolve, reject) => {
    if (!navigator.geolocation) return reject(new Error(T("此设备不支持定位，无法现场核查")));
    navigator.geolocation.getCurrentPosition(
      (pos) => resolve({ lat: pos.coords.latitude, lon: pos.coords.longitude }),
      () => reject(new Error(T("核查须在现场定位，请打开 GPS"))),
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 }
    );
  });

  function taskCard(c) {
    const note = h("textarea", { placeholder: T("核查说明"), maxlength: 2000 });
    const photos = GD.photoPicker();
    const err = h("p", { class: "error small", role: "alert" });
    const result = h("div", { class: "panel small" }, T("载入处置结果"));
    GD.api(`/v1/cases/${encodeURIComponent(c.case_no)}`)
      .then((full) => {
        const ev = [...full.timeline].reverse().find((e) => e.type === "ResultReported");
        result.replaceChildren(
          h("b", {}, `${T("处置反馈")}: `),
          ev ? ev.data.note : "—",
          h("div", { class: "thumbs" }, ...((ev && ev.data.photos) || []).map(GD.photoImg))
        );
      })
      .catch(() => result.remove());
    const decide = async (verb) => {
      err.textContent = "";
      if (verb === "verify_fail" && !note.value.trim()) return (err.textContent = T("不通过须说明原因"));
      const args = { note: note.value.trim() || null };
      try {
        if (await needsFix(verb)) {
          if (!photos.items.length) return (err.textContent = T("核查须拍摄现场照片"));
          Object.assign(args, await fix());
        }
      } catch (e) {
        return (err.textContent = e.message);
      }
      await enqueue(
        "action",
        { case_no: c.case_no, verb, args },
        photos.items.slice(),
        `${verb === "verify_pass" ? T("核查通过") : T("核查不通过")} · ${c.case_no}`
      );
      card.remove();
      GD.toast(verb === "verify_pass" ? T("核查通过已提交") : T("已退回返工"), "good");
    };
    const light = c.overdue ? "red" : c.warning ? "yellow" : "green";
    const card = h(
      "div",
      { class: "card item task", dataset: { caseNo: c.case_no } },
      h("div", { class: "top" }, h("strong", {}, c.case_no), h("span", { class: "pill" }, GD.STATUS[c.status] || c.status)),
      h("div", { class: "desc" }, c.description),
      h("div", { class: "meta" }, h("span", {}, h("span", { class: `light ${light}` }), `${T("核查时限")} ${GD.time(c.due_at)}`), h("span", { title: c.category }, categoryName(c.category)), c.address ? h("span", {}, c.address) : null),
      result,
      h("label", {}, T("核查说明"), note),
      photos.el,
      err,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "ok", onclick: () => decide("verify_pass") }, T("✓ 通过")),
        h("button", { type: "button", class: "danger", onclick: () => decide("verify_fail") }, T("✗ 不通过"))
      )
    );
    return card;
  }

  function setupVisits(cats) {
    const types = cats.filter((c) => CARE_VISITS.includes(c.code));
    $("#visit-type").replaceChildren(...types.map((c) => h("option", { value: c.code, title: c.code }, window.GDI18N.label("care_flag", CARE_FLAG_OF[c.code]))));
    $("#visit-grid").replaceChildren(...myGrids.map((code) => h("option", { value: code }, window.GDI18N.name(grids.find((g) => g.code === code), code))));
    const photos = GD.photoPicker();
    $("#visit-photo-slot").replaceChildren(photos.el);
    $("#visit-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const err = $("#visit-error");
      err.textContent = "";
      const code = $("#visit-type").value;
      const household = $("#visit-household").value.trim();
      const note = $("#visit-note").value.trim();
      if (!household) return (err.textContent = T("请填写走访对象"));
      if (!note) return (err.textContent = T("请填写走访情况"));
      const cat = types.find((c) => c.code === code);
      await enqueue(
        "report",
        {
          category: code,
          grid: $("#visit-grid").value,
          address: household.slice(0, 200),
          description: `【六必访】${household}：${note}`,
          source: "inspector_app",
          client_time: new Date().toISOString(),
        },
        photos.items.slice(),
        `${cat.name_zh} · ${code}`
      );
      $("#visit-household").value = "";
      $("#visit-note").value = "";
      photos.clear();
      GD.toast(T("走访已记录"), "good");
    });
  }

  // ------------------------------------------------------------------ notifications
  let unseen = 0;
  function addNotice(n, live) {
    const box = $("#notes");
    if (box.querySelector(".empty")) box.replaceChildren();
    if (box.querySelector(`[data-id="${n.id}"]`)) return;
    box.prepend(
      h(
        "div",
        // A household visit reminder opens 我的网格, where the visit worklist is.
        { class: `card notice ${n.kind}`, dataset: { id: n.id, kind: n.kind }, onclick: n.kind.startsWith("visit_") ? () => showTab("grid") : null },
        h("div", { class: "top" }, h("strong", {}, GD.noticeTitle(n)), h("span", { class: "muted small" }, GD.time(n.at))),
        h("div", { class: "desc" }, GD.noticeBody(n)),
        h("div", { class: "meta" }, h("span", { class: "code" }, n.case_no))
      )
    );
    if (live && n.kind.startsWith("visit_")) {
      visitReminder(n);
      if (current !== "notes") $("#note-badge").textContent = String(++unseen);
    } else if (live) {
      GD.toast(`${GD.noticeTitle(n)} · ${n.case_no}`, n.kind === "overdue" ? "bad" : "");
      if (current !== "notes") $("#note-badge").textContent = String(++unseen);
      if (n.kind === "recheck_task") [0, 1000, 3000].forEach((ms) => setTimeout(refreshTasks, ms));
    }
  }

  // Household visit reminders come many at once (the watcher's pass over a grid): one toast
  // for a burst, and the worklist reloaded once.
  let burst = [];
  function visitReminder(n) {
    burst.push(n);
    if (burst.length > 1) return;
    setTimeout(() => {
      const got = burst;
      burst = [];
      const bad = got.some((x) => x.kind === "visit_overdue");
      GD.toast(got.length === 1 ? `${GD.noticeTitle(got[0])} · ${got[0].case_no}` : T("走访提醒 {n} 条，请查看通知", { n: got.length }), bad ? "bad" : "");
      if (window.GDVisits) window.GDVisits.refresh();
    }, 1500);
  }

  // ------------------------------------------------------------------ tabs and start-up
  let current = "report";
  function showTab(name) {
    current = name;
    for (const b of $$("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
    for (const s of $$("#app > section")) s.hidden = s.id !== `tab-${name}`;
    if (name === "notes") {
      unseen = 0;
      $("#note-badge").textContent = "";
    }
    if (name === "grid") refreshTasks();
    if (name === "queue") renderQueue();
    if (name === "report" && mapApi) setTimeout(() => mapApi.map.invalidateSize(), 30);
  }

  async function start() {
    const header = GD.header(T("网格员上报"), T("网格化管理"));
    $("#header").replaceChildren(header.el);
    if ("serviceWorker" in navigator) navigator.serviceWorker.register("/inspector/sw.js", { scope: "/inspector/" }).catch(() => {});
    const user = await GD.signInFlow({
      app: "inspector",
      roles: ["inspector"],
      container: $("#signin-slot"),
    });
    header.signedIn(user);
    GD.onSignedOut = () => GD.toast(T("登录已过期，请重新登录"), "warn");
    myGrids = user.grids || [];
    $("#app").hidden = false;
    $("#tabs").hidden = false;
    for (const b of $$("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
    let cats = [];
    try {
      [cats, grids] = await Promise.all([GD.categories(), GD.grids()]);
      for (const c of cats) catIndex[c.code] = c;
    } catch (e) {
      GD.toast(`${T("无法载入基础数据")}: ${e.message}`, "bad");
    }
    await setupReport(cats);
    setupVisits(cats);
    await renderQueue();
    $("#flush-btn").addEventListener("click", () => flush());
    window.addEventListener("online", () => {
      GD.toast(T("网络已恢复，正在发送"), "good");
      flush();
    });
    setInterval(() => navigator.onLine && flush(), 5000);
    flush();
    refreshTasks();
    try {
      const recent = await GD.api("/v1/notifications?limit=20");
      recent.items.forEach((n) => addNotice(n, false));
    } catch (e) {
      /* offline */
    }
    GD.listen((n) => addNotice(n, true));
    document.body.dataset.ready = "1";
  }

  window.GDInspector = { flush, outbox: Outbox, refreshTasks, showTab };
  start();
})();
