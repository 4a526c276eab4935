"""A steady load of reports and lifecycle commands against the HTTP gateway, like real clients.

Clients behave as the API asks them to: every report carries an Idempotency-Key and is retried
with the SAME key (backoff + jitter) until it gets a 202 — through gateway restarts, broker or
database outages. A key that once got a 202 is a promise: the ledger (``accepted``) is what the
reconciliation checks against the event store and the read models.

A share of the accepted cases is then filed and dispatched by a dispatcher
(``POST /v1/cases/{no}/actions/{verb}`` with an Idempotency-Key per action); those are retried
with the same key too (404 until the case is visible in the read model; 202 "queued" when the
worker's answer did not arrive in time).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

CALL_TAKER = ("calltaker", "calltaker-demo")
DISPATCHER = ("dispatcher", "dispatcher-demo")


@dataclass
class Ledger:
    """Everything the clients were promised, and what they saw on the way."""

    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key → case number
    statuses: Counter[str] = field(default_factory=Counter)  # "report:202", "file:200", …
    lifecycle: dict[str, dict[str, str]] = field(default_factory=dict)  # case_no → verb → key
    first_202_after: dict[str, float] = field(default_factory=dict)
    last_202_at: float = 0.0
    retries: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds per 202'd report POST
    errors: list[str] = field(default_factory=list)  # refusals a client did not expect

    def done(self, verb: str) -> int:
        return sum(1 for verbs in self.lifecycle.values() if verb in verbs)


class LoadDriver:
    """``rate`` reports/s through ``concurrency`` clients; every ``lifecycle_every``-th accepted
    case is filed and dispatched."""

    def __init__(
        self,
        base_url: str,
        grids: list[str],
        category: str,
        run: str,
        ledger: Ledger,
        rate: float = 40.0,
        concurrency: int = 8,
        lifecycle_every: int = 5,
        actors: int = 6,
    ) -> None:
        self.base_url = base_url
        self.grids = grids
        self.category = category
        self.run = run
        self.ledger = ledger
        self.rate = rate
        self.concurrency = concurrency
        self.lifecycle_every = lifecycle_every
        self.actors = actors
        self.stop_event = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []
        self.counter = itertools.count()
        self.to_act: asyncio.Queue[str] = asyncio.Queue()
        self.tokens: dict[str, str] = {}
        self.token_lock = asyncio.Lock()
        self.client = httpx.AsyncClient(base_url=base_url, timeout=10)

    # ------------------------------------------------------------------ control
    async def start(self) -> None:
        for _ in range(self.concurrency):
            self.tasks.append(asyncio.create_task(self._reporter()))
        for _ in range(self.actors):
            self.tasks.append(asyncio.create_task(self._actor()))

    async def stop(self, finish: float = 15.0) -> None:
        """Stop new reports and new lifecycle work; commands already under way get ``finish``
        seconds to reach an outcome (cases still waiting for one simply are not acted on)."""
        self.stop_event.set()
        while not self.to_act.empty():
            self.to_act.get_nowait()
            self.to_act.task_done()
        reporters, actors = self.tasks[: self.concurrency], self.tasks[self.concurrency :]
        await asyncio.gather(*reporters, return_exceptions=True)
        _done, pending = await asyncio.wait(actors, timeout=finish) if actors else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*actors, return_exceptions=True)
        await self.client.aclose()

    def mark(self, label: str) -> None:
        """Remember when the next 202 after ``label`` arrives (intake recovery time)."""
        self.ledger.first_202_after[label] = -time.monotonic()

    # ------------------------------------------------------------------ helpers
    async def token(self, who: tuple[str, str], refresh: bool = False) -> str:
        if not refresh and who[0] in self.tokens:
            return self.tokens[who[0]]
        async with self.token_lock:  # one sign-in for all clients (argon2 is slow on purpose)
            return await self._sign_in(who, refresh)

    async def _sign_in(self, who: tuple[str, str], refresh: bool) -> str:
        if refresh or who[0] not in self.tokens:
            delays = _delays()
            while True:
                try:
                    r = await self.client.post(
                        "/v1/auth/token", data={"username": who[0], "password": who[1]}
                    )
                    if r.status_code == 200:
                        self.tokens[who[0]] = r.json()["access_token"]
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(next(delays))
        return self.tokens[who[0]]

    async def _post(
        self, path: str, who: tuple[str, str], key: str, body: dict[str, Any]
    ) -> httpx.Response | None:
        token = await self.token(who)
        try:
            r = await self.client.post(
                path,
                json=body,
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            )
        except httpx.HTTPError:
            return None
        if r.status_code == 401:
            await self.token(who, refresh=True)
        return r

    # ------------------------------------------------------------------ reporters
    async def _reporter(self) -> None:
        interval = self.concurrency / self.rate
        while not self.stop_event.is_set():
            started = time.monotonic()
            n = next(self.counter)
            await self.report(f"{self.run}-{n:06d}", self.grids[n % len(self.grids)])
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def report(
        self, key: str, grid: str, description: str | None = None, act: bool = True
    ) -> str:
        """POST one report, retried with the same key until 202; returns the case number."""
        body = {
            "category": self.category,
            "grid": grid,
            "description": description or f"fault drill report {key}",
            "source": "hotline",
            "reporter": {"name": "測試", "phone": "13900000000", "type": "citizen"},
        }
        delays = _delays()
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:
            sent = time.monotonic()
            r = await self._post("/v1/reports", CALL_TAKER, key, body)
            status = str(r.status_code) if r is not None else "conn_error"
            self.ledger.statuses[f"report:{status}"] += 1
            if r is not None and r.status_code == 503 and r.headers.get("retry-after"):
                self.ledger.statuses["report:503_retry_after"] += 1
            if r is not None and r.status_code == 202:
                case_no = str(r.json()["case_no"])
                previous = self.ledger.accepted.setdefault(key, case_no)
                assert previous == case_no, f"key {key} got two case numbers"
                now = time.monotonic()
                self.ledger.latencies.append(now - sent)
                self.ledger.last_202_at = now
                for label, value in self.ledger.first_202_after.items():
                    if value < 0 and now > -value:
                        self.ledger.first_202_after[label] = now - (-value)
                if act and len(self.ledger.accepted) % self.lifecycle_every == 0:
                    self.to_act.put_nowait(case_no)
                return case_no
            if r is not None and r.status_code < 500 and r.status_code not in (401, 429):
                self.ledger.errors.append(f"report {key}: {r.status_code} {r.text[:200]}")
                raise AssertionError(f"report {key} refused: {r.status_code} {r.text}")
            self.ledger.retries += 1
            await asyncio.sleep(next(delays))
        self.ledger.errors.append(f"report {key}: no 202 within 60 s")
        return ""

    # ------------------------------------------------------------------ lifecycle
    async def _actor(self) -> None:
        while not self.stop_event.is_set():
            try:
                case_no = await asyncio.wait_for(self.to_act.get(), timeout=0.5)
            except TimeoutError:
                continue
            try:
                for verb, args in (("file", {"note": "fault drill"}), ("dispatch", {})):
                    await self.act(case_no, verb, args)
            except AssertionError as exc:
                self.ledger.errors.append(str(exc))
            finally:
                self.to_act.task_done()

    async def act(self, case_no: str, verb: str, args: dict[str, Any]) -> int:
        """One lifecycle command, retried with the same key until it has an outcome."""
        key = f"{verb}-{case_no}"
        delays = _delays(cap=2.0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = await self._post(f"/v1/cases/{case_no}/actions/{verb}", DISPATCHER, key, args)
            status = r.status_code if r is not None else 0
            self.ledger.statuses[f"{verb}:{status or 'conn_error'}"] += 1
            if status == 200:
                self.ledger.lifecycle.setdefault(case_no, {})[verb] = key
                return status
            if status in (403, 409, 422):
                raise AssertionError(f"{verb} {case_no} refused: {status} {r.text if r else ''}")
            # 404 (not yet in the read model), 202 (outcome not back yet), 5xx, connection
            await asyncio.sleep(next(delays))
        raise AssertionError(f"{verb} {case_no} got no outcome in 120 s")


def _delays(base: float = 0.1, cap: float = 1.0) -> Any:
    """Client retry delays: exponential with full jitter."""
    attempt = 0
    while True:
        yield random.uniform(base / 2, min(cap, base * 2**attempt))
        attempt += 1


async def publish_reports_direct(
    js: Any, topo: Any, jurisdiction: Any, category: str, keys: list[str], grid: str
) -> dict[str, str]:
    """Queue report commands straight on the COMMANDS stream, exactly as the gateway does
    (``gateways/http/reports.py``) — what a gateway replica accepts in the instant the database
    goes away. Returns key → case number for every command JetStream acknowledged (the same
    promise a 202 is)."""
    from datetime import UTC, datetime

    from aggregates.commands import Command, ReportArgs, Reporter
    from core import codec
    from core.ids import case_id_for_key, case_no_for_id

    district = jurisdiction.partition_of(grid)
    accepted: dict[str, str] = {}
    for key in keys:
        case_id = case_id_for_key(key)
        args = ReportArgs(
            category=category,
            grid=grid,
            community=jurisdiction.grid(grid).parent,
            district=district,
            description=f"queued while the database is down {key}",
            reporter=Reporter(name="測試", phone="13900000000"),
            source="hotline",
        )
        command = Command(
            command_id=key,
            verb="report",
            case_id=str(case_id),
            case_no=case_no_for_id(case_id),
            partition=district,
            actor="calltaker",
            role="call_taker",
            channel="hotline",
            at=datetime.now(UTC),
            args=args.model_dump(mode="json"),
        )
        await js.publish(
            topo.command_subject(district, "report"),
            codec.dumps(command.model_dump(mode="json")),
            headers={"Nats-Msg-Id": f"report:{key}"},
            timeout=5,
        )
        accepted[key] = command.case_no
    return accepted
