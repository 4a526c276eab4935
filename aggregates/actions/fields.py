"""Argument pieces shared by several actions: photo references, the reporter, text sizes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from aggregates.registry import Strict
from core.vocabulary import ReporterType

TEXT = 2000  # a reason, a note, a description
SHORT = 200  # an address, a file name


class Photo(Strict):
    """A photo reference: the bytes live in the object store, events keep digest/size/type."""

    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    size: int = Field(gt=0, le=10_000_000)
    content_type: Literal["image/jpeg", "image/png", "image/webp"]
    name: str | None = Field(default=None, max_length=SHORT)


Photos = list[Photo]


class Reporter(Strict):
    """Who reported (上报人); name and phone are masked for roles that may not see them."""

    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=30, pattern=r"^[0-9+\- ()]{3,30}$")
    id: str | None = Field(default=None, max_length=100)
    type: ReporterType = "citizen"
    #: The household (户) whose need this report is, when it came from a care visit (issue 18;
    #: docs/households.md). Left out of the recorded reporter when not given, so every other
    #: report records exactly what it did before.
    household: str | None = Field(default=None, max_length=40, pattern=r"^[0-9a-f-]{36}$")

    @model_serializer(mode="wrap")
    def _without_empty_household(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("household") is None:
            data.pop("household", None)
        return data


class NoteArgs(Strict):
    """An optional note (备注), recorded with the event."""

    note: str | None = Field(default=None, max_length=TEXT)


class ReasonArgs(Strict):
    """A required reason (原因), recorded as the event's ``reason``."""

    reason: str = Field(min_length=1, max_length=TEXT)
