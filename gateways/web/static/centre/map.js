// The jurisdiction map: grid polygons (GET /v1/grids.geojson) coloured from the map read model
// (GET /v1/map: open / yellow / red per grid) — never per-case markers, so it stays fast with
// any number of open cases. Drill-down city → district → community → grid.
// Under the grids: the city's base map (static/shared/basemap.js — tiles, or the offline
// street and landmark layer); over them, on demand, the 部件 (components) point layer and the
// households' overdue visits per grid (走访逾期: counts only, GET /v1/households/overdue-map —
// never an address or a household, whatever the role).
/* global L, GDBasemap */
import { nameOf, onLang, t } from "./i18n.js";

const COLOURS = { none: "#1b2740", open: "#3b82f6", yellow: "#f59e0b", red: "#ef4444" };
const SEVERE = 0.3;

/** The legend's class of a grid, exactly as the legend says: "none" (no open case), "red"
 * (overdue ≥ 30 % of its open cases), "yellow" (some warning or overdue below that), "open"
 * (all on time). Warnings alone never make a grid red. */
export function gridClass(c) {
  const open = c.open || 0;
  if (!open) return "none";
  const overdue = c.overdue || 0;
  if (overdue / open >= SEVERE) return "red";
  return overdue || c.warning ? "yellow" : "open";
}

export class JurisdictionMap {
  /** `basemap`: the city's config (GET /v1/jurisdiction); `fetchJSON`: the page's signed-in
   * API call (for the components layer; none: no components toggle). */
  constructor(element, { onDrill, basemap = null, fetchJSON = null }) {
    this.onDrill = onDrill;
    const B = window.GDBasemap;
    const options = { zoomControl: true, attributionControl: false, preferCanvas: false, zoomSnap: 0.25, minZoom: 8, maxZoom: 17 };
    this.map = L.map(element, B ? B.mapOptions(basemap, options) : options);
    this.map.setView([26.58, 106.7], 11);
    // The Leaflet map on its element: lets tests (and browser extensions) move it directly.
    element.gdMap = this.map;
    // With a base map the grids are washed over it, not painted on it: streets show through.
    this.base = B && basemap ? B.add(this.map, basemap, { theme: "dark" }) : null;
    this.wash = this.base ? 0.55 : 1;
    if (B && fetchJSON) this.addComponentsToggle(B, fetchJSON);
    if (fetchJSON) this.addVisitsToggle(fetchJSON);
    this.layers = new Map(); // grid code -> polygon layer
    this.props = new Map(); // grid code -> feature properties
    this.labels = L.layerGroup().addTo(this.map);
    this.counts = {};
    this.node = null;
    this.levels = [];
  }

  setGeometry(geojson, levels) {
    this.levels = levels;
    const layer = L.geoJSON(geojson, {
      style: () => ({ color: "#3a4f78", weight: 0.8, fillColor: COLOURS.none, fillOpacity: 0.5 }),
      onEachFeature: (feature, lyr) => {
        const code = feature.properties.code;
        this.layers.set(code, lyr);
        this.props.set(code, feature.properties);
        lyr.on("click", () => this.clickGrid(code));
        lyr.on("mouseover", () => lyr.setStyle({ weight: 2.2, color: "#e2e8f0" }));
        lyr.on("mouseout", () => this.styleGrid(code));
        lyr.bindTooltip(() => this.tooltip(code), { className: "grid-tip", sticky: true });
      },
    });
    layer.addTo(this.map);
    // Grid codes on the SVG paths: lets tests and browser extensions find a grid's polygon.
    for (const [code, lyr] of this.layers) lyr.getElement()?.setAttribute("data-grid", code);
    this.all = layer;
    const bounds = layer.getBounds();
    if (bounds.isValid()) this.map.fitBounds(bounds, { padding: [12, 12] });
  }

  tooltip(code) {
    const p = this.props.get(code);
    const c = this.counts[code] || {};
    const name = nameOf(p, code);
    return `<b>${esc(name)}</b> <span style="color:#8a9bb8">${esc(code)}</span><br>` +
      `${t("legend_open")} ${c.open || 0} · <span style="color:#fcd34d">${t("legend_yellow")} ${c.warning || 0}</span>` +
      ` · <span style="color:#fca5a5">${t("legend_red")} ${c.overdue || 0}</span>` +
      (c.supervised ? ` · <span style="color:#ddd6fe">${t("kpi_supervised")} ${c.supervised}</span>` : "");
  }

  /** Which child of the current node a grid belongs to (or the grid's ancestor sibling). */
  clickGrid(code) {
    if (!this.node) return;
    const p = this.props.get(code);
    const levelKeys = this.levels.map((l) => l.key);
    const here = levelKeys.indexOf(this.node.level);
    const childLevel = levelKeys[here + 1];
    const inside = this.node.level === levelKeys[0] || p[this.node.level] === this.node.code || code === this.node.code;
    if (!inside) {
      const sibling = p[this.node.level];
      if (sibling) this.onDrill(sibling);
      return;
    }
    if (code === this.node.code) return;
    const child = childLevel === levelKeys[levelKeys.length - 1] ? code : p[childLevel];
    if (child) this.onDrill(child);
  }

  inNode(code) {
    if (!this.node) return true;
    if (this.node.level === this.levels[0]?.key) return true;
    const p = this.props.get(code);
    return code === this.node.code || (p && p[this.node.level] === this.node.code);
  }

  styleGrid(code) {
    const lyr = this.layers.get(code);
    if (!lyr) return;
    const c = this.counts[code] || {};
    const inside = this.inNode(code);
    const open = c.open || 0;
    let fill = COLOURS.none, opacity = this.base ? 0.18 : 0.55;
    if (open) {
      fill = COLOURS[gridClass(c)];
      // Opacity grows with the number of open cases, so busy grids stand out.
      opacity = (0.45 + 0.45 * Math.min(1, open / (this.max?.open || 1))) * this.wash;
    }
    lyr.setStyle({
      fillColor: fill,
      fillOpacity: inside ? opacity : opacity * 0.22,
      color: inside ? "#6b8cc7" : "#253352",
      weight: inside ? (c.supervised ? 1.6 : 0.9) : 0.5,
      dashArray: c.supervised && inside ? "4 3" : null,
    });
  }

  /** Show a /v1/map response: counts of every visible grid, the node, its children. */
  update(view) {
    // The node is the page's, set when it drills (focus); a live refresh's view may still be
    // the previous node's, and must not take the map back there.
    if (!this.node) this.node = view.node;
    this.counts = view.grids || {};
    const vals = Object.values(this.counts);
    this.max = {
      open: Math.max(1, ...vals.map((c) => c.open || 0)),
      warning: Math.max(1, ...vals.map((c) => c.warning || 0)),
      overdue: Math.max(1, ...vals.map((c) => c.overdue || 0)),
    };
    for (const code of this.layers.keys()) this.styleGrid(code);
    this.labels.clearLayers();
    const childBounds = [];
    for (const child of view.children || []) {
      const b = this.boundsOf(child.code);
      if (!b) continue;
      childBounds.push(b);
      if ((view.children || []).length <= 40) {
        L.tooltip({ permanent: true, direction: "center", className: "node-label", interactive: false })
          .setLatLng(b.getCenter())
          .setContent(`${esc(nameOf(child, child.code))}${child.open ? ` · ${child.open}` : ""}`)
          .addTo(this.labels);
      }
    }
  }

  boundsOf(code) {
    let bounds = null;
    for (const [grid, lyr] of this.layers) {
      const p = this.props.get(grid);
      if (grid === code || (p && Object.values(p).includes(code))) {
        bounds = bounds ? bounds.extend(lyr.getBounds()) : L.latLngBounds(lyr.getBounds().getSouthWest(), lyr.getBounds().getNorthEast());
      }
    }
    return bounds;
  }

  /** The node a code names, read from the grids' own properties (null: the whole city). */
  nodeAt(code) {
    const keys = this.levels.map((l) => l.key);
    if (!code) return { code, level: keys[0] };
    if (this.props.has(code)) return { code, level: keys[keys.length - 1] };
    for (const p of this.props.values()) {
      const key = keys.find((k) => p[k] === code);
      if (key) return { code, level: key };
    }
    return { code, level: keys[0] };
  }

  /** Show a node: the map takes it as its own at once, so a click on a grid right after a
   * drill goes one level down from there — before, it went from the node of the last
   * /v1/map answer, which may not have arrived yet, and re-chose the node already chosen. */
  focus(code, animate = true) {
    this.node = this.nodeAt(code);
    const b = code ? this.boundsOf(code) : this.all?.getBounds();
    if (!b || !b.isValid()) return;
    if (animate) this.map.flyToBounds(b, { padding: [16, 16], duration: 0.45, maxZoom: 15 });
    else this.map.fitBounds(b, { padding: [12, 12], maxZoom: 15 });
  }

  invalidate() { this.map.invalidateSize(); }

  /** "部件" on the map's corner: a checkbox that shows the components (from zoom 14) and says
   * how many are shown or that one must zoom in. */
  addComponentsToggle(B, fetchJSON) {
    const layer = B.componentLayer(this.map, fetchJSON, {
      onState: (s) => {
        note.textContent = s.error ? "⚠" : s.zoomIn ? t("components_zoom_in") : `${s.count}${s.truncated ? "+" : ""}`;
        note.title = s.error || "";
        box.dataset.state = s.error ? "error" : s.zoomIn ? "zoom-in" : "shown";
      },
    });
    const { box, input, name, note, legend } = this.layerToggle("components", "gd-component-legend");
    const words = () => {
      name.textContent = ` ${t("components_layer")} `;
      legend.replaceChildren();
      for (const [colour, text] of B.componentLegend()) {
        const item = L.DomUtil.create("span", "", legend);
        L.DomUtil.create("i", "", item).style.background = colour;
        item.append(text);
      }
    };
    words();
    onLang(words);
    input.addEventListener("change", () => {
      legend.hidden = !input.checked;
      if (input.checked) layer.addTo(this.map);
      else { this.map.removeLayer(layer); note.textContent = ""; delete box.dataset.state; }
    });
    this.components = layer;
  }

  /** One layer's row in the map's toggle box: a checkbox (#toggle-<key>), its name and a
   * note beside it, and a legend shown with the layer. The first row makes the box (a Leaflet
   * control in the corner); the others join it — one control, not a stack (a phone's map has
   * little room). */
  layerToggle(key, legendClass) {
    const first = !this.toggles;
    const box = L.DomUtil.create("div", `${first ? "leaflet-bar map-toggle " : ""}${key}-toggle`, this.toggles);
    const label = L.DomUtil.create("label", "", box);
    const input = L.DomUtil.create("input", "", label);
    input.type = "checkbox";
    input.id = `toggle-${key}`;
    const name = L.DomUtil.create("span", "", label);
    const note = L.DomUtil.create("small", "muted", label);
    // What the colours mean, shown with the layer.
    const legend = L.DomUtil.create("div", legendClass, box);
    legend.hidden = true;
    if (first) {
      L.DomEvent.disableClickPropagation(box);
      L.DomEvent.disableScrollPropagation(box);
      const Control = L.Control.extend({ onAdd: () => box });
      new Control({ position: "topright" }).addTo(this.map);
      this.toggles = box;
    }
    return { box, input, name, note, legend };
  }

  /** "走访逾期" beside the 部件 toggle: per grid, the households whose care visit is overdue
   * (red) and due soon (amber), as two counts on the grid — from GET /v1/households/
   * overdue-map, which answers counts per grid and nothing else (no address, no household)
   * to every centre role. The grid's name and its counts on hover; refreshed every minute
   * while shown. */
  addVisitsToggle(fetchJSON) {
    const group = L.layerGroup();
    const { box, input, name, note, legend } = this.layerToggle("visits", "gd-component-legend visits-legend");
    let counts = null, timer = null;
    const words = () => {
      name.textContent = ` ${t("visits_layer")} `;
      legend.replaceChildren();
      for (const [cls, key] of [["overdue", "hh.overdue"], ["warning", "hh.warning"]]) {
        const item = L.DomUtil.create("span", "", legend);
        L.DomUtil.create("i", `visit-dot ${cls}`, item);
        item.append(t(key));
      }
      if (counts) draw();
    };
    const draw = () => {
      group.clearLayers();
      let overdue = 0, warning = 0, grids = 0;
      for (const g of counts) {
        const lyr = this.layers.get(g.grid);
        if (!lyr || !(g.overdue || g.warning)) continue;
        overdue += g.overdue; warning += g.warning; grids += 1;
        const p = this.props.get(g.grid);
        const html = (g.overdue ? `<b class="visit-count overdue">${g.overdue}</b>` : "") +
          (g.warning ? `<b class="visit-count warning">${g.warning}</b>` : "");
        L.marker(lyr.getBounds().getCenter(), {
          icon: L.divIcon({ className: "visit-badge", html: `<span data-grid="${esc(g.grid)}">${html}</span>`, iconSize: null }),
          keyboard: false,
        }).bindTooltip(`<b>${esc(nameOf(p, g.grid))}</b> <span style="color:#8a9bb8">${esc(g.grid)}</span><br>` +
          `<span style="color:#fca5a5">${esc(t("hh.overdue"))} ${g.overdue}</span> · ` +
          `<span style="color:#fcd34d">${esc(t("hh.warning"))} ${g.warning}</span>`, { className: "grid-tip", direction: "top" })
          .addTo(group);
      }
      note.textContent = grids ? `${t("逾期")} ${overdue} · ${t("临期")} ${warning}` : t("visits_layer_none");
      box.dataset.state = "shown";
      box.dataset.overdue = String(overdue);
      box.dataset.warning = String(warning);
    };
    const load = async () => {
      try {
        counts = (await fetchJSON("/v1/households/overdue-map")).grids || [];
        if (input.checked) draw();
      } catch (e) {
        note.textContent = "⚠";
        note.title = e.message || String(e);
        box.dataset.state = "error";
      }
    };
    words();
    onLang(words);
    input.addEventListener("change", () => {
      legend.hidden = !input.checked;
      clearInterval(timer);
      if (input.checked) {
        group.addTo(this.map);
        load();
        timer = setInterval(load, 60_000);
      } else {
        this.map.removeLayer(group);
        note.textContent = "";
        delete box.dataset.state;
      }
    });
    this.visits = group;
  }
}

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
