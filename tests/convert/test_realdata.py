"""qsmapp-convert on real vendor DICOM (shared data), against dcm2niix's reference conversions in ``Ref/``.

* ``dcm-qa-philips-gre``: Philips 3 T, 2 echoes, per-echo magnitude and phase, classic DICOM (gzipped):
  the same voxels and affine as the reference, a valid BIDS dataset, and (slow) a qsmapp participant run.
* ``dcm-qa-fmap``: Siemens phase difference, GE and Philips (enhanced DICOM) Hz field maps: one line
  each saying why it cannot be used for QSM, exit 66; with a rule, field-map magnitudes still convert.
"""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest

from bids_app.cli.convert import main
from bids_app.convert.dcm2niix import run_dcm2niix

from .conftest import FMAP, PHILIPS_GRE, require

REF_STEM = "2001_WIP_fcMRI_Field_Mapping_cl"


@pytest.fixture(scope="module")
def philips_bids(tmp_path_factory):
    source = require(PHILIPS_GRE / "In")
    bids = tmp_path_factory.mktemp("philips") / "bids"
    assert main([str(source), str(bids), "--participant-label", "01"]) == 0
    return bids


@pytest.mark.parametrize("echo", [1, 2])
@pytest.mark.parametrize("part, ref_suffix", [("mag", ""), ("phase", "_ph")])
def test_philips_matches_the_dcm2niix_reference(philips_bids, echo, part, ref_suffix):
    ours = nib.load(philips_bids / "sub-01" / "anat" / f"sub-01_echo-{echo}_part-{part}_MEGRE.nii.gz")
    ref = nib.load(PHILIPS_GRE / "Ref" / f"{REF_STEM}_e{echo}{ref_suffix}.nii.gz")
    assert ours.shape == ref.shape == (80, 80, 53)
    assert np.abs(ours.affine - ref.affine).max() < 1e-4
    assert np.array_equal(ours.get_fdata(), ref.get_fdata())
    sidecar = json.loads((philips_bids / "sub-01" / "anat" / f"sub-01_echo-{echo}_part-{part}_MEGRE.json").read_text())
    ref_sidecar = json.loads((PHILIPS_GRE / "Ref" / f"{REF_STEM}_e{echo}{ref_suffix}.json").read_text())
    assert sidecar["EchoTime"] == ref_sidecar["EchoTime"] == [0.0023, 0.0046][echo - 1]
    assert sidecar["MagneticFieldStrength"] == 3 and sidecar["Manufacturer"] == "Philips"
    if part == "phase":  # Philips floating-point scaling: already radians
        assert sidecar["Units"] == "rad" and "already in radians" in sidecar["PhaseConversion"]
        assert -np.pi - 1e-3 <= ours.get_fdata().min() and ours.get_fdata().max() <= np.pi + 1e-3


def test_philips_bids_dataset_validates(philips_bids):
    from bids_app.interfaces.bids_validator import errors_of, run_validator, validator_executable

    if validator_executable() is None:
        pytest.skip("bids-validator-deno not installed")
    errors = errors_of(run_validator(philips_bids))
    assert errors == [], errors


def test_field_maps_each_get_one_line_and_exit_66(tmp_path, capsys):
    source = require(FMAP / "In")
    bids = tmp_path / "bids"
    assert main([str(source), str(bids)]) == 66  # three patients (Siemens, GE, Philips): one subject each
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    for number, what in ((3, "phase-difference"), (4, "phase-difference"), (6, "B0 field map in Hz"),
                         (801, "B0 field map in Hz")):
        mine = [ln for ln in lines if re.match(rf"skip: series {number} .*not usable for multi-echo QSM", ln)]
        assert len(mine) == 1 and what in mine[0], (number, lines)
    assert captured.err.count("only field maps") == 3
    assert not list(bids.rglob("*.nii.gz"))


def test_fieldmap_series_convert_like_the_reference(tmp_path):
    """dcm2niix (our wrapper) gives the reference images for GE, Philips enhanced and Siemens field maps."""
    require(FMAP / "In")
    pairs = {"GE_6_CV_Neuro_HH_Adv_fieldmaphz": "006_*_fieldmaphz", "Ph_801_WIP_B0_NS_e2_fieldmaphz": "801_*_fieldmaphz",
             "Si_4_gre_field_ph_e2_ph": "004_*_ph", "Si_5_gre_field_mag_e1": "005_*_e1"}
    out = tmp_path / "nifti"
    out.mkdir()
    run_dcm2niix(FMAP / "In", out)
    for ref_name, pattern in pairs.items():
        ours = [p for p in out.glob(f"{pattern}.nii.gz")]
        assert len(ours) == 1, (pattern, sorted(p.name for p in out.iterdir()))
        a, b = nib.load(ours[0]), nib.load(FMAP / "Ref" / f"{ref_name}.nii")
        assert a.shape == b.shape and np.abs(a.affine - b.affine).max() < 1e-4
        assert np.allclose(a.get_fdata(), b.get_fdata(), rtol=1e-6, atol=1e-6), ref_name


def test_a_rule_converts_fieldmap_magnitudes_anyway(tmp_path, capsys):
    require(FMAP / "In")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"descriptions": [
        {"datatype": "anat", "suffix": "MEGRE", "custom_entities": "acq-fm_part-mag",
         "criteria": {"SeriesDescription": "gre_field_mag", "ImageType": ["ORIGINAL", "PRIMARY", "M", "*", "*"]}}]}))
    bids = tmp_path / "bids"
    assert main([str(FMAP / "In" / "Siemens"), str(bids), "--participant-label", "03", "--rules", str(rules),
                 "--no-auto"]) == 0
    assert "magnitude only" in capsys.readouterr().out  # converted, but no GRE phase for QSM
    for echo in (1, 2):
        ours = nib.load(bids / "sub-03" / "anat" / f"sub-03_acq-fm_echo-{echo}_part-mag_MEGRE.nii.gz")
        ref = nib.load(FMAP / "Ref" / f"Si_5_gre_field_mag_e{echo}.nii")
        assert np.array_equal(ours.get_fdata(), ref.get_fdata()) and np.abs(ours.affine - ref.affine).max() < 1e-4


@pytest.mark.slow
def test_participant_run_on_the_converted_philips_data(philips_bids, tmp_path):
    from bids_app.cli.run import main as qsmapp

    out = tmp_path / "derivatives"
    assert qsmapp([str(philips_bids), str(out), "participant", "--outputs", "qsm", "swi", "r2s",
                   "--n-procs", "1", "--omp-nthreads", "1"]) == 0
    anat = out / "sub-01" / "anat"
    chi = nib.load(anat / "sub-01_Chimap.nii.gz").get_fdata()
    mask = nib.load(anat / "sub-01_desc-brain_mask.nii.gz").get_fdata() > 0
    r2s = nib.load(anat / "sub-01_R2starmap.nii.gz").get_fdata()
    swi = nib.load(anat / "sub-01_swi.nii.gz").get_fdata()
    minip = nib.load(anat / "sub-01_minIP.nii.gz").get_fdata()
    assert 30000 < mask.sum() < 150000  # the brain of a 80x80x53 3 mm grid
    assert np.isfinite(chi).all() and abs(chi[mask].mean()) < 0.01  # mean-referenced
    assert 0.05 < chi[mask].std() < 0.5  # ppm: noisy (2 short echoes, 3 mm) but not wild
    fitted = r2s[mask][r2s[mask] > 0]
    assert fitted.size > 0.9 * mask.sum() and 15 < np.median(fitted) < 50  # 1/s, brain at 3 T
    assert swi.min() >= 0 and minip.shape == swi.shape and (minip <= swi + 1e-3 * swi.max()).all()

    # and back to DICOM, with the identity of the (gzipped) source study
    import pydicom

    from bids_app.cli.export import main as export
    from bids_app.convert.export import affine_from_datasets, volume_from_datasets
    from bids_app.convert.sources import read_dicom_header

    dicom = tmp_path / "pacs"
    assert export([str(out), str(dicom), "--source-dicom", str(PHILIPS_GRE / "In")]) == 0
    source = read_dicom_header(next((PHILIPS_GRE / "In" / "cl").glob("*.dcm.gz")))
    for name in ("Chimap", "swi", "minIP"):
        datasets = [pydicom.dcmread(p) for p in sorted((dicom / "sub-01" / f"sub-01_{name}").glob("*.dcm"))]
        image = nib.load(anat / f"sub-01_{name}.nii.gz")
        assert len(datasets) == 53 and datasets[0].StudyInstanceUID == source.StudyInstanceUID
        assert datasets[0].PatientID == source.PatientID and datasets[0].SeriesInstanceUID != source.SeriesInstanceUID
        assert datasets[0].FrameOfReferenceUID == source.FrameOfReferenceUID  # the GRE series' grid
        assert datasets[0].ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
        assert np.abs(affine_from_datasets(datasets) - image.affine).max() < 1e-4
        assert np.abs(volume_from_datasets(datasets) - image.get_fdata()).max() <= float(datasets[0].RescaleSlope) / 2 + 1e-6
