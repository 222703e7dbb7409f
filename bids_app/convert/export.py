"""qsmapp maps (QSM, SWI, minIP) as DICOM image series a PACS viewer accepts.

One series per map, one file per slice, as MR Image Storage (default) or Secondary Capture Image
Storage, explicit VR little endian. The pixel data are 16-bit integers with ``RescaleSlope`` (and
intercept 0) so that ``stored × slope`` gives the map's values (ppm for QSM; the scaled magnitude for
SWI and minIP); the window is set from the data (QSM: centre 0, ±99th percentile of |χ|; SWI/minIP:
0.5th–99.5th percentile). Geometry: the NIfTI affine (RAS) turned into DICOM patient coordinates (LPS):
pixel (row r, column c) of frame k is voxel (i = c, j = r, k); ``ImageOrientationPatient`` holds the
directions of increasing c and r, ``ImagePositionPatient`` the centre of voxel (0, 0, k).

Patient and study identity are copied from the source DICOM study when it is given, and from the source
series the map matches in geometry (orientation, pixel spacing, matrix) its frame of reference (and a
reference to it); otherwise a new study (or frame of reference) is made, with the BIDS subject as patient.
Every series gets new UIDs and a series description that says it is not for diagnostic use.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..errors import CannotCreateOutputError, DataError, NoInputError, UsageError
from .sources import read_dicom_header, scan_input

LOGGER = logging.getLogger("qsmapp")

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class MapKind:
    key: str
    pattern: str  # glob of the derivative file
    title: str
    units: str
    signed: bool
    series_offset: int


MAPS = {
    "qsm": MapKind("qsm", "*_Chimap.nii.gz", "QSM", "ppm", True, 1),
    "swi": MapKind("swi", "*_swi.nii.gz", "SWI", "a.u.", False, 2),
    "minip": MapKind("minip", "*_minIP.nii.gz", "SWI minIP", "a.u.", False, 3),
}

_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientWeight",
                  "OtherPatientIDs", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                  "ReferringPhysicianName", "StudyDescription", "InstitutionName", "FrameOfReferenceUID",
                  "PositionReferenceIndicator", "MagneticFieldStrength", "BodyPartExamined", "PatientPosition",
                  "SpecificCharacterSet")


def find_maps(output_dir, *, maps=("qsm", "swi", "minip"), participant_label=None, session_label=None) -> list:
    """The derivative maps to export: ``[(MapKind, Path), ...]``, sorted.

    ``desc-singlepass`` QSM and maps in another space (``space-``) are left out.
    """
    output_dir = Path(output_dir)
    subjects = None
    if participant_label:
        subjects = {p[4:] if p.startswith("sub-") else p for p in participant_label}
    sessions = None
    if session_label:
        sessions = {s[4:] if s.startswith("ses-") else s for s in session_label}
    found = []
    for key in maps:
        kind = MAPS[key]
        for path in sorted(output_dir.glob(f"sub-*/**/anat/{kind.pattern}")):
            name = path.name
            if "_desc-" in name or "_space-" in name:
                continue
            subject = re.search(r"sub-([A-Za-z0-9]+)", name).group(1)
            session = re.search(r"_ses-([A-Za-z0-9]+)", name)
            if subjects is not None and subject not in subjects:
                continue
            if sessions is not None and (session is None or session.group(1) not in sessions):
                continue
            found.append((kind, path))
    return found


def _plane(header):
    """(orientation, [row spacing, column spacing], rows, columns) of a classic or enhanced DICOM header."""
    orientation, spacing = header.get("ImageOrientationPatient"), header.get("PixelSpacing")
    shared = header.get("SharedFunctionalGroupsSequence")
    if (orientation is None or spacing is None) and shared:
        group = shared[0]
        if "PlaneOrientationSequence" in group:
            orientation = group.PlaneOrientationSequence[0].get("ImageOrientationPatient")
        if "PixelMeasuresSequence" in group:
            spacing = group.PixelMeasuresSequence[0].get("PixelSpacing")
    if orientation is None or spacing is None:
        return None
    return ([float(v) for v in orientation], [float(v) for v in spacing], int(header.get("Rows", 0)),
            int(header.get("Columns", 0)))


def source_identity(source_dir) -> dict:
    """Patient and study attributes of the source DICOM folder (one study), and its series' geometry.

    Returns
    -------
    dict
        The attributes to copy (``PatientName``, ``StudyInstanceUID``...), plus ``_series``: per source
        series, its UID, frame of reference and plane geometry, so that each exported map can reference
        the series it matches (same orientation, pixel spacing and matrix) and share its frame of
        reference.

    Raises
    ------
    NoInputError
        No DICOM file in ``source_dir``.
    UsageError
        The folder holds more than one study.
    """
    folder = scan_input(source_dir, input_type="dicom")
    studies, series = {}, {}
    for path in folder.dicom_files:
        try:
            header = read_dicom_header(path)
        except Exception:  # noqa: BLE001 - skip what pydicom cannot read
            continue
        studies.setdefault(str(getattr(header, "StudyInstanceUID", "")), header)
        uid = str(getattr(header, "SeriesInstanceUID", ""))
        if uid and uid not in series:
            plane = _plane(header)
            if plane is not None:
                series[uid] = {"uid": uid, "frame": str(getattr(header, "FrameOfReferenceUID", "") or ""),
                               "plane": plane, "number": int(getattr(header, "SeriesNumber", 0) or 0)}
    if not studies:
        raise NoInputError(f"no readable DICOM file in {source_dir}", hint="give the folder of the source GRE series")
    if len(studies) > 1:
        raise UsageError(f"--source-dicom {source_dir} holds {len(studies)} studies",
                         hint="give the folder of the one study the maps were computed from")
    header = next(iter(studies.values()))
    identity = {key: header[key].value for key in _PATIENT_STUDY if key in header and key != "FrameOfReferenceUID"}
    identity["_series"] = sorted(series.values(), key=lambda item: item["number"])
    return identity


def matching_series(candidates, geo: dict, shape) -> dict | None:
    """The first source series with the map's pixel axes (up to their sign: dcm2niix flips the rows; 1e-3),
    pixel spacing (1e-3 mm) and matrix."""
    for candidate in candidates or []:
        orientation, spacing, rows, columns = candidate["plane"]
        if (np.allclose(np.abs(orientation), np.abs(geo["orientation"]), atol=1e-3)
                and np.allclose(spacing, geo["spacing"], atol=1e-3) and (rows, columns) == (shape[1], shape[0])):
            return candidate
    return None


def _scaling(data: np.ndarray, signed: bool) -> tuple[np.ndarray, float]:
    top = 32767 if signed else 65535
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    slope = peak / top if peak > 0 else 1.0
    stored = np.round(data / slope)
    stored = np.clip(stored, -32768 if signed else 0, top)
    return stored.astype(np.int16 if signed else np.uint16), slope


def _window(data: np.ndarray, signed: bool) -> tuple[float, float]:
    values = data[data != 0]
    if values.size == 0:
        return 0.0, 1.0
    if signed:
        half = float(np.percentile(np.abs(values), 99.0)) or 1.0
        return 0.0, 2.0 * half
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    if high <= low:
        high = low + 1.0
    return (low + high) / 2.0, high - low


def _ds_number(value: float) -> str:
    """A DICOM DS string (at most 16 characters)."""
    text = f"{value:.10g}"
    if len(text) > 16:
        text = f"{value:.6e}"
    return text


def geometry(affine) -> dict:
    """DICOM plane geometry of a NIfTI affine (see the module docstring).

    Returns
    -------
    dict
        ``orientation`` (6 floats), ``spacing`` [row spacing, column spacing], ``thickness``,
        ``position(k)`` (callable: ImagePositionPatient of frame k), ``normal``.
    """
    lps = _LPS @ np.asarray(affine, dtype=float)
    axes = lps[:3, :3]
    sizes = np.linalg.norm(axes, axis=0)
    if np.any(sizes == 0):
        raise DataError("the image affine has a zero-length axis", hint="check the NIfTI header")
    row_cos, col_cos = axes[:, 0] / sizes[0], axes[:, 1] / sizes[1]
    normal = np.cross(row_cos, col_cos)
    return {
        "orientation": [*row_cos.tolist(), *col_cos.tolist()],
        "spacing": [float(sizes[1]), float(sizes[0])],
        "thickness": float(sizes[2]),
        "position": lambda k: (lps @ np.array([0.0, 0.0, float(k), 1.0]))[:3],
        "normal": normal,
        "slice_step": axes[:, 2],
    }


def affine_from_datasets(datasets) -> np.ndarray:
    """The NIfTI (RAS) affine of a DICOM series, sorted along the slice normal (for checks)."""
    first = datasets[0]
    orientation = np.array([float(v) for v in first.ImageOrientationPatient])
    row_cos, col_cos = orientation[:3], orientation[3:]
    normal = np.cross(row_cos, col_cos)
    ordered = sorted(datasets, key=lambda ds: float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))
    origin = np.array([float(v) for v in ordered[0].ImagePositionPatient])
    if len(ordered) > 1:
        step = (np.array([float(v) for v in ordered[-1].ImagePositionPatient]) - origin) / (len(ordered) - 1)
    else:
        step = normal * float(first.SliceThickness)
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * col_spacing
    lps[:3, 1] = col_cos * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = origin
    return _LPS @ lps


def volume_from_datasets(datasets) -> np.ndarray:
    """The real-world values (stored × slope + intercept) as an (i, j, k) array, slices in position order."""
    first = datasets[0]
    orientation = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(orientation[:3], orientation[3:])
    ordered = sorted(datasets, key=lambda ds: float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient])))
    frames = [ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1.0))
              + float(getattr(ds, "RescaleIntercept", 0.0)) for ds in ordered]
    return np.stack([frame.T for frame in frames], axis=-1)


def export_map(kind: MapKind, nifti_path, out_dir, *, identity: dict | None = None, sop_class: str = "mr",
               series_number: int = 9900, overwrite: bool = False) -> Path:
    """Write one map as a DICOM series in a new folder ``out_dir`` (atomically: a temporary folder renamed).

    Parameters
    ----------
    kind : MapKind
    nifti_path : path-like
        The derivative map (3-D NIfTI).
    out_dir : path-like
        Folder of the series (created; must not exist unless ``overwrite``).
    identity : dict, optional
        :func:`source_identity` of the source study; None makes a new study.
    sop_class : {"mr", "sc"}
        MR Image Storage or Secondary Capture Image Storage.
    series_number : int

    Returns
    -------
    Path
        ``out_dir``.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    nifti_path, out_dir = Path(nifti_path), Path(out_dir)
    image = nib.load(str(nifti_path))
    if len(image.shape) != 3:
        raise DataError(f"{nifti_path} is not a 3-D image (shape {image.shape})", hint="export 3-D maps only")
    data = np.nan_to_num(np.asarray(image.get_fdata(dtype=np.float64)), nan=0.0, posinf=0.0, neginf=0.0)
    if not kind.signed and data.min() < 0:
        data = np.clip(data, 0.0, None)
    stored, slope = _scaling(data, kind.signed)
    center, width = _window(data, kind.signed)
    geo = geometry(image.affine)
    subject = re.search(r"sub-([A-Za-z0-9]+)", nifti_path.name).group(1)
    now = datetime.datetime.now()
    identity = dict(identity or {})
    source = matching_series(identity.pop("_series", None), geo, data.shape)
    source_series = source["uid"] if source else ""
    if source and source["frame"]:
        identity["FrameOfReferenceUID"] = source["frame"]
    if not identity:
        identity = {"PatientName": f"sub-{subject}", "PatientID": f"sub-{subject}", "PatientBirthDate": "",
                    "PatientSex": "", "StudyInstanceUID": generate_uid(), "StudyDate": now.strftime("%Y%m%d"),
                    "StudyTime": now.strftime("%H%M%S"), "StudyID": "", "AccessionNumber": "",
                    "ReferringPhysicianName": ""}
    identity.setdefault("FrameOfReferenceUID", generate_uid())
    series_uid = generate_uid()
    sop_uid = MR_IMAGE_STORAGE if sop_class == "mr" else SECONDARY_CAPTURE_STORAGE
    description = f"qsmapp {kind.title} ({kind.units}) {NOT_FOR_DIAGNOSIS}"[:64]
    if out_dir.exists() and not overwrite:
        raise CannotCreateOutputError(f"{out_dir} exists already", hint="pass --overwrite or choose another folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.qsmapp-tmp", dir=out_dir.parent))
    try:
        for k in range(stored.shape[2]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = sop_uid
            instance_uid = generate_uid()
            meta.MediaStorageSOPInstanceUID = instance_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            for key, value in identity.items():
                setattr(ds, key, value)
            ds.SOPClassUID = sop_uid
            ds.SOPInstanceUID = instance_uid
            ds.Modality = "MR"
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = int(series_number)
            ds.InstanceNumber = k + 1
            ds.SeriesDescription = description
            ds.ImageComments = f"{kind.title} computed by qsmapp {__version__}; research use only, {NOT_FOR_DIAGNOSIS}"[:10240]
            ds.DerivationDescription = f"qsmapp {__version__} {kind.title} from {nifti_path.name}"[:1024]
            ds.ImageType = ["DERIVED", "SECONDARY", kind.key.upper()]
            ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
            ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
            ds.Manufacturer = "qsmapp"
            ds.SoftwareVersions = str(__version__)
            ds.BurnedInAnnotation = "NO"
            if sop_class == "sc":
                ds.ConversionType = "WSD"
            else:
                ds.ScanningSequence = "GR"
                ds.SequenceVariant = "NONE"
                ds.ScanOptions = ""
                ds.MRAcquisitionType = "3D"
                ds.EchoTime = ""
                ds.RepetitionTime = ""
                ds.EchoTrainLength = ""
            if source_series:
                reference = Dataset()
                reference.SeriesInstanceUID = source_series
                ds.ReferencedSeriesSequence = [reference]
            position = geo["position"](k)
            ds.ImagePositionPatient = [_ds_number(v) for v in position]
            ds.ImageOrientationPatient = [_ds_number(v) for v in geo["orientation"]]
            ds.PixelSpacing = [_ds_number(v) for v in geo["spacing"]]
            ds.SliceThickness = _ds_number(geo["thickness"])
            ds.SpacingBetweenSlices = _ds_number(geo["thickness"])
            ds.SliceLocation = _ds_number(float(np.dot(geo["normal"], position)))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            frame = np.ascontiguousarray(stored[:, :, k].T)
            ds.Rows, ds.Columns = int(frame.shape[0]), int(frame.shape[1])
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1 if kind.signed else 0
            ds.RescaleSlope = _ds_number(slope)
            ds.RescaleIntercept = "0"
            ds.RescaleType = "PPM" if kind.key == "qsm" else "US"
            ds.WindowCenter = _ds_number(center)
            ds.WindowWidth = _ds_number(width)
            ds.WindowCenterWidthExplanation = f"{kind.title} {kind.units}"
            ds.LossyImageCompression = "00"
            ds.PixelData = frame.tobytes()
            pydicom.dcmwrite(str(temp / f"IM_{k + 1:04d}.dcm"), ds, enforce_file_format=True)
        for path in temp.iterdir():
            os.chmod(path, 0o644)
        os.chmod(temp, 0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(temp, out_dir)
    except OSError as exc:
        raise CannotCreateOutputError(f"cannot write {out_dir}: {exc.strerror or exc}",
                                      hint="check the permissions and the free space") from None
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    LOGGER.info("wrote %s (%d slices, %s, slope %.4g)", out_dir, stored.shape[2], description, slope)
    return out_dir
