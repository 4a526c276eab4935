"""What an action (操作) on a case is, and the questions everyone asks of the actions.

Each action is declared once, in ``aggregates/actions/``, as an :class:`ActionSpec` next to
the event class it records: who may do it, from which statuses and to which, the guard that
depends on the case's data, the argument schema, the values it computes, and the deadline
step it starts or stops. Everything else derives from those entries: the aggregate's command
execution (``aggregates.case``), the command wire format (``aggregates.commands``), what the
API offers (``summary.offers`` of every event), the watcher's and notifier's policies, and the
pages (through the API).

Arguments are recorded by name: every field of an action's argument schema is a field of its
event (``reason`` goes to the common field), so nothing a caller sends is accepted and then
dropped — ``tests/unit/test_registry.py`` checks it for every entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from types import UnionType
from typing import Any, Literal, Protocol, TypeVar, Union, cast, get_args, get_origin

from pydantic import BaseModel, ConfigDict

from aggregates import deadlines
from aggregates.errors import InvalidCommand
from aggregates.events import CaseEvent
from aggregates.state import CaseState
from core.catalogue import Category, UnknownCategory
from core.refdata import Reference
from core.vocabulary import PRIORITIES, ROLES, TERMINAL, Priority, Status, Step


class Strict(BaseModel):
    """Argument schemas refuse unknown fields: a typo must not silently drop data."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    def dump(self) -> dict[str, Any]:
        """``model_dump()``, without pydantic's serializer when the schema is flat (every
        field a scalar: then the dump is the validated values themselves, a new dict)."""
        if _flat(type(self)):
            return dict(self.__dict__)
        return self.model_dump()


#: Field types whose validated value is its own ``model_dump`` (immutable scalars).
_SCALARS = frozenset({str, int, float, bool, type(None), datetime})


@cache
def _flat(schema: type[BaseModel]) -> bool:
    """Whether every field of ``schema`` is a scalar (or a union / Literal of scalars) and
    nothing customises its serialisation: its dump is then a copy of ``__dict__``."""
    decorators = schema.__pydantic_decorators__
    if (
        decorators.model_serializers or decorators.field_serializers
        or schema.model_computed_fields or schema.model_config.get("extra") != "forbid"
    ):
        return False
    return all(_scalar(f.annotation) for f in schema.model_fields.values())


def _scalar(annotation: Any) -> bool:
    if annotation in _SCALARS:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return all(type(a) in _SCALARS for a in get_args(annotation))
    if origin is Union or origin is UnionType:
        return all(_scalar(a) for a in get_args(annotation))
    return False


class CaseHandle(Protocol):
    """Another case a command touches (the original of a duplicate)."""

    state: CaseState

    def execute(self, name: str, args: Strict, ctx: Context) -> bool: ...


@dataclass(frozen=True)
class Context:
    """What a command brings besides its arguments: who, when, the idempotency key, the
    reference data (pure: catalogue, jurisdiction, working-time calendar) and a way to load
    another case of the same partition (None where no other case may be touched)."""

    actor: str
    role: str
    channel: str
    at: datetime
    command_id: str
    ref: Reference
    load: Callable[[str], CaseHandle | None] | None = None

    def category(self, code: str) -> Category:
        try:
            return self.ref.catalogue.get(code)
        except (UnknownCategory, KeyError) as exc:
            raise InvalidCommand(f"unknown category {code}", "category") from exc


Decide = Callable[[CaseState, Any, Context], dict[str, Any] | None]
Guard = Callable[[CaseState, str, Reference], str | None]
DueRule = Callable[[CaseState, dict[str, Any], Context], datetime]


@dataclass(frozen=True)
class Deadline:
    """What an action does to the case's clock (时限).

    ``keep``: the running deadline goes on; ``stop``: no clock after it; ``start``: a new
    deadline for ``step`` (None: the running step), due by ``due`` if given, else by the
    category's limit for the case's priority on the working-time calendar."""

    effect: Literal["keep", "stop", "start"]
    step: Step | None = None
    due: DueRule | None = None

    def after(
        self, state: CaseState, fields: dict[str, Any], ctx: Context
    ) -> tuple[datetime | None, str | None]:
        """The deadline and step running after the action."""
        if self.effect == "keep":
            return state.due, state.due_step
        if self.effect == "stop":
            return None, None
        step = cast(Step, self.step or state.due_step or "handle")
        if self.due is not None:
            return self.due(state, fields, ctx), step
        category = ctx.category(fields.get("category") or state.category)
        priority = as_priority(fields.get("priority") or state.priority)
        return deadlines.due_at(category, priority, step, ctx.at, ctx.ref.calendar), step


KEEP = Deadline("keep")
STOP = Deadline("stop")


def start(step: Step | None, due: DueRule | None = None) -> Deadline:
    """A deadline that starts a step's clock (see :class:`Deadline`)."""
    return Deadline("start", step, due)


@dataclass(frozen=True)
class ActionSpec:
    """One action, declared once (see the module docstring)."""

    name: str  # stable snake_case, stored in commands and used in URLs
    label: str  # 中文 name shown to people
    event: type[CaseEvent]
    args: type[Strict]
    roles: frozenset[str]
    moves: Mapping[Status, Status]  # from status → status after
    deadline: Deadline
    guard: Guard | None = None  # why not now (None: fine), from the case's data
    decide: Decide | None = None  # checks data rules, computes fields; None result: no-op
    public: bool = True  # may a person ask for it through the API
    creates: bool = False  # the action that creates a case (no "from" status)

    def status_after(self, status: Status) -> Status:
        return self.moves[status]

    def why_not(self, state: CaseState, role: str, ref: Reference) -> str | None:
        """None when ``role`` may do it now; else the reason, for people."""
        if role not in self.roles:
            return f"role {role!r} may not {self.name}"
        if state.status not in self.moves:
            return f"not possible while the case is {state.status.value}"
        return self.guard(state, role, ref) if self.guard else None


#: Every action in closed-loop order (the order buttons and error bodies list them in).
REGISTRY: dict[str, ActionSpec] = {}


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def roles(self) -> frozenset[str]: ...


_Spec = TypeVar("_Spec", bound=_Named)


def enter(table: dict[str, _Spec], spec: _Spec, kind: str = "action") -> _Spec:
    """Put ``spec`` into an action table: names unique, roles from the vocabulary (the
    case's registry and the household's share this rule)."""
    if spec.name in table:
        raise ValueError(f"{kind} {spec.name!r} declared twice")
    unknown = spec.roles - set(ROLES)
    if unknown:
        raise ValueError(f"{kind} {spec.name!r}: unknown roles {sorted(unknown)}")
    table[spec.name] = spec
    return spec


def register(spec: ActionSpec) -> ActionSpec:
    """Add an entry (at import of its module in ``aggregates.actions``); names are unique."""
    return enter(REGISTRY, spec)


def anytime(to: Status | None = None) -> dict[Status, Status]:
    """Moves from every status that is not terminal: to ``to``, or staying where it is."""
    return {s: (to or s) for s in Status if s not in TERMINAL}


def offered(state: CaseState, role: str, ref: Reference) -> list[str]:
    """The actions ``role`` may take on the case now, guards included; a person is offered
    only the public ones. This is *the* answer the API serves, recorded in every event's
    summary."""
    return [
        spec.name
        for spec in _candidates(state.status, role)
        if spec.guard is None or spec.guard(state, role, ref) is None
    ]


@cache
def _candidates(status: Status, role: str) -> tuple[ActionSpec, ...]:
    """The entries ``role`` may take from ``status`` before any guard: the part of
    :meth:`ActionSpec.why_not` that depends on nothing else (computed once per pair — every
    event records the offers of every role)."""
    return tuple(
        spec for spec in REGISTRY.values()
        if (spec.public or role == "system") and not spec.creates
        and role in spec.roles and status in spec.moves
    )


#: Roles whose offers every event records (the ones that act on cases).
ACTING_ROLES: tuple[str, ...] = tuple(r for r in ROLES if r not in ("auditor", "admin"))


def offers(state: CaseState, ref: Reference) -> dict[str, list[str]]:
    """:func:`offered` for every acting role that is offered anything (the same answer,
    with the guard-free part of each role's list computed once per status: this runs for
    every recorded event)."""
    out: dict[str, list[str]] = {}
    for role, named, unguarded in _status_plan(state.status):
        if unguarded is not None:
            out[role] = list(unguarded)
            continue
        names = [name for name, guard in named if guard is None or guard(state, role, ref) is None]
        if names:
            out[role] = names
    return out


@cache
def _status_plan(
    status: Status,
) -> tuple[tuple[str, tuple[tuple[str, Guard | None], ...], tuple[str, ...] | None], ...]:
    """Per acting role with candidates in ``status``: the candidates' names and guards, and
    their names alone when none has a guard (then the answer does not depend on the case's
    data)."""
    plan = []
    for role in ACTING_ROLES:
        specs = _candidates(status, role)
        if specs:
            unguarded = None if any(s.guard for s in specs) else tuple(s.name for s in specs)
            plan.append((role, tuple((s.name, s.guard) for s in specs), unguarded))
    return tuple(plan)


def role_actions(role: str) -> list[str]:
    """Every action ``role`` may ever take, whatever the case's state."""
    return [s.name for s in REGISTRY.values() if role in s.roles]


def as_priority(value: str) -> Priority:
    """A recorded priority as the typed value the deadline policy expects."""
    for p in PRIORITIES:
        if p == value:
            return p
    raise InvalidCommand(f"unknown priority {value!r}", "priority")
