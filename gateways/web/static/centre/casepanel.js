// The case panel: the case file (GET /v1/cases/{no}), photos, the timeline, and a button for
// each action the signed-in user may take now (the server's `allowed_actions`), each with
// the form its arguments need; POST /v1/cases/{no}/actions/{verb}.
import { drawWhere, whereHtml } from "../shared/evidence.js";
import { api, download, photoUrl, user } from "./api.js";
import {
  fmtDateTime, fmtDue, fmtTime, nameOf, t, tAction, tEvent, tPriority, tRole, tSatisfaction, tStatus, tStep,
  zhEn,
} from "./i18n.js";

// People by name (GET /v1/people), cached for the page: the timeline shows "派遣员 王芳",
// with the user id on hover; watchers and services by their label ("时限监控").
const people = new Map(); // user id -> {name, ...} | null (not a user)
async function loadPeople(ids) {
  const missing = [...new Set(ids)].filter((id) => id && !people.has(id));
  if (!missing.length) return false;
  for (const id of missing) people.set(id, null);
  const data = await api("/v1/people", { query: { ids: missing.join(",") } });
  for (const p of data.items) people.set(p.user_id, p);
  return data.items.length > 0;
}
/** The inspector who reported (the first event's actor) when no citizen is named. */
function reporterPerson(c) {
  const first = (c.timeline || []).find((e) => e.type === "Reported");
  return c.reporter_type === "inspector" && first ? personName(first.actor) : "";
}
export function personName(id) {
  if (!id) return "";
  const p = people.get(id);
  if (p && p.name) return p.name;
  const word = window.GDI18N.label("actor", id);
  return word;
}

// The fields of each action's form come from the action's argument schema
// (GET /v1/vocabulary → actions[].args, the registry's own schema): nothing to keep in step.
let vocabulary = null;
const loadVocabulary = () => (vocabulary ??= api("/v1/vocabulary"));
const LONG_TEXT = new Set(["reason", "note", "comment", "override_reason"]);
const HIDDEN = new Set(["photos", "of_case_id", "automatic"]); // uploads / server / watcher only

function enumOf(prop) {
  if (prop.enum) return prop.enum;
  for (const alt of prop.anyOf || []) if (alt.enum) return alt.enum;
  return null;
}

function typeOf(prop) {
  if (prop.type) return prop;
  return (prop.anyOf || []).find((alt) => alt.type && alt.type !== "null") || {};
}

/** Form fields for an action, from its JSON Schema: [{name, kind, optional, options}]. */
export function formFields(schema) {
  const required = new Set(schema.required || []);
  return Object.entries(schema.properties || {}).filter(([name]) => !HIDDEN.has(name)).map(([name, prop]) => {
    const options = enumOf(prop);
    const type = typeOf(prop);
    const kind = options ? "select"
      : type.type === "number" || type.type === "integer" ? "number"
      : type.type === "boolean" ? "checkbox"
      : type.format === "date-time" ? "datetime-local"
      : LONG_TEXT.has(name) ? "textarea" : "text";
    return { name, kind, options, optional: !required.has(name) };
  });
}

const PRIMARY = new Set(["file", "dispatch", "close", "approve_extension", "verify_pass", "accept"]);
const DANGER = new Set(["reject", "refuse_extension", "return_case", "verify_fail"]);

export class CasePanel {
  constructor(root, refs, { toast, onAction }) {
    this.root = root;
    this.refs = refs; // {categories, departments, nodes, grids, levels, cityCode}
    this.toast = toast;
    this.onAction = onAction;
    this.caseNo = null;
    this.data = null;
    this.openForm = null;
    root.querySelector("#case-close").addEventListener("click", () => this.close());
  }

  async open(caseNo) {
    this.caseNo = caseNo;
    this.openForm = null;
    this.root.hidden = false;
    this.layoutChanged(true);
    await this.reload();
  }

  close() {
    this.root.hidden = true;
    this.layoutChanged(false);
    this.caseNo = null;
    this.data = null;
    document.dispatchEvent(new CustomEvent("case-closed"));
  }

  layoutChanged(open) {
    const layout = this.root.closest(".layout");
    if (layout && layout.classList.contains("with-case") !== open) {
      layout.classList.toggle("with-case", open);
      document.dispatchEvent(new CustomEvent("layout-changed"));
    }
  }

  async reload() {
    if (!this.caseNo) return;
    const caseNo = this.caseNo;
    try {
      const data = await api(`/v1/cases/${encodeURIComponent(caseNo)}`);
      if (caseNo !== this.caseNo) return;
      this.data = data;
      this.render();
    } catch (e) {
      this.root.querySelector("#case-body").innerHTML = `<div class="form-error">${esc(e.message)}</div>`;
    }
  }

  rerender() { if (this.data) this.render(); }

  render() {
    const c = this.data;
    const { categories, departments, grids, nodes } = this.refs;
    const cat = categories[c.category];
    this.root.querySelector("#case-title").textContent = c.case_no;
    this.root.querySelector("#case-sub").innerHTML =
      `<span class="status ${c.status}">${esc(tStatus(c.status))}</span>` +
      `<span class="prio ${c.priority}">${esc(tPriority(c.priority))}</span>` +
      (c.supervised ? `<span class="sup">${esc(t("kpi_supervised"))} ×${c.supervision_orders}</span>` : "") +
      `<span>v${c.version}</span>`;
    const grid = grids[c.grid];
    const place = [nodes[c.district], nodes[c.community], grid].filter(Boolean).map((n) => nameOf(n)).join(" › ");
    const proposal = c.proposal || {};
    const body = this.root.querySelector("#case-body");
    body.innerHTML = `
      ${this.deadlineHtml(c)}
      <div class="section"><h3>${esc(t("description"))}</h3><div class="desc">${esc(c.description || "")}</div></div>
      <div class="section"><dl class="facts">
        <dt>${esc(t("category"))}</dt><dd>${esc(cat ? nameOf(cat) : c.category)} <span class="gd-code">${esc(c.category)}</span></dd>
        <dt>${esc(t("place"))}</dt><dd>${esc(place)} <span class="gd-code">${esc(c.grid || "")}</span>${c.address ? `<br><span class="muted">${esc(c.address)}</span>` : ""}</dd>
        <dt>${esc(t("level"))}</dt><dd>${esc(levelName(this.refs, c.level))}${c.node ? ` · ${esc(nameOf(nodes[c.node], c.node))}` : ""}</dd>
        <dt>${esc(t("department"))}</dt><dd title="${esc(c.department || "")}">${esc(c.department ? nameOf(departments[c.department], c.department) : "—")}</dd>
        <dt>${esc(t("proposal"))}</dt><dd>${esc(proposal.department ? nameOf(departments[proposal.department], proposal.department) : "—")} · ${esc(tPriority(proposal.priority))}</dd>
        <dt>${esc(t("reporter"))}</dt><dd>${esc([c.reporter_name || reporterPerson(c), c.reporter_phone].filter(Boolean).join(" · ") || "—")} <span class="muted">(${esc(window.GDI18N.label("source", c.source || c.channel || ""))})</span></dd>
        <dt>${esc(t("counters"))}</dt><dd>${esc(t("rework"))} ${c.rework_count} · ${esc(t("returns"))} ${c.return_count} · ${esc(t("escalations"))} ${c.escalations} · ${esc(t("extensions"))} ${c.extension_count}</dd>
        ${c.pending_extension ? `<dt>${esc(t("pending_extension"))}</dt><dd>${esc(c.pending_extension.hours)} ${esc(t("hours"))} · ${esc(c.pending_extension.reason || "")}</dd>` : ""}
        ${c.duplicate_of ? `<dt>${esc(t("merged_into"))}</dt><dd class="case-no">${esc(c.duplicate_of)}</dd>` : ""}
        ${c.satisfaction ? `<dt>${esc(t("satisfaction"))}</dt><dd>${esc(tSatisfaction(c.satisfaction))}</dd>` : ""}
      </dl></div>
      ${this.whereHtml(c)}
      <div class="section"><h3>${esc(t("actions"))}</h3><div class="actions" id="case-actions"></div><div id="action-form-slot"></div></div>
      ${this.documentsHtml(c)}
      <div class="section"><h3>${esc(t("photos"))}</h3><div class="photos" id="case-photos"></div></div>
      <div class="section"><h3>${esc(t("timeline"))}</h3><ol class="timeline" id="case-timeline"></ol></div>`;
    this.renderActions();
    this.renderPhotos();
    this.renderTimeline();
    this.renderWhere();
    for (const b of body.querySelectorAll("#case-docs button")) {
      b.addEventListener("click", () => download(
        `/v1/documents/cases/${encodeURIComponent(c.case_no)}/${b.dataset.doc}.pdf`, {},
        `${b.dataset.doc}-${c.case_no}.pdf`).catch((e) => {
        body.querySelector("#case-docs").insertAdjacentHTML("beforeend", `<div class="form-error">${esc(e.message)}</div>`);
      }));
    }
  }

  /** 文书: the case file (案卷) and, once supervised, the supervision order (督办单) as PDF
   * (GET /v1/documents/cases/{no}/…; the centre's staff and auditors). */
  documentsHtml(c) {
    if (!["call_taker", "shift_leader", "dispatcher", "supervisor", "auditor"].includes(user()?.role)) return "";
    const button = (doc, zh, en) => `<button type="button" class="btn" data-doc="${doc}">${esc(zhEn(zh, en))}</button>`;
    return `<div class="section"><h3>${esc(zhEn("文书", "Documents"))}</h3><div class="actions" id="case-docs">` +
      button("case-file", "案卷 PDF", "Case file PDF") +
      (c.supervision_orders ? button("supervision", "督办单 PDF", "Supervision order PDF") : "") +
      `</div></div>`;
  }

  deadlineHtml(c) {
    if (!c.due_at) {
      return `<div class="section deadline"><span class="muted">${esc(t("deadline"))}</span><span>${esc(t("no_clock"))}</span></div>`;
    }
    const due = fmtDue(c.due_at);
    const cls = c.overdue || due.overdue ? "r" : c.warning ? "y" : "";
    return `<div class="section deadline ${cls}"><div><div class="muted">${esc(t("deadline"))} · ${esc(tStep(c.due_step))}</div>` +
      `<div class="big">${esc(fmtDateTime(c.due_at))}</div></div><div class="due ${cls}">${esc(due.text)}</div></div>`;
  }

  /** Exactly what the server offers this user now (rules, guards and roles are its job). */
  allowed() {
    return this.data.allowed_actions || [];
  }

  renderActions() {
    const box = this.root.querySelector("#case-actions");
    const actions = this.allowed();
    if (!actions.length) {
      box.innerHTML = `<span class="muted">${esc(t("no_actions"))}</span>`;
      return;
    }
    box.innerHTML = actions.map((a) => {
      const cls = PRIMARY.has(a) ? "btn btn-primary" : DANGER.has(a) ? "btn btn-danger" : "btn";
      return `<button type="button" class="${cls}" data-action="${a}">${esc(tAction(a))}</button>`;
    }).join("");
    for (const button of box.querySelectorAll("button[data-action]")) {
      button.addEventListener("click", () => this.showForm(button.dataset.action));
    }
    if (this.openForm && actions.includes(this.openForm)) this.showForm(this.openForm);
  }

  async showForm(action) {
    this.openForm = action;
    const spec = (await loadVocabulary()).actions.find((a) => a.value === action);
    const slot = this.root.querySelector("#action-form-slot");
    const c = this.data;
    let fields = "";
    if (action === "dispatch") {
      const proposal = c.proposal || {};
      // Departments grouped by the node they sit at (community, district, city …).
      const groups = new Map();
      for (const d of this.dispatchDepartments()) {
        if (!groups.has(d.node)) groups.set(d.node, []);
        groups.get(d.node).push(d);
      }
      const options = [...groups].map(([node, deps]) => `<optgroup label="${esc(nameOf(this.refs.nodes[node], node))}">${deps.map((d) =>
        `<option value="${esc(d.code)}" ${d.code === proposal.department ? "selected" : ""}>${esc(nameOf(d))}${d.code === proposal.department ? ` ★ ${esc(t("proposal"))}` : ""}</option>`).join("")}</optgroup>`).join("");
      const prio = proposal.priority || c.priority;
      fields = `
        <label>${esc(t("department"))}<select name="department" id="dispatch-department">${options}</select></label>
        <label>${esc(t("priority"))}<select name="priority" id="dispatch-priority">${["urgent", "important", "ordinary"].map((p) =>
          `<option value="${p}" ${p === prio ? "selected" : ""}>${esc(tPriority(p))}</option>`).join("")}</select></label>
        <label id="override-label">${esc(t("override_reason"))}<textarea name="override_reason" id="dispatch-override"></textarea></label>`;
    } else {
      fields = formFields(spec ? spec.args : {}).map((f) => {
        const label = `${t(f.name)}${f.optional ? "" : " *"}`;
        if (f.kind === "select") {
          return `<label>${esc(label)}<select name="${f.name}">${f.options.map((o) => `<option value="${esc(o)}">${esc(tSatisfaction(o))}</option>`).join("")}</select></label>`;
        }
        if (f.kind === "checkbox") return `<label><input name="${f.name}" type="checkbox"> ${esc(label)}</label>`;
        if (f.kind === "textarea") return `<label>${esc(label)}<textarea name="${f.name}" ${f.optional ? "" : "required"}></textarea></label>`;
        return `<label>${esc(label)}<input name="${f.name}" type="${f.kind}" ${f.optional ? "" : "required"}></label>`;
      }).join("");
    }
    slot.innerHTML = `<form class="action-form" id="action-form" data-action="${action}">
      <div><b>${esc(tAction(action))}</b> <span class="muted">${esc(c.case_no)}</span></div>
      ${fields}
      <div class="form-error" id="action-error" hidden></div>
      <div class="row"><button type="button" class="btn btn-ghost" id="action-cancel">${esc(t("cancel"))}</button>
      <button type="submit" class="btn btn-primary" id="action-submit">${esc(t("submit"))}</button></div></form>`;
    const form = slot.querySelector("form");
    form.querySelector("#action-cancel").addEventListener("click", () => { slot.innerHTML = ""; this.openForm = null; });
    form.addEventListener("submit", (e) => { e.preventDefault(); this.submit(action, form); });
    const first = form.querySelector("textarea, input, select");
    if (first && action !== "dispatch") first.focus();
  }

  /** Departments that may take this case: at any node on the path from the city to its grid. */
  dispatchDepartments() {
    const { departments, nodes } = this.refs;
    const c = this.data;
    const path = new Set();
    let code = this.refs.grids[c.grid]?.parent;
    while (code) { path.add(code); code = nodes[code]?.parent; }
    const levelIndex = Object.fromEntries(this.refs.levels.map((l, i) => [l.key, i]));
    return Object.values(departments)
      .filter((d) => path.has(d.node))
      .sort((a, b) => (levelIndex[nodes[b.node]?.level] ?? 0) - (levelIndex[nodes[a.node]?.level] ?? 0) || a.code.localeCompare(b.code));
  }

  async submit(action, form) {
    const args = {};
    for (const el of form.querySelectorAll("[name]")) {
      const v = el.value.trim();
      if (v === "") continue;
      if (el.type === "checkbox") { if (el.checked) args[el.name] = true; continue; }
      if (el.type === "number") args[el.name] = Number(v);
      else if (el.type === "datetime-local") args[el.name] = new Date(v).toISOString();
      else args[el.name] = v;
    }
    const errorBox = form.querySelector("#action-error");
    const button = form.querySelector("#action-submit");
    button.disabled = true;
    errorBox.hidden = true;
    try {
      const res = await api(`/v1/cases/${encodeURIComponent(this.caseNo)}/actions/${action}`, { method: "POST", body: args, raw: true });
      const ok = res.status === 200;
      this.toast(t(ok ? "done" : "queued", { a: `${tAction(action)} ${this.caseNo}` }), "ok");
      this.openForm = null;
      const version = this.data.version;
      this.onAction(this.caseNo, action);
      // The read model follows within moments (the stream also tells us); poll briefly.
      for (let i = 0; i < 30 && this.data && this.data.version === version; i++) {
        await new Promise((r) => setTimeout(r, 150));
        await this.reload();
      }
    } catch (e) {
      const body = e.body || {};
      let message = body.message || e.message;
      if (body.allowed) message += ` (${t("allowed")}: ${body.allowed.map(tAction).join(", ") || "—"})`;
      errorBox.textContent = message;
      errorBox.hidden = false;
      button.disabled = false;
    }
  }

  /** Where the case is, and the on-site evidence of 核查 (distance from the case against the
   * category's radius, photo time, both points pinned): shared/evidence.js, as on the
   * auditor page. */
  whereHtml(c) {
    const html = whereHtml(c, c.timeline, { person: personName });
    return html ? `<div class="section" id="case-where">${html}</div>` : "";
  }

  renderWhere() {
    if (this.whereMap) { this.whereMap.remove(); this.whereMap = null; }
    const c = this.data;
    const box = this.root.querySelector("#case-where");
    if (!box) return;
    this.whereMap = drawWhere(box, c, c.timeline, {
      basemap: this.refs.basemap, grid: this.refs.grids[c.grid], theme: "dark", fetchJSON: (url) => api(url),
    });
  }

  renderPhotos() {
    const box = this.root.querySelector("#case-photos");
    const c = this.data;
    const photos = [...(c.photos || []).map((p) => ({ ...p, label: tEvent("Reported") }))];
    for (const e of c.timeline || []) {
      for (const p of (e.data && e.data.photos) || []) photos.push({ ...p, label: tEvent(e.type) });
    }
    if (!photos.length) {
      box.innerHTML = `<span class="muted">${esc(t("no_photos"))}</span>`;
      return;
    }
    box.innerHTML = photos.map((p, i) => `<div class="photo" data-i="${i}" title="${esc(p.label)} · ${esc(p.name || p.digest)}">${esc(p.label)}</div>`).join("");
    photos.forEach((p, i) => {
      const el = box.querySelector(`[data-i="${i}"]`);
      photoUrl(p.digest).then((url) => {
        el.innerHTML = `<img alt="${esc(p.label)}" src="${url}">`;
        el.addEventListener("click", () => lightbox(url));
      }).catch(() => { el.textContent = `${p.label} ⚠`; });
    });
  }

  renderTimeline() {
    const list = this.root.querySelector("#case-timeline");
    const ids = (this.data.timeline || []).map((e) => e.actor);
    const shown = this.data;
    loadPeople(ids).then((found) => { if (found && this.data === shown) this.render(); }).catch(() => {});
    const { departments } = this.refs;
    const items = [...(this.data.timeline || [])].reverse();
    list.innerHTML = items.map((e) => {
      const d = e.data || {};
      const bits = [];
      if (d.department && e.type === "Dispatched") bits.push(nameOf(departments[d.department], d.department));
      if (e.type === "Dispatched" && d.overridden) bits.push(t("override"));
      if (e.type === "Dispatched" && d.wrong_dispatch) bits.push(t("wrong_dispatch"));
      if (e.type === "Escalated") bits.push(`${levelName(this.refs, d.from_level)} → ${levelName(this.refs, d.to_level)}${d.automatic ? t("automatic") : ""}`);
      if (e.type === "ExtensionRequested") bits.push(`${d.hours} ${t("hours")}`);
      if (e.type === "ReturnVisited") bits.push(tSatisfaction(d.satisfaction));
      if (e.type === "MarkedDuplicate") bits.push(d.of_case_no);
      if (e.type === "ReporterLinked") bits.push(d.from_case_no);
      if (e.type === "WarningMarked" || e.type === "OverdueMarked") bits.push(`${tStep(d.step)} ${fmtTime(d.due)}`);
      const due = d.due;
      if (due && e.type !== "WarningMarked" && e.type !== "OverdueMarked") bits.push(`${t("due_word")} ${fmtTime(due)}`);
      const text = e.reason || d.note || d.comment || "";
      const cls = e.type === "OverdueMarked" || e.type === "VerificationFailed" || e.type === "Returned" ? "bad"
        : e.type === "WarningMarked" || e.type === "Supervised" ? "warn" : "";
      return `<li class="${cls}"><div class="t" title="${esc(`${fmtDateTime(e.at)} · ${e.actor || ""}`)}">${esc(fmtTime(e.at))} · ${esc(tRole(e.role))} ${esc(personName(e.actor))}</div>` +
        `<div class="w">${esc(tEvent(e.type))}${bits.length ? ` <span class="muted">· ${esc(bits.join(" · "))}</span>` : ""}</div>` +
        (text ? `<div class="r">${esc(text)}</div>` : "") + "</li>";
    }).join("");
  }
}

function levelName(refs, key) {
  const level = refs.levels.find((l) => l.key === key);
  return level ? nameOf(level) : key || "—";
}

function lightbox(url) {
  const box = document.createElement("div");
  box.className = "lightbox";
  box.innerHTML = `<img alt="" src="${url}">`;
  box.addEventListener("click", () => box.remove());
  document.body.append(box);
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
