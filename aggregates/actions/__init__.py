"""The action registry (操作登记): every action on a case, declared once.

Importing this package registers every entry, in closed-loop order (the order in which
``offered`` lists them, so UI buttons come out in loop order): intake and filing, dispatch and
handling, verification and closing, oversight. ``aggregates.registry`` explains an entry.
"""

from __future__ import annotations

from aggregates.actions import closing, handling, intake, oversight
from aggregates.actions.fields import Photo, Reporter
from aggregates.actions.intake import ReportArgs
from aggregates.registry import REGISTRY, ActionSpec, offered, offers, role_actions

#: Closed-loop order of the phases; entries keep their declaration order within a phase.
_PHASES = (intake, handling, closing, oversight)
_RANK = {phase.__name__: i for i, phase in enumerate(_PHASES)}
_ordered = sorted(REGISTRY.values(), key=lambda spec: _RANK[spec.event.__module__])
REGISTRY.clear()
REGISTRY.update((spec.name, spec) for spec in _ordered)

#: Event type name → event class (for reading stored events and documenting them).
EVENT_TYPES = {spec.event.__name__: spec.event for spec in REGISTRY.values()}
#: Actions a person may ask for through the API, in closed-loop order.
PUBLIC_ACTIONS: tuple[str, ...] = tuple(
    name for name, spec in REGISTRY.items() if spec.public and not spec.creates
)

__all__ = [
    "EVENT_TYPES",
    "PUBLIC_ACTIONS",
    "REGISTRY",
    "ActionSpec",
    "Photo",
    "ReportArgs",
    "Reporter",
    "closing",
    "handling",
    "intake",
    "offered",
    "offers",
    "oversight",
    "role_actions",
]
