"""Segmentation in GRE space and ROI statistics, end to end on the simulated phantom (real ANTs
registrations, no mocks): known T1w motion recovered, template labels recovered in GRE space, ROI
means of the true χ through our labels equal those through the true labels, label referencing, and a
unit without T1w still gets its other outputs."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from bids_app.algorithms.roistats import roi_statistics
from bids_app.cli.run import main
from bids_app.interfaces.ants import affine_transform_matrix
from bids_app.simulate.dataset import SimulationConfig, write_dataset
from bids_app.simulate.phantom import LABELS

pytest.importorskip("ants")

DEEP_GREY = [i for i, n in LABELS.items() if n.split("_")[0] in ("caudate", "putamen", "globus", "thalamus")]
LARGE_NUCLEI = [i for i, n in LABELS.items() if n.split("_")[0] in ("caudate", "putamen", "thalamus")]


def _load(path):
    return np.asarray(nib.load(str(path)).dataobj)


def _dice(a, b):
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


def _tsv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg") / "bids"
    write_dataset(root, SimulationConfig(subjects=2, echoes=3, matrix=(80, 96, 72), voxel_size=(2.0, 2.0, 2.0), seed=3))
    (root / "sub-02" / "anat" / "sub-02_T1w.nii.gz").unlink()
    (root / "sub-02" / "anat" / "sub-02_T1w.json").unlink()
    return root


@pytest.fixture(scope="module")
def processed(dataset):
    out = dataset / "derivatives" / "qsmapp"
    template = dataset / "derivatives" / "ground-truth" / "tpl-phantom"
    code = main([str(dataset), str(out), "participant", "--skip-bids-validation", "--n-procs", "2",
                 "--outputs", "qsm", "r2s", "seg", "analysis", "--seg-backend", "atlas", "--seg-template", str(template),
                 "--qsm-reference", "csf"])
    assert code == 0
    return out


def test_known_t1w_motion_is_recovered(dataset, processed):
    anat = processed / "sub-01" / "anat"
    recovered = affine_transform_matrix(anat / "sub-01_from-T1w_to-GRE_mode-image_xfm.mat")
    truth_dir = dataset / "derivatives" / "ground-truth" / "sub-01" / "anat"
    known = np.array(json.loads((truth_dir / "sub-01_from-GRE_to-T1w_xfm.json").read_text())["Matrix"])
    brain = nib.load(str(truth_dir / "sub-01_desc-brain_mask.nii.gz"))
    ijk = np.argwhere(np.asarray(brain.dataobj) > 0)[::20]
    points = brain.affine @ np.c_[ijk, np.ones(len(ijk))].T
    error = np.linalg.norm((recovered @ points - known @ points)[:3], axis=0)
    assert error.max() < 1.0, error.max()
    rotation = recovered[:3, :3] / np.cbrt(np.linalg.det(recovered[:3, :3]))
    angle = np.degrees(np.arccos(np.clip((np.trace(rotation @ known[:3, :3].T) - 1) / 2, -1, 1)))
    assert angle < 1.0, angle
    assert np.degrees(np.arccos((np.trace(known[:3, :3]) - 1) / 2)) > 3  # the motion was not trivial


def test_template_labels_are_recovered_in_gre_space(dataset, processed):
    ours = _load(processed / "sub-01" / "anat" / "sub-01_dseg.nii.gz")
    truth = _load(dataset / "derivatives" / "ground-truth" / "sub-01" / "anat" / "sub-01_dseg.nii.gz")
    assert ours.shape == truth.shape
    scores = {LABELS[i]: round(_dice(ours == i, truth == i), 3) for i in DEEP_GREY}
    assert min(scores.values()) >= 0.75, scores
    t1w_space = nib.load(str(processed / "sub-01" / "anat" / "sub-01_space-T1w_dseg.nii.gz"))
    assert np.allclose(t1w_space.affine, nib.load(str(dataset / "sub-01" / "anat" / "sub-01_T1w.nii.gz")).affine)


def test_roi_means_of_true_chi_match_ground_truth(dataset, processed):
    truth_dir = dataset / "derivatives" / "ground-truth" / "sub-01" / "anat"
    chi = _load(truth_dir / "sub-01_Chimap.nii.gz")
    true_labels = _load(truth_dir / "sub-01_dseg.nii.gz")
    ours = _load(processed / "sub-01" / "anat" / "sub-01_dseg.nii.gz")
    lookup = {i: LABELS[i] for i in LARGE_NUCLEI}
    expected = roi_statistics(chi, true_labels, lookup=lookup)
    got = roi_statistics(chi, ours, lookup=lookup)
    for e, g in zip(expected, got):
        assert abs(e["mean"] - g["mean"]) < 0.01, (e["name"], e["mean"], g["mean"])


def test_roistats_tables_and_label_referencing(processed):
    anat = processed / "sub-01" / "anat"
    rows = _tsv(anat / "sub-01_desc-qsm_roistats.tsv")
    assert list(rows[0]) == ["index", "name", "num_voxels", "mean", "std", "median", "min", "max"]
    lookup = {int(r["index"]): r["name"] for r in _tsv(anat / "sub-01_dseg.tsv")}
    assert [int(r["index"]) for r in rows] == sorted(lookup)
    outside = [r for r in rows if r["name"] in ("skull", "scalp", "sinus")]
    assert outside and all(r["num_voxels"] == "0" and r["mean"] == "n/a" for r in outside)
    csf = next(r for r in rows if r["name"] == "csf")
    assert abs(float(csf["mean"])) < 1e-4  # the map was referenced to CSF
    chi_sidecar = json.loads((anat / "sub-01_Chimap.json").read_text())
    assert chi_sidecar["QSMReferenceUsed"].startswith("labels 1 (csf)")
    assert (anat / "sub-01_desc-r2s_roistats.tsv").is_file()
    dseg_sidecar = json.loads((anat / "sub-01_dseg.json").read_text())
    assert dseg_sidecar["SegmentationBackend"] == "atlas"
    assert dseg_sidecar["RegistrationTransforms"] == ["sub-01_from-T1w_to-GRE_mode-image_xfm.mat"]
    root = {int(r["index"]): r["name"] for r in _tsv(processed / "dseg.tsv")}
    assert root == lookup
    citations = next((processed / "logs").glob("run-*_citations.md")).read_text()
    assert "doi:10.1016/j.media.2007.06.004" in citations
    figure = processed / "sub-01" / "figures" / "sub-01_desc-dseg_qc.png"
    assert figure.is_file() and figure.name in (processed / "sub-01.html").read_text()


def test_derivatives_are_valid_bids(processed):
    from bids_app.interfaces.bids_validator import errors_of, run_validator

    assert errors_of(run_validator(processed)) == []


def test_unit_without_t1w_keeps_its_other_outputs(processed):
    anat = processed / "sub-02" / "anat"
    assert (anat / "sub-02_Chimap.nii.gz").is_file() and (anat / "sub-02_R2starmap.nii.gz").is_file()
    assert not list(anat.glob("*dseg*")) and not list(anat.glob("*roistats*"))
    log = (processed / "logs" / "units" / "sub-02.log").read_text()
    assert "no T1w image" in log and "referenced to its mean instead" in log
    sidecar = json.loads((anat / "sub-02_Chimap.json").read_text())
    assert sidecar["QSMReferenceUsed"] == "mean (fallback: no segmentation)"


def test_unavailable_backends_fail_before_processing(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FASTSURFER_HOME", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    code = main([str(dataset), str(tmp_path / "a"), "participant", "--skip-bids-validation", "--outputs", "qsm", "seg",
                 "--seg-backend", "fastsurfer"])
    assert code == 64 and "FastSurfer is not installed" in capsys.readouterr().err
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path))
    code = main([str(dataset), str(tmp_path / "b"), "participant", "--skip-bids-validation", "--outputs", "qsm", "seg",
                 "--seg-backend", "atlas"])
    assert code == 64 and "no labelled template" in capsys.readouterr().err
    assert not (tmp_path / "a" / "sub-01").exists() and not (tmp_path / "b" / "sub-01").exists()


def test_unknown_reference_label_is_a_clear_error(dataset, tmp_path, capsys):
    template = dataset / "derivatives" / "ground-truth" / "tpl-phantom"
    code = main([str(dataset), str(tmp_path / "c"), "participant", "--skip-bids-validation", "--participant-label", "01",
                 "--outputs", "qsm", "seg", "--seg-backend", "atlas", "--seg-template", str(template),
                 "--seg-registration", "rigid", "--qsm-reference", "hippocampus"])
    assert code == 65
    assert "'hippocampus' is not in the segmentation's labels" in capsys.readouterr().err


def test_syn_registration_writes_and_applies_the_complete_transform(dataset, tmp_path):
    template = dataset / "derivatives" / "ground-truth" / "tpl-phantom"
    out = tmp_path / "syn"
    assert main([str(dataset), str(out), "participant", "--skip-bids-validation", "--participant-label", "01",
                 "--outputs", "qsm", "seg", "--seg-backend", "atlas", "--seg-template", str(template),
                 "--seg-registration", "syn"]) == 0
    anat = out / "sub-01" / "anat"
    described = json.loads((anat / "sub-01_from-T1w_to-GRE_mode-image_xfm.json").read_text())
    assert described["TransformFiles"] == ["sub-01_from-T1w_to-GRE_mode-image_desc-warp_xfm.nii.gz",
                                           "sub-01_from-T1w_to-GRE_mode-image_xfm.mat"]
    assert all((anat / name).is_file() for name in described["TransformFiles"])
    ours = _load(anat / "sub-01_dseg.nii.gz")
    truth = _load(dataset / "derivatives" / "ground-truth" / "sub-01" / "anat" / "sub-01_dseg.nii.gz")
    scores = {LABELS[i]: round(_dice(ours == i, truth == i), 3) for i in DEEP_GREY}
    assert min(scores.values()) >= 0.75, scores


def test_auto_backend_falls_back_to_tissue_classes_and_says_so(dataset, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("FASTSURFER_HOME", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "empty"))
    out = tmp_path / "auto"
    with caplog.at_level("WARNING", logger="qsmapp"):
        assert main([str(dataset), str(out), "participant", "--skip-bids-validation", "--participant-label", "01",
                     "--outputs", "seg"]) == 0
    assert "tissue classes (CSF/GM/WM) only" in caplog.text
    sidecar = json.loads((out / "sub-01" / "anat" / "sub-01_dseg.json").read_text())
    assert sidecar["SegmentationBackend"] == "tissue"
    assert {r["name"] for r in _tsv(out / "sub-01" / "anat" / "sub-01_dseg.tsv")} == {"CSF", "GM", "WM"}
    citations = next((out / "logs").glob("run-*_citations.md")).read_text()
    assert "Atropos" in citations or "n-tissue segmentation" in citations
