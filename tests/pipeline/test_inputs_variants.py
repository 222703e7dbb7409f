"""Participant runs on input variants: single echo, integer phase, existing masks, oblique slab."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bids_app.algorithms.metrics import correlation
from bids_app.cli.run import main
from bids_app.simulate.dataset import SimulationConfig, write_dataset


def run(bids, out, *extra):
    return main([str(bids), str(out), "participant", "--skip-bids-validation", *map(str, extra)])


def chi_and_truth(bids, out):
    truth = bids / "derivatives/ground-truth/sub-01/anat"
    chi_true = nib.load(str(truth / "sub-01_Chimap.nii.gz")).get_fdata()
    brain = ndimage.binary_erosion(nib.load(str(truth / "sub-01_desc-brain_mask.nii.gz")).get_fdata() > 0,
                                   iterations=2)
    chi = nib.load(str(out / "sub-01/anat/sub-01_Chimap.nii.gz")).get_fdata()
    return chi, chi_true, brain & (chi != 0)


def test_single_echo_integer_phase(tmp_path):
    bids = tmp_path / "bids"
    write_dataset(bids, SimulationConfig(subjects=1, echoes=1, first_echo_time=0.02, matrix=(64, 72, 56),
                                         phase_units="arbitrary", seed=4))
    phase = nib.load(str(bids / "sub-01/anat/sub-01_echo-1_part-phase_MEGRE.nii.gz"))
    assert np.issubdtype(phase.get_data_dtype(), np.integer)
    out = tmp_path / "out"
    assert run(bids, out, "--premade", "fast") == 0
    chi, chi_true, evaluation = chi_and_truth(bids, out)
    assert correlation(chi, chi_true, evaluation) > 0.6
    record = json.loads((out / "logs/units/sub-01_MEGRE.json").read_text())
    assert any("rescaled" in note for note in record["notes"])


def test_existing_masks_are_used(tmp_path):
    bids = tmp_path / "bids"
    write_dataset(bids, SimulationConfig(subjects=1, echoes=3, matrix=(64, 72, 56), seed=5))
    truth_mask = bids / "derivatives/ground-truth/sub-01/anat/sub-01_desc-brain_mask.nii.gz"
    out = tmp_path / "out"
    assert run(bids, out, "--premade", "bet", "--use-existing-masks", "--existing-masks-pipeline", "ground-truth",
               "--mask-erosions", "0") == 0
    used = nib.load(str(out / "sub-01/anat/sub-01_desc-brain_mask.nii.gz")).get_fdata() > 0
    given = nib.load(str(truth_mask)).get_fdata() > 0
    assert used.sum() > 0 and not (used & ~given).any()  # subset: background removal may erode it
    sidecar = json.loads((out / "sub-01/anat/sub-01_desc-brain_mask.json").read_text())
    assert sidecar["MaskSource"].startswith("existing")


@pytest.mark.parametrize("oblique", [0.0, 20.0])
def test_oblique_slab_end_to_end(tmp_path, oblique):
    bids = tmp_path / "bids"
    write_dataset(bids, SimulationConfig(subjects=1, echoes=3, matrix=(64, 72, 56), oblique_degrees=oblique, seed=6))
    out = tmp_path / "out"
    assert run(bids, out, "--premade", "fast") == 0
    chi, chi_true, evaluation = chi_and_truth(bids, out)
    assert correlation(chi, chi_true, evaluation) > 0.7
    sidecar = json.loads((out / "sub-01/anat/sub-01_Chimap.json").read_text())
    assert sidecar["Obliquity"] == pytest.approx(oblique, abs=0.1)
    assert sidecar["B0Direction"][2] == pytest.approx(np.cos(np.radians(oblique)), abs=1e-6)
