"""Triage (分拨建议): propose department, command level and priority for a new case.

Why a proposal and not a decision: the dispatcher (派遣员) owns dispatch and may override any
part of it; the proposal is recorded in the case's events together with its ``reasons`` so an
auditor can see what the system suggested and why, and the dispatch-accuracy metric can tell a
wrong proposal from a wrong override.

Rules, all pure (no I/O, no clock):

* Priority starts at the category's default (or the case's current priority when re-routing
  after an escalation) and is *raised* by the category's triage keywords found in the
  description — zh by substring, en as whole words, case-insensitive. It is never lowered:
  a keyword list describes aggravating circumstances only.
* Level starts at the category's default command level; the department is the one with the
  category's function tag at that level's command node for the grid. If that node has no such
  department, triage walks up one command level at a time (上提一级) until one is found.
* If no level has one, the proposal names no department (``department == ""``) and says so in
  ``reasons``: the case is still recorded and the dispatcher chooses by hand.
"""

from __future__ import annotations

import functools
import re
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from core.catalogue import PRIORITIES, PRIORITY_RANK, Category, Priority

#: ``Proposal.department`` when no department with the category's function exists up the tree.
NO_DEPARTMENT = ""


class _HasCode(Protocol):
    @property
    def code(self) -> str: ...


class RoutingTree(Protocol):
    """What triage needs from :class:`core.jurisdiction.Jurisdiction` (structural, so tests
    and tools can pass a small fake and this module stays free of geometry imports)."""

    def command_node(self, code: str, level_key: str) -> _HasCode: ...

    def find_department(self, function: str, node_code: str) -> _HasCode | None: ...

    def level_above(self, level_key: str) -> str | None: ...


class Proposal(BaseModel):
    """The routing suggestion stored with the case (``reasons`` are shown to the dispatcher)."""

    model_config = ConfigDict(frozen=True)

    department: str  # department code, or "" when none was found at any level
    level: str  # command level key whose centre owns dispatch
    node: str  # code of that command node
    priority: Priority
    reasons: list[str]


_LATIN = re.compile(r"[a-z0-9]")


def _keyword_in(keyword: str, text: str) -> bool:
    """Whether ``keyword`` occurs in ``text`` (both already case-folded).

    Latin keywords match whole words only, so "ill" does not fire on "illegal" nor "fire" on
    "firewood"; Chinese has no word breaks, so zh keywords match as substrings.
    """
    if not _LATIN.search(keyword):
        return keyword in text
    return _word_pattern(keyword).search(text) is not None


@functools.lru_cache(maxsize=4096)
def _word_pattern(keyword: str) -> re.Pattern[str]:
    """The whole-word pattern of a Latin keyword, compiled once (triage runs per report)."""
    return re.compile(r"(?<![a-z0-9])" + re.escape(keyword) + r"(?![a-z0-9])")


def _priority(category: Category, description: str, base: Priority, reasons: list[str]) -> Priority:
    text = description.casefold()
    result = base
    for priority in PRIORITIES:  # most pressing first: the first hit is the highest level
        if PRIORITY_RANK[priority] >= PRIORITY_RANK[result]:
            break
        hits = [k for k in category.keywords.get(priority, []) if _keyword_in(k.casefold(), text)]
        if hits:
            quoted = ", ".join(repr(k) for k in hits)
            reasons.append(f"priority raised from {result} to {priority}: keyword {quoted}")
            result = priority
            break
    return result


def _route(
    category: Category,
    grid_code: str,
    level: str,
    jurisdiction: RoutingTree,
    priority: Priority,
    reasons: list[str],
) -> Proposal:
    function = category.department_function
    start_node = jurisdiction.command_node(grid_code, level).code
    current: str | None = level
    while current is not None:
        node = jurisdiction.command_node(grid_code, current).code
        department = jurisdiction.find_department(function, node)
        if department is not None:
            reasons.append(
                f"department {department.code}: function {function} at {current} node {node}"
            )
            return Proposal(
                department=department.code,
                level=current,
                node=node,
                priority=priority,
                reasons=reasons,
            )
        above = jurisdiction.level_above(current)
        if above is not None:
            reasons.append(
                f"no {function} department at {current} node {node}; walked up to {above}"
            )
        current = above
    reasons.append(
        f"no {function} department at {level} or any level above; dispatcher must choose"
    )
    return Proposal(
        department=NO_DEPARTMENT, level=level, node=start_node, priority=priority, reasons=reasons
    )


def route_for_level(
    category: Category,
    grid_code: str,
    level: str,
    jurisdiction: RoutingTree,
    *,
    description: str = "",
    priority: Priority | None = None,
) -> Proposal:
    """Proposal starting at command level ``level`` (used after an escalation 上提一级).

    ``priority`` is the case's current priority and replaces the category default as the
    starting point, so re-routing keeps a priority the dispatcher set; ``description``
    keywords may still raise it.
    """
    reasons: list[str] = []
    if priority is None:
        base = category.default_priority
        reasons.append(f"priority {base}: default of category {category.code} {category.name_zh}")
    else:
        base = priority
        reasons.append(f"priority {base}: kept from the case")
    result = _priority(category, description, base, reasons)
    if level == category.level:
        reasons.append(f"level {level}: default of category {category.code}")
    else:
        reasons.append(f"level {level}: requested (category default {category.level})")
    return _route(category, grid_code, level, jurisdiction, result, reasons)


def propose(
    category: Category, grid_code: str, description: str, jurisdiction: RoutingTree
) -> Proposal:
    """Proposal for a newly reported case in ``grid_code``."""
    return route_for_level(
        category, grid_code, category.level, jurisdiction, description=description
    )


__all__ = ["NO_DEPARTMENT", "Proposal", "RoutingTree", "propose", "route_for_level"]
