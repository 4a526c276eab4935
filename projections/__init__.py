"""griddispatch: projections."""
