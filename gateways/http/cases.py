"""The case queue and case commands: ``GET /v1/cases``, ``GET /v1/cases/{no}``,
``POST /v1/cases/{no}/actions/{verb}``.

Reads come from the read models (projections). Commands go through NATS to the worker that
owns the case's partition; the gateway waits (briefly) for the worker's outcome on a reply
subject so that a dispatcher gets 200, or 409 with the allowed actions, at once.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from fastapi import APIRouter, Body, Depends, Header, Path, Query
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from aggregates.actions import PUBLIC_ACTIONS
from aggregates.commands import Command
from core.clock import Clock
from core.ids import KEY_MAX_LENGTH, KEY_MIN_LENGTH, new_key
from core.refdata import Reference
from core.vocabulary import STATUS_LABELS, Priority, Status
from gateways.commandbus import CommandBus, QueueUnavailable
from gateways.http import photos as photo_api
from gateways.http.access import CASE_ACTORS, CASE_READERS, can_see, case_filter, case_not_found
from gateways.http.deps import (
    ReadConnection,
    get_clock,
    get_command_bus,
    get_pool,
    get_reads,
    get_reference,
)
from gateways.http.errors import ApiError, validation_error
from gateways.http.identity import Principal, require
from gateways.http.privacy import mask_case

router = APIRouter(prefix="/v1", tags=["cases 案件"])
#: Readers see cases in their jurisdiction only (others: 404); actors run commands on them.
case_reader = require(*CASE_READERS, scopes=("cases:read",))
case_actor = require(*CASE_ACTORS, scopes=("cases:act",))

LIST_COLUMNS = (
    "case_no, status, category, kind, grid, community, district, level, node, department, "
    "priority, description, address, lat, lon, reporter_name, reporter_phone, source, channel, "
    "reported_at, updated_at, due_at, due_step, warning, overdue, supervised, escalations, "
    "rework_count, return_count, extension_count, satisfaction, duplicate_of, version, offers"
)

# Which error code of a refused command maps to which HTTP status.
ERROR_STATUS = {
    "illegal_transition": 409,
    "not_permitted": 403,
    "invalid_command": 422,
    "not_found": 404,
}
#: What a person may ask for here: the registry's public actions (closed-loop order).
PUBLIC_VERBS: list[str] = list(PUBLIC_ACTIONS)


def _encode_cursor(reported_at: datetime, case_no: str) -> str:
    raw = orjson.dumps([reported_at.isoformat(), case_no])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, case_no = orjson.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(at), str(case_no)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "invalid_cursor", "cursor is not one this API issued") from exc


def offered_to(row: dict[str, Any], principal: Principal) -> list[str]:
    """What the caller may do to the case now: the aggregate's own answer, recorded in the
    case's last event (``summary.offers``), for the caller's role. Jurisdiction is checked
    before a row is shown at all."""
    offers: dict[str, list[str]] = row.pop("offers", None) or {}
    return [a for a in offers.get(principal.role, []) if a in PUBLIC_VERBS]


def _row(record: Any, principal: Principal) -> dict[str, Any]:
    row = dict(record)
    row["status_zh"] = STATUS_LABELS.get(Status(row["status"]), row["status"])
    row["allowed_actions"] = offered_to(row, principal)
    return row


@router.get("/cases", responses={400: {"description": "invalid cursor"}})
async def list_cases(
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    principal: Principal = Depends(case_reader),
    status: list[str] | None = Query(default=None, max_length=20),
    district: str | None = Query(default=None, max_length=40),
    community: str | None = Query(default=None, max_length=40),
    grid: str | None = Query(default=None, max_length=40),
    department: str | None = Query(default=None, max_length=80),
    priority: Priority | None = None,
    action: str | None = Query(
        default=None, max_length=40,
        description="only cases on which the caller is offered this action now "
        "(e.g. return_visit 回访, verify_pass 核查)",
    ),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=400),
) -> dict[str, Any]:
    """The queue, newest first, filtered; follow ``next_cursor`` for the next page."""
    j = ref.jurisdiction
    params: list[Any] = []
    where: list[str] = [case_filter(principal, j, params)]
    if status:
        unknown = [s for s in status if s not in {x.value for x in Status}]
        if unknown:
            raise ApiError(
                422,
                "unknown_status",
                f"unknown status {unknown[0]}",
                statuses=[s.value for s in Status],
            )
        params.append(status[0] if len(status) == 1 else status)
        # One status as "=": lets PostgreSQL walk the (…, status, reported_at, case_no) index
        # in order instead of sorting every match (p99 at a million cases).
        where.append(
            f"status = ${len(params)}" if len(status) == 1 else f"status = ANY(${len(params)})"
        )
    for column, value in (
        ("district", district),
        ("community", community),
        ("grid", grid),
        ("department", department),
        ("priority", priority),
    ):
        if value is not None:
            params.append(value)
            where.append(f"{column} = ${len(params)}")
    if action is not None:
        if action not in PUBLIC_VERBS:
            raise ApiError(422, "unknown_action", f"unknown action {action!r}",
                           actions=PUBLIC_VERBS)
        params.extend([principal.role, action])
        where.append(f"(offers -> ${len(params) - 1}) ? ${len(params)}")
    if cursor:
        at, case_no = _decode_cursor(cursor)
        params.extend([at, case_no])
        where.append(f"(reported_at, case_no) < (${len(params) - 1}, ${len(params)})")
    params.append(limit + 1)
    sql = (
        f"SELECT {LIST_COLUMNS} FROM case_queue "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY reported_at DESC, case_no DESC LIMIT ${len(params)}"
    )
    async with reads() as conn:
        records = await conn.fetch(sql, *params)
    items = [mask_case(principal, _row(r, principal), j) for r in records[:limit]]
    next_cursor = None
    if len(records) > limit:
        last = records[limit - 1]
        next_cursor = _encode_cursor(last["reported_at"], last["case_no"])
    return {"items": items, "next_cursor": next_cursor, "count": len(items)}


async def _case_row(
    pool: asyncpg.Pool, ref: Reference, case_no: str, principal: Principal
) -> dict[str, Any]:
    """The case's row; 404 when it does not exist or lies outside the caller's jurisdiction."""
    async with pool.acquire() as conn:
        record = await conn.fetchrow("SELECT * FROM case_queue WHERE case_no = $1", case_no)
    if record is None or not can_see(principal, dict(record), ref.jurisdiction):
        raise case_not_found(case_no)
    return dict(record)


@router.get("/cases/{case_no}")
async def get_case(
    case_no: str = Path(max_length=40),
    pool: asyncpg.Pool = Depends(get_pool),
    ref: Reference = Depends(get_reference),
    principal: Principal = Depends(case_reader),
) -> dict[str, Any]:
    """One case with its timeline and the actions the caller may take now."""
    row = await _case_row(pool, ref, case_no, principal)
    async with pool.acquire() as conn:
        timeline = await conn.fetch(
            "SELECT version, type, at, actor, role, channel, reason, data FROM case_timeline "
            "WHERE case_id = $1 ORDER BY version",
            row["case_id"],
        )
    row["status_zh"] = STATUS_LABELS.get(Status(row["status"]), row["status"])
    row["case_id"] = str(row["case_id"])
    row["timeline"] = [dict(t) for t in timeline]
    row["allowed_actions"] = offered_to(row, principal)
    return mask_case(principal, row, ref.jurisdiction)


@router.post(
    "/cases/{case_no}/actions/{verb}",
    responses={
        200: {"description": "done"},
        202: {"description": "queued, outcome pending"},
        403: {"description": "role may not"},
        404: {"description": "no such case"},
        409: {"description": "illegal in the case's state"},
        422: {"description": "invalid arguments"},
    },
)
async def act_on_case(
    case_no: str = Path(max_length=40),
    verb: str = Path(max_length=40),
    args: dict[str, Any] = Body(default_factory=dict),
    pool: asyncpg.Pool = Depends(get_pool),
    ref: Reference = Depends(get_reference),
    bus: CommandBus = Depends(get_command_bus),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(case_actor),
    idempotency_key: str | None = Header(
        default=None, min_length=KEY_MIN_LENGTH, max_length=KEY_MAX_LENGTH
    ),
) -> JSONResponse:
    """Run a lifecycle command (file 立案, dispatch 派遣, …) and return its outcome.

    Invalid arguments get the same 422 ``validation_error`` body as an invalid report; photo
    references that were never uploaded (or differ from the upload) get 422 ``unknown_photo``
    / ``photo_mismatch``, and nothing is queued."""
    if verb not in PUBLIC_VERBS:
        raise ApiError(404, "unknown_action", f"unknown action {verb!r}", actions=PUBLIC_VERBS)
    row = await _case_row(pool, ref, case_no, principal)
    if verb == "mark_duplicate" and isinstance(args.get("of_case_no"), str):
        original = await _case_row(pool, ref, args["of_case_no"], principal)
        args = {**args, "of_case_id": str(original["case_id"])}
    try:
        command = Command(
            command_id=idempotency_key or new_key(),
            verb=verb,  # type: ignore[arg-type]
            case_id=str(row["case_id"]),
            case_no=case_no,
            partition=row["partition"],
            actor=principal.user_id,
            role=principal.role,
            channel=principal.channel,
            at=clock.now(),
            args=args,
        )
        parsed = command.parsed_args()
    except ValidationError as exc:
        raise validation_error(exc.errors()) from exc
    # A result (处置反馈) or verification (核查) may only point at uploaded photos, as a report
    # may: checked here, before the command is queued, because once the worker has stored the
    # event the reference is part of the evidence for good.
    await photo_api.check_photo_refs(pool, getattr(parsed, "photos", []))
    try:
        outcome = await bus.send(command)
    except QueueUnavailable as exc:
        raise ApiError(503, "broker_unavailable", f"could not queue: {exc}") from exc
    if outcome is None:
        return JSONResponse(
            {"status": "queued", "command_id": command.command_id, "case_no": case_no},
            status_code=202,
        )
    if outcome.ok:
        return JSONResponse(outcome.model_dump(mode="json"), status_code=200)
    error = outcome.error or {"error": "refused"}
    return JSONResponse(error, status_code=ERROR_STATUS.get(str(error.get("error")), 409))
