"""SWI, minIP, T2* and R2* outputs of the participant level on the simulated phantom."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bids_app.cli.run import main
from bids_app.simulate.dataset import SimulationConfig, write_dataset


@pytest.fixture(scope="module")
def multi_echo(tmp_path_factory):
    root = tmp_path_factory.mktemp("contrasts") / "bids"
    write_dataset(root, SimulationConfig(subjects=1, echoes=5, seed=7))
    out = root.parent / "out"
    code = main([str(root), str(out), "participant", "--skip-bids-validation", "--outputs", "swi", "t2s", "r2s"])
    return code, root, out


def load(path):
    image = nib.load(str(path))
    return image.get_fdata(), image.affine


def test_outputs_and_sidecars(multi_echo):
    code, _, out = multi_echo
    assert code == 0
    anat = out / "sub-01" / "anat"
    for suffix, units in (("swi", "arbitrary"), ("minIP", "arbitrary"), ("T2starmap", "s"), ("R2starmap", "1/s")):
        data, _ = load(anat / f"sub-01_{suffix}.nii.gz")
        assert np.isfinite(data).all()
        sidecar = json.loads((anat / f"sub-01_{suffix}.json").read_text())
        assert sidecar["Units"] == units and len(sidecar["EchoTime"]) == 5
    r2s_sidecar = json.loads((anat / "sub-01_R2starmap.json").read_text())
    assert r2s_sidecar["EstimationAlgorithm"] == "arlo"
    assert not any("part-phase" in s for s in r2s_sidecar["Sources"])


def test_minip_has_swi_shape_and_affine(multi_echo):
    _, _, out = multi_echo
    swi, swi_affine = load(out / "sub-01/anat/sub-01_swi.nii.gz")
    mip, mip_affine = load(out / "sub-01/anat/sub-01_minIP.nii.gz")
    assert mip.shape == swi.shape and np.allclose(mip_affine, swi_affine)
    assert (mip <= swi + 1e-6).all()


def test_r2star_and_t2star_match_ground_truth(multi_echo):
    _, root, out = multi_echo
    truth = root / "derivatives/ground-truth/sub-01/anat"
    r2s_true, _ = load(truth / "sub-01_R2starmap.nii.gz")
    brain = ndimage.binary_erosion(load(truth / "sub-01_desc-brain_mask.nii.gz")[0] > 0, iterations=2)
    r2s, _ = load(out / "sub-01/anat/sub-01_R2starmap.nii.gz")
    t2s, _ = load(out / "sub-01/anat/sub-01_T2starmap.nii.gz")
    relative = np.abs(r2s[brain] - r2s_true[brain]) / r2s_true[brain]
    assert np.median(relative) < 0.06
    t2s_true = 1.0 / r2s_true[brain]  # seconds (BIDS), not ms
    assert np.median(np.abs(t2s[brain] - t2s_true) / t2s_true) < 0.06


def test_veins_are_dark_in_swi(multi_echo):
    _, root, out = multi_echo
    labels, _ = load(root / "derivatives/ground-truth/sub-01/anat/sub-01_dseg.nii.gz")
    dseg = (root / "derivatives/ground-truth/dseg.tsv").read_text().splitlines()[1:]
    vein_indices = [int(line.split("\t")[0]) for line in dseg if "vein" in line.split("\t")[1].lower()]
    veins = np.isin(labels, vein_indices)
    brain = load(root / "derivatives/ground-truth/sub-01/anat/sub-01_desc-brain_mask.nii.gz")[0] > 0
    shell = ndimage.binary_dilation(veins, iterations=2) & ~veins & brain
    swi, _ = load(out / "sub-01/anat/sub-01_swi.nii.gz")
    assert veins.sum() > 20
    assert swi[veins & brain].mean() < 0.8 * swi[shell].mean()


def test_single_echo_skips_relaxometry_but_makes_swi(tmp_path, caplog):
    root = tmp_path / "bids"
    write_dataset(root, SimulationConfig(subjects=1, echoes=1, seed=2))
    out = tmp_path / "out"
    assert main([str(root), str(out), "participant", "--skip-bids-validation", "--outputs", "swi", "r2s"]) == 0
    assert (out / "sub-01/anat/sub-01_swi.nii.gz").is_file()
    assert not (out / "sub-01/anat/sub-01_R2starmap.nii.gz").exists()
    assert "need at least 2 echoes" in caplog.text
