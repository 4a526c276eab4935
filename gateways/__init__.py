"""griddispatch: gateways."""
