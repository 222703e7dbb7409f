"""Top-level flow of a run: dataset checks, unit discovery, plan, parallel execution, summary."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..bids.checks import UnitInfo, check_unit
from ..bids.discovery import discover_units, open_layout, unreadable_sidecars
from ..config import Settings
from ..config.execution import ExecutionOptions, Selection
from ..derivatives import DerivativesWriter
from ..derivatives.atomic import TEMP_MARKER
from ..derivatives.provenance import write_run_provenance
from ..errors import CannotCreateOutputError, DataError, Interrupted, NoInputError, QsmappError, UsageError
from ..interfaces.bids_validator import validate_dataset
from . import plan as planning
from ..execution import UnitResult, attach_run_log, exit_code_of, make_work_root, run_units, summary_table
from .locking import UnitLock

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
    check_output_ownership(bids_dir, output_dir)


# Files qsmapp itself may put into a new OUTPUT_DIR before its dataset_description.json exists (the
# write probe of a run starting at the same moment): they do not make the folder someone else's.
_OWN_PROBES = (".qsmapp-write-test-",)


def check_output_ownership(bids_dir: Path, output_dir: Path) -> None:
    """OUTPUT_DIR must be new, empty, or a qsmapp derivatives dataset; nothing else is ever written into.

    Raises
    ------
    UsageError
        OUTPUT_DIR is ``BIDS_DIR/derivatives`` itself, or a folder with other content (another
        pipeline's derivatives, any other data): qsmapp would overwrite files of the same names.
    """
    suggestion = bids_dir / "derivatives" / "qsmapp"
    if output_dir.resolve() == (bids_dir / "derivatives").resolve():
        raise UsageError(
            f"OUTPUT_DIR {output_dir} is the derivatives/ folder of BIDS_DIR itself, which holds the folders "
            "of every pipeline", hint=f"give qsmapp its own folder: {suggestion}")
    if not output_dir.is_dir():
        return
    try:
        # a temporary of a run starting right now (its dataset_description.json on its way) is not content
        entries = [p.name for p in output_dir.iterdir()
                   if not p.name.startswith(_OWN_PROBES) and TEMP_MARKER not in p.name]
    except OSError as exc:
        raise CannotCreateOutputError(f"cannot read OUTPUT_DIR {output_dir}: {exc.strerror or exc}",
                                      hint="check its permissions") from None
    if not entries:
        return
    description = output_dir / "dataset_description.json"
    refuse = (f"OUTPUT_DIR {output_dir} is not empty and is not a qsmapp derivatives dataset "
              "({}); qsmapp writes only into an empty folder or its own earlier output")
    hint = f"choose a new or empty folder (e.g. {suggestion}), or the OUTPUT_DIR of an earlier qsmapp run"
    if not description.is_file():
        raise UsageError(refuse.format("it has no dataset_description.json"), hint=hint)
    try:
        data = json.loads(description.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        raise UsageError(refuse.format(f"{description.name} cannot be read as JSON"), hint=hint) from None
    if not isinstance(data, dict):
        raise UsageError(refuse.format(f"{description.name} is not a JSON object"), hint=hint)
    generated = data.get("GeneratedBy")
    names = [g.get("Name") for g in generated if isinstance(g, dict)] if isinstance(generated, list) else []
    if data.get("DatasetType") != "derivative" or "qsmapp" not in names:
        found = ", ".join(str(n) for n in names if n) or "no GeneratedBy"
        raise UsageError(refuse.format(f"its {description.name} names {found}"), hint=hint)


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
    layout = open_layout(bids_dir, skip=unreadable_sidecars(bids_dir))
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
            info = check_unit(
                unit,
                needs_phase=needs_phase,
                needs_field_strength=needs_phase,
                b0_strength_override=settings.b0_strength,
            )
            _check_memory(info, settings, options)
            infos.append(info)
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
    locks: list = []
    work_root = None
    remove_work = False
    results: list = []
    interrupted = None
    try:
        infos = _lock_units(infos, output_dir, run_id, locks, failures)
        work_root, remove_work = make_work_root(options.work_dir, run_id)
        LOGGER.info("qsmapp %s: %d unit(s) passed the input checks (complete ones are resumed, not redone), %d "
                    "failed them; outputs in %s", __version__, len(infos), len(failures), output_dir)
        tasks = [UnitTask(info, settings, output_dir, bids_dir, work_root / info.unit.name, options.resume,
                          threads=options.threads_per_unit(), device=options.device,
                          nextqsm_weights=options.nextqsm_weights)
                 for info in infos]
        n_procs = planning.parallel_units(infos, options, settings)
        from .participant import process_unit, write_completion_record

        if failures and options.stop_on_first_crash:
            results = []
        else:
            results = run_units(process_unit, tasks, n_procs=n_procs, threads=options.threads_per_unit(),
                                stop_on_first_crash=options.stop_on_first_crash, log_level=log_level,
                                on_result=write_completion_record)
    except Interrupted as exc:
        interrupted = exc
        results = list(exc.results)
        LOGGER.error("interrupted by %s: %d unit(s) stopped; cleaning up", exc.name,
                     sum(r.status == "interrupted" for r in results))
    finally:
        if work_root is not None and remove_work:
            shutil.rmtree(work_root, ignore_errors=True)
        _release_locks(locks)
        LOGGER.removeHandler(run_log)
        run_log.close()
    results = failures + results
    table = summary_table(results)
    print(table, file=os.sys.stderr)
    code = interrupted.exit_code if interrupted is not None else exit_code_of(results)
    try:
        write_run_provenance(output_dir, run_id=run_id, settings=settings, command=command, results=results,
                             citations=planning.citation_keys(settings, infos))
        if interrupted is None:  # after the summary: the reports list the failed units
            _write_reports(output_dir, {info.unit.subject for info in infos})
    except QsmappError as exc:  # e.g. the disk is full: the table above is all there is
        LOGGER.error("the run summary could not be written: %s", exc)
        code = code or exc.exit_code
    if interrupted is not None:
        raise interrupted
    if code:
        failed = [r.name for r in results if r.status == "failed"]
        LOGGER.error("%d unit(s) failed: %s (details above and in %s/logs/)", len(failed), ", ".join(failed), output_dir)
    return code


def _physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(info, settings, options) -> None:
    """Refuse a unit whose header-declared size cannot fit in ``--mem`` (or this machine), before loading.

    The estimate is from the header alone (grid × echoes), so a header that claims an absurd grid is
    caught here with its file named, not by the operating system killing the run mid-allocation.
    """
    needed = planning.estimated_unit_bytes(info, settings)
    limit = options.mem_gb * 1024**3 if options.mem_gb else _physical_memory_bytes()
    if limit is None or needed <= limit:
        return
    where = f"--mem {options.mem_gb:g}" if options.mem_gb else "the memory of this machine"
    shape = "x".join(map(str, info.shape))
    raise DataError(
        f"{info.unit.name}: {info.unit.files()[0]} declares a {shape} grid with {info.n_echoes} echo(es), which "
        f"needs about {needed / 1024**3:.1f} GB to process, more than {where} ({limit / 1024**3:.1f} GB)",
        hint="check the image header's dimensions; for data this large, raise --mem on a machine with more memory",
    )


def _lock_units(infos, output_dir, run_id, locks, failures) -> list:
    """Lock every unit this run will process; a unit another live run holds becomes a failure."""
    from ..errors import UnitLockedError

    kept = []
    for info in infos:
        lock = UnitLock(output_dir, info.unit.name, run_id)
        writer = DerivativesWriter(output_dir)
        # where this unit's workers write (for the clean-up after they are killed)
        lock.folders = [writer.unit_dir(info.unit), writer.root / f"sub-{info.unit.subject}" / "figures",
                        lock.path.parent]
        try:
            locks.append(lock.acquire())
        except UnitLockedError as exc:
            LOGGER.error("[%s] %s", info.unit.name, exc)
            failures.append(UnitResult(info.unit.name, "failed", 0.0, str(exc), exc.exit_code))
            continue
        kept.append(info)
    return kept


def _release_locks(locks) -> None:
    """Remove what killed workers left (temporaries of dead processes), then release the unit locks."""
    from ..derivatives.atomic import remove_stale_temporaries

    for lock in locks:
        for folder in getattr(lock, "folders", [lock.path.parent]):
            remove_stale_temporaries(folder, prefix=lock.unit_name)
        lock.release()


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
        except (OSError, CannotCreateOutputError) as exc:  # a report must never turn a good run into a failed one
            LOGGER.warning("could not write the report of sub-%s: %s", subject, exc)
