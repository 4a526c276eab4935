"""Intake: ``POST /v1/reports`` — validate, locate the grid, publish, answer 202.

The gateway never writes the event store: it validates against the reference data, turns the
body into a ``report`` command and answers once JetStream has acknowledged it (so the report
is durable on the broker). The case number is derived from the idempotency key, so a client
that retries — seconds or days later — gets the same number and no second case.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import structlog
from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse
from pydantic import Field

from aggregates.commands import Command, Photo, ReportArgs, Reporter, Strict
from core import codec
from core.clock import Clock
from core.ids import case_id_for_key, case_no_for_id, new_key
from core.logging import get_logger
from gateways.http import photos as photo_api
from gateways.http.access import REPORTERS, check_report_location
from gateways.http.deps import get_clock, get_runtime
from gateways.http.errors import ApiError
from gateways.http.identity import Principal, require
from gateways.runtime import Runtime

log = get_logger("gateway")
router = APIRouter(prefix="/v1", tags=["intake 上報"])
#: Inspectors (own grids) and call-takers (own centre) report; per-IP and per-token limits.
reporter = require(*REPORTERS, scopes=("reports:create",), rate="intake")


class ReportIn(Strict):
    """A report from an inspector's phone, the hotline form or an API client."""

    category: str = Field(min_length=1, max_length=40, examples=["0502"])
    grid: str | None = Field(default=None, max_length=40, description="grid code, or give lat/lon")
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=200)
    description: str = Field(min_length=1, max_length=2000)
    reporter: Reporter | None = None
    client_time: datetime | None = None
    photos: list[Photo] = Field(default_factory=list, max_length=9)
    source: Literal["inspector_app", "hotline", "open311", "api"] = "api"
    idempotency_key: str | None = Field(default=None, min_length=8, max_length=200)


class ReportAccepted(Strict):
    case_no: str
    case_id: str
    idempotency_key: str
    status: Literal["accepted"] = "accepted"
    duplicate: bool
    grid: str
    district: str


def locate(runtime: Runtime, body: ReportIn) -> str:
    """The grid of a report: from lat/lon by point-in-polygon, else the given grid code."""
    j = runtime.ref.jurisdiction
    if (body.lat is None) != (body.lon is None):
        raise ApiError(422, "invalid_location", "give both lat and lon, or neither")
    if body.lat is not None and body.lon is not None:
        if not j.in_city(body.lat, body.lon):
            raise ApiError(
                422,
                "outside_city",
                f"({body.lat}, {body.lon}) is outside {j.name_en}",
                bounds=j.bounds(),
            )
        grid = j.locate(body.lat, body.lon)
        if grid is None:
            if body.grid is None:
                raise ApiError(422, "no_grid", "the location is in no grid; name the grid")
        elif body.grid is None or body.grid == grid.code:
            return grid.code
        else:
            raise ApiError(
                422,
                "grid_mismatch",
                f"location lies in grid {grid.code}, not {body.grid}",
                located_grid=grid.code,
            )
    if body.grid is None:
        raise ApiError(422, "missing_location", "give a grid code or lat/lon")
    if body.grid not in j.grids:
        raise ApiError(422, "unknown_grid", f"unknown grid {body.grid}", field="grid")
    return body.grid


@router.post(
    "/reports",
    status_code=202,
    response_model=ReportAccepted,
    responses={422: {"description": "invalid report"}, 503: {"description": "broker down"}},
)
async def post_report(
    body: ReportIn,
    runtime: Runtime = Depends(get_runtime),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(reporter),
    idempotency_key: str | None = Header(default=None, min_length=8, max_length=200),
) -> JSONResponse:
    """Accept a report (上報). Answers 202 with the case number once the broker has it."""
    if body.category not in runtime.ref.catalogue:
        raise ApiError(
            422, "unknown_category", f"unknown category {body.category}", field="category"
        )
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise ApiError(
            422, "idempotency_key_conflict", "Idempotency-Key header and body field differ"
        )
    key = idempotency_key or body.idempotency_key or new_key()
    grid_code = locate(runtime, body)
    check_report_location(principal, grid_code, runtime.ref.jurisdiction)
    await photo_api.check_refs(runtime, body.photos)
    j = runtime.ref.jurisdiction
    district = j.partition_of(grid_code)
    community = j.grid(grid_code).parent
    reporter = body.reporter or Reporter(
        id=principal.user_id, type="inspector" if principal.role == "inspector" else "citizen"
    )
    case_id = case_id_for_key(key)
    case_no = case_no_for_id(case_id)
    structlog.contextvars.bind_contextvars(case_no=case_no)
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
    )
    command = Command(
        command_id=key,
        verb="report",
        case_id=str(case_id),
        case_no=case_no,
        partition=district,
        actor=principal.user_id,
        role=principal.role,
        channel=principal.channel if principal.channel != "api" else body.source,
        at=clock.now(),
        args=args.model_dump(mode="json"),
    )
    try:
        ack = await runtime.js.publish(
            runtime.topo.command_subject(district, "report"),
            codec.dumps(command.model_dump(mode="json")),
            headers={"Nats-Msg-Id": f"report:{key}"},
            timeout=5,
        )
    except Exception as exc:
        raise ApiError(503, "broker_unavailable", f"could not queue the report: {exc!r}") from exc
    log.info("report.accepted", grid=grid_code, duplicate=bool(ack.duplicate))
    accepted = ReportAccepted(
        case_no=case_no,
        case_id=str(case_id),
        idempotency_key=key,
        duplicate=bool(ack.duplicate),
        grid=grid_code,
        district=district,
    )
    return JSONResponse(
        accepted.model_dump(), status_code=202, headers={"Location": f"/v1/cases/{case_no}"}
    )
