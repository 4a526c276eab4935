"""Households and care visits (户情 · 六必访): the register, commands, worklist, metrics.

Commands take the synchronous path (``gateways/households.py``: one transaction for the
events and the read models; docs/households.md). A need raised on a visit becomes a case in
the same request: the household records the case number (derived from the visit's command id),
then a ``report`` command goes to JetStream like any report, its reporter naming the household
(``reporter.household``). The case's outcome shows on the household from ``case_queue``.

Access: :mod:`gateways.http.household_access` (who sees which household, what of it, who
edits); every read of details is logged in ``household_reads``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from nats.js import JetStreamContext
from pydantic import Field, ValidationError

from aggregates.commands import Command, ReportArgs, Reporter
from aggregates.errors import DomainError
from aggregates.households import (
    HOUSEHOLD_ACTIONS,
    Household,
    household_actions,
    verify_chain,
)
from aggregates.households.actions import need_key
from aggregates.households.coverage import DEFINITION_EN, DEFINITION_ZH, HOUSEHOLD_METRICS
from aggregates.households.schedule import light
from aggregates.registry import Strict
from core.clock import Clock
from core.eventlog import ExistingCases
from core.ids import KEY_MAX_LENGTH, KEY_MIN_LENGTH, case_id_for_key, case_no_for_id, new_key
from core.messaging import Topology
from core.refdata import Reference
from core.settings import Settings
from core.vocabulary import CARE_FLAG_LABELS, SENSITIVE_CARE_FLAGS, STATUS_LABELS, Status
from gateways import household_files as files
from gateways.households import HouseholdApp, import_rows, schedules_for
from gateways.http import household_access as hx
from gateways.http.deps import (
    get_clock,
    get_jetstream,
    get_pool,
    get_reference,
    get_settings,
    get_topology,
)
from gateways.http.errors import ApiError, validation_error
from gateways.http.identity import Principal, require
from gateways.http.reports import Intake, PreparedReport, publish
from projections import households as model

router = APIRouter(prefix="/v1/households", tags=["households 户情·六必访"])
readers = require(*hx.READERS, scopes=("cases:read",))
editors = require(*hx.EDITORS, scopes=("cases:act",))
centre = require(*hx.CENTRE, scopes=("cases:read",))
auditors = require("auditor", scopes=("audit:read",))
inspectors = require("inspector", "supervisor", scopes=("cases:read",))


async def app_from(
    request: Request,
    pool: asyncpg.Pool = Depends(get_pool),
    ref: Reference = Depends(get_reference),
    settings: Settings = Depends(get_settings),
) -> HouseholdApp:
    return HouseholdApp(pool, ref, schedules_for(settings.city_dir))


def _not_found(ref: str) -> ApiError:
    return ApiError(404, "not_found", f"household {ref} not found")


def _with_light(row: dict[str, Any], now: datetime, app: HouseholdApp) -> dict[str, Any]:
    row["light"] = light(row.get("due_at"), row.get("due_started_at"), row.get("due_flag"),
                         now, app.schedules, app.ref.calendar)
    return row


async def _case_outcomes(conn: asyncpg.Connection, case_nos: list[str]) -> dict[str, Any]:
    if not case_nos:
        return {}
    rows = await conn.fetch(
        "SELECT case_no, status, satisfaction, updated_at FROM case_queue "
        "WHERE case_no = ANY($1::text[])", case_nos,
    )
    return {
        r["case_no"]: {"status": r["status"],
                       "status_zh": STATUS_LABELS.get(Status(r["status"]), r["status"]),
                       "satisfaction": r["satisfaction"], "updated_at": r["updated_at"]}
        for r in rows
    }


# --------------------------------------------------------------------------- register


async def _log_list(app: HouseholdApp, principal: Principal, what: str,
                    items: list[dict[str, Any]], path: str) -> None:
    """A list that shows households is a read of them too (flags, addresses): logged."""
    if not items:
        return
    sensitive = any(i["details"] == "full" and set(i.get("flag_names") or [])
                    & SENSITIVE_CARE_FLAGS for i in items)
    async with app.pool.acquire() as conn:
        await model.log_read(conn, principal.user_id, principal.role, what,
                             [i["household_id"] for i in items], sensitive, path)


@router.get("")
async def register_list(
    request: Request,
    app: HouseholdApp = Depends(app_from),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(readers),
    grid: str | None = Query(default=None, max_length=40),
    flag: str | None = Query(default=None, max_length=40),
    q: str | None = Query(default=None, max_length=100),
    limit: int = Query(default=100, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=1_000_000),
) -> dict[str, Any]:
    """The register (户情台账) of the caller's area: one row per household, masked for the
    caller (``details``: full / limited). Filter by grid, flag (a sensitive flag only filters
    for callers who may see it) or a text in the address."""
    params: list[Any] = []
    where = [hx.sql_filter(principal, app.ref.jurisdiction, params), "NOT archived"]
    if grid:
        params.append(grid)
        where.append(f"grid = ${len(params)}")
    if flag:
        params.append(flag)
        where.append(f"${len(params)} = ANY(flag_names)")
    if q:
        params.append(f"%{q}%")
        where.append(f"address ILIKE ${len(params)}")
    async with app.pool.acquire() as conn:
        total = await conn.fetchval(
            f"SELECT count(*) FROM household_register WHERE {' AND '.join(where)}", *params)
        rows = await conn.fetch(
            f"SELECT * FROM household_register WHERE {' AND '.join(where)} "
            f"ORDER BY grid, address LIMIT {limit} OFFSET {offset}", *params)
    now = clock.now()
    items = []
    for r in rows:
        shown = hx.present(principal, dict(r))
        if flag and flag not in shown["flag_names"]:
            continue  # filtering by a flag the caller may not see reveals nothing
        shown.pop("members", None)
        shown.pop("flag_history", None)
        shown.pop("recent_visits", None)
        items.append(_with_light(shown, now, app))
    await _log_list(app, principal, "register", items, str(request.url.path))
    # A flag the caller may not see filters nothing in: the total counts what is shown.
    return {"total": len(items) if flag and len(items) < len(rows) else total,
            "households": items, "flags": CARE_FLAG_LABELS}


class RegisterIn(Strict):
    grid: str = Field(min_length=1, max_length=40)
    address: str = Field(min_length=1, max_length=200)
    address_code: str | None = Field(default=None, max_length=60)
    members: list[dict[str, Any]] = Field(default_factory=list, max_length=30)
    flags: list[dict[str, Any]] = Field(default_factory=list, max_length=6)
    inspector: str | None = Field(default=None, max_length=100)
    party_member: str | None = Field(default=None, max_length=100)
    idempotency_key: str | None = Field(
        default=None, min_length=KEY_MIN_LENGTH, max_length=KEY_MAX_LENGTH
    )


def _refuse(exc: Exception) -> ApiError:
    if isinstance(exc, ValidationError):
        return validation_error(exc.errors())
    if isinstance(exc, DomainError):
        return ApiError(exc.http_status, **exc.to_dict())
    raise exc


@router.post("", status_code=201)
async def register_household(
    body: RegisterIn,
    app: HouseholdApp = Depends(app_from),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(editors),
    idempotency_key: str | None = Header(
        default=None, min_length=KEY_MIN_LENGTH, max_length=KEY_MAX_LENGTH
    ),
) -> JSONResponse:
    """Register a household (登记). The grid team of the grid or the community's leaders."""
    if body.grid not in app.ref.jurisdiction.grids:
        raise ApiError(422, "unknown_grid", f"unknown grid {body.grid}", field="grid")
    community = app.ref.jurisdiction.grid(body.grid).parent
    if not hx.may_edit(principal, body.grid, community):
        raise ApiError(403, "outside_jurisdiction",
                       "only the grid team and community leaders register households here")
    key = idempotency_key or body.idempotency_key or new_key()
    args = body.model_dump(exclude={"idempotency_key"})
    try:
        result = await app.register(key, args, actor=principal.user_id, role=principal.role,
                                    channel=principal.channel, at=clock.now())
    except (ValidationError, DomainError) as exc:
        raise _refuse(exc) from exc
    state = result.household.state
    return JSONResponse(
        {"household_no": state.household_no, "household_id": state.household_id,
         "duplicate": not result.recorded},
        status_code=201 if result.recorded else 200,
        headers={"Location": f"/v1/households/{state.household_no}"},
    )


# --------------------------------------------------------------------------- worklist


def week_end(now: datetime) -> datetime:
    """The end of "this week" for the worklist: seven days from now (a rolling week, so a
    household due next Monday is on Friday's list)."""
    return now + timedelta(days=7)


@router.get("/worklist")
async def worklist(
    request: Request,
    app: HouseholdApp = Depends(app_from),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(inspectors),
) -> dict[str, Any]:
    """My households due a visit within seven days, overdue first (then by due time): the
    inspector's households (responsible inspector), a supervisor's community's."""
    now = clock.now()
    end = week_end(now)
    params: list[Any] = [end]
    if principal.role == "inspector":
        params.append(principal.user_id)
        params.append(list(principal.grids))
        mine = f"(inspector = ${len(params) - 1} OR grid = ANY(${len(params)}::text[]))"
    else:
        mine = hx.sql_filter(principal, app.ref.jurisdiction, params)
    async with app.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM household_register WHERE NOT archived AND due_at IS NOT NULL "
            f"AND due_at <= $1 AND {mine} ORDER BY due_at, household_no LIMIT 500", *params)
    items = []
    for r in rows:
        shown = _with_light(hx.present(principal, dict(r)), now, app)
        shown.pop("flag_history", None)
        items.append(shown)
    await _log_list(app, principal, "worklist", items, str(request.url.path))
    return {"now": now, "week_end": end, "overdue": sum(i["light"] == "red" for i in items),
            "households": items}


# --------------------------------------------------------------------------- metrics


@router.get("/coverage")
async def coverage(
    app: HouseholdApp = Depends(app_from),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(centre),
    by: Literal["grid", "community", "district", "inspector"] = "grid",
    days: int = Query(default=30, ge=1, le=366),
) -> dict[str, Any]:
    """Visit coverage (visits on time ÷ visits due) over the last ``days``, with overdue
    visits, households, flagged households and households per flag, per unit."""
    now = clock.now()
    start = now - timedelta(days=days)
    params: list[Any] = []
    where = hx.sql_filter(principal, app.ref.jurisdiction, params)
    async with app.pool.acquire() as conn:
        cover = await model.coverage(conn, by, where, list(params), start, now, now)
        counts = await model.unit_counts(conn, by, where, list(params), now)
    sensitive_ok = hx.sees_sensitive_counts(principal, app.ref.jurisdiction)
    units = []
    names = {**app.ref.jurisdiction.nodes, **app.ref.jurisdiction.grids}
    for c in counts:
        on_time, due = cover.get(c["unit"], (0, 0))
        node = names.get(c["unit"]) if c["unit"] else None
        units.append({
            **c, "per_flag": hx.present_counts(c["per_flag"], sensitive_ok),
            "name_zh": getattr(node, "name_zh", None),
            "name_en": getattr(node, "name_en", None),
            "visits_due": due, "visits_on_time": on_time,
            "coverage": round(on_time / due, 4) if due else None,
        })
    total_due = sum(u["visits_due"] for u in units)
    total_on_time = sum(u["visits_on_time"] for u in units)
    return {
        "by": by, "from": start, "to": now, "units": units,
        "total": {"visits_due": total_due, "visits_on_time": total_on_time,
                  "coverage": round(total_on_time / total_due, 4) if total_due else None,
                  "overdue": sum(u["overdue"] for u in units)},
        # The definitions (aggregates/households/coverage.py, also in GET /v1/metrics/
        # definitions): "definition" keeps the older shape, "metrics" is the whole table.
        "definition": {
            "coverage": DEFINITION_ZH,
            "coverage_en": DEFINITION_EN,
            "overdue": f"{HOUSEHOLD_METRICS['overdue']['zh']}："
                       f"{HOUSEHOLD_METRICS['overdue']['note_zh']}",
            "overdue_en": HOUSEHOLD_METRICS["overdue"]["note_en"],
            "warning": f"{HOUSEHOLD_METRICS['warning']['zh']}："
                       f"{HOUSEHOLD_METRICS['warning']['note_zh']}",
            "warning_en": HOUSEHOLD_METRICS["warning"]["note_en"],
        },
        "metrics": [{"key": k, **d} for k, d in HOUSEHOLD_METRICS.items()],
        "sensitive_counts_shown": sensitive_ok,
    }


@router.get("/overdue-map")
async def overdue_map(
    app: HouseholdApp = Depends(app_from),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(centre),
) -> dict[str, Any]:
    """Overdue visits per grid for the map layer: counts only, never addresses."""
    params: list[Any] = []
    where = hx.sql_filter(principal, app.ref.jurisdiction, params)
    async with app.pool.acquire() as conn:
        counts = await model.unit_counts(conn, "grid", where, params, clock.now())
    return {"grids": [{"grid": c["unit"], "overdue": c["overdue"], "warning": c["warning"],
                       "flagged": c["flagged"]} for c in counts]}


@router.get("/reads")
async def read_log(
    app: HouseholdApp = Depends(app_from),
    principal: Principal = Depends(auditors),
    household: str | None = Query(default=None, max_length=60),
    reader: str | None = Query(default=None, max_length=100,
                               description="the reader's user id"),
    since: datetime | None = Query(default=None, description="reads at or after"),
    until: datetime | None = Query(default=None, description="reads before"),
    limit: int = Query(default=200, ge=1, le=2000),
) -> dict[str, Any]:
    """Who read which household's details, when, and whether sensitive facts were shown
    (newest first); each read names its households (number, address, grid) for the page."""
    async with app.pool.acquire() as conn:
        hid = None
        if household:
            row = await app.find(conn, household)
            if row is None:
                raise _not_found(household)
            hid = row["household_id"]
        rows = await conn.fetch(
            "SELECT id, at, user_id, role, what, household_ids, sensitive_shown, path "
            "FROM household_reads WHERE ($1::text IS NULL OR $1 = ANY(household_ids)) "
            "AND ($2::text IS NULL OR user_id = $2) AND ($3::timestamptz IS NULL OR at >= $3) "
            "AND ($4::timestamptz IS NULL OR at < $4) "
            f"ORDER BY id DESC LIMIT {limit}", hid, reader, since, until)
        ids = sorted({i for r in rows for i in r["household_ids"]})
        named = {r["household_id"]: dict(r) for r in await conn.fetch(
            "SELECT household_id, household_no, address, grid FROM household_register "
            "WHERE household_id = ANY($1::text[])", ids)}
    reads = []
    for r in rows:
        item = dict(r)
        item["households"] = [named.get(i, {"household_id": i, "household_no": None})
                              for i in r["household_ids"]]
        reads.append(item)
    return {"reads": reads}


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV = "text/csv; charset=utf-8"


@router.get("/export", response_class=Response,
            responses={200: {"content": {XLSX: {}, CSV: {}},
                             "description": "the register as a spreadsheet"}})
async def export(
    request: Request,
    app: HouseholdApp = Depends(app_from),
    principal: Principal = Depends(readers),
    grid: str | None = Query(default=None, max_length=40),
    format: Literal["csv", "xlsx"] = "xlsx",
) -> Response:
    """The register of the caller's area as xlsx / csv, masked as on screen; logged."""
    params: list[Any] = []
    where = [hx.sql_filter(principal, app.ref.jurisdiction, params), "NOT archived"]
    if grid:
        params.append(grid)
        where.append(f"grid = ${len(params)}")
    async with app.pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(f"SELECT * FROM household_register WHERE {' AND '.join(where)} "
                                "ORDER BY grid, address", *params)
        shown = [hx.present(principal, dict(r)) for r in rows]
        await model.log_read(conn, principal.user_id, principal.role, "export",
                             [r["household_id"] for r in rows],
                             any(s["details"] == "full" for s in shown), str(request.url.path))
    data = files.write_table(files.EXPORT_COLUMNS, (files.export_cells(s) for s in shown),
                             format)
    media = CSV if format == "csv" else XLSX
    return Response(data, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="households.{format}"'})


@router.post("/import")
async def import_register(
    request: Request,
    app: HouseholdApp = Depends(app_from),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(editors),
    format: Literal["csv", "xlsx"] = "xlsx",
) -> dict[str, Any]:
    """Import a register (the request body is the .xlsx or .csv file; columns in
    docs/households.md). Rows of grids the caller may not edit are refused with the others
    that cannot be taken, each with its row number and reason; the same file again registers
    nothing twice."""
    data = await request.body()
    try:
        table = files.read_table(data, f"upload.{format}")
    except Exception as exc:  # a file openpyxl / csv cannot read at all
        raise ApiError(422, "unreadable_file", f"无法读取 {format} 文件: {exc}") from exc
    parsed = files.parse_import(table, app.ref.jurisdiction)
    j = app.ref.jurisdiction

    def mine(args: dict[str, Any]) -> str | None:
        grid = args["grid"]
        if hx.may_edit(principal, grid, j.grid(grid).parent):
            return None
        return f"网格 {grid} 不在您可编辑的范围内"

    made, existing, refused = await import_rows(
        app, parsed.rows, actor=principal.user_id, role=principal.role, channel="import",
        at=clock.now(), check=mine)
    rejected = sorted([*parsed.rejected, *refused], key=lambda r: r["line"])
    return {"registered": made, "already_there": existing, "rejected": [
        {"line": r["line"], "reason": r["reason"]} for r in rejected]}


# --------------------------------------------------------------------------- one household


async def _visible(app: HouseholdApp, conn: asyncpg.Connection, principal: Principal,
                   ref: str) -> dict[str, Any]:
    row = await app.find(conn, ref)
    if row is None or not hx.can_see(principal, row, app.ref.jurisdiction):
        raise _not_found(ref)
    return row


@router.get("/{ref}")
async def detail(
    ref: str,
    request: Request,
    app: HouseholdApp = Depends(app_from),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(readers),
) -> dict[str, Any]:
    """One household (by number or id) as the caller may see it, with its cases' outcomes
    and what the caller may do; the read is logged."""
    async with app.pool.acquire() as conn, conn.transaction():
        row = await _visible(app, conn, principal, ref)
        shown = _with_light(hx.present(principal, row), clock.now(), app)
        outcomes = await _case_outcomes(conn, [c["case_no"] for c in shown["cases"]])
        await model.log_read(conn, principal.user_id, principal.role, "detail",
                             [row["household_id"]], shown["details"] == "full",
                             str(request.url.path))
    for case in shown["cases"]:
        case["outcome"] = outcomes.get(case["case_no"])
    shown["allowed_actions"] = (
        [a for a in household_actions(principal.role) if a != "register"]
        if hx.may_edit(principal, row["grid"], row["community"]) and not row["archived"]
        else []
    )
    return shown


@router.get("/{ref}/history")
async def history(
    ref: str,
    request: Request,
    app: HouseholdApp = Depends(app_from),
    principal: Principal = Depends(readers),
) -> dict[str, Any]:
    """The household's events with the hash chain (need-to-know callers and auditors)."""
    async with app.pool.acquire() as conn, conn.transaction():
        row = await _visible(app, conn, principal, ref)
        if not hx.need_to_know(principal, row):
            raise ApiError(403, "need_to_know",
                           "the household's history is for its grid team, community "
                           "leaders and auditors")
        events = await model.load_events(conn, row["household_id"])
        await model.log_read(conn, principal.user_id, principal.role, "history",
                             [row["household_id"]], True, str(request.url.path))
    return {"household_no": row["household_no"], "broken_at": verify_chain(events),
            "events": [{"version": e.version, "type": e.type, "at": e.at, "data": e.data,
                        "prev_hash": e.prev_hash, "hash": e.hash} for e in events]}


class ActionIn(Strict):
    args: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(
        default=None, min_length=KEY_MIN_LENGTH, max_length=KEY_MAX_LENGTH
    )


@router.post("/{ref}/actions/{action}")
async def run_action(
    ref: str,
    action: str,
    body: ActionIn,
    app: HouseholdApp = Depends(app_from),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(editors),
    js: JetStreamContext = Depends(get_jetstream),
    topo: Topology = Depends(get_topology),
    idempotency_key: str | None = Header(
        default=None, min_length=KEY_MIN_LENGTH, max_length=KEY_MAX_LENGTH
    ),
) -> dict[str, Any]:
    """Run a household action (``set_flag``, ``lift_flag``, ``assign``, ``update_details``,
    ``record_visit``, ``raise_need``, ``archive``). A visit's needs and a raised need become
    cases at once (``cases`` in the answer). Send the same idempotency key again after a
    lost answer: nothing is recorded twice and the same case numbers come back."""
    spec = HOUSEHOLD_ACTIONS.get(action)
    if spec is None or spec.creates:
        raise ApiError(404, "unknown_action", f"unknown household action {action}",
                       allowed=[a for a in HOUSEHOLD_ACTIONS if a != "register"])
    key = idempotency_key or body.idempotency_key or new_key()
    async with app.pool.acquire() as conn:
        row = await _visible(app, conn, principal, ref)

    def check(household: Household | None) -> None:
        if household is None:
            raise _not_found(ref)
        s = household.state
        if not hx.may_edit(principal, s.grid, s.community):
            raise ApiError(403, "outside_jurisdiction",
                           "only the household's grid team and community leaders may")

    at = clock.now()
    try:
        result = await app.run(row["household_id"], action, body.args, actor=principal.user_id,
                               role=principal.role, channel=principal.channel, at=at,
                               command_id=f"{action}:{key}", check=check)
    except (ValidationError, DomainError) as exc:
        raise _refuse(exc) from exc
    state = result.household.state
    cases = await _publish_needs(app, js, topo, principal, result.household,
                                 f"{action}:{key}", at)
    return {"household_no": state.household_no, "recorded": result.recorded,
            "version": state.version, "due_at": state.due, "cases": cases,
            "light": light(state.due, state.due_started_at, state.due_flag, at,
                           app.schedules, app.ref.calendar)}


async def _publish_needs(
    app: HouseholdApp, js: JetStreamContext, topo: Topology, principal: Principal,
    household: Household, command_id: str, at: datetime,
) -> list[dict[str, Any]]:
    """Report the needs the command recorded (again, after a retry: same keys, same cases)."""
    s = household.state
    needs = [c for c in s.cases if c["case_no"] in {
        case_no_for_id(case_id_for_key(need_key(command_id, i))) for i in range(5)}]
    out = []
    intake = Intake(app.ref, app.pool, js, topo, ExistingCases(app.pool))  # publish only
    for i, need in enumerate(needs):
        key = need_key(command_id, i)
        case_id = case_id_for_key(key)
        args = ReportArgs.model_validate({
            "category": need["category"], "grid": s.grid, "community": s.community,
            "district": s.district, "address": s.address[:200],
            "description": need["description"],
            "reporter": Reporter(id=principal.user_id, type="inspector",
                                 household=s.household_id),
            "source": "inspector_app",
        })
        command = Command(
            command_id=key, verb="report", case_id=str(case_id),
            case_no=case_no_for_id(case_id), partition=s.district, actor=principal.user_id,
            role="inspector" if principal.role == "inspector" else "system",
            channel="household_visit", at=at, args=args.model_dump(mode="json"),
        )
        await publish(intake, PreparedReport(command, key, s.grid, s.district))
        out.append({"case_no": command.case_no, "category": need["category"]})
    return out
