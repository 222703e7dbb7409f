"""qsmapp-export: maps to DICOM, read back with pydicom (geometry, values, identity) and with dcm2niix."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from bids_app.cli.export import main
from bids_app.convert.dcm2niix import run_dcm2niix
from bids_app.convert.export import SECONDARY_CAPTURE_STORAGE, affine_from_datasets, volume_from_datasets

from .conftest import MAG_TYPE
from .dicom_factory import truth_affine, write_series

SHAPE = (14, 11, 7)


def _oblique_affine():
    angle = np.deg2rad(17.0)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.5, 1.2, 2.5])
    affine[:3, 3] = [-10.0, 20.0, -5.0]
    return affine


@pytest.fixture
def derivatives(tmp_path):
    rng = np.random.default_rng(3)
    anat = tmp_path / "qsmapp" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    maps = {"Chimap": rng.normal(0, 0.1, SHAPE), "swi": rng.uniform(0, 900, SHAPE), "minIP": rng.uniform(0, 500, SHAPE)}
    maps["Chimap"][0] = 0.0
    for name, data in maps.items():
        nib.save(nib.Nifti1Image(data.astype(np.float32), _oblique_affine()), anat / f"sub-01_{name}.nii.gz")
    nib.save(nib.Nifti1Image(maps["Chimap"].astype(np.float32), _oblique_affine()),
             anat / "sub-01_desc-singlepass_Chimap.nii.gz")
    return tmp_path / "qsmapp", {k: v.astype(np.float32) for k, v in maps.items()}


def _read(folder):
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def test_maps_load_back_with_their_geometry_and_values(derivatives, tmp_path, capsys):
    output, maps = derivatives
    dicom = tmp_path / "dicom"
    assert main([str(output), str(dicom)]) == 0
    series = sorted(p.name for p in (dicom / "sub-01").iterdir())
    assert series == ["sub-01_Chimap", "sub-01_minIP", "sub-01_swi"]  # no desc-singlepass
    uids = set()
    for name, data in maps.items():
        datasets = _read(dicom / "sub-01" / f"sub-01_{name}")
        assert len(datasets) == SHAPE[2]
        first = datasets[0]
        assert "NOT FOR DIAGNOSTIC USE" in first.SeriesDescription and len(first.SeriesDescription) <= 64
        assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and first.Modality == "MR"
        assert first.ImageType[0] == "DERIVED" and first.PatientID == "sub-01"
        assert len({ds.SeriesInstanceUID for ds in datasets}) == 1 and len({ds.SOPInstanceUID for ds in datasets}) == SHAPE[2]
        uids.add(first.SeriesInstanceUID)
        assert np.abs(affine_from_datasets(datasets) - _oblique_affine()).max() < 1e-4
        slope = float(first.RescaleSlope)
        assert np.abs(volume_from_datasets(datasets) - data).max() <= slope / 2 + 1e-9
        assert float(first.WindowWidth) > 0
        if name == "Chimap":
            assert first.PixelRepresentation == 1 and float(first.WindowCenter) == 0.0
            assert float(first.WindowWidth) == pytest.approx(2 * np.percentile(np.abs(data[data != 0]), 99), rel=1e-3)
    assert len(uids) == 3
    assert "3 DICOM series" in capsys.readouterr().out


def test_dcm2niix_reads_the_export_back(derivatives, tmp_path):
    output, maps = derivatives
    dicom = tmp_path / "dicom"
    assert main([str(output), str(dicom), "--maps", "qsm"]) == 0
    nifti = tmp_path / "back"
    nifti.mkdir()
    run_dcm2niix(dicom / "sub-01" / "sub-01_Chimap", nifti)
    (back,) = list(nifti.glob("*.nii.gz"))
    image = nib.as_closest_canonical(nib.load(back))
    truth = nib.as_closest_canonical(nib.Nifti1Image(maps["Chimap"], _oblique_affine()))
    assert np.abs(image.affine - truth.affine).max() < 1e-3
    slope = float(_read(dicom / "sub-01" / "sub-01_Chimap")[0].RescaleSlope)
    assert np.abs(image.get_fdata() - truth.get_fdata()).max() <= slope / 2 + 1e-6


def test_identity_from_the_source_series_and_secondary_capture(derivatives, tmp_path):
    output, _ = derivatives
    source = tmp_path / "source"
    source_series = write_series(source, [np.full((12, 10, 6), 100)], series_number=5, description="gre",
                                 image_type=MAG_TYPE, echo_times=[0.01], patient_id="PAT42")
    source_uid = pydicom.dcmread(next(source_series.glob("*.dcm"))).SeriesInstanceUID
    # the SWI on the source's grid (as qsmapp's maps are), the QSM on another (oblique) one
    swi = output / "sub-01" / "anat" / "sub-01_swi.nii.gz"
    nib.save(nib.Nifti1Image(np.full((12, 10, 6), 7.0, dtype=np.float32), truth_affine()), swi)
    dicom = tmp_path / "dicom"
    assert main([str(output), str(dicom), "--source-dicom", str(source), "--sop-class", "sc",
                 "--maps", "qsm", "swi"]) == 0
    qsm, first = _read(dicom / "sub-01" / "sub-01_Chimap")[0], _read(dicom / "sub-01" / "sub-01_swi")[0]
    for ds in (qsm, first):
        assert ds.PatientID == "PAT42" and str(ds.PatientName) == "Test^Patient"
        assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.1"
        assert ds.SOPClassUID == SECONDARY_CAPTURE_STORAGE and ds.ConversionType == "WSD"
    assert first.FrameOfReferenceUID == "1.2.826.0.1.3680043.8.498.2"
    assert first.SeriesInstanceUID != source_uid and first.ReferencedSeriesSequence[0].SeriesInstanceUID == source_uid
    assert qsm.FrameOfReferenceUID != "1.2.826.0.1.3680043.8.498.2" and "ReferencedSeriesSequence" not in qsm
    assert (qsm.SeriesNumber, first.SeriesNumber) == (9901, 9902)


def test_exit_codes(derivatives, tmp_path, capsys):
    output, _ = derivatives
    dicom = tmp_path / "dicom"
    assert main([str(tmp_path / "none"), str(dicom)]) == 64
    assert main([str(output), str(dicom), "--participant-label", "99"]) == 66
    assert main([str(output), str(dicom), "--maps", "qsm"]) == 0
    assert main([str(output), str(dicom), "--maps", "qsm"]) == 73
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(output), str(dicom), "--maps", "qsm", "--overwrite"]) == 0
    two = tmp_path / "two"
    for number, study in ((1, "1.2.3.1"), (2, "1.2.3.2")):
        write_series(two, [np.full((12, 10, 6), 1)], series_number=number, description="s", image_type=MAG_TYPE,
                     echo_times=[0.01], study_uid=study)
    assert main([str(output), str(tmp_path / "d2"), "--source-dicom", str(two)]) == 64
    assert "2 studies" in capsys.readouterr().err
    assert not list(tmp_path.glob("dicom/sub-01/.*"))  # no temporary folder left behind
