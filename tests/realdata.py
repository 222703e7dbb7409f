"""Where the shared reference data are (``../shared/data`` or ``$QSMAPP_SHARED_DATA``), and loaders of the
small real multi-echo GRE patches in them (ROMEO.jl / CLEARSWI.jl test data)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bids_app.algorithms.phase import scale_to_radians

SHARED_DATA = Path(os.environ.get("QSMAPP_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def load_small_gre(folder):
    """(phase in radians, magnitude, voxel size mm) of ``<folder>/test/data/small``, 3 echoes last;
    skips the test when the data are absent."""
    base = SHARED_DATA / folder / "test" / "data" / "small"
    if not (base / "Phase.nii").exists() or not (base / "Mag.nii").exists():
        pytest.skip(f"shared data {folder} not available at {base}")
    nib = pytest.importorskip("nibabel")
    mag_image = nib.load(str(base / "Mag.nii"))
    mag = mag_image.get_fdata(dtype=np.float32)
    phase = scale_to_radians(nib.load(str(base / "Phase.nii")).get_fdata(dtype=np.float32))
    return phase, mag, tuple(float(v) for v in mag_image.header.get_zooms()[:3])
