"""The realistic mix: reports (single and batched), lifecycle commands and dispatcher queries
at once, against a running system (``gridctl up`` or an external deployment).

What a command centre sees on a busy day, compressed:
- reports at ``rate``/s: a share arrives one by one (hotline call-takers, Open311 clients), the
  rest in batches (inspectors' phones syncing their offline queues, a forwarder in a storm);
- for a share of the reported cases a dispatcher files (立案) and dispatches (派遣) them, each a
  synchronous command that waits for the worker's outcome;
- dispatchers read the queue (newest page, one district's new cases), the map and case
  details at ``query_rate``/s.

Printed (numbers, never pass/fail): reports sent and visible per second, report → visible in
the case queue p50 / p95 / p99, HTTP latency of each kind of request, refusals.

    python -m benchmarks.mix --url http://127.0.0.1:8319 --db postgresql://…/griddispatch \\
        --rate 500 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from benchmarks.common import summary_ms
from benchmarks.loadgen import bodies, session, sign_in


@dataclass
class MixStats:
    """Everything the run observed; ``summary()`` turns it into the printed numbers."""

    sent: dict[str, float] = field(default_factory=dict)  # case_no → when the POST started
    seen: dict[str, float] = field(default_factory=dict)  # case_no → first visible
    http: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def timed(self, kind: str, started: float, ok: bool) -> None:
        self.http[kind].append(time.perf_counter() - started)
        if not ok:
            self.refused[kind] += 1

    def summary(self, started: float, sent_s: float) -> dict[str, Any]:
        """``visible_per_s``: reports visible ÷ (last one visible − start of the run)."""
        latencies = [self.seen[n] - self.sent[n] for n in self.sent if n in self.seen]
        visible_s = max(self.seen.values()) - started if self.seen else 0.0
        return {
            "reports_sent": len(self.sent),
            "reports_visible": len(self.seen),
            "sent_per_s": round(len(self.sent) / sent_s, 1),
            "visible_per_s": round(len(self.seen) / visible_s, 1) if visible_s else None,
            "report_to_visible": summary_ms(latencies),
            "http": {kind: summary_ms(v) for kind, v in sorted(self.http.items())},
            "refused": dict(self.refused),
        }


class Mix:
    """One run of the mix; see the module docstring."""

    def __init__(
        self, client: aiohttp.ClientSession, conn: asyncpg.Connection, args: Any
    ) -> None:
        self.client = client
        self.conn = conn
        self.args = args
        self.stats = MixStats()
        self.rng = random.Random(7)
        self.headers: dict[str, dict[str, str]] = {}
        self.to_dispatch: asyncio.Queue[str] = asyncio.Queue()
        self.producing = True

    async def call(
        self, method: str, path: str, headers: dict[str, str], **kwargs: Any
    ) -> tuple[int, Any]:
        """(status, JSON body or None) of one request; status 0 when the client gave up or
        the connection broke (far past saturation), counted as refused like any non-2xx."""
        try:
            async with self.client.request(method, path, headers=headers, **kwargs) as r:
                body = await r.json() if r.content_type == "application/json" else None
                return r.status, body
        except (TimeoutError, aiohttp.ClientError):
            return 0, None

    async def sign_in_all(self) -> None:
        for user in ("calltaker", "dispatcher"):
            self.headers[user] = await sign_in(self.client, user, f"{user}-demo")

    # ----------------------------------------------------------------- reports
    async def _single(self, body: dict[str, Any]) -> None:
        t = time.perf_counter()
        status, out = await self.call(
            "POST", "/v1/reports", json=body,
            headers={**self.headers["calltaker"], "Idempotency-Key": f"mix-{uuid.uuid4().hex}"},
        )
        self.stats.timed("report", t, status == 202)
        if status == 202:
            self.stats.sent[out["case_no"]] = t

    async def _batch(self, items: list[dict[str, Any]]) -> None:
        t = time.perf_counter()
        payload = [{**b, "idempotency_key": f"mixb-{uuid.uuid4().hex}"} for b in items]
        status, out = await self.call(
            "POST", "/v1/reports/batch", json={"reports": payload},
            headers=self.headers["calltaker"],
        )
        self.stats.timed("report_batch", t, status == 200)
        if status == 200:
            for item in out["results"]:
                if item["status"] == "accepted":
                    self.stats.sent[item["case_no"]] = t
                else:
                    self.stats.refused["report_in_batch"] += 1

    async def produce(self) -> None:
        """Reports at a fixed rate: singles, and batches of ``batch_size`` for their share."""
        args = self.args
        pool = bodies(max(1, int(args.rate * args.seconds)) + args.batch_size, 99)
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter()
        pending: list[dict[str, Any]] = []
        for i, body in enumerate(pool[: int(args.rate * args.seconds)]):
            delay = start + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.rng.random() < args.batch_share:
                pending.append(body)
                if len(pending) >= args.batch_size:
                    tasks.append(asyncio.create_task(self._batch(pending)))
                    pending = []
            else:
                tasks.append(asyncio.create_task(self._single(body)))
        if pending:
            tasks.append(asyncio.create_task(self._batch(pending)))
        await asyncio.gather(*tasks)
        self.producing = False

    # ----------------------------------------------------------------- visibility
    async def poll(self) -> None:
        """Read the case queue every 10 ms; the first sighting of a case is its visible time."""
        while self.producing or len(self.stats.seen) < len(self.stats.sent):
            pending = [n for n in self.stats.sent if n not in self.stats.seen]
            if pending:
                rows = await self.conn.fetch(
                    "SELECT case_no FROM case_queue WHERE case_no = ANY($1)", pending
                )
                now = time.perf_counter()
                for r in rows:
                    self.stats.seen[r["case_no"]] = now
                    if self.rng.random() < self.args.lifecycle_share:
                        self.to_dispatch.put_nowait(r["case_no"])
            await asyncio.sleep(0.01)

    # ----------------------------------------------------------------- lifecycle
    async def _act(self, case_no: str, verb: str, body: dict[str, Any]) -> bool:
        t = time.perf_counter()
        status, _ = await self.call(
            "POST", f"/v1/cases/{case_no}/actions/{verb}", json=body,
            headers={**self.headers["dispatcher"], "Idempotency-Key": f"mixc-{uuid.uuid4().hex}"},
        )
        self.stats.timed(f"command_{verb}", t, status == 200)
        return status == 200

    async def dispatcher(self) -> None:
        """File and dispatch cases as they become visible (one dispatcher's desk)."""
        while self.producing or not self.to_dispatch.empty():
            try:
                case_no = await asyncio.wait_for(self.to_dispatch.get(), timeout=0.5)
            except TimeoutError:
                continue
            if await self._act(case_no, "file", {"note": "立案 (bench)"}):
                await self._act(case_no, "dispatch", {})

    # ----------------------------------------------------------------- queries
    async def reader(self, district: str) -> None:
        """Dispatcher screens refreshing: queue pages, one district's new cases, map, detail."""
        queries: list[tuple[str, str, dict[str, Any]]] = [
            ("query_queue_newest", "/v1/queue", {"limit": 50}),
            ("query_queue_district_new", "/v1/queue",
             {"status": "reported", "district": district, "limit": 50}),
            ("query_map", "/v1/map", {}),
        ]
        interval = 1.0 / self.args.query_rate if self.args.query_rate > 0 else None
        while self.producing and interval is not None:
            kind, path, params = self.rng.choice(queries)
            if self.stats.seen and self.rng.random() < 0.25:
                kind, path, params = "query_case_detail", f"/v1/cases/{self._some_case()}", {}
            t = time.perf_counter()
            status, _ = await self.call(
                "GET", path, params={k: str(v) for k, v in params.items()},
                headers=self.headers["dispatcher"],
            )
            self.stats.timed(kind, t, status == 200)
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t)))

    def _some_case(self) -> str:
        return self.rng.choice(list(self.stats.seen)[-500:])


async def run_mix(
    url: str,
    db: str,
    schema: str,
    rate: float,
    seconds: float,
    batch_share: float = 0.5,
    batch_size: int = 20,
    lifecycle_share: float = 0.2,
    query_rate: float = 20.0,
    dispatchers: int = 4,
) -> dict[str, Any]:
    args = argparse.Namespace(
        rate=rate, seconds=seconds, batch_share=batch_share, batch_size=batch_size,
        lifecycle_share=lifecycle_share, query_rate=query_rate,
    )
    conn = await asyncpg.connect(db, server_settings={"search_path": schema})
    try:
        async with session(url, 200) as client:
            mix = Mix(client, conn, args)
            await mix.sign_in_all()
            district = str(await conn.fetchval("SELECT min(district) FROM case_queue") or "520102")
            t0 = time.perf_counter()
            workers = [asyncio.create_task(mix.poll())]
            workers += [asyncio.create_task(mix.dispatcher()) for _ in range(dispatchers)]
            workers.append(asyncio.create_task(mix.reader(district)))
            await mix.produce()
            sent_s = time.perf_counter() - t0
            await asyncio.wait_for(asyncio.gather(*workers), timeout=300)
    finally:
        await conn.close()
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "batch_share": batch_share,
        "batch_size": batch_size,
        "lifecycle_share": lifecycle_share,
        "query_rate_per_s": query_rate,
        **mix.stats.summary(t0, sent_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8319")
    parser.add_argument("--db", default="postgresql://postgres@127.0.0.1:5433/griddispatch")
    parser.add_argument("--schema", default="public")
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--batch-share", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--lifecycle-share", type=float, default=0.2)
    parser.add_argument("--query-rate", type=float, default=20)
    a = parser.parse_args()
    result = asyncio.run(
        run_mix(a.url, a.db, a.schema, a.rate, a.seconds, a.batch_share, a.batch_size,
                a.lifecycle_share, a.query_rate)
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
