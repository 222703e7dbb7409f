"""Execution options: how (not what) to run. They never change an output map."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Selection:
    """Which acquisition units to process (BIDS entities, pybids queries)."""

    participant_label: list | None = None
    session_label: list | None = None
    acquisition_label: list | None = None
    run_label: list | None = None
    bids_filters: dict = field(default_factory=dict)


@dataclass
class ExecutionOptions:
    work_dir: Path | None = None
    n_procs: int = 1
    omp_nthreads: int | None = None
    mem_gb: float | None = None
    skip_bids_validation: bool = False
    stop_on_first_crash: bool = False
    resume: bool = True
    verbose: int = 0
    dry_run: bool = False
    device: str = "auto"  # FastSurfer and NeXtQSM: auto, cpu or cuda
    nextqsm_weights: Path | None = None

    def threads_per_unit(self) -> int:
        """Threads each unit may use: ``--omp-nthreads`` or the CPUs shared out between processes."""
        if self.omp_nthreads:
            return max(1, int(self.omp_nthreads))
        return max(1, (os.cpu_count() or 1) // max(1, self.n_procs))


@dataclass
class GroupOptions:
    """Options of the group level (study template and group tables)."""

    template_iterations: int = 3  # rounds of register-to-average (affine + SyN) → average → sharpen
    group_mni: bool = False  # also register the study template to MNI152NLin2009cAsym (local TemplateFlow)
