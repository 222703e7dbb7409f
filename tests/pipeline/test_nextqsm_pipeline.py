"""The NeXtQSM premade end to end through the CLI, with a random-weights checkpoint in the released file
layout (real networks, real loading code; accuracy needs the real weights, which only the container has)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from bids_app.cli.run import main
from bids_app.simulate.dataset import SimulationConfig, write_dataset

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from bids_app.interfaces import nextqsm as nx

    root = tmp_path_factory.mktemp("nx")
    nx.save_networks(nx.build_networks(nx.REFERENCE_PARAMS), root / "weights")
    write_dataset(root / "bids", SimulationConfig(subjects=1, echoes=3, matrix=(64, 64, 48), voxel_size=(3.0, 3.0, 3.0),
                                                  oblique_degrees=12.0, seed=2))
    return root


def test_premade_runs_with_weights_from_the_environment(setup, monkeypatch):
    monkeypatch.setenv("QSMAPP_NEXTQSM_WEIGHTS", str(setup / "weights"))
    out = setup / "out"
    assert main([str(setup / "bids"), str(out), "participant", "--skip-bids-validation", "--premade", "nextqsm"]) == 0
    anat = out / "sub-01" / "anat"
    chi = np.asarray(nib.load(str(anat / "sub-01_Chimap.nii.gz")).dataobj)
    mask = np.asarray(nib.load(str(anat / "sub-01_desc-brain_mask.nii.gz")).dataobj) > 0
    assert chi.shape == (64, 64, 48) and np.isfinite(chi).all()
    assert np.all(chi[~mask] == 0) and np.any(chi[mask] != 0)
    assert abs(chi[mask].mean()) < 1e-4  # referenced to the mean like every other inversion
    sidecar = json.loads((anat / "sub-01_Chimap.json").read_text())
    assert sidecar["EstimationAlgorithm"] == "nextqsm" and "10.1016/j.media.2022.102700" in sidecar["EstimationReference"]
    citations = next((out / "logs").glob("run-*_citations.md")).read_text()
    assert "NeXtQSM" in citations


def test_missing_weights_stop_before_any_processing(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("QSMAPP_NEXTQSM_WEIGHTS", raising=False)
    code = main([str(setup / "bids"), str(tmp_path / "out"), "participant", "--skip-bids-validation",
                 "--premade", "nextqsm", "--nextqsm-weights", str(tmp_path / "none")])
    assert code == 64
    err = capsys.readouterr().err
    assert "--nextqsm-weights" in err and "zqfdc" in err
    assert not (tmp_path / "out" / "sub-01").exists()
