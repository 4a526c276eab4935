"""Visit schedules of the six must-visit flags (六必访走访频次): city configuration, not code.

Each city says how often a household with each flag is visited, in
``deploy/cities/<city>/visits.json`` (``deploy/visits.default.json`` when a city has none)::

    {"version": 1,
     "schedules": {"elderly_alone": {"every": 5, "unit": "working_days", "label_zh": "每周"},
                   "hardship":      {"every": 22, "unit": "working_days", "label_zh": "每月"}, ...}}

``unit`` is ``working_days`` (the working clock of :class:`~core.calendar.WorkCalendar`: a
working day is the calendar's working hours of one full day, so holidays and 调休 count as
they do for case deadlines) or ``days`` (the natural clock). Every flag of
:data:`core.vocabulary.CARE_FLAGS` must have a schedule. A household with several flags is
visited at the shortest interval among them (``aggregates.households.schedule``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.calendar import WorkCalendar
from core.catalogue import Clock
from core.vocabulary import CARE_FLAGS

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "deploy" / "visits.default.json"


class Schedule(BaseModel):
    """How often a flag's households are visited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: int = Field(gt=0, le=366)
    unit: Literal["working_days", "days"]
    label_zh: str = Field(min_length=1, max_length=40)

    @property
    def clock(self) -> Clock:
        return "working" if self.unit == "working_days" else "natural"

    def hours(self, calendar: WorkCalendar) -> float:
        """The interval in hours of its clock."""
        if self.unit == "days":
            return self.every * 24.0
        per_day = sum(
            (datetime.combine(datetime.min, e) - datetime.combine(datetime.min, s))
            / timedelta(hours=1)
            for s, e in calendar.periods
        )
        return self.every * per_day


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    note: str | None = None
    schedules: dict[str, Schedule]


@dataclass(frozen=True)
class VisitSchedules:
    """Every flag's schedule (validated: all flags, no unknown ones)."""

    schedules: dict[str, Schedule]
    source: str = "<memory>"

    def __post_init__(self) -> None:
        unknown = set(self.schedules) - set(CARE_FLAGS)
        missing = set(CARE_FLAGS) - set(self.schedules)
        if unknown or missing:
            raise ValueError(
                f"visit schedules {self.source}: unknown flags {sorted(unknown)}, "
                f"missing flags {sorted(missing)}"
            )

    def of(self, flag: str) -> Schedule:
        return self.schedules[flag]

    @classmethod
    def parse(cls, text: str, source: str = "<text>") -> VisitSchedules:
        data = _File.model_validate_json(text)
        return cls(dict(data.schedules), source)

    @classmethod
    def load(cls, city_dir: Path | None = None) -> VisitSchedules:
        """The city's ``visits.json``, else the default file."""
        path = DEFAULT_FILE
        if city_dir is not None and (Path(city_dir) / "visits.json").is_file():
            path = Path(city_dir) / "visits.json"
        return cls.parse(path.read_text(encoding="utf-8"), str(path))

    def to_json(self) -> dict[str, dict[str, object]]:
        return {k: v.model_dump() for k, v in self.schedules.items()}


__all__ = ["DEFAULT_FILE", "Schedule", "VisitSchedules"]
