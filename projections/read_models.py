"""Every read model the projector keeps, in the order they are created and rebuilt."""

from __future__ import annotations

from projections.base import Projection
from projections.map import MapProjection
from projections.metrics import MetricsProjection
from projections.queue import QueueProjection
from projections.timeline import TimelineProjection


def all_projections() -> list[Projection]:
    """Fresh instances of every read model (``GRID_PROJECTIONS`` may select some)."""
    return [QueueProjection(), TimelineProjection(), MapProjection(), MetricsProjection()]
