"""Open311 GeoReport v2 (https://wiki.open311.org/GeoReport_v2) under ``/open311/v2/``.

Other cities' apps and "report a problem" widgets speak this protocol; behind it is the very
same intake as the inspector app and the hotline (``POST /v1/reports`` → NATS → 202).

Endpoints (each as ``.json`` and ``.xml``):

* ``GET  discovery``                  — where the endpoint is and what it speaks;
* ``GET  services``                   — the public categories (service_code = category code);
* ``GET  services/{service_code}``    — a service definition: the category's questions as
                                         attributes (``metadata`` true when it has some);
* ``POST requests``                   — create a request; ``api_key`` required; form-encoded
                                         (decoded as UTF-8 unless the Content-Type names
                                         another charset) or ``multipart/form-data`` with one
                                         photo in the ``media`` field; ``attribute[code]``
                                         answers the service's attributes; ``media_url`` is
                                         stored and returned as given;
* ``GET  requests``                   — search: service_request_id, service_code,
                                         start_date, end_date, status (open / closed);
* ``GET  requests/{service_request_id}``;
* ``GET  tokens/{token}``             — the request id for the token POST returned.

Mapping rules
-------------
* service_code ↔ category code, one to one (``category_for`` / ``service_code_for``), looked
  up case-insensitively. Disputes (ZL01 矛盾糾紛) and care visits (ZL03 六必訪) concern named
  households and are not offered nor listed here.
* status: ``closed`` for our terminal statuses (結案 closed, 不予立案 rejected, 合併 merged),
  ``open`` for every other one; ``status_notes`` carries the precise status (zh / en).
* service_request_id = our case number (known at once: derived from the idempotency key), so
  the POST answers with both the id and a token.
* address_id = grid code (a request without lat/long names its grid); no geocoding of free
  addresses.

Every refusal — ours, the form parser's, a body too large, a database or broker outage —
uses the spec's shape — ``[{"code": 400, "description": "…"}]`` or
``<errors><error><code>400</code><description>…</description></error></errors>`` — with the
HTTP status equal to ``code``. Reporter names, phones and e-mails are never published.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime, timedelta
from email.message import Message
from typing import Any, Literal
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import asyncpg
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregates.commands import Photo, Reporter
from core import apikeys, photos
from core.calendar import DEFAULT_TZ
from core.catalogue import OPEN311_DATATYPES, Category, Question
from core.clock import Clock
from core.ids import new_key
from core.logging import get_logger
from core.refdata import Reference
from gateways.http.deps import get_clock, get_photos, get_pool, get_reference
from gateways.http.errors import ApiError, handled
from gateways.http.identity import Principal, public, require
from gateways.http.reporter_status import open311_progress
from gateways.http.reports import Intake, ReportIn, intake_from, post_report

log = get_logger("open311")

TZ = ZoneInfo(DEFAULT_TZ)
#: Category code prefixes not exposed through Open311 (they name private households).
PRIVATE_PREFIXES: tuple[str, ...] = ("ZL01", "ZL03")
#: Our statuses that Open311 calls ``closed``; every other status is ``open``.
CLOSED_STATUSES = frozenset({"closed", "rejected", "merged"})
STATUS_EN = {
    "reported": "received, awaiting filing",
    "filed": "filed, awaiting dispatch",
    "rejected": "not accepted",
    "merged": "duplicate of another request",
    "dispatched": "dispatched to a department",
    "in_progress": "being handled",
    "returned": "being re-dispatched",
    "suspended": "suspended",
    "awaiting_verification": "fixed, awaiting on-site check",
    "verified": "checked on site, awaiting closure",
    "closed": "closed",
}
MAX_RESULTS = 1000
#: Form fields a POST may carry (the spec's ~20 and the attributes of a service).
MAX_FIELDS = 100
#: A multipart body may be this much larger than its photo (the other fields, boundaries).
MULTIPART_OVERHEAD = 64 * 1024
#: What this endpoint does beyond the spec's minimum (discovery lists them).
CAPABILITIES: tuple[dict[str, str], ...] = (
    {"name": "service_definitions",
     "description": "services with metadata=true have attributes: the category's questions"},
    {"name": "attributes", "description": "POST attribute[code]=value (multivaluelist: "
     "repeat the field or separate by commas); required attributes are enforced"},
    {"name": "media_upload", "description": "multipart/form-data POST with one photo in the "
     f"'media' field: JPEG, PNG or WebP, at most {photos.MAX_BYTES} bytes"},
    {"name": "media_url", "description": "media_url is stored and returned as given"},
    {"name": "tokens", "description": "GET tokens/{token} gives the service_request_id"},
    {"name": "search", "description": "GET requests by service_request_id, service_code, "
     "status, start_date, end_date"},
    {"name": "utf8_forms", "description": "form bodies are read as UTF-8 unless the "
     "Content-Type names another charset"},
    {"name": "formats", "description": "every resource as .json and .xml"},
)
#: XML element names of list items whose plural does not end in a plain "s".
_SINGULAR = {"capabilities": "capability", "attributes": "attribute", "values": "value"}
DEFAULT_WINDOW = timedelta(days=90)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,100}$")

class Open311Error(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


# --------------------------------------------------------------------------------- rendering


def _fmt_of(request: Request) -> str:
    return "xml" if request.url.path.endswith(".xml") else "json"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return w3c(value)
    return str(value)


def to_xml(root: str, item: str, items: Iterable[dict[str, Any]]) -> bytes:
    """The spec's XML: a root element holding one element per item, fields as children."""
    top = ET.Element(root)
    for entry in items:
        node = ET.SubElement(top, item)
        _fill(node, entry)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="utf-8")


def _fill(node: ET.Element, entry: dict[str, Any]) -> None:
    for key, value in entry.items():
        child = ET.SubElement(node, key)
        if isinstance(value, list):
            name = _SINGULAR.get(key) or key.rstrip("s") or key
            for element in value:
                if isinstance(element, dict):
                    _fill(ET.SubElement(child, name), element)
                else:
                    ET.SubElement(child, name).text = _text(element)
        elif isinstance(value, dict):
            _fill(child, value)
        elif value is not None:
            child.text = _text(value)


def render(
    request: Request, root: str, item: str, items: list[dict[str, Any]], status: int = 200
) -> Response:
    if _fmt_of(request) == "xml":
        return Response(to_xml(root, item, items), status_code=status, media_type="text/xml")
    return Response(
        orjson.dumps(items, default=_text), status_code=status, media_type="application/json"
    )


def error_response(fmt: str, code: int, description: str) -> Response:
    errors = [{"code": code, "description": description}]
    if fmt == "xml":
        return Response(to_xml("errors", "error", errors), code, media_type="text/xml")
    return JSONResponse(errors, status_code=code)


class Open311Route(APIRoute):
    """Every failure under /open311/v2/ answers in the spec's error format and the format
    (JSON / XML) the caller asked for."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            fmt = _fmt_of(request)
            try:
                return await handler(request)
            except Open311Error as exc:
                return error_response(fmt, exc.code, exc.description)
            except ApiError as exc:
                code = 400 if exc.status == 422 else exc.status
                return error_response(fmt, code, str(exc.body.get("message", exc)))
            except RequestValidationError as exc:
                if any(tuple(e.get("loc", ()))[:2] == ("path", "fmt") for e in exc.errors()):
                    return error_response(fmt, 404, "unknown format: use .json or .xml")
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in ('query', 'body'))}"
                    f": {e.get('msg', '')}"
                    for e in exc.errors()
                )
                return error_response(fmt, 400, problems or "invalid request")
            except StarletteHTTPException as exc:  # the form parser's, a dependency's
                return error_response(fmt, exc.status_code, str(exc.detail))
            except Exception as exc:
                return await _outage(request, fmt, exc)

        return wrapped


async def _outage(request: Request, fmt: str, exc: Exception) -> Response:
    """Anything else (a database or broker outage, a bug): the app's own handler decides the
    status (503 + Retry-After, or 500), answered in the spec's shape."""
    answer = await handled(request, exc)
    if answer is None:
        log.error("open311.internal_error", path=request.url.path, exc_info=exc)
        return error_response(fmt, 500, "internal error; it has been logged")
    try:
        message = str(orjson.loads(bytes(answer.body)).get("message") or "unavailable")
    except (orjson.JSONDecodeError, AttributeError):
        message = "unavailable"
    out = error_response(fmt, answer.status_code, message)
    if "retry-after" in answer.headers:
        out.headers["Retry-After"] = answer.headers["retry-after"]
    return out


Format = Literal["json", "xml"]
_ERRORS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
    },
}


def _documented(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ERRORS_SCHEMA}, "text/xml": {}},
    }


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "JSON or XML", "content": {"application/json": {}, "text/xml": {}}},
    400: _documented("invalid parameter (spec error format)"),
    403: _documented("api_key missing, unknown or revoked"),
    404: _documented("unknown service, request, token, format or jurisdiction"),
}

#: Public: anyone may read services and requests; POST checks the client's api_key itself.
router = APIRouter(
    prefix="/open311/v2",
    tags=["Open311 GeoReport v2"],
    route_class=Open311Route,
    dependencies=[Depends(public)],
    responses=RESPONSES,
)
admin_router = APIRouter(prefix="/v1/admin/api-clients", tags=["admin 管理"])
ADMIN = require("admin")


def _format(fmt: str) -> str:
    if fmt not in ("json", "xml"):
        raise Open311Error(404, f"unknown format {fmt!r}: use .json or .xml")
    return fmt


# ---------------------------------------------------------------------------------- mapping


def is_public(category: Category) -> bool:
    return not category.code.startswith(PRIVATE_PREFIXES)


def service_code_for(category: str) -> str:
    """Our category code → Open311 service_code (the same code)."""
    return category


def category_for(ref: Reference, service_code: str) -> Category:
    """Open311 service_code → our category (case-insensitive); Open311Error 404 if none."""
    catalogue = ref.catalogue
    code = service_code.strip()
    if code not in catalogue:
        by_upper = {c.code.upper(): c.code for c in catalogue.all()}
        code = by_upper.get(code.upper(), code)
    if code not in catalogue or not is_public(catalogue.get(code)):
        raise Open311Error(404, f"unknown service_code {service_code!r}")
    return catalogue.get(code)


def open311_status(status: str) -> str:
    return "closed" if status in CLOSED_STATUSES else "open"


def our_statuses(open311: str) -> list[str]:
    """Open311 status filter value → our statuses."""
    from core.vocabulary import Status

    if open311 == "closed":
        return sorted(CLOSED_STATUSES)
    if open311 == "open":
        return sorted(s.value for s in Status if s.value not in CLOSED_STATUSES)
    raise Open311Error(400, f"status must be 'open' or 'closed', not {open311!r}")


def w3c(value: datetime) -> str:
    return value.astimezone(TZ).isoformat(timespec="seconds")


def _service(category: Category) -> dict[str, Any]:
    return {
        "service_code": service_code_for(category.code),
        "service_name": f"{category.name_zh} {category.name_en}",
        "description": " ".join(category.filing_conditions),
        "metadata": bool(category.questions),
        "type": "realtime",
        "keywords": ", ".join([category.name_en, *category.aliases]),
        "group": f"{category.group_zh} {category.group_en}",
    }


def _check_jurisdiction(ref: Reference, jurisdiction_id: str | None) -> None:
    if jurisdiction_id and jurisdiction_id != ref.jurisdiction.city_code:
        raise Open311Error(
            404,
            f"unknown jurisdiction_id {jurisdiction_id!r}; this endpoint serves "
            f"{ref.jurisdiction.city_code}",
        )


def _request_item(ref: Reference, row: dict[str, Any]) -> dict[str, Any]:
    catalogue = ref.catalogue
    j = ref.jurisdiction
    category = catalogue.get(row["category"]) if row["category"] in catalogue else None
    department = j.departments.get(row["department"]) if row.get("department") else None
    status = str(row["status"])
    from core.vocabulary import STATUS_LABELS, Status

    notes = f"{STATUS_LABELS.get(Status(status), status)} · {STATUS_EN.get(status, status)}"
    if row.get("duplicate_of"):
        notes += f" · see {row['duplicate_of']}"
    return {
        "service_request_id": row["case_no"],
        "status": open311_status(status),
        "status_notes": notes,
        "service_name": f"{category.name_zh} {category.name_en}" if category else row["category"],
        "service_code": service_code_for(row["category"]),
        "description": row["description"],
        "agency_responsible": (
            f"{department.name_zh} {department.name_en}" if department else None
        ),
        "service_notice": None,
        "requested_datetime": w3c(row["reported_at"]),
        "updated_datetime": w3c(row["updated_at"]),
        "expected_datetime": (
            w3c(row["due_at"]) if row.get("due_at") and status not in CLOSED_STATUSES else None
        ),
        "address": row.get("address"),
        "address_id": row["grid"],
        "zipcode": None,
        "lat": row.get("lat"),
        "long": row.get("lon"),
        "media_url": row.get("media_url"),
    }


_REQUEST_COLUMNS = (
    "case_no, status, category, description, department, reported_at, updated_at, due_at, "
    "address, grid, lat, lon, duplicate_of, media_url"
)


def _public_filter() -> str:
    return " AND ".join(f"category NOT LIKE '{p}%'" for p in PRIVATE_PREFIXES)


# --------------------------------------------------------------------------------- endpoints


@router.get("/discovery.{fmt}", summary="Discovery")
async def discovery(
    request: Request, fmt: Format, ref: Reference = Depends(get_reference)
) -> Response:
    _format(fmt)
    base = str(request.base_url).rstrip("/") + "/open311/v2/"
    doc = {
        "changeset": ref.catalogue.version,
        "contact": "12319 城市管理熱線 (12319 city-management hotline)",
        "key_service": "Ask the city for an api_key (one per client application).",
        "endpoints": [
            {
                "specification": "http://wiki.open311.org/GeoReport_v2",
                "url": base,
                "changeset": ref.catalogue.version,
                "type": "production",
                "formats": ["application/json", "text/xml"],
                "capabilities": [c["name"] for c in CAPABILITIES],
            }
        ],
        "capabilities": list(CAPABILITIES),
    }
    if fmt == "xml":
        top = ET.Element("discovery")
        _fill(top, doc)
        body = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="utf-8")
        return Response(body, media_type="text/xml")
    return JSONResponse(doc)


@router.get("/services.{fmt}", summary="Service list")
async def services(
    request: Request,
    fmt: Format,
    jurisdiction_id: str | None = None,
    ref: Reference = Depends(get_reference),
) -> Response:
    """Every public category as an Open311 service."""
    _format(fmt)
    _check_jurisdiction(ref, jurisdiction_id)
    items = [_service(c) for c in ref.catalogue.all() if is_public(c)]
    return render(request, "services", "service", items)


@router.get("/services/{service_code}.{fmt}", summary="Service definition")
async def service_definition(
    request: Request,
    service_code: str,
    fmt: Format,
    jurisdiction_id: str | None = None,
    ref: Reference = Depends(get_reference),
) -> Response:
    """The service's attributes: the category's questions (``metadata`` true when there are
    any), in the languages the request asks for (``Accept-Language``; zh-Hans first)."""
    _format(fmt)
    _check_jurisdiction(ref, jurisdiction_id)
    category = category_for(ref, service_code)
    code = service_code_for(category.code)
    language = _language(request)
    definition: dict[str, Any] = {
        "service_code": code,
        "attributes": [
            _attribute(q, order, language) for order, q in enumerate(category.questions, 1)
        ],
    }
    if fmt == "xml":
        top = ET.Element("service_definition")
        _fill(top, definition)
        body = b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="utf-8")
        return Response(body, media_type="text/xml")
    return JSONResponse(definition)


def _language(request: Request) -> str:
    """zh-Hans unless the client prefers traditional Chinese or English."""
    wanted = request.headers.get("accept-language", "").lower()
    for part in wanted.split(","):
        tag = part.split(";")[0].strip()
        if tag.startswith(("zh-hant", "zh-tw", "zh-hk", "zh-mo")):
            return "zh-Hant"
        if tag.startswith("zh"):
            return "zh-Hans"
        if tag.startswith("en"):
            return "en"
    return "zh-Hans"


def _said(texts: Mapping[Any, str], language: str) -> str:
    return texts.get(language) or texts["zh-Hans"]


def _attribute(question: Question, order: int, language: str) -> dict[str, Any]:
    """One question as the spec's attribute (``variable`` true: the citizen answers it)."""
    values: list[dict[str, str]]
    if question.type == "boolean":
        yes_no = {"zh-Hans": ("是", "否"), "zh-Hant": ("是", "否"), "en": ("yes", "no")}
        yes, no = yes_no.get(language, yes_no["zh-Hans"])
        values = [{"key": "true", "name": yes}, {"key": "false", "name": no}]
    else:
        values = [{"key": c.code, "name": _said(c.text, language)} for c in question.choices]
    description = _said(question.text, language)
    if question.unit:
        description += f" ({question.unit})"
    if question.help:
        description += f" — {_said(question.help, language)}"
    item: dict[str, Any] = {
        "variable": True,
        "code": question.code,
        "datatype": OPEN311_DATATYPES[question.type],
        "required": question.required,
        "datatype_description": _datatype_hint(question),
        "order": order,
        "description": description,
    }
    if values:
        item["values"] = values
    return item


def _datatype_hint(question: Question) -> str | None:
    if question.type == "number":
        bounds = [f"≥ {question.min:g}" if question.min is not None else "",
                  f"≤ {question.max:g}" if question.max is not None else ""]
        return " ".join(["a number", *[b for b in bounds if b]])
    if question.type == "date":
        return "a date, YYYY-MM-DD"
    if question.type == "multi_choice":
        return "one or more keys: repeat the field or separate them by commas"
    return None


Form = dict[str, list[str]]


def _field(form: Form, request: Request, name: str) -> str | None:
    values = form.get(name)
    value = values[0] if values else None
    if value is None:
        value = request.query_params.get(name)
    if value is None or not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _float(form: Form, request: Request, name: str) -> float | None:
    value = _field(form, request, name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise Open311Error(400, f"{name} must be a number, not {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise Open311Error(400, f"{name} must be a finite number")
    return number


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is longer than ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Open311Error(413, f"the request is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise Open311Error(413, f"the request is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _charset(content_type: str) -> str:
    """The charset the Content-Type names, else UTF-8 (curl, browsers and most clients send
    UTF-8 without saying so; Starlette's default of Latin-1 turned 路口 into mojibake)."""
    header = Message()
    header["content-type"] = content_type
    named = header.get_param("charset")
    if not isinstance(named, str) or not named.strip():
        return "utf-8"
    try:
        return codecs.lookup(named.strip()).name
    except LookupError:
        raise Open311Error(400, f"unknown charset {named!r} in the Content-Type") from None


async def _read_form(request: Request) -> tuple[Form, tuple[bytes, str | None] | None]:
    """The posted fields (each name with its values, in order) and the ``media`` file
    (bytes, file name) if one was sent. Fields may also come in the query string."""
    content_type = request.headers.get("content-type", "")
    kind = content_type.split(";")[0].strip().lower()
    fields: Form = {}
    if kind == "multipart/form-data":
        raw = await _read_body(request, photos.MAX_BYTES + MULTIPART_OVERHEAD)

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": raw, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(
                max_files=1, max_fields=MAX_FIELDS
            )
        except StarletteHTTPException as exc:  # too many files or fields, a broken body
            raise Open311Error(
                400, f"multipart body refused: {exc.detail} (send at most one file, the "
                f"photo, in the field 'media', and at most {MAX_FIELDS} fields)"
            ) from None
        media: tuple[bytes, str | None] | None = None
        try:
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if name != "media":
                        raise Open311Error(
                            400, f"a file in the field {name!r}: send the photo as 'media'"
                        )
                    media = (await value.read(), value.filename)
                else:
                    fields.setdefault(name, []).append(value)
        finally:
            await form.close()
        return fields, media
    if kind in ("application/x-www-form-urlencoded", "text/plain", ""):
        raw = await _read_body(request, 1_000_000)
        charset = _charset(content_type)
        try:
            pairs = parse_qsl(
                raw.decode(charset), keep_blank_values=True, encoding=charset,
                errors="strict", max_num_fields=MAX_FIELDS,
            )
        except UnicodeDecodeError:
            raise Open311Error(400, f"the form body is not valid {charset} text") from None
        except ValueError as exc:  # too many fields
            raise Open311Error(400, f"form body refused: {exc}") from None
        for name, value in pairs:
            fields.setdefault(name, []).append(value)
        return fields, None
    raise Open311Error(
        400, f"send the request form-encoded or as multipart/form-data, not {kind!r}"
    )


_ATTRIBUTE = re.compile(r"^attribute\[([^\]]{1,40})\](\[\])?$")


def _attributes(form: Form, category: Category) -> dict[str, Any]:
    """``attribute[code]`` fields → answers; a multivaluelist may repeat the field."""
    multi = {q.code for q in category.questions if q.type == "multi_choice"}
    answers: dict[str, Any] = {}
    for name, values in form.items():
        match = _ATTRIBUTE.match(name)
        if match is None:
            continue
        code = match.group(1)
        kept = [v.strip() for v in values if v.strip()]
        if not kept:
            continue
        answers[code] = (
            [part for v in kept for part in v.split(",")] if code in multi else kept[0]
        )
    return answers


async def _store_media(
    intake: Intake, store: photos.PhotoStore, media: tuple[bytes, str | None], client_id: str
) -> Photo:
    """The posted photo, stored like an inspector's (checked by content, content-addressed,
    the upload recorded with its client as uploader); its reference for the report."""
    data, filename = media
    try:
        stored = await store.put(data)
    except photos.PhotoRejected as exc:
        raise Open311Error(
            400 if exc.status == 422 else exc.status, f"media: {exc}"
        ) from exc
    await photos.record(intake.pool, stored, f"open311:{client_id}", "system")
    name = (filename or "").strip()[:200] or None
    return Photo(**stored.ref(), name=name)


@router.post(
    "/requests.{fmt}",
    summary="POST Service Request",
    status_code=201,
    responses={
        201: {"description": "created", "content": {"application/json": {}, "text/xml": {}}},
        413: _documented("body or media too large"),
        415: _documented("media not JPEG / PNG / WebP"),
        503: _documented("database or broker unavailable; retry"),
    },
)
async def create_request(
    request: Request,
    fmt: Format,
    intake: Intake = Depends(intake_from),
    clock: Clock = Depends(get_clock),
    store: photos.PhotoStore = Depends(get_photos),
) -> Response:
    """Create a service request: form-encoded (UTF-8), or multipart with the photo in
    ``media``. ``api_key`` required; ``attribute[code]`` answers the service's attributes."""
    _format(fmt)
    form, media = await _read_form(request)
    api_key = _field(form, request, "api_key")
    if not api_key:
        raise Open311Error(403, "api_key is required to post a service request")
    client = await apikeys.authenticate(intake.pool, api_key)
    if client is None:
        raise Open311Error(403, "api_key is invalid or revoked")
    _check_jurisdiction(intake.ref, _field(form, request, "jurisdiction_id"))
    service_code = _field(form, request, "service_code")
    if not service_code:
        raise Open311Error(400, "service_code is required")
    category = category_for(intake.ref, service_code)
    lat, lon = _float(form, request, "lat"), _float(form, request, "long")
    address_id = _field(form, request, "address_id")
    address = _field(form, request, "address_string")
    if (lat is None) != (lon is None):
        raise Open311Error(400, "give both lat and long")
    if lat is None and address_id is None:
        raise Open311Error(
            400,
            "a location is required: lat and long, or address_id (the grid code); free "
            "addresses alone cannot be placed in a grid",
        )
    description = _field(form, request, "description") or category.name_zh
    media_url = _field(form, request, "media_url")
    name = " ".join(
        p for p in (_field(form, request, "first_name"), _field(form, request, "last_name")) if p
    )
    reporter_id = (
        _field(form, request, "email")
        or _field(form, request, "account_id")
        or _field(form, request, "device_id")
    )
    given = request.headers.get("idempotency-key", "")
    token = given if _TOKEN.match(given) else new_key()
    try:
        reporter = Reporter(
            name=name[:100] or None,
            phone=_field(form, request, "phone"),
            id=(reporter_id or "")[:100] or None,
            type="open311",
        )
        body = ReportIn(
            category=category.code,
            grid=address_id,
            lat=lat,
            lon=lon,
            address=address[:200] if address else None,
            description=description[:2000],
            reporter=reporter,
            source="open311",
            answers=_attributes(form, category),
            media_url=media_url,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise Open311Error(400, f"{where}: {first.get('msg', 'invalid')}") from exc
    if body.answers or category.questions:  # refuse bad attributes before storing a photo
        try:
            category.check_answers(body.answers, complete=True)
        except ValueError as exc:
            raise Open311Error(400, f"attribute {exc}") from exc
    if media is not None:
        body.photos = [await _store_media(intake, store, media, client.client_id)]
    principal = Principal(user_id=f"open311:{client.client_id}", role="system", channel="open311")
    response = await post_report(
        body=body,
        intake=intake,
        clock=clock,
        principal=principal,
        idempotency_key=f"open311:{client.client_id}:{token}",
    )
    accepted = orjson.loads(bytes(response.body))
    async with intake.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO open311_tokens (token, case_no, client_id) VALUES ($1, $2, $3) "
            "ON CONFLICT (token) DO NOTHING",
            token,
            accepted["case_no"],
            client.client_id,
        )
    item = {
        "service_request_id": accepted["case_no"],
        "token": token,
        "service_notice": (
            "已受理，案件編號 {0} · received, request id {0}".format(accepted["case_no"])
        ),
        "account_id": None,
    }
    return render(request, "service_requests", "request", [item], status=201)


@router.get("/requests.{fmt}", summary="GET Service Requests")
async def search_requests(
    request: Request,
    fmt: Format,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
    jurisdiction_id: str | None = None,
    ref: Reference = Depends(get_reference),
    pool: asyncpg.Pool = Depends(get_pool),
    clock: Clock = Depends(get_clock),
) -> Response:
    """Search requests. With ``service_request_id`` (comma-separated) the other filters are
    ignored; otherwise the window defaults to the last 90 days, at most 1000 results."""
    _format(fmt)
    _check_jurisdiction(ref, jurisdiction_id)
    where = [_public_filter()]
    params: list[Any] = []
    if service_request_id:
        ids = [s.strip() for s in service_request_id.split(",") if s.strip()][:MAX_RESULTS]
        params.append(ids)
        where.append(f"case_no = ANY(${len(params)}::text[])")
    else:
        if service_code:
            codes = [category_for(ref, c).code for c in service_code.split(",") if c]
            params.append(codes)
            where.append(f"category = ANY(${len(params)}::text[])")
        if status:
            statuses: list[str] = []
            for value in status.split(","):
                statuses.extend(our_statuses(value.strip().lower()))
            params.append(statuses)
            where.append(f"status = ANY(${len(params)}::text[])")
        start = _date(start_date, "start_date")
        end = _date(end_date, "end_date")
        if start is None and end is None:
            start = clock.now() - DEFAULT_WINDOW
        if start is not None and end is not None and start > end:
            raise Open311Error(400, "start_date is after end_date")
        if start is not None:
            params.append(start)
            where.append(f"reported_at >= ${len(params)}")
        if end is not None:
            params.append(end)
            where.append(f"reported_at <= ${len(params)}")
    params.append(MAX_RESULTS)
    sql = (
        f"SELECT {_REQUEST_COLUMNS} FROM case_queue WHERE {' AND '.join(where)} "
        f"ORDER BY reported_at DESC, case_no DESC LIMIT ${len(params)}"
    )
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql, *params)
    items = [_request_item(ref, dict(r)) for r in rows]
    return render(request, "service_requests", "request", items)


def _date(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "+"))
    except ValueError:
        raise Open311Error(
            400, f"{name} must be a W3C date-time, e.g. 2026-11-23T10:00:00+08:00"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=TZ)


@router.get("/requests/{service_request_id}.{fmt}", summary="GET Service Request")
async def get_request(
    request: Request,
    service_request_id: str,
    fmt: Format,
    jurisdiction_id: str | None = None,
    phone_last4: str | None = Query(
        default=None, pattern=r"^\d{4}$",
        description="工单查询: the last four digits of the reporter's phone add the request's "
        "progress (status_history); rate-limited like sign-ins (gateways/http/reporter_status.py)",
    ),
    ref: Reference = Depends(get_reference),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    _format(fmt)
    _check_jurisdiction(ref, jurisdiction_id)
    history = None
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"SELECT {_REQUEST_COLUMNS} FROM case_queue WHERE case_no = $1 AND {_public_filter()}",
            service_request_id,
        )
        if row is not None and phone_last4 is not None:
            history = await open311_progress(request, conn, ref, service_request_id, phone_last4)
            if history is None:  # wrong digits answer like an unknown request
                row = None
    if row is None:
        raise Open311Error(404, f"no service request {service_request_id!r}")
    item = _request_item(ref, dict(row))
    if history is not None:
        item["status_history"] = history
    return render(request, "service_requests", "request", [item])


@router.get("/tokens/{token}.{fmt}", summary="GET service_request_id from a token")
async def get_token(
    request: Request,
    token: str,
    fmt: Format,
    jurisdiction_id: str | None = None,
    ref: Reference = Depends(get_reference),
    pool: asyncpg.Pool = Depends(get_pool),
) -> Response:
    """The request id once the request is on record (404 while it is still queued)."""
    _format(fmt)
    _check_jurisdiction(ref, jurisdiction_id)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT t.token, t.case_no, q.case_no AS stored FROM open311_tokens t "
            "LEFT JOIN case_queue q ON q.case_no = t.case_no WHERE t.token = $1",
            token,
        )
    if row is None:
        raise Open311Error(404, f"unknown token {token!r}")
    if row["stored"] is None:
        raise Open311Error(404, f"token {token!r}: the request is still being processed")
    return render(
        request,
        "service_requests",
        "request",
        [{"service_request_id": row["case_no"], "token": row["token"]}],
    )


@router.api_route(
    "/{rest:path}",
    methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
    include_in_schema=False,
)
async def not_found(rest: str) -> Response:
    raise Open311Error(404, f"no such Open311 resource: {rest}")


# ------------------------------------------------------------------ admin: client API keys


def _admin(principal: Principal) -> None:
    if principal.role != "admin":
        raise ApiError(403, "forbidden", "only an admin manages API clients")


@admin_router.get("")
async def list_api_clients(
    pool: asyncpg.Pool = Depends(get_pool),
    principal: Principal = Depends(ADMIN),
) -> dict[str, Any]:
    """API clients (keys are never shown again; only their first characters)."""
    _admin(principal)
    clients = await apikeys.list_clients(pool)
    return {"items": [c.public() for c in clients]}


@admin_router.post("", status_code=201)
async def issue_api_client(
    payload: dict[str, Any],
    pool: asyncpg.Pool = Depends(get_pool),
    principal: Principal = Depends(ADMIN),
) -> dict[str, Any]:
    """Issue a key for a client application: ``{"name": …, "contact": …}``. The answer holds
    the key — the only time it is shown."""
    _admin(principal)
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ApiError(422, "validation_error", "name: a client name (1–200 characters)")
    contact = payload.get("contact")
    if contact is not None and (not isinstance(contact, str) or len(contact) > 200):
        raise ApiError(422, "validation_error", "contact: text up to 200 characters")
    client, api_key = await apikeys.issue(pool, name.strip(), principal.user_id, contact)
    return {**client.public(), "api_key": api_key}


@admin_router.delete("/{client_id}")
async def revoke_api_client(
    client_id: str,
    pool: asyncpg.Pool = Depends(get_pool),
    principal: Principal = Depends(ADMIN),
) -> dict[str, Any]:
    """Revoke a client's key at once (POSTs with it get 403 from then on)."""
    _admin(principal)
    client = await apikeys.revoke(pool, client_id, principal.user_id)
    if client is None:
        raise ApiError(404, "not_found", f"no API client {client_id}")
    return client.public()
