"""Who sees what of a household (need to know, 需知范围), in one place.

==================================  ======================================================
caller                              households and details
==================================  ======================================================
inspector of the household's grid   everything (they visit it)
supervisor whose node is the        everything (community leaders run the 六必访 with
household's community (or grid)     the grid team, and edit the register)
auditor                             everything, read-only; every read is logged anyway
other supervisors, call-takers,     households in their node (``access.case_filter``):
shift leaders, dispatchers          address, non-sensitive flags, due and light, visit
                                    dates, case numbers — members' names masked, phones,
                                    birth years, notes, sensitive flags (刑释解教/社区矫正,
                                    重大疾病) and their reasons, visit findings, photos and
                                    need descriptions withheld
handler, admin                      nothing (403)
==================================  ======================================================

Every read of one or more households' details (detail, history, export) is written to
``household_reads`` with whether sensitive facts were shown; auditors read that log
(``GET /v1/households/reads``). Maps and metrics give counts, never addresses, and show the
sensitive flags' counts only to callers with a need to know in that area.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.jurisdiction import Jurisdiction
from core.vocabulary import SENSITIVE_CARE_FLAGS
from gateways.http.access import case_filter, within_node
from gateways.http.identity import Principal
from gateways.http.privacy import mask_name

READERS: tuple[str, ...] = (
    "inspector", "call_taker", "shift_leader", "dispatcher", "supervisor", "auditor",
)
EDITORS: tuple[str, ...] = ("inspector", "supervisor")
CENTRE: tuple[str, ...] = ("inspector", "call_taker", "shift_leader", "dispatcher",
                           "supervisor", "auditor")


def can_see(principal: Principal, row: Mapping[str, Any], j: Jurisdiction) -> bool:
    role = principal.role
    if role in ("auditor", "system"):
        return True
    if role == "inspector":
        return row.get("grid") in principal.grids
    if role in ("call_taker", "shift_leader", "dispatcher", "supervisor"):
        return within_node(principal.node, {"grid": row.get("grid")}, j)
    return False


def need_to_know(principal: Principal, row: Mapping[str, Any]) -> bool:
    """May the caller see the sensitive flags and the members' details of this household?"""
    role = principal.role
    if role in ("auditor", "system"):
        return True
    if role == "inspector":
        return row.get("grid") in principal.grids
    if role == "supervisor":
        return principal.node is not None and principal.node in (
            row.get("community"), row.get("grid"))
    return False


def may_edit(principal: Principal, grid: str, community: str) -> bool:
    """The grid team and community leaders edit the register and record visits."""
    if principal.role == "inspector":
        return grid in principal.grids
    if principal.role == "supervisor":
        return principal.node is not None and principal.node in (community, grid)
    return principal.role == "system"


def sql_filter(principal: Principal, j: Jurisdiction, params: list[Any]) -> str:
    """An SQL condition limiting household rows to the caller's area."""
    return case_filter(principal, j, params)


def sees_sensitive_counts(principal: Principal, j: Jurisdiction) -> bool:
    """Whether per-flag counts may include the sensitive flags for every unit the caller
    sees: auditors, inspectors (own grids), community-level supervisors."""
    if principal.role in ("auditor", "system", "inspector"):
        return True
    node = principal.node
    if principal.role == "supervisor" and node is not None and node in j.nodes:
        return j.nodes[node].level == j.levels[-2].key
    return False


def present(principal: Principal, row: Mapping[str, Any]) -> dict[str, Any]:
    """A register row as the caller may see it (``details``: ``full`` or ``limited``)."""
    out = dict(row)
    if need_to_know(principal, row):
        out["details"] = "full"
        return out
    out["details"] = "limited"
    out["members"] = [
        {"name": mask_name(m.get("name")), "relation": m.get("relation")}
        for m in row.get("members") or []
    ]
    out["flags"] = {k: {"since": v.get("since")} for k, v in (row.get("flags") or {}).items()
                    if k not in SENSITIVE_CARE_FLAGS}
    out["flag_names"] = [f for f in row.get("flag_names") or [] if f not in SENSITIVE_CARE_FLAGS]
    out["flag_history"] = [
        {"flag": h["flag"], "change": h["change"], "at": h["at"]}
        for h in row.get("flag_history") or [] if h.get("flag") not in SENSITIVE_CARE_FLAGS
    ]
    if out.get("due_flag") in SENSITIVE_CARE_FLAGS:
        out["due_flag"] = None
    out["restricted"] = bool(row.get("sensitive"))
    out.pop("sensitive", None)
    out["recent_visits"] = [
        {"visit_id": v.get("visit_id"), "at": v.get("at"), "case_nos": v.get("case_nos")}
        for v in row.get("recent_visits") or []
    ]
    out["cases"] = [
        {"case_no": c.get("case_no"), "category": c.get("category"),
         "raised_at": c.get("raised_at")}
        for c in row.get("cases") or []
    ]
    return out


def present_counts(per_flag: dict[str, int], sensitive_ok: bool) -> dict[str, int]:
    if sensitive_ok:
        return per_flag
    return {k: v for k, v in per_flag.items() if k not in SENSITIVE_CARE_FLAGS}
