"""The input folder: DICOM files (plain or gzipped) or NIfTI images with their JSON sidecars.

The input is only ever read. dcm2niix cannot read gzipped DICOM, so when some files are gzipped all
DICOM files are staged (decompressed, or linked) into a temporary folder outside the input, and
dcm2niix reads that folder instead.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import NoInputError, UsageError

LOGGER = logging.getLogger("qsmapp")
_NIFTI = (".nii", ".nii.gz")
_SKIP = {".json", ".txt", ".md", ".tsv", ".csv", ".png", ".jpg", ".pdf", ".sh", ".py", ".bval", ".bvec"}


@dataclass
class InputFolder:
    """What the input folder holds.

    Attributes
    ----------
    root : Path
        The folder given on the command line.
    kind : str
        ``dicom`` or ``nifti``.
    dicom_files : list of Path
        DICOM files (``.dcm``, ``.dcm.gz``, extension-less, GE ``.MRDC.n``...), sorted.
    nifti_files : list of Path
        NIfTI images (``.nii``, ``.nii.gz``), sorted.
    gzipped : bool
        Whether some DICOM files are gzipped (they must be staged for dcm2niix).
    """

    root: Path
    kind: str
    dicom_files: list = field(default_factory=list)
    nifti_files: list = field(default_factory=list)
    gzipped: bool = False


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(_NIFTI)


def _has_dicom_preamble(path: Path) -> bool:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                head = handle.read(132)
        else:
            with open(path, "rb") as handle:
                head = handle.read(132)
    except (OSError, EOFError):
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _looks_like_dicom(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith(".") or name in ("dicomdir",):
        return False
    if any(name.endswith(ext) for ext in _SKIP):
        return False
    if name.endswith((".dcm", ".dcm.gz", ".ima", ".ima.gz")):
        return True
    if _has_dicom_preamble(path):
        return True
    # DICOM without the 128-byte preamble (some GE exports): let pydicom decide.
    try:
        import pydicom

        pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["Modality"], force=False)
        return True
    except Exception:  # noqa: BLE001 - anything pydicom cannot read is not a DICOM file for us
        return False


def scan_input(root, *, input_type: str = "auto") -> InputFolder:
    """List the DICOM or NIfTI files under ``root`` (recursively).

    Parameters
    ----------
    root : path-like
        Input folder.
    input_type : {"auto", "dicom", "nifti"}
        ``auto`` takes DICOM when there is any, else NIfTI.

    Raises
    ------
    UsageError
        ``root`` is not a folder.
    NoInputError
        No DICOM (or NIfTI) file found.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"input folder {root} does not exist or is not a folder",
                         hint="give the folder of the scanner export (DICOM) or of the NIfTI files")
    dicom, nifti = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not path.is_file():
                continue
            if _is_nifti(path):
                nifti.append(path)
            elif input_type != "nifti" and _looks_like_dicom(path):
                dicom.append(path)
    if input_type == "dicom" or (input_type == "auto" and dicom):
        if not dicom:
            raise NoInputError(f"no DICOM file found under {root}", hint="check the folder, or use --input-type nifti")
        gz = any(p.name.endswith(".gz") for p in dicom)
        return InputFolder(root=root, kind="dicom", dicom_files=dicom, gzipped=gz)
    if not nifti:
        raise NoInputError(f"no DICOM or NIfTI file found under {root}",
                           hint="give the folder of the scanner export (DICOM files) or of NIfTI + JSON files")
    return InputFolder(root=root, kind="nifti", nifti_files=nifti)


def stage_dicom(folder: InputFolder, staging, files=None) -> Path:
    """A folder dcm2niix can read: the input itself, or a staged copy of ``files``.

    The input is used as it is when ``files`` is all of it and none is gzipped. Otherwise the files are
    hard-linked (copied across file systems) and gzipped files decompressed into ``staging``, under their
    relative path (``/`` → ``__``) so that the names stay unique.
    """
    files = folder.dicom_files if files is None else list(files)
    gzipped = any(p.name.endswith(".gz") for p in files)
    if not gzipped and len(files) == len(folder.dicom_files):
        return folder.root
    staging = Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    for source in files:
        relative = source.relative_to(folder.root).as_posix().replace("/", "__")
        if relative.endswith(".gz"):
            target = staging / relative[:-3]
            with gzip.open(source, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            target = staging / relative
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
    LOGGER.debug("staged %d DICOM files in %s", len(files), staging)
    return staging


def read_dicom_header(path):
    """The header of one DICOM file (plain or gzipped), without pixel data (pydicom ``Dataset``)."""
    import pydicom

    path = Path(path)
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            return pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    return pydicom.dcmread(str(path), stop_before_pixels=True, force=True)


def bids_label(text) -> str:
    """``text`` reduced to a BIDS label (letters and digits only)."""
    return re.sub(r"[^A-Za-z0-9]", "", str(text or ""))


@dataclass
class Study:
    """The DICOM files of one study of one patient (pydicom: dcm2niix's JSON leaves these out)."""

    patient_id: str
    study_uid: str
    study_date: str
    files: list = field(default_factory=list)


def sort_by_study(folder: InputFolder) -> list:
    """Group the DICOM files by (PatientID, StudyInstanceUID); sorted by patient, date, UID.

    Files pydicom cannot read go with the first study (dcm2niix decides what they are).
    """
    studies, unreadable = {}, []
    for path in folder.dicom_files:
        try:
            header = read_dicom_header(path)
        except Exception as exc:  # noqa: BLE001 - unreadable by pydicom: dcm2niix will judge
            LOGGER.debug("cannot read %s with pydicom: %s", path, exc)
            unreadable.append(path)
            continue
        key = (str(getattr(header, "PatientID", "") or ""), str(getattr(header, "StudyInstanceUID", "") or ""))
        if key not in studies:
            studies[key] = Study(key[0], key[1], str(getattr(header, "StudyDate", "") or ""))
        studies[key].files.append(path)
    ordered = sorted(studies.values(), key=lambda s: (s.patient_id, s.study_date, s.study_uid))
    if not ordered:
        return [Study("", "", "", unreadable)] if unreadable else []
    ordered[0].files.extend(unreadable)
    return ordered
