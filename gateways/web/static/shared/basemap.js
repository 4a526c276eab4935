// The base map (底图) of every map on every page: the city's tile source (GET /v1/jurisdiction:
// basemap — XYZ or WMTS template, zoom range, wgs84 | gcj02) and, without a tile server, the
// city's own street and landmark layer (GET /v1/basemap/vector.geojson) drawn under the grids
// with street names and landmarks as labels. Also the 部件 (components) point layer.
//
// Stored coordinates are WGS-84 everywhere. A GCJ-02 tile source is lined up by the map's
// projection, not by moving data: the map's CRS projects WGS-84 → GCJ-02 (gcoord, vendored in
// /static/vendor/gcoord) before Web Mercator, and back for clicks — so every polygon, pin and
// click of every page stays WGS-84 and lands on the right street.
//
// Classic script (window.GDBasemap): loaded by the centre's ES-module pages and the intake
// pages alike, after Leaflet and messages.js / i18n.js.
/* global L */
(function () {
  "use strict";
  const T = (k, v) => (window.GDI18N ? window.GDI18N.t(k, v) : k);

  // The labels' look, here so every page that draws a base map gets it from this one file.
  const STYLE = `
.gd-road-label, .gd-poi-label { background: none; border: 0; }
.gd-road-label span { position: absolute; white-space: nowrap; font: 500 11px/1 system-ui, "PingFang SC", "Microsoft YaHei", sans-serif; letter-spacing: .5px; }
.gd-road-label.gd-trunk span, .gd-road-label.gd-primary span { font-weight: 700; font-size: 12px; }
.gd-road-label.gd-light span { color: #3b3a36; text-shadow: 0 0 2px #fbfaf6, 0 0 3px #fbfaf6, 0 0 4px #fbfaf6; }
.gd-road-label.gd-dark span { color: #b4bccb; text-shadow: 0 0 2px #0a1324, 0 0 3px #0a1324, 0 0 4px #0a1324; }
.gd-poi-label span { position: absolute; left: 6px; top: -6px; white-space: nowrap; font: 11px/1.1 system-ui, "PingFang SC", "Microsoft YaHei", sans-serif; }
.gd-poi-label.gd-light span { color: #92400e; text-shadow: 0 0 2px #fff, 0 0 3px #fff; }
.gd-poi-label.gd-dark span { color: #e0b77a; text-shadow: 0 0 2px #0a1324, 0 0 3px #0a1324; }
.leaflet-container.gd-basemap-light { background: #f2efe6; }
.leaflet-container.gd-basemap-dark { background: #0b1528; }
.leaflet-tooltip.gd-pin-label { font-weight: 600; padding: 1px 6px; }
.gd-component-legend { display: flex; flex-wrap: wrap; gap: 2px 8px; max-width: 190px; font-size: 11px; margin-top: 4px; }
.gd-component-legend i { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 3px; border: 1px solid #0f172a; }
.leaflet-container .leaflet-control-attribution { font-size: 10px; }
.gd-basemap-dark .leaflet-control-attribution { background: rgba(10, 19, 36, .75); color: #8a9bb8; }
`;
  if (typeof document !== "undefined" && !document.getElementById("gd-basemap-style")) {
    const el = document.createElement("style");
    el.id = "gd-basemap-style";
    el.textContent = STYLE;
    document.head.append(el);
  }

  /** [lon, lat] WGS-84 → what a source in `crs` draws there (GCJ-02 shifts ~100–700 m in
   * China; WGS-84 sources and points outside China are unchanged). */
  function toDisplay(lon, lat, crs) {
    if (crs !== "gcj02" || !window.gcoord) return [lon, lat];
    return window.gcoord.transform([lon, lat], window.gcoord.WGS84, window.gcoord.GCJ02);
  }
  /** The inverse: a point read off a GCJ-02 source → WGS-84 (stored form). */
  function toStored(lon, lat, crs) {
    if (crs !== "gcj02" || !window.gcoord) return [lon, lat];
    return window.gcoord.transform([lon, lat], window.gcoord.GCJ02, window.gcoord.WGS84);
  }

  let gcjCrs = null;
  /** Leaflet's Web Mercator CRS, through GCJ-02: data in WGS-84, tiles in GCJ-02. */
  function gcj02Crs() {
    if (gcjCrs) return gcjCrs;
    const merc = L.Projection.SphericalMercator;
    const projection = {
      bounds: merc.bounds,
      project(latlng) {
        const [lon, lat] = toDisplay(latlng.lng, latlng.lat, "gcj02");
        return merc.project(L.latLng(lat, lon));
      },
      unproject(point) {
        const ll = merc.unproject(point);
        const [lon, lat] = toStored(ll.lng, ll.lat, "gcj02");
        return L.latLng(lat, lon);
      },
    };
    gcjCrs = L.Util.extend({}, L.CRS.EPSG3857, { code: "GCJ02", projection });
    return gcjCrs;
  }

  /** Options for L.map(el, …) from the city's basemap config (CRS and zoom range). */
  function mapOptions(config, extra = {}) {
    const out = { ...extra };
    if (!config) return out;
    if (config.crs === "gcj02") {
      if (window.gcoord) out.crs = gcj02Crs();
      else console.warn("basemap: gcj02 source but /static/vendor/gcoord is not loaded");
    }
    if (config.min_zoom != null) out.minZoom = Math.max(out.minZoom ?? 0, config.min_zoom);
    if (config.max_zoom != null) out.maxZoom = Math.min(out.maxZoom ?? 22, config.max_zoom);
    return out;
  }

  // ------------------------------------------------------------------ vector layer styles
  const THEMES = {
    light: {
      casing: "#c8c2b4", label: "#3b3a36", halo: "#fbfaf6", poi: "#b45309",
      road: { trunk: ["#f6c25b", 6], primary: ["#fbe08e", 5], secondary: ["#ffffff", 4], street: ["#ffffff", 3], lane: ["#ffffff", 2], minor: ["#ffffff", 1.8] },
    },
    dark: {
      // Neutral greys: the grids' outlines are blue, and must not be taken for streets.
      casing: "#070d1a", label: "#b4bccb", halo: "#0a1324", poi: "#e0a458",
      road: { trunk: ["#7d8594", 5], primary: ["#6b7280", 4], secondary: ["#585f6c", 3], street: ["#535a66", 2.5], lane: ["#474d58", 1.8], minor: ["#3d434d", 1.5] },
    },
  };
  //: The zoom from which a road class is labelled.
  const LABEL_ZOOM = { trunk: 12, primary: 12, secondary: 13, street: 14, lane: 15, minor: 15 };
  const POI_DOT_ZOOM = 13;
  const POI_LABEL_ZOOM = 15;
  const POI_COLOURS = { health: "#dc2626", school: "#2563eb", police: "#1e3a8a", service: "#0d9488", park: "#16a34a", shop: "#d97706", transport: "#7c3aed", other: "#6b7280" };

  const vectorCache = new Map(); // url -> Promise<GeoJSON>
  function loadVector(url) {
    if (!vectorCache.has(url)) {
      vectorCache.set(url, fetch(url, { credentials: "same-origin" }).then((r) => {
        if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
        return r.json();
      }));
    }
    return vectorCache.get(url);
  }

  function pane(map, name, zIndex, interactive) {
    if (!map.getPane(name)) {
      const p = map.createPane(name);
      p.style.zIndex = zIndex;
      if (!interactive) p.style.pointerEvents = "none";
    }
    return name;
  }

  function screenAngle(map, a, b) {
    const pa = map.latLngToLayerPoint(a), pb = map.latLngToLayerPoint(b);
    let deg = (Math.atan2(pb.y - pa.y, pb.x - pa.x) * 180) / Math.PI;
    if (deg > 90) deg -= 180;
    if (deg < -90) deg += 180;
    return deg;
  }

  /** Label anchors along a road: the middle of its segments, one per ~`every` metres. */
  function anchors(map, coords, every) {
    const out = [];
    let since = every / 2;
    for (let i = 1; i < coords.length; i++) {
      const a = L.latLng(coords[i - 1][1], coords[i - 1][0]);
      const b = L.latLng(coords[i][1], coords[i][0]);
      const d = a.distanceTo(b);
      let at = every - since;
      while (at <= d) {
        const f = at / d;
        out.push([L.latLng(a.lat + (b.lat - a.lat) * f, a.lng + (b.lng - a.lng) * f), screenAngle(map, a, b)]);
        at += every;
      }
      since = (since + d) % every;
    }
    if (!out.length && coords.length > 1) {
      const a = L.latLng(coords[0][1], coords[0][0]);
      const b = L.latLng(coords[coords.length - 1][1], coords[coords.length - 1][0]);
      out.push([L.latLng((a.lat + b.lat) / 2, (a.lng + b.lng) / 2), screenAngle(map, a, b)]);
    }
    return out;
  }

  function esc(s) {
    return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  /** The offline street and landmark layer, drawn in panes under the grids; labels follow
   * the zoom (main roads from 12, streets from 14, landmarks from 15). */
  function vectorLayer(map, geojson, theme) {
    const th = THEMES[theme] || THEMES.light;
    const roadsPane = pane(map, "gd-base", 250, false);
    const labelPane = pane(map, "gd-base-labels", 430, false); // over the components' dots
    const renderer = L.svg({ pane: roadsPane, padding: 0.5 });
    const group = L.layerGroup();
    const roads = [], pois = [];
    for (const f of geojson.features || []) {
      const p = f.properties || {};
      if (p.layer === "road" && f.geometry && f.geometry.type === "LineString") roads.push(f);
      else if (p.layer === "poi" && f.geometry && f.geometry.type === "Point") pois.push(f);
    }
    const order = ["minor", "lane", "street", "secondary", "primary", "trunk"];
    roads.sort((a, b) => order.indexOf(a.properties.class) - order.indexOf(b.properties.class));
    const lines = [];
    for (const pass of ["casing", "fill"]) {
      for (const f of roads) {
        const [colour, weight] = th.road[f.properties.class] || th.road.street;
        const line = L.polyline(f.geometry.coordinates.map(([lon, lat]) => [lat, lon]), {
          renderer, interactive: false, lineCap: "round", lineJoin: "round",
          color: pass === "casing" ? th.casing : colour, opacity: pass === "casing" ? 0.9 : 1,
        });
        line._gdWeight = pass === "casing" ? weight + 1.5 : weight;
        line.addTo(group);
        lines.push(line);
      }
    }
    const dots = L.layerGroup().addTo(group);
    for (const f of pois) {
      const [lon, lat] = f.geometry.coordinates;
      L.circleMarker([lat, lon], {
        renderer, interactive: false, radius: 3.5, weight: 1.2, color: "#ffffff",
        fillColor: POI_COLOURS[f.properties.kind] || POI_COLOURS.other, fillOpacity: 1,
      }).addTo(dots);
    }
    const labels = L.layerGroup().addTo(group);
    let wired = false;
    function restyle() {
      const z = map.getZoom();
      const scale = Math.max(0.6, Math.min(1.8, (z - 8) / 5));
      for (const line of lines) line.setStyle({ weight: line._gdWeight * scale });
      if (z >= POI_DOT_ZOOM) { if (!group.hasLayer(dots)) group.addLayer(dots); } else group.removeLayer(dots);
      labels.clearLayers();
      const view = map.getBounds().pad(0.2);
      for (const f of roads) {
        const cls = f.properties.class;
        if (!f.properties.name || z < (LABEL_ZOOM[cls] ?? 14)) continue;
        const every = 2400 / Math.pow(2, z - 13); // ~one label per 300 px
        for (const [at, deg] of anchors(map, f.geometry.coordinates, Math.max(every, 250))) {
          if (!view.contains(at)) continue;
          L.marker(at, {
            pane: labelPane, interactive: false, keyboard: false,
            icon: L.divIcon({ className: `gd-road-label gd-${theme} gd-${cls}`, iconSize: null, html: `<span style="transform:translate(-50%,-50%) rotate(${deg.toFixed(1)}deg)">${esc(f.properties.name)}</span>` }),
          }).addTo(labels);
        }
      }
      if (z >= POI_LABEL_ZOOM) {
        for (const f of pois) {
          const [lon, lat] = f.geometry.coordinates;
          const at = L.latLng(lat, lon);
          if (!view.contains(at)) continue;
          L.marker(at, {
            pane: labelPane, interactive: false, keyboard: false,
            icon: L.divIcon({ className: `gd-poi-label gd-${theme}`, iconSize: null, html: `<span>${esc(f.properties.name)}</span>` }),
          }).addTo(labels);
        }
      }
    }
    group.on("add", () => {
      if (!wired) { map.on("zoomend moveend", restyle); wired = true; }
      restyle();
    });
    group.on("remove", () => { map.off("zoomend moveend", restyle); wired = false; });
    return group;
  }

  /** Put the city's base map on `map`: tiles (XYZ / WMTS) and/or the offline vector layer.
   * Returns {ready: Promise<"tiles"|"vector"|"none">, vector: layer|null}. With both, the
   * vector layer shows until the first tile loads (no tile server reachable: it stays). */
  function add(map, config, { theme = "light" } = {}) {
    const state = { ready: Promise.resolve("none"), vector: null, tiles: null };
    if (!config || !window.L) return state;
    const box = map.getContainer();
    box.classList.add("gd-has-basemap", `gd-basemap-${theme}`);
    // Whether the map is still moving (tests and screenshots wait for it to settle).
    map.on("movestart zoomstart", () => { box.dataset.moving = "1"; });
    map.on("moveend", () => { delete box.dataset.moving; box.dataset.zoom = String(map.getZoom()); });
    if (config.attribution) {
      L.control.attribution({ prefix: false, position: "bottomright" }).addTo(map).addAttribution(esc(config.attribution));
    }
    let tilesLoaded = false;
    if ((config.kind === "xyz" || config.kind === "wmts") && config.url) {
      state.tiles = L.tileLayer(config.url, {
        subdomains: config.subdomains || "abc", minZoom: config.min_zoom, maxZoom: config.max_zoom,
        crossOrigin: false, className: "gd-tiles",
      }).addTo(map);
      state.tiles.once("tileload", () => {
        tilesLoaded = true;
        if (state.vector) map.removeLayer(state.vector);
        map.getContainer().dataset.basemap = "tiles";
      });
    }
    if (config.vector_url) {
      state.ready = loadVector(config.vector_url).then((geojson) => {
        if (tilesLoaded) return "tiles";
        state.vector = vectorLayer(map, geojson, theme).addTo(map);
        map.getContainer().dataset.basemap = "vector";
        return "vector";
      }).catch((e) => {
        console.warn("basemap: no vector layer", e);
        return state.tiles ? "tiles" : "none";
      });
    } else if (state.tiles) {
      state.ready = Promise.resolve("tiles");
    }
    return state;
  }

  // ------------------------------------------------------------------ components (部件)
  const COMPONENT_ZOOM = 14;
  const COMPONENT_COLOURS = { "01": "#0ea5e9", "02": "#f97316", "03": "#a855f7", "04": "#22c55e" };
  function componentColour(c) {
    if (String(c.code).slice(6, 10) === "0105") return "#facc15"; // 路灯: lamps stand out
    return COMPONENT_COLOURS[String(c.code).slice(6, 8)] || "#94a3b8";
  }
  /** The legend of the components' colours: [[colour, label], …] in the page's language. */
  const COMPONENT_LEGEND = [
    ["#facc15", "component_class.lamp"], ["#0ea5e9", "component_class.01"], ["#f97316", "component_class.02"],
    ["#a855f7", "component_class.03"], ["#22c55e", "component_class.04"],
  ];
  function componentLegend() {
    return COMPONENT_LEGEND.map(([colour, key]) => [colour, T(key)]);
  }

  /** The 部件 point layer: loaded by bounding box (GET /v1/components?bbox=) from zoom 14 on.
   * `fetchJSON(url)` is the page's signed-in API call. `onState({count, truncated, zoomIn})`
   * tells the page what to show next to its toggle. */
  function componentLayer(map, fetchJSON, { onState } = {}) {
    const group = L.layerGroup();
    const renderer = L.svg({ pane: pane(map, "gd-components", 420, true) });
    let asked = 0, wired = false;
    async function load() {
      const n = ++asked;
      if (map.getZoom() < COMPONENT_ZOOM) {
        group.clearLayers();
        onState && onState({ count: 0, truncated: false, zoomIn: true });
        return;
      }
      const b = map.getBounds();
      const bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(6)).join(",");
      let data;
      try {
        data = await fetchJSON(`/v1/components?bbox=${bbox}&limit=3000`);
      } catch (e) {
        onState && onState({ error: e.message || String(e) });
        return;
      }
      if (n !== asked) return;
      group.clearLayers();
      for (const c of data.items) {
        L.circleMarker([c.lat, c.lon], {
          renderer, radius: 4, weight: 1, color: "#0f172a", fillColor: componentColour(c), fillOpacity: 0.95,
        }).bindTooltip(`<b>${esc(c.kind)}</b>${c.name ? ` · ${esc(c.name)}` : ""}<br><span class="gd-code">${esc(c.code)}</span>`)
          .on("click", () => map.fire("gd:component", { component: c }))
          .addTo(group);
      }
      onState && onState({ count: data.count, truncated: data.truncated, zoomIn: false });
    }
    group.on("add", () => { if (!wired) { map.on("moveend", load); wired = true; } load(); });
    group.on("remove", () => { map.off("moveend", load); wired = false; asked++; });
    return group;
  }

  /** A small map with pins (the case panel's "where"): `pins` = [{lat, lon, label, colour}],
   * optional `circle` = {lat, lon, radius}. Non-interactive apart from zoom. */
  function pinMap(el, config, pins, { circle, theme = "light", grid } = {}) {
    const map = L.map(el, mapOptions(config, {
      zoomControl: true, attributionControl: false, scrollWheelZoom: false, minZoom: 9, maxZoom: 18,
    }));
    const pts = pins.filter((p) => p.lat != null && p.lon != null);
    // The view first (layers and permanent labels need a map with a view).
    const fit = () => {
      let bounds = null;
      for (const p of pts) bounds = bounds ? bounds.extend([p.lat, p.lon]) : L.latLngBounds([[p.lat, p.lon], [p.lat, p.lon]]);
      if (circle) {
        const c = L.latLng(circle.lat, circle.lon).toBounds(circle.radius * 2);
        bounds = bounds ? bounds.extend(c) : c;
      }
      if (!bounds) return;
      // No animation: the panel may replace this map at any moment (a case reloaded), and a
      // map removed mid-animation throws from Leaflet's pending frame (_leaflet_pos).
      if (pts.length === 1 && !circle) map.setView(bounds.getCenter(), 15, { animate: false });
      else map.fitBounds(bounds, { padding: [28, 28], maxZoom: 17, animate: false });
    };
    fit();
    if (!pts.length && !circle) return map;
    add(map, config, { theme });
    if (grid) {
      // The grid's outline for orientation (not fitted: the pins decide the view).
      L.polygon(grid.map(([lon, lat]) => [lat, lon]), { color: "#60a5fa", weight: 1.5, fill: false, dashArray: "4 3", interactive: false }).addTo(map);
    }
    if (circle) {
      L.circle([circle.lat, circle.lon], { radius: circle.radius, color: "#16a34a", weight: 1, fillOpacity: 0.06, dashArray: "3 3", interactive: false }).addTo(map);
    }
    if (pts.length === 2) {
      L.polyline(pts.map((p) => [p.lat, p.lon]), { color: "#94a3b8", weight: 1.5, dashArray: "4 4", interactive: false }).addTo(map);
    }
    for (const p of pts) {
      L.circleMarker([p.lat, p.lon], { radius: 7, color: "#ffffff", weight: 2.5, fillColor: p.colour || "#dc2626", fillOpacity: 1 })
        .addTo(map)
        .bindTooltip(esc(p.label), { permanent: true, direction: p.direction || "top", className: "gd-pin-label", offset: [0, p.direction === "bottom" ? 6 : -6] });
    }
    // Shown inside a panel that may still be laying out: measure again once it has — unless
    // the panel removed this map meanwhile (under load a reload can come first).
    let removed = false;
    map.on("unload", () => { removed = true; });
    requestAnimationFrame(() => { if (!removed) { map.invalidateSize(); fit(); } });
    return map;
  }

  window.GDBasemap = { add, mapOptions, toDisplay, toStored, gcj02Crs, componentLayer, componentLegend, pinMap, COMPONENT_ZOOM, label: T };
})();
