"""FastSurfer wrapper without FastSurfer's networks: command line, discovery, conversion, a full run of a
stand-in ``run_fastsurfer.sh`` that writes a FastSurfer-shaped output tree."""

from __future__ import annotations

import os
import stat
import sys

import nibabel as nib
import numpy as np
import pytest

from bids_app.errors import DataError, UsageError
from bids_app.interfaces.fastsurfer import (SEGMENTATION, fastsurfer_command, find_fastsurfer, find_output,
                                            load_output, run_fastsurfer)

CENTRE = np.array([10.0, -5.0, 3.0])  # mm, RAS
RADIUS = 12.0


def _sphere_on(shape, affine):
    ijk = np.indices(shape).reshape(3, -1)
    xyz = (affine[:3, :3] @ ijk + affine[:3, 3:4]).T
    return (np.linalg.norm(xyz - CENTRE, axis=1) <= RADIUS).reshape(shape)


def _conformed_affine(size=96):
    """FastSurfer's conformed grid: 1 mm, LIA orientation, centred on the scanner origin."""
    linear = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = -linear @ np.full(3, size / 2.0)
    return affine


@pytest.fixture
def fastsurfer_output(tmp_path):
    labels = np.zeros((96, 96, 96), np.int32)
    labels[_sphere_on(labels.shape, _conformed_affine())] = 17
    path = tmp_path / "prepared.mgz"
    nib.save(nib.MGHImage(labels, _conformed_affine()), str(path))
    return path


@pytest.fixture
def t1w_grid():
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = [-30.0, -36.0, -27.0]
    return (40, 48, 36), affine


@pytest.fixture
def fake_home(tmp_path, fastsurfer_output):
    """A FastSurfer checkout whose run_fastsurfer.sh records its arguments and writes the prepared output."""
    home = tmp_path / "FastSurfer"
    (home / "FastSurferCNN" / "config").mkdir(parents=True)
    (home / "FastSurferCNN" / "config" / "FastSurfer_ColorLUT.tsv").write_text(
        "ID\tLabelName\tR\tG\tB\tA\n0\tUnknown\t0\t0\t0\t0\n17\tLeft-Hippocampus\t220\t216\t20\t0\n")
    (home / "VERSION").write_text("2.4.2\n")
    script = home / "run_fastsurfer.sh"
    script.write_text(f"""#!/bin/bash
echo "$@" > "{tmp_path}/arguments.txt"
while [ $# -gt 0 ]; do case "$1" in --sd) sd="$2"; shift;; --sid) sid="$2"; shift;; esac; shift; done
mkdir -p "$sd/$sid/mri" && cp "{fastsurfer_output}" "$sd/$sid/mri/aparc.DKTatlas+aseg.deep.mgz"
echo "segmentation done"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return home


def test_command_line(tmp_path):
    command = fastsurfer_command("/opt/FastSurfer/run_fastsurfer.sh", tmp_path / "t1.nii.gz", subjects_dir=tmp_path,
                                 subject_id="sub-1", threads=4, device="cpu", python="/venv/bin/python",
                                 allow_root=False)
    assert command[:2] == ["/opt/FastSurfer/run_fastsurfer.sh", "--seg_only"]
    pairs = dict(zip(command[2::2], command[3::2]))
    assert pairs == {"--t1": str((tmp_path / "t1.nii.gz").resolve()), "--sid": "sub-1", "--sd": str(tmp_path.resolve()),
                     "--threads": "4", "--device": "cpu", "--py": "/venv/bin/python"}
    assert "--allow_root" in fastsurfer_command("x", "t1", subjects_dir=".", subject_id="s", allow_root=True)
    with pytest.raises(ValueError, match="device"):
        fastsurfer_command("x", "t1", subjects_dir=".", subject_id="s", device="tpu")


def test_not_installed_says_how_to_get_it(tmp_path):
    with pytest.raises(UsageError) as excinfo:
        find_fastsurfer({"PATH": str(tmp_path)})
    assert "container" in excinfo.value.hint and "FASTSURFER_HOME" in excinfo.value.hint
    with pytest.raises(UsageError, match="no run_fastsurfer.sh"):
        find_fastsurfer({"FASTSURFER_HOME": str(tmp_path)})


def test_found_on_path_or_home(fake_home):
    assert find_fastsurfer({"FASTSURFER_HOME": str(fake_home)}) == fake_home / "run_fastsurfer.sh"
    assert find_fastsurfer({"PATH": str(fake_home)}) == fake_home / "run_fastsurfer.sh"


def test_missing_output_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="without writing"):
        find_output(tmp_path, "s")


def test_conformed_labels_land_on_the_t1w_grid(fastsurfer_output, t1w_grid):
    shape, affine = t1w_grid
    labels, lookup = load_output(fastsurfer_output, reference_affine=affine, reference_shape=shape)
    assert labels.shape == shape and lookup == {17: "Left-Hippocampus"}
    truth = _sphere_on(shape, affine)
    got = labels == 17
    dice = 2 * (got & truth).sum() / (got.sum() + truth.sum())
    assert dice > 0.93, dice


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_full_run_through_the_script(fake_home, t1w_grid, tmp_path):
    shape, affine = t1w_grid
    t1w = tmp_path / "sub-1_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), affine), str(t1w))
    environ = {**os.environ, "FASTSURFER_HOME": str(fake_home), "FASTSURFER_PYTHON": "/usr/bin/python3"}
    labels, lookup, details = run_fastsurfer(t1w, out_dir=tmp_path / "fs", threads=3, device="cpu",
                                             reference_affine=affine, reference_shape=shape, environ=environ)
    assert (tmp_path / "fs" / "t1w" / SEGMENTATION).is_file()
    arguments = (tmp_path / "arguments.txt").read_text().split()
    assert arguments[:1] == ["--seg_only"] and "--py" in arguments and "3" in arguments
    assert (labels == 17).sum() > 100 and lookup == {17: "Left-Hippocampus"}
    assert details["FastSurferVersion"] == "2.4.2"


def test_failed_run_shows_the_log(fake_home, t1w_grid, tmp_path):
    shape, affine = t1w_grid
    (fake_home / "run_fastsurfer.sh").write_text("#!/bin/bash\necho 'CUDA out of memory' >&2\nexit 3\n")
    with pytest.raises(DataError) as excinfo:
        run_fastsurfer(tmp_path / "t1.nii.gz", out_dir=tmp_path / "fs", reference_affine=affine, reference_shape=shape,
                       environ={**os.environ, "FASTSURFER_HOME": str(fake_home)})
    assert "exit 3" in str(excinfo.value) and "CUDA out of memory" in str(excinfo.value)


def test_right_cortical_parcels_are_named_although_fastsurfers_table_folds_them(fake_home, t1w_grid, tmp_path):
    """FastSurfer's own colour table has no 2003 (its networks predict the left label for both sides);
    the final aparc.DKTatlas+aseg has it, and it must get its FreeSurfer name."""
    shape, affine = t1w_grid
    labels = np.zeros((96, 96, 96), np.int32)
    labels[_sphere_on(labels.shape, _conformed_affine())] = 2003
    labels[44:52, 44:52, 44:52] = 17
    path = tmp_path / "aparc.mgz"
    nib.save(nib.MGHImage(labels, _conformed_affine()), str(path))
    _, lookup = load_output(path, reference_affine=affine, reference_shape=shape, fastsurfer_home=fake_home)
    assert lookup == {17: "Left-Hippocampus", 2003: "ctx-rh-caudalmiddlefrontal"}
