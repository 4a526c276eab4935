"""The auditor's API (审计): histories from the event store, state at any moment, integrity,
exports. Read-only, auditors only (role ``auditor`` with scope ``audit:read``); every request
is recorded in ``audit_reads`` by the access rule (``gateways.http.identity.authorize``).

* ``GET /v1/audit/cases?q=&reporter=&grid=&date=`` — find cases (number, reporter name or
  phone, grid, day reported);
* ``GET /v1/audit/cases/{no}/history`` — every event (actor, role, channel, time, reason,
  fields changed, hashes, log position) plus the case's integrity check;
* ``GET /v1/audit/cases/{no}/state?at=…|version=…`` — the state at a moment / version;
* ``GET /v1/audit/cases/{no}/diff?from_version=&to_version=`` — what changed between two;
* ``GET /v1/audit/cases/{no}/verify`` — both chains for one case;
* ``GET /v1/audit/activity?grid=|department=|actor=&since=&until=`` — a grid's, a
  department's or a person's events over a period;
* ``GET /v1/audit/export.jsonl`` / ``export.csv`` with ``case_no`` or ``grid`` /
  ``department`` / ``actor`` and ``since`` / ``until`` (nothing = everything) — streamed;
  ``?access_token=`` is accepted so a plain link can download;
* ``GET /v1/audit/heads`` — the sealed head of each partition's running chain;
* ``GET /v1/audit/verify?partition=`` — verify whole partitions (for big stores use
  ``gridctl audit verify``, which runs in parallel and shows progress);
* ``GET /v1/audit/reads`` — the read log: which auditor looked at what, when.

Everything reads PostgreSQL with psycopg in worker threads, in read-only transactions on the
audit read side's small pool (``projections.audit.pool``, closed with the runtime); exports and
whole-store verification open their own connections (long reads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path as FilePath
from typing import Any, TypeVar

import asyncpg
import orjson
import psycopg
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from psycopg_pool import PoolTimeout

from core.clock import Clock
from core.refdata import Reference
from core.settings import Settings
from core.vocabulary import STATUS_LABELS, Status
from gateways.http.deps import (
    AuditPool,
    get_audit_pool,
    get_clock,
    get_database_url,
    get_pool,
    get_reference,
    get_settings,
)
from gateways.http.errors import ApiError
from gateways.http.identity import Principal, public, require
from projections.audit import export as exporting
from projections.audit import history as hist
from projections.audit import search
from projections.audit import verify as verifying
from projections.audit.chain import CHAIN_ALGORITHM

router = APIRouter(prefix="/v1/audit", tags=["audit 审计"])
#: The auditor page: public HTML / JS / CSS (no data; every datum comes from the API above).
pages = APIRouter(tags=["pages 页面"], include_in_schema=False)
PAGE_DIR = FilePath(__file__).resolve().parent.parent / "web_audit"
PAGE_ASSETS = {"audit.js": "text/javascript", "audit.css": "text/css"}

auditor = require("auditor", scopes=("audit:read",))
#: Exports may be plain links: the token may come as ``?access_token=``.
auditor_link = require("auditor", scopes=("audit:read",), query_token=True)

T = TypeVar("T")

CaseNo = Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9-]+$",
              description="case number (案件编号), e.g. GD-7K3Q-M9XA-2BCD")


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ApiError(422, "validation_error", f"{name} must carry a timezone (…Z or +08:00)",
                       field=name)
    return value


@dataclass(frozen=True)
class Store:
    """What the audit routes read: the event store's schema and partitions, through the
    auditors' read-only pool (``projections.audit.pool``, opened on first use)."""

    open_pool: AuditPool
    database_url: str
    schema: str
    partitions: list[str]


async def audit_store(
    open_pool: AuditPool = Depends(get_audit_pool),
    database_url: str = Depends(get_database_url),
    settings: Settings = Depends(get_settings),
    ref: Reference = Depends(get_reference),
) -> Store:
    return Store(open_pool, database_url, settings.db_schema, ref.partitions)


async def _db(store: Store, fn: Callable[[psycopg.Connection[Any], str], T]) -> T:
    """Run ``fn(conn, schema)`` in a thread on a read-only autocommit connection of the
    audit pool (``projections.audit.pool``)."""

    def work() -> T:
        pool = store.open_pool()
        for attempt in (1, 2):
            used: psycopg.Connection[Any] | None = None
            try:
                with pool.connection() as conn:
                    used = conn
                    return fn(conn, store.schema)
            except psycopg.OperationalError as exc:
                # A pooled connection the server dropped (restart, idle timeout) fails once;
                # the pool discards it and the read is repeated on a fresh one.
                if attempt == 2 or used is None or not used.broken:
                    raise ConnectionError(f"audit database: {exc}") from exc
        raise AssertionError("unreachable")

    try:
        return await asyncio.to_thread(work)
    except hist.NotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except PoolTimeout as exc:  # every audit connection busy (or none can be made): 503
        raise ConnectionError(f"audit database: {exc}") from exc


def _history(
    store: Store, case_no: str, answer: Callable[[hist.CaseHistory], dict[str, Any]]
) -> Callable[[psycopg.Connection[Any], str], dict[str, Any]]:
    """Read a case's history and compute ``answer`` from it, both in the worker thread (the
    replay is CPU work: it must not run on the event loop)."""

    def load(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
        return answer(hist.case_history(conn, schema, case_no, store.partitions))

    return load


# --------------------------------------------------------------------------- finding cases


@router.get("/cases")
async def find_cases(
    q: str | None = Query(default=None, max_length=40, description="case number or its start"),
    reporter: str | None = Query(default=None, max_length=100,
                                 description="reporter name or phone (part of)"),
    grid: str | None = Query(default=None, max_length=40),
    day: date | None = Query(default=None, alias="date",
                             description="day reported (Beijing time), YYYY-MM-DD"),
    limit: int = Query(default=50, ge=1, le=500),
    pool: asyncpg.Pool = Depends(get_pool),
    store: Store = Depends(audit_store),
    principal: Principal = Depends(auditor),
) -> dict[str, Any]:
    """Find cases by number, reporter, grid or date (the queue is the index; the history
    itself always comes from the event store)."""
    async with pool.acquire() as conn:
        items = await search.find_in_queue(conn, q=q, reporter=reporter, grid=grid, day=day,
                                           limit=limit)
    for row in items:
        row["status_zh"] = STATUS_LABELS.get(Status(row["status"]), row["status"])
    if not items and q and len(q) >= 17:  # a full number the index does not (yet) know
        try:
            ref = await _db(store, lambda c, s: hist.locate_case(c, s, q.strip().upper(),
                                                                    store.partitions))
            items.append({"case_no": ref.case_no, "status": None, "source": "event_store"})
        except ApiError:
            pass
    return {"items": items, "count": len(items)}


# --------------------------------------------------------------------------- one case


@router.get("/cases/{case_no}/history", response_model=dict[str, Any])
async def case_history(
    case_no: str = CaseNo,
    store: Store = Depends(audit_store),
    principal: Principal = Depends(auditor),
) -> Response:
    """The whole ordered history from the event store: every event with who (actor, role),
    how (channel), when, why (reason), status from → to, the fields it changed, its hashes
    and log position; the current state; and the case's integrity."""

    def load(conn: psycopg.Connection[Any], schema: str) -> bytes | dict[str, Any]:
        out = hist.history_report(conn, schema, case_no, store.partitions)
        try:  # rendered in the worker thread; orjson writes what json.dumps would (parsed)
            return orjson.dumps(out)
        except (TypeError, orjson.JSONEncodeError):  # e.g. an integer beyond 64 bits
            return out

    body = await _db(store, load)
    if isinstance(body, bytes):
        return Response(body, media_type="application/json")
    return JSONResponse(body)


@router.get("/cases/{case_no}/state")
async def case_state(
    case_no: str = CaseNo,
    at: datetime | None = Query(default=None, description="a moment (ISO 8601 with zone)"),
    version: int | None = Query(default=None, ge=1, le=1_000_000),
    store: Store = Depends(audit_store),
    principal: Principal = Depends(auditor),
) -> dict[str, Any]:
    """The case state after the last event at or before ``at`` (or at ``version``; default:
    now), by replaying the stored events through the aggregate."""
    if at is not None and version is not None:
        raise ApiError(422, "validation_error", "give at or version, not both")
    when = _aware(at, "at")
    return await _db(store, _history(store, case_no,
                                       lambda h: h.state_at(at=when, version=version)))


@router.get("/cases/{case_no}/diff")
async def case_diff(
    case_no: str = CaseNo,
    from_version: int = Query(ge=0, le=1_000_000, description="0 = before the report"),
    to_version: int = Query(ge=0, le=1_000_000),
    store: Store = Depends(audit_store),
    principal: Principal = Depends(auditor),
) -> dict[str, Any]:
    """Fields that differ between two versions, and the events in between."""
    return await _db(store, _history(store, case_no,
                                       lambda h: h.diff(from_version, to_version)))


@router.get("/cases/{case_no}/verify")
async def case_verify(
    case_no: str = CaseNo,
    store: Store = Depends(audit_store),
    principal: Principal = Depends(auditor),
) -> dict[str, Any]:
    """Both chains for one case: content ↔ hash, prev_hash links, and each event against its
    sealed row in the running log chain."""

    def check(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
        case = hist.load_case(conn, schema, case_no, store.partitions, sealed=True)
        return {"case_no": case.ref.case_no, "partition": case.ref.partition,
                **verifying.check_case(case.ref.partition, case.rows, case.sealed_rows,
                                       case.head)}

    return await _db(store, check)


# --------------------------------------------------------------------------- activity


@router.get("/activity")
async def activity(
    grid: str | None = Query(default=None, max_length=40),
    department: str | None = Query(default=None, max_length=80),
    actor: str | None = Query(default=None, max_length=100,
                              description="a user id, e.g. an inspector 网格员"),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(default=1000, ge=1, le=10_000),
    store: Store = Depends(audit_store),
    ref: Reference = Depends(get_reference),
    principal: Principal = Depends(auditor),
) -> dict[str, Any]:
    """Events of a grid, a department or a person over ``since <= at < until``."""
    if sum(x is not None for x in (grid, department, actor)) != 1:
        raise ApiError(422, "validation_error", "give exactly one of grid, department, actor")
    lo, hi = _aware(since, "since"), _aware(until, "until")
    partitions = store.partitions
    j = ref.jurisdiction
    if grid is not None:
        if grid not in j.grids:
            raise ApiError(422, "unknown_grid", f"unknown grid {grid}", field="grid")
        partitions = [j.partition_of(grid)]

    def run(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
        return hist.activity(conn, schema, partitions, grid=grid, department=department,
                             actor=actor, since=lo, until=hi, limit=limit)

    return await _db(store, run)


# --------------------------------------------------------------------------- exports


def _scope(
    case_no: str | None, grid: str | None, department: str | None,
    actor: str | None, since: datetime | None, until: datetime | None,
) -> exporting.ExportScope:
    scope = exporting.ExportScope(
        case_no=case_no or None, grid=grid or None, department=department or None,
        actor=actor or None, since=_aware(since, "since"), until=_aware(until, "until"),
    )
    try:
        scope.validate()
    except ValueError as exc:
        raise ApiError(422, "validation_error", str(exc)) from exc
    return scope


async def _stream(
    store: Store, scope: exporting.ExportScope, principal: Principal, clock: Clock,
    fmt: str,
) -> StreamingResponse:
    if scope.case_no:  # fail with 404 before the response starts
        case_no = scope.case_no
        await _db(store, lambda c, s: hist.locate_case(c, s, case_no, store.partitions))
    records: Iterator[dict[str, Any]] = exporting.export_records(
        store.database_url, store.schema, scope,
        exported_by=principal.user_id, now=clock.now(),
    )
    stamp = clock.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"audit-{scope.case_no or scope.kind}-{stamp}.{fmt}"
    body: Iterator[Any] = exporting.jsonl(records) if fmt == "jsonl" else \
        exporting.csv_rows(records)
    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(
        body, media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"',
                 "Cache-Control": "no-store"},
    )


@router.get("/export.jsonl", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "header, one line per event, trailer"},
                       404: {"description": "no such case (case_no)"}})
async def export_jsonl(
    case_no: str | None = Query(default=None, max_length=40, pattern=r"^[A-Za-z0-9-]+$"),
    grid: str | None = Query(default=None, max_length=40),
    department: str | None = Query(default=None, max_length=80),
    actor: str | None = Query(default=None, max_length=100),
    since: datetime | None = None,
    until: datetime | None = None,
    store: Store = Depends(audit_store),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(auditor_link),
) -> StreamingResponse:
    """Events with their hashes and running-chain values as JSON lines, verifiable offline
    with ``tools/verify_export.py`` (format: docs/auditing.md)."""
    scope = _scope(case_no, grid, department, actor, since, until)
    return await _stream(store, scope, principal, clock, "jsonl")


@router.get("/export.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "one row per event"},
                       404: {"description": "no such case (case_no)"}})
async def export_csv(
    case_no: str | None = Query(default=None, max_length=40, pattern=r"^[A-Za-z0-9-]+$"),
    grid: str | None = Query(default=None, max_length=40),
    department: str | None = Query(default=None, max_length=80),
    actor: str | None = Query(default=None, max_length=100),
    since: datetime | None = None,
    until: datetime | None = None,
    store: Store = Depends(audit_store),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(auditor_link),
) -> StreamingResponse:
    """The same events as CSV for spreadsheets (verify with the JSONL export)."""
    scope = _scope(case_no, grid, department, actor, since, until)
    return await _stream(store, scope, principal, clock, "csv")


# --------------------------------------------------------------------------- integrity


@router.get("/heads")
async def heads(
    store: Store = Depends(audit_store),
    principal: Principal = Depends(auditor),
) -> dict[str, Any]:
    """Each partition's sealed chain head and how many stored events are not sealed yet."""
    partitions = await _db(store, verifying.sealed_heads)
    return {"algorithm": CHAIN_ALGORITHM, "partitions": partitions}


@router.get("/verify")
async def verify(
    partition: list[str] | None = Query(default=None, max_length=50),
    store: Store = Depends(audit_store),
    principal: Principal = Depends(auditor),
) -> dict[str, Any]:
    """Recompute both chains over whole partitions (default: all) and name the first
    altered, removed, inserted or reordered event."""
    for p in partition or ():
        if not p.isalnum() or len(p) > 20:
            raise ApiError(422, "validation_error", f"invalid partition {p!r}", field="partition")
    report = await asyncio.to_thread(
        verifying.verify_store, store.database_url, store.schema,
        partition or None,
    )
    return report.as_dict()


@router.get("/reads")
async def reads(
    case_no: str | None = Query(default=None, max_length=40),
    user: str | None = Query(default=None, max_length=100),
    since: datetime | None = None,
    limit: int = Query(default=200, ge=1, le=5000),
    pool: asyncpg.Pool = Depends(get_pool),
    principal: Principal = Depends(auditor),
) -> dict[str, Any]:
    """The auditors' read log (审计查阅记录): who looked at what, when (newest first)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("case_no", case_no), ("user_id", user)):
        if value:
            params.append(value)
            where.append(f"{column} = ${len(params)}")
    if since is not None:
        params.append(_aware(since, "since"))
        where.append(f"at >= ${len(params)}")
    params.append(limit)
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT to_regclass('audit_reads')"):
            return {"items": [], "count": 0}
        records = await conn.fetch(
            "SELECT at, user_id, role, method, path, query, case_no FROM audit_reads "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            f"ORDER BY at DESC, id DESC LIMIT ${len(params)}",
            *params,
        )
    return {"items": [dict(r) for r in records], "count": len(records)}


# --------------------------------------------------------------------------- the page


@pages.get("/audit", dependencies=[Depends(public)])
async def audit_page() -> FileResponse:
    """The auditor page (审计): find, replay, verify, export."""
    return FileResponse(PAGE_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@pages.get("/audit/assets/{name}", dependencies=[Depends(public)])
async def audit_asset(name: str = Path(max_length=40)) -> FileResponse:
    if name not in PAGE_ASSETS:
        raise ApiError(404, "not_found", f"no asset {name}")
    return FileResponse(PAGE_DIR / name, media_type=PAGE_ASSETS[name],
                        headers={"Cache-Control": "no-cache"})
