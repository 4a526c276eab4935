"""Security headers on every response: a Content-Security-Policy, ``nosniff``, no framing.

Why one place: the pages render stored text (descriptions, reporters' names, answers) that
citizens and API clients wrote. The pages escape it (``textContent`` / ``esc``); the policy
is the second wall — even an escaping slip cannot run a script, because only our own files
may (``script-src 'self'``, no inline script, no ``eval``). Styles may be inline: the pages
and Leaflet set element styles, and a style cannot run code. Every page is served from this
origin (Leaflet and uPlot are vendored), so ``'self'`` is the whole list.

A response that already carries a policy keeps it (the intake pages' files set their own;
their service worker needs ``connect-src``). ``/docs`` and ``/redoc`` load the vendored Swagger
UI / ReDoc (gateways/http/pages.py): no CDN and no inline script; ReDoc starts a worker from a
blob, which their policy allows. Anything that is not HTML (JSON, images, exports) gets
``default-src 'none'``: it is data, and if a browser is ever made to render it as a document
nothing in it may load or run.
Scripts get the pages' policy (for a worker, the policy of its script response applies).
"""

from __future__ import annotations

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; worker-src 'self'; "
    "manifest-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
DOCS_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "font-src 'self' data:; img-src 'self' data: blob:; worker-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'"
DOC_PATHS = ("/docs", "/redoc")

_CSP = b"content-security-policy"
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_FRAMES = (b"x-frame-options", b"DENY")
_PAGE = (_CSP, PAGE_POLICY.encode())
_DOCS = (_CSP, DOCS_POLICY.encode())
_DATA = (_CSP, DATA_POLICY.encode())


_IMG = b"img-src 'self' data: blob:"


def image_sources(url: str) -> bytes:
    """The origin of a city's tile server (``city.json`` basemap url) for ``img-src``: the
    pages may load its tiles and nothing else from it; b"" for a same-origin or no source."""
    if not url.startswith(("http://", "https://")):
        return b""
    scheme, rest = url.split("://", 1)
    host = rest.split("/", 1)[0].split("?", 1)[0]
    if "{s}" in host:  # subdomains: a wildcard for the first label
        host = "*." + host.split(".", 1)[1] if "." in host else host
    if not host or any(c in host for c in " ;'\"{}"):
        return b""
    return f"{scheme}://{host}".encode()


def with_security_headers(
    headers: list[tuple[bytes, bytes]], path: str, images: bytes = b""
) -> list[tuple[bytes, bytes]]:
    """``headers`` plus the policy for this response (kept when it already has one), nosniff
    and X-Frame-Options (for browsers without ``frame-ancestors``). ``images``: the city's
    tile server (:func:`image_sources`), added to the pages' ``img-src``."""
    has_csp = has_nosniff = has_frames = False
    html = False
    for key, value in headers:
        lower = key.lower()
        if lower == _CSP:
            has_csp = True
        elif lower == b"content-type":
            # A script is code of this origin too: if it is ever run as a worker, the
            # response's policy is the worker's, and it must be allowed to fetch.
            html = value.startswith((b"text/html", b"text/javascript", b"application/javascript"))
        elif lower == _NOSNIFF[0]:
            has_nosniff = True
        elif lower == _FRAMES[0]:
            has_frames = True
    out = list(headers)
    if not has_csp:
        if not html:
            out.append(_DATA)
        elif path.startswith(DOC_PATHS):
            out.append(_DOCS)
        else:
            out.append(_PAGE)
    if images:
        out = [(k, v.replace(_IMG, _IMG + b" " + images)) if k.lower() == _CSP else (k, v)
               for k, v in out]
    if not has_nosniff:
        out.append(_NOSNIFF)
    if not has_frames:
        out.append(_FRAMES)
    return out
