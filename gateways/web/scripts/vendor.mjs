// Copies the pinned front-end libraries from node_modules into static/vendor/.
// Deterministic: same package-lock.json -> byte-identical files. No bundler, no CDN.
// `node scripts/vendor.mjs --check` exits 1 when static/vendor differs from node_modules.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, "static", "vendor");
const files = [
  ["leaflet/dist/leaflet.js", "leaflet/leaflet.js"],
  ["leaflet/dist/leaflet.css", "leaflet/leaflet.css"],
  ["leaflet/LICENSE", "leaflet/LICENSE"],
  // WGS-84 → GCJ-02 for a city whose tile source is in GCJ-02 (static/shared/basemap.js).
  ["gcoord/dist/gcoord.global.prod.js", "gcoord/gcoord.global.prod.js"],
  ["gcoord/LICENSE", "gcoord/LICENSE"],
  ["uplot/dist/uPlot.iife.min.js", "uplot/uPlot.iife.min.js"],
  ["uplot/dist/uPlot.min.css", "uplot/uPlot.min.css"],
  ["uplot/LICENSE", "uplot/LICENSE"],
  // /docs and /redoc (gateways/http/pages.py): Swagger UI and ReDoc served from here, not a CDN.
  ["swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui/swagger-ui-bundle.js"],
  ["swagger-ui-dist/swagger-ui.css", "swagger-ui/swagger-ui.css"],
  ["swagger-ui-dist/favicon-32x32.png", "swagger-ui/favicon-32x32.png"],
  ["swagger-ui-dist/LICENSE", "swagger-ui/LICENSE"],
  ["redoc/bundles/redoc.standalone.js", "redoc/redoc.standalone.js"],
  ["redoc/LICENSE", "redoc/LICENSE"],
];
// Changes to a copied file, [from, to] exact strings: a vendored file fetches nothing from
// outside. ReDoc's side-menu footer ("API docs by Redocly") loads its logo from a CDN (hidden
// when that fails, i.e. on an intranet): it takes the local copy in static/docs instead.
const patches = {
  "redoc/redoc.standalone.js": [
    ["https://cdn.redoc.ly/redoc/logo-mini.svg", "/static/docs/redoc-logo-mini.svg"],
  ],
};
function vendored(from, to) {
  const bytes = readFileSync(join(root, "node_modules", from));
  if (!patches[to]) return bytes;
  let text = bytes.toString("utf8");
  for (const [was, now] of patches[to]) {
    if (text.split(was).length !== 2) throw new Error(`${to}: expected ${was} exactly once`);
    text = text.replace(was, now);
  }
  return Buffer.from(text, "utf8");
}
const check = process.argv.includes("--check");
let stale = 0;
for (const [from, to] of files) {
  const body = vendored(from, to);
  const dst = join(out, to);
  if (check) {
    if (!existsSync(dst) || !body.equals(readFileSync(dst))) {
      console.error(`stale: ${to}`);
      stale += 1;
    }
    continue;
  }
  mkdirSync(dirname(dst), { recursive: true });
  writeFileSync(dst, body);
  console.log(`vendor: ${to}`);
}
if (stale) process.exit(1);
