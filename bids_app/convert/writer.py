"""Write a conversion plan as BIDS: images, sidecars, dataset_description.json, README, participants.tsv.

Every file is written atomically (temporary name, then rename); existing images are never replaced
unless asked (``overwrite``).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..derivatives.atomic import atomic_path, atomic_write_text
from ..errors import CannotCreateOutputError, DataError
from .phase import detect_phase_scaling, to_radians
from .plan import Plan, Target

LOGGER = logging.getLogger("qsmapp")
BIDS_VERSION = "1.10.0"
#: dcm2niix sidecar fields that identify the conversion, not the acquisition; kept as they are.
_DROP = ("BidsGuess",)


def _json(data) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def _load_image(series):
    image = nib.load(str(series.nifti))
    return image, np.asanyarray(image.dataobj)


def target_image(target: Target, *, phase_units: str = "rad"):
    """The image to write for ``target`` and the sidecar additions.

    Returns
    -------
    (nibabel image or Path, dict)
        A Path means "copy this file byte for byte" (the converted image unchanged).
    """
    extra = {}
    if target.operation == "copy":
        return target.sources[0].nifti, extra
    if target.operation == "phase":
        series = target.sources[0]
        image, raw = _load_image(series)
        scaling = detect_phase_scaling(raw, manufacturer=str(series.get("Manufacturer", "")))
        extra["Units"] = scaling.units
        extra["PhaseConversion"] = scaling.description
        if scaling.convention in ("radians", "unknown") or phase_units == "keep":
            if phase_units == "keep" and scaling.convention not in ("radians", "unknown"):
                extra["Units"] = "arbitrary"
                extra["PhaseConversion"] = f"kept as converted ({scaling.convention}; qsmapp rescales it)"
            return series.nifti, extra
        data = to_radians(raw, scaling)
        out = nib.Nifti1Image(data, image.affine, image.header)
        out.set_data_dtype(np.float32)
        out.header.set_slope_inter(1.0, 0.0)
        return out, extra
    if target.operation in ("complex-mag", "complex-phase"):
        real_series, imag_series = target.sources
        real_image, real = _load_image(real_series)
        _, imag = _load_image(imag_series)
        if real.shape != imag.shape:
            raise DataError(f"real {real_series.nifti} and imaginary {imag_series.nifti} differ in shape "
                            f"({real.shape} vs {imag.shape})", hint="check that they are one acquisition")
        z = real.astype(np.float64) + 1j * imag.astype(np.float64)
        if target.operation == "complex-mag":
            data = np.abs(z).astype(np.float32)
            extra["ImageComments"] = "magnitude computed from the real and imaginary images"
        else:
            data = np.angle(z).astype(np.float32)
            extra["Units"] = "rad"
            extra["PhaseConversion"] = "phase = angle(real + i imaginary), radians"
        out = nib.Nifti1Image(data, real_image.affine, real_image.header)
        out.set_data_dtype(np.float32)
        out.header.set_slope_inter(1.0, 0.0)
        return out, extra
    raise ValueError(f"unknown operation {target.operation}")


def check_targets(plan: Plan, bids_dir: Path, *, overwrite: bool) -> None:
    """Refuse (exit 73) when an image to write exists already and ``overwrite`` is off."""
    if overwrite:
        return
    existing = [t.path for t in plan.targets if (bids_dir / f"{t.path}.nii.gz").exists()]
    if existing:
        raise CannotCreateOutputError(f"{bids_dir / existing[0]}.nii.gz exists already"
                                      + (f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""),
                                      hint="pass --overwrite, or choose another --participant-label/--session")


def write_dataset_files(bids_dir: Path, subject: str, *, dcm2niix: str | None) -> None:
    """dataset_description.json and README when absent; the subject added to participants.tsv."""
    description = bids_dir / "dataset_description.json"
    if not description.exists():
        generated = [{"Name": "qsmapp-convert", "Version": __version__}]
        if dcm2niix:
            generated.append({"Name": "dcm2niix", "Version": dcm2niix})
        atomic_write_text(description, _json({"Name": bids_dir.resolve().name, "BIDSVersion": BIDS_VERSION,
                                              "DatasetType": "raw", "GeneratedBy": generated}))
    readme = bids_dir / "README"
    if not readme.exists() and not any(bids_dir.glob("README*")):
        atomic_write_text(readme, "GRE (and T1w) images converted to BIDS by qsmapp-convert.\n")
    participants = bids_dir / "participants.tsv"
    rows = participants.read_text().splitlines() if participants.exists() else ["participant_id"]
    if not any(r.split("\t")[0] == f"sub-{subject}" for r in rows[1:]):
        columns = rows[0].count("\t")
        rows.append("\t".join([f"sub-{subject}"] + ["n/a"] * columns))
        atomic_write_text(participants, "\n".join(rows) + "\n")


def write_plan(plan: Plan, bids_dir, *, subject: str, phase_units: str = "rad", overwrite: bool = False,
               dcm2niix: str | None = None) -> list:
    """Write every target of ``plan`` under ``bids_dir``; return the images written.

    Raises
    ------
    CannotCreateOutputError
        An image exists (without ``overwrite``) or a file cannot be written (exit 73).
    """
    bids_dir = Path(bids_dir)
    check_targets(plan, bids_dir, overwrite=overwrite)
    written = []
    try:
        bids_dir.mkdir(parents=True, exist_ok=True)
        for target in plan.targets:
            image, extra = target_image(target, phase_units=phase_units)
            path = bids_dir / f"{target.path}.nii.gz"
            with atomic_path(path) as temp:
                if isinstance(image, Path):
                    if image.name.endswith(".nii.gz"):
                        shutil.copyfile(image, temp)
                    else:
                        nib.save(nib.load(str(image)), str(temp))
                else:
                    nib.save(image, str(temp))
            sidecar = {k: v for k, v in target.sidecar.items() if k not in _DROP}
            sidecar.update(extra)
            if target.part == "phase" and "Units" not in sidecar:
                sidecar["Units"] = "rad"
            atomic_write_text(bids_dir / f"{target.path}.json", _json(sidecar))
            LOGGER.info("wrote %s", path.relative_to(bids_dir))
            written.append(path)
        write_dataset_files(bids_dir, subject, dcm2niix=dcm2niix)
    except OSError as exc:
        raise CannotCreateOutputError(f"cannot write into {bids_dir}: {exc.strerror or exc}",
                                      hint="check the permissions and the free space") from None
    return written
