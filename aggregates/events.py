"""The base of every case event: who, why, where the case stood before and after.

Every event records, besides its own facts:

* ``actor, role, channel, reason, command_id`` — who did it, through which channel, why, and
  the idempotency key (幂等键) of the command;
* ``from_status`` / ``to_status`` — so a history explains itself even if the rules change;
* ``due`` / ``due_step`` — the deadline (时限) running *after* the event (None: no clock);
* ``due_warn`` — when that deadline's light turns yellow (``deadlines.warning_at``, None for
  no clock or a review date), decided when the deadline starts and recorded with it: the
  SLA watcher selects the deadlines it must act on by it in SQL, instead of computing it for
  every open case on every pass, and a replay never computes it again (events recorded
  before it existed lack it: read with ``recorded_warning``);
* ``summary`` — the read models' fields the event changed (:data:`CaseState` fields marked
  ``summary`` and the actions each role is offered next; all of them on a case's first event,
  the traffic lights on every event), so no read model has to know how an event changes a
  case: a read model keeps the fields of the events before and updates them by the summary
  (:func:`fold_summaries`);
* ``prev_hash`` / ``hash`` — the per-case hash chain (``aggregates.integrity``).

Each event class adds its own facts and one method, :meth:`CaseEvent.evolve`, the state change,
written next to the action that records it (``aggregates.actions``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol, cast

from eventsourcing.domain import Aggregate

from aggregates.state import CaseState
from core.vocabulary import Status


class HasState(Protocol):
    """What an event needs of its aggregate: the state, and a state prepared in advance."""

    state: CaseState
    prepared: CaseState | None


class CaseEvent(Aggregate.Event):
    """Common fields of all case events (see the module docstring)."""

    actor: str  # 操作人 (user id or "sla-watcher")
    role: str  # 角色 the actor acted in
    channel: str  # 渠道: web, app, hotline, open311, api, system ...
    reason: str | None  # 原因 / 理由
    command_id: str  # 幂等键
    from_status: str | None  # None for the first event
    to_status: str
    due: datetime | None  # deadline running after this event
    due_step: str | None
    due_warn: datetime | None  # yellow-light moment of that deadline
    summary: dict[str, Any]  # what changed (see the module docstring)
    prev_hash: str
    hash: str

    def evolve(self, case: CaseState) -> None:
        """This event's own change to the state; overridden by each event class. Replace
        containers rather than changing them in place (see :meth:`CaseState.copy`)."""

    def apply(self, aggregate: Any) -> None:
        """eventsourcing's hook. A new event's state was computed before it was recorded
        (to record its summary); a replayed one is computed here."""
        holder = cast(HasState, aggregate)
        if holder.prepared is not None:
            holder.state, holder.prepared = holder.prepared, None
        else:
            advance(holder.state, Draft.of(self))
        holder.state.last_hash = self.hash
        holder.state.applied_commands.append(self.command_id)


#: Summary keys recorded on every event, changed or not (small, and read on their own).
ALWAYS = frozenset({"warned", "overdue"})


def fold_summaries(events: Iterable[Any]) -> dict[str, Any]:
    """The read models' fields after ``events`` (a case's, in order): each summary updates
    the ones before it."""
    out: dict[str, Any] = {}
    for event in events:
        out.update(event.summary)
    return out


def advance(state: CaseState, event: Any) -> None:
    """The whole change one event makes: its own ``evolve``, then the common facts. ``event``
    is a stored event or, before recording, a draft with the same attributes."""
    event.evolve(state)
    state.status = Status(event.to_status)
    if state.due != event.due or state.due_step != event.due_step:
        state.due_since = event.timestamp if event.due is not None else None
    state.due = event.due
    state.due_step = event.due_step if event.due is not None else None
    state.due_warn = recorded_warning(event)
    if state.status is not Status.in_progress:
        # An extension request only means something while the department is handling.
        state.pending_extension = None


def recorded_warning(event: Any) -> datetime | None:
    """The event's ``due_warn``; None for an event recorded before the field existed (the
    stored JSON has no such key, and eventsourcing restores events without ``__init__``)."""
    return event.__dict__.get("due_warn")


class Draft:
    """An event before it is recorded: the same attributes, so the same ``evolve`` computes
    the state after it (whose summary the event then records)."""

    _event_class: type[CaseEvent]

    @classmethod
    def with_facts(cls, event_class: type[CaseEvent], facts: dict[str, Any]) -> Draft:
        """A draft of ``event_class`` whose attributes are ``facts`` itself (the caller's
        own dict, not copied: this runs for every command and every replayed event)."""
        draft = cls.__new__(cls)
        draft.__dict__ = facts
        draft._event_class = event_class
        return draft

    @classmethod
    def of(cls, event: CaseEvent) -> Draft:
        """A replayed event's facts with their own containers, so the state built from it
        never shares a dict or list with the stored event (whose hash covers them)."""
        leaves = _LEAVES
        # Containers copied, leaves shared (no call per leaf: most fields are leaves); the
        # summary is not a fact the state is built from.
        return cls.with_facts(type(event), {
            k: v if type(v) in leaves else json_safe(v)
            for k, v in vars(event).items() if k != "summary"
        })

    def evolve(self, state: CaseState) -> None:
        self._event_class.evolve(cast(CaseEvent, self), state)


def json_safe(value: Any) -> Any:
    """Copy of a JSON-like tree (dicts and lists rebuilt, tuples become lists, leaves shared:
    they are immutable). Used wherever a recorded event and a state (or a caller's dicts)
    must not share a container: a change to one can then never alter the other, and state
    before and after a round trip through the store is identical."""
    kind = type(value)
    if kind is dict:  # leaves are kept without a call per leaf: most values are leaves
        return {k: v if type(v) in _LEAVES else json_safe(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [v if type(v) in _LEAVES else json_safe(v) for v in value]
    if isinstance(value, dict):  # subclasses: the slow, general way
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


#: Immutable leaf types ``json_safe`` shares instead of visiting.
_LEAVES = frozenset({str, int, float, bool, type(None), datetime})
