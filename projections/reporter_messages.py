"""Text messages to reporters (短信通知) as a read model: which message each event sends.

The rule is the domain's (``aggregates.notices.reporter_notices``: filed, closed, return
visit due). This projection keeps each case's reporter contact (``reporter_contacts``, from
the ``Reported`` event and reporters linked from merged duplicates) and writes one
``outbound_messages`` row per message, exactly once per event (same transaction as its
position, like every read model). Sending is the notifier's job (``gateways/outbound.py``),
through a pluggable channel (log-only by default, an SMS gateway's webhook).

News, not history, as for notifications (``projections/notifications.py``): a message caused
by an event older than ``GRID_NOTIFY_MAX_AGE_S`` when it is projected (a new consumer
replaying the stream, a reset position) is written with status ``history`` and never sent —
a citizen must not get last month's texts again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg

from aggregates.notices import reporter_notices
from aggregates.visits import VisitRule
from core.clock import Clock, SystemClock
from core.settings import get_settings
from projections.base import Envelope, insert_rows, json_rows, rows_of_known_cases
from projections.notifications import as_time, is_news

DDL = """
CREATE TABLE IF NOT EXISTS reporter_contacts (
    case_id uuid PRIMARY KEY,
    case_no text NOT NULL,
    source text,
    reporter_type text,
    phone text,
    linked text[] NOT NULL DEFAULT '{}'  -- phones of reporters of merged duplicates
);
CREATE TABLE IF NOT EXISTS outbound_messages (
    id bigserial PRIMARY KEY,
    case_id uuid NOT NULL,
    case_no text NOT NULL,
    kind text NOT NULL,
    channel text NOT NULL DEFAULT 'sms',
    to_phone text NOT NULL,
    body text NOT NULL,
    at timestamptz NOT NULL,
    partition text NOT NULL,
    position bigint NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    sent_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (partition, position, kind, to_phone)
);
CREATE INDEX IF NOT EXISTS outbound_messages_due_idx
    ON outbound_messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS outbound_messages_case_idx ON outbound_messages (case_no);
"""

_CONTACT = {
    "case_id": "uuid", "case_no": "text", "source": "text", "reporter_type": "text",
    "phone": "text", "linked": "text[]",
}
_UPSERT_CONTACTS = (
    insert_rows("reporter_contacts", _CONTACT)
    + " ON CONFLICT (case_id) DO UPDATE SET linked = EXCLUDED.linked"
)
#: A message to send, as :meth:`ReporterMessages.apply` lists it.
_MESSAGE = {
    "case_id": "uuid", "case_no": "text", "kind": "text", "to_phone": "text", "body": "text",
    "at": "timestamptz", "partition": "text", "position": "bigint", "status": "text",
}
_QUEUE_MESSAGES = insert_rows("outbound_messages", _MESSAGE) + " ON CONFLICT DO NOTHING"


class ReporterMessages:
    """Turns events into ``outbound_messages`` rows (run by a ProjectionRunner in the
    notifier role; ``clock`` and ``max_age_s`` decide news from history)."""

    name = "reporter_sms"
    tables = ("reporter_contacts", "outbound_messages")

    def __init__(self, clock: Clock | None = None, max_age_s: float | None = None,
                 rule: VisitRule | None = None) -> None:
        settings = get_settings()
        self.clock: Clock = clock or SystemClock()
        self.max_age = timedelta(
            seconds=settings.notify_max_age_s if max_age_s is None else max_age_s)
        self.rule = rule or VisitRule.parse(settings.return_visits)
        self.queued = 0  # messages to send written by the last apply

    def ddl(self) -> str:
        return DDL

    async def apply(self, conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        self.queued = 0
        now = self.clock.now()
        rows = await rows_of_known_cases(
            conn, "SELECT * FROM reporter_contacts WHERE case_id = ANY($1::uuid[])", envelopes
        )
        cases: dict[str, dict[str, Any]] = {str(r["case_id"]): dict(r) for r in rows}
        changed: set[str] = set()
        messages: list[tuple[Any, ...]] = []
        for env in envelopes:
            cid, data = env["case_id"], env.get("data") or {}
            if env["type"] == "Reported":
                reporter = data.get("reporter") or {}
                cases[cid] = {
                    "case_id": cid, "case_no": data.get("case_no"), "source": data.get("source"),
                    "reporter_type": reporter.get("type"), "phone": reporter.get("phone"),
                    "linked": [],
                }
                changed.add(cid)
            case = cases.get(cid)
            if case is None:
                continue
            if env["type"] == "ReporterLinked":  # a merged duplicate's reporter hears too
                phone = (data.get("reporter") or {}).get("phone")
                if phone:
                    case["linked"] = [*case["linked"], phone]
                    changed.add(cid)
            at = as_time(env["at"])
            status = "pending" if is_news(at, now, self.max_age) else "history"
            view = {"case_no": case["case_no"], "source": case["source"],
                    "reporter_type": case["reporter_type"], "reporter_phone": case["phone"]}
            phones = [case["phone"], *case["linked"]]
            for notice in reporter_notices(env, view, self.rule):
                for phone in dict.fromkeys(p for p in phones if p):
                    messages.append((cid, case["case_no"], notice.kind, phone, notice.body, at,
                                     env["partition"], env["position"], status))
        if changed:
            await conn.execute(_UPSERT_CONTACTS, json_rows(
                {"case_id": c["case_id"], "case_no": c["case_no"], "source": c["source"],
                 "reporter_type": c["reporter_type"], "phone": c["phone"], "linked": c["linked"]}
                for c in (cases[i] for i in changed)
            ))
        if messages:
            await conn.execute(
                _QUEUE_MESSAGES, json_rows(dict(zip(_MESSAGE, m, strict=True)) for m in messages)
            )
            self.queued = sum(1 for m in messages if m[-1] == "pending")
