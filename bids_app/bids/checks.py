"""Up-front, header-level checks of an acquisition unit (BIDS: dims, affines, EchoTime, finite values).

These run before any processing, on headers and sidecars only (cheap), so that a bad unit is reported
with one clear message naming the file and the fix, and ``--dry-run`` can show the plan. Data-level
checks (truncated files, non-finite values, phase scaling) happen when the data are loaded
(:mod:`bids_app.bids.loading`).
"""

from __future__ import annotations

import errno
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..algorithms.geometry import b0_direction, obliquity_degrees, voxel_sizes
from ..errors import DataError, NoInputError

# deflate cannot compress better than about 1032:1, so a .nii.gz whose header declares more data than
# this many times its own size is corrupt (or a decompression bomb): refused before anything is read.
MAX_GZIP_RATIO = 1100
from .discovery import AcquisitionUnit, Echo

LOGGER = logging.getLogger(__name__)
_AFFINE_TOLERANCE_MM = 1e-3


@dataclass
class UnitInfo:
    """What the header-level checks established about a unit."""

    unit: AcquisitionUnit
    shape: tuple
    affine: np.ndarray
    voxel_size: tuple
    echo_times: list
    field_strength: float | None
    b0_dir: tuple
    obliquity: float
    notes: list = field(default_factory=list)

    @property
    def n_echoes(self) -> int:
        return len(self.echo_times)


def check_unit(unit: AcquisitionUnit, *, needs_phase: bool, needs_field_strength: bool,
               b0_strength_override: float | None = None) -> UnitInfo:
    """Validate headers and sidecars of ``unit``; raise :class:`DataError` (exit 65) on bad data."""
    if unit.error is not None:  # found at discovery
        raise unit.error
    headers = {path: _load_header(path) for path in unit.files()}
    _expand_echo_series(unit, headers)
    notes = []
    if needs_phase and not unit.has_phase:
        raise NoInputError(
            f"{unit.name}: no phase images (part-phase) found, so QSM is impossible",
            hint="add the phase images, or request only --outputs t2s r2s (swi needs phase too)",
        )
    if not unit.has_magnitude:
        notes.append("no magnitude images: masking uses the phase quality only; T2*/R2*/SWI unavailable")
    for path, image in headers.items():  # each file on its own first: its message names it alone
        _check_file_size(path, image)
        _check_geometry(path, image)
    reference_path = unit.files()[0]
    reference = headers[reference_path]
    shape = _spatial_shape(reference, reference_path)
    affine = reference.affine
    for path, image in headers.items():
        this_shape = _spatial_shape(image, path)
        if this_shape != shape:
            raise DataError(
                f"{path.name} has image dimensions {this_shape} but {reference_path.name} has {shape}",
                hint="all echoes and parts (magnitude/phase) of one acquisition must share one grid; "
                "re-export the series (e.g. with dcm2niix) or remove the stray file",
            )
        if not np.allclose(image.affine, affine, atol=_AFFINE_TOLERANCE_MM):
            raise DataError(
                f"{path.name} has a different position/orientation (affine) than {reference_path.name}",
                hint="all echoes and parts of one acquisition must share one affine; re-export the series",
            )
    echo_times = _check_echo_times(unit)
    field_strength = _field_strength(unit, needs_field_strength, b0_strength_override, notes)
    return UnitInfo(
        unit=unit,
        shape=shape,
        affine=np.asarray(affine, dtype=np.float64),
        voxel_size=voxel_sizes(affine),
        echo_times=echo_times,
        field_strength=field_strength,
        b0_dir=b0_direction(affine),
        obliquity=obliquity_degrees(affine),
        notes=notes,
    )


def _load_header(path: Path):
    try:
        with warnings.catch_warnings():  # nibabel's own warnings are replaced by the checks below
            warnings.simplefilter("ignore")
            return nib.load(str(path))
    except PermissionError:
        raise DataError(f"cannot read {path}: permission denied",
                        hint="make the file readable by the user qsmapp runs as (in a container: -u)") from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.ELOOP):
            raise DataError(f"cannot read {path}: {exc.strerror}",
                            hint="fix the file's permissions or link; it must be a readable NIfTI file") from None
        raise DataError(f"cannot read {path}: {exc}",
                        hint="the file is not a valid NIfTI image (corrupt or truncated?); re-export it") from None
    except Exception as exc:
        raise DataError(
            f"cannot read {path}: {exc}",
            hint="the file is not a valid NIfTI image (corrupt or truncated?); re-export it",
        ) from None


def _raw_header(path: Path, header):
    """The header as stored: nibabel's loader silently "fixes" some fields (zero pixdim → 1)."""
    try:
        with nib.openers.ImageOpener(str(path)) as handle:
            return type(header).from_fileobj(handle, check=False)
    except Exception:  # the header was read once already; fall back to that reading
        return header


def _check_geometry(path: Path, image) -> None:
    """The voxel-to-world geometry must be usable: finite, non-singular, no zero voxel size.

    nibabel silently turns a zero pixdim into 1 mm (when the affine comes from the qform or the pixdims)
    and carries NaN into the affine; both would give a wrong B0 direction and a wrong scale.
    """
    header = image.header
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        which = "sform" if int(header.get("sform_code", 0)) > 0 else "qform"
        raise DataError(f"{path} has a non-finite (NaN/inf) {which} affine in its header",
                        hint="the header is corrupt: re-export the image (e.g. with dcm2niix)")
    if int(header.get("sform_code", 0)) == 0 and "pixdim" in header:
        pixdim = np.asarray(_raw_header(path, header)["pixdim"][1:4], dtype=np.float64)
        if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
            raise DataError(f"{path} has voxel sizes (pixdim) {pixdim.tolist()} with no sform to fall back on",
                            hint="a zero voxel size is invalid: re-export the image, or set the voxel sizes "
                                 "(e.g. nibabel header.set_zooms)")
    sizes = np.asarray(voxel_sizes(affine))
    if np.any(sizes <= 0) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{path} has a singular affine (voxel sizes {sizes.tolist()})",
                        hint="the header geometry is invalid: re-export the image")


def _spatial_shape(image, path) -> tuple:
    shape = tuple(int(n) for n in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise DataError(
            f"{path.name} has shape {shape}; expected one 3-D volume per echo and part",
            hint="split 4-D echo series into echo-<n> files, or give EchoTime as a list in the sidecar",
        )
    return shape


def _expand_echo_series(unit: AcquisitionUnit, headers: dict) -> None:
    """A single 4-D file holding all echoes (EchoTime a list) becomes one Echo per volume."""
    if len(unit.echoes) != 1 or not isinstance(unit.echoes[0].echo_time, list):
        return
    echo = unit.echoes[0]
    times = echo.echo_time
    path = echo.magnitude or echo.phase
    image = headers[path]
    if len(image.shape) != 4 or image.shape[3] != len(times):
        raise DataError(
            f"{path.name}: EchoTime lists {len(times)} echoes but the image has shape {image.shape}",
            hint="EchoTime must have one entry per volume of a 4-D echo series",
        )
    unit.echoes = [
        Echo(index=i + 1, echo_time=t, magnitude=echo.magnitude, phase=echo.phase,
             magnitude_meta=echo.magnitude_meta, phase_meta=echo.phase_meta, volume=i)
        for i, t in enumerate(times)
    ]
    for path in list(headers):
        headers[path] = headers[path].slicer[..., 0]


def _sidecar_name(echo: Echo) -> str:
    path = echo.magnitude or echo.phase
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)] + ".json"
    return name


def _check_echo_times(unit: AcquisitionUnit) -> list:
    times = []
    for echo in unit.echoes:
        value = echo.echo_time
        if value is None:
            raise DataError(
                f"EchoTime is missing for {_sidecar_name(echo)}",
                hint="add \"EchoTime\" (seconds) to the JSON sidecar of every echo (or an inherited sidecar)",
            )
        if not isinstance(value, float):
            raise DataError(f"EchoTime {value!r} in {_sidecar_name(echo)} is not a number (seconds)")
        if not 0 < value < 1:
            hint = "BIDS EchoTime is in seconds; this looks like milliseconds" if value >= 1 else "must be positive"
            raise DataError(f"EchoTime {value} in {_sidecar_name(echo)} is not a valid echo time", hint=hint)
        times.append(value)
    for a, b in zip(times, times[1:]):
        if not b > a:
            raise DataError(
                f"{unit.name}: echo times {times} are not strictly increasing with the echo index",
                hint="check the echo-<n> entities and the EchoTime of each sidecar",
            )
    return times


def _field_strength(unit, needed, override, notes) -> float | None:
    if override is not None:
        notes.append(f"field strength {override} T from --b0-strength")
        return float(override)
    value = unit.metadata.get("MagneticFieldStrength")
    if value is None:
        if needed:
            raise DataError(
                f"MagneticFieldStrength is missing for {unit.name} ({_sidecar_name(unit.echoes[0])})",
                hint="add \"MagneticFieldStrength\" (tesla) to the sidecar, or pass --b0-strength 3",
            )
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DataError(f"MagneticFieldStrength {value!r} of {unit.name} is not a number (tesla)") from None
    if not 0 < value <= 30:
        raise DataError(f"MagneticFieldStrength {value} of {unit.name} is not a plausible field (tesla)")
    return value


def data_bytes(image) -> int:
    """Bytes of image data the header declares (voxels × bytes per voxel), without reading any."""
    header = image.header
    return int(np.prod([int(n) for n in header.get_data_shape()], dtype=object)) * header.get_data_dtype().itemsize


def _check_file_size(path: Path, image) -> None:
    """The file must be able to hold the data its header declares, checked before anything is allocated.

    An uncompressed .nii must be at least that long (truncation); a .nii.gz cannot hold more than
    :data:`MAX_GZIP_RATIO` times its size (a corrupt header, or a decompression bomb).
    """
    header = image.header
    actual = os.path.getsize(path)
    if path.name.endswith(".gz"):
        declared = data_bytes(image)
        if declared > MAX_GZIP_RATIO * max(actual, 1):
            shape = "x".join(str(int(n)) for n in header.get_data_shape())
            raise DataError(
                f"{path}: its header declares {shape} voxels ({declared / 1e9:.3g} GB of data), more than a "
                f"{actual / 1e6:.3g} MB gzip file can hold",
                hint="the header is corrupt (or the file truncated); re-export the image",
            )
        return  # the rest is checked when decompressed (loading)
    expected = int(header["vox_offset"]) + data_bytes(image)
    if actual < expected:
        raise DataError(
            f"{path} is truncated ({actual} bytes, its header needs {expected})",
            hint="the file is incomplete (interrupted copy?); copy or re-export it",
        )
