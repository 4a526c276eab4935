"""Visit coverage (走访覆盖率): visits done on time ÷ visits due — the definition, in one place.

Every event of a household records the visit deadline running after it (``due``,
``due_started_at``). Each distinct deadline is one *visit due*. It ends:

* at the visit that meets it — **on time** when the visit was at or before ``due``, else it
  ends at ``due`` as missed (the late visit then starts the next deadline);
* at ``due`` as missed when no visit came by then;
* not at all when a change replaced it before it was due (a flag set with a shorter interval,
  the last flag lifted, the household archived): nobody could have missed it.

**Coverage** over a period = deadlines ending in the period that were met on time ÷ all
deadlines ending in the period (ending at or before *now*). A household left unvisited for
several intervals counts one missed visit (its deadline stays red and it is in the overdue
count until a visit comes). The SQL of the read model (``projections/households.py``) counts
the rows :func:`deadlines` produces in the same way; ``tests/unit/test_household.py``
recomputes it from the events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from aggregates.households.aggregate import HouseholdEvent, _time


@dataclass(frozen=True)
class VisitDeadline:
    started_at: datetime
    due: datetime
    met_at: datetime | None = None  # the visit that ended it
    replaced_at: datetime | None = None  # a change that replaced it before a visit

    @property
    def on_time(self) -> bool:
        return self.met_at is not None and self.met_at <= self.due

    def ends_at(self) -> datetime | None:
        """When it counts as a visit due (None: it never counts)."""
        if self.on_time:
            return self.met_at
        if self.replaced_at is not None and self.met_at is None and self.replaced_at < self.due:
            return None
        return self.due


def deadlines(events: Iterable[HouseholdEvent]) -> list[VisitDeadline]:
    """Every visit deadline of one household's events, in order."""
    out: list[VisitDeadline] = []
    current: VisitDeadline | None = None
    for event in events:
        due = _time(event.data.get("due"))
        started = _time(event.data.get("due_started_at"))
        if current is not None:
            if event.type == "HouseholdVisited":
                met = _time(event.data.get("visited_at")) or event.at
                out.append(VisitDeadline(current.started_at, current.due, met_at=met))
                current = None
            elif (due, started) != (current.due, current.started_at):
                out.append(VisitDeadline(current.started_at, current.due, replaced_at=event.at))
                current = None
        if current is None and due is not None and started is not None:
            current = VisitDeadline(started, due)
    if current is not None:
        out.append(current)
    return out


def coverage(
    items: Iterable[VisitDeadline], start: datetime, end: datetime, now: datetime
) -> tuple[int, int]:
    """(on time, due) for deadlines ending in ``[start, end)`` and at or before ``now``."""
    on_time = due = 0
    for d in items:
        ends = d.ends_at()
        if ends is None or not (start <= ends < end) or ends > now:
            continue
        due += 1
        on_time += int(d.on_time)
    return on_time, due


#: The definition as people read it (the API and the centre show it beside the figures).
DEFINITION_ZH = (
    "走访覆盖率 = 按期完成的走访 ÷ 应走访次数。每户的每个走访期限算一次应走访：期限内走访为按期；"
    "期限已过仍未走访（或走访晚于期限）为未按期，迟到的走访开始下一个期限；期限未到就因标记变化"
    "（新增更短周期的标记、解除全部标记）被替换的不计。统计期内结束的期限计入：按期的在走访时结束，"
    "其余在期限时结束。长期未走访的户只计一次未按期，并一直计入逾期未访户，直到走访。"
)
DEFINITION_EN = (
    "Visit coverage = visits done on time ÷ visits due. Each visit deadline of a household is "
    "one visit due: met on time by a visit at or before it; missed when it passes without one "
    "(a late visit starts the next deadline); not counted when a flag change replaced it before "
    "it was due. Deadlines ending in the period count (on-time ones end at the visit, others at "
    "the due moment). A household left unvisited counts one missed visit and stays in the "
    "overdue count until visited."
)


#: The household figures (六必访) and their definitions, in display order: served by
#: ``GET /v1/metrics/definitions`` (``household_metrics``, beside the case metrics) and with
#: every answer of ``GET /v1/households/coverage``. ``kind`` as the case metrics' (count /
#: rate / snapshot: a count of the state now, not bound to the period).
HOUSEHOLD_METRICS: dict[str, dict[str, str]] = {
    "coverage": {
        "zh": "走访覆盖率", "en": "Visit coverage", "kind": "rate",
        "formula_zh": "走访覆盖率 = 按期走访 ÷ 应走访",
        "formula_en": "Visit coverage = visits on time ÷ visits due",
        "note_zh": DEFINITION_ZH, "note_en": DEFINITION_EN,
    },
    "visits_due": {
        "zh": "应走访", "en": "Visits due", "kind": "count",
        "formula_zh": "应走访(统计期内结束的走访期限)",
        "formula_en": "Visits due (visit deadlines ending in the period)",
        "note_zh": "每户的每个走访期限算一次；期限未到就被替换的不计。",
        "note_en": "Each visit deadline of a household counts once; one replaced before it was "
                   "due does not count.",
    },
    "visits_on_time": {
        "zh": "按期走访", "en": "Visits on time", "kind": "count",
        "formula_zh": "按期走访(期限内完成的走访)",
        "formula_en": "Visits on time (made at or before their deadline)",
        "note_zh": "", "note_en": "",
    },
    "overdue": {
        "zh": "逾期未访户", "en": "Overdue households", "kind": "snapshot",
        "formula_zh": "逾期未访户(当前状态)", "formula_en": "Overdue households (state now)",
        "note_zh": "走访期限已过仍未走访的户数（红灯），按当前时刻计，与所选时段无关。",
        "note_en": "Households whose visit deadline has passed without a visit (red), now; "
                   "not bound to the period.",
    },
    "warning": {
        "zh": "临期户", "en": "Households due soon", "kind": "snapshot",
        "formula_zh": "临期户(当前状态)", "formula_en": "Households due soon (state now)",
        "note_zh": "已过走访周期 80%、尚未到期的户数（黄灯），与案件时限同一规则。",
        "note_en": "Households past 80 % of their visit interval, not yet due (yellow); the "
                   "same rule as case deadlines.",
    },
    "flagged": {
        "zh": "必访户", "en": "Must-visit households", "kind": "snapshot",
        "formula_zh": "必访户(当前状态)", "formula_en": "Must-visit households (state now)",
        "note_zh": "至少有一项六必访标记的在册户数。",
        "note_en": "Registered households with at least one of the six must-visit flags.",
    },
    "per_flag": {
        "zh": "各类必访户", "en": "Households per flag", "kind": "snapshot",
        "formula_zh": "各标记的户数(当前状态)", "formula_en": "Households per flag (state now)",
        "note_zh": "一户有多项标记时在每项中各计一次；重大疾病、刑释解教/社区矫正的户数仅对有"
                   "知悉需要的角色显示。",
        "note_en": "A household with several flags counts under each; the counts of serious "
                   "illness and released / corrected are shown only to roles with a need to "
                   "know.",
    },
}
