"""``qsmapp-simulate``: writes a dataset, refuses bad counts, and logs without touching the root logger."""

from __future__ import annotations

import logging

import nibabel as nib

from bids_app.simulate.cli import main


def _small(tmp_path, *extra):
    return [str(tmp_path / "ds"), "--subjects", "1", "--echoes", "2", "--matrix", "24", "28", "20",
            "--voxel-size", "4", "4", "4", *extra]


def test_writes_a_dataset_with_ground_truth(tmp_path, capsys):
    assert main(_small(tmp_path)) == 0
    anat = tmp_path / "ds" / "sub-01" / "anat"
    phase = nib.load(str(anat / "sub-01_echo-2_part-phase_MEGRE.nii.gz"))
    assert phase.shape == (24, 28, 20)
    assert (tmp_path / "ds" / "derivatives" / "ground-truth" / "sub-01" / "anat" / "sub-01_Chimap.nii.gz").exists()
    assert "wrote 1 subject(s)" in capsys.readouterr().out


def test_phase_in_scanner_units(tmp_path):
    assert main(_small(tmp_path, "--phase-units", "arbitrary")) == 0
    phase = nib.load(str(tmp_path / "ds" / "sub-01" / "anat" / "sub-01_echo-1_part-phase_MEGRE.nii.gz"))
    values = phase.get_fdata()
    assert values.min() >= -4096 and values.max() <= 4095 and values.max() - values.min() > 4000


def test_bad_count_is_a_usage_error(tmp_path, capsys):
    assert main([str(tmp_path / "ds"), "--echoes", "0"]) == 64
    assert "--echoes must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_logging_is_shown_and_leaves_no_handler_behind(tmp_path, capsys):
    root_handlers = list(logging.getLogger().handlers)
    for run in range(2):
        assert main(_small(tmp_path / str(run))) == 0
        assert "simulated sub-01" in capsys.readouterr().err
    assert logging.getLogger().handlers == root_handlers
    assert logging.getLogger("bids_app").handlers == []
