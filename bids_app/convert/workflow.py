"""``qsmapp-convert`` as a function: input folder → plan → BIDS (or the plan printed, for a dry run)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NoInputError, UsageError
from .dcm2niix import dcm2niix_version, run_dcm2niix
from .plan import Plan, build_plan
from .rules import RuleSet
from .series import Series
from .sources import bids_label, scan_input, sort_by_study, stage_dicom
from .writer import check_targets, write_plan

LOGGER = logging.getLogger("qsmapp")


@dataclass
class ConversionResult:
    """What a conversion did (or, for a dry run, would do)."""

    plan: Plan
    subject: str
    session: str | None
    written: list = field(default_factory=list)
    dry_run: bool = False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _clean_label(value, option) -> str:
    prefix = {"--participant-label": "sub-", "--session": "ses-"}[option]
    clean = str(value)[len(prefix):] if str(value).startswith(prefix) else str(value)
    if not clean or bids_label(clean) != clean:
        raise UsageError(f"{option} {value!r} is not a BIDS label", hint="use letters and digits only")
    return clean


def _units(folder, participant_label, session) -> list:
    """``[(subject, session, files or None), ...]``: one conversion per patient and study.

    DICOM from several patients gives one subject each (``sub-<PatientID>``, letters and digits);
    several studies of one patient give sessions named by study date (``ses-<YYYYMMDD>``, or
    ``ses-1``, ``ses-2``... when two share a date).
    """
    subject = _clean_label(participant_label, "--participant-label") if participant_label else None
    session = _clean_label(session, "--session") if session is not None else None
    if folder.kind != "dicom":
        if subject is None:
            raise UsageError("--participant-label is required for NIfTI input", hint="e.g. --participant-label 01")
        return [(subject, session, None)]
    studies = sort_by_study(folder)
    patients = sorted({s.patient_id for s in studies})
    if subject is not None and len(patients) > 1:
        raise UsageError(f"{folder.root} holds DICOM of {len(patients)} patients ({', '.join(patients)}), so one "
                         "--participant-label cannot name them", hint="omit it to name each sub-<PatientID>, or "
                         "convert one patient's folder at a time")
    labels = {}
    for patient in patients:
        label = subject or bids_label(patient)
        if not label:
            raise UsageError(f"cannot take a participant label from the DICOM PatientID ({patient!r}) in {folder.root}",
                             hint="give --participant-label")
        if label in labels.values():
            raise UsageError(f"PatientIDs {patient!r} and another both reduce to the label {label!r}",
                             hint="convert one patient's folder at a time with --participant-label")
        labels[patient] = label
    units = []
    for patient in patients:
        mine = [s for s in studies if s.patient_id == patient]
        if len(mine) > 1 and session is not None:
            raise UsageError(f"{folder.root} holds {len(mine)} studies of patient {patient!r}, so one --session "
                             "cannot name them", hint="omit --session to name them by study date")
        if len(mine) == 1:
            names = [session]
        else:
            dates = [bids_label(s.study_date) for s in mine]
            names = dates if all(dates) and len(set(dates)) == len(dates) else [str(i) for i in range(1, len(mine) + 1)]
        units.extend((labels[patient], name, study.files) for name, study in zip(names, mine))
    return units


def convert(input_dir, bids_dir, *, participant_label=None, session=None, rules: RuleSet | None = None,
            auto: bool = True, dry_run: bool = False, phase_units: str = "rad", overwrite: bool = False,
            input_type: str = "auto") -> list:
    """Convert a DICOM (or NIfTI) folder into the BIDS dataset ``bids_dir``.

    Parameters
    ----------
    input_dir : path-like
        Scanner export (DICOM, gzipped DICOM, classic or enhanced) or NIfTI files with JSON sidecars;
        read only. DICOM of several patients or studies is sorted by PatientID and StudyInstanceUID.
    bids_dir : path-like
        BIDS dataset to create or add to; must not lie inside ``input_dir``.
    participant_label : str, optional
        BIDS subject label (one patient); default: the DICOM PatientID reduced to letters and digits.
    session : str, optional
        BIDS session label (one study); default: none for one study, the study date for several.
    rules : RuleSet, optional
        dcm2bids configuration mapping series to BIDS names.
    auto : bool
        Recognise series no rule matches.
    dry_run : bool
        Plan only: nothing is written into ``bids_dir``.
    phase_units : {"rad", "keep"}
        Rescale vendor phase to radians (default), or keep it as converted (``Units: arbitrary``).
    overwrite : bool
        Replace existing images.
    input_type : {"auto", "dicom", "nifti"}

    Returns
    -------
    list of ConversionResult
        One per (subject, session).

    Raises
    ------
    UsageError, NoInputError, DataError, CannotCreateOutputError
        With exit codes 64, 66, 65, 73. Every plan is checked for existing images before anything
        is written.
    """
    input_dir, bids_dir = Path(input_dir), Path(bids_dir)
    if _inside(bids_dir, input_dir):
        raise UsageError(f"BIDS_DIR {bids_dir} is inside the input folder {input_dir}; nothing is written there",
                         hint="choose a BIDS_DIR outside the scanner export")
    folder = scan_input(input_dir, input_type=input_type)
    units = _units(folder, participant_label, session)
    results = []
    with tempfile.TemporaryDirectory(prefix="qsmapp-convert-") as work:
        work = Path(work)
        version = dcm2niix_version() if folder.kind == "dicom" else None
        for number, (subject, ses, files) in enumerate(units, start=1):
            if folder.kind == "dicom":
                unit_dir = work / str(number)
                source = stage_dicom(folder, unit_dir / "staged" / (input_dir.resolve().name or "dicom"), files)
                (unit_dir / "nifti").mkdir(parents=True)
                LOGGER.info("converting %d DICOM files of %s with dcm2niix (sub-%s%s)", len(files), input_dir,
                            subject, f", ses-{ses}" if ses else "")
                series_list = [Series.from_sidecar(p) for p in run_dcm2niix(source, unit_dir / "nifti")]
            else:
                series_list = [Series.from_nifti(p) for p in folder.nifti_files]
            if not series_list:
                raise NoInputError(f"dcm2niix found no image series in {input_dir}", hint="check the folder")
            plan = build_plan(series_list, subject=subject, session=ses, rules=rules, auto=auto)
            for item in series_list:  # decided while the converted images exist
                _ = item.kind, item.volumes
            results.append(ConversionResult(plan=plan, subject=subject, session=ses, dry_run=dry_run))
        if not dry_run:
            for result in results:
                check_targets(result.plan, bids_dir, overwrite=overwrite)
            for result in results:
                if result.plan.targets:
                    result.written = write_plan(result.plan, bids_dir, subject=result.subject,
                                                phase_units=phase_units, overwrite=True, dcm2niix=version)
    return results
