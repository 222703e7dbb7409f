"""``--use-existing-masks``: brain masks from a derivatives folder of the input dataset."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import DataError

LOGGER = logging.getLogger("qsmapp")


def find_existing_mask(bids_dir, unit, pattern="*") -> Path | None:
    """The alphabetically first ``*mask.nii[.gz]`` of the unit's subject/session in ``derivatives/<pattern>``."""
    session = f"ses-{unit.session}" if unit.session is not None else None
    candidates = []
    for folder in sorted(Path(bids_dir, "derivatives").glob(pattern)):
        anat = folder / f"sub-{unit.subject}" / (session or "") / "anat"
        if anat.is_dir():
            candidates += sorted(p for p in anat.glob("*mask.nii*") if not p.name.startswith("."))
    prefer = [p for p in candidates if p.name.startswith(unit.name + "_")]
    chosen = (prefer or candidates or [None])[0]
    return chosen


def load_existing_mask(path, shape, affine) -> np.ndarray:
    image = nib.load(str(path))
    if tuple(image.shape[:3]) != tuple(shape) or not np.allclose(image.affine, affine, atol=1e-3):
        raise DataError(f"existing mask {path} is not on the GRE grid {tuple(shape)}",
                        hint="resample it to the GRE images, or drop --use-existing-masks")
    return np.asanyarray(image.dataobj) > 0
