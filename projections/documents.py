"""What the leadership's documents say, read from the read models (文书数据).

* :func:`case_file` — the case file (案卷): the case's queue row, its whole timeline (who did
  what, when, why), the people's names; the photos are referenced by digest (the gateway or
  ``gridctl`` fetches them from the photo store).
* :func:`supervision_order` — the supervision order (督办单): the case file plus its
  supervision events (``Supervised``).
* :func:`evaluation` — the monthly evaluation (综合评价): the published metrics
  (``projections/metrics.py``, the same counters and formulas the centre shows) of every
  district, community, grid and department over any period, ranked.

Pure data (dicts of plain values); the rendering to PDF and Excel is ``gateways/documents.py``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from aggregates.actions import REGISTRY
from core.jurisdiction import Jurisdiction
from core.vocabulary import STATUS_LABELS, Status
from projections import metrics as m

#: Event type → the action's name for people (上报, 立案, 派遣 …).
EVENT_LABELS: dict[str, str] = {spec.event.__name__: spec.label for spec in REGISTRY.values()}

#: The metrics of the monthly report, in column order (keys of ``metrics.METRICS``).
REPORT_METRICS: tuple[str, ...] = (
    "reports", "filed", "closed", "closure_rate", "on_time_closure_rate",
    "on_time_handling_rate", "on_time_dispatch_rate", "rework_rate", "satisfaction_rate",
    "reopen_rate", "supervision_orders", "escalations",
)
#: What the ranking sorts by (first: higher is better), then the following ones.
RANK_BY_DEFAULT = "on_time_closure_rate"
RANK_TIEBREAK = ("closure_rate", "satisfaction_rate")
#: The report's sections: (title, metrics grouping).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("区县排名", "district"), ("部门排名", "department"), ("社区排名", "community"),
    ("网格排名", "grid"),
)


async def case_file(conn: Any, case_no: str) -> dict[str, Any] | None:
    """The case file's data, or None for an unknown case number."""
    record = await conn.fetchrow("SELECT * FROM case_queue WHERE case_no = $1", case_no)
    if record is None:
        return None
    case = dict(record)
    case["case_id"] = str(case["case_id"])
    case["status_zh"] = STATUS_LABELS.get(Status(case["status"]), case["status"])
    timeline = [
        dict(r) for r in await conn.fetch(
            "SELECT version, type, at, actor, role, channel, reason, data FROM case_timeline "
            "WHERE case_id = $1 ORDER BY version", record["case_id"],
        )
    ]
    for t in timeline:
        t["label"] = EVENT_LABELS.get(t["type"], t["type"])
    actors = sorted({t["actor"] for t in timeline if t["actor"]})
    names = {
        r["user_id"]: r["name"] for r in await conn.fetch(
            "SELECT user_id, name FROM users WHERE user_id = ANY($1::text[])", actors
        )
    } if await conn.fetchval("SELECT to_regclass('users')") else {}
    photos: list[dict[str, Any]] = []
    for t in timeline:
        for p in (t["data"] or {}).get("photos") or []:
            if isinstance(p, dict) and p.get("digest"):
                photos.append({**p, "version": t["version"], "label": t["label"]})
    return {"case": case, "timeline": timeline, "names": names, "photos": photos}


async def supervision_order(conn: Any, case_no: str) -> dict[str, Any] | None:
    """The case file plus its supervision orders (``Supervised`` events), or None when the
    case does not exist. ``orders`` is empty for a case never supervised."""
    data = await case_file(conn, case_no)
    if data is None:
        return None
    data["orders"] = [t for t in data["timeline"] if t["type"] == "Supervised"]
    return data


def _label(j: Jurisdiction, grouping: str, key: str) -> str:
    if not key:
        return "(未派遣)" if grouping == "department" else "(无)"
    if grouping == "department":
        d = j.departments.get(key)
        return d.name_zh if d else key
    if key in j.grids:
        return j.grids[key].name_zh
    if key in j.nodes:
        return j.nodes[key].name_zh
    return key


def rank(rows: list[dict[str, Any]], rank_by: str) -> list[dict[str, Any]]:
    """Rows ordered best first by ``rank_by`` then :data:`RANK_TIEBREAK` (a place with no
    value — nothing to rate in the period — comes last, unranked); ``rank`` is 1-based and
    shared by equal values."""
    keys = (rank_by, *(k for k in RANK_TIEBREAK if k != rank_by))

    def sort_key(row: dict[str, Any]) -> tuple[Any, ...]:
        values = [row["metrics"].get(k) for k in keys]
        return (values[0] is None, *(-(v if v is not None else -1) for v in values), row["key"])

    out = sorted(rows, key=sort_key)
    previous: tuple[Any, ...] | None = None
    position = 0
    for i, row in enumerate(out, start=1):
        value = tuple(row["metrics"].get(k) for k in keys)
        if row["metrics"].get(rank_by) is None:
            row["rank"] = None
            continue
        if value != previous:
            position = i
        row["rank"] = position
        previous = value
    return out


async def evaluation(
    conn: Any, j: Jurisdiction, start: date, end: date, rank_by: str = RANK_BY_DEFAULT,
    grids: list[str] | None = None,
) -> dict[str, Any]:
    """The evaluation of ``start`` … ``end`` (inclusive, local days): per section the places
    (or departments) with their counters and the :data:`REPORT_METRICS`, ranked; and the
    totals. ``grids`` limits it to a jurisdiction (None: the whole city)."""
    if rank_by not in m.METRICS:
        raise ValueError(f"unknown metric {rank_by!r}")
    sections = []
    for title, grouping in SECTIONS:
        counters = await m.sum_counters(conn, start, end, grids, m.GROUPS_SQL[grouping])
        rows = [
            {
                "key": key,
                "name": _label(j, grouping, key),
                "counters": c,
                "metrics": m.evaluate(c, [*REPORT_METRICS, rank_by]),
            }
            for key, c in counters.items()
            if grouping != "department" or key  # work before dispatch is nobody's department
        ]
        sections.append({"title": title, "grouping": grouping, "rows": rank(rows, rank_by)})
    totals = (await m.sum_counters(conn, start, end, grids, None)).get("", {})
    return {
        "city": j.name_zh,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "rank_by": rank_by,
        "rank_by_zh": m.METRICS[rank_by]["zh"],
        "columns": [
            {"key": k, "zh": m.METRICS[k]["zh"], "kind": m.METRICS[k]["kind"],
             "formula_zh": m.METRICS[k]["formula_zh"]}
            for k in REPORT_METRICS
        ],
        "sections": sections,
        "totals": m.evaluate(totals, list(REPORT_METRICS)),
    }
