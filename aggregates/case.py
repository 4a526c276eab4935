"""The `Case` aggregate (案件): one report's whole closed loop (闭环) as an event stream.

Why event-sourced: auditors need the full ordered history (who, what, when, why, channel) and
the state at any past moment; metrics (立案率, 返工率, 按期结案率 ...) are counted from the
events. Every change is an event with a stable name and fields, and the state
(:class:`~aggregates.state.CaseState`) is only ever changed by applying events.

The aggregate knows no action by name. Every command runs the same steps against the action's
registry entry (``aggregates.actions``):

1. idempotency — a ``command_id`` already applied to this case does nothing (redelivery from
   NATS, a client resubmitting after the dedupe window);
2. permission (``NotPermitted``, 403), then the status and the entry's guard
   (``IllegalTransition``, 409, listing what this role is offered now);
3. time order and the entry's own checks (``InvalidCommand``, 422);
4. the event: the arguments by name, the values the entry computes, the deadline after it,
   the state after it summarised for read models, and the hash chain.

Pure: no I/O and no clock. The command's ``at`` becomes the event's timestamp and reference
data comes in the :class:`~aggregates.registry.Context`, so replays are deterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import datetime
from functools import cache
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from aggregates import deadlines
from aggregates.actions import REGISTRY, ActionSpec, offers
from aggregates.errors import IllegalTransition, InvalidCommand, NotPermitted
from aggregates.events import ALWAYS, CaseEvent, Draft, advance, json_safe
from aggregates.integrity import GENESIS, event_hash, iso_utc
from aggregates.registry import Context, Strict, offered
from aggregates.state import CaseState, json_view
from core.refdata import Reference
from core.vocabulary import INITIAL_STATUS

#: The state after a case's first event while :meth:`Case.create` records it.
_CREATED: ContextVar[CaseState | None] = ContextVar("case_created", default=None)

#: Event fields left out of the hashed payload (envelope or storage metadata, and the hashes).
NON_PAYLOAD_FIELDS: frozenset[str] = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic", "prev_hash", "hash"}
)


class Case(Aggregate):
    """One case (案件); read ``state``, change it only through :meth:`execute`."""

    def __init__(self) -> None:
        """Empty shell; the ``Reported`` event fills it (eventsourcing calls this on replay)."""
        self.state = CaseState()
        # The state after an event being recorded, computed before it (see CaseEvent.apply);
        # for a new case :meth:`create` hands it over, on replay there is none.
        self.prepared: CaseState | None = _CREATED.get()
        # The read-model summary of ``state`` once computed (each event records the change).
        self.summarised: tuple[CaseState, dict[str, Any]] | None = None

    # --- commands ---------------------------------------------------------------------------

    @classmethod
    def create(cls, case_id: UUID, case_no: str, args: Strict, ctx: Context) -> Case:
        """上报 / 受理登记: the case exists (status reported). Resubmissions are deduped by the
        caller: the case id is derived from the idempotency key, and the store refuses to
        create the same aggregate twice."""
        spec = _creating()
        if ctx.role not in spec.roles:
            raise NotPermitted(spec.name, ctx.role)
        _check_time(ctx.at)
        empty = CaseState()
        fields = _fields(spec, empty, args, ctx)
        assert fields is not None  # creation always records
        fields["case_no"] = case_no
        payload, after, summary = _payload(spec, empty, fields, ctx, None)
        # What eventsourcing's ``_create`` does, with the event made by ``new_event``.
        event = _chained_event(
            spec, payload, ctx.at, case_id, cls.INITIAL_VERSION, GENESIS, topic=_topic(cls)
        )
        token = _CREATED.set(after)
        try:
            case = cast(Case, event.mutate(None))
        finally:
            _CREATED.reset(token)
        case.pending_events.append(event)
        assert case.state is after
        case.summarised = (after, summary)
        return case

    def execute(self, name: str, args: Strict, ctx: Context) -> bool:
        """Run action ``name``; False when nothing was recorded (an applied command id, or a
        watcher's mark that is stale or already made)."""
        spec = REGISTRY.get(name)
        if spec is None or spec.creates:
            raise InvalidCommand(f"unknown action {name!r}", "verb")
        state = self.state
        if ctx.command_id in state.applied_commands:
            return False
        if ctx.role not in spec.roles:
            raise NotPermitted(name, ctx.role)
        why = spec.why_not(state, ctx.role, ctx.ref)
        if why is not None:
            raise IllegalTransition(name, state.status, offered(state, ctx.role, ctx.ref), why)
        _check_time(ctx.at)
        if ctx.at < self.modified_on:
            raise InvalidCommand(
                f"at ({iso_utc(ctx.at)}) is earlier than the case's last event "
                f"({iso_utc(self.modified_on)})",
                "at",
            )
        fields = _fields(spec, state, args, ctx)
        if fields is None:
            return False
        known = self.summarised
        previous = known[1] if known is not None and known[0] is state else _summary(state, ctx)
        payload, after, summary = _payload(spec, state, fields, ctx, previous)
        event = _chained_event(spec, payload, ctx.at, self.id, self.version + 1, state.last_hash)
        self.prepared = after
        try:
            # What eventsourcing's ``trigger_event`` does with the event it constructs.
            event.mutate(self)
        finally:
            self.prepared = None
        self.pending_events.append(event)
        self.summarised = (self.state, summary)
        return True

    # --- views ------------------------------------------------------------------------------

    def offered(self, role: str, ref: Reference) -> list[str]:
        """What ``role`` is offered now (the same answer every event records)."""
        return offered(self.state, role, ref)

    def snapshot_dict(self) -> dict[str, Any]:
        """The state as JSON-ready data for auditors and the API (datetimes as ISO-8601 UTC
        text). Two replays of the same events give equal dicts."""
        return {
            "id": str(self.id),
            "version": self.version,
            **self.state.to_json(),
            "updated_at": iso_utc(self.modified_on),
        }


def _chained_event(
    spec: ActionSpec, payload: dict[str, Any], at: datetime, case_id: UUID, version: int,
    prev_hash: str, topic: str | None = None,
) -> CaseEvent:
    """The event recording ``payload`` as version ``version`` of the case: its hash chained
    to ``prev_hash``, and the time, originator (``topic``: a creating event's aggregate
    class) and version eventsourcing's ``_create`` / ``trigger_event`` would give it, none
    of them hashed. ``payload`` becomes the event's attributes."""
    digest = _chain(prev_hash, str(case_id), version, spec.event.__name__, at, payload)
    if topic is not None:
        payload["originator_topic"] = topic
    payload["timestamp"] = at
    payload["prev_hash"] = prev_hash
    payload["hash"] = digest
    payload["originator_id"] = case_id
    payload["originator_version"] = version
    return new_event(spec.event, payload)


@cache
def _topic(cls: type[Case]) -> str:
    """The aggregate class's topic, as its created events record it."""
    return get_topic(cls)


@cache
def _creating() -> ActionSpec:
    """The registry's entry that creates a case (looked up once)."""
    return next(s for s in REGISTRY.values() if s.creates)


def new_event(event_class: type[CaseEvent], fields: dict[str, Any]) -> CaseEvent:
    """``event_class(**fields)`` — the same attributes in the same order (the stored JSON
    keeps it), the same TypeError for a missing or unknown field, the same check of the
    originator id — without the frozen dataclass's ``__init__``, which sets every field
    through ``object.__setattr__`` (about 3 µs for an event of 25 fields, recorded for
    every command). ``fields`` becomes the event's attributes: the caller's own dict."""
    template, required = _event_template(event_class)
    keys = fields.keys()
    if not (required <= keys and keys <= template.keys()):
        return event_class(**fields)  # raises the dataclass's TypeError
    if not isinstance(fields["originator_id"], UUID):
        return event_class(**fields)  # raises eventsourcing's TypeError
    state = template.copy()
    state.update(fields)  # keys already there: the template's (field) order stays
    event = object.__new__(event_class)
    object.__setattr__(event, "__dict__", state)
    return event


@cache
def _event_template(
    event_class: type[CaseEvent],
) -> tuple[dict[str, Any], frozenset[str]]:
    """Every field of ``event_class`` in order with its default (None where it has none),
    and the names of the fields without a default."""
    fields = dataclasses.fields(event_class)  # type: ignore[arg-type]
    if any(f.default_factory is not dataclasses.MISSING or not f.init for f in fields):
        raise TypeError(f"{event_class.__name__}: only plain fields are supported")
    template = {
        f.name: None if f.default is dataclasses.MISSING else f.default for f in fields
    }
    required = frozenset(f.name for f in fields if f.default is dataclasses.MISSING)
    return template, required


def _check_time(at: Any) -> None:
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidCommand("at must be a timezone-aware datetime", "at")


def _fields(
    spec: ActionSpec, state: CaseState, args: Strict, ctx: Context
) -> dict[str, Any] | None:
    """The event's own fields: every argument by name, then what the entry computes."""
    if not isinstance(args, spec.args):
        raise InvalidCommand(f"{spec.name} takes {spec.args.__name__}", "args")
    fields = args.dump()
    if spec.decide is not None:
        computed = spec.decide(state, args, ctx)
        if computed is None:
            return None
        fields.update(computed)
    return fields


def _payload(
    spec: ActionSpec,
    state: CaseState,
    fields: dict[str, Any],
    ctx: Context,
    previous: dict[str, Any] | None,
) -> tuple[dict[str, Any], CaseState, dict[str, Any]]:
    """The full payload (own fields + common ones + what the summary changed from
    ``previous``, the whole summary for a new case), the state after and its summary.

    ``fields`` is this command's own dict (``_fields``: a fresh ``model_dump`` plus the
    entry's computed values): the state after takes its containers, the event a copy of
    them (``json_safe``), so the two never share a dict or list."""
    due, due_step = spec.deadline.after(state, fields, ctx)
    fields.pop("due", None)  # a watcher's mark names the running deadline: the common ``due``
    reason = fields.pop("reason", None)
    common = {
        "actor": _text(ctx.actor, "actor"),
        "role": ctx.role,
        "channel": _text(ctx.channel, "channel"),
        "reason": reason,
        "command_id": _text(ctx.command_id, "command_id"),
        "from_status": None if spec.creates else state.status.value,
        "to_status": (INITIAL_STATUS if spec.creates else spec.status_after(state.status)).value,
        "due": due,
        "due_step": due_step if due is not None else None,
        "due_warn": _yellow_moment(state, fields, ctx, due, due_step),
    }
    payload = json_safe(fields)
    payload.update(common)
    after = state.copy()
    advance(after, Draft.with_facts(spec.event, {**fields, **common, "timestamp": ctx.at}))
    moved: set[str] = set()
    summary = _summary(after, ctx, state, previous, moved)
    if previous is None:
        payload["summary"] = summary
    else:  # record what changed (the lights always: two booleans)
        moved.update(ALWAYS)
        if summary["offers"] != previous.get("offers"):
            moved.add("offers")
        payload["summary"] = {k: v for k, v in summary.items() if k in moved}
    return payload, after, summary


def _yellow_moment(
    state: CaseState,
    fields: dict[str, Any],
    ctx: Context,
    due: datetime | None,
    step: str | None,
) -> datetime | None:
    """When the deadline running after the event turns yellow (``deadlines.warning_at``
    from the moment it started, on its category's clock; see ``events`` for why it is
    recorded). A deadline that goes on keeps its moment; it is computed again when the
    deadline or the category changes, and for a case whose running deadline was started
    before the moment was recorded."""
    if due is None or step == "review":
        return None
    started_now = due != state.due or step != state.due_step
    category = fields.get("category") or state.category
    if not started_now and category == state.category and state.due_warn is not None:
        return state.due_warn
    start = ctx.at if started_now else (state.due_since or due)
    return deadlines.warning_at(start, due, ctx.category(category).clock, ctx.ref.calendar)


def _summary(
    state: CaseState,
    ctx: Context,
    before: CaseState | None = None,
    previous: dict[str, Any] | None = None,
    moved: set[str] | None = None,
) -> dict[str, Any]:
    """The read models' fields of ``state`` and what each role is offered in it (from
    ``previous``, the summary of ``before``, when known; then ``moved`` receives the names
    of the fields whose value differs from ``previous``, offers and lights aside)."""
    if before is None or previous is None:
        out = state.summary()
    else:
        out = state.summary_since(before, previous, moved)
    out["offers"] = offers(state, ctx.ref)
    return out


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidCommand(f"{field} is required", field)
    return value


def _chain(
    prev_hash: str, case_id: str, version: int, event_type: str, at: datetime, payload: Any
) -> str:
    """`event_hash`, refusing payloads canonical JSON cannot represent (bytes, sets, NaN,
    naive datetimes ...): what cannot be hashed cannot be stored faithfully either."""
    try:
        return event_hash(prev_hash, case_id, version, event_type, at, payload)
    except (TypeError, ValueError) as exc:
        raise InvalidCommand(f"value not storable: {exc}") from exc


# --------------------------------------------------------------------------- stored histories


def event_payload(event: Any) -> dict[str, Any]:
    """The hashed payload of a stored case event: its fields minus `NON_PAYLOAD_FIELDS`.
    A field the event was recorded without (``due_warn`` before it existed) is not part of
    its payload: it was not hashed either."""
    recorded = vars(event)
    return {
        f.name: recorded[f.name]
        for f in dataclasses.fields(event)
        if f.name not in NON_PAYLOAD_FIELDS and f.name in recorded
    }


def recompute_hash(event: Any, prev_hash: str | None = None) -> str:
    """Hash of `event` recomputed from its content (chained to `prev_hash`, or to the
    `prev_hash` the event claims when not given)."""
    return event_hash(
        event.prev_hash if prev_hash is None else prev_hash,
        str(event.originator_id),
        event.originator_version,
        type(event).__name__,
        event.timestamp,
        event_payload(event),
    )


def verify_chain(events: Iterable[Any]) -> int | None:
    """Check a case's events in version order; return the version of the first broken link
    (wrong `prev_hash`, content not matching `hash`, or a gap in versions), else None."""
    prev = GENESIS
    expected_version = 1
    for event in events:
        version = int(event.originator_version)
        if version != expected_version or event.prev_hash != prev:
            return version
        if recompute_hash(event, prev) != event.hash:
            return version
        prev = event.hash
        expected_version += 1
    return None


__all__ = ["Case", "event_payload", "json_view", "recompute_hash", "verify_chain"]
