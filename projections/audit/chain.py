"""The running log chain (日志链): one hash chain over each partition's notification order.

Why a second chain: the per-case chain (``aggregates.integrity``) proves that the events of
ONE case were not changed, reordered or removed — except the newest event(s) of a case, and
except a whole case. The running chain links every event of a partition (district) in the
order the store numbered them (``notification_id`` = the envelope's ``position``), so removing
the last event of a case, a whole case, or moving an event to another position breaks it.

Algorithm (version 1) — precise enough to recompute without this code
-----------------------------------------------------------------------
For each partition ``p`` take its events in increasing ``position`` (positions may have gaps:
a rolled-back insert consumes a sequence number; the chain covers the rows that exist)::

    chain_0 = ""                                   # GENESIS, before the first event
    chain_k = lowercase_hex( SHA-256( canonical_json({
        "prev":      chain_{k-1},   # the chain value of the previous event of the partition
        "partition": p,             # the partition code (district), a string, e.g. "520102"
        "position":  n,             # this event's position (integer)
        "case":      case_id,       # canonical lowercase 8-4-4-4-12 UUID string
        "v":         version,       # the event's version in its case (integer)
        "hash":      event_hash,    # the event's per-case hash (aggregates.integrity)
    }) ) )

``canonical_json`` is exactly the one of ``aggregates.integrity`` (sorted keys, no spaces,
UTF-8). With only strings and integers here it is simply, e.g.::

    {"case":"1b4e…","hash":"9f…","partition":"520102","position":17,"prev":"3c…","v":3}

``event_hash`` is the event's own ``hash`` field; a verifier must also recompute it from the
event's content (per-case algorithm), otherwise a changed event with its old hash would pass.

Where the checkpoints live, and why
-----------------------------------
* **PostgreSQL table ``log_chain``** (same schema as the events): one row per event —
  ``(partition, position, case_id, version, hash, chain, sealed_at)``. The relay writes the
  rows of a batch in the SAME transaction that advances ``relay_positions``, i.e. an event is
  sealed exactly when it has been published. One row per event (not one per batch) lets
  ``gridctl audit verify`` name the exact position where the store and the sealed log differ
  (removed, inserted, moved, altered) instead of "somewhere in these 1,000 events"; it costs
  ~150 bytes per event.
* **NATS JetStream** (outside PostgreSQL): every published event carries the chain value at its
  position in the header ``Grid-Log-Chain``. The EVENTS stream is therefore a second,
  independently stored witness: rewriting history in PostgreSQL (events AND ``log_chain``
  recomputed consistently by someone with write access) no longer matches the chain values
  consumers and the stream already hold. ``gridctl audit verify`` prints each partition's head
  ``(position, chain)``; an auditor who wrote down a head earlier, or holds an export, can
  check later that the history up to that head is unchanged (``--expect-head``).

A hash chain without a secret cannot stop someone with write access from *appending* well-formed
events; it makes every change to what was already sealed (and witnessed) detectable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aggregates.integrity import canonical_json

#: Chain value before the first event of a partition.
GENESIS = ""

#: Name and version of the algorithm above (exported with audits).
CHAIN_ALGORITHM = "griddispatch-log-chain-v1/sha256"

#: Characters that never need escaping in JSON strings (hex, UUIDs, partition codes).
_PLAIN = re.compile(r"[0-9A-Za-z_-]*")

#: NATS header carrying the chain value of a published event.
CHAIN_HEADER = "Grid-Log-Chain"

LOG_CHAIN_DDL = """
CREATE TABLE IF NOT EXISTS log_chain (
    partition text NOT NULL,
    position bigint NOT NULL,
    case_id uuid NOT NULL,
    version integer NOT NULL,
    hash text NOT NULL,
    chain text NOT NULL,
    sealed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partition, position)
);
-- One case's seals (the auditor's per-case check): without it that check scans the whole
-- partition's log, which at a million cases takes longer than the rest of the request.
CREATE INDEX IF NOT EXISTS log_chain_case_idx ON log_chain (case_id, position);
"""


def link(
    prev: str, partition: str, position: int, case_id: str, version: int, event_hash: str
) -> str:
    """One step of the running chain (see the module docstring)."""
    return hashlib.sha256(
        canonical_json(
            {
                "prev": prev,
                "partition": partition,
                "position": int(position),
                "case": str(case_id),
                "v": int(version),
                "hash": event_hash,
            }
        )
    ).hexdigest()


def fast_link(
    prev: str, partition: str, position: int, case_id: str, version: int, event_hash: str
) -> str:
    """`link` built with one format string (the relay's and verify's hot loops): the same
    bytes whenever no value needs JSON escaping — else (a tampered hash, say) `link` itself."""
    if not _PLAIN.fullmatch(f"{prev}{partition}{case_id}{event_hash}"):
        return link(prev, partition, position, case_id, version, event_hash)
    text = (
        f'{{"case":"{case_id}","hash":"{event_hash}","partition":"{partition}",'
        f'"position":{int(position)},"prev":"{prev}","v":{int(version)}}}'
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Head:
    """The sealed end of a partition's chain."""

    partition: str
    position: int
    chain: str
    events: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "position": self.position,
            "chain": self.chain,
            "events": self.events,
        }


@dataclass(frozen=True)
class Seal:
    """One row of ``log_chain`` to write."""

    position: int
    case_id: str
    version: int
    hash: str
    chain: str


def seal_envelopes(
    partition: str, prev: str, envelopes: Sequence[dict[str, Any]]
) -> list[Seal]:
    """Chain ``envelopes`` (one partition, increasing positions) after ``prev``."""
    out: list[Seal] = []
    for env in envelopes:
        event_hash = str(env.get("hash") or "")
        prev = fast_link(
            prev, partition, env["position"], str(env["case_id"]), env["version"], event_hash
        )
        out.append(
            Seal(env["position"], str(env["case_id"]), int(env["version"]), event_hash, prev)
        )
    return out


INSERT_SEALS = (
    "INSERT INTO log_chain (partition, position, case_id, version, hash, chain) "
    "SELECT $1, * FROM unnest($2::bigint[], $3::uuid[], $4::int[], $5::text[], $6::text[]) "
    "ON CONFLICT (partition, position) DO NOTHING"
)


async def load_heads(conn: Any) -> dict[str, Head]:
    """The sealed head of every partition (asyncpg)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (partition) partition, position, chain FROM log_chain "
        "ORDER BY partition, position DESC"
    )
    return {r["partition"]: Head(r["partition"], r["position"], r["chain"]) for r in rows}


async def chain_before(conn: Any, partition: str, position: int) -> str:
    """The chain value of the last sealed event before ``position`` (GENESIS if none)."""
    value = await conn.fetchval(
        "SELECT chain FROM log_chain WHERE partition = $1 AND position < $2 "
        "ORDER BY position DESC LIMIT 1",
        partition,
        position,
    )
    return str(value) if value is not None else GENESIS


class ChainSealer:
    """The relay's part: chain each batch before publishing it; the seals are written in
    the statement that advances the relay position.

    The relay reads each batch from ``min(relay position, sealed head)``, calls
    :meth:`prepare` (seals for the events after the head; their chain values go into the
    ``Grid-Log-Chain`` header), publishes only the events after its position, then
    writes them with its new position in one statement (``INSERT_SEALS`` inside the relay's
    ``SEAL_AND_ADVANCE``) and calls :meth:`advance` after it.
    Reading from the head means events published before the chain existed are sealed first
    (back-fill, without re-publishing), so the chain always starts at the first event.
    """

    def __init__(self) -> None:
        self.heads: dict[str, Head] = {}

    async def setup(self, conn: Any) -> None:
        await conn.execute(LOG_CHAIN_DDL)
        self.heads = await load_heads(conn)

    def head(self, partition: str) -> Head:
        return self.heads.get(partition) or Head(partition, 0, GENESIS)

    def prepare(self, partition: str, envelopes: Sequence[dict[str, Any]]) -> list[Seal]:
        """Seals for the envelopes after the sealed head (envelopes at or below it — a re-read
        after a crash — get none). Pure: nothing changes until :meth:`advance`."""
        head = self.head(partition)
        fresh = [e for e in envelopes if e["position"] > head.position]
        return seal_envelopes(partition, head.chain, fresh)

    def advance(self, partition: str, seals: Sequence[Seal]) -> None:
        if seals:
            last = seals[-1]
            self.heads[partition] = Head(partition, last.position, last.chain)
