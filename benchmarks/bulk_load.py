"""Fast bulk loading of synthetic cases: real domain events, written with PostgreSQL COPY.

Every event is made by the real domain code — ``CaseService.execute`` on the ``Case``
aggregate (triage, deadlines, payloads and the per-case hash chain are genuine) — and turned
into its stored form by the event store's own mapper (``Application.mapper``: the same
transcoder, and compressor / cipher if configured, as ``CaseStore.save``). Only the INSERT is
replaced: rows go to ``cases_<partition>_events`` with ``COPY … FROM STDIN (FORMAT BINARY)``
in large chunks, ``notification_id`` taken from the table's own sequence, so the result is
indistinguishable from cases saved through the store (``store.repository.get`` reads them,
``projections/audit/verify.py`` verifies them).

Work is split into tasks of ``chunk`` cases of one partition; ``jobs`` processes make the
events and each COPYs its own tasks (one transaction per task). A case's events are written
consecutively inside one COPY, so they get increasing positions in its partition's log.

Only for loading an idle deployment (benchmarks, demos): it bypasses the table lock the
store takes to keep the notification log gap-free for concurrent readers.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import sql

from aggregates.case import Case
from aggregates.commands import Command
from aggregates.service import CaseService
from benchmarks.common import ON_SITE, on_site_args, report_command
from core import children
from core.eventlog import table_name
from core.eventstore import CaseStore, eventsourcing_env
from core.refdata import Reference, load_reference
from core.settings import Settings

#: The happy path a synthetic case walks, and who takes each step.
STEPS = ("file", "dispatch", "accept", "report_result", "verify_pass", "close")
ROLES = {
    "file": "dispatcher",
    "dispatch": "dispatcher",
    "accept": "handler",
    "report_result": "handler",
    "verify_pass": "inspector",
    "close": "dispatcher",
}
ARGS: dict[str, dict[str, Any]] = {"report_result": {"note": "已处置"}}
#: How many lifecycle steps a case takes (as the store benchmark always did: ~3.5 events/case).
STEP_CHOICES = (0, 1, 2, 3, 6)
COLUMNS = ("originator_id", "originator_version", "topic", "state")


def lifecycle(service: CaseService, case: Case, steps: int, at: datetime) -> None:
    """Move a freshly reported case ``steps`` steps along the happy path (10 min apart)."""
    for i, verb in enumerate(STEPS[:steps]):
        cmd = Command(
            command_id=uuid.uuid4().hex,
            verb=verb,  # type: ignore[arg-type]
            case_id=str(case.id),
            case_no=case.state.case_no,
            partition=case.state.district,
            actor="bench",
            role=ROLES[verb],
            channel="bench",
            at=at + timedelta(minutes=10 * (i + 1)),
            args={**ARGS.get(verb, {}),
                  **(_on_site(case.state, service.ref.jurisdiction) if verb in ON_SITE else {})},
        )
        service.execute(cmd, case, lambda _id: None)


#: Grid code → on-site evidence at its centroid, per jurisdiction (the generator's own cost:
#: a grid's centroid builds its polygon, more than the 核查 it stands for costs the domain).
_CENTROID_EVIDENCE: dict[tuple[int, str], dict[str, Any]] = {}


def _on_site(state: Any, jurisdiction: Any) -> dict[str, Any]:
    """``on_site_args``, the centroid fix of a case without a point remembered per grid."""
    if state.lat is not None and state.lon is not None:
        return on_site_args(state, jurisdiction)
    key = (id(jurisdiction), state.grid)
    evidence = _CENTROID_EVIDENCE.get(key)
    if evidence is None:
        evidence = _CENTROID_EVIDENCE[key] = on_site_args(state, jurisdiction)
    return {**evidence, "photos": list(evidence["photos"])}


def report_in(
    ref: Reference, key: str, at: datetime, rng: random.Random, grids: Sequence[str]
) -> Command:
    """The gateway's command for one synthetic report in one of ``grids``."""
    return report_command(ref, key, at, rng, grids)


@dataclass(frozen=True)
class Task:
    """``indices`` (positions in the whole load's time line) become cases of ``partition``."""

    database_url: str
    schema: str
    partition: str
    tag: str
    start: datetime
    indices: tuple[int, ...]
    seed: str
    spacing_s: float = 5.0


@dataclass
class TaskResult:
    partition: str
    cases: int
    events: int
    sample: list[tuple[str, str]]  # (case_no, case_id) of the first cases


class _Maker:
    """Per-process domain objects: reference data, the service and the store's mapper."""

    def __init__(self, settings: Settings, database_url: str, schema: str) -> None:
        self.ref = load_reference(settings)
        self.service = CaseService(self.ref.catalogue, self.ref.jurisdiction, self.ref.calendar)
        env = dict(eventsourcing_env(database_url, schema))
        env["PERSISTENCE_MODULE"] = "eventsourcing.popo"  # the mapper only; no connections
        env.pop("CREATE_TABLE", None)
        self.mapper = CaseStore(env=env).mapper
        self.grids: dict[str, list[str]] = {}
        for code in sorted(self.ref.jurisdiction.grids):
            self.grids.setdefault(self.ref.jurisdiction.partition_of(code), []).append(code)

    def rows(self, task: Task, sample: list[tuple[str, str]]) -> Iterator[tuple[Any, ...]]:
        """Stored rows of the task's cases, each case's events in version order."""
        rng = random.Random(task.seed)
        grids = self.grids[task.partition]
        for i in task.indices:
            at = task.start + timedelta(seconds=i * task.spacing_s)
            cmd = report_in(self.ref, f"bulk-{task.tag}-{i}", at, rng, grids)
            (case,) = self.service.execute(cmd, None, lambda _id: None)
            lifecycle(self.service, case, rng.choice(STEP_CHOICES), cmd.at)
            if len(sample) < 200:
                sample.append((case.state.case_no, str(case.id)))
            for event in case.collect_events():
                stored = self.mapper.to_stored_event(event)
                yield (
                    stored.originator_id,
                    stored.originator_version,
                    stored.topic,
                    stored.state,
                )


_maker: _Maker | None = None


def _init(settings: Settings, database_url: str, schema: str) -> None:
    global _maker
    _maker = _Maker(settings, database_url, schema)
    gc.freeze()  # the reference data stays for the process: keep it out of every collection


def copy_rows(
    conn: psycopg.Connection[Any], schema: str, partition: str, rows: Iterator[tuple[Any, ...]]
) -> int:
    """COPY stored-event rows into the partition's events table; returns how many."""
    statement = sql.SQL("COPY {}.{} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(schema),
        sql.Identifier(table_name(partition)),
        sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS),
    )
    n = 0
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.set_types(["uuid", "int8", "text", "bytea"])
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


_conn: psycopg.Connection[Any] | None = None


def _connection(database_url: str, attempts: int = 30) -> psycopg.Connection[Any]:
    """This process's connection, (re)opened with retries: on a shared server the
    connection slots can run out for a moment ("too many clients already")."""
    global _conn
    if _conn is not None and not _conn.closed:
        return _conn
    for attempt in range(attempts):
        try:
            _conn = psycopg.connect(database_url)
            return _conn
        except psycopg.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(min(5.0, 0.2 * 2**attempt))
    raise AssertionError("unreachable")


def run_task(task: Task, attempts: int = 3) -> TaskResult:
    """Make the task's cases and COPY their events (one transaction; a task whose
    connection fails is made again from its seed and retried)."""
    assert _maker is not None, "call _init first"
    for attempt in range(attempts):
        sample: list[tuple[str, str]] = []
        conn = _connection(task.database_url)
        try:
            events = copy_rows(conn, task.schema, task.partition, _maker.rows(task, sample))
            conn.commit()
            return TaskResult(task.partition, len(task.indices), events, sample)
        except psycopg.OperationalError:
            conn.close()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def plan(
    ref: Reference,
    database_url: str,
    schema: str,
    n: int,
    chunk: int = 10_000,
    tag: str | None = None,
    start: datetime | None = None,
    seed: int = 2026,
) -> list[Task]:
    """Split ``n`` cases into tasks: each case goes to the partition of a random grid (so
    partitions are as big as their share of grids), times 5 s apart over the whole load."""
    tag = tag or uuid.uuid4().hex[:8]
    start = start or datetime.now(UTC) - timedelta(seconds=5 * n + 86_400)
    rng = random.Random(seed)
    grids = sorted(ref.jurisdiction.grids)
    by_partition: dict[str, list[int]] = {}
    owner = [ref.jurisdiction.partition_of(g) for g in grids]
    for i, k in enumerate(rng.choices(range(len(grids)), k=n)):
        by_partition.setdefault(owner[k], []).append(i)
    tasks: list[Task] = []
    for partition, indices in sorted(by_partition.items()):
        for c, lo in enumerate(range(0, len(indices), chunk)):
            part = tuple(indices[lo : lo + chunk])
            tasks.append(
                Task(database_url, schema, partition, tag, start, part, f"{seed}:{partition}:{c}")
            )
    # Interleave partitions so that parallel jobs mostly write different tables.
    tasks.sort(key=lambda t: (t.indices[0] // chunk, t.partition))
    return tasks


def load(
    settings: Settings,
    database_url: str,
    schema: str,
    n: int,
    jobs: int | None = None,
    chunk: int = 10_000,
    tag: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Load ``n`` cases into the events tables of ``schema`` (they must exist: open the
    partitions' stores first). Returns counts, timings and sample (case_no, case_id) pairs.

    With ``jobs`` > 1 the tasks are shared out to that many child processes
    (``python -m benchmarks.bulk_load``, :mod:`core.children`): they import the domain and
    the store's mapper only, not the caller's ``__main__`` (for ``gridctl bench``, the whole
    CLI: about a second per worker of a multiprocessing pool, in a load of a few seconds)."""
    jobs = jobs or os.cpu_count() or 1
    ref = load_reference(settings)
    tasks = plan(ref, database_url, schema, n, chunk, tag)
    t0 = time.perf_counter()
    results: list[TaskResult] = []
    if jobs <= 1 or len(tasks) <= 1:
        global _conn
        _init(settings, database_url, schema)
        try:
            for task in tasks:
                results.append(run_task(task))
                if progress and len(results) % 10 == 0:
                    _progress(results, t0)
        finally:
            if _conn is not None:
                _conn.close()
                _conn = None
    else:
        results = asyncio.run(_load_in_children(settings, database_url, schema, tasks, jobs))
        if progress:
            _progress(results, t0)
    seconds = time.perf_counter() - t0
    with psycopg.connect(database_url, autocommit=True) as conn:
        for partition in sorted({t.partition for t in tasks}):
            conn.execute(
                sql.SQL("ANALYZE {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table_name(partition))
                )
            )
    events = sum(r.events for r in results)
    return {
        "cases": n,
        "events": events,
        "seconds": round(seconds, 1),
        "cases_per_s": round(n / seconds) if seconds else None,
        "events_per_s": round(events / seconds) if seconds else None,
        "jobs": jobs,
        "sample": [s for r in results for s in r.sample],
    }


def _progress(results: Sequence[TaskResult], t0: float) -> None:
    done = sum(x.cases for x in results)
    print(f"  loaded {done:,} cases ({done / (time.perf_counter() - t0):,.0f}/s)", flush=True)


async def _load_in_children(
    settings: Settings, database_url: str, schema: str, tasks: Sequence[Task], jobs: int
) -> list[TaskResult]:
    """The tasks run by ``jobs`` children (about as many cases each); the results in the
    tasks' order, as one process would give them."""
    order = {task.seed: i for i, task in enumerate(tasks)}
    shares = children.share_out(tasks, jobs, size=lambda task: len(task.indices))
    job_of = [
        orjson.dumps({
            "settings": settings.model_dump(mode="json", by_alias=True),
            "database_url": database_url,
            "schema": schema,
            "tasks": [asdict(task) for task in share],
        })
        for share in shares
    ]
    answers = await children.run_all("benchmarks.bulk_load", job_of, "bulk load process")
    results = [
        (order[seed], TaskResult(r["partition"], r["cases"], r["events"],
                                 [(no, case_id) for no, case_id in r["sample"]]))
        for out in answers
        for seed, r in orjson.loads(out)
    ]
    return [result for _, result in sorted(results, key=lambda pair: pair[0])]


def _child_main() -> None:
    """``python -m benchmarks.bulk_load``: run the tasks read from stdin, print their
    results (each with its task's seed) as JSON."""
    job = orjson.loads(sys.stdin.buffer.read())
    _init(Settings(**job["settings"]), job["database_url"], job["schema"])
    out = []
    try:
        for raw in job["tasks"]:
            task = Task(**{**raw, "start": datetime.fromisoformat(raw["start"]),
                           "indices": tuple(raw["indices"])})
            out.append((task.seed, asdict(run_task(task))))
    finally:
        if _conn is not None:
            _conn.close()
    sys.stdout.buffer.write(orjson.dumps(out))


if __name__ == "__main__":
    _child_main()
