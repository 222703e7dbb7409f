"""Load the images of a checked unit into float32 arrays, with data-level checks."""

from __future__ import annotations

import logging
import warnings
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
        with warnings.catch_warnings():  # the header checks already reported what matters
            warnings.simplefilter("ignore")
            image = nib.load(str(path))
            data = np.asanyarray(image.dataobj)
    except PermissionError:
        raise DataError(f"cannot read {path}: permission denied",
                        hint="make the file readable by the user qsmapp runs as (in a container: -u)") from None
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
    notes: list = []
    magnitude = phase = None
    if need_magnitude and info.unit.has_magnitude:
        magnitude, _ = _stack(info, "magnitude")
        _replace_non_finite(magnitude, "magnitude", info, notes)
        if not np.any(magnitude):
            raise DataError(f"{info.unit.name}: every magnitude voxel is 0 ({info.unit.echoes[0].magnitude.name} "
                            "and the other echoes)", hint="the magnitude images are blank; re-export them")
        if magnitude.min() < 0:
            notes.append("negative magnitude values found; their absolute value is used")
            np.abs(magnitude, out=magnitude)
    if need_phase and info.unit.has_phase:
        phase, dtypes = _stack(info, "phase")
        _replace_non_finite(phase, "phase", info, notes)
        if not np.any(phase):
            path = info.unit.echoes[0].phase
            raise DataError(f"{info.unit.name}: every phase voxel is 0 ({path.name} and the other echoes)",
                            hint="the phase images hold no phase (a blank export?); re-export them, or request "
                                 "only magnitude outputs: --outputs t2s r2s")
        phase = _phase_to_radians(phase, dtypes, info, notes)
    return GreData(magnitude=magnitude, phase=phase, notes=notes)


def _phase_to_radians(phase: np.ndarray, dtypes: list, info: UnitInfo, notes: list) -> np.ndarray:
    """Phase of every echo in radians; one linear map for all echoes when they share their units.

    Echoes of one series share the scanner's encoding, so they are normally rescaled together. When
    some echoes are in radians and others are not (files from different exports), one map for all
    would squash the radian echoes to nearly nothing; each echo is then rescaled on its own, with a note
    per echo, so the mix is never silent.
    """
    from ..algorithms.phase import scale_to_radians

    echoes = info.unit.echoes
    declared = [str(e.phase_meta.get("Units", "")).lower() for e in echoes]
    radians = [bool(np.all(np.abs(phase[..., i]) <= np.pi + 1e-3)) and not np.issubdtype(dtypes[i], np.integer)
               and declared[i] != "arbitrary" for i in range(phase.shape[-1])]
    if all(radians):
        return np.asarray(scale_to_radians(phase), dtype=np.float32)
    if not any(radians):
        low, high = float(phase.min()), float(phase.max())
        notes.append(f"phase in arbitrary units ({low:g}..{high:g}) rescaled linearly to [-pi, pi)")
        return np.asarray(scale_to_radians(phase), dtype=np.float32)
    out = np.empty(phase.shape, dtype=np.float32)
    for i, echo in enumerate(echoes):
        volume = phase[..., i]
        if radians[i]:
            out[..., i] = scale_to_radians(volume, assume_radians=True)
            continue
        low, high = float(volume.min()), float(volume.max())
        note = (f"echo {echo.index} phase ({echo.phase.name}) is in arbitrary units ({low:g}..{high:g}) while "
                f"other echoes are in radians: rescaled to [-pi, pi) on its own; check the export of this echo")
        LOGGER.warning("%s: %s", info.unit.name, note)
        notes.append(note)
        out[..., i] = scale_to_radians(volume, assume_radians=False)
    return out
