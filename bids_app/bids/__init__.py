"""BIDS input: discovery of acquisition units with pybids, header-level checks, validation."""
