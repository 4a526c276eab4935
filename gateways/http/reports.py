"""Intake: ``POST /v1/reports`` — validate, locate the grid, publish, answer 202.

The gateway never writes the event store: it validates against the reference data, turns the
body into a ``report`` command and answers once JetStream has acknowledged it (so the report
is durable on the broker). The case number is derived from the idempotency key, so a client
that retries — seconds or days later — gets the same number and no second case.

``POST /v1/reports/batch`` takes up to :data:`MAX_BATCH` reports in one request: what an
inspector's phone sends when it comes back online with a queue of reports, or a hotline system
forwarding a storm's calls. Each item is validated, located and published on its own (one
refused item never refuses the others) and every item must carry its own idempotency key, so
a lost response is simply sent again. One HTTP round trip and one authentication for the lot
is also what lets the gateway keep up with storm bursts (docs/performance.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import structlog
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from nats.js import JetStreamContext
from pydantic import Field, ValidationError

from aggregates.commands import Command, Photo, ReportArgs, Reporter, Strict
from core import codec, components, eventlog, places
from core.catalogue import AnswerError
from core.clock import Clock
from core.ids import KEY_MAX_LENGTH, KEY_MIN_LENGTH, case_id_for_key, case_no_for_id, new_key
from core.jurisdiction import Jurisdiction
from core.logging import get_logger
from core.messaging import Topology
from core.refdata import Reference
from gateways.http import photos as photo_api
from gateways.http.access import REPORTERS, check_report_location
from gateways.http.deps import (
    get_clock,
    get_existing_cases,
    get_jetstream,
    get_pool,
    get_reference,
    get_topology,
)
from gateways.http.errors import ApiError, validation_error
from gateways.http.identity import Principal, require

log = get_logger("gateway")
router = APIRouter(prefix="/v1", tags=["intake 上报"])
#: Inspectors (own grids) and call-takers (own centre) report; per-IP and per-token limits.
reporter = require(*REPORTERS, scopes=("reports:create",), rate="intake")


class ReportIn(Strict):
    """A report from an inspector's phone, the hotline form or an API client."""

    category: str = Field(min_length=1, max_length=40, examples=["0502"])
    grid: str | None = Field(default=None, max_length=40, description="grid code, or give lat/lon")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    fix_outside_grid: bool = Field(
        default=False,
        description="file the report in `grid` although the GPS fix lies in another grid "
        "(the fix is kept and that grid recorded); without it such a report is refused with "
        "the choices",
    )
    address: str | None = Field(default=None, max_length=200)
    place_id: str | None = Field(
        default=None, max_length=60,
        description="a standard address from GET /v1/places: gives the address text and, "
        "without lat/lon, the location",
    )
    component: str | None = Field(
        default=None, pattern=r"^\d{16}$",
        description="the 部件 it concerns (16-digit code, GET /v1/components): recorded with "
        "the case; without lat/lon, grid or place, its point is the location",
    )
    description: str = Field(min_length=1, max_length=2000)
    reporter: Reporter | None = None
    client_time: datetime | None = None
    photos: list[Photo] = Field(default_factory=list, max_length=9)
    answers: dict[str, Any] = Field(
        default_factory=dict,
        max_length=30,
        description="answers to the category's questions (GET /v1/categories: questions), "
        "by question code; required ones must be answered",
    )
    media_url: str | None = Field(
        default=None, max_length=200, pattern=r"^https?://\S+$",
        description="a photo or video the reporter links to",
    )
    source: Literal["inspector_app", "hotline", "open311", "api"] = "api"
    idempotency_key: str | None = Field(
        default=None, min_length=KEY_MIN_LENGTH, max_length=KEY_MAX_LENGTH
    )


class ReportAccepted(Strict):
    case_no: str
    case_id: str
    idempotency_key: str
    status: Literal["accepted"] = "accepted"
    duplicate: bool
    grid: str
    district: str


@dataclass(frozen=True)
class Intake:
    """What accepting a report needs: the reference data (category, grid, jurisdiction), the
    pool (photo references, standard addresses), "is this case already made" and JetStream
    with its subjects."""

    ref: Reference
    pool: asyncpg.Pool
    js: JetStreamContext
    topo: Topology
    existing: eventlog.ExistingCases


async def intake_from(request: Request) -> Intake:
    """This app's :class:`Intake`, assembled once from the narrow dependencies of
    ``gateways/http/deps.py``. One dependency instead of five on the intake path: FastAPI's
    per-request resolution of each was a tenth of the gateway's time per report."""
    intake: Intake | None = getattr(request.app.state, "intake", None)
    if intake is None:
        intake = request.app.state.intake = Intake(
            await get_reference(request),
            await get_pool(request),
            await get_jetstream(request),
            await get_topology(request),
            await get_existing_cases(request),
        )
    return intake


def locate(ref: Reference, body: ReportIn) -> tuple[str, str | None]:
    """The grid of a report and, when the GPS fix lies in another grid than the one the
    report is filed in, that grid (recorded with the fix: coordinates are never dropped).

    From lat/lon by point-in-polygon, else the given grid code. A fix in another grid than the
    named one is refused (422 ``grid_mismatch`` with the choices) unless the reporter chose to
    keep it with ``fix_outside_grid``."""
    j = ref.jurisdiction
    if (body.lat is None) != (body.lon is None):
        raise ApiError(422, "invalid_location", "give both lat and lon, or neither")
    located: str | None = None
    if body.lat is not None and body.lon is not None:
        grid = j.locate(body.lat, body.lon)
        # A point inside a grid is inside the city: the union test only for the others.
        if grid is None and not j.in_city(body.lat, body.lon):
            raise ApiError(
                422,
                "outside_city",
                f"({body.lat}, {body.lon}) is outside {j.name_en}",
                bounds=j.bounds(),
            )
        if grid is None:
            if body.grid is None:
                raise ApiError(422, "no_grid", "the location is in no grid; name the grid")
        elif body.grid is None or body.grid == grid.code:
            return grid.code, None
        elif body.fix_outside_grid:
            located = grid.code
        else:
            raise ApiError(
                422,
                "grid_mismatch",
                f"location lies in grid {grid.code}, not {body.grid}",
                located_grid=grid.code,
                choices=[
                    {"choice": "report_there", "send": {"grid": grid.code}},
                    {"choice": "keep_grid", "send": {"grid": body.grid,
                                                     "fix_outside_grid": True}},
                ],
            )
    if body.grid is None:
        raise ApiError(422, "missing_location", "give a grid code or lat/lon")
    if body.grid not in j.grids:
        raise ApiError(422, "unknown_grid", f"unknown grid {body.grid}", field="grid")
    return body.grid, located


def check_location(
    principal: Principal, grid: str, body: ReportIn, j: Jurisdiction
) -> None:
    """The caller may report in ``grid`` (``access.check_report_location``); a GPS fix that
    put the report outside the caller's area gets the choices instead of a bare refusal:
    file it in one of the caller's grids keeping the fix (``fix_outside_grid``)."""
    try:
        check_report_location(principal, grid, j)
    except ApiError as exc:
        if body.lat is None or body.grid is not None:
            raise
        own = [g for g in principal.grids if g in j.grids] if principal.role == "inspector" \
            else []
        raise ApiError(
            exc.status, str(exc.body["error"]),
            f"your GPS fix ({body.lat:.6f}, {body.lon:.6f}) lies in grid {grid}, outside "
            "your area: report it in one of your grids keeping the fix "
            "(grid + fix_outside_grid), or ask the grid's own staff",
            field="grid", located_grid=grid,
            choices=[{"choice": "choose_grid", "grids": own,
                      "send": {"grid": "<one of grids>", "fix_outside_grid": True}}],
        ) from exc


#: The most reports one batch request may carry (the body limit applies as well).
MAX_BATCH = 100


class PreparedReport:
    """A validated report: the command to publish and the answer to give once it is queued."""

    __slots__ = ("command", "district", "grid", "key")

    def __init__(self, command: Command, key: str, grid: str, district: str) -> None:
        self.command = command
        self.key = key
        self.grid = grid
        self.district = district

    def accepted(self, duplicate: bool) -> ReportAccepted:
        return ReportAccepted(
            case_no=self.command.case_no,
            case_id=self.command.case_id,
            idempotency_key=self.key,
            duplicate=duplicate,
            grid=self.grid,
            district=self.district,
        )


async def _with_place(intake: Intake, body: ReportIn) -> ReportIn:
    """The picked standard address: its label as the address (unless one was typed) and,
    without a GPS fix or a grid, its point as the location."""
    async with intake.pool.acquire() as conn:
        place = await places.get(conn, body.place_id or "")
    if place is None:
        raise ApiError(422, "unknown_place", f"no standard address {body.place_id}",
                       field="place_id")
    update: dict[str, Any] = {"address": body.address or place["label"][:200]}
    if body.lat is None and body.grid is None:
        update.update(lat=place["lat"], lon=place["lon"])
    return body.model_copy(update=update)


async def _with_component(intake: Intake, body: ReportIn) -> ReportIn:
    """The named component must exist; without any other location its point is the report's."""
    async with intake.pool.acquire() as conn:
        item = await components.get(conn, body.component or "")
    if item is None:
        raise ApiError(422, "unknown_component", f"no component {body.component}",
                       field="component")
    if body.lat is None and body.grid is None and body.place_id is None:
        return body.model_copy(update={"lat": item["lat"], "lon": item["lon"]})
    return body


async def prepare(
    intake: Intake, clock: Clock, principal: Principal, body: ReportIn, key: str
) -> PreparedReport:
    """Check a report against the reference data and the caller's area; build its command."""
    if body.category not in intake.ref.catalogue:
        raise ApiError(
            422, "unknown_category", f"unknown category {body.category}", field="category"
        )
    try:
        answers = intake.ref.catalogue.get(body.category).check_answers(
            body.answers, complete=True
        )
    except AnswerError as exc:
        raise ApiError(
            422, "invalid_answer", str(exc), field=f"answers.{exc.question}",
            question=exc.question,
        ) from exc
    if body.place_id is not None:
        body = await _with_place(intake, body)
    if body.component is not None:
        body = await _with_component(intake, body)
    grid_code, located_grid = locate(intake.ref, body)
    check_location(principal, grid_code, body, intake.ref.jurisdiction)
    await photo_api.check_photo_refs(intake.pool, body.photos)
    j = intake.ref.jurisdiction
    district = j.partition_of(grid_code)
    community = j.grid(grid_code).parent
    reporter = body.reporter or Reporter(
        id=principal.user_id, type="inspector" if principal.role == "inspector" else "citizen"
    )
    case_id = case_id_for_key(key)
    args = ReportArgs(
        category=body.category,
        grid=grid_code,
        community=community,
        district=district,
        lat=body.lat,
        lon=body.lon,
        address=body.address,
        description=body.description,
        reporter=reporter,
        source=body.source,
        client_time=body.client_time,
        photos=body.photos,
        answers=answers,
        media_url=body.media_url,
        place_id=body.place_id,
        located_grid=located_grid,
        component=body.component,
    )
    command = Command(
        command_id=key,
        verb="report",
        case_id=str(case_id),
        case_no=case_no_for_id(case_id),
        partition=district,
        actor=principal.user_id,
        role=principal.role,
        channel=principal.channel if principal.channel != "api" else body.source,
        at=clock.now(),
        args=args.model_dump(mode="json"),
    )
    return PreparedReport(command, key, grid_code, district)


async def publish(intake: Intake, report: PreparedReport) -> bool:
    """Queue the report's command on JetStream; True when the broker already had it (the
    idempotency key was seen within the dedupe window). 503 when the broker cannot take it."""
    try:
        ack = await intake.js.publish(
            intake.topo.command_subject(report.district, "report"),
            codec.dumps(report.command.model_dump(mode="json")),
            headers={"Nats-Msg-Id": f"report:{report.key}"},
            timeout=5,
        )
    except Exception as exc:
        raise ApiError(503, "broker_unavailable", f"could not queue the report: {exc!r}") from exc
    return bool(ack.duplicate)


async def already_made(intake: Intake, reports: list[PreparedReport]) -> set[str]:
    """The keys among ``reports`` whose case is already in the event store.

    Asked before the report is published (afterwards a quick worker may already have stored
    it). JetStream's own answer covers its dedupe window; after it (a phone's queue sent
    again the next day) the key's case may exist although the broker no longer remembers
    the key. The case id is derived from the key, so this is a lookup by the events
    table's primary key (originator_id, originator_version) — no extra table, no write, and
    the event store is the truth (a read model could lag behind it). Concurrent requests are
    asked together (``eventlog.ExistingCases``: one query for all reports waiting at that
    moment). The answer is a courtesy (the worker never makes a second case either way), so
    if the database cannot answer within a second the flag stays false and a line is
    logged."""
    by_district: dict[str, list[PreparedReport]] = {}
    for report in reports:
        by_district.setdefault(report.district, []).append(report)
    made: set[str] = set()
    try:
        for district, items in by_district.items():
            found = await intake.existing.ask(district, [r.command.case_id for r in items])
            made.update(r.key for r in items if r.command.case_id in found)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("report.duplicate_unknown", error=repr(exc)[:200])
    return made


@router.post(
    "/reports",
    status_code=202,
    response_model=ReportAccepted,
    responses={422: {"description": "invalid report"}, 503: {"description": "broker down"}},
)
async def post_report(
    body: ReportIn,
    intake: Intake = Depends(intake_from),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(reporter),
    idempotency_key: str | None = Header(
        default=None, min_length=KEY_MIN_LENGTH, max_length=KEY_MAX_LENGTH
    ),
) -> Response:
    """Accept a report (上报). Answers 202 with the case number once the broker has it."""
    return await accept_report(intake, clock, principal, body, idempotency_key)


async def accept_report(
    intake: Intake, clock: Clock, principal: Principal, body: ReportIn,
    idempotency_key: str | None,
) -> Response:
    """What ``POST /v1/reports`` does once its inputs are checked — for the route and for
    its fast path (``gateways/http/intake_fast.py``), which check them the same way."""
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise ApiError(
            422, "idempotency_key_conflict", "Idempotency-Key header and body field differ"
        )
    given = idempotency_key or body.idempotency_key
    key = given or new_key()
    report = await prepare(intake, clock, principal, body, key)
    structlog.contextvars.bind_contextvars(case_no=report.command.case_no)
    # Asked before publishing: once published, a quick worker may store the case before
    # the lookup, which would then call a new report a duplicate. A key made here is new.
    made = bool(given) and bool(await already_made(intake, [report]))
    duplicate = await publish(intake, report) or made
    log.info("report.accepted", grid=report.grid, duplicate=duplicate)
    return Response(
        codec.dumps(report.accepted(duplicate).model_dump()),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"/v1/cases/{report.command.case_no}"},
    )


class BatchIn(Strict):
    """Reports to accept together; each item is a report body with its ``idempotency_key``.

    Items are validated one by one (a malformed item is refused on its own), so they are
    plain objects here."""

    reports: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class BatchItemRefused(Strict):
    index: int
    status: Literal["refused"] = "refused"
    http_status: int
    error: str
    message: str
    idempotency_key: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class BatchItemAccepted(ReportAccepted):
    index: int


class BatchOut(Strict):
    accepted: int
    duplicates: int
    refused: int
    results: list[BatchItemAccepted | BatchItemRefused]


def _refusal(index: int, key: str | None, exc: ApiError, status: int) -> BatchItemRefused:
    body = dict(exc.body)
    error, message = str(body.pop("error")), str(body.pop("message"))
    return BatchItemRefused(
        index=index, http_status=status, error=error, message=message,
        idempotency_key=key, details=body,
    )


@router.post(
    "/reports/batch",
    response_model=BatchOut,
    responses={
        200: {"description": "every item answered: accepted (202 semantics) or refused"},
        503: {"description": "the broker took none of the reports"},
    },
)
async def post_reports_batch(
    batch: BatchIn,
    intake: Intake = Depends(intake_from),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(reporter),
) -> JSONResponse:
    """Accept up to 100 reports at once (an inspector's offline queue, a hotline forwarder).

    Answers 200 with one result per item, in order: ``accepted`` (with the case number, as
    ``POST /v1/reports`` would give) or ``refused`` (with the error that item alone would have
    had). Send refused items again after fixing them, and items refused with a 5xx
    ``http_status`` again as they are; accepted ones never need resending. 503 only when the
    broker took none of them."""
    results: list[BatchItemAccepted | BatchItemRefused | None] = [None] * len(batch.reports)
    prepared: list[tuple[int, PreparedReport]] = []
    seen: set[str] = set()
    for index, raw in enumerate(batch.reports):
        key = raw.get("idempotency_key") if isinstance(raw.get("idempotency_key"), str) else None
        try:
            body = ReportIn.model_validate(raw)
            if body.idempotency_key is None:
                raise ApiError(
                    422, "missing_idempotency_key",
                    "each report in a batch needs its own idempotency_key",
                    field="idempotency_key",
                )
            if body.idempotency_key in seen:
                raise ApiError(
                    422, "duplicate_in_batch", "the same idempotency_key twice in one batch",
                    field="idempotency_key",
                )
            seen.add(body.idempotency_key)
            prepared.append((index, await prepare(intake, clock, principal, body,
                                                  body.idempotency_key)))
        except ValidationError as exc:
            # The same body POST /v1/reports would have refused this item with.
            results[index] = _refusal(index, key, validation_error(exc.errors()), 422)
        except ApiError as exc:
            results[index] = _refusal(index, key, exc, exc.status)
    # Which cases exist already is asked before publishing (see ``post_report``).
    made = await already_made(intake, [report for _, report in prepared]) if prepared else set()
    outcomes = await asyncio.gather(
        *(publish(intake, report) for _, report in prepared), return_exceptions=True
    )
    broker_down = 0
    for (index, report), outcome in zip(prepared, outcomes, strict=True):
        if isinstance(outcome, ApiError):
            broker_down += 1
            results[index] = _refusal(index, report.key, outcome, outcome.status)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            duplicate = outcome or report.key in made
            results[index] = BatchItemAccepted(
                index=index, **report.accepted(duplicate).model_dump()
            )
    if prepared and broker_down == len(prepared) and broker_down == len(results):
        raise ApiError(503, "broker_unavailable", "could not queue any report of the batch")
    final = [r for r in results if r is not None]
    accepted = [r for r in final if isinstance(r, BatchItemAccepted)]
    out = BatchOut(
        accepted=len(accepted),
        duplicates=sum(r.duplicate for r in accepted),
        refused=len(final) - len(accepted),
        results=final,
    )
    log.info("report.batch", accepted=out.accepted, refused=out.refused)
    return JSONResponse(out.model_dump())
