"""End to end on the simulated phantom: valid derivatives, accuracy vs ground truth, failures, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bids_app.algorithms.metrics import nrmse
from bids_app.cli.run import main
from bids_app.derivatives.atomic import TEMP_MARKER
from bids_app.interfaces.bids_validator import errors_of, run_validator
from bids_app.simulate.dataset import SimulationConfig, write_dataset
from tests.bids_factory import tree_digest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("example") / "bids"
    write_dataset(root, SimulationConfig(subjects=2, echoes=5, seed=1))
    return root


@pytest.fixture(scope="module")
def processed(example, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "qsmapp"
    before = tree_digest(example)
    code = main([str(example), str(out), "participant", "--n-procs", "2", "--participant-label", "01", "02"])
    assert tree_digest(example) == before, "the input dataset was modified"
    return code, out


def test_simulated_dataset_is_valid_bids(example):
    assert errors_of(run_validator(example)) == []


def test_participant_run_writes_valid_derivatives(processed):
    code, out = processed
    assert code == 0
    for subject in ("01", "02"):
        anat = out / f"sub-{subject}" / "anat"
        for suffix in ("Chimap", "desc-singlepass_Chimap", "desc-brain_mask"):
            image = anat / f"sub-{subject}_{suffix}.nii.gz"
            assert image.is_file(), image
            assert image.with_name(image.name.replace(".nii.gz", ".json")).is_file()
        sidecar = json.loads((anat / f"sub-{subject}_Chimap.json").read_text())
        assert sidecar["Units"] == "ppm" and sidecar["EstimationAlgorithm"] == "rts"
        assert sidecar["MagneticFieldStrength"] == 3.0 and len(sidecar["EchoTime"]) == 5
        assert all(s.startswith("bids:raw:sub-") for s in sidecar["Sources"])
        assert (out / f"sub-{subject}.html").is_file()
    assert not list(out.rglob(f"*{TEMP_MARKER}*"))
    logs = out / "logs"
    assert list(logs.glob("run-*_settings.json")) and list(logs.glob("run-*_citations.md"))
    citations = next(logs.glob("run-*_citations.md")).read_text()
    assert "ROMEO" in citations and "projection onto dipole fields" in citations and "Rapid two-step" in citations
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert errors_of(run_validator(out)) == []
    assert errors_of(run_validator(out, "--datasetTypes", "derivative")) == []  # after the participant level


def test_default_pipeline_accuracy_against_ground_truth(example, processed):
    code, out = processed
    truth_dir = example / "derivatives" / "ground-truth" / "sub-01" / "anat"
    chi_true = nib.load(str(truth_dir / "sub-01_Chimap.nii.gz")).get_fdata()
    brain = nib.load(str(truth_dir / "sub-01_desc-brain_mask.nii.gz")).get_fdata() > 0
    chi = nib.load(str(out / "sub-01/anat/sub-01_Chimap.nii.gz")).get_fdata()
    mask = nib.load(str(out / "sub-01/anat/sub-01_desc-brain_mask.nii.gz")).get_fdata() > 0
    evaluation = ndimage.binary_erosion(brain, iterations=2) & mask
    assert evaluation.sum() > 0.6 * ndimage.binary_erosion(brain, iterations=2).sum()
    error = nrmse(chi, chi_true, evaluation)
    assert error < 60.0, f"NRMSE {error:.1f} %"


def test_resume_skips_complete_units(example, processed, capsys):
    code, out = processed
    before = {p: p.stat().st_mtime_ns for p in (out / "sub-01").rglob("*") if p.is_file()}
    assert main([str(example), str(out), "participant", "--participant-label", "01", "--skip-bids-validation"]) == 0
    err = capsys.readouterr().err
    assert "1 resumed (complete already" in err and "0 ok" in err
    # nothing was redone: every output is the file of the first run
    assert {p: p.stat().st_mtime_ns for p in (out / "sub-01").rglob("*") if p.is_file()} == before


def test_broken_participant_does_not_stop_the_other(example, tmp_path):
    bids = tmp_path / "bids"
    subprocess.run(["cp", "-r", str(example), str(bids)], check=True)
    broken = bids / "sub-02/anat/sub-02_echo-3_part-phase_MEGRE.nii.gz"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "--n-procs", "2", "--skip-bids-validation",
                 "--premade", "fast"])
    assert code == 65
    assert (out / "sub-01/anat/sub-01_Chimap.nii.gz").is_file()
    assert not (out / "sub-02/anat/sub-02_Chimap.nii.gz").exists()
    summary = json.loads(next((out / "logs").glob("run-*_summary.json")).read_text())
    status = {u["unit"]: u["status"] for u in summary["units"]}
    assert status == {"sub-01": "ok", "sub-02": "failed"}


def test_killed_run_resumes_without_partial_outputs(example, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "bids_app", str(example), str(out), "participant", "--skip-bids-validation",
               "--participant-label", "01", "--premade", "fast"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "logs" / "units").is_dir():
        time.sleep(0.1)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    record = out / "logs/units/sub-01_MEGRE.json"
    assert not record.exists(), "a killed run must not leave a completion record"
    assert main([str(example), str(out), "participant", "--skip-bids-validation", "--participant-label", "01",
                 "--premade", "fast"]) == 0
    assert record.is_file()
    assert not list(out.rglob(f"*{TEMP_MARKER}*"))
    for path in json.loads(record.read_text())["outputs"]:
        if path.endswith(".nii.gz"):
            assert np.isfinite(nib.load(str(out / path)).get_fdata()).all()
