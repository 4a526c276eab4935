"""Which closed cases are due a return visit (回访规则): one rule, configurable.

A return visit (回访) asks the person who reported a problem whether it was solved. It is
due on a closed case that has not been visited since its closing (the registry offers
``return_visit`` to the call-taker exactly then) *and* whose reporter can be asked: by
default a citizen-sourced case — reported through the hotline (12319) or Open311, or any
case whose reporter left a phone number. A city changes the rule with ``GRID_RETURN_VISITS``
(a comma-separated list of sources, ``phone`` for "any case with a reporter phone", ``all``
for every closed case), e.g. ``hotline,open311`` or ``all``.

Pure: the call-taker's list (``projections/return_visits.py``, as SQL over the queue read
model), the notice to call-takers (``aggregates/notices.py``) and the reporter's SMS all ask
this rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.vocabulary import SOURCES

DEFAULT_RULE_TEXT = "hotline,open311,phone"


@dataclass(frozen=True)
class VisitRule:
    """Sources whose cases are visited, whether a reporter phone alone makes a case due,
    or every case (``everything``)."""

    sources: frozenset[str] = frozenset({"hotline", "open311"})
    with_phone: bool = True
    everything: bool = False

    @classmethod
    def parse(cls, text: str | None) -> VisitRule:
        """``hotline,open311,phone`` → the rule; unknown words are refused (a typo must not
        silently empty the call-taker's list)."""
        words = {w.strip() for w in (text or DEFAULT_RULE_TEXT).split(",") if w.strip()}
        if "all" in words:
            return cls(frozenset(), False, True)
        unknown = words - set(SOURCES) - {"phone"}
        if unknown:
            raise ValueError(
                f"GRID_RETURN_VISITS: unknown {sorted(unknown)}; use sources "
                f"{list(SOURCES)}, 'phone' or 'all'"
            )
        return cls(frozenset(words - {"phone"}), "phone" in words, False)

    def due(self, source: str | None, phone: str | None) -> bool:
        """Whether a closed, not yet visited case with this source and reporter phone is due."""
        if self.everything:
            return True
        return (source or "") in self.sources or (self.with_phone and bool((phone or "").strip()))

    def describe_zh(self) -> str:
        """The rule in words, for the call-taker's page and the docs."""
        if self.everything:
            return "所有已结案件"
        names = {"hotline": "热线", "open311": "Open311", "inspector_app": "网格员上报",
                 "api": "接口"}
        parts = [f"{names.get(s, s)}来源" for s in sorted(self.sources)]
        if self.with_phone:
            parts.append("留有上报人电话")
        return "已结案且" + " 或 ".join(parts) + "的案件"


DEFAULT_RULE = VisitRule.parse(DEFAULT_RULE_TEXT)
