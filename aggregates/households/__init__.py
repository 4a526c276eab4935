"""Households and the six must-visit care visits (六必访): docs/households.md."""

from aggregates.households.aggregate import (
    Household,
    HouseholdEvent,
    household_id_for_key,
    household_no_for_id,
    verify_chain,
)
from aggregates.households.registry import (
    HOUSEHOLD_ACTIONS,
    HouseholdAction,
    HouseholdContext,
    household_actions,
)
from aggregates.households.state import HouseholdState

__all__ = [
    "HOUSEHOLD_ACTIONS",
    "Household",
    "HouseholdAction",
    "HouseholdContext",
    "HouseholdEvent",
    "HouseholdState",
    "household_actions",
    "household_id_for_key",
    "household_no_for_id",
    "verify_chain",
]
