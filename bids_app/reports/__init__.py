"""Visual QC reports: per-unit figures under ``sub-<l>/figures/`` and one ``sub-<l>.html`` per subject."""

from .qc import render_unit_figures, write_subject_report

__all__ = ["render_unit_figures", "write_subject_report"]
