"""Fixtures of the conversion tests: tiny synthetic scanner exports (pydicom) and where the real ones are."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from tests.realdata import SHARED_DATA

from .dicom_factory import gre_signal, write_series

ECHO_TIMES = (0.005, 0.010, 0.015)
MAG_TYPE = ["ORIGINAL", "PRIMARY", "M", "ND"]
PHASE_TYPE = ["ORIGINAL", "PRIMARY", "P", "ND"]
PHILIPS_GRE = SHARED_DATA / "dcm-qa-philips-gre"
FMAP = SHARED_DATA / "dcm-qa-fmap"


def siemens_phase_signed(phase):
    """Stored integers of Siemens −4096..4094 phase (RescaleSlope 2, Intercept −4096): 0..4095."""
    return np.round((phase + np.pi) / (2 * np.pi) * 4096).astype(int) % 4096


@pytest.fixture
def siemens_export(tmp_path):
    """Siemens-style 3-echo GRE: magnitude series 5, phase series 6 (−4096..4094), plus a T1w; and the truth."""
    root = tmp_path / "dicom"
    mags, phases = gre_signal(ECHO_TIMES)
    write_series(root, [np.round(m).astype(int) for m in mags], series_number=5, description="gre_qsm",
                 image_type=MAG_TYPE, echo_times=ECHO_TIMES)
    write_series(root, [siemens_phase_signed(p) for p in phases], series_number=6, description="gre_qsm",
                 image_type=PHASE_TYPE, echo_times=ECHO_TIMES, slope=2, intercept=-4096)
    t1 = np.full((12, 10, 6), 500, dtype=int)
    write_series(root, [t1], series_number=2, description="t1_mprage_sag", image_type=MAG_TYPE, echo_times=[0.0029],
                 extra={"ScanningSequence": "GR\\IR", "SequenceName": "*tfl3d1_16ns", "InversionTime": "0.9"})
    return root, mags, phases


@pytest.fixture
def split_echo_export(tmp_path):
    """GE-style: one series per echo (magnitude and phase, phase in milliradians, signed)."""
    root = tmp_path / "dicom"
    mags, phases = gre_signal(ECHO_TIMES[:2], seed=1)
    for index, (m, p, te) in enumerate(zip(mags, phases, ECHO_TIMES[:2])):
        write_series(root, [np.round(m).astype(int)], series_number=10 + 2 * index, description="swan echo",
                     protocol="SWAN", image_type=["ORIGINAL", "PRIMARY", "OTHER"], echo_times=[te],
                     manufacturer="GE MEDICAL SYSTEMS")
        write_series(root, [np.round(p * 1000).astype(int)], series_number=11 + 2 * index, description="swan echo",
                     protocol="SWAN", image_type=["ORIGINAL", "PRIMARY", "P", "PHASE"], echo_times=[te],
                     manufacturer="GE MEDICAL SYSTEMS", signed=True)
    return root, mags, phases


@pytest.fixture
def complex_export(tmp_path):
    """Real and imaginary series (2 echoes), signed integers."""
    root = tmp_path / "dicom"
    mags, phases = gre_signal(ECHO_TIMES[:2], seed=2)
    real = [np.round(m * np.cos(p)).astype(int) for m, p in zip(mags, phases)]
    imag = [np.round(m * np.sin(p)).astype(int) for m, p in zip(mags, phases)]
    write_series(root, real, series_number=7, description="gre_complex", image_type=["ORIGINAL", "PRIMARY", "R", "ND"],
                 echo_times=ECHO_TIMES[:2], signed=True)
    write_series(root, imag, series_number=8, description="gre_complex", image_type=["ORIGINAL", "PRIMARY", "I", "ND"],
                 echo_times=ECHO_TIMES[:2], signed=True)
    return root, real, imag


def gzip_tree(source, target):
    """A copy of ``source`` with every file gzipped (as the shared data are stored)."""
    for path in source.rglob("*"):
        if path.is_file():
            out = target / path.relative_to(source)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as src, gzip.open(str(out) + ".gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
    return target


def require(path):
    if not path.is_dir():
        pytest.skip(f"shared data not available at {path}")
    return path
