// Where a case is and the on-site evidence of its last 核查 (issue 17, item 5): the distance of
// the inspector's fix from the case against the category's limit, when the on-site photo was
// taken, and a small map pinning 案件位置 and 核查位置 over the base map (shared/basemap.js)
// with the allowed radius and the grid's outline. One place for the case panel
// (centre/casepanel.js) and the auditor page (web_audit/audit.js).
//
// ES module; needs window.GDI18N (messages.js + i18n.js) and, for the map, Leaflet and
// window.GDBasemap loaded first as classic scripts.

const I = () => window.GDI18N;
const t = (key, vars) => I().t(key, vars);

const STYLE = `
.evidence { border: 1px solid rgba(148, 163, 184, .35); border-left: 4px solid #16a34a; border-radius: 6px; padding: 8px 10px; background: rgba(22, 163, 74, .08); }
.evidence.failed { border-left-color: #ef4444; background: rgba(239, 68, 68, .08); }
.evidence.far { border-left-color: #f59e0b; }
.evidence .big { display: flex; gap: 18px; flex-wrap: wrap; margin: 4px 0 6px; }
.evidence .big div { display: flex; flex-direction: column; }
.evidence .big b { font-size: 20px; line-height: 1.2; }
.evidence .big span { font-size: 11px; color: var(--muted, #8a9bb8); }
.evidence .warn { color: #d97706; }
.case-map { height: 190px; border-radius: 6px; border: 1px solid rgba(148, 163, 184, .35); margin-top: 6px; }
`;
if (typeof document !== "undefined" && !document.getElementById("gd-evidence-style")) {
  const el = document.createElement("style");
  el.id = "gd-evidence-style";
  el.textContent = STYLE;
  document.head.append(el);
}

export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

const isCheck = (e) => e.type === "VerificationPassed" || e.type === "VerificationFailed";

/** The last 核查 (pass or fail) among `events` (each {type, at, actor, data}), or null. */
export function lastCheck(events) {
  const checks = (events || []).filter(isCheck);
  return checks.length ? checks[checks.length - 1] : null;
}

/** The 部件 a report named: the case's `component`, else its Reported event's. */
export function componentOf(c, events) {
  if (c && c.component) return c.component;
  const first = (events || []).find((e) => e.type === "Reported");
  return (first && first.data && first.data.component) || null;
}

/** The section's HTML: heading, the evidence of `check` in large type, the component named,
 * and a map box (#case-map) when there is a point to pin; "" when there is nothing to show.
 * `c` has lat / lon (and address, shown with `address: true`); `person(id)` names the
 * checker. */
export function whereHtml(c, events, { person = (id) => id || "", address = false } = {}) {
  const check = lastCheck(events);
  const hasPoint = c.lat != null && c.lon != null;
  const named = componentOf(c, events);
  if (!hasPoint && !check && !named) return "";
  let evidence = "";
  if (check) {
    const d = check.data || {};
    const passed = check.type === "VerificationPassed";
    const far = d.distance_m != null && d.radius_m != null && d.distance_m > d.radius_m;
    const distance = d.distance_m != null ? `${Math.round(d.distance_m)} ${t("metres")}`
      : d.lat != null ? t("checked_in_grid") : t("not_recorded");
    const limit = d.radius_m != null ? `${t("verify_radius")} ${Math.round(d.radius_m)} ${t("metres")}` : "";
    let taken = t("not_recorded"), takenNote = "";
    if (d.photo_taken_at) {
      taken = I().dateTime(d.photo_taken_at);
      const mins = Math.round((new Date(check.at) - new Date(d.photo_taken_at)) / 60000);
      takenNote = mins >= 0 ? t("photo_before_check", { m: mins }) : "";
    }
    evidence = `<div class="evidence ${passed ? "" : "failed"} ${far ? "far" : ""}" id="case-evidence">
      <div><b>${esc(I().label("event", check.type))}</b> <span class="muted">· ${esc(I().shortDateTime(check.at))} · ${esc(person(check.actor))}</span></div>
      <div class="big">
        <div data-fact="distance"><b>${esc(distance)}</b><span>${esc(t("verify_distance"))}${limit ? ` · ${esc(limit)}` : ""}</span></div>
        <div data-fact="photo-time"><b>${esc(taken)}</b><span>${esc(t("photo_taken"))}${takenNote ? ` · ${esc(takenNote)}` : ""}</span></div>
      </div>
      ${d.photo_taken_at ? "" : `<div class="warn small">${esc(t("photo_time_missing"))}</div>`}
    </div>`;
  }
  const component = named ? `<div class="small" id="case-component">${esc(t("component"))}: <span class="gd-code">${esc(named)}</span> <span id="case-component-kind" class="muted"></span></div>` : "";
  const pins = hasPoint || (check && check.data && check.data.lat != null);
  const where = address && c.address ? `<div class="small" id="case-address">${esc(c.address)}</div>` : "";
  return `<h3>${esc(check ? t("where_and_check") : t("where"))}</h3>${where}${evidence}${component}
    ${pins ? `<div class="case-map" id="case-map" role="img" aria-label="${esc(t("where"))}"></div>` : ""}`;
}

/** Draw the pins into `root`'s #case-map (made by whereHtml) and name the component (its kind
 * from GET /v1/components/{code} through `fetchJSON`). Returns the Leaflet map or null. */
export function drawWhere(root, c, events, { basemap, grid, theme = "light", fetchJSON } = {}) {
  const named = componentOf(c, events);
  if (named && fetchJSON) {
    fetchJSON(`/v1/components/${encodeURIComponent(named)}`).then((k) => {
      const kind = root.querySelector("#case-component-kind");
      if (kind) kind.textContent = [k.kind, k.name].filter(Boolean).join(" · ");
    }).catch(() => {});
  }
  const el = root.querySelector("#case-map");
  if (!el || !window.L || !window.GDBasemap) return null;
  const check = lastCheck(events);
  const d = (check && check.data) || {};
  const pins = [];
  if (c.lat != null) pins.push({ lat: c.lat, lon: c.lon, label: t("case_location"), colour: "#dc2626", direction: "top" });
  if (d.lat != null) pins.push({ lat: d.lat, lon: d.lon, label: t("verify_location"), colour: check.type === "VerificationPassed" ? "#16a34a" : "#f59e0b", direction: "bottom" });
  const circle = c.lat != null && d.radius_m ? { lat: c.lat, lon: c.lon, radius: d.radius_m } : null;
  return window.GDBasemap.pinMap(el, basemap, pins, { circle, theme, grid: grid && grid.ring });
}
