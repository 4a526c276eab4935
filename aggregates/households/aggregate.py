"""The ``Household`` aggregate (户): a household's whole register history as events.

Like a case (``aggregates.case``): every change is an event with a stable type and fields,
each event carries the hash of its predecessor and its own (``aggregates.integrity``, the
same algorithm; the envelope's ``case`` field holds the household id), and the state is only
ever changed by applying events. Commands run one path for every action of the registry
(``aggregates.households.actions``):

1. idempotency — a ``command_id`` already applied does nothing;
2. permission (``NotPermitted``, 403);
3. time order and the entry's checks (``InvalidCommand``, 422);
4. the event: every argument by name, what the entry computes, who/when/why, the visit
   deadline after it (``schedule.next_due``) and the hash chain.

Pure: no I/O and no clock (the command's ``at`` is the event's time). Stored events are plain
:class:`HouseholdEvent` records (``gateways/households.py`` keeps them in PostgreSQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregates.errors import InvalidCommand, NotPermitted
from aggregates.events import json_safe
from aggregates.households import actions as _actions  # noqa: F401  (registers the entries)
from aggregates.households.registry import HOUSEHOLD_ACTIONS, HouseholdContext
from aggregates.households.schedule import next_due
from aggregates.households.state import HouseholdState
from aggregates.integrity import GENESIS, event_hash, iso_utc
from aggregates.registry import Strict

_NAMESPACE = uuid.UUID("0f5e4a1c-6b2d-5e8f-a3c7-60b1f0a5e18d")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def household_id_for_key(key: str) -> uuid.UUID:
    """The household created by this idempotency key (the store refuses a second one)."""
    return uuid.uuid5(_NAMESPACE, f"household:{key}")


def household_no_for_id(household_id: uuid.UUID) -> str:
    """A readable number, e.g. ``HH-7K3Q-M9XA``, stable for the id."""
    value = household_id.int >> (128 - 40)
    chars = []
    for _ in range(8):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    body = "".join(reversed(chars))
    return f"HH-{body[:4]}-{body[4:]}"


@dataclass(frozen=True)
class HouseholdEvent:
    """One stored household event (data: the action's fields and the common ones)."""

    household_id: str
    version: int
    type: str
    at: datetime
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def payload_hash(self, prev_hash: str | None = None) -> str:
        return event_hash(
            self.prev_hash if prev_hash is None else prev_hash,
            self.household_id, self.version, self.type, self.at, self.data,
        )


class Household:
    """One household; read ``state``, change it only through :meth:`execute`."""

    def __init__(self, household_id: str) -> None:
        self.id = household_id
        self.state = HouseholdState(household_id=household_id)
        self.modified_on: datetime | None = None
        self.pending: list[HouseholdEvent] = []

    # --- replay ---------------------------------------------------------------------------

    @classmethod
    def replay(cls, events: Iterable[HouseholdEvent]) -> Household | None:
        household: Household | None = None
        for event in events:
            if household is None:
                household = cls(event.household_id)
            household._apply(event)
        return household

    def _apply(self, event: HouseholdEvent) -> None:
        spec = _BY_EVENT[event.type]
        data = json_safe(event.data)
        data["visited_at"] = _time(data.get("visited_at"))
        spec.evolve(self.state, data, event.at)
        s = self.state
        s.due = _time(data.get("due"))
        s.due_started_at = _time(data.get("due_started_at"))
        s.due_flag = data.get("due_flag")
        s.version = event.version
        s.last_hash = event.hash
        s.applied_commands = [*s.applied_commands, data["command_id"]]
        self.modified_on = event.at

    # --- commands -------------------------------------------------------------------------

    @classmethod
    def create(cls, household_id: str, args: Strict, ctx: HouseholdContext) -> Household:
        household = cls(household_id)
        household.execute("register", args, ctx)
        return household

    def execute(self, name: str, args: Strict, ctx: HouseholdContext) -> bool:
        """Run action ``name``; False when the command id was already applied."""
        spec = HOUSEHOLD_ACTIONS.get(name)
        if spec is None:
            raise InvalidCommand(f"unknown household action {name!r}", "action")
        if spec.creates != (self.state.version == 0):
            raise InvalidCommand(
                "the household is already registered" if spec.creates
                else "the household is not registered", "action")
        if ctx.command_id in self.state.applied_commands:
            return False
        if ctx.role not in spec.roles:
            raise NotPermitted(name, ctx.role)
        if not isinstance(args, spec.args):
            raise InvalidCommand(f"{name} takes {spec.args.__name__}", "args")
        at = ctx.at
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise InvalidCommand("at must be a timezone-aware datetime", "at")
        if self.modified_on is not None and at < self.modified_on:
            raise InvalidCommand(
                f"at ({iso_utc(at)}) is earlier than the household's last event "
                f"({iso_utc(self.modified_on)})", "at")
        fields = args.model_dump(mode="json")
        if spec.decide is not None:
            fields.update(spec.decide(self.state, args, ctx))
        fields.update(actor=_text(ctx.actor, "actor"), role=ctx.role,
                      channel=_text(ctx.channel, "channel"),
                      command_id=_text(ctx.command_id, "command_id"))
        fields = _plain(fields)  # what is stored is what is hashed: plain JSON
        # The state after the event decides the deadline the event records.
        after = self.state.copy()
        spec.evolve(after, {**fields, "visited_at": _time(fields.get("visited_at"))}, at)
        due, started, flag = next_due(after, ctx.schedules, ctx.calendar)
        fields.update(due=_plain(due), due_started_at=_plain(started), due_flag=flag)
        version = self.state.version + 1
        prev = self.state.last_hash if self.state.version else GENESIS
        try:
            digest = event_hash(prev, self.id, version, spec.event, at, fields)
        except (TypeError, ValueError) as exc:
            raise InvalidCommand(f"value not storable: {exc}") from exc
        event = HouseholdEvent(self.id, version, spec.event, at, fields, prev, digest)
        self._apply(event)
        self.pending.append(event)
        return True

    def collect(self) -> list[HouseholdEvent]:
        out, self.pending = self.pending, []
        return out

    def snapshot(self) -> dict[str, Any]:
        return {**self.state.to_json(),
                "updated_at": iso_utc(self.modified_on) if self.modified_on else None}


_BY_EVENT = {spec.event: spec for spec in HOUSEHOLD_ACTIONS.values()}


def _plain(value: Any) -> Any:
    """JSON-only copy: datetimes as canonical UTC text (``iso_utc``)."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidCommand(f"{field} is required", field)
    return value


def verify_chain(events: Iterable[HouseholdEvent]) -> int | None:
    """The version of the first broken link of a household's events, else None."""
    prev = GENESIS
    expected = 1
    for event in events:
        if event.version != expected or event.prev_hash != prev:
            return event.version
        if event.payload_hash(prev) != event.hash:
            return event.version
        prev = event.hash
        expected += 1
    return None


def event_row(event: HouseholdEvent) -> Mapping[str, Any]:
    return {"household_id": event.household_id, "version": event.version, "type": event.type,
            "at": event.at, "data": event.data, "prev_hash": event.prev_hash,
            "hash": event.hash}
