"""Numerical head phantom and GRE signal simulation for qsmapp example datasets."""
