"""The return-visit loop's lists (回访): ``GET /v1/return-visits`` (the call-taker's list of
closed cases due a visit, oldest closing first, paginated) and ``GET
/v1/return-visits/decisions`` (the shift leader's list of dissatisfied visits awaiting 重办
or 不予重办). Rows come from the queue read model (``projections/return_visits.py``); which
cases are due is the one rule of ``aggregates/visits.py`` (``GRID_RETURN_VISITS``). Reporter
name and phone are shown as ``gateways/http/privacy.py`` allows (call-takers see them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from aggregates.visits import VisitRule
from core.refdata import Reference
from core.settings import Settings
from core.vocabulary import STATUS_LABELS, Status
from gateways.http.access import COMMAND_CENTRE, case_filter
from gateways.http.cases import offered_to
from gateways.http.deps import ReadConnection, get_reads, get_reference, get_settings
from gateways.http.identity import Principal, require
from gateways.http.privacy import mask_case
from projections import return_visits as rv

router = APIRouter(prefix="/v1", tags=["return visits 回访"])
visit_reader = require(*COMMAND_CENTRE, scopes=("cases:read",))


def rule_of(settings: Settings) -> VisitRule:
    return VisitRule.parse(settings.return_visits)


async def _page(
    which: rv.ListName, ref: Reference, reads: ReadConnection, settings: Settings,
    principal: Principal, page: int, page_size: int,
) -> dict[str, Any]:
    j = ref.jurisdiction
    params: list[Any] = []
    scope = case_filter(principal, j, params)
    rule = rule_of(settings)
    async with reads() as conn:
        rows, total = await rv.page(conn, which, rule, scope, params, page, page_size)
    items = []
    for row in rows:
        row["status_zh"] = STATUS_LABELS.get(Status(row["status"]), row["status"])
        row["allowed_actions"] = offered_to(row, principal)
        items.append(mask_case(principal, row, j))
    return {
        "items": items,
        "page": page,
        "page_size": page_size,
        "total": total,
        "pages": (total + page_size - 1) // page_size,
        "rule": {"text": settings.return_visits, "zh": rule.describe_zh()},
    }


@router.get("/return-visits")
async def return_visits_due(
    page: int = Query(default=1, ge=1, le=100_000),
    page_size: int = Query(default=50, ge=1, le=200),
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(visit_reader),
) -> dict[str, Any]:
    """Closed cases due a return visit (回访) under the city's rule, oldest closing first."""
    return await _page("due", ref, reads, settings, principal, page, page_size)


@router.get("/return-visits/decisions")
async def reopen_decisions(
    page: int = Query(default=1, ge=1, le=100_000),
    page_size: int = Query(default=50, ge=1, le=200),
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(visit_reader),
) -> dict[str, Any]:
    """Dissatisfied return visits (不满意) awaiting the shift leader: 重办 (``reopen``) or 不予重办
    (``decline_reopen``), oldest visit first."""
    return await _page("decisions", ref, reads, settings, principal, page, page_size)
