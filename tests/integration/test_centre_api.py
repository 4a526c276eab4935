"""The command centre's API through the running system (HTTP → NATS → store → projections):
queue v2 (filters, every sort, cursors), exports, map drill-down, metrics, the live stream
and its resumption, rebuild equals live, Prometheus, and jurisdiction scoping."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from core.ids import case_no_for_key
from gateways.runtime import Runtime
from projections.map import MapProjection
from projections.metrics import MetricsProjection
from projections.rebuild import rebuild
from tests.conftest import auth_headers, database_url, eventually

CATEGORY_URGENT = "SJ0101"


async def _report(client: Any, headers: dict[str, str], grid: str, key: str, text: str,
                  category: str = CATEGORY_URGENT) -> str:
    response = await client.post(
        "/v1/reports",
        json={"category": category, "grid": grid, "description": text, "source": "hotline",
              "reporter": {"name": "趙六", "phone": "13600000000", "type": "citizen"}},
        headers={**headers, "Idempotency-Key": key},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["case_no"])


async def _act(client: Any, case_no: str, verb: str, headers: dict[str, str], **args: Any) -> None:
    response = await client.post(f"/v1/cases/{case_no}/actions/{verb}", json=args,
                                 headers=headers)
    assert response.status_code == 200, (verb, response.text)


async def _queue(client: Any, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/queue", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _all_pages(client: Any, headers: dict[str, str], **params: Any) -> list[str]:
    numbers: list[str] = []
    cursor = None
    while True:
        page = await _queue(client, headers, **params, **({"cursor": cursor} if cursor else {}))
        numbers.extend(i["case_no"] for i in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return numbers


async def _seed(system: dict[str, Any]) -> dict[str, Any]:
    """18 reports over three districts; some filed, some dispatched, one supervised."""
    client, rt = system["client"], system["runtime"]
    j = rt.ref.jurisdiction
    taker = await auth_headers(client, "call_taker")
    dispatcher = await auth_headers(client, "dispatcher")
    supervisor = await auth_headers(client, "supervisor")
    districts = sorted({j.partition_of(g) for g in j.grids})[:3]
    grids = [j.grids_under(d)[i] for d in districts for i in (0, 1)]
    numbers = []
    for i in range(18):
        clock = system["clock"]
        clock.advance(minutes=7)
        numbers.append(await _report(client, taker, grids[i % len(grids)], f"centre-{i:03d}",
                                     f"路燈不亮 lamp out #{i}", category="BJ0101" if i % 2
                                     else CATEGORY_URGENT))

    async def visible() -> bool:
        return (await _queue(client, dispatcher, limit=500))["count"] == 18

    await eventually(visible, timeout=30)
    for case_no in numbers[:8]:
        await _act(client, case_no, "file", dispatcher)
    for case_no in numbers[:4]:
        await _act(client, case_no, "dispatch", dispatcher)
    await _act(client, numbers[5], "supervise", supervisor, reason="群眾多次反映")

    async def settled() -> bool:
        page = await _queue(client, dispatcher, status="dispatched")
        return page["count"] == 4
    await eventually(settled, timeout=30)
    return {"numbers": numbers, "grids": grids, "districts": districts,
            "dispatcher": dispatcher, "taker": taker}


async def test_queue_filters_sorts_cursors_and_exports(system: dict[str, Any]) -> None:
    client = system["client"]
    seeded = await _seed(system)
    h, numbers = seeded["dispatcher"], seeded["numbers"]

    # Unauthenticated: 401; the queue needs a token.
    assert (await client.get("/v1/queue")).status_code == 401

    everything = await _queue(client, h, limit=500, with_total=True)
    assert everything["total"] == 18 and set(numbers) == {i["case_no"] for i in everything["items"]}
    assert not any("reporter_phone" in i or "reporter_name" in i for i in everything["items"])

    # Every sort, both directions: paging with a cursor (page size 4) gives exactly the order
    # of one big page, without repeats or gaps, and the order is the documented one.
    rank = {"urgent": 0, "important": 1, "ordinary": 2}
    far = "9999"
    for sort in ("reported_at", "due_at", "priority", "updated_at"):
        for order in ("asc", "desc"):
            paged = await _all_pages(client, h, sort=sort, order=order, limit=4)
            single = await _queue(client, h, sort=sort, order=order, limit=500)
            assert paged == [i["case_no"] for i in single["items"]], (sort, order)
            assert len(paged) == 18 == len(set(paged))
            items = single["items"]
            if sort == "priority":
                keys = [(rank[i["priority"]], i["due_at"] or far) for i in items]
            elif sort == "due_at":
                keys = [i["due_at"] or far for i in items]
            else:
                keys = [i[sort] for i in items]
            assert keys == sorted(keys, reverse=(order == "desc")), (sort, order)

    # Filters.
    assert (await _queue(client, h, status="dispatched"))["count"] == 4
    assert (await _queue(client, h, status=["filed", "dispatched"]))["count"] == 8
    assert (await _queue(client, h, open="true"))["count"] == 18
    assert (await _queue(client, h, supervised="true"))["items"][0]["case_no"] == numbers[5]
    district = seeded["districts"][0]
    in_district = await _queue(client, h, district=district, limit=500)
    assert in_district["count"] == 6 and all(i["district"] == district
                                             for i in in_district["items"])
    assert (await _queue(client, h, node=district, limit=500))["count"] == 6
    grid = seeded["grids"][0]
    assert {i["grid"] for i in (await _queue(client, h, grid=grid))["items"]} == {grid}
    community = system["runtime"].ref.jurisdiction.grid(grid).parent
    assert (await _queue(client, h, community=community))["count"] >= 3
    dispatched = (await _queue(client, h, status="dispatched"))["items"]
    dept = dispatched[0]["department"]
    assert all(i["department"] == dept
               for i in (await _queue(client, h, department=dept))["items"])
    assert (await _queue(client, h, q=numbers[3][:9]))["count"] >= 1
    assert (await _queue(client, h, q="#17"))["items"][0]["case_no"] == numbers[17]
    # Traffic lights partition the open cases (the SLA watcher may have raised some by now).
    lights = {x: (await _queue(client, h, light=x, limit=500))["items"]
              for x in ("green", "yellow", "red", "none")}
    assert sum(len(v) for v in lights.values()) == 18
    assert all(not i["warning"] and i["due_at"] for i in lights["green"])
    assert all(i["warning"] and not i["overdue"] for i in lights["yellow"])
    assert all(i["overdue"] for i in lights["red"])
    some = everything["items"][0]["priority"]
    by_priority = await _queue(client, h, priority=[some], limit=500)
    assert by_priority["count"] and all(i["priority"] == some for i in by_priority["items"])
    assert by_priority["count"] == sum(i["priority"] == some for i in everything["items"])
    bad = await client.get("/v1/queue", params={"status": "nope"}, headers=h)
    assert bad.status_code == 422 and bad.json()["error"] == "unknown_status"
    cursor = (await _queue(client, h, limit=2))["next_cursor"]
    wrong = await client.get("/v1/queue", params={"cursor": cursor, "sort": "due_at"}, headers=h)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_cursor"

    # Exports: same rows and order as the listing, streamed, CSV (with BOM) and JSON Lines.
    listing = [i["case_no"] for i in (await _queue(client, h, sort="due_at", limit=500))["items"]]
    csv_resp = await client.get("/v1/queue/export.csv", params={"sort": "due_at"}, headers=h)
    assert csv_resp.status_code == 200 and csv_resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_resp.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(csv_resp.content.decode("utf-8-sig"))))
    assert [r["case_no"] for r in rows] == listing
    assert rows[0]["status_zh"] and "reporter_phone" not in rows[0]
    jsonl = await client.get("/v1/queue/export.jsonl", params={"sort": "due_at",
                                                              "status": "dispatched"}, headers=h)
    lines = [orjson.loads(x) for x in jsonl.content.splitlines()]
    assert len(lines) == 4 and all(x["status"] == "dispatched" for x in lines)

    # A district dispatcher sees only its district, in the queue and in exports.
    district_h = await auth_headers(client, f"dispatcher-{district}")
    own = await _queue(client, district_h, limit=500)
    assert own["count"] == 6 and {i["district"] for i in own["items"]} == {district}
    export = await client.get("/v1/queue/export.jsonl", headers=district_h)
    assert len(export.content.splitlines()) == 6


async def test_map_and_metrics(system: dict[str, Any]) -> None:
    client, rt = system["client"], system["runtime"]
    j = rt.ref.jurisdiction
    seeded = await _seed(system)
    h = seeded["dispatcher"]

    async def map_ready() -> dict[str, Any] | None:
        r = await client.get("/v1/map", headers=h)
        body: dict[str, Any] = r.json()
        return body if body["totals"]["open"] == 18 and body["totals"]["supervised"] == 1 else None

    city = await eventually(map_ready, timeout=20)
    assert city["node"]["code"] == j.city_code and city["path"] == []
    # Drill down: city → district → community → grid; children always add up.
    assert sum(c["open"] for c in city["children"]) == 18
    district = seeded["districts"][0]
    d = (await client.get("/v1/map", params={"node": district}, headers=h)).json()
    assert d["totals"]["open"] == 6 and d["path"][-1]["code"] == j.city_code
    assert {c["level"] for c in d["children"]} == {"community"}
    community = j.grid(seeded["grids"][0]).parent
    c = (await client.get("/v1/map", params={"node": community}, headers=h)).json()
    assert {x["level"] for x in c["children"]} == {"grid"}
    assert sum(x["open"] for x in c["children"]) == c["totals"]["open"] >= 3
    assert set(c["grids"]) <= set(j.grids_under(community))
    g = (await client.get("/v1/map", params={"node": seeded["grids"][0]}, headers=h)).json()
    assert g["children"] == [] and g["totals"]["open"] == 3
    assert (await client.get("/v1/map", params={"node": "nope"}, headers=h)).status_code == 404
    # The district dispatcher: its own district only; another district does not exist.
    dh = await auth_headers(client, f"dispatcher-{district}")
    own = (await client.get("/v1/map", headers=dh)).json()
    assert own["node"]["code"] == district and own["totals"]["open"] == 6
    other = seeded["districts"][1]
    assert (await client.get("/v1/map", params={"node": other}, headers=dh)).status_code == 404
    assert (await client.get("/v1/metrics", params={"node": other},
                             headers=dh)).status_code == 404

    # Metrics of today, grouped several ways; rates in 0…1; definitions served.
    async def metrics_ready() -> dict[str, Any] | None:
        r = await client.get("/v1/metrics", headers=h)
        body: dict[str, Any] = r.json()
        return body if body["totals"]["metrics"]["dispatched"] == 4 else None

    body = await eventually(metrics_ready, timeout=20)
    t = body["totals"]["metrics"]
    assert t["reports"] == 18 and t["filed"] == 8 and t["supervision_orders"] == 1
    assert t["filing_rate"] == pytest.approx(8 / 18) and t["valid_report_rate"] == t["filing_rate"]
    assert t["open_now"] == 18 and t["closure_rate"] == 0 and t["satisfaction_rate"] is None
    by_district = (await client.get("/v1/metrics", params={"group_by": "district"},
                                    headers=h)).json()
    assert {g["key"] for g in by_district["groups"]} == set(seeded["districts"])
    assert sum(g["metrics"]["reports"] for g in by_district["groups"]) == 18
    by_day = (await client.get("/v1/metrics", params={"group_by": "day"}, headers=h)).json()
    assert len(by_day["groups"]) == 30 and by_day["groups"][-1]["metrics"]["reports"] == 18
    dept = (await client.get("/v1/metrics", params={"group_by": "department"}, headers=h)).json()
    assert sum(g["metrics"]["dispatched"] for g in dept["groups"]) == 4
    assert (await client.get("/v1/metrics", params={"group_by": "colour"},
                             headers=h)).status_code == 422
    defs = (await client.get("/v1/metrics/definitions", headers=h)).json()
    closure = next(m for m in defs["metrics"] if m["key"] == "closure_rate")
    assert "结案率" in closure["formula_zh"] and "Closure rate" in closure["formula_en"]
    exported = await client.get("/v1/metrics/export.csv", params={"group_by": "district"},
                                headers=h)
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert rows[-1]["key"] == "TOTAL" and rows[-1]["n_reported"] == "18"
    assert len(rows) == 4 and "valid_report_rate" in rows[0]

    # Prometheus: intake, consumer lag, projection lag, open / overdue.
    text = (await client.get("/metrics")).text
    for name in ("griddispatch_commands_accepted_total", "griddispatch_consumer_pending_messages",
                 "griddispatch_projection_lag_events", "griddispatch_cases_open",
                 "griddispatch_cases_overdue", "griddispatch_intake_reports_per_second"):
        assert name in text, name
    assert f'griddispatch_cases_open{{district="{district}"}} 6.0' in text


async def test_rebuild_equals_live_for_map_and_metrics(system: dict[str, Any]) -> None:
    rt: Runtime = system["runtime"]
    await rt.stop_role("watcher")  # no yellow / red lights arriving while we compare
    await _seed(system)
    schema = system["settings"].db_schema
    tables = {
        "map_cases": "case_id", "map_grid_counts": "grid",
        "metric_counts": "counter, day, grid, level, department, inspector",
        "metric_case_state": "case_id",
    }

    async def snapshot() -> dict[str, list[dict[str, Any]]]:
        async with rt.pool.acquire() as conn:
            return {t: [dict(r) for r in await conn.fetch(f"SELECT * FROM {t} ORDER BY {k}")]
                    for t, k in tables.items()}

    async def caught_up() -> bool:
        """Both read models applied every stored event of every partition."""
        heads = {p: await asyncio.to_thread(rt.stores.get(p).recorder.max_notification_id)
                 for p in rt.ref.partitions}
        async with rt.pool.acquire() as conn:
            rows = await conn.fetch("SELECT projection, partition, position "
                                    "FROM projection_positions")
        applied = {(r["projection"], r["partition"]): r["position"] for r in rows}
        return all(applied.get((name, p), 0) == (head or 0)
                   for name in ("map", "metrics") for p, head in heads.items())

    await eventually(caught_up, timeout=20)
    before = await snapshot()
    assert all(before.values())
    for projection in (MapProjection(), MetricsProjection()):
        result = await rebuild(database_url(), schema, projection, rt.stores, rt.ref.partitions)
        assert result.events > 18
    after = await snapshot()
    for t in tables:
        for a, b in zip(before[t], after[t], strict=True):
            assert a == b, (t, a, b)
    # The command line does the same, with a progress bar (separate process).
    env = {**os.environ, "DATABASE_URL": database_url(), "GRID_DB_SCHEMA": schema,
           "GRID_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateways.cli", "projections", "rebuild", "metrics", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "metrics" in err.decode() and "个事件" in err.decode()
    assert await snapshot() == before
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateways.cli", "projections", "list", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert "metric_counts" in out.decode() and "map_grid_counts" in out.decode()


# --------------------------------------------------------------------------- the stream


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def served(system: dict[str, Any]) -> AsyncIterator[str]:
    """The system's app on a real socket (SSE needs a streaming HTTP server)."""
    from gateways.http.app import create_app
    from gateways.http.server import make_server

    port = _free_port()
    server = make_server(create_app(system["runtime"], system["clock"]), "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def _events(
    client: httpx.AsyncClient, params: dict[str, Any], headers: dict[str, str], want: int,
    kinds: tuple[str, ...] = ("change",), timeout: float = 20.0,
    ready: asyncio.Event | None = None,
) -> list[tuple[str, int, dict[str, Any]]]:
    """Read SSE events until ``want`` events of ``kinds`` arrived (then disconnect); ``ready``
    is set at the first event (``hello`` / ``reset``: everything after it is delivered)."""
    got: list[tuple[str, int, dict[str, Any]]] = []

    async def read() -> None:
        async with client.stream("GET", "/v1/stream", params=params, headers=headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            event, seq, data = "message", -1, ""
            async for line in r.aiter_lines():
                if line.startswith("id: "):
                    seq = int(line[4:])
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and data:
                    got.append((event, seq, orjson.loads(data)))
                    event, data = "message", ""
                    if ready is not None:
                        ready.set()
                    if sum(1 for e in got if e[0] in kinds) >= want:
                        return

    await asyncio.wait_for(read(), timeout=timeout)
    return got


async def test_stream_delivers_changes_and_resumes_without_loss(system: dict[str, Any]) -> None:
    client, rt = system["client"], system["runtime"]
    j = rt.ref.jurisdiction
    taker = await auth_headers(client, "call_taker")
    token = (await auth_headers(client, "dispatcher"))["Authorization"].split()[1]
    grid = sorted(j.grids)[0]
    async with served(system) as base, httpx.AsyncClient(base_url=base) as http:
        # No token: refused.
        assert (await http.get("/v1/stream")).status_code == 401
        # Fresh start: hello carries the last sequence; then a report arrives as a change,
        # already visible in the queue read model (read-your-stream barrier).
        subscribed = asyncio.Event()
        reader = asyncio.create_task(
            _events(http, {"access_token": token}, {}, want=1, kinds=("change",),
                    ready=subscribed)
        )
        await asyncio.wait_for(subscribed.wait(), timeout=20)
        first = await _report(client, taker, grid, "stream-000", "井蓋缺失 #0")
        events = await reader
        assert events[0][0] == "hello"
        hello_seq = events[0][1]
        change = next(e for e in events if e[0] == "change")
        assert change[1] > hello_seq
        assert change[2]["type"] == "Reported" and change[2]["case_no"] == first
        assert change[2]["case"]["status"] == "reported" and change[2]["case"]["grid"] == grid
        last_seen = change[1]
        # Offline: five more reports and a filing happen meanwhile.
        missed = [await _report(client, taker, grid, f"stream-{i:03d}", f"井蓋缺失 #{i}")
                  for i in range(1, 6)]
        await eventually(lambda: _status(client, missed[-1], "reported"), timeout=20)
        await _act(client, first, "file", await auth_headers(client, "dispatcher"))
        # Reconnect with Last-Event-ID: every missed change, in order, none twice, no gap.
        resumed = await _events(http, {"access_token": token},
                                {"Last-Event-ID": str(last_seen)}, want=6)
        changes = [e for e in resumed if e[0] == "change"]
        assert [e[0] for e in resumed if e[0] != "change"] == []
        seqs = [e[1] for e in changes]
        assert seqs == list(range(last_seen + 1, last_seen + 1 + len(seqs)))
        assert [e[2]["case_no"] for e in changes[:5]] == missed
        assert changes[5][2]["type"] == "Filed" and changes[5][2]["case_no"] == first
        # The query-parameter form resumes the same way.
        again = await _events(http, {"access_token": token, "last_event_id": str(last_seen)},
                              {}, want=1)
        assert again[0][1] == last_seen + 1
        # An id from the future (another stream): reset, then live changes.
        reset = await _events(http, {"access_token": token}, {"Last-Event-ID": "999999"},
                              want=1, kinds=("reset",))
        assert reset[0][0] == "reset"
        # A district dispatcher's stream carries only its district's cases.
        other = next(g for g in sorted(j.grids) if j.partition_of(g) != j.partition_of(grid))
        dtoken = (await auth_headers(client, f"dispatcher-{j.partition_of(other)}"))[
            "Authorization"].split()[1]
        subscribed = asyncio.Event()
        scoped = asyncio.create_task(
            _events(http, {"access_token": dtoken}, {}, want=1, ready=subscribed)
        )
        await asyncio.wait_for(subscribed.wait(), timeout=20)
        await _report(client, taker, grid, "stream-100", "not yours")
        mine = await _report(client, taker, other, "stream-101", "yours")
        got = await scoped
        assert [e[2]["case_no"] for e in got if e[0] == "change"] == [mine]
        assert case_no_for_key("stream-101") == mine


async def _status(client: Any, case_no: str, status: str) -> bool:
    r = await client.get(f"/v1/cases/{case_no}", headers=await auth_headers(client, "dispatcher"))
    return r.status_code == 200 and r.json()["status"] == status
