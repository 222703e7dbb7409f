"""Derivatives writer: names, atomic writes, sidecars, dataset description."""

from __future__ import annotations

import json
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from bids_app.derivatives.atomic import TEMP_MARKER, atomic_path, remove_stale_temporaries
from bids_app.derivatives.writer import DerivativesWriter

UNIT = SimpleNamespace(subject="01", session="2", name="sub-01_ses-2_acq-qsm_run-1")


def test_names_follow_bids_order(tmp_path):
    writer = DerivativesWriter(tmp_path / "out")
    path = writer.path(UNIT, "Chimap", desc="singlepass", space="T1w")
    assert path == tmp_path / "out/sub-01/ses-2/anat/sub-01_ses-2_acq-qsm_run-1_space-T1w_desc-singlepass_Chimap.nii.gz"


def test_save_nifti_writes_image_and_sidecar_atomically(tmp_path):
    writer = DerivativesWriter(tmp_path / "out")
    path = writer.path(UNIT, "Chimap")
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    writer.save_nifti(path, np.ones((4, 4, 4)), affine, sidecar={"Units": "ppm", "EchoTime": np.array([0.004])})
    image = nib.load(str(path))
    assert image.get_fdata().shape == (4, 4, 4) and np.allclose(image.affine, affine)
    assert json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text()) == {
        "Units": "ppm", "EchoTime": [0.004]}
    assert not list(path.parent.glob(f"*{TEMP_MARKER}*"))


def test_interrupted_write_leaves_no_final_file(tmp_path):
    target = tmp_path / "x.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert not target.exists() and not list(tmp_path.iterdir())


def _dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    import os

    from bids_app.derivatives.atomic import host_name

    dead, host = _dead_pid(), host_name()
    (tmp_path / f".sub-01_Chimap.nii.gz{TEMP_MARKER}-{host}-{dead}-abc.nii.gz").write_bytes(b"x")
    live = tmp_path / f".sub-01_mask.nii.gz{TEMP_MARKER}-{host}-{os.getpid()}-abc.nii.gz"
    live.write_bytes(b"x")  # another run writing right now: never removed
    other_host = tmp_path / f".sub-01_swi.nii.gz{TEMP_MARKER}-otherhost-{dead}-abc.nii.gz"
    other_host.write_bytes(b"x")
    (tmp_path / "sub-01_Chimap.nii.gz").write_bytes(b"y")
    assert remove_stale_temporaries(tmp_path, prefix="sub-01") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["sub-01_Chimap.nii.gz", live.name, other_host.name])


def test_image_is_written_before_its_sidecar(tmp_path, monkeypatch):
    """Killed between the two writes: the new image may lack a sidecar, an old sidecar never survives."""
    from bids_app.derivatives import writer as writer_module

    writer = DerivativesWriter(tmp_path / "out")
    path = writer.path(UNIT, "Chimap")
    writer.save_nifti(path, np.ones((4, 4, 4)), np.eye(4), sidecar={"EstimationAlgorithm": "rts"})
    sidecar = path.with_name(path.name.replace(".nii.gz", ".json"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer_module, "atomic_write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        writer.save_nifti(path, np.zeros((4, 4, 4)), np.eye(4), sidecar={"EstimationAlgorithm": "tkd"})
    assert np.all(nib.load(str(path)).get_fdata() == 0) and not sidecar.exists()


def test_disk_full_is_exit_73_naming_the_file(tmp_path, monkeypatch):
    import errno

    from bids_app.errors import CannotCreateOutputError

    def full(image, filename):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nib, "save", full)
    writer = DerivativesWriter(tmp_path / "out")
    path = writer.path(UNIT, "Chimap")
    with pytest.raises(CannotCreateOutputError) as info:
        writer.save_nifti(path, np.ones((4, 4, 4)), np.eye(4), sidecar={"Units": "ppm"})
    assert info.value.exit_code == 73 and str(path) in str(info.value) and "full" in str(info.value)
    assert not list(path.parent.iterdir())  # neither the image, nor its sidecar, nor a temporary


def test_dataset_description(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    writer = DerivativesWriter(bids / "derivatives" / "qsmapp", bids_dir=bids)
    writer.init_dataset(source_name="study")
    description = json.loads((bids / "derivatives/qsmapp/dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "qsmapp"
    assert description["DatasetLinks"]["raw"] == "../.."
    assert writer.source_uri(bids / "sub-01/anat/x.nii.gz") == "bids:raw:sub-01/anat/x.nii.gz"
    assert "*_swi.nii.gz" in (bids / "derivatives/qsmapp/.bidsignore").read_text()


def test_tsv(tmp_path):
    writer = DerivativesWriter(tmp_path)
    path = writer.save_tsv(tmp_path / "t.tsv", [{"index": 1, "mean": 0.1234567}, {"index": 2, "mean": np.nan}],
                           ["index", "mean"])
    assert path.read_text() == "index\tmean\n1\t0.123457\n2\tn/a\n"
