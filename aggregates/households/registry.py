"""What an action on a household is (the household's registry), declared once per action.

The same shape of declaration as the case's registry (``aggregates.registry``), kept apart
because a household has no statuses or per-step deadlines: an entry names who may take the
action, its argument schema (``Strict``: unknown fields refused), the checks and computed
values (``decide``), the event type it records and the state change (``evolve``). The visit
deadline after every event is computed by one rule for all of them
(``aggregates.households.schedule.next_due``). Every argument is recorded in the event by name
(``tests/unit/test_household.py`` checks it for every entry).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aggregates.households.state import HouseholdState
from aggregates.registry import Strict, enter
from core.calendar import WorkCalendar
from core.catalogue import Catalogue
from core.jurisdiction import Jurisdiction
from core.visits import VisitSchedules


@dataclass(frozen=True)
class HouseholdContext:
    """Who, when, the idempotency key, and the reference data (pure)."""

    actor: str
    role: str
    channel: str
    at: datetime
    command_id: str
    schedules: VisitSchedules
    calendar: WorkCalendar
    jurisdiction: Jurisdiction | None = None
    catalogue: Catalogue | None = None


Decide = Callable[[HouseholdState, Any, HouseholdContext], dict[str, Any]]
Evolve = Callable[[HouseholdState, dict[str, Any], datetime], None]


@dataclass(frozen=True)
class HouseholdAction:
    name: str  # stable snake_case (commands, URLs)
    label: str  # zh-Hans
    event: str  # the event type recorded
    args: type[Strict]
    roles: frozenset[str]
    evolve: Evolve
    decide: Decide | None = None
    creates: bool = False


HOUSEHOLD_ACTIONS: dict[str, HouseholdAction] = {}


def register(spec: HouseholdAction) -> HouseholdAction:
    return enter(HOUSEHOLD_ACTIONS, spec, "household action")


def household_actions(role: str) -> list[str]:
    """Every action ``role`` may take on households (the pages draw their forms from it)."""
    return [s.name for s in HOUSEHOLD_ACTIONS.values() if role in s.roles]
