"""qsmapp-convert on tiny synthetic scanner exports (pydicom-written classic DICOM, converted by dcm2niix)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from bids_app.cli.convert import main

from .conftest import ECHO_TIMES, MAG_TYPE, gzip_tree, siemens_phase_signed
from .dicom_factory import canonical, gre_signal, truth_affine, write_enhanced, write_series


def _listing(folder):
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*"))


def _anat(bids, subject="01"):
    return bids / f"sub-{subject}" / "anat"


def _wrapped_difference(a, b):
    return np.abs(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b)))))


def test_siemens_magnitude_and_phase_series_become_megre_in_radians(siemens_export, tmp_path, capsys):
    root, mags, phases = siemens_export
    before = _listing(root)
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "sub-01"]) == 0
    assert _listing(root) == before  # the input is never written to
    anat = _anat(bids)
    for echo, (te, mag, phase) in enumerate(zip(ECHO_TIMES, mags, phases), start=1):
        mag_image = nib.load(anat / f"sub-01_echo-{echo}_part-mag_MEGRE.nii.gz")
        phase_image = nib.load(anat / f"sub-01_echo-{echo}_part-phase_MEGRE.nii.gz")
        sidecar = json.loads((anat / f"sub-01_echo-{echo}_part-phase_MEGRE.json").read_text())
        assert sidecar["EchoTime"] == pytest.approx(te)
        assert sidecar["Units"] == "rad" and "Siemens 12-bit" in sidecar["PhaseConversion"]
        assert sidecar["MagneticFieldStrength"] == 3 and sidecar["Manufacturer"] == "Siemens"
        # dcm2niix flips rows into NIfTI order: compare in the canonical (RAS) orientation
        got_phase = nib.as_closest_canonical(phase_image).get_fdata()
        got_mag = nib.as_closest_canonical(mag_image).get_fdata()
        assert np.abs(got_mag - canonical(np.round(mag))).max() < 1e-3
        assert _wrapped_difference(got_phase, canonical(phases[echo - 1])).max() < 2 * np.pi / 4096 + 1e-6
        assert np.allclose(mag_image.affine, phase_image.affine)
        assert np.allclose(nib.as_closest_canonical(mag_image).affine,
                           nib.as_closest_canonical(nib.Nifti1Image(mag, truth_affine())).affine, atol=1e-4)
    t1 = anat / "sub-01_T1w.nii.gz"
    assert t1.exists()
    assert json.loads((bids / "dataset_description.json").read_text())["DatasetType"] == "raw"
    assert "sub-01" in (bids / "participants.tsv").read_text()
    out = capsys.readouterr().out
    assert "echo 3 of 3" in out and "recognised as T1w" in out


def test_dry_run_writes_nothing_and_says_why(siemens_export, tmp_path, capsys):
    root, _, _ = siemens_export
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "01", "--session", "ses-pre", "--dry-run"]) == 0
    assert not bids.exists()
    out = capsys.readouterr().out
    assert "would write sub-01/ses-pre/anat/sub-01_ses-pre_echo-2_part-phase_MEGRE.nii.gz" in out
    assert "phase image of series 6" in out and "TE 10 ms" in out


def test_gzipped_export_and_patient_id_label(siemens_export, tmp_path):
    root, _, _ = siemens_export
    gz = gzip_tree(root, tmp_path / "gz")
    bids = tmp_path / "bids"
    assert main([str(gz), str(bids)]) == 0  # label from PatientID "P001"
    assert (_anat(bids, "P001") / "sub-P001_echo-1_part-phase_MEGRE.nii.gz").exists()
    assert not any(p.name.endswith(".dcm") for p in gz.rglob("*"))  # nothing decompressed into the input


def test_echoes_split_across_series_and_milliradian_phase(split_echo_export, tmp_path):
    root, mags, phases = split_echo_export
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "02"]) == 0
    anat = _anat(bids, "02")
    names = sorted(p.name for p in anat.glob("*.nii.gz"))
    assert names == [f"sub-02_echo-{e}_part-{p}_MEGRE.nii.gz" for e in (1, 2) for p in ("mag", "phase")]
    for echo in (1, 2):
        sidecar = json.loads((anat / f"sub-02_echo-{echo}_part-phase_MEGRE.json").read_text())
        assert "milliradians" in sidecar["PhaseConversion"]
        got = nib.as_closest_canonical(nib.load(anat / f"sub-02_echo-{echo}_part-phase_MEGRE.nii.gz")).get_fdata()
        assert _wrapped_difference(got, canonical(phases[echo - 1])).max() < 1e-3


def test_enhanced_multiframe_files_one_per_echo(tmp_path):
    root = tmp_path / "dicom"
    mags, phases = gre_signal(ECHO_TIMES, seed=4)
    for index, (mag, phase, te) in enumerate(zip(mags, phases, ECHO_TIMES)):
        write_enhanced(root, np.round(mag).astype(int), echo_time=te, part="mag", series_number=10 + 2 * index,
                       description="gre_enhanced")
        write_enhanced(root, siemens_phase_signed(phase), echo_time=te, part="phase", series_number=11 + 2 * index,
                       description="gre_enhanced", slope=2, intercept=-4096)
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "08"]) == 0
    anat = _anat(bids, "08")
    for echo in (1, 2, 3):
        mag = nib.load(anat / f"sub-08_echo-{echo}_part-mag_MEGRE.nii.gz")
        phase = nib.load(anat / f"sub-08_echo-{echo}_part-phase_MEGRE.nii.gz")
        assert np.abs(nib.as_closest_canonical(mag).get_fdata() - canonical(np.round(mags[echo - 1]))).max() < 1e-3
        got = nib.as_closest_canonical(phase).get_fdata()
        assert _wrapped_difference(got, canonical(phases[echo - 1])).max() < 2 * np.pi / 4096 + 1e-6
        sidecar = json.loads((anat / f"sub-08_echo-{echo}_part-phase_MEGRE.json").read_text())
        assert sidecar["EchoTime"] == pytest.approx(ECHO_TIMES[echo - 1]) and sidecar["Units"] == "rad"


def test_keep_phase_units_writes_dcm2niix_values_as_arbitrary(split_echo_export, tmp_path):
    root, _, phases = split_echo_export
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "02", "--phase-units", "keep"]) == 0
    path = _anat(bids, "02") / "sub-02_echo-1_part-phase_MEGRE.nii.gz"
    assert json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())["Units"] == "arbitrary"
    got = nib.as_closest_canonical(nib.load(path)).get_fdata()
    assert np.abs(got - canonical(np.round(phases[0] * 1000))).max() < 1e-6


def test_real_and_imaginary_become_magnitude_and_phase(complex_export, tmp_path):
    root, real, imag = complex_export
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "03"]) == 0
    anat = _anat(bids, "03")
    for echo in (1, 2):
        z = real[echo - 1] + 1j * imag[echo - 1]
        mag = nib.as_closest_canonical(nib.load(anat / f"sub-03_echo-{echo}_part-mag_MEGRE.nii.gz")).get_fdata()
        phase = nib.as_closest_canonical(nib.load(anat / f"sub-03_echo-{echo}_part-phase_MEGRE.nii.gz")).get_fdata()
        assert np.abs(mag - canonical(np.abs(z))).max() < 1e-2
        assert _wrapped_difference(phase, canonical(np.angle(z))).max() < 1e-5
        sidecar = json.loads((anat / f"sub-03_echo-{echo}_part-phase_MEGRE.json").read_text())
        assert sidecar["Units"] == "rad" and "angle(real + i imaginary)" in sidecar["PhaseConversion"]


def test_ge_real_imaginary_from_the_private_image_type(tmp_path):
    """GE marks real/imaginary in its private (0043,102F) image type, not in ImageType."""
    import pydicom

    root = tmp_path / "dicom"
    mags, phases = gre_signal(ECHO_TIMES[:2], seed=5)
    parts = {2: [np.round(m * np.cos(p)).astype(int) for m, p in zip(mags, phases)],
             3: [np.round(m * np.sin(p)).astype(int) for m, p in zip(mags, phases)]}
    for code, images in parts.items():
        folder = write_series(root / str(code), images, series_number=7, description="3D SWAN",
                              image_type=["ORIGINAL", "PRIMARY", "OTHER"], echo_times=ECHO_TIMES[:2],
                              manufacturer="GE MEDICAL SYSTEMS", signed=True)
        for path in folder.glob("*.dcm"):
            ds = pydicom.dcmread(path)
            ds.private_block(0x0043, "GEMS_PARM_01", create=True).add_new(0x2F, "SS", code)
            ds.save_as(path)
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "09"]) == 0
    anat = _anat(bids, "09")
    for echo in (1, 2):
        z = parts[2][echo - 1] + 1j * parts[3][echo - 1]
        phase = nib.as_closest_canonical(nib.load(anat / f"sub-09_echo-{echo}_part-phase_MEGRE.nii.gz")).get_fdata()
        assert _wrapped_difference(phase, canonical(np.angle(z))).max() < 1e-5
        mag = nib.as_closest_canonical(nib.load(anat / f"sub-09_echo-{echo}_part-mag_MEGRE.nii.gz")).get_fdata()
        assert np.abs(mag - canonical(np.abs(z))).max() < 1e-2


def test_single_echo_is_t2starw(tmp_path):
    root = tmp_path / "dicom"
    mags, phases = gre_signal([0.02])
    write_series(root, [np.round(mags[0]).astype(int)], series_number=3, description="swi", image_type=MAG_TYPE,
                 echo_times=[0.02])
    write_series(root, [np.round((phases[0] + np.pi) / (2 * np.pi) * 4096).astype(int) % 4096], series_number=4,
                 description="swi", image_type=["ORIGINAL", "PRIMARY", "P", "ND"], echo_times=[0.02])
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "04"]) == 0
    names = sorted(p.name for p in _anat(bids, "04").glob("*.nii.gz"))
    assert names == ["sub-04_part-mag_T2starw.nii.gz", "sub-04_part-phase_T2starw.nii.gz"]


def test_repeated_acquisition_gets_runs(tmp_path):
    root = tmp_path / "dicom"
    mags, phases = gre_signal(ECHO_TIMES[:2])
    for first in (5, 7):
        write_series(root, [np.round(m).astype(int) for m in mags], series_number=first, description="gre",
                     image_type=MAG_TYPE, echo_times=ECHO_TIMES[:2])
        write_series(root, [np.round((p + np.pi) / (2 * np.pi) * 4096).astype(int) % 4096 for p in phases],
                     series_number=first + 1, description="gre", image_type=["ORIGINAL", "PRIMARY", "P", "ND"],
                     echo_times=ECHO_TIMES[:2])
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "05"]) == 0
    names = {p.name for p in _anat(bids, "05").glob("*.nii.gz")}
    assert "sub-05_run-1_echo-2_part-phase_MEGRE.nii.gz" in names and "sub-05_run-2_echo-1_part-mag_MEGRE.nii.gz" in names
    assert len(names) == 8


def test_rule_file_names_the_acquisition_and_no_auto(siemens_export, tmp_path, capsys):
    root, _, _ = siemens_export
    rules = tmp_path / "dcm2bids_config.json"
    rules.write_text(json.dumps({"descriptions": [
        {"id": "qsm", "datatype": "anat", "suffix": "MEGRE", "custom_entities": "acq-qsm",
         "criteria": {"SeriesDescription": "gre_*", "ImageType": ["ORIGINAL", "PRIMARY", "*", "ND", "*"]}},
    ]}))
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "06", "--rules", str(rules), "--no-auto"]) == 0
    anat = _anat(bids, "06")
    assert len(list(anat.glob("sub-06_acq-qsm_echo-*_part-*_MEGRE.nii.gz"))) == 6
    assert not list(anat.glob("*T1w*"))  # matched no rule, automatic recognition off
    out = capsys.readouterr().out
    assert "(rule qsm)" in out and "matches no rule" in out


def test_nifti_folder_with_rules_and_sidecar_changes(siemens_export, tmp_path):
    root, _, _ = siemens_export
    first = tmp_path / "first"
    assert main([str(root), str(first), "--participant-label", "01"]) == 0
    nifti = tmp_path / "nifti"
    nifti.mkdir()
    for path in _anat(first).glob("*echo-1_part-*_MEGRE.nii.gz"):  # NIfTI without sidecars
        (nifti / path.name.replace("sub-01_echo-1_", "scan_")).write_bytes(path.read_bytes())
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"descriptions": [
        {"datatype": "anat", "suffix": "T2starw", "custom_entities": "part-mag",
         "criteria": {"SidecarFilename": "scan_part-mag*"}, "sidecar_changes": {"EchoTime": 0.005,
                                                                                 "MagneticFieldStrength": 3}},
        {"datatype": "anat", "suffix": "T2starw", "custom_entities": "part-phase",
         "criteria": {"SidecarFilename": "scan_part-phase*"}, "sidecar_changes": {"EchoTime": 0.005,
                                                                                   "MagneticFieldStrength": 3}},
    ]}))
    bids = tmp_path / "bids"
    assert main([str(nifti), str(bids), "--participant-label", "07", "--rules", str(rules)]) == 0
    sidecar = json.loads((_anat(bids, "07") / "sub-07_part-phase_T2starw.json").read_text())
    assert sidecar["EchoTime"] == 0.005 and sidecar["Units"] == "rad"


def test_usage_errors_and_existing_files(siemens_export, tmp_path, capsys):
    root, _, _ = siemens_export
    assert main([str(root), str(root / "bids"), "--participant-label", "01"]) == 64  # inside the input
    assert not (root / "bids").exists()
    assert main([str(tmp_path / "missing"), str(tmp_path / "b"), "--participant-label", "01"]) == 64
    assert main([str(root), str(tmp_path / "b"), "--participant-label", "0-1"]) == 64
    bad_rules = tmp_path / "bad.json"
    bad_rules.write_text("{\"descriptions\": [{\"datatype\": \"anat\"}]}")
    assert main([str(root), str(tmp_path / "b"), "--participant-label", "01", "--rules", str(bad_rules)]) == 64
    assert "lacks suffix, criteria" in capsys.readouterr().err
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "01"]) == 0
    assert main([str(root), str(bids), "--participant-label", "01"]) == 73
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(root), str(bids), "--participant-label", "01", "--overwrite"]) == 0


def test_no_gre_exits_66(tmp_path, capsys):
    root = tmp_path / "dicom"
    write_series(root, [np.full((12, 10, 6), 100)], series_number=2, description="t1_mprage", image_type=MAG_TYPE,
                 echo_times=[0.003], extra={"ScanningSequence": "GR\\IR"})
    assert main([str(root), str(tmp_path / "bids"), "--participant-label", "01"]) == 66
    assert "no usable GRE" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), str(tmp_path / "bids2"), "--participant-label", "01"]) == 66


def _gre_pair(root, *, patient, study, date, first):
    mags, phases = gre_signal(ECHO_TIMES[:2])
    extra = {"StudyDate": date}
    write_series(root, [np.round(m).astype(int) for m in mags], series_number=first, description="gre",
                 image_type=MAG_TYPE, echo_times=ECHO_TIMES[:2], patient_id=patient, study_uid=study, extra=extra)
    write_series(root, [siemens_phase_signed(p) for p in phases], series_number=first + 1, description="gre",
                 image_type=["ORIGINAL", "PRIMARY", "P", "ND"], echo_times=ECHO_TIMES[:2], slope=2, intercept=-4096,
                 patient_id=patient, study_uid=study, extra=extra)


def test_patients_and_studies_are_sorted_into_subjects_and_sessions(tmp_path, capsys):
    root = tmp_path / "dicom"
    _gre_pair(root / "a", patient="PAT-1", study="1.2.3.10", date="20260105", first=3)
    _gre_pair(root / "b", patient="PAT-1", study="1.2.3.11", date="20260301", first=3)
    _gre_pair(root / "c", patient="PAT-2", study="1.2.3.12", date="20260105", first=5)
    bids = tmp_path / "bids"
    assert main([str(root), str(bids), "--participant-label", "01"]) == 64  # two patients, one label
    assert "2 patients" in capsys.readouterr().err
    assert main([str(root), str(bids)]) == 0
    names = sorted(p.relative_to(bids).as_posix() for p in bids.rglob("*_echo-1_part-phase_MEGRE.nii.gz"))
    assert names == ["sub-PAT1/ses-20260105/anat/sub-PAT1_ses-20260105_echo-1_part-phase_MEGRE.nii.gz",
                     "sub-PAT1/ses-20260301/anat/sub-PAT1_ses-20260301_echo-1_part-phase_MEGRE.nii.gz",
                     "sub-PAT2/anat/sub-PAT2_echo-1_part-phase_MEGRE.nii.gz"]
    assert (bids / "participants.tsv").read_text().split() == ["participant_id", "sub-PAT1", "sub-PAT2"]
    two_studies = tmp_path / "two"
    _gre_pair(two_studies / "a", patient="P", study="1.2.3.20", date="20260105", first=3)
    _gre_pair(two_studies / "b", patient="P", study="1.2.3.21", date="20260105", first=3)
    assert main([str(two_studies), str(tmp_path / "b2"), "--session", "x"]) == 64
    assert main([str(two_studies), str(tmp_path / "b2")]) == 0
    assert sorted(p.name for p in (tmp_path / "b2" / "sub-P").iterdir()) == ["ses-1", "ses-2"]  # same date
