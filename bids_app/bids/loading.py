"""Load the images of a checked unit into float32 arrays, with data-level checks."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from ..errors import DataError
from .checks import UnitInfo

LOGGER = logging.getLogger(__name__)


@dataclass
class GreData:
    """Multi-echo GRE data of a unit; arrays are (X, Y, Z, echoes), float32."""

    magnitude: np.ndarray | None
    phase: np.ndarray | None  # radians in [-π, π)
    notes: list


def load_volume(path, volume=None) -> np.ndarray:
    """Read one 3-D volume as float32; a truncated or corrupt file raises :class:`DataError`."""
    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise DataError(
            f"cannot read the image data of {path}: {exc}",
            hint="the file is truncated or corrupt; copy or re-export it",
        ) from None
    if data.ndim == 4:
        data = data[..., volume or 0]
    return data


def _stack(info: UnitInfo, part: str) -> tuple[np.ndarray, list]:
    volumes, raw_dtypes = [], []
    for echo in info.unit.echoes:
        path = getattr(echo, part)
        data = load_volume(path, echo.volume)
        raw_dtypes.append(data.dtype)
        volumes.append(np.asarray(data, dtype=np.float32))
    return np.stack(volumes, axis=-1), raw_dtypes


def _replace_non_finite(array: np.ndarray, label: str, info: UnitInfo, notes: list) -> None:
    bad = ~np.isfinite(array)
    count = int(bad.sum())
    if count == 0:
        return
    if count == array.size:
        raise DataError(f"{info.unit.name}: every {label} voxel is NaN/inf", hint="re-export the images")
    array[bad] = 0.0
    message = f"{count} non-finite {label} voxels set to 0 (excluded from masks)"
    LOGGER.warning("%s: %s", info.unit.name, message)
    notes.append(message)


def load_gre(info: UnitInfo, *, need_magnitude=True, need_phase=True) -> GreData:
    """Load magnitude and phase of ``info.unit`` as (X, Y, Z, E) float32 arrays."""
    from ..algorithms.phase import scale_to_radians

    notes: list = []
    magnitude = phase = None
    if need_magnitude and info.unit.has_magnitude:
        magnitude, _ = _stack(info, "magnitude")
        _replace_non_finite(magnitude, "magnitude", info, notes)
        if magnitude.min() < 0:
            notes.append("negative magnitude values found; their absolute value is used")
            np.abs(magnitude, out=magnitude)
    if need_phase and info.unit.has_phase:
        phase, dtypes = _stack(info, "phase")
        _replace_non_finite(phase, "phase", info, notes)
        units = str(info.unit.echoes[0].phase_meta.get("Units", "")).lower()
        in_radians = np.all(np.abs(phase) <= np.pi + 1e-3) and not np.issubdtype(dtypes[0], np.integer)
        if not in_radians or units == "arbitrary":
            low, high = float(phase.min()), float(phase.max())
            notes.append(f"phase in arbitrary units ({low:g}..{high:g}) rescaled linearly to [-pi, pi)")
        # One linear map for all echoes: they share the scanner's integer range.
        phase = np.asarray(scale_to_radians(phase), dtype=np.float32)
    return GreData(magnitude=magnitude, phase=phase, notes=notes)
