"""griddispatch: core."""
