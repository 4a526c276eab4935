"""Reference data loaded once per process: jurisdiction tree, category catalogue, calendar.

Why one loader: the gateway validates against exactly the data the workers route with; both
call ``load_reference`` with the same settings, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.calendar import WorkCalendar
from core.catalogue import Catalogue
from core.jurisdiction import Jurisdiction
from core.settings import Settings


@dataclass(frozen=True)
class Reference:
    jurisdiction: Jurisdiction
    catalogue: Catalogue
    calendar: WorkCalendar

    @property
    def partitions(self) -> list[str]:
        """Every district code: the partitions of commands, event tables and consumers."""
        return sorted({self.jurisdiction.partition_of(code) for code in self.jurisdiction.grids})


def load_reference(settings: Settings) -> Reference:
    return Reference(
        jurisdiction=Jurisdiction.load(settings.city_dir),
        catalogue=Catalogue.load(settings.categories_file),
        calendar=WorkCalendar(),
    )
