"""Orchestration: participant level (per acquisition unit) and group level."""
