"""Top-level flow of a run: dataset checks, unit discovery, plan, parallel execution, summary."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..bids.checks import UnitInfo, check_unit
from ..bids.discovery import discover_units, open_layout
from ..config import Settings
from ..config.execution import ExecutionOptions, Selection
from ..derivatives import DerivativesWriter
from ..derivatives.provenance import write_run_provenance
from ..errors import (CannotCreateOutputError, NoInputError, QsmappError, UsageError)
from ..interfaces.bids_validator import validate_dataset
from . import plan as planning
from .execution import UnitResult, attach_run_log, exit_code_of, make_work_root, run_units, summary_table

LOGGER = logging.getLogger("qsmapp")


@dataclass
class UnitTask:
    """Everything a worker process needs to process one unit (picklable)."""

    info: UnitInfo
    settings: Settings
    output_dir: Path
    bids_dir: Path
    work_dir: Path
    resume: bool
    threads: int = 1
    device: str = "auto"
    nextqsm_weights: Path | None = None

    @property
    def name(self) -> str:
        return self.info.unit.name


def check_paths(bids_dir: Path, output_dir: Path) -> None:
    if not bids_dir.exists():
        raise NoInputError(f"BIDS_DIR {bids_dir} does not exist", hint="check the path (and the -v mount in a container)")
    if not bids_dir.is_dir():
        raise NoInputError(f"BIDS_DIR {bids_dir} is not a folder")
    if output_dir.resolve() == bids_dir.resolve():
        raise UsageError(
            f"OUTPUT_DIR must differ from BIDS_DIR ({bids_dir}); the input dataset is never written to",
            hint=f"use e.g. {bids_dir / 'derivatives' / 'qsmapp'}",
        )
    if bids_dir.resolve() in output_dir.resolve().parents and "derivatives" not in output_dir.resolve().relative_to(bids_dir.resolve()).parts:
        raise UsageError(
            f"OUTPUT_DIR {output_dir} is inside BIDS_DIR but not under its derivatives/ folder",
            hint=f"use {bids_dir / 'derivatives' / 'qsmapp'} or a folder outside BIDS_DIR",
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise CannotCreateOutputError(f"OUTPUT_DIR {output_dir} exists and is not a folder")


def run(*, level, bids_dir, output_dir, settings, selection: Selection, options: ExecutionOptions,
        command, group=None, log_level=logging.INFO) -> int:
    check_paths(bids_dir, output_dir)
    if level == "group":
        from .group import run_group

        return run_group(bids_dir=bids_dir, output_dir=output_dir, settings=settings,
                         selection=selection, options=options, command=command, group=group,
                         log_level=log_level)
    if "qsm" in settings.outputs and settings.qsm_algorithm == "nextqsm":
        from ..interfaces import nextqsm as nx

        nx.check_tensorflow()
        LOGGER.info("NeXtQSM weights: %s", nx.find_weights(options.nextqsm_weights))
    if settings.needs_segmentation:
        _check_segmentation_tools(settings)
    if not options.skip_bids_validation:
        validate_dataset(bids_dir)
    layout = open_layout(bids_dir)
    units = discover_units(bids_dir, selection, layout=layout)
    needs_phase = "qsm" in settings.outputs
    if needs_phase and not any(u.has_phase for u in units):
        raise NoInputError(
            f"no GRE phase images (part-phase) found in {bids_dir} for the selected data; QSM needs phase",
            hint="add the phase images, or request only magnitude outputs: --outputs t2s r2s",
        )
    infos, failures = [], []
    for unit in units:
        try:
            infos.append(check_unit(
                unit,
                needs_phase=needs_phase,
                needs_field_strength=needs_phase,
                b0_strength_override=settings.b0_strength,
            ))
        except QsmappError as exc:
            failures.append(UnitResult(unit.name, "failed", 0.0, str(exc), exc.exit_code))
            LOGGER.error("[%s] input check failed: %s", unit.name, exc)
    if options.dry_run:
        print(planning.describe(infos, failures, settings))
        return exit_code_of(failures)
    writer = DerivativesWriter(output_dir, bids_dir=bids_dir)
    writer.init_dataset(source_name=layout.description.get("Name") if layout.description else None)
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    run_log = attach_run_log(output_dir, run_id)
    work_root, remove_work = make_work_root(options.work_dir, run_id)
    LOGGER.info("qsmapp %s: %d unit(s) to process, %d failed the input checks; outputs in %s",
                __version__, len(infos), len(failures), output_dir)
    tasks = [UnitTask(info, settings, output_dir, bids_dir, work_root / info.unit.name, options.resume,
                      threads=options.threads_per_unit(), device=options.device,
                      nextqsm_weights=options.nextqsm_weights)
             for info in infos]
    n_procs = planning.parallel_units(infos, options, settings)
    from .participant import process_unit

    try:
        if failures and options.stop_on_first_crash:
            results = []
        else:
            results = run_units(process_unit, tasks, n_procs=n_procs, threads=options.threads_per_unit(),
                                stop_on_first_crash=options.stop_on_first_crash, log_level=log_level)
    finally:
        if remove_work:
            shutil.rmtree(work_root, ignore_errors=True)
        LOGGER.removeHandler(run_log)
        run_log.close()
    results = failures + results
    write_run_provenance(output_dir, run_id=run_id, settings=settings, command=command, results=results,
                         citations=planning.citation_keys(settings, results))
    _write_reports(output_dir, {info.unit.subject for info in infos})  # after the summary: lists failed units
    table = summary_table(results)
    print(table, file=os.sys.stderr)
    code = exit_code_of(results)
    if code:
        failed = [r.name for r in results if r.status == "failed"]
        LOGGER.error("%d unit(s) failed: %s (details above and in %s/logs/)", len(failed), ", ".join(failed), output_dir)
    return code


def _check_segmentation_tools(settings) -> None:
    """Fail before any processing when the requested segmentation backend cannot run here."""
    from ..segmentation import available_backend

    try:
        import ants  # noqa: F401
    except ImportError:
        raise UsageError("segmentation needs antspyx (registration)", hint="pip install antspyx") from None
    if settings.seg_backend == "fastsurfer":
        from ..interfaces.fastsurfer import find_fastsurfer

        find_fastsurfer()
    elif settings.seg_backend == "atlas":
        from ..segmentation.templates import find_template

        find_template(settings.seg_template)
    backend = available_backend(settings.seg_backend, template=settings.seg_template)
    LOGGER.info("segmentation backend: %s", backend)
    if backend == "tissue" and settings.seg_backend == "auto":
        LOGGER.warning("neither FastSurfer nor a labelled template is available: segmentation gives tissue "
                       "classes (CSF/GM/WM) only; set FASTSURFER_HOME, TEMPLATEFLOW_HOME or --seg-template "
                       "for anatomical labels")


def _write_reports(output_dir, subjects) -> None:
    from ..reports import write_subject_report

    for subject in sorted(subjects):
        try:
            write_subject_report(output_dir, subject)
        except OSError as exc:  # a report must never turn a good run into a failed one
            LOGGER.warning("could not write the report of sub-%s: %s", subject, exc)
