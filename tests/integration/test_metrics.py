"""Evaluation metrics (綜合評價): what the projections compute equals an independent
recomputation from the raw events, for a generated history of 2,200 cases.

The history is made by the real domain (``CaseService`` on real ``Case`` aggregates, see
``history.py``); its envelopes are fed to the map and metrics projections through the real
exactly-once path (``apply_batch``) in random batch sizes, with redeliveries, into a live
system's schema. The API (``GET /v1/metrics``) is then compared, metric by metric and group
by group, with :func:`recompute` below — deliberately different code: it looks at each case's
whole event list at once (backward searches for the deadline in force, the case's final
department) instead of folding event by event with counters.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from core.envelope import parse_time
from core.jurisdiction import Jurisdiction
from projections.map import MapProjection
from projections.metrics import METRICS, MetricsProjection
from projections.rebuild import compare_tables
from projections.runner import apply_batch
from tests.conftest import auth_headers, database_url, unique_name
from tests.integration.history import History, start_of_history

TZ = ZoneInfo("Asia/Shanghai")
CASES = 2200
DAYS = 40


# --------------------------------------------------------------------------- independent


def day_of(at: Any) -> str:
    return parse_time(at).astimezone(TZ).date().isoformat()  # type: ignore[union-attr]


def deadline_before(events: list[dict[str, Any]], i: int) -> tuple[Any, str | None]:
    """(due, step) running just before event ``i``: every event records the deadline
    running after it."""
    if i == 0:
        return None, None
    data = events[i - 1]["data"]
    return parse_time(data.get("due")), data.get("due_step")


def owner_at(events: list[dict[str, Any]], i: int) -> tuple[str, str]:
    """(level, department) owning the case right after event ``i``."""
    level, dept = events[0]["data"]["level"], ""
    for e in events[: i + 1]:
        if e["type"] == "Dispatched":
            level, dept = e["data"]["level"], e["data"]["department"]
        elif e["type"] == "Escalated":
            level, dept = e["data"]["to_level"], ""
        elif e["type"] == "Returned":
            dept = ""
    return level, dept


def recompute(
    envelopes: list[dict[str, Any]], j: Jurisdiction, group_by: str, first: str, last: str
) -> dict[str, dict[str, Any]]:
    """{group key: {metric: value}} straight from the events (no counters table)."""
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for env in envelopes:
        by_case[env["case_id"]].append(env)
    tallies: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def key(day: str | None, grid: str, level: str, dept: str, inspector: str) -> str:
        return {
            "none": "",
            "day": day or "",
            "department": dept,
            "level": level,
            "inspector": inspector,
            "grid": grid,
            "community": j.grid(grid).parent,
            "district": j.partition_of(grid),
        }[group_by]

    def count(what: str, day: str | None, grid: str, level: str, dept: str, insp: str) -> None:
        if day is None or first <= day <= last:
            tallies[key(day, grid, level, dept, insp)][what] += 1

    for events in by_case.values():
        events.sort(key=lambda e: e["version"])
        head = events[0]
        assert head["type"] == "Reported"
        d = head["data"]
        grid = d["grid"]
        rep = d.get("reporter") or {}
        insp = rep.get("id") if rep.get("type") == "inspector" else ""
        insp = insp or (head["actor"] if head["role"] == "inspector" else "")
        types = [e["type"] for e in events]
        rep_day = day_of(head["at"])
        count("reports", rep_day, grid, d["level"], "", insp)
        if "Filed" in types or "MarkedDuplicate" in types:
            count("valid", rep_day, grid, d["level"], "", insp)
        if "Filed" in types:
            count("filed_of_reported", rep_day, grid, d["level"], "", insp)
        final_level, final_dept = owner_at(events, len(events) - 1)
        for i, e in enumerate(events):
            day = day_of(e["at"])
            level, dept = owner_at(events, i)
            before_level, _ = owner_at(events, i - 1) if i else (d["level"], "")
            due, step = deadline_before(events, i)
            in_time = due is None or parse_time(e["at"]) <= due  # type: ignore[operator]
            kind = e["type"]
            if kind == "Filed":
                count("filed", day, grid, level, dept, insp)
                voided = any(t in ("Rejected", "MarkedDuplicate") for t in types[i:])
                if not voided:
                    count("due_to_close", day, grid, final_level, final_dept, insp)
                    if "Closed" in types:
                        closed_at = types.index("Closed")
                        results = [x for x in range(closed_at) if types[x] == "ResultReported"]
                        count("closed_of_filed", day, grid, final_level, final_dept, insp)
                        r = results[-1]
                        rdue, rstep = deadline_before(events, r)
                        if rstep != "handle" or rdue is None or (
                            parse_time(events[r]["at"]) <= rdue
                        ):
                            count("closed_on_time", day, grid, final_level, final_dept, insp)
            elif kind == "Dispatched":
                count("dispatched", day, grid, level, dept, insp)
                if step != "dispatch" or in_time:
                    count("dispatched_on_time", day, grid, level, dept, insp)
                later = types[i + 1:]
                nxt = [t for t in later if t in ("Returned", "Dispatched")]
                if nxt and nxt[0] == "Returned":
                    count("dispatch_returned", day, grid, level, dept, insp)
            elif kind == "Returned":
                count("returned", day, grid, before_level, e["data"]["department"] or "", insp)
            elif kind == "ResultReported":
                count("handled", day, grid, level, dept, insp)
                if step != "handle" or in_time:
                    count("handled_on_time", day, grid, level, dept, insp)
            elif kind in ("VerificationPassed", "VerificationFailed"):
                count("verified", day, grid, level, dept, insp)
                if kind == "VerificationFailed":
                    count("reworks", day, grid, level, dept, insp)
            elif kind == "Closed":
                count("closed", day, grid, level, dept, insp)
            elif kind == "Escalated":
                count("escalations", day, grid, e["data"]["from_level"],
                      e["data"]["previous_department"] or "", insp)
            elif kind == "Supervised":
                count("supervision_orders", day, grid, level, dept, insp)
            elif kind == "ReturnVisited":
                count("visits", day, grid, level, dept, insp)
                if e["data"]["satisfaction"] in ("satisfied", "basically_satisfied"):
                    count("content", day, grid, level, dept, insp)
            elif kind == "Rejected":
                count("rejected", day, grid, level, dept, insp)
            elif kind == "MarkedDuplicate":
                count("merged", day, grid, level, dept, insp)
            elif kind == "OverdueMarked":
                count("overdue_marks", day, grid, level, dept, insp)
        # The state now (snapshots; not bound to the period, not by day).
        if group_by not in ("day",) and events[-1]["data"]["to_status"] not in (
            "closed", "rejected", "merged",
        ):
            count("open_now", None, grid, final_level, final_dept, insp)
            due, step = deadline_before(events, len(events))
            lights = {
                e["type"]: (e["data"]["step"], parse_time(e["data"]["due"]))
                for e in events if e["type"] in ("WarningMarked", "OverdueMarked")
            }
            red = due is not None and lights.get("OverdueMarked") == (step, due)
            yellow = due is not None and lights.get("WarningMarked") == (step, due) and not red
            if red:
                count("overdue_now", None, grid, final_level, final_dept, insp)
            if yellow:
                count("warning_now", None, grid, final_level, final_dept, insp)

    def rate(t: dict[str, int], num: str, den: str, complement: bool = False) -> Any:
        if not t.get(den):
            return None
        value = Fraction(t.get(num, 0), t[den])
        return 1 - value if complement else value

    out = {}
    for k, t in tallies.items():
        out[k] = {
            "reports": t["reports"],
            "valid_report_rate": rate(t, "valid", "reports"),
            "filed": t["filed"],
            "filing_rate": rate(t, "filed_of_reported", "reports"),
            "dispatched": t["dispatched"],
            "on_time_dispatch_rate": rate(t, "dispatched_on_time", "dispatched"),
            "dispatch_accuracy": rate(t, "dispatch_returned", "dispatched", complement=True),
            "on_time_handling_rate": rate(t, "handled_on_time", "handled"),
            "closed": t["closed"],
            "closure_rate": rate(t, "closed_of_filed", "due_to_close"),
            "on_time_closure_rate": rate(t, "closed_on_time", "due_to_close"),
            "rework_rate": rate(t, "reworks", "verified"),
            "overdue_open": t["overdue_now"],
            "escalations": t["escalations"],
            "supervision_orders": t["supervision_orders"],
            "satisfaction_rate": rate(t, "content", "visits"),
            "returned": t["returned"],
            "reworks": t["reworks"],
            "rejected": t["rejected"],
            "merged": t["merged"],
            "open_now": t["open_now"],
            "warning_now": t["warning_now"],
            "overdue_marks": t["overdue_marks"],
        }
    return out


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def history() -> tuple[History, list[dict[str, Any]]]:
    from core.refdata import load_reference
    from core.settings import Settings

    h = History(load_reference(Settings()), seed=20261123)
    h.generate(CASES, start_of_history(), DAYS)
    assert h.refused == 0
    return h, h.envelopes()


async def feed(
    conn: asyncpg.Connection, envelopes: list[dict[str, Any]], seed: int, redeliver: bool
) -> None:
    """Feed every projection of the test through ``apply_batch`` in random batches, per
    partition in order (as JetStream delivers), optionally re-sending old batches."""
    rng = random.Random(seed)
    projections = [MapProjection(), MetricsProjection()]
    i = 0
    sent: list[list[dict[str, Any]]] = []
    while i < len(envelopes):
        size = rng.choice((1, 7, 50, 333, 1000))
        batch = envelopes[i: i + size]
        i += size
        for projection in projections:
            await apply_batch(conn, projection, batch)
            if redeliver and sent and rng.random() < 0.2:
                assert await apply_batch(conn, projection, rng.choice(sent)) == 0
        sent.append(batch)


# --------------------------------------------------------------------------- tests


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return abs(float(a) - float(b)) < 1e-9


@pytest.mark.slow
async def test_metrics_equal_independent_recomputation(
    system: dict[str, Any], history: tuple[History, list[dict[str, Any]]]
) -> None:
    _, envelopes = history
    client, rt = system["client"], system["runtime"]
    j = rt.ref.jurisdiction
    assert len({e["case_id"] for e in envelopes}) >= 2000
    async with rt.pool.acquire() as conn:
        await feed(conn, envelopes, seed=1, redeliver=True)
    headers = await auth_headers(client, "auditor")
    start = start_of_history().astimezone(TZ).date()
    periods = [
        (start, start + timedelta(days=DAYS + 5)),
        (start + timedelta(days=7), start + timedelta(days=20)),
    ]
    checked = 0
    for group_by in ("none", "day", "department", "level", "community", "inspector", "grid",
                     "district"):
        for first, last in periods:
            response = await client.get(
                "/v1/metrics",
                params={"from": first.isoformat(), "to": last.isoformat(), "group_by": group_by},
                headers=headers,
            )
            assert response.status_code == 200, response.text
            body = response.json()
            expected = recompute(envelopes, j, group_by, first.isoformat(), last.isoformat())
            if group_by == "none":
                got = {"": body["totals"]["metrics"]}
            else:
                got = {g["key"] or "": g["metrics"] for g in body["groups"]}
                if group_by == "day":
                    # Every day of the period is listed (zeros included), for charts.
                    assert len(body["groups"]) == (last - first).days + 1
                    for k in [k for k in got if k not in expected]:
                        quiet = got.pop(k)  # a day without events: zeros and no rates
                        assert all(v in (0, None) for v in quiet.values()), (k, quiet)
                    for v in got.values():
                        v["overdue_open"] = v["open_now"] = v["warning_now"] = 0
            assert set(got) == set(expected), (group_by, set(got) ^ set(expected))
            for k, metrics in expected.items():
                for name, value in metrics.items():
                    assert name in METRICS
                    assert _close(got[k][name], value), (group_by, k, name, got[k][name], value)
                    checked += 1
    assert checked > 5000
    # The history really exercises every metric (none is trivially zero or empty).
    whole = recompute(envelopes, j, "none", "2000-01-01", "2100-01-01")[""]
    for name, value in whole.items():
        assert value not in (None, 0), name
    assert 0 < whole["dispatch_accuracy"] < 1 and 0 < whole["on_time_closure_rate"] < 1


@pytest.mark.slow
async def test_metrics_rows_do_not_depend_on_batching(
    history: tuple[History, list[dict[str, Any]]],
) -> None:
    """Rebuild equals live at the table level: the same events fed in other batch sizes
    (and with redeliveries) give identical rows in every table of both projections."""
    _, envelopes = history
    live, other = unique_name("t_live_"), unique_name("t_other_")
    conn = await asyncpg.connect(database_url())
    try:
        from core.db import _init_connection

        await _init_connection(conn)
        for schema, seed, redeliver in ((live, 7, True), (other, 99, False)):
            await conn.execute(f"CREATE SCHEMA {schema}")
            await conn.execute(f"SET search_path TO {schema}")
            from projections.base import POSITIONS_DDL

            await conn.execute(POSITIONS_DDL)
            await conn.execute(MapProjection().ddl())
            await conn.execute(MetricsProjection().ddl())
            await feed(conn, envelopes, seed, redeliver)
        for table, key in (
            ("metric_counts", "counter || day || grid || level || department || inspector"),
            ("metric_case_state", "case_id"),
            ("map_cases", "case_id"),
            ("map_grid_counts", "grid"),
        ):
            assert await compare_tables(conn, live, other, table, key) == [], table
            n = await conn.fetchval(f"SELECT count(*) FROM {live}.{table}")
            assert n > 0, table
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {live} CASCADE")
        await conn.execute(f"DROP SCHEMA IF EXISTS {other} CASCADE")
        await conn.close()


def test_every_metric_of_the_domain_is_defined() -> None:
    from projections.metrics import COUNTERS, definitions

    wanted = {
        "reports", "valid_report_rate", "filed", "filing_rate", "dispatched",
        "on_time_dispatch_rate", "dispatch_accuracy", "on_time_handling_rate", "closed",
        "closure_rate", "on_time_closure_rate", "rework_rate", "overdue_open", "escalations",
        "supervision_orders", "satisfaction_rate",
    }
    assert wanted <= set(METRICS)
    served = definitions()
    for item in served["metrics"]:
        assert item["zh"] and item["en"] and item["formula_zh"] and item["formula_en"]
        for c in item["numerator"] + item["denominator"]:
            assert c in COUNTERS or c.endswith("_now")
    assert {m["key"] for m in served["metrics"]} == set(METRICS)
