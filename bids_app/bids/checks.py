"""Up-front, header-level checks of an acquisition unit (SPEC §3).

These run before any processing, on headers and sidecars only (cheap), so that a bad unit is reported
with one clear message naming the file and the fix, and ``--dry-run`` can show the plan. Data-level
checks (truncated files, non-finite values, phase scaling) happen when the data are loaded
(:mod:`bids_app.bids.loading`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..algorithms.geometry import b0_direction, obliquity_degrees, voxel_sizes
from ..errors import DataError, NoInputError
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
    for path in unit.files():
        _check_file_size(path, headers[path])
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
        return nib.load(str(path))
    except Exception as exc:
        raise DataError(
            f"cannot read {path}: {exc}",
            hint="the file is not a valid NIfTI image (corrupt or truncated?); re-export it",
        ) from None


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


def _check_file_size(path: Path, image) -> None:
    """An uncompressed .nii must be long enough for its header's data block (truncation check)."""
    if path.name.endswith(".gz"):
        return  # checked when decompressed (loading)
    header = image.header
    expected = int(header["vox_offset"]) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    actual = os.path.getsize(path)
    if actual < expected:
        raise DataError(
            f"{path} is truncated ({actual} bytes, its header needs {expected})",
            hint="the file is incomplete (interrupted copy?); copy or re-export it",
        )
