// The ONE way this page talks to the server: every call goes through `api()`, which sends the
// signed-in user's Bearer token (kept in sessionStorage, so it dies with the tab), refreshes
// it once on 401 (rotating refresh token), and turns error bodies ({error, message, ...})
// into ApiError. Sign-in is the OAuth2 password form of POST /v1/auth/token.
const KEY = "gd.session";
const authListeners = new Set();

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export function session() {
  try { return JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch { return null; }
}
function save(value) {
  if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
  else sessionStorage.removeItem(KEY);
}
export const user = () => session()?.user || null;
export const accessToken = () => session()?.access_token || null;
export function onAuthRequired(fn) { authListeners.add(fn); }

export async function signIn(username, password) {
  const form = new URLSearchParams({ username, password, client_id: "web" });
  const res = await fetch("/v1/auth/token", { method: "POST", body: form });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, body);
  save(body);
  return body;
}

let refreshing = null;
async function refresh() {
  const s = session();
  if (!s?.refresh_token) return false;
  refreshing ||= (async () => {
    const res = await fetch("/v1/auth/refresh", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: s.refresh_token }),
    });
    if (!res.ok) return false;
    const body = await res.json();
    save({ ...s, ...body, user: body.user || s.user });
    return true;
  })().finally(() => { setTimeout(() => { refreshing = null; }, 0); });
  return refreshing;
}

export async function signOut() {
  try { if (accessToken()) await api("/v1/auth/logout", { method: "POST" }); } catch { /* ended anyway */ }
  save(null);
  for (const fn of authListeners) fn();
}

/**
 * Call the API. opts: {method, body (JSON), query (object), headers, raw (return Response)}.
 */
export async function api(path, opts = {}, retried = false) {
  const headers = { ...(opts.headers || {}) };
  const token = accessToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let url = path;
  if (opts.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) {
      if (v === undefined || v === null || v === "") continue;
      for (const item of Array.isArray(v) ? v : [v]) q.append(k, item);
    }
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const init = { method: opts.method || "GET", headers };
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  const res = await fetch(url, init);
  if (res.status === 401 && !retried && !path.startsWith("/v1/auth/")) {
    if (await refresh()) return api(path, opts, true);
    save(null);
    for (const fn of authListeners) fn();
  }
  if (opts.raw) {
    if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => ({})));
    return res;
  }
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

/** Download an export (the token must go in a header, so no plain link). */
export async function download(path, query, fallbackName) {
  const res = await api(path, { query, raw: true });
  const blob = await res.blob();
  const disposition = res.headers.get("content-disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || fallbackName;
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

/** An object URL for a stored photo (fetched with the token). */
const photoCache = new Map();
export async function photoUrl(digest) {
  if (!photoCache.has(digest)) {
    photoCache.set(digest, api(`/v1/photos/${encodeURIComponent(digest)}`, { raw: true })
      .then((r) => r.blob()).then((b) => URL.createObjectURL(b))
      .catch((e) => { photoCache.delete(digest); throw e; }));
  }
  return photoCache.get(digest);
}
