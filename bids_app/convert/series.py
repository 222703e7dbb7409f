"""One converted image (NIfTI + JSON sidecar) and what it is."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import DataError

#: kinds of image
MAGNITUDE, PHASE, REAL, IMAGINARY = "mag", "phase", "real", "imag"
PHASEDIFF, FIELDMAP_HZ, T1W, OTHER = "phasediff", "fieldmap-hz", "T1w", "other"
_T1_WORDS = re.compile(r"(?i)(mp-?rage|mp2rage|bravo|tfl3d|spgr|(?<![a-z0-9])t1w?(?![a-z0-9]))")


def _nifti_beside(sidecar: Path) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        candidate = sidecar.with_name(sidecar.name[: -len(".json")] + ext)
        if candidate.is_file():
            return candidate
    return None


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii", ".json"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


@dataclass
class Series:
    """A converted image and its metadata.

    Attributes
    ----------
    name : str
        File stem (dcm2niix's output name, or the NIfTI's).
    sidecar : dict
        The JSON sidecar (dcm2niix's, or ``{}``), with any rule ``sidecar_changes`` applied.
    nifti : Path or None
        The image (None in a dry run of DICOM input, where only sidecars are made).
    """

    name: str
    sidecar: dict
    nifti: Path | None = None
    sidecar_path: Path | None = None
    notes: list = field(default_factory=list)

    @classmethod
    def from_sidecar(cls, path) -> "Series":
        path = Path(path)
        try:
            sidecar = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read the JSON sidecar {path}: {exc}", hint="fix or remove the file") from None
        return cls(name=_stem(path), sidecar=sidecar, nifti=_nifti_beside(path), sidecar_path=path)

    @classmethod
    def from_nifti(cls, path) -> "Series":
        path = Path(path)
        sidecar_path = path.with_name(_stem(path) + ".json")
        if sidecar_path.is_file():
            series = cls.from_sidecar(sidecar_path)
            series.nifti = path
            return series
        return cls(name=_stem(path), sidecar={}, nifti=path)

    # -- metadata -------------------------------------------------------------------------------
    def get(self, key, default=None):
        return self.sidecar.get(key, default)

    @property
    def image_type(self) -> list:
        value = self.sidecar.get("ImageType", [])
        if isinstance(value, str):
            value = re.split(r"[\\/]", value)
        return [str(v).upper() for v in value]

    @property
    def series_number(self) -> int:
        try:
            return int(self.sidecar.get("SeriesNumber", 0))
        except (TypeError, ValueError):
            return 0

    @property
    def echo_time(self) -> float | None:
        value = self.sidecar.get("EchoTime")
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    @property
    def description(self) -> str:
        return str(self.sidecar.get("SeriesDescription") or self.sidecar.get("ProtocolName") or self.name)

    @property
    def protocol(self) -> str:
        return str(self.sidecar.get("ProtocolName") or self.sidecar.get("SeriesDescription") or "")

    @property
    def label(self) -> str:
        """How the log names it: ``series 2001 'fcMRI Field Mapping' (2001_..._e1_ph)``."""
        number = f"series {self.series_number} " if self.sidecar.get("SeriesNumber") is not None else ""
        return f"{number}'{self.description}' ({self.name})"

    # -- classification -------------------------------------------------------------------------
    @cached_property
    def kind(self) -> str:
        """``mag``, ``phase``, ``real``, ``imag``, ``phasediff``, ``fieldmap-hz``, ``T1w`` or ``other``.

        Decided once (after any rule ``sidecar_changes``), while the converted image exists.
        """
        types = self.image_type
        name = self.name.lower()
        units = str(self.sidecar.get("Units", "")).lower()
        if "FIELDMAPHZ" in types or units == "hz" or name.endswith("_fieldmaphz") or "B0 MAP" in types:
            return FIELDMAP_HZ
        if "REAL" in types or "R" in types[2:4] or name.endswith("_real"):
            return REAL
        if "IMAGINARY" in types or "I" in types[2:4] or name.endswith(("_imaginary", "_imag")):
            return IMAGINARY
        is_phase = "PHASE" in types or "P" in types[2:4] or "PHASE MAP" in types or name.endswith(("_ph", "_phase"))
        if is_phase:
            if "EchoTime1" in self.sidecar and "EchoTime2" in self.sidecar:
                return PHASEDIFF
            return PHASE
        if self._looks_t1w():
            return T1W
        if self._looks_gre_magnitude():
            return MAGNITUDE
        return OTHER

    def _looks_t1w(self) -> bool:
        guess = self.sidecar.get("BidsGuess")
        if isinstance(guess, list) and len(guess) == 2 and guess[0] == "anat" and str(guess[1]).endswith("_T1w"):
            return True
        text = f"{self.sidecar.get('SeriesDescription', '')} {self.sidecar.get('ProtocolName', '')}"
        return bool(_T1_WORDS.search(text)) and "SWI" not in text.upper() and self.volumes == 1

    def _looks_gre_magnitude(self) -> bool:
        if not self.sidecar:
            return False
        types = self.image_type
        if "DERIVED" in types[:1] or any(t in types for t in ("SWI", "MNIP", "MIP", "PROJECTION IMAGE", "ADC")):
            return False
        sequence = str(self.sidecar.get("ScanningSequence", "")).upper()
        if "EP" in sequence or "IR" in sequence.split("\\"):
            return False
        return "GR" in sequence and self.echo_time is not None and self.volumes == 1

    @cached_property
    def volumes(self) -> int:
        """Volumes of the 4-D image (1 for 3-D); from the sidecar when the image is absent (dry run)."""
        if self.nifti is not None:
            import nibabel as nib

            shape = nib.load(str(self.nifti)).shape
            return int(shape[3]) if len(shape) > 3 else 1
        return 1

    def reason_not_usable(self) -> str | None:
        """For a field-map-only image, the one line saying why it cannot be used for multi-echo QSM."""
        kind = self.kind
        if kind == PHASEDIFF:
            te1, te2 = self.sidecar.get("EchoTime1"), self.sidecar.get("EchoTime2")
            return (f"{self.label}: phase-difference field map (EchoTime1 {float(te1) * 1e3:.3g} ms, EchoTime2 "
                    f"{float(te2) * 1e3:.3g} ms), not the phase of each echo: not usable for multi-echo QSM; skipped "
                    "(reconstruct the per-echo phase on the scanner)")
        if kind == FIELDMAP_HZ:
            return (f"{self.label}: scanner B0 field map in Hz, not the phase of each echo: not usable for multi-echo "
                    "QSM; skipped (export the per-echo magnitude and phase, or real and imaginary, images)")
        return None
