/* Inspector app service worker: caches the app shell so the app opens without a network.
 * API calls are never cached here — the report queue lives in IndexedDB (inspector.js),
 * which is what makes submissions safe offline. */
const SHELL = "gd-inspector-shell-v6";
const ASSETS = [
  "/inspector/",
  "/inspector/manifest.webmanifest",
  "/intake-static/intake.css",
  "/static/shared/base.css",
  "/static/shared/messages.js",
  "/static/vendor/opencc/st-characters.js",
  "/static/shared/i18n.js",
  "/static/shared/icons.svg",
  "/intake-static/common.js",
  "/intake-static/inspector.js",
  "/intake-static/visits.js",
  "/intake-static/visits.css",
  "/intake-static/icon.svg",
  "/static/vendor/leaflet/leaflet.js",
  "/static/vendor/leaflet/leaflet.css",
  "/static/vendor/gcoord/gcoord.global.prod.js",
  "/static/shared/basemap.js",
  "/static/shared/dom.js",
];
// The city's offline street layer (public, like tiles), so the map keeps its streets offline;
// optional: a city without one answers 404, which must not break the shell's install.
const OPTIONAL = ["/v1/basemap/vector.geojson"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(SHELL)
      .then((c) => c.addAll(ASSETS).then(() => Promise.all(OPTIONAL.map((u) => c.add(u).catch(() => {})))))
      .then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("gd-inspector-") && k !== SHELL).map((k) => caches.delete(k))))
      .then(() => self.clients.claim())
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!ASSETS.includes(url.pathname) && !OPTIONAL.includes(url.pathname)) return; // API and photos: straight to the network
  // Network first (fresh code when online), cache when offline.
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(SHELL).then((c) => c.put(event.request, copy));
        }
        return response;
      })
      .catch(() => caches.match(event.request, { ignoreSearch: true }))
  );
});
