"""The `Case` aggregate (案件): one report's whole closed loop (閉環) as an event stream.

Why event-sourced: auditors need the full ordered history (who, what, when, why, channel) and
the state at any past moment; metrics (立案率, 返工率, 按期結案率 ...) are counted from the
events. So every change is an explicit event class with stable name and fields, and the
aggregate's attributes are only ever changed by applying events.

Rules of this module
--------------------
* Pure: no I/O and no clock. Every command receives `at` (timezone-aware) and it becomes the
  event timestamp, so replaying the stored events reproduces the state exactly. A command
  whose `at` is earlier than the case's last event is refused: a case history is time-ordered.
* Each command runs the same four steps:
  1. idempotency — a `command_id` already applied to this case does nothing (redelivery from
     NATS, a client resubmitting after the dedupe window);
  2. permission (`NotPermitted`) then the state table (`IllegalTransition`, listing what this
     role may do now) — both from `aggregates.states`, the single place for the rules;
  3. validation (`InvalidCommand`: missing reason, limit reached, top level, ...);
  4. trigger the event.
* Every event carries `actor, role, channel, reason, command_id`, the status it moved from and
  to (`from_status`, `to_status`: the history explains itself even if the rules table changes
  later) and the hash chain fields `prev_hash`, `hash` (see `aggregates.integrity`). The hashed
  payload is every event field except `originator_id`, `originator_version`, `timestamp`,
  `originator_topic` (these are in the hash envelope or are storage metadata) and the two
  hash fields; `event_payload()` computes it and `verify_chain()` checks a stored history.
* Field values stay JSON-friendly (str, int, float, bool, None, lists / dicts of those,
  datetime, UUID) so eventsourcing's JSON transcoder stores them losslessly and the hash
  recomputed after a round trip through the store is the same.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import resolve_topic

from aggregates.errors import IllegalTransition, InvalidCommand, NotPermitted
from aggregates.integrity import GENESIS, event_hash, iso_utc
from aggregates.states import (
    INITIAL_ACTION,
    INITIAL_STATUS,
    STATUS_ZH,
    Action,
    Status,
    allowed_actions,
    next_status,
    role_may,
)

#: Who reported (上報人類型): an inspector 網格員, a citizen via hotline 市民, an Open311 client.
REPORTER_TYPES: frozenset[str] = frozenset({"inspector", "citizen", "open311"})
#: Intake channel of the report (來源).
SOURCES: frozenset[str] = frozenset({"inspector_app", "hotline", "open311", "api"})
#: Return-visit answers (回訪滿意度): 滿意 / 基本滿意 / 不滿意.
SATISFACTION: dict[str, str] = {
    "satisfied": "滿意",
    "basically_satisfied": "基本滿意",
    "dissatisfied": "不滿意",
}
#: Default number of extensions (延期) a shift leader may approve; more needs a supervisor
#: with a written reason. Engineering categories pass 0 so every extension needs one.
DEFAULT_MAX_EXTENSIONS = 1

#: Event fields left out of the hashed payload (envelope or storage metadata, and the hashes).
NON_PAYLOAD_FIELDS: frozenset[str] = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic", "prev_hash", "hash"}
)


# ---------------------------------------------------------------------------------------------
# Small validators. They raise InvalidCommand so the caller gets a 422 naming the field.
# ---------------------------------------------------------------------------------------------


def _text(value: Any, field: str) -> str:
    """A required, non-blank string (reasons, names, codes)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidCommand(f"{field} is required", field)
    return value


def _opt_text(value: Any, field: str) -> str | None:
    """An optional string: None stays None; anything else must be a string."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidCommand(f"{field} must be a string", field)
    return value


def _aware(value: Any, field: str) -> datetime:
    """A timezone-aware datetime: naive times are ambiguous and would break replays."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidCommand(f"{field} must be a timezone-aware datetime", field)
    return value


def _opt_aware(value: Any, field: str) -> datetime | None:
    """An optional deadline: None means "no clock for this step"."""
    return None if value is None else _aware(value, field)


def _photos(value: Any, field: str = "photos") -> list[dict[str, Any]]:
    """Photo references (digest, size, ... — the bytes live in the object store). Not copied
    here: every caller passes them on to `_payload`, which copies the whole payload."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        raise InvalidCommand(f"{field} must be a list of objects", field)
    return value


def _clone(value: Any) -> Any:
    """Copy of a JSON-like tree (dicts and lists rebuilt, tuples become lists, leaves shared).

    Why not `copy.deepcopy`: leaves here are immutable (str, numbers, datetime, UUID), and
    deepcopy was the largest cost on the write path. Tuples become lists because that is what
    the JSON store gives back, so state before and after a round trip is identical."""
    if isinstance(value, dict):
        return {k: _clone(v) if isinstance(v, _CONTAINERS) else v for k, v in value.items()}
    if isinstance(value, _CONTAINERS):
        return [_clone(v) if isinstance(v, _CONTAINERS) else v for v in value]
    return value


_CONTAINERS = (dict, list, tuple)


def _due_key(step: str, due: datetime) -> str:
    """Identity of one deadline, so warnings / overdue marks are once per deadline."""
    return f"{step}@{iso_utc(due)}"


def json_view(value: Any) -> Any:
    """Copy of `value` with datetimes as canonical ISO text and UUIDs as strings.

    Public because it *is* the JSON form of case state: :meth:`Case.snapshot_dict` uses it,
    and the audit history's fast view (``gateways.audit.history``) defers to it for anything
    that is not plain JSON, so both render a datetime or UUID the same way and their
    snapshots stay comparable byte for byte."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: json_view(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_view(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Hash-chain helpers for stored events (used by auditors and tests).
# ---------------------------------------------------------------------------------------------


def event_payload(event: Any) -> dict[str, Any]:
    """The hashed payload of a stored case event: its dataclass fields minus
    `NON_PAYLOAD_FIELDS`."""
    return {
        f.name: getattr(event, f.name)
        for f in dataclasses.fields(event)
        if f.name not in NON_PAYLOAD_FIELDS
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


# ---------------------------------------------------------------------------------------------
# The aggregate.
# ---------------------------------------------------------------------------------------------


class Case(Aggregate):
    """One case (案件). Public attributes are read by the service, projections and tests;
    only events change them."""

    # --- events ---------------------------------------------------------------------------

    class Event(Aggregate.Event):
        """Base of all case events: who did it, through which channel, why, and the chain."""

        actor: str  # 操作人 (user id or "system:sla-watcher")
        role: str  # 角色 the actor acted in
        channel: str  # 渠道: web, app, hotline, open311, api, system ...
        reason: str | None  # 原因 / 理由
        command_id: str  # idempotency key of the command (冪等鍵)
        from_status: str | None  # status before (None for Reported)
        to_status: str  # status after
        prev_hash: str  # hash of the previous event of this case (GENESIS "" for v1)
        hash: str  # this event's hash, see aggregates.integrity

        action: ClassVar[Action]

        def apply(self, aggregate: Any) -> None:
            """eventsourcing hook: event-specific change first, then common bookkeeping."""
            case = cast("Case", aggregate)
            self.apply_change(case)
            case._record(self)

        def apply_change(self, case: Case) -> None:
            """Event-specific state change; overridden by each event class."""

    class Reported(Event, Aggregate.Created):
        """上報 / 受理登記: the case exists, waiting to be filed (待立案)."""

        action = Action.report
        case_no: str
        category: str
        kind: str
        grid: str
        community: str
        district: str
        level: str
        node: str | None
        lat: float | None
        lon: float | None
        address: str | None
        description: str
        reporter: dict[str, Any]
        source: str
        client_time: datetime | None
        photos: list[dict[str, Any]]
        priority: str
        proposal: dict[str, Any]
        file_due: datetime | None

        def mutate(self, aggregate: Any) -> Any:
            """eventsourcing's ``CanInitAggregate.mutate`` (new shell, base init, ``__init__``,
            ``apply``) without its two signature-filtered copies of all ~30 event fields —
            ``Case.__init__`` takes none. Runs for every new case and every replay; other
            aggregate classes (none today) get the library's version."""
            cls = resolve_topic(self.originator_topic)
            if aggregate is not None or cls.__init__ is not Case.__init__ or not _PLAIN_INIT:
                return super().mutate(aggregate)
            case = cls.__new__(cls)
            case.__base_init__(self.originator_id, self.originator_version, self.timestamp)
            case.__init__()
            self.apply(case)
            return case

        def apply_change(self, case: Case) -> None:
            case.case_no = self.case_no
            case.category = self.category
            case.kind = self.kind
            case.grid = self.grid
            case.community = self.community
            case.district = self.district
            case.level = self.level
            case.node = self.node
            case.lat = self.lat
            case.lon = self.lon
            case.address = self.address
            case.description = self.description
            case.reporter = _clone(self.reporter)
            case.reporters = [_clone(self.reporter)]
            case.source = self.source
            case.client_time = self.client_time
            case.photos = _clone(self.photos)
            case.priority = self.priority
            case.proposal = _clone(self.proposal)
            case.reported_at = self.timestamp
            case._set_due(self.file_due, "file")

    class Filed(Event):
        """立案: filing conditions met, waiting for dispatch (待派遣)."""

        action = Action.file
        note: str | None
        dispatch_due: datetime

        def apply_change(self, case: Case) -> None:
            case.filed_at = self.timestamp
            case._set_due(self.dispatch_due, "dispatch")

    class Rejected(Event):
        """不予立案 / 不予受理 (reason required). Terminal."""

        action = Action.reject

        def apply_change(self, case: Case) -> None:
            case.rejection_reason = self.reason
            case.finished_at = self.timestamp
            case._set_due(None, None)

    class MarkedDuplicate(Event):
        """標記重複: merged into an open case; its reporter is linked there. Terminal."""

        action = Action.mark_duplicate
        of_case_no: str
        of_case_id: str

        def apply_change(self, case: Case) -> None:
            case.duplicate_of = self.of_case_no
            case.duplicate_of_id = self.of_case_id
            case.finished_at = self.timestamp
            case._set_due(None, None)

    class ReporterLinked(Event):
        """關聯上報人: the reporter of a duplicate is told about this case's progress."""

        action = Action.link_reporter
        reporter: dict[str, Any]
        from_case_no: str

        def apply_change(self, case: Case) -> None:
            linked = {**_clone(self.reporter), "from_case_no": self.from_case_no}
            case.reporters.append(linked)

    class Dispatched(Event):
        """派遣 / 重派 / 返工派遣 to a department with a handling deadline (處置時限)."""

        action = Action.dispatch
        department: str
        level: str
        node: str
        priority: str
        handle_due: datetime
        overridden: bool  # differs from the triage proposal (改派), reason required
        override_reason: str | None
        redispatch: bool  # after a return (退單後重派)
        wrong_dispatch: bool  # the previous dispatch was to the wrong department (錯誤派遣)
        previous_department: str | None
        previous_dispatcher: str | None  # who the wrong dispatch counts against

        def apply_change(self, case: Case) -> None:
            case.department = self.department
            case.level = self.level
            case.node = self.node
            case.priority = self.priority
            case.overridden = self.overridden
            case.dispatch_count += 1
            if self.wrong_dispatch:
                case.wrong_dispatches += 1
            case.returned_from = None
            case.last_dispatcher = self.actor
            if case.first_dispatched_at is None:
                case.first_dispatched_at = self.timestamp
            case.dispatched_at = self.timestamp
            case._set_due(self.handle_due, "handle")

    class Accepted(Event):
        """接單: the department starts handling (處置中)."""

        action = Action.accept

        def apply_change(self, case: Case) -> None:
            case.accepted_at = self.timestamp

    class Returned(Event):
        """退單 / 回退: the department says it is not theirs (reason required)."""

        action = Action.return_case
        department: str | None
        dispatch_due: datetime | None

        def apply_change(self, case: Case) -> None:
            case.return_count += 1
            case.returned_from = self.department
            case.department = None
            case._set_due(self.dispatch_due, "dispatch")

    class ExtensionRequested(Event):
        """延期申請: the department asks for more time (reason required)."""

        action = Action.request_extension
        hours: float

        def apply_change(self, case: Case) -> None:
            case.pending_extension = {
                "hours": self.hours,
                "reason": self.reason,
                "requested_by": self.actor,
                "requested_at": iso_utc(self.timestamp),
            }

    class ExtensionApproved(Event):
        """批准延期: the handling deadline moves to `new_due`."""

        action = Action.approve_extension
        new_due: datetime
        previous_due: datetime | None
        hours: float
        extension_number: int  # 1 for the first approved extension of this case
        beyond_limit: bool  # past max_extensions: approved by a supervisor with a reason

        def apply_change(self, case: Case) -> None:
            case.extension_count = self.extension_number
            case.pending_extension = None
            case._set_due(self.new_due, case.due_step or "handle")

    class ExtensionRefused(Event):
        """駁回延期: the deadline stays."""

        action = Action.refuse_extension
        hours: float

        def apply_change(self, case: Case) -> None:
            case.pending_extension = None

    class Suspended(Event):
        """掛賬: parked (e.g. needs budget) until a review date; the handling clock pauses."""

        action = Action.suspend
        review_at: datetime
        paused_due: datetime | None  # handling deadline at the moment of suspension

        def apply_change(self, case: Case) -> None:
            case.suspended_at = self.timestamp
            case.paused_due = self.paused_due
            case.suspension_count += 1
            case._set_due(self.review_at, "review")

    class Resumed(Event):
        """恢復處置: back to handling; the service moved the deadline by the paused time."""

        action = Action.resume
        new_due: datetime
        suspended_since: datetime | None

        def apply_change(self, case: Case) -> None:
            case.suspended_at = None
            case.paused_due = None
            case._set_due(self.new_due, "handle")

    class ResultReported(Event):
        """處置反饋: the department reports the result with photos; waits for 核查."""

        action = Action.report_result
        note: str
        photos: list[dict[str, Any]]
        verify_due: datetime | None

        def apply_change(self, case: Case) -> None:
            case.result = {
                "note": self.note,
                "photos": _clone(self.photos),
                "by": self.actor,
                "at": iso_utc(self.timestamp),
            }
            case.result_at = self.timestamp
            case._set_due(self.verify_due, "verify")

    class VerificationPassed(Event):
        """核查通過: the inspector confirmed the fix on site; ready to close."""

        action = Action.verify_pass
        note: str | None
        photos: list[dict[str, Any]]
        close_due: datetime | None

        def apply_change(self, case: Case) -> None:
            case.verification = {
                "passed": True,
                "note": self.note,
                "photos": _clone(self.photos),
                "by": self.actor,
                "at": iso_utc(self.timestamp),
            }
            case._set_due(self.close_due, "close")

    class VerificationFailed(Event):
        """核查不通過 → 返工: back to the same department, clock restarts, rework counted."""

        action = Action.verify_fail
        note: str
        photos: list[dict[str, Any]]
        new_due: datetime
        department: str | None
        rework_number: int

        def apply_change(self, case: Case) -> None:
            case.verification = {
                "passed": False,
                "note": self.note,
                "photos": _clone(self.photos),
                "by": self.actor,
                "at": iso_utc(self.timestamp),
            }
            case.rework_count = self.rework_number
            case.dispatched_at = self.timestamp
            case._set_due(self.new_due, "handle")

    class Escalated(Event):
        """上提一級: the next level's command centre now owns dispatch (status filed)."""

        action = Action.escalate
        from_level: str
        from_node: str | None
        to_level: str
        to_node: str | None
        automatic: bool  # by the SLA watcher on overdue (自動上提) vs by a person
        proposal: dict[str, Any]  # routing proposal at the new level (may be empty)
        dispatch_due: datetime | None
        previous_department: str | None

        def apply_change(self, case: Case) -> None:
            case.level = self.to_level
            case.node = self.to_node
            case.proposal = _clone(self.proposal)
            case.department = None
            case.returned_from = None
            case.suspended_at = None
            case.paused_due = None
            case.escalations += 1
            case._set_due(self.dispatch_due, "dispatch")

    class Supervised(Event):
        """督辦: a leader flags a slow case; highlighted and counted."""

        action = Action.supervise

        def apply_change(self, case: Case) -> None:
            case.supervision_orders += 1
            case.supervised = True

    class Closed(Event):
        """結案."""

        action = Action.close
        note: str | None

        def apply_change(self, case: Case) -> None:
            case.closed_at = self.timestamp
            case.finished_at = self.timestamp
            case.close_note = self.note
            case._set_due(None, None)

    class ReturnVisited(Event):
        """回訪: satisfaction recorded once (滿意 / 基本滿意 / 不滿意)."""

        action = Action.return_visit
        satisfaction: str
        comment: str | None

        def apply_change(self, case: Case) -> None:
            case.satisfaction = self.satisfaction
            case.return_visit_comment = self.comment
            case.return_visited_at = self.timestamp

    class WarningMarked(Event):
        """黃燈: 80 % of the current step's limit used (once per deadline)."""

        action = Action.mark_warning
        step: str
        due: datetime

        def apply_change(self, case: Case) -> None:
            case.warning_for = _due_key(self.step, self.due)

    class OverdueMarked(Event):
        """紅燈 超期: the current step's deadline passed (once per deadline)."""

        action = Action.mark_overdue
        step: str
        due: datetime

        def apply_change(self, case: Case) -> None:
            case.overdue_for = _due_key(self.step, self.due)
            case.overdue_count += 1

    # --- state ----------------------------------------------------------------------------

    def __init__(self) -> None:
        """Empty shell; the `Reported` event fills it (eventsourcing calls this on replay)."""
        self.case_no: str = ""
        self.status: Status = INITIAL_STATUS
        self.category: str = ""
        self.kind: str = ""
        self.grid: str = ""
        self.community: str = ""
        self.district: str = ""
        self.level: str = ""
        self.node: str | None = None
        self.department: str | None = None
        self.priority: str = ""
        self.reporter: dict[str, Any] = {}
        self.reporters: list[dict[str, Any]] = []
        self.source: str = ""
        self.client_time: datetime | None = None
        self.description: str = ""
        self.lat: float | None = None
        self.lon: float | None = None
        self.address: str | None = None
        self.photos: list[dict[str, Any]] = []
        self.proposal: dict[str, Any] = {}
        # Current step deadline (時限) and which step it is for: file, dispatch, handle,
        # review (掛賬復核), verify, close. None when no clock runs.
        self.due: datetime | None = None
        self.due_step: str | None = None
        self.extension_count = 0
        self.pending_extension: dict[str, Any] | None = None
        self.rework_count = 0  # 返工
        self.return_count = 0  # 退單
        self.dispatch_count = 0
        self.escalations = 0  # 上提
        self.supervision_orders = 0  # 督辦
        self.supervised = False
        self.wrong_dispatches = 0  # 錯誤派遣
        self.overridden = False  # last dispatch overrode the triage proposal
        self.suspension_count = 0
        self.overdue_count = 0
        self.satisfaction: str | None = None
        self.return_visit_comment: str | None = None
        self.duplicate_of: str | None = None
        self.duplicate_of_id: str | None = None
        self.rejection_reason: str | None = None
        self.returned_from: str | None = None
        self.last_dispatcher: str | None = None
        self.suspended_at: datetime | None = None
        self.paused_due: datetime | None = None
        self.result: dict[str, Any] | None = None
        self.verification: dict[str, Any] | None = None
        self.close_note: str | None = None
        self.warning_for: str | None = None
        self.overdue_for: str | None = None
        self.reported_at: datetime | None = None
        self.filed_at: datetime | None = None
        self.first_dispatched_at: datetime | None = None
        self.dispatched_at: datetime | None = None
        self.accepted_at: datetime | None = None
        self.result_at: datetime | None = None
        self.closed_at: datetime | None = None
        self.finished_at: datetime | None = None  # closed, rejected or merged
        self.return_visited_at: datetime | None = None
        self.last_hash: str = GENESIS
        self.applied_commands: list[str] = []

    def _set_due(self, due: datetime | None, step: str | None) -> None:
        """Start the clock of a step (or stop it with None)."""
        self.due = due
        self.due_step = step if due is not None else None

    def _record(self, event: Case.Event) -> None:
        """Bookkeeping common to every event (called by `Event.apply`)."""
        self.status = Status(event.to_status)
        if self.status is not Status.in_progress:
            # An extension request only makes sense while the department is handling.
            self.pending_extension = None
        self.last_hash = event.hash
        self.applied_commands.append(event.command_id)

    # --- derived views --------------------------------------------------------------------

    @property
    def is_warned(self) -> bool:
        """Yellow light (黃燈) raised for the current deadline."""
        return self.due is not None and self.warning_for == _due_key(self.due_step or "", self.due)

    @property
    def is_overdue(self) -> bool:
        """Red light (紅燈) raised for the current deadline."""
        return self.due is not None and self.overdue_for == _due_key(self.due_step or "", self.due)

    def available_actions(self, role: str | None = None) -> list[Action]:
        """What `role` may do now: the state table plus the data-dependent guards
        (an extension decision needs a pending request, one request at a time, one return
        visit). Same order as `allowed_actions`."""
        out: list[Action] = []
        for action in allowed_actions(self.status, role):
            if (
                action in (Action.approve_extension, Action.refuse_extension)
                and self.pending_extension is None
            ):
                continue
            if action is Action.request_extension and self.pending_extension is not None:
                continue
            if action is Action.return_visit and self.return_visited_at is not None:
                continue
            out.append(action)
        return out

    def snapshot_dict(self) -> dict[str, Any]:
        """JSON-ready view of the state (datetimes as ISO-8601 UTC 'Z' text) for auditors and
        the API. Two replays of the same events give equal dicts."""
        return json_view(
            {
                "id": str(self.id),
                "case_no": self.case_no,
                "version": self.version,
                "status": self.status.value,
                "status_zh": STATUS_ZH[self.status],
                "category": self.category,
                "kind": self.kind,
                "grid": self.grid,
                "community": self.community,
                "district": self.district,
                "level": self.level,
                "node": self.node,
                "department": self.department,
                "priority": self.priority,
                "reporter": _clone(self.reporter),
                "reporters": _clone(self.reporters),
                "source": self.source,
                "client_time": self.client_time,
                "description": self.description,
                "lat": self.lat,
                "lon": self.lon,
                "address": self.address,
                "photos": _clone(self.photos),
                "proposal": _clone(self.proposal),
                "due": self.due,
                "due_step": self.due_step,
                "warned": self.is_warned,
                "overdue": self.is_overdue,
                "extension_count": self.extension_count,
                "pending_extension": _clone(self.pending_extension),
                "rework_count": self.rework_count,
                "return_count": self.return_count,
                "dispatch_count": self.dispatch_count,
                "escalations": self.escalations,
                "supervision_orders": self.supervision_orders,
                "supervised": self.supervised,
                "wrong_dispatches": self.wrong_dispatches,
                "overridden": self.overridden,
                "suspension_count": self.suspension_count,
                "overdue_count": self.overdue_count,
                "satisfaction": self.satisfaction,
                "return_visit_comment": self.return_visit_comment,
                "duplicate_of": self.duplicate_of,
                "duplicate_of_id": self.duplicate_of_id,
                "rejection_reason": self.rejection_reason,
                "returned_from": self.returned_from,
                "last_dispatcher": self.last_dispatcher,
                "suspended_at": self.suspended_at,
                "paused_due": self.paused_due,
                "result": _clone(self.result),
                "verification": _clone(self.verification),
                "close_note": self.close_note,
                "reported_at": self.reported_at,
                "filed_at": self.filed_at,
                "first_dispatched_at": self.first_dispatched_at,
                "dispatched_at": self.dispatched_at,
                "accepted_at": self.accepted_at,
                "result_at": self.result_at,
                "closed_at": self.closed_at,
                "finished_at": self.finished_at,
                "return_visited_at": self.return_visited_at,
                "updated_at": self.modified_on,
                "last_hash": self.last_hash,
            }
        )

    # --- command plumbing -----------------------------------------------------------------

    def _begin(self, action: Action, *, role: str, at: datetime, command_id: str) -> bool:
        """Steps 1-2 (+ the common part of 3). False means "already applied, do nothing"."""
        if command_id in self.applied_commands:
            return False
        if not role_may(role, action):
            raise NotPermitted(action, role)
        allowed = self.available_actions(role)
        if action not in allowed:
            raise IllegalTransition(action, self.status, allowed)
        _text(command_id, "command_id")
        _aware(at, "at")
        if at < self.modified_on:
            raise InvalidCommand(
                f"at ({iso_utc(at)}) is earlier than the case's last event "
                f"({iso_utc(self.modified_on)})",
                "at",
            )
        return True

    def _emit(
        self,
        event_class: type[Case.Event],
        *,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        reason: str | None,
        **fields: Any,
    ) -> None:
        """Step 4: build the payload, chain the hash, trigger the event at `at`."""
        to_status = next_status(self.status, event_class.action)
        payload = _payload(
            fields,
            actor=actor,
            role=role,
            channel=channel,
            reason=reason,
            command_id=command_id,
            from_status=self.status.value,
            to_status=to_status.value,
        )
        digest = _chain(
            self.last_hash, str(self.id), self.version + 1, event_class.__name__, at, payload
        )
        self.trigger_event(
            event_class, timestamp=at, prev_hash=self.last_hash, hash=digest, **payload
        )

    # --- commands ---------------------------------------------------------------------------

    @classmethod
    def report(
        cls,
        *,
        case_id: UUID,
        case_no: str,
        category: str,
        kind: str,
        grid: str,
        community: str,
        district: str,
        description: str,
        reporter: dict[str, Any],
        source: str,
        priority: str,
        level: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        lat: float | None = None,
        lon: float | None = None,
        address: str | None = None,
        client_time: datetime | None = None,
        photos: list[dict[str, Any]] | None = None,
        proposal: dict[str, Any] | None = None,
        file_due: datetime | None = None,
        node: str | None = None,
    ) -> Case:
        """上報 / 受理登記: create the case (status reported). `node` defaults to the
        triage proposal's node. The service dedupes `command_id` for creation (the case id
        is derived from it or looked up), because there is no aggregate yet to remember it."""
        if not role_may(role, INITIAL_ACTION):
            raise NotPermitted(INITIAL_ACTION, role)
        if not isinstance(case_id, UUID):
            raise InvalidCommand("case_id must be a UUID", "case_id")
        for name, value in (
            ("case_no", case_no),
            ("category", category),
            ("kind", kind),
            ("grid", grid),
            ("community", community),
            ("district", district),
            ("priority", priority),
            ("level", level),
            ("actor", actor),
            ("channel", channel),
            ("command_id", command_id),
        ):
            _text(value, name)
        if not isinstance(description, str):
            raise InvalidCommand("description must be a string", "description")
        _aware(at, "at")
        _opt_aware(client_time, "client_time")
        _opt_aware(file_due, "file_due")
        _opt_text(address, "address")
        if source not in SOURCES:
            raise InvalidCommand(f"source must be one of {sorted(SOURCES)}", "source")
        if not isinstance(reporter, dict) or reporter.get("type") not in REPORTER_TYPES:
            raise InvalidCommand(
                f"reporter must be an object with type in {sorted(REPORTER_TYPES)}", "reporter"
            )
        if (lat is None) != (lon is None):
            raise InvalidCommand("lat and lon go together", "lat")
        if lat is not None and lon is not None:
            for coord, number, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
                if (
                    isinstance(number, bool)
                    or not isinstance(number, int | float)
                    or not math.isfinite(number)
                    or abs(number) > limit
                ):
                    raise InvalidCommand(f"{coord} out of range", coord)
            lat, lon = float(lat), float(lon)
        if proposal is not None and not isinstance(proposal, dict):
            raise InvalidCommand("proposal must be an object", "proposal")
        proposal = proposal or {}  # copied with the rest of the payload by `_payload`
        payload = _payload(
            {
                "case_no": case_no,
                "category": category,
                "kind": kind,
                "grid": grid,
                "community": community,
                "district": district,
                "level": level,
                "node": node if node is not None else _opt_text(proposal.get("node"), "node"),
                "lat": lat,
                "lon": lon,
                "address": address,
                "description": description,
                "reporter": reporter,
                "source": source,
                "client_time": client_time,
                "photos": _photos(photos),
                "priority": priority,
                "proposal": proposal,
                "file_due": file_due,
            },
            actor=actor,
            role=role,
            channel=channel,
            reason=None,
            command_id=command_id,
            from_status=None,
            to_status=INITIAL_STATUS.value,
        )
        digest = _chain(GENESIS, str(case_id), 1, cls.Reported.__name__, at, payload)
        return cls._create(
            cls.Reported, id=case_id, timestamp=at, prev_hash=GENESIS, hash=digest, **payload
        )

    def file(
        self,
        *,
        dispatch_due: datetime,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        note: str | None = None,
        reason: str | None = None,
    ) -> None:
        """立案: filing conditions met; the dispatch clock (派遣時限) starts."""
        if not self._begin(Action.file, role=role, at=at, command_id=command_id):
            return
        self._emit(
            Case.Filed,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_opt_text(reason, "reason"),
            note=_opt_text(note, "note"),
            dispatch_due=_aware(dispatch_due, "dispatch_due"),
        )

    def reject(
        self,
        *,
        reason: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
    ) -> None:
        """不予立案 / 不予受理: terminal; a reason is mandatory (the reporter is told why)."""
        if not self._begin(Action.reject, role=role, at=at, command_id=command_id):
            return
        self._emit(
            Case.Rejected,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_text(reason, "reason"),
        )

    def mark_duplicate(
        self,
        *,
        of_case_no: str,
        of_case_id: UUID | str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        reason: str | None = None,
    ) -> None:
        """標記重複: merge into an open case. The service also calls `link_reporter` on the
        original and saves both aggregates in one transaction."""
        if not self._begin(Action.mark_duplicate, role=role, at=at, command_id=command_id):
            return
        _text(of_case_no, "of_case_no")
        if not isinstance(of_case_id, UUID | str) or not str(of_case_id).strip():
            raise InvalidCommand("of_case_id is required", "of_case_id")
        if str(of_case_id) == str(self.id) or of_case_no == self.case_no:
            raise InvalidCommand("a case cannot duplicate itself", "of_case_id")
        self._emit(
            Case.MarkedDuplicate,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_opt_text(reason, "reason"),
            of_case_no=of_case_no,
            of_case_id=str(of_case_id),
        )

    def link_reporter(
        self,
        *,
        reporter: dict[str, Any],
        from_case_no: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        reason: str | None = None,
    ) -> None:
        """關聯上報人: remember the reporter of a merged duplicate on this (original) case."""
        if not self._begin(Action.link_reporter, role=role, at=at, command_id=command_id):
            return
        if not isinstance(reporter, dict):
            raise InvalidCommand("reporter must be an object", "reporter")
        self._emit(
            Case.ReporterLinked,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_opt_text(reason, "reason"),
            reporter=reporter,
            from_case_no=_text(from_case_no, "from_case_no"),
        )

    def dispatch(
        self,
        *,
        department: str,
        level: str,
        node: str,
        priority: str,
        handle_due: datetime,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        override_reason: str | None = None,
    ) -> None:
        """派遣 (or 重派 after a return). Differing from the routing proposal in department or
        priority is an override (改派) and needs a reason. Re-dispatching a returned case to
        a different department records the earlier dispatch as wrong (錯誤派遣, counted
        against that dispatcher, not the department)."""
        if not self._begin(Action.dispatch, role=role, at=at, command_id=command_id):
            return
        _text(department, "department")
        _text(level, "level")
        _text(node, "node")
        _text(priority, "priority")
        _aware(handle_due, "handle_due")
        _opt_text(override_reason, "override_reason")
        proposed_department = self.proposal.get("department")
        proposed_priority = self.proposal.get("priority") or self.priority
        overridden = (
            proposed_department is not None and department != proposed_department
        ) or priority != proposed_priority
        if overridden and not (override_reason and override_reason.strip()):
            raise InvalidCommand(
                "dispatch differs from the proposal "
                f"(department {proposed_department!r}, priority {proposed_priority!r}); "
                "override_reason is required",
                "override_reason",
            )
        redispatch = self.status is Status.returned
        wrong = redispatch and self.returned_from is not None and department != self.returned_from
        self._emit(
            Case.Dispatched,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=override_reason,
            department=department,
            level=level,
            node=node,
            priority=priority,
            handle_due=handle_due,
            overridden=overridden,
            override_reason=override_reason,
            redispatch=redispatch,
            wrong_dispatch=wrong,
            previous_department=self.returned_from if redispatch else None,
            previous_dispatcher=self.last_dispatcher if wrong else None,
        )

    def accept(
        self,
        *,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        reason: str | None = None,
    ) -> None:
        """接單: the department takes the case."""
        if not self._begin(Action.accept, role=role, at=at, command_id=command_id):
            return
        self._emit(
            Case.Accepted,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_opt_text(reason, "reason"),
        )

    def return_case(
        self,
        *,
        reason: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        dispatch_due: datetime | None = None,
    ) -> None:
        """退單: the department returns a mis-dispatch to the dispatcher (reason required);
        optionally the re-dispatch clock starts at `dispatch_due`."""
        if not self._begin(Action.return_case, role=role, at=at, command_id=command_id):
            return
        self._emit(
            Case.Returned,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_text(reason, "reason"),
            department=self.department,
            dispatch_due=_opt_aware(dispatch_due, "dispatch_due"),
        )

    def request_extension(
        self,
        *,
        hours: float,
        reason: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
    ) -> None:
        """延期申請: one pending request at a time, reason required."""
        if not self._begin(Action.request_extension, role=role, at=at, command_id=command_id):
            return
        if (
            isinstance(hours, bool)
            or not isinstance(hours, int | float)
            or not math.isfinite(hours)
            or hours <= 0
        ):
            raise InvalidCommand("hours must be a positive number", "hours")
        self._emit(
            Case.ExtensionRequested,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_text(reason, "reason"),
            hours=float(hours),
        )

    def approve_extension(
        self,
        *,
        new_due: datetime,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        reason: str | None = None,
        max_extensions: int = DEFAULT_MAX_EXTENSIONS,
    ) -> None:
        """批准延期. Up to `max_extensions` approvals by a shift leader or supervisor; past
        that only a supervisor with a written reason may approve (the higher approver)."""
        if not self._begin(Action.approve_extension, role=role, at=at, command_id=command_id):
            return
        _aware(new_due, "new_due")
        _opt_text(reason, "reason")
        if self.due is not None and new_due <= self.due:
            raise InvalidCommand("new_due must be later than the current deadline", "new_due")
        beyond = self.extension_count >= max_extensions
        if beyond and not (role == "supervisor" and reason and reason.strip()):
            raise InvalidCommand(
                f"extension limit ({max_extensions}) reached: only a supervisor with a "
                "reason may approve another",
                "reason" if role == "supervisor" else "role",
            )
        pending = self.pending_extension or {}
        self._emit(
            Case.ExtensionApproved,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=reason,
            new_due=new_due,
            previous_due=self.due,
            hours=float(pending.get("hours", 0.0)),
            extension_number=self.extension_count + 1,
            beyond_limit=beyond,
        )

    def refuse_extension(
        self,
        *,
        reason: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
    ) -> None:
        """駁回延期: reason required; the deadline stays."""
        if not self._begin(Action.refuse_extension, role=role, at=at, command_id=command_id):
            return
        pending = self.pending_extension or {}
        self._emit(
            Case.ExtensionRefused,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_text(reason, "reason"),
            hours=float(pending.get("hours", 0.0)),
        )

    def suspend(
        self,
        *,
        reason: str,
        review_at: datetime,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
    ) -> None:
        """掛賬: park the case with a reason until `review_at` (the review deadline); the
        handling deadline is kept in `paused_due` so the service can move it on resume."""
        if not self._begin(Action.suspend, role=role, at=at, command_id=command_id):
            return
        _aware(review_at, "review_at")
        if review_at <= at:
            raise InvalidCommand("review_at must be after the suspension", "review_at")
        self._emit(
            Case.Suspended,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_text(reason, "reason"),
            review_at=review_at,
            paused_due=self.due,
        )

    def resume(
        self,
        *,
        new_due: datetime,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        reason: str | None = None,
    ) -> None:
        """恢復處置: back to in_progress with the deadline moved by the paused time
        (computed by the service on its working-hours calendar)."""
        if not self._begin(Action.resume, role=role, at=at, command_id=command_id):
            return
        self._emit(
            Case.Resumed,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_opt_text(reason, "reason"),
            new_due=_aware(new_due, "new_due"),
            suspended_since=self.suspended_at,
        )

    def report_result(
        self,
        *,
        note: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        photos: list[dict[str, Any]] | None = None,
        verify_due: datetime | None = None,
    ) -> None:
        """處置反饋: the result (note + photos) goes to verification (待核查)."""
        if not self._begin(Action.report_result, role=role, at=at, command_id=command_id):
            return
        self._emit(
            Case.ResultReported,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=None,
            note=_text(note, "note"),
            photos=_photos(photos),
            verify_due=_opt_aware(verify_due, "verify_due"),
        )

    def verify_pass(
        self,
        *,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        note: str | None = None,
        photos: list[dict[str, Any]] | None = None,
        close_due: datetime | None = None,
    ) -> None:
        """核查通過: on-site check confirmed the fix; the case may be closed."""
        if not self._begin(Action.verify_pass, role=role, at=at, command_id=command_id):
            return
        self._emit(
            Case.VerificationPassed,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=None,
            note=_opt_text(note, "note"),
            photos=_photos(photos),
            close_due=_opt_aware(close_due, "close_due"),
        )

    def verify_fail(
        self,
        *,
        note: str,
        new_due: datetime,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        photos: list[dict[str, Any]] | None = None,
    ) -> None:
        """核查不通過 → 返工: back to the same department (status dispatched), the handling
        clock restarts at `new_due`, `rework_count` + 1. Not a wrong dispatch."""
        if not self._begin(Action.verify_fail, role=role, at=at, command_id=command_id):
            return
        self._emit(
            Case.VerificationFailed,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_text(note, "note"),
            note=note,
            photos=_photos(photos),
            new_due=_aware(new_due, "new_due"),
            department=self.department,
            rework_number=self.rework_count + 1,
        )

    def escalate(
        self,
        *,
        to_level: str | None,
        reason: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        to_node: str | None = None,
        automatic: bool = False,
        proposal: dict[str, Any] | None = None,
        dispatch_due: datetime | None = None,
    ) -> None:
        """上提一級: hand the case to the next level's command centre (status filed, department
        cleared). The service resolves `to_level` from the jurisdiction tree; None means the
        case is already at the top and cannot go higher. `proposal` is the routing proposal at
        the new level (later dispatch overrides are judged against it)."""
        if not self._begin(Action.escalate, role=role, at=at, command_id=command_id):
            return
        _text(reason, "reason")
        if to_level is None:
            raise InvalidCommand(
                f"case is already at the top level ({self.level}); cannot escalate", "to_level"
            )
        _text(to_level, "to_level")
        if to_level == self.level:
            raise InvalidCommand("to_level must differ from the current level", "to_level")
        _opt_text(to_node, "to_node")
        if proposal is not None and not isinstance(proposal, dict):
            raise InvalidCommand("proposal must be an object", "proposal")
        if not isinstance(automatic, bool):
            raise InvalidCommand("automatic must be a boolean", "automatic")
        self._emit(
            Case.Escalated,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=reason,
            from_level=self.level,
            from_node=self.node,
            to_level=to_level,
            to_node=to_node,
            automatic=automatic,
            proposal=proposal or {},
            dispatch_due=_opt_aware(dispatch_due, "dispatch_due"),
            previous_department=self.department or self.returned_from,
        )

    def supervise(
        self,
        *,
        reason: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
    ) -> None:
        """督辦: a supervision order on a slow case (counted, case highlighted)."""
        if not self._begin(Action.supervise, role=role, at=at, command_id=command_id):
            return
        self._emit(
            Case.Supervised,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=_text(reason, "reason"),
        )

    def close(
        self,
        *,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        note: str | None = None,
    ) -> None:
        """結案 after a passed verification."""
        if not self._begin(Action.close, role=role, at=at, command_id=command_id):
            return
        self._emit(
            Case.Closed,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=None,
            note=_opt_text(note, "note"),
        )

    def return_visit(
        self,
        *,
        satisfaction: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        comment: str | None = None,
    ) -> None:
        """回訪: record the reporter's satisfaction once, after closing."""
        if not self._begin(Action.return_visit, role=role, at=at, command_id=command_id):
            return
        if satisfaction not in SATISFACTION:
            raise InvalidCommand(
                f"satisfaction must be one of {list(SATISFACTION)}", "satisfaction"
            )
        self._emit(
            Case.ReturnVisited,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=None,
            satisfaction=satisfaction,
            comment=_opt_text(comment, "comment"),
        )

    def mark_warning(
        self,
        *,
        step: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        due: datetime | None = None,
    ) -> None:
        """黃燈 from the SLA watcher. Ignored (no event) when already marked for the current
        deadline, or stale: the case has moved to another step or deadline since the watcher
        looked (pass `due` = the deadline it saw to detect that)."""
        if not self._begin(Action.mark_warning, role=role, at=at, command_id=command_id):
            return
        current = self._current_deadline(step, due)
        if current is None or self.warning_for == _due_key(step, current):
            return
        self._emit(
            Case.WarningMarked,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=None,
            step=step,
            due=current,
        )

    def mark_overdue(
        self,
        *,
        step: str,
        actor: str,
        role: str,
        channel: str,
        at: datetime,
        command_id: str,
        due: datetime | None = None,
    ) -> None:
        """紅燈 超期 from the SLA watcher; same once-per-deadline and staleness rules as
        `mark_warning`. Refused when `at` is before the deadline (not overdue yet)."""
        if not self._begin(Action.mark_overdue, role=role, at=at, command_id=command_id):
            return
        current = self._current_deadline(step, due)
        if current is None or self.overdue_for == _due_key(step, current):
            return
        if at < current:
            raise InvalidCommand(
                f"not overdue: deadline {iso_utc(current)} is after {iso_utc(at)}", "at"
            )
        self._emit(
            Case.OverdueMarked,
            actor=actor,
            role=role,
            channel=channel,
            at=at,
            command_id=command_id,
            reason=None,
            step=step,
            due=current,
        )

    def _current_deadline(self, step: str, due: datetime | None) -> datetime | None:
        """The running deadline if `step` (and `due`, when given) match it, else None."""
        _text(step, "step")
        _opt_aware(due, "due")
        if self.due is None or self.due_step != step:
            return None
        if due is not None and due != self.due:
            return None
        return self.due


def _payload(fields: dict[str, Any], **common: Any) -> dict[str, Any]:
    """Event payload = deep copy of the specific fields (so a caller mutating its dicts later
    cannot change a recorded event) + the common ones."""
    payload = {**_clone(fields), **common}
    for name in ("actor", "role", "channel"):
        _text(payload.get(name), name)
    return payload


def _chain(
    prev_hash: str, case_id: str, version: int, event_type: str, at: datetime, payload: Any
) -> str:
    """`event_hash`, refusing payloads canonical JSON cannot represent (bytes, sets, NaN,
    naive datetimes ...): what cannot be hashed cannot be stored faithfully either."""
    try:
        return event_hash(prev_hash, case_id, version, event_type, at, payload)
    except (TypeError, ValueError) as exc:
        raise InvalidCommand(f"value not storable: {exc}") from exc


#: ``Case.__init__`` takes no arguments (what ``Reported.mutate``'s shortcut relies on; if it
#: ever does, eventsourcing's own ``mutate`` runs instead).
_PLAIN_INIT = len(inspect.signature(Case.__init__).parameters) == 1
