"""Commands: the wire format between the gateways and the workers (NATS COMMANDS stream).

A command is an intention with its context (who, in which role, through which channel, when,
with which idempotency key). The gateway validates the *shape* here; the Case aggregate
validates the *rules*. Times come in the command, so a replay of the commands is deterministic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

Verb = Literal[
    "report",
    "file",
    "reject",
    "mark_duplicate",
    "dispatch",
    "accept",
    "return_case",
    "request_extension",
    "approve_extension",
    "refuse_extension",
    "suspend",
    "resume",
    "report_result",
    "verify_pass",
    "verify_fail",
    "escalate",
    "supervise",
    "close",
    "return_visit",
    "mark_warning",
    "mark_overdue",
]
Priority = Literal["urgent", "important", "ordinary"]
Satisfaction = Literal["satisfied", "basically_satisfied", "dissatisfied"]

_TEXT = 2000
_SHORT = 200


class Strict(BaseModel):
    """Unknown fields are refused: a typo must not silently drop data."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Photo(Strict):
    """A photo reference: the bytes live in the object store, events keep digest/size/type."""

    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    size: int = Field(gt=0, le=10_000_000)
    content_type: Literal["image/jpeg", "image/png", "image/webp"]
    name: str | None = Field(default=None, max_length=_SHORT)


class Reporter(Strict):
    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=30, pattern=r"^[0-9+\- ()]{3,30}$")
    id: str | None = Field(default=None, max_length=100)
    type: Literal["inspector", "citizen", "open311", "system"] = "citizen"


class ReportArgs(Strict):
    category: str = Field(min_length=1, max_length=40)
    grid: str = Field(min_length=1, max_length=40)
    community: str = Field(min_length=1, max_length=40)
    district: str = Field(min_length=1, max_length=40)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    address: str | None = Field(default=None, max_length=_SHORT)
    description: str = Field(min_length=1, max_length=_TEXT)
    reporter: Reporter
    source: Literal["inspector_app", "hotline", "open311", "api"] = "api"
    client_time: datetime | None = None
    photos: list[Photo] = Field(default_factory=list, max_length=9)


class FileArgs(Strict):
    note: str | None = Field(default=None, max_length=_TEXT)


class ReasonArgs(Strict):
    reason: str = Field(min_length=1, max_length=_TEXT)


class MarkDuplicateArgs(Strict):
    of_case_no: str = Field(min_length=1, max_length=40)
    of_case_id: str | None = Field(
        default=None, max_length=36, description="filled in by the gateway from the read model"
    )
    reason: str | None = Field(default=None, max_length=_TEXT)


class DispatchArgs(Strict):
    department: str | None = Field(default=None, max_length=80)
    priority: Priority | None = None
    override_reason: str | None = Field(default=None, max_length=_TEXT)


class ExtensionArgs(Strict):
    hours: float = Field(gt=0, le=24 * 30)
    reason: str = Field(min_length=1, max_length=_TEXT)


class ApproveArgs(Strict):
    reason: str | None = Field(default=None, max_length=_TEXT)


class SuspendArgs(Strict):
    reason: str = Field(min_length=1, max_length=_TEXT)
    review_at: datetime


class NoteArgs(Strict):
    note: str | None = Field(default=None, max_length=_TEXT)


class ResultArgs(Strict):
    note: str = Field(min_length=1, max_length=_TEXT)
    photos: list[Photo] = Field(default_factory=list, max_length=9)


class VerifyArgs(Strict):
    note: str | None = Field(default=None, max_length=_TEXT)
    photos: list[Photo] = Field(default_factory=list, max_length=9)


class VerifyFailArgs(Strict):
    note: str = Field(min_length=1, max_length=_TEXT, description="what is still wrong")
    photos: list[Photo] = Field(default_factory=list, max_length=9)


class EscalateArgs(Strict):
    reason: str = Field(min_length=1, max_length=_TEXT)
    automatic: bool = False


class ReturnVisitArgs(Strict):
    satisfaction: Satisfaction
    comment: str | None = Field(default=None, max_length=_TEXT)


class StepArgs(Strict):
    step: Literal["file", "dispatch", "handle", "verify", "review"]
    due: datetime


ARGS: dict[str, type[Strict]] = {
    "report": ReportArgs,
    "file": FileArgs,
    "reject": ReasonArgs,
    "mark_duplicate": MarkDuplicateArgs,
    "dispatch": DispatchArgs,
    "accept": NoteArgs,
    "return_case": ReasonArgs,
    "request_extension": ExtensionArgs,
    "approve_extension": ApproveArgs,
    "refuse_extension": ReasonArgs,
    "suspend": SuspendArgs,
    "resume": NoteArgs,
    "report_result": ResultArgs,
    "verify_pass": VerifyArgs,
    "verify_fail": VerifyFailArgs,
    "escalate": EscalateArgs,
    "supervise": ReasonArgs,
    "close": NoteArgs,
    "return_visit": ReturnVisitArgs,
    "mark_warning": StepArgs,
    "mark_overdue": StepArgs,
}


class Command(Strict):
    """The envelope published to ``<p>.cmd.<partition>.<verb>``."""

    command_id: str = Field(min_length=1, max_length=200)
    verb: Verb
    case_id: str = Field(min_length=32, max_length=36)
    case_no: str = Field(min_length=1, max_length=40)
    partition: str = Field(pattern=r"^[A-Za-z0-9]{1,20}$")
    actor: str = Field(min_length=1, max_length=100)
    role: str = Field(min_length=1, max_length=40)
    channel: str = Field(min_length=1, max_length=40)
    at: datetime
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a timezone")
        return value

    _parsed: Strict | None = PrivateAttr(default=None)

    def parsed_args(self) -> Strict:
        """The verb's argument model (raises pydantic.ValidationError on bad args); parsed
        once per command, however many layers ask."""
        if self._parsed is None:
            self._parsed = ARGS[self.verb].model_validate(self.args)
        return self._parsed


class Outcome(BaseModel):
    """What a worker answers on ``<p>.res.<command_id>`` (and what the HTTP API returns)."""

    command_id: str
    ok: bool
    case_no: str
    verb: str
    status: str | None = None
    version: int | None = None
    duplicate: bool = False
    error: dict[str, Any] | None = None
