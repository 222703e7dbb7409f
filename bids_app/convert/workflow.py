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
from .sources import bids_label, patient_identity, scan_input, stage_dicom
from .writer import write_plan

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


def _subject_label(label, folder) -> str:
    if label:
        clean = str(label)[4:] if str(label).startswith("sub-") else str(label)
        if bids_label(clean) != clean or not clean:
            raise UsageError(f"--participant-label {label!r} is not a BIDS label", hint="use letters and digits only")
        return clean
    if folder.kind != "dicom":
        raise UsageError("--participant-label is required for NIfTI input", hint="e.g. --participant-label 01")
    patients = [p for p in patient_identity(folder)["patients"] if p]
    if len(patients) != 1 or not bids_label(patients[0]):
        found = ", ".join(patients) or "none"
        raise UsageError(f"cannot take the participant label from the DICOM PatientID ({found}) in {folder.root}",
                         hint="give --participant-label (one participant per conversion)")
    return bids_label(patients[0])


def convert(input_dir, bids_dir, *, participant_label=None, session=None, rules: RuleSet | None = None,
            auto: bool = True, dry_run: bool = False, phase_units: str = "rad", overwrite: bool = False,
            input_type: str = "auto") -> ConversionResult:
    """Convert a DICOM (or NIfTI) folder of one participant into the BIDS dataset ``bids_dir``.

    Parameters
    ----------
    input_dir : path-like
        Scanner export (DICOM, gzipped DICOM, classic or enhanced) or NIfTI files with JSON sidecars;
        read only.
    bids_dir : path-like
        BIDS dataset to create or add to; must not lie inside ``input_dir``.
    participant_label : str, optional
        BIDS subject label; default: the DICOM PatientID reduced to letters and digits.
    session : str, optional
        BIDS session label (``ses-`` folder).
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
    ConversionResult

    Raises
    ------
    UsageError, NoInputError, DataError, CannotCreateOutputError
        With exit codes 64, 66, 65, 73.
    """
    input_dir, bids_dir = Path(input_dir), Path(bids_dir)
    if _inside(bids_dir, input_dir):
        raise UsageError(f"BIDS_DIR {bids_dir} is inside the input folder {input_dir}; nothing is written there",
                         hint="choose a BIDS_DIR outside the scanner export")
    if session is not None:
        session = session[4:] if session.startswith("ses-") else session
        if not session or bids_label(session) != session:
            raise UsageError(f"--session {session!r} is not a BIDS label", hint="use letters and digits only")
    folder = scan_input(input_dir, input_type=input_type)
    subject = _subject_label(participant_label, folder)
    with tempfile.TemporaryDirectory(prefix="qsmapp-convert-") as work:
        work = Path(work)
        version = None
        if folder.kind == "dicom":
            source = stage_dicom(folder, work / "staged" / (input_dir.resolve().name or "dicom"))
            (work / "nifti").mkdir()
            LOGGER.info("converting %d DICOM files of %s with dcm2niix", len(folder.dicom_files), input_dir)
            sidecars = run_dcm2niix(source, work / "nifti")
            series_list = [Series.from_sidecar(p) for p in sidecars]
            version = dcm2niix_version()
        else:
            series_list = [Series.from_nifti(p) for p in folder.nifti_files]
        if not series_list:
            raise NoInputError(f"dcm2niix found no image series in {input_dir}", hint="check the folder")
        plan = build_plan(series_list, subject=subject, session=session, rules=rules, auto=auto)
        for item in series_list:  # decided while the converted images exist
            _ = item.kind, item.volumes
        result = ConversionResult(plan=plan, subject=subject, session=session, dry_run=dry_run)
        if dry_run:
            return result
        if plan.targets:
            result.written = write_plan(plan, bids_dir, subject=subject, phase_units=phase_units,
                                        overwrite=overwrite, dcm2niix=version)
    return result
