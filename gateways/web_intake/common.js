/* griddispatch intake pages — shared code (sign-in, API calls, live notifications, photos,
 * grids and categories). No framework, no CDN: plain ES2020 served from /intake-static/. */
(function () {
  "use strict";
  const T = (key, vars) => window.GDI18N.t(key, vars);

  const GD = {};
  window.GD = GD;

  // ------------------------------------------------------------------ small DOM helpers
  GD.$ = (sel, root) => (root || document).querySelector(sel);
  GD.$$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  GD.h = function (tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  };

  GD.uuid = function () {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const x = Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  };

  GD.T = T;
  /** A notification's title in the page's language (by its kind; the server's zh-Hans title
   * for a kind the catalogue does not know). */
  GD.noticeTitle = (n) => (`notice.${n.kind}` in window.GDI18N.messages ? T(`notice.${n.kind}`) : n.title);
  // A notification's body in the page's language. The server writes it in zh-Hans as
  // "<lead>: <what the person wrote>" (aggregates/notices.py); the lead is rebuilt here from
  // the catalogue (nbody.*), the free text after it stays as it was written.
  const LEADS = [
    [/^重派: /, "nbody.redispatch", []], [/^派遣: /, "nbody.dispatch", []],
    [/^请到现场核查: /, "nbody.recheck", []], [/^核查不通过, 返工: /, "nbody.rework", []],
    [/^退单 \(([^)]*)\): /, "nbody.returned", ["who"]],
    [/^即将超期 \(([^)]*)\): /, "nbody.warning", ["step"]], [/^已超期 \(([^)]*)\): /, "nbody.overdue", ["step"]],
    [/^延期申请 (\S+) 小时: /, "nbody.extension", ["hours"]],
    [/^延期已批准(: )?/, "nbody.extension_ok", []], [/^延期被驳回(: )?/, "nbody.extension_no", []],
    [/^回访不满意, 请决定重办或不予重办: /, "nbody.reopen", []], [/^已结案, 请回访: /, "nbody.return_visit", []],
    [/^走访已逾期 \(期限 ([^)]*)\), 请尽快走访: /, "nbody.visit_overdue", ["when"]],
    [/^走访临期, 请于 (.+?) 前走访: /, "nbody.visit_due", ["when"]],
  ];
  GD.noticeBody = function (n) {
    const body = n.body || "";
    if (window.GDI18N.lang === "zh-Hans") return body;
    for (const [re, key, names] of LEADS) {
      const m = body.match(re);
      if (!m) continue;
      const vars = {};
      names.forEach((name, i) => { vars[name] = name === "step" ? window.GDI18N.label("step", m[i + 1]) : m[i + 1]; });
      const rest = body.slice(m[0].length);
      return T(key, vars) + (rest ? `: ${rest}` : "");
    }
    return body;
  };
  /** An SVG icon from the shared sprite (no emoji: a desktop without an emoji font shows boxes). */
  GD.icon = function (name) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "icon");
    svg.setAttribute("aria-hidden", "true");
    const use = document.createElementNS(ns, "use");
    use.setAttribute("href", `/static/shared/icons.svg#i-${name}`);
    svg.append(use);
    return svg;
  };

  GD.toast = function (text, kind) {
    let box = GD.$("#toasts");
    if (!box) {
      box = GD.h("div", { id: "toasts", role: "status", "aria-live": "polite" });
      document.body.append(box);
    }
    const t = GD.h("div", { class: "toast " + (kind || "") }, text);
    box.append(t);
    setTimeout(() => t.remove(), 5000);
  };

  // Dates and durations as every page writes them (static/shared/i18n.js): 2026-12-05 09:30.
  GD.time = (iso) => window.GDI18N.dateTime(iso);

  /** "剩余 3小时" or "超期 1小时22分" relative to now (static/shared/i18n.js writes it). */
  GD.dueText = function (iso, now) {
    const d = window.GDI18N.due(iso, now);
    if (!d) return { text: "—", light: "none" };
    return { text: d.text, light: d.overdue ? "red" : "green" };
  };

  GD.STATUS = {
    reported: T("已上报"),
    filed: T("已立案"),
    rejected: T("不予立案"),
    merged: T("已合并"),
    dispatched: T("已派遣"),
    in_progress: T("处置中"),
    returned: T("已退单"),
    suspended: T("挂账"),
    awaiting_verification: T("待核查"),
    verified: T("核查通过"),
    closed: T("已结案"),
  };
  GD.PRIORITY = { urgent: T("紧急"), important: T("重要"), ordinary: T("一般") };

  // ------------------------------------------------------------------ sign-in and API
  class ApiError extends Error {
    constructor(status, body) {
      super((body && (body.message || body.error)) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }
  GD.ApiError = ApiError;

  const Auth = {
    key: "gd.auth",
    app: "intake",
    state: null,
    load(app) {
      this.app = app;
      try {
        this.state = JSON.parse(localStorage.getItem(`${this.key}.${app}`) || "null");
      } catch (e) {
        this.state = null;
      }
      return this.state;
    },
    save(state) {
      this.state = state;
      if (state) localStorage.setItem(`${this.key}.${this.app}`, JSON.stringify(state));
      else localStorage.removeItem(`${this.key}.${this.app}`);
    },
    get user() {
      return this.state && this.state.user;
    },
    async signIn(username, password) {
      const form = new URLSearchParams({ username, password, client_id: this.app });
      const r = await fetch("/v1/auth/token", { method: "POST", body: form });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new ApiError(r.status, body);
      this.save({ access: body.access_token, refresh: body.refresh_token, user: body.user });
      return body.user;
    },
    async refresh() {
      if (!this.state || !this.state.refresh) return false;
      const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: this.state.refresh });
      try {
        const r = await fetch("/v1/auth/token", { method: "POST", body: form });
        if (!r.ok) return false;
        const body = await r.json();
        this.save({ access: body.access_token, refresh: body.refresh_token || this.state.refresh, user: body.user || this.state.user });
        return true;
      } catch (e) {
        return false;
      }
    },
    signOut() {
      const token = this.state && this.state.access;
      if (token) fetch("/v1/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
      this.save(null);
    },
  };
  GD.auth = Auth;

  /** fetch with the Bearer token, one refresh on 401, JSON errors as GD.ApiError. */
  GD.api = async function (path, opts) {
    opts = Object.assign({ method: "GET" }, opts || {});
    const attempt = async () => {
      const headers = Object.assign({}, opts.headers || {});
      if (Auth.state) headers.Authorization = `Bearer ${Auth.state.access}`;
      let body = opts.body;
      if (opts.json !== undefined) {
        headers["Content-Type"] = "application/json";
        body = JSON.stringify(opts.json);
      }
      return fetch(path, { method: opts.method, headers, body });
    };
    let r = await attempt();
    if (r.status === 401 && (await Auth.refresh())) r = await attempt();
    if (opts.raw) return r;
    const text = await r.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = { message: text };
    }
    if (!r.ok) {
      if (r.status === 401 && GD.onSignedOut) GD.onSignedOut();
      throw new ApiError(r.status, data);
    }
    return data;
  };

  /** Mount the sign-in form; resolves with the user once signed in with an allowed role. */
  GD.signInFlow = function ({ app, roles, container }) {
    Auth.load(app);
    return new Promise((resolve) => {
      const ok = (user) => user && roles.includes(user.role);
      if (ok(Auth.user)) return resolve(Auth.user);
      const err = GD.h("p", { class: "error", role: "alert" });
      const user = GD.h("input", { name: "username", autocomplete: "username", required: true, autocapitalize: "none" });
      const pass = GD.h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
      const form = GD.h(
        "form",
        { class: "card signin", id: "signin" },
        GD.h("h2", {}, T("登录")),
        GD.h("label", {}, T("用户名"), user),
        GD.h("label", {}, T("密码"), pass),
        err,
        GD.h("button", { type: "submit", class: "primary block" }, T("登录")),
        window.GDI18N.demoBox(roles, (u, p) => { user.value = u; pass.value = p; })
      );
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        err.textContent = "";
        try {
          const u = await Auth.signIn(user.value.trim(), pass.value);
          if (!ok(u)) {
            Auth.save(null);
            err.textContent = T("此页面供 {roles} 使用", { roles: roles.map((r) => window.GDI18N.label("role", r)).join(" / ") });
            return;
          }
          form.remove();
          resolve(u);
        } catch (e) {
          err.textContent = e.status === 401 ? T("signin_failed") : e.status === 429 ? T("signin_locked") : e.status === 403 ? T("signin_disabled") : `${T("无法登录")}: ${e.message}`;
        }
      });
      container.replaceChildren(form);
      user.focus();
    });
  };

  // ------------------------------------------------------------------ live notifications
  /** Server-Sent Events over fetch (so the token goes in a header, not the URL). */
  GD.listen = function (onItem) {
    let lastId = null;
    let stopped = false;
    let controller = null;
    async function loop() {
      while (!stopped) {
        controller = new AbortController();
        try {
          const headers = { Accept: "text/event-stream", Authorization: `Bearer ${Auth.state.access}` };
          if (lastId) headers["Last-Event-ID"] = String(lastId);
          const r = await fetch("/v1/notifications/stream", { headers, signal: controller.signal });
          if (r.status === 401) {
            if (!(await Auth.refresh())) return;
            continue;
          }
          if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
          const reader = r.body.getReader();
          const decoder = new TextDecoder();
          let buf = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += decoder.decode(value, { stream: true });
            let idx;
            while ((idx = buf.indexOf("\n\n")) >= 0) {
              const block = buf.slice(0, idx);
              buf = buf.slice(idx + 2);
              let event = "message";
              let data = "";
              let id = null;
              for (const line of block.split("\n")) {
                if (line.startsWith("event:")) event = line.slice(6).trim();
                else if (line.startsWith("data:")) data += line.slice(5).trim();
                else if (line.startsWith("id:")) id = Number(line.slice(3).trim());
              }
              if (event === "notification" && data) {
                if (id) lastId = id;
                try {
                  onItem(JSON.parse(data));
                } catch (e) {
                  console.error(e);
                }
              }
            }
          }
        } catch (e) {
          if (stopped) return;
        }
        await new Promise((res) => setTimeout(res, 3000));
      }
    }
    loop();
    return () => {
      stopped = true;
      if (controller) controller.abort();
    };
  };

  // ------------------------------------------------------------------ photos
  GD.MAX_EDGE = 1600;

  /** Downscale a camera / gallery image on the phone: longest edge ≤ 1600 px, JPEG 0.82. */
  GD.downscale = async function (file, maxEdge) {
    maxEdge = maxEdge || GD.MAX_EDGE;
    if (!/^image\/(jpeg|png|webp|heic|heif)$/i.test(file.type || "")) {
      throw new Error(`${T("不支持的文件类型")}: ${file.type || file.name}`);
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch (e) {
      throw new Error(`${T("无法读取图片")}: ${file.name}`);
    }
    const scale = Math.min(1, maxEdge / Math.max(bitmap.width, bitmap.height));
    const w = Math.max(1, Math.round(bitmap.width * scale));
    const h = Math.max(1, Math.round(bitmap.height * scale));
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    canvas.getContext("2d").drawImage(bitmap, 0, 0, w, h);
    if (bitmap.close) bitmap.close();
    const blob = await new Promise((res) => canvas.toBlob(res, "image/jpeg", 0.82));
    if (!blob) throw new Error(T("无法压缩图片"));
    return { blob, width: w, height: h, name: (file.name || "photo").replace(/\.\w+$/, "") + ".jpg" };
  };

  /** Upload a blob; returns the reference {digest, size, content_type}. */
  GD.uploadPhoto = async function (blob) {
    const r = await GD.api("/v1/photos", { method: "POST", body: blob, headers: { "Content-Type": blob.type || "image/jpeg" } });
    return { digest: r.digest, size: r.size, content_type: r.content_type };
  };

  const photoUrls = new Map();
  /** An <img> for a stored photo, fetched with the token (img src cannot send headers). */
  GD.photoImg = function (ref) {
    const img = GD.h("img", { class: "thumb", alt: T("照片"), loading: "lazy" });
    const key = ref.digest;
    const set = (url) => (img.src = url);
    if (photoUrls.has(key)) set(photoUrls.get(key));
    else
      GD.api(`/v1/photos/${encodeURIComponent(ref.digest)}`, { raw: true })
        .then((r) => (r.ok ? r.blob() : null))
        .then((b) => {
          if (!b) return;
          const url = URL.createObjectURL(b);
          photoUrls.set(key, url);
          set(url);
        })
        .catch(() => {});
    return img;
  };

  /** A photo picker with camera + gallery buttons, downscaling and thumbnails. */
  GD.photoPicker = function (onChange) {
    const items = [];
    const thumbs = GD.h("div", { class: "thumbs" });
    const err = GD.h("p", { class: "error small", role: "alert" });
    const camera = GD.h("input", { type: "file", accept: "image/*", capture: "environment", hidden: true, "data-role": "camera" });
    const gallery = GD.h("input", { type: "file", accept: "image/jpeg,image/png,image/webp", multiple: true, hidden: true, "data-role": "gallery" });
    async function add(files) {
      err.textContent = "";
      for (const f of files) {
        if (items.length >= 9) {
          err.textContent = T("最多 9 张照片");
          break;
        }
        try {
          const small = await GD.downscale(f);
          const url = URL.createObjectURL(small.blob);
          items.push({ blob: small.blob, name: small.name, url });
        } catch (e) {
          err.textContent = e.message;
        }
      }
      render();
    }
    function render() {
      thumbs.replaceChildren(
        ...items.map((it, i) =>
          GD.h(
            "div",
            { class: "thumbwrap" },
            GD.h("img", { class: "thumb", src: it.url, alt: it.name }),
            GD.h("button", { type: "button", class: "x", title: T("移除"), onclick: () => { items.splice(i, 1); render(); } }, "×")
          )
        )
      );
      if (onChange) onChange(items);
    }
    camera.addEventListener("change", () => add(camera.files).then(() => (camera.value = "")));
    gallery.addEventListener("change", () => add(gallery.files).then(() => (gallery.value = "")));
    const el = GD.h(
      "div",
      { class: "picker" },
      GD.h(
        "div",
        { class: "row" },
        GD.h("button", { type: "button", class: "ghost", onclick: () => camera.click() }, GD.icon("camera"), T("拍照")),
        GD.h("button", { type: "button", class: "ghost", onclick: () => gallery.click() }, GD.icon("image"), T("相册"))
      ),
      camera,
      gallery,
      thumbs,
      err
    );
    return {
      el,
      items,
      clear() {
        items.splice(0, items.length);
        render();
      },
    };
  };

  // ------------------------------------------------------------------ reference data (cached)
  async function cached(key, path, pick) {
    try {
      const data = await GD.api(path);
      const value = pick ? pick(data) : data;
      localStorage.setItem(key, JSON.stringify(value));
      return value;
    } catch (e) {
      const old = localStorage.getItem(key);
      if (old) return JSON.parse(old);
      throw e;
    }
  }
  GD.categories = () => cached("gd.categories", "/v1/categories", (d) => d.items);
  GD.grids = () => cached("gd.grids", "/v1/grids", (d) => d.items);
  GD.departments = () => cached("gd.departments", "/v1/departments", (d) => d.items);
  /** The city's base map (GET /v1/jurisdiction: basemap; null without one), cached offline. */
  GD.basemap = () => cached("gd.basemap", "/v1/jurisdiction", (d) => d.basemap || null).catch(() => null);
  function cachedBasemap() {
    try { return JSON.parse(localStorage.getItem("gd.basemap") || "null"); } catch (e) { return null; }
  }

  function fold(s) {
    return String(s || "").toLowerCase().trim();
  }
  /** Search categories in Chinese or English (code, names, aliases, group), best first. */
  GD.searchCategories = function (cats, text) {
    const q = fold(text);
    if (!q) return cats.slice();
    const ranked = [];
    cats.forEach((c, order) => {
      const names = [c.name_zh, c.name_en, ...(c.aliases || [])].map(fold);
      let rank = null;
      if (fold(c.code) === q || names.includes(q)) rank = 0;
      else if (fold(c.code).startsWith(q) || names.some((n) => n.includes(q))) rank = 1;
      else if (fold(c.group_zh).includes(q) || fold(c.group_en).includes(q)) rank = 2;
      if (rank !== null) ranked.push([rank, order, c]);
    });
    ranked.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    return ranked.map((r) => r[2]);
  };

  /** A category picker: search box, recent categories, result list. */
  GD.categoryPicker = function (cats, { storageKey, filter, onPick }) {
    const recentKey = storageKey || "gd.recentCategories";
    const pool = filter ? cats.filter(filter) : cats;
    let chosen = null;
    const input = GD.h("input", { type: "search", placeholder: T("搜索类别: 垃圾 / 井盖"), "aria-label": T("搜索类别"), autocomplete: "off" });
    const recentBox = GD.h("div", { class: "chips" });
    const list = GD.h("ul", { class: "results", role: "listbox" });
    const selected = GD.h("div", { class: "selected muted" }, T("未选择类别"));
    const recent = () => JSON.parse(localStorage.getItem(recentKey) || "[]").filter((code) => pool.some((c) => c.code === code));
    function pick(c) {
      chosen = c;
      selected.className = "selected";
      selected.replaceChildren(GD.h("span", { class: "code" }, c.code), ` ${window.GDI18N.name(c)}`);
      list.replaceChildren();
      input.value = "";
      if (onPick) onPick(c);
    }
    function remember(code) {
      const r = [code, ...recent().filter((x) => x !== code)].slice(0, 6);
      localStorage.setItem(recentKey, JSON.stringify(r));
      renderRecent();
    }
    function renderRecent() {
      const r = recent();
      recentBox.replaceChildren(
        ...(r.length ? [GD.h("span", { class: "muted small" }, T("最近") + ":")] : []),
        ...r.map((code) => {
          const c = pool.find((x) => x.code === code);
          return GD.h("button", { type: "button", class: "chip", onclick: () => pick(c) }, window.GDI18N.name(c));
        })
      );
    }
    input.addEventListener("input", () => {
      const found = input.value.trim() ? GD.searchCategories(pool, input.value).slice(0, 8) : [];
      list.replaceChildren(
        ...found.map((c) =>
          GD.h(
            "li",
            { role: "option", tabindex: "0", onclick: () => pick(c), onkeydown: (e) => e.key === "Enter" && pick(c) },
            GD.h("span", { class: "code" }, c.code),
            GD.h("span", {}, ` ${window.GDI18N.name(c)}`)
          )
        )
      );
      if (input.value.trim() && !found.length) list.append(GD.h("li", { class: "muted" }, T("没有匹配")));
    });
    renderRecent();
    return {
      el: GD.h("div", { class: "catpicker" }, input, list, recentBox, selected),
      get value() {
        return chosen;
      },
      remember,
      clear() {
        chosen = null;
        selected.className = "selected muted";
        selected.textContent = T("未选择类别");
        if (onPick) onPick(null);
      },
    };
  };

  // ------------------------------------------------------------------ questions per category
  /** A text of the catalogue ({zh-Hans, zh-Hant, en}) in the page's language. */
  GD.catText = (text) => (text ? text[window.GDI18N.lang] || text["zh-Hans"] || "" : "");

  /** The chosen category's extra questions (GET /v1/categories: items[].questions), rendered by
   * type; `read()` gives {answers, problem}: the answers to send (by code, typed) and the first
   * thing to fix (a required question unanswered, a number out of range) or null. */
  GD.questionsForm = function () {
    const el = GD.h("div", { class: "questions", hidden: true });
    let questions = [];
    const inputs = {};
    function field(q) {
      const id = `q-${q.code}`;
      if (q.type === "boolean") {
        return GD.h("div", { class: "seg", role: "radiogroup", id, "aria-label": GD.catText(q.text) },
          GD.h("label", {}, GD.h("input", { type: "radio", name: id, value: "true" }), T("是")),
          GD.h("label", {}, GD.h("input", { type: "radio", name: id, value: "false" }), T("否")));
      }
      if (q.type === "choice") {
        return GD.h("select", { id },
          GD.h("option", { value: "" }, T("请选择")),
          ...(q.choices || []).map((c) => GD.h("option", { value: c.code }, GD.catText(c.text))));
      }
      if (q.type === "multi_choice") {
        return GD.h("div", { class: "checks", id },
          ...(q.choices || []).map((c) => GD.h("label", { class: "check" }, GD.h("input", { type: "checkbox", value: c.code }), GD.catText(c.text))));
      }
      const attrs = { id, autocomplete: "off" };
      if (q.type === "number") Object.assign(attrs, { type: "number", inputmode: "decimal", step: "any", min: q.min, max: q.max });
      else if (q.type === "date") attrs.type = "date";
      else Object.assign(attrs, { type: "text", maxlength: 200 });
      return GD.h("input", attrs);
    }
    function set(category) {
      questions = (category && category.questions) || [];
      for (const k of Object.keys(inputs)) delete inputs[k];
      el.hidden = !questions.length;
      el.replaceChildren(
        ...questions.map((q) => {
          const input = field(q);
          inputs[q.code] = input;
          const unit = q.unit ? ` (${q.unit})` : "";
          return GD.h("div", { class: "question", dataset: { code: q.code, type: q.type, required: q.required ? "1" : "0" } },
            GD.h("label", { for: `q-${q.code}` }, GD.catText(q.text) + unit, q.required ? GD.h("span", { class: "req", title: T("必填") }, " *") : null),
            input,
            q.help ? GD.h("p", { class: "muted small help" }, GD.catText(q.help)) : null);
        })
      );
    }
    function value(q) {
      const input = inputs[q.code];
      if (q.type === "boolean") {
        const on = input.querySelector("input:checked");
        return on ? on.value === "true" : null;
      }
      if (q.type === "multi_choice") {
        const on = Array.from(input.querySelectorAll("input:checked"), (x) => x.value);
        return on.length ? on : null;
      }
      const raw = input.value.trim();
      if (!raw) return null;
      return q.type === "number" ? Number(raw) : raw;
    }
    function read() {
      const answers = {};
      let problem = null;
      for (const q of questions) {
        const v = value(q);
        const name = GD.catText(q.text);
        if (v === null) {
          if (q.required && !problem) problem = T("请回答: {q}", { q: name });
          continue;
        }
        if (q.type === "number" && (!Number.isFinite(v) || (q.min != null && v < q.min) || (q.max != null && v > q.max))) {
          problem = problem || T("{q}须在 {min} 到 {max} 之间", { q: name, min: q.min ?? "", max: q.max ?? "" });
          continue;
        }
        answers[q.code] = v;
      }
      return { answers, problem };
    }
    return { el, set, read, clear: () => set(null), get questions() { return questions; } };
  };

  // ------------------------------------------------------------------ standard addresses
  /** Search-as-you-type over the standard addresses (GET /v1/places?q=, pinyin initials too:
   * "zhbl" → 中华北路) on an existing text input. Typing a free text still works (no place);
   * picking one fills the input with its label and gives the place ({id, label, lat, lon,
   * grid, …}) to `onPick`; editing the text afterwards forgets the pick. */
  GD.placeSearch = function (input, { onPick, onClear } = {}) {
    const list = GD.h("ul", { class: "results places", role: "listbox", "aria-label": T("标准地址") });
    const picked = GD.h("div", { class: "place-picked small", hidden: true });
    input.after(list, picked);
    input.setAttribute("autocomplete", "off");
    input.setAttribute("role", "combobox");
    let chosen = null;
    let timer = null;
    let asked = 0;
    const KIND = { road: T("道路"), address: T("地址"), poi: T("地标") };
    function pick(p) {
      chosen = p;
      input.value = p.label;
      list.replaceChildren();
      picked.hidden = false;
      picked.replaceChildren(GD.icon("pin"), ` ${T("标准地址")}: `, GD.h("b", {}, p.label), GD.h("span", { class: "muted" }, ` · ${p.grid}`));
      if (onPick) onPick(p);
    }
    function forget() {
      if (!chosen) return;
      chosen = null;
      picked.hidden = true;
      if (onClear) onClear();
    }
    async function ask(q) {
      const n = ++asked;
      let data;
      try {
        data = await GD.api(`/v1/places?q=${encodeURIComponent(q)}&limit=8`);
      } catch (e) {
        return; // offline or refused: the free text stays
      }
      if (n !== asked || input.value.trim() !== q) return; // a newer keystroke won
      list.replaceChildren(
        ...data.items.map((p) =>
          GD.h("li", { role: "option", tabindex: "0", dataset: { id: p.id }, onclick: () => pick(p), onkeydown: (e) => e.key === "Enter" && (e.preventDefault(), pick(p)) },
            GD.h("span", { class: "pill" }, KIND[p.kind] || p.kind), ` ${p.label} `, GD.h("span", { class: "muted small" }, p.grid)))
      );
      if (!data.items.length) list.append(GD.h("li", { class: "muted" }, T("没有匹配的标准地址，可直接填写")));
    }
    input.addEventListener("input", () => {
      forget();
      clearTimeout(timer);
      const q = input.value.trim();
      if (!q) {
        asked++;
        list.replaceChildren();
        return;
      }
      timer = setTimeout(() => ask(q.slice(0, 100)), 150);
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Escape") list.replaceChildren();
      if (e.key === "ArrowDown" && list.firstElementChild) (e.preventDefault(), list.firstElementChild.focus());
    });
    return {
      get value() {
        return chosen;
      },
      clear() {
        chosen = null;
        picked.hidden = true;
        list.replaceChildren();
        input.value = "";
      },
    };
  };

  // ------------------------------------------------------------------ component (部件) code
  /** The 部件 code field of the intake forms (inspector, hotline): shown only for a category of
   * kind "component"; 16 digits from the component's plate, checked before sending. Once the
   * code is complete it is looked up (GET /v1/components/{code}) and its kind, name and grid
   * shown; `onFound(component)` gets it (with lat / lon / grid) — offline or unknown, the code
   * still goes with the report and the server decides (422 unknown_component).
   * `set(category)` shows / hides it; `read()` → {code, problem}; `clear()`. */
  GD.componentField = function ({ onFound } = {}) {
    const input = GD.h("input", {
      id: "component", inputmode: "numeric", maxlength: "16", autocomplete: "off",
      placeholder: T("16 位数字，见部件标牌"),
    });
    const found = GD.h("div", { id: "component-found", class: "place-picked small", hidden: true });
    const el = GD.h("div", { id: "component-field", hidden: true },
      GD.h("label", { for: "component" }, T("部件编码（选填）")), input, found);
    let asked = 0;
    let category = null; // the category chosen: a component of another class is pointed out
    async function lookUp(code) {
      const n = ++asked;
      let c;
      try {
        c = await GD.api(`/v1/components/${code}`);
      } catch (e) {
        if (n === asked && e.status === 404) {
          found.hidden = false;
          found.className = "place-picked small error";
          found.replaceChildren(T("没有这个部件编码"));
        }
        return; // offline: the code still goes with the report
      }
      if (n !== asked || input.value.trim() !== code) return;
      found.hidden = false;
      const other = category && c.category && c.category !== category.code;
      found.className = other ? "place-picked small error" : "place-picked small";
      found.replaceChildren(GD.icon("pin"), " ", GD.h("b", {}, c.kind || ""), c.name ? ` · ${c.name}` : "", GD.h("span", { class: "muted" }, ` · ${c.grid}`),
        other ? ` · ${T("这个部件不属于所选类别")}` : "");
      if (onFound) onFound(c);
    }
    input.addEventListener("input", () => {
      asked++;
      found.hidden = true;
      const code = input.value.trim();
      if (/^\d{16}$/.test(code)) lookUp(code);
    });
    return {
      el,
      set(c) {
        category = c || null;
        el.hidden = !c || c.kind !== "component";
        if (el.hidden) this.clear();
        else if (/^\d{16}$/.test(input.value.trim())) lookUp(input.value.trim());
      },
      read() {
        const code = el.hidden ? "" : input.value.trim();
        if (code && !/^\d{16}$/.test(code)) return { code: "", problem: T("部件编码为 16 位数字") };
        return { code, problem: null };
      },
      clear() {
        asked++;
        input.value = "";
        found.hidden = true;
      },
    };
  };

  // ------------------------------------------------------------------ nearby open cases
  /** Open cases of the same category near the point (GET /v1/cases/nearby), under a form:
   * "maybe already reported". `show(lat, lon, category)`; nothing shown when none or offline. */
  GD.nearbyBox = function () {
    const el = GD.h("div", { class: "panel nearby", hidden: true, "aria-live": "polite" });
    let asked = 0;
    async function show(lat, lon, category) {
      const n = ++asked;
      if (lat == null || lon == null || !category) return (el.hidden = true);
      let data;
      try {
        data = await GD.api(`/v1/cases/nearby?lat=${lat}&lon=${lon}&category=${encodeURIComponent(category)}&limit=5`);
      } catch (e) {
        return (el.hidden = true);
      }
      if (n !== asked) return;
      el.hidden = !data.items.length;
      el.replaceChildren(
        GD.h("b", {}, T("附近 {m} 米内已有 {n} 件同类在办案件", { m: Math.round(data.radius_m), n: data.items.length })),
        GD.h("p", { class: "muted small" }, T("如是同一问题，可不必重复上报；指挥中心会关联为重复")),
        GD.h("ul", { class: "nearby-list" },
          ...data.items.map((c) => GD.h("li", { dataset: { caseNo: c.case_no } },
            GD.h("span", { class: "code" }, c.case_no), ` ${c.status_zh || c.status} · ${Math.round(c.distance_m)} m · `,
            GD.h("span", {}, (c.address || c.description || "").slice(0, 40)))))
      );
    }
    return { el, show, hide: () => { asked++; el.hidden = true; } };
  };

  // ------------------------------------------------------------------ grids and the map
  GD.maps = [];
  function inRing(lon, lat, ring) {
    let inside = false;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i];
      const [xj, yj] = ring[j];
      if (yi > lat !== yj > lat && lon < ((xj - xi) * (lat - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }
  /** The grid containing (lat, lon), client-side (works offline with cached grids). */
  GD.locateGrid = function (grids, lat, lon) {
    return grids.find((g) => inRing(lon, lat, g.polygon.coordinates[0])) || null;
  };

  /** A Leaflet map of grid polygons over the city's base map (static/shared/basemap.js:
   * its tiles, or its offline street layer), optional click-to-pick. `basemap`: the config
   * (GD.basemap()); default: the last one cached. */
  GD.gridMap = function (el, grids, { highlight, onPick, basemap } = {}) {
    if (!window.L) return null;
    const config = basemap === undefined ? cachedBasemap() : basemap;
    const B = window.GDBasemap;
    const options = { zoomControl: true, attributionControl: false, preferCanvas: true, zoomSnap: 0.25 };
    const map = L.map(el, B ? B.mapOptions(config, options) : options);
    if (B && config) B.add(map, config, { theme: "light" });
    const layers = {};
    const group = L.featureGroup().addTo(map);
    for (const g of grids) {
      const mine = !highlight || highlight.includes(g.code);
      const poly = L.polygon(
        g.polygon.coordinates[0].map(([lon, lat]) => [lat, lon]),
        // Over a base map: thinner, lighter (the streets show through).
        { color: mine ? "#0b5cad" : "#8a94a6", weight: mine ? (config && !highlight ? 1.2 : 2) : 1, fillOpacity: (mine ? 0.12 : 0.04) * (config ? 0.5 : 1) }
      ).bindTooltip(`${g.name_zh} ${g.code}`);
      poly.addTo(group);
      layers[g.code] = poly;
    }
    const focus = highlight && highlight.length ? highlight.map((c) => layers[c]).filter(Boolean) : Object.values(layers);
    const fitFocus = () => focus.length && map.fitBounds(L.featureGroup(focus).getBounds(), { padding: [8, 8] });
    fitFocus();
    let moved = false; // the user's own view is kept
    map.on("dragstart zoomstart", () => { if (settled) moved = true; });
    let settled = false;
    let marker = null;
    const api = {
      map,
      mark(lat, lon) {
        if (marker) marker.setLatLng([lat, lon]);
        else marker = L.circleMarker([lat, lon], { radius: 7, color: "#c0392b", weight: 3, fillOpacity: 0.9 }).addTo(map);
      },
      select(code) {
        for (const [c, p] of Object.entries(layers)) p.setStyle({ fillOpacity: c === code ? 0.35 : highlight && !highlight.includes(c) ? 0.04 : 0.12 });
      },
      fit(code) {
        if (layers[code]) map.fitBounds(layers[code].getBounds(), { padding: [10, 10] });
      },
    };
    if (onPick)
      map.on("click", (e) => {
        api.mark(e.latlng.lat, e.latlng.lng);
        onPick(e.latlng.lat, e.latlng.lng);
      });
    // Fitted again once the page has laid the map out (it may have been measured too small).
    setTimeout(() => { map.invalidateSize(); if (!moved && !marker) fitFocus(); settled = true; }, 50);
    GD.maps.push(api);
    return api;
  };

  GD.header = function (title, subtitle) {
    const user = GD.h("span", { class: "who" });
    const out = GD.h("button", { type: "button", class: "link", hidden: true, title: T("登出"), onclick: () => { Auth.signOut(); location.reload(); } }, T("登出"));
    const net = GD.h("span", { class: "net", id: "net" });
    const setNet = () => {
      net.textContent = navigator.onLine ? T("在线") : T("离线");
      net.className = "net " + (navigator.onLine ? "on" : "off");
    };
    window.addEventListener("online", setNet);
    window.addEventListener("offline", setNet);
    setNet();
    // The language picker: the choice is remembered (localStorage) and the page reloads in it.
    const lang = window.GDI18N.picker();
    lang.addEventListener("change", () => location.reload());
    document.title = title;
    const el = GD.h(
      "header",
      { class: "bar gd-bar" },
      GD.h("div", { class: "brand gd-brand" }, GD.h("img", { src: "/intake-static/icon.svg", alt: "", width: 28, height: 28 }), GD.h("div", {}, GD.h("strong", {}, title), GD.h("small", {}, subtitle))),
      GD.h("div", { class: "right gd-right" }, net, lang, user, out)
    );
    return {
      el,
      signedIn(u) {
        user.textContent = u.name || u.username;
        out.hidden = false;
      },
    };
  };
  // Static labels of the page (data-i18n) in the chosen language.
  window.GDI18N.applyStatic(document);
})();
