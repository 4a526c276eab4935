"""Integrity verification: recompute both chains over the stored events and name the first
altered, removed, inserted or reordered event.

What is checked, per partition, in one pass in position order (two server-side cursors in
one REPEATABLE READ, READ ONLY transaction, merged by position — no aggregate is rebuilt):

1. **content** — each event's per-case hash recomputed from its stored fields
   (``aggregates.integrity``) equals the ``hash`` it carries → else ``altered``;
2. **case chain** — its ``prev_hash`` is the hash of the previous event of its case and the
   versions run 1, 2, 3 … → else ``removed`` (a version is missing), ``reordered`` (a version
   comes twice or backwards) or ``altered`` (wrong ``prev_hash``);
3. **sealed log** — the ``log_chain`` row at the same position names the same case, version
   and hash → a row only in ``log_chain`` is ``removed``, an event at a sealed position with
   no row is ``inserted``, another case / version there is ``reordered``, another hash is
   ``altered`` (hashes were recomputed after a change);
4. **running chain** — each ``log_chain`` row's ``chain`` equals
   ``link(previous row's chain, partition, position, case, version, hash)``
   (``projections.audit.chain``) → else ``chain`` (the sealed log itself was edited).

Events after the sealed head (the relay has not published them yet) are counted as
``unsealed`` and get checks 1–2 only. One problem is reported per position (the most specific);
the report keeps the first ``max_problems`` of each partition and says which one is first.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from core.db import check_schema
from core.eventlog import table_name
from projections.audit.chain import GENESIS, Head, fast_link
from projections.audit.rows import (
    NOT_HASHED,
    StoredRow,
    UndecodableEvent,
    case_rows,
    connect,
    decode_state,
    digest,
    event_type,
    existing_tables,
    qualified,
    store_partitions,
    table_exists,
)

Progress = Callable[[str, int, int], None]  # (partition, events done, events expected)

#: Tables of the sealed log whose presence changes what a verification reads.
CHAIN_TABLES = ("log_chain", "relay_positions")

KINDS = ("altered", "removed", "inserted", "reordered", "chain", "undecodable")
#: Each kind in words (``Problem.describe``; ``kind`` itself stays the machine-readable code).
KIND_NAMES = {
    "altered": "被篡改", "removed": "缺失", "inserted": "被插入", "reordered": "顺序错乱",
    "chain": "日志链断裂", "undecodable": "无法解码",
}
PROGRESS_EVERY = 20_000


@dataclass
class Problem:
    """One integrity finding, located."""

    kind: str
    partition: str
    position: int
    case_id: str | None
    version: int | None
    detail: str
    case_no: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """For people: what (in words, with the kind's code), where, and the detail."""
        where = f"分区 {self.partition} 位置 {self.position}"
        if self.case_id:
            where += f", 案件 {self.case_no or self.case_id} 第 {self.version} 版"
        what = KIND_NAMES.get(self.kind, self.kind)
        return f"{what} ({self.kind.upper()}), {where}: {self.detail}"


@dataclass
class PartitionReport:
    partition: str
    events: int = 0
    sealed: int = 0
    unsealed: int = 0
    head: Head | None = None
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "ok": self.ok,
            "events": self.events,
            "sealed": self.sealed,
            "unsealed": self.unsealed,
            "head": self.head.as_dict() if self.head else None,
            "problem_count": self.problem_count,
            "problems": [p.as_dict() for p in self.problems],
            "seconds": round(self.seconds, 3),
        }


@dataclass
class VerifyReport:
    partitions: list[PartitionReport]
    seconds: float = 0.0
    expected_heads: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.partitions)

    @property
    def events(self) -> int:
        return sum(p.events for p in self.partitions)

    @property
    def first(self) -> Problem | None:
        """The first problem: lowest position of the first partition (in code order) that has
        one. Positions of different partitions are independent sequences."""
        for part in sorted(self.partitions, key=lambda p: p.partition):
            if part.problems:
                return min(part.problems, key=lambda p: p.position)
        return None

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "ok": self.ok,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.rate),
            "first_problem": first.as_dict() if first else None,
            "partitions": [p.as_dict() for p in self.partitions],
        }


# --------------------------------------------------------------------------- one partition


class _Checker:
    """State of one partition's pass: the last version / hash of every case seen."""

    def __init__(self, partition: str, report: PartitionReport, max_problems: int) -> None:
        self.partition = partition
        self.report = report
        self.max_problems = max_problems
        self.cases: dict[str, tuple[int, str]] = {}
        self.case_nos: dict[str, str] = {}

    def add(self, problem: Problem) -> None:
        self.report.problem_count += 1
        if len(self.report.problems) < self.max_problems:
            problem.case_no = problem.case_no or self.case_nos.get(problem.case_id or "")
            self.report.problems.append(problem)

    def event(
        self, position: int, case_id: str, version: int, topic: str, raw: Any
    ) -> tuple[Problem | None, str | None]:
        """Checks 1–2 for one stored row; returns (problem or None, its stored hash)."""
        try:
            state = decode_state(raw)
        except UndecodableEvent as exc:
            self.cases[case_id] = (version, "")
            return self._p("undecodable", position, case_id, version, str(exc)[:200]), None
        return self.check(position, case_id, version, event_type(topic), state)

    def check(
        self, position: int, case_id: str, version: int, etype: str, state: dict[str, Any]
    ) -> tuple[Problem | None, str | None]:
        """Checks 1–2 for one decoded event (``state`` is consumed)."""
        try:
            # ``state`` becomes the hashed payload (pops are cheaper than a filtered copy).
            stored_hash = str(state.pop("hash", ""))
            prev_hash = str(state.pop("prev_hash", ""))
            at = str(state.pop("timestamp", None))
            for key in NOT_HASHED.difference(("hash", "prev_hash", "timestamp")):
                state.pop(key, None)
            if version == 1 and "case_no" in state:
                self.case_nos[case_id] = str(state["case_no"])
            recomputed = digest(prev_hash, case_id, version, etype, at, state)
        except (ValueError, TypeError) as exc:
            self.cases[case_id] = (version, "")
            return self._p("undecodable", position, case_id, version, str(exc)[:200]), None
        problem: Problem | None = None
        last = self.cases.get(case_id)
        last_version, last_hash = last if last is not None else (0, GENESIS)
        if version <= last_version:
            problem = self._p(
                "reordered", position, case_id, version,
                f"第 {version} 版排在同一案件的第 {last_version} 版之后",
            )
        elif version > last_version + 1:
            missing = (
                f"第 {last_version + 1} 版" if version == last_version + 2
                else f"第 {last_version + 1}–{version - 1} 版"
            )
            problem = self._p(
                "removed", position, case_id, version, f"此前缺少本案件的{missing}"
            )
        elif recomputed != stored_hash:
            problem = self._p(
                "altered", position, case_id, version,
                f"内容与其哈希不符 (存储的 {stored_hash[:12]}…, "
                f"重新计算的 {recomputed[:12]}…)",
            )
        elif prev_hash != last_hash:
            problem = self._p(
                "altered", position, case_id, version,
                "prev_hash 不是本案件上一事件的哈希",
            )
        self.cases[case_id] = (max(version, last_version), stored_hash)
        return problem, stored_hash

    def _p(self, kind: str, position: int, case_id: str | None, version: int | None,
           detail: str) -> Problem:
        return Problem(kind, self.partition, position, case_id, version, detail)


def _head_sql(schema: str, tables: Collection[str]) -> str | None:
    """One statement for the sealed head's two sources (``%(p)s`` = the partition)."""
    parts = []
    if "log_chain" in tables:
        parts.append(f"(SELECT max(position) FROM {schema}.log_chain WHERE partition = %(p)s)")
    if "relay_positions" in tables:
        parts.append(
            f"(SELECT position FROM {schema}.relay_positions WHERE partition = %(p)s)"
        )
    return "SELECT " + ", ".join(parts) if parts else None


def _head_of(row: Sequence[Any] | None) -> int:
    return max((int(v) for v in row or () if v is not None), default=0)


def _sealed_head(
    conn: psycopg.Connection[Any], schema: str, partition: str,
    tables: Collection[str] | None = None,
) -> int:
    """The highest position that must be sealed: the last log_chain row, or the relay's
    position if that is further (rows removed from the end of log_chain)."""
    if tables is None:
        tables = existing_tables(conn, schema, CHAIN_TABLES)
    sql = _head_sql(schema, tables)
    return _head_of(conn.execute(sql, {"p": partition}).fetchone()) if sql else 0


def _cursor(
    conn: psycopg.Connection[Any], name: str, sql: str, params: Sequence[Any]
) -> Iterator[tuple[Any, ...]]:
    cur = conn.cursor(name=name, binary=True)
    try:
        cur.execute(sql, params)
        while True:
            batch = cur.fetchmany(5000)
            if not batch:
                return
            yield from batch
    finally:
        cur.close()


def verify_partition(
    database_url: str,
    schema: str,
    partition: str,
    progress: Progress | None = None,
    max_problems: int = 20,
    lookups: int = 5,
) -> PartitionReport:
    """Verify one partition (blocking). See the module docstring for the checks."""
    started = time.perf_counter()
    report = PartitionReport(partition)
    checker = _Checker(partition, report, max_problems)
    with connect(database_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        has_events = table_exists(conn, schema, table_name(partition))
        has_chain = table_exists(conn, schema, "log_chain")
        sealed_head = _sealed_head(conn, schema, partition)
        expected = 0
        if has_events:
            row = conn.execute(
                f"SELECT max(notification_id) FROM {qualified(schema, partition)}"
            ).fetchone()
            expected = int(row[0]) if row and row[0] is not None else 0
        expected = max(expected, sealed_head)
        events: Iterator[tuple[Any, ...]] = iter(())
        if has_events:
            events = _cursor(
                conn,
                "audit_events",
                "SELECT notification_id, originator_id::text, originator_version, topic, state "
                f"FROM {qualified(schema, partition)} ORDER BY notification_id",
                (),
            )
        chain: Iterator[tuple[Any, ...]] = iter(())
        if has_chain:
            chain = _cursor(
                conn,
                "audit_chain",
                f"SELECT position, case_id::text, version, hash, chain FROM {schema}.log_chain "
                "WHERE partition = %s ORDER BY position",
                (partition,),
            )
        ev = next(events, None)
        ch = next(chain, None)
        prev_chain = GENESIS
        head: Head | None = None
        done = 0
        while ev is not None or ch is not None:
            problem: Problem | None = None
            if ch is not None and (ev is None or ch[0] < ev[0]):
                position, case_id, version, event_hash, value = ch
                problem = Problem(
                    "removed", partition, position, case_id, version,
                    "日志已封存, 但事件库中没有该事件",
                )
                last = checker.cases.get(case_id, (0, GENESIS))
                if version == last[0] + 1:  # the case's next event chains to this one
                    checker.cases[case_id] = (version, event_hash)
                chain_problem = _check_link(partition, prev_chain, ch)
                prev_chain = value
                head = Head(partition, position, value, report.sealed + 1)
                report.sealed += 1
                ch = next(chain, None)
            elif ev is not None and (ch is None or ev[0] < ch[0]):
                position, case_id, version, topic, raw = ev
                problem, _ = checker.event(position, case_id, version, topic, raw)
                if position <= sealed_head:
                    problem = Problem(
                        "inserted", partition, position, case_id, version,
                        "事件库中的事件位于已封存位置, 但日志在此没有事件",
                    )
                else:
                    report.unsealed += 1
                chain_problem = None
                report.events += 1
                ev = next(events, None)
            else:
                assert ev is not None and ch is not None
                position, case_id, version, topic, raw = ev
                _, s_case, s_version, s_hash, value = ch
                problem, stored_hash = checker.event(position, case_id, version, topic, raw)
                if (s_case, s_version) != (case_id, version):
                    problem = Problem(
                        "reordered", partition, position, case_id, version,
                        f"日志在此位置封存的是案件 {s_case} 第 {s_version} 版",
                    )
                elif stored_hash is not None and stored_hash != s_hash and (
                    problem is None or problem.kind != "altered"
                ):
                    problem = Problem(
                        "altered", partition, position, case_id, version,
                        f"其哈希 {stored_hash[:12]}… 与封存的 {s_hash[:12]}… 不同 "
                        "(被改动后重新计算了哈希)",
                    )
                if problem is not None and problem.kind == "altered" and lookups > 0:
                    lookups -= 1
                    moved = _sealed_elsewhere(conn, schema, partition, stored_hash, position)
                    if moved is not None:
                        problem = Problem(
                            "reordered", partition, position, case_id, version,
                            f"此处是封存于位置 {moved[0]} 的事件 "
                            f"(案件 {moved[1]} 第 {moved[2]} 版)",
                        )
                chain_problem = _check_link(partition, prev_chain, ch)
                prev_chain = value
                head = Head(partition, position, value, report.sealed + 1)
                report.sealed += 1
                report.events += 1
                ev = next(events, None)
                ch = next(chain, None)
            if problem is not None:
                checker.add(problem)
            elif chain_problem is not None:
                checker.add(chain_problem)
            done += 1
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress(partition, done, expected)
        report.head = head
        if sealed_head > (head.position if head else 0):
            checker.add(
                Problem(
                    "removed", partition, sealed_head, None, None,
                    f"中继已发布到位置 {sealed_head}, 但日志止于位置 "
                    f"{head.position if head else 0}",
                )
            )
        conn.rollback()
    if progress is not None:
        progress(partition, done, max(expected, done))
    report.seconds = time.perf_counter() - started
    return report


def _check_link(partition: str, prev: str, ch: tuple[Any, ...]) -> Problem | None:
    position, case_id, version, event_hash, value = ch
    if fast_link(prev, partition, position, case_id, version, event_hash) != value:
        return Problem(
            "chain", partition, position, case_id, version,
            "已封存日志的链值不是由前一个链值推出的 "
            "(log_chain 被改动)",
        )
    return None


def _sealed_elsewhere(
    conn: psycopg.Connection[Any], schema: str, partition: str, event_hash: str | None,
    position: int,
) -> tuple[int, str, int] | None:
    """Where the log sealed an event with this hash, if not at ``position`` (swapped rows)."""
    if not event_hash:
        return None
    row = conn.execute(
        f"SELECT position, case_id::text, version FROM {schema}.log_chain "
        "WHERE partition = %s AND hash = %s AND position <> %s LIMIT 1",
        (partition, event_hash, position),
    ).fetchone()
    return (int(row[0]), str(row[1]), int(row[2])) if row else None


# --------------------------------------------------------------------------- whole store


def partitions_of(database_url: str, schema: str) -> list[str]:
    """Every partition with an events table or sealed log rows."""
    with connect(database_url) as conn:
        parts = set(store_partitions(conn, schema))
        if table_exists(conn, schema, "log_chain"):
            rows = conn.execute(f"SELECT DISTINCT partition FROM {schema}.log_chain").fetchall()
            parts.update(str(r[0]) for r in rows)
    return sorted(parts)


def _worker(args: tuple[str, str, str, int, Any]) -> PartitionReport:
    database_url, schema, partition, max_problems, channel = args

    def report(p: str, done: int, total: int) -> None:
        with contextlib.suppress(Exception):
            channel.put((p, done, total))

    return verify_partition(database_url, schema, partition, report, max_problems)


def verify_store(
    database_url: str,
    schema: str,
    partitions: Sequence[str] | None = None,
    progress: Progress | None = None,
    jobs: int = 1,
    max_problems: int = 20,
) -> VerifyReport:
    """Verify every partition (``jobs`` processes in parallel, one partition each)."""
    started = time.perf_counter()
    parts = list(partitions) if partitions else partitions_of(database_url, schema)
    reports: list[PartitionReport] = []
    if jobs <= 1 or len(parts) <= 1:
        for p in parts:
            reports.append(verify_partition(database_url, schema, p, progress, max_problems))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager, ProcessPoolExecutor(min(jobs, len(parts)), ctx) as pool:
            channel = manager.Queue()
            futures = [
                pool.submit(_worker, (database_url, schema, p, max_problems, channel))
                for p in parts
            ]
            while not all(f.done() for f in futures):
                try:
                    p, done, total = channel.get(timeout=0.2)
                except queue.Empty:
                    continue
                if progress is not None:
                    progress(p, done, total)
            while progress is not None:
                try:
                    progress(*channel.get_nowait())
                except queue.Empty:
                    break
            reports = [f.result() for f in futures]
    return VerifyReport(reports, time.perf_counter() - started)


# --------------------------------------------------------------------------- one case


class SealedReads:
    """The sealed side of one case — its ``log_chain`` rows (each with its predecessor's chain
    value) and the partition's sealed head — read with at most two statements that are only
    sent here (so they can share a pipeline with other reads); :meth:`result` fetches."""

    def __init__(
        self, conn: psycopg.Connection[Any], schema: str, partition: str, case_id: str,
        tables: Collection[str],
    ) -> None:
        self._sealed: psycopg.Cursor[Any] | None = None
        self._head: psycopg.Cursor[Any] | None = None
        if "log_chain" in tables:
            self._sealed = conn.execute(
                f"SELECT l.position, l.case_id::text, l.version, l.hash, l.chain, "
                f"(SELECT p.chain FROM {schema}.log_chain p WHERE p.partition = l.partition "
                f" AND p.position < l.position ORDER BY p.position DESC LIMIT 1) "
                f"FROM {schema}.log_chain l WHERE l.partition = %s AND l.case_id = %s "
                "ORDER BY l.position",
                (partition, case_id),
            )
        sql = _head_sql(schema, tables)
        if sql is not None:
            self._head = conn.execute(sql, {"p": partition})

    def result(self) -> tuple[list[tuple[Any, ...]], int]:
        sealed_rows = self._sealed.fetchall() if self._sealed is not None else []
        head = _head_of(self._head.fetchone()) if self._head is not None else 0
        return sealed_rows, head


def verify_case(
    conn: psycopg.Connection[Any], schema: str, partition: str, case_id: str,
    rows: Sequence[StoredRow] | None = None, tables: Collection[str] | None = None,
) -> dict[str, Any]:
    """Both chains for one case: its events' content and links, and each event against its
    sealed ``log_chain`` row (and that row against its predecessor in the log).

    ``rows`` — the case's stored rows if the caller has read them already (they are not
    changed); ``tables`` — which of :data:`CHAIN_TABLES` exist, if known."""
    if tables is None:
        tables = existing_tables(conn, schema, CHAIN_TABLES)
    if rows is None:
        rows = case_rows(conn, schema, partition, case_id)
    sealed_rows, head = SealedReads(conn, schema, partition, case_id, tables).result()
    return check_case(partition, rows, sealed_rows, head)


def check_case(
    partition: str, rows: Sequence[StoredRow], sealed_rows: Sequence[tuple[Any, ...]], head: int
) -> dict[str, Any]:
    """:func:`verify_case` on rows already read (pure): ``sealed_rows`` as
    :class:`SealedReads` returns them, ``head`` the partition's sealed head."""
    report = PartitionReport(partition)
    checker = _Checker(partition, report, 50)
    sealed: dict[int, tuple[Any, ...]] = {int(r[0]): r for r in sealed_rows}
    events_out: list[dict[str, Any]] = []
    positions = set()
    for row in rows:
        positions.add(row.position)
        problem, stored_hash = checker.check(
            row.position, row.case_id, row.version, row.type, dict(row.state)
        )
        s = sealed.get(row.position)
        status = "sealed" if s is not None else ("unsealed" if row.position > head else "inserted")
        if s is not None:
            if (s[1], int(s[2])) != (row.case_id, row.version):
                problem = Problem("reordered", partition, row.position, row.case_id,
                                  row.version, f"日志在此封存的是案件 {s[1]} 第 {s[2]} 版")
            elif s[3] != stored_hash and problem is None:
                problem = Problem("altered", partition, row.position, row.case_id, row.version,
                                  "哈希与封存的不同")
            elif _check_link(partition, s[5] or GENESIS, s[:5]) is not None and problem is None:
                problem = Problem("chain", partition, row.position, row.case_id, row.version,
                                  "封存的链值不是由前一个链值推出的")
        elif status == "inserted" and problem is None:
            problem = Problem("inserted", partition, row.position, row.case_id, row.version,
                              "位于已封存位置, 但日志在此没有事件")
        if problem is not None:
            checker.add(problem)
        events_out.append({
            "position": row.position,
            "version": row.version,
            "hash": row.hash,
            "chain": s[4] if s is not None else None,
            "status": "ok" if problem is None else problem.kind,
            "sealed": s is not None,
        })
    for pos, s in sealed.items():
        if pos not in positions:
            checker.add(Problem("removed", partition, pos, s[1], int(s[2]),
                                "日志已封存, 但事件库中没有该事件"))
    problems = sorted(report.problems, key=lambda p: p.position)
    return {
        "ok": not problems,
        "events": len(rows),
        "sealed": sum(1 for e in events_out if e["sealed"]),
        "last_hash": rows[-1].hash if rows else None,
        "first_problem": problems[0].as_dict() if problems else None,
        "problems": [p.as_dict() for p in problems],
        "per_event": events_out,
    }


def sealed_heads(conn: psycopg.Connection[Any], schema: str) -> list[dict[str, Any]]:
    """Each partition's last stored position, its last sealed ``log_chain`` row and how many
    stored events are not sealed yet (the relay seals as it publishes)."""
    out: list[dict[str, Any]] = []
    has_chain = table_exists(conn, schema, "log_chain")
    for p in store_partitions(conn, schema):
        table = qualified(schema, p)
        row = conn.execute(f"SELECT max(notification_id) FROM {table}").fetchone()
        store_head = int(row[0]) if row and row[0] is not None else 0
        head = None
        if has_chain:
            h = conn.execute(
                f"SELECT position, chain, sealed_at FROM {schema}.log_chain "
                "WHERE partition = %s ORDER BY position DESC LIMIT 1",
                (p,),
            ).fetchone()
            if h is not None:
                head = {"position": int(h[0]), "chain": str(h[1]),
                        "sealed_at": h[2].isoformat()}
        unsealed = 0
        if store_head:
            n = conn.execute(
                f"SELECT count(*) FROM {table} WHERE notification_id > %s",
                (head["position"] if head else 0,),
            ).fetchone()
            unsealed = int(n[0]) if n else 0
        out.append({"partition": p, "store_head": store_head, "sealed": head,
                    "unsealed": unsealed})
    return out


def expected_heads_missing(
    conn: psycopg.Connection[Any], schema: str, specs: Sequence[str]
) -> list[str]:
    """Heads an auditor noted earlier (``PARTITION:POSITION:CHAIN``, as ``gridctl audit heads``
    prints them) that are no longer in the sealed log, described; empty when all still are.
    Raises ``ValueError`` for a spec that is not of that form."""
    missing: list[str] = []
    for spec in specs:
        try:
            partition, pos, chain = spec.split(":", 2)
            position = int(pos)
        except ValueError as exc:
            raise ValueError(f"{spec!r}: PARTITION:POSITION:CHAIN") from exc
        row = conn.execute(
            f"SELECT chain FROM {check_schema(schema)}.log_chain "
            "WHERE partition = %s AND position = %s",
            (partition, position),
        ).fetchone()
        if row is None or row[0] != chain:
            missing.append(f"expected head {spec} is not in the log "
                           f"(found {row[0] if row else 'nothing'} at that position)")
    return missing
