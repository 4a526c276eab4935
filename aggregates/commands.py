"""Commands: the wire format between the gateways and the workers (NATS COMMANDS stream).

A command is an intention with its context (who, in which role, through which channel, when,
with which idempotency key). Its ``verb`` names an action of the registry and its ``args``
are checked against that action's schema (``aggregates.actions``); the aggregate then checks
the rules. Times come in the command, so a replay of the commands is deterministic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, field_validator

from aggregates.actions import REGISTRY, Photo, ReportArgs, Reporter
from aggregates.registry import Strict

#: Argument schema of every action, by name (derived from the registry).
ARGS: dict[str, type[Strict]] = {name: spec.args for name, spec in REGISTRY.items()}


class Command(Strict):
    """The envelope published to ``<p>.cmd.<partition>.<verb>``."""

    command_id: str = Field(min_length=1, max_length=200)
    verb: str = Field(min_length=1, max_length=40)
    case_id: str = Field(min_length=32, max_length=36)
    case_no: str = Field(min_length=1, max_length=40)
    partition: str = Field(pattern=r"^[A-Za-z0-9]{1,20}$")
    actor: str = Field(min_length=1, max_length=100)
    role: str = Field(min_length=1, max_length=40)
    channel: str = Field(min_length=1, max_length=40)
    at: datetime
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("verb")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in REGISTRY:
            raise ValueError(f"unknown action {value!r}")
        return value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a timezone")
        return value

    _parsed: Strict | None = PrivateAttr(default=None)

    def parsed_args(self) -> Strict:
        """The action's argument model (raises pydantic.ValidationError on bad args); parsed
        once per command, however many layers ask."""
        # Read through the private-attribute dict: ``self._parsed`` goes through pydantic's
        # ``__getattr__`` (a few µs, twice per command on the worker's path).
        private = self.__pydantic_private__
        assert private is not None  # the model declares a private attribute
        parsed: Strict | None = private["_parsed"]
        if parsed is None:
            parsed = private["_parsed"] = ARGS[self.verb].model_validate(self.args)
        return parsed


class Outcome(BaseModel):
    """What a worker answers on ``<p>.res.<command_id>`` (and what the HTTP API returns):
    for a success, also what the caller is offered next."""

    command_id: str
    ok: bool
    case_no: str
    verb: str
    status: str | None = None
    version: int | None = None
    duplicate: bool = False
    allowed_actions: list[str] | None = None
    error: dict[str, Any] | None = None


__all__ = ["ARGS", "Command", "Outcome", "Photo", "ReportArgs", "Reporter", "Strict"]
