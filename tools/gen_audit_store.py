"""Generate a large, realistic event store for measuring ``gridctl audit verify``.

Every case goes through the real aggregate and service (report → file → dispatch → accept →
result → [verify fail → accept → result] → verify pass → close → return visit), is saved with
eventsourcing into the ordinary ``cases_<p>_events`` tables of a SCRATCH schema, and each
partition is then sealed into ``log_chain`` exactly as the relay would (no NATS needed).

    python tools/gen_audit_store.py --schema bench_audit --events 1000000 --jobs 4
    GRID_DB_SCHEMA=bench_audit gridctl audit verify

Refuses to write into a schema that already holds events unless ``--append``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aggregates.commands import Command
from aggregates.service import CaseService
from benchmarks.common import ON_SITE, on_site_args
from core.eventlog import table_name
from core.eventstore import StoreRegistry
from core.ids import case_id_for_key, case_no_for_id
from core.refdata import load_reference
from core.settings import Settings

START = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)  # a Monday, 09:00 Beijing time


def _script(i: int) -> list[tuple[str, str, dict[str, Any], int]]:
    """(verb, role, args, minutes after the previous step) of case number ``i``."""
    steps: list[tuple[str, str, dict[str, Any], int]] = [
        ("file", "dispatcher", {"note": "符合立案條件"}, 5),
        ("dispatch", "dispatcher", {}, 10),
        ("accept", "handler", {}, 15),
        ("report_result", "handler", {"note": "已處置"}, 60),
    ]
    if i % 5 == 0:
        steps += [
            ("verify_fail", "inspector", {"note": "未修復"}, 30),
            ("accept", "handler", {}, 10),
            ("report_result", "handler", {"note": "已返工處置"}, 60),
        ]
    steps += [
        ("verify_pass", "inspector", {"note": "核查通過"}, 30),
        ("close", "shift_leader", {"note": "結案"}, 10),
        ("return_visit", "call_taker", {"satisfaction": "satisfied"}, 60),
    ]
    return steps


def _generate(job: tuple[str, str, str, int, int, str]) -> int:
    database_url, schema, partition, target, seed, city = job
    settings = Settings(GRID_CITY=Path(city)) if city else Settings()
    ref = load_reference(settings)
    service = CaseService(ref.catalogue, ref.jurisdiction, ref.calendar)
    stores = StoreRegistry(database_url, schema)
    store = stores.get(partition)
    j = ref.jurisdiction
    grids = [g for g in sorted(j.grids) if j.partition_of(g) == partition]
    categories = [c for c in ref.catalogue.all() if c.kind != "governance"] or ref.catalogue.all()
    written = 0
    i = 0
    batch: list[Any] = []
    while written < target:
        key = f"bench-{seed}-{partition}-{i}"
        case_id = case_id_for_key(key)
        grid = j.grid(grids[i % len(grids)])
        category = categories[i % len(categories)]
        at = START + timedelta(minutes=i)

        def cmd(
            verb: str, role: str, args: dict[str, Any], when: datetime, n: int,
            key: str = key, case_id: Any = case_id, i: int = i,
        ) -> Command:
            return Command(
                command_id=f"{key}-{n}",
                verb=verb,  # type: ignore[arg-type]
                case_id=str(case_id),
                case_no=case_no_for_id(case_id),
                partition=partition,
                actor=f"{role}-{i % 7}",
                role=role,
                channel="web",
                at=when,
                args=args,
            )

        report = cmd(
            "report",
            "inspector",
            {
                "category": category.code,
                "grid": grid.code,
                "community": grid.parent,
                "district": partition,
                "lat": grid.centroid[0],
                "lon": grid.centroid[1],
                "description": f"{category.name_zh}：巡查發現問題 #{i}",
                "reporter": {"id": grid.team.inspector, "type": "inspector"},
                "source": "inspector_app",
            },
            at,
            0,
        )
        (case,) = service.execute(report, None, lambda _id: None)
        for n, (verb, role, args, minutes) in enumerate(_script(i), start=1):
            at += timedelta(minutes=minutes)
            if verb in ON_SITE:  # 核查 brings a photo and a fix on site
                args = {**args, **on_site_args(case.state, j)}
            service.execute(cmd(verb, role, args, at, n), case, lambda _id: None)
        written += len(case.pending_events)  # type: ignore[attr-defined]
        batch.append(case)
        i += 1
        if len(batch) >= 300:
            store.save(*batch)
            batch.clear()
    if batch:
        store.save(*batch)
    stores.close()
    return written


def _seal(job: tuple[str, str, str]) -> int:
    """Seal one partition into log_chain, as the relay does (chain.link over positions)."""
    import psycopg

    from projections.audit.chain import GENESIS, fast_link
    from projections.audit.rows import decode_state

    database_url, schema, partition = job
    with psycopg.connect(database_url) as conn, psycopg.connect(database_url) as writer:
        conn.execute(f"SET search_path TO {schema}")
        writer.execute(f"SET search_path TO {schema}")
        row = conn.execute(
            "SELECT position, chain FROM log_chain WHERE partition = %s "
            "ORDER BY position DESC LIMIT 1",
            (partition,),
        ).fetchone()
        after, prev = (int(row[0]), str(row[1])) if row else (0, GENESIS)
        sealed = 0
        with conn.cursor(name="seal") as cur, writer.cursor() as out:
            cur.itersize = 10000
            cur.execute(
                f"SELECT notification_id, originator_id::text, originator_version, state "
                f"FROM {schema}.{table_name(partition)} WHERE notification_id > %s "
                "ORDER BY notification_id",
                (after,),
            )
            with out.copy(
                "COPY log_chain (partition, position, case_id, version, hash, chain) FROM STDIN"
            ) as copy:
                for position, case_id, version, state in cur:
                    event_hash = decode_state(state)["hash"]
                    prev = fast_link(prev, partition, position, case_id, version, event_hash)
                    copy.write_row((partition, position, case_id, version, event_hash, prev))
                    sealed += 1
        writer.execute(
            "INSERT INTO relay_positions (partition, position) VALUES (%s, %s) "
            "ON CONFLICT (partition) DO NOTHING",
            (partition, 0),
        )
        writer.commit()
    return sealed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--schema", required=True, help="scratch schema (created)")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4, help="how many districts to use")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--append", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated partitions to add to")
    parser.add_argument("--city", default="", help="city directory (default: the sample city)")
    opts = parser.parse_args()

    import psycopg

    from core.db import check_schema

    schema = check_schema(opts.schema)
    settings = Settings(GRID_CITY=Path(opts.city)) if opts.city else Settings()
    partitions = load_reference(settings).partitions[: opts.partitions]
    with psycopg.connect(opts.database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        if not opts.append:
            for p in partitions:
                exists = conn.execute(
                    "SELECT to_regclass(%s)", (f"{schema}.{table_name(p)}",)
                ).fetchone()
                if exists and exists[0] is not None:
                    count = conn.execute(f"SELECT count(*) FROM {schema}.{table_name(p)}")
                    n = count.fetchone()
                    if n and n[0]:
                        sys.exit(f"{schema} already holds events; use --append or a new schema")
    from gateways.relay import RELAY_DDL
    from projections.audit.chain import LOG_CHAIN_DDL

    with psycopg.connect(opts.database_url, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(LOG_CHAIN_DDL)
        conn.execute(RELAY_DDL)
    registry = StoreRegistry(opts.database_url, schema)  # tables created one at a time
    for p in partitions:
        registry.get(p)
    registry.close()
    per = -(-opts.events // len(partitions))
    seed = int(time.time())
    started = time.perf_counter()
    chosen = [p for p in partitions if not opts.only or p in opts.only.split(",")]
    per = -(-opts.events // len(chosen))
    jobs = [(opts.database_url, schema, p, per, seed, opts.city) for p in chosen]
    with multiprocessing.get_context("spawn").Pool(min(opts.jobs, len(jobs))) as pool:
        written = sum(pool.map(_generate, jobs))
        gen_s = time.perf_counter() - started
        sealed = sum(pool.map(_seal, [(opts.database_url, schema, p) for p in partitions]))
    print(
        f"{written} events in {len(partitions)} partitions written in {gen_s:.1f}s, "
        f"{sealed} sealed; total {time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
