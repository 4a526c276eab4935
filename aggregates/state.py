"""The state of one case (案件) as data: one dataclass, changed only by recorded events.

Why a dataclass: the aggregate, the auditors' state-at-a-moment view and the event's
``summary`` (what read models copy) are all this one list of fields. A field added here
appears in each of them without another list to keep in step.

Fields marked ``summary`` are the ones read models show in lists (the queue, the map, the
watcher's deadlines); each event records their values *after* itself, so no read model has
to know how an event changes a case.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import field
from datetime import datetime
from typing import Any
from uuid import UUID

from aggregates.integrity import GENESIS, iso_utc
from core.vocabulary import INITIAL_STATUS, STATUS_LABELS, Status

#: Marks a field that read models show: recorded after every event in its ``summary``.
SUMMARY = {"summary": True}


@dataclasses.dataclass
class CaseState:
    """Everything the closed loop knows about a case. Defaults are the empty shell that the
    ``Reported`` event fills; after that only events change it."""

    case_no: str = ""
    status: Status = INITIAL_STATUS
    # --- what was reported (上报) ------------------------------------------------------
    category: str = ""
    kind: str = ""
    grid: str = ""
    community: str = ""
    district: str = ""
    source: str = ""
    reporter: dict[str, Any] = field(default_factory=dict)
    reporters: list[dict[str, Any]] = field(default_factory=list)  # + merged dups
    client_time: datetime | None = None
    description: str = ""
    lat: float | None = None
    lon: float | None = None
    located_grid: str | None = None  # the GPS fix's grid when the report was filed in another
    address: str | None = None
    place_id: str | None = None  # the standard address (标准地址库) the address was picked from
    component: str | None = None  # the 部件 (16-digit component code) the report concerns
    photos: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)  # the category's extra questions
    media_url: str | None = None  # a photo / video the reporter links to (Open311)
    # --- routing (派遣) ----------------------------------------------------------------
    level: str = field(default="", metadata=SUMMARY)
    node: str | None = field(default=None, metadata=SUMMARY)
    department: str | None = field(default=None, metadata=SUMMARY)
    priority: str = field(default="", metadata=SUMMARY)
    proposal: dict[str, Any] = field(default_factory=dict)  # triage 派遣建议
    overridden: bool = False  # the last dispatch overrode the triage proposal (改派)
    returned_from: str | None = None  # department that returned it (退单), until re-dispatch
    last_dispatcher: str | None = None
    # --- the running deadline (时限): which step, when due, since when -------------------
    due: datetime | None = None
    due_step: str | None = None
    due_since: datetime | None = field(default=None, metadata=SUMMARY)
    # When that deadline's light turns yellow (80 %), recorded by the event (``due_warn``):
    # None without a clock, for a review date, or for events recorded before it existed.
    due_warn: datetime | None = None
    warning_for: str | None = None  # "<step>@<due>" of the last yellow light (黄灯)
    overdue_for: str | None = None  # "<step>@<due>" of the last red light (红灯)
    # --- counters for the evaluation (综合评价) ------------------------------------------
    dispatch_count: int = field(default=0, metadata=SUMMARY)
    wrong_dispatches: int = field(default=0, metadata=SUMMARY)  # 错误派遣
    return_count: int = field(default=0, metadata=SUMMARY)  # 退单
    rework_count: int = field(default=0, metadata=SUMMARY)  # 返工
    extension_count: int = field(default=0, metadata=SUMMARY)  # 延期
    suspension_count: int = field(default=0, metadata=SUMMARY)  # 挂账
    escalations: int = field(default=0, metadata=SUMMARY)  # 上提
    supervision_orders: int = field(default=0, metadata=SUMMARY)  # 督办
    supervised: bool = field(default=False, metadata=SUMMARY)
    overdue_count: int = field(default=0, metadata=SUMMARY)
    # --- open matters ------------------------------------------------------------------
    pending_extension: dict[str, Any] | None = field(default=None, metadata=SUMMARY)
    suspended_at: datetime | None = None
    paused_due: datetime | None = None  # handling deadline frozen by a suspension
    result: dict[str, Any] | None = None  # 处置反馈
    verification: dict[str, Any] | None = None  # 核查
    # --- endings -----------------------------------------------------------------------
    rejection_reason: str | None = None
    duplicate_of: str | None = field(default=None, metadata=SUMMARY)
    duplicate_of_id: str | None = None
    close_note: str | None = None
    # 回访满意度 of the latest return visit
    satisfaction: str | None = field(default=None, metadata=SUMMARY)
    return_visit_comment: str | None = None
    # 不予重办: the shift leader's decision not to reopen after a dissatisfied visit
    reopen_declined: dict[str, Any] | None = None
    # --- when --------------------------------------------------------------------------
    reported_at: datetime | None = None
    filed_at: datetime | None = None
    first_dispatched_at: datetime | None = None
    dispatched_at: datetime | None = None
    accepted_at: datetime | None = None
    result_at: datetime | None = None
    closed_at: datetime | None = field(default=None, metadata=SUMMARY)
    finished_at: datetime | None = None  # closed, rejected or merged
    return_visited_at: datetime | None = None
    # --- integrity and idempotency -------------------------------------------------------
    last_hash: str = GENESIS
    applied_commands: list[str] = field(default_factory=list)

    # --- derived views --------------------------------------------------------------------

    @property
    def warned(self) -> bool:
        """Yellow light (黄灯) raised for the running deadline."""
        return (
            self.warning_for is not None
            and self.due is not None
            and self.warning_for == due_key(self.due_step, self.due)
        )

    @property
    def overdue(self) -> bool:
        """Red light (红灯) raised for the running deadline."""
        return (
            self.overdue_for is not None
            and self.due is not None
            and self.overdue_for == due_key(self.due_step, self.due)
        )

    def copy(self) -> CaseState:
        """Shallow copy. Events replace containers instead of changing them in place, so a
        copy taken before an event never sees that event. (``dataclasses.replace`` runs
        ``__init__`` with every field by name: the largest cost of recording an event.)"""
        new = object.__new__(CaseState)
        new.__dict__.update(self.__dict__)
        return new

    def summary(self) -> dict[str, Any]:
        """The ``summary`` fields plus the traffic lights, as JSON-ready values."""
        out = {
            name: value if type(value) in _PLAIN else json_view(value)
            for name, value in zip(SUMMARY_FIELDS, _summary_values(self), strict=True)
        }
        out["warned"] = self.warned
        out["overdue"] = self.overdue
        return out

    def summary_since(
        self, before: CaseState, previous: dict[str, Any], changed: set[str] | None = None
    ) -> dict[str, Any]:
        """:meth:`summary`, given ``previous`` = ``before.summary()`` of the state this one was
        copied from: only fields whose value object changed are converted again. ``changed``,
        when given, receives the names whose JSON value differs from ``previous``.

        Why: an event changes two or three of the twenty fields, and converting them all was
        a tenth of the cost of recording an event (and comparing them all to find what the
        event records, another twentieth). Sound because events replace values instead of
        changing them in place (see :meth:`copy`); the registry's property test compares
        folded summaries with full ones."""
        out = dict(previous)
        now, then = self.__dict__, before.__dict__
        for name in SUMMARY_FIELDS:
            value = now[name]
            if value is not then[name]:
                view = value if type(value) in _PLAIN else json_view(value)
                out[name] = view
                if changed is not None and view != previous.get(name):
                    changed.add(name)
        out["warned"] = self.warned
        out["overdue"] = self.overdue
        return out

    def to_json(self) -> dict[str, Any]:
        """Every field as JSON-ready values (datetimes as ISO-8601 UTC text), plus the
        status label and the lights; what auditors and the API call the case's state."""
        out = {f.name: json_view(getattr(self, f.name)) for f in FIELDS if f.name != _PRIVATE}
        out["status"] = self.status.value
        out["status_zh"] = STATUS_LABELS[self.status]
        out["warned"] = self.warned
        out["overdue"] = self.overdue
        return out


FIELDS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(CaseState)
#: Idempotency bookkeeping: part of the state, not of what a person reads.
_PRIVATE = "applied_commands"
SUMMARY_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.metadata.get("summary"))
_summary_values = operator.attrgetter(*SUMMARY_FIELDS)
#: Values that are their own JSON view.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def due_key(step: str | None, due: datetime) -> str:
    """Identity of one deadline, so a warning or overdue mark happens once per deadline."""
    return f"{step or ''}@{iso_utc(due)}"


def json_view(value: Any) -> Any:
    """Copy of `value` with datetimes as canonical ISO text and UUIDs as strings.

    Public because it *is* the JSON form of case state: :meth:`CaseState.to_json` uses it,
    and the audit history's fast view defers to it for anything that is not plain JSON, so
    both render a datetime or UUID the same way and their snapshots compare byte for byte."""
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Status):
        return value.value
    if isinstance(value, dict):
        return {k: json_view(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_view(v) for v in value]
    return value

