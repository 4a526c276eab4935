// Copies the pinned front-end libraries from node_modules into static/vendor/.
// Deterministic: same package-lock.json -> byte-identical files. No bundler, no CDN.
// `node scripts/vendor.mjs --check` exits 1 when static/vendor differs from node_modules.
import { copyFileSync, mkdirSync, readFileSync, existsSync } from "node:fs";
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
const check = process.argv.includes("--check");
let stale = 0;
for (const [from, to] of files) {
  const src = join(root, "node_modules", from);
  const dst = join(out, to);
  if (check) {
    if (!existsSync(dst) || !readFileSync(src).equals(readFileSync(dst))) {
      console.error(`stale: ${to}`);
      stale += 1;
    }
    continue;
  }
  mkdirSync(dirname(dst), { recursive: true });
  copyFileSync(src, dst);
  console.log(`vendor: ${to}`);
}
if (stale) process.exit(1);
