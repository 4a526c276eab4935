"""The return-visit lists (回访) as queries over the queue read model (``case_queue``).

Two lists close the loop after a case is closed:

* **due** — the call-taker's list: closed cases not yet visited since their closing (the
  registry offers ``return_visit`` to the call-taker, recorded in ``offers``) that the visit
  rule (``aggregates/visits.py``) makes due, oldest closing first;
* **decisions** — the shift leader's list: closed cases whose last visit was 不满意 and on
  which nobody has decided yet (``reopen`` / ``decline_reopen`` offered), oldest first.

Both read recorded facts only (status, offers, source, reporter phone, closing time); the
rule is applied as SQL here and as a predicate in ``VisitRule.due``, and
``tests/unit/test_return_visit_rule.py`` checks that both agree. A partial index of
``case_queue`` (``case_queue_visit_due_idx``) keeps a page an index walk at a million cases.
"""

from __future__ import annotations

from typing import Any, Literal

from aggregates.visits import VisitRule

ListName = Literal["due", "decisions"]

COLUMNS = (
    "case_no, status, category, kind, grid, community, district, level, department, priority, "
    "description, address, reporter_name, reporter_phone, source, channel, reported_at, "
    "updated_at, closed_at, satisfaction, offers"
)


def rule_sql(rule: VisitRule, params: list[Any]) -> str:
    """``rule`` as an SQL condition on ``case_queue`` (appends its parameters)."""
    if rule.everything:
        return "true"
    parts = []
    if rule.sources:
        params.append(sorted(rule.sources))
        parts.append(f"source = ANY(${len(params)}::text[])")
    if rule.with_phone:
        parts.append("coalesce(btrim(reporter_phone), '') <> ''")
    return "(" + " OR ".join(parts) + ")" if parts else "false"


def list_sql(
    which: ListName, rule: VisitRule, scope_sql: str, params: list[Any]
) -> tuple[str, str]:
    """(WHERE condition, ORDER BY) of a list; ``scope_sql`` limits it to the caller's cases."""
    if which == "due":
        where = (
            "status = 'closed' AND satisfaction IS NULL "
            "AND offers -> 'call_taker' ? 'return_visit' AND " + rule_sql(rule, params)
        )
        order = "closed_at, case_no"
    else:
        where = "status = 'closed' AND satisfaction = 'dissatisfied' " \
            "AND offers -> 'shift_leader' ? 'reopen'"
        order = "updated_at, case_no"
    return f"{where} AND ({scope_sql})", order


async def page(
    conn: Any,
    which: ListName,
    rule: VisitRule,
    scope_sql: str,
    params: list[Any],
    number: int,
    size: int,
) -> tuple[list[dict[str, Any]], int]:
    """One page (1-based) of a list, and the list's length."""
    params = list(params)
    where, order = list_sql(which, rule, scope_sql, params)
    total = await conn.fetchval(f"SELECT count(*) FROM case_queue WHERE {where}", *params)
    params += [size, (number - 1) * size]
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM case_queue WHERE {where} ORDER BY {order} "
        f"LIMIT ${len(params) - 1} OFFSET ${len(params)}",
        *params,
    )
    return [dict(r) for r in rows], int(total or 0)


