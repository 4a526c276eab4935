"""griddispatch: aggregates."""
