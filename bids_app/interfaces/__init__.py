"""Wrappers of external tools: BIDS validator, ANTs (antspyx), FastSurfer, NeXtQSM."""
