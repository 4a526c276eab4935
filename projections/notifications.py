"""The notification list (通知) as a read model: which notices each event caused, for whom.

The notices come from the domain's rule (``aggregates.notices.notices_for``); this projection
stores them exactly once per event (same transaction as its position, like every read model),
with one ``webhook_deliveries`` row per webhook that wants one. What is news and what is
history (an event older than ``GRID_NOTIFY_MAX_AGE_S`` when the notifier catches up) is
decided here too, from the event and the batch's clock: history is listed but never pushed
or delivered. Pushing (NATS, SSE) and delivering (signed webhooks) are the notifier's job,
``gateways/notify.py``, which also explains the whole flow.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from aggregates.notices import VISIT_REMINDER_KINDS, Notice, notices_for, visit_reminder
from aggregates.visits import VisitRule
from core.clock import Clock, SystemClock
from core.settings import get_settings
from projections.base import Envelope, insert_rows, json_rows, rows_of_known_cases

#: Notification kinds and their titles in zh-Hans (pages show other languages from their
#: catalogue by ``kind``: gateways/web/static/shared/messages.js ``notice.<kind>``).
KINDS: dict[str, str] = {
    "new_dispatch": "新派遣",
    "recheck_task": "核查任务",
    "returned": "退回",
    "deadline_approaching": "即将超期",
    "overdue": "已超期",
    "extension_requested": "延期申请",
    "extension_decided": "延期审批",
    "return_visit_due": "待回访",
    "reopen_decision": "回访不满意待决定",
    **VISIT_REMINDER_KINDS,  # household visits due (not from events: visit_reminders below)
}

DDL = """
CREATE TABLE IF NOT EXISTS notify_cases (
    case_id uuid PRIMARY KEY,
    case_no text NOT NULL,
    category text,
    grid text,
    department text,
    source text,
    description text
);
DO $$ BEGIN
    -- The reporter's phone: the return-visit rule (aggregates/visits.py) may make a case with
    -- one due a visit whatever its source. Checked first: no lock once the column is there.
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema =
                   current_schema() AND table_name = 'notify_cases'
                   AND column_name = 'reporter_phone')
    THEN
        ALTER TABLE notify_cases ADD COLUMN reporter_phone text;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS notifications (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    case_no text NOT NULL,
    case_id uuid NOT NULL,
    audience text[] NOT NULL,
    title text NOT NULL,
    body text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}',
    at timestamptz NOT NULL,
    partition text NOT NULL,
    position bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    live boolean NOT NULL DEFAULT true,
    UNIQUE (partition, position, kind)
);
DO $$ BEGIN
    -- live: pushed (NATS / SSE) and offered to webhooks; false for history (module docstring).
    -- Checked first so a start-up takes no lock on the table once the column is there.
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema =
                   current_schema() AND table_name = 'notifications' AND column_name = 'live')
    THEN
        ALTER TABLE notifications ADD COLUMN live boolean NOT NULL DEFAULT true;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS notifications_audience_idx ON notifications USING gin (audience);
-- Reminders of household visits due (六必访): one per visit deadline and kind, whoever sends
-- it and however often (the watcher's pass, aggregates.notices.visit_reminder). Their
-- notifications rows have partition 'households' and this row's id as position.
CREATE TABLE IF NOT EXISTS visit_reminders (
    id bigserial PRIMARY KEY,
    household_id text NOT NULL,
    due_at timestamptz NOT NULL,
    kind text NOT NULL,
    at timestamptz NOT NULL,
    UNIQUE (household_id, due_at, kind)
);
CREATE TABLE IF NOT EXISTS webhooks (
    id text PRIMARY KEY,
    url text NOT NULL,
    secret text NOT NULL,
    kinds text[] NOT NULL DEFAULT '{}',
    audiences text[] NOT NULL DEFAULT '{}',
    active boolean NOT NULL DEFAULT true,
    description text,
    source text NOT NULL DEFAULT 'api',
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id bigserial PRIMARY KEY,
    webhook_id text NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    notification_id bigint NOT NULL REFERENCES notifications (id),
    kind text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    UNIQUE (webhook_id, notification_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx
    ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error text,
    duration_ms integer NOT NULL
);
"""

def is_news(at: datetime, now: datetime, max_age: timedelta) -> bool:
    """Pure: whether an event recorded at ``at`` is still news at ``now`` (pushed live and
    offered to webhooks) rather than history (listed only). Events from the future — another
    process's clock a little ahead — are news."""
    return now - at <= max_age


def hook_wants(hook: Any, notice: Notice, at: datetime) -> bool:
    """Pure: whether a webhook (a ``webhooks`` row) gets a delivery of ``notice``, caused by
    an event recorded at ``at``: its kinds and audiences match, and it existed by then."""
    if hook["kinds"] and notice.kind not in hook["kinds"]:
        return False
    if hook["audiences"] and not set(hook["audiences"]) & set(notice.audience):
        return False
    return at >= hook["created_at"]


class _ActiveHooks:
    """The active webhooks, read once per batch when its first live notification is written
    (a batch of new reports writes none, and read them for nothing)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._rows: list[Any] | None = None

    async def rows(self) -> list[Any]:
        if self._rows is None:
            self._rows = list(await self.conn.fetch(
                "SELECT id, kinds, audiences, created_at FROM webhooks WHERE active"
            ))
        return self._rows


#: What the notices need of each case, kept per case (the department follows the case).
_CASE_COLUMNS = {
    "case_id": "uuid", "case_no": "text", "category": "text", "grid": "text",
    "department": "text", "source": "text", "description": "text", "reporter_phone": "text",
}
_UPSERT_CASES = (
    insert_rows("notify_cases", _CASE_COLUMNS)
    + " ON CONFLICT (case_id) DO UPDATE SET department = EXCLUDED.department"
)


class NotifyProjection:
    """Turns events into notifications and webhook deliveries (run by ProjectionRunner).

    ``clock`` is the runtime's (read once per batch: the "now" an event's age is measured
    against); ``max_age_s`` the bound beyond which an event is history (default: the setting
    ``GRID_NOTIFY_MAX_AGE_S``)."""

    name = "notify"
    tables = ("notify_cases", "notifications")

    def __init__(self, clock: Clock | None = None, max_age_s: float | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        if max_age_s is None:
            max_age_s = get_settings().notify_max_age_s
        self.max_age = timedelta(seconds=max_age_s)
        # What the last ``apply`` did, read by the Notifier after the commit:
        self.fresh: list[dict[str, Any]] = []  # notifications to push now
        self.history_events = 0  # events older than the bound
        self.held = 0  # notification rows written for them, not pushed, no deliveries
        self.history_span: tuple[datetime, datetime] | None = None  # oldest, newest such event
        self.news_seen = False  # the batch held at least one event within the bound
        # Which closed cases call-takers are told to visit (GRID_RETURN_VISITS).
        self.visit_rule = VisitRule.parse(get_settings().return_visits)

    def ddl(self) -> str:
        return DDL

    async def apply(self, conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        self.fresh = []
        self.history_events = self.held = 0
        self.history_span = None
        self.news_seen = False
        now = self.clock.now()
        rows = await rows_of_known_cases(
            conn, "SELECT * FROM notify_cases WHERE case_id = ANY($1::uuid[])", envelopes
        )
        cases: dict[str, dict[str, Any]] = {str(r["case_id"]): dict(r) for r in rows}
        changed: set[str] = set()
        hooks = _ActiveHooks(conn)
        for env in envelopes:
            cid, data = env["case_id"], env.get("data") or {}
            at = as_time(env["at"])
            live = is_news(at, now, self.max_age)
            if live:
                self.news_seen = True
            else:
                self.history_events += 1
                old, new = self.history_span or (at, at)
                self.history_span = (min(old, at), max(new, at))
            if env["type"] == "Reported":
                cases[cid] = {
                    "case_id": cid,
                    "case_no": data.get("case_no"),
                    "category": data.get("category"),
                    "grid": data.get("grid"),
                    "department": None,
                    "source": data.get("source"),
                    "reporter_phone": (data.get("reporter") or {}).get("phone"),
                    "description": data.get("description"),
                }
                changed.add(cid)
            case = cases.get(cid)
            if case is None:
                continue
            for notice in notices_for(env, case, self.visit_rule):
                await self._insert(conn, env, at, live, case, notice, hooks)
            # The event's summary names the department when it changed it.
            department = (data.get("summary") or {}).get("department", case["department"])
            if case["department"] != department:  # as the event recorded it
                case["department"] = department
                changed.add(cid)
        if changed:
            # One statement for the batch's cases (a report batch changes every one of them).
            await conn.execute(_UPSERT_CASES, json_rows(cases[cid] for cid in changed))

    async def _insert(
        self,
        conn: asyncpg.Connection,
        env: Envelope,
        at: datetime,
        live: bool,
        case: dict[str, Any],
        notice: Notice,
        hooks: _ActiveHooks,
    ) -> None:
        data = {
            **notice.data,
            "category": case.get("category"),
            "grid": case.get("grid"),
            "event": env["type"],
            "actor": env.get("actor"),
        }
        row = await conn.fetchrow(
            "INSERT INTO notifications (kind, case_no, case_id, audience, title, body, data, at, "
            "partition, position, live) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (partition, position, kind) DO NOTHING RETURNING id, created_at",
            notice.kind,
            case["case_no"],
            env["case_id"],
            notice.audience,
            KINDS[notice.kind],
            notice.body,
            data,
            at,
            env["partition"],
            env["position"],
            live,
        )
        if row is None:
            return
        if not live:
            self.held += 1  # listed for the record; history is not pushed nor sent
            return
        item = {
            "id": row["id"],
            "kind": notice.kind,
            "title": KINDS[notice.kind],
            "body": notice.body,
            "case_no": case["case_no"],
            "audience": notice.audience,
            "at": env["at"],
            "data": data,
        }
        self.fresh.append(item)
        for hook in await hooks.rows():
            if not hook_wants(hook, notice, at):
                continue
            await conn.execute(
                "INSERT INTO webhook_deliveries (webhook_id, notification_id, kind) "
                "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                hook["id"],
                row["id"],
                notice.kind,
            )


#: Households whose running visit deadline is yellow or red and has not had that reminder.
DUE_REMINDERS_SQL = """
SELECT r.household_id, r.household_no, r.grid, r.address, r.inspector, r.due_at, r.warning_at,
       r.archived
FROM household_register r
WHERE NOT r.archived AND r.due_at IS NOT NULL AND (r.warning_at <= $1 OR r.due_at <= $1)
  AND NOT EXISTS (
      SELECT 1 FROM visit_reminders v
      WHERE v.household_id = r.household_id AND v.due_at = r.due_at
        AND v.kind = CASE WHEN r.due_at <= $1 THEN 'visit_overdue' ELSE 'visit_due' END)
ORDER BY r.due_at
LIMIT $2
"""


async def remind_visits(
    pool: asyncpg.Pool, now: datetime, limit: int = 500
) -> list[dict[str, Any]]:
    """Store the reminders of household visits due or overdue at ``now`` that were not sent
    yet (each in one transaction with its ledger row, so two watchers or a repeated pass store
    it once), with their webhook deliveries; returns the notifications to push."""
    out: list[dict[str, Any]] = []
    async with pool.acquire() as conn:
        rows = await conn.fetch(DUE_REMINDERS_SQL, now, limit)
        if not rows:
            return out
        hooks = await conn.fetch(
            "SELECT id, kinds, audiences, created_at FROM webhooks WHERE active"
        )
        for row in rows:
            notice = visit_reminder(dict(row), now)
            if notice is None:
                continue
            async with conn.transaction():
                ledger = await conn.fetchval(
                    "INSERT INTO visit_reminders (household_id, due_at, kind, at) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
                    row["household_id"], row["due_at"], notice.kind, now,
                )
                if ledger is None:
                    continue  # another pass sent it
                data = {**notice.data, "event": None, "actor": "sla-watcher"}
                nid = await conn.fetchval(
                    "INSERT INTO notifications (kind, case_no, case_id, audience, title, body, "
                    "data, at, partition, position, live) VALUES ($1, $2, $3::uuid, $4, $5, $6, "
                    "$7, $8, 'households', $9, true) RETURNING id",
                    notice.kind, row["household_no"], row["household_id"], notice.audience,
                    KINDS[notice.kind], notice.body, data, now, ledger,
                )
                for hook in hooks:
                    if hook_wants(hook, notice, now):
                        await conn.execute(
                            "INSERT INTO webhook_deliveries (webhook_id, notification_id, kind) "
                            "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                            hook["id"], nid, notice.kind,
                        )
            out.append({
                "id": nid, "kind": notice.kind, "title": KINDS[notice.kind],
                "body": notice.body, "case_no": row["household_no"],
                "audience": notice.audience, "at": now, "data": data,
            })
    return out


def as_time(value: Any) -> datetime:
    """An envelope's time as an aware datetime (naive ones are UTC, as the envelope's are)."""
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def row_of(r: Any) -> dict[str, Any]:
    return {
        "id": r["id"],
        "kind": r["kind"],
        "title": r["title"],
        "body": r["body"],
        "case_no": r["case_no"],
        "audience": list(r["audience"]),
        "at": r["at"],
        "data": r["data"],
    }


async def recent(
    pool: asyncpg.Pool, audiences: list[str], after: int | None, limit: int,
    live_only: bool = False,
) -> list[dict[str, Any]]:
    """The list (all rows), or with ``live_only`` what was pushed live (the SSE replay: no
    history the notifier caught up on, see the module docstring)."""
    live = " AND live" if live_only else ""
    async with pool.acquire() as conn:
        if after is None:
            rows = await conn.fetch(
                "SELECT * FROM (SELECT id, kind, title, body, case_no, audience, at, data "
                f"FROM notifications WHERE audience && $1::text[]{live} ORDER BY id DESC "
                "LIMIT $2) x ORDER BY id",
                audiences,
                limit,
            )
        else:
            rows = await conn.fetch(
                "SELECT id, kind, title, body, case_no, audience, at, data FROM notifications "
                f"WHERE audience && $1::text[] AND id > $2{live} ORDER BY id LIMIT $3",
                audiences,
                after,
                limit,
            )
    return [row_of(r) for r in rows]
