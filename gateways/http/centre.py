"""The command centre's read API (指挥中心): queue v2, map aggregates, evaluation metrics,
exports.

* ``GET /v1/queue`` — the case queue, filterable by every column a dispatcher filters on,
  sortable by ``reported_at``, ``due_at``, ``priority`` or ``updated_at`` (asc / desc), with
  keyset (cursor) pagination: a page costs the same on page 1 and page 10,000, and rows that
  arrive meanwhile neither repeat nor vanish between pages.
* ``GET /v1/queue/export.csv`` / ``.jsonl`` — the same filter and order, streamed row by row
  from a server-side cursor (no size limit, constant memory).
* ``GET /v1/map`` — open / yellow / red / supervised counts per grid and rolled up to the
  children of any node of the jurisdiction tree (drill-down city → district → community →
  grid), from ``projections/map.py``.
* ``GET /v1/metrics`` — the evaluation metrics (综合评价) of any node and period, grouped by
  day / week / month / department / level / inspector / grid or any level of the tree;
  ``GET /v1/metrics/definitions`` — what each metric means (zh + en, formula), from
  ``projections/metrics.py``; ``GET /v1/metrics/export.csv`` / ``.jsonl``.

Personal data (reporter name and phone) is not part of any listing or export here: the case
file (``GET /v1/cases/{no}``) shows it, masked where the caller may not see it.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from core.clock import Clock
from core.jurisdiction import Jurisdiction
from core.refdata import Reference
from core.vocabulary import STATUS_LABELS, Priority, Status
from core.vocabulary import TERMINAL as TERMINAL_STATUSES
from gateways.http.access import (
    CASE_READERS,
    COMMAND_CENTRE,
    case_filter,
    visible_grids,
)
from gateways.http.deps import ReadConnection, get_clock, get_reads, get_reference
from gateways.http.errors import ApiError
from gateways.http.identity import Principal, require
from projections import map as mapmodel
from projections import metrics as m

router = APIRouter(prefix="/v1", tags=["command centre 指挥中心"])

#: Who reads the centre's map, metrics and stream: its staff and the auditors (read-only).
CENTRE_ROLES = (*COMMAND_CENTRE, "auditor")
centre_reader = require(*CENTRE_ROLES, scopes=("cases:read",))
#: The queue and its exports are scoped per case, so every case reader may use them.
queue_reader = require(*CASE_READERS, scopes=("cases:read",))

QUEUE_COLUMNS = (
    "case_no",
    "status",
    "category",
    "kind",
    "grid",
    "community",
    "district",
    "level",
    "node",
    "department",
    "priority",
    "description",
    "address",
    "lat",
    "lon",
    "answers",
    "media_url",
    "source",
    "channel",
    "reported_at",
    "updated_at",
    "due_at",
    "due_step",
    "warning",
    "overdue",
    "supervised",
    "supervision_orders",
    "escalations",
    "rework_count",
    "return_count",
    "extension_count",
    "satisfaction",
    "duplicate_of",
    "closed_at",
    "version",
)
TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)  # the one rule: core/vocabulary.py
_FAR = "'9999-12-31T00:00:00Z'::timestamptz"
_RANK = "(CASE priority WHEN 'urgent' THEN 0 WHEN 'important' THEN 1 ELSE 2 END)"

#: sort name → [(SQL expression, default direction, value kind)]; ``case_no`` breaks ties.
SORTS: dict[str, list[tuple[str, str, str]]] = {
    "reported_at": [("reported_at", "desc", "time")],
    "updated_at": [("updated_at", "desc", "time")],
    "due_at": [(f"coalesce(due_at, {_FAR})", "asc", "time")],
    "priority": [(_RANK, "asc", "int"), (f"coalesce(due_at, {_FAR})", "asc", "time")],
}
SortName = Literal["reported_at", "due_at", "priority", "updated_at"]


# --------------------------------------------------------------------------- scoping
# Jurisdiction (辖区) comes from gateways/http/access.py, the one place that decides it: the
# queue and its export use ``case_filter`` (inspectors: own grids, handlers: own department,
# centre staff: own node and below), the map, metrics and stream use ``visible_grids``.


def _grids_for(
    principal: Principal, j: Jurisdiction, node: str | None
) -> tuple[str, list[str] | None]:
    """(node code, grids to restrict to or None for all) for a request naming ``node``."""
    scope = visible_grids(principal, j)
    if node is None:
        node = getattr(principal, "node", None) or j.city_code
    if node not in j.nodes and node not in j.grids:
        raise ApiError(404, "not_found", f"unknown node {node}")
    grids: list[str] | None = None if node == j.city_code else j.grids_under(node)
    if scope is not None:
        allowed = set(scope)
        grids = [g for g in (grids if grids is not None else scope) if g in allowed]
        if not grids:
            # Outside the caller's jurisdiction: as if it did not exist.
            raise ApiError(404, "not_found", f"unknown node {node}")
    return node, grids


# --------------------------------------------------------------------------- the queue


class QueueQuery:
    """Filters of the queue (shared by the list and the exports)."""

    def __init__(
        self,
        status: list[str] | None = Query(default=None, max_length=20, description="status 状态"),
        open: bool | None = Query(default=None, description="true: not closed/rejected/merged"),
        light: Literal["green", "yellow", "red", "none"] | None = Query(
            default=None,
            description="traffic light of the running step: green (on time), yellow (预警, "
            "≥ 80 % used), red (超期), none (no clock running)",
        ),
        warning: bool | None = Query(default=None, description="yellow or red light"),
        overdue: bool | None = Query(default=None, description="red light (超期)"),
        supervised: bool | None = Query(default=None, description="under a supervision order"),
        priority: list[Priority] | None = Query(
            default=None, max_length=3
        ),
        level: str | None = Query(default=None, max_length=40, description="owning level"),
        department: str | None = Query(default=None, max_length=80),
        district: str | None = Query(default=None, max_length=40),
        community: str | None = Query(default=None, max_length=40),
        grid: str | None = Query(default=None, max_length=40),
        node: str | None = Query(
            default=None, max_length=40, description="any node of the tree: cases in its grids"
        ),
        category: str | None = Query(default=None, max_length=40),
        due_step: str | None = Query(default=None, max_length=20),
        q: str | None = Query(
            default=None, max_length=100, description="case number prefix or text in the "
            "description / address"
        ),
        reported_from: datetime | None = Query(default=None),
        reported_to: datetime | None = Query(default=None),
    ) -> None:
        self.status = status
        self.open = open
        self.light = light
        self.warning = warning
        self.overdue = overdue
        self.supervised = supervised
        self.priority = priority
        self.level = level
        self.department = department
        self.district = district
        self.community = community
        self.grid = grid
        self.node = node
        self.category = category
        self.due_step = due_step
        self.q = q
        self.reported_from = reported_from
        self.reported_to = reported_to

    def where(self, j: Jurisdiction, principal: Principal) -> tuple[list[str], list[Any]]:
        params: list[Any] = []
        clauses: list[str] = [case_filter(principal, j, params)]

        def add(sql: str, *values: Any) -> None:
            for value in values:
                params.append(value)
                sql = sql.replace("?", f"${len(params)}", 1)
            clauses.append(sql)

        if self.status:
            known = {s.value for s in Status}
            unknown = [s for s in self.status if s not in known]
            if unknown:
                raise ApiError(
                    422, "unknown_status", f"unknown status {unknown[0]}", statuses=sorted(known)
                )
            if len(self.status) == 1:
                # "=" lets PostgreSQL walk the (status, reported_at, case_no) index in order
                # instead of sorting every match (p99 at a million cases).
                add("status = ?", self.status[0])
            else:
                add("status = ANY(?::text[])", self.status)
        if self.open is not None:
            add(("NOT " if self.open else "") + "(status = ANY(?::text[]))", list(TERMINAL))
        if self.light == "red":
            clauses.append("overdue")
        elif self.light == "yellow":
            clauses.append("warning AND NOT overdue")
        elif self.light == "green":
            clauses.append("due_at IS NOT NULL AND NOT warning AND NOT overdue")
        elif self.light == "none":
            clauses.append("due_at IS NULL")
        for column, flag in (
            ("warning", self.warning),
            ("overdue", self.overdue),
            ("supervised", self.supervised),
        ):
            if flag is not None:
                clauses.append(column if flag else f"NOT {column}")
        if self.priority:
            add("priority = ANY(?::text[])", list(self.priority))
        for column, value in (
            ("level", self.level),
            ("department", self.department),
            ("district", self.district),
            ("community", self.community),
            ("grid", self.grid),
            ("category", self.category),
            ("due_step", self.due_step),
        ):
            if value is not None:
                add(f"{column} = ?", value)
        if self.node is not None and self.node != j.city_code:
            if self.node not in j.nodes and self.node not in j.grids:
                raise ApiError(404, "not_found", f"unknown node {self.node}")
            add("grid = ANY(?::text[])", j.grids_under(self.node))
        if self.q:
            needle = self.q.strip()
            like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            add("(case_no ILIKE ? OR description ILIKE ? OR address ILIKE ?)",
                needle.upper() + "%", like, like)
        if self.reported_from is not None:
            add("reported_at >= ?", self.reported_from)
        if self.reported_to is not None:
            add("reported_at < ?", self.reported_to)
        return clauses, params


def _encode_cursor(sort: str, order: str, values: list[Any], case_no: str) -> str:
    raw = orjson.dumps({"s": sort, "o": order, "v": values, "k": case_no})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str, order: str) -> tuple[list[Any], str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        if data["s"] != sort or data["o"] != order:
            raise ValueError("cursor of another order")
        values = []
        for (_, _, kind), value in zip(SORTS[sort], data["v"], strict=True):
            values.append(datetime.fromisoformat(value) if kind == "time" else int(value))
        return values, str(data["k"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ApiError(
            400, "invalid_cursor", "cursor is not one this API issued for this sort order"
        ) from exc


def _order(sort: str, order: str | None) -> list[tuple[str, str, str]]:
    keys = SORTS[sort]
    if order is None:
        return keys
    flip = order != keys[0][1]
    return [(e, ("asc" if d == "desc" else "desc") if flip else d, k) for e, d, k in keys]


def _keyset(
    keys: list[tuple[str, str, str]], values: list[Any], case_no: str, start: int
) -> tuple[str, list[Any]]:
    """``(k1, …, kn, case_no)`` strictly after the cursor, with a direction per key."""
    exprs = [(e, d) for e, d, _ in keys] + [("case_no", keys[0][1])]
    vals = [*values, case_no]
    ors = []
    for i, (expr, direction) in enumerate(exprs):
        parts = [f"{exprs[j][0]} = ${start + j}" for j in range(i)]
        parts.append(f"{expr} {'>' if direction == 'asc' else '<'} ${start + i}")
        ors.append("(" + " AND ".join(parts) + ")")
    return "(" + " OR ".join(ors) + ")", vals


def _item(record: Any) -> dict[str, Any]:
    row = {c: record[c] for c in QUEUE_COLUMNS}
    try:
        row["status_zh"] = STATUS_LABELS[Status(row["status"])]
    except ValueError:
        row["status_zh"] = row["status"]
    return row


class QueueSql:
    """The pieces of one queue query: filter, order and the keys the cursor carries."""

    def __init__(
        self,
        query: QueueQuery,
        j: Jurisdiction,
        principal: Principal,
        sort: str,
        order: str | None,
    ) -> None:
        clauses, self.params = query.where(j, principal)
        self.where = " AND ".join(clauses) if clauses else "true"
        self.keys = _order(sort, order)
        self.select = ", ".join(QUEUE_COLUMNS) + "".join(
            f", {e} AS _k{i}" for i, (e, _, _) in enumerate(self.keys)
        )
        self.order_by = (
            ", ".join(f"{e} {d}" for e, d, _ in self.keys) + f", case_no {self.keys[0][1]}"
        )

    def rows(self, extra_where: str = "true") -> str:
        return (
            f"SELECT {self.select} FROM case_queue WHERE {self.where} AND {extra_where} "
            f"ORDER BY {self.order_by}"
        )

    def count(self, cap: int) -> str:
        """Matching rows, counted up to ``cap`` (an exact count(*) over a million rows costs
        hundreds of milliseconds; past the cap an estimate is given instead)."""
        return (
            f"SELECT count(*) FROM (SELECT 1 FROM case_queue WHERE {self.where} "
            f"LIMIT {int(cap)}) capped"
        )

    def estimate(self) -> str:
        return f"EXPLAIN (FORMAT JSON) SELECT 1 FROM case_queue WHERE {self.where}"


#: ``with_total``: up to this many matches the total is exact; above, the planner's estimate.
TOTAL_EXACT_UPTO = 10_000


async def _total(conn: Any, q: QueueSql) -> tuple[int, bool]:
    """(total, exact): exact up to :data:`TOTAL_EXACT_UPTO` matches, else PostgreSQL's row
    estimate for the filter (never below the cap) and ``False``."""
    n = int(await conn.fetchval(q.count(TOTAL_EXACT_UPTO + 1), *q.params))
    if n <= TOTAL_EXACT_UPTO:
        return n, True
    plan = await conn.fetchval(q.estimate(), *q.params)
    if isinstance(plan, str | bytes):
        plan = orjson.loads(plan)
    estimate = int(plan[0]["Plan"]["Plan Rows"])
    return max(estimate, TOTAL_EXACT_UPTO + 1), False


_CURSOR_ERROR: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid_cursor: not a cursor this API issued for this sort order"}
}
_EXPORT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "streamed rows: CSV (UTF-8 with BOM, header row) or JSON Lines",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


@router.get("/queue", responses=_CURSOR_ERROR)
async def queue(
    query: QueueQuery = Depends(),
    sort: SortName = "reported_at",
    order: Literal["asc", "desc"] | None = Query(
        default=None, description="default: newest first; earliest deadline / most urgent first"
    ),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=600),
    with_total: bool = Query(
        default=False,
        description="also count the matching rows: exact up to 10,000, above that "
        "PostgreSQL's estimate (``total_exact`` says which)",
    ),
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    principal: Principal = Depends(queue_reader),
) -> dict[str, Any]:
    """The queue (案件队列), filtered and sorted; follow ``next_cursor`` for the next page."""
    q = QueueSql(query, ref.jurisdiction, principal, sort, order)
    keys = q.keys
    effective = keys[0][1]
    params = list(q.params)
    condition = "true"
    if cursor:
        values, case_no = _decode_cursor(cursor, sort, effective)
        condition, extra = _keyset(keys, values, case_no, len(params) + 1)
        params.extend(extra)
    params.append(limit + 1)
    sql = q.rows(condition) + f" LIMIT ${len(params)}"
    async with reads() as conn:
        records = await conn.fetch(sql, *params)
        total = exact = None
        if with_total:
            total, exact = await _total(conn, q)
    items = [_item(r) for r in records[:limit]]
    next_cursor = None
    if len(records) > limit:
        last = records[limit - 1]
        values = [
            last[f"_k{i}"].isoformat() if kind == "time" else last[f"_k{i}"]
            for i, (_, _, kind) in enumerate(keys)
        ]
        next_cursor = _encode_cursor(sort, effective, values, last["case_no"])
    return {
        "items": items,
        "count": len(items),
        "next_cursor": next_cursor,
        "total": total,
        "total_exact": exact,
        "sort": sort,
        "order": effective,
    }


async def _rows(
    reads: ReadConnection, sql: str, params: list[Any]
) -> AsyncIterator[dict[str, Any]]:
    """Rows of ``sql`` from a server-side cursor (constant memory for any size)."""
    async with reads() as conn, conn.transaction(readonly=True):
        async for record in conn.cursor(sql, *params, prefetch=1000):
            yield _item(record)


def _csv_line(values: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict | list):  # answers to the category's questions
        return orjson.dumps(value).decode()
    return value


async def _as_csv(rows: AsyncIterator[dict[str, Any]], columns: list[str]) -> AsyncIterator[bytes]:
    yield ("\ufeff" + _csv_line(columns)).encode()  # BOM: Excel opens UTF-8 Chinese correctly
    chunk: list[str] = []
    async for row in rows:
        chunk.append(_csv_line([_cell(row.get(c)) for c in columns]))
        if len(chunk) >= 500:
            yield "".join(chunk).encode()
            chunk = []
    if chunk:
        yield "".join(chunk).encode()


async def _as_jsonl(rows: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    chunk: list[bytes] = []
    async for row in rows:
        chunk.append(orjson.dumps(row, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC) + b"\n")
        if len(chunk) >= 500:
            yield b"".join(chunk)
            chunk = []
    if chunk:
        yield b"".join(chunk)


def _download(body: AsyncIterator[bytes], fmt: str, name: str) -> StreamingResponse:
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


@router.get("/queue/export.{fmt}", response_class=StreamingResponse, responses=_EXPORT)
async def export_queue(
    fmt: Literal["csv", "jsonl"],
    query: QueueQuery = Depends(),
    sort: SortName = "reported_at",
    order: Literal["asc", "desc"] | None = None,
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(queue_reader),
) -> StreamingResponse:
    """The filtered queue as CSV (UTF-8 with BOM) or JSON Lines, streamed."""
    q = QueueSql(query, ref.jurisdiction, principal, sort, order)
    rows = _rows(reads, q.rows(), q.params)
    name = f"queue-{clock.now().astimezone(m.METRIC_TZ):%Y%m%d-%H%M}"
    columns = [*QUEUE_COLUMNS, "status_zh"]
    body = _as_csv(rows, columns) if fmt == "csv" else _as_jsonl(rows)
    return _download(body, fmt, name)


# --------------------------------------------------------------------------- the map


@router.get("/map")
async def map_counts(
    node: str | None = Query(default=None, max_length=40, description="default: your node"),
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    principal: Principal = Depends(centre_reader),
) -> dict[str, Any]:
    """Open / yellow / red / supervised / urgent counts of a node, its children and grids."""
    j = ref.jurisdiction
    code, grids = _grids_for(principal, j, node)
    async with reads() as conn:
        counts = await mapmodel.grid_counts(conn)
    if grids is not None:
        allowed = set(grids)
        counts = {g: c for g, c in counts.items() if g in allowed}
    out = mapmodel.rollup(j, counts, code)
    if grids is not None:
        allowed = set(grids)
        out["children"] = [
            c for c in out["children"] if allowed.intersection(j.grids_under(c["code"]))
        ]
    return out


# --------------------------------------------------------------------------- metrics

TIME_GROUPS = ("day", "week", "month")
OTHER_GROUPS = ("department", "level", "inspector", "grid")


def _period(
    clock: Clock, day_from: date | None, day_to: date | None
) -> tuple[date, date]:
    today = clock.now().astimezone(m.METRIC_TZ).date()
    end = day_to or today
    start = day_from or end - timedelta(days=29)
    if start > end:
        raise ApiError(422, "invalid_period", "from is after to")
    if (end - start).days > 731:
        raise ApiError(422, "invalid_period", "a period is at most two years")
    return start, end


def _time_keys(group_by: str, start: date, end: date) -> list[str]:
    keys: list[str] = []
    day = start
    while day <= end:
        if group_by == "day":
            key = day.isoformat()
        elif group_by == "week":
            iso = day.isocalendar()
            key = f"{iso.year}-W{iso.week:02d}"
        else:
            key = f"{day:%Y-%m}"
        if not keys or keys[-1] != key:
            keys.append(key)
        day += timedelta(days=1)
    return keys


def _labeller(j: Jurisdiction, group_by: str) -> Callable[[str], tuple[str, str]]:
    def label(key: str) -> tuple[str, str]:
        if not key:
            if group_by == "department":
                return ("(未派遣: 上报、立案等)", "(no department: reports, filing …)")
            if group_by == "inspector":
                return ("(非网格员上报)", "(not reported by an inspector)")
            return ("(无)", "(none)")
        if group_by == "department" and key in j.departments:
            d = j.departments[key]
            return d.name_zh, d.name_en
        if group_by == "level":
            try:
                lv = j.level(key)
                return lv.name_zh, lv.name_en
            except KeyError:
                return key, key
        if key in j.grids:
            return j.grids[key].name_zh, j.grids[key].name_en
        if key in j.nodes:
            return j.nodes[key].name_zh, j.nodes[key].name_en
        return key, key

    return label


async def _metrics(
    ref: Reference,
    reads: ReadConnection,
    clock: Clock,
    principal: Principal,
    node: str | None,
    day_from: date | None,
    day_to: date | None,
    group_by: str,
    department: str | None,
    level: str | None,
    inspector: str | None,
    keys: list[str] | None,
) -> dict[str, Any]:
    j = ref.jurisdiction
    code, grids = _grids_for(principal, j, node)
    start, end = _period(clock, day_from, day_to)
    tree_levels = [lv.key for lv in j.levels]
    if group_by not in ("none", *TIME_GROUPS, *OTHER_GROUPS, *tree_levels):
        raise ApiError(
            422,
            "invalid_group_by",
            f"cannot group by {group_by!r}",
            group_by=["none", *TIME_GROUPS, *OTHER_GROUPS, *tree_levels],
        )
    if keys:
        unknown = [k for k in keys if k not in m.METRICS]
        if unknown:
            raise ApiError(
                422, "unknown_metric", f"unknown metric {unknown[0]}", metrics=list(m.METRICS)
            )
    by_tree = group_by in tree_levels and group_by not in OTHER_GROUPS
    sql_group: str | None
    if group_by == "none":
        sql_group = None
    elif by_tree:
        sql_group = "grid"
    else:
        sql_group = m.GROUPS_SQL[group_by]
    filters = {"department": department, "level": level, "inspector": inspector}
    async with reads() as conn:
        flows = await _flows(conn, start, end, grids, sql_group, filters)
        snaps = await _snapshots(
            conn, grids, None if group_by in TIME_GROUPS else sql_group, filters
        )
    if by_tree:
        def up(grid: str) -> str:
            if group_by == j.grid_level:
                return grid
            try:
                return j.ancestor_at(grid, group_by).code
            except (ValueError, KeyError):
                return ""

        flows = _regroup(flows, up)
        snaps = _regroup(snaps, up)
    totals: dict[str, int] = {}
    for counters in flows.values():
        for c, v in counters.items():
            totals[c] = totals.get(c, 0) + v
    for counters in snaps.values():
        for c, v in counters.items():
            totals[c] = totals.get(c, 0) + v
    groups = []
    if group_by != "none":
        label = _labeller(j, group_by)
        if group_by in TIME_GROUPS:
            order = _time_keys(group_by, start, end)
        else:
            order = sorted(set(flows) | set(snaps))
        for key in order:
            counters = {**flows.get(key, {}), **snaps.get(key, {})}
            zh, en = label(key)
            groups.append(
                {
                    "key": key or None,
                    "label_zh": zh,
                    "label_en": en,
                    "counters": counters,
                    "metrics": m.evaluate(counters, keys),
                }
            )
    place = j.grids[code] if code in j.grids else j.nodes[code]
    return {
        "node": {"code": code, "name_zh": place.name_zh, "name_en": place.name_en,
                 "level": j.level_of(code)},
        "from": start.isoformat(),
        "to": end.isoformat(),
        "timezone": str(m.METRIC_TZ),
        "group_by": group_by,
        "totals": {"counters": totals, "metrics": m.evaluate(totals, keys)},
        "groups": groups,
        "definitions_version": m.DEFINITIONS_VERSION,
    }


async def _flows(
    conn: Any,
    day_from: date,
    day_to: date,
    grids: list[str] | None,
    group_sql: str | None,
    filters: dict[str, str | None],
) -> dict[str, dict[str, int]]:
    """The summed counters: from the roll-up ``metric_counts_daily`` when no department /
    level / inspector filter applies and the grouping allows (a tenth of the rows)."""
    if any(v is not None for v in filters.values()) or group_sql not in m.DAILY_GROUPS:
        return await m.sum_counters(conn, day_from, day_to, grids, group_sql, **filters)
    return await m.sum_daily_counters(conn, day_from, day_to, grids, group_sql)


#: Groupings the map's per-grid counts can answer (every grid has one community / district).
_GRID_GROUPS = (None, "grid", "community", "district")


async def _snapshots(
    conn: Any,
    grids: list[str] | None,
    group_sql: str | None,
    filters: dict[str, str | None],
) -> dict[str, dict[str, int]]:
    """The state-now counters. Without a department / level / inspector filter and grouped
    by place (or not at all) they are sums over ``map_grid_counts`` (a few hundred rows,
    kept by the same projection from the same ``lights``) instead of a count over every
    open case in ``map_cases`` (hundreds of thousands at a million cases)."""
    if any(v is not None for v in filters.values()) or group_sql not in _GRID_GROUPS:
        return await m.snapshot_counters(conn, grids, group_sql, **filters)
    params: list[Any] = []
    where = "true"
    if grids is not None:
        params.append(grids)
        where = "grid = ANY($1::text[])"
    key = f"coalesce({group_sql}, '')" if group_sql else "''"
    rows = await conn.fetch(
        f"SELECT {key} AS k, sum(open)::bigint AS open_now, sum(warning)::bigint AS "
        f"warning_now, sum(overdue)::bigint AS overdue_now FROM map_grid_counts "
        f"WHERE {where} GROUP BY 1",
        *params,
    )
    return {
        r["k"]: {s: int(r[s]) for s in ("open_now", "warning_now", "overdue_now")}
        for r in rows
        if r["open_now"]
    }


def _regroup(
    data: dict[str, dict[str, int]], key_of: Callable[[str], str]
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key, counters in data.items():
        target = out.setdefault(key_of(key), {})
        for c, v in counters.items():
            target[c] = target.get(c, 0) + v
    return out


GroupBy = str


@router.get("/metrics")
async def metrics(
    node: str | None = Query(default=None, max_length=40, description="default: your node"),
    day_from: date | None = Query(default=None, alias="from", description="first day (local)"),
    day_to: date | None = Query(default=None, alias="to", description="last day, inclusive"),
    group_by: GroupBy = Query(
        default="none",
        max_length=40,
        description="none, day, week, month, department, level, inspector, grid, or a level "
        "of the jurisdiction tree (district, community, street …)",
    ),
    department: str | None = Query(default=None, max_length=80),
    level: str | None = Query(default=None, max_length=40),
    inspector: str | None = Query(default=None, max_length=100),
    only: str | None = Query(
        default=None, alias="metrics", max_length=1000, description="comma-separated keys"
    ),
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(centre_reader),
) -> dict[str, Any]:
    """Evaluation metrics (综合评价) of a node and period; rates are 0…1 or null."""
    keys = [k.strip() for k in only.split(",") if k.strip()] if only else None
    return await _metrics(
        ref, reads, clock, principal, node, day_from, day_to, group_by, department, level,
        inspector, keys,
    )


@router.get("/metrics/definitions")
async def metric_definitions(principal: Principal = Depends(centre_reader)) -> dict[str, Any]:
    """What every metric means: zh / en names, formula, what is counted on which day."""
    return m.definitions()


@router.get("/metrics/export.{fmt}", response_class=StreamingResponse, responses=_EXPORT)
async def export_metrics(
    fmt: Literal["csv", "jsonl"],
    node: str | None = Query(default=None, max_length=40),
    day_from: date | None = Query(default=None, alias="from"),
    day_to: date | None = Query(default=None, alias="to"),
    group_by: GroupBy = Query(default="day", max_length=40),
    department: str | None = Query(default=None, max_length=80),
    level: str | None = Query(default=None, max_length=40),
    inspector: str | None = Query(default=None, max_length=100),
    ref: Reference = Depends(get_reference),
    reads: ReadConnection = Depends(get_reads),
    clock: Clock = Depends(get_clock),
    principal: Principal = Depends(centre_reader),
) -> StreamingResponse:
    """Metrics per group as CSV or JSON Lines: one row per group (and a TOTAL row), with
    every metric and every counter, so a third party can recompute each rate."""
    data = await _metrics(
        ref, reads, clock, principal, node, day_from, day_to, group_by, department, level,
        inspector, None,
    )
    counters = list(m.COUNTERS) + list(m.SNAPSHOTS)
    metric_keys = list(m.METRICS)

    async def rows() -> AsyncIterator[dict[str, Any]]:
        for g in [*data["groups"], {"key": "TOTAL", "label_zh": "合计", "label_en": "Total",
                                    **data["totals"]}]:
            yield {
                "node": data["node"]["code"],
                "from": data["from"],
                "to": data["to"],
                "group_by": data["group_by"],
                "key": g["key"],
                "label_zh": g["label_zh"],
                "label_en": g["label_en"],
                **{k: g["metrics"].get(k) for k in metric_keys},
                **{f"n_{c}": g["counters"].get(c, 0) for c in counters},
            }

    columns = ["node", "from", "to", "group_by", "key", "label_zh", "label_en", *metric_keys,
               *(f"n_{c}" for c in counters)]
    name = f"metrics-{data['node']['code']}-{data['from']}-{data['to']}-{group_by}"
    body = _as_csv(rows(), columns) if fmt == "csv" else _as_jsonl(rows())
    return _download(body, fmt, name)
