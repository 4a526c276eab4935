"""The floor of each hop at a trickle: the CPU of the smallest thing each stage of a report's
way does, measured alone at a fixed rate on its own servers.

    python -m benchmarks.floors --rate 50 --seconds 10

Why: issue 19 asks for CPU per report at a steady 50/s and 100/s within 3 × a plain INSERT
app's. At a trickle nothing is batched, so every message pays every hop's wake-ups; this
measures what one hop costs at the least — the broker storing a message, delivering it to a
pull consumer and taking its ack, a Python process woken for it, a PostgreSQL transaction —
so docs/performance.md can say which part of griddispatch's per-report CPU is the stack's
floor for the data flow of DESIGN.md, and which is our code.

Each scenario starts a fresh *stage* process (``--stage``) next to an embedded nats-server
and PostgreSQL; this process drives messages at the rate and counts, from ``/proc``, the CPU
of the stage, of nats-server and of PostgreSQL (all its processes) over the middle of the run.
The driver's own CPU is not counted.

- ``idle``: no message at all, the stage of ``js-pull`` waiting — what the servers spend
  anyway (per message interval; the other rows are printed with it and above it).
- ``core``: a core NATS publish; the stage is subscribed and does nothing.
- ``core+insert``: the same, the stage does one ``INSERT … ON CONFLICT`` (autocommit) —
  the plain app's work for a report, without its HTTP.
- ``js-store``: a JetStream publish to a file-backed stream, waiting for the ack; no stage.
- ``js-pull``: the same, and the stage pulls each message (``core.pull.fetch``, one open
  waiting request) and acks it.
- ``js-pull+tx``: the same, and the stage runs one transaction (BEGIN, one INSERT, COMMIT)
  per message before the ack — a projector's least work.
- ``js-pull+rm9``: the same, but the transaction has a projector's shape: the lock and the
  positions read, one upsert into each of nine small tables, the positions written — twelve
  statements between BEGIN and COMMIT, each a round trip (asyncpg has no pipeline for
  different statements) — the least the nine read models of a report cost through asyncpg,
  whatever their rows hold.
- ``js-pull+es``: the same as ``js-pull+tx``, but the stage saves one new aggregate of one
  event per message through the event store of this stack (eventsourcing's PostgreSQL
  recorder as ``core.eventstore`` configures it: table lock, INSERT, NOTIFY; in a thread, as
  psycopg is synchronous) — a worker's least work with the relay in place.
- ``js-pull+es+pub``: the same, and the stage then publishes the saved event to a second
  JetStream stream, waiting for its ack, before it acks the command — a worker's least work
  if it published its events itself (the relay off the report's way).

The trivial aggregate (:class:`FloorNote`) is eventsourcing's own ``Aggregate``, not the case:
these rows are the stack's floor, whatever the domain costs on top.

``--burst N`` sends the messages N at a time (``--rate`` still counts messages): the floor of
each hop for a batched intake (50 reports per request), where the stage takes each burst as
one batch — one transaction, one ``save`` of N aggregates, all rows of a table by one
statement, as the worker and the projector do with a batch (here two narrow columns through
``unnest``; the read models' rows, wider, go as one JSON parameter:
``projections.base.insert_rows``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import nats
import psutil
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from benchmarks.against_plain import CpuSampler, live_threads_cpu
from benchmarks.standard import machine
from core.embedded import EmbeddedNats, EmbeddedPostgres
from core.eventstore import eventsourcing_env

SCENARIOS = (
    "idle", "core", "core+insert", "js-store", "js-pull", "js-pull+tx", "js-pull+rm9",
    "js-pull+es", "js-pull+es+pub",
)
STREAM = "FLOOR"
SUBJECT = "floor.msg"
PAYLOAD = b"x" * 900  # about a report command's size
TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS floor_rows (key text PRIMARY KEY, body bytea NOT NULL, "
    "at timestamptz NOT NULL DEFAULT now())"
)
INSERT = "INSERT INTO floor_rows (key, body) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING"
#: The nine read-model tables of ``js-pull+rm9`` and their positions.
READ_MODELS = tuple(f"floor_rm{i}" for i in range(9))
READ_MODEL_DDL = "".join(
    f"CREATE TABLE IF NOT EXISTS {t} (key text PRIMARY KEY, body text NOT NULL, n int NOT NULL "
    "DEFAULT 0, at timestamptz NOT NULL DEFAULT now());"
    for t in READ_MODELS
) + (
    "CREATE TABLE IF NOT EXISTS floor_positions (name text PRIMARY KEY, position bigint NOT "
    "NULL);"
)
#: Every row of a batch by one statement, as the read models write theirs (two narrow columns
#: here, as arrays through unnest).
UPSERT = (
    "INSERT INTO {table} (key, body) SELECT * FROM unnest($1::text[], $2::text[]) "
    "ON CONFLICT (key) DO UPDATE SET body = EXCLUDED.body, n = {table}.n + 1"
)
INSERT_MANY = (
    "INSERT INTO floor_rows (key, body) SELECT * FROM unnest($1::text[], $2::bytea[]) "
    "ON CONFLICT (key) DO NOTHING"
)
#: Where ``js-pull+es+pub`` publishes the saved events (a stream of their own).
OUT_STREAM = "FLOOR_OUT"
OUT_SUBJECT = "floor.out"


class FloorNote(Aggregate):
    """The least an event-sourced write can be: one aggregate, one event, one text field."""

    @event("Made")
    def __init__(self, body: str) -> None:
        self.body = body


class FloorStore(Application[Any]):
    """An event store configured as the cases' are (``core.eventstore.eventsourcing_env``):
    its own table, ``floor_events``."""

    name = "Floor"


def _floor_store(db_url: str) -> FloorStore:
    return FloorStore(env=eventsourcing_env(db_url))


# ----------------------------------------------------------------------------- the stage


async def nine_read_models(
    conn: asyncpg.Connection, rows: list[tuple[str, str]], last: int
) -> None:
    """A projector's least work for a batch, inside the caller's transaction: the lock (and
    the asynchronous commit, as ``projections.runner.projection_lock``), the positions read,
    one upsert into each read-model table (all the batch's rows by one statement, as
    ``projections.queue`` writes its own), the position written."""
    await conn.execute(
        "SELECT set_config('synchronous_commit', 'off', true), "
        "pg_advisory_xact_lock(hashtext('floor'))"
    )
    await conn.fetch("SELECT name, position FROM floor_positions")
    keys, bodies = [k for k, _ in rows], [b for _, b in rows]
    for table in READ_MODELS:
        await conn.execute(UPSERT.format(table=table), keys, bodies)
    await conn.execute(
        "INSERT INTO floor_positions (name, position) VALUES ('floor', $1) "
        "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
        last,
    )


async def stage(mode: str, nats_url: str, db_url: str, burst: int = 1) -> None:
    """Receive each message (each burst as one batch) and do the scenario's least work for
    it, until killed."""
    nc = await nats.connect(nats_url)
    writes = any(part in mode for part in ("insert", "+tx", "+rm9"))
    conn = await asyncpg.connect(db_url) if writes else None
    if mode.startswith("core"):

        async def on_message(msg: Any) -> None:
            if conn is not None:
                await conn.execute(INSERT, uuid.uuid4().hex, msg.data)

        await nc.subscribe(SUBJECT, cb=on_message)
        await nc.flush()
        print("ready", flush=True)
        await asyncio.Event().wait()
    from core.pull import fetch  # the pull protocol griddispatch's stages use

    # A burst is published in a few ms: wait that long for the rest of it, as the stages'
    # adaptive linger does at a batched intake's rate.
    linger = 0.005 if burst > 1 else 0.0
    handled = 0

    js = nc.jetstream()
    sub = await js.pull_subscribe(SUBJECT, durable="stage", stream=STREAM)
    store = _floor_store(db_url) if "+es" in mode else None
    print("ready", flush=True)
    while True:
        try:
            msgs = await fetch(sub, max(100, 2 * burst), 5.0, linger)
        except Exception:  # the fetch timed out: nothing came
            continue
        if store is not None:
            notes = [FloorNote(msg.data.decode()) for msg in msgs]
            await asyncio.to_thread(store.save, *notes)
            if mode.endswith("+pub"):
                for note in notes:
                    await js.publish(OUT_SUBJECT, note.body.encode(),
                                     headers={"Nats-Msg-Id": str(note.id)})
        elif conn is not None:
            handled += len(msgs)
            async with conn.transaction():
                if mode.endswith("+rm9"):
                    texts = [(uuid.uuid4().hex, msg.data.decode()) for msg in msgs]
                    await nine_read_models(conn, texts, handled)
                elif len(msgs) == 1:
                    await conn.execute(INSERT, uuid.uuid4().hex, msgs[0].data)
                else:  # the plain app's multi-row INSERT
                    await conn.execute(
                        INSERT_MANY, [uuid.uuid4().hex for _ in msgs], [m.data for m in msgs]
                    )
        for msg in msgs:
            await msg.ack()


# ----------------------------------------------------------------------------- the driver


async def drive(
    mode: str, nats_url: str, rate: float, seconds: float, burst: int = 1
) -> None:
    """Send ``rate`` messages a second for ``seconds`` (none for ``idle``), ``burst`` at a
    time. A burst's JetStream messages go out pipelined (a reply inbox each, the acks
    awaited together), as the gateway publishes a batch request's reports."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    start = time.time() + 0.1
    bursts = int(rate * seconds) // burst
    for i in range(bursts):
        delay = start + i * burst / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if mode == "idle":
            continue
        if mode.startswith("core"):
            for _ in range(burst):
                await nc.publish(SUBJECT, PAYLOAD)
        elif burst == 1:
            await js.publish(SUBJECT, PAYLOAD, headers={"Nats-Msg-Id": uuid.uuid4().hex})
        else:
            acks = [
                nc.request(SUBJECT, PAYLOAD, timeout=5,
                           headers={"Nats-Msg-Id": uuid.uuid4().hex})
                for _ in range(burst)
            ]
            await asyncio.gather(*acks)
    await nc.flush()
    await asyncio.sleep(1 / rate)  # the last one's way through the stage
    await nc.close()


async def prepare(nats_url: str, db_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    with contextlib.suppress(Exception):  # not there yet
        await js.delete_stream(STREAM)
    await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT]))
    with contextlib.suppress(Exception):
        await js.delete_stream(OUT_STREAM)
    await js.add_stream(StreamConfig(name=OUT_STREAM, subjects=[OUT_SUBJECT]))
    await js.add_consumer(STREAM, ConsumerConfig(
        durable_name="stage", ack_policy=AckPolicy.EXPLICIT, ack_wait=30))
    await nc.close()
    conn = await asyncpg.connect(db_url)
    await conn.execute(TABLE_DDL)
    await conn.execute(READ_MODEL_DDL)
    await conn.execute("TRUNCATE floor_rows, floor_positions, " + ", ".join(READ_MODELS))
    await conn.close()


def run_scenario(
    mode: str, natsd: EmbeddedNats, pg: EmbeddedPostgres, rate: float, seconds: float,
    burst: int = 1,
) -> dict[str, float]:
    """µs of CPU per message: nats-server, PostgreSQL, the stage, and their total."""
    asyncio.run(prepare(natsd.url, pg.url))
    proc = None
    if mode != "js-store":
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.floors", "--stage", mode,
             "--nats", natsd.url, "--db", pg.url, "--burst", str(burst)],
            stdout=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"stage {mode} did not start")
    assert natsd.pid is not None and pg.pid is not None
    roles = {natsd.pid: "nats-server", pg.pid: "postgres"}
    if proc is not None:
        roles[proc.pid] = "stage"
    sampler = CpuSampler(list(roles), exclude=set())
    try:
        time.sleep(1.0)  # the stage's start-up is over
        before = sampler.snapshot(live_threads_cpu)  # ns precision, not 10 ms ticks
        asyncio.run(drive(mode, natsd.url, rate, seconds, burst))
        after = sampler.snapshot(live_threads_cpu)
        cpu = {pid: used - before.get(pid, 0.0) for pid, used in after.items()}
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    messages = int(rate * seconds) // burst * burst
    out: dict[str, float] = {"nats-server": 0.0, "postgres": 0.0, "stage": 0.0}
    for pid, used in cpu.items():
        out[_role_of(pid, roles)] += used
    per: dict[str, float] = {k: round(v / messages * 1e6) for k, v in out.items()}
    per["total"] = sum(per.values())
    return per


def _role_of(pid: int, roles: dict[int, str]) -> str:
    """The role of a process: its own, or its parent's (PostgreSQL's backends)."""
    if pid in roles:
        return roles[pid]
    try:
        parent = psutil.Process(pid).ppid()
    except psutil.Error:
        return "postgres"
    return roles.get(parent, "postgres")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floors",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--burst", type=int, default=1,
                        help="messages sent (and taken as one batch) at a time")
    parser.add_argument("--stage", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--nats", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        asyncio.run(stage(args.stage, args.nats, args.db, args.burst))
        return
    scenarios = [s for s in args.scenarios.split(",") if s]
    results: dict[str, list[dict[str, float]]] = {s: [] for s in scenarios}
    with tempfile.TemporaryDirectory(prefix="floors-") as tmp:
        natsd, pg = EmbeddedNats(Path(tmp)), EmbeddedPostgres(Path(tmp) / "pg")
        natsd.start()
        pg.start()
        try:
            for n in range(args.rounds):
                for mode in scenarios if n % 2 == 0 else list(reversed(scenarios)):
                    results[mode].append(
                        run_scenario(mode, natsd, pg, args.rate, args.seconds, args.burst)
                    )
        finally:
            natsd.stop()
            pg.stop()
    print(f"Measured on {machine()}; load: {os.getloadavg()[0]:.2f} (1 min) at the end.")
    print(f"Command: python -m benchmarks.floors {' '.join(argv or sys.argv[1:])}")
    bursts = f", {args.burst} at a time" if args.burst > 1 else ""
    print(f"\nCPU µs per message at {args.rate:g}/s{bursts} (rounds: " + ", ".join(
        "·" for _ in range(args.rounds)) + ")\n")
    idle = results.get("idle")
    print("| scenario | nats-server | PostgreSQL | stage process | total | total above idle |")
    print("|---|---|---|---|---|---|")
    for mode, runs in results.items():
        cells = [" · ".join(f"{r[k]:,.0f}" for r in runs)
                 for k in ("nats-server", "postgres", "stage", "total")]
        above = " · ".join(
            f"{r['total'] - i['total']:,.0f}" for r, i in zip(runs, idle, strict=True)
        ) if idle else "–"
        print(f"| {mode} | " + " | ".join(cells) + f" | {above} |")


if __name__ == "__main__":
    main()
